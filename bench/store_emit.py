#!/usr/bin/env python3
"""Redis's own time per emit in `store.lua`'s `parlor_emit`, alone (no nodes, no subscribers):

    python3 bench/store_emit.py [EMITS_PER_CALL,...]      (default 1,10,50)

Starts a scratch `redis-server` on port 18300, loads `src/cluster/store.lua`, makes one room
whose 50 members emit 100-byte frames (the room keeps 1,000 frames), sends pipelined `FCALL`s
of N emits each (as the link joins a room's emits) and prints Redis's `INFO commandstats`
time per emit. Needs python3-msgpack.
"""
import os
import socket
import subprocess
import sys
import time
import uuid

import msgpack

PORT = 18300
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            arg = str(arg)
        if isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def main():
    per_call = [int(n) for n in (sys.argv[1] if len(sys.argv) > 1 else "1,10,50").split(",")]
    server = subprocess.Popen(
        ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", PORT))
                break
            except OSError:
                time.sleep(0.05)
        reader = sock.makefile("rb")

        def read():
            line = reader.readline()
            kind, rest = line[:1], line[1:-2]
            if kind in b"+-:":
                if kind == b"-":
                    raise RuntimeError(rest.decode())
                return rest
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else reader.read(n + 2)[:-2]
            if kind == b"*":
                return [read() for _ in range(max(int(rest), 0))]
            raise RuntimeError(line)

        def call(*args):
            sock.sendall(resp(*args))
            return read()

        call("FUNCTION", "LOAD", "REPLACE", open(os.path.join(ROOT, "src/cluster/store.lua")).read())
        room, members, log = "p:{r:x}:room:a", "p:{r:x}:members:a", "p:{r:x}:log:a"
        ids = [str(uuid.uuid4()) for _ in range(50)]
        call("HSET", room, "next", 0, "hist", "1", "ck", "x")
        call("SADD", members, *ids)
        common = msgpack.packb({"keep": 1000, "head": "p:{r:x}:c:1:a:"})
        body = bytes(range(1, 100)) + b"\0"
        for n in per_call:
            emits = [
                msgpack.packb({"member": ids[i % 50], "skip": "", "body": body}, use_bin_type=False)
                for i in range(n)
            ]
            one = resp("FCALL", "parlor_emit", 3, room, members, log, common, *emits)
            calls = max(20000 // n, 200) // 100 * 100
            call("CONFIG", "RESETSTAT")
            for _ in range(calls // 100):
                sock.sendall(one * 100)
                for _ in range(100):
                    answer = read()
            assert answer[0][0] == b"ok", answer
            stats = call("INFO", "commandstats").decode()
            line = next(l for l in stats.split("\r\n") if l.startswith("cmdstat_fcall"))
            usec = float(line.split("usec=")[1].split(",")[0])
            print(f"{n:>3} emits per call: {usec / (calls * n):.2f} µs per emit ({calls} calls)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
