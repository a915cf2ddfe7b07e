"""The set command group against a real shardd-server (2 workers), plus an oracle table that
sends the same bytes to Debian's redis-server 7.0 and compares the replies, and a seeded random
differential run against it.

Reply order: an intset's members come in numeric order in both servers (compared exactly); any
other set's order is unspecified (Valkey's listpack keeps insertion order, 7.0 has no listpack
sets, shardd uses Python's set order), so a command marked "~" is compared as a sorted list.
Left out of the oracle on purpose (Valkey 8 differs from redis 7.0, Valkey wins; tested below):
  OBJECT ENCODING of small non-integer sets   Valkey: listpack, 7.0: hashtable
  SSCAN ... NOVALUES / NOSCORES              Valkey names the HSCAN/ZSCAN-only option
  SINTERSTORE/SPOP result encodings          Valkey 7.2+ rules (maybeConvertToIntset, CASE 3)
"""
from __future__ import annotations

import copy
import pickle
import random
import shlex

import hiredis
import pytest

from helpers import RawConnection, oracle_cases, worker_of

A = "{a}"    # worker 1
B = "{b}"    # worker 0

RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "set-max-intset-entries", "512"),
           ("CONFIG", "SET", "set-max-listpack-entries", "128"),
           ("CONFIG", "SET", "set-max-listpack-value", "64")]


def test_tags_cover_both_workers():
    assert worker_of(A + "s") == 1 and worker_of(B + "s") == 0


def parse(raw: bytes):
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


def unordered(reply):
    """A reply with the order of its (possibly nested) arrays taken out."""
    if isinstance(reply, list):
        return sorted((unordered(x) for x in reply), key=repr)
    if isinstance(reply, Exception):
        return ("error", str(reply))
    return reply


def run_both(pair, commands: list) -> None:
    """Like helpers.run_both, and a command string starting with "~" is compared without order
    (its raw reply types must still agree: a RESP3 set stays a set)."""
    s, o = pair
    for conn in pair:
        assert conn.call("SELECT", "0") == b"+OK\r\n"
        assert conn.call("FLUSHALL") == b"+OK\r\n"
    try:
        for command in commands:
            compare = True
            if isinstance(command, tuple) and command[0] == "!":
                compare, command = False, command[1]
            any_order = isinstance(command, str) and command.startswith("~")
            args = shlex.split(command.lstrip("~")) if isinstance(command, str) else command
            got, want = s.call(*args), o.call(*args)
            if not compare:
                continue
            if any_order:
                assert got[:1] == want[:1], f"{args!r}: shardd {got!r} != redis {want!r}"
                assert unordered(parse(got)) == unordered(parse(want)), \
                    f"{args!r}: shardd {got!r} != redis {want!r}"
            else:
                assert got == want, f"{args!r}: shardd {got!r} != redis {want!r}"
    finally:
        if any(isinstance(c, tuple) for c in commands):
            for conn in pair:
                for args in RESTORE:
                    conn.call(*args)


# -- the oracle table ----------------------------------------------------------------------------

