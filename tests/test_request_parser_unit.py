"""Unit tests for shardd.proxy.request_parser (pure in-process)."""
from __future__ import annotations

import random
import time

import pytest

from helpers import encode
from shardd.proxy import request_parser as rp
from shardd.proxy.request_parser import ProtocolError, RequestParser

Result = tuple[list[list[bytes]], "str | None"]

# The parser tests pin the private sdssplitargs fallback so they test this module alone;
# the default (shardd.config.split_args_bytes) is checked separately below.
SPLIT = rp._split_args


def make_parser(**kwargs) -> RequestParser:
    kwargs.setdefault("split_inline", SPLIT)
    return RequestParser(**kwargs)


# --- helpers --------------------------------------------------------------------------

def drain(parser: RequestParser) -> Result:
    """Call parse() until it makes no more progress (it may return one command at a time)."""
    commands: list[list[bytes]] = []
    while True:
        got, err = parser.parse()
        commands += got
        if err is not None or not got:
            return commands, err


def parse_all(data: bytes, **kwargs) -> Result:
    parser = make_parser(**kwargs)
    parser.feed(data)
    return drain(parser)


def parse_split(data: bytes, sizes: list[int] | None = None, **kwargs) -> Result:
    """Feed ``data`` in pieces (byte by byte by default), parsing after every feed."""
    parser = make_parser(**kwargs)
    commands: list[list[bytes]] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else 1
        parser.feed(data[pos:pos + size])
        pos += size
        i += 1
        got, err = drain(parser)
        commands += got
        if err is not None:
            return commands, err
    return commands, None


# --- reference model: a line-by-line transliteration of networking.c ------------------

def c_split_args(line: bytes) -> list[bytes] | None:
    """sdssplitargs, byte by byte as in sds.c (the line is a C string)."""
    s = line.split(b"\0", 1)[0] + b"\0"
    hexd = b"0123456789abcdefABCDEF"
    p, argv = 0, []
    while True:
        while s[p] and s[p] in b" \t\n\v\f\r":
            p += 1
        if not s[p]:
            return argv
        inq = insq = done = False
        cur = bytearray()
        while not done:
            c = s[p]
            if inq:
                if c == 0x5C and s[p + 1] == ord("x") and s[p + 2] and s[p + 2] in hexd \
                        and s[p + 3] and s[p + 3] in hexd:
                    cur.append(int(s[p + 2:p + 4], 16))
                    p += 3
                elif c == 0x5C and s[p + 1]:
                    p += 1
                    cur += {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t",
                            ord("b"): b"\b", ord("a"): b"\a"}.get(s[p], bytes((s[p],)))
                elif c == ord('"'):
                    if s[p + 1] and s[p + 1] not in b" \t\n\v\f\r":
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and s[p + 1] == ord("'"):
                    p += 1
                    cur += b"'"
                elif c == ord("'"):
                    if s[p + 1] and s[p + 1] not in b" \t\n\v\f\r":
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif c in b" \n\r\t\0":
                done = True
            elif c == ord('"'):
                inq = True
            elif c == ord("'"):
                insq = True
            else:
                cur.append(c)
            if s[p]:
                p += 1
        argv.append(bytes(cur))


def c_string2ll(s: bytes) -> int | None:
    if not s:
        return None
    if s == b"0":
        return 0
    neg, i = s[0:1] == b"-", 0
    if neg:
        i = 1
        if i == len(s):
            return None
    if not 0x31 <= s[i] <= 0x39:
        return None
    v = s[i] - 0x30
    i += 1
    while i < len(s) and 0x30 <= s[i] <= 0x39:
        v = v * 10 + s[i] - 0x30
        if v >= 2**64:
            return None
        i += 1
    if i < len(s):
        return None
    if neg:
        return -v if v <= 2**63 else None
    return v if v < 2**63 else None


