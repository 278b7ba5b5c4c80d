//! The completion of one ask: a one-shot slot that a reply, a failure or a
//! timeout fills first, awaited as a future ([`AskFuture`]) or blocked on
//! (`ask_sync`). Runtime-agnostic: no executor or reactor is needed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{RpcResponseListener, TransportClient, TransportError};

use crate::error::RpcError;
use crate::message::RpcMessage;
use crate::recycler::recycled;
use crate::timeout::{ArmedTimer, Expire, TimeoutScheduler};

/// A callback registered with [`AskFuture::on_complete`].
type Callback<T> = Box<dyn FnOnce(Result<T, RpcError>) + Send>;

enum State<T> {
    Pending(Option<Waker>),
    /// Waiting, with a callback to run on the completing thread.
    Callback(Callback<T>),
    Done(Result<T, RpcError>),
    Taken,
}

/// Maps a transport error to what the asker sees: the reference that asked
/// knows its peer's address and whether its env has stopped.
pub(crate) trait AskErrors: Send + Sync {
    /// The error an ask fails with when its RPC fails with `error`.
    fn transport_error(&self, error: TransportError) -> RpcError;
}

/// A slot a local endpoint's reply fills (an [`AskFuture`]'s, or an
/// [`ask_with`](crate::RpcEndpointRef::ask_with) callback's).
pub(crate) trait Complete<R>: Send + Sync {
    /// Fills the slot unless it is already filled; returns whether this call filled it.
    fn complete(&self, result: Result<R, RpcError>) -> bool;
}

impl<T: Send> Complete<T> for Shared<T> {
    fn complete(&self, result: Result<T, RpcError>) -> bool {
        Shared::complete(self, result)
    }
}

impl AskOrigin {
    /// What an ask to this origin fails with when its timer fires
    /// (`timed_out`: [`RpcError::AskTimeout`]) or the scheduler stops first
    /// ([`RpcError::EnvStopped`]).
    pub(crate) fn expiry_error(&self, timed_out: bool) -> RpcError {
        if timed_out {
            RpcError::AskTimeout {
                endpoint: self.endpoint.to_string(),
                timeout: self.timeout,
                timeout_ms: self.timeout.as_millis() as u64,
            }
        } else {
            RpcError::EnvStopped
        }
    }
}

/// Where an ask's RPC is outstanding: the connection and the request id, as
/// [`RpcResponseListener::on_registered`] tells them (Spark's
/// `RpcOutboxMessage` keeps its `client` and `requestId` alike). An ask that
/// times out [`forget`](Self::forget)s it, so that the connection's table
/// of outstanding RPCs does not keep it (and count it against
/// `max_outstanding_rpcs_per_connection`) until the connection closes.
pub(crate) struct SentRpc {
    client: TransportClient,
    request_id: i64,
}

impl SentRpc {
    /// Request `request_id` on `client`.
    pub(crate) fn new(client: &TransportClient, request_id: i64) -> Self {
        Self {
            client: client.clone(),
            request_id,
        }
    }

    /// Removes the request from its connection's outstanding RPCs (Spark's
    /// `TransportClient.removeRpcRequest`); a later answer is then ignored.
    pub(crate) fn forget(self) {
        self.client.remove_rpc_request(self.request_id);
    }
}

/// Where an ask went, kept in its promise for the errors it may end with.
pub(crate) struct AskOrigin {
    /// The endpoint asked, for the timeout error.
    pub(crate) endpoint: Arc<str>,
    /// The ask's timeout.
    pub(crate) timeout: Duration,
    /// How transport errors read to the asker.
    pub(crate) errors: Arc<dyn AskErrors>,
}

pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
    timer: ArmedTimer,
    /// Where the ask went, for its errors, until it is answered (then
    /// dropped, so that a recycled promise holds nothing of its asker's).
    /// Never held while another lock is taken.
    origin: Mutex<Option<AskOrigin>>,
    /// The RPC, once registered and while the ask waits. Locked after
    /// `state` where both are.
    sent: Mutex<Option<SentRpc>>,
}

/// The side that fills the slot. Cheap to clone; the first `complete` wins.
pub(crate) struct Completer<T>(Arc<Shared<T>>);

