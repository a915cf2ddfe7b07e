"""cjson, cmsgpack, struct, bit and math.random for the script sandbox, in Lua.

lupa's Lua 5.1 ships none of the C libraries Valkey links into its interpreter, so they are
written here in Lua with the behaviour of Valkey's lua_cjson.c (cjson 2.1.0: `%.14g`
numbers, `\\/` escapes, sparse-array and depth rules, the same error texts), lua_cmsgpack.c
(0.4.0), lua_struct.c, lua_bit.c (LuaBitOp: arguments normalised with the 2^52+2^51 trick)
and redisLrand48 (the random sequence Valkey's math.random gives). IEEE float bytes come
from the host bridge (exact conversions); everything else is plain Lua.

The chunk runs once per runtime with (bridge, null sentinel, op codes) and returns the
library tables. Errors name the caller's line like luaL_error does: `raise` skips this
file's frames (chunk name "=shardd").
"""

LIBS_LUA = r"""
local bridge, NULL, OP_FLOAT_PACK, OP_FLOAT_UNPACK, OP_MP_DOUBLE = ...
local type, tostring, tonumber, error, select, next, rawget, rawset, unpack, setmetatable =
      type, tostring, tonumber, error, select, next, rawget, rawset, unpack, setmetatable
local sbyte, schar, ssub, sfind, sformat, sgsub, srep, slower, supper =
      string.byte, string.char, string.sub, string.find, string.format, string.gsub, string.rep,
      string.lower, string.upper
local tconcat = table.concat
local floor, ceil, huge, frexp = math.floor, math.ceil, math.huge, math.frexp
local getinfo = debug.getinfo
local INTERNAL = "=shardd"
local TAIL = "=(tail call)"

-- luaL_error's position: the first frame outside this code (a C caller gives none).
local function raise(msg)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info then error(msg, 0) end
    if info.source ~= INTERNAL and info.source ~= TAIL then error(msg, level) end
    level = level + 1
  end
end

local TYPENAMES = {["nil"] = "nil"}
local function typename(n, ...)
  if select('#', ...) < n then return "no value" end
  return type((select(n, ...)))
end

local function argerror(n, fname, msg)
  raise(sformat("bad argument #%d to '%s' (%s)", n, fname, msg))
end

-- luaL_checknumber / luaL_checkinteger: numbers and numeric strings.
local function checknumber(n, fname, ...)
  local v = (select(n, ...))
  local x = tonumber(v)
  if x == nil or (type(v) ~= 'number' and type(v) ~= 'string') then
    argerror(n, fname, "number expected, got " .. typename(n, ...))
  end
  return x
end

local function toint(x)   -- C's (int)/(long) cast of a double: truncation toward zero
  if x >= 0 then return floor(x) end
  return ceil(x)
end

local function checkint(n, fname, ...)
  return toint(checknumber(n, fname, ...))
end

local function optint(n, fname, default, ...)
  local v = (select(n, ...))
  if v == nil then return default end
  return checkint(n, fname, ...)
end

local function checkstring(n, fname, ...)
  local v = (select(n, ...))
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then return tostring(v) end
  argerror(n, fname, "string expected, got " .. typename(n, ...))
end

-- 32-bit helpers on non-negative numbers ------------------------------------------------
local TWO32 = 4294967296
local function nibble_table(f)
  local t = {}
  for a = 0, 15 do
    for b = 0, 15 do
      local r, p = 0, 1
      local x, y = a, b
      for _ = 1, 4 do
        local xb, yb = x % 2, y % 2
        r = r + f(xb, yb) * p
        x, y, p = (x - xb) / 2, (y - yb) / 2, p * 2
      end
      t[a * 16 + b] = r
    end
  end
  return t
end
local AND = nibble_table(function(a, b) return (a == 1 and b == 1) and 1 or 0 end)
local OR = nibble_table(function(a, b) return (a == 1 or b == 1) and 1 or 0 end)
local XOR = nibble_table(function(a, b) return (a ~= b) and 1 or 0 end)

local function bitop(tbl, a, b)
  local r, p = 0, 1
  for _ = 1, 8 do
    local an, bn = a % 16, b % 16
    r = r + tbl[an * 16 + bn] * p
    a, b, p = (a - an) / 16, (b - bn) / 16, p * 16
  end
  return r
end

--------------------------------------------------------------------------------------------
-- bit (LuaBitOp)
--------------------------------------------------------------------------------------------
local MAGIC = 6755399441055744.0   -- 2^52 + 2^51

-- The low 32 bits of the IEEE image of n + 2^52+2^51, as LuaBitOp's barg reads them.
local function tobit_u(n)
  local s = n + MAGIC
  if s ~= s or s == huge or s == -huge or s == 0 then return 0 end
  if s < 0 then s = -s end
  if s >= 4503599627370496 and s < 9007199254740992 then
    return (s - 4503599627370496) % TWO32
  end
  local m, e = frexp(s)
  if e < -1021 then            -- subnormal: the mantissa field is s / 2^-1074
    return (s * 2^1074) % TWO32
  end
  return (m * 9007199254740992 - 4503599627370496) % TWO32
end

local function barg(i, fname, ...)
  local v = (select(i, ...))
  local x = tonumber(v)
  local b = 0
  if x ~= nil and (type(v) == 'number' or type(v) == 'string') then b = tobit_u(x) end
  if b == 0 and not (x ~= nil and (type(v) == 'number' or type(v) == 'string')) then
    argerror(i, fname, "number expected, got " .. typename(i, ...))
  end
  return b
end

local function signed(b)
  if b >= 2147483648 then return b - TWO32 end
  return b
end

local function reduce(tbl, fname)
  return function(...)
    local b = barg(1, fname, ...)
    for i = select('#', ...), 2, -1 do
      b = bitop(tbl, b, barg(i, fname, ...))
    end
    return signed(b)
  end
end

local function shift_count(fname, ...)
  return barg(2, fname, ...) % 32
end

local bit = {
  tobit = function(...) return signed(barg(1, "tobit", ...)) end,
  bnot = function(...) return signed(TWO32 - 1 - barg(1, "bnot", ...)) end,
  band = reduce(AND, "band"),
  bor = reduce(OR, "bor"),
  bxor = reduce(XOR, "bxor"),
  lshift = function(...)
    local b, n = barg(1, "lshift", ...), shift_count("lshift", ...)
    return signed((b * 2 ^ n) % TWO32)
  end,
  rshift = function(...)
    local b, n = barg(1, "rshift", ...), shift_count("rshift", ...)
    return signed(floor(b / 2 ^ n))
  end,
  arshift = function(...)
    local b, n = barg(1, "arshift", ...), shift_count("arshift", ...)
    return signed(floor(signed(b) / 2 ^ n) % TWO32)
  end,
  rol = function(...)
    local b, n = barg(1, "rol", ...), shift_count("rol", ...)
    return signed((b * 2 ^ n) % TWO32 + floor(b / 2 ^ (32 - n)))
  end,
  ror = function(...)
    local b, n = barg(1, "ror", ...), shift_count("ror", ...)
    return signed(floor(b / 2 ^ n) + (b * 2 ^ (32 - n)) % TWO32)
  end,
  bswap = function(...)
    local b = barg(1, "bswap", ...)
    local b0, b1, b2, b3 = b % 256, floor(b / 256) % 256, floor(b / 65536) % 256, floor(b / 16777216)
    return signed(((b0 * 256 + b1) * 256 + b2) * 256 + b3)
  end,
  tohex = function(...)
    local b = barg(1, "tohex", ...)
    local n = 8
    if select('#', ...) >= 2 then n = signed(barg(2, "tohex", ...)) end
    local digits = "0123456789abcdef"
    if n < 0 then n = -n; digits = "0123456789ABCDEF" end
    if n > 8 then n = 8 end
    local out = {}
    for i = n, 1, -1 do
      local d = b % 16
      out[i] = ssub(digits, d + 1, d + 1)
      b = (b - d) / 16
    end
    return tconcat(out)
  end,
}

--------------------------------------------------------------------------------------------
-- math.random / math.randomseed over redisLrand48 (48-bit LCG in three 16-bit limbs)
--------------------------------------------------------------------------------------------
local rx0, rx1, rx2 = 0x330E, 0xABCD, 0x1234
local function lrand48()
  local t0 = 0xE66D * rx0 + 0xB
  local t1 = 0xE66D * rx1 + 0xDEEC * rx0 + floor(t0 / 65536)
  local t2 = 0xE66D * rx2 + 0xDEEC * rx1 + 0x5 * rx0 + floor(t1 / 65536)
  rx0, rx1, rx2 = t0 % 65536, t1 % 65536, t2 % 65536
  return rx2 * 32768 + floor(rx1 / 2)
end
local LRAND48_MAX = 2147483647

local function math_random(...)
  local r = (lrand48() % LRAND48_MAX) / LRAND48_MAX
  local n = select('#', ...)
  if n == 0 then return r end
  if n == 1 then
    local u = checkint(1, "random", ...)
    if not (1 <= u) then argerror(1, "random", "interval is empty") end
    return floor(r * u) + 1
  end
  if n == 2 then
    local l, u = checkint(1, "random", ...), checkint(2, "random", ...)
    if not (l <= u) then argerror(2, "random", "interval is empty") end
    return floor(r * (u - l + 1)) + l
  end
  raise("wrong number of arguments")
end

local function math_randomseed(...)
  local seed = checkint(1, "randomseed", ...) % TWO32   -- (int32_t) seed, as 32 bits
  rx0, rx1, rx2 = 0x330E, seed % 65536, floor(seed / 65536)
end

--------------------------------------------------------------------------------------------
-- cjson 2.1.0
--------------------------------------------------------------------------------------------
local ESCAPES = {}
for i = 0, 31 do ESCAPES[schar(i)] = sformat("\\u%04x", i) end
ESCAPES["\b"], ESCAPES["\t"], ESCAPES["\n"], ESCAPES["\f"], ESCAPES["\r"] = "\\b", "\\t", "\\n", "\\f", "\\r"
ESCAPES['"'], ESCAPES["\\"], ESCAPES["/"], ESCAPES["\127"] = '\\"', "\\\\", "\\/", "\\u007f"

local ESCAPE_CHARS = {[34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [116] = "\t",
                      [110] = "\n", [102] = "\f", [114] = "\r"}
local TOKEN_NAMES = {"T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", "T_ARR_END", "T_STRING",
                     "T_NUMBER", "T_BOOLEAN", "T_NULL", "T_COLON", "T_COMMA", "T_END",
                     "T_WHITESPACE", "T_ERROR", "T_UNKNOWN"}
local T_OBJ_BEGIN, T_OBJ_END, T_ARR_BEGIN, T_ARR_END, T_STRING, T_NUMBER, T_BOOLEAN, T_NULL,
      T_COLON, T_COMMA, T_END, T_ERROR = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13
local SINGLE = {[123] = T_OBJ_BEGIN, [125] = T_OBJ_END, [91] = T_ARR_BEGIN, [93] = T_ARR_END,
                [44] = T_COMMA, [58] = T_COLON}
local UNKNOWN = {[102] = true, [105] = true, [73] = true, [110] = true, [78] = true,
                 [116] = true, [34] = true, [43] = true, [45] = true}
for c = 48, 57 do UNKNOWN[c] = true end

-- The longest prefix of s at pos that C's strtod reads: the number and the position after it.
local function strtod(s, pos)
  local p = pos
  local c = sbyte(s, p)
  if c == 43 or c == 45 then p = p + 1 end
  local rest = slower(ssub(s, p, p + 7))
  local e
  if ssub(rest, 1, 8) == "infinity" then e = p + 7
  elseif ssub(rest, 1, 3) == "inf" then e = p + 2
  elseif ssub(rest, 1, 3) == "nan" then
    e = p + 2
    local close = sfind(s, "^%([%w_]*%)", p + 3)
    if close then e = sfind(s, ")", p + 3, true) end
  elseif ssub(rest, 1, 2) == "0x" and sfind(s, "^%x", p + 2) or
         (ssub(rest, 1, 3) == "0x." and sfind(s, "^%x", p + 3)) then
    local q = p + 2
    local _, d = sfind(s, "^%x*", q)
    q = d + 1
    if sbyte(s, q) == 46 then _, d = sfind(s, "^%x*", q + 1); q = d + 1 end
    local _, ed = sfind(s, "^[pP][+-]?%d+", q)
    if ed then q = ed + 1 end
    e = q - 1
  else
    local _, d = sfind(s, "^%d*", p)
    local q = d + 1
    local digits = d >= p
    if sbyte(s, q) == 46 then
      local _, d2 = sfind(s, "^%d*", q + 1)
      if d2 >= q + 1 then digits = true end
      q = d2 + 1
    end
    if not digits then return nil, pos end
    local _, ed = sfind(s, "^[eE][+-]?%d+", q)
    if ed then q = ed + 1 end
    e = q - 1
  end
  local v = tonumber(ssub(s, pos, e))
  if v == nil then return nil, pos end
  return v, e + 1
end

local function is_invalid_number(s, pos)
  local c = sbyte(s, pos)
  if c == 43 then return true end
  local p = pos
  if c == 45 then p = p + 1; c = sbyte(s, p) end
  if c == 48 then
    local c2 = sbyte(s, p + 1) or 0
    if c2 == 120 or c2 == 88 or (c2 >= 48 and c2 <= 57) then return true end
    return false
  elseif c == nil or c <= 57 then
    return false
  end
  local w = slower(ssub(s, p, p + 2))
  return w == "inf" or w == "nan"
end

local function new_cjson()
  local cfg = {sparse_convert = false, sparse_ratio = 2, sparse_safe = 10, encode_max_depth = 1000,
               decode_max_depth = 1000, encode_invalid = 0, decode_invalid = true,
               keep_buffer = true, precision = 14}
  local fmt = "%.14g"

  local function encode_number(v, what)
    if v ~= v or v == huge or v == -huge then
      if cfg.encode_invalid == 0 then raise("Cannot serialise " .. what .. ": must not be NaN or Inf") end
      if cfg.encode_invalid == 2 then return "null" end
      if v ~= v then return "nan" end
    end
    return sformat(fmt, v)
  end

  local function array_length(t)
    local max, items = 0, 0
    for k in next, t do
      if type(k) == 'number' and k ~= 0 and floor(k) == k and k >= 1 then
        if k > max then max = k end
        items = items + 1
      else
        return -1
      end
    end
    if cfg.sparse_ratio > 0 and max > items * cfg.sparse_ratio and max > cfg.sparse_safe then
      if not cfg.sparse_convert then raise("Cannot serialise table: excessively sparse array") end
      return -1
    end
    return max
  end

  local encode_value
  encode_value = function(v, depth, out)
    local t = type(v)
    if t == 'string' then
      out[#out + 1] = '"' .. sgsub(v, '[%c"\\/]', ESCAPES) .. '"'
    elseif t == 'number' then
      out[#out + 1] = encode_number(v, "number")
    elseif t == 'boolean' then
      out[#out + 1] = v and "true" or "false"
    elseif t == 'table' then
      depth = depth + 1
      if depth > cfg.encode_max_depth then raise("Cannot serialise, excessive nesting (" .. depth .. ")") end
      local n = array_length(v)
      if n > 0 then
        out[#out + 1] = "["
        for i = 1, n do
          if i > 1 then out[#out + 1] = "," end
          encode_value(rawget(v, i), depth, out)
        end
        out[#out + 1] = "]"
      else
        out[#out + 1] = "{"
        local comma = false
        for k, val in next, v do
          if comma then out[#out + 1] = "," else comma = true end
          local kt = type(k)
          if kt == 'number' then
            out[#out + 1] = '"' .. encode_number(k, "number") .. '":'
          elseif kt == 'string' then
            out[#out + 1] = '"' .. sgsub(k, '[%c"\\/]', ESCAPES) .. '":'
          else
            raise("Cannot serialise " .. kt .. ": table key must be a number or string")
          end
          encode_value(val, depth, out)
        end
        out[#out + 1] = "}"
      end
    elseif t == 'nil' or v == NULL then
      out[#out + 1] = "null"
    else
      raise("Cannot serialise " .. t .. ": type not supported")
    end
  end

  local function encode(...)
    if select('#', ...) ~= 1 then argerror(1, "encode", "expected 1 argument") end
    local out = {}
    encode_value((...), 0, out)
    return tconcat(out)
  end

  -- decoding -------------------------------------------------------------------------------
  local s, pos, depth   -- the parse state of the current decode()

  local function unicode_escape(at)   -- at: the backslash of \uXXXX
    local hex = ssub(s, at + 2, at + 5)
    if not sfind(hex, "^%x%x%x%x$") then return nil end
    local cp = tonumber(hex, 16)
    local len = 6
    if cp >= 0xD800 and cp <= 0xDFFF then
      if cp >= 0xDC00 then return nil end
      if ssub(s, at + 6, at + 7) ~= "\\u" then return nil end
      local low = ssub(s, at + 8, at + 11)
      if not sfind(low, "^%x%x%x%x$") then return nil end
      local lo = tonumber(low, 16)
      if lo < 0xDC00 or lo > 0xDFFF then return nil end
      cp = (cp - 0xD800) * 1024 + (lo - 0xDC00) + 0x10000
      len = 12
    end
    local u
    if cp <= 0x7F then u = schar(cp)
    elseif cp <= 0x7FF then u = schar(floor(cp / 64) + 0xC0, cp % 64 + 0x80)
    elseif cp <= 0xFFFF then u = schar(floor(cp / 4096) + 0xE0, floor(cp / 64) % 64 + 0x80, cp % 64 + 0x80)
    else u = schar(floor(cp / 262144) + 0xF0, floor(cp / 4096) % 64 + 0x80, floor(cp / 64) % 64 + 0x80, cp % 64 + 0x80) end
    return u, len
  end

  -- The next token: type, value, 0-based index where it starts (pos moves past it).
  local function next_token()
    local c = sbyte(s, pos)
    while c == 32 or c == 9 or c == 10 or c == 13 do pos = pos + 1; c = sbyte(s, pos) end
    local index = pos - 1
    if c == nil or c == 0 then return T_END, nil, index end
    local single = SINGLE[c]
    if single then pos = pos + 1; return single, nil, index end
    if not UNKNOWN[c] then return T_ERROR, "invalid token", index end
    if c == 34 then
      local parts = {}
      local i = pos + 1
      while true do
        local j = sfind(s, '["\\%z]', i)
        if not j then return T_ERROR, "unexpected end of string", #s end
        parts[#parts + 1] = ssub(s, i, j - 1)
        local cj = sbyte(s, j)
        if cj == 34 then pos = j + 1; return T_STRING, tconcat(parts), index end
        if cj == 0 then return T_ERROR, "unexpected end of string", j - 1 end
        local e = sbyte(s, j + 1)
        if e == 117 then
          local u, len = unicode_escape(j)
          if not u then return T_ERROR, "invalid unicode escape code", j - 1 end
          parts[#parts + 1] = u
          i = j + len
        else
          local ch = e and ESCAPE_CHARS[e]
          if not ch then return T_ERROR, "invalid escape code", j - 1 end
          parts[#parts + 1] = ch
          i = j + 2
        end
      end
    end
    if c == 45 or (c >= 48 and c <= 57) then
      if not cfg.decode_invalid and is_invalid_number(s, pos) then return T_ERROR, "invalid number", index end
      local v, np = strtod(s, pos)
      if v == nil then return T_ERROR, "invalid number", index end
      pos = np
      return T_NUMBER, v, index
    end
    local word = ssub(s, pos, pos + 4)
    if ssub(word, 1, 4) == "true" then pos = pos + 4; return T_BOOLEAN, true, index end
    if word == "false" then pos = pos + 5; return T_BOOLEAN, false, index end
    if ssub(word, 1, 4) == "null" then pos = pos + 4; return T_NULL, nil, index end
    if cfg.decode_invalid and is_invalid_number(s, pos) then
      local v, np = strtod(s, pos)
      if v == nil then return T_ERROR, "invalid number", index end
      pos = np
      return T_NUMBER, v, index
    end
    return T_ERROR, "invalid token", index
  end

  local function parse_error(expected, tok, val, index)
    local found = tok == T_ERROR and val or TOKEN_NAMES[tok]
    raise(sformat("Expected %s but found %s at character %d", expected, found, index + 1))
  end

  local function descend()
    depth = depth + 1
    if depth > cfg.decode_max_depth then
      raise(sformat("Found too many nested data structures (%d) at character %d", depth, pos - 1))
    end
  end

  local parse_value
  parse_value = function(tok, val, index)
    if tok == T_STRING or tok == T_NUMBER or tok == T_BOOLEAN then return val end
    if tok == T_NULL then return NULL end
    if tok == T_OBJ_BEGIN then
      descend()
      local t = {}
      local ktok, kval, kindex = next_token()
      if ktok == T_OBJ_END then depth = depth - 1; return t end
      while true do
        if ktok ~= T_STRING then parse_error("object key string", ktok, kval, kindex) end
        local ctok, cval, cindex = next_token()
        if ctok ~= T_COLON then parse_error("colon", ctok, cval, cindex) end
        rawset(t, kval, parse_value(next_token()))
        local etok, eval, eindex = next_token()
        if etok == T_OBJ_END then depth = depth - 1; return t end
        if etok ~= T_COMMA then parse_error("comma or object end", etok, eval, eindex) end
        ktok, kval, kindex = next_token()
      end
    end
    if tok == T_ARR_BEGIN then
      descend()
      local t = {}
      local vtok, vval, vindex = next_token()
      if vtok == T_ARR_END then depth = depth - 1; return t end
      local i = 1
      while true do
        rawset(t, i, parse_value(vtok, vval, vindex))
        local etok, eval, eindex = next_token()
        if etok == T_ARR_END then depth = depth - 1; return t end
        if etok ~= T_COMMA then parse_error("comma or array end", etok, eval, eindex) end
        i = i + 1
        vtok, vval, vindex = next_token()
      end
    end
    parse_error("value", tok, val, index)
  end

  local function decode(...)
    if select('#', ...) ~= 1 then argerror(1, "decode", "expected 1 argument") end
    local text = checkstring(1, "decode", ...)
    if #text >= 2 and (sbyte(text, 1) == 0 or sbyte(text, 2) == 0) then
      raise("JSON parser does not support UTF-16 or UTF-32")
    end
    s, pos, depth = text, 1, 0
    local value = parse_value(next_token())
    local tok, val, index = next_token()
    if tok ~= T_END then parse_error("the end", tok, val, index) end
    s = nil
    return value
  end

  -- configuration ----------------------------------------------------------------------------
  local function arg_init(n, fname, ...)
    if select('#', ...) > n then argerror(n + 1, fname, "found too many arguments") end
  end
  local function int_option(i, fname, key, min, max, ...)
    local v = (select(i, ...))
    if v ~= nil then
      local x = checkint(i, fname, ...)
      if not (min <= x and x <= max) then
        argerror(1, fname, sformat("expected integer between %d and %d", min, max))
      end
      cfg[key] = x
    end
    return cfg[key]
  end
  local function bool_option(i, fname, key, ...)
    local v = (select(i, ...))
    if v ~= nil then
      if type(v) == 'boolean' then cfg[key] = v
      else
        local o = checkstring(i, fname, ...)
        if o == "on" then cfg[key] = true
        elseif o == "off" then cfg[key] = false
        else argerror(i, fname, "invalid option '" .. o .. "'") end
      end
    end
    return cfg[key]
  end

  local cjson = {
    encode = encode,
    decode = decode,
    encode_sparse_array = function(...)
      arg_init(3, "encode_sparse_array", ...)
      return bool_option(1, "encode_sparse_array", "sparse_convert", ...),
             int_option(2, "encode_sparse_array", "sparse_ratio", 0, 2147483647, ...),
             int_option(3, "encode_sparse_array", "sparse_safe", 0, 2147483647, ...)
    end,
    encode_max_depth = function(...)
      arg_init(1, "encode_max_depth", ...)
      return int_option(1, "encode_max_depth", "encode_max_depth", 1, 2147483647, ...)
    end,
    decode_max_depth = function(...)
      arg_init(1, "decode_max_depth", ...)
      return int_option(1, "decode_max_depth", "decode_max_depth", 1, 2147483647, ...)
    end,
    encode_number_precision = function(...)
      arg_init(1, "encode_number_precision", ...)
      local p = int_option(1, "encode_number_precision", "precision", 1, 14, ...)
      fmt = "%." .. p .. "g"
      return p
    end,
    encode_keep_buffer = function(...)
      arg_init(1, "encode_keep_buffer", ...)
      return bool_option(1, "encode_keep_buffer", "keep_buffer", ...)
    end,
    encode_invalid_numbers = function(...)
      arg_init(1, "encode_invalid_numbers", ...)
      local v = (select(1, ...))
      if v ~= nil then
        if type(v) == 'boolean' then cfg.encode_invalid = v and 1 or 0
        else
          local o = checkstring(1, "encode_invalid_numbers", ...)
          if o == "off" then cfg.encode_invalid = 0
          elseif o == "on" then cfg.encode_invalid = 1
          elseif o == "null" then cfg.encode_invalid = 2
          else argerror(1, "encode_invalid_numbers", "invalid option '" .. o .. "'") end
        end
      end
      if cfg.encode_invalid == 2 then return "null" end
      return cfg.encode_invalid == 1
    end,
    decode_invalid_numbers = function(...)
      arg_init(1, "decode_invalid_numbers", ...)
      return bool_option(1, "decode_invalid_numbers", "decode_invalid", ...)
    end,
    null = NULL,
    _NAME = "cjson",
    _VERSION = "2.1.0",
  }
  cjson.new = new_cjson
  return cjson
end

--------------------------------------------------------------------------------------------
-- cmsgpack 0.4.0
--------------------------------------------------------------------------------------------
local function be_bytes(n, count)   -- a non-negative integral number as big-endian bytes
  local out = {}
  for i = count, 1, -1 do
    local b = n % 256
    out[i] = b
    n = (n - b) / 256
  end
  return schar(unpack(out))
end

local function int64_bytes(n)       -- two's complement 64-bit, big-endian
  local hi = floor(n / TWO32)
  local lo = n - hi * TWO32
  if hi < 0 then hi = hi + TWO32 end
  return be_bytes(hi, 4) .. be_bytes(lo, 4)
end

local function mp_int(n)
  if n >= 0 then
    if n <= 127 then return schar(n) end
    if n <= 0xff then return "\204" .. schar(n) end
    if n <= 0xffff then return "\205" .. be_bytes(n, 2) end
    if n <= 0xffffffff then return "\206" .. be_bytes(n, 4) end
    return "\207" .. int64_bytes(n)
  end
  if n >= -32 then return schar(n + 256) end
  if n >= -128 then return "\208" .. schar(n + 256) end
  if n >= -32768 then return "\209" .. be_bytes(n + 65536, 2) end
  if n >= -2147483648 then return "\210" .. be_bytes(n + TWO32, 4) end
  return "\211" .. int64_bytes(n)
end

local function mp_bytes(s)
  local len = #s
  if len < 32 then return schar(0xa0 + len) .. s end
  if len <= 0xff then return "\217" .. schar(len) .. s end
  if len <= 0xffff then return "\218" .. be_bytes(len, 2) .. s end
  return "\219" .. be_bytes(len, 4) .. s
end

local function mp_header(n, fix, b16, b32)
  if n <= 15 then return schar(fix + n) end
  if n <= 65535 then return b16 .. be_bytes(n, 2) end
  return b32 .. be_bytes(n, 4)
end

local TWO63 = 9223372036854775808
local function is_int64(n)
  return n == n and n ~= huge and n ~= -huge and floor(n) == n and n >= -TWO63 and n < TWO63
end

local function mp_is_array(t)
  local count, max = 0, 0
  for k in next, t do
    if type(k) ~= 'number' or k <= 0 or floor(k) ~= k or k > 2147483647 then return false end
    if k > max then max = k end
    count = count + 1
  end
  return max == count
end

local mp_encode
mp_encode = function(v, level, out)
  local t = type(v)
  if t == 'table' and level == 16 then t = 'nil' end
  if t == 'string' then out[#out + 1] = mp_bytes(v)
  elseif t == 'boolean' then out[#out + 1] = v and "\195" or "\194"
  elseif t == 'number' then
    if is_int64(v) then out[#out + 1] = mp_int(v)
    else out[#out + 1] = bridge(OP_MP_DOUBLE, v) end
  elseif t == 'table' then
    if mp_is_array(v) then
      local n = #v
      out[#out + 1] = mp_header(n, 0x90, "\220", "\221")
      for j = 1, n do mp_encode(v[j], level + 1, out) end
    else
      local n = 0
      for _ in next, v do n = n + 1 end
      out[#out + 1] = mp_header(n, 0x80, "\222", "\223")
      for k, val in next, v do
        mp_encode(k, level + 1, out)
        mp_encode(val, level + 1, out)
      end
    end
  else
    out[#out + 1] = "\192"
  end
end

local function mp_pack(...)
  local n = select('#', ...)
  if n == 0 then argerror(0, "pack", "MessagePack pack needs input.") end
  local out = {}
  for i = 1, n do mp_encode((select(i, ...)), 0, out) end
  return tconcat(out)
end

local EOF, BADFMT = 1, 2
local mp_s, mp_pos, mp_len, mp_err

local function need(n) if mp_len - mp_pos + 1 < n then mp_err = EOF; return false end return true end
local function be_number(at, n)
  local v = 0
  for i = 0, n - 1 do v = v * 256 + sbyte(mp_s, at + i) end
  return v
end
local function be_word64(at, signed_value)
  local hi, lo = be_number(at, 4), be_number(at + 4, 4)
  if signed_value and hi >= 2147483648 then hi = hi - TWO32 end
  return hi * TWO32 + lo
end

local mp_decode
local function mp_array(n)
  local t = {}
  for i = 1, n do
    local v = mp_decode()
    if mp_err then return t end
    t[i] = v
  end
  return t
end
local function mp_map(n)
  local t = {}
  for _ = 1, n do
    local k = mp_decode()
    if mp_err then return t end
    local v = mp_decode()
    if mp_err then return t end
    if k == nil then error("table index is nil", 0) end
    if k ~= k then error("table index is NaN", 0) end
    t[k] = v
  end
  return t
end

mp_decode = function()
  if not need(1) then return end
  local p = mp_pos
  local c = sbyte(mp_s, p)
  if c == 0xcc then if not need(2) then return end mp_pos = p + 2; return sbyte(mp_s, p + 1)
  elseif c == 0xd0 then if not need(2) then return end mp_pos = p + 2; local v = sbyte(mp_s, p + 1); return v >= 128 and v - 256 or v
  elseif c == 0xcd then if not need(3) then return end mp_pos = p + 3; return be_number(p + 1, 2)
  elseif c == 0xd1 then if not need(3) then return end mp_pos = p + 3; local v = be_number(p + 1, 2); return v >= 32768 and v - 65536 or v
  elseif c == 0xce then if not need(5) then return end mp_pos = p + 5; return be_number(p + 1, 4)
  elseif c == 0xd2 then if not need(5) then return end mp_pos = p + 5; local v = be_number(p + 1, 4); return v >= 2147483648 and v - TWO32 or v
  elseif c == 0xcf then if not need(9) then return end mp_pos = p + 9; return be_word64(p + 1, true)
  elseif c == 0xd3 then if not need(9) then return end mp_pos = p + 9; return be_word64(p + 1, true)
  elseif c == 0xc0 then mp_pos = p + 1; return nil
  elseif c == 0xc3 then mp_pos = p + 1; return true
  elseif c == 0xc2 then mp_pos = p + 1; return false
  elseif c == 0xca then if not need(5) then return end mp_pos = p + 5; return bridge(OP_FLOAT_UNPACK, ssub(mp_s, p + 1, p + 4), 4, false)
  elseif c == 0xcb then if not need(9) then return end mp_pos = p + 9; return bridge(OP_FLOAT_UNPACK, ssub(mp_s, p + 1, p + 8), 8, false)
  elseif c == 0xd9 or c == 0xda then
    local hl = c == 0xd9 and 1 or 2
    if not need(1 + hl) then return end
    local l = be_number(p + 1, hl)
    if not need(1 + hl + l) then return end
    mp_pos = p + 1 + hl + l
    return ssub(mp_s, p + 1 + hl, p + hl + l)
  elseif c == 0xdb then
    if not need(5) then return end
    local l = be_number(p + 1, 4)
    mp_pos = p + 5
    if not need(l) then return end
    mp_pos = p + 5 + l
    return ssub(mp_s, p + 5, p + 4 + l)
  elseif c == 0xdc or c == 0xde then
    if not need(3) then return end
    mp_pos = p + 3
    local n = be_number(p + 1, 2)
    if c == 0xdc then return mp_array(n) end
    return mp_map(n)
  elseif c == 0xdd or c == 0xdf then
    if not need(5) then return end
    mp_pos = p + 5
    local n = be_number(p + 1, 4)
    if c == 0xdd then return mp_array(n) end
    return mp_map(n)
  elseif c < 0x80 then mp_pos = p + 1; return c
  elseif c >= 0xe0 then mp_pos = p + 1; return c - 256
  elseif c >= 0xa0 and c <= 0xbf then
    local l = c - 0xa0
    if not need(1 + l) then return end
    mp_pos = p + 1 + l
    return ssub(mp_s, p + 1, p + l)
  elseif c >= 0x90 and c <= 0x9f then mp_pos = p + 1; return mp_array(c - 0x90)
  elseif c >= 0x80 and c <= 0x8f then mp_pos = p + 1; return mp_map(c - 0x80)
  end
  mp_err = BADFMT
end

local function mp_unpack_full(s, limit, offset)
  local len = #s
  if offset < 0 or limit < 0 then
    raise(sformat("Invalid request to unpack with offset of %d and limit of %d.", offset, len))
  elseif offset > len then
    raise(sformat("Start offset %d greater than input length %d.", offset, len))
  end
  local decode_all = limit == 0 and offset == 0
  if decode_all then limit = 2147483647 end
  mp_s, mp_pos, mp_len, mp_err = s, offset + 1, len, nil
  local out, cnt = {}, 0
  while mp_pos <= mp_len and cnt < limit do
    local v = mp_decode()
    if mp_err == EOF then mp_s = nil; raise("Missing bytes in input.") end
    if mp_err == BADFMT then mp_s = nil; raise("Bad data format in input.") end
    cnt = cnt + 1
    out[cnt] = v
  end
  mp_s = nil
  if decode_all then return unpack(out, 1, cnt) end
  local left = mp_len - mp_pos + 1
  return (left == 0 and -1 or mp_pos - 1), unpack(out, 1, cnt)
end

local cmsgpack = {
  pack = mp_pack,
  unpack = function(...)
    return mp_unpack_full(checkstring(1, "unpack", ...), 0, 0)
  end,
  unpack_one = function(...)
    local offset = optint(2, "unpack_one", 0, ...)
    return mp_unpack_full(checkstring(1, "unpack_one", ...), 1, offset)
  end,
  unpack_limit = function(...)
    local limit = checkint(2, "unpack_limit", ...)
    local offset = optint(3, "unpack_limit", 0, ...)
    return mp_unpack_full(checkstring(1, "unpack_limit", ...), limit, offset)
  end,
  _NAME = "cmsgpack",
  _VERSION = "lua-cmsgpack 0.4.0",
  _COPYRIGHT = "Copyright (C) 2012, Redis Ltd.",
  _DESCRIPTION = "MessagePack C implementation for Lua",
}

--------------------------------------------------------------------------------------------
-- struct
--------------------------------------------------------------------------------------------
local MAXINTSIZE, MAXALIGN = 32, 8
local SIZES = {b = 1, B = 1, h = 2, H = 2, l = 8, L = 8, T = 8, f = 4, d = 8, x = 1}

local function getnum(fmt, i, default)   -- the number at fmt[i], the position after it
  local _, e = sfind(fmt, "^%d+", i)
  if not e then return default, i end
  local a = 0
  for j = i, e do
    local d = sbyte(fmt, j) - 48
    if a > 214748364 or a * 10 > 2147483647 - d then raise("integral size overflow") end
    a = a * 10 + d
  end
  return a, e + 1
end

local function optsize(opt, fmt, i)
  local size = SIZES[opt]
  if size then return size, i end
  if opt == 'c' then return getnum(fmt, i, 1) end
  if opt == 'i' or opt == 'I' then
    local sz, ni = getnum(fmt, i, 4)
    if sz > MAXINTSIZE then raise(sformat("integral size %d is larger than limit of %d", sz, MAXINTSIZE)) end
    return sz, ni
  end
  return 0, i
end

local function small_and(a, b)
  local r, p = 0, 1
  while a > 0 and b > 0 do
    local x, y = a % 2, b % 2
    if x == 1 and y == 1 then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end

local function gettoalign(len, align, opt, size)
  if size == 0 or opt == 'c' then return 0 end
  if size > align then size = align end
  return small_and(size - small_and(len, size - 1), size - 1)
end

local function controloption(opt, fmt, i, h, fname)
  if opt == ' ' then return i end
  if opt == '>' then h.little = false; return i end
  if opt == '<' then h.little = true; return i end
  if opt == '!' then
    local a, ni = getnum(fmt, i, MAXALIGN)
    if not (a > 0 and small_and(a, a - 1) == 0) then raise(sformat("alignment %d is not a power of 2", a)) end
    h.align = a
    return ni
  end
  argerror(1, fname, "invalid format option '" .. opt .. "'")
end

local function int_bytes(n, size, little)
  -- (Uinttype)(Inttype)n: 64-bit two's complement; bytes past the 8th are zero
  if n < 0 then n = ceil(n) else n = floor(n) end
  local hi = floor(n / TWO32)
  local lo = n - hi * TWO32
  hi = hi % TWO32
  local out = {}
  for k = 1, size do
    local byte = 0
    if k <= 4 then byte = floor(lo / 256 ^ (k - 1)) % 256
    elseif k <= 8 then byte = floor(hi / 256 ^ (k - 5)) % 256 end
    out[k] = byte
  end
  if not little then
    local r = {}
    for k = 1, size do r[k] = out[size - k + 1] end
    out = r
  end
  return schar(unpack(out))
end

local function struct_pack(...)
  local fmt = checkstring(1, "pack", ...)
  local args, nargs = {...}, select('#', ...)
  -- b_pack pushes a nil after its arguments: a missing one is "nil", not "no value".
  local function arg_type(i) return i > nargs and "nil" or type(args[i]) end
  local function number_arg(i)
    local v = args[i]
    local x = tonumber(v)
    if x == nil or (type(v) ~= 'number' and type(v) ~= 'string') then
      argerror(i, "pack", "number expected, got " .. arg_type(i))
    end
    return x
  end
  local function string_arg(i)
    local v = args[i]
    if type(v) == 'string' then return v end
    if type(v) == 'number' then return tostring(v) end
    argerror(i, "pack", "string expected, got " .. arg_type(i))
  end
  local h = {little = true, align = 1}
  local arg, total, out, i = 2, 0, {}, 1
  local flen = #fmt
  while i <= flen and sbyte(fmt, i) ~= 0 do
    local opt = ssub(fmt, i, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    local toalign = gettoalign(total, h.align, opt, size)
    total = total + toalign
    if toalign > 0 then out[#out + 1] = srep("\0", toalign) end
    if opt == 'b' or opt == 'B' or opt == 'h' or opt == 'H' or opt == 'l' or opt == 'L'
       or opt == 'T' or opt == 'i' or opt == 'I' then
      out[#out + 1] = int_bytes(number_arg(arg), size, h.little)
      arg = arg + 1
    elseif opt == 'x' then
      out[#out + 1] = "\0"
    elseif opt == 'f' or opt == 'd' then
      local x = number_arg(arg)
      out[#out + 1] = bridge(OP_FLOAT_PACK, x, size, h.little, x == 0 and 1 / x < 0)
      arg = arg + 1
    elseif opt == 'c' or opt == 's' then
      local str = string_arg(arg)
      arg = arg + 1
      local l = #str
      if size == 0 then size = l end
      if not (l >= size) then argerror(arg, "pack", "string too short") end
      out[#out + 1] = ssub(str, 1, size)
      if opt == 's' then out[#out + 1] = "\0"; size = size + 1 end
    else
      i = controloption(opt, fmt, i, h, "pack")
    end
    total = total + size
  end
  return tconcat(out)
end

local function get_integer(data, at, size, little, is_signed)
  local lo, hi = 0, 0
  local n = size > 8 and 8 or size
  for k = 1, n do   -- k-th least significant byte
    local byte = little and sbyte(data, at + k - 1) or sbyte(data, at + size - k)
    if k <= 4 then lo = lo + byte * 256 ^ (k - 1) else hi = hi + byte * 256 ^ (k - 5) end
  end
  if is_signed and n < 8 then
    local v = hi * TWO32 + lo
    local limit = 2 ^ (n * 8 - 1)
    if v >= limit then v = v - 2 * limit end
    return v
  end
  if is_signed and hi >= 2147483648 then hi = hi - TWO32 end
  return hi * TWO32 + lo
end

local function struct_unpack(...)
  local fmt = checkstring(1, "unpack", ...)
  local data = checkstring(2, "unpack", ...)
  local ld = #data
  local pos = optint(3, "unpack", 1, ...) - 1
  local h = {little = true, align = 1}
  local results, n, i = {}, 0, 1
  local flen = #fmt
  while i <= flen and sbyte(fmt, i) ~= 0 do
    local opt = ssub(fmt, i, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    pos = pos + gettoalign(pos, h.align, opt, size)
    if not (pos + size <= ld) then argerror(2, "unpack", "data string too short") end
    if opt == 'b' or opt == 'B' or opt == 'h' or opt == 'H' or opt == 'l' or opt == 'L'
       or opt == 'T' or opt == 'i' or opt == 'I' then
      n = n + 1
      results[n] = get_integer(data, pos + 1, size, h.little, slower(opt) == opt)
    elseif opt == 'x' then
      -- padding
    elseif opt == 'f' or opt == 'd' then
      n = n + 1
      results[n] = bridge(OP_FLOAT_UNPACK, ssub(data, pos + 1, pos + size), size, h.little)
    elseif opt == 'c' then
      if size == 0 then
        if n == 0 or type(results[n]) ~= 'number' then raise("format 'c0' needs a previous size") end
        size = results[n]
        results[n] = nil
        n = n - 1
        if not (pos + size <= ld) then argerror(2, "unpack", "data string too short") end
      end
      n = n + 1
      results[n] = ssub(data, pos + 1, pos + size)
    elseif opt == 's' then
      local e = sfind(data, "\0", pos + 1, true)
      if not e then raise("unfinished string in data") end
      size = e - pos
      n = n + 1
      results[n] = ssub(data, pos + 1, e - 1)
    else
      i = controloption(opt, fmt, i, h, "unpack")
    end
    pos = pos + size
  end
  n = n + 1
  results[n] = pos + 1
  return unpack(results, 1, n)
end

local function struct_size(...)
  local fmt = checkstring(1, "size", ...)
  local h = {little = true, align = 1}
  local pos, i = 0, 1
  local flen = #fmt
  while i <= flen and sbyte(fmt, i) ~= 0 do
    local opt = ssub(fmt, i, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    pos = pos + gettoalign(pos, h.align, opt, size)
    if opt == 's' then argerror(1, "size", "option 's' has no fixed size")
    elseif opt == 'c' and size == 0 then argerror(1, "size", "option 'c0' has no fixed size") end
    if not sfind(opt, "^%w$") then i = controloption(opt, fmt, i, h, "size") end
    pos = pos + size
  end
  return pos
end

local struct = {pack = struct_pack, unpack = struct_unpack, size = struct_size}

return {cjson = new_cjson(), cmsgpack = cmsgpack, struct = struct, bit = bit,
        random = math_random, randomseed = math_randomseed, raise = raise, typename = typename,
        argerror = argerror, checkint = checkint}
"""
