"""RDB snapshots per worker: SAVE, BGSAVE, LASTSAVE, INFO persistence, save points, SHUTDOWN
SAVE/NOSAVE and SIGTERM, loading at start (own files, a foreign dump.rdb from redis-server,
another worker count), MISCONF, and a corrupt file stopping the start."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest
import redis

from helpers import REDIS_SERVER, RawConnection, keys_on, start_redis_server, wait_until
from server import Server, free_port


def fill(r: redis.Redis, n: int = 200) -> None:
    """Keys of every type on both workers, some with TTLs."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"str:{i}", f"value-{i}")
    pipe.rpush("list", *range(50))
    pipe.hset("hash", mapping={f"f{i}": i for i in range(20)})
    pipe.sadd("set", *range(30))
    pipe.sadd("strset", "a", "b", "c")
    pipe.zadd("zset", {f"m{i}": i / 3 for i in range(40)})
    pipe.set("ttl", "x", ex=1000)
    pipe.execute()


def snapshot_of(r: redis.Redis) -> dict:
    keys = sorted(r.keys("*"))
    out = {}
    for key in keys:
        kind = r.type(key)
        if kind == b"string":
            out[key] = r.get(key)
        elif kind == b"list":
            out[key] = r.lrange(key, 0, -1)
        elif kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"set":
            out[key] = r.smembers(key)
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
    return out


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-persist-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_save_writes_one_file_per_shard_and_a_map(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        fill(r)
        before = snapshot_of(r)
        assert r.info("persistence")["rdb_changes_since_last_save"] > 0
        assert r.save() is True
        assert r.info("persistence")["rdb_changes_since_last_save"] == 0
        assert abs(r.lastsave().timestamp() - time.time()) < 5
        assert {"dump-0.rdb", "dump-1.rdb", "shards.map"} <= set(os.listdir(workdir))
    finally:
        srv.stop()
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        assert snapshot_of(r) == before
        assert 990 < r.ttl("ttl") <= 1000
    finally:
        srv.stop()


def test_bgsave_serves_meanwhile_and_lastsave_moves(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        fill(r, 2000)
        first = r.lastsave()
        time.sleep(1.1)
        assert r.bgsave() is True
        r.set("during", "bgsave")            # served while the children write
        assert wait_until(lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 10)
        info = r.info("persistence")
        assert info["rdb_last_bgsave_status"] == "ok"
        assert r.lastsave() > first
        assert wait_until(lambda: os.path.exists(os.path.join(workdir, "shards.map")), 5)
        with pytest.raises(redis.ResponseError, match="syntax"):
            r.execute_command("BGSAVE", "NOW")
    finally:
        srv.stop()


def test_shutdown_save_and_nosave(workdir):
    srv = Server(dir=workdir)
    r = srv.client()
    r.set("kept", "1")
    try:
        r.shutdown(save=True)
    except redis.ConnectionError:
        pass
    assert srv.proc.wait(30) == 0
    srv.log.close()
    srv = Server(dir=workdir)
    r = srv.client()
    assert r.get("kept") == b"1"
    r.set("lost", "1")
    try:
        r.shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    assert srv.proc.wait(30) == 0
    srv.log.close()
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        assert r.get("kept") == b"1" and r.get("lost") is None
    finally:
        srv.stop()


def test_sigterm_saves_when_save_points_are_set(workdir):
    srv = Server("--save", "3600 1", dir=workdir)
    r = srv.client()
    r.set("on-sigterm", "yes")
    assert srv.stop() == 0
    srv = Server(dir=workdir)
    try:
        assert srv.client().get("on-sigterm") == b"yes"
    finally:
        srv.stop()


def test_save_point_triggers_bgsave(workdir):
    srv = Server("--save", "1 1", dir=workdir)
    try:
        r = srv.client()
        r.set("a", "1")
        assert wait_until(lambda: r.info("persistence")["rdb_saves"] >= 1, 10)
        assert wait_until(lambda: r.info("persistence")["rdb_changes_since_last_save"] == 0, 10)
    finally:
        srv.stop()


def test_restart_with_another_worker_count(workdir):
    srv = Server(dir=workdir, workers=2)
    try:
        r = srv.client()
        fill(r)
        before = snapshot_of(r)
        r.save()
    finally:
        srv.stop()
    for workers in (3, 1, 2):
        srv = Server(dir=workdir, workers=workers)
        try:
            r = srv.client()
            assert snapshot_of(r) == before, workers
            r.save()
        finally:
            srv.stop()
    assert not os.path.exists(os.path.join(workdir, "dump-2.rdb"))   # stale shard file removed


@pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed")
def test_a_dump_rdb_from_redis_loads(workdir):
    proc, port = start_redis_server()
    try:
        oracle = redis.Redis(port=port)
        fill(oracle)
        big = {f"f{i}": "x" * 100 for i in range(200)}
        oracle.hset("bighash", mapping=big)
        oracle.rpush("biglist", *[f"e{i}" * 10 for i in range(1000)])
        before = snapshot_of(oracle)
        oracle.save()
        source = os.path.join(oracle.config_get("dir")["dir"], "dump.rdb")
        shutil.copy(source, os.path.join(workdir, "dump.rdb"))
    finally:
        proc.kill()
        proc.wait(5)
    assert os.path.exists(os.path.join(workdir, "dump.rdb"))
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        assert snapshot_of(r) == before
        assert {k for k in before if r.exists(k)} == set(before)
    finally:
        srv.stop()


@pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed")
def test_redis_server_reads_every_shard_file(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        fill(r)
        before = snapshot_of(r)
        r.save()
    finally:
        srv.stop()
    merged = {}
    for shard in (0, 1):
        port = free_port()
        proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                                 "--dbfilename", f"dump-{shard}.rdb", "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            oracle = redis.Redis(port=port)
            assert wait_until(lambda: _pings(oracle), 10)
            merged.update(snapshot_of(oracle))
        finally:
            proc.kill()              # our own redis-server, by its PID
            proc.wait(5)
    assert merged == before


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_corrupt_file_stops_the_start_with_the_file_and_offset(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        fill(r)
        r.save()
    finally:
        srv.stop()
    path = os.path.join(workdir, "dump-1.rdb")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    srv = Server(dir=workdir, wait=False)
    try:
        assert srv.proc.wait(30) != 0          # the whole server stops: no half keyspace served
        output = srv.output()
        assert "dump-1.rdb" in output and "offset" in output, output[-2000:]
    finally:
        srv.stop()


def test_misconf_after_a_failed_bgsave(workdir):
    srv = Server("--save", "3600 1", dir=workdir)
    try:
        r = srv.client()
        r.set("a", "1")
        blockers = [os.path.join(workdir, f"dump-{shard}.rdb") for shard in (0, 1)]
        for path in blockers:          # the rename over a directory fails: the save fails
            os.mkdir(path)
        r.bgsave()
        assert wait_until(lambda: r.info("persistence")["rdb_last_bgsave_status"] == "err", 10)
        assert wait_until(lambda: _refused(r), 5)
        assert r.get("a") == b"1"                   # reads still work
        for path in blockers:
            os.rmdir(path)
        assert r.save() is True
        assert r.info("persistence")["rdb_last_bgsave_status"] == "ok"
        assert wait_until(lambda: not _refused(r), 5)
    finally:
        srv.stop()


def _refused(r: redis.Redis) -> bool:
    try:
        r.set("b", "2")
    except redis.ResponseError as exc:
        assert str(exc).startswith("MISCONF")
        return True
    return False


def test_functions_survive_a_restart(workdir):
    code = ("#!lua name=mylib\nredis.register_function('myset', function(keys, args) "
            "redis.call('SET', keys[1], args[1]); return redis.call('SET', keys[2], args[1]) end)")
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        assert r.function_load(code) == b"mylib"
        r.save()
    finally:
        srv.stop()
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        assert r.function_list()[0][1] == b"mylib"
        (a,), (b,) = keys_on(0, 1, "fa"), keys_on(1, 1, "fb")
        assert r.fcall("myset", 2, a, b, "v") == b"OK"       # keys on both workers
        assert r.mget(a, b) == [b"v", b"v"]
    finally:
        srv.stop()


def test_restarted_worker_answers_loading_until_its_data_is_back(workdir):
    srv = Server("--enable-debug-command", "yes", dir=workdir)
    try:
        r = srv.client()
        r.execute_command("DEBUG", "POPULATE", 600000)
        (probe,) = keys_on(0, 1, "probe")
        r.set(probe, "here")
        r.save()
        raw = RawConnection(srv.port)           # redis-py would retry -LOADING by itself
        os.kill(int(r.info("shards")["shard0"]["pid"]), 9)     # a worker of our own server
        seen: set[bytes] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = raw.call("GET", probe)
            seen.add(reply[:8])
            if reply.startswith(b"-LOADING") and b"info" not in seen:
                info = raw.call("INFO", "persistence")       # answered while loading
                if b"loading:1" in info:
                    assert b"loading_loaded_perc:" in info
                    seen.add(b"info")
            if reply == b"$4\r\nhere\r\n":
                break
            time.sleep(0.002)
        assert b"$4\r\nhere" in seen and b"-LOADING" in seen, seen
        assert r.dbsize() == 600001
        raw.close()
    finally:
        srv.stop()
