//! The `Master` (Spark's `deploy.master.Master`): the endpoint that registers
//! workers, records their heartbeats and drops the silent ones, and the
//! process-level handle that starts it with its RpcEnv and web UI
//! (Spark's `Master.startRpcEnvAndEndpoint`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rpc::{Msg, RpcAddress, RpcCallContext, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcSender};
use transport::IoMode;

use crate::config::{StandaloneConfig, bind_address};
use crate::error::{Result, StandaloneError};
use crate::master_state::{MasterState, SharedMasterState};
use crate::messages::{ArchivedMasterMessage, MASTER_ENDPOINT_NAME, MasterMessage, MasterReply};
use crate::scheduler::Scheduler;
use crate::web_ui::WebUi;
use crate::worker_info::WorkerSnapshot;

/// The master's endpoint (Spark's `Master` as a `ThreadSafeRpcEndpoint`).
pub struct MasterEndpoint {
    state: SharedMasterState,
    worker_timeout: Duration,
    remove_on_disconnect: bool,
    master_url: String,
    web_ui_url: String,
}

impl MasterEndpoint {
    fn reply_to(&mut self, msg: MasterMessage, sender: &RpcSender) -> MasterReply {
        match msg {
            MasterMessage::BoundPortsRequest => {
                let st = self.state.lock();
                MasterReply::BoundPortsResponse {
                    rpc_port: st.address.port,
                    web_ui_port: st.web_ui_port,
                }
            }
            MasterMessage::RegisterWorker(reg) => {
                let id = reg.id.clone();
                let (host, port, cores, mem) = (reg.host.clone(), reg.port, reg.cores, reg.memory_mb);
                match self.state.lock().register(reg, sender.address().cloned()) {
                    Ok(()) => {
                        tracing::info!(
                            worker = %id, "Registering worker {host}:{port} with {cores} cores, {mem} MiB RAM"
                        );
                        MasterReply::RegisteredWorker {
                            master_url: self.master_url.clone(),
                            master_web_ui_url: self.web_ui_url.clone(),
                        }
                    }
                    Err(refusal) => {
                        tracing::warn!(worker = %id, reason = %refusal.0, "refusing a worker registration");
                        MasterReply::RegisterWorkerFailed { reason: refusal.0 }
                    }
                }
            }
            MasterMessage::Heartbeat { worker_id } => self.heartbeat(&worker_id),
            MasterMessage::WorkerStopping { worker_id } => {
                if self.state.lock().remove(&worker_id).is_some() {
                    tracing::info!(worker = %worker_id, "worker stopped; removed");
                }
                MasterReply::Ack
            }
            MasterMessage::CheckForWorkerTimeOut => {
                self.check_for_worker_timeout();
                MasterReply::Ack
            }
        }
    }

    fn heartbeat(&mut self, worker_id: &str) -> MasterReply {
        if self.state.lock().heartbeat(worker_id) {
            MasterReply::HeartbeatAck
        } else {
            tracing::warn!(
                worker = %worker_id,
                "got a heartbeat from an unregistered worker; asking it to re-register"
            );
            MasterReply::ReconnectWorker {
                master_url: self.master_url.clone(),
            }
        }
    }

    fn check_for_worker_timeout(&mut self) {
        let removed = self.state.lock().time_out(self.worker_timeout, Instant::now());
        for w in removed {
            tracing::warn!(
                worker = %w.id,
                "Removing worker {} because we got no heartbeat in {} ms",
                w.id,
                self.worker_timeout.as_millis()
            );
        }
    }
}

impl RpcEndpoint for MasterEndpoint {
    type Message = MasterMessage;
    type Reply = MasterReply;

    fn receive(&mut self, msg: Msg<'_, MasterMessage>, sender: &RpcSender) {
        match msg.into_owned() {
            Ok(m) => drop(self.reply_to(m, sender)),
            Err(e) => self.on_error(&e),
        }
    }

    fn receive_and_reply(&mut self, msg: Msg<'_, MasterMessage>, ctx: RpcCallContext<MasterReply>) {
        // The hot path: a remote heartbeat is read in place, with no copy.
        if let Msg::Remote(ArchivedMasterMessage::Heartbeat { worker_id }) = &msg {
            let reply = self.heartbeat(worker_id.as_str());
            ctx.reply(reply);
            return;
        }
        match msg.into_owned() {
            Ok(m) => {
                let reply = self.reply_to(m, ctx.sender());
                ctx.reply(reply);
            }
            Err(e) => ctx.send_failure(e),
        }
    }

