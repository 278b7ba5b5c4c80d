//! Model check of the Inbox's scheduling state machine (Spark's `Inbox`:
//! `OnStart` first, `OnStop` last, one thread at a time for a thread-safe
//! endpoint) with loom, under every interleaving of senders, MessageLoop
//! threads and `stop`.
//!
//! The code checked is the Inbox's own: `rpc::fuzzing::inbox_state`'s
//! `enqueue`, `process` and `stop`, the functions `Inbox` calls, here over
//! loom's `Mutex` instead of std's. The model stands in for the rest: a
//! counter of "the inbox is in a loop's queue" items for the MessageLoop
//! channel, and threads that take such an item and process the inbox. After
//! the threads finish, the main thread drains whatever items remain, as a
//! MessageLoop would.
//!
//! Checked after every interleaving:
//! - `OnStart` is handled first and `OnStop` last, each alone;
//! - every accepted message is handled exactly once, a refused one never;
//! - a thread-safe endpoint is never handled by two threads at once, and
//!   messages from one sender are handled in the order sent;
//! - a message sent after `stop` returned is refused as `Stopped`, and the
//!   refused message is handed back to the sender (nothing lost silently);
//! - no lost wake-up: once every queued item is taken, no message is left in
//!   the queue and the inbox is not marked scheduled.
//!
//! Run: `cargo test -p rpc --features loom --test loom_inbox --release`
//! (docs/HARDENING.md); the target needs feature `loom`. Not `--cfg loom`:
//! tokio, under the backends, drops `tokio::net` when built with it.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use rpc::fuzzing::inbox_state::{self as inbox, Guarded, MessageKind, Queued, Refused, State};

/// A queued message of the model: a note carries its sender and its number
/// in that sender's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Start,
    Stop,
    Note { sender: u8, seq: u8 },
}

impl Queued for Msg {
    fn kind(&self) -> MessageKind {
        match self {
            Msg::Start => MessageKind::Start,
            Msg::Stop => MessageKind::Stop,
            Msg::Note { .. } => MessageKind::Message,
        }
    }
}

/// The state under loom's mutex.
struct Locked(Mutex<State<Msg>>);

impl Guarded<Msg> for Locked {
    fn with<R>(&self, f: impl FnOnce(&mut State<Msg>) -> R) -> R {
        f(&mut self.0.lock().expect("no thread panics while holding the state"))
    }
}

/// Room in the queue: more than any scenario sends, so refusals are for stop only.
const CAPACITY: usize = 16;

/// One inbox, its loop queue and what its endpoint saw.
struct Model {
    state: Locked,
    /// Times the inbox was put in a loop's queue and not yet taken.
    ready: Mutex<usize>,
    /// Messages handled, in order.
    log: Mutex<Vec<Msg>>,
    /// Threads inside the endpoint now.
    inside: AtomicUsize,
    /// 1 while a message that must run alone is inside the endpoint.
    alone: AtomicUsize,
    /// A concurrent (cloneable) endpoint.
    cloneable: bool,
}

impl Model {
    /// A started inbox: `OnStart` queued and the inbox in a loop's queue once, as `Inbox::start` leaves it.
    fn new(cloneable: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Locked(Mutex::new(State::new(Msg::Start))),
            ready: Mutex::new(1),
            log: Mutex::new(Vec::new()),
            inside: AtomicUsize::new(0),
            alone: AtomicUsize::new(0),
            cloneable,
        })
    }

    fn schedule(&self) {
        *self.ready.lock().unwrap() += 1;
    }

    fn send(&self, msg: Msg) -> Result<(), Refused> {
        inbox::enqueue(&self.state, msg, CAPACITY, || self.schedule()).map_err(|(why, back)| {
            assert_eq!(back, msg, "a refused message must be handed back as it was");
            why
        })
    }

    fn stop(&self) -> bool {
        inbox::stop(&self.state, Msg::Stop, || self.schedule())
    }

    /// One MessageLoop turn: takes the inbox from the loop queue, if it is
    /// there, and processes it. False when the queue was empty.
    fn run_once(&self) -> bool {
        {
            let mut ready = self.ready.lock().unwrap();
            if *ready == 0 {
                return false;
            }
            *ready -= 1;
        }
        inbox::process(
            &self.state,
            self.cloneable,
            |_concurrent| (),
            |_, msg| self.handle(msg),
        );
        true
    }

    fn handle(&self, msg: Msg) {
        let exclusive = !self.cloneable || !matches!(msg, Msg::Note { .. });
        let others = self.inside.fetch_add(1, Ordering::SeqCst);
        if exclusive {
            self.alone.store(1, Ordering::SeqCst);
            assert_eq!(
                others, 0,
                "{msg:?} handled while {others} other thread(s) were in the endpoint"
            );
        } else {
            let alone = self.alone.load(Ordering::SeqCst);
            assert_eq!(alone, 0, "{msg:?} handled while OnStart or OnStop ran");
        }
        self.log.lock().unwrap().push(msg);
        if exclusive {
            self.alone.store(0, Ordering::SeqCst);
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    /// Processes what is left in the loop queue, as the MessageLoops would.
    fn drain(&self) {
        while self.run_once() {}
    }

    /// Checks the end state against the messages the senders had accepted.
    fn check(&self, accepted: &[Msg], stopped: bool) {
        self.state.with(|st| {
            assert!(
                st.is_empty(),
                "lost wake-up: {} message(s) queued and the inbox in no loop's queue",
                st.len()
            );
            assert_eq!(st.active(), 0);
            assert!(
                !st.is_scheduled(),
                "lost wake-up: marked scheduled but in no loop's queue; later sends would never be processed"
            );
            assert_eq!(st.is_stopped(), stopped);
        });
        let log = self.log.lock().unwrap().clone();
        assert_eq!(
            log.first(),
            Some(&Msg::Start),
            "OnStart must be handled first: {log:?}"
        );
        assert_eq!(log.iter().filter(|m| **m == Msg::Start).count(), 1);
        let stops = log.iter().filter(|m| **m == Msg::Stop).count();
        assert_eq!(
            stops,
            usize::from(stopped),
            "OnStop handled {stops} times: {log:?}"
        );
        if stopped {
            assert_eq!(
                log.last(),
                Some(&Msg::Stop),
                "OnStop must be handled last: {log:?}"
            );
        }
        let notes: Vec<Msg> = log
            .iter()
            .copied()
            .filter(|m| matches!(m, Msg::Note { .. }))
            .collect();
        for m in accepted {
            let n = notes.iter().filter(|x| *x == m).count();
            assert_eq!(n, 1, "{m:?} accepted and handled {n} times: {log:?}");
        }
        assert_eq!(
            notes.len(),
            accepted.len(),
            "a refused message was handled: {log:?}"
        );
        if !self.cloneable {
            for sender in 0..=u8::MAX {
                let seqs: Vec<u8> = notes
                    .iter()
                    .filter(|m| msg_sender(**m) == sender)
                    .map(|m| msg_seq(*m))
                    .collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "sender {sender} out of order: {log:?}"
                );
            }
        }
    }
}

