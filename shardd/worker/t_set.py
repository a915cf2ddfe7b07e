"""Set commands, after Valkey 8's t_set.c (replies, errors and their order).

A set is a `Set`: a Python set of bytes plus the encoding Valkey would have chosen, following
its transitions member by member (setTypeCreate, setTypeMaybeConvert, setTypeAddAux): an intset
while every member is a canonical 64-bit integer and there are at most set-max-intset-entries,
a listpack while there are at most set-max-listpack-entries members of at most
set-max-listpack-value bytes, a hashtable otherwise. A set never goes back to a more compact
encoding, except when SPOP pops most of it (Valkey keeps the rest in a new set); the *STORE
commands give their results the encoding Valkey's way of building them ends with.
Replies list an intset's members in numeric order as Valkey does; other encodings come in
Python's set order (Valkey's listpack order is insertion order).

Random picks on big sets go through a `Sampler` (a list of the members kept beside the set), so
SPOP and SRANDMEMBER stay O(1) there; SSCAN shares HSCAN's cursor scheme (t_hash.scan_members).
"""
from __future__ import annotations

import random
from itertools import islice
from typing import Iterable

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..glob import glob_matcher
from ..numbers import LLONG_MAX, arg_range
from ..numbers import string2ll as parse_ll
from ..slots import keyslot
from . import keyspace, t_keys
from .context import Ctx
from .keyspace import Db
from .packed import PACK_MAX, Packed
from .t_hash import EMPTY_SCAN, parse_scan_options, random_sample, scan_members, scan_reply

_WRONGTYPE = errors.WRONGTYPE
_bulk = resp.bulk
_integer = resp.integer
ZERO = resp.ZERO
ONE = resp.ONE
EMPTY_ARRAY = resp.EMPTY_ARRAY
EMPTY_SET3 = b"~0\r\n"

NUMKEYS_NOT_POSITIVE = "ERR numkeys should be greater than 0"
TOO_MANY_NUMKEYS = "ERR Number of keys can't be greater than number of args"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"

LONG_MAX = LLONG_MAX                 # C long on LP64
INTSET, LISTPACK, HASHTABLE = 0, 1, 2
_ENCODING_NAMES = (b"intset", b"listpack", b"hashtable")
_INTSET_HARD_LIMIT = 1 << 30         # intsetMaxEntries() caps the config
SAMPLER_MIN = 256                    # from this size, random picks use a Sampler
SPOP_MOVE_STRATEGY_MUL = 5           # SPOP keeps the rest in a new set when it pops this much more


# -- the value type ----------------------------------------------------------------------------

class Sampler:
    """Random access to a big set: `pool` lists every member once, and also members removed
    by SREM/SMOVE since it was built (`stale`), which picks weed out as they meet them.
    SPOP keeps it exact; adding a member appends it, unless a stale entry might repeat it."""

    __slots__ = ("pool", "stale")

    def __init__(self, members: Iterable[bytes]) -> None:
        self.pool = list(members)
        self.stale = False


class Set(set):
    """A set value. `encoding` is INTSET, LISTPACK or HASHTABLE; `scan_order` (SSCAN) and
    `sampler` (random picks) are caches of big sets, never pickled or copied."""

    __slots__ = ("encoding", "scan_order", "sampler")

    def __init__(self, members: Iterable[bytes] = (), encoding: int = HASHTABLE) -> None:
        set.__init__(self, members)
        self.encoding = encoding
        self.scan_order: list[bytes] | None = None
        self.sampler: Sampler | None = None

    def __reduce__(self) -> tuple:
        return (Set, (set(self), self.encoding))

    def ordered(self) -> Iterable[bytes]:
        """The members in Valkey's reply order where it is defined: an intset's is numeric."""
        if self.encoding == INTSET:
            return sorted(self, key=int)
        return self

    # -- changes that keep the sampler right --------------------------------------------
    def added(self, members: list[bytes]) -> None:
        """Tell the sampler about members just added (new to the set)."""
        sampler = self.sampler
        if sampler is not None:
            if sampler.stale:
                self.sampler = None
            else:
                sampler.pool += members

    def removed(self) -> None:
        """Members were removed other than by pop_random."""
        if self.sampler is not None:
            self.sampler.stale = True

    # -- random members -----------------------------------------------------------------
    def _live_sampler(self) -> Sampler:
        sampler = self.sampler
        if sampler is None or len(sampler.pool) > 2 * len(self) + 16:
            sampler = self.sampler = Sampler(self)
        return sampler

    def random_member(self) -> bytes:
        """A uniformly chosen member of the (non-empty) set."""
        n = len(self)
        if n < SAMPLER_MIN:
            return next(islice(self, random.randrange(n), None))
        pool = self._live_sampler().pool
        while True:
            i = random.randrange(len(pool))
            member = pool[i]
            if member in self:
                return member
            pool[i] = pool[-1]
            pool.pop()

    def pop_random(self) -> bytes:
        """Remove and return a uniformly chosen member."""
        if len(self) < SAMPLER_MIN and self.sampler is None:
            member = next(islice(self, random.randrange(len(self)), None))
            self.remove(member)
            return member
        pool = self._live_sampler().pool
        while True:
            i = random.randrange(len(pool))
            member = pool[i]
            pool[i] = pool[-1]
            pool.pop()
            if member in self:
                self.remove(member)
                return member


