"""The hash command group against a real shardd-server (2 workers), plus an oracle table that
sends the same bytes to Debian's redis-server 7.0 and compares the raw replies, and a seeded
random differential run against it.

Small hashes are listpacks in both servers, so field order (insertion order) is comparable; for
hashtable-encoded hashes the order is unspecified and the tests compare sorted.
Left out of the oracle on purpose (Valkey 8 differs from redis 7.0, Valkey wins; tested below):
  HSCAN ... NOVALUES / NOSCORES   7.0 lacks NOVALUES (syntax error) and names neither option
  HSCAN cursors of a hashtable    opaque; shardd pages by member hash
  HSET with more pairs than hash-max-listpack-entries   Valkey (7.2+) converts at once, even
                                  when the fields repeat; 7.0 counts the distinct fields
"""
from __future__ import annotations

import copy
import pickle
import random

import hiredis
import pytest

from helpers import oracle_cases, run_both, worker_of

A = "{a}"    # worker 1
B = "{b}"    # worker 0

RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "hash-max-listpack-entries", "128"),
           ("CONFIG", "SET", "hash-max-listpack-value", "64")]


def test_tags_cover_both_workers():
    assert worker_of(A + "h") == 1 and worker_of(B + "h") == 0


# -- the oracle table ----------------------------------------------------------------------------