class CModel:
    """processInputBuffer run after every read, on one growing query buffer."""

    def __init__(self, unauth: bool = False, max_bulk: int = 512 * 1024 * 1024) -> None:
        self.qb, self.pos = b"", 0
        self.reqtype = 0
        self.mbl, self.bulklen, self.argv = 0, -1, []
        self.unauth, self.max_bulk = unauth, max_bulk
        self.commands: list[list[bytes]] = []
        self.error: str | None = None

    def read(self, data: bytes) -> None:
        if self.error:
            return
        self.qb += data
        while self.pos < len(self.qb) and not self.error:
            if not self.reqtype:
                self.reqtype = 2 if self.qb[self.pos] == 0x2A else 1
            done = self.inline() if self.reqtype == 1 else self.multibulk()
            if not done:
                break
            if self.argv:
                self.commands.append(self.argv)
            self.reqtype, self.mbl, self.bulklen, self.argv = 0, 0, -1, []

    def inline(self) -> bool:
        rest = self.qb[self.pos:]
        nl = rest.split(b"\0", 1)[0].find(b"\n")          # strchr
        if nl < 0:
            if len(rest) > 65536:
                self.error = "ERR Protocol error: too big inline request"
            return False
        end = nl - 1 if nl > 0 and rest[nl - 1] == 0x0D else nl
        argv = c_split_args(rest[:end])
        if argv is None:
            self.error = "ERR Protocol error: unbalanced quotes in request"
            return False
        self.pos += nl + 1
        self.argv = argv
        return True

    def multibulk(self) -> bool:
        qb = self.qb
        if self.mbl == 0:
            nl = qb.find(b"\r", self.pos)                     # memchr
            if nl < 0:
                if len(qb) - self.pos > 65536:
                    self.error = "ERR Protocol error: too big mbulk count string"
                return False
            if nl - self.pos > len(qb) - self.pos - 2:
                return False
            ll = c_string2ll(qb[self.pos + 1:nl])
            if ll is None or ll > 2**31 - 1:
                self.error = "ERR Protocol error: invalid multibulk length"
                return False
            if ll > 10 and self.unauth:
                self.error = "ERR Protocol error: unauthenticated multibulk length"
                return False
            self.pos = nl + 2
            if ll <= 0:
                return True
            self.mbl = ll
        while self.mbl:
            if self.bulklen == -1:
                nl = qb.find(b"\r", self.pos)
                if nl < 0:
                    if len(qb) - self.pos > 65536:
                        self.error = "ERR Protocol error: too big bulk count string"
                    return False
                if nl - self.pos > len(qb) - self.pos - 2:
                    return False
                if qb[self.pos] != 0x24:
                    ch = qb[self.pos]
                    self.error = "ERR Protocol error: expected '$', got '%s'" % (
                        " " if ch in (10, 13) else chr(ch))
                    return False
                ll = c_string2ll(qb[self.pos + 1:nl])
                if ll is None or ll < 0 or ll > self.max_bulk:
                    self.error = "ERR Protocol error: invalid bulk length"
                    return False
                if ll > 16384 and self.unauth:
                    self.error = "ERR Protocol error: unauthenticated bulk length"
                    return False
                self.pos = nl + 2
                self.bulklen = ll
            if len(qb) - self.pos < self.bulklen + 2:
                return False
            self.argv.append(qb[self.pos:self.pos + self.bulklen])
            self.pos += self.bulklen + 2
            self.bulklen = -1
            self.mbl -= 1
        return True


def model_split(data: bytes, sizes: list[int], **kwargs) -> Result:
    model = CModel(**kwargs)
    pos, i = 0, 0
    while pos < len(data) and model.error is None:
        size = sizes[i % len(sizes)]
        model.read(data[pos:pos + size])
        pos, i = pos + size, i + 1
    return model.commands, model.error


# --- inline ---------------------------------------------------------------------------

def test_inline_simple_and_line_endings() -> None:
    assert parse_all(b"PING\r\nECHO hi\nSET a b\r\n") == (
        [[b"PING"], [b"ECHO", b"hi"], [b"SET", b"a", b"b"]], None)


def test_inline_waits_for_newline() -> None:
    parser = make_parser()
    parser.feed(b"SET a")
    assert parser.parse() == ([], None)
    assert parser.buffered() == 5
    parser.feed(b" b\r")
    assert parser.parse() == ([], None)
    parser.feed(b"\n")
    assert parser.parse() == ([[b"SET", b"a", b"b"]], None)
    assert parser.buffered() == 0


