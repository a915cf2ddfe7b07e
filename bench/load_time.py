#!/usr/bin/env python3
"""Startup time with data: N keys saved by redis-server into one dump.rdb, then loaded by
redis-server (its own "DB loaded from disk" log line) and by shardd (a foreign dump: every
worker keeps its slots; then from shardd's own per-worker files), and the same from an AOF
(appendonly turned on by CONFIG SET, so with the default RDB preamble) on both servers.

Usage: python3 bench/load_time.py [--keys 1000000] [--workers 2]
Starts and stops its own servers (by PID); needs /usr/bin/redis-server.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from server import Server, free_port, tcp, wait_answering  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"


def start_redis(workdir: str, logfile: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                             "--save", "", "--appendonly", "no", "--logfile", logfile])
    if not wait_answering(proc, tcp(port, timeout=1), 120, (b"+PONG", b"-LOADING")):
        proc.kill()
        raise RuntimeError("redis-server did not start")
    return proc, port


def fill_redis(port: int, n: int) -> None:
    r = redis.Redis(port=port)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"key:{i}", f"value:{i}")
        if i % 10000 == 9999:
            pipe.execute()
    pipe.execute()


def wait_keys(port: int, n: int, timeout: float = 600) -> float:
    r = redis.Redis(port=port, socket_timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if r.dbsize() >= n:
                return time.monotonic()
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        time.sleep(0.01)
    raise RuntimeError("keys did not appear in time")


def wait_aof_rewritten(client: redis.Redis, timeout: float = 600) -> None:
    """Until the AOF that appendonly yes started has been written."""
    deadline = time.monotonic() + timeout
    time.sleep(0.2)
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.05)
    raise RuntimeError("the AOF rewrite did not finish in time")


def redis_load_seconds(logfile: str) -> float:
    match = re.search(r"DB loaded from disk: ([0-9.]+) seconds", Path(logfile).read_text())
    return float(match.group(1)) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="shardd-load-")
    try:
        rdir, sdir = os.path.join(work, "redis"), os.path.join(work, "shardd")
        os.makedirs(rdir)
        os.makedirs(sdir)
        proc, port = start_redis(rdir, os.path.join(work, "fill.log"))
        fill_redis(port, args.keys)
        redis.Redis(port=port).save()
        proc.kill()
        proc.wait()
        size = os.path.getsize(os.path.join(rdir, "dump.rdb"))
        rdb_copy = os.path.join(work, "dump.rdb")
        shutil.copy(os.path.join(rdir, "dump.rdb"), rdb_copy)

        log = os.path.join(work, "load.log")
        started = time.monotonic()
        proc, port = start_redis(rdir, log)
        redis_wall = wait_keys(port, args.keys) - started
        proc.kill()
        proc.wait()

        # The same data as an AOF (redis-server writes it when appendonly is turned on).
        aof_log = os.path.join(work, "aof.log")
        proc, port = start_redis(rdir, os.path.join(work, "convert.log"))
        wait_keys(port, args.keys)
        r = redis.Redis(port=port)
        r.config_set("appendonly", "yes")
        wait_aof_rewritten(r)
        proc.kill()
        proc.wait()
        os.unlink(os.path.join(rdir, "dump.rdb"))
        started = time.monotonic()
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", rdir,
                                 "--save", "", "--appendonly", "yes", "--logfile", aof_log])
        redis_aof_wall = wait_keys(port, args.keys) - started
        proc.kill()
        proc.wait()

        shutil.copy(rdb_copy, os.path.join(sdir, "dump.rdb"))
        results = []
        for label, extra in (("foreign dump.rdb", ()), ("own shard files", ()),
                             ("own AOF files", ("--appendonly", "yes"))):
            started = time.monotonic()
            srv = Server(*extra, dir=sdir, workers=args.workers, wait=False)
            try:
                wall = wait_keys(srv.port, args.keys) - started
                if label == "foreign dump.rdb":
                    srv.client().save()
                elif label == "own shard files":
                    client = srv.client()
                    client.config_set("appendonly", "yes")
                    wait_aof_rewritten(client)
            finally:
                srv.stop()
            results.append((label, wall))
        print(f"# {args.keys:,} string keys, dump.rdb {size / 1e6:.1f} MB, shardd with {args.workers} workers")
        print(f"redis-server (dump.rdb): loaded in {redis_load_seconds(log):.2f} s (its log), "
              f"{redis_wall:.2f} s from start to all keys visible")
        print(f"redis-server (AOF, RDB preamble): {redis_aof_wall:.2f} s from start to all keys visible")
        for label, wall in results:
            base = redis_aof_wall if "AOF" in label else redis_wall
            print(f"shardd ({label}): {wall:.2f} s from start to all keys visible "
                  f"({wall / base:.1f}x redis-server's)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
