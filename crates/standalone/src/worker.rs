//! The `Worker` (Spark's `deploy.worker.Worker`): registers with the master,
//! retrying with exponential backoff; sends a heartbeat every quarter of the
//! worker timeout; registers again when the master asks (`ReconnectWorker`)
//! or its connection to the master drops; tells the master when it stops.
//!
//! All of the endpoint's state changes on its own inbox: timers post
//! [`WorkerMessage`]s to it, and the answers to its asks come back as
//! messages too (as Spark's Worker does with `self.send`), so it never blocks
//! a MessageLoop thread waiting for the master.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rpc::{Msg, RpcAddress, RpcEndpoint, RpcEndpointRef, RpcEnv, RpcEnvConfig, RpcError, RpcSender};

use crate::config::{StandaloneConfig, bind_address};
use crate::error::Result;
use crate::messages::{
    MASTER_ENDPOINT_NAME, MasterMessage, MasterReply, RegisterWorker, WORKER_ENDPOINT_NAME, WorkerMessage,
};
use crate::scheduler::Scheduler;
use crate::worker_status::{WorkerFailure, WorkerStatus};

type SelfRef = Arc<OnceLock<RpcEndpointRef<WorkerMessage, ()>>>;
type MasterRef = RpcEndpointRef<MasterMessage, MasterReply>;

/// The worker's endpoint (Spark's `Worker` as a `ThreadSafeRpcEndpoint`).
struct WorkerEndpoint {
    reg: RegisterWorker,
    master: MasterRef,
    master_address: RpcAddress,
    me: SelfRef,
    scheduler: Scheduler,
    status: Arc<WorkerStatus>,
    config: StandaloneConfig,
    registered: bool,
    registering: bool,
    /// The registration round: stale answers of earlier rounds are ignored.
    round: u64,
    round_started: Instant,
    attempts: u32,
    heartbeats_failing: bool,
}

fn split(result: std::result::Result<MasterReply, RpcError>) -> (Option<MasterReply>, String) {
    match result {
        Ok(r) => (Some(r), String::new()),
        Err(e) => (None, e.to_string()),
    }
}

impl WorkerEndpoint {
    fn me(&self) -> RpcEndpointRef<WorkerMessage, ()> {
        self.me.get().expect("set before the first message").clone()
    }

    /// Starts a registration round (Spark's `registerWithMaster`).
    fn begin_registration(&mut self) {
        if self.registering || self.status.is_stopped() {
            return;
        }
        self.registered = false;
        self.status.set_registered(false);
        self.registering = true;
        self.round += 1;
        self.round_started = Instant::now();
        self.attempts = 0;
        self.try_register();
    }

    fn try_register(&mut self) {
        self.attempts += 1;
        let (round, me) = (self.round, self.me());
        let timeout = Duration::from_millis(self.config.register_backoff_max_ms.max(2_000));
        self.master
            .ask_with_timeout(MasterMessage::RegisterWorker(self.reg.clone()), timeout)
            .on_complete(move |result| {
                let (reply, error) = split(result);
                let _ = me.send(WorkerMessage::RegisterResponse { round, reply, error });
            });
    }

