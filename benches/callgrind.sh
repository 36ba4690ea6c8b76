#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind: the request path's cost as a count that
# repeats on a noisy shared machine, where wall time and CPU time do not.
#
#   benches/callgrind.sh [-n REQUESTS] [-r "token public verify"] [-w WARMUP]
#
# Starts, on 127.0.0.1 only, the upstream (nginx answering a small static JSON body) and the
# gateway under `valgrind --tool=callgrind` (release build of this checkout, or $AUTHGATE_BIN:
# any build works, its code is not changed) with a temp config and SQLite file and the admin
# listener off and forward-auth on; registers and logs in a user for a token. Routes: `token`
# and `public` are proxied requests, `verify` a forward-auth decision as nginx asks for one
# (/auth/verify, X-Original-Method and X-Original-URI of the token route, the bearer token).
# Route `nginx` (not in the default list) is not the gateway's: nginx itself as the plain reverse
# proxy benches/load.sh compares against (one worker, no master process, upstream keep-alive),
# under callgrind too, on the public route's path: the instructions a C proxy spends per request,
# for scale. Then, per route, one keep-alive
# connection (a Python http.client loop, another process, so not counted) sends WARMUP requests,
# and loops of N, N again and 2N requests, each loop framed by `callgrind_control -z` (zero) and
# `-d` (dump); a last loop sends nothing for as long as the first loop took, to show what the
# gateway's background timers cost. Every answer must be 200.
#
# Reports Ir (instructions executed, all threads) per request for each loop, the spread of the
# two N loops, the marginal cost (Ir(2N) − Ir(N)) ÷ N, and the idle loop's Ir. Every answer must
# be 200: the upstream's for proxied routes, an empty allowing decision for verify. Results: a table
# on stdout, callgrind.csv and the dumps (for callgrind_annotate) in target/bench/callgrind-DATE/
# ($BENCH_RESULTS_DIR instead of target/bench).
#
# Settings (flags win over the environment):
#   CALLGRIND_REQUESTS=2000 CALLGRIND_ROUTES="token public verify" CALLGRIND_WARMUP=200
#   AUTHGATE_BIN=PATH   measure that binary instead of building this checkout
#   BENCH_STORE=sqlite  or postgres: the gateway's store (a database made for the run on
#                       $BENCH_PG_URL's server, see benches/lib.sh); the per-request count must
#                       not change with it, only the idle loop's (the revocation feed's polls)
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

REQUESTS=${CALLGRIND_REQUESTS:-2000}
ROUTES=${CALLGRIND_ROUTES:-token public verify}
WARMUP=${CALLGRIND_WARMUP:-200}

while getopts "n:r:w:h" opt; do
  case $opt in
    n) REQUESTS=$OPTARG ;;
    r) ROUTES=$OPTARG ;;
    w) WARMUP=$OPTARG ;;
    h) bench_usage; exit 0 ;;
    *) bench_usage >&2; exit 64 ;;
  esac
done

# The path each route is measured on, and whether it needs the token.
route_path() {
  case $1 in
    token) echo /api/orders/1 ;;
    public) echo /public/orders/1 ;;
    verify) echo /auth/verify ;;
    nginx) echo /public/orders/1 ;;
    *) die "unknown route $1 (token, public, verify, nginx)" ;;
  esac
}

