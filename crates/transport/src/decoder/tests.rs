use super::*;
use crate::frame::EncodedFrame;
use proptest::prelude::*;

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in frames {
        let e = f.encode().unwrap();
        v.extend_from_slice(e.header());
        v.extend_from_slice(e.body());
    }
    v
}

fn sample() -> Vec<Frame> {
    vec![
        Frame::RpcRequest {
            request_id: 1,
            body: Bytes::from_static(b"hello"),
        },
        Frame::OneWayMessage { body: Bytes::new() },
        Frame::RpcFailure {
            request_id: -5,
            error: "it broke: ü".into(),
        },
        Frame::RpcResponse {
            request_id: i64::MAX,
            body: Bytes::from(vec![9u8; 300]),
        },
    ]
}

fn decode_all(dec: &mut FrameDecoder, chunks: Vec<Bytes>) -> Result<Vec<Frame>, DecodeError> {
    let mut got = Vec::new();
    for c in chunks {
        dec.decode(c, &mut |f| got.push(f))?;
    }
    Ok(got)
}

fn decoder() -> FrameDecoder {
    FrameDecoder::new(1 << 20, BufferPool::new(1 << 20))
}

#[test]
fn every_split_point_of_several_frames() {
    let frames = sample();
    let bytes = wire(&frames);
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            let chunks = vec![
                Bytes::copy_from_slice(&bytes[..a]),
                Bytes::copy_from_slice(&bytes[a..b]),
                Bytes::copy_from_slice(&bytes[b..]),
            ];
            let got = decode_all(&mut decoder(), chunks).unwrap();
            assert_eq!(got, frames, "split at {a} and {b}");
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let frames = sample();
    let chunks = wire(&frames)
        .into_iter()
        .map(|b| Bytes::copy_from_slice(&[b]))
        .collect();
    let mut dec = decoder();
    assert_eq!(decode_all(&mut dec, chunks).unwrap(), frames);
    assert_eq!(dec.pending_bytes(), 0);
}

#[test]
fn whole_frame_body_is_a_slice_of_the_chunk() {
    let chunk = Bytes::from(wire(&sample()));
    let range = chunk.as_ptr_range();
    let mut bodies = Vec::new();
    decoder()
        .decode(chunk.clone(), &mut |f| {
            if let Frame::RpcRequest { body, .. } | Frame::RpcResponse { body, .. } = f {
                bodies.push(body)
            }
        })
        .unwrap();
    assert_eq!(bodies.len(), 2);
    for b in bodies {
        assert!(range.contains(&b.as_ptr()), "body was copied");
    }
}

#[test]
fn direct_read_fills_the_frame_in_place() {
    let frame = Frame::RpcResponse {
        request_id: 3,
        body: Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>()),
    };
    let bytes = wire(std::slice::from_ref(&frame));
    let mut dec = decoder();
    let mut got = Vec::new();
    dec.decode(Bytes::copy_from_slice(&bytes[..30]), &mut |f| got.push(f))
        .unwrap();
    assert_eq!(dec.pending_bytes(), bytes.len() - 30);
    let mut at = 30;
    while dec.pending_bytes() > 0 {
        let buf = dec.direct_read_buf().unwrap();
        let n = buf.len().min(7000);
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        at += n;
        dec.commit_direct_read(n, &mut |f| got.push(f)).unwrap();
    }
    assert_eq!(got, vec![frame]);
    assert!(dec.direct_read_buf().is_none());
}

fn first_error(bytes: &[u8]) -> DecodeError {
    decode_all(&mut decoder(), vec![Bytes::copy_from_slice(bytes)]).unwrap_err()
}

#[test]
fn negative_length() {
    assert_eq!(
        first_error(&(-1i64).to_be_bytes()),
        DecodeError::NegativeLength { length: -1 }
    );
}

#[test]
fn length_below_any_header() {
    assert_eq!(
        first_error(&8i64.to_be_bytes()),
        DecodeError::LengthBelowHeader { length: 8, min: 9 }
    );
}

#[test]
fn length_below_the_types_header() {
    let mut b = 12i64.to_be_bytes().to_vec();
    b.push(3);
    assert_eq!(
        first_error(&b),
        DecodeError::LengthBelowHeader { length: 12, min: 21 }
    );
}

