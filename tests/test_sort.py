"""SORT and SORT_RO against a real shardd-server (2 workers): an oracle table and a seeded random
differential run against Debian's redis-server 7.0, the strtod corner cases of numeric sorting,
then what only Valkey 8 does (OBJECT ENCODING of a STORE result) and keys on several workers.

Keys of one oracle case share the hash tag {s} (worker 0) or {l} (worker 1).
"""
from __future__ import annotations

import random

import pytest

from helpers import keys_on, oracle_cases, run_both, worker_of

from shardd.worker.sort import sort_score

RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "list-max-listpack-size", "-2")]
# redis and Valkey never clear errno before SORT's strtod: a stale ERANGE from an earlier SORT
# would fail a later one. INCRBYFLOAT's string2ld clears it (errno = 0), so cases start with it.
CLEAR_ERRNO = ("!", "INCRBYFLOAT {s}errno 0")


def test_tags_on_both_workers():
    assert worker_of("{s}x") == 0
    assert worker_of("{l}x") == 1


SORT_CASES = [
    # numeric, DESC, LIMIT
    ["RPUSH {s}k 3 1 2 10 -5 1.5 1e2 0x10 -0 0", "SORT {s}k", "SORT {s}k DESC", "SORT {s}k ASC",
     "SORT {s}k LIMIT 1 3", "SORT {s}k LIMIT 0 0", "SORT {s}k LIMIT -5 2", "SORT {s}k LIMIT 2 -1",
     "SORT {s}k LIMIT 100 5", "SORT {s}k LIMIT 0 9223372036854775807", "SORT {s}k DESC LIMIT 8 5",
     "SORT {s}k LIMIT 9 1", "SORT {s}k LIMIT 10 1", "SORT {s}k limit 1 2 limit 3 1",
     "SORT_RO {s}k", "SORT_RO {s}k DESC LIMIT 1 2", "SORT {s}k desc asc"],
    ["RPUSH {s}k 2 1", "SORT {s}k LIMIT a 1", "SORT {s}k LIMIT 1 b", "SORT {s}k LIMIT 1",
     "SORT {s}k LIMIT", "SORT {s}k LIMIT 1.5 1", "SORT {s}k LIMIT -9223372036854775808 2",
     "SORT {s}k LIMIT 9223372036854775807 9223372036854775807"],
    # ALPHA
    ["RPUSH {s}k 2 1 3 10 b a B aa ''", "SORT {s}k ALPHA", "SORT {s}k ALPHA DESC",
     "SORT {s}k alpha limit 2 3", "SORT {s}k DESC ALPHA LIMIT 0 1"],
    ["RPUSH {s}k b a c", "SORT {s}k"],
    ["RPUSH {s}k 1 2 abc", "SORT {s}k", "SORT {s}k DESC LIMIT 0 1", "SORT {s}k ALPHA"],
    # sets
    ["SADD {s}set 5 3 9 -1 100", "SORT {s}set", "SORT {s}set DESC", "SORT {s}set ALPHA",
     "SORT {s}set LIMIT 1 2", "SORT_RO {s}set ALPHA DESC LIMIT 0 3"],
    ["SADD {s}set a c b 1", "SORT {s}set ALPHA", "SORT {s}set"],
    ["SADD {s}set c a b aa azz", "SORT {s}set BY nosort STORE {s}dst", "LRANGE {s}dst 0 -1",
     "SORT {s}set BY nosort DESC STORE {s}dst", "LRANGE {s}dst 0 -1",
     "SORT {s}set BY {s}nosuch_* STORE {s}dst", "LRANGE {s}dst 0 -1"],
    # BY
    ["RPUSH {s}k 1 2 3 4", "MSET {s}w_1 40 {s}w_2 10 {s}w_3 30 {s}w_4 20", "SORT {s}k BY {s}w_*",
     "SORT {s}k BY {s}w_* DESC", "SORT {s}k BY {s}w_* LIMIT 1 2", "SORT {s}k BY {s}w_* ALPHA",
     "SORT {s}k BY {s}w_* GET # GET {s}w_*", "SORT {s}k BY {s}w_* DESC LIMIT 0 1 GET {s}w_*",
     "SORT_RO {s}k BY {s}w_*"],
    ["RPUSH {s}k a b c d", "MSET {s}w_a 1 {s}w_c 1", "SORT {s}k BY {s}w_*",
     "SORT {s}k BY {s}w_* DESC", "SORT {s}k BY {s}w_* LIMIT 1 2"],
    ["RPUSH {s}k a b c", "MSET {s}w_a 2 {s}w_b x {s}w_c 1", "SORT {s}k BY {s}w_*",
     "SORT {s}k BY {s}w_* ALPHA", "SORT {s}k BY {s}w_* ALPHA DESC"],
    ["RPUSH {s}k a b c", "MSET {s}w_a 2 {s}w_c 1", "RPUSH {s}w_b 0", "SORT {s}k BY {s}w_*"],
    ["RPUSH {s}k a b c d", "MSET {s}w_a z {s}w_b y {s}w_d x", "SORT {s}k BY {s}w_* ALPHA",
     "SORT {s}k BY {s}w_* ALPHA DESC"],
    ["RPUSH {s}k 1 2 3", "HSET {s}h_1 f 30", "HSET {s}h_2 f 10", "HSET {s}h_3 f 20 g x",
     "SORT {s}k BY {s}h_*->f", "SORT {s}k BY {s}h_*->f DESC GET {s}h_*->g GET #",
     "SORT {s}k BY {s}h_*->nofield", "SORT {s}k BY {s}h_*->f ALPHA LIMIT 0 2"],
    ["RPUSH {s}k 1 2", "SET {s}h_1 5", "HSET {s}h_2 f 1", "SORT {s}k BY {s}h_*->f GET {s}h_*->f",
     "SORT {s}k BY {s}h_* GET {s}h_*"],
    # BY without '*': no sorting; lists keep their order (DESC reverses it), LIMIT picks from it
    ["RPUSH {s}k 2 1 4 3 5", "SORT {s}k BY nosort", "SORT {s}k BY nosort DESC",
     "SORT {s}k BY nosort LIMIT 1 2", "SORT {s}k BY nosort DESC LIMIT 1 2", "SORT {s}k BY #",
     "SORT {s}k BY nosort LIMIT 5 10", "SORT {s}k BY nosort LIMIT -10 100",
     "SORT {s}k BY nosort ALPHA", "SORT {s}k BY nosort BY {s}w_*", "SORT {s}k BY {s}w_* BY nosort",
     "SORT {s}k BY nosort STORE {s}dst", "LRANGE {s}dst 0 -1",
     "SORT {s}k BY nosort LIMIT 0 3 STORE {s}dst", "LRANGE {s}dst 0 -1"],
    # GET
    ["RPUSH {s}k 1 2 3", "MSET {s}o_1 one {s}o_3 three", "SORT {s}k GET {s}o_*",
     "SORT {s}k GET # GET {s}o_*", "SORT {s}k GET foo", "SORT {s}k GET {s}o_* GET {s}o_* DESC",
     "SORT_RO {s}k GET # LIMIT 1 1", "SORT {s}k GET"],
    ["RPUSH {s}k a", "SET {s}x:a-> 100", "SORT {s}k BY num GET {s}x:*->"],
    ["RPUSH {s}k a", "HSET {s}x:a f v", "SORT {s}k GET {s}x:*->f GET {s}x:*-> GET {s}x:*->g"],
    ["RPUSH {s}k a", "SET {s}a*b 1", "SET {s}ab 2", "SORT {s}k GET {s}*b", "SORT {s}k GET {s}**b"],
    ["RPUSH {s}k a", "RPUSH {s}o_a x", "SORT {s}k GET {s}o_*", "SORT {s}k GET {s}o_*->f"],
    # STORE
    ["RPUSH {s}k 3 1 2", "SORT {s}k STORE {s}dst", "LRANGE {s}dst 0 -1", "TYPE {s}dst",
     "SORT {s}k DESC LIMIT 0 2 STORE {s}dst", "LRANGE {s}dst 0 -1"],
    ["RPUSH {s}k 3 1", "SET {s}dst str EX 100", "SORT {s}k STORE {s}dst", "TTL {s}dst",
     "LRANGE {s}dst 0 -1"],
    ["RPUSH {s}k 1 2", "SORT {s}k GET {s}o_* GET # STORE {s}dst", "LRANGE {s}dst 0 -1"],
    ["RPUSH {s}dst x", "SORT {s}nokey STORE {s}dst", "EXISTS {s}dst"],
    ["RPUSH {s}k bar", "SORT {s}k ALPHA LIMIT 10 10 STORE {s}zap", "EXISTS {s}zap"],
    ["RPUSH {s}k 2 1", "SORT {s}k STORE {s}k", "LRANGE {s}k 0 -1"],
    ["RPUSH {s}k 2 1", "SORT {s}k STORE {s}a STORE {s}b", "EXISTS {s}a", "LRANGE {s}b 0 -1"],
    ["RPUSH {s}k 2 x", "SET {s}dst keep", "SORT {s}k STORE {s}dst", "GET {s}dst"],
    ["RPUSH {s}k 2 1", "SORT_RO {s}k STORE {s}dst", "SORT {s}k STORE"],
    # missing key, wrong type, syntax
    ["SORT {s}nokey", "SORT {s}nokey DESC LIMIT 0 5 GET #", "SORT_RO {s}nokey BY nosort"],
    ["SET {s}str v", "SORT {s}str", "SORT_RO {s}str", "SORT {s}str BY nosort"],
    ["HSET {s}h f v", "SORT {s}h"],
    ["SET {s}str v", "SORT {s}str FOO", "SORT {s}str LIMIT x 1"],
    ["RPUSH {s}k 1", "SORT {s}k FOO", "SORT {s}k BY", "SORT {s}k GET", "SORT {s}k STORE",
     "SORT {s}k LIMIT 0", "SORT {s}k ALPHA FOO", "SORT {s}k ASC DESC ALPHA BY x GET # LIMIT 0 1"],
    ["SORT"], ["SORT_RO"],
    # binary-safe elements and patterns
    [["RPUSH", "{s}k", "b\x00a", "b\x00b", "a", "\x00"], ["SORT", "{s}k", "ALPHA"],
     ["SORT", "{s}k", "ALPHA", "STORE", "{s}dst"], "LRANGE {s}dst 0 -1"],
    [["RPUSH", "{s}k", "1", "2"], ["SET", "{s}w\x001", "5"], ["SORT", "{s}k", "GET", "{s}w\x00*"]],
    # RESP3
    [("!", "HELLO 3"), "RPUSH {s}k 1 2", "SORT {s}k GET {s}nope_* GET #", "SORT {s}nokey",
     "SORT {s}k STORE {s}dst"],
]


