//! Model check of the Inbox's scheduling state machine (Spark's `Inbox`:
//! `OnStart` first, `OnStop` last, one thread at a time for a thread-safe
//! endpoint, up to `parallelism` for a concurrent one) with loom, under every
//! interleaving of senders, MessageLoop threads and `stop` (up to
//! `LOOM_MAX_PREEMPTIONS` forced switches, 3 by default).
//!
//! The code checked is the Inbox's own: `rpc::fuzzing::inbox_state`'s
//! `enqueue`, `process` and `stop`, the functions `Inbox` calls, here over
//! loom's `Mutex` instead of std's. The model stands in for the rest: a
//! counter of "the inbox is in a loop's queue" items for the MessageLoop
//! channel (or, for an inline endpoint, the posting thread processing at
//! once), a bounded `VecDeque` for the `InboxQueue`, and threads that take
//! such an item and process the inbox. After the threads finish, the main
//! thread drains whatever items remain, as a MessageLoop would. Not modelled:
//! the wait policy's blocking on the `room` condvar (a full queue here either
//! refuses or accepts over capacity, as for a paused connection).
//!
//! Checked after every interleaving:
//! - `OnStart` is handled first and `OnStop` last, each exactly once and alone;
//! - every accepted message is handled exactly once (or, when `OnStart`
//!   panicked, handed back to be refused exactly once), a refused one never;
//! - a thread-safe endpoint is never handled by two threads at once, and
//!   messages from one sender are handled in the order sent;
//! - a concurrent endpoint is never handled by more than `parallelism`
//!   threads, and is never put in its loop's queue more than `parallelism`
//!   times (the `queued` tokens);
//! - a message sent after `stop` returned is refused as `Stopped`, and a
//!   refused message is handed back to the sender (nothing lost silently);
//! - no lost wake-up: once every queued item is taken, no message is left in
//!   the queue, no thread counts as active and the inbox is not marked scheduled.
//!
//! Run: `cargo test -p rpc --features loom --test loom_inbox`
//! (docs/HARDENING.md); the target needs feature `loom`. Not `--cfg loom`:
//! tokio, under the backends, drops `tokio::net` when built with it.

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex, MutexGuard};
use loom::thread;
use rpc::fuzzing::inbox_state::{self as inbox, MessageKind, Queue, Queued, Refused, State};

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

/// The `InboxQueue` of the model: a FIFO full at `capacity` messages.
struct Bounded {
    items: VecDeque<Msg>,
    capacity: usize,
}

impl Queue for Bounded {
    type Item = Msg;
    fn push_back(&mut self, item: Msg) {
        self.items.push_back(item);
    }
    fn pop_front(&mut self) -> Option<Msg> {
        self.items.pop_front()
    }
    fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }
}

type Locked = Mutex<State<Bounded>>;

/// What a full queue does with a send (the Inbox's `InboxFullPolicy` and origin).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    /// Refuse it (`InboxFullPolicy::Fail`).
    Refuse,
    /// Accept it over capacity (`Wait` for a network message: its connection is paused).
    Hold,
}

/// How an inbox is set up.
#[derive(Clone, Copy)]
struct Setup {
    /// A concurrent (cloneable) endpoint.
    cloneable: bool,
    /// Threads serving its loop.
    parallelism: usize,
    /// Processed by the posting thread (`Placement::inline`).
    inline: bool,
    /// `on_start` panics.
    start_panics: bool,
    /// Messages the queue holds before it is full.
    capacity: usize,
    when_full: WhenFull,
}

impl Setup {
    fn thread_safe() -> Self {
        Self {
            cloneable: false,
            parallelism: 1,
            inline: false,
            start_panics: false,
            capacity: 16,
            when_full: WhenFull::Refuse,
        }
    }

    fn concurrent(parallelism: usize) -> Self {
        Self {
            cloneable: true,
            parallelism,
            ..Self::thread_safe()
        }
    }
}

/// An inbox's items in its loop's queue (the MessageLoop channel).
struct Ready {
    /// Times the inbox was put in the queue and not yet taken.
    items: usize,
    /// Whether `stop` put it there.
    by_stop: bool,
}

/// One inbox, its loop queue and what its endpoint saw.
struct Model {
    state: Locked,
    setup: Setup,
    /// The inbox's items in its loop's queue.
    ready: Mutex<Ready>,
    /// Messages handled, in order.
    log: Mutex<Vec<Msg>>,
    /// Messages handed to `fail_start` to be refused.
    refused_late: Mutex<Vec<Msg>>,
    /// Threads inside the endpoint now.
    inside: AtomicUsize,
    /// 1 while a message that must run alone is inside the endpoint.
    alone: AtomicUsize,
}

impl Model {
    /// A new inbox: `OnStart` queued and the inbox in its loop's queue once,
    /// as `Inbox::start` leaves it (an inline one is processed by its
    /// registering thread instead: call [`Model::process`]).
    fn new(setup: Setup) -> Arc<Self> {
        let queue = Bounded {
            items: VecDeque::from([Msg::Start]),
            capacity: setup.capacity,
        };
        Arc::new(Self {
            state: Mutex::new(State::new(queue)),
            setup,
            ready: Mutex::new(Ready {
                items: usize::from(!setup.inline),
                by_stop: false,
            }),
            log: Mutex::new(Vec::new()),
            refused_late: Mutex::new(Vec::new()),
            inside: AtomicUsize::new(0),
            alone: AtomicUsize::new(0),
        })
    }

