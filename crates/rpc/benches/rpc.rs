//! The RPC layer's costs: a message's rkyv round (serialize, validate, read in
//! place) against a copying serde format, a local ask through Dispatcher and
//! Inbox (post to process to reply, no network), and one remote ask end to end
//! per IO mode over loopback.
//!
//! `cargo bench -p rpc --bench rpc`

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEnv, RpcEnvConfig, RpcMessage};
use transport::IoMode;

/// A realistic control-plane message (like Spark's `RegisterWorker`).
#[derive(
    Debug,
    Clone,
    PartialEq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
struct RegisterWorker {
    id: String,
    host: String,
    port: u16,
    cores: u32,
    memory_mb: u64,
    web_ui_url: String,
    resources: Vec<(String, u64)>,
}

fn sample() -> RegisterWorker {
    RegisterWorker {
        id: "worker-20261129091500-10.0.0.17-40311".into(),
        host: "10.0.0.17".into(),
        port: 40311,
        cores: 16,
        memory_mb: 64 << 10,
        web_ui_url: "http://10.0.0.17:8081".into(),
        resources: vec![("gpu".into(), 2), ("fpga".into(), 0)],
    }
}

fn formats(c: &mut Criterion) {
    let msg = sample();
    let mut g = c.benchmark_group("message round");
    g.bench_function("rkyv: serialize + validate + read in place", |b| {
        b.iter(|| {
            let bytes = black_box(&msg).to_bytes().unwrap();
            let archived = RegisterWorker::access(&bytes).unwrap();
            black_box(archived.cores.to_native() + archived.id.len() as u32)
        })
    });
    g.bench_function("serde_json: serialize + deserialize (copies)", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(black_box(&msg)).unwrap();
            let back: RegisterWorker = serde_json::from_slice(&bytes).unwrap();
            black_box(back.cores + back.id.len() as u32)
        })
    });
    let bytes = msg.to_bytes().unwrap();
    g.bench_function("rkyv: validate + read in place only", |b| {
        b.iter(|| {
            let archived = RegisterWorker::access(black_box(&bytes)).unwrap();
            black_box(archived.memory_mb.to_native())
        })
    });
    g.finish();
}

struct Echo;

impl RpcEndpoint for Echo {
    type Message = RegisterWorker;
    type Reply = u32;

    fn receive_and_reply(&mut self, msg: Msg<'_, RegisterWorker>, ctx: RpcCallContext<u32>) {
        let cores = match &msg {
            Msg::Local(m) => m.cores,
            Msg::Remote(m) => m.cores.to_native(),
        };
        ctx.reply(cores);
    }
}

fn env(mode: IoMode, server: bool) -> RpcEnv {
    let mut c = if server {
        RpcEnvConfig::server("bench-server", SocketAddr::from(([127, 0, 0, 1], 0)))
    } else {
        RpcEnvConfig::client("bench-client")
    };
    c.transport.io_mode = mode;
    c.transport.server_threads = 1;
    c.transport.client_threads = 1;
    RpcEnv::create(c).expect("RpcEnv")
}

fn local_ask(c: &mut Criterion) {
    let server = env(IoMode::Epoll, true);
    let r = server.setup_endpoint("echo", Echo).unwrap();
    let msg = sample();
    c.bench_function(
        "local ask (Dispatcher → Inbox → MessageLoop → reply)",
        |b| b.iter(|| r.ask_sync(msg.clone()).unwrap()),
    );
}

fn remote_ask(c: &mut Criterion) {
    let mut g = c.benchmark_group("remote ask over loopback");
    for mode in [IoMode::Epoll, IoMode::IoUring] {
        let server = env(mode, true);
        server.setup_endpoint("echo", Echo).unwrap();
        let client = env(mode, false);
        let r = client
            .setup_endpoint_ref::<RegisterWorker, u32>(server.address().unwrap(), "echo")
            .unwrap();
        let msg = sample();
        g.bench_with_input(BenchmarkId::from_parameter(mode), &msg, |b, msg| {
            b.iter(|| r.ask_sync(msg.clone()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, formats, local_ask, remote_ask);
criterion_main!(benches);
