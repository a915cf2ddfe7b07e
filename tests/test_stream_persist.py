"""Streams persisted (persist/rdb.py's stream types, persist/aof.py's stream records): RDB
files and DUMP payloads both ways with redis-server 7.0 (groups, PELs, consumers, tombstones,
emptied nodes, big values), the older stream type Redis 5/6 wrote and Valkey's newer one, and
the AOF: what a stream command is logged as, restarts, rewrites with and without the RDB
preamble, blocked readers served, transactions, scripts and cross-shard reads."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import hiredis
import pytest

from helpers import REDIS_SERVER, RawConnection, encode, keys_on, wait_until
from server import Server, free_port, tcp, wait_answering
from shardd.persist import rdb
from shardd.persist.aof import scan_records
from shardd.worker.t_stream import Stream

needs_redis = pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason=f"{REDIS_SERVER} is not installed")


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-stream-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def parse(reply: bytes):
    reader = hiredis.Reader()
    reader.feed(reply)
    return reader.gets()


def rich_commands(key: str, other: str) -> list[list[str]]:
    """A stream of several nodes (by count and by bytes), tombstones, an emptied node, entries
    with other fields than the node's first, integers, a long value; two groups with PELs
    over three consumers, a NOACK read, a pending entry deleted from the stream, a group
    whose entries-read is unknown; and a second, empty stream with a group."""
    out = []
    for i in range(1, 260):
        fields = ["f", str(i * 1000), "g", "v" * (i % 40)] if i % 5 else ["other", "x" * 300, "n", str(-i)]
        out.append(["XADD", key, f"{i}-{i % 3}", *fields])
    out += [["XDEL", key, "7-1", "8-2", "150-0", "259-1"],
            ["XTRIM", key, "MINID", "5"],
            ["XGROUP", "CREATE", key, "g1", "0"], ["XGROUP", "CREATE", key, "g2", "100"],
            ["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "10", "STREAMS", key, ">"],
            ["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "5", "STREAMS", key, ">"],
            ["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "3", "NOACK", "STREAMS", key, ">"],
            ["XREADGROUP", "GROUP", "g2", "carol", "COUNT", "20", "STREAMS", key, ">"],
            ["XACK", key, "g1", "9-0", "10-1"],
            ["XCLAIM", key, "g1", "carol", "0", "11-2", "RETRYCOUNT", "4", "JUSTID"],
            ["XDEL", key, "12-0"],
            ["XGROUP", "CREATECONSUMER", key, "g2", "dave"],
            ["XGROUP", "SETID", key, "g2", "120-0", "ENTRIESREAD", "-1"],
            ["XGROUP", "CREATE", other, "lonely", "$", "MKSTREAM"]]
    return out


def stream_state(conn: RawConnection, key: str, active: bool = True) -> list:
    """XINFO STREAM FULL COUNT 0 with the times blanked (and active-time dropped unless
    `active`: redis 7.0 has none), then the XINFO STREAM summary's counters."""
    full = parse(conn.call("XINFO", "STREAM", key, "FULL", "COUNT", "0"))
    for group in full[full.index(b"groups") + 1]:
        for nack in group[group.index(b"pending") + 1]:
            nack[2] = 0
        for consumer in group[group.index(b"consumers") + 1]:
            consumer[consumer.index(b"seen-time") + 1] = 0
            if b"active-time" in consumer:
                i = consumer.index(b"active-time")
                if active:
                    consumer[i + 1] = 0
                else:
                    del consumer[i:i + 2]
            for nack in consumer[consumer.index(b"pending") + 1]:
                nack[1] = 0
    summary = parse(conn.call("XINFO", "STREAM", key))
    return [full, summary[:14]]


# -- DUMP / RESTORE ------------------------------------------------------------------------------

@needs_redis
def test_dump_and_restore_both_ways_with_redis(server, oracle):
    s, o = RawConnection(server.port), RawConnection(oracle.connection_pool.connection_kwargs["port"])
    try:
        s.call("FLUSHALL")
        for cmd in rich_commands("x", "y"):
            o.call(*cmd)
        for key in ("x", "y"):
            payload = parse(o.call("DUMP", key))
            assert s.call("RESTORE", key, "0", payload) == b"+OK\r\n"
            assert stream_state(s, key, active=False) == stream_state(o, key)
            assert s.call("XRANGE", key, "-", "+") == o.call("XRANGE", key, "-", "+")
            back = parse(s.call("DUMP", key))
            assert o.call("RESTORE", key + "2", "0", back) == b"+OK\r\n"
            assert stream_state(o, key + "2") == stream_state(o, key)
        # our copy keeps working like theirs
        for cmd in (["XADD", "x", "300-0", "f", "1"], ["XREADGROUP", "GROUP", "g1", "eve", "STREAMS", "x", ">"],
                    ["XAUTOCLAIM", "x", "g1", "eve", "0", "0", "JUSTID"], ["XINFO", "GROUPS", "x"],
                    ["XTRIM", "x", "MAXLEN", "~", "100"], ["XINFO", "STREAM", "x"]):
            assert s.call(*cmd) == o.call(*cmd), cmd
    finally:
        s.close()
        o.close()


