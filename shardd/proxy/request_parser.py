"""Strict incremental request parser with Valkey 8's exact request-parsing behaviour.

This is the slow path of the proxy: well-formed multibulk traffic goes through hiredis,
and a connection is switched here when it sends inline commands or anything unusual.
It mirrors ``processInputBuffer`` / ``processInlineBuffer`` / ``processMultibulkBuffer``
from Valkey's ``src/networking.c``, including their quirks:

* the request type is chosen by the first byte of each request: ``*`` is multibulk,
  anything else is an inline line;
* inline lines end at the first ``\\n`` (one ``\\r`` before it is stripped) and are split
  with ``sdssplitargs``; the search uses ``strchr``, so a NUL byte before the newline
  hides the newline and the line can only end in "too big inline request";
* multibulk count and bulk length lines end at the first ``\\r`` anywhere in the buffer
  (``memchr``) and the byte after it is skipped without being checked;
* a bulk payload is followed by two bytes that are skipped without being checked;
* numbers are parsed with ``string2ll`` (no ``+``, no spaces, no leading zeros, no
  ``-0``, 64-bit range);
* a request whose header line has no ``\\r`` (inline: no ``\\n``) is an error only once
  more than 64 KiB (``PROTO_INLINE_MAX_SIZE``) is waiting, exactly as in Valkey, where the
  check runs against whatever the socket reads have buffered so far.

Empty requests (blank inline lines, ``*0``, ``*-1``) are skipped. After a protocol error
nothing more is parsed: the server replies to the commands returned so far, then sends
the error and closes the connection.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from ..numbers import string2ll as _string2ll

__all__ = ["ProtocolError", "RequestParser", "PROTO_INLINE_MAX_SIZE", "PROTO_MBULK_BIG_ARG"]

SplitInline = Callable[[bytes], Optional[list[bytes]]]

PROTO_INLINE_MAX_SIZE = 64 * 1024          # server.h
PROTO_MBULK_BIG_ARG = 32 * 1024            # server.h: bulks this big are collected in chunks
DEFAULT_MAX_BULK_LEN = 512 * 1024 * 1024   # proto-max-bulk-len default
INT_MAX = 2**31 - 1
UNAUTH_MAX_MULTIBULK = 10                  # networking.c: "ll > 10 && auth_required"
UNAUTH_MAX_BULK = 16384                    # networking.c: "ll > 16384 && auth_required"

ERR_BIG_INLINE = "ERR Protocol error: too big inline request"
ERR_UNBALANCED = "ERR Protocol error: unbalanced quotes in request"
ERR_BIG_MBULK = "ERR Protocol error: too big mbulk count string"
ERR_INVALID_MBULK = "ERR Protocol error: invalid multibulk length"
ERR_UNAUTH_MBULK = "ERR Protocol error: unauthenticated multibulk length"
ERR_BIG_BULK_COUNT = "ERR Protocol error: too big bulk count string"
ERR_INVALID_BULK = "ERR Protocol error: invalid bulk length"
ERR_UNAUTH_BULK = "ERR Protocol error: unauthenticated bulk length"

_STAR = 0x2A
_DOLLAR = 0x24
_CR = 0x0D
_LF = 0x0A
_NUL = 0x00


class ProtocolError(Exception):
    """A request-protocol error; ``str(e)`` is the full reply text (without ``-`` and CRLF).

    ``RequestParser.parse`` never raises it (it returns the text instead); it is here for
    callers that prefer to turn that text into an exception.
    """


def expected_dollar_error(byte: int) -> str:
    """The "expected '$'" error for the offending byte.

    Valkey formats the byte with ``%c`` and ``addReplyErrorFormat`` then maps ``\\r`` and
    ``\\n`` to spaces. The byte is decoded as Latin-1, so encoding the text with Latin-1
    reproduces Valkey's reply bytes exactly (UTF-8 would turn bytes >= 0x80 into two).
    """
    ch = " " if byte in (_CR, _LF) else chr(byte)
    return f"ERR Protocol error: expected '$', got '{ch}'"


def string2ll(text: bytes | bytearray | memoryview) -> int | None:
    """Valkey's ``string2ll`` on a slice of the buffer."""
    return _string2ll(bytes(text))


# --- private fallback for sdssplitargs ------------------------------------------------

