"""Sorted set commands, after Valkey 8's t_zset.c (replies, errors and their order).

A sorted set is a `ZSet`: a dict member → score plus `order`, a SortedList of (score, member)
in Valkey's order (score, then member bytes, as the skiplist compares them). Only the methods
of ZSet may change one (they keep both views in step); plain reads may use the dict freely.

Valkey's two encodings are tracked, not built: `ZSet.skiplist` turns true under the same
conditions as Valkey converts a listpack (zset-max-listpack-entries / -value) and never turns
back, except for results built by the *STORE commands. What a listpack changes that a client
can see is kept: OBJECT ENCODING, ZSCAN answering in one call, -0 stored as 0, and the order of
ZRANDMEMBER's unique picks. Scores are printed as Valkey 8 does (d2string: integers as
integers, else fpconv's grisu2 digits, ported here bit for bit).
"""
from __future__ import annotations

import bisect
import math
import random
import re
from typing import Callable, Iterable, Iterator

from sortedcontainers import SortedList

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..glob import glob_matcher
from ..numbers import LLONG_MAX, arg_ll, arg_range, clamp_range
from ..slots import keyslot
from . import blocking, keyspace, t_keys
from .context import Ctx
from .packed import PACK_MAX, Packed
from .t_hash import parse_scan_options, scan_members

# -- error strings -----------------------------------------------------------------------------

NAN_RESULT = "ERR resulting score is not a number (NaN)"
XX_AND_NX = "ERR XX and NX options at the same time are not compatible"
GT_LT_NX = "ERR GT, LT, and/or NX options at the same time are not compatible"
INCR_ONE_PAIR = "ERR INCR option supports a single increment-element pair"
MIN_MAX_NOT_FLOAT = "ERR min or max is not a float"
MIN_MAX_NOT_LEX = "ERR min or max not valid string range item"
LIMIT_NEEDS_BY = "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
WITHSCORES_BYLEX = "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
WEIGHT_NOT_FLOAT = "ERR weight value is not a float"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"
NUMKEYS_POSITIVE = "ERR numkeys should be greater than 0"
COUNT_POSITIVE = "ERR count should be greater than 0"
MUST_BE_POSITIVE = "ERR value is out of range, must be positive"
VALUE_OUT_OF_RANGE = "ERR value is out of range"
_WRONGTYPE = errors.WRONGTYPE
_SYNTAX = errors.SYNTAX


def _needs_input_key(command: bytes) -> str:
    return f"ERR at least 1 input key is needed for '{command.decode('utf-8', 'replace').lower()}' command"


# -- strtod, as glibc reads a double -----------------------------------------------------------

_SPACES = b" \t\n\v\f\r"
_INF = math.inf
_STRTOD = re.compile(
    rb"([+-]?)(?:0x((?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
    rb"|(inf(?:inity)?)|(nan(?:\([0-9a-z_]*\))?))", re.IGNORECASE)
_MANTISSA_END = re.compile(rb"[eEpP]")


def strtod(text: bytes) -> tuple[float, int, bool]:
    """C's strtod over text: (value, bytes consumed (0: no conversion), ERANGE to 0 or ±inf)."""
    start = len(text) - len(text.lstrip(_SPACES))
    m = _STRTOD.match(text, start)
    if m is None:
        return 0.0, 0, False
    sign, hexadecimal, decimal, infinity, _nan = m.groups()
    if decimal is not None:
        value = float(decimal)
        mantissa = decimal
    elif hexadecimal is not None:
        try:
            value = float.fromhex("0x" + hexadecimal.decode("ascii"))
        except OverflowError:
            value = _INF
        mantissa = hexadecimal
    else:
        value = _INF if infinity is not None else math.nan
        mantissa = None
    erange = False
    if mantissa is not None:
        if value == _INF:
            erange = True
        elif value == 0.0:
            cut = _MANTISSA_END.search(mantissa)
            digits = mantissa[:cut.start()] if cut else mantissa
            erange = bool(digits.strip(b"0."))
    return (-value if sign == b"-" else value), m.end(), erange


def string2d(text: bytes) -> float | None:
    """Valkey's string2d: the whole string a double, no leading space, no NaN, no over- or
    underflow (getDoubleFromObject)."""
    if text.isdigit() and len(text) <= 15:     # plain digits (most scores): exact either way
        return float(text)
    if not text or text[0] in _SPACES:
        return None
    value, end, erange = strtod(text)
    if end != len(text) or erange or value != value:
        return None
    return value


def arg_double(value: bytes, message: str = errors.NOT_FLOAT) -> float:
    """getDoubleFromObjectOrReply: a double argument or the given error."""
    score = string2d(value)
    if score is None:
        raise CommandError(message)
    return score


def arg_ll_or(value: bytes, message: str) -> int:
    """getLongFromObjectOrReply with a message of its own."""
    try:
        return arg_ll(value)
    except CommandError:
        raise CommandError(message) from None


def arg_positive(value: bytes, message: str) -> int:
    """getPositiveLongFromObjectOrReply with a message: the message for any bad value."""
    n = arg_ll_or(value, message)
    if n < 0:
        raise CommandError(message)
    return n


d2string = resp.format_double
reply_double = resp.double


# -- the sorted set type -----------------------------------------------------------------------

def _rebuild(items: list[tuple[bytes, float]], skiplist: bool) -> "ZSet":
    zset = ZSet(skiplist)
    dict.update(zset, items)
    zset.order.update((score, member) for member, score in items)
    zset.fit_order()
    return zset


SMALL_ORDER = 128     # up to this many elements `order` is a plain sorted list


