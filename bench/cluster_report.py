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
    p("run, alternating. `cluster-3` spreads the clients over the nodes one by one, so every room")
    p("has members on every node and every frame goes to all three: the worst case, and what a")
    p("load balancer without affinity gives. `cluster-3-by-room` puts each room's members on one")
    p("node (as a balancer hashing the room name would): frames still go through Redis, to one")
    p("node. Server CPU and memory are summed over every server process (one node; or three")
    p("nodes and Redis). Everything shares this machine's 2 cores with the generator, so this")
    p("measures what clustering costs per delivery, not how far it scales: on one machine three")
    p("nodes can only add work. Across machines, each node's share of the cost is what divides.")
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
        def mean(target, key):
            return sum(key(r) for r in picked if r["target"] == target) / seen[target]

        for cluster in ["cluster-3", "cluster-3-by-room"]:
            if "single" in seen and cluster in seen:
                rate = mean(cluster, lambda r: r["achieved_per_sec"]) / mean("single", lambda r: r["achieved_per_sec"])
                cpu = mean(cluster, lambda r: r["server_cpu_us_per_delivery"]) / mean("single", lambda r: r["server_cpu_us_per_delivery"])
                p50 = lambda t: mean(t, lambda r: r["latency_us"]["p50"]) / 1000
                p(f"`{cluster}` ÷ `single`, means of the rounds: deliveries/s {rate:.2f}×, server CPU per "
                  f"delivery {cpu:.2f}×; latency p50 {p50(cluster):.1f} ms against {p50('single'):.1f} ms.")
                p()
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
