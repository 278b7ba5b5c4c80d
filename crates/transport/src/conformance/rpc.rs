//! Cases about moving RPCs: matching, ordering, many connections, the reverse
//! direction and large frames.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TransportFactory;
use super::support::{
    Event, Probe, TIMEOUT, accepted, connect, echo_reply, echoed, first_difference, pattern, recv_within,
    serve, shutdown, test_conf, wait_event,
};
use crate::{TransportClient, TransportError};

/// 1,000 RpcRequests with distinct bodies, sent at once on one connection from
/// four threads; the server answers them in batches of 100 in reverse order.
/// Each callback must get exactly its own answer, once.
pub fn rpc_responses_match_requests(factory: &TransportFactory) {
    const N: usize = 1000;
    const BATCH: usize = 100;
    const SENDERS: usize = 4;
    let t = factory(test_conf());
    // Hold requests back and answer each batch last-first, so that a backend
    // matching answers by arrival order instead of by request id fails.
    let held = Mutex::new(Vec::new());
    let (server_probe, _server_events) = Probe::new(false, move |client, id, body| {
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        held.push((client.clone(), id, body));
        if held.len() == BATCH {
            for (c, id, body) in held.drain(..).rev() {
                echo_reply(&c, id, body);
            }
        }
    });
    let server = serve(&t, server_probe);
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);

    let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let start = Arc::new(Barrier::new(SENDERS));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (client, tx, start) = (client.clone(), tx.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in (s..N).step_by(SENDERS) {
                    let body = format!("req-{i:04}-{}", "x".repeat(i % 61));
                    let want = echoed(body.as_bytes());
                    let cb_tx = tx.clone();
                    let sent = client.send_rpc(Bytes::from(body), move |r| {
                        let outcome = match r {
                            Ok(got) => first_difference(&got, &want).map_or(Ok(()), |d| {
                                Err(format!("got {:?}: {d}", String::from_utf8_lossy(&got)))
                            }),
                            Err(e) => Err(format!("failed: {e}")),
                        };
                        let _ = cb_tx.send((i, outcome));
                    });
                    if let Err(e) = sent {
                        let _ = tx.send((i, Err(format!("send_rpc failed: {e}"))));
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join().expect("a sender thread panicked");
    }

    let mut answered = HashSet::new();
    for n in 0..N {
        let (i, outcome) = recv_within(&rx, TIMEOUT, &format!("answer {} of {N}", n + 1));
        if let Err(e) = outcome {
            panic!("request {i} did not get its own answer: {e}");
        }
        assert!(answered.insert(i), "request {i}'s callback was called twice");
    }
    assert_eq!(
        client.outstanding_rpcs(),
        0,
        "every RPC was answered, none may stay outstanding"
    );
    shutdown(&t);
}

/// One-way messages and RpcRequests interleaved, 0..3000 from one thread on one
/// connection: the server sees them in send order, and the responses (the
/// server answers at once) complete the callbacks in send order, each with its
/// own answer.
pub fn frames_keep_order_per_connection(factory: &TransportFactory) {
    const N: u32 = 3000;
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::new(true, echo_reply);
    let server = serve(&t, server_probe);
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);

    let (done_tx, done_rx) = mpsc::channel::<(u32, Result<Bytes, TransportError>)>();
    let mut rpcs = Vec::new();
    for i in 0..N {
        let body = Bytes::from(format!("{i:06}{}", "o".repeat(i as usize % 37)));
        if i % 3 == 0 {
            client
                .send_one_way(body)
                .unwrap_or_else(|e| panic!("send_one_way {i}: {e}"));
        } else {
            let done_tx = done_tx.clone();
            client
                .send_rpc(body, move |r| {
                    let _ = done_tx.send((i, r));
                })
                .unwrap_or_else(|e| panic!("send_rpc {i}: {e}"));
            rpcs.push(i);
        }
    }

    let seq = |body: &[u8]| -> u32 {
        std::str::from_utf8(&body[..6.min(body.len())])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u32::MAX)
    };
    for want in 0..N {
        let event = wait_event(&server_events, &format!("message {want} at the server"), |e| {
            matches!(e, Event::Rpc(..) | Event::OneWay(..))
        });
        let (kind, got) = match &event {
            Event::Rpc(_, _, body) => ("RpcRequest", seq(body)),
            Event::OneWay(_, body) => ("OneWayMessage", seq(body)),
            _ => unreachable!("filtered"),
        };
        assert_eq!(
            got, want,
            "the server's message {want} was {kind} {got}: frames were reordered"
        );
        let want_kind = if want % 3 == 0 {
            "OneWayMessage"
        } else {
            "RpcRequest"
        };
        assert_eq!(kind, want_kind, "message {want} arrived as the wrong type");
    }
    for &want in &rpcs {
        let (got, r) = recv_within(&done_rx, TIMEOUT, &format!("the response to request {want}"));
        assert_eq!(got, want, "callbacks completed out of send order");
        let body = r.unwrap_or_else(|e| panic!("request {got} failed: {e}"));
        assert_eq!(
            seq(&body[super::support::ECHO_PREFIX.len()..]),
            got,
            "request {got} got another's answer"
        );
    }
    shutdown(&t);
}

