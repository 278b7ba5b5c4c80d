//! Writes the seed corpus of both fuzz targets from real frames and messages
//! built with the project's own encoders, plus hand-made edge cases.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --bin gen_corpus -- fuzz/corpus`
//! writes `fuzz/corpus/frame_decoder/*` and `fuzz/corpus/message_validation/*`
//! (about 40 small files); run it again after a wire-format change.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rpc::RpcAddress;
use rpc::fuzzing::encode_envelope;
use rpc::rkyv::{self, rancor};
use spark_rpc_fuzz::messages::{MasterMessage, MasterReply, RegisterWorker, WorkerMessage};
use spark_rpc_fuzz::{DIRECT_READ, decoder_input};
use transport::EncodedFrame;

fn wire(frame: &EncodedFrame) -> Vec<u8> {
    let mut out = frame.header().to_vec();
    out.extend_from_slice(frame.body());
    out
}

fn register() -> MasterMessage {
    MasterMessage::RegisterWorker(RegisterWorker {
        id: "worker-20260101000000-127.0.0.1-40000".into(),
        host: "127.0.0.1".into(),
        port: 40000,
        cores: 8,
        memory_mb: 16384,
        io_mode: "io_uring".into(),
        endpoint_name: "Worker".into(),
    })
}

fn worker_reply() -> WorkerMessage {
    WorkerMessage::RegisterResponse {
        round: 3,
        reply: Some(MasterReply::RegisteredWorker {
            master_url: "rpc://127.0.0.1:7077".into(),
            master_web_ui_url: "http://127.0.0.1:8080".into(),
        }),
        error: String::new(),
    }
}

/// Frame bodies (envelope + archive, or a reply archive) built by the real encoders.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let from = RpcAddress::new("127.0.0.1", 40000);
    let env = |sender: Option<&RpcAddress>, to: &str, m: &dyn Fn(Option<&RpcAddress>, &str) -> Bytes| {
        m(sender, to).to_vec()
    };
    let master =
        |m: MasterMessage| move |s: Option<&RpcAddress>, to: &str| encode_envelope(s, to, &m).unwrap();
    let worker =
        |m: WorkerMessage| move |s: Option<&RpcAddress>, to: &str| encode_envelope(s, to, &m).unwrap();
    let reply = |r: MasterReply| rkyv::to_bytes::<rancor::Error>(&r).unwrap().to_vec();
    vec![
        ("register-worker", env(Some(&from), "Master", &master(register()))),
        (
            "heartbeat-no-sender",
            env(
                None,
                "Master",
                &master(MasterMessage::Heartbeat {
                    worker_id: "worker-1".into(),
                }),
            ),
        ),
        (
            "bound-ports",
            env(Some(&from), "Master", &master(MasterMessage::BoundPortsRequest)),
        ),
        (
            "register-response",
            env(Some(&from), "Worker", &worker(worker_reply())),
        ),
        (
            "heartbeat-response-none",
            env(
                None,
                "Worker",
                &worker(WorkerMessage::HeartbeatResponse {
                    round: 1,
                    reply: None,
                    error: "ask timed out".into(),
                }),
            ),
        ),
        (
            "reply-registered",
            reply(MasterReply::RegisteredWorker {
                master_url: "rpc://127.0.0.1:7077".into(),
                master_web_ui_url: String::new(),
            }),
        ),
        ("reply-ack", reply(MasterReply::Ack)),
        (
            "reply-failed",
            reply(MasterReply::RegisterWorkerFailed {
                reason: "duplicate worker id".into(),
            }),
        ),
    ]
}

/// Hand-made bad envelopes.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let good = encode_envelope(
        Some(&RpcAddress::new("h", 1)),
        "Master",
        &MasterMessage::BoundPortsRequest,
    )
    .unwrap()
    .to_vec();
    let mut bad_version = good.clone();
    bad_version[0] = 2;
    let mut bad_flag = good.clone();
    bad_flag[11 + 6] = 7;
    let mut bad_utf8 = good.clone();
    bad_utf8[11] = 0xff;
    let mut long_name = good.clone();
    long_name[9..11].copy_from_slice(&u16::MAX.to_be_bytes());
    vec![
        ("envelope-truncated", good[..10].to_vec()),
        ("envelope-bad-version", bad_version),
        ("envelope-sender-flag-7", bad_flag),
        ("envelope-name-not-utf8", bad_utf8),
        ("envelope-name-past-end", long_name),
        (
            "envelope-empty-payload",
            good[..good.len() - good.len().min(4)].to_vec(),
        ),
    ]
}

