"""The append-only file per worker (shardd/persist/aof.py): Valkey 7's multi-part layout, what
is logged (relative expiries as absolute times, SPOP as SREM, served blocking pops, MULTI/EXEC,
expired keys as DEL), replay at start, torn tails, BGREWRITEAOF and the automatic rewrite,
appendonly at runtime, INFO persistence, shardd-check-aof, and interop with redis-server
(which loads a shard's AOF directory, and whose own AOF shardd loads)."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import redis

from helpers import REDIS_SERVER, RawConnection, keys_on, wait_until, worker_of
from server import ROOT, Server, free_port, server_env, tcp, wait_answering

MANIFEST = "appendonly.aof.manifest"


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-aof-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def aof_server(workdir: str, *args: str, **kw) -> Server:
    return Server("--appendonly", "yes", *args, dir=workdir, **kw)


def shard_dir(workdir: str, shard: int) -> str:
    return os.path.join(workdir, "appendonlydir", str(shard))


def manifest_lines(workdir: str, shard: int) -> list[str]:
    with open(os.path.join(shard_dir(workdir, shard), MANIFEST)) as stream:
        return [line for line in stream.read().splitlines() if not line.startswith("#")]


def records(path: str) -> list[list[bytes]]:
    from shardd.persist.aof import scan_records
    with open(path, "rb") as stream:
        return [argv for argv, _, _ in scan_records(stream.read())]


def incr_records(workdir: str, shard: int) -> list[list[bytes]]:
    out = []
    for line in manifest_lines(workdir, shard):
        name = line.split()[1]
        if ".incr." in name:
            out += records(os.path.join(shard_dir(workdir, shard), name))
    return out


def failed_start(srv: Server) -> str:
    """A server expected to stop during its start: its exit status is not 0; its log."""
    assert srv.proc.wait(20) != 0
    srv.stop()
    with open(srv.log_path, errors="replace") as stream:
        return stream.read()


def kill_tree(srv: Server) -> None:
    """SIGKILL every process of our own server (the supervisor and its children)."""
    pids = [p.pid for p in srv.children()] + [srv.proc.pid]
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    srv.proc.wait(10)
    from server import reap
    reap(pids)
    srv.log.close()


def worker_pid(r: redis.Redis, shard: int) -> int:
    return int(r.info("shards")[f"shard{shard}"]["pid"])


def kill_worker(srv: Server, shard: int) -> None:
    """SIGKILL one worker of our own server and wait until the supervisor's new one serves."""
    r = srv.client()
    pid = worker_pid(r, shard)
    os.kill(pid, 9)

    def back() -> bool:
        try:
            return worker_pid(r, shard) != pid and r.dbsize() >= 0
        except redis.RedisError:
            return False
    assert wait_until(back, 20), srv.output()[-2000:]


def snapshot(r: redis.Redis, dbs: int = 3) -> dict:
    """Every key of the first dbs: (db, key) → (type, value, absolute expiry in ms)."""
    out = {}
    for db in range(dbs):
        r.execute_command("SELECT", db)
        for key in r.keys("*"):
            kind = r.type(key)
            if kind == b"string":
                value = r.get(key)
            elif kind == b"list":
                value = r.lrange(key, 0, -1)
            elif kind == b"hash":
                value = r.hgetall(key)
            elif kind == b"set":
                value = r.smembers(key)
            elif kind == b"zset":
                value = r.zrange(key, 0, -1, withscores=True)
            else:
                value = None
            out[(db, key)] = (kind, value, r.pexpiretime(key))
    r.execute_command("SELECT", 0)
    return out


