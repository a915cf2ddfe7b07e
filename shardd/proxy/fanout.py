"""Commands whose keys span workers, and commands every worker answers.

Each is planned as per-worker sub-commands and a merge of their replies in argument order
(`Parts`), or, when it needs several rounds (MSETNX, RENAME across workers …), as steps run
under one hold. A plan on one worker is one frame; a plan on several runs under the
coordinator, so it is atomic. MULTI/EXEC plans its queued commands the same way.
"""
from __future__ import annotations

import pickle
import random
from typing import Awaitable, Callable, NamedTuple

from .. import commands, errors, resp
from ..commands import ALL, MULTI, cross_shard_command, proxy_command
from ..slots import keyslot
from ..worker import notify
from ..worker.coordination import DELETED
from ..worker.evict import OOM
from .replies import decode_or_raise


def group_keys(conn, keys: list[bytes], width: int = 1) -> dict[int, list[int]]:
    """Positions of each key (every `width` args) grouped by worker, in order."""
    slotmap = conn.proxy.slotmap
    groups: dict[int, list[int]] = {}
    for pos in range(0, len(keys), width):
        groups.setdefault(slotmap[keyslot(keys[pos])], []).append(pos)
    return groups


def split(conn, argv: list[bytes], width: int = 1) -> tuple[list[tuple[int, list[bytes], int]], list[list[int]]]:
    """Per-worker sub-commands of a multi-key command (key, or key+value when width 2)."""
    args = argv[1:]
    parts, positions = [], []
    for w, poss in group_keys(conn, args, width).items():
        sub = [argv[0]]
        for p in poss:
            sub.extend(args[p:p + width])
        parts.append((w, sub, keyslot(args[poss[0]])))
        positions.append(poss)
    return parts, positions


def sum_integers(parts: list[bytes]) -> bytes:
    # An integer reply is read here directly; anything else (an error) is decoded.
    return resp.integer(sum(int(p[1:-2]) if p[:1] == b":" else decode_or_raise(p) for p in parts))


def all_ok(parts: list[bytes]) -> bytes:
    for p in parts:
        if p != resp.OK:
            decode_or_raise(p)
    return resp.OK




class Parts(NamedTuple):
    """One round: sub-commands (worker, argv, slot) and how their replies make the reply;
    `keys` the keys they touch when the planner knows them (else keys_of finds them)."""
    parts: list[tuple[int, list[bytes], int]]
    merge: Callable[[list[bytes]], bytes]
    keys: frozenset[bytes] | None = None


# Several rounds under one hold: an async function of the Hold giving the reply.
Steps = Callable[..., Awaitable[bytes]]   # (hold: coordinator.Hold) -> reply
Plan = Parts | Steps | bytes
PLANNERS: dict[str, Callable[..., Plan]] = {}


def run_plan(conn, plan: Plan, atomic: bool = True) -> bytes | None:
    """Carry out a plan in this place of the client's replies."""
    if isinstance(plan, bytes):
        return plan
    if isinstance(plan, Parts):
        workers = {w for w, _, _ in plan.parts}
        if not atomic or len(workers) == 1:
            conn.fanout(plan.parts, plan.merge)
            return None
        keys = plan.keys if plan.keys is not None else keys_of(plan.parts)
        coordinator = conn.proxy.coordinator
        if keys and len(workers) == len(plan.parts) > 1 and coordinator.may_skip_hold():
            conn.fanout(plan.parts, coordinator.unheld(plan.merge))
            return None
        conn.coordinate(plan, keys)
        return None
    conn.coordinate(plan)
    return None


def keys_of(parts: list[tuple[int, list[bytes], int]]) -> frozenset[bytes] | None:
    """The keys a one-round plan touches; None when a part has none (it concerns a whole
    worker, like DBSIZE, and must not run beside anything)."""
    keys: set[bytes] = set()
    for _, argv, _ in parts:
        spec = commands.lookup_argv(argv)
        found = spec.keys(argv) if spec is not None else []
        if not found:
            return None
        keys.update(found)
    return frozenset(keys)


def planned(*names: str, route: str = MULTI, cross_shard: bool = False):
    """Register a planner; the command runs its plan (cross_shard: only when a single-route
    command's keys turn out to span workers)."""
    def register(planner: Callable[..., Plan]) -> Callable[..., Plan]:
        def handler(conn, argv: list[bytes]) -> bytes | None:
            if conn.proxy.config.values.get("maxmemory") and refused_for_oom(conn, argv):
                return resp.error(OOM)
            try:
                plan = planner(conn, argv)
            except errors.CommandError as exc:
                # The cross-shard fallback is called outside dispatch's error handling.
                return resp.error(str(exc))
            return run_plan(conn, plan)
        for name in names:
            PLANNERS[name] = planner
            if cross_shard:
                cross_shard_command(name)(handler)
            else:
                proxy_command(name, route=route)(handler)
        return planner
    return register


