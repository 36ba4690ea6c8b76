#!/usr/bin/env python3
"""Revocation propagation between two replicas: python3 benches/propagation.py A_URL B_URL N OUT.

Logs N sessions in on replica A, then for each: checks its access token is accepted on
replica B, logs it out on A, and from the moment A's answer arrived polls B on a kept-alive
connection until B refuses the token. The delay is A's answer to B's first refusal, so it
includes one poll's round trip (reported too, as the resolution). Writes delays.csv and
summary.json to OUT and prints the summary. Standard library only.
"""

import http.client
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

PASSWORD = "benchmark password"


def connect(url):
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def call(conn, method, path, token=None, body=None):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    res = conn.getresponse()
    return res.status, res.read()


def percentile(sorted_values, p):
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def main():
    a_url, b_url, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    a, b = connect(a_url), connect(b_url)
    creds = {"username": "propagation", "password": PASSWORD}
    status, _ = call(a, "POST", "/auth/register", body=creds)
    if status not in (201, 409):
        sys.exit(f"register on A: {status}")
    tokens = []
    for _ in range(n):
        status, body = call(a, "POST", "/auth/login", body=creds)
        if status != 200:
            sys.exit(f"login on A: {status} {body[:200]!r}")
        tokens.append(json.loads(body)["access_token"])

    delays, polls, rtts = [], [], []
    for token in tokens:
        started = time.perf_counter()
        status, _ = call(b, "GET", "/api/x", token)
        rtts.append(time.perf_counter() - started)
        if status != 200:
            sys.exit(f"B refused a live token: {status}")
        status, body = call(a, "POST", "/auth/logout", token)
        answered = time.perf_counter()
        if status != 200:
            sys.exit(f"logout on A: {status} {body[:200]!r}")
        count = 0
        while True:
            count += 1
            status, body = call(b, "GET", "/api/x", token)
            if status == 401:
                refused = time.perf_counter()
                if json.loads(body)["error"] != "token_revoked":
                    sys.exit(f"B refused with {body!r}")
                break
            if status != 200:
                sys.exit(f"B answered {status} {body[:200]!r}")
            if time.perf_counter() - answered > 5:
                sys.exit("B still accepts a token 5 s after its logout on A")
        delays.append(refused - answered)
        polls.append(count)

    ms = sorted(d * 1000 for d in delays)
    summary = {
        "revocations": n,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "refused_at_first_poll": sum(1 for c in polls if c == 1),
        "poll_rtt_p50_ms": round(statistics.median(rtts) * 1000, 3),
    }
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "delays.csv", "w") as f:
        f.write("delay_ms,polls\n")
        for d, c in zip(delays, polls):
            f.write(f"{d * 1000:.3f},{c}\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"propagation over {n} revocations (logout answered on A -> first refusal on B): "
        f"p50 {summary['p50_ms']} ms, p90 {summary['p90_ms']} ms, p99 {summary['p99_ms']} ms, "
        f"max {summary['max_ms']} ms; refused at the first poll: "
        f"{summary['refused_at_first_poll']}; one poll's round trip (p50): "
        f"{summary['poll_rtt_p50_ms']} ms"
    )


if __name__ == "__main__":
    main()
