//! The frames queued on one connection and how much of them is written.
//!
//! A backend pushes [`EncodedFrame`]s, asks for [`IoSlice`]s covering as many
//! of them as one `writev`/`sendmsg` can take, and [`advance`s](WriteQueue::advance)
//! by what the kernel accepted. Headers and bodies are written from where they
//! are: nothing is copied into a staging buffer. A body's memory is released
//! (back to its pool) as soon as the frame is fully written.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::frame::EncodedFrame;

/// Most slices a backend should pass to one vectored write (Linux `UIO_MAXIOV` is 1024).
pub const MAX_IOV: usize = 1024;

/// A FIFO of frames with a cursor into the first one.
#[derive(Debug, Default)]
pub struct WriteQueue {
    frames: VecDeque<EncodedFrame>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// Bytes queued and not yet written.
    bytes: usize,
}

impl WriteQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a frame.
    pub fn push(&mut self, frame: EncodedFrame) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Moves every frame of `other` to the back of this queue, leaving `other`
    /// empty (its allocation is kept for reuse).
    pub fn append(&mut self, other: &mut VecDeque<EncodedFrame>) {
        for f in other.drain(..) {
            self.push(f);
        }
    }

    /// Whether every queued byte has been written.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames not yet fully written.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Bytes not yet written.
    pub fn remaining_bytes(&self) -> usize {
        self.bytes
    }

    /// Fills `out` with slices over the unwritten bytes, in order, and returns
    /// how many it filled (at most `out.len()`; empty bodies are skipped).
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut skip = self.offset;
        for f in &self.frames {
            for part in [f.header(), &f.body()[..]] {
                if n == out.len() {
                    return n;
                }
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                out[n] = IoSlice::new(&part[skip..]);
                skip = 0;
                n += 1;
            }
        }
        n
    }

    /// Records that the first `written` unwritten bytes went out; drops frames
    /// written in full.
    ///
    /// # Panics
    /// If `written` exceeds [`remaining_bytes`](Self::remaining_bytes).
    pub fn advance(&mut self, written: usize) {
        assert!(written <= self.bytes, "advance({written}) past the queue");
        self.bytes -= written;
        let mut left = self.offset + written;
        while let Some(front) = self.frames.front() {
            if left < front.len() {
                break;
            }
            left -= front.len();
            self.frames.pop_front();
        }
        self.offset = left;
    }

    /// Drops every queued frame; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.frames.len();
        self.frames.clear();
        self.offset = 0;
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn collect(q: &WriteQueue, max: usize) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); max];
        let n = q.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn partial_writes_resume_at_the_right_byte() {
        let mut q = WriteQueue::new();
        let mut expect = Vec::new();
        for i in 0..5u8 {
            let f = EncodedFrame::rpc_request(i.into(), Bytes::from(vec![i; 10 * i as usize])).unwrap();
            expect.extend_from_slice(f.header());
            expect.extend_from_slice(f.body());
            q.push(f);
        }
        assert_eq!(q.remaining_bytes(), expect.len());
        let mut written = Vec::new();
        // Write in odd steps, with few slices at a time.
        while !q.is_empty() {
            let all = collect(&q, 3);
            let n = all.len().min(7);
            written.extend_from_slice(&all[..n]);
            q.advance(n);
        }
        assert_eq!(written, expect);
        assert_eq!(q.remaining_bytes(), 0);
    }

    #[test]
    fn written_frames_release_their_bodies() {
        let body = Bytes::from(vec![1u8; 100]);
        let mut q = WriteQueue::new();
        q.push(EncodedFrame::one_way(body.clone()).unwrap());
        assert!(!body.is_unique());
        q.advance(13 + 50);
        assert!(!body.is_unique());
        q.advance(50);
        assert!(body.is_unique());
    }

    #[test]
    fn empty_bodies_take_no_slice() {
        let mut q = WriteQueue::new();
        q.push(EncodedFrame::one_way(Bytes::new()).unwrap());
        q.push(EncodedFrame::one_way(Bytes::new()).unwrap());
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(q.io_slices(&mut slices), 2);
    }
}
