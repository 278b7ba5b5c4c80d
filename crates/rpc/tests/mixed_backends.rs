//! An RpcEnv on epoll and one on io_uring talk to each other both ways: the
//! two backends speak the same wire format.

mod suite;

use std::sync::mpsc;

use rpc::RpcEndpointRef;
use suite::endpoints::{Recorder, Req};
use transport::IoMode;

fn pair(server_mode: IoMode, client_mode: IoMode) {
    let s = suite::server(server_mode, "server");
    let c = suite::server(client_mode, "client");
    assert_eq!((s.io_mode(), c.io_mode()), (server_mode, client_mode));
    let (tx, _rx) = mpsc::channel();
    s.setup_endpoint("rec", Recorder { events: tx }).unwrap();
    let (tx, _rx2) = mpsc::channel();
    c.setup_endpoint("client-echo", Recorder { events: tx }).unwrap();
    let r: RpcEndpointRef<Req, u64> = c.setup_endpoint_ref(s.address().unwrap(), "rec").unwrap();
    let futures: Vec<_> = (0..2_000u64).map(|i| (i, r.ask(Req::Double(i)))).collect();
    for (i, f) in futures {
        assert_eq!(f.wait().unwrap(), 2 * i);
    }
    // 1 MiB each way, and the server asking back over the client's connection.
    assert_eq!(r.ask_sync(Req::Bytes(vec![3; 1 << 20])).unwrap(), 1 << 20);
    assert_eq!(r.ask_sync(Req::AskBack(20)).unwrap(), 41);
    // And the other direction, by address.
    let back: RpcEndpointRef<Req, u64> = s.setup_endpoint_ref(c.address().unwrap(), "client-echo").unwrap();
    assert_eq!(back.ask_sync(Req::Double(7)).unwrap(), 14);
}

#[test]
fn epoll_server_io_uring_client() {
    pair(IoMode::Epoll, IoMode::IoUring);
}

#[test]
fn io_uring_server_epoll_client() {
    pair(IoMode::IoUring, IoMode::Epoll);
}