    /// The wait before attempt `attempts + 1`: the initial backoff doubled per
    /// attempt, capped, with up to 20 % jitter so that many workers spread out.
    fn backoff(&self) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(20);
        let base = self
            .config
            .register_backoff_initial_ms
            .saturating_mul(1 << shift)
            .min(self.config.register_backoff_max_ms);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Duration::from_millis(base + u64::from(nanos) % (base / 5 + 1))
    }

    fn on_register_response(&mut self, round: u64, reply: Option<MasterReply>, error: String) {
        if round != self.round || !self.registering {
            return;
        }
        match reply {
            Some(MasterReply::RegisteredWorker { master_url, .. }) => {
                self.registering = false;
                self.registered = true;
                self.heartbeats_failing = false;
                self.status.set_registered(true);
                tracing::info!(worker = %self.reg.id, "Successfully registered with master {master_url}");
            }
            Some(MasterReply::RegisterWorkerFailed { reason }) => {
                self.registering = false;
                tracing::error!(worker = %self.reg.id, %reason, "the master refused the registration");
                self.status.fail(WorkerFailure::Refused { reason });
            }
            other => {
                let error = other.map_or(error, |r| format!("unexpected reply {r:?}"));
                let elapsed = self.round_started.elapsed();
                if elapsed >= Duration::from_millis(self.config.register_timeout_ms) {
                    self.registering = false;
                    let failure = WorkerFailure::TimedOut {
                        master: self.master_address.to_string(),
                        attempts: self.attempts,
                        elapsed,
                        last_error: error,
                    };
                    tracing::error!(worker = %self.reg.id, "{}", failure.to_error(&self.reg.id));
                    self.status.fail(failure);
                    return;
                }
                let remaining = Duration::from_millis(self.config.register_timeout_ms) - elapsed;
                let wait = self.backoff().min(remaining);
                tracing::warn!(
                    worker = %self.reg.id, attempt = self.attempts,
                    "cannot register with master {}: {error}; retrying in {wait:?}", self.master_address
                );
                let me = self.me();
                self.scheduler.schedule_once(wait, move || {
                    let _ = me.send(WorkerMessage::ReregisterWithMaster { round });
                });
            }
        }
    }

    /// Spark's `sendToMaster(Heartbeat(workerId, self))`, as an ask so that the
    /// answer says whether the master still knows this worker.
    fn send_heartbeat(&mut self) {
        if !self.registered || self.status.is_stopped() {
            return;
        }
        let (round, me) = (self.round, self.me());
        let msg = MasterMessage::Heartbeat {
            worker_id: self.reg.id.clone(),
        };
        self.master
            .ask_with_timeout(msg, self.config.worker_timeout())
            .on_complete(move |result| {
                let (reply, error) = split(result);
                let _ = me.send(WorkerMessage::HeartbeatResponse { round, reply, error });
            });
    }

    fn on_heartbeat_response(&mut self, round: u64, reply: Option<MasterReply>, error: String) {
        if round != self.round || !self.registered {
            return;
        }
        match reply {
            Some(MasterReply::ReconnectWorker { master_url }) => {
                tracing::info!(worker = %self.reg.id, "Master {master_url} asks to re-register");
                self.begin_registration();
            }
            Some(_) if self.heartbeats_failing => {
                self.heartbeats_failing = false;
                tracing::info!(worker = %self.reg.id, "heartbeats reach the master again");
            }
            Some(_) => {}
            None if !self.heartbeats_failing => {
                self.heartbeats_failing = true;
                tracing::warn!(worker = %self.reg.id, "heartbeat to the master failed: {error}; retrying");
            }
            None => {}
        }
    }
}

impl RpcEndpoint for WorkerEndpoint {
    type Message = WorkerMessage;
    type Reply = ();

    fn receive(&mut self, msg: Msg<'_, WorkerMessage>, _sender: &RpcSender) {
        let msg = match msg.into_owned() {
            Ok(m) => m,
            Err(e) => return self.on_error(&e),
        };
        match msg {
            WorkerMessage::ReconnectWorker { .. } => self.begin_registration(),
            WorkerMessage::ReregisterWithMaster { round } if round == self.round && self.registering => {
                self.try_register()
            }
            WorkerMessage::ReregisterWithMaster { .. } => {}
            WorkerMessage::SendHeartbeat => self.send_heartbeat(),
            WorkerMessage::RegisterResponse { round, reply, error } => {
                self.on_register_response(round, reply, error)
            }
            WorkerMessage::HeartbeatResponse { round, reply, error } => {
                self.on_heartbeat_response(round, reply, error)
            }
        }
    }

    fn on_disconnected(&mut self, remote: &RpcAddress) {
        if *remote == self.master_address && self.registered {
            tracing::warn!(worker = %self.reg.id, "connection to master {remote} lost; registering again");
            self.begin_registration();
        }
    }
}

/// A running worker: its endpoint, its heartbeat timer and, when it owns
/// one, its RpcEnv. [`stop`](Self::stop) (or dropping it) tells the master it leaves.
pub struct Worker {
    id: String,
    env: Option<RpcEnv>,
    master: MasterRef,
    status: Arc<WorkerStatus>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).finish()
    }
}

impl Worker {
    /// Starts a worker process's parts (Spark's `Worker.startRpcEnvAndEndpoint`):
    /// an RpcEnv named `Worker` bound to `worker_host:worker_port` and the
    /// `Worker` endpoint, which starts registering with the master at
    /// `master_host:master_port`. Returns at once; see [`wait_registered`](Self::wait_registered).
    ///
    /// # Errors
    /// [`StandaloneError::Resolve`](crate::StandaloneError::Resolve) or
    /// [`StandaloneError::Rpc`](crate::StandaloneError::Rpc) (port taken, IO mode unavailable).
    pub fn launch(config: &StandaloneConfig, mut rpc: RpcEnvConfig) -> Result<Self> {
        rpc.name = "Worker".into();
        rpc.bind_address = Some(bind_address(&config.worker_host, config.worker_port)?);
        if rpc.advertise_host.is_none() && config.worker_host != "0.0.0.0" {
            rpc.advertise_host = Some(config.worker_host.clone());
        }
        let env = RpcEnv::create(rpc)?;
        let scheduler = Scheduler::new("worker-timer")?;
        let mut worker = Self::launch_in(&env, WORKER_ENDPOINT_NAME, config, &scheduler)?;
        worker.env = Some(env);
        Ok(worker)
    }

