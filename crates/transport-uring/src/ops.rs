//! The ring and the slab of in-flight operations (tokio's io_uring driver keeps
//! the same shape: a `Slab` of lifecycles keyed by `user_data`).
//!
//! Every operation submitted to the kernel has an [`Op`] entry here from the
//! moment its SQE is pushed until its last CQE arrives. Whatever memory the
//! kernel reads or writes for it (an eventfd counter, a send batch's frames
//! and iovecs) is *moved into* the entry and handed back with the completion,
//! so "the kernel still owns this" is visible in the types. A cancelled
//! operation keeps its memory until its final CQE: cancellation only asks.

use std::io;

use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use crate::send::SendBatch;

/// `user_data` of SQEs whose completion carries nothing to act on (async cancels).
pub(crate) const IGNORED: u64 = u64::MAX;

/// What an in-flight operation is, and the memory it holds for the kernel.
pub(crate) enum Op {
    /// A read of the loop's wake-up eventfd into the boxed 8-byte counter.
    Wake(Box<[u8; 8]>),
    /// A multishot accept on listener `key` of the loop's listener slab.
    Accept(usize),
    /// A pause before re-arming listener `key`'s accept after it failed for
    /// lack of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`),
    /// so the loop does not spin; holds the timeout's `timespec`.
    AcceptBackoff(
        usize,
        #[expect(dead_code, reason = "read by the kernel; owned here to keep it alive")]
        Box<io_uring::types::Timespec>,
    ),
    /// A multishot recv of connection `key` into the provided-buffer ring.
    Recv(usize),
    /// A plain recv of connection `key` straight into its decoder's buffer
    /// for the frame in progress (that buffer lives in the connection, which
    /// is kept, untouched, until this completes).
    RecvDirect(usize),
    /// A `sendmsg` (or `sendmsg` zero-copy) of connection `key`'s batch.
    Send(usize, SendBatch),
    /// A zero-copy send whose result is in but whose buffer notification is
    /// not: the batch stays alive until the kernel stops referencing its pages.
    /// `resume` is `Some((conn, written))` when the connection waits for the batch
    /// back to continue it (a short send).
    ZcNotify(SendBatch, Option<(usize, usize)>),
    /// Momentarily in place of an entry whose contents are being moved to a
    /// new state; never seen by the kernel's completions.
    Taken,
}

/// One completion, copied out of the ring so the loop can submit while handling it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub(crate) user_data: u64,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// Whether more CQEs will come for the same operation (`IORING_CQE_F_MORE`).
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// Whether this is a zero-copy send's buffer notification (`IORING_CQE_F_NOTIF`).
    pub(crate) fn notif(&self) -> bool {
        cqueue::notif(self.flags)
    }

    /// The provided buffer the kernel filled (`IORING_CQE_F_BUFFER`).
    pub(crate) fn buffer_id(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// A ring and the operations in flight on it.
pub(crate) struct Ops {
    ring: IoUring,
    slab: Slab<Op>,
}

impl Ops {
    /// Wraps a ring with no operation in flight.
    pub(crate) fn new(ring: IoUring) -> Self {
        Self {
            ring,
            slab: Slab::with_capacity(256),
        }
    }

    /// The ring, to register buffers or probe.
    pub(crate) fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// Operations in flight.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Records `op` and queues `sqe` for it; returns the operation's key.
    ///
    /// # Safety
    /// Every pointer in `sqe` must point into memory that stays valid and
    /// unmoved until the operation's last CQE: memory owned by `op` (heap
    /// memory, which moving the entry into the slab does not move), or memory
    /// the caller guarantees outlives the operation.
    pub(crate) unsafe fn start(&mut self, sqe: squeue::Entry, op: Op) -> usize {
        let key = self.slab.insert(op);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push(sqe.user_data(key as u64)) };
        key
    }

    /// Asks the kernel to cancel operation `key`. Its entry stays until its last
    /// CQE arrives (usually `-ECANCELED`), so its memory stays valid until then.
    pub(crate) fn cancel(&mut self, key: usize) {
        if !self.slab.contains(key) {
            return;
        }
        let sqe = opcode::AsyncCancel::new(key as u64).build().user_data(IGNORED);
        // SAFETY: an async cancel carries no pointer, only the target's user_data.
        unsafe { self.push(sqe) };
    }

    /// # Safety
    /// As [`start`](Self::start).
    unsafe fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // The submission queue is full: hand what it holds to the kernel.
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // The completion queue is backed up: make room by waiting once.
                    let _ = self.ring.submit_and_wait(1);
                }
                Err(e) => tracing::warn!(error = %e, "io_uring submit failed; retrying"),
            }
        }
    }

    /// The entry of operation `key`, if in flight.
    pub(crate) fn get(&self, key: usize) -> Option<&Op> {
        self.slab.get(key)
    }

    /// The entry of operation `key`, if in flight, to change it.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Op> {
        self.slab.get_mut(key)
    }

    /// Takes the contents of operation `key`'s entry, leaving [`Op::Taken`]
    /// in its place: the operation is still in flight (more CQEs will come)
    /// and its new state is [`put`](Self::put) back before the next completion.
    pub(crate) fn take(&mut self, key: usize) -> Option<Op> {
        self.slab
            .get_mut(key)
            .map(|slot| std::mem::replace(slot, Op::Taken))
    }

    /// Puts the new state of operation `key` in its entry.
    pub(crate) fn put(&mut self, key: usize, op: Op) {
        if let Some(slot) = self.slab.get_mut(key) {
            *slot = op;
        }
    }

    /// Takes the entry of operation `key` out: its last CQE has arrived, so
    /// the kernel no longer touches its memory.
    pub(crate) fn finish(&mut self, key: usize) -> Option<Op> {
        self.slab.try_remove(key)
    }

    /// Submits what is queued and waits until at least `want` completions are
    /// ready (one `io_uring_enter`). Interruptions are not errors.
    ///
    /// # Errors
    /// The OS error of `io_uring_enter`, other than `EINTR`, `EAGAIN` and `EBUSY`.
    pub(crate) fn submit_and_wait(&mut self, want: usize) -> io::Result<()> {
        match self.ring.submit_and_wait(want) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether completions are ready, or task work the kernel deferred to our
    /// next `io_uring_enter` is pending (`IORING_SQ_TASKRUN`). No system call.
    pub(crate) fn work_ready(&mut self) -> bool {
        !self.ring.completion().is_empty() || self.ring.submission().taskrun()
    }

    /// Moves every ready completion into `out`.
    pub(crate) fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.ring.completion().map(|cqe| Completion {
            user_data: cqe.user_data(),
            result: cqe.result(),
            flags: cqe.flags(),
        }));
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        if !self.slab.is_empty() {
            // Only on an abnormal exit (a panic in the loop): the kernel may still
            // write into these buffers after the ring closes, so never free them.
            tracing::error!(
                ops = self.slab.len(),
                "io_uring loop ended with operations in flight; leaking their buffers"
            );
            std::mem::forget(std::mem::take(&mut self.slab));
        }
    }
}
