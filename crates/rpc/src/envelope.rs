//! The envelope of a remote message inside a frame body (Spark's
//! `RequestMessage`: sender address, receiver name, content).
//!
//! Layout, integers big-endian like the frame around it:
//!
//! | field | bytes |
//! | --- | --- |
//! | version (1) | 1 |
//! | fingerprint of the message type | 8 |
//! | receiver name length `n` | 2 |
//! | receiver name, UTF-8 | n |
//! | sender present (0 or 1) | 1 |
//! | sender host length `h`, host, port (only if present) | 2 + h + 2 |
//! | the message: an rkyv archive (unaligned format) | the rest |
//!
//! Replies carry no envelope: an RpcResponse body is the archive of the reply.

use bytes::{Buf, BufMut, Bytes};
use bytestring::ByteString;

use crate::address::RpcAddress;
use crate::encode_buf;
use crate::error::RpcError;
use crate::message::{RpcMessage, type_fingerprint};

const VERSION: u8 = 1;

/// A parsed envelope; `payload` is a slice of the frame body (no copy).
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) fingerprint: u64,
    /// Checked to be UTF-8 once, at parse time, and shared with the frame.
    receiver: ByteString,
    pub(crate) sender: Option<RpcAddress>,
    pub(crate) payload: Bytes,
}

impl Envelope {
    /// The receiver's name (validated UTF-8 at parse time).
    pub(crate) fn receiver(&self) -> &str {
        &self.receiver
    }
}

fn invalid(reason: impl Into<String>) -> RpcError {
    RpcError::InvalidMessage {
        type_name: "envelope",
        reason: reason.into(),
    }
}

/// Encodes an envelope for `receiver` from `sender`, followed by `msg`.
pub(crate) fn encode<M: RpcMessage>(
    sender: Option<&RpcAddress>,
    receiver: &str,
    msg: &M,
) -> Result<Bytes, RpcError> {
    let name_len = u16::try_from(receiver.len()).map_err(|_| invalid("receiver name over 65535 bytes"))?;
    let host_len = match sender {
        Some(a) => Some(u16::try_from(a.host.len()).map_err(|_| invalid("sender host over 65535 bytes"))?),
        None => None,
    };
    let size_hint = 64 + receiver.len() + std::mem::size_of::<M::Archived>();
    encode_buf::encode_with(size_hint, |out| {
        out.put_u8(VERSION);
        out.put_u64(type_fingerprint::<M>());
        out.put_u16(name_len);
        out.put_slice(receiver.as_bytes());
        match (sender, host_len) {
            (Some(a), Some(host_len)) => {
                out.put_u8(1);
                out.put_u16(host_len);
                out.put_slice(a.host.as_bytes());
                out.put_u16(a.port);
            }
            _ => out.put_u8(0),
        }
        msg.encode(out)
    })
}

/// Parses the envelope at the front of `body`. Untrusted input: every length is checked.
pub(crate) fn parse(mut body: Bytes) -> Result<Envelope, RpcError> {
    let need = |b: &Bytes, n: usize, what: &str| {
        if b.remaining() < n {
            Err(invalid(format!("truncated {what}")))
        } else {
            Ok(())
        }
    };
    need(&body, 11, "envelope header")?;
    let version = body.get_u8();
    if version != VERSION {
        return Err(invalid(format!(
            "envelope version {version}; this build speaks {VERSION}"
        )));
    }
    let fingerprint = body.get_u64();
    let name_len = body.get_u16() as usize;
    need(&body, name_len + 1, "receiver name")?;
    let receiver =
        ByteString::try_from(body.split_to(name_len)).map_err(|_| invalid("receiver name is not UTF-8"))?;
    let sender = match body.get_u8() {
        0 => None,
        1 => {
            need(&body, 2, "sender host length")?;
            let host_len = body.get_u16() as usize;
            need(&body, host_len + 2, "sender address")?;
            let host = String::from_utf8(body.split_to(host_len).to_vec())
                .map_err(|_| invalid("sender host is not UTF-8"))?;
            Some(RpcAddress::new(host, body.get_u16()))
        }
        other => return Err(invalid(format!("sender flag {other}, expected 0 or 1"))),
    };
    Ok(Envelope {
        fingerprint,
        receiver,
        sender,
        payload: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_sender() {
        let from = RpcAddress::new("host-a", 7077);
        for sender in [None, Some(&from)] {
            let bytes = encode(sender, "master", &123u64).unwrap();
            let env = parse(bytes.clone()).unwrap();
            assert_eq!(env.receiver(), "master");
            assert_eq!(env.sender.as_ref(), sender);
            assert_eq!(env.fingerprint, type_fingerprint::<u64>());
            assert_eq!(*u64::access(&env.payload).unwrap(), 123);
            assert!(
                bytes.as_ptr_range().contains(&env.payload.as_ptr()),
                "payload is a slice"
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(Some(&RpcAddress::new("h", 1)), "name", &1u32).unwrap();
        let header_len = bytes.len() - 4;
        for cut in 0..header_len {
            assert!(parse(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[0] = 9;
        assert!(
            parse(Bytes::from(bad))
                .unwrap_err()
                .to_string()
                .contains("version")
        );
    }
}
