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


def server_env() -> dict[str, str]:
    """The environment a server subprocess runs in: this checkout's shardd comes first."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def tcp(port: int, timeout: float = 2.0):
    """A function that opens a new TCP connection to 127.0.0.1:port."""
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=timeout)


def unix(path: str):
    """A function that opens a new connection to the unix socket at `path`."""
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        return s
    return connect


def answers_ping(connect, replies: tuple[bytes, ...] = (b"+PONG",)) -> bool:
    """PING on a new connection from `connect()`: True if the reply starts with one of `replies`."""
    try:
        with connect() as s:
            s.settimeout(2)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(replies)
    except OSError:
        return False


def wait_answering(proc: subprocess.Popen, connect, timeout: float = 20.0,
                   replies: tuple[bytes, ...] = (b"+PONG",)) -> bool:
    """PING until the server answers (True), or its process exits or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if answers_ping(connect, replies):
            return True
        time.sleep(0.05)
    return False


def reap(procs, timeout: float = 5.0) -> list[psutil.Process]:
    """Wait for the processes (psutil.Process objects or pids) to exit; kill the ones still alive
    after `timeout` and return them."""
    waiting = []
    for p in procs:
        if isinstance(p, int):
            try:
                p = psutil.Process(p)
            except psutil.NoSuchProcess:
                continue
        waiting.append(p)
    _, alive = psutil.wait_procs(waiting, timeout=timeout)
    for p in alive:
        p.kill()
    return alive


def stop_tree(proc: subprocess.Popen, kids, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
    """Signal `proc` (killing it if it has not exited after `timeout`), then reap its `kids`."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    reap(kids)
    return proc.returncode


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
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=server_env(),
                                     cwd=str(ROOT))
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        # A server with requirepass is ready when it answers NOAUTH.
        if wait_answering(self.proc, tcp(self.port), timeout, (b"+PONG", b"-NOAUTH")):
            return
        output = self.output()
        if self.proc.poll() is not None:
            self.log.close()
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{output}")
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
        returncode = stop_tree(self.proc, self.children(), sig, timeout)
        self.log.close()
        return returncode


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
