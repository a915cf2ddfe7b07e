"""HyperLogLog commands in Redis's own representation, after Valkey's hyperloglog.c.

An HLL is a plain string value, byte for byte what Valkey stores: a 16-byte header ("HYLL",
the encoding byte, three unused bytes, the cached cardinality as a little-endian uint64 whose
top bit marks it stale), then either 16384 6-bit registers packed LSB first ("dense", 12288
bytes) or a run-length "sparse" form (ZERO 00xxxxxx, XZERO 01xxxxxx yyyyyyyy, VAL 1vvvvvxx).
Sparse updates replay Valkey's exact opcode splitting and merging so that the same PFADDs give
the same bytes.

Whole-register work uses "raw" registers, one byte each (16384 bytes), and SWAR arithmetic on
them as big integers: unpacking/packing the dense form and the register-wise max of a merge
are a handful of big-int operations instead of 16384 Python steps.
"""
from __future__ import annotations

import math
import random
import re
import struct
from bisect import bisect_right

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..slots import keyslot
from .context import Ctx

NOT_HLL_ERROR = "WRONGTYPE Key is not a valid HyperLogLog string value."
INVALID_HLL_ERROR = "INVALIDOBJ Corrupted HLL object detected"
NO_SUCH_KEY_ERROR = "ERR The specified key does not exist"
NOT_SPARSE_ERROR = "ERR HLL encoding is not sparse"

DEFAULT_SPARSE_MAX_BYTES = 3000

HLL_P = 14
HLL_Q = 64 - HLL_P
REGISTERS = 1 << HLL_P
REGISTER_MASK = REGISTERS - 1
HEADER_SIZE = 16
DENSE_BYTES = REGISTERS * 6 // 8
DENSE_SIZE = HEADER_SIZE + DENSE_BYTES
DENSE, SPARSE = 0, 1
SPARSE_VAL_MAX_VALUE = 32
SPARSE_VAL_MAX_LEN = 4
SPARSE_ZERO_MAX_LEN = 64
CACHE_STALE_BIT = 0x80              # in header byte 15 (the top byte of the cached cardinality)
ALPHA_INF = 0.721347520444481703680  # 0.5 / ln(2)

# A new HLL: sparse, one XZERO opcode covering all 16384 registers.
EMPTY_HLL = b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xff"

_WRONGTYPE = errors.WRONGTYPE


# -- MurmurHash64A ----------------------------------------------------------------------------

_M = 0xC6A4A7935BD1E995
_MASK64 = (1 << 64) - 1
_SEED = 0xADC83B19
# h = seed ^ (len * m) for the usual element lengths, and a struct per number of 8-byte blocks.
_SEEDED = [(_SEED ^ (n * _M)) & _MASK64 for n in range(256)]
_BLOCKS = [struct.Struct("<%dQ" % n) for n in range(32)]


def murmurhash64a(data: bytes, seed: int = _SEED) -> int:
    """MurmurHash64A as in Valkey (endian neutral: blocks read little-endian)."""
    m, mask = _M, _MASK64
    size = len(data)
    h = _SEEDED[size] if seed == _SEED and size < 256 else (seed ^ (size * m)) & mask
    blocks = size >> 3
    if blocks:
        unpack = _BLOCKS[blocks].unpack_from if blocks < 32 else struct.Struct("<%dQ" % blocks).unpack_from
        for k in unpack(data):
            k = (k * m) & mask
            k ^= k >> 47
            h ^= (k * m) & mask
            h = (h * m) & mask
    if size & 7:
        h ^= int.from_bytes(data[blocks << 3:], "little")
        h = (h * m) & mask
    h ^= h >> 47
    h = (h * m) & mask
    return h ^ (h >> 47)


def pattern(element: bytes) -> tuple[int, int]:
    """(register index, length of the 000..1 run) of an element (hllPatLen)."""
    h = murmurhash64a(element)
    rest = (h >> HLL_P) | (1 << HLL_Q)
    return h & REGISTER_MASK, (rest & -rest).bit_length()