SET_CASES = [
    # SADD, SREM, SCARD, SISMEMBER, SMISMEMBER, SMEMBERS
    ["SADD {a}s 3 1 2 1", "SMEMBERS {a}s", "SCARD {a}s", "SADD {a}s 2 5", "SMEMBERS {a}s"],
    ["SADD {b}s c a b", "~SMEMBERS {b}s", "SADD {b}s a", "SCARD {b}s", "SISMEMBER {b}s a",
     "SISMEMBER {b}s z", "SMISMEMBER {b}s a z b", "SMISMEMBER {b}nokey a b"],
    ["SADD {a}s -5 10 -9223372036854775808 9223372036854775807 0", "SMEMBERS {a}s",
     "OBJECT ENCODING {a}s", "SISMEMBER {a}s 0", "SISMEMBER {a}s 00", "SISMEMBER {a}s x"],
    ["SADD {a}s 1 2 3", "SADD {a}s 01 +1 ' 1' -0 1.0 9223372036854775808", "~SMEMBERS {a}s",
     "SCARD {a}s", "SISMEMBER {a}s 1", "SISMEMBER {a}s 01"],
    ["SREM {a}s a", "SADD {a}s a b c", "SREM {a}s a x a", "~SMEMBERS {a}s", "SREM {a}s b c",
     "EXISTS {a}s", "SREM {a}s b"],
    ["SADD {a}s 1 2 3", "SREM {a}s 2 02 x", "SMEMBERS {a}s"],
    [["SADD", "{a}s", "", "x\r\n\x00"], "~SMEMBERS {a}s", ["SISMEMBER", "{a}s", ""]],
    ["SCARD {a}nokey", "SMEMBERS {a}nokey", "SISMEMBER {a}nokey a"],
    # encodings (intset and hashtable agree with 7.0; listpack is Valkey's, tested below)
    ["SADD {a}s 1 2 3", "OBJECT ENCODING {a}s"],
    [("!", "CONFIG SET set-max-intset-entries 4"), "SADD {a}s 1 2 3 4", "OBJECT ENCODING {a}s",
     "SADD {a}s 5", "OBJECT ENCODING {a}s", "SREM {a}s 5 4 3", "OBJECT ENCODING {a}s",
     "~SMEMBERS {a}s"],
    # SMOVE
    ["SADD {a}s1 a b", "SADD {a}s2 c", "SMOVE {a}s1 {a}s2 a", "~SMEMBERS {a}s1",
     "~SMEMBERS {a}s2", "SMOVE {a}s1 {a}s2 nomember", "SMOVE {a}s1 {a}s2 b", "EXISTS {a}s1",
     "SMOVE {a}s2 {a}s3 c", "SMOVE {a}s2 {a}s3 a", "EXISTS {a}s2", "~SMEMBERS {a}s3"],
    ["SADD {a}s1 a", "SADD {a}s2 a", "SMOVE {a}s1 {a}s2 a", "EXISTS {a}s1", "SMEMBERS {a}s2"],
    ["SADD {a}s a", "SMOVE {a}s {a}s a", "SMOVE {a}s {a}s b", "SMEMBERS {a}s"],
    ["SMOVE {a}nokey {a}s a", "SET {a}str x", "SMOVE {a}nokey {a}str a", "SADD {a}s a",
     "SMOVE {a}s {a}str a", "SMOVE {a}str {a}s a", "SMOVE {a}s {a}str nomember",
     "SMEMBERS {a}s"],
    ["SADD {a}s 1 2", "SMOVE {a}s {a}d 1", "OBJECT ENCODING {a}d", "SMEMBERS {a}d"],
    # SINTER, SINTERCARD, SINTERSTORE
    ["SADD {a}1 1 2 3 4 5", "SADD {a}2 5 4 3 10", "SADD {a}3 4 3 99", "SINTER {a}1 {a}2 {a}3",
     "SINTER {a}2 {a}1", "SINTER {a}1", "SINTER {a}1 {a}1", "SINTER {a}1 {a}nokey",
     "SINTER {a}nokey {a}1", "SINTERCARD 3 {a}1 {a}2 {a}3", "SINTERCARD 2 {a}1 {a}2 LIMIT 2",
     "SINTERCARD 2 {a}1 {a}2 LIMIT 0", "SINTERCARD 2 {a}1 {a}2 limit 100",
     "SINTERCARD 1 {a}nokey", "SINTERCARD 2 {a}1 {a}nokey"],
    ["SADD {a}1 a b c d", "SADD {a}2 c d e", "~SINTER {a}1 {a}2", "SINTERSTORE {a}d {a}1 {a}2",
     "~SMEMBERS {a}d", "SINTERSTORE {a}d {a}1 {a}nokey", "EXISTS {a}d",
     "SINTERSTORE {a}d {a}1 {a}2", "SADD {a}3 z", "SINTERSTORE {a}d {a}1 {a}3", "EXISTS {a}d"],
    ["SET {a}d x", "EXPIRE {a}d 100", "SADD {a}1 1 2", "SINTERSTORE {a}d {a}1", "TTL {a}d",
     "TYPE {a}d", "SMEMBERS {a}d"],
    ["SADD {a}1 1", "SET {a}str x", "SINTER {a}1 {a}str", "SINTER {a}nokey {a}str",
     "SINTERCARD 2 {a}nokey {a}str", "SINTERSTORE {a}d {a}nokey {a}str",
     "SINTERSTORE {a}d {a}1 {a}str", "SINTERSTORE {a}str {a}1", "TYPE {a}str"],
    ["SINTERCARD 0 {a}1"], ["SINTERCARD -1 {a}1"], ["SINTERCARD abc {a}1"],
    ["SINTERCARD 3 {a}1 {a}2"], ["SINTERCARD 1 {a}1 LIMIT"], ["SINTERCARD 1 {a}1 LIMIT -1"],
    ["SINTERCARD 1 {a}1 LIMIT abc"], ["SINTERCARD 1 {a}1 FOO 1"], ["SINTERCARD 1 {a}1 {a}2"],
    ["SINTERCARD 2 {a}1 {a}2 LIMIT 1 LIMIT 2"],
    # SUNION, SDIFF and their STORE forms
    ["SADD {a}1 5 1 3", "SADD {a}2 2 3 4", "SUNION {a}1 {a}2", "SUNION {a}1 {a}nokey {a}1",
     "SDIFF {a}1 {a}2", "SDIFF {a}2 {a}1", "SDIFF {a}1 {a}1", "SDIFF {a}1 {a}2 {a}1",
     "SDIFF {a}nokey {a}1", "SDIFF {a}1 {a}nokey", "SUNION {a}nokey",
     "SUNIONSTORE {a}d {a}1 {a}2", "SMEMBERS {a}d", "OBJECT ENCODING {a}d",
     "SDIFFSTORE {a}d {a}1 {a}2", "SMEMBERS {a}d", "SDIFFSTORE {a}d {a}1 {a}1", "EXISTS {a}d",
     "SUNIONSTORE {a}d {a}nokey", "EXISTS {a}d"],
    ["SADD {a}1 a b 1", "SADD {a}2 b c", "~SUNION {a}1 {a}2", "~SDIFF {a}1 {a}2",
     "SUNIONSTORE {a}1 {a}1 {a}2", "~SMEMBERS {a}1", "SDIFFSTORE {a}2 {a}2 {a}1",
     "EXISTS {a}2"],
    ["SADD {a}1 1 2 3", "SADD {a}2 2 3 4", "SADD {a}3 3 4 5", "SDIFF {a}1 {a}2 {a}3",
     "SDIFF {a}3 {a}2", "SUNION {a}3 {a}2 {a}1", "SINTER {a}3 {a}2 {a}1"],
    ["SADD {a}1 a", "SET {a}str x", "SUNION {a}1 {a}str", "SDIFF {a}str {a}1",
     "SDIFF {a}nokey {a}str", "SUNIONSTORE {a}d {a}1 {a}str", "SDIFFSTORE {a}d {a}1 {a}str",
     "EXISTS {a}d", "SUNIONSTORE {a}str {a}1", "TYPE {a}str"],
    # SPOP and SRANDMEMBER: errors and the deterministic shapes
    ["SPOP {a}nokey", "SPOP {a}nokey 3", "SPOP {a}nokey 0", "SRANDMEMBER {a}nokey",
     "SRANDMEMBER {a}nokey 5", "SRANDMEMBER {a}nokey -5"],
    ["SADD {a}s 3 1 2", "SRANDMEMBER {a}s 3", "SRANDMEMBER {a}s 100", "SRANDMEMBER {a}s 0",
     "SPOP {a}s 0", "SPOP {a}s 3", "EXISTS {a}s"],
    ["SADD {a}s 5 1 9", "SPOP {a}s 10", "EXISTS {a}s"],
    ["SADD {a}s x", "SPOP {a}s", "EXISTS {a}s", "SADD {a}s x", "SRANDMEMBER {a}s",
     "SRANDMEMBER {a}s 1", "SRANDMEMBER {a}s -3", "SPOP {a}s 1"],
    ["SADD {a}s a", "SPOP {a}s -1"], ["SADD {a}s a", "SPOP {a}s abc"], ["SPOP {a}s 1 2"],
    ["SPOP {a}nokey -1"], ["SADD {a}s a", "SRANDMEMBER {a}s abc"], ["SRANDMEMBER {a}s 1 2"],
    ["SRANDMEMBER {a}s -9223372036854775808"], ["SRANDMEMBER {a}nokey 9223372036854775807"],
    ["SPOP {a}s 9223372036854775808"],
    # SSCAN on small sets: everything at once, cursor 0
    ["SADD {a}s 5 3 1", "SSCAN {a}s 0", "SSCAN {a}s 7 COUNT 1", "SSCAN {a}s 0 MATCH 3*",
     "SSCAN {a}s 0 MATCH * COUNT 100"],
    ["SADD {a}s ab ac b", "~SSCAN {a}s 0 MATCH a*", "SSCAN {a}s 0 MATCH z*"],
    [["SADD", "{a}s", "", "a"], "~SSCAN {a}s 0 MATCH *", "SSCAN {a}s 0 MATCH ?"],
    ["SSCAN {a}nokey 0", "SSCAN {a}nokey 0 FOO"], ["SADD {a}s a", "SSCAN {a}s 0 COUNT 0"],
    ["SADD {a}s a", "SSCAN {a}s 0 COUNT abc"], ["SADD {a}s a", "SSCAN {a}s 0 TYPE set"],
    ["SADD {a}s a", "SSCAN {a}s 0 MATCH"], ["SSCAN {a}s abc"], ["SSCAN {a}s 1.5"],
    ["SET {a}str x", "SSCAN {a}str 0", "SSCAN {a}str x"],
    # WRONGTYPE
    ["SET {a}str x", "SADD {a}str a", "SREM {a}str a", "SCARD {a}str", "SISMEMBER {a}str a",
     "SMISMEMBER {a}str a", "SMEMBERS {a}str", "SRANDMEMBER {a}str", "SRANDMEMBER {a}str 2",
     "SPOP {a}str", "SPOP {a}str 2", "SINTER {a}str", "SINTERCARD 1 {a}str", "SUNION {a}str",
     "SDIFF {a}str", "SSCAN {a}str 0"],
    ["SET {a}str x", "SPOP {a}str abc", "SRANDMEMBER {a}str abc", "SINTERCARD 0 {a}str"],
    ["SADD {a}s a", "GET {a}s", "TYPE {a}s", "HGET {a}s a", "LPUSH {a}s x"],
    # arity
    ["SADD {a}s"], ["SREM {a}s"], ["SCARD"], ["SISMEMBER {a}s"], ["SMISMEMBER {a}s"],
    ["SMEMBERS"], ["SMOVE {a}s {a}d"], ["SPOP"], ["SRANDMEMBER"], ["SINTER"], ["SINTERCARD 1"],
    ["SINTERSTORE {a}d"], ["SUNION"], ["SUNIONSTORE {a}d"], ["SDIFF"], ["SDIFFSTORE {a}d"],
    ["SSCAN {a}s"],
    # RESP3 shapes
    [("!", "HELLO 3"), "SADD {a}s 2 1", "SMEMBERS {a}s", "SMEMBERS {a}nokey", "SINTER {a}s",
     "SINTER {a}s {a}nokey", "SUNION {a}s", "SDIFF {a}s {a}nokey", "SDIFF {a}nokey",
     "SRANDMEMBER {a}s 5", "SRANDMEMBER {a}nokey 5", "SRANDMEMBER {a}nokey", "SPOP {a}nokey",
     "SPOP {a}nokey 2", "SPOP {a}s 0", "SSCAN {a}s 0", "SMISMEMBER {a}s 1 3",
     "SINTERCARD 1 {a}s", "SPOP {a}s 5"],
    [("!", "HELLO 3"), "SADD {a}s a b", "~SMEMBERS {a}s", "~SRANDMEMBER {a}s 5", "~SPOP {a}s 2"],
    [("!", "HELLO 3"), "SADD {a}1 a b c", "SADD {a}2 b c d", "~SINTER {a}1 {a}2",
     "~SUNION {a}1 {a}2", "~SDIFF {a}1 {a}2", "SINTERSTORE {a}d {a}1 {a}2", "~SSCAN {a}d 0"],
    ["SADD {a}s 1 2 3 x", "SISMEMBER {a}s 1", "SISMEMBER {a}s x", "SMISMEMBER {a}s 1 x y",
     "SREM {a}s x", "SADD {a}s 4", "SMISMEMBER {a}s 4 1"],
]


