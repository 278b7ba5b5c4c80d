//! Fault cases of the suite: a server restarted under a sending client, and
//! endpoints that block.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use transport::IoMode;

use super::endpoints::{Recorder, Req};
use super::{client, server};

fn server_at(mode: IoMode, addr: SocketAddr) -> RpcEnv {
    let mut c = RpcEnvConfig::server("restarted", addr);
    c.transport.io_mode = mode;
    c.transport.server_threads = 2;
    c.ask_timeout_ms = 10_000;
    RpcEnv::create(c).expect("server RpcEnv on the same port")
}

fn serve_rec(env: &RpcEnv) {
    let (tx, rx) = mpsc::channel();
    std::mem::forget(rx);
    env.setup_endpoint("rec", Recorder { events: tx }).unwrap();
}

pub fn server_restart_while_client_keeps_sending(mode: IoMode) {
    let s = server(mode, "server");
    serve_rec(&s);
    let address = s.address().unwrap().clone();
    let bound = address.to_socket_addr().unwrap();
    let c = client(mode, "client");
    let r: RpcEndpointRef<Req, u64> = c.endpoint_ref(&address, "rec");
    assert_eq!(r.ask_sync(Req::Double(1)).unwrap(), 2);

    s.shutdown();
    drop(s);
    // While it is down every ask fails promptly and clearly; none is lost or left hanging.
    let down_since = Instant::now();
    let mut failures = 0;
    while down_since.elapsed() < Duration::from_millis(700) {
        let started = Instant::now();
        let err = r
            .ask_with_timeout(Req::Double(2), Duration::from_secs(5))
            .wait()
            .unwrap_err();
        assert!(
            matches!(
                err,
                RpcError::ConnectFailed { .. } | RpcError::ConnectionLost { .. }
            ),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "failed at once: {err}"
        );
        r.send(Req::Seq(0)).unwrap(); // one-way: logged as undeliverable
        failures += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(failures > 10);

    // Back on the same port: the outbox reconnects within its backoff.
    let s2 = server_at(mode, bound);
    serve_rec(&s2);
    let deadline = Instant::now() + rpc::CONNECT_RETRY_MAX + Duration::from_secs(3);
    loop {
        match r.ask_with_timeout(Req::Double(3), Duration::from_secs(5)).wait() {
            Ok(v) => break assert_eq!(v, 6),
            Err(e) => assert!(Instant::now() < deadline, "no reconnect after the restart: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..100 {
        assert_eq!(r.ask_sync(Req::Double(i)).unwrap(), 2 * i);
    }
}

/// Blocks in every ask until released (or 30 s pass), then answers 0.
struct Blocker {
    gate: Arc<Mutex<Receiver<()>>>,
}

impl RpcEndpoint for Blocker {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let _ = self.gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
        ctx.reply(0);
    }
}

fn blocker(env: &RpcEnv, name: &str, isolated: bool) -> (RpcEndpointRef<u64, u64>, Sender<()>) {
    let (tx, rx) = mpsc::channel();
    let ep = Blocker {
        gate: Arc::new(Mutex::new(rx)),
    };
    let r = if isolated {
        env.setup_isolated_endpoint(name, ep)
    } else {
        env.setup_endpoint(name, ep)
    };
    (r.unwrap(), tx)
}

pub fn blocked_endpoints_hold_up_no_other(mode: IoMode) {
    let s = server(mode, "server");
    assert!(s.config().resolved_dispatcher_threads(1) >= 2);
    let (stuck, release) = blocker(&s, "stuck", false);
    let (stuck_alone, release_alone) = blocker(&s, "stuck-isolated", true);
    serve_rec(&s);
    let c = client(mode, "client");
    let remote_stuck: RpcEndpointRef<u64, u64> = c.setup_endpoint_ref(s.address().unwrap(), "stuck").unwrap();
    let rec: RpcEndpointRef<Req, u64> = c.setup_endpoint_ref(s.address().unwrap(), "rec").unwrap();
    let local_rec: RpcEndpointRef<Req, u64> = s.local_endpoint_ref("rec").unwrap();

    // One shared MessageLoop thread and the isolated endpoint's thread block.
    let blocked = [remote_stuck.ask(1), stuck.ask(2), stuck_alone.ask(3)];
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for i in 0..50 {
        assert_eq!(rec.ask_sync(Req::Double(i)).unwrap(), 2 * i);
        assert_eq!(local_rec.ask_sync(Req::Double(i)).unwrap(), 2 * i);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "others served while two endpoints block: {:?}",
        started.elapsed()
    );
    for _ in 0..2 {
        release.send(()).unwrap();
    }
    release_alone.send(()).unwrap();
    for b in blocked {
        assert_eq!(b.wait().unwrap(), 0);
    }
}
