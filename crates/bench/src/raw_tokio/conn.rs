//! One connection of the raw tokio baseline: the server's echo loop and the
//! client's closed loop, on hand-cut frames, with no allocation per request.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::{Control, Phase, SharedStats};
use crate::raw_frames::{self, Cut, HEADER_LEN, RPC_REQUEST, RPC_RESPONSE};

/// Bodies of this many bytes or more are written from their own buffer instead of being copied.
pub const COPY_LIMIT: usize = 16 * 1024;
/// Free space kept in a receive buffer before each read, in bytes.
const READ_SPARE: usize = 64 * 1024;

/// Writes `head` then `body` with vectored writes until both are out.
async fn write_pair(stream: &mut TcpStream, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let n = stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}

/// Adds a frame (`header` already in `out`) with `body` to the batch in `out`:
/// small bodies are copied, large ones are written now together with the batch.
async fn queue_body(stream: &mut TcpStream, out: &mut Vec<u8>, body: &[u8]) -> io::Result<()> {
    if body.len() < COPY_LIMIT {
        out.extend_from_slice(body);
    } else {
        write_pair(stream, out, body).await?;
        out.clear();
    }
    Ok(())
}

/// Writes the batch in `out`, if any, in one `write_all`.
async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Makes room for the next read: the rest of a partial frame, and at least [`READ_SPARE`].
fn reserve(buf: &mut BytesMut, frame_len: Option<usize>) {
    let missing = frame_len.map_or(0, |len| len.saturating_sub(buf.len()));
    buf.reserve(missing.max(READ_SPARE));
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Answers each RpcRequest with an RpcResponse carrying `response`.
async fn serve(mut stream: TcpStream, response: Arc<[u8]>) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SPARE);
    let mut out = Vec::with_capacity(READ_SPARE);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        loop {
            match raw_frames::cut(&buf) {
                Cut::Frame(len) if raw_frames::kind(&buf) == RPC_REQUEST => {
                    let id = raw_frames::request_id(&buf);
                    raw_frames::put_header(&mut out, RPC_RESPONSE, id, response.len());
                    queue_body(&mut stream, &mut out, &response).await?;
                    buf.advance(len);
                }
                Cut::Partial(len) => {
                    reserve(&mut buf, len);
                    break;
                }
                Cut::Frame(_) | Cut::Invalid => return Err(invalid("not an RpcRequest")),
            }
        }
        flush(&mut stream, &mut out).await?;
    }
}

/// One client connection's closed loop: `sent` holds the send time of each request in flight.
async fn drive(
    stream: &mut TcpStream,
    sent: &mut VecDeque<Instant>,
    payload: &[u8],
    control: &Control,
    stats: &SharedStats,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SPARE);
    let mut out = Vec::with_capacity(READ_SPARE.min(sent.capacity() * (HEADER_LEN + payload.len())));
    let (mut next_id, mut expected_id) = (0i64, 0i64);
    for _ in 0..sent.capacity() {
        raw_frames::put_header(&mut out, RPC_REQUEST, next_id, payload.len());
        sent.push_back(Instant::now());
        queue_body(stream, &mut out, payload).await?;
        next_id += 1;
    }
    flush(stream, &mut out).await?;
    while !sent.is_empty() {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let phase = control.phase();
        loop {
            match raw_frames::cut(&buf) {
                Cut::Frame(len) => {
                    if raw_frames::kind(&buf) != RPC_RESPONSE || raw_frames::request_id(&buf) != expected_id {
                        return Err(invalid("not the RpcResponse expected next"));
                    }
                    expected_id += 1;
                    let t = sent
                        .pop_front()
                        .ok_or_else(|| invalid("a response to no request"))?;
                    stats.lock().complete(phase, t);
                    buf.advance(len);
                    if phase < Phase::Drain {
                        raw_frames::put_header(&mut out, RPC_REQUEST, next_id, payload.len());
                        sent.push_back(Instant::now());
                        queue_body(stream, &mut out, payload).await?;
                        next_id += 1;
                    }
                }
                Cut::Partial(len) => {
                    reserve(&mut buf, len);
                    break;
                }
                Cut::Invalid => return Err(invalid("bad frame length")),
            }
        }
        flush(stream, &mut out).await?;
    }
    Ok(())
}

/// One open-loop connection's requests that fell due and wait to be sent, filled by the
/// pacer thread; the connection's task takes them as it has room under its cap.
#[derive(Debug, Default)]
pub(super) struct DueQueue {
    due: Mutex<VecDeque<Instant>>,
    notify: tokio::sync::Notify,
}