# C isspace() in the C locale; blanks between arguments are skipped with it.
_SPACE = b" \t\n\v\f\r"
# One argument: an unquoted run (ended by ' ', \t, \n, \r) and optionally a quoted part.
# Quoted parts are possessive so an escaped quote is never re-read as the closing one.
_ARG_RE = re.compile(
    rb"""([^ \t\n\r"']*)
         (?: "((?:\\x[0-9a-fA-F]{2}|\\.|[^"\\])*+)"
           | '((?:\\'|[^'])*+)' )?""",
    re.VERBOSE | re.DOTALL,
)
_DQ_ESCAPE_RE = re.compile(rb"\\x([0-9a-fA-F]{2})|\\(.)", re.DOTALL)
_DQ_SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}


def _dq_unescape(match: re.Match[bytes]) -> bytes:
    if match.group(1) is not None:
        return bytes((int(match.group(1), 16),))
    ch = match.group(2)
    return _DQ_SIMPLE.get(ch, ch)


def _split_args(line: bytes) -> list[bytes] | None:
    """Valkey's ``sdssplitargs``: the arguments, or None on unbalanced quotes.

    Used only when ``shardd.config.split_args_bytes`` is unavailable. The line is read as
    a C string (it ends at the first NUL), as sdssplitargs does.
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    args: list[bytes] = []
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in _SPACE:
            pos += 1
        if pos >= end:
            return args
        match = _ARG_RE.match(line, pos)
        assert match is not None  # the pattern can match the empty string
        arg = match.group(1)
        pos = match.end()
        if match.group(2) is not None:
            arg += _DQ_ESCAPE_RE.sub(_dq_unescape, match.group(2))
        elif match.group(3) is not None:
            arg += match.group(3).replace(b"\\'", b"'")
        elif pos < end and line[pos] in b"\"'":
            return None      # an opening quote that is never closed
        else:
            args.append(arg)
            pos += 1         # the terminator (or past the end)
            continue
        # A closing quote must be followed by a space or the end of the line.
        if pos < end and line[pos] not in _SPACE:
            return None
        args.append(arg)


_default_splitter: SplitInline | None = None


def _load_default_splitter() -> SplitInline:
    """``shardd.config.split_args_bytes`` when it can be imported, else the private fallback.

    Any exception from the import counts as "unavailable": a config module that fails
    to load must not take down every inline-speaking connection with it.
    """
    global _default_splitter
    if _default_splitter is None:
        try:
            from shardd.config import split_args_bytes as splitter  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - see docstring
            splitter = _split_args
        _default_splitter = splitter
    return _default_splitter


# --- the parser -----------------------------------------------------------------------

_NEED_MORE = None  # _step result: nothing more can be done with the bytes we have


class RequestParser:
    """Incremental parser for one client connection.

    ``feed`` bytes as they arrive and call ``parse`` to get the complete commands.
    ``unauthenticated`` and ``max_bulk_len`` may be changed at any time; they apply to
    the request headers parsed afterwards, as in Valkey, which re-reads them for every
    command. While ``unauthenticated`` is True, ``parse`` returns at most one command
    per call, because whether the next command is held to the unauthenticated limits
    depends on the outcome of this one (AUTH/HELLO): run it, update the flag, and call
    ``parse`` again until it returns no command.
    """

    def __init__(self, max_bulk_len: int = DEFAULT_MAX_BULK_LEN,
                 split_inline: SplitInline | None = None) -> None:
        self.max_bulk_len = max_bulk_len
        self.unauthenticated = False
        self._split = split_inline
        self._error: str | None = None
        self._reset_state()

    def reset(self, max_bulk_len: int) -> None:
        """Start over, as new (a parser kept for the connection's next inline read)."""
        self.max_bulk_len = max_bulk_len
        self._error = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._buf = bytearray()
        self._pos = 0               # start of the unparsed bytes in _buf
        self._mb_total = 0          # element count of the multibulk being parsed
        self._mb_left = 0           # elements still missing (0: at a request boundary)
        self._bulklen = -1          # declared length of the bulk being read, -1: none
        self._args: list[bytes] = []
        self._args_bytes = 0
        # A big bulk is collected as a list of chunks, so feeding a 64 MiB value in
        # 64 KiB pieces never re-copies what is already buffered.
        self._chunks: list[bytes] | None = None
        self._chunk_have = 0
        self._chunk_need = 0
        # Where a delimiter search at _scan_pos stopped without a hit (-1: blocked by a
        # NUL for good), so a line arriving byte by byte is not rescanned from its start.
        self._scan_pos = -1
        self._scan_end = 0

    # -- public API ---------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """The protocol error that stopped this parser, if any."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Bytes fed after a protocol error are dropped."""
        if self._error is not None or not data:
            return
        if self._chunks is not None:
            data = self._feed_chunks(data)
            if not data:
                return
        self._buf += data

    def parse(self, max_commands: int | None = None) -> tuple[list[list[bytes]], str | None]:
        """Parse what is buffered: ``(complete commands, error text or None)``.

        At most ``max_commands`` commands are returned (one while unauthenticated); the
        rest stay buffered for the next call. After an error, every call returns
        ``([], error)``.
        """
        commands: list[list[bytes]] = []
        if self._error is not None:
            return commands, self._error
        limit = max_commands
        if self.unauthenticated:
            limit = 1 if limit is None else min(limit, 1)
        while limit is None or len(commands) < limit:
            command = self._step()
            if command is _NEED_MORE:
                break
            if command:  # empty requests are skipped, as Valkey does
                commands.append(command)
        self._compact()
        return commands, self._error

    def buffered(self) -> int:
        """Bytes held waiting for more input (unparsed bytes and a partial command's args).

        Valkey closes a client whose query buffer exceeds client-query-buffer-limit;
        this is the number to compare with it.
        """
        return len(self._buf) - self._pos + self._args_bytes + self._chunk_have

    def at_boundary(self) -> bool:
        """Nothing buffered and no request part-way parsed."""
        return self._mb_left == 0 and self._bulklen < 0 and not self._args and self.buffered() == 0

    def take_remaining(self) -> bytes:
        """Hand back everything not yet returned as a command and reset to a boundary.

        The already-parsed part of a partial multibulk request is re-encoded in
        canonical RESP (its line endings and the two bytes after each complete payload
        become CRLF; Valkey never checks those bytes anyway), followed by the raw bytes
        not parsed yet. After an error this returns b"" and the parser stays stopped.
        """
        if self._error is not None:
            self._reset_state()
            return b""
        parts: list[bytes] = []
        if self._mb_left:
            parts.append(b"*%d\r\n" % self._mb_total)
            for arg in self._args:
                parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
            if self._bulklen >= 0:
                parts.append(b"$%d\r\n" % self._bulklen)
                parts.extend(self._chunks or ())
        parts.append(bytes(memoryview(self._buf)[self._pos:]))
        self._reset_state()
        return b"".join(parts)

    # -- parsing ------------------------------------------------------------------------

    def _step(self) -> list[bytes] | None:
        """Parse one request: its args ([] for an empty one), or None (more input/error)."""
        if self._mb_left:
            return self._parse_elements()
        if self._pos >= len(self._buf):
            return _NEED_MORE
        if self._buf[self._pos] == _STAR:
            return self._parse_multibulk_header()
        return self._parse_inline()

    def _fail(self, message: str) -> None:
        """Stop for good with ``message``; the caller then reports "need more" (None)."""
        self._error = message
        self._reset_state()  # drop everything: nothing after an error is ever parsed

    def _find(self, delim: int, stop_at_nul: bool) -> int:
        """Index of the first ``delim`` after _pos (strchr-like when ``stop_at_nul``)."""
        buf, pos = self._buf, self._pos
        start = self._scan_end if self._scan_pos == pos else pos
        if start < 0:
            return -1
        idx = buf.find(delim, start)
        if stop_at_nul and buf.find(_NUL, start, idx if idx >= 0 else len(buf)) >= 0:
            self._scan_pos, self._scan_end = pos, -1
            return -1
        if idx < 0:
            self._scan_pos, self._scan_end = pos, len(buf)
        return idx

    def _too_big(self) -> bool:
        return len(self._buf) - self._pos > PROTO_INLINE_MAX_SIZE

    def _parse_inline(self) -> list[bytes] | None:
        newline = self._find(_LF, stop_at_nul=True)
        if newline < 0:
            return self._fail(ERR_BIG_INLINE) if self._too_big() else _NEED_MORE
        end = newline
        if end > self._pos and self._buf[end - 1] == _CR:
            end -= 1
        line = bytes(memoryview(self._buf)[self._pos:end])
        if self._split is None:
            self._split = _load_default_splitter()
        args = self._split(line)
        if args is None:
            return self._fail(ERR_UNBALANCED)
        self._pos = newline + 1
        return args

    def _read_line(self, too_big_error: str) -> tuple[int, int] | None:
        """Find a header line: (end of its number, start of the next item), or None."""
        # Valkey 8 searches with memchr here (strchr in older versions, which stops at a
        # NUL), so a NUL in a header line makes its number invalid rather than unfound.
        cr = self._find(_CR, stop_at_nul=False)
        if cr < 0:
            if self._too_big():
                self._fail(too_big_error)
            return None
        if cr + 2 > len(self._buf):  # Valkey wants one more byte, which it never checks
            return None
        return cr, cr + 2

    def _parse_multibulk_header(self) -> list[bytes] | None:
        line = self._read_line(ERR_BIG_MBULK)
        if line is None:
            return _NEED_MORE
        cr, after = line
        count = string2ll(memoryview(self._buf)[self._pos + 1:cr])
        if count is None or count > INT_MAX:
            return self._fail(ERR_INVALID_MBULK)
        if count > UNAUTH_MAX_MULTIBULK and self.unauthenticated:
            return self._fail(ERR_UNAUTH_MBULK)
        self._pos = after
        if count <= 0:
            return []
        self._mb_total = self._mb_left = count
        return self._parse_elements()

    def _parse_bulk_header(self) -> bool:
        """Read a ``$<len>`` line into _bulklen; False when more input is needed or on error."""
        line = self._read_line(ERR_BIG_BULK_COUNT)
        if line is None:
            return False
        cr, after = line
        first = self._buf[self._pos]
        if first != _DOLLAR:
            self._fail(expected_dollar_error(first))
            return False
        length = string2ll(memoryview(self._buf)[self._pos + 1:cr])
        if length is None or length < 0 or length > self.max_bulk_len:
            self._fail(ERR_INVALID_BULK)
            return False
        if length > UNAUTH_MAX_BULK and self.unauthenticated:
            self._fail(ERR_UNAUTH_BULK)
            return False
        self._pos = after
        self._bulklen = length
        return True

    def _parse_elements(self) -> list[bytes] | None:
        """Read bulks until the multibulk request is complete."""
        while self._mb_left:
            if self._chunks is not None:
                if self._chunk_have < self._chunk_need:
                    return _NEED_MORE
                self._add_arg(self._join_chunks())
                continue
            if self._bulklen < 0 and not self._parse_bulk_header():
                return _NEED_MORE
            need = self._bulklen + 2  # the payload and two bytes Valkey skips unchecked
            available = len(self._buf) - self._pos
            if available >= need:
                start = self._pos
                self._pos += need
                self._add_arg(bytes(memoryview(self._buf)[start:start + self._bulklen]))
            elif self._bulklen >= PROTO_MBULK_BIG_ARG:
                self._start_chunks(need)
                return _NEED_MORE
            else:
                return _NEED_MORE
        args, self._args, self._args_bytes = self._args, [], 0
        return args

    def _add_arg(self, arg: bytes) -> None:
        self._args.append(arg)
        self._args_bytes += len(arg)
        self._bulklen = -1
        self._mb_left -= 1

    # -- big bulks ----------------------------------------------------------------------

    def _start_chunks(self, need: int) -> None:
        """Move the partial payload out of the buffer; later feeds go straight to chunks."""
        rest = bytes(memoryview(self._buf)[self._pos:])
        self._chunks = [rest] if rest else []
        self._chunk_have = len(rest)
        self._chunk_need = need
        del self._buf[:]
        self._pos = 0
        self._scan_pos = -1

    def _feed_chunks(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """Take what the pending big bulk still needs from ``data``; return the rest."""
        assert self._chunks is not None
        missing = self._chunk_need - self._chunk_have
        if missing <= 0:
            return data
        if len(data) <= missing:
            self._chunks.append(bytes(data))
            self._chunk_have += len(data)
            return b""
        self._chunks.append(bytes(data[:missing]))
        self._chunk_have += missing
        return data[missing:]

    def _join_chunks(self) -> bytes:
        """The completed big bulk's payload, without the two trailing bytes."""
        chunks = self._chunks
        assert chunks is not None
        drop = 2
        while drop:
            last = chunks.pop()
            if len(last) > drop:
                chunks.append(last[:-drop])
                drop = 0
            else:
                drop -= len(last)
        payload = b"".join(chunks)
        self._chunks = None
        self._chunk_have = self._chunk_need = 0
        return payload

    def _compact(self) -> None:
        """Drop parsed bytes from the front of the buffer, keeping the scan cache valid."""
        pos = self._pos
        if not pos:
            return
        del self._buf[:pos]
        self._pos = 0
        if self._scan_pos == pos:
            self._scan_pos = 0
            if self._scan_end >= 0:
                self._scan_end -= pos
        else:
            self._scan_pos = -1
