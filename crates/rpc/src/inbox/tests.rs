//! Unit tests of the Inbox: scheduling, tokens, inline processing.

use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

impl RpcEndpoint for Counter {
    type Message = u32;
    type Reply = u32;
    fn receive(&mut self, _msg: Msg<'_, u32>, _sender: &RpcSender) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn placement(scheduler: LoopSender, parallelism: usize, inline: bool) -> Placement {
    Placement {
        scheduler,
        parallelism,
        dedicated: false,
        inline,
    }
}

fn sender() -> RpcSender {
    RpcSender {
        address: None,
        connection: None,
        env: Weak::new(),
    }
}

/// Runs what the loop queue holds, as a MessageLoop thread would, until it is empty.
fn drain(rx: &crossbeam_channel::Receiver<LoopItem>) -> usize {
    let mut items = 0;
    while let Ok(item) = rx.try_recv() {
        items += 1;
        if let LoopItem::Inbox(inbox) = item {
            inbox.process();
        }
    }
    items
}

#[test]
fn a_burst_to_a_concurrent_endpoint_queues_at_most_parallelism_items() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let count = Arc::new(AtomicUsize::new(0));
    let cloner: fn(&Counter) -> Counter = Counter::clone;
    let inbox = Inbox::start(
        "e".into(),
        Counter(count.clone()),
        Some(cloner),
        placement(tx, 2, false),
        InboxLimits::fail(1000),
    );
    assert_eq!(drain(&rx), 1, "OnStart is queued once");
    for i in 0..100 {
        inbox
            .post(InboxMessage::OneWay {
                content: Content::Local(i),
                sender: sender(),
            })
            .unwrap();
    }
    assert_eq!(rx.len(), 2, "100 messages wake at most 2 threads");
    drain(&rx);
    assert_eq!(count.load(Ordering::Relaxed), 100, "every message was processed");
    inbox
        .post(InboxMessage::OneWay {
            content: Content::Local(0),
            sender: sender(),
        })
        .unwrap();
    assert_eq!(rx.len(), 1, "an idle inbox is queued again");
    drain(&rx);
    assert_eq!(count.load(Ordering::Relaxed), 101);
}

#[test]
fn a_thread_safe_endpoint_is_queued_once_per_burst() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let count = Arc::new(AtomicUsize::new(0));
    let inbox = Inbox::start(
        "e".into(),
        Counter(count.clone()),
        None,
        placement(tx, 4, false),
        InboxLimits::fail(1000),
    );
    drain(&rx);
    for i in 0..50 {
        inbox
            .post(InboxMessage::OneWay {
                content: Content::Local(i),
                sender: sender(),
            })
            .unwrap();
    }
    assert_eq!(rx.len(), 1);
    drain(&rx);
    assert_eq!(count.load(Ordering::Relaxed), 50);
}

/// Records the thread each message was processed on.
struct Where(Arc<Mutex<Vec<std::thread::ThreadId>>>);

impl RpcEndpoint for Where {
    type Message = u32;
    type Reply = u32;
    fn receive(&mut self, _msg: Msg<'_, u32>, _sender: &RpcSender) {
        self.0.lock().unwrap().push(std::thread::current().id());
    }
}

#[test]
fn an_inline_inbox_is_processed_by_the_posting_thread() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inbox = Inbox::start(
        "e".into(),
        Where(seen.clone()),
        None,
        placement(tx, 2, true),
        InboxLimits::fail(1000),
    );
    InboxHandle::process(inbox.as_ref()); // OnStart, as Dispatcher::register does
    let post = |i| {
        inbox
            .post(InboxMessage::OneWay {
                content: Content::Local(i),
                sender: sender(),
            })
            .unwrap()
    };
    post(1);
    let inbox2 = inbox.clone();
    let other = std::thread::spawn(move || {
        inbox2
            .post(InboxMessage::OneWay {
                content: Content::Local(2),
                sender: sender(),
            })
            .unwrap();
        std::thread::current().id()
    })
    .join()
    .unwrap();
    assert_eq!(rx.len(), 0, "nothing goes to a MessageLoop");
    assert_eq!(*seen.lock().unwrap(), vec![std::thread::current().id(), other]);
    assert!(inbox.stop());
    assert_eq!(rx.len(), 0);
}
