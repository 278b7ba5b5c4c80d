//! The incremental frame decoder (Spark `TransportFrameDecoder` + `MessageDecoder`).
//!
//! [`FrameDecoder::decode`] takes the bytes of one read as a [`Bytes`] chunk,
//! in any split, and yields every frame completed by it. A frame that lies
//! wholly inside one chunk is cut out of it with [`Bytes::slice`]: its body is
//! the very memory the socket was read into, not a copy. Only a frame split
//! across reads is assembled, into one pool buffer sized to that frame; for a
//! large frame the backend can read the rest of it straight into that buffer
//! ([`FrameDecoder::direct_read_buf`]), so even then the body is written once.
//!
//! The length prefix is checked against the maximum frame size before any
//! byte of the body is buffered, and the type byte as soon as it arrives.

use bytes::{Buf, Bytes};

use crate::error::DecodeError;
use crate::frame::Frame;
use crate::pool::{BufferPool, PooledBufMut};
use crate::protocol::{LENGTH_SIZE, MIN_FRAME_SIZE, MessageType};

/// A frame whose length is known and whose bytes after the length prefix are
/// being gathered into `buf`.
#[derive(Debug)]
struct Partial {
    frame_len: usize,
    buf: PooledBufMut,
}

impl Partial {
    fn missing(&self) -> usize {
        self.frame_len - LENGTH_SIZE - self.buf.len()
    }
}

