"""The list command group (non-blocking) against a real shardd-server (2 workers): an oracle
table and a seeded random differential run against Debian's redis-server 7.0, then what Valkey 8
does differently from 7.0 (OBJECT ENCODING listpack/quicklist), RESP3 shapes and WATCH.

Keys of one oracle case share the hash tag {l} (worker 1) or {n} (worker 0).
"""
from __future__ import annotations

import copy
import pickle
import random
import shlex

import pytest
import redis

from helpers import RawConnection, keys_on, oracle_cases, run_both, worker_of

from shardd.worker.t_list import List, entry_size

L = "{l}"   # worker 1
M = "{n}"   # worker 0
RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "list-max-listpack-size", "-2")]


def test_tags_on_both_workers():
    assert worker_of(L + "x") == 1
    assert worker_of(M + "x") == 0


LIST_CASES = [
    # push / len / range
    ["LPUSH {l}k a b c", "RPUSH {l}k 1 2 3", "LRANGE {l}k 0 -1", "LLEN {l}k"],
    ["RPUSH {n}k a", "LPUSH {n}k b", "LRANGE {n}k 0 -1", "LLEN {n}k"],
    ["LPUSHX {l}k a", "RPUSHX {l}k a", "EXISTS {l}k", "RPUSH {l}k x", "LPUSHX {l}k a b",
     "RPUSHX {l}k c d", "LRANGE {l}k 0 -1"],
    ["SET {l}s v", "LPUSH {l}s a", "RPUSH {l}s a", "LPUSHX {l}s a", "RPUSHX {l}s a", "LLEN {l}s",
     "LRANGE {l}s 0 1", "LINDEX {l}s 0", "LPOP {l}s", "RPOP {l}s 2", "LSET {l}s 0 a",
     "LTRIM {l}s 0 1", "LREM {l}s 0 a", "LINSERT {l}s BEFORE a b", "LPOS {l}s a",
     "LMOVE {l}s {l}d LEFT LEFT", "RPOPLPUSH {l}s {l}d", "LMPOP 1 {l}s LEFT"],
    ["LLEN {l}nokey", "LRANGE {l}nokey 0 -1", "LINDEX {l}nokey 0", "LPOP {l}nokey",
     "RPOP {l}nokey", "LPOP {l}nokey 0", "LPOP {l}nokey 3", "LTRIM {l}nokey 0 1",
     "LREM {l}nokey 0 a", "LINSERT {l}nokey BEFORE a b", "LPOS {l}nokey a",
     "LPOS {l}nokey a COUNT 0", "LMOVE {l}nokey {l}d LEFT RIGHT", "RPOPLPUSH {l}nokey {l}d",
     "LMPOP 2 {l}nokey {l}nokey2 RIGHT", "EXISTS {l}d"],
    ["RPUSH {l}k 0 1 2 3 4 5 6 7 8 9", "LRANGE {l}k 1 -2", "LRANGE {l}k -3 -1", "LRANGE {l}k 4 4",
     "LRANGE {l}k 6 2", "LRANGE {l}k -1000 1000", "LRANGE {l}k 0 -11", "LRANGE {l}k 0 -10",
     "LRANGE {l}k 10 20", "LRANGE {l}k -1 -2", "LRANGE {l}k 8 100",
     "LRANGE {l}k -9223372036854775808 9223372036854775807", "LRANGE {l}k 1 a",
     "LRANGE {l}k a 1", "LRANGE {l}k 1.5 2", "LRANGE {l}k 9223372036854775808 1"],
    ["LRANGE {l}nokey a 1"],
    # LINDEX
    ["RPUSH {l}k a b c", "LINDEX {l}k 0", "LINDEX {l}k -1", "LINDEX {l}k 2", "LINDEX {l}k 3",
     "LINDEX {l}k -3", "LINDEX {l}k -4", "LINDEX {l}k x", "LINDEX {l}k 9223372036854775807",
     "LINDEX {l}k -9223372036854775808"],
    ["LINDEX {l}nokey x"],
    # LPOP / RPOP with and without count
    ["RPUSH {l}k a b c d e f g", "LPOP {l}k", "RPOP {l}k", "LPOP {l}k 2", "RPOP {l}k 2",
     "LPOP {l}k 0", "RPOP {l}k 0", "LPOP {l}k 10", "EXISTS {l}k"],
    ["RPUSH {l}k a", "RPOP {l}k 1", "EXISTS {l}k"],
    ["RPUSH {l}k a b", "LPOP {l}k -1", "LPOP {l}k abc", "LPOP {l}k 1.5", "RPOP {l}k -5",
     "LPOP {l}k 9223372036854775807", "EXISTS {l}k"],
    ["LPOP {l}nokey -1", "LPOP {l}nokey abc"],
    ["LPOP {l}k 1 2", "RPOP {l}k 1 2", "LPOP"],
    ["SET {l}s v", "LPOP {l}s 0", "LPOP {l}s -1"],
    # LSET
    ["RPUSH {l}k 99 98 97 96 95", "LSET {l}k 1 foo", "LSET {l}k -1 bar", "LRANGE {l}k 0 -1",
     "LSET {l}k 5 x", "LSET {l}k -6 x", "LSET {l}k abc x", "LSET {l}k -5 first", "LRANGE {l}k 0 0"],
    ["LSET {l}nokey 0 x", "LSET {l}nokey abc x"],
    # LINSERT
    ["RPUSH {l}k a b c", "LINSERT {l}k BEFORE b x", "LINSERT {l}k after b y",
     "LINSERT {l}k AFTER c z", "LINSERT {l}k before a w", "LINSERT {l}k BEFORE nope q",
     "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k a", "LINSERT {l}k MIDDLE a b"], ["LINSERT {l}nokey MIDDLE a b"],
    ["RPUSH {l}k 1 2 1", "LINSERT {l}k AFTER 1 x", "LRANGE {l}k 0 -1"],
    # LREM
    ["RPUSH {l}k e foo bar foobar foobared zap bar test foo", "LREM {l}k 0 bar",
     "LRANGE {l}k 0 -1", "LREM {l}k 1 foo", "LRANGE {l}k 0 -1", "LREM {l}k 1 nosuch"],
    ["RPUSH {l}k e foo bar foobar foobared zap bar test foo foo", "LREM {l}k -1 bar",
     "LRANGE {l}k 0 -1", "LREM {l}k -2 foo", "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k a a a", "LREM {l}k 5 a", "EXISTS {l}k"],
    ["RPUSH {l}k a b a b a", "LREM {l}k -2 a", "LRANGE {l}k 0 -1", "LREM {l}k 0 b",
     "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k 1 2 3", "LREM {l}k 1 2", "LLEN {l}k", "LREM {l}k x 1",
     "LREM {l}k 9223372036854775807 1", "LRANGE {l}k 0 -1"],
    # LTRIM
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k 1 -2", "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k -2 -1", "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k -10 10", "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k 0 -5", "LRANGE {l}k 0 -1"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k 0 -6", "EXISTS {l}k"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k 3 1", "EXISTS {l}k"],
    ["RPUSH {l}k 1 2 3 4 5", "LTRIM {l}k 5 10", "EXISTS {l}k"],
    ["RPUSH {l}k 1 2 3", "LTRIM {l}k a 1", "LTRIM {l}k 1 a", "LRANGE {l}k 0 -1"],
    ["LTRIM {l}nokey a 1"],
    # LPOS
    ["RPUSH {l}k a b c 1 2 3 c c", "LPOS {l}k a", "LPOS {l}k c", "LPOS {l}k c RANK 1",
     "LPOS {l}k c RANK 2", "LPOS {l}k c RANK 4", "LPOS {l}k c RANK -1", "LPOS {l}k c RANK -2",
     "LPOS {l}k c RANK 0",
     "LPOS {l}k c RANK 9223372036854775807", "LPOS {l}k c COUNT 0", "LPOS {l}k c COUNT 1",
     "LPOS {l}k c COUNT 2", "LPOS {l}k c COUNT 100", "LPOS {l}k c COUNT 0 RANK 2",
     "LPOS {l}k c COUNT 2 RANK -1", "LPOS {l}k x COUNT 2 RANK -1", "LPOS {l}k x RANK -1",
     "LPOS {l}k a COUNT 0 MAXLEN 1", "LPOS {l}k c COUNT 0 MAXLEN 1", "LPOS {l}k c COUNT 0 MAXLEN 3",
     "LPOS {l}k c COUNT 0 MAXLEN 3 RANK -1", "LPOS {l}k c COUNT 0 MAXLEN 7 RANK 2",
     "LPOS {l}k c MAXLEN 2", "LPOS {l}k 1", "LPOS {l}k c rank 2 count 5 maxlen 0"],
    ["RPUSH {l}k a", "LPOS {l}k a COUNT -1", "LPOS {l}k a COUNT x", "LPOS {l}k a MAXLEN -1",
     "LPOS {l}k a MAXLEN x", "LPOS {l}k a RANK x", "LPOS {l}k a RANK", "LPOS {l}k a COUNT",
     "LPOS {l}k a FOO 1", "LPOS {l}k a RANK 1 RANK 0", "LPOS {l}k b COUNT 10 RANK 5"],
    ["LPOS {l}nokey a RANK 0", "LPOS {l}nokey a COUNT -1"],
    # LMOVE / RPOPLPUSH
    ["RPUSH {l}s a b c d", "LMOVE {l}s {l}d LEFT RIGHT", "LMOVE {l}s {l}d RIGHT LEFT",
     "LMOVE {l}s {l}d left left", "LMOVE {l}s {l}d right right", "LRANGE {l}d 0 -1",
     "EXISTS {l}s", "LMOVE {l}s {l}d LEFT RIGHT"],
    ["RPUSH {l}s a b c", "LMOVE {l}s {l}s LEFT RIGHT", "LRANGE {l}s 0 -1",
     "LMOVE {l}s {l}s RIGHT LEFT", "LRANGE {l}s 0 -1", "LMOVE {l}s {l}s LEFT LEFT",
     "LRANGE {l}s 0 -1", "RPOPLPUSH {l}s {l}s", "LRANGE {l}s 0 -1"],
    ["RPUSH {l}s a", "LMOVE {l}s {l}s LEFT RIGHT", "LRANGE {l}s 0 -1", "RPOPLPUSH {l}s {l}s"],
    ["RPUSH {l}s a b", "SET {l}d x", "LMOVE {l}s {l}d LEFT RIGHT", "RPOPLPUSH {l}s {l}d",
     "LRANGE {l}s 0 -1", "GET {l}d"],
    ["SET {l}d x", "LMOVE {l}nokey {l}d LEFT RIGHT", "RPOPLPUSH {l}nokey {l}d"],
    ["SET {l}s x", "RPUSH {l}d a", "LMOVE {l}s {l}d LEFT RIGHT"],
    ["RPUSH {l}s a", "LMOVE {l}s {l}d UP RIGHT", "LMOVE {l}s {l}d LEFT DOWN",
     "LMOVE {l}nokey {l}d UP RIGHT", "LRANGE {l}s 0 -1"],
    ["RPUSH {l}s a b c", "RPUSH {l}d x", "RPOPLPUSH {l}s {l}d", "RPOPLPUSH {l}s {l}d",
     "LRANGE {l}d 0 -1", "LRANGE {l}s 0 -1"],
    # LMPOP
    ["RPUSH {l}a a b c d e f", "LMPOP 2 {l}a {l}a LEFT COUNT 2", "LMPOP 2 {l}a {l}a RIGHT COUNT 2",
     "LLEN {l}a", "LMPOP 1 {l}a LEFT", "LMPOP 1 {l}a RIGHT COUNT 10", "EXISTS {l}a"],
    ["RPUSH {l}b 1 2 3 4 5", "LMPOP 2 {l}a {l}b right COUNT 1", "LMPOP 2 {l}a {l}b left count 10",
     "LMPOP 2 {l}a {l}b left count 10"],
    ["SET {l}a x", "RPUSH {l}b 1", "LMPOP 2 {l}a {l}b LEFT", "LMPOP 2 {l}b {l}a LEFT",
     "LMPOP 2 {l}c {l}a LEFT"],
    ["LMPOP 0 {l}a LEFT"], ["LMPOP a {l}a LEFT"], ["LMPOP -1 {l}a RIGHT"],
    ["LMPOP 1 {l}a bad_where"], ["LMPOP 1 {l}a LEFT bar_arg"], ["LMPOP 1 {l}a RIGHT LEFT"],
    ["LMPOP 1 {l}a COUNT"], ["LMPOP 1 {l}a LEFT COUNT 1 COUNT 2"], ["LMPOP 2 {l}a {l}b bad_arg"],
    ["LMPOP 1 {l}a LEFT COUNT 0"], ["LMPOP 1 {l}a RIGHT COUNT a"], ["LMPOP 1 {l}a LEFT COUNT -1"],
    ["LMPOP 2 {l}a {l}b RIGHT COUNT -1"], ["LMPOP 5 {l}a {l}b LEFT"], ["LMPOP 1 {l}a LEFT COUNT"],
    ["LMPOP"], ["LMPOP 1"], ["LMPOP 1 {l}a"],
    # binary-safe and integer-looking elements
    [["RPUSH", "{l}k", "a\r\nb", "\x00", "", "01", "-0", "1", "-1", "9223372036854775808"],
     "LRANGE {l}k 0 -1", ["LPOS", "{l}k", "\x00"], "LPOS {l}k 1", "LREM {l}k 0 01",
     ["LINSERT", "{l}k", "AFTER", "", "e"], "LRANGE {l}k 0 -1"],
    # wrong arity
    ["LPUSH {l}k"], ["RPUSH"], ["LPUSHX {l}k"], ["LLEN"], ["LLEN a b"], ["LINDEX {l}k"],
    ["LSET {l}k 0"], ["LRANGE {l}k 0"], ["LTRIM {l}k 0"], ["LREM {l}k 0"],
    ["LINSERT {l}k BEFORE a"], ["LPOS {l}k"], ["LMOVE {l}a {l}b LEFT"], ["RPOPLPUSH {l}a"],
    # RESP3 shapes
    [("!", "HELLO 3"), "LPOP {l}nokey", "LPOP {l}nokey 0", "LPOP {l}nokey 2", "RPOP {l}nokey",
     "LINDEX {l}nokey 0", "LPOS {l}nokey a", "LPOS {l}nokey a COUNT 1", "LMPOP 1 {l}nokey LEFT",
     "LMOVE {l}nokey {l}d LEFT LEFT", "RPOPLPUSH {l}nokey {l}d", "RPUSH {l}k a b c",
     "LPOP {l}k 0", "LPOP {l}k 1", "LPOP {l}k", "LINDEX {l}k 5", "LPOS {l}k x",
     "LPOS {l}k c COUNT 0", "LMPOP 1 {l}k RIGHT COUNT 3", "EXISTS {l}k"],
]


