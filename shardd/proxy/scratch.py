"""The generic cross-shard fallback: any worker command whose keys span workers.

Under the coordinator's hold, the keys' values are fetched from their workers into a scratch
Db, the command's own worker handler runs on it here in the proxy, and the keys it wrote go
back to their workers, all in the same hold. So SMOVE, SINTERSTORE, ZUNIONSTORE, LMOVE, BITOP,
PFMERGE, LMPOP … need no cross-shard code of their own, and behave exactly as on one worker.

Keys a command finds only while running (SORT's BY/GET patterns) are fetched when a run asks
for them, and the command runs again on the fuller scratch Db before anything is written.
"""
from __future__ import annotations

import pickle
from typing import Any

from .. import commands, errors
from ..commands import BLOCK, SINGLE, CommandSpec
from ..slots import keyslot
from ..worker import keyspace
from ..worker import notify
from ..worker.blocking import NOWAIT
from ..worker.coordination import DELETED
from ..worker.context import Ctx
from ..worker.keyspace import Db
from .fanout import PLANNERS, Parts, Steps, first_reply, planned, shard_of
from .replies import decode_or_raise

MAX_RUNS = 8     # runs that may each discover new keys before the command gives up


class ScratchDb(Db):
    """A Db of values fetched from other shards that records which keys a command wrote."""

    __slots__ = ("fetched", "missing", "written")

    def __init__(self, index: int, payloads: dict[bytes, bytes | None]) -> None:
        super().__init__(index)
        self.fetched = payloads
        self.missing: set[bytes] = set()
        self.written: set[bytes] = set()
        self.watched = {b"": set()}     # non-empty, so every write calls touch()
        for key, payload in payloads.items():
            if payload is not None:
                value, when = pickle.loads(payload)
                self.store_expiring(key, keyslot(key), value, when)
        self.written.clear()

    def unknown(self, key: bytes) -> bool:
        """A key not fetched yet: noted, so the command runs again once it is."""
        if key in self.fetched:
            return False
        self.missing.add(key)
        return True

    # Every way a command reads a key by name: lookups, reads that leave the access clock
    # alone (EXISTS, TYPE, TTL, OBJECT), and the expiry and clock read beside a value.
    def lookup(self, key: bytes, slot: int) -> Any:
        return None if self.unknown(key) else super().lookup(key, slot)

    def peek(self, key: bytes, slot: int) -> Any:
        return None if self.unknown(key) else super().peek(key, slot)

    def get_expire(self, key: bytes, slot: int) -> int | None:
        return None if self.unknown(key) else super().get_expire(key, slot)

    def access_clock(self, key: bytes, slot: int) -> int | None:
        return None if self.unknown(key) else super().access_clock(key, slot)

    def touch(self, key: bytes) -> None:
        self.written.add(key)

    def touch_all(self, replaced_with: "Db | None" = None) -> None:
        raise errors.CommandError(errors.CROSS_SHARD)

    def entry(self, key: bytes) -> tuple[Any, int | None] | None:
        """(value, absolute expiry) of a key as the command left it, None if gone."""
        slot = keyslot(key)
        value = self.data.get(slot, {}).get(key)
        return None if value is None else (value, Db.get_expire(self, key, slot))   # fetched or not


async def fetch(hold, conn, keys: list[bytes], payloads: dict[bytes, bytes | None]) -> None:
    """Add the pickled (value, expiry) of each key (None when missing) to payloads."""
    keys = [k for k in dict.fromkeys(keys) if k not in payloads]
    if not keys:
        return
    parts = []
    for key in keys:
        w, slot = shard_of(conn, key)
        parts.append((w, [b"__dump", key], slot))
    for key, reply in zip(keys, await hold.run(parts)):
        payloads[key] = decode_or_raise(reply)


async def write_back(hold, conn, db: ScratchDb) -> None:
    parts = []
    for key in db.written:
        w, slot = shard_of(conn, key)
        entry = db.entry(key)
        if entry is None:
            parts.append((w, [b"__restore", key, DELETED], slot))
        else:
            parts.append((w, [b"__restore", key, pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)], slot))
    if parts:
        for reply in await hold.run(parts):
            decode_or_raise(reply)


