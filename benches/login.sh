#!/usr/bin/env bash
# Login throughput on each store: successful `POST /auth/login` per second against a gateway on
# SQLite and one on PostgreSQL, in alternating rounds.
#
#   benches/login.sh [-c CONNECTIONS] [-d DURATION] [-r ROUNDS] [-u USERS] [-a default|cheap|both]
#
# Starts, on 127.0.0.1 only, two gateways (release build of this checkout, or $AUTHGATE_BIN): one
# on SQLite, one on a PostgreSQL database made for the run on $BENCH_PG_URL's server (default
# $AUTHGATE_TEST_PG_URL, else postgres://postgres@127.0.0.1:5432/test; dropped at the end).
# Registers USERS users on each; then wrk logs in as a random one of them per request (correct
# password), ROUNDS alternating runs per gateway. A login is a store read, one argon2 verify,
# two failed-login counter transactions (reserve, release) and a session insert.
#
# Argon2 (-a): `default` is the configuration's (19 MiB, t=2: what production pays, and what
# bounds the rate: the hashing pool has max(1, cores - 1) permits); `cheap` (1 MiB, t=1) makes
# the hash small so the store's share shows. `both` runs the two one after the other.
#
# Reports per store: median logins/s over the rounds, p50 and p99 latency. Results: runs.csv and
# the raw wrk output in target/bench/login-DATE/ ($BENCH_RESULTS_DIR instead of target/bench).
#
# Settings (flags win over the environment):
#   BENCH_CONNECTIONS=4 BENCH_DURATION=5s BENCH_ROUNDS=3 BENCH_LOGIN_USERS=32 BENCH_ARGON2=both
#   AUTHGATE_BIN=PATH     measure that binary instead of building this checkout
#   BENCH_PG_URL=URL      the server the run's database is made on
#
# Connections stay at or below the login limit's checks in flight (max_failures = 5 per user
# and address, 20 per address): concurrent checks count against it, as they must.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

CONNECTIONS=${BENCH_CONNECTIONS:-4}
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
USERS=${BENCH_LOGIN_USERS:-32}
ARGON2=${BENCH_ARGON2:-both}
while getopts "c:d:r:u:a:h" opt; do
  case $opt in
    c) CONNECTIONS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    u) USERS=$OPTARG ;;
    a) ARGON2=$OPTARG ;;
    h) bench_usage; exit 0 ;;
    *) bench_usage >&2; exit 64 ;;
  esac
done
case $ARGON2 in
  default) SETTINGS="default" ;;
  cheap) SETTINGS="cheap" ;;
  both) SETTINGS="default cheap" ;;
  *) die "-a must be default, cheap or both" ;;
esac

# The [auth] lines of an argon2 setting.
auth_lines() {
  case $1 in
    default) echo "" ;;
    cheap) echo 'argon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }' ;;
  esac
}

write_wrk_script() {
  {
    cat <<LUA
local users = $USERS
request = function()
  local body = string.format('{"username":"user%d","password":"benchmark password"}', math.random(users))
  return wrk.format("POST", "/auth/login", {["Content-Type"] = "application/json"}, body)
end
LUA
    bench_wrk_done_lua
  } >"$BENCH_WORK/login.lua"
}

# register PORT: USERS users on the gateway at PORT.
register() {
  local i
  for ((i = 1; i <= USERS; i++)); do
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$1/auth/register" \
      -H 'Content-Type: application/json' \
      -d "{\"username\":\"user$i\",\"password\":\"benchmark password\"}" || die "register user$i"
  done
}

# run SETTING STORE PORT ROUND: one wrk run; appends a row to runs.csv.
run() {
  local out=$BENCH_RESULTS/wrk/$1-$2-round$4.txt result
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH_WORK/login.lua" \
    "http://127.0.0.1:$3/auth/login" >"$out"
  result=$(grep '^RESULT ' "$out") || die "no result from wrk (see $out)"
  local requests duration_us p50_us p99_us non2xx socket_errors
  read -r _ requests duration_us p50_us p99_us non2xx socket_errors <<<"$result"
  ((non2xx == 0)) || die "$2: $non2xx logins were refused (see $out)"
  echo "$1,$2,$4,$requests,$(awk -v n="$requests" -v d="$duration_us" 'BEGIN { printf "%.1f", n / (d / 1e6) }'),$p50_us,$p99_us,$socket_errors" \
    >>"$BENCH_RESULTS/runs.csv"
}

bench_need_debs wrk:wrk nginx:nginx curl:curl psql:postgresql-client
bench_init
bench_results_dir login
bench_gateway_bin
bench_start_upstream
write_wrk_script
mkdir -p "$BENCH_RESULTS/wrk"
echo "argon2,store,round,requests,logins_per_s,p50_us,p99_us,socket_errors" >"$BENCH_RESULTS/runs.csv"
for setting in $SETTINGS; do
  # A database of its own per setting: hashes carry their parameters.
  BENCH_PG_STORE_URL=
  bench_start_named_gateway "sqlite_$setting" sqlite "$(auth_lines "$setting")"
  bench_start_named_gateway "postgres_$setting" postgres "$(auth_lines "$setting")"
  sqlite_port=SQLITE_${setting^^}_PORT postgres_port=POSTGRES_${setting^^}_PORT
  register "${!sqlite_port}"
  register "${!postgres_port}"
  echo "argon2 $setting: warm-up, then $ROUNDS rounds of $DURATION per store" >&2
  for port in "${!sqlite_port}" "${!postgres_port}"; do
    wrk -t1 -c"$CONNECTIONS" -d1s -s "$BENCH_WORK/login.lua" "http://127.0.0.1:$port/auth/login" >/dev/null
  done
  for ((round = 1; round <= ROUNDS; round++)); do
    run "$setting" sqlite "${!sqlite_port}" "$round"
    run "$setting" postgres "${!postgres_port}" "$round"
    bench_check_alive
  done
done

python3 - "$BENCH_RESULTS/runs.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'argon2':8} {'store':9} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
for key in dict.fromkeys((r["argon2"], r["store"]) for r in rows):
    runs = [r for r in rows if (r["argon2"], r["store"]) == key]
    med = lambda col: statistics.median(float(r[col]) for r in runs)
    print(f"{key[0]:8} {key[1]:9} {med('logins_per_s'):9.1f} {med('p50_us') / 1000:8.1f} {med('p99_us') / 1000:8.1f}")
PY
echo "results: $BENCH_RESULTS"
