"""Bitmap commands (SETBIT, BITCOUNT, BITFIELD …), after Valkey's bitops.c.

Bitmaps are plain string values (`bytes`); bit 0 is the most significant bit of the first byte.
Whole-range work (counting, searching, BITOP) goes through `int.from_bytes` / big-int bitwise
operations / `bytes.translate` / a compiled regex, so a megabyte costs milliseconds, not a
Python loop per bit or byte.
"""
from __future__ import annotations

import re

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import arg_ll, string2ll
from ..slots import keyslot
from .context import Ctx

BIT_OFFSET_ERROR = "ERR bit offset is not an integer or out of range"
BIT_VALUE_ERROR = "ERR bit is not an integer or out of range"
BITPOS_BIT_ERROR = "ERR The bit argument must be 1 or 0."
BITOP_NOT_ERROR = "ERR BITOP NOT must be called with a single source key."
BITFIELD_TYPE_ERROR = ("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is "
                       "not supported but i64 is.")
BITFIELD_OVERFLOW_ERROR = "ERR Invalid OVERFLOW type specified"
BITFIELD_RO_ERROR = "ERR BITFIELD_RO only supports the GET subcommand"

DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024

_WRONGTYPE = errors.WRONGTYPE
_integer = resp.integer
_ZERO = resp.ZERO
_ONE = resp.ONE
_MINUS_ONE = resp.integer(-1)
_MASK64 = (1 << 64) - 1
_SINGLE_BYTES = [bytes((i,)) for i in range(256)]
_INVERT = bytes(255 - i for i in range(256))
# The first byte that is not all zeros / not all ones (what BITPOS skips over).
_NOT_ZERO_BYTE = re.compile(rb"[^\x00]")
_NOT_FULL_BYTE = re.compile(rb"[^\xff]")


def _to_int64(n: int) -> int:
    """n wrapped to a C int64 (two's complement)."""
    n &= _MASK64
    return n - (1 << 64) if n >> 63 else n


def _proto_max_bulk_len(ctx: Ctx) -> int:
    return ctx.config.get("proto-max-bulk-len", DEFAULT_PROTO_MAX_BULK_LEN)


def _bit_offset(ctx: Ctx, arg: bytes, bits: int = 0) -> int:
    """A bit offset argument (getBitOffsetFromArgument); with bits > 0, '#n' means n * bits."""
    use_hash = bits > 0 and arg[:1] == b"#"
    offset = string2ll(arg[1:] if use_hash else arg)
    if offset is None:
        raise CommandError(BIT_OFFSET_ERROR)
    if use_hash:
        offset = _to_int64(offset * bits)          # C multiplies in (wrapping) long long
    if offset < 0 or (offset >> 3) >= _proto_max_bulk_len(ctx):
        raise CommandError(BIT_OFFSET_ERROR)
    return offset


def _read_string(ctx: Ctx, key: bytes, slot: int) -> bytes | None:
    """A string for reading (counts a keyspace hit/miss): None if missing, WRONGTYPE if not a string."""
    return ctx.db.lookup_as(key, slot, bytes, read=True)


def _popcount(data) -> int:
    return int.from_bytes(data, "big").bit_count()


def _unit_is_bit(arg: bytes) -> bool:
    """The BYTE|BIT argument of BITCOUNT/BITPOS."""
    unit = arg.lower()
    if unit == b"bit":
        return True
    if unit == b"byte":
        return False
    raise CommandError(errors.SYNTAX)


def _clamp_range(start: int, end: int, total: int) -> tuple[int, int]:
    """Negative indexes counted from the end, then clamped to [0, total - 1]."""
    if start < 0:
        start += total
    if end < 0:
        end += total
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= total:
        end = total - 1
    return start, end


# -- SETBIT / GETBIT ---------------------------------------------------------------------------

@worker_command("setbit")
def setbit_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    offset = _bit_offset(ctx, argv[2])
    on = string2ll(argv[3])
    if on is None or on & ~1:
        raise CommandError(BIT_VALUE_ERROR)
    key, db, slot = argv[1], ctx.db, ctx.slot
    old = db.lookup(key, slot)
    if old is not None and type(old) is not bytes:
        raise CommandError(_WRONGTYPE)
    index, shift = offset >> 3, 7 - (offset & 7)
    if old is None:
        db.store(key, slot, bytes(index) + _SINGLE_BYTES[on << shift])
        return _ZERO
    size = len(old)
    if index >= size:
        db.replace(key, slot, b"".join((old, bytes(index - size), _SINGLE_BYTES[on << shift])))
        return _ZERO
    byte = old[index]
    was = (byte >> shift) & 1
    if was != on:
        view = memoryview(old)
        new_byte = _SINGLE_BYTES[byte ^ (1 << shift)]
        db.replace(key, slot, b"".join((view[:index], new_byte, view[index + 1:])))
    return _ONE if was else _ZERO


