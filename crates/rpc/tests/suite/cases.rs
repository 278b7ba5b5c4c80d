//! The cases of the RpcEnv suite; each takes the IO mode to run on.

use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc::{RpcAddress, RpcEndpointRef, RpcEnv, RpcError};
use transport::IoMode;

use super::endpoints::{Parallel, Recorder, Req};
use super::{client, peer, server};

const WAIT: Duration = Duration::from_secs(10);

fn recorder(env: &RpcEnv, name: &str) -> (RpcEndpointRef<Req, u64>, Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let r = env.setup_endpoint(name, Recorder { events: tx }).unwrap();
    (r, rx)
}

fn remote_ref(from: &RpcEnv, to: &RpcEnv, name: &str) -> RpcEndpointRef<Req, u64> {
    from.setup_endpoint_ref::<Req, u64>(to.address().unwrap(), name)
        .unwrap()
}

fn next(rx: &Receiver<String>) -> String {
    rx.recv_timeout(WAIT).expect("an endpoint event within 10 s")
}

pub fn send_ask_and_ask_sync(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (local, rx) = recorder(&s, "rec");
    assert_eq!(next(&rx), "start");
    let remote = remote_ref(&c, &s, "rec");
    assert!(local.is_local() && !remote.is_local());
    assert_ne!(c.io_mode(), IoMode::Auto);
    if mode != IoMode::Auto {
        assert_eq!(c.io_mode(), mode);
    }
    // Local: no serialization.
    assert_eq!(local.ask_sync(Req::Double(21)).unwrap(), 42);
    local.send(Req::Seq(1)).unwrap();
    assert_eq!(next(&rx), "Seq(1)");
    // Remote: ask (future), ask_sync, send.
    let fut = remote.ask(Req::Double(5));
    assert_eq!(fut.wait().unwrap(), 10);
    assert_eq!(remote.ask_sync(Req::Bytes(vec![7; 100_000])).unwrap(), 100_000);
    remote.send(Req::Seq(2)).unwrap();
    assert_eq!(next(&rx), "Seq(2)");
}

pub fn on_start_first_on_stop_last(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (local, rx) = recorder(&s, "rec");
    let remote = remote_ref(&c, &s, "rec");
    for i in 0..50 {
        remote.send(Req::Seq(i)).unwrap();
    }
    // An ask answered means every earlier one-way message from this sender is processed.
    assert_eq!(remote.ask_sync(Req::Seq(50)).unwrap(), 50);
    assert!(s.stop(&local));
    let events: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
        .take(53)
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("start"));
    assert_eq!(events.last().map(String::as_str), Some("stop"));
    assert_eq!(events.len(), 53);
    assert!(matches!(
        local.send(Req::Seq(9)),
        Err(RpcError::EndpointStopped { .. })
    ));
    // Asks to a stopped endpoint say why (not that the call was dropped unanswered).
    let err = remote.ask_sync(Req::Double(1)).unwrap_err();
    assert!(
        err.to_string().contains("`rec`") && !err.to_string().contains("without replying"),
        "{err}"
    );
    let err = local.ask_sync(Req::Double(1)).unwrap_err();
    assert!(matches!(err, RpcError::EndpointStopped { .. }), "{err:?}");
}

pub fn messages_from_one_sender_in_order(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, rx) = recorder(&s, "rec");
    assert_eq!(next(&rx), "start");
    let remote = remote_ref(&c, &s, "rec");
    let futures: Vec<_> = (0..500)
        .map(|i| {
            if i % 2 == 0 {
                remote.send(Req::Seq(i)).unwrap();
                None
            } else {
                Some(remote.ask(Req::Seq(i)))
            }
        })
        .collect();
    for f in futures.into_iter().flatten() {
        f.wait().unwrap();
    }
    for i in 0..500u64 {
        let e = next(&rx);
        let want = if i % 2 == 0 {
            format!("Seq({i})")
        } else {
            format!("ask {i}")
        };
        assert_eq!(e, want);
    }
}

