//! What a full inbox does, per endpoint, on both IO modes: refuse
//! (`InboxFullPolicy::Fail`) or hold the sender back (`InboxFullPolicy::Wait`):
//! a local sender blocks until there is room or the ask timeout passes (and
//! fails at once from the endpoint's own handler); a remote sender's
//! connection stops being read until there is room, so every message arrives,
//! in order, none refused, while other connections are served.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rpc::{
    EndpointOptions, InboxFullPolicy, Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcError, RpcSender,
};
use support::{client_with, plain, server_with};
use transport::IoMode;

/// A message with a sequence number and `pad` bytes, so that one read carries few of them.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Note {
    seq: u64,
    pad: Vec<u8>,
}

fn note(seq: u64) -> Note {
    Note {
        seq,
        pad: vec![7; PAD],
    }
}

/// Bytes of padding per message: a frame is longer than this.
const PAD: usize = 1024;

/// Records every sequence number it gets, one-way or asked (answering with
/// it); blocks on `gate` before its first message until the gate is opened
/// or dropped; then takes `work` per message.
struct Recorder {
    seen: Arc<Mutex<Vec<u64>>>,
    started: Sender<u64>,
    gate: Option<Receiver<()>>,
    work: Duration,
}

impl Recorder {
    fn take(&mut self, msg: Msg<'_, Note>) -> u64 {
        let seq = match msg {
            Msg::Local(n) => n.seq,
            Msg::Remote(n) => n.seq.to_native(),
        };
        let _ = self.started.send(seq);
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv_timeout(Duration::from_secs(60));
        }
        if !self.work.is_zero() {
            thread::sleep(self.work);
        }
        self.seen.lock().unwrap().push(seq);
        seq
    }
}

impl RpcEndpoint for Recorder {
    type Message = Note;
    type Reply = u64;

    fn receive(&mut self, msg: Msg<'_, Note>, _sender: &RpcSender) {
        self.take(msg);
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, Note>, ctx: RpcCallContext<u64>) {
        let seq = self.take(msg);
        ctx.reply(seq);
    }
}

struct Gated {
    seen: Arc<Mutex<Vec<u64>>>,
    started: Receiver<u64>,
    release: Sender<()>,
}

fn gated(work: Duration) -> (Recorder, Gated) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel();
    (
        Recorder {
            seen: seen.clone(),
            started: started_tx,
            gate: Some(gate),
            work,
        },
        Gated {
            seen,
            started,
            release,
        },
    )
}

/// Polls `cond` every 5 ms for up to 30 s (a bound for a stuck test, not a timing check).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

const CAPACITY: usize = 4;

fn options(policy: InboxFullPolicy) -> EndpointOptions {
    EndpointOptions::new().inbox_capacity(CAPACITY).when_full(policy)
}

/// Sends the first message and waits until the endpoint holds it (out of the
/// queue), then fills the queue with `CAPACITY` more from the local reference.
fn fill(local: &RpcEndpointRef<Note, u64>, g: &Gated) {
    local.send(note(0)).unwrap();
    assert_eq!(g.started.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    for seq in 1..=CAPACITY as u64 {
        local.send(note(seq)).unwrap();
    }
}

/// An env whose default is to wait; the endpoint overrides it with `fail`.
fn fail_policy_refuses_local_and_remote_with_clear_errors(mode: IoMode) {
    let s = server_with(mode, "server", |c| c.inbox_full_policy = InboxFullPolicy::Wait);
    let (recorder, g) = gated(Duration::ZERO);
    let local = s
        .setup_endpoint_with("strict", recorder, options(InboxFullPolicy::Fail))
        .unwrap();
    let stats = s.inbox_stats("strict").unwrap();
    assert_eq!(
        (stats.capacity, stats.when_full),
        (CAPACITY, InboxFullPolicy::Fail)
    );
    let c = client_with(mode, "client", plain);
    let remote: RpcEndpointRef<Note, u64> = c.setup_endpoint_ref(s.address().unwrap(), "strict").unwrap();
    fill(&local, &g);

    let full = |e: RpcError| {
        assert!(
            matches!(&e, RpcError::InboxFull { endpoint, capacity: CAPACITY } if endpoint == "strict"),
            "{e:?}"
        );
        assert!(e.to_string().contains("inbox_capacity"), "{e}");
    };
    full(local.send(note(90)).unwrap_err());
    full(local.ask_sync(note(91)).unwrap_err());
    full(remote.ask_sync(note(92)).unwrap_err());

    g.release.send(()).unwrap();
    eventually("the queue drains", || {
        g.seen.lock().unwrap().len() == CAPACITY + 1
    });
    assert_eq!(
        *g.seen.lock().unwrap(),
        [0, 1, 2, 3, 4],
        "refused messages never arrive"
    );
    assert_eq!(remote.ask_sync(note(5)).unwrap(), 5, "serving again once drained");
}

fn wait_policy_blocks_a_local_sender_until_there_is_room(mode: IoMode) {
    // The env's default is `fail`; the endpoint waits.
    let s = server_with(mode, "server", plain);
    let (recorder, g) = gated(Duration::ZERO);
    let local = s
        .setup_endpoint_with("patient", recorder, options(InboxFullPolicy::Wait))
        .unwrap();
    fill(&local, &g);

    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (local, done) = (local.clone(), done.clone());
        thread::spawn(move || {
            local.send(note(5)).unwrap();
            let reply = local.ask_sync(note(6));
            done.store(true, Ordering::SeqCst);
            reply
        })
    };
    eventually("the sender blocks for room", || {
        s.inbox_stats("patient").unwrap().waiting_senders == 1
    });
    assert!(!done.load(Ordering::SeqCst), "the sender is still blocked");
    assert_eq!(s.inbox_stats("patient").unwrap().len, CAPACITY);

    g.release.send(()).unwrap();
    assert_eq!(sender.join().unwrap().unwrap(), 6);
    assert_eq!(
        *g.seen.lock().unwrap(),
        [0, 1, 2, 3, 4, 5, 6],
        "nothing lost, in order"
    );
    let stats = s.inbox_stats("patient").unwrap();
    assert_eq!((stats.waiting_senders, stats.len), (0, 0));
    assert!(stats.peak_len <= CAPACITY + 1, "{stats:?}"); // + OnStart before the first message
}

