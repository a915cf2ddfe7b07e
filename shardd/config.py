"""Valkey's configuration: the config table, CONFIG GET/SET semantics and the config file loader.

Everything is driven by `data/configs.json` (Valkey 8's config table: name, alias, type, mutability,
default, bounds, enum values) plus the few facts config.c keeps outside that table (the
`_FLAG_NAMES` overlay: memory/percent/octal parsing, multi-argument, hidden and protected
configs). Each config type has one parser and one renderer; the special configs (`save`,
`bind`, `client-output-buffer-limit`, ...) have one pair each.

Typed values (`Config.values`): bool -> bool; numeric -> int (memory values in bytes;
`maxmemory-clients` as a percentage is stored negative, as Valkey does); enum -> str (the
canonical name, bit-flag enums as "save now"); string/sds -> str; `save` -> list of
(seconds, changes); `bind` -> list[str]; `client-output-buffer-limit` -> {class: (hard, soft,
seconds)} for "normal", "slave", "pubsub"; `dir` -> absolute path; other specials -> str as
CONFIG GET prints it.
"""
from __future__ import annotations

import copy
import difflib
import errno
import glob
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable

from . import VALKEY_VERSION
from .glob import glob_match
from .numbers import string2ll

__all__ = [
    "Config", "ConfigError", "config_set_error", "load", "parse_memory", "split_args",
    "split_args_bytes",
]


class ConfigError(Exception):
    """A configuration problem; `str(exc)` is the message (Valkey's wording)."""


class ConfigFileError(ConfigError):
    """A fatal error while loading configuration text, already formatted like Valkey's."""


def config_set_error(name: str, reason: str) -> str:
    """The error reply CONFIG SET gives when setting `name` failed because of `reason`."""
    return f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"


# --------------------------------------------------------------------------------------------
# C-like number helpers
# --------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_C_CONSTANTS = {
    "INT_MIN": -(1 << 31), "INT_MAX": (1 << 31) - 1, "UINT_MAX": (1 << 32) - 1,
    "LONG_MIN": -(1 << 63), "LONG_MAX": (1 << 63) - 1, "ULONG_MAX": _MASK64,
    "LLONG_MIN": -(1 << 63), "LLONG_MAX": (1 << 63) - 1, "ULLONG_MAX": _MASK64,
    "SSIZE_MAX": (1 << 63) - 1,
}
_C_SPACE = " \t\n\v\f\r"


def _c_constant(text: str) -> int:
    """Evaluate a bound as written in config.c: a limit macro, a C literal or a product."""
    value = 1
    for factor in text.split("*"):
        factor = factor.strip()
        if factor in _C_CONSTANTS:
            value *= _C_CONSTANTS[factor]
        elif len(factor) > 1 and factor.startswith("0"):
            value *= int(factor, 8)
        else:
            value *= int(factor)
    return value


def _signed64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _c_int(value: int) -> int:
    """Truncate like a cast to a 32-bit C int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def _string2ll(text: str) -> int | None:
    """Valkey's strict string2ll on config text."""
    try:
        return string2ll(text.encode("ascii"))
    except UnicodeEncodeError:
        return None


def _strtoll(text: str, base: int = 10) -> tuple[int, str, bool]:
    """C's strtoll: (value, unparsed rest, overflowed). No digits leaves the whole text."""
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    start = i
    digits = "0123456789"[:base]
    while i < len(text) and text[i] in digits:
        i += 1
    if i == start:
        return 0, text, False
    value = sign * int(text[start:i], base)
    low, high = -(1 << 63), (1 << 63) - 1
    if not low <= value <= high:
        return (high if value > 0 else low), text[i:], True
    return value, text[i:], False


_MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2,
                 "g": 1000 ** 3, "gb": 1024 ** 3}


def parse_memory(text: str) -> int:
    """Valkey's memtoull: "1k" = 1000, "1kb" = 1024, m/mb, g/gb, case-insensitive.

    Raises ValueError for a negative number, an unknown unit or a value past 64 bits. Like
    Valkey, a unit with no digits ("" or "kb") is 0.
    """
    if text.startswith("-"):
        raise ValueError(f"invalid memory value: {text!r}")
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = text[digits:].lower()
    if unit not in _MEMORY_UNITS or digits >= 128:
        raise ValueError(f"invalid memory value: {text!r}")
    value = int(text[:digits] or "0") * _MEMORY_UNITS[unit]
    if value > _MASK64:
        raise ValueError(f"memory value out of range: {text!r}")
    return value


# --------------------------------------------------------------------------------------------
# sdssplitargs, sdscatrepr
# --------------------------------------------------------------------------------------------

_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"
_TOKEN_END = b" \n\r\t"
_SLOW_CHARS = re.compile(rb"[\"'\x0b\x0c\x00]")


def split_args_bytes(line: bytes) -> list[bytes] | None:
    """Valkey's sdssplitargs on bytes; None for unbalanced quotes (or a closing quote that is
    not followed by a space). Like the C code the line ends at its first NUL byte."""
    if not _SLOW_CHARS.search(line):
        return line.split()
    line = line.split(b"\0", 1)[0]
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\n\v\f\r":
            i += 1
        if i >= n:
            return args
        token, i = _read_token(line, i)
        if token is None:
            return None
        args.append(token)


