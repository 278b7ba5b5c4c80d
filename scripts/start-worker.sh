#!/usr/bin/env bash
# Starts a standalone worker on this machine, in the background (Spark's sbin/start-worker.sh).
#
#   scripts/start-worker.sh [MASTER_URL] [INSTANCE]
#
# MASTER_URL is rpc://host:port (default: STANDALONE_MASTER_HOST and the port of a local
# master's ports file, else STANDALONE_MASTER_PORT or 7077). INSTANCE (default 1) numbers
# the workers of one machine: each has its own pid file and log, a free port (port 0) and,
# as the default id includes the port, its own id. Environment as for start-master.sh.
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

MASTER_URL="${1:-}"
INSTANCE="${2:-1}"
if [[ -z "$MASTER_URL" ]]; then
  PORT="${STANDALONE_MASTER_PORT:-7077}"
  [[ -s "$PID_DIR/master.ports" ]] && read -r PORT _ <"$PID_DIR/master.ports"
  MASTER_URL="rpc://${STANDALONE_MASTER_HOST:-127.0.0.1}:$PORT"
fi

PID_FILE="$PID_DIR/standalone-worker-$INSTANCE.pid"
if [[ -f "$PID_FILE" ]] && running "$(cat "$PID_FILE")"; then
  echo "worker $INSTANCE already running as process $(cat "$PID_FILE"); stop it first" >&2
  exit 1
fi

ARGS=(worker --master "$MASTER_URL")
[[ -f "$CONF_DIR/standalone.toml" ]] && ARGS+=(--config "$CONF_DIR/standalone.toml")
[[ -n "${STANDALONE_WORKER_ID:-}" ]] && ARGS+=(--id "$STANDALONE_WORKER_ID-$INSTANCE")
LOG="$LOG_DIR/standalone-worker-$INSTANCE-$(hostname).out"
echo "starting worker $INSTANCE for $MASTER_URL, logging to $LOG"
nohup "$BIN" "${ARGS[@]}" >>"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PID_FILE"
sleep 0.2
if ! running "$PID"; then
  echo "worker $INSTANCE failed to start; the end of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  rm -f "$PID_FILE"
  exit 1
fi
echo "worker $INSTANCE running as process $PID"