    /// Starts a worker endpoint named `endpoint_name` in an existing RpcEnv,
    /// with timers on `scheduler`: many workers can share one process (tests,
    /// load generators). Its host and port are the RpcEnv's address (or
    /// `worker_host` and 0 for a client-mode RpcEnv).
    ///
    /// # Errors
    /// [`StandaloneError::Rpc`](crate::StandaloneError::Rpc) when the name is taken or the RpcEnv stopped.
    pub fn launch_in(
        env: &RpcEnv,
        endpoint_name: &str,
        config: &StandaloneConfig,
        scheduler: &Scheduler,
    ) -> Result<Self> {
        let (host, port) = env
            .address()
            .map_or((config.worker_host.clone(), 0), |a| (a.host.clone(), a.port));
        let id = if config.worker_id.is_empty() {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let port_or_pid = if port == 0 {
                std::process::id()
            } else {
                u32::from(port)
            };
            format!("worker-{secs}-{host}-{port_or_pid}")
        } else {
            config.worker_id.clone()
        };
        let master_address = config.master_address();
        let master: MasterRef = env.endpoint_ref(&master_address, MASTER_ENDPOINT_NAME);
        let resolved = master_address
            .to_socket_addr()
            .map_or(master_address, RpcAddress::from);
        let status = Arc::new(WorkerStatus::default());
        let me: SelfRef = Arc::new(OnceLock::new());
        let endpoint = WorkerEndpoint {
            reg: RegisterWorker {
                id: id.clone(),
                host,
                port,
                cores: config.resolved_cores(),
                memory_mb: config.resolved_memory_mb(),
                io_mode: env.io_mode().as_str().into(),
                endpoint_name: endpoint_name.into(),
            },
            master: master.clone(),
            master_address: resolved,
            me: me.clone(),
            scheduler: scheduler.clone(),
            status: status.clone(),
            config: config.clone(),
            registered: false,
            registering: false,
            round: 0,
            round_started: Instant::now(),
            attempts: 0,
            heartbeats_failing: false,
        };
        let endpoint_ref = env.setup_endpoint(endpoint_name, endpoint)?;
        let _ = me.set(endpoint_ref.clone());
        endpoint_ref.send(WorkerMessage::ReconnectWorker {
            master_url: config.master_address().to_url(),
        })?;
        let (tick, tick_status) = (endpoint_ref, status.clone());
        scheduler.schedule_every(config.heartbeat_interval(), move || {
            !tick_status.is_stopped() && tick.send(WorkerMessage::SendHeartbeat).is_ok()
        });
        Ok(Self {
            id,
            env: None,
            master,
            status,
        })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What its endpoint publishes.
    pub fn status(&self) -> &Arc<WorkerStatus> {
        &self.status
    }

    /// The worker's own RpcEnv, when it has one ([`launch`](Self::launch)).
    pub fn env(&self) -> Option<&RpcEnv> {
        self.env.as_ref()
    }

    /// Blocks until registered, or the worker gives up, or `timeout` passes.
    ///
    /// # Errors
    /// [`StandaloneError::RegistrationRefused`](crate::StandaloneError::RegistrationRefused),
    /// [`StandaloneError::RegistrationTimedOut`](crate::StandaloneError::RegistrationTimedOut),
    /// [`StandaloneError::Timeout`](crate::StandaloneError::Timeout).
    pub fn wait_registered(&self, timeout: Duration) -> Result<()> {
        self.status.wait_registrations(&self.id, 1, timeout)
    }

    /// Stops: no more heartbeats; tells the master it leaves (`WorkerStopping`,
    /// waiting up to 2 s for the answer) so that it disappears at once; shuts
    /// its own RpcEnv down. Idempotent.
    pub fn stop(&mut self) {
        if self.status.is_stopped() {
            return;
        }
        self.status.set_stopped();
        if self.status.is_registered() {
            let msg = MasterMessage::WorkerStopping {
                worker_id: self.id.clone(),
            };
            if let Err(e) = self.master.ask_with_timeout(msg, Duration::from_secs(2)).wait() {
                tracing::warn!(worker = %self.id, error = %e, "could not tell the master this worker stops");
            }
        }
        if let Some(env) = self.env.take() {
            env.shutdown();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}