def set_encoding(value: Set) -> bytes:
    return _ENCODING_NAMES[value.encoding]


t_keys.TYPE_NAMES[Set] = b"set"
t_keys.OBJECT_ENCODINGS[Set] = set_encoding


class PackedIntset(Packed):
    """An intset-encoded set at rest: its members (packed.py)."""
    __slots__ = ()


class PackedListpackSet(Packed):
    """A listpack-encoded set at rest: its members (packed.py)."""
    __slots__ = ()


def pack_set(s: Set) -> tuple[type, tuple] | None:
    if s.encoding == HASHTABLE or len(s) > PACK_MAX or s.sampler is not None:
        return None
    return PackedIntset if s.encoding == INTSET else PackedListpackSet, tuple(s)


t_keys.TYPE_NAMES[PackedIntset] = t_keys.TYPE_NAMES[PackedListpackSet] = b"set"
t_keys.OBJECT_ENCODINGS[PackedIntset] = lambda packed: b"intset"
t_keys.OBJECT_ENCODINGS[PackedListpackSet] = lambda packed: b"listpack"
keyspace.PACKERS[Set] = pack_set
keyspace.UNPACKERS[PackedIntset] = lambda members: Set(members, INTSET)
keyspace.UNPACKERS[PackedListpackSet] = lambda members: Set(members, LISTPACK)


# -- encodings ---------------------------------------------------------------------------------

def _limits(ctx: Ctx) -> tuple[int, int, int]:
    """(set-max-intset-entries, set-max-listpack-entries, set-max-listpack-value)."""
    config = ctx.config
    return (config["set-max-intset-entries"], config["set-max-listpack-entries"],
            config["set-max-listpack-value"])


def _created_encoding(ctx: Ctx, first: bytes, size_hint: int) -> int:
    """The encoding of a set created for `first` and about `size_hint` members (setTypeCreate)."""
    intset_max, listpack_max, _ = _limits(ctx)
    if size_hint <= intset_max and parse_ll(first) is not None:
        return INTSET
    return LISTPACK if size_hint <= listpack_max else HASHTABLE


def add_members(ctx: Ctx, s: Set, members: list[bytes]) -> int:
    """Add members one by one with Valkey's encoding transitions; returns how many were new."""
    before = len(s)
    if s.encoding == HASHTABLE:
        if s.sampler is not None:
            new = [m for m in dict.fromkeys(members) if m not in s]
            s.update(new)
            s.added(new)
        else:
            s.update(members)
        return len(s) - before
    intset_max, listpack_max, value_max = _limits(ctx)
    intset_max = min(intset_max, _INTSET_HARD_LIMIT)
    for i, member in enumerate(members):
        if member in s:
            continue
        if s.encoding == INTSET:
            if parse_ll(member) is None:
                longest = max(map(len, s)) if s else 0
                fits = len(s) < listpack_max and max(len(member), longest) <= value_max
                s.encoding = LISTPACK if fits else HASHTABLE
            elif len(s) >= intset_max:
                s.encoding = HASHTABLE
        elif s.encoding == LISTPACK:
            if len(s) >= listpack_max or len(member) > value_max:
                s.encoding = HASHTABLE
        else:
            s.update(members[i:])
            break
        s.add(member)
    if s.sampler is not None and len(s) != before:
        s.sampler = None                      # a small set: rebuilding it is cheap
    return len(s) - before


