"""The RDB format layer (shardd/persist/rdb.py) and shardd-check-rdb.

- round trips of every type and encoding, through DUMP payloads and whole files;
- the encodings Valkey converts to while loading, under the *-max-listpack-* limits;
- files written by the oracle (Debian's redis-server 7.0) read back and compared with what
  the oracle holds, and our files loaded by the oracle and read back from it;
- old encodings (ziplist, zipmap, linked list, quicklist v1, text zset scores) in files we
  build by hand, cross-checked by loading the same files into the oracle;
- corrupt and truncated files: RdbError at the right offset, nothing else escapes.
"""
from __future__ import annotations

import io
import math
import os
import random
import subprocess
import tempfile
import time

import pytest
import redis

from helpers import REDIS_SERVER, start_redis_server
from server import free_port, tcp, wait_answering
from shardd.persist import check_rdb, crc, lzf, rdb
from shardd.persist.rdb import Limits, RdbError
from shardd.worker.t_hash import Hash
from shardd.worker.t_list import List
from shardd.worker.t_set import HASHTABLE, INTSET, LISTPACK, Set
from shardd.worker.t_zset import ZSet

needs_redis = pytest.mark.skipif(not os.path.exists(REDIS_SERVER),
                                 reason=f"{REDIS_SERVER} is not installed")
INF = float("inf")


# -- helpers -------------------------------------------------------------------------------------

def zset(pairs, skiplist=False) -> ZSet:
    z = ZSet(skiplist)
    for member, score in pairs:
        z[member] = float(score)
    return z


def describe(value):
    """What must survive a round trip: type, contents (in order where it is defined) and the
    encoding flags."""
    kind = type(value)
    if kind is bytes:
        return ("string", value)
    if kind is List:
        return ("list", list(value), value.quick, value.lp_bytes)
    if kind is Hash:
        return ("hash", dict(value), value.hashtable)
    if kind is Set:
        return ("set", set(value), value.encoding)
    if kind is ZSet:
        return ("zset", list(value.order), dict(value), value.skiplist)
    raise AssertionError(kind)


def reloaded(value):
    """describe(value) after a write and a load: a small quicklist comes back a listpack, as
    Valkey's loader converts it."""
    if value is VALUES["list-quicklist-small"]:
        return ("list", list(value), False, value.lp_bytes)
    return describe(value)


def write_file(keys, dbs=None, **options) -> bytes:
    """An RDB file (bytes) with `keys` [(key, value, expire)] in db 0, or `dbs` {db: keys}."""
    out = io.BytesIO()
    writer = rdb.RdbWriter(out, **options)
    writer.start()
    for db, items in (dbs or {0: keys}).items():
        writer.select_db(db, len(items), sum(1 for *_k, e in items if e is not None))
        for key, value, expire in items:
            writer.write_key(key, value, expire)
    writer.finish()
    return out.getvalue()


def read_file(data: bytes, config=None, **options):
    reader = rdb.load(io.BytesIO(data), config, **options)
    return reader, list(reader)


def limits(**overrides) -> Limits:
    config = {"hash-max-listpack-entries": 128, "hash-max-listpack-value": 64,
              "set-max-intset-entries": 512, "set-max-listpack-entries": 128,
              "set-max-listpack-value": 64, "zset-max-listpack-entries": 128,
              "zset-max-listpack-value": 64, "list-max-listpack-size": -2, "databases": 16}
    config.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return Limits(config)


VALUES = {
    "string": b"hello",
    "string-empty": b"",
    "string-int8": b"-128",
    "string-int16": b"32767",
    "string-int32": b"-2147483648",
    "string-int64": b"9223372036854775807",
    "string-not-canonical": b"007",
    "string-lzf": b"abcabcabc" * 50,
    "string-random": bytes(random.Random(1).randrange(256) for _ in range(300)),
    "string-16k": b"x" * 16384 + b"y",
    "list-listpack": List([b"a", b"1", b"-4097", b"70000", b"9223372036854775807", b"x" * 70,
                           b"y" * 5000], False),
    "list-quicklist": List([b"item%d" % i for i in range(3000)], True),
    "list-quicklist-plain-nodes": List([b"a", b"b" * 9000, b"c", b"d" * 20000, b"e"], True),
    "list-quicklist-small": List([b"a", b"b"], True),
    "hash-listpack": Hash({b"f": b"v", b"n": b"12", b"neg": b"-1", b"big": b"z" * 60}),
    "hash-hashtable": Hash({b"f%d" % i: b"v%d" % i for i in range(600)}, True),
    "hash-hashtable-small": Hash({b"f": b"v" * 100}, True),
    "set-intset": Set([b"1", b"-5", b"40000", b"-3000000000", b"0"], INTSET),
    "set-listpack": Set([b"a", b"b", b"17", b"x" * 30], LISTPACK),
    "set-hashtable": Set([b"m%d" % i for i in range(300)], HASHTABLE),
    "zset-listpack": zset([(b"a", 1.5), (b"b", -2.0), (b"c", INF), (b"d", -INF), (b"e", 0.1),
                           (b"f", 1e300), (b"g", 2.0 ** 62), (b"h", 2.0 ** 63), (b"i", 0.0)]),
    "zset-skiplist": zset([(b"m%d" % i, i / 7) for i in range(300)] + [(b"neg0", -0.0)], True),
}