fn wait_policy_times_out_when_the_endpoint_never_drains(mode: IoMode) {
    const TIMEOUT_MS: u64 = 300;
    let s = server_with(mode, "server", |c| {
        c.ask_timeout_ms = TIMEOUT_MS;
        c.inbox_full_policy = InboxFullPolicy::Wait; // the env-wide default this time
        c.inbox_capacity = CAPACITY;
    });
    let (recorder, g) = gated(Duration::ZERO);
    let local = s.setup_endpoint("stuck", recorder).unwrap();
    assert_eq!(s.inbox_stats("stuck").unwrap().when_full, InboxFullPolicy::Wait);
    fill(&local, &g);

    let started = Instant::now();
    let e = local.send(note(50)).unwrap_err();
    let RpcError::InboxFullAfterWaiting {
        endpoint,
        capacity,
        waited_ms,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((endpoint.as_str(), *capacity), ("stuck", CAPACITY));
    // Lower bounds only: a slow machine waits longer, never shorter.
    assert!(*waited_ms >= TIMEOUT_MS && started.elapsed() >= Duration::from_millis(TIMEOUT_MS));
    let text = e.to_string();
    assert!(
        text.contains("stayed full") && text.contains("inbox_capacity") && text.contains("ask_timeout_ms"),
        "{text}"
    );
    // An ask waits the same way and fails with the same error.
    let e = local.ask_sync(note(51)).unwrap_err();
    assert!(
        matches!(
            e,
            RpcError::InboxFullAfterWaiting { .. } | RpcError::AskTimeout { .. }
        ),
        "{e:?}"
    );

    g.release.send(()).unwrap();
    eventually("the queue drains", || {
        g.seen.lock().unwrap().len() == CAPACITY + 1
    });
    assert_eq!(
        *g.seen.lock().unwrap(),
        [0, 1, 2, 3, 4],
        "timed-out sends never arrive"
    );
}

/// Sends to itself from its handler, until refused.
struct SelfSender {
    me: Arc<OnceLock<RpcEndpointRef<u64, ()>>>,
    refused: Sender<RpcError>,
}

impl RpcEndpoint for SelfSender {
    type Message = u64;
    type Reply = ();

    fn receive(&mut self, msg: Msg<'_, u64>, _sender: &RpcSender) {
        if msg.into_owned().unwrap() != 0 {
            return;
        }
        let me = self.me.get().expect("set before the first message");
        for i in 1..=100 {
            if let Err(e) = me.send(i) {
                let _ = self.refused.send(e);
                return;
            }
        }
    }
}

fn wait_policy_fails_fast_from_the_endpoints_own_handler(mode: IoMode) {
    let s = server_with(mode, "server", plain);
    let me = Arc::new(OnceLock::new());
    let (refused_tx, refused) = mpsc::channel();
    let local = s
        .setup_endpoint_with(
            "narcissus",
            SelfSender {
                me: me.clone(),
                refused: refused_tx,
            },
            options(InboxFullPolicy::Wait),
        )
        .unwrap();
    me.set(local.clone()).ok().unwrap();
    local.send(0).unwrap();
    let e = refused.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(&e, RpcError::InboxFullInOwnHandler { endpoint, capacity: CAPACITY } if endpoint == "narcissus"),
        "{e:?}"
    );
    assert!(e.to_string().contains("deadlock"), "{e}");
    eventually("its own messages are processed", || {
        s.inbox_stats("narcissus").unwrap().len == 0
    });
}

