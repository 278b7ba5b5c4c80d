//! Input formats shared by the fuzz targets and the seed-corpus generator.
//!
//! `frame_decoder` inputs are `[flags, seed, stream...]`:
//!
//! | bits of `flags` | meaning |
//! | --- | --- |
//! | 0–1 | maximum frame size: 64 B, 4 KiB, 64 KiB or 1 MiB ([`MAX_FRAME_SIZES`]) |
//! | 2–3 | largest chunk handed to the decoder: 1, 8, 64 bytes or the whole rest ([`MAX_CHUNKS`]) |
//! | 4 | read the rest of a split frame through `direct_read_buf` / `commit_direct_read` |
//!
//! `seed` drives a xorshift generator that picks each chunk's length in
//! `1..=max_chunk`, so the fuzzer controls the splits through one byte and the
//! stream stays readable as plain frames in the corpus.
//!
//! `message_validation` inputs are a frame body as is: an envelope followed by
//! an rkyv archive, or (for replies, which carry no envelope) an archive alone.

#![deny(missing_docs)]

/// The standalone cluster's messages (Spark's `DeployMessages`): enums with
/// strings, nested structs and `Option`s, compiled from the standalone crate's
/// own `messages.rs` so that the fuzz build skips that crate's web-UI and CLI
/// dependencies. The archives are byte for byte the standalone crate's; only
/// the type fingerprint in an envelope differs (it hashes the type's path,
/// `spark_rpc_fuzz::messages::…` here), which the target does not rely on.
#[path = "../../crates/standalone/src/messages.rs"]
pub mod messages;

/// Maximum frame sizes (bytes, length prefix included) selected by bits 0–1 of `flags`.
pub const MAX_FRAME_SIZES: [u64; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// Largest chunk lengths (bytes) selected by bits 2–3 of `flags`; `usize::MAX` = the whole rest.
pub const MAX_CHUNKS: [usize; 4] = [1, 8, 64, usize::MAX];

/// Bit 4 of `flags`: feed the rest of a split frame through `direct_read_buf`.
pub const DIRECT_READ: u8 = 1 << 4;

/// A decoded `frame_decoder` input.
#[derive(Debug, Clone, Copy)]
pub struct DecoderInput<'a> {
    /// The decoder's maximum frame size, in bytes.
    pub max_frame_size: u64,
    /// Largest chunk handed to the decoder at once, in bytes.
    pub max_chunk: usize,
    /// Whether the rest of a split frame is read through `direct_read_buf`.
    pub direct: bool,
    /// Seed of the chunk-length generator.
    pub seed: u8,
    /// The byte stream as it would arrive on a socket.
    pub stream: &'a [u8],
}

impl<'a> DecoderInput<'a> {
    /// Splits `data` into settings and stream; `None` when shorter than 2 bytes.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let (&seed, stream) = rest.split_first()?;
        Some(Self {
            max_frame_size: MAX_FRAME_SIZES[usize::from(flags & 3)],
            max_chunk: MAX_CHUNKS[usize::from((flags >> 2) & 3)],
            direct: flags & DIRECT_READ != 0,
            seed,
            stream,
        })
    }

    /// The chunk lengths to cut the stream into, in order; they sum to `stream.len()`.
    pub fn chunk_lengths(&self) -> Vec<usize> {
        let mut state = u32::from(self.seed).wrapping_mul(0x9E37_79B9) | 1;
        let mut left = self.stream.len();
        let mut out = Vec::new();
        while left > 0 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let cap = self.max_chunk.min(left);
            let len = if cap == left && self.max_chunk == usize::MAX {
                left
            } else {
                1 + (state as usize) % cap
            };
            out.push(len);
            left -= len;
        }
        out
    }
}

/// Builds a `frame_decoder` input from its settings and stream (the inverse of
/// [`DecoderInput::parse`]).
pub fn decoder_input(flags: u8, seed: u8, stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + stream.len());
    out.push(flags);
    out.push(seed);
    out.extend_from_slice(stream);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lengths_cover_the_stream_within_the_cap() {
        let stream = [0u8; 1000];
        for flags in 0..=0x1f_u8 {
            for seed in [0u8, 1, 77, 255] {
                let data = decoder_input(flags, seed, &stream);
                let input = DecoderInput::parse(&data).unwrap();
                let lens = input.chunk_lengths();
                assert_eq!(lens.iter().sum::<usize>(), stream.len());
                assert!(lens.iter().all(|&l| l >= 1 && l <= input.max_chunk));
            }
        }
        assert!(DecoderInput::parse(&[1]).is_none());
    }
}