# -- primitives ------------------------------------------------------------------------------------

def test_crc64_is_redis_crc64():
    assert crc.crc64(b"123456789") == 0xe9c6d914c4b8d9ca
    data = os.urandom(1000)
    assert crc.crc64(data) == crc.crc64_python(data)
    assert crc.crc64(data[300:], crc.crc64(data[:300])) == crc.crc64(data)


def test_lzf_round_trip_and_redis_rule():
    data = b"hello world, hello world, hello world!" * 10
    packed = lzf.compress(data)
    assert packed is not None and len(packed) <= len(data) - 4
    assert lzf.decompress(packed, len(data)) == data
    assert lzf.decompress_python(packed, len(data)) == data
    assert lzf.compress(os.urandom(100)) is None          # would not save 4 bytes
    with pytest.raises(ValueError):
        lzf.decompress(packed, len(data) + 1)
    with pytest.raises(ValueError):
        lzf.decompress(b"\xff\xff\xff", 10)


@pytest.mark.parametrize("text, encoded", [
    (b"0", b"\xc0\x00"), (b"-1", b"\xc0\xff"), (b"127", b"\xc0\x7f"), (b"-128", b"\xc0\x80"),
    (b"128", b"\xc1\x80\x00"), (b"-32768", b"\xc1\x00\x80"), (b"32768", b"\xc2\x00\x80\x00\x00"),
    (b"2147483647", b"\xc2\xff\xff\xff\x7f"),
    (b"2147483648", b"\x0a2147483648"),          # too wide for RDB's integer encodings
    (b"007", b"\x03007"), (b"-0", b"\x02-0"), (b"+1", b"\x02+1"), (b" 1", b"\x02 1"),
    (b"", b"\x00"),
])
def test_string_encodings(text, encoded):
    assert rdb.encode_string(text) == encoded
    assert rdb.read_string(encoded, 0) == (text, len(encoded))


def test_string_lengths_and_lzf():
    for n in (63, 64, 16383, 16384):
        data = os.urandom(n)
        encoded = rdb.encode_string(data, compress=False)
        assert rdb.read_string(encoded, 0) == (data, len(encoded))
    assert rdb.encode_length(63) == b"\x3f"
    assert rdb.encode_length(64) == b"\x40\x40"
    assert rdb.encode_length(16384) == b"\x80\x00\x00\x40\x00"
    assert rdb.encode_length(1 << 32) == b"\x81" + (1 << 32).to_bytes(8, "big")
    assert rdb.read_length(rdb.encode_length(1 << 32), 0) == (1 << 32, 9)
    text = b"a" * 21
    assert rdb.encode_string(text)[0] == 0xC3                 # over 20 bytes: LZF
    assert rdb.encode_string(b"a" * 20)[0] == 20               # 20 bytes: never compressed
    assert rdb.encode_string(text, compress=False) == b"\x15" + text
    assert rdb.read_string(rdb.encode_string(text), 0)[0] == text


def test_listpack_entries_match_list_sizes():
    """Every listpack entry we write is as long as t_list's entry_size says (the byte counts
    OBJECT ENCODING's conversions use), and decodes back."""
    from shardd.worker.t_list import entry_size
    samples = [b"0", b"127", b"128", b"-1", b"4095", b"-4096", b"4096", b"32767", b"-32769",
               b"8388607", b"-8388609", b"2147483647", b"2147483648", b"-9223372036854775808",
               b"9223372036854775808", b"", b"a" * 63, b"a" * 64, b"a" * 4095, b"a" * 4096,
               b"a" * 20000, b"01", b"-0"]
    for s in samples:
        assert len(rdb.lp_entry(s)) == entry_size(s), s
    blob = rdb.listpack_of(samples)
    assert [x if type(x) is bytes else b"%d" % x for x in rdb.decode_listpack(blob)] == samples


# -- round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.parametrize("compress", [True, False])
def test_dump_payload_round_trip(name, compress):
    value = VALUES[name]
    payload = rdb.dump_value(value, compress)
    assert payload[-10:-8] == b"\x0a\x00"                      # RDB version 10
    assert int.from_bytes(payload[-8:], "little") == crc.crc64(payload[:-8])
    assert describe(rdb.restore_value(payload, limits())) == reloaded(value)


def test_written_types():
    """The RDB type each encoding is written as: Redis 7.0's choices at version 10."""
    expected = {"string": 0, "list-listpack": 18, "list-quicklist": 18, "hash-listpack": 16,
                "hash-hashtable": 4, "set-intset": 11, "set-listpack": 2, "set-hashtable": 2,
                "zset-listpack": 17, "zset-skiplist": 5}
    for name, rdbtype in expected.items():
        assert rdb.dump_value(VALUES[name])[0] == rdbtype, name
    payload = rdb.dump_value(VALUES["set-listpack"], version=11)
    assert payload[0] == rdb.TYPE_SET_LISTPACK and payload[-10:-8] == b"\x0b\x00"
    assert describe(rdb.restore_value(payload, limits())) == describe(VALUES["set-listpack"])


