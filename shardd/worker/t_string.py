"""String commands, after Valkey 8's t_string.c (replies, errors and their order).

Strings are stored as `bytes`; any other stored type makes these commands reply WRONGTYPE.
INCRBYFLOAT computes in x87 80-bit long double like Valkey on x86-64 Linux (emulated exactly
with rationals) so that its replies carry the same digits.
"""
from __future__ import annotations

import re
from array import array
from fractions import Fraction

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import LLONG_MAX, LLONG_MIN, arg_ll
from ..numbers import string2ll as parse_ll
from ..slots import keyslot
from . import keyspace
from .context import Ctx

DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024

OK = resp.OK
ZERO = resp.ZERO
ONE = resp.ONE
NULL2 = resp.NULL2
NULL3 = resp.NULL3
EMPTY_BULK = resp.bulk(b"")
_bulk = resp.bulk
_integer = resp.integer
_WRONGTYPE = errors.WRONGTYPE


# -- integers ----------------------------------------------------------------------------------

# -- SET / GETEX options -----------------------------------------------------------------------

NX, XX, GET, KEEPTTL, PERSIST, EX, PX, EXAT, PXAT = (1 << i for i in range(9))
_EXPIRES = EX | PX | EXAT | PXAT
_SECONDS = EX | EXAT
_RELATIVE = EX | PX
SET_OPTIONS = NX | XX | GET | KEEPTTL | _EXPIRES
GETEX_OPTIONS = PERSIST | _EXPIRES

_OPTION_FLAGS: dict[bytes, int] = {}
for _name, _flag in ((b"nx", NX), (b"xx", XX), (b"get", GET), (b"keepttl", KEEPTTL),
                     (b"persist", PERSIST), (b"ex", EX), (b"px", PX), (b"exat", EXAT),
                     (b"pxat", PXAT)):
    _OPTION_FLAGS[_name] = _OPTION_FLAGS[_name.upper()] = _flag
# What each option may not be combined with (Valkey's parseExtendedStringArgumentsOrReply).
_CONFLICTS = {NX: XX, XX: NX, GET: 0, KEEPTTL: PERSIST | _EXPIRES, PERSIST: KEEPTTL | _EXPIRES}
for _flag in (EX, PX, EXAT, PXAT):
    _CONFLICTS[_flag] = KEEPTTL | PERSIST | (_EXPIRES & ~_flag)


def parse_expire_options(argv: list[bytes], start: int, allowed: int) -> tuple[int, bytes | None]:
    """SET/GETEX options from argv[start:]: (flags, the EX/PX/EXAT/PXAT argument or None)."""
    flags = 0
    expire = None
    i, n = start, len(argv)
    while i < n:
        opt = argv[i]
        flag = _OPTION_FLAGS.get(opt) or _OPTION_FLAGS.get(opt.lower(), 0)
        if not flag & allowed or flags & _CONFLICTS[flag]:
            raise CommandError(errors.SYNTAX)
        if flag & _EXPIRES:
            i += 1
            if i == n:
                raise CommandError(errors.SYNTAX)
            expire = argv[i]
        flags |= flag
        i += 1
    return flags, expire


def expire_at_ms(flags: int, value: bytes, command: str) -> int:
    """The absolute unix-ms expiry of an EX/PX/EXAT/PXAT argument (getExpireMillisecondsOrReply)."""
    ms = arg_ll(value)
    seconds = flags & _SECONDS
    if ms <= 0 or (seconds and ms > LLONG_MAX // 1000):
        raise CommandError(errors.invalid_expire(command))
    if seconds:
        ms *= 1000
    if flags & _RELATIVE:
        ms += keyspace.now_ms
        if ms > LLONG_MAX:
            raise CommandError(errors.invalid_expire(command))
    return ms


def _set_generic(ctx: Ctx, key: bytes, value: bytes, flags: int, expire: bytes | None,
                 command: str, ok_reply: bytes = OK, abort_reply: bytes | None = None) -> bytes:
    """SET and its variants (setGenericCommand)."""
    when = expire_at_ms(flags, expire, command) if expire is not None else None
    db, slot = ctx.db, ctx.slot
    reply = None
    if flags & GET:
        old = db.lookup_read(key, slot)
        if old is None:
            reply = NULL3 if ctx.proto == 3 else NULL2
        elif type(old) is not bytes:
            raise CommandError(_WRONGTYPE)
        else:
            reply = _bulk(old)
        found = old is not None
    else:
        found = db.lookup(key, slot) is not None
    if (flags & NX and found) or (flags & XX and not found):
        if reply is not None:
            return reply
        return abort_reply if abort_reply is not None else resp.null(ctx.proto)
    if when is not None:
        if when <= keyspace.now_ms:          # already expired: the key just goes away
            if found:
                db.delete(key, slot)
        else:
            db.replace(key, slot, value)
            db.set_expire(key, slot, when)
    elif flags & KEEPTTL:
        db.replace(key, slot, value)
    else:
        db.store(key, slot, value)
    return reply if reply is not None else ok_reply


@worker_command("set")
def set_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) == 3:
        ctx.db.store(argv[1], ctx.slot, argv[2])
        return OK
    flags, expire = parse_expire_options(argv, 3, SET_OPTIONS)
    return _set_generic(ctx, argv[1], argv[2], flags, expire, "set")


