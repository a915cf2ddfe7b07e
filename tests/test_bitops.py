"""Bitmap commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO) against a
real shardd-server (2 workers), mostly through an oracle table that sends the same bytes to
Debian's redis-server 7.0 and compares the raw replies.

Where Valkey 8 differs from redis 7.0 the Valkey behaviour is tested on its own (see
test_valkey_*): BITCOUNT accepts a start without an end, and BITCOUNT/BITPOS check their
arguments before looking the key up (7.0 answers 0/-1 for a missing key whatever follows).

The hash tag {a} is on worker 1, {b} on worker 0.
"""
from __future__ import annotations

import random
import time

import pytest

from helpers import oracle_cases, run_both, worker_of

RESTORE = [("HELLO", "2"), ("CONFIG", "SET", "proto-max-bulk-len", "512mb")]

BITS = b"\xff\xf0\x00"
FOOBAR = "SET {a}k foobar"

BIT_CASES = [
    # SETBIT / GETBIT
    ["SETBIT {a}k 7 1", "GET {a}k", "SETBIT {a}k 7 1", "SETBIT {a}k 7 0", "GET {a}k",
     "GETBIT {a}k 7", "GETBIT {a}k 6", "GETBIT {a}k 100", "GETBIT {a}no 0", "EXISTS {a}k"],
    ["SETBIT {a}k 100 1", "STRLEN {a}k", "GET {a}k", "GETBIT {a}k 100", "SETBIT {a}k 0 0",
     "STRLEN {a}k"],
    ["SETBIT {a}k 15 0", "GET {a}k", "STRLEN {a}k", "EXISTS {a}k"],
    [FOOBAR, "SETBIT {a}k 1 0", "SETBIT {a}k 6 1", "SETBIT {a}k 47 0", "GET {a}k",
     "SETBIT {a}k 48 1", "GET {a}k"],
    ["SET {a}k 12", "GETBIT {a}k 2", "GETBIT {a}k 3", "SETBIT {a}k 7 0", "GET {a}k"],
    ["SET {a}k v EX 100", "SETBIT {a}k 0 1", "TTL {a}k", "SETBIT {a}k 80 1", "TTL {a}k"],
    ["SETBIT {a}k -1 1"], ["SETBIT {a}k x 1"], ["SETBIT {a}k 1 2"], ["SETBIT {a}k 1 -1"],
    ["SETBIT {a}k 1 x"], ["SETBIT {a}k 1 01"], ["SETBIT {a}k 4294967296 1"],
    ["SETBIT {a}k 1.5 1"], ["SETBIT {a}k '' 1"], ["SETBIT {a}k #1 1"], ["SETBIT {a}k -1 x"],
    ["SETBIT {a}k 9223372036854775808 1"], ["SETBIT {a}k 1 ''"], ["SETBIT {a}k 1 ' 1'"],
    ["GETBIT {a}k -1"], ["GETBIT {a}k x"], ["GETBIT {a}k 4294967296"], ["GETBIT {a}k 4294967295"],
    ["SET {a}k v", "GETBIT {a}k 4294967295"],
    # BITCOUNT
    [FOOBAR, "BITCOUNT {a}k", "BITCOUNT {a}k 0 0", "BITCOUNT {a}k 1 1", "BITCOUNT {a}k 1 -2",
     "BITCOUNT {a}k -2 -1", "BITCOUNT {a}k 5 30 BIT", "BITCOUNT {a}k 0 -1 bit",
     "BITCOUNT {a}k 0 -1 BYTE", "BITCOUNT {a}k -3 -5", "BITCOUNT {a}k 100 200",
     "BITCOUNT {a}k -100 -50", "BITCOUNT {a}k 0 -100", "BITCOUNT {a}k 3 1",
     "BITCOUNT {a}k -9223372036854775808 9223372036854775807",
     "BITCOUNT {a}k -9223372036854775808 9223372036854775807 BIT", "BITCOUNT {a}k 9 47 BIT",
     "BITCOUNT {a}k 9 9 BIT", "BITCOUNT {a}k 9 8 BIT", "BITCOUNT {a}k -1 -1 BIT",
     "BITCOUNT {a}k -48 -41 bit", "BITCOUNT {a}k 47 1000 BIT", "BITCOUNT {a}k -5 -10 BIT",
     "BITCOUNT {a}k 1 1 BYTE"],
    [FOOBAR, "BITCOUNT {a}k 0 -1 FOO"], [FOOBAR, "BITCOUNT {a}k a 1"],
    [FOOBAR, "BITCOUNT {a}k 0 b"], [FOOBAR, "BITCOUNT {a}k 0 1 BIT x"],
    [FOOBAR, "BITCOUNT {a}k a b FOO"],
    [FOOBAR, "BITCOUNT {a}k 1.5 2"],
    ["BITCOUNT {a}no", "BITCOUNT {a}no 0 -1", "BITCOUNT {a}no 0 -1 BIT", "BITCOUNT {a}no -1 -5"],
    ["SET {a}k ''", "BITCOUNT {a}k", "BITCOUNT {a}k 0 -1", "BITCOUNT {a}k 0 0 BIT"],
    ["SET {a}k 1234567", "BITCOUNT {a}k", "BITCOUNT {a}k 1 2", "SET {a}k -1", "BITCOUNT {a}k"],
    [["SET", "{a}k", b"\xff" * 33 + b"\x0f" + b"\x00" * 40], "BITCOUNT {a}k",
     "BITCOUNT {a}k 33 33", "BITCOUNT {a}k 30 -10", "BITCOUNT {a}k 250 300 BIT",
     "BITCOUNT {a}k 263 600 BIT"],
    # BITPOS
    [["SET", "{a}k", BITS], "BITPOS {a}k 0", "BITPOS {a}k 1", "BITPOS {a}k 0 0",
     "BITPOS {a}k 0 1", "BITPOS {a}k 0 2", "BITPOS {a}k 0 3", "BITPOS {a}k 0 -1",
     "BITPOS {a}k 0 0 -1", "BITPOS {a}k 0 0 0", "BITPOS {a}k 1 2 2", "BITPOS {a}k 1 1 -1",
     "BITPOS {a}k 0 0 0 BIT", "BITPOS {a}k 0 7 15 BIT", "BITPOS {a}k 0 7 11 BIT",
     "BITPOS {a}k 0 12 15 BIT", "BITPOS {a}k 1 12 15 BIT", "BITPOS {a}k 1 5 17 bit",
     "BITPOS {a}k 0 -12 -1 BIT", "BITPOS {a}k 1 -12 -1 BIT", "BITPOS {a}k 1 3 2",
     "BITPOS {a}k 0 -100 100", "BITPOS {a}k 1 100", "BITPOS {a}k 0 100", "BITPOS {a}k 0 2 1 BYTE",
     "BITPOS {a}k 1 -9223372036854775808 9223372036854775807 BIT"],
    [["SET", "{a}k", b"\xff\xff\xff"], "BITPOS {a}k 0", "BITPOS {a}k 0 1", "BITPOS {a}k 0 0 -1",
     "BITPOS {a}k 0 0 -1 BIT", "BITPOS {a}k 0 3 20 BIT", "BITPOS {a}k 0 -1", "BITPOS {a}k 1"],
    [["SET", "{a}k", b"\x00\x00\x00"], "BITPOS {a}k 1", "BITPOS {a}k 0", "BITPOS {a}k 1 1",
     "BITPOS {a}k 1 0 -1 BIT", "BITPOS {a}k 0 5 5 BIT", "BITPOS {a}k 1 5 5 BIT"],
    [["SET", "{a}k", b"\x00" * 20 + b"\x01" + b"\xff" * 20], "BITPOS {a}k 1", "BITPOS {a}k 0 20",
     "BITPOS {a}k 0 21", "BITPOS {a}k 0 21 -1", "BITPOS {a}k 1 2 -2", "BITPOS {a}k 1 3 166 BIT",
     "BITPOS {a}k 1 3 167 BIT", "BITPOS {a}k 0 167 327 BIT", "BITPOS {a}k 0 166 327 BIT"],
    ["BITPOS {a}no 0", "BITPOS {a}no 1", "BITPOS {a}no 0 5", "BITPOS {a}no 1 5 10",
     "BITPOS {a}no 0 5 10 BIT"],
    ["SET {a}k ''", "BITPOS {a}k 0", "BITPOS {a}k 1", "BITPOS {a}k 0 0 -1"],
    [FOOBAR, "BITPOS {a}k 2"], [FOOBAR, "BITPOS {a}k -1"], [FOOBAR, "BITPOS {a}k x"],
    [FOOBAR, "BITPOS {a}k 1 x"], [FOOBAR, "BITPOS {a}k 1 0 x"], [FOOBAR, "BITPOS {a}k 1 0 1 FOO"],
    [FOOBAR, "BITPOS {a}k 1 0 1 BIT x"], [FOOBAR, "BITPOS {a}k 2 0 1 BIT x"],
    [FOOBAR, "BITPOS {a}k 1 0 b FOO"], ["SET {a}k 255", "BITPOS {a}k 0", "BITPOS {a}k 1 1"],
    # BITOP
    ["MSET {a}1 foobar {a}2 abcdef {a}3 xyz", "BITOP AND {a}d {a}1 {a}2", "GET {a}d",
     "BITOP OR {a}d {a}1 {a}2 {a}3", "GET {a}d", "BITOP XOR {a}d {a}1 {a}2 {a}3", "GET {a}d",
     "BITOP NOT {a}d {a}1", "GET {a}d", "BITOP and {a}d {a}3 {a}1", "GET {a}d",
     "bitop Or {a}d {a}3", "GET {a}d", "BITOP AND {a}d {a}1 {a}no", "GET {a}d"],
    ["MSET {a}1 foobar", "BITOP NOT {a}d {a}1 {a}1"], ["BITOP FOO {a}d {a}1"],
    ["BITOP NOT {a}d"], ["BITOP ANDX {a}d {a}1"],
    ["SET {a}d x", "BITOP AND {a}d {a}no {a}no2", "EXISTS {a}d", "BITOP OR {a}d {a}no"],
    ["SET {a}1 ''", "SET {a}d x", "BITOP NOT {a}d {a}1", "EXISTS {a}d", "BITOP XOR {a}e {a}1"],
    ["MSET {a}1 foobar {a}d x", "EXPIRE {a}d 100", "BITOP OR {a}d {a}1", "TTL {a}d"],
    ["MSET {a}1 foobar", "BITOP XOR {a}1 {a}1 {a}1", "GET {a}1", "BITOP NOT {a}1 {a}1", "GET {a}1"],
    ["SET {a}1 123", "SET {a}2 -9", "BITOP OR {a}d {a}1 {a}2", "GET {a}d"],
    [["SET", "{a}1", b"\x00\xff" * 40], ["SET", "{a}2", b"\x0f" * 100], "BITOP AND {a}d {a}1 {a}2",
     "GET {a}d", "BITOP OR {a}d {a}1 {a}2", "GET {a}d", "BITOP XOR {a}d {a}2 {a}1 {a}2", "GET {a}d",
     "BITOP NOT {a}d {a}2", "GET {a}d"],
    # BITFIELD
    ["BITFIELD {a}k SET i8 0 100 GET i8 0 INCRBY i8 0 100 GET u8 0", "GET {a}k"],
    ["BITFIELD {a}k SET u8 #1 255 GET u8 8 GET u4 #2 GET i4 #3 GET u16 0", "GET {a}k"],
    ["BITFIELD {a}k INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1",
     "BITFIELD {a}k INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1",
     "BITFIELD {a}k INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1",
     "BITFIELD {a}k OVERFLOW FAIL INCRBY u2 102 1 GET u2 102", "GET {a}k"],
    ["BITFIELD {a}k OVERFLOW SAT SET i8 0 200 GET i8 0 SET i8 0 -200 GET i8 0",
     "BITFIELD {a}k OVERFLOW WRAP SET i8 0 200 GET i8 0 OVERFLOW FAIL SET i8 0 200 GET i8 0",
     "BITFIELD {a}k OVERFLOW SAT SET u8 0 -1 GET u8 0 OVERFLOW WRAP SET u8 0 -1 GET u8 0"],
    ["BITFIELD {a}k SET i64 0 9223372036854775807 INCRBY i64 0 1 GET i64 0",
     "BITFIELD {a}k OVERFLOW SAT INCRBY i64 0 9223372036854775807 INCRBY i64 0 -1",
     "BITFIELD {a}k OVERFLOW FAIL INCRBY i64 0 1 GET u63 0 GET u63 1"],
    ["BITFIELD {a}k SET i64 3 -9223372036854775808 OVERFLOW SAT INCRBY i64 3 -1",
     "BITFIELD {a}k OVERFLOW WRAP INCRBY i64 3 -1 GET i64 3", "GET {a}k"],
    ["BITFIELD {a}k OVERFLOW SAT SET i8 0 -9223372036854775808 GET i8 0",
     "BITFIELD {a}k OVERFLOW SAT SET i5 0 9223372036854775807 GET i5 0",
     "BITFIELD {a}k OVERFLOW SAT INCRBY u63 0 9223372036854775807 INCRBY u63 0 1",
     "BITFIELD {a}k OVERFLOW SAT INCRBY u63 0 -9223372036854775808 GET u63 0"],
    ["BITFIELD {a}k SET u63 1 9223372036854775807 GET u63 1 GET i64 0 GET i64 1 GET u1 0",
     "GET {a}k"],
    ["BITFIELD {a}k SET i1 7 -1 GET i1 7 GET u1 7 INCRBY i1 7 1 INCRBY u1 7 1", "GET {a}k"],
    [FOOBAR, "BITFIELD {a}k GET u8 0 GET u4 4 GET i3 100 GET u2 46 GET i16 40 GET u63 #100",
     "BITFIELD {a}k GET u8 4294967288", "BITFIELD_RO {a}k GET u8 0 GET i8 #5", "BITFIELD {a}k",
     "BITFIELD_RO {a}k", "BITFIELD {a}k OVERFLOW SAT", "GET {a}k"],
    ["BITFIELD {a}no GET u8 0", "EXISTS {a}no", "BITFIELD_RO {a}no GET i8 0", "EXISTS {a}no",
     "BITFIELD {a}no OVERFLOW FAIL INCRBY u8 100 -1", "STRLEN {a}no", "GET {a}no"],
    ["SET {a}k v EX 100", "BITFIELD {a}k SET u8 80 1", "TTL {a}k", "STRLEN {a}k"],
    ["BITFIELD {a}k get u8 0 set i8 0 1 incrby i8 0 2 overflow sat", "GET {a}k"],
    [FOOBAR, "BITFIELD {a}k GET u64 0"], [FOOBAR, "BITFIELD {a}k GET i65 0"],
    [FOOBAR, "BITFIELD {a}k GET i0 0"], [FOOBAR, "BITFIELD {a}k GET x8 0"],
    [FOOBAR, "BITFIELD {a}k GET I8 0"], [FOOBAR, "BITFIELD {a}k GET i08 0"],
    [FOOBAR, "BITFIELD {a}k GET '' 0"], [FOOBAR, "BITFIELD {a}k GET i 0"],
    [FOOBAR, "BITFIELD {a}k GET i8 -1"], [FOOBAR, "BITFIELD {a}k GET i8 x"],
    [FOOBAR, "BITFIELD {a}k GET i8 #x"], [FOOBAR, "BITFIELD {a}k GET i8 #-1"],
    [FOOBAR, "BITFIELD {a}k GET i8 4294967296"], [FOOBAR, "BITFIELD {a}k GET i8 #536870912"],
    [FOOBAR, "BITFIELD {a}k GET i8 #536870911"], [FOOBAR, "BITFIELD {a}k GET i8"],
    [FOOBAR, "BITFIELD {a}k FOO"], [FOOBAR, "BITFIELD {a}k OVERFLOW FOO"],
    [FOOBAR, "BITFIELD {a}k OVERFLOW"], [FOOBAR, "BITFIELD {a}k SET i8 0 x"],
    [FOOBAR, "BITFIELD {a}k SET i8 0"], [FOOBAR, "BITFIELD {a}k INCRBY i8 0"],
    [FOOBAR, "BITFIELD {a}k INCRBY i8 0 9223372036854775808"],
    [FOOBAR, "BITFIELD {a}k GET i8 0 SET i8 0 1 GET u64 0", "GET {a}k"],
    [FOOBAR, "BITFIELD {a}k SET i8 0 1 OVERFLOW BAD", "GET {a}k"],
    [FOOBAR, "BITFIELD_RO {a}k SET i8 0 1"], [FOOBAR, "BITFIELD_RO {a}k GET i8 0 INCRBY i8 0 1"],
    [FOOBAR, "BITFIELD_RO {a}k OVERFLOW SAT GET i8 0"], [FOOBAR, "BITFIELD_RO {a}k FOO"],
    [FOOBAR, "BITFIELD_RO {a}k SET i8 0 x"], [FOOBAR, "BITFIELD_RO {a}k GET u64 0"],
    # RESP3: BITFIELD's overflow FAIL is a null
    [("!", "HELLO 3"), "BITFIELD {a}k OVERFLOW FAIL SET u2 0 7 INCRBY u2 0 1 INCRBY u2 0 5",
     "BITFIELD_RO {a}k GET u2 0", "BITCOUNT {a}k", "BITPOS {a}k 1", "SETBIT {a}k 9 1",
     "GETBIT {a}k 9", "BITOP NOT {a}d {a}k", ("!", "HELLO 2")],
    # keys on the other worker
    ["SETBIT {b}k 3 1", "GETBIT {b}k 3", "BITCOUNT {b}k", "BITPOS {b}k 1",
     "BITFIELD {b}k INCRBY u4 0 3", "GET {b}k", "BITOP NOT {b}d {b}k", "GET {b}d"],
    # wrong arity
    ["SETBIT {a}k 1"], ["SETBIT {a}k 1 1 1"], ["GETBIT {a}k"], ["BITCOUNT"], ["BITPOS {a}k"],
    ["BITOP AND {a}d"], ["BITOP"], ["BITFIELD"], ["BITFIELD_RO"],
]