def _read_token(line: bytes, i: int) -> tuple[bytes | None, int]:
    """Read one argument starting at `i`; returns (token, next index) or (None, _) on error."""
    out = bytearray()
    n = len(line)
    quote = 0  # 0, ord('"') or ord("'")
    while True:
        c = line[i] if i < n else 0
        if quote == 0:
            if c == 0 or c in _TOKEN_END:
                return bytes(out), i + (1 if c else 0)
            if c in b"\"'":
                quote = c
            else:
                out.append(c)
            i += 1
            continue
        if c == 0:
            return None, i  # unterminated quotes
        if c == quote:
            if i + 1 < n and line[i + 1] not in b" \t\n\v\f\r":
                return None, i  # closing quote must be followed by a space
            return bytes(out), i + 1
        nxt = line[i + 1] if i + 1 < n else 0
        if quote == 0x22 and c == 0x5C and nxt:  # backslash inside "..."
            if nxt == ord("x") and i + 3 < n and line[i + 2] in _HEX and line[i + 3] in _HEX:
                out.append(int(line[i + 2:i + 4], 16))
                i += 4
            else:
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
        elif quote == 0x27 and c == 0x5C and nxt == 0x27:  # \' inside '...'
            out.append(0x27)
            i += 2
        else:
            out.append(c)
            i += 1


def split_args(line: str) -> list[str] | None:
    """Valkey's sdssplitargs on text (shares the bytes implementation)."""
    args = split_args_bytes(line.encode("utf-8", "surrogateescape"))
    if args is None:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in args]


_REPR_ESCAPES = {0x5C: "\\\\", 0x22: '\\"', 10: "\\n", 13: "\\r", 9: "\\t", 7: "\\a", 8: "\\b"}


def _repr_arg(text: str) -> str:
    """Valkey's sdscatrepr: a double-quoted form that split_args reads back unchanged."""
    parts = ['"']
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte in _REPR_ESCAPES:
            parts.append(_REPR_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02x}")
    parts.append('"')
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_NUMERIC_TYPES = {"int", "uint", "ulong", "longlong", "ulonglong", "sizet", "ssizet", "offt",
                  "timet"}
_UNSIGNED_TYPES = {"uint", "ulong", "ulonglong", "sizet"}
_MULTI = "multi"
_FLAG_NAMES: dict[str, tuple[str, ...]] = {
    # numeric parsing (MEMORY_CONFIG where configs.json has no "unit", PERCENT_CONFIG, OCTAL)
    "memory": ("auto-aof-rewrite-min-size",),
    "percent": ("maxmemory-clients",),
    "octal": ("unixsocketperm",),
    # MULTI_ARG_CONFIG: several arguments, or one argument split on spaces
    _MULTI: ("save", "client-output-buffer-limit", "oom-score-adj-values", "bind", "replicaof",
             "latency-tracking-info-percentiles", "shutdown-on-sigint", "shutdown-on-sigterm"),
    # HIDDEN_CONFIG: CONFIG GET returns them only when asked by exact name
    "hidden": ("use-exit-on-panic", "aof-disable-auto-gc", "enable-debug-assert",
               "req-res-logfile", "debug-context", "events-per-io-thread", "rdb-key-save-delay",
               "key-load-delay", "watchdog-period", "cluster-ping-interval",
               "client-default-resp", "loading-process-events-interval-bytes"),
    # PROTECTED_CONFIG: CONFIG SET only with enable-protected-configs
    "protected": ("dir", "dbfilename"),
}
_BOUNDS_FALLBACK = {"auto-aof-rewrite-min-size": ("0", "LLONG_MAX")}
_SHUTDOWN_CODES = {"default": 0, "save": 1, "nosave": 2, "now": 4, "force": 8}
_ENUM_CODES: dict[str, dict[str, int]] = {
    "oom-score-adj": {"no": 0, "yes": 1, "relative": 1, "absolute": 2},
    "shutdown-on-sigint": _SHUTDOWN_CODES,
    "shutdown-on-sigterm": _SHUTDOWN_CODES,
}
# shardd's own directives, on top of Valkey's.
_SHARDD_CONFIGS: list[dict[str, Any]] = [
    {"name": "worker-processes", "type": "int", "mutable": False,
     "default": str(min(os.cpu_count() or 1, 64)), "min": "1", "max": "64"},
    {"name": "worker-cpulist", "type": "string", "mutable": False, "default": ""},
    {"name": "proxy-cpulist", "type": "string", "mutable": False, "default": ""},
]
# Directives that are not configs (handled by the file loader).
_DIRECTIVES = ("include", "rename-command", "user", "loadmodule")
_DEPRECATED = ("list-max-ziplist-entries", "list-max-ziplist-value", "lua-replicate-commands")


@dataclass(frozen=True, eq=False)
class Spec:
    """One config as the table describes it."""
    name: str
    alias: str | None
    type: str
    mutable: bool
    default: str
    flags: frozenset[str] = frozenset()
    lower: int = 0
    upper: int = 0
    values: tuple[str, ...] = ()
    codes: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Which parser/renderer pair handles this config."""
        if self.type in _NUMERIC_TYPES:
            return "numeric"
        if self.type in ("string", "sds"):
            return "string"
        return self.name if self.type == "special" else self.type

    @property
    def multi(self) -> bool:
        return _MULTI in self.flags


def _build_spec(raw: dict[str, Any]) -> Spec:
    name, typ = raw["name"], raw["type"]
    flags = {flag for flag, names in _FLAG_NAMES.items() if name in names}
    if raw.get("unit") == "bytes":
        flags.add("memory")
    lower = upper = 0
    if typ in _NUMERIC_TYPES:
        low, high = _BOUNDS_FALLBACK.get(name, (raw.get("min"), raw.get("max")))
        lower, upper = _c_constant(low), _c_constant(high)
    values = tuple(raw.get("values", ()))
    codes = _ENUM_CODES.get(name) or {v: i for i, v in enumerate(values)}
    return Spec(name=name, alias=raw.get("alias"), type=typ, mutable=raw["mutable"],
                default=raw["default"], flags=frozenset(flags), lower=lower, upper=upper,
                values=values, codes=codes)


def _load_table() -> list[Spec]:
    text = resources.files("shardd").joinpath("data/configs.json").read_text()
    return [_build_spec(raw) for raw in json.loads(text) + _SHARDD_CONFIGS]


_TABLE: list[Spec] = _load_table()
_SPECS: dict[str, Spec] = {spec.name: spec for spec in _TABLE}
# Every name CONFIG GET/SET knows (canonical names and aliases), lower case, in table order.
_LOOKUP: dict[str, Spec] = {}
for _spec in _TABLE:
    _LOOKUP[_spec.name] = _spec
    if _spec.alias:
        _LOOKUP[_spec.alias] = _spec


def _lookup(name: str) -> Spec | None:
    return _LOOKUP.get(name.lower())


# --------------------------------------------------------------------------------------------
# Parsers and renderers, one per type (and one per special config)
# --------------------------------------------------------------------------------------------

class _Invalid(ConfigError):
    """A value was rejected; the message is Valkey's reason."""


