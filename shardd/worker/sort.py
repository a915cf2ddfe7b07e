"""SORT and SORT_RO, after Valkey 8's sort.c (options, errors and their order).

Sorts a list, set or sorted set: numerically by default (strtod of each element or BY weight;
ties by the elements' bytes), ALPHA in byte order (the C locale's strcoll, which stops at a NUL),
DESC, LIMIT, BY a pattern (`nosort`, any pattern without `*`, skips sorting), GET patterns
(`#`, `key*`, `hash*->field`) and STORE (a list; an empty result deletes the destination).
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from itertools import islice

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import arg_ll
from ..slots import keyslot
from .context import Ctx
from .t_hash import Hash
from .t_list import List, list_from_quicklist
from .t_set import Set
from .t_zset import ZSet

SCORES_NOT_DOUBLES = "ERR One or more scores can't be converted into double"
_SORTABLE = {List: b"list", Set: b"set", ZSet: b"zset"}

_DBL_MIN = 2.2250738585072014e-308
_C_SPACE = b" \t\n\v\f\r"
_DECIMAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP]([+-]?[0-9]+))?")
_INFINITY = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)
_NONZERO_DIGIT = re.compile(rb"[1-9]")


def sort_score(value: bytes) -> float | None:
    """The double strtod reads from all of `value`, or None where SORT rejects it: trailing
    characters, NaN, or a result out of range (ERANGE: overflow, or an inexact underflow)."""
    if value.isdigit() and len(value) < 300:  # the common case: no sign, spaces or exponent
        return float(value)
    if b"\0" in value:                       # strtod sees a C string
        value = value[:value.index(b"\0")]
    if not value:
        return 0.0                           # no conversion, but the end pointer is at the NUL
    text = value.lstrip(_C_SPACE)
    if _DECIMAL.fullmatch(text):
        result = float(text)
        if math.isinf(result):
            return None
        if abs(result) < _DBL_MIN:
            if result == 0.0:
                if _NONZERO_DIGIT.search(text.partition(b"e")[0].partition(b"E")[0]):
                    return None
            elif _inexact(result, Fraction(text.decode())):
                return None
        return result
    if (match := _HEX.fullmatch(text)) is not None:
        return _hex_score(match)
    if _INFINITY.fullmatch(text):
        return -math.inf if text[:1] == b"-" else math.inf
    return None


def _inexact(result: float, exact: Fraction) -> bool:
    return Fraction(result) != exact


def _hex_score(match: re.Match) -> float | None:
    sign, digits, exponent = match.groups()
    whole, _, fraction = digits.partition(b".")
    mantissa = int(whole + fraction or b"0", 16)
    exact = Fraction(mantissa) * Fraction(2) ** (int(exponent or b"0") - 4 * len(fraction))
    if sign == b"-":
        exact = -exact
    try:
        result = float(exact)
    except OverflowError:
        return None
    if abs(result) < _DBL_MIN and _inexact(result, exact):
        return None
    return result


# -- patterns ----------------------------------------------------------------------------------

class Pattern:
    """A BY/GET pattern split as lookupKeyByPattern reads it: `#`, or the first `*` with what
    comes before and after it, and an optional `->field` after the `*`."""

    __slots__ = ("is_hash_sign", "prefix", "postfix", "field")

    def __init__(self, pattern: bytes) -> None:
        c_string = pattern.split(b"\0", 1)[0]      # strchr/strstr stop at a NUL
        self.is_hash_sign = c_string == b"#"
        self.prefix: bytes | None = None
        self.postfix = b""
        self.field: bytes | None = None
        star = c_string.find(b"*")
        if self.is_hash_sign or star < 0:
            return
        self.prefix = pattern[:star]
        arrow = c_string.find(b"->", star + 1)
        if 0 <= arrow and arrow + 2 < len(c_string):
            self.postfix = pattern[star + 1:arrow]
            self.field = pattern[arrow + 2:]
        else:
            self.postfix = pattern[star + 1:]

    def lookup(self, ctx: Ctx, element: bytes) -> bytes | None:
        """The string (or hash field) the pattern names for `element`, or None."""
        if self.is_hash_sign:
            return element
        if self.prefix is None:
            return None
        key = self.prefix + element + self.postfix
        value = ctx.db.lookup_read(key, keyslot(key))
        if value is None:
            return None
        if self.field is not None:
            return value.get(self.field) if type(value) is Hash else None
        return value if type(value) is bytes else None


# -- the elements to sort ----------------------------------------------------------------------

def _zset_range(zset: ZSet, start: int, end: int, desc: bool) -> list[bytes]:
    """Members of ranks start..end in the sorted set's own order (DESC: from the highest)."""
    if end < start:
        return []
    if desc:
        n = len(zset)
        pairs = zset.order[n - 1 - end:n - start]
        pairs.reverse()
    else:
        pairs = zset.order[start:end + 1]
    return [member for _, member in pairs]


