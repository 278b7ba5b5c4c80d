//! The heartbeat load workload, briefly, on each IO mode.

use std::time::Duration;

use standalone::HeartbeatLoad;
use transport::IoMode;

fn short_load(mode: IoMode) {
    let report = HeartbeatLoad {
        workers: 50,
        rate_per_worker: 20.0,
        duration: Duration::from_millis(700),
        io_mode: mode,
        connections: 2,
    }
    .run()
    .expect("load runs");
    assert_eq!(report.io_mode, mode.as_str());
    assert!(report.requests >= 500, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.p50_us > 0 && report.p50_us <= report.p99_us && report.p99_us <= report.max_us);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"p999_us\""), "{json}");
}

#[test]
fn heartbeat_load_epoll() {
    short_load(IoMode::Epoll);
}

#[test]
fn heartbeat_load_io_uring() {
    short_load(IoMode::IoUring);
}
