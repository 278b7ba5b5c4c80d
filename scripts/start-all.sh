#!/usr/bin/env bash
# Starts a master here and a worker on each host of conf/workers (Spark's sbin/start-all.sh).
#
#   scripts/start-all.sh
#
# conf/workers (in STANDALONE_CONF_DIR) lists one host per line, `#` starts a comment; without
# the file, one worker runs on localhost (copy conf/workers.template to begin). A host named
# localhost, 127.0.0.1, ::1 or this machine's name gets a local worker; one named twice gets
# two. Other hosts are reached with ssh (options in STANDALONE_SSH_OPTS) and must have this
# repository at the same path; set STANDALONE_MASTER_HOST to an address they can reach.
# Environment as for start-master.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="${STANDALONE_CONF_DIR:-$ROOT/conf}"
PID_DIR="${STANDALONE_PID_DIR:-$ROOT/pids}"
SSH_OPTS="${STANDALONE_SSH_OPTS:--o StrictHostKeyChecking=no -o ConnectTimeout=5}"

hosts() {
  if [[ -f "$CONF_DIR/workers" ]]; then
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$CONF_DIR/workers" | grep -v '^$' || true
  else
    echo localhost
  fi
}

is_local() {
  case "$1" in
    localhost | 127.0.0.1 | ::1 | "$(hostname)" | "$(hostname -f 2>/dev/null || hostname)") return 0 ;;
    *) return 1 ;;
  esac
}

"$ROOT/scripts/start-master.sh"
read -r RPC_PORT _ <"$PID_DIR/master.ports"
MASTER_URL="rpc://${STANDALONE_MASTER_HOST:-127.0.0.1}:$RPC_PORT"

instance=0
while read -r host; do
  instance=$((instance + 1))
  if is_local "$host"; then
    "$ROOT/scripts/start-worker.sh" "$MASTER_URL" "$instance"
  else
    # shellcheck disable=SC2086 # SSH_OPTS is a list of options
    ssh $SSH_OPTS "$host" "cd '$ROOT' && scripts/start-worker.sh '$MASTER_URL' $instance" 2>&1 |
      sed "s/^/$host: /"
  fi
done < <(hosts)
echo "cluster started: master $MASTER_URL, $instance worker(s)"
