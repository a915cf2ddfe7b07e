"""In-process tests of the worker's string and key commands (t_string, t_keys) and glob."""
from __future__ import annotations

import pytest

from shardd import commands
from shardd.errors import CommandError
from shardd.glob import glob_match, pattern_slot
from shardd.slots import keyslot
from shardd.worker import keyspace, t_keys, t_string  # noqa: F401  (registers the handlers)
from shardd.worker.context import Ctx
from shardd.worker.keyspace import Db

NOW = 1_700_000_000_000
MAX_BULK = 512 * 1024 * 1024


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyspace, "now_ms", NOW)


@pytest.fixture
def ctx() -> Ctx:
    return Ctx([Db(i) for i in range(16)],
               {"__slot_range__": (0, 16383), "proto-max-bulk-len": MAX_BULK})


def _argv(args: tuple) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def run(ctx: Ctx, *args: object) -> bytes:
    """Call the worker handler as the worker loop would, with ctx.slot of the first key."""
    argv = _argv(args)
    spec = commands.lookup_argv(argv)
    if spec.name == "scan":
        ctx.slot = int(argv[1]) if argv[1].isdigit() else 0
    elif spec.first_key and len(argv) > spec.first_key:
        ctx.slot = keyslot(argv[spec.first_key])
    return spec.worker_handler(ctx, argv)


def err(ctx: Ctx, *args: object) -> str:
    with pytest.raises(CommandError) as info:
        run(ctx, *args)
    return str(info.value)


class FakeList(list):
    """Stands in for the list type (any non-bytes value is another type to string commands)."""


@pytest.fixture(autouse=True)
def fake_list_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(t_keys.TYPE_NAMES, FakeList, b"list")
    monkeypatch.setitem(t_keys.OBJECT_ENCODINGS, FakeList, lambda value: b"quicklist")


def put_list(ctx: Ctx, key: bytes) -> None:
    ctx.db.store(key, keyslot(key), FakeList([b"x"]))


def ttl_ms(ctx: Ctx, key: bytes) -> int | None:
    when = ctx.db.get_expire(key, keyslot(key))
    return None if when is None else when - NOW


def bulk(v: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(v), v)


def ints(*values: int) -> bytes:
    return b"".join(b":%d\r\n" % v for v in values)


NIL = b"$-1\r\n"
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INT = "ERR value is not an integer or out of range"


# -- GET / SET ---------------------------------------------------------------------------------

def test_get_set_and_nulls(ctx: Ctx) -> None:
    assert run(ctx, "GET", "k") == NIL
    ctx.proto = 3
    assert run(ctx, "get", "k") == b"_\r\n"
    ctx.proto = 2
    assert run(ctx, "SET", "k", "v") == b"+OK\r\n"
    assert run(ctx, "GET", "k") == bulk(b"v")
    assert run(ctx, "SET", "k", "") == b"+OK\r\n"
    assert run(ctx, "GET", "k") == b"$0\r\n\r\n"
    put_list(ctx, b"l")
    assert err(ctx, "GET", "l") == WRONGTYPE
    assert ctx.db.hits == 3 and ctx.db.misses == 2


def test_set_nx_xx_get(ctx: Ctx) -> None:
    assert run(ctx, "SET", "k", "1", "XX") == NIL
    assert run(ctx, "SET", "k", "1", "nx") == b"+OK\r\n"
    assert run(ctx, "SET", "k", "2", "NX") == NIL
    assert run(ctx, "SET", "k", "2", "xx") == b"+OK\r\n"
    assert run(ctx, "SET", "k", "3", "GET") == bulk(b"2")
    assert run(ctx, "SET", "k", "4", "NX", "GET") == bulk(b"3")     # not set, old value
    assert run(ctx, "GET", "k") == bulk(b"3")
    assert run(ctx, "SET", "new", "v", "GET") == NIL
    assert run(ctx, "SET", "new2", "v", "XX", "GET") == NIL
    assert run(ctx, "GET", "new2") == NIL
    put_list(ctx, b"l")
    assert err(ctx, "SET", "l", "v", "GET") == WRONGTYPE
    assert run(ctx, "SET", "l", "v") == b"+OK\r\n"                  # plain SET overwrites


@pytest.mark.parametrize("opts", [
    ("NX", "XX"), ("XX", "NX"), ("EX", "10", "PX", "10"), ("PX", "1", "EXAT", "1"),
    ("KEEPTTL", "EX", "1"), ("EX", "1", "KEEPTTL"), ("EX",), ("PXAT",), ("PERSIST",),
    ("FOO",), ("EXAT", "1", "PXAT", "1"), ("GET", "EX"),
])
def test_set_syntax_errors(ctx: Ctx, opts: tuple) -> None:
    assert err(ctx, "SET", "k", "v", *opts) == SYNTAX