impl<T> Clone for Completer<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Shared<T> {
    fn sent(&self) -> std::sync::MutexGuard<'_, Option<SentRpc>> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` of the ask's origin, if it still has one (not yet answered, and made by an ask).
    fn with_origin<O>(&self, f: impl FnOnce(&AskOrigin) -> O) -> Option<O> {
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    /// Fills the slot unless it is already filled; returns whether this call
    /// filled it. The RPC's registration, if any, is let go: answered, it is
    /// no longer outstanding anyway.
    fn complete(&self, result: Result<T, RpcError>) -> bool {
        let filled = self.fill(result);
        if filled {
            let sent = self.sent().take();
            drop(sent);
        }
        filled
    }

    /// Fills the slot unless it is already filled; once filled, the origin
    /// is dropped. Returns whether this call filled it.
    fn fill(&self, result: Result<T, RpcError>) -> bool {
        let filled = self.fill_state(result);
        if filled {
            let origin = self.origin.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(origin);
        }
        filled
    }

    fn fill_state(&self, result: Result<T, RpcError>) -> bool {
        let waker = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *st, State::Taken) {
                State::Pending(w) => {
                    *st = State::Done(result);
                    w
                }
                State::Callback(cb) => {
                    drop(st);
                    self.cancel_timer();
                    cb(result);
                    return true;
                }
                other => {
                    *st = other;
                    return false;
                }
            }
        };
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
        self.cancel_timer();
        true
    }

    fn cancel_timer(&self) {
        self.timer.cancel();
    }
}

impl<T: Send + 'static> Expire for Shared<T> {
    /// Fails the ask, and forgets its RPC first, so that its connection can
    /// take another by the time anyone sees the timeout.
    fn expire(&self, timed_out: bool) {
        let error = self
            .with_origin(|o| o.expiry_error(timed_out))
            .unwrap_or(RpcError::EnvStopped);
        // Taken out of `sent` before forgetting: `remove_rpc_request` locks the
        // connection's table, which `on_registered` holds while it locks
        // `sent`, so `sent` is never held while waiting for the table.
        let sent = self.sent().take();
        if let Some(sent) = sent {
            sent.forget();
        }
        if self.fill(Err(error)) {
            // Registered just as the deadline passed: forgotten too.
            let sent = self.sent().take();
            if let Some(sent) = sent {
                sent.forget();
            }
        }
    }
}

impl<T: RpcMessage> RpcResponseListener for Shared<T> {
    /// Decodes the reply (an owned `T`, deserialized from the archive in the
    /// receive buffer) or maps the transport error, and completes the ask.
    fn on_response(self: Arc<Self>, _request_id: i64, result: Result<Bytes, TransportError>) {
        let outcome = match result {
            Ok(bytes) => T::access(&bytes).and_then(T::deserialize).map_err(reply_error),
            Err(e) => {
                let errors = self.with_origin(|o| o.errors.clone());
                Err(match errors {
                    Some(errors) => errors.transport_error(e),
                    None => RpcError::from_transport(e),
                })
            }
        };
        self.complete(outcome);
    }

    /// Keeps where the RPC is outstanding while the ask waits, for its
    /// timeout; an ask already completed (it timed out while queued in the
    /// Outbox) wants no registration.
    fn on_registered(&self, client: &TransportClient, request_id: i64) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = matches!(*st, State::Pending(_) | State::Callback(_));
        if waiting {
            *self.sent() = Some(SentRpc::new(client, request_id));
        }
        waiting
    }
}

/// Says what an undecodable reply most likely means.
pub(crate) fn reply_error(e: RpcError) -> RpcError {
    match e {
        RpcError::InvalidMessage { type_name, reason } => RpcError::InvalidMessage {
            type_name,
            reason: format!(
                "the reply is not one (is the peer an RpcEnv of this project and version, \
                 and the reference's reply type the endpoint's?): {reason}"
            ),
        },
        other => other,
    }
}

impl<T> Completer<T> {
    /// Fills the slot unless it is already filled (by a reply, a failure or
    /// the timeout); returns whether this call filled it.
    pub(crate) fn complete(&self, result: Result<T, RpcError>) -> bool {
        self.0.complete(result)
    }

