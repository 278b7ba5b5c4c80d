//! What an asker is told when an ask goes wrong in ways a new user meets
//! first, on both IO modes: the error's variant is the one a local ask gets,
//! and its text points at the setting or call to change.

#[macro_use]
mod support;

use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcError};
use support::{client_with, server_with};
use transport::IoMode;

/// Answers `n` with `n`, except 0, whose context it keeps unanswered.
#[derive(Default)]
struct Echo {
    held: Vec<RpcCallContext<u64>>,
}

impl RpcEndpoint for Echo {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().expect("a u64 message decodes");
        if n == 0 {
            self.held.push(ctx);
        } else {
            ctx.reply(n);
        }
    }
}

/// An ask given its own timeout by `ask_with_timeout` names that call, and
/// does not present its timeout as the RpcEnv's `ask_timeout_ms`.
fn explicit_timeout_is_not_called_ask_timeout_ms(mode: IoMode) {
    let server = server_with(mode, "server", |c| c.ask_timeout_ms = 60_000);
    server.setup_endpoint("echo", Echo::default()).unwrap();
    let client = client_with(mode, "client", |c| c.ask_timeout_ms = 60_000);
    let echo = client
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "echo")
        .unwrap();
    let err = echo
        .ask_with_timeout(0, Duration::from_millis(100))
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::AskTimeout { endpoint, timeout_ms: 100, .. } if endpoint == "echo"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("ask_with_timeout"), "{text}");
    assert!(
        !text.contains("now 100"),
        "the env's ask_timeout_ms is 60000, not 100: {text}"
    );
    // And through `ask_sync`, where the env's ask_timeout_ms is the one that passed.
    let quick = client_with(mode, "quick", |c| c.ask_timeout_ms = 100);
    let echo = quick
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "echo")
        .unwrap();
    let text = echo.ask_sync(0).unwrap_err().to_string();
    assert!(
        text.contains("ask_timeout_ms") && text.contains("100 ms"),
        "{text}"
    );
}

/// A remote ask with a message of another type than the endpoint's fails with
/// `TypeMismatch` naming the endpoint and the reference's type, as a local one does.
fn remote_ask_of_another_type_is_a_type_mismatch(mode: IoMode) {
    let server = server_with(mode, "server", support::plain);
    server.setup_endpoint("echo", Echo::default()).unwrap();
    let client = client_with(mode, "client", support::plain);
    let wrong = client
        .setup_endpoint_ref::<String, u64>(server.address().unwrap(), "echo")
        .unwrap();
    let err = wrong.ask_sync("seven".into()).unwrap_err();
    assert!(
        matches!(&err, RpcError::TypeMismatch { name, type_name } if name == "echo" && type_name.contains("String")),
        "{err:?}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    wrong.ask_with("seven".into(), move |reply| {
        let _ = tx.send(reply.map(|_| ()));
    });
    let called = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        matches!(&called, Ok(Err(RpcError::TypeMismatch { name, .. })) if name == "echo"),
        "{called:?}"
    );
    let local = server.local_endpoint_ref::<String, u64>("echo").unwrap_err();
    assert!(matches!(local, RpcError::TypeMismatch { .. }), "{local:?}");
}

/// Fails every ask with the text it was built with.
struct Refuser(&'static str);

impl RpcEndpoint for Refuser {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        ctx.send_failure(self.0);
    }
}

/// An endpoint's own failure text is not taken for the RpcEnv's refusal of a
/// message of another type because it ends alike: a remote asker gets it as
/// `RemoteFailure` with all of it, as a local asker does.
fn an_endpoint_s_own_failure_is_not_a_type_mismatch(mode: IoMode) {
    const TEXT: &str = "the key you sent is unknown and the message is of another type";
    let server = server_with(mode, "server", support::plain);
    let local = server.setup_endpoint("refuser", Refuser(TEXT)).unwrap();
    let client = client_with(mode, "client", support::plain);
    let remote = client
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "refuser")
        .unwrap();
    for (who, err) in [
        ("local", local.ask_sync(1).unwrap_err()),
        ("remote", remote.ask_sync(1).unwrap_err()),
    ] {
        assert!(
            matches!(&err, RpcError::RemoteFailure { message } if message == TEXT),
            "{mode:?}: {who} asker: {err:?}"
        );
    }
}

both_io_modes!(
    explicit_timeout_is_not_called_ask_timeout_ms,
    remote_ask_of_another_type_is_a_type_mismatch,
    an_endpoint_s_own_failure_is_not_a_type_mismatch,
);
