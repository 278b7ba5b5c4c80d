//! `RpcError`: what can go wrong in the RPC layer, with what to do about it.

use std::time::Duration;

use transport::TransportError;

/// Errors of the RPC layer (Spark's `RpcEnvStoppedException`,
/// `RpcTimeoutException`, `SparkException("Could not find ...")`, ...).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No endpoint of that name is registered at that address: from
    /// `setup_endpoint_ref` (the verifier's answer, Spark's
    /// `RpcEndpointNotFoundException`), and from an ask through a reference
    /// that was not checked (`endpoint_ref`), local or remote (for a remote
    /// one the remote RpcEnv's refusal, typed here as for a local reference).
    #[error(
        "no endpoint named `{name}` at {address}; check the name, or that the endpoint was set up before asking"
    )]
    EndpointNotFound {
        /// The endpoint name asked for.
        name: String,
        /// Where it was looked up.
        address: String,
    },
    /// An endpoint of that name is already registered in this RpcEnv.
    #[error("an endpoint named `{name}` is already registered; stop it first or pick another name")]
    EndpointAlreadyExists {
        /// The name.
        name: String,
    },
    /// The endpoint has been stopped and takes no more messages; also what an
    /// ask it held unanswered fails with when it stopped (`RpcEnv::stop`, or
    /// its RpcEnv shut down), for a remote asker too.
    #[error(
        "endpoint `{name}` is stopped and answers nothing more (stopped, or its RpcEnv shut down); set up a new one to send to"
    )]
    EndpointStopped {
        /// The endpoint name.
        name: String,
    },
    /// The endpoint's inbox holds `capacity` messages already: the endpoint is
    /// not keeping up. For a remote ask this arrives from the remote RpcEnv.
    #[error(
        "the inbox of endpoint `{endpoint}` is full ({capacity} messages waiting); slow down, \
         or raise `inbox_capacity` (RPC_INBOX_CAPACITY) on its RpcEnv"
    )]
    InboxFull {
        /// The endpoint name.
        endpoint: String,
        /// The configured capacity.
        capacity: usize,
    },
    /// A local send or ask to an endpoint that waits when full
    /// ([`InboxFullPolicy::Wait`](crate::InboxFullPolicy::Wait)) waited the
    /// env's ask timeout for room, and the inbox stayed full.
    #[error(
        "the inbox of endpoint `{endpoint}` stayed full ({capacity} messages waiting) for the {waited_ms} ms \
         this send waited for room (its policy is to wait, up to `ask_timeout_ms`); the endpoint is not \
         keeping up: slow down, or raise `inbox_capacity` (RPC_INBOX_CAPACITY) or `ask_timeout_ms`"
    )]
    InboxFullAfterWaiting {
        /// The endpoint name.
        endpoint: String,
        /// Its capacity, in messages.
        capacity: usize,
        /// How long the sender waited, in milliseconds.
        waited_ms: u64,
    },
    /// An endpoint's own handler sent to its inbox while it was full, under
    /// [`InboxFullPolicy::Wait`](crate::InboxFullPolicy::Wait): waiting would
    /// never end, since the thread running the handler is the one that empties
    /// the inbox, so the send fails at once.
    #[error(
        "endpoint `{endpoint}` sent to its own inbox from its handler while the inbox was full ({capacity} \
         messages waiting); waiting for room would deadlock, since this thread is the one that empties it: \
         send from another thread, or raise its `inbox_capacity`"
    )]
    InboxFullInOwnHandler {
        /// The endpoint name.
        endpoint: String,
        /// Its capacity, in messages.
        capacity: usize,
    },
    /// The RpcEnv is shut down.
    #[error("the RpcEnv is stopped; create a new one")]
    EnvStopped,
    /// An ask got no answer in time.
    #[error(
        "ask to `{endpoint}` got no answer within {timeout_ms} ms: the endpoint is slow or stuck (look at its \
         backlog), or the timeout is too short: raise `ask_timeout_ms` (RPC_ASK_TIMEOUT_MS) for `ask`, `ask_sync` \
         and `ask_with`, or give `ask_with_timeout` a longer one"
    )]
    AskTimeout {
        /// The endpoint asked.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The same, in milliseconds: the RpcEnv's `ask_timeout_ms`, or what
        /// `ask_with_timeout` was given.
        timeout_ms: u64,
    },
    /// The remote endpoint failed the call (it called `send_failure`, returned
    /// an error, or panicked), or the remote RpcEnv refused the message.
    #[error("remote endpoint failed: {message}")]
    RemoteFailure {
        /// The message the remote side sent.
        message: String,
    },
    /// The connection the message travelled on was lost before an answer came
    /// (Spark: the `IOException` of `TransportResponseHandler.channelInactive`).
    /// An ask held by a remote endpoint whose RpcEnv shuts down gets
    /// `EndpointStopped` instead: the shutdown writes what is queued on a
    /// connection before closing it, for up to `transport::CLOSE_GRACE`; only
    /// an asker that does not read its answers for that long sees this.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The remote address.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Connecting to the remote RpcEnv failed.
    #[error("cannot reach {address}: {source}")]
    ConnectFailed {
        /// The address.
        address: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// The connection to the remote RpcEnv was refused because authentication
    /// failed: the two ends do not share the same `auth_secret`.
    #[error("cannot talk to {address}: {source}")]
    AuthenticationFailed {
        /// The remote address.
        address: String,
        /// The transport's error, saying what failed.
        #[source]
        source: TransportError,
    },
    /// Another transport error.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A message could not be serialized.
    #[error("cannot serialize a message of type {type_name}: {reason}")]
    Serialize {
        /// The Rust type.
        type_name: &'static str,
        /// rkyv's error.
        reason: String,
    },
    /// Received bytes are not a valid archived message of the expected type.
    #[error("invalid message for {type_name}: {reason}")]
    InvalidMessage {
        /// The Rust type expected.
        type_name: &'static str,
        /// What bytecheck found, or what was malformed.
        reason: String,
    },
    /// An address string or host is invalid.
    #[error("invalid address `{address}`: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] transport::ConfError),
    /// A reference's message type is not the one of the endpoint it names: at
    /// once for a local reference; for a remote one, the remote RpcEnv's
    /// refusal of the message, typed here. A reply type that differs is not
    /// detected (the reply then fails to read as `R`, a `RemoteFailure` or
    /// transport error). Spark has no such check: a message the endpoint does
    /// not handle fails in its `Inbox` as `SparkException("Unsupported message ...")`.
    #[error("endpoint `{name}` takes messages of another type than this reference's {type_name}")]
    TypeMismatch {
        /// The endpoint name.
        name: String,
        /// The reference's message type.
        type_name: &'static str,
    },
    /// A local endpoint's handler panicked while processing an ask.
    #[error("endpoint `{name}` panicked: {message}")]
    EndpointPanicked {
        /// The endpoint name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The endpoint dropped the call context (`RpcCallContext`) without
    /// replying or failing it; for a remote asker too. Spark has no such
    /// answer: its asker waits until the ask times out.
    #[error("endpoint `{name}` dropped the call without replying")]
    NoReply {
        /// The endpoint name.
        name: String,
    },
}

impl RpcError {
    /// Maps a transport error seen by an RPC into the error a user acts on.
    pub(crate) fn from_transport(e: TransportError) -> Self {
        match e {
            e @ TransportError::AuthenticationFailed { peer, .. } => Self::AuthenticationFailed {
                address: peer.to_string(),
                source: e,
            },
            TransportError::ConnectionClosed { peer, reason } => Self::ConnectionLost {
                peer: peer.to_string(),
                reason,
            },
            // A peer that requires authentication refuses an unauthenticated
            // client's first request with an RpcFailure saying so.
            TransportError::RemoteFailure { message } if message.starts_with("authentication failed") => {
                Self::AuthenticationFailed {
                    address: "the remote RpcEnv".into(),
                    source: TransportError::RemoteFailure { message },
                }
            }
            TransportError::RemoteFailure { message } => {
                Self::parse_remote(&message).unwrap_or(Self::RemoteFailure { message })
            }
            other => Self::Transport(other),
        }
    }

    /// Reads back the typed errors a remote RpcEnv sends as the text of an
    /// RpcFailure, so that a remote ask fails with the same variant as a local one.
    /// Only a text that is exactly such an error's is typed (anything else,
    /// or more, stays a [`RpcError::RemoteFailure`] with all of it); a name is
    /// cut at the last delimiter, since an endpoint name may hold any text and
    /// the rest (an address, a count, fixed words) holds no delimiter.
    fn parse_remote(message: &str) -> Option<Self> {
        Self::parse_inbox_full(message)
            .or_else(|| Self::parse_endpoint_not_found(message))
            .or_else(|| Self::parse_endpoint_named(message))
            .filter(|typed| typed.to_string() == message)
    }

    /// Reads an [`RpcError::EndpointStopped`] or [`RpcError::NoReply`] back
    /// from its text, as a remote RpcEnv sent it.
    fn parse_endpoint_named(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("endpoint `")?;
        if let Some((name, _)) = rest.rsplit_once("` is stopped and answers nothing more") {
            let stopped = Self::EndpointStopped {
                name: name.to_string(),
            };
            if stopped.to_string() == message {
                return Some(stopped);
            }
        }
        let (name, tail) = rest.rsplit_once("` dropped the call without replying")?;
        tail.is_empty().then(|| Self::NoReply {
            name: name.to_string(),
        })
    }

    /// Reads an [`RpcError::EndpointNotFound`] back from its text, as a remote RpcEnv sent it.
    fn parse_endpoint_not_found(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("no endpoint named `")?;
        let (rest, _) = rest.rsplit_once("; check the name")?;
        let (name, address) = rest.rsplit_once("` at ")?;
        Some(Self::EndpointNotFound {
            name: name.to_string(),
            address: address.to_string(),
        })
    }

    /// Reads an [`RpcError::InboxFull`] back from its text, as a remote RpcEnv sent it.
    fn parse_inbox_full(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("the inbox of endpoint `")?;
        let (endpoint, rest) = rest.rsplit_once("` is full (")?;
        let (capacity, _) = rest.split_once(" messages waiting)")?;
        Some(Self::InboxFull {
            endpoint: endpoint.to_string(),
            capacity: capacity.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_survive_the_wire() {
        let e = RpcError::InboxFull {
            endpoint: "w`x".into(),
            capacity: 12,
        };
        let back = RpcError::from_transport(TransportError::RemoteFailure {
            message: e.to_string(),
        });
        assert!(
            matches!(&back, RpcError::InboxFull { endpoint, capacity: 12 } if endpoint == "w`x"),
            "{back:?}"
        );
        let e = RpcError::EndpointNotFound {
            name: "kv-typo".into(),
            address: "127.0.0.1:7077".into(),
        };
        let back = RpcError::from_transport(TransportError::RemoteFailure {
            message: e.to_string(),
        });
        assert!(
            matches!(&back, RpcError::EndpointNotFound { name, address } if name == "kv-typo" && address == "127.0.0.1:7077"),
            "{back:?}"
        );
        for e in [
            RpcError::EndpointStopped { name: "kv".into() },
            RpcError::NoReply { name: "kv".into() },
        ] {
            let back = RpcError::from_transport(TransportError::RemoteFailure {
                message: e.to_string(),
            });
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{back:?}"
            );
        }
        let other = RpcError::from_transport(TransportError::RemoteFailure {
            message: "boom".into(),
        });
        assert!(matches!(other, RpcError::RemoteFailure { .. }));
    }

    /// The typed errors whose text names an endpoint, for `name`.
    fn named(name: &str) -> [RpcError; 4] {
        [
            RpcError::EndpointNotFound {
                name: name.into(),
                address: "127.0.0.1:7077".into(),
            },
            RpcError::EndpointStopped { name: name.into() },
            RpcError::NoReply { name: name.into() },
            RpcError::InboxFull {
                endpoint: name.into(),
                capacity: 12,
            },
        ]
    }

    /// What a remote asker makes of `message` sent as an RpcFailure.
    fn read_back(message: String) -> RpcError {
        RpcError::from_transport(TransportError::RemoteFailure { message })
    }

    /// A peer names its endpoints as it likes: a name holding the texts'
    /// own delimiters must come back whole, not cut at the first delimiter.
    #[test]
    fn names_holding_the_delimiters_come_back_whole() {
        for name in [
            "a` at b",
            "a` at b; check the name",
            "x` is stopped and answers nothing more",
            "y` dropped the call without replying",
            "z` is full (3 messages waiting)",
        ] {
            for e in named(name) {
                let back = read_back(e.to_string());
                assert_eq!(format!("{back:?}"), format!("{e:?}"));
            }
        }
    }

    /// Text that is not exactly one of the typed errors stays a RemoteFailure
    /// with all of it, rather than typed with the rest lost.
    #[test]
    fn other_text_is_not_typed() {
        for message in [
            "endpoint `kv` is stopped and answers nothing more, said the custom handler",
            "no endpoint named `kv` at 1.2.3.4:5; check the name (custom text follows)",
            "the inbox of endpoint `kv` is full (12 messages waiting) is what I claim",
        ] {
            let back = read_back(message.into());
            assert!(
                matches!(&back, RpcError::RemoteFailure { message: m } if m == message),
                "{message:?} -> {back:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever a peer sends: no panic, and a typed error reads exactly as the text sent.
        #[test]
        fn any_failure_text_reads_back_as_sent(text in ".{0,40}", name in ".{0,12}") {
            let back = read_back(text.clone());
            proptest::prop_assert!(matches!(back, RpcError::RemoteFailure { .. }) || back.to_string() == text, "{:?}", back);
            for e in named(&name) {
                let back = read_back(e.to_string());
                proptest::prop_assert_eq!(back.to_string(), e.to_string());
                proptest::prop_assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
            }
        }
    }
}