def random_commands(rng: random.Random, n: int) -> list[list]:
    """A mix of every family's writes, relative and absolute expiries, non-deterministic and
    float commands, transactions (a list of commands) and cross-shard ones."""
    keys = [f"k{i}" for i in range(12)] + [f"{{t}}k{i}" for i in range(6)]
    now_ms = int(time.time() * 1000)

    def k() -> str:
        return rng.choice(keys)

    def v() -> str:
        return rng.choice(["a", "bb", "12", "-3", "0.5", "x" * rng.randint(1, 60)])

    makers = [
        lambda: ["SET", k(), v()],
        lambda: ["SET", k(), v(), "EX", rng.randint(50, 500)],
        lambda: ["SET", k(), v(), "PX", rng.randint(50000, 500000), "GET"],
        lambda: ["SET", k(), v(), "PXAT", now_ms + rng.randint(10000, 900000)],
        lambda: ["SET", k(), v(), "KEEPTTL"],
        lambda: ["SETEX", k(), rng.randint(100, 900), v()],
        lambda: ["PSETEX", k(), rng.randint(100000, 900000), v()],
        lambda: ["APPEND", k(), v()],
        lambda: ["INCRBY", f"n{rng.randint(0, 3)}", rng.randint(-5, 5)],
        lambda: ["INCRBYFLOAT", f"f{rng.randint(0, 3)}", rng.choice(["0.1", "1.5e3", "-2.25"])],
        lambda: ["EXPIRE", k(), rng.randint(100, 900)],
        lambda: ["PEXPIRE", k(), rng.randint(100000, 900000), rng.choice(["NX", "XX", "GT", "LT"])],
        lambda: ["EXPIREAT", k(), now_ms // 1000 + rng.randint(100, 900)],
        lambda: ["EXPIRE", k(), -1],
        lambda: ["PERSIST", k()],
        lambda: ["GETEX", k(), "EX", rng.randint(100, 900)],
        lambda: ["GETEX", k(), "PERSIST"],
        lambda: ["DEL", k()],
        lambda: ["RPUSH", k(), v(), v()],
        lambda: ["LPUSH", k(), v()],
        lambda: ["LPOP", k()],
        lambda: ["RPOP", k(), 2],
        lambda: ["LMOVE", k(), k(), "LEFT", "RIGHT"],
        lambda: ["LTRIM", k(), 0, 3],
        lambda: ["HSET", k(), v(), v(), v(), v()],
        lambda: ["HINCRBYFLOAT", k(), "fl", "1.1"],
        lambda: ["HDEL", k(), v()],
        lambda: ["SADD", k(), *[str(rng.randint(0, 30)) for _ in range(4)]],
        lambda: ["SADD", k(), v(), v()],
        lambda: ["SPOP", k()],
        lambda: ["SPOP", k(), rng.randint(1, 3)],
        lambda: ["SREM", k(), v()],
        lambda: ["ZADD", k(), rng.randint(-5, 5), v(), rng.random(), v()],
        lambda: ["ZINCRBY", k(), "0.3", v()],
        lambda: ["ZPOPMIN", k()],
        lambda: ["PFADD", f"h{rng.randint(0, 2)}", v(), v()],
        lambda: ["SETBIT", f"b{rng.randint(0, 2)}", rng.randint(0, 100), 1],
        lambda: ["RENAME", f"{{t}}k{rng.randint(0, 5)}", f"{{t}}k{rng.randint(0, 5)}"],
        lambda: ["COPY", f"{{t}}k{rng.randint(0, 5)}", f"{{t}}k{rng.randint(0, 5)}", "REPLACE"],
        lambda: ["SMOVE", k(), k(), v()],                         # often across shards
        lambda: ["SUNIONSTORE", k(), k(), k()],
        lambda: ["MSET", k(), v(), k(), v()],
        lambda: [["SET", f"{{t}}k{rng.randint(0, 5)}", v(), "EX", 300], ["INCRBYFLOAT", "{t}n", "0.5"],
                 ["SPOP", f"{{t}}k{rng.randint(0, 5)}"]],
    ]
    return [rng.choice(makers)() for _ in range(n)]


def run_mix(r: redis.Redis, commands: list) -> None:
    for command in commands:
        try:
            if command and isinstance(command[0], list):
                pipe = r.pipeline(transaction=True)
                for sub in command:
                    pipe.execute_command(*sub)
                pipe.execute(raise_on_error=False)
            else:
                r.execute_command(*command)
        except redis.ResponseError:
            pass


# -- layout and replay ------------------------------------------------------------------------------

def test_layout_and_replay_of_a_random_mix(workdir):
    srv = aof_server(workdir)
    try:
        r = srv.client()
        rng = random.Random(6)
        for db in (0, 2):
            r.execute_command("SELECT", db)
            run_mix(r, random_commands(rng, 500))
        r.execute_command("SELECT", 0)
        r.set("gone", "x", px=1)                     # expires: logged as DEL
        r.set("short", "y", px=30)
        time.sleep(0.05)
        assert r.get("short") is None
        before = snapshot(r)
        assert len(before) > 20
    finally:
        srv.stop()
    for shard in (0, 1):
        assert manifest_lines(workdir, shard) == ["file appendonly.aof.1.base.rdb seq 1 type b",
                                                  "file appendonly.aof.1.incr.aof seq 1 type i"]
        assert open(os.path.join(shard_dir(workdir, shard), "appendonly.aof.1.base.rdb"), "rb").read(5) == b"REDIS"
    logged = incr_records(workdir, 0) + incr_records(workdir, 1)
    names = {argv[0].upper() for argv in logged}
    # Relative expiries and non-deterministic commands never reach the log as such.
    assert not names & {b"EXPIRE", b"PEXPIRE", b"SETEX", b"PSETEX", b"SPOP", b"INCRBYFLOAT", b"HINCRBYFLOAT",
                        b"GETEX", b"SWAPDB"}
    assert not [a for a in logged if a[0].upper() == b"SET" and {b"EX", b"PX"} & {x.upper() for x in a[3:]}]
    assert {b"SELECT", b"PEXPIREAT", b"SREM", b"MULTI", b"EXEC", b"DEL"} <= names
    assert [b"DEL", b"short"] in logged
    srv = aof_server(workdir)
    try:
        assert snapshot(srv.client()) == before
    finally:
        srv.stop()


def test_blocking_pops_and_cross_db_commands(workdir):
    srv = aof_server(workdir)
    try:
        r = srv.client()
        key, dest = keys_on(0, 2, "bl")
        import threading
        results = []
        waiter = threading.Thread(target=lambda: results.append(srv.client().blpop(key, 5)))
        waiter.start()
        time.sleep(0.3)
        r.rpush(key, "a", "b", "c")
        waiter.join(10)
        assert results == [(key.encode(), b"a")]
        assert r.blmove(key, dest, 1, "RIGHT", "LEFT") == b"c"
        r.zadd("zz", {"m1": 1, "m2": 2})
        assert r.bzpopmin("zz", 1) == (b"zz", b"m1", 1.0)
        # Commands that touch other dbs.
        r.mset({"m": "1", "c": "2", "f": "3"})
        assert r.move("m", 1) and r.copy("c", "c", destination_db=2)
        r.execute_command("SELECT", 1)
        r.set("one", "1", ex=300)
        r.execute_command("SELECT", 0)
        assert r.swapdb(1, 2)
        r.execute_command("SELECT", 3)
        r.set("gone", "x")
        r.execute_command("FLUSHDB")
        r.execute_command("SELECT", 0)
        before = snapshot(r, 4)
    finally:
        srv.stop()
    logged = incr_records(workdir, 0) + incr_records(workdir, 1)
    names = {argv[0].upper() for argv in logged}
    assert not names & {b"BLPOP", b"BLMOVE", b"BZPOPMIN"}
    assert [b"LPOP", key.encode()] in logged and [b"ZREM", b"zz", b"m1"] in logged
    assert [b"SWAPDB", b"1", b"2"] in logged
    srv = aof_server(workdir)
    try:
        assert snapshot(srv.client(), 4) == before
    finally:
        srv.stop()


LIBRARY = """#!lua name=aoflib
redis.register_function('bump', function(keys, args)
  redis.call('SET', keys[1], redis.call('TIME')[1])
  return redis.call('INCRBY', keys[2], args[1])
end)"""


def test_scripts_are_logged_as_their_effects_and_functions_persist(workdir):
    a, b = "{s}a", "{s}b"
    srv = aof_server(workdir)
    try:
        r = srv.client()
        r.sadd("{s}set", *range(20))
        popped = r.eval("redis.call('SPOP', KEYS[1], 3); redis.call('SET', KEYS[2], tostring(math.random()));"
                        "local n = redis.call('SCARD', KEYS[1]);"
                        "redis.call('SELECT', 1); redis.call('SET', KEYS[2], 'in-db-1'); return n",
                        2, "{s}set", a)
        assert popped == 17
        r.function_load(LIBRARY)
        assert r.fcall("bump", 2, a, b, 5) == 5
        sha = r.script_load("return redis.call('INCR', KEYS[1])")
        assert r.evalsha(sha, 1, "{s}n") == 1
        before = snapshot(r, 2)
    finally:
        srv.stop()
    logged = incr_records(workdir, 0) + incr_records(workdir, 1)
    names = {argv[0].upper() for argv in logged}
    assert not names & {b"EVAL", b"EVALSHA", b"FCALL", b"SPOP"}
    assert {b"MULTI", b"RESTORE", b"FUNCTION"} <= names
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert snapshot(r, 2) == before
        assert r.fcall("bump", 2, a, b, 1) == 6            # the library came back
        assert srv.client().bgrewriteaof()
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1, 10)
    finally:
        srv.stop()
    srv = aof_server(workdir)                           # the library is in the new base
    try:
        assert srv.client().fcall("bump", 2, a, b, 1) == 7
    finally:
        srv.stop()


