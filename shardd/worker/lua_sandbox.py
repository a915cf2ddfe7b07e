"""The Lua runtime behind EVAL and FCALL: Valkey 8's sandbox on lupa's Lua 5.1.

One `LuaEngine` per process (a worker's, or a proxy's for scripts run across shards). It is a
`lupa.lua51.LuaRuntime` with no Python builtins, no `python.*` bridge reachable from scripts
and no eval registration; a bootstrap chunk (below) builds Valkey's globals out of the
standard libraries and returns a small host API. Scripts only ever see Lua values: the one
Python callable the bootstrap receives (`bridge`) stays in upvalues of Lua closures, takes
strings and numbers, and returns strings, numbers, booleans or nil.

What the sandbox does as Valkey (script_lua.c, eval.c, function_lua.c) does:
- globals are read-only ("Attempt to modify a readonly table"), reading a missing one is
  "Script attempted to access nonexistent global variable 'x'"; library tables (string,
  math, table, cjson, ...), the string metatable and `redis`/`server` are read-only too.
  Stock Lua has no read-only tables, so each one is an empty proxy whose metatable forwards
  reads and refuses writes, and rawset/rawget/next/pairs/setmetatable/getmetatable and
  table.insert see through or refuse proxies.
- only the allow-listed globals exist: no os, io, debug, require, loadfile, dofile, print,
  setfenv, getfenv, newproxy, module; loadstring/load refuse bytecode.
- redis.call/pcall/error_reply/status_reply/sha1hex/log/setresp/set_repl/... with the same
  conversions both ways (RESP2 and RESP3) and the same error tables and messages.
- errors carry "script: <name>, on @user_script:<line>." from an error handler that finds
  the script's frame; this file's frames (chunk "=shardd") stand in for Valkey's C frames.
  User chunks are compiled with tail calls turned into plain calls (bytecode patch below) so
  that a `return redis.call(...)` keeps the script's frame, as a call of a C function would.
"""
from __future__ import annotations

import hashlib
import math
import struct
from typing import Any, Callable

from .lua_libs import LIBS_LUA

# Bridge operations (the first argument of every bridge call).
OP_CALL, OP_HOOK, OP_ABORT_MESSAGE, OP_SETRESP, OP_LOG, OP_SHA1, OP_ACL, OP_D2S = range(1, 9)
OP_FLOAT_PACK, OP_FLOAT_UNPACK, OP_MP_DOUBLE, OP_PATCH = range(9, 13)
# Replies of OP_CALL that are not RESP.
ARG_ERROR = -2      # an argument is not a string or a number
ABORT = -1          # stop the script: killed, diverted, timed out or the process is exiting

