#!/usr/bin/env bash
# Runs a Parley cluster on this machine: N nodes (release build) sharing one
# Postgres (database 'parley') and one Redis, behind one front door on
# 127.0.0.1:8080 that a browser can use (nginx: WebSocket upgrades,
# unbuffered SSE, long-poll timeouts, clients spread over the nodes).
#
#   scripts/cluster.sh [N]     start N nodes (default 3) on ports 8081.. and
#                              the front door; Ctrl-C stops everything
#   scripts/cluster.sh add     (from another terminal) start one more node and
#                              put it behind the front door without a restart
#
# Settings for the nodes: PARLEY_* variables as for scripts/serve.sh (each
# node gets PARLEY_LISTEN, PARLEY_NODE_ID and PARLEY_REDIS_URL from here).
# CLUSTER_FRONT (default 127.0.0.1:8080), CLUSTER_FIRST_PORT (default 8081),
# REDIS_PORT (default 6379). State and logs: target/cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "cluster: $*" >&2; }

front="${CLUSTER_FRONT:-127.0.0.1:8080}"
first_port="${CLUSTER_FIRST_PORT:-8081}"
state="$PWD/target/cluster"
export PARLEY_REDIS_URL="${PARLEY_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}}"

# The front door's configuration for the nodes listed in $state/ports.
write_nginx_conf() {
  local upstreams=""
  local node_port
  while read -r node_port; do
    upstreams+="    server 127.0.0.1:${node_port} max_fails=1 fail_timeout=2s;"$'\n'
  done <"$state/ports"
  cat >"$state/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $state/nginx.pid;
error_log $state/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $state/nginx-body;
  proxy_temp_path $state/nginx-proxy;
  fastcgi_temp_path $state/nginx-fastcgi;
  uwsgi_temp_path $state/nginx-uwsgi;
  scgi_temp_path $state/nginx-scgi;
  upstream parley {
    # Long-lived sockets: send each new client to the node with the fewest.
    least_conn;
${upstreams}  }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen ${front} backlog=4096;
    client_max_body_size 1m;
    # A node that fails (killed, restarting) is skipped; the client retries.
    proxy_next_upstream error timeout http_502 http_503;
    location = /ws {
      proxy_pass http://parley;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
    location = /events {
      proxy_pass http://parley;
      proxy_http_version 1.1;
      proxy_set_header Connection '';
      proxy_set_header Host \$host;
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
    }
    location = /events/poll {
      proxy_pass http://parley;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_read_timeout 90s;
    }
    location / {
      proxy_pass http://parley;
      proxy_http_version 1.1;
      proxy_set_header Connection '';
      proxy_set_header Host \$host;
    }
  }
}
EOF
}

# Starts node number $1 on port $2 in the background; logs to $state.
start_node() {
  local n="$1" port="$2"
  PARLEY_LISTEN="127.0.0.1:${port}" PARLEY_NODE_ID="node${n}" \
    nohup target/release/parley serve >"$state/node${n}.log" 2>&1 &
  echo $! >>"$state/pids"
  echo "$port" >>"$state/ports"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:${port}/readyz" >/dev/null && return
    sleep 0.1
  done
  log "node${n} did not become ready (see $state/node${n}.log)"
  exit 1
}

if [ "${1:-}" = "add" ]; then
  [ -f "$state/nginx.pid" ] || { log "no cluster is running (start one with scripts/cluster.sh N)"; exit 1; }
  n=$(wc -l <"$state/ports")
  port=$((first_port + n))
  start_node "$n" "$port"
  write_nginx_conf
  nginx -p "$state" -c "$state/nginx.conf" -s reload
  log "node${n} on 127.0.0.1:${port} is behind ${front}"
  exit 0
fi

nodes="${1:-3}"
command -v nginx >/dev/null 2>&1 || {
  log "installing nginx (the front door)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
}
scripts/ensure-services.sh parley
cargo build --release --bin parley
rm -rf "$state" && mkdir -p "$state"
: >"$state/ports"
: >"$state/pids"
stop_all() {
  [ -f "$state/nginx.pid" ] && kill "$(cat "$state/nginx.pid")" 2>/dev/null || true
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$state/pids"
  wait 2>/dev/null || true
  rm -f "$state/nginx.pid"
}
trap stop_all EXIT INT TERM
for n in $(seq 0 $((nodes - 1))); do
  start_node "$n" $((first_port + n))
done
write_nginx_conf
log "${nodes} nodes on ports ${first_port}..$((first_port + nodes - 1)); front door on http://${front} (Ctrl-C stops all)"
nginx -p "$state" -c "$state/nginx.conf" &
wait $!
