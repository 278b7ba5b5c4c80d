//! Connection handover: a sender's messages stay in order across a reconnect.
//!
//! **The problem.** An [`Outbox`](crate::outbox) that loses its connection
//! reconnects at once. The server side of the old connection may still hold
//! unread bytes (in the kernel, or behind a paused read) when the new one
//! starts delivering, and the two connections are read by different event-loop
//! threads. Without more, a message sent after the reconnect can reach its
//! endpoint before one sent before it. Spark has the same gap; Kafka's
//! producer epochs and Raft's terms are the usual cure, and this is that cure
//! for one sender's connections.
//!
//! **The protocol.** Every Outbox draws a random 64-bit *instance* id when it
//! is created (one per Outbox, not per RpcEnv: an RpcEnv may have two
//! Outboxes to one server, under two spellings of its address, and each
//! numbers its one-ways and counts its connections on its own). The first
//! frame an Outbox writes on each new connection is a
//! [`ConnectionEpoch`] request to the reserved receiver
//! [`CONNECTION_EPOCH_NAME`], carrying that instance id and the Outbox's
//! *epoch*: 1 for its first connection, one more for each reconnect. The
//! receiving `RpcHandler` handles it on the connection's event-loop thread,
//! never dispatches it, and answers it (an empty response) once the
//! connection is live; the Outbox sends nothing else until then. A receiver
//! that refuses the peer (authentication) answers it with that failure, so
//! the sender's first message already gets the reason.
//!
//! **The server side**, per instance, keeps its connections in epoch order:
//! - the oldest open one is *live*: its frames are dispatched as they are read;
//! - a newer one is *held*: its ConnectionEpoch is not answered yet, its
//!   reading is paused (a [`ReadPause`]: a peer that sends on anyway waits in
//!   TCP) and the frames of the read that held it are kept aside, in order;
//! - when the live connection closes (end of stream after its last bytes were
//!   read), the next one is released: its ConnectionEpoch is answered, its
//!   kept frames are dispatched, then its reading resumes. A held connection that closed meanwhile still has its
//!   kept frames dispatched, in turn; nothing the server read is dropped.
//!   Endpoints see each connection's disconnect (`on_disconnected`) after
//!   its last message and before the next connection's first, so one that
//!   forgets a peer on disconnect does not forget what it said again.
//! - a connection whose epoch is not above the newest one seen for its
//!   instance was superseded before it said so: it is *fenced* (closed, and
//!   what it delivered is dropped, with one `warn`), since its messages would
//!   arrive after newer ones. Its sender treats it as lost: its asks failed
//!   with `ConnectionLost`, and its one-ways, not acknowledged, are resent
//!   on the newer connection.
//! - a held connection waits at most the handover timeout
//!   (`handover_timeout_ms`, default 5,000 ms). Then the live connection is
//!   closed: its sender opened a newer one, so it has given it up, and a
//!   half-open old connection (its close lost on the network) must not stall
//!   the new one for ever. The timeout is armed again while the connection
//!   stays held, so each connection that goes live before it gets at most
//!   that long too.
//!
//! **One-ways lost with a connection are sent again, once.** An Outbox
//! numbers its one-ways 0, 1, 2, ... across all its connections (implicitly:
//! a connection's `ConnectionEpoch` gives the number of its first one-way,
//! and the rest follow in order). The receiver counts the one-way frames of
//! each connection it has handled (dispatched, or dropped as duplicates) and,
//! after each read from the socket that handled some (the transport's
//! `read_complete`), answers with a [`ConnectionAck`] of the count. The
//! Outbox keeps each one-way it sent until an ack covers it. When it
//! reconnects, it sends the unacknowledged ones first, and its
//! `ConnectionEpoch` says so. The receiver remembers, per sender, the number
//! after the last one-way it handled; once the previous connections have
//! closed, that is final, and it drops the resent ones below it as
//! duplicates. So while the receiving RpcEnv lives, a
//! one-way accepted by `send` is handled exactly once even across connection
//! drops; if reconnecting fails, the unacknowledged ones are dropped with a
//! `warn` naming how many. A receiver that restarted has no count: it
//! handles every resent one (at least once).
//!
//! Cost: one small frame per connection, one ack back per read that carried
//! one-ways, a reference count per one-way kept by the sender, and on the
//! read path one atomic load per frame while no connection is held anywhere
//! in the RpcEnv, plus two atomic adds per one-way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::TransportClient;