fn frame_streams() -> Vec<(&'static str, Vec<u8>)> {
    let mut all = Vec::new();
    let mut streams = Vec::new();
    for (name, body) in bodies() {
        let body = Bytes::from(body);
        let frame = match name {
            n if n.starts_with("reply") => EncodedFrame::rpc_response(42, body),
            n if n.contains("heartbeat") => EncodedFrame::one_way(body),
            _ => EncodedFrame::rpc_request(7, body),
        }
        .unwrap();
        all.extend(wire(&frame));
        streams.push((name, wire(&frame)));
    }
    all.extend(wire(
        &EncodedFrame::rpc_failure(9, "endpoint `Master` not found").unwrap(),
    ));
    all.extend(wire(&EncodedFrame::one_way(Bytes::new()).unwrap()));
    streams.push(("all-types", all));

    let one_way = wire(&EncodedFrame::one_way(Bytes::from_static(b"hello")).unwrap());
    let with_len = |len: i64, rest: &[u8]| {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    };
    let mut mismatch = one_way.clone();
    mismatch[9..13].copy_from_slice(&99i32.to_be_bytes());
    let mut bad_utf8 = wire(&EncodedFrame::rpc_failure(1, "ab").unwrap());
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff;
    let mut truncated = one_way.clone();
    truncated.truncate(one_way.len() - 2);
    streams.extend([
        ("negative-length", with_len(-1, &[9, 0, 0, 0, 0])),
        ("length-below-min", with_len(5, &[9])),
        ("length-below-one-way-header", with_len(10, &[9, 0])),
        ("length-below-rpc-header", with_len(15, &[3, 0, 0, 0, 0, 0, 0])),
        ("huge-length", with_len(i64::MAX, &[3])),
        ("length-over-max", with_len(1 << 21, &[9, 0, 0, 0, 0])),
        ("unknown-type", with_len(13, &[11, 0, 0, 0, 0])),
        ("unknown-type-ff", with_len(13, &[0xff, 0, 0, 0, 0])),
        ("unsupported-type", with_len(13, &[6, 0, 0, 0, 0])),
        ("body-length-mismatch", mismatch),
        ("failure-not-utf8", bad_utf8),
        ("truncated", truncated),
        ("partial-length", vec![0, 0, 0]),
    ]);
    streams
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes)
        .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(name).display()));
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let decoder_dir = root.join("frame_decoder");
    let message_dir = root.join("message_validation");
    for dir in [&decoder_dir, &message_dir] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let mut count = 0;
    for (name, body) in bodies().into_iter().chain(bad_bodies()) {
        write(&message_dir, name, &body);
        count += 1;
    }
    // Max frame 1 MiB (bits 0-1 = 3); each stream whole, in 1-byte, 8-byte and
    // 64-byte chunks, the last with direct reads.
    let settings = [
        (3u8, "whole"),
        (3, "by1"),
        (3 | 1 << 2, "by8"),
        (3 | 2 << 2 | DIRECT_READ, "by64-direct"),
    ];
    for (name, stream) in frame_streams() {
        let variants: &[(u8, &str)] = if name == "all-types" {
            &settings
        } else {
            &settings[..1]
        };
        for &(flags, how) in variants {
            let flags = if how == "whole" { flags | 3 << 2 } else { flags };
            write(
                &decoder_dir,
                &format!("{name}-{how}"),
                &decoder_input(flags, 0x5a, &stream),
            );
            count += 1;
        }
    }
    // A 64-byte maximum frame size, so that "too large" is met with ordinary frames.
    write(
        &decoder_dir,
        "register-worker-max64",
        &decoder_input(3 << 2, 1, &frame_streams()[0].1),
    );
    count += 1;
    println!("wrote {count} seed files under {}", root.display());
}
