//! [`TransportHandler::read_complete`](crate::TransportHandler::read_complete):
//! called after the frames of each read were delivered (Netty's
//! `channelReadComplete`), which the RPC layer uses to acknowledge once per
//! read rather than once per frame.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{TIMEOUT, any_local_port, raw_connect, shutdown, test_conf, wire};
use crate::{EncodedFrame, TransportClient, TransportHandler};

/// Counts one-way frames and, at each `read_complete`, how many had arrived.
#[derive(Default)]
struct ReadCounter {
    frames: AtomicUsize,
    completes: Mutex<Vec<usize>>,
}

impl TransportHandler for ReadCounter {
    fn receive_rpc(&self, _: &TransportClient, _: i64, _: Bytes) {}
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {
        self.frames.fetch_add(1, Ordering::SeqCst);
    }
    fn read_complete(&self, _: &TransportClient) {
        let n = self.frames.load(Ordering::SeqCst);
        self.completes.lock().unwrap_or_else(|e| e.into_inner()).push(n);
    }
}

/// Ten one-way frames in one write, then one more: `read_complete` follows
/// the frames it closes (never runs ahead of them), at most once per frame
/// here, and comes after the last frame.
pub fn read_complete_follows_each_read(factory: &TransportFactory) {
    let t = factory(test_conf());
    let counter = Arc::new(ReadCounter::default());
    let server = t.bind(any_local_port(), counter.clone()).expect("bind");
    let mut raw = raw_connect(server.local_addr());
    let frame = |i: u8| wire(&EncodedFrame::one_way(Bytes::from(vec![i; 32])).expect("encode"));
    let ten: Vec<u8> = (0..10).flat_map(frame).collect();
    raw.write_all(&ten).expect("write ten frames");
    let last_is = |n: usize| {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let done = counter.completes.lock().unwrap().last() == Some(&n);
            if done {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    };
    assert!(
        last_is(10),
        "read_complete after the tenth frame: {:?}",
        counter.completes.lock().unwrap()
    );
    raw.write_all(&frame(10)).expect("write one more");
    assert!(
        last_is(11),
        "read_complete after the eleventh: {:?}",
        counter.completes.lock().unwrap()
    );
    let completes = counter.completes.lock().unwrap().clone();
    assert!(completes.windows(2).all(|w| w[0] <= w[1]), "{completes:?}");
    assert!(
        completes.len() <= 11 + 1,
        "at most about one per read: {completes:?}"
    );
    drop(raw);
    server.close();
    shutdown(&t);
}
