"""maxmemory in a worker: its share of the limit, Valkey's eviction policies, the OOM refusal.

Each worker holds its data to `maxmemory / workers` (its used_memory: its startup share plus
what its dbs hold by their own account, keyspace.used_total). Before a command, when over the
share, it evicts as Valkey's performEvictions does: allkeys-/volatile-lru and -lfu and
volatile-ttl through an eviction pool of 16 candidates refilled with `maxmemory-samples` keys
sampled per db (from one random slot at a time, as Valkey's kvstore does), allkeys-/volatile-
random by a random key per db in turn; for at most the time maxmemory-eviction-tenacity
allows, the hz timer going on where a command stopped. When nothing can be evicted (or the
policy is noeviction), commands flagged denyoom get Valkey's OOM error.

Out of memory now. `Memory.oom` is whether the last check found the worker over its share
with nothing to evict (Valkey's pre_command_oom_state): scripts read it (scriptVerifyOOM), and
it is published for the proxies in word OOM_WORD of each proxy×worker epoch block (shared
memory the proxy reads as `links[w].epoch[OOM_WORD]`), written only when it changes, so MULTI
can refuse to queue and EXEC can refuse a transaction with denyoom commands, as Valkey's
processCommand does, without asking the workers. It is set by a command's check and by the
hz timer, so it may lag a change by one timer tick.
"""
from __future__ import annotations

import bisect
import random
import time
from itertools import islice
from typing import Any

from .. import log, resp
from . import keyspace
from .keyspace import Db
from .packed import IDLE_S
from .scripting import denies_oom

SCRIPT_COMMANDS = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"))

OOM = "OOM command not allowed when used memory > 'maxmemory'."
OOM_REPLY = resp.error(OOM)
STARTUP_BYTES = 1 << 20        # what an empty server counts as used (Valkey's ~1 MB at start)
EVPOOL_SIZE = 16
OK, RUNNING, FAIL = 0, 1, 2    # performEvictions' EVICT_OK, EVICT_RUNNING, EVICT_FAIL
NEVER = 1 << 64
OOM_WORD = 4                   # words 0-3 of an epoch block are the restart handshake


def worker_oom(link) -> bool:
    """The proxy's view: is the worker behind this WorkerLink out of memory now?"""
    return bool(link.epoch[OOM_WORD])


def eviction_time_limit(tenacity: int) -> float:
    """evictionTimeLimitUs, in seconds."""
    if tenacity <= 10:
        return 50e-6 * tenacity
    if tenacity < 100:
        return 500e-6 * 1.15 ** (tenacity - 10)
    return float("inf")