class SmallOrder(list):
    """The part of SortedList's interface ZSet uses, on one plain list: a small zset's order
    costs a list instead of a SortedList's several objects (insertions are O(n), n <= 128)."""
    __slots__ = ()

    def add(self, item: tuple[float, bytes]) -> None:
        bisect.insort(self, item)

    def remove(self, item: tuple[float, bytes]) -> None:
        del self[bisect.bisect_left(self, item)]

    def update(self, items: Iterable[tuple[float, bytes]]) -> None:
        self.extend(items)
        self.sort()

    def bisect_left(self, item) -> int:
        return bisect.bisect_left(self, item)

    def bisect_right(self, item) -> int:
        return bisect.bisect_right(self, item)

    def islice(self, start: int | None = None, stop: int | None = None, reverse: bool = False):
        part = self[start:stop]
        return reversed(part) if reverse else iter(part)


class ZSet(dict):
    """member → score, with `order`: SortedList of (score, member), Valkey's zset order.

    Change it only through its methods (or `z[m] = s` / `del z[m]`, which keep both views);
    dict.update/pop/setdefault would leave `order` behind."""

    __slots__ = ("order", "skiplist", "scan_order")

    def __init__(self, skiplist: bool = False) -> None:
        super().__init__()
        self.order: SmallOrder | SortedList = SmallOrder()
        self.skiplist = skiplist            # Valkey's encoding: False listpack, True skiplist
        self.scan_order: list[bytes] | None = None      # ZSCAN's snapshot (t_hash.scan_members)

    def __reduce__(self):
        return _rebuild, (list(self.items()), self.skiplist)

    def copy(self) -> "ZSet":
        return _rebuild(list(self.items()), self.skiplist)

    # -- writes ------------------------------------------------------------------------------
    def set_score(self, member: bytes, score: float) -> None:
        """Insert member or move it to score (no encoding conversion here: see zadd_apply)."""
        if score == 0 and not self.skiplist:
            score = 0.0                     # a listpack stores -0 as the integer 0
        old = dict.get(self, member)
        if old is not None:
            self.order.remove((old, member))
        dict.__setitem__(self, member, score)
        self.order.add((score, member))
        if len(self) > SMALL_ORDER and type(self.order) is SmallOrder:
            self.order = SortedList(self.order)

    __setitem__ = set_score

    def fit_order(self) -> None:
        """After a bulk load of `order`: a SortedList once the zset is not small."""
        if len(self) > SMALL_ORDER and type(self.order) is SmallOrder:
            self.order = SortedList(self.order)

    def discard(self, member: bytes) -> bool:
        score = dict.pop(self, member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def __delitem__(self, member: bytes) -> None:
        if not self.discard(member):
            raise KeyError(member)

    def pop_first(self, from_max: bool = False) -> tuple[bytes, float]:
        """Remove and return (member, score) of the lowest (or highest) element."""
        score, member = self.order.pop(-1 if from_max else 0)
        dict.__delitem__(self, member)
        return member, score

    def remove_span(self, lo: int, hi: int) -> int:
        """Remove the elements of ranks lo..hi-1; returns how many."""
        if lo >= hi:
            return 0
        gone = self.order[lo:hi]
        del self.order[lo:hi]
        for _score, member in gone:
            dict.__delitem__(self, member)
        return len(gone)

    # -- reads -------------------------------------------------------------------------------
    def rank(self, member: bytes) -> int | None:
        score = dict.get(self, member)
        return None if score is None else self.order.bisect_left((score, member))

    def ordered(self, reverse: bool = False) -> Iterator[tuple[float, bytes]]:
        """(score, member) pairs lowest first (or highest first)."""
        return reversed(self.order) if reverse else iter(self.order)

    @classmethod
    def from_pairs(cls, pairs: list[tuple[float, bytes]], config) -> "ZSet":
        """A new zset of (score, member) pairs with distinct members, encoded as Valkey encodes
        a result it built (zsetConvertToListpackIfNeeded)."""
        maxlen = max((len(m) for _s, m in pairs), default=0)
        listpack = (len(pairs) <= config["zset-max-listpack-entries"]
                    and maxlen <= config["zset-max-listpack-value"])
        if listpack:
            pairs = [(0.0, m) if s == 0 else (s, m) for s, m in pairs]
        zset = cls(not listpack)
        zset.order.update(pairs)
        dict.update(zset, ((m, s) for s, m in pairs))
        zset.fit_order()
        return zset


def zset_encoding(zset: ZSet) -> bytes:
    return b"skiplist" if zset.skiplist else b"listpack"


t_keys.TYPE_NAMES[ZSet] = b"zset"
t_keys.OBJECT_ENCODINGS[ZSet] = zset_encoding


class PackedZSet(Packed):
    """A listpack-encoded sorted set at rest: (members, scores) in the dict's order (packed.py)."""
    __slots__ = ()


def pack_zset(zset: ZSet) -> tuple[type, tuple] | None:
    if zset.skiplist or len(zset) > PACK_MAX:
        return None
    return PackedZSet, (tuple(zset), tuple(map(compact_score, dict.values(zset))))


def compact_score(score: float) -> float | int:
    """A whole score of 32 bits packs as an int (marshal: 5 bytes, a float's 9); -0.0 stays."""
    if score.is_integer() and -_INT32 < score < _INT32 and (score or math.copysign(1.0, score) > 0):
        return int(score)
    return score


_INT32 = float(1 << 31)


def unpack_zset(parts: tuple) -> ZSet:
    members, scores = parts
    scores = tuple(map(float, scores))
    zset = ZSet()
    dict.update(zset, zip(members, scores))
    zset.order.update(zip(scores, members))
    return zset


t_keys.TYPE_NAMES[PackedZSet] = b"zset"
t_keys.OBJECT_ENCODINGS[PackedZSet] = lambda packed: b"listpack"
keyspace.PACKERS[ZSet] = pack_zset
keyspace.UNPACKERS[PackedZSet] = unpack_zset


def _lookup(ctx: Ctx, key: bytes, slot: int, read: bool = True) -> ZSet | None:
    """The zset at key, None if missing, WRONGTYPE for anything else."""
    return ctx.db.lookup_as(key, slot, ZSet, read)


def store_zset(ctx: Ctx, key: bytes, slot: int, pairs: list[tuple[float, bytes]]) -> int:
    """Write a command's result zset to key (setKey: the old value and TTL go), or delete key
    when there is none; returns the result's size."""
    if pairs:
        ctx.db.store(key, slot, ZSet.from_pairs(pairs, ctx.config))
    elif ctx.db.lookup(key, slot) is not None:
        ctx.db.delete(key, slot)
    return len(pairs)


# -- replies -----------------------------------------------------------------------------------

_bulk = resp.bulk
_PAIR3 = b"*2\r\n"


def pairs_reply(items: list[tuple[float, bytes]], withscores: bool, proto: int) -> bytes:
    """Members (and scores): flat in RESP2, [member, score] pairs in RESP3."""
    n = len(items)
    if not withscores:
        return resp.array_header(n) + resp.bulks([m for _s, m in items])
    if proto == 2:
        return resp.array_header(2 * n) + b"".join(
            [_bulk(m) + _bulk(d2string(s)) for s, m in items])
    return resp.array_header(n) + b"".join(
        [_PAIR3 + _bulk(m) + b"," + d2string(s) + b"\r\n" for s, m in items])


# -- ZADD, ZINCRBY -----------------------------------------------------------------------------

ZADD_NX, ZADD_XX, ZADD_GT, ZADD_LT, ZADD_INCR, ZADD_CH = (1 << i for i in range(6))
_ZADD_OPTIONS = {b"nx": ZADD_NX, b"xx": ZADD_XX, b"gt": ZADD_GT, b"lt": ZADD_LT,
                 b"incr": ZADD_INCR, b"ch": ZADD_CH}


def zadd_options(argv: list[bytes], start: int, allowed: int = 0x3F) -> tuple[int, int]:
    """Leading ZADD options from argv[start:]: (flags, index of the first score)."""
    flags = 0
    i = start
    while i < len(argv):
        flag = _ZADD_OPTIONS.get(argv[i].lower(), 0) & allowed
        if not flag:
            break
        flags |= flag
        i += 1
    return flags, i


def zadd_apply(ctx: Ctx, key: bytes, slot: int, scores: list[float], members: list[bytes],
               flags: int) -> bytes:
    """The work and reply of ZADD/ZINCRBY/GEOADD once the arguments are parsed (zsetAdd for
    each pair, with Valkey's listpack → skiplist conversions)."""
    incr = flags & ZADD_INCR
    zset = _lookup(ctx, key, slot, read=False)
    if zset is None and flags & ZADD_XX:
        return resp.null(ctx.proto) if incr else resp.ZERO
    entries = ctx.config["zset-max-listpack-entries"]
    value_max = ctx.config["zset-max-listpack-value"]
    maxlen = max(map(len, members))
    too_big = len(members) > entries or maxlen > value_max       # zsetTypeCreate's size hints
    if zset is None:
        zset = ZSet(too_big)
        ctx.db.store(key, slot, zset)
    elif too_big:
        zset.skiplist = True
    nx, xx = flags & ZADD_NX, flags & ZADD_XX
    gt, lt = flags & ZADD_GT, flags & ZADD_LT
    added = updated = processed = 0
    score = 0.0
    nan = False
    for score, member in zip(scores, members):
        current = zset.get(member)
        if current is not None:
            if nx:
                continue
            if incr:
                score += current
                if score != score:
                    nan = True
                    break
            if (lt and score >= current) or (gt and score <= current):
                continue
            processed += 1
            if score != current:
                zset.set_score(member, score)
                updated += 1
        elif not xx:
            if not zset.skiplist and (len(zset) + 1 > entries or len(member) > value_max):
                zset.skiplist = True
            zset.set_score(member, score)
            added += 1
            processed += 1
    if added or updated:
        ctx.db.modified(key)
    if nan:
        raise CommandError(NAN_RESULT)
    if incr:
        return reply_double(score, ctx.proto) if processed else resp.null(ctx.proto)
    return resp.integer(added + updated if flags & ZADD_CH else added)


def _zadd_generic(ctx: Ctx, argv: list[bytes], flags: int) -> bytes:
    flags_found, first = zadd_options(argv, 2)
    flags |= flags_found
    pairs = len(argv) - first
    if pairs % 2 or not pairs:
        raise CommandError(_SYNTAX)
    if flags & ZADD_NX and flags & ZADD_XX:
        raise CommandError(XX_AND_NX)
    if (flags & ZADD_NX and flags & (ZADD_GT | ZADD_LT)) or (flags & ZADD_GT and flags & ZADD_LT):
        raise CommandError(GT_LT_NX)
    if flags & ZADD_INCR and pairs > 2:
        raise CommandError(INCR_ONE_PAIR)
    scores = [arg_double(argv[i]) for i in range(first, len(argv), 2)]
    return zadd_apply(ctx, argv[1], ctx.slot, scores, argv[first + 1::2], flags)


@worker_command("zadd")
def zadd_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zadd_generic(ctx, argv, 0)


@worker_command("zincrby")
def zincrby_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zadd_generic(ctx, argv, ZADD_INCR)


# -- ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK -------------------------------------------------------

@worker_command("zrem")
def zrem_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, slot = argv[1], ctx.slot
    zset = _lookup(ctx, key, slot, read=False)
    if zset is None:
        return resp.ZERO
    deleted = 0
    for member in argv[2:]:
        if zset.discard(member):
            deleted += 1
        if not zset:
            ctx.db.delete(key, slot)
            break
    if deleted and zset:
        ctx.db.modified(key)
    return resp.integer(deleted)


@worker_command("zcard")
def zcard_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    zset = _lookup(ctx, argv[1], ctx.slot)
    return resp.integer(len(zset)) if zset is not None else resp.ZERO


@worker_command("zscore")
def zscore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    zset = _lookup(ctx, argv[1], ctx.slot)
    score = zset.get(argv[2]) if zset is not None else None
    return resp.null(ctx.proto) if score is None else reply_double(score, ctx.proto)


@worker_command("zmscore")
def zmscore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    zset = _lookup(ctx, argv[1], ctx.slot)
    nil = resp.null(ctx.proto)
    get = zset.get if zset is not None else {}.get
    out = [resp.array_header(len(argv) - 2)]
    for member in argv[2:]:
        score = get(member)
        out.append(nil if score is None else reply_double(score, ctx.proto))
    return b"".join(out)


def _zrank(ctx: Ctx, argv: list[bytes], reverse: bool) -> bytes:
    if len(argv) > 4:
        raise CommandError(errors.wrong_arity(argv[0].decode("utf-8", "replace").lower()))
    withscore = len(argv) == 4
    if withscore and argv[3].lower() != b"withscore":
        raise CommandError(_SYNTAX)
    nil = resp.null_array(ctx.proto) if withscore else resp.null(ctx.proto)
    zset = _lookup(ctx, argv[1], ctx.slot)
    if zset is None:
        return nil
    rank = zset.rank(argv[2])
    if rank is None:
        return nil
    if reverse:
        rank = len(zset) - 1 - rank
    if not withscore:
        return resp.integer(rank)
    return b"*2\r\n" + resp.integer(rank) + reply_double(zset[argv[2]], ctx.proto)


@worker_command("zrank")
def zrank_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrank(ctx, argv, False)


@worker_command("zrevrank")
def zrevrank_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrank(ctx, argv, True)


# -- ranges: by rank, by score, by lex ---------------------------------------------------------

class ScoreRange:
    """zrangespec: min/max with their exclusive flags."""

    __slots__ = ("min", "max", "minex", "maxex")

    def __init__(self, low: float, high: float, minex: bool, maxex: bool) -> None:
        self.min, self.max, self.minex, self.maxex = low, high, minex, maxex

    def empty(self) -> bool:
        return self.min > self.max or (self.min == self.max and (self.minex or self.maxex))

    def span(self, zset: ZSet) -> tuple[int, int]:
        """Ranks lo..hi-1 of the elements inside the range (lo >= hi: none)."""
        if self.empty() or not zset:
            return 0, 0
        order = zset.order
        low = math.nextafter(self.min, _INF) if self.minex else self.min
        lo = order.bisect_left((low,))
        if self.max == _INF and not self.maxex:
            hi = len(order)
        else:
            hi = order.bisect_left((self.max if self.maxex else math.nextafter(self.max, _INF),))
        return lo, hi


def _range_bound(text: bytes) -> tuple[float, bool] | None:
    """One end of zslParseRange: '(' makes it exclusive; strtod up to a NUL or the end."""
    exclusive = text[:1] == b"("
    body = text[1:] if exclusive else text
    value, end, _erange = strtod(body)
    if (end < len(body) and body[end] != 0) or value != value:
        return None
    return value, exclusive


def parse_score_range(low: bytes, high: bytes) -> ScoreRange:
    a, b = _range_bound(low), _range_bound(high)
    if a is None or b is None:
        raise CommandError(MIN_MAX_NOT_FLOAT)
    return ScoreRange(a[0], b[0], a[1], b[1])


_LEX_MIN, _LEX_VALUE, _LEX_MAX = -1, 0, 1


class LexRange:
    """zlexrangespec: each end is '-', '+' or a member, inclusive '[' or exclusive '('."""

    __slots__ = ("min_kind", "min", "minex", "max_kind", "max", "maxex")

    def __init__(self, low: tuple[int, bytes, bool], high: tuple[int, bytes, bool]) -> None:
        self.min_kind, self.min, self.minex = low
        self.max_kind, self.max, self.maxex = high

    def empty(self) -> bool:
        """sdscmplex(min, max) > 0, or == 0 with an exclusive end."""
        a, b = self.min_kind, self.max_kind
        if a == b and a != _LEX_VALUE:
            cmp = 0
        elif a == _LEX_MIN or b == _LEX_MAX:
            cmp = -1
        elif a == _LEX_MAX or b == _LEX_MIN:
            cmp = 1
        else:
            cmp = (self.min > self.max) - (self.min < self.max)
        return cmp > 0 or (cmp == 0 and (self.minex or self.maxex))

    def gte_min(self, member: bytes) -> bool:
        if self.min_kind != _LEX_VALUE:
            return self.min_kind == _LEX_MIN
        return member > self.min if self.minex else member >= self.min

    def lte_max(self, member: bytes) -> bool:
        if self.max_kind != _LEX_VALUE:
            return self.max_kind == _LEX_MAX
        return member < self.max if self.maxex else member <= self.max

    def span(self, zset: ZSet) -> tuple[int, int] | None:
        """Ranks lo..hi-1 inside the range when all scores are equal (the case lex ranges are
        meant for, where bisection answers as Valkey's walk does), else None."""
        order = zset.order
        n = len(order)
        if self.empty() or not n:
            return 0, 0
        score = order[0][0]
        if order[-1][0] != score:
            return None
        if self.min_kind == _LEX_VALUE:
            lo = (order.bisect_right if self.minex else order.bisect_left)((score, self.min))
        else:
            lo = 0 if self.min_kind == _LEX_MIN else n
        if self.max_kind == _LEX_VALUE:
            hi = (order.bisect_left if self.maxex else order.bisect_right)((score, self.max))
        else:
            hi = n if self.max_kind == _LEX_MAX else 0
        return lo, hi

    def first_in_range(self, zset: ZSet, reverse: bool) -> int | None:
        """zzlFirstInLexRange / zzlLastInLexRange: a listpack walk, for mixed scores."""
        order = zset.order
        n = len(order)
        if self.empty() or not n:
            return None
        if not self.gte_min(order[-1][1]) or not self.lte_max(order[0][1]):
            return None
        if reverse:
            for i, (_score, member) in enumerate(reversed(order)):
                if self.lte_max(member):
                    return n - 1 - i if self.gte_min(member) else None
        else:
            for i, (_score, member) in enumerate(order):
                if self.gte_min(member):
                    return i if self.lte_max(member) else None
        return None


def _lex_bound(text: bytes) -> tuple[int, bytes, bool] | None:
    first = text[:1]
    if first == b"+":
        return (_LEX_MAX, b"", True) if len(text) == 1 else None
    if first == b"-":
        return (_LEX_MIN, b"", True) if len(text) == 1 else None
    if first == b"(":
        return _LEX_VALUE, text[1:], True
    if first == b"[":
        return _LEX_VALUE, text[1:], False
    return None


def parse_lex_range(low: bytes, high: bytes) -> LexRange:
    a, b = _lex_bound(low), _lex_bound(high)
    if a is None or b is None:
        raise CommandError(MIN_MAX_NOT_LEX)
    return LexRange(a, b)


def _window(order: SortedList, lo: int, hi: int, offset: int, limit: int, reverse: bool,
            skiplist: bool) -> list[tuple[float, bytes]]:
    """LIMIT offset count over ranks lo..hi-1, as Valkey walks them: a listpack walks past
    the end on a negative offset (nothing); a skiplist's zslNthInRange counts it from the
    other end of the range."""
    if lo >= hi or limit == 0 or (offset < 0 and not skiplist):
        return []
    if not reverse:
        first = lo + offset if offset >= 0 else hi + offset
        if first < lo or first >= hi:
            return []
        stop = hi if limit < 0 else min(hi, first + limit)
        return order[first:stop]
    first = hi - 1 - offset if offset >= 0 else lo - offset - 1
    if first < lo or first >= hi:
        return []
    start = lo if limit < 0 else max(lo, first + 1 - limit)
    items = order[start:first + 1]
    items.reverse()
    return items


def rank_items(zset: ZSet, start: int, end: int, reverse: bool) -> list[tuple[float, bytes]]:
    """ZRANGE by rank with Valkey's index sanitizing (negative from the end, clamped)."""
    n = len(zset)
    span = clamp_range(start, end, n)
    if span is None:
        return []
    start, end = span
    if not reverse:
        return zset.order[start:end + 1]
    items = zset.order[n - 1 - end:n - start]
    items.reverse()
    return items


def score_items(zset: ZSet, rng: ScoreRange, offset: int = 0, limit: int = -1,
                reverse: bool = False) -> list[tuple[float, bytes]]:
    if offset > 0 and offset >= len(zset):
        return []
    lo, hi = rng.span(zset)
    return _window(zset.order, lo, hi, offset, limit, reverse, zset.skiplist)


def lex_items(zset: ZSet, rng: LexRange, offset: int = 0, limit: int = -1,
              reverse: bool = False) -> list[tuple[float, bytes]]:
    span = rng.span(zset)
    if span is not None:
        return _window(zset.order, span[0], span[1], offset, limit, reverse, zset.skiplist)
    first = rng.first_in_range(zset, reverse)           # mixed scores: the listpack walk
    if first is None or offset < 0:
        return []
    order = zset.order
    start = first - offset if reverse else first + offset
    if not 0 <= start < len(order):
        return []
    walk = (order.islice(0, start + 1, reverse=True) if reverse else order.islice(start))
    inside = rng.gte_min if reverse else rng.lte_max
    out = []
    for item in walk:
        if limit == 0 or not inside(item[1]):
            break
        out.append(item)
        limit -= 1
    return out


def _lex_walk_span(zset: ZSet, rng: LexRange) -> tuple[int, int]:
    """Ranks lo..hi-1 that ZLEXCOUNT / ZREMRANGEBYLEX cover (bisection or listpack walk)."""
    span = rng.span(zset)
    if span is not None:
        return span
    first = rng.first_in_range(zset, False)
    if first is None:
        return 0, 0
    hi = first
    for _score, member in zset.order.islice(first):
        if not rng.lte_max(member):
            break
        hi += 1
    return first, hi


# -- ZRANGE and friends ------------------------------------------------------------------------

_AUTO, _RANK, _SCORE, _LEX = range(4)


def _zrange_generic(ctx: Ctx, argv: list[bytes], src_index: int, store: bool, kind: int,
                    reverse: bool | None) -> bytes:
    """ZRANGE, ZRANGESTORE, Z[REV]RANGE[BYSCORE|BYLEX] (zrangeGenericCommand)."""
    withscores = False
    offset, limit = 0, -1
    n = len(argv)
    j = src_index + 3
    while j < n:
        option = argv[j].lower()
        if not store and option == b"withscores":
            withscores = True
        elif option == b"limit" and n - j - 1 >= 2:
            offset = arg_ll(argv[j + 1])
            limit = arg_ll(argv[j + 2])
            j += 2
        elif reverse is None and option == b"rev":
            reverse = True
        elif kind == _AUTO and option == b"bylex":
            kind = _LEX
        elif kind == _AUTO and option == b"byscore":
            kind = _SCORE
        else:
            raise CommandError(_SYNTAX)
        j += 1
    reverse = bool(reverse)
    if kind == _AUTO:
        kind = _RANK
    if limit != -1 and kind == _RANK:
        raise CommandError(LIMIT_NEEDS_BY)
    if withscores and kind == _LEX:
        raise CommandError(WITHSCORES_BYLEX)
    low, high = argv[src_index + 1], argv[src_index + 2]
    if reverse and kind != _RANK:
        low, high = high, low
    if kind == _RANK:
        start, end = arg_ll(low), arg_ll(high)
    elif kind == _SCORE:
        score_range = parse_score_range(low, high)
    else:
        lex_range = parse_lex_range(low, high)
    src = argv[src_index]
    zset = _lookup(ctx, src, keyslot(src) if store else ctx.slot)
    if zset is None:
        items = []
    elif kind == _RANK:
        items = rank_items(zset, start, end, reverse)
    elif kind == _SCORE:
        items = score_items(zset, score_range, offset, limit, reverse)
    else:
        items = lex_items(zset, lex_range, offset, limit, reverse)
    if store:
        return resp.integer(store_zset(ctx, argv[1], ctx.slot, items))
    if zset is None:
        return resp.EMPTY_ARRAY
    return pairs_reply(items, withscores, ctx.proto)


@worker_command("zrange")
def zrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _AUTO, None)


