"""RESTORE … IDLETIME / FREQ: the restored key's LRU idle time or LFU counter (objectSetLRUOrLFU)."""
from __future__ import annotations

import pytest
import redis

from helpers import run_both

RESTORE_ERRORS = [
    "RESTORE k 0 {p} IDLETIME -1",
    "RESTORE k 0 {p} IDLETIME abc",
    "RESTORE k 0 {p} IDLETIME 1.5",
    "RESTORE k 0 {p} FREQ -1",
    "RESTORE k 0 {p} FREQ 256",
    "RESTORE k 0 {p} FREQ x",
    "RESTORE k 0 {p} FREQ 5 IDLETIME 5",      # one or the other: the second is a syntax error
    "RESTORE k 0 {p} IDLETIME 5 FREQ 5",
    "RESTORE k 0 {p} IDLETIME",
    "RESTORE k 0 {p} FREQ",
    "RESTORE k 0 {p} IDLETIME 5 IDLETIME 6",
    "RESTORE src 0 {p} IDLETIME -1",          # option errors come before BUSYKEY
    "RESTORE src 0 {p} FREQ 300 REPLACE",
    "RESTORE src 0 {p} IDLETIME 10",          # BUSYKEY
    "RESTORE k -1 {p} IDLETIME 10",           # the TTL is checked after the options
    "RESTORE k 0 {p} IDLETIME 10 ABSTTL REPLACE",
    "RESTORE k2 0 {p} FREQ 0",
    "RESTORE k3 0 {p} FREQ 255 REPLACE",
    "RESTORE k4 0 {p} IDLETIME 9223372036854775807",
    "RESTORE k5 0 {p} IDLETIME 9223372036854775808",
    "EXISTS k k2 k3 k4 k5",
]


@pytest.fixture
def payload(pair) -> bytes:
    """A DUMP payload of a string, from the oracle (RDB version 10, which both accept)."""
    _, oracle = pair
    oracle.call("SET", "src", "value")
    reply = oracle.call("DUMP", "src")
    return reply[reply.index(b"\r\n") + 2:-2]


def commands_with(payload: bytes, lines: list[str]) -> list:
    out = [["SET", "src", "value"]]
    for line in lines:
        out.append([payload if word == "{p}" else word for word in line.split()])
    return out


def test_restore_idletime_freq_errors_match_redis(pair, payload):
    run_both(pair, commands_with(payload, RESTORE_ERRORS), [])


def test_restore_freq_under_lfu_matches_redis(pair, payload):
    restore = [("CONFIG", "SET", "maxmemory-policy", "noeviction")]
    lines = ["RESTORE a 0 {p} FREQ 100", "OBJECT FREQ a", "RESTORE b 0 {p} FREQ 0", "OBJECT FREQ b",
             "RESTORE c 0 {p} FREQ 255 REPLACE", "OBJECT FREQ c",
             "RESTORE d 0 {p} IDLETIME 1000", "OBJECT FREQ d",        # IDLETIME has no effect under LFU
             "RESTORE a 0 {p} FREQ 7 REPLACE", "OBJECT FREQ a"]
    run_both(pair, [("!", "CONFIG SET maxmemory-policy allkeys-lfu"), *commands_with(payload, lines)], restore)


def test_restore_idletime_sets_the_idle_time(r):
    r.set("src", "value")
    payload = r.dump("src")
    assert r.restore("k", 0, payload, idletime=1000) == b"OK"
    assert 1000 <= r.object("idletime", "k") <= 1001
    assert r.execute_command("RESTORE", "k", 0, payload, "IDLETIME", 5, "REPLACE") == b"OK"
    assert 5 <= r.object("idletime", "k") <= 6
    # with a TTL too; the key keeps both
    assert r.execute_command("RESTORE", "t", 60000, payload, "IDLETIME", 300) == b"OK"
    assert 300 <= r.object("idletime", "t") <= 301 and 0 < r.pttl("t") <= 60000
    # longer than the 24-bit clock goes round: it reads back modulo the clock, never negative
    assert r.execute_command("RESTORE", "w", 0, payload, "IDLETIME", 100 * 86400) == b"OK"
    assert r.object("idletime", "w") >= 0
    # FREQ under an LRU policy has no effect: a new key's idle time
    assert r.execute_command("RESTORE", "f", 0, payload, "FREQ", 100) == b"OK"
    assert r.object("idletime", "f") <= 1
    # a read touches it again
    r.get("k")
    assert r.object("idletime", "k") <= 1
    # an already expired ABSTTL stores nothing, whatever IDLETIME says
    assert r.execute_command("RESTORE", "gone", 1, payload, "ABSTTL", "IDLETIME", 10) == b"OK"
    assert r.exists("gone") == 0


def test_restore_idletime_orders_lru_eviction(server):
    """The idle time RESTORE sets is what allkeys-lru evicts by: the oldest go first."""
    r = server.client()
    r.flushall()
    try:
        r.config_set("maxmemory-policy", "allkeys-lru")
        r.set("src", "x" * 1000)
        payload = r.dump("src")
        r.delete("src")
        old = [f"{{t}}old:{i}" for i in range(40)]     # one slot: every sample sees both kinds
        new = [f"{{t}}new:{i}" for i in range(40)]
        for key in old:
            r.execute_command("RESTORE", key, 0, payload, "IDLETIME", 100000)
        for key in new:
            r.execute_command("RESTORE", key, 0, payload)
        shards = [v for k, v in r.info("memory").items() if k.startswith("shard") and v["used_memory"] > 0]
        holder = max(shard["used_memory"] for shard in shards)
        r.config_set("maxmemory-samples", 10)
        r.config_set("maxmemory", 2 * (holder - 30 * 1000))    # the holder's share: ~30 keys too many
        r.config_set("maxmemory", 0)
        survivors_old = sum(r.exists(k) for k in old)
        survivors_new = sum(r.exists(k) for k in new)
        assert survivors_new >= 35 and survivors_old <= 20      # sampled LRU: mostly the old ones
    finally:
        r.config_set("maxmemory", 0)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory-samples", 5)
        r.flushall()
        r.close()


def test_restore_freq_under_lfu(server):
    r = server.client()
    r.flushall()
    try:
        r.config_set("maxmemory-policy", "volatile-lfu")
        r.set("src", "value")
        payload = r.dump("src")
        assert r.execute_command("RESTORE", "k", 0, payload, "FREQ", 42) == b"OK"
        assert r.object("freq", "k") == 42
        assert r.execute_command("RESTORE", "n", 0, payload) == b"OK"
        assert r.object("freq", "n") == 5            # LFU_INIT_VAL when FREQ is not given
        with pytest.raises(redis.ResponseError, match="Invalid FREQ value"):
            r.execute_command("RESTORE", "x", 0, payload, "FREQ", 1000)
    finally:
        r.config_set("maxmemory-policy", "noeviction")
        r.flushall()
        r.close()
