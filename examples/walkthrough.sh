#!/usr/bin/env bash
# The README walkthrough as a script: register, log in, call a token route, refresh, step up
# for a fresh route, log out. Run it against `authgate demo` (the defaults below), or any
# gateway with the demo's routes: /public (public), /api (token) and /admin (fresh) in front of
# an upstream that echoes what it receives.
#
#   examples/walkthrough.sh                       # authgate demo on 127.0.0.1:8080 / :9090
#   AUTHGATE_URL=https://gw.example.com AUTHGATE_ADMIN_URL=http://10.0.0.5:9090 \
#     AUTHGATE_USER=bob examples/walkthrough.sh
#
# Needs curl and sed. Exits non-zero at the first answer that is not the one expected.
set -euo pipefail

base="${AUTHGATE_URL:-http://127.0.0.1:8080}"
admin="${AUTHGATE_ADMIN_URL:-http://127.0.0.1:9090}"
user="${AUTHGATE_USER:-alice}"
password="${AUTHGATE_PASSWORD:-correct horse battery}"
credentials=$(printf '{"username":"%s","password":"%s"}' "$user" "$password")

# One request: prints the body, and fails unless the status is the expected one.
#   call EXPECTED_STATUS curl-arguments...
call() {
  local expected=$1 body status
  shift
  body=$(curl -sS -w '\n%{http_code}' "$@")
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  printf '%s %s\n' "$status" "$body"
  if [ "$status" != "$expected" ]; then
    echo "walkthrough: expected $expected, got $status from: curl $*" >&2
    exit 1
  fi
  last_body=$body
}
# A field of the last JSON answer (the tokens are plain base64url strings).
field() { printf '%s' "$last_body" | sed -E "s/.*\"$1\":\"([^\"]+)\".*/\\1/"; }

echo "# Is it up? (admin listener)"
call 200 "$admin/readyz"
echo "# A public route: the upstream shows what it received"
call 200 "$base/public/hello?x=1"
echo "# A token route without a token: 401 missing_token"
call 401 "$base/api/orders"
echo "# Register (201; 409 username_taken when the user exists already) and log in"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/auth/register" \
  -H 'Content-Type: application/json' -d "$credentials")
echo "$status"
case "$status" in 201 | 409) ;; *) echo "walkthrough: register answered $status" >&2; exit 1 ;; esac
call 200 -X POST "$base/auth/login" -H 'Content-Type: application/json' -d "$credentials"
access=$(field access_token)
refresh=$(field refresh_token)
echo "# Who am I?"
call 200 "$base/auth/me" -H "Authorization: Bearer $access"
echo "# The token route forwards, with X-Auth-* identity headers added by the gateway"
call 200 "$base/api/orders" -H "Authorization: Bearer $access"
echo "# Refresh: a new access token that is NOT fresh (and a rotated refresh token)"
call 200 -X POST "$base/auth/refresh" -H "Authorization: Bearer $refresh"
access2=$(field access_token)
echo "# The fresh route refuses it: 401 fresh_token_required"
call 401 "$base/admin/settings" -H "Authorization: Bearer $access2"
echo "# Step up with the password: a fresh token in the same session"
call 200 -X POST "$base/auth/fresh" -H "Authorization: Bearer $access2" \
  -H 'Content-Type: application/json' -d "$(printf '{"password":"%s"}' "$password")"
fresh=$(field access_token)
call 200 "$base/admin/settings" -H "Authorization: Bearer $fresh"
echo "# Log out: the whole session is revoked, every token of it refused"
call 200 -X POST "$base/auth/logout" -H "Authorization: Bearer $access"
call 401 "$base/api/orders" -H "Authorization: Bearer $fresh"
echo "walkthrough: every step answered as expected"
