#!/usr/bin/env bash
# Loopback load test of the token route against the echo upstream, and of the echo upstream
# called directly, with wrk (Debian package `wrk`). Usage: benches/wrk.sh [SECONDS] [CONNECTIONS]
# Builds release binaries; everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin authgate --example echo_upstream
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

./target/release/examples/echo_upstream 127.0.0.1:19000 >/dev/null &
cat > "$work/authgate.toml" <<TOML
[server]
listen = "127.0.0.1:18080"
[admin]
listen = ""
[store]
url = "sqlite://$work/authgate.db"
[tokens]
secret_file = "$work/jwt-secret"
[log]
level = "${AUTHGATE_BENCH_LOG:-warn}"
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:19000"
auth = "token"
TOML
./target/release/authgate --config "$work/authgate.toml" 2>"$work/gateway.log" &
for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18080/ && break; sleep 0.1; done
creds='{"username":"bench","password":"benchmark password"}'
curl -s -X POST 127.0.0.1:18080/auth/register -H 'Content-Type: application/json' -d "$creds" >/dev/null
token=$(curl -s -X POST 127.0.0.1:18080/auth/login -H 'Content-Type: application/json' -d "$creds" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

echo "== echo upstream directly (${secs}s, ${conns} connections)"
wrk -t2 -c"$conns" -d"${secs}s" --latency http://127.0.0.1:19000/api/orders/1
echo "== through authgate, token route (${secs}s, ${conns} connections)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" http://127.0.0.1:18080/api/orders/1
