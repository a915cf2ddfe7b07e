"""What the tests that talk to a real server share: where keys live, raw RESP requests and
replies, and a redis-server of our own as an oracle."""
from __future__ import annotations

import shlex
import socket
import subprocess
import tempfile
import threading
import time

import hiredis
import pytest
from redis.crc import key_slot

from server import free_port, tcp, wait_answering

WORKER_SPLIT = 8192     # with 2 workers, slots 0..8191 are worker 0's, 8192..16383 worker 1's
REDIS_SERVER = "/usr/bin/redis-server"      # Debian's redis-server 7.0, the oracle


# --- keys ---------------------------------------------------------------------------------------

def worker_of(key: str | bytes) -> int:
    """The worker (of 2) that owns the key's hash slot."""
    return 0 if key_slot(key.encode() if isinstance(key, str) else key) < WORKER_SPLIT else 1


def keys_on(worker: int, n: int, prefix: str) -> list[str]:
    """n key names whose slot is owned by `worker`."""
    out, i = [], 0
    while len(out) < n:
        name = f"{prefix}{i}"
        if worker_of(name) == worker:
            out.append(name)
        i += 1
    return out


# --- raw RESP -----------------------------------------------------------------------------------

def wait_until(predicate, timeout: float = 10.0, step: float = 0.05):
    """Poll predicate until it returns something true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def run_threads(targets, stop: threading.Event, seconds: float, join_timeout: float = 20.0) -> None:
    """Run each callable in a daemon thread until `stop` is set (by the test, or by us after
    `seconds`); a thread still running after that fails the test instead of hanging it."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(join_timeout)
    assert not any(t.is_alive() for t in threads), "a load thread is stuck"


def encode(*args) -> bytes:
    """A RESP multibulk request; arguments that are not bytes are sent as str(arg)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


def read_exact(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    """Read until n bytes arrived, the peer closed, or the deadline passed."""
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(data), 1 << 20))
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def read_reply(sock: socket.socket, reader: hiredis.Reader, timeout: float = 10.0):
    """The next reply `reader` parses, reading from `sock` as needed."""
    deadline = time.monotonic() + timeout
    while True:
        reply = reader.gets()
        if reply is not False:
            return reply
        left = deadline - time.monotonic()
        assert left > 0, "timed out waiting for a reply"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        reader.feed(chunk)


class RawConnection:
    """A RESP connection whose replies come back as their exact bytes."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args) -> bytes:
        self.send(encode(*args))
        return self.read()

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk

    def _end(self, pos: int) -> int:
        """Index just past the reply starting at buf[pos] (reading more as needed)."""
        while (eol := self.buf.find(b"\r\n", pos)) < 0:
            self._more()
        kind, head, nxt = self.buf[pos:pos + 1], self.buf[pos + 1:eol], eol + 2
        if kind in b"+-:_,#(":
            return nxt
        if kind in b"$=!":
            n = int(head)
            if n < 0:
                return nxt
            while len(self.buf) < nxt + n + 2:
                self._more()
            return nxt + n + 2
        if kind in b"*~>%|":
            for _ in range(max(int(head), 0) * (2 if kind in b"%|" else 1)):
                nxt = self._end(nxt)
            return nxt
        raise AssertionError(f"not RESP: {self.buf[pos:pos + 40]!r}")

    def read(self) -> bytes:
        """The next whole reply, as its bytes."""
        end = self._end(0)
        reply, self.buf = self.buf[:end], self.buf[end:]
        return reply


# --- the redis-server oracle --------------------------------------------------------------------

def start_redis_server() -> tuple[subprocess.Popen, int]:
    """A redis-server of our own on a free port, answering PING; the caller kills it by its PID."""
    workdir = tempfile.mkdtemp(prefix="shardd-oracle-")
    for _ in range(3):                     # a free port can be taken before redis binds it
        port = free_port()
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", workdir],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_answering(proc, tcp(port, timeout=1), 10):
            return proc, port
        proc.kill()
        proc.wait(5)
    raise RuntimeError("redis-server (oracle) did not start")


def run_both(pair, commands: list, restore: list[tuple]) -> None:
    """Run each command on both servers of `pair` (shardd, redis) from an empty db 0 and compare
    the raw replies.

    A command given as ("!", cmd) runs on both without comparing (HELLO, CONFIG SET); after a
    case with one, the `restore` commands run on both, even if the case failed."""
    s, o = pair
    for conn in pair:
        assert conn.call("SELECT", "0") == b"+OK\r\n"
        assert conn.call("FLUSHALL") == b"+OK\r\n"
    try:
        for command in commands:
            compare = True
            if isinstance(command, tuple) and command[0] == "!":
                compare, command = False, command[1]
            args = shlex.split(command) if isinstance(command, str) else command
            got, want = s.call(*args), o.call(*args)
            if compare:
                assert got == want, f"{args!r}: shardd {got!r} != redis {want!r}"
    finally:
        if any(isinstance(c, tuple) for c in commands):
            for conn in pair:
                for args in restore:
                    conn.call(*args)


def _case_id(case) -> str:
    """A test id for an oracle case: its last command, cut to 60 characters."""
    last = case[-1]
    text = " ".join(last) if isinstance(last, list) else (last if isinstance(last, str) else last[1])
    return text[:60]


def oracle_cases(cases: list):
    """Parametrizes a test's `case` with an oracle table (pytest.param entries keep their id)."""
    return pytest.mark.parametrize("case", cases,
                                   ids=[c.id if hasattr(c, "marks") else _case_id(c) for c in cases])


def closed_by_server(s: socket.socket, timeout: float = 5.0) -> bool:
    """The server closed this connection (what it sent before is drained first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            if s.recv(1 << 20) == b"":
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False