def refused_for_oom(conn, argv: list[bytes]) -> bool:
    """Valkey refuses a denyoom command before it runs when memory is short: here, when a
    worker holding one of its keys is out of memory. Checked before the split, so the parts
    on workers with room do not run alone."""
    from .transactions import refused_for_oom as refused      # transactions imports this module
    return refused(conn, [argv])


def first_reply(replies: list[bytes]) -> bytes:
    return replies[0]


def shard_of(conn, key: bytes) -> tuple[int, int]:
    slot = keyslot(key)
    return conn.proxy.slotmap[slot], slot


@planned("mget")
def mget(conn, argv: list[bytes]) -> Parts:
    parts, positions = split(conn, argv)
    n = len(argv) - 1
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        values: list[bytes | None] = [None] * n
        for poss, reply in zip(positions, replies):
            for p, v in zip(poss, decode_or_raise(reply)):
                values[p] = v
        return resp.bulk_array(values, proto)
    return Parts(parts, merge, frozenset(argv[1:]))


def split_pairs(conn, argv: list[bytes]) -> list[tuple[int, list[bytes], int]]:
    """Per-worker sub-commands of MSET-like key/value pairs."""
    if len(argv) % 2 == 0:
        raise errors.CommandError(errors.wrong_arity(argv[0].decode("utf-8", "replace").lower()))
    return split(conn, argv, 2)[0]


@planned("mset")
def mset(conn, argv: list[bytes]) -> Parts:
    return Parts(split_pairs(conn, argv), all_ok, frozenset(argv[1::2]))


@planned("msetnx")
def msetnx(conn, argv: list[bytes]) -> Plan:
    parts = split_pairs(conn, argv)
    if len(parts) == 1:
        return Parts(parts, first_reply)
    exists_parts = [(w, [b"EXISTS"] + sub[1::2], slot) for w, sub, slot in parts]
    set_parts = [(w, [b"MSET"] + sub[1:], slot) for w, sub, slot in parts]

    async def steps(hold) -> bytes:
        if sum(decode_or_raise(r) for r in await hold.run(exists_parts)):
            return resp.ZERO
        all_ok(await hold.run(set_parts))
        return resp.ONE
    return steps


@planned("del", "exists", "unlink", "touch")
def count_keys(conn, argv: list[bytes]) -> Parts:
    return Parts(split(conn, argv)[0], sum_integers, frozenset(argv[1:]))


def every_worker(conn, argv: list[bytes]) -> list[tuple[int, list[bytes], int]]:
    return [(w, argv, lo) for w, (lo, _) in enumerate(conn.proxy.info["slot_ranges"])]


def to_all(conn, argv: list[bytes], merge: Callable[[list[bytes]], bytes]) -> None:
    """Every worker answers, with no hold (INFO, CONFIG: no data to keep consistent)."""
    run_plan(conn, Parts(every_worker(conn, argv), merge), atomic=False)


@planned("dbsize", route=ALL)
def dbsize(conn, argv: list[bytes]) -> Parts:
    return Parts(every_worker(conn, argv), sum_integers)


@planned("flushdb", "flushall", route=ALL)
def flush(conn, argv: list[bytes]) -> Parts:
    return Parts(every_worker(conn, argv), all_ok)


@planned("keys", route=ALL)
def keys(conn, argv: list[bytes]) -> Parts:
    def merge(replies: list[bytes]) -> bytes:
        found: list[bytes] = []
        for r in replies:
            found.extend(decode_or_raise(r))
        return resp.bulk_array(found, 2)
    return Parts(every_worker(conn, argv), merge)


@planned("randomkey", route=ALL)
def randomkey(conn, argv: list[bytes]) -> Parts:
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        found = [k for k in (decode_or_raise(r) for r in replies) if k is not None]
        return resp.bulk(random.choice(found)) if found else resp.null(proto)
    return Parts(every_worker(conn, argv), merge)


@planned("scan", route=ALL)
def scan(conn, argv: list[bytes]) -> Plan:
    """SCAN's cursor is the next hash slot to visit: it goes to the worker owning it."""
    from ..worker.t_keys import parse_cursor
    cursor = parse_cursor(argv[1])
    if cursor >= 16384:
        return resp.array([resp.bulk(b"0"), resp.EMPTY_ARRAY])
    return Parts([(conn.proxy.slotmap[cursor], argv, cursor)], first_reply)


@planned("swapdb", route=ALL)
def swapdb(conn, argv: list[bytes]) -> Plan:
    from ..numbers import string2ll
    databases = conn.proxy.config.values["databases"]
    indexes = []
    # Both indexes parse as C ints (getIntFromObjectOrReply) before either is range-checked.
    for value, message in ((argv[1], errors.INVALID_FIRST_DB), (argv[2], errors.INVALID_SECOND_DB)):
        index = string2ll(value)
        if index is None or not -(1 << 31) <= index < (1 << 31):
            raise errors.CommandError(message)
        indexes.append(index)
    if not all(0 <= index < databases for index in indexes):
        raise errors.CommandError(errors.DB_INDEX)
    indexes = [str(index).encode() for index in indexes]
    return Parts(every_worker(conn, [b"__swapdb", *indexes]), all_ok)


