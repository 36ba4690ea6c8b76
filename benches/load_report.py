#!/usr/bin/env python3
"""Summarises a benches/load.sh results folder: python3 benches/load_report.py RESULTS_DIR.

Reads runs.csv (one row per wrk run), stolen.csv (rounds measured again because the hypervisor
stole CPU time during them) and storm.csv (the login storm, when it ran), prints the tables, the
stolen rounds and the floors, and writes summary.csv, summary.json and chart.dat (for the chart) beside
them. Each figure's ratio to nginx is taken within a round (same minute, same background load)
and then summarised over the rounds as median and min–max: comparing medians of separate runs
would mix in the drift of a shared machine. HTTP/2 targets (`*_h2`) take their ratios to
nginx_h2 (same client, same TLS) when it ran.
"""

import csv
import json
import statistics
import sys
from pathlib import Path

BASELINE = "nginx"
BASELINE_H2 = "nginx_h2"
# The forward-auth target and the public proxied route its decision cost is held against.
VERIFY = "nginx_verify"
PUBLIC = "public"
# (column in runs.csv, label, unit, format)
METRICS = [
    ("rps", "req/s", "", "{:,.0f}"),
    ("p50_us", "p50", "µs", "{:,.0f}"),
    ("p99_us", "p99", "µs", "{:,.0f}"),
    ("proxy_cpu_us_per_req", "CPU/req", "µs", "{:.1f}"),
]
# Recorded for context, without a ratio. The decider is the process that decides for the
# front proxy (the gateway behind nginx_verify); 0 for targets without one.
CONTEXT = [
    ("decider_cpu_us_per_req", "decision CPU/req", "µs", "{:.1f}"),
    ("upstream_cpu_us_per_req", "upstream CPU/req", "µs", "{:.1f}"),
    ("client_cpu_us_per_req", "wrk CPU/req", "µs", "{:.1f}"),
    ("other_cpu_pct", "other load", "% of a core", "{:.0f}"),
    ("steal_pct", "stolen", "% of a core", "{:.0f}"),
]


def read_runs(path):
    """Rows of runs.csv as {round: {target: row}}, numbers as floats, and the target order."""
    rounds, order = {}, []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            target = row["target"]
            if target not in order:
                order.append(target)
            values = {k: float(v) for k, v in row.items() if k not in ("round", "target")}
            # Results written before the decider column existed have none.
            values.setdefault("decider_cpu_us_per_req", 0.0)
            rounds.setdefault(int(row["round"]), {})[target] = values
    return rounds, order


def baseline_of(target, order):
    """The target a target's ratios are taken to."""
    if target.endswith("_h2") and BASELINE_H2 in order:
        return BASELINE_H2
    return BASELINE


# The floors of the speed issue: (target, column, bound, "max" or "min") on the median ratio.
FLOORS = [
    ("token", "proxy_cpu_us_per_req", 1.3, "max"),
    ("token", "rps", 0.85, "min"),
    ("token", "p99_us", 1.5, "max"),
    ("public", "proxy_cpu_us_per_req", 1.1, "max"),
]


def floors(summary):
    """Each floor with the median ratio it was held against and whether it holds."""
    out = []
    for target, column, bound, kind in FLOORS:
        r = summary.get(target, {}).get(column, {}).get("ratio")
        if r is None:
            continue
        ok = r["median"] <= bound if kind == "max" else r["median"] >= bound
        out.append({"target": target, "metric": column, "bound": bound, "kind": kind,
                    "ratio": r["median"], "ok": ok})
    return out


def print_floors(checks):
    if not checks:
        return
    print("Floors (median ratio to nginx in the same round):")
    for c in checks:
        sign = "≤" if c["kind"] == "max" else "≥"
        print(f"  {c['target']:<7} {c['metric']:<22} {c['ratio']:.2f} {sign} {c['bound']}: "
              + ("ok" if c["ok"] else "MISSED"))
    print()