@worker_command("getbit")
def getbit_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    offset = _bit_offset(ctx, argv[2])
    value = _read_string(ctx, argv[1], ctx.slot)
    index = offset >> 3
    if value is None or index >= len(value):
        return _ZERO
    return _ONE if value[index] >> (7 - (offset & 7)) & 1 else _ZERO


# -- BITCOUNT ----------------------------------------------------------------------------------

def _count_bits(value: bytes, first_bit: int, last_bit: int) -> int:
    """Set bits among bits first_bit..last_bit (inclusive) of value."""
    first, last = first_bit >> 3, last_bit >> 3
    n = int.from_bytes(memoryview(value)[first:last + 1], "big")
    n >>= 7 - (last_bit & 7)                                   # bits after last_bit
    n &= (1 << (last_bit - first_bit + 1)) - 1                 # bits before first_bit
    return n.bit_count()


@worker_command("bitcount")
def bitcount_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    argc = len(argv)
    if argc == 2:
        value = _read_string(ctx, argv[1], ctx.slot)
        return _ZERO if not value else _integer(_popcount(value))
    if argc > 5:
        raise CommandError(errors.SYNTAX)
    start = arg_ll(argv[2])
    is_bit = _unit_is_bit(argv[4]) if argc == 5 else False
    end = arg_ll(argv[3]) if argc >= 4 else 0
    value = _read_string(ctx, argv[1], ctx.slot)
    total = len(value) if value is not None else 0
    if argc < 4:
        end = total - 1
    if start < 0 and end < 0 and start > end:
        return _ZERO
    if value is None:
        return _ZERO
    if is_bit:
        total <<= 3
    start, end = _clamp_range(start, end, total)
    if start > end:
        return _ZERO
    if is_bit:
        return _integer(_count_bits(value, start, end))
    return _integer(_popcount(memoryview(value)[start:end + 1]))


# -- BITPOS ------------------------------------------------------------------------------------

def _first_bit(value: bytes, first_bit: int, last_bit: int, bit: int) -> int:
    """Position of the first bit equal to `bit` among bits first_bit..last_bit, or -1."""
    first, last = first_bit >> 3, last_bit >> 3
    flip = 0 if bit else 0xFF             # search for a set bit in (byte ^ flip)
    head_mask = 0xFF >> (first_bit & 7)
    tail_mask = (0xFF << (7 - (last_bit & 7))) & 0xFF
    if first == last:
        found = (value[first] ^ flip) & head_mask & tail_mask
        return first * 8 + 8 - found.bit_length() if found else -1
    found = (value[first] ^ flip) & head_mask
    if found:
        return first * 8 + 8 - found.bit_length()
    match = (_NOT_ZERO_BYTE if bit else _NOT_FULL_BYTE).search(value, first + 1, last)
    if match is not None:
        index = match.start()
        return index * 8 + 8 - (value[index] ^ flip).bit_length()
    found = (value[last] ^ flip) & tail_mask
    return last * 8 + 8 - found.bit_length() if found else -1


@worker_command("bitpos")
def bitpos_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    bit = arg_ll(argv[2])
    if bit != 0 and bit != 1:
        raise CommandError(BITPOS_BIT_ERROR)
    argc = len(argv)
    if argc > 6:
        raise CommandError(errors.SYNTAX)
    is_bit = end_given = False
    start = end = 0
    if argc >= 4:
        start = arg_ll(argv[3])
        if argc == 6:
            is_bit = _unit_is_bit(argv[5])
        if argc >= 5:
            end = arg_ll(argv[4])
            end_given = True
    value = _read_string(ctx, argv[1], ctx.slot)
    if value is None:
        # a missing key is an endless run of clear bits
        return _MINUS_ONE if bit else _ZERO
    total = len(value)
    if argc < 4:
        start, end = 0, total - 1
    else:
        if argc < 5:
            end = total - 1
        if is_bit:
            total <<= 3
        start, end = _clamp_range(start, end, total)
    if start > end:
        return _MINUS_ONE
    first_bit, last_bit = (start, end) if is_bit else (start * 8, end * 8 + 7)
    pos = _first_bit(value, first_bit, last_bit, bit)
    if pos < 0 and bit == 0 and not end_given:
        # with no explicit end the string counts as padded with clear bits on the right
        pos = last_bit + 1
    return _integer(pos)