pub fn ten_thousand_concurrent_asks(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, _rx) = recorder(&s, "rec");
    let remote = remote_ref(&c, &s, "rec");
    let futures: Vec<_> = (0..10_000u64).map(|i| (i, remote.ask(Req::Double(i)))).collect();
    for (i, f) in futures {
        assert_eq!(f.wait().unwrap(), i * 2);
    }
}

pub fn unknown_endpoint_is_named(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let r = c.endpoint_ref::<Req, u64>(s.address().unwrap(), "nobody");
    let err = r.ask_sync(Req::Double(1)).unwrap_err();
    let text = err.to_string();
    // The same variant as `setup_endpoint_ref` and a local ref give, not a RemoteFailure.
    assert!(
        matches!(&err, RpcError::EndpointNotFound { name, address }
            if name == "nobody" && *address == s.address().unwrap().to_string()),
        "{err:?}"
    );
    assert!(!text.contains("remote endpoint failed"), "{text}");
}

pub fn setup_endpoint_ref_to_missing_name(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let err = c
        .setup_endpoint_ref::<Req, u64>(s.address().unwrap(), "missing")
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::EndpointNotFound { name, .. } if name == "missing"),
        "{err:?}"
    );
    assert!(matches!(
        s.local_endpoint_ref::<Req, u64>("missing"),
        Err(RpcError::EndpointNotFound { .. })
    ));
}

pub fn ask_times_out(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, _rx) = recorder(&s, "rec");
    let remote = remote_ref(&c, &s, "rec");
    let started = Instant::now();
    let err = remote
        .ask_with_timeout(Req::Sleep(2_000), Duration::from_millis(200))
        .wait()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert!(
        matches!(err, RpcError::AskTimeout { timeout_ms: 200, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ask_timeout_ms"));
}

pub fn remote_failure_carries_message(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (local, _rx) = recorder(&s, "rec");
    let remote = remote_ref(&c, &s, "rec");
    for r in [&local, &remote] {
        let err = r.ask_sync(Req::Fail("disk full".into())).unwrap_err();
        assert!(
            matches!(&err, RpcError::RemoteFailure { message } if message == "disk full"),
            "{err:?}"
        );
    }
}

pub fn panicking_handler_fails_the_ask_and_keeps_serving(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (local, rx) = recorder(&s, "rec");
    assert_eq!(next(&rx), "start");
    let remote = remote_ref(&c, &s, "rec");
    let err = remote.ask_sync(Req::Panic).unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(next(&rx).contains("asked to panic"), "on_error runs");
    let err = local.ask_sync(Req::Panic).unwrap_err();
    assert!(matches!(err, RpcError::EndpointPanicked { .. }), "{err:?}");
    assert_eq!(remote.ask_sync(Req::Double(4)).unwrap(), 8, "still serving");
}

pub fn server_asks_client_over_its_connection(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, _rx) = recorder(&s, "rec");
    let (_echo, _crx) = recorder(&c, "client-echo");
    assert!(
        c.address().is_none(),
        "the client has no address to be reached at"
    );
    let remote = remote_ref(&c, &s, "rec");
    assert_eq!(remote.ask_sync(Req::AskBack(10)).unwrap(), 21);
}

pub fn concurrent_endpoint_runs_in_parallel(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let ep = Parallel {
        inside: Arc::new(AtomicUsize::new(0)),
        max_seen: Arc::new(Mutex::new(0)),
    };
    let max_seen = ep.max_seen.clone();
    s.setup_concurrent_endpoint("par", ep).unwrap();
    let remote = c
        .setup_endpoint_ref::<u64, u64>(s.address().unwrap(), "par")
        .unwrap();
    let fs: Vec<_> = (0..20).map(|i| remote.ask(i)).collect();
    for (i, f) in fs.into_iter().enumerate() {
        assert_eq!(f.wait().unwrap(), i as u64);
    }
    assert!(*max_seen.lock().unwrap() >= 2, "several threads at once");
}

pub fn isolated_endpoint_is_not_held_up(mode: IoMode) {
    let s = server(mode, "server");
    let (slow, _rx) = recorder(&s, "slow");
    let (tx, _rx2) = mpsc::channel();
    let fast = s
        .setup_isolated_endpoint("fast", Recorder { events: tx })
        .unwrap();
    // Occupy every shared MessageLoop thread with slow endpoints.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let mut blockers = vec![slow.ask(Req::Sleep(1_500))];
    for i in 0..threads {
        let (t, _) = mpsc::channel();
        let r = s
            .setup_endpoint(&format!("slow{i}"), Recorder { events: t })
            .unwrap();
        blockers.push(r.ask(Req::Sleep(1_500)));
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(fast.ask_sync(Req::Double(2)).unwrap(), 4);
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "dedicated loop not held up"
    );
    for b in blockers {
        b.wait().unwrap();
    }
}

pub fn shutdown_fails_pending_asks_and_stops_endpoints(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, rx) = recorder(&s, "rec");
    assert_eq!(next(&rx), "start");
    let remote = remote_ref(&c, &s, "rec");
    let pending = remote.ask(Req::Sleep(3_000));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    c.shutdown();
    let err = pending.wait().unwrap_err();
    assert!(matches!(err, RpcError::EnvStopped), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(remote.send(Req::Seq(1)), Err(RpcError::EnvStopped)));
    s.shutdown();
    s.await_termination();
    let events: Vec<String> = rx.try_iter().collect();
    assert_eq!(events.last().map(String::as_str), Some("stop"), "{events:?}");
}

