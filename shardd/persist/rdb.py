"""RDB files and DUMP payloads in Redis's own format (Valkey 8's rdb.c, listpack.c, ziplist.c,
intset.c, zipmap.c, quicklist.c).

Writing (`RdbWriter`, `dump_value`) produces what Redis 7.0 writes at RDB version 10 — the
version Redis 7.0, Redis 7.2 and Valkey 8 all load — choosing each value's compact encoding
from its OBJECT ENCODING in shardd: lists as quicklist-2 nodes of listpacks (split as
Valkey's quicklist splits them), listpack or plain hashes, intset or plain sets (a listpack
set is plain below version 11), listpack or skiplist ("zset-2") sorted sets, streams as
listpacks-2 (at the end of this module). Strings are integer-encoded or LZF-compressed exactly
as rdbSaveRawString does.

Reading (`load`, `restore_value`) takes every type and encoding that Redis 2.x to 7.2 and
Valkey 8 write (RDB versions 1 to 11) and rebuilds shardd's value classes with the encoding
Valkey would end up with under the given config (rdbLoadObject's conversions), streams of
the three stream types; module values are refused with a message naming them; functions are
kept as their library code; AUX fields as a dict.

The reader is streaming: it parses records out of a buffered window of the input, and when a
record runs past the window it reads more and parses that record again from its start, so
a value is never half-built and a big value costs no more than twice its parse. Corrupt or
truncated input raises RdbError naming the byte offset.
"""
from __future__ import annotations

import struct
import time
from itertools import chain
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from .. import REDIS_VERSION
from ..dtoa import d2string
from ..numbers import string2ll
from ..worker import t_list
from ..worker.keyspace import unpacked
from ..worker.t_hash import Hash, shared_name
from ..worker.t_list import (LP_EMPTY_BYTES, SIZE_ESTIMATE_OVERHEAD, List, entry_size,
                             exceeds_node_limit, list_from_quicklist)
from ..worker.t_set import HASHTABLE, INTSET, LISTPACK, Set
from ..worker.t_zset import ZSet
from . import lzf
from .crc import crc64

# -- format constants (rdb.h) ------------------------------------------------------------------

WRITE_VERSION = 10          # what we write: Redis 7.0, 7.2 and Valkey 8 load it
MAX_VERSION = 11            # the newest version we read (Redis 7.2, Valkey 7.2/8)

TYPE_STRING = 0
TYPE_LIST = 1
TYPE_SET = 2
TYPE_ZSET = 3
TYPE_HASH = 4
TYPE_ZSET_2 = 5
TYPE_MODULE_PRE_GA = 6
TYPE_MODULE_2 = 7
TYPE_HASH_ZIPMAP = 9
TYPE_LIST_ZIPLIST = 10
TYPE_SET_INTSET = 11
TYPE_ZSET_ZIPLIST = 12
TYPE_HASH_ZIPLIST = 13
TYPE_LIST_QUICKLIST = 14
TYPE_STREAM_LISTPACKS = 15
TYPE_HASH_LISTPACK = 16
TYPE_ZSET_LISTPACK = 17
TYPE_LIST_QUICKLIST_2 = 18
TYPE_STREAM_LISTPACKS_2 = 19
TYPE_SET_LISTPACK = 20
TYPE_STREAM_LISTPACKS_3 = 21

OP_SLOT_INFO = 244
OP_FUNCTION2 = 245
OP_FUNCTION_PRE_GA = 246
OP_MODULE_AUX = 247
OP_IDLE = 248
OP_FREQ = 249
OP_AUX = 250
OP_RESIZEDB = 251
OP_EXPIRETIME_MS = 252
OP_EXPIRETIME = 253
OP_SELECTDB = 254
OP_EOF = 255

QUICKLIST_PLAIN = 1
QUICKLIST_PACKED = 2

_STREAM_TYPES = (TYPE_STREAM_LISTPACKS, TYPE_STREAM_LISTPACKS_2, TYPE_STREAM_LISTPACKS_3)
_MODULE_NAME_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INT_START = frozenset(b"-0123456789")     # first bytes of strings that may be integers
_DOUBLE2LL_BOUND = 2.0 ** 62               # double2ll's range: (double)(LLONG_MAX / 2)
CHUNK = 1 << 20                            # read and write granularity


# -- errors ------------------------------------------------------------------------------------

class RdbError(Exception):
    """Corrupt, truncated or unsupported RDB input; `offset` is the byte where it was found."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte offset {offset})")
        self.reason = reason
        self.offset = offset


class DumpPayloadError(RdbError):
    """A DUMP payload whose RDB version is too new or whose checksum does not match."""


class ShortInput(Exception):
    """Parsing ran past the buffered input (the reader reads more and retries the record).
    IndexError means the same to the reader, so parsers may simply index past the end."""


class Corrupt(Exception):
    """Bad data at `pos` of the buffer being parsed (turned into RdbError with a file offset)."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


# -- limits: the encoding conversions Valkey applies while loading ----------------------------

class Limits:
    """The *-max-listpack-* / set-max-intset-entries configs rdbLoadObject converts by."""

    __slots__ = ("hash_entries", "hash_value", "set_intset", "set_entries", "set_value",
                 "zset_entries", "zset_value", "list_fill", "databases")

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """From typed config values by Valkey's names (the defaults for any missing)."""
        defaults = _default_config()
        if config is None:
            config = defaults

        def get(name: str) -> int:
            value = config.get(name)
            return defaults[name] if value is None else value
        self.hash_entries = get("hash-max-listpack-entries")
        self.hash_value = get("hash-max-listpack-value")
        self.set_intset = min(get("set-max-intset-entries"), 1 << 30)
        self.set_entries = get("set-max-listpack-entries")
        self.set_value = get("set-max-listpack-value")
        self.zset_entries = get("zset-max-listpack-entries")
        self.zset_value = get("zset-max-listpack-value")
        self.list_fill = get("list-max-listpack-size")
        self.databases = get("databases")


_DEFAULTS: dict[str, Any] = {}


def _default_config() -> Mapping[str, Any]:
    if not _DEFAULTS:
        from ..config import Config
        _DEFAULTS.update(Config().values)
    return _DEFAULTS


# ===============================================================================================
# Writing
# ===============================================================================================

_SMALL_LENGTHS = [bytes((n,)) for n in range(64)]


def encode_length(n: int) -> bytes:
    """rdbSaveLen: 6, 14, 32 or 64 bits."""
    if n < 64:
        return _SMALL_LENGTHS[n]
    if n < 16384:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def _encoded_int(n: int) -> bytes | None:
    """rdbEncodeInteger: an 8, 16 or 32-bit integer-encoded string, None if out of range."""
    if -128 <= n <= 127:
        return bytes((0xC0, n & 0xFF))
    if -32768 <= n <= 32767:
        return b"\xc1" + n.to_bytes(2, "little", signed=True)
    if -2147483648 <= n <= 2147483647:
        return b"\xc2" + n.to_bytes(4, "little", signed=True)
    return None


def encode_string(s: bytes, compress: bool = True) -> bytes:
    """rdbSaveRawString: integer-encoded if it is a short canonical integer, LZF-compressed
    if compression is on, the string is over 20 bytes and LZF saves 4 bytes, else raw."""
    n = len(s)
    if n < 12 and n and s[0] in _INT_START:
        value = string2ll(s)
        if value is not None:
            encoded = _encoded_int(value)
            if encoded is not None:
                return encoded
    if compress and n > 20:
        packed = lzf.compress(s)
        if packed is not None:
            return b"\xc3" + encode_length(len(packed)) + encode_length(n) + packed
    if n < 64:
        return _SMALL_LENGTHS[n] + s
    return encode_length(n) + s


# -- listpack and intset blobs -----------------------------------------------------------------

def _backlen(size: int) -> bytes:
    """lpEncodeBacklen: an entry's size, readable backwards."""
    if size <= 127:
        return bytes((size,))
    if size < 16383:
        return bytes((size >> 7, (size & 127) | 128))
    if size < 2097151:
        return bytes((size >> 14, ((size >> 7) & 127) | 128, (size & 127) | 128))
    if size < 268435455:
        return bytes((size >> 21, ((size >> 14) & 127) | 128, ((size >> 7) & 127) | 128,
                      (size & 127) | 128))
    return bytes((size >> 28, ((size >> 21) & 127) | 128, ((size >> 14) & 127) | 128,
                  ((size >> 7) & 127) | 128, (size & 127) | 128))