HASH_CASES = [
    # HSET, HMSET, HSETNX, HGET, HMGET, HGETALL, HKEYS, HVALS, HLEN
    ["HSET {a}h f1 v1 f2 v2", "HGET {a}h f1", "HGET {a}h nofield", "HGET {a}nokey f1",
     "HGETALL {a}h", "HKEYS {a}h", "HVALS {a}h", "HLEN {a}h"],
    ["HSET {b}h f v", "HSET {b}h f w g x", "HGETALL {b}h", "HMSET {b}h a 1 f z", "HGETALL {b}h"],
    ["HSET {a}h a 1 a 2 a 3", "HGETALL {a}h", "HLEN {a}h"],
    ["HSET {a}h f1 v1", "HMGET {a}h f1 nofield f1", "HMGET {a}nokey x y"],
    ["HSETNX {a}h f v", "HSETNX {a}h f w", "HGET {a}h f", "HSETNX {a}h g w", "HGETALL {a}h"],
    ["HGETALL {a}nokey", "HKEYS {a}nokey", "HVALS {a}nokey", "HLEN {a}nokey"],
    [["HSET", "{a}h", "", ""], ["HGET", "{a}h", ""], ["HSTRLEN", "{a}h", ""], "HGETALL {a}h"],
    [["HSET", "{a}bin\r\n", "f\x00\r\n", "v\r\n\x00"], ["HGETALL", "{a}bin\r\n"]],
    ["HSET {a}h z 1 y 2 x 3", "HDEL {a}h y", "HSET {a}h y 4", "HSET {a}h z 5", "HGETALL {a}h"],
    # HDEL, HEXISTS, HSTRLEN
    ["HSET {a}h a 1 b 2 c 3", "HDEL {a}h a nofield a", "HEXISTS {a}h a", "HEXISTS {a}h b",
     "HDEL {a}h b c x", "EXISTS {a}h", "HDEL {a}h b", "HEXISTS {a}h b"],
    ["HSET {a}h f hello n 12345 neg -1", "HSTRLEN {a}h f", "HSTRLEN {a}h n", "HSTRLEN {a}h neg",
     "HSTRLEN {a}h nofield", "HSTRLEN {a}nokey f"],
    # HINCRBY
    ["HINCRBY {a}h f 5", "HINCRBY {a}h f -10", "HGET {a}h f", "HINCRBY {a}h g 0", "HGETALL {a}h"],
    ["HSET {a}h f abc", "HINCRBY {a}h f 1"], ["HSET {a}h f 1.5", "HINCRBY {a}h f 1"],
    ["HSET {a}h f ' 1'", "HINCRBY {a}h f 1"], ["HSET {a}h f 01", "HINCRBY {a}h f 1"],
    ["HSET {a}h f -0", "HINCRBY {a}h f 1"], ["HSET {a}h f ''", "HINCRBY {a}h f 1"],
    ["HINCRBY {a}h f abc"], ["HINCRBY {a}h f 1.0"], ["HINCRBY {a}h f 9223372036854775808"],
    ["HSET {a}h f 9223372036854775807", "HINCRBY {a}h f 1", "HINCRBY {a}h f -1"],
    ["HSET {a}h f -9223372036854775808", "HINCRBY {a}h f -1", "HINCRBY {a}h f 0"],
    ["HINCRBY {a}h f -9223372036854775808", "HINCRBY {a}h f -1"],
    # HINCRBYFLOAT
    ["HINCRBYFLOAT {a}h f 10.5", "HINCRBYFLOAT {a}h f 0.1", "HINCRBYFLOAT {a}h f -10.6",
     "HGET {a}h f"],
    ["HINCRBYFLOAT {a}h f 5.0e3", "HINCRBYFLOAT {a}h f 1e-20", "HINCRBYFLOAT {a}h f 0x10"],
    ["HSET {a}h f 3", "HINCRBYFLOAT {a}h f 0.5", "HINCRBY {a}h f 1"],
    ["HINCRBYFLOAT {a}h f inf"], ["HINCRBYFLOAT {a}h f -inf"], ["HINCRBYFLOAT {a}h f nan"],
    ["HINCRBYFLOAT {a}h f abc"], ["HINCRBYFLOAT {a}h f ''"], ["HINCRBYFLOAT {a}h f '1 '"],
    ["HSET {a}h f abc", "HINCRBYFLOAT {a}h f 1"], ["HSET {a}h f inf", "HINCRBYFLOAT {a}h f 1"],
    ["HSET {a}h f 1e308", "HINCRBYFLOAT {a}h f 1e308", "HINCRBYFLOAT {a}h f 1e4000",
     "HINCRBYFLOAT {a}h f 1e5000"],
    ["HINCRBYFLOAT {a}h f 0.1", "HINCRBYFLOAT {a}h f 0.2", "HINCRBYFLOAT {a}h f -0.3"],
    # HRANDFIELD: the deterministic shapes (count >= size gives the whole hash in order)
    ["HSET {a}h a 1 b 2 c 3", "HRANDFIELD {a}h 3", "HRANDFIELD {a}h 10 WITHVALUES",
     "HRANDFIELD {a}h 0", "HRANDFIELD {a}h 0 WITHVALUES", "HRANDFIELD {a}h 3 withvalues"],
    ["HRANDFIELD {a}nokey", "HRANDFIELD {a}nokey 5", "HRANDFIELD {a}nokey -5 WITHVALUES"],
    ["HSET {a}h a 1", "HRANDFIELD {a}h", "HRANDFIELD {a}h 1", "HRANDFIELD {a}h -3",
     "HRANDFIELD {a}h -2 WITHVALUES"],
    ["HSET {a}h a 1", "HRANDFIELD {a}h abc"], ["HSET {a}h a 1", "HRANDFIELD {a}h 1 foo"],
    ["HSET {a}h a 1", "HRANDFIELD {a}h 1 WITHVALUES foo"],
    ["HRANDFIELD {a}h 1 foo"], ["HRANDFIELD {a}h abc WITHVALUES"],
    ["HRANDFIELD {a}h -9223372036854775808"], ["HRANDFIELD {a}h 9223372036854775807"],
    ["HRANDFIELD {a}h 4611686018427387904 WITHVALUES"],
    ["HRANDFIELD {a}h -4611686018427387904 WITHVALUES"],
    ["HSET {a}h a 1", "HRANDFIELD {a}h 4611686018427387903 WITHVALUES"],
    # HSCAN on listpack hashes: everything at once, cursor 0
    ["HSET {a}h a 1 b 2 c 3", "HSCAN {a}h 0", "HSCAN {a}h 0 COUNT 1", "HSCAN {a}h 5",
     "HSCAN {a}h 0 MATCH b*", "HSCAN {a}h 0 MATCH * COUNT 100", "HSCAN {a}h 0 match [ac]"],
    [["HSET", "{a}h", "", "empty", "x", "1"], "HSCAN {a}h 0 MATCH *", "HSCAN {a}h 0 MATCH ?"],
    ["HSCAN {a}nokey 0", "HSCAN {a}nokey 0 COUNT 0 FOO"],
    ["HSET {a}h a 1", "HSCAN {a}h 0 COUNT 0"], ["HSET {a}h a 1", "HSCAN {a}h 0 COUNT -1"],
    ["HSET {a}h a 1", "HSCAN {a}h 0 COUNT abc"], ["HSET {a}h a 1", "HSCAN {a}h 0 COUNT"],
    ["HSET {a}h a 1", "HSCAN {a}h 0 MATCH"], ["HSET {a}h a 1", "HSCAN {a}h 0 FOO"],
    ["HSET {a}h a 1", "HSCAN {a}h 0 TYPE string"], ["HSCAN {a}h abc"], ["HSCAN {a}h 1.5"],
    ["SET {a}s x", "HSCAN {a}s 0"], ["SET {a}s x", "HSCAN {a}s abc"],
    # encodings
    ["HSET {a}h f v", "OBJECT ENCODING {a}h"],
    [["HSET", "{a}h", "f", "x" * 64], "OBJECT ENCODING {a}h",
     ["HSET", "{a}h", "g", "x" * 65], "OBJECT ENCODING {a}h", "HDEL {a}h g",
     "OBJECT ENCODING {a}h"],
    [["HSET", "{a}h", "f" * 65, "v"], "OBJECT ENCODING {a}h"],
    [["HINCRBY", "{a}h", "f" * 65, "1"], "OBJECT ENCODING {a}h"],
    [["HSETNX", "{a}h", "f", "v" * 65], "OBJECT ENCODING {a}h"],
    [("!", "CONFIG SET hash-max-listpack-entries 2"), "HSET {a}h a 1 b 2", "OBJECT ENCODING {a}h",
     "HSET {a}h c 3", "OBJECT ENCODING {a}h", "HDEL {a}h c b", "OBJECT ENCODING {a}h"],
    [("!", "CONFIG SET hash-max-listpack-value 3"), "HINCRBYFLOAT {a}h f 1.25",
     "OBJECT ENCODING {a}h", "HINCRBY {b}h f 1000", "OBJECT ENCODING {b}h"],
    [("!", "CONFIG SET hash-max-listpack-entries 0"), "HSET {a}h a 1", "OBJECT ENCODING {a}h"],
    # WRONGTYPE
    ["SET {a}s x", "HSET {a}s f v", "HGET {a}s f", "HMGET {a}s f", "HGETALL {a}s", "HKEYS {a}s",
     "HVALS {a}s", "HLEN {a}s", "HSTRLEN {a}s f", "HEXISTS {a}s f", "HDEL {a}s f",
     "HSETNX {a}s f v", "HMSET {a}s f v", "HINCRBY {a}s f 1", "HINCRBYFLOAT {a}s f 1",
     "HRANDFIELD {a}s", "HRANDFIELD {a}s 2", "HSCAN {a}s 0"],
    ["SET {a}s x", "HINCRBY {a}s f abc", "HINCRBYFLOAT {a}s f abc", "HRANDFIELD {a}s abc",
     "HRANDFIELD {a}s 1 foo", "HSCAN {a}s 0 COUNT 0"],
    ["HSET {a}h f v", "GET {a}h", "TYPE {a}h", "INCR {a}h", "APPEND {a}h x"],
    # arity
    ["HSET {a}h"], ["HSET {a}h f"], ["HSET {a}h f v g"], ["HMSET {a}h f"], ["HMSET {a}h f v g"],
    ["hset {a}h f v g"], ["HSETNX {a}h f"], ["HGET {a}h"], ["HMGET {a}h"], ["HDEL {a}h"],
    ["HGETALL"], ["HKEYS {a}h x"], ["HLEN"], ["HSTRLEN {a}h"], ["HEXISTS {a}h"],
    ["HINCRBY {a}h f"], ["HINCRBYFLOAT {a}h f 1 2"], ["HRANDFIELD"], ["HSCAN {a}h"],
    # RESP3 shapes
    [("!", "HELLO 3"), "HSET {a}h a 1 b 2", "HGETALL {a}h", "HGETALL {a}nokey", "HGET {a}h x",
     "HMGET {a}h a x", "HRANDFIELD {a}h 5 WITHVALUES", "HRANDFIELD {a}h 5", "HRANDFIELD {a}h 0",
     "HRANDFIELD {a}nokey", "HRANDFIELD {a}nokey 3 WITHVALUES", "HINCRBYFLOAT {a}h a 1.5",
     "HSCAN {a}h 0", "HSCAN {a}nokey 0", "HKEYS {a}h", "HVALS {a}nokey"],
    [("!", "HELLO 3"), "HSET {a}h a 1", "HRANDFIELD {a}h -2 WITHVALUES"],
]


