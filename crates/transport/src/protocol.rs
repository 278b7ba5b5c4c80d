//! Message types and fixed header sizes of Spark network-common's wire format.
//!
//! Mirrors `org.apache.spark.network.protocol.Message.Type` and the `encode`
//! methods of `RpcRequest`, `RpcResponse`, `RpcFailure` and `OneWayMessage`
//! (Spark `common/network-common/src/main/java/org/apache/spark/network/protocol/`).
//! Every integer on the wire is big-endian (Netty's `ByteBuf` default).

/// Bytes of the frame length prefix: a big-endian `i64` that counts itself
/// (Spark `TransportFrameDecoder.LENGTH_SIZE`).
pub const LENGTH_SIZE: usize = 8;

/// Bytes of the message type id that follows the length prefix.
pub const TYPE_SIZE: usize = 1;

/// Bytes of a request id (`long` in Spark).
pub const REQUEST_ID_SIZE: usize = 8;

/// Bytes of a body or string length field (`int` in Spark).
pub const BODY_LENGTH_SIZE: usize = 4;

/// Largest fixed header of the supported types, length prefix included: 21 bytes
/// (RpcRequest, RpcResponse and RpcFailure: 8 + 1 + 8 + 4).
pub const MAX_HEADER_SIZE: usize = LENGTH_SIZE + TYPE_SIZE + REQUEST_ID_SIZE + BODY_LENGTH_SIZE;

/// Smallest possible frame: the length prefix plus a type byte (9 bytes).
pub const MIN_FRAME_SIZE: usize = LENGTH_SIZE + TYPE_SIZE;

/// The message type byte, with the ids of Spark's `Message.Type`.
///
/// All of Spark's ids are known so that a frame of a type this project does
/// not carry is reported as [`crate::DecodeError::UnsupportedType`] (a Spark
/// peer using a feature we lack) rather than as garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// `ChunkFetchRequest` (0): block fetch, not carried by this project.
    ChunkFetchRequest = 0,
    /// `ChunkFetchSuccess` (1): not carried.
    ChunkFetchSuccess = 1,
    /// `ChunkFetchFailure` (2): not carried.
    ChunkFetchFailure = 2,
    /// `RpcRequest` (3): request id `i64`, body length `i32`, body.
    RpcRequest = 3,
    /// `RpcResponse` (4): request id `i64`, body length `i32`, body.
    RpcResponse = 4,
    /// `RpcFailure` (5): request id `i64`, error string (`i32` length + UTF-8).
    RpcFailure = 5,
    /// `StreamRequest` (6): not carried.
    StreamRequest = 6,
    /// `StreamResponse` (7): not carried.
    StreamResponse = 7,
    /// `StreamFailure` (8): not carried.
    StreamFailure = 8,
    /// `OneWayMessage` (9): body length `i32`, body.
    OneWayMessage = 9,
    /// `UploadStream` (10): not carried.
    UploadStream = 10,
}

impl MessageType {
    /// Maps a type byte to a type; `None` for a byte Spark does not define.
    pub fn from_id(id: u8) -> Option<Self> {
        use MessageType::*;
        Some(match id {
            0 => ChunkFetchRequest,
            1 => ChunkFetchSuccess,
            2 => ChunkFetchFailure,
            3 => RpcRequest,
            4 => RpcResponse,
            5 => RpcFailure,
            6 => StreamRequest,
            7 => StreamResponse,
            8 => StreamFailure,
            9 => OneWayMessage,
            10 => UploadStream,
            _ => return None,
        })
    }

    /// The id written on the wire.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Whether this project encodes and decodes this type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Self::RpcRequest | Self::RpcResponse | Self::RpcFailure | Self::OneWayMessage
        )
    }

    /// Bytes from the start of the frame to the start of the body (or of the
    /// error string's bytes for RpcFailure): 21 for RpcRequest, RpcResponse and
    /// RpcFailure, 13 for OneWayMessage; `None` for unsupported types.
    pub fn header_size(self) -> Option<usize> {
        match self {
            Self::RpcRequest | Self::RpcResponse | Self::RpcFailure => Some(MAX_HEADER_SIZE),
            Self::OneWayMessage => Some(LENGTH_SIZE + TYPE_SIZE + BODY_LENGTH_SIZE),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_match_spark() {
        for id in 0u8..=10 {
            assert_eq!(MessageType::from_id(id).unwrap().id(), id);
        }
        assert_eq!(MessageType::RpcRequest.id(), 3);
        assert_eq!(MessageType::OneWayMessage.id(), 9);
        assert!(MessageType::from_id(11).is_none());
        assert!(MessageType::from_id(0xff).is_none());
    }

    #[test]
    fn header_sizes() {
        assert_eq!(MessageType::RpcRequest.header_size(), Some(21));
        assert_eq!(MessageType::RpcFailure.header_size(), Some(21));
        assert_eq!(MessageType::OneWayMessage.header_size(), Some(13));
        assert_eq!(MessageType::StreamRequest.header_size(), None);
    }
}
