#!/usr/bin/env bash
# Starts the standalone master on this machine, in the background (Spark's sbin/start-master.sh).
#
#   scripts/start-master.sh
#
# Environment (all optional):
#   STANDALONE_CONF_DIR   conf folder (default: <repo>/conf); its standalone.toml, if any, is passed as --config
#   STANDALONE_PID_DIR    pid files (default: <repo>/pids)
#   STANDALONE_LOG_DIR    logs (default: <repo>/logs)
#   STANDALONE_BIN        the binary (default: ${CARGO_TARGET_DIR:-<repo>/target}/release/standalone,
#                         built with `cargo build --release -p standalone` if missing)
#   STANDALONE_MASTER_HOST, STANDALONE_MASTER_PORT, STANDALONE_WEB_UI_PORT, STANDALONE_WORKER_TIMEOUT_MS,
#   RPC_IO_MODE, ...      read by the binary itself (see crates/standalone/src/config.rs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="${STANDALONE_CONF_DIR:-$ROOT/conf}"
PID_DIR="${STANDALONE_PID_DIR:-$ROOT/pids}"
LOG_DIR="${STANDALONE_LOG_DIR:-$ROOT/logs}"
BIN="${STANDALONE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/standalone}"
mkdir -p "$PID_DIR" "$LOG_DIR"

running() { # pid: alive, not a zombie, and a standalone process
  local pid="$1"
  [[ -r "/proc/$pid/stat" ]] || return 1
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]] || return 1
  { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q standalone
}

if [[ ! -x "$BIN" ]]; then
  echo "building $BIN (cargo build --release -p standalone)..."
  (cd "$ROOT" && cargo build --release -p standalone)
fi

PID_FILE="$PID_DIR/standalone-master.pid"
PORTS_FILE="$PID_DIR/master.ports"
if [[ -f "$PID_FILE" ]] && running "$(cat "$PID_FILE")"; then
  echo "master already running as process $(cat "$PID_FILE"); run scripts/stop-all.sh first" >&2
  exit 1
fi
rm -f "$PORTS_FILE"

CONFIG_ARGS=()
[[ -f "$CONF_DIR/standalone.toml" ]] && CONFIG_ARGS=(--config "$CONF_DIR/standalone.toml")
LOG="$LOG_DIR/standalone-master-$(hostname).out"
echo "starting master, logging to $LOG"
nohup "$BIN" master "${CONFIG_ARGS[@]}" --ports-file "$PORTS_FILE" >>"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PID_FILE"

for _ in $(seq 1 150); do # up to 15 s
  if [[ -s "$PORTS_FILE" ]]; then
    read -r RPC_PORT WEB_PORT <"$PORTS_FILE"
    HOST="${STANDALONE_MASTER_HOST:-127.0.0.1}"
    echo "master running as process $PID at rpc://$HOST:$RPC_PORT, web UI http://$HOST:$WEB_PORT/"
    exit 0
  fi
  if ! running "$PID"; then
    echo "the master failed to start; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    rm -f "$PID_FILE"
    exit 1
  fi
  sleep 0.1
done
echo "the master did not report its ports within 15 s; see $LOG" >&2
exit 1