# -- raw registers as big integers (SWAR) ------------------------------------------------------

def _repeat(byte: int, count: int) -> int:
    return int.from_bytes(bytes((byte,)) * count, "little")


_GROUPS = REGISTERS // 4              # dense: 4 registers in each 3 bytes
_LOW6 = _repeat(0x3F, _GROUPS)
_LOW4 = _repeat(0x0F, _GROUPS)
_LOW2 = _repeat(0x03, _GROUPS)
_HIGH_BITS = _repeat(0x80, REGISTERS)
_LOW_BITS = _repeat(0x01, REGISTERS)


def dense_to_raw(registers) -> bytearray:
    """The 12288 dense register bytes as 16384 raw one-byte registers."""
    b0 = int.from_bytes(registers[0::3], "little")
    b1 = int.from_bytes(registers[1::3], "little")
    b2 = int.from_bytes(registers[2::3], "little")
    raw = bytearray(REGISTERS)
    raw[0::4] = (b0 & _LOW6).to_bytes(_GROUPS, "little")
    raw[1::4] = (((b0 >> 6) & _LOW2) | ((b1 & _LOW4) << 2)).to_bytes(_GROUPS, "little")
    raw[2::4] = (((b1 >> 4) & _LOW4) | ((b2 & _LOW2) << 4)).to_bytes(_GROUPS, "little")
    raw[3::4] = ((b2 >> 2) & _LOW6).to_bytes(_GROUPS, "little")
    return raw


def raw_to_dense(raw) -> bytearray:
    """16384 raw registers (each <= 63) packed into the 12288 dense register bytes."""
    r0 = int.from_bytes(raw[0::4], "little")
    r1 = int.from_bytes(raw[1::4], "little")
    r2 = int.from_bytes(raw[2::4], "little")
    r3 = int.from_bytes(raw[3::4], "little")
    dense = bytearray(DENSE_BYTES)
    dense[0::3] = (r0 | ((r1 & _LOW2) << 6)).to_bytes(_GROUPS, "little")
    dense[1::3] = (((r1 >> 2) & _LOW4) | ((r2 & _LOW4) << 4)).to_bytes(_GROUPS, "little")
    dense[2::3] = (((r2 >> 4) & _LOW2) | (r3 << 2)).to_bytes(_GROUPS, "little")
    return dense


def raw_max(a: int, b: int) -> int:
    """Bytewise max of two raw register sets held as integers (every byte < 128)."""
    a_wins = ((((a | _HIGH_BITS) - b) >> 7) & _LOW_BITS) * 0xFF
    return b ^ ((a ^ b) & a_wins)


# -- the sparse form ---------------------------------------------------------------------------
# Opcodes are held as ints: ZERO 0x00-0x3f, VAL 0x80-0xff, XZERO (two bytes) 0x4000-0x7fff.

_CODE_BYTES = [bytes((i,)) for i in range(256)]
# VAL opcode → the bytes of its run of raw registers.
_RUNS = {code: bytes((((code >> 2) & 0x1F) + 1,)) * ((code & 3) + 1) for code in range(0x80, 0x100)}
_NONZERO_REGISTER = re.compile(rb"[^\x00]")

def _span(code: int) -> int:
    """How many registers an opcode covers."""
    if code < 0x40:
        return code + 1
    if code < 0x100:
        return (code & 3) + 1
    return (code & 0x3FFF) + 1


def _val(value: int, run: int) -> int:
    return 0x80 | ((value - 1) << 2) | (run - 1)


def _zeros(run: int) -> int:
    """The ZERO or XZERO opcode Valkey writes for a run of zero registers."""
    return 0x4000 | (run - 1) if run > SPARSE_ZERO_MAX_LEN else run - 1