def _limits(limit_start: int, limit_count: int, length: int) -> tuple[int, int]:
    """LIMIT's clamped [start, end] over `length` elements (end < start: nothing)."""
    start = min(max(limit_start, 0), length)
    limit_count = min(max(limit_count, -1), length)
    end = length - 1 if limit_count < 0 else start + limit_count - 1
    if start >= length:
        start, end = length - 1, length - 2
    if end >= length:
        end = length - 1
    return start, end


def _c_string(value: bytes) -> bytes:
    """What strcoll compares of a value: its bytes up to the first NUL."""
    return value.split(b"\0", 1)[0] if b"\0" in value else value


def _sorted(ctx: Ctx, elements: list[bytes], by: Pattern | None, alpha: bool, desc: bool,
            store: bool) -> list[bytes]:
    if alpha:
        if by is not None:
            weights = [by.lookup(ctx, element) for element in elements]
            keyed = [((0, b"") if w is None else (1, w if store else _c_string(w)), i)
                     for i, w in enumerate(weights)]
        elif store:
            return sorted(elements, reverse=desc)
        else:
            keyed = [(_c_string(element), i) for i, element in enumerate(elements)]
        # Equal keys keep their input order in both directions (glibc's merge sort).
        keyed.sort(key=lambda pair: pair[0], reverse=desc)
        return [elements[i] for _, i in keyed]
    scores = []
    failed = False
    for element in elements:
        weight = by.lookup(ctx, element) if by is not None else element
        if weight is None:
            scores.append(0.0)
            continue
        score = sort_score(weight)
        if score is None:
            failed = True
            score = 0.0
        scores.append(score)
    if failed:
        raise CommandError(SCORES_NOT_DOUBLES)
    pairs = sorted(zip(scores, elements), reverse=desc)
    return [element for _, element in pairs]


def _sort(ctx: Ctx, argv: list[bytes], readonly: bool) -> bytes:
    desc = alpha = dontsort = False
    limit_start, limit_count = 0, -1
    by: Pattern | None = None
    store: bytes | None = None
    gets: list[Pattern] = []
    argc = len(argv)
    j = 2
    while j < argc:
        option = argv[j].lower()
        left = argc - j - 1
        if option == b"asc":
            desc = False
        elif option == b"desc":
            desc = True
        elif option == b"alpha":
            alpha = True
        elif option == b"limit" and left >= 2:
            limit_start = arg_ll(argv[j + 1])
            limit_count = arg_ll(argv[j + 2])
            j += 2
        elif option == b"store" and left >= 1 and not readonly:
            store = argv[j + 1]
            j += 1
        elif option == b"by" and left >= 1:
            by = Pattern(argv[j + 1])
            if by.prefix is None:
                dontsort = True                      # no '*': a constant, nothing to sort by
            j += 1
        elif option == b"get" and left >= 1:
            gets.append(Pattern(argv[j + 1]))
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1

    value = ctx.db.lookup_read(argv[1], ctx.slot)
    kind = b"list" if value is None else _SORTABLE.get(type(value))
    if kind is None:
        raise CommandError(errors.WRONGTYPE)
    if kind == b"zset":
        value.skiplist = True                # SORT converts a listpack sorted set (zsetConvert)
    if dontsort and kind == b"set" and store is not None:
        # A set's own order is arbitrary: what is stored must not depend on it.
        dontsort, alpha, by = False, True, None

    length = 0 if value is None else len(value)
    start, end = _limits(limit_start, limit_count, length)
    if dontsort and kind != b"set":
        # Lists and sorted sets keep their own order (reversed by DESC); LIMIT picks from it.
        if kind == b"list":
            ordered = value if value is not None else ()
            if desc:
                ordered = reversed(ordered)
            elements = list(islice(ordered, start, end + 1)) if end >= start else []
        else:
            elements = _zset_range(value, start, end, desc)
    else:
        if value is None:
            elements = []
        else:
            elements = list(value)
        if not dontsort:
            elements = _sorted(ctx, elements, by, alpha, desc, store is not None)
        elements = elements[start:end + 1] if end >= start else []

    if gets:
        output = [get.lookup(ctx, element) for element in elements for get in gets]
    else:
        output = elements
    if store is None:
        return resp.bulk_array(output, ctx.proto)
    slot = keyslot(store)
    if output:
        if gets:
            output = [b"" if v is None else v for v in output]
        ctx.db.store(store, slot, list_from_quicklist(output, ctx.config["list-max-listpack-size"]))
    elif ctx.db.lookup(store, slot) is not None:
        ctx.db.delete(store, slot)
    return resp.integer(len(output))


@worker_command("sort")
def sort_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _sort(ctx, argv, False)


@worker_command("sort_ro")
def sort_ro_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _sort(ctx, argv, True)