@oracle_cases(SET_CASES)
def test_oracle(pair, case):
    run_both(pair, case)


def test_oracle_table_size():
    assert len(SET_CASES) >= 80


# -- encodings (Valkey 8's listpack sets) --------------------------------------------------------

def encoding(r, key: str) -> bytes:
    return r.object("encoding", key)


def test_encoding_transitions(r):
    r.sadd("s", 1, 2, 3)
    assert encoding(r, "s") == b"intset"
    r.sadd("s", "a")
    assert encoding(r, "s") == b"listpack"
    r.srem("s", "a")
    assert encoding(r, "s") == b"listpack"          # never back to an intset
    r.sadd("s", *range(200))
    assert encoding(r, "s") == b"hashtable"
    r.srem("s", *range(1, 200))
    assert encoding(r, "s") == b"hashtable"
    r.sadd("t", "a")
    assert encoding(r, "t") == b"listpack"
    r.sadd("t", "x" * 65)
    assert encoding(r, "t") == b"hashtable"
    r.sadd("u", *range(512))
    assert encoding(r, "u") == b"intset"
    r.sadd("u", 512)
    assert encoding(r, "u") == b"hashtable"         # an intset that grows too big skips listpack
    r.sadd("v", *range(127))
    r.sadd("v", "a")
    assert encoding(r, "v") == b"listpack"
    r.sadd("w", *range(128))
    r.sadd("w", "a")
    assert encoding(r, "w") == b"hashtable"
    r.sadd("x", "a", *range(128))                   # created with a size hint above the listpack limit
    assert encoding(r, "x") == b"hashtable"
    r.sadd("y", 1, *(["a"] * 127))
    assert encoding(r, "y") == b"listpack"