def test_restore_payload_errors():
    payload = rdb.dump_value(b"hello")
    with pytest.raises(rdb.DumpPayloadError):
        rdb.restore_value(payload[:-1] + bytes([payload[-1] ^ 1]))
    newer = bytearray(payload[:-10] + b"\x0c\x00")
    newer += crc.crc64(bytes(newer)).to_bytes(8, "little")
    with pytest.raises(rdb.DumpPayloadError):
        rdb.restore_value(bytes(newer))
    with pytest.raises(rdb.DumpPayloadError):
        rdb.restore_value(b"short")

    def sealed(body: bytes) -> bytes:
        body += b"\x0a\x00"
        return body + crc.crc64(body).to_bytes(8, "little")
    for body in (b"\x00\x20abc",            # string longer than the whole payload
                 b"\x08\x01a",              # type 8 does not exist
                 b"\x0f\x00",               # a stream: not supported yet
                 b"\x10\x0bunlistpack",     # hash listpack that is no listpack
                 b"\x04\x00",               # an empty hash
                 b"\x02\x02\x01a\x01a",     # a set with a repeated member
                 b""):
        with pytest.raises(rdb.RdbError) as info:
            rdb.restore_value(sealed(body))
        assert not isinstance(info.value, rdb.DumpPayloadError)


def test_file_round_trip_with_dbs_expires_aux_and_functions():
    dbs = {0: [(name.encode(), value, None) for name, value in VALUES.items()],
           3: [(b"volatile", b"v", 1_700_000_000_123), (b"past", VALUES["hash-listpack"], 5)],
           15: [(b"k", VALUES["zset-skiplist"], 2 ** 62)]}
    out = io.BytesIO()
    writer = rdb.RdbWriter(out)
    writer.start({"shard": 3, b"extra": b"x"})
    writer.function(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)")
    for db, items in dbs.items():
        writer.select_db(db, len(items), sum(1 for *_k, e in items if e is not None))
        for key, value, expire in items:
            writer.write_key(key, value, expire)
    size = writer.finish()
    data = out.getvalue()
    assert size == len(data) and data[:9] == b"REDIS0010"
    reader, records = read_file(data, limits())
    got = {(db, key): (describe(value), expire) for db, key, value, expire in records}
    want = {(db, key): (reloaded(value), expire) for db, items in dbs.items()
            for key, value, expire in items}
    assert got == want
    assert reader.aux[b"redis-ver"] and reader.aux[b"shard"] == b"3" and reader.aux[b"extra"] == b"x"
    assert reader.aux[b"redis-bits"] == b"64" and reader.aux[b"aof-base"] == b"0"
    assert reader.functions == [b"#!lua name=lib\nredis.register_function('f', function() return 1 end)"]
    assert reader.resize_hints == {0: (len(VALUES), 0), 3: (2, 2), 15: (1, 1)}
    assert reader.checksum == crc.crc64(data[:-8]) and reader.size == len(data)


def test_write_db_from_a_keyspace():
    from shardd.slots import keyslot
    from shardd.worker.keyspace import Db
    db = Db(2)
    for i in range(50):
        key = b"k%d" % i
        db.store(key, keyslot(key), VALUES["hash-listpack"] if i % 2 else b"v%d" % i)
        if i % 5 == 0:
            db.set_expire(key, keyslot(key), 10 ** 13 + i)
    out = io.BytesIO()
    writer = rdb.RdbWriter(out)
    writer.start()
    assert rdb.write_db(writer, db) == 50
    assert rdb.write_db(writer, Db(3)) == 0
    writer.finish()
    reader, records = read_file(out.getvalue())
    assert reader.resize_hints == {2: (50, 10)}
    assert {(d, k, e) for d, k, _v, e in records} == {
        (2, b"k%d" % i, 10 ** 13 + i if i % 5 == 0 else None) for i in range(50)}


def test_no_checksum_and_no_compression():
    data = write_file([(b"k", b"abc" * 100, None)], checksum=False, compress=False)
    assert data.endswith(b"\x00" * 8) and b"abc" * 100 in data
    reader, records = read_file(data)
    assert records == [(0, b"k", b"abc" * 100, None)] and reader.checksum == 0


def test_streaming_with_tiny_reads(monkeypatch):
    """Records larger than the read window are parsed again once more input is in, with reads
    that return a few bytes at a time."""
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def read(self, n=-1):
            n = min(n, 7) if n > 0 else 7
            chunk = self.data[self.pos:self.pos + n]
            self.pos += len(chunk)
            return chunk

    monkeypatch.setattr(rdb, "CHUNK", 16)
    keys = [(name.encode(), value, 123 if i % 3 else None) for i, (name, value) in enumerate(VALUES.items())]
    data = write_file(keys)
    reader = rdb.load(Trickle(data), limits())
    got = [(k, describe(v), e) for _db, k, v, e in reader]
    assert got == [(k, reloaded(v), e) for k, v, e in keys]
    assert reader.checksum == crc.crc64(data[:-8])


