//! Asks made while the asking thread is exiting, from the destructor of a
//! thread-local value that outlives this crate's own per-thread state (its
//! encode buffer and its ask recycler are destroyed first, being created
//! later): the ask must still go out and be answered, on both IO modes.
//! A thread-local destructor that panics aborts the whole process, so a
//! failure here shows as this test binary aborting.

#![allow(missing_docs)]

mod support;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use rpc::{Msg, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError};
use support::endpoints::Increment;
use transport::IoMode;

/// What an ask's callback reports: the reply, or the error's text.
type Answer = Result<u64, String>;

fn report(reply: Result<Msg<'_, u64>, RpcError>) -> Answer {
    match reply {
        Ok(Msg::Local(n)) => Ok(n),
        Ok(Msg::Remote(n)) => Ok(n.to_native()),
        Err(e) => Err(e.to_string()),
    }
}

/// Asks `endpoint` for 41 + 1 when dropped, and sends the answer to `answers`.
struct AskOnDrop {
    endpoint: RpcEndpointRef<u64, u64>,
    answers: mpsc::Sender<Answer>,
}

impl Drop for AskOnDrop {
    fn drop(&mut self) {
        let answers = self.answers.clone();
        self.endpoint.ask_with(41, move |reply| {
            let _ = answers.send(report(reply));
        });
    }
}

thread_local! {
    static ASK_ON_EXIT: RefCell<Option<AskOnDrop>> = const { RefCell::new(None) };
}

fn an_ask_from_a_thread_local_destructor_is_answered(mode: IoMode) {
    let mut server_conf = RpcEnvConfig::server("server", SocketAddr::from(([127, 0, 0, 1], 0)));
    server_conf.transport.io_mode = mode;
    let server = RpcEnv::create(server_conf).expect("server RpcEnv");
    server
        .setup_inline_endpoint("increment", Increment)
        .expect("register the endpoint");
    let mut client_conf = RpcEnvConfig::client("client");
    client_conf.transport.io_mode = mode;
    let client = RpcEnv::create(client_conf).expect("client RpcEnv");
    let endpoint = client
        .setup_endpoint_ref::<u64, u64>(server.address().expect("server address"), "increment")
        .expect("a reference to the endpoint");

    let (answers, answered) = mpsc::channel();
    let asker = std::thread::spawn({
        let endpoint = endpoint.clone();
        let answers = answers.clone();
        move || {
            // Registered first, so destroyed last: after the encode buffer
            // and the recycler, which the ask below creates.
            ASK_ON_EXIT.with(|slot| {
                *slot.borrow_mut() = Some(AskOnDrop {
                    endpoint: endpoint.clone(),
                    answers: answers.clone(),
                })
            });
            endpoint.ask_with(1, move |reply| {
                let _ = answers.send(report(reply));
            });
        }
    });
    asker.join().expect("the asking thread exits cleanly");
    let mut got: Vec<Answer> = (0..2)
        .map(|i| {
            answered
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{mode:?}: answer {i} of 2 never came"))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![Ok(2), Ok(42)],
        "{mode:?}: the ask from the thread and the one from its exit are both answered"
    );
    client.shutdown();
    server.shutdown();
}

#[test]
fn an_ask_from_a_thread_local_destructor_is_answered_on_epoll() {
    an_ask_from_a_thread_local_destructor_is_answered(IoMode::Epoll);
}

#[test]
fn an_ask_from_a_thread_local_destructor_is_answered_on_io_uring() {
    an_ask_from_a_thread_local_destructor_is_answered(IoMode::IoUring);
}
