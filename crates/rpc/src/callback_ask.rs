//! An ask answered by a callback that reads the reply in place
//! ([`RpcEndpointRef::ask_with`](crate::RpcEndpointRef::ask_with)).
//!
//! One allocation holds everything the ask needs until it is answered: the
//! callback, the timer registration and the [`AskOrigin`]. The same object is
//! the RPC's [`RpcResponseListener`], the timer's [`Expire`] action and, for a
//! local endpoint, the [`Complete`] slot its reply fills, so an ask costs one
//! heap allocation in all, and a remote reply reaches the callback as
//! [`Msg::Remote`], a reference into the receive buffer, never deserialized.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use transport::{RpcResponseListener, TransportError};

use crate::error::RpcError;
use crate::message::{Msg, RpcMessage};
use crate::promise::{AskOrigin, Complete, reply_error};
use crate::timeout::{ArmedTimer, Expire, TimeoutScheduler};

/// One ask's state, shared by the transport, the timer and a local endpoint.
pub(crate) struct CallbackAsk<R, F> {
    on_reply: Mutex<Option<F>>,
    timer: ArmedTimer,
    origin: AskOrigin,
    _reply: PhantomData<fn(R)>,
}

impl<R, F> CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    /// A new ask to `origin` whose answer goes to `on_reply`.
    pub(crate) fn new(origin: AskOrigin, on_reply: F) -> Arc<Self> {
        Arc::new(Self {
            on_reply: Mutex::new(Some(on_reply)),
            timer: ArmedTimer::default(),
            origin,
            _reply: PhantomData,
        })
    }

    /// Fails the ask at `deadline` unless it is answered before.
    pub(crate) fn arm_timeout(self: &Arc<Self>, sched: &Arc<TimeoutScheduler>, deadline: Instant) {
        let action: Arc<dyn Expire> = self.clone();
        self.timer.arm(sched, deadline, action, || {
            self.on_reply.lock().unwrap_or_else(|e| e.into_inner()).is_some()
        });
    }

    /// The callback, once: whoever takes it answers the ask. Cancels the timer.
    fn take(&self) -> Option<F> {
        let f = self.on_reply.lock().unwrap_or_else(|e| e.into_inner()).take();
        if f.is_some() {
            self.timer.cancel();
        }
        f
    }

    /// Answers with `result` unless already answered; returns whether this call did.
    fn answer(&self, result: Result<Msg<'_, R>, RpcError>) -> bool {
        match self.take() {
            Some(f) => {
                f(result);
                true
            }
            None => false,
        }
    }
}

impl<R, F> Expire for CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    fn expire(&self, timed_out: bool) {
        self.answer(Err(self.origin.expiry_error(timed_out)));
    }
}

impl<R, F> RpcResponseListener for CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    /// Validates the reply in the receive buffer and hands it over as [`Msg::Remote`].
    fn on_response(self: Arc<Self>, _request_id: i64, result: Result<Bytes, TransportError>) {
        match result {
            Ok(bytes) => match R::access(&bytes) {
                Ok(archived) => self.answer(Ok(Msg::Remote(archived))),
                Err(e) => self.answer(Err(reply_error(e))),
            },
            Err(e) => self.answer(Err(self.origin.errors.transport_error(e))),
        };
    }
}

impl<R, F> Complete<R> for CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    fn complete(&self, result: Result<R, RpcError>) -> bool {
        self.answer(result.map(Msg::Local))
    }
}