@oracle_cases(HASH_CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_oracle_table_size():
    assert len(HASH_CASES) >= 80


# -- helpers -------------------------------------------------------------------------------------

def parse(raw: bytes):
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


def pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2]))


# -- HSET family ---------------------------------------------------------------------------------

def test_hset_and_reads_on_both_workers(r):
    for tag in (A, B):
        assert r.hset(tag + "h", mapping={"a": 1, "b": "two"}) == 2
        assert r.hget(tag + "h", "b") == b"two"
        assert r.hgetall(tag + "h") == {b"a": b"1", b"b": b"two"}
        assert r.hlen(tag + "h") == 2


def test_hdel_last_field_deletes_key(r):
    r.hset("h", mapping={"a": 1, "b": 2})
    assert r.hdel("h", "a", "b", "c") == 2
    assert r.exists("h") == 0
    assert r.hdel("h", "a") == 0


def test_hset_keeps_ttl_and_hsetnx_on_missing_key(r):
    r.hset("h", "a", 1)
    r.expire("h", 100)
    r.hset("h", "b", 2)
    r.hincrby("h", "c", 1)
    assert 0 < r.ttl("h") <= 100
    assert r.hsetnx("new", "f", "v") == 1 and r.ttl("new") == -1


def test_big_hash_is_hashtable_and_sorted_compare(r, oracle):
    fields = {f"f{i}": str(i) for i in range(300)}
    r.hset("h", mapping=fields)
    oracle.hset("h", mapping=fields)
    assert r.object("encoding", "h") == b"hashtable"
    assert sorted(r.hkeys("h")) == sorted(oracle.hkeys("h"))
    assert sorted(r.hvals("h")) == sorted(oracle.hvals("h"))
    assert r.hgetall("h") == oracle.hgetall("h")
    r.hdel("h", *[f"f{i}" for i in range(1, 300)])
    assert r.object("encoding", "h") == b"hashtable"      # never goes back to a listpack
    r.hdel("h", "f0")
    r.hset("h", "a", "b")                                 # a new hash starts as one
    assert r.object("encoding", "h") == b"listpack"


