#!/usr/bin/env bash
# Loopback load benchmark: authgate beside nginx and haproxy as plain reverse proxies, and as
# the forward-auth decision service of an nginx in front, over HTTP/1.1 and HTTP/2 (TLS), in
# one run; then the token route under a login storm; then a chart.
#
#   benches/load.sh [-t THREADS] [-c CONNECTIONS] [-d DURATION] [-r ROUNDS] [-w WARMUP]
#                   [-s sqlite|postgres|both]
#
# Starts, on 127.0.0.1 only: an upstream (nginx answering a small static JSON body), nginx and
# haproxy as reverse proxies with keep-alive to that upstream (their own instances, so their CPU
# is read apart from the upstream's), the gateway (release build of this checkout, or
# $AUTHGATE_BIN) with a public route and a token route to the same upstream and forward-auth
# enabled, and a second nginx that asks the gateway's /auth/verify (`auth_request`, keep-alive)
# before proxying to the upstream; for HTTP/2, nginx and a second gateway with TLS listeners
# (a self-signed certificate; ALPN h2) in front of the same upstream. Then wrk (h2load for the
# *_h2 targets) runs ROUNDS alternating rounds over the targets
# (A B C D E, A B C D E, ...) and the script reports, per target, the median req/s, p50 and p99
# latency, and the CPU time per request of the proxy's processes (utime+stime from
# /proc/PID/stat of the master and its workers, before and after each run, ÷ requests), and of
# the decision service where there is one (the gateway behind nginx_verify); and each figure's
# ratio to nginx's in the same round, as the median ratio and its min–max over the rounds. It
# ends with the gateway's CPU per verify decision against its CPU per request on the public
# proxied route, which must not be larger, and with each target's floor (token route CPU per
# request ≤ 1.3× nginx's, req/s ≥ 0.85×, p99 ≤ 1.5×; public route CPU ≤ 1.1×). HTTP/2 targets
# take their ratios to nginx_h2 (same client, same TLS), the others to nginx.
#
# Login storm (BENCH_STORM_ROUNDS, 0 skips it): the token route alone, then the token route
# while a second wrk logs in flat out (BENCH_STORM_CONNECTIONS parallel logins), alternating;
# reports the token route's p99 with the storm over its p99 without (target: ≤ 2).
#
# Stolen rounds: on a virtual machine the hypervisor may run other guests on our cores (steal
# time in /proc/stat). A round in which any run saw more than BENCH_STEAL_LIMIT % of a core
# stolen is measured again, at most BENCH_STEAL_RETRIES times in the whole run; the stolen
# rounds' rows go to stolen.csv instead of runs.csv, and the report says how many there were.
# After the last retry a stolen round is kept (and counted) rather than the run going on for ever.
#
# Chart: chart.png (gnuplot) of each target's median req/s and CPU per request.
#
# Results: a table on stdout, and runs.csv (one row per wrk run), summary.csv, summary.json,
# storm.csv, chart.png and the raw wrk/h2load output in target/bench/load-DATE/
# ($BENCH_RESULTS_DIR instead of target/bench).
#
# The store (-s, BENCH_STORE): the gateway keeps its users and revocations in SQLite (default) or
# in a PostgreSQL database made for the run on $BENCH_PG_URL's server (default
# $AUTHGATE_TEST_PG_URL, else postgres://postgres@127.0.0.1:5432/test; dropped at the end).
# `both` starts a second gateway on PostgreSQL beside the SQLite one and adds its targets
# public_pg and token_pg, measured in the same alternating rounds: the request path reads
# tokens and revocations from memory, so token and token_pg should match within noise.
#
# Settings (flags win over the environment):
#   BENCH_THREADS=1 BENCH_CONNECTIONS=32 BENCH_DURATION=5s BENCH_ROUNDS=5 BENCH_WARMUP=1s
#   BENCH_STORE=sqlite
#   BENCH_TARGETS="upstream nginx haproxy nginx_verify public token fresh nginx_h2 token_h2"
#                         subset or order; must include nginx (with -s both, also public_pg
#                         token_pg). nginx_verify: nginx → authgate /auth/verify (token route,
#                         bearer token) → upstream; fresh: the gateway's `auth = "fresh"` route;
#                         *_h2: HTTP/2 over TLS with h2load
#   BENCH_H2_CONNECTIONS=8 BENCH_H2_STREAMS=4   h2load -c and -m (streams per connection)
#   BENCH_STORM_ROUNDS=3 BENCH_STORM_CONNECTIONS=4
#   BENCH_STEAL_LIMIT=5 BENCH_STEAL_RETRIES=3   see "Stolen rounds" above
#   PROXY_WORKERS=auto    nginx worker_processes and haproxy nbthread (auto: one per core)
#   UPSTREAM_WORKERS=1    worker_processes of the upstream nginx
#   AUTHGATE_BIN=PATH     measure that binary instead of building this checkout
#   AUTHGATE_BENCH_LOG=warn   the gateway's [log] level
#
# Installs wrk, nginx, haproxy, h2load (nghttp2-client) and gnuplot (gnuplot-nox) from Debian
# when a command is missing (needs root then).
# Every process it starts is stopped on exit, Ctrl-C or failure.
#
# A new target: a start_NAME function (if it needs its own server) called from start_all, and a
# target_NAME function that sets TARGET_URL, TARGET_HEADER and TARGET_PID (and DECIDER_PID when
# another process decides for it); then add NAME to BENCH_TARGETS' default.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