def test_inline_quotes_and_escapes() -> None:
    data = (b'SET "a b" \'c d\'\r\n'
            b'SET k "\\x41\\x7a\\n\\r\\t\\b\\a\\"\\\\q"\r\n'
            b"SET k 'it\\'s \\n'\r\n"
            b'SET k ""\r\n'
            b'SET k"x" y\r\n'
            b'ECHO "\\x4g" "\\xZZ"\r\n')
    assert parse_all(data) == ([
        [b"SET", b"a b", b"c d"],
        [b"SET", b"k", b"Az\n\r\t\b\a\"\\q"],
        [b"SET", b"k", b"it's \\n"],
        [b"SET", b"k", b""],
        [b"SET", b"kx", b"y"],
        [b"ECHO", b"x4g", b"xZZ"],
    ], None)


def test_inline_whitespace_rules() -> None:
    # Arguments split on space/tab/\r; \v and \f are blanks only between arguments.
    assert parse_all(b"  a\tb\r c\x0bd \x0be  \n") == ([[b"a", b"b", b"c\x0bd", b"e"]], None)
    # Only one \r before the \n is stripped; a second one is just a separator.
    assert parse_all(b"PING\r\r\n") == ([[b"PING"]], None)
    # High bytes are ordinary argument bytes.
    assert parse_all(b"ECHO \xff\xfe\n") == ([[b"ECHO", b"\xff\xfe"]], None)


def test_inline_blank_lines_skipped() -> None:
    assert parse_all(b"\r\n\n   \r\n\t\nPING\r\n") == ([[b"PING"]], None)


@pytest.mark.parametrize("line", [
    b'SET "a', b"SET 'a", b'SET "a"b', b"SET 'a'b", b'SET "a\\"', b"SET 'a\\'",
    b'"a""b"', b'SET "\\',
])
def test_inline_unbalanced_quotes(line: bytes) -> None:
    assert parse_all(b"PING\r\n" + line + b"\r\nPING\r\n") == (
        [[b"PING"]], "ERR Protocol error: unbalanced quotes in request")


def test_inline_too_big() -> None:
    parser = make_parser()
    parser.feed(b"PING\r\n" + b"a" * 65536)
    assert parser.parse() == ([[b"PING"]], None)   # exactly 64 KiB waiting: still fine
    parser.feed(b"a")
    assert parser.parse() == ([], "ERR Protocol error: too big inline request")


def test_inline_long_line_accepted_when_newline_present() -> None:
    # Valkey only complains when no newline is in the buffer: one big read is accepted.
    assert parse_all(b"ECHO " + b"x" * 100000 + b"\n") == ([[b"ECHO", b"x" * 100000]], None)


def test_inline_nul_hides_newline_like_strchr() -> None:
    parser = make_parser()
    parser.feed(b"PING\r\nEC\0HO\r\nPING\r\n")
    assert parser.parse() == ([[b"PING"]], None)
    parser.feed(b"x" * 70000)
    assert parser.parse() == ([], "ERR Protocol error: too big inline request")


def test_custom_split_inline_is_used() -> None:
    seen: list[bytes] = []

    def splitter(line: bytes) -> list[bytes] | None:
        seen.append(line)
        return None if line == b"bad" else line.split(b",")

    parser = RequestParser(split_inline=splitter)
    parser.feed(b"a,b\r\nbad\r\n")
    assert parser.parse() == ([[b"a", b"b"]], "ERR Protocol error: unbalanced quotes in request")
    assert seen == [b"a,b", b"bad"]


def test_default_splitter_resolves() -> None:
    splitter = rp._load_default_splitter()
    assert splitter(b'a "b c"') == [b"a", b"b c"]
    assert splitter(b'"a') is None


# --- the private sdssplitargs fallback ----------------------------------------------------

def test_fallback_split_matches_c_model_on_random_lines() -> None:
    rng = random.Random(1234)
    alphabet = b" \t\r\n\x0b\x0c\"'\\xXaf09zZ\x00\xff"
    for _ in range(5000):
        line = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert rp._split_args(line) == c_split_args(line), line


