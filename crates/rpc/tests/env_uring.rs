//! The RpcEnv suite on the io_uring backend.

mod suite;

rpc_suite!(transport::IoMode::IoUring);

#[test]
fn peer_process_main() {
    suite::peer::peer_main();
}
