#!/usr/bin/env bash
# Runs rpc-bench across machines: `rpc-bench serve` on one host and `rpc-bench load` on every
# other host at once, then gathers each client's JSON record and latency histogram, merges the
# histograms (`rpc-bench merge`) and writes one results folder.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/run-cluster-bench.sh --hosts SERVER,CLIENT1[,CLIENT2...] [options]
       scripts/run-cluster-bench.sh --netns N [--delay MS] [options]

Starts `rpc-bench serve` on the server and `rpc-bench load` on every client at the same time,
then writes one results folder: runs.jsonl (every client's record), hist/ (each client's
.hist/.hgrm), merged.hist/.hgrm and merged.json (`rpc-bench merge`), serve.log and summary.md
(total req/s = sum over clients, merged percentiles, the command, the hosts).

Hosts (one of):
  --hosts LIST         ssh hosts ([user@]host), comma-separated: the first serves, the others
                       load. Needs passwordless ssh; the binary (and --config) is copied to
                       --remote-dir on each host.
  --ssh-opts "OPTS"    extra options for ssh and scp (e.g. "-i ~/.ssh/bench -p 2222").
  --server-addr HOST   the address clients connect to (default: the server's host name).
  --remote-dir DIR     where files go on ssh hosts (default /tmp/rpc-bench-cluster-$USER).
  --netns N            N >= 2 network namespaces on this machine, joined by veth pairs to a
                       bridge, as the hosts (10.77.0.1 serves, 10.77.0.2.. load; these
                       addresses exist inside the namespaces only). Needs root. Everything
                       is removed on exit, on failure and on Ctrl-C.
  --delay MS           with --netns: netem delay on every namespace's link (RTT = 2 x MS).

What runs (passed to rpc-bench serve/load):
  --io-mode M          epoll | io_uring | auto, on both sides
  --config FILE        rpc-bench --config file for both sides (io_mode, [transport] ...)
  --level L            transport (default) | rpc
  --payload B --response B --conns N --inflight N --duration S --warmup S
  --client-threads N --server-threads N
  --verify             every client checks every response byte for byte
  --port P             server port (default 0: any free port)

Output and binary:
  --results-dir DIR    results folder (default results/cluster-<date>-<sha>)
  --bin PATH           rpc-bench binary (default target/release/rpc-bench, built if missing)
  -h, --help           this text

Needs jq on this machine. Example:
  sudo scripts/run-cluster-bench.sh --netns 3 --io-mode epoll --payload 4KiB --inflight 16
EOF
}

die() {
  echo "run-cluster-bench: $*" >&2
  exit 2
}

root="$(cd "$(dirname "$0")/.." && pwd)"
command_line="$0 $*"
hosts_csv="" ssh_opts="" server_addr="" remote_dir="/tmp/rpc-bench-cluster-${USER:-$(id -un)}"
netns=0 delay="" results_dir="" bin="" port=0 level=transport
serve_args=() load_args=()

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --hosts) need_value "$@"; hosts_csv="$2"; shift 2 ;;
    --ssh-opts) [ $# -ge 2 ] || die "--ssh-opts needs a value"; ssh_opts="$2"; shift 2 ;;
    --server-addr) need_value "$@"; server_addr="$2"; shift 2 ;;
    --remote-dir) need_value "$@"; remote_dir="$2"; shift 2 ;;
    --netns) need_value "$@"; netns="$2"; shift 2 ;;
    --delay) need_value "$@"; delay="$2"; shift 2 ;;
    --results-dir) need_value "$@"; results_dir="$2"; shift 2 ;;
    --bin) need_value "$@"; bin="$2"; shift 2 ;;
    --port) need_value "$@"; port="$2"; shift 2 ;;
    --config) need_value "$@"; config="$2"; shift 2 ;;
    --level) need_value "$@"; level="$2"; shift 2 ;;
    --io-mode) need_value "$@"; serve_args+=("$1" "$2"); load_args+=("$1" "$2"); shift 2 ;;
    --response) need_value "$@"; serve_args+=("$1" "$2"); load_args+=("$1" "$2"); shift 2 ;;
    --server-threads) need_value "$@"; serve_args+=("$1" "$2"); shift 2 ;;
    --payload | --conns | --inflight | --duration | --warmup | --client-threads)
      need_value "$@"; load_args+=("$1" "$2"); shift 2 ;;
    --verify) load_args+=("$1"); shift ;;
    *) usage >&2; die "unknown option \`$1\`" ;;
  esac