@oracle_cases(BIT_CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_oracle_table_size():
    assert len(BIT_CASES) >= 100


def test_oracle_proto_max_bulk_len(pair):
    """Bit offsets are limited by proto-max-bulk-len (in bytes), whatever its value."""
    run_both(pair, [
        ("!", "CONFIG SET proto-max-bulk-len 1mb"),
        "SETBIT {a}k 8388608 1", "GETBIT {a}k 8388608", "SETBIT {a}k 8388607 1", "STRLEN {a}k",
        "BITFIELD {a}k GET u8 8388608", "BITFIELD {a}k GET u8 8388600", "BITFIELD {a}k GET u8 #1048576",
        "BITFIELD {a}k SET u1 8388607 0", "BITCOUNT {a}k", "BITPOS {a}k 1",
        "BITFIELD_RO {a}k GET i64 #131071",
    ], RESTORE)


def test_oracle_wrongtype(pair):
    s, _ = pair
    if not s.call("RPUSH", "{a}probe", "x").startswith(b":"):
        pytest.skip("lists are not implemented yet")
    run_both(pair, [
        "RPUSH {a}l x", "SETBIT {a}l 0 1", "GETBIT {a}l 0", "BITCOUNT {a}l", "BITCOUNT {a}l 0 -1",
        "BITPOS {a}l 1", "BITPOS {a}l 0 0 -1 BIT", "BITOP AND {a}d {a}l", "BITOP NOT {a}d {a}l",
        "SET {a}s x", "BITOP OR {a}d {a}s {a}l", "EXISTS {a}d", "BITOP OR {a}l {a}s", "TYPE {a}l",
        "BITFIELD {a}l GET u8 0", "BITFIELD {a}l SET u8 0 1", "BITFIELD_RO {a}l GET u8 0",
        "BITFIELD {a}l", "SETBIT {a}l -1 1", "BITFIELD {a}l GET u64 0", "BITFIELD_RO {a}l SET u8 0 1",
    ], RESTORE)


# -- where Valkey 8 differs from redis 7.0 -------------------------------------------------------

def test_valkey_bitcount_start_without_end(r, raw):
    """Valkey 8 made BITCOUNT's end optional like BITPOS's (7.0: syntax error)."""
    r.set("{a}k", "foobar")
    assert r.execute_command("BITCOUNT", "{a}k", 0) == 26
    assert r.execute_command("BITCOUNT", "{a}k", 1) == 22
    assert r.execute_command("BITCOUNT", "{a}k", -1) == 4
    assert r.execute_command("BITCOUNT", "{a}k", -2) == 7
    assert r.execute_command("BITCOUNT", "{a}k", 6) == 0
    assert r.execute_command("BITCOUNT", "{a}k", 1000) == 0
    assert r.execute_command("BITCOUNT", "{a}k", -1000) == 26
    assert r.execute_command("BITCOUNT", "{a}no", 0) == 0
    assert raw.call("BITCOUNT", "{a}k", "x") == b"-ERR value is not an integer or out of range\r\n"
    # the unit is now read before the end (7.0 read the end first)
    assert raw.call("BITCOUNT", "{a}k", "0", "x", "FOO") == b"-ERR syntax error\r\n"
    assert raw.call("BITCOUNT", "{a}k", "0", "x", "BIT") == \
        b"-ERR value is not an integer or out of range\r\n"


def test_valkey_arguments_checked_before_lookup(r, raw):
    """Valkey (like redis 7.2) reports bad BITCOUNT/BITPOS arguments even for a missing key."""
    syntax = b"-ERR syntax error\r\n"
    not_integer = b"-ERR value is not an integer or out of range\r\n"
    assert raw.call("BITCOUNT", "{a}no", "0", "1", "FOO") == syntax
    assert raw.call("BITCOUNT", "{a}no", "0", "1", "BIT", "x") == syntax
    assert raw.call("BITCOUNT", "{a}no", "x", "1") == not_integer
    assert raw.call("BITPOS", "{a}no", "1", "0", "1", "FOO") == syntax
    assert raw.call("BITPOS", "{a}no", "1", "0", "1", "BIT", "x") == syntax
    assert raw.call("BITPOS", "{a}no", "1", "x") == not_integer
    assert raw.call("BITPOS", "{a}no", "2") == b"-ERR The bit argument must be 1 or 0.\r\n"
    assert raw.call("BITPOS", "{a}no", "0", "0", "1", "BIT") == b":0\r\n"
    if _lists_work(r):
        r.rpush("{a}l", "x")
        # the arguments are parsed first, then the key's type is checked
        assert raw.call("BITCOUNT", "{a}l", "0", "1", "FOO") == syntax
        assert raw.call("BITCOUNT", "{a}l", "0", "1").startswith(b"-WRONGTYPE")


def _lists_work(r) -> bool:
    try:
        r.rpush("{a}probe", "x")
    except Exception:
        return False
    r.delete("{a}probe")
    return True


# -- behaviour ---------------------------------------------------------------------------------

def test_setbit_getbit_both_workers(r):
    for key in ("{a}bits", "{b}bits"):
        assert r.setbit(key, 0, 1) == 0
        assert r.setbit(key, 9, 1) == 0
        assert r.setbit(key, 9, 1) == 1
        assert r.get(key) == b"\x80\x40"
        assert r.getbit(key, 9) == 1
        assert r.getbit(key, 10) == 0
        assert r.getbit(key, 10_000) == 0
        assert r.type(key) == b"string"
    assert {worker_of("{a}bits"), worker_of("{b}bits")} == {0, 1}


def test_setbit_errors(r, raw):
    assert raw.call("SETBIT", "{a}k", "-1", "1") == b"-ERR bit offset is not an integer or out of range\r\n"
    assert raw.call("SETBIT", "{a}k", "4294967296", "1") == \
        b"-ERR bit offset is not an integer or out of range\r\n"
    assert raw.call("SETBIT", "{a}k", "0", "2") == b"-ERR bit is not an integer or out of range\r\n"
    assert raw.call("SETBIT", "{a}k", "0", "x") == b"-ERR bit is not an integer or out of range\r\n"
    assert r.exists("{a}k") == 0


def test_bitop_results(r):
    r.mset({"{a}1": b"\x0f\xf0", "{a}2": b"\xff"})
    assert r.bitop("AND", "{a}d", "{a}1", "{a}2") == 2
    assert r.get("{a}d") == b"\x0f\x00"
    assert r.bitop("OR", "{a}d", "{a}1", "{a}2") == 2
    assert r.get("{a}d") == b"\xff\xf0"
    assert r.bitop("XOR", "{a}d", "{a}1", "{a}2") == 2
    assert r.get("{a}d") == b"\xf0\xf0"
    assert r.bitop("NOT", "{a}d", "{a}1") == 2
    assert r.get("{a}d") == b"\xf0\x0f"
    assert r.bitop("AND", "{a}d", "{a}missing") == 0
    assert r.exists("{a}d") == 0


def test_bitfield_reply_shapes(r, raw):
    assert r.bitfield("{a}bf").set("u8", 0, 255).get("u8", 0).incrby("u8", 0, 1).execute() == \
        [0, 255, 0]
    reply = raw.call("BITFIELD", "{a}bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "-1", "GET", "u8", "0")
    assert reply == b"*2\r\n$-1\r\n:0\r\n"
    assert raw.call("HELLO", "3").startswith(b"%")
    reply = raw.call("BITFIELD", "{a}bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "-1", "GET", "u8", "0")
    assert reply == b"*2\r\n_\r\n:0\r\n"
    assert raw.call("BITFIELD_RO", "{a}bf", "SET", "u8", "0", "1") == \
        b"-ERR BITFIELD_RO only supports the GET subcommand\r\n"


def test_large_values_are_fast(pair):
    """A megabyte bitmap: counting, searching and combining take milliseconds, not seconds."""
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 16          # 1 MiB
    zeros = bytes(1 << 20)
    ones = b"\xff" * (1 << 20)
    started = time.monotonic()
    run_both(pair, [
        ["SET", "{a}r", data], ["SET", "{a}z", zeros], ["SET", "{a}o", ones],
        "BITCOUNT {a}r", "BITCOUNT {a}r 1 -2", "BITCOUNT {a}r 13 8388000 BIT", "BITPOS {a}r 1",
        "BITPOS {a}z 1", "BITPOS {a}z 0", "BITPOS {a}o 0", "BITPOS {a}o 0 0 -1",
        "BITPOS {a}o 0 3 8388600 BIT", "BITPOS {a}z 1 3 8388600 BIT", "SETBIT {a}z 8388000 1",
        "BITPOS {a}z 1", "BITPOS {a}z 1 5", "BITOP AND {a}d {a}r {a}o {a}z", "BITCOUNT {a}d",
        "BITOP OR {a}d {a}r {a}z", "BITCOUNT {a}d", "BITOP XOR {a}d {a}r {a}o", "BITCOUNT {a}d",
        "BITOP NOT {a}d {a}r", "BITCOUNT {a}d", "BITFIELD {a}r INCRBY i64 8000000 12345 GET u8 4",
        "BITCOUNT {a}r", "SETBIT {a}r 9000000 1", "STRLEN {a}r", "BITCOUNT {a}r 0 -1 BIT",
    ], RESTORE)
    s, o = pair
    assert s.call("GET", "{a}d") == o.call("GET", "{a}d")
    assert s.call("GET", "{a}r") == o.call("GET", "{a}r")
    assert time.monotonic() - started < 5


# -- differential: random command sequences against the oracle -----------------------------------

def _random_command(rng: random.Random, keys: list[str]) -> list:
    key = rng.choice(keys)
    index = lambda: rng.choice([0, 1, 7, 8, 9, 15, 16, 63, 100, -1, -2, -8, -9, -100,  # noqa: E731
                                rng.randint(-60, 60)])
    kind = rng.randrange(10)
    if kind == 0:
        return ["SETBIT", key, rng.randint(0, 90), rng.choice([0, 1])]
    if kind == 1:
        return ["GETBIT", key, rng.randint(0, 90)]
    if kind == 2:
        args = ["BITCOUNT", key]
        if rng.random() < 0.7:
            args += [index(), index()]
            if rng.random() < 0.5:
                args.append(rng.choice(["BIT", "BYTE"]))
        return args
    if kind == 3:
        args = ["BITPOS", key, rng.choice([0, 1])]
        for _ in range(rng.randint(0, 2)):
            args.append(index())
        if len(args) == 5 and rng.random() < 0.5:
            args.append(rng.choice(["BIT", "BYTE"]))
        return args
    if kind == 4:
        op = rng.choice(["AND", "OR", "XOR", "NOT"])
        sources = [rng.choice(keys)] if op == "NOT" else [rng.choice(keys) for _ in range(rng.randint(1, 3))]
        return ["BITOP", op, rng.choice(keys), *sources]
    if kind in (5, 6):
        args = ["BITFIELD" if kind == 5 else "BITFIELD_RO", key]
        for _ in range(rng.randint(1, 4)):
            bits = rng.randint(1, 64)
            kind_of = "i" if bits == 64 or rng.random() < 0.5 else "u"
            offset = str(rng.randint(0, 120)) if rng.random() < 0.8 else "#%d" % rng.randint(0, 4)
            op = rng.choice(["GET", "SET", "INCRBY", "OVERFLOW"] if kind == 5 else ["GET"])
            if op == "OVERFLOW":
                args += ["OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"])]
            elif op == "GET":
                args += ["GET", f"{kind_of}{bits}", offset]
            else:
                value = rng.choice([0, 1, -1, 2 ** (bits - 1), -(2 ** (bits - 1)) - 1, 2 ** 63 - 1,
                                    -(2 ** 63), rng.randint(-(2 ** 63), 2 ** 63 - 1)])
                args += [op, f"{kind_of}{bits}", offset, min(max(value, -(2 ** 63)), 2 ** 63 - 1)]
        return args
    if kind == 7:
        pattern = rng.choice([b"\x00", b"\xff", b"\x0f", b"\x80"])
        return ["SET", key, pattern * rng.randint(0, 12) + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3)))]
    if kind == 8:
        return ["GET", key]
    return ["APPEND", key, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4)))]


