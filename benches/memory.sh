#!/usr/bin/env bash
# Memory and start-up benchmark: what 1,000,000 revoked sessions cost the gateway at start
# (resident memory and load time), and what 10,000 idle keep-alive connections cost it.
#
#   benches/memory.sh [-n REVOKED] [-k CONNECTIONS] [-p "revoked idle"]
#
# Starts, on 127.0.0.1 only, an upstream (nginx) and the gateway (release build of this checkout,
# or $AUTHGATE_BIN) on a SQLite file in a temp dir, with the admin listener off.
#
# revoked: starts the gateway once on an empty store (which creates the schema), reads its
# resident memory (VmRSS) after one proxied request, stops it; seeds REVOKED revoked sessions
# into the SQLite file (22-character base64url ids, as the gateway makes them, covering tokens
# until a day from now, so none is pruned); starts it again and times from the start of the
# process to its first HTTP answer (the gateway loads every live revocation before it listens),
# then reads VmRSS and VmHWM (peak) after one proxied request. Targets: < 150 MB resident and
# < 3 s to load.
#
# idle: on a fresh gateway, reads VmRSS, opens CONNECTIONS keep-alive connections that each
# send one public request and then stay open and idle (a Python asyncio client, its own
# open-files limit raised to what it needs), reads VmRSS as soon as they are all open and again
# once they have been idle for BENCH_IDLE_SETTLE seconds, and the number of open descriptors of
# the gateway. Target: < 100 MB resident with 10,000 connections. The
# gateway raises its own open-files soft limit to the hard limit at start; the hard limit must
# allow CONNECTIONS + a few dozen.
#
# Results: a table on stdout and memory.csv in target/bench/memory-DATE/ ($BENCH_RESULTS_DIR
# instead of target/bench).
#
# Settings (flags win over the environment):
#   BENCH_REVOKED=1000000 BENCH_IDLE_CONNECTIONS=10000 BENCH_MEMORY_PARTS="revoked idle"
#   BENCH_IDLE_SETTLE=5   seconds the connections stay idle before the second reading
#   AUTHGATE_BIN=PATH     measure that binary instead of building this checkout
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

REVOKED=${BENCH_REVOKED:-1000000}
IDLE=${BENCH_IDLE_CONNECTIONS:-10000}
SETTLE=${BENCH_IDLE_SETTLE:-5}
PARTS=${BENCH_MEMORY_PARTS:-revoked idle}
while getopts "n:k:p:h" opt; do
  case $opt in
    n) REVOKED=$OPTARG ;;
    k) IDLE=$OPTARG ;;
    p) PARTS=$OPTARG ;;
    h) bench_usage; exit 0 ;;
    *) bench_usage >&2; exit 64 ;;
  esac
done

# kib PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() {
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# stop_gateway: stops the gateway bench_start_gateway started and waits for it.
stop_gateway() {
  kill -TERM "$GATEWAY_PID"
  wait "$GATEWAY_PID" 2>/dev/null || true
}

# One proxied public request: the gateway's pools and buffers are in use, as in service.
touch_gateway() {
  curl -sf "http://127.0.0.1:$GATEWAY_PORT/public/orders/1" | grep -q '"from":"upstream"' \
    || die "the gateway does not proxy /public"
}

record() {
  echo "$1,$2,$3" >>"$BENCH_RESULTS/memory.csv"
  printf '  %-44s %14s %s\n' "$1" "$2" "$3"
}

# Seeds $1 revoked sessions into the SQLite file $2.
seed_revocations() {
  python3 - "$1" "$2" <<'PY'
import base64, os, sqlite3, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
until = int(time.time()) + 86400
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
rows = ((base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(), until) for _ in range(n))
with db:
    db.executemany("INSERT INTO revocations (kind, value, covers_until) VALUES ('session', ?, ?)", rows)
got = db.execute("SELECT count(*) FROM revocations WHERE kind = 'session'").fetchone()[0]
db.close()
if got < n:
    sys.exit(f"seeded {got} of {n}")
PY
}

