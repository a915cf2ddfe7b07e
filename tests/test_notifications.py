"""Keyspace notifications (notify-keyspace-events): the events of ~150 commands compared with
redis-server's for several class sets (keys spread over both workers, so commands whose keys
span workers, run by the proxy, are in it), expiry (active and lazy), the config turning them
on and off on every worker, and delivery to subscribers on every proxy."""
from __future__ import annotations

import shlex
import time

import hiredis
import pytest

from helpers import RawConnection, encode, keys_on, worker_of
from server import Server

COMMANDS = """
SET s 1
SET s 2 NX
SET s 3 XX EX 100
SET s 4 KEEPTTL
SET s 5 GET
SETNX s 5
SETNX s2 5
SETEX s3 100 v
PSETEX s4 100000 v
GETSET s v2
MSET m1 1 m2 2
MSET {m}1 1 {m}2 2 {m}1 3
MSETNX m1 1 m3 3
MSETNX m4 1 m5 3
APPEND s x
INCR n
DECR n
INCRBY n 5
DECRBY n 2
INCRBYFLOAT n 1.5
SETRANGE s 2 zz
SETRANGE s 0 ""
GETDEL s
GETDEL s
GETEX s4 EX 100
GETEX s4 PERSIST
GETEX s4 PERSIST
GETEX s4
SET t v
GETEX t PXAT 1
EXISTS t
GET nosuch
SETBIT b 3 1
SETBIT b 3 1
BITFIELD b SET u8 0 255
BITFIELD b GET u8 0
BITOP AND bd b b
BITOP AND bd nosuch
PFADD h a b
PFADD h a
PFMERGE h2 h
LPUSH l a b c
RPUSH l d
LPUSHX l e
RPUSHX l f
LPUSHX nol e
LINSERT l BEFORE a x
LSET l 0 y
LPOP l
RPOP l 2
LREM l 1 x
LREM l 1 nope
LTRIM l 0 100
LTRIM l 0 0
LPOP l
LPUSH l a b c d
LMOVE l l2 LEFT RIGHT
RPOPLPUSH l l2
LMOVE l l LEFT LEFT
LMPOP 2 nol l RIGHT COUNT 10
BLPOP l2 0
BRPOP l2 nol 0
LPUSH l3 x
BLMOVE l3 l4 LEFT LEFT 0
BRPOPLPUSH l4 l5 0
BLMPOP 0 1 l5 LEFT
HSET hh f v g w
HSET hh f v
HSETNX hh f v
HSETNX hh z v
HMSET hh a b
HINCRBY hh n 1
HINCRBYFLOAT hh n 1.5
HDEL hh f nope
HDEL hh g z a n
HDEL hh nope
SADD st a b c
SADD st a
SREM st a
SREM st zz
SPOP st 0
SREM st b
SPOP st
SADD st c
SMOVE st st2 c
SADD st q
SMOVE st st2 q
SADD st2 r
SADD st r
SMOVE st st2 r
SINTERSTORE sd st2 st2
SUNIONSTORE sd st2 nope
SDIFFSTORE sd st2 st2
SDIFFSTORE sd st2 st2
ZADD z 1 a 2 b 3 c
ZADD z 1 a
ZADD z XX CH 5 a
ZADD z INCR 1 a
ZADD z NX INCR 1 a
ZINCRBY z 2 b
ZREM z a
ZREMRANGEBYSCORE z 100 200
ZREMRANGEBYSCORE z 2 4
ZADD z 1 a 2 b 3 c 4 d
ZREMRANGEBYRANK z 0 0
ZADD zl 0 a 0 b 0 c
ZREMRANGEBYLEX zl [a [b
ZPOPMIN z
ZPOPMAX z 5
ZADD z 1 a 2 b
BZPOPMIN z 0
BZPOPMAX z 0
ZADD z 1 a 2 b
ZMPOP 1 z MAX COUNT 5
ZADD z 1 a 2 b
BZMPOP 0 1 z MIN
ZADD z 1 a 2 b
ZUNIONSTORE zu 1 z
ZINTERSTORE zu 2 z nope
ZDIFFSTORE zu 1 z
ZRANGESTORE zr z 0 -1
ZRANGESTORE zr z 10 20
GEOADD g 13.36 38.11 p1 15.08 37.50 p2
GEORADIUS g 15 37 200 km STORE gs
GEOSEARCHSTORE gs2 g FROMLONLAT 15 37 BYRADIUS 200 km
GEOSEARCHSTORE gs2 g FROMLONLAT 15 37 BYRADIUS 1 m
SET e 1
EXPIRE e 100
EXPIRE e 100 NX
PEXPIRE e 100000
EXPIREAT e 99999999999
PERSIST e
PERSIST e
EXPIRE e 0
SET e 1
PEXPIREAT e 1
SET r1 v
RENAME r1 r2
RENAME r2 r2
RENAMENX r2 r3
SET r4 v
RENAMENX r3 r4
MOVE r3 1
MOVE r3 1
COPY r4 r5
COPY r4 r5
COPY r4 r5 REPLACE
COPY r4 r6 DB 2
DEL r4 r5 nope r4
UNLINK r6 m1
RPUSH so 3 1 2
SORT so STORE sos
SORT nope STORE sos
SET {x}a 1
RENAME {x}a {x}b
SET {x}c 1
COPY {x}b {x}c REPLACE
LPUSH {x}l 1
LMOVE {x}l {x}m RIGHT LEFT
SMOVE nos st2 zz
FLUSHDB
FLUSHALL
EVAL "redis.call('set', KEYS[1], 'v') redis.call('lpush', KEYS[2], 'x') return redis.call('del', KEYS[1])" 2 {s}a {s}b
EVAL "redis.call('set', KEYS[1], 'v') return redis.call('expire', KEYS[1], 100)" 1 {s}c
XADD xs 1-1 f v
XADD xs MAXLEN 1 2-1 f v
XTRIM xs MAXLEN 0
XADD xs 3-1 f v
XDEL xs 3-1
XDEL xs 9-9
XGROUP CREATE xs g $ MKSTREAM
XGROUP CREATE xs2 g $ MKSTREAM
XGROUP CREATECONSUMER xs g c
XGROUP DELCONSUMER xs g c
XGROUP SETID xs g 0
XSETID xs 10-1
XGROUP DESTROY xs g
SWAPDB 0 1
"""
STEPS = [shlex.split(line) for line in COMMANDS.strip().splitlines() if line.strip()]