    /// Puts the inbox in its loop's queue (`Inbox::schedule`); an inline inbox is processed now.
    fn schedule(&self, by_stop: bool) {
        if self.setup.inline {
            self.process();
            return;
        }
        let mut ready = self.ready.lock().unwrap();
        ready.items += 1;
        ready.by_stop |= by_stop;
        // Sends queue a concurrent inbox at most `parallelism` times; `stop`
        // (back in thread-safe mode) may add one more item, which finds the
        // inbox busy or runs `OnStop`.
        if self.setup.cloneable {
            assert!(
                ready.items <= self.setup.parallelism + usize::from(ready.by_stop),
                "a concurrent inbox queued {} times, parallelism {}, stop scheduled: {}",
                ready.items,
                self.setup.parallelism,
                ready.by_stop
            );
        }
    }

    fn send(&self, msg: Msg) -> Result<(), Refused<()>> {
        let policy = self.setup.when_full;
        let when_full = |st, _: &Msg| full_policy(st, policy);
        inbox::enqueue(&self.state, msg, self.setup.parallelism, when_full, || {
            self.schedule(false)
        })
        .map_err(|(why, back)| {
            assert_eq!(back, msg, "a refused message must be handed back as it was");
            why
        })
    }

    fn stop(&self) -> bool {
        inbox::stop(&self.state, Msg::Stop, || self.schedule(true))
    }

    /// What a MessageLoop thread does with an item for this inbox (`Inbox::process`).
    fn process(&self) {
        inbox::process(
            &self.state,
            self.setup.cloneable,
            |_concurrent| (),
            |_, msg| self.handle(msg),
            |_, queued| {
                self.refused_late.lock().unwrap().extend(queued);
                self.handle(Msg::Stop);
            },
        );
    }

    /// One MessageLoop turn: takes the inbox from the loop queue, if it is
    /// there, and processes it. False when the queue was empty.
    fn run_once(&self) -> bool {
        {
            let mut ready = self.ready.lock().unwrap();
            if ready.items == 0 {
                return false;
            }
            ready.items -= 1;
        }
        self.process();
        true
    }

    /// The endpoint: records `msg`, checks who else is inside; returns whether it panicked.
    fn handle(&self, msg: Msg) -> bool {
        let exclusive = !self.setup.cloneable || !matches!(msg, Msg::Note { .. });
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
            assert!(
                others < self.setup.parallelism,
                "{msg:?} handled by {} threads at once, parallelism {}",
                others + 1,
                self.setup.parallelism
            );
        }
        self.log.lock().unwrap().push(msg);
        if exclusive {
            self.alone.store(0, Ordering::SeqCst);
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        msg == Msg::Start && self.setup.start_panics
    }

    /// Processes what is left in the loop queue, as the MessageLoops would.
    fn drain(&self) {
        while self.run_once() {}
    }

    /// Checks the end state against the messages the senders had accepted.
    fn check(&self, accepted: &[Msg], stopped: bool) {
        {
            let st = self.state.lock().unwrap();
            assert!(
                st.queue().items.is_empty(),
                "lost wake-up: {} message(s) queued and the inbox in no loop's queue",
                st.queue().items.len()
            );
            assert_eq!(st.active(), 0, "a thread counted as active after all returned");
            assert_eq!(
                st.queued(),
                0,
                "a scheduling token counted after every item was taken"
            );
            assert!(
                !st.is_scheduled(),
                "lost wake-up: marked scheduled but in no loop's queue; later sends would never be processed"
            );
            assert_eq!(st.is_stopped(), stopped);
        }
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
        let mut notes: Vec<Msg> = log
            .iter()
            .copied()
            .filter(|m| matches!(m, Msg::Note { .. }))
            .collect();
        let late = self.refused_late.lock().unwrap().clone();
        if self.setup.start_panics {
            assert!(
                notes.is_empty(),
                "a message handled after OnStart panicked: {log:?}"
            );
            notes = late;
        } else {
            assert!(late.is_empty());
        }
        for m in accepted {
            let n = notes.iter().filter(|x| *x == m).count();
            assert_eq!(
                n, 1,
                "{m:?} accepted and handled (or refused late) {n} times: {log:?}"
            );
        }
        assert_eq!(
            notes.len(),
            accepted.len(),
            "a refused message was handled: {log:?}"
        );
        if !self.setup.cloneable {
            for sender in 0..=u8::MAX {
                let seqs: Vec<u8> = notes
                    .iter()
                    .filter_map(|m| match *m {
                        Msg::Note { sender: s, seq } if s == sender => Some(seq),
                        _ => None,
                    })
                    .collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "sender {sender} out of order: {log:?}"
                );
            }
        }
    }
}

