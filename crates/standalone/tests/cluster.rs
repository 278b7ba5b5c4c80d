//! Master and Workers over real loopback sockets, on each IO mode:
//! registration, duplicate ids, heartbeat timeouts, disconnects, clean stops,
//! master restarts and 200 workers at once.

mod common;

use std::time::{Duration, Instant};

use common::{conf, for_master, master, rpc_conf, wait_until, worker};
use rpc::{RpcEnv, RpcEnvConfig};
use standalone::messages::{MASTER_ENDPOINT_NAME, MasterMessage, MasterReply, RegisterWorker};
use standalone::scheduler::Scheduler;
use standalone::{Master, StandaloneError, Worker, WorkerState};
use transport::IoMode;

const WAIT: Duration = Duration::from_secs(10);

fn client(mode: IoMode) -> RpcEnv {
    let mut c = rpc_conf(mode);
    c.name = "test-client".into();
    c.bind_address = None;
    RpcEnv::create(c).expect("client env")
}

fn registration(id: &str) -> MasterMessage {
    MasterMessage::RegisterWorker(RegisterWorker {
        id: id.into(),
        host: "127.0.0.1".into(),
        port: 0,
        cores: 1,
        memory_mb: 512,
        io_mode: "epoll".into(),
        endpoint_name: "Worker".into(),
    })
}

fn registers_and_answers_bound_ports(mode: IoMode) {
    let c = conf(60_000, true);
    let m = master(mode, &c);
    let w = worker(mode, &for_master(&c, &m), "w-1");
    w.wait_registered(WAIT).expect("registers");
    let workers = m.workers();
    assert_eq!(workers.len(), 1);
    let info = &workers[0];
    assert_eq!((info.id.as_str(), info.cores, info.memory_mb), ("w-1", 2, 2048));
    assert_eq!(info.state, WorkerState::Alive);
    assert_eq!(info.io_mode, mode.as_str());
    let env = client(mode);
    let r = env.endpoint_ref::<MasterMessage, MasterReply>(m.address(), MASTER_ENDPOINT_NAME);
    let ports = r.ask_sync(MasterMessage::BoundPortsRequest).unwrap();
    assert_eq!(
        ports,
        MasterReply::BoundPortsResponse {
            rpc_port: m.address().port,
            web_ui_port: m.web_ui_port().unwrap()
        }
    );
}

