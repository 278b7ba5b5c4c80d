//! A send batch: every frame queued on a connection, with the `iovec`s and
//! `msghdr` that describe them to one `IORING_OP_SENDMSG` (or
//! `IORING_OP_SENDMSG_ZC`) submission.
//!
//! The batch owns the [`WriteQueue`] (and so the frames and their bodies) for
//! as long as the kernel may read them: it is moved into the operation's slab
//! entry when submitted and handed back with the completion, or, for a
//! zero-copy send, with the buffer notification that follows it.

use io_uring::opcode;
use transport::{MAX_IOV, TransportError, WriteQueue};

use crate::connection::on_socket;
use crate::ops::{Completion, Op};
use crate::ring_loop::EventLoop;

/// Slices per submission: enough for 512 small frames (header + body each).
const IOV_PER_SEND: usize = MAX_IOV;

/// The `iovec` array and `msghdr` of a send, kept by the loop between sends
/// (`EventLoop::send_scratch`) so that a send allocates nothing.
pub(crate) struct SendScratch {
    iov: Vec<libc::iovec>,
    msg: Box<libc::msghdr>,
}

/// `iovec`s a new scratch space holds before it grows: two frames (header
/// and body each), what an RPC's request or answer takes.
const IOV_AT_FIRST: usize = 4;

