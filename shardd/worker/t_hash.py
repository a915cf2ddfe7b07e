"""Hash commands, after Valkey 8's t_hash.c (replies, errors and their order).

A hash is a `Hash`: a dict of field → value (bytes), insertion-ordered like Valkey's listpack,
plus a sticky `hashtable` flag for OBJECT ENCODING: a hash becomes a hashtable when a write
brings more than hash-max-listpack-entries fields, or a field or value longer than
hash-max-listpack-value bytes (hashTypeTryConversion / hashTypeSet), and never goes back.

Field names are shared between the hashes of a worker (`shared_name`, bounded): hashes that
mirror objects repeat the same names, and a bytes object per name per hash was a third of a
small hash's memory.

HSCAN and SSCAN on hashtable-encoded values walk the members in order of their Python hash:
see `scan_members`.
"""
from __future__ import annotations

import random
from bisect import bisect_left
from fractions import Fraction
from itertools import chain
from typing import Any, Iterable

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..glob import glob_matcher
from ..numbers import LLONG_MAX, LLONG_MIN, arg_ll, arg_range
from ..numbers import string2ll as parse_ll
from . import keyspace, t_keys
from .context import Ctx
from .packed import PACK_MAX, Packed
from .t_string import ld2string_human, ld_add, string2ld

_WRONGTYPE = errors.WRONGTYPE
_bulk = resp.bulk
_integer = resp.integer
ZERO = resp.ZERO
ONE = resp.ONE
EMPTY_ARRAY = resp.EMPTY_ARRAY
EMPTY_MAP3 = b"%0\r\n"
EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"
_PAIR = resp.array_header(2)

HASH_NOT_INTEGER = "ERR hash value is not an integer"
HASH_NOT_FLOAT = "ERR hash value is not a float"
INCR_NAN_OR_INF = "ERR value is NaN or Infinity"
OUT_OF_RANGE = "ERR value is out of range"

LONG_MAX = LLONG_MAX                 # C long on LP64
_HALF_LONG_MAX = LONG_MAX // 2       # HRANDFIELD ... WITHVALUES bound (C's LONG_MAX/2)


# -- the value type ----------------------------------------------------------------------------

class Hash(dict):
    """A hash value. `hashtable`: Valkey holds it as a hashtable (sticky). `scan_order`: the
    fields sorted for HSCAN, kept between the calls of a scan (never pickled or copied)."""

    __slots__ = ("hashtable", "scan_order")

    def __init__(self, items: Any = (), hashtable: bool = False) -> None:
        dict.__init__(self, items)
        self.hashtable = hashtable
        self.scan_order: list[bytes] | None = None

    def __reduce__(self) -> tuple:
        return (Hash, (dict(self), self.hashtable))


def hash_encoding(value: Hash) -> bytes:
    return b"hashtable" if value.hashtable else b"listpack"


t_keys.TYPE_NAMES[Hash] = b"hash"
t_keys.OBJECT_ENCODINGS[Hash] = hash_encoding


class PackedHash(Packed):
    """A listpack-encoded hash at rest: its fields and values as a plain dict (packed.py)."""
    __slots__ = ()


def pack_hash(h: Hash) -> tuple[type, dict] | None:
    if h.hashtable or len(h) > PACK_MAX:
        return None
    return PackedHash, dict(h)           # marshal takes exact dicts (in order), not subclasses


def unpack_hash(fields: dict) -> Hash:
    return Hash(fields)


t_keys.TYPE_NAMES[PackedHash] = b"hash"
t_keys.OBJECT_ENCODINGS[PackedHash] = lambda packed: b"listpack"
keyspace.PACKERS[Hash] = pack_hash
keyspace.UNPACKERS[PackedHash] = unpack_hash


# Field names shared by the hashes of this worker: hashes that mirror objects repeat the same
# few names, and one bytes object per name per hash would be most of a small hash's memory.
# Bounded (count and length), so unique names cost nothing beyond the table's cap.
_NAMES: dict[bytes, bytes] = {}
NAMES_MAX = 1 << 16
NAME_MAX_LEN = 32