part_revoked() {
  echo "revoked: $REVOKED revoked sessions" >&2
  bench_start_gateway
  touch_gateway
  record "gateway, empty store: VmRSS" "$(kib "$GATEWAY_PID" VmRSS)" KiB
  stop_gateway
  local db=$BENCH_WORK/gateway/authgate.db t0 t1
  local seed0=$SECONDS
  seed_revocations "$REVOKED" "$db"
  echo "seeded in $((SECONDS - seed0)) s" >&2
  GATEWAY_PORT=$(bench_free_port)
  local config
  config=$(bench_gateway_config "$GATEWAY_PORT")
  t0=$(date +%s%N)
  bench_spawn GATEWAY_PID "$BENCH_WORK/gateway-revoked.log" "$GATEWAY_BIN" --config "$config"
  until curl -s -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/"; do
    kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway died loading the revocations"
    sleep 0.02
  done
  t1=$(date +%s%N)
  touch_gateway
  record "start to first answer, $REVOKED revoked" "$(((t1 - t0) / 1000000))" "ms (target < 3000)"
  record "gateway, $REVOKED revoked: VmRSS" "$(kib "$GATEWAY_PID" VmRSS)" "KiB (target < 150 MB = 146484 KiB)"
  record "gateway, $REVOKED revoked: VmHWM (peak)" "$(kib "$GATEWAY_PID" VmHWM)" KiB
  stop_gateway
}

part_idle() {
  echo "idle: $IDLE keep-alive connections" >&2
  # Kept-alive connections idle past request_header_timeout are closed: a minute here, so all
  # of them are still open at the second reading.
  BENCH_GATEWAY_SERVER_TOML='request_header_timeout = "60s"' bench_start_named_gateway gateway_idle sqlite
  local pid=$GATEWAY_IDLE_PID port=$GATEWAY_IDLE_PORT
  curl -sf "http://127.0.0.1:$port/public/orders/1" >/dev/null || die "the gateway does not proxy"
  record "gateway, no connection: VmRSS" "$(kib "$pid" VmRSS)" KiB
  record "gateway open-files limit (soft)" "$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")" ""
  mkfifo "$BENCH_WORK/idle.ready" "$BENCH_WORK/idle.done"
  python3 - "$port" "$IDLE" "$BENCH_WORK/idle.ready" "$BENCH_WORK/idle.done" <<'PY' &
import asyncio, resource, sys
port, n, ready, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < n + 64:
    sys.exit(f"the client's open-files hard limit {hard} is below {n + 64}")
REQUEST = b"GET /public/orders/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

async def one(sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"answer {head[:40]!r}")
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        return writer

async def main():
    sem = asyncio.Semaphore(256)
    writers = await asyncio.gather(*(one(sem) for _ in range(n)))
    with open(ready, "w") as f:
        f.write(f"{len(writers)}\n")
    # Wait until the shell has read the gateway's memory, then close everything.
    await asyncio.get_running_loop().run_in_executor(None, lambda: open(done).read())
    for w in writers:
        w.close()

asyncio.run(main())
PY
  local client=$! opened
  read -r opened <"$BENCH_WORK/idle.ready" || die "the idle client failed"
  record "gateway, $opened connections just opened: VmRSS" "$(kib "$pid" VmRSS)" KiB
  # Idle means idle for a while: the gateway frees an HTTP/1 connection's buffers once it has
  # been quiet for a second (see docs/architecture.md).
  sleep "$SETTLE"
  record "gateway, $opened connections idle for $SETTLE s: VmRSS" "$(kib "$pid" VmRSS)" "KiB (target < 100 MB = 97656 KiB)"
  record "gateway, $opened idle connections: open fds" "$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)" ""
  echo done >"$BENCH_WORK/idle.done"
  wait "$client" || die "the idle client failed"
}

bench_need_debs nginx:nginx curl:curl
bench_init
bench_results_dir memory
bench_gateway_bin
echo "part,value,unit" >"$BENCH_RESULTS/memory.csv"
bench_start_upstream
echo "memory and start-up, gateway $GATEWAY_BIN, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for part in $PARTS; do
  case $part in
    revoked) part_revoked ;;
    idle) part_idle ;;
    *) die "unknown part $part (revoked, idle)" ;;
  esac
done
echo "results: $BENCH_RESULTS"