SANDBOX_LUA = r"""
local bridge, libs, NULL, versions, ops = ...
local OP_CALL, OP_HOOK, OP_ABORT_MESSAGE, OP_SETRESP, OP_LOG, OP_SHA1, OP_ACL, OP_D2S, OP_PATCH,
      ARG_ERROR = unpack(ops)
local G0 = _G
local type, tostring, tonumber, error, pcall, xpcall, select, next, rawget, rawset, rawequal,
      setmetatable, getmetatable, unpack, ipairs, pairs, loadstring, load, setfenv, assert,
      collectgarbage, gcinfo =
      type, tostring, tonumber, error, pcall, xpcall, select, next, rawget, rawset, rawequal,
      setmetatable, getmetatable, unpack, ipairs, pairs, loadstring, load, setfenv, assert,
      collectgarbage, gcinfo
local sbyte, ssub, sfind, sformat, sgsub, sdump, slower = string.byte, string.sub, string.find,
      string.format, string.gsub, string.dump, string.lower
local tconcat, tinsert = table.concat, table.insert
local floor, ceil, huge = math.floor, math.ceil, math.huge
local getinfo, sethook, dsetmetatable, dgetmetatable = debug.getinfo, debug.sethook, debug.setmetatable,
      debug.getmetatable
local INTERNAL, TAIL = "=shardd", "=(tail call)"
local READONLY = "Attempt to modify a readonly table"
local raise = libs.raise

---------------------------------------------------------------------------------------------
-- read-only proxies
---------------------------------------------------------------------------------------------
local real_of = setmetatable({}, {__mode = "k"})      -- proxy -> the table it shows
local meta_view = setmetatable({}, {__mode = "k"})    -- proxy -> what getmetatable answers

local function refuse_write() error(READONLY, 2) end

-- An empty table that reads through to `real` and refuses writes; also its metatable.
local function protect(real, view)
  local proxy = {}
  local mt = {__index = real, __newindex = refuse_write, __metatable = view or false}
  setmetatable(proxy, mt)
  real_of[proxy] = real
  meta_view[proxy] = view or false
  return proxy, mt
end

-- The wrapped builtins check their arguments as the C ones do (and report them at the
-- caller's line, like luaL_argerror): a C error raised from here would name this file.
local argerror, typename = libs.argerror, libs.typename
local function need_table(fname, n, ...)
  if type((select(n, ...))) ~= 'table' then
    argerror(n, fname, "table expected, got " .. typename(n, ...))
  end
end
local function need_value(fname, n, ...)
  if select('#', ...) < n then argerror(n, fname, "value expected") end
end

local function sb_rawget(...)
  need_table("rawget", 1, ...)
  need_value("rawget", 2, ...)
  local t, k = ...
  return rawget(real_of[t] or t, k)
end
local function sb_rawset(...)
  need_table("rawset", 1, ...)
  need_value("rawset", 2, ...)
  need_value("rawset", 3, ...)
  local t, k, v = ...
  if real_of[t] then error(READONLY, 0) end
  return rawset(t, k, v)
end
local function sb_next(...)
  need_table("next", 1, ...)
  local t, k = ...
  return next(real_of[t] or t, k)
end
local function sb_pairs(...)
  need_table("pairs", 1, ...)
  local t = ...
  local real = real_of[t]
  if real then return function(_, k) return next(real, k) end, t, nil end
  return next, t, nil
end
local function sb_setmetatable(...)
  need_table("setmetatable", 1, ...)
  local t, mt = ...
  if type(mt) ~= 'nil' and type(mt) ~= 'table' then argerror(2, "setmetatable", "nil or table expected") end
  if real_of[t] then error(READONLY, 0) end
  local current = dgetmetatable(t)
  if current and rawget(current, "__metatable") ~= nil then raise("cannot change a protected metatable") end
  return setmetatable(t, mt)
end
local function sb_getmetatable(...)
  need_value("getmetatable", 1, ...)
  local v = ...
  local view = meta_view[v]
  if view ~= nil then return view or nil end
  return getmetatable(v)
end
local function sb_insert(...)
  need_table("insert", 1, ...)
  local n = select('#', ...)
  if n ~= 2 and n ~= 3 then raise("wrong number of arguments to 'insert'") end
  local t = ...
  if real_of[t] then error(READONLY, 0) end
  if n == 3 then libs.checkint(2, "insert", ...) end
  return tinsert(...)
end

---------------------------------------------------------------------------------------------
-- errors as Valkey builds them (luaPushErrorBuff)
---------------------------------------------------------------------------------------------
local function trim_crlf(s)
  return (sgsub(sgsub(s, "^[\r\n]+", ""), "[\r\n]+$", ""))
end

local function error_table(buf)
  local code, msg
  if sbyte(buf, 1) == 45 then
    local sp = sfind(buf, " ", 1, true)
    if sp then code, msg = ssub(buf, 2, sp - 1), ssub(buf, sp + 1)
    else code, msg = "ERR", ssub(buf, 2) end
  else
    code, msg = "ERR", buf
  end
  return {err = code .. " " .. trim_crlf(msg)}
end

---------------------------------------------------------------------------------------------
-- RESP reply -> Lua (redisProtocolToLuaType)
---------------------------------------------------------------------------------------------
local parse
parse = function(s, pos)
  local c = sbyte(s, pos)
  local e = sfind(s, "\r\n", pos + 1, true)
  if c == 36 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    if n < 0 then return false, e + 2 end
    return ssub(s, e + 2, e + 1 + n), e + 4 + n
  elseif c == 58 then
    return tonumber(ssub(s, pos + 1, e - 1)), e + 2
  elseif c == 43 then
    return {ok = ssub(s, pos + 1, e - 1)}, e + 2
  elseif c == 45 then
    local t = error_table(ssub(s, pos, e - 1))
    t.ignore_error_stats_update = true
    return t, e + 2
  elseif c == 42 or c == 62 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    if n < 0 then return false, e + 2 end
    local t = {}
    pos = e + 2
    for i = 1, n do t[i], pos = parse(s, pos) end
    return t, pos
  elseif c == 37 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    local m = {}
    pos = e + 2
    for _ = 1, n do
      local k, v
      k, pos = parse(s, pos)
      v, pos = parse(s, pos)
      m[k] = v
    end
    return {map = m}, pos
  elseif c == 126 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    local m = {}
    pos = e + 2
    for _ = 1, n do
      local k
      k, pos = parse(s, pos)
      m[k] = true
    end
    return {set = m}, pos
  elseif c == 95 then
    return nil, e + 2
  elseif c == 35 then
    return sbyte(s, pos + 1) == 116, e + 2
  elseif c == 44 then
    return {double = tonumber(ssub(s, pos + 1, e - 1))}, e + 2
  elseif c == 40 then
    return {big_number = ssub(s, pos + 1, e - 1)}, e + 2
  elseif c == 61 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    local b = e + 2
    return {verbatim_string = {string = ssub(s, b + 4, b + n - 1), format = ssub(s, b, b + 2)}}, b + n + 2
  elseif c == 124 then
    local n = tonumber(ssub(s, pos + 1, e - 1))
    pos = e + 2
    for _ = 1, 2 * n do
      local _v
      _v, pos = parse(s, pos)
    end
    return parse(s, pos)
  end
  error("unexpected reply from the server: " .. ssub(s, pos, pos + 20), 0)
end

---------------------------------------------------------------------------------------------
-- Lua value -> RESP for the client (luaReplyToRedisReply)
---------------------------------------------------------------------------------------------
local function d2s(x)
  if x == 0 and 1 / x < 0 then return "-0" end   -- lupa hands -0.0 to Python as the integer 0
  return bridge(OP_D2S, x)
end
local function map_crlf(s) return (sgsub(s, "[\r\n]", " ")) end
local function cstring(s)                     -- C string semantics: up to the first NUL
  local z = sfind(s, "\0", 1, true)
  if z then return ssub(s, 1, z - 1) end
  return s
end

local emit
-- top: the Lua stack height Valkey would have while converting v (it gives up at 8000).
emit = function(v, out, top, cproto, sproto)
  if top + 4 > 8000 then
    out[#out + 1] = "-ERR reached lua stack limit\r\n"
    return
  end
  local t = type(v)
  if t == 'string' then
    out[#out + 1] = "$" .. #v .. "\r\n"
    out[#out + 1] = v
    out[#out + 1] = "\r\n"
  elseif t == 'number' then
    out[#out + 1] = sformat(":%d\r\n", v)
  elseif t == 'boolean' then
    if sproto == 2 then
      if v then out[#out + 1] = ":1\r\n" else out[#out + 1] = cproto == 3 and "_\r\n" or "$-1\r\n" end
    elseif cproto == 3 then
      out[#out + 1] = v and "#t\r\n" or "#f\r\n"
    else
      out[#out + 1] = v and ":1\r\n" or ":0\r\n"
    end
  elseif t == 'table' then
    local x = rawget(v, "err")
    if type(x) == 'string' then
      out[#out + 1] = "-" .. map_crlf(trim_crlf(cstring(x))) .. "\r\n"
      return
    end
    x = rawget(v, "ok")
    if type(x) == 'string' then
      out[#out + 1] = "+" .. map_crlf(cstring(x)) .. "\r\n"
      return
    end
    x = rawget(v, "double")
    if type(x) == 'number' then
      local s = d2s(x)
      if cproto == 3 then out[#out + 1] = "," .. s .. "\r\n"
      else out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n" end
      return
    end
    x = rawget(v, "big_number")
    if type(x) == 'string' then
      local s = map_crlf(x)
      if cproto == 3 then out[#out + 1] = "(" .. s .. "\r\n"
      else out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n" end
      return
    end
    x = rawget(v, "verbatim_string")
    if type(x) == 'table' then
      local f = rawget(x, "format")
      local s = rawget(x, "string")
      if type(f) == 'string' and type(s) == 'string' then
        if cproto == 3 then
          out[#out + 1] = "=" .. (#s + 4) .. "\r\n" .. ssub(f .. "\0\0\0", 1, 3) .. ":" .. s .. "\r\n"
        else
          out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n"
        end
        return
      end
    end
    x = rawget(v, "map")
    if type(x) == 'table' then
      local at = #out + 1
      out[at] = false
      local n = 0
      for k, val in next, x do
        emit(k, out, top + 4, cproto, sproto)
        emit(val, out, top + 3, cproto, sproto)
        n = n + 1
      end
      out[at] = cproto == 3 and ("%" .. n .. "\r\n") or ("*" .. 2 * n .. "\r\n")
      return
    end
    x = rawget(v, "set")
    if type(x) == 'table' then
      local at = #out + 1
      out[at] = false
      local n = 0
      for k in next, x do
        emit(k, out, top + 3, cproto, sproto)
        n = n + 1
      end
      out[at] = cproto == 3 and ("~" .. n .. "\r\n") or ("*" .. n .. "\r\n")
      return
    end
    local at = #out + 1
    out[at] = false
    local j = 1
    while true do
      local e = rawget(v, j)
      if e == nil then break end
      emit(e, out, top + 1, cproto, sproto)
      j = j + 1
    end
    out[at] = "*" .. (j - 1) .. "\r\n"
  else
    out[#out + 1] = cproto == 3 and "_\r\n" or "$-1\r\n"
  end
end

---------------------------------------------------------------------------------------------
-- running scripts: hooks, aborts, the error handler
---------------------------------------------------------------------------------------------
local script_resp = 2
local aborting = nil        -- the error every line re-raises once a script must stop

-- Hooks raise only in the user's code: this file's code around the protected call (and the
-- libraries, briefly) must not see the error.
local function line_hook()
  if aborting then
    local info = getinfo(2, "S")
    if info and info.source ~= INTERNAL then error(aborting, 0) end
  end
end
local function abort_script()
  aborting = error_table(bridge(OP_ABORT_MESSAGE))
  sethook(line_hook, "l")
  error(aborting, 0)
end
local function count_hook()
  local info = getinfo(2, "S")
  local user = info and info.source ~= INTERNAL
  if aborting then
    sethook(line_hook, "l")
    if user then error(aborting, 0) end
    return
  end
  if bridge(OP_HOOK) ~= 0 then
    aborting = error_table(bridge(OP_ABORT_MESSAGE))
    sethook(line_hook, "l")
    if user then error(aborting, 0) end
  end
end

local function internal(info) return info.source == INTERNAL or info.source == TAIL end

-- Valkey's __redis__err__handler: the frame at level 2, or 3 when 2 is a C function (this
-- file's frames count as part of the C function they stand for).
local function err_handler(err)
  local level = 2
  local i = getinfo(level, "nSl")
  if i and (i.what == "C" or internal(i)) then
    level = level + 1
    i = getinfo(level, "nSl")
    while i and internal(i) do
      level = level + 1
      i = getinfo(level, "nSl")
    end
  end
  if type(err) ~= 'table' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end

local staged = {}
local function stage(...)
  local n = #staged
  for i = 1, select('#', ...) do staged[n + i] = (select(i, ...)) end
end

local function split_args(nkeys, ...)
  local all = staged
  if #all == 0 then all = {...} else staged = {} end
  local keys, args = {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, #all do args[i - nkeys] = all[i] end
  return keys, args
end

-- (status, reply) or (status, error message, source, line[, plain message]); status 0 or 1,
-- 3 or 2 when the script was stopped (killed, moved) on the way.
local function finish(ok, res, cproto)
  sethook()
  local aborted = aborting ~= nil
  aborting = nil
  if ok then
    local out = {}
    emit(res, out, 2, cproto, script_resp)
    return aborted and 3 or 0, tconcat(out)
  end
  local status = aborted and 2 or 1
  if type(res) ~= 'table' then
    local msg = "execution failure"
    if type(res) == 'string' or type(res) == 'number' then msg = tostring(res) end
    return status, nil, nil, nil, msg
  end
  local msg, source, line = res.err, res.source, res.line
  if type(msg) ~= 'string' and type(msg) ~= 'number' then msg = nil end
  if type(source) ~= 'string' and type(source) ~= 'number' then source = nil end
  if type(line) ~= 'string' and type(line) ~= 'number' then line = nil end
  return status, msg and tostring(msg), source and tostring(source), line and tostring(line)
end

---------------------------------------------------------------------------------------------
-- the server API
---------------------------------------------------------------------------------------------
local function generic_call(raise_error, ...)
  if select('#', ...) == 0 then
    local e = error_table("Please specify at least one argument for this call")
    if raise_error then error(e, 0) end
    return e
  end
  local r = bridge(OP_CALL, ...)
  if type(r) ~= 'string' then
    if r == ARG_ERROR then
      local e = error_table("Command arguments must be strings or integers")
      if raise_error then error(e, 0) end
      return e
    end
    abort_script()
  end
  local v = parse(r, 1)
  if raise_error and sbyte(r, 1) == 45 then error(v, 0) end
  return v
end
local function server_call(...) return generic_call(true, ...) end
local function server_pcall(...) return generic_call(false, ...) end

local function toint(x)
  x = tonumber(x) or 0
  if x ~= x then return -2147483648 end
  if x >= 0 then return floor(x) end
  return ceil(x)
end

local function setresp(...)
  if select('#', ...) ~= 1 then error(error_table("redis.setresp() requires one argument."), 0) end
  local n = toint((...))
  if n ~= 2 and n ~= 3 then error(error_table("RESP version must be 2 or 3."), 0) end
  script_resp = n
  bridge(OP_SETRESP, n)
end

local function server_log(...)
  local argc = select('#', ...)
  if argc < 2 then error(error_table("redis.log() requires two arguments or more."), 0) end
  local first = (...)
  if tonumber(first) == nil or (type(first) ~= 'number' and type(first) ~= 'string') then
    error(error_table("First argument must be a number (log level)."), 0)
  end
  local level = toint(first)
  if level < 0 or level > 3 then error(error_table("Invalid debug level."), 0) end
  local parts = {}
  for j = 1, argc - 1 do
    local v = (select(j + 1, ...))
    local t = type(v)
    if t == 'string' or t == 'number' then
      if j ~= 1 then parts[#parts + 1] = " " end
      parts[#parts + 1] = tostring(v)
    end
  end
  bridge(OP_LOG, level, tconcat(parts))
end

local function sha1hex(...)
  if select('#', ...) ~= 1 then error(error_table("wrong number of arguments"), 0) end
  local s = (...)
  if type(s) == 'number' then s = tostring(s) elseif type(s) ~= 'string' then s = "" end
  return bridge(OP_SHA1, s)
end

local function error_reply(...)
  local v = (...)
  if select('#', ...) ~= 1 or type(v) ~= 'string' then
    return error_table("wrong number or type of arguments")
  end
  if sbyte(v, 1) ~= 45 then v = "-" .. v end
  return error_table(v)
end

local function status_reply(...)
  local v = (...)
  if select('#', ...) ~= 1 or type(v) ~= 'string' then
    return error_table("wrong number or type of arguments")
  end
  return {ok = v}
end

local function set_repl(...)
  if select('#', ...) ~= 1 then error(error_table("redis.set_repl() requires one argument."), 0) end
  local flags = toint((...))
  if flags < 0 or flags > 3 then
    error(error_table("Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE."), 0)
  end
end

local function acl_check_cmd(...)
  if select('#', ...) == 0 then
    error(error_table("Please specify at least one argument for this call"), 0)
  end
  local r = bridge(OP_ACL, ...)
  if r == ARG_ERROR then error(error_table("Command arguments must be strings or integers"), 0) end
  if not r then error(error_table("Invalid command passed to redis.acl_check_cmd()"), 0) end
  return r == true      -- false: the script's user may not run it
end

-- Valkey's pcall: an error table with an 'err' string comes back as that string.
local function pcall_result(ok, ...)
  if ok then return true, ... end
  local e = ...
  if type(e) == 'table' then
    local m = e.err
    if type(m) == 'string' or type(m) == 'number' then return false, m end
    return false, e, nil
  end
  return false, e
end
local function sb_pcall(...)
  if select('#', ...) == 0 then return false end   -- what Valkey's lua_pcall(L, -1, ...) leaves
  return pcall_result(pcall(...))
end

-- luaO_chunkid: how an error names a chunk (LUA_IDSIZE 60; sources are C strings there).
local function chunk_id(source)
  source = cstring(source)
  local c = sbyte(source, 1)
  if c == 61 then return ssub(source, 2, 60) end
  if c == 64 then
    local rest = ssub(source, 2)
    if #rest > 52 then return "..." .. ssub(rest, -52) end
    return rest
  end
  local len = (sfind(source, "[\r\n]") or #source + 1) - 1
  if len > 44 then len = 44 end
  if len < #source then return '[string "' .. ssub(source, 1, len) .. '..."]' end
  return '[string "' .. source .. '"]'
end

-- Compile user code: bytecode refused (as Valkey's patched parser does), tail calls turned
-- into calls (see patch_tail_calls on the Python side), the sandbox's globals.
local function compile(text, name, env)
  if sbyte(text, 1) == 27 then
    return nil, chunk_id(name or text) .. ":1: unexpected symbol near 'char(27)'"
  end
  local f, err = loadstring(text, name)
  if not f then return nil, err end
  local patched = bridge(OP_PATCH, sdump(f))
  if type(patched) == 'string' then f = loadstring(patched, name) end
  setfenv(f, env)
  return f
end

---------------------------------------------------------------------------------------------
-- globals
---------------------------------------------------------------------------------------------
local function missing_global(_, k)
  if type(k) ~= 'string' and type(k) ~= 'number' then
    error("Second argument to luaProtectedTableError must be a string or number", 2)
  end
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
local ERROR_META = {__index = missing_global}

local function copy(t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return c
end

local P_string = protect(copy(string))
local P_table = protect(copy(table))
rawset(real_of[P_table], "insert", sb_insert)
local math_real = copy(math)
math_real.random, math_real.randomseed = libs.random, libs.randomseed
local P_math = protect(math_real)
local P_coroutine = protect(copy(coroutine))
local P_cjson = protect(libs.cjson)
local P_cmsgpack = protect(libs.cmsgpack)
local P_struct = protect(libs.struct)
local P_bit = protect(libs.bit)

-- The string metatable: method lookups need a raw __index; getmetatable('') sees a proxy.
local string_meta = {__index = P_string}
string_meta.__metatable = protect(string_meta)
dsetmetatable("", string_meta)

local function version_fields(t)
  t.REDIS_VERSION, t.REDIS_VERSION_NUM = versions.redis, versions.redis_num
  t.VALKEY_VERSION, t.VALKEY_VERSION_NUM = versions.valkey, versions.valkey_num
  t.SERVER_NAME = versions.name
  t.log = server_log
  t.LOG_DEBUG, t.LOG_VERBOSE, t.LOG_NOTICE, t.LOG_WARNING = 0, 1, 2, 3
  return t
end

local function server_api()
  local t = version_fields({})
  t.call, t.pcall, t.setresp, t.sha1hex = server_call, server_pcall, setresp, sha1hex
  t.error_reply, t.status_reply, t.set_repl, t.acl_check_cmd = error_reply, status_reply, set_repl, acl_check_cmd
  t.REPL_NONE, t.REPL_AOF, t.REPL_SLAVE, t.REPL_REPLICA, t.REPL_ALL = 0, 1, 2, 2, 3
  return t
end

local eval_api = server_api()
eval_api.replicate_commands = function() return true end
eval_api.breakpoint = function() return false end
eval_api.debug = function() end
local P_eval_api = protect(eval_api)
local P_function_api = protect(server_api())

local function base_globals(api, env_proxy_ref)
  local g = {
    string = P_string, cjson = P_cjson, bit = P_bit, cmsgpack = P_cmsgpack, math = P_math,
    table = P_table, struct = P_struct, coroutine = P_coroutine,
    redis = api, server = api,
    xpcall = xpcall, tostring = tostring, setmetatable = sb_setmetatable, next = sb_next,
    assert = assert, tonumber = tonumber, rawequal = rawequal, collectgarbage = collectgarbage,
    getmetatable = sb_getmetatable, rawset = sb_rawset, pcall = sb_pcall, type = type,
    select = select, unpack = unpack, gcinfo = gcinfo, pairs = sb_pairs, rawget = sb_rawget,
    ipairs = ipairs, _VERSION = _VERSION, error = error,
  }
  return g
end

local function make_env(g)
  setmetatable(g, ERROR_META)
  local proxy, mt = protect(g, protect({__index = missing_global}))
  g._G = proxy
  g.loadstring = function(...)
    local text, name = ...
    if type(text) ~= 'string' and type(text) ~= 'number' then
      libs.argerror(1, "loadstring", "string expected, got " .. libs.typename(1, ...))
    end
    return compile(tostring(text), name, proxy)
  end
  g.load = function(reader, name)
    if type(reader) ~= 'function' then
      libs.argerror(1, "load", "function expected, got " .. type(reader))
    end
    local parts = {}
    while true do
      local piece = reader()
      if piece == nil or piece == "" then break end
      if type(piece) ~= 'string' then return nil, "reader function must return a string" end
      parts[#parts + 1] = piece
    end
    return compile(tconcat(parts), name or "=(load)", proxy)
  end
  return proxy, mt
end

local R_E = base_globals(P_eval_api)
R_E.__redis__err__handler = err_handler
local P_E = make_env(R_E)

local R_F = base_globals(P_function_api)
local P_F, F_META = make_env(R_F)

-- FUNCTION LOAD: the library's top level sees only redis/server with register_function.
local registry = nil
local FLAG_NAMES = {["no-writes"] = "no-writes", ["allow-oom"] = "allow-oom", ["allow-stale"] = "allow-stale",
                    ["no-cluster"] = "no-cluster", ["allow-cross-slot-keys"] = "allow-cross-slot-keys"}
local function register_function(...)
  local argc = select('#', ...)
  if not registry then
    error(error_table("redis.register_function can only be called on FUNCTION LOAD command"), 0)
  end
  if argc < 1 or argc > 2 then
    error(error_table("wrong number of arguments to redis.register_function"), 0)
  end
  local name, callback, flags, desc
  if argc == 1 then
    local t = (...)
    if type(t) ~= 'table' then
      error(error_table("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."), 0)
    end
    for k, v in next, t do
      if type(k) ~= 'string' and type(k) ~= 'number' then
        error(error_table("named argument key given to redis.register_function is not a string"), 0)
      end
      local key = slower(tostring(k))
      if key == "function_name" then
        if type(v) ~= 'string' and type(v) ~= 'number' then
          error(error_table("function_name argument given to redis.register_function must be a string"), 0)
        end
        name = tostring(v)
      elseif key == "description" then
        if type(v) ~= 'string' and type(v) ~= 'number' then
          error(error_table("description argument given to redis.register_function must be a string"), 0)
        end
        desc = tostring(v)
      elseif key == "callback" then
        if type(v) ~= 'function' then
          error(error_table("callback argument given to redis.register_function must be a function"), 0)
        end
        callback = v
      elseif key == "flags" then
        if type(v) ~= 'table' then
          error(error_table("flags argument to redis.register_function must be a table representing function flags"), 0)
        end
        flags = {}
        local j = 1
        while true do
          local f = v[j]
          if f == nil then break end
          local known = (type(f) == 'string' or type(f) == 'number') and FLAG_NAMES[slower(tostring(f))]
          if not known then error(error_table("unknown flag given"), 0) end
          flags[#flags + 1] = known
          j = j + 1
        end
      else
        error(error_table("unknown argument given to redis.register_function"), 0)
      end
    end
    if not name then error(error_table("redis.register_function must get a function name argument"), 0) end
    if not callback then error(error_table("redis.register_function must get a callback argument"), 0) end
  else
    local n, f = ...
    if type(n) ~= 'string' and type(n) ~= 'number' then
      error(error_table("first argument to redis.register_function must be a string"), 0)
    end
    if type(f) ~= 'function' then
      error(error_table("second argument to redis.register_function must be a function"), 0)
    end
    name, callback = tostring(n), f
  end
  if not sfind(name, "^[%w_]+$") or sfind(name, "%z") then
    error(error_table("Function names can only contain letters, numbers, or underscores(_) and must be at least one character long"), 0)
  end
  if registry.names[name] then error(error_table("Function already exists in the library"), 0) end
  registry.names[name] = true
  registry.list[#registry.list + 1] = {name = name, callback = callback, flags = flags or {}, desc = desc}
end

local load_api = version_fields({register_function = register_function})
setmetatable(load_api, ERROR_META)
local R_L = setmetatable({redis = protect(load_api), server = nil}, ERROR_META)
rawset(R_L, "server", R_L.redis)

local load_hook = count_hook

---------------------------------------------------------------------------------------------
-- host API
---------------------------------------------------------------------------------------------
local host = {}

function host.compile_eval(body, name)
  local f, err = compile(body, name, P_E)
  return f, err
end

host.stage = stage

function host.run_eval(fn, cproto, nkeys, ...)
  local keys, args = split_args(nkeys, ...)
  rawset(R_E, "KEYS", keys)
  rawset(R_E, "ARGV", args)
  script_resp, aborting = 2, nil
  sethook(count_hook, "", 100000)
  local ok, res = xpcall(fn, err_handler)
  return finish(ok, res, cproto)
end

function host.run_function(fn, cproto, nkeys, ...)
  local keys, args = split_args(nkeys, ...)
  script_resp, aborting = 2, nil
  sethook(count_hook, "", 100000)
  local ok, res = xpcall(function() return fn(keys, args) end, err_handler)
  return finish(ok, res, cproto)
end

-- Runs a library's code; on success the functions it registered, else the error text.
function host.load_library(code)
  local f, err = compile(code, "@user_function", P_F)
  if not f then return false, "Error compiling function: " .. err end
  registry = {list = {}, names = {}}
  F_META.__index = R_L
  aborting = nil
  sethook(load_hook, "", 100000)
  local ok, e = pcall(f)
  sethook()
  F_META.__index = R_F
  local list = registry.list
  registry = nil
  aborting = nil
  if not ok then
    local msg
    if type(e) == 'string' or type(e) == 'number' then msg = "ERR " .. tostring(e)
    elseif type(e) == 'table' and (type(e.err) == 'string' or type(e.err) == 'number') then msg = tostring(e.err)
    else msg = "ERR unknown error" end
    return false, "Error registering functions: " .. msg
  end
  return true, list
end

function host.gc_step(n) collectgarbage("step", n) end

return host
"""