def shared_name(field: bytes) -> bytes:
    """The worker's shared copy of a field name (the name itself when it is not kept)."""
    name = _NAMES.get(field)
    if name is None:
        if len(field) <= NAME_MAX_LEN and len(_NAMES) < NAMES_MAX:
            _NAMES[field] = field
        return field
    return name


def _too_big(ctx: Ctx, args: list[bytes], pairs: int) -> bool:
    """Would writing `pairs` field/value pairs made of `args` make a listpack hash a hashtable
    (hashTypeTryConversion: the number of pairs given, or any one string too long)."""
    config = ctx.config
    return (pairs > config["hash-max-listpack-entries"]
            or max(map(len, args)) > config["hash-max-listpack-value"])


def _grown(ctx: Ctx, h: Hash) -> None:
    """After adding fields: more than hash-max-listpack-entries makes a hashtable."""
    if not h.hashtable and len(h) > ctx.config["hash-max-listpack-entries"]:
        h.hashtable = True


def _read_hash(ctx: Ctx, key: bytes) -> Hash | None:
    """The hash at key (counting a keyspace hit/miss), None if missing, WRONGTYPE otherwise."""
    return ctx.db.lookup_as(key, ctx.slot, Hash, read=True)


def _write_hash(ctx: Ctx, key: bytes) -> Hash | None:
    return ctx.db.lookup_as(key, ctx.slot, Hash)


# -- writes ------------------------------------------------------------------------------------

