//! Shutdown closes every descriptor: sockets, rings, eventfds. In its own test
//! binary, so no other test opens or closes descriptors meanwhile.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use transport::{Transport, TransportClient, TransportConf, TransportHandler};
use transport_uring::UringTransport;

struct Echo;

impl TransportHandler for Echo {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        let _ = client.send_response(request_id, body);
    }
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn shutdown_closes_every_descriptor_and_returns_buffers() {
    let before = open_fds();
    let conf = TransportConf {
        server_threads: 2,
        client_threads: 2,
        ..TransportConf::default()
    };
    let t = UringTransport::new(conf).unwrap();
    let server = t.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Echo)).unwrap();
    let clients: Vec<_> = (0..50)
        .map(|_| t.connect(server.local_addr(), Arc::new(Echo)).unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    for c in &clients {
        let tx = tx.clone();
        c.send_rpc(Bytes::from_static(b"hi"), move |r| tx.send(r).unwrap())
            .unwrap();
    }
    for _ in 0..clients.len() {
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    }
    // 100 sockets, a listener, 4 rings and 4 eventfds.
    assert!(open_fds() >= before + 109, "expected the connections to be open");
    t.shutdown();
    drop(server);
    assert_eq!(open_fds(), before, "descriptors left open after shutdown");
    let stats = t.pool().stats();
    assert_eq!(
        stats.served_from_pool + stats.served_fresh,
        stats.returned + stats.released,
        "pool buffers still out after shutdown (provided buffers or receive buffers not returned): {stats:?}"
    );
    drop(clients);
    drop(t);
    assert_eq!(open_fds(), before);
}