def decode_sparse(payload) -> tuple[list[int], list[int]]:
    """The opcodes of a sparse payload and the first register each covers."""
    codes: list[int] = []
    starts: list[int] = []
    add_code, add_start = codes.append, starts.append
    i, size, first = 0, len(payload), 0
    while i < size:
        b = payload[i]
        add_start(first)
        if b < 0x40:
            add_code(b)
            first += b + 1
            i += 1
        elif b >= 0x80:
            add_code(b)
            first += (b & 3) + 1
            i += 1
        else:
            # a cut-off XZERO reads the string's terminating NUL, as in C
            low = payload[i + 1] if i + 1 < size else 0
            add_code((b << 8) | low)
            first += ((b & 0x3F) << 8 | low) + 1
            i += 2
    return codes, starts


def encode_sparse(codes: list[int]) -> bytes:
    """The sparse payload of a list of opcodes."""
    return b"".join([_CODE_BYTES[c] if c < 0x100 else c.to_bytes(2, "big") for c in codes])



def sparse_raw(payload) -> bytearray | None:
    """Raw registers of a sparse payload, None if it is corrupt (runs past or short of 16384)."""
    raw = bytearray(REGISTERS)
    i, size, index = 0, len(payload), 0
    while i < size:
        b = payload[i]
        if b < 0x40:
            index += b + 1
            i += 1
        elif b < 0x80:
            index += (((b & 0x3F) << 8) | (payload[i + 1] if i + 1 < size else 0)) + 1
            i += 2
        else:
            run = (b & 3) + 1
            if index + run <= REGISTERS:
                raw[index:index + run] = _RUNS[b]
            index += run
            i += 1
        if index > REGISTERS:
            return None
    return raw if index == REGISTERS else None



def sparse_histogram(payload) -> list[int] | None:
    """Register histogram of a sparse payload, None if corrupt (hllSparseRegHisto)."""
    histogram = [0] * 64
    i, size, index = 0, len(payload), 0
    while i < size:
        b = payload[i]
        if b < 0x40:
            run = b + 1
            value = 0
            i += 1
        elif b < 0x80:
            run = (((b & 0x3F) << 8) | (payload[i + 1] if i + 1 < size else 0)) + 1
            value = 0
            i += 2
        else:
            run = (b & 3) + 1
            value = ((b >> 2) & 0x1F) + 1
            i += 1
        if index + run > REGISTERS:
            return None
        index += run
        histogram[value] += run
    return histogram if index == REGISTERS else None


# -- estimation --------------------------------------------------------------------------------

def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_prev = z
        z += x * y
        y += y
        if z_prev == z:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_prev = z
        y *= 0.5
        d = 1.0 - x
        z -= d * d * y
        if z_prev == z:
            return z / 3


def estimate(histogram: list[int]) -> int:
    """hllCount's estimate from a register histogram (Ertl's improved estimator)."""
    m = float(REGISTERS)
    z = m * _tau((m - histogram[HLL_Q + 1]) / m)
    for j in range(HLL_Q, 0, -1):
        z += histogram[j]
        z *= 0.5
    z += m * _sigma(histogram[0] / m)
    if z == 0.0:
        return _LLROUND_INVALID                  # registers all above 51: a hand-made value
    e = ALPHA_INF * m * m / z
    if e >= 9.223372036854775807e18:
        return _LLROUND_INVALID
    whole = math.floor(e)                    # llroundl: halves away from zero
    return whole + 1 if e - whole >= 0.5 else whole


# What llroundl gives on x86-64 for a result out of range (inf included): LLONG_MIN.
_LLROUND_INVALID = -(1 << 63)


def raw_histogram(raw: bytes) -> list[int]:
    """How many of the 16384 raw registers hold each value 0..63."""
    top = max(raw)
    histogram = [raw.count(v) for v in range(top + 1)]
    return histogram + [0] * (64 - len(histogram))


# -- values ------------------------------------------------------------------------------------

