//! One connection on its loop: adoption, the receive path, and closing.
//!
//! - **Receive**: a multishot recv picks buffers from the loop's
//!   provided-buffer ring; each completion's buffer is frozen into `Bytes`
//!   and fed to the [`FrameDecoder`], so frame bodies are slices of the
//!   memory the kernel wrote. `ENOBUFS` (ring dry) or the end of the multishot
//!   re-arms it; the bytes wait in the socket, so none is lost or reordered.
//!   When a frame is still missing at least `direct_read_min` bytes, the
//!   multishot recv is cancelled and plain recvs go straight into that frame's
//!   own buffer until it is complete. After such a frame the connection's
//!   next recv is a single-shot one into one provided buffer: a multishot
//!   recv would fill up to 32 buffers with the next large frame's body (the
//!   kernel's retries per wake-up) before its cancellation lands, each a
//!   copy the direct read avoids. A frame that then turns out small goes
//!   back to multishot.
//! - **Limits**: [`EventLoop::arm_recv`] does not arm a recv while the
//!   client says to pause reading ([`TransportClient::should_pause_reading`]:
//!   too many bytes queued to write, or too many requests unanswered), and a
//!   recv completion that finds it so cancels the multishot recv. Bytes that
//!   recv still delivers before the cancellation lands are held, in order,
//!   and decoded on resume, so no frame reaches the handler while the
//!   connection is over a limit. So are the bytes of a direct read that
//!   completes after a pause began (they stay in the frame's buffer and are
//!   committed to the decoder on resume). The peer then gets TCP
//!   backpressure. Every send completion and every queued frame (an answer
//!   included) flushes the connection, which calls `arm_recv` again: it
//!   re-arms once [`TransportClient::may_resume_reading`] holds. A
//!   [`ReadPause`](transport::ReadPause) taken by the layer above (an RPC inbox
//!   that is full) pauses it the same way, and dropping the last one posts a
//!   flush of the connection (`wake_reader` in `sink.rs`), so it re-arms.
//! - **Close**: whatever ends the connection (EOF, an error, `close()`, the
//!   transport's shutdown) goes through [`EventLoop::close_connection`]: the
//!   sink refuses sends, outstanding RPCs fail, `channel_inactive` runs, in-flight
//!   operations are cancelled, and the socket is closed once the last of their
//!   CQEs is in, so no operation ever sees a reused descriptor.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Bytes;
use io_uring::opcode;
use transport::{
    BufferPool, ConnectionId, ConnectionRegistry, FrameDecoder, TransportClient, TransportError,
    TransportHandler, WriteQueue,
};

use crate::ops::{Completion, Op};
use crate::ring_loop::{Adopt, EventLoop};
use crate::sink::{SinkHandle, SinkShared};
use transport::ConnectionPermit;

/// Everything a new connection needs; built by the server or the connector.
pub(crate) struct ConnectionParams {
    pub(crate) id: ConnectionId,
    pub(crate) pool: BufferPool,
    pub(crate) handler: Arc<dyn TransportHandler>,
    pub(crate) registries: Vec<ConnectionRegistry>,
    /// An accepted connection's place under its server's `max_connections`.
    pub(crate) permit: Option<ConnectionPermit>,
}

/// Received bytes to feed to a connection's decoder.
enum Chunk {
    /// A provided buffer's bytes.
    Bytes(Bytes),
    /// This many bytes were read straight into the frame in progress.
    Direct(usize),
}

/// A connection's state on its loop.
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) stream: TcpStream,
    pub(crate) client: TransportClient,
    pub(crate) handler: Arc<dyn TransportHandler>,
    pub(crate) sink: Arc<SinkShared>,
    decoder: FrameDecoder,
    /// Frames taken from the sink and not yet written; `None` while a send owns them.
    pub(crate) queue: Option<WriteQueue>,
    /// The recv in flight, and whether it is a direct one.
    recv: Option<(usize, bool)>,
    /// The last frame was large enough to be read directly: the next recv
    /// takes one provided buffer (single shot), not a multishot run of them.
    large_frames: bool,
    /// A multishot recv is being cancelled: to switch to direct reads, or to
    /// pause reading.
    cancelling: bool,
    /// Reading is paused by the connection's limits: no recv is armed until
    /// the client allows reading again.
    read_paused: bool,
    /// Bytes a multishot recv delivered after reading paused (before its
    /// cancellation took effect), fed to the decoder, in order, on resume.
    held: VecDeque<Bytes>,
    /// Bytes a direct read put into the frame in progress after reading
    /// paused: committed to the decoder on resume, before `held` (which is
    /// empty while a direct read is in flight).
    held_direct: usize,
    /// The send (or zero-copy notification) holding the queue.
    pub(crate) send: Option<usize>,
    pub(crate) dirty: bool,
    pub(crate) closing: bool,
    registries: Vec<ConnectionRegistry>,
    /// The socket's index in the ring's file table, when registered there.
    pub(crate) fixed: Option<u32>,
    /// Holds the connection's place under its server's `max_connections`
    /// until it leaves the slab.
    _permit: Option<ConnectionPermit>,
}

