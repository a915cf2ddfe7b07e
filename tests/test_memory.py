"""maxmemory, the eight eviction policies, used_memory's own account, MEMORY, OBJECT IDLETIME/FREQ.

used_memory is the workers' account of what their data holds (shardd/worker/memsize.py) plus a
1 MB startup share split between the workers; each worker holds its data to maxmemory / workers.
"""
from __future__ import annotations

import random
import time

import psutil
import pytest
import redis

from helpers import keys_on, wait_until

MAXMEMORY = 4 * 1024 * 1024
STARTUP = 1 << 20
VALUE = b"v" * 200
SLACK = 4096          # what the last command before an eviction may add (one key here)


@pytest.fixture
def m(server):
    """A client of the (flushed) server, its memory settings put back after the test."""
    client = server.client()
    client.flushall()
    client.config_resetstat()
    yield client
    client.config_set("maxmemory", 0)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("lfu-log-factor", 10)
    client.config_set("maxmemory-samples", 5)
    client.flushall()
    client.close()


def limit(r, policy: str, maxmemory: int = MAXMEMORY) -> None:
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", maxmemory)


def fill(r, names, ttl_ms: int | None = None) -> int:
    """SET every name (with PX ttl_ms), pipelined; how many OOM errors came back."""
    pipe = r.pipeline(transaction=False)
    ooms = 0
    for i, name in enumerate(names):
        if ttl_ms is None:
            pipe.set(name, VALUE)
        else:
            pipe.set(name, VALUE, px=ttl_ms)
        if i % 500 == 499:
            ooms += sum(isinstance(x, redis.ResponseError) for x in pipe.execute(raise_on_error=False))
    ooms += sum(isinstance(x, redis.ResponseError) for x in pipe.execute(raise_on_error=False))
    return ooms


def memory(r) -> dict:
    return r.info("memory")


def assert_at_limit(r) -> None:
    info = memory(r)
    assert info["used_memory"] <= MAXMEMORY + SLACK
    assert info["used_memory"] > MAXMEMORY * 0.8
    for shard in (0, 1):                       # each worker within its share
        share = info[f"shard{shard}_memory"]
        assert share["maxmemory"] == MAXMEMORY // 2
        assert share["used_memory"] <= MAXMEMORY // 2 + SLACK


def existing(r, names) -> list:
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    return [n for n, e in zip(names, pipe.execute()) if e]


# -- the account ---------------------------------------------------------------------------------

def test_info_memory_fields(m):
    info = memory(m)
    for field in ("used_memory", "used_memory_human", "used_memory_rss", "used_memory_rss_human",
                  "used_memory_peak", "used_memory_peak_human", "used_memory_peak_perc", "used_memory_overhead",
                  "used_memory_startup", "used_memory_dataset", "used_memory_dataset_perc", "allocator_allocated",
                  "total_system_memory", "used_memory_lua", "used_memory_scripts", "maxmemory", "maxmemory_human",
                  "maxmemory_policy", "mem_fragmentation_ratio", "mem_fragmentation_bytes",
                  "mem_not_counted_for_evict", "mem_clients_normal", "mem_aof_buffer", "mem_allocator",
                  "lazyfree_pending_objects", "shard0_memory", "shard1_memory"):
        assert field in info, field
    assert info["used_memory"] == STARTUP == info["used_memory_startup"]
    assert info["used_memory_human"] == "1.00M"
    assert info["maxmemory"] == 0 and info["maxmemory_policy"] == "noeviction"
    assert info["used_memory_rss"] > info["used_memory"]
    stats = m.info("stats")
    assert stats["evicted_keys"] == 0 and "total_eviction_exceeded_time" in stats