pub fn wrong_message_type_is_refused(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (_local, _rx) = recorder(&s, "rec");
    let wrong = c.endpoint_ref::<String, u64>(s.address().unwrap(), "rec");
    let err = wrong.ask_sync("hello".to_string()).unwrap_err();
    assert!(err.to_string().contains("another type"), "{err}");
    assert!(matches!(
        s.local_endpoint_ref::<String, u64>("rec"),
        Err(RpcError::TypeMismatch { .. })
    ));
}

pub fn connect_failure_fails_queued_asks(mode: IoMode) {
    let c = client(mode, "client");
    // A port nobody listens on: bind then drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = c.endpoint_ref::<Req, u64>(&RpcAddress::new("127.0.0.1", port), "x");
    let fs: Vec<_> = (0..5).map(|i| r.ask(Req::Double(i))).collect();
    for f in fs {
        let err = f.wait().unwrap_err();
        assert!(matches!(err, RpcError::ConnectFailed { .. }), "{err:?}");
    }
}

pub fn peer_process_killed_mid_ask_fails_at_once(mode: IoMode) {
    let mut child = peer::spawn(mode);
    let c = client(mode, "client");
    let r = c.setup_endpoint_ref::<Req, u64>(&child.address, "rec").unwrap();
    let pending = r.ask_with_timeout(Req::Sleep(30_000), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    child.kill();
    let err = pending.wait().unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "failed at once, not at the timeout"
    );
}

pub fn another_process_asks_by_address(mode: IoMode) {
    let mut child = peer::spawn(mode);
    let c = client(mode, "client");
    let r = c.setup_endpoint_ref::<Req, u64>(&child.address, "rec").unwrap();
    assert_eq!(r.ask_sync(Req::Double(100)).unwrap(), 200);
    child.kill();
}

