//! A tiny key-value store on the RpcEnv, and what its users meet when things go wrong.
//!
//! A server RpcEnv runs endpoint `kv`, a thread-safe endpoint (one message at
//! a time, on the shared MessageLoop) holding a `HashMap`; `Put`, `Get` and
//! `Delete` travel as one rkyv enum, [`KvRequest`], and every answer is a
//! [`KvReply`]. Two client RpcEnvs each make a few hundred asks, through all
//! three ways to ask: `ask` (a future, many in flight), `ask_sync` (blocking)
//! and `ask_with` (a callback with the reply read in place). Then, one by one:
//!
//! - a one-way `send` (a `Put`), whose effect a later `Get` observes;
//! - an ask to an endpoint name that does not exist (`EndpointNotFound`);
//! - an ask to endpoint `black-hole`, which keeps every call and never
//!   answers, from a client with a short `ask_timeout_ms` (`AskTimeout`);
//! - the server shutting down while a client's ask is waiting on it
//!   (`EndpointStopped`, at once, not at the timeout), then an ask to the
//!   server that is gone (`ConnectFailed`).
//!
//! All of it runs on epoll, then on io_uring where the kernel allows it (the
//! reason is printed where it does not). Every result is checked with an
//! assertion; exits 0 when all hold.
//!
//! Run: `cargo run -p rpc --example key_value`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rpc::{
    IoMode, Msg, RpcAddress, RpcCallContext, RpcEndpoint, RpcEnv, RpcEnvConfig, RpcError, RpcSender,
    TransportError,
};

/// What clients ask the store.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum KvRequest {
    /// Sets `key` to `value`; answers with the value it replaced.
    Put { key: String, value: Vec<u8> },
    /// Answers with the value of `key`.
    Get { key: String },
    /// Removes `key`; answers with the value it had.
    Delete { key: String },
}

/// The store's answer: the value of the key before the request (for `Get`, its value).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct KvReply {
    value: Option<Vec<u8>>,
}

/// Endpoint `kv`: the map, touched by one message at a time (`setup_endpoint`).
#[derive(Default)]
struct KvStore {
    map: HashMap<String, Vec<u8>>,
}

impl KvStore {
    fn apply(&mut self, request: KvRequest) -> KvReply {
        let value = match request {
            KvRequest::Put { key, value } => self.map.insert(key, value),
            KvRequest::Get { key } => self.map.get(&key).cloned(),
            KvRequest::Delete { key } => self.map.remove(&key),
        };
        KvReply { value }
    }

    /// Applies a request as it arrived: a remote `Get` is answered from the
    /// receive buffer's archive without deserializing the request.
    fn handle(&mut self, msg: Msg<'_, KvRequest>) -> Result<KvReply, RpcError> {
        if let Msg::Remote(ArchivedKvRequest::Get { key }) = &msg {
            return Ok(KvReply {
                value: self.map.get(key.as_str()).cloned(),
            });
        }
        Ok(self.apply(msg.into_owned()?))
    }
}

impl RpcEndpoint for KvStore {
    type Message = KvRequest;
    type Reply = KvReply;

    fn receive(&mut self, msg: Msg<'_, KvRequest>, sender: &RpcSender) {
        if let Err(e) = self.handle(msg) {
            eprintln!("kv: a one-way message from {sender} was not applied: {e}");
        }
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, KvRequest>, ctx: RpcCallContext<KvReply>) {
        match self.handle(msg) {
            Ok(reply) => ctx.reply(reply),
            Err(e) => ctx.send_failure(e),
        }
    }
}

/// Endpoint `black-hole`: keeps every call and never answers. (Dropping an
/// `RpcCallContext` would answer `NoReply` at once, so it must be held.)
#[derive(Default)]
struct BlackHole {
    held: Vec<RpcCallContext<KvReply>>,
}

impl RpcEndpoint for BlackHole {
    type Message = KvRequest;
    type Reply = KvReply;

    fn receive_and_reply(&mut self, _msg: Msg<'_, KvRequest>, ctx: RpcCallContext<KvReply>) {
        self.held.push(ctx);
    }
}

type Failure = Box<dyn std::error::Error>;