def test_encoding_follows_config(r):
    try:
        r.config_set("set-max-intset-entries", 2)
        r.sadd("s", 1, 2, 3)                          # hint 3 > 2: created as a listpack
        assert encoding(r, "s") == b"listpack"
        r.sadd("t", 1, 2)
        r.sadd("t", 3)
        assert encoding(r, "t") == b"hashtable"
        r.config_set("set-max-listpack-value", 3)
        r.sadd("u", 1)
        r.sadd("u", "abcd")
        assert encoding(r, "u") == b"hashtable"
        r.sadd("v", 12345)
        r.sadd("v", "a")                              # the intset's longest member is too long
        assert encoding(r, "v") == b"hashtable"
    finally:
        r.config_set("set-max-intset-entries", 512)
        r.config_set("set-max-listpack-value", 64)


def test_store_and_pop_result_encodings(r):
    r.sadd("{x}1", *range(300), "a")
    r.sadd("{x}2", *range(100))
    assert encoding(r, "{x}1") == b"hashtable"
    assert r.sinterstore("{x}d", "{x}1", "{x}2") == 100
    assert encoding(r, "{x}d") == b"intset"            # maybeConvertToIntset
    r.sadd("{x}3", "a", "b", *range(300))
    assert r.sinterstore("{x}d", "{x}1", "{x}3") == 301
    assert encoding(r, "{x}d") == b"hashtable"
    r.sadd("{x}4", "a", "b", 1)
    assert r.sinterstore("{x}d", "{x}1", "{x}4") == 2
    assert encoding(r, "{x}d") == b"listpack"
    assert r.sunionstore("{x}d", "{x}2", "{x}4") == 102
    assert encoding(r, "{x}d") == b"listpack"
    assert r.sunionstore("{x}d", "{x}2", "{x}2") == 100
    assert encoding(r, "{x}d") == b"intset"
    assert r.sdiffstore("{x}d", "{x}1", "{x}2") == 201
    assert encoding(r, "{x}d") == b"hashtable"
    assert r.sdiffstore("{x}d", "{x}4", "{x}2") == 2
    assert encoding(r, "{x}d") == b"listpack"
    # SPOP popping most of a hashtable keeps the rest in a new set: a listpack if it fits one
    r.sadd("{x}5", *[f"m{i}" for i in range(600)])
    assert len(r.spop("{x}5", 540)) == 540
    assert r.scard("{x}5") == 60 and encoding(r, "{x}5") == b"listpack"
    r.sadd("{x}6", *range(600))
    r.spop("{x}6", 10)
    assert encoding(r, "{x}6") == b"hashtable"


