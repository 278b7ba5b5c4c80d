//! `transport.spin_before_park_us` as a user sets it on an RpcEnv: in the
//! `[transport]` table of a TOML file, through `RPC_SPIN_BEFORE_PARK_US`
//! (`RpcEnvConfig::apply_env_vars`, the environment winning over the file),
//! refused with a message naming the variable and what is allowed, and an
//! RpcEnv pair whose loops park at once (`0`) answering asks on both IO modes.

use std::net::SocketAddr;
use std::time::Duration;

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEnv, RpcEnvConfig};
use transport::{ConfError, IoMode};

const FILE: &str = "[rpc]\nask_timeout_ms = 10000\n[transport]\nspin_before_park_us = 250\n";

#[test]
fn the_default_is_100_us() {
    let c = RpcEnvConfig::client("c");
    assert_eq!(c.transport.spin_before_park_us, 100);
    assert_eq!(c.transport.spin_before_park(), Duration::from_micros(100));
}

#[test]
fn the_toml_table_sets_it_and_the_environment_wins() {
    let mut c = RpcEnvConfig::from_toml_str(FILE).unwrap();
    assert_eq!(c.transport.spin_before_park(), Duration::from_micros(250));
    c.apply_env_vars([("RPC_SPIN_BEFORE_PARK_US", "0")]).unwrap();
    assert_eq!(c.transport.spin_before_park_us, 0);
    assert_eq!(c.transport.spin_before_park(), Duration::ZERO);
}

#[test]
fn a_bad_variable_names_itself_and_what_is_allowed() {
    for bad in ["100us", "-1", "", "1e3"] {
        let mut c = RpcEnvConfig::client("c");
        let e = c.apply_env_vars([("RPC_SPIN_BEFORE_PARK_US", bad)]).unwrap_err();
        match &e {
            ConfError::InvalidValue { key, value, .. } => {
                assert_eq!((key.as_str(), value.as_str()), ("RPC_SPIN_BEFORE_PARK_US", bad))
            }
            other => panic!("{bad:?}: expected InvalidValue, got {other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("microseconds") && text.contains("0 = park at once"),
            "{text}"
        );
        assert_eq!(c.transport.spin_before_park_us, 100, "{bad:?} changed the value");
    }
}

#[test]
fn a_bad_table_value_names_the_key() {
    let e = RpcEnvConfig::from_toml_str("[transport]\nspin_before_park_us = -5\n").unwrap_err();
    match e {
        ConfError::InvalidValue { key, value, .. } => {
            assert_eq!((key.as_str(), value.as_str()), ("spin_before_park_us", "-5"))
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

struct Echo;

impl RpcEndpoint for Echo {
    type Message = u64;
    type Reply = u64;

    fn receive_and_reply(&mut self, msg: Msg<'_, u64>, ctx: RpcCallContext<u64>) {
        let n = match &msg {
            Msg::Local(n) => *n,
            Msg::Remote(n) => n.to_native(),
        };
        ctx.reply(n + 1);
    }
}

/// A server and a client RpcEnv from the file and `RPC_SPIN_BEFORE_PARK_US=0`:
/// a few hundred asks back to back, each answered (parked loops wake on
/// every message).
fn parking_envs_answer(mode: IoMode) {
    let env = |server: bool| {
        let mut c = RpcEnvConfig::from_toml_str(FILE).unwrap();
        c.name = if server { "server" } else { "client" }.into();
        if server {
            c.bind_address = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        c.transport.io_mode = mode;
        c.apply_env_vars([("RPC_SPIN_BEFORE_PARK_US", "0")]).unwrap();
        assert_eq!(c.transport.spin_before_park_us, 0);
        RpcEnv::create(c).unwrap()
    };
    let server = env(true);
    server.setup_endpoint("echo", Echo).unwrap();
    let client = env(false);
    let echo = client
        .setup_endpoint_ref::<u64, u64>(server.address().unwrap(), "echo")
        .unwrap();
    for n in 0..300 {
        assert_eq!(echo.ask_sync(n).unwrap(), n + 1);
    }
}

#[test]
fn parking_loops_answer_epoll() {
    parking_envs_answer(IoMode::Epoll);
}

#[test]
fn parking_loops_answer_io_uring() {
    parking_envs_answer(IoMode::IoUring);
}
