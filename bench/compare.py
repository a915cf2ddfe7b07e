#!/usr/bin/env python3
"""Compare shardd against Debian's redis-server with redis-benchmark.

Starts redis-server and shardd (one instance per --workers value) on free
ports, then runs redis-benchmark against each server, interleaved: for each
round, for each pipeline setting, for each test, every server runs it back to
back, so all servers see the same machine conditions.  Reports the median
ops/s and server CPU time per operation for each (server, test, pipeline).

Usage: python3 bench/compare.py [--quick] [--rounds N] [--tests set,get]
       [--requests N] [--requests-pipelined N] [--json PATH]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psutil

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_BENCHMARK = "redis-benchmark"
DEFAULT_TESTS = "set,get,incr,mset,lpush,hset,zadd"
FORBIDDEN_PORT = 6379
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 10.0

# A harmless command per redis-benchmark test, used to check that a server
# implements it.  Keys are namespaced and the database is flushed afterwards.
PROBES: dict[str, list[str]] = {
    "ping_inline": ["PING"],
    "ping_mbulk": ["PING"],
    "set": ["SET", "bench:probe:s", "x"],
    "get": ["GET", "bench:probe:s"],
    "incr": ["INCR", "bench:probe:i"],
    "mset": ["MSET", "bench:probe:m1", "x", "bench:probe:m2", "y"],
    "lpush": ["LPUSH", "bench:probe:l", "x"],
    "rpush": ["RPUSH", "bench:probe:l", "x"],
    "lpop": ["LPOP", "bench:probe:l"],
    "rpop": ["RPOP", "bench:probe:l"],
    "lrange": ["LRANGE", "bench:probe:l", "0", "99"],
    "sadd": ["SADD", "bench:probe:st", "x"],
    "spop": ["SPOP", "bench:probe:st"],
    "hset": ["HSET", "bench:probe:h", "f", "v"],
    "zadd": ["ZADD", "bench:probe:z", "1", "m"],
    "zpopmin": ["ZPOPMIN", "bench:probe:z"],
    "xadd": ["XADD", "bench:probe:x", "*", "f", "v"],
}


# --------------------------------------------------------------------------
# Minimal RESP client (readiness, probing, FLUSHALL)
# --------------------------------------------------------------------------

class RespError(Exception):
    """An error reply ("-ERR ...") from the server."""


def _encode(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(f: io.BufferedReader) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, body = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return body
    if kind == b"-":
        raise RespError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        return None if int(body) < 0 else f.read(int(body) + 2)[:-2]
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply type {kind!r}")


def command(port: int, *args: str, timeout: float = SOCKET_TIMEOUT_S) -> Any:
    """Send one command on a fresh connection and return its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_encode(list(args)))
        with s.makefile("rb") as f:
            return _read_reply(f)


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

def free_port() -> int:
    """A currently unused local TCP port (never 6379)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != FORBIDDEN_PORT:
            return port


@dataclass
class Server:
    """A server process we started, plus every descendant we have seen."""
    name: str
    argv: list[str]
    port: int
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None
    known: dict[int, psutil.Process] = field(default_factory=dict)
    source: Path = REPO      # the shardd source tree it imports (--baseline: an older one)
    tests: frozenset[str] | None = None     # the tests it can run (None: all)

    def runs(self, test: str) -> bool:
        return self.tests is None or test in self.tests

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(self.source), os.environ.get("PYTHONPATH", "")) if p))
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.known[self.popen.pid] = psutil.Process(self.popen.pid)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if command(self.port, "PING", timeout=1.0) == "PONG":
                    command(self.port, "FLUSHALL")
                    self.processes()  # remember the children for cleanup
                    return
            except (OSError, RespError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        """The started process and all its live descendants (remembered)."""
        assert self.popen is not None
        root = self.known[self.popen.pid]
        try:
            for child in root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return [p for p in self.known.values() if p.is_running()]

    def stop(self) -> None:
        """Terminate the server; SIGKILL anything of ours still alive after."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.processes()  # refresh the descendants before they get orphaned
            self.popen.terminate()
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        _, alive = psutil.wait_procs(list(self.known.values()), timeout=STOP_TIMEOUT_S)
        for proc in alive:
            try:
                proc.kill()  # psutil refuses if the PID was reused
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def redis_server(workdir: Path) -> Server:
    port = free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    return Server("redis", argv, port, workdir)


def floor_server(workdir: Path) -> Server:
    """floor_server.py: a uvloop loop that answers without doing anything (--floor)."""
    port = free_port()
    return Server("floor", [sys.executable, str(REPO / "bench" / "floor_server.py"), "--port", str(port)],
                  port, workdir)


def minimal_server(workdir: Path, workers: int) -> Server:
    """minimal_server.py: the proxy, rings and workers with nothing else, set and get only (--minimal)."""
    port = free_port()
    argv = [sys.executable, str(REPO / "bench" / "minimal_server.py"), "--port", str(port),
            "--workers", str(workers)]
    return Server(f"minimal-{workers}w", argv, port, workdir, tests=frozenset({"set", "get"}))


