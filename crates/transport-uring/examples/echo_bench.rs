//! A tiny closed-loop echo benchmark: one connection, `--inflight` RPCs of
//! `--size` bytes kept in flight for `--secs` seconds; prints requests per second.
//! `--zc` sets the io_uring zero-copy threshold, `--buf-size` its provided-buffer size,
//! `--spin-us` how long its loops poll before parking, `--fixed-files true` registers
//! sockets in the ring's file table.
//!
//! ```text
//! cargo run --release --example echo_bench -- --backend uring --size 64 --inflight 64 --secs 3
//! cargo run --release --example echo_bench -- --backend epoll
//! cargo run --release --example echo_bench -- --backend uring --size 1048576 --inflight 4 --zc 65536
//! ```
//!
//! Server and client run in this process, one event-loop thread each, on
//! `127.0.0.1`. Each response's callback (on the client's loop) sends the
//! next request, and the server answers from its loop: no other thread is on
//! the path of a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use transport::{BufferPool, Transport, TransportClient, TransportConf, TransportHandler};
use transport_epoll::EpollTransport;
use transport_uring::{UringConf, UringTransport};

struct Echo;

impl TransportHandler for Echo {
    fn receive_rpc(&self, client: &TransportClient, request_id: i64, body: Bytes) {
        let _ = client.send_response(request_id, body);
    }
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

struct Driver {
    client: TransportClient,
    body: Bytes,
    done: AtomicU64,
    stop: AtomicBool,
}

fn fire(d: Arc<Driver>) {
    let next = d.clone();
    let _ = d.client.send_rpc(d.body.clone(), move |r| {
        if r.is_ok() {
            next.done.fetch_add(1, Ordering::Relaxed);
            if !next.stop.load(Ordering::Relaxed) {
                fire(next);
            }
        }
    });
}

struct Args {
    backend: String,
    size: usize,
    inflight: usize,
    secs: f64,
    zc: usize,
    buf_size: usize,
    spin_us: u64,
    fixed_files: bool,
}

fn parse() -> Args {
    let mut a = Args {
        backend: "uring".into(),
        size: 64,
        inflight: 64,
        secs: 3.0,
        zc: 0,
        buf_size: UringConf::default().buf_size,
        spin_us: transport::TransportConf::default().spin_before_park_us,
        fixed_files: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--backend" => a.backend = value.into(),
            "--size" => a.size = value.parse().expect("--size takes bytes"),
            "--inflight" => a.inflight = value.parse().expect("--inflight takes a count"),
            "--secs" => a.secs = value.parse().expect("--secs takes seconds"),
            "--buf-size" => a.buf_size = value.parse().expect("--buf-size takes bytes"),
            "--fixed-files" => a.fixed_files = value.parse().expect("--fixed-files takes true or false"),
            "--spin-us" => a.spin_us = value.parse().expect("--spin-us takes microseconds"),
            "--zc" => a.zc = value.parse().expect("--zc takes a threshold in bytes (0 = off)"),
            other => panic!("unknown argument {other}; see the example's docs"),
        }
    }
    a
}

fn main() {
    let a = parse();
    let conf = TransportConf {
        server_threads: 1,
        client_threads: 1,
        max_frame_size: (a.size as u64 + 64).max(1 << 20),
        spin_before_park_us: a.spin_us,
        ..TransportConf::default()
    };
    let t: Arc<dyn Transport> = match a.backend.as_str() {
        "epoll" => Arc::new(EpollTransport::new(conf).unwrap()),
        "uring" => {
            let uring = UringConf {
                zero_copy_threshold: a.zc,
                buf_size: a.buf_size,
                fixed_files: a.fixed_files,
                ..UringConf::default()
            };
            let pool = BufferPool::new(conf.pool_max_bytes);
            Arc::new(UringTransport::with_uring_conf(conf, pool, uring).unwrap())
        }
        other => panic!("--backend is epoll or uring, not {other}"),
    };
    let server = t.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Echo)).unwrap();
    let client = t.connect(server.local_addr(), Arc::new(Echo)).unwrap();
    let d = Arc::new(Driver {
        client,
        body: Bytes::from(vec![7u8; a.size]),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    for _ in 0..a.inflight {
        fire(d.clone());
    }
    std::thread::sleep(Duration::from_millis(500));
    let (start, n0) = (Instant::now(), d.done.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    let (elapsed, n1) = (start.elapsed(), d.done.load(Ordering::Relaxed));
    d.stop.store(true, Ordering::Relaxed);
    let rate = (n1 - n0) as f64 / elapsed.as_secs_f64();
    println!(
        "backend={} size={} inflight={} zc={} spin_us={} fixed_files={} req/s={:.0}",
        a.backend, a.size, a.inflight, a.zc, a.spin_us, a.fixed_files, rate
    );
    t.shutdown();
}
