#!/usr/bin/env python3
"""Writes bench/CLUSTER.md, the cluster section of BENCHMARKS.md, from bench/cluster's results.

usage: bench/cluster_report.py bench/results/cluster.jsonl
"""
import json
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    out = []

    def p(line=""):
        out.append(line)

    p("## A three-node cluster against one node")
    p()
    p("`bench/cluster` runs the same fan-out (10 rooms × 50 members, every member sending, 64 B)")
    p("against one node and against three nodes sharing rooms through one `redis-server`, in one")
    p("run, alternating. The generator spreads clients over the three nodes in turn, so every room")
    p("has members on every node and every frame goes through Redis: the cluster's worst case.")
    p("Server CPU and memory are summed over every server process (one node; or three nodes and")
    p("Redis). All of it shares this machine's 2 cores with the generator, so this measures what")
    p("clustering costs, not how far it scales: on one machine three nodes can only add work.")
    p()
    for load, label in [("rate", "6 msg/s per member (147,000 offered deliveries/s)"), ("saturate", "saturating (4 in flight per sender)")]:
        picked = [r for r in rows if (r["rate"] is not None) == (load == "rate")]
        if not picked:
            continue
        p(f"### {label}")
        p()
        p("| target | round | deliveries/s | loss | latency p50 / p99 (ms) | server CPU per delivery (µs) | server RSS at end (MiB) |")
        p("|---|---|---|---|---|---|---|")
        seen = {}
        for r in picked:
            seen[r["target"]] = seen.get(r["target"], 0) + 1
            lat = r["latency_us"]
            p(f"| {r['target']} | {seen[r['target']]} | {r['achieved_per_sec']:,.0f} | {r['loss'] * 100:.3f}% | "
              f"{lat['p50'] / 1000:.1f} / {lat['p99'] / 1000:.1f} | {r['server_cpu_us_per_delivery']:.2f} | "
              f"{r['server_rss_end'] / 2**20:.1f} |")
        p()
        mean = lambda t, k: sum(r[k] for r in picked if r["target"] == t) / max(1, seen.get(t, 0))
        if "single" in seen and "cluster-3" in seen:
            p(f"Cluster ÷ single, means of the rounds: deliveries/s "
              f"{mean('cluster-3', 'achieved_per_sec') / mean('single', 'achieved_per_sec'):.2f}×, "
              f"server CPU per delivery "
              f"{mean('cluster-3', 'server_cpu_us_per_delivery') / mean('single', 'server_cpu_us_per_delivery'):.2f}×.")
            p()
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