impl SendScratch {
    /// An empty header and room for [`IOV_AT_FIRST`] `iovec`s (two allocations).
    pub(crate) fn new() -> Self {
        Self {
            iov: Vec::with_capacity(IOV_AT_FIRST),
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

/// Scratch spaces the loop keeps for later sends, at least: it keeps as many
/// as it has connections when that is more, since each connection has at most
/// one send in flight and a turn may flush every one of them. (Capped at 64,
/// a loop with more connections answering at once, as 256 connections asking
/// an endpoint on the MessageLoop do, dropped and re-allocated a scratch, two
/// allocations, for most of its sends.)
pub(crate) const SCRATCH_KEPT: usize = 64;

/// The frames of one send and the kernel-facing description of their bytes.
pub(crate) struct SendBatch {
    queue: WriteQueue,
    /// Read by the kernel through its `msg`: owned here to keep it alive.
    scratch: SendScratch,
    zero_copy: bool,
}

impl SendBatch {
    /// Describes the unwritten bytes of `queue` (up to [`MAX_IOV`] slices) in
    /// `scratch` (a new one if `None`). `zero_copy` is set when some body in
    /// the batch has at least `zc_threshold` bytes (0 disables zero copy).
    pub(crate) fn new(queue: WriteQueue, zc_threshold: usize, scratch: Option<SendScratch>) -> Self {
        let mut scratch = scratch.unwrap_or_else(SendScratch::new);
        // Straight from the queue into the kept `iovec`s: no stack array of
        // IOV_PER_SEND slices to zero first (16 KiB of stores per send).
        scratch.iov.clear();
        queue.for_each_slice(IOV_PER_SEND, |s| {
            scratch.iov.push(libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
        });
        let zero_copy = zc_threshold > 0 && scratch.iov.iter().any(|v| v.iov_len >= zc_threshold);
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        *scratch.msg = unsafe { std::mem::zeroed() };
        scratch.msg.msg_iov = scratch.iov.as_mut_ptr();
        scratch.msg.msg_iovlen = scratch.iov.len() as _;
        Self {
            queue,
            scratch,
            zero_copy,
        }
    }

    /// The `msghdr` to pass to the kernel. It points at this batch's `iovec`s,
    /// which point into the frames of its queue: all heap memory that stays
    /// put while the batch is moved around, as long as the batch is not
    /// dropped or its queue changed.
    pub(crate) fn msghdr(&self) -> *const libc::msghdr {
        &*self.scratch.msg
    }

    /// Whether this batch goes out with `SENDMSG_ZC`.
    pub(crate) fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Bytes of the whole queue not yet written (the batch may describe fewer).
    pub(crate) fn remaining_bytes(&self) -> usize {
        self.queue.remaining_bytes()
    }

    /// Ends the batch: `written` bytes went out; returns the queue advanced past them.
    pub(crate) fn into_parts(self, written: usize) -> (WriteQueue, SendScratch) {
        let mut queue = self.queue;
        // The kernel never reports more than it was given; stay safe regardless.
        queue.advance(written.min(queue.remaining_bytes()));
        (queue, self.scratch)
    }
}

impl EventLoop {
    /// Sends everything queued on connection `key` in one submission (unless a
    /// send is already in flight: its completion flushes again), and arms the
    /// connection's recv if it has none.
    pub(crate) fn flush(&mut self, key: usize) {
        let threshold = self.conf.uring.zero_copy_threshold;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        if conn.closing {
            return;
        }
        if conn.send.is_none() {
            let mut queue = conn.queue.take().unwrap_or_default();
            let close_when_flushed = {
                let mut st = conn.sink.state();
                st.scheduled = false;
                queue.append(&mut st.queue);
                st.close_when_flushed
            };
            if queue.is_empty() && close_when_flushed {
                let reason = "closed locally after its last frames were written".to_string();
                self.close_connection(key, Some(reason), None);
                return;
            } else if queue.is_empty() {
                conn.queue = Some(queue);
            } else {
                let batch = SendBatch::new(queue, threshold, self.send_scratch.pop());
                let flags = (libc::MSG_WAITALL | libc::MSG_NOSIGNAL) as u32;
                let sqe = if batch.is_zero_copy() {
                    on_socket!(conn, |fd| opcode::SendMsgZc::new(fd, batch.msghdr())
                        .flags(flags)
                        .build())
                } else {
                    on_socket!(conn, |fd| opcode::SendMsg::new(fd, batch.msghdr())
                        .flags(flags)
                        .build())
                };
                // SAFETY: the msghdr, its iovecs and the frames they point into
                // are heap memory owned by `batch`, which moves into the op entry
                // and is dropped only after the send's last CQE (for zero copy,
                // its buffer notification).
                conn.send = Some(unsafe { self.ops.start(sqe, Op::Send(key, batch)) });
            }
        }
        self.arm_recv(key);
    }

    /// Handles a send's result, or a zero-copy send's buffer notification.
    pub(crate) fn on_send(&mut self, op: usize, c: Completion) {
        match self.ops.take(op) {
            Some(Op::Send(conn, batch)) => {
                let written = c.result.max(0) as usize;
                if c.more() {
                    // Zero copy: the kernel may read the pages until the notification.
                    let whole = c.result >= 0 && written == batch.remaining_bytes();
                    if whole {
                        self.ops.put(op, Op::ZcNotify(batch, None));
                        self.send_done(conn, Some(WriteQueue::new()), c.result, written);
                    } else {
                        self.ops.put(op, Op::ZcNotify(batch, Some((conn, written))));
                        if c.result < 0 {
                            self.send_failed(conn, c.result);
                        }
                    }
                } else {
                    self.ops.finish(op);
                    let queue = self.recycle(batch, written);
                    self.send_done(conn, Some(queue), c.result, written);
                }
            }
            Some(Op::ZcNotify(batch, resume)) => {
                if !c.notif() {
                    self.ops.put(op, Op::ZcNotify(batch, resume));
                    return;
                }
                self.ops.finish(op);
                let written = resume.map_or(0, |(_, written)| written);
                let queue = self.recycle(batch, written);
                if let Some((conn, written)) = resume {
                    self.send_done(conn, Some(queue), 0, written);
                }
            }
            Some(other) => self.ops.put(op, other),
            None => {}
        }
    }

    /// Ends `batch` (`written` bytes went out): keeps its scratch space for a
    /// later send (up to one per connection, at least [`SCRATCH_KEPT`]) and
    /// returns its queue.
    fn recycle(&mut self, batch: SendBatch, written: usize) -> WriteQueue {
        let (queue, scratch) = batch.into_parts(written);
        if self.send_scratch.len() < SCRATCH_KEPT.max(self.conns.len()) {
            self.send_scratch.push(scratch);
        }
        queue
    }

    /// The connection gets its queue back, `written` bytes fewer; continues
    /// (which re-arms a recv paused by the connection's limits, when they
    /// allow), or fails on `result < 0`.
    fn send_done(&mut self, key: usize, queue: Option<WriteQueue>, result: i32, written: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.client.frames_written(written);
        conn.send = None;
        conn.queue = queue;
        if result < 0 {
            self.send_failed(key, result);
        } else if conn.closing {
            self.maybe_finish(key);
        } else {
            self.mark_dirty(key);
        }
    }

    fn send_failed(&mut self, key: usize, result: i32) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            self.maybe_finish(key);
            return;
        }
        let err = std::io::Error::from_raw_os_error(-result);
        let err = TransportError::io("write to", conn.client.peer_addr(), &err);
        self.close_connection(key, Some(err.to_string()), Some(err));
    }
}