def _fallback_fpconv(value: float) -> bytes:
    """fpconv_dtoa's layout over Python's shortest digits (used when shardd.dtoa is absent)."""
    negative = value < 0
    digits, _, exponent = repr(abs(value)).partition("e")
    mantissa = digits.replace(".", "")
    point = digits.index(".") if "." in digits else len(digits)
    k = point - len(mantissa) + (int(exponent) if exponent else 0)
    stripped = mantissa.lstrip("0")
    k += 0
    nd = len(stripped.rstrip("0"))
    trailing = len(stripped) - nd
    digits_text = stripped[:nd] if nd else "0"
    k += trailing
    nd = len(digits_text)
    exp = abs(k + nd - 1)
    if k >= 0 and exp < nd + 7:
        text = digits_text + "0" * k
    elif k < 0 and (k > -7 or exp < 4):
        offset = nd + k
        text = "0." + "0" * -offset + digits_text if offset <= 0 else digits_text[:offset] + "." + digits_text[offset:]
    else:
        nd = min(nd, 18 - negative)
        head = digits_text[0] + ("." + digits_text[1:nd] if nd > 1 else "")
        text = f"{head}e{'-' if k + nd - 1 < 0 else '+'}{exp}"
    return (("-" if negative else "") + text).encode()


try:
    from ..dtoa import _fpconv_dtoa as fpconv_finite  # Valkey's grisu2, when present
    from ..dtoa import d2string as _d2string