# parse(spec, args, old value, accumulate) -> new typed value; raises _Invalid.
Parser = Callable[[Spec, list[str], Any, bool], Any]
Renderer = Callable[[Spec, Any], str]


def _parse_bool(spec: Spec, args: list[str], old: Any, accumulate: bool) -> bool:
    word = args[0].lower()
    if word not in ("yes", "no"):
        raise _Invalid("argument must be 'yes' or 'no'")
    return word == "yes"


def _parse_numeric(spec: Spec, args: list[str], old: Any, accumulate: bool) -> int:
    value = _numeric_from_text(spec, args[0])
    _check_bounds(spec, value)
    return value & _MASK64 if spec.type in _UNSIGNED_TYPES else value


def _numeric_from_text(spec: Spec, text: str) -> int:
    """numericParseString: memory, then percent, then octal, then a plain integer."""
    if "memory" in spec.flags:
        try:
            return _signed64(parse_memory(text))
        except ValueError:
            pass
    if "percent" in spec.flags and len(text) > 1 and text.endswith("%"):
        value = _string2ll(text[:-1])
        if value is not None and value >= 0:
            return -value
    if "octal" in spec.flags:
        value, rest, overflow = _strtoll(text, 8)
        if not overflow and rest == "":
            return value
    if not spec.flags & {"memory", "percent", "octal"}:
        value = _string2ll(text)
        if value is not None:
            return value
    if {"memory", "percent"} <= spec.flags:
        raise _Invalid("argument must be a memory or percent value")
    if "memory" in spec.flags:
        raise _Invalid("argument must be a memory value")
    if "octal" in spec.flags:
        raise _Invalid("argument couldn't be parsed as an octal number")
    raise _Invalid("argument couldn't be parsed into an integer")


def _check_bounds(spec: Spec, value: int) -> None:
    """numericBoundaryCheck, including its unsigned comparison for unsigned types."""
    low, high = spec.lower, spec.upper
    if spec.type in _UNSIGNED_TYPES:
        low, high = low & _MASK64, high & _MASK64
        if not low <= value & _MASK64 <= high:
            fmt = "o" if "octal" in spec.flags else "d"
            raise _Invalid(f"argument must be between {low:{fmt}} and {high:{fmt}} inclusive")
    elif "percent" in spec.flags and value < 0:
        if value < low:
            raise _Invalid(f"percentage argument must be less or equal to {-low}")
    elif not low <= value <= high:
        raise _Invalid(f"argument must be between {low} and {high} inclusive")


def _render_numeric(spec: Spec, value: int) -> str:
    if "percent" in spec.flags and value < 0:
        return f"{-value}%"
    if "octal" in spec.flags:
        return format(value, "o")
    return str(value)