def is_hll(value: bytes) -> bool:
    """isHLLObjectOrReply's checks on a string value."""
    return (len(value) >= HEADER_SIZE and value[:4] == b"HYLL" and value[4] <= SPARSE
            and (value[4] == SPARSE or len(value) == DENSE_SIZE))


def _read_hll(ctx: Ctx, key: bytes, slot: int, counted: bool = True) -> bytes | None:
    """The HLL at key or None; WRONGTYPE for other types and for strings that are not HLLs.
    `counted`: a read lookup (keyspace hits/misses), as opposed to Valkey's lookupKeyWrite."""
    value = ctx.db.lookup_read(key, slot) if counted else ctx.db.lookup(key, slot)
    if value is None:
        return None
    if type(value) is not bytes:
        raise CommandError(_WRONGTYPE)
    if not is_hll(value):
        raise CommandError(NOT_HLL_ERROR)
    return value


def value_raw(value: bytes) -> bytearray:
    """Raw registers of a valid-looking HLL value; INVALIDOBJ if its sparse form is corrupt."""
    if value[4] == DENSE:
        return dense_to_raw(memoryview(value)[HEADER_SIZE:])
    raw = sparse_raw(memoryview(value)[HEADER_SIZE:])
    if raw is None:
        raise CommandError(INVALID_HLL_ERROR)
    return raw


def count_value(value: bytes) -> int | None:
    """The cardinality estimate of an HLL value, None if its sparse form is corrupt."""
    if value[4] == DENSE:
        return estimate(raw_histogram(dense_to_raw(memoryview(value)[HEADER_SIZE:])))
    histogram = sparse_histogram(memoryview(value)[HEADER_SIZE:])
    return None if histogram is None else estimate(histogram)


