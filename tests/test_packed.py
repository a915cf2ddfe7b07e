"""Small hashes, sets and sorted sets rest packed in the keyspace (worker/packed.py): in-process
tests of the round trips and their bookkeeping, and server tests after a tick has packed them."""
from __future__ import annotations

import copy
import io
import pickle
import random
import time

import pytest

from shardd import commands
from shardd.errors import CommandError
from shardd.persist import rdb
from shardd.slots import keyslot
from shardd.worker import keyspace, t_hash, t_keys, t_set, t_string, t_zset  # noqa: F401  (handlers)
from shardd.worker.context import Ctx
from shardd.worker.keyspace import Db, unpacked
from shardd.worker.packed import IDLE_S, PACK_MAX, Packed

CONFIG = {"__slot_range__": (0, 16383), "proto-max-bulk-len": 512 << 20,
          "hash-max-listpack-entries": 128, "hash-max-listpack-value": 64,
          "set-max-intset-entries": 512, "set-max-listpack-entries": 128,
          "set-max-listpack-value": 64, "zset-max-listpack-entries": 128,
          "zset-max-listpack-value": 64}


@pytest.fixture
def ctx() -> Ctx:
    return Ctx([Db(0)], dict(CONFIG))


def run(ctx: Ctx, *args: object) -> bytes:
    argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    spec = commands.lookup_argv(argv)
    ctx.slot = keyslot(argv[spec.first_key]) if spec.first_key and len(argv) > spec.first_key else 0
    return spec.worker_handler(ctx, argv)


def stored(ctx: Ctx, key: bytes):
    """What the keyspace holds for key, without unpacking it."""
    return ctx.db.data[keyslot(key)][key]


def rest(db: Db) -> None:
    """What the ticks do to a quiet db: new small values packed, unpacked ones packed again."""
    db.settle()
    db.pack_idle(0)


def fill(ctx: Ctx) -> None:
    run(ctx, "HSET", "h", "f1", "v1", "f2", "v2", "f3", "v3")
    run(ctx, "SADD", "si", "3", "1", "2")
    run(ctx, "SADD", "sl", "a", "b", "c")
    run(ctx, "ZADD", "z", "2", "b", "1", "a", "-0", "zero", "1", "c")


# -- in-process ---------------------------------------------------------------------------------

def test_settle_packs_small_values_and_lookup_unpacks(ctx: Ctx) -> None:
    fill(ctx)
    before = {k: copy.deepcopy(ctx.db.lookup(k, keyslot(k))) for k in (b"h", b"si", b"sl", b"z")}
    rest(ctx.db)
    for key, value in before.items():
        packed = stored(ctx, key)
        assert isinstance(packed, Packed), key
        assert unpacked(packed) == value
        again = ctx.db.lookup(key, keyslot(key))
        assert type(again) is type(value) and again == value
        assert stored(ctx, key) is again              # unpacked in place until the next settle
    assert run(ctx, "HGETALL", "h") == b"*6\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n$2\r\nf3\r\n$2\r\nv3\r\n"
    assert run(ctx, "ZRANGE", "z", "0", "-1", "WITHSCORES") == (
        b"*8\r\n$4\r\nzero\r\n$1\r\n0\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nc\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n")
    assert run(ctx, "SMEMBERS", "si") == b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"