def events_of(port: int, flags: str, steps: list | None = None) -> list:
    """Each command's reply and the notifications it raised, in order."""
    c, sub = RawConnection(port), RawConnection(port)
    try:
        assert c.call("CONFIG", "SET", "notify-keyspace-events", flags) == b"+OK\r\n"
        c.call("FLUSHALL")
        sub.send(encode("PSUBSCRIBE", "__key*__:*"))
        sub.read()
        sub.send(encode("SUBSCRIBE", "marker"))
        sub.read()
        reader = hiredis.Reader()
        out = []
        for i, args in enumerate(STEPS if steps is None else steps):
            reply = c.call(*args)
            c.call("PUBLISH", "marker", str(i))
            got = []
            while True:
                reader.feed(sub.read())
                message = reader.gets()
                if message[0] == b"message":
                    break
                got.append((message[2], message[3]))
            out.append((args, reply, got))
        return out
    finally:
        c.call("CONFIG", "SET", "notify-keyspace-events", "")
        c.close()
        sub.close()


def test_the_commands_span_both_workers():
    assert worker_of("l") != worker_of("l2") and worker_of("st") != worker_of("st2")
    assert worker_of("r1") != worker_of("r2") and worker_of("h") != worker_of("h2")


# MSETNX and COPY across workers check keys with EXISTS, which reports its misses.
MISS_EXCEPTIONS = {("MSETNX", "m1", "1", "m3", "3"), ("COPY", "r4", "r6", "DB", "2")}


