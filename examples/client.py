#!/usr/bin/env python3
"""A small authgate client in Python, with requests.

It keeps the access and refresh tokens of one session, refreshes once when the gateway says
`token_expired`, steps up with the password when a route says `fresh_token_required`, and
branches on the stable `error` codes of the gateway's JSON errors (never on messages).

Run against `authgate demo`, whose echo upstream answers with the request it saw (headers as a
list of [name, value] pairs). Against your own gateway, give it a token route at /api and a
fresh route at /admin; it prints the identity headers only when the upstream echoes them in
that shape or as a JSON object:

    python3 examples/client.py                     # http://127.0.0.1:8080, user alice
    python3 examples/client.py --base https://gw.example.com --user bob

Needs `pip install requests`. The password comes from $AUTHGATE_PASSWORD, else the demo's.
"""

import argparse
import os
import sys

import requests


class AuthgateError(Exception):
    """An error answer of the gateway: `status`, the machine `code` and the human message."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class Client:
    """One user's session with an authgate gateway."""

    def __init__(self, base, timeout=10):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.access = None
        self.refresh_token = None

    # --- the account endpoints -------------------------------------------------------------

    def register(self, username, password):
        """Creates the account; an existing one is fine (409 username_taken)."""
        try:
            return self._call("POST", "/auth/register", json={"username": username, "password": password})
        except AuthgateError as e:
            if e.code != "username_taken":
                raise
            return None

    def login(self, username, password):
        answer = self._call("POST", "/auth/login", json={"username": username, "password": password})
        self.access = answer["access_token"]
        self.refresh_token = answer["refresh_token"]
        return answer

    def refresh(self):
        """A new access token (not fresh); keeps the rotated refresh token."""
        answer = self._call("POST", "/auth/refresh", token=self.refresh_token)
        self.access = answer["access_token"]
        self.refresh_token = answer.get("refresh_token", self.refresh_token)
        return answer

    def step_up(self, password):
        """A fresh access token in the same session, for routes that ask for one."""
        answer = self._call("POST", "/auth/fresh", token=self.access, json={"password": password})
        self.access = answer["access_token"]
        return answer

    def me(self):
        return self.request("GET", "/auth/me")

    def logout(self):
        return self._call("POST", "/auth/logout", token=self.access)

    # --- any route behind the gateway ------------------------------------------------------

    def request(self, method, path, password=None, **kwargs):
        """Calls `path` with the access token; refreshes once on `token_expired`, and steps up
        once on `fresh_token_required` when `password` is given."""
        try:
            return self._call(method, path, token=self.access, **kwargs)
        except AuthgateError as e:
            if e.code == "token_expired" and self.refresh_token:
                self.refresh()
            elif e.code == "fresh_token_required" and password is not None:
                self.step_up(password)
            else:
                raise
        return self._call(method, path, token=self.access, **kwargs)

    def _call(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, self.base + path, headers=headers, timeout=self.timeout, **kwargs)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text
        if r.status_code >= 400:
            if isinstance(body, dict) and "error" in body:
                raise AuthgateError(r.status_code, body["error"], body.get("message", ""))
            raise AuthgateError(r.status_code, "upstream", str(body)[:200])
        return body


def echoed_headers(echoed):
    """The headers an echoing upstream reports: a list of pairs (the demo) or an object."""
    headers = echoed.get("headers") if isinstance(echoed, dict) else None
    if isinstance(headers, dict):
        return {k.lower(): v for k, v in headers.items()}
    if isinstance(headers, list):
        return {pair[0].lower(): pair[1] for pair in headers if len(pair) == 2}
    return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=os.environ.get("AUTHGATE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    password = os.environ.get("AUTHGATE_PASSWORD", "correct horse battery")

    c = Client(args.base)
    c.register(args.user, password)
    c.login(args.user, password)
    print("me:", c.me()["username"])
    echoed = c.request("GET", "/api/orders")
    identity = echoed_headers(echoed)
    print("upstream saw user:", identity.get("x-auth-username"))
    c.refresh()
    # The refreshed token is not fresh: /admin asks for a step-up, which request() does.
    settings = c.request("GET", "/admin/settings", password=password)
    print("fresh route reached:", settings["path"] if isinstance(settings, dict) else settings)
    c.logout()
    try:
        c.me()
    except AuthgateError as e:
        print("after logout:", e.code)
        if e.code != "token_revoked":
            raise
    else:
        sys.exit("the session was still alive after logout")


if __name__ == "__main__":
    main()