def test_writes_after_a_busy_script_are_still_logged(workdir):
    """A worker answering -BUSY while a script runs past busy-reply-threshold swaps its command
    runner for a while; the AOF's logging runner must be there again afterwards."""
    key, other = keys_on(0, 2, "busy:")
    srv = aof_server(workdir, "--busy-reply-threshold", "100")
    try:
        r = srv.client()
        r.set(key, "before")
        result: dict = {}

        def spin() -> None:
            try:
                srv.client(socket_timeout=30).eval("while true do end", 1, key)
            except redis.ResponseError as exc:
                result["error"] = str(exc)
        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        raw = RawConnection(srv.port)
        try:
            assert wait_until(lambda: raw.call("GET", other).startswith(b"-BUSY "), 10)
            assert raw.call("SCRIPT", "KILL") == b"+OK\r\n"
        finally:
            raw.close()
        thread.join(10)
        assert "Script killed" in result["error"]
        r.set(key, "after")
        r.set(other, "too")
    finally:
        srv.stop()
    logged = incr_records(workdir, 0)
    assert [b"SET", key.encode(), b"after"] in logged
    assert [b"SET", other.encode(), b"too"] in logged
    srv = aof_server(workdir)
    try:
        assert srv.client().mget(key, other) == [b"after", b"too"]
    finally:
        srv.stop()