use crate::timeout::{Expire, TimeoutScheduler};

mod protocol;
mod senders;

#[cfg(test)]
use senders::RETIRED_KEPT;
use senders::{Conn, Stage, State};

pub use protocol::{
    CONNECTION_ACK_NAME, CONNECTION_EPOCH_NAME, ConnectionAck, ConnectionEpoch, DEFAULT_HANDOVER_TIMEOUT_MS,
};
pub(crate) use protocol::{InboundConn, Resend, new_instance_id};

/// A frame kept aside while its connection is held: the body and, for an
/// RpcRequest, its request id.
pub(crate) type KeptFrame = (Bytes, Option<i64>);

/// What a frame's connection is doing, for [`Handover::admit`].
pub(crate) enum Admit {
    /// Dispatch it now.
    Dispatch(Bytes, Option<i64>),
    /// Kept aside (held) or dropped (fenced): nothing to do.
    Taken,
    /// A resent one-way already handled: dropped (it counts as handled).
    Duplicate,
}

/// The handover state of one RpcEnv's inbound connections.
pub(crate) struct Handover {
    /// Connections held, releasing or fenced: while 0, [`admit`](Self::admit)
    /// is one atomic load.
    not_live: AtomicUsize,
    state: Mutex<State>,
    timeout: Duration,
}

/// What [`Handover::on_closed`] tells the handler.
pub(crate) struct Closed {
    /// The closed connection still has frames to dispatch (it was held or
    /// being released): its end (disconnect events) waits until they were,
    /// when a [`Step`] names it.
    pub(crate) pending: bool,
    /// The first step of releasing the next connection of its sender, if due.
    pub(crate) turn: Option<Release>,
}

/// What [`Handover::release_step`] tells the handler.
pub(crate) struct Step {
    /// A closed connection whose frames have all been dispatched now: its end
    /// is due (it had [`Closed::pending`]).
    pub(crate) ended: Option<TransportClient>,
    /// The next frames to dispatch, if any.
    pub(crate) next: Option<Release>,
}

/// What releasing a connection hands back: dispatch these frames of `client`
/// in order, then call [`Handover::release_step`] again.
pub(crate) struct Release {
    pub(crate) client: TransportClient,
    /// Answer this ConnectionEpoch request first: the connection is live.
    pub(crate) answer: Option<i64>,
    pub(crate) frames: Vec<KeptFrame>,
    instance: u64,
}

