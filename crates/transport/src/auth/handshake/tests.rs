use super::*;

fn n(b: u8) -> [u8; NONCE_LEN] {
    [b; NONCE_LEN]
}

/// Runs the four steps; returns the server's and client's results.
fn run(client_secret: &[u8], server_secret: &[u8]) -> (Result<(), AuthError>, Result<(), AuthError>) {
    let mut c = ClientHandshake::new(client_secret, n(1));
    let mut s = ServerHandshake::new(server_secret, n(2));
    let challenge = s.on_hello(&c.hello()).unwrap();
    let proof = c.on_challenge(&challenge).unwrap();
    match s.on_client_proof(&proof) {
        Ok(server_proof) => (Ok(()), c.on_server_proof(&server_proof)),
        Err(e) => (Err(e), Ok(())),
    }
}

#[test]
fn same_secret_authenticates_both_ways() {
    let mut c = ClientHandshake::new(b"secret", n(1));
    let mut s = ServerHandshake::new(b"secret", n(2));
    let hello = c.hello();
    assert_eq!(hello.len(), MESSAGE_LEN);
    assert_eq!(&hello[..10], b"SPRKAUTH\x01\x01");
    assert_eq!(&hello[10..], &n(1));
    let challenge = s.on_hello(&hello).unwrap();
    assert_eq!(&challenge[..10], b"SPRKAUTH\x01\x02");
    let proof = c.on_challenge(&challenge).unwrap();
    assert_eq!(proof[9], 3);
    assert!(!s.is_done());
    let server_proof = s.on_client_proof(&proof).unwrap();
    assert!(s.is_done());
    assert_eq!(server_proof[9], 4);
    c.on_server_proof(&server_proof).unwrap();
    assert!(c.is_done());
}

#[test]
fn wrong_secret_is_refused_by_the_server_before_it_proves_anything() {
    let (server, _) = run(b"right", b"wrong");
    assert_eq!(server, Err(AuthError::WrongSecret));
    let (server, _) = run(b"", b"secret");
    assert_eq!(server, Err(AuthError::WrongSecret));
}

#[test]
fn client_refuses_a_server_with_another_secret() {
    let mut c = ClientHandshake::new(b"right", n(1));
    c.on_challenge(&encode(Step::ServerChallenge, &n(2))).unwrap();
    // An impostor's proof, made with another secret over the same nonces.
    let forged = encode(Step::ServerProof, &proof(b"other", SERVER_LABEL, &n(1), &n(2)));
    assert_eq!(c.on_server_proof(&forged), Err(AuthError::WrongSecret));
    assert!(!c.is_done());
    // And a reflected client proof is not a server proof (labels differ).
    let mut c = ClientHandshake::new(b"right", n(1));
    let mine = c.on_challenge(&encode(Step::ServerChallenge, &n(2))).unwrap();
    let mut reflected = mine.to_vec();
    reflected[9] = Step::ServerProof as u8;
    assert_eq!(c.on_server_proof(&reflected), Err(AuthError::WrongSecret));
}

#[test]
fn replayed_proof_fails_against_a_fresh_challenge() {
    // Record a successful exchange.
    let mut c = ClientHandshake::new(b"secret", n(1));
    let mut s = ServerHandshake::new(b"secret", n(2));
    let hello = c.hello();
    let proof = c.on_challenge(&s.on_hello(&hello).unwrap()).unwrap();
    s.on_client_proof(&proof).unwrap();
    // Replay it to a server that picked another nonce.
    let mut s2 = ServerHandshake::new(b"secret", n(3));
    s2.on_hello(&hello).unwrap();
    assert_eq!(s2.on_client_proof(&proof), Err(AuthError::WrongSecret));
}

#[test]
fn out_of_order_and_malformed_messages_fail() {
    let mut s = ServerHandshake::new(b"k", n(2));
    let e = s.on_client_proof(&encode(Step::ClientProof, &n(0))).unwrap_err();
    assert!(matches!(e, AuthError::OutOfOrder { .. }), "{e}");
    let mut s = ServerHandshake::new(b"k", n(2));
    for bad in [
        &b"garbage"[..],
        &b"SPRKAUTH"[..],
        &encode(Step::ClientProof, &n(1))[..],
        &[&encode(Step::ClientHello, &n(1))[..], b"x"].concat()[..],
    ] {
        let e = ServerHandshake::new(b"k", n(2)).on_hello(bad).unwrap_err();
        assert!(matches!(e, AuthError::Malformed { .. }), "{e}");
    }
    let mut wrong_version = encode(Step::ClientHello, &n(1)).to_vec();
    wrong_version[8] = 9;
    assert!(
        s.on_hello(&wrong_version)
            .unwrap_err()
            .to_string()
            .contains("version 9")
    );
    // A failed handshake stays failed.
    assert!(matches!(
        s.on_hello(&encode(Step::ClientHello, &n(1))),
        Err(AuthError::OutOfOrder { .. })
    ));
    // The server refuses its own nonce reflected back.
    let e = ServerHandshake::new(b"k", n(2))
        .on_hello(&encode(Step::ClientHello, &n(2)))
        .unwrap_err();
    assert!(matches!(e, AuthError::Malformed { .. }));
    let mut c = ClientHandshake::new(b"k", n(1));
    assert!(c.on_server_proof(&encode(Step::ServerProof, &n(0))).is_err());
}

#[test]
fn fresh_nonces_differ() {
    assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    assert!(is_handshake(&encode(Step::ClientHello, &n(0))));
    assert!(!is_handshake(b"\x01rest-of-an-envelope"));
}
