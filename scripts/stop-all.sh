#!/usr/bin/env bash
# Stops the workers of conf/workers and the master (Spark's sbin/stop-all.sh).
#
#   scripts/stop-all.sh                 workers (local and over ssh), then the master
#   scripts/stop-all.sh --local-workers this machine's workers only (what ssh runs remotely)
#
# Each process gets SIGTERM (a worker then tells the master it leaves), and SIGKILL if it
# has not exited 10 s later; its pid file is removed. Environment as for start-all.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="${STANDALONE_CONF_DIR:-$ROOT/conf}"
PID_DIR="${STANDALONE_PID_DIR:-$ROOT/pids}"
SSH_OPTS="${STANDALONE_SSH_OPTS:--o StrictHostKeyChecking=no -o ConnectTimeout=5}"

running() { # pid: alive, not a zombie, and a standalone process
  local pid="$1"
  [[ -r "/proc/$pid/stat" ]] || return 1
  [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]] || return 1
  { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q standalone
}

stop_pid_file() {
  local file="$1" pid
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if running "$pid"; then
    echo "stopping $(basename "$file" .pid) (process $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "process $pid did not exit in 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

stop_local_workers() {
  local f
  for f in "$PID_DIR"/standalone-worker-*.pid; do
    [[ -e "$f" ]] && stop_pid_file "$f"
  done
  return 0
}

if [[ "${1:-}" == "--local-workers" ]]; then
  stop_local_workers
  exit 0
fi

is_local() {
  case "$1" in
    localhost | 127.0.0.1 | ::1 | "$(hostname)" | "$(hostname -f 2>/dev/null || hostname)") return 0 ;;
    *) return 1 ;;
  esac
}

if [[ -f "$CONF_DIR/workers" ]]; then
  while read -r host; do
    is_local "$host" && continue
    # shellcheck disable=SC2086 # SSH_OPTS is a list of options
    ssh $SSH_OPTS "$host" "cd '$ROOT' && scripts/stop-all.sh --local-workers" 2>&1 | sed "s/^/$host: /" || true
  done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$CONF_DIR/workers" | grep -v '^$' | sort -u || true)
fi
stop_local_workers
stop_pid_file "$PID_DIR/standalone-master.pid"
rm -f "$PID_DIR/master.ports"
echo "stopped"