def shardd_server(workdir: Path, workers: int, io_threads: int | None, source: Path = REPO,
                  name: str = "shardd") -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "shardd", "--port", str(port),
            "--bind", "127.0.0.1", "--save", "", "--worker-processes", str(workers)]
    if io_threads is not None:
        argv += ["--io-threads", str(io_threads)]
    return Server(f"{name}-{workers}w", argv, port, workdir, source=source)


# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------

@dataclass
class Sample:
    """One redis-benchmark run against one server."""
    server: str
    test: str
    pipeline: int
    round: int
    requests: int
    ops_per_s: float | None
    cpu_s: float | None
    error: str | None = None

    @property
    def cpu_us_per_op(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s * 1e6 / self.requests


def cpu_snapshot(procs: list[psutil.Process]) -> dict[int, float]:
    snap = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
            snap[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return snap


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots (a vanished process counts 0)."""
    return sum(after.get(pid, t) - t for pid, t in before.items())


def benchmark_argv(port: int, test: str, requests: int, pipeline: int) -> list[str]:
    argv = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-r", "100000",
            "-c", "50", "-t", test, "-n", str(requests), "--csv"]
    return argv + (["-P", str(pipeline)] if pipeline > 1 else [])


def parse_rps(out: str) -> float:
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        raise ValueError(f"no CSV result in redis-benchmark output: {out!r}")
    return float(rows[0][1])


def run_one(server: Server, test: str, pipeline: int, requests: int,
            rnd: int, timeout: float) -> Sample:
    command(server.port, "FLUSHALL")
    procs = server.processes()
    before = cpu_snapshot(procs)
    sample = Sample(server.name, test, pipeline, rnd, requests, None, None)
    try:
        res = subprocess.run(benchmark_argv(server.port, test, requests, pipeline),
                             capture_output=True, text=True, timeout=timeout)
        sample.cpu_s = cpu_delta(before, cpu_snapshot(procs))
        if res.returncode != 0:
            raise ValueError(f"exit {res.returncode}: {res.stderr.strip()[-300:]}")
        sample.ops_per_s = parse_rps(res.stdout)
    except subprocess.TimeoutExpired:
        sample.error = f"redis-benchmark timed out after {timeout:g}s"
    except ValueError as exc:
        sample.error = str(exc)
    return sample


def supported_tests(servers: list[Server], tests: list[str]) -> tuple[list[str], list[str]]:
    """Split tests into (runnable on every server, skipped)."""
    keep, skip = [], []
    for test in tests:
        probe = PROBES.get(test)
        ok = probe is not None and all(_supports(s.port, probe) for s in servers if s.runs(test))
        (keep if ok else skip).append(test)
    for server in servers:
        command(server.port, "FLUSHALL")
    return keep, skip


def _supports(port: int, probe: list[str]) -> bool:
    try:
        command(port, *probe)
    except RespError as exc:
        return not str(exc).startswith("ERR unknown command")
    return True


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(samples: list[Sample], names: list[str]) -> list[dict[str, Any]]:
    """One row per (test, pipeline), with medians per server."""
    keys = list(dict.fromkeys((s.test, s.pipeline) for s in samples))
    rows = []
    for test, pipeline in keys:
        row: dict[str, Any] = {"test": test, "pipeline": pipeline}
        for name in names:
            mine = [s for s in samples
                    if (s.server, s.test, s.pipeline) == (name, test, pipeline)]
            row[f"{name} ops/s"] = _median([s.ops_per_s for s in mine])
            row[f"{name} cpu_us/op"] = _median([s.cpu_us_per_op for s in mine])
            row[f"{name} runs"] = sum(s.ops_per_s is not None for s in mine)
        base = row[f"{names[0]} ops/s"]
        for name in names[1:]:
            val = row[f"{name} ops/s"]
            row[f"{name}/{names[0]}"] = val / base if val and base else None
        rows.append(row)
    return rows


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "cpu":
        return f"{value:.2f}"
    return str(value)


def table_lines(rows: list[dict[str, Any]], names: list[str]) -> Iterator[str]:
    cols: list[tuple[str, str, str]] = [("test", "test", "str"), ("P", "pipeline", "str")]
    cols += [(f"{n} ops/s", f"{n} ops/s", "rate") for n in names]
    cols += [(f"{n}/{names[0]}", f"{n}/{names[0]}", "ratio") for n in names[1:]]
    cols += [(f"{n} µs/op", f"{n} cpu_us/op", "cpu") for n in names]
    cells = [[_fmt(r[key], kind) for _, key, kind in cols] for r in rows]
    widths = [max([len(c[0])] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    yield "  ".join(c[0].rjust(w) for c, w in zip(cols, widths))
    yield "  ".join("-" * w for w in widths)
    for row in cells:
        yield "  ".join(v.rjust(w) for v, w in zip(row, widths))


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tests", default=DEFAULT_TESTS,
                   help=f"comma-separated redis-benchmark tests (default {DEFAULT_TESTS})")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per run at pipeline 1 (default 200000)")
    p.add_argument("--requests-pipelined", type=int, default=None,
                   help="requests per run at pipeline 16 (default 2000000)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    p.add_argument("--workers", default="1,2",
                   help="comma-separated shardd worker counts (default 1,2)")
    p.add_argument("--io-threads", type=int, default=None,
                   help="pass --io-threads K to shardd (default: shardd's own)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds allowed per redis-benchmark run (default 600)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 20000 / 200000 requests")
    p.add_argument("--json", metavar="PATH", help="also write results as JSON here")
    p.add_argument("--floor", action="store_true",
                   help="also run floor_server.py: a uvloop loop answering without work")
    p.add_argument("--minimal", action="store_true",
                   help="also run minimal_server.py (the design with nothing else: proxy, rings and "
                        "workers, set and get only) with each worker count up to 2")
    p.add_argument("--baseline", metavar="DIR",
                   help="also run the shardd of this source tree (an older checkout: before/after "
                        "in one run), with the last worker count")
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.requests = args.requests or (20_000 if quick else 200_000)
    args.requests_pipelined = args.requests_pipelined or (200_000 if quick else 2_000_000)
    return args


def run_all(servers: list[Server], tests: list[str], args: argparse.Namespace) -> list[Sample]:
    plan = [(1, args.requests), (16, args.requests_pipelined)]
    samples = []
    for rnd in range(1, args.rounds + 1):
        for pipeline, requests in plan:
            for test in tests:
                for server in filter(lambda s: s.runs(test), servers):
                    s = run_one(server, test, pipeline, requests, rnd, args.timeout)
                    samples.append(s)
                    print(_progress(s), file=sys.stderr, flush=True)
    return samples


def _progress(s: Sample) -> str:
    head = f"[round {s.round}] P={s.pipeline:<2} {s.test:<6} {s.server:<10}"
    if s.error:
        return f"{head} FAILED: {s.error}"
    return f"{head} {s.ops_per_s:>12,.0f} ops/s  {s.cpu_us_per_op:6.2f} cpu µs/op"


def _versions() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    return {"redis-server": out([REDIS_SERVER, "--version"]),
            "redis-benchmark": out([REDIS_BENCHMARK, "--version"]),
            "shardd": out([sys.executable, "-m", "shardd", "--version"]),
            "python": platform.python_version()}


def _install_sigterm() -> None:
    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which(REDIS_BENCHMARK) is None or not os.access(REDIS_SERVER, os.X_OK):
        print("need redis-server and redis-benchmark (apt install redis-tools redis-server)",
              file=sys.stderr)
        return 2
    _install_sigterm()
    requested = [t.strip().lower() for t in args.tests.split(",") if t.strip()]
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="shardd-bench-") as tmp:
        servers = [redis_server(Path(tmp))]
        servers += [shardd_server(Path(tmp), w, args.io_threads) for w in workers]
        if args.baseline:
            servers.append(shardd_server(Path(tmp), workers[-1], args.io_threads,
                                         Path(args.baseline).resolve(), name="baseline"))
        if args.minimal:
            servers += [minimal_server(Path(tmp), w) for w in workers if w <= 2]
        if args.floor:
            servers.append(floor_server(Path(tmp)))
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready()
            tests, skipped = supported_tests(servers, requested)
            if skipped:
                print(f"skipping unsupported tests: {','.join(skipped)}", file=sys.stderr)
            started = time.time()
            samples = run_all(servers, tests, args)
        finally:
            for server in servers:
                server.stop()
    names = [s.name for s in servers]
    rows = summarize(samples, names)
    print_report(rows, names, args, tests, skipped, time.time() - started)
    if args.json:
        write_json(Path(args.json), rows, samples, args, tests, skipped)
    return 0 if all(s.error is None for s in samples) else 1


def print_report(rows: list[dict[str, Any]], names: list[str], args: argparse.Namespace,
                 tests: list[str], skipped: list[str], elapsed: float) -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {os.cpu_count()} CPUs  "
          f"rounds={args.rounds}  n={args.requests} (P=1) / {args.requests_pipelined} (P=16)  "
          f"-c 50 -r 100000  elapsed {elapsed:.0f}s")
    print(f"# tests: {','.join(tests)}" + (f"  (skipped: {','.join(skipped)})" if skipped else ""))
    print("# median ops/s per server; ratio = shardd/redis; µs/op = server CPU µs per request")
    for line in table_lines(rows, names):
        print(line)


def write_json(path: Path, rows: list[dict[str, Any]], samples: list[Sample],
               args: argparse.Namespace, tests: list[str], skipped: list[str]) -> None:
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "args": vars(args),
        "tests": tests,
        "skipped_tests": skipped,
        "results": rows,
        "samples": [asdict(s) | {"cpu_us_per_op": s.cpu_us_per_op} for s in samples],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
