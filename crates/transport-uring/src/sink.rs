//! The `FrameSink` of a connection: what `TransportClient` sends through, from any thread.
//!
//! `send` appends the frame to the connection's queue under a short lock. The
//! first frame after the loop last took the queue also posts one `Flush`
//! command to the connection's loop (which wakes it if parked); frames queued
//! after that ride along, so a burst costs one command and at most one wake-up.
//! `wake_reader` (the last [`ReadPause`](transport::ReadPause) of the
//! connection dropped) posts a `Flush` too, which re-arms a paused recv.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use transport::{ConnectionId, EncodedFrame, FrameSink, TransportError};

use crate::group::LoopHandle;
use crate::ring_loop::Command;

#[derive(Default)]
pub(crate) struct SinkState {
    /// Frames queued and not yet taken by the loop.
    pub(crate) queue: VecDeque<EncodedFrame>,
    /// Whether a `Flush` is posted and the loop has not taken the queue since.
    pub(crate) scheduled: bool,
    /// `close_after_flush` was called: the loop closes once the queue is written.
    pub(crate) close_when_flushed: bool,
    closed: bool,
    reason: Option<String>,
}

/// The state shared between a connection's senders and its loop.
pub(crate) struct SinkShared {
    state: Mutex<SinkState>,
    active: AtomicBool,
    peer: SocketAddr,
    key: usize,
    id: ConnectionId,
    /// Weak: a client handle kept after shutdown must not keep the loop's eventfd open.
    home: Weak<LoopHandle>,
}

impl SinkShared {
    /// The sink of connection `key`/`id`, served by loop `home`.
    pub(crate) fn new(peer: SocketAddr, key: usize, id: ConnectionId, home: Weak<LoopHandle>) -> Self {
        Self {
            state: Mutex::new(SinkState::default()),
            active: AtomicBool::new(true),
            peer,
            key,
            id,
            home,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses further sends, drops queued frames, and records why (the first
    /// reason wins); returns the reason recorded.
    pub(crate) fn mark_closed(&self, reason: &str) -> String {
        let mut st = self.state();
        if !st.closed {
            st.closed = true;
            st.reason = Some(reason.to_string());
        }
        let dropped = st.queue.len();
        if dropped > 0 {
            // RPCs among them fail with ConnectionClosed; one-way messages are lost (at most once).
            tracing::warn!(peer = %self.peer, dropped, %reason, "frames queued on a closing connection were dropped unwritten");
        }
        st.queue.clear();
        self.active.store(false, Ordering::Release);
        st.reason.clone().unwrap_or_default()
    }
}

/// The `FrameSink` handed to `TransportClient`.
pub(crate) struct SinkHandle(pub(crate) Arc<SinkShared>);

impl FrameSink for SinkHandle {
    fn send(&self, frame: EncodedFrame) -> Result<(), TransportError> {
        let sink = &*self.0;
        let mut st = sink.state();
        if st.closed {
            return Err(TransportError::ConnectionClosed {
                peer: sink.peer,
                reason: st.reason.clone().unwrap_or_else(|| "closed".into()),
            });
        }
        st.queue.push_back(frame);
        let schedule = !std::mem::replace(&mut st.scheduled, true);
        drop(st);
        if schedule && let Some(home) = sink.home.upgrade() {
            home.send(Command::Flush(sink.key, sink.id));
        }
        Ok(())
    }

    fn close(&self) {
        let sink = &*self.0;
        if sink.active.load(Ordering::Acquire) {
            sink.mark_closed("closed locally");
            if let Some(home) = sink.home.upgrade() {
                home.send(Command::Close(sink.key, sink.id));
            }
        }
    }

    fn close_after_flush(&self) {
        let sink = &*self.0;
        let mut st = sink.state();
        st.close_when_flushed = true;
        let schedule = !std::mem::replace(&mut st.scheduled, true);
        drop(st);
        if schedule && let Some(home) = sink.home.upgrade() {
            home.send(Command::Flush(sink.key, sink.id));
        }
    }

    fn is_active(&self) -> bool {
        self.0.active.load(Ordering::Acquire)
    }

    fn wake_reader(&self) {
        // A `Flush` runs `arm_recv` on the loop, which re-checks the limits
        // and resumes a paused recv (held bytes first). Posted whether or not
        // one is scheduled: one already taken may have checked before the pause ended.
        let sink = &*self.0;
        if sink.active.load(Ordering::Acquire)
            && let Some(home) = sink.home.upgrade()
        {
            home.send(Command::Flush(sink.key, sink.id));
        }
    }
}