# -- BITOP -------------------------------------------------------------------------------------

_BITOPS = {b"and": "and", b"or": "or", b"xor": "xor", b"not": "not"}


@worker_command("bitop")
def bitop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    op = _BITOPS.get(argv[1].lower())
    if op is None:
        raise CommandError(errors.SYNTAX)
    if op == "not" and len(argv) != 4:
        raise CommandError(BITOP_NOT_ERROR)
    db = ctx.db
    sources: list[bytes] = []
    for key in argv[3:]:
        value = _read_string(ctx, key, keyslot(key))
        sources.append(value if value is not None else b"")
    dest, dest_slot = argv[2], ctx.slot
    size = max(map(len, sources))
    if not size:
        db.delete(dest, dest_slot)
        return _ZERO
    db.store(dest, dest_slot, _bitop(op, sources, size))
    return _integer(size)


def _bitop(op: str, sources: list[bytes], size: int) -> bytes:
    """The BITOP result over sources zero-padded on the right to `size` bytes."""
    if op == "not":
        return sources[0].translate(_INVERT)
    if op == "and" and min(map(len, sources)) == 0:
        return bytes(size)
    result = None
    for source in sources:
        n = int.from_bytes(source, "big") << (8 * (size - len(source)))
        if result is None:
            result = n
        elif op == "and":
            result &= n
        elif op == "or":
            result |= n
        else:
            result ^= n
    return result.to_bytes(size, "big")


# -- BITFIELD ----------------------------------------------------------------------------------

WRAP, SAT, FAIL = 0, 1, 2
GET, SET, INCRBY = 0, 1, 2
_OVERFLOWS = {b"wrap": WRAP, b"sat": SAT, b"fail": FAIL}
_OPCODES = {b"get": (GET, 2), b"set": (SET, 3), b"incrby": (INCRBY, 3)}


def _bitfield_type(arg: bytes) -> tuple[bool, int]:
    """(signed, bits) of an i<bits> / u<bits> argument (getBitfieldTypeFromArgument)."""
    kind = arg[:1]
    if kind != b"i" and kind != b"u":
        raise CommandError(BITFIELD_TYPE_ERROR)
    signed = kind == b"i"
    bits = string2ll(arg[1:].split(b"\0", 1)[0])       # C reads it as a C string
    if bits is None or bits < 1 or bits > (64 if signed else 63):
        raise CommandError(BITFIELD_TYPE_ERROR)
    return signed, bits


def _unsigned_overflow(value: int, incr: int, bits: int, overflow: int) -> tuple[int, int]:
    """(direction, limited value) as Valkey's checkUnsignedBitfieldOverflow: direction 0 when
    value + incr fits in `bits` unsigned bits, else 1 / -1 and the wrapped or saturated value."""
    top = (1 << bits) - 1
    if value > top or (incr > 0 and incr > _to_int64(top - value)):
        direction, saturated = 1, top
    elif incr < 0 and incr < _to_int64(-value):
        direction, saturated = -1, 0
    else:
        return 0, 0
    return direction, (value + incr) & top if overflow == WRAP else saturated


def _signed_overflow(value: int, incr: int, bits: int, overflow: int) -> tuple[int, int]:
    """checkSignedBitfieldOverflow, with its C int64 wrap-arounds."""
    top = (1 << (bits - 1)) - 1
    bottom = -top - 1
    max_incr = _to_int64(top - value)
    min_incr = _to_int64(bottom - value)
    if (value > top or (bits != 64 and incr > max_incr)
            or (value >= 0 and incr > 0 and incr > max_incr)):
        direction, saturated = 1, top
    elif (value < bottom or (bits != 64 and incr < min_incr)
          or (value < 0 and incr < 0 and incr < min_incr)):
        direction, saturated = -1, bottom
    else:
        return 0, 0
    if overflow != WRAP:
        return direction, saturated
    wrapped = (value + incr) & ((1 << bits) - 1)
    if wrapped >> (bits - 1):
        wrapped -= 1 << bits
    return direction, wrapped


def _get_field(buf, offset: int, bits: int) -> int:
    """The unsigned `bits`-bit field at bit `offset` (bytes past the end read as zero)."""
    first = offset >> 3
    span = ((offset & 7) + bits + 7) >> 3
    chunk = buf[first:first + span]
    n = int.from_bytes(chunk, "big") << (8 * (span - len(chunk)))
    return (n >> (span * 8 - (offset & 7) - bits)) & ((1 << bits) - 1)