@worker_command("zrangestore")
def zrangestore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 2, True, _AUTO, None)


@worker_command("zrevrange")
def zrevrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _RANK, True)


@worker_command("zrangebyscore")
def zrangebyscore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _SCORE, False)


@worker_command("zrevrangebyscore")
def zrevrangebyscore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _SCORE, True)


@worker_command("zrangebylex")
def zrangebylex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _LEX, False)


@worker_command("zrevrangebylex")
def zrevrangebylex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zrange_generic(ctx, argv, 1, False, _LEX, True)


@worker_command("zcount")
def zcount_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    rng = parse_score_range(argv[2], argv[3])
    zset = _lookup(ctx, argv[1], ctx.slot)
    if zset is None:
        return resp.ZERO
    lo, hi = rng.span(zset)
    return resp.integer(max(hi - lo, 0))


@worker_command("zlexcount")
def zlexcount_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    rng = parse_lex_range(argv[2], argv[3])
    zset = _lookup(ctx, argv[1], ctx.slot)
    if zset is None:
        return resp.ZERO
    lo, hi = _lex_walk_span(zset, rng)
    return resp.integer(max(hi - lo, 0))


def _zremrange(ctx: Ctx, argv: list[bytes], span: Callable[[ZSet], tuple[int, int]]) -> bytes:
    key, slot = argv[1], ctx.slot
    zset = _lookup(ctx, key, slot, read=False)
    if zset is None:
        return resp.ZERO
    lo, hi = span(zset)
    deleted = zset.remove_span(lo, hi)
    if deleted:
        if zset:
            ctx.db.modified(key)
        else:
            ctx.db.delete(key, slot)
    return resp.integer(deleted)