/// Frames one read can carry: 64 KiB on epoll, a 16 KiB provided buffer on io_uring.
const FRAMES_PER_READ: usize = (64 << 10) / PAD + 1;
/// Network events (`Connected` of each client) also go to every inbox.
const EVENTS: usize = 8;
const MESSAGES: u64 = 2000;

fn wait_policy_holds_back_a_remote_sender_with_tcp_backpressure(mode: IoMode) {
    let s = server_with(mode, "server", plain);
    // Slow: 200 µs per message, after the gate opens.
    let (recorder, g) = gated(Duration::from_micros(200));
    s.setup_endpoint_with("slow", recorder, options(InboxFullPolicy::Wait))
        .unwrap();
    let (fast, fast_gate) = gated(Duration::ZERO);
    s.setup_endpoint("fast", fast).unwrap();
    drop(fast_gate.release); // the fast endpoint's gate is open

    // Its asks wait behind the gate and the whole flood: a timeout no slow machine reaches.
    let flood_env = client_with(mode, "flood", |c| c.ask_timeout_ms = 300_000);
    let flood: RpcEndpointRef<Note, u64> = flood_env
        .setup_endpoint_ref(s.address().unwrap(), "slow")
        .unwrap();
    // One-way messages, and every 100th an ask: none may be refused.
    let mut asks = Vec::new();
    for seq in 0..MESSAGES {
        if seq % 100 == 99 {
            asks.push((seq, flood.ask(note(seq))));
        } else {
            flood.send(note(seq)).unwrap();
        }
    }
    assert_eq!(g.started.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    eventually("the flood's connection is paused", || {
        s.inbox_stats("slow").unwrap().read_pauses_held > 0
    });

    // Meanwhile another connection, to another endpoint, is served.
    let other_env = client_with(mode, "other", plain);
    let other: RpcEndpointRef<Note, u64> = other_env
        .setup_endpoint_ref(s.address().unwrap(), "fast")
        .unwrap();
    for seq in 0..50 {
        assert_eq!(other.ask_sync(note(seq)).unwrap(), seq);
    }
    let paused = s.inbox_stats("slow").unwrap();
    assert!(
        paused.read_pauses_held > 0,
        "still paused while the other was served: {paused:?}"
    );
    assert!(
        g.seen.lock().unwrap().is_empty(),
        "the slow endpoint is still blocked"
    );

    g.release.send(()).unwrap();
    for (seq, ask) in asks {
        assert_eq!(
            ask.wait().unwrap(),
            seq,
            "an ask held back is answered, not refused"
        );
    }
    eventually("every message arrives", || {
        g.seen.lock().unwrap().len() as u64 == MESSAGES
    });
    let seen = g.seen.lock().unwrap().clone();
    assert!(seen.iter().copied().eq(0..MESSAGES), "in order, none lost");
    let stats = s.inbox_stats("slow").unwrap();
    assert!(stats.read_pauses_taken > 0, "{stats:?}");
    assert_eq!((stats.read_pauses_held, stats.len), (0, 0), "{stats:?}");
    assert!(
        stats.peak_len <= CAPACITY + FRAMES_PER_READ + EVENTS,
        "the inbox passed its capacity by more than one read: {stats:?}"
    );
    eprintln!("{mode:?}: {stats:?}");
}

macro_rules! both_modes {
    ($($case:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $case() { super::$case(transport::IoMode::Epoll); })*
        }
        mod io_uring {
            $(#[test] fn $case() { super::$case(transport::IoMode::IoUring); })*
        }
    };
}

both_modes!(
    fail_policy_refuses_local_and_remote_with_clear_errors,
    wait_policy_blocks_a_local_sender_until_there_is_room,
    wait_policy_times_out_when_the_endpoint_never_drains,
    wait_policy_fails_fast_from_the_endpoints_own_handler,
    wait_policy_holds_back_a_remote_sender_with_tcp_backpressure,
);
