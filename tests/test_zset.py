"""Sorted set commands against a real shardd-server (2 workers).

- An oracle table sends the same bytes to Debian's redis-server 7.0 and compares raw replies.
  Its scores are integers or short binary fractions (1.5, 0.25, inf): 7.0 prints doubles with
  %.17g, Valkey 8 with d2string (grisu2), and the two agree only on those.
- Valkey 8 behaviour the oracle lacks is tested against expected bytes: d2string score digits,
  ZRANK/ZREVRANK WITHSCORE, ZSCAN NOSCORES, ZADD's early skiplist conversion, LIMIT with a
  negative offset on a skiplist.
- A differential test runs seeded random command sequences on both servers (RESP2 and RESP3).
- Random replies (ZRANDMEMBER, ZSCAN of a skiplist) are checked by their invariants.

Keys share the hash tag {a} (worker 1) unless a test is about keys on both workers.
"""
from __future__ import annotations

import copy
import pickle
import random

import pytest

from helpers import keys_on, oracle_cases, run_both, worker_of

from shardd.worker import t_zset
from shardd.worker.t_zset import ZSet, d2string, string2d

RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "zset-max-listpack-entries", "128"),
           ("CONFIG", "SET", "zset-max-listpack-value", "64")]

Z = "ZADD {a}z 1 a 2 b 3 c 4 d 5 e"
L = "ZADD {a}l 0 a 0 b 0 c 0 d 0 e 0 f 0 g"
TWO = ["ZADD {a}x 1 a 2 b 3 c", "ZADD {a}y 10 b 20 c 30 d"]


def many(key: str, n: int, start: int = 0) -> list[str]:
    """ZADD of n members m<i> with score i."""
    args = ["ZADD", key]
    for i in range(start, start + n):
        args += [str(i), f"m{i}"]
    return args


