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
//! The cost is memory held: a chunk stays alive while any message cut from it
//! is queued, and a thread keeps up to 8 earlier chunks to reuse once their
//! messages are written (so sending 1 MiB messages allocates nothing either,
//! once a thread has chunks of that size).

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use rkyv::ser::{Positional, Writer};

/// Bytes a thread's encoding chunk is allocated with (64 KiB); a larger message gets a chunk of its size.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;
/// Free bytes below which a message starts a new chunk (8 KiB): most messages
/// then fit whole, and a chunk is not grown by copying a message half written.
const CHUNK_MIN_FREE: usize = 8 * 1024;

/// Spare chunks a thread keeps for reuse once every message cut from them has
/// dropped (at most 8, so at most 8 chunks of its largest message).
const SPARES: usize = 8;

/// One thread's encoding chunks.
#[derive(Default)]
struct Chunks {
    /// Where the next message goes.
    current: BytesMut,
    /// Earlier chunks, reused (`BytesMut::try_reclaim`) once unique again.
    spares: Vec<BytesMut>,
    /// Bytes of the last message encoded: the room the next one likely needs.
    last_len: usize,
}

impl Chunks {
    /// Makes sure `current` has `need` bytes free: a spare that every message
    /// cut from it has released, or else a new chunk. A fresh `BytesMut` made
    /// by `with_capacity` also grows by whole chunks if a message outgrows it,
    /// where one grown from empty would grow to the exact size asked and then
    /// allocate again for every message.
    fn make_room(&mut self, need: usize) {
        if self.current.capacity() >= need {
            return;
        }
        let old = std::mem::take(&mut self.current);
        if old.capacity() > 0 || !old.is_empty() {
            if self.spares.len() == SPARES {
                self.spares.remove(0);
            }
            self.spares.push(old);
        }
        if let Some(i) = self.spares.iter_mut().position(|c| c.try_reclaim(need)) {
            self.current = self.spares.swap_remove(i);
        } else {
            self.current = BytesMut::with_capacity(need.max(CHUNK_BYTES));
        }
    }
}

thread_local! {
    static CHUNKS: RefCell<Chunks> = RefCell::new(Chunks::default());
}

/// Runs `write` to append one message to this thread's chunk, with room for at
/// least `size_hint` bytes (or the last message's size, if larger) made
/// first, and returns what it wrote as a `Bytes` sharing the chunk. Called
/// re-entrantly (from inside `write`), or while the thread is exiting and its
/// chunk is gone (a send or ask from another thread-local's destructor), it
/// encodes into a buffer of its own instead.
///
/// # Errors
/// What `write` returns; the bytes it wrote are then discarded.
pub(crate) fn encode_with<E>(
    size_hint: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut write = Some(write);
    let shared = CHUNKS.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut chunks) => {
            let write = write.take().expect("taken once");
            let need = size_hint.max(CHUNK_MIN_FREE).max(chunks.last_len + 64);
            chunks.make_room(need);
            Some(match write(&mut chunks.current) {
                Ok(()) => {
                    let message = chunks.current.split().freeze();
                    chunks.last_len = message.len();
                    Ok(message)
                }
                Err(e) => {
                    chunks.current.clear();
                    Err(e)
                }
            })
        }
        Err(_) => None,
    });
    match shared {
        Ok(Some(result)) => result,
        // Re-entered, or the thread's chunk is destroyed: a buffer of its own.
        _ => {
            let write = write.take().expect("not taken when the chunk was not used");
            let mut own = BytesMut::with_capacity(size_hint);
            write(&mut own)?;
            Ok(own.freeze())
        }
    }
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

    #[test]
    fn large_messages_reuse_released_chunks() {
        use crate::message::RpcMessage;
        let payload = Bytes::from(vec![3u8; 1 << 20]);
        let first = encode_with(80, |out| payload.encode(out)).unwrap();
        let first_ptr = first.as_ptr();
        drop(first);
        let mut seen_reuse = false;
        for _ in 0..4 {
            let b = encode_with(80, |out| payload.encode(out)).unwrap();
            assert_eq!(b.len(), (1 << 20) + 8);
            seen_reuse |= b.as_ptr() == first_ptr;
            drop(b);
        }
        assert!(
            seen_reuse,
            "a 1 MiB chunk whose message was dropped is used again"
        );
    }

    #[test]
    fn messages_larger_than_the_free_space_start_new_whole_chunks() {
        use crate::message::RpcMessage;
        let payload = Bytes::from(vec![1u8; 4096]);
        let mut kept = Vec::new();
        let mut fresh = 0;
        for _ in 0..200 {
            let b = encode_with(80, |out| payload.encode(out)).unwrap();
            if let Some(prev) = kept.last() {
                let prev: &Bytes = prev;
                if prev.as_ptr().wrapping_add(prev.len()) != b.as_ptr() {
                    fresh += 1;
                }
            }
            // Every message stays alive: chunks cannot be reused in place.
            kept.push(b);
        }
        assert!(
            fresh <= 200 / 13,
            "a new chunk per 13+ messages of 4 KiB, not per message: {fresh}"
        );
    }
}