def test_config_split_args_matches_c_model_if_present() -> None:
    try:
        from shardd.config import split_args_bytes as split
    except Exception as exc:  # noqa: BLE001 - another module, possibly mid-development
        pytest.skip(f"shardd.config.split_args_bytes unavailable: {exc!r}")
    rng = random.Random(99)
    alphabet = b" \t\r\n\x0b\x0c\"'\\xXaf09zZ\x00\xff"
    for _ in range(3000):
        line = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert split(line) == c_split_args(line), line


# --- multibulk ------------------------------------------------------------------------

def test_multibulk_basic_and_binary() -> None:
    data = encode(b"SET", b"k\r\n\0", b"") + encode(b"GET", b"k")
    assert parse_all(data) == ([[b"SET", b"k\r\n\0", b""], [b"GET", b"k"]], None)


def test_multibulk_empty_requests_skipped() -> None:
    assert parse_all(b"*0\r\n*-1\r\n*-9223372036854775808\r\n" + encode(b"PING")) == (
        [[b"PING"]], None)


def test_pipelined_mixture_of_inline_and_multibulk() -> None:
    data = (b"PING\r\n" + encode(b"SET", b"a", b"1") + b'ECHO "x y"\n' + b"\r\n"
            + encode(b"GET", b"a") + b"*0\r\n" + b"QUIT\r\n")
    expected = [[b"PING"], [b"SET", b"a", b"1"], [b"ECHO", b"x y"], [b"GET", b"a"], [b"QUIT"]]
    assert parse_all(data) == (expected, None)
    assert parse_split(data) == (expected, None)


def test_multibulk_count_limits() -> None:
    parser = make_parser()
    parser.feed(b"*2147483647\r\n$4\r\nPING\r\n")
    assert parser.parse() == ([], None)            # INT_MAX is allowed, just incomplete
    assert parser.buffered() == 4


def test_payload_trailer_is_skipped_unchecked() -> None:
    data = b"*1\r\n$3\r\nfooXY" + b"*2\r\n$1\r\na\r\n$1\r\nb??" + encode(b"PING")
    assert parse_all(data) == ([[b"foo"], [b"a", b"b"], [b"PING"]], None)


def test_header_cr_followed_by_any_byte() -> None:
    assert parse_all(b"*1\rX$4\r?PING\r\n") == ([[b"PING"]], None)


def test_header_waits_for_byte_after_cr() -> None:
    parser = make_parser()
    parser.feed(b"*1\r")
    assert parser.parse() == ([], None)
    parser.feed(b"\n$4\r")
    assert parser.parse() == ([], None)
    parser.feed(b"\nPING\r")
    assert parser.parse() == ([], None)
    parser.feed(b"\n")
    assert parser.parse() == ([[b"PING"]], None)


# --- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"*\r\n", b"*abc\r\n", b"*01\r\n", b"*+1\r\n", b"* 1\r\n", b"*1 \r\n", b"*-0\r\n",
    b"*2147483648\r\n", b"*9223372036854775808\r\n", b"*1\n\r\n", b"*1\0\r\n",
    b"*" + b"1" * 30 + b"\r\n",
])
def test_invalid_multibulk_length(header: bytes) -> None:
    assert parse_all(b"PING\r\n" + header + encode(b"PING")) == (
        [[b"PING"]], "ERR Protocol error: invalid multibulk length")


def test_too_big_mbulk_count_string() -> None:
    parser = make_parser()
    parser.feed(b"*" + b"1" * 65535)
    assert parser.parse() == ([], None)
    parser.feed(b"1")
    assert parser.parse() == ([], "ERR Protocol error: too big mbulk count string")


@pytest.mark.parametrize("element,shown", [
    (b":1\r\n", ":"), (b"foo\r\n", "f"), (b"\n\r\n", " "), (b"\r\n", " "),
    (b"\0\r\n", "\0"), (b"\xff\r\n", "\xff"), (b"+OK\r\n", "+"),
])
def test_expected_dollar(element: bytes, shown: str) -> None:
    data = encode(b"PING") + b"*2\r\n$3\r\nGET\r\n" + element + b"$1\r\nx\r\n"
    assert parse_all(data) == ([[b"PING"]], f"ERR Protocol error: expected '$', got '{shown}'")
    assert parse_split(data) == ([[b"PING"]], f"ERR Protocol error: expected '$', got '{shown}'")


def test_expected_dollar_from_valkey_test_suite() -> None:
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"
    assert parse_all(data) == ([], "ERR Protocol error: expected '$', got 'f'")


