#!/usr/bin/env python3
"""The client of benches/callgrind.sh: fixed loops of requests on one keep-alive connection to
a gateway running under callgrind, each loop framed by zeroing and dumping its counters.

    callgrind_client.py PORT GATEWAY_PID PATH [--token T] [--header "NAME: VALUE" ...]
        [--decision] [--warmup W] [--loop N ...] [--idle]

Prints one line per loop, "loop N SECONDS", after callgrind_control has dumped the counters of
that loop (dumps are numbered in order, so the caller pairs line k with dump k). --idle adds a
last loop of 0 requests lasting as long as the first loop: what background timers cost.
--decision: the path is the forward-auth endpoint, whose allowing answer is an empty 200.
This process is not under callgrind, so its own work is not counted.
"""

import argparse
import http.client
import subprocess
import sys
import time


def callgrind_control(flag, pid):
    """Zeroes (-z) or dumps (-d) the counters of the gateway; quiet unless it fails."""
    done = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"callgrind_control {flag} {pid} failed:\n{done.stdout}{done.stderr}")


def requests(conn, path, headers, n, decision=False):
    """n GETs on the one connection; an answer that is not the upstream's 200 (or, for a
    decision, an empty 200) stops the benchmark: an error answer is cheaper and would flatter
    the figure."""
    for _ in range(n):
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        ok = body == b"" if decision else b'"from":"upstream"' in body
        if answer.status != 200 or not ok:
            expected = "an empty allowing decision" if decision else "200 from the upstream"
            sys.exit(f"GET {path}: status {answer.status}, expected {expected}: {body[:200]!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("port", type=int)
    p.add_argument("pid", type=int)
    p.add_argument("path")
    p.add_argument("--token")
    p.add_argument("--header", action="append", default=[], help='"NAME: VALUE", repeatable')
    p.add_argument("--decision", action="store_true")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--loop", type=int, action="append", required=True, help="requests per loop")
    p.add_argument("--idle", action="store_true")
    args = p.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    for line in args.header:
        name, value = line.split(":", 1)
        headers[name.strip()] = value.strip()
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
    requests(conn, args.path, headers, args.warmup, args.decision)
    first = None
    for n in args.loop:
        callgrind_control("-z", args.pid)
        start = time.monotonic()
        requests(conn, args.path, headers, n, args.decision)
        seconds = time.monotonic() - start
        first = first or seconds
        callgrind_control("-d", args.pid)
        print(f"loop {n} {seconds:.3f}", flush=True)
    if args.idle:
        callgrind_control("-z", args.pid)
        time.sleep(first)
        callgrind_control("-d", args.pid)
        print(f"loop 0 {first:.3f}", flush=True)
    conn.close()


if __name__ == "__main__":
    main()