def test_big_container_values_stream_out(monkeypatch):
    monkeypatch.setattr(rdb, "CHUNK", 1024)
    big = {b"h": Hash({b"f%d" % i: b"v" * (i % 50) for i in range(5000)}, True),
           b"s": Set([b"m%d" % i for i in range(5000)]),
           b"z": zset([(b"m%d" % i, float(i)) for i in range(5000)], True),
           b"l": List([b"e%d" % i for i in range(20000)], True)}

    class Counting(io.BytesIO):
        writes = 0

        def write(self, data):
            Counting.writes += 1
            return super().write(data)
    out = Counting()
    writer = rdb.RdbWriter(out)
    writer.start()
    for key, value in big.items():
        writer.write_key(key, value)
    writer.finish()
    assert Counting.writes > 20                   # flushed inside the values, not once per key
    _reader, records = read_file(out.getvalue(), limits())
    assert {k: describe(v) for _d, k, v, _e in records} == {k: describe(v) for k, v in big.items()}


def test_quicklist_nodes_follow_the_fill_limit():
    values = [b"e%05d" % i for i in range(5000)] + [b"x" * 10000] + [b"tail"]
    nodes = rdb.quicklist_nodes(values, -2)
    assert nodes[-2] == (rdb.QUICKLIST_PLAIN, b"x" * 10000)
    packed = [n for c, n in nodes if c == rdb.QUICKLIST_PACKED]
    assert all(len(rdb.listpack_of(n)) <= 8192 for n in packed)
    assert [v for c, n in nodes for v in ([n] if c == rdb.QUICKLIST_PLAIN else n)] == values
    counted = rdb.quicklist_nodes(values[:1000], 128)          # fill counts entries
    assert [len(n) for _c, n in counted] == [128] * 7 + [104]


# -- the encodings loading converts to ---------------------------------------------------------