    /// Fails the ask at `deadline` with its [`AskOrigin`]'s timeout error
    /// (`EnvStopped` if the scheduler stops first), unless it completes before.
    /// The promise itself is the timer's action: nothing is allocated.
    pub(crate) fn arm_timeout(&self, sched: &Arc<TimeoutScheduler>, deadline: Instant)
    where
        T: Send + 'static,
    {
        let action: Arc<dyn Expire> = self.0.clone();
        self.0.timer.arm(sched, deadline, action, || {
            matches!(
                *self.0.state.lock().unwrap_or_else(|e| e.into_inner()),
                State::Pending(_)
            )
        });
    }

    /// The promise as the slot a local endpoint's reply fills: no allocation.
    pub(crate) fn as_local(&self) -> Arc<dyn Complete<T>>
    where
        T: Send + 'static,
    {
        self.0.clone()
    }

    /// The promise as the listener of the ask's RPC: no allocation.
    pub(crate) fn listener(&self) -> Arc<dyn RpcResponseListener>
    where
        T: RpcMessage,
    {
        self.0.clone()
    }
}

/// The answer to an ask: `.await` it, or call [`wait`](Self::wait) to block.
///
/// Resolves to the reply, or to the first of: the remote failure, the
/// connection loss, the timeout ([`RpcError::AskTimeout`]).
#[must_use = "an ask's answer is only observed through its future"]
pub struct AskFuture<T>(Arc<Shared<T>>);

impl<T> std::fmt::Debug for AskFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AskFuture")
    }
}

/// A new pending slot: the completer and the future.
pub(crate) fn pending<T>() -> (Completer<T>, AskFuture<T>) {
    let shared = Arc::new(Shared::new(None));
    (Completer(shared.clone()), AskFuture(shared))
}

/// A new empty slot for an ask to `origin`: its timeout and transport errors
/// read with it. In a recycled allocation where this thread has a free one
/// (see [`recycled`]): once an answered ask's future and every other
/// reference to its promise are dropped, the next ask for a `T` from this
/// thread reuses it.
pub(crate) fn pending_ask<T: Send + 'static>(origin: AskOrigin) -> (Completer<T>, AskFuture<T>) {
    let shared = recycled(Shared::new(Some(origin)));
    (Completer(shared.clone()), AskFuture(shared))
}

impl<T> Shared<T> {
    fn new(origin: Option<AskOrigin>) -> Self {
        Self {
            state: Mutex::new(State::Pending(None)),
            cond: Condvar::new(),
            timer: ArmedTimer::default(),
            origin: Mutex::new(origin),
            sent: Mutex::new(None),
        }
    }
}

impl<T> AskFuture<T> {
    /// An already failed answer (used when an ask cannot even be sent).
    pub(crate) fn failed(error: RpcError) -> Self {
        let (c, f) = pending();
        c.complete(Err(error));
        f
    }

    /// Runs `f` with the answer on the thread that completes the ask (a
    /// transport event-loop thread for a remote reply, the endpoint's thread
    /// for a local one, the timer thread on timeout), or at once if it is
    /// already there (Scala's `Future.onComplete` on a same-thread executor).
    /// `f` must not block.
    pub fn on_complete(self, f: impl FnOnce(Result<T, RpcError>) + Send + 'static) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *st, State::Taken) {
            State::Done(r) => {
                drop(st);
                f(r);
            }
            State::Pending(_) => *st = State::Callback(Box::new(f)),
            State::Callback(_) | State::Taken => unreachable!("the answer is taken only by this future"),
        }
    }

    /// Blocks the calling thread until the answer is there.
    ///
    /// # Errors
    /// As the future: remote failure, connection lost, timeout, env stopped.
    pub fn wait(self) -> Result<T, RpcError> {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *st, State::Taken) {
                State::Done(r) => return r,
                pending @ (State::Pending(_) | State::Callback(_)) => {
                    *st = pending;
                    st = self.0.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                State::Taken => unreachable!("the answer is taken only by this future"),
            }
        }
    }
}

