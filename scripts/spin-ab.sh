#!/usr/bin/env bash
# A/B of spinning before parking (transport key spin_before_park_us): runs
# `rpc-bench run` with RPC_SPIN_BEFORE_PARK_US=0 and with the default,
# alternately (A B A B ...), for each IO mode, level and workload below, and
# prints the median req/s and p50 of each side and their ratio.
#
#   scripts/spin-ab.sh [--pairs N] [--contend] [--duration S]
#
# --contend runs two busy loops (`yes > /dev/null`, one per CPU of a 2-vCPU
# machine) for the whole A/B: the case where other processes keep the cores
# busy and a spinning loop competes with them.
#
# B is the built-in default: an RPC_SPIN_BEFORE_PARK_US already set in the
# caller's environment is ignored. The binary is the one `cargo build` just
# made, in the target directory cargo uses (CARGO_TARGET_DIR included).
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=3
contend=false
duration=1
usage() { echo "usage: $0 [--pairs N] [--contend] [--duration S]  (N >= 1, default 3; S seconds > 0, default 1)"; }
bad() { echo "error: $1" >&2; usage >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs|--duration) [ $# -ge 2 ] || bad "$1 needs a value" ;;&
    --pairs) pairs="$2"; shift 2 ;;
    --contend) contend=true; shift ;;
    --duration) duration="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) bad "unknown argument: $1" ;;
  esac
done
[[ $pairs =~ ^[1-9][0-9]*$ ]] || bad "--pairs takes a whole number of 1 or more, not '$pairs'"
if ! awk -v d="$duration" 'BEGIN { exit !(d ~ /^[0-9]*\.?[0-9]+$/ && d > 0) }'; then
  bad "--duration takes seconds above 0, not '$duration'"
fi
command -v jq >/dev/null || { echo "error: needs jq (apt-get install jq)" >&2; exit 1; }

cargo build --quiet --release -p bench --bin rpc-bench
bench="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/rpc-bench"
unset RPC_SPIN_BEFORE_PARK_US
hogs=()
cleanup() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if $contend; then
  for _ in $(seq "$(nproc)"); do yes >/dev/null & hogs+=($!); done
fi

median() { sort -n | awk '{a[NR]=$1} END {m=(NR+1)/2; print (NR%2) ? a[m] : (a[m-0.5]+a[m+0.5])/2}'; }

echo "spin A/B: RPC_SPIN_BEFORE_PARK_US=0 (A) vs the default (B); $pairs pairs; contended: $contend; git $(git rev-parse --short HEAD)"
printf '%-9s %-9s %-30s %12s %12s %7s %8s %8s\n' mode level workload "A req/s" "B req/s" "B/A" "A p50" "B p50"
for mode in epoll io_uring; do
  for level in transport rpc; do
    for workload in "--inflight 1" "--inflight 64" "--payload 4KiB --inflight 16" "--payload 1MiB --inflight 4" "--conns 256 --inflight 1"; do
      a_rps=(); b_rps=(); a_p50=(); b_p50=()
      for _ in $(seq "$pairs"); do
        for side in a b; do
          if [ "$side" = a ]; then spin=0; else spin=""; fi
          # shellcheck disable=SC2086
          if ! out=$(env ${spin:+RPC_SPIN_BEFORE_PARK_US=$spin} "$bench" run --io-mode "$mode" --level "$level" \
            $workload --duration "$duration" --warmup 0.3 --json); then
            echo "error: $bench run --io-mode $mode --level $level $workload failed (its message is above)" >&2
            exit 1
          fi
          rps=$(jq -r .rps <<<"$out"); p50=$(jq -r .p50_us <<<"$out")
          if [ "$side" = a ]; then a_rps+=("$rps"); a_p50+=("$p50"); else b_rps+=("$rps"); b_p50+=("$p50"); fi
        done
      done
      ma=$(printf '%s\n' "${a_rps[@]}" | median); mb=$(printf '%s\n' "${b_rps[@]}" | median)
      pa=$(printf '%s\n' "${a_p50[@]}" | median); pb=$(printf '%s\n' "${b_p50[@]}" | median)
      printf '%-9s %-9s %-30s %12.0f %12.0f %6.2fx %8s %8s\n' "$mode" "$level" "${workload//--/}" \
        "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN{print b/a}')" "$pa" "$pb"
    done
  done
done
