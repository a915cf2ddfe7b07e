"""The command table: built once from Valkey 8.0's facts (data/commands.json).

The proxy uses it for arity checks, key extraction and routing; the worker for dispatch;
COMMAND for its replies; ACL (later) for categories. Handlers register themselves here with
`@worker_command` (shard workers) or `@proxy_command` (the proxy), so each command's code lives
in its family's module and this table stays the one place that knows every command.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

from . import errors

# How the proxy sends a command on its way.
SINGLE = "single"   # to the worker owning the slot of its keys (or any worker if keyless)
MULTI = "multi"     # keys split over workers, replies merged in argument order
ALL = "all"         # every worker, replies merged
LOCAL = "local"     # answered by the proxy itself
BLOCK = "block"     # may block the client: the proxy's blocking.py sends it on its way


@dataclass(slots=True)
class CommandSpec:
    name: str                      # lower case; subcommands as "container|sub"
    arity: int
    flags: frozenset[str]
    group: str
    first_key: int
    last_key: int
    key_step: int
    facts: dict[str, Any]
    subcommands: dict[str, "CommandSpec"] = field(default_factory=dict)
    route: str = SINGLE
    worker_handler: Callable | None = None
    proxy_handler: Callable | None = None
    cross_shard: Callable | None = None   # proxy fallback when a single-route command's keys span workers
    direct_key: int = 0      # argv position of the one key of a plain single-key worker command

    @property
    def display_name(self) -> str:
        return self.name.replace("|", " ")

    def arity_ok(self, argc: int) -> bool:
        a = self.arity
        return argc == a if a > 0 else argc >= -a

    def has_keys(self) -> bool:
        return bool(self.facts.get("key_specs"))

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The keys of a call: from the legacy first/last/step range when the command has
        fixed key positions (the fast, common case), else from the key specs."""
        first = self.first_key
        if first > 0 and "movablekeys" not in self.flags:
            last = self.last_key
            end = (last if last >= 0 else len(argv) + last) + 1
            return argv[first:end:self.key_step]
        return [argv[i] for i in key_positions(self, argv)]


def _load() -> dict[str, CommandSpec]:
    raw = json.loads(resources.files("shardd").joinpath("data/commands.json").read_text())
    table: dict[str, CommandSpec] = {}
    for full, facts in raw.items():
        if facts.get("group") == "sentinel":
            continue
        name = full.lower()
        spec = CommandSpec(
            name=name, arity=facts["arity"], flags=frozenset(facts.get("flags", [])),
            group=facts["group"], first_key=facts.get("first_key", 0),
            last_key=facts.get("last_key", 0), key_step=facts.get("key_step", 0), facts=facts)
        if "|" in name:
            parent, sub = name.split("|", 1)
            table[parent].subcommands[sub] = spec
        else:
            table[name] = spec
    return table


COMMANDS: dict[str, CommandSpec] = _load()
# Worker commands only proxies send (coordinator steps); clients cannot name them.
INTERNAL: dict[bytes, CommandSpec] = {}
# The proxy looks names up as received; most clients send all-upper or all-lower case.
BY_NAME: dict[bytes, CommandSpec] = {}
for _spec in COMMANDS.values():
    BY_NAME[_spec.name.encode()] = _spec
    BY_NAME[_spec.name.upper().encode()] = _spec


def lookup(name: bytes) -> CommandSpec | None:
    spec = BY_NAME.get(name)
    if spec is None:
        spec = BY_NAME.get(name.lower())
    return spec


def lookup_argv(argv: list[bytes]) -> CommandSpec | None:
    """The spec of a call, descending into a container's subcommand."""
    spec = lookup(argv[0])
    if spec is not None and spec.subcommands and len(argv) > 1:
        return spec.subcommands.get(argv[1].decode("utf-8", "replace").lower(), spec)
    return spec


# Commands whose keys only code can find (Valkey's getkeys procs: SORT's STORE …), by name;
# the proxy's introspection.py fills it with the procs COMMAND GETKEYS uses too.
KEY_FINDERS: dict[str, Callable[[list[bytes]], list[int]]] = {}