class Hll:
    """An HLL being modified: a dense bytearray, or the sparse opcodes, until written back."""

    __slots__ = ("header", "dense", "codes", "starts", "size", "max_bytes")

    def __init__(self, value: bytes, max_bytes: int) -> None:
        self.header = bytearray(value[:HEADER_SIZE])
        self.max_bytes = max_bytes
        if value[4] == DENSE:
            self.dense: bytearray | None = bytearray(value[HEADER_SIZE:])
            self.codes: list[int] = []
            self.starts: list[int] = []
        else:
            self.dense = None
            self.codes, self.starts = decode_sparse(memoryview(value)[HEADER_SIZE:])
        self.size = len(value)

    @property
    def is_sparse(self) -> bool:
        return self.dense is None

    def to_bytes(self) -> bytes:
        if self.dense is not None:
            return bytes(self.header) + self.dense
        return bytes(self.header) + encode_sparse(self.codes)

    def invalidate_cache(self) -> None:
        self.header[15] |= CACHE_STALE_BIT

    def set(self, index: int, count: int) -> int:
        """Raise register `index` to `count`: 1 if it changed, 0 if not, -1 if corrupt."""
        if self.dense is not None:
            return dense_set(self.dense, index, count)
        return self._sparse_set(index, count)

    def to_dense(self) -> bool:
        """Promote to the dense form (hllSparseToDense); False if the sparse form is corrupt."""
        if self.dense is not None:
            return True
        raw = sparse_raw(encode_sparse(self.codes))
        if raw is None:
            return False
        self.dense = raw_to_dense(raw)
        self.header[4] = DENSE
        self.codes, self.starts = [], []
        self.size = DENSE_SIZE
        return True

    def _sparse_set(self, index: int, count: int) -> int:
        """hllSparseSet, opcode for opcode."""
        if count > SPARSE_VAL_MAX_VALUE:
            return self._promote_and_set(index, count)
        codes, starts = self.codes, self.starts
        i = bisect_right(starts, index) - 1
        if i < 0:
            return -1
        code = codes[i]
        first = starts[i]
        span = _span(code)
        if index > first + span - 1:
            return -1                        # the opcodes end before this register
        is_val = 0x80 <= code < 0x100
        if is_val:
            if ((code >> 2) & 0x1F) + 1 >= count:
                return 0
            if span == 1:
                codes[i] = _val(count, 1)
                return self._merge_from(i)
        elif code < 0x40 and span == 1:
            codes[i] = _val(count, 1)
            return self._merge_from(i)
        last = first + span - 1
        new_codes: list[int] = []
        new_starts: list[int] = []
        if is_val:
            current = ((code >> 2) & 0x1F) + 1
            if index != first:
                new_codes.append(_val(current, index - first))
                new_starts.append(first)
            new_codes.append(_val(count, 1))
            new_starts.append(index)
            if index != last:
                new_codes.append(_val(current, last - index))
                new_starts.append(index + 1)
        else:
            if index != first:
                new_codes.append(_zeros(index - first))
                new_starts.append(first)
            new_codes.append(_val(count, 1))
            new_starts.append(index)
            if index != last:
                new_codes.append(_zeros(last - index))
                new_starts.append(index + 1)
        new_length = sum(2 if c >= 0x100 else 1 for c in new_codes)
        delta = new_length - (2 if code >= 0x100 else 1)
        if delta > 0 and self.size + delta > self.max_bytes:
            return self._promote_and_set(index, count)
        codes[i:i + 1] = new_codes
        starts[i:i + 1] = new_starts
        self.size += delta
        return self._merge_from(i)

    def _merge_from(self, i: int) -> int:
        """Merge adjacent VAL opcodes of equal value over up to 5 opcodes from the one before
        the updated one, and mark the cache stale (the tail of hllSparseSet)."""
        codes, starts = self.codes, self.starts
        j = i - 1 if i > 0 else 0
        scan = 5
        while j < len(codes) and scan:
            scan -= 1
            code = codes[j]
            if 0x80 <= code < 0x100 and j + 1 < len(codes):
                nxt = codes[j + 1]
                if 0x80 <= nxt < 0x100 and (code ^ nxt) & 0x7C == 0:
                    run = (code & 3) + (nxt & 3) + 2
                    if run <= SPARSE_VAL_MAX_LEN:
                        codes[j + 1] = (code & ~3) | (run - 1)
                        starts[j + 1] = starts[j]
                        del codes[j]
                        del starts[j]
                        self.size -= 1
                        continue
            j += 1
        self.invalidate_cache()
        return 1

    def _promote_and_set(self, index: int, count: int) -> int:
        if not self.to_dense():
            return -1
        return dense_set(self.dense, index, count)

    def raw(self) -> bytearray:
        if self.dense is not None:
            return dense_to_raw(self.dense)
        raw = sparse_raw(encode_sparse(self.codes))
        if raw is None:
            raise CommandError(INVALID_HLL_ERROR)
        return raw


def dense_set(registers: bytearray, index: int, count: int) -> int:
    """Raise dense register `index` to `count` if it is lower (hllDenseSet): 1 if changed."""
    pos = index * 6
    byte, shift = pos >> 3, pos & 7
    b0 = registers[byte]
    if shift <= 2:
        if (b0 >> shift) & 63 >= count:
            return 0
        registers[byte] = (b0 & ~(63 << shift) & 0xFF) | (count << shift)
        return 1
    b1 = registers[byte + 1]
    if ((b0 >> shift) | (b1 << (8 - shift))) & 63 >= count:
        return 0
    registers[byte] = (b0 & ((1 << shift) - 1)) | ((count << shift) & 0xFF)
    registers[byte + 1] = (b1 & ~(63 >> (8 - shift)) & 0xFF) | (count >> (8 - shift))
    return 1


def _sparse_max_bytes(ctx: Ctx) -> int:
    return ctx.config.get("hll-sparse-max-bytes", DEFAULT_SPARSE_MAX_BYTES)


def _write(ctx: Ctx, key: bytes, slot: int, value: bytes, created: bool) -> None:
    if created:
        ctx.db.store(key, slot, value)
    else:
        ctx.db.replace(key, slot, value)


# -- commands ----------------------------------------------------------------------------------

