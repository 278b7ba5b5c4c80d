//! Small endpoints the ask tests share.

use rpc::{Msg, RpcCallContext, RpcEndpoint};

/// Answers `n` with `n + 1`, where it runs (inline: on the connection's event loop).
pub struct Increment;

impl RpcEndpoint for Increment {
    type Message = u64;
    type Reply = u64;
    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = msg.into_owned().expect("a u64 message decodes");
        ctx.reply(n + 1);
    }
}

/// Never answers: keeps every call's context, so its asks time out.
#[derive(Default)]
pub struct Silent(Vec<RpcCallContext<u64>>);

impl RpcEndpoint for Silent {
    type Message = u64;
    type Reply = u64;
    fn receive_and_reply(&mut self, _msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        self.0.push(ctx);
    }
}
