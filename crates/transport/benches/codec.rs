//! Frame encode and decode throughput (Spark network-common framing).
//!
//! `cargo bench -p transport --bench codec`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use transport::{BufferPool, EncodedFrame, FrameDecoder};

const SIZES: [usize; 3] = [64, 4 << 10, 1 << 20];

fn wire(frames: usize, body: usize) -> Bytes {
    let body = Bytes::from(vec![7u8; body]);
    let mut out = Vec::new();
    for i in 0..frames {
        let f = EncodedFrame::rpc_request(i as i64, body.clone()).unwrap();
        out.extend_from_slice(f.header());
        out.extend_from_slice(f.body());
    }
    Bytes::from(out)
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in SIZES {
        let body = Bytes::from(vec![1u8; size]);
        g.throughput(Throughput::Bytes((size + 21) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| EncodedFrame::rpc_request(black_box(42), body.clone()).unwrap())
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let pool = BufferPool::default();
    for size in SIZES {
        // As many frames as fit in about 64 KiB, at least one.
        let frames = ((64 << 10) / (size + 21)).max(1);
        let chunk = wire(frames, size);
        g.throughput(Throughput::Bytes(chunk.len() as u64));
        g.bench_with_input(BenchmarkId::new("whole chunk", size), &chunk, |b, chunk| {
            let mut dec = FrameDecoder::new(u64::MAX, pool.clone());
            b.iter(|| {
                let mut n = 0;
                dec.decode(chunk.clone(), &mut |f| {
                    black_box(f);
                    n += 1;
                })
                .unwrap();
                assert_eq!(n, frames);
            })
        });
        // The same bytes in 1460-byte pieces (one TCP segment each): frames split across reads.
        let pieces: Vec<Bytes> = (0..chunk.len())
            .step_by(1460)
            .map(|at| chunk.slice(at..(at + 1460).min(chunk.len())))
            .collect();
        g.bench_with_input(
            BenchmarkId::new("1460-byte pieces", size),
            &pieces,
            |b, pieces| {
                let mut dec = FrameDecoder::new(u64::MAX, pool.clone());
                b.iter(|| {
                    let mut n = 0;
                    for p in pieces {
                        dec.decode(p.clone(), &mut |f| {
                            black_box(f);
                            n += 1;
                        })
                        .unwrap();
                    }
                    assert_eq!(n, frames);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
