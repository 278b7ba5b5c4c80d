//! A stopped endpoint is dropped on its MessageLoop thread once `on_stop` has
//! run, and the asks it held fail as it drops. A panic there (a local
//! asker's `ask_with` callback, run by that failure, or the endpoint's own
//! `Drop`) must not end the MessageLoop thread, whose other endpoints would
//! then never get another message, nor leave that thread believing it is
//! still dropping a stopped endpoint (every ask dropped unanswered there
//! later failed with `EndpointStopped` rather than `NoReply`).
//! The same for the asks queued for an endpoint whose `on_start` panicked.
//! One MessageLoop thread, so that the endpoints share it; on both IO modes.

#[macro_use]
mod support;

use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEnv, RpcError};
use support::server_with;
use transport::IoMode;

/// Keeps every ask it gets, says so on `got`, and with `panic_on_drop`
/// panics as it is dropped.
struct Holder {
    held: Vec<RpcCallContext<u64>>,
    got: Sender<u64>,
    panic_on_drop: bool,
}

impl RpcEndpoint for Holder {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().expect("a u64 message decodes");
        self.held.push(ctx);
        let _ = self.got.send(n);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.panic_on_drop && !std::thread::panicking() {
            panic!("a bug in the endpoint's Drop");
        }
    }
}

/// Drops every ask unanswered.
struct Careless;

impl RpcEndpoint for Careless {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        drop(ctx);
    }
}

/// Stops a holder of one ask (made with `ask_with`, whose callback panics
/// if `callback_panics`), then asks `careless` on the same MessageLoop thread.
fn stop_then_ask_another(mode: IoMode, callback_panics: bool, panic_on_drop: bool) {
    let env: RpcEnv = server_with(mode, "server", |c| {
        c.dispatcher_threads = 1;
        c.ask_timeout_ms = 10_000;
    });
    let (got, received) = mpsc::channel();
    let holder = env
        .setup_endpoint(
            "holder",
            Holder {
                held: Vec::new(),
                got,
                panic_on_drop,
            },
        )
        .unwrap();
    let careless = env.setup_endpoint("careless", Careless).unwrap();
    let (answered, answer) = mpsc::channel();
    holder.ask_with(1, move |r: Result<Msg<'_, u64>, RpcError>| {
        let stopped = matches!(r, Err(RpcError::EndpointStopped { .. }));
        let _ = answered.send(stopped);
        if callback_panics {
            panic!("a bug in the asker's callback");
        }
    });
    assert_eq!(received.recv_timeout(Duration::from_secs(10)), Ok(1), "{mode:?}");
    assert!(env.stop(&holder));
    let stopped = answer.recv_timeout(Duration::from_secs(10));
    // A panicking Drop drops the held contexts while unwinding: they fail, as
    // with any panic, with "the handler panicked".
    assert!(
        stopped == Ok(true) || (panic_on_drop && stopped.is_ok()),
        "{mode:?}: the held ask failed with EndpointStopped: {stopped:?}"
    );
    let result = careless.ask(2).wait();
    assert!(
        matches!(&result, Err(RpcError::NoReply { name }) if name == "careless"),
        "{mode:?}: the MessageLoop thread goes on, and an ask dropped there is NoReply: {result:?}"
    );
    env.shutdown();
}

fn an_asker_callback_panicking_as_a_stopped_endpoint_drops(mode: IoMode) {
    stop_then_ask_another(mode, true, false);
}

fn an_endpoint_panicking_in_drop_after_stop(mode: IoMode) {
    stop_then_ask_another(mode, false, true);
}

fn a_stopped_endpoint_dropping_quietly(mode: IoMode) {
    stop_then_ask_another(mode, false, false);
}

/// Panics in `on_start`.
struct NeverStarts;

impl RpcEndpoint for NeverStarts {
    type Message = u64;
    type Reply = u64;

    fn on_start(&mut self) {
        panic!("a bug in on_start");
    }

    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        drop(ctx);
    }
}

/// Waits in its handler until `release` says so, holding the MessageLoop thread.
struct Blocker(std::sync::Mutex<mpsc::Receiver<()>>);

impl RpcEndpoint for Blocker {
    type Message = u64;
    type Reply = u64;

    fn receive(&mut self, _msg: Msg<'_, u64>, _sender: &rpc::RpcSender) {
        let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(30));
    }

    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        drop(ctx);
    }
}

/// An endpoint whose `on_start` panics fails the asks queued for it; a local
/// asker's callback that panics as it is told must not end the MessageLoop
/// thread either.
fn an_asker_callback_panicking_as_on_start_fails(mode: IoMode) {
    let env: RpcEnv = server_with(mode, "server", |c| {
        c.dispatcher_threads = 1;
        c.ask_timeout_ms = 10_000;
    });
    let (release, released) = mpsc::channel();
    let blocker = env
        .setup_endpoint("blocker", Blocker(std::sync::Mutex::new(released)))
        .unwrap();
    let careless = env.setup_endpoint("careless", Careless).unwrap();
    blocker.send(0).unwrap();
    // Queued behind the blocker: the OnStart that panics, then this ask.
    let never = env.setup_endpoint("never", NeverStarts).unwrap();
    let (answered, answer) = mpsc::channel();
    never.ask_with(1, move |r: Result<Msg<'_, u64>, RpcError>| {
        let _ = answered.send(r.map(|_| ()).map_err(|e| e.to_string()));
        panic!("a bug in the asker's callback");
    });
    release.send(()).unwrap();
    let told = answer.recv_timeout(Duration::from_secs(10));
    assert!(matches!(told, Ok(Err(_))), "{mode:?}: {told:?}");
    let result = careless.ask(2).wait();
    assert!(
        matches!(&result, Err(RpcError::NoReply { name }) if name == "careless"),
        "{mode:?}: the MessageLoop thread goes on: {result:?}"
    );
    env.shutdown();
}

both_io_modes!(
    an_asker_callback_panicking_as_a_stopped_endpoint_drops,
    an_endpoint_panicking_in_drop_after_stop,
    a_stopped_endpoint_dropping_quietly,
    an_asker_callback_panicking_as_on_start_fails,
);
