//! `MessageLoop`: threads that take ready inboxes from a receivers queue and
//! process them (Spark's `SharedMessageLoop` and `DedicatedMessageLoop`),
//! stopped by a `PoisonPill` that each thread passes on before it exits.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::inbox::InboxHandle;

/// What a loop's queue carries.
pub(crate) enum LoopItem {
    /// An inbox with messages to process.
    Inbox(Arc<dyn InboxHandle>),
    /// Stop: each thread re-queues it for the next and exits.
    PoisonPill,
}

/// The sending side of a loop's receivers queue.
pub(crate) type LoopSender = Sender<LoopItem>;

/// A pool of threads serving one receivers queue.
pub(crate) struct MessageLoop {
    sender: LoopSender,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// How many threads serve the queue (at least 1).
    parallelism: usize,
}

impl MessageLoop {
    /// Starts `threads` threads named `{name}-{i}`.
    pub(crate) fn start(name: &str, threads: usize) -> std::io::Result<Arc<Self>> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let (tx, rx) = (sender.clone(), receiver.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run(&tx, &rx))?,
            );
        }
        Ok(Arc::new(Self {
            sender,
            parallelism: handles.len(),
            threads: Mutex::new(handles),
        }))
    }

    /// How many threads serve the queue: the most that can process one
    /// concurrent endpoint at once.
    pub(crate) fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// The queue to schedule inboxes on.
    pub(crate) fn sender(&self) -> LoopSender {
        self.sender.clone()
    }

    /// Queues the poison pill and joins the threads (all but the caller's own).
    pub(crate) fn stop(&self) {
        let _ = self.sender.send(LoopItem::PoisonPill);
        self.join();
    }

    /// Joins the threads once they have taken the poison pill.
    pub(crate) fn join(&self) {
        let me = std::thread::current().id();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn run(tx: &LoopSender, rx: &Receiver<LoopItem>) {
    while let Ok(item) = rx.recv() {
        match item {
            LoopItem::Inbox(inbox) => inbox.process(),
            LoopItem::PoisonPill => {
                let _ = tx.send(LoopItem::PoisonPill);
                return;
            }
        }
    }
}
