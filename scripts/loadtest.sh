#!/usr/bin/env bash
# Runs one load-test scenario against a fresh release server on this machine.
#
#   scripts/loadtest.sh chat --users 1000 --rate 2000 --duration 20
#   scripts/loadtest.sh connections --count 19000
#   scripts/loadtest.sh history --rate 500 --chat-rate 2000
#
# The server gets its own database (parley_load, recreated each run), rate
# limits switched off (PARLEY_RATE_LIMITS=off: the product's per-user limits
# would throttle any load test) and the platform key the generator registers
# contexts with. Extra server settings can be passed as PARLEY_* variables.
# PARLEY_BIN=path runs another server binary (an older build, for a
# before/after pair) instead of this checkout's.
# Results: a table on stdout and a JSON file under loadtest/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh --recreate parley_load
cargo build --release --quiet -p parley -p loadtest --bins

export PARLEY_DATABASE_URL="${LOADTEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_load}"
export PARLEY_LISTEN="${LOADTEST_LISTEN:-127.0.0.1:8090}"
export PARLEY_RATE_LIMITS=off
export PARLEY_INTERNAL_API_KEY="${PARLEY_INTERNAL_API_KEY:-loadtest-platform-key}"
export PARLEY_JWT_SECRET="${PARLEY_JWT_SECRET:-loadtest-secret-0123456789}"
export PARLEY_LOG="${PARLEY_LOG:-warn}"

"${PARLEY_BIN:-./target/release/parley}" serve &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://${PARLEY_LISTEN}/readyz" >/dev/null && break
  sleep 0.1
done
./target/release/loadtest --server "$PARLEY_LISTEN" --server-pid "$server" "$@"