_LP_SMALL_INTS = [bytes((v, 1)) for v in range(128)]


def _lp_int(v: int) -> bytes:
    """lpEncodeIntegerGetType + backlen: the smallest integer encoding holding v."""
    if 0 <= v <= 127:
        return _LP_SMALL_INTS[v]
    if -4096 <= v <= 4095:
        u = v & 0x1FFF
        return bytes((0xC0 | (u >> 8), u & 0xFF, 2))
    if -32768 <= v <= 32767:
        return b"\xf1" + v.to_bytes(2, "little", signed=True) + b"\x03"
    if -8388608 <= v <= 8388607:
        return b"\xf2" + v.to_bytes(3, "little", signed=True) + b"\x04"
    if -2147483648 <= v <= 2147483647:
        return b"\xf3" + v.to_bytes(4, "little", signed=True) + b"\x05"
    return b"\xf4" + v.to_bytes(8, "little", signed=True) + b"\x09"


def _lp_str(s: bytes) -> bytes:
    n = len(s)
    if n < 64:
        return bytes((0x80 | n,)) + s + bytes((n + 1,))
    if n < 4096:
        return bytes((0xE0 | (n >> 8), n & 0xFF)) + s + _backlen(n + 2)
    return b"\xf0" + n.to_bytes(4, "little") + s + _backlen(n + 5)


def lp_entry(s: bytes) -> bytes:
    """One listpack entry for s as lpAppend stores it (canonical integers as integers)."""
    n = len(s)
    if n < 21 and n and s[0] in _INT_START:
        value = string2ll(s)
        if value is not None:
            return _lp_int(value)
    if n < 64:
        return bytes((0x80 | n,)) + s + bytes((n + 1,))
    return _lp_str(s)


def _lp_score(score: float) -> bytes:
    """A zset score as zzlInsertAt stores it: an integer when double2ll takes it, else d2string."""
    if score.is_integer() and -_DOUBLE2LL_BOUND <= score <= _DOUBLE2LL_BOUND:
        return _lp_int(int(score))
    return _lp_str(d2string(score))


def listpack(entries: list[bytes], count: int) -> bytes:
    """A listpack of already encoded entries."""
    body = b"".join(entries)
    total = len(body) + 7
    return (total.to_bytes(4, "little") + min(count, 65535).to_bytes(2, "little") + body + b"\xff")


def listpack_of(values: Iterable[bytes]) -> bytes:
    entries = list(map(lp_entry, values))
    return listpack(entries, len(entries))


def intset(values: Iterable[int]) -> bytes:
    """An intset blob: the narrowest width holding every value, sorted, little-endian."""
    ints = sorted(values)
    low, high = ints[0], ints[-1]
    if -32768 <= low and high <= 32767:
        width, code = 2, "h"
    elif -2147483648 <= low and high <= 2147483647:
        width, code = 4, "i"
    else:
        width, code = 8, "q"
    return struct.pack(f"<II{len(ints)}{code}", width, len(ints), *ints)


# -- values --------------------------------------------------------------------------------------

# Hook for value types added later (streams): Python class → fn(value, encoder) returning the
# RDB type byte after appending the payload to encoder.out.
EXTRA_WRITERS: dict[type, Callable[[Any, "Encoder"], int]] = {}


class Encoder:
    """Serializes values into `out` (a bytearray), as rdbSaveObjectType + rdbSaveObject.

    `flush`, when given, is called with no arguments whenever `out` grew past CHUNK inside a
    big container, so that a writer can stream it out."""

    __slots__ = ("out", "compress", "version", "fill", "flush")

    def __init__(self, out: bytearray, compress: bool = True, version: int = WRITE_VERSION,
                 fill: int = -2, flush: Callable[[], None] | None = None) -> None:
        self.out = out
        self.compress = compress
        self.version = version
        self.fill = fill
        self.flush = flush

    def _maybe_flush(self) -> None:
        if self.flush is not None and len(self.out) >= CHUNK:
            self.flush()

    def string(self, s: bytes) -> None:
        self.out += encode_string(s, self.compress)

    def value_type(self, value: Any) -> int:
        """The RDB type byte value is written with."""
        kind = type(value)
        if kind is bytes:
            return TYPE_STRING
        if kind is Hash:
            return TYPE_HASH if value.hashtable else TYPE_HASH_LISTPACK
        if kind is List:
            return TYPE_LIST_QUICKLIST_2
        if kind is Set:
            if value.encoding == INTSET:
                return TYPE_SET_INTSET
            if value.encoding == LISTPACK and self.version >= 11:
                return TYPE_SET_LISTPACK
            return TYPE_SET
        if kind is ZSet:
            return TYPE_ZSET_2 if value.skiplist else TYPE_ZSET_LISTPACK
        raise TypeError(f"no RDB encoding for a {kind.__name__} value")

    def value(self, value: Any) -> int:
        """Append value's type byte and payload; returns the type."""
        writer = EXTRA_WRITERS.get(type(value))
        if writer is not None:
            mark = len(self.out)
            self.out.append(0)
            rdbtype = writer(value, self)
            self.out[mark] = rdbtype
            return rdbtype
        rdbtype = self.value_type(value)
        self.out.append(rdbtype)
        self.payload(rdbtype, value)
        return rdbtype

    def payload(self, rdbtype: int, value: Any) -> None:
        """Append value's serialization in the encoding rdbtype names (value_type's choice)."""
        out, compress = self.out, self.compress
        if rdbtype == TYPE_STRING:
            out += encode_string(value, compress)
        elif rdbtype == TYPE_HASH_LISTPACK:
            entries = list(map(lp_entry, chain.from_iterable(value.items())))
            out += encode_string(listpack(entries, len(entries)), compress)
        elif rdbtype == TYPE_HASH:
            out += encode_length(len(value))
            for i, (field, val) in enumerate(value.items()):
                out += encode_string(field, compress)
                out += encode_string(val, compress)
                if not i & 1023:
                    self._maybe_flush()
        elif rdbtype == TYPE_LIST_QUICKLIST_2:
            self._quicklist(value)
        elif rdbtype == TYPE_SET_INTSET:
            out += encode_string(intset(map(int, value)), compress)
        elif rdbtype == TYPE_SET_LISTPACK:
            out += encode_string(listpack_of(value), compress)
        elif rdbtype == TYPE_SET:
            out += encode_length(len(value))
            for i, member in enumerate(value):
                out += encode_string(member, compress)
                if not i & 1023:
                    self._maybe_flush()
        elif rdbtype == TYPE_ZSET_LISTPACK:
            entries = []
            for score, member in value.order:
                entries.append(lp_entry(member))
                entries.append(_lp_score(score))
            out += encode_string(listpack(entries, len(entries)), compress)
        elif rdbtype == TYPE_ZSET_2:
            # Highest first, as Valkey walks the skiplist from its tail (it loads faster).
            out += encode_length(len(value))
            pack = struct.Struct("<d").pack
            for i, (score, member) in enumerate(reversed(value.order)):
                out += encode_string(member, compress)
                out += pack(score)
                if not i & 1023:
                    self._maybe_flush()
        else:
            raise ValueError(f"cannot write RDB type {rdbtype}")

    def _quicklist(self, value: List) -> None:
        """RDB_TYPE_LIST_QUICKLIST_2: a listpack-encoded list is one packed node; a quicklist
        is split into nodes the way quicklistPushTail fills them under list-max-listpack-size."""
        out, compress = self.out, self.compress
        if not value.quick:
            nodes = [(QUICKLIST_PACKED, value)]
        else:
            nodes = quicklist_nodes(value, self.fill)
        out += encode_length(len(nodes))
        for container, node in nodes:
            out += _SMALL_LENGTHS[container]
            if container == QUICKLIST_PLAIN:
                out += encode_string(node, compress)
            else:
                out += encode_string(listpack_of(node), compress)
            self._maybe_flush()