impl<T> Future for AskFuture<T> {
    type Output = Result<T, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *st, State::Taken) {
            State::Done(r) => Poll::Ready(r),
            State::Pending(_) => {
                *st = State::Pending(Some(cx.waker().clone()));
                Poll::Pending
            }
            State::Callback(_) | State::Taken => panic!("AskFuture polled after it completed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_completion_wins() {
        let (c, f) = pending::<u32>();
        assert!(c.complete(Ok(1)));
        assert!(!c.complete(Ok(2)));
        assert_eq!(f.wait().unwrap(), 1);
    }

    #[test]
    fn on_complete_runs_on_the_completing_thread_or_at_once() {
        let (c, f) = pending::<u32>();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        f.on_complete(move |r| tx.send((r.unwrap(), std::thread::current().id())).unwrap());
        let t = std::thread::spawn(move || {
            c.complete(Ok(5));
            std::thread::current().id()
        });
        let completer_thread = t.join().unwrap();
        assert_eq!(rx.recv().unwrap(), (5, completer_thread));
        let (c, f) = pending::<u32>();
        c.complete(Ok(6));
        f.on_complete(move |r| tx2.send((r.unwrap(), std::thread::current().id())).unwrap());
        assert_eq!(rx.recv().unwrap(), (6, std::thread::current().id()));
    }

    #[test]
    fn wait_blocks_until_completed_from_another_thread() {
        let (c, f) = pending::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            c.complete(Ok(9));
        });
        assert_eq!(f.wait().unwrap(), 9);
        t.join().unwrap();
    }

    struct PlainErrors;
    impl AskErrors for PlainErrors {
        fn transport_error(&self, error: TransportError) -> RpcError {
            RpcError::from_transport(error)
        }
    }

    fn origin(timeout: Duration) -> AskOrigin {
        AskOrigin {
            endpoint: "echo".into(),
            timeout,
            errors: Arc::new(PlainErrors),
        }
    }

    #[test]
    fn a_stopping_scheduler_fails_pending_asks_with_env_stopped() {
        let sched = TimeoutScheduler::start();
        let (c, f) = pending_ask::<u32>(origin(Duration::from_secs(60)));
        c.arm_timeout(&sched, Instant::now() + Duration::from_secs(60));
        sched.stop();
        assert!(matches!(f.wait(), Err(RpcError::EnvStopped)));
    }

    #[test]
    fn the_listener_decodes_a_reply_and_maps_errors() {
        let (c, f) = pending_ask::<u64>(origin(Duration::from_secs(1)));
        c.listener().on_response(0, Ok(42u64.to_bytes().unwrap()));
        assert_eq!(f.wait().unwrap(), 42);
        let (c, f) = pending_ask::<u64>(origin(Duration::from_secs(1)));
        c.listener().on_response(0, Ok(Bytes::from_static(&[1, 2])));
        let err = f.wait().unwrap_err();
        assert!(err.to_string().contains("the reply is not one"), "{err}");
    }

    #[test]
    fn timeout_fails_a_pending_answer_and_is_cancelled_by_completion() {
        let sched = TimeoutScheduler::start();
        let (c, f) = pending_ask::<u32>(origin(Duration::from_millis(10)));
        c.arm_timeout(&sched, Instant::now() + Duration::from_millis(10));
        match f.wait() {
            Err(RpcError::AskTimeout {
                endpoint, timeout_ms, ..
            }) => assert_eq!((endpoint.as_str(), timeout_ms), ("echo", 10)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let (c, f) = pending_ask::<u32>(origin(Duration::from_secs(60)));
        c.arm_timeout(&sched, Instant::now() + Duration::from_secs(60));
        c.complete(Ok(3));
        assert_eq!(sched.len(), 0, "completion cancels the timer");
        assert_eq!(f.wait().unwrap(), 3);
        sched.stop();
    }

    #[test]
    fn an_answered_ask_s_promise_holds_no_origin_and_is_reused() {
        let errors: Arc<dyn AskErrors> = Arc::new(PlainErrors);
        let origin = || AskOrigin {
            endpoint: "endpoint".into(),
            timeout: Duration::from_secs(1),
            errors: errors.clone(),
        };
        let (c, f) = pending_ask::<u64>(origin());
        let at = Arc::as_ptr(&f.0);
        assert_eq!(Arc::strong_count(&errors), 2, "the waiting ask holds its origin");
        assert!(c.complete(Ok(1)));
        assert_eq!(
            Arc::strong_count(&errors),
            1,
            "the answered ask dropped its origin"
        );
        assert_eq!(f.wait().unwrap(), 1);
        drop(c);
        let (c, f) = pending_ask::<u64>(origin());
        assert_eq!(
            Arc::as_ptr(&f.0),
            at,
            "the next ask reuses the answered one's allocation"
        );
        assert!(c.complete(Ok(2)), "pending again");
        assert_eq!(f.wait().unwrap(), 2);
    }
}
