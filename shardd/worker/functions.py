"""FUNCTION and FCALL/FCALL_RO, after Valkey 8's functions.c and function_lua.c.

Libraries live in every worker (the proxy sends FUNCTION LOAD/DELETE/FLUSH/RESTORE to all of
them), so FCALL runs on the worker of its keys; a function touching keys of other workers
moves to the coordinator like a script does (scripting.py). A library's code runs at load
with only `redis`/`server` (register_function, log, versions) in sight, its functions later
with the full sandbox.

`library_codes()` and `load_library_code()` are what persistence needs to keep functions
across restarts (the RDB's function records hold exactly the library code).
"""
from __future__ import annotations

import time
from typing import Any

from .. import resp
from ..commands import internal_command, worker_command
from ..errors import CommandError
from ..glob import glob_matcher
from . import lua_sandbox
from .context import Ctx
from .scripting import (ALLOW_OOM, FLAG_NAMES, NOTBUSY, finish, help_reply, numkeys_of, read_only_run, run,
                        split_args, take_script_user, text)

LIBRARY_NAME_ERROR = ("ERR Library names can only contain letters, numbers, or underscores(_) and must be "
                      "at least one character long")
LOAD_TIMEOUT = 0.5                   # seconds (functions.c LOAD_TIMEOUT_MS)
RDB_OPCODE_FUNCTION2 = 245
RDB_OPCODE_FUNCTION_PRE_GA = 246
RDB_VERSION_WRITTEN = 10             # what FUNCTION DUMP writes (every Valkey/Redis 7 reads it)
RDB_VERSION_READ = 11                # the newest a payload may carry (Valkey 8.0's RDB_VERSION)


class Function:
    __slots__ = ("name", "library", "fn", "flags", "description")

    def __init__(self, name: bytes, library: "Library", fn: Any, flags: list[str], description: bytes | None) -> None:
        self.name = name
        self.library = library
        self.fn = fn
        self.flags = frozenset(flags)
        self.description = description


class Library:
    __slots__ = ("name", "code", "functions")

    def __init__(self, name: bytes, code: bytes) -> None:
        self.name = name
        self.code = code
        self.functions: dict[bytes, Function] = {}


class Libraries:
    """A set of libraries and the index of their functions (case-insensitive, as Valkey's)."""

    def __init__(self) -> None:
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}

    def link(self, library: Library) -> None:
        self.libraries[library.name] = library
        for fn in library.functions.values():
            self.functions[fn.name.lower()] = fn

    def unlink(self, library: Library) -> None:
        del self.libraries[library.name]
        for fn in library.functions.values():
            self.functions.pop(fn.name.lower(), None)


CURRENT = Libraries()


def valid_name(name: bytes) -> bool:
    return bool(name) and all(c == 95 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 for c in name)