def storm(folder):
    """The login storm's rows and the token route's p99 with the storm over its p99 alone in
    the same round; None when it did not run."""
    path = folder / "storm.csv"
    if not path.exists():
        return None
    rows = list(csv.DictReader(open(path, newline="")))
    by_round = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["phase"]] = row
    ratios = [float(r["storm"]["p99_us"]) / float(r["alone"]["p99_us"])
              for r in by_round.values() if "storm" in r and "alone" in r
              and float(r["alone"]["p99_us"]) > 0]
    if not ratios:
        return None
    med = lambda phase, col: statistics.median(float(r[phase][col]) for r in by_round.values() if phase in r)
    return {
        "p99_alone_us": med("alone", "p99_us"),
        "p99_storm_us": med("storm", "p99_us"),
        "rps_alone": med("alone", "rps"),
        "rps_storm": med("storm", "rps"),
        "logins_per_s": med("storm", "logins_per_s"),
        "login_errors": sum(int(r["storm"]["login_errors"]) for r in by_round.values() if "storm" in r),
        "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "runs": ratios},
        "ok": statistics.median(ratios) <= 2.0,
    }


def print_storm(result):
    if result is None:
        return
    r = result["ratio"]
    print(
        f"Login storm: token route p99 {result['p99_alone_us']:,.0f} µs alone, "
        f"{result['p99_storm_us']:,.0f} µs beside {result['logins_per_s']:.1f} logins/s "
        f"({result['login_errors']} login errors); req/s {result['rps_alone']:,.0f} → "
        f"{result['rps_storm']:,.0f}; p99 ratio {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}): "
        + ("ok, ≤ 2" if result["ok"] else "MISSED, above 2")
    )
    print()


def write_chart_data(folder, summary, order):
    """chart.dat: target, median req/s, median CPU per request (µs)."""
    with open(folder / "chart.dat", "w") as f:
        for t in order:
            f.write(f"{t},{summary[t]['rps']['median']:.1f},"
                    f"{summary[t]['proxy_cpu_us_per_req']['median']:.2f}\n")


def summarise(rounds, order):
    """Per target and metric: the median over rounds, and the median, min and max of the
    per-round ratio to the baseline target."""
    summary = {}
    for target in order:
        entry = {}
        for column, *_ in METRICS + CONTEXT:
            values = [r[target][column] for r in rounds.values() if target in r]
            entry[column] = {"median": statistics.median(values), "runs": values}
        base = baseline_of(target, order)
        entry["baseline"] = base
        for column, *_ in METRICS:
            ratios = [
                r[target][column] / r[base][column]
                for r in rounds.values()
                if target in r and base in r and r[base][column] > 0
            ]
            if ratios:
                entry[column]["ratio"] = {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "runs": ratios,
                }
        summary[target] = entry
    return summary


def number(fmt, value):
    """value formatted, without the "-0" that rounding a tiny negative (tick jitter) gives."""
    text = fmt.format(value)
    return text[1:] if text.startswith("-") and float(text.replace(",", "")) == 0 else text


def print_table(title, header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print(title)
    for i, row in enumerate([header] + rows):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()


def print_report(summary, order, meta):
    wrk = meta.get("wrk", {})
    print(
        f"wrk -t{wrk.get('threads')} -c{wrk.get('connections')} -d{wrk.get('duration')}, "
        f"{meta.get('rounds')} alternating rounds, {meta.get('cores')} cores, "
        f"nginx {meta.get('nginx')}, haproxy {meta.get('haproxy')}, gateway {meta.get('gateway_bin')}\n"
    )
    header = ["target"] + [f"{label} {unit}".strip() for _, label, unit, _ in METRICS + CONTEXT]
    rows = [
        [t] + [number(fmt, summary[t][c]["median"]) for c, _, _, fmt in METRICS + CONTEXT] for t in order
    ]
    print_table("Medians over the rounds (CPU/req: the target's own processes, user+sys)", header, rows)
    header = ["target"] + [label for _, label, _, _ in METRICS]
    rows = []
    for t in order:
        cells = [t]
        for c, *_ in METRICS:
            r = summary[t][c].get("ratio")
            cells.append(f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})" if r else "-")
        rows.append(cells)
    print_table(
        f"Ratio to {BASELINE} ({BASELINE_H2} for *_h2) in the same round: median (min–max over the rounds)",
        header, rows)


