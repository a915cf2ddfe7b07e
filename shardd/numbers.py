"""Valkey's integer parsing (util.c string2ll), shared by every process."""
from __future__ import annotations

from . import errors
from .errors import CommandError

LLONG_MAX = (1 << 63) - 1
LLONG_MIN = -(1 << 63)


def string2ll(value: bytes) -> int | None:
    """A canonical signed 64-bit decimal ('-'? no '+', spaces or 0-padding), else None."""
    size = len(value)
    if 0 < size < 19 and value.isdigit() and (value[0] != 48 or size == 1):
        return int(value)                     # the common case: a plain non-negative number
    if size > 20 or not size:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    if LLONG_MIN <= n <= LLONG_MAX and b"%d" % n == value:
        return n
    return None


def arg_ll(value: bytes) -> int:
    """string2ll or the 'not an integer' error (getLongLongFromObjectOrReply)."""
    n = string2ll(value)
    if n is None:
        raise CommandError(errors.NOT_INTEGER)
    return n


def arg_range(value: bytes, low: int, high: int) -> int:
    """An integer argument within [low, high] (getRangeLongFromObjectOrReply)."""
    n = arg_ll(value)
    if not low <= n <= high:
        raise CommandError(f"ERR value is out of range, value must between {low} and {high}")
    return n


def arg_int(value: bytes) -> int:
    """A C int argument (getIntFromObjectOrReply)."""
    return arg_range(value, -(1 << 31), (1 << 31) - 1)


def clamp_range(start: int, end: int, n: int) -> tuple[int, int] | None:
    """Valkey's index sanitizing for ranges of n elements (LRANGE, ZRANGE …): negative
    indexes count from the end, both ends are clamped; None when the range is empty."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        return None
    return start, min(end, n - 1)
