"""bench/minimal_server.py answers right: its figures bound what the design can reach, so a
server that dropped or reordered replies would make that bound a fake."""
from __future__ import annotations

import random
import subprocess
import sys
import time
from binascii import crc_hqx

import pytest

from helpers import RawConnection, encode
from server import ROOT, free_port, server_env

WORKERS = 2


@pytest.fixture(scope="module")
def minimal():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "minimal_server.py"), "--port", str(port),
                             "--workers", str(WORKERS)], env=server_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = RawConnection(port)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("minimal_server.py did not start")
            time.sleep(0.1)
    yield conn
    conn.close()
    proc.terminate()             # the proxy stops its workers (and they exit when it is gone)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail("minimal_server.py did not stop on SIGTERM")


def worker_of(key: bytes) -> int:
    return (crc_hqx(key, 0) & 16383) % WORKERS


def test_one_command_reads(minimal):
    assert minimal.call("PING") == b"+PONG\r\n"
    assert minimal.call("SET", "k", "v1") == b"+OK\r\n"
    assert minimal.call("GET", "k") == b"$2\r\nv1\r\n"
    assert minimal.call("GET", "missing") == b"$-1\r\n"
    assert minimal.call("INCR", "k") == b"-ERR unknown command\r\n"


def test_pipelines_over_both_workers_answer_in_order(minimal):
    rng = random.Random(7)
    keys = [b"key:%d" % i for i in range(40)]
    assert {worker_of(k) for k in keys} == set(range(WORKERS))
    model: dict[bytes, bytes] = {}
    split = 0
    for _ in range(300):
        batch = rng.sample(keys, rng.randint(1, 16))
        split += len({worker_of(k) for k in batch}) > 1
        request, expected = [], []
        for key in batch:
            if rng.random() < 0.5:
                value = b"v%d" % rng.randrange(10**6)
                model[key] = value
                request.append(encode(b"SET", key, value))
                expected.append(b"+OK\r\n")
            else:
                value = model.get(key)
                request.append(encode(b"GET", key))
                expected.append(b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
        minimal.send(b"".join(request))      # one read: the proxy routes it whole
        assert [minimal.read() for _ in batch] == expected
    assert split > 200           # most reads went to both workers (the SPLIT path)