def test_expected_dollar_needs_a_complete_line() -> None:
    parser = make_parser()
    parser.feed(b"*1\r\n:1")
    assert parser.parse() == ([], None)          # no \r yet: Valkey keeps waiting
    parser.feed(b"\r")
    assert parser.parse() == ([], None)
    parser.feed(b"\n")
    assert parser.parse() == ([], "ERR Protocol error: expected '$', got ':'")


def test_too_big_bulk_count_string() -> None:
    parser = make_parser()
    parser.feed(b"*1\r\n$" + b"1" * 65535)
    assert parser.parse() == ([], None)
    parser.feed(b"1")
    assert parser.parse() == ([], "ERR Protocol error: too big bulk count string")
    # Even a wrong first byte is "too big" when no \r ever comes.
    assert parse_all(b"*1\r\n" + b"x" * 65537) == (
        [], "ERR Protocol error: too big bulk count string")


@pytest.mark.parametrize("length", [
    b"-1", b"abc", b"01", b"+1", b" 1", b"1 ", b"-0", b"", b"9223372036854775808", b"1\n",
])
def test_invalid_bulk_length(length: bytes) -> None:
    data = encode(b"PING") + b"*1\r\n$" + length + b"\r\nPING\r\n"
    assert parse_all(data) == ([[b"PING"]], "ERR Protocol error: invalid bulk length")


def test_bulk_length_above_max_bulk_len() -> None:
    assert parse_all(b"*1\r\n$11\r\n", max_bulk_len=10) == (
        [], "ERR Protocol error: invalid bulk length")
    assert parse_all(encode(b"x" * 10), max_bulk_len=10) == ([[b"x" * 10]], None)
    parser = make_parser()
    parser.max_bulk_len = 3
    parser.feed(b"*1\r\n$4\r\n")
    assert parser.parse() == ([], "ERR Protocol error: invalid bulk length")


def test_bulk_length_checked_before_payload_is_buffered() -> None:
    parser = make_parser()
    parser.feed(b"*1\r\n$536870913\r\n")
    assert parser.parse() == ([], "ERR Protocol error: invalid bulk length")
    parser.feed(b"x" * 100000)                     # dropped after the error
    assert parser.buffered() == 0
    assert parser.parse() == ([], "ERR Protocol error: invalid bulk length")


def test_error_is_sticky_and_input_dropped() -> None:
    parser = make_parser()
    parser.feed(b'PING\r\n"x\r\nPING\r\n')
    assert parser.parse() == ([[b"PING"]], "ERR Protocol error: unbalanced quotes in request")
    assert parser.error == "ERR Protocol error: unbalanced quotes in request"
    parser.feed(b"PING\r\n")
    assert parser.parse() == ([], "ERR Protocol error: unbalanced quotes in request")
    assert parser.buffered() == 0
    assert parser.take_remaining() == b""


def test_protocol_error_text() -> None:
    err = ProtocolError("ERR Protocol error: invalid multibulk length")
    assert str(err) == "ERR Protocol error: invalid multibulk length"
    assert isinstance(err, Exception)


def test_string2ll() -> None:
    ok = {b"0": 0, b"1": 1, b"-1": -1, b"9223372036854775807": 2**63 - 1,
          b"-9223372036854775808": -(2**63)}
    for text, value in ok.items():
        assert rp.string2ll(text) == value
    for text in [b"", b"-", b"-0", b"00", b"01", b"+1", b" 1", b"1 ", b"1a", b"0x1",
                 b"9223372036854775808", b"-9223372036854775809", b"\xd9", b"1" * 100]:
        assert rp.string2ll(text) is None, text


# --- unauthenticated clients ------------------------------------------------------------

def test_unauthenticated_multibulk_count() -> None:
    args = [b"a"] * 10
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(encode(*args) + encode(*args, b"b"))
    assert drain(parser) == ([args], "ERR Protocol error: unauthenticated multibulk length")


def test_unauthenticated_bulk_length() -> None:
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(encode(b"x" * 16384) + b"*1\r\n$16385\r\n")
    assert drain(parser) == ([[b"x" * 16384]], "ERR Protocol error: unauthenticated bulk length")