fn duplicate_id_is_refused_with_a_reason(mode: IoMode) {
    let c = conf(60_000, false);
    let m = master(mode, &c);
    let c = for_master(&c, &m);
    let first = worker(mode, &c, "dup");
    first.wait_registered(WAIT).unwrap();
    let second = worker(mode, &c, "dup");
    match second.wait_registered(WAIT) {
        Err(StandaloneError::RegistrationRefused { id, reason }) => {
            assert_eq!(id, "dup");
            assert!(reason.contains("Duplicate worker ID"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(m.workers().len(), 1);
}

fn silent_worker_times_out_and_live_one_stays(mode: IoMode) {
    let c = conf(600, false);
    let m = master(mode, &c);
    let live = worker(mode, &for_master(&c, &m), "live");
    live.wait_registered(WAIT).unwrap();
    // A "worker" that registers and never sends a heartbeat.
    let env = client(mode);
    let r = env.endpoint_ref::<MasterMessage, MasterReply>(m.address(), MASTER_ENDPOINT_NAME);
    assert!(matches!(
        r.ask_sync(registration("silent")).unwrap(),
        MasterReply::RegisteredWorker { .. }
    ));
    assert_eq!(m.workers().len(), 2);
    let t = Instant::now();
    assert!(wait_until(WAIT, || m.workers().iter().all(|w| w.id != "silent")));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500), "removed too early: {took:?}");
    assert!(took < Duration::from_millis(2_500), "removed too late: {took:?}");
    std::thread::sleep(Duration::from_millis(700));
    let ids: Vec<_> = m.workers().into_iter().map(|w| w.id).collect();
    assert_eq!(ids, ["live"], "the heartbeating worker stays");
    // A heartbeat from the removed worker is answered with ReconnectWorker.
    let reply = r
        .ask_sync(MasterMessage::Heartbeat {
            worker_id: "silent".into(),
        })
        .unwrap();
    assert!(matches!(reply, MasterReply::ReconnectWorker { .. }), "{reply:?}");
}

fn stop_and_disconnect_remove_at_once(mode: IoMode) {
    let c = conf(60_000, false);
    let m = master(mode, &c);
    let c = for_master(&c, &m);
    let mut stopping = worker(mode, &c, "stopping");
    let crashing = worker(mode, &c, "crashing");
    stopping.wait_registered(WAIT).unwrap();
    crashing.wait_registered(WAIT).unwrap();
    assert_eq!(m.workers().len(), 2);
    stopping.stop();
    assert!(
        m.workers().iter().all(|w| w.id != "stopping"),
        "WorkerStopping removes at once"
    );
    // Its RpcEnv dies without a word: the master sees the connection close.
    crashing.env().unwrap().shutdown();
    assert!(wait_until(Duration::from_secs(3), || m.workers().is_empty()));
}

fn worker_reregisters_after_master_restart(mode: IoMode) {
    let c = conf(800, false);
    let first = master(mode, &c);
    let c = for_master(&c, &first);
    let w = worker(mode, &c, "survivor");
    w.wait_registered(WAIT).unwrap();
    assert_eq!(w.status().registrations(), 1);
    drop(first);
    let mut restarted = None;
    assert!(
        wait_until(WAIT, || {
            restarted = Master::start(&c, rpc_conf(mode)).ok();
            restarted.is_some()
        }),
        "the master's port is free again"
    );
    let second = restarted.unwrap();
    w.status()
        .wait_registrations(w.id(), 2, WAIT)
        .expect("re-registers");
    assert!(wait_until(WAIT, || second
        .workers()
        .iter()
        .any(|x| x.id == "survivor")));
}

fn gives_up_after_register_timeout(mode: IoMode) {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let c = standalone::StandaloneConfig {
        master_port: port,
        register_timeout_ms: 400,
        ..conf(60_000, false)
    };
    let w = worker(mode, &c, "lonely");
    match w.wait_registered(WAIT) {
        Err(e @ StandaloneError::RegistrationTimedOut { .. }) => {
            assert!(e.to_string().contains("check that the master runs"), "{e}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

fn forgotten_worker_is_asked_to_reconnect(mode: IoMode) {
    let c = conf(400, false);
    let m = master(mode, &c);
    let w = worker(mode, &for_master(&c, &m), "forgotten");
    w.wait_registered(WAIT).unwrap();
    // The master loses track of it (as after a failover); its next heartbeat
    // is answered with ReconnectWorker and it registers again.
    assert!(m.state().lock().remove("forgotten").is_some());
    w.status()
        .wait_registrations(w.id(), 2, WAIT)
        .expect("registers again");
    assert!(wait_until(WAIT, || m
        .workers()
        .iter()
        .any(|x| x.id == "forgotten")));
}

fn two_hundred_workers_register_at_once(mode: IoMode) {
    let c = conf(5_000, false);
    let m = master(mode, &c);
    let c = for_master(&c, &m);
    let mut env_conf = rpc_conf(mode);
    env_conf.bind_address = Some("127.0.0.1:0".parse().unwrap());
    env_conf.name = "workers".into();
    let env = RpcEnv::create(RpcEnvConfig { ..env_conf }).unwrap();
    let scheduler = Scheduler::new("workers-timer").unwrap();
    let t = Instant::now();
    let workers: Vec<Worker> = (0..200)
        .map(|i| {
            let c = standalone::StandaloneConfig {
                worker_id: format!("w-{i:03}"),
                ..c.clone()
            };
            Worker::launch_in(&env, &format!("Worker-{i}"), &c, &scheduler).unwrap()
        })
        .collect();
    for w in &workers {
        w.wait_registered(Duration::from_secs(20)).unwrap();
    }
    assert!(wait_until(WAIT, || m.workers().len() == 200));
    eprintln!("200 workers registered in {:?} on {mode}", t.elapsed());
    let snapshot = m.workers();
    let at = env.address().unwrap().to_string();
    assert!(
        snapshot
            .iter()
            .all(|w| w.state == WorkerState::Alive && w.address == at)
    );
    drop(workers);
    assert!(m.workers().is_empty(), "each stopped worker said WorkerStopping");
}

macro_rules! cluster_suite {
    ($module:ident, $mode:expr) => {
        mod $module {
            #[test]
            fn registers_and_answers_bound_ports() {
                super::registers_and_answers_bound_ports($mode);
            }
            #[test]
            fn duplicate_id_is_refused_with_a_reason() {
                super::duplicate_id_is_refused_with_a_reason($mode);
            }
            #[test]
            fn silent_worker_times_out_and_live_one_stays() {
                super::silent_worker_times_out_and_live_one_stays($mode);
            }
            #[test]
            fn stop_and_disconnect_remove_at_once() {
                super::stop_and_disconnect_remove_at_once($mode);
            }
            #[test]
            fn worker_reregisters_after_master_restart() {
                super::worker_reregisters_after_master_restart($mode);
            }
            #[test]
            fn forgotten_worker_is_asked_to_reconnect() {
                super::forgotten_worker_is_asked_to_reconnect($mode);
            }
            #[test]
            fn gives_up_after_register_timeout() {
                super::gives_up_after_register_timeout($mode);
            }
            #[test]
            fn two_hundred_workers_register_at_once() {
                super::two_hundred_workers_register_at_once($mode);
            }
        }
    };
}

cluster_suite!(epoll, transport::IoMode::Epoll);
cluster_suite!(io_uring, transport::IoMode::IoUring);