def test_intset_order_in_replies(r, raw):
    members = [7, -3, 100, 0, 42, -9223372036854775808]
    r.sadd("s", *members)
    expected = [str(m).encode() for m in sorted(members)]
    assert parse(raw.call("SMEMBERS", "s")) == expected
    assert parse(raw.call("SRANDMEMBER", "s", 100)) == expected
    assert parse(raw.call("SSCAN", "s", 0))[1] == expected
    assert parse(raw.call("SUNION", "s", "nokey")) == expected
    popped = parse(raw.call("SPOP", "s", 5))       # CASE 3: what is left of an intset, in order
    assert popped == sorted(popped, key=int)


def test_set_value_survives_pickle_and_deepcopy():
    from shardd.worker.t_set import LISTPACK, Set
    s = Set({b"a", b"1"}, LISTPACK)
    s.scan_order = [b"a", b"1"]
    s.random_member()
    for twin in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert type(twin) is Set and twin == s and twin is not s
        assert twin.encoding == LISTPACK and twin.scan_order is None and twin.sampler is None


def test_copy_keeps_encoding(r):
    r.sadd("{x}s", "a", 1)
    assert r.copy("{x}s", "{x}t")
    assert encoding(r, "{x}t") == b"listpack" and r.smembers("{x}t") == {b"a", b"1"}
    r.sadd("{x}t", "b")
    assert r.scard("{x}s") == 2