def test_invalid_takes_precedence_over_unauthenticated() -> None:
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(b"*2147483648\r\n")
    assert parser.parse() == ([], "ERR Protocol error: invalid multibulk length")
    parser = make_parser(max_bulk_len=20000)
    parser.unauthenticated = True
    parser.feed(b"*1\r\n$20001\r\n")
    assert parser.parse() == ([], "ERR Protocol error: invalid bulk length")


def test_unauthenticated_inline_has_no_limits() -> None:
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(b"ECHO" + b" a" * 50 + b"\r\n")
    assert parser.parse() == ([[b"ECHO"] + [b"a"] * 50], None)


def test_unauthenticated_parses_one_command_at_a_time() -> None:
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(b"AUTH pw\r\n" + encode(*[b"a"] * 20))
    assert parser.parse() == ([[b"AUTH", b"pw"]], None)
    parser.unauthenticated = False      # AUTH succeeded before the next one is parsed
    assert parser.parse() == ([[b"a"] * 20], None)


def test_unauthenticated_negative_count_is_fine() -> None:
    parser = make_parser()
    parser.unauthenticated = True
    parser.feed(b"*-5\r\n*0\r\nPING\r\n")
    assert parser.parse() == ([[b"PING"]], None)


def test_max_commands() -> None:
    parser = make_parser()
    parser.feed(b"A\r\nB\r\nC\r\n")
    assert parser.parse(max_commands=2) == ([[b"A"], [b"B"]], None)
    assert parser.parse() == ([[b"C"]], None)
    parser.feed(b"D\r\nE\r\n")
    parser.unauthenticated = True
    assert parser.parse(max_commands=0) == ([], None)
    assert parser.parse(max_commands=5) == ([[b"D"]], None)


# --- incremental feeding ----------------------------------------------------------------

def _sample_stream() -> bytes:
    return (encode(b"SET", b"key", b"v" * 40000) + b"PING\r\n" + b'SET a "b\\x00c"\n'
            + b"*0\r\n" + encode(b"MSET", *[b"k%d" % i for i in range(30)]) + b"\r\n"
            + b"*1\r\n$3\r\nfooXY" + encode(b"") + b"GET a\r\n" + b"*1\r\n:oops\r\n")


def test_byte_by_byte_equals_whole() -> None:
    data = _sample_stream()
    whole = parse_all(data)
    assert whole[1] == "ERR Protocol error: expected '$', got ':'"
    assert len(whole[0]) == 7
    assert parse_split(data) == whole
    for sizes in ([2], [3, 7], [1000], [65536], [5, 1, 40001]):
        assert parse_split(data, sizes) == whole


def test_big_bulk_in_chunks_is_fast() -> None:
    value = bytes(range(256)) * (64 * 1024 * 1024 // 256)
    data = encode(b"SET", b"k", value) + encode(b"GET", b"k")
    parser = make_parser()
    start = time.perf_counter()
    commands: list[list[bytes]] = []
    view = memoryview(data)
    step = 64 * 1024
    for pos in range(0, len(data), step):
        parser.feed(view[pos:pos + step])
        got, err = parser.parse()
        assert err is None
        commands += got
        assert parser.buffered() <= len(value) + 64   # no hidden copies counted twice
    elapsed = time.perf_counter() - start
    assert len(commands) == 2
    assert commands[0][0] == b"SET" and commands[0][2] == value
    assert commands[1] == [b"GET", b"k"]
    assert elapsed < 3.0, elapsed


def test_big_bulk_in_odd_chunks() -> None:
    value = b"z" * 200000
    data = encode(b"SET", b"k", value) + b"PING\r\n"
    expected = ([[b"SET", b"k", value], [b"PING"]], None)
    assert parse_split(data, [7777]) == expected
    assert parse_split(data, [1, 100003]) == expected
    assert parse_split(data, [len(data) - 3, 1]) == expected


def test_buffered_counts_partial_command() -> None:
    parser = make_parser()
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + b"v" * 500)
    assert parser.parse() == ([], None)
    assert parser.buffered() == 3 + 1 + 500
    parser.feed(b"v" * 99500 + b"\r\nPI")
    assert parser.parse() == ([[b"SET", b"k", b"v" * 100000]], None)
    assert parser.buffered() == 2