done

# ---- checks -------------------------------------------------------------------------------
if [ "$netns" != 0 ] && [ -n "$hosts_csv" ]; then die "give --hosts or --netns, not both"; fi
if [ "$netns" = 0 ] && [ -z "$hosts_csv" ]; then usage >&2; die "give --hosts SERVER,CLIENT... or --netns N"; fi
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, not \`$port\`"
[ -z "$delay" ] || [[ "$delay" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--delay must be milliseconds, not \`$delay\`"
[ -z "$delay" ] || [ "$netns" != 0 ] || die "--delay works with --netns only (use tc on real hosts)"
command -v jq >/dev/null 2>&1 || die "jq is missing; install it (apt-get install jq)"
if [ "$netns" != 0 ]; then
  if ! [[ "$netns" =~ ^[0-9]+$ ]] || [ "$netns" -lt 2 ] || [ "$netns" -gt 200 ]; then
    die "--netns needs a number of hosts from 2 to 200 (one server, the rest clients), not \`$netns\`"
  fi
  [ "$(id -u)" -eq 0 ] ||
    die "--netns needs root to create network namespaces, veth pairs and a bridge; run it with sudo"
  command -v ip >/dev/null 2>&1 || die "the ip command (iproute2) is missing; install iproute2"
  [ -z "$delay" ] || command -v tc >/dev/null 2>&1 || die "--delay needs tc (iproute2)"
fi
if [ -n "${config:-}" ]; then
  [ -f "$config" ] || die "--config $config: no such file"
  config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
fi
if [ -z "$bin" ]; then
  bin="${CARGO_TARGET_DIR:-$root/target}/release/rpc-bench"
  if [ ! -x "$bin" ]; then
    echo "run-cluster-bench: building $bin" >&2
    (cd "$root" && cargo build --release -p bench --bin rpc-bench) >&2
  fi
fi
[ -x "$bin" ] || die "--bin $bin is not an executable rpc-bench"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

sha="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
stamp="$(date -u +%Y%m%d-%H%M%S)"
results_dir="${results_dir:-$root/results/cluster-$stamp-$sha}"
mkdir -p "$results_dir/hist"
results_dir="$(cd "$results_dir" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/rpc-bench-cluster.XXXXXX")"

# ---- hosts ----------------------------------------------------------------------------------
hosts=()        # what the summary names each host
namespaces=()   # --netns: the namespaces created (removed on exit)
tag="$$"
bridge="rcb${tag}br"
server_pid=""
load_pids=()
remote_ready=0  # ssh hosts: their run folders exist (removed on exit)

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$server_pid" ]; then on_host 0 "kill -TERM $server_pid 2>/dev/null" >/dev/null 2>&1; fi
  for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null; done
  for ((i = 0; i < ${#namespaces[@]}; i++)); do ip link del "rcb${tag}h$i" 2>/dev/null; done
  for ns in "${namespaces[@]}"; do
    # Only this script's processes live in its namespaces.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ "$netns" != 0 ]; then ip link del "$bridge" 2>/dev/null; fi
  if [ "$netns" = 0 ] && [ "$remote_ready" = 1 ]; then
    for ((i = 0; i < ${#hosts[@]}; i++)); do on_host "$i" "rm -rf '$(host_dir "$i")'" >/dev/null 2>&1; done
  fi
  rm -rf "$work"
  if [ "$rc" -ne 0 ]; then echo "run-cluster-bench: failed (exit $rc); cleaned up" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# on_host I CMD: runs the shell command CMD on host I (0 = the server).
on_host() {
  if [ "$netns" != 0 ]; then
    ip netns exec "${namespaces[$1]}" bash -c "$2"
  else
    # shellcheck disable=SC2086  # ssh_opts is a list of options
    ssh $ssh_opts -o BatchMode=yes "${hosts[$1]}" "$2"
  fi
}

# fetch I REMOTE LOCAL: copies a file of host I here.
fetch() {
  if [ "$netns" != 0 ]; then
    cp "$2" "$3"
  else
    # shellcheck disable=SC2086
    scp -q $ssh_opts -o BatchMode=yes "${hosts[$1]}:$2" "$3"
  fi
}

if [ "$netns" != 0 ]; then
  echo "run-cluster-bench: $netns namespaces on bridge $bridge (10.77.0.1-$netns)${delay:+, netem delay ${delay} ms}" >&2
  ip link add "$bridge" type bridge
  # Bridged frames skip iptables, if this kernel's bridge has the option (a FORWARD DROP policy would drop them).
  ip link set "$bridge" type bridge nf_call_iptables 0 2>/dev/null || true
  ip link set "$bridge" up
  for ((i = 0; i < netns; i++)); do
    ns="rpcbench-$tag-$i"
    ip netns add "$ns"
    namespaces+=("$ns")
    ip link add "rcb${tag}h$i" type veth peer name "rcb${tag}n$i"
    ip link set "rcb${tag}n$i" netns "$ns"
    ip -n "$ns" link set "rcb${tag}n$i" name eth0
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "rcb${tag}h$i" master "$bridge" up
    if [ -n "$delay" ] && ! ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "${delay}ms"; then
      die "--delay: this kernel has no netem qdisc (try modprobe sch_netem), or tc refused it; see above"
    fi
    hosts+=("10.77.0.$((i + 1))")
  done
  bind_host="10.77.0.1"
  connect_host="10.77.0.1"
  rbin="$bin"
  rconfig="${config:-}"
else
  IFS=',' read -r -a hosts <<<"$hosts_csv"
  [ "${#hosts[@]}" -ge 2 ] || die "--hosts needs a server and at least one client: SERVER,CLIENT1[,...]"
  bind_host="0.0.0.0"
  connect_host="${server_addr:-${hosts[0]#*@}}"
  rbin="$remote_dir/rpc-bench"
  rconfig="${config:+$remote_dir/config.toml}"
  for ((i = 0; i < ${#hosts[@]}; i++)); do
    echo "run-cluster-bench: copying rpc-bench to ${hosts[$i]}:$remote_dir" >&2
    on_host "$i" "mkdir -p '$remote_dir'" || die "cannot ssh to ${hosts[$i]}; check passwordless ssh (ssh ${hosts[$i]} true) and --ssh-opts"
    # shellcheck disable=SC2086
    scp -q $ssh_opts -o BatchMode=yes "$bin" "${hosts[$i]}:$rbin"
    if [ -n "${config:-}" ]; then
      # shellcheck disable=SC2086
      scp -q $ssh_opts -o BatchMode=yes "$config" "${hosts[$i]}:$rconfig"
    fi
  done
fi
nhosts="${#hosts[@]}"
config_args=""
if [ -n "$rconfig" ]; then config_args="--config '$rconfig'"; fi

# Per-host folders: local folders in --netns mode (one filesystem), remote_dir on ssh hosts.
host_dir() {
  if [ "$netns" != 0 ]; then echo "$work/host-$1"; else echo "$remote_dir/run-$tag-$1"; fi
}
remote_ready=1
for ((i = 0; i < nhosts; i++)); do on_host "$i" "rm -rf '$(host_dir "$i")' && mkdir -p '$(host_dir "$i")/hist'"; done

# ---- serve ----------------------------------------------------------------------------------
sdir="$(host_dir 0)"
serve_cmd="'$rbin' serve --bind $bind_host:$port --level $level $config_args ${serve_args[*]}"
echo "run-cluster-bench: on ${hosts[0]}: $serve_cmd" >&2
server_pid="$(on_host 0 "nohup $serve_cmd >'$sdir/serve.out' 2>'$sdir/serve.err' </dev/null & echo \$!")"
listening=""
for _ in $(seq 1 200); do
  listening="$(on_host 0 "head -n 1 '$sdir/serve.out' 2>/dev/null" || true)"
  [ -n "$listening" ] && break
  if ! on_host 0 "kill -0 $server_pid 2>/dev/null"; then
    die "rpc-bench serve on ${hosts[0]} exited: $(on_host 0 "cat '$sdir/serve.err'" || true)"
  fi
  sleep 0.05
done
[[ "$listening" == "LISTENING "* ]] || die "rpc-bench serve on ${hosts[0]} printed \`$listening\`, not LISTENING <addr>"
server_port="${listening##*:}"
connect="$connect_host:$server_port"
echo "run-cluster-bench: server listening on $connect" >&2

# ---- load, every client at once --------------------------------------------------------------
load_cmd_of() {
  echo "'$rbin' load --connect $connect --level $level $config_args ${load_args[*]} --json --histogram-dir '$(host_dir "$1")/hist'"
}
for ((i = 1; i < nhosts; i++)); do
  echo "run-cluster-bench: on ${hosts[$i]}: $(load_cmd_of "$i")" >&2
  on_host "$i" "$(load_cmd_of "$i")" >"$work/client-$i.json" 2>"$work/client-$i.err" &
  load_pids+=("$!")
done
failed=0
for ((i = 1; i < nhosts; i++)); do
  if ! wait "${load_pids[$((i - 1))]}"; then
    echo "run-cluster-bench: rpc-bench load on ${hosts[$i]} failed: $(cat "$work/client-$i.err")" >&2
    failed=1
  fi
done
load_pids=()

# ---- stop the server ------------------------------------------------------------------------
on_host 0 "kill -TERM $server_pid"
for _ in $(seq 1 100); do on_host 0 "kill -0 $server_pid 2>/dev/null" || break; sleep 0.05; done
server_pid=""
fetch 0 "$sdir/serve.err" "$results_dir/serve.log"
[ "$failed" = 0 ] || die "a client failed; see above (serve's log: $results_dir/serve.log)"

# ---- gather ---------------------------------------------------------------------------------
: >"$results_dir/runs.jsonl"
hist_files=()
for ((i = 1; i < nhosts; i++)); do
  line="$(grep '^{' "$work/client-$i.json" | tail -n 1)"
  [ -n "$line" ] || die "rpc-bench load on ${hosts[$i]} printed no JSON record"
  stem="$(jq -r '.histogram // empty' <<<"$line")"
  [ -n "$stem" ] || die "the record of ${hosts[$i]} names no histogram"
  name="client-$i-${hosts[$i]//[^A-Za-z0-9._-]/-}"
  fetch "$i" "$(host_dir "$i")/hist/$stem.hist" "$results_dir/hist/$name.hist"
  fetch "$i" "$(host_dir "$i")/hist/$stem.hgrm" "$results_dir/hist/$name.hgrm"
  hist_files+=("$results_dir/hist/$name.hist")
  jq -c --arg client "${hosts[$i]}" --arg h "hist/$name" '. + {client: $client, histogram: $h}' <<<"$line" \
    >>"$results_dir/runs.jsonl"
done
"$bin" merge --out "$results_dir/merged" "${hist_files[@]}" >"$results_dir/merged.json"

# ---- summary --------------------------------------------------------------------------------
runs="$results_dir/runs.jsonl"
merged="$results_dir/merged.json"
total_rps="$(jq -s 'map(.rps) | add' "$runs")"
total_requests="$(jq -s 'map(.requests) | add' "$runs")"
total_errors="$(jq -s 'map(.errors) | add' "$runs")"
{
  echo "# rpc-bench cluster run, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Command: \`$command_line\`"
  echo
  echo "Source: $sha; binary: \`$bin\`"
  if [ "$netns" != 0 ]; then
    echo "Hosts: $netns network namespaces on one machine ($(uname -n), $(nproc) cores), bridge $bridge${delay:+, netem delay ${delay} ms each way}"
  else
    echo "Hosts: ssh, the server reached at $connect_host"
  fi
  echo
  echo "| role | host | system | level | workload | req/s | p50 µs | p99 µs | errors |"
  echo "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
  if [ "$netns" != 0 ]; then echo "| server | ${hosts[0]} (${namespaces[0]}) | serve | $level | ${serve_args[*]:-defaults} | | | | |"
  else echo "| server | ${hosts[0]} | serve | $level | ${serve_args[*]:-defaults} | | | | |"; fi
  jq -r '"| client | \(.client) | \(.system) | \(.level) | \(.payload) B → \(.response) B, \(.conns) × \(.inflight) | \(.rps | floor) | \(.p50_us) | \(.p99_us) | \(.errors) |"' "$runs"
  echo
  echo "**Total: $(jq -n "$total_rps | floor") req/s** (sum over $((nhosts - 1)) clients), $total_requests requests, $total_errors errors"
  echo
  echo "Merged latency ($(jq .count "$merged") requests, \`merged.hgrm\`): $(jq -r '"p50 \(.p50_us) µs, p90 \(.p90_us) µs, p99 \(.p99_us) µs, p99.9 \(.p999_us) µs, max \(.max_us) µs"' "$merged")"
  echo
  echo "Server: $(tail -n 1 "$results_dir/serve.log")"
  if [ "$netns" != 0 ]; then echo; echo "Namespaces (removed after the run): ${namespaces[*]}"; fi
} >"$results_dir/summary.md"
cat "$results_dir/summary.md"
echo "run-cluster-bench: results in $results_dir" >&2