def _result_encoding(ctx: Ctx, members: set, start: int) -> int:
    """The encoding Valkey gives a set built by adding `members` to an empty set of encoding
    `start` (INTSET for SUNIONSTORE/SDIFFSTORE/SMOVE, LISTPACK or INTSET for SINTERSTORE, which
    ends with maybeConvertToIntset). Order-independent as long as set-max-intset-entries is not
    below set-max-listpack-entries."""
    intset_max, listpack_max, value_max = _limits(ctx)
    n = len(members)
    if n <= max(intset_max, listpack_max):
        all_ints = all(parse_ll(m) is not None for m in members)
        if all_ints and n <= min(intset_max, _INTSET_HARD_LIMIT):
            return INTSET
        if all_ints and start == INTSET:
            return HASHTABLE
        if n <= listpack_max and (not members or max(map(len, members)) <= value_max):
            return LISTPACK
    return HASHTABLE


def _new_set(ctx: Ctx, members: set, start: int = INTSET) -> Set:
    return Set(members, _result_encoding(ctx, members, start))


def _ordered_result(ctx: Ctx, members: set, start: int) -> Iterable[bytes]:
    """A computed set's members in the order Valkey replies them (numeric if an intset)."""
    if _result_encoding(ctx, members, start) == INTSET:
        return sorted(members, key=int)
    return members


# -- lookups -----------------------------------------------------------------------------------

def _read_set(db: Db, key: bytes, slot: int) -> Set | None:
    """The set at key (counting a keyspace hit/miss), None if missing, WRONGTYPE otherwise."""
    return db.lookup_as(key, slot, Set, read=True)


def _write_set(db: Db, key: bytes, slot: int) -> Set | None:
    return db.lookup_as(key, slot, Set)


def _members_reply(members: Iterable[bytes], n: int, proto: int) -> bytes:
    """A set reply (RESP3 `~`)."""
    return resp.set_header(n, proto) + resp.bulks(members)


def _empty_set(proto: int) -> bytes:
    return EMPTY_SET3 if proto == 3 else EMPTY_ARRAY


# -- SADD, SREM, SMOVE -------------------------------------------------------------------------

@worker_command("sadd")
def sadd_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot = argv[1], ctx.db, ctx.slot
    s = _write_set(db, key, slot)
    members = argv[2:]
    if s is None:
        s = Set(encoding=_created_encoding(ctx, argv[2], len(members)))
        add_members(ctx, s, members)
        db.store(key, slot, s)
        return _integer(len(s))
    intset_max, listpack_max, _ = _limits(ctx)
    if ((s.encoding == LISTPACK and len(members) > listpack_max)
            or (s.encoding == INTSET and len(members) > intset_max)):
        s.encoding = HASHTABLE                # setTypeMaybeConvert
    added = add_members(ctx, s, members)
    if added:
        db.modified(key)
    return _integer(added)


@worker_command("srem")
def srem_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot = argv[1], ctx.db, ctx.slot
    s = _write_set(db, key, slot)
    if s is None:
        return ZERO
    before = len(s)
    s.difference_update(argv[2:])
    deleted = before - len(s)
    if deleted:
        s.removed()
        if s:
            db.modified(key)
        else:
            db.delete(key, slot)
    return _integer(deleted)


@worker_command("smove")
def smove_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    db, src_key, dst_key, member = ctx.db, argv[1], argv[2], argv[3]
    src_slot, dst_slot = ctx.slot, keyslot(dst_key)
    src = db.lookup(src_key, src_slot)
    dst = db.lookup(dst_key, dst_slot)
    if src is None:
        return ZERO
    if type(src) is not Set or (dst is not None and type(dst) is not Set):
        raise CommandError(_WRONGTYPE)
    if src is dst:
        return ONE if member in src else ZERO
    if member not in src:
        return ZERO
    src.discard(member)
    src.removed()
    if src:
        db.modified(src_key)
    else:
        db.delete(src_key, src_slot)
    if dst is None:
        dst = Set(encoding=_created_encoding(ctx, member, 1))
        add_members(ctx, dst, [member])
        db.store(dst_key, dst_slot, dst)
    elif add_members(ctx, dst, [member]):
        db.modified(dst_key)
    return ONE


# -- membership and size -----------------------------------------------------------------------

@worker_command("scard")
def scard_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _read_set(ctx.db, argv[1], ctx.slot)
    return ZERO if s is None else _integer(len(s))