@worker_command("pfadd")
def pfadd_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, slot = argv[1], ctx.slot
    value = _read_hll(ctx, key, slot, counted=False)
    created = value is None
    if created:
        value = EMPTY_HLL
    elements = argv[2:]
    if value[4] == DENSE:
        registers = bytearray(memoryview(value)[HEADER_SIZE:])
        updated = created
        for element in elements:
            index, count = pattern(element)
            if dense_set(registers, index, count):
                updated = True
        if not updated:
            return resp.ZERO
        header = bytearray(value[:HEADER_SIZE])
        header[15] |= CACHE_STALE_BIT
        _write(ctx, key, slot, bytes(header) + registers, created)
        return resp.ONE
    hll = Hll(value, _sparse_max_bytes(ctx))
    updated = created
    for element in elements:
        index, count = pattern(element)
        result = hll.set(index, count)
        if result < 0:
            if updated:            # Valkey changed the value in place before the corrupt part
                hll.invalidate_cache()
                _write(ctx, key, slot, hll.to_bytes(), created)
            raise CommandError(INVALID_HLL_ERROR)
        if result:
            updated = True
    if not updated:
        return resp.ZERO
    hll.invalidate_cache()
    _write(ctx, key, slot, hll.to_bytes(), created)
    return resp.ONE


@worker_command("pfcount")
def pfcount_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        merged = 0
        for key in argv[1:]:
            value = _read_hll(ctx, key, keyslot(key))
            if value is not None:
                merged = raw_max(merged, int.from_bytes(value_raw(value), "little"))
        return resp.integer(estimate(raw_histogram(merged.to_bytes(REGISTERS, "little"))))
    key, slot = argv[1], ctx.slot
    value = _read_hll(ctx, key, slot)
    if value is None:
        return resp.ZERO
    if not value[15] & CACHE_STALE_BIT:
        return resp.integer(int.from_bytes(value[8:16], "little"))
    card = count_value(value)
    if card is None:
        raise CommandError(INVALID_HLL_ERROR)
    # the cache lives in the value: Valkey writes it back (and it counts as a change of the key)
    ctx.db.replace(key, slot, b"".join((value[:8], (card & _MASK64).to_bytes(8, "little"),
                                        memoryview(value)[HEADER_SIZE:])))
    return resp.integer(card)


@worker_command("pfmerge")
def pfmerge_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    merged = 0
    use_dense = False
    dest, dest_slot = argv[1], ctx.slot
    for i, key in enumerate(argv[1:]):
        value = _read_hll(ctx, key, dest_slot if i == 0 else keyslot(key))
        if value is None:
            continue
        if value[4] == DENSE:
            use_dense = True
        merged = raw_max(merged, int.from_bytes(value_raw(value), "little"))
    value = ctx.db.lookup(dest, dest_slot)
    created = value is None
    hll = Hll(EMPTY_HLL if created else value, _sparse_max_bytes(ctx))
    raw = merged.to_bytes(REGISTERS, "little")
    if use_dense:
        if not hll.to_dense():
            raise CommandError(INVALID_HLL_ERROR)
        hll.dense = raw_to_dense(raw)
    else:
        for match in _NONZERO_REGISTER.finditer(raw):
            index = match.start()
            hll.set(index, raw[index])
    hll.invalidate_cache()
    _write(ctx, dest, dest_slot, hll.to_bytes(), created)
    return resp.OK