THREADS=${BENCH_THREADS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-5}
WARMUP=${BENCH_WARMUP:-1s}
STORE=${BENCH_STORE:-sqlite}
PROXY_WORKERS=${PROXY_WORKERS:-auto}
H2_CONNECTIONS=${BENCH_H2_CONNECTIONS:-8}
H2_STREAMS=${BENCH_H2_STREAMS:-4}
STORM_ROUNDS=${BENCH_STORM_ROUNDS:-3}
STORM_CONNECTIONS=${BENCH_STORM_CONNECTIONS:-4}
STEAL_LIMIT=${BENCH_STEAL_LIMIT:-5}
STEAL_RETRIES=${BENCH_STEAL_RETRIES:-3}

while getopts "t:c:d:r:w:s:h" opt; do
  case $opt in
    t) THREADS=$OPTARG ;;
    c) CONNECTIONS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    w) WARMUP=$OPTARG ;;
    s) STORE=$OPTARG ;;
    h) bench_usage; exit 0 ;;
    *) bench_usage >&2; exit 64 ;;
  esac
done
case $STORE in
  sqlite | postgres) DEFAULT_TARGETS="upstream nginx haproxy nginx_verify public token fresh nginx_h2 token_h2" ;;
  both) DEFAULT_TARGETS="upstream nginx haproxy nginx_verify public token fresh nginx_h2 token_h2 public_pg token_pg" ;;
  *) die "-s must be sqlite, postgres or both" ;;
esac
TARGETS=${BENCH_TARGETS:-$DEFAULT_TARGETS}
[[ " $TARGETS " == *" nginx "* ]] || die "BENCH_TARGETS must include nginx: ratios are to nginx"
[[ " $TARGETS " != *"_h2 "* || " $TARGETS " == *" nginx_h2 "* ]] \
  || die "BENCH_TARGETS with an *_h2 target must include nginx_h2: HTTP/2 ratios are to it"
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"

# --- the servers -------------------------------------------------------------------------------

# nginx as a plain reverse proxy to the upstream, upstream connections kept alive.
start_nginx() {
  bench_start_nginx_proxy "$PROXY_WORKERS"
}

# haproxy as a plain reverse proxy; `http-reuse always` shares idle upstream connections between
# clients as nginx's keepalive pool and the gateway's client pool do.
start_haproxy() {
  local cfg=$BENCH_WORK/haproxy.cfg nbthread=''
  HAPROXY_PORT=$(bench_free_port)
  [[ $PROXY_WORKERS == auto ]] || nbthread="nbthread $PROXY_WORKERS"
  cat >"$cfg" <<HAPROXY
global
  maxconn 4096
  $nbthread
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend bench
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend upstream
backend upstream
  server upstream 127.0.0.1:$UPSTREAM_PORT
HAPROXY
  bench_spawn HAPROXY_PID "$BENCH_WORK/haproxy.log" haproxy -db -f "$cfg"
  bench_wait_http "$HAPROXY_PORT" "$HAPROXY_PID" 20
}