@oracle_cases(SORT_CASES)
def test_oracle(pair, case):
    run_both(pair, [CLEAR_ERRNO] + case, RESTORE)


def test_oracle_table_size():
    assert len(SORT_CASES) >= 40


# -- numeric parsing: strtod corner cases ---------------------------------------------------------

SCORE_TEXTS = [" 5", "\t7", "5 ", "", "0x1p3", "0X.8", "0x", "1e400", "-1e400", "1e-400",
               "1e-310", "2.2250738585072011e-308", "2.2250738585072014e-308", "4.9e-324",
               "0x1p-1074", "0x1p-1080", "0e-500", "inf", "-inf", "+inf", "Infinity", "INFIN",
               "nan", "-nan", "nan(1)", "1_0", "+5", ".5", "5.", "1e", "1e+", "-.e1", "--1", "0x1.8p1",
               "1.7976931348623157e308", "1.7976931348623159e308", "\x005", "5\x00x", " \x00",
               "99999999999999999999999", "0.1", "-0", "1,5"]


@pytest.mark.parametrize("text", SCORE_TEXTS, ids=[repr(t) for t in SCORE_TEXTS])
def test_oracle_scores(pair, text):
    run_both(pair, [CLEAR_ERRNO, ["RPUSH", "{s}k", "1", text, "-1"], "SORT {s}k",
                    ["SET", "{s}w_b", text], "RPUSH {s}j a b c", "MSET {s}w_a 2 {s}w_c -2",
                    "SORT {s}j BY {s}w_*"], RESTORE)


