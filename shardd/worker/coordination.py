"""Worker steps of cross-shard work: WATCH bookkeeping and moving values between shards.

The proxy's coordinator sends these (inside a hold when they must be atomic with other
shards); clients cannot call them (commands.INTERNAL).
"""
from __future__ import annotations

import pickle

from .. import resp
from ..commands import internal_command
from ..slots import keyslot
from . import keyspace
from .context import Ctx


@internal_command("__watch", -2)
def watch(ctx: Ctx, argv: list[bytes]) -> bytes:
    """WATCH keys of ctx.db for ctx.client_id."""
    db = ctx.db
    mine = ctx.watching.setdefault(ctx.client_id, [])
    for key in argv[1:]:
        # A key that has already expired goes now. Valkey flags such a watch as expired at
        # WATCH time, and neither its expiry nor its later deletion aborts EXEC; once it is
        # deleted here, nothing will (a new value for the key still does).
        db.lookup(key, keyslot(key))
        clients = db.watched.setdefault(key, set())
        if ctx.client_id not in clients:
            clients.add(ctx.client_id)
            mine.append((db, key))
    return resp.OK


@internal_command("__unwatch", 1)
def unwatch(ctx: Ctx, argv: list[bytes]) -> bytes:
    forget_watches(ctx, ctx.client_id)
    return resp.OK


def forget_watches(ctx: Ctx, client_id: int) -> None:
    for db, key in ctx.watching.pop(client_id, ()):
        clients = db.watched.get(key)
        if clients is not None:
            clients.discard(client_id)
            if not clients:
                del db.watched[key]
    ctx.db.dirty.discard(client_id)


@internal_command("__dirty", 1)
def dirty(ctx: Ctx, argv: list[bytes]) -> bytes:
    """:1 when a key this client WATCHes here changed (or has expired) since WATCH."""
    return resp.ONE if watch_fired(ctx, ctx.client_id) else resp.ZERO


def watch_fired(ctx: Ctx, client_id: int) -> bool:
    if client_id in ctx.db.dirty:
        return True
    for db, key in ctx.watching.get(client_id, ()):
        when = db.get_expire(key, keyslot(key))
        if when is not None and when <= keyspace.now_ms:
            return True
    return False


@internal_command("__dump", 2)
def dump(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The value and absolute expiry of a key, serialized for another shard (or null)."""
    key = argv[1]
    slot = keyslot(key)
    value = ctx.db.lookup(key, slot)
    if value is None:
        return resp.null(ctx.proto)
    return resp.bulk(pickle.dumps((value, ctx.db.get_expire(key, slot)), protocol=pickle.HIGHEST_PROTOCOL))


# __restore's payload for "the key is gone": a cross-shard write-back deletes with it rather
# than DEL, whose keyspace notification would be the write-back's, not the command's.
DELETED = pickle.dumps(None, protocol=pickle.HIGHEST_PROTOCOL)


@internal_command("__restore", 3)
def restore(ctx: Ctx, argv: list[bytes]) -> bytes:
    """Store a value __dump produced (replacing any value, TTL included), or DELETED."""
    key = argv[1]
    state = pickle.loads(argv[2])
    if state is None:
        ctx.db.delete(key, keyslot(key))
        return resp.OK
    value, when = state
    ctx.db.store_expiring(key, keyslot(key), value, when)
    return resp.OK


@internal_command("__swapdb", 3)
def swapdb(ctx: Ctx, argv: list[bytes]) -> bytes:
    """SWAPDB on this shard's part of the two databases."""
    a, b = int(argv[1]), int(argv[2])
    dbs = ctx.dbs
    first, second = dbs[a], dbs[b]
    first.touch_all(second)
    second.touch_all(first)
    for name in keyspace.Db.CONTENT:
        va, vb = getattr(first, name), getattr(second, name)
        setattr(first, name, vb)
        setattr(second, name, va)
    # Watches stay with the db index they were made on (as in Valkey): they fired above.
    # Clients blocked in either db may find their keys filled now (scanDatabaseForReadyKeys).
    for db in (first, second):
        db.ready.extend((db, key) for key in db.blocked)
    return resp.OK
