"""Crash tests of the AOF (shardd/persist/aof.py): clients write while a worker, or every
process of the server, is SIGKILLed. With appendfsync always every acknowledged write is
there after the restart; with everysec at most about two seconds are missing; a worker killed
during BGREWRITEAOF leaves the previous files intact."""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers import RawConnection, keys_on, wait_until
from server import Server

MANIFEST = "appendonly.aof.manifest"


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-aof-crash-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Writers:
    """Threads writing unique keys and counting INCRs; what got a reply is recorded."""

    def __init__(self, port: int, n: int = 4) -> None:
        self.port = port
        self.acked: dict[str, float] = {}        # key → when its reply came
        self.incr_acked = [0] * n
        self.incr_sent = [0] * n
        self.running = True
        self.threads = [threading.Thread(target=self.write, args=(t,), daemon=True) for t in range(n)]
        for thread in self.threads:
            thread.start()

    def write(self, t: int) -> None:
        client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2,
                             retry=Retry(NoBackoff(), 0))     # an error now, not after retries
        n = 0
        while self.running:
            n += 1
            key = f"w{t}:{n}"
            try:
                client.set(key, n)
                self.acked[key] = time.monotonic()
                self.incr_sent[t] += 1
                client.incr(f"counter{t}")
                self.incr_acked[t] += 1
            except (redis.RedisError, OSError):
                time.sleep(0.01)

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(10)

    def check(self, r: redis.Redis, newer_than: float | None = None) -> list[str]:
        """The acknowledged writes missing from r (only those acknowledged before
        `newer_than` count when it is given)."""
        keys = sorted(self.acked)
        values = []
        for i in range(0, len(keys), 500):
            values += r.mget(keys[i:i + 500])
        missing = [k for k, v in zip(keys, values) if v != k.split(":")[1].encode()]
        if newer_than is not None:
            missing = [k for k in missing if self.acked[k] < newer_than]
        for t in range(len(self.incr_acked)):
            value = int(r.get(f"counter{t}") or 0)
            if newer_than is None and not self.incr_acked[t] <= value <= self.incr_sent[t]:
                missing.append(f"counter{t}={value} acked={self.incr_acked[t]} sent={self.incr_sent[t]}")
        return missing


