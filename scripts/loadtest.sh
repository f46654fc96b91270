#!/usr/bin/env bash
# Runs one load-test scenario against a fresh release server on this machine.
#
#   scripts/loadtest.sh chat --users 1000 --rate 2000 --duration 20
#   scripts/loadtest.sh thread --threads 100 --members 6 --rate 200 --duration 20
#   scripts/loadtest.sh connections --count 19000
#   scripts/loadtest.sh history --rate 500 --chat-rate 2000
#   scripts/loadtest.sh push --recipients 1000 --rate 2000 --duration 20
#   scripts/loadtest.sh uploads --rate 5 --duration 20 --kib 1024
#   scripts/loadtest.sh search --rate 10 --duration 20 --chat-rate 1000
#
# LOADTEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/parley_search keeps
# the database between runs instead (created when missing): the search
# scenario seeds five million messages once (about a quarter of an hour) and
# later runs search them again.
#
# The server gets its own database (parley_load, recreated each run), rate
# limits switched off (PARLEY_RATE_LIMITS=off: the product's per-user limits
# would throttle any load test) and the platform key the generator registers
# contexts with. Extra server settings can be passed as PARLEY_* variables.
# PARLEY_BIN=path runs another server binary (an older build, for a
# before/after pair) instead of this checkout's.
#
# A cluster: LOADTEST_NODES=3 starts three nodes (ports 8090..8092) joined by
# the local Redis, and the generator spreads its clients over them (the two
# members of each pair on different nodes):
#   LOADTEST_NODES=3 scripts/loadtest.sh chat --users 2000 --rate 5000 --duration 20 --transport ws
#   LOADTEST_NODES=3 scripts/loadtest.sh reconnect --kill-node 1 --after 5 --users 2000 --rate 2000 --duration 20
# LOADTEST_SPLIT=1 runs one generator per node instead, each against its own
# node with the same arguments (a generator process holds at most ~19,000
# sockets): LOADTEST_NODES=3 LOADTEST_SPLIT=1 scripts/loadtest.sh connections --count 16667
# Results: a table on stdout and a JSON file under loadtest/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LOADTEST_DATABASE_URL:-}" ]; then
  # A database of its own, kept between runs (e.g. one the search scenario seeded).
  database="${LOADTEST_DATABASE_URL##*/}"
  scripts/ensure-services.sh --clamd "${database%%\?*}"
else
  scripts/ensure-services.sh --clamd --recreate parley_load
fi
cargo build --release --quiet -p parley -p loadtest --bins

export PARLEY_DATABASE_URL="${LOADTEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_load}"
export PARLEY_RATE_LIMITS=off
export PARLEY_INTERNAL_API_KEY="${PARLEY_INTERNAL_API_KEY:-loadtest-platform-key}"
export PARLEY_JWT_SECRET="${PARLEY_JWT_SECRET:-loadtest-secret-0123456789}"
export PARLEY_LOG="${PARLEY_LOG:-warn}"
export PARLEY_CLAMD_ADDR="${PARLEY_CLAMD_ADDR:-127.0.0.1:${CLAMD_PORT:-3310}}"
export PARLEY_BLOB_STORE="${PARLEY_BLOB_STORE:-file://$PWD/target/loadtest-blobs}"
nodes="${LOADTEST_NODES:-1}"
first="${LOADTEST_LISTEN:-127.0.0.1:8090}"
host="${first%:*}"
port="${first##*:}"
if [ "$nodes" -gt 1 ]; then
  export PARLEY_REDIS_URL="${PARLEY_REDIS_URL:-redis://127.0.0.1:6379}"
  export PARLEY_REDIS_PREFIX="loadtest-$(date +%s)"
fi

servers=()
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true' EXIT
for n in $(seq 0 $((nodes - 1))); do
  listen="${host}:$((port + n))"
  PARLEY_LISTEN="$listen" PARLEY_NODE_ID="load${n}" "${PARLEY_BIN:-./target/release/parley}" serve &
  pids+=($!)
  servers+=("$listen")
  for _ in $(seq 1 100); do
    curl -sf "http://${listen}/readyz" >/dev/null && break
    sleep 0.1
  done
done

if [ "$nodes" -eq 1 ]; then
  ./target/release/loadtest --server "${servers[0]}" --server-pid "${pids[0]}" "$@"
elif [ "${LOADTEST_SPLIT:-0}" = "1" ]; then
  generators=()
  for n in $(seq 0 $((nodes - 1))); do
    ./target/release/loadtest --server "${servers[$n]}" --server-pid "${pids[$n]}" \
      --out "loadtest/results/${1}-node${n}-$(date +%s).json" "$@" >"/tmp/loadtest-node${n}.out" 2>&1 &
    generators+=($!)
  done
  status=0
  for g in "${generators[@]}"; do wait "$g" || status=1; done
  for n in $(seq 0 $((nodes - 1))); do
    echo "=== node ${n} (${servers[$n]})"
    cat "/tmp/loadtest-node${n}.out"
  done
  exit "$status"
else
  ./target/release/loadtest --server "$(IFS=,; echo "${servers[*]}")" "$@"
fi