@worker_command("pfdebug")
def pfdebug_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    subcommand, key, slot = argv[1], argv[2], ctx.slot
    value = _read_hll(ctx, key, slot, counted=False)
    if value is None:
        raise CommandError(NO_SUCH_KEY_ERROR)
    name = subcommand.lower()
    if name == b"getreg":
        if value[4] == SPARSE:
            value = _to_dense_value(ctx, key, slot, value)
        raw = dense_to_raw(memoryview(value)[HEADER_SIZE:])
        integer = resp.integer
        return resp.array_header(REGISTERS) + b"".join([integer(r) for r in raw])
    if name == b"decode":
        if value[4] != SPARSE:
            raise CommandError(NOT_SPARSE_ERROR)
        return resp.bulk(_decode_text(memoryview(value)[HEADER_SIZE:]))
    if name == b"encoding":
        return b"+dense\r\n" if value[4] == DENSE else b"+sparse\r\n"
    if name == b"todense":
        if value[4] == DENSE:
            return resp.ZERO
        _to_dense_value(ctx, key, slot, value)
        return resp.ONE
    text = subcommand.decode("utf-8", "replace")
    raise CommandError(f"ERR Unknown PFDEBUG subcommand '{text}'")


def _to_dense_value(ctx: Ctx, key: bytes, slot: int, value: bytes) -> bytes:
    """Convert a stored sparse HLL to dense in place (the cached cardinality is kept)."""
    hll = Hll(value, _sparse_max_bytes(ctx))
    if not hll.to_dense():
        raise CommandError(INVALID_HLL_ERROR)
    dense = hll.to_bytes()
    ctx.db.replace(key, slot, dense)
    return dense


def _decode_text(payload) -> bytes:
    """PFDEBUG DECODE's listing of the sparse opcodes."""
    parts = []
    i, size = 0, len(payload)
    while i < size:
        b = payload[i]
        if b < 0x40:
            parts.append(b"z:%d" % (b + 1))
            i += 1
        elif b < 0x80:
            parts.append(b"Z:%d" % ((((b & 0x3F) << 8) | (payload[i + 1] if i + 1 < size else 0)) + 1))
            i += 2
        else:
            parts.append(b"v:%d,%d" % (((b >> 2) & 0x1F) + 1, (b & 3) + 1))
            i += 1
    return b" ".join(parts)


# -- PFSELFTEST --------------------------------------------------------------------------------

def self_test(rounds: int = 4, elements: int = 20000) -> str | None:
    """Consistency checks of this implementation; an error message, or None when all pass."""
    rng = random.Random()
    for _ in range(rounds):
        raw = bytes(rng.randrange(64) for _ in range(REGISTERS))
        dense = raw_to_dense(raw)
        for index in range(0, REGISTERS, 97):
            pos = index * 6
            packed = int.from_bytes(dense[pos >> 3:(pos >> 3) + 2], "little") >> (pos & 7) & 63
            if packed != raw[index]:
                return f"TESTFAILED Register {index} should be {raw[index]} but is {packed}"
        if dense_to_raw(dense) != raw:
            return "TESTFAILED dense registers do not round-trip"
    dense_hll = Hll(EMPTY_HLL, 1 << 30)
    dense_hll.to_dense()
    sparse_hll = Hll(EMPTY_HLL, DEFAULT_SPARSE_MAX_BYTES)
    seed = rng.getrandbits(64)
    checkpoint = 1
    relative_error = 1.04 / math.sqrt(REGISTERS)
    for j in range(1, elements + 1):
        element = (j ^ seed).to_bytes(8, "little")
        index, count = pattern(element)
        dense_hll.set(index, count)
        sparse_hll.set(index, count)
        if j == checkpoint:
            if j < DEFAULT_SPARSE_MAX_BYTES // 2 and not sparse_hll.is_sparse:
                return "TESTFAILED sparse encoding not used"
            dense_count = count_value(dense_hll.to_bytes())
            if dense_count != count_value(sparse_hll.to_bytes()):
                return "TESTFAILED dense/sparse disagree"
            max_error = 1 if j == 10 else math.ceil(relative_error * 6 * j)
            if abs(j - dense_count) > max_error:
                return f"TESTFAILED Too big error. card:{j} abserr:{abs(j - dense_count)}"
            checkpoint *= 10
    return None


@worker_command("pfselftest")
def pfselftest_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    failure = self_test()
    if failure is not None:
        raise CommandError(failure)
    return resp.OK
