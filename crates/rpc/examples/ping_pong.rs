//! Two RpcEnvs on loopback, an endpoint each, playing ping-pong.
//!
//! The `pong` RpcEnv listens and runs endpoint `pong`; the `ping` RpcEnv is a
//! client, runs endpoint `ping`, and asks `pong` a few hundred times. Every
//! tenth round `pong` also sends a one-way note back to `ping` over the very
//! connection the ask came on (`ping` has no address of its own). Exits 0 when
//! every answer and note arrived.
//!
//! Run: `cargo run --release -p rpc --example ping_pong` (set `RPC_IO_MODE=epoll`
//! or `io_uring` to choose the backend; the default `auto` picks io_uring where it can).

use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use rpc::{Msg, RpcCallContext, RpcEndpoint, RpcEnv, RpcEnvConfig, RpcSender};

/// What `ping` asks.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Ping {
    round: u32,
    text: String,
}

/// What `pong` answers.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Pong {
    round: u32,
    text_len: u32,
}

struct PongEndpoint;

impl RpcEndpoint for PongEndpoint {
    type Message = Ping;
    type Reply = Pong;

    fn receive_and_reply(&mut self, msg: Msg<'_, Ping>, ctx: RpcCallContext<Pong>) {
        // A remote ping is read in place from the receive buffer: no copy, no deserialization.
        let (round, text_len) = match &msg {
            Msg::Local(p) => (p.round, p.text.len()),
            Msg::Remote(p) => (p.round.to_native(), p.text.len()),
        };
        if round % 10 == 0 {
            let note = ctx
                .sender()
                .endpoint_ref::<String, ()>("ping")
                .and_then(|ping| ping.send(format!("pong saw round {round}")));
            if let Err(e) = note {
                eprintln!("could not send a note back: {e}");
            }
        }
        ctx.reply(Pong {
            round,
            text_len: text_len as u32,
        });
    }
}

struct PingEndpoint {
    notes: Sender<String>,
}

impl RpcEndpoint for PingEndpoint {
    type Message = String;
    type Reply = ();

    fn receive(&mut self, msg: Msg<'_, String>, sender: &RpcSender) {
        let text = msg.into_owned().unwrap_or_default();
        println!("ping got a note from {sender}: {text}");
        let _ = self.notes.send(text);
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ping_pong: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut pong_config = RpcEnvConfig::server("pong", SocketAddr::from(([127, 0, 0, 1], 0)));
    pong_config.apply_env()?;
    let pong_env = RpcEnv::create(pong_config)?;
    pong_env.setup_endpoint("pong", PongEndpoint)?;
    let address = pong_env
        .address()
        .expect("a server-mode RpcEnv has an address")
        .clone();
    println!("pong listens on {address} ({})", pong_env.io_mode());

    let mut ping_config = RpcEnvConfig::client("ping");
    ping_config.apply_env()?;
    let ping_env = RpcEnv::create(ping_config)?;
    let (notes_tx, notes_rx) = mpsc::channel();
    ping_env.setup_endpoint("ping", PingEndpoint { notes: notes_tx })?;
    let pong = ping_env.setup_endpoint_ref::<Ping, Pong>(&address, "pong")?;

    let rounds = 300u32;
    let started = Instant::now();
    for round in 0..rounds {
        let text = "x".repeat(round as usize % 50);
        let reply = pong.ask_sync(Ping {
            round,
            text: text.clone(),
        })?;
        assert_eq!(
            reply,
            Pong {
                round,
                text_len: text.len() as u32
            }
        );
    }
    let elapsed = started.elapsed();
    let notes: Vec<String> = (0..rounds / 10)
        .map(|_| notes_rx.recv_timeout(Duration::from_secs(5)))
        .collect::<Result<_, _>>()?;
    println!(
        "{rounds} asks answered in {:.1} ms ({:.1} µs each, one at a time); {} notes back",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / f64::from(rounds),
        notes.len()
    );
    ping_env.shutdown();
    pong_env.shutdown();
    Ok(())
}
