//! Hand-written Spark network-common frame headers for the raw tokio baseline,
//! deliberately independent of the `transport` crate's codec.
//!
//! Layout (big-endian): frame length counting its own 8 bytes (i64), type (u8:
//! 3 = RpcRequest, 4 = RpcResponse), request id (i64), body length (i32), body.

/// Bytes of an RpcRequest or RpcResponse header, length prefix included.
pub const HEADER_LEN: usize = 8 + 1 + 8 + 4;
/// Type byte of an RpcRequest.
pub const RPC_REQUEST: u8 = 3;
/// Type byte of an RpcResponse.
pub const RPC_RESPONSE: u8 = 4;

/// Appends the header of an RPC frame of type `kind` with `body_len` bytes of body.
#[inline]
pub fn put_header(out: &mut Vec<u8>, kind: u8, request_id: i64, body_len: usize) {
    out.extend_from_slice(&((HEADER_LEN + body_len) as i64).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&(body_len as i32).to_be_bytes());
}

/// What the front of a receive buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A whole RPC frame of this many bytes, header included.
    Frame(usize),
    /// Not a whole frame yet; the frame's full length once its prefix has arrived.
    Partial(Option<usize>),
    /// Not an RPC frame this baseline understands (length below a header, or negative).
    Invalid,
}

/// Looks at the front of `buf` for one complete frame.
#[inline]
pub fn cut(buf: &[u8]) -> Cut {
    let Some(prefix) = buf.first_chunk::<8>() else {
        return Cut::Partial(None);
    };
    let len = i64::from_be_bytes(*prefix);
    if len < HEADER_LEN as i64 || len > isize::MAX as i64 {
        return Cut::Invalid;
    }
    let len = len as usize;
    if buf.len() >= len {
        Cut::Frame(len)
    } else {
        Cut::Partial(Some(len))
    }
}

/// The type byte of a whole frame (see [`cut`]).
#[inline]
pub fn kind(frame: &[u8]) -> u8 {
    frame[8]
}

/// The request id of a whole frame (see [`cut`]).
#[inline]
pub fn request_id(frame: &[u8]) -> i64 {
    i64::from_be_bytes(
        frame[9..17]
            .try_into()
            .expect("a whole frame has a 21-byte header"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, id: i64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, kind, id, body.len());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn header_matches_the_transport_codec() {
        let body = bytes::Bytes::from_static(b"ping");
        let ours = frame(RPC_REQUEST, 7, &body);
        let theirs = transport::EncodedFrame::rpc_request(7, body).unwrap();
        assert_eq!(&ours[..HEADER_LEN], theirs.header());
        let theirs = transport::EncodedFrame::rpc_response(-2, bytes::Bytes::new()).unwrap();
        assert_eq!(frame(RPC_RESPONSE, -2, b""), theirs.header());
    }

    #[test]
    fn short_and_corrupt_prefixes() {
        assert_eq!(cut(&[]), Cut::Partial(None));
        assert_eq!(cut(&[0; 7]), Cut::Partial(None));
        assert_eq!(cut(&20i64.to_be_bytes()), Cut::Invalid);
        assert_eq!(cut(&(-1i64).to_be_bytes()), Cut::Invalid);
        assert_eq!(cut(&25i64.to_be_bytes()), Cut::Partial(Some(25)));
    }

    proptest! {
        /// Frames fed in arbitrary pieces come out whole, in order, ids and bodies intact.
        #[test]
        fn cuts_frames_at_any_split(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
            pieces in prop::collection::vec(1usize..64, 1..50),
        ) {
            let mut wire = Vec::new();
            for (i, b) in bodies.iter().enumerate() {
                wire.extend(frame(RPC_RESPONSE, i as i64, b));
            }
            let (mut buf, mut got, mut at, mut p) = (Vec::new(), Vec::new(), 0, 0);
            while at < wire.len() {
                let n = pieces[p % pieces.len()].min(wire.len() - at);
                buf.extend_from_slice(&wire[at..at + n]);
                at += n;
                p += 1;
                while let Cut::Frame(len) = cut(&buf) {
                    prop_assert_eq!(kind(&buf), RPC_RESPONSE);
                    got.push((request_id(&buf), buf[HEADER_LEN..len].to_vec()));
                    buf.drain(..len);
                }
                prop_assert_ne!(cut(&buf), Cut::Invalid);
            }
            prop_assert!(buf.is_empty());
            let want: Vec<_> = bodies.into_iter().enumerate().map(|(i, b)| (i as i64, b)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
