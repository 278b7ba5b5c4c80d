#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (frame_decoder, message_validation)
# under AddressSanitizer, each for SECONDS_PER_TARGET seconds (default 60),
# starting from a copy of the committed seed corpus fuzz/corpus/<target>/ so
# that the repository is not modified. Prints each target's exec count and
# exits non-zero on the first crash, leaving the crashing input in
# fuzz/artifacts/<target>/ and the fuzzer's log path on stderr.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Works on the stable toolchain: cargo-fuzz passes `-Zsanitizer=address`,
# which stable rustc accepts with RUSTC_BOOTSTRAP=1 (stable ships the ASan
# runtime). Installs cargo-fuzz from crates.io when missing. Builds in
# $CARGO_TARGET_DIR/fuzz when CARGO_TARGET_DIR is set, else in fuzz/target.
# See docs/HARDENING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder message_validation)
case "$seconds" in
  '' | *[!0-9]*)
    echo "error: SECONDS_PER_TARGET must be a whole number of seconds, got '$seconds'" >&2
    exit 2
    ;;
esac

now() { date +%s; }
start=$(now)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  t=$(now)
  cargo install cargo-fuzz --locked --version '^0.13'
  echo "   installed in $(($(now) - t)) s"
fi
echo "== $(cargo fuzz --version); $(rustc --version)"

if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
fi
export RUSTC_BOOTSTRAP=1

work=$(mktemp -d "${TMPDIR:-/tmp}/spark-rpc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== building the fuzz targets (release, ASan, debug assertions)"
t=$(now)
for target in "${targets[@]}"; do
  if ! cargo fuzz build --fuzz-dir fuzz "$target" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    echo "error: building fuzz target $target failed (output above)" >&2
    exit 1
  fi
done
echo "   built in $(($(now) - t)) s"

failed=0
for target in "${targets[@]}"; do
  corpus="$work/corpus-$target"
  log="$work/$target.log"
  cp -r "fuzz/corpus/$target" "$corpus"
  echo "== fuzzing $target for $seconds s (seed corpus: $(ls "$corpus" | wc -l) files)"
  t=$(now)
  if cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  # A crash during the corpus load prints no stats: these may all be empty.
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
  cov=$( (grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" || true) | tail -1)
  echo "   $target: $status, ${execs:-?} execs in $(($(now) - t)) s (${rate:-?}/s), $cov"
  if [ "$status" = CRASH ]; then
    kept="${TMPDIR:-/tmp}/fuzz-$target-$(date +%Y%m%d-%H%M%S).log"
    cp "$log" "$kept"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2 || true
    echo "error: $target crashed; the input is in fuzz/artifacts/$target/, the full log in $kept." >&2
    echo "       reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $target <that file>" >&2
  fi
done
echo "== fuzzing done in $(($(now) - start)) s"
exit "$failed"