def quicklist_nodes(values: Iterable[bytes], fill: int) -> list[tuple[int, Any]]:
    """(container, element or elements) per node, as quicklistPushTail would build them."""
    nodes: list[tuple[int, Any]] = []
    node: list[bytes] | None = None
    node_bytes = 0
    is_large = t_list._is_large_element
    for element in values:
        size = len(element)
        if is_large(size, fill):
            nodes.append((QUICKLIST_PLAIN, element))
            node = None
        elif node is not None and not exceeds_node_limit(
                fill, node_bytes + size + SIZE_ESTIMATE_OVERHEAD, len(node) + 1):
            node.append(element)
            node_bytes += entry_size(element)
        else:
            node = [element]
            nodes.append((QUICKLIST_PACKED, node))
            node_bytes = LP_EMPTY_BYTES + entry_size(element)
    return nodes


def dump_value(value: Any, compress: bool = True, fill: int = -2,
               version: int = WRITE_VERSION) -> bytes:
    """DUMP's payload: type byte, serialized value, 2-byte RDB version, CRC64 (little-endian)."""
    out = bytearray()
    Encoder(out, compress, version, fill).value(value)
    out += version.to_bytes(2, "little")
    out += crc64(bytes(out)).to_bytes(8, "little")
    return bytes(out)


# -- files -----------------------------------------------------------------------------------

class RdbWriter:
    """Writes an RDB file to a binary stream, in chunks.

        w = RdbWriter(stream); w.start(); w.select_db(0, n_keys, n_expires)
        w.write_key(key, value, expire_ms); ...; w.finish()

    `checksum=False` writes a zero checksum (rdbchecksum no); `compress` is rdbcompression."""

    def __init__(self, stream: BinaryIO, *, version: int = WRITE_VERSION, compress: bool = True,
                 checksum: bool = True, fill: int = -2) -> None:
        if version not in (10, 11):            # the types we write exist from version 10 on
            raise ValueError(f"cannot write RDB version {version}")
        self.stream = stream
        self.version = version
        self.checksum = checksum
        self.crc = 0
        self.written = 0
        self.out = bytearray()
        self.encoder = Encoder(self.out, compress, version, fill, self.flush)
        self.compress = compress
        self.keys = 0

    def flush(self) -> None:
        out = self.out
        if out:
            data = bytes(out)
            if self.checksum:
                self.crc = crc64(data, self.crc)
            self.stream.write(data)
            self.written += len(data)
            out.clear()

    def start(self, aux: Mapping[bytes | str, bytes | str | int] | None = None,
              used_mem: int = 0) -> None:
        """The magic and Redis's usual AUX fields (plus `aux`, which may override them)."""
        self.out += b"REDIS%04d" % self.version
        fields: dict[bytes, bytes] = {
            b"redis-ver": REDIS_VERSION.encode(),
            b"redis-bits": b"64",
            b"ctime": b"%d" % int(time.time()),
            b"used-mem": b"%d" % used_mem,
            b"aof-base": b"0",
        }
        for name, value in (aux or {}).items():
            fields[_as_bytes(name)] = _as_bytes(value)
        for name, value in fields.items():
            self.aux(name, value)

    def aux(self, name: bytes, value: bytes) -> None:
        out = self.out
        out.append(OP_AUX)
        out += encode_string(name, self.compress)
        out += encode_string(value, self.compress)

    def function(self, code: bytes) -> None:
        """A function library (FUNCTION2: its source code)."""
        self.out.append(OP_FUNCTION2)
        self.out += encode_string(code, self.compress)

    def select_db(self, index: int, keys: int, expires: int) -> None:
        """SELECTDB and the RESIZEDB hint that precede a db's keys."""
        out = self.out
        out.append(OP_SELECTDB)
        out += encode_length(index)
        out.append(OP_RESIZEDB)
        out += encode_length(keys)
        out += encode_length(expires)

    def write_key(self, key: bytes, value: Any, expire_ms: int | None = None) -> None:
        out = self.out
        if expire_ms is not None:
            out.append(OP_EXPIRETIME_MS)
            out += expire_ms.to_bytes(8, "little", signed=True)
        if type(value) is bytes:
            out.append(TYPE_STRING)
            out += encode_string(key, self.compress)
            out += encode_string(value, self.compress)
        else:
            value = unpacked(value)          # a small container rests packed in the keyspace
            encoder = self.encoder
            rdbtype = encoder.value_type(value) if type(value) not in EXTRA_WRITERS else None
            if rdbtype is None:
                # the type byte comes before the key: serialize the value aside first
                aside = bytearray()
                rdbtype = Encoder(aside, self.compress, self.version, encoder.fill).value(value)
                out.append(rdbtype)
                out += encode_string(key, self.compress)
                out += aside[1:]
            else:
                out.append(rdbtype)
                out += encode_string(key, self.compress)
                encoder.payload(rdbtype, value)
        self.keys += 1
        if len(out) >= CHUNK:
            self.flush()

    def finish(self) -> int:
        """EOF and the checksum; flushes. Returns the bytes written."""
        self.out.append(OP_EOF)
        self.flush()
        footer = (self.crc if self.checksum else 0).to_bytes(8, "little")
        self.stream.write(footer)
        self.written += 8
        return self.written


