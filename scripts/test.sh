#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints and docs (warnings
# are errors), the unit, property, conformance and integration suites of every
# crate on both IO backends (epoll and io_uring), the doc examples, the loom
# model check of the Inbox, the runnable examples, and (when CI=true or
# FUZZ_SECONDS is set) a short fuzzing run of each fuzz target
# (docs/HARDENING.md). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (warnings are errors: broken links, missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== cargo test (workspace)"
cargo test --workspace
echo "== loom model check of the Inbox state machine (docs/HARDENING.md)"
cargo clippy --quiet -p rpc --features loom --all-targets -- -D warnings
cargo test --quiet -p rpc --features loom --test loom_inbox
echo "== examples"
cargo run --quiet -p rpc --example ping_pong
cargo run --quiet -p rpc --example key_value
if [ "${CI:-}" = true ] || [ -n "${FUZZ_SECONDS:-}" ]; then
  echo "== fuzzing, ${FUZZ_SECONDS:-30} s per target (scripts/fuzz.sh)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
