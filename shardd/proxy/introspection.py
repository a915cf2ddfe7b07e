"""COMMAND and its subcommands, answered by the proxy from the command table.

Reply shapes follow Valkey 8.0's src/server.c (addReplyCommandInfo, addReplyCommandDocs,
addReplyCommandArgList, addReplyCommandKeySpecs, commandListCommand, getKeysSubcommandImpl)
and src/db.c (getKeysFromCommandWithSpecs and the getkeys procs it falls back to).
Flag sets are written by hand in Valkey's table order, never from Python sets.

Only the container "command" is registered: it routes its subcommands itself, so a
subcommand's arity error names it the way Valkey does ('command|getkeys').
The full replies of bare COMMAND and COMMAND DOCS (redis-cli asks on start) are built once
per protocol and kept.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .. import commands, errors, resp
from ..commands import COMMANDS, CommandSpec, proxy_command
from ..glob import glob_match
from .request_parser import string2ll

Handler = Callable[[Any, list[bytes]], bytes]
KeyRef = tuple[int, tuple[str, ...]]          # argv position, key-spec flags (JSON names)

# Valkey's reply order of each flag family; facts carry the same names (key flags upper case).
COMMAND_FLAGS = (
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking",
    "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth",
    "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys", "allow_busy")
KEY_FLAGS = ("RO", "RW", "OW", "RM", "ACCESS", "UPDATE", "INSERT", "DELETE", "NOT_KEY",
             "INCOMPLETE", "VARIABLE_FLAGS")
KEY_FLAG_REPLY = {f: (f if len(f) == 2 else f.lower()) for f in KEY_FLAGS}   # RO, access, …
ARG_FLAGS = ("optional", "multiple", "multiple_token")
DOC_FLAGS = ("deprecated", "syscmd")

HELP = (
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full command.",
    "HELP",
    "    Print this help.",
)

_cache: dict[tuple[str, str, int], bytes] = {}


# --- small encoders ---------------------------------------------------------------------

def _bulk(text: str) -> bytes:
    return resp.bulk(text.encode())


def _status_set(names: Iterable[str], proto: int) -> bytes:
    items = [resp.status(n) for n in names]
    return resp.set_header(len(items), proto) + b"".join(items)


def _bulk_set(names: Iterable[str], proto: int) -> bytes:
    items = [_bulk(n) for n in names]
    return resp.set_header(len(items), proto) + b"".join(items)


def _map(pairs: list[tuple[str, bytes]], proto: int) -> bytes:
    return resp.map_header(len(pairs), proto) + b"".join(_bulk(k) + v for k, v in pairs)


def _in_order(present: Iterable[str], order: tuple[str, ...]) -> list[str]:
    have = {p.lower() for p in present}
    return [name for name in order if name.lower() in have]


def _key_flags(flags: Iterable[str], proto: int) -> bytes:
    return _status_set((KEY_FLAG_REPLY[f] for f in _in_order(flags, KEY_FLAGS)), proto)


def _cached(kind: str, name: str, proto: int, build: Callable[[], bytes]) -> bytes:
    key = (kind, name, proto)
    out = _cache.get(key)
    if out is None:
        out = _cache[key] = build()
    return out


# --- COMMAND INFO -------------------------------------------------------------------------

def _typed(kind: str, fields: list[tuple[str, bytes]], proto: int) -> bytes:
    return _map([("type", _bulk(kind)), ("spec", _map(fields, proto))], proto)


def _begin_search(bs: dict[str, Any], proto: int) -> bytes:
    if "index" in bs:
        return _typed("index", [("index", resp.integer(bs["index"]["pos"]))], proto)
    if "keyword" in bs:
        kw = bs["keyword"]
        return _typed("keyword", [("keyword", _bulk(kw["keyword"])),
                                  ("startfrom", resp.integer(kw["startfrom"]))], proto)
    return _typed("unknown", [], proto)


def _find_keys(fk: dict[str, Any], proto: int) -> bytes:
    if "range" in fk:
        r = fk["range"]
        return _typed("range", [("lastkey", resp.integer(r["lastkey"])),
                                ("keystep", resp.integer(r["step"])),
                                ("limit", resp.integer(r["limit"]))], proto)
    if "keynum" in fk:
        k = fk["keynum"]
        return _typed("keynum", [("keynumidx", resp.integer(k["keynumidx"])),
                                 ("firstkey", resp.integer(k["firstkey"])),
                                 ("keystep", resp.integer(k["step"]))], proto)
    return _typed("unknown", [], proto)


def _key_specs(specs: list[dict[str, Any]], proto: int) -> bytes:
    items = [_map([("flags", _key_flags(ks["flags"], proto)),
                   ("begin_search", _begin_search(ks["begin_search"], proto)),
                   ("find_keys", _find_keys(ks["find_keys"], proto))], proto)
             for ks in specs]
    return resp.set_header(len(items), proto) + b"".join(items)


def _build_info(spec: CommandSpec, proto: int) -> bytes:
    f = spec.facts
    if spec.subcommands:
        subs = resp.array([info_reply(s, proto) for s in spec.subcommands.values()])
    else:
        subs = resp.set_header(0, proto)
    return resp.array([
        _bulk(spec.name), resp.integer(spec.arity),
        _status_set(_in_order(f.get("flags", ()), COMMAND_FLAGS), proto),
        resp.integer(spec.first_key), resp.integer(spec.last_key), resp.integer(spec.key_step),
        _status_set(f.get("acl_categories_all", ()), proto),
        _bulk_set(f.get("tips", ()), proto),
        _key_specs(f.get("key_specs", []), proto),
        subs])


def info_reply(spec: CommandSpec | None, proto: int) -> bytes:
    """One command's COMMAND INFO entry (null for an unknown name)."""
    if spec is None:
        return resp.null(proto)
    return _cached("info", spec.name, proto, lambda: _build_info(spec, proto))