def test_hset_with_many_pairs_converts_even_with_duplicates(r):
    """hashTypeTryConversion counts the pairs given, not the distinct fields."""
    args = []
    for _ in range(129):
        args += ["f", "v"]
    r.execute_command("HSET", "h", *args)
    assert r.hlen("h") == 1
    assert r.object("encoding", "h") == b"hashtable"


def test_copy_keeps_encoding_and_contents(r):
    r.hset("{x}h", mapping={f"f{i}": i for i in range(200)})
    r.hdel("{x}h", *[f"f{i}" for i in range(1, 200)])
    assert r.copy("{x}h", "{x}h2")
    assert r.object("encoding", "{x}h2") == b"hashtable"
    assert r.hgetall("{x}h2") == {b"f0": b"0"}
    r.hset("{x}h2", "z", 1)
    assert r.hlen("{x}h") == 1


def test_hash_value_survives_pickle_and_deepcopy():
    from shardd.worker.t_hash import Hash
    h = Hash({b"a": b"1", b"b": b"2"}, hashtable=True)
    h.scan_order = [b"a", b"b"]
    for twin in (pickle.loads(pickle.dumps(h)), copy.deepcopy(h)):
        assert type(twin) is Hash and twin == h and twin is not h
        assert twin.hashtable is True and twin.scan_order is None
        assert list(twin) == [b"a", b"b"]


def test_watch_sees_in_place_hash_writes(server, r):
    r.hset("h", "a", 1)
    for command in (("HSET", "h", "a", "1"), ("HDEL", "h", "a"), ("HINCRBY", "h", "n", "1"),
                    ("HINCRBYFLOAT", "h", "n", "1.5"), ("HSETNX", "h", "new", "1")):
        r.hset("h", "a", 1)
        with server.client() as watcher:
            pipe = watcher.pipeline()
            pipe.watch("h")
            r.execute_command(*command)
            pipe.multi()
            pipe.hget("h", "a")
            with pytest.raises(Exception):
                pipe.execute()