# The proxy splits these by worker: each worker raises its keys' events, in its own time.
SPLIT = frozenset(("MSET", "MSETNX", "DEL", "UNLINK"))


def split_over_workers(args: list[str]) -> bool:
    keys = args[1::2] if args[0] in ("MSET", "MSETNX") else args[1:]
    return args[0] in SPLIT and len({worker_of(k) for k in keys}) > 1


@pytest.mark.parametrize("flags", ["KEA", "KEAn", "Kg$", "El", "KEshz", "Kxgn", "Em"])
def test_events_like_redis(server, oracle_port, r, flags):
    got, want = events_of(server.port, flags), events_of(oracle_port, flags)
    for (args, g_reply, g), (_, w_reply, w) in zip(got, want):
        if "m" in flags and tuple(args) in MISS_EXCEPTIONS:
            continue
        if split_over_workers(args):
            g, w = sorted(g), sorted(w)
        assert (g_reply, g) == (w_reply, w), f"{args}: shardd {g_reply} {g} != redis {w_reply} {w}"


SCRIPT = ("redis.call('set', KEYS[1], 'x') redis.call('lpush', KEYS[2], 'a', 'b') "
          "redis.call('rpop', KEYS[2]) redis.call('expire', KEYS[1], 100) redis.call('del', KEYS[1]) "
          "redis.call('lpop', KEYS[2]) return redis.call('exists', KEYS[1])")
SCRIPT_STEPS = [["EVAL", SCRIPT, "2", "sa", "sb"],                            # keys on both workers
                ["EVAL", SCRIPT, "2", "{t}a", "{t}b"],                        # keys on one worker
                ["EVAL", "redis.call('set', KEYS[1], 'v') return redis.call('get', 'sb')", "1", "sa"]]


def test_scripts_across_workers_raise_events_like_redis(server, oracle_port):
    assert worker_of("sa") != worker_of("sb")
    got, want = events_of(server.port, "KEA", SCRIPT_STEPS), events_of(oracle_port, "KEA", SCRIPT_STEPS)
    for (args, g_reply, g), (_, w_reply, w) in zip(got, want):
        assert (g_reply, g) == (w_reply, w), f"{args[3:]}: shardd {g_reply} {g} != redis {w_reply} {w}"


def subscribe_events(port: int, pattern: str = "__key*__:*") -> RawConnection:
    sub = RawConnection(port)
    sub.send(encode("PSUBSCRIBE", pattern))
    sub.read()
    return sub


def next_events(sub: RawConnection, n: int) -> list[tuple[bytes, bytes]]:
    reader = hiredis.Reader()
    out = []
    for _ in range(n):
        reader.feed(sub.read())
        m = reader.gets()
        out.append((m[2], m[3]))
    return out


def test_expired_keys_notify_active_and_lazy(server, r):
    r.config_set("notify-keyspace-events", "Ex")
    try:
        sub = subscribe_events(server.port)
        a, b = keys_on(0, 1, "exp0:")[0], keys_on(1, 1, "exp1:")[0]
        r.set(a, "1", px=50)
        r.set(b, "1", px=50)
        # Active expiry finds both (hz 10) without anyone asking.
        assert sorted(next_events(sub, 2)) == sorted([(b"__keyevent@0__:expired", a.encode()),
                                                      (b"__keyevent@0__:expired", b.encode())])
        # Lazy: a read right after the deadline deletes the key first.
        r.set(a, "1", px=20)
        time.sleep(0.03)
        assert r.get(a) is None
        assert next_events(sub, 1) == [(b"__keyevent@0__:expired", a.encode())]
        sub.close()
    finally:
        r.config_set("notify-keyspace-events", "")