def test_appendonly_turned_on_while_loading_starts_after_the_load(workdir):
    """CONFIG SET appendonly yes while the RDB loads (answered between batches) must not fork
    its rewrite from a half-loaded keyspace: the AOF starts once the load is done, with all
    of it, and logs what comes after."""
    n = 30_000              # 3 batches of 4096 keys per worker: -LOADING answered in between
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"k{i}", "v")
        pipe.execute()
        assert r.save()
    finally:
        srv.stop()
    srv = Server("--key-load-delay", "50", dir=workdir)      # 50 µs a key: a load of about 2 s
    try:
        r = srv.client()
        assert r.info("persistence")["loading"] == 1
        assert r.config_set("appendonly", "yes")
        assert wait_until(lambda: r.info("persistence")["loading"] == 0, 30)
        r.set("after-load", "1")
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1, 20)
        r.set("after-rewrite", "2")
        assert r.dbsize() == n + 2
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert r.dbsize() == n + 2
        assert r.mget("k0", f"k{n - 1}", "after-load", "after-rewrite") == [b"v", b"v", b"1", b"2"]
    finally:
        srv.stop()


def test_a_settled_unit_survives_a_peer_rewrite_and_a_kill(workdir):
    """A cross-shard MSET is acknowledged; one worker then runs a long script while the other
    rewrites its AOF (its incr files, with the unit's notes, are gone), and the server is
    killed. The busy worker must have written the unit's settled note before the script, or
    at the next start it finds no trace of the unit on its peer and drops its half."""
    a, b = keys_on(0, 1, "unit:")[0], keys_on(1, 1, "unit:")[0]
    busy = ("local t = redis.call('TIME') while true do local n = redis.call('TIME') "
            "if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1500000 then break end end return 1")
    srv = aof_server(workdir, "--appendfsync", "always")
    try:
        r = srv.client()
        assert r.mset({a: "v1", b: "v1"})
        def spin() -> None:
            try:
                srv.client(socket_timeout=20).eval(busy, 1, a)
            except redis.ConnectionError:       # the kill below ends it
                pass
        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        time.sleep(0.2)
        # The idle worker rewrites at once, the busy one after its script (so the reply, and
        # INFO, would wait for the script: not read, and a fixed pause).
        raw = srv.connect()
        raw.sendall(b"BGREWRITEAOF\r\n")
        time.sleep(0.8)
        assert thread.is_alive()
        kids = srv.children()
        srv.proc.kill()
        for kid in kids:
            kid.kill()
        raw.close()
        thread.join(10)
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        assert srv.client().mget(a, b) == [b"v1", b"v1"]
        assert "Dropped" not in srv.output()
    finally:
        srv.stop()


