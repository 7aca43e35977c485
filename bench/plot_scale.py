#!/usr/bin/env python3
"""Draws bench/results/scale-*.json (written by bench/scale.sh) as PNG charts.

    bench/.venv/bin/python bench/plot_scale.py [RESULTS_DIR [PLOTS_DIR]]

Reads RESULTS_DIR (bench/results), writes the charts to PLOTS_DIR (bench/plots, committed):

scale-introspect.png  Introspect rate (× health of the same run) and p99 against live sessions,
                      on one Redis node (scale-sessions-<n>.json) and, where measured, on a
                      Redis Cluster (scale-sessions-cluster-<n>.json, dashed)
scale-posts.png       ListPosts / GetPost rate (× health) and p99 against posts, per backend
scale-user-sessions.png  Login/Refresh/Logout/ListSessions p50 and p99 against sessions of one user
scale-memory.png      Redis bytes per live session and per blocked access token
"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(results, pattern):
    reports = []
    for path in sorted(glob.glob(os.path.join(results, pattern))):
        with open(path) as f:
            reports.append(json.load(f))
    return reports


def yardstick(report):
    """The health rate runs are compared with: the mean of the health runs framing them."""
    health = report.get("health")
    if isinstance(health, dict):
        health = [health]
    rates = [h["rps"] for h in health or [] if h.get("rps")]
    return sum(rates) / len(rates) if rates else None


def ratio(report, run):
    # A report folded from rounds (bench/median_rounds.py) holds the median of each
    # round's own ratio: each round against the health measured around it.
    if "rounds" in report:
        return run["ratio_to_health"]
    health = yardstick(report)
    return run["rps"] / health if health else run["ratio_to_health"]


def two_panels(title):
    fig, (rate, p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle(title)
    for ax in (rate, p99):
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    rate.set_ylabel("rate × health (same run)")
    p99.set_ylabel("p99 (ms)")
    return fig, rate, p99


PLOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots")


def save(fig, results, name):
    fig.tight_layout()
    os.makedirs(PLOTS, exist_ok=True)
    path = os.path.join(PLOTS, name)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print("wrote", path)


# One Redis node, and a Redis Cluster (PARTS=sessions-cluster; optional).
SESSIONS = (("one node", "scale-sessions-[0-9]*.json", "o-"),
            ("cluster", "scale-sessions-cluster-*.json", "s--"))


def introspect(results):
    series = {}
    for redis, pattern, _ in SESSIONS:
        for r in load(results, pattern):
            for run in r.get("introspect", []):
                series.setdefault((redis, run["scenario"]), []).append(
                    (run["state_size"], ratio(r, run), run["latency_us"]["p99"] / 1e3,
                     run.get("cache_hit_rate"))
                )
    if not series:
        return
    redises = sorted({redis for redis, _ in series}, key=[s[0] for s in SESSIONS].index)
    title = "one Redis node" if redises == ["one node"] else " vs ".join(
        "one Redis node" if r == "one node" else "Redis Cluster (3 masters + 3 replicas)" for r in redises)
    fig, rate, p99 = two_panels(f"Introspect against live sessions ({title})")
    styles = {redis: style for redis, _, style in SESSIONS}
    colors = {}
    for (redis, name), points in sorted(series.items(), key=lambda kv: (redises.index(kv[0][0]), kv[0][1])):
        points.sort()
        xs = [p[0] for p in points]
        label = name if len(redises) == 1 else f"{redis}: {name}"
        line, = rate.plot(xs, [p[1] for p in points], styles[redis], label=label, color=colors.get(name))
        colors.setdefault(name, line.get_color())
        p99.plot(xs, [p[2] for p in points], styles[redis], label=label, color=colors[name])
        for x, y, hit in ((p[0], p[1], p[3]) for p in points):
            if hit is not None:
                below = redis == "cluster" and len(redises) > 1
                rate.annotate(f"hit {hit:.0%}", (x, y), textcoords="offset points",
                              xytext=(4, -10 if below else 4), fontsize=7)
    rate.axhline(0.4, color="grey", linestyle="--", linewidth=1, label="target 0.4")
    rate.set_xlabel("live sessions")
    p99.set_xlabel("live sessions")
    rate.legend(fontsize=8)
    rate.set_ylim(bottom=0)
    p99.set_ylim(bottom=0)
    save(fig, results, "scale-introspect.png")


def posts(results):
    series = {}
    for r in load(results, "scale-posts-*.json"):
        cache_mb = r.get("post_cache_mb", 24)
        for run in r["runs"]:
            # With another cache budget, first pages are not drawn: they are the same.
            if cache_mb != 24 and run["scenario"] == "list-first-page":
                continue
            key = (r["backend"], run["scenario"], cache_mb)
            series.setdefault(key, []).append(
                (run["state_size"], ratio(r, run), run["latency_us"]["p99"] / 1e3)
            )
    if not series:
        return
    fig, rate, p99 = two_panels("Blog reads against posts in the database")
    for (backend, scenario, cache_mb), points in sorted(series.items()):
        points.sort()
        style = ("o-" if backend == "postgres" else "s--") if cache_mb == 24 else ("^:" if backend == "postgres" else "v:")
        label = f"{backend} {scenario}" + ("" if cache_mb == 24 else f", {cache_mb} MB cache")
        rate.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
        p99.plot([p[0] for p in points], [p[2] for p in points], style, label=label)
    rate.set_xlabel("posts")
    p99.set_xlabel("posts")
    rate.legend(fontsize=7)
    rate.set_ylim(bottom=0)
    p99.set_ylim(bottom=0)
    save(fig, results, "scale-posts.png")


def user_sessions(results):
    reports = load(results, "scale-user-sessions.json")
    if not reports:
        return
    series = {}
    for op in reports[0]["ops"]:
        series.setdefault(op["op"], []).append((op["sessions"], op["p50_us"] / 1e3, op["p99_us"] / 1e3))
    fig, (p50, p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle("Calls of one user against the sessions the user holds (Redis)")
    for ax, index, label in ((p50, 1, "p50 (ms)"), (p99, 2, "p99 (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("sessions of the user")
        ax.set_ylabel(label)
        for name, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[index] for p in points], "o-", label=name)
    logout_all = reports[0].get("logout_all", [])
    if logout_all:
        p50.plot([r["sessions"] for r in logout_all], [r["logout_all_us"] / 1e3 for r in logout_all],
                 "k^:", label="LogoutAll (one call)")
    p50.legend(fontsize=8)
    save(fig, results, "scale-user-sessions.png")


def memory(results):
    rows = []
    for r in (load(results, "scale-memory-per-user-*.json") + load(results, "scale-sessions-[0-9]*.json")
              + load(results, "scale-sessions-cluster-*.json")):
        m = r["memory"]
        label = f"{m['sessions']:,} sessions, {m['sessions_per_user']}/user"
        if m.get("redis") == "cluster":
            label += f", cluster ({len(m.get('masters', []))} masters)"
        blocked = r.get("blocked") or {}
        rows.append((label, m["bytes_per_session"], m["bytes_per_session_by_keys"],
                     blocked.get("bytes_per_blocked_token")))
    if not rows:
        return
    layouts = {}
    path = os.path.join(results, "scale-redis-layouts.txt")
    if os.path.exists(path):
        for line in open(path).read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4:
                layouts.setdefault(parts[0], {})[int(parts[2])] = int(parts[3])
    fig, (ax, lx) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [r[1] for r in rows], height=0.4, label="per live session (INFO used_memory)")
    ax.barh([y + 0.2 for y in ys], [r[3] or 0 for r in rows], height=0.4, label="per blocked access token")
    ax.scatter([r[2] for r in rows], [y - 0.2 for y in ys], color="black", zorder=3, s=12,
               label="per session by MEMORY USAGE of the keys")
    ax.axvline(500, color="grey", linestyle="--", linewidth=1, label="target 500 B")
    ax.set_yticks(list(ys), [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("bytes of Redis memory")
    ax.set_title("Today, through the token store")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if layouts:
        names = list(layouts)
        per_users = sorted({k for v in layouts.values() for k in v})
        width = 0.8 / len(per_users)
        for i, per_user in enumerate(per_users):
            lx.bar([x + i * width for x in range(len(names))],
                   [layouts[n].get(per_user, 0) for n in names], width=width,
                   label=f"{per_user} session(s)/user")
        lx.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
        lx.axhline(500, color="grey", linestyle="--", linewidth=1)
        lx.set_ylabel("bytes per live session (used_memory)")
        lx.set_title("Key layouts written by bench/redis_layout.sh")
        lx.legend(fontsize=7)
    fig.suptitle("Redis memory per unit of state")
    save(fig, results, "scale-memory.png")


def main():
    global PLOTS
    here = os.path.dirname(os.path.abspath(__file__))
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results")
    if len(sys.argv) > 2:
        PLOTS = sys.argv[2]
    for draw in (introspect, posts, user_sessions, memory):
        draw(results)


if __name__ == "__main__":
    main()
