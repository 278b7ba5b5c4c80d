use super::*;

#[test]
fn defaults_are_valid_and_sparklike() {
    let c = TransportConf::default();
    c.validate().unwrap();
    assert_eq!(c.max_frame_size, 134_217_728);
    assert_eq!(c.connections_per_peer, 1);
    assert_eq!(c.resolved_server_threads(2), 2);
    assert_eq!(c.resolved_client_threads(64), 8);
}

#[test]
fn io_mode_parsing() {
    assert_eq!("EPOLL".parse::<IoMode>().unwrap(), IoMode::Epoll);
    assert_eq!("nio".parse::<IoMode>().unwrap(), IoMode::Epoll);
    assert_eq!("io_uring".parse::<IoMode>().unwrap(), IoMode::IoUring);
    let e = "kqueue".parse::<IoMode>().unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("io_mode") && msg.contains("kqueue") && msg.contains("epoll, io_uring, auto"),
        "{msg}"
    );
}

#[test]
fn toml_file_then_env_then_code() {
    let mut c = TransportConf::from_toml_str(
        "[transport]\nio_mode = \"epoll\"\nserver_threads = 3\ntcp_nodelay = false\n[rpc]\nother = 1\n",
    )
    .unwrap();
    assert_eq!(
        (c.io_mode, c.server_threads, c.tcp_nodelay),
        (IoMode::Epoll, 3, false)
    );
    c.apply_env_vars([
        ("RPC_SERVER_THREADS", "5"),
        ("PATH", "/bin"),
        ("RPC_UNRELATED", "x"),
    ])
    .unwrap();
    assert_eq!(c.server_threads, 5);
    c.client_threads = 7;
    c.validate().unwrap();
}

#[test]
fn bad_values_name_key_value_and_allowed() {
    let e = TransportConf::from_toml_str("[transport]\nserver_threads = -2\n").unwrap_err();
    assert_eq!(
        e,
        ConfError::InvalidValue {
            key: "server_threads".into(),
            value: "-2".into(),
            allowed: "a whole number >= 0".into()
        }
    );
    let e = TransportConf::from_toml_str("[transport]\nio_mod = \"epoll\"\n").unwrap_err();
    assert!(
        matches!(e, ConfError::UnknownKey { ref key, .. } if key == "io_mod"),
        "{e}"
    );
    let e = TransportConf::default()
        .apply_env_vars([("RPC_IO_MODE", "fast")])
        .unwrap_err();
    assert!(e.to_string().contains("RPC_IO_MODE") && e.to_string().contains("fast"));
    let e = TransportConf::default()
        .set("connections_per_peer", "0")
        .unwrap_err();
    assert!(e.to_string().contains(">= 1"));
    let e = TransportConf::from_toml_str("[transport\n").unwrap_err();
    assert!(matches!(e, ConfError::File { .. }));
}

#[test]
fn auth_secret_is_read_and_never_printed() {
    let mut c = TransportConf::from_toml_str("[transport]\nauth_secret = \"hunter2\"\n").unwrap();
    assert_eq!(c.auth_secret(), Some("hunter2"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("<redacted>"),
        "{shown}"
    );
    c.apply_env_vars([("RPC_AUTH_SECRET", "")]).unwrap();
    assert_eq!(c.auth_secret(), None);
    c.apply_env_vars([("RPC_AUTH_SECRET", "s3cret")]).unwrap();
    assert_eq!(c.auth_secret(), Some("s3cret"));
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn from_file_reports_the_path() {
    let e = TransportConf::from_file("/nonexistent/rpc.toml").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/rpc.toml"));
}

#[test]
fn limit_keys_from_toml_and_env_with_zero_as_no_limit() {
    let d = TransportConf::default();
    assert_eq!(
        (
            d.max_connections,
            d.max_queued_bytes_per_connection,
            d.max_in_flight_requests_per_connection
        ),
        (10_000, 16 << 20, 4096)
    );
    assert_eq!(
        d.outstanding_rpcs_limit(),
        usize::MAX,
        "outstanding RPCs are not limited by default"
    );
    let mut c = TransportConf::from_toml_str(
        "[transport]\nmax_connections = 3\nmax_queued_bytes_per_connection = 1048576\n",
    )
    .unwrap();
    assert_eq!((c.connection_limit(), c.queued_bytes_limit()), (3, 1 << 20));
    c.apply_env_vars([
        ("RPC_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "0"),
        ("RPC_MAX_CONNECTIONS", "0"),
        ("RPC_MAX_OUTSTANDING_RPCS_PER_CONNECTION", "64"),
    ])
    .unwrap();
    assert_eq!(c.outstanding_rpcs_limit(), 64);
    assert_eq!(c.in_flight_requests_limit(), usize::MAX);
    assert_eq!(c.connection_limit(), usize::MAX);
    let e = TransportConf::from_toml_str("[transport]\nmax_in_flight_requests_per_connection = -1\n")
        .unwrap_err();
    assert!(
        e.to_string().contains("max_in_flight_requests_per_connection")
            && e.to_string().contains("0 = no limit"),
        "{e}"
    );
}

#[test]
fn spin_before_park_is_at_most_10_ms() {
    let mut c = TransportConf::default();
    c.set("spin_before_park_us", "10000").unwrap();
    assert_eq!(c.spin_before_park_us, 10_000);
    // 100 µs written in nanoseconds.
    let e = c.set("spin_before_park_us", "100000").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("spin_before_park_us") && msg.contains("100000") && msg.contains("10 ms"),
        "{msg}"
    );
    let in_code = TransportConf {
        spin_before_park_us: 10_001,
        ..TransportConf::default()
    };
    assert!(in_code.validate().is_err());
}