@worker_command("sismember")
def sismember_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _read_set(ctx.db, argv[1], ctx.slot)
    return ONE if s is not None and argv[2] in s else ZERO


@worker_command("smismember")
def smismember_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _read_set(ctx.db, argv[1], ctx.slot)
    members = argv[2:]
    if s is None:
        return resp.array_header(len(members)) + ZERO * len(members)
    return resp.array_header(len(members)) + b"".join(ONE if m in s else ZERO for m in members)


@worker_command("smembers")
def smembers_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _read_set(ctx.db, argv[1], ctx.slot)
    if s is None:
        return _empty_set(ctx.proto)
    return _members_reply(s.ordered(), len(s), ctx.proto)


# -- random members ----------------------------------------------------------------------------

@worker_command("srandmember")
def srandmember_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        raise CommandError(errors.SYNTAX)
    if len(argv) == 3:
        count = arg_range(argv[2], -LONG_MAX, LONG_MAX)
        s = _read_set(ctx.db, argv[1], ctx.slot)
        if s is None or count == 0:
            return EMPTY_ARRAY
        members = _random_members(s, count)
        return resp.array_header(len(members)) + resp.bulks(members)
    s = _read_set(ctx.db, argv[1], ctx.slot)
    if s is None:
        return resp.null(ctx.proto)
    return _bulk(s.random_member())


def _random_members(s: Set, count: int) -> list[bytes]:
    """SRANDMEMBER's picks: -count with repetition, or min(count, size) distinct members (the
    whole set in reply order when count >= size)."""
    n = len(s)
    if count >= n:
        return list(s.ordered())
    if n >= SAMPLER_MIN and 4 * abs(count) < n:      # few picks from a big set: no full copy
        if count < 0:
            return [s.random_member() for _ in range(-count)]
        picked: dict[bytes, None] = {}
        while len(picked) < count:
            picked[s.random_member()] = None
        return list(picked)
    return random_sample(s, count)


@worker_command("spop")
def spop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        raise CommandError(errors.SYNTAX)
    key, db, slot = argv[1], ctx.db, ctx.slot
    if len(argv) == 3:
        return _spop_count(ctx, key, arg_ll_or(argv[2], errors.NOT_POSITIVE))
    s = _write_set(db, key, slot)
    if s is None:
        return resp.null(ctx.proto)
    member = s.pop_random()
    if s:
        db.modified(key)
    else:
        db.delete(key, slot)
    return _bulk(member)


def _spop_count(ctx: Ctx, key: bytes, count: int) -> bytes:
    if count < 0:
        raise CommandError(errors.NOT_POSITIVE)
    db, slot, proto = ctx.db, ctx.slot, ctx.proto
    s = _write_set(db, key, slot)
    if s is None or count == 0:
        return _empty_set(proto)
    size = len(s)
    if count >= size:
        db.delete(key, slot)
        return _members_reply(_ordered_result(ctx, s, INTSET), size, proto)
    remaining = size - count
    if remaining * SPOP_MOVE_STRATEGY_MUL > count:
        if size >= SAMPLER_MIN:
            popped = [s.pop_random() for _ in range(count)]
        else:
            popped = random.sample(tuple(s), count)
            s.difference_update(popped)
            s.removed()
        db.modified(key)
    else:
        # Valkey keeps the remaining members in a new set (CASE 3): a hashtable's become a
        # listpack if they fit one; the popped ones come in the old set's order.
        kept = random.sample(tuple(s), remaining)
        popped = s.difference(kept)
        if s.encoding == INTSET:
            popped = sorted(popped, key=int)
        _, listpack_max, value_max = _limits(ctx)
        encoding = s.encoding
        if encoding == HASHTABLE and remaining <= listpack_max and max(map(len, kept)) <= value_max:
            encoding = LISTPACK
        db.replace(key, slot, Set(kept, encoding))
    return _members_reply(popped, count, proto)


# -- SINTER, SINTERCARD, SINTERSTORE -----------------------------------------------------------

def _read_sets(ctx: Ctx, keys: list[bytes]) -> list[Set | None]:
    """The sets at keys (None for missing ones); WRONGTYPE if any key holds something else."""
    db = ctx.db
    return [_read_set(db, key, keyslot(key)) for key in keys]


