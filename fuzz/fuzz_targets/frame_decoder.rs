//! Fuzzes `transport::FrameDecoder` (Spark's `TransportFrameDecoder` +
//! `MessageDecoder`) with arbitrary bytes cut into arbitrary chunks.
//!
//! Input: `[flags, seed, stream...]` (see `spark_rpc_fuzz::DecoderInput`).
//! Checked on every input:
//! - the decoder never panics; failures are `DecodeError` values;
//! - the split does not matter: the frames and the error are those of the
//!   same stream fed in one chunk;
//! - the frames re-encode (`Frame::encode`) to exactly the bytes they were
//!   decoded from, in order, from the start of the stream;
//! - without an error, `finish()` is Ok exactly when every byte was used, and
//!   reports `Truncated` with the right counts otherwise;
//! - with bit 4 of `flags`, the rest of split frames is written through
//!   `direct_read_buf` / `commit_direct_read` as a backend's large reads are.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spark_rpc_fuzz::DecoderInput;
use transport::{BufferPool, DecodeError, Frame, FrameDecoder};

/// What a decoder made of a stream: its frames, in order, and the first error.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<DecodeError>,
}

fn one_chunk(input: &DecoderInput<'_>, pool: &BufferPool) -> Outcome {
    let mut decoder = FrameDecoder::new(input.max_frame_size, pool.clone());
    let mut frames = Vec::new();
    let error = decoder
        .decode(Bytes::copy_from_slice(input.stream), &mut |f| frames.push(f))
        .err();
    Outcome { frames, error }
}

fn split(input: &DecoderInput<'_>, pool: &BufferPool) -> (Outcome, FrameDecoder) {
    let mut decoder = FrameDecoder::new(input.max_frame_size, pool.clone());
    let mut frames = Vec::new();
    let mut at = 0;
    for len in input.chunk_lengths() {
        let mut chunk = &input.stream[at..at + len];
        at += len;
        let result = (|| {
            if input.direct && decoder.pending_bytes() > 0 {
                let pending = decoder.pending_bytes();
                let buf = decoder
                    .direct_read_buf()
                    .expect("pending bytes imply a direct-read buffer");
                assert_eq!(
                    buf.len(),
                    pending,
                    "direct_read_buf must be exactly pending_bytes long"
                );
                let n = pending.min(chunk.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                decoder.commit_direct_read(n, &mut |f| frames.push(f))?;
            }
            decoder.decode(Bytes::copy_from_slice(chunk), &mut |f| frames.push(f))
        })();
        if let Err(error) = result {
            return (
                Outcome {
                    frames,
                    error: Some(error),
                },
                decoder,
            );
        }
    }
    (Outcome { frames, error: None }, decoder)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = DecoderInput::parse(data) else {
        return;
    };
    let pool = BufferPool::new(4 << 20);
    let reference = one_chunk(&input, &pool);
    let (outcome, decoder) = split(&input, &pool);
    assert_eq!(outcome, reference, "the chunk split changed what was decoded");

    let mut wire = Vec::with_capacity(input.stream.len());
    for frame in &outcome.frames {
        let encoded = frame.encode().expect("a decoded frame fits the length field");
        assert_eq!(encoded.len(), encoded.header().len() + encoded.body().len());
        wire.extend_from_slice(encoded.header());
        wire.extend_from_slice(encoded.body());
    }
    assert!(wire.len() <= input.stream.len(), "frames longer than the stream");
    assert_eq!(
        wire,
        input.stream[..wire.len()],
        "a frame did not re-encode to its bytes"
    );

    match &outcome.error {
        Some(error) => {
            assert!(
                wire.len() < input.stream.len(),
                "an error with every byte used: {error}"
            );
            assert!(!error.to_string().is_empty());
        }
        None => {
            let left = input.stream.len() - wire.len();
            match decoder.finish() {
                Ok(()) => assert_eq!(left, 0, "finish() accepted {left} unused bytes"),
                Err(DecodeError::Truncated { received, missing }) => {
                    assert_eq!(received, left, "Truncated counts the wrong bytes");
                    assert_eq!(
                        missing,
                        (decoder.pending_bytes() > 0).then(|| decoder.pending_bytes())
                    );
                    assert!(left > 0);
                }
                Err(other) => panic!("finish() failed with {other:?}, expected Truncated"),
            }
        }
    }
});