def _parse_string(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    return args[0]


def _parse_enum(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    """configEnumGetValue; bit-flag enums (multi-arg) OR their words together."""
    code = 0
    if not args or (not spec.multi and len(args) != 1) or any(
            a.lower() not in spec.codes for a in args):
        raise _Invalid("argument(s) must be one of the following: " + ", ".join(spec.values))
    for word in args:
        code |= spec.codes[word.lower()]
    return _enum_name(spec, code)


def _enum_name(spec: Spec, code: int) -> str:
    """configEnumGetName: the first exact match, else (bit flags) the words covering `code`."""
    names: list[str] = []
    unmatched = code
    for name in spec.values:
        val = spec.codes[name]
        if val == code:
            return name
        if spec.multi and val and val == unmatched & val:
            names.append(name)
            unmatched &= ~val
    return " ".join(names) if names and not unmatched else "unknown"


def _render_plain(spec: Spec, value: Any) -> str:
    return str(value)


def _render_bool(spec: Spec, value: bool) -> str:
    return "yes" if value else "no"


def _parse_save(spec: Spec, args: list[str], old: Any, accumulate: bool) -> list[tuple[int, int]]:
    """setConfigSaveOption: pairs of seconds >= 1 and changes >= 0; "" alone clears.
    While reading config text, lines after the first one append."""
    if len(args) == 1 and args[0] == "":
        return []
    if len(args) % 2:
        raise _Invalid("Invalid save parameters")
    numbers = []
    for j, arg in enumerate(args):
        value, rest, _ = _strtoll(arg)
        if rest or value < (1 if j % 2 == 0 else 0):
            raise _Invalid("Invalid save parameters")
        numbers.append(value)
    pairs = [(numbers[j], _c_int(numbers[j + 1])) for j in range(0, len(numbers), 2)]
    return list(old) + pairs if accumulate else pairs


def _render_save(spec: Spec, value: list[tuple[int, int]]) -> str:
    return " ".join(f"{seconds} {changes}" for seconds, changes in value)


def _parse_bind(spec: Spec, args: list[str], old: Any, accumulate: bool) -> list[str]:
    if len(args) > 16:
        raise _Invalid("Too many bind addresses specified.")
    return [] if args == [""] else list(args)


def _render_words(spec: Spec, value: list[str]) -> str:
    return " ".join(value)


_OBUF_CLASSES = {"normal": "normal", "slave": "slave", "replica": "slave", "pubsub": "pubsub"}


def _parse_obuf(spec: Spec, args: list[str], old: Any,
                accumulate: bool) -> dict[str, tuple[int, int, int]]:
    """updateClientOutputBufferLimit: <class> <hard> <soft> <soft_seconds>, all or nothing."""
    if len(args) % 4:
        raise _Invalid("Wrong number of arguments in buffer limit configuration.")
    limits = dict(old or {})
    for j in range(0, len(args), 4):
        cls = _OBUF_CLASSES.get(args[j].lower())
        if cls is None:
            raise _Invalid("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = parse_memory(args[j + 1]), parse_memory(args[j + 2])
        except ValueError:
            hard = soft = -1
        seconds, rest, _ = _strtoll(args[j + 3])
        seconds = _c_int(seconds)
        if hard < 0 or soft < 0 or seconds < 0 or rest:
            raise _Invalid("Error in hard, soft or soft_seconds setting in "
                           "buffer limit configuration.")
        limits[cls] = (hard, soft, seconds)
    return {cls: limits[cls] for cls in ("normal", "slave", "pubsub") if cls in limits}


def _render_obuf(spec: Spec, value: dict[str, tuple[int, int, int]]) -> str:
    return " ".join(f"{cls} {h} {s} {sec}" for cls, (h, s, sec) in value.items())


_KEYSPACE_FLAGS = {"g": 1 << 2, "$": 1 << 3, "l": 1 << 4, "s": 1 << 5, "h": 1 << 6, "z": 1 << 7,
                   "x": 1 << 8, "e": 1 << 9, "t": 1 << 10, "d": 1 << 13, "n": 1 << 14}
_KEYSPACE_ALL = sum(v for k, v in _KEYSPACE_FLAGS.items() if k != "n")
_KEYSPACE_CHANNELS = {"K": 1 << 0, "E": 1 << 1, "m": 1 << 11}


def _parse_keyspace_events(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    """keyspaceEventsStringToFlags, stored as keyspaceEventsFlagsToString prints it."""
    if len(args) != 1:
        raise _Invalid("wrong number of arguments")
    flags = 0
    for ch in args[0]:
        bit = _KEYSPACE_ALL if ch == "A" else _KEYSPACE_FLAGS.get(ch, _KEYSPACE_CHANNELS.get(ch))
        if bit is None:
            raise _Invalid("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        flags |= bit
    if flags & _KEYSPACE_ALL == _KEYSPACE_ALL:
        text = "A"  # like Valkey, "A" stands alone (even "n" is not repeated)
    else:
        text = "".join(k for k, v in _KEYSPACE_FLAGS.items() if flags & v)
    return text + "".join(k for k, v in _KEYSPACE_CHANNELS.items() if flags & v)


def _parse_dir(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    """setConfigDirOption, without the chdir: the path must be an accessible directory.
    A relative path is taken from the current `dir`, as successive chdir() calls would."""
    if len(args) != 1:
        raise _Invalid("wrong number of arguments")
    if args[0] == "":
        raise _Invalid("dir can't be empty")
    path = os.path.realpath(os.path.join(old or os.getcwd(), args[0]))
    problem = (errno.ENOENT if not os.path.exists(path) else
               errno.ENOTDIR if not os.path.isdir(path) else
               errno.EACCES if not os.access(path, os.X_OK) else 0)
    if problem:
        raise _Invalid(os.strerror(problem))
    return path


def _parse_replicaof(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    """setConfigReplicaOfOption: "<host> <port>" or "no one" (stored as "")."""
    if len(args) != 2:
        raise _Invalid("wrong number of arguments")
    if args[0].lower() == "no" and args[1].lower() == "one":
        return ""
    port, rest, _ = _strtoll(args[1])
    if rest or not 0 <= port <= 65535:
        raise _Invalid("Invalid primary port")
    return f"{args[0]} {port}"


def _parse_oom_values(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    if len(args) != 3:
        raise _Invalid("wrong number of arguments")
    values = []
    for arg in args:
        value, rest, _ = _strtoll(arg)
        if rest or not -2000 <= value <= 2000:
            raise _Invalid("Invalid oom-score-adj-values, elements must be between -2000 and 2000.")
        values.append(str(value))
    return " ".join(values)


_STRTOD = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?)", re.I)


def _parse_percentiles(spec: Spec, args: list[str], old: Any, accumulate: bool) -> str:
    if args == [""]:
        return ""
    shown = []
    for arg in args:
        if not _STRTOD.fullmatch(arg):
            raise _Invalid("Invalid latency-tracking-info-percentiles parameters")
        value = float(arg)
        if not 0.0 <= value <= 100.0:
            raise _Invalid("latency-tracking-info-percentiles parameters should sit between "
                           "[0.0,100.0]")
        text = f"{value:f}"
        shown.append(text.rstrip("0").rstrip(".") if "." in text else text)
    return " ".join(shown)


_KINDS: dict[str, tuple[Parser, Renderer]] = {
    "bool": (_parse_bool, _render_bool),
    "numeric": (_parse_numeric, _render_numeric),
    "string": (_parse_string, _render_plain),
    "enum": (_parse_enum, _render_plain),
    "save": (_parse_save, _render_save),
    "bind": (_parse_bind, _render_words),
    "client-output-buffer-limit": (_parse_obuf, _render_obuf),
    "notify-keyspace-events": (_parse_keyspace_events, _render_plain),
    "dir": (_parse_dir, _render_plain),
    "replicaof": (_parse_replicaof, _render_plain),
    "oom-score-adj-values": (_parse_oom_values, _render_plain),
    "latency-tracking-info-percentiles": (_parse_percentiles, _render_plain),
}


# Extra validity checks (config.c's is_valid_fn), on the parsed value; return an error or None.
def _filename_check(name: str, noun: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value == "":
            return f"{name} can't be empty"
        if "/" in value or "\\" in value:
            return f"{name} can't be a path, just a {noun}"
        return None
    return check


def _check_hostname(value: str) -> str | None:
    if len(value) >= 256:
        return "Hostnames must be less than 256 characters"
    if not re.fullmatch(r"[A-Za-z0-9.-]*", value):
        return "Hostnames may only contain alphanumeric characters, hyphens or dots"
    return None


def _check_nodename(value: str) -> str | None:
    if any(ch in "!#$%&()*+;<>?@[]^{|}~" for ch in value):
        return "Announced human node name contained invalid character"
    return None


def _ip_check(family: socket.AddressFamily, label: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value:
            try:
                socket.inet_pton(family, value)
            except (OSError, ValueError):
                return f"Invalid {label} address"
        return None
    return check


_TITLE_VARS = ("title", "listen-addr", "server-mode", "port", "tls-port", "unixsocket",
               "config-file")


def _check_title_template(value: str) -> str | None:
    """validateProcTitleTemplate: known {variables} only and a non-empty expansion."""
    out, i = [], 0
    while i < len(value):
        start = value.find("{", i)
        if start < 0:
            out.append(value[i:])
            break
        out.append(value[i:start])
        if value.startswith("{{", start):
            out.append("{")
            i = start + 2
            continue
        end = value.find("}", start)
        if end < 0 or value[start + 1:end] not in _TITLE_VARS:
            return "template format is invalid or contains unknown variables"
        out.append("" if value[start + 1:end] == "title" else "x")
        i = end + 1
    if not "".join(out).strip(" "):
        return "template format is invalid or contains unknown variables"
    return None


def _check_shutdown_flags(value: str) -> str | None:
    if {"save", "nosave"} <= set(value.split()):
        return "shutdown options SAVE and NOSAVE can't be used simultaneously"
    return None


_VALIDATORS: dict[str, Callable[[Any], str | None]] = {
    "dbfilename": _filename_check("dbfilename", "filename"),
    "appendfilename": _filename_check("appendfilename", "filename"),
    "appenddirname": _filename_check("appenddirname", "dirname"),
    "cluster-config-file": lambda v: "cluster-config-file can't be empty" if v == "" else None,
    "cluster-announce-hostname": _check_hostname,
    "cluster-announce-human-nodename": _check_nodename,
    "cluster-announce-client-ipv4": _ip_check(socket.AF_INET, "IPv4"),
    "cluster-announce-client-ipv6": _ip_check(socket.AF_INET6, "IPv6"),
    "proc-title-template": _check_title_template,
    "shutdown-on-sigint": _check_shutdown_flags,
    "shutdown-on-sigterm": _check_shutdown_flags,
}


def _expand_args(spec: Spec, args: list[str], startup: bool) -> list[str]:
    """One argument given to a multi-argument config is split: with sdssplitargs while
    loading config text (unless empty), on single spaces for CONFIG SET."""
    if not spec.multi or len(args) != 1:
        return list(args)
    if startup:
        return (split_args(args[0]) or []) if args[0] else list(args)
    return args[0].split(" ") if args[0] else []


def _parse_value(spec: Spec, args: list[str], old: Any, accumulate: bool) -> Any:
    if not spec.multi and len(args) != 1:
        raise _Invalid("wrong number of arguments")
    value = _KINDS[spec.kind][0](spec, args, old, accumulate)
    check = _VALIDATORS.get(spec.name)
    problem = check(value) if check else None
    if problem:
        raise _Invalid(problem)
    return value


# Defaults whose printed form is not something the config accepts ("dir" is set per Config).
_UNPARSED_DEFAULTS: dict[str, Any] = {"replicaof": ""}


def _table_defaults() -> dict[str, Any]:
    defaults = dict(_UNPARSED_DEFAULTS)
    for spec in _TABLE:
        if spec.name not in defaults and spec.name != "dir":
            args = _expand_args(spec, [spec.default], startup=False)
            defaults[spec.name] = _parse_value(spec, args, None, False)
    return defaults


_DEFAULTS: dict[str, Any] = _table_defaults()


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

class Config:
    """Typed config values plus the non-config directives (rename-command, user)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = copy.deepcopy(_DEFAULTS)
        self.values["dir"] = os.getcwd()
        self.renames: dict[str, str] = {}   # lower-case original name -> new name ("" = gone)
        self.users: list[str] = []          # raw `user ...` lines, in order
        self.config_file: str | None = None  # absolute path of the main config file
        self._loaded: set[str] = set()      # configs already set while loading config text

    # ---- lookups

    @staticmethod
    def canonical(name: str) -> str | None:
        """The canonical name of a config name or alias (any case), or None."""
        spec = _lookup(name)
        return spec.name if spec else None

    @staticmethod
    def names() -> list[str]:
        return [spec.name for spec in _TABLE]

    @staticmethod
    def is_mutable(name: str) -> bool:
        return _spec_or_key_error(name).mutable

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _lookup(name) is not None

    def get(self, name: str) -> Any:
        return self.values[_spec_or_key_error(name).name]

    __getitem__ = get

    def render(self, name: str) -> str:
        """The value as CONFIG GET prints it."""
        spec = _spec_or_key_error(name)
        return _KINDS[spec.kind][1](spec, self.values[spec.name])

    def get_matching(self, *patterns: str) -> list[tuple[str, str]]:
        """CONFIG GET: (name as matched, value) pairs. A pattern without glob characters is an
        exact, case-insensitive lookup (hidden configs included) answered under the name as
        asked; a glob matches canonical names and aliases in table order, hidden ones aside."""
        found: dict[str, tuple[str, str]] = {}
        for pattern in patterns:
            if not any(ch in pattern for ch in "[*?"):
                spec = _lookup(pattern)
                if spec and pattern.lower() not in found:
                    found[pattern.lower()] = (pattern, self.render(spec.name))
                continue
            pattern_bytes = pattern.encode("utf-8", "surrogateescape")
            for key, spec in _LOOKUP.items():
                if ("hidden" not in spec.flags and key not in found
                        and glob_match(pattern_bytes, key.encode(), nocase=True)):
                    found[key] = (key, self.render(spec.name))
        return list(found.values())

    # ---- changes

    def set(self, name: str, args: list[str], *, startup: bool = False,
            local: bool = True) -> None:
        """Validate and apply one config. `startup` means "read from config text": immutable
        configs are allowed, one value for a multi-argument config is split like Valkey's
        loader does, and `save` lines after the first append. Otherwise this is CONFIG SET
        (`local`: whether the client is local, for protected configs)."""
        spec = _lookup(name)
        if spec is None:
            raise ConfigError("Bad directive or wrong number of arguments" if startup else
                              f"Unknown option or number of arguments for CONFIG SET - '{name}'")
        if not startup:
            self._check_settable(spec, local)
        args = _expand_args(spec, args, startup)
        accumulate = startup and spec.name in self._loaded
        self.values[spec.name] = _parse_value(spec, args, self.values[spec.name], accumulate)
        if startup:
            self._loaded.add(spec.name)

    def _check_settable(self, spec: Spec, local: bool) -> None:
        if not spec.mutable:
            raise _Invalid("can't set immutable config")
        allowed = self.values["enable-protected-configs"]
        if "protected" in spec.flags and not (allowed == "yes" or (allowed == "local" and local)):
            raise _Invalid("can't set protected config")

    def config_set(self, pairs: list[tuple[str, str]], *, local: bool = True) -> list[str]:
        """CONFIG SET name value [name value ...]: all or nothing. Returns the canonical names
        set; raises ConfigError whose message is the full error reply (starting "ERR ")."""
        specs: list[Spec] = []
        for name, _ in pairs:
            spec = _lookup(name)
            if spec is None:
                raise ConfigError(
                    f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
            try:
                self._check_settable(spec, local)
            except ConfigError as exc:
                raise ConfigError(config_set_error(name, str(exc))) from None
            if spec in specs:
                raise ConfigError(config_set_error(name, "duplicate parameter"))
            specs.append(spec)
        backup = {spec.name: copy.deepcopy(self.values[spec.name]) for spec in specs}
        for (name, value), spec in zip(pairs, specs):
            try:
                self.set(spec.name, [value], local=local)
            except ConfigError as exc:
                self.values.update(backup)
                raise ConfigError(config_set_error(name.lower(), str(exc))) from None
        if "hz" in backup:
            cap_hz(self.values)
        return [spec.name for spec in specs]

    def rename_command(self, old: str, new: str) -> None:
        """rename-command: `new` == "" removes the command."""
        from . import commands
        current = {name: name for name in commands.COMMANDS if name not in self.renames}
        current.update({to: orig for orig, to in self.renames.items() if to})
        original = current.pop(old.lower(), None)
        if original is None:
            raise _Invalid("No such command in rename-command")
        if new and new.lower() in current:
            raise _Invalid("Target command name already exists")
        self.renames[original] = new.lower()

    # ---- passing to children

    def to_dict(self) -> dict[str, Any]:
        return {"values": copy.deepcopy(self.values), "renames": dict(self.renames),
                "users": list(self.users), "config_file": self.config_file}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        cfg.values.update(copy.deepcopy(data["values"]))
        cfg.values["save"] = [tuple(pair) for pair in cfg.values["save"]]
        cobl = cfg.values["client-output-buffer-limit"]
        cfg.values["client-output-buffer-limit"] = {k: tuple(v) for k, v in cobl.items()}
        cfg.renames = dict(data.get("renames", {}))
        cfg.users = list(data.get("users", []))
        cfg.config_file = data.get("config_file")
        return cfg


def _spec_or_key_error(name: str) -> Spec:
    spec = _lookup(name)
    if spec is None:
        raise KeyError(name)
    return spec


# --------------------------------------------------------------------------------------------
# Loading config files and command-line options
# --------------------------------------------------------------------------------------------

_MAX_INCLUDE_DEPTH = 32


def _fatal(reason: str, where: str | None = None, line: str | None = None) -> ConfigFileError:
    text = f"*** FATAL CONFIG FILE ERROR (Version {VALKEY_VERSION}) ***\n"
    if where is not None:
        text += f"Reading the configuration file, at {where}\n>>> '{line}'\n"
    return ConfigFileError(text + reason)


def _bad_directive(name: str) -> str:
    reason = "Bad directive or wrong number of arguments"
    if name in _LOOKUP or name in _DIRECTIVES:
        return reason
    guess = difflib.get_close_matches(name, [*_LOOKUP, *_DIRECTIVES], n=1)
    return f"{reason} — did you mean {guess[0]}?" if guess else reason


class _Loader:
    """loadServerConfigFromString: applies config text line by line to a Config."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def load_file(self, path: str, depth: int = 0) -> None:
        """A file, or every file a wildcard pattern matches (none is fine)."""
        if depth > _MAX_INCLUDE_DEPTH:
            raise _Invalid("include nesting is too deep")
        paths = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        for one in paths:
            try:
                with open(one, "rb") as fh:
                    text = fh.read().decode("utf-8", "surrogateescape")
            except OSError as exc:
                raise _fatal(f"Fatal error, can't open config file '{one}': "
                             f"{os.strerror(exc.errno or 0)}") from None
            self.load_text(text, f"'{os.path.abspath(one)}'", depth)

    def load_text(self, text: str, origin: str, depth: int = 0) -> None:
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.strip(" \t\r\n")
            if not line or line.startswith("#"):
                continue
            try:
                self._line(line, depth)
            except ConfigFileError:
                raise
            except ConfigError as exc:
                raise _fatal(str(exc), f"line {number} of {origin}", line) from None

    def _line(self, line: str, depth: int) -> None:
        argv = split_args(line)
        if argv is None:
            raise _Invalid("Unbalanced quotes in configuration line")
        if not argv:
            return
        name, argc = argv[0].lower(), len(argv)
        if name in _LOOKUP:
            self.cfg.set(name, argv[1:], startup=True)
        elif name in _DEPRECATED and argc == 2:
            pass
        elif name == "include" and argc == 2:
            self.load_file(argv[1], depth + 1)
        elif name == "rename-command" and argc == 3:
            self.cfg.rename_command(argv[1], argv[2])
        elif name == "user" and argc >= 2:
            from .proxy.acl import check_user_directive
            problem = check_user_directive(argv, [(split_args(u) or ["", ""])[1] for u in self.cfg.users])
            if problem:
                raise _Invalid(problem)
            self.cfg.users.append(line)
        elif name == "loadmodule" and argc >= 2:
            raise _Invalid("loadmodule is not supported")
        elif "." in name:
            raise _Invalid("Module Configuration detected without loadmodule directive or "
                           "no ApplyConfig call: aborting")
        elif name == "sentinel":
            if argc != 1:
                raise _Invalid("sentinel directive while not in sentinel mode")
        else:
            raise _Invalid(_bad_directive(name))

    def finish(self) -> None:
        """The sanity checks Valkey runs once all config text is read."""
        values = self.cfg.values
        if values["logfile"]:
            try:
                open(values["logfile"], "a").close()
            except OSError as exc:
                raise _fatal(f"Can't open the log file: {os.strerror(exc.errno or 0)}") from None
        if values["cluster-enabled"] and values["replicaof"]:
            raise _fatal("replicaof directive not allowed in cluster mode")
        if values["cluster-enabled"] and values["databases"] > 1:
            values["databases"] = 1
        cap_hz(values)


def cap_hz(values: dict[str, Any]) -> None:
    """Valkey's updateHZ: hz is a hint, so a value out of 1..500 is taken and capped."""
    values["hz"] = min(max(values["hz"], 1), 500)


def _options_text(tokens: list[str], first_is_argv1: bool) -> tuple[str, bool]:
    """valkey-server's main(): turn `--name value ...` tokens into config lines (values quoted
    with sdscatrepr). Returns (text, read config from stdin)."""
    options, from_stdin, handled = "", False, True
    for j, token in enumerate(tokens):
        last = j == len(tokens) - 1
        following = None if last else tokens[j + 1]
        if token == "-" and ((j == 0 and first_is_argv1) or last):
            from_stdin = True
        elif handled and token.startswith("--"):
            options += ("\n" if options else "") + token[2:] + " "
            handled = len(split_args(token) or []) != 1
            if not handled:
                next_is_option = following is not None and following.startswith("--")
                if token.lower() == "--save" and (next_is_option or last):
                    options += '""'
                    handled = next_is_option
                elif token.lower() == "--sentinel" and next_is_option:
                    handled = True
        else:
            options += _repr_arg(token) + " "
            handled = True
    return options, from_stdin


def load(path: str | None, overrides: Iterable[str] = ()) -> Config:
    """Read a config file (or none), then the command-line options, like valkey-server.

    `overrides` are the CLI tokens after the file: ["--port", "7000", "--save", ""].
    Raises ConfigError with Valkey's FATAL CONFIG FILE ERROR text on any problem.
    """
    cfg = Config()
    loader = _Loader(cfg)
    tokens = list(overrides)
    options, from_stdin = _options_text(tokens, first_is_argv1=path is None)
    if path is not None:
        cfg.config_file = os.path.abspath(path)
        loader.load_file(path)
    if from_stdin:
        loader.load_text(sys.stdin.read(), "standard input")
    if options:
        loader.load_text(options, "the command line options")
    loader.finish()
    return cfg


# --------------------------------------------------------------------------------------------
# CONFIG REWRITE (Valkey's rewriteConfig)
# --------------------------------------------------------------------------------------------

REWRITE_SIGNATURE = "# Generated by CONFIG REWRITE"
# String configs Valkey holds as NULL when empty (EMPTY_STRING_IS_NULL): empty, they have no
# line at all; set, they are always written (their default is NULL).
_EMPTY_IS_NULL = frozenset((
    "aof-rewrite-cpulist", "bgsave-cpulist", "bind-source-addr", "bio-cpulist",
    "cluster-announce-client-ipv4", "cluster-announce-client-ipv6", "cluster-announce-hostname",
    "cluster-announce-human-nodename", "cluster-announce-ip", "pidfile", "primaryauth", "primaryuser",
    "replica-announce-ip", "requirepass", "server-cpulist", "unixsocket", "unixsocketgroup",
    "tls-ca-cert-dir", "tls-ca-cert-file", "tls-cert-file", "tls-client-cert-file",
    "tls-client-key-file", "tls-client-key-file-pass", "tls-dh-params-file", "tls-key-file",
    "tls-key-file-pass", "tls-ciphers", "tls-ciphersuites", "tls-protocols", "req-res-logfile",
))
_OBUF_REWRITE_NAMES = {"normal": "normal", "slave": "replica", "pubsub": "pubsub"}
_GB, _MB, _KB = 1024 ** 3, 1024 ** 2, 1024


def _format_memory(n: int) -> str:
    """rewriteConfigFormatMemory: gb, mb or kb when the value is a whole number of them."""
    for unit, size in (("gb", _GB), ("mb", _MB), ("kb", _KB)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _rewritten_lines(spec: Spec, value: Any) -> tuple[list[str] | None, bool | list[bool]]:
    """The lines CONFIG REWRITE writes for a config and whether they must be written even
    when the file lacks them (`force`); None: drop the config's lines."""
    name, default = spec.name, _DEFAULTS.get(spec.name)
    kind = spec.kind
    if kind == "bool":
        return [f"{name} {'yes' if value else 'no'}"], value != default
    if kind == "numeric":
        if "percent" in spec.flags and value < 0:
            text = f"{-value}%"
        elif "memory" in spec.flags:
            text = _format_memory(value)
        elif "octal" in spec.flags:
            text = format(value, "o")
        else:
            text = str(value)
        return [f"{name} {text}"], value != default
    if kind == "string":
        if name in _EMPTY_IS_NULL:
            return (None, False) if value == "" else ([f"{name} {_repr_arg(value)}"], True)
        return [f"{name} {_repr_arg(value)}"], value != default
    if kind == "enum":
        return [f"{name} {value}"], value != default
    if kind == "save":
        if not value:
            return [f'{name} ""'], True
        return [f"{name} {seconds} {changes}" for seconds, changes in value], True
    if kind == "bind":
        if value == default:
            return None, False
        return [f"{name} {' '.join(value) if value else chr(34) * 2}"], True
    if kind == "client-output-buffer-limit":
        lines, forces = [], []
        for cls, limits in value.items():
            hard, soft, seconds = limits
            lines.append(f"{name} {_OBUF_REWRITE_NAMES[cls]} {_format_memory(hard)} {_format_memory(soft)} {seconds}")
            forces.append(limits != default.get(cls))
        return lines, forces
    if kind == "dir":
        return [f"{name} {_repr_arg(value)}"], True
    if kind == "notify-keyspace-events":
        return [f"{name} {_repr_arg(value)}"], value != ""
    if kind == "replicaof":
        return (None, False) if not value else ([f"{name} {value}"], True)
    if kind == "latency-tracking-info-percentiles":
        return [f"{name} {value if value else chr(34) * 2}"], True
    return [f"{name} {value}"], value != default


class _RewriteState:
    """rewriteConfigState: the old file's lines and, per option, the lines it used."""

    def __init__(self, text: str) -> None:
        self.lines: list[str] = []
        self.option_lines: dict[str, list[int]] = {}
        self.rewritten: set[str] = set()
        self.needs_signature = True
        for raw in text.split("\n") if text else []:
            line = raw.strip("\r\n\t ")
            if not line or line.startswith("#"):
                if line == REWRITE_SIGNATURE:
                    self.needs_signature = False
                self.lines.append(line)
                continue
            argv = split_args(line)
            name = argv[0].lower() if argv else ""
            spec = _LOOKUP.get(name)
            if argv is None or (spec is None and name not in (*_DIRECTIVES, "sentinel")):
                # Unparsable, or no longer a config: kept as a comment.
                self.lines.append("# ??? " + line)
                continue
            self.option_lines.setdefault(spec.name if spec else name, []).append(len(self.lines))
            self.lines.append(line)

    def rewrite_line(self, option: str, line: str, force: bool) -> None:
        """Reuse the option's next old line, else append (after the signature) when forced."""
        self.rewritten.add(option)
        old = self.option_lines.get(option)
        if old:
            self.lines[old.pop(0)] = line
        elif force:
            if self.needs_signature:
                self.lines.append(REWRITE_SIGNATURE)
                self.needs_signature = False
            self.lines.append(line)

    def content(self) -> str:
        """The new file: old lines of rewritten options not reused are blanked, and every run
        of empty lines becomes one."""
        for option, numbers in self.option_lines.items():
            if option in self.rewritten:
                for n in numbers:
                    self.lines[n] = ""
        out, was_empty = [], False
        for line in self.lines:
            if not line:
                if was_empty:
                    continue
                was_empty = True
            else:
                was_empty = False
            out.append(line + "\n")
        return "".join(out)


def rewrite_text(cfg: Config, old_text: str) -> str:
    """What CONFIG REWRITE makes of the config file text `old_text`: the user's comments and
    order kept, changed values in place, new non-default ones appended."""
    state = _RewriteState(old_text)
    for spec in _TABLE:
        lines, force = _rewritten_lines(spec, cfg.values[spec.name])
        state.rewritten.add(spec.name)
        for j, line in enumerate(lines or []):
            state.rewrite_line(spec.name, line, force[j] if isinstance(force, list) else force)
    for line in user_lines(cfg):
        state.rewrite_line("user", line, True)
    state.rewritten.update(("user", "loadmodule"))
    return state.content()


def user_lines(cfg: Config) -> list[str]:
    """rewriteConfigUserOption: every ACL user, the default one as ACLDescribeUser prints it
    (from requirepass) unless the file defines it; the file's other `user` lines as they are."""
    if cfg.values.get("aclfile"):
        return []          # the users live in the ACL file (rewriteConfigUserOption)
    lines = list(cfg.users)
    if not any((split_args(line) or ["", ""])[1:2] == ["default"] for line in lines):
        password = cfg.values.get("requirepass") or ""
        if password:
            import hashlib
            secret = "#" + hashlib.sha256(password.encode("utf-8", "surrogateescape")).hexdigest()
            lines.insert(0, f"user default on sanitize-payload {secret} ~* &* +@all")
        else:
            lines.insert(0, "user default on nopass sanitize-payload ~* &* +@all")
    return lines


def rewrite_config(cfg: Config, path: str) -> None:
    """rewriteConfig + rewriteConfigOverwriteFile: write the new text to a temporary file
    beside the config file, then rename it over. Raises OSError."""
    try:
        with open(path, "rb") as fh:
            old_text = fh.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        old_text = ""
    content = rewrite_text(cfg, old_text).encode("utf-8", "surrogateescape")
    from .persist.files import write_atomically
    umask = os.umask(0)
    os.umask(umask)
    write_atomically(os.path.abspath(path), lambda stream: stream.write(content), mode=0o644 & ~umask)


# --------------------------------------------------------------------------------------------
# Directives accepted but not acted on yet
# --------------------------------------------------------------------------------------------

# shardd reads these (CONFIG GET/SET/REWRITE show them) but their feature has not landed; the
# startup log names the ones a config sets away from their defaults. Whoever lands a feature
# removes its directives here.
NOT_ACTED_ON: dict[str, str] = {}


def inert_directives(values: dict[str, Any]) -> list[str]:
    """The NOT_ACTED_ON directives set away from their defaults, with why, for the log."""
    return [f"{name} ({why})" for name, why in NOT_ACTED_ON.items()
            if name in values and values[name] != _DEFAULTS.get(name)]