def _intersection(sets: list[Set]) -> tuple[set, Set]:
    """The intersection of non-empty sets, and the smallest set (Valkey iterates that one)."""
    ordered = sorted(sets, key=len)
    smallest = ordered[0]
    return smallest.intersection(*ordered[1:]), smallest


@worker_command("sinter")
def sinter_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    sets = _read_sets(ctx, argv[1:])
    if None in sets:
        return _empty_set(ctx.proto)
    result, smallest = _intersection(sets)
    members = sorted(result, key=int) if smallest.encoding == INTSET else result
    return _members_reply(members, len(result), ctx.proto)


@worker_command("sintercard")
def sintercard_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    numkeys = arg_ll_or(argv[1], NUMKEYS_NOT_POSITIVE)
    if numkeys < 1:
        raise CommandError(NUMKEYS_NOT_POSITIVE)
    if numkeys > len(argv) - 2:
        raise CommandError(TOO_MANY_NUMKEYS)
    limit = 0
    i = 2 + numkeys
    while i < len(argv):
        if argv[i].lower() == b"limit" and i + 1 < len(argv):
            limit = arg_ll_or(argv[i + 1], LIMIT_NEGATIVE)
            if limit < 0:
                raise CommandError(LIMIT_NEGATIVE)
            i += 2
        else:
            raise CommandError(errors.SYNTAX)
    sets = _read_sets(ctx, argv[2:2 + numkeys])
    if None in sets:
        return ZERO
    cardinality = len(_intersection(sets)[0])
    return _integer(min(cardinality, limit) if limit else cardinality)


def arg_ll_or(value: bytes, message: str) -> int:
    """An integer argument whose error, if any, is `message` (getLongFromObjectOrReply)."""
    n = parse_ll(value)
    if n is None:
        raise CommandError(message)
    return n


def _store_result(ctx: Ctx, dst_key: bytes, result: Set) -> bytes:
    """Store a *STORE result (an empty one deletes the destination); reply its size."""
    slot = keyslot(dst_key)
    if result:
        ctx.db.store(dst_key, slot, result)
    elif ctx.db.lookup(dst_key, slot) is not None:
        ctx.db.delete(dst_key, slot)
    return _integer(len(result))


@worker_command("sinterstore")
def sinterstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    sets = _read_sets(ctx, argv[2:])
    if None in sets:
        return _store_result(ctx, argv[1], Set())
    result, smallest = _intersection(sets)
    start = INTSET if smallest.encoding == INTSET else LISTPACK
    return _store_result(ctx, argv[1], _new_set(ctx, result, start))


# -- SUNION, SDIFF and their STORE forms -------------------------------------------------------

def _union(sets: list[Set | None]) -> set:
    present = [s for s in sets if s is not None]
    return set().union(*present)


def _difference(sets: list[Set | None]) -> set:
    first = sets[0]
    if first is None:
        return set()
    return first.difference(*[s for s in sets[1:] if s is not None])


def _combined_reply(ctx: Ctx, members: set) -> bytes:
    """SUNION/SDIFF's reply: Valkey builds the result as a set of its own."""
    return _members_reply(_ordered_result(ctx, members, INTSET), len(members), ctx.proto)


@worker_command("sunion")
def sunion_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _combined_reply(ctx, _union(_read_sets(ctx, argv[1:])))


@worker_command("sdiff")
def sdiff_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _combined_reply(ctx, _difference(_read_sets(ctx, argv[1:])))


@worker_command("sunionstore")
def sunionstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _store_result(ctx, argv[1], _new_set(ctx, _union(_read_sets(ctx, argv[2:]))))


@worker_command("sdiffstore")
def sdiffstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _store_result(ctx, argv[1], _new_set(ctx, _difference(_read_sets(ctx, argv[2:]))))


# -- SSCAN -------------------------------------------------------------------------------------

@worker_command("sscan")
def sscan_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    cursor = t_keys.parse_cursor(argv[2])
    s = _read_set(ctx.db, argv[1], ctx.slot)
    if s is None:
        return EMPTY_SCAN
    count, pattern, _ = parse_scan_options(argv, b"set")
    if s.encoding == HASHTABLE:
        cursor, members = scan_members(s, cursor, count)
    else:
        cursor, members = 0, s.ordered()
    if pattern is not None:
        match = glob_matcher(pattern)
        members = [m for m in members if match(m)]
    return scan_reply(cursor, list(members), ctx.proto)