def all_info(proto: int) -> bytes:
    return _cached("all-info", "", proto, lambda: resp.array(
        [info_reply(s, proto) for s in COMMANDS.values()]))


# --- COMMAND DOCS -------------------------------------------------------------------------

def _arg_reply(arg: dict[str, Any], proto: int) -> bytes:
    nested = arg["type"] in ("oneof", "block")
    pairs = [("name", _bulk(arg["name"])), ("type", _bulk(arg["type"]))]
    if not nested:
        pairs.append(("display_text", _bulk(arg.get("display_text") or arg["name"])))
    if "key_spec_index" in arg:
        pairs.append(("key_spec_index", resp.integer(arg["key_spec_index"])))
    for field in ("token", "summary", "since", "deprecated_since"):
        if arg.get(field) is not None:
            pairs.append((field, _bulk(arg[field])))
    flags = [name for name in ARG_FLAGS if arg.get(name)]
    if flags:
        pairs.append(("flags", _status_set(flags, proto)))
    if nested:
        pairs.append(("arguments", _args_reply(arg.get("arguments", []), proto)))
    return _map(pairs, proto)


def _args_reply(args: list[dict[str, Any]], proto: int) -> bytes:
    return resp.array([_arg_reply(a, proto) for a in args])


def _build_docs(spec: CommandSpec, proto: int) -> bytes:
    f = spec.facts
    # No prose ships with the table: summary is empty, complexity and history left out.
    pairs = [("summary", _bulk(f.get("summary", "")))]
    if f.get("since"):
        pairs.append(("since", _bulk(f["since"])))
    pairs.append(("group", _bulk(spec.group)))
    doc_flags = _in_order(f.get("doc_flags", ()), DOC_FLAGS)
    if doc_flags:
        pairs.append(("doc_flags", _status_set(doc_flags, proto)))
    for field in ("deprecated_since", "replaced_by"):
        if f.get(field):
            pairs.append((field, _bulk(f[field])))
    if f.get("arguments"):
        pairs.append(("arguments", _args_reply(f["arguments"], proto)))
    if spec.subcommands:
        pairs.append(("subcommands", _docs_map(spec.subcommands.values(), proto)))
    return _map(pairs, proto)


def docs_reply(spec: CommandSpec, proto: int) -> bytes:
    return _cached("docs", spec.name, proto, lambda: _build_docs(spec, proto))


def _docs_map(specs: Iterable[CommandSpec], proto: int) -> bytes:
    specs = list(specs)
    return resp.map_header(len(specs), proto) + b"".join(
        _bulk(s.name) + docs_reply(s, proto) for s in specs)


def all_docs(proto: int) -> bytes:
    return _cached("all-docs", "", proto, lambda: _docs_map(COMMANDS.values(), proto))


# --- lookups --------------------------------------------------------------------------------

def find_by_name(name: bytes) -> CommandSpec | None:
    """Valkey's lookupCommandBySds: 'get' or 'config|get', case-insensitive, strict."""
    parts = name.decode("utf-8", "replace").lower().split("|")
    if len(parts) > 2:
        return None
    base = COMMANDS.get(parts[0])
    if base is None or len(parts) == 1:
        return base
    return base.subcommands.get(parts[1]) if base.subcommands else None


def find_by_argv(argv: list[bytes]) -> CommandSpec | None:
    """Valkey's lookupCommand: a container with an argument names one of its subcommands."""
    base = COMMANDS.get(argv[0].decode("utf-8", "replace").lower())
    if base is None or len(argv) == 1 or not base.subcommands:
        return base
    return base.subcommands.get(argv[1].decode("utf-8", "replace").lower())


# --- COMMAND GETKEYS ------------------------------------------------------------------------

