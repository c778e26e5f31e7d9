#!/usr/bin/env python3
"""bench/documents: DOCS Yjs documents x 10 editors, each editor appending 5 times a second,
on Parlor (the release `parlor` binary, /yjs/{doc}, unchanged y-websocket providers) and on
Hocuspocus 4 (@hocuspocus/server, its own provider), one after the other on this machine,
ROUNDS times alternating. For each: the editors' latency p50/p99 (from a piece's stamp until
it is in another editor's document), the server's CPU (all threads) and memory per document
(RSS at the end less RSS before any editor, per document, its 10 connections included).
Writes bench/results/documents.json and prints a Markdown table.

    bench/documents/run [DOCS] [SECONDS] [ROUNDS]
"""
import json, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "bench", "documents")
DOCS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
sys.path.insert(0, os.path.join(ROOT, "bench"))
from procstat import cpu_seconds, rss_bytes  # noqa: E402


def run(target, port):
    env = dict(os.environ)
    store = tempfile.mkdtemp(prefix="parlor-bench-docs-")
    if target == "parlor":
        env.update(PARLOR_RATE_LIMITS_CONNECTIONS_PER_IP_PER_SECOND="0", PARLOR_STORE_DIR=store,
                   RUST_LOG="warn")
        server = subprocess.Popen([os.path.join(ROOT, "target/release/parlor"), "--bind", f"127.0.0.1:{port}"],
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(f"/tmp/parlor-bench-docs-{port}.log", "w"))
        url = f"ws://127.0.0.1:{port}/yjs"
    else:
        env.update(PORT=str(port))
        server = subprocess.Popen(["node", os.path.join(HERE, "hocuspocus.mjs")], env=env,
                                  stdout=subprocess.DEVNULL, cwd=HERE)
        url = f"ws://127.0.0.1:{port}"
    time.sleep(2)
    if server.poll() is not None:
        raise RuntimeError(f"{target}: the server exited ({server.returncode})")
    rss_before = rss_bytes(server.pid)
    # Lean writers (editors.mjs) unless LEAN=0: one process of full providers cannot send
    # 5,000 updates a second on this machine.
    editor_env = dict(os.environ)
    editor_env.setdefault("LEAN", "1")
    editors = subprocess.Popen(["node", "--no-warnings", os.path.join(HERE, "editors.mjs"), target, url, str(DOCS), str(SECONDS)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE, env=editor_env)
    line = editors.stderr.readline()
    while line and "measuring" not in line:
        line = editors.stderr.readline()
    if "measuring" not in line:
        server.kill()
        raise RuntimeError(f"{target}: editors did not start: {line}{editors.stderr.read()}")
    began, cpu0 = time.time(), cpu_seconds(server.pid)
    time.sleep(SECONDS - 1)
    cpu1, window = cpu_seconds(server.pid), time.time() - began
    rss = rss_bytes(server.pid)
    report = json.loads(editors.stdout.readline())
    editors.wait()
    server.terminate()
    server.wait()
    shutil.rmtree(store, ignore_errors=True)
    result = {
        "target": target,
        "server_cpu_percent": round((cpu1 - cpu0) / window * 100, 1),
        "memory_per_document_kib": round((rss - rss_before) / DOCS / 1024, 1),
        "editors": report,
    }
    print(json.dumps(result), file=sys.stderr)
    return result


results = []
for r in range(ROUNDS):
    for target in ["parlor", "hocuspocus"][:: 1 if r % 2 == 0 else -1]:
        results.append(run(target, 19000 + len(results)))
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"docs": DOCS, "seconds": SECONDS, "results": results},
          open(os.path.join(ROOT, "bench", "results", "documents.json"), "w"), indent=1)
print("| server | latency p50 / p99 (ms) | updates / s | pieces measured / due | server CPU (% of one core) | memory per document | editors' CPU |")
print("|---|---|---|---|---|---|---|")
for res in results:
    e = res["editors"]
    print(f"| {res['target']} | {e['p50_ms']:.2f} / {e['p99_ms']:.2f} | {e['updates_per_second']:.0f} | "
          f"{e['measured']} / {e['expected_measured']} | {res['server_cpu_percent']} | "
          f"{res['memory_per_document_kib']} KiB | {e['editors_cpu_percent']:.0f}% |")