fn main() -> std::process::ExitCode {
    let mut ran = 0;
    for mode in [IoMode::Epoll, IoMode::IoUring] {
        match run(mode) {
            Ok(()) => ran += 1,
            Err(e) if is_unavailable(&*e) => println!("[{mode}] skipped: {e}"),
            Err(e) => {
                eprintln!("key_value on {mode}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    println!("key_value: all checks held on {ran} IO mode(s)");
    std::process::ExitCode::SUCCESS
}

/// Whether `run` failed only because this kernel cannot run io_uring.
fn is_unavailable(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<RpcError>(),
        Some(RpcError::Transport(TransportError::IoModeUnavailable { .. }))
    )
}

fn config(mode: IoMode, mut config: RpcEnvConfig) -> RpcEnvConfig {
    config.transport.io_mode = mode;
    // Small thread counts: this is an example, not a benchmark.
    config.transport.server_threads = 1;
    config.transport.client_threads = 1;
    config.dispatcher_threads = 2;
    config.ask_timeout_ms = 10_000;
    config
}

fn run(mode: IoMode) -> Result<(), Failure> {
    let server = RpcEnv::create(config(
        mode,
        RpcEnvConfig::server("kv-server", SocketAddr::from(([127, 0, 0, 1], 0))),
    ))?;
    assert_eq!(server.io_mode(), mode);
    server.setup_endpoint("kv", KvStore::default())?;
    server.setup_endpoint("black-hole", BlackHole::default())?;
    let address = server.address().expect("a server-mode RpcEnv listens").clone();
    println!("[{mode}] kv server listens on {address}");

    let alice = RpcEnv::create(config(mode, RpcEnvConfig::client("alice")))?;
    let bob = RpcEnv::create(config(mode, RpcEnvConfig::client("bob")))?;
    let kv_a = alice.setup_endpoint_ref::<KvRequest, KvReply>(&address, "kv")?;
    let kv_b = bob.setup_endpoint_ref::<KvRequest, KvReply>(&address, "kv")?;

    // Alice: 200 puts with `ask`, all in flight at once, then 200 gets with `ask_sync`.
    let started = Instant::now();
    let puts: Vec<_> = (0..200)
        .map(|i| {
            kv_a.ask(KvRequest::Put {
                key: format!("alice/{i}"),
                value: vec![i as u8; i % 64],
            })
        })
        .collect();
    for put in puts {
        assert_eq!(put.wait()?, KvReply { value: None });
    }
    for i in 0..200 {
        let got = kv_a.ask_sync(KvRequest::Get {
            key: format!("alice/{i}"),
        })?;
        assert_eq!(got.value, Some(vec![i as u8; i % 64]));
    }

    // Bob: 200 puts, then 200 gets of Alice's keys, with `ask_with` (the
    // reply read in place on the event-loop thread), then 100 deletes with `ask_sync`.
    let (tx, rx) = mpsc::channel();
    for i in 0..200usize {
        let tx = tx.clone();
        kv_b.ask_with(
            KvRequest::Put {
                key: format!("bob/{i}"),
                value: i.to_le_bytes().to_vec(),
            },
            move |reply| {
                let _ = tx.send(reply.map(|r| matches!(r, Msg::Remote(r) if r.value.is_none())));
            },
        );
    }
    for i in 0..200usize {
        let tx = tx.clone();
        kv_b.ask_with(
            KvRequest::Get {
                key: format!("alice/{i}"),
            },
            move |reply| {
                let _ = tx.send(reply.map(|r| match r {
                    Msg::Remote(r) => {
                        r.value.as_ref().map(|v| v.as_slice()) == Some(&vec![i as u8; i % 64][..])
                    }
                    Msg::Local(r) => r.value == Some(vec![i as u8; i % 64]),
                }));
            },
        );
    }
    drop(tx);
    let answers: Vec<bool> = rx.iter().collect::<Result<_, _>>()?;
    assert_eq!(answers.len(), 400, "every ask_with callback runs exactly once");
    assert!(
        answers.iter().all(|ok| *ok),
        "every ask_with reply is the expected one"
    );
    for i in (0..200usize).step_by(2) {
        let deleted = kv_b.ask_sync(KvRequest::Delete {
            key: format!("bob/{i}"),
        })?;
        assert_eq!(deleted.value, Some(i.to_le_bytes().to_vec()));
    }
    let gone = kv_a.ask_sync(KvRequest::Get { key: "bob/0".into() })?;
    let kept = kv_a.ask_sync(KvRequest::Get { key: "bob/1".into() })?;
    assert_eq!(
        (gone.value, kept.value),
        (None, Some(1usize.to_le_bytes().to_vec()))
    );
    println!(
        "[{mode}] 902 asks answered in {:.1} ms (ask, ask_sync and ask_with from two clients)",
        started.elapsed().as_secs_f64() * 1e3
    );

    // A one-way put from Alice: `send` returns once it is queued, with no
    // answer; Bob, on a connection of his own, polls until he sees it.
    kv_a.send(KvRequest::Put {
        key: "note".into(),
        value: b"sent one-way".to_vec(),
    })?;
    let sent = Instant::now();
    let mut polls = 0;
    loop {
        polls += 1;
        let note = kv_b.ask_sync(KvRequest::Get { key: "note".into() })?;
        if note.value.as_deref() == Some(&b"sent one-way"[..]) {
            break;
        }
        assert!(note.value.is_none(), "{note:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "the one-way put never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("[{mode}] Bob saw Alice's one-way put after {polls} get(s)");

    check_missing_endpoint(mode, &alice, &address)?;
    check_timeout(mode, &address)?;
    check_server_shutdown(mode, server, &bob, &address)?;

    alice.shutdown();
    bob.shutdown();
    Ok(())
}

/// An endpoint name that does not exist, checked up front and unchecked.
fn check_missing_endpoint(mode: IoMode, alice: &RpcEnv, address: &RpcAddress) -> Result<(), Failure> {
    match alice.setup_endpoint_ref::<KvRequest, KvReply>(address, "kv-typo") {
        Err(e @ RpcError::EndpointNotFound { .. }) => {
            assert!(e.to_string().contains("kv-typo"), "{e}");
            println!("[{mode}] setup_endpoint_ref to a missing name: {e}");
        }
        other => panic!("setup_endpoint_ref to a missing endpoint: {other:?}"),
    }
    // `endpoint_ref` does not check; the ask then fails with the same error.
    let unchecked = alice.endpoint_ref::<KvRequest, KvReply>(address, "kv-typo");
    match unchecked.ask_sync(KvRequest::Get { key: "x".into() }) {
        Err(e @ RpcError::EndpointNotFound { .. }) => {
            assert!(e.to_string().contains("kv-typo"), "{e}");
            println!("[{mode}] an ask through an unchecked ref to a missing name: {e}");
        }
        other => panic!("ask to a missing endpoint: {other:?}"),
    }
    Ok(())
}

/// An ask that nobody answers, from a client whose `ask_timeout_ms` is 300.
fn check_timeout(mode: IoMode, address: &RpcAddress) -> Result<(), Failure> {
    let mut impatient = config(mode, RpcEnvConfig::client("impatient"));
    impatient.ask_timeout_ms = 300;
    let impatient = RpcEnv::create(impatient)?;
    let hole = impatient.setup_endpoint_ref::<KvRequest, KvReply>(address, "black-hole")?;
    let asked = Instant::now();
    match hole.ask_sync(KvRequest::Get { key: "x".into() }) {
        Err(e @ RpcError::AskTimeout { timeout_ms: 300, .. }) => {
            assert!(asked.elapsed() >= Duration::from_millis(300));
            println!("[{mode}] an unanswered ask: {e}");
        }
        other => panic!("an unanswered ask: {other:?}"),
    }
    impatient.shutdown();
    Ok(())
}

/// The server shuts down while Bob's ask waits on it; then Bob asks again.
fn check_server_shutdown(
    mode: IoMode,
    server: RpcEnv,
    bob: &RpcEnv,
    address: &RpcAddress,
) -> Result<(), Failure> {
    let hole = bob.setup_endpoint_ref::<KvRequest, KvReply>(address, "black-hole")?;
    let waiting = hole.ask(KvRequest::Get { key: "x".into() });
    // Know the ask reached the server: an ask after it on the same connection was answered.
    let kv = bob.endpoint_ref::<KvRequest, KvReply>(address, "kv");
    kv.ask_sync(KvRequest::Get { key: "x".into() })?;
    let asked = Instant::now();
    server.shutdown();
    match waiting.wait() {
        Err(e @ RpcError::EndpointStopped { .. }) => {
            // Not Bob's 10 s ask timeout: the endpoint answers as it stops.
            println!(
                "[{mode}] an ask waiting while the server shut down, after {:.1} ms: {e}",
                asked.elapsed().as_secs_f64() * 1e3
            );
        }
        other => panic!("an ask waiting while the server shut down: {other:?}"),
    }
    match kv.ask_sync(KvRequest::Get { key: "x".into() }) {
        Err(e @ RpcError::ConnectFailed { .. }) => println!("[{mode}] an ask to the stopped server: {e}"),
        other => panic!("an ask to the stopped server: {other:?}"),
    }
    Ok(())
}