def test_load_conversions_under_limits():
    small = limits(hash_max_listpack_entries=3, hash_max_listpack_value=5,
                   set_max_intset_entries=4, set_max_listpack_entries=3, set_max_listpack_value=5,
                   zset_max_listpack_entries=2, zset_max_listpack_value=4, list_max_listpack_size=4)

    def loaded(value, config=small):
        return rdb.restore_value(rdb.dump_value(value), config)
    # hashes: listpack blobs convert by entry count; plain hashes also by value length
    assert loaded(Hash({b"a": b"1", b"b": b"2", b"c": b"3"})).hashtable is False
    assert loaded(Hash({b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"})).hashtable is True
    assert loaded(Hash({b"a": b"1" * 10})).hashtable is False      # listpack blob: count only
    assert loaded(Hash({b"a": b"1" * 10}, True)).hashtable is True
    assert loaded(Hash({b"a": b"1"}, True)).hashtable is False     # small plain hash: listpack
    # sets: intset blobs by count; plain sets member by member
    assert loaded(Set([b"1", b"2", b"3", b"4"], INTSET)).encoding == INTSET
    assert loaded(Set([b"1", b"2", b"3", b"4", b"5"], INTSET)).encoding == HASHTABLE
    assert loaded(Set([b"1", b"2"], HASHTABLE)).encoding == INTSET
    assert loaded(Set([b"a", b"b"], HASHTABLE)).encoding == LISTPACK
    assert loaded(Set([b"a", b"b", b"c", b"d"], HASHTABLE)).encoding == HASHTABLE
    assert loaded(Set([b"a", b"bbbbbb"], HASHTABLE)).encoding == HASHTABLE
    assert loaded(Set([b"1", b"2", b"3", b"a"], HASHTABLE)).encoding == HASHTABLE
    assert loaded(Set([b"1", b"2", b"3", b"4", b"5"], HASHTABLE)).encoding == HASHTABLE
    # sorted sets: skiplists convert back when small; listpack blobs by count
    assert loaded(zset([(b"a", 1), (b"b", 2)], True)).skiplist is False
    assert loaded(zset([(b"aaaaa", 1)], True)).skiplist is True
    assert loaded(zset([(b"aaaaa", 1)])).skiplist is False
    assert loaded(zset([(b"a", 1), (b"b", 2), (b"c", 3)])).skiplist is True
    z = loaded(zset([(b"a", -0.0)], True))
    assert z.skiplist is False and math.copysign(1, z[b"a"]) == 1     # listpack: -0 is 0
    assert math.copysign(1, loaded(zset([(b"a", -0.0), (b"aaaaaa", 1)], True))[b"a"]) == -1
    # lists: one packed node within the limit is a listpack
    assert loaded(List([b"a"] * 4, True)).quick is False
    assert loaded(List([b"a"] * 5, True)).quick is True
    assert loaded(List([b"a"] * 5, False)).quick is True              # a listpack of 5
    assert loaded(List([b"a"] * 5000, False), limits()).quick is True
    assert loaded(List([b"a"] * 500, False), limits()).quick is False


# -- the oracle ------------------------------------------------------------------------------------

LIBRARY = "#!lua name=rdbtest\nredis.register_function('answer', function() return 42 end)"


def fill_oracle(r: redis.Redis, r3: redis.Redis) -> None:
    """Every type, compact and big, on the oracle (db 0 and db 3)."""
    rnd = random.Random(7)
    r.mset({"str:small": "hello", "str:int8": "100", "str:int16": "-30000",
            "str:int32": "2000000000", "str:int64": "9000000000000000000", "str:007": "007",
            "str:lzf": "abc" * 100, "str:empty": "", "str:bin": bytes(range(256)),
            "str:random": bytes(rnd.randrange(256) for _ in range(500))})
    r.rpush("list:small", "a", "1", "-2", "x" * 70, "123456789012345", "-4097")
    r.rpush("list:big", *[f"item{i}" for i in range(5000)])
    r.rpush("list:bigvals", *["v" * 3000] * 10)
    r.config_set("list-compress-depth", 1)               # inner nodes saved as LZF blobs
    r.rpush("list:compressed", *[f"element number {i % 50}" for i in range(3000)])
    r.config_set("list-compress-depth", 0)
    r.hset("hash:small", mapping={"f1": "v1", "n": 12, "neg": -3, "f2": "x" * 60})
    r.hset("hash:big", mapping={f"field{i}": f"value{i}" for i in range(300)})
    r.hset("hash:longval", mapping={"f": "y" * 100})
    r.sadd("set:ints", 1, 2, 3, -100, 70000, 5000000000)
    r.sadd("set:strs", "a", "b", "c")
    r.sadd("set:bigints", *range(600))
    r.sadd("set:big", *[f"member{i}" for i in range(300)])
    r.zadd("zset:small", {"a": 1, "b": 2.5, "c": -3, "d": INF, "e": -INF, "f": 0, "g": 0.25})
    r.zadd("zset:big", {f"m{i}": i / 4 for i in range(200)})
    r.zadd("zset:longmember", {"m" * 100: 1})
    r.set("exp:string", "v", px=10 ** 8)
    r.hset("exp:hash", "f", "v")
    r.pexpireat("exp:hash", 4_000_000_000_000)
    r3.set("db3:key", "in db 3")
    r3.rpush("db3:list", "x", "y")
    r.function_load(LIBRARY)


def oracle_value(r: redis.Redis, key: bytes):
    """A key's contents as read from a server: comparable with contents_of()."""
    kind = r.type(key)
    if kind == b"string":
        return ("string", r.get(key))
    if kind == b"list":
        return ("list", r.lrange(key, 0, -1))
    if kind == b"hash":
        return ("hash", r.hgetall(key))
    if kind == b"set":
        return ("set", r.smembers(key))
    if kind == b"zset":
        return ("zset", r.zrange(key, 0, -1, withscores=True))
    raise AssertionError(kind)


def contents_of(value):
    kind = type(value)
    if kind is bytes:
        return ("string", value)
    if kind is List:
        return ("list", list(value))
    if kind is Hash:
        return ("hash", dict(value))
    if kind is Set:
        return ("set", set(value))
    return ("zset", [(m, s) for s, m in value.order])


def encoding_of(value) -> bytes:
    from shardd.worker import t_keys
    return t_keys.OBJECT_ENCODINGS[type(value)](value)


@pytest.fixture(scope="module")
def oracle_server():
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"{REDIS_SERVER} is not installed")
    proc, port = start_redis_server()
    try:
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def oracle_limits(r: redis.Redis) -> Limits:
    """The oracle's conversion limits (7.0 has no set-max-listpack-*: Valkey's defaults)."""
    names = ["hash-max-listpack-entries", "hash-max-listpack-value", "set-max-intset-entries",
             "zset-max-listpack-entries", "zset-max-listpack-value", "list-max-listpack-size",
             "databases"]
    return Limits({name: int(r.config_get(name)[name]) for name in names})


@needs_redis
def test_reads_a_file_redis_wrote(oracle_server):
    r = redis.Redis(port=oracle_server, socket_timeout=10)
    r3 = redis.Redis(port=oracle_server, db=3, socket_timeout=10)
    try:
        r.flushall()
        r.function_flush()
        fill_oracle(r, r3)
        path = os.path.join(r.config_get("dir")["dir"], r.config_get("dbfilename")["dbfilename"])
        config = oracle_limits(r)
        # LRU and LFU policies make redis write IDLE and FREQ opcodes before each key
        for policy in ("noeviction", "allkeys-lru", "allkeys-lfu"):
            r.config_set("maxmemory-policy", policy)
            r.save()
            with open(path, "rb") as f:
                reader = rdb.load(f, config)
                records = list(reader)
            assert reader.version == 10
            assert reader.aux[b"redis-ver"].startswith(b"7.0")
            assert reader.functions == [LIBRARY.encode()]
            loaded = {(db, key): (value, expire) for db, key, value, expire in records}
            assert set(loaded) == {(0, k) for k in r.keys()} | {(3, k) for k in r3.keys()}
            for (db, key), (value, expire) in loaded.items():
                client = r3 if db == 3 else r
                assert contents_of(value) == oracle_value(client, key), key
                assert expire == (None if client.pttl(key) == -1 else client.pexpiretime(key)), key
                # Valkey's loader turns small lists and small string sets compact (7.0 does not)
                valkey_only = {b"list:small": b"listpack", b"set:strs": b"listpack",
                               b"db3:list": b"listpack"}
                assert encoding_of(value) == valkey_only.get(key, client.object("encoding", key)), key
        assert check_rdb.check(path, io.StringIO()) == 0
    finally:
        r.config_set("maxmemory-policy", "noeviction")
        r.function_flush()
        r.flushall()
        r.close()
        r3.close()


def start_redis_on(path: str) -> tuple[subprocess.Popen, redis.Redis]:
    """A redis-server of our own loading the RDB file at path."""
    directory, name = os.path.split(path)
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
                             "--dbfilename", name, "--save", "", "--appendonly", "no"],
                            stdout=open(os.path.join(directory, "redis.log"), "wb"),
                            stderr=subprocess.STDOUT)
    if not wait_answering(proc, tcp(port, timeout=1), 10):
        proc.kill()
        proc.wait(5)
        with open(os.path.join(directory, "redis.log"), "rb") as log:
            raise AssertionError(f"redis-server did not load {path}: {log.read()[-2000:]!r}")
    return proc, redis.Redis(port=port, socket_timeout=10)


