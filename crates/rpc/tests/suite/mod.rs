//! The RpcEnv suite: two RpcEnvs over real loopback sockets, written once and
//! run for every IO mode by `rpc_suite!(mode)` (see `env_epoll.rs`).

#![allow(dead_code)]

pub mod cases;
pub mod endpoints;
pub mod faults;
pub mod peer;

use std::net::SocketAddr;

use rpc::{RpcEnv, RpcEnvConfig};
use transport::IoMode;

/// A server-mode RpcEnv on 127.0.0.1 with an ephemeral port.
pub fn server(mode: IoMode, name: &str) -> RpcEnv {
    let mut c = RpcEnvConfig::server(name, SocketAddr::from(([127, 0, 0, 1], 0)));
    c.transport.io_mode = mode;
    c.transport.server_threads = 2;
    c.transport.client_threads = 2;
    c.ask_timeout_ms = 10_000;
    RpcEnv::create(c).expect("server RpcEnv")
}

/// A client-mode RpcEnv.
pub fn client(mode: IoMode, name: &str) -> RpcEnv {
    let mut c = RpcEnvConfig::client(name);
    c.transport.io_mode = mode;
    c.transport.client_threads = 2;
    c.ask_timeout_ms = 10_000;
    RpcEnv::create(c).expect("client RpcEnv")
}

/// Expands to one `#[test]` per case of the suite, for IO mode `$mode`.
#[macro_export]
macro_rules! rpc_suite {
    ($mode:expr) => {
        $crate::rpc_suite!(@cases $mode, cases;
            send_ask_and_ask_sync,
            on_start_first_on_stop_last,
            messages_from_one_sender_in_order,
            ten_thousand_concurrent_asks,
            unknown_endpoint_is_named,
            setup_endpoint_ref_to_missing_name,
            ask_times_out,
            remote_failure_carries_message,
            panicking_handler_fails_the_ask_and_keeps_serving,
            server_asks_client_over_its_connection,
            concurrent_endpoint_runs_in_parallel,
            isolated_endpoint_is_not_held_up,
            shutdown_fails_pending_asks_and_stops_endpoints,
            wrong_message_type_is_refused,
            connect_failure_fails_queued_asks,
            peer_process_killed_mid_ask_fails_at_once,
            another_process_asks_by_address,
            ask_with_reads_the_reply_in_place,
            inline_endpoint_serves_on_the_delivering_thread
        );
        $crate::rpc_suite!(@cases $mode, faults;
            server_restart_while_client_keeps_sending,
            blocked_endpoints_hold_up_no_other
        );
    };
    (@cases $mode:expr, $module:ident; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::suite::$module::$case($mode);
            }
        )*
    };
}
