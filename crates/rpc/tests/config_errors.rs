//! `RpcEnv::create` refuses a config that code set out of range, with a typed
//! error naming the key, on both IO modes, before it starts any thread or
//! binds any socket.

use std::net::SocketAddr;

use rpc::{RpcEnv, RpcEnvConfig, RpcError};
use transport::{ConfError, IoMode};

fn refused(mode: IoMode, key: &str, spoil: fn(&mut RpcEnvConfig)) {
    let mut c = RpcEnvConfig::server("bad", SocketAddr::from(([127, 0, 0, 1], 0)));
    c.transport.io_mode = mode;
    spoil(&mut c);
    match RpcEnv::create(c) {
        Err(RpcError::Config(ConfError::InvalidValue { key: k, value, .. })) => {
            assert_eq!((k.as_str(), value.as_str()), (key, "0"), "{mode:?}")
        }
        Err(other) => panic!("{mode:?} {key}: expected a Config error, got {other:?}"),
        Ok(_) => panic!("{mode:?} {key}: created an RpcEnv with {key} = 0"),
    }
}

fn zeros_refused(mode: IoMode) {
    refused(mode, "ask_timeout_ms", |c| c.ask_timeout_ms = 0);
    refused(mode, "inbox_capacity", |c| c.inbox_capacity = 0);
    refused(mode, "handover_timeout_ms", |c| c.handover_timeout_ms = 0);
    refused(mode, "connect_timeout_ms", |c| c.transport.connect_timeout_ms = 0);
}

#[test]
fn zeros_set_in_code_are_refused_epoll() {
    zeros_refused(IoMode::Epoll);
}

#[test]
fn zeros_set_in_code_are_refused_io_uring() {
    zeros_refused(IoMode::IoUring);
}