def _as_bytes(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return b"%d" % value
    return value.encode()


def write_db(writer: RdbWriter, db: Any) -> int:
    """Write every key of a shardd Db (with its expiry), preceded by SELECTDB/RESIZEDB; a db
    with no keys writes nothing. Returns the number of keys written."""
    if not db.size:
        return 0
    writer.select_db(db.index, db.size, db.volatile)
    write_key = writer.write_key
    expires = db.expires
    written = 0
    for slot, keys in db.data.items():
        slot_expires = expires.get(slot)
        if slot_expires:
            get_expire = slot_expires.get
            for key, value in keys.items():
                write_key(key, value, get_expire(key))
        else:
            for key, value in keys.items():
                write_key(key, value)
        written += len(keys)
    return written


# ===============================================================================================
# Reading
# ===============================================================================================

def read_length(buf: bytes, pos: int) -> tuple[int, int]:
    """rdbLoadLen at buf[pos]: (length, next position)."""
    first = buf[pos]
    kind = first >> 6
    if kind == 0:
        return first, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if first == 0x80:
        end = pos + 5
        if end > len(buf):
            raise ShortInput
        return int.from_bytes(buf[pos + 1:end], "big"), end
    if first == 0x81:
        end = pos + 9
        if end > len(buf):
            raise ShortInput
        return int.from_bytes(buf[pos + 1:end], "big"), end
    raise Corrupt(f"bad length encoding 0x{first:02x}", pos)


def read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    """rdbGenericLoadStringObject at buf[pos]: (string, next position)."""
    first = buf[pos]
    if first < 0x40:
        end = pos + 1 + first
        if end > len(buf):
            raise ShortInput
        return buf[pos + 1:end], end
    if first < 0x80:
        n = ((first & 0x3F) << 8) | buf[pos + 1]
        pos += 2
    elif first >= 0xC0:
        return _read_encoded_string(buf, pos, first & 0x3F)
    elif first == 0x80:
        if pos + 5 > len(buf):
            raise ShortInput
        n = int.from_bytes(buf[pos + 1:pos + 5], "big")
        pos += 5
    elif first == 0x81:
        if pos + 9 > len(buf):
            raise ShortInput
        n = int.from_bytes(buf[pos + 1:pos + 9], "big")
        pos += 9
    else:
        raise Corrupt(f"bad string length encoding 0x{first:02x}", pos)
    end = pos + n
    if end > len(buf):
        raise ShortInput
    return buf[pos:end], end


def _read_encoded_string(buf: bytes, pos: int, encoding: int) -> tuple[bytes, int]:
    """An integer-encoded (8, 16, 32 bits) or LZF-compressed string at buf[pos]."""
    if encoding == 0:
        value = buf[pos + 1]
        return b"%d" % (value - 256 if value > 127 else value), pos + 2
    if encoding == 1:
        end = pos + 3
    elif encoding == 2:
        end = pos + 5
    elif encoding == 3:
        start = pos
        clen, pos = read_length(buf, pos + 1)
        ulen, pos = read_length(buf, pos)
        end = pos + clen
        if end > len(buf):
            raise ShortInput
        try:
            return lzf.decompress(buf[pos:end], ulen), end
        except ValueError as exc:
            raise Corrupt(f"invalid LZF compressed string: {exc}", start) from None
    else:
        raise Corrupt(f"unknown string encoding {encoding}", pos)
    if end > len(buf):
        raise ShortInput
    return b"%d" % int.from_bytes(buf[pos + 1:end], "little", signed=True), end


def _read_double_text(buf: bytes, pos: int) -> tuple[float, int]:
    """rdbLoadDoubleValue (RDB_TYPE_ZSET): a length byte (253 nan, 254 inf, 255 -inf) + text."""
    n = buf[pos]
    if n == 255:
        return float("-inf"), pos + 1
    if n == 254:
        return float("inf"), pos + 1
    if n == 253:
        return float("nan"), pos + 1
    end = pos + 1 + n
    if end > len(buf):
        raise ShortInput
    try:
        return float(buf[pos + 1:end]), end
    except ValueError:
        raise Corrupt("bad double value", pos) from None


def _read_binary_double(buf: bytes, pos: int) -> tuple[float, int]:
    end = pos + 8
    if end > len(buf):
        raise ShortInput
    return _UNPACK_DOUBLE(buf, pos)[0], end


_UNPACK_DOUBLE = struct.Struct("<d").unpack_from


# -- blobs: listpack, ziplist, intset, zipmap ----------------------------------------------------

def decode_listpack(lp: bytes) -> list[bytes | int]:
    """The entries of a listpack: bytes for strings, int for integers (lpValidateIntegrity's
    checks: header size, entry bounds, back-lengths, count, end byte)."""
    n = len(lp)
    if n < 7:
        raise Corrupt("listpack shorter than its header", 0)
    if int.from_bytes(lp[:4], "little") != n:
        raise Corrupt("listpack size header does not match its length", 0)
    if lp[-1] != 0xFF:
        raise Corrupt("listpack does not end with its end byte", n - 1)
    out: list[bytes | int] = []
    append = out.append
    end = n - 1
    p = 6
    try:
        while p < end:
            b = lp[p]
            if b < 0x80:
                append(b)
                size = 1
            elif b < 0xC0:
                size = 1 + (b & 0x3F)
                append(lp[p + 1:p + size])
            elif b < 0xE0:
                u = ((b & 0x1F) << 8) | lp[p + 1]
                append(u - 8192 if u >= 4096 else u)
                size = 2
            elif b < 0xF0:
                size = 2 + (((b & 0x0F) << 8) | lp[p + 1])
                append(lp[p + 2:p + size])
            elif b == 0xF0:
                size = 5 + int.from_bytes(lp[p + 1:p + 5], "little")
                append(lp[p + 5:p + size])
            elif b == 0xF1:
                size = 3
                append(int.from_bytes(lp[p + 1:p + 3], "little", signed=True))
            elif b == 0xF2:
                size = 4
                append(int.from_bytes(lp[p + 1:p + 4], "little", signed=True))
            elif b == 0xF3:
                size = 5
                append(int.from_bytes(lp[p + 1:p + 5], "little", signed=True))
            elif b == 0xF4:
                size = 9
                append(int.from_bytes(lp[p + 1:p + 9], "little", signed=True))
            else:
                raise Corrupt(f"bad listpack entry encoding 0x{b:02x}", p)
            q = p + size
            if size < 128:
                if lp[q] != size:
                    raise Corrupt("listpack entry back-length mismatch", q)
                p = q + 1
            else:
                back = _backlen(size)
                if lp[q:q + len(back)] != back:
                    raise Corrupt("listpack entry back-length mismatch", q)
                p = q + len(back)
    except IndexError:
        raise Corrupt("listpack entry runs past its end", p) from None
    if p != end:
        raise Corrupt("listpack entry runs past its end", p)
    count = lp[4] | (lp[5] << 8)
    if count != 65535 and count != len(out):
        raise Corrupt("listpack element count does not match its header", 4)
    return out


def decode_ziplist(zl: bytes) -> list[bytes | int]:
    """The entries of a ziplist (Redis ≤ 6.2): bytes for strings, int for integers."""
    n = len(zl)
    if n < 11:
        raise Corrupt("ziplist shorter than its header", 0)
    if int.from_bytes(zl[:4], "little") != n:
        raise Corrupt("ziplist size header does not match its length", 0)
    if zl[-1] != 0xFF:
        raise Corrupt("ziplist does not end with its end byte", n - 1)
    out: list[bytes | int] = []
    append = out.append
    end = n - 1
    p = 10
    prev_size = 0
    try:
        while p < end:
            start = p
            prevlen = zl[p]
            if prevlen < 254:
                p += 1
            elif prevlen == 254:
                prevlen = int.from_bytes(zl[p + 1:p + 5], "little")
                p += 5
            else:
                raise Corrupt("ziplist entry has a bad previous-length byte", p)
            if prevlen != prev_size:
                raise Corrupt("ziplist previous-entry length mismatch", start)
            b = zl[p]
            kind = b >> 6
            if kind == 0:
                length = b & 0x3F
                append(zl[p + 1:p + 1 + length])
                p += 1 + length
            elif kind == 1:
                length = ((b & 0x3F) << 8) | zl[p + 1]
                append(zl[p + 2:p + 2 + length])
                p += 2 + length
            elif kind == 2:
                if b != 0x80:
                    raise Corrupt(f"bad ziplist string encoding 0x{b:02x}", p)
                length = int.from_bytes(zl[p + 1:p + 5], "big")
                append(zl[p + 5:p + 5 + length])
                p += 5 + length
            elif b == 0xC0:
                append(int.from_bytes(zl[p + 1:p + 3], "little", signed=True))
                p += 3
            elif b == 0xD0:
                append(int.from_bytes(zl[p + 1:p + 5], "little", signed=True))
                p += 5
            elif b == 0xE0:
                append(int.from_bytes(zl[p + 1:p + 9], "little", signed=True))
                p += 9
            elif b == 0xF0:
                append(int.from_bytes(zl[p + 1:p + 4], "little", signed=True))
                p += 4
            elif b == 0xFE:
                v = zl[p + 1]
                append(v - 256 if v > 127 else v)
                p += 2
            elif 0xF1 <= b <= 0xFD:
                append((b & 0x0F) - 1)
                p += 1
            else:
                raise Corrupt(f"bad ziplist entry encoding 0x{b:02x}", p)
            prev_size = p - start
    except IndexError:
        raise Corrupt("ziplist entry runs past its end", p) from None
    if p != end:
        raise Corrupt("ziplist entry runs past its end", p)
    count = zl[8] | (zl[9] << 8)
    if count != 65535 and count != len(out):
        raise Corrupt("ziplist element count does not match its header", 8)
    return out


def decode_intset(blob: bytes) -> list[int]:
    """The members of an intset, checked sorted and unique (intsetValidateIntegrity)."""
    if len(blob) < 8:
        raise Corrupt("intset shorter than its header", 0)
    width, count = struct.unpack_from("<II", blob)
    code = {2: "h", 4: "i", 8: "q"}.get(width)
    if code is None:
        raise Corrupt(f"bad intset encoding {width}", 0)
    if count == 0 or len(blob) != 8 + count * width:
        raise Corrupt("intset length does not match its header", 4)
    values = list(struct.unpack_from(f"<{count}{code}", blob, 8))
    for i in range(1, count):
        if values[i - 1] >= values[i]:
            raise Corrupt("intset members out of order or repeated", 8 + i * width)
    return values


def decode_zipmap(zm: bytes) -> list[tuple[bytes, bytes]]:
    """The field/value pairs of a zipmap (Redis ≤ 2.4 hashes)."""
    pairs = []
    p = 1
    try:
        while True:
            if zm[p] == 0xFF:
                p += 1
                break
            field_len, p = _zipmap_length(zm, p)
            field = zm[p:p + field_len]
            p += field_len
            value_len, p = _zipmap_length(zm, p)
            free = zm[p]
            value = zm[p + 1:p + 1 + value_len]
            p += 1 + value_len + free
            if p > len(zm):
                raise IndexError
            pairs.append((field, value))
    except IndexError:
        raise Corrupt("zipmap entry runs past its end", p) from None
    if p != len(zm):
        raise Corrupt("zipmap has bytes after its end", p)
    if zm[0] < 254 and zm[0] != len(pairs):
        raise Corrupt("zipmap element count does not match its header", 0)
    return pairs


def _zipmap_length(zm: bytes, p: int) -> tuple[int, int]:
    n = zm[p]
    if n < 254:
        return n, p + 1
    if n == 254:
        if p + 5 > len(zm):
            raise IndexError
        return int.from_bytes(zm[p + 1:p + 5], "little"), p + 5
    raise Corrupt("bad zipmap length", p)


def _decoded(blob: bytes, decode: Callable[[bytes], Any], what: str, blob_pos: int) -> Any:
    """decode(blob), a Corrupt inside it reported at the blob's position in the buffer."""
    try:
        return decode(blob)
    except Corrupt as exc:
        raise Corrupt(f"{what}: {exc.reason} (byte {exc.pos} of the blob)", blob_pos) from None


def _strings(items: list[bytes | int]) -> list[bytes]:
    """Listpack/ziplist entries as the strings they stand for."""
    return [x if type(x) is bytes else b"%d" % x for x in items]


# -- building shardd values with the encoding Valkey ends up with -------------------------------

def _hash_from_pairs(pairs: list[bytes], hashtable: bool, pos: int) -> Hash:
    it = iter(pairs)
    h = Hash(zip(map(shared_name, it), it), hashtable)
    if 2 * len(h) != len(pairs):
        raise Corrupt("hash with repeated fields", pos)
    return h


def _list_from_nodes(values: list[bytes], nodes: int, packed: bool, fill: int) -> List:
    """A list loaded as quicklist nodes, then converted to a listpack when it is one packed
    node within the limits (listTypeTryConversion with LIST_CONV_AUTO)."""
    lst = List(values, True)
    if nodes == 1 and packed:
        if fill < 0:
            fits = not exceeds_node_limit(fill, lst.lp_bytes, 1)
        else:
            fits = len(lst) <= (fill or 1)
        if fits:
            lst.quick = False
    return lst


def _zset(items: list[tuple[bytes, float]], skiplist: bool, pos: int) -> ZSet:
    if not skiplist:
        # a listpack keeps -0 as the integer 0 (zzlInsertAt via double2ll)
        items = [(m, 0.0) if s == 0 else (m, s) for m, s in items]
    zset = ZSet(skiplist)
    dict.update(zset, items)
    if len(zset) != len(items):
        raise Corrupt("sorted set with repeated members", pos)
    zset.order.update((s, m) for m, s in items)
    zset.fit_order()
    return zset


def _score(x: bytes | int, pos: int) -> float:
    if type(x) is int:
        return float(x)
    try:
        score = float(x)
    except ValueError:
        raise Corrupt("bad sorted set score", pos) from None
    if score != score:
        raise Corrupt("sorted set with a NaN score", pos)
    return score


def _read_set(buf: bytes, pos: int, limits: Limits) -> tuple[Set | None, int]:
    """RDB_TYPE_SET, with rdbLoadObject's intset → listpack → hashtable conversions."""
    start = pos
    n, pos = read_length(buf, pos)
    if n == 0:
        return None, pos
    encoding = HASHTABLE if n > limits.set_intset else INTSET
    set_entries, set_value = limits.set_entries, limits.set_value
    members: list[bytes] = []
    append = members.append
    longest = 0
    for i in range(n):
        member, pos = read_string(buf, pos)
        if encoding != HASHTABLE:
            size = len(member)
            if size > longest:
                longest = size
            if encoding == INTSET and string2ll(member) is None:
                encoding = LISTPACK if i < set_entries and longest <= set_value else HASHTABLE
            if encoding == LISTPACK and not (i < set_entries and size <= set_value):
                encoding = HASHTABLE
        append(member)
    s = Set(members, encoding)
    if len(s) != n:
        raise Corrupt("set with repeated members", start)
    return s, pos


def _read_zset(buf: bytes, pos: int, limits: Limits, binary: bool) -> tuple[ZSet | None, int]:
    start = pos
    n, pos = read_length(buf, pos)
    if n == 0:
        return None, pos
    read_score = _read_binary_double if binary else _read_double_text
    items = []
    longest = 0
    for _ in range(n):
        member, pos = read_string(buf, pos)
        score_pos = pos
        score, pos = read_score(buf, pos)
        if score != score:
            raise Corrupt("sorted set with a NaN score", score_pos)
        if len(member) > longest:
            longest = len(member)
        items.append((member, score))
    skiplist = not (n <= limits.zset_entries and longest <= limits.zset_value)
    return _zset(items, skiplist, start), pos


def _read_hash(buf: bytes, pos: int, limits: Limits) -> tuple[Hash | None, int]:
    start = pos
    n, pos = read_length(buf, pos)
    if n == 0:
        return None, pos
    hashtable = n > limits.hash_entries
    value_max = limits.hash_value
    flat: list[bytes] = []
    append = flat.append
    for _ in range(n):
        field, pos = read_string(buf, pos)
        value, pos = read_string(buf, pos)
        if not hashtable and (len(field) > value_max or len(value) > value_max):
            hashtable = True
        append(field)
        append(value)
    return _hash_from_pairs(flat, hashtable, start), pos


def _read_list(buf: bytes, pos: int, limits: Limits) -> tuple[List | None, int]:
    """RDB_TYPE_LIST (Redis < 3.2): pushed into a quicklist, then maybe converted."""
    n, pos = read_length(buf, pos)
    values = []
    for _ in range(n):
        value, pos = read_string(buf, pos)
        values.append(value)
    if not values:
        return None, pos
    return list_from_quicklist(values, limits.list_fill), pos


def _read_quicklist(buf: bytes, pos: int, limits: Limits, version: int) -> tuple[List | None, int]:
    """RDB_TYPE_LIST_QUICKLIST (ziplist nodes) and _2 (listpack or plain nodes)."""
    n, pos = read_length(buf, pos)
    values: list[bytes] = []
    nodes = 0
    packed = True
    for _ in range(n):
        container = QUICKLIST_PACKED
        if version == 2:
            container_pos = pos
            container, pos = read_length(buf, pos)
            if container not in (QUICKLIST_PACKED, QUICKLIST_PLAIN):
                raise Corrupt("bad quicklist node container", container_pos)
        blob_pos = pos
        blob, pos = read_string(buf, pos)
        if not blob:
            raise Corrupt("empty quicklist node", blob_pos)
        if container == QUICKLIST_PLAIN:
            values.append(blob)
            nodes += 1
            packed = False
            continue
        if version == 2:
            items = _decoded(blob, decode_listpack, "quicklist listpack node", blob_pos)
        else:
            items = _decoded(blob, decode_ziplist, "quicklist ziplist node", blob_pos)
        if items:                              # empty nodes are skipped, as Valkey does
            values += _strings(items)
            nodes += 1
    if not values:
        return None, pos
    return _list_from_nodes(values, nodes, packed, limits.list_fill), pos


def _read_blob_value(rdbtype: int, buf: bytes, pos: int, limits: Limits) -> tuple[Any, int]:
    """The types stored as one string holding a ziplist, listpack, intset or zipmap."""
    blob_pos = pos
    blob, pos = read_string(buf, pos)
    if rdbtype == TYPE_HASH_LISTPACK or rdbtype == TYPE_HASH_ZIPLIST:
        decode = decode_listpack if rdbtype == TYPE_HASH_LISTPACK else decode_ziplist
        items = _decoded(blob, decode, "hash", blob_pos)
        if len(items) & 1:
            raise Corrupt("hash with an odd number of entries", blob_pos)
        if not items:
            return None, pos
        return _hash_from_pairs(_strings(items), len(items) // 2 > limits.hash_entries, blob_pos), pos
    if rdbtype == TYPE_ZSET_LISTPACK or rdbtype == TYPE_ZSET_ZIPLIST:
        decode = decode_listpack if rdbtype == TYPE_ZSET_LISTPACK else decode_ziplist
        items = _decoded(blob, decode, "sorted set", blob_pos)
        if len(items) & 1:
            raise Corrupt("sorted set with an odd number of entries", blob_pos)
        if not items:
            return None, pos
        members = _strings(items[0::2])
        scores = [_score(x, blob_pos) for x in items[1::2]]
        pairs = list(zip(members, scores))
        return _zset(pairs, len(pairs) > limits.zset_entries, blob_pos), pos
    if rdbtype == TYPE_SET_INTSET:
        values = _decoded(blob, decode_intset, "intset", blob_pos)
        encoding = HASHTABLE if len(values) > limits.set_intset else INTSET
        return Set([b"%d" % v for v in values], encoding), pos
    if rdbtype == TYPE_SET_LISTPACK:
        members = _strings(_decoded(blob, decode_listpack, "set", blob_pos))
        if not members:
            return None, pos
        s = Set(members, HASHTABLE if len(members) > limits.set_entries else LISTPACK)
        if len(s) != len(members):
            raise Corrupt("set with repeated members", blob_pos)
        return s, pos
    if rdbtype == TYPE_LIST_ZIPLIST:
        values = _strings(_decoded(blob, decode_ziplist, "list", blob_pos))
        if not values:
            return None, pos
        return List(values, True), pos          # Valkey keeps these as quicklists
    if rdbtype == TYPE_HASH_ZIPMAP:
        pairs = _decoded(blob, decode_zipmap, "zipmap", blob_pos)
        if not pairs:
            return None, pos
        longest = max(max(len(f), len(v)) for f, v in pairs)
        hashtable = len(pairs) > limits.hash_entries or longest > limits.hash_value
        return _hash_from_pairs(list(chain.from_iterable(pairs)), hashtable, blob_pos), pos
    raise Corrupt(f"unknown RDB type {rdbtype}", blob_pos)


_BLOB_TYPES = frozenset((TYPE_HASH_ZIPMAP, TYPE_LIST_ZIPLIST, TYPE_SET_INTSET, TYPE_ZSET_ZIPLIST,
                         TYPE_HASH_ZIPLIST, TYPE_HASH_LISTPACK, TYPE_ZSET_LISTPACK,
                         TYPE_SET_LISTPACK))

_NATIVE_TYPES = _BLOB_TYPES | {TYPE_STRING, TYPE_LIST, TYPE_SET, TYPE_ZSET, TYPE_HASH, TYPE_ZSET_2,
                               TYPE_LIST_QUICKLIST, TYPE_LIST_QUICKLIST_2}

# Hook for value types added later (streams): RDB type → fn(buf, pos, limits) -> (value, pos),
# parsing with read_length/read_string and raising ShortInput (or IndexError) when the buffer
# ends early and Corrupt for bad data; a None value means an empty key (skipped).
EXTRA_READERS: dict[int, Callable[[bytes, int, Limits], tuple[Any, int]]] = {}


def module_type_name(module_id: int) -> str:
    """The 9-character module type name packed in a module id (moduleTypeNameByID)."""
    module_id >>= 10
    name = []
    for _ in range(9):
        name.append(_MODULE_NAME_CHARSET[module_id & 63])
        module_id >>= 6
    return "".join(reversed(name))


def read_value(rdbtype: int, buf: bytes, pos: int, limits: Limits) -> tuple[Any, int]:
    """rdbLoadObject: (value, next position); value None for an empty container (which
    Valkey skips with a notice)."""
    if rdbtype == TYPE_STRING:
        return read_string(buf, pos)
    if rdbtype in _BLOB_TYPES:
        return _read_blob_value(rdbtype, buf, pos, limits)
    if rdbtype == TYPE_HASH:
        return _read_hash(buf, pos, limits)
    if rdbtype == TYPE_LIST_QUICKLIST_2:
        return _read_quicklist(buf, pos, limits, 2)
    if rdbtype == TYPE_SET:
        return _read_set(buf, pos, limits)
    if rdbtype == TYPE_ZSET_2 or rdbtype == TYPE_ZSET:
        return _read_zset(buf, pos, limits, rdbtype == TYPE_ZSET_2)
    if rdbtype == TYPE_LIST_QUICKLIST:
        return _read_quicklist(buf, pos, limits, 1)
    if rdbtype == TYPE_LIST:
        return _read_list(buf, pos, limits)
    extra = EXTRA_READERS.get(rdbtype)
    if extra is not None:
        return extra(buf, pos, limits)
    raise Corrupt(_unsupported_type(rdbtype, buf, pos), pos - 1)


def _unsupported_type(rdbtype: int, buf: bytes, pos: int) -> str:
    """Why a value of rdbtype (its payload at buf[pos]) cannot be loaded."""
    if rdbtype in _STREAM_TYPES:
        return "stream values are not supported yet"
    if rdbtype == TYPE_MODULE_2:
        module_id, _ = read_length(buf, pos)
        return (f"module value of type '{module_type_name(module_id)}' cannot be loaded "
                "(shardd has no modules)")
    if rdbtype == TYPE_MODULE_PRE_GA:
        return "pre-release module format not supported"
    if 22 <= rdbtype <= 25:
        return (f"RDB type {rdbtype} (hash with field expiration, Redis 7.4+ / Valkey 9) "
                "is not supported")
    return f"unknown RDB type {rdbtype}"


def restore_value(payload: bytes, config: Mapping[str, Any] | Limits | None = None) -> Any:
    """The value of a DUMP payload (RESTORE): DumpPayloadError if its version is above 11 or
    its CRC64 is wrong, RdbError for anything else that does not decode to a non-empty value."""
    if len(payload) < 10:
        raise DumpPayloadError("DUMP payload shorter than its footer", 0)
    version = payload[-10] | (payload[-9] << 8)
    if version > MAX_VERSION:
        raise DumpPayloadError(f"DUMP payload of RDB version {version}", len(payload) - 10)
    if crc64(payload[:-8]) != int.from_bytes(payload[-8:], "little"):
        raise DumpPayloadError("DUMP payload checksum mismatch", len(payload) - 8)
    limits = config if isinstance(config, Limits) else Limits(config)
    rdbtype = payload[0]
    if not (rdbtype <= 7 or 9 <= rdbtype <= TYPE_STREAM_LISTPACKS_3):
        raise RdbError(f"not an RDB value type: {rdbtype}", 0)
    try:
        # Valkey reads the value from the whole payload, footer included, and does not
        # check where it ends: so do we, to accept and refuse the same payloads.
        value, _ = read_value(rdbtype, payload, 1, limits)
    except (ShortInput, IndexError):
        raise RdbError("DUMP payload ends inside its value", len(payload)) from None
    except Corrupt as exc:
        raise RdbError(exc.reason, exc.pos) from None
    if value is None:
        raise RdbError("DUMP payload holds an empty value", 0)
    return value


# -- files -------------------------------------------------------------------------------------

class RdbReader:
    """A streaming reader of an RDB file. Iterating yields (db, key, value, expire_ms or None)
    for each key; `aux` (AUX fields), `functions` (library codes), `resize_hints` fill in as
    the file is read. The checksum is verified after EOF: an error there (RdbError) comes
    after the last key was yielded, so a caller loading into a live keyspace should load
    into a scratch one and keep it only when the iteration ends cleanly.

    Keys whose expiry has passed are yielded too (the caller decides, as a primary drops
    them and a replica keeps them). Empty containers are skipped, as Valkey skips them."""

    def __init__(self, stream: BinaryIO, config: Mapping[str, Any] | Limits | None = None,
                 verify_checksum: bool = True) -> None:
        self.stream = stream
        self.limits = config if isinstance(config, Limits) else Limits(config)
        self.verify_checksum = verify_checksum
        self.aux: dict[bytes, bytes] = {}
        self.functions: list[bytes] = []
        self.resize_hints: dict[int, tuple[int, int]] = {}
        self.empty_keys_skipped = 0
        self.checksum: int | None = None         # as stored in the file (0: not computed)
        self.size = 0                            # bytes read, once iteration finished
        self._buf = b""
        self._pos = 0
        self._base = 0                           # file offset of _buf[0]
        self._crc = 0
        self._crc_done = False                   # the checksum covers bytes up to EOF only
        self._eof = False
        self.version = self._header()

    def __iter__(self) -> Iterator[tuple[int, bytes, Any, int | None]]:
        return self._records()

    # -- buffer ----------------------------------------------------------------------------
    def _more(self, keep_from: int) -> None:
        """Read more input, keeping _buf[keep_from:] (the record being parsed)."""
        buf = self._buf
        if self._eof:
            raise RdbError("unexpected end of file", self._base + len(buf))
        if keep_from:
            if self.verify_checksum and not self._crc_done:
                self._crc = crc64(buf[:keep_from], self._crc)
            self._base += keep_from
            buf = buf[keep_from:]
        data = self.stream.read(max(CHUNK, len(buf)))
        if not data:
            self._eof = True
            self._buf, self._pos = buf, 0
            raise RdbError("unexpected end of file", self._base + len(buf))
        self._buf = buf + data if buf else data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        """The next n bytes (reading as needed)."""
        while self._pos + n > len(self._buf):
            self._more(self._pos)
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def _header(self) -> int:
        try:
            magic = self._take(9)
        except RdbError:
            raise RdbError("not an RDB file (shorter than its signature)", 0) from None
        if magic[:5] == b"REDIS" and magic[5:].isdigit():
            version = int(magic[5:])
        elif magic[:6] == b"VALKEY" and magic[6:].isdigit():
            raise RdbError(f"RDB version {int(magic[6:])} (Valkey 9 format) is not supported", 6)
        else:
            raise RdbError("not an RDB file (wrong signature)", 0)
        if version < 1 or version > MAX_VERSION:
            extra = " (Redis 7.4+ format)" if 12 <= version <= 79 else ""
            raise RdbError(f"RDB version {version}{extra} is not supported", 5)
        return version

    def offset(self) -> int:
        """The file offset the reader is at."""
        return self._base + self._pos

    # -- records -----------------------------------------------------------------------------
    def _records(self) -> Iterator[tuple[int, bytes, Any, int | None]]:
        limits = self.limits
        db = 0
        expire: int | None = None
        while True:
            buf = self._buf
            start = pos = self._pos
            try:
                op = buf[pos]
                pos += 1
                if op == TYPE_STRING:
                    key, pos = read_string(buf, pos)
                    value, pos = read_string(buf, pos)
                elif op < OP_SLOT_INFO:
                    key, pos = read_string(buf, pos)
                    if op not in _NATIVE_TYPES and op not in EXTRA_READERS:
                        raise Corrupt(_unsupported_type(op, buf, pos), start)
                    value, pos = read_value(op, buf, pos, limits)
                else:
                    expire, db = self._opcode(op, buf, pos, expire, db)
                    if op == OP_EOF:
                        break
                    continue
            except (ShortInput, IndexError):
                self._more(start)
                continue
            except Corrupt as exc:
                raise RdbError(exc.reason, self._base + exc.pos) from None
            self._pos = pos
            if value is None:
                self.empty_keys_skipped += 1
            else:
                yield db, key, value, expire
            expire = None
        self._footer()

    def _opcode(self, op: int, buf: bytes, pos: int, expire: int | None,
                db: int) -> tuple[int | None, int]:
        """Parse the opcode record at buf[pos - 1]; returns (expire, db) for what follows.
        Raises ShortInput/IndexError without side effects when the record is incomplete."""
        start = pos - 1
        if op == OP_EXPIRETIME_MS:
            end = pos + 8
            if end > len(buf):
                raise ShortInput
            expire = int.from_bytes(buf[pos:end], "little", signed=True)
            pos = end
        elif op == OP_SELECTDB:
            db, pos = read_length(buf, pos)
            if db >= self.limits.databases:
                raise Corrupt(f"DB index {db} out of range (databases {self.limits.databases})",
                              start)
        elif op == OP_RESIZEDB:
            keys, pos = read_length(buf, pos)
            expires, pos = read_length(buf, pos)
            self.resize_hints[db] = (keys, expires)
        elif op == OP_AUX:
            name, pos = read_string(buf, pos)
            value, pos = read_string(buf, pos)
            self.aux[name] = value
        elif op == OP_EXPIRETIME:
            end = pos + 4
            if end > len(buf):
                raise ShortInput
            expire = int.from_bytes(buf[pos:end], "little", signed=True) * 1000
            pos = end
        elif op == OP_IDLE:                    # LRU idle seconds: shardd keeps no access times
            _, pos = read_length(buf, pos)
        elif op == OP_FREQ:                    # LFU counter: likewise
            buf[pos]
            pos += 1
        elif op == OP_FUNCTION2:
            code, pos = read_string(buf, pos)
            self.functions.append(code)
        elif op == OP_SLOT_INFO:               # Valkey 8 cluster slot sizes: a hint only
            _, pos = read_length(buf, pos)
            _, pos = read_length(buf, pos)
            _, pos = read_length(buf, pos)
        elif op == OP_EOF:
            pass
        elif op == OP_MODULE_AUX:
            module_id, pos = read_length(buf, pos)
            raise Corrupt(f"module auxiliary data of module '{module_type_name(module_id)}' "
                          "cannot be loaded (shardd has no modules)", start)
        elif op == OP_FUNCTION_PRE_GA:
            raise Corrupt("pre-release function format not supported", start)
        else:
            raise Corrupt(f"unknown RDB opcode {op}", start)
        self._pos = pos
        return expire, db

    def _footer(self) -> None:
        if self.verify_checksum:
            self._crc = crc64(self._buf[:self._pos], self._crc)
        self._crc_done = True
        if self.version < 5:
            self.size = self.offset()
            return
        checksum_at = self.offset()
        try:
            stored = int.from_bytes(self._take(8), "little")
        except RdbError:
            raise RdbError("unexpected end of file in the checksum", checksum_at) from None
        self.checksum = stored
        self.size = self.offset()
        if self.verify_checksum and stored and stored != self._crc:
            raise RdbError(f"RDB checksum mismatch: the file says {stored:016x}, "
                           f"its contents give {self._crc:016x}", checksum_at)


def load(stream: BinaryIO, config: Mapping[str, Any] | Limits | None = None,
         verify_checksum: bool = True) -> RdbReader:
    """An RdbReader over stream (the header is checked now; iterate it for the keys)."""
    return RdbReader(stream, config, verify_checksum)


# ===============================================================================================
# Streams: RDB_TYPE_STREAM_LISTPACKS (15, Redis 5-6.2), _2 (19, Redis 7.0, RDB 10) and _3
# (21, Redis 7.2 / Valkey, RDB 11: consumers' active time), as rdbSaveObject/rdbLoadObject.
# Each node is one listpack: a master entry (count, deleted, fields, 0) then entries of flags,
# ID deltas from the node's key, fields (unless the same as the master's), values and a count
# of their parts. We write only live entries (a node keeps its key even when none is left);
# we read tombstones as counts.
# ===============================================================================================

from ..worker.t_stream import (MAX_ID, UINT64_MAX, Consumer, Group, Nack, Node, Stream,  # noqa: E402
                               lp_int_size)

_STREAM_ID = struct.Struct(">QQ")
_FLAG_DELETED = 1
_FLAG_SAMEFIELDS = 2


def _int64(v: int) -> int:
    v &= UINT64_MAX
    return v - (1 << 64) if v >= 1 << 63 else v


def _stream_listpack(node: Node) -> bytes:
    """The listpack of a node's live entries, as streamAppendItem lays them out."""
    master_ms, master_seq = node.master
    fields = node.fields
    nfields = len(fields)
    entries = [_lp_int(len(node.ms)), _lp_int(0), _lp_int(nfields), *map(lp_entry, fields), _lp_int(0)]
    add = entries.append
    for (ms, seq), pairs in node.pairs():
        same = len(pairs) == 2 * nfields and tuple(pairs[0::2]) == fields
        add(_lp_int(_FLAG_SAMEFIELDS if same else 0))
        add(_lp_int(_int64(ms - master_ms)))
        add(_lp_int(_int64(seq - master_seq)))
        if same:
            entries.extend(map(lp_entry, pairs[1::2]))
            add(_lp_int(nfields + 3))
        else:
            n = len(pairs) // 2
            add(_lp_int(n))
            entries.extend(map(lp_entry, pairs))
            add(_lp_int(2 * n + 4))
    return listpack(entries, len(entries))


def _ms_time(t: int) -> bytes:
    """rdbSaveMillisecondTime: 8 bytes, little-endian, signed."""
    return t.to_bytes(8, "little", signed=True)


def write_stream(s: Stream, encoder: Encoder) -> int:
    """A stream's payload (RDB_TYPE_STREAM_LISTPACKS_2 below version 11, else _3)."""
    out, compress = encoder.out, encoder.compress
    v3 = encoder.version >= 11
    nodes = s.nodes        # with any emptied by a trim: Valkey keeps those until trimmed whole
    out += encode_length(len(nodes))
    for node in nodes:
        out += encode_string(_STREAM_ID.pack(*node.master), compress)
        out += encode_string(_stream_listpack(node), compress)
        encoder._maybe_flush()
    out += encode_length(s.length)
    for part in (*s.last_id, *s.first_id, *s.max_deleted):
        out += encode_length(part)
    out += encode_length(s.entries_added)
    groups = sorted(s.groups.items()) if s.groups else []
    out += encode_length(len(groups))
    for name, group in groups:
        out += encode_string(name, compress)
        out += encode_length(group.last_id[0])
        out += encode_length(group.last_id[1])
        out += encode_length(group.entries_read & UINT64_MAX)
        out += encode_length(len(group.pel))
        for i, (sid, nack) in enumerate(group.pel.items()):
            out += _STREAM_ID.pack(*sid)
            out += _ms_time(nack.time)
            out += encode_length(nack.count)
            if not i & 1023:
                encoder._maybe_flush()
        consumers = sorted(group.consumers.items())
        out += encode_length(len(consumers))
        for cname, consumer in consumers:
            out += encode_string(cname, compress)
            out += _ms_time(consumer.seen)
            if v3:
                out += _ms_time(consumer.active)
            out += encode_length(len(consumer.pel))
            for sid in consumer.pel:
                out += _STREAM_ID.pack(*sid)
            encoder._maybe_flush()
    return TYPE_STREAM_LISTPACKS_3 if v3 else TYPE_STREAM_LISTPACKS_2


def _stream_node(master: tuple[int, int], items: list, lp_size: int, pos: int) -> Node:
    """A node from its decoded listpack: live entries kept, tombstones counted."""
    try:
        count, deleted, nfields = items[0], items[1], items[2]
        fields = tuple(_strings(items[3:3 + nfields]))
        if len(fields) != nfields or items[3 + nfields] != 0:
            raise Corrupt("stream listpack with a bad master entry", pos)
        node = Node(master, fields, 0)
        master_ms, master_seq = master
        p = 4 + nfields
        last = master
        for _ in range(count + deleted):
            flags, ms_delta, seq_delta = items[p], items[p + 1], items[p + 2]
            p += 3
            if flags & _FLAG_SAMEFIELDS:
                values = _strings(items[p:p + nfields])
                p += nfields
                pairs = [x for pair in zip(fields, values) for x in pair]
                parts = nfields + 3
            else:
                n = items[p]
                pairs = _strings(items[p + 1:p + 1 + 2 * n])
                p += 1 + 2 * n
                parts = 2 * n + 4
            if p >= len(items) or items[p] != parts:
                raise Corrupt("stream listpack entry with a bad size", pos)
            p += 1
            last = ((master_ms + ms_delta) & UINT64_MAX, (master_seq + seq_delta) & UINT64_MAX)
            if flags & _FLAG_DELETED:
                node.deleted += 1
            else:
                node.load(last, pairs)
        if p != len(items) or len(node.ms) != count:
            raise Corrupt("stream listpack with bad counts", pos)
    except (IndexError, TypeError):
        raise Corrupt("malformed stream listpack", pos) from None
    node.last = last
    node.lp_body = lp_size - lp_int_size(count) - lp_int_size(deleted)
    return node


def _read_raw(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    end = pos + n
    if end > len(buf):
        raise ShortInput
    return buf[pos:end], end


def read_stream(buf: bytes, pos: int, limits: Limits, rdbtype: int) -> tuple[Stream, int]:
    s = Stream()
    n_nodes, pos = read_length(buf, pos)
    for _ in range(n_nodes):
        key_pos = pos
        key, pos = read_string(buf, pos)
        if len(key) != 16:
            raise Corrupt("stream node key is not the size of a stream ID", key_pos)
        lp_pos = pos
        lp, pos = read_string(buf, pos)
        items = _decoded(lp, decode_listpack, "stream listpack", lp_pos)
        if not items:
            raise Corrupt("empty listpack inside a stream", lp_pos)
        master = _STREAM_ID.unpack(key)
        if s.keys and master <= s.keys[-1]:
            raise Corrupt("stream nodes out of order", key_pos)
        s.nodes.append(_stream_node(master, items, len(lp), lp_pos))
        s.keys.append(master)
    length_pos = pos
    s.length, pos = read_length(buf, pos)
    if s.length != sum(len(node.ms) for node in s.nodes):
        raise Corrupt("stream length does not match its entries", length_pos)
    last_ms, pos = read_length(buf, pos)
    last_seq, pos = read_length(buf, pos)
    s.last_id = (last_ms, last_seq)
    if rdbtype >= TYPE_STREAM_LISTPACKS_2:
        ids = []
        for _ in range(5):
            n, pos = read_length(buf, pos)
            ids.append(n)
        s.first_id, s.max_deleted, s.entries_added = (ids[0], ids[1]), (ids[2], ids[3]), ids[4]
    else:
        s.entries_added = s.length
        s.first_id = s.first_live() or MAX_ID
    n_groups, pos = read_length(buf, pos)
    for _ in range(n_groups):
        name_pos = pos
        name, pos = read_string(buf, pos)
        last_ms, pos = read_length(buf, pos)
        last_seq, pos = read_length(buf, pos)
        last = (last_ms, last_seq)
        if rdbtype >= TYPE_STREAM_LISTPACKS_2:
            entries_read, pos = read_length(buf, pos)
            entries_read = _int64(entries_read)
        else:
            entries_read = s.distance(last)
        group = Group(last, entries_read)
        n_pel, pos = read_length(buf, pos)
        pending = []
        for _ in range(n_pel):
            raw, pos = _read_raw(buf, pos, 24)
            delivered, pos = read_length(buf, pos)
            pending.append((_STREAM_ID.unpack_from(raw), Nack(int.from_bytes(raw[16:], "little", signed=True),
                                                              delivered, None)))
        group.pel.update(pending)
        n_consumers, pos = read_length(buf, pos)
        for _ in range(n_consumers):
            cname, pos = read_string(buf, pos)
            raw, pos = _read_raw(buf, pos, 8)
            seen = int.from_bytes(raw, "little", signed=True)
            active = seen
            if rdbtype >= TYPE_STREAM_LISTPACKS_3:
                raw, pos = _read_raw(buf, pos, 8)
                active = int.from_bytes(raw, "little", signed=True)
            consumer = Consumer(cname, seen, active)
            n_owned, pos = read_length(buf, pos)
            owned = []
            for _ in range(n_owned):
                raw, pos = _read_raw(buf, pos, 16)
                sid = _STREAM_ID.unpack(raw)
                nack = group.pel.get(sid)
                if nack is None:
                    raise Corrupt("consumer PEL entry not in its group's PEL", pos - 16)
                nack.consumer = cname
                owned.append((sid, nack))
            consumer.pel.update(owned)
            group.consumers[cname] = consumer
        if any(nack.consumer is None for nack in group.pel.values()):
            raise Corrupt("stream group PEL entry without a consumer", name_pos)
        if s.groups is None:
            s.groups = {}
        if name in s.groups:
            raise Corrupt("duplicated consumer group name", name_pos)
        s.groups[name] = group
    return s, pos


EXTRA_WRITERS[Stream] = write_stream
for _type in _STREAM_TYPES:
    EXTRA_READERS[_type] = (lambda t: lambda buf, pos, limits: read_stream(buf, pos, limits, t))(_type)
