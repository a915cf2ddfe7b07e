"""Start a real shardd-server subprocess on a free port, for the tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A shardd-server process; `stop()` kills it and every process it started."""

    def __init__(self, *args: str, workers: int = 2, proxies: int = 1, config_file: str | None = None,
                 port: int | None = None, wait: bool = True, dir: str | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.dir = dir or tempfile.mkdtemp(prefix="shardd-test-")
        cmd = [sys.executable, "-m", "shardd"]
        if config_file:
            cmd.append(config_file)
        cmd += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir,
                "--worker-processes", str(workers), "--io-threads", str(proxies), *args]
        self.log_path = os.path.join(self.dir, "server.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()
                self.log.close()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    s.settimeout(2)
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError(f"server did not start:\n{output}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        kids = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        gone, alive = psutil.wait_procs(kids, timeout=5)
        for p in alive:
            p.kill()
        self.log.close()
        return self.proc.returncode


def recv_until(sock: socket.socket, expected: int | bytes, timeout: float = 10.0) -> bytes:
    """Read until `expected` bytes arrived (int) or the data ends with `expected` (bytes)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(expected, int) and len(data) >= expected:
            break
        if isinstance(expected, bytes) and data.endswith(expected):
            break
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data
