//! The handover's messages on the wire ([`ConnectionEpoch`], [`ConnectionAck`]
//! and their reserved receiver names) and what a receiver keeps with each
//! connection that said its epoch ([`InboundConn`]).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The receiver name of [`ConnectionEpoch`] messages. Reserved: no endpoint
/// can be registered under it.
pub const CONNECTION_EPOCH_NAME: &str = "connection-epoch";

/// The first message an Outbox sends on each connection it opens: a request
/// to [`CONNECTION_EPOCH_NAME`], answered with an empty response once the
/// connection is live (the Outbox sends nothing else until then). Who is
/// sending and which of its connections this is, so that the receiver keeps
/// the sender's messages in order across reconnects, and which one-ways are
/// resent (see the module docs of `handover`). No endpoint ever sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConnectionEpoch {
    /// The sending Outbox's instance id: random, drawn once per Outbox.
    pub instance: u64,
    /// The Outbox's connection count to this destination: 1 for its first
    /// connection, one more per reconnect.
    pub epoch: u64,
    /// The number of the first one-way on this connection: the Outbox's
    /// one-ways are numbered from 0 across its connections, and this
    /// connection's follow in order.
    pub first_seq: u64,
    /// How many of the first one-ways on this connection are sent again:
    /// sent on an earlier connection and not acknowledged (a count).
    pub resend_count: u64,
}

/// The receiver name of [`ConnectionAck`] messages. Reserved.
pub const CONNECTION_ACK_NAME: &str = "connection-ack";

/// What a receiver sends back on a connection that said its epoch: it has
/// handled the first `one_ways` one-way messages of that connection (a
/// cumulative count), so their sender may forget them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConnectionAck {
    /// The epoch of the connection acknowledged.
    pub epoch: u64,
    /// One-way messages of that connection handled so far (a count).
    pub one_ways: u64,
}

/// What the receiving side attaches to a connection that said its epoch.
pub(crate) struct InboundConn {
    pub(crate) epoch: u64,
    /// The number of its first one-way ([`ConnectionEpoch::first_seq`]).
    pub(crate) first_seq: u64,
    /// One-way frames received on it (the epoch message not counted).
    pub(crate) one_ways: AtomicU64,
    /// Of those, how many were handled: dispatched or dropped as duplicates,
    /// in the order received.
    pub(crate) handled: AtomicU64,
    /// The count last sent in a [`ConnectionAck`].
    pub(crate) acked: AtomicU64,
}

impl InboundConn {
    /// The count to acknowledge, if it grew since the last ack.
    pub(crate) fn ack_due(&self) -> Option<u64> {
        let handled = self.handled.load(Ordering::Acquire);
        (self.acked.fetch_max(handled, Ordering::AcqRel) < handled).then_some(handled)
    }
}

/// Which one-ways a new connection sends again: see [`ConnectionEpoch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resend {
    pub(crate) first_seq: u64,
    pub(crate) count: u64,
}

/// The default handover timeout, in milliseconds.
pub const DEFAULT_HANDOVER_TIMEOUT_MS: u64 = 5_000;

/// A random instance id for a new Outbox: std's `RandomState` is seeded from
/// the OS's random source; the clock and the process id make ids of Outboxes
/// created in one process, or at one instant in many, differ too.
pub(crate) fn new_instance_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
