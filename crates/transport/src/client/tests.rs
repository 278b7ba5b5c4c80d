use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use super::*;
use crate::transport::TransportHandler;

/// A sink that keeps what it is sent, as a backend's queue would.
#[derive(Default)]
struct Recording {
    frames: Arc<Mutex<Vec<EncodedFrame>>>,
    closed: Arc<AtomicBool>,
    /// `wake_reader` calls.
    wakes: Arc<AtomicUsize>,
}

impl FrameSink for Recording {
    fn send(&self, frame: EncodedFrame) -> Result<(), TransportError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(TransportError::ConnectionClosed {
                peer: addr(),
                reason: "test".into(),
            });
        }
        self.frames.lock().unwrap().push(frame);
        Ok(())
    }
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
    fn is_active(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }
    fn wake_reader(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

struct Ignore;
impl TransportHandler for Ignore {
    fn receive_rpc(&self, _: &TransportClient, _: i64, _: Bytes) {}
    fn receive_one_way(&self, _: &TransportClient, _: Bytes) {}
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

fn client(conf: &TransportConf) -> (TransportClient, Arc<Mutex<Vec<EncodedFrame>>>, Arc<AtomicBool>) {
    let sink = Recording::default();
    let (frames, closed) = (sink.frames.clone(), sink.closed.clone());
    (
        TransportClient::new(ConnectionId(1), addr(), addr(), conf, Box::new(sink)),
        frames,
        closed,
    )
}

fn limited(queued: usize, in_flight: usize) -> TransportConf {
    TransportConf {
        max_queued_bytes_per_connection: queued,
        max_in_flight_requests_per_connection: in_flight,
        ..TransportConf::default()
    }
}

fn request(id: i64) -> Frame {
    Frame::RpcRequest {
        request_id: id,
        body: Bytes::from_static(b"q"),
    }
}

#[test]
fn queued_bytes_count_frames_until_written() {
    let (c, frames, _) = client(&limited(100, 0));
    c.send_one_way(Bytes::from(vec![0; 60])).unwrap();
    let first = frames.lock().unwrap()[0].len();
    assert_eq!(c.queued_bytes(), first);
    assert!(!c.should_pause_reading(), "{first} bytes queued is under 100");
    c.send_one_way(Bytes::from(vec![0; 60])).unwrap();
    assert_eq!(c.queued_bytes(), 2 * first);
    assert!(c.should_pause_reading(), "{} bytes queued is over 100", 2 * first);
    c.frames_written(first);
    assert!(
        !c.may_resume_reading(),
        "{first} bytes is above the low watermark of 50"
    );
    c.frames_written(first);
    assert_eq!(c.queued_bytes(), 0);
    assert!(c.may_resume_reading());
    // A late or excessive report never wraps the count.
    c.frames_written(10);
    assert_eq!(c.queued_bytes(), 0);
}

#[test]
fn refused_sends_are_not_counted_as_queued() {
    let (c, _, closed) = client(&limited(0, 0));
    closed.store(true, Ordering::SeqCst);
    assert!(c.send_one_way(Bytes::from_static(b"x")).is_err());
    assert_eq!(c.queued_bytes(), 0);
}

#[test]
fn outstanding_rpcs_are_not_limited_by_default() {
    // The receiving side's in-flight limit holds senders back; refusing is opt-in.
    let (c, _, _) = client(&TransportConf::default());
    for _ in 0..10_000 {
        c.send_rpc(Bytes::from_static(b"q"), |_| {})
            .expect("no limit on outstanding RPCs by default");
    }
    assert_eq!(c.outstanding_rpcs(), 10_000);
}

#[test]
fn in_flight_requests_count_until_answered() {
    let (c, _, _) = client(&limited(0, 2));
    c.handle_frame(request(1), &Ignore);
    assert_eq!(c.in_flight_requests(), 1);
    assert!(!c.should_pause_reading());
    c.handle_frame(request(2), &Ignore);
    assert!(
        c.should_pause_reading(),
        "2 unanswered requests reach the limit of 2"
    );
    assert!(!c.may_resume_reading());
    c.send_response(1, Bytes::from_static(b"a")).unwrap();
    assert_eq!(c.in_flight_requests(), 1);
    assert!(c.may_resume_reading());
    c.send_failure(2, "no").unwrap();
    assert_eq!(c.in_flight_requests(), 0);
    // An answer to nothing does not wrap the count.
    c.send_response(3, Bytes::new()).unwrap();
    assert_eq!(c.in_flight_requests(), 0);
}

#[test]
fn an_answer_too_large_to_send_keeps_the_request_in_flight() {
    let conf = TransportConf {
        max_frame_size: 64,
        ..limited(0, 0)
    };
    let (c, _, _) = client(&conf);
    c.handle_frame(request(1), &Ignore);
    let e = c.send_response(1, Bytes::from(vec![0; 100])).unwrap_err();
    assert!(matches!(e, TransportError::FrameTooLarge { .. }), "{e:?}");
    assert_eq!(c.in_flight_requests(), 1, "still to be answered with a failure");
    c.send_failure(1, "too large").unwrap();
    assert_eq!(c.in_flight_requests(), 0);
}

#[test]
fn sends_past_the_outstanding_limit_fail_and_hand_back_the_callback() {
    let conf = TransportConf {
        max_outstanding_rpcs_per_connection: 2,
        ..TransportConf::default()
    };
    let (c, frames, _) = client(&conf);
    let (tx, rx) = mpsc::channel();
    for _ in 0..2 {
        let tx = tx.clone();
        c.send_rpc(Bytes::from_static(b"q"), move |r| tx.send(r.is_ok()).unwrap())
            .unwrap();
    }
    let refused = c.send_rpc_boxed(Bytes::from_static(b"q"), Box::new(|_| panic!("never called")));
    let Err((e, _callback)) = refused else {
        panic!("a third RPC past the limit of 2 was accepted")
    };
    assert!(
        matches!(e, TransportError::TooManyOutstandingRpcs { limit: 2, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("max_outstanding_rpcs_per_connection"),
        "{e}"
    );
    assert_eq!(frames.lock().unwrap().len(), 2, "the refused RPC was not sent");
    c.handle_frame(
        Frame::RpcResponse {
            request_id: 0,
            body: Bytes::new(),
        },
        &Ignore,
    );
    assert!(rx.recv().unwrap());
    c.send_rpc(Bytes::from_static(b"q"), |_| {})
        .expect("an answer makes room for one more");
}

#[test]
fn zero_means_no_limit() {
    let (c, _, _) = client(&limited(0, 0));
    for id in 0..10_000 {
        c.handle_frame(request(id), &Ignore);
    }
    for _ in 0..10_000 {
        c.send_rpc(Bytes::from_static(b"q"), |_| {}).unwrap();
    }
    c.send_one_way(Bytes::from(vec![0; 1 << 20])).unwrap();
    assert!(!c.should_pause_reading());
}

#[test]
fn closing_zeroes_the_counts() {
    let (c, _, _) = client(&limited(0, 0));
    c.handle_frame(request(1), &Ignore);
    c.send_one_way(Bytes::from_static(b"x")).unwrap();
    c.connection_closed("test");
    assert_eq!((c.queued_bytes(), c.in_flight_requests()), (0, 0));
}

#[test]
fn read_pauses_hold_reading_until_the_last_is_dropped_which_wakes_the_reader() {
    let sink = Recording::default();
    let wakes = sink.wakes.clone();
    let c = TransportClient::new(ConnectionId(1), addr(), addr(), &limited(0, 0), Box::new(sink));
    assert!(!c.should_pause_reading() && c.may_resume_reading());
    let first = c.pause_reading();
    let second = c.clone().pause_reading();
    assert_eq!(c.read_pauses(), 2);
    assert_eq!(first.client().id(), c.id());
    assert!(c.should_pause_reading() && !c.may_resume_reading());
    drop(first);
    assert!(c.should_pause_reading(), "one pause is still held");
    assert_eq!(wakes.load(Ordering::SeqCst), 0, "no wake-up while paused");
    drop(second);
    assert!(!c.should_pause_reading() && c.may_resume_reading());
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        1,
        "the last pause wakes the reader once"
    );
    // Pauses outlive a closed connection harmlessly.
    let late = c.pause_reading();
    c.connection_closed("test");
    drop(late);
    assert_eq!(c.read_pauses(), 0);
}

#[test]
fn attachment_is_set_once_and_typed() {
    let (c, _, _) = client(&TransportConf::default());
    assert!(c.attachment::<u32>().is_none());
    assert!(c.set_attachment(Arc::new(7u32)));
    assert!(!c.set_attachment(Arc::new(8u32)), "set once");
    assert_eq!(c.clone().attachment::<u32>(), Some(&7));
    assert!(c.attachment::<u64>().is_none(), "another type");
}

/// Records what `on_registered` was told and what the frames queue held then.
struct Registering {
    frames: Arc<Mutex<Vec<EncodedFrame>>>,
    seen: Mutex<Vec<(ConnectionId, i64, usize)>>,
}

impl RpcResponseListener for Registering {
    fn on_response(self: Arc<Self>, _: i64, _: Result<Bytes, TransportError>) {}

    fn on_registered(&self, client: &TransportClient, request_id: i64) -> bool {
        let queued = self.frames.lock().unwrap().len();
        self.seen.lock().unwrap().push((client.id(), request_id, queued));
        true
    }
}

#[test]
fn a_listener_is_told_its_request_id_before_the_frame_is_queued_and_can_be_removed() {
    let (c, frames, _) = client(&TransportConf::default());
    let listener = Arc::new(Registering {
        frames: frames.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let first = c
        .send_rpc_with(
            Bytes::from_static(b"a"),
            ResponseHandler::Listener(listener.clone()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    let second = c
        .send_rpc_with(
            Bytes::from_static(b"b"),
            ResponseHandler::Listener(listener.clone()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(
        *listener.seen.lock().unwrap(),
        vec![(c.id(), first, 0), (c.id(), second, 1)],
        "each id, before its own frame was queued"
    );
    assert_eq!(c.outstanding_rpcs(), 2);
    assert!(c.remove_rpc_request(first), "the first was outstanding");
    assert!(!c.remove_rpc_request(first), "and is no longer");
    assert_eq!(c.outstanding_rpcs(), 1);
    assert_eq!(
        Arc::strong_count(&listener),
        2,
        "the removed entry's reference was dropped"
    );
}

/// Has given up on its answer before its request was registered.
struct GaveUp;

impl RpcResponseListener for GaveUp {
    fn on_response(self: Arc<Self>, _: i64, _: Result<Bytes, TransportError>) {
        panic!("a listener that wants no answer is never called");
    }

    fn on_registered(&self, _: &TransportClient, _: i64) -> bool {
        false
    }
}

#[test]
fn a_listener_that_wants_no_answer_is_sent_but_not_registered() {
    let (c, frames, _) = client(&TransportConf::default());
    let listener = Arc::new(GaveUp);
    c.send_rpc_with(
        Bytes::from_static(b"a"),
        ResponseHandler::Listener(listener.clone()),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    assert_eq!(frames.lock().unwrap().len(), 1, "the frame is still sent");
    assert_eq!(c.outstanding_rpcs(), 0, "and not outstanding");
    assert_eq!(Arc::strong_count(&listener), 1, "the listener was dropped");
}
