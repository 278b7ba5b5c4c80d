//! Encoding messages without a heap allocation per message.
//!
//! Every thread serializes into a chunk of its own (a [`BytesMut`] of
//! [`CHUNK_BYTES`]) and hands each encoded message out as a [`Bytes`] split off
//! the front of that chunk, sharing it by reference count, as tokio-util's
//! codecs and Netty's pooled `ByteBuf`s do. A message costs a refcount, not a
//! `malloc`: a new chunk is allocated once the current one is used up, i.e.
//! about once per 64 KiB of encoded messages, or reused in place when every
//! message cut from it has already been dropped (written to the socket).
//!
//! The cost is memory held: one chunk stays alive while any message cut from
//! it is queued, so a thread holds at most a few chunks at a time.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use rkyv::ser::{Positional, Writer};

/// Bytes a thread's encoding chunk is allocated with (64 KiB); a larger message gets a chunk of its size.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

thread_local! {
    static CHUNK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Runs `write` to append one message to this thread's chunk, with room for at
/// least `size_hint` bytes reserved, and returns what it wrote as a `Bytes`
/// sharing the chunk. Called re-entrantly (from inside `write`), it encodes
/// into a buffer of its own instead.
///
/// # Errors
/// What `write` returns; the bytes it wrote are then discarded.
pub(crate) fn encode_with<E>(
    size_hint: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    CHUNK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut chunk) => {
            if chunk.capacity() < size_hint {
                chunk.reserve(size_hint.max(CHUNK_BYTES));
            }
            match write(&mut chunk) {
                Ok(()) => Ok(chunk.split().freeze()),
                Err(e) => {
                    chunk.clear();
                    Err(e)
                }
            }
        }
        Err(_) => {
            let mut own = BytesMut::with_capacity(size_hint);
            write(&mut own)?;
            Ok(own.freeze())
        }
    })
}

/// The rkyv [`Writer`] messages are serialized with: it appends to a
/// [`BytesMut`], and its position counts from that buffer's start (an archive
/// in the unaligned format reads the same at any offset, so a header may
/// precede it).
#[derive(Debug, Default)]
pub struct ArchiveWriter(pub BytesMut);

impl Positional for ArchiveWriter {
    fn pos(&self) -> usize {
        self.0.len()
    }
}

impl<E> Writer<E> for ArchiveWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_share_one_chunk_and_stay_intact() {
        let a = encode_with::<()>(16, |b| {
            b.extend_from_slice(b"first");
            Ok(())
        })
        .unwrap();
        let b = encode_with::<()>(16, |b| {
            b.extend_from_slice(b"second");
            Ok(())
        })
        .unwrap();
        assert_eq!(&a[..], b"first");
        assert_eq!(&b[..], b"second");
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr(), "cut from one chunk");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let err = encode_with(8, |b| {
            b.extend_from_slice(b"partial");
            Err("boom")
        });
        assert_eq!(err.unwrap_err(), "boom");
        let ok = encode_with::<()>(8, |b| {
            b.extend_from_slice(b"whole");
            Ok(())
        })
        .unwrap();
        assert_eq!(&ok[..], b"whole");
    }

    #[test]
    fn a_message_larger_than_a_chunk_gets_room() {
        let big = encode_with::<()>(CHUNK_BYTES * 3, |b| {
            b.extend_from_slice(&vec![7u8; CHUNK_BYTES * 3]);
            Ok(())
        })
        .unwrap();
        assert_eq!(big.len(), CHUNK_BYTES * 3);
        assert!(big.iter().all(|&x| x == 7));
    }

    #[test]
    fn reentrant_use_encodes_apart() {
        let outer = encode_with::<()>(8, |b| {
            let inner = encode_with::<()>(8, |b| {
                b.extend_from_slice(b"inner");
                Ok(())
            })
            .unwrap();
            b.extend_from_slice(&inner);
            Ok(())
        })
        .unwrap();
        assert_eq!(&outer[..], b"inner");
    }
}
