"""A worker's keyspace: per db, one dict per non-empty slot (Valkey 8's kvstore idea).

Values: bytes for strings; other types are Python containers. Expiry times are absolute
unix milliseconds, kept per slot beside the data so the active cycle can walk slot by slot.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from ..slots import keyslot

# The worker refreshes this once per batch: Valkey too evaluates expiry against one cached
# clock per command/event, and reading the clock per key would be a syscall per lookup.
now_ms: int = int(time.time() * 1000)
# Called as on_expire(db, key) after an expired key is removed (the AOF logs it as DEL).
on_expire: Callable[["Db", bytes], None] | None = None


def refresh_clock() -> int:
    global now_ms
    now_ms = int(time.time() * 1000)
    return now_ms


class Db:
    __slots__ = ("index", "data", "expires", "size", "volatile", "hits", "misses", "expired",
                 "watched", "dirty", "blocked", "ready", "changes")

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

    # -- reads -------------------------------------------------------------------------
    def lookup(self, key: bytes, slot: int) -> Any:
        """The live value of key, or None (an expired key is deleted on the way)."""
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
        return value

    def lookup_read(self, key: bytes, slot: int) -> Any:
        """lookup() that counts keyspace hits and misses (read commands)."""
        value = self.lookup(key, slot)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def exists(self, key: bytes, slot: int) -> bool:
        return self.lookup(key, slot) is not None

    def get_expire(self, key: bytes, slot: int) -> int | None:
        e = self.expires.get(slot)
        return None if e is None else e.get(key)

    # -- writes ------------------------------------------------------------------------
    def store(self, key: bytes, slot: int, value: Any) -> None:
        """Set key to value and drop any TTL (SET semantics)."""
        d = self.data.get(slot)
        if d is None:
            d = self.data[slot] = {}
        if key not in d:
            self.size += 1
        elif self.volatile:
            self._drop_expire(key, slot)
        d[key] = value
        self.changes += 1
        if self.watched:
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
        d = self.data.get(slot)
        if d is None:
            d = self.data[slot] = {}
        if key not in d:
            self.size += 1
        d[key] = value
        self.changes += 1
        if self.watched:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))

    def delete(self, key: bytes, slot: int) -> bool:
        d = self.data.get(slot)
        if d is None or key not in d:
            return False
        del d[key]
        if not d:
            del self.data[slot]
        self.size -= 1
        if self.volatile:
            self._drop_expire(key, slot)
        self.changes += 1
        if self.watched:
            self.touch(key)
        return True

    def set_expire(self, key: bytes, slot: int, when_ms: int) -> None:
        e = self.expires.get(slot)
        if e is None:
            e = self.expires[slot] = {}
        if key not in e:
            self.volatile += 1
        e[key] = when_ms
        self.changes += 1
        if self.watched:
            self.touch(key)

    def persist(self, key: bytes, slot: int) -> bool:
        removed = self._drop_expire(key, slot)
        self.changes += removed
        if removed and self.watched:
            self.touch(key)
        return removed

    def modified(self, key: bytes) -> None:
        """A container value was changed in place (HSET on an existing hash, LPUSH …): what a
        write means to WATCH and to clients blocked on the key (signalModifiedKey)."""
        self.changes += 1
        if self.watched:
            self.touch(key)
        if self.blocked and key in self.blocked:
            self.ready.append((self, key))

    def touch(self, key: bytes) -> None:
        """A write to key: the clients WATCHing it will see their EXEC fail (signalModifiedKey)."""
        clients = self.watched.get(key)
        if clients:
            self.dirty.update(clients)

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
        removed = self.size
        self.changes += removed
        self.data = {}
        self.expires = {}
        self.size = 0
        self.volatile = 0
        return removed

    def _drop_expire(self, key: bytes, slot: int) -> bool:
        e = self.expires.get(slot)
        if e is None or key not in e:
            return False
        del e[key]
        if not e:
            del self.expires[slot]
        self.volatile -= 1
        return True

    def _expire(self, key: bytes, slot: int) -> None:
        self.delete(key, slot)
        self.expired += 1
        if on_expire is not None:
            on_expire(self, key)

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
