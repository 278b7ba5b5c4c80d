use super::*;

#[test]
fn classes_round_up_to_powers_of_two() {
    assert_eq!(class_of(0), Some(0));
    assert_eq!(class_of(512), Some(0));
    assert_eq!(class_of(513), Some(1));
    assert_eq!(class_size(class_of(100_000).unwrap()), 131_072);
    assert_eq!(class_of(MAX_CLASS_SIZE), Some(NUM_CLASSES - 1));
    assert_eq!(class_of(MAX_CLASS_SIZE + 1), None);
}

#[test]
fn reuses_a_returned_buffer() {
    let pool = BufferPool::new(1 << 20);
    let mut b = pool.allocate(1000);
    assert_eq!(b.capacity(), 1024);
    b.put_slice(b"hello");
    let ptr = b.as_slice().as_ptr();
    drop(b);
    let s = pool.stats();
    assert_eq!((s.served_fresh, s.returned, s.bytes_held), (1, 1, 1024));
    let b = pool.allocate(700);
    assert_eq!(b.as_slice().as_ptr(), ptr, "same memory back");
    assert!(b.is_empty());
    let s = pool.stats();
    assert_eq!((s.served_from_pool, s.bytes_held), (1, 0));
}

#[test]
fn frozen_bytes_return_on_last_drop() {
    let pool = BufferPool::new(1 << 20);
    let mut b = pool.allocate(64);
    b.put_slice(&[1, 2, 3, 4]);
    let first = b.as_slice().as_ptr();
    let bytes = b.freeze();
    assert_eq!(bytes.as_ptr(), first, "frozen in place, no copy");
    let tail = bytes.slice(2..);
    drop(bytes);
    // The handle is back, but a slice still reads it: not handed out again.
    assert_eq!(pool.stats().returned, 1);
    let mut other = pool.allocate(64);
    assert_ne!(other.spare_mut().as_ptr(), first, "a slice still holds it");
    other.put_slice(&[9; 512]);
    assert_eq!(&tail[..], &[3, 4], "writing another buffer left it alone");
    assert_eq!(pool.stats().skipped_busy, 1);
    drop(other);
    drop(tail);
    // Oldest first: the buffer whose last slice just dropped comes back.
    let again = pool.allocate(64);
    assert_eq!(again.as_slice().as_ptr(), first);
    assert_eq!(again.capacity(), 512);
    assert_eq!(pool.stats().served_from_pool, 1);
}

#[test]
fn bound_on_held_bytes_holds() {
    let pool = BufferPool::new(4096);
    let bufs: Vec<_> = (0..10).map(|_| pool.allocate(1024)).collect();
    drop(bufs);
    let s = pool.stats();
    assert_eq!(s.bytes_held, 4096);
    assert_eq!((s.returned, s.released), (4, 6));
    assert!(s.bytes_held <= s.max_held_bytes);
}

#[test]
fn bound_counts_frozen_buffers_still_read() {
    let pool = BufferPool::new(4096);
    let frozen: Vec<_> = (0..10)
        .map(|i| {
            let mut b = pool.allocate(1024);
            b.put_slice(&[i; 1024]);
            b.freeze()
        })
        .collect();
    let s = pool.stats();
    assert_eq!((s.returned, s.released, s.bytes_held), (4, 6, 4096));
    for (i, f) in frozen.iter().enumerate() {
        assert!(f.iter().all(|&x| x == i as u8), "buffer {i} intact");
    }
    drop(frozen);
    // All ten are free now; the pool kept four of them and serves those.
    let again: Vec<_> = (0..5).map(|_| pool.allocate(1024)).collect();
    let s = pool.stats();
    assert_eq!((s.served_from_pool, s.served_fresh, s.bytes_held), (4, 11, 0));
    drop(again);
    assert!(pool.stats().bytes_held <= 4096);
}

#[test]
fn oversized_buffers_are_not_pooled() {
    let pool = BufferPool::new(usize::MAX);
    let b = pool.allocate(MAX_CLASS_SIZE + 1);
    assert_eq!(b.capacity(), MAX_CLASS_SIZE + 1);
    drop(b);
    assert_eq!(pool.stats().bytes_held, 0);
    assert_eq!(pool.stats().served_fresh, 1);
    let mut b = pool.allocate(MAX_CLASS_SIZE + 1);
    b.put_slice(b"big");
    let frozen = b.freeze();
    assert_eq!(&frozen[..], b"big");
    assert_eq!(pool.stats().bytes_held, 0);
}