def legacy_payload(s: Stream) -> bytes:
    """A DUMP payload of RDB_TYPE_STREAM_LISTPACKS (15), as Redis 5 and 6 wrote streams: no
    first ID, tombstone or entries-added counters, no entries-read per group."""
    out = bytearray([rdb.TYPE_STREAM_LISTPACKS])
    out += rdb.encode_length(len(s.nodes))
    for node in s.nodes:
        out += rdb.encode_string(rdb._STREAM_ID.pack(*node.master))
        out += rdb.encode_string(rdb._stream_listpack(node))
    for n in (s.length, *s.last_id):
        out += rdb.encode_length(n)
    out += rdb.encode_length(len(s.groups or {}))
    for name, group in sorted((s.groups or {}).items()):
        out += rdb.encode_string(name) + rdb.encode_length(group.last_id[0]) + rdb.encode_length(group.last_id[1])
        out += rdb.encode_length(len(group.pel))
        for sid, nack in group.pel.items():
            out += rdb._STREAM_ID.pack(*sid) + rdb._ms_time(nack.time) + rdb.encode_length(nack.count)
        out += rdb.encode_length(len(group.consumers))
        for cname, consumer in sorted(group.consumers.items()):
            out += rdb.encode_string(cname) + rdb._ms_time(consumer.seen) + rdb.encode_length(len(consumer.pel))
            for sid in consumer.pel:
                out += rdb._STREAM_ID.pack(*sid)
    out += (9).to_bytes(2, "little")
    return bytes(out) + rdb.crc64(bytes(out)).to_bytes(8, "little")


@needs_redis
def test_the_old_stream_type_loads_like_redis_loads_it(server, oracle):
    """Type 15 payloads: entries-added, first ID and the groups' entries-read are estimated on
    load (as Valkey's loader does); redis 7.0 must estimate the same."""
    s, o = RawConnection(server.port), RawConnection(oracle.connection_pool.connection_kwargs["port"])
    try:
        s.call("FLUSHALL")
        for cmd in (["XADD", "x", f"{i}-0", "data", str(i)] for i in range(1, 7)):
            s.call(*cmd)
        for cmd in (["XDEL", "x", "3-0"], ["XGROUP", "CREATE", "x", "g1", "0"], ["XGROUP", "CREATE", "x", "g2", "0"],
                    ["XREADGROUP", "GROUP", "g1", "c11", "COUNT", "4", "STREAMS", "x", ">"],
                    ["XTRIM", "x", "MAXLEN", "=", "2"]):
            s.call(*cmd)
        from shardd.persist.rdb import restore_value
        value = restore_value(parse(s.call("DUMP", "x")))
        payload = legacy_payload(value)
        for conn in (s, o):
            assert conn.call("RESTORE", "old", "0", payload) == b"+OK\r\n"
        assert stream_state(s, "old", active=False) == stream_state(o, "old")
        assert s.call("XINFO", "GROUPS", "old") == o.call("XINFO", "GROUPS", "old")
        info = parse(s.call("XINFO", "STREAM", "old"))
        assert info[info.index(b"entries-added") + 1] == 2
        full = parse(s.call("XINFO", "STREAM", "old", "FULL"))
        consumer = full[full.index(b"groups") + 1][0][13][0]
        assert consumer[3] == consumer[5]               # active-time: the seen-time, the best guess
    finally:
        s.close()
        o.close()


def test_valkeys_stream_type_keeps_active_times(raw):
    """RDB 11 (Valkey, Redis 7.2) writes type 21 with each consumer's active time."""
    raw.call("XADD", "x", "1-1", "f", "v")
    raw.call("XGROUP", "CREATE", "x", "g", "0")
    raw.call("XGROUP", "CREATECONSUMER", "x", "g", "idle")
    raw.call("XREADGROUP", "GROUP", "g", "busy", "STREAMS", "x", ">")
    value = rdb.restore_value(parse(raw.call("DUMP", "x")))   # RDB 10: active time = seen time
    consumers = value.groups[b"g"].consumers
    consumers[b"busy"].active, consumers[b"idle"].active = 12345, -1
    payload = rdb.dump_value(value, version=11)
    assert payload[0] == rdb.TYPE_STREAM_LISTPACKS_3 and rdb.dump_value(value)[0] == rdb.TYPE_STREAM_LISTPACKS_2
    assert raw.call("RESTORE", "y", "0", payload) == b"+OK\r\n"
    full = parse(raw.call("XINFO", "STREAM", "y", "FULL"))
    listed = full[full.index(b"groups") + 1][0][13]
    assert [(c[1], c[5]) for c in listed] == [(b"busy", 12345), (b"idle", -1)]
    assert raw.call("XRANGE", "y", "-", "+") == raw.call("XRANGE", "x", "-", "+")