@worker_command("zremrangebyrank")
def zremrangebyrank_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    start, end = arg_ll(argv[2]), arg_ll(argv[3])

    def span(zset: ZSet) -> tuple[int, int]:
        n = len(zset)
        lo = start + n if start < 0 else start
        hi = end + n if end < 0 else end
        lo = max(lo, 0)
        if lo > hi or lo >= n:
            return 0, 0
        return lo, min(hi, n - 1) + 1
    return _zremrange(ctx, argv, span)


@worker_command("zremrangebyscore")
def zremrangebyscore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zremrange(ctx, argv, parse_score_range(argv[2], argv[3]).span)


@worker_command("zremrangebylex")
def zremrangebylex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    rng = parse_lex_range(argv[2], argv[3])
    return _zremrange(ctx, argv, lambda zset: _lex_walk_span(zset, rng))


# -- ZUNION, ZINTER, ZDIFF (+STORE), ZINTERCARD ------------------------------------------------

_UNION, _INTER, _DIFF = range(3)
_SUM, _MIN, _MAX = range(3)
_AGGREGATES = {b"sum": _SUM, b"min": _MIN, b"max": _MAX}


def _is_set(value) -> bool:
    return t_keys.TYPE_NAMES.get(type(value)) == b"set"


def _source_items(value) -> Iterable[tuple[bytes, float]]:
    """(member, score) of an input: a zset highest first (zuiInitIterator walks it backwards),
    a set's members with score 1."""
    if type(value) is ZSet:
        return ((m, s) for s, m in reversed(value.order))
    return ((m if type(m) is bytes else b"%d" % m, 1.0) for m in value)