@needs_redis
@pytest.mark.parametrize("compress, checksum", [(True, True), (False, False)])
def test_redis_loads_a_file_we_wrote(compress, checksum):
    future = int(time.time() * 1000) + 10 ** 8
    dbs = {0: [(name.encode(), value, future if name == "string" else None)
               for name, value in VALUES.items()],
           7: [(b"other", VALUES["zset-listpack"], future)]}
    directory = tempfile.mkdtemp(prefix="shardd-rdb-")
    path = os.path.join(directory, "ours.rdb")
    with open(path, "wb") as f:
        f.write(write_file(None, dbs, compress=compress, checksum=checksum))
    proc, r = start_redis_on(path)
    try:
        assert r.dbsize() == len(VALUES)
        for name, value in VALUES.items():
            assert oracle_value(r, name.encode()) == contents_of(value), name
        assert r.pexpiretime("string") == future
        r7 = redis.Redis(port=r.connection_pool.connection_kwargs["port"], db=7)
        assert oracle_value(r7, b"other") == contents_of(VALUES["zset-listpack"])
        assert r7.pexpiretime("other") == future
        r7.close()
        # what redis 7.0 makes of our compact encodings
        assert r.object("encoding", "hash-listpack") == b"listpack"
        assert r.object("encoding", "set-intset") == b"intset"
        assert r.object("encoding", "zset-listpack") == b"listpack"
        assert r.object("encoding", "zset-skiplist") == b"skiplist"
    finally:
        r.close()
        proc.kill()
        proc.wait(5)


# -- old encodings, built by hand -----------------------------------------------------------------

def ziplist(entries) -> bytes:
    """A ziplist (Redis ≤ 6.2) of bytes and ints."""
    body = bytearray()
    prev = 0
    tail = 10
    for entry in entries:
        tail = 10 + len(body)
        head = bytes([prev]) if prev < 254 else b"\xfe" + prev.to_bytes(4, "little")
        if isinstance(entry, int):
            if 0 <= entry <= 12:
                enc = bytes([0xF1 + entry])
            elif -128 <= entry <= 127:
                enc = b"\xfe" + entry.to_bytes(1, "little", signed=True)
            elif -32768 <= entry <= 32767:
                enc = b"\xc0" + entry.to_bytes(2, "little", signed=True)
            elif -(1 << 23) <= entry < (1 << 23):
                enc = b"\xf0" + entry.to_bytes(3, "little", signed=True)
            elif -(1 << 31) <= entry < (1 << 31):
                enc = b"\xd0" + entry.to_bytes(4, "little", signed=True)
            else:
                enc = b"\xe0" + entry.to_bytes(8, "little", signed=True)
        else:
            n = len(entry)
            if n < 64:
                enc = bytes([n]) + entry
            elif n < 16384:
                enc = bytes([0x40 | (n >> 8), n & 0xFF]) + entry
            else:
                enc = b"\x80" + n.to_bytes(4, "big") + entry
        body += head + enc
        prev = len(head) + len(enc)
    total = 10 + len(body) + 1
    return (total.to_bytes(4, "little") + tail.to_bytes(4, "little")
            + len(entries).to_bytes(2, "little") + bytes(body) + b"\xff")


def zipmap(pairs) -> bytes:
    out = bytearray([len(pairs)])
    for field, value in pairs:
        for s, free in ((field, None), (value, 0)):
            out += bytes([len(s)]) if len(s) < 254 else b"\xfe" + len(s).to_bytes(4, "little")
            if free is not None:
                out.append(free)
            out += s
    return bytes(out + b"\xff")


def old_file(records, version=9) -> bytes:
    """An RDB file of (type, key, payload bytes) records, with a checksum."""
    out = bytearray(b"REDIS%04d" % version)
    out += b"\xfe\x00"
    for rdbtype, key, payload in records:
        out += bytes([rdbtype]) + rdb.encode_string(key) + payload
    out += b"\xff"
    out += crc.crc64(bytes(out)).to_bytes(8, "little")
    return bytes(out)