def test_rdb_preamble_off_and_bgrewriteaof(workdir):
    srv = aof_server(workdir, "--aof-use-rdb-preamble", "no")
    try:
        r = srv.client()
        run_mix(r, random_commands(random.Random(2), 300))
        r.rpush("biglist", *range(200))
        assert r.bgrewriteaof() is True
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1, 10)
        info = r.info("persistence")
        assert info["aof_rewrite_in_progress"] == 0 and info["aof_last_bgrewrite_status"] == "ok"
        r.set("after", "rewrite")
        before = snapshot(r)
    finally:
        srv.stop()
    for shard in (0, 1):
        assert manifest_lines(workdir, shard) == ["file appendonly.aof.2.base.aof seq 2 type b",
                                                  "file appendonly.aof.2.incr.aof seq 2 type i"]
        assert sorted(os.listdir(shard_dir(workdir, shard))) == [
            "appendonly.aof.2.base.aof", "appendonly.aof.2.incr.aof", MANIFEST]
        base = records(os.path.join(shard_dir(workdir, shard), "appendonly.aof.2.base.aof"))
        assert base[0][0] == b"SELECT" and {a[0] for a in base} <= {b"SELECT", b"SET", b"RPUSH", b"SADD", b"HSET",
                                                                   b"ZADD", b"PEXPIREAT"}
    srv = aof_server(workdir)
    try:
        assert snapshot(srv.client()) == before
    finally:
        srv.stop()


def test_bgrewriteaof_replies_and_info(workdir):
    srv = aof_server(workdir, "--enable-debug-command", "yes")
    try:
        r = srv.client()
        assert r.info("persistence")["aof_enabled"] == 1
        r.execute_command("DEBUG", "POPULATE", "200000", "key", "64")
        raw = RawConnection(srv.port)
        assert raw.call("BGREWRITEAOF") == b"+Background append only file rewriting started\r\n"
        assert raw.call("BGREWRITEAOF") == b"-ERR Background append only file rewriting already in progress\r\n"
        raw.close()
        assert r.info("persistence")["aof_rewrite_in_progress"] == 1
        r.set("during", "rewrite")                   # goes to the new incr file
        assert wait_until(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0, 20)
        info = r.info("persistence")
        assert info["aof_rewrites"] == 1 and info["aof_base_size"] > 1000
        assert info["aof_current_size"] >= info["aof_base_size"]
        for shard in (0, 1):
            assert manifest_lines(workdir, shard)[0] == "file appendonly.aof.2.base.rdb seq 2 type b"
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert r.dbsize() == 200001 and r.get("during") == b"rewrite"
    finally:
        srv.stop()


def test_auto_rewrite_on_growth(workdir):
    srv = aof_server(workdir, "--auto-aof-rewrite-min-size", "20kb", "--auto-aof-rewrite-percentage", "100")
    try:
        r = srv.client()
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"key:{i % 50}", "v" * 40)
        pipe.execute()
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1, 10)
        # Writes during a rewrite grow the new incr file: rewrites follow until it is small.
        assert wait_until(lambda: r.info("persistence")["aof_current_size"] < 40000, 10)
    finally:
        srv.stop()


