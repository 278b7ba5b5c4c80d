//! The RpcEnv suite on the epoll backend.

mod suite;

rpc_suite!(transport::IoMode::Epoll);

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}
