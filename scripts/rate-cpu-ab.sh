#!/usr/bin/env bash
# A/B of two rpc-bench builds under open-loop load: the CPU time a whole run
# takes (user + system, load plus start-up), and its p50 and p99, at fixed
# request rates, for each IO mode and level below. Runs A and B alternately
# (A B A B ...) and prints the medians as a Markdown table.
#
#   scripts/rate-cpu-ab.sh BUILD_A BUILD_B [--pairs N] [--duration S]
#
# BUILD_A and BUILD_B are rpc-bench binaries (copy target/release/rpc-bench
# aside after building each commit). Use it for changes to how idle event
# loops behave (spinning, parking), which closed-loop throughput does not
# show: at a moderate rate the load is the same and only the CPU spent on it
# differs.
set -euo pipefail

usage() { echo "usage: $0 BUILD_A BUILD_B [--pairs N] [--duration S]" >&2; exit 2; }
[ $# -ge 2 ] || usage
a_bin=$1; b_bin=$2; shift 2
pairs=3
duration=3
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    *) usage ;;
  esac
done
for b in "$a_bin" "$b_bin"; do
  [ -x "$b" ] || { echo "error: $b is not an executable rpc-bench build" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "error: needs jq (apt-get install jq)" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {m=(NR+1)/2; print (NR%2) ? a[m] : (a[m-0.5]+a[m+0.5])/2}'; }

# One run; prints "cpu_seconds p50_us p99_us" (CPU from the subshell's
# `times`: its children's user and system time).
one_run() {
  local bin=$1; shift
  (
    if ! out=$("$bin" run "$@" --duration "$duration" --json); then
      echo "error: $bin run $* failed (its message is above)" >&2
      exit 1
    fi
    jq -r '"\(.p50_us) \(.p99_us)"' <<<"$out" >"$tmp/lat"
    # Not in a pipeline: that would run `times` in a subshell with no children.
    times >"$tmp/times"
  )
  # `times` prints "XmY.YYYs XmY.YYYs" (user, system).
  local cpu
  cpu=$(tail -1 "$tmp/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.2f", s }')
  echo "$cpu $(cat "$tmp/lat")"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "rate A/B: A = $a_bin, B = $b_bin; $pairs pairs; ${duration} s per run; $(nproc) CPUs"
echo
echo "| level | mode | rate/s | CPU s, A | CPU s, B | p50 µs A → B | p99 µs A → B |"
echo "| --- | --- | ---: | ---: | ---: | --- | --- |"
for level in transport rpc; do
  for mode in epoll io_uring; do
    for rate in ${RATES:-2000 5000 10000 20000}; do
      : >"$tmp/A"; : >"$tmp/B"
      for _ in $(seq "$pairs"); do
        one_run "$a_bin" --level "$level" --io-mode "$mode" --rate "$rate" >>"$tmp/A"
        one_run "$b_bin" --level "$level" --io-mode "$mode" --rate "$rate" >>"$tmp/B"
      done
      col() { cut -d' ' -f"$1" "$tmp/$2" | median; }
      printf '| %s | %s | %s | %.2f | %.2f | %s → %s | %s → %s |\n' "$level" "$mode" "$rate" \
        "$(col 1 A)" "$(col 1 B)" "$(col 2 A)" "$(col 2 B)" "$(col 3 A)" "$(col 3 B)"
    done
  done
done
