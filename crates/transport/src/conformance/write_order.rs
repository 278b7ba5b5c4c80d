//! Cases about who writes a connection's frames: answers queued by a handler
//! on the connection's own event loop, and frames sent from other threads at
//! the same time, must reach the peer whole, each in the order it was queued,
//! whichever task of the backend writes them and however often the socket
//! buffer fills up on the way (the epoll backend writes a read's answers from
//! the reader task and hands what the socket did not take to its writer task).

use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Probe, TIMEOUT, accepted, echo_reply, echoed, first_difference, pattern, raw_connect, serve, shutdown,
    test_conf, wire,
};
use crate::{BufferPool, EncodedFrame, Frame, FrameDecoder, TransportConf};

/// Requests the raw peer sends, and one-way frames the server sends it from
/// another thread meanwhile.
const REQUESTS: usize = 200;
const ONE_WAYS: usize = 200;
/// Body sizes (bytes), in turn: 20,000 B frames do not fit the 4 KiB socket
/// send buffer, so writes stop half way and are finished later.
const SIZES: &[usize] = &[0, 13, 4096, 20_000, 100, 3, 20_000, 1];

/// The body of request `i` (seeds 1..) or one-way frame `j` (seeds 1,000,001..).
fn request_body(i: usize) -> Vec<u8> {
    pattern(i as u64 + 1, SIZES[i % SIZES.len()])
}

fn one_way_body(j: usize) -> Vec<u8> {
    pattern(j as u64 + 1_000_001, SIZES[(j + 3) % SIZES.len()])
}

/// A raw peer sends [`REQUESTS`] requests of mixed sizes at once to a server
/// that answers each on its event loop, while a thread sends [`ONE_WAYS`]
/// one-way frames on the same connection; the server's socket send buffer
/// is 4 KiB. The peer must get every answer, in request order and with its
/// body, and every one-way frame, in the order sent, each whole.
pub fn answers_from_the_loop_and_sends_from_other_threads_keep_order(factory: &TransportFactory) {
    let t = factory(TransportConf {
        send_buffer_bytes: 4 << 10,
        ..test_conf()
    });
    let (probe, events) = Probe::new(false, echo_reply);
    let server = serve(&t, probe);
    let raw = raw_connect(server.local_addr());
    let server_side = accepted(&events, raw.local_addr().expect("raw local address"));

    let requests: Vec<u8> = (0..REQUESTS)
        .flat_map(|i| {
            let frame = EncodedFrame::rpc_request(i as i64, Bytes::from(request_body(i))).expect("encode");
            wire(&frame)
        })
        .collect();
    let mut to_server = raw.try_clone().expect("clone the raw socket");
    let writer = thread::spawn(move || to_server.write_all(&requests));
    let (sent_tx, sent_rx) = mpsc::channel();
    let sender = thread::spawn(move || {
        for j in 0..ONE_WAYS {
            if let Err(e) = server_side.send_one_way(Bytes::from(one_way_body(j))) {
                let _ = sent_tx.send(format!("send_one_way {j}: {e}"));
                return;
            }
            if j % 16 == 0 {
                thread::yield_now();
            }
        }
    });

    let (answers, one_ways) = read_frames(raw, REQUESTS + ONE_WAYS);
    writer
        .join()
        .expect("the raw writer thread")
        .unwrap_or_else(|e| panic!("raw peer: writing the requests: {e}"));
    sender.join().expect("the one-way sender thread");
    if let Ok(e) = sent_rx.try_recv() {
        panic!("{e}");
    }

    assert_eq!(answers.len(), REQUESTS, "answers received");
    for (i, (id, body)) in answers.iter().enumerate() {
        assert_eq!(
            *id, i as i64,
            "answer {i} answers request {id}: answers out of order"
        );
        if let Some(d) = first_difference(body, &echoed(&request_body(i))) {
            panic!("the answer to request {i} arrived damaged: {d}");
        }
    }
    assert_eq!(one_ways.len(), ONE_WAYS, "one-way frames received");
    for (j, body) in one_ways.iter().enumerate() {
        if let Some(d) = first_difference(body, &one_way_body(j)) {
            panic!("one-way frame {j} arrived damaged or out of order: {d}");
        }
    }
    drop(server);
    shutdown(&t);
}

/// What the raw peer got, each in arrival order: answers as (request id,
/// body), and one-way bodies.
type Received = (Vec<(i64, Vec<u8>)>, Vec<Vec<u8>>);

/// Reads and decodes frames from `raw` until `want` have arrived. Panics on
/// any other frame, a decode error, EOF or [`TIMEOUT`].
fn read_frames(mut raw: std::net::TcpStream, want: usize) -> Received {
    let mut decoder = FrameDecoder::new(1 << 20, BufferPool::new(1 << 20));
    let (mut answers, mut one_ways) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 64 << 10];
    while answers.len() + one_ways.len() < want {
        let n = match raw.read(&mut buf) {
            Ok(0) => panic!(
                "raw peer: EOF after {} answers and {} one-way frames",
                answers.len(),
                one_ways.len()
            ),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "raw peer: reading after {} answers and {} one-way frames: {e}",
                answers.len(),
                one_ways.len()
            ),
        };
        let mut unexpected = None;
        decoder
            .decode(Bytes::copy_from_slice(&buf[..n]), &mut |f| match f {
                Frame::RpcResponse { request_id, body } => answers.push((request_id, body.to_vec())),
                Frame::OneWayMessage { body } => one_ways.push(body.to_vec()),
                other => unexpected = Some(format!("{other:?}")),
            })
            .unwrap_or_else(|e| panic!("raw peer: the server's bytes do not decode: {e}"));
        if let Some(f) = unexpected {
            panic!("raw peer: an unexpected frame: {f}");
        }
        assert!(
            Instant::now() < deadline,
            "raw peer: only {} answers and {} one-way frames after {TIMEOUT:?}",
            answers.len(),
            one_ways.len()
        );
    }
    (answers, one_ways)
}
