"""FUNCTION and FCALL against a real shardd-server (2 workers).

An oracle table compares raw replies with Debian's redis-server 7.0 (FUNCTION LOAD and its
errors, register_function's checks, the load-time sandbox, FCALL/FCALL_RO, LIST, DELETE,
FLUSH, STATS, KILL); Valkey 8's own wording where it differs is tested directly. Then
libraries on every worker, FCALL across workers and with undeclared keys, DUMP/RESTORE
(both ways with redis-server's payloads) and the load timeout.
"""
from __future__ import annotations

import time

import pytest
import redis

from helpers import keys_on, oracle_cases, run_both

RESTORE = [("HELLO", "2"), ("FUNCTION", "FLUSH")]
FLUSH = ("!", "FUNCTION FLUSH")


def lib(name: str, body: str) -> str:
    return f"#!lua name={name}\n{body}"


def load(code: str, *options: str) -> list[str]:
    return ["FUNCTION", "LOAD", *options, code]


SIMPLE = lib("mylib", "redis.register_function('f1', function(keys, args) return {keys, args} end)")
RICH = lib("rich", "redis.register_function{function_name='ro', callback=function(keys) return redis.call('get', keys[1]) end, "
                   "flags={'no-writes'}, description='reads'}")
WRITER = lib("wlib", "redis.register_function('w', function(keys, args) return redis.call('set', keys[1], args[1]) end)")
ERRORS = lib("elib", "redis.register_function{function_name='f_unknown', callback=function() return redis.call('nosuch') end}\n"
                     "redis.register_function('f_boom', function(keys, args)\n  return error('boom')\nend)\n"
                     "redis.register_function('f_table', function() error({err='MY own'}) end)\n"
                     "redis.register_function('f_globals', function() return KEYS end)\n"
                     "redis.register_function('f_reg', function() return redis.register_function end)\n"
                     "redis.register_function('f_write', function(k) return redis.pcall('set', k[1], 'x') end)")


def library_names(client) -> list[bytes]:
    return sorted(dict(zip(entry[::2], entry[1::2]))[b"library_name"] for entry in client.function_list())


def case(*commands) -> list:
    return [FLUSH, *commands]