@oracle_cases(LIST_CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_oracle_table_size():
    assert len(LIST_CASES) >= 70


def test_rank_and_count_of_llong_min(raw):
    """Valkey 8 (not redis 7.0) refuses LLONG_MIN, whose negation overflows."""
    raw.call("RPUSH", L + "k", "a", "b")
    out_of_range = b"-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
    assert raw.call("LPOS", L + "k", "a", "RANK", "-9223372036854775808") == out_of_range
    assert raw.call("LREM", L + "k", "-9223372036854775808", "a") == out_of_range
    assert raw.call("LPOS", L + "k", "a", "RANK", "-9223372036854775807") == b"$-1\r\n"
    assert raw.call("LPOS", L + "k", "a", "RANK", "-1") == b":0\r\n"
    assert raw.call("LREM", L + "k", "-9223372036854775807", "a") == b":1\r\n"


# -- random differential run against the oracle --------------------------------------------------

VALUES = ["a", "b", "c", "1", "2", "-1", "10", "foo", "", "x" * 70, "0", "01"]
KEYS = [L + "a", L + "b", L + "c"]
INDEXES = ["0", "1", "2", "-1", "-2", "-5", "3", "5", "10", "-100", "100"]


def _random_command(rng: random.Random) -> list[str]:
    key, other = rng.choice(KEYS), rng.choice(KEYS + [L + "str"])
    value = rng.choice(VALUES)
    side = lambda: rng.choice(["LEFT", "RIGHT"])       # noqa: E731
    kind = rng.randrange(20)
    if kind < 4:
        return [rng.choice(["LPUSH", "RPUSH"]), key] + rng.choices(VALUES, k=rng.randint(1, 4))
    if kind == 4:
        return [rng.choice(["LPUSHX", "RPUSHX"]), key, value]
    if kind == 5:
        cmd = [rng.choice(["LPOP", "RPOP"]), key]
        return cmd + ([rng.choice(["0", "1", "2", "5"])] if rng.random() < 0.5 else [])
    if kind == 6:
        return ["LLEN", key]
    if kind == 7:
        return ["LINDEX", key, rng.choice(INDEXES)]
    if kind == 8:
        return ["LSET", key, rng.choice(INDEXES), value]
    if kind == 9:
        return ["LRANGE", key, rng.choice(INDEXES), rng.choice(INDEXES)]
    if kind == 10:
        return ["LTRIM", key, rng.choice(INDEXES), rng.choice(INDEXES)]
    if kind == 11:
        return ["LREM", key, rng.choice(["0", "1", "2", "-1", "-2"]), value]
    if kind == 12:
        return ["LINSERT", key, rng.choice(["BEFORE", "AFTER"]), rng.choice(VALUES), value]
    if kind == 13:
        cmd = ["LPOS", key, value]
        for option, choices in (("RANK", ["1", "2", "-1", "-3"]), ("COUNT", ["0", "1", "2"]),
                                ("MAXLEN", ["0", "2", "5"])):
            if rng.random() < 0.4:
                cmd += [option, rng.choice(choices)]
        return cmd
    if kind in (14, 15):
        return ["LMOVE", key, other, side(), side()]
    if kind == 16:
        return ["RPOPLPUSH", key, other]
    if kind == 17:
        keys = rng.sample(KEYS, rng.randint(1, 3))
        cmd = ["LMPOP", str(len(keys)), *keys, side()]
        return cmd + (["COUNT", rng.choice(["1", "2", "5"])] if rng.random() < 0.5 else [])
    if kind == 18:
        return ["DEL", key] if rng.random() < 0.3 else ["LRANGE", key, "0", "-1"]
    return ["SET", L + "str", "v"] if rng.random() < 0.5 else ["LPUSH", L + "str", value]


@pytest.mark.parametrize("seed", range(4))
def test_random_against_oracle(pair, seed):
    rng = random.Random(seed)
    commands = [_random_command(rng) for _ in range(300)]
    for key in KEYS:                         # the final state too
        commands.append(["LRANGE", key, "0", "-1"])
    run_both(pair, commands, RESTORE)


def test_random_resp3_against_oracle(pair):
    rng = random.Random(99)
    commands = [("!", "HELLO 3")] + [_random_command(rng) for _ in range(150)]
    run_both(pair, commands, RESTORE)


# -- behaviour of Valkey 8 that redis 7.0 does not share: listpack / quicklist ---------------------

def _enc(r, key):
    return r.object("encoding", key)


def test_encoding_small_and_big(r):
    r.rpush(L + "k", "a", "b", "c")
    assert _enc(r, L + "k") == b"listpack"
    r.rpush(L + "big", "x" * 9000)                      # over 8 KiB: a quicklist at once
    assert _enc(r, L + "big") == b"quicklist"
    r.delete(L + "k")
    r.rpush(L + "k", *(["x" * 60] * 120))                # 120 * 62 + 7 = 7447 bytes
    assert _enc(r, L + "k") == b"listpack"
    r.rpush(L + "k", "y" * 800)                           # 7447 + 800 > 8192
    assert _enc(r, L + "k") == b"quicklist"
    r.rpop(L + "k")
    assert _enc(r, L + "k") == b"quicklist"              # only back under half the limit
    r.ltrim(L + "k", 0, 60)                               # 61 * 62 + 7 = 3789 <= 4096
    assert _enc(r, L + "k") == b"listpack"


def test_encoding_never_converts_without_shrinking(r):
    r.rpush(L + "k", *(["x" * 60] * 140))
    assert _enc(r, L + "k") == b"quicklist"
    r.config_set("list-max-listpack-size", -5)
    try:
        assert _enc(r, L + "k") == b"quicklist"           # a config change converts nothing
        r.rpush(L + "k2", *(["x" * 60] * 140))
        assert _enc(r, L + "k2") == b"listpack"
    finally:
        r.config_set("list-max-listpack-size", -2)


@pytest.mark.parametrize("max_size, large", [(3, "hello"), (-1, "x" * 5000)], ids=["count", "size"])
def test_encoding_listpack_to_quicklist(r, max_size, large):
    """Valkey's 'List listpack -> quicklist encoding conversion'."""
    r.config_set("list-max-listpack-size", max_size)
    try:
        def listpack(key, items):
            r.delete(key)
            for item in items:
                r.rpush(key, item)
            assert _enc(r, key) == b"listpack"

        listpack("lst", "abc")
        r.rpush("lst", large)
        assert _enc(r, "lst") == b"quicklist"
        listpack("lst", "abc")
        r.linsert("lst", "after", "b", large)
        assert _enc(r, "lst") == b"quicklist"
        listpack("lst", "abc")
        r.linsert("lst", "after", "nosuchpivot", large)   # converted even when nothing is inserted
        assert _enc(r, "lst") == b"quicklist"
        listpack("lst", "abc")
        r.lset("lst", 0, large)
        assert _enc(r, "lst") == b"quicklist"
        r.delete(L + "src")
        for item in ["a", "b", "c", large]:
            r.rpush(L + "src", item)
        assert _enc(r, L + "src") == b"quicklist"
        listpack(L + "dst", "def")
        r.lmove(L + "src", L + "dst", "RIGHT", "RIGHT")
        assert _enc(r, L + "dst") == b"quicklist"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_encoding_quicklist_to_listpack(r):
    """Valkey's 'List quicklist -> listpack encoding conversion'."""
    large = "x" * 5000
    r.config_set("list-max-listpack-size", 3)
    try:
        def quicklist(key, items):
            r.delete(key)
            for item in items:
                r.rpush(key, item)
            assert _enc(r, key) == b"quicklist"

        quicklist("lst", "abcd")
        r.rpop("lst", 3)
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", "aaad")
        r.lrem("lst", 3, "a")
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", "abcd")
        r.ltrim("lst", 1, 1)
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", "abcd")
        r.rpop("lst")
        assert _enc(r, "lst") == b"quicklist"             # 3 > 3 / 2
        r.config_set("list-max-listpack-size", -1)
        quicklist("lst", ["a", "b", "c", large])
        r.rpop("lst", 1)
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", ["a", large])
        r.lrem("lst", 1, large)
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", ["a", "b", large])
        r.ltrim("lst", 0, 1)
        assert _enc(r, "lst") == b"listpack"
        quicklist("lst", [large, "a", "b"])
        r.rpop("lst", 2)
        assert _enc(r, "lst") == b"quicklist"
        r.lset("lst", -1, "c")
        assert _enc(r, "lst") == b"listpack"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_encoding_limits_out_of_range(r):
    """Valkey's 'List invalid list-max-listpack-size config': 0 counts as 1, < -5 as -5."""
    try:
        r.config_set("list-max-listpack-size", 0)
        r.rpush("lst", "a")
        assert _enc(r, "lst") == b"listpack"
        r.rpush("lst", "b")
        assert _enc(r, "lst") == b"quicklist"
        r.config_set("list-max-listpack-size", -6)
        r.delete("lst")
        r.rpush("lst", "x" * 60000)
        assert _enc(r, "lst") == b"listpack"
        r.rpush("lst", "x" * 5536)
        assert _enc(r, "lst") == b"quicklist"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_encoding_counted_entries(r):
    r.config_set("list-max-listpack-size", 4)
    try:
        r.rpush("lst", 1, 2, 3, 4)
        assert _enc(r, "lst") == b"listpack"
        r.lpush("lst", 0)
        assert _enc(r, "lst") == b"quicklist"
        r.rpush("lst2", "x" * 8200)                      # the 8 KiB safety limit applies too
        assert _enc(r, "lst2") == b"quicklist"
    finally:
        r.config_set("list-max-listpack-size", -2)


def test_copy_keeps_encoding(r):
    r.rpush(L + "k", "x" * 9000, "a")
    r.rpop(L + "k")
    assert _enc(r, L + "k") == b"quicklist"
    assert r.copy(L + "k", L + "k2") == 1
    assert _enc(r, L + "k2") == b"quicklist"
    assert r.lrange(L + "k2", 0, -1) == [b"x" * 9000]


def test_list_value_copy_and_pickle():
    lst = List([b"a", b"1", b"x" * 100], quick=True)
    assert lst.lp_bytes == 7 + 3 + 2 + 103
    for twin in (copy.copy(lst), copy.deepcopy(lst), pickle.loads(pickle.dumps(lst))):
        assert type(twin) is List and list(twin) == list(lst)
        assert twin.quick and twin.lp_bytes == lst.lp_bytes
        twin.append(b"z")
        assert len(lst) == 3


def test_entry_size_unit():
    """Listpack entry sizes (checked once against redis 7.0's DEBUG OBJECT ql_uncompressed_size,
    whose listpack format Valkey 8 shares)."""
    assert [entry_size(v) for v in (b"0", b"127", b"128", b"-4096", b"-4097", b"32767",
                                    b"8388607", b"2147483647", b"2147483648")] == \
        [2, 2, 3, 3, 4, 4, 5, 6, 10]
    assert entry_size(b"9223372036854775808") == 21     # past int64: a string
    assert entry_size(b"01") == entry_size(b"-0") == entry_size(b"ab") == 4
    assert [entry_size(b"a" * n) for n in (0, 63, 64, 125, 126, 4095, 4096)] == \
        [2, 65, 67, 128, 130, 4099, 4103]


# -- big lists stay cheap near either end --------------------------------------------------------

def test_big_list_ends(r):
    n = 200_000
    pipe = r.pipeline(transaction=False)
    for start in range(0, n, 10_000):
        pipe.rpush(L + "big", *range(start, start + 10_000))
    pipe.execute()
    assert r.llen(L + "big") == n
    assert r.lindex(L + "big", -1) == str(n - 1).encode()
    assert r.lindex(L + "big", 3) == b"3"
    assert r.lrange(L + "big", -3, -1) == [str(n - i).encode() for i in (3, 2, 1)]
    assert r.lrange(L + "big", 0, 2) == [b"0", b"1", b"2"]
    assert r.lpos(L + "big", str(n - 5), rank=-1) == n - 5
    assert r.lpos(L + "big", "5", maxlen=10) == 5
    assert r.lpos(L + "big", "50", maxlen=10) is None
    assert r.ltrim(L + "big", 10, -11)
    assert r.llen(L + "big") == n - 20
    assert r.lpop(L + "big") == b"10"
    assert r.object("encoding", L + "big") == b"quicklist"
    assert r.ltrim(L + "big", 5, 6) and r.lrange(L + "big", 0, -1) == [b"16", b"17"]
    assert r.object("encoding", L + "big") == b"listpack"


# -- RESP3 and raw shapes ------------------------------------------------------------------------

def test_resp3_shapes(server, r):
    conn = RawConnection(server.port)
    try:
        assert conn.call("HELLO", "3").startswith(b"%")
        assert conn.call("LPOP", L + "none") == b"_\r\n"
        assert conn.call("LPOP", L + "none", "0") == b"_\r\n"
        assert conn.call("LMPOP", "1", L + "none", "LEFT") == b"_\r\n"
        assert conn.call("RPUSH", L + "k", "a", "b") == b":2\r\n"
        assert conn.call("LMPOP", "1", L + "k", "LEFT") == b"*2\r\n$4\r\n{l}k\r\n*1\r\n$1\r\na\r\n"
        assert conn.call("LPOP", L + "k", "0") == b"*0\r\n"
        assert conn.call("LPOS", L + "k", "zz") == b"_\r\n"
        assert conn.call("LPOS", L + "k", "zz", "COUNT", "0") == b"*0\r\n"
    finally:
        conn.close()


def test_resp2_shapes(raw):
    assert raw.call("LPOP", L + "none") == b"$-1\r\n"
    assert raw.call("LPOP", L + "none", "1") == b"*-1\r\n"
    assert raw.call("LMPOP", "1", L + "none", "LEFT") == b"*-1\r\n"
    assert raw.call("LMOVE", L + "none", L + "x", "LEFT", "LEFT") == b"$-1\r\n"
    assert raw.call("LPOS", L + "none", "a") == b"$-1\r\n"


# -- WATCH sees in-place writes ------------------------------------------------------------------

@pytest.mark.parametrize("write", [
    "RPUSH {l}k z", "LPUSHX {l}k z", "LPOP {l}k", "RPOP {l}k 2", "LSET {l}k 0 z",
    "LINSERT {l}k BEFORE a z", "LREM {l}k 0 a", "LTRIM {l}k 1 -1", "LMOVE {l}k {l}o LEFT LEFT",
    "LMOVE {l}o {l}k LEFT LEFT", "RPOPLPUSH {l}k {l}k", "LMPOP 1 {l}k RIGHT", "LTRIM {l}k 5 6",
])
def test_watch_sees_list_writes(server, r, write):
    r.rpush(L + "k", "a", "b", "c")
    r.rpush(L + "o", "o")
    watcher = server.client()
    try:
        pipe = watcher.pipeline()
        pipe.watch(L + "k")
        r.execute_command(*shlex.split(write))
        pipe.multi()
        pipe.get(L + "unrelated")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    finally:
        watcher.close()


def test_watch_untouched_by_noops(server, r):
    r.rpush(L + "k", "a", "b", "c")
    watcher = server.client()
    try:
        pipe = watcher.pipeline()
        pipe.watch(L + "k")
        for noop in ("LTRIM {l}k 0 -1", "LREM {l}k 0 nosuch", "LINSERT {l}k BEFORE nosuch z",
                     "LRANGE {l}k 0 -1", "LPOS {l}k a"):
            r.execute_command(*shlex.split(noop))
        pipe.multi()
        pipe.llen(L + "k")
        assert pipe.execute() == [3]
    finally:
        watcher.close()


# -- keys on different workers -------------------------------------------------------------------

def test_lmove_cross_shard(r):
    src, dst = keys_on(0, 1, "src")[0], keys_on(1, 1, "dst")[0]
    r.rpush(src, "a", "b", "c")
    assert r.lmove(src, dst, "LEFT", "RIGHT") == b"a"
    assert r.rpoplpush(src, dst) == b"c"
    assert r.lrange(dst, 0, -1) == [b"c", b"a"]
    assert r.lrange(src, 0, -1) == [b"b"]
    r.set(dst + "s", "x")
    with pytest.raises(Exception, match="WRONGTYPE"):
        r.lmove(src, dst + "s", "LEFT", "RIGHT")
    assert r.lrange(src, 0, -1) == [b"b"]


def test_lmpop_cross_shard(r):
    a, b = keys_on(0, 1, "a")[0], keys_on(1, 1, "b")[0]
    r.rpush(b, 1, 2, 3)
    assert r.execute_command("LMPOP", 2, a, b, "RIGHT", "COUNT", 2) == [b.encode(), [b"3", b"2"]]
    assert r.lrange(b, 0, -1) == [b"1"]