def test_random_sequences_match_oracle(pair):
    rng = random.Random(20240901)
    keys = ["{a}x", "{a}y", "{a}z"]
    commands = [_random_command(rng, keys) for _ in range(1500)]
    run_both(pair, commands, RESTORE)
    s, o = pair
    for key in keys:
        assert s.call("GET", key) == o.call("GET", key)


# -- keys on both workers ----------------------------------------------------------------------

def test_bitop_cross_shard(pair):
    run_both(pair, [
        "MSET {a}1 foobar {b}2 abcdef", "BITOP AND {a}d {a}1 {b}2", "GET {a}d",
        "BITOP OR {b}d {a}1 {b}2 {a}no", "GET {b}d", "BITOP XOR {b}d {a}1", "GET {b}d",
        "BITOP NOT {a}d {b}2", "GET {a}d", "BITOP AND {b}d {a}no {b}no", "EXISTS {b}d",
        "SET {a}e x", "BITOP OR {a}e {b}no", "EXISTS {a}e",
    ], RESTORE)


def test_bitop_cross_shard_wrongtype(pair):
    s, _ = pair
    if not s.call("RPUSH", "{b}probe", "x").startswith(b":"):
        pytest.skip("lists are not implemented yet")
    run_both(pair, ["SET {a}1 foo", "RPUSH {b}l x", "BITOP OR {a}d {a}1 {b}l", "EXISTS {a}d",
                    "BITOP NOT {b}l {a}1", "TYPE {b}l"], RESTORE)