def test_sort_score_unit():
    assert sort_score(b"") == 0.0
    assert sort_score(b" 5") == 5.0
    assert sort_score(b"5 ") is None
    assert sort_score(b"0x10") == 16.0
    assert sort_score(b"1e-310") is None and sort_score(b"0x1p-1074") == 5e-324
    assert sort_score(b"nan") is None and sort_score(b"-inf") == float("-inf")


# -- random differential run against the oracle --------------------------------------------------

NUMBERS = ["0", "1", "2", "-3", "10", "1.5", "-0.25", "1e3", "007", "3.0", "inf", "-inf", ".5"]
WORDS = ["a", "b", "ab", "B", "zz", "", "10", "9", "a b"]


def _random_case(rng: random.Random) -> list:
    numeric = rng.random() < 0.6
    pool = NUMBERS if numeric else WORDS
    elements = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
    container = rng.choice(["list", "list", "set", "zset"])
    as_set = container == "set"
    setup = []
    if elements and container == "zset":
        for element in elements:
            setup.append(["ZADD", "{s}k", str(rng.choice([1, 2, 2.5, -1, 7])), element])
    elif elements:
        setup.append(["SADD" if as_set else "RPUSH", "{s}k", *elements])
    members = sorted(set(elements)) if container != "list" else elements
    weights = rng.sample(range(-50, 50), len(set(members)) + 1)
    weight_of = dict(zip(sorted(set(members)), weights))
    for member, weight in weight_of.items():
        setup.append(["SET", "{s}w_" + member, str(weight)])
        setup.append(["HSET", "{s}h_" + member, "f", "v" + member, "g", str(weight)])
    sorts = []
    for _ in range(6):
        cmd = [rng.choice(["SORT", "SORT_RO"]), "{s}k"]
        options = []
        if rng.random() < 0.3:
            options.append(["BY", rng.choice(["{s}w_*", "{s}h_*->g", "nosort"])])
        if not numeric or rng.random() < 0.2:
            options.append(["ALPHA"])
        if rng.random() < 0.4:
            options.append([rng.choice(["ASC", "DESC"])])
        if rng.random() < 0.4:
            options.append(["LIMIT", str(rng.randint(-2, 8)), str(rng.randint(-2, 8))])
        for _ in range(rng.choice([0, 0, 1, 2])):
            options.append(["GET", rng.choice(["#", "{s}w_*", "{s}h_*->f", "{s}none_*"])])
        rng.shuffle(options)
        for option in options:
            cmd += option
        if as_set and "nosort" in cmd:
            cmd[cmd.index("nosort")] = "{s}w_*"          # a set's own order is arbitrary
        if cmd[0] == "SORT" and rng.random() < 0.3:
            cmd += ["STORE", "{s}dst"]
            sorts += [cmd, ["LRANGE", "{s}dst", "0", "-1"], ["EXISTS", "{s}dst"]]
        else:
            sorts.append(cmd)
    return [CLEAR_ERRNO] + setup + sorts


