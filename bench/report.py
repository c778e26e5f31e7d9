#!/usr/bin/env python3
"""Writes BENCHMARKS.md (to stdout) and bench/charts/*.png from bench/run's results.jsonl.

usage: bench/report.py RESULTS.jsonl "DURATION ARGS"
"""
import json
import os
import platform
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = ["parlor", "raw", "socketio"]
LABEL = {"parlor": "Parlor", "raw": "raw floor", "socketio": "Socket.IO"}
COLOR = {"parlor": "#1f77b4", "raw": "#7f7f7f", "socketio": "#d62728"}
CHARTS = "bench/charts"


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return [
        ("CPU", f"{os.cpu_count()} × {model}"),
        ("memory", f"{int(mem) / 1024 / 1024:.0f} GiB"),
        ("kernel", platform.release()),
        ("rustc", sh("rustc --version")),
        ("node", sh("node --version")),
        ("socket.io", sh("node -p \"require('./bench/peers/socketio/node_modules/socket.io/package.json').version\"")),
    ]


def ratio(a, b):
    if a is None or b in (None, 0):
        return "n/a"
    r = a / b
    return f"{r:.2f}×" if r >= 0.01 else f"{r:.1e}×"


def fmt(v, spec="{:.0f}"):
    return "n/a" if v is None else spec.format(v)


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def by_target(rows):
    return {r["target"]: r for r in rows}


