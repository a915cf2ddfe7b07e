#!/usr/bin/env python3
"""What cross-shard atomicity costs: single-shard vs cross-shard MSET, MGET and MULTI/EXEC.

Starts redis-server and shardd (2 workers) on free ports and runs, interleaved round by round
so both servers see the same machine conditions:

* redis-benchmark with explicit commands: `MSET {a}x v {b}x v` (keys on both shardd workers:
  the coordinator's path) against `MSET {a}x v {a}y v` (one worker), and the same for MGET;
* MULTI/EXEC, timed with redis-py pipelines (transaction=True) in client processes, since
  redis-benchmark cannot express a transaction: `SET {a}x v` + `SET {b}x v` (across workers)
  against `SET {a}x v` + `SET {a}y v` (one worker).

Reports the median ops/s per (test, server), shardd/redis, and cross/single per server.

Usage: python3 bench/cross_shard.py [--quick] [--rounds N] [--requests N] [--transactions N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import (REDIS_BENCHMARK, REDIS_SERVER, Server, command, cpu_delta, cpu_snapshot,
                     parse_rps, redis_server, shardd_server)

WORKERS = 2
# With 2 workers slots 0-8191 are worker 0's, 8192-16383 worker 1's: {a} → 1, {b} → 0.
A, B = "{a}", "{b}"

# (name, kind, command or keys): "bench" runs redis-benchmark with the command;
# "multi" times MULTI / SET k1 v / SET k2 v / EXEC.
TESTS = [
    ("mset cross", "bench", ["MSET", A + "x", "v", B + "x", "v"]),
    ("mset single", "bench", ["MSET", A + "x", "v", A + "y", "v"]),
    ("mget cross", "bench", ["MGET", A + "x", B + "x"]),
    ("mget single", "bench", ["MGET", A + "x", A + "y"]),
    ("multi/exec cross", "multi", [A + "x", B + "x"]),
    ("multi/exec single", "multi", [A + "x", A + "y"]),
]


def slot_worker(key: str) -> int:
    import binascii
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return 0 if (binascii.crc_hqx(raw, 0) & 16383) < 8192 else 1


def bench_argv(port: int, cmd: list[str], requests: int, clients: int, pipeline: int) -> list[str]:
    argv = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
            "-n", str(requests), "--csv"]
    return argv + (["-P", str(pipeline)] if pipeline > 1 else []) + cmd


def run_benchmark(server: Server, cmd: list[str], args) -> tuple[float | None, float | None, str | None]:
    procs = server.processes()
    before = cpu_snapshot(procs)
    try:
        res = subprocess.run(bench_argv(server.port, cmd, args.requests, args.clients, args.pipeline),
                             capture_output=True, text=True, timeout=args.timeout)
        cpu = cpu_delta(before, cpu_snapshot(procs))
        if res.returncode != 0:
            return None, None, f"exit {res.returncode}: {res.stderr.strip()[-300:]}"
        return parse_rps(res.stdout), cpu * 1e6 / args.requests, None
    except subprocess.TimeoutExpired:
        return None, None, f"redis-benchmark timed out after {args.timeout:g}s"
    except ValueError as exc:
        return None, None, str(exc)


def _transactions(port: int, keys: list[str], n: int, start: multiprocessing.Event) -> None:
    import redis
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
    pipe = c.pipeline(transaction=True)
    c.ping()
    start.wait(30)
    for i in range(n):
        pipe.set(keys[0], i)
        pipe.set(keys[1], i)
        if pipe.execute() != [True, True]:
            raise SystemExit(3)
    c.close()


def run_transactions(server: Server, keys: list[str], args) -> tuple[float | None, float | None, str | None]:
    """N MULTI/EXEC transactions split over `--tx-clients` client processes; transactions/s."""
    per = max(1, args.transactions // args.tx_clients)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    workers = [ctx.Process(target=_transactions, args=(server.port, keys, per, start))
               for _ in range(args.tx_clients)]
    for w in workers:
        w.start()
    time.sleep(0.3)                       # let every client connect before the clock starts
    procs = server.processes()
    before = cpu_snapshot(procs)
    began = time.perf_counter()
    start.set()
    deadline = time.monotonic() + args.timeout
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - began
    cpu = cpu_delta(before, cpu_snapshot(procs))
    stuck = [w for w in workers if w.is_alive()]
    for w in stuck:
        w.kill()                          # our own client processes
        w.join(5)
    if stuck:
        return None, None, f"transactions timed out after {args.timeout:g}s"
    if any(w.exitcode for w in workers):
        return None, None, f"a client failed (exit codes {[w.exitcode for w in workers]})"
    total = per * args.tx_clients
    return total / elapsed, cpu * 1e6 / total, None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=None, help="rounds; medians are reported (default 3)")
    p.add_argument("--requests", type=int, default=None, help="requests per redis-benchmark run (default 100000)")
    p.add_argument("--clients", type=int, default=50, help="redis-benchmark connections (-c, default 50)")
    p.add_argument("--pipeline", type=int, default=1, help="redis-benchmark -P (default 1)")
    p.add_argument("--transactions", type=int, default=None, help="MULTI/EXEC per run (default 20000)")
    p.add_argument("--tx-clients", type=int, default=4, help="client processes for MULTI/EXEC (default 4)")
    p.add_argument("--io-threads", type=int, default=None, help="shardd --io-threads (default shardd's)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run (default 600)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 20000 requests, 2000 transactions")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.requests = args.requests or (20_000 if args.quick else 100_000)
    args.transactions = args.transactions or (2_000 if args.quick else 20_000)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if shutil.which(REDIS_BENCHMARK) is None or not os.access(REDIS_SERVER, os.X_OK):
        print("need redis-server and redis-benchmark (apt install redis-tools redis-server)", file=sys.stderr)
        return 2
    assert slot_worker(A + "x") == 1 and slot_worker(B + "x") == 0 and slot_worker(A + "y") == 1
    samples: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    failed = False
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="shardd-bench-") as tmp:
        servers = [redis_server(Path(tmp)), shardd_server(Path(tmp), WORKERS, args.io_threads)]
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready()
            for rnd in range(1, args.rounds + 1):
                for name, kind, spec in TESTS:
                    for server in servers:
                        command(server.port, "FLUSHALL")
                        if kind == "bench":
                            ops, cpu, error = run_benchmark(server, spec, args)
                        else:
                            ops, cpu, error = run_transactions(server, spec, args)
                        samples.setdefault((name, server.name), []).append((ops, cpu))
                        head = f"[round {rnd}] {name:<18} {server.name:<10}"
                        if error:
                            failed = True
                            print(f"{head} FAILED: {error}", file=sys.stderr, flush=True)
                        else:
                            print(f"{head} {ops:>10,.0f} ops/s  {cpu:7.2f} cpu µs/op", file=sys.stderr, flush=True)
        finally:
            for server in servers:
                server.stop()
    report([s.name for s in servers], samples, args, time.time() - started)
    return 1 if failed else 0


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(names: list[str], samples, args, elapsed: float) -> None:
    def ops(test: str, name: str) -> float | None:
        return median(o for o, _ in samples.get((test, name), []))

    def cpu(test: str, name: str) -> float | None:
        return median(c for _, c in samples.get((test, name), []))

    def fmt(v, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {os.cpu_count()} CPUs  rounds={args.rounds}  "
          f"redis-benchmark -n {args.requests} -c {args.clients} -P {args.pipeline}  "
          f"MULTI/EXEC: {args.transactions} x {args.tx_clients} client processes (redis-py)  "
          f"shardd {WORKERS} workers  elapsed {elapsed:.0f}s")
    print("# median ops/s; shardd/redis; µs/op = server CPU µs per operation")
    header = ["test"] + [f"{n} ops/s" for n in names] + [f"{names[1]}/{names[0]}"] + [f"{n} µs/op" for n in names]
    rows = []
    for test, _, _ in TESTS:
        o = [ops(test, n) for n in names]
        rows.append([test] + [fmt(v, ",.0f") for v in o]
                    + [fmt(o[1] / o[0] if o[0] and o[1] else None, ".2f")]
                    + [fmt(cpu(test, n), ".2f") for n in names])
    print_table(header, rows)
    print("# cross-shard / single-shard ops/s, per server")
    header = ["command"] + [f"{n} cross/single" for n in names]
    rows = []
    for base in ("mset", "mget", "multi/exec"):
        cells = []
        for n in names:
            c, s = ops(f"{base} cross", n), ops(f"{base} single", n)
            cells.append(fmt(c / s if c and s else None, ".2f"))
        rows.append([base] + cells)
    print_table(header, rows)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    sys.exit(main())
