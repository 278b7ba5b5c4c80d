//! Decoded frames and encoded (outbound) frames.
//!
//! An [`EncodedFrame`] keeps its header inline (at most 21 bytes) and its body
//! as a [`Bytes`]: encoding writes the header in front of the body without
//! copying the body, and a backend writes both with one vectored write.

use bytes::Bytes;

use crate::protocol::{LENGTH_SIZE, MAX_HEADER_SIZE, MessageType};

/// One decoded frame of a supported type. Bodies are slices of the receive
/// buffer they arrived in (no copy); the buffer returns to its pool when the
/// last slice of it drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Spark `RpcRequest`: expects an RpcResponse or RpcFailure with the same id.
    RpcRequest {
        /// Links the request with its response.
        request_id: i64,
        /// The request payload.
        body: Bytes,
    },
    /// Spark `RpcResponse`: the successful answer to request `request_id`.
    RpcResponse {
        /// The id of the request answered.
        request_id: i64,
        /// The response payload.
        body: Bytes,
    },
    /// Spark `RpcFailure`: request `request_id` failed with `error`.
    RpcFailure {
        /// The id of the request answered.
        request_id: i64,
        /// The error text.
        error: String,
    },
    /// Spark `OneWayMessage`: a message that expects no answer.
    OneWayMessage {
        /// The payload.
        body: Bytes,
    },
}

impl Frame {
    /// The frame's message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::RpcRequest { .. } => MessageType::RpcRequest,
            Self::RpcResponse { .. } => MessageType::RpcResponse,
            Self::RpcFailure { .. } => MessageType::RpcFailure,
            Self::OneWayMessage { .. } => MessageType::OneWayMessage,
        }
    }

    /// Encodes the frame for sending; the body is shared, not copied.
    ///
    /// # Errors
    /// [`FrameSizeError`] when the body or error string exceeds `i32::MAX` bytes,
    /// the largest length Spark's `int` body length field can carry.
    pub fn encode(&self) -> Result<EncodedFrame, FrameSizeError> {
        match self {
            Self::RpcRequest { request_id, body } => EncodedFrame::rpc_request(*request_id, body.clone()),
            Self::RpcResponse { request_id, body } => EncodedFrame::rpc_response(*request_id, body.clone()),
            Self::RpcFailure { request_id, error } => EncodedFrame::rpc_failure(*request_id, error),
            Self::OneWayMessage { body } => EncodedFrame::one_way(body.clone()),
        }
    }
}

/// A body longer than a Spark frame's `int` length field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a body of {length} bytes exceeds the 2147483647-byte limit of the frame's length field")]
pub struct FrameSizeError {
    /// The body length, in bytes.
    pub length: usize,
}

/// A frame ready to write: an inline header and a shared body.
///
/// Layout on the wire: `header()` then `body()`. `len()` is the frame length
/// written in its first 8 bytes.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    header: [u8; MAX_HEADER_SIZE],
    header_len: u8,
    body: Bytes,
}

impl EncodedFrame {
    fn new(ty: MessageType, request_id: Option<i64>, body: Bytes) -> Result<Self, FrameSizeError> {
        let body_len = i32::try_from(body.len()).map_err(|_| FrameSizeError { length: body.len() })?;
        let mut header = [0u8; MAX_HEADER_SIZE];
        let mut at = LENGTH_SIZE;
        header[at] = ty.id();
        at += 1;
        if let Some(id) = request_id {
            header[at..at + 8].copy_from_slice(&id.to_be_bytes());
            at += 8;
        }
        header[at..at + 4].copy_from_slice(&body_len.to_be_bytes());
        at += 4;
        let frame_len = (at + body.len()) as i64;
        header[..LENGTH_SIZE].copy_from_slice(&frame_len.to_be_bytes());
        Ok(Self {
            header,
            header_len: at as u8,
            body,
        })
    }

    /// Encodes an RpcRequest (type 3): 21-byte header, then `body`.
    ///
    /// # Errors
    /// [`FrameSizeError`] when `body` exceeds `i32::MAX` bytes.
    pub fn rpc_request(request_id: i64, body: Bytes) -> Result<Self, FrameSizeError> {
        Self::new(MessageType::RpcRequest, Some(request_id), body)
    }

    /// Encodes an RpcResponse (type 4): 21-byte header, then `body`.
    ///
    /// # Errors
    /// [`FrameSizeError`] when `body` exceeds `i32::MAX` bytes.
    pub fn rpc_response(request_id: i64, body: Bytes) -> Result<Self, FrameSizeError> {
        Self::new(MessageType::RpcResponse, Some(request_id), body)
    }

    /// Encodes an RpcFailure (type 5): 21-byte header whose last 4 bytes are the
    /// string's length, then the UTF-8 bytes of `error` (Spark `Encoders.Strings`).
    ///
    /// # Errors
    /// [`FrameSizeError`] when `error` exceeds `i32::MAX` bytes.
    pub fn rpc_failure(request_id: i64, error: &str) -> Result<Self, FrameSizeError> {
        Self::new(
            MessageType::RpcFailure,
            Some(request_id),
            Bytes::copy_from_slice(error.as_bytes()),
        )
    }

    /// Encodes a OneWayMessage (type 9): 13-byte header, then `body`.
    ///
    /// # Errors
    /// [`FrameSizeError`] when `body` exceeds `i32::MAX` bytes.
    pub fn one_way(body: Bytes) -> Result<Self, FrameSizeError> {
        Self::new(MessageType::OneWayMessage, None, body)
    }

    /// The header bytes: length prefix, type and type header (13 or 21 bytes).
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len as usize]
    }

    /// The body, shared with whoever built the frame.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Total bytes on the wire, header included (the value of the length prefix).
    pub fn len(&self) -> usize {
        self.header_len as usize + self.body.len()
    }

    /// Always false: a frame has at least a header. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame's message type.
    pub fn message_type(&self) -> MessageType {
        // The constructor only writes supported ids.
        MessageType::from_id(self.header[LENGTH_SIZE]).unwrap_or(MessageType::RpcRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_request_layout_matches_spark() {
        let f = EncodedFrame::rpc_request(0x0102030405060708, Bytes::from_static(b"hey")).unwrap();
        let h = f.header();
        assert_eq!(h.len(), 21);
        assert_eq!(&h[..8], &24i64.to_be_bytes());
        assert_eq!(h[8], 3);
        assert_eq!(&h[9..17], &0x0102030405060708i64.to_be_bytes());
        assert_eq!(&h[17..21], &3i32.to_be_bytes());
        assert_eq!(f.len(), 24);
        assert_eq!(f.message_type(), MessageType::RpcRequest);
    }

    #[test]
    fn one_way_and_failure_layout() {
        let f = EncodedFrame::one_way(Bytes::from_static(b"ab")).unwrap();
        assert_eq!(f.header().len(), 13);
        assert_eq!(&f.header()[..8], &15i64.to_be_bytes());
        assert_eq!(f.header()[8], 9);
        let f = EncodedFrame::rpc_failure(7, "boom").unwrap();
        assert_eq!(f.header()[8], 5);
        assert_eq!(&f.header()[17..21], &4i32.to_be_bytes());
        assert_eq!(&f.body()[..], b"boom");
    }

    #[test]
    fn encoding_shares_the_body() {
        let body = Bytes::from(vec![7u8; 1024]);
        let f = EncodedFrame::rpc_response(1, body.clone()).unwrap();
        assert_eq!(f.body().as_ptr(), body.as_ptr(), "body must not be copied");
    }
}