# nginx in front of the upstream, asking the gateway's /auth/verify before each request
# (`auth_request`, as examples/forward-auth/nginx.conf does), both upstreams kept alive.
start_nginx_verify() {
  NGINX_VERIFY_PORT=$(bench_free_port)
  bench_nginx NGINX_VERIFY_PID nginx_verify "$NGINX_VERIFY_PORT" "$PROXY_WORKERS" <<NGINX
$(bench_nginx_upstream backend "$UPSTREAM_PORT")
$(bench_nginx_upstream authgate "$GATEWAY_PORT")
  server {
    listen 127.0.0.1:$NGINX_VERIFY_PORT;
    location / {
      auth_request /_authgate_verify;
      auth_request_set \$auth_user_id \$upstream_http_x_auth_user_id;
      auth_request_set \$auth_username \$upstream_http_x_auth_username;
      auth_request_set \$auth_roles \$upstream_http_x_auth_roles;
      auth_request_set \$auth_session_id \$upstream_http_x_auth_session_id;
      auth_request_set \$auth_fresh \$upstream_http_x_auth_fresh;
      proxy_set_header X-Auth-User-Id \$auth_user_id;
      proxy_set_header X-Auth-Username \$auth_username;
      proxy_set_header X-Auth-Roles \$auth_roles;
      proxy_set_header X-Auth-Session-Id \$auth_session_id;
      proxy_set_header X-Auth-Fresh \$auth_fresh;
      proxy_set_header Authorization "";
      proxy_set_header Connection "";
      proxy_http_version 1.1;
      proxy_pass http://backend;
    }
    location = /_authgate_verify {
      internal;
      proxy_pass http://authgate/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header Connection "";
      proxy_http_version 1.1;
    }
  }
NGINX
}

