"""Active expiry: Valkey's adaptive cycle, walking each db's slots with a cursor.

Valkey scans the expires table in buckets of ~20 keys and keeps going while more than 10%
of what it sampled had expired, within a CPU budget per cycle. Here the unit is one slot's
expires dict (small: a slot holds 1/16384 of the keys), with the same stop rules.
"""
from __future__ import annotations

import time

from . import keyspace
from .keyspace import Db

SAMPLES_PER_LOOP = 20
ACCEPTABLE_STALE = 0.10


class ActiveExpire:
    def __init__(self, dbs: list[Db]) -> None:
        self.dbs = dbs
        self.cursors = [0] * len(dbs)
        self.timed_out = False

    def cycle(self, budget: float) -> int:
        """Expire keys for at most `budget` seconds; returns how many were deleted."""
        deadline = time.monotonic() + budget
        keyspace.refresh_clock()
        total = 0
        self.timed_out = False
        for db in self.dbs:
            if db.volatile:
                total += self._cycle_db(db, deadline)
            if time.monotonic() >= deadline:
                self.timed_out = True
                break
        return total

    def _cycle_db(self, db: Db, deadline: float) -> int:
        slots = sorted(db.expires)
        if not slots:
            return 0
        start = self.cursors[db.index]
        # Resume after the slot where the previous cycle stopped.
        first = next((i for i, s in enumerate(slots) if s >= start), 0)
        order = slots[first:] + slots[:first]
        deleted = sampled = expired = 0
        for n, slot in enumerate(order):
            s, e = db.expire_slot(slot)
            sampled += s
            expired += e
            deleted += e
            self.cursors[db.index] = slot + 1
            if sampled >= SAMPLES_PER_LOOP:
                if expired <= sampled * ACCEPTABLE_STALE:
                    break
                sampled = expired = 0
            if n % 16 == 15 and time.monotonic() >= deadline:
                break
        return deleted