def _source_score(value, member: bytes) -> float | None:
    if type(value) is ZSet:
        return value.get(member)
    return 1.0 if member in value else None


def _aggregate(target: float, value: float, how: int) -> float:
    if how == _SUM:
        total = target + value
        return 0.0 if total != total else total      # inf + -inf counts as 0
    if how == _MIN:
        return value if value < target else target
    return value if value > target else target


def _union(sources: list, weights: list[float], how: int) -> dict[bytes, float]:
    acc: dict[bytes, float] = {}
    for value, weight in zip(sources, weights):
        if not value:
            continue
        for member, score in _source_items(value):
            score *= weight
            if score != score:
                score = 0.0
            current = acc.get(member)
            acc[member] = score if current is None else _aggregate(current, score, how)
    return acc


def _inter(sources: list, weights: list[float], how: int, limit: int = 0) -> dict[bytes, float]:
    out: dict[bytes, float] = {}
    first = sources[0]
    if not first:
        return out
    for member, score in _source_items(first):
        total = weights[0] * score
        if total != total:
            total = 0.0
        for other, weight in zip(sources[1:], weights[1:]):
            found = score if other is first else _source_score(other, member)
            if found is None:
                break
            total = _aggregate(total, found * weight, how)
        else:
            out[member] = total
            if limit and len(out) >= limit:
                break
    return out