def kill_tree(srv: Server) -> None:
    """SIGKILL every process of our own server (the supervisor and its children). The
    supervisor is stopped first: a worker it restarted meanwhile would outlive the test and
    keep writing its files."""
    try:
        os.kill(srv.proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    pids = [p.pid for p in srv.children()] + [srv.proc.pid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    srv.proc.wait(10)
    srv.log.close()

    def dead(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE   # orphans wait for init
        except psutil.NoSuchProcess:
            return True
    assert wait_until(lambda: all(dead(pid) for pid in pids), 10)


def worker_pid(r: redis.Redis, shard: int) -> int:
    return int(r.info("shards")[f"shard{shard}"]["pid"])


def wait_restarted(r: redis.Redis, shard: int, old_pid: int) -> None:
    def back() -> bool:
        try:
            return worker_pid(r, shard) != old_pid and r.dbsize() >= 0
        except redis.RedisError:
            return False
    assert wait_until(back, 20)


def test_always_worker_killed_while_clients_write(workdir):
    srv = Server("--appendonly", "yes", "--appendfsync", "always", dir=workdir)
    try:
        r = srv.client()
        writers = Writers(srv.port)
        time.sleep(0.8)
        pid = worker_pid(r, 0)
        os.kill(pid, signal.SIGKILL)                 # a worker of our own server
        wait_restarted(r, 0, pid)
        time.sleep(0.5)
        writers.stop()
        assert len(writers.acked) > 200
        assert writers.check(r) == []
        assert "DB loaded from append only file" in srv.output()
    finally:
        srv.stop()


def started_workers(srv: Server, shard: int) -> list[int]:
    """The pids the log shows for worker `shard`, oldest first (INFO may wait long behind a
    stream of cross-shard holds)."""
    return [int(m.group(1)) for m in re.finditer(rf"^(\d+):W .* Worker {shard} started", srv.output(), re.M)]


@pytest.mark.parametrize("shard", [0, 1])
def test_a_worker_killed_under_cross_shard_scripts_never_acknowledges_a_torn_one(workdir, shard):
    """Scripts move 7 between keys of two workers while one worker is SIGKILLed. Such a script
    can end up standing on one worker only (shardd has no rollback of a survivor's part), but
    then its client must get an error: a pair whose sum is off had an error reply."""
    srv = Server("--appendonly", "yes", "--appendfsync", "always", dir=workdir)
    pairs = [(keys_on(0, 1, f"t{i}a:")[0], keys_on(1, 1, f"t{i}b:")[0]) for i in range(3)]
    failures: list[list[str]] = [[] for _ in pairs]
    stop = threading.Event()

    def transfer(i: int) -> None:
        c = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=15)
        while not stop.is_set():
            try:
                c.eval("redis.call('INCRBY', KEYS[1], -7) return redis.call('INCRBY', KEYS[2], 7)", 2, *pairs[i])
            except redis.RedisError as exc:
                failures[i].append(str(exc))
                time.sleep(0.05)
    try:
        r = srv.client()
        threads = [threading.Thread(target=transfer, args=(i,), daemon=True) for i in range(len(pairs))]
        for t in threads:
            t.start()
        time.sleep(0.6)
        pid = started_workers(srv, shard)[-1]
        os.kill(pid, signal.SIGKILL)                 # a worker of our own server
        assert wait_until(lambda: len(started_workers(srv, shard)) == 2, 20)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(20)
        for (a, b), failed in zip(pairs, failures):
            total = int(r.get(a) or 0) + int(r.get(b) or 0)
            assert total % 7 == 0
            assert total == 0 or failed, (a, b, total)
    finally:
        stop.set()
        srv.stop()


def test_always_whole_server_killed_while_clients_write(workdir):
    srv = Server("--appendonly", "yes", "--appendfsync", "always", dir=workdir)
    writers = Writers(srv.port)
    time.sleep(1.0)
    kill_tree(srv)
    writers.stop()
    assert len(writers.acked) > 200
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        assert writers.check(srv.client()) == []
    finally:
        srv.stop()


def test_everysec_loses_at_most_about_two_seconds(workdir):
    srv = Server("--appendonly", "yes", "--appendfsync", "everysec", dir=workdir)
    writers = Writers(srv.port)
    time.sleep(1.5)
    killed_at = time.monotonic()
    kill_tree(srv)
    writers.stop()
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        assert writers.check(srv.client(), newer_than=killed_at - 2.5) == []
    finally:
        srv.stop()


def test_worker_killed_during_bgrewriteaof_leaves_the_files_intact(workdir):
    srv = Server("--appendonly", "yes", "--enable-debug-command", "yes", dir=workdir)
    try:
        r = srv.client()
        r.execute_command("DEBUG", "POPULATE", "100000", "key", "10")
        r.set("last", "write")
        pid = worker_pid(r, 0)
        raw = RawConnection(srv.port)
        assert raw.call("BGREWRITEAOF") == b"+Background append only file rewriting started\r\n"
        raw.close()
        os.kill(pid, signal.SIGKILL)                 # mid-rewrite: its child dies with it
        wait_restarted(r, 0, pid)
        assert r.dbsize() == 100001 and r.get("last") == b"write"
        shard0 = os.path.join(workdir, "appendonlydir", "0")
        assert not [name for name in os.listdir(shard0) if name.startswith("temp-")]
        with open(os.path.join(shard0, MANIFEST)) as stream:
            manifest = stream.read()
        assert "appendonly.aof.1.base.rdb seq 1 type b" in manifest
        assert "appendonly.aof.2.incr.aof seq 2 type i" in manifest
        # The next rewrite completes; the data survives a restart from the new files.
        assert wait_until(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0, 20)
        r.bgrewriteaof()
        assert wait_until(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0
                          and r.info("persistence")["aof_rewrites"] >= 1, 20)
    finally:
        srv.stop()
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        assert srv.client().dbsize() == 100001
    finally:
        srv.stop()