@worker_command("setnx")
def setnx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _set_generic(ctx, argv[1], argv[2], NX, None, "setnx", ONE, ZERO)


@worker_command("setex")
def setex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _set_generic(ctx, argv[1], argv[3], EX, argv[2], "setex")


@worker_command("psetex")
def psetex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _set_generic(ctx, argv[1], argv[3], PX, argv[2], "psetex")


# -- reads -------------------------------------------------------------------------------------

def _read_string(ctx: Ctx, key: bytes) -> bytes | None:
    """The string at key (counting a keyspace hit/miss), None if missing, WRONGTYPE otherwise."""
    return ctx.db.lookup_as(key, ctx.slot, bytes, read=True)


@worker_command("get")
def get_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = ctx.db.lookup_read(argv[1], ctx.slot)
    if value is None:
        return NULL3 if ctx.proto == 3 else NULL2
    if type(value) is not bytes:
        raise CommandError(_WRONGTYPE)
    return _bulk(value)


@worker_command("getdel")
def getdel_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = _read_string(ctx, argv[1])
    if value is None:
        return resp.null(ctx.proto)
    ctx.db.delete(argv[1], ctx.slot)
    return _bulk(value)


@worker_command("getset")
def getset_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    old = _read_string(ctx, argv[1])
    ctx.db.store(argv[1], ctx.slot, argv[2])
    return resp.null(ctx.proto) if old is None else _bulk(old)


@worker_command("getex")
def getex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    flags, expire = parse_expire_options(argv, 2, GETEX_OPTIONS)
    key, db, slot = argv[1], ctx.db, ctx.slot
    value = _read_string(ctx, key)
    if value is None:
        return resp.null(ctx.proto)
    if expire is not None:
        when = expire_at_ms(flags, expire, "getex")
        if when <= keyspace.now_ms:
            db.delete(key, slot)
        else:
            db.set_expire(key, slot, when)
    elif flags & PERSIST:
        db.persist(key, slot)
    return _bulk(value)


@worker_command("mget")
def mget_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The keys given (all on this worker: the proxy splits MGET by owner)."""
    db = ctx.db
    nil = resp.null(ctx.proto)
    parts = [resp.array_header(len(argv) - 1)]
    slot = ctx.slot
    for i in range(1, len(argv)):
        key = argv[i]
        value = db.lookup_read(key, slot if i == 1 else keyslot(key))
        parts.append(_bulk(value) if type(value) is bytes else nil)
    return b"".join(parts)


@worker_command("strlen")
def strlen_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    value = _read_string(ctx, argv[1])
    return ZERO if value is None else _integer(len(value))


@worker_command("getrange", "substr")
def getrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    start, end = arg_ll(argv[2]), arg_ll(argv[3])
    value = _read_string(ctx, argv[1])
    if value is None or (start < 0 and end < 0 and start > end):
        return EMPTY_BULK
    n = len(value)
    if start < 0:
        start = max(start + n, 0)
    if end < 0:
        end = max(end + n, 0)
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return EMPTY_BULK
    return _bulk(value[start:end + 1])


# -- writes ------------------------------------------------------------------------------------

@worker_command("mset")
def mset_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) % 2 == 0:
        raise CommandError(errors.wrong_arity("mset"))
    store, slot = ctx.db.store, ctx.slot
    for i in range(1, len(argv), 2):
        key = argv[i]
        store(key, slot if i == 1 else keyslot(key), argv[i + 1])
    return OK


@worker_command("msetnx")
def msetnx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """All or nothing over the keys given (all on this worker)."""
    if len(argv) % 2 == 0:
        raise CommandError(errors.wrong_arity("msetnx"))
    db = ctx.db
    pairs = [(argv[i], ctx.slot if i == 1 else keyslot(argv[i]), argv[i + 1])
             for i in range(1, len(argv), 2)]
    if any(db.lookup(key, slot) is not None for key, slot, _ in pairs):
        return ZERO
    for key, slot, value in pairs:
        db.store(key, slot, value)
    return ONE


def _check_length(ctx: Ctx, size: int, append: int) -> None:
    """Valkey's checkStringLength against proto-max-bulk-len."""
    if size + append > ctx.config.get("proto-max-bulk-len", DEFAULT_PROTO_MAX_BULK_LEN):
        raise CommandError(errors.STRING_TOO_LONG)


