# shellcheck shell=bash
# Shared pieces of the loopback benchmarks (benches/load.sh, benches/callgrind.sh): sourced, not
# run. Everything binds 127.0.0.1 only, lives in one temp dir ($BENCH_WORK) and is stopped by
# bench_cleanup, which the caller's trap runs on exit, Ctrl-C or failure.
#
# The caller sets `set -euo pipefail` and calls bench_init first.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_PIDS=()
# PostgreSQL databases bench_store_url created, dropped by bench_cleanup.
BENCH_PG_DATABASES=()
# The server PostgreSQL benchmarks make their databases on (a role that may CREATE DATABASE).
BENCH_PG_URL=${BENCH_PG_URL:-${AUTHGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}}

# Creates the temp dir and the trap that stops every process started through bench_spawn.
bench_init() {
  BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-bench.XXXXXX")
  # nginx workers drop to `nobody` when started as root: they must be able to reach their files.
  chmod 755 "$BENCH_WORK"
  trap bench_cleanup EXIT
  # A signal ends the script; the EXIT trap then cleans up.
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Stops what bench_spawn started (by pid, newest first) and removes the temp dir. Keeps the
# logs next to the results when the run failed, so the reason can be read.
bench_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${BENCH_PIDS[i]}" 2>/dev/null || true
  done
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    wait "${BENCH_PIDS[i]}" 2>/dev/null || true
  done
  local db
  for db in "${BENCH_PG_DATABASES[@]}"; do
    psql -w -X -q "$BENCH_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  if [[ $status -ne 0 && -n ${BENCH_RESULTS:-} && -d ${BENCH_WORK:-} ]]; then
    mkdir -p "$BENCH_RESULTS/logs"
    cp "$BENCH_WORK"/*.log "$BENCH_RESULTS/logs/" 2>/dev/null || true
    local log
    for log in "$BENCH_WORK"/*/error.log; do
      [[ -e $log ]] && cp "$log" "$BENCH_RESULTS/logs/$(basename "$(dirname "$log")")-error.log"
    done
    echo "failed (status $status); logs kept in $BENCH_RESULTS/logs" >&2
  fi
  [[ -n ${BENCH_WORK:-} ]] && rm -rf "$BENCH_WORK"
  exit "$status"
}

# bench_spawn VAR LOG CMD...: starts CMD in the background with its output in LOG and stores its
# pid in VAR; bench_cleanup stops it.
bench_spawn() {
  local var=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  BENCH_PIDS+=("$!")
  printf -v "$var" '%s' "$!"
}

# Fails when a process bench_spawn started has stopped: a Ctrl-C reaches the servers too (they
# share the terminal's process group) while wrk, which catches it, ends its run normally.
bench_check_alive() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "process $pid has stopped (interrupted?)"
  done
}

# Prints the comment block that opens the calling script, as its usage text.
bench_usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
  echo "$*" >&2
  exit 1
}

# Installs Debian packages whose command is missing: `bench_need_debs cmd:package ...`.
# apt runs only when something is missing; services the packages ship are not started.
bench_need_debs() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run as root, or apt-get install ${missing[*]}"
  echo "installing ${missing[*]} from Debian" >&2
  # Debian's nginx and haproxy start a system-wide service on install (port 80 on every
  # address); a policy-rc.d that answers 101 forbids that. Leave an existing one alone.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local ok=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"; } >/dev/null || ok=$?
  [[ -n $made_policy ]] && rm -f "$policy"
  [[ $ok -eq 0 ]] || die "apt-get install ${missing[*]} failed"
}

# The gateway binary: $AUTHGATE_BIN when set (to measure another build), else a release build
# of this checkout.
bench_gateway_bin() {
  if [[ -n ${AUTHGATE_BIN:-} ]]; then
    [[ -x $AUTHGATE_BIN ]] || die "AUTHGATE_BIN=$AUTHGATE_BIN is not an executable"
    GATEWAY_BIN=$AUTHGATE_BIN
  else
    echo "building authgate (release)" >&2
    (cd "$BENCH_ROOT" && cargo build --release --quiet --bin authgate)
    GATEWAY_BIN=$BENCH_ROOT/target/release/authgate
  fi
}