#[test]
fn return_from_another_thread_is_reused() {
    let pool = BufferPool::new(1 << 20);
    let mut b = pool.allocate(2048);
    b.put_slice(b"x");
    let bytes = b.freeze();
    // The handle went to this thread's cache at freeze; the other thread only
    // drops the last reference.
    std::thread::spawn(move || drop(bytes)).join().unwrap();
    let s = pool.stats();
    assert_eq!((s.returned, s.bytes_held), (1, 2048));
    let _again = pool.allocate(2048);
    assert_eq!(pool.stats().served_from_pool, 1);
    assert_eq!(pool.stats().bytes_held, 0);
}

#[test]
fn cached_buffers_move_to_shared_lists_on_thread_exit() {
    let pool = BufferPool::new(1 << 20);
    let p2 = pool.clone();
    let ptr = std::thread::spawn(move || {
        let mut b = p2.allocate(2048);
        b.put_slice(b"y");
        let ptr = b.as_slice().as_ptr() as usize;
        drop(b.freeze());
        ptr
    })
    .join()
    .unwrap();
    let b = pool.allocate(2048);
    assert_eq!(b.as_slice().as_ptr() as usize, ptr);
    assert_eq!(pool.stats().served_from_pool, 1);
}

#[test]
fn large_classes_skip_thread_cache() {
    let pool = BufferPool::new(8 << 20);
    drop(pool.allocate(1 << 20));
    let p2 = pool.clone();
    let served = std::thread::spawn(move || {
        let _b = p2.allocate(1 << 20);
        p2.stats().served_from_pool
    })
    .join()
    .unwrap();
    assert_eq!(served, 1, "a 1 MiB buffer is shared across threads at once");
}

#[test]
fn reclaimed_buffer_is_whole_and_writable() {
    let pool = BufferPool::new(1 << 20);
    for fill in [0usize, 1, 100, 1024] {
        let mut b = pool.allocate(1024);
        assert_eq!((b.capacity(), b.len(), b.spare_mut().len()), (1024, 0, 1024));
        b.spare_mut()[..fill].fill(0xab);
        b.commit(fill);
        let frozen = b.freeze();
        assert_eq!(frozen.len(), fill);
        assert!(frozen.iter().all(|&x| x == 0xab));
    }
    let s = pool.stats();
    assert_eq!((s.served_fresh, s.served_from_pool), (1, 3));
}

#[test]
fn a_free_buffer_behind_busy_ones_is_found() {
    let pool = BufferPool::new(1 << 20);
    // Busy buffers returned first, then one free buffer behind them.
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let mut b = pool.allocate(512);
            b.commit(1);
            b.freeze()
        })
        .collect();
    let free = pool.allocate(512);
    let free_ptr = free.as_slice().as_ptr();
    drop(free);
    let before = pool.stats();
    let b = pool.allocate(512);
    assert_eq!(b.as_slice().as_ptr(), free_ptr);
    let s = pool.stats();
    assert_eq!(s.skipped_busy - before.skipped_busy, 3);
    assert_eq!(s.served_from_pool, 1);
    drop(busy);
}

#[test]
fn only_a_few_busy_buffers_are_tried_per_allocate() {
    let pool = BufferPool::new(1 << 20);
    let busy: Vec<_> = (0..RECLAIM_TRIES + 5)
        .map(|_| {
            let mut b = pool.allocate(512);
            b.commit(1);
            b.freeze()
        })
        .collect();
    let before = pool.stats();
    let _fresh = pool.allocate(512);
    let s = pool.stats();
    assert_eq!(s.skipped_busy - before.skipped_busy, RECLAIM_TRIES as u64);
    assert_eq!(s.served_fresh, RECLAIM_TRIES as u64 + 6);
    drop(busy);
}

#[test]
fn concurrent_freeze_and_drop_keep_data_and_bound() {
    let pool = BufferPool::new(64 << 10);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u8, bytes::Bytes)>(16);
    let dropper = std::thread::spawn(move || {
        for (tag, bytes) in rx {
            assert!(bytes.iter().all(|&x| x == tag), "buffer reused while read");
        }
    });
    for i in 0..2000u32 {
        let tag = (i % 251) as u8;
        let mut b = pool.allocate(4096);
        let n = b.remaining_mut();
        b.spare_mut().fill(tag);
        b.commit(n);
        tx.send((tag, b.freeze())).unwrap();
    }
    drop(tx);
    dropper.join().unwrap();
    let s = pool.stats();
    assert!(s.bytes_held <= s.max_held_bytes, "{s:?}");
    assert!(s.served_from_pool > 0, "{s:?}");
}
