"""The generic cross-shard fallback (shardd/proxy/scratch.py) for multi-key commands of every
type: atomic under concurrent load, inside MULTI/EXEC, seen by WATCH, and SORT patterns reading
keys of every worker."""
from __future__ import annotations

import random
import threading
import time

import redis

from helpers import keys_on, worker_of

S0, T0 = keys_on(0, 2, "s0:")
S1, T1 = keys_on(1, 2, "s1:")


def test_type_commands_across_workers_inside_exec(r, raw):
    assert raw.call("MULTI") == b"+OK\r\n"
    for cmd in (("SADD", S0, "x", "y"), ("SMOVE", S0, S1, "x"), ("SUNIONSTORE", T1, S0, S1),
                ("RPUSH", T0, "a"), ("LMOVE", T0, S1 + ":l", "LEFT", "RIGHT"), ("SCARD", T1)):
        assert raw.call(*cmd) == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*6\r\n:2\r\n:1\r\n:2\r\n:1\r\n$1\r\na\r\n:2\r\n"
    assert r.smembers(S1) == {b"x"} and r.smembers(T1) == {b"x", b"y"}


def test_watch_fires_on_a_fallback_write(server, r):
    other = server.client()
    r.sadd(S0, "m")
    with r.pipeline() as pipe:
        pipe.watch(S1)
        other.smove(S0, S1, "m")            # written back to S1's worker by the fallback
        pipe.multi()
        pipe.set(T1, "never")
        try:
            pipe.execute()
            raise AssertionError("EXEC ran although a watched key changed")
        except redis.WatchError:
            pass
    assert r.get(T1) is None
    other.close()


def test_fallback_keeps_ttl_of_untouched_and_touched_keys(r):
    r.sadd(S0, "a", "b")
    r.pexpire(S0, 100_000)
    r.sadd(S1, "c")
    assert r.smove(S0, S1, "a") is True
    assert 0 < r.pttl(S0) <= 100_000
    assert r.ttl(S1) == -1


def test_concurrent_smove_across_workers_keeps_every_member(server, r):
    """Members hop between sets on both workers while readers count them atomically."""
    members = [f"m{i}" for i in range(40)]
    sets = [S0, S1, T0, T1]
    r.sadd(S0, *members)
    stop = time.monotonic() + 2.0
    bad: list = []

    def mover(seed: int) -> None:
        rnd = random.Random(seed)
        c = server.client()
        while time.monotonic() < stop:
            src, dst = rnd.sample(sets, 2)
            c.smove(src, dst, rnd.choice(members))
        c.close()

    def reader() -> None:
        c = server.client()
        while time.monotonic() < stop:
            with c.pipeline(transaction=True) as p:
                for s in sets:
                    p.scard(s)
                counts = p.execute()
            union = c.sunion(*sets)
            if sum(counts) != len(members) or len(union) != len(members):
                bad.append((counts, len(union)))
        c.close()
    threads = [threading.Thread(target=mover, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not bad, bad[:5]
    assert sum(r.scard(s) for s in sets) == len(members)


def test_sort_by_and_get_patterns_read_keys_of_every_worker(r):
    r.rpush(S0, "1", "2", "3")
    weights = {"1": 3, "2": 1, "3": 2}
    for item, weight in weights.items():
        r.set(f"w_{item}", weight)
        r.set(f"name_{item}", f"n{item}")
    assert {worker_of(f"w_{i}") for i in weights} == {0, 1}
    assert {worker_of(f"name_{i}") for i in weights} == {0, 1}
    assert r.sort(S0, by="w_*") == [b"2", b"3", b"1"]
    assert r.sort(S0, by="w_*", get=["#", "name_*"]) == [b"2", b"n2", b"3", b"n3", b"1", b"n1"]
    assert r.sort(S0, by="w_*", get="name_*", store=S1) == 3
    assert r.lrange(S1, 0, -1) == [b"n2", b"n3", b"n1"]