/// Builds an SQE on connection `$conn`'s socket: by its index in the ring's
/// file table when registered (`types::Fixed`), by its descriptor otherwise.
macro_rules! on_socket {
    ($conn:expr, |$target:ident| $build:expr) => {
        match $conn.fixed {
            Some(slot) => {
                let $target = io_uring::types::Fixed(slot);
                $build
            }
            None => {
                let $target = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&$conn.stream));
                $build
            }
        }
    };
}
pub(crate) use on_socket;

impl EventLoop {
    /// Starts serving `a.stream`: registers it, calls `channel_active`, arms
    /// its recv, and replies with its client.
    pub(crate) fn adopt(&mut self, a: Adopt) {
        let Adopt {
            stream,
            params,
            reply,
        } = a;
        let result = self.start_connection(stream, params);
        match reply {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not start an accepted connection");
                }
            }
        }
    }

    fn start_connection(
        &mut self,
        stream: TcpStream,
        p: ConnectionParams,
    ) -> Result<TransportClient, TransportError> {
        let peer = stream
            .peer_addr()
            .map_err(|e| TransportError::io("start", unspecified(), &e))?;
        if self.stopping {
            return Err(TransportError::Shutdown);
        }
        let local = stream
            .local_addr()
            .map_err(|e| TransportError::io("start", peer, &e))?;
        let fixed = self.files.register(self.ops.ring(), stream.as_raw_fd());
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let sink = Arc::new(SinkShared::new(peer, key, p.id, Arc::downgrade(&self.handle)));
        let conf = &self.conf.transport;
        let client = TransportClient::new(p.id, local, peer, conf, Box::new(SinkHandle(sink.clone())));
        for r in &p.registries {
            r.insert(&client);
        }
        entry.insert(Connection {
            id: p.id,
            stream,
            client: client.clone(),
            handler: p.handler.clone(),
            sink,
            decoder: FrameDecoder::new(conf.max_frame_size, p.pool),
            queue: Some(WriteQueue::new()),
            recv: None,
            large_frames: false,
            cancelling: false,
            read_paused: false,
            held: VecDeque::new(),
            held_direct: 0,
            send: None,
            dirty: false,
            closing: false,
            registries: p.registries,
            fixed,
            _permit: p.permit,
        });
        // One send scratch space per connection, made now rather than at the
        // first turn that flushes more connections at once than ever before:
        // then no send allocates one (`recycle` keeps up to one per connection).
        if self.send_scratch.len() < self.conns.len() {
            self.send_scratch.push(crate::send::SendScratch::new());
        }
        transport::contain_panic("channel_active", client.peer_addr(), || {
            p.handler.channel_active(&client)
        });
        // Arms the recv (and flushes anything `channel_active` sent) this turn.
        self.mark_dirty(key);
        Ok(client)
    }

    /// Arms the connection's recv if none is in flight and its limits allow
    /// reading: direct into the frame in progress when it is large, multishot
    /// into provided buffers otherwise.
    pub(crate) fn arm_recv(&mut self, key: usize) {
        let direct_min = self.conf.uring.direct_read_min;
        let bgid = self.buf_ring.group();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing || conn.recv.is_some() {
            return;
        }
        conn.read_paused = if conn.read_paused {
            !conn.client.may_resume_reading()
        } else {
            conn.client.should_pause_reading()
        };
        if conn.read_paused {
            return;
        }
        if (!conn.held.is_empty() || conn.held_direct > 0) && !self.feed_held(key) {
            // Still over a limit (or closed) after delivering some of them.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.read_paused = true;
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.cancelling = false;
        let direct = reads_directly(conn.decoder.pending_bytes(), direct_min);
        let op = if direct {
            conn.large_frames = true;
            let buf = conn.decoder.direct_read_buf().unwrap_or_default();
            // MSG_WAITALL: one completion for the rest of the frame, not one per segment.
            let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(1 << 30) as u32);
            let sqe = on_socket!(conn, |fd| opcode::Recv::new(fd, ptr, len)
                .flags(libc::MSG_WAITALL)
                .build());
            // SAFETY: the buffer is the unfilled part of the decoder's frame in
            // progress, heap memory owned by this connection. The connection is
            // kept in the slab until this recv's CQE (close waits for `recv` to
            // clear), and its decoder is not fed while a recv is in flight.
            unsafe { self.ops.start(sqe, Op::RecvDirect(key)) }
        } else if conn.large_frames {
            // One provided buffer's worth: the header of the next frame, and
            // the start of its body, which then goes direct if it is large.
            let len = u32::try_from(self.conf.uring.buf_size).unwrap_or(u32::MAX);
            let sqe = on_socket!(conn, |fd| opcode::Recv::new(fd, std::ptr::null_mut(), len)
                .buf_group(bgid)
                .build()
                .flags(io_uring::squeue::Flags::BUFFER_SELECT));
            // SAFETY: no pointer: the kernel picks the buffer from the
            // provided-buffer ring, whose memory the loop keeps registered
            // until it ends.
            unsafe { self.ops.start(sqe, Op::Recv(key)) }
        } else {
            let sqe = on_socket!(conn, |fd| opcode::RecvMulti::new(fd, bgid).build());
            // SAFETY: no pointer: the kernel picks buffers from the provided-buffer
            // ring, whose memory the loop keeps registered until it ends.
            unsafe { self.ops.start(sqe, Op::Recv(key)) }
        };
        conn.recv = Some((op, direct));
    }

    /// Handles a recv completion: feeds the decoder, then re-arms, switches
    /// to direct reads, pauses, or closes.
    pub(crate) fn on_recv(&mut self, op: usize, c: Completion, direct: bool) {
        let conn_key = match self.ops.get_mut(op) {
            Some(Op::Recv(k) | Op::RecvDirect(k)) => *k,
            _ => return,
        };
        let ended = direct || !c.more();
        if ended {
            self.ops.finish(op);
        }
        // Take the kernel-filled buffer out of the ring whatever happens next,
        // so the ring never loses a slot.
        let data = match c.buffer_id() {
            Some(bid) if c.result > 0 => self.buf_ring.take(bid, c.result as usize),
            Some(bid) => {
                self.buf_ring.recycle(bid);
                None
            }
            None => None,
        };
        let direct_min = self.conf.uring.direct_read_min;
        let Some(conn) = self.conns.get_mut(conn_key) else {
            return;
        };
        if ended {
            conn.recv = None;
        }
        if conn.closing {
            self.maybe_finish(conn_key);
            return;
        }
        let peer = conn.client.peer_addr();
        let outcome = match c.result {
            n if n > 0 => {
                let pending = conn.decoder.pending_bytes();
                let chunk = if direct && pending > 0 {
                    Some(Chunk::Direct((n as usize).min(pending)))
                } else {
                    data.map(Chunk::Bytes)
                };
                let open = match chunk {
                    // Reading is paused (the multishot recv is being cancelled):
                    // keep the bytes, in order, until the limits allow again.
                    Some(Chunk::Bytes(bytes))
                        if !conn.held.is_empty() || conn.client.should_pause_reading() =>
                    {
                        conn.held.push_back(bytes);
                        true
                    }
                    // A pause began while a direct read was in flight: its
                    // bytes wait in the frame's buffer until the limits allow.
                    Some(Chunk::Direct(n)) if conn.client.should_pause_reading() => {
                        conn.held_direct += n;
                        true
                    }
                    Some(chunk) => self.feed(conn_key, chunk),
                    None => true,
                };
                if !open {
                    return;
                }
                Ok(())
            }
            0 => Err(None),
            // The ring ran dry or a switch to direct reads: the recv has ended
            // and is re-armed below; unread bytes wait in the socket, in order.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => Ok(()),
            e => Err(Some(TransportError::io(
                "read from",
                peer,
                &std::io::Error::from_raw_os_error(-e),
            ))),
        };
        let Some(conn) = self.conns.get_mut(conn_key) else {
            return;
        };
        if !direct && conn.large_frames && c.result > 0 {
            // A recv into a provided buffer after a large frame: stay on single
            // shots only while the frame it began is large too.
            conn.large_frames = reads_directly(conn.decoder.pending_bytes(), direct_min);
        }
        match outcome {
            Ok(()) => match conn.recv {
                None => self.mark_dirty(conn_key),
                Some((recv_op, false))
                    if !conn.cancelling
                        && (reads_directly(conn.decoder.pending_bytes(), direct_min)
                            || conn.client.should_pause_reading()) =>
                {
                    // Its final CQE (-ECANCELED) re-arms through `arm_recv`,
                    // which picks direct reads or stays paused.
                    conn.cancelling = true;
                    self.ops.cancel(recv_op);
                }
                Some(_) => {}
            },
            // The peer closed: what it sent before still counts, held bytes included.
            Err(None) => {
                let held_direct = std::mem::take(&mut conn.held_direct);
                if held_direct > 0 && !self.feed(conn_key, Chunk::Direct(held_direct)) {
                    return;
                }
                let Some(conn) = self.conns.get_mut(conn_key) else {
                    return;
                };
                let held = std::mem::take(&mut conn.held);
                for bytes in held {
                    if !self.feed(conn_key, Chunk::Bytes(bytes)) {
                        return;
                    }
                }
                let Some(conn) = self.conns.get_mut(conn_key) else {
                    return;
                };
                match conn.decoder.finish() {
                    Ok(()) => {
                        self.close_connection(conn_key, Some("the peer closed the connection".into()), None)
                    }
                    Err(source) => {
                        let e = TransportError::Decode {
                            peer: conn.client.peer_addr(),
                            source,
                        };
                        self.close_connection(conn_key, Some(e.to_string()), Some(e));
                    }
                }
            }
            Err(Some(e)) => self.close_connection(conn_key, Some(e.to_string()), Some(e)),
        }
    }

    /// Feeds `chunk` to connection `key`'s decoder, delivering every whole
    /// frame in it to the handler. Returns false when that closed the
    /// connection: the bytes did not decode, or a handler or response
    /// callback panicked (which ends its connection, not the loop).
    fn feed(&mut self, key: usize, chunk: Chunk) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let Connection {
            decoder,
            client,
            handler,
            ..
        } = conn;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let mut deliver = |f| client.handle_frame(f, &**handler);
            let decoded = match chunk {
                Chunk::Direct(n) => decoder.commit_direct_read(n, &mut deliver),
                Chunk::Bytes(bytes) => decoder.decode(bytes, &mut deliver),
            };
            if decoded.is_ok() {
                handler.read_complete(client);
            }
            decoded
        }));
        let (reason, error) = match decoded {
            Ok(Ok(())) => return true,
            Ok(Err(source)) => {
                let e = TransportError::Decode {
                    peer: client.peer_addr(),
                    source,
                };
                (e.to_string(), Some(e))
            }
            Err(_) => ("a handler or response callback panicked".to_string(), None),
        };
        self.close_connection(key, Some(reason), error);
        false
    }

    /// Feeds the bytes held while reading was paused, oldest first (a held
    /// direct read, then held buffers), while the limits allow. Returns
    /// whether none is left (false also when feeding closed the connection).
    fn feed_held(&mut self, key: usize) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            if conn.held.is_empty() && conn.held_direct == 0 {
                return true;
            }
            if conn.client.should_pause_reading() {
                return false;
            }
            let chunk = match std::mem::take(&mut conn.held_direct) {
                0 => match conn.held.pop_front() {
                    Some(bytes) => Chunk::Bytes(bytes),
                    None => return true,
                },
                n => Chunk::Direct(n),
            };
            if !self.feed(key, chunk) {
                return false;
            }
        }
    }

    /// Ends connection `key` (once): reports `error`, refuses sends, fails
    /// outstanding RPCs, calls `channel_inactive`, cancels its operations.
    /// `reason` defaults to the one recorded by a local `close()`.
    pub(crate) fn close_connection(
        &mut self,
        key: usize,
        reason: Option<String>,
        error: Option<TransportError>,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        if let Some(e) = &error {
            transport::contain_panic("exception_caught", conn.client.peer_addr(), || {
                conn.handler.exception_caught(&conn.client, e)
            });
        }
        let reason = conn
            .sink
            .mark_closed(reason.as_deref().unwrap_or("closed locally"));
        for r in &conn.registries {
            r.remove(conn.id);
        }
        conn.client.connection_closed(&reason);
        transport::contain_panic("channel_inactive", conn.client.peer_addr(), || {
            conn.handler.channel_inactive(&conn.client)
        });
        let (recv, send) = (conn.recv.map(|(op, _)| op), conn.send);
        for op in [recv, send].into_iter().flatten() {
            self.ops.cancel(op);
        }
        self.maybe_finish(key);
    }

    /// Drops a closing connection (closing its socket) once no operation uses it.
    pub(crate) fn maybe_finish(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.closing && c.recv.is_none() && c.send.is_none())
        {
            let conn = self.conns.remove(key);
            if let Some(slot) = conn.fixed {
                self.files.unregister(self.ops.ring(), slot);
            }
        }
    }
}

/// Whether a frame still missing `pending` bytes is read straight into its
/// own buffer: only a frame in progress (`pending > 0`) can be, whatever
/// `direct_read_min` says. (With `direct_read_min: 0` the loop once armed a
/// direct read of zero bytes between frames, whose result, 0, looked like
/// the peer closing.)
fn reads_directly(pending: usize, direct_read_min: usize) -> bool {
    pending > 0 && pending >= direct_read_min
}

fn unspecified() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 0))
}