impl DueQueue {
    /// A request fell due at `due` (called by the pacer): queue it and wake the task.
    pub(super) fn push(&self, due: Instant) {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).push_back(due);
        self.notify.notify_one();
    }

    /// Wakes the task, e.g. to notice the end of the run.
    pub(super) fn wake(&self) {
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Instant> {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn clear(&self) {
        self.due.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// One client connection's open loop: sends what fell due in `queue` while fewer than
/// `sent.capacity()` are outstanding; `sent` holds the due time of each request in flight,
/// which its latency counts from.
async fn drive_open(
    stream: &mut TcpStream,
    sent: &mut VecDeque<Instant>,
    cap: usize,
    payload: &[u8],
    control: &Control,
    stats: &SharedStats,
    queue: &DueQueue,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SPARE);
    let mut out = Vec::with_capacity(READ_SPARE.min(cap * (HEADER_LEN + payload.len())));
    let (mut next_id, mut expected_id) = (0i64, 0i64);
    let mut draining = false;
    loop {
        if !draining && control.phase() >= Phase::Drain {
            draining = true;
            queue.clear();
        }
        while !draining && sent.len() < cap {
            let Some(due) = queue.pop() else { break };
            raw_frames::put_header(&mut out, RPC_REQUEST, next_id, payload.len());
            sent.push_back(due);
            queue_body(stream, &mut out, payload).await?;
            next_id += 1;
        }
        flush(stream, &mut out).await?;
        if draining && sent.is_empty() {
            return Ok(());
        }
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            _ = queue.notify.notified(), if !draining => continue,
        }
        let phase = control.phase();
        loop {
            match raw_frames::cut(&buf) {
                Cut::Frame(len) => {
                    if raw_frames::kind(&buf) != RPC_RESPONSE || raw_frames::request_id(&buf) != expected_id {
                        return Err(invalid("not the RpcResponse expected next"));
                    }
                    expected_id += 1;
                    let t = sent
                        .pop_front()
                        .ok_or_else(|| invalid("a response to no request"))?;
                    stats.lock().complete(phase, t);
                    buf.advance(len);
                }
                Cut::Partial(len) => {
                    reserve(&mut buf, len);
                    break;
                }
                Cut::Invalid => return Err(invalid("bad frame length")),
            }
        }
    }
}

/// Runs the client side of one connected socket (non-blocking) on the current
/// runtime, a closed loop of `inflight` or, with `open`, an open loop of at most `inflight`
/// outstanding; a failure counts every request it had in flight.
pub(super) async fn client(
    socket: std::net::TcpStream,
    inflight: usize,
    payload: Arc<[u8]>,
    control: Arc<Control>,
    stats: Arc<SharedStats>,
    open: Option<Arc<DueQueue>>,
) {
    let mut sent = VecDeque::with_capacity(inflight);
    let result = match (TcpStream::from_std(socket), open) {
        (Ok(mut stream), None) => drive(&mut stream, &mut sent, &payload, &control, &stats).await,
        (Ok(mut stream), Some(q)) => {
            drive_open(&mut stream, &mut sent, inflight, &payload, &control, &stats, &q).await
        }
        (Err(e), _) => Err(e),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "raw-tokio client connection failed");
        let lost = if sent.is_empty() { inflight } else { sent.len() };
        stats.lock().fail(control.phase(), lost as u64);
    }
}

/// Runs the server side of one accepted socket (non-blocking) on the current
/// runtime until the client closes it.
pub(super) async fn server(socket: std::net::TcpStream, response: Arc<[u8]>) {
    let result = match TcpStream::from_std(socket) {
        Ok(stream) => serve(stream, response).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "raw-tokio server connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests arriving in 7-byte pieces get whole responses, small (copied) and large (vectored).
    #[tokio::test]
    async fn server_answers_requests_split_anywhere() {
        for size in [16, COPY_LIMIT + 5] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            let response: Arc<[u8]> = vec![7u8; size].into();
            let server = tokio::spawn(serve(s, Arc::clone(&response)));
            let mut wire = Vec::new();
            for id in 0..3 {
                raw_frames::put_header(&mut wire, RPC_REQUEST, id, 10);
                wire.extend([1u8; 10]);
            }
            for piece in wire.chunks(7) {
                c.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            let mut got = vec![0u8; 3 * (HEADER_LEN + size)];
            c.read_exact(&mut got).await.unwrap();
            for (id, frame) in got.chunks(HEADER_LEN + size).enumerate() {
                assert_eq!(raw_frames::cut(frame), Cut::Frame(HEADER_LEN + size));
                assert_eq!(raw_frames::kind(frame), RPC_RESPONSE);
                assert_eq!(raw_frames::request_id(frame), id as i64);
                assert_eq!(&frame[HEADER_LEN..], &response[..]);
            }
            drop(c);
            server.await.unwrap().unwrap();
        }
    }
}