def test_notifications_off_means_nothing_sent(server, r):
    sub = subscribe_events(server.port)
    r.set("quiet", "1")
    r.config_set("notify-keyspace-events", "K$")
    r.set("loud", "1")
    r.config_set("notify-keyspace-events", "")
    r.set("quiet", "2")
    r.publish("__keyspace@0__:end", "end")
    assert next_events(sub, 2) == [(b"__keyspace@0__:loud", b"set"), (b"__keyspace@0__:end", b"end")]
    assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": ""}
    sub.close()


def test_own_notification_follows_the_reply_of_its_command(server, r):
    """A subscriber on the writer's own RESP3 connection gets the event right after the
    command's reply (Valkey writes it just before: its pushes go out as the command runs,
    shardd's places for replies a worker owes are taken before the worker runs it)."""
    r.config_set("notify-keyspace-events", "K$")
    try:
        c = RawConnection(server.port)
        c.call("HELLO", "3")
        c.send(encode("SUBSCRIBE", "__keyspace@0__:own"))
        c.read()
        c.send(encode("SET", "own", "1"))
        assert c.read() == b"+OK\r\n"
        assert c.read() == b">3\r\n$7\r\nmessage\r\n$18\r\n__keyspace@0__:own\r\n$3\r\nset\r\n"
        c.close()
    finally:
        r.config_set("notify-keyspace-events", "")


def test_other_databases(server, r):
    r.config_set("notify-keyspace-events", "KEA")
    try:
        sub = subscribe_events(server.port, "__keyevent@3__:*")
        c = RawConnection(server.port)
        c.call("SELECT", "3")
        c.call("LPUSH", "db3list", "x")
        c.call("SELECT", "0")
        c.call("LPUSH", "db0list", "x")
        c.call("SELECT", "3")
        c.call("DEL", "db3list")
        assert next_events(sub, 2) == [(b"__keyevent@3__:lpush", b"db3list"), (b"__keyevent@3__:del", b"db3list")]
        c.call("FLUSHALL")
        c.close()
        sub.close()
    finally:
        r.config_set("notify-keyspace-events", "")


def test_notifications_reach_subscribers_on_every_proxy():
    srv = Server("--notify-keyspace-events", "KEA", proxies=2)
    try:
        subs = []
        while len({(int(s.call("CLIENT", "ID")[1:-2]) - 1) % 2 for s in subs}) < 2:
            subs.append(RawConnection(srv.port))
        for s in subs:
            s.send(encode("PSUBSCRIBE", "__keyevent@0__:*"))
            s.read()
        client = srv.client()
        src, dst = keys_on(0, 1, "src")[0], keys_on(1, 1, "dst")[0]
        client.set(src, "1")
        client.rename(src, dst)          # on two workers: the proxy raises these
        for s in subs:
            assert next_events(s, 3) == [(b"__keyevent@0__:set", src.encode()),
                                         (b"__keyevent@0__:rename_from", src.encode()),
                                         (b"__keyevent@0__:rename_to", dst.encode())]
            s.close()
        client.close()
    finally:
        srv.stop()


def test_evicted_keys_notify(server, r):
    r.config_set("notify-keyspace-events", "Ee")
    sub = subscribe_events(server.port, "__keyevent@0__:evicted")
    try:
        before = r.info("stats")["evicted_keys"]
        used = r.info("memory")["used_memory"]
        r.config_set("maxmemory-policy", "allkeys-random")
        r.config_set("maxmemory", str(used + 100_000))
        for i in range(2000):
            r.set(f"evict:{i}", "x" * 200)
        r.config_set("maxmemory", "0")
        evicted = r.info("stats")["evicted_keys"] - before
        assert evicted > 0
        keys = {key for _, key in next_events(sub, evicted)}
        assert len(keys) == evicted and all(k.startswith(b"evict:") for k in keys)
        assert not any(r.exists(k) for k in list(keys)[:50])
    finally:
        r.config_set("maxmemory", "0")
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("notify-keyspace-events", "")
        sub.close()
