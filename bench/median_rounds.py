#!/usr/bin/env python3
"""Folds the rounds of bench/scale.sh's posts part into one report per size.

    median_rounds.py OUT KEY=VALUE... ROUND.json...
        writes OUT: the first round's report with every figure of its runs (rate, × health,
        latencies) the median of the rounds, the calls and errors summed, every round's
        health kept, each round's own figures under "rounds", and KEY=VALUE (numbers) added.

    median_rounds.py --ratios REPORT.json... --sizes S1 ... SN [--suffix SUFFIX]
        prints the largest size against the smallest (rate and p99), round by round (the
        two were measured minutes apart, the other sizes between them) and the median of
        those ratios, and stores them in the largest size's report ("against_smallest").
"""

import json
import os
import statistics
import sys

LATENCIES = ("p50", "p90", "p99", "max", "mean")


def fail(message):
    print(f"median_rounds.py: {message}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        fail(f"cannot read {path}: {error}")


def fold(out, pairs, paths):
    if not paths:
        fail("no round reports given")
    rounds = [load(path) for path in paths]
    first = rounds[0]
    for other in rounds[1:]:
        if [r["scenario"] for r in other["runs"]] != [r["scenario"] for r in first["runs"]]:
            fail("the rounds did not run the same scenarios")
        if other["posts"] != first["posts"]:
            fail("the rounds were not of one size")
    report = dict(first)
    report["walk_s"] = statistics.median(r["walk_s"] for r in rounds)
    report["health"] = [h for r in rounds for h in r["health"]]
    runs = []
    for i, run in enumerate(first["runs"]):
        same = [r["runs"][i] for r in rounds]
        merged = dict(run)
        merged["rps"] = statistics.median(s["rps"] for s in same)
        merged["ratio_to_health"] = statistics.median(s["ratio_to_health"] for s in same)
        merged["latency_us"] = {
            k: statistics.median(s["latency_us"][k] for s in same) for k in LATENCIES
        }
        for k in ("calls", "ok", "error_count"):
            merged[k] = sum(s[k] for s in same)
        errors = {}
        for s in same:
            for name, count in s["errors"].items():
                errors[name] = errors.get(name, 0) + count
        merged["errors"] = errors
        runs.append(merged)
    report["runs"] = runs
    report["rounds"] = [
        {
            "health_rps": [h["rps"] for h in r["health"]],
            "runs": {
                s["scenario"]: {
                    "rps": s["rps"],
                    "ratio_to_health": s["ratio_to_health"],
                    "p99_us": s["latency_us"]["p99"],
                }
                for s in r["runs"]
            },
        }
        for r in rounds
    ]
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            report[key] = float(value) if "." in value else int(value)
        except ValueError:
            fail(f"{pair}: not KEY=NUMBER")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


def ratios(paths, sizes, suffix):
    by_size = {}
    for path in paths:
        report = load(path)
        name = os.path.basename(path)
        if name.endswith(f"-{report['posts']}{suffix}.json"):
            by_size[report["posts"]] = (path, report)
    small, large = min(sizes), max(sizes)
    if small not in by_size or large not in by_size:
        fail(f"no reports of {small} and {large} posts among {paths}")
    (_, low), (large_path, high) = by_size[small], by_size[large]
    if len(low["rounds"]) != len(high["rounds"]):
        fail("the two sizes ran a different number of rounds")
    against = {}
    print(f"{high['backend']}: {large} posts against {small}, round by round (rate, p99):")
    for scenario in low["rounds"][0]["runs"]:
        rate = [h["runs"][scenario]["rps"] / l["runs"][scenario]["rps"]
                for l, h in zip(low["rounds"], high["rounds"])]
        p99 = [h["runs"][scenario]["p99_us"] / l["runs"][scenario]["p99_us"]
               for l, h in zip(low["rounds"], high["rounds"])]
        against[scenario] = {
            "rate": rate,
            "p99": p99,
            "rate_median": statistics.median(rate),
            "p99_median": statistics.median(p99),
        }
        rounds = ", ".join(f"{r:.2f}/{p:.2f}" for r, p in zip(rate, p99))
        print(f"  {scenario}: {rounds}; median {statistics.median(rate):.2f} / "
              f"{statistics.median(p99):.2f}")
    high["against_smallest"] = {"posts": small, "scenarios": against}
    with open(large_path, "w") as f:
        json.dump(high, f, indent=2)


def main(argv):
    if argv[:1] == ["--ratios"]:
        args = argv[1:]
        if "--sizes" not in args:
            fail("--ratios needs --sizes")
        paths = args[: args.index("--sizes")]
        rest = args[args.index("--sizes") + 1:]
        suffix = ""
        if "--suffix" in rest:
            i = rest.index("--suffix")
            suffix = rest[i + 1] if i + 1 < len(rest) else ""
            rest = rest[:i]
        try:
            sizes = [int(s) for s in rest]
        except ValueError:
            fail(f"--sizes takes whole numbers, not {rest}")
        if len(sizes) < 2:
            fail("--sizes needs two sizes or more")
        ratios(paths, sizes, suffix)
        return
    if len(argv) < 2:
        fail("usage: median_rounds.py OUT KEY=VALUE... ROUND.json...")
    out, rest = argv[0], argv[1:]
    pairs = [a for a in rest if "=" in a and not a.endswith(".json")]
    paths = [a for a in rest if a not in pairs]
    fold(out, pairs, paths)


if __name__ == "__main__":
    main(sys.argv[1:])