ZSET_CASES = [
    # ZADD basics and options
    [Z, "ZRANGE {a}z 0 -1 WITHSCORES", "ZCARD {a}z", "ZADD {a}z 1 a", "ZADD {a}z 9 a", "ZSCORE {a}z a"],
    ["ZADD {a}z 1 a 1 a 2 a", "ZRANGE {a}z 0 -1 WITHSCORES"],
    [Z, "ZADD {a}z CH 1 a 20 b 30 new", "ZADD {a}z CH 1 a"],
    [Z, "ZADD {a}z NX 10 a 6 f", "ZRANGE {a}z 0 -1 WITHSCORES"],
    [Z, "ZADD {a}z XX 10 a 6 f", "ZADD {a}z XX CH 11 a 6 f", "ZRANGE {a}z 0 -1 WITHSCORES"],
    [Z, "ZADD {a}z GT CH 0 a 10 b 6 f", "ZADD {a}z LT CH 0 a 10 c 7 g", "ZRANGE {a}z 0 -1 WITHSCORES"],
    [Z, "ZADD {a}z XX GT 0 a 10 b", "ZADD {a}z XX LT CH 0 a 10 b", "ZRANGE {a}z 0 -1 WITHSCORES"],
    [Z, "ZADD {a}z INCR 2.5 a", "ZADD {a}z INCR -1 new", "ZADD {a}z NX INCR 1 a", "ZADD {a}z XX INCR 1 nope",
     "ZADD {a}z GT INCR -1 b", "ZADD {a}z LT INCR -1 b", "ZADD {a}z GT INCR 1 b"],
    ["ZADD {a}z XX 1 a", "EXISTS {a}z", "ZADD {a}z XX INCR 1 a", "ZADD {a}z XX CH 1 a"],
    ["zadd {a}z nx ch 1 a", "zadd {a}z Xx cH 2 a", "zadd {a}z iNcR 1 a"],
    ["ZADD {a}z"], ["ZADD {a}z 1"], ["ZADD {a}z 1 a 2"], ["ZADD {a}z NX"], ["ZADD {a}z NX CH"],
    ["ZADD {a}z NX XX 1 a"], ["ZADD {a}z GT LT 1 a"], ["ZADD {a}z GT NX 1 a"], ["ZADD {a}z LT NX 1 a"],
    ["ZADD {a}z INCR 1 a 2 b"], ["ZADD {a}z INCR NX XX 1 a 2 b"], ["ZADD {a}z NX XX 1 a 2"],
    ["ZADD {a}z abc a"], ["ZADD {a}z nan a"], ["ZADD {a}z NaN a"], ["ZADD {a}z '' a"],
    ["ZADD {a}z ' 1' a"], ["ZADD {a}z '1 ' a"], ["ZADD {a}z 1e400 a"], ["ZADD {a}z -1e400 a"],
    ["ZADD {a}z 1e-400 a"], ["ZADD {a}z 1 a abc b", "EXISTS {a}z"], ["ZADD {a}z 1 a 2 b nan c", "EXISTS {a}z"],
    ["ZADD {a}z 0x10 a 1e3 b .5 c 5. d +2 e 1E1 f 0x1p-2 g 0x.8 h", "ZRANGE {a}z 0 -1 WITHSCORES"],
    ["ZADD {a}z inf a -inf b +inf c Infinity d -INF e", "ZRANGE {a}z 0 -1 WITHSCORES"],
    ["ZADD {a}z 1e-310 a 0e-400 b", "ZCARD {a}z"],
    ["ZADD {a}z inf a", "ZADD {a}z INCR -inf a", "ZSCORE {a}z a", "ZINCRBY {a}z -inf a"],
    ["ZADD {a}z -0 a", "ZSCORE {a}z a", "ZADD {a}z 0 a", "ZINCRBY {a}z -0 b", "ZSCORE {a}z b"],
    [["ZADD", "{a}z", "1", "a\x00b", "2", "a\x00a", "3", ""], "ZRANGE {a}z 0 -1 WITHSCORES",
     ["ZSCORE", "{a}z", ""], ["ZRANK", "{a}z", "a\x00b"]],
    # ZINCRBY
    ["ZINCRBY {a}z 2 a", "ZINCRBY {a}z 2.5 a", "ZINCRBY {a}z -4.5 a", "ZRANGE {a}z 0 -1 WITHSCORES"],
    ["ZINCRBY {a}z abc a"], ["ZINCRBY {a}z nx a"], ["ZINCRBY {a}z 1"], ["ZINCRBY {a}z 1 a b"],
    ["ZINCRBY {a}z inf a", "ZINCRBY {a}z inf a", "ZINCRBY {a}z -inf a"],
    # ZSCORE, ZMSCORE, ZCARD, ZRANK, ZREVRANK
    [Z, "ZSCORE {a}z c", "ZSCORE {a}z nope", "ZSCORE {a}nokey a", "ZMSCORE {a}z a nope e",
     "ZMSCORE {a}nokey a b", "ZCARD {a}z", "ZCARD {a}nokey"],
    [Z, "ZRANK {a}z a", "ZRANK {a}z e", "ZREVRANK {a}z a", "ZREVRANK {a}z e", "ZRANK {a}z nope",
     "ZRANK {a}nokey a", "ZREVRANK {a}nokey a"],
    ["ZSCORE {a}z"], ["ZSCORE {a}z a b"], ["ZMSCORE {a}z"], ["ZCARD"], ["ZCARD {a}z x"], ["ZRANK {a}z"],
    # ZRANGE by rank
    [Z, "ZRANGE {a}z 0 -1", "ZRANGE {a}z 1 3 WITHSCORES", "ZRANGE {a}z -2 -1", "ZRANGE {a}z -100 100",
     "ZRANGE {a}z 3 1", "ZRANGE {a}z 5 10", "ZRANGE {a}z -1 -5", "ZRANGE {a}z 0 0", "ZRANGE {a}z 4 4",
     "ZRANGE {a}z 0 -1 REV", "ZRANGE {a}z 1 2 REV WITHSCORES", "ZRANGE {a}z 0 -1 withscores rev",
     "ZRANGE {a}z -9223372036854775808 9223372036854775807"],
    [Z, "ZRANGE {a}z a 1", "ZRANGE {a}z 0 1.5", "ZRANGE {a}z 0 9223372036854775808",
     "ZRANGE {a}z 0 -1 LIMIT 0 1", "ZRANGE {a}z 0 -1 LIMIT 0 -1", "ZRANGE {a}z 0 -1 LIMIT 0 -2",
     "ZRANGE {a}z 0 -1 LIMIT 1", "ZRANGE {a}z 0 -1 FOO", "ZRANGE {a}z 0 -1 REV REV",
     "ZRANGE {a}z 0 -1 BYSCORE BYLEX", "ZRANGE {a}z 0 -1 BYSCORE BYSCORE", "ZRANGE {a}z 0 -1 LIMIT a 1"],
    [Z, "ZREVRANGE {a}z 0 -1", "ZREVRANGE {a}z 0 1 WITHSCORES", "ZREVRANGE {a}z 0 -1 REV",
     "ZREVRANGE {a}z 0 -1 BYSCORE", "ZREVRANGE {a}z 0 -1 LIMIT 0 1"],
    ["ZRANGE {a}nokey 0 -1", "ZREVRANGE {a}nokey 0 -1", "ZRANGE {a}nokey 0 -1 WITHSCORES"],
    ["ZRANGE {a}z 0"], ["ZRANGE {a}z"], ["ZREVRANGE {a}z 0"],
    # ZRANGE BYSCORE and ZRANGEBYSCORE
    [Z, "ZRANGEBYSCORE {a}z 2 4", "ZRANGEBYSCORE {a}z (2 4", "ZRANGEBYSCORE {a}z 2 (4",
     "ZRANGEBYSCORE {a}z (2 (4", "ZRANGEBYSCORE {a}z -inf +inf", "ZRANGEBYSCORE {a}z (-inf (+inf WITHSCORES",
     "ZRANGEBYSCORE {a}z 4 2", "ZRANGEBYSCORE {a}z (3 3", "ZRANGEBYSCORE {a}z 3 (3", "ZRANGEBYSCORE {a}z 3 3",
     "ZRANGEBYSCORE {a}z 1.5 2.5", "ZRANGEBYSCORE {a}z 6 +inf", "ZRANGEBYSCORE {a}z -inf 0"],
    [Z, "ZRANGEBYSCORE {a}z -inf +inf LIMIT 1 2", "ZRANGEBYSCORE {a}z -inf +inf LIMIT 1 2 WITHSCORES",
     "ZRANGEBYSCORE {a}z -inf +inf WITHSCORES LIMIT 0 0", "ZRANGEBYSCORE {a}z -inf +inf LIMIT 0 -3",
     "ZRANGEBYSCORE {a}z -inf +inf LIMIT 4 10", "ZRANGEBYSCORE {a}z -inf +inf LIMIT 5 1",
     "ZRANGEBYSCORE {a}z -inf +inf LIMIT 100 1", "ZRANGEBYSCORE {a}z -inf +inf LIMIT -1 1",
     "ZRANGEBYSCORE {a}z 2 3 LIMIT 1 5", "ZRANGEBYSCORE {a}z -inf +inf LIMIT 1 1 LIMIT 2 1"],
    [Z, "ZREVRANGEBYSCORE {a}z 4 2", "ZREVRANGEBYSCORE {a}z (4 (2 WITHSCORES", "ZREVRANGEBYSCORE {a}z 2 4",
     "ZREVRANGEBYSCORE {a}z +inf -inf LIMIT 1 2", "ZREVRANGEBYSCORE {a}z +inf -inf LIMIT 4 5",
     "ZREVRANGEBYSCORE {a}z +inf -inf LIMIT -1 5"],
    [Z, "ZRANGE {a}z 2 4 BYSCORE", "ZRANGE {a}z 4 2 BYSCORE REV WITHSCORES", "ZRANGE {a}z (1 5 BYSCORE LIMIT 1 2",
     "ZRANGE {a}z +inf -inf BYSCORE REV LIMIT 0 2", "ZRANGE {a}z 2 4 BYSCORE REV"],
    [Z, "ZRANGEBYSCORE {a}z a b", "ZRANGEBYSCORE {a}z 1 b", "ZRANGEBYSCORE {a}z nan 1",
     "ZRANGEBYSCORE {a}z (nan 1", "ZRANGEBYSCORE {a}z 1 '2 '", "ZRANGEBYSCORE {a}z ' 1' 2",
     "ZRANGEBYSCORE {a}z '' 5", "ZRANGEBYSCORE {a}z ( (5", "ZRANGEBYSCORE {a}z ((1 5",
     "ZRANGEBYSCORE {a}z 1e400 inf", "ZRANGEBYSCORE {a}z 0x1 0x3", "ZRANGEBYSCORE {a}z 1 2 BYSCORE",
     "ZRANGEBYSCORE {a}z 1 2 REV", "ZRANGEBYSCORE {a}z 1 2 LIMIT 0", "ZRANGEBYSCORE {a}z 1 2 LIMIT 0 x"],
    [Z, ["ZRANGEBYSCORE", "{a}z", "1\x00junk", "3"], ["ZRANGEBYSCORE", "{a}z", "1", "3\x00"]],
    ["ZADD {a}z -inf a 0 b inf c", "ZRANGEBYSCORE {a}z -inf -inf", "ZRANGEBYSCORE {a}z inf inf",
     "ZRANGEBYSCORE {a}z (-inf (inf", "ZRANGEBYSCORE {a}z (inf inf", "ZCOUNT {a}z -inf -inf"],
    ["ZRANGEBYSCORE {a}nokey 0 1", "ZRANGEBYSCORE {a}nokey a b", "ZREVRANGEBYSCORE {a}nokey 1 0"],
    # lex ranges
    [L, "ZRANGEBYLEX {a}l - +", "ZRANGEBYLEX {a}l [b (e", "ZRANGEBYLEX {a}l (b [e", "ZRANGEBYLEX {a}l [b [b",
     "ZRANGEBYLEX {a}l (b (b", "ZRANGEBYLEX {a}l (b [b", "ZRANGEBYLEX {a}l + -", "ZRANGEBYLEX {a}l - -",
     "ZRANGEBYLEX {a}l + +", "ZRANGEBYLEX {a}l [e [b", "ZRANGEBYLEX {a}l [bb [dd", "ZRANGEBYLEX {a}l [ (c",
     "ZRANGEBYLEX {a}l ( +", "ZRANGEBYLEX {a}l - [", "ZRANGEBYLEX {a}l [z +"],
    [L, "ZRANGEBYLEX {a}l - + LIMIT 2 3", "ZRANGEBYLEX {a}l - + LIMIT 0 0", "ZRANGEBYLEX {a}l - + LIMIT 0 -1",
     "ZRANGEBYLEX {a}l - + LIMIT 6 5", "ZRANGEBYLEX {a}l - + LIMIT 7 5", "ZRANGEBYLEX {a}l - + LIMIT -1 5",
     "ZREVRANGEBYLEX {a}l + - LIMIT 1 2", "ZREVRANGEBYLEX {a}l (e [b", "ZREVRANGEBYLEX {a}l [b (e",
     "ZRANGE {a}l [b [d BYLEX", "ZRANGE {a}l [d [b BYLEX REV LIMIT 1 5", "ZRANGE {a}l - + BYLEX LIMIT 1 1"],
    [L, "ZRANGEBYLEX {a}l a +", "ZRANGEBYLEX {a}l [a +x", "ZRANGEBYLEX {a}l -a +", "ZRANGEBYLEX {a}l '' +",
     "ZRANGEBYLEX {a}l - + WITHSCORES", "ZRANGE {a}l - + BYLEX WITHSCORES", "ZRANGEBYLEX {a}l - + BYLEX",
     "ZLEXCOUNT {a}l a b", "ZREMRANGEBYLEX {a}l a b", "ZRANGEBYLEX {a}nokey a b"],
    ["ZADD {a}m 1 b 2 a 3 d 0 c 5 a2", "ZRANGEBYLEX {a}m - +", "ZRANGEBYLEX {a}m [a [c", "ZRANGEBYLEX {a}m [b +",
     "ZREVRANGEBYLEX {a}m [d [a", "ZREVRANGEBYLEX {a}m + (a", "ZLEXCOUNT {a}m [a [c", "ZLEXCOUNT {a}m - +",
     "ZRANGEBYLEX {a}m [b + LIMIT 1 1", "ZREVRANGEBYLEX {a}m + - LIMIT 1 2", "ZRANGEBYLEX {a}m - + LIMIT 2 10",
     "ZREVRANGEBYLEX {a}m [c - LIMIT 0 1", "ZREVRANGEBYLEX {a}m + - LIMIT 4 3", "ZRANGEBYLEX {a}m (a + LIMIT 9 1",
     "ZREMRANGEBYLEX {a}m [b [c", "ZRANGE {a}m 0 -1"],
    ["ZADD {a}l 0 a 0 b 0 c 0 d", "ZLEXCOUNT {a}l - +", "ZLEXCOUNT {a}l [b (d", "ZLEXCOUNT {a}l (d +",
     "ZLEXCOUNT {a}l + -", "ZLEXCOUNT {a}nokey - +", "ZLEXCOUNT {a}l [a"],
    # ZCOUNT
    [Z, "ZCOUNT {a}z -inf +inf", "ZCOUNT {a}z 2 4", "ZCOUNT {a}z (2 (4", "ZCOUNT {a}z 4 2", "ZCOUNT {a}z (3 3",
     "ZCOUNT {a}nokey 0 1", "ZCOUNT {a}z a 1", "ZCOUNT {a}nokey a 1", "ZCOUNT {a}z 1"],
    # ZREM and ZREMRANGEBY*
    [Z, "ZREM {a}z a nope a", "ZREM {a}z nope", "ZREM {a}z b c d e", "EXISTS {a}z", "ZREM {a}z a", "ZREM {a}z"],
    [Z, "ZREMRANGEBYRANK {a}z 1 2", "ZRANGE {a}z 0 -1", "ZREMRANGEBYRANK {a}z -1 -1", "ZREMRANGEBYRANK {a}z 5 10",
     "ZREMRANGEBYRANK {a}z 2 1", "ZREMRANGEBYRANK {a}z -100 100", "EXISTS {a}z"],
    [Z, "ZREMRANGEBYRANK {a}z a 1", "ZREMRANGEBYRANK {a}nokey 0 1", "ZREMRANGEBYRANK {a}nokey a 1"],
    [Z, "ZREMRANGEBYSCORE {a}z (1 3", "ZRANGE {a}z 0 -1", "ZREMRANGEBYSCORE {a}z 10 20",
     "ZREMRANGEBYSCORE {a}z x 1", "ZREMRANGEBYSCORE {a}z -inf +inf", "EXISTS {a}z"],
    [L, "ZREMRANGEBYLEX {a}l [b (d", "ZRANGE {a}l 0 -1", "ZREMRANGEBYLEX {a}l - +", "EXISTS {a}l",
     "ZREMRANGEBYLEX {a}nokey - +"],
    # ZRANGESTORE
    [Z, "ZRANGESTORE {a}d {a}z 1 3", "ZRANGE {a}d 0 -1 WITHSCORES", "ZRANGESTORE {a}d {a}z (1 4 BYSCORE LIMIT 1 5",
     "ZRANGE {a}d 0 -1 WITHSCORES", "ZRANGESTORE {a}d {a}z 4 (1 BYSCORE REV", "ZRANGE {a}d 0 -1",
     "ZRANGESTORE {a}d {a}z [b [d BYLEX", "ZRANGE {a}d 0 -1"],
    [Z, "SET {a}d x EX 100", "ZRANGESTORE {a}d {a}z 0 0", "TTL {a}d", "TYPE {a}d",
     "ZRANGESTORE {a}d {a}z 10 20", "EXISTS {a}d", "ZRANGESTORE {a}d {a}nokey 0 -1"],
    [Z, "ZRANGESTORE {a}d {a}z 0 -1 WITHSCORES", "ZRANGESTORE {a}d {a}z 0 -1 LIMIT 0 1",
     "ZRANGESTORE {a}d {a}z a b BYSCORE", "SET {a}s x", "ZRANGESTORE {a}d {a}s 0 -1", "ZRANGESTORE {a}z {a}z 0 1",
     "ZRANGE {a}z 0 -1"],
    # ZPOPMIN, ZPOPMAX
    [Z, "ZPOPMIN {a}z", "ZPOPMAX {a}z", "ZPOPMIN {a}z 2", "ZPOPMAX {a}z 5", "EXISTS {a}z", "ZPOPMIN {a}z",
     "ZPOPMIN {a}z 3"],
    [Z, "ZPOPMIN {a}z 0", "ZPOPMIN {a}z -1", "ZPOPMIN {a}z abc", "ZPOPMIN {a}z 1 2", "ZPOPMAX {a}z 1.5",
     "ZPOPMIN {a}nokey 0", "ZPOPMIN {a}nokey -1"],
    # ZMPOP
    [Z, "ZMPOP 1 {a}z MIN", "ZMPOP 1 {a}z MAX COUNT 2", "ZMPOP 2 {a}nokey {a}z min count 10", "EXISTS {a}z",
     "ZMPOP 2 {a}nokey {a}z MIN"],
    [Z, "ZMPOP 0 {a}z MIN", "ZMPOP -1 {a}z MIN", "ZMPOP a {a}z MIN", "ZMPOP 1 {a}z", "ZMPOP 1 {a}z LEFT",
     "ZMPOP 2 {a}z MIN", "ZMPOP 1 {a}z MIN COUNT 0", "ZMPOP 1 {a}z MIN COUNT -1", "ZMPOP 1 {a}z MIN COUNT a",
     "ZMPOP 1 {a}z MIN COUNT 1 COUNT 1", "ZMPOP 1 {a}z MIN COUNT", "ZMPOP 1 {a}z MIN FOO"],
    ["SET {a}s x", Z, "ZMPOP 2 {a}s {a}z MIN", "ZMPOP 2 {a}nokey {a}s MIN", "ZMPOP 2 {a}z {a}s MAX"],
    # ZUNION, ZINTER, ZDIFF and their STORE forms
    [*TWO, "ZUNION 2 {a}x {a}y", "ZUNION 2 {a}x {a}y WITHSCORES", "ZINTER 2 {a}x {a}y WITHSCORES",
     "ZDIFF 2 {a}x {a}y WITHSCORES", "ZDIFF 2 {a}y {a}x", "ZINTERCARD 2 {a}x {a}y"],
    [*TWO, "ZUNION 2 {a}x {a}y WEIGHTS 2 0.5 WITHSCORES", "ZUNION 2 {a}x {a}y AGGREGATE MIN WITHSCORES",
     "ZUNION 2 {a}x {a}y AGGREGATE max WITHSCORES", "ZINTER 2 {a}x {a}y WEIGHTS -1 1 AGGREGATE MIN WITHSCORES",
     "ZINTER 2 {a}x {a}y AGGREGATE SUM WEIGHTS 1 2 WITHSCORES", "ZUNION 2 {a}x {a}y WITHSCORES WEIGHTS 1 1"],
    [*TWO, "ZUNION 3 {a}x {a}y {a}nokey WITHSCORES", "ZINTER 3 {a}x {a}y {a}nokey", "ZDIFF 2 {a}nokey {a}x",
     "ZDIFF 3 {a}x {a}nokey {a}y WITHSCORES", "ZINTER 2 {a}x {a}x WITHSCORES", "ZDIFF 2 {a}x {a}x",
     "ZUNION 2 {a}x {a}x WITHSCORES AGGREGATE MAX", "ZINTERCARD 1 {a}nokey"],
    ["ZADD {a}x inf a 1 b -inf c", "ZADD {a}y -inf a 1 b inf c", "ZUNION 2 {a}x {a}y WITHSCORES",
     "ZINTER 2 {a}x {a}y WITHSCORES", "ZUNION 2 {a}x {a}y WEIGHTS 0 1 WITHSCORES",
     "ZINTER 2 {a}x {a}y WEIGHTS 0 0 WITHSCORES", "ZUNION 1 {a}x WEIGHTS -inf WITHSCORES",
     "ZINTER 2 {a}x {a}y AGGREGATE MIN WEIGHTS 1 0 WITHSCORES"],
    ["ZADD {a}x 1 a 2 b", "SADD {a}s b c", "ZUNION 2 {a}x {a}s WITHSCORES", "ZINTER 2 {a}s {a}x WITHSCORES",
     "ZDIFF 2 {a}x {a}s WITHSCORES", "ZDIFF 2 {a}s {a}x WITHSCORES", "ZINTERCARD 2 {a}s {a}x",
     "ZUNION 2 {a}s {a}s WEIGHTS 2 3 WITHSCORES", "ZUNIONSTORE {a}d 2 {a}s {a}x", "ZRANGE {a}d 0 -1 WITHSCORES"],
    ["SADD {a}s 1 2 3", "ZADD {a}x 5 2", "ZINTER 2 {a}s {a}x WITHSCORES", "ZUNION 1 {a}s WITHSCORES"],
    [*TWO, "ZUNIONSTORE {a}d 2 {a}x {a}y", "ZRANGE {a}d 0 -1 WITHSCORES", "ZINTERSTORE {a}d 2 {a}x {a}y WEIGHTS 1 3",
     "ZRANGE {a}d 0 -1 WITHSCORES", "ZDIFFSTORE {a}d 2 {a}y {a}x", "ZRANGE {a}d 0 -1 WITHSCORES",
     "ZINTERSTORE {a}d 2 {a}x {a}nokey", "EXISTS {a}d", "ZINTERSTORE {a}d 2 {a}x {a}nokey"],
    [*TWO, "SET {a}d x EX 100", "ZUNIONSTORE {a}d 1 {a}x", "TTL {a}d", "ZUNIONSTORE {a}x 2 {a}x {a}y",
     "ZRANGE {a}x 0 -1 WITHSCORES", "ZDIFFSTORE {a}y 2 {a}y {a}y", "EXISTS {a}y"],
    [*TWO, "ZUNION 0 {a}x", "ZUNION -1 {a}x", "ZUNION a {a}x", "ZUNION 3 {a}x {a}y", "ZINTER 0 {a}x",
     "ZDIFF 0 {a}x", "ZUNIONSTORE {a}d 0 {a}x", "ZINTERSTORE {a}d 0 {a}x", "ZDIFFSTORE {a}d 0 {a}x",
     "ZINTERCARD 0 {a}x", "zunionstore {a}d 0 {a}x"],
    [*TWO, "ZUNION 2 {a}x {a}y WEIGHTS 1", "ZUNION 2 {a}x {a}y WEIGHTS 1 a", "ZUNION 2 {a}x {a}y WEIGHTS nan 1",
     "ZUNION 2 {a}x {a}y AGGREGATE", "ZUNION 2 {a}x {a}y AGGREGATE foo", "ZUNION 2 {a}x {a}y FOO",
     "ZDIFF 2 {a}x {a}y WEIGHTS 1 2", "ZDIFF 2 {a}x {a}y AGGREGATE MIN", "ZUNIONSTORE {a}d 2 {a}x {a}y WITHSCORES",
     "ZINTERCARD 2 {a}x {a}y WITHSCORES", "ZINTERCARD 2 {a}x {a}y WEIGHTS 1 1"],
    [*TWO, "ZINTERCARD 2 {a}x {a}y LIMIT 1", "ZINTERCARD 2 {a}x {a}y LIMIT 0", "ZINTERCARD 2 {a}x {a}y LIMIT 5",
     "ZINTERCARD 2 {a}x {a}y LIMIT -1", "ZINTERCARD 2 {a}x {a}y LIMIT a", "ZINTERCARD 2 {a}x {a}y LIMIT",
     "ZINTERCARD 2 {a}x {a}y LIMIT 1 LIMIT 2"],
    ["SET {a}s x", "ZADD {a}x 1 a", "ZUNION 2 {a}x {a}s", "ZINTER 2 {a}nokey {a}s", "ZDIFF 2 {a}x {a}s",
     "ZUNIONSTORE {a}d 2 {a}x {a}s", "ZINTERCARD 2 {a}s {a}x", "LPUSH {a}li a", "ZUNION 1 {a}li"],
    # ZRANDMEMBER (the deterministic parts)
    [Z, "ZRANDMEMBER {a}z 0", "ZRANDMEMBER {a}z 5 WITHSCORES", "ZRANDMEMBER {a}z 100", "ZRANDMEMBER {a}nokey",
     "ZRANDMEMBER {a}nokey 5", "ZRANDMEMBER {a}nokey -5 WITHSCORES"],
    [Z, "ZRANDMEMBER {a}z a", "ZRANDMEMBER {a}z 1 FOO", "ZRANDMEMBER {a}z 1 WITHSCORES x",
     "ZRANDMEMBER {a}z -9223372036854775808", "ZRANDMEMBER {a}z -9223372036854775808 WITHSCORES",
     "ZRANDMEMBER {a}z -9223372036854770000 WITHSCORES", "ZRANDMEMBER {a}z 9223372036854770000 WITHSCORES",
     "ZRANDMEMBER {a}nokey a"],
    ["ZADD {a}z 7 only", "ZRANDMEMBER {a}z", "ZRANDMEMBER {a}z -3 WITHSCORES", "ZRANDMEMBER {a}z 1"],
    # ZSCAN of a listpack (returned whole)
    [Z, "ZSCAN {a}z 0", "ZSCAN {a}z 0 COUNT 1", "ZSCAN {a}z 123", "ZSCAN {a}z 0 MATCH [ab]",
     "ZSCAN {a}z 0 MATCH * COUNT 100", "ZSCAN {a}z 0 match x*"],
    [Z, "ZSCAN {a}z abc", "ZSCAN {a}z 0 COUNT 0", "ZSCAN {a}z 0 COUNT a", "ZSCAN {a}z 0 COUNT",
     "ZSCAN {a}z 0 FOO", "ZSCAN {a}z 0 TYPE zset", "ZSCAN {a}nokey 0 FOO", "ZSCAN {a}nokey abc",
     "ZSCAN {a}z 18446744073709551615", "ZSCAN {a}z 18446744073709551616"],
    # WRONGTYPE for every command on a string key; errors that come before the type check
    ["SET {a}s x", "ZADD {a}s 1 a", "ZINCRBY {a}s 1 a", "ZREM {a}s a", "ZCARD {a}s", "ZSCORE {a}s a",
     "ZMSCORE {a}s a", "ZRANK {a}s a", "ZREVRANK {a}s a", "ZRANGE {a}s 0 -1", "ZREVRANGE {a}s 0 -1",
     "ZRANGEBYSCORE {a}s 0 1", "ZREVRANGEBYSCORE {a}s 1 0", "ZRANGEBYLEX {a}s - +", "ZREVRANGEBYLEX {a}s + -",
     "ZCOUNT {a}s 0 1", "ZLEXCOUNT {a}s - +", "ZREMRANGEBYRANK {a}s 0 1", "ZREMRANGEBYSCORE {a}s 0 1",
     "ZREMRANGEBYLEX {a}s - +", "ZPOPMIN {a}s", "ZPOPMAX {a}s 2", "ZRANDMEMBER {a}s", "ZRANDMEMBER {a}s 2",
     "ZSCAN {a}s 0", "ZRANGESTORE {a}d {a}s 0 -1", "ZRANGE {a}s 0 -1 BYSCORE"],
    ["SET {a}s x", "ZRANGEBYSCORE {a}s a b", "ZRANGEBYLEX {a}s a b", "ZCOUNT {a}s a b", "ZPOPMIN {a}s a",
     "ZREMRANGEBYRANK {a}s a b", "ZADD {a}s abc a", "ZADD {a}s XX 1 a", "ZSCAN {a}s abc", "ZSCAN {a}s 0 FOO",
     "ZRANDMEMBER {a}s a", "ZADD {a}s NX XX 1 a"],
    # arity
    ["ZADD {a}z 1"], ["ZINCRBY {a}z 1"], ["ZREM {a}z"], ["ZRANGEBYSCORE {a}z 1"], ["ZREVRANGEBYLEX {a}z +"],
    ["ZCOUNT {a}z 1 2 3"], ["ZLEXCOUNT {a}z - + x"], ["ZREMRANGEBYRANK {a}z 1"], ["ZPOPMIN"], ["ZMPOP 1"],
    ["ZUNION 1"], ["ZUNIONSTORE {a}d 1"], ["ZINTERCARD 1"], ["ZRANDMEMBER"], ["ZSCAN {a}z"], ["ZRANGESTORE {a}d {a}z 0"],
    ["ZMSCORE {a}z"], ["ZREVRANK {a}z"],
    # encodings the oracle agrees on
    [Z, "OBJECT ENCODING {a}z", many("{a}big", 129), "OBJECT ENCODING {a}big", "ZREMRANGEBYRANK {a}big 0 -3",
     "OBJECT ENCODING {a}big", "ZUNIONSTORE {a}d 1 {a}big", "OBJECT ENCODING {a}d",
     "ZRANGESTORE {a}d2 {a}big 0 -1", "OBJECT ENCODING {a}d2"],
    [many("{a}big", 128), "OBJECT ENCODING {a}big", "ZADD {a}big 1000 one-more", "OBJECT ENCODING {a}big",
     "ZPOPMIN {a}big 100", "OBJECT ENCODING {a}big"],
    [["ZADD", "{a}z", "1", "x" * 64], "OBJECT ENCODING {a}z", ["ZADD", "{a}z", "2", "y" * 65],
     "OBJECT ENCODING {a}z", ["ZADD", "{a}w", "1", "y" * 65, "2", "b"], "OBJECT ENCODING {a}w",
     ["ZRANGESTORE", "{a}d", "{a}w", "1", "1"], "OBJECT ENCODING {a}d"],
    [("!", "CONFIG SET zset-max-listpack-entries 2"), "ZADD {a}z 1 a 2 b", "OBJECT ENCODING {a}z",
     "ZADD {a}z 3 c", "OBJECT ENCODING {a}z", "ZREM {a}z a b", "OBJECT ENCODING {a}z", "ZADD {a}y 1 a 2 b 3 c",
     "OBJECT ENCODING {a}y", "ZUNIONSTORE {a}d 1 {a}z", "OBJECT ENCODING {a}d", "ZUNIONSTORE {a}d 1 {a}y",
     "OBJECT ENCODING {a}d", "ZRANGESTORE {a}e {a}y 0 1", "OBJECT ENCODING {a}e", "ZRANGESTORE {a}e {a}y 0 2",
     "OBJECT ENCODING {a}e", "ZINTERSTORE {a}f 2 {a}y {a}y", "OBJECT ENCODING {a}f"],
    [("!", "CONFIG SET zset-max-listpack-entries 0"), "ZADD {a}z 1 a", "OBJECT ENCODING {a}z",
     "ZRANGESTORE {a}d {a}z 0 -1", "OBJECT ENCODING {a}d", "ZADD {a}z -0 b", "ZSCORE {a}z b",
     "ZRANGE {a}z 0 -1 WITHSCORES"],
    [("!", "CONFIG SET zset-max-listpack-value 3"), "ZADD {a}z 1 abc", "OBJECT ENCODING {a}z", "ZADD {a}z 1 abcd",
     "OBJECT ENCODING {a}z"],
    # RESP3 reply shapes
    [("!", "HELLO 3"), Z, "ZRANGE {a}z 0 1 WITHSCORES", "ZRANGE {a}z 0 1", "ZRANGEBYSCORE {a}z 1 2 WITHSCORES",
     "ZREVRANGE {a}z 0 0 WITHSCORES", "ZSCORE {a}z a", "ZSCORE {a}z nope", "ZMSCORE {a}z a nope",
     "ZINCRBY {a}z 1.5 a", "ZADD {a}z INCR 1 a", "ZADD {a}z NX INCR 1 a", "ZRANK {a}z nope",
     "ZRANGEBYLEX {a}z - + LIMIT 0 1"],
    [("!", "HELLO 3"), Z, "ZPOPMIN {a}z", "ZPOPMIN {a}z 1", "ZPOPMAX {a}z 2", "ZMPOP 1 {a}z MIN",
     "ZMPOP 1 {a}z MAX COUNT 5", "ZMPOP 1 {a}z MAX", "ZPOPMIN {a}z 0", "ZPOPMIN {a}nokey"],
    [("!", "HELLO 3"), *TWO, "ZUNION 2 {a}x {a}y WITHSCORES", "ZINTER 2 {a}x {a}y WITHSCORES",
     "ZDIFF 2 {a}x {a}y WITHSCORES", "ZRANDMEMBER {a}x 10 WITHSCORES", "ZRANDMEMBER {a}nokey",
     "ZADD {a}one 1.5 m", "ZRANDMEMBER {a}one -2 WITHSCORES", "ZSCAN {a}x 0", "ZSCORE {a}x nope"],
    [("!", "HELLO 3"), "ZADD {a}z inf a -inf b 2.5 c", "ZRANGE {a}z 0 -1 WITHSCORES", "ZSCORE {a}z a",
     "ZSCORE {a}z b"],
]


