//! The master's web UI (Spark's `MasterWebUI`): an HTML page at `/` listing
//! the workers, the same list as JSON at `/json/workers`, and a cluster
//! summary at `/json`. It runs axum on a small tokio runtime of its own (one
//! thread), apart from the RPC transport's threads, and reads the
//! [`MasterState`](crate::master_state::MasterState) the endpoint updates.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::thread::JoinHandle;

use axum::extract::State;
use axum::response::{Html, Json};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::config::bind_address;
use crate::error::{Result, StandaloneError};
use crate::master_state::{ClusterSnapshot, SharedMasterState};
use crate::worker_info::WorkerSnapshot;

/// A running web UI; [`stop`](Self::stop) or drop it to shut it down.
#[derive(Debug)]
pub struct WebUi {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebUi {
    /// Serves the UI on `host:port` (0 picks a free port).
    ///
    /// # Errors
    /// [`StandaloneError::WebUi`] when binding or starting the runtime fails.
    pub fn start(host: &str, port: u16, state: SharedMasterState) -> Result<Self> {
        let addr = bind_address(host, port)?;
        let err = |reason: String| StandaloneError::WebUi {
            address: addr.to_string(),
            reason,
        };
        let listener = TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let port = listener.local_addr().map_err(|e| err(e.to_string()))?.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/", get(index))
            .route("/json", get(cluster_json))
            .route("/json/workers", get(workers_json))
            .with_state(state);
        let thread = std::thread::Builder::new()
            .name("master-web-ui".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "web UI cannot listen"),
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "web UI stopped");
                    }
                });
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving and joins its thread.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebUi {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn workers_json(State(state): State<SharedMasterState>) -> Json<Vec<WorkerSnapshot>> {
    Json(state.lock().workers())
}

async fn cluster_json(State(state): State<SharedMasterState>) -> Json<ClusterSnapshot> {
    Json(state.lock().cluster())
}

async fn index(State(state): State<SharedMasterState>) -> Html<String> {
    let cluster = state.lock().cluster();
    Html(render(&cluster))
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page at `/`.
fn render(c: &ClusterSnapshot) -> String {
    let mut rows = String::new();
    for w in &c.workers {
        let _ = writeln!(
            rows,
            "<tr class=\"worker\"><td class=\"id\">{}</td><td>{}</td><td>{}</td><td>{} MiB</td>\
             <td class=\"state\">{}</td><td>{:.1}</td><td>{}</td></tr>",
            esc(&w.id),
            esc(&w.address),
            w.cores,
            w.memory_mb,
            w.state.as_str(),
            w.seconds_since_heartbeat,
            esc(&w.io_mode)
        );
    }
    if c.workers.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">No workers registered.</td></tr>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>Master at {url}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}}\
         h1{{font-size:24px}} h1 span{{color:#0d6efd}}\
         ul{{list-style:none;padding:0}} li{{margin:2px 0}}\
         table{{border-collapse:collapse;width:100%}}\
         th,td{{border:1px solid #ccc;padding:6px 10px;text-align:left}}\
         th{{background:#eef3fb}} tr:nth-child(even) td{{background:#f8f8f8}}\
         </style></head><body>\n\
         <h1><span>&#9889; Standalone</span> Master at {url}</h1>\n\
         <ul><li><strong>URL:</strong> {url}</li><li><strong>IO mode:</strong> {io}</li>\
         <li><strong>Alive workers:</strong> <span id=\"alive\">{alive}</span></li>\
         <li><strong>Cores:</strong> {cores} total</li>\
         <li><strong>Memory:</strong> {mem} MiB total</li>\
         <li><strong>Status:</strong> ALIVE</li></ul>\n\
         <h2>Workers ({n})</h2>\n<table id=\"workers\"><thead><tr><th>Worker Id</th><th>Address</th>\
         <th>Cores</th><th>Memory</th><th>State</th><th>Seconds since heartbeat</th><th>IO mode</th>\
         </tr></thead><tbody>\n{rows}</tbody></table>\n\
         <p>JSON: <a href=\"/json/workers\">/json/workers</a>, <a href=\"/json\">/json</a></p>\n\
         </body></html>\n",
        url = esc(&c.url),
        io = esc(&c.io_mode),
        alive = c.alive_workers,
        cores = c.cores,
        mem = c.memory_mb,
        n = c.workers.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_lists() {
        let c = ClusterSnapshot {
            url: "rpc://h:1".into(),
            io_mode: "epoll".into(),
            alive_workers: 0,
            cores: 0,
            memory_mb: 0,
            workers: vec![],
        };
        let page = render(&c);
        assert!(page.contains("No workers registered") && page.contains("rpc://h:1"));
        assert_eq!(esc("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}
