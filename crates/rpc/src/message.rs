//! Typed messages: rkyv archives in the unaligned format, validated and read in place.
//!
//! The crate builds rkyv with its `unaligned` and `little_endian` features: every
//! archived primitive has alignment 1, so an archive can be read at whatever
//! offset it lands in a receive buffer. A frame body starts 21 bytes into its
//! frame and frames start anywhere in the stream, so this is what lets
//! [`Msg::Remote`] borrow straight from the buffer the socket was read into,
//! with no copy to realign it. Remote bytes are untrusted: `rkyv::access`
//! checks them with bytecheck before anything reads them.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::{Archive, Archived, Deserialize, Serialize};

use std::cell::Cell;

use bytes::{Bytes, BytesMut};

pub use crate::encode_buf::ArchiveWriter;
use crate::error::RpcError;

/// A type that can travel as an RPC message or reply.
///
/// Implemented for every `Send + 'static` type that derives rkyv's `Archive`,
/// `Serialize` and `Deserialize` (with the checked archive rkyv derives by
/// default); there is nothing to implement by hand. The methods carry rkyv's
/// bounds so that code generic over messages needs only `T: RpcMessage`.
pub trait RpcMessage: Archive + Send + Sized + 'static {
    /// Appends the archive of `self` to `out` (which may already hold a header:
    /// the unaligned format needs no padding, so the archive reads the same at any offset).
    ///
    /// # Errors
    /// [`RpcError::Serialize`] if rkyv fails; `out` is then left empty.
    fn encode(&self, out: &mut BytesMut) -> Result<(), RpcError>;

    /// The archive of `self` in a buffer of its own.
    ///
    /// # Errors
    /// [`RpcError::Serialize`] if rkyv fails.
    fn to_bytes(&self) -> Result<Bytes, RpcError> {
        let mut out = BytesMut::with_capacity(std::mem::size_of::<Self::Archived>() + 16);
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// Validates `bytes` as an archived `Self` and returns a view into them (no copy).
    ///
    /// # Errors
    /// [`RpcError::InvalidMessage`] naming what bytecheck found.
    fn access(bytes: &[u8]) -> Result<&Archived<Self>, RpcError>;

    /// Deserializes an archived value into an owned one.
    ///
    /// # Errors
    /// [`RpcError::InvalidMessage`] if the type's deserialization fails.
    fn deserialize(archived: &Archived<Self>) -> Result<Self, RpcError>;
}