# -- random picks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [3, 100, 2000])
def test_srandmember_invariants(r, size):
    members = {str(i).encode() if i % 2 else f"m{i}".encode() for i in range(size)}
    r.sadd("s", *members)
    assert r.srandmember("s") in members
    for count in (1, 2, size // 2, size - 1):
        picked = r.srandmember("s", count)
        assert len(picked) == len(set(picked)) == count and set(picked) <= members
    assert sorted(r.srandmember("s", size + 5)) == sorted(members)
    repeated = r.srandmember("s", -3 * size)
    assert len(repeated) == 3 * size and set(repeated) <= members
    assert r.scard("s") == size
    assert len({r.srandmember("s") for _ in range(100)}) > 1


def test_srandmember_distribution(r):
    r.sadd("s", *range(10))
    counts: dict[bytes, int] = {}
    for m in r.srandmember("s", -5000):
        counts[m] = counts.get(m, 0) + 1
    assert len(counts) == 10 and min(counts.values()) > 300
    firsts: dict[bytes, int] = {}
    for _ in range(300):                         # SPOP is random each time, not set order
        r.delete("t")
        r.sadd("t", "a", "b", "c")
        m = r.spop("t")
        firsts[m] = firsts.get(m, 0) + 1
    assert len(firsts) == 3 and min(firsts.values()) > 40


@pytest.mark.parametrize("size", [5, 100, 3000])
def test_spop_invariants(r, size):
    members = {f"m{i}".encode() for i in range(size)}
    r.sadd("s", *members)
    popped = set()
    for count in (1, 1, size // 10, size // 3):
        got = set(r.spop("s", count))
        assert len(got) == count and not got & popped and got <= members
        popped |= got
        assert r.scard("s") == size - len(popped)
    single = r.spop("s")
    assert single in members and single not in popped
    popped.add(single)
    assert r.smembers("s") | popped == members
    rest = set(r.spop("s", size))
    assert rest | popped == members and r.exists("s") == 0


def test_spop_drains_big_set_and_sampler_stays_right(r):
    """Single SPOPs over a big set (the sampler path) mixed with SADD/SREM/SMOVE."""
    r.sadd("{x}s", *range(1000))
    r.sadd("{x}s", *[f"m{i}" for i in range(1000)])
    expected = {str(i).encode() for i in range(1000)} | {f"m{i}".encode() for i in range(1000)}
    rng = random.Random(3)
    pipe = r.pipeline(transaction=False)
    for i in range(400):
        pipe.spop("{x}s")
    popped = pipe.execute()
    assert len(set(popped)) == 400 and set(popped) <= expected
    expected -= set(popped)
    for i in range(300):
        op = rng.randrange(5)
        if op == 0:
            m = f"new{i}".encode()
            r.sadd("{x}s", m)
            expected.add(m)
        elif op == 1 and expected:
            m = rng.choice(sorted(expected))
            assert r.srem("{x}s", m) == 1
            expected.discard(m)
        elif op == 2 and expected:
            m = rng.choice(sorted(expected))
            assert r.smove("{x}s", "{x}other", m)
            expected.discard(m)
        elif op == 3:
            m = r.spop("{x}s")
            assert m in expected
            expected.discard(m)
        else:
            assert r.srandmember("{x}s") in expected
    assert r.smembers("{x}s") == expected
    assert set(r.spop("{x}s", 5000)) == expected


# -- SSCAN ---------------------------------------------------------------------------------------

def test_sscan_hashtable_pages(r):
    members = {f"m{i}".encode() for i in range(1000)}
    r.sadd("s", *members)
    cursor, seen, calls = 0, [], 0
    while True:
        cursor, page = r.sscan("s", cursor, count=40)
        seen += page
        calls += 1
        if cursor == 0:
            break
    assert sorted(seen) == sorted(members) and 20 <= calls <= 40
    cursor, page = r.sscan("s", 0, count=2000, match="m1?")
    assert cursor == 0 and sorted(page) == sorted(f"m1{i}".encode() for i in range(10))


def test_sscan_guarantee_under_concurrent_writes(r):
    rng = random.Random(11)
    stable = {f"s{i}".encode() for i in range(500)}
    r.sadd("s", *stable, *[f"t{i}" for i in range(500)])
    cursor, seen, i = 0, set(), 0
    while True:
        cursor, page = r.sscan("s", cursor, count=20)
        seen |= set(page)
        i += 1
        r.srem("s", f"t{rng.randrange(500)}")
        r.sadd("s", f"n{i}")
        if i % 4 == 0:
            r.sscan("s", 0)
        if cursor == 0:
            break
    assert stable <= seen


def test_sscan_valkey_options(raw):
    raw.call("SADD", "s", "a")
    assert raw.call("SSCAN", "s", 0, "NOVALUES") == b"-ERR NOVALUES option can only be used in HSCAN\r\n"
    assert raw.call("SSCAN", "s", 0, "NOSCORES") == b"-ERR NOSCORES option can only be used in ZSCAN\r\n"
    assert raw.call("SSCAN", "s", -1) == b"-ERR invalid cursor\r\n"
    assert raw.call("SSCAN", "nokey", 0, "NOVALUES") == b"*2\r\n$1\r\n0\r\n*0\r\n"


# -- WATCH ---------------------------------------------------------------------------------------

def test_watch_sees_in_place_set_writes(server, r):
    for command in (("SADD", "{x}s", "new"), ("SREM", "{x}s", "a"), ("SPOP", "{x}s"),
                    ("SPOP", "{x}s", "1"), ("SMOVE", "{x}s", "{x}d", "a"),
                    ("SMOVE", "{x}d", "{x}s", "z"), ("SINTERSTORE", "{x}s", "{x}s", "{x}s")):
        r.delete("{x}s", "{x}d")
        r.sadd("{x}s", "a", "b")
        r.sadd("{x}d", "z")
        with server.client() as watcher:
            pipe = watcher.pipeline()
            pipe.watch("{x}s")
            r.execute_command(*command)
            pipe.multi()
            pipe.scard("{x}s")
            with pytest.raises(Exception):
                pipe.execute()


def test_no_op_writes_do_not_touch_watches(server, r):
    r.sadd("s", "a")
    with server.client() as watcher:
        pipe = watcher.pipeline()
        pipe.watch("s")
        r.sadd("s", "a")
        r.srem("s", "zz")
        pipe.multi()
        pipe.scard("s")
        assert pipe.execute() == [1]


# -- random differential run ---------------------------------------------------------------------

_UNORDERED = {"SMEMBERS", "SINTER", "SUNION", "SDIFF", "SSCAN"}


def _random_set_command(rng: random.Random) -> list[str]:
    keys = ["{a}1", "{a}2", "{a}3", "{a}str"]
    key = rng.choice(keys)
    member = rng.choice(["1", "2", "3", "-4", "a", "b", "c", "", "10"])
    name = rng.choice(["SADD", "SADD", "SREM", "SCARD", "SISMEMBER", "SMISMEMBER", "SMEMBERS",
                       "SMOVE", "SINTER", "SINTERCARD", "SINTERSTORE", "SUNION", "SUNIONSTORE",
                       "SDIFF", "SDIFFSTORE", "SSCAN", "SPOPALL", "SET"])
    if name == "SADD":
        return ["SADD", key, member, rng.choice(["5", "d", "2"])]
    if name in ("SREM", "SISMEMBER"):
        return [name, key, member]
    if name == "SMISMEMBER":
        return [name, key, member, "a", "1"]
    if name == "SMOVE":
        return [name, key, rng.choice(keys), member]
    if name in ("SINTER", "SUNION", "SDIFF"):
        return [name, *rng.sample(keys[:3], rng.randrange(1, 4))]
    if name == "SINTERCARD":
        return [name, "2", *rng.sample(keys[:3], 2), "LIMIT", str(rng.randrange(3))]
    if name.endswith("STORE"):
        return [name, rng.choice(keys), *rng.sample(keys[:3], rng.randrange(1, 4))]
    if name == "SSCAN":
        return [name, key, "0", "MATCH", rng.choice(["*", "1*", "?", "[a-c]"])]
    if name == "SPOPALL":
        return ["SPOP", key, "100"]
    if name == "SET":
        return ["SET", "{a}str", "x"]
    return [name, key]


def test_random_differential(pair):
    rng = random.Random(4321)
    s, o = pair
    for conn in pair:
        conn.call("FLUSHALL")
    for _ in range(1500):
        args = _random_set_command(rng)
        got, want = s.call(*args), o.call(*args)
        if args[0] in _UNORDERED or args[0] == "SPOP":
            assert got[:1] == want[:1] and unordered(parse(got)) == unordered(parse(want)), \
                f"{args!r}: shardd {got!r} != redis {want!r}"
        else:
            assert got == want, f"{args!r}: shardd {got!r} != redis {want!r}"
    for conn in pair:
        conn.call("FLUSHALL")


# -- cross-shard: keys on different workers -------------------------------------------------------

def test_multi_key_set_commands_cross_shard(r):
    r.sadd(A + "1", 1, 2, 3, "x")
    r.sadd(B + "2", 2, 3, 4, "x")
    assert r.sinter(A + "1", B + "2") == {b"2", b"3", b"x"}
    assert r.sunion(A + "1", B + "2") == {b"1", b"2", b"3", b"4", b"x"}
    assert r.sdiff(A + "1", B + "2") == {b"1"}
    assert r.sintercard(2, [A + "1", B + "2"]) == 3
    assert r.sintercard(2, [A + "1", B + "2"], limit=2) == 2
    assert r.sinterstore(B + "d", A + "1", B + "2") == 3
    assert r.smembers(B + "d") == {b"2", b"3", b"x"}
    assert r.sunionstore(A + "d", A + "1", B + "2") == 5
    assert r.sdiffstore(A + "d", B + "2", A + "1") == 1 and r.smembers(A + "d") == {b"4"}
    assert r.smove(A + "1", B + "2", 1) == 1
    assert r.smembers(B + "2") == {b"1", b"2", b"3", b"4", b"x"}
    assert r.smove(B + "2", A + "new", 4) == 1 and r.smembers(A + "new") == {b"4"}
    assert r.object("encoding", A + "new") == b"intset"


def test_multi_key_set_errors_cross_shard(r):
    r.sadd(A + "1", 1)
    r.set(B + "str", "x")
    for call in (lambda: r.sinter(A + "1", B + "str"), lambda: r.sunion(A + "1", B + "str"),
                 lambda: r.smove(A + "1", B + "str", 1), lambda: r.sinterstore(A + "d", A + "1", B + "str")):
        with pytest.raises(Exception, match="WRONGTYPE"):
            call()
    assert r.sinterstore(B + "str", A + "1") == 1 and r.type(B + "str") == b"set"


def test_multi_key_set_resp3_cross_shard(server, r):
    r.sadd(A + "1", "x", "y", 1)
    r.sadd(B + "2", "y", 1, 2)
    conn = RawConnection(server.port)
    try:
        assert conn.call("HELLO", "3").startswith(b"%")
        for command, expected in ((("SINTER", A + "1", B + "2"), [b"1", b"y"]),
                                  (("SUNION", A + "1", B + "2"), [b"1", b"2", b"x", b"y"]),
                                  (("SDIFF", B + "2", A + "1"), [b"2"]),
                                  (("SINTER", A + "1", B + "nokey"), [])):
            raw = conn.call(*command)
            assert raw.startswith(b"~") and sorted(parse(raw)) == expected
        assert conn.call("SINTERCARD", 2, A + "1", B + "2", "LIMIT", 1) == b":1\r\n"
        assert conn.call("SMISMEMBER", B + "2", "y", "x") == b"*2\r\n:1\r\n:0\r\n"
    finally:
        conn.close()
