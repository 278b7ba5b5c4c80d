//! Fault cases the RpcEnv suite (`suite/cases.rs`, `suite/faults.rs`) does not
//! already cover, on both IO modes: a panic in `on_start`, a blocking endpoint
//! on a one-thread shared loop against one on a dedicated loop, and shutdown
//! with asks in flight (every `on_stop` runs, pending asks fail with
//! `EnvStopped`, threads and file descriptors return to their baseline).
//!
//! Already covered elsewhere, not repeated here: a peer killed mid-ask
//! (`peer_process_killed_mid_ask_fails_at_once`), a server restarted under a
//! sending client (`server_restart_while_client_keeps_sending`), a panicking
//! handler (`panicking_handler_fails_the_ask_and_keeps_serving`).
//!
//! Every test holds [`SERIAL`]: the thread and fd counts are per process, so
//! no other test of this binary may open or close any while one is measured.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use transport::IoMode;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the endpoints here are asked.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum Cmd {
    /// Answer the number.
    Echo(u64),
    /// Sleep this many milliseconds, then answer 0.
    SleepMs(u64),
    /// Say so on the endpoint's gate, wait for it to open (30 s at most), then answer 0.
    Wait,
}

/// Records its `on_stop` (and `on_error`) under its name; panics in `on_start` if told to.
struct Life {
    name: &'static str,
    panic_on_start: bool,
    log: Arc<Mutex<Vec<String>>>,
    gate: Option<Gate>,
}