@oracle_cases(ZSET_CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_oracle_table_size():
    assert len(ZSET_CASES) >= 100


# -- Valkey 8 behaviour the 7.0 oracle does not share -------------------------------------------

# d2string digits: the values on the left printed by Valkey 8's fpconv_dtoa (checked against the
# C code compiled from deps/fpconv): the shortest round-trip digits in a grisu2 layout, which
# differ from Python's repr() in format (1e-05, 2379646.27…) and sometimes in digits.
D2STRING = [
    (0.1, b"0.1"), (1.5, b"1.5"), (-2.5, b"-2.5"), (1e20, b"1e+20"), (1e21, b"1e+21"),
    (3.0000000000000004, b"3.0000000000000004"), (1e-5, b"0.00001"), (1e-7, b"1e-7"),
    (1.5e300, b"1.5e+300"), (5e-324, b"5e-324"), (1.7976931348623157e308, b"1.7976931348623157e+308"),
    (0.3, b"0.3"), (2 / 3, b"0.6666666666666666"), (12345678.9, b"12345678.9"),
    (2379646.2709189137, b"2.3796462709189137e+6"), (130422796.08514273, b"1.3042279608514273e+8"),
    (0.00025935401432800764, b"2.5935401432800764e-4"), (0.000761925427594386, b"7.61925427594386e-4"),
    (36.34193479785392, b"36.341934797853916"), (63.03186719808701, b"63.031867198087014"),
    (90.5007043622306, b"90.50070436223061"), (57.24931308314736, b"57.249313083147356"),
    (0.0, b"0"), (-0.0, b"-0"), (1e17, b"100000000000000000"), (4611686018427387904.0, b"4611686018427387904"),
    (-4611686018427387904.0, b"-4611686018427387904"), (9223372036854775808.0, b"9223372036854776000"),
    (1e19, b"1e+19"), (1e23, b"99999999999999990000000"), (1.2345e-300, b"1.2345e-300"),
    (float("inf"), b"inf"), (float("-inf"), b"-inf"),
]


@pytest.mark.parametrize("value,text", D2STRING)
def test_d2string(value, text):
    assert d2string(value) == text


def test_d2string_round_trips():
    rnd = random.Random(11)
    for _ in range(3000):
        value = rnd.uniform(-1, 1) * 10 ** rnd.randint(-300, 300)
        assert float(d2string(value)) == value


STRING2D = [
    (b"1", 1.0), (b"-1.5", -1.5), (b"+2", 2.0), (b".5", 0.5), (b"5.", 5.0), (b"1e3", 1000.0),
    (b"0x10", 16.0), (b"0x1p-2", 0.25), (b"-0x.8", -0.5), (b"inf", float("inf")), (b"-Infinity", float("-inf")),
    (b"1e-310", 1e-310), (b"0e-999", 0.0), (b"-0", -0.0),
    (b"", None), (b" 1", None), (b"1 ", None), (b"nan", None), (b"-nan", None), (b"nan(1)", None),
    (b"1e400", None), (b"1e-400", None), (b"0x1p99999", None), (b"1_0", None), (b"1e", None), (b"0x", None),
    (b"\x001", None), (b"1\x00", None), (b"abc", None), (b"--1", None), (b"infinit", None),
]


@pytest.mark.parametrize("text,value", STRING2D)
def test_string2d(text, value):
    got = string2d(text)
    assert got == value and (value is None or str(got) == str(value))


def test_zset_survives_pickle_and_deepcopy():
    z = ZSet.from_pairs([(1.0, b"a"), (2.5, b"b"), (-1.0, b"c")], {"zset-max-listpack-entries": 1,
                                                                     "zset-max-listpack-value": 64})
    assert z.skiplist
    for other in (pickle.loads(pickle.dumps(z)), copy.deepcopy(z), z.copy()):
        assert type(other) is ZSet and other is not z and other.order is not z.order
        assert dict(other) == dict(z) and list(other.order) == list(z.order) and other.skiplist
        other.set_score(b"d", 0.0)
        assert b"d" not in z and len(z.order) == 3


def test_zset_methods_keep_both_views():
    z = ZSet()
    for i, m in enumerate([b"c", b"a", b"b", b"d"]):
        z[m] = float(i % 2)
    z[b"a"] = 5.0
    assert list(z.order) == [(0.0, b"b"), (0.0, b"c"), (1.0, b"d"), (5.0, b"a")]
    assert z.rank(b"d") == 2 and z.rank(b"x") is None
    del z[b"c"]
    assert not z.discard(b"c") and z.pop_first(True) == (b"a", 5.0) and z.pop_first() == (b"b", 0.0)
    assert dict(z) == {b"d": 1.0} and list(z.ordered(reverse=True)) == [(1.0, b"d")]
    with pytest.raises(KeyError):
        del z[b"zz"]


@pytest.fixture
def config_restored(r):
    yield r
    r.config_set("zset-max-listpack-entries", 128)
    r.config_set("zset-max-listpack-value", 64)


def test_scores_printed_as_valkey8(raw):
    pairs = [("0.1", "a"), ("1e-5", "b"), ("2379646.2709189137", "c"), ("36.34193479785392", "d"),
             ("1e17", "e"), ("4611686018427387904", "f"), ("9223372036854775808", "g"), ("1e20", "h"),
             ("-3.0000000000000004", "i")]
    assert raw.call("ZADD", "{a}z", *[x for p in pairs for x in p]) == b":9\r\n"
    want = {"a": b"0.1", "b": b"0.00001", "c": b"2.3796462709189137e+6", "d": b"36.341934797853916",
            "e": b"100000000000000000", "f": b"4611686018427387904", "g": b"9223372036854776000",
            "h": b"1e+20", "i": b"-3.0000000000000004"}
    for member, text in want.items():
        assert raw.call("ZSCORE", "{a}z", member) == b"$%d\r\n%b\r\n" % (len(text), text)
    assert raw.call("ZINCRBY", "{a}z", "0.2", "a") == b"$19\r\n0.30000000000000004\r\n"
    assert raw.call("ZRANGEBYSCORE", "{a}z", "(0", "(1", "WITHSCORES") == encode_reply(
        [b"b", b"0.00001", b"a", b"0.30000000000000004"])
    assert raw.call("ZSCAN", "{a}z", "0", "MATCH", "b") == b"*2\r\n$1\r\n0\r\n" + encode_reply([b"b", b"0.00001"])
    assert raw.call("HELLO", "3").startswith(b"%")
    assert raw.call("ZSCORE", "{a}z", "c") == b",2.3796462709189137e+6\r\n"
    assert raw.call("ZRANGE", "{a}z", "0", "0", "WITHSCORES") == b"*1\r\n*2\r\n$1\r\ni\r\n,-3.0000000000000004\r\n"


def encode_reply(items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%b\r\n" % (len(i), i) for i in items)


def test_negative_zero_kept_only_by_a_skiplist(raw, config_restored):
    assert raw.call("ZADD", "{a}lp", "-0", "a") == b":1\r\n"
    assert raw.call("ZSCORE", "{a}lp", "a") == b"$1\r\n0\r\n"
    assert raw.call("ZINCRBY", "{a}lp", "-0", "b") == b"$2\r\n-0\r\n"     # the reply is the sum
    assert raw.call("ZSCORE", "{a}lp", "b") == b"$1\r\n0\r\n"              # the listpack stores 0
    assert raw.call("CONFIG", "SET", "zset-max-listpack-entries", "0") == b"+OK\r\n"
    assert raw.call("ZADD", "{a}sl", "-0", "a") == b":1\r\n"
    assert raw.call("OBJECT", "ENCODING", "{a}sl") == b"$8\r\nskiplist\r\n"
    assert raw.call("ZSCORE", "{a}sl", "a") == b"$2\r\n-0\r\n"
    assert raw.call("ZUNIONSTORE", "{a}d", "1", "{a}sl") == b":1\r\n"
    assert raw.call("ZSCORE", "{a}d", "a") == b"$2\r\n-0\r\n"
    assert raw.call("CONFIG", "SET", "zset-max-listpack-entries", "128") == b"+OK\r\n"
    assert raw.call("ZUNIONSTORE", "{a}d", "1", "{a}sl") == b":1\r\n"
    assert raw.call("OBJECT", "ENCODING", "{a}d") == b"$8\r\nlistpack\r\n"
    assert raw.call("ZSCORE", "{a}d", "a") == b"$1\r\n0\r\n"


def test_zrank_withscore(raw):
    raw.call("ZADD", "{a}z", "1", "a", "2.5", "b", "3", "c")
    assert raw.call("ZRANK", "{a}z", "b", "WITHSCORE") == b"*2\r\n:1\r\n$3\r\n2.5\r\n"
    assert raw.call("ZREVRANK", "{a}z", "b", "withscore") == b"*2\r\n:1\r\n$3\r\n2.5\r\n"
    assert raw.call("ZREVRANK", "{a}z", "c", "WITHSCORE") == b"*2\r\n:0\r\n$1\r\n3\r\n"
    assert raw.call("ZRANK", "{a}z", "nope", "WITHSCORE") == b"*-1\r\n"
    assert raw.call("ZRANK", "{a}nokey", "a", "WITHSCORE") == b"*-1\r\n"
    assert raw.call("ZRANK", "{a}nokey", "a") == b"$-1\r\n"
    assert raw.call("ZRANK", "{a}z", "a", "WITHSCORES") == b"-ERR syntax error\r\n"
    assert raw.call("ZRANK", "{a}z", "a", "WITHSCORE", "x") == \
        b"-ERR wrong number of arguments for 'zrank' command\r\n"
    assert raw.call("zrevrank", "{a}z", "a", "x", "y") == \
        b"-ERR wrong number of arguments for 'zrevrank' command\r\n"
    raw.call("SET", "{a}s", "x")
    assert raw.call("ZRANK", "{a}s", "a", "WITHSCORE").startswith(b"-WRONGTYPE")
    raw.call("HELLO", "3")
    assert raw.call("ZRANK", "{a}z", "b", "WITHSCORE") == b"*2\r\n:1\r\n,2.5\r\n"
    assert raw.call("ZRANK", "{a}z", "nope", "WITHSCORE") == b"_\r\n"
    assert raw.call("ZRANK", "{a}z", "nope") == b"_\r\n"


def test_zscan_noscores_and_novalues(raw):
    raw.call("ZADD", "{a}z", "1", "a", "2", "b")
    assert raw.call("ZSCAN", "{a}z", "-1") == b"-ERR invalid cursor\r\n"      # string2ull, not strtoul
    assert raw.call("ZSCAN", "{a}z", "0", "NOSCORES") == b"*2\r\n$1\r\n0\r\n" + encode_reply([b"a", b"b"])
    assert raw.call("ZSCAN", "{a}z", "0", "noscores", "MATCH", "b") == b"*2\r\n$1\r\n0\r\n" + encode_reply([b"b"])
    assert raw.call("ZSCAN", "{a}z", "0", "NOVALUES") == b"-ERR NOVALUES option can only be used in HSCAN\r\n"
    assert raw.call("SCAN", "0", "NOSCORES") == b"-ERR NOSCORES option can only be used in ZSCAN\r\n"


def test_zadd_converts_early_on_many_pairs(raw, config_restored):
    """zsetTypeMaybeConvert: a ZADD naming more pairs than zset-max-listpack-entries (or a
    member longer than zset-max-listpack-value) converts first, even if nothing is added."""
    raw.call("CONFIG", "SET", "zset-max-listpack-entries", "2")
    raw.call("ZADD", "{a}z", "1", "a", "2", "b")
    assert raw.call("ZADD", "{a}z", "1", "a", "2", "b", "3", "a") == b":0\r\n"
    assert raw.call("OBJECT", "ENCODING", "{a}z") == b"$8\r\nskiplist\r\n"
    raw.call("CONFIG", "SET", "zset-max-listpack-entries", "128")
    raw.call("ZADD", "{a}y", "1", "a")
    assert raw.call("ZADD", "{a}y", "XX", "1", "x" * 65) == b":0\r\n"
    assert raw.call("OBJECT", "ENCODING", "{a}y") == b"$8\r\nskiplist\r\n"
    assert raw.call("ZADD", "{a}new", *sum(([str(i), "m"] for i in range(129)), [])) == b":1\r\n"
    assert raw.call("OBJECT", "ENCODING", "{a}new") == b"$8\r\nskiplist\r\n"


def test_limit_negative_offset_on_a_skiplist(raw, config_restored):
    """A listpack walks a negative LIMIT offset off its end (nothing); Valkey 8's skiplist
    (zslNthInRange) counts it from the other end of the range."""
    members = sum(([str(i), m] for i, m in enumerate("abcde")), [])
    raw.call("ZADD", "{a}lp", *members)
    raw.call("CONFIG", "SET", "zset-max-listpack-entries", "0")
    raw.call("ZADD", "{a}sl", *members)
    raw.call("ZADD", "{a}lex", *sum((["0", m] for m in "abcde"), []))
    assert raw.call("ZRANGEBYSCORE", "{a}lp", "-inf", "+inf", "LIMIT", "-1", "5") == b"*0\r\n"
    assert raw.call("ZRANGEBYSCORE", "{a}sl", "-inf", "+inf", "LIMIT", "-2", "5") == encode_reply([b"d", b"e"])
    assert raw.call("ZRANGEBYSCORE", "{a}sl", "1", "3", "LIMIT", "-1", "5") == encode_reply([b"d"])
    assert raw.call("ZRANGEBYSCORE", "{a}sl", "1", "3", "LIMIT", "-4", "5") == b"*0\r\n"
    assert raw.call("ZREVRANGEBYSCORE", "{a}sl", "+inf", "-inf", "LIMIT", "-2", "5") == encode_reply([b"b", b"a"])
    assert raw.call("ZREVRANGEBYSCORE", "{a}sl", "3", "1", "LIMIT", "-2", "1") == encode_reply([b"c"])
    assert raw.call("ZRANGEBYLEX", "{a}lex", "[b", "+", "LIMIT", "-1", "1") == encode_reply([b"e"])
    assert raw.call("ZREVRANGEBYLEX", "{a}lex", "[c", "-", "LIMIT", "-1", "9") == encode_reply([b"a"])


def test_zrandmember_invariants(r, config_restored):
    for entries in (128, 0):                # listpack, then skiplist
        r.config_set("zset-max-listpack-entries", entries)
        key = f"{{a}}z{entries}"
        members = {f"m{i}".encode(): float(i) for i in range(20)}
        r.zadd(key, members)
        for count in (1, 3, 10, 19):
            got = r.zrandmember(key, count)
            assert len(got) == count == len(set(got)) and set(got) <= set(members)
        if entries:                          # a listpack's unique picks keep their order
            got = r.zrandmember(key, 10)
            assert got == sorted(got, key=members.get)
        assert r.zrandmember(key, 20) == sorted(members, key=members.get, reverse=True)
        picks = r.zrandmember(key, -200)
        assert len(picks) == 200 and set(picks) <= set(members) and len(set(picks)) > 10
        flat = r.zrandmember(key, -50, withscores=True)
        pairs = [flat[i:i + 2] for i in range(0, len(flat), 2)] if len(flat) == 100 else flat
        assert len(pairs) == 50 and all(members[m] == float(s) for m, s in pairs)
        assert r.zrandmember(key) in members
        seen = {r.zrandmember(key) for _ in range(200)}
        assert len(seen) > 10


def test_zscan_skiplist_visits_everything(r, raw, config_restored):
    r.config_set("zset-max-listpack-entries", 16)
    members = {f"member:{i}": i for i in range(300)}
    r.zadd("{a}z", members)
    assert r.object("encoding", "{a}z") == b"skiplist"
    for count in (1, 7, 10, 1000):
        cursor, seen, calls = 0, [], 0
        while True:
            cursor, items = r.zscan("{a}z", cursor, count=count)
            seen += items
            calls += 1
            if cursor == 0:
                break
        assert sorted(seen) == sorted((m.encode(), float(s)) for m, s in members.items())
        assert calls >= 300 // count
    # members present for the whole scan are returned even when others come and go meanwhile
    cursor, seen, step = 0, set(), 0
    while True:
        cursor, items = r.zscan("{a}z", cursor, count=20)
        seen.update(m for m, _ in items)
        step += 1
        r.zadd("{a}z", {f"new:{step}": step})
        if step % 3 == 0:
            r.zrem("{a}z", f"member:{step}")
        if cursor == 0:
            break
    survivors = {m.encode() for m in members if r.zscore("{a}z", m) is not None}
    assert survivors <= seen
    _cursor, matched = r.zscan("{a}z", 0, match="member:1?", count=1000)
    assert {m for m, _ in matched} == {f"member:1{d}".encode() for d in range(10)} & survivors
    reply = raw.call("ZSCAN", "{a}z", "0", "COUNT", "5", "NOSCORES")
    names = [line for line in reply.split(b"\r\n") if line.startswith((b"member:", b"new:"))]
    assert len(names) >= 5 and all(r.zscore("{a}z", n) is not None for n in names)


def test_blocking_pop_helper_shapes(r):
    """zset_pop_reply, which the blocking pops reuse, in each of its reply shapes."""
    from shardd.worker.context import Ctx
    from shardd.worker.keyspace import Db
    from shardd.slots import keyslot

    def fresh() -> tuple[Ctx, ZSet]:
        ctx = Ctx([Db(0)], {"zset-max-listpack-entries": 128, "zset-max-listpack-value": 64})
        z = ZSet()
        for m, s in ((b"a", 1.0), (b"b", 2.5), (b"c", 3.0)):
            z.set_score(m, s)
        ctx.db.store(b"k", keyslot(b"k"), z)
        return ctx, z
    ctx, z = fresh()
    assert t_zset.zset_pop_reply(ctx, b"k", z, False, -1) == b"*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert t_zset.zset_pop_reply(ctx, b"k", z, True, -1, emit_key=True) == \
        b"*3\r\n$1\r\nk\r\n$1\r\nc\r\n$1\r\n3\r\n"
    assert t_zset.zset_pop_reply(ctx, b"k", z, False, 5, emit_key=True, nested=True) == \
        b"*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
    assert ctx.db.lookup(b"k", keyslot(b"k")) is None
    ctx, z = fresh()
    ctx.proto = 3
    assert t_zset.zset_pop_reply(ctx, b"k", z, True, 2, nested=True) == \
        b"*2\r\n*2\r\n$1\r\nc\r\n,3\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
    assert t_zset.zset_pop_reply(ctx, b"k", z, True, 0) == b"*0\r\n"
    assert ctx.db.lookup(b"k", keyslot(b"k")) is z


def test_watch_sees_zset_writes(r):
    r.zadd("{a}z", {"a": 1})
    for write in (lambda p: p.zadd("{a}z", {"c": 2}), lambda p: p.zincrby("{a}z", 1, "a"),
                  lambda p: p.zrem("{a}z", "a"), lambda p: p.zpopmin("{a}z"),
                  lambda p: p.zremrangebyscore("{a}z", "-inf", "+inf")):
        r.zadd("{a}z", {"a": 1, "b": 2})
        with r.pipeline() as p:
            p.watch("{a}z")
            write(r)
            p.multi()
            p.get("{a}other")
            with pytest.raises(Exception):
                p.execute()


def test_copy_and_type(r, config_restored):
    r.config_set("zset-max-listpack-entries", 1)
    r.zadd("{a}z", {"a": 1, "b": 2})
    assert r.copy("{a}z", "{a}c") and r.type("{a}c") == b"zset"
    assert r.object("encoding", "{a}c") == b"skiplist"
    r.zadd("{a}c", {"x": 3})
    assert r.zrange("{a}z", 0, -1) == [b"a", b"b"] and r.zrange("{a}c", 0, -1) == [b"a", b"b", b"x"]


def test_expired_zset_is_gone(r):
    r.zadd("{a}z", {"a": 1})
    r.pexpire("{a}z", 1)
    import time
    time.sleep(0.01)
    assert r.zcard("{a}z") == 0 and r.zadd("{a}z", {"b": 1}, xx=True) == 0 and not r.exists("{a}z")


# -- differential test over random command sequences --------------------------------------------

_MEMBERS = ["a", "b", "c", "d", "e", "f", "g"]
_SCORES = ["0", "1", "2", "-1", "2.5", "-3.5", "10", "inf", "-inf", "0.25"]
_BOUNDS = ["-inf", "+inf", "0", "1", "(1", "2.5", "(2.5", "-1", "(10", "3", "(-inf", "5"]
_LEX = ["-", "+", "[a", "(a", "[c", "(d", "[g", "(b", "[bb"]
_KEYS = ["{a}z1", "{a}z2", "{a}z3"]


def _random_command(rnd: random.Random) -> list[str]:
    key = rnd.choice(_KEYS)
    other = rnd.choice(_KEYS)
    m = rnd.choice(_MEMBERS)
    pick = rnd.randrange(32)
    if pick >= 26:                          # adds are more frequent, so the zsets grow
        pick = 0
    limit = ["LIMIT", str(rnd.randint(0, 4)), str(rnd.choice([-1, 0, 1, 2, 5]))] if rnd.random() < 0.4 else []
    if pick < 5:
        opts = rnd.sample(["NX", "XX", "GT", "LT", "CH"], rnd.randint(0, 2))
        if rnd.random() < 0.15:
            return ["ZADD", key, *opts, "INCR", rnd.choice(_SCORES), m]
        pairs = sum(([rnd.choice(_SCORES), rnd.choice(_MEMBERS)] for _ in range(rnd.randint(1, 4))), [])
        return ["ZADD", key, *opts, *pairs]
    if pick == 5:
        return ["ZINCRBY", key, rnd.choice(_SCORES), m]
    if pick == 6:
        return ["ZREM", key, *rnd.sample(_MEMBERS, rnd.randint(1, 3))]
    if pick == 7:
        return ["ZRANGE", key, str(rnd.randint(-6, 6)), str(rnd.randint(-6, 6)),
                *(["REV"] if rnd.random() < 0.5 else []), *(["WITHSCORES"] if rnd.random() < 0.5 else [])]
    if pick == 8:
        rev = rnd.random() < 0.5
        return ["ZRANGE", key, rnd.choice(_BOUNDS), rnd.choice(_BOUNDS), "BYSCORE", *(["REV"] if rev else []),
                *limit, *(["WITHSCORES"] if rnd.random() < 0.5 else [])]
    if pick == 9:
        return [rnd.choice(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]), key, rnd.choice(_BOUNDS),
                rnd.choice(_BOUNDS), *limit, *(["WITHSCORES"] if rnd.random() < 0.5 else [])]
    if pick == 10:
        return [rnd.choice(["ZRANGEBYLEX", "ZREVRANGEBYLEX"]), key, rnd.choice(_LEX), rnd.choice(_LEX), *limit]
    if pick == 11:
        return ["ZCOUNT", key, rnd.choice(_BOUNDS), rnd.choice(_BOUNDS)]
    if pick == 12:
        return ["ZLEXCOUNT", key, rnd.choice(_LEX), rnd.choice(_LEX)]
    if pick == 13:
        return rnd.choice([["ZCARD", key], ["ZSCORE", key, m], ["ZMSCORE", key, m, "zz", rnd.choice(_MEMBERS)],
                           ["ZRANK", key, m], ["ZREVRANK", key, m]])
    if pick == 14:
        return [rnd.choice(["ZPOPMIN", "ZPOPMAX"]), key, *([str(rnd.randint(0, 3))] if rnd.random() < 0.6 else [])]
    if pick == 15:
        return ["ZMPOP", "2", key, other, rnd.choice(["MIN", "MAX"]),
                *(["COUNT", str(rnd.randint(1, 3))] if rnd.random() < 0.5 else [])]
    if pick == 16:
        return ["ZREMRANGEBYRANK", key, str(rnd.randint(-4, 4)), str(rnd.randint(-4, 4))]
    if pick == 17:
        return ["ZREMRANGEBYSCORE", key, rnd.choice(_BOUNDS), rnd.choice(_BOUNDS)]
    if pick == 18:
        return ["ZREMRANGEBYLEX", key, rnd.choice(_LEX), rnd.choice(_LEX)]
    if pick in (19, 20, 21):
        keys = rnd.sample(_KEYS + ["{a}s"], rnd.randint(1, 3))
        op = rnd.choice(["ZUNION", "ZINTER", "ZDIFF", "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"])
        args = [op, *([rnd.choice(_KEYS)] if op.endswith("STORE") else []), str(len(keys)), *keys]
        if not op.startswith("ZDIFF"):
            if rnd.random() < 0.4:
                args += ["WEIGHTS", *(rnd.choice(["1", "2", "0", "-1", "0.5", "inf"]) for _ in keys)]
            if rnd.random() < 0.4:
                args += ["AGGREGATE", rnd.choice(["SUM", "MIN", "MAX"])]
        if not op.endswith("STORE") and rnd.random() < 0.6:
            args.append("WITHSCORES")
        return args
    if pick == 22:
        return ["ZINTERCARD", "2", key, other, *(["LIMIT", str(rnd.randint(0, 3))] if rnd.random() < 0.5 else [])]
    if pick == 23:
        kind = rnd.choice([[], ["BYSCORE"], ["BYLEX"]])
        bounds = ([str(rnd.randint(-4, 4)), str(rnd.randint(-4, 4))] if not kind else
                  [rnd.choice(_BOUNDS), rnd.choice(_BOUNDS)] if kind == ["BYSCORE"] else
                  [rnd.choice(_LEX), rnd.choice(_LEX)])
        return ["ZRANGESTORE", other, key, *bounds, *kind, *(limit if kind else [])]
    if pick == 24:
        return ["SADD", "{a}s", *rnd.sample(_MEMBERS, rnd.randint(1, 3))]
    return ["ZRANDMEMBER", key, str(len(_MEMBERS) + 1), "WITHSCORES"]     # the whole zset: deterministic


@pytest.mark.parametrize("seed,proto", [(1, 2), (2, 2), (3, 3), (4, 3)])
def test_differential_random_commands(pair, seed, proto):
    rnd = random.Random(seed)
    commands = [_random_command(rnd) for _ in range(500)]
    prologue = [("!", ["HELLO", str(proto)])] if proto == 3 else []
    run_both(pair, prologue + commands + [["ZRANGE", k, "0", "-1", "WITHSCORES"] for k in _KEYS], RESTORE)


# -- keys on both workers (the proxy's cross-shard fallback runs the same handlers) -------------

def _spread() -> tuple[str, str, str]:
    (a,), (b,), (c,) = keys_on(0, 1, "zx"), keys_on(1, 1, "zy"), keys_on(0, 1, "zd")
    assert {worker_of(a), worker_of(b)} == {0, 1}
    return a, b, c


def test_zset_ops_cross_shard(pair):
    a, b, d = _spread()
    run_both(pair, [
        f"ZADD {a} 1 p 2 q 3 r", f"ZADD {b} 10 q 20 r 30 s",
        f"ZUNION 2 {a} {b} WITHSCORES", f"ZINTER 2 {a} {b} WEIGHTS 2 1 WITHSCORES", f"ZDIFF 2 {b} {a}",
        f"ZINTERCARD 2 {a} {b} LIMIT 1", f"ZRANGESTORE {b} {a} 0 1", f"ZRANGE {b} 0 -1 WITHSCORES",
        f"ZMPOP 2 nokey{{x}} {a} MAX COUNT 2", f"ZMPOP 2 {d} {b} MIN", f"ZRANGE {a} 0 -1",
    ], RESTORE)


def test_zstore_cross_shard(pair):
    a, b, d = _spread()
    run_both(pair, [
        f"ZADD {a} 1 p 2 q 3 r", f"ZADD {b} 10 q 20 r 30 s",
        f"ZUNIONSTORE {d} 2 {a} {b}", f"ZRANGE {d} 0 -1 WITHSCORES",
        f"ZINTERSTORE {b} 2 {a} {b} AGGREGATE MAX", f"ZRANGE {b} 0 -1 WITHSCORES",
        f"ZDIFFSTORE {d} 2 {a} {b}", f"ZRANGE {d} 0 -1 WITHSCORES",
    ], RESTORE)