def random_workload(r, rng: random.Random, n: int) -> None:
    keys = [f"k{i}" for i in range(40)]
    for _ in range(n):
        k, k2 = rng.choice(keys), rng.choice(keys)
        v = "x" * rng.randrange(0, 300)
        op = rng.randrange(16)
        try:
            if op == 0:
                r.set(k, v)
            elif op == 1:
                r.append(k, v)
            elif op == 2:
                r.setrange(k, rng.randrange(50), v)
            elif op == 3:
                r.hset(k, mapping={f"f{j}": v for j in range(rng.randrange(1, 200))})
            elif op == 4:
                r.hdel(k, *[f"f{j}" for j in range(rng.randrange(1, 150))])
            elif op == 5:
                r.rpush(k, *[v] * rng.randrange(1, 100))
            elif op == 6:
                r.lpop(k, rng.randrange(1, 80))
            elif op == 7:
                r.sadd(k, *[f"{v}{j}" for j in range(rng.randrange(1, 200))])
            elif op == 8:
                r.zadd(k, {f"m{j}{v}": j for j in range(rng.randrange(1, 200))})
            elif op == 9:
                r.zremrangebyrank(k, 0, rng.randrange(50))
            elif op == 10:
                r.pexpire(k, 100000)
            elif op == 11:
                r.persist(k)
            elif op == 12:
                r.copy(k, k2, replace=True)
            elif op == 13:
                r.move(k, 1)
            elif op == 14:
                r.delete(k)
            else:
                r.incrby(k, rng.randrange(1000))
        except redis.ResponseError:
            pass                                            # WRONGTYPE and friends


def test_account_balances_to_zero(m):
    """Every write path adds and takes back the same bytes: with every key gone again, used_memory
    is the startup share to the byte."""
    random_workload(m, random.Random(7), 1500)
    m.swapdb(0, 1)
    random_workload(m, random.Random(8), 500)
    assert memory(m)["used_memory"] > STARTUP
    for db in (0, 1):
        m.execute_command("SELECT", db)
        for key in m.keys():
            m.delete(key)
    m.execute_command("SELECT", 0)
    assert m.dbsize() == 0
    assert memory(m)["used_memory"] == STARTUP
    random_workload(m, random.Random(9), 300)
    m.flushall()
    assert memory(m)["used_memory"] == STARTUP


def test_account_follows_rss(server, m):
    """used_memory's growth stays near the workers' RSS growth for plain data (the estimate's
    calibration: within +-50% here, ~10% against tracemalloc, see memsize.py)."""
    workers = [psutil.Process(int(w["pid"])) for w in (m.info("shards")[f"shard{i}"] for i in (0, 1))]
    rss0 = sum(p.memory_info().rss for p in workers)
    used0 = memory(m)["used_memory"]
    pipe = m.pipeline(transaction=False)
    for i in range(40000):
        pipe.set(f"rss:{i}", b"x" * 150)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    grown_used = memory(m)["used_memory"] - used0
    grown_rss = sum(p.memory_info().rss for p in workers) - rss0
    assert 0.5 < grown_used / grown_rss < 1.5, (grown_used, grown_rss)


def test_memory_usage(m, raw):
    m.set("s1", "v" * 100)
    m.hset("h", mapping={f"f{i}": "x" * 20 for i in range(1000)})
    small = m.memory_usage("s1")
    assert 200 < small < 600
    assert m.memory_usage("s1") == small                          # no side effect
    m.set("s2", "v" * 1100)
    assert m.memory_usage("s2") - small == 1000
    m.pexpire("s2", 100000)
    assert m.memory_usage("s2") > small + 1000
    full = m.memory_usage("h", samples=0)
    assert 1000 * 60 < full < 1000 * 200            # values and the table (short field names are shared)
    assert abs(m.memory_usage("h") - full) < full * 0.3           # 5 samples
    assert raw.call("MEMORY", "USAGE", "nosuch") == b"$-1\r\n"
    assert raw.call("MEMORY", "USAGE", "s1", "SAMPLES", "-1") == b"-ERR syntax error\r\n"
    assert raw.call("MEMORY", "USAGE", "s1", "SAMPLES", "x") == b"-ERR value is not an integer or out of range\r\n"
    assert raw.call("MEMORY", "USAGE", "s1", "SAMPLES") == b"-ERR syntax error\r\n"
    assert raw.call("MEMORY", "USAGE", "s1", "FOO", "1") == b"-ERR syntax error\r\n"
    assert raw.call("MEMORY", "USAGE") == b"-ERR wrong number of arguments for 'memory|usage' command\r\n"
    assert raw.call("MEMORY", "NOSUCH") == b"-ERR unknown subcommand 'NOSUCH'. Try MEMORY HELP.\r\n"
    for worker in (0, 1):
        for key in keys_on(worker, 2, "mu"):
            m.set(key, "x")
            assert m.memory_usage(key) > 0