/// A gate an endpoint waits at: it says when it got there, then waits to be let through.
#[derive(Clone)]
struct Gate {
    arrived: mpsc::Sender<()>,
    open: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Clone for Life {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            panic_on_start: self.panic_on_start,
            log: self.log.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl RpcEndpoint for Life {
    type Message = Cmd;
    type Reply = u64;

    fn on_start(&mut self) {
        if self.panic_on_start {
            panic!("on_start of `{}` fails on purpose", self.name);
        }
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, Cmd>, ctx: RpcCallContext<u64>) {
        match msg.into_owned().expect("a valid Cmd") {
            Cmd::Echo(n) => ctx.reply(n),
            Cmd::SleepMs(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                ctx.reply(0)
            }
            Cmd::Wait => {
                if let Some(gate) = &self.gate {
                    let _ = gate.arrived.send(());
                    let _ = gate.open.lock().unwrap().recv_timeout(Duration::from_secs(30));
                }
                ctx.reply(0)
            }
        }
    }

    fn on_stop(&mut self) {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
    }

    fn on_error(&mut self, error: &RpcError) {
        self.log
            .lock()
            .unwrap()
            .push(format!("error {}: {error}", self.name));
    }
}

fn life(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Life {
    Life {
        name,
        panic_on_start: false,
        log: log.clone(),
        gate: None,
    }
}

fn env(mode: IoMode, name: &str, server: bool, dispatcher_threads: usize) -> RpcEnv {
    let mut c = if server {
        RpcEnvConfig::server(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    } else {
        RpcEnvConfig::client(name)
    };
    c.transport.io_mode = mode;
    c.transport.server_threads = 2;
    c.transport.client_threads = 2;
    c.dispatcher_threads = dispatcher_threads;
    c.ask_timeout_ms = 20_000;
    RpcEnv::create(c).expect("RpcEnv")
}

fn remote(c: &RpcEnv, s: &RpcEnv, name: &str) -> RpcEndpointRef<Cmd, u64> {
    c.endpoint_ref(s.address().unwrap(), name)
}

/// Open file descriptors (`/proc/self/fd`), or threads (`/proc/self/task`)
/// other than the test harness's: those are named after their test
/// (`epoll::...`, `io_uring::...`), and the harness starts one whenever it
/// likes, so they are left out of the count.
fn count(dir: &str) -> usize {
    if dir == "task" {
        return thread_names()
            .iter()
            .filter(|n| !n.starts_with("epoll::") && !n.starts_with("io_uring::"))
            .count();
    }
    std::fs::read_dir(format!("/proc/self/{dir}"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to 10 s for `count(dir)` to fall to `baseline`; returns the last count.
fn settles_to(dir: &str, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = count(dir);
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to 10 s for `log` to hold `entry`.
fn logged(log: &Arc<Mutex<Vec<String>>>, entry: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if log.lock().unwrap().iter().any(|e| e.starts_with(entry)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A panic in one endpoint's `on_start` leaves every other endpoint, shared
/// and isolated, serving local and remote asks, and the RpcEnv shuts down cleanly.
pub fn on_start_panic_leaves_other_endpoints_serving(mode: IoMode) {
    let _serial = serial();
    let log = Arc::new(Mutex::new(Vec::new()));
    let s = env(mode, "server", true, 2);
    let mut bad = life("bad", &log);
    bad.panic_on_start = true;
    s.setup_endpoint("bad", bad).unwrap();
    let shared = s.setup_endpoint("shared", life("shared", &log)).unwrap();
    let isolated = s
        .setup_isolated_endpoint("isolated", life("isolated", &log))
        .unwrap();
    let c = env(mode, "client", false, 2);
    for name in ["shared", "isolated"] {
        let r = remote(&c, &s, name);
        for i in 0..20 {
            assert_eq!(r.ask_sync(Cmd::Echo(i)).unwrap(), i, "{name} serves remote asks");
        }
    }
    assert_eq!(shared.ask_sync(Cmd::Echo(7)).unwrap(), 7);
    assert_eq!(isolated.ask_sync(Cmd::Echo(8)).unwrap(), 8);
    c.shutdown();
    s.shutdown();
    s.await_termination();
    for name in ["shared", "isolated"] {
        assert!(logged(&log, &format!("stop {name}")), "{name} stopped: {log:?}");
    }
}

/// The contract for a panic in `on_start`: that endpoint stops (its
/// `on_stop` runs; asks to it fail with a typed error at once) while others
/// keep serving, as Spark's Inbox stops an endpoint whose `onStart` throws.
pub fn on_start_panic_stops_that_endpoint(mode: IoMode) {
    let _serial = serial();
    let log = Arc::new(Mutex::new(Vec::new()));
    let s = env(mode, "server", true, 2);
    let mut bad = life("bad", &log);
    bad.panic_on_start = true;
    let local = s.setup_endpoint("bad", bad).unwrap();
    let c = env(mode, "client", false, 2);
    assert!(logged(&log, "stop bad"), "on_stop ran after the panic: {log:?}");
    let err = remote(&c, &s, "bad").ask_sync(Cmd::Echo(1));
    assert!(
        matches!(
            err,
            Err(RpcError::EndpointNotFound { .. } | RpcError::EndpointStopped { .. })
        ),
        "a remote ask to an endpoint whose on_start panicked: {err:?}"
    );
    let err = local.ask_sync(Cmd::Echo(2));
    assert!(
        matches!(err, Err(RpcError::EndpointStopped { .. })),
        "a local ask to it: {err:?}"
    );
}

/// With one shared MessageLoop thread, an endpoint blocking on it holds up the
/// other shared endpoints (that is what the dedicated loop is for), while an
/// isolated endpoint keeps answering; once released, every held-up ask is
/// answered, none lost. No clock involved: the blocker waits on a gate.
pub fn blocking_shared_endpoint_vs_dedicated_loop(mode: IoMode) {
    let _serial = serial();
    let log = Arc::new(Mutex::new(Vec::new()));
    let s = env(mode, "server", true, 1);
    assert_eq!(s.config().resolved_dispatcher_threads(1), 1);
    let (open, gate) = mpsc::channel();
    let (arrived, blocker_arrived) = mpsc::channel();
    let mut blocker = life("blocker", &log);
    blocker.gate = Some(Gate {
        arrived,
        open: Arc::new(Mutex::new(gate)),
    });
    s.setup_endpoint("blocker", blocker).unwrap();
    s.setup_endpoint("shared", life("shared", &log)).unwrap();
    s.setup_isolated_endpoint("isolated", life("isolated", &log))
        .unwrap();
    let c = env(mode, "client", false, 2);
    let (blocker, shared, isolated) = (
        remote(&c, &s, "blocker"),
        remote(&c, &s, "shared"),
        remote(&c, &s, "isolated"),
    );
    assert_eq!(shared.ask_sync(Cmd::Echo(0)).unwrap(), 0, "connected");
    let blocked = blocker.ask(Cmd::Wait);
    // Asks sent before the blocker is in its handler may still be taken first
    // (a loop thread drains an inbox it is processing); so wait until it is.
    blocker_arrived
        .recv_timeout(Duration::from_secs(20))
        .expect("the blocker runs");
    let (answered, answers) = mpsc::channel();
    for i in 1..=10 {
        let answered = answered.clone();
        shared
            .ask(Cmd::Echo(i))
            .on_complete(move |r| answered.send((i, r)).unwrap());
    }
    for i in 0..50 {
        assert_eq!(
            isolated.ask_sync(Cmd::Echo(i)).unwrap(),
            i,
            "the dedicated loop serves"
        );
    }
    // 50 round trips to the isolated endpoint later, the shared one has answered nothing:
    // its only loop thread is held by the blocker.
    let early: Vec<_> = answers.try_iter().collect();
    assert!(
        early.is_empty(),
        "answered while the shared loop was blocked: {early:?}"
    );
    open.send(()).unwrap();
    assert_eq!(blocked.wait().unwrap(), 0);
    for _ in 1..=10 {
        let (i, r) = answers
            .recv_timeout(Duration::from_secs(20))
            .expect("a held-up ask answered");
        assert_eq!(r.unwrap(), i, "held up, then answered");
    }
}

/// Shutting a client down with asks in flight — remote ones blocked on the
/// server, local ones queued on shared, isolated and concurrent endpoints —
/// stops every endpoint (each `on_stop` runs), fails every pending remote ask
/// with `EnvStopped` at once, and, after the server shuts down too, leaves as
/// many threads and file descriptors as before either RpcEnv existed.
pub fn shutdown_with_asks_in_flight_leaks_nothing(mode: IoMode) {
    let _serial = serial();
    let (threads_before, fds_before) = (count("task"), count("fd"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let s = env(mode, "server", true, 2);
    s.setup_endpoint("slow", life("slow", &log)).unwrap();
    s.setup_isolated_endpoint("slow-isolated", life("slow-isolated", &log))
        .unwrap();
    let c = env(mode, "client", false, 2);
    let local_names = ["c-shared", "c-isolated", "c-concurrent"];
    let locals = [
        c.setup_endpoint(local_names[0], life("c-shared", &log)).unwrap(),
        c.setup_isolated_endpoint(local_names[1], life("c-isolated", &log))
            .unwrap(),
        c.setup_concurrent_endpoint(local_names[2], life("c-concurrent", &log))
            .unwrap(),
    ];
    let (slow, slow_isolated) = (remote(&c, &s, "slow"), remote(&c, &s, "slow-isolated"));
    assert_eq!(slow.ask_sync(Cmd::Echo(1)).unwrap(), 1, "connected");
    // Each endpoint has 5 s of work queued; the asks' timeout is 20 s.
    let mut pending_remote: Vec<_> = (0..5).map(|_| slow.ask(Cmd::SleepMs(1_000))).collect();
    pending_remote.extend((0..5).map(|_| slow_isolated.ask(Cmd::SleepMs(1_000))));
    let pending_local: Vec<_> = locals
        .iter()
        .flat_map(|r| (0..20).map(|i| r.ask(Cmd::Echo(i))))
        .collect();
    std::thread::sleep(Duration::from_millis(100));

    c.shutdown();
    // EnvStopped, not AskTimeout: they failed at shutdown, not after the 20 s timeout.
    for f in pending_remote {
        let err = f.wait().unwrap_err();
        assert!(matches!(err, RpcError::EnvStopped), "{err:?}");
    }
    // A queued local ask is processed before the endpoint's OnStop, or fails as stopped.
    for f in pending_local {
        match f.wait() {
            Ok(_) | Err(RpcError::EnvStopped | RpcError::EndpointStopped { .. }) => {}
            Err(other) => panic!("a local ask in flight at shutdown: {other:?}"),
        }
    }
    for name in local_names {
        assert!(logged(&log, &format!("stop {name}")), "{name} stopped: {log:?}");
    }
    assert!(matches!(slow.ask_sync(Cmd::Echo(2)), Err(RpcError::EnvStopped)));
    assert!(matches!(
        locals[0].ask_sync(Cmd::Echo(2)),
        Err(RpcError::EnvStopped)
    ));

    s.shutdown();
    s.await_termination();
    for name in ["slow", "slow-isolated"] {
        assert!(logged(&log, &format!("stop {name}")), "{name} stopped: {log:?}");
    }
    drop((slow, slow_isolated, locals, c, s));
    let (threads, fds) = (settles_to("task", threads_before), settles_to("fd", fds_before));
    assert!(
        threads <= threads_before,
        "threads: {threads_before} before, {threads} after shutdown: {:?}",
        thread_names()
    );
    assert!(
        fds <= fds_before,
        "fds: {fds_before} before, {fds} after shutdown"
    );
}

/// One `#[test]` per case, in module `$module`, for IO mode `$mode`.
macro_rules! fault_cases {
    ($module:ident, $mode:expr) => {
        mod $module {
            #[test]
            fn on_start_panic_leaves_other_endpoints_serving() {
                super::on_start_panic_leaves_other_endpoints_serving($mode);
            }

            #[test]
            fn on_start_panic_stops_that_endpoint() {
                super::on_start_panic_stops_that_endpoint($mode);
            }

            #[test]
            fn blocking_shared_endpoint_vs_dedicated_loop() {
                super::blocking_shared_endpoint_vs_dedicated_loop($mode);
            }

            #[test]
            fn shutdown_with_asks_in_flight_leaks_nothing() {
                super::shutdown_with_asks_in_flight_leaks_nothing($mode);
            }
        }
    };
}

fault_cases!(epoll, transport::IoMode::Epoll);
fault_cases!(io_uring, transport::IoMode::IoUring);
