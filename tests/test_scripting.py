"""EVAL/EVALSHA/EVAL_RO/SCRIPT against a real shardd-server (2 workers).

1. an oracle table: the same scripts sent to Debian's redis-server 7.0 (Lua 5.1 too), raw
   replies compared byte for byte: conversions both ways in RESP2 and RESP3, errors, the
   sandbox, cjson/cmsgpack/bit/struct, shebang flags;
2. where Valkey 8 differs from 7.0 (its error wording, d2string doubles, the `server` alias,
   version fields), the Valkey behaviour, tested directly;
3. scripts across workers: declared keys on two workers, keys a script did not declare
   (the worker puts its writes back and the proxy runs it under the coordinator), EVALSHA on
   any worker, transactions, and the balance invariant under concurrent EVAL transfers and
   readers;
4. runaway scripts: BUSY for other clients, SCRIPT KILL, UNKILLABLE after a write;
5. clients: redis-py's Lock and Script (EVALSHA, NOSCRIPT then SCRIPT LOAD).
"""
from __future__ import annotations

import functools
import hashlib
import math
import random
import socket
import threading
import time

import pytest
import redis

from helpers import RawConnection, encode, keys_on, oracle_cases, run_both, run_threads, worker_of
from server import Server, recv_until

A = "{a}"    # worker 1
B = "{b}"    # worker 0
RESTORE = [("HELLO", "2")]


def sha(body: str | bytes) -> str:
    return hashlib.sha1(body.encode() if isinstance(body, str) else body).hexdigest()


def test_tags_cover_both_workers():
    assert worker_of(A + "x") == 1 and worker_of(B + "x") == 0


# -- 1. the oracle -----------------------------------------------------------------------------

def case(*scripts, prefix=()) -> list:
    """Scripts as EVAL commands with 0 keys (strings) or full commands (lists/tuples)."""
    out = list(prefix)
    for s in scripts:
        out.append(["EVAL", s, "0"] if isinstance(s, str) else s)
    return out