impl Handover {
    pub(crate) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            not_live: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on `conn`, keeping the count of connections that need
    /// the slow path right.
    fn update<R>(&self, conn: &mut Conn, change: impl FnOnce(&mut Conn) -> R) -> R {
        let before = conn.not_live();
        let r = change(conn);
        match (before, conn.not_live()) {
            (false, true) => {
                self.not_live.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.not_live.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        r
    }

    /// Called for every request and one-way frame before it is dispatched:
    /// keeps it aside if its connection is held, drops it if fenced or if it
    /// is a resent one-way already delivered.
    pub(crate) fn admit(&self, client: &TransportClient, body: Bytes, reply: Option<i64>) -> Admit {
        if self.not_live.load(Ordering::Acquire) == 0 {
            return Admit::Dispatch(body, reply);
        }
        let mut st = self.lock();
        let instance = match st.by_conn.get(&client.id()) {
            None => return Admit::Dispatch(body, reply),
            Some(None) => return Admit::Taken, // fenced
            Some(Some(instance)) => *instance,
        };
        let Some(conn) = st
            .senders
            .get_mut(&instance)
            .and_then(|conns| conns.iter_mut().find(|c| c.client.id() == client.id()))
        else {
            return Admit::Dispatch(body, reply);
        };
        match &mut conn.stage {
            Stage::Held { kept, .. } | Stage::Releasing { kept, .. } => {
                kept.push((body, reply));
                Admit::Taken
            }
            Stage::Live if reply.is_none() && conn.skip > 0 => {
                self.update(conn, |c| c.skip -= 1);
                Admit::Duplicate
            }
            Stage::Live => Admit::Dispatch(body, reply),
        }
    }

    /// Handles a [`ConnectionEpoch`] request (id `request_id`) that arrived
    /// on `client`. Returns `Ok(true)` when the connection is live at once
    /// (the caller answers the request now), `Ok(false)` when it is held or
    /// fenced (a held one is answered when released; a fenced one is closed),
    /// and a protocol error (the caller closes the connection) for a second
    /// epoch on one connection.
    pub(crate) fn on_epoch(
        self: &Arc<Self>,
        client: &TransportClient,
        request_id: i64,
        instance: u64,
        epoch: u64,
        resend: Resend,
        timer: Option<&Arc<TimeoutScheduler>>,
    ) -> Result<bool, String> {
        let mut st = self.lock();
        if st.by_conn.contains_key(&client.id()) {
            return Err("a second connection epoch on one connection".into());
        }
        let newest = st.newest.get(&instance).copied().unwrap_or(0);
        if epoch <= newest {
            st.by_conn.insert(client.id(), None);
            self.not_live.fetch_add(1, Ordering::AcqRel);
            drop(st);
            tracing::warn!(
                peer = %client.peer_addr(), epoch, newest,
                "closing a connection superseded by a newer one from the same RpcEnv; \
                 its messages would arrive out of order and are dropped (its sender saw it close)"
            );
            client.close();
            return Ok(false);
        }
        client.set_attachment(Arc::new(InboundConn {
            epoch,
            first_seq: resend.first_seq,
            one_ways: std::sync::atomic::AtomicU64::new(0),
            handled: std::sync::atomic::AtomicU64::new(0),
            acked: std::sync::atomic::AtomicU64::new(0),
        }));
        st.newest.insert(instance, epoch);
        st.by_conn.insert(client.id(), Some(instance));
        let first = st.senders.get(&instance).is_none_or(|c| c.is_empty());
        let mut conn = Conn {
            client: client.clone(),
            epoch,
            stage: Stage::Live,
            closed: false,
            resend,
            skip: 0,
            answer: None,
        };
        if first {
            conn.skip = st.duplicates(instance, resend);
        } else {
            conn.answer = Some(request_id);
            conn.stage = Stage::Held {
                kept: Vec::new(),
                pause: client.pause_reading(),
            };
        }
        if conn.not_live() {
            self.not_live.fetch_add(1, Ordering::AcqRel);
        }
        st.senders.entry(instance).or_default().push_back(conn);
        drop(st);
        if !first {
            tracing::debug!(
                peer = %client.peer_addr(), epoch,
                "holding a reconnected sender's new connection until its previous one has closed"
            );
            if let Some(timer) = timer {
                let action = Arc::new(HandoverTimeout {
                    handover: Arc::downgrade(self),
                    timer: Arc::downgrade(timer),
                    instance,
                    epoch,
                });
                timer.schedule(Instant::now() + self.timeout, action);
            }
        }
        Ok(first)
    }

    /// The backend closed `client`. Returns whether its end must wait for
    /// frames it still has to dispatch, and the first step of releasing the
    /// next connection of its sender, if that is now due.
    pub(crate) fn on_closed(&self, client: &TransportClient) -> Closed {
        let done = Closed {
            pending: false,
            turn: None,
        };
        let mut st = self.lock();
        let Some(instance) = st.by_conn.get(&client.id()).copied() else {
            return done;
        };
        let Some(instance) = instance else {
            // Fenced: forget it.
            st.by_conn.remove(&client.id());
            self.not_live.fetch_sub(1, Ordering::AcqRel);
            return done;
        };
        let Some(conns) = st.senders.get_mut(&instance) else {
            return done;
        };
        let Some(pos) = conns.iter().position(|c| c.client.id() == client.id()) else {
            return done;
        };
        conns[pos].closed = true;
        if pos != 0 || !matches!(conns[0].stage, Stage::Live) {
            // A held connection closed: its kept frames still go, in turn,
            // and its end after them. (One being released closes its own
            // turn in `release_step`.)
            return Closed {
                pending: true,
                turn: None,
            };
        }
        let Some(mut gone) = conns.pop_front() else {
            return done;
        };
        self.update(&mut gone, |c| c.skip = 0);
        st.by_conn.remove(&client.id());
        st.record_closed(instance, &gone);
        Closed {
            pending: false,
            turn: self.next_turn(&mut st, instance),
        }
    }

    /// Makes the front connection of `instance` (if any) the one being
    /// released and returns its kept frames, resent duplicates dropped.
    fn next_turn(&self, st: &mut State, instance: u64) -> Option<Release> {
        let duplicates = st
            .senders
            .get(&instance)?
            .front()
            .map(|c| st.duplicates(instance, c.resend));
        let Some(duplicates) = duplicates else {
            st.retire(instance);
            return None;
        };
        let front = st.senders.get_mut(&instance)?.front_mut()?;
        self.update(front, |c| {
            c.skip = duplicates;
            let stage = std::mem::replace(&mut c.stage, Stage::Live);
            let Stage::Held { mut kept, pause } = stage else {
                c.stage = stage;
                return None;
            };
            c.skip_duplicates(&mut kept);
            c.stage = Stage::Releasing {
                kept: Vec::new(),
                _pause: pause,
            };
            Some(Release {
                client: c.client.clone(),
                answer: c.answer.take(),
                frames: kept,
                instance,
            })
        })
    }

    /// After the frames of `done` were dispatched: the next frames of the same
    /// connection (read meanwhile), or of the next connection in turn if it
    /// closed (then it is named as ended), or none once the connection is
    /// live and reads again.
    pub(crate) fn release_step(&self, done: Release) -> Step {
        let nothing = Step {
            ended: None,
            next: None,
        };
        let mut st = self.lock();
        let instance = done.instance;
        let Some(front) = st.senders.get_mut(&instance).and_then(VecDeque::front_mut) else {
            return nothing;
        };
        debug_assert_eq!(front.client.id(), done.client.id());
        let more = self.update(front, |c| {
            let Stage::Releasing { kept, .. } = &mut c.stage else {
                return None;
            };
            let mut frames = std::mem::take(kept);
            c.skip_duplicates(&mut frames);
            (!frames.is_empty()).then_some(frames)
        });
        if let Some(frames) = more {
            return Step {
                ended: None,
                next: Some(Release {
                    client: done.client,
                    answer: None,
                    frames,
                    instance,
                }),
            };
        }
        let stage = self.update(front, |c| std::mem::replace(&mut c.stage, Stage::Live));
        if front.closed {
            let Some(mut gone) = st.senders.get_mut(&instance).and_then(VecDeque::pop_front) else {
                return nothing;
            };
            self.update(&mut gone, |c| c.skip = 0);
            st.by_conn.remove(&done.client.id());
            st.record_closed(instance, &gone);
            let next = self.next_turn(&mut st, instance);
            drop(st);
            drop(stage);
            return Step {
                ended: Some(done.client),
                next,
            };
        }
        drop(st);
        // Dropping the pause lets the connection read again, after every
        // frame kept from it was dispatched.
        drop(stage);
        nothing
    }

    /// The handover timeout fired for the connection of `instance` at `epoch`:
    /// if it is still held, closes the live connection before it. Returns
    /// whether it is still held (the timeout is armed again: the connection
    /// that goes live next, if it is half-open too, must not hold it for ever).
    fn expire(&self, instance: u64, epoch: u64) -> bool {
        let st = self.lock();
        let Some(conns) = st.senders.get(&instance) else {
            return false;
        };
        let still_held = conns
            .iter()
            .any(|c| c.epoch == epoch && matches!(c.stage, Stage::Held { .. }));
        let live = conns
            .front()
            .filter(|c| matches!(c.stage, Stage::Live) && !c.closed)
            .map(|c| c.client.clone());
        drop(st);
        if let (true, Some(live)) = (still_held, live) {
            tracing::warn!(
                peer = %live.peer_addr(), timeout = ?self.timeout,
                "closing a connection its sender has replaced: it did not close within the handover timeout"
            );
            live.close();
        }
        still_held
    }

    /// Connections held, releasing, skipping duplicates or fenced now (a
    /// count; for tests).
    #[cfg(test)]
    pub(crate) fn not_live(&self) -> usize {
        self.not_live.load(Ordering::Acquire)
    }
}

struct HandoverTimeout {
    handover: Weak<Handover>,
    timer: Weak<TimeoutScheduler>,
    instance: u64,
    epoch: u64,
}

impl Expire for HandoverTimeout {
    fn expire(&self, timed_out: bool) {
        if !timed_out {
            return;
        }
        let Some(h) = self.handover.upgrade() else {
            return;
        };
        if h.expire(self.instance, self.epoch)
            && let Some(timer) = self.timer.upgrade()
        {
            let again = Arc::new(HandoverTimeout {
                handover: self.handover.clone(),
                timer: self.timer.clone(),
                instance: self.instance,
                epoch: self.epoch,
            });
            timer.schedule(Instant::now() + h.timeout, again);
        }
    }
}

#[cfg(test)]
mod tests;