def library_metadata(code: bytes) -> tuple[bytes, bytes, int]:
    """(engine, library name, where the code after the shebang starts)."""
    if not code.startswith(b"#!"):
        raise CommandError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid library metadata")
    parts = split_args(code[:end])
    if not parts:
        raise CommandError("ERR Invalid library metadata")
    engine = parts[0][2:]
    name = None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise CommandError("ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise CommandError(f"ERR Invalid metadata value given: {text(part)}")
    if name is None:
        raise CommandError("ERR Library name was not given")
    return engine, name, end


class LoadSession:
    """What the bridge serves while a library's top level runs (only the load timeout)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.abort = 0
        self.resp = 2
        self.fatal_exc: BaseException | None = None

    def call(self, argv):           # unreachable: redis.call is not visible at load time
        return lua_sandbox.ABORT

    def tick(self) -> int:
        if time.monotonic() - self.start > LOAD_TIMEOUT:
            self.abort = 1
        return 1 if self.abort else 0

    def abort_message(self) -> bytes:
        return b"FUNCTION LOAD timeout"

    def fatal(self, exc: BaseException) -> None:
        self.fatal_exc = exc
        self.abort = 1


def create_library(code: bytes, replace: bool, target: Libraries, timeout: bool = True) -> bytes:
    """functionsCreateWithLibraryCtx: compile code and link its library into target."""
    engine_name, name, shebang = library_metadata(code)
    if not valid_name(name):
        raise CommandError(LIBRARY_NAME_ERROR)
    if engine_name.lower() != b"lua":
        raise CommandError(f"ERR Engine '{text(engine_name)}' not found")
    old = target.libraries.get(name)
    if old is not None and not replace:
        raise CommandError(f"ERR Library '{text(name)}' already exists")
    engine = lua_sandbox.engine()
    session = LoadSession()
    if not timeout:
        session.tick = lambda: 0
    previous = engine.session
    engine.session = session
    try:
        result = engine.load_library(code[shebang:])
    finally:
        engine.session = previous
    if session.fatal_exc is not None and not isinstance(session.fatal_exc, Exception):
        raise session.fatal_exc
    ok, payload = result
    if not ok:
        raise CommandError(f"ERR {text(payload)}")
    library = Library(name, code)
    for entry in payload.values():
        fname = entry[b"name"]
        flags = [text(f) for f in entry[b"flags"].values()]
        library.functions[fname] = Function(fname, library, entry[b"callback"], flags, entry[b"desc"])
    if not library.functions:
        raise CommandError("ERR No functions registered")
    for fname in library.functions:
        existing = target.functions.get(fname.lower())
        if existing is not None and existing.library is not old:
            raise CommandError(f"ERR Function {text(fname)} already exists")
    if old is not None:
        target.unlink(old)
    target.link(library)
    return name


def library_codes() -> list[bytes]:
    """Every library's code, for persistence."""
    return [library.code for library in CURRENT.libraries.values()]


def load_library_code(code: bytes, replace: bool = True) -> bytes:
    """Load a library from persisted code (no load timeout, as when Valkey loads an RDB)."""
    return create_library(code, replace, CURRENT, timeout=False)


# -- FCALL --------------------------------------------------------------------------------------

@worker_command("fcall", "fcall_ro")
def fcall_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    user = take_script_user(ctx)
    fn = CURRENT.functions.get(argv[1].lower())
    if fn is None:
        raise CommandError("ERR Function not found")
    numkeys = numkeys_of(argv, "ERR Bad number of keys provided")
    read_only = read_only_run(fn.flags, argv[0].lower().endswith(b"_ro"))
    reply, diverted = run(ctx, fn.fn, False, fn.name, read_only, argv, numkeys, user, ALLOW_OOM in fn.flags)
    if ctx.shard < 0:           # the proxy's cross-shard run: it takes the ACL log itself
        return reply
    return finish(ctx, reply, diverted, False)


# -- FUNCTION -----------------------------------------------------------------------------------

@worker_command("function|load")
def function_load(ctx: Ctx, argv: list[bytes]) -> bytes:
    replace = False
    for option in argv[2:-1]:
        if option.lower() != b"replace":
            raise CommandError(f"ERR Unknown option given: {text(option)}")
        replace = True
    return resp.bulk(create_library(argv[-1], replace, CURRENT))


@worker_command("function|delete")
def function_delete(ctx: Ctx, argv: list[bytes]) -> bytes:
    library = CURRENT.libraries.get(argv[2])
    if library is None:
        raise CommandError("ERR Library not found")
    CURRENT.unlink(library)
    return resp.OK


def flush_option(argv: list[bytes], container: str) -> None:
    if len(argv) > 3:
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{text(argv[1])}'. "
                           f"Try {container} HELP.")
    if len(argv) == 3 and argv[2].lower() not in (b"sync", b"async"):
        raise CommandError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")


@worker_command("function|flush")
def function_flush(ctx: Ctx, argv: list[bytes]) -> bytes:
    global CURRENT
    flush_option(argv, "FUNCTION")
    CURRENT = Libraries()
    return resp.OK


@worker_command("function|kill")
def function_kill(ctx: Ctx, argv: list[bytes]) -> bytes:
    return NOTBUSY