CASES = [
    case(load("return 1")), case(load(SIMPLE)), case(load(SIMPLE), load(SIMPLE)),
    case(load(SIMPLE), load(SIMPLE, "REPLACE"), load(SIMPLE, "replace"), ["FCALL", "f1", "2", "a", "b", "c"]),
    case(load(SIMPLE), load(lib("other", "redis.register_function('f1', function() return 1 end)"))),
    case(load(SIMPLE), ["FCALL", "F1", "0"], ["FCALL_RO", "f1", "0"], ["FCALL", "nosuch", "0"]),
    case(load(SIMPLE), ["FCALL", "f1", "x"], ["FCALL", "f1", "-1"], ["FCALL", "f1", "3", "a"], ["FCALL", "nosuch", "x"]),
    case(load(RICH), ["SET", "k", "v"], ["FCALL_RO", "ro", "1", "k"], ["FCALL", "ro", "1", "k"],
         ["FUNCTION", "LIST"], ["FUNCTION", "LIST", "WITHCODE"], ["FUNCTION", "LIST", "LIBRARYNAME", "RI*"],
         ["FUNCTION", "LIST", "libraryname", "nomatch"], ["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "rich"]),
    case(load(WRITER), ["FCALL", "w", "1", "k", "v"], ["GET", "k"], ["FCALL_RO", "w", "1", "k", "v"]),
    case(load(lib("ro2", "redis.register_function{function_name='w2', callback=function(k) return redis.call('set', k[1], 'x') end, flags={'no-writes'}}")),
         ["FCALL", "w2", "1", "k"], ["FCALL_RO", "w2", "1", "k"]),
    case(load(lib("fl", "redis.register_function{function_name='g4', callback=function() return 1 end, flags={'no-writes', 'allow-stale', 'ALLOW-OOM'}}")),
         ["FUNCTION", "LIST"], ["FCALL_RO", "g4", "0"]),
    case(load(ERRORS), ["FCALL", "f_boom", "0"], ["FCALL", "f_table", "0"], ["FCALL", "f_globals", "0"],
         ["FCALL", "f_reg", "0"], ["FCALL_RO", "f_write", "1", "k"]),
    case(load(lib("lib3", "local x = string.len('a')"))), case(load(lib("lib3", "return 1"))),
    case(load(lib("lib-3", "return 1"))), case(load(lib("lib3 foo=bar", "return 1"))),
    case(load("#!lua\nredis.register_function('f3', function() return 1 end)")),
    case(load(lib("lib3", "redis.register_function('f3', function() return 1 end"))),
    case(load(lib("lib3", "redis.register_function('f3', function() return 1 end, 1)"))),
    case(load(lib("lib3", "redis.register_function{function_name='f3', callback=function() return 1 end, flags={'bad'}}"))),
    case(load(lib("lib3", "redis.call('ping')"))),
    case(load(lib("lib3", "redis.register_function('f3', function() return 1 end)\nredis.register_function('f3', function() return 2 end)"))),
    case(load(lib("lib7", "redis.register_function{function_name='g5', callback=function() return 1 end, extra=1}"))),
    case(load(lib("lib7", "redis.register_function{callback=function() return 1 end}"))),
    case(load(lib("lib7", "redis.register_function{function_name='g5'}"))),
    case(load(lib("lib7", "redis.register_function{function_name='g5', callback='x'}"))),
    case(load(lib("lib7", "redis.register_function{function_name={}, callback=function() end}"))),
    case(load(lib("lib7", "redis.register_function{function_name='g5', callback=function() end, flags='x'}"))),
    case(load(lib("lib7", "redis.register_function{function_name='g5', callback=function() end, description={}}"))),
    case(load(lib("lib7", "redis.register_function('g5')"))),
    case(load(lib("lib7", "redis.register_function({}, function() end)"))),
    case(load(lib("lib7", "redis.register_function{[1]=2}"))),
    case(load(lib("lib7", "redis.register_function()"))),
    case(load(lib("lib7", "redis.register_function('a', function() end, 'c')"))),
    case(load(lib("lib7", "return redis.call('ping')"))),
    case(load(lib("lib7", "return _G"))), case(load(lib("lib7", "x = 1"))), case(load(lib("lib7", "error('at load')"))),
    case(load(lib("lib7", "error({err='TABLE at load'})"))),
    case(load(lib("lib7", "redis.log(redis.LOG_WARNING, 'loading')\nredis.register_function('g6', function() return redis.setresp(3) end)")),
         ["FCALL", "g6", "0"]),
    case(load(lib("lib8", "redis.register_function('g7', function(k, a) return {k, a, redis.REDIS_VERSION ~= nil, type(redis.call)} end)")),
         ["FCALL", "g7", "2", "a", "b", "c"]),
    case(load(lib("lib9", "local n = 0\nredis.register_function('counter', function() n = n + 1 return n end)")),
         ["FCALL", "counter", "0"], ["FCALL", "counter", "0"]),
    case(load("#!js name=x\n1")), case(load("#!lua name=x")), case(load("#!lua name=x name=y\n")),
    case(["FUNCTION", "LOAD", "foo", SIMPLE]), case(["FUNCTION", "LOAD", "replace"]),
    case(["FUNCTION", "LIST", "foo"]), case(["FUNCTION", "LIST", "libraryname"]), case(["FUNCTION", "LIST", "withcode", "withcode"]),
    case(["FUNCTION", "DELETE", "nolib"]), case(load(SIMPLE), ["FUNCTION", "DELETE", "mylib"], ["FCALL", "f1", "0"], ["FUNCTION", "LIST"]),
    case(load(SIMPLE), ["FUNCTION", "FLUSH"], ["FUNCTION", "LIST"]), case(["FUNCTION", "FLUSH", "sync"]),
    case(["FUNCTION", "FLUSH", "async"]), case(["FUNCTION", "FLUSH", "foo"]), case(["FUNCTION", "FLUSH", "sync", "x"]),
    case(["FUNCTION", "STATS"]), case(load(SIMPLE), load(RICH), ["FUNCTION", "STATS"]), case(["FUNCTION", "KILL"]),
    case(["FUNCTION", "RESTORE", "bad"]), case(["FUNCTION", "RESTORE", "bad", "foo"]), case(["FUNCTION", "RESTORE", "a", "b", "c"]),
    case(["FUNCTION", "NOSUCH"]), case(["FUNCTION"]),
    case(("!", "HELLO 3"), load(RICH), ["FUNCTION", "LIST"], ["FUNCTION", "STATS"], ["FCALL", "ro", "1", "nokey"]),
    case(load(lib("r3", "redis.register_function('r3', function() redis.setresp(3) return redis.call('hgetall', 'nokey') end)")),
         ["FCALL", "r3", "0"]),
]


@oracle_cases(CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


# -- Valkey 8 where it differs from redis 7.0 ---------------------------------------------------

def test_valkey_wording(r):
    r.function_flush()
    with pytest.raises(redis.exceptions.ResponseError) as err:
        r.function_load(lib("lib3", "redis.register_function('f-3', function() return 1 end)"))
    assert str(err.value) == ("Error registering functions: ERR Function names can only contain letters, numbers, "
                              "or underscores(_) and must be at least one character long")
    r.function_load(ERRORS)
    with pytest.raises(redis.exceptions.ResponseError) as err:
        r.fcall("f_unknown", 0)
    assert str(err.value) == "Unknown command called from script script: f_unknown, on @user_function:2."
    help_lines = r.execute_command("FUNCTION", "HELP")
    assert help_lines[0] == b"FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert b"    * Library description" not in help_lines and help_lines[-1] == b"    Prints this help."


def test_server_alias_at_load_and_run(r):
    r.function_flush()
    assert r.function_load(lib("srv", "server.register_function('sv', function(k) return server.call('ping') end)")) == b"srv"
    assert r.fcall("sv", 0) == b"PONG"


# -- every worker, across workers ---------------------------------------------------------------

def test_library_on_every_worker(r):
    r.function_flush()
    r.function_load(WRITER)
    for worker in (0, 1):
        key = keys_on(worker, 1, "fw:")[0]
        assert r.fcall("w", 1, key, "v") == b"OK" and r.get(key) == b"v"
    r.function_delete("wlib")
    for worker in (0, 1):
        with pytest.raises(redis.exceptions.ResponseError, match="Function not found"):
            r.fcall("w", 1, keys_on(worker, 1, "fw:")[0], "v")


def test_fcall_across_workers_and_undeclared_keys(r):
    r.function_flush()
    r.function_load(lib("move", "redis.register_function('move', function(keys, args)\n"
                                "  local n = tonumber(args[1])\n"
                                "  redis.call('decrby', keys[1], n) redis.call('incrby', keys[2], n)\n"
                                "  return {redis.call('get', keys[1]), redis.call('get', keys[2])}\nend)\n"
                                "redis.register_function('wander', function(keys, args)\n"
                                "  return redis.call('incr', args[1]) + redis.call('incr', args[2])\nend)"))
    a, b = keys_on(0, 1, "acct:")[0], keys_on(1, 1, "acct:")[0]
    r.mset({a: 10, b: 0})
    assert r.fcall("move", 2, a, b, 4) == [b"6", b"4"]
    assert r.fcall("wander", 0, a, b) == 12
    assert r.fcall("wander", 1, a, a, b) == 14
    assert r.mget(a, b) == [b"8", b"6"]
    # The library changes on the workers: the cross-shard run follows (the proxy refetches it).
    r.function_load(lib("move", "redis.register_function('move', function(keys) return 'v2' end)\n"
                                "redis.register_function('wander', function(keys, args) return 'v2 ' .. redis.call('get', args[2]) end)"),
                    replace=True)
    assert r.fcall("move", 2, a, b) == b"v2"
    assert r.fcall("wander", 0, a, b) == b"v2 6"
    r.function_delete("move")
    with pytest.raises(redis.exceptions.ResponseError, match="Function not found"):
        r.fcall("move", 2, a, b)


def test_fcall_in_transaction(r):
    r.function_flush()
    r.function_load(WRITER)
    k0, k1 = keys_on(0, 1, "ftx:")[0], keys_on(1, 1, "ftx:")[0]
    with r.pipeline(transaction=True) as p:
        p.fcall("w", 1, k0, "a").fcall("w", 1, k1, "b").mget(k0, k1)
        assert p.execute() == [b"OK", b"OK", [b"a", b"b"]]
    with r.pipeline(transaction=True) as p:
        p.function_load(SIMPLE).fcall("f1", 1, k0, "x")
        assert p.execute() == [b"mylib", [[k0.encode()], [b"x"]]]


# -- DUMP / RESTORE ------------------------------------------------------------------------------

def test_dump_restore_round_trip(r):
    r.function_flush()
    r.function_load(SIMPLE)
    r.function_load(RICH)
    payload = r.function_dump()
    with pytest.raises(redis.exceptions.ResponseError, match="Library mylib already exists|Library rich already exists"):
        r.function_restore(payload)
    assert r.function_restore(payload, "REPLACE")
    r.function_flush()
    assert r.function_restore(payload)
    assert library_names(r) == [b"mylib", b"rich"]
    r.function_delete("rich")
    r.function_load(lib("clash", "redis.register_function('ro', function() return 1 end)"))
    with pytest.raises(redis.exceptions.ResponseError, match="Function ro already exists"):
        r.function_restore(payload, "REPLACE")
    assert library_names(r) == [b"clash", b"mylib"]
    assert r.function_restore(payload, "FLUSH")
    assert library_names(r) == [b"mylib", b"rich"]
    with pytest.raises(redis.exceptions.ResponseError, match="DUMP payload version or checksum are wrong"):
        r.function_restore(payload[:-1] + bytes([payload[-1] ^ 1]))
    for key in (keys_on(0, 1, "rk:")[0], keys_on(1, 1, "rk:")[0]):
        assert r.fcall("f1", 1, key) == [[key.encode()], []]


def test_dump_payloads_shared_with_redis(r, oracle):
    """redis-server's payloads (LZF-compressed code) restore here, and ours there."""
    long_code = lib("biglib", "-- " + "padding " * 40 + "\nredis.register_function('big', function() return 'big' end)")
    for server in (r, oracle):
        server.function_flush()
    oracle.function_load(long_code)
    assert r.function_restore(oracle.function_dump())
    assert r.fcall("big", 0) == b"big"
    r.function_load(SIMPLE)
    oracle.function_flush()
    assert oracle.function_restore(r.function_dump())
    assert library_names(oracle) == [b"biglib", b"mylib"]
    oracle.function_flush()


def test_load_timeout(r):
    r.function_flush()
    start = time.monotonic()
    with pytest.raises(redis.exceptions.ResponseError,
                       match="^Error registering functions: ERR FUNCTION LOAD timeout"):
        r.function_load(lib("slow", "while true do end"))
    assert 0.4 < time.monotonic() - start < 5
    assert r.function_list() == []
