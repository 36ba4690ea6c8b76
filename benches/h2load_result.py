#!/usr/bin/env python3
"""Turns one h2load run into the line benches/load.sh reads from wrk:
"RESULT requests duration_us p50_us p99_us non_2xx_3xx socket_errors".

    python3 benches/h2load_result.py H2LOAD_STDOUT H2LOAD_LOG_FILE

h2load prints counts and the run's length but no percentiles; its --log-file has one line per
request (start time in µs, status, time taken in µs), from which p50 and p99 are taken.
"""

import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    text = open(sys.argv[1]).read()
    finished = re.search(r"finished in ([\d.]+)(m?s)", text)
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (finished and counts and codes):
        sys.exit(f"no h2load summary in {sys.argv[1]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    done = int(counts.group(3))
    errored, timeout = int(counts.group(6)), int(counts.group(7))
    non_2xx_3xx = int(codes.group(3)) + int(codes.group(4))
    times = []
    with open(sys.argv[2]) as log:
        for line in log:
            fields = line.split()
            if len(fields) == 3:
                times.append(int(fields[2]))
    times.sort()

    def percentile(p):
        return times[min(len(times) - 1, int(len(times) * p / 100))] if times else 0

    print(
        f"RESULT {done} {round(seconds * 1e6)} {percentile(50)} {percentile(99)} "
        f"{non_2xx_3xx} {errored + timeout}"
    )


if __name__ == "__main__":
    main()
