//! [`PooledBufMut`]: a writable buffer from a [`BufferPool`](super::BufferPool).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Shared;

/// A writable buffer from a [`BufferPool`](super::BufferPool): `capacity()`
/// bytes of memory, of which the first `len()` are filled. Returns to its
/// pool when dropped; after [`freeze`](Self::freeze) it returns at once and
/// is reused when the last [`Bytes`] of it drops.
pub struct PooledBufMut {
    /// The whole buffer, every byte initialized: `data.len()` is the
    /// capacity, of which the first `filled` bytes are filled.
    data: BytesMut,
    filled: usize,
    /// The class size (the capacity when handed out), for the pool to file it.
    size: usize,
    pool: Option<Arc<Shared>>,
}

impl std::fmt::Debug for PooledBufMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBufMut")
            .field("len", &self.filled)
            .field("capacity", &self.data.len())
            .finish()
    }
}

impl PooledBufMut {
    /// Wraps `data`, whose `len()` bytes are all initialized, as an empty buffer.
    pub(super) fn new(data: BytesMut, pool: Option<Arc<Shared>>) -> Self {
        Self {
            size: data.len(),
            data,
            filled: 0,
            pool,
        }
    }

    /// Bytes filled so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether nothing is filled yet.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Total bytes of memory, filled or not.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes that can still be written.
    pub fn remaining_mut(&self) -> usize {
        self.data.len() - self.filled
    }

    /// The filled bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.filled]
    }

    /// The unfilled part (initialized memory: zeroes, or bytes of an earlier
    /// use), to read into (for example with `read(2)`); follow with
    /// [`commit`](Self::commit) of the bytes written. Its address stays put
    /// while the buffer is moved, until it is dropped or frozen.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.filled..]
    }

    /// Marks `n` more bytes of the spare part as filled.
    ///
    /// # Panics
    /// If `n` exceeds [`remaining_mut`](Self::remaining_mut).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.remaining_mut(), "commit({n}) past capacity");
        self.filled += n;
    }

    /// Appends `src`.
    ///
    /// # Panics
    /// If `src` does not fit in [`remaining_mut`](Self::remaining_mut).
    pub fn put_slice(&mut self, src: &[u8]) {
        let end = self.filled + src.len();
        assert!(end <= self.data.len(), "put_slice past capacity");
        self.data[self.filled..end].copy_from_slice(src);
        self.filled = end;
    }

    /// Empties the buffer (keeps its memory).
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Turns the filled bytes into a [`Bytes`] without copying. A pooled
    /// buffer's emptied handle goes back to the pool at once and is reused
    /// only after the last clone or slice of the `Bytes` drops. Allocates
    /// nothing (the pool shares a buffer's memory when it allocates it),
    /// except for a buffer above 16 MiB (not pooled; its memory is freed when
    /// the last `Bytes` drops).
    pub fn freeze(mut self) -> Bytes {
        if self.pool.is_none() {
            let mut data = std::mem::take(&mut self.data);
            data.truncate(self.filled);
            return data.freeze();
        }
        let filled = std::mem::take(&mut self.filled);
        self.data.split_to(filled).freeze()
        // `self` drops here: `Drop` gives the rest of the handle back.
    }
}

impl AsRef<[u8]> for PooledBufMut {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for PooledBufMut {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data), self.size);
        }
    }
}