# --- take_remaining -------------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 1, 3, 5, 9, 12, 20, 40001, 40020, 40030])
def test_take_remaining_round_trip(cut: int) -> None:
    data = encode(b"SET", b"k", b"v" * 40000) + b"PING\r\n" + encode(b"GET", b"k")
    parser = make_parser()
    parser.feed(data[:cut])
    first, err = parser.parse()
    assert err is None
    rest = parser.take_remaining()
    assert parser.buffered() == 0
    assert parser.parse() == ([], None)
    second = parse_all(rest + data[cut:])
    assert (first + second[0], second[1]) == parse_all(data)


def test_take_remaining_normalises_parsed_headers() -> None:
    parser = make_parser()
    parser.feed(b"*2\rX$1\r?aZZ$3\r\nab")
    assert parser.parse() == ([], None)
    assert parser.take_remaining() == b"*2\r\n$1\r\na\r\n$3\r\nab"


# --- fuzzing --------------------------------------------------------------------------

def _valid_request(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        words = [rng.choice([b"GET", b"k", b'"a b"', b"'c'", b"x\\y", b'"\\x41"'])
                 for _ in range(rng.randint(0, 4))]
        return b" ".join(words) + rng.choice([b"\r\n", b"\n"])
    args = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 20])))
            for _ in range(rng.randint(0, 4))]
    return encode(*args)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice([b"\r", b"\n", b"\0", b"*", b"$", b"-1", b"0", b'"', b"'",
                                       b"99999", b"2147483648", b" "])
        elif op == 2 and buf:
            del buf[pos:pos + rng.randint(1, 5)]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def _check_result(result: Result) -> None:
    commands, err = result
    assert isinstance(commands, list)
    assert all(isinstance(c, list) and c and all(type(a) is bytes for a in c)
               for c in commands)
    assert err is None or (isinstance(err, str) and err.startswith("ERR Protocol error: "))


def test_fuzz_random_garbage_and_mutations() -> None:
    rng = random.Random(20240901)
    for i in range(2000):
        if i % 2:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
            if rng.random() < 0.3:
                data = b"*" + data
        else:
            data = _mutate(b"".join(_valid_request(rng) for _ in range(rng.randint(1, 5))), rng)
        unauth = rng.random() < 0.2
        max_bulk = rng.choice([512 * 1024 * 1024, 10])
        sizes = [rng.randint(1, 16) for _ in range(3)]
        kwargs = {"max_bulk_len": max_bulk}

        whole_parser = make_parser(**kwargs)
        whole_parser.unauthenticated = unauth
        whole_parser.feed(data)
        whole = drain(whole_parser)
        _check_result(whole)
        assert whole_parser.buffered() <= len(data)

        split_parser = make_parser(**kwargs)
        split_parser.unauthenticated = unauth
        commands: list[list[bytes]] = []
        err = None
        for pos in range(0, len(data), sizes[0]):
            split_parser.feed(data[pos:pos + sizes[0]])
            got, err = drain(split_parser)
            commands += got
            if err:
                break
        assert (commands, err) == whole, data

        model = model_split(data, sizes[:1], unauth=unauth, max_bulk=max_bulk)
        assert model == whole, data


def test_fuzz_large_inputs_against_model() -> None:
    """Bigger streams crossing the 64 KiB limits and the chunked-bulk threshold."""
    rng = random.Random(7)
    for _ in range(40):
        parts = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.randrange(5)
            if kind == 0:
                parts.append(encode(b"SET", b"k", b"v" * rng.choice([10, 33000, 70000])))
            elif kind == 1:
                parts.append(b"x" * rng.choice([100, 65536, 65537, 70000]))
            elif kind == 2:
                parts.append(b"*" + b"1" * rng.choice([5, 65540]))
            elif kind == 3:
                parts.append(b"ECHO " + b"y" * rng.choice([10, 66000]) + b"\n")
            else:
                parts.append(_mutate(encode(b"GET", b"k" * 40000), rng))
        data = b"".join(parts)
        sizes = [rng.choice([1000, 16384, 65536, 100000])]
        parser_result = parse_split(data, sizes)
        _check_result(parser_result)
        assert parser_result == model_split(data, sizes)
