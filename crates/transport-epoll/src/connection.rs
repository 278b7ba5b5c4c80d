//! One connection on an event loop: a reader task, a writer task, and the
//! `FrameSink` other threads send through.
//!
//! - **Read**: the reader waits for readability first and only then takes a
//!   buffer from the pool, so an idle connection holds no receive buffer. Each
//!   read's bytes are frozen into a `Bytes` and handed to the shared
//!   [`FrameDecoder`]; frame bodies are slices of that buffer. The read size
//!   adapts to what reads return (Netty's `AdaptiveRecvByteBufAllocator`), and
//!   the rest of a large frame is read straight into that frame's own buffer.
//! - **Write**: `send` appends to a queue under a short lock and wakes the
//!   writer; the writer takes the whole queue and writes it with vectored
//!   writes (headers and bodies in place), so frames queued while it was busy
//!   go out together.
//! - **Limits**: before each read, and before decoding what a read got, the
//!   reader asks the client whether to pause
//!   ([`TransportClient::should_pause_reading`]: too many bytes queued to
//!   write, or too many requests unanswered). If so it waits, not reading, so
//!   the peer gets TCP backpressure; the writer, after each write, wakes it once
//!   [`TransportClient::may_resume_reading`] holds. An answer's count goes down
//!   before it is queued, and the writer writes it, so no wake-up is missed.
//!   A [`ReadPause`](transport::ReadPause) taken by the layer above (an RPC
//!   inbox that is full) pauses it the same way; dropping the last one calls
//!   [`FrameSink::wake_reader`], which wakes the paused reader.
//! - **Close**: whoever ends the connection (EOF, an error, `close()`, the
//!   transport's shutdown) leads to the [`ConnectionGuard`] being dropped on the
//!   loop thread, which refuses further sends, fails outstanding RPCs, and
//!   calls `channel_inactive`, exactly once. Handler calls made as a
//!   connection starts or ends are run under [`transport::contain_panic`]:
//!   a panic there is logged, and the loop (and the process: `Drop` may run
//!   while a handler's panic unwinds the reader) goes on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use transport::{
    BufferPool, ConnectionId, ConnectionRegistry, EncodedFrame, FrameDecoder, FrameSink, MAX_IOV,
    TransportClient, TransportConf, TransportError, TransportHandler, WriteQueue,
};

use transport::ConnectionPermit;

/// Smallest and largest read buffer, in bytes.
const MIN_READ: usize = 2 << 10;
const MAX_READ: usize = 64 << 10;
const INITIAL_READ: usize = 8 << 10;
/// A split frame missing at least this many bytes is read straight into its own buffer.
const DIRECT_READ_MIN: usize = 16 << 10;
/// Slices per vectored write.
const IOV_PER_WRITE: usize = if MAX_IOV < 512 { MAX_IOV } else { 512 };

#[derive(Default)]
struct SinkState {
    queue: VecDeque<EncodedFrame>,
    closed: bool,
    reason: Option<String>,
    /// `close_after_flush` was called: close once the queue is written.
    close_when_flushed: bool,
}

/// The queue between senders (any thread) and the connection's writer task.
pub(crate) struct EpollSink {
    state: Mutex<SinkState>,
    active: AtomicBool,
    writer_wake: Notify,
    /// Set while the reader waits for the connection's limits to allow reading.
    read_paused: AtomicBool,
    /// Wakes a paused reader.
    reader_wake: Notify,
    reader: OnceLock<AbortHandle>,
    peer: std::net::SocketAddr,
}