def test_values_in_use_stay_unpacked_until_idle(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ctx.db
    monkeypatch.setattr(keyspace, "lru_clock", 1000)
    run(ctx, "HSET", "h", "f", "v")
    db.settle()
    assert isinstance(stored(ctx, b"h"), Packed)                   # new: packed at the next tick
    assert run(ctx, "HGET", "h", "f") == b"$1\r\nv\r\n"
    db.settle()
    assert type(stored(ctx, b"h")) is t_hash.Hash                   # in use: stays a container
    monkeypatch.setattr(keyspace, "lru_clock", 1001)
    run(ctx, "HSET", "h", "g", "w")                                 # used again
    monkeypatch.setattr(keyspace, "lru_clock", 1001 + IDLE_S - 1)
    db.pack_idle(IDLE_S)
    assert type(stored(ctx, b"h")) is t_hash.Hash
    monkeypatch.setattr(keyspace, "lru_clock", 1001 + IDLE_S)
    db.pack_idle(IDLE_S)
    assert isinstance(stored(ctx, b"h"), Packed)                   # idle: packed again
    assert db.lookup(b"h", keyslot(b"h")) == {b"f": b"v", b"g": b"w"}
    assert not db.warm or b"h" in db.warm


def test_object_encoding_and_type_of_packed_values(ctx: Ctx) -> None:
    fill(ctx)
    rest(ctx.db)
    for key, kind, encoding in ((b"h", b"hash", b"listpack"), (b"si", b"set", b"intset"),
                                (b"sl", b"set", b"listpack"), (b"z", b"zset", b"listpack")):
        value = stored(ctx, key)
        assert t_keys.TYPE_NAMES[type(value)] == kind              # SCAN TYPE reads stored values
        assert t_keys.OBJECT_ENCODINGS[type(value)](value) == encoding
        rest(ctx.db)
        assert run(ctx, "OBJECT", "ENCODING", key) == b"$%d\r\n%s\r\n" % (len(encoding), encoding)
        rest(ctx.db)
        assert run(ctx, "TYPE", key) == b"+%s\r\n" % kind


def test_big_and_hashtable_values_stay_containers(ctx: Ctx) -> None:
    run(ctx, "HSET", "long", "f", "x" * 100)                      # hashtable: a long value
    run(ctx, "SADD", "many", *range(PACK_MAX + 1))                 # intset, but over PACK_MAX
    run(ctx, "ZADD", "zbig", *[x for i in range(200) for x in (i, f"m{i}")])   # skiplist
    rest(ctx.db)
    for key in (b"long", b"many", b"zbig"):
        assert not isinstance(stored(ctx, key), Packed)


def test_writes_after_packing_are_kept(ctx: Ctx) -> None:
    fill(ctx)
    rest(ctx.db)
    assert run(ctx, "HSET", "h", "f4", "v4") == b":1\r\n"
    assert run(ctx, "SREM", "sl", "a") == b":1\r\n"
    assert run(ctx, "ZINCRBY", "z", "5", "a") == b"$1\r\n6\r\n"
    rest(ctx.db)
    assert run(ctx, "HGET", "h", "f4") == b"$2\r\nv4\r\n"
    assert run(ctx, "SISMEMBER", "sl", "a") == b":0\r\n"
    assert run(ctx, "ZSCORE", "z", "a") == b"$1\r\n6\r\n"
    assert run(ctx, "HDEL", "h", "f1", "f2", "f3", "f4") == b":4\r\n"     # emptied: deleted
    assert ctx.db.lookup(b"h", keyslot(b"h")) is None


def test_growing_past_listpack_converts_and_stops_packing(ctx: Ctx) -> None:
    run(ctx, "SADD", "s", "1", "2")
    rest(ctx.db)
    run(ctx, "SADD", "s", "abc")                                   # intset → listpack
    rest(ctx.db)
    assert type(stored(ctx, b"s")) is t_set.PackedListpackSet
    run(ctx, "SADD", "s", "x" * 100)                               # → hashtable
    rest(ctx.db)
    assert type(stored(ctx, b"s")) is t_set.Set
    assert run(ctx, "OBJECT", "ENCODING", "s") == b"$9\r\nhashtable\r\n"


def test_used_memory_bookkeeping_returns_to_zero(ctx: Ctx) -> None:
    db = ctx.db
    rng = random.Random(11)
    for step in range(3000):
        key = b"k%d" % rng.randrange(40)
        command = rng.choice((
            ("HSET", key, b"f%d" % rng.randrange(8), b"v" * rng.randrange(1, 80)),
            ("SADD", key, rng.randrange(20)), ("ZADD", key, rng.randrange(10), b"m%d" % rng.randrange(10)),
            ("DEL", key), ("SET", key, b"x" * rng.randrange(30)), ("EXISTS", key),
            ("HDEL", key, b"f%d" % rng.randrange(8)), ("SREM", key, rng.randrange(20))))
        try:
            run(ctx, *command)
        except CommandError:
            pass                                                   # WRONGTYPE
        if step % 7 == 0:
            rest(db)
    rest(db)
    assert db.used > 0
    for key in [k for d in db.data.values() for k in d]:
        db.delete(key, keyslot(key))
    assert db.used == 0 and db.size == 0 and not db.sized


def test_access_clock_rests_in_the_packed_value(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ctx.db
    monkeypatch.setattr(keyspace, "lru_clock", 1000)
    fill(ctx)
    run(ctx, "SET", "str", "x")
    rest(db)
    assert b"h" not in db.access                                   # no dict entry for a packed key
    assert b"str" in db.access
    monkeypatch.setattr(keyspace, "lru_clock", 1007)
    assert db.access_clock(b"h", keyslot(b"h")) == 1000             # what eviction reads
    assert db.peek(b"h", keyslot(b"h")) is not None                 # NOTOUCH: the clock stays
    assert db.access[b"h"] == 1000
    rest(db)
    db.lookup(b"h", keyslot(b"h"))
    assert db.access[b"h"] == 1007
    rest(db)
    assert db.access_clock(b"h", keyslot(b"h")) == 1007


def test_lfu_counter_survives_packing(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ctx.db
    db.lfu = True
    monkeypatch.setattr(keyspace, "lfu_log_factor", 0)             # every access counts
    run(ctx, "SADD", "s", "a")
    for _ in range(10):
        rest(db)
        db.lookup(b"s", keyslot(b"s"))
    rest(db)
    assert keyspace.lfu_counter(db.access_clock(b"s", keyslot(b"s"))) == keyspace.LFU_INIT_VAL + 10


def test_rdb_snapshot_of_packed_values_loads_back(ctx: Ctx) -> None:
    fill(ctx)
    ctx.db.set_expire(b"z", keyslot(b"z"), 4_000_000_000_000)
    rest(ctx.db)
    stream = io.BytesIO()
    writer = rdb.RdbWriter(stream)
    writer.start()
    assert rdb.write_db(writer, ctx.db) == 4
    writer.finish()
    stream.seek(0)
    loaded = {key: (value, when) for _db, key, value, when in rdb.load(stream, CONFIG)}
    for key in (b"h", b"si", b"sl", b"z"):
        value, when = loaded[key]
        assert value == ctx.db.lookup(key, keyslot(key))
        assert when == (4_000_000_000_000 if key == b"z" else None)
    assert loaded[b"si"][0].encoding == t_set.INTSET


def test_packed_values_write_rdb_and_copy(ctx: Ctx) -> None:
    fill(ctx)
    rest(ctx.db)
    for key in (b"h", b"si", b"sl", b"z"):
        packed = stored(ctx, key)
        assert rdb.dump_value(unpacked(packed), True, -2) == rdb.dump_value(
            ctx.db.lookup(key, keyslot(key)), True, -2)
        value = ctx.db.lookup(key, keyslot(key))
        assert pickle.loads(pickle.dumps(value)) == value and copy.deepcopy(value) == value
        rest(ctx.db)


# -- on a server (the worker's tick packs what it touched) -------------------------------------

TICK_S = 0.3     # hz 10: a tick packs, with room to spare


def test_server_round_trips_after_packing(r) -> None:
    r.hset("ph", mapping={"a": "1", "b": "2"})
    r.sadd("ps", 5, 3, 9)
    r.sadd("pl", "x", "y")
    r.zadd("pz", {"m": 1.5, "n": -2})
    r.set("pstr", "v")
    time.sleep(TICK_S)
    assert r.hgetall("ph") == {b"a": b"1", b"b": b"2"}
    assert r.smembers("ps") == {b"3", b"5", b"9"}
    assert r.zrange("pz", 0, -1, withscores=True) == [(b"n", -2.0), (b"m", 1.5)]
    time.sleep(TICK_S)
    assert [r.object("encoding", k) for k in ("ph", "ps", "pl", "pz")] == [
        b"listpack", b"intset", b"listpack", b"listpack"]
    time.sleep(TICK_S)
    assert sorted(r.scan_iter(_type="hash")) == [b"ph"]
    assert sorted(r.scan_iter(_type="set")) == [b"pl", b"ps"]
    assert sorted(r.scan_iter(_type="zset")) == [b"pz"]
    payload = r.dump("pz")
    r.restore("pz2", 0, payload)
    assert r.copy("ph", "ph2")
    time.sleep(TICK_S)
    assert r.zrange("pz2", 0, -1, withscores=True) == [(b"n", -2.0), (b"m", 1.5)]
    assert r.hgetall("ph2") == {b"a": b"1", b"b": b"2"}
    r.hset("ph", "c", "3")
    time.sleep(TICK_S)
    assert r.hlen("ph") == 3 and r.hlen("ph2") == 2


def test_server_idletime_of_packed_key(r) -> None:
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        r.sadd("idle", "a")
        r.set("fresh", "x")
        time.sleep(2.2)
        assert r.object("idletime", "idle") >= 2
        assert r.object("idletime", "idle") >= 2                 # OBJECT does not touch
        r.sismember("idle", "a")
        assert r.object("idletime", "idle") == 0
    finally:
        r.config_set("maxmemory-policy", "noeviction")