def test_memory_stats_doctor_and_the_rest(m, raw):
    stats = m.memory_stats()
    for field in ("peak.allocated", "total.allocated", "startup.allocated", "replication.backlog", "clients.slaves",
                  "clients.normal", "aof.buffer", "lua.caches", "functions.caches", "overhead.total", "keys.count",
                  "keys.bytes-per-key", "dataset.bytes", "dataset.percentage", "peak.percentage",
                  "allocator.allocated", "allocator.resident", "fragmentation", "fragmentation.bytes"):
        assert field in stats, field
    assert stats["total.allocated"] == STARTUP and stats["keys.count"] == 0
    assert m.execute_command("MEMORY", "DOCTOR").startswith(b"Hi Sam, this instance is empty")
    fill(m, [f"d{i}" for i in range(15000)])
    stats = m.memory_stats()
    assert stats["keys.count"] == 15000 and stats["db.0"]["overhead.hashtable.main"] > 0
    assert stats["dataset.bytes"] + stats["overhead.total"] == stats["total.allocated"]
    assert 200 <= stats["keys.bytes-per-key"] <= 300
    report = m.execute_command("MEMORY", "DOCTOR").decode()
    assert report.startswith(("Hi Sam, I can't find any memory issue", "Sam, I detected a few issues"))
    assert raw.call("MEMORY", "MALLOC-STATS") == b"$45\r\nStats not supported for the current allocator\r\n"
    assert raw.call("MEMORY", "PURGE") == b"+OK\r\n"
    assert raw.call("MEMORY", "HELP").startswith(b"*14\r\n+MEMORY <subcommand> [<arg> [value] [opt] ...]. ")
    raw.call("HELLO", "3")
    assert raw.call("MEMORY", "STATS").startswith(b"%")
    assert raw.call("MEMORY", "DOCTOR").startswith(b"=")


# -- eviction, per policy -------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["allkeys-random", "allkeys-lru", "allkeys-lfu"])
def test_allkeys_policies_stay_at_the_limit(m, policy):
    limit(m, policy)
    names = [f"key:{i}" for i in range(25000)]
    assert fill(m, names) == 0
    assert_at_limit(m)
    evicted = m.info("stats")["evicted_keys"]
    assert evicted > 10000 and m.dbsize() == 25000 - evicted
    assert all(share["evicted_keys"] > 0 for share in (memory(m)[f"shard{i}_memory"] for i in (0, 1)))


def test_allkeys_lru_evicts_the_least_recently_used(m):
    old = [f"old:{i}" for i in range(4000)]
    hot = old[:300]
    fill(m, old)
    time.sleep(2.1)                      # Valkey's LRU clock counts seconds
    pipe = m.pipeline(transaction=False)
    for name in hot:
        pipe.get(name)
    pipe.execute()
    limit(m, "allkeys-lru")
    m.config_set("maxmemory-samples", 10)
    # ~7800 keys fit: 6500 new ones need about 2700 evictions, fewer than the 3700 cold keys;
    # new and hot keys are all idle 0 s (the clock counts seconds), the cold ones 2 s
    fill(m, [f"new:{i}" for i in range(6500)])
    assert_at_limit(m)
    assert len(existing(m, hot)) >= 0.85 * len(hot)                    # read just now
    assert len(existing(m, old[300:])) <= 0.5 * len(old[300:])         # idle for 2 s
    assert m.object("idletime", hot[0]) <= 1


