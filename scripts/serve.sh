#!/usr/bin/env bash
# Runs the Parley server (release build) with migrations applied at start.
# Any PARLEY_* variable overrides the defaults; see the README's configuration table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh parley
exec cargo run --release --quiet --bin parley -- serve "$@"