# -- torn tails and MULTI ---------------------------------------------------------------------------

def test_torn_tail_and_unfinished_multi(workdir):
    key = keys_on(0, 1, "torn")[0]
    srv = aof_server(workdir)
    try:
        srv.client().set(key, "kept")
    finally:
        srv.stop()
    incr = os.path.join(shard_dir(workdir, 0), "appendonly.aof.1.incr.aof")
    good = os.path.getsize(incr)
    with open(incr, "ab") as stream:
        stream.write(b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$4\r\nlost\r\n*3\r\n$3\r\nSET\r\n$1\r\nz\r\n$3\r\nab"
                     % (len(key), key.encode()))
    # aof-load-truncated no: the start stops, naming the problem.
    srv = aof_server(workdir, "--aof-load-truncated", "no", wait=False)
    assert "Unexpected end of file" in failed_start(srv)
    # yes: the torn record and the MULTI it is part of are dropped, the file is cut back.
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert r.get(key) == b"kept" and r.get("z") is None
        assert os.path.getsize(incr) == good
        out = srv.output()
        assert "Truncating the AOF appendonly.aof.1.incr.aof" in out
        r.set(key, "next")
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        assert srv.client().get(key) == b"next"
    finally:
        srv.stop()


def test_complete_multi_without_exec_at_the_tail_is_reverted(workdir):
    key = keys_on(1, 1, "mx")[0]
    srv = aof_server(workdir)
    try:
        srv.client().set(key, "1")
    finally:
        srv.stop()
    incr = os.path.join(shard_dir(workdir, 1), "appendonly.aof.1.incr.aof")
    with open(incr, "ab") as stream:
        stream.write(b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key.encode()))
    srv = aof_server(workdir)
    try:
        assert srv.client().get(key) == b"1"
        assert "Revert incomplete MULTI/EXEC transaction" in srv.output()
    finally:
        srv.stop()


def test_bad_format_stops_the_start(workdir):
    srv = aof_server(workdir)
    try:
        srv.client().dbsize()            # every worker has started (and written its AOF)
    finally:
        srv.stop()
    with open(os.path.join(shard_dir(workdir, 0), "appendonly.aof.1.incr.aof"), "ab") as stream:
        stream.write(b"+OK\r\n*1\r\n$4\r\nPING\r\n")
    srv = aof_server(workdir, wait=False)
    assert "Bad file format" in failed_start(srv)


# -- appendonly at runtime, and from the RDB ----------------------------------------------------------