def test_allkeys_lfu_keeps_the_frequently_used(m):
    m.config_set("lfu-log-factor", 0)    # every access counts: deterministic counters
    m.config_set("maxmemory-policy", "allkeys-lfu")
    names = [f"f:{i}" for i in range(4000)]
    fill(m, names)
    hot = names[:300]
    pipe = m.pipeline(transaction=False)
    for _ in range(10):
        for name in hot:
            pipe.get(name)
    pipe.execute()
    assert m.object("freq", hot[0]) == 15 and m.object("freq", names[-1]) == 5
    limit(m, "allkeys-lfu")
    fill(m, [f"g:{i}" for i in range(6000)])
    assert_at_limit(m)
    assert len(existing(m, hot)) >= 0.9 * len(hot)


@pytest.mark.parametrize("policy", ["volatile-random", "volatile-lru", "volatile-lfu", "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_a_ttl(m, policy):
    persistent = [f"p:{i}" for i in range(3000)]
    fill(m, persistent)
    limit(m, policy)
    volatile = [f"t:{i}" for i in range(10000)]
    pipe = m.pipeline(transaction=False)
    for i, name in enumerate(volatile):
        pipe.set(name, VALUE, px=100000 + i * 10)     # later keys live longer
        if i % 500 == 499:
            pipe.execute(raise_on_error=False)
    pipe.execute(raise_on_error=False)
    assert_at_limit(m)
    assert len(existing(m, persistent)) == len(persistent)
    kept = existing(m, volatile)
    assert 0 < len(kept) < len(volatile)
    if policy == "volatile-ttl":               # the soonest to expire went first
        kept_index = sorted(int(n.split(":")[1]) for n in kept)
        assert sum(kept_index) / len(kept_index) > len(volatile) * 0.7
    # once no key has a TTL, writes that need memory are refused
    m.delete(*kept)
    ooms = fill(m, [f"more:{i}" for i in range(8000)])
    assert ooms > 0
    with pytest.raises(redis.ResponseError, match="^command not allowed when used memory > 'maxmemory'.$"):
        for i in range(3000):
            m.set(f"one:{i}", VALUE)
    assert len(existing(m, persistent)) == len(persistent)


def test_noeviction_refuses_writes_but_not_reads_or_deletes(m, raw):
    limit(m, "noeviction")
    names = [f"n:{i}" for i in range(20000)]
    assert fill(m, names) > 0
    assert_at_limit(m)
    assert m.info("stats")["evicted_keys"] == 0
    assert raw.call("SET", "x", "y") == b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    assert raw.call("LPUSH", "l", "y") == b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    stored = existing(m, names)
    assert raw.call("GET", stored[0]) == b"$200\r\n" + VALUE + b"\r\n"
    assert raw.call("EXPIRE", stored[0], "100") == b":1\r\n"      # not denyoom
    assert m.delete(*stored[:2000]) == 2000
    assert raw.call("SET", "x", "y") == b"+OK\r\n"
    assert m.info("errorstats")["errorstat_OOM"]["count"] >= 2
    # out of memory, MULTI queues nothing and the transaction is aborted (Valkey's processCommand;
    # tests/test_acl_oom_scripts.py has the rest)
    fill(m, [f"n2:{i}" for i in range(5000)])
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", "tx", "1") == b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    assert raw.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert raw.call("EXISTS", "tx") == b":0\r\n"


def test_lowering_maxmemory_evicts_at_once(m):
    fill(m, [f"low:{i}" for i in range(15000)])
    m.config_set("maxmemory-policy", "allkeys-random")
    m.config_set("maxmemory", MAXMEMORY)           # eviction starts now, goes on without commands
    assert wait_until(lambda: memory(m)["used_memory"] <= MAXMEMORY + SLACK, 5)
    assert m.dbsize() < 15000


def test_rss_stays_bounded_while_evicting(server, m):
    """Key after key evicted and replaced: the workers' RSS settles (memory is reused)."""
    workers = [psutil.Process(int(w["pid"])) for w in (m.info("shards")[f"shard{i}"] for i in (0, 1))]
    limit(m, "allkeys-lru")
    fill(m, [f"r0:{i}" for i in range(20000)])
    rss_after_first = sum(p.memory_info().rss for p in workers)
    for rnd in range(1, 4):
        fill(m, [f"r{rnd}:{i}" for i in range(20000)])
        assert_at_limit(m)
    grown = sum(p.memory_info().rss for p in workers) - rss_after_first
    assert grown < 2 * MAXMEMORY, grown


# -- access clocks ----------------------------------------------------------------------------------

def test_object_idletime_and_what_touches(m, raw):
    for name in ("a", "b", "c", "d", "e"):
        m.set(name, "v")
    time.sleep(1.1)
    for read in (("TYPE", "a"), ("TTL", "a"), ("PTTL", "a"), ("EXISTS", "a"), ("OBJECT", "ENCODING", "a"),
                 ("MEMORY", "USAGE", "a")):
        raw.call(*read)
    assert m.object("idletime", "a") >= 1                 # none of those touched it
    m.get("b")
    m.touch("c")
    m.set("d", "w")
    m.append("e", "x")
    assert [m.object("idletime", n) for n in "bcde"] == [0, 0, 0, 0]
    assert raw.call("OBJECT", "IDLETIME", "nosuch") == b"$-1\r\n"
    assert raw.call("OBJECT", "FREQ", "a").startswith(b"-ERR An LFU maxmemory policy is not selected")


def test_object_freq_and_lfu_log_factor(m, raw):
    m.config_set("maxmemory-policy", "allkeys-lfu")
    m.config_set("lfu-log-factor", 0)
    m.set("k", "v")
    assert m.object("freq", "k") == 5                     # LFU_INIT_VAL
    for i in range(1, 11):
        m.get("k")
        assert m.object("freq", "k") == 5 + i
    m.set("k", "w")                                        # an overwrite keeps the counter
    assert m.object("freq", "k") == 16
    m.config_set("lfu-log-factor", 10)
    for _ in range(50):
        m.get("k")
    assert 16 <= m.object("freq", "k") < 30                # logarithmic now: 16 + a few
    assert raw.call("OBJECT", "IDLETIME", "k").startswith(b"-ERR An LFU maxmemory policy is selected")
    assert raw.call("OBJECT", "FREQ", "nosuch") == b"$-1\r\n"


def test_cross_worker_write_refused_whole_when_one_worker_is_out_of_memory(m, raw):
    """A denyoom command whose keys span workers is refused as a whole (-OOM, nothing
    written) when one of those workers is out of memory, as Valkey refuses it before it runs."""
    limit(m, "noeviction")
    assert fill(m, keys_on(0, 20000, "full:")) > 0        # worker 0 only
    ok_key, full_key = keys_on(1, 1, "roomy:")[0], keys_on(0, 1, "new:")[0]
    assert raw.call("SET", ok_key, "1") == b"+OK\r\n"       # worker 1 has room
    oom = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    assert wait_until(lambda: raw.call("MSET", ok_key, "2", full_key, "2") == oom, 2)
    assert raw.call("GET", ok_key) == b"$1\r\n1\r\n" and raw.call("EXISTS", full_key) == b":0\r\n"
    assert raw.call("DEL", ok_key, full_key) == b":1\r\n"  # not denyoom: runs
