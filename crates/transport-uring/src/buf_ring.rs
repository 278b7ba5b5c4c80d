//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19) whose
//! buffers come from the transport's [`BufferPool`].
//!
//! Multishot recvs pick a buffer from the ring themselves and say which one
//! (`bid`) in the CQE. [`BufRing::take`] then takes that slot's
//! [`PooledBufMut`] out, commits the bytes the kernel wrote, freezes it into
//! [`Bytes`] (frame bodies become slices of it: zero copy) and puts a fresh
//! pool buffer in the slot, so the ring is full again after every completion
//! is handled. Freezing allocates nothing (the pool allocates a buffer's
//! shared header with its memory, so a slot's buffer, used by the kernel only
//! after every other slot's, costs nothing when it is). The pool gets the
//! filled buffer back at once but reuses it
//! only after its last slice drops, so a buffer in a slot is never one that
//! some `Bytes` still reads, and its address stays fixed while the kernel
//! owns it.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::Bytes;
use io_uring::IoUring;
use io_uring::types::BufRingEntry;
use transport::{BufferPool, PooledBufMut};

/// The ring's memory must be page aligned.
const PAGE: usize = 4096;

/// A registered provided-buffer ring with one pool buffer per slot.
pub(crate) struct BufRing {
    base: *mut BufRingEntry,
    layout: Layout,
    mask: u16,
    tail: u16,
    bgid: u16,
    bufs: Vec<Option<PooledBufMut>>,
    buf_size: usize,
    pool: BufferPool,
}

impl BufRing {
    /// Allocates a ring of `entries` slots (a power of two, at most 32768),
    /// fills each with a `buf_size`-byte pool buffer and registers it with
    /// `ring` as buffer group `bgid`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad `entries`; the OS error of the registration
    /// (`EINVAL` before Linux 5.19, `ENOMEM` past the locked-memory limit).
    pub(crate) fn new(
        ring: &IoUring,
        pool: BufferPool,
        entries: u16,
        buf_size: usize,
        bgid: u16,
    ) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer ring entries must be a power of two up to 32768, not {entries}"),
            ));
        }
        let bytes = (entries as usize * size_of::<BufRingEntry>()).next_multiple_of(PAGE);
        let layout = Layout::from_size_align(bytes, PAGE).map_err(io::Error::other)?;
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) } as *mut BufRingEntry;
        if base.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut this = Self {
            base,
            layout,
            mask: entries - 1,
            tail: 0,
            bgid,
            bufs: (0..entries).map(|_| None).collect(),
            buf_size,
            pool,
        };
        for bid in 0..entries {
            let buf = this.pool.allocate(buf_size);
            this.provide(bid, buf);
        }
        // SAFETY: `base` points to `entries` zero-initialised, page-aligned
        // entries that stay allocated until `drop`, which the loop runs only
        // after the ring is gone or the group unregistered.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(base as u64, entries, bgid, 0)?
        };
        Ok(this)
    }

    /// The buffer group id recvs name to use this ring.
    pub(crate) fn group(&self) -> u16 {
        self.bgid
    }

    /// Puts `buf` in slot `bid` and publishes it to the kernel.
    fn provide(&mut self, bid: u16, mut buf: PooledBufMut) {
        buf.clear();
        let spare = buf.spare_mut();
        let (addr, len) = (
            spare.as_mut_ptr() as u64,
            spare.len().min(u32::MAX as usize) as u32,
        );
        let index = (self.tail & self.mask) as usize;
        // SAFETY: `index` is below the ring's entry count, so the entry lies in
        // our allocation; the kernel only reads entries between its head and
        // our tail, and this one is past the tail until we publish it below.
        let entry = unsafe { &mut *self.base.add(index) };
        entry.set_addr(addr);
        entry.set_len(len);
        entry.set_bid(bid);
        // The buffer's heap memory does not move when the `PooledBufMut` moves
        // into the slot; it stays there until the kernel hands it back by `bid`.
        self.bufs[bid as usize] = Some(buf);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays entry 0's `resv`, inside the ring and
        // suitably aligned for a u16; the kernel reads it concurrently, so
        // store it atomically with release ordering after the entry is written.
        unsafe {
            let tail = BufRingEntry::tail(self.base) as *mut u16;
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `n` bytes the kernel received into buffer `bid`, as `Bytes` over
    /// that very memory; the slot gets a fresh buffer. `None` for an unknown
    /// or empty slot (never expected; the caller treats it as a bad completion).
    pub(crate) fn take(&mut self, bid: u16, n: usize) -> Option<Bytes> {
        let mut buf = self.bufs.get_mut(bid as usize)?.take()?;
        let fresh = self.pool.allocate(self.buf_size);
        self.provide(bid, fresh);
        buf.commit(n.min(buf.remaining_mut()));
        Some(buf.freeze())
    }

    /// Gives slot `bid` back to the kernel unused (a completion that picked a
    /// buffer but carried no data).
    pub(crate) fn recycle(&mut self, bid: u16) {
        if let Some(buf) = self.bufs.get_mut(bid as usize).and_then(Option::take) {
            self.provide(bid, buf);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        self.bufs.clear();
        // SAFETY: allocated in `new` with this layout; the kernel no longer
        // reads it (the loop unregisters the group or closes the ring first).
        unsafe { dealloc(self.base as *mut u8, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::allocations_in;
    use crate::probe::build_ring;

    /// The kernel takes the slots in turn, so in a run each slot's buffer is
    /// first frozen only after as many receives as the ring has slots, and so
    /// is the buffer the pool allocates for the first slot handed back: none
    /// of those receives may allocate. (They did, once per slot, and at 256
    /// connections with a ring each that kept `rpc-bench` out of its steady
    /// state for more than a second.)
    #[test]
    fn going_round_the_slots_allocates_nothing() {
        const ENTRIES: u16 = 64;
        let (ring, _) = build_ring(8).expect("io_uring is available on this machine");
        let pool = BufferPool::new(64 << 20);
        let mut slots = BufRing::new(&ring, pool.clone(), ENTRIES, 16 << 10, 0)
            .expect("the kernel takes provided-buffer rings (Linux 5.19)");
        // Warm: the pool's first fresh buffer (slot 0's replacement: the ring
        // is full, so nothing is free yet) and this thread's cache of the pool.
        drop(slots.take(0, 100).expect("slot 0 holds a buffer"));
        let (received, n) = allocations_in(|| {
            let mut received = 0;
            for bid in (1..ENTRIES).chain(0..ENTRIES) {
                received += slots.take(bid, 100).expect("every slot holds a buffer").len();
            }
            received
        });
        assert_eq!(received, 100 * (2 * ENTRIES as usize - 1));
        assert_eq!(n, 0, "{n} allocations going round {ENTRIES} slots");
        assert_eq!(
            pool.stats().served_fresh,
            u64::from(ENTRIES) + 1,
            "{:?}",
            pool.stats()
        );
        // The registration goes with the ring, before the slots' memory.
        drop(ring);
        drop(slots);
    }
}
