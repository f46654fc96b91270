#!/usr/bin/env bash
# Runs the Parley server (release build) with migrations applied at start.
# Settings: defaults < the TOML file named by PARLEY_CONFIG < PARLEY_* variables
# (see the README's configuration table).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "serve: $*" >&2; }
if [ "${PARLEY_ATTACHMENTS:-on}" = "off" ]; then
  log "checking PostgreSQL and the database 'parley' (installs and starts them when missing)"
  scripts/ensure-services.sh parley
else
  log "checking PostgreSQL, the database 'parley' and clamd for attachments (installs and starts them when missing)"
  scripts/ensure-services.sh --clamd parley
  export PARLEY_CLAMD_ADDR="${PARLEY_CLAMD_ADDR:-127.0.0.1:${CLAMD_PORT:-3310}}"
fi
if [ -x target/release/parley ]; then
  log "building the release binary (only what changed: seconds)"
else
  log "building the release binary: the first build compiles every dependency and takes about 5 minutes on 2 cores"
fi
cargo build --release --bin parley
log "starting target/release/parley on ${PARLEY_LISTEN:-127.0.0.1:8080} (Ctrl-C stops it)"
exec target/release/parley serve "$@"
