"""DUMP and RESTORE, after Valkey 8's cluster.c (dumpCommand, restoreCommand).

The payload is Redis's: the value's RDB serialization, the RDB version (10, which Redis 7.0,
7.2 and Valkey 8 all accept) and a CRC64 (shardd.persist.rdb). RESTORE's IDLETIME sets the key's
LRU clock under an LRU (or non-LFU) policy, FREQ its LFU counter under an LFU policy, as
objectSetLRUOrLFU: the other one is accepted and has no effect.
"""
from __future__ import annotations

from .. import errors, resp
from ..commands import internal_command, worker_command
from ..errors import CommandError
from ..numbers import LLONG_MAX, arg_ll
from ..persist.rdb import DumpPayloadError, Limits, RdbError, dump_value, restore_value
from . import keyspace
from .context import Ctx

BUSYKEY = "BUSYKEY Target key name already exists."
INVALID_TTL = "ERR Invalid TTL value, must be >= 0"
INVALID_IDLETIME = "ERR Invalid IDLETIME value, must be >= 0"
INVALID_FREQ = "ERR Invalid FREQ value, must be >= 0 and <= 255"
BAD_PAYLOAD = "ERR DUMP payload version or checksum are wrong"
BAD_FORMAT = "ERR Bad data format"

_U64 = 1 << 64


@worker_command("dump")
def dump_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = ctx.db.lookup_read(argv[1], ctx.slot)
    if value is None:
        return resp.null(ctx.proto)
    config = ctx.config
    return resp.bulk(dump_value(value, config["rdbcompression"], config["list-max-listpack-size"]))


@internal_command("__dumpttl", 2)
def dump_with_ttl(ctx: Ctx, argv: list[bytes]) -> bytes:
    """[payload, ms to live or -1] of a key for MIGRATE (shardd/proxy/migrate.py), or null."""
    key, db, slot = argv[1], ctx.db, ctx.slot
    value = db.lookup_read(key, slot)
    if value is None:
        return resp.null(ctx.proto)
    config = ctx.config
    payload = dump_value(value, config["rdbcompression"], config["list-max-listpack-size"])
    when = db.get_expire(key, slot)
    # A key expiring this very millisecond still goes, with 1 ms to live (as migrateCommand).
    ttl = -1 if when is None else max(when - keyspace.now_ms, 1)
    return resp.array((resp.bulk(payload), resp.integer(ttl)))


def _restore_options(argv: list[bytes]) -> tuple[bool, bool, int, int]:
    """(REPLACE, ABSTTL, IDLETIME seconds, FREQ) from argv[4:]; -1 for an absent IDLETIME or
    FREQ (at most one of them may be given)."""
    replace = absttl = False
    idle = freq = -1
    i, argc = 4, len(argv)
    while i < argc:
        option = argv[i].lower()
        more = argc - i - 1
        if option == b"replace":
            replace = True
        elif option == b"absttl":
            absttl = True
        elif option == b"idletime" and more >= 1 and freq == -1:
            idle = arg_ll(argv[i + 1])
            if idle < 0:
                raise CommandError(INVALID_IDLETIME)
            i += 1
        elif option == b"freq" and more >= 1 and idle == -1:
            freq = arg_ll(argv[i + 1])
            if not 0 <= freq <= 255:
                raise CommandError(INVALID_FREQ)
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    return replace, absttl, idle, freq


def _set_access(db: keyspace.Db, key: bytes, idle: int, freq: int) -> None:
    """objectSetLRUOrLFU: FREQ under an LFU policy, IDLETIME (seconds) under any other."""
    if db.lfu:
        if freq >= 0:
            db.access[key] = (keyspace.lfu_minutes << 8) | freq
    elif idle >= 0:
        clock = keyspace.lru_clock - idle
        if clock < 0:                  # the clock wraps: the idle time reads back unwrapped
            clock += keyspace.LRU_CLOCK_MAX
        db.access[key] = clock & keyspace.LRU_CLOCK_MAX


@worker_command("restore")
def restore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    replace, absttl, idle, freq = _restore_options(argv)
    key, db, slot = argv[1], ctx.db, ctx.slot
    exists = db.lookup(key, slot) is not None
    if exists and not replace:
        raise CommandError(BUSYKEY)
    ttl = arg_ll(argv[2])
    if ttl < 0:
        raise CommandError(INVALID_TTL)
    try:
        value = restore_value(argv[3], Limits(ctx.config))
    except DumpPayloadError:
        raise CommandError(BAD_PAYLOAD) from None
    except RdbError:
        raise CommandError(BAD_FORMAT) from None
    if exists:
        db.delete(key, slot)
    now = keyspace.now_ms
    if ttl and not absttl:
        ttl += now
        if ttl > LLONG_MAX:            # C's long long addition wraps: the key is "expired"
            ttl -= _U64
    if ttl and ttl <= now:
        return resp.OK                 # already expired: nothing stored (the old key is gone)
    db.store_expiring(key, slot, value, ttl or None)
    if idle >= 0 or freq >= 0:
        _set_access(db, key, idle, freq)
    return resp.OK