def test_corrupt_stream_payloads_are_refused(raw):
    raw.call("XADD", "x", "1-1", "f", "v")
    raw.call("XGROUP", "CREATE", "x", "g", "0")
    raw.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">")
    value = rdb.restore_value(parse(raw.call("DUMP", "x")))
    good = rdb.dump_value(value)[:-10]
    refused = 0
    for cut in range(1, len(good)):             # each byte dropped in turn, the footer resealed
        body = good[:cut] + good[cut + 1:] + (10).to_bytes(2, "little")
        try:
            restored = rdb.restore_value(body + rdb.crc64(body).to_bytes(8, "little"))
        except rdb.RdbError:
            refused += 1
            continue
        # what does parse is at least a consistent stream
        assert isinstance(restored, Stream) and restored.length == sum(len(n.ms) for n in restored.nodes)
    assert refused > len(good) // 2


# -- RDB files ------------------------------------------------------------------------------------

def start_redis_on(directory: str, filename: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
                             "--dbfilename", filename, "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_answering(proc, tcp(port, timeout=1), 10):
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"redis-server did not load {filename}")
    return proc, port


@needs_redis
def test_rdb_files_both_ways_with_redis(workdir):
    """shardd's snapshot files (one per worker) load in redis-server; redis-server's dump.rdb
    loads in shardd; the streams come back the same."""
    a, = keys_on(0, 1, "sa")
    b, = keys_on(1, 1, "sb")
    srv = Server(dir=workdir)
    try:
        conn = RawConnection(srv.port)
        for cmd in rich_commands(a, a + "-e") + rich_commands(b, b + "-e"):
            conn.call(*cmd)
        ours = {key: stream_state(conn, key, active=False) for key in (a, b, a + "-e", b + "-e")}
        assert conn.call("SAVE") == b"+OK\r\n"
        conn.close()
    finally:
        srv.stop()
    theirs = {}
    for shard, keys in ((0, (a, a + "-e")), (1, (b, b + "-e"))):
        proc, port = start_redis_on(workdir, f"dump-{shard}.rdb")
        conn = RawConnection(port)
        try:
            for key in keys:
                theirs[key] = stream_state(conn, key)
            if shard == 1:          # and the other way round: a file redis-server writes
                assert conn.call("SAVE") == b"+OK\r\n"
        finally:
            conn.close()
            proc.kill()
            proc.wait(5)
    assert theirs == ours
    other = tempfile.mkdtemp(prefix="shardd-stream-")
    try:
        shutil.copy(os.path.join(workdir, "dump-1.rdb"), os.path.join(other, "dump.rdb"))
        srv = Server(dir=other)
        try:
            conn = RawConnection(srv.port)
            assert stream_state(conn, b, active=False) == ours[b]
            assert stream_state(conn, b + "-e", active=False) == ours[b + "-e"]
            conn.close()
        finally:
            srv.stop()
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_snapshot_round_trip_in_shardd(workdir):
    srv = Server(dir=workdir)
    try:
        conn = RawConnection(srv.port)
        for cmd in rich_commands("x", "y"):
            conn.call(*cmd)
        before = {key: stream_state(conn, key, active=False) for key in ("x", "y")}
        ranges = conn.call("XRANGE", "x", "-", "+")
        conn.call("SAVE")
        conn.close()
    finally:
        srv.stop()
    srv = Server(dir=workdir)
    try:
        conn = RawConnection(srv.port)
        assert {key: stream_state(conn, key, active=False) for key in ("x", "y")} == before
        assert conn.call("XRANGE", "x", "-", "+") == ranges
        conn.close()
    finally:
        srv.stop()


# -- the AOF ----------------------------------------------------------------------------------------

def aof_records(workdir: str) -> list[list[bytes]]:
    out = []
    for shard in (0, 1):
        directory = os.path.join(workdir, "appendonlydir", str(shard))
        for name in sorted(os.listdir(directory)):
            if name.endswith(".incr.aof"):
                with open(os.path.join(directory, name), "rb") as stream:
                    out += [argv for argv, _, _ in scan_records(stream.read())]
    return out


