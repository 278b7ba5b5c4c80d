//! Fuzzes what an untrusted frame body goes through before an endpoint reads
//! it: the envelope parse (Spark's `RequestMessage` header, run by the
//! Dispatcher) and `RpcMessage::access`, rkyv's bytecheck validation (run by
//! the Inbox), for the standalone cluster's real message types: enums with
//! strings, nested structs and `Option`s (`MasterMessage`, `WorkerMessage`,
//! `MasterReply`), and the RpcHandler's own `ConnectionEpoch` and `ConnectionAck`.
//!
//! Input: a frame body as is. Checked on every input:
//! - nothing panics; a refusal is an `RpcError::InvalidMessage`;
//! - an accepted archive deserializes, re-serializes to an archive that
//!   validates and deserializes to the same value;
//! - an accepted envelope re-encodes (with that value) to a body that parses
//!   back to the same receiver, sender and the value's type fingerprint.
//!
//! Every type is tried on the envelope's payload whatever its fingerprint
//! (a stronger test than the Inbox, which tries only the matching type), and
//! on the whole input as a reply body, which carries no envelope.
#![no_main]

use std::fmt::Debug;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rpc::fuzzing::{ParsedEnvelope, encode_envelope, fingerprint_of, parse_envelope};
use rpc::{RpcError, RpcMessage};
use spark_rpc_fuzz::messages::{MasterMessage, MasterReply, WorkerMessage};

/// Validates `bytes` as an archived `T`; if accepted, checks the round trip
/// and, given the envelope it came in, the envelope's.
fn check<T: RpcMessage + Debug + PartialEq>(bytes: &[u8], envelope: Option<&ParsedEnvelope>) {
    let archived = match T::access(bytes) {
        Ok(a) => a,
        Err(RpcError::InvalidMessage { .. }) => return,
        Err(other) => panic!("access failed with {other:?}, expected InvalidMessage"),
    };
    let value = T::deserialize(archived).expect("a validated archive must deserialize");
    let again = value
        .to_bytes()
        .expect("a deserialized value must serialize");
    let back = T::access(&again).expect("a re-serialized archive must validate");
    let back = T::deserialize(back).expect("a re-serialized archive must deserialize");
    assert_eq!(back, value, "round trip changed the value");

    if let Some(env) = envelope {
        let body = encode_envelope(env.sender.as_ref(), &env.receiver, &value)
            .expect("a parsed envelope's fields fit an envelope");
        let parsed = parse_envelope(body).expect("an encoded envelope must parse");
        assert_eq!(parsed.receiver, env.receiver);
        assert_eq!(parsed.sender, env.sender);
        assert_eq!(parsed.fingerprint, fingerprint_of::<T>());
        assert_eq!(&parsed.payload[..], &again[..], "envelope changed the archive");
    }
}

fuzz_target!(|data: &[u8]| {
    // A reply body: the archive alone.
    check::<MasterReply>(data, None);

    let body = Bytes::copy_from_slice(data);
    let envelope = match parse_envelope(body.clone()) {
        Ok(env) => env,
        Err(RpcError::InvalidMessage { .. }) => return,
        Err(other) => panic!("envelope parse failed with {other:?}, expected InvalidMessage"),
    };
    assert!(
        body.as_ptr_range().contains(&envelope.payload.as_ptr()) || envelope.payload.is_empty(),
        "the payload must be a slice of the body, not a copy"
    );
    let payload = envelope.payload.clone();
    check::<MasterMessage>(&payload, Some(&envelope));
    check::<WorkerMessage>(&payload, Some(&envelope));
    check::<MasterReply>(&payload, Some(&envelope));
    // The RpcHandler's own messages (reconnect handover and one-way acks).
    check::<rpc::ConnectionEpoch>(&payload, Some(&envelope));
    check::<rpc::ConnectionAck>(&payload, Some(&envelope));
});
