//! Internals exposed to the fuzz targets in `fuzz/` (cargo feature
//! `fuzzing`; hidden from the docs, not a stable API).
//!
//! The fuzz target `message_validation` feeds untrusted frame bodies through
//! the same two steps a remote message takes on its way to an endpoint: the
//! envelope parse (`envelope::parse`, run by the Dispatcher when a frame
//! arrives) and [`RpcMessage::access`] (bytecheck validation, run by the
//! Inbox on the MessageLoop thread). This module gives it the envelope parse
//! and encode, and the type fingerprint the Inbox compares.

use bytes::Bytes;

use crate::address::RpcAddress;
use crate::envelope;
use crate::error::RpcError;
use crate::message::{RpcMessage, type_fingerprint};

/// A parsed envelope (Spark's `RequestMessage` header): what
/// `envelope::parse` returns, with public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEnvelope {
    /// FNV-1a fingerprint of the message type's name, as sent.
    pub fingerprint: u64,
    /// The receiver endpoint's name (checked to be UTF-8).
    pub receiver: String,
    /// The sender's address, when the sender has a server.
    pub sender: Option<RpcAddress>,
    /// The rkyv archive of the message: a slice of the body given, not a copy.
    pub payload: Bytes,
}

/// Parses the envelope at the front of a frame body exactly as the
/// Dispatcher does.
///
/// # Errors
/// [`RpcError::InvalidMessage`] for a truncated header, an unknown version,
/// a name or host that is not UTF-8, or a sender flag other than 0 or 1.
pub fn parse_envelope(body: Bytes) -> Result<ParsedEnvelope, RpcError> {
    let env = envelope::parse(body)?;
    Ok(ParsedEnvelope {
        fingerprint: env.fingerprint,
        receiver: env.receiver().to_owned(),
        sender: env.sender,
        payload: env.payload,
    })
}

/// Encodes the frame body of a message `msg` for `receiver` from `sender`, as
/// an `RpcEndpointRef` does.
///
/// # Errors
/// [`RpcError::InvalidMessage`] when `receiver` or the sender's host exceeds
/// 65535 bytes; [`RpcError::Serialize`] if rkyv fails.
pub fn encode_envelope<M: RpcMessage>(
    sender: Option<&RpcAddress>,
    receiver: &str,
    msg: &M,
) -> Result<Bytes, RpcError> {
    envelope::encode(sender, receiver, msg)
}

/// The fingerprint an envelope carries for messages of type `T` (FNV-1a of
/// its type name, 64 bits); the Inbox refuses a payload whose fingerprint differs.
pub fn fingerprint_of<T>() -> u64 {
    type_fingerprint::<T>()
}

/// The Inbox's scheduling state machine, generic over its lock, for the loom
/// model check `tests/loom_inbox.rs` (feature `loom`, docs/HARDENING.md).
#[cfg(feature = "loom")]
pub use crate::inbox::state as inbox_state;
