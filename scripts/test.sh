#!/usr/bin/env bash
# Runs the whole test suite (the browser SDK's unit tests, then the Rust
# unit tests, integration tests against the real Postgres, and the loadtest
# crate's own tests), after making sure the services run and the test
# database exists, freshly created.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh --push-stand-in --clamd --s3s-fs --proxies --browser --schemathesis --recreate parley_test
export PARLEY_TEST_DATABASE_URL="${PARLEY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_test}"
export PARLEY_TEST_PUSH_STAND_IN="${PARLEY_TEST_PUSH_STAND_IN:-$PWD/target/tools/web-push-testing/node_modules/web-push-testing/src/bin/server.js}"
export PARLEY_TEST_CLAMD_ADDR="${PARLEY_TEST_CLAMD_ADDR:-127.0.0.1:3310}"
export PARLEY_TEST_CHROMIUM="${PARLEY_TEST_CHROMIUM:-/usr/bin/chromium}"
export PARLEY_TEST_PLAYWRIGHT_CORE="${PARLEY_TEST_PLAYWRIGHT_CORE:-$PWD/target/tools/playwright/node_modules/playwright-core/index.mjs}"
export PARLEY_TEST_NGINX="${PARLEY_TEST_NGINX:-/usr/sbin/nginx}"
export PARLEY_TEST_CADDY="${PARLEY_TEST_CADDY:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/caddy/bin/caddy}"
export PARLEY_TEST_SCHEMATHESIS="${PARLEY_TEST_SCHEMATHESIS:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/schemathesis/bin/schemathesis}"
export PARLEY_TEST_S3S_FS="${PARLEY_TEST_S3S_FS:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/s3s-fs/bin/s3s-fs}"
# The s3:// blob store takes its credentials from the usual AWS variables;
# the tests' S3 server (s3s-fs) is started with the same.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-parley-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-parley-test-secret}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
node --test web/sdk/
exec cargo test --workspace --all-targets "$@"