class Memory:
    """One worker's memory limit and eviction."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.dbs: list[Db] = worker.dbs
        self.pool: list[tuple[int, int, int, bytes]] = []     # (score, db, slot, key), ascending
        self.slot_lists: dict[tuple[int, bool], list[int]] = {}   # (db, allkeys) → cached non-empty slots
        self.next_db = 0
        self.evicted = 0
        self.peak = 0
        self.exceeded_since = 0.0        # when used memory went over the share (0: not over)
        self.pending = False             # an eviction ran out of time: the loop goes on with it
        self.exceeded_total = 0.0        # seconds spent over it, closed periods
        self.packed_at = 0               # keyspace.now_ms of the last Db.pack_idle pass
        self.oom = True                  # out of memory now (published below; forced on first set)
        self.set_oom(False)
        self.configure()

    # -- configuration ---------------------------------------------------------------------
    def configure(self) -> None:
        values = self.worker.config.values
        shards = max(values.get("__shards__", 1), 1)
        self.maxmemory = values.get("maxmemory", 0)
        self.limit = max(self.maxmemory // shards, 1) if self.maxmemory else 0    # a tiny limit is still one
        self.startup = STARTUP_BYTES // shards
        self.policy = values.get("maxmemory-policy", "noeviction")
        self.samples = max(values.get("maxmemory-samples", 5), 1)
        self.time_limit = eviction_time_limit(values.get("maxmemory-eviction-tenacity", 10))
        self.allkeys = self.policy.startswith("allkeys")
        lfu = "lfu" in self.policy
        for db in self.dbs:
            db.lfu = lfu
        keyspace.lfu_log_factor = values.get("lfu-log-factor", 10)
        keyspace.lfu_decay_time = values.get("lfu-decay-time", 1)
        self.pool.clear()
        self.worker.limited = bool(self.limit)
        if not self.limit:
            self.set_oom(False)

    def set_oom(self, oom: bool) -> None:
        """Out of memory now, or no longer: published to the proxies when it changes."""
        if oom is not self.oom:
            self.oom = oom
            for link in self.worker.links:
                link.epoch[OOM_WORD] = int(oom)

    # -- figures ---------------------------------------------------------------------------
    def used(self) -> int:
        """used_memory of this worker (every container estimate brought up to date)."""
        for db in self.dbs:
            if db.resized:
                db.settle()
        used = self.startup + keyspace.used_total
        self.peak = max(self.peak, used)
        return used

    def over(self) -> bool:
        return self.startup + keyspace.used_total > self.limit

    # -- the per-command check --------------------------------------------------------------
    def refuses(self, spec, argv: list[bytes]) -> bool:
        """Before a command (limited workers only): evict if over the share; True when the
        command must get the OOM error instead (denyoom, and nothing could be freed)."""
        db = self.worker.ctx.db
        if db.resized:
            db.settle()
        if not self.over():
            self.note_under()
            return False
        worker = self.worker
        # Not inside a transaction or a cross-shard hold: those saw their keys and must keep them.
        if worker.serve_now and worker.held_by is None:
            state = self.perform()
        else:
            state = FAIL
            if self.policy == "noeviction":      # else it may still evict once the hold ends
                self.set_oom(True)
        if state != FAIL:
            return False
        if spec.subcommands and len(argv) > 1:
            spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower(), spec)
        if "denyoom" not in spec.flags:
            if spec.name not in SCRIPT_COMMANDS or not denies_oom(spec, argv):
                return False
            worker.ctx.stats.pop("script_user", None)     # its script does not run
        worker.opstats.rejected(spec)
        worker.opstats.error(OOM_REPLY)
        return True

    def tick(self) -> None:
        """The hz timer: estimates up to date; eviction goes on where a command's stopped;
        about once a second, idle unpacked values are packed again."""
        for db in self.dbs:
            db.compact_access()
        if keyspace.now_ms - self.packed_at >= 1000:
            self.packed_at = keyspace.now_ms
            for db in self.dbs:
                db.pack_idle(IDLE_S)
        used = self.used()
        if self.limit and used > self.limit and self.worker.held_by is None:
            self.perform()
        elif not self.limit or used <= self.limit:
            self.note_under()

    def note_under(self) -> None:
        if self.oom:
            self.set_oom(False)
        if self.exceeded_since:
            self.exceeded_total += time.monotonic() - self.exceeded_since
            self.exceeded_since = 0.0

    # -- performEvictions --------------------------------------------------------------------
    def perform(self) -> int:
        """Evict until under the share, out of keys, or out of time: OK, FAIL or RUNNING."""
        for db in self.dbs:
            if db.resized:
                db.settle()
        if not self.over():
            self.set_oom(False)
            return OK
        if not self.exceeded_since:
            self.exceeded_since = time.monotonic()
        if self.policy == "noeviction":
            self.set_oom(True)
            return FAIL
        start = time.perf_counter()
        freed = 0
        self.pending = False
        while self.over():
            picked = self.pick()
            if picked is None:
                self.set_oom(True)
                return FAIL
            db, key, slot = picked
            self.evict(db, key, slot)
            freed += 1
            if freed % 16 == 0 and time.perf_counter() - start > self.time_limit:
                self.pending = True      # evictionTimeProc: the worker's loop goes on with it
                self.set_oom(False)
                return RUNNING
        self.note_under()
        return OK

    def evict(self, db: Db, key: bytes, slot: int) -> None:
        db.delete(key, slot)
        self.evicted += 1
        from .notify import key_evicted
        key_evicted(db, key)                   # the "evicted" keyspace notification
        if keyspace.on_expire is not None:     # the AOF logs the DEL, as propagateDeletion
            keyspace.on_expire(db, key)

    def pick(self) -> tuple[Db, bytes, int] | None:
        if self.policy.endswith("random"):
            return self.pick_random()
        for _ in range(64):      # a pool of stale candidates is refilled, a few times at most
            total = 0
            for db in self.dbs:
                count = db.size if self.allkeys else db.volatile
                if not count:
                    continue
                total += count
                sampled = 0
                for _ in range(len(self.source(db))):
                    sampled += self.populate(db)
                    if sampled >= self.samples or count < self.samples * 10:
                        break
            if not total:
                return None
            while self.pool:
                _, index, slot, key = self.pool.pop()
                db = self.dbs[index]
                d = self.source(db).get(slot)
                if d is not None and key in d:
                    return db, key, slot
        return None

    def pick_random(self) -> tuple[Db, bytes, int] | None:
        n = len(self.dbs)
        for _ in range(n):
            self.next_db = (self.next_db + 1) % n
            db = self.dbs[self.next_db]
            source = self.source(db)
            if not source:
                continue
            slot, d = self.random_slot(db, source)
            if d:
                return db, next(islice(d, random.randrange(len(d)), None)), slot
        return None

    def source(self, db: Db) -> dict[int, dict[bytes, Any]]:
        return db.data if self.allkeys else db.expires

    def random_slot(self, db: Db, source: dict[int, dict]) -> tuple[int, dict | None]:
        """A random non-empty slot of the source (the slot list is cached until it goes stale)."""
        cache_key = (db.index, self.allkeys)
        slots = self.slot_lists.get(cache_key)
        for _ in range(4):
            if not slots:
                slots = self.slot_lists[cache_key] = list(source)
                if not slots:
                    return 0, None
            slot = slots[random.randrange(len(slots))]
            d = source.get(slot)
            if d:
                return slot, d
            slots = None           # emptied since: take the list again
        return 0, None

    def populate(self, db: Db) -> int:
        """evictionPoolPopulate: sample keys of one slot into the pool by their score."""
        source = self.source(db)
        slot, d = self.random_slot(db, source)
        if not d:
            return 0
        n = len(d)
        start = random.randrange(n - self.samples + 1) if n > self.samples else 0
        keys = list(islice(d, start, start + self.samples))
        clock_of = db.access_clock
        policy = self.policy
        pool = self.pool
        for key in keys:
            if policy == "volatile-ttl":
                score = NEVER - d[key]
            elif db.lfu:
                packed = clock_of(key, slot)
                score = 255 - (keyspace.LFU_INIT_VAL if packed is None else keyspace.lfu_counter(packed))
            else:
                clock = clock_of(key, slot)
                score = idle_ms(keyspace.lru_clock if clock is None else clock)
            if len(pool) >= EVPOOL_SIZE and score <= pool[0][0]:
                continue
            bisect.insort(pool, (score, db.index, slot, key))
            if len(pool) > EVPOOL_SIZE:
                del pool[0]
        return len(keys)

    # -- reports -----------------------------------------------------------------------------
    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: evicted_keys and the exceeded times start again."""
        self.evicted = 0
        self.exceeded_total = 0.0
        if self.exceeded_since:
            self.exceeded_since = time.monotonic()
        self.peak = self.used()

    def exceeded_time_ms(self) -> tuple[int, int]:
        """(total_eviction_exceeded_time, current_eviction_exceeded_time) in ms."""
        current = time.monotonic() - self.exceeded_since if self.exceeded_since else 0.0
        return int((self.exceeded_total + current) * 1000), int(current * 1000)


def idle_ms(clock: int) -> int:
    """estimateObjectIdleTime: ms since the access clock (which wraps every 194 days)."""
    now = keyspace.lru_clock
    if now >= clock:
        return (now - clock) * 1000
    return (now + keyspace.LRU_CLOCK_MAX - clock) * 1000


def config_changed(worker) -> None:
    """CONFIG SET reached this worker: the share and policy may have changed; a lower limit
    evicts now (Valkey starts its eviction timer)."""
    memory = worker.memory
    old = memory.limit
    memory.configure()
    if memory.limit and (not old or memory.limit < old) and memory.used() > memory.limit:
        log.log("warning", f"WARNING: the new maxmemory value set via CONFIG SET ({memory.maxmemory}) is smaller "
                           f"than the current memory usage: the server will evict keys or refuse writes")
        if worker.held_by is None:
            memory.perform()
