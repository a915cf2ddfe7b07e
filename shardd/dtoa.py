"""How Valkey 8 prints a double (d2string over fpconv_dtoa's grisu2): integers as integers,
the shortest digits that read back the same otherwise, 'inf'/'-inf', '-0' kept."""
from __future__ import annotations

import math
import struct
from fractions import Fraction
from functools import lru_cache

from .numbers import LLONG_MAX

_INF = math.inf


_M64 = (1 << 64) - 1
_HIDDEN = 1 << 52
_TENS = [10 ** (19 - i) for i in range(20)]
_LL_SAFE = float(LLONG_MAX // 2)        # double2ll's bound: (double)(LLONG_MAX/2) == 2**62


def _cached_powers() -> list[tuple[int, int]]:
    """fpconv's table: 10**k for k = -348, -340, … 340 as a 64-bit significand (rounded to
    nearest) and a binary exponent."""
    table = []
    for i in range(87):
        v = Fraction(10) ** (-348 + 8 * i)
        e = v.numerator.bit_length() - v.denominator.bit_length() - 64
        while v / Fraction(2) ** e >= 1 << 64:
            e += 1
        while v / Fraction(2) ** e < 1 << 63:
            e -= 1
        f = v / Fraction(2) ** e
        frac = int(f)
        if f - frac >= Fraction(1, 2):
            frac += 1
        table.append((frac, e))
    return table


_POWERS = _cached_powers()


def _fp_multiply(af: int, ae: int, bf: int, be: int) -> tuple[int, int]:
    """fpconv's multiply(): the high 64 bits of the product, rounded as its 32-bit halves do."""
    lo = 0xFFFFFFFF
    ah_bl = (af >> 32) * (bf & lo)
    al_bh = (af & lo) * (bf >> 32)
    al_bl = (af & lo) * (bf & lo)
    ah_bh = (af >> 32) * (bf >> 32)
    tmp = (ah_bl & lo) + (al_bh & lo) + (al_bl >> 32) + (1 << 31)
    return (ah_bh + (ah_bl >> 32) + (al_bh >> 32) + (tmp >> 32)) & _M64, ae + be + 64


def _round_digit(digits: list[int], delta: int, rem: int, kappa: int, frac: int) -> None:
    while (rem < frac and delta - rem >= kappa
           and (rem + kappa < frac or frac - rem > rem + kappa - frac)):
        digits[-1] -= 1
        rem += kappa


def _grisu2(d: float) -> tuple[list[int], int]:
    """fpconv's grisu2 for a finite d > 0: (decimal digits, K) with d ≈ digits × 10**K."""
    bits = struct.unpack("<Q", struct.pack("<d", d))[0]
    frac = bits & (_HIDDEN - 1)
    exp = (bits >> 52) & 0x7FF
    if exp:
        frac += _HIDDEN
        exp -= 1075
    else:
        exp = -1074
    uf, ue = (frac << 1) + 1, exp - 1                       # upper boundary
    while not uf & (_HIDDEN << 1):
        uf <<= 1
        ue -= 1
    uf <<= 10
    ue -= 10
    lshift = 2 if frac == _HIDDEN else 1                    # lower boundary
    lf = (((frac << lshift) - 1) << (exp - lshift - ue)) & _M64
    wf, we = frac, exp                                      # normalized value
    while not wf & _HIDDEN:
        wf <<= 1
        we -= 1
    wf <<= 11
    we -= 11
    n = int(-(ue + 87) * 0.30102999566398114) + 348         # find_cachedpow10
    idx = n // 8 if n >= 0 else -(-n // 8)
    while True:
        current = ue + _POWERS[idx][1] + 64
        if current < -60:
            idx += 1
        elif current > -32:
            idx -= 1
        else:
            break
    cf, ce = _POWERS[idx]
    wf, we = _fp_multiply(wf, we, cf, ce)
    uf, ue2 = _fp_multiply(uf, ue, cf, ce)
    lf, _ = _fp_multiply(lf, ue, cf, ce)
    lf = (lf + 1) & _M64
    uf = (uf - 1) & _M64
    big_k = 348 - idx * 8
    wfrac = (uf - wf) & _M64                                # generate_digits
    delta = (uf - lf) & _M64
    shift = -ue2
    one = 1 << shift
    part1 = uf >> shift
    part2 = uf & (one - 1)
    digits: list[int] = []
    kappa = 10
    for i in range(10, 20):
        div = _TENS[i]
        digit = part1 // div
        if digit or digits:
            digits.append(digit)
        part1 -= digit * div
        kappa -= 1
        tmp = (part1 << shift) + part2
        if tmp <= delta:
            _round_digit(digits, delta, tmp, (div << shift) & _M64, wfrac)
            return digits, big_k + kappa
    unit = 18
    while True:
        part2 = (part2 * 10) & _M64
        delta = (delta * 10) & _M64
        kappa -= 1
        digit = part2 >> shift
        if digit or digits:
            digits.append(digit)
        part2 &= one - 1
        if part2 < delta:
            _round_digit(digits, delta, part2, one, (wfrac * _TENS[unit]) & _M64)
            return digits, big_k + kappa
        unit -= 1


def _emit_digits(digits: list[int], k: int, negative: bool) -> str:
    """fpconv's emit_digits: plain integer, plain decimal or d.ddde±x."""
    nd = len(digits)
    text = "".join(map(str, digits))
    exp = abs(k + nd - 1)
    if k >= 0 and exp < nd + 7:
        return text + "0" * k
    if k < 0 and (k > -7 or exp < 4):
        offset = nd + k
        if offset <= 0:
            return "0." + "0" * -offset + text
        return text[:offset] + "." + text[offset:]
    nd = min(nd, 18 - negative)
    head = text[0] + ("." + text[1:nd] if nd > 1 else "")
    return f"{head}e{'-' if k + nd - 1 < 0 else '+'}{exp}"


@lru_cache(maxsize=8192)
def _fpconv_dtoa(value: float) -> bytes:
    negative = value < 0
    digits, k = _grisu2(-value if negative else value)
    return (("-" if negative else "") + _emit_digits(digits, k, negative)).encode()


def d2string(value: float) -> bytes:
    """Valkey 8's d2string: how a score is printed (ZSCORE, WITHSCORES, ZSCAN, RESP3 doubles)."""
    if value.is_integer() and -_LL_SAFE <= value <= _LL_SAFE:
        if value == 0:
            return b"-0" if math.copysign(1.0, value) < 0 else b"0"
        return b"%d" % value
    if value != value:
        return b"nan"
    if value == _INF:
        return b"inf"
    if value == -_INF:
        return b"-inf"
    return _fpconv_dtoa(value)
