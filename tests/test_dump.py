"""DUMP and RESTORE against a real shardd-server, with Debian's redis-server 7.0 as the oracle.

- golden bytes: the same value built the same way on both servers DUMPs to the same payload
  (RDB version 10, which both write), for every type whose serialization has a defined order;
- cross restores: the oracle's payloads RESTOREd into shardd and shardd's into the oracle,
  for every type and encoding, read back and compared (with the encoding Valkey's loader
  chooses: small lists and small sets of strings come back listpacks, as in Valkey 8);
- errors and options (REPLACE, ABSTTL, IDLETIME, FREQ), raw replies compared with the oracle.
"""
from __future__ import annotations

import random
import time

import pytest
import redis

from helpers import run_both, worker_of
from shardd.persist import crc, rdb

# the configs the tests change, and 7.0's default for those where Valkey 8's differs
TOUCHED = ("hash-max-listpack-entries", "list-max-listpack-size", "list-compress-depth")
SAME = {"hash-max-listpack-entries": 128, "list-compress-depth": 0}


def build(client: redis.Redis, key: str, kind: str) -> None:
    """The value named `kind` at key, built by the same commands on any server."""
    if kind == "string":
        client.set(key, "hello")
    elif kind == "string-int":
        client.set(key, "-12345")
    elif kind == "string-int64":
        client.set(key, "9223372036854775807")
    elif kind == "string-lzf":
        client.set(key, "compress me " * 40)
    elif kind == "string-binary":
        client.set(key, bytes(range(256)))
    elif kind == "string-empty":
        client.set(key, "")
    elif kind == "list-small":
        client.rpush(key, "a", "1", "-2", "x" * 70, "4096")
    elif kind == "list-big":
        client.rpush(key, *[f"element-{i}" for i in range(3000)])
    elif kind == "list-counted":          # list-max-listpack-size 5: nodes of 5 entries
        client.rpush(key, *[f"e{i}" for i in range(23)])
    elif kind == "hash-listpack":
        client.hset(key, mapping={"f1": "v1", "n": 7, "neg": -300, "long": "z" * 60})
    elif kind == "hash-hashtable":
        client.hset(key, mapping={f"field{i}": f"value{i}" for i in range(200)})
    elif kind == "set-intset":
        client.sadd(key, 5, -1, 70000, 3, -5000000000)
    elif kind == "set-strings":
        client.sadd(key, "a", "b", "c")
    elif kind == "set-big":
        client.sadd(key, *[f"m{i}" for i in range(300)])
    elif kind == "zset-listpack":
        client.zadd(key, {"a": 1, "b": 2.5, "c": -3, "d": float("inf"), "e": 0, "f": 0.25})
    elif kind == "zset-skiplist":
        client.zadd(key, {f"member{i}": i / 4 for i in range(200)})
    else:
        raise AssertionError(kind)


# the kinds whose payload bytes are defined (ordered encodings); sets of strings and
# hashtable hashes serialize in hash-table order
GOLDEN = ["string", "string-int", "string-int64", "string-lzf", "string-binary", "string-empty",
          "list-small", "list-big", "list-counted", "hash-listpack", "set-intset", "zset-listpack",
          "zset-skiplist"]
ALL = GOLDEN + ["hash-hashtable", "set-strings", "set-big"]

# OBJECT ENCODING after RESTORE in shardd (Valkey 8's loader)
RESTORED_ENCODING = {"string": b"embstr", "string-int": b"int", "string-int64": b"int",
                     "string-lzf": b"raw", "string-binary": b"raw", "string-empty": b"embstr",
                     "list-small": b"listpack", "list-big": b"quicklist", "list-counted": b"listpack",
                     "hash-listpack": b"listpack", "hash-hashtable": b"hashtable",
                     "set-intset": b"intset", "set-strings": b"listpack", "set-big": b"hashtable",
                     "zset-listpack": b"listpack", "zset-skiplist": b"skiplist"}