def _specs(spec: CommandSpec) -> list[dict[str, Any]]:
    return spec.facts.get("key_specs", [])


def has_keys(spec: CommandSpec) -> bool:
    """doesCommandHaveKeys: some key spec is not NOT_KEY (every getkeys proc has specs)."""
    return any("NOT_KEY" not in ks["flags"] for ks in _specs(spec))


def _begin(bs: dict[str, Any], argv: list[bytes]) -> int | None:
    """First key position; 0 when the keyword is absent, None for an unknown spec."""
    if "index" in bs:
        return bs["index"]["pos"]
    if "keyword" not in bs:
        return None
    argc, kw = len(argv), bs["keyword"]
    word, frm = kw["keyword"].encode().lower(), kw["startfrom"]
    positions = range(frm, argc - 1) if frm > 0 else range(argc + frm, 1, -1)
    for i in positions:
        if not 1 <= i < argc:
            break
        if argv[i].lower() == word:
            return i + 1
    return 0


def _span(fk: dict[str, Any], first: int, argv: list[bytes]) -> tuple[int, int, int] | None:
    """(first, last, step) of the keys, None when the spec cannot be applied."""
    argc = len(argv)
    if "range" in fk:
        r = fk["range"]
        if r["lastkey"] >= 0:
            last = first + r["lastkey"]
        elif not r["limit"]:
            last = argc + r["lastkey"]
        else:
            last = first + ((argc - first) // r["limit"] + r["lastkey"])
        return first, last, r["step"]
    if "keynum" in fk:
        k = fk["keynum"]
        if first + k["keynumidx"] >= argc:
            return None
        numkeys = string2ll(argv[first + k["keynumidx"]])
        if numkeys is None or numkeys < 0:
            return None
        first += k["firstkey"]
        return first, first + numkeys - 1, k["step"]
    return None


def keys_from_specs(spec: CommandSpec, argv: list[bytes]) -> list[KeyRef] | None:
    """getKeysUsingKeySpecs: the keys, or None where Valkey falls back to a getkeys proc."""
    argc, found = len(argv), []
    for ks in _specs(spec):
        flags = tuple(ks["flags"])
        if "NOT_KEY" in flags:
            continue
        first = _begin(ks["begin_search"], argv)
        if first is None:
            return None
        if first == 0:
            continue
        span = _span(ks["find_keys"], first, argv)
        if span is None:
            return None
        first, last, step = span
        if last >= argc or last < first or first >= argc:
            return None
        found.extend((i, flags) for i in range(first, last + 1, max(step, 1)))
        if "INCOMPLETE" in flags:
            return None
    return found


def _set_keys(argv: list[bytes]) -> list[KeyRef]:
    if any(a.lower() == b"get" for a in argv[3:]):
        return [(1, ("RW", "ACCESS", "UPDATE"))]
    return [(1, ("OW", "UPDATE"))]


def _bitfield_keys(argv: list[bytes]) -> list[KeyRef]:
    i, argc = 2, len(argv)
    while i < argc:
        op, rest = argv[i].lower(), argc - i - 1
        if op == b"get" and rest >= 2:
            i += 3
        elif op == b"overflow" and rest >= 1:
            i += 2
        else:                                   # a write, or a syntax error: not read-only
            return [(1, ("RW", "ACCESS", "UPDATE"))]
    return [(1, ("RO", "ACCESS"))]


def _sort_keys(argv: list[bytes]) -> list[KeyRef]:
    found: list[KeyRef] = [(1, ("RO", "ACCESS"))]
    store, skips, i = None, {b"limit": 2, b"get": 1, b"by": 1}, 2
    while i < len(argv):
        opt = argv[i].lower()
        if opt in skips:
            i += skips[opt]
        elif opt == b"store" and i + 1 < len(argv):
            store = i + 1                      # the last STORE wins, as in SORT itself
        i += 1
    return found + ([(store, ("OW", "UPDATE"))] if store else [])


def _migrate_keys(argv: list[bytes]) -> list[KeyRef]:
    flags = ("RW", "ACCESS", "DELETE")
    skips, i = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}, 6
    while i < len(argv):
        opt = argv[i].lower()
        if opt == b"keys":
            if argv[3]:
                return []
            return [(p, flags) for p in range(i + 1, len(argv))]
        i += skips.get(opt, 0) + 1
    return [(3, flags)]


# Native getkeys procs reached after the specs give up; keynum commands' procs
# (genericGetKeys) find nothing in every case where their specs fail, so they are left out.
GETKEYS_PROCS: dict[str, Callable[[list[bytes]], list[KeyRef]]] = {
    "set": _set_keys, "bitfield": _bitfield_keys, "sort": _sort_keys,
    "sort_ro": lambda argv: [(1, ("RO", "ACCESS"))], "migrate": _migrate_keys,
}


