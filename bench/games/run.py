#!/usr/bin/env python3
"""bench/games: ROOMS example arenas x 4 bots at 20 ticks a second, on Parlor (the `games`
example, release) and on Colyseus 0.18 (colyseus-arena.mjs, the same rules), one after the
other on this machine, ROUNDS times alternating. For each: tick lateness p50/p99 (how long
after its due time a tick starts, from each server's histogram over the measured window),
the server's CPU (all its threads) and its memory per room (RSS over the bots' window less
RSS before any bot, per room, the room's four connections included), and what the bots
heard. Writes bench/results/games.json and prints a Markdown table.

    bench/games/run [ROOMS] [SECONDS] [ROUNDS]
"""
import json, os, re, signal, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "bench", "games")
ROOMS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
sys.path.insert(0, os.path.join(ROOT, "bench"))
from procstat import cpu_seconds, rss_bytes  # noqa: E402


def percentile(bounds, counts, q):
    """The q-quantile of a histogram, interpolated linearly inside its bucket."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for i, n in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1] * 2
        if seen + n >= rank and n > 0:
            return lower + (upper - lower) * (rank - seen) / n
        seen, lower = seen + n, upper
    return bounds[-1]


def parlor_histogram(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    bounds, cumulative = [], []
    for m in re.finditer(r'parlor_logic_tick_lateness_seconds_bucket\{le="([^"]+)"\} (\d+)', text):
        if m.group(1) != "+Inf":
            bounds.append(float(m.group(1)))
        cumulative.append(int(m.group(2)))
    counts = [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]
    return {"bounds": bounds, "counts": counts}


def colyseus_histograms(pid, path):
    """The counts the Colyseus server last wrote (it writes them every half second)."""
    for _ in range(50):
        try:
            if os.path.getmtime(path) > time.time() - 1:
                return json.load(open(path))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("colyseus wrote no lateness")


def delta(before, after):
    return {"bounds": after["bounds"], "counts": [a - b for a, b in zip(after["counts"], before["counts"])]}


def summary(h):
    ms = lambda v: None if v is None else round(v * 1000, 2)
    return {"p50_ms": ms(percentile(h["bounds"], h["counts"], 0.5)),
            "p99_ms": ms(percentile(h["bounds"], h["counts"], 0.99)),
            "ticks": sum(h["counts"])}


def run(target, port):
    env = dict(os.environ)
    if target == "parlor":
        env["PARLOR_RATE_LIMITS_CONNECTIONS_PER_IP_PER_SECOND"] = "0"
        env["RUST_LOG"] = "warn"
        server = subprocess.Popen([os.path.join(ROOT, "target/release/examples/games"), f"127.0.0.1:{port}"],
                                  env=env, stdout=subprocess.DEVNULL)
        url = f"ws://127.0.0.1:{port}/ws"
    else:
        out = f"/tmp/parlor-bench-colyseus-{port}.json"
        env.update(PORT=str(port), LATENESS_OUT=out)
        server = subprocess.Popen(["node", os.path.join(HERE, "colyseus-arena.mjs")], env=env,
                                  stdout=open(f"/tmp/parlor-bench-colyseus-{port}.log", "w"), stderr=subprocess.STDOUT, cwd=HERE)
        url = f"ws://127.0.0.1:{port}"
    time.sleep(2)
    rss_before = rss_bytes(server.pid)
    bots = subprocess.Popen(["node", os.path.join(HERE, "bots.mjs"), target, url, str(ROOMS), str(SECONDS), "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    line = bots.stderr.readline()
    if "measuring" not in line:
        server.kill()
        raise RuntimeError(f"{target}: bots did not start: {line}{bots.stderr.read()}")
    began = time.time()
    cpu0 = cpu_seconds(server.pid)
    h0 = parlor_histogram(port) if target == "parlor" else colyseus_histograms(server.pid, out)
    time.sleep(SECONDS - 1)
    cpu1 = cpu_seconds(server.pid)
    h1 = parlor_histogram(port) if target == "parlor" else colyseus_histograms(server.pid, out)
    window = time.time() - began
    rss = rss_bytes(server.pid)
    report = json.loads(bots.stdout.readline())
    bots.wait()
    server.terminate()
    server.wait()
    result = {
        "target": target,
        "rooms": ROOMS,
        "server_cpu_percent": round((cpu1 - cpu0) / window * 100, 1),
        "memory_per_room_kib": round((rss - rss_before) / ROOMS / 1024, 1),
        "rss_mib": round(rss / 2**20, 1),
        "bots": report,
    }
    if target == "parlor":
        result["lateness"] = summary(delta(h0, h1))
    else:
        result["lateness"] = summary(delta(h0["schedule"], h1["schedule"]))
        result["interval_lateness"] = summary(delta(h0["interval"], h1["interval"]))
    print(json.dumps(result), file=sys.stderr)
    return result


results = []
for r in range(ROUNDS):
    for target in os.environ.get("TARGETS", "parlor colyseus").split()[:: 1 if r % 2 == 0 else -1]:
        results.append(run(target, 18000 + len(results)))
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"rooms": ROOMS, "seconds": SECONDS, "rounds": ROUNDS, "results": results},
          open(os.path.join(ROOT, "bench", "results", os.environ.get("GAMES_OUT", "games.json")), "w"), indent=1)
print(f"| server | round | tick lateness p50 / p99 (ms) | server CPU (% of a core) | memory per room (KiB) | worlds heard / expected per s | bots' CPU |")
print("|---|---|---|---|---|---|---|")
for i, res in enumerate(results):
    late = res["lateness"]
    extra = ""
    if "interval_lateness" in res:
        il = res["interval_lateness"]
        extra = f" (against its timer: {il['p50_ms']} / {il['p99_ms']})"
    b = res["bots"]
    print(f"| {res['target']} | {i // 2 + 1} | {late['p50_ms']} / {late['p99_ms']}{extra} | {res['server_cpu_percent']} | "
          f"{res['memory_per_room_kib']} | {b['worlds_per_second']:.0f} / {b['expected_worlds_per_second']} | {b['bots_cpu_percent']:.0f}% |")