def main():
    results = load(sys.argv[1])
    durations = sys.argv[2] if len(sys.argv) > 2 else ""
    os.makedirs(CHARTS, exist_ok=True)
    idle = [r for r in results if r["scenario"] == "idle"]
    fan = [r for r in results if r["scenario"] == "fanout" and r["rooms"] == 10 and r["rate"] is not None]
    sat = by_target(r for r in results if r["scenario"] == "fanout" and r["rate"] is None)
    big = by_target(r for r in results if r["scenario"] == "fanout" and r["rooms"] == 1)
    storm = by_target(r for r in results if r["scenario"] == "storm")
    rates = sorted({r["rate"] for r in fan})
    fan_at = {rate: by_target(r for r in fan if r["rate"] == rate) for rate in rates}
    present = [t for t in TARGETS if any(r["target"] == t for r in results)]

    p = print
    p("# Benchmarks")
    p()
    p("Parlor against the two references a user would weigh it against, measured in **one run** of")
    p("`bench/run` on this machine: **Socket.IO 4** with `socket.io-msgpack-parser` (what most people")
    p("would pick instead) and a **raw floor** (`bench/peers/raw`: tokio + tungstenite, Parlor's wire")
    p("format, no actors, no registry, no limits, no heartbeat: about the least a WebSocket fan-out")
    p("can do). The load generator (`bench/`, `parlor-bench`) runs on the same 2 cores, so **CPU time")
    p("per delivery** (from /proc) is the figure that survives sharing the machine; the generator's")
    p("own CPU is shown beside it. Ratios are Parlor's figure divided by the peer's.")
    p()
    p("Regenerate everything on this page with `bench/run` (about 15 minutes). A delivery is one")
    p("event arriving at one client. Parlor runs with its rate limits off (`bench/run` sets")
    p("`PARLOR_RATE_LIMITS_*` to 0): the peers have none, and a saturating sender goes far past the")
    p("200 frames/s a session may send by default. At 6 frames/s per sender, under the limits, turning")
    p("them on changed nothing measurable (see the note on issue 5).")
    p()
    p("## Machine")
    p()
    p(table(["", ""], machine()))
    p()

    # Targets.
    def get(d, t, *keys):
        v = d.get(t)
        for k in keys:
            if v is None:
                return None
            v = v.get(k)
        return v

    checks = []
    if 6.0 in fan_at:
        f = fan_at[6.0]
        pc, sc, rc = (get(f, t, "server_cpu_us_per_delivery") for t in ("parlor", "socketio", "raw"))
        checks.append(("server CPU per delivery at 147k offered ≤ ⅓ Socket.IO's", f"{fmt(pc, '{:.2f}')} vs {fmt(sc, '{:.2f}')} µs ({ratio(pc, sc)})", pc is not None and sc and pc <= sc / 3))
        checks.append(("… and ≤ 1.5× the raw floor's", f"{fmt(pc, '{:.2f}')} vs {fmt(rc, '{:.2f}')} µs ({ratio(pc, rc)})", pc is not None and rc and pc <= 1.5 * rc))
    if sat:
        pa, sa = get(sat, "parlor", "achieved_per_sec"), get(sat, "socketio", "achieved_per_sec")
        checks.append(("saturation deliveries/s ≥ 2.5× Socket.IO's", f"{fmt(pa)} vs {fmt(sa)} ({ratio(pa, sa)})", pa is not None and sa and pa >= 2.5 * sa))
    if 2.0 in fan_at:
        f = fan_at[2.0]
        loss = get(f, "parlor", "loss")
        checks.append(("zero loss at 49k offered", f"{fmt(loss * 100 if loss is not None else None, '{:.4f}')}%", loss == 0))
        for q, name in (("p99", "p99"), ("p999", "p99.9")):
            a, b = get(f, "parlor", "latency_us", q), get(f, "socketio", "latency_us", q)
            checks.append((f"{name} at 49k offered ≤ ⅓ Socket.IO's", f"{fmt(a)} vs {fmt(b)} µs ({ratio(a, b)})", a is not None and b and a <= b / 3))
    if big:
        a, b = get(big, "parlor", "latency_us", "p99"), get(big, "socketio", "latency_us", "p99")
        checks.append(("big room p99 ≤ ⅓ Socket.IO's", f"{fmt(a)} vs {fmt(b)} µs ({ratio(a, b)})", a is not None and b and a <= b / 3))
    idle_max = max((r["connections"] for r in idle), default=0)
    if idle_max:
        idle_at = by_target(r for r in idle if r["connections"] == idle_max)
        a, b = get(idle_at, "parlor", "rss_per_connection"), get(idle_at, "socketio", "rss_per_connection")
        checks.append((f"idle RSS per connection ≤ ½ Socket.IO's ({idle_max:,} connections)", f"{fmt(a and a / 1024, '{:.2f}')} vs {fmt(b and b / 1024, '{:.2f}')} KiB ({ratio(a, b)})", a is not None and b and a <= b / 2))
        checks.append((f"{idle_max:,} concurrent connections on one node", "held" if "parlor" in idle_at else "not run", "parlor" in idle_at))
    p("## The targets")
    p()
    p(table(["target", "measured here", "met"], [(n, m, "yes" if ok else "**no**") for n, m, ok in checks]))
    p()

    # Idle memory.
    p("## Idle connections: memory")
    p()
    p("Each client connects, joins a room of 50, and stays idle; the server's RSS is read before the")
    p("first connection and after all joined plus a settle time (Socket.IO runs with a forced GC every")
    p("second during these runs, so its figure is after GC settles).")
    p()
    sizes = sorted({r["connections"] for r in idle})
    rows = []
    for n in sizes:
        d = by_target(r for r in idle if r["connections"] == n)
        per = {t: get(d, t, "rss_per_connection") for t in present}
        rows.append([f"{n:,}"] + [fmt(per[t] and per[t] / 1024, "{:.2f}") for t in present] + [ratio(per.get("parlor"), per.get("socketio")), ratio(per.get("parlor"), per.get("raw"))])
    p(table(["connections"] + [f"{LABEL[t]} KiB/conn" for t in present] + ["Parlor / Socket.IO", "Parlor / floor"], rows))
    p()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(present))
    for i, t in enumerate(present):
        ys = [(get(by_target(r for r in idle if r["connections"] == n), t, "rss_per_connection") or 0) / 1024 for n in sizes]
        ax.bar([x + i * width for x in range(len(sizes))], ys, width, label=LABEL[t], color=COLOR[t])
    ax.set_xticks([x + width * (len(present) - 1) / 2 for x in range(len(sizes))], [f"{n:,}" for n in sizes])
    ax.set_xlabel("idle connections")
    ax.set_ylabel("server RSS per connection (KiB)")
    ax.set_title("Memory per idle connection (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{CHARTS}/memory.png", dpi=110)
    p("![memory per connection](bench/charts/memory.png)")
    p()

    # Fan-out at rates.
    p("## Fan-out: 10 rooms × 50 members, 64-byte payload, every member sending")
    p()
    for rate in rates:
        f = fan_at[rate]
        offered = next((r["offered_per_sec"] for r in f.values()), 0)
        p(f"### {rate:g} msg/s per member ({offered:,.0f} offered deliveries/s)")
        p()
        rows = []
        for t in present:
            r = f.get(t)
            if not r:
                continue
            l = r["latency_us"]
            rows.append([LABEL[t], f"{r['achieved_per_sec']:,.0f}", f"{r['loss'] * 100:.3f}%", l["p50"], l["p99"], l["p999"], l["max"], fmt(r["server_cpu_us_per_delivery"], "{:.2f}"), fmt(r["generator_cpu_us_per_delivery"], "{:.2f}")])
        p(table(["target", "achieved/s", "loss", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "server CPU µs/delivery", "generator CPU µs/delivery"], rows))
        p()
        pc = get(f, "parlor", "server_cpu_us_per_delivery")
        p(f"Parlor's server CPU per delivery: {ratio(pc, get(f, 'socketio', 'server_cpu_us_per_delivery'))} Socket.IO's, {ratio(pc, get(f, 'raw', 'server_cpu_us_per_delivery'))} the floor's. p99: {ratio(get(f, 'parlor', 'latency_us', 'p99'), get(f, 'socketio', 'latency_us', 'p99'))} Socket.IO's.")
        p()
    # Saturation.
    if sat:
        p("## Saturation: the most deliveries/s each server sustains")
        p()
        p("Same rooms; every member sends as fast as it can with 4 of its own messages in flight (the")
        p("server echoes each message to its sender too, which paces the window, so one message is 50")
        p("deliveries).")
        p()
        rows = []
        for t in present:
            r = sat.get(t)
            if r:
                l = r["latency_us"]
                rows.append([LABEL[t], f"{r['achieved_per_sec']:,.0f}", l["p50"], l["p99"], fmt(r["server_cpu_us_per_delivery"], "{:.2f}"), fmt(r["server_cpu_seconds"] and r["server_cpu_seconds"] / r["seconds"], "{:.2f}"), fmt(r["generator_cpu_seconds"] and r["generator_cpu_seconds"] / r["seconds"], "{:.2f}")])
        p(table(["target", "deliveries/s", "p50 µs", "p99 µs", "server CPU µs/delivery", "server cores busy", "generator cores busy"], rows))
        p()
        p(f"Parlor: {ratio(get(sat, 'parlor', 'achieved_per_sec'), get(sat, 'socketio', 'achieved_per_sec'))} Socket.IO's deliveries/s, {ratio(get(sat, 'parlor', 'achieved_per_sec'), get(sat, 'raw', 'achieved_per_sec'))} the floor's.")
        p()
    # Achieved vs offered chart.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # Parlor last, so that where the lines coincide its line is the one on top.
    for t in sorted(present, key=lambda t: t == "parlor"):
        xs = [fan_at[rate][t]["offered_per_sec"] for rate in rates if t in fan_at[rate]]
        ys = [fan_at[rate][t]["achieved_per_sec"] for rate in rates if t in fan_at[rate]]
        big_marker = 8 if t == "parlor" else 5
        ax.plot(xs, ys, marker="o", markersize=big_marker, label=LABEL[t], color=COLOR[t])
        if t in sat:
            ax.axhline(sat[t]["achieved_per_sec"], color=COLOR[t], linestyle=":", linewidth=1)
    top = max([r["offered_per_sec"] or 0 for r in fan] + [1])
    low = min([r["offered_per_sec"] or top for r in fan] + [top]) / 1.5
    line = [low * (top / low) ** (i / 50) for i in range(51)]
    ax.plot(line, line, color="black", linewidth=0.5, linestyle="--", label="achieved = offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s (log)")
    ax.set_ylabel("achieved deliveries/s (log)")
    ax.set_title("Achieved vs offered (dotted: saturation)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{CHARTS}/throughput.png", dpi=110)
    p("![achieved vs offered](bench/charts/throughput.png)")
    p()
    # Latency chart.
    fig, axes = plt.subplots(1, max(1, len(rates)), figsize=(4 * max(1, len(rates)), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        qs = ["p50", "p99", "p999"]
        width = 0.8 / max(1, len(present))
        for i, t in enumerate(present):
            r = fan_at[rate].get(t)
            ys = [r["latency_us"][q] / 1000 if r else 0 for q in qs]
            ax.bar([x + i * width for x in range(3)], ys, width, label=LABEL[t], color=COLOR[t])
        ax.set_xticks([x + width * (len(present) - 1) / 2 for x in range(3)], ["p50", "p99", "p99.9"])
        ax.set_yscale("log")
        ax.set_title(f"{rate:g} msg/s per member")
        ax.set_ylabel("latency (ms, log)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(f"{CHARTS}/latency.png", dpi=110)
    p("![latency percentiles](bench/charts/latency.png)")
    p()
    # Big room.
    if big:
        p("## Big room: 1 room × 1,000 members, one sender at 20 msg/s")
        p()
        rows = []
        for t in present:
            r = big.get(t)
            if r:
                l = r["latency_us"]
                rows.append([LABEL[t], f"{r['achieved_per_sec']:,.0f}", f"{r['loss'] * 100:.3f}%", l["p50"], l["p99"], l["p999"], l["max"], fmt(r["server_cpu_us_per_delivery"], "{:.2f}")])
        p(table(["target", "achieved/s", "loss", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "server CPU µs/delivery"], rows))
        p()
    # Storm.
    if storm:
        p("## Connection storm: clients connect and join all at once")
        p()
        rows = [[LABEL[t], f"{storm[t]['connections']:,}", storm[t]["failures"], f"{storm[t]['seconds_to_all_joined']:.2f}", f"{storm[t]['connects_per_sec']:,.0f}"] for t in present if t in storm]
        p(table(["target", "clients", "failed", "seconds to all joined", "connects+joins/s"], rows))
        p()
    analysis = "bench/ANALYSIS.md"
    if os.path.exists(analysis):
        p(open(analysis).read().rstrip())
        p()
    # bench/cluster's section, from its own run.
    cluster = "bench/CLUSTER.md"
    if os.path.exists(cluster):
        p("<!-- cluster -->")
        p(open(cluster).read().rstrip())
        p("<!-- /cluster -->")
        p()
    # Sections kept by hand from other scripts' runs (bench/games, bench/documents, the
    # cluster's analysis): bench/run does not rerun them, so it must not drop them.
    sections = "bench/SECTIONS.md"
    if os.path.exists(sections):
        p(open(sections).read().rstrip())
        p()
    p("## How these numbers were made")
    p()
    p("```sh")
    p("bench/run    # builds in release, installs the Socket.IO peer with npm, runs everything below")
    p("```")
    p()
    p("Each line below ran against a fresh server process (`target/release/parlor`,")
    p("`target/release/parlor-raw-floor`, `node bench/peers/socketio/server.js`), with")
    p(f"`parlor-bench --name T --proto P --addr 127.0.0.1:PORT --server-pid PID` and `{durations}` for fan-out runs:")
    p()
    p("```")
    for line in open("bench/results/log.txt"):
        if line.startswith("== ") and ":" in line:
            p(line.strip()[3:])
    p("```")
    p()
    p("Raw results: `bench/results/results.jsonl` (not committed; rerun to get yours).")


if __name__ == "__main__":
    main()