for _name in ("sort", "sort_ro"):      # the proxy routes by these keys too
    commands.KEY_FINDERS[_name] = lambda argv, proc=GETKEYS_PROCS[_name]: [p for p, _ in proc(argv)]


def command_keys(spec: CommandSpec, argv: list[bytes]) -> list[KeyRef]:
    """getKeysFromCommandWithSpecs for a call `argv` (argv[0] is the command name)."""
    if not any("VARIABLE_FLAGS" in ks["flags"] for ks in _specs(spec)):
        found = keys_from_specs(spec, argv)
        if found is not None:
            return found
    proc = GETKEYS_PROCS.get(spec.name)
    return proc(argv) if proc else []


def getkeys(argv: list[bytes]) -> list[KeyRef] | str:
    """The keys of the call in argv (COMMAND GETKEYS's argv[2:]), or an error message."""
    spec = find_by_argv(argv)
    if spec is None:
        return errors.GETKEYS_INVALID_COMMAND
    if not has_keys(spec):
        return errors.GETKEYS_NO_KEYS
    if not spec.arity_ok(len(argv)):
        return errors.GETKEYS_BAD_ARITY
    found = command_keys(spec, argv)
    if not found and "no_mandatory_keys" not in spec.flags:
        return errors.GETKEYS_BAD_ARGUMENTS
    return found


# --- handlers -------------------------------------------------------------------------------

def command_count(conn, argv: list[bytes]) -> bytes:
    return resp.integer(len(COMMANDS))


def _all_names() -> Iterable[CommandSpec]:
    for spec in COMMANDS.values():
        yield spec
        yield from spec.subcommands.values()


def _list_filter(kind: bytes, arg: bytes) -> Callable[[CommandSpec], bool]:
    if kind == b"module":
        return lambda spec: False                   # no modules are ever loaded
    if kind == b"aclcat":
        cat = "@" + arg.decode("utf-8", "replace").lower()
        return lambda spec: cat in spec.facts.get("acl_categories_all", ())
    return lambda spec: glob_match(arg, spec.name.encode(), nocase=True)


def command_list(conn, argv: list[bytes]) -> bytes:
    keep: Callable[[CommandSpec], bool] = lambda spec: True
    i = 2
    while i < len(argv):
        kind = argv[i + 1].lower() if i + 1 < len(argv) else b""
        if argv[i].lower() != b"filterby" or len(argv) - 1 - i != 2 or \
                kind not in (b"module", b"aclcat", b"pattern"):
            return resp.error(errors.SYNTAX)
        keep = _list_filter(kind, argv[i + 2])
        i += 3
    return resp.bulk_array([s.name.encode() for s in _all_names() if keep(s)], conn.proto)


def command_info(conn, argv: list[bytes]) -> bytes:
    if len(argv) == 2:
        return all_info(conn.proto)
    return resp.array([info_reply(find_by_name(n), conn.proto) for n in argv[2:]])


def command_docs(conn, argv: list[bytes]) -> bytes:
    if len(argv) == 2:
        return all_docs(conn.proto)
    found = [s for s in map(find_by_name, argv[2:]) if s is not None]
    return _docs_map(found, conn.proto)


def command_getkeys(conn, argv: list[bytes]) -> bytes:
    found = getkeys(argv[2:])
    if isinstance(found, str):
        return resp.error(found)
    return resp.array([resp.bulk(argv[pos + 2]) for pos, _ in found])


def command_getkeysandflags(conn, argv: list[bytes]) -> bytes:
    found = getkeys(argv[2:])
    if isinstance(found, str):
        return resp.error(found)
    return resp.array([resp.array([resp.bulk(argv[pos + 2]), _key_flags(flags, conn.proto)])
                       for pos, flags in found])


def command_help(conn, argv: list[bytes]) -> bytes:
    name = argv[0].decode("utf-8", "replace").upper()
    header = f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return resp.array([resp.status(line) for line in (header, *HELP)])


SUBCOMMANDS: dict[str, Handler] = {
    "count": command_count, "list": command_list, "info": command_info,
    "docs": command_docs, "getkeys": command_getkeys,
    "getkeysandflags": command_getkeysandflags, "help": command_help,
}


@proxy_command("command")
def command(conn, argv: list[bytes]) -> bytes:
    """Bare COMMAND, or the subcommand named by argv[1] after Valkey's arity check."""
    if len(argv) == 1:
        return all_info(conn.proto)
    name = argv[1].decode("utf-8", "replace").lower()
    handler = SUBCOMMANDS.get(name)
    sub = COMMANDS["command"].subcommands.get(name)
    if handler is None or sub is None:
        return resp.error(errors.unknown_subcommand(argv[1], argv[0].decode("utf-8", "replace")))
    if not sub.arity_ok(len(argv)):
        return resp.error(errors.wrong_arity(sub.name))
    return handler(conn, argv)
