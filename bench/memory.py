#!/usr/bin/env python3
"""Memory per key: shardd against Debian's redis-server, for small hashes, sets and sorted sets.

Starts redis-server and shardd (2 workers) on free ports, each in a temporary directory with no
persistence, loads N small hashes (5 fields), N small sets (5 members) and N small sorted sets
(5 members; skipped where ZADD is not implemented) with pipelined redis-py, and prints the bytes
per key each type added to INFO memory's used_memory, for both servers, and their ratio.

redis-server's used_memory counts its allocations; shardd's is the growth of its processes' RSS
since their first INFO (taken before loading), so it includes Python's object and allocator
overheads. The types are loaded one after another and each one's share is the delta.

Usage: python3 bench/memory.py [--n N] [--batch B] [--workers W]
Only the processes this script started are stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil
import redis

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
FIELDS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Started:
    """A server process this script started, with the children it spawns."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                      cwd=str(REPO))
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=120)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                output = self.log.read().decode(errors="replace")
                self.stop()
                raise RuntimeError(f"{name} did not start:\n{output}")
            time.sleep(0.1)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; the same for the children it started."""
        try:
            children = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            child.kill()
        self.client.close()
        self.log.close()


def start_redis(workdir: str) -> Started:
    port = free_port()
    return Started("redis-server", [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", workdir], port)


def start_shardd(workdir: str, workers: int) -> Started:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return Started("shardd", [sys.executable, "-m", "shardd", "--port", str(port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir,
                              "--worker-processes", str(workers)], port, env)


# -- the data ----------------------------------------------------------------------------------

def hash_command(i: int) -> list:
    args: list = ["HSET", f"hash:{i}"]
    for j in range(FIELDS):
        args += (f"field{j}", f"value-{i}-{j}")
    return args


def set_command(i: int) -> list:
    return ["SADD", f"set:{i}", *(f"member-{i}-{j}" for j in range(FIELDS))]


def zset_command(i: int) -> list:
    args: list = ["ZADD", f"zset:{i}"]
    for j in range(FIELDS):
        args += (j + 0.5, f"member-{i}-{j}")
    return args


TYPES: list[tuple[str, Callable[[int], list]]] = [
    ("hash", hash_command), ("set", set_command), ("zset", zset_command)]


def supported(client: redis.Redis, make: Callable[[int], list]) -> bool:
    """Does the server implement the command (an unknown-command error says no)?"""
    args = make(-1)
    try:
        client.execute_command(*args)
    except redis.ResponseError as exc:
        if "unknown command" in str(exc).lower():
            return False
        raise
    client.delete(args[1])
    return True


def load(client: redis.Redis, make: Callable[[int], list], n: int, batch: int) -> float:
    """Send n commands in pipelined batches; returns the seconds it took."""
    began = time.monotonic()
    for start in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            pipe.execute_command(*make(i))
        pipe.execute()
    return time.monotonic() - began


def measure(server: Started, n: int, batch: int) -> dict[str, tuple[float, float, bytes]]:
    """type → (bytes per key, load seconds, OBJECT ENCODING of a sample key)."""
    client = server.client
    client.flushall()
    results: dict[str, tuple[float, float, bytes]] = {}
    before = server.used_memory()          # on shardd this first INFO also sets the baseline
    for name, make in TYPES:
        if not supported(client, make):
            print(f"  {server.name}: {name} skipped ({make(0)[0]} is not implemented)", file=sys.stderr)
            continue
        seconds = load(client, make, n, batch)
        time.sleep(0.5)                    # let RSS figures settle
        after = server.used_memory()
        encoding = client.object("encoding", make(0)[1]) or b"?"
        results[name] = ((after - before) / n, seconds, encoding)
        print(f"  {server.name}: {name} {n} keys in {seconds:.1f} s, "
              f"{(after - before) / n:.0f} B/key ({encoding.decode()})", file=sys.stderr)
        before = after
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="keys per type (default 1000000)")
    parser.add_argument("--batch", type=int, default=1000, help="commands per pipeline")
    parser.add_argument("--workers", type=int, default=2, help="shardd worker processes")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="shardd-memory-") as workdir:
        for name, starter in (("redis", lambda: start_redis(os.path.join(workdir, "redis"))),
                              ("shardd", lambda: start_shardd(os.path.join(workdir, "shardd"),
                                                              args.workers))):
            os.makedirs(os.path.join(workdir, name), exist_ok=True)
            print(f"{name}: loading {args.n} keys per type", file=sys.stderr)
            server = starter()
            try:
                results[name] = measure(server, args.n, args.batch)
            finally:
                server.stop()
    version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout.split()
    print(f"N = {args.n} keys per type, {FIELDS} fields/members each; shardd with {args.workers} "
          f"workers; redis-server {version[2].removeprefix('v=') if len(version) > 2 else '?'}")
    print(f"{'type':<6} {'redis B/key':>12} {'encoding':>10} {'shardd B/key':>13} {'encoding':>10} "
          f"{'ratio':>7} {'redis load s':>13} {'shardd load s':>14}")
    for name, _ in TYPES:
        if name not in results["redis"] or name not in results["shardd"]:
            print(f"{name:<6} {'skipped (not implemented in shardd)':>40}")
            continue
        r_bytes, r_secs, r_enc = results["redis"][name]
        s_bytes, s_secs, s_enc = results["shardd"][name]
        print(f"{name:<6} {r_bytes:>12.0f} {r_enc.decode():>10} {s_bytes:>13.0f} {s_enc.decode():>10} "
              f"{s_bytes / r_bytes:>6.2f}x {r_secs:>13.1f} {s_secs:>14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
