//! The buffer pool: allocate and drop on one thread (the thread cache), with
//! frozen buffers still alive (returned but busy), and buffers whose last
//! `Bytes` drops on another thread.
//!
//! `cargo bench -p transport --bench pool`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::mpsc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use transport::BufferPool;

fn same_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool get+put, same thread");
    let pool = BufferPool::default();
    for size in [512usize, 16 << 10, 1 << 20] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| drop(black_box(pool.allocate(size))))
        });
    }
    g.bench_function("frozen Bytes, 16384", |b| {
        b.iter(|| {
            let mut buf = pool.allocate(16 << 10);
            buf.commit(100);
            drop(black_box(buf.freeze()))
        })
    });
    // 64 frozen buffers stay alive (64 reads in flight), the oldest dropped
    // before each allocate: the pool passes over busy returned buffers.
    g.bench_function("frozen Bytes, 64 alive, 16384", |b| {
        let mut alive: std::collections::VecDeque<bytes::Bytes> = (0..64)
            .map(|_| {
                let mut buf = pool.allocate(16 << 10);
                buf.commit(100);
                buf.freeze()
            })
            .collect();
        b.iter(|| {
            drop(alive.pop_front());
            let mut buf = pool.allocate(16 << 10);
            buf.commit(100);
            alive.push_back(black_box(buf.freeze()));
        })
    });
    g.finish();
    let mut g = c.benchmark_group("fresh allocation (no pool)");
    for size in [512usize, 16 << 10, 1 << 20] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| drop(black_box(vec![0u8; size])))
        });
    }
    g.finish();
}

fn other_thread(c: &mut Criterion) {
    // Buffers go to another thread in batches of 64 and are dropped there.
    let pool = BufferPool::default();
    let (tx, rx) = mpsc::sync_channel::<Vec<bytes::Bytes>>(4);
    let dropper = std::thread::spawn(move || {
        for batch in rx {
            drop(batch);
        }
    });
    c.bench_function("pool get, freed on another thread (per buffer, 16 KiB)", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut batch = Vec::with_capacity(64);
            for _ in 0..iters {
                let mut buf = pool.allocate(16 << 10);
                buf.commit(1);
                batch.push(buf.freeze());
                if batch.len() == 64 {
                    tx.send(std::mem::replace(&mut batch, Vec::with_capacity(64)))
                        .unwrap();
                }
            }
            tx.send(batch).unwrap();
            start.elapsed()
        })
    });
    drop(tx);
    dropper.join().unwrap();
}

criterion_group!(benches, same_thread, other_thread);
criterion_main!(benches);
