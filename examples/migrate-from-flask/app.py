"""A Flask + flask-jwt-extended service of the kind authgate replaces.

It has both shapes such services come in:

- UserRegister / UserLogin / TokenRefresh / UserLogout with werkzeug hashes (scrypt or
  pbkdf2) and a jti blocklist;
- AuthApi / RefreshTokenApi with flask-bcrypt hashes, where some endpoints want a fresh token
  (``@jwt_required(fresh=True)``) and a login may mint one fresh for a while only
  (``fresh=timedelta``: a float ``fresh`` claim).

Users live in SQLite (``FLASK_DB``), one table: ``users(id, username, password, roles)``.
``JWT_SECRET_FILE`` holds ``JWT_SECRET_KEY``. Run it with ``python app.py``; it prints
``PORT <n>`` once it listens on 127.0.0.1 (``PORT`` in the environment picks the port;
``BCRYPT_LOG_ROUNDS`` flask-bcrypt's cost, default 12).

Behind authgate it keeps working unchanged: ``@jwt_required()`` accepts authgate's tokens when
authgate signs with the same secret and the route sets ``forward_authorization = true``
(``get_jwt_identity()`` is then authgate's user id; ``X-Auth-Username`` carries the name).
"""

import os
import sqlite3
from datetime import timedelta

from flask import Flask, jsonify, request
from flask_bcrypt import Bcrypt
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.serving import make_server

app = Flask("legacy")
with open(os.environ["JWT_SECRET_FILE"], encoding="utf-8") as f:
    app.config["JWT_SECRET_KEY"] = f.read()
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(hours=1)
app.config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(days=30)
# Bearer tokens, and cookie mode for the browser front end (tokens then carry a `csrf` claim).
app.config["JWT_TOKEN_LOCATION"] = ["headers", "cookies"]
app.config["BCRYPT_LOG_ROUNDS"] = int(os.environ.get("BCRYPT_LOG_ROUNDS", "12"))
bcrypt = Bcrypt(app)
jwt = JWTManager(app)
BLOCKLIST = set()


def db():
    conn = sqlite3.connect(os.environ["FLASK_DB"])
    conn.execute(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, username TEXT UNIQUE "
        "NOT NULL, password TEXT NOT NULL, roles TEXT NOT NULL DEFAULT '')"
    )
    return conn


@jwt.token_in_blocklist_loader
def revoked(_header, payload):
    return payload["jti"] in BLOCKLIST


@app.post("/register")
def register():
    """UserRegister. ``hasher``: ``scrypt`` (werkzeug's default), ``pbkdf2`` or ``bcrypt``."""
    data = request.get_json()
    hasher = data.get("hasher", "scrypt")
    if hasher == "bcrypt":
        stored = bcrypt.generate_password_hash(data["password"]).decode()
    else:
        stored = generate_password_hash(data["password"], method=hasher)
    with db() as conn:
        conn.execute(
            "INSERT INTO users (username, password, roles) VALUES (?, ?, ?)",
            (data["username"], stored, data.get("roles", "")),
        )
    return {"message": "User created"}, 201


def check(username, password):
    row = db().execute("SELECT password FROM users WHERE username = ?", (username,)).fetchone()
    if row is None:
        return False
    if row[0].startswith("$2"):
        return bcrypt.check_password_hash(row[0], password)
    return check_password_hash(row[0], password)


@app.post("/login")
def login():
    """UserLogin: a fresh access token and a refresh token."""
    data = request.get_json()
    if not check(data["username"], data["password"]):
        return {"msg": "Bad username or password"}, 401
    return {
        "access_token": create_access_token(identity=data["username"], fresh=True),
        "refresh_token": create_refresh_token(identity=data["username"]),
    }


@app.post("/auth/login")
def auth_api_login():
    """AuthApi: an access token fresh for five minutes only (a float ``fresh`` claim)."""
    data = request.get_json()
    if not check(data["username"], data["password"]):
        return {"msg": "Bad username or password"}, 401
    return {
        "access_token": create_access_token(
            identity=data["username"], fresh=timedelta(minutes=5)
        ),
        "refresh_token": create_refresh_token(identity=data["username"]),
    }


@app.post("/cookie-login")
def cookie_login():
    """Cookie mode: the tokens in flask-jwt-extended's cookies, with their CSRF cookies."""
    data = request.get_json()
    if not check(data["username"], data["password"]):
        return {"msg": "Bad username or password"}, 401
    response = jsonify(msg="login successful")
    set_access_cookies(response, create_access_token(identity=data["username"], fresh=True))
    set_refresh_cookies(response, create_refresh_token(identity=data["username"]))
    return response


@app.post("/refresh")
@jwt_required(refresh=True)
def refresh():
    """TokenRefresh / RefreshTokenApi: a new, not fresh, access token."""
    return {"access_token": create_access_token(identity=get_jwt_identity(), fresh=False)}


@app.post("/logout")
@jwt_required(verify_type=False)
def logout():
    """UserLogout: the token's jti joins the blocklist."""
    BLOCKLIST.add(get_jwt()["jti"])
    return {"msg": "Successfully logged out"}


@app.get("/whoami")
@jwt_required()
def whoami():
    return jsonify(
        identity=get_jwt_identity(),
        gateway_user=request.headers.get("X-Auth-Username"),
    )


@app.post("/orders")
@jwt_required(fresh=True)
def orders():
    return jsonify(created=True, identity=get_jwt_identity()), 201


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(os.environ.get("PORT", "0")), app, threaded=True)
    print("PORT", server.port, flush=True)
    server.serve_forever()
