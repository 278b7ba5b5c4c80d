//! `RpcEndpointVerifier`: the endpoint every server RpcEnv runs so that a
//! remote RpcEnv can check that an endpoint exists before it hands out a
//! reference to it (Spark's `RpcEndpointVerifier`, name `endpoint-verifier`).

use std::sync::Weak;

use crate::context::RpcCallContext;
use crate::dispatcher::Dispatcher;
use crate::endpoint::RpcEndpoint;
use crate::message::Msg;

/// The verifier's registered name.
pub const VERIFIER_NAME: &str = "endpoint-verifier";

/// Asks whether an endpoint of this name exists; the reply is a `bool`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CheckExistence {
    /// The endpoint name to look up.
    pub name: String,
}

pub(crate) struct RpcEndpointVerifier {
    pub(crate) dispatcher: Weak<Dispatcher>,
}

impl RpcEndpoint for RpcEndpointVerifier {
    type Message = CheckExistence;
    type Reply = bool;

    fn receive_and_reply(&mut self, msg: Msg<'_, CheckExistence>, ctx: RpcCallContext<bool>) {
        let exists = self.dispatcher.upgrade().is_some_and(|d| match &msg {
            Msg::Local(m) => d.contains(&m.name),
            Msg::Remote(a) => d.contains(a.name.as_str()),
        });
        ctx.reply(exists);
    }
}
