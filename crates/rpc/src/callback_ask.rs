//! An ask answered by a callback that reads the reply in place
//! ([`RpcEndpointRef::ask_with`](crate::RpcEndpointRef::ask_with)).
//!
//! One object holds everything the ask needs until it is answered: the
//! callback, the timer registration, the [`AskOrigin`] and, once its request
//! is registered on a connection, the [`SentRpc`] that a timeout forgets. The same object is
//! the RPC's [`RpcResponseListener`], the timer's [`Expire`] action and, for a
//! local endpoint, the [`Complete`] slot its reply fills, and a remote reply
//! reaches the callback as [`Msg::Remote`], a reference into the receive
//! buffer, never deserialized. The object comes from the asking thread's
//! [`recycler`](crate::recycler): once an answered ask's last reference is
//! dropped, the next ask from that thread and call site reuses its
//! allocation, so a steady stream of asks allocates nothing.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use transport::{RpcResponseListener, TransportClient, TransportError};

use crate::error::RpcError;
use crate::message::{Msg, RpcMessage};
use crate::promise::{AskOrigin, Complete, SentRpc, reply_error};
use crate::recycler::recycled;
use crate::timeout::{ArmedTimer, Expire, TimeoutScheduler};

/// What an ask holds until it is answered.
struct Pending<F> {
    on_reply: F,
    origin: AskOrigin,
    /// Where its RPC is outstanding, once registered.
    sent: Option<SentRpc>,
}

/// One ask's state, shared by the transport, the timer and a local endpoint.
pub(crate) struct CallbackAsk<R, F> {
    /// Until the ask is answered; all of it is dropped then, so a pooled,
    /// answered ask holds nothing of its asker's (nor its connection).
    pending: Mutex<Option<Pending<F>>>,
    timer: ArmedTimer,
    _reply: PhantomData<fn(R)>,
}

impl<R, F> CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    /// A new ask to `origin` whose answer goes to `on_reply`, in a recycled
    /// allocation where this thread has a free one.
    pub(crate) fn new(origin: AskOrigin, on_reply: F) -> Arc<Self> {
        recycled(Self {
            pending: Mutex::new(Some(Pending {
                on_reply,
                origin,
                sent: None,
            })),
            timer: ArmedTimer::default(),
            _reply: PhantomData,
        })
    }

    /// Fails the ask at `deadline` unless it is answered before.
    pub(crate) fn arm_timeout(self: &Arc<Self>, sched: &Arc<TimeoutScheduler>, deadline: Instant) {
        let action: Arc<dyn Expire> = self.clone();
        self.timer.arm(sched, deadline, action, || {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_some()
        });
    }

    /// What the ask holds, once: whoever takes it answers the ask. Cancels the timer.
    fn take(&self) -> Option<Pending<F>> {
        let taken = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        if taken.is_some() {
            self.timer.cancel();
        }
        taken
    }

    /// Answers with what `result` makes of the ask's origin, unless already
    /// answered; returns whether this call did. With `forget`, the ask's RPC
    /// is removed from its connection first (the ask gives up on it).
    fn answer<'a>(
        &self,
        forget: bool,
        result: impl FnOnce(&AskOrigin) -> Result<Msg<'a, R>, RpcError>,
    ) -> bool {
        let Some(p) = self.take() else { return false };
        if forget && let Some(sent) = p.sent {
            sent.forget();
        }
        (p.on_reply)(result(&p.origin));
        true
    }
}

impl<R, F> Expire for CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    fn expire(&self, timed_out: bool) {
        // The connection's slot is free by the time the callback runs.
        self.answer(true, |origin| Err(origin.expiry_error(timed_out)));
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
                Ok(archived) => self.answer(false, |_| Ok(Msg::Remote(archived))),
                Err(e) => self.answer(false, |_| Err(reply_error(e))),
            },
            Err(e) => self.answer(false, |origin| Err(origin.errors.transport_error(e))),
        };
    }

    /// Keeps where the RPC is outstanding while the ask waits, for its
    /// timeout; an ask already answered (it timed out while queued in the
    /// Outbox) wants no registration.
    fn on_registered(&self, client: &TransportClient, request_id: i64) -> bool {
        match self.pending.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(p) => {
                p.sent = Some(SentRpc::new(client, request_id));
                true
            }
            None => false,
        }
    }
}