#[test]
fn length_over_maximum_is_refused_before_buffering() {
    let pool = BufferPool::new(1 << 20);
    let mut dec = FrameDecoder::new(1000, pool.clone());
    let err = dec
        .decode(Bytes::copy_from_slice(&1001i64.to_be_bytes()), &mut |_| {})
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::FrameTooLarge {
            length: 1001,
            max: 1000
        }
    );
    assert_eq!(pool.stats().served_fresh + pool.stats().served_from_pool, 0);
    assert!(err.to_string().contains("max_frame_size"));
}

#[test]
fn unknown_and_unsupported_types() {
    let mut b = 30i64.to_be_bytes().to_vec();
    b.push(42);
    assert_eq!(first_error(&b), DecodeError::UnknownType { id: 42 });
    b[8] = 0;
    assert_eq!(
        first_error(&b),
        DecodeError::UnsupportedType {
            id: 0,
            name: "ChunkFetchRequest"
        }
    );
}

#[test]
fn type_checked_before_body_arrives_on_split() {
    let mut dec = decoder();
    dec.decode(Bytes::copy_from_slice(&1000i64.to_be_bytes()), &mut |_| {})
        .unwrap();
    assert_eq!(
        dec.decode(Bytes::from_static(&[200]), &mut |_| {}).unwrap_err(),
        DecodeError::UnknownType { id: 200 }
    );
}

#[test]
fn body_length_mismatch() {
    let e = EncodedFrame::rpc_request(1, Bytes::from_static(b"abcd")).unwrap();
    let mut b = e.header().to_vec();
    b.extend_from_slice(e.body());
    b[17..21].copy_from_slice(&3i32.to_be_bytes());
    assert_eq!(
        first_error(&b),
        DecodeError::BodyLengthMismatch {
            declared: 3,
            actual: 4
        }
    );
}

#[test]
fn invalid_utf8_in_failure() {
    let e = EncodedFrame::rpc_failure(1, "ab").unwrap();
    let mut b = e.header().to_vec();
    b.extend_from_slice(&[b'a', 0xff]);
    assert_eq!(first_error(&b), DecodeError::InvalidUtf8 { valid_up_to: 1 });
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let body = proptest::collection::vec(any::<u8>(), 0..600).prop_map(Bytes::from);
    prop_oneof![
        (any::<i64>(), body.clone()).prop_map(|(request_id, body)| Frame::RpcRequest { request_id, body }),
        (any::<i64>(), body.clone()).prop_map(|(request_id, body)| Frame::RpcResponse { request_id, body }),
        (any::<i64>(), ".{0,40}").prop_map(|(request_id, error)| Frame::RpcFailure { request_id, error }),
        body.prop_map(|body| Frame::OneWayMessage { body }),
    ]
}

proptest! {
    #[test]
    fn round_trip_in_any_split(frames in proptest::collection::vec(arb_frame(), 0..12),
                               cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let bytes = wire(&frames);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let chunks = points.windows(2).map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]])).collect();
        let got = decode_all(&mut decoder(), chunks).unwrap();
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_all(&mut decoder(), vec![Bytes::from(bytes)]);
    }
}

#[test]
fn finish_reports_a_frame_cut_off_mid_header_or_mid_body() {
    let wire = {
        let f = EncodedFrame::one_way(Bytes::from_static(b"hello")).unwrap();
        [f.header(), &f.body()[..]].concat()
    };
    let mut d = FrameDecoder::new(1 << 20, BufferPool::default());
    assert_eq!(d.finish(), Ok(()));
    d.decode(Bytes::copy_from_slice(&wire[..5]), &mut |_| ()).unwrap();
    let e = d.finish().unwrap_err();
    assert_eq!(
        e,
        DecodeError::Truncated {
            received: 5,
            missing: None
        }
    );
    assert!(e.to_string().contains("mid-frame") && e.to_string().contains("8-byte length"));
    let mut d = FrameDecoder::new(1 << 20, BufferPool::default());
    d.decode(Bytes::copy_from_slice(&wire[..wire.len() - 2]), &mut |_| ())
        .unwrap();
    assert_eq!(
        d.finish(),
        Err(DecodeError::Truncated {
            received: wire.len() - 2,
            missing: Some(2)
        })
    );
    d.decode(Bytes::copy_from_slice(&wire[wire.len() - 2..]), &mut |_| ())
        .unwrap();
    assert_eq!(d.finish(), Ok(()));
}