@worker_command("append")
def append_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot, tail = argv[1], ctx.db, ctx.slot, argv[2]
    old = db.lookup(key, slot)
    if old is None:
        db.replace(key, slot, tail)
        return _integer(len(tail))
    if type(old) is not bytes:
        raise CommandError(_WRONGTYPE)
    _check_length(ctx, len(old), len(tail))
    new = old + tail
    db.replace(key, slot, new)
    return _integer(len(new))


@worker_command("setrange")
def setrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot, patch = argv[1], ctx.db, ctx.slot, argv[3]
    offset = arg_ll(argv[2])
    if offset < 0:
        raise CommandError(errors.OFFSET_RANGE)
    old = db.lookup(key, slot)
    if old is None:
        if not patch:
            return ZERO
        _check_length(ctx, offset, len(patch))
        new = bytes(offset) + patch
    else:
        if type(old) is not bytes:
            raise CommandError(_WRONGTYPE)
        if not patch:
            return _integer(len(old))
        _check_length(ctx, offset, len(patch))
        if offset > len(old):
            new = old + bytes(offset - len(old)) + patch
        else:
            new = old[:offset] + patch + old[offset + len(patch):]
    db.replace(key, slot, new)
    return _integer(len(new))


# -- counters ----------------------------------------------------------------------------------

def _incr_by(ctx: Ctx, key: bytes, delta: int) -> bytes:
    db, slot = ctx.db, ctx.slot
    old = db.lookup(key, slot)
    if old is None:
        current = 0
    elif type(old) is not bytes:
        raise CommandError(_WRONGTYPE)
    else:
        current = parse_ll(old)
        if current is None:
            raise CommandError(errors.NOT_INTEGER)
    value = current + delta
    if not LLONG_MIN <= value <= LLONG_MAX:
        raise CommandError(errors.OVERFLOW)
    db.replace(key, slot, b"%d" % value)
    return _integer(value)


@worker_command("incr")
def incr_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _incr_by(ctx, argv[1], 1)


@worker_command("decr")
def decr_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _incr_by(ctx, argv[1], -1)


@worker_command("incrby")
def incrby_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _incr_by(ctx, argv[1], arg_ll(argv[2]))


@worker_command("decrby")
def decrby_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    delta = arg_ll(argv[2])
    if delta == LLONG_MIN:
        raise CommandError(errors.DECR_OVERFLOW)
    return _incr_by(ctx, argv[1], -delta)


# -- long double (x87 80-bit: 64-bit significand, 15-bit exponent) -----------------------------

LongDouble = Fraction            # a finite long double, held exactly
_LD_MIN_EXP = -16445             # value = m * 2**e with e >= this (subnormals)
_LD_MAX_EXP = 16320              # ... and m < 2**64, e <= this (LDBL_MAX = (2**64-1) * 2**16320)
_MAX_LONG_DOUBLE_CHARS = 5 * 1024
_DECIMAL = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_INFINITY = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)
_INF = float("inf")


_CHUNK = 4000                    # digits per int<->str step: Python caps one at 4300


def _digits_to_int(digits: bytes) -> int:
    """int(digits) for strings longer than Python's conversion limit."""
    if len(digits) <= _CHUNK:
        return int(digits)
    head, tail = digits[:-_CHUNK], digits[-_CHUNK:]
    return _digits_to_int(head) * 10 ** _CHUNK + int(tail)


def _int_to_digits(n: int) -> bytes:
    """b"%d" % n (n >= 0) for numbers longer than Python's conversion limit."""
    if n < 10 ** _CHUNK:
        return b"%d" % n
    head, tail = divmod(n, 10 ** _CHUNK)
    return _int_to_digits(head) + b"%0*d" % (_CHUNK, tail)


