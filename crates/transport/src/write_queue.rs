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

    /// Calls `f` with each of the first `max` slices (a count) of unwritten
    /// bytes, in order: each frame's header and body (the first one from the
    /// write cursor on), empty ones skipped. Returns how many it passed: at
    /// most `max`, 0 for an empty queue. The slices borrow the queue, so `f`
    /// may keep them until the queue next changes. A backend that keeps its
    /// own `iovec` array fills it with this, without first zeroing a
    /// [`MAX_IOV`]-slice array (16 KiB of stores per write). It mirrors Netty's
    /// `ChannelOutboundBuffer.forEachFlushedMessage` filling an `IovArray`,
    /// which Spark's transport writes through on epoll.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use transport::{EncodedFrame, WriteQueue};
    ///
    /// let mut queue = WriteQueue::new();
    /// queue.push(EncodedFrame::one_way(Bytes::from_static(b"hello")).unwrap());
    /// queue.push(EncodedFrame::one_way(Bytes::new()).unwrap());
    /// // A short write took the first 4 of the 13 header bytes.
    /// queue.advance(4);
    /// let mut lens = Vec::new();
    /// assert_eq!(queue.for_each_slice(8, |s| lens.push(s.len())), 3);
    /// // The rest of the header, the body, then the second frame's header
    /// // (its empty body is skipped).
    /// assert_eq!(lens, [9, 5, 13]);
    /// assert_eq!(queue.for_each_slice(1, |_| {}), 1);
    /// ```
    pub fn for_each_slice<'a>(&'a self, max: usize, mut f: impl FnMut(&'a [u8])) -> usize {
        let mut n = 0;
        let mut skip = self.offset;
        for frame in &self.frames {
            for part in [frame.header(), &frame.body()[..]] {
                if n == max {
                    return n;
                }
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                f(&part[skip..]);
                skip = 0;
                n += 1;
            }
        }
        n
    }

    /// Fills `out` with slices over the unwritten bytes, in order, and returns
    /// how many it filled (at most `out.len()`; empty bodies are skipped).
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut slots = out.iter_mut();
        self.for_each_slice(slots.len(), |part| {
            if let Some(slot) = slots.next() {
                *slot = IoSlice::new(part);
            }
        })
    }

    /// Calls `f` with [`IoSlice`]s over the unwritten bytes, in order (at most
    /// `max_slices` of them, a count capped at [`MAX_IOV`]; none for an empty
    /// queue), and returns what `f` returns. The slices are built in an array
    /// on the stack sized for what the queue needs: 16, 128 or [`MAX_IOV`]
    /// slices (256 B, 2 KiB or 16 KiB), so building them costs about what the
    /// queue holds, not the 16 KiB of zeroing a [`MAX_IOV`] array for every
    /// vectored write. It mirrors Netty's `ChannelOutboundBuffer.nioBuffers`
    /// (the slices of a gathering write), which Spark's NIO transport uses.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use transport::{EncodedFrame, WriteQueue};
    ///
    /// let mut queue = WriteQueue::new();
    /// queue.push(EncodedFrame::rpc_request(7, Bytes::from_static(b"ping")).unwrap());
    /// // `writev` would take the slices; here, count their bytes.
    /// let bytes = queue.with_io_slices(64, |slices| slices.iter().map(|s| s.len()).sum::<usize>());
    /// assert_eq!(bytes, 21 + 4);
    /// queue.advance(bytes);
    /// assert!(queue.with_io_slices(64, |slices| slices.is_empty()));
    /// ```
    pub fn with_io_slices<R>(&self, max_slices: usize, f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
        let need = self.frames.len().saturating_mul(2).min(max_slices).min(MAX_IOV);
        if need <= 16 {
            self.with_io_slice_array::<16, R>(need, f)
        } else if need <= 128 {
            self.with_io_slice_array::<128, R>(need, f)
        } else {
            self.with_io_slice_array::<MAX_IOV, R>(need, f)
        }
    }

    fn with_io_slice_array<const N: usize, R>(&self, max: usize, f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
        let mut slices = [IoSlice::new(&[]); N];
        let n = self.io_slices(&mut slices[..max.min(N)]);
        f(&slices[..n])
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
    fn with_io_slices_covers_small_and_large_queues() {
        for frames in [1usize, 8, 9, 64, 65, 600] {
            let mut q = WriteQueue::new();
            let mut expect = Vec::new();
            for i in 0..frames {
                let f = EncodedFrame::rpc_request(i as i64, Bytes::from(vec![i as u8; 3])).unwrap();
                expect.extend_from_slice(f.header());
                expect.extend_from_slice(f.body());
                q.push(f);
            }
            q.advance(5);
            // Up to 1024 slices (two per frame); 600 frames need 1200.
            let (n, bytes) = q.with_io_slices(usize::MAX, |s| {
                (
                    s.len(),
                    s.iter().flat_map(|s| s.iter().copied()).collect::<Vec<u8>>(),
                )
            });
            assert_eq!(n, (frames * 2).min(MAX_IOV), "{frames} frames");
            assert_eq!(bytes[..], expect[5..5 + bytes.len()], "{frames} frames");
            if frames * 2 <= MAX_IOV {
                assert_eq!(bytes.len(), expect.len() - 5);
            }
            assert_eq!(q.with_io_slices(3, |s| s.len()), (frames * 2).min(3));
            assert_eq!(q.for_each_slice(usize::MAX, |_| {}), frames * 2);
        }
    }

    #[test]
    fn empty_bodies_take_no_slice() {
        let mut q = WriteQueue::new();
        q.push(EncodedFrame::one_way(Bytes::new()).unwrap());
        q.push(EncodedFrame::one_way(Bytes::new()).unwrap());
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(q.io_slices(&mut slices), 2);
    }

    /// One step against a byte-string model of the queue.
    #[derive(Debug, Clone)]
    enum Step {
        /// Push a request frame with a body of this many bytes.
        Push(usize),
        /// Push this many frames with empty bodies.
        PushEmpty(usize),
        /// Build at most this many slices and write this share (per mille)
        /// of their bytes, as a short `writev` would.
        Write { max_slices: usize, per_mille: usize },
    }

    /// Pushes a request frame (id `seq`, `body_len` bytes of `seq`) on both.
    fn push(q: &mut WriteQueue, model: &mut Vec<u8>, seq: u8, body_len: usize) {
        let f = EncodedFrame::rpc_request(seq.into(), Bytes::from(vec![seq; body_len])).unwrap();
        model.extend_from_slice(f.header());
        model.extend_from_slice(f.body());
        q.push(f);
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..300).prop_map(Step::Push),
            (1usize..700).prop_map(Step::PushEmpty),
            (0usize..1100, 0usize..=1000).prop_map(|(max_slices, per_mille)| Step::Write {
                max_slices,
                per_mille
            }),
        ]
    }

    proptest::proptest! {
        /// Whatever the frames, slice caps and short writes, the slices
        /// (from `for_each_slice`, `io_slices` and `with_io_slices` alike)
        /// start at the first unwritten byte and follow the unwritten bytes
        /// in order, and the counts agree with the model.
        #[test]
        fn slices_follow_a_byte_model(steps in proptest::collection::vec(step(), 1..40)) {
            let mut q = WriteQueue::new();
            let mut model: Vec<u8> = Vec::new();
            let mut seq = 0u8;
            for s in steps {
                match s {
                    Step::Push(body_len) => {
                        seq = seq.wrapping_add(1);
                        push(&mut q, &mut model, seq, body_len);
                    }
                    Step::PushEmpty(count) => {
                        for _ in 0..count {
                            seq = seq.wrapping_add(1);
                            push(&mut q, &mut model, seq, 0);
                        }
                    }
                    Step::Write { max_slices, per_mille } => {
                        let mut each = Vec::new();
                        let n = q.for_each_slice(max_slices, |p| each.push(p.to_vec()));
                        proptest::prop_assert_eq!(n, each.len());
                        proptest::prop_assert!(n <= max_slices);
                        proptest::prop_assert!(each.iter().all(|p| !p.is_empty()), "an empty slice");
                        let flat: Vec<u8> = each.concat();
                        proptest::prop_assert_eq!(&flat[..], &model[..flat.len()]);
                        // The other two views give the same bytes (up to MAX_IOV slices).
                        let capped = max_slices.min(MAX_IOV);
                        let via_with = q.with_io_slices(max_slices, |sl| {
                            sl.iter().flat_map(|s| s.iter().copied()).collect::<Vec<u8>>()
                        });
                        let want: Vec<u8> = each[..n.min(capped)].concat();
                        proptest::prop_assert_eq!(&via_with, &want);
                        proptest::prop_assert_eq!(collect(&q, capped), want);
                        // Fewer slices than the cap: they cover the whole queue.
                        if n < max_slices {
                            proptest::prop_assert_eq!(flat.len(), model.len());
                        }
                        let written = flat.len() * per_mille / 1000;
                        q.advance(written);
                        model.drain(..written);
                    }
                }
                proptest::prop_assert_eq!(q.remaining_bytes(), model.len());
                proptest::prop_assert_eq!(q.is_empty(), model.is_empty());
            }
        }
    }
}
