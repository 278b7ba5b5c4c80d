//! The backend conformance suite: generic tests of the [`Transport`] contract
//! over real loopback sockets, written once and run by every backend.
//!
//! Each case is a public function taking a [`TransportFactory`], which builds
//! a fresh backend from a [`TransportConf`] (so a case can set, say,
//! `max_frame_size` or the thread counts). A case binds its servers to
//! `127.0.0.1:0`, bounds every wait by a few seconds (a broken backend fails a
//! case instead of hanging it) and panics with what it saw and what it
//! expected. Cases use raw [`std::net::TcpStream`]s where they need to send
//! bytes no well-behaved peer would send.
//!
//! A backend runs the whole suite from one file in its `tests/` directory:
//!
//! ```ignore
//! // crates/transport-epoll/tests/conformance.rs
//! transport::conformance_suite!(|conf| std::sync::Arc::new(transport_epoll::EpollTransport::new(conf).unwrap()));
//! ```
//!
//! The configuration handed to the factory keeps the default `io_mode`
//! ([`IoMode::Auto`](crate::IoMode::Auto)); a factory may set the mode its
//! backend runs. The cases, by theme:
//!
//! - [`rpc`]: request/response matching, ordering, many connections, the
//!   server sending to the client, 1 MiB frames;
//! - [`lifecycle`]: channel events, closing, shutdown, connection refused,
//!   the IO mode and pooled reads;
//! - [`faults`]: peers closing mid-frame, undecodable input, frames over the
//!   size limit;
//! - [`auth`]: closing after a last answer, and `auth_secret` gating connections;
//! - [`limits`]: `max_connections`, a peer that never reads its answers
//!   (`max_queued_bytes_per_connection`), `max_in_flight_requests_per_connection`
//!   and `max_outstanding_rpcs_per_connection`;
//! - [`mixed_sizes`]: 1 MiB and tiny frames in turn, written all at once,
//!   in odd pieces and slowly, arrive whole and in order, and 1,200 frames
//!   of mixed sizes go out whole through small socket buffers;
//! - [`write_order`]: answers queued on the event loop and frames sent from
//!   other threads at the same time arrive whole and each in order through
//!   small socket buffers;
//! - [`read_pause`]: reading paused from above with `TransportClient::pause_reading`;
//! - [`spin`]: idle and slow connections cost no CPU with spinning on, loops
//!   do spin between back-to-back RPCs but not when confined to one CPU, and
//!   nothing needs spinning on.

use std::sync::Arc;

use crate::{Transport, TransportConf};

mod support;

pub mod auth;
pub mod faults;
pub mod lifecycle;
pub mod limits;
pub mod mixed_sizes;
pub mod read_complete;
pub mod read_pause;
pub mod rpc;
pub mod spin;
pub mod write_order;

pub use auth::{auth_secret_gates_connections, close_after_flush_delivers_queued_frames};
pub use faults::{
    a_callback_panicking_as_its_connection_closes_harms_nothing_else,
    a_handler_panicking_as_connections_end_harms_no_other, bad_input_closes_only_that_connection,
    oversized_send_fails_without_closing, peer_closing_mid_frame,
};
pub use lifecycle::{
    channel_events_once_per_connection, connect_refused_fails_promptly, decode_error_on_client_is_reported,
    io_mode_and_pooled_reads, outstanding_rpcs_fail_when_server_closes,
    outstanding_rpcs_fail_when_server_closes_connection, server_close_stops_accepting,
    server_close_writes_queued_frames_first, shutdown_fails_outstanding_rpcs,
    shutdown_writes_queued_frames_first,
};
pub use limits::{
    client_refuses_rpcs_past_the_outstanding_limit, in_flight_limit_pauses_reading_until_answers,
    max_connections_closes_the_extra_ones, peer_that_never_reads_is_paused_not_buffered,
    queued_sends_pause_reading_until_written,
};
pub use mixed_sizes::{
    many_mixed_frames_go_out_whole_through_small_socket_buffers,
    mixed_frame_sizes_arrive_in_order_with_reading_paused, mixed_frame_sizes_arrive_whole_and_in_order,
};
pub use read_complete::read_complete_follows_each_read;
pub use read_pause::{
    read_pause_holds_frames_until_the_last_is_dropped, read_pause_taken_during_a_large_frame_holds_it,
};
pub use rpc::{
    frames_keep_order_per_connection, large_frames_intact, many_connections_concurrently,
    rpc_responses_match_requests, server_sends_to_client,
};
pub use spin::{
    idle_loops_stop_spinning, loops_confined_to_one_cpu_do_not_spin,
    loops_do_not_spin_for_a_peer_1_5_budgets_apart, loops_do_not_spin_for_a_peer_3_budgets_apart,
    loops_do_not_spin_for_a_slow_peer, loops_spin_between_back_to_back_rpcs, rpcs_work_with_spinning_off,
};
pub use write_order::answers_from_the_loop_and_sends_from_other_threads_keep_order;

