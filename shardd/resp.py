"""The one RESP2/RESP3 encoder used by every process.

Hot commands build their replies from the precomputed constants and the small functions
here; slow paths (INFO, CONFIG, COMMAND) hand Python values to `encode`.
"""
from __future__ import annotations

from typing import Any, Iterable

from .dtoa import d2string

CRLF = b"\r\n"
OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
NULL2 = b"$-1\r\n"
NULL_ARRAY2 = b"*-1\r\n"
NULL3 = b"_\r\n"
EMPTY_ARRAY = b"*0\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"

_BULK_HEADERS = [b"$%d\r\n" % n for n in range(4096)]
_INTS = [b":%d\r\n" % n for n in range(-1, 1024)]
_ARRAY_HEADERS = [b"*%d\r\n" % n for n in range(1024)]


class Verbatim(str):
    """Text sent as a RESP3 verbatim string (a bulk string in RESP2)."""


class Status(str):
    """Text sent as a simple string (`+OK`)."""


class ErrorReply(str):
    """Text sent as an error reply; the text starts with its code (`ERR …`)."""


def bulk(value: bytes) -> bytes:
    n = len(value)
    if n < 4096:
        return _BULK_HEADERS[n] + value + CRLF
    return b"$%d\r\n%b\r\n" % (n, value)


def command_into(out: list[bytes], argv: list[bytes]) -> None:
    """Append the chunks of a request, an array of bulk strings (what a client sends, what the
    AOF records), to out."""
    n = len(argv)
    out.append(_ARRAY_HEADERS[n] if n < 1024 else b"*%d\r\n" % n)
    for arg in argv:
        size = len(arg)
        out += (_BULK_HEADERS[size] if size < 4096 else b"$%d\r\n" % size, arg, CRLF)


def command(argv: list[bytes]) -> bytes:
    """A request, encoded: an array of bulk strings."""
    out: list[bytes] = []
    command_into(out, argv)
    return b"".join(out)


def integer(n: int) -> bytes:
    if -1 <= n < 1023:
        return _INTS[n + 1]
    return b":%d\r\n" % n


def error(message: str) -> bytes:
    """`message` starts with the error code, e.g. 'ERR syntax error'."""
    return b"-" + message.encode("utf-8", "replace").replace(b"\r", b" ").replace(b"\n", b" ") + CRLF


def status(text: bytes | str) -> bytes:
    if isinstance(text, str):
        text = text.encode()
    return b"+" + text + CRLF


def null(proto: int) -> bytes:
    return NULL3 if proto == 3 else NULL2


def null_array(proto: int) -> bytes:
    return NULL3 if proto == 3 else NULL_ARRAY2


def array_header(n: int) -> bytes:
    return _ARRAY_HEADERS[n] if n < 1024 else b"*%d\r\n" % n


def array(items: Iterable[bytes], n: int | None = None) -> bytes:
    """An array of already-encoded elements."""
    items = list(items) if n is None else items
    return array_header(len(items) if n is None else n) + b"".join(items)


def bulks(values: Iterable[bytes]) -> bytes:
    """Bulk strings, concatenated: the body of an aggregate of them."""
    values = values if values.__class__ is list else list(values)
    if len(values) < 3:
        return b"".join(map(bulk, values))
    try:
        headers = [_BULK_HEADERS[len(v)] for v in values]
    except IndexError:                    # a value of 4 KB or more
        return b"".join(map(bulk, values))
    # header, value, CRLF of each value interleaved by slice assignment: one join, and no
    # Python step per value but its header's lookup
    parts = [CRLF] * (3 * len(values))
    parts[0::3] = headers
    parts[1::3] = values
    return b"".join(parts)


def bulk_array(values: Iterable[bytes | None], proto: int) -> bytes:
    """An array of bulk strings, None as a null."""
    values = values if values.__class__ is list else list(values)
    try:
        body = bulks(values)
    except TypeError:                     # a None among them
        nil = null(proto)
        body = b"".join([bulk(v) if v is not None else nil for v in values])
    return array_header(len(values)) + body


def map_header(n: int, proto: int) -> bytes:
    return b"%%%d\r\n" % n if proto == 3 else array_header(2 * n)


def set_header(n: int, proto: int) -> bytes:
    return b"~%d\r\n" % n if proto == 3 else array_header(n)


def push_header(n: int, proto: int) -> bytes:
    return b">%d\r\n" % n if proto == 3 else array_header(n)


format_double = d2string      # Valkey 8's d2string (shardd/dtoa.py)


def double(value: float, proto: int) -> bytes:
    """addReplyDouble: a bulk string in RESP2, a double in RESP3."""
    if proto == 3:
        return b"," + d2string(value) + CRLF
    return bulk(d2string(value))


def boolean(value: bool, proto: int) -> bytes:
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return ONE if value else ZERO


def verbatim(text: bytes, proto: int) -> bytes:
    if proto == 3:
        return b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
    return bulk(text)


def encode(value: Any, proto: int = 2) -> bytes:
    """Encode a Python value: bytes→bulk, str→bulk, int→integer, float→double,
    None→null, list/tuple→array, dict→map, set/frozenset→set, bool→boolean."""
    if isinstance(value, bytes):
        return bulk(value)
    if isinstance(value, ErrorReply):
        return error(value)
    if isinstance(value, Status):
        return status(value)
    if isinstance(value, Verbatim):
        return verbatim(value.encode(), proto)
    if isinstance(value, str):
        return bulk(value.encode())
    if isinstance(value, bool):
        return boolean(value, proto)
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return double(value, proto)
    if value is None:
        return null(proto)
    if isinstance(value, dict):
        out = [map_header(len(value), proto)]
        for k, v in value.items():
            out.append(encode(k, proto))
            out.append(encode(v, proto))
        return b"".join(out)
    if isinstance(value, (set, frozenset)):
        return set_header(len(value), proto) + b"".join(encode(v, proto) for v in value)
    if isinstance(value, (list, tuple)):
        return array_header(len(value)) + b"".join(encode(v, proto) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")