except ImportError:                                     # pragma: no cover
    fpconv_finite = _fallback_fpconv
    _d2string = None

_LL_SAFE = float((1 << 63) - 1) / 2


def fpconv_dtoa(value: float) -> bytes:
    """fpconv_dtoa: '-' for a set sign bit, then 0/nan/inf or the shortest digits."""
    sign = b"-" if math.copysign(1.0, value) < 0 else b""
    if value == 0:
        return sign + b"0"
    if value != value:
        return sign + b"nan"
    if math.isinf(value):
        return sign + b"inf"
    return fpconv_finite(value)


def d2string(value: float) -> bytes:
    """Valkey's d2string: how a double reply is printed."""
    if _d2string is not None:
        return _d2string(value)
    if value != value:
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == 0:
        return b"-0" if math.copysign(1.0, value) < 0 else b"0"
    if value.is_integer() and -_LL_SAFE <= value <= _LL_SAFE:
        return b"%d" % value
    return fpconv_finite(value)


def number_argument(value: int | float) -> bytes:
    """A Lua number passed to redis.call: an integer when it is one (double2ll), else
    fpconv_dtoa's digits."""
    if type(value) is int:
        if -_LL_SAFE <= value <= _LL_SAFE:
            return b"%d" % value
        value = float(value)
    if value.is_integer() and -_LL_SAFE <= value <= _LL_SAFE:
        return b"%d" % int(value)
    return fpconv_dtoa(value)