fn msg_sender(m: Msg) -> u8 {
    match m {
        Msg::Note { sender, .. } => sender,
        _ => u8::MAX,
    }
}

fn msg_seq(m: Msg) -> u8 {
    match m {
        Msg::Note { seq, .. } => seq,
        _ => 0,
    }
}

/// Sends `count` notes from `sender`; returns those accepted. Only `Stopped` may refuse them.
fn send_notes(model: &Model, sender: u8, count: u8) -> Vec<Msg> {
    let mut accepted = Vec::new();
    for seq in 0..count {
        let msg = Msg::Note { sender, seq };
        match model.send(msg) {
            Ok(()) => accepted.push(msg),
            Err(why) => assert_eq!(why, Refused::Stopped, "{msg:?} refused for {why:?}"),
        }
    }
    accepted
}

fn spawn_loop(model: &Arc<Model>, turns: usize) -> thread::JoinHandle<()> {
    let model = model.clone();
    thread::spawn(move || {
        for _ in 0..turns {
            model.run_once();
        }
    })
}

/// Runs `f` under every interleaving loom explores: all of them up to
/// `LOOM_MAX_PREEMPTIONS` forced thread switches (default here 3; loom's
/// docs find 2–3 enough to catch nearly all bugs and unbounded runs explode).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

#[test]
fn a_sender_and_a_loop_thread_safe_endpoint() {
    model(|| {
        let model = Model::new(false);
        let sender = {
            let model = model.clone();
            thread::spawn(move || send_notes(&model, 0, 2))
        };
        let l = spawn_loop(&model, 2);
        let accepted = sender.join().unwrap();
        l.join().unwrap();
        model.drain();
        model.check(&accepted, false);
    });
}

#[test]
fn two_senders_race_to_schedule() {
    model(|| {
        let model = Model::new(false);
        // OnStart's item is taken first, so both senders race on `scheduled`.
        assert!(model.run_once());
        let a = {
            let model = model.clone();
            thread::spawn(move || send_notes(&model, 0, 1))
        };
        let b = {
            let model = model.clone();
            thread::spawn(move || send_notes(&model, 1, 1))
        };
        let l = spawn_loop(&model, 1);
        let mut accepted = a.join().unwrap();
        accepted.extend(b.join().unwrap());
        l.join().unwrap();
        model.drain();
        model.check(&accepted, false);
    });
}

#[test]
fn stop_races_a_sender_and_a_loop() {
    model(|| {
        let model = Model::new(false);
        let sender = {
            let model = model.clone();
            thread::spawn(move || send_notes(&model, 0, 1))
        };
        let stopper = {
            let model = model.clone();
            thread::spawn(move || {
                assert!(model.stop(), "the first stop must succeed");
                assert!(
                    !model.stop(),
                    "a second stop must report the inbox already stopped"
                );
                let late = Msg::Note { sender: 9, seq: 0 };
                assert_eq!(
                    model.send(late),
                    Err(Refused::Stopped),
                    "a send after stop must be refused"
                );
            })
        };
        let l = spawn_loop(&model, 1);
        let accepted = sender.join().unwrap();
        stopper.join().unwrap();
        l.join().unwrap();
        model.drain();
        model.check(&accepted, true);
    });
}

#[test]
fn concurrent_endpoint_two_loops_then_stop() {
    model(|| {
        let model = Model::new(true);
        let sender = {
            let model = model.clone();
            thread::spawn(move || {
                let accepted = send_notes(&model, 0, 1);
                assert!(model.stop());
                accepted
            })
        };
        let l1 = spawn_loop(&model, 1);
        let l2 = spawn_loop(&model, 1);
        let accepted = sender.join().unwrap();
        l1.join().unwrap();
        l2.join().unwrap();
        model.drain();
        model.check(&accepted, true);
    });
}
