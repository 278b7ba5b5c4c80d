//! `Watcher`: an endpoint that records every call made on it, network events included.

use std::sync::{Arc, Mutex};

use rpc::{Msg, RpcAddress, RpcCallContext, RpcEndpoint, RpcError, RpcSender};

/// Every call, in order, as text.
pub type Calls = Arc<Mutex<Vec<String>>>;

/// Answers `n` with `n + 1`; records everything.
pub struct Watcher(pub Calls);

impl Watcher {
    /// A watcher and the record it writes to.
    pub fn new() -> (Self, Calls) {
        let calls = Calls::default();
        (Self(calls.clone()), calls)
    }

    fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
}

/// The calls recorded other than `on_start`.
pub fn seen(calls: &Calls) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| *c != "start")
        .cloned()
        .collect()
}

/// The message calls recorded (`receive`, `receive_and_reply`, `on_error`).
pub fn messages(calls: &Calls) -> Vec<String> {
    seen(calls)
        .into_iter()
        .filter(|c| c.starts_with("ask") || c.starts_with("send") || c.starts_with("error"))
        .collect()
}

impl RpcEndpoint for Watcher {
    type Message = u64;
    type Reply = u64;

    fn on_start(&mut self) {
        self.note("start".into());
    }
    fn receive(&mut self, msg: Msg<'_, u64>, _sender: &RpcSender) {
        self.note(format!("send {:?}", msg.into_owned().ok()));
    }
    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().unwrap_or(0);
        self.note(format!("ask {n}"));
        ctx.reply(n + 1);
    }
    fn on_connected(&mut self, remote: &RpcAddress) {
        self.note(format!("connected {remote}"));
    }
    fn on_disconnected(&mut self, remote: &RpcAddress) {
        self.note(format!("disconnected {remote}"));
    }
    fn on_network_error(&mut self, error: &RpcError, remote: &RpcAddress) {
        self.note(format!("network error {remote}: {error}"));
    }
    fn on_error(&mut self, error: &RpcError) {
        self.note(format!("error {error}"));
    }
}

/// Counts one-way messages; answers asks with the count so far.
#[derive(Clone, Default)]
pub struct Counter(pub Arc<std::sync::atomic::AtomicU64>);

impl RpcEndpoint for Counter {
    type Message = u64;
    type Reply = u64;

    fn receive(&mut self, _msg: Msg<'_, u64>, _sender: &RpcSender) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        ctx.reply(self.0.load(std::sync::atomic::Ordering::Relaxed));
    }
}
