"""Type-agnostic key commands, after Valkey 8's db.c, expire.c and object.c.

A worker sees only its own keys: the proxy splits multi-key commands by owner, sends KEYS,
DBSIZE, RANDOMKEY and FLUSH* to every worker and merges, and walks SCAN worker by worker
with the cursor as a hash slot number.
"""
from __future__ import annotations

import copy
import random
import re
from itertools import islice
from typing import Any, Callable

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..glob import glob_matcher, pattern_slot
from ..slots import SLOTS, keyslot
from . import keyspace
from .context import Ctx
from .keyspace import Db
from ..numbers import LLONG_MAX, arg_ll
from ..numbers import string2ll as parse_ll

ZERO = resp.ZERO
ONE = resp.ONE
_MINUS_ONE = resp.integer(-1)
_MINUS_TWO = resp.integer(-2)
_LLONG_MIN_DIV_1000 = -9223372036854775      # C's LLONG_MIN / 1000 (truncated toward zero)

# -- types -------------------------------------------------------------------------------------

# Python type of a stored value → Valkey's type name. Data-type modules add theirs on import.
TYPE_NAMES: dict[type, bytes] = {bytes: b"string"}
# Python type → function giving OBJECT ENCODING's answer for a value of that type.
OBJECT_ENCODINGS: dict[type, Callable[[Any], bytes]] = {}
# The names SCAN ... TYPE accepts (Valkey's obj_type_name), whether or not stored here yet.
SCAN_TYPE_NAMES = frozenset((b"string", b"list", b"set", b"zset", b"hash", b"stream"))


def type_name(value: Any) -> bytes:
    """Valkey's name for the type of a stored value ('string', 'list', ...)."""
    return TYPE_NAMES[type(value)]