def _ld_round(num: int, den: int) -> LongDouble | None:
    """num/den (> 0) rounded half-even to a long double; None when it overflows."""
    k = num.bit_length() - den.bit_length()           # 2**k <= num/den < 2**(k+1) after fixup
    if (num << -k if k < 0 else num) < (den << k if k > 0 else den):
        k -= 1
    e = max(k - 63, _LD_MIN_EXP)
    if e >= 0:
        den <<= e
    else:
        num <<= -e
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
        if m >> 64:
            m >>= 1
            e += 1
    if e > _LD_MAX_EXP:
        return None
    return Fraction(m << e) if e >= 0 else Fraction(m, 1 << -e)


def _ld_from(sign: bytes, num: int, den: int) -> LongDouble | None:
    """A parsed non-zero magnitude as a long double; None on overflow or underflow to zero."""
    value = _ld_round(num, den)
    if not value:
        return None
    return -value if sign == b"-" else value


def string2ld(text: bytes) -> LongDouble | float | None:
    """Valkey's string2ld: strtold over the whole string (no spaces), NaN and out-of-range
    rejected. Returns None when invalid, +-inf as a float, else the exact long double."""
    if not text or len(text) >= _MAX_LONG_DOUBLE_CHARS:
        return None
    m = _HEX.fullmatch(text)
    base = 16
    if m is None:
        m = _DECIMAL.fullmatch(text)
        base = 10
        if m is None:
            if _INFINITY.fullmatch(text):
                return -_INF if text[:1] == b"-" else _INF
            return None
    sign, whole, frac, exp = m.groups()
    frac = frac or b""
    if not whole and not frac:
        return None
    digits = (whole + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    if exp is not None and len(exp.lstrip(b"+-").lstrip(b"0")) > 9:
        return None                                   # |exponent| >= 1e9: over- or underflow
    exp_value = int(exp) if exp is not None else 0
    if base == 10:
        scale = exp_value - len(frac)
        magnitude = len(digits) + scale               # 10**(magnitude-1) <= value < 10**magnitude
        if magnitude > 4933 or magnitude <= -4951:
            return None
        n = _digits_to_int(digits)
        return _ld_from(sign, n * 10 ** scale, 1) if scale >= 0 else _ld_from(sign, n, 10 ** -scale)
    scale = exp_value - 4 * len(frac)
    n = int(digits, 16)
    magnitude = n.bit_length() + scale                # 2**(magnitude-1) <= value < 2**magnitude
    if magnitude > 16384 or magnitude <= -16446:
        return None
    return _ld_from(sign, n << scale, 1) if scale >= 0 else _ld_from(sign, n, 1 << -scale)


def ld_add(a: LongDouble | float, b: LongDouble | float) -> LongDouble | None:
    """a + b rounded to long double; None when the sum is infinite or NaN."""
    if type(a) is float or type(b) is float:
        return None                                   # an infinite operand: inf or NaN
    total = a + b
    if not total:
        return total
    value = _ld_round(abs(total.numerator), total.denominator)
    if value is None:
        return None
    return -value if total < 0 else value


def ld2string_human(value: LongDouble) -> bytes:
    """Valkey's ld2string(LD_STR_HUMAN): '%.17Lf', trailing zeros and '.' trimmed, '-0' → '0'."""
    negative = value < 0
    if negative:
        value = -value
    q, r = divmod(value.numerator * 10 ** 17, value.denominator)
    if 2 * r > value.denominator or (2 * r == value.denominator and q & 1):
        q += 1
    digits = _int_to_digits(q).rjust(18, b"0")
    frac = digits[-17:].rstrip(b"0")
    text = digits[:-17] + b"." + frac if frac else digits[:-17]
    return b"-" + text if negative and text != b"0" else text


@worker_command("incrbyfloat")
def incrbyfloat_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, db, slot = argv[1], ctx.db, ctx.slot
    old = db.lookup(key, slot)
    if old is None:
        current: LongDouble | float | None = Fraction(0)
    elif type(old) is not bytes:
        raise CommandError(_WRONGTYPE)
    else:
        current = string2ld(old)
    incr = string2ld(argv[2])
    if current is None or incr is None:
        raise CommandError(errors.NOT_FLOAT)
    total = ld_add(current, incr)
    if total is None:
        raise CommandError(errors.INCR_NAN_INF)
    text = ld2string_human(total)
    db.replace(key, slot, text)
    return _bulk(text)


# -- LCS ---------------------------------------------------------------------------------------

_LCS_FLAGS = {b"idx": "idx", b"len": "len", b"withmatchlen": "withmatchlen",
              b"minmatchlen": "minmatchlen"}
_UINT32_MAX = (1 << 32) - 1
_MATCHES = resp.bulk(b"matches")
_LEN = resp.bulk(b"len")


def _lcs_table(a: bytes, b: bytes) -> list[array]:
    """rows[i][j] = length of the LCS of a[:i] and b[:j]."""
    width = len(b) + 1
    previous = array("I", bytes(4 * width))
    rows = [previous]
    for ca in a:
        row = array("I", bytes(4 * width))
        left = 0
        for j, cb in enumerate(b, 1):
            if ca == cb:
                left = previous[j - 1] + 1
            else:
                up = previous[j]
                if up > left:
                    left = up
            row[j] = left
        rows.append(row)
        previous = row
    return rows


def _lcs_walk(a: bytes, b: bytes, rows: list[array], minmatchlen: int,
              want_ranges: bool) -> tuple[bytes, list[tuple[int, int, int, int, int]]]:
    """Walk the table back as Valkey does: (the LCS, matched ranges from the end)."""
    alen = len(a)
    i, j = alen, len(b)
    idx = rows[i][j]
    result = bytearray(idx)
    ranges: list[tuple[int, int, int, int, int]] = []
    a_start, a_end, b_start, b_end = alen, 0, 0, 0   # a_start == alen: no range open
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[idx - 1] = a[i - 1]
            if a_start == alen:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            idx -= 1
            i -= 1
            j -= 1
        else:
            if rows[i - 1][j] > rows[i][j - 1]:
                i -= 1
            else:
                j -= 1
            if a_start != alen:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if want_ranges and (minmatchlen == 0 or match_len >= minmatchlen):
                ranges.append((a_start, a_end, b_start, b_end, match_len))
            a_start = alen
    return bytes(result), ranges


@worker_command("lcs")
def lcs_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    db = ctx.db
    a = db.lookup_read(argv[1], ctx.slot)
    b = db.lookup_read(argv[2], keyslot(argv[2]))
    if (a is not None and type(a) is not bytes) or (b is not None and type(b) is not bytes):
        raise CommandError(errors.LCS_NOT_STRINGS)
    limit = ctx.config.get("proto-max-bulk-len", DEFAULT_PROTO_MAX_BULK_LEN)
    return lcs_reply(a or b"", b or b"", argv, limit, ctx.proto)


def lcs_reply(a: bytes, b: bytes, argv: list[bytes], limit: int, proto: int) -> bytes:
    """LCS of two string values with the options of argv[3:] (also used across shards)."""
    want: set[str] = set()
    minmatchlen = 0
    i = 3
    while i < len(argv):
        option = _LCS_FLAGS.get(argv[i].lower())
        if option == "minmatchlen" and i + 1 < len(argv):
            minmatchlen = max(arg_ll(argv[i + 1]), 0)
            i += 1
        elif option is None or option == "minmatchlen":
            raise CommandError(errors.SYNTAX)
        else:
            want.add(option)
        i += 1
    if "len" in want and "idx" in want:
        raise CommandError(errors.LCS_LEN_AND_IDX)
    if len(a) >= _UINT32_MAX - 1 or len(b) >= _UINT32_MAX - 1:
        raise CommandError(errors.LCS_TOO_LONG)
    if (len(a) + 1) * (len(b) + 1) * 4 > limit:
        raise CommandError(errors.LCS_NO_MEMORY)
    rows = _lcs_table(a, b)
    if "len" in want:
        return _integer(rows[-1][-1])
    text, ranges = _lcs_walk(a, b, rows, minmatchlen, "idx" in want)
    if "idx" not in want:
        return _bulk(text)
    return _lcs_idx_reply(ranges, rows[-1][-1], "withmatchlen" in want, proto)


def _lcs_idx_reply(ranges: list[tuple[int, int, int, int, int]], total: int,
                   withmatchlen: bool, proto: int) -> bytes:
    header = resp.array_header(3 if withmatchlen else 2)
    pair = resp.array_header(2)
    parts = [resp.map_header(2, proto), _MATCHES, resp.array_header(len(ranges))]
    for a_start, a_end, b_start, b_end, match_len in ranges:
        parts += (header, pair, _integer(a_start), _integer(a_end),
                  pair, _integer(b_start), _integer(b_end))
        if withmatchlen:
            parts.append(_integer(match_len))
    parts += (_LEN, _integer(total))
    return b"".join(parts)
