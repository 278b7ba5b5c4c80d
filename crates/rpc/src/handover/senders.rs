//! A sender's connections in epoch order, as the receiver keeps them: each
//! one's stage (live, held, being released) and the frames kept aside, and
//! per sender the newest epoch and the number after the last one-way its
//! closed connections received.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use transport::{ConnectionId, ReadPause, TransportClient};

use super::{InboundConn, KeptFrame, Resend};

pub(super) enum Stage {
    /// Frames are dispatched as read.
    Live,
    /// Reading paused, frames kept aside until the connections before it closed.
    Held { kept: Vec<KeptFrame>, pause: ReadPause },
    /// Being released by another thread: frames read meanwhile are kept, and
    /// that thread dispatches them before it lets reading resume (by
    /// dropping the pause).
    Releasing { kept: Vec<KeptFrame>, _pause: ReadPause },
}

/// One connection of a sender, in its epoch order.
pub(super) struct Conn {
    pub(super) client: TransportClient,
    pub(super) epoch: u64,
    pub(super) stage: Stage,
    /// The backend reported it closed (`channel_inactive`).
    pub(super) closed: bool,
    pub(super) resend: Resend,
    /// Resent one-ways still to drop as duplicates (the first ones on it).
    pub(super) skip: u64,
    /// The request id of its ConnectionEpoch, to answer once it is live.
    pub(super) answer: Option<i64>,
}

impl Conn {
    /// Whether frames of this connection need the slow path of `admit`.
    pub(super) fn not_live(&self) -> bool {
        !matches!(self.stage, Stage::Live) || self.skip > 0
    }

    /// Drops the first `skip` one-ways of `frames` (resent duplicates),
    /// counting them handled.
    pub(super) fn skip_duplicates(&mut self, frames: &mut Vec<KeptFrame>) {
        if self.skip == 0 {
            return;
        }
        let before = self.skip;
        frames.retain(|(_, reply)| {
            if reply.is_none() && self.skip > 0 {
                self.skip -= 1;
                false
            } else {
                true
            }
        });
        if let Some(c) = self.client.attachment::<InboundConn>() {
            c.handled.fetch_add(before - self.skip, Ordering::AcqRel);
        }
    }
}

/// Every sender's connections, and what is remembered of senders whose
/// connections all closed.
#[derive(Default)]
pub(super) struct State {
    /// Per instance, its open connections in epoch order: the front one is
    /// live (or being released), the others held.
    pub(super) senders: HashMap<u64, VecDeque<Conn>>,
    /// Each connection that said its epoch: its instance, or `None` if fenced.
    pub(super) by_conn: HashMap<ConnectionId, Option<u64>>,
    /// The newest epoch seen per instance, kept after its connections closed
    /// (to fence a late connection of an older epoch) for the last
    /// [`RETIRED_KEPT`] instances that have none open.
    pub(super) newest: HashMap<u64, u64>,
    /// Per instance, the number after the last one-way its closed
    /// connections received: what a resend is counted against.
    pub(super) next_seq: HashMap<u64, u64>,
    /// Instances whose last connection closed, oldest first, each with the
    /// number of that retirement (an instance that reconnected and retired
    /// again is in it more than once).
    pub(super) retired: VecDeque<(u64, u64)>,
    /// Per retired instance, the number of its last retirement: only that
    /// entry of `retired` forgets it.
    pub(super) last_retired: HashMap<u64, u64>,
    /// Retirements so far (a count).
    pub(super) retirements: u64,
}

/// Retirements remembered: an instance without an open connection has its
/// newest epoch and next number kept until this many retirements followed
/// its last. Three 16-byte map entries each, so about 3 MiB of entries at most.
pub(super) const RETIRED_KEPT: usize = 65_536;

impl State {
    /// How many resent one-ways `resend` makes duplicates: those of its
    /// epoch the previous connection already delivered.
    pub(super) fn duplicates(&self, instance: u64, resend: Resend) -> u64 {
        self.next_seq
            .get(&instance)
            .map_or(0, |next| next.saturating_sub(resend.first_seq).min(resend.count))
    }

    /// Records that `conn` of `instance` is gone, with the one-ways it received.
    pub(super) fn record_closed(&mut self, instance: u64, conn: &Conn) {
        let Some(c) = conn.client.attachment::<InboundConn>() else {
            return;
        };
        let end = c.first_seq.saturating_add(c.one_ways.load(Ordering::Acquire));
        let next = self.next_seq.entry(instance).or_insert(0);
        *next = (*next).max(end);
    }

    /// `instance` has no open connection left: forget its connection list,
    /// and its newest epoch once [`RETIRED_KEPT`] retirements followed.
    pub(super) fn retire(&mut self, instance: u64) {
        self.senders.remove(&instance);
        self.retirements += 1;
        self.retired.push_back((instance, self.retirements));
        self.last_retired.insert(instance, self.retirements);
        while self.retired.len() > RETIRED_KEPT {
            if let Some((old, at)) = self.retired.pop_front()
                && self.last_retired.get(&old) == Some(&at)
            {
                self.last_retired.remove(&old);
                if !self.senders.contains_key(&old) {
                    self.newest.remove(&old);
                    self.next_seq.remove(&old);
                }
            }
        }
    }
}