def full_state(port: int, keys: list[str]) -> dict:
    conn = RawConnection(port)
    try:
        return {key: (stream_state(conn, key), conn.call("XRANGE", key, "-", "+")) for key in keys}
    finally:
        conn.close()


def test_aof_logs_effects_and_a_restart_restores_the_streams(workdir):
    a, = keys_on(0, 1, "qa")
    b, = keys_on(1, 1, "qb")
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        r = srv.client()
        for i in range(300):
            r.xadd(a, {"i": i}, maxlen=120, approximate=True)
        r.xadd(a, {"partial": 1}, id="99999999999999-*")
        r.xgroup_create(a, "g", "0")
        r.xreadgroup("g", "alice", {a: ">"}, count=5)
        r.xreadgroup("g", "bob", {a: ">"}, count=5, noack=True)
        r.xreadgroup("g", "alice", {a: "0"})                            # history: counts go up
        first = r.xpending_range(a, "g", "-", "+", 1)[0]["message_id"]
        r.xclaim(a, "g", "carol", 0, [first], idle=5000)
        r.xdel(a, r.xpending_range(a, "g", "-", "+", 2)[1]["message_id"])
        r.xautoclaim(a, "g", "dave", 0, "0", count=3)                  # meets the deleted one
        r.xtrim(a, maxlen=50, approximate=True)
        r.execute_command("XSETID", a, "99999999999999-5", "ENTRIESADDED", "400")
        pipe = r.pipeline(transaction=True)                            # a transaction
        pipe.xadd(a, {"tx": 1})
        pipe.xreadgroup("g", "erin", {a: ">"}, count=1)
        pipe.execute()
        r.eval("redis.call('XADD', KEYS[1], '*', 'lua', '1') "
               "return redis.call('XREADGROUP', 'GROUP', 'g', 'frank', 'COUNT', '1', 'STREAMS', KEYS[1], '>')", 1, a)
        r.xgroup_create(b, "h", "$", mkstream=True)
        waiter = RawConnection(srv.port)                               # a blocked reader served
        waiter.send(encode("XREADGROUP", "GROUP", "h", "gina", "BLOCK", "0", "STREAMS", b, ">"))
        assert wait_until(lambda: r.info("clients")["blocked_clients"] == 1, 5)
        r.xadd(b, {"late": 1})
        assert parse(waiter.read())[0][0] == b.encode()
        waiter.close()
        r.xreadgroup("h", "henry", {b: "0"})                          # history, another worker
        before = full_state(srv.port, [a, b])
    finally:
        srv.stop()
    logged = aof_records(workdir)
    names = {argv[0].upper() for argv in logged}
    assert b"XREADGROUP" not in names and b"XAUTOCLAIM" not in names and b"EVAL" not in names
    assert {b"XCLAIM", b"XGROUP", b"XADD"} <= names
    for argv in logged:
        if argv[0].upper() == b"XADD":
            assert b"*" not in argv[2:4] and b"~" not in argv and not argv[-4].endswith(b"-*")
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        assert full_state(srv.port, [a, b]) == before
    finally:
        srv.stop()


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_aof_rewrite_keeps_the_streams(workdir, preamble):
    srv = Server("--appendonly", "yes", "--aof-use-rdb-preamble", preamble, dir=workdir)
    try:
        conn = RawConnection(srv.port)
        for cmd in rich_commands("x{1}", "y{1}"):
            conn.call(*cmd)
        r = srv.client()
        assert r.bgrewriteaof()
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1
                          and not r.info("persistence")["aof_rewrite_in_progress"], 10)
        conn.call("XADD", "x{1}", "MAXLEN", "~", "100", "*", "after", "rewrite")
        conn.call("XREADGROUP", "GROUP", "g1", "zed", "COUNT", "2", "STREAMS", "x{1}", ">")
        conn.close()
        before = full_state(srv.port, ["x{1}", "y{1}"])
    finally:
        srv.stop()
    srv = Server("--appendonly", "yes", "--aof-use-rdb-preamble", preamble, dir=workdir)
    try:
        after = full_state(srv.port, ["x{1}", "y{1}"])
        assert after == before
    finally:
        srv.stop()


def test_a_served_stream_write_is_not_lost_with_appendfsync_always(workdir):
    """Each XADD with a generated ID is logged with the ID it got: a replay gives the same IDs."""
    srv = Server("--appendonly", "yes", "--appendfsync", "always", dir=workdir)
    try:
        r = srv.client()
        ids = [r.xadd("s", {"n": i}) for i in range(50)]
    finally:
        srv.stop()
    srv = Server("--appendonly", "yes", dir=workdir)
    try:
        assert [entry[0] for entry in srv.client().xrange("s")] == ids
    finally:
        srv.stop()