# -- single-route commands whose keys turn out to span workers ------------------------------

@planned("lcs", cross_shard=True)
def lcs_across(conn, argv: list[bytes]) -> Parts:
    """LCS of keys on two workers: fetch both values, compute here."""
    from ..worker.t_string import lcs_reply
    parts = [(*shard_of(conn, k), [b"GET", k]) for k in argv[1:3]]
    parts = [(w, cmd, slot) for w, slot, cmd in parts]
    limit = conn.proxy.config.values["proto-max-bulk-len"]
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        values = []
        for r in replies:
            try:
                values.append(decode_or_raise(r) or b"")
            except errors.CommandError as exc:
                if str(exc).startswith("WRONGTYPE"):
                    raise errors.CommandError(errors.LCS_NOT_STRINGS)
                raise
        return lcs_reply(values[0], values[1], argv, limit, proto)
    return Parts(parts, merge)


async def dump(hold, worker: int, key: bytes, slot: int) -> bytes | None:
    """The serialized value and TTL of key (None when it does not exist)."""
    (dumped,) = await hold.run([(worker, [b"__dump", key], slot)])
    return decode_or_raise(dumped)


@planned("rename", "renamenx", cross_shard=True)
def rename_across(conn, argv: list[bytes]) -> Steps:
    nx = argv[0].lower() == b"renamenx"
    src, dst = argv[1], argv[2]
    (ws, ss), (wd, sd) = shard_of(conn, src), shard_of(conn, dst)

    async def steps(hold) -> bytes:
        if nx:
            src_exists, dst_exists = await hold.run([(ws, [b"EXISTS", src], ss), (wd, [b"EXISTS", dst], sd)])
            if decode_or_raise(src_exists) and decode_or_raise(dst_exists):
                return resp.ZERO
        payload = await dump(hold, ws, src, ss)
        if payload is None:
            raise errors.CommandError(errors.NO_SUCH_KEY)
        for r in await hold.run([(wd, [b"__restore", dst, payload], sd), (ws, [b"__restore", src, DELETED], ss)]):
            decode_or_raise(r)
        events = notify.emitter_for(conn.proxy)
        if events is not None:
            notify.renamed(events, src, dst, conn.db)
            conn.proxy.pubsub.raise_events(events.pending)
        return resp.ONE if nx else resp.OK
    return steps


@planned("copy", cross_shard=True)
def copy_across(conn, argv: list[bytes]) -> Steps:
    from ..worker.t_keys import copy_options
    src, dst = argv[1], argv[2]
    target, replace = copy_options(argv, conn.db, conn.proxy.config.values["databases"])
    (ws, ss), (wd, sd) = shard_of(conn, src), shard_of(conn, dst)

    async def steps(hold) -> bytes:
        payload = await dump(hold, ws, src, ss)
        if payload is None:
            return resp.ZERO
        if not replace:
            (exists,) = await hold.run([(wd, [b"EXISTS", dst], sd)], db=target)
            if decode_or_raise(exists):
                return resp.ZERO
        decode_or_raise((await hold.run([(wd, [b"__restore", dst, payload], sd)], db=target))[0])
        events = notify.emitter_for(conn.proxy)
        if events is not None:
            notify.copied(events, dst, target)
            conn.proxy.pubsub.raise_events(events.pending)
        return resp.ONE
    return steps


# -- helpers for multi-key commands of every type (SMOVE, LMOVE, *STORE, BITOP, PFMERGE, SORT
# STORE …) whose keys span workers: read the values where they live, compute, write back,
# all inside one hold.

async def fetch_values(hold, conn, keys: list[bytes]) -> list[tuple[object, int | None] | None]:
    """(value, absolute expiry ms) of each key, or None when missing, in one round."""
    parts = [(*shard_of(conn, key), key) for key in keys]
    replies = await hold.run([(w, [b"__dump", key], slot) for w, slot, key in parts])
    return [None if (p := decode_or_raise(r)) is None else pickle.loads(p) for r in replies]


async def store_values(hold, conn, items: list[tuple[bytes, object, int | None]], db: int | None = None) -> None:
    """Write (key, value, absolute expiry ms or None) to each key's worker in one round;
    a value of None deletes the key."""
    parts = []
    for key, value, when in items:
        w, slot = shard_of(conn, key)
        if value is None:
            parts.append((w, [b"DEL", key], slot))
        else:
            parts.append((w, [b"__restore", key, pickle.dumps((value, when), pickle.HIGHEST_PROTOCOL)], slot))
    for r in await hold.run(parts, db=db):
        decode_or_raise(r)