def string_encoding(value: bytes) -> bytes:
    """What Valkey's tryObjectEncoding makes of a string: int, embstr (<= 44 bytes) or raw."""
    if len(value) <= 20 and parse_ll(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= 44 else b"raw"


OBJECT_ENCODINGS[bytes] = string_encoding


# -- DEL, EXISTS, TOUCH, TYPE ------------------------------------------------------------------

def _delete(ctx: Ctx, argv: list[bytes]) -> bytes:
    db, first = ctx.db, ctx.slot
    removed = 0
    for i in range(1, len(argv)):
        key = argv[i]
        slot = first if i == 1 else keyslot(key)
        if db.lookup(key, slot) is not None and db.delete(key, slot):
            removed += 1
    return resp.integer(removed)


@worker_command("del")
def del_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _delete(ctx, argv)


@worker_command("unlink")
def unlink_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _delete(ctx, argv)


def _count_live(ctx: Ctx, argv: list[bytes], touch: bool) -> int:
    """How many of argv[1:] exist (a key named twice counts twice); TOUCH sets their access
    time, EXISTS does not (LOOKUP_NOTOUCH)."""
    db, first = ctx.db, ctx.slot
    read = db.lookup_read if touch else db.peek_read
    found = 0
    for i in range(1, len(argv)):
        key = argv[i]
        if read(key, first if i == 1 else keyslot(key)) is not None:
            found += 1
    return found


@worker_command("exists")
def exists_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.integer(_count_live(ctx, argv, False))


@worker_command("touch")
def touch_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.integer(_count_live(ctx, argv, True))


@worker_command("type")
def type_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = ctx.db.peek_read(argv[1], ctx.slot)
    return resp.status(b"none" if value is None else type_name(value))


# -- EXPIRE family -----------------------------------------------------------------------------

_NX, _XX, _GT, _LT = 1, 2, 4, 8
_EXPIRE_OPTIONS = {b"nx": _NX, b"xx": _XX, b"gt": _GT, b"lt": _LT}


def _expire_flags(argv: list[bytes]) -> int:
    """NX|XX|GT|LT from argv[3:] (parseExtendedExpireArgumentsOrReply)."""
    flags = 0
    for option in argv[3:]:
        flag = _EXPIRE_OPTIONS.get(option.lower())
        if flag is None:
            raise CommandError(errors.unsupported_option(option))
        flags |= flag
    if flags & _NX and flags & (_XX | _GT | _LT):
        raise CommandError(errors.EXPIRE_NX_AND_OTHERS)
    if flags & _GT and flags & _LT:
        raise CommandError(errors.EXPIRE_GT_AND_LT)
    return flags


def _expire(ctx: Ctx, argv: list[bytes], relative: bool, seconds: bool, command: str) -> bytes:
    """EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT (expireGenericCommand)."""
    flags = _expire_flags(argv)
    when = arg_ll(argv[2])
    if seconds:
        if when > LLONG_MAX // 1000 or when < _LLONG_MIN_DIV_1000:
            raise CommandError(errors.invalid_expire(command))
        when *= 1000
    base = keyspace.now_ms if relative else 0
    if when > LLONG_MAX - base:
        raise CommandError(errors.invalid_expire(command))
    when += base
    key, db, slot = argv[1], ctx.db, ctx.slot
    if db.lookup(key, slot) is None:
        return ZERO
    if flags:
        current = db.get_expire(key, slot)
        if flags & _NX and current is not None:
            return ZERO
        if flags & _XX and current is None:
            return ZERO
        if flags & _GT and (current is None or when <= current):
            return ZERO
        if flags & _LT and current is not None and when >= current:
            return ZERO
    if when <= keyspace.now_ms:
        db.delete(key, slot)
    else:
        db.set_expire(key, slot, when)
    return ONE


@worker_command("expire")
def expire_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _expire(ctx, argv, True, True, "expire")


@worker_command("pexpire")
def pexpire_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _expire(ctx, argv, True, False, "pexpire")


@worker_command("expireat")
def expireat_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _expire(ctx, argv, False, True, "expireat")


@worker_command("pexpireat")
def pexpireat_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _expire(ctx, argv, False, False, "pexpireat")


def _ttl(ctx: Ctx, key: bytes, milliseconds: bool, absolute: bool) -> bytes:
    """TTL, PTTL, EXPIRETIME and PEXPIRETIME (ttlGenericCommand): -2 missing, -1 no expiry."""
    db, slot = ctx.db, ctx.slot
    if db.peek_read(key, slot) is None:
        return _MINUS_TWO
    when = db.get_expire(key, slot)
    if when is None:
        return _MINUS_ONE
    ttl = max(when if absolute else when - keyspace.now_ms, 0)
    return resp.integer(ttl if milliseconds else (ttl + 500) // 1000)


_TTL_FORMS = {b"ttl": (False, False), b"pttl": (True, False),
              b"expiretime": (False, True), b"pexpiretime": (True, True)}


@worker_command("ttl", "pttl", "expiretime", "pexpiretime")
def ttl_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    milliseconds, absolute = _TTL_FORMS[argv[0].lower()]
    return _ttl(ctx, argv[1], milliseconds, absolute)


@worker_command("persist")
def persist_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot = argv[1], ctx.db, ctx.slot
    if db.lookup(key, slot) is not None and db.persist(key, slot):
        return ONE
    return ZERO


# -- KEYS, SCAN, RANDOMKEY, DBSIZE -------------------------------------------------------------

@worker_command("keys")
def keys_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """This worker's live keys matching the glob pattern."""
    pattern, db = argv[1], ctx.db
    if pattern == b"*":
        found = [key for slot in db.data for key in db.slot_keys(slot)]
        return resp.bulk_array(found, ctx.proto)
    only = pattern_slot(pattern)
    slots = (only,) if only >= 0 else list(db.data)
    match = glob_matcher(pattern)
    found = [key for slot in slots for key in db.slot_keys(slot) if match(key)]
    return resp.bulk_array(found, ctx.proto)


_SPACES = b" \t\n\v\f\r"
_STRTOULL = re.compile(rb"([+-]?)0*([0-9]+)")
_ULLONG_MAX = (1 << 64) - 1


def parse_cursor(value: bytes) -> int:
    """A SCAN cursor as Valkey's string2ull reads it (string2ll, else strtoull)."""
    n = parse_ll(value)
    if n is None:
        m = _STRTOULL.fullmatch(value.lstrip(_SPACES))
        if m is None or len(m[2]) > 20 or int(m[2]) > _ULLONG_MAX:
            raise CommandError(errors.INVALID_CURSOR)
        n = -int(m[2]) % (1 << 64) if m[1] == b"-" else int(m[2])
    elif n < 0:
        raise CommandError(errors.INVALID_CURSOR)
    return n


def _scan_options(argv: list[bytes]) -> tuple[int, bytes | None, bytes | None]:
    """(COUNT, MATCH pattern or None, TYPE name or None) from argv[2:]."""
    count, pattern, wanted = 10, None, None
    i, n = 2, len(argv)
    while i < n:
        option = argv[i].lower()
        more = n - i >= 2
        if option == b"count" and more:
            count = arg_ll(argv[i + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
        elif option == b"match" and more:
            pattern = argv[i + 1]
        elif option == b"type" and more:
            wanted = argv[i + 1].lower()
            if wanted not in SCAN_TYPE_NAMES and wanted not in TYPE_NAMES.values():
                raise CommandError(errors.unknown_type_name(argv[i + 1]))
        elif option == b"novalues":
            raise CommandError(errors.NOVALUES_NOT_HSCAN)
        elif option == b"noscores":
            raise CommandError(errors.NOSCORES_NOT_ZSCAN)
        else:
            raise CommandError(errors.SYNTAX)
        i += 2
    return count, pattern, wanted


@worker_command("scan")
def scan_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """Whole slots from slot `cursor` up, within this worker's range, until COUNT keys.

    MATCH and TYPE filter what was collected, so a reply may hold fewer than COUNT keys."""
    cursor = parse_cursor(argv[1])
    count, pattern, wanted = _scan_options(argv)
    hi = ctx.config["__slot_range__"][1]
    db = ctx.db
    data = db.data
    keys: list[bytes] = []
    seen = 0
    slot = cursor
    while slot <= hi and seen < count:
        if slot in data:
            found = db.slot_keys(slot)
            seen += len(found)
            if wanted is not None:
                values = data[slot]
                found = [k for k in found if type_name(values[k]) == wanted]
            keys += found
        slot += 1
    if pattern is not None and pattern != b"*":
        match = glob_matcher(pattern)
        keys = [k for k in keys if match(k)]
    next_cursor = b"0" if slot >= SLOTS or cursor >= SLOTS else b"%d" % slot
    return resp.array_header(2) + resp.bulk(next_cursor) + resp.bulk_array(keys, ctx.proto)


def _random_entry(db: Db) -> tuple[bytes, int]:
    """A uniformly chosen (key, slot) of the db, live or not; the db must not be empty."""
    r = random.randrange(db.size)
    for slot, d in db.data.items():
        if r < len(d):
            return next(islice(d, r, None)), slot
        r -= len(d)
    raise AssertionError("db.size out of step with its data")


@worker_command("randomkey")
def randomkey_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    db = ctx.db
    while db.size:
        key, slot = _random_entry(db)
        if db.lookup(key, slot) is not None:        # an expired pick is deleted: draw again
            return resp.bulk(key)
    return resp.null(ctx.proto)


@worker_command("dbsize")
def dbsize_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.integer(ctx.db.size)


# -- FLUSHDB, FLUSHALL -------------------------------------------------------------------------

def _check_flush_args(argv: list[bytes]) -> None:
    """[ASYNC|SYNC] (getFlushCommandFlags); both free the data at once here."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"sync", b"async")):
        raise CommandError(errors.SYNTAX)


@worker_command("flushdb")
def flushdb_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    _check_flush_args(argv)
    ctx.db.flush()
    return resp.OK


@worker_command("flushall")
def flushall_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    _check_flush_args(argv)
    for db in ctx.dbs:
        db.flush()
    return resp.OK


def keyspace_info(dbs: list[Db]) -> dict[int, tuple[int, int, int]]:
    """INFO keyspace figures of this worker: db index → (keys, expires, avg_ttl placeholder 0)."""
    return {db.index: (db.size, db.volatile, 0) for db in dbs if db.size}


# -- OBJECT ------------------------------------------------------------------------------------

_SHARED_INTEGERS = 10000                 # Valkey's OBJ_SHARED_INTEGERS
_SHARED_REFCOUNT = resp.integer(2147483647)
_OBJECT_HELP = [resp.status(line) for line in (
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Print this help.",
)]


def _policy(ctx: Ctx) -> str:
    policy = ctx.config.get("maxmemory-policy", "noeviction")
    return policy.decode() if isinstance(policy, bytes) else policy


def _shared_integers_allowed(ctx: Ctx) -> bool:
    """Valkey shares the integers 0..9999 unless maxmemory is set with an LRU/LFU policy."""
    policy = _policy(ctx)
    return not ctx.config.get("maxmemory", 0) or not ("lru" in policy or "lfu" in policy)


@worker_command("object|encoding")
def object_encoding(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = ctx.db.peek_read(argv[2], ctx.slot)
    if value is None:
        return resp.null(ctx.proto)
    return resp.bulk(OBJECT_ENCODINGS[type(value)](value))


@worker_command("object|refcount")
def object_refcount(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = ctx.db.peek_read(argv[2], ctx.slot)
    if value is None:
        return resp.null(ctx.proto)
    if type(value) is bytes and len(value) <= 20 and _shared_integers_allowed(ctx):
        n = parse_ll(value)
        if n is not None and 0 <= n < _SHARED_INTEGERS:
            return _SHARED_REFCOUNT
    return ONE


@worker_command("object|idletime")
def object_idletime(ctx: Ctx, argv: list[bytes]) -> bytes:
    """Seconds since the key's last access (the LRU clock every lookup sets)."""
    from .evict import idle_ms
    db, key = ctx.db, argv[2]
    if db.peek_read(key, ctx.slot) is None:
        return resp.null(ctx.proto)
    if "lfu" in _policy(ctx):
        raise CommandError(errors.LFU_SELECTED)
    return resp.integer(idle_ms(db.access.get(key, keyspace.lru_clock)) // 1000)


@worker_command("object|freq")
def object_freq(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The key's LFU counter, decayed to now (LFUDecrAndReturn)."""
    db, key = ctx.db, argv[2]
    if db.peek_read(key, ctx.slot) is None:
        return resp.null(ctx.proto)
    if "lfu" not in _policy(ctx):
        raise CommandError(errors.LFU_NOT_SELECTED)
    packed = db.access.get(key)
    return resp.integer(keyspace.LFU_INIT_VAL if packed is None else keyspace.lfu_counter(packed))


@worker_command("object|help")
def object_help(ctx: Ctx, argv: list[bytes]) -> bytes:
    header = resp.status(b"%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
                         % argv[0].upper())
    return resp.array([header, *_OBJECT_HELP])


# -- RENAME, COPY, MOVE (keys on this worker; the proxy's coordinator handles the others) ----

def copy_value(value: Any) -> Any:
    """An independent copy of a stored value (strings are immutable and shared)."""
    return value if type(value) is bytes else copy.deepcopy(value)


def _rename(ctx: Ctx, argv: list[bytes], nx: bool) -> bytes:
    db, src, dst = ctx.db, argv[1], argv[2]
    src_slot, dst_slot = ctx.slot, keyslot(dst)
    value = db.lookup(src, src_slot)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if src == dst:
        return ZERO if nx else resp.OK
    if nx and db.lookup(dst, dst_slot) is not None:
        return ZERO
    when = db.get_expire(src, src_slot)
    db.delete(src, src_slot)
    db.store_expiring(dst, dst_slot, value, when)
    return ONE if nx else resp.OK


@worker_command("rename")
def rename_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _rename(ctx, argv, False)


@worker_command("renamenx")
def renamenx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _rename(ctx, argv, True)


def copy_options(argv: list[bytes], current_db: int, databases: int) -> tuple[int, bool]:
    """COPY's [DB destination-db] [REPLACE]: (target db, replace)."""
    target, replace = current_db, False
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < len(argv):
            target = arg_ll(argv[i + 1])
            if not 0 <= target < databases:
                raise CommandError(errors.DB_INDEX)
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    return target, replace


@worker_command("copy")
def copy_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    src, dst = argv[1], argv[2]
    target, replace = copy_options(argv, ctx.db.index, len(ctx.dbs))
    if src == dst and target == ctx.db.index:
        raise CommandError(errors.SAME_OBJECT)
    value = ctx.db.lookup(src, ctx.slot)
    if value is None:
        return ZERO
    to_db, dst_slot = ctx.dbs[target], keyslot(dst)
    if to_db.lookup(dst, dst_slot) is not None:
        if not replace:
            return ZERO
        to_db.delete(dst, dst_slot)
    to_db.store_expiring(dst, dst_slot, copy_value(value), ctx.db.get_expire(src, ctx.slot))
    return ONE


@worker_command("move")
def move_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot = argv[1], ctx.db, ctx.slot
    target = arg_ll(argv[2])
    if not 0 <= target < len(ctx.dbs):
        raise CommandError(errors.DB_INDEX)
    if target == db.index:
        raise CommandError(errors.SAME_OBJECT)
    value = db.lookup(key, slot)
    to_db = ctx.dbs[target]
    if value is None or to_db.lookup(key, slot) is not None:
        return ZERO
    when = db.get_expire(key, slot)
    db.delete(key, slot)
    to_db.store_expiring(key, slot, value, when)
    return ONE