def _set_field(buf: bytearray, offset: int, bits: int, value: int) -> None:
    """Write the low `bits` bits of value at bit `offset` (the buffer is long enough)."""
    first = offset >> 3
    span = ((offset & 7) + bits + 7) >> 3
    shift = span * 8 - (offset & 7) - bits
    mask = ((1 << bits) - 1) << shift
    n = int.from_bytes(buf[first:first + span], "big")
    n = (n & ~mask) | ((value << shift) & mask)
    buf[first:first + span] = n.to_bytes(span, "big")


def _parse_bitfield(ctx: Ctx, argv: list[bytes]) -> list[tuple[int, bool, int, int, int, int]]:
    """BITFIELD's operations: (opcode, signed, bits, offset, argument, overflow) each."""
    ops = []
    overflow = WRAP
    j, argc = 2, len(argv)
    while j < argc:
        remaining = argc - j - 1
        name = argv[j].lower()
        if name == b"overflow" and remaining >= 1:
            overflow = _OVERFLOWS.get(argv[j + 1].lower(), -1)
            if overflow < 0:
                raise CommandError(BITFIELD_OVERFLOW_ERROR)
            j += 2
            continue
        opcode, needs = _OPCODES.get(name, (-1, 0))
        if opcode < 0 or remaining < needs:
            raise CommandError(errors.SYNTAX)
        signed, bits = _bitfield_type(argv[j + 1])
        offset = _bit_offset(ctx, argv[j + 2], bits)
        argument = 0
        if opcode != GET:
            argument = arg_ll(argv[j + 3])
        ops.append((opcode, signed, bits, offset, argument, overflow))
        j += needs + 1
    return ops


def _bitfield(ctx: Ctx, argv: list[bytes], read_only_command: bool) -> bytes:
    ops = _parse_bitfield(ctx, argv)
    writes = [op for op in ops if op[0] != GET]
    if not writes:
        value = _read_string(ctx, argv[1], ctx.slot)
        source = value if value is not None else b""
        parts = [resp.array_header(len(ops))]
        for _, signed, bits, offset, _, _ in ops:
            parts.append(_integer(_field_value(_get_field(source, offset, bits), signed, bits)))
        return b"".join(parts)
    if read_only_command:
        raise CommandError(BITFIELD_RO_ERROR)
    key, db, slot = argv[1], ctx.db, ctx.slot
    old = db.lookup(key, slot)
    if old is not None and type(old) is not bytes:
        raise CommandError(_WRONGTYPE)
    size = (max(op[3] + op[2] - 1 for op in writes) >> 3) + 1
    buf = bytearray(old if old is not None else b"")
    grown = old is None or size > len(buf)
    if size > len(buf):
        buf.extend(bytes(size - len(buf)))
    nil = resp.null(ctx.proto)
    parts = [resp.array_header(len(ops))]
    changed = False
    for opcode, signed, bits, offset, argument, overflow in ops:
        raw_old = _get_field(buf, offset, bits)
        old_value = _field_value(raw_old, signed, bits)
        if opcode == GET:
            parts.append(_integer(old_value))
            continue
        check = _signed_overflow if signed else _unsigned_overflow
        if opcode == INCRBY:
            direction, limited = check(old_value, argument, bits, overflow)
            new_value = limited if direction else old_value + argument
            reply = new_value
        else:
            new_value = argument if signed else argument & _MASK64
            direction, limited = check(new_value, 0, bits, overflow)
            if direction:
                new_value = limited
            reply = old_value
        if direction and overflow == FAIL:
            parts.append(nil)
            continue
        parts.append(_integer(reply))
        if new_value != old_value:
            _set_field(buf, offset, bits, new_value)
            changed = True
    if grown or changed:
        if old is None:
            db.store(key, slot, bytes(buf))
        else:
            db.replace(key, slot, bytes(buf))
    return b"".join(parts)


def _field_value(raw: int, signed: bool, bits: int) -> int:
    """A raw field as the signed or unsigned integer it stands for."""
    if signed and raw >> (bits - 1):
        return raw - (1 << bits)
    return raw


@worker_command("bitfield")
def bitfield_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _bitfield(ctx, argv, False)


@worker_command("bitfield_ro")
def bitfield_ro_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _bitfield(ctx, argv, True)