/// 64 connections opened at once from 64 threads, each with 32 RPCs in flight;
/// every one is answered with its own answer, and the server saw 64 connections.
pub fn many_connections_concurrently(factory: &TransportFactory) {
    const CONNS: usize = 64;
    const RPCS: usize = 32;
    let t = factory(crate::TransportConf {
        server_threads: 4,
        client_threads: 4,
        ..test_conf()
    });
    let (server_probe, server_events) = Probe::echo();
    let server = serve(&t, server_probe);
    let addr = server.local_addr();

    let (report_tx, report_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let start = Arc::new(Barrier::new(CONNS));
    for c in 0..CONNS {
        let (t, report_tx, start) = (t.clone(), report_tx.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let outcome = (|| {
                let (probe, _events) = Probe::echo();
                let client = t.connect(addr, probe).map_err(|e| format!("connect: {e}"))?;
                let (tx, rx) = mpsc::channel();
                for r in 0..RPCS {
                    let body = format!("conn-{c}-rpc-{r}");
                    let want = echoed(body.as_bytes());
                    let tx = tx.clone();
                    client
                        .send_rpc(Bytes::from(body), move |res| {
                            let ok = match res {
                                Ok(got) => first_difference(&got, &want).map_or(Ok(()), Err),
                                Err(e) => Err(e.to_string()),
                            };
                            let _ = tx.send((r, ok));
                        })
                        .map_err(|e| format!("send_rpc {r}: {e}"))?;
                }
                for _ in 0..RPCS {
                    let (r, ok) = rx
                        .recv_timeout(TIMEOUT * 2)
                        .map_err(|_| "an RPC was not answered in time".to_string())?;
                    ok.map_err(|e| format!("rpc {r}: {e}"))?;
                }
                Ok(())
            })();
            let _ = report_tx.send((c, outcome));
        });
    }
    drop(report_tx);
    let deadline = Instant::now() + TIMEOUT * 3;
    for _ in 0..CONNS {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (c, outcome) = recv_within(&report_rx, left, "the 64 connections' reports");
        if let Err(e) = outcome {
            panic!("connection {c} of {CONNS}: {e}");
        }
    }
    let mut peers = HashSet::new();
    while peers.len() < CONNS {
        let e = wait_event(
            &server_events,
            "channel_active for each of the 64 connections",
            |e| matches!(e, Event::Active(_)),
        );
        assert!(peers.insert(e.peer()), "channel_active twice for {}", e.peer());
    }
    shutdown(&t);
}

