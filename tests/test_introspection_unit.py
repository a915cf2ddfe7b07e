"""Unit tests for shardd.proxy.introspection (COMMAND and its subcommands), in-process."""
from __future__ import annotations

from typing import Any

import hiredis
import pytest

from shardd.commands import COMMANDS
from shardd.proxy import introspection as intro


class FakeConn:
    def __init__(self, proto: int = 2) -> None:
        self.proto = proto


def raw(proto: int, *args: str | bytes) -> bytes:
    argv = [a.encode() if isinstance(a, str) else a for a in args]
    return intro.command(FakeConn(proto), argv)


def decode(data: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(data)
    value = reader.gets()
    assert value is not False, "incomplete reply"
    assert reader.gets() is False, "trailing bytes after the reply"
    return value


def call(proto: int, *args: str | bytes) -> Any:
    return decode(raw(proto, *args))


def pairs(value: Any) -> dict:
    """A map reply as a dict: RESP3 maps decode to dicts, RESP2 ones to flat arrays."""
    if isinstance(value, dict):
        return value
    assert len(value) % 2 == 0
    return dict(zip(value[::2], value[1::2]))


def info(proto: int, name: str) -> list:
    (entry,) = call(proto, "COMMAND", "INFO", name)
    return entry


def key_spec(entry: list, i: int) -> tuple[dict, dict, dict]:
    ks = pairs(entry[8][i])
    return ks, pairs(ks[b"begin_search"]), pairs(ks[b"find_keys"])


PROTOS = pytest.mark.parametrize("proto", [2, 3])


# --- COMMAND INFO ---------------------------------------------------------------------------

@PROTOS
def test_info_get(proto: int) -> None:
    entry = info(proto, "get")
    assert entry[:7] == [b"get", 2, [b"readonly", b"fast"], 1, 1, 1,
                         [b"@read", b"@string", b"@fast"]]
    assert entry[7] == [] and entry[9] == []
    ks, bs, fk = key_spec(entry, 0)
    assert ks[b"flags"] == [b"RO", b"access"]
    assert bs[b"type"] == b"index" and pairs(bs[b"spec"]) == {b"index": 1}
    assert fk[b"type"] == b"range"
    assert pairs(fk[b"spec"]) == {b"lastkey": 0, b"keystep": 1, b"limit": 0}
    assert list(pairs(fk[b"spec"])) == [b"lastkey", b"keystep", b"limit"]


def test_info_get_resp3_types() -> None:
    data = raw(3, "COMMAND", "INFO", "get")
    assert data.startswith(b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n")
    assert b"%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n" in data
    assert data.endswith(b"~0\r\n")                      # no subcommands: an empty set
    assert b"%" not in raw(2, "COMMAND", "INFO", "get") and b"~" not in raw(2, "COMMAND", "INFO", "get")


@PROTOS
def test_info_set_key_spec_flags_in_valkey_order(proto: int) -> None:
    entry = info(proto, "set")
    assert entry[2] == [b"write", b"denyoom"]
    ks, _, _ = key_spec(entry, 0)
    assert ks[b"flags"] == [b"RW", b"access", b"update", b"variable_flags"]


def test_info_key_flags_reordered() -> None:
    # The table lists BITFIELD's as RW, UPDATE, ACCESS; Valkey replies in its own order.
    ks, _, _ = key_spec(info(2, "bitfield"), 0)
    assert ks[b"flags"] == [b"RW", b"access", b"update", b"variable_flags"]


@PROTOS
def test_info_zunionstore_keynum(proto: int) -> None:
    entry = info(proto, "zunionstore")
    assert b"movablekeys" in entry[2]
    assert len(entry[8]) == 2
    ks, bs, fk = key_spec(entry, 1)
    assert ks[b"flags"] == [b"RO", b"access"]
    assert pairs(bs[b"spec"]) == {b"index": 2}
    assert fk[b"type"] == b"keynum"
    spec = pairs(fk[b"spec"])
    assert list(spec) == [b"keynumidx", b"firstkey", b"keystep"]
    assert spec == {b"keynumidx": 0, b"firstkey": 1, b"keystep": 1}


@PROTOS
def test_info_xread_keyword(proto: int) -> None:
    entry = info(proto, "xread")
    assert entry[3:6] == [0, 0, 0]
    _, bs, fk = key_spec(entry, 0)
    assert bs[b"type"] == b"keyword"
    assert pairs(bs[b"spec"]) == {b"keyword": b"STREAMS", b"startfrom": 1}
    assert pairs(fk[b"spec"]) == {b"lastkey": -1, b"keystep": 1, b"limit": 2}


def test_info_unknown_spec_has_empty_spec_map() -> None:
    _, bs, fk = key_spec(info(3, "sort"), 1)
    assert bs == {b"type": b"unknown", b"spec": {}}
    assert fk == {b"type": b"unknown", b"spec": {}}


@PROTOS
def test_info_client_subcommands(proto: int) -> None:
    entry = info(proto, "client")
    subs = {s[0]: s for s in entry[9]}
    assert len(subs) == len(COMMANDS["client"].subcommands)
    sub = subs[b"client|setname"]
    assert len(sub) == 10 and sub[1] == 3 and sub[9] == []


def test_info_tips_are_bulk_strings() -> None:
    data = raw(2, "COMMAND", "INFO", "keys")
    assert b"$25\r\nrequest_policy:all_shards\r\n" in data


@PROTOS
def test_info_unknown_and_subcommand_names(proto: int) -> None:
    got = call(proto, "COMMAND", "INFO", "GET", "nosuch", "config|get", "get|x", "config|get|x")
    assert got[0][0] == b"get"
    assert got[1] is None and got[3] is None and got[4] is None
    assert got[2][0] == b"config|get"
    assert raw(2, "COMMAND", "INFO", "nosuch") == b"*1\r\n$-1\r\n"
    assert raw(3, "COMMAND", "INFO", "nosuch") == b"*1\r\n_\r\n"


@PROTOS
def test_bare_command_lists_every_command(proto: int) -> None:
    entries = call(proto, "COMMAND")
    assert len(entries) == len(COMMANDS)
    assert {e[0] for e in entries} == {n.encode() for n in COMMANDS}
    assert raw(proto, "COMMAND") == raw(proto, "COMMAND", "INFO")


def test_bare_command_is_cached() -> None:
    assert raw(2, "COMMAND") is raw(2, "COMMAND")
    assert raw(3, "COMMAND", "DOCS") is raw(3, "COMMAND", "DOCS")
    assert raw(2, "COMMAND") != raw(3, "COMMAND")


# --- COUNT, LIST, HELP ----------------------------------------------------------------------

def test_count() -> None:
    assert call(2, "COMMAND", "COUNT") == len(COMMANDS)
    assert raw(3, "command", "count") == b":%d\r\n" % len(COMMANDS)


def test_list_all_includes_subcommands() -> None:
    names = call(2, "COMMAND", "LIST")
    assert b"get" in names and b"client|setname" in names
    assert len(names) == len(COMMANDS) + sum(len(s.subcommands) for s in COMMANDS.values())


def test_list_filterby_pattern_and_aclcat() -> None:
    assert set(call(2, "COMMAND", "LIST", "FILTERBY", "PATTERN", "XREA?*")) == {
        b"xread", b"xreadgroup"}
    assert b"config|get" in call(2, "COMMAND", "LIST", "filterby", "pattern", "config|*")
    hll = call(3, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "HyperLogLog")
    assert b"pfadd" in hll and b"get" not in hll
    assert call(2, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "nosuchcat") == []
    assert call(2, "COMMAND", "LIST", "FILTERBY", "MODULE", "m") == []


@pytest.mark.parametrize("args", [("FILTERBY",), ("FILTERBY", "PATTERN"),
                                  ("FILTERBY", "NOPE", "x"), ("BOGUS", "a", "b"),
                                  ("FILTERBY", "PATTERN", "a", "b")])
def test_list_syntax_errors(args: tuple[str, ...]) -> None:
    assert raw(2, "COMMAND", "LIST", *args) == b"-ERR syntax error\r\n"


def test_help() -> None:
    lines = call(2, "command", "help")
    assert lines[0] == b"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"HELP", b"    Print this help."]
    assert raw(2, "COMMAND", "HELP").startswith(b"*21\r\n+COMMAND ")


def test_unknown_subcommand_and_arity() -> None:
    assert str(call(2, "COMMAND", "nope")) == "ERR unknown subcommand 'nope'. Try COMMAND HELP."
    assert str(call(2, "COMMAND", "COUNT", "x")) == \
        "ERR wrong number of arguments for 'command|count' command"
    assert str(call(2, "COMMAND", "GETKEYS")) == \
        "ERR wrong number of arguments for 'command|getkeys' command"


# --- GETKEYS / GETKEYSANDFLAGS -------------------------------------------------------------

@pytest.mark.parametrize("args, keys", [
    (("GET", "k"), [b"k"]),
    (("set", "k", "v", "EX", "10"), [b"k"]),
    (("MSET", "a", "1", "b", "2"), [b"a", b"b"]),
    (("ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"), [b"dst", b"a", b"b"]),
    (("XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"), [b"s1", b"s2"]),
    (("EVAL", "return 1", "2", "k1", "k2", "arg"), [b"k1", b"k2"]),
    (("EVAL", "return 1", "0"), []),
    (("MEMORY", "USAGE", "k"), [b"k"]),
    (("SORT", "k", "LIMIT", "0", "1", "STORE", "d"), [b"k", b"d"]),
    (("MIGRATE", "h", "1", "", "0", "5", "AUTH", "p", "KEYS", "a", "b"), [b"a", b"b"]),
])
def test_getkeys(args: tuple[str, ...], keys: list[bytes]) -> None:
    assert call(2, "COMMAND", "GETKEYS", *args) == keys
    assert call(3, "COMMAND", "GETKEYS", *args) == keys


@pytest.mark.parametrize("args, message", [
    (("nosuch", "x"), "Invalid command specified"),
    (("CONFIG", "nosuch", "x"), "Invalid command specified"),
    (("PING",), "The command has no key arguments"),
    (("SPUBLISH", "ch", "msg"), "The command has no key arguments"),
    (("GET",), "Invalid number of arguments specified for command"),
    (("GET", "a", "b"), "Invalid number of arguments specified for command"),
    (("ZUNIONSTORE", "dst", "3", "a", "b"), "Invalid arguments specified for command"),
    (("ZUNIONSTORE", "dst", "x", "a"), "Invalid arguments specified for command"),
    (("XREAD", "COUNT", "1", "STREAMS"), "Invalid arguments specified for command"),
])
def test_getkeys_errors(args: tuple[str, ...], message: str) -> None:
    assert str(call(2, "COMMAND", "GETKEYS", *args)) == "ERR " + message
    assert raw(2, "COMMAND", "GETKEYS", *args) == f"-ERR {message}\r\n".encode()


@pytest.mark.parametrize("args, expected", [
    (("SET", "k", "v"), [[b"k", [b"OW", b"update"]]]),
    (("SET", "k", "v", "get"), [[b"k", [b"RW", b"access", b"update"]]]),
    (("BITFIELD", "k", "GET", "u8", "0"), [[b"k", [b"RO", b"access"]]]),
    (("BITFIELD", "k", "SET", "u8", "0", "1"), [[b"k", [b"RW", b"access", b"update"]]]),
    (("LMOVE", "a", "b", "LEFT", "RIGHT"),
     [[b"a", [b"RW", b"access", b"delete"]], [b"b", [b"RW", b"insert"]]]),
    (("SORT", "k", "STORE", "d"), [[b"k", [b"RO", b"access"]], [b"d", [b"OW", b"update"]]]),
])
def test_getkeysandflags(args: tuple[str, ...], expected: list) -> None:
    assert call(2, "COMMAND", "GETKEYSANDFLAGS", *args) == expected
    assert call(3, "COMMAND", "GETKEYSANDFLAGS", *args) == expected


def test_getkeysandflags_resp3_uses_sets() -> None:
    assert raw(3, "COMMAND", "GETKEYSANDFLAGS", "GET", "k") == \
        b"*1\r\n*2\r\n$1\r\nk\r\n~2\r\n+RO\r\n+access\r\n"


# --- DOCS -----------------------------------------------------------------------------------

def docs(proto: int, name: str) -> dict:
    got = pairs(call(proto, "COMMAND", "DOCS", name))
    assert list(got) == [name.encode()]
    return pairs(got[name.encode()])


def args_of(value: list) -> list[dict]:
    return [pairs(a) for a in value]


@PROTOS
def test_docs_set(proto: int) -> None:
    doc = docs(proto, "set")
    assert list(doc) == [b"summary", b"since", b"group", b"arguments"]
    assert doc[b"since"] == b"1.0.0" and doc[b"group"] == b"string"
    args = args_of(doc[b"arguments"])
    assert [a[b"name"] for a in args] == [b"key", b"value", b"condition", b"get", b"expiration"]
    key = args[0]
    assert list(key) == [b"name", b"type", b"display_text", b"key_spec_index"]
    assert key == {b"name": b"key", b"type": b"key", b"display_text": b"key",
                   b"key_spec_index": 0}
    cond = args[2]
    assert list(cond) == [b"name", b"type", b"since", b"flags", b"arguments"]
    assert cond[b"type"] == b"oneof" and cond[b"flags"] == [b"optional"]
    assert b"display_text" not in cond
    nx, xx = args_of(cond[b"arguments"])
    assert list(nx) == [b"name", b"type", b"display_text", b"token"]
    assert (nx[b"token"], xx[b"token"]) == (b"NX", b"XX")
    assert nx[b"type"] == b"pure-token"
    get = args[3]
    assert get == {b"name": b"get", b"type": b"pure-token", b"display_text": b"get",
                   b"token": b"GET", b"since": b"6.2.0", b"flags": [b"optional"]}


def test_docs_set_resp3_flags_are_sets() -> None:
    assert b"$5\r\nflags\r\n~1\r\n+optional\r\n" in raw(3, "COMMAND", "DOCS", "set")


def test_docs_arg_flags_order() -> None:
    args = args_of(docs(2, "mset")[b"arguments"])
    assert args[0][b"flags"] == [b"multiple"]
    xread = args_of(docs(3, "xread")[b"arguments"])
    assert xread[2][b"type"] == b"block" and xread[2][b"token"] == b"STREAMS"


def test_docs_container_has_subcommands_map() -> None:
    doc = docs(3, "client")
    assert b"arguments" not in doc
    subs = doc[b"subcommands"]
    assert set(subs) == {f"client|{n}".encode() for n in COMMANDS["client"].subcommands}
    assert subs[b"client|setname"][b"group"] == b"connection"


def test_docs_deprecated_command() -> None:
    doc = docs(2, "getset")
    assert doc[b"doc_flags"] == [b"deprecated"]
    assert doc[b"deprecated_since"] == b"6.2.0"
    assert doc[b"replaced_by"]


def test_docs_unknown_names_are_skipped() -> None:
    assert pairs(call(2, "COMMAND", "DOCS", "nosuch")) == {}
    assert raw(3, "COMMAND", "DOCS", "nosuch") == b"%0\r\n"
    got = pairs(call(2, "COMMAND", "DOCS", "nosuch", "GET", "config|get"))
    assert list(got) == [b"get", b"config|get"]


@PROTOS
def test_bare_docs_covers_every_command(proto: int) -> None:
    got = pairs(call(proto, "COMMAND", "DOCS"))
    assert set(got) == {n.encode() for n in COMMANDS}
