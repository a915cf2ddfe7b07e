#!/usr/bin/env python3
"""Memory per key: shardd against Debian's redis-server (shardd issue 11's memory targets).

For each type, starts redis-server and shardd (2 workers by default) afresh on free ports, each
in a temporary directory with no persistence, loads the keys over one pipelined raw-RESP
connection and prints the growth of the processes' PSS from the empty server, per key:

* strings: N keys like redis-benchmark's (`key:000000123456`) with 16-byte values (SET);
* hash / set / zset: N/5 keys (`--small-n`) of 5 fields or members (HSET, SADD, ZADD).

PSS (psutil memory_full_info().pss) is summed over the server's process and every process it
started, so shardd's shared memory (rings) counts once. INFO used_memory is printed beside it
for reference (redis: its allocations; shardd: its own estimate, memsize.py). The target is a
PSS ratio shardd/redis of at most 2.

Usage: python3 bench/memory.py [--n N] [--small-n N] [--types strings,hash,set,zset]
                               [--batch B] [--workers W]
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

    def pss(self) -> int:
        """Proportional set size of the process and every process it started."""
        return self.summed(lambda proc: proc.memory_full_info().pss)

    def summed(self, measure: Callable[[psutil.Process], int]) -> int:
        """measure(process) summed over the process and every process it started."""
        try:
            root = psutil.Process(self.popen.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                total += measure(proc)
            except psutil.NoSuchProcess:
                pass
        return total

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

def string_command(i: int) -> list:
    return ["SET", f"key:{i:012d}", f"value-{i:010d}"]          # 16-byte values


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


# name → (command maker, whether it takes --n (True) or --small-n keys)
TYPES: dict[str, tuple[Callable[[int], list], bool]] = {
    "strings": (string_command, True), "hash": (hash_command, False),
    "set": (set_command, False), "zset": (zset_command, False)}


def encode(args: list) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def load(port: int, make: Callable[[int], list], n: int, batch: int) -> float:
    """Send n commands in pipelined batches over one raw connection (every reply is one line);
    returns the seconds it took. Raises on an error reply."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for start in range(0, n, batch):
            count = min(start + batch, n) - start
            sock.sendall(b"".join(encode(make(i)) for i in range(start, start + count)))
            received = b""
            while received.count(b"\r\n") < count:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("connection closed while loading")
                received += chunk
            if b"-" in received and (received.startswith(b"-") or b"\n-" in received):
                raise RuntimeError(f"error reply while loading: {received[:200]!r}")
    return time.monotonic() - began


def settle(server: Started) -> tuple[int, int]:
    """(PSS, used_memory) once the figures stop moving (bounded)."""
    time.sleep(0.5)
    last = server.pss()
    for _ in range(10):
        time.sleep(0.5)
        now = server.pss()
        if abs(now - last) < (1 << 20):
            break
        last = now
    return server.pss(), server.used_memory()


def measure(server: Started, make: Callable[[int], list], n: int, batch: int) -> dict:
    """One type's figures on a fresh, empty server."""
    server.client.flushall()
    pss0, used0 = settle(server)
    seconds = load(server.port, make, n, batch)
    pss1, used1 = settle(server)
    encoding = server.client.object("encoding", make(0)[1]) or b"?"
    result = {"pss": (pss1 - pss0) / n, "used": (used1 - used0) / n, "seconds": seconds,
              "encoding": encoding.decode()}
    print(f"  {server.name}: {n} keys in {seconds:.1f} s, PSS {result['pss']:.0f} B/key, "
          f"used_memory {result['used']:.0f} B/key ({result['encoding']})", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="string keys (default 1000000)")
    parser.add_argument("--small-n", type=int, default=200_000,
                        help="hash/set/zset keys (default 200000)")
    parser.add_argument("--types", default=",".join(TYPES),
                        help="comma-separated: " + ",".join(TYPES))
    parser.add_argument("--batch", type=int, default=1000, help="commands per pipeline")
    parser.add_argument("--workers", type=int, default=2, help="shardd worker processes")
    args = parser.parse_args()
    names = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in names if t not in TYPES]
    if unknown:
        parser.error(f"unknown types: {', '.join(unknown)}")
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="shardd-memory-") as workdir:
        for name in names:
            make, big = TYPES[name]
            n = args.n if big else args.small_n
            for server_name, starter in (
                    ("redis", lambda d: start_redis(d)),
                    ("shardd", lambda d: start_shardd(d, args.workers))):
                directory = os.path.join(workdir, f"{server_name}-{name}")
                os.makedirs(directory, exist_ok=True)
                print(f"{server_name}: loading {n} {name} keys", file=sys.stderr)
                server = starter(directory)
                try:
                    results.setdefault(name, {})[server_name] = measure(server, make, n, args.batch)
                finally:
                    server.stop()
    version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout.split()
    print(f"strings: {args.n} keys, 16-byte values; hash/set/zset: {args.small_n} keys of {FIELDS} "
          f"fields/members; shardd with {args.workers} workers; redis-server "
          f"{version[2].removeprefix('v=') if len(version) > 2 else '?'}; B/key = PSS growth / keys")
    print(f"{'type':<8} {'redis B/key':>11} {'used_mem':>9} {'encoding':>10} {'shardd B/key':>12} "
          f"{'used_mem':>9} {'encoding':>10} {'ratio':>6} {'redis s':>8} {'shardd s':>9}")
    for name in names:
        r, s = results[name]["redis"], results[name]["shardd"]
        print(f"{name:<8} {r['pss']:>11.0f} {r['used']:>9.0f} {r['encoding']:>10} {s['pss']:>12.0f} "
              f"{s['used']:>9.0f} {s['encoding']:>10} {s['pss'] / r['pss']:>5.2f}x "
              f"{r['seconds']:>8.1f} {s['seconds']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
