#!/usr/bin/env python3
"""Memory per stream entry and stream speed: shardd against Debian's redis-server.

For each entry shape, starts redis-server and shardd (1 worker: a stream is one key, on one
worker) afresh on free ports, each in a temporary directory with no persistence, appends N
entries to one stream with pipelined XADD (generated IDs), then reports:

- bytes per entry: redis-server's growth of INFO used_memory; shardd's growth of the RSS of
  its processes (psutil: everything the worker's Python heap and allocator hold), and, as a
  cross-check without allocator slack, the Python heap a `Stream` of the same entries takes in
  this process (tracemalloc);
- load time, and reads: random `XRANGE key id + COUNT 10` and `XREVRANGE … COUNT 10` per second
  (one client, pipelined by 100) on the full stream, which shows range reads stay fast with
  N entries.

Usage: python3 bench/stream_memory.py [--n N] [--batch B] [--shapes small,event]
Only the processes this script started are stopped at the end.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memory import REDIS_SERVER, Started, start_redis, start_shardd  # noqa: E402

from shardd.worker.t_stream import Stream  # noqa: E402

SHAPES = {
    "small": lambda i: ["n", str(i)],                                            # one field, an integer
    "event": lambda i: ["user", f"user-{i % 5000}", "action", "page-view",       # three short fields
                        "path", f"/articles/{i % 977}/comments"],
}
KEY = "bench:stream"


def rss(server: Started) -> int:
    """Resident bytes of the server's process and every process it started."""
    return server.summed(lambda proc: proc.memory_info().rss)


def footprint(server: Started) -> int:
    return server.used_memory() if server.name == "redis-server" else rss(server)


def load(server: Started, shape, n: int, batch: int) -> float:
    client = server.client
    began = time.monotonic()
    for start in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            pipe.execute_command("XADD", KEY, "*", *shape(i))
        pipe.execute()
    return time.monotonic() - began


def reads_per_second(server: Started, rounds: int = 20, per_round: int = 100) -> tuple[float, float]:
    """Random forward and backward 10-entry range reads per second."""
    client = server.client
    first = client.xrange(KEY, count=1)[0][0]
    last = client.xrevrange(KEY, count=1)[0][0]
    low, high = int(first.split(b"-")[0]), int(last.split(b"-")[0])
    rng = random.Random(7)
    rates = []
    for command in ("XRANGE", "XREVRANGE"):
        began = time.monotonic()
        for _ in range(rounds):
            pipe = client.pipeline(transaction=False)
            for _ in range(per_round):
                ms = rng.randint(low, high)
                if command == "XRANGE":
                    pipe.execute_command("XRANGE", KEY, ms, "+", "COUNT", 10)
                else:
                    pipe.execute_command("XREVRANGE", KEY, ms, "-", "COUNT", 10)
            assert all(len(reply) <= 10 for reply in pipe.execute())
        rates.append(rounds * per_round / (time.monotonic() - began))
    return rates[0], rates[1]


def in_process_bytes(shape, n: int) -> float:
    """The Python heap one Stream of n such entries takes here (no server, no allocator slack)."""
    gc.collect()
    tracemalloc.start()
    s = Stream()
    base = 1_700_000_000_000
    for i in range(n):
        s.append((base + i // 50, i % 50), [x.encode() for x in shape(i)], 4096, 100)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / n


def measure(server: Started, shape: str, n: int, batch: int) -> tuple:
    """(bytes per entry, load seconds, XRANGE/s, XREVRANGE/s, nodes) on a fresh server: RSS
    only grows for memory the process never had, so each shape gets a new one."""
    time.sleep(0.5)
    before = footprint(server)
    seconds = load(server, SHAPES[shape], n, batch)
    time.sleep(0.5)
    after = footprint(server)
    reads_per_second(server, rounds=2)                      # warm up
    forward, backward = reads_per_second(server)
    nodes = server.client.xinfo_stream(KEY)["radix-tree-keys"]
    print(f"  {server.name}: {shape}: {n} entries in {seconds:.1f} s, {(after - before) / n:.1f} B/entry, "
          f"{nodes} nodes, XRANGE {forward:.0f}/s, XREVRANGE {backward:.0f}/s", file=sys.stderr)
    return (after - before) / n, seconds, forward, backward, nodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="entries per shape (default 1000000)")
    parser.add_argument("--batch", type=int, default=1000, help="XADDs per pipeline")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="entry shapes: " + ", ".join(SHAPES))
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    results: dict[str, dict] = {"redis": {}, "shardd": {}}
    with tempfile.TemporaryDirectory(prefix="shardd-stream-memory-") as workdir:
        for shape in shapes:
            for name, starter in (("redis", lambda d: start_redis(d)), ("shardd", lambda d: start_shardd(d, 1))):
                directory = os.path.join(workdir, f"{name}-{shape}")
                os.makedirs(directory)
                server = starter(directory)
                try:
                    results[name][shape] = measure(server, shape, args.n, args.batch)
                finally:
                    server.stop()
    heap = {shape: in_process_bytes(SHAPES[shape], args.n) for shape in shapes}
    version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout.split()
    redis_version = version[2].removeprefix("v=") if len(version) > 2 else "?"
    print(f"N = {args.n} entries per stream; redis-server {redis_version}; "
          f"shardd with 1 worker (RSS growth) and a Stream in-process (tracemalloc)")
    print(f"{'shape':<6} {'redis B/e':>10} {'shardd B/e':>11} {'ratio':>6} {'heap B/e':>9} {'redis load':>11} "
          f"{'shardd load':>12} {'redis XRANGE/s':>15} {'shardd XRANGE/s':>16} {'redis XREV/s':>13} "
          f"{'shardd XREV/s':>14}")
    for shape in shapes:
        r = results["redis"][shape]
        s = results["shardd"][shape]
        print(f"{shape:<6} {r[0]:>10.1f} {s[0]:>11.1f} {s[0] / r[0]:>5.1f}x {heap[shape]:>9.1f} {r[1]:>10.1f}s "
              f"{s[1]:>11.1f}s {r[2]:>15.0f} {s[2]:>16.0f} {r[3]:>13.0f} {s[3]:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
