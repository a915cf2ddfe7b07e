"""Valkey's glob-style matching (util.c stringmatchlen), for KEYS, SCAN MATCH, PSUBSCRIBE, ACL.

The pattern is translated once into an equivalent regular expression and cached:

* each character class is evaluated the way Valkey does it (signed `char` ranges, swapped
  bounds, `\\` escapes compared case-sensitively, an unterminated `[` running to the end)
  for all 256 byte values and emitted as an explicit byte set;
* `*` segments are matched leftmost-first inside atomic groups, which gives the same answer
  as Valkey's backtracking with its skip-longer-matches cut, in linear-ish time;
* Valkey never matches an empty string unless the pattern is empty too (not even against
  `*`), and gives up past 1000 nested `*`: both are kept.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from .slots import keyslot

_MAX_NESTING = 1000
_NEVER = re.compile(rb"(?!)")
_STAR, _ONE = 0, 1


def glob_match(pattern: bytes, text: bytes, nocase: bool = False) -> bool:
    """True when `text` matches the glob `pattern`, exactly as Valkey's stringmatchlen."""
    if not text:
        return not pattern
    if pattern == b"*":
        return True
    return _compile(pattern, nocase).fullmatch(text) is not None


def glob_matcher(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A compiled `glob_match(pattern, ·, nocase)`, for matching many strings."""
    if not pattern:
        return _is_empty
    if pattern == b"*":
        return bool
    fullmatch = _compile(pattern, nocase).fullmatch
    return lambda text: bool(text) and fullmatch(text) is not None


def _is_empty(text: bytes) -> bool:
    return not text


def pattern_slot(pattern: bytes) -> int:
    """The one hash slot all keys matching `pattern` live in, or -1 (Valkey's patternHashSlot)."""
    start = -1
    for i, ch in enumerate(pattern):
        if ch in b"*?[\\":
            return -1
        if ch == 0x7B and start < 0:            # '{'
            start = i
        elif ch == 0x7D and start >= 0:         # '}'
            return -1 if i == start + 1 else keyslot(pattern[start + 1:i])
    return -1


def _signed(c: int) -> int:
    return c - 256 if c > 127 else c


def _lower(c: int) -> int:
    """glibc's tolower() on a (possibly negative) char value."""
    if 65 <= c <= 90:
        return c + 32
    if -128 <= c <= -2:                          # glibc maps signed chars to their unsigned value
        return c + 256
    return c


def _parse_class(p: bytes, i: int, nocase: bool) -> tuple[frozenset[int], int]:
    """Evaluate the class whose body starts at p[i] (after '['); returns (members, next index)."""
    n = len(p)
    negate = i < n and p[i] == 0x5E              # '^'
    if negate:
        i += 1
    tests: list[tuple[str, int, int]] = []
    while True:
        ch = p[i] if i < n else 0
        if ch == 0x5C and n - i >= 2:            # '\\' escape: exact compare, ignores nocase
            i += 1
            tests.append(("eq", p[i], 0))
        elif ch == 0x5D:                         # ']'
            break
        elif i >= n:                             # unterminated: the class ends the pattern
            i -= 1
            break
        elif n - i >= 3 and p[i + 1] == 0x2D:    # 'a-z' range, on signed chars like C
            lo, hi = _signed(p[i]), _signed(p[i + 2])
            if lo > hi:
                lo, hi = hi, lo
            if nocase:
                lo, hi = _lower(lo), _lower(hi)
            tests.append(("range", lo, hi))
            i += 2
        else:
            tests.append(("ci" if nocase else "eq", p[i], 0))
        i += 1
    members = set()
    for c in range(256):
        sc = _signed(c)
        hit = False
        for kind, a, b in tests:
            if kind == "eq":
                hit = c == a
            elif kind == "ci":
                hit = _lower(c) == _lower(a)
            else:
                v = _lower(sc) if nocase else sc
                hit = a <= v <= b
            if hit:
                break
        if hit != negate:
            members.add(c)
    return frozenset(members), i + 1


def _tokens(p: bytes, nocase: bool) -> list[tuple[int, frozenset[int] | None]]:
    """The pattern as a list of (_STAR, None) and (_ONE, byte set or None for any byte)."""
    out: list[tuple[int, frozenset[int] | None]] = []
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == 0x2A:                           # '*' (runs collapse into one)
            if not out or out[-1][0] != _STAR:
                out.append((_STAR, None))
            i += 1
        elif ch == 0x3F:                         # '?'
            out.append((_ONE, None))
            i += 1
        elif ch == 0x5B:                         # '['
            members, i = _parse_class(p, i + 1, nocase)
            out.append((_ONE, members))
        else:
            if ch == 0x5C and n - i >= 2:        # '\\x' is a literal x
                i += 1
                ch = p[i]
            if nocase and (65 <= ch <= 90 or 97 <= ch <= 122):
                low = _lower(ch)
                out.append((_ONE, frozenset((low, low - 32))))
            else:
                out.append((_ONE, frozenset((ch,))))
            i += 1
    return out


def _char_regex(members: frozenset[int] | None) -> bytes:
    if members is None or len(members) == 256:
        return b"."
    if not members:
        return b"(?!)"
    if len(members) == 1:
        return re.escape(bytes(members))
    parts = []
    run: list[int] = []
    for c in sorted(members):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            parts.append(_run_regex(run))
        run = [c]
    parts.append(_run_regex(run))
    return b"[" + b"".join(parts) + b"]"


def _run_regex(run: list[int]) -> bytes:
    if len(run) == 1:
        return b"\\x%02x" % run[0]
    return b"\\x%02x-\\x%02x" % (run[0], run[-1])


@lru_cache(maxsize=512)
def _compile(pattern: bytes, nocase: bool) -> re.Pattern[bytes]:
    tokens = _tokens(pattern, nocase)
    inner_stars = sum(1 for kind, _ in tokens[:-1] if kind == _STAR)
    if inner_stars > _MAX_NESTING:
        return _NEVER
    # Split into fixed-length segments around the stars.
    segments: list[bytes] = [b""]
    for kind, members in tokens:
        if kind == _STAR:
            segments.append(b"")
        else:
            segments[-1] += _char_regex(members)
    if len(segments) == 1:
        return re.compile(segments[0], re.DOTALL)
    regex = [segments[0]]
    for seg in segments[1:-1]:
        regex.append(b"(?>.*?" + seg + b")")
    regex.append(b".*" + segments[-1])
    return re.compile(b"".join(regex), re.DOTALL)