def _diff(sources: list) -> dict[bytes, float]:
    first = sources[0]
    if not first or any(other is first for other in sources[1:]):
        return {}
    others = [s for s in sources[1:] if s]
    return {m: s for m, s in _source_items(first)
            if not any(_source_score(o, m) is not None for o in others)}


def _zsetop(ctx: Ctx, argv: list[bytes], numkeys_index: int, store: bool, op: int,
            cardinality_only: bool = False) -> bytes:
    """zunionInterDiffGenericCommand."""
    setnum = arg_ll(argv[numkeys_index])
    if setnum < 1:
        raise CommandError(_needs_input_key(argv[0]))
    n = len(argv)
    if setnum > n - (numkeys_index + 1):
        raise CommandError(_SYNTAX)
    db = ctx.db
    keys = argv[numkeys_index + 1:numkeys_index + 1 + setnum]
    sources = []
    for key in keys:
        value = db.lookup_read(key, keyslot(key))
        if value is not None and type(value) is not ZSet and not _is_set(value):
            raise CommandError(_WRONGTYPE)
        sources.append(value)
    weights = [1.0] * setnum
    how, withscores, limit = _SUM, False, 0
    j = numkeys_index + 1 + setnum
    while j < n:
        option = argv[j].lower()
        remaining = n - j
        if op != _DIFF and not cardinality_only and remaining >= setnum + 1 and option == b"weights":
            weights = [arg_double(w, WEIGHT_NOT_FLOAT) for w in argv[j + 1:j + 1 + setnum]]
            j += 1 + setnum
        elif op != _DIFF and not cardinality_only and remaining >= 2 and option == b"aggregate":
            how = _AGGREGATES.get(argv[j + 1].lower())
            if how is None:
                raise CommandError(_SYNTAX)
            j += 2
        elif not store and not cardinality_only and option == b"withscores":
            withscores = True
            j += 1
        elif cardinality_only and remaining >= 2 and option == b"limit":
            limit = arg_positive(argv[j + 1], LIMIT_NEGATIVE)
            j += 2
        else:
            raise CommandError(_SYNTAX)
    if op != _DIFF:     # smallest first (a stable sort, as glibc's qsort merges)
        order = sorted(range(setnum), key=lambda i: len(sources[i]) if sources[i] else 0)
        sources = [sources[i] for i in order]
        weights = [weights[i] for i in order]
    if op == _INTER:
        result = _inter(sources, weights, how, limit if cardinality_only else 0)
    elif op == _UNION:
        result = _union(sources, weights, how)
    else:
        result = _diff(sources)
    if cardinality_only:
        return resp.integer(len(result))
    pairs = sorted((s, m) for m, s in result.items())
    if store:
        return resp.integer(store_zset(ctx, argv[1], ctx.slot, pairs))
    return pairs_reply(pairs, withscores, ctx.proto)


