//! Endpoints the suite uses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcSender};

/// A request of the suite's endpoints.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Req {
    /// Answer `seq * 2`.
    Double(u64),
    /// Record `seq` (one-way) or answer it.
    Seq(u64),
    /// Answer with a failure carrying this text.
    Fail(String),
    /// Panic.
    Panic,
    /// Sleep this many milliseconds, then answer 0.
    Sleep(u64),
    /// Ask the sender's endpoint `client-echo` for `Double(n)` and answer with its reply.
    AskBack(u64),
    /// Answer with the payload's length.
    Bytes(Vec<u8>),
}

fn own(msg: Msg<'_, Req>) -> Req {
    msg.into_owned().expect("valid message")
}

/// Records its life and answers per [`Req`].
pub struct Recorder {
    pub events: Sender<String>,
}

impl RpcEndpoint for Recorder {
    type Message = Req;
    type Reply = u64;

    fn on_start(&mut self) {
        let _ = self.events.send("start".into());
    }

    fn receive(&mut self, msg: Msg<'_, Req>, _sender: &RpcSender) {
        let _ = self.events.send(format!("{:?}", own(msg)));
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, Req>, ctx: RpcCallContext<u64>) {
        // Read the remote message in place where it is a plain number.
        if let Msg::Remote(ArchivedReq::Double(n)) = &msg {
            return ctx.reply(n.to_native() * 2);
        }
        match own(msg) {
            Req::Double(n) => ctx.reply(n * 2),
            Req::Seq(n) => {
                let _ = self.events.send(format!("ask {n}"));
                ctx.reply(n)
            }
            Req::Fail(text) => ctx.send_failure(text),
            Req::Panic => panic!("asked to panic"),
            Req::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                ctx.reply(0)
            }
            Req::AskBack(n) => {
                let back = ctx
                    .sender()
                    .endpoint_ref::<Req, u64>("client-echo")
                    .expect("a reference over the sender's connection");
                // Answer from another thread once the client has answered us.
                std::thread::spawn(move || match back.ask_sync(Req::Double(n)) {
                    Ok(v) => ctx.reply(v + 1),
                    Err(e) => ctx.send_failure(e),
                });
            }
            Req::Bytes(b) => ctx.reply(b.len() as u64),
        }
    }

    fn on_stop(&mut self) {
        let _ = self.events.send("stop".into());
    }

    fn on_error(&mut self, error: &rpc::RpcError) {
        let _ = self.events.send(format!("error: {error}"));
    }
}

/// Counts how many threads are inside `receive_and_reply` at once.
#[derive(Clone)]
pub struct Parallel {
    pub inside: Arc<AtomicUsize>,
    pub max_seen: Arc<Mutex<usize>>,
}

impl RpcEndpoint for Parallel {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut max = self.max_seen.lock().unwrap();
            *max = (*max).max(now);
        }
        std::thread::sleep(Duration::from_millis(30));
        self.inside.fetch_sub(1, Ordering::SeqCst);
        ctx.reply(msg.into_owned().unwrap());
    }
}