/// Decodes a byte stream into [`Frame`]s. One per connection; after an error
/// the stream cannot be resynchronized and the connection must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_size: u64,
    pool: BufferPool,
    len_buf: [u8; LENGTH_SIZE],
    len_have: usize,
    partial: Option<Partial>,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_size` bytes (length
    /// prefix included), assembling split frames in buffers from `pool`.
    pub fn new(max_frame_size: u64, pool: BufferPool) -> Self {
        Self {
            max_frame_size,
            pool,
            len_buf: [0; LENGTH_SIZE],
            len_have: 0,
            partial: None,
        }
    }

    /// Feeds one chunk of the stream and calls `out` with each frame it completes, in order.
    ///
    /// # Errors
    /// The first [`DecodeError`] met; frames completed before it were already passed to `out`.
    pub fn decode(&mut self, mut chunk: Bytes, out: &mut impl FnMut(Frame)) -> Result<(), DecodeError> {
        loop {
            if let Some(p) = &mut self.partial {
                let take = p.missing().min(chunk.len());
                if take == 0 {
                    return Ok(());
                }
                let was_empty = p.buf.is_empty();
                p.buf.put_slice(&chunk[..take]);
                chunk.advance(take);
                if was_empty {
                    check_type(p.buf.as_slice()[0], p.frame_len)?;
                }
                self.finish_partial(out)?;
                continue;
            }
            if chunk.is_empty() {
                return Ok(());
            }
            if self.len_have > 0 || chunk.len() < LENGTH_SIZE {
                let take = (LENGTH_SIZE - self.len_have).min(chunk.len());
                self.len_buf[self.len_have..self.len_have + take].copy_from_slice(&chunk[..take]);
                self.len_have += take;
                chunk.advance(take);
                if self.len_have == LENGTH_SIZE {
                    self.len_have = 0;
                    let frame_len = self.check_length(i64::from_be_bytes(self.len_buf))?;
                    self.start_partial(frame_len);
                }
                continue;
            }
            let frame_len = self.check_length(chunk.get_i64())?;
            let rest = frame_len - LENGTH_SIZE;
            if chunk.len() >= rest {
                out(parse_frame(frame_len, chunk.split_to(rest))?);
            } else {
                // The partial path below checks the type byte as soon as it is copied.
                self.start_partial(frame_len);
            }
        }
    }

    /// Bytes still missing from the frame being assembled; 0 when no frame is
    /// split across reads. A backend may read straight into
    /// [`direct_read_buf`](Self::direct_read_buf) when this is large.
    pub fn pending_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, Partial::missing)
    }

    /// The unfilled part of the frame being assembled, exactly
    /// [`pending_bytes`](Self::pending_bytes) long; `None` when no frame is in
    /// progress. Read socket bytes into it, then call
    /// [`commit_direct_read`](Self::commit_direct_read).
    pub fn direct_read_buf(&mut self) -> Option<&mut [u8]> {
        let p = self.partial.as_mut()?;
        let missing = p.missing();
        Some(&mut p.buf.spare_mut()[..missing])
    }

    /// Records that `n` bytes were written into [`direct_read_buf`](Self::direct_read_buf),
    /// and passes the frame to `out` if that completed it.
    ///
    /// # Errors
    /// [`DecodeError`] if the completed frame is invalid.
    ///
    /// # Panics
    /// If no frame is in progress or `n` exceeds [`pending_bytes`](Self::pending_bytes).
    pub fn commit_direct_read(&mut self, n: usize, out: &mut impl FnMut(Frame)) -> Result<(), DecodeError> {
        let p = self
            .partial
            .as_mut()
            .expect("commit_direct_read without a frame in progress");
        assert!(n <= p.missing(), "commit_direct_read({n}) past the frame");
        let was_empty = p.buf.is_empty();
        p.buf.commit(n);
        if was_empty && n > 0 {
            check_type(p.buf.as_slice()[0], p.frame_len)?;
        }
        self.finish_partial(out)
    }

    fn check_length(&self, length: i64) -> Result<usize, DecodeError> {
        if length < 0 {
            return Err(DecodeError::NegativeLength { length });
        }
        if (length as u64) < MIN_FRAME_SIZE as u64 {
            return Err(DecodeError::LengthBelowHeader {
                length,
                min: MIN_FRAME_SIZE,
            });
        }
        if length as u64 > self.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                length,
                max: self.max_frame_size,
            });
        }
        Ok(length as usize)
    }

    fn start_partial(&mut self, frame_len: usize) {
        self.partial = Some(Partial {
            frame_len,
            buf: self.pool.allocate(frame_len - LENGTH_SIZE),
        });
    }

    fn finish_partial(&mut self, out: &mut impl FnMut(Frame)) -> Result<(), DecodeError> {
        if self.partial.as_ref().is_some_and(|p| p.missing() == 0) {
            let p = self.partial.take().expect("checked above");
            out(parse_frame(p.frame_len, p.buf.freeze())?);
        }
        Ok(())
    }
}

/// Checks a type byte against the frame length: known, supported, and the frame
/// at least as long as that type's header.
fn check_type(id: u8, frame_len: usize) -> Result<MessageType, DecodeError> {
    let ty = MessageType::from_id(id).ok_or(DecodeError::UnknownType { id })?;
    let Some(min) = ty.header_size() else {
        return Err(DecodeError::UnsupportedType {
            id,
            name: type_name(ty),
        });
    };
    if frame_len < min {
        return Err(DecodeError::LengthBelowHeader {
            length: frame_len as i64,
            min,
        });
    }
    Ok(ty)
}

fn type_name(ty: MessageType) -> &'static str {
    match ty {
        MessageType::ChunkFetchRequest => "ChunkFetchRequest",
        MessageType::ChunkFetchSuccess => "ChunkFetchSuccess",
        MessageType::ChunkFetchFailure => "ChunkFetchFailure",
        MessageType::RpcRequest => "RpcRequest",
        MessageType::RpcResponse => "RpcResponse",
        MessageType::RpcFailure => "RpcFailure",
        MessageType::StreamRequest => "StreamRequest",
        MessageType::StreamResponse => "StreamResponse",
        MessageType::StreamFailure => "StreamFailure",
        MessageType::OneWayMessage => "OneWayMessage",
        MessageType::UploadStream => "UploadStream",
    }
}

/// Parses the bytes of one frame after its length prefix. The body is a slice of `rest`.
fn parse_frame(frame_len: usize, mut rest: Bytes) -> Result<Frame, DecodeError> {
    let ty = check_type(rest.get_u8(), frame_len)?;
    let request_id = match ty {
        MessageType::OneWayMessage => 0,
        _ => rest.get_i64(),
    };
    let declared = rest.get_i32();
    if i64::from(declared) != rest.len() as i64 {
        return Err(DecodeError::BodyLengthMismatch {
            declared: declared.into(),
            actual: rest.len(),
        });
    }
    Ok(match ty {
        MessageType::RpcRequest => Frame::RpcRequest {
            request_id,
            body: rest,
        },
        MessageType::RpcResponse => Frame::RpcResponse {
            request_id,
            body: rest,
        },
        MessageType::RpcFailure => Frame::RpcFailure {
            request_id,
            error: String::from_utf8(rest.to_vec()).map_err(|e| DecodeError::InvalidUtf8 {
                valid_up_to: e.utf8_error().valid_up_to(),
            })?,
        },
        _ => Frame::OneWayMessage { body: rest },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::EncodedFrame;
    use proptest::prelude::*;

    fn wire(frames: &[Frame]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            let e = f.encode().unwrap();
            v.extend_from_slice(e.header());
            v.extend_from_slice(e.body());
        }
        v
    }

    fn sample() -> Vec<Frame> {
        vec![
            Frame::RpcRequest {
                request_id: 1,
                body: Bytes::from_static(b"hello"),
            },
            Frame::OneWayMessage { body: Bytes::new() },
            Frame::RpcFailure {
                request_id: -5,
                error: "it broke: ü".into(),
            },
            Frame::RpcResponse {
                request_id: i64::MAX,
                body: Bytes::from(vec![9u8; 300]),
            },
        ]
    }

    fn decode_all(dec: &mut FrameDecoder, chunks: Vec<Bytes>) -> Result<Vec<Frame>, DecodeError> {
        let mut got = Vec::new();
        for c in chunks {
            dec.decode(c, &mut |f| got.push(f))?;
        }
        Ok(got)
    }

    fn decoder() -> FrameDecoder {
        FrameDecoder::new(1 << 20, BufferPool::new(1 << 20))
    }

    #[test]
    fn every_split_point_of_several_frames() {
        let frames = sample();
        let bytes = wire(&frames);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let chunks = vec![
                    Bytes::copy_from_slice(&bytes[..a]),
                    Bytes::copy_from_slice(&bytes[a..b]),
                    Bytes::copy_from_slice(&bytes[b..]),
                ];
                let got = decode_all(&mut decoder(), chunks).unwrap();
                assert_eq!(got, frames, "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let frames = sample();
        let chunks = wire(&frames)
            .into_iter()
            .map(|b| Bytes::copy_from_slice(&[b]))
            .collect();
        let mut dec = decoder();
        assert_eq!(decode_all(&mut dec, chunks).unwrap(), frames);
        assert_eq!(dec.pending_bytes(), 0);
    }

    #[test]
    fn whole_frame_body_is_a_slice_of_the_chunk() {
        let chunk = Bytes::from(wire(&sample()));
        let range = chunk.as_ptr_range();
        let mut bodies = Vec::new();
        decoder()
            .decode(chunk.clone(), &mut |f| {
                if let Frame::RpcRequest { body, .. } | Frame::RpcResponse { body, .. } = f {
                    bodies.push(body)
                }
            })
            .unwrap();
        assert_eq!(bodies.len(), 2);
        for b in bodies {
            assert!(range.contains(&b.as_ptr()), "body was copied");
        }
    }

    #[test]
    fn direct_read_fills_the_frame_in_place() {
        let frame = Frame::RpcResponse {
            request_id: 3,
            body: Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>()),
        };
        let bytes = wire(std::slice::from_ref(&frame));
        let mut dec = decoder();
        let mut got = Vec::new();
        dec.decode(Bytes::copy_from_slice(&bytes[..30]), &mut |f| got.push(f))
            .unwrap();
        assert_eq!(dec.pending_bytes(), bytes.len() - 30);
        let mut at = 30;
        while dec.pending_bytes() > 0 {
            let buf = dec.direct_read_buf().unwrap();
            let n = buf.len().min(7000);
            buf[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            dec.commit_direct_read(n, &mut |f| got.push(f)).unwrap();
        }
        assert_eq!(got, vec![frame]);
        assert!(dec.direct_read_buf().is_none());
    }

    fn first_error(bytes: &[u8]) -> DecodeError {
        decode_all(&mut decoder(), vec![Bytes::copy_from_slice(bytes)]).unwrap_err()
    }

    #[test]
    fn negative_length() {
        assert_eq!(
            first_error(&(-1i64).to_be_bytes()),
            DecodeError::NegativeLength { length: -1 }
        );
    }

    #[test]
    fn length_below_any_header() {
        assert_eq!(
            first_error(&8i64.to_be_bytes()),
            DecodeError::LengthBelowHeader { length: 8, min: 9 }
        );
    }

    #[test]
    fn length_below_the_types_header() {
        let mut b = 12i64.to_be_bytes().to_vec();
        b.push(3);
        assert_eq!(
            first_error(&b),
            DecodeError::LengthBelowHeader { length: 12, min: 21 }
        );
    }

    #[test]
    fn length_over_maximum_is_refused_before_buffering() {
        let pool = BufferPool::new(1 << 20);
        let mut dec = FrameDecoder::new(1000, pool.clone());
        let err = dec
            .decode(Bytes::copy_from_slice(&1001i64.to_be_bytes()), &mut |_| {})
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::FrameTooLarge {
                length: 1001,
                max: 1000
            }
        );
        assert_eq!(pool.stats().served_fresh + pool.stats().served_from_pool, 0);
        assert!(err.to_string().contains("max_frame_size"));
    }

    #[test]
    fn unknown_and_unsupported_types() {
        let mut b = 30i64.to_be_bytes().to_vec();
        b.push(42);
        assert_eq!(first_error(&b), DecodeError::UnknownType { id: 42 });
        b[8] = 0;
        assert_eq!(
            first_error(&b),
            DecodeError::UnsupportedType {
                id: 0,
                name: "ChunkFetchRequest"
            }
        );
    }

    #[test]
    fn type_checked_before_body_arrives_on_split() {
        let mut dec = decoder();
        dec.decode(Bytes::copy_from_slice(&1000i64.to_be_bytes()), &mut |_| {})
            .unwrap();
        assert_eq!(
            dec.decode(Bytes::from_static(&[200]), &mut |_| {}).unwrap_err(),
            DecodeError::UnknownType { id: 200 }
        );
    }

    #[test]
    fn body_length_mismatch() {
        let e = EncodedFrame::rpc_request(1, Bytes::from_static(b"abcd")).unwrap();
        let mut b = e.header().to_vec();
        b.extend_from_slice(e.body());
        b[17..21].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(
            first_error(&b),
            DecodeError::BodyLengthMismatch {
                declared: 3,
                actual: 4
            }
        );
    }

    #[test]
    fn invalid_utf8_in_failure() {
        let e = EncodedFrame::rpc_failure(1, "ab").unwrap();
        let mut b = e.header().to_vec();
        b.extend_from_slice(&[b'a', 0xff]);
        assert_eq!(first_error(&b), DecodeError::InvalidUtf8 { valid_up_to: 1 });
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let body = proptest::collection::vec(any::<u8>(), 0..600).prop_map(Bytes::from);
        prop_oneof![
            (any::<i64>(), body.clone())
                .prop_map(|(request_id, body)| Frame::RpcRequest { request_id, body }),
            (any::<i64>(), body.clone())
                .prop_map(|(request_id, body)| Frame::RpcResponse { request_id, body }),
            (any::<i64>(), ".{0,40}").prop_map(|(request_id, error)| Frame::RpcFailure { request_id, error }),
            body.prop_map(|body| Frame::OneWayMessage { body }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_in_any_split(frames in proptest::collection::vec(arb_frame(), 0..12),
                                   cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
            let bytes = wire(&frames);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let chunks = points.windows(2).map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]])).collect();
            let got = decode_all(&mut decoder(), chunks).unwrap();
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&mut decoder(), vec![Bytes::from(bytes)]);
        }
    }
}