def contents(client: redis.Redis, key: str):
    kind = client.type(key)
    if kind == b"string":
        return client.get(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"hash":
        return client.hgetall(key)
    if kind == b"set":
        return client.smembers(key)
    if kind == b"zset":
        return client.zrange(key, 0, -1, withscores=True)
    raise AssertionError(kind)


@pytest.fixture
def both(r, oracle):
    """(shardd, oracle) clients with the same conversion configs (put back afterwards)."""
    saved = [(client, {name: client.config_get(name)[name] for name in TOUCHED})
             for client in (r, oracle)]
    for client in (r, oracle):
        for name, value in SAME.items():
            client.config_set(name, value)
    yield r, oracle
    for client, values in saved:
        for name, value in values.items():
            client.config_set(name, value)


@pytest.mark.parametrize("kind", GOLDEN)
def test_dump_bytes_match_redis(both, kind):
    r, oracle = both
    if kind == "list-counted":
        for client in both:
            client.config_set("list-max-listpack-size", 5)
    for client in both:
        build(client, "{k}v", kind)
    ours, theirs = r.dump("{k}v"), oracle.dump("{k}v")
    assert ours == theirs
    assert ours[-10:-8] == b"\x0a\x00"


@pytest.mark.parametrize("kind", ALL)
def test_redis_payload_restores_into_shardd(both, kind):
    r, oracle = both
    build(oracle, "src", kind)
    payload = oracle.dump("src")
    for key in ("{a}dst", "{b}dst"):                   # a key on each worker
        assert r.restore(key, 0, payload) == b"OK"
        assert contents(r, key) == contents(oracle, "src")
        assert r.object("encoding", key) == RESTORED_ENCODING[kind]
        assert r.ttl(key) == -1
    assert worker_of("{a}dst") != worker_of("{b}dst")


@pytest.mark.parametrize("kind", ALL)
def test_shardd_payload_restores_into_redis(both, kind):
    r, oracle = both
    build(r, "src", kind)
    assert oracle.restore("dst", 0, r.dump("src")) == b"OK"
    assert contents(oracle, "dst") == contents(r, "src")
    assert r.restore("again", 0, r.dump("src")) == b"OK"         # and into shardd itself
    assert contents(r, "again") == contents(r, "src")
    assert r.object("encoding", "again") == RESTORED_ENCODING[kind]


def test_dump_follows_rdbcompression(r, oracle):
    for client in (r, oracle):
        client.set("k", "x" * 100)
        client.config_set("rdbcompression", "no")
    try:
        assert r.dump("k") == oracle.dump("k") and b"x" * 100 in r.dump("k")
    finally:
        for client in (r, oracle):
            client.config_set("rdbcompression", "yes")
    assert r.dump("k") == oracle.dump("k") and b"x" * 100 not in r.dump("k")


def test_restore_ttl_and_absttl(r):
    r.set("src", "v")
    payload = r.dump("src")
    assert r.restore("k", 5000, payload)
    assert 4000 < r.pttl("k") <= 5000
    when = int(time.time() * 1000) + 100_000
    assert r.restore("k", when, payload, replace=True, absttl=True)
    assert r.pexpiretime("k") == when
    assert r.restore("k", 0, payload, replace=True)
    assert r.ttl("k") == -1                                   # REPLACE drops the old TTL
    assert r.restore("k", 1000, payload, replace=True, absttl=True)   # long past
    assert r.exists("k") == 0                                 # the old key is gone too
    assert r.restore("k", 2 ** 63 - 1, payload)               # now + ttl wraps: expired
    assert r.exists("k") == 0
    assert r.restore("k", 10, payload, idletime=5)
    assert r.restore("k2", 0, payload, frequency=200)


def test_restore_of_newer_payloads(r):
    """A version 11 payload (Valkey 8, Redis 7.2) restores: a listpack-encoded set here."""
    body = bytes([rdb.TYPE_SET_LISTPACK]) + rdb.encode_string(rdb.listpack_of([b"a", b"b"])) + b"\x0b\x00"
    payload = body + crc.crc64(body).to_bytes(8, "little")
    assert r.restore("s", 0, payload)
    assert r.smembers("s") == {b"a", b"b"} and r.object("encoding", "s") == b"listpack"
    body = body[:-2] + b"\x0c\x00"                              # version 12: refused
    with pytest.raises(redis.ResponseError, match="DUMP payload version or checksum are wrong"):
        r.restore("s2", 0, body + crc.crc64(body).to_bytes(8, "little"))


def test_dump_missing_key_resp3(raw):
    assert raw.call("DUMP", "nokey") == b"$-1\r\n"
    raw.call("HELLO", "3")
    assert raw.call("DUMP", "nokey") == b"_\r\n"


def test_dump_and_restore_in_a_transaction(r):
    r.set("src", "v")
    with r.pipeline() as pipe:
        pipe.dump("src")
        pipe.delete("src")
        payload, _ = pipe.execute()
    with r.pipeline() as pipe:
        pipe.restore("src", 0, payload)
        pipe.get("src")
        assert pipe.execute() == [b"OK", b"v"]


# -- errors, compared with the oracle ---------------------------------------------------------

def sealed(body: bytes, version: int = 10) -> bytes:
    body += version.to_bytes(2, "little")
    return body + crc.crc64(body).to_bytes(8, "little")


PAYLOAD = sealed(b"\x00\x05hello")
BAD_CRC = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])
GARBAGE = sealed(b"\x00\x09short")                  # a string running into the footer
NOT_A_TYPE = sealed(b"\x08\x00")
EMPTY_HASH = sealed(b"\x04\x00")
STREAM = sealed(b"\x0f\x00")
BROKEN_LISTPACK = sealed(b"\x10\x07abcdefg")