CONVERSIONS = [
    case("return 1"), case("return 'x'"), case("return 3.99"), case("return -3.99"),
    case("return true"), case("return false"), case("return nil"), case("return"),
    case("return {1,2,3,'ciao',{1,2}}"), case("return {1,2,nil,4}"), case("return {}"),
    case("return {ok='fine'}"), case("return {err='MY bad'}"), case("return {err='bad'}"),
    case("return {ok='a\\r\\nb'}"), case("return {err='line1\\nline2'}"), case("return {1e20, -1e20}"),
    case("return 9007199254740993"), case("return {double=3.5}"), case("return {double=-2}"),
    case("return {map={a=1}}"), case("return {set={a=true}}"), case("return {big_number='123'}"),
    case("return {verbatim_string={format='txt', string='hey'}}"), case("return {err=1}"),
    case("return {ok=2}"), case("return {double='x'}"), case("return {1, {err='inner'}, {ok='in'}}"),
    case("return function() end"), case("return coroutine.create(function() end)"),
    case("return redis.status_reply('OK')"), case("return redis.error_reply('My error')"),
    case("return redis.error_reply('-MY thing')"), case("return redis.error_reply('MYthing')"),
    case("return redis.error_reply('-MY thing\\r\\n')"), case("return redis.status_reply()"),
    case("return redis.error_reply(1)"), case("return redis.status_reply('a', 'b')"),
    case("local e = redis.error_reply('MYthing') return e.err"),
    case("return redis.call('ping')"), case("return redis.call('ping', 'hi')"),
    case("return redis.call('echo', 'x')"),
    case("redis.call('set','x','1') return redis.call('get','x')"),
    case("return type(redis.call('get','nokey'))"), case("return redis.call('get','nokey')"),
    case("redis.call('rpush','l','a','b') return redis.call('lrange','l',0,-1)"),
    case("redis.call('set','x',1) return redis.call('incr','x')"),
    case("redis.call('set','x','a') return redis.call('incr','x')"),
    case("redis.call('set','x','a') return redis.pcall('incr','x')"),
    case("redis.call('set','x','a') local e = redis.pcall('lpush','x','a') return e"),
    case("redis.call('set','x','a') local e = redis.pcall('lpush','x','a') return {e.err, tostring(e.ignore_error_stats_update)}"),
    case("redis.call('hset','h','a','1','b','2') local r = redis.call('hgetall','h') table.sort(r) return r"),
    case("redis.call('zadd','z','1.5','a','2','b') return redis.call('zrange','z',0,-1,'withscores')"),
    case("redis.call('zadd','z','1.5','a') return redis.call('zscore','z','a')"),
    case("redis.call('set','x','a') return redis.call('type','x')"),
    case("return redis.call('exists','x','y')"), case("return redis.call('del','x','y')"),
    case("redis.call('set','n',5) return redis.call('get','n')"),
    case("redis.call('set','n',3.0) return redis.call('get','n')"),
    case("redis.call('set','n',-12345678901) return redis.call('get','n')"),
    case("redis.call('set','n',1e20) return redis.call('get','n')"),
    case("redis.call('set','n',1/0) return redis.call('get','n')"),
    case("redis.call('set','n',1.5) return redis.call('get','n')"),
    case("return redis.call('set','x','y','nx')"), case("return redis.call('set','x','y','xx')"),
    case("return {redis.call('select', 1).ok, redis.call('set','x','one').ok, redis.call('get','x')}"),
    [["EVAL", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}", "2", "k1", "k2", "a1", "a2"]],
    [["EVAL", "return ARGV", "0", "a", "", "c"]], [["EVAL", "return KEYS", "3", "x", "y", "z"]],
]

RESP3 = [
    case(("!", "HELLO 3"), "return {true, false}", "return nil", "return {double=1.5}",
         "return {map={a=1}}", "return {set={a=true}}", "return {big_number='123'}",
         "return {verbatim_string={format='txt', string='x'}}", "return {double=1/0}",
         "redis.setresp(3) return {true, false}", "return redis.call('get','nokey')",
         "redis.setresp(3) return redis.call('get','nokey')",
         "redis.setresp(3) return {redis.call('get','nokey'), 1, 2}",
         "redis.setresp(3) return redis.call('smembers','nokey')",
         "redis.setresp(3) redis.call('hset','h','a','1') return redis.call('hgetall','h')",
         "redis.setresp(3) redis.call('hset','h','a','1') local r = redis.call('hgetall','h') return {type(r), type(r.map), r.map.a}",
         "redis.setresp(3) redis.call('zadd','z','1.5','a') return redis.call('zscore','z','a')",
         "redis.setresp(3) redis.call('zadd','z','1.5','a') local r = redis.call('zscore','z','a') return {type(r), r.double}",
         "redis.setresp(3) redis.call('sadd','s','m') return redis.call('smembers','s')",
         "redis.setresp(3) return redis.call('ping')", "return {err='e3'}"),
    case("redis.setresp(3) redis.call('zadd','z','1.5','a') return {true, false, redis.call('zscore','z','a')}"),
    case("redis.setresp(3) redis.call('hset','h','a','1') return redis.call('hgetall','h')"),
    case("redis.setresp(2) return redis.call('get','nokey')"),
]

ERRORS = [
    case("return a"), case("a = 5"), case("error('boom')"), case("error({err='MY thing'})"),
    case("error()"), case("error(nil)"), case("error(12)"), case("error(true)"),
    case("return 1 +"), case("retur 1"), case("return redis.call('subscribe','x')"),
    case("return redis.call('eval','return 1','0')"), case("return redis.call('multi')"),
    case("local x = nil; return x.y"), case("return #nil"), case("return 1 + {}"),
    case("return redis.setresp(4)"), case("return redis.setresp()"), case("return redis.sha1hex('')"),
    case("return redis.sha1hex('abc')"), case("return redis.sha1hex()"), case("return redis.sha1hex(1)"),
    case("return redis.log(1)"), case("return redis.log('a', 'b')"), case("return redis.log(9, 'b')"),
    case("redis.log(redis.LOG_WARNING, 'a script says', 1, {}) return 1"),
    case("return redis.set_repl(99)"), case("return redis.set_repl(redis.REPL_ALL)"),
    case("return redis.replicate_commands()"), case("return redis.REPL_ALL"),
    case("return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA}"),
    case("return redis.breakpoint()"), case("return redis.debug('x')"),
    case("return redis.acl_check_cmd('set','x','y')"), case("return redis.acl_check_cmd('nosuch')"),
    case("return {pcall(error, {err='x'})}"), case("local a,b,c = pcall(error, {foo=1}) return {tostring(a), type(b), type(c)}"),
    case("return {pcall(function() error('inner') end)}"), case("return {pcall(function() return 1, 2 end)}"),
    case("return select('#', pcall(error, {foo=1}))"),
    case("return {xpcall(function() error('x') end, function(e) return 'handled: ' .. e end)}"),
    case("return redis.pcall('set', 'x', 'y', 'bad')"), case("return redis.call('set', 'x', 'y', 'bad')"),
    case("local function f() return redis.call('hget', 'x', 'y') end return f()"),
    case("local function f() error('deep') end local function g() f() end g()"),
    case("local function f() error('deep', 2) end f()"),
    case("return tostring(nil) .. 'x'"), case("return #ARGV"),
    case("#!lua flags=no-writes\nreturn redis.call('set','x',1)"),
    case("#!lua flags=no-writes,allow-oom\nreturn redis.call('get','x')"),
    case("#!lua flags=foo\nreturn 1"), case("#!luax\nreturn 1"), case("#!lua name=x\nreturn 1"),
    case("#!lua"), case("#!lua\nreturn 1"), case("#!lua flags=\nreturn 2"),
    case("#!lua flags=no-writes\nreturn error('line two')"),
    [["EVAL_RO", "return redis.call('set','x',1)", "0"]],
    [["EVAL_RO", "return redis.call('get','x')", "0"]],
    [["EVAL_RO", "#!lua\nreturn redis.call('get','x')", "0"]],
    [["EVAL_RO", "#!lua flags=no-writes\nreturn redis.call('get','x')", "0"]],
    [["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"]], [["EVALSHA", "ffff", "0"]],
    [["EVALSHA_RO", "ffffffffffffffffffffffffffffffffffffffff", "0"]],
    [["EVAL", "return 1", "-1"]], [["EVAL", "return 1", "2", "a"]], [["EVAL", "return 1", "x"]],
    [["EVAL", "return 1"]], [["EVALSHA", "x"]],
    [["SCRIPT", "LOAD", "return 1 +"]], [["SCRIPT", "EXISTS", "a", "b"]], [["SCRIPT", "FLUSH", "foo"]],
    [["SCRIPT", "FLUSH", "sync", "x"]], [["SCRIPT", "NOSUCH"]], [["SCRIPT", "KILL"]], [["SCRIPT", "HELP"]],
    [["SCRIPT", "LOAD", "return 'loaded'"], ["SCRIPT", "EXISTS", sha("return 'loaded'"), "nope"],
     ["EVALSHA", sha("return 'loaded'"), "0"], ["EVALSHA", sha("return 'loaded'").upper(), "0"]],
    [["EVAL", "return 'evaled'", "0"], ["EVALSHA", sha("return 'evaled'"), "0"]],
]

SANDBOX = [
    case("return os"), case("return io"), case("return debug"), case("return require"),
    case("return loadfile"), case("return dofile"), case("return print"), case("return module"),
    case("return setfenv"), case("return getfenv"), case("return newproxy"), case("return package"),
    case("return _G.x"), case("return rawget(_G, 'os')"), case("return rawget(_G, 'string') == string"),
    case("return getmetatable('').__index == string"), case("getmetatable('').__index = nil"),
    case("getmetatable('').__index.upper = nil"), case("string.upper = nil"), case("string.foo = 1"),
    case("return rawset(_G, 'a', 1)"), case("return rawset(string, 'a', 1)"), case("table.insert(_G, 1)"),
    case("return setmetatable(_G, nil)"), case("return setmetatable(string, {})"),
    case("local t = getmetatable(_G) return type(t)"),
    case("local t = getmetatable(_G) return {type(t.__index), type(t.__newindex)}"),
    case("getmetatable(_G).__index = nil"), case("_G.foo = 1"), case("_G['KEYS'] = 1"),
    case("KEYS = {}"), case("redis = nil"), case("redis.call = nil"), case("cjson.encode = nil"),
    case("math.random = nil"), case("bit.band = nil"), case("coroutine.create = nil"),
    case("return redis.foo"), case("return string.foo"),
    case("local f, e = loadstring(string.dump(function() return 1 end)) return e"),
    case("return loadstring(string.dump(function() return 1 end))"),
    case("local f, e = loadstring('x = ') return e"), case("return loadstring('return 1 + 1')()"),
    case("return loadstring('a = 5')()"), case("return loadstring('return os')()"),
    case("return loadstring('return _G')() == _G"),
    case("local co = coroutine.wrap(function() return os end) return co()"),
    case("local co = coroutine.create(function() x = 1 end) return {coroutine.resume(co)}"),
    case("return coroutine.wrap(function() return 1 end)()"),
    case("return type(string.dump)"), case("return _VERSION"), case("return type(gcinfo())"),
    case("return type(collectgarbage('count'))"),
    case("local n = 0 for k, v in pairs(string) do n = n + 1 end return n"),
    case("local n = 0 for k, v in pairs(math) do n = n + 1 end return n"),
    case("local n = 0 for k, v in pairs(table) do n = n + 1 end return n"),
    case("local t = {} for k in pairs(string) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(math) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(table) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(coroutine) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(cjson) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(cmsgpack) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(bit) do t[#t+1] = k end table.sort(t) return t"),
    case("local t = {} for k in pairs(struct) do t[#t+1] = k end table.sort(t) return t"),
    case("return next(_G) ~= nil"), case("return rawequal(_G, _G)"), case("return rawget(1, 2)"),
    case("return rawget({})"), case("return rawset({}, 1)"), case("return rawset({}, nil, 1)"), case("return next(1)"),
    case("return pairs(nil)"), case("return setmetatable(1, {})"), case("return setmetatable({}, 1)"),
    case("return getmetatable()"), case("return pcall()"), case("table.insert({}, 1, 2, 3)"),
    case("table.insert({}, 'x', 2)"), case("return table.insert(1, 2)"),
    case("local t = setmetatable({}, {__metatable = 'no'}) return setmetatable(t, {})"),
    case("local t = setmetatable({}, {__metatable = 'no'}) return getmetatable(t)"),
    case("local t = {} for k, v in pairs({a=1}) do t[#t+1] = k .. v end return t"),
    case("return ('x'):upper() .. string.rep('ab', 3) .. string.format('%5.2f', 3.14159)"),
    case("return {string.find('hello world', 'o w')}"), case("return string.gsub('hello', 'l', 'L')"),
    case("return {math.floor(3.7), math.max(1, 5, 3), math.fmod(7, 3), math.huge > 1}"),
    case("local t = {3, 1, 2} table.sort(t) return t"), case("return table.concat({1, 2, 3}, ',')"),
    case("return {unpack({1, 2, 3})}"), case("return select(2, 'a', 'b', 'c')"),
    case("return tonumber('0x10') + tonumber('  12  ') + tonumber('1e2')"),
    case("return tostring(1e15) .. ' ' .. tostring(0.1) .. ' ' .. tostring(1/3)"),
]

LIBS = [
    case("return cjson.encode({1,2,3,{a=1}})"), case("return cjson.encode({[1]=1,[3]=3})"),
    case("return cjson.encode({[1]=1,[20]=3})"), case("return cjson.encode({})"),
    case("return cjson.encode(3.14159265358979)"), case("return cjson.encode(1e15)"),
    case("return cjson.encode(1/3)"), case("return cjson.encode(-0.5)"), case("return cjson.encode(100)"),
    case("return cjson.encode('a/b\"c\\\\d\\n\\1\\127\\t\\b\\f\\r')"), case("return cjson.encode(function() end)"),
    case("return cjson.encode(1/0)"), case("return cjson.encode(0/0)"), case("return cjson.encode(true)"),
    case("return cjson.encode(nil)"), case("return cjson.encode(cjson.null)"), case("return cjson.encode()"),
    case("return cjson.encode({[true]=1})"), case("return cjson.encode({[0]=1})"),
    case("return cjson.encode({[1.5]='x'})"), case("return cjson.encode({a={b={c={}}}})"),
    case("local t = {} t[1] = t return cjson.encode(t)"),
    case("return cjson.encode({'\\0'})"), case("return cjson.encode({1, nil, 3})"),
    case("return cjson.encode({[1]=1, [2]=2, [4]=4})"), case("return cjson.encode(cjson.decode('[1,2.5,\"x\",null,true,false]'))"),
    case("return cjson.decode('[1,2,[3,[4]],{\"a\":null}]')[3][2][1]"), case("return cjson.decode('[1,2')"),
    case("return cjson.decode('{\"a\" 1}')"), case("return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"')"),
    case("return cjson.decode('0x10')"), case("return cjson.decode(' [ 1e2 , -0.5 ] ')[1]"),
    case("return cjson.decode(' [ 1e2 , -0.5 ] ')[2] * 10"), case("return cjson.decode('')"),
    case("return cjson.decode('nul')"), case("return cjson.decode('\"\\\\q\"')"),
    case("return cjson.decode('\"abc')"), case("return cjson.decode('[1,]')"), case("return cjson.decode('{,}')"),
    case("return cjson.decode('{\"a\":1,}')"), case("return cjson.decode('[1] x')"),
    case("return cjson.decode('\"\\\\ud800\"')"), case("return cjson.decode('\"\\\\udc00\"')"),
    case("return cjson.decode('\"\\\\u12\"')"), case("return cjson.decode('[' .. string.rep('[', 1000) .. string.rep(']', 1001))"),
    case("return cjson.decode('{\"a\":{\"b\":[1,{\"c\":\"d\"}]}}').a.b[2].c"), case("return cjson.decode('true')"),
    case("return cjson.decode('false')"), case("return type(cjson.decode('null'))"),
    case("return cjson.decode('null') == cjson.null"), case("return cjson.decode('-0')"),
    case("return cjson.decode('1.5e300') > 1"), case("return tostring(cjson.decode('1e400'))"),
    case("return cjson.decode('-Infinity') < 0"), case("return cjson.decode('+1')"), case("return cjson.decode('007')"),
    case("return cjson.decode('inf') > 1"), case("return tostring(cjson.decode('nan'))"), case("return cjson.decode(5)"),
    case("return cjson.decode({})"), case("return cjson.decode('a', 'b')"), case("return cjson.decode('\"a\\\\/b\"')"),
    case("return cjson.decode('[\"\\\\b\\\\f\\\\n\\\\r\\\\t\"]')[1]"),
    case("return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision()}"),
    case("return {cjson.encode_sparse_array()}"), case("return cjson.encode_invalid_numbers()"),
    case("return cjson.decode_invalid_numbers()"), case("return cjson.encode_keep_buffer()"),
    case("return cjson._NAME .. ' ' .. cjson._VERSION"), case("local c = cjson.new() return c.encode({1})"),
    case("return cmsgpack.pack({1,2,3}, 'a', 1.5, 0.1, -1, -200, 70000, true, nil)"),
    case("return cmsgpack.pack(0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649)"),
    case("return cmsgpack.pack(2^53, -2^53, 2^63, -2^63, 1e300, 0/0 ~= 0/0, 1/0, -1/0, -0.0)"),
    case("return cmsgpack.pack(string.rep('x', 31), string.rep('y', 32), string.rep('z', 300))"),
    case("return cmsgpack.pack({a=1}, {[1]=1,[3]=3}, {}, {{{}}})"),
    case("local t = {} t[1] = t return cmsgpack.pack(t)"),
    case("return {cmsgpack.unpack(cmsgpack.pack({a=1}, 3, 'x'))}"),
    case("local t = cmsgpack.unpack(cmsgpack.pack({1, {2, {3}}, 'x'})) return t"),
    case("return cmsgpack.unpack(cmsgpack.pack(-2^40))"), case("return cmsgpack.unpack(cmsgpack.pack(2^40 + 5))"),
    case("return tostring(cmsgpack.unpack(cmsgpack.pack(0.1)))"), case("return tostring(cmsgpack.unpack(cmsgpack.pack(1.5)))"),
    case("return cmsgpack.unpack('\\193')"), case("return cmsgpack.unpack('\\205')"), case("return cmsgpack.pack()"),
    case("return cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')"),
    case("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}"), case("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1)}"),
    case("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}"), case("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}"),
    case("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0, 1)}"), case("return cmsgpack.unpack_one('x', -1)"),
    case("return cmsgpack.unpack_one('x', 5)"), case("return cmsgpack.unpack('')"), case("return cmsgpack.unpack({})"),
    case("return cmsgpack.unpack('\\129\\192\\1')"), case("return cmsgpack.unpack('\\146\\1')"),
    case("return cmsgpack._VERSION .. cmsgpack._NAME"),
    case("return {bit.band(0xff, 0x0f), bit.bor(1,2), bit.bxor(3,1), bit.bnot(0), bit.lshift(1,31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.tohex(255), bit.tohex(-1, -4), bit.tobit(2^32+5), bit.rol(1, 33), bit.bswap(0x12345678)}"),
    case("return {bit.tobit(0.5), bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-0.5), bit.tobit(-1.5), bit.tobit(2^52), bit.tobit(2^53 + 2), bit.tobit(-2^31), bit.tobit(2^31), bit.tobit('12'), bit.tobit(1e300)}"),
    case("return {bit.band(-1, -1, 0xf0f0, 0xff00), bit.bor(1, 2, 4, 8), bit.bxor(1, 3, 7), bit.band(5)}"),
    case("return {bit.lshift(1, 32), bit.lshift(1, -1), bit.rshift(0x80000000, 31), bit.arshift(0x80000000, 31), bit.ror(1, 1), bit.rol(0x80000000, 1)}"),
    case("return {bit.tohex(0x1234, 2), bit.tohex(0x1234, 0), bit.tohex(-1, 12), bit.tohex(255, -2)}"),
    case("return bit.band()"), case("return bit.band('x')"), case("return bit.bor(1, nil)"), case("return bit.tohex(1, nil)"),
    case("return {struct.pack('>i2h', 1, -2), struct.unpack('<I', struct.pack('<I', 4000000000))}"),
    case("return struct.pack('q', 1)"), case("return struct.size('!4bi')"), case("return struct.unpack('c0', 'abc')"),
    case("return {struct.unpack('>bBhHlLi3I5', struct.pack('>bBhHlLi3I5', -1, 255, -300, 65000, -5, 7, -70000, 123456))}"),
    case("return struct.pack('<d>f', 1.5, -0.25)"), case("return struct.pack('<d>f', -0.0, -0.0)"), case("return {struct.unpack('<d>f', struct.pack('<d>f', 1.5, -0.25))}"),
    case("return struct.pack('s c3 x', 'ab', 'xyz')"), case("return {struct.unpack('s c3 x', struct.pack('s c3 x', 'ab', 'xyz'))}"),
    case("return {struct.unpack('Bc0', struct.pack('Bc0', 3, 'abc'))}"), case("return struct.pack('c5', 'ab')"),
    case("return struct.pack('!4 b i', 1, 2)"), case("return struct.size('!8 b d')"), case("return struct.pack('!3 b i', 1, 2)"),
    case("return struct.size('s')"), case("return struct.size('c0')"), case("return struct.pack('i40', 1)"),
    case("return struct.unpack('i', 'ab')"), case("return struct.unpack('s', 'abc')"), case("return struct.unpack('b', 'a', 5)"),
    case("return {struct.unpack('b', 'ab', 2)}"), case("return struct.pack('>I', -1)"), case("return struct.pack('b')"),
    case("return struct.pack('i99999999999', 1)"),
]

ORACLE = CONVERSIONS + RESP3 + ERRORS + SANDBOX + LIBS


@pytest.mark.parametrize("body, message", [
    ("return os.execute('true')", "Script attempted to access nonexistent global variable 'os'"),
    ("return io.open('/etc/passwd')", "Script attempted to access nonexistent global variable 'io'"),
    ("return loadfile('/etc/passwd')", "Script attempted to access nonexistent global variable 'loadfile'"),
    ("return dofile('/etc/passwd')", "Script attempted to access nonexistent global variable 'dofile'"),
    ("return require('os')", "Script attempted to access nonexistent global variable 'require'"),
    ("return debug.getregistry()", "Script attempted to access nonexistent global variable 'debug'"),
    ("return setfenv(1, {})", "Script attempted to access nonexistent global variable 'setfenv'"),
    ("return getfenv(0)", "Script attempted to access nonexistent global variable 'getfenv'"),
    ("return newproxy(true)", "Script attempted to access nonexistent global variable 'newproxy'"),
    ("getmetatable('').__index = {}", "Attempt to modify a readonly table"),
    ("getmetatable('').__index.rep = nil", "Attempt to modify a readonly table"),
    ("evil = 1", "Attempt to modify a readonly table"),
    ("_G.evil = 1", "Attempt to modify a readonly table"),
    ("string.format = nil", "Attempt to modify a readonly table"),
    ("redis.call = function() end", "Attempt to modify a readonly table"),
    ("return loadstring('evil = 1')()", "Attempt to modify a readonly table"),
])
def test_sandbox_escapes_fail(raw, body, message):
    reply = raw.call("EVAL", body, "0")
    assert reply.startswith(b"-ERR ") and message.encode() in reply, reply
    # Nothing leaked into the next script.
    assert raw.call("EVAL", "return {tostring(rawget(_G, 'evil')), type(string.format), type(redis.call)}", "0") == \
        b"*3\r\n$3\r\nnil\r\n$8\r\nfunction\r\n$8\r\nfunction\r\n"


def test_bytecode_is_refused(raw):
    body = "local f, e = loadstring(string.dump(function() return 1 end)) return {tostring(f), e}"
    assert raw.call("EVAL", body, "0") == \
        b"*2\r\n$3\r\nnil\r\n$53\r\n[string \"\x1bLuaQ\"]:1: unexpected symbol near 'char(27)'\r\n"
    assert raw.call("EVAL", "\x1bLuaQ", "0") == \
        b"-ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'\r\n"


@oracle_cases(ORACLE)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_reply_nesting_limit(server, oracle_port):
    """A table holding itself: ~8000 nested arrays, then Valkey's Lua stack limit error."""
    replies = []
    for port in (server.port, oracle_port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(encode("EVAL", "local t = {} t[1] = t return {1, t}", "0"))
            replies.append(recv_until(s, b"-ERR reached lua stack limit\r\n"))
    assert replies[0] == replies[1] and replies[0].count(b"*1\r\n") > 7900


def test_oracle_table_size():
    assert len(ORACLE) >= 300


ACROSS = [c for c in CONVERSIONS + ERRORS[:40]
          if all(isinstance(x, list) and x[0] == "EVAL" and x[2] == "0" and not x[1].startswith("#!")
                 and "select" not in x[1] for x in c)]


@oracle_cases(ACROSS)
def test_oracle_scripts_moved_to_the_coordinator(pair, case):
    """The same scripts when they wander to another worker first: they run in the proxy on
    fetched keys (the first command touches a key of worker 1, the script was sent to 0)."""
    touch = "redis.call('get', '{a}moved') "
    moved = [["EVAL", touch + c[1], "0"] for c in case]
    run_both(pair, moved, RESTORE)


# -- 2. Valkey 8 where it differs from redis 7.0 --------------------------------------------------

def script_error(body: str, message: str, line: int = 1) -> bytes:
    return f"-{message} script: {sha(body)}, on @user_script:{line}.\r\n".encode()


@pytest.mark.parametrize("body, message", [
    ("return redis.call('nosuch')", "ERR Unknown command called from script"),
    ("return redis.call('config', 'nosuch')", "ERR Unknown command called from script"),
    ("return redis.call('get')", "ERR Wrong number of args calling command from script"),
    ("return redis.call()", "ERR Please specify at least one argument for this call"),
    ("return redis.call('get', {})", "ERR Command arguments must be strings or integers"),
    ("return redis.call('set', 'x', true)", "ERR Command arguments must be strings or integers"),
    ("return redis.call('set', 'x', nil)", "ERR Command arguments must be strings or integers"),
    ("return redis.call('subscribe', 'x')", "ERR This Redis command is not allowed from script"),
    ("return redis.set_repl()", "ERR redis.set_repl() requires one argument."),
])
def test_valkey_script_errors(raw, body, message):
    assert raw.call("EVAL", body, "0") == script_error(body, message)


def test_error_table_without_err(raw):
    """redis 7.0 crashes here; Valkey reports an unknown error."""
    body = "error({1})"
    assert raw.call("EVAL", body, "0") == script_error(body, "ERR unknown error")


def test_blocking_commands_do_not_block_in_scripts(raw):
    """Valkey 7.2+ lets scripts call BLPOP & co. (7.0 refused them): they never block."""
    assert raw.call("EVAL", "return redis.call('blpop', 'nolist', 0)", "0") == b"$-1\r\n"
    assert raw.call("EVAL", "return redis.call('brpop', '{a}nolist', 1)", "0") == b"$-1\r\n"
    assert raw.call("EVAL", "redis.call('rpush', KEYS[1], 'v') return redis.call('blpop', KEYS[1], 0)", "1",
                    "{b}l") == b"*2\r\n$4\r\n{b}l\r\n$1\r\nv\r\n"


def test_valkey_pcall_error_tables(raw):
    assert raw.call("EVAL", "return redis.pcall('nosuch')", "0") == b"-ERR Unknown command called from script\r\n"
    assert raw.call("EVAL", "local e = redis.pcall('nosuch') return {e.err, tostring(e.ignore_error_stats_update)}",
                    "0") == b"*2\r\n$38\r\nERR Unknown command called from script\r\n$4\r\ntrue\r\n"
    # Argument errors carry no ignore_error_stats_update (luaArgsToRedisArgv's own error).
    assert raw.call("EVAL", "local e = redis.pcall('set', 'x', {}) return {e.err, tostring(e.ignore_error_stats_update)}",
                    "0") == b"*2\r\n$49\r\nERR Command arguments must be strings or integers\r\n$3\r\nnil\r\n"
    assert raw.call("EVAL", "return {pcall(redis.call, 'nosuch')}", "0") == \
        b"*2\r\n$-1\r\n$38\r\nERR Unknown command called from script\r\n"


def test_valkey_doubles_and_number_arguments(raw):
    """d2string for double replies, double2ll/fpconv_dtoa for numbers passed to commands."""
    assert raw.call("EVAL", "return {double=0.1}", "0") == b"$3\r\n0.1\r\n"
    assert raw.call("EVAL", "return {double=0/0}", "0") == b"$3\r\nnan\r\n"
    assert raw.call("EVAL", "return {double=1e308*10}", "0") == b"$3\r\ninf\r\n"
    assert raw.call("EVAL", "return {double=-0.0}", "0") == b"$2\r\n-0\r\n"
    assert raw.call("EVAL", "return {double=1e-7}", "0") == b"$4\r\n1e-7\r\n"
    assert raw.call("EVAL", "return {double=123456789.123}", "0") == b"$13\r\n123456789.123\r\n"
    for value, stored in [("0.1", b"0.1"), ("-0.0", b"0"), ("1/3", b"0.3333333333333333"), ("1e20", b"1e+20"),
                          ("2^62", b"4611686018427387904"), ("2^63", b"9223372036854776000"),
                          ("0/0", b"-nan"), ("-1/0", b"-inf"), ("1.5e-9", b"1.5e-9")]:
        assert raw.call("EVAL", f"redis.call('set', 'n', {value}) return redis.call('get', 'n')", "0") == \
            b"$%d\r\n%s\r\n" % (len(stored), stored), value
    raw.call("HELLO", "3")
    try:
        assert raw.call("EVAL", "return {double=0/0}", "0") == b",nan\r\n"
        assert raw.call("EVAL", "return {double=0.1}", "0") == b",0.1\r\n"
    finally:
        raw.call("HELLO", "2")


def test_valkey_versions_and_server_alias(raw):
    assert raw.call("EVAL", "return {redis.REDIS_VERSION, redis.VALKEY_VERSION, redis.SERVER_NAME}", "0") == \
        b"*3\r\n$5\r\n7.2.4\r\n$5\r\n8.0.1\r\n$6\r\nvalkey\r\n"
    assert raw.call("EVAL", "return {redis.REDIS_VERSION_NUM, redis.VALKEY_VERSION_NUM}", "0") == \
        b"*2\r\n:%d\r\n:%d\r\n" % (0x070204, 0x080001)
    assert raw.call("EVAL", "return server == redis", "0") == b":1\r\n"
    assert raw.call("EVAL", "server.call('set', 'x', 'y') return server.pcall('get', 'x')", "0") == b"$1\r\ny\r\n"
    names = raw.call("EVAL", "local t = {} for k in pairs(_G) do t[#t+1] = k end table.sort(t) "
                             "return table.concat(t, ' ')", "0")
    assert names.split(b"\r\n")[1].split() == sorted(
        b"ARGV KEYS _G _VERSION __redis__err__handler assert bit cjson cmsgpack collectgarbage coroutine "
        b"error gcinfo getmetatable ipairs load loadstring math next pairs pcall rawequal rawget rawset "
        b"redis select server setmetatable string struct table tonumber tostring type unpack xpcall".split())


def test_math_random_is_redis_lrand48(raw):
    """math.random follows redisLrand48 (a 48-bit LCG), reseeded by math.randomseed."""
    def expected(seed_words, n, upper):
        x0, x1, x2 = seed_words
        out = []
        for _ in range(n):
            t0 = 0xE66D * x0 + 0xB
            t1 = 0xE66D * x1 + 0xDEEC * x0 + (t0 >> 16)
            t2 = 0xE66D * x2 + 0xDEEC * x1 + 5 * x0 + (t1 >> 16)
            x0, x1, x2 = t0 & 0xFFFF, t1 & 0xFFFF, t2 & 0xFFFF
            r = (((x2 << 15) + (x1 >> 1)) % 2147483647) / 2147483647
            out.append(math.floor(r * upper) + 1)
        return out
    reply = raw.call("EVAL", "math.randomseed(42) local t = {} for i = 1, 5 do t[i] = math.random(1000) end return t", "0")
    assert reply == b"*5\r\n" + b"".join(b":%d\r\n" % v for v in expected((0x330E, 42, 0), 5, 1000))
    assert raw.call("EVAL", "return math.random(0)", "0").startswith(
        b"-ERR user_script:1: bad argument #1 to 'random' (interval is empty)")


# -- 3. across workers ---------------------------------------------------------------------------

def test_declared_keys_on_two_workers_run_atomically(r):
    a, b = A + "acct", B + "acct"
    r.mset({a: 100, b: 0})
    body = ("local from = tonumber(redis.call('get', KEYS[1])) "
            "redis.call('set', KEYS[1], from - ARGV[1]) redis.call('incrby', KEYS[2], ARGV[1]) "
            "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}")
    assert r.eval(body, 2, a, b, 30) == [b"70", b"30"]
    assert r.mget(a, b) == [b"70", b"30"]
    assert r.eval("return redis.call('mget', KEYS[1], KEYS[2])", 2, a, b) == [b"70", b"30"]


def test_undeclared_keys_of_another_worker(r):
    """A keyless script lands on worker 0; the writes it made before touching worker 1's key
    are put back, and it runs again under the coordinator: every write happens once."""
    first, far = B + "local", A + "far"
    body = ("redis.call('incr', ARGV[1]) redis.call('rpush', ARGV[1] .. 'list', 'x') "
            "redis.call('incr', ARGV[2]) return {redis.call('get', ARGV[1]), redis.call('get', ARGV[2])}")
    assert r.eval(body, 0, first, far) == [b"1", b"1"]
    assert r.eval(body, 0, first, far) == [b"2", b"2"]
    assert r.lrange(first + "list", 0, -1) == [b"x", b"x"]
    assert r.mget(first, far) == [b"2", b"2"]
    # Declared on worker 1, touching worker 0's keys too.
    assert r.eval("return redis.call('incr', KEYS[1]) + redis.call('incr', ARGV[1])", 1, far, first) == 6
    # Reads only, of keys of both workers.
    assert r.eval("return redis.call('mget', ARGV[1], ARGV[2])", 0, first, far) == [b"3", b"3"]


def test_undeclared_keys_keep_ttls_and_types(r):
    near, far = B + "ttl", A + "ttl"
    r.set(near, "v", ex=100)
    r.hset(far, "f", "1")
    body = "redis.call('set', ARGV[1], 'w', 'KEEPTTL') redis.call('hincrby', ARGV[2], 'f', 5) return redis.call('ttl', ARGV[1])"
    assert 0 < r.eval(body, 0, near, far) <= 100
    assert r.get(near) == b"w" and 0 < r.ttl(near) <= 100 and r.hget(far, "f") == b"6"


@pytest.mark.parametrize("declared", [0, 1])
def test_undeclared_keys_of_another_worker_are_seen_by_every_key_command(r, declared):
    """EXISTS, TYPE, TTL, PTTL, EXPIRETIME, OBJECT and a check-then-set see a key the script did
    not declare, on the other worker, as it is (they read it without touching its clock)."""
    near, far = B + "seen", A + "seen"
    r.set(far, "live", ex=100)
    r.hset(far + "h", "f", "1")
    body = ("return {redis.call('exists', ARGV[1]), redis.call('type', ARGV[1])['ok'], "
            "redis.call('type', ARGV[2])['ok'], redis.call('ttl', ARGV[1]), redis.call('pttl', ARGV[2]), "
            "redis.call('expiretime', ARGV[2]), redis.call('object', 'encoding', ARGV[1]), "
            "redis.call('exists', ARGV[3])}")
    keys = [near] if declared else []
    got = r.eval(body, declared, *keys, far, far + "h", far + "missing")
    assert got[:3] == [1, b"string", b"hash"] and 0 < got[3] <= 100
    assert got[4:] == [-1, -1, b"embstr", 0]
    claim = ("if redis.call('exists', ARGV[1]) == 0 then redis.call('set', ARGV[1], 'clobbered') "
             "return 'created' end return 'kept'")
    assert r.eval(claim, declared, *keys, far) == b"kept"
    assert r.get(far) == b"live"
    r.delete(far)
    assert r.eval(claim, declared, *keys, far) == b"created"
    assert r.get(far) == b"clobbered"
    # Expiries set and dropped on such keys reach their worker.
    fresh = far + "fresh"
    body = ("redis.call('set', ARGV[1], 'x', 'EX', 50) redis.call('expire', ARGV[2], 70) "
            "redis.call('persist', ARGV[3]) return redis.call('ttl', ARGV[2])")
    r.set(far + "p", "v", ex=90)
    assert 0 < r.eval(body, declared, *keys, fresh, far, far + "p") <= 70
    assert 0 < r.ttl(fresh) <= 50 and 0 < r.ttl(far) <= 70 and r.ttl(far + "p") == -1


def test_info_memory_counts_scripts_and_functions(r):
    r.script_flush()
    r.function_flush()
    bodies = ["return 1", "return 2", "return redis.call('ping')"]
    r.eval(bodies[0], 0)
    r.eval(bodies[1], 1, A + "k")
    r.script_load(bodies[2])
    r.function_load("#!lua name=infolib\n"
                    "redis.register_function('one', function() return 1 end)\n"
                    "redis.register_function('two', function() return 2 end)")
    info = r.info("memory")
    assert (info["number_of_cached_scripts"], info["number_of_functions"], info["number_of_libraries"]) == (3, 2, 1)
    assert info["used_memory_scripts_eval"] >= sum(map(len, bodies))
    assert info["used_memory_functions"] > 0
    assert info["used_memory_scripts"] == info["used_memory_scripts_eval"] + info["used_memory_functions"]
    r.script_flush()
    r.function_flush()
    info = r.info("memory")
    assert (info["number_of_cached_scripts"], info["number_of_functions"], info["number_of_libraries"]) == (0, 0, 0)
    assert info["used_memory_scripts"] == 0


def test_dbsize_in_a_script_across_workers(r):
    """DBSIZE in a script whose keys live on both workers: every worker's size, with the
    script's own creations and deletions (a key it sets unread counts once it is known)."""
    w0, w1 = keys_on(0, 3, "dbs0:"), keys_on(1, 3, "dbs1:")
    for key in w0 + w1[:2]:
        r.set(key, "v")
    body = ("local before = redis.call('dbsize') redis.call('set', KEYS[1], 'x') redis.call('del', KEYS[2]) "
            "redis.call('set', KEYS[3], 'y') redis.call('set', KEYS[4], 'z') "
            "return {before, redis.call('dbsize')}")
    # KEYS[1] is new (worker 1), KEYS[2] deleted (worker 0), KEYS[3] and KEYS[4] overwritten
    assert r.eval(body, 4, w1[2], w0[0], w1[0], w0[1]) == [5, 5]
    assert r.dbsize() == 5
    assert r.eval("redis.call('set', KEYS[1], 'n') redis.call('set', KEYS[2], 'n') return redis.call('dbsize')",
                  2, "dbs0:new", "dbs1:new") == 7
    assert r.dbsize() == 7
    # a keyless script that reaches the other worker moves to the proxy: the same answer
    assert r.eval("redis.call('get', '{a}x') return redis.call('dbsize')", 0) == 7


def test_script_reading_keys_of_every_worker(r):
    keys = keys_on(0, 5, "u0:") + keys_on(1, 5, "u1:")
    for i, k in enumerate(keys):
        r.set(k, i)
    body = "local s = 0 for i = 1, #ARGV do s = s + redis.call('get', ARGV[i]) end return s"
    assert r.eval(body, 0, *keys) == sum(range(len(keys)))
    # A chain: each value names the next key to read (discovered one run at a time).
    chain = keys_on(1, 6, "chain1:") + keys_on(0, 6, "chain0:")
    random.Random(3).shuffle(chain)
    for k, nxt in zip(chain, chain[1:] + ["end"]):
        r.set(k, nxt)
    walk = "local k, n = ARGV[1], 0 while k ~= 'end' do k = redis.call('get', k) n = n + 1 end return n"
    assert r.eval(walk, 0, chain[0]) == len(chain)


def test_evalsha_on_every_worker(r):
    digest = r.script_load("return redis.call('incr', KEYS[1])")
    for worker in (0, 1):
        key = keys_on(worker, 1, "sha:")[0]
        assert r.evalsha(digest, 1, key) == 1
    # EVAL on one worker makes EVALSHA work on the other.
    body = "return 'made by eval ' .. KEYS[1]"
    k0, k1 = keys_on(0, 1, "ev:")[0], keys_on(1, 1, "ev:")[0]
    assert r.eval(body, 1, k0) == f"made by eval {k0}".encode()
    assert r.evalsha(sha(body), 1, k1) == f"made by eval {k1}".encode()
    assert r.script_exists(digest, sha(body), "0" * 40) == [True, True, False]
    assert r.script_flush() is True
    for key in (k0, k1):
        with pytest.raises(redis.exceptions.NoScriptError):
            r.evalsha(digest, 1, key)
    # EVALSHA of keys on both workers (the proxy runs it) after SCRIPT LOAD, and after FLUSH.
    digest = r.script_load("return redis.call('get', KEYS[1]) .. redis.call('get', KEYS[2])")
    r.mset({k0: "a", k1: "b"})
    assert r.evalsha(digest, 2, k0, k1) == b"ab"
    r.script_flush()
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(digest, 2, k0, k1)


def test_scripts_in_transactions(r):
    k0, k1 = keys_on(0, 1, "tx:")[0], keys_on(1, 1, "tx:")[0]
    with r.pipeline(transaction=True) as p:
        p.set(k0, 1)
        p.eval("return redis.call('incr', KEYS[1])", 1, k0)
        p.eval("return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])", 2, k0, k1)
        p.eval("redis.call('set', ARGV[1], 'far') return redis.call('get', ARGV[1])", 0, k1)
        p.get(k1)
        assert p.execute() == [True, 2, 4, b"far", b"far"]
    with r.pipeline(transaction=True) as p:
        p.eval("return redis.call('nosuch')", 0)
        p.set(k0, "after")
        result = p.execute(raise_on_error=False)
    assert isinstance(result[0], redis.exceptions.ResponseError) and result[1] is True


def test_pipelined_scripts_keep_order(r):
    far = A + "order"
    with r.pipeline(transaction=False) as p:
        p.eval("redis.call('set', ARGV[1], 'from script') return 1", 0, far)   # moves to the coordinator
        p.get(far)
        p.eval("return redis.call('append', ARGV[1], '!')", 0, far)
        p.get(far)
        assert p.execute() == [1, b"from script", 12, b"from script!"]


def test_select_inside_scripts(r):
    k = B + "sel"
    assert r.eval("redis.call('select', 3) redis.call('set', KEYS[1], 'in3') return redis.call('get', KEYS[1])", 1, k) == b"in3"
    assert r.get(k) is None
    r.execute_command("SELECT", 3)
    assert r.get(k) == b"in3"
    r.execute_command("SELECT", 0)
    with pytest.raises(redis.exceptions.ResponseError, match="DB index is out of range"):
        r.eval("return redis.call('select', 99)", 1, k)


N_BALANCES = 40
START = 1000
TRANSFER = ("local a = tonumber(redis.call('get', KEYS[1])) local n = tonumber(ARGV[1]) "
            "redis.call('set', KEYS[1], a - n) redis.call('incrby', KEYS[2], n) return a - n")
# Undeclared: the keys come in ARGV, the script is sent keyless.
WANDERING = ("redis.call('decrby', ARGV[1], ARGV[3]) redis.call('incrby', ARGV[2], ARGV[3]) return 1")
READER = "local s = 0 for i = 1, #KEYS do s = s + tonumber(redis.call('get', KEYS[i])) end return s"
READER_UNDECLARED = "local s = 0 for i = 1, #ARGV do s = s + tonumber(redis.call('get', ARGV[i])) end return s"


def test_invariant_under_concurrent_eval_transfers(server):
    keys = [f"bal:{i}" for i in range(N_BALANCES)]
    spread = [worker_of(k) for k in keys]
    assert min(spread.count(0), spread.count(1)) >= 10
    setup = server.client()
    setup.flushall()
    setup.mset({k: START for k in keys})
    transfer, wander = setup.script_load(TRANSFER), setup.script_load(WANDERING)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"transfers": 0, "wandering": 0, "reads": 0, "bad": [], "errors": []}

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        c = server.client()
        try:
            while not stop.is_set():
                a, b = rnd.sample(keys, 2)
                n = rnd.randint(1, 20)
                if rnd.random() < 0.3:
                    c.evalsha(wander, 0, a, b, n)
                    kind = "wandering"
                else:
                    c.evalsha(transfer, 2, a, b, n)
                    kind = "transfers"
                with lock:
                    stats[kind] += 1
        except Exception as exc:  # noqa: BLE001
            with lock:
                stats["errors"].append(repr(exc))
            stop.set()
        finally:
            c.close()

    def reader(seed: int) -> None:
        c = server.client()
        try:
            n = 0
            while not stop.is_set():
                n += 1
                total = c.eval(READER, len(keys), *keys) if n % 2 else c.eval(READER_UNDECLARED, 0, *keys)
                with lock:
                    stats["reads"] += 1
                    if total != N_BALANCES * START:
                        stats["bad"].append(total)
        except Exception as exc:  # noqa: BLE001
            with lock:
                stats["errors"].append(repr(exc))
            stop.set()
        finally:
            c.close()

    run_threads([functools.partial(writer, i) for i in range(4)] + [functools.partial(reader, 10 + i) for i in range(2)],
                stop, 3.0)
    assert not stats["errors"], stats["errors"][:3]
    assert not stats["bad"], stats["bad"][:5]
    assert sum(int(v) for v in setup.mget(keys)) == N_BALANCES * START
    assert stats["transfers"] >= 20 and stats["wandering"] >= 5 and stats["reads"] >= 10, stats
    setup.close()


# -- 4. runaway scripts ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def busy_server():
    srv = Server("--busy-reply-threshold", "100")
    yield srv
    srv.stop()


def run_in_thread(srv: Server, *command) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def go() -> None:
        c = srv.client(socket_timeout=30)
        try:
            result["reply"] = c.execute_command(*command)
        except Exception as exc:  # noqa: BLE001
            result["error"] = str(exc)
        finally:
            c.close()
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, result


def test_script_kill_stops_an_endless_loop(busy_server):
    c = busy_server.client()
    key, other = keys_on(0, 1, "spin:")[0], keys_on(1, 1, "spin:")[0]
    c.set(other, "alive")
    body = "local i = 0 while true do i = i + 1 end"
    t, result = run_in_thread(busy_server, "EVAL", body, 1, key)
    time.sleep(0.4)
    raw = RawConnection(busy_server.port)
    try:
        assert raw.call("GET", key) == \
            b"-BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
        assert raw.call("GET", other) == b"$5\r\nalive\r\n"          # the other worker serves on
        assert raw.call("FUNCTION", "KILL") == \
            b"-BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
        assert raw.call("FUNCTION", "STATS").startswith(b"-BUSY Valkey is busy running a script.")
        for shutdown in (["SHUTDOWN"], ["SHUTDOWN", "SAVE"], ["SHUTDOWN", "FORCE"]):   # only NOSAVE stops it
            assert raw.call(*shutdown) == \
                b"-BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
        assert raw.call("GET", other) == b"$5\r\nalive\r\n"
        assert raw.call("SCRIPT", "KILL") == b"+OK\r\n"
        t.join(5)
        assert not t.is_alive()
        assert result["error"].startswith("Script killed by user with SCRIPT KILL. script: ")
        assert raw.call("GET", key) == b"$-1\r\n"
        assert raw.call("SCRIPT", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"
    finally:
        raw.close()


def test_script_kill_survives_pcall(busy_server):
    body = "while true do pcall(function() while true do end end) end"
    t, result = run_in_thread(busy_server, "EVAL", body, 0)
    time.sleep(0.4)
    c = busy_server.client()
    assert c.script_kill() is True
    t.join(5)
    assert "killed by user" in result["error"]


def test_script_that_wrote_is_unkillable(busy_server):
    c = busy_server.client()
    key = keys_on(0, 1, "unkill:")[0]
    body = ("redis.call('set', KEYS[1], 'written') local t0 = tonumber(redis.call('time')[1]) "
            "while tonumber(redis.call('time')[1]) < t0 + 2 do end return 'done'")
    t, result = run_in_thread(busy_server, "EVAL", body, 1, key)
    time.sleep(0.5)
    with pytest.raises(redis.exceptions.ResponseError, match="^UNKILLABLE Sorry the script already executed write"):
        c.script_kill()
    t.join(10)
    assert result["reply"] == b"done" and c.get(key) == b"written"


def test_function_kill_and_stats(busy_server):
    c = busy_server.client()
    c.function_load("#!lua name=spinlib\nredis.register_function('spin', function() while true do end end)",
                    replace=True)
    t, result = run_in_thread(busy_server, "FCALL", "spin", 0)
    time.sleep(0.4)
    stats = c.function_stats()
    assert stats[b"running_script"][b"name"] == b"spin"
    assert stats[b"running_script"][b"command"] == [b"FCALL", b"spin", b"0"]
    assert stats[b"running_script"][b"duration_ms"] >= 100
    with pytest.raises(redis.exceptions.ResponseError, match="You can only call FUNCTION KILL"):
        c.script_kill()
    assert c.function_kill() in (True, b"OK")
    t.join(5)
    assert result["error"].startswith("Script killed by user with FUNCTION KILL. script: spin")
    assert c.function_stats()[b"running_script"] is None


# -- 5. clients --------------------------------------------------------------------------------

def test_redis_py_lock(server, r):
    for worker in (0, 1):
        name = keys_on(worker, 1, "lock:")[0]
        lock = r.lock(name, timeout=5)
        assert lock.acquire(blocking=False)
        other = server.client().lock(name, timeout=5)
        assert not other.acquire(blocking=False)
        assert lock.extend(5) and lock.reacquire()
        lock.release()
        assert other.acquire(blocking=False)
        assert other.owned() and not lock.owned()
        r.set(name, "stolen")                 # release/extend are scripts comparing the token
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            other.release()
        r.delete(name)
    r.script_flush()                      # the Lock's scripts come back via NOSCRIPT + SCRIPT LOAD
    with r.lock(keys_on(1, 1, "lock2:")[0], timeout=5, blocking_timeout=1):
        pass


def test_celery_like_evalsha(r):
    """Load once, then EVALSHA with keys on whichever worker, as task queues do."""
    dequeue = r.script_load(
        "local item = redis.call('lpop', KEYS[1]) if item then redis.call('zadd', KEYS[2], ARGV[1], item) end return item")
    queues = [(keys_on(w, 1, "q:")[0], keys_on(w, 1, "inflight:")[0]) for w in (0, 1)]
    for q, _ in queues:
        r.rpush(q, "t1", "t2")
    for q, inflight in queues:
        assert r.evalsha(dequeue, 2, q, inflight, 100) == b"t1"
        assert r.evalsha(dequeue, 2, q, inflight, 101) == b"t2"
        assert r.evalsha(dequeue, 2, q, inflight, 102) is None
        assert r.zrange(inflight, 0, -1, withscores=True) == [(b"t1", 100.0), (b"t2", 101.0)]
    script = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    assert script(keys=[A + "cnt"], args=[5]) == 5 and script(keys=[B + "cnt"], args=[7]) == 7


def test_keys_in_scripts_across_workers(r):
    """KEYS inside a script that runs across workers sees every worker (and its own writes)."""
    names = keys_on(0, 3, "job:") + keys_on(1, 3, "job:")
    for n in names:
        r.set(n, 1)
    body = ("local found = redis.call('keys', ARGV[1]) table.sort(found) "
            "for _, k in ipairs(found) do redis.call('del', k) end "
            "redis.call('set', ARGV[2], 'new') local after = redis.call('keys', ARGV[1]) return {found, after}")
    created = keys_on(1, 1, "job:new")[0]
    found, after = r.eval(body, 0, "job:*", created)
    assert found == sorted(n.encode() for n in names)
    assert after == [created.encode()]
    assert r.keys("job:*") == [created.encode()]
    with pytest.raises(redis.exceptions.ResponseError, match="'randomkey' cannot run in a script whose keys live"):
        r.eval("redis.call('get', '{a}x') return redis.call('randomkey')", 0)


def test_writes_put_back_before_a_script_moves(r):
    """Everything a script changed on its worker before it reached another worker's key is
    put back (values, types, TTLs, deletions, other dbs), so it takes effect exactly once."""
    s, h, lst, st, z, gone, new, moved = keys_on(0, 8, "rb:")
    far = keys_on(1, 1, "rb:far")[0]
    r.set(s, "10", ex=500)
    r.hset(h, "f", 1)
    r.rpush(lst, "a")
    r.sadd(st, "m")
    r.zadd(z, {"m": 1})
    r.set(gone, "bye")
    r.set(moved, "to db 2")
    body = ("redis.call('incrby', ARGV[1], 5) redis.call('hincrby', ARGV[2], 'f', 1) "
            "redis.call('lpush', ARGV[3], 'b') redis.call('sadd', ARGV[4], 'n') redis.call('zincrby', ARGV[5], 2, 'm') "
            "redis.call('del', ARGV[6]) redis.call('set', ARGV[7], 'fresh') redis.call('persist', ARGV[1]) "
            "local copied = redis.call('copy', ARGV[7], ARGV[7], 'db', 1) "
            "local move = redis.call('move', ARGV[8], 2) "
            "return {copied, move, redis.call('incr', ARGV[9])}")
    assert r.eval(body, 0, s, h, lst, st, z, gone, new, moved, far) == [1, 1, 1]
    assert r.get(s) == b"15" and r.ttl(s) == -1
    assert r.hget(h, "f") == b"2" and r.lrange(lst, 0, -1) == [b"b", b"a"]
    assert r.smembers(st) == {b"m", b"n"} and r.zscore(z, "m") == 3.0
    assert r.exists(gone, moved) == 0 and r.get(new) == b"fresh" and r.get(far) == b"1"
    for db, key, value in ((1, new, b"fresh"), (2, moved, b"to db 2")):
        r.execute_command("SELECT", db)
        try:
            assert r.get(key) == value
        finally:
            r.execute_command("SELECT", 0)


def test_single_worker_server():
    srv = Server(workers=1)
    try:
        c = srv.client()
        assert c.eval("redis.call('set', 'a', 1) return redis.call('incr', 'b')", 0) == 1
        assert sorted(c.evalsha(c.script_load("return redis.call('keys', '*')"), 0)) == [b"a", b"b"]
        assert c.eval("return redis.call('dbsize')", 0) == 2
        with c.pipeline(transaction=False) as p:
            p.eval("return redis.call('incr', 'b')", 0).get("b")
            assert p.execute() == [2, b"2"]
        c.function_load("#!lua name=one\nredis.register_function('one', function() return 1 end)")
        assert c.fcall("one", 0) == 1
    finally:
        srv.stop()


def test_runaway_script_across_workers_is_stopped(r):
    """A script run by the proxy (keys on two workers) cannot outlast the coordinator's hold:
    it stops with an error after a few seconds, its writes never reach the workers, and the
    shards serve again."""
    a, b = A + "runaway", B + "runaway"
    start = time.monotonic()
    with pytest.raises(redis.exceptions.ResponseError, match="Script ran too long across shards"):
        r.eval("redis.call('set', KEYS[1], 'x') redis.call('set', KEYS[2], 'y') while true do end", 2, a, b)
    assert time.monotonic() - start < 8
    assert r.exists(a, b) == 0
    assert r.set(a, 1) and r.mget(a, b) == [b"1", None]