@worker_command("hset", "hmset")
def hset_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    n = len(argv)
    is_hset = argv[0][1] in b"sS"
    if n % 2:
        raise CommandError(errors.wrong_arity("hset" if is_hset else "hmset"))
    key, db, slot = argv[1], ctx.db, ctx.slot
    h = _write_hash(ctx, key)
    created = h is None
    if created:
        h = Hash()
    args = argv[2:]
    if not h.hashtable and _too_big(ctx, args, len(args) // 2):
        h.hashtable = True
    before = len(h)
    if n == 4:
        h[shared_name(argv[2])] = argv[3]
    else:
        h.update(zip(map(shared_name, args[::2]), args[1::2]))
    _grown(ctx, h)
    if created:
        db.store(key, slot, h)
    else:
        db.modified(key)
    return _integer(len(h) - before) if is_hset else resp.OK


@worker_command("hsetnx")
def hsetnx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, field = argv[1], argv[2]
    h = _write_hash(ctx, key)
    if h is not None and field in h:
        return ZERO
    created = h is None
    if created:
        h = Hash()
    if not h.hashtable and _too_big(ctx, argv[2:4], 1):
        h.hashtable = True
    h[shared_name(field)] = argv[3]
    _grown(ctx, h)
    if created:
        ctx.db.store(key, ctx.slot, h)
    else:
        ctx.db.modified(key)
    return ONE


@worker_command("hdel")
def hdel_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key = argv[1]
    h = _write_hash(ctx, key)
    if h is None:
        return ZERO
    deleted = 0
    for i in range(2, len(argv)):
        if h.pop(argv[i], None) is not None:
            deleted += 1
    if deleted:
        if h:
            ctx.db.modified(key)
        else:
            ctx.db.delete(key, ctx.slot)
    return _integer(deleted)


def _set_counter(ctx: Ctx, key: bytes, h: Hash | None, field: bytes, text: bytes) -> None:
    """Store a HINCRBY/HINCRBYFLOAT result (hashTypeSet: a long field or value converts)."""
    if h is None:
        h = Hash()
        ctx.db.store(key, ctx.slot, h)
    else:
        ctx.db.modified(key)
    if not h.hashtable and max(len(field), len(text)) > ctx.config["hash-max-listpack-value"]:
        h.hashtable = True
    h[shared_name(field)] = text
    _grown(ctx, h)


@worker_command("hincrby")
def hincrby_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, field = argv[1], argv[2]
    incr = arg_ll(argv[3])
    h = _write_hash(ctx, key)
    old = h.get(field) if h is not None else None
    if old is None:
        current = 0
    else:
        current = parse_ll(old)
        if current is None:
            raise CommandError(HASH_NOT_INTEGER)
    value = current + incr
    if not LLONG_MIN <= value <= LLONG_MAX:
        raise CommandError(errors.OVERFLOW)
    _set_counter(ctx, key, h, field, b"%d" % value)
    return _integer(value)


@worker_command("hincrbyfloat")
def hincrbyfloat_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, field = argv[1], argv[2]
    incr = string2ld(argv[3])
    if incr is None:
        raise CommandError(errors.NOT_FLOAT)
    if type(incr) is float:                   # +-inf (NaN never parses)
        raise CommandError(INCR_NAN_OR_INF)
    h = _write_hash(ctx, key)
    old = h.get(field) if h is not None else None
    if old is None:
        current = Fraction(0)
    else:
        current = string2ld(old)
        if current is None:
            raise CommandError(HASH_NOT_FLOAT)
    total = ld_add(current, incr)
    if total is None:
        raise CommandError(errors.INCR_NAN_INF)
    text = ld2string_human(total)
    _set_counter(ctx, key, h, field, text)
    return _bulk(text)


# -- reads -------------------------------------------------------------------------------------

@worker_command("hget")
def hget_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    value = h.get(argv[2]) if h is not None else None
    return resp.null(ctx.proto) if value is None else _bulk(value)


@worker_command("hmget")
def hmget_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    fields = argv[2:]
    if h is None:
        return resp.array_header(len(fields)) + resp.null(ctx.proto) * len(fields)
    return resp.bulk_array(map(h.get, fields), ctx.proto)


@worker_command("hexists")
def hexists_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    return ONE if h is not None and argv[2] in h else ZERO


@worker_command("hlen")
def hlen_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    return ZERO if h is None else _integer(len(h))


@worker_command("hstrlen")
def hstrlen_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    value = h.get(argv[2]) if h is not None else None
    return ZERO if value is None else _integer(len(value))


@worker_command("hgetall")
def hgetall_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    if h is None:
        return EMPTY_MAP3 if ctx.proto == 3 else EMPTY_ARRAY
    return resp.map_header(len(h), ctx.proto) + resp.bulks(chain.from_iterable(h.items()))


@worker_command("hkeys")
def hkeys_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    return EMPTY_ARRAY if h is None else resp.bulk_array(h, ctx.proto)


@worker_command("hvals")
def hvals_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    h = _read_hash(ctx, argv[1])
    return EMPTY_ARRAY if h is None else resp.bulk_array(h.values(), ctx.proto)


# -- HRANDFIELD --------------------------------------------------------------------------------

def _fields_reply(h: Hash, fields: list[bytes], withvalues: bool, proto: int) -> bytes:
    """Fields, or field/value pairs: flat in RESP2, one 2-element array per pair in RESP3."""
    bulk = _bulk
    if not withvalues:
        return resp.array_header(len(fields)) + resp.bulks(fields)
    if proto == 3:
        parts = [resp.array_header(len(fields))]
        for field in fields:
            parts += (_PAIR, bulk(field), bulk(h[field]))
    else:
        parts = [resp.array_header(2 * len(fields))]
        for field in fields:
            parts += (bulk(field), bulk(h[field]))
    return b"".join(parts)


@worker_command("hrandfield")
def hrandfield_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) == 2:
        h = _read_hash(ctx, argv[1])
        if h is None:
            return resp.null(ctx.proto)
        return _bulk(random_member(h))
    count = arg_range(argv[2], -LONG_MAX, LONG_MAX)
    withvalues = len(argv) == 4
    if len(argv) > 4 or (withvalues and argv[3].lower() != b"withvalues"):
        raise CommandError(errors.SYNTAX)
    if withvalues and not -_HALF_LONG_MAX <= count <= _HALF_LONG_MAX:
        raise CommandError(OUT_OF_RANGE)
    h = _read_hash(ctx, argv[1])
    if h is None or count == 0:
        return EMPTY_ARRAY
    return _fields_reply(h, random_sample(h, count), withvalues, ctx.proto)


