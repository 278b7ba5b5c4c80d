//! The handover state machine on fake connections: which frames are kept,
//! released in which order, fenced; pauses taken and given back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use transport::{ConnectionId, EncodedFrame, FrameSink, TransportClient, TransportConf, TransportError};

use super::*;

/// A connection's sink that records `close` and reader wake-ups.
#[derive(Clone, Default)]
struct Probe {
    closed: Arc<AtomicBool>,
    wakes: Arc<AtomicUsize>,
}

impl FrameSink for Probe {
    fn send(&self, _frame: EncodedFrame) -> Result<(), TransportError> {
        Ok(())
    }
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
    fn is_active(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }
    fn wake_reader(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

fn conn(id: u64) -> (TransportClient, Probe) {
    let probe = Probe::default();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let client = TransportClient::new(
        ConnectionId(id),
        addr,
        addr,
        &TransportConf::default(),
        Box::new(probe.clone()),
    );
    (client, probe)
}

fn frame(n: u8) -> Bytes {
    Bytes::from(vec![n])
}

impl Admit {
    fn is_dispatch(&self) -> bool {
        matches!(self, Admit::Dispatch(..))
    }
}

/// Admits `n` on `c`: `Some(n)` if it is to be dispatched now.
fn admit(h: &Handover, c: &TransportClient, n: u8) -> Option<u8> {
    match h.admit(c, frame(n), None) {
        Admit::Dispatch(body, _) => Some(body[0]),
        Admit::Taken | Admit::Duplicate => None,
    }
}

/// Closes `c` as the backend does: the first step of the release due, if any.
fn closed(h: &Handover, c: &TransportClient) -> Option<Release> {
    h.on_closed(c).turn
}

/// Runs a release to its end as the handler does, returning what was dispatched.
fn release_all(h: &Handover, mut turn: Option<Release>) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    while let Some(mut t) = turn {
        for (body, _) in std::mem::take(&mut t.frames) {
            out.push((t.client.id().0, body[0]));
        }
        turn = h.release_step(t).next;
    }
    out
}

#[test]
fn connections_without_an_epoch_are_never_held() {
    let h = Handover::new(Duration::from_secs(1));
    let (a, _) = conn(1);
    assert_eq!(admit(&h, &a, 1), Some(1));
    assert!(closed(&h, &a).is_none());
    assert_eq!(h.not_live(), 0);
}

#[test]
fn newer_connection_is_held_then_released_in_order() {
    let h = Handover::new(Duration::from_secs(1));
    let (old, _) = conn(1);
    let (new, new_probe) = conn(2);
    assert_eq!(
        h.on_epoch(&old, 1, 7, 1, Resend::default(), None),
        Ok(true),
        "live: answer now"
    );
    assert_eq!(
        h.on_epoch(&new, 1, 7, 2, Resend::default(), None),
        Ok(false),
        "held"
    );
    assert_eq!((h.not_live(), new.read_pauses()), (1, 1));
    assert_eq!(admit(&h, &new, 10), None, "kept");
    assert_eq!(admit(&h, &new, 11), None, "kept");
    assert_eq!(admit(&h, &old, 1), Some(1), "the older one is live");
    let turn = closed(&h, &old).expect("the newer one's turn");
    assert_eq!(turn.answer, Some(1), "its ConnectionEpoch is answered now");
    // Frames read while it is being released are kept for the same release.
    assert_eq!(admit(&h, &new, 12), None);
    assert_eq!(release_all(&h, Some(turn)), [(2, 10), (2, 11), (2, 12)]);
    assert_eq!((h.not_live(), new.read_pauses()), (0, 0));
    assert_eq!(new_probe.wakes.load(Ordering::SeqCst), 1, "its reader is woken");
    assert_eq!(admit(&h, &new, 13), Some(13), "live now");
}

#[test]
fn a_closed_held_connection_keeps_its_turn() {
    let h = Handover::new(Duration::from_secs(1));
    let (a, _) = conn(1);
    let (b, _) = conn(2);
    let (c, _) = conn(3);
    h.on_epoch(&a, 1, 7, 1, Resend::default(), None).unwrap();
    h.on_epoch(&b, 1, 7, 2, Resend::default(), None).unwrap();
    assert_eq!(admit(&h, &b, 20), None);
    assert!(closed(&h, &b).is_none(), "not its turn yet");
    h.on_epoch(&c, 1, 7, 3, Resend::default(), None).unwrap();
    assert_eq!(admit(&h, &c, 30), None);
    assert_eq!(
        release_all(&h, closed(&h, &a)),
        [(2, 20), (3, 30)],
        "b's frames, then c's"
    );
    assert_eq!((h.not_live(), c.read_pauses()), (0, 0));
    assert!(closed(&h, &c).is_none());
    assert!(h.lock().senders.is_empty(), "nothing left behind");
}

#[test]
fn an_older_epoch_is_fenced_and_its_frames_dropped() {
    let h = Handover::new(Duration::from_secs(1));
    let (new, _) = conn(1);
    let (late, late_probe) = conn(2);
    h.on_epoch(&new, 1, 7, 5, Resend::default(), None).unwrap();
    h.on_epoch(&late, 1, 7, 5, Resend::default(), None).unwrap();
    assert!(late_probe.closed.load(Ordering::SeqCst), "closed");
    assert_eq!(admit(&h, &late, 1), None, "dropped");
    assert_eq!(admit(&h, &new, 2), Some(2));
    assert!(closed(&h, &late).is_none());
    assert_eq!(h.not_live(), 0);
    // The newest epoch outlives the connections, so a later straggler is fenced too.
    assert!(closed(&h, &new).is_none());
    let (straggler, straggler_probe) = conn(3);
    h.on_epoch(&straggler, 1, 7, 4, Resend::default(), None).unwrap();
    assert!(straggler_probe.closed.load(Ordering::SeqCst));
    assert!(closed(&h, &straggler).is_none());
}

#[test]
fn a_second_epoch_on_one_connection_is_an_error() {
    let h = Handover::new(Duration::from_secs(1));
    let (a, _) = conn(1);
    h.on_epoch(&a, 1, 7, 1, Resend::default(), None).unwrap();
    assert!(h.on_epoch(&a, 1, 7, 2, Resend::default(), None).is_err());
}

#[test]
fn expiry_closes_the_live_connection_only_while_one_is_held() {
    let h = Handover::new(Duration::from_secs(1));
    let (old, old_probe) = conn(1);
    let (new, _) = conn(2);
    h.on_epoch(&old, 1, 7, 1, Resend::default(), None).unwrap();
    h.on_epoch(&new, 1, 7, 2, Resend::default(), None).unwrap();
    h.expire(7, 3);
    assert!(!old_probe.closed.load(Ordering::SeqCst), "no such epoch held");
    h.expire(7, 2);
    assert!(
        old_probe.closed.load(Ordering::SeqCst),
        "the replaced one is closed"
    );
    assert!(release_all(&h, closed(&h, &old)).is_empty());
    assert_eq!(admit(&h, &new, 1), Some(1), "live once the old one closed");
    h.expire(7, 2);
    assert!(new.is_active(), "a late expiry closes nothing");
}

#[test]
fn retired_instances_are_bounded() {
    let h = Handover::new(Duration::from_secs(1));
    for i in 0..(RETIRED_KEPT as u64 + 10) {
        let (c, _) = conn(i);
        h.on_epoch(&c, 1, i, 1, Resend::default(), None).unwrap();
        assert!(closed(&h, &c).is_none());
    }
    let st = h.lock();
    assert!(st.senders.is_empty());
    assert_eq!(st.newest.len(), RETIRED_KEPT);
    assert_eq!(
        (st.retired.len(), st.last_retired.len()),
        (RETIRED_KEPT, RETIRED_KEPT)
    );
    assert!(!st.newest.contains_key(&0), "the oldest is forgotten");
}

/// A new connection whose first one-way is number `first_seq`, the first
/// `count` of them sent again.
fn resend(first_seq: u64, count: u64) -> Resend {
    Resend { first_seq, count }
}

/// Counts a one-way received on `c`, as the handler does before `admit`.
fn receive(h: &Handover, c: &TransportClient, n: u8) -> Option<u8> {
    if let Some(conn) = c.attachment::<InboundConn>() {
        conn.one_ways.fetch_add(1, Ordering::AcqRel);
    }
    admit(h, c, n)
}

#[test]
fn resent_one_ways_already_delivered_are_dropped_once() {
    let h = Handover::new(Duration::from_secs(1));
    let (old, _) = conn(1);
    h.on_epoch(&old, 1, 7, 1, Resend::default(), None).unwrap();
    for n in 1..=3 {
        assert_eq!(receive(&h, &old, n), Some(n));
    }
    assert!(closed(&h, &old).is_none());
    // The sender had an ack for the first one (number 0): it resends numbers
    // 1, 2 and 3 (the last lost with the old connection).
    let (new, _) = conn(2);
    h.on_epoch(&new, 1, 7, 2, resend(1, 3), None).unwrap();
    assert_eq!(h.not_live(), 1, "two duplicates to drop");
    assert_eq!(receive(&h, &new, 2), None, "duplicate");
    assert_eq!(h.lock().senders[&7][0].skip, 1);
    assert!(
        h.admit(&new, frame(9), Some(1)).is_dispatch(),
        "asks are never skipped"
    );
    assert_eq!(receive(&h, &new, 3), None, "duplicate");
    assert_eq!(h.not_live(), 0);
    assert_eq!(
        receive(&h, &new, 4),
        Some(4),
        "lost on the old connection: delivered"
    );
}

#[test]
fn duplicates_among_kept_frames_are_dropped_at_release() {
    let h = Handover::new(Duration::from_secs(1));
    let (old, _) = conn(1);
    h.on_epoch(&old, 1, 7, 1, Resend::default(), None).unwrap();
    let (new, _) = conn(2);
    // Resends everything from number 0: three one-ways.
    h.on_epoch(&new, 1, 7, 2, resend(0, 3), None).unwrap();
    assert_eq!(receive(&h, &new, 1), None, "kept");
    assert_eq!(receive(&h, &old, 1), Some(1));
    assert_eq!(receive(&h, &new, 2), None, "kept");
    assert_eq!(receive(&h, &old, 2), Some(2));
    // The old connection closes having delivered 1 and 2; 3 was lost with it.
    let turn = closed(&h, &old);
    assert_eq!(receive(&h, &new, 3), None, "kept while releasing");
    assert_eq!(release_all(&h, turn), [(2, 3)], "1 and 2 dropped as duplicates");
    assert_eq!(h.not_live(), 0);
    assert_eq!(receive(&h, &new, 4), Some(4));
}

#[test]
fn a_resend_from_a_sender_not_seen_is_delivered_whole() {
    let h = Handover::new(Duration::from_secs(1));
    let (new, _) = conn(1);
    h.on_epoch(&new, 1, 7, 3, resend(5, 2), None).unwrap();
    assert_eq!(h.not_live(), 0);
    assert_eq!(receive(&h, &new, 1), Some(1));
}

#[test]
fn numbers_carry_across_a_connection_the_receiver_never_saw() {
    let h = Handover::new(Duration::from_secs(1));
    let (first, _) = conn(1);
    h.on_epoch(&first, 1, 7, 1, Resend::default(), None).unwrap();
    for n in 0..4 {
        assert_eq!(receive(&h, &first, n), Some(n));
    }
    assert!(closed(&h, &first).is_none());
    // Epoch 2 resent numbers 2.. and never reached this receiver; epoch 3
    // resends from number 2 again, six one-ways (2..8).
    let (third, _) = conn(3);
    h.on_epoch(&third, 1, 7, 3, resend(2, 6), None).unwrap();
    let got: Vec<_> = (2..8).filter_map(|n| receive(&h, &third, n)).collect();
    assert_eq!(got, [4, 5, 6, 7], "2 and 3 were delivered on epoch 1");
}

#[test]
fn instance_ids_differ() {
    let ids: std::collections::HashSet<u64> = (0..1000).map(|_| new_instance_id()).collect();
    assert_eq!(ids.len(), 1000);
}

/// Waits up to 10 s for `probe`'s connection to be closed.
fn closed_within_10s(probe: &Probe) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if probe.closed.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_connection_held_behind_two_is_not_held_for_ever() {
    // Epochs 2 and 3 both wait behind epoch 1; their timeouts fire while 1 is
    // still the live one (both close it). Once 2 is live, 3 still waits for
    // it: if 2 never closes (half-open), 3's timeout must close it too.
    let timer = TimeoutScheduler::start();
    let h = Handover::new(Duration::from_millis(20));
    let (a, a_probe) = conn(1);
    let (b, b_probe) = conn(2);
    let (c, _) = conn(3);
    h.on_epoch(&a, 1, 7, 1, Resend::default(), Some(&timer)).unwrap();
    h.on_epoch(&b, 1, 7, 2, Resend::default(), Some(&timer)).unwrap();
    h.on_epoch(&c, 1, 7, 3, Resend::default(), Some(&timer)).unwrap();
    assert!(closed_within_10s(&a_probe), "the timeout closes the live one");
    // Let the other timeout fire too before 1's close is seen.
    std::thread::sleep(Duration::from_millis(200));
    assert!(release_all(&h, closed(&h, &a)).is_empty());
    assert_eq!(admit(&h, &b, 1), Some(1), "2 is live");
    assert!(closed_within_10s(&b_probe), "3's wait is bounded too");
    assert!(release_all(&h, closed(&h, &b)).is_empty());
    assert_eq!(admit(&h, &c, 2), Some(2), "3 is live");
    assert_eq!(h.not_live(), 0);
    timer.stop();
}

#[test]
fn a_closed_held_connection_ends_after_its_frames() {
    let h = Handover::new(Duration::from_secs(1));
    let (a, _) = conn(1);
    let (b, _) = conn(2);
    h.on_epoch(&a, 1, 7, 1, Resend::default(), None).unwrap();
    h.on_epoch(&b, 1, 7, 2, Resend::default(), None).unwrap();
    assert_eq!(admit(&h, &b, 20), None);
    let closed_b = h.on_closed(&b);
    assert!(closed_b.pending, "its end waits for its kept frame");
    assert!(closed_b.turn.is_none());
    let closed_a = h.on_closed(&a);
    assert!(!closed_a.pending, "the live one ends at once");
    let turn = closed_a.turn.expect("b's turn");
    assert_eq!(turn.frames.len(), 1);
    let step = h.release_step(turn);
    assert_eq!(
        step.ended.map(|c| c.id()),
        Some(b.id()),
        "b ends once its frame was dispatched"
    );
    assert!(step.next.is_none());
    assert_eq!(h.not_live(), 0);
}

#[test]
fn a_sender_that_retired_twice_is_remembered_from_its_last_retirement() {
    let h = Handover::new(Duration::from_secs(1));
    // Instance 7 connects and goes away twice (epochs 1, then 2).
    for (id, epoch) in [(1_000_000, 1), (1_000_001, 2)] {
        let (c, _) = conn(id);
        h.on_epoch(&c, 1, 7, epoch, Resend::default(), None).unwrap();
        assert!(closed(&h, &c).is_none());
    }
    // Fewer than RETIRED_KEPT other senders retire after its last retirement.
    for i in 0..(RETIRED_KEPT as u64 - 1) {
        let (c, _) = conn(i);
        h.on_epoch(&c, 1, 100 + i, 1, Resend::default(), None).unwrap();
        assert!(closed(&h, &c).is_none());
    }
    // So its newest epoch is still known: a straggler of epoch 2 is fenced.
    let (late, late_probe) = conn(2_000_000);
    h.on_epoch(&late, 1, 7, 2, Resend::default(), None).unwrap();
    assert!(late_probe.closed.load(Ordering::SeqCst), "fenced");
    assert!(closed(&h, &late).is_none());
    assert_eq!(h.not_live(), 0);
}
