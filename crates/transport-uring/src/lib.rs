//! The io_uring backend of the Spark-style RPC transport.
//!
//! [`UringTransport`] implements [`transport::Transport`] with the same shape
//! as the epoll backend (a group of server event-loop threads and a group of
//! client event-loop threads, sized by `server_threads` and `client_threads`
//! in [`TransportConf`], each owning its connections for their whole life),
//! but each thread drives its own io_uring instead of epoll:
//!
//! - one ring per thread, set up with `IORING_SETUP_SINGLE_ISSUER` and
//!   `IORING_SETUP_DEFER_TASKRUN` when the kernel takes them (Linux 6.1);
//! - one `io_uring_enter` per loop turn that submits everything and waits;
//! - multishot accept, and multishot recv into a provided-buffer ring whose
//!   buffers come from the transport's [`BufferPool`]: frame bodies are slices
//!   of the memory the kernel received into (no copy); the rest of a large
//!   frame is received straight into that frame's own buffer, and after a
//!   large frame the next recv takes one provided buffer (single shot), not
//!   a multishot run of them (+13% at 1 MiB × 4 in flight);
//! - every frame queued on a connection goes out in one `IORING_OP_SENDMSG`
//!   per turn (headers and bodies in place), or `IORING_OP_SENDMSG_ZC` when a
//!   body reaches [`UringConf::zero_copy_threshold`];
//! - other threads' sends wake the ring through an eventfd with a read pending
//!   on it, written only when the loop may be parked.
//! - every socket is registered in the ring's file table and named by index
//!   (`IOSQE_FIXED_FILE`; [`UringConf::fixed_files`], on by default, with
//!   the measurement that chose it).
//!
//! [`UringTransport::new`] runs [`probe`] first and returns
//! [`TransportError::IoModeUnavailable`] naming the cause (seccomp,
//! `kernel.io_uring_disabled`, an old kernel, a missing opcode) when io_uring
//! cannot run; the environment variable `RPC_IO_URING_FORCE_UNAVAILABLE=1`
//! ([`FORCE_UNAVAILABLE_ENV`]) forces that path, to test fallbacks.
//! [`FIXED_FILES_ENV`] and [`ZERO_COPY_THRESHOLD_ENV`] tune a transport built with
//! [`UringTransport::new`] without code changes. How long an idle loop polls
//! its completion queue before parking is the shared
//! [`TransportConf::spin_before_park_us`](transport::TransportConf::spin_before_park_us)
//! (adaptive, [`SpinPolicy`](transport::SpinPolicy)).
//!
//! # Performance notes (2 vCPU VM, loopback, one connection, release build)
//!
//! Measured with `examples/echo_bench.rs`, medians of alternating runs:
//!
//! - about 0.06 `io_uring_enter` calls per request (under `strace -c`; the
//!   epoll backend made ~0.2 system calls per request in the same run); with
//!   spinning off (`spin_before_park_us = 0`) throughput equals the epoll backend's
//!   (64 B × 64 in flight: ~0.88M req/s each) because both ends park after
//!   every batch and waking a halted vCPU (~30 µs) dominates;
//! - spinning 30 µs before parking, on an idle machine:
//!   64 B × 64 in flight ~3.0M req/s, 64 B × 1 ~100k, 4 KiB × 16 ~700k
//!   (3–6× epoll); spinning is now on by default and adaptive (see
//!   `docs/PERFORMANCE.md` for what it does under CPU contention);
//! - `SENDMSG_ZC` to a loopback peer: 1 MiB × 4 in flight 1.6k vs 2.8k req/s
//!   without it, 128 KiB × 8 13.4k vs 22.3k: the kernel copies for a local
//!   receiver anyway and the notification waits for the peer. Zero copy is
//!   off by default ([`UringConf::zero_copy_threshold`] = 0); enable it for
//!   large bodies to remote peers over a real NIC, and measure.
//!
//! # Example
//!
//! An echo server and one RPC over loopback:
//!
//! ```
//! use std::sync::{Arc, mpsc};
//! use bytes::Bytes;
//! use transport::{Transport, TransportClient, TransportConf, TransportHandler};
//! use transport_uring::UringTransport;
//!
//! struct Echo;
//! impl TransportHandler for Echo {
//!     fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
//!         client.send_response(request_id, body).unwrap();
//!     }
//!     fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
//! }
//!
//! let transport = match UringTransport::new(TransportConf::default()) {
//!     Ok(t) => t,
//!     Err(e) => return eprintln!("no io_uring here: {e}"), // fall back to epoll
//! };
//! let server = transport.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Echo)).unwrap();
//! let client = transport.connect(server.local_addr(), Arc::new(Echo)).unwrap();
//! let (tx, rx) = mpsc::channel();
//! client.send_rpc(Bytes::from_static(b"ping"), move |r| tx.send(r).unwrap()).unwrap();
//! assert_eq!(&rx.recv().unwrap().unwrap()[..], b"ping");
//! transport.shutdown();
//! ```

#[cfg(test)]
mod alloc_count;
mod buf_ring;
mod conf;
mod connection;
mod files;
mod group;
mod ops;
mod probe;
mod ring_loop;
mod send;
mod server;
mod sink;
mod socket;
mod transport_impl;

pub use conf::{FIXED_FILE_SLOTS, FIXED_FILES_ENV, UringConf, ZERO_COPY_THRESHOLD_ENV};
pub use probe::{FORCE_UNAVAILABLE_ENV, MIN_KERNEL, ProbeReport, UringUnavailable, probe};
pub use transport_impl::UringTransport;

#[doc(no_inline)]
pub use transport::{BufferPool, TransportConf, TransportError};
