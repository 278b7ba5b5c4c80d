//! The ring's table of registered sockets (`IORING_REGISTER_FILES`, sparse,
//! Linux 5.19), when [`UringConf::fixed_files`](crate::UringConf::fixed_files) is on.
//!
//! A registered socket is named in SQEs by its index (`IOSQE_FIXED_FILE`), so
//! the kernel skips looking the descriptor up and counting a reference on
//! every operation. The table holds its own reference to each file: a
//! connection's slot is released when the connection is dropped, after its
//! last operation completed.

use std::os::fd::RawFd;

use io_uring::IoUring;

use crate::conf::FIXED_FILE_SLOTS;

/// Free slots of one loop's file table; empty when the table is off.
pub(crate) struct FileTable {
    free: Vec<u32>,
}

impl FileTable {
    /// Registers a sparse table of [`FIXED_FILE_SLOTS`] slots on `ring` if `enabled`;
    /// if the kernel refuses, logs why and runs without one.
    pub(crate) fn new(ring: &IoUring, enabled: bool) -> Self {
        if !enabled {
            return Self { free: Vec::new() };
        }
        match ring.submitter().register_files_sparse(FIXED_FILE_SLOTS) {
            Ok(()) => Self {
                free: (0..FIXED_FILE_SLOTS).rev().collect(),
            },
            Err(error) => {
                tracing::warn!(%error, "registering a file table failed; sockets are named by descriptor");
                Self { free: Vec::new() }
            }
        }
    }

    /// Puts `fd` in a free slot and returns its index; `None` when the table
    /// is off or full, or the kernel refuses (the socket is then used by descriptor).
    pub(crate) fn register(&mut self, ring: &IoUring, fd: RawFd) -> Option<u32> {
        let slot = self.free.pop()?;
        match ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(error) => {
                tracing::debug!(%error, slot, "could not register a socket; using its descriptor");
                self.free.push(slot);
                None
            }
        }
    }

    /// Empties `slot` (the table drops its reference to the socket) and frees it.
    pub(crate) fn unregister(&mut self, ring: &IoUring, slot: u32) {
        if let Err(error) = ring.submitter().register_files_update(slot, &[-1]) {
            tracing::warn!(%error, slot, "could not empty a file table slot; it stays in use");
            return;
        }
        self.free.push(slot);
    }
}