@worker_command("zunion")
def zunion_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 1, False, _UNION)


@worker_command("zinter")
def zinter_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 1, False, _INTER)


@worker_command("zdiff")
def zdiff_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 1, False, _DIFF)


@worker_command("zunionstore")
def zunionstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 2, True, _UNION)


@worker_command("zinterstore")
def zinterstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 2, True, _INTER)


@worker_command("zdiffstore")
def zdiffstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 2, True, _DIFF)


@worker_command("zintercard")
def zintercard_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zsetop(ctx, argv, 1, False, _INTER, cardinality_only=True)


# -- ZPOPMIN, ZPOPMAX, ZMPOP -------------------------------------------------------------------

def zset_pop_reply(ctx: Ctx, key: bytes, zset: ZSet, pop_max: bool, count: int, *,
                   emit_key: bool = False, nested: bool = False, slot: int | None = None) -> bytes:
    """Pop up to `count` elements (-1: one, the plain form) from the non-empty zset at key,
    delete the key when emptied, signal the write, and build genericZpopCommand's reply:

    - ZPOPMIN/ZPOPMAX: emit_key=False; nested=(RESP3 and count != -1)  → [m, s, …] / [[m, s], …]
    - BZPOPMIN/BZPOPMAX: emit_key=True, nested=False, count=-1         → [key, m, s]
    - ZMPOP/BZMPOP: emit_key=True, nested=True                         → [key, [[m, s], …]]
    """
    if count == 0:
        return resp.EMPTY_ARRAY
    n = min(1 if count == -1 else count, len(zset))
    proto = ctx.proto
    out = []
    for _ in range(n):
        member, score = zset.pop_first(pop_max)
        pair = _bulk(member) + reply_double(score, proto)
        out.append(_PAIR3 + pair if nested else pair)
    if not zset:
        ctx.db.delete(key, keyslot(key) if slot is None else slot)
    else:
        ctx.db.modified(key)
    if not emit_key:
        head = resp.array_header(n if nested else 2 * n)
    elif not nested:
        head = resp.array_header(2 * n + 1) + _bulk(key)
    else:
        head = b"*2\r\n" + _bulk(key) + resp.array_header(n)
    return head + b"".join(out)


def _zpop(ctx: Ctx, argv: list[bytes], pop_max: bool) -> bytes:
    if len(argv) > 3:
        raise CommandError(_SYNTAX)
    count = -1
    if len(argv) == 3:
        count = arg_positive(argv[2], MUST_BE_POSITIVE)
    zset = _lookup(ctx, argv[1], ctx.slot, read=False)
    if zset is None:
        return resp.EMPTY_ARRAY
    return zset_pop_reply(ctx, argv[1], zset, pop_max, count,
                          nested=ctx.proto == 3 and count != -1, slot=ctx.slot)