def scratch_ctx(conn, db: ScratchDb, first_key: bytes | None, block_mode: int) -> Ctx:
    ctx = Ctx([db], conn.proxy.config.values, shard=-1)
    ctx.proto = conn.proto
    ctx.client_id = conn.id
    ctx.slot = keyslot(first_key) if first_key is not None else 0
    ctx.block_mode = block_mode
    return ctx


async def attempt(hold, conn, spec: CommandSpec, argv: list[bytes], keys: list[bytes],
                  block_mode: int = NOWAIT) -> bytes | None:
    """Run a worker handler on fetched copies of its keys (and of any it discovers), write back
    what it changed; its reply (None: a blocking command in SERVE mode found nothing)."""
    payloads: dict[bytes, bytes | None] = {}
    await fetch(hold, conn, keys, payloads)
    for _ in range(MAX_RUNS):
        keyspace.refresh_clock()
        db = ScratchDb(conn.db, payloads)
        events = notify.emitter_for(conn.proxy)    # keyspace notifications, if on
        try:
            ctx = scratch_ctx(conn, db, keys[0] if keys else None, block_mode)
            reply = spec.worker_handler(ctx, argv) if events is None else notify.observe(events, ctx, spec, argv)
        except errors.CommandError:
            if not db.missing:
                raise
        if db.missing:
            await fetch(hold, conn, list(db.missing), payloads)
            continue
        await write_back(hold, conn, db)
        if events is not None and events.pending:
            conn.proxy.pubsub.raise_events(events.pending)
        return reply
    raise errors.CommandError("ERR command reads too many keys of other shards")


def run_on_scratch(conn, spec: CommandSpec, argv: list[bytes], keys: list[bytes]) -> Steps:
    """The fallback's steps: the command's reply, as if its keys shared one worker."""
    async def steps(hold) -> bytes:
        return await attempt(hold, conn, spec, argv, keys)
    return steps


def scratch_planner(conn, argv: list[bytes]) -> Steps:
    spec = commands.lookup_argv(argv)
    return run_on_scratch(conn, spec, argv, spec.keys(argv))


def may_span_workers(spec: CommandSpec) -> bool:
    return (spec.route in (SINGLE, BLOCK) and spec.worker_handler is not None and spec.cross_shard is None
            and spec.name not in PLANNERS and spec.has_keys()
            and ("movablekeys" in spec.flags or spec.last_key != spec.first_key))


def install() -> None:
    """Give every worker command that may name keys of several workers the fallback."""
    names = [spec.name for spec in commands.COMMANDS.values() if may_span_workers(spec)]
    names += [sub.name for spec in commands.COMMANDS.values() for sub in spec.subcommands.values()
              if may_span_workers(sub)]
    planned(*names, cross_shard=True)(scratch_planner)


# -- SORT reads keys its arguments do not name ----------------------------------------------

def pattern_reads_keys(pattern: bytes) -> bool:
    """A BY/GET pattern that names other keys ('#' is the element, no '*' reads nothing)."""
    return b"*" in pattern and pattern != b"#"


def sort_planner(conn, argv: list[bytes]):
    """SORT/SORT_RO: on the key's worker, unless BY/GET patterns read keys (which may live on
    any worker) or STORE names a key of another worker: then on fetched copies of all of them."""
    spec = commands.lookup_argv(argv)
    keys = spec.keys(argv)
    workers = {shard_of(conn, k)[0] for k in keys}
    reads_more = len(conn.proxy.links) > 1 and any(
        argv[i].lower() in (b"by", b"get") and pattern_reads_keys(argv[i + 1])
        for i in range(2, len(argv) - 1))
    if len(workers) > 1 or reads_more:
        return run_on_scratch(conn, spec, argv, keys)
    w, slot = shard_of(conn, keys[0])
    return Parts([(w, argv, slot)], first_reply)


planned("sort", "sort_ro")(sort_planner)
