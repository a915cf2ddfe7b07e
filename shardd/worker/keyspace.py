"""A worker's keyspace: per db, one dict per non-empty slot (Valkey 8's kvstore idea).

Values: bytes for strings; other types are Python containers. Expiry times are absolute
unix milliseconds, kept per slot beside the data so the active cycle can walk slot by slot.

Small containers (Valkey's listpack/intset range) rest packed: one bytes-subclass object per
value (packed.py), registered by their type's module in PACKERS/UNPACKERS. lookup() and peek()
hand out the container, unpacked in place and noted in `resized`; settle() packs it again. So a
packed value is never seen by a command; code reading `data` directly uses unpacked().
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterator

from ..errors import WRONGTYPE, CommandError
from ..slots import keyslot
from .memsize import BYTES_OVERHEAD, EXPIRE_OVERHEAD, KEY_OVERHEAD, value_size
from .packed import pack as pack_value, unpack as unpack_value

# The worker refreshes this once per batch: Valkey too evaluates expiry against one cached
# clock per command/event, and reading the clock per key would be a syscall per lookup.
now_ms: int = int(time.time() * 1000)
# Called as on_expire(db, key) after an expired key is removed (the AOF logs it as DEL).
on_expire: Callable[["Db", bytes], None] | None = None
# Called as on_write(db, key) for each key a write changes, and (db, None) when a db is
# flushed: client tracking's invalidations (worker/tracking.py); None while nobody tracks.
on_write: Callable[["Db", bytes | None], None] | None = None
# Called as on_expired_event(db, key) after an expired key is removed: keyspace notifications.
on_expired_event: Callable[["Db", bytes], None] | None = None


# What every Db of this process holds, in bytes, by its own account (memsize.py): the
# worker's used_memory beside its startup share, what maxmemory is held against.
used_total = 0
# Access clocks (Valkey's robj->lru), read with now_ms: the LRU clock in seconds (24 bits), or
# for an LFU policy (Db.lfu) the minutes (16 bits) an LFU value keeps beside its 8-bit counter.
LRU_CLOCK_MAX = (1 << 24) - 1
LFU_INIT_VAL = 5
lru_clock: int = (now_ms // 1000) & LRU_CLOCK_MAX
lfu_minutes: int = (now_ms // 60000) & 0xFFFF
lfu_log_factor = 10
lfu_decay_time = 1
NEW_STRING_KEY = KEY_OVERHEAD + BYTES_OVERHEAD      # a new key's bytes beside its length and its value's

# container class → fn(value): (packed class, its elements), or None while the value must
# stay a container; packed class → fn(elements): a new container. Filled by t_hash, t_set, t_zset.
PACKERS: dict[type, Callable[[Any], tuple[type, Any] | None]] = {}
UNPACKERS: dict[type, Callable[[Any], Any]] = {}


def unpacked(value: Any) -> Any:
    """The value as commands see it (for code reading `Db.data` directly: RDB, AOF)."""
    unpack = UNPACKERS.get(value.__class__)
    return value if unpack is None else unpack(unpack_value(value)[1])


def refresh_clock() -> int:
    global now_ms, lru_clock, lfu_minutes
    now_ms = int(time.time() * 1000)
    lru_clock = (now_ms // 1000) & LRU_CLOCK_MAX
    lfu_minutes = (now_ms // 60000) & 0xFFFF
    return now_ms


def lfu_counter(packed: int) -> int:
    """LFUDecrAndReturn: the counter, less one per lfu-decay-time minutes since the access."""
    counter = packed & 255
    if lfu_decay_time:
        ldt = packed >> 8
        elapsed = lfu_minutes - ldt if lfu_minutes >= ldt else 65535 - ldt + lfu_minutes
        counter = max(counter - elapsed // lfu_decay_time, 0)
    return counter


def lfu_access(packed: int | None) -> int:
    """updateLFU: decay, then a logarithmic increment (LFULogIncr), stamped with now."""
    counter = LFU_INIT_VAL if packed is None else lfu_counter(packed)
    if counter < 255:
        base = counter - LFU_INIT_VAL
        if base <= 0 or random.random() < 1.0 / (base * lfu_log_factor + 1):
            counter += 1
    return (lfu_minutes << 8) | counter


class Db:
    __slots__ = ("index", "data", "expires", "size", "volatile", "hits", "misses", "expired",
                 "watched", "dirty", "blocked", "ready", "changes", "used", "access", "sized", "resized", "warm",
                 "lfu")
    # What a db holds, as opposed to who watches or waits on it: what SWAPDB exchanges.
    CONTENT = ("data", "expires", "size", "volatile", "used", "access", "sized", "resized", "warm")

    def __init__(self, index: int, dirty: set[int] | None = None,
                 ready: list[tuple["Db", bytes]] | None = None) -> None:
        self.index = index
        self.watched: dict[bytes, set[int]] = {}   # key → ids of the clients WATCHing it
        self.dirty = dirty if dirty is not None else set()
        self.blocked: dict[bytes, Any] = {}        # key → FIFO of clients blocked on it (blocking.py)
        self.ready = ready if ready is not None else []   # (db, key) written while someone waits
        self.data: dict[int, dict[bytes, Any]] = {}
        self.expires: dict[int, dict[bytes, int]] = {}
        self.size = 0
        self.volatile = 0
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self.changes = 0          # writes since start (Valkey's dirty counter, for save points)
        # Memory accounting (memsize.py): `used` bytes in this db; a container's estimate is
        # kept in `sized` and redone for the keys in `resized` (changed in place) by settle().
        self.used = 0
        self.sized: dict[bytes, int] = {}
        self.resized: set[bytes] = set()
        # Packed values a command unpacked: key → the LRU clock then. They stay containers
        # while in use and are packed again once idle (pack_idle), so a key read over and
        # over is not unpacked and packed each time.
        self.warm: dict[bytes, int] = {}
        # key → last access: the LRU clock, or with `lfu` (an LFU maxmemory-policy) the packed
        # minutes and counter. Every lookup sets it; OBJECT IDLETIME/FREQ and eviction read it.
        self.access: dict[bytes, int] = {}
        self.lfu = False

    # -- reads -------------------------------------------------------------------------
    def lookup(self, key: bytes, slot: int) -> Any:
        """The live value of key, or None (an expired key is deleted on the way)."""
        d = self.data.get(slot)
        if d is None:
            return None
        value = d.get(key)
        if value is None:
            return None
        if self.volatile:
            e = self.expires.get(slot)
            if e is not None:
                when = e.get(key)
                if when is not None and when <= now_ms:
                    self._expire(key, slot)
                    return None
        cls = value.__class__
        if cls is not bytes and cls in UNPACKERS:
            value = self._unpack(d, key, value)
        if self.lfu:
            self.access[key] = lfu_access(self.access.get(key))
        else:
            self.access[key] = lru_clock
        return value

    def peek(self, key: bytes, slot: int) -> Any:
        """lookup() that leaves the access clock alone (Valkey's LOOKUP_NOTOUCH)."""
        d = self.data.get(slot)
        if d is None:
            return None
        value = d.get(key)
        if value is not None and self.volatile:
            e = self.expires.get(slot)
            if e is not None:
                when = e.get(key)
                if when is not None and when <= now_ms:
                    self._expire(key, slot)
                    return None
        if value is not None and value.__class__ is not bytes and value.__class__ in UNPACKERS:
            value = self._unpack(d, key, value)
        return value

    def _unpack(self, d: dict[bytes, Any], key: bytes, packed: Any) -> Any:
        """Replace a packed value by its container, to be packed again by pack_idle() once
        idle; its access clock goes back to `access`."""
        clock, elements = unpack_value(packed)
        value = d[key] = UNPACKERS[packed.__class__](elements)
        if clock is not None:
            self.access[key] = clock
        self.sized[key] = len(packed) + BYTES_OVERHEAD
        self.resized.add(key)
        self.warm[key] = lru_clock
        return value

    def access_clock(self, key: bytes, slot: int) -> int | None:
        """The key's access clock (None: none recorded), in `access` or in its packed value."""
        clock = self.access.get(key)
        if clock is None:
            d = self.data.get(slot)
            value = d.get(key) if d is not None else None
            if value is not None and value.__class__ in UNPACKERS:
                clock = unpack_value(value)[0]
        return clock

    def _held(self, key: bytes, old: Any) -> int:
        """The bytes counted for a container value being replaced or deleted."""
        if old.__class__ in UNPACKERS:
            return len(old) + BYTES_OVERHEAD
        return self.sized.pop(key, 0)

    def peek_read(self, key: bytes, slot: int) -> Any:
        """peek() that counts keyspace hits and misses (TYPE, TTL, EXISTS, OBJECT)."""
        value = self.peek(key, slot)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def lookup_read(self, key: bytes, slot: int) -> Any:
        """lookup() that counts keyspace hits and misses (read commands)."""
        value = self.lookup(key, slot)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def lookup_as(self, key: bytes, slot: int, kind: type, read: bool = False) -> Any:
        """The value of key if it is a `kind`, None if missing, WRONGTYPE for another type
        (read: count a keyspace hit or miss, as read commands do)."""
        value = self.lookup_read(key, slot) if read else self.lookup(key, slot)
        if value is not None and type(value) is not kind:
            raise CommandError(WRONGTYPE)
        return value

    def exists(self, key: bytes, slot: int) -> bool:
        return self.lookup(key, slot) is not None

    def get_expire(self, key: bytes, slot: int) -> int | None:
        e = self.expires.get(slot)
        return None if e is None else e.get(key)

    # -- writes ------------------------------------------------------------------------
    def store(self, key: bytes, slot: int, value: Any) -> None:
        """Set key to value and drop any TTL (SET semantics)."""
        global used_total
        d = self.data.get(slot)
        if d is None:
            d = self.data[slot] = {}
        old = d.get(key)
        d[key] = value
        # grown: the change of this db's bytes, counting any value as a string until below
        if old is None:
            self.size += 1
            grown = len(key) + NEW_STRING_KEY
        else:
            if self.volatile:
                self._drop_expire(key, slot)
            grown = -len(old) if old.__class__ is bytes else BYTES_OVERHEAD - self._held(key, old)
        if value.__class__ is bytes:
            grown += len(value)
        elif value.__class__ in UNPACKERS:      # packed already (a value loaded or moved)
            grown += len(value)
        else:                        # a container: estimated by settle(), it may still be filled
            grown -= BYTES_OVERHEAD
            self.sized[key] = 0
            self.resized.add(key)
        if not self.lfu:
            self.access[key] = lru_clock
        elif old is None:
            self.access[key] = (lfu_minutes << 8) | LFU_INIT_VAL
        else:                        # an overwrite: Valkey's lookupKeyWrite counts, dbSetValue keeps it
            self.access[key] = lfu_access(self.access.get(key) if old.__class__ not in UNPACKERS
                                          else unpack_value(old)[0])
        self.used += grown
        used_total += grown
        self.changes += 1
        if self.watched or on_write is not None:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))

    def store_expiring(self, key: bytes, slot: int, value: Any, when_ms: int | None) -> None:
        """store() with an absolute expiry (None: no TTL): a value moved or copied with its TTL."""
        self.store(key, slot, value)
        if when_ms is not None:
            self.set_expire(key, slot, when_ms)

    def replace(self, key: bytes, slot: int, value: Any) -> None:
        """Set key to value keeping its TTL (APPEND, INCR, SETRANGE, SET KEEPTTL)."""
        global used_total
        d = self.data.get(slot)
        if d is None:
            d = self.data[slot] = {}
        old = d.get(key)
        d[key] = value
        if old is None:
            self.size += 1
            grown = len(key) + NEW_STRING_KEY
            self.access[key] = (lfu_minutes << 8) | LFU_INIT_VAL if self.lfu else lru_clock
        else:
            grown = -len(old) if old.__class__ is bytes else BYTES_OVERHEAD - self._held(key, old)
        if value.__class__ is bytes or value.__class__ in UNPACKERS:
            grown += len(value)
        else:
            grown -= BYTES_OVERHEAD
            self.sized[key] = 0
            self.resized.add(key)
        self.used += grown
        used_total += grown
        self.changes += 1
        if self.watched or on_write is not None:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))

    def delete(self, key: bytes, slot: int) -> bool:
        global used_total
        d = self.data.get(slot)
        if d is None:
            return False
        old = d.pop(key, None)
        if old is None:
            return False
        if not d:
            del self.data[slot]
        self.size -= 1
        freed = len(key) + KEY_OVERHEAD + (len(old) + BYTES_OVERHEAD if old.__class__ is bytes
                                           else self._held(key, old))
        self.used -= freed
        used_total -= freed
        # The key's access clock stays behind (dropping it costs a dict write per delete):
        # store() sets it again, settle() drops what is left once it adds up.
        if self.volatile:
            self._drop_expire(key, slot)
        self.changes += 1
        if self.watched or on_write is not None:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))      # a deleted stream's readers learn it now
        return True

    def set_expire(self, key: bytes, slot: int, when_ms: int) -> None:
        global used_total
        e = self.expires.get(slot)
        if e is None:
            e = self.expires[slot] = {}
        if key not in e:
            self.volatile += 1
            self.used += EXPIRE_OVERHEAD
            used_total += EXPIRE_OVERHEAD
        e[key] = when_ms
        self.changes += 1
        if self.watched or on_write is not None:
            self.touch(key)

    def persist(self, key: bytes, slot: int) -> bool:
        removed = self._drop_expire(key, slot)
        self.changes += removed
        if removed and (self.watched or on_write is not None):
            self.touch(key)
        return removed

    def modified(self, key: bytes) -> None:
        """A container value was changed in place (HSET on an existing hash, LPUSH …): what a
        write means to WATCH and to clients blocked on the key (signalModifiedKey)."""
        self.changes += 1
        self.resized.add(key)
        if self.watched or on_write is not None:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))

    def touch(self, key: bytes) -> None:
        """A write to key: the clients WATCHing it will see their EXEC fail (signalModifiedKey)."""
        clients = self.watched.get(key)
        if clients:
            self.dirty.update(clients)
        if on_write is not None:
            on_write(self, key)

    def touch_all(self, replaced_with: "Db | None" = None) -> None:
        """FLUSHDB/FLUSHALL/SWAPDB: the WATCHes of keys that exist here (or, for SWAPDB, in
        the db taking this one's place) fire, as in Valkey's touchAllWatchedKeysInDb."""
        for key, clients in self.watched.items():
            slot = keyslot(key)
            if self.exists(key, slot) or (replaced_with is not None and replaced_with.exists(key, slot)):
                self.dirty.update(clients)

    def flush(self) -> int:
        if self.watched:
            self.touch_all()
        if on_write is not None:
            on_write(self, None)
        self.ready.extend((self, key) for key in self.blocked)
        global used_total
        removed = self.size
        self.changes += removed
        self.data = {}
        self.expires = {}
        self.size = 0
        self.volatile = 0
        used_total -= self.used
        self.used = 0
        self.access = {}
        self.sized = {}
        self.resized = set()
        self.warm = {}
        return removed

    def settle(self) -> int:
        """Estimate again the containers changed in place or unpacked since the last call
        (their keys are in `resized`), packing the small new ones (those unpacked by a command
        wait for pack_idle); the bytes this added to `used`."""
        global used_total
        grown = 0
        data, sized, warm = self.data, self.sized, self.warm
        for key in self.resized:
            d = data.get(keyslot(key))
            value = d.get(key) if d is not None else None
            if value is None or value.__class__ is bytes:
                continue
            if key not in warm and value.__class__ in PACKERS:
                packed = self._pack(d, key, value)
                if packed is not None:
                    grown += packed
                    continue
            elif value.__class__ in UNPACKERS:
                continue
            size = value_size(value)
            grown += size - sized.get(key, 0)
            sized[key] = size
        self.resized.clear()
        self.used += grown
        used_total += grown
        return grown

    def _pack(self, d: dict[bytes, Any], key: bytes, value: Any) -> int | None:
        """Pack a small container in place: the bytes this added to `used` (None: too big to
        pack, it stays a container)."""
        parts = PACKERS[value.__class__](value)
        if parts is None:
            return None
        packed = d[key] = pack_value(parts[0], self.access.pop(key, None), parts[1])
        return len(packed) + BYTES_OVERHEAD - self.sized.pop(key, 0)

    def pack_idle(self, idle_s: int) -> int:
        """Pack again the values commands unpacked that nobody used for `idle_s` seconds (by
        the LRU clock; under an LFU policy by when they were unpacked); the bytes this added
        to `used`. Called about once a second."""
        global used_total
        if self.resized:
            self.settle()
        grown = 0
        data, access, lfu = self.data, self.access, self.lfu
        for key, since in list(self.warm.items()):
            last = since if lfu else access.get(key, since)
            if (lru_clock - last) & LRU_CLOCK_MAX < idle_s:
                continue
            del self.warm[key]
            d = data.get(keyslot(key))
            value = d.get(key) if d is not None else None
            if value is not None and value.__class__ in PACKERS:
                grown += self._pack(d, key, value) or 0
        self.used += grown
        used_total += grown
        return grown

    def compact_access(self) -> None:
        """Drop the access clocks deleted keys left behind, once they outnumber the keys."""
        access = self.access
        if len(access) > 2 * self.size + 1024:
            self.access = {k: access[k] for d in self.data.values() for k in d if k in access}

    def _drop_expire(self, key: bytes, slot: int) -> bool:
        global used_total
        e = self.expires.get(slot)
        if e is None or key not in e:
            return False
        del e[key]
        if not e:
            del self.expires[slot]
        self.volatile -= 1
        self.used -= EXPIRE_OVERHEAD
        used_total -= EXPIRE_OVERHEAD
        return True

    def _expire(self, key: bytes, slot: int) -> None:
        self.delete(key, slot)
        self.expired += 1
        if on_expire is not None:
            on_expire(self, key)
        if on_expired_event is not None:
            on_expired_event(self, key)

    # -- iteration ---------------------------------------------------------------------
    def slot_keys(self, slot: int) -> list[bytes]:
        """The live keys of one slot (expired ones are skipped, not deleted)."""
        d = self.data.get(slot)
        if not d:
            return []
        e = self.expires.get(slot)
        if not e:
            return list(d)
        now = now_ms
        return [k for k in d if e.get(k, now + 1) > now]

    def iter_keys(self) -> Iterator[tuple[bytes, int]]:
        for slot in sorted(self.data):
            for key in self.slot_keys(slot):
                yield key, slot

    def expire_slot(self, slot: int) -> tuple[int, int]:
        """Delete the expired keys of one slot; returns (sampled, expired)."""
        e = self.expires.get(slot)
        if not e:
            return 0, 0
        now = now_ms
        dead = [k for k, when in e.items() if when <= now]
        for key in dead:
            self._expire(key, slot)
        return len(e) if slot in self.expires else len(dead), len(dead)