ERROR_CASES = [
    [["RESTORE", "k", "0", PAYLOAD], ["GET", "k"], ["RESTORE", "k", "0", PAYLOAD]],
    [["RESTORE", "k", "-1", PAYLOAD]],
    [["RESTORE", "k", "abc", PAYLOAD]],
    [["RESTORE", "k", "0", BAD_CRC]],
    [["RESTORE", "k", "0", "short"]],
    [["RESTORE", "k", "0", GARBAGE]],
    [["RESTORE", "k", "0", NOT_A_TYPE]],
    [["RESTORE", "k", "0", EMPTY_HASH]],
    [["RESTORE", "k", "0", STREAM]],
    [["RESTORE", "k", "0", BROKEN_LISTPACK]],
    [["RESTORE", "k", "0", PAYLOAD, "FOO"]],
    [["RESTORE", "k", "0", PAYLOAD, "IDLETIME"]],
    [["RESTORE", "k", "0", PAYLOAD, "IDLETIME", "-1"]],
    [["RESTORE", "k", "0", PAYLOAD, "IDLETIME", "x"]],
    [["RESTORE", "k", "0", PAYLOAD, "FREQ", "256"]],
    [["RESTORE", "k", "0", PAYLOAD, "FREQ", "-1"]],
    [["RESTORE", "k", "0", PAYLOAD, "FREQ", "1", "IDLETIME", "1"]],
    [["RESTORE", "k", "0", PAYLOAD, "IDLETIME", "1", "FREQ", "1"]],
    [["RESTORE", "k", "0", PAYLOAD, "replace", "absttl", "idletime", "0"], ["GET", "k"]],
    [["RESTORE", "k", "0", PAYLOAD, "FREQ", "255", "REPLACE"], ["PTTL", "k"]],
    # the option checks come first, then BUSYKEY, then the TTL, then the payload
    [["SET", "k", "old"], ["RESTORE", "k", "-5", BAD_CRC, "FOO"]],
    [["SET", "k", "old"], ["RESTORE", "k", "-5", BAD_CRC]],
    [["SET", "k", "old"], ["RESTORE", "k", "-5", BAD_CRC, "REPLACE"]],
    [["SET", "k", "old"], ["RESTORE", "k", "0", BAD_CRC, "REPLACE"], ["GET", "k"]],
    [["SET", "k", "old"], ["RESTORE", "k", "0", PAYLOAD, "REPLACE"], ["GET", "k"]],
    [["RPUSH", "k", "x"], ["RESTORE", "k", "0", PAYLOAD, "REPLACE"], ["TYPE", "k"]],
    [["SET", "k", "old", "PX", "100000"], ["RESTORE", "k", "0", PAYLOAD, "REPLACE"], ["TTL", "k"]],
    [["SET", "k", "old"], ["RESTORE", "k", "1", PAYLOAD, "REPLACE", "ABSTTL"], ["EXISTS", "k"]],
    [["RESTORE", "k", "0"]],
    [["DUMP"]],
    [["DUMP", "nokey"]],
    [["SET", "k", "v"], ["DUMP", "k"]],
]