def test_config_set_appendonly_at_runtime(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        r.set("before", "1")
        r.rpush("list", "a", "b")
        assert r.info("persistence")["aof_enabled"] == 0
        assert r.config_set("appendonly", "yes") is True
        assert wait_until(lambda: r.info("persistence")["aof_enabled"] == 1
                          and r.info("persistence")["aof_rewrite_in_progress"] == 0, 10)
        r.set("after", "2")
        r.lpush("list", "c")
        for shard in (0, 1):
            lines = manifest_lines(workdir, shard)
            assert lines[0].startswith("file appendonly.aof.1.base.rdb") and ".incr.aof" in lines[1]
        assert r.config_set("appendonly", "no") is True
        assert r.info("persistence")["aof_enabled"] == 0           # at once, on every worker
        r.set("unlogged", "3")
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert r.get("before") == b"1" and r.get("after") == b"2" and r.get("unlogged") is None
        assert r.lrange("list", 0, -1) == [b"c", b"a", b"b"]
    finally:
        srv.stop()


def test_missing_aof_loads_the_rdb_then_starts_an_aof(workdir):
    srv = Server(dir=workdir)
    try:
        r = srv.client()
        r.mset({"x": "1", "y": "2"})
        r.set("ttl", "v", ex=500)
        assert r.save() is True
    finally:
        srv.stop()
    srv = aof_server(workdir)
    try:
        r = srv.client()
        assert r.mget("x", "y") == [b"1", b"2"] and 490 < r.ttl("ttl") <= 500
        r.set("z", "3")
    finally:
        srv.stop()
    os.unlink(os.path.join(workdir, "dump-0.rdb"))
    os.unlink(os.path.join(workdir, "dump-1.rdb"))
    srv = aof_server(workdir)
    try:
        assert srv.client().mget("x", "y", "z") == [b"1", b"2", b"3"]
    finally:
        srv.stop()


# -- shardd-check-aof ---------------------------------------------------------------------------------

def check_aof(*args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardd.persist.check_aof", *args], input=answer,
                          capture_output=True, text=True, env=server_env(), cwd=str(ROOT), timeout=60)


def test_check_aof_reports_and_fixes_a_torn_tail(workdir):
    srv = aof_server(workdir)
    try:
        r = srv.client()
        for i in range(50):
            r.set(f"k{i}", i)
    finally:
        srv.stop()
    manifest = os.path.join(shard_dir(workdir, 0), MANIFEST)
    done = check_aof(manifest)
    assert done.returncode == 0, done.stdout
    assert "RDB preamble is OK" in done.stdout and "All AOF files and manifest are valid" in done.stdout
    incr = os.path.join(shard_dir(workdir, 0), "appendonly.aof.1.incr.aof")
    size = os.path.getsize(incr)
    with open(incr, "ab") as stream:
        stream.write(b"*3\r\n$3\r\nSET\r\n$1\r\n")
    done = check_aof(manifest)
    assert done.returncode == 1
    assert f"ok_up_to={size}," in done.stdout and "diff=17" in done.stdout and "Reached EOF" in done.stdout
    assert "is not valid. Use the --fix option" in done.stdout
    assert check_aof("--fix", manifest, answer="n\n").returncode == 1
    done = check_aof("--fix", manifest, answer="y\n")
    assert done.returncode == 0 and "Successfully truncated AOF appendonly.aof.1.incr.aof" in done.stdout
    assert os.path.getsize(incr) == size
    with open(incr, "ab") as stream:
        stream.write(b"*1\r\nPING\r\n")
    done = check_aof(incr)
    assert done.returncode == 1 and f"0x{size + 4:16x}: Expected prefix '$'" in done.stdout


# -- interop with redis-server ---------------------------------------------------------------------------

def redis_server(*args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_answering(proc, tcp(port, timeout=1), 20)
    return proc, port


@pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="no redis-server")
def test_redis_server_loads_a_shard_aof_and_shardd_loads_redis_aof(workdir):
    srv = aof_server(workdir)
    try:
        r = srv.client()
        rng = random.Random(9)
        run_mix(r, random_commands(rng, 300))
        mine = {key: value for key, value in snapshot(r, 1).items() if worker_of(key[1]) == 0}
    finally:
        srv.stop()
    # Shard 0's directory is a Redis 7 multi-part AOF of its own: redis-server loads it.
    proc, port = redis_server("--dir", os.path.join(workdir, "appendonlydir"), "--appenddirname", "0",
                              "--appendonly", "yes")
    try:
        theirs = snapshot(redis.Redis(port=port), 1)
    finally:
        proc.kill()                              # our own redis-server, by its PID
        proc.wait(5)
    assert theirs == mine
    # redis-server's own AOF (a manifest directly in appenddirname): every worker keeps its slots.
    other = tempfile.mkdtemp(prefix="shardd-redis-aof-")
    try:
        proc, port = redis_server("--dir", other, "--appendonly", "yes")
        try:
            client = redis.Redis(port=port)
            run_mix(client, random_commands(random.Random(4), 300))
            client.execute_command("SELECT", 1)
            client.set("in-db-1", "x")
            client.execute_command("SELECT", 0)
            expected = snapshot(client, 2)
        finally:
            proc.terminate()
            proc.wait(10)
        srv = aof_server(other)
        try:
            assert snapshot(srv.client(), 2) == expected
            assert os.path.exists(os.path.join(other, "appendonlydir", "0", MANIFEST))
        finally:
            srv.stop()
    finally:
        shutil.rmtree(other, ignore_errors=True)