# nginx as a plain reverse proxy with a TLS listener speaking HTTP/2 (ALPN), upstream kept alive.
start_nginx_h2() {
  bench_tls_cert
  NGINX_H2_PORT=$(bench_free_port)
  # bench_nginx waits for a plain-HTTP answer: nginx answers 400 to plain HTTP on a TLS port.
  bench_nginx NGINX_H2_PID nginx_h2 "$NGINX_H2_PORT" "$PROXY_WORKERS" <<NGINX
$(bench_nginx_upstream backend "$UPSTREAM_PORT")
  server {
    listen 127.0.0.1:$NGINX_H2_PORT ssl http2;
    ssl_certificate $BENCH_WORK/tls.pem;
    ssl_certificate_key $BENCH_WORK/tls.key;
    http2_max_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
NGINX
}

# A second gateway with the same routes and signing secret, its listener on TLS (HTTP/1.1 and
# HTTP/2 by ALPN); the first gateway's token is valid on it.
start_gateway_tls() {
  bench_tls_cert
  BENCH_GATEWAY_SERVER_TOML="tls_cert_file = \"$BENCH_WORK/tls.pem\"
tls_key_file = \"$BENCH_WORK/tls.key\"" BENCH_WAIT_SCHEME=https \
    bench_start_named_gateway gateway_tls sqlite
}

start_all() {
  bench_start_upstream
  [[ " $TARGETS " == *" nginx "* ]] && start_nginx
  [[ " $TARGETS " == *" haproxy "* ]] && start_haproxy
  if [[ " $TARGETS " == *" public "* || " $TARGETS " == *" token "* ||
    " $TARGETS " == *" fresh "* || " $TARGETS " == *" nginx_verify "* ||
    " $TARGETS " == *" token_h2 "* || $STORM_ROUNDS -gt 0 ]]; then
    # The decision endpoint is on for every target: it costs a proxied request one prefix test.
    BENCH_GATEWAY_TOML=$'[forward_auth]\nenabled = true\nsource = "x-original"'
    # shellcheck disable=SC2119 # no wrapper: the gateway runs as it is
    BENCH_STORE=${STORE/both/sqlite} bench_start_gateway
    bench_login
  fi
  if [[ " $TARGETS " == *" public_pg "* || " $TARGETS " == *" token_pg "* ]]; then
    bench_start_named_gateway gateway_pg postgres
    local token=${ACCESS_TOKEN:-}
    bench_login "$GATEWAY_PG_PORT"
    ACCESS_TOKEN_PG=$ACCESS_TOKEN
    ACCESS_TOKEN=$token
  fi
  [[ " $TARGETS " == *" nginx_verify "* ]] && start_nginx_verify
  [[ " $TARGETS " == *" nginx_h2 "* ]] && start_nginx_h2
  [[ " $TARGETS " == *" token_h2 "* ]] && start_gateway_tls
  return 0
}

# --- the targets: each sets TARGET_URL, TARGET_HEADER (may be empty) and TARGET_PID -----------

target_upstream() { TARGET_URL=http://127.0.0.1:$UPSTREAM_PORT/api/orders/1; TARGET_HEADER=; TARGET_PID=$UPSTREAM_PID; }
target_nginx() { TARGET_URL=http://127.0.0.1:$NGINX_PORT/api/orders/1; TARGET_HEADER=; TARGET_PID=$NGINX_PID; }
target_haproxy() { TARGET_URL=http://127.0.0.1:$HAPROXY_PORT/api/orders/1; TARGET_HEADER=; TARGET_PID=$HAPROXY_PID; }
target_nginx_verify() {
  TARGET_URL=http://127.0.0.1:$NGINX_VERIFY_PORT/api/orders/1
  TARGET_HEADER="Authorization: Bearer $ACCESS_TOKEN"
  TARGET_PID=$NGINX_VERIFY_PID
  DECIDER_PID=$GATEWAY_PID
}
target_public() { TARGET_URL=http://127.0.0.1:$GATEWAY_PORT/public/orders/1; TARGET_HEADER=; TARGET_PID=$GATEWAY_PID; }
target_token() {
  TARGET_URL=http://127.0.0.1:$GATEWAY_PORT/api/orders/1
  TARGET_HEADER="Authorization: Bearer $ACCESS_TOKEN"
  TARGET_PID=$GATEWAY_PID
}
target_fresh() {
  TARGET_URL=http://127.0.0.1:$GATEWAY_PORT/fresh/orders/1
  TARGET_HEADER="Authorization: Bearer $ACCESS_TOKEN"
  TARGET_PID=$GATEWAY_PID
}
target_nginx_h2() { TARGET_URL=https://127.0.0.1:$NGINX_H2_PORT/api/orders/1; TARGET_HEADER=; TARGET_PID=$NGINX_H2_PID; }
target_token_h2() {
  TARGET_URL=https://127.0.0.1:$GATEWAY_TLS_PORT/api/orders/1
  TARGET_HEADER="Authorization: Bearer $ACCESS_TOKEN"
  TARGET_PID=$GATEWAY_TLS_PID
}
target_public_pg() { TARGET_URL=http://127.0.0.1:$GATEWAY_PG_PORT/public/orders/1; TARGET_HEADER=; TARGET_PID=$GATEWAY_PG_PID; }
target_token_pg() {
  TARGET_URL=http://127.0.0.1:$GATEWAY_PG_PORT/api/orders/1
  TARGET_HEADER="Authorization: Bearer $ACCESS_TOKEN_PG"
  TARGET_PID=$GATEWAY_PG_PID
}

# --- CPU accounting, with shell builtins only (no fork between the readings and wrk) ----------

# Sets TICKS to utime+stime of process $1 (all its threads) and of its children (nginx workers).
tree_ticks() {
  local root=$1 kids='' pid line
  local -a f
  TICKS=0
  read -r kids <"/proc/$root/task/$root/children" || true
  for pid in $root $kids; do
    read -r line <"/proc/$pid/stat" || continue
    read -r -a f <<<"${line##*) }"
    TICKS=$((TICKS + f[11] + f[12]))
  done
}

# Sets WAITED_TICKS to the CPU time of this shell's reaped children: the wrk that just ran.
waited_ticks() {
  local line
  local -a f
  read -r line <"/proc/$$/stat"
  read -r -a f <<<"${line##*) }"
  WAITED_TICKS=$((f[13] + f[14]))
}

# Sets BUSY_TICKS to the whole machine's busy time (all cores) and STEAL_TICKS to its steal.
machine_ticks() {
  local user nice system irq softirq steal
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat
  BUSY_TICKS=$((user + nice + system + irq + softirq + steal))
  STEAL_TICKS=$steal
}

# --- one wrk run -------------------------------------------------------------------------------

# wrk prints one machine-readable line at the end besides its usual report: "RESULT requests
# duration_us p50_us p99_us non_2xx_3xx socket_errors".
write_wrk_script() {
  bench_wrk_done_lua >"$BENCH_WORK/report.lua"
}

# run_wrk TARGET DURATION OUT: one wrk run against TARGET (h2load for an *_h2 target), its
# output in OUT, ending with the RESULT line.
run_wrk() {
  if [[ $1 == *_h2 ]]; then
    run_h2load "$@"
    return
  fi
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$2" --latency -s "$BENCH_WORK/report.lua")
  [[ -n $TARGET_HEADER ]] && args+=(-H "$TARGET_HEADER")
  wrk "${args[@]}" "$TARGET_URL" >"$3"
}

# run_h2load TARGET DURATION OUT: h2load over TLS (ALPN h2) with H2_CONNECTIONS connections of
# H2_STREAMS concurrent streams each; the RESULT line is made from its summary and per-request
# log (the percentiles) after the run, so the CPU readings around it see no extra process.
run_h2load() {
  local log=$BENCH_WORK/h2load.log seconds=${2%s}
  local args=(-t"$THREADS" -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D"$seconds" --log-file="$log")
  [[ -n $TARGET_HEADER ]] && args+=(-H "$TARGET_HEADER")
  h2load "${args[@]}" "$TARGET_URL" >"$3.raw"
  H2LOAD_PENDING=$3
}

# Appends the RESULT line of the last h2load run to its output file (no-op after wrk).
finish_h2load() {
  [[ -n ${H2LOAD_PENDING:-} ]] || return 0
  {
    cat "$H2LOAD_PENDING.raw"
    python3 "$BENCH_ROOT/benches/h2load_result.py" "$H2LOAD_PENDING.raw" "$BENCH_WORK/h2load.log"
  } >"$H2LOAD_PENDING"
  rm -f "$H2LOAD_PENDING.raw" "$BENCH_WORK/h2load.log"
  H2LOAD_PENDING=
}

# measure ROUND TARGET: one recorded run; appends a row to $ROUND_ROWS (the round's rows).
measure() {
  local round=$1 target=$2 out
  DECIDER_PID=
  "target_$target"
  out=$BENCH_RESULTS/wrk/round$round-$target.txt
  local p0 u0 w0 b0 s0 d0=0 p1 u1 w1 b1 s1 d1=0
  machine_ticks; b0=$BUSY_TICKS; s0=$STEAL_TICKS
  waited_ticks; w0=$WAITED_TICKS
  tree_ticks "$TARGET_PID"; p0=$TICKS
  tree_ticks "$UPSTREAM_PID"; u0=$TICKS
  if [[ -n $DECIDER_PID ]]; then tree_ticks "$DECIDER_PID"; d0=$TICKS; fi
  run_wrk "$target" "$DURATION" "$out"
  bench_check_alive
  waited_ticks; w1=$WAITED_TICKS
  tree_ticks "$TARGET_PID"; p1=$TICKS
  tree_ticks "$UPSTREAM_PID"; u1=$TICKS
  if [[ -n $DECIDER_PID ]]; then tree_ticks "$DECIDER_PID"; d1=$TICKS; fi
  machine_ticks; b1=$BUSY_TICKS; s1=$STEAL_TICKS
  finish_h2load

  local result requests duration_us p50_us p99_us non2xx socket_errors
  result=$(grep '^RESULT ' "$out") || die "no result from wrk for $target (see $out)"
  read -r _ requests duration_us p50_us p99_us non2xx socket_errors <<<"$result"
  ((non2xx == 0)) || die "$target answered $non2xx requests with an error status (see $out)"
  ((socket_errors == 0)) || echo "warning: $target: $socket_errors socket errors" >&2
  ((requests > 0)) || die "$target served no request"

  local proxy=$((p1 - p0)) upstream=$((u1 - u0)) client=$((w1 - w0)) busy=$((b1 - b0))
  local decider=$((d1 - d0))
  # Everything the machine did besides this run's client, proxy, decider and upstream: other
  # helpers' builds, the kernel's own work not charged to a process.
  local ours=$((client + proxy + decider + upstream))
  [[ $TARGET_PID == "$UPSTREAM_PID" ]] && ours=$((client + proxy))
  awk -v r="$round" -v t="$target" -v n="$requests" -v d="$duration_us" -v p50="$p50_us" \
    -v p99="$p99_us" -v px="$proxy" -v up="$upstream" -v cl="$client" -v other=$((busy - ours)) \
    -v steal=$((s1 - s0)) -v hz="$CLK_TCK" -v se="$socket_errors" -v dc="$decider" 'BEGIN {
      us = 1e6 / hz; secs = d / 1e6
      printf "%d,%s,%d,%.3f,%.1f,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%d,%.2f\n", r, t, n, secs,
        n / secs, p50, p99, px * us / n, up * us / n, cl * us / n, 100 * other / hz / secs,
        100 * steal / hz / secs, se, dc * us / n
    }' >>"$ROUND_ROWS"
}

# round_stolen: whether a run of the round just measured ($ROUND_ROWS) saw more than
# STEAL_LIMIT % of a core stolen by the hypervisor.
round_stolen() {
  awk -F, -v limit="$STEAL_LIMIT" '$12 > limit { stolen = 1 } END { exit !stolen }' "$ROUND_ROWS"
}

# --- the login storm --------------------------------------------------------------------------

# A wrk script logging the bench user in, over and over.
write_login_script() {
  cat <<'LUA' >"$BENCH_WORK/login.lua"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"bench","password":"benchmark password"}'
LUA
  bench_wrk_done_lua >>"$BENCH_WORK/login.lua"
}

# storm_row ROUND PHASE TOKEN_OUT [LOGIN_OUT]: a row of storm.csv from the RESULT lines.
storm_row() {
  local requests duration_us p50 p99 non2xx logins=0 login_us=1 login_bad=0
  read -r _ requests duration_us p50 p99 non2xx _ < <(grep '^RESULT ' "$3") \
    || die "no result from wrk in $3"
  ((non2xx == 0)) || die "the token route answered $non2xx errors during the storm (see $3)"
  if [[ -n ${4:-} ]]; then
    read -r _ logins login_us _ _ login_bad _ < <(grep '^RESULT ' "$4") \
      || die "no result from wrk in $4"
  fi
  awk -v r="$1" -v ph="$2" -v n="$requests" -v d="$duration_us" -v p50="$p50" -v p99="$p99" \
    -v ln="$logins" -v ld="$login_us" -v lb="$login_bad" 'BEGIN {
      printf "%d,%s,%d,%.1f,%d,%d,%d,%.1f,%d\n", r, ph, n, n / (d / 1e6), p50, p99, ln - lb,
        (ln - lb) / (ld / 1e6), lb
    }' >>"$BENCH_RESULTS/storm.csv"
}

# The token route alone, then with logins flat out beside it, STORM_ROUNDS times; storm.csv.
login_storm() {
  ((STORM_ROUNDS > 0)) || return 0
  write_login_script
  local dir=$BENCH_RESULTS/storm round login_pid
  mkdir -p "$dir"
  echo "round,phase,requests,rps,p50_us,p99_us,logins_ok,logins_per_s,login_errors" \
    >"$BENCH_RESULTS/storm.csv"
  target_token
  for ((round = 1; round <= STORM_ROUNDS; round++)); do
    echo "login storm $round/$STORM_ROUNDS: token route alone, then with $STORM_CONNECTIONS parallel logins" >&2
    run_wrk token "$DURATION" "$dir/round$round-alone.txt"
    storm_row "$round" alone "$dir/round$round-alone.txt"
    wrk -t1 -c"$STORM_CONNECTIONS" -d"$DURATION" -s "$BENCH_WORK/login.lua" \
      "http://127.0.0.1:$GATEWAY_PORT/auth/login" >"$dir/round$round-logins.txt" &
    login_pid=$!
    run_wrk token "$DURATION" "$dir/round$round-storm.txt"
    wait "$login_pid" || die "the login wrk failed (see $dir/round$round-logins.txt)"
    bench_check_alive
    storm_row "$round" storm "$dir/round$round-storm.txt" "$dir/round$round-logins.txt"
  done
}

# --- the chart ---------------------------------------------------------------------------------

# chart.png from chart.dat (load_report.py writes it): median req/s and CPU per request.
draw_chart() {
  [[ -f $BENCH_RESULTS/chart.dat ]] || return 0
  local title
  title="authgate load.sh $(date -u +%Y-%m-%d), commit $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, medians of $ROUNDS rounds"
  gnuplot <<GNUPLOT || echo "warning: gnuplot could not draw the chart" >&2
set terminal pngcairo size 1200,520 font ",10" noenhanced
set output "$BENCH_RESULTS/chart.png"
set datafile separator ","
set multiplot layout 1,2 title "$title"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.8
set grid ytics
set yrange [0:*]
set xtics rotate by -35 nomirror
set key off
set title "requests per second (higher is better)"
plot "$BENCH_RESULTS/chart.dat" using 2:xtic(1) linecolor rgb "#3b75af", '' using 0:2:(sprintf("%.0f", \$2)) with labels offset 0,0.7 font ",8"
set title "proxy CPU per request, µs (lower is better)"
plot "$BENCH_RESULTS/chart.dat" using 3:xtic(1) linecolor rgb "#c44e52", '' using 0:3:(sprintf("%.1f", \$3)) with labels offset 0,0.7 font ",8"
unset multiplot
GNUPLOT
}

# --- main --------------------------------------------------------------------------------------

bench_need_debs wrk:wrk nginx:nginx haproxy:haproxy curl:curl h2load:nghttp2-client \
  gnuplot:gnuplot-nox openssl:openssl
bench_init
bench_results_dir load
bench_gateway_bin
CLK_TCK=$(getconf CLK_TCK)
write_wrk_script
start_all

mkdir -p "$BENCH_RESULTS/wrk"
RUNS_HEADER="round,target,requests,seconds,rps,p50_us,p99_us,proxy_cpu_us_per_req,upstream_cpu_us_per_req,client_cpu_us_per_req,other_cpu_pct,steal_pct,socket_errors,decider_cpu_us_per_req"
echo "$RUNS_HEADER" >"$BENCH_RESULTS/runs.csv"
echo "$RUNS_HEADER" >"$BENCH_RESULTS/stolen.csv"
ROUND_ROWS=$BENCH_WORK/round.csv
cat >"$BENCH_RESULTS/meta.json" <<JSON
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "gateway_bin": "$GATEWAY_BIN",
  "commit": "$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "wrk": {"threads": $THREADS, "connections": $CONNECTIONS, "duration": "$DURATION", "warmup": "$WARMUP"},
  "h2load": {"connections": $H2_CONNECTIONS, "streams": $H2_STREAMS, "version": "$(h2load --version | sed -n 's/.*nghttp2\/\([^ ]*\).*/\1/p')"},
  "storm": {"rounds": $STORM_ROUNDS, "connections": $STORM_CONNECTIONS},
  "steal": {"limit_pct": $STEAL_LIMIT, "retries": $STEAL_RETRIES},
  "rounds": $ROUNDS,
  "targets": "$TARGETS",
  "store": "$STORE",
  "proxy_workers": "$PROXY_WORKERS",
  "upstream_workers": "${UPSTREAM_WORKERS:-1}",
  "cores": $(nproc),
  "nginx": "$(nginx -v 2>&1 | sed 's/.*\///')",
  "haproxy": "$(haproxy -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')",
  "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)"
}
JSON

echo "warm-up: $WARMUP per target" >&2
for target in $TARGETS; do
  "target_$target"
  # Each target must reach the upstream: an error or the proxy's own answer would be cheaper.
  curl -skf ${TARGET_HEADER:+-H "$TARGET_HEADER"} "$TARGET_URL" | grep -q '"from":"upstream"' \
    || die "$target ($TARGET_URL) does not answer with the upstream's body"
  run_wrk "$target" "$WARMUP" "$BENCH_WORK/warmup.txt"
  finish_h2load
  bench_check_alive
done
retries_left=$STEAL_RETRIES
for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round/$ROUNDS: $TARGETS" >&2
  : >"$ROUND_ROWS"
  for target in $TARGETS; do
    measure "$round" "$target"
  done
  if round_stolen; then
    if ((retries_left > 0)); then
      retries_left=$((retries_left - 1))
      echo "round $round: more than $STEAL_LIMIT % of a core stolen by the hypervisor; measuring it again" >&2
      cat "$ROUND_ROWS" >>"$BENCH_RESULTS/stolen.csv"
      # The stolen attempt's raw output stays, beside the retry's.
      for target in $TARGETS; do
        mv "$BENCH_RESULTS/wrk/round$round-$target.txt" \
          "$BENCH_RESULTS/wrk/round$round-$target.stolen$((STEAL_RETRIES - retries_left)).txt"
      done
      round=$((round - 1))
      continue
    fi
    echo "warning: round $round: more than $STEAL_LIMIT % of a core stolen, and no retry left: kept" >&2
  fi
  cat "$ROUND_ROWS" >>"$BENCH_RESULTS/runs.csv"
done

login_storm
python3 "$BENCH_ROOT/benches/load_report.py" "$BENCH_RESULTS"
draw_chart
echo "results: $BENCH_RESULTS"