def random_member(container: Iterable[bytes]) -> bytes:
    """One uniformly chosen member of a non-empty dict or set."""
    items = tuple(container)
    return items[random.randrange(len(items))]


def random_sample(container: Any, count: int) -> list[bytes]:
    """What HRANDFIELD/SRANDMEMBER with a count pick: a negative count draws -count times with
    repetition; a positive one draws distinct members, all of them (in order) if count >= size."""
    if count < 0:
        return random.choices(tuple(container), k=-count)
    if count >= len(container):
        return list(container)
    return random.sample(tuple(container), count)


# -- HSCAN (and what SSCAN shares) -------------------------------------------------------------

_HASH_OFFSET = 1 << 63               # Python hashes are signed 64-bit; cursors are unsigned


def parse_scan_options(argv: list[bytes], kind: bytes) -> tuple[int, bytes | None, bool]:
    """HSCAN/SSCAN/ZSCAN options from argv[3:]: (COUNT, MATCH pattern or None, NOVALUES/NOSCORES).
    `kind` is the value's type name: b"hash", b"set" or b"zset" (scanGenericCommand)."""
    count, pattern, only_keys = 10, None, False
    i, n = 3, len(argv)
    while i < n:
        option = argv[i].lower()
        more = n - i >= 2
        if option == b"count" and more:
            count = arg_ll(argv[i + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
            i += 2
        elif option == b"match" and more:
            pattern = argv[i + 1]
            i += 2
        elif option == b"novalues":
            if kind != b"hash":
                raise CommandError(errors.NOVALUES_NOT_HSCAN)
            only_keys = True
            i += 1
        elif option == b"noscores":
            if kind != b"zset":
                raise CommandError(errors.NOSCORES_NOT_ZSCAN)
            only_keys = True
            i += 1
        else:
            raise CommandError(errors.SYNTAX)
    return count, (None if pattern == b"*" else pattern), only_keys


def scan_members(container: Any, cursor: int, count: int) -> tuple[int, list[bytes]]:
    """A page of a hashtable-encoded Hash or Set's members from `cursor`, and the next cursor.

    The members are walked in order of hash(member), which stays the same within this process,
    and a cursor is the hash (made unsigned) of the first member not yet returned. The order is
    a snapshot taken when a scan starts (cursor 0) and kept on the value: any snapshot a later
    call finds was taken at or after its own scan's start, so it holds every member that is
    present for the whole scan, and a member is returned once its hash passes the cursor.
    Members deleted since the snapshot are skipped; members with equal hashes share a page."""
    order = container.scan_order
    if cursor == 0 or order is None:
        order = container.scan_order = sorted(container, key=hash)
    size = len(order)
    start = 0 if cursor == 0 else bisect_left(order, cursor - _HASH_OFFSET, key=hash)
    end = min(start + count, size)
    if start < end < size:
        last = hash(order[end - 1])
        while end < size and hash(order[end]) == last:
            end += 1
    page = [m for m in order[start:end] if m in container]
    if end >= size:
        container.scan_order = None         # done: a new scan takes a new snapshot anyway
        return 0, page
    return hash(order[end]) + _HASH_OFFSET, page


def scan_reply(cursor: int, items: list[bytes], proto: int) -> bytes:
    return resp.array_header(2) + _bulk(b"%d" % cursor) + resp.bulk_array(items, proto)


@worker_command("hscan")
def hscan_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    cursor = t_keys.parse_cursor(argv[2])
    h = _read_hash(ctx, argv[1])
    if h is None:
        return EMPTY_SCAN
    count, pattern, novalues = parse_scan_options(argv, b"hash")
    if h.hashtable:
        cursor, fields = scan_members(h, cursor, count)
    else:
        cursor, fields = 0, h
    if pattern is not None:
        match = glob_matcher(pattern)
        fields = [f for f in fields if match(f)]
    if novalues:
        return scan_reply(cursor, list(fields), ctx.proto)
    items = list(chain.from_iterable((field, h[field]) for field in fields))
    return scan_reply(cursor, items, ctx.proto)