/// Builds a fresh backend from a configuration. Every case calls it at least
/// once and shuts down what it built.
pub type TransportFactory = dyn Fn(TransportConf) -> Arc<dyn Transport>;

/// Expands to one `#[test]` per conformance case, each building its
/// transports with the given factory expression (a closure or function taking
/// a [`TransportConf`] and returning an `Arc` of the backend).
///
/// ```ignore
/// transport::conformance_suite!(|conf| std::sync::Arc::new(transport_epoll::EpollTransport::new(conf).unwrap()));
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr $(,)?) => {
        $crate::conformance_suite!(@cases $factory;
            rpc_responses_match_requests,
            frames_keep_order_per_connection,
            many_connections_concurrently,
            server_sends_to_client,
            large_frames_intact,
            mixed_frame_sizes_arrive_whole_and_in_order,
            mixed_frame_sizes_arrive_in_order_with_reading_paused,
            many_mixed_frames_go_out_whole_through_small_socket_buffers,
            answers_from_the_loop_and_sends_from_other_threads_keep_order,
            channel_events_once_per_connection,
            outstanding_rpcs_fail_when_server_closes_connection,
            outstanding_rpcs_fail_when_server_closes,
            decode_error_on_client_is_reported,
            connect_refused_fails_promptly,
            shutdown_fails_outstanding_rpcs,
            server_close_writes_queued_frames_first,
            shutdown_writes_queued_frames_first,
            server_close_stops_accepting,
            io_mode_and_pooled_reads,
            peer_closing_mid_frame,
            bad_input_closes_only_that_connection,
            a_callback_panicking_as_its_connection_closes_harms_nothing_else,
            a_handler_panicking_as_connections_end_harms_no_other,
            oversized_send_fails_without_closing,
            close_after_flush_delivers_queued_frames,
            auth_secret_gates_connections,
            max_connections_closes_the_extra_ones,
            peer_that_never_reads_is_paused_not_buffered,
            queued_sends_pause_reading_until_written,
            in_flight_limit_pauses_reading_until_answers,
            client_refuses_rpcs_past_the_outstanding_limit,
            read_pause_holds_frames_until_the_last_is_dropped,
            read_pause_taken_during_a_large_frame_holds_it,
            read_complete_follows_each_read,
            idle_loops_stop_spinning,
            loops_do_not_spin_for_a_slow_peer,
            loops_do_not_spin_for_a_peer_3_budgets_apart,
            loops_do_not_spin_for_a_peer_1_5_budgets_apart,
            rpcs_work_with_spinning_off,
            loops_spin_between_back_to_back_rpcs,
            loops_confined_to_one_cpu_do_not_spin,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let factory: &$crate::conformance::TransportFactory = &$factory;
                $crate::conformance::$case(factory);
            }
        )*
    };
}