impl EpollSink {
    fn state(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses further sends and records why (the first reason wins).
    fn mark_closed(&self, reason: &str) {
        let mut st = self.state();
        if !st.closed {
            st.closed = true;
            st.reason = Some(reason.to_string());
        }
        let dropped = st.queue.len();
        if dropped > 0 {
            // RPCs among them fail with ConnectionClosed; one-way messages are lost (at most once).
            tracing::warn!(peer = %self.peer, dropped, %reason, "frames queued on a closing connection were dropped unwritten");
        }
        st.queue.clear();
        self.active.store(false, Ordering::Release);
        drop(st);
        self.writer_wake.notify_one();
    }

    /// Waits, not reading, until `client`'s limits allow reading again.
    async fn pause_reading(&self, client: &TransportClient) {
        // SeqCst on the flag and on the client's counts: either the writer
        // sees the flag after changing a count, or the check here sees the change.
        self.read_paused.store(true, Ordering::SeqCst);
        tracing::debug!(
            peer = %self.peer,
            queued_bytes = client.queued_bytes(),
            in_flight_requests = client.in_flight_requests(),
            read_pauses = client.read_pauses(),
            "pausing reads until answers are written and the layer above resumes them"
        );
        while !client.may_resume_reading() {
            self.reader_wake.notified().await;
        }
        self.read_paused.store(false, Ordering::SeqCst);
    }

    /// Called by the writer after a write: wakes a paused reader that may read again.
    fn resume_reader_if_allowed(&self, client: &TransportClient) {
        if self.read_paused.load(Ordering::SeqCst) && client.may_resume_reading() {
            // Stores a permit if the reader is not waiting yet; it re-checks anyway.
            self.reader_wake.notify_one();
        }
    }
}

/// Forwards `FrameSink` calls to the shared sink.
struct SinkHandle(Arc<EpollSink>);

impl FrameSink for SinkHandle {
    fn send(&self, frame: EncodedFrame) -> Result<(), TransportError> {
        let mut st = self.0.state();
        if st.closed {
            return Err(TransportError::ConnectionClosed {
                peer: self.0.peer,
                reason: st.reason.clone().unwrap_or_else(|| "closed".into()),
            });
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(frame);
        drop(st);
        // A non-empty queue means the writer has been woken already and will take this frame too.
        if was_empty {
            self.0.writer_wake.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        self.0.mark_closed("closed locally");
        if let Some(reader) = self.0.reader.get() {
            reader.abort();
        }
    }

    fn close_after_flush(&self) {
        self.0.state().close_when_flushed = true;
        self.0.writer_wake.notify_one();
    }

    fn is_active(&self) -> bool {
        self.0.active.load(Ordering::Acquire)
    }

    fn wake_reader(&self) {
        // The pause count went to 0 (SeqCst) before this load: either the
        // reader, re-checking after setting the flag, sees it, or this sees the flag.
        if self.0.read_paused.load(Ordering::SeqCst) {
            // Stores a permit if the reader is not waiting yet; it re-checks anyway.
            self.0.reader_wake.notify_one();
        }
    }
}

/// Ends the connection when dropped: on the reader task's exit, abort, or the
/// runtime's shutdown, whichever comes first.
struct ConnectionGuard {
    sink: Arc<EpollSink>,
    client: TransportClient,
    handler: Arc<dyn TransportHandler>,
    registries: Vec<ConnectionRegistry>,
    /// Holds the connection's place under its server's `max_connections`
    /// until the connection has ended (dropped after `drop` below).
    _permit: Option<ConnectionPermit>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.sink.mark_closed("connection closed");
        let reason = self.sink.state().reason.clone().unwrap_or_default();
        for r in &self.registries {
            r.remove(self.client.id());
        }
        self.client.connection_closed(&reason);
        // Contained: this may run while a panic unwinds the reader task, and
        // a second panic there would abort the process.
        transport::contain_panic("channel_inactive", self.client.peer_addr(), || {
            self.handler.channel_inactive(&self.client)
        });
    }
}

/// Everything a new connection needs; built by the server or the connector.
pub(crate) struct ConnectionParams {
    pub(crate) id: ConnectionId,
    pub(crate) conf: Arc<TransportConf>,
    pub(crate) pool: BufferPool,
    pub(crate) handler: Arc<dyn TransportHandler>,
    pub(crate) registries: Vec<ConnectionRegistry>,
    /// An accepted connection's place under its server's `max_connections`.
    pub(crate) permit: Option<ConnectionPermit>,
}

/// Starts serving `stream` on the current event loop (call from a task on it):
/// registers it, calls `channel_active`, then spawns its reader and writer.
pub(crate) fn start(stream: TcpStream, p: ConnectionParams) -> std::io::Result<TransportClient> {
    // New work for the loop: a spin that runs this (and `channel_active`)
    // ends here instead of counting its length as lost CPU.
    crate::spin::mark_activity();
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    let sink = Arc::new(EpollSink {
        state: Mutex::new(SinkState::default()),
        active: AtomicBool::new(true),
        writer_wake: Notify::new(),
        read_paused: AtomicBool::new(false),
        reader_wake: Notify::new(),
        reader: OnceLock::new(),
        peer,
    });
    let client = TransportClient::new(p.id, local, peer, &p.conf, Box::new(SinkHandle(sink.clone())));
    for r in &p.registries {
        r.insert(&client);
    }
    let (rd, wr) = stream.into_split();
    transport::contain_panic("channel_active", peer, || p.handler.channel_active(&client));
    tokio::spawn(write_loop(sink.clone(), wr, client.clone(), p.handler.clone()));
    let guard = ConnectionGuard {
        sink: sink.clone(),
        client: client.clone(),
        handler: p.handler.clone(),
        registries: p.registries,
        _permit: p.permit,
    };
    let decoder = FrameDecoder::new(p.conf.max_frame_size, p.pool.clone());
    // The guard moves into the task, so it drops (and ends the connection) even
    // if the task is aborted before it first runs.
    let reader = tokio::spawn(read_loop(rd, decoder, p.pool, guard));
    let _ = sink.reader.set(reader.abort_handle());
    if !client.is_active() {
        reader.abort();
    }
    Ok(client)
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut decoder: FrameDecoder,
    pool: BufferPool,
    guard: ConnectionGuard,
) {
    let client = &guard.client;
    let handler = &*guard.handler;
    let mut read_size = INITIAL_READ;
    let outcome: Result<(), TransportError> = loop {
        if client.should_pause_reading() {
            guard.sink.pause_reading(client).await;
        }
        // Readable first, so that an idle connection holds no buffer. The read
        // itself goes through `AsyncRead` (`poll_read`): readiness is then
        // cleared after a short read, which drained the socket, saving the
        // `read` that `try_read` would need to see `EAGAIN` on every wake-up.
        if let Err(e) = rd.readable().await {
            break Err(TransportError::io("read from", client.peer_addr(), &e));
        }
        let read = if decoder.pending_bytes() >= DIRECT_READ_MIN {
            let buf = decoder.direct_read_buf().expect("a frame is in progress");
            match rd.read(buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => Read::Direct(n),
                Err(e) => break Err(TransportError::io("read from", client.peer_addr(), &e)),
            }
        } else {
            let mut buf = pool.allocate(read_size);
            match rd.read(buf.spare_mut()).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    read_size = next_read_size(read_size, n, buf.capacity());
                    buf.commit(n);
                    Read::Chunk(buf.freeze())
                }
                Err(e) => break Err(TransportError::io("read from", client.peer_addr(), &e)),
            }
        };
        // A limit passed while this read waited (by sends from another thread,
        // say): its bytes wait too, so no frame is delivered over a limit.
        if client.should_pause_reading() {
            guard.sink.pause_reading(client).await;
        }
        let mut deliver = |f| client.handle_frame(f, handler);
        let result = match read {
            Read::Direct(n) => decoder.commit_direct_read(n, &mut deliver),
            Read::Chunk(bytes) => decoder.decode(bytes, &mut deliver),
        };
        crate::spin::mark_activity();
        if let Err(source) = result {
            break Err(TransportError::Decode {
                peer: client.peer_addr(),
                source,
            });
        }
        handler.read_complete(client);
    };
    // The connection ends (EOF or an error): work for the loop, as a read is.
    crate::spin::mark_activity();
    let reason = match outcome {
        Ok(()) => match decoder.finish() {
            Ok(()) => "the peer closed the connection".to_string(),
            Err(source) => {
                let e = TransportError::Decode {
                    peer: client.peer_addr(),
                    source,
                };
                transport::contain_panic("exception_caught", client.peer_addr(), || {
                    handler.exception_caught(client, &e)
                });
                e.to_string()
            }
        },
        Err(e) => {
            transport::contain_panic("exception_caught", client.peer_addr(), || {
                handler.exception_caught(client, &e)
            });
            e.to_string()
        }
    };
    guard.sink.mark_closed(&reason);
}