def S(s: bytes) -> bytes:
    return rdb.encode_string(s, compress=False)


def L(n: int) -> bytes:
    return rdb.encode_length(n)


ZIPLIST_LIST = [b"a", 0, 12, 13, -1, 200, -30000, 1 << 20, -(1 << 30), 1 << 40, b"x" * 300]
OLD_RECORDS = [
    (rdb.TYPE_LIST, b"linked", L(3) + S(b"a") + S(b"12") + S(b"c" * 100)),
    (rdb.TYPE_LIST_ZIPLIST, b"ziplist-list", S(ziplist(ZIPLIST_LIST))),
    (rdb.TYPE_LIST_QUICKLIST, b"quicklist-v1",
     L(2) + S(ziplist([b"n1", 1])) + S(ziplist([b"n2", b"n3"]))),
    (rdb.TYPE_SET_INTSET, b"intset", S(rdb.intset([3, 1, -70000]))),
    (rdb.TYPE_ZSET, b"zset-text", L(3) + S(b"a") + b"\x031.5" + S(b"b") + b"\xfe" + S(b"c") + b"\xff"),
    (rdb.TYPE_ZSET_ZIPLIST, b"zset-ziplist", S(ziplist([b"c", -7, b"a", 1, b"b", b"2.5"]))),
    (rdb.TYPE_HASH_ZIPMAP, b"zipmap", S(zipmap([(b"f1", b"v1"), (b"f2", b"v" * 300)]))),
    (rdb.TYPE_HASH_ZIPLIST, b"hash-ziplist", S(ziplist([b"f", b"v", b"n", 5]))),
    (rdb.TYPE_HASH, b"hash-plain", L(2) + S(b"f") + S(b"1") + S(b"g") + S(b"2")),
    (rdb.TYPE_SET, b"set-plain", L(2) + S(b"x") + S(b"y")),
]


@needs_redis
def test_old_encodings_read_like_redis_reads_them():
    data = old_file(OLD_RECORDS)
    _reader, records = read_file(data, limits())
    ours = {key: contents_of(value) for _db, key, value, _e in records}
    assert ours[b"ziplist-list"] == ("list", [x if isinstance(x, bytes) else b"%d" % x
                                              for x in ZIPLIST_LIST])
    assert ours[b"zset-text"] == ("zset", [(b"c", -INF), (b"a", 1.5), (b"b", INF)])
    directory = tempfile.mkdtemp(prefix="shardd-rdb-")
    path = os.path.join(directory, "old.rdb")
    with open(path, "wb") as f:
        f.write(data)
    proc, r = start_redis_on(path)
    try:
        assert {k: oracle_value(r, k) for k in r.keys()} == ours
    finally:
        r.close()
        proc.kill()
        proc.wait(5)


def test_old_opcodes_and_versions():
    """EXPIRETIME in seconds, IDLE/FREQ, SLOT_INFO, an RDB version 3 file (no checksum)."""
    body = (b"\xfe\x00\xfb\x02\x01" + b"\xfd" + (1234).to_bytes(4, "little") + b"\x00" + S(b"k") + S(b"v")
            + b"\xf8\x05\x00" + S(b"idle") + S(b"1")
            + b"\xf9\x07\x00" + S(b"freq") + S(b"2")
            + b"\xf4\x10\x02\x01" + b"\x00" + S(b"after-slot-info") + S(b"3") + b"\xff")
    data = b"REDIS0009" + body
    data += crc.crc64(data).to_bytes(8, "little")
    reader, records = read_file(data)
    assert records == [(0, b"k", b"v", 1234000), (0, b"idle", b"1", None), (0, b"freq", b"2", None),
                       (0, b"after-slot-info", b"3", None)]
    assert reader.resize_hints == {0: (2, 1)}
    reader, records = read_file(b"REDIS0003\xfe\x01" + b"\x00" + S(b"k") + S(b"v") + b"\xff")
    assert records == [(1, b"k", b"v", None)] and reader.checksum is None


def test_version_11_files():
    """What Redis 7.2 / Valkey 8 write: version 11, listpack sets as RDB_TYPE_SET_LISTPACK."""
    data = write_file([(b"s", VALUES["set-listpack"], None), (b"h", VALUES["hash-listpack"], None)],
                      version=11)
    assert data[:9] == b"REDIS0011" and bytes([rdb.TYPE_SET_LISTPACK]) + b"\x01s" in data
    reader, records = read_file(data, limits())
    assert reader.version == 11
    assert [(k, describe(v)) for _d, k, v, _e in records] == [
        (b"s", describe(VALUES["set-listpack"])), (b"h", describe(VALUES["hash-listpack"]))]


def test_unsupported_records_are_named():
    def reason(records) -> str:
        with pytest.raises(RdbError) as info:
            read_file(old_file(records, version=10))
        return info.value.reason
    module_id = (12345 << 10) | 3
    assert "module value of type" in reason([(rdb.TYPE_MODULE_2, b"m", L(module_id))])
    assert rdb.module_type_name(module_id) in reason([(rdb.TYPE_MODULE_2, b"m", L(module_id))])
    assert "field expiration" in reason([(24, b"h", L(0))])
    with pytest.raises(RdbError, match="pre-release function"):
        read_file(b"REDIS0010\xf6" + S(b"code") + b"\xff" + bytes(8))