def test_hincrbyfloat_long_double_digits(r, raw):
    assert r.hincrbyfloat("h", "f", "0.1") == pytest.approx(0.1)
    assert raw.call("HINCRBYFLOAT", "h", "g", "1.1") == b"$3\r\n1.1\r\n"
    assert raw.call("HINCRBYFLOAT", "h", "g", "0.00000000000000001") == b"$19\r\n1.10000000000000001\r\n"
    r.hset("h", "big", "1e4000")
    # 1e4000 as a long double is a little below it: 4000 digits, like Valkey prints it
    assert parse(raw.call("HINCRBYFLOAT", "h", "big", "1")).startswith(b"9" * 20)


# -- HRANDFIELD ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [5, 300])
def test_hrandfield_invariants(r, raw, size):
    fields = {f"f{i}".encode(): str(i).encode() for i in range(size)}
    r.hset("h", mapping=fields)
    assert r.hrandfield("h") in fields
    distinct = r.hrandfield("h", 3)
    assert len(distinct) == len(set(distinct)) == 3 and set(distinct) <= fields.keys()
    everything = r.hrandfield("h", size + 10)
    assert sorted(everything) == sorted(fields)
    repeated = r.hrandfield("h", -50)
    assert len(repeated) == 50 and set(repeated) <= fields.keys()
    flat = parse(raw.call("HRANDFIELD", "h", -20, "WITHVALUES"))
    assert len(flat) == 40
    assert all(fields[f] == v for f, v in zip(flat[::2], flat[1::2]))
    flat = parse(raw.call("HRANDFIELD", "h", size - 1, "WITHVALUES"))
    assert len(pairs(flat)) == size - 1 and all(fields[f] == v for f, v in pairs(flat).items())
    seen = {r.hrandfield("h") for _ in range(200)}
    assert len(seen) > 1


def test_hrandfield_resp3_pairs(raw):
    assert raw.call("HELLO", "3").startswith(b"%")
    raw.call("HSET", "h", "a", "1", "b", "2", "c", "3")
    for count in (-5, 2, 3, 10):
        reply = parse(raw.call("HRANDFIELD", "h", count, "WITHVALUES"))
        assert len(reply) == (abs(count) if count < 0 else min(count, 3))
        assert all(isinstance(p, list) and len(p) == 2 and p[1] == {b"a": b"1", b"b": b"2", b"c": b"3"}[p[0]]
                   for p in reply)
    assert raw.call("HRANDFIELD", "h", -1, "WITHVALUES").startswith(b"*1\r\n*2\r\n")


def test_hrandfield_distribution_is_random(r):
    r.hset("h", mapping={f"f{i}": i for i in range(10)})
    counts: dict[bytes, int] = {}
    for f in r.hrandfield("h", -5000):
        counts[f] = counts.get(f, 0) + 1
    assert len(counts) == 10 and min(counts.values()) > 300


# -- HSCAN ---------------------------------------------------------------------------------------

def full_scan(r, key: str, **kw) -> tuple[list, int]:
    """All items of an HSCAN walk, and the number of calls it took."""
    cursor, items, calls = 0, [], 0
    while True:
        cursor, page = r.hscan(key, cursor, **kw)
        items += page.items() if isinstance(page, dict) else page
        calls += 1
        if cursor == 0:
            return items, calls


def test_hscan_hashtable_pages(r):
    fields = {f"f{i}".encode(): str(i).encode() for i in range(1000)}
    r.hset("h", mapping=fields)
    items, calls = full_scan(r, "h", count=50)
    assert dict(items) == fields and len(items) == 1000
    assert 15 <= calls <= 30
    items, _ = full_scan(r, "h", count=100, match="f1*")
    assert dict(items) == {f: v for f, v in fields.items() if f.startswith(b"f1")}


def test_hscan_novalues(r, raw):
    """Valkey 8's NOVALUES (redis 7.0 lacks it)."""
    r.hset("small", mapping={"a": 1, "b": 2})
    assert raw.call("HSCAN", "small", 0, "NOVALUES") == b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    r.hset("big", mapping={f"f{i}": i for i in range(500)})
    cursor, fields = 0, []
    while True:
        reply = parse(raw.call("HSCAN", "big", cursor, "COUNT", 70, "novalues"))
        cursor = int(reply[0])
        fields += reply[1]
        if cursor == 0:
            break
    assert sorted(fields) == sorted(f"f{i}".encode() for i in range(500))
    assert raw.call("HSCAN", "small", 0, "NOSCORES") == (
        b"-ERR NOSCORES option can only be used in ZSCAN\r\n")
    assert raw.call("HSCAN", "nokey", 0, "NOVALUES") == b"*2\r\n$1\r\n0\r\n*0\r\n"