def key_positions(spec: CommandSpec, argv: list[bytes]) -> list[int]:
    finder = KEY_FINDERS.get(spec.name)
    if finder is not None:
        return finder(argv)
    argc = len(argv)
    positions: list[int] = []
    for ks in spec.facts.get("key_specs", []):
        bs, fk = ks["begin_search"], ks["find_keys"]
        if "index" in bs:
            start = bs["index"]["pos"]
        elif "keyword" in bs:
            kw = bs["keyword"]["keyword"].encode().lower()
            frm = bs["keyword"]["startfrom"]
            rng = range(frm, argc) if frm > 0 else range(argc + frm, 0, -1)
            start = next((i + 1 for i in rng if argv[i].lower() == kw), 0)
            if not start:
                continue
        else:
            continue
        if start >= argc:
            continue
        if "range" in fk:
            last, step, limit = fk["range"]["lastkey"], fk["range"]["step"], fk["range"]["limit"]
            if last >= 0:
                end = start + last
            elif limit > 1:
                end = start + (argc - start) // limit - 1
            else:
                end = argc + last
            positions.extend(range(start, min(end, argc - 1) + 1, step))
        elif "keynum" in fk:
            kn = fk["keynum"]
            try:
                count = int(argv[start + kn["keynumidx"]])
            except (ValueError, IndexError):
                continue
            first = start + kn["firstkey"]
            positions.extend(i for i in range(first, first + count * kn["step"], kn["step"]) if i < argc)
    return positions


def worker_command(*names: str) -> Callable[[Callable], Callable]:
    """Register a worker handler `fn(ctx, argv) -> bytes` for the named commands."""
    def register(fn: Callable) -> Callable:
        for name in names:
            spec_for(name).worker_handler = fn
        return fn
    return register


def internal_command(name: str, arity: int) -> Callable[[Callable], Callable]:
    """Register a worker handler for a command the proxy's coordinator sends."""
    def register(fn: Callable) -> Callable:
        spec = CommandSpec(name=name, arity=arity, flags=frozenset(), group="internal",
                           first_key=0, last_key=0, key_step=0, facts={}, worker_handler=fn)
        INTERNAL[name.encode()] = spec
        INTERNAL[name.upper().encode()] = spec
        return fn
    return register


def proxy_command(*names: str, route: str = LOCAL) -> Callable[[Callable], Callable]:
    """Register a proxy handler for the named commands and how they are routed."""
    def register(fn: Callable) -> Callable:
        for name in names:
            spec = spec_for(name)
            spec.proxy_handler = fn
            spec.route = route
        return fn
    return register


def cross_shard_command(*names: str) -> Callable[[Callable], Callable]:
    """Register the proxy's fallback for a command whose keys turn out to span workers."""
    def register(fn: Callable) -> Callable:
        for name in names:
            spec_for(name).cross_shard = fn
        return fn
    return register


def set_route(route: str, *names: str) -> None:
    for name in names:
        spec_for(name).route = route


def spec_for(name: str) -> CommandSpec:
    if "|" in name:
        parent, sub = name.split("|", 1)
        return COMMANDS[parent].subcommands[sub]
    return COMMANDS[name]


def check_arity(spec: CommandSpec, argv: list[bytes]) -> str | None:
    if not spec.arity_ok(len(argv)):
        return errors.wrong_arity(spec.display_name)
    return None


# Routing facts that the per-command key specs cannot tell.
set_route(MULTI, "mget", "mset", "del", "exists", "unlink", "touch")
set_route(ALL, "dbsize", "flushdb", "flushall", "keys", "scan", "randomkey")


def finish_table() -> None:
    """After every family registered its handlers: mark the plain single-key worker commands,
    which the proxy routes without looking further."""
    for spec in COMMANDS.values():
        plain = (spec.route is SINGLE and spec.worker_handler is not None and not spec.subcommands
                 and spec.first_key > 0 and spec.last_key == spec.first_key
                 and "movablekeys" not in spec.flags and spec.cross_shard is None)
        spec.direct_key = spec.first_key if plain else 0