# -- tail calls -> calls -----------------------------------------------------------------------

_OP_CALL, _OP_TAILCALL = 28, 29
_HEADER = b"\x1bLua\x51\x00\x01\x04\x08\x04\x08\x00"


def patch_tail_calls(dump: bytes) -> bytes:
    """Turn every OP_TAILCALL of a Lua 5.1 dump into OP_CALL (the OP_RETURN after it then
    returns the results): a script's frame stays on the stack under the functions it calls,
    as it does under Valkey's C functions."""
    if not dump.startswith(_HEADER):
        raise ValueError("unexpected Lua bytecode header")
    data = bytearray(dump)
    pos = _patch_function(data, len(_HEADER))
    if pos != len(data):
        raise ValueError("trailing bytes in Lua bytecode")
    return bytes(data)


def _patched_or_none(dump: bytes) -> bytes | None:
    """The patched dump, or None (the chunk then runs as compiled) if it is not as expected."""
    try:
        return patch_tail_calls(dump)
    except (ValueError, struct.error, IndexError):
        return None


def _skip_string(data: bytearray, pos: int) -> int:
    (size,) = struct.unpack_from("<Q", data, pos)
    return pos + 8 + size


def _patch_function(data: bytearray, pos: int) -> int:
    pos = _skip_string(data, pos)            # source
    pos += 4 + 4 + 4                         # linedefined, lastlinedefined, 4 bytes of counts
    (ncode,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for i in range(pos, pos + 4 * ncode, 4):
        if data[i] & 0x3F == _OP_TAILCALL:
            data[i] = (data[i] & 0xC0) | _OP_CALL
    pos += 4 * ncode
    (nconst,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(nconst):
        kind = data[pos]
        pos += 1
        if kind == 1:
            pos += 1
        elif kind == 3:
            pos += 8
        elif kind == 4:
            pos = _skip_string(data, pos)
        elif kind != 0:
            raise ValueError("unexpected constant type in Lua bytecode")
    (nproto,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(nproto):
        pos = _patch_function(data, pos)
    (nlines,) = struct.unpack_from("<i", data, pos)
    pos += 4 + 4 * nlines
    (nlocals,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(nlocals):
        pos = _skip_string(data, pos) + 8
    (nupvalues,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(nupvalues):
        pos = _skip_string(data, pos)
    return pos


# -- the engine -------------------------------------------------------------------------------

class LuaEngine:
    """A Lua runtime with Valkey's sandbox; `session` is the object the bridge serves while a
    script or a library load runs (calls, hook ticks, logging, resp changes)."""

    def __init__(self, versions: dict[str, Any]) -> None:
        from lupa.lua51 import LuaRuntime
        self.runtime = LuaRuntime(register_eval=False, unpack_returned_tuples=False,
                                  register_builtins=False, encoding=None)
        self.session: Any = None
        self.runs = 0
        ops: list[Callable] = [None] * 13      # type: ignore[list-item]
        ops[OP_CALL] = self._call
        ops[OP_HOOK] = self._hook
        ops[OP_ABORT_MESSAGE] = self._abort_message
        ops[OP_SETRESP] = self._setresp
        ops[OP_LOG] = self._log
        ops[OP_SHA1] = lambda s: hashlib.sha1(s).hexdigest().encode()
        ops[OP_ACL] = self._acl
        ops[OP_D2S] = lambda x: d2string(float(x))
        ops[OP_FLOAT_PACK] = _float_pack
        ops[OP_FLOAT_UNPACK] = _float_unpack
        ops[OP_MP_DOUBLE] = _mp_double
        ops[OP_PATCH] = _patched_or_none
        self.ops = ops
        bridge = self._bridge
        g = self.runtime.globals()
        load = g[b"loadstring"]
        null = g[b"newproxy"](False)
        libs = load(LIBS_LUA.encode(), b"=shardd")(bridge, null, OP_FLOAT_PACK, OP_FLOAT_UNPACK, OP_MP_DOUBLE)
        version_table = self.runtime.table_from({key.encode(): value for key, value in versions.items()})
        op_table = self.runtime.table(OP_CALL, OP_HOOK, OP_ABORT_MESSAGE, OP_SETRESP, OP_LOG, OP_SHA1, OP_ACL,
                                      OP_D2S, OP_PATCH, ARG_ERROR)
        self.host = load(SANDBOX_LUA.encode(), b"=shardd")(bridge, libs, null, version_table, op_table)
        # The host's global table is out of scripts' reach (their functions carry the sandbox's
        # environment; loadstring/load are wrapped); what lupa does not need goes anyway.
        for name in (b"python", b"os", b"io", b"package", b"require", b"dofile", b"loadfile", b"module"):
            g[name] = None
        self.compile_eval = self.host[b"compile_eval"]
        self.run_eval = self.host[b"run_eval"]
        self.run_function = self.host[b"run_function"]
        self.stage = self.host[b"stage"]
        self.load_library = self.host[b"load_library"]
        self.gc_step = self.host[b"gc_step"]

    # -- the bridge: the one Python callable Lua holds -----------------------------------
    def _bridge(self, op, *args):
        try:
            return self.ops[op](*args)
        except BaseException as exc:      # a Python error must never unwind through Lua
            session = self.session
            if session is not None:
                session.fatal(exc)
            return ABORT

    def _call(self, *args):
        session = self.session
        if session is None:
            return b"-ERR server calls are only possible while a script runs\r\n"
        argv = []
        for a in args:
            t = type(a)
            if t is bytes:
                argv.append(a)
            elif t is int or t is float:
                argv.append(number_argument(a))
            else:
                return ARG_ERROR
        return session.call(argv)

    def _acl(self, *args):
        argv = []
        for a in args:
            t = type(a)
            if t is bytes:
                argv.append(a)
            elif t is int or t is float:
                argv.append(number_argument(a))
            else:
                return ARG_ERROR
        from .. import commands
        spec = commands.lookup(argv[0])
        if spec is not None and spec.subcommands and len(argv) > 1:
            spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
        if spec is None:
            return False
        user = getattr(self.session, "user", None)      # scripting.Session: None when unrestricted
        if user is None:
            return True
        try:
            return user.check(spec, argv)[0] == 0 or 0     # 0 (not false): allowed or not, no error
        except (IndexError, ValueError):                   # arguments too short to find its keys
            return True

    def _hook(self):
        session = self.session
        if session is None:
            return 0
        return session.tick()

    def _abort_message(self):
        session = self.session
        return session.abort_message() if session is not None else b"Script aborted"

    def _setresp(self, n):
        if self.session is not None:
            self.session.resp = n

    def _log(self, level, message):
        from .. import log
        names = ("debug", "verbose", "notice", "warning")
        log.log(names[level], message.decode("utf-8", "replace"))

    # -- helpers for the script runners ----------------------------------------------------
    def pass_arguments(self, keys: list[bytes], args: list[bytes]) -> tuple:
        """Arguments for run_eval/run_function after (fn, proto): nkeys then the values;
        long lists go through `stage` (the Lua C stack takes ~8000 values)."""
        values = keys + args
        if len(values) <= 64:
            return (len(keys), *values)
        for i in range(0, len(values), 64):
            self.stage(*values[i:i + 64])
        return (len(keys),)

    def step_gc(self) -> None:
        """Valkey's periodic collection step: every 50 scripts, 50 steps."""
        self.runs += 1
        if self.runs >= 50:
            self.runs = 0
            self.gc_step(50)


def _float_pack(x, size, little, negative_zero=False):
    x = -0.0 if negative_zero else float(x)
    order = "<" if little else ">"
    if size == 4:
        try:
            return struct.pack(order + "f", x)
        except OverflowError:
            return struct.pack(order + "f", math.copysign(math.inf, x))
    return struct.pack(order + "d", x)


def _float_unpack(data, size, little):
    order = "<" if little else ">"
    return struct.unpack(order + ("f" if size == 4 else "d"), data)[0]


def _mp_double(x):
    """cmsgpack: a float32 when the double survives the round trip, else a float64."""
    x = float(x)
    try:
        packed = struct.pack(">f", x)
        if struct.unpack(">f", packed)[0] == x:
            return b"\xca" + packed
    except OverflowError:
        pass
    return b"\xcb" + struct.pack(">d", x)


_ENGINE: LuaEngine | None = None


def engine() -> LuaEngine:
    """This process's Lua runtime, created on first use (after fork)."""
    global _ENGINE
    if _ENGINE is None:
        from .. import REDIS_VERSION, VALKEY_VERSION
        _ENGINE = LuaEngine({"redis": REDIS_VERSION.encode(), "redis_num": _version_num(REDIS_VERSION),
                             "valkey": VALKEY_VERSION.encode(), "valkey_num": _version_num(VALKEY_VERSION),
                             "name": b"valkey"})
    return _ENGINE


def _version_num(version: str) -> int:
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return (major << 16) | (minor << 8) | patch