/// The server sends on the client's connection: an RpcRequest answered by the
/// client's handler (100 in flight, from the `TransportClient` of
/// `channel_active`), an RpcRequest sent from inside `receive_rpc` whose
/// answer completes the original request, and one-way messages in order.
pub fn server_sends_to_client(factory: &TransportFactory) {
    let t = factory(test_conf());
    let (server_probe, server_events) = Probe::new(false, |client: &TransportClient, id, body: Bytes| {
        if &body[..] != b"call me back" {
            return echo_reply(client, id, body);
        }
        let c = client.clone();
        let sent = client.send_rpc(Bytes::from_static(b"question"), move |r| {
            let _ = match r {
                Ok(answer) => c.send_response(id, Bytes::from([b"server got: ", &answer[..]].concat())),
                Err(e) => c.send_failure(id, &format!("the call back failed: {e}")),
            };
        });
        if let Err(e) = sent {
            let _ = client.send_failure(id, &format!("could not call back: {e}"));
        }
    });
    let server = serve(&t, server_probe);
    let (client_probe, client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);
    let server_side = accepted(&server_events, client.local_addr());

    // Requests from the server, answered by the handler given to `connect`.
    let (tx, rx) = mpsc::channel();
    for i in 0..100 {
        let body = format!("to the client #{i}");
        let want = echoed(body.as_bytes());
        let tx = tx.clone();
        server_side
            .send_rpc(Bytes::from(body), move |r| {
                let _ = tx.send((i, r.map(|got| first_difference(&got, &want))));
            })
            .unwrap_or_else(|e| panic!("server → client send_rpc {i}: {e}"));
    }
    for _ in 0..100 {
        match recv_within(&rx, TIMEOUT, "the client's answers to the server's requests") {
            (_, Ok(None)) => {}
            (i, Ok(Some(d))) => panic!("server → client request {i} got a wrong answer: {d}"),
            (i, Err(e)) => panic!("server → client request {i} failed: {e}"),
        }
    }

    // A request sent from inside the server's handler, completing the first one.
    match super::support::rpc(&client, "call me back") {
        Ok(answer) => assert_eq!(
            &answer[..],
            b"server got: re:question",
            "the call back went wrong"
        ),
        Err(e) => panic!("a request answered through a call back to the client failed: {e}"),
    }

    // One-way messages from the server, in order, on this connection.
    for i in 0..20 {
        server_side
            .send_one_way(Bytes::from(format!("push {i}")))
            .unwrap_or_else(|e| panic!("server → client send_one_way {i}: {e}"));
    }
    for i in 0..20 {
        let e = wait_event(
            &client_events,
            &format!("one-way message {i} at the client"),
            |e| matches!(e, Event::OneWay(..)),
        );
        if let Event::OneWay(c, body) = &e {
            assert_eq!(
                &body[..],
                format!("push {i}").as_bytes(),
                "server → client one-way out of order"
            );
            assert_eq!(
                c.peer_addr(),
                server.local_addr(),
                "one-way message arrived on the wrong connection"
            );
        }
    }
    shutdown(&t);
}

/// Eight 1 MiB RpcRequests in flight on one connection, twice; the server
/// checks each body byte for byte and answers with a 1 MiB transform of it,
/// which the client checks byte for byte.
pub fn large_frames_intact(factory: &TransportFactory) {
    const SIZE: usize = 1 << 20;
    const IN_FLIGHT: u64 = 8;
    const MASK: u8 = 0x5A;
    let t = factory(test_conf());
    // Body: 8-byte seed, then pattern(seed). Answer: every byte XOR MASK.
    let (server_probe, _server_events) = Probe::new(false, |client: &TransportClient, id, body: Bytes| {
        let seed = u64::from_be_bytes(body[..8.min(body.len())].try_into().unwrap_or([0; 8]));
        let want = [&seed.to_be_bytes()[..], &pattern(seed, SIZE - 8)].concat();
        let reply = match first_difference(&body, &want) {
            None => client.send_response(id, body.iter().map(|b| b ^ MASK).collect::<Vec<u8>>().into()),
            Some(d) => client.send_failure(id, &format!("request body for seed {seed} corrupt: {d}")),
        };
        if let Err(e) = reply {
            tracing::debug!(%e, "could not answer a large request");
        }
    });
    let server = serve(&t, server_probe);
    let (client_probe, _client_events) = Probe::echo();
    let client = connect(&t, server.local_addr(), client_probe);

    for round in 0..2 {
        let (tx, rx) = mpsc::channel();
        for k in 0..IN_FLIGHT {
            let seed = round * 100 + k + 1;
            let body: Vec<u8> = [&seed.to_be_bytes()[..], &pattern(seed, SIZE - 8)].concat();
            let want: Vec<u8> = body.iter().map(|b| b ^ MASK).collect();
            let tx = tx.clone();
            client
                .send_rpc(Bytes::from(body), move |r| {
                    let _ = tx.send((seed, r.map(|got| first_difference(&got, &want))));
                })
                .unwrap_or_else(|e| panic!("send_rpc of a 1 MiB body: {e}"));
        }
        for _ in 0..IN_FLIGHT {
            match recv_within(&rx, TIMEOUT * 2, "the answers to 1 MiB requests") {
                (_, Ok(None)) => {}
                (seed, Ok(Some(d))) => panic!("1 MiB response for seed {seed} corrupt: {d}"),
                (seed, Err(e)) => panic!("1 MiB request for seed {seed} failed: {e}"),
            }
        }
    }
    shutdown(&t);
}
