//! `WorkerStatus`: what a worker's endpoint tells the process that runs it
//! (registered or not, how many times, why it gave up), with waiting.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, StandaloneError};

/// Why a worker gave up; it cannot go on without a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerFailure {
    /// The master refused the registration.
    Refused {
        /// The master's reason.
        reason: String,
    },
    /// Registration did not succeed within `register_timeout_ms`.
    TimedOut {
        /// The master's address.
        master: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last attempt's error.
        last_error: String,
    },
}

impl WorkerFailure {
    /// The error to report for worker `id`.
    pub fn to_error(&self, id: &str) -> StandaloneError {
        match self.clone() {
            Self::Refused { reason } => StandaloneError::RegistrationRefused {
                id: id.into(),
                reason,
            },
            Self::TimedOut {
                master,
                attempts,
                elapsed,
                last_error,
            } => StandaloneError::RegistrationTimedOut {
                id: id.into(),
                master,
                attempts,
                elapsed,
                last_error,
            },
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    registered: bool,
    registrations: u64,
    failure: Option<WorkerFailure>,
    stopped: bool,
}

/// The status a worker endpoint publishes; shared with its [`Worker`](crate::worker::Worker) handle.
#[derive(Debug, Default)]
pub struct WorkerStatus {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl WorkerStatus {
    pub(crate) fn set_registered(&self, registered: bool) {
        let mut st = self.inner.lock();
        st.registered = registered;
        if registered {
            st.registrations += 1;
        }
        drop(st);
        self.changed.notify_all();
    }

    pub(crate) fn fail(&self, failure: WorkerFailure) {
        let mut st = self.inner.lock();
        st.registered = false;
        st.failure = Some(failure);
        drop(st);
        self.changed.notify_all();
    }

    pub(crate) fn set_stopped(&self) {
        self.inner.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Whether the worker is registered with the master now.
    pub fn is_registered(&self) -> bool {
        self.inner.lock().registered
    }

    /// How many times it has registered (1 after the first, more after re-registrations).
    pub fn registrations(&self) -> u64 {
        self.inner.lock().registrations
    }

    /// Why it gave up, if it did.
    pub fn failure(&self) -> Option<WorkerFailure> {
        self.inner.lock().failure.clone()
    }

    /// Whether it was told to stop.
    pub fn is_stopped(&self) -> bool {
        self.inner.lock().stopped
    }

    /// Blocks until it is registered and has registered at least `count`
    /// times, it gave up, or `timeout` passed.
    ///
    /// # Errors
    /// The worker's failure (for worker `id`), or [`StandaloneError::Timeout`].
    pub fn wait_registrations(&self, id: &str, count: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if let Some(f) = &st.failure {
                return Err(f.to_error(id));
            }
            if st.registered && st.registrations >= count {
                return Ok(());
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return Err(StandaloneError::Timeout {
                    what: format!("worker `{id}` to register (registration #{count})"),
                    waited: timeout,
                });
            }
        }
    }

    /// Blocks until the worker fails, is stopped, or `timeout` passes; returns the failure if any.
    pub fn wait_failure_or_stop(&self, timeout: Duration) -> Option<WorkerFailure> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        while st.failure.is_none() && !st.stopped {
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.failure.clone()
    }
}
