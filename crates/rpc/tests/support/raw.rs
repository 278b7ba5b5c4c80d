//! A raw-socket peer: writes arbitrary bytes and reads decoded frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use transport::{BufferPool, EncodedFrame, Frame, FrameDecoder};

/// A plain TCP connection to an RpcEnv.
pub struct Raw {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    /// Frames decoded and not yet returned, oldest first.
    pending: std::collections::VecDeque<Frame>,
}

/// The bytes of `frame` on the wire.
pub fn wire(frame: &EncodedFrame) -> Vec<u8> {
    [frame.header(), &frame.body()[..]].concat()
}

impl Raw {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> Self {
        Self::from_stream(TcpStream::connect(addr).expect("raw connect"))
    }

    /// Wraps an accepted or connected stream.
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            decoder: FrameDecoder::new(1 << 20, BufferPool::default()),
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Writes bytes as they are (errors ignored: the peer may have closed).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes a frame.
    pub fn send(&mut self, frame: &EncodedFrame) -> std::io::Result<()> {
        self.send_bytes(&wire(frame))
    }

    /// An RpcRequest frame.
    pub fn rpc(&mut self, id: i64, body: impl Into<Bytes>) -> std::io::Result<()> {
        self.send(&EncodedFrame::rpc_request(id, body.into()).unwrap())
    }

    /// The next frame, or `None` at end of stream (or on a read error).
    pub fn next_frame(&mut self) -> Option<Frame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match self.stream.read(&mut buf) {
                // A signal interrupted the read: nothing was lost, read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) => return None,
                Err(e) => {
                    eprintln!("raw read from the server failed: {e} ({:?})", e.kind());
                    return None;
                }
                Ok(n) => n,
            };
            let pending = &mut self.pending;
            self.decoder
                .decode(Bytes::copy_from_slice(&buf[..n]), &mut |f| pending.push_back(f))
                .expect("the server sends valid frames");
            if let Some(f) = self.pending.pop_front() {
                return Some(f);
            }
        }
    }

    /// Whether the server closes the connection within 10 s (reading and
    /// discarding anything it still sends).
    pub fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// The fingerprint the RpcEnv gives message type `T` (FNV-1a of its type name).
pub fn fingerprint<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An RPC envelope (see `rpc`'s `envelope.rs`) for `receiver`, without a
/// sender, carrying `payload` as the message of fingerprint `fp`.
pub fn envelope(fp: u64, receiver: &str, payload: &[u8]) -> Bytes {
    let mut out = vec![1u8];
    out.extend_from_slice(&fp.to_be_bytes());
    out.extend_from_slice(&(receiver.len() as u16).to_be_bytes());
    out.extend_from_slice(receiver.as_bytes());
    out.push(0);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// An envelope carrying `n: u64` (its rkyv archive: 8 little-endian bytes).
pub fn u64_envelope(receiver: &str, n: u64) -> Bytes {
    envelope(fingerprint::<u64>(), receiver, &n.to_le_bytes())
}