def test_empty_values_are_skipped():
    records = [(rdb.TYPE_HASH_LISTPACK, b"empty", S(rdb.listpack([], 0))),
               (rdb.TYPE_LIST_QUICKLIST_2, b"empty-list", L(0)),
               (rdb.TYPE_STRING, b"k", S(b"v"))]
    reader, got = read_file(old_file(records, version=10))
    assert got == [(0, b"k", b"v", None)] and reader.empty_keys_skipped == 2


# -- corrupt and truncated input -----------------------------------------------------------------

def small_file(**options) -> bytes:
    return write_file([(b"s", b"value", None), (b"h", VALUES["hash-listpack"], 99),
                       (b"z", VALUES["zset-skiplist"], None)], **options)


def test_every_truncation_is_an_error_at_its_end():
    data = small_file(compress=False)
    eof = len(data) - 9                        # the EOF opcode
    for cut in range(len(data)):
        with pytest.raises(RdbError) as info:
            list(rdb.load(io.BytesIO(data[:cut])))
        if cut < 9:
            assert info.value.offset == 0, cut
        elif cut <= eof:
            assert info.value.offset == cut, (cut, info.value)
            assert "unexpected end of file" in info.value.reason
        else:
            assert info.value.offset == eof + 1, cut


def test_corruptions_name_their_offset():
    data = small_file(compress=False)

    def fails_at(mutated: bytes, verify: bool = True) -> tuple[str, int]:
        with pytest.raises(RdbError) as info:
            list(rdb.load(io.BytesIO(mutated), verify_checksum=verify))
        return info.value.reason, info.value.offset
    key_at = data.index(b"\x01s\x05value") - 1              # the type byte of key "s"
    reason, offset = fails_at(data[:key_at] + b"\x64" + data[key_at + 1:])
    assert offset == key_at and "unknown RDB type 100" in reason
    reason, offset = fails_at(data[:key_at] + b"\x18" + data[key_at + 1:])
    assert offset == key_at and "field expiration" in reason
    reason, offset = fails_at(data[:key_at + 1] + b"\xc7" + data[key_at + 2:])
    assert offset == key_at + 1 and "string encoding" in reason
    blob = rdb.listpack_of([x for pair in VALUES["hash-listpack"].items() for x in pair])
    blob_at = data.index(rdb.encode_string(blob, compress=False))      # the hash's listpack
    lp_at = data.index(blob)
    broken = bytearray(data)
    broken[lp_at + 6] = 0xF7                                  # the first entry's encoding byte
    reason, offset = fails_at(bytes(broken), verify=False)
    assert offset == blob_at and "listpack" in reason and "byte 6" in reason
    flipped = bytearray(data)
    flipped[data.index(b"value")] ^= 0x20                     # still parses: checksum catches it
    reason, offset = fails_at(bytes(flipped))
    assert offset == len(data) - 8 and "checksum" in reason
    assert read_file(bytes(flipped), verify_checksum=False)[1][0][2] == b"Value"
    assert fails_at(b"RADIS0010" + data[9:])[1] == 0
    assert fails_at(b"REDIS0012" + data[9:]) == ("RDB version 12 (Redis 7.4+ format) is not supported", 5)
    assert "Valkey 9" in fails_at(b"VALKEY080" + data[9:])[0]
    module_aux = data[:9] + b"\xf7\x81" + (12345 << 10).to_bytes(8, "big") + data[9:]
    reason, offset = fails_at(module_aux)
    assert offset == 9 and "module" in reason
    select = data.index(b"\xfe\x00")
    assert fails_at(data[:select] + b"\xfe\x10" + data[select + 2:])[1] == select


def test_random_corruption_raises_only_rdb_errors():
    rnd = random.Random(11)
    base = write_file([(name.encode(), value, None) for name, value in VALUES.items()
                       if name not in ("string-16k", "hash-hashtable", "list-quicklist")],
                      compress=False)
    for round_ in range(300):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(9, len(data))] = rnd.randrange(256)
        if round_ % 3 == 0:
            data = data[:rnd.randrange(len(data))]
        try:
            read_file(bytes(data), limits(), verify_checksum=bool(round_ % 2))
        except RdbError:
            pass


def test_check_rdb_tool(tmp_path):
    good = tmp_path / "good.rdb"
    good.write_bytes(small_file())
    out = io.StringIO()
    assert check_rdb.check(str(good), out) == 0
    text = out.getvalue()
    assert "version 10" in text and "db 0: 3 keys, 1 with an expiry (1 already expired)" in text
    assert "hash (listpack): 1" in text and "zset (skiplist): 1" in text and "checksum OK" in text
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(small_file()[:-20])
    out = io.StringIO()
    assert check_rdb.check(str(bad), out) == 1
    size = len(small_file()) - 20
    assert f"[offset {size}] unexpected end of file" in out.getvalue()
    assert check_rdb.check(str(tmp_path / "missing.rdb"), io.StringIO()) == 2
    assert check_rdb.main([str(good)]) == 0