def test_hscan_guarantee_under_concurrent_writes(r):
    """Every field present for the whole scan is returned, whatever else changes meanwhile,
    including other scans starting over."""
    rng = random.Random(7)
    stable = {f"s{i}".encode() for i in range(600)}
    r.hset("h", mapping={f: 1 for f in stable})
    r.hset("h", mapping={f"t{i}": 1 for i in range(600)})
    cursor, seen, i = 0, set(), 0
    while True:
        cursor, page = r.hscan("h", cursor, count=25)
        seen |= page.keys()
        i += 1
        r.hdel("h", f"t{rng.randrange(600)}")
        r.hset("h", f"n{i}", 1)
        if i % 5 == 0:
            r.hscan("h", 0, count=10)        # another client's scan rebuilds the order
        if cursor == 0:
            break
    assert stable <= seen


def test_hscan_errors_in_order(raw):
    raw.call("SET", "s", "x")
    assert raw.call("HSCAN", "s", "abc") == b"-ERR invalid cursor\r\n"
    assert raw.call("HSCAN", "s", 0, "FOO").startswith(b"-WRONGTYPE")
    assert raw.call("HSCAN", "nokey", 0, "FOO") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert raw.call("HSCAN", "nokey", -1) == b"-ERR invalid cursor\r\n"


# -- random differential run ---------------------------------------------------------------------

def _random_hash_command(rng: random.Random) -> list[str]:
    key = rng.choice(["{a}h1", "{a}h2", "{a}s"])
    field = rng.choice(["a", "b", "c", "d", "e", "1", "2", ""])
    value = rng.choice(["1", "-7", "x", "1.5", "", "9223372036854775807", "abc"])
    name = rng.choice(["HSET", "HSET2", "HSETNX", "HDEL", "HGET", "HMGET", "HGETALL", "HKEYS",
                       "HVALS", "HLEN", "HSTRLEN", "HEXISTS", "HINCRBY", "HINCRBYFLOAT",
                       "HSCAN", "HRANDFIELD", "SET"])
    if name == "HSET":
        return ["HSET", key, field, value]
    if name == "HSET2":
        return ["HSET", key, field, value, rng.choice("abcdef"), value]
    if name in ("HSETNX",):
        return [name, key, field, value]
    if name in ("HDEL", "HMGET"):
        return [name, key, field, rng.choice("abcdef")]
    if name in ("HGET", "HSTRLEN", "HEXISTS"):
        return [name, key, field]
    if name == "HINCRBY":
        return [name, key, field, rng.choice(["1", "-3", "x", "9223372036854775807"])]
    if name == "HINCRBYFLOAT":
        return [name, key, field, rng.choice(["1", "-0.25", "x", "1e3"])]
    if name == "HSCAN":
        return [name, key, "0", "MATCH", rng.choice(["*", "a*", "?", "[a-c]"])]
    if name == "HRANDFIELD":
        return [name, key, rng.choice(["0", "10", "-0"]), "WITHVALUES"]
    if name == "SET":
        return ["SET", "{a}s", "x"]
    return [name, key]


def test_random_differential(pair):
    rng = random.Random(1234)
    s, o = pair
    for conn in pair:
        conn.call("FLUSHALL")
    for _ in range(1500):
        args = _random_hash_command(rng)
        got, want = s.call(*args), o.call(*args)
        assert got == want, f"{args!r}: shardd {got!r} != redis {want!r}"
    for conn in pair:
        conn.call("FLUSHALL")


# -- both workers --------------------------------------------------------------------------------

def test_hash_commands_pipelined_over_both_workers(r):
    """Single-key commands on keys of both workers at once (pipelined)."""
    pipe = r.pipeline(transaction=False)
    for tag in (A, B):
        pipe.hset(tag + "h", mapping={"a": 1})
        pipe.hincrby(tag + "h", "a", 2)
        pipe.hgetall(tag + "h")
    assert pipe.execute() == [1, 3, {b"a": b"3"}] * 2
