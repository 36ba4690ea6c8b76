#!/usr/bin/env bash
# Revocation propagation between two replicas on one PostgreSQL database: how long after a
# logout is answered on replica A does replica B first refuse the token.
#
#   benches/propagation.sh [-n REVOCATIONS]
#
# Starts, on 127.0.0.1 only: the upstream (nginx answering a small static JSON body) and two
# gateways (release build of this checkout, or $AUTHGATE_BIN) with a token route to it, sharing
# a PostgreSQL database made for the run on $BENCH_PG_URL's server (default
# $AUTHGATE_TEST_PG_URL, else postgres://postgres@127.0.0.1:5432/test; dropped at the end) and
# one signing secret. Then benches/propagation.py logs REVOCATIONS sessions in on A and, one by
# one, logs each out on A and polls B on a kept-alive connection until B refuses it. Logins
# use cheap argon2 parameters: they are set-up here, not what is measured.
#
# Reports p50, p90, p99 and max of the delays (target: p99 under 50 ms on loopback) and one
# poll's round trip (the resolution). Results: delays.csv and summary.json in
# target/bench/propagation-DATE/ ($BENCH_RESULTS_DIR instead of target/bench).
#
# Settings (flags win over the environment):
#   PROPAGATION_REVOCATIONS=1000
#   AUTHGATE_BIN=PATH     measure that binary instead of building this checkout
#   BENCH_PG_URL=URL      the server the run's database is made on
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

REVOCATIONS=${PROPAGATION_REVOCATIONS:-1000}
while getopts "n:h" opt; do
  case $opt in
    n) REVOCATIONS=$OPTARG ;;
    h) bench_usage; exit 0 ;;
    *) bench_usage >&2; exit 64 ;;
  esac
done

bench_need_debs nginx:nginx curl:curl psql:postgresql-client
bench_init
bench_results_dir propagation
bench_gateway_bin
bench_start_upstream
CHEAP_ARGON2='argon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }'
bench_start_named_gateway replica_a postgres "$CHEAP_ARGON2"
bench_start_named_gateway replica_b postgres "$CHEAP_ARGON2"
python3 "$BENCH_ROOT/benches/propagation.py" "http://127.0.0.1:$REPLICA_A_PORT" \
  "http://127.0.0.1:$REPLICA_B_PORT" "$REVOCATIONS" "$BENCH_RESULTS"
bench_check_alive
echo "results: $BENCH_RESULTS"