def decision_check(rounds):
    """The gateway's CPU per verify decision (as nginx_verify's decider) against its CPU per
    request on the public proxied route, per round; None unless both targets ran. The decision
    must not cost more than proxying a public request."""
    ratios = [
        r[VERIFY]["decider_cpu_us_per_req"] / r[PUBLIC]["proxy_cpu_us_per_req"]
        for r in rounds.values()
        if VERIFY in r and PUBLIC in r and r[PUBLIC]["proxy_cpu_us_per_req"] > 0
    ]
    if not ratios:
        return None
    median = statistics.median(ratios)
    return {
        "verify_decision_cpu_us": statistics.median(
            r[VERIFY]["decider_cpu_us_per_req"] for r in rounds.values() if VERIFY in r
        ),
        "public_proxied_cpu_us": statistics.median(
            r[PUBLIC]["proxy_cpu_us_per_req"] for r in rounds.values() if PUBLIC in r
        ),
        "ratio": {"median": median, "min": min(ratios), "max": max(ratios), "runs": ratios},
        "ok": median <= 1.0,
    }


def print_decision_check(check):
    if check is None:
        return
    r = check["ratio"]
    print(
        f"Gateway CPU per verify decision (nginx_verify): {check['verify_decision_cpu_us']:.1f} µs; "
        f"per public proxied request: {check['public_proxied_cpu_us']:.1f} µs; ratio in the same "
        f"round {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}): "
        + ("ok, not above 1" if check["ok"] else "ABOVE 1: profile the decision path")
    )
    print()


def write_summary(folder, summary, order, meta, check, floor_checks=None, storm_result=None):
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "baseline": BASELINE,
                "targets": order,
                "summary": summary,
                "verify_vs_public": check,
                "floors": floor_checks,
                "login_storm": storm_result,
            },
            indent=2,
        )
        + "\n"
    )
    with open(folder / "summary.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["target", "metric", "median", "ratio_median", "ratio_min", "ratio_max"])
        for t in order:
            for c, *_ in METRICS + CONTEXT:
                r = summary[t][c].get("ratio", {})
                out.writerow(
                    [t, c, f"{summary[t][c]['median']:.3f}"]
                    + [f"{r[k]:.4f}" if r else "" for k in ("median", "min", "max")]
                )


def stolen_rounds(folder, rounds, meta):
    """How many rounds were measured again because of steal time (stolen.csv), and how many of
    the kept rounds still saw more than the limit (the retries ran out)."""
    limit = meta.get("steal", {}).get("limit_pct")
    path = folder / "stolen.csv"
    redone = 0
    if path.exists():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        # Every stolen attempt holds one row per target.
        redone = len(rows) // max(len({row["target"] for row in rows}), 1)
    kept_over = None
    if limit is not None:
        kept_over = sum(1 for r in rounds.values() if max(v["steal_pct"] for v in r.values()) > limit)
    return {"limit_pct": limit, "measured_again": redone, "kept_over_limit": kept_over}


def print_stolen(stolen):
    if stolen["limit_pct"] is None:
        return
    print(
        f"Rounds with more than {stolen['limit_pct']} % of a core stolen by the hypervisor: "
        f"{stolen['measured_again']} measured again (stolen.csv); "
        f"{stolen['kept_over_limit']} of the kept rounds over the limit\n"
    )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    rounds, order = read_runs(folder / "runs.csv")
    if not rounds:
        sys.exit(f"{folder}/runs.csv holds no run")
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    summary = summarise(rounds, order)
    check = decision_check(rounds)
    print_report(summary, order, meta)
    print_decision_check(check)
    stolen = stolen_rounds(folder, rounds, meta)
    print_stolen(stolen)
    floor_checks = floors(summary)
    print_floors(floor_checks)
    storm_result = storm(folder)
    print_storm(storm_result)
    meta["stolen_rounds"] = stolen
    write_summary(folder, summary, order, meta, check, floor_checks, storm_result)
    write_chart_data(folder, summary, order)


if __name__ == "__main__":
    main()