/// Collects one `ask_with` answer: `Ok((remote?, value))` or the error.
fn ask_with_answer(r: &RpcEndpointRef<Req, u64>, msg: Req) -> Result<(bool, u64), RpcError> {
    let (tx, rx) = mpsc::channel();
    r.ask_with(msg, move |answer| {
        let _ = tx.send(answer.map(|m| {
            let remote = m.is_remote();
            let value = match m {
                rpc::Msg::Local(v) => v,
                rpc::Msg::Remote(archived) => archived.to_native(),
            };
            (remote, value)
        }));
    });
    rx.recv_timeout(WAIT).expect("ask_with answers within 10 s")
}

pub fn ask_with_reads_the_reply_in_place(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (local, _rx) = recorder(&s, "rec");
    let remote = remote_ref(&c, &s, "rec");
    assert_eq!(
        ask_with_answer(&remote, Req::Double(5)).unwrap(),
        (true, 10),
        "remote: archived"
    );
    assert_eq!(
        ask_with_answer(&local, Req::Double(21)).unwrap(),
        (false, 42),
        "local: the value"
    );
    for r in [&local, &remote] {
        let err = ask_with_answer(r, Req::Fail("disk full".into())).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
    // Many at once over one connection, each answered once with its own reply.
    let (tx, rx) = mpsc::channel();
    for i in 0..1_000u64 {
        let tx = tx.clone();
        remote.ask_with(Req::Double(i), move |answer| {
            let _ = tx.send((i, answer.map(|m| m.into_owned().unwrap())));
        });
    }
    let mut seen = vec![false; 1_000];
    for _ in 0..1_000 {
        let (i, answer) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(answer.unwrap(), 2 * i);
        assert!(!std::mem::replace(&mut seen[i as usize], true), "answered twice");
    }
    // The env's ask timeout applies.
    let mut conf = rpc::RpcEnvConfig::client("impatient");
    conf.transport.io_mode = mode;
    conf.ask_timeout_ms = 200;
    let impatient = RpcEnv::create(conf).unwrap();
    let slow = remote_ref(&impatient, &s, "rec");
    let started = Instant::now();
    let err = ask_with_answer(&slow, Req::Sleep(2_000)).unwrap_err();
    assert!(
        matches!(err, RpcError::AskTimeout { timeout_ms: 200, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1_500));
    // After shutdown: refused at once, on the calling thread.
    c.shutdown();
    assert!(matches!(
        ask_with_answer(&remote, Req::Double(1)),
        Err(RpcError::EnvStopped)
    ));
}

pub fn inline_endpoint_serves_on_the_delivering_thread(mode: IoMode) {
    let s = server(mode, "server");
    let c = client(mode, "client");
    let (tx, rx) = mpsc::channel();
    let local = s
        .setup_inline_endpoint("inline", super::endpoints::Recorder { events: tx })
        .unwrap();
    assert_eq!(
        rx.try_recv().as_deref(),
        Ok("start"),
        "on_start ran before setup returned"
    );
    let remote = remote_ref(&c, &s, "inline");
    assert_eq!(remote.ask_sync(Req::Double(4)).unwrap(), 8);
    assert_eq!(local.ask_sync(Req::Double(5)).unwrap(), 10);
    assert_eq!(ask_with_answer(&remote, Req::Double(6)).unwrap(), (true, 12));
    for i in 0..500 {
        remote.send(Req::Seq(i)).unwrap();
    }
    for i in 0..500 {
        assert_eq!(next(&rx), format!("Seq({i})"), "one sender's order is kept");
    }
    // A panic fails that ask only; the event loop and the endpoint go on.
    assert!(remote.ask_sync(Req::Panic).is_err());
    assert!(next(&rx).starts_with("error: "));
    assert_eq!(remote.ask_sync(Req::Double(1)).unwrap(), 2);
    // Many asks at once over one connection, all answered.
    let answers: Vec<_> = (0..2_000u64).map(|i| remote.ask(Req::Double(i))).collect();
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.wait().unwrap(), 2 * i as u64);
    }
    s.shutdown();
    let mut rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(rest.pop().as_deref(), Some("stop"), "on_stop ran at shutdown");
}