@pytest.mark.parametrize("seed", range(3))
def test_random_against_oracle(pair, seed):
    rng = random.Random(seed)
    for _ in range(40):
        run_both(pair, _random_case(rng), RESTORE)


# -- sorted sets ---------------------------------------------------------------------------------

ZSET_CASES = [
    ["ZADD {s}z 1 a 5 b 2 c 10 d 3 e", "SORT {s}z ALPHA DESC", "SORT {s}z ALPHA",
     "SORT {s}z BY nosort", "SORT {s}z BY nosort DESC", "SORT {s}z BY nosort ASC LIMIT 0 1",
     "SORT {s}z BY nosort DESC LIMIT 0 2", "SORT {s}z BY nosort LIMIT 5 10",
     "SORT {s}z BY nosort LIMIT -10 100", "SORT {s}z BY nosort LIMIT 1 3 STORE {s}dst",
     "LRANGE {s}dst 0 -1", "SORT {s}z"],
    ["ZADD {s}z 3 10 1 2 2 1", "SORT {s}z", "SORT {s}z DESC", "SORT {s}z BY nosort",
     "SORT {s}z BY nosort GET #", "MSET {s}w_10 1 {s}w_2 3 {s}w_1 2", "SORT {s}z BY {s}w_*"],
    ["ZADD {s}z 1 a 1 b 1 c", "SORT {s}z BY nosort", "SORT {s}z BY nosort DESC"],
    ["ZADD {s}z 1 a 2 b", "OBJECT ENCODING {s}z", "SORT_RO {s}z BY nosort LIMIT 0 1",
     "OBJECT ENCODING {s}z"],
    ["ZADD {s}z 1.5 x -inf y inf z 0 w", "SORT {s}z BY nosort DESC GET # LIMIT 1 2",
     "SORT {s}z ALPHA STORE {s}dst", "LRANGE {s}dst 0 -1"],
]