def stats_reply(proto: int, session: Any = None) -> bytes:
    """FUNCTION STATS (session: the function running now, if any)."""
    out = [resp.map_header(2, proto), resp.bulk(b"running_script")]
    if session is None:
        out.append(resp.null(proto))
    else:
        out += [resp.map_header(3, proto), resp.bulk(b"name"), resp.bulk(session.funcname),
                resp.bulk(b"command"), resp.bulk_array(session.argv, proto),
                resp.bulk(b"duration_ms"), resp.integer(int((time.monotonic() - session.start) * 1000))]
    out += [resp.bulk(b"engines"), resp.map_header(1, proto), resp.bulk(b"LUA"), resp.map_header(2, proto),
            resp.bulk(b"libraries_count"), resp.integer(len(CURRENT.libraries)),
            resp.bulk(b"functions_count"), resp.integer(len(CURRENT.functions))]
    return b"".join(out)


@worker_command("function|stats")
def function_stats(ctx: Ctx, argv: list[bytes]) -> bytes:
    return stats_reply(ctx.proto)


@worker_command("function|list")
def function_list(ctx: Ctx, argv: list[bytes]) -> bytes:
    with_code = False
    pattern = None
    i = 2
    while i < len(argv):
        arg = argv[i].lower()
        if not with_code and arg == b"withcode":
            with_code = True
        elif pattern is None and arg == b"libraryname":
            if i >= len(argv) - 1:
                raise CommandError("ERR library name argument was not given")
            i += 1
            pattern = argv[i]
        else:
            raise CommandError(f"ERR Unknown argument {text(argv[i])}")
        i += 1
    proto = ctx.proto
    matches = glob_matcher(pattern, nocase=True) if pattern is not None else None
    items = []
    for library in CURRENT.libraries.values():
        if matches is not None and not matches(library.name):
            continue
        parts = [resp.map_header(4 if with_code else 3, proto), resp.bulk(b"library_name"), resp.bulk(library.name),
                 resp.bulk(b"engine"), resp.bulk(b"LUA"), resp.bulk(b"functions"),
                 resp.array_header(len(library.functions))]
        for fn in library.functions.values():
            flags = [flag for flag in FLAG_NAMES if flag in fn.flags]
            parts += [resp.map_header(3, proto), resp.bulk(b"name"), resp.bulk(fn.name), resp.bulk(b"description"),
                      resp.bulk(fn.description) if fn.description is not None else resp.null(proto),
                      resp.bulk(b"flags"), resp.set_header(len(flags), proto),
                      *(resp.status(flag) for flag in flags)]
        if with_code:
            parts += [resp.bulk(b"library_code"), resp.bulk(library.code)]
        items.append(b"".join(parts))
    return resp.array(items)


# -- DUMP / RESTORE: Valkey's payload (RDB function records, RDB version, CRC-64) --------------

def crc64(data: bytes) -> int:
    """Redis's CRC-64/Jones (reflected 0xad93d23594c935a9, no final xor)."""
    try:
        from ..persist.crc import crc64 as crc
    except ImportError:                           # pragma: no cover - persistence not installed
        crc = _crc64
    return crc(data)


def _crc64(data: bytes) -> int:
    crc = 0
    table = _CRC_TABLE or _crc_table()
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


_CRC_TABLE: list[int] = []


def _crc_table() -> list[int]:
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x95AC9329AC4BC9B5 if c & 1 else c >> 1
        _CRC_TABLE.append(c)
    return _CRC_TABLE


