#!/usr/bin/env bash
# Moves the users of a Flask + flask-jwt-extended app into authgate without logging anyone out
# (docs/migrating-from-flask.md walks through each step).
#
#   FLASK_DB=app.db AUTHGATE_CONFIG=authgate.toml ./migrate.sh
#
# Environment: FLASK_DB (the app's SQLite database), AUTHGATE_CONFIG (authgate's config, with
# [compat.flask_jwt_extended] pointing at the app's JWT_SECRET_KEY); optional PYTHON (default
# python3), AUTHGATE (default authgate on PATH), WORK (where users.jsonl goes; default .).
# Exits with the first failing step's status; `authgate user import` exits 65 on a bad line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
authgate=${AUTHGATE:-authgate}
work=${WORK:-.}
: "${FLASK_DB:?set FLASK_DB to the Flask app's SQLite database}"
: "${AUTHGATE_CONFIG:?set AUTHGATE_CONFIG to authgate's config file}"

echo "1/3 checking $AUTHGATE_CONFIG (legacy secret readable, accept_until ahead)"
"$authgate" --config "$AUTHGATE_CONFIG" check-config

echo "2/3 exporting users from $FLASK_DB"
"$python" "$here/export_users.py" "$FLASK_DB" >"$work/users.jsonl"
echo "    $(wc -l <"$work/users.jsonl") user(s) in $work/users.jsonl"

echo "3/3 importing them (hashes kept; each becomes argon2id at its owner's next login)"
"$authgate" --config "$AUTHGATE_CONFIG" user import "$work/users.jsonl"

cat <<'NEXT'
done. Next:
  - start authgate (or let a running one pick the users up within a second);
  - point clients at authgate: tokens the Flask app minted keep working until accept_until,
    and a kept refresh token is exchanged for authgate tokens at /auth/refresh;
  - remove the app's login, refresh and logout code once accept_until has passed.
NEXT