@oracle_cases(ZSET_CASES)
def test_oracle_zsets(pair, case):
    run_both(pair, [CLEAR_ERRNO] + case, RESTORE)


# -- Valkey 8: the encoding of a stored result -----------------------------------------------------

def test_store_encoding_counted(r):
    """Valkey's check_sort_store_encoding: with list-max-listpack-size 16 a result of up to 16
    elements is a listpack."""
    r.config_set("list-max-listpack-size", 16)
    try:
        r.rpush("{s}k", *range(17))
        assert r.sort("{s}k", num=16, start=0, store="{s}dst") == 16
        assert r.object("encoding", "{s}dst") == b"listpack"
        assert r.sort("{s}k", store="{s}dst") == 17
        assert r.object("encoding", "{s}dst") == b"quicklist"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_store_encoding_sized(r):
    r.rpush("{s}k", *range(1000))
    assert r.sort("{s}k", store="{s}dst") == 1000
    assert r.object("encoding", "{s}dst") == b"listpack"
    r.rpush("{s}big", "x" * 9000, "y")
    assert r.sort("{s}big", alpha=True, store="{s}dst") == 2
    assert r.object("encoding", "{s}dst") == b"quicklist"
    r.config_set("list-max-listpack-size", -1)
    try:
        r.delete("{s}k")
        r.lpush("{s}k", *(["1"] * 6000))
        r.sort("{s}k", store="{s}dst")
        assert r.object("encoding", "{s}dst") == b"quicklist"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_sort_of_intset_and_big_set(r):
    r.sadd("{s}set", *range(600))
    assert r.sort("{s}set", start=595, num=10) == [str(i).encode() for i in range(595, 600)]
    assert r.sort("{s}set", desc=True, start=0, num=2) == [b"599", b"598"]


# -- keys on different workers -------------------------------------------------------------------

def test_sort_cross_shard_store(r):
    src, dst = keys_on(0, 1, "src")[0], keys_on(1, 1, "dst")[0]
    r.rpush(src, 3, 1, 2)
    assert r.sort(src, store=dst) == 3
    assert r.lrange(dst, 0, -1) == [b"1", b"2", b"3"]
    r.delete(src)
    assert r.sort(src, store=dst) == 0
    assert r.exists(dst) == 0


def test_sort_cross_shard_patterns(r):
    """BY and GET patterns name keys of any worker (weight_1 is worker 1's, the others worker 0's)."""
    src = keys_on(0, 1, "src")[0]
    assert {worker_of(f"weight_{i}") for i in (1, 2, 3)} == {0, 1}
    r.rpush(src, 1, 2, 3)
    r.mset({"weight_1": 3, "weight_2": 2, "weight_3": 1})
    r.hset("obj_1", "name", "one")
    assert r.sort(src, by="weight_*") == [b"3", b"2", b"1"]
    assert r.sort(src, by="weight_*", get=["#", "weight_*", "obj_*->name"]) == \
        [b"3", b"1", None, b"2", b"2", None, b"1", b"3", b"one"]
    assert r.sort(src, by="weight_*", desc=True, store="dst_sorted") == 3
    assert r.lrange("dst_sorted", 0, -1) == [b"1", b"2", b"3"]


def test_command_getkeys_sort_finds_the_store_key(raw):
    assert raw.call("COMMAND", "GETKEYS", "SORT", "k", "BY", "store", "LIMIT", 0, 1,
                    "STORE", "d", "STORE", "e") == b"*2\r\n$1\r\nk\r\n$1\r\ne\r\n"
    assert raw.call("COMMAND", "GETKEYS", "SORT_RO", "k", "BY", "w*") == b"*1\r\n$1\r\nk\r\n"