# The total Ir of one callgrind dump file.
dump_ir() {
  awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

bench_need_debs valgrind:valgrind nginx:nginx curl:curl
bench_init
bench_results_dir callgrind
bench_gateway_bin
for route in $ROUTES; do route_path "$route" >/dev/null; done

bench_start_upstream
BENCH_GATEWAY_TOML=$'[forward_auth]\nenabled = true\nsource = "x-original"'
# Start-up under valgrind is slow (the binary's symbols are read first).
GATEWAY_START_TIMEOUT=300 bench_start_gateway \
  valgrind --tool=callgrind --callgrind-out-file="$BENCH_WORK/callgrind.out"
# shellcheck disable=SC2119 # the gateway bench_start_gateway started
bench_login

# nginx as the plain reverse proxy benches/load.sh runs, with its one worker in the one process
# (no master), under callgrind. Sets NGINX_PORT and NGINX_PID.
start_nginx_under_callgrind() {
  bench_start_nginx_proxy single valgrind --tool=callgrind \
    --callgrind-out-file="$BENCH_WORK/nginx.callgrind.out"
}
[[ " $ROUTES " != *" nginx "* ]] || start_nginx_under_callgrind

csv=$BENCH_RESULTS/callgrind.csv
echo "route,loop,requests,seconds,ir,ir_per_request" >"$csv"
gateway_dumps=0 nginx_dumps=0
for route in $ROUTES; do
  token_args=()
  port=$GATEWAY_PORT pid=$GATEWAY_PID
  case $route in
    token) token_args=(--token "$ACCESS_TOKEN") ;;
    verify)
      token_args=(--token "$ACCESS_TOKEN" --decision
        --header "X-Original-Method: GET" --header "X-Original-URI: $(route_path token)")
      ;;
    nginx) port=$NGINX_PORT pid=$NGINX_PID ;;
  esac
  echo "$route route: warm-up $WARMUP, loops of $REQUESTS, $REQUESTS, $((2 * REQUESTS)) requests and an idle one" >&2
  loop=0
  while read -r _ n seconds; do
    loop=$((loop + 1))
    # Each process numbers its own dumps.
    if [[ $route == nginx ]]; then
      nginx_dumps=$((nginx_dumps + 1))
      dump=$BENCH_WORK/nginx.callgrind.out.$nginx_dumps
    else
      gateway_dumps=$((gateway_dumps + 1))
      dump=$BENCH_WORK/callgrind.out.$gateway_dumps
    fi
    [[ -f $dump ]] || die "callgrind wrote no dump $dump"
    ir=$(dump_ir "$dump")
    cp "$dump" "$BENCH_RESULTS/callgrind.out.$route.$loop"
    awk -v r="$route" -v l="$loop" -v n="$n" -v s="$seconds" -v ir="$ir" \
      'BEGIN { printf "%s,%d,%d,%s,%d,%s\n", r, l, n, s, ir, n ? sprintf("%.0f", ir / n) : "" }' >>"$csv"
  done < <(python3 "$BENCH_ROOT/benches/callgrind_client.py" "$port" "$pid" \
    "$(route_path "$route")" "${token_args[@]}" --warmup "$WARMUP" \
    --loop "$REQUESTS" --loop "$REQUESTS" --loop $((2 * REQUESTS)) --idle)
  ((loop == 4)) || die "the $route client stopped after $loop loops"
done

python3 - "$csv" "$GATEWAY_BIN" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
nginx = " (route nginx: nginx itself, a plain proxy)" if any(r["route"] == "nginx" for r in rows) else ""
print(f"callgrind, gateway {sys.argv[2]}{nginx}: instructions (Ir, all threads) per request\n")
print(f"  {'route':<7} {'loop':>5} {'requests':>8} {'Ir':>14} {'Ir/request':>11}")
for route in dict.fromkeys(r["route"] for r in rows):
    loops = [r for r in rows if r["route"] == route]
    for r in loops:
        per = r["ir_per_request"] or "(idle)"
        print(f"  {route:<7} {r['loop']:>5} {int(r['requests']):>8} {int(r['ir']):>14,} {per:>11}")
    a, b, double, idle = loops
    pa, pb = float(a["ir_per_request"]), float(b["ir_per_request"])
    n = int(a["requests"])
    marginal = (int(double["ir"]) - (int(a["ir"]) + int(b["ir"])) / 2) / n
    print(f"  {route}: Ir/request {pa:,.0f} and {pb:,.0f} (spread {abs(pa - pb) / min(pa, pb):.2%}); "
          f"{2 * n} requests: {float(double['ir_per_request']):,.0f}; marginal (Ir(2N) - Ir(N)) / N: "
          f"{marginal:,.0f}; idle for {float(idle['seconds']):.1f} s: {int(idle['ir']):,} Ir "
          f"({int(idle['ir']) / int(a['ir']):.2%} of a loop of {n})\n")
PY
echo "results: $BENCH_RESULTS"
