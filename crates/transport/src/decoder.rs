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

    /// Checks that the stream may end here: call when the peer has closed the
    /// connection.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when a frame was begun (its length prefix in
    /// part, or its length and some of the rest) but not finished.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.partial {
            Some(p) => Err(DecodeError::Truncated {
                received: LENGTH_SIZE + p.buf.len(),
                missing: Some(p.missing()),
            }),
            None if self.len_have > 0 => Err(DecodeError::Truncated {
                received: self.len_have,
                missing: None,
            }),
            None => Ok(()),
        }
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
mod tests;