/// What one read got.
enum Read {
    /// This many bytes, straight into the decoder's frame in progress.
    Direct(usize),
    /// Bytes in a pool buffer.
    Chunk(Bytes),
}

/// Netty-style adaptive sizing: grow when a read filled the buffer, shrink when it used under a quarter.
fn next_read_size(current: usize, read: usize, capacity: usize) -> usize {
    if read == capacity {
        (current * 2).min(MAX_READ)
    } else if read < capacity / 4 {
        (current / 2).max(MIN_READ)
    } else {
        current
    }
}

async fn write_loop(
    sink: Arc<EpollSink>,
    mut wr: OwnedWriteHalf,
    client: TransportClient,
    handler: Arc<dyn TransportHandler>,
) {
    let mut queue = WriteQueue::new();
    let mut taken = VecDeque::new();
    loop {
        {
            let mut st = sink.state();
            if st.closed {
                break;
            }
            std::mem::swap(&mut st.queue, &mut taken);
            if taken.is_empty() && queue.is_empty() && st.close_when_flushed {
                drop(st);
                sink.mark_closed("closed locally after its last frames were written");
                if let Some(reader) = sink.reader.get() {
                    reader.abort();
                }
                break;
            }
        }
        if !taken.is_empty() {
            crate::spin::mark_activity();
        }
        queue.append(&mut taken);
        if queue.is_empty() {
            sink.writer_wake.notified().await;
            continue;
        }
        while !queue.is_empty() {
            // The slices are built inside each poll, on the thread's stack: held
            // across the await they would make every connection's writer
            // future IOV_PER_WRITE * 16 bytes larger, idle or not.
            let write = std::future::poll_fn(|cx| {
                queue.with_io_slices(IOV_PER_WRITE, |slices| {
                    std::pin::Pin::new(&mut wr).poll_write_vectored(cx, slices)
                })
            });
            match write.await {
                Ok(0) => {
                    fail(&client, &*handler, std::io::ErrorKind::WriteZero.into());
                    return;
                }
                Ok(written) => {
                    queue.advance(written);
                    client.frames_written(written);
                    sink.resume_reader_if_allowed(&client);
                }
                Err(e) => {
                    fail(&client, &*handler, e);
                    return;
                }
            }
        }
    }
    // Closed: drop what is unwritten; dropping the write half sends FIN.
    queue.clear();
}

fn fail(client: &TransportClient, handler: &dyn TransportHandler, e: std::io::Error) {
    let err = TransportError::io("write to", client.peer_addr(), &e);
    if client.is_active() {
        transport::contain_panic("exception_caught", client.peer_addr(), || {
            handler.exception_caught(client, &err)
        });
    }
    client.close();
}

#[cfg(test)]
mod tests {
    use super::next_read_size;

    #[test]
    fn read_size_adapts() {
        assert_eq!(next_read_size(8192, 8192, 8192), 16384);
        assert_eq!(next_read_size(65536, 65536, 65536), 65536);
        assert_eq!(next_read_size(8192, 100, 8192), 4096);
        assert_eq!(next_read_size(2048, 1, 2048), 2048);
        assert_eq!(next_read_size(8192, 4000, 8192), 8192);
    }
}