@worker_command("zpopmin")
def zpopmin_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zpop(ctx, argv, False)


@worker_command("zpopmax")
def zpopmax_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _zpop(ctx, argv, True)


def parse_mpop(argv: list[bytes], numkeys_index: int) -> tuple[list[bytes], bool, int]:
    """ZMPOP/BZMPOP arguments from numkeys on: (keys, pop_max, count (1 if not given))."""
    numkeys = arg_ll_or(argv[numkeys_index], NUMKEYS_POSITIVE)
    if numkeys < 1:
        raise CommandError(NUMKEYS_POSITIVE)
    where = numkeys_index + numkeys + 1
    if where >= len(argv):
        raise CommandError(_SYNTAX)
    side = argv[where].lower()
    if side not in (b"min", b"max"):
        raise CommandError(_SYNTAX)
    count = -1
    j = where + 1
    while j < len(argv):
        if count == -1 and argv[j].lower() == b"count" and j + 1 < len(argv):
            count = arg_ll_or(argv[j + 1], COUNT_POSITIVE)
            if count < 1:
                raise CommandError(COUNT_POSITIVE)
            j += 2
        else:
            raise CommandError(_SYNTAX)
    return argv[numkeys_index + 1:where], side == b"max", 1 if count == -1 else count


@worker_command("zmpop")
def zmpop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    keys, pop_max, count = parse_mpop(argv, 1)
    for key in keys:
        slot = keyslot(key)
        zset = _lookup(ctx, key, slot, read=False)
        if zset is not None:
            return zset_pop_reply(ctx, key, zset, pop_max, count, emit_key=True, nested=True,
                                  slot=slot)
    return resp.null_array(ctx.proto)


# -- ZRANDMEMBER -------------------------------------------------------------------------------

@worker_command("zrandmember")
def zrandmember_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) < 3:
        zset = _lookup(ctx, argv[1], ctx.slot)
        if zset is None:
            return resp.null(ctx.proto)
        return _bulk(zset.order[random.randrange(len(zset))][1])
    count = arg_range(argv[2], -LLONG_MAX, LLONG_MAX)
    if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withscores"):
        raise CommandError(_SYNTAX)
    withscores = len(argv) == 4
    if withscores and not -(LLONG_MAX // 2) <= count <= LLONG_MAX // 2:
        raise CommandError(VALUE_OUT_OF_RANGE)
    zset = _lookup(ctx, argv[1], ctx.slot)
    if zset is None or count == 0:
        return resp.EMPTY_ARRAY
    size = len(zset)
    order = zset.order
    if count < 0 or count == 1:        # with repetitions, in random order
        items = [order[random.randrange(size)] for _ in range(abs(count))]
    elif count >= size:                 # the whole zset, as zuiNext walks it (highest first)
        items = list(reversed(order))
    elif not zset.skiplist:             # lpRandomPairsUnique: distinct, in listpack order
        items = [order[i] for i in sorted(random.sample(range(size), count))]
    else:
        items = [order[i] for i in random.sample(range(size), count)]
    return pairs_reply(items, withscores, ctx.proto)


# -- ZSCAN -------------------------------------------------------------------------------------

_EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"


@worker_command("zscan")
def zscan_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """A listpack is returned whole with cursor 0 (as Valkey does); a skiplist page by page in
    the hash order HSCAN and SSCAN walk (t_hash.scan_members)."""
    cursor = t_keys.parse_cursor(argv[2])
    zset = _lookup(ctx, argv[1], ctx.slot)
    if zset is None:
        return _EMPTY_SCAN
    count, pattern, noscores = parse_scan_options(argv, b"zset")
    if zset.skiplist:
        next_cursor, members = scan_members(zset, cursor, count)
    else:
        next_cursor, members = 0, [m for _s, m in zset.order]
    if pattern is not None:
        match = glob_matcher(pattern)
        members = [m for m in members if match(m)]
    if noscores:
        body = resp.array_header(len(members)) + resp.bulks(members)
    else:
        body = resp.array_header(2 * len(members)) + b"".join(
            [_bulk(m) + _bulk(d2string(zset[m])) for m in members])
    return b"*2\r\n" + _bulk(b"%d" % next_cursor) + body


# -- blocking pops (blocking.py keeps the waiters and serves them) ------------------------------

def _bzpop(ctx: Ctx, argv: list[bytes], pop_max: bool) -> bytes | None:
    blocking.parse_timeout(argv[-1])
    keys = argv[1:-1]
    for key in blocking.candidates(ctx, keys):
        zset = blocking.ready_value(ctx, key, ZSet)
        if zset is not None:
            return zset_pop_reply(ctx, key, zset, pop_max, -1, emit_key=True)
    return blocking.nothing(ctx, argv, keys, resp.null_array(ctx.proto))


@worker_command("bzpopmin")
def bzpopmin_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _bzpop(ctx, argv, False)


@worker_command("bzpopmax")
def bzpopmax_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _bzpop(ctx, argv, True)


@worker_command("bzmpop")
def bzmpop_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    blocking.parse_timeout(argv[1])
    keys, pop_max, count = parse_mpop(argv, 2)
    for key in blocking.candidates(ctx, keys):
        zset = blocking.ready_value(ctx, key, ZSet)
        if zset is not None:
            return zset_pop_reply(ctx, key, zset, pop_max, count, emit_key=True, nested=True)
    return blocking.nothing(ctx, argv, keys, resp.null_array(ctx.proto))