    fn on_disconnected(&mut self, remote: &RpcAddress) {
        if !self.remove_on_disconnect {
            return;
        }
        for w in self.state.lock().remove_address(remote) {
            tracing::info!(worker = %w.id, "{remote} got disassociated, removing it");
        }
    }
}

/// A running master: its RpcEnv, the `Master` endpoint, the timeout check and the web UI.
///
/// Dropping it shuts everything down.
pub struct Master {
    env: RpcEnv,
    endpoint: RpcEndpointRef<MasterMessage, MasterReply>,
    state: SharedMasterState,
    web_ui: Option<WebUi>,
    _scheduler: Scheduler,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("env", &self.env).finish()
    }
}

impl Master {
    /// Starts a master (Spark's `Master.startRpcEnvAndEndpoint`): an RpcEnv
    /// named `Master` bound to `master_host:master_port` (over `rpc`'s
    /// `bind_address`), the `Master` endpoint, the periodic
    /// `CheckForWorkerTimeOut` (every quarter of `worker_timeout_ms`) and, if
    /// `web_ui` is on, the web UI on `web_ui_port`.
    ///
    /// # Errors
    /// [`StandaloneError::Resolve`], [`StandaloneError::Rpc`] (e.g. the port is
    /// taken, or the IO mode is unavailable), [`StandaloneError::WebUi`].
    pub fn start(config: &StandaloneConfig, mut rpc: RpcEnvConfig) -> Result<Self> {
        rpc.name = "Master".into();
        rpc.bind_address = Some(bind_address(&config.master_host, config.master_port)?);
        if rpc.advertise_host.is_none() && config.master_host != "0.0.0.0" {
            rpc.advertise_host = Some(config.master_host.clone());
        }
        let env = RpcEnv::create(rpc)?;
        let address = env.address().cloned().ok_or(StandaloneError::Resolve {
            host: config.master_host.clone(),
        })?;
        let io_mode = env.io_mode().as_str().to_string();
        let state = Arc::new(Mutex::new(MasterState::new(address.clone(), 0, io_mode)));
        let web_ui = if config.web_ui {
            let ui = WebUi::start(&config.master_host, config.web_ui_port, state.clone())?;
            state.lock().web_ui_port = ui.port();
            Some(ui)
        } else {
            None
        };
        let web_ui_url = web_ui
            .as_ref()
            .map(|ui| format!("http://{}:{}", config.master_host, ui.port()))
            .unwrap_or_default();
        let endpoint = env.setup_endpoint(
            MASTER_ENDPOINT_NAME,
            MasterEndpoint {
                state: state.clone(),
                worker_timeout: config.worker_timeout(),
                remove_on_disconnect: config.remove_on_disconnect,
                master_url: address.to_url(),
                web_ui_url,
            },
        )?;
        let scheduler = Scheduler::new("master-timer")?;
        let check = endpoint.clone();
        scheduler.schedule_every(config.heartbeat_interval(), move || {
            check.send(MasterMessage::CheckForWorkerTimeOut).is_ok()
        });
        tracing::info!(
            "Starting Master at {} ({} mode), web UI port {}",
            address.to_url(),
            env.io_mode(),
            state.lock().web_ui_port
        );
        Ok(Self {
            env,
            endpoint,
            state,
            web_ui,
            _scheduler: scheduler,
        })
    }

    /// The master's RPC address.
    pub fn address(&self) -> &RpcAddress {
        self.env.address().expect("a master listens")
    }

    /// The IO mode its RpcEnv runs on.
    pub fn io_mode(&self) -> IoMode {
        self.env.io_mode()
    }

    /// The web UI's port, if it runs.
    pub fn web_ui_port(&self) -> Option<u16> {
        self.web_ui.as_ref().map(WebUi::port)
    }

    /// A local reference to the `Master` endpoint.
    pub fn endpoint(&self) -> &RpcEndpointRef<MasterMessage, MasterReply> {
        &self.endpoint
    }

    /// The state shared with the web UI.
    pub fn state(&self) -> &SharedMasterState {
        &self.state
    }

    /// The registered workers, sorted by id.
    pub fn workers(&self) -> Vec<WorkerSnapshot> {
        self.state.lock().workers()
    }

    /// A handle to shut the RpcEnv down from another thread (e.g. a signal handler).
    pub fn rpc_handle(&self) -> rpc::RpcEnvHandle {
        self.env.handle()
    }

    /// Stops the web UI and the RpcEnv. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(ui) = self.web_ui.take() {
            ui.stop();
        }
        self.env.shutdown();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.shutdown();
    }
}