def test_set_expire_options(ctx: Ctx) -> None:
    assert run(ctx, "SET", "k", "v", "EX", "10", "EX", "20") == b"+OK\r\n"   # same option again
    assert ttl_ms(ctx, b"k") == 20_000
    run(ctx, "SET", "k", "v", "px", "1500")
    assert ttl_ms(ctx, b"k") == 1500
    run(ctx, "SET", "k", "v", "EXAT", str(NOW // 1000 + 100))
    assert ttl_ms(ctx, b"k") == 100_000 - NOW % 1000
    run(ctx, "SET", "k", "v", "PXAT", str(NOW + 5))
    assert ttl_ms(ctx, b"k") == 5
    run(ctx, "SET", "k", "w", "KEEPTTL")
    assert ttl_ms(ctx, b"k") == 5 and run(ctx, "GET", "k") == bulk(b"w")
    run(ctx, "SET", "k", "x")
    assert ttl_ms(ctx, b"k") is None


def test_set_invalid_expire(ctx: Ctx) -> None:
    bad = "ERR invalid expire time in 'set' command"
    for opts in (("EX", "0"), ("EX", "-1"), ("PX", "0"), ("EXAT", "0"), ("PXAT", "-5"),
                 ("EX", "9223372036854776"), ("PX", "9223372036854775807")):
        assert err(ctx, "SET", "k", "v", *opts) == bad, opts
    assert err(ctx, "SET", "k", "v", "EX", "1.5") == NOT_INT
    assert err(ctx, "SET", "k", "v", "EX", " 1") == NOT_INT
    assert err(ctx, "SETEX", "k", "0", "v") == "ERR invalid expire time in 'setex' command"
    assert err(ctx, "PSETEX", "k", "-1", "v") == "ERR invalid expire time in 'psetex' command"
    put_list(ctx, b"l")
    assert err(ctx, "SET", "l", "v", "GET", "EX", "0") == bad           # expiry checked first


def test_set_past_expiry_deletes(ctx: Ctx) -> None:
    run(ctx, "SET", "k", "v")
    assert run(ctx, "SET", "k", "v2", "EXAT", "1") == b"+OK\r\n"
    assert run(ctx, "GET", "k") == NIL and ctx.db.size == 0
    run(ctx, "SET", "k", "v")
    assert run(ctx, "SET", "k", "v2", "PXAT", str(NOW), "GET") == bulk(b"v")
    assert run(ctx, "EXISTS", "k") == b":0\r\n"
    assert run(ctx, "SET", "n", "v", "PXAT", "1") == b"+OK\r\n"
    assert ctx.db.size == 0


def test_setnx_setex_psetex(ctx: Ctx) -> None:
    assert run(ctx, "SETNX", "k", "a") == b":1\r\n"
    assert run(ctx, "SETNX", "k", "b") == b":0\r\n"
    assert run(ctx, "SETEX", "k", "100", "c") == b"+OK\r\n"
    assert ttl_ms(ctx, b"k") == 100_000 and run(ctx, "GET", "k") == bulk(b"c")
    assert run(ctx, "PSETEX", "k", "250", "d") == b"+OK\r\n"
    assert ttl_ms(ctx, b"k") == 250
    assert err(ctx, "SETEX", "k", "x", "v") == NOT_INT


def test_expired_key_is_gone(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    run(ctx, "SET", "k", "v", "PX", "10")
    monkeypatch.setattr(keyspace, "now_ms", NOW + 10)
    assert run(ctx, "GET", "k") == NIL
    assert ctx.db.size == 0 and ctx.db.expired == 1


# -- GETEX / GETDEL / GETSET -------------------------------------------------------------------

def test_getex(ctx: Ctx) -> None:
    assert run(ctx, "GETEX", "k") == NIL
    assert run(ctx, "GETEX", "k", "EX", "0") == NIL          # Valkey 8 checks the key first
    run(ctx, "SET", "k", "v", "EX", "100")
    assert run(ctx, "GETEX", "k") == bulk(b"v") and ttl_ms(ctx, b"k") == 100_000
    assert run(ctx, "GETEX", "k", "PX", "50") == bulk(b"v") and ttl_ms(ctx, b"k") == 50
    assert run(ctx, "GETEX", "k", "EXAT", str(NOW // 1000 + 9)) == bulk(b"v")
    assert ttl_ms(ctx, b"k") == 9000 - NOW % 1000
    assert run(ctx, "GETEX", "k", "persist") == bulk(b"v") and ttl_ms(ctx, b"k") is None
    assert run(ctx, "GETEX", "k", "PXAT", "1") == bulk(b"v")
    assert run(ctx, "GET", "k") == NIL
    run(ctx, "SET", "k", "v")
    assert err(ctx, "GETEX", "k", "EX", "0") == "ERR invalid expire time in 'getex' command"
    for opts in (("KEEPTTL",), ("EX", "1", "PERSIST"), ("PERSIST", "EX", "1"), ("NX",),
                 ("GET",), ("EX",)):
        assert err(ctx, "GETEX", "k", *opts) == SYNTAX, opts
    put_list(ctx, b"l")
    assert err(ctx, "GETEX", "l", "EX", "1") == WRONGTYPE


def test_getdel_getset(ctx: Ctx) -> None:
    assert run(ctx, "GETDEL", "k") == NIL
    run(ctx, "SET", "k", "v")
    assert run(ctx, "GETDEL", "k") == bulk(b"v")
    assert run(ctx, "GET", "k") == NIL
    assert run(ctx, "GETSET", "k", "a") == NIL
    run(ctx, "EXPIRE", "k", "100")
    assert run(ctx, "GETSET", "k", "b") == bulk(b"a")
    assert ttl_ms(ctx, b"k") is None                      # GETSET drops the TTL
    put_list(ctx, b"l")
    assert err(ctx, "GETDEL", "l") == WRONGTYPE
    assert err(ctx, "GETSET", "l", "x") == WRONGTYPE


# -- MGET / MSET / MSETNX ----------------------------------------------------------------------

def test_mget_mset_msetnx(ctx: Ctx) -> None:
    assert run(ctx, "MSET", "a", "1", "b", "2") == b"+OK\r\n"
    put_list(ctx, b"l")
    assert run(ctx, "MGET", "a", "missing", "l", "b") == (
        b"*4\r\n" + bulk(b"1") + NIL + NIL + bulk(b"2"))
    ctx.proto = 3
    assert run(ctx, "MGET", "missing") == b"*1\r\n_\r\n"
    assert err(ctx, "MSET", "a", "1", "b") == "ERR wrong number of arguments for 'mset' command"
    assert run(ctx, "MSETNX", "a", "9", "c", "3") == b":0\r\n"
    assert run(ctx, "GET", "c") == b"_\r\n"
    assert run(ctx, "MSETNX", "c", "3", "d", "4", "c", "5") == b":1\r\n"
    assert run(ctx, "GET", "c") == bulk(b"5") and run(ctx, "GET", "d") == bulk(b"4")
    assert err(ctx, "MSETNX", "x", "1", "y") == (
        "ERR wrong number of arguments for 'msetnx' command")


# -- APPEND / SETRANGE / GETRANGE / STRLEN -----------------------------------------------------

def test_append_and_strlen(ctx: Ctx) -> None:
    assert run(ctx, "APPEND", "k", "Hello") == b":5\r\n"
    run(ctx, "EXPIRE", "k", "100")
    assert run(ctx, "APPEND", "k", " World") == b":11\r\n"
    assert run(ctx, "GET", "k") == bulk(b"Hello World") and ttl_ms(ctx, b"k") == 100_000
    assert run(ctx, "STRLEN", "k") == b":11\r\n"
    assert run(ctx, "STRLEN", "nope") == b":0\r\n"
    put_list(ctx, b"l")
    assert err(ctx, "APPEND", "l", "x") == WRONGTYPE
    assert err(ctx, "STRLEN", "l") == WRONGTYPE
    ctx.config["proto-max-bulk-len"] = 12
    assert err(ctx, "APPEND", "k", "!!") == (
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    assert run(ctx, "APPEND", "k", "!") == b":12\r\n"


def test_setrange(ctx: Ctx) -> None:
    assert run(ctx, "SETRANGE", "k", "0", "") == b":0\r\n"
    assert run(ctx, "EXISTS", "k") == b":0\r\n"
    assert run(ctx, "SETRANGE", "k", "3", "ab") == b":5\r\n"
    assert run(ctx, "GET", "k") == bulk(b"\x00\x00\x00ab")
    assert run(ctx, "SETRANGE", "k", "1", "XYZW") == b":5\r\n"
    assert run(ctx, "GET", "k") == bulk(b"\x00XYZW")
    assert run(ctx, "SETRANGE", "k", "7", "!") == b":8\r\n"
    assert run(ctx, "GET", "k") == bulk(b"\x00XYZW\x00\x00!")
    assert run(ctx, "SETRANGE", "k", "100", "") == b":8\r\n"
    assert err(ctx, "SETRANGE", "k", "-1", "x") == "ERR offset is out of range"
    assert err(ctx, "SETRANGE", "k", "x", "x") == NOT_INT
    assert err(ctx, "SETRANGE", "k", str(MAX_BULK), "x") == (
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    assert err(ctx, "SETRANGE", "new", str(MAX_BULK - 1), "xy") == (
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    put_list(ctx, b"l")
    assert err(ctx, "SETRANGE", "l", "0", "x") == WRONGTYPE


@pytest.mark.parametrize("start,end,expected", [
    (0, 3, b"This"), (-3, -1, b"ing"), (0, -1, b"This is a string"), (10, 100, b"string"),
    (5, 3, b""), (-1, -5, b""), (-100, 3, b"This"), (-100, -90, b"T"), (20, 30, b""),
    (15, 15, b"g"),
])
def test_getrange(ctx: Ctx, start: int, end: int, expected: bytes) -> None:
    run(ctx, "SET", "k", "This is a string")
    assert run(ctx, "GETRANGE", "k", start, end) == bulk(expected)
    assert run(ctx, "SUBSTR", "k", start, end) == bulk(expected)


def test_getrange_edges(ctx: Ctx) -> None:
    assert run(ctx, "GETRANGE", "nope", "0", "-1") == b"$0\r\n\r\n"
    run(ctx, "SET", "e", "")
    assert run(ctx, "GETRANGE", "e", "0", "-1") == b"$0\r\n\r\n"
    assert err(ctx, "GETRANGE", "e", "a", "1") == NOT_INT
    put_list(ctx, b"l")
    assert err(ctx, "GETRANGE", "l", "0", "1") == WRONGTYPE


# -- INCR family -------------------------------------------------------------------------------

def test_incr_decr(ctx: Ctx) -> None:
    assert run(ctx, "INCR", "n") == b":1\r\n"
    assert run(ctx, "INCRBY", "n", "10") == b":11\r\n"
    assert run(ctx, "DECR", "n") == b":10\r\n"
    assert run(ctx, "DECRBY", "n", "-5") == b":15\r\n"
    assert run(ctx, "GET", "n") == bulk(b"15")
    run(ctx, "EXPIRE", "n", "100")
    run(ctx, "INCR", "n")
    assert ttl_ms(ctx, b"n") == 100_000                   # INCR keeps the TTL
    run(ctx, "SET", "n", "-9223372036854775808")
    assert run(ctx, "DECRBY", "n", "0") == b":-9223372036854775808\r\n"


def test_incr_errors(ctx: Ctx) -> None:
    for bad in (" 1", "1 ", "+1", "01", "-0", "1.5", "", "abc", "9223372036854775808",
                "1\x00"):
        run(ctx, "SET", "n", bad)
        assert err(ctx, "INCR", "n") == NOT_INT, bad
    run(ctx, "SET", "n", "9223372036854775807")
    assert err(ctx, "INCR", "n") == "ERR increment or decrement would overflow"
    run(ctx, "SET", "n", "-9223372036854775808")
    assert err(ctx, "DECR", "n") == "ERR increment or decrement would overflow"
    assert err(ctx, "INCRBY", "n", "x") == NOT_INT
    assert err(ctx, "DECRBY", "n", "-9223372036854775808") == "ERR decrement would overflow"
    put_list(ctx, b"l")
    assert err(ctx, "INCR", "l") == WRONGTYPE
    assert err(ctx, "INCRBY", "l", "x") == NOT_INT         # the argument is parsed first


@pytest.mark.parametrize("start,incr,expected", [
    (None, "1", b"1"), ("10.5", "0.1", b"10.6"), ("0.1", "0.2", b"0.3"),
    ("5.0e3", "2.0e2", b"5200"), ("1", "1.5", b"2.5"), (None, "0x10", b"16"),
    ("3", "-3", b"0"), ("1.1", "-1.1", b"0"), (None, "1e-18", b"0"), (None, "-1e-18", b"0"),
    (None, "1e20", b"100000000000000000000"), ("0.00000000000000001", "0", b"0.00000000000000001"),
    (None, ".5", b"0.5"), ("17179869184", "1.5", b"17179869185.5"),
])
def test_incrbyfloat(ctx: Ctx, start: str | None, incr: str, expected: bytes) -> None:
    if start is not None:
        run(ctx, "SET", "f", start)
    assert run(ctx, "INCRBYFLOAT", "f", incr) == bulk(expected)
    assert run(ctx, "GET", "f") == bulk(expected)


def test_incrbyfloat_errors(ctx: Ctx) -> None:
    not_float = "ERR value is not a valid float"
    for bad in ("abc", " 1", "1 ", "1e5000", "nan", "", "1e-5000", "0x"):
        assert err(ctx, "INCRBYFLOAT", "f", bad) == not_float, bad
    run(ctx, "SET", "f", "1\x002")
    assert err(ctx, "INCRBYFLOAT", "f", "1") == not_float
    run(ctx, "SET", "f", "0")
    assert err(ctx, "INCRBYFLOAT", "f", "+inf") == "ERR increment would produce NaN or Infinity"
    run(ctx, "SET", "f", "1.1e4932")
    assert err(ctx, "INCRBYFLOAT", "f", "1e4932") == "ERR increment would produce NaN or Infinity"
    put_list(ctx, b"l")
    assert err(ctx, "INCRBYFLOAT", "l", "1") == WRONGTYPE


def test_incrbyfloat_no_negative_zero_and_keeps_ttl(ctx: Ctx) -> None:
    run(ctx, "INCRBYFLOAT", "f", repr(1 / 41))
    run(ctx, "EXPIRE", "f", "100")
    assert run(ctx, "INCRBYFLOAT", "f", repr(-1 / 41)) == bulk(b"0")
    assert ttl_ms(ctx, b"f") == 100_000


# -- LCS ---------------------------------------------------------------------------------------

def _lcs_setup(ctx: Ctx) -> None:
    run(ctx, "SET", "{x}1", "ohmytext")
    run(ctx, "SET", "{x}2", "mynewtext")


def test_lcs_string_and_len(ctx: Ctx) -> None:
    _lcs_setup(ctx)
    assert run(ctx, "LCS", "{x}1", "{x}2") == bulk(b"mytext")
    assert run(ctx, "LCS", "{x}1", "{x}2", "len") == b":6\r\n"
    assert run(ctx, "LCS", "{x}1", "{x}missing") == b"$0\r\n\r\n"
    assert run(ctx, "LCS", "{x}1", "{x}missing", "LEN") == b":0\r\n"


def test_lcs_idx_resp2_and_resp3(ctx: Ctx) -> None:
    _lcs_setup(ctx)
    pair = b"*2\r\n"
    body = (b"$7\r\nmatches\r\n*2\r\n"
            + b"*2\r\n" + pair + ints(4, 7) + pair + ints(5, 8)
            + b"*2\r\n" + pair + ints(2, 3) + pair + ints(0, 1)
            + b"$3\r\nlen\r\n:6\r\n")
    assert run(ctx, "LCS", "{x}1", "{x}2", "IDX") == b"*4\r\n" + body
    ctx.proto = 3
    assert run(ctx, "LCS", "{x}1", "{x}2", "IDX") == b"%2\r\n" + body
    ctx.proto = 2
    assert run(ctx, "LCS", "{x}1", "{x}2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN") == (
        b"*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n" + pair + ints(4, 7) + pair + ints(5, 8)
        + b":4\r\n$3\r\nlen\r\n:6\r\n")


def test_lcs_errors(ctx: Ctx) -> None:
    _lcs_setup(ctx)
    assert err(ctx, "LCS", "{x}1", "{x}2", "LEN", "IDX") == (
        "ERR If you want both the length and indexes, please just use IDX.")
    assert err(ctx, "LCS", "{x}1", "{x}2", "FOO") == SYNTAX
    assert err(ctx, "LCS", "{x}1", "{x}2", "MINMATCHLEN") == SYNTAX
    assert err(ctx, "LCS", "{x}1", "{x}2", "MINMATCHLEN", "x") == NOT_INT
    put_list(ctx, b"{x}l")
    assert err(ctx, "LCS", "{x}1", "{x}l") == "ERR The specified keys must contain string values"
    ctx.config["proto-max-bulk-len"] = 100
    assert err(ctx, "LCS", "{x}1", "{x}2") == (
        "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")


# -- DEL / EXISTS / TOUCH / TYPE ---------------------------------------------------------------

def test_del_exists_touch_type(ctx: Ctx) -> None:
    run(ctx, "MSET", "a", "1", "b", "2")
    assert run(ctx, "EXISTS", "a", "a", "b", "c") == b":3\r\n"
    assert run(ctx, "TOUCH", "a", "c") == b":1\r\n"
    assert run(ctx, "TYPE", "a") == b"+string\r\n"
    assert run(ctx, "TYPE", "c") == b"+none\r\n"
    put_list(ctx, b"l")
    assert run(ctx, "TYPE", "l") == b"+list\r\n"
    assert run(ctx, "OBJECT", "ENCODING", "l") == bulk(b"quicklist")
    assert run(ctx, "OBJECT", "REFCOUNT", "l") == b":1\r\n"
    assert run(ctx, "DEL", "l") == b":1\r\n"
    assert run(ctx, "DEL", "a", "a", "c") == b":1\r\n"
    assert run(ctx, "UNLINK", "b") == b":1\r\n"
    assert ctx.db.size == 0


def test_type_names_registry() -> None:
    assert t_keys.type_name(b"x") == b"string"
    assert t_keys.TYPE_NAMES[bytes] == b"string"


# -- EXPIRE family -----------------------------------------------------------------------------

def test_expire_and_ttls(ctx: Ctx) -> None:
    assert run(ctx, "EXPIRE", "k", "10") == b":0\r\n"
    assert run(ctx, "TTL", "k") == b":-2\r\n" and run(ctx, "PTTL", "k") == b":-2\r\n"
    run(ctx, "SET", "k", "v")
    assert run(ctx, "TTL", "k") == b":-1\r\n" and run(ctx, "EXPIRETIME", "k") == b":-1\r\n"
    assert run(ctx, "EXPIRE", "k", "10") == b":1\r\n"
    assert run(ctx, "TTL", "k") == b":10\r\n" and run(ctx, "PTTL", "k") == b":10000\r\n"
    assert run(ctx, "PEXPIRE", "k", "1499") == b":1\r\n"
    assert run(ctx, "TTL", "k") == b":1\r\n"              # rounded: (1499 + 500) / 1000
    assert run(ctx, "PEXPIREAT", "k", str(NOW + 2500)) == b":1\r\n"
    assert run(ctx, "PEXPIRETIME", "k") == b":%d\r\n" % (NOW + 2500)
    assert run(ctx, "EXPIRETIME", "k") == b":%d\r\n" % ((NOW + 2500 + 500) // 1000)
    assert run(ctx, "EXPIREAT", "k", str(NOW // 1000 + 50)) == b":1\r\n"
    assert run(ctx, "PERSIST", "k") == b":1\r\n"
    assert run(ctx, "PERSIST", "k") == b":0\r\n"
    assert run(ctx, "PERSIST", "nope") == b":0\r\n"
    assert run(ctx, "EXPIRE", "k", "-1") == b":1\r\n"     # the past deletes
    assert run(ctx, "EXISTS", "k") == b":0\r\n"
    run(ctx, "SET", "k", "v")
    assert run(ctx, "PEXPIREAT", "k", str(NOW)) == b":1\r\n" and ctx.db.size == 0


def test_expire_conditions(ctx: Ctx) -> None:
    run(ctx, "SET", "k", "v")
    assert run(ctx, "EXPIRE", "k", "100", "XX") == b":0\r\n"
    assert run(ctx, "EXPIRE", "k", "100", "GT") == b":0\r\n"     # no TTL counts as infinite
    assert run(ctx, "EXPIRE", "k", "100", "LT") == b":1\r\n"
    assert run(ctx, "EXPIRE", "k", "50", "NX") == b":0\r\n"
    assert run(ctx, "EXPIRE", "k", "200", "gt") == b":1\r\n"
    assert run(ctx, "EXPIRE", "k", "200", "GT") == b":0\r\n"
    assert run(ctx, "EXPIRE", "k", "300", "LT") == b":0\r\n"
    assert run(ctx, "EXPIRE", "k", "150", "XX", "LT") == b":1\r\n"
    assert ttl_ms(ctx, b"k") == 150_000
    run(ctx, "PERSIST", "k")
    assert run(ctx, "EXPIRE", "k", "50", "NX") == b":1\r\n"


def test_expire_errors(ctx: Ctx) -> None:
    run(ctx, "SET", "k", "v")
    assert err(ctx, "EXPIRE", "k", "10", "NX", "XX") == (
        "ERR NX and XX, GT or LT options at the same time are not compatible")
    assert err(ctx, "EXPIRE", "k", "10", "NX", "GT") == (
        "ERR NX and XX, GT or LT options at the same time are not compatible")
    assert err(ctx, "EXPIRE", "k", "10", "GT", "LT") == (
        "ERR GT and LT options at the same time are not compatible")
    assert err(ctx, "EXPIRE", "k", "10", "foo") == "ERR Unsupported option foo"
    assert err(ctx, "EXPIRE", "k", "1.5") == NOT_INT
    assert err(ctx, "EXPIRE", "k", "9223372036854776") == (
        "ERR invalid expire time in 'expire' command")
    assert err(ctx, "EXPIRE", "k", "-9223372036854776") == (
        "ERR invalid expire time in 'expire' command")
    assert err(ctx, "PEXPIRE", "k", "9223372036854775807") == (
        "ERR invalid expire time in 'pexpire' command")
    assert err(ctx, "EXPIREAT", "k", "9223372036854776") == (
        "ERR invalid expire time in 'expireat' command")
    assert run(ctx, "PEXPIREAT", "k", "9223372036854775807") == b":1\r\n"


# -- KEYS / SCAN / RANDOMKEY / DBSIZE / FLUSH ----------------------------------------------------

def test_keys(ctx: Ctx) -> None:
    run(ctx, "MSET", "hello", "1", "hallo", "2", "hxllo", "3", "hllo", "4", "{t}a", "5", "x*", "6")

    def keys(pattern: str) -> list[bytes]:
        reply = run(ctx, "KEYS", pattern)
        return sorted(reply.split(b"\r\n")[2::2])

    assert len(keys("*")) == 6
    assert keys("h?llo") == [b"hallo", b"hello", b"hxllo"]
    assert keys("h*llo") == [b"hallo", b"hello", b"hllo", b"hxllo"]
    assert keys("h[ae]llo") == [b"hallo", b"hello"]
    assert keys("h[^e]llo") == [b"hallo", b"hxllo"]
    assert keys("h[a-b]llo") == [b"hallo"]
    assert keys("{t}*") == [b"{t}a"]
    assert keys("x\\*") == [b"x*"]
    assert keys("nomatch*") == []
    run(ctx, "PEXPIRE", "hello", "0")
    assert len(keys("*")) == 5


def test_scan_walks_slots(ctx: Ctx) -> None:
    names = [b"key:%d" % i for i in range(100)]
    for name in names:
        run(ctx, "SET", name, "v")
    seen: list[bytes] = []
    cursor = b"0"
    calls = 0
    while True:
        reply = run(ctx, "SCAN", cursor, "COUNT", "7")
        parts = reply.split(b"\r\n")
        cursor = parts[2]
        seen += parts[5::2]
        calls += 1
        if cursor == b"0":
            break
    assert sorted(seen) == sorted(names) and calls >= 100 // 7


def test_scan_options_and_range(ctx: Ctx) -> None:
    run(ctx, "SET", "a", "1")                      # keyslot(b"a") == 15495
    put_list(ctx, b"b")                            # keyslot(b"b") == 3300
    assert run(ctx, "SCAN", "0", "COUNT", "1000") == (
        b"*2\r\n$1\r\n0\r\n*2\r\n" + bulk(b"b") + bulk(b"a"))
    assert run(ctx, "SCAN", "0", "TYPE", "STRING", "COUNT", "1000") == (
        b"*2\r\n$1\r\n0\r\n*1\r\n" + bulk(b"a"))
    assert run(ctx, "SCAN", "0", "TYPE", "list", "COUNT", "1000") == (
        b"*2\r\n$1\r\n0\r\n*1\r\n" + bulk(b"b"))
    assert run(ctx, "SCAN", "0", "TYPE", "hash", "COUNT", "1000") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert run(ctx, "SCAN", "0", "MATCH", "b*", "COUNT", "1000") == (
        b"*2\r\n$1\r\n0\r\n*1\r\n" + bulk(b"b"))
    assert run(ctx, "SCAN", "0", "COUNT", "1") == b"*2\r\n$4\r\n3301\r\n*1\r\n" + bulk(b"b")
    assert run(ctx, "SCAN", "3301") == b"*2\r\n$1\r\n0\r\n*1\r\n" + bulk(b"a")
    assert run(ctx, "SCAN", "16384") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert run(ctx, "SCAN", "18446744073709551615") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    ctx.config["__slot_range__"] = (0, 8191)
    assert run(ctx, "SCAN", "0", "COUNT", "1000") == b"*2\r\n$4\r\n8192\r\n*1\r\n" + bulk(b"b")
    assert err(ctx, "SCAN", "abc") == "ERR invalid cursor"
    assert err(ctx, "SCAN", "-1") == "ERR invalid cursor"
    assert err(ctx, "SCAN", "0", "COUNT", "0") == SYNTAX
    assert err(ctx, "SCAN", "0", "COUNT", "x") == NOT_INT
    assert err(ctx, "SCAN", "0", "MATCH") == SYNTAX
    assert err(ctx, "SCAN", "0", "TYPE", "foo") == "ERR unknown type name 'foo'"
    assert err(ctx, "SCAN", "0", "NOVALUES") == "ERR NOVALUES option can only be used in HSCAN"
    assert t_keys.parse_cursor(b"+5") == 5 and t_keys.parse_cursor(b"007") == 7


def test_randomkey_dbsize_flush(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(ctx, "RANDOMKEY") == NIL
    run(ctx, "MSET", "a", "1", "b", "2")
    assert run(ctx, "RANDOMKEY") in (bulk(b"a"), bulk(b"b"))
    assert run(ctx, "DBSIZE") == b":2\r\n"
    run(ctx, "PEXPIRE", "a", "5")
    run(ctx, "PEXPIRE", "b", "5")
    monkeypatch.setattr(keyspace, "now_ms", NOW + 5)
    assert run(ctx, "RANDOMKEY") == NIL and ctx.db.size == 0
    run(ctx, "SET", "a", "1")
    ctx.dbs[3].store(b"z", keyslot(b"z"), b"1")
    ctx.dbs[3].set_expire(b"z", keyslot(b"z"), NOW + 10_000)
    assert t_keys.keyspace_info(ctx.dbs) == {0: (1, 0, 0), 3: (1, 1, 0)}
    assert err(ctx, "FLUSHDB", "FOO") == SYNTAX
    assert err(ctx, "FLUSHALL", "SYNC", "ASYNC") == SYNTAX
    assert run(ctx, "FLUSHDB", "async") == b"+OK\r\n"
    assert ctx.db.size == 0 and ctx.dbs[3].size == 1
    assert run(ctx, "FLUSHALL") == b"+OK\r\n"
    assert ctx.dbs[3].size == 0 and t_keys.keyspace_info(ctx.dbs) == {}


# -- OBJECT ------------------------------------------------------------------------------------

def test_object(ctx: Ctx) -> None:
    run(ctx, "MSET", "i", "12345", "s", "x" * 44, "r", "x" * 45, "z", "012", "h", "9999")
    assert run(ctx, "OBJECT", "ENCODING", "i") == bulk(b"int")
    assert run(ctx, "OBJECT", "encoding", "s") == bulk(b"embstr")
    assert run(ctx, "OBJECT", "ENCODING", "r") == bulk(b"raw")
    assert run(ctx, "OBJECT", "ENCODING", "z") == bulk(b"embstr")
    assert run(ctx, "OBJECT", "ENCODING", "nope") == NIL
    assert run(ctx, "OBJECT", "REFCOUNT", "h") == b":2147483647\r\n"
    assert run(ctx, "OBJECT", "REFCOUNT", "i") == b":1\r\n"
    ctx.config.update({"maxmemory": 1 << 20, "maxmemory-policy": "allkeys-lru"})
    assert run(ctx, "OBJECT", "REFCOUNT", "h") == b":1\r\n"
    assert run(ctx, "OBJECT", "IDLETIME", "i") == b":0\r\n"
    assert err(ctx, "OBJECT", "FREQ", "i").startswith(
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked.")
    ctx.config["maxmemory-policy"] = "allkeys-lfu"
    assert err(ctx, "OBJECT", "IDLETIME", "i").startswith(
        "ERR An LFU maxmemory policy is selected, idle time not tracked.")
    help_reply = run(ctx, "object", "help")
    assert help_reply.startswith(
        b"*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n")
    assert help_reply.endswith(b"+HELP\r\n+    Print this help.\r\n")


# -- glob --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,text,nocase,expected", [
    (b"*", b"", False, False), (b"", b"", False, True), (b"*", b"x", False, True),
    (b"a*", b"a", False, True), (b"a*b", b"aXXb", False, True), (b"a?", b"a", False, False),
    (b"[abc]", b"b", False, True), (b"[^abc]", b"b", False, False), (b"[a-c]", b"B", True, True),
    (b"[c-a]", b"b", False, True), (b"\\*", b"*", False, True), (b"\\*", b"x", False, False),
    (b"[\\]]", b"]", False, True), (b"[abc", b"c", False, True), (b"[", b"x", False, False),
    (b"[^", b"x", False, True), (b"HeLLo", b"hello", True, True), (b"HeLLo", b"hello", False, False),
    (b"a\\", b"a\\", False, True), (b"*a*a*a*a*a*b", b"a" * 200, False, False),
    (b"*.txt", b"a\nb.txt", False, True),
])
def test_glob_match(pattern: bytes, text: bytes, nocase: bool, expected: bool) -> None:
    assert glob_match(pattern, text, nocase) is expected


def test_pattern_slot() -> None:
    assert pattern_slot(b"{user}:*") == keyslot(b"user")
    assert pattern_slot(b"*{user}") == -1
    assert pattern_slot(b"{}x") == -1
    assert pattern_slot(b"plain") == -1