impl<R, F> Complete<R> for CallbackAsk<R, F>
where
    R: RpcMessage,
    F: FnOnce(Result<Msg<'_, R>, RpcError>) + Send + 'static,
{
    fn complete(&self, result: Result<R, RpcError>) -> bool {
        self.answer(false, |_| result.map(Msg::Local))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use transport::TransportError;

    use super::CallbackAsk;
    use crate::error::RpcError;
    use crate::message::Msg;
    use crate::promise::{AskErrors, AskOrigin, Complete};
    use crate::timeout::Expire;

    struct PlainErrors;

    impl AskErrors for PlainErrors {
        fn transport_error(&self, error: TransportError) -> RpcError {
            RpcError::from_transport(error)
        }
    }

    fn origin(errors: &Arc<dyn AskErrors>) -> AskOrigin {
        AskOrigin {
            endpoint: "endpoint".into(),
            timeout: Duration::from_secs(1),
            errors: errors.clone(),
        }
    }

    #[test]
    fn an_answered_ask_holds_nothing_of_its_asker() {
        let errors: Arc<dyn AskErrors> = Arc::new(PlainErrors);
        let captured = Arc::new(());
        let held = captured.clone();
        let ask = CallbackAsk::<u64, _>::new(origin(&errors), move |_: Result<Msg<'_, u64>, RpcError>| {
            drop(held)
        });
        assert_eq!(
            Arc::strong_count(&captured),
            2,
            "the callback holds its capture until it runs"
        );
        assert!(ask.complete(Ok(5)), "the first answer answers");
        assert_eq!(
            Arc::strong_count(&captured),
            1,
            "the callback is dropped once it ran"
        );
        assert_eq!(
            Arc::strong_count(&errors),
            1,
            "the origin is dropped on answering"
        );
        assert!(!ask.complete(Ok(6)), "a second answer is ignored");
    }

    #[test]
    fn each_ask_is_answered_once_and_the_next_reuses_its_allocation() {
        let errors: Arc<dyn AskErrors> = Arc::new(PlainErrors);
        let calls = Arc::new(AtomicUsize::new(0));
        let ask_once = |expect: u64| {
            let calls = calls.clone();
            CallbackAsk::<u64, _>::new(origin(&errors), move |r: Result<Msg<'_, u64>, RpcError>| {
                assert!(matches!(r, Ok(Msg::Local(n)) if n == expect), "answer {expect}");
                calls.fetch_add(1, Ordering::Relaxed);
            })
        };
        let first = ask_once(1);
        let at = Arc::as_ptr(&first);
        assert!(first.complete(Ok(1)));
        first.expire(true);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "a timeout after the answer calls nothing"
        );
        drop(first);
        let second = ask_once(2);
        assert_eq!(
            Arc::as_ptr(&second),
            at,
            "the answered ask's allocation is reused"
        );
        assert!(second.complete(Ok(2)), "the reused ask is pending again");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    /// What a pooled ask costs beside its closure (as documented on
    /// `RpcEndpointRef::ask_with`): its state and the `Arc`'s two counts.
    #[test]
    fn a_pooled_ask_takes_at_most_128_bytes_beside_its_closure() {
        fn size_of_ask<F>(_: &F) -> usize
        where
            F: FnOnce(Result<Msg<'_, u64>, RpcError>) + Send + 'static,
        {
            std::mem::size_of::<CallbackAsk<u64, F>>() + 2 * std::mem::size_of::<usize>()
        }
        let zero_sized = |_: Result<Msg<'_, u64>, RpcError>| {};
        assert!(size_of_ask(&zero_sized) <= 128, "{} B", size_of_ask(&zero_sized));
        let big = [7u8; 1000];
        let capturing = move |_: Result<Msg<'_, u64>, RpcError>| {
            std::hint::black_box(big);
        };
        assert!(
            size_of_ask(&capturing) <= 1000 + 128,
            "{} B",
            size_of_ask(&capturing)
        );
    }

    #[test]
    fn an_ask_still_referred_to_is_not_reused() {
        let errors: Arc<dyn AskErrors> = Arc::new(PlainErrors);
        let make = || CallbackAsk::<u64, _>::new(origin(&errors), |_: Result<Msg<'_, u64>, RpcError>| {});
        let pending = make();
        let other = make();
        assert_ne!(Arc::as_ptr(&pending), Arc::as_ptr(&other));
        assert!(
            pending.complete(Ok(1)),
            "the first ask is still pending, not overwritten"
        );
        assert!(other.complete(Ok(2)));
    }
}