def _case_id(case) -> str:
    names = {PAYLOAD: "PAYLOAD", BAD_CRC: "BAD_CRC", GARBAGE: "GARBAGE", NOT_A_TYPE: "NOT_A_TYPE",
             EMPTY_HASH: "EMPTY_HASH", STREAM: "STREAM", BROKEN_LISTPACK: "BROKEN_LISTPACK"}
    return " ".join(names.get(a, a) if isinstance(a, bytes) else a for a in case[-1])[:60]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[_case_id(c) for c in ERROR_CASES])
def test_restore_errors_like_redis(pair, case):
    run_both(pair, case, [])


# -- a seeded random run ----------------------------------------------------------------------

def random_commands(rnd, key: str) -> list[list]:
    """Commands building a random value at key, of a random type, small or past the limits."""
    kind = rnd.choice(["string", "list", "hash", "set", "zset"])
    big = rnd.random() < 0.3
    n = rnd.randint(130, 300) if big else rnd.randint(1, 12)

    def member():
        choice = rnd.random()
        if choice < 0.3:
            return str(rnd.randint(-10 ** rnd.randint(1, 12), 10 ** rnd.randint(1, 12)))
        if choice < 0.9:
            return "m" + str(rnd.randint(0, 400))
        return "v" * rnd.randint(60, 70)              # around the listpack value limit
    if kind == "string":
        value = rnd.choice([member(), "x" * rnd.randint(0, 100), str(rnd.randint(-2 ** 63, 2 ** 63 - 1))])
        return [["SET", key, value]]
    commands = []
    for _ in range(n):
        if kind == "list":
            commands.append([rnd.choice(["RPUSH", "LPUSH"]), key, member()])
        elif kind == "hash":
            commands.append(["HSET", key, member(), member()])
        elif kind == "set":
            commands.append(["SADD", key, member()])
        else:
            commands.append(["ZADD", key, str(rnd.randint(-40, 40) / 4), member()])
    for _ in range(rnd.randint(0, 3)):                # deletions (never emptying the key)
        if kind == "list":
            commands.append(["LTRIM", key, "1", "-1"])
        elif kind == "hash":
            commands.append(["HDEL", key, member()])
        elif kind == "set":
            commands.append(["SREM", key, member()])
        else:
            commands.append(["ZREM", key, member()])
    commands.append(["EXISTS", key])
    return commands


def test_random_values_cross_restore(both):
    r, oracle = both
    rnd = random.Random(2024)
    for round_ in range(40):
        key = f"rnd{round_}"
        for command in random_commands(rnd, key):
            r.execute_command(*command)
            oracle.execute_command(*command)
        if not r.exists(key):
            continue
        ours, theirs = r.dump(key), oracle.dump(key)
        kind, encoding = r.type(key), r.object("encoding", key)
        if kind in (b"hash", b"zset"):
            assert encoding == oracle.object("encoding", key), key
        # serializations with a defined order are the same bytes (a list's nodes depend on
        # its history, a hashtable's order on its table)
        if kind in (b"string", b"zset") or encoding in (b"intset", b"listpack") and kind == b"hash":
            assert ours == theirs, (key, kind)
        elif encoding == b"intset":
            assert ours == theirs and oracle.object("encoding", key) == b"intset", key
        assert r.restore(key + "-from-redis", 0, theirs) == b"OK"
        assert oracle.restore(key + "-from-shardd", 0, ours) == b"OK"
        assert contents(r, key + "-from-redis") == contents(oracle, key), key
        assert contents(oracle, key + "-from-shardd") == contents(r, key), key