# A loopback port nobody listens on now (the kernel picks it).
bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_wait_http PORT PID SECONDS [SCHEME]: waits until PORT answers HTTP (or SCHEME, e.g. https
# with any certificate), failing early if PID died.
bench_wait_http() {
  local port=$1 pid=$2 deadline=$((SECONDS + $3)) scheme=${4:-http}
  until curl -sk -o /dev/null "$scheme://127.0.0.1:$port/"; do
    kill -0 "$pid" 2>/dev/null || die "process $pid died before answering on port $port"
    ((SECONDS < deadline)) || die "nothing answered on port $port within $3 s"
    sleep 0.1
  done
}

# bench_nginx PIDVAR NAME PORT WORKERS [COMMAND...] < HTTP_BODY: starts an nginx instance (its
# files in $BENCH_WORK/NAME) and waits until PORT answers; stores the master's pid in PIDVAR
# (its workers are its children). Every instance has a foreground master, no access log and
# keep-alive connections that are never closed for their request count; stdin adds to its http
# block. WORKERS `single` is one worker in the one process (no master: what a tool wrapping
# the process, such as valgrind, sees is all of nginx). COMMAND runs nginx under a wrapper
# (valgrind ...), which is given longer to start.
bench_nginx() {
  local var=$1 name=$2 port=$3 workers=$4 dir=$BENCH_WORK/$2 process=''
  shift 4
  if [[ $workers == single ]]; then
    workers=1 process='master_process off;'
  fi
  mkdir -p "$dir"
  {
    cat <<NGINX
daemon off;
$process
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
NGINX
    cat
    echo "}"
  } >"$dir/nginx.conf"
  bench_spawn "$var" "$BENCH_WORK/$name.log" "$@" nginx -p "$dir/" -e "$dir/error.log" \
    -c "$dir/nginx.conf"
  bench_wait_http "$port" "${!var}" $(($# ? 120 : 20))
}

# bench_nginx_upstream NAME PORT: an nginx upstream block NAME for 127.0.0.1:PORT, its
# connections kept alive and never closed for their request count.
bench_nginx_upstream() {
  cat <<NGINX
  upstream $1 {
    server 127.0.0.1:$2;
    keepalive 64;
    keepalive_requests 1000000;
  }
NGINX
}

# bench_start_nginx_proxy WORKERS [COMMAND...]: nginx as the plain reverse proxy the benchmarks
# compare against, upstream connections kept alive (WORKERS and COMMAND as for bench_nginx).
# Sets NGINX_PORT and NGINX_PID.
bench_start_nginx_proxy() {
  NGINX_PORT=$(bench_free_port)
  bench_nginx NGINX_PID nginx "$NGINX_PORT" "$@" <<NGINX
$(bench_nginx_upstream backend "$UPSTREAM_PORT")
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
NGINX
}

# bench_start_upstream: nginx answering every path with a small static JSON body. Sets
# UPSTREAM_PORT and UPSTREAM_PID.
bench_start_upstream() {
  UPSTREAM_PORT=$(bench_free_port)
  bench_nginx UPSTREAM_PID upstream "$UPSTREAM_PORT" "${UPSTREAM_WORKERS:-1}" <<NGINX
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    default_type application/json;
    location / { return 200 '{"ok":true,"from":"upstream"}\n'; }
  }
NGINX
}

# bench_prepare_store STORE: for postgres, creates (once per run, in the calling shell, not a
# subshell) an empty database on $BENCH_PG_URL's server that every postgres gateway of the run
# shares, like replicas, and sets BENCH_PG_STORE_URL; bench_cleanup drops it.
bench_prepare_store() {
  case $1 in
    sqlite) ;;
    postgres)
      [[ -z ${BENCH_PG_STORE_URL:-} ]] || return 0
      command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"
      local db=authgate_bench_$$_${#BENCH_PG_DATABASES[@]}
      psql -w -X -q "$BENCH_PG_URL" -c "CREATE DATABASE $db" >/dev/null \
        || die "cannot create database $db on $BENCH_PG_URL (set BENCH_PG_URL to a role that may)"
      BENCH_PG_DATABASES+=("$db")
      local base=${BENCH_PG_URL%%\?*}
      BENCH_PG_STORE_URL=${base%/*}/$db
      ;;
    *) die "unknown store $1: sqlite or postgres" ;;
  esac
}

# bench_store_lines NAME STORE: the [store] lines of gateway NAME on STORE (sqlite: a file in
# $BENCH_WORK/NAME; postgres: the run's database, see bench_prepare_store).
bench_store_lines() {
  case $2 in
    sqlite) echo "url = \"sqlite://$BENCH_WORK/$1/authgate.db\"" ;;
    postgres) echo "url = \"${BENCH_PG_STORE_URL:?bench_prepare_store postgres first}\"" ;;
    *) die "unknown store $2: sqlite or postgres" ;;
  esac
}

# bench_gateway_config PORT [NAME] [STORE] [EXTRA_AUTH]: a gateway config in the temp dir with a
# public route (/public) and a token route (/api) to the upstream; prints its path. NAME
# (default "gateway") names the file and the data folder; STORE is sqlite (default) or postgres
# (see bench_store_lines). The admin listener is off, logs warn and above only (as nginx's
# access log is off), shutdown is immediate; every gateway of a run shares one signing secret.
# $BENCH_GATEWAY_TOML, when set, is added before the routes (e.g. a [forward_auth] section), and
# $BENCH_GATEWAY_SERVER_TOML to the [server] section (e.g. TLS files). Routes: /public (public),
# /api (token) and /fresh (fresh: a token from a password check, as the login's is).
bench_gateway_config() {
  local port=$1 name=${2:-gateway} store=${3:-${BENCH_STORE:-sqlite}} auth=${4:-}
  local file=$BENCH_WORK/$name.toml store_lines
  mkdir -p "$BENCH_WORK/$name"
  store_lines=$(bench_store_lines "$name" "$store")
  cat >"$file" <<TOML
[server]
listen = "127.0.0.1:$port"
shutdown_grace = "0s"
${BENCH_GATEWAY_SERVER_TOML:-}
[admin]
listen = ""
[store]
$store_lines
[tokens]
secret_file = "$BENCH_WORK/jwt-secret"
access_ttl = "12h"
[auth]
$auth
[log]
level = "${AUTHGATE_BENCH_LOG:-warn}"
${BENCH_GATEWAY_TOML:-}
[[routes]]
prefix = "/public"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "public"
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "token"
[[routes]]
prefix = "/fresh"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "fresh"
TOML
  echo "$file"
}

# bench_start_gateway [WRAPPER...]: the gateway (optionally under WRAPPER, e.g. valgrind) on a
# free port with the config above, on $BENCH_STORE (default sqlite). Sets GATEWAY_PORT and
# GATEWAY_PID.
bench_start_gateway() {
  GATEWAY_PORT=$(bench_free_port)
  bench_prepare_store "${BENCH_STORE:-sqlite}"
  local config
  config=$(bench_gateway_config "$GATEWAY_PORT")
  bench_spawn GATEWAY_PID "$BENCH_WORK/gateway.log" "$@" "$GATEWAY_BIN" --config "$config"
  # shellcheck disable=SC2153 # set by bench_spawn
  bench_wait_http "$GATEWAY_PORT" "$GATEWAY_PID" "${GATEWAY_START_TIMEOUT:-30}"
}

# bench_start_named_gateway NAME STORE [EXTRA_AUTH]: another gateway (no wrapper) named NAME on
# STORE; sets NAME_PORT and NAME_PID (NAME upper-cased). $BENCH_WAIT_SCHEME=https when its
# [server] (BENCH_GATEWAY_SERVER_TOML) speaks TLS.
bench_start_named_gateway() {
  local name=$1 store=$2 auth=${3:-} port config var
  var=$(echo "$name" | tr '[:lower:]' '[:upper:]')
  port=$(bench_free_port)
  bench_prepare_store "$store"
  config=$(bench_gateway_config "$port" "$name" "$store" "$auth")
  bench_spawn "${var}_PID" "$BENCH_WORK/$name.log" "$GATEWAY_BIN" --config "$config"
  printf -v "${var}_PORT" '%s' "$port"
  local pid_var=${var}_PID
  bench_wait_http "$port" "${!pid_var}" "${GATEWAY_START_TIMEOUT:-30}" "${BENCH_WAIT_SCHEME:-http}"
}

# bench_tls_cert: a self-signed certificate for 127.0.0.1 in $BENCH_WORK (tls.pem, tls.key).
bench_tls_cert() {
  [[ -f $BENCH_WORK/tls.pem ]] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$BENCH_WORK/tls.key" -out "$BENCH_WORK/tls.pem" 2>/dev/null \
    || die "openssl could not make a test certificate"
  chmod 644 "$BENCH_WORK/tls.key"
}

# bench_login [PORT]: registers a user on the gateway at PORT (default GATEWAY_PORT) and logs
# in; sets ACCESS_TOKEN.
# shellcheck disable=SC2034 # ACCESS_TOKEN is for the caller
bench_login() {
  local base=http://127.0.0.1:${1:-$GATEWAY_PORT}/auth
  local creds='{"username":"bench","password":"benchmark password"}'
  curl -sf -X POST "$base/register" -H 'Content-Type: application/json' -d "$creds" >/dev/null \
    || die "register failed"
  ACCESS_TOKEN=$(curl -sf -X POST "$base/login" -H 'Content-Type: application/json' -d "$creds" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') \
    || die "login failed"
}

# bench_wrk_done_lua: the `done` function of a wrk script, printing one machine-readable line
# at the end besides wrk's report: "RESULT requests duration_us p50_us p99_us non_2xx_3xx
# socket_errors".
bench_wrk_done_lua() {
  cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
}

# The results folder of this run: $BENCH_RESULTS_DIR/NAME-DATE (default target/bench/).
bench_results_dir() {
  BENCH_RESULTS=${BENCH_RESULTS_DIR:-$BENCH_ROOT/target/bench}/$1-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$BENCH_RESULTS"
}