/// The model's full-queue policy: refuses, or accepts over capacity.
fn full_policy(
    st: MutexGuard<'_, State<Bounded>>,
    policy: WhenFull,
) -> (MutexGuard<'_, State<Bounded>>, Option<()>) {
    match policy {
        WhenFull::Refuse => (st, Some(())),
        WhenFull::Hold => (st, None),
    }
}

/// Sends `count` notes from `sender`; returns those accepted. Only `Stopped`,
/// or `Full` under [`WhenFull::Refuse`], may refuse them.
fn send_notes(model: &Model, sender: u8, count: u8) -> Vec<Msg> {
    let mut accepted = Vec::new();
    for seq in 0..count {
        let msg = Msg::Note { sender, seq };
        match model.send(msg) {
            Ok(()) => accepted.push(msg),
            Err(Refused::Stopped) => {}
            Err(Refused::Full(())) => assert!(
                model.setup.when_full == WhenFull::Refuse,
                "{msg:?} refused as full under the hold policy"
            ),
        }
    }
    accepted
}

fn spawn_sender(model: &Arc<Model>, sender: u8, count: u8) -> thread::JoinHandle<Vec<Msg>> {
    let model = model.clone();
    thread::spawn(move || send_notes(&model, sender, count))
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
        let model = Model::new(Setup::thread_safe());
        let sender = spawn_sender(&model, 0, 2);
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
        let model = Model::new(Setup::thread_safe());
        // OnStart's item is taken first, so both senders race on `scheduled`.
        assert!(model.run_once());
        let a = spawn_sender(&model, 0, 1);
        let b = spawn_sender(&model, 1, 1);
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
        let model = Model::new(Setup::thread_safe());
        let sender = spawn_sender(&model, 0, 1);
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
        let model = Model::new(Setup::concurrent(2));
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

/// A burst of 3 to a started concurrent endpoint of parallelism 2: at most 2
/// items in the loop queue (tokens), at most 2 threads inside, and every
/// message processed although one that finds `queued + active` at the limit
/// schedules nothing. (With tokens a third loop thread never finds an item;
/// loom's bound of 5 threads and the run time keep it out.)
#[test]
fn concurrent_burst_is_bounded_by_parallelism_tokens() {
    model(|| {
        let model = Model::new(Setup::concurrent(2));
        assert!(model.run_once(), "OnStart");
        let sender = spawn_sender(&model, 0, 3);
        let loops: Vec<_> = (0..2).map(|_| spawn_loop(&model, 1)).collect();
        let accepted = sender.join().unwrap();
        for l in loops {
            l.join().unwrap();
        }
        model.drain();
        model.check(&accepted, false);
    });
}

/// `stop` while two threads process a concurrent endpoint: `OnStop` runs
/// once, alone and last, after every message accepted before it.
#[test]
fn stop_races_concurrent_processing() {
    model(|| {
        let model = Model::new(Setup::concurrent(2));
        assert!(model.run_once(), "OnStart");
        let sender = {
            let model = model.clone();
            thread::spawn(move || {
                let accepted = send_notes(&model, 0, 2);
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

/// `on_start` panics while a sender posts: every accepted message is handed
/// back to be refused exactly once, none is handled, `OnStop` runs once, and
/// the endpoint counts as stopped (a later `stop` returns false).
#[test]
fn a_panic_in_on_start_refuses_what_raced_it() {
    model(|| {
        let model = Model::new(Setup {
            start_panics: true,
            ..Setup::concurrent(2)
        });
        let sender = spawn_sender(&model, 0, 2);
        let l = spawn_loop(&model, 1);
        let accepted = sender.join().unwrap();
        l.join().unwrap();
        model.drain();
        assert!(!model.stop(), "on_start's panic stopped the endpoint");
        model.check(&accepted, true);
    });
}

/// An inline endpoint: the posting threads process it themselves; two of
/// them race, one processing while the other posts.
#[test]
fn inline_endpoint_two_posting_threads() {
    model(|| {
        let model = Model::new(Setup {
            inline: true,
            ..Setup::thread_safe()
        });
        model.process(); // OnStart, as `Dispatcher::register` does
        let a = spawn_sender(&model, 0, 2);
        let b = spawn_sender(&model, 1, 1);
        let mut accepted = a.join().unwrap();
        accepted.extend(b.join().unwrap());
        model.check(&accepted, false);
    });
}

/// A full queue (capacity 1): under `Refuse` a send is refused and handed
/// back, under `Hold` it is accepted over capacity; either way nothing
/// accepted is lost.
#[test]
fn a_full_queue_refuses_or_holds() {
    for when_full in [WhenFull::Refuse, WhenFull::Hold] {
        model(move || {
            let model = Model::new(Setup {
                capacity: 1,
                when_full,
                ..Setup::thread_safe()
            });
            let a = spawn_sender(&model, 0, 2);
            let l = spawn_loop(&model, 2);
            let accepted = a.join().unwrap();
            l.join().unwrap();
            model.drain();
            if when_full == WhenFull::Hold {
                assert_eq!(accepted.len(), 2, "the hold policy refuses nothing");
            }
            model.check(&accepted, false);
        });
    }
}
