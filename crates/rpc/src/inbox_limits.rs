//! What an endpoint's inbox holds at most, and what a sender meets when it is
//! full: the env-wide default (`inbox_capacity`, `inbox_full_policy` in
//! [`RpcEnvConfig`](crate::RpcEnvConfig)) and the per-endpoint override
//! ([`EndpointOptions`], given to
//! [`RpcEnv::setup_endpoint_with`](crate::RpcEnv::setup_endpoint_with) and its
//! siblings). Spark's inboxes are unbounded (`Inbox.messages` is a plain
//! `LinkedList`); these bounds are this project's own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a message to an endpoint whose inbox already holds its capacity
/// meets. Network events and `OnStop` are never held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InboxFullPolicy {
    /// Refuse it: a local `send` or `ask` fails with
    /// [`RpcError::InboxFull`](crate::RpcError::InboxFull); a remote ask gets
    /// an RpcFailure naming it (the asker sees `InboxFull`); a remote one-way
    /// message is dropped and logged, the server having no one to answer.
    /// Config text `fail`.
    #[default]
    Fail,
    /// Hold the sender back until there is room. A local `send` or `ask`
    /// blocks its thread until the inbox holds fewer than its capacity, for at
    /// most the env's `ask_timeout_ms`, then fails with
    /// [`RpcError::InboxFullAfterWaiting`](crate::RpcError::InboxFullAfterWaiting);
    /// from the endpoint's own handler it fails at once with
    /// [`RpcError::InboxFullInOwnHandler`](crate::RpcError::InboxFullInOwnHandler)
    /// (it would wait for itself). An ask's wait counts against its own
    /// timeout. Do not send to such an endpoint from a transport event-loop
    /// thread (an `on_complete` or `ask_with` callback), which must never
    /// block; a MessageLoop thread (another endpoint's handler) is held while
    /// it waits.
    ///
    /// A remote message is accepted, and reading from the connection it came
    /// on stops until the inbox is below its capacity again, so the sender
    /// gets TCP backpressure: nothing is refused or lost, and each
    /// connection's order is kept. The inbox then holds at most its capacity
    /// plus the frames of one read per such connection (and network events,
    /// never held back). Everything else on a paused connection waits too,
    /// answers to this process's asks included. Config text `wait`.
    Wait,
}

impl InboxFullPolicy {
    /// The config text: `fail` or `wait`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Wait => "wait",
        }
    }
}

impl fmt::Display for InboxFullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text of an [`InboxFullPolicy`] was neither `fail` nor `wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an inbox-full policy; use `fail` or `wait`")]
pub struct ParsePolicyError(pub String);

impl FromStr for InboxFullPolicy {
    type Err = ParsePolicyError;

    /// `fail` or `wait`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(Self::Fail),
            "wait" => Ok(Self::Wait),
            _ => Err(ParsePolicyError(s.to_string())),
        }
    }
}

/// Per-endpoint settings given at setup; each `None` takes the RpcEnv's
/// default from its [`RpcEnvConfig`](crate::RpcEnvConfig).
///
/// ```
/// use rpc::{EndpointOptions, InboxFullPolicy};
/// let slow_consumer = EndpointOptions::new()
///     .inbox_capacity(64)
///     .when_full(InboxFullPolicy::Wait);
/// assert_eq!(slow_consumer.inbox_capacity, Some(64));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointOptions {
    /// Messages the endpoint's inbox holds before [`when_full`](Self::when_full)
    /// applies, at least 1; `None`: `inbox_capacity` of the config.
    pub inbox_capacity: Option<usize>,
    /// What a sender meets when the inbox is full; `None`: `inbox_full_policy`
    /// of the config.
    pub when_full: Option<InboxFullPolicy>,
}

impl EndpointOptions {
    /// The RpcEnv's defaults for everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`inbox_capacity`](Self::inbox_capacity) (messages, at least 1).
    pub fn inbox_capacity(mut self, messages: usize) -> Self {
        self.inbox_capacity = Some(messages);
        self
    }

    /// Sets [`when_full`](Self::when_full).
    pub fn when_full(mut self, policy: InboxFullPolicy) -> Self {
        self.when_full = Some(policy);
        self
    }
}

/// A snapshot of one endpoint's inbox, from
/// [`RpcEnv::inbox_stats`](crate::RpcEnv::inbox_stats): how full it is and
/// how often it held senders back. Taken under the inbox's lock: cheap, but
/// not for a hot loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages queued now, not yet taken by a MessageLoop thread (`OnStart`,
    /// `OnStop` and network events included).
    pub len: usize,
    /// The most `len` has been since the endpoint was set up.
    pub peak_len: usize,
    /// The inbox's capacity, in messages.
    pub capacity: usize,
    /// Its policy when full.
    pub when_full: InboxFullPolicy,
    /// Read pauses held now on connections whose messages arrived while the
    /// inbox was full ([`InboxFullPolicy::Wait`]); one per such message.
    pub read_pauses_held: usize,
    /// Read pauses taken since the endpoint was set up (a count).
    pub read_pauses_taken: u64,
    /// Local senders blocked now, waiting for room.
    pub waiting_senders: usize,
}

/// An inbox's resolved bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InboxLimits {
    /// Messages, at least 1.
    pub(crate) capacity: usize,
    pub(crate) when_full: InboxFullPolicy,
    /// The longest a local sender waits for room (the env's ask timeout).
    pub(crate) wait_timeout: Duration,
}

impl InboxLimits {
    /// Refuses past `capacity` messages (at least 1).
    #[cfg(test)]
    pub(crate) fn fail(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            when_full: InboxFullPolicy::Fail,
            wait_timeout: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_text_round_trips_and_bad_text_says_what_is_allowed() {
        for p in [InboxFullPolicy::Fail, InboxFullPolicy::Wait] {
            assert_eq!(p.to_string().parse::<InboxFullPolicy>(), Ok(p));
        }
        assert_eq!(" WAIT ".parse::<InboxFullPolicy>(), Ok(InboxFullPolicy::Wait));
        let e = "block".parse::<InboxFullPolicy>().unwrap_err();
        assert!(e.to_string().contains("`fail` or `wait`"), "{e}");
        assert_eq!(InboxFullPolicy::default(), InboxFullPolicy::Fail);
    }

    #[test]
    fn options_default_to_the_env() {
        assert_eq!(EndpointOptions::new(), EndpointOptions::default());
        let o = EndpointOptions::new().when_full(InboxFullPolicy::Wait);
        assert_eq!(
            (o.inbox_capacity, o.when_full),
            (None, Some(InboxFullPolicy::Wait))
        );
    }
}