def rdb_length(n: int) -> bytes:
    if n < 64:
        return bytes((n,))
    if n < 16384:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def read_length(data: bytes, pos: int) -> tuple[int, bool, int]:
    """(length or encoding, whether it is a special encoding, next position)."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], False, pos + 2
    if kind == 3:
        return first & 0x3F, True, pos + 1
    if first == 0x80:
        return int.from_bytes(data[pos + 1:pos + 5], "big"), False, pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1:pos + 9], "big"), False, pos + 9
    raise ValueError("bad length encoding")


def read_string(data: bytes, pos: int) -> tuple[bytes, int]:
    n, encoded, pos = read_length(data, pos)
    if not encoded:
        if pos + n > len(data):
            raise ValueError("string past the end")
        return data[pos:pos + n], pos + n
    if n in (0, 1, 2):
        size = 1 << n
        return b"%d" % int.from_bytes(data[pos:pos + size], "little", signed=True), pos + size
    if n == 3:
        clen, _, pos = read_length(data, pos)
        length, _, pos = read_length(data, pos)
        from ..persist import lzf
        return lzf.decompress(data[pos:pos + clen], length), pos + clen
    raise ValueError("unknown string encoding")


@worker_command("function|dump")
def function_dump(ctx: Ctx, argv: list[bytes]) -> bytes:
    body = b"".join(bytes((RDB_OPCODE_FUNCTION2,)) + rdb_length(len(library.code)) + library.code
                    for library in CURRENT.libraries.values())
    body += RDB_VERSION_WRITTEN.to_bytes(2, "little")
    return resp.bulk(body + crc64(body).to_bytes(8, "little"))


def verify_payload(data: bytes) -> bool:
    if len(data) < 10:
        return False
    version = int.from_bytes(data[-10:-8], "little")
    if version > RDB_VERSION_READ:
        return False
    return crc64(data[:-8]) == int.from_bytes(data[-8:], "little")


@worker_command("function|restore")
def function_restore(ctx: Ctx, argv: list[bytes]) -> bytes:
    global CURRENT
    if len(argv) > 4:
        raise CommandError(f"ERR unknown subcommand or wrong number of arguments for '{text(argv[1])}'. "
                           f"Try FUNCTION HELP.")
    policy = argv[3].lower() if len(argv) == 4 else b"append"
    if policy not in (b"append", b"replace", b"flush"):
        raise CommandError("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")
    data = argv[2]
    if not verify_payload(data):
        raise CommandError("ERR DUMP payload version or checksum are wrong")
    restored = Libraries()
    pos, end = 0, len(data) - 10
    while pos < end:
        kind = data[pos]
        pos += 1
        if kind == RDB_OPCODE_FUNCTION_PRE_GA:
            raise CommandError("ERR Pre-GA function format not supported")
        if kind != RDB_OPCODE_FUNCTION2:
            raise CommandError("ERR given type is not a function")
        try:
            code, pos = read_string(data, pos)
        except (ValueError, IndexError):
            raise CommandError("ERR Failed loading library payload") from None
        create_library(code, False, restored, timeout=False)
    if policy == b"flush":
        CURRENT = restored
        return resp.OK
    replace = policy == b"replace"
    for library in restored.libraries.values():
        if library.name in CURRENT.libraries and not replace:
            raise CommandError(f"ERR Library {text(library.name)} already exists")
    replaced = [CURRENT.libraries[name] for name in restored.libraries if name in CURRENT.libraries]
    for library in replaced:
        CURRENT.unlink(library)
    for fname in restored.functions:
        if fname in CURRENT.functions:
            for library in replaced:                  # put things back as they were
                CURRENT.link(library)
            raise CommandError(f"ERR Function {text(CURRENT.functions[fname].name)} already exists")
    for library in restored.libraries.values():
        CURRENT.link(library)
    return resp.OK


FUNCTION_HELP = [
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION "
    "RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
]


@worker_command("function|help")
def function_help(ctx: Ctx, argv: list[bytes]) -> bytes:
    return help_reply(FUNCTION_HELP)


@internal_command("__function_code", 2)
def function_code(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The code of the library holding a function (the proxy runs FCALL across shards itself)."""
    fn = CURRENT.functions.get(argv[1].lower())
    return resp.null(ctx.proto) if fn is None else resp.bulk(fn.library.code)


def ensure_library(code: bytes) -> None:
    """Have this process's registry hold exactly this library code (the proxy, before it runs
    a function across shards with the workers' current code)."""
    _, name, _ = library_metadata(code)
    library = CURRENT.libraries.get(name)
    if library is not None and library.code == code:
        return
    fresh = Libraries()
    create_library(code, True, fresh, timeout=False)
    for fn in fresh.functions.values():          # names held by libraries seen here before
        other = CURRENT.functions.get(fn.name.lower())
        if other is not None and other.library.name != name:
            CURRENT.unlink(other.library)
    create_library(code, True, CURRENT, timeout=False)
