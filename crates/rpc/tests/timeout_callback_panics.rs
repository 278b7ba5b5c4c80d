//! An asker's callback that panics when its ask times out runs on the
//! RpcEnv's one timer thread (`rpc-timeout`). The panic must not end that
//! thread: every later ask of the RpcEnv would then never time out (its
//! `ask_with` callback never called, its `wait` never returning). Asks to a
//! remote endpoint that never answers, on both IO modes, with `ask_with` and
//! with `ask(..).on_complete`.

#[macro_use]
mod support;

use std::sync::mpsc;
use std::time::Duration;

use rpc::{Msg, RpcEndpointRef, RpcError};
use support::endpoints::Silent;
use support::{client_with, plain, server_with};
use transport::IoMode;

fn timed_out(r: &Result<u64, RpcError>) -> bool {
    matches!(r, Err(RpcError::AskTimeout { .. }))
}

fn asks_time_out_after_a_timeout_callback_panicked(mode: IoMode) {
    let server = server_with(mode, "server", plain);
    server.setup_endpoint("silent", Silent::default()).unwrap();
    let client = client_with(mode, "client", |c| c.ask_timeout_ms = 100);
    let silent: RpcEndpointRef<u64, u64> = client
        .setup_endpoint_ref(server.address().unwrap(), "silent")
        .unwrap();
    let (done, ended) = mpsc::channel();
    for round in 0..2u64 {
        let d = done.clone();
        silent.ask_with(round, move |r: Result<Msg<'_, u64>, RpcError>| {
            let _ = d.send(r.map(|_| 0));
            panic!("a bug in the asker's ask_with callback");
        });
        let d = done.clone();
        silent.ask(round).on_complete(move |r| {
            let _ = d.send(r);
            panic!("a bug in the asker's on_complete callback");
        });
        for _ in 0..2 {
            let r = ended
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{mode:?}: round {round}: an ask never timed out"));
            assert!(timed_out(&r), "{mode:?}: round {round}: {r:?}");
        }
    }
    let r = silent.ask(9).wait();
    assert!(timed_out(&r), "{mode:?}: {r:?}");
    client.shutdown();
    server.shutdown();
}

both_io_modes!(asks_time_out_after_a_timeout_callback_panicked);
