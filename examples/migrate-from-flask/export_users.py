"""Export the users of a Flask app's SQLite database for ``authgate user import``.

    python export_users.py FLASK_DB > users.jsonl

Writes one JSON line per user: ``username``, ``password_hash`` exactly as the app stored it
(flask-bcrypt ``$2b$...``, werkzeug ``scrypt:...`` or ``pbkdf2:sha256:...``; authgate re-hashes
each with argon2id at that user's next login) and ``roles`` (an array; the app kept them as
one comma-separated column).

Adapt the query to your schema. With Flask-SQLAlchemy the same loop reads
``User.query.all()``: ``{"username": u.username, "password_hash": u.password, ...}``.
"""

import json
import sqlite3
import sys


def main(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute("SELECT username, password, roles FROM users ORDER BY id")
    for username, password_hash, roles in rows:
        record = {
            "username": username,
            "password_hash": password_hash,
            "roles": [r.strip() for r in (roles or "").split(",") if r.strip()],
        }
        print(json.dumps(record))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: export_users.py FLASK_DB > users.jsonl")
    main(sys.argv[1])
