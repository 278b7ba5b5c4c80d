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

usage() {
  cat <<EOF
usage: $0 BUILD_A BUILD_B [--pairs N] [--duration S]

BUILD_A, BUILD_B  rpc-bench binaries to compare (cp target/release/rpc-bench
                  aside after building each commit)
--pairs N         A B runs per row, N >= 1; the table shows medians (default 3)
--duration S      measured seconds per run, after rpc-bench's 0.5 s warm-up
                  (default 3)
RATES             environment: requests per second, one row each
                  (default "2000 5000 10000 20000")
EOF
}
bad() { echo "error: $1" >&2; usage >&2; exit 2; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || bad "needs two builds"
a_bin=$1; b_bin=$2; shift 2
pairs=3
duration=3
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs|--duration) [ $# -ge 2 ] || bad "$1 needs a value" ;;&
    --pairs) pairs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    *) bad "unknown argument: $1" ;;
  esac
done
[[ $pairs =~ ^[1-9][0-9]*$ ]] || bad "--pairs takes a whole number of 1 or more, not '$pairs'"
if ! awk -v d="$duration" 'BEGIN { exit !(d ~ /^[0-9]*\.?[0-9]+$/ && d > 0) }'; then
  bad "--duration takes seconds above 0, not '$duration'"
fi
# A bare name is a file here, not a command to look up in PATH.
case "$a_bin" in */*) ;; *) a_bin=./$a_bin ;; esac
case "$b_bin" in */*) ;; *) b_bin=./$b_bin ;; esac
for b in "$a_bin" "$b_bin"; do
  if [ ! -f "$b" ] || [ ! -x "$b" ]; then
    echo "error: $b is not an executable file (an rpc-bench build)" >&2; exit 1
  fi
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
echo "rate A/B: A = $a_bin, B = $b_bin; medians of $pairs pair(s); ${duration} s per run; $(nproc) CPUs"
echo "CPU s: user + system time of the whole rpc-bench process (server, client and"
echo "pacer threads in one process) over its start-up, 0.5 s warm-up and ${duration} s run."
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