impl<T> RpcMessage for T
where
    T: Archive
        + for<'a> Serialize<HighSerializer<ArchiveWriter, ArenaHandle<'a>, rancor::Error>>
        + Send
        + 'static,
    Archived<T>: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    fn encode(&self, out: &mut BytesMut) -> Result<(), RpcError> {
        let writer = ArchiveWriter(std::mem::take(out));
        let writer = with_arena(|arena| {
            rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(self, writer, arena.acquire())
        })
        .map_err(|e| RpcError::Serialize {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        *out = writer.0;
        Ok(())
    }

    fn access(bytes: &[u8]) -> Result<&Archived<T>, RpcError> {
        rkyv::access::<Archived<T>, rancor::Error>(bytes).map_err(|e| RpcError::InvalidMessage {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }

    fn deserialize(archived: &Archived<T>) -> Result<T, RpcError> {
        rkyv::deserialize::<T, rancor::Error>(archived).map_err(|e| RpcError::InvalidMessage {
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }
}

thread_local! {
    /// This thread's serializer scratch space, kept between messages.
    static ARENA: Cell<Option<Arena>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's serializer arena, as `rkyv::to_bytes_in` does
/// with rkyv's own, except that a thread whose arena is already destroyed (a
/// message sent from another thread-local's destructor while the thread
/// exits) gets a fresh one instead of a panic, which would abort the process.
/// Re-entered (a message serialized while serializing one), the inner call
/// gets a fresh arena too.
fn with_arena<O>(f: impl FnOnce(&mut Arena) -> O) -> O {
    let mut arena = ARENA.try_with(Cell::take).ok().flatten().unwrap_or_default();
    let result = f(&mut arena);
    let capacity = arena.shrink();
    let _ = ARENA.try_with(move |cell| {
        if let Some(other) = cell.take()
            && other.capacity() > capacity
        {
            arena = other;
        }
        cell.set(Some(arena));
    });
    result
}

/// A 64-bit fingerprint of a message type's name (FNV-1a), sent with every
/// remote message so that a receiver refuses a message meant for another type
/// with a clear error instead of misreading it.
pub(crate) fn type_fingerprint<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A message as an endpoint receives it.
///
/// A message sent from the same RpcEnv arrives as the value itself
/// ([`Msg::Local`]: no serialization, no copy); one from another process as a
/// validated view into the receive buffer ([`Msg::Remote`]: no copy either).
/// Match on both for zero-copy handling, or call [`Msg::into_owned`].
pub enum Msg<'a, T: Archive> {
    /// Sent by an endpoint of this RpcEnv; moved, never serialized.
    Local(T),
    /// Received over the network; borrowed from the receive buffer, already validated.
    Remote(&'a Archived<T>),
}

impl<T: Archive> std::fmt::Debug for Msg<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local(_) => "Msg::Local(..)",
            Self::Remote(_) => "Msg::Remote(..)",
        })
    }
}

impl<T: RpcMessage> Msg<'_, T> {
    /// The message as an owned value: free for a local message, a
    /// deserialization (a copy) for a remote one.
    ///
    /// # Errors
    /// [`RpcError::InvalidMessage`] if deserializing fails (the bytes were
    /// already validated, so only a type's own deserialize can fail).
    pub fn into_owned(self) -> Result<T, RpcError> {
        match self {
            Self::Local(v) => Ok(v),
            Self::Remote(a) => T::deserialize(a),
        }
    }

    /// Whether the message came from another process.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    struct Ping {
        seq: u64,
        note: String,
        data: Vec<u8>,
    }

    #[test]
    fn archive_reads_at_any_offset() {
        let value = Ping {
            seq: 42,
            note: "hi".into(),
            data: vec![1, 2, 3],
        };
        let encoded = value.to_bytes().unwrap();
        for offset in 0..9 {
            let mut buf = vec![0xAAu8; offset];
            buf.extend_from_slice(&encoded);
            let archived = Ping::access(&buf[offset..]).unwrap();
            assert_eq!(archived.seq, 42);
            assert_eq!(archived.note.as_str(), "hi");
            assert_eq!(archived.data.as_slice(), &[1, 2, 3]);
            // In place: the archived bytes live inside `buf`.
            assert!(buf.as_ptr_range().contains(&archived.data.as_slice().as_ptr()));
        }
    }

    #[test]
    fn encode_after_a_header() {
        let value = Ping {
            seq: 7,
            note: String::new(),
            data: vec![],
        };
        let mut out = BytesMut::from(&[9u8, 9, 9][..]);
        value.encode(&mut out).unwrap();
        assert_eq!(&out[..3], &[9, 9, 9]);
        assert_eq!(
            Ping::deserialize(Ping::access(&out[3..]).unwrap()).unwrap(),
            value
        );
    }

    #[test]
    fn garbage_is_refused() {
        let Err(err) = Ping::access(&[0xff; 40]) else {
            panic!("garbage accepted")
        };
        assert!(matches!(err, RpcError::InvalidMessage { .. }), "{err}");
        assert!(Ping::access(&[]).is_err());
    }

    #[test]
    fn fingerprints_differ_by_type() {
        assert_ne!(type_fingerprint::<Ping>(), type_fingerprint::<u64>());
        assert_eq!(type_fingerprint::<Ping>(), type_fingerprint::<Ping>());
    }
}
