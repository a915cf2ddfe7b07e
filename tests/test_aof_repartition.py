"""Restarting with another worker count while appendonly is yes (shardd/persist/aof.py,
prepare_layout and Aof.load_repartition): the AOF of the old layout is moved aside, every
worker loads its slots out of every old shard's AOF and writes a new one, and the old files
go once every worker has written its own. Nothing is lost, TTLs included, and a SIGKILL of
the whole server at any point of that start leaves either layout whole."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

import psutil
import pytest
import redis

from helpers import wait_until
from server import Server
from test_aof import snapshot
from test_aof_units import crash

ROOT = "appendonlydir"
MANIFEST = "appendonly.aof.manifest"
LIBRARY = """#!lua name=replib
redis.register_function('twice', function(keys, args) return 2 * tonumber(args[1]) end)"""


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-aof-repart-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(workdir: str, workers: int, *args: str) -> Server:
    srv = Server("--appendonly", "yes", *args, dir=workdir, workers=workers)
    wait_loaded(srv.client())
    return srv


def wait_loaded(r: redis.Redis, timeout: float = 30.0) -> None:
    def answers() -> bool:
        try:
            r.dbsize()
            return True
        except redis.exceptions.BusyLoadingError:
            return False
    assert wait_until(answers, timeout)


def shard_dirs(workdir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(workdir, ROOT)), key=int)


def layout_of(workdir: str, shard: int) -> str:
    with open(os.path.join(workdir, ROOT, str(shard), MANIFEST)) as stream:
        return next(line for line in stream if line.startswith("# shardd-layout")).split(" ", 2)[2].strip()


def fill(r: redis.Redis) -> None:
    """Every type, in two dbs, with and without TTLs, and a function library."""
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"s{i}", i, ex=5000 + i if i % 3 == 0 else None)
        pipe.hset(f"h{i % 40}", f"f{i}", i)
        pipe.rpush(f"l{i % 30}", i)
        pipe.sadd(f"set{i % 20}", i)
        pipe.zadd(f"z{i % 10}", {f"m{i}": i / 7})
    pipe.pexpire("h3", 900000)
    pipe.execute()
    r.mset({f"cross{i}": i for i in range(50)})              # cross-shard (an AOF unit)
    r.execute_command("SELECT", 2)
    r.set("in-db-2", "x", px=800000)
    r.execute_command("SELECT", 0)
    r.function_load(LIBRARY)


def test_restart_with_2_3_1_2_workers_keeps_every_key_and_ttl(workdir):
    srv = start(workdir, 2)
    try:
        r = srv.client()
        fill(r)
        before = snapshot(r)
        assert len(before) == 300 + 40 + 30 + 20 + 10 + 50 + 1
    finally:
        srv.stop()
    for workers in (3, 1, 2):
        if workers == 3:
            shutil.copytree(os.path.join(workdir, ROOT), os.path.join(workdir, "old-copy"))
        if workers == 1:
            # As if the last start crashed between its commit (the rename) and the removal of
            # the old layout's files: they are removed now.
            os.rename(os.path.join(workdir, "old-copy"), os.path.join(workdir, ROOT + ".repartition-done"))
        srv = start(workdir, workers)
        try:
            r = srv.client()
            assert snapshot(r) == before
            assert r.fcall("twice", 0, 21) == 42                 # the library came along
            assert r.info("persistence")["loading"] == 0
            r.set(f"written-by-{workers}", workers, ex=7000)     # lands in the new layout's AOF
            r.incr("cross7")
            before = snapshot(r)
            assert "Re-partition of the AOF complete" in srv.output()
        finally:
            srv.stop()
        assert sorted(os.listdir(workdir)) == sorted([ROOT, "server.log"] + ["old-copy"] * (workers == 3))
        assert shard_dirs(workdir) == [str(s) for s in range(workers)]
        assert layout_of(workdir, workers - 1).startswith(f"shard={workers - 1} shards={workers} ")
    srv = start(workdir, 2)                                       # the same count: a plain load
    try:
        assert snapshot(srv.client()) == before
        assert "re-partition" not in srv.output().lower()
    finally:
        srv.stop()


def workers_of(srv: Server, n: int) -> list[psutil.Process]:
    """The server's first n children: the supervisor forks the workers first, in order."""
    def found() -> list[psutil.Process]:
        children = [p for p in srv.children() if p.ppid() == srv.proc.pid]
        return sorted(children, key=lambda p: (p.create_time(), p.pid)) if len(children) >= n else []
    children = wait_until(found, 20, step=0.001)
    assert children, srv.output()
    return children[:n]


def interrupted_start(workdir: str, workers: int) -> None:
    """Start with `workers` workers, freeze the last one before it has written its new AOF,
    wait until the others have written theirs, and SIGKILL the whole server."""
    source = os.path.join(workdir, ROOT + ".repartition")
    srv = Server("--appendonly", "yes", dir=workdir, workers=workers, wait=False)
    try:
        last = workers_of(srv, workers)[-1]
        last.send_signal(signal.SIGSTOP)                         # a worker of our own server
        new_manifest = os.path.join(workdir, ROOT, "{}", MANIFEST)
        assert wait_until(lambda: all(os.path.exists(new_manifest.format(s)) for s in range(workers - 1)), 20), \
            srv.output()
        time.sleep(0.2)
        assert os.path.isdir(source), "the re-partition committed before the last worker wrote its AOF"
        assert not os.path.exists(new_manifest.format(workers - 1))
    finally:
        crash(srv)


def check_populated(r: redis.Redis, n: int, ttl_keys: int) -> None:
    assert r.dbsize() == n + ttl_keys
    keys = [f"key:{i}" for i in range(0, n, 97)]
    assert r.mget(keys) == [f"value:{i}".encode() for i in range(0, n, 97)]
    pipe = r.pipeline(transaction=False)
    for i in range(ttl_keys):
        pipe.pexpiretime(f"ttl{i}")
    assert all(when > time.time() * 1000 + 3_000_000 for when in pipe.execute())


def test_sigkill_in_the_middle_of_a_repartition_loses_nothing(workdir):
    n, ttl_keys = 40000, 200
    srv = start(workdir, 2, "--enable-debug-command", "yes")
    try:
        r = srv.client()
        r.execute_command("DEBUG", "POPULATE", n, "key")
        pipe = r.pipeline(transaction=False)
        for i in range(ttl_keys):
            pipe.set(f"ttl{i}", i, ex=4000 + i)
        pipe.execute()
    finally:
        srv.stop()
    # Killed while re-partitioning 2 → 3: the next start with 3 workers does it again.
    interrupted_start(workdir, 3)
    srv = start(workdir, 3)
    try:
        check_populated(srv.client(), n, ttl_keys)
        assert "Resuming the interrupted re-partition of the AOF of 2 shards" in srv.output()
    finally:
        srv.stop()
    assert shard_dirs(workdir) == ["0", "1", "2"] and not os.path.exists(os.path.join(workdir, ROOT + ".repartition"))
    # Killed while re-partitioning 3 → 4, then started with 3 again: the old layout comes back.
    interrupted_start(workdir, 4)
    srv = start(workdir, 3)
    try:
        check_populated(srv.client(), n, ttl_keys)
        assert "An interrupted re-partition of the AOF is undone" in srv.output()
    finally:
        srv.stop()
    assert shard_dirs(workdir) == ["0", "1", "2"]
