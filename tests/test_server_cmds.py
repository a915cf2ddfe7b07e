"""Connection and server commands against a real server: PING/ECHO/SELECT/QUIT/RESET, AUTH,
CLIENT, COMMAND, INFO, CONFIG, CLUSTER, rename-command, SHUTDOWN, signals, worker restarts and
several proxies. Expected replies are Valkey 8.0's."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import tempfile
import time

import hiredis
import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers import encode, keys_on, read_exact, read_reply, worker_of
from server import ROOT, Server, reap

# Valkey 8.0.1's facts: shared/reference beside the repository (CI lays shared/ beside its clone);
# the package ships verbatim copies of both files, used when shared/ is not there.
REFERENCE = ROOT.parent / "shared" / "reference"
if not (REFERENCE / "commands.json").exists():
    REFERENCE = ROOT / "shardd" / "data"


# --- helpers ------------------------------------------------------------------------------

class Conn:
    """A raw connection that sends commands and parses replies with hiredis."""

    def __init__(self, server, timeout: float = 10.0) -> None:
        self.sock = server.connect()
        self.reader = hiredis.Reader()
        self.timeout = timeout

    def call(self, *args):
        self.sock.sendall(encode(*args))
        return self.reply()

    def reply(self):
        return read_reply(self.sock, self.reader, self.timeout)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


def client_fields(line: str) -> dict[str, str]:
    """A CLIENT INFO or CLIENT LIST line as its name=value fields."""
    return dict(f.split("=", 1) for f in line.split())


def listed_ids(text: str) -> set[int]:
    """The client ids of a CLIENT LIST reply."""
    return {int(client_fields(line)["id"]) for line in text.splitlines()}


def err(reply) -> str:
    assert isinstance(reply, hiredis.ReplyError), f"expected an error, got {reply!r}"
    return str(reply)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def assert_gone(pids: list[int], timeout: float = 5.0) -> None:
    alive = reap(pids, timeout)
    assert not alive, f"processes left behind: {[p.pid for p in alive]}"


# --- PING, ECHO, SELECT, QUIT, RESET -----------------------------------------------------------

def test_ping_echo(server, r):
    c = Conn(server)
    try:
        assert c.call("PING") == b"PONG"
        assert c.call("PING", "hello") == b"hello"
        assert c.call("ECHO", "a b\r\nc") == b"a b\r\nc"
        assert c.call("ECHO", "") == b""
        assert err(c.call("ECHO")) == "ERR wrong number of arguments for 'echo' command"
    finally:
        c.close()


def test_select(server, r):
    c = Conn(server)
    try:
        assert c.call("SET", "sel", "db0") == b"OK"
        assert c.call("SELECT", "15") == b"OK"
        assert c.call("GET", "sel") is None
        assert c.call("SET", "sel", "db15") == b"OK"
        for bad in ("16", "-1", "1000000"):
            assert err(c.call("SELECT", bad)) == "ERR DB index is out of range"
        assert err(c.call("SELECT", "x")) == "ERR value is not an integer or out of range"
        assert err(c.call("SELECT", "1.5")) == "ERR value is not an integer or out of range"
        assert c.call("GET", "sel") == b"db15"      # still in db 15 after the errors
        assert c.call("SELECT", "0") == b"OK"
        assert c.call("GET", "sel") == b"db0"
    finally:
        c.close()
    assert server.client(db=15).get("sel") == b"db15"


def test_quit(server):
    c = Conn(server)
    try:
        assert c.call("QUIT") == b"OK"
        assert c.closed_by_server()
    finally:
        c.close()
    with server.connect() as s:
        s.sendall(b"PING\r\nQUIT\r\nPING\r\n")
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b"+PONG\r\n+OK\r\n"


def test_reset(server, r):
    c = Conn(server)
    try:
        c.call("SELECT", "3")
        c.call("CLIENT", "SETNAME", "before-reset")
        c.call("CLIENT", "NO-EVICT", "on")
        c.call("CLIENT", "NO-TOUCH", "on")
        assert c.call("HELLO", "3")[b"proto"] == 3
        assert c.call("RESET") == b"RESET"
        assert c.call("GET", "missing") is None
        c.sock.sendall(encode("GET", "missing"))
        c.sock.settimeout(5)
        assert c.sock.recv(64) == b"$-1\r\n"         # RESP2 again
        info = c.call("CLIENT", "INFO").decode()
        assert " db=0 " in info and " resp=2 " in info and " name= " in info
        assert " flags=N " in info
        assert c.call("CLIENT", "GETNAME") is None
    finally:
        c.close()


# --- AUTH and requirepass ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_server():
    srv = Server("--requirepass", "secret")
    yield srv
    srv.stop()


def test_noauth_before_auth(auth_server):
    c = Conn(auth_server)
    try:
        for cmd in (["GET", "a"], ["PING"], ["ECHO", "x"], ["CLIENT", "ID"], ["SET", "a", "b"],
                    ["CONFIG", "GET", "port"], ["SELECT", "1"]):
            assert err(c.call(*cmd)) == "NOAUTH Authentication required."
        assert err(c.call("HELLO", "3")) == (
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time")
        # Still unauthenticated and still RESP2.
        assert err(c.call("GET", "a")) == "NOAUTH Authentication required."
    finally:
        c.close()


def test_auth_wrongpass_then_ok(auth_server):
    c = Conn(auth_server)
    try:
        wrong = "WRONGPASS invalid username-password pair or user is disabled."
        assert err(c.call("AUTH", "nope")) == wrong
        assert err(c.call("AUTH", "default", "nope")) == wrong
        assert err(c.call("AUTH", "someone", "secret")) == wrong
        assert err(c.call("GET", "a")) == "NOAUTH Authentication required."
        assert err(c.call("AUTH", "a", "b", "c")) == "ERR syntax error"
        assert c.call("AUTH", "secret") == b"OK"
        assert c.call("SET", "authed", "yes") == b"OK"
        assert c.call("GET", "authed") == b"yes"
        # A wrong AUTH afterwards does not log the connection out.
        assert err(c.call("AUTH", "nope")) == wrong
        assert c.call("GET", "authed") == b"yes"
        assert c.call("RESET") == b"RESET"
        assert err(c.call("GET", "authed")) == "NOAUTH Authentication required."
        assert c.call("AUTH", "default", "secret") == b"OK"
        assert c.call("GET", "authed") == b"yes"
    finally:
        c.close()


def test_hello_3_auth(auth_server):
    c = Conn(auth_server)
    try:
        assert err(c.call("HELLO", "3", "AUTH", "default", "nope")) == \
            "WRONGPASS invalid username-password pair or user is disabled."
        hello = c.call("HELLO", "3", "AUTH", "default", "secret", "SETNAME", "h3")
        assert hello[b"proto"] == 3 and hello[b"server"] == b"valkey"
        assert c.call("CLIENT", "GETNAME") == b"h3"
        c.sock.sendall(encode("GET", "missing-key"))
        c.sock.settimeout(5)
        assert c.sock.recv(64) == b"_\r\n"
    finally:
        c.close()


def test_unauthenticated_request_limits(auth_server):
    """Before AUTH, Valkey refuses multibulk counts over 10 and bulks over 16384 bytes."""
    with auth_server.connect() as s:
        s.sendall(b"*11\r\n")
        s.settimeout(5)
        assert s.recv(128) == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
        assert s.recv(128) == b""
    with auth_server.connect() as s:
        s.sendall(b"*2\r\n$3\r\nGET\r\n$16385\r\n")
        s.settimeout(5)
        assert s.recv(128) == b"-ERR Protocol error: unauthenticated bulk length\r\n"
        assert s.recv(128) == b""
    with auth_server.connect() as s:    # after AUTH the limits are gone
        s.sendall(encode("AUTH", "secret") + encode("ECHO", "x" * 20000))
        s.settimeout(5)
        want = b"+OK\r\n$20000\r\n" + b"x" * 20000 + b"\r\n"
        assert read_exact(s, len(want)) == want


def test_redis_py_password(auth_server):
    c = auth_server.client(password="secret")
    try:
        assert c.set("py", "1")
        assert c.get("py") == b"1"
    finally:
        c.close()
    c3 = auth_server.client(password="secret", protocol=3)
    try:
        assert c3.get("py") == b"1"
        assert c3.get("missing") is None
    finally:
        c3.close()
    no_retry = dict(retry=Retry(NoBackoff(), 0))
    bad = auth_server.client(password="wrong", **no_retry)
    try:
        with pytest.raises(redis.AuthenticationError):
            bad.get("py")
    finally:
        bad.close()
    anonymous = auth_server.client(**no_retry)
    try:
        with pytest.raises(redis.AuthenticationError, match="Authentication required|already authenticated"):
            anonymous.get("py")
    finally:
        anonymous.close()


def test_auth_without_requirepass(server):
    c = Conn(server)
    try:
        assert err(c.call("AUTH", "x")) == (
            "ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?")
        # The default user has no password: AUTH default <anything> succeeds.
        assert c.call("AUTH", "default", "anything") == b"OK"
        assert err(c.call("AUTH", "other", "anything")) == \
            "WRONGPASS invalid username-password pair or user is disabled."
    finally:
        c.close()


# --- CLIENT --------------------------------------------------------------------------------------

def test_client_id_setname_getname(server):
    a, b = Conn(server), Conn(server)
    try:
        ida, idb = a.call("CLIENT", "ID"), b.call("CLIENT", "ID")
        assert isinstance(ida, int) and isinstance(idb, int) and ida != idb
        assert a.call("CLIENT", "ID") == ida
        assert a.call("CLIENT", "GETNAME") is None
        assert a.call("CLIENT", "SETNAME", "alpha") == b"OK"
        assert a.call("CLIENT", "GETNAME") == b"alpha"
        assert b.call("CLIENT", "GETNAME") is None
        for bad in ("a b", "a\nb", "\x01"):
            assert err(a.call("CLIENT", "SETNAME", bad)) == \
                "ERR Client names cannot contain spaces, newlines or special characters."
        assert a.call("CLIENT", "GETNAME") == b"alpha"
        assert a.call("CLIENT", "SETNAME", "") == b"OK"
        assert a.call("CLIENT", "GETNAME") is None
        assert err(a.call("CLIENT", "SETNAME")) == \
            "ERR wrong number of arguments for 'client|setname' command"
        assert err(a.call("CLIENT", "ID", "x")) == "ERR wrong number of arguments for 'client|id' command"
        assert err(a.call("CLIENT", "KILL")) == "ERR wrong number of arguments for 'client|kill' command"
        assert err(a.call("CLIENT", "FOO")) == "ERR unknown subcommand 'FOO'. Try CLIENT HELP."
    finally:
        a.close()
        b.close()


def test_client_setinfo_and_info(server):
    c = Conn(server)
    try:
        assert c.call("CLIENT", "SETINFO", "LIB-NAME", "mylib") == b"OK"
        assert c.call("CLIENT", "SETINFO", "lib-ver", "1.2.3") == b"OK"
        assert err(c.call("CLIENT", "SETINFO", "lib-name", "a b")) == \
            "ERR lib-name cannot contain spaces, newlines or special characters."
        assert err(c.call("CLIENT", "SETINFO", "foo", "bar")) == "ERR Unrecognized option 'foo'"
        c.call("CLIENT", "SETNAME", "infoname")
        c.call("SELECT", "2")
        line = c.call("CLIENT", "INFO").decode()
        assert line.endswith("\n") and line.count("\n") == 1
        fields = client_fields(line)
        assert fields["id"] == str(c.call("CLIENT", "ID"))
        assert fields["name"] == "infoname"
        assert fields["db"] == "2"
        assert fields["lib-name"] == "mylib" and fields["lib-ver"] == "1.2.3"
        assert fields["resp"] == "2" and fields["user"] == "default"
        assert fields["flags"] == "N"
        local = c.sock.getsockname()
        assert fields["addr"] == f"{local[0]}:{local[1]}"
        assert fields["laddr"] == f"127.0.0.1:{server.port}"
        for name in ("age", "idle", "fd", "sub", "psub", "multi", "qbuf", "omem", "tot-mem", "redir"):
            assert name in fields
        # An empty value clears the attribute.
        assert c.call("CLIENT", "SETINFO", "lib-name", "") == b"OK"
        assert " lib-name= " in c.call("CLIENT", "INFO").decode()
    finally:
        c.close()


def test_client_no_evict_no_touch(server):
    c = Conn(server)
    try:
        def flags():
            return client_fields(c.call("CLIENT", "INFO").decode())["flags"]
        assert c.call("CLIENT", "NO-EVICT", "on") == b"OK"
        assert flags() == "e"
        assert c.call("CLIENT", "NO-TOUCH", "ON") == b"OK"
        assert flags() == "eT"
        assert c.call("CLIENT", "NO-EVICT", "off") == b"OK"
        assert c.call("CLIENT", "NO-TOUCH", "off") == b"OK"
        assert flags() == "N"
        assert err(c.call("CLIENT", "NO-EVICT", "maybe")) == "ERR syntax error"
        assert err(c.call("CLIENT", "NO-TOUCH", "1")) == "ERR syntax error"
        assert err(c.call("CLIENT", "NO-EVICT")) == \
            "ERR wrong number of arguments for 'client|no-evict' command"
    finally:
        c.close()


def test_client_list(server):
    conns = [Conn(server) for _ in range(3)]
    try:
        ids = [c.call("CLIENT", "ID") for c in conns]
        conns[1].call("CLIENT", "SETNAME", "listed")
        text = conns[0].call("CLIENT", "LIST").decode()
        lines = [client_fields(line) for line in text.splitlines()]
        listed = {int(l["id"]): l for l in lines}
        assert set(ids) <= set(listed)
        assert listed[ids[1]]["name"] == "listed"
        only = conns[0].call("CLIENT", "LIST", "ID", ids[1], ids[2]).decode().splitlines()
        assert sorted(int(client_fields(l)["id"]) for l in only) == sorted(ids[1:])
        assert conns[0].call("CLIENT", "LIST", "ID", "999999999") == b""
        assert set(ids) <= listed_ids(conns[0].call("CLIENT", "LIST", "TYPE", "normal").decode())
        for kind in ("master", "primary", "replica", "slave", "pubsub"):
            assert conns[0].call("CLIENT", "LIST", "TYPE", kind) == b""
        assert err(conns[0].call("CLIENT", "LIST", "TYPE", "foo")) == "ERR Unknown client type 'foo'"
        assert err(conns[0].call("CLIENT", "LIST", "ID", "abc")) == "ERR Invalid client ID"
        assert err(conns[0].call("CLIENT", "LIST", "FOO")) == "ERR syntax error"
    finally:
        for c in conns:
            c.close()


def test_client_list_and_kill_type_pubsub(server):
    """A client subscribed to anything is of type pubsub (getClientType), until it unsubscribes."""
    me, subscriber = Conn(server), Conn(server)
    try:
        sub_id = subscriber.call("CLIENT", "ID")
        subscriber.call("SUBSCRIBE", "news")
        assert listed_ids(me.call("CLIENT", "LIST", "TYPE", "pubsub").decode()) == {sub_id}
        assert sub_id not in listed_ids(me.call("CLIENT", "LIST", "TYPE", "normal").decode())
        subscriber.call("UNSUBSCRIBE", "news")
        assert me.call("CLIENT", "LIST", "TYPE", "pubsub") == b""
        subscriber.call("PSUBSCRIBE", "n*")
        assert me.call("CLIENT", "KILL", "TYPE", "normal", "ID", sub_id) == 0
        assert me.call("CLIENT", "KILL", "TYPE", "pubsub") == 1
        assert subscriber.closed_by_server()
    finally:
        me.close()
        subscriber.close()


def test_client_kill(server):
    me, victim, other = Conn(server), Conn(server), Conn(server)
    try:
        my_id = me.call("CLIENT", "ID")
        victim_id = victim.call("CLIENT", "ID")
        assert me.call("CLIENT", "KILL", "ID", victim_id) == 1
        assert victim.closed_by_server()
        assert me.call("CLIENT", "KILL", "ID", victim_id) == 0
        # SKIPME defaults to yes: the caller survives a filter that matches it.
        assert me.call("CLIENT", "KILL", "ID", my_id) == 0
        assert me.call("PING") == b"PONG"
        # Old form: by address, replies OK.
        addr = client_fields(other.call("CLIENT", "INFO").decode())["addr"]
        assert me.call("CLIENT", "KILL", addr) == b"OK"
        assert other.closed_by_server()
        assert err(me.call("CLIENT", "KILL", "1.2.3.4:5")) == "ERR No such client"
        assert me.call("CLIENT", "KILL", "ADDR", "1.2.3.4:5") == 0
        assert me.call("CLIENT", "KILL", "LADDR", "1.1.1.1:1") == 0
        assert me.call("CLIENT", "KILL", "MAXAGE", "100000") == 0
        # Errors, as Valkey words them.
        for bad in ("0", "-1", "abc"):
            assert err(me.call("CLIENT", "KILL", "ID", bad)) == "ERR client-id should be greater than 0"
        assert err(me.call("CLIENT", "KILL", "TYPE", "foo")) == "ERR Unknown client type 'foo'"
        assert err(me.call("CLIENT", "KILL", "USER", "nosuch")) == "ERR No such user 'nosuch'"
        assert err(me.call("CLIENT", "KILL", "MAXAGE", "x")) == "ERR maxage is not an integer or out of range"
        assert err(me.call("CLIENT", "KILL", "MAXAGE", "0")) == "ERR maxage should be greater than 0"
        assert err(me.call("CLIENT", "KILL", "SKIPME", "maybe")) == "ERR syntax error"
        assert err(me.call("CLIENT", "KILL", "FOO", "bar")) == "ERR syntax error"
        assert err(me.call("CLIENT", "KILL", "ID", "1", "SKIPME")) == "ERR syntax error"
        # SKIPME no: the caller gets its reply, then the connection closes.
        assert me.call("CLIENT", "KILL", "ID", my_id, "SKIPME", "no") == 1
        assert me.closed_by_server()
    finally:
        for c in (me, victim, other):
            c.close()


def test_client_kill_maxage_kills_old_connections(server):
    old, me = Conn(server), Conn(server)
    try:
        time.sleep(1.2)
        young = Conn(server)
        try:
            assert young.call("PING") == b"PONG"
            killed = me.call("CLIENT", "KILL", "MAXAGE", "1")
            assert old.closed_by_server(1)
            assert young.call("PING") == b"PONG"
            assert killed >= 1
        finally:
            young.close()
    finally:
        old.close()
        me.close()


def test_client_info_cmd_is_the_full_name(server):
    c = Conn(server)
    try:
        c.call("GET", "x")
        assert " cmd=client|info " in c.call("CLIENT", "INFO").decode()
    finally:
        c.close()


# --- COMMAND -------------------------------------------------------------------------------------

def _reference_commands() -> dict:
    with open(os.path.join(REFERENCE, "commands.json")) as fh:
        return json.load(fh)


def test_command_count_and_list(server):
    ref = _reference_commands()
    top = [n for n, v in ref.items() if "|" not in n and v.get("group") != "sentinel"]
    every = [n for n, v in ref.items() if v.get("group") != "sentinel"]
    c = Conn(server)
    try:
        assert c.call("COMMAND", "COUNT") == len(top)
        names = c.call("COMMAND", "LIST")
        assert sorted(n.decode() for n in names) == sorted(n.lower() for n in every)
        assert sorted(c.call("COMMAND", "LIST", "FILTERBY", "PATTERN", "xa*")) == [b"xack", b"xadd", b"xautoclaim"]
        assert err(c.call("COMMAND", "COUNT", "x")) == "ERR wrong number of arguments for 'command|count' command"
        assert err(c.call("COMMAND", "FOO")) == "ERR unknown subcommand 'FOO'. Try COMMAND HELP."
    finally:
        c.close()


def test_command_info(server):
    ref = _reference_commands()
    c = Conn(server)
    try:
        get, nothing = c.call("COMMAND", "INFO", "get", "nosuchcommand")
        assert nothing is None
        assert get[0] == b"get" and get[1] == 2
        assert get[2] == [b"readonly", b"fast"]
        assert get[3:6] == [1, 1, 1]
        assert set(get[6]) == {c.encode() for c in ref["GET"]["acl_categories_all"]}
        config_info = c.call("COMMAND", "INFO", "config")[0]
        assert config_info[0] == b"config" and config_info[1] == -2
        assert {sub[0] for sub in config_info[9]} >= {b"config|get", b"config|set", b"config|resetstat"}
        assert c.call("COMMAND", "INFO", "config|get")[0][0] == b"config|get"
        everything = c.call("COMMAND")
        assert len(everything) == c.call("COMMAND", "COUNT")
    finally:
        c.close()


def test_command_docs(server):
    c = Conn(server)
    try:
        docs = c.call("COMMAND", "DOCS", "set")
        assert docs[0] == b"set"
        body = dict(zip(docs[1][0::2], docs[1][1::2]))
        assert body[b"group"] == b"string"
        assert body[b"since"] == b"1.0.0"
        args = [dict(zip(a[0::2], a[1::2])) for a in body[b"arguments"]]
        assert [a[b"name"] for a in args][:2] == [b"key", b"value"]
        assert c.call("COMMAND", "DOCS", "nosuchcommand") == []
    finally:
        c.close()


@pytest.mark.parametrize("argv,reply", [
    (["set", "a", "b"], [b"a"]),
    (["mset", "a", "1", "b", "2"], [b"a", b"b"]),
    (["get", "k"], [b"k"]),
    (["del", "x", "y", "z"], [b"x", b"y", b"z"]),
    (["getrange", "s", "0", "-1"], [b"s"]),
    (["eval", "return 1", "2", "k1", "k2", "arg"], [b"k1", b"k2"]),
    (["get"], "ERR Invalid number of arguments specified for command"),
    (["ping"], "ERR The command has no key arguments"),
    (["nosuch", "a"], "ERR Invalid command specified"),
])
def test_command_getkeys(server, argv, reply):
    c = Conn(server)
    try:
        got = c.call("COMMAND", "GETKEYS", *argv)
        if isinstance(reply, str):
            assert err(got) == reply
        else:
            assert got == reply
    finally:
        c.close()


# --- INFO ----------------------------------------------------------------------------------------

def _info_text(server, *sections) -> str:
    c = Conn(server)
    try:
        return c.call("INFO", *sections).decode()
    finally:
        c.close()


def test_info_sections_and_fields(server, r):
    text = _info_text(server)
    titles = re.findall(r"^# (\w+)\r$", text, re.M)
    for title in ("Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU",
                  "Keyspace"):
        assert title in titles
    assert "\r\n" in text
    info = r.info("everything")
    assert info["redis_version"]
    assert info["process_id"] == server.proc.pid
    assert info["tcp_port"] == server.port
    assert re.fullmatch(r"[0-9a-f]{40}", info["run_id"])
    assert info["role"] == "master"
    assert info["used_memory"] > 0 and info["used_memory_rss"] > 0
    assert info["maxmemory"] == int(r.config_get("maxmemory")["maxmemory"])
    assert info["connected_clients"] >= 1
    for name in ("total_commands_processed", "keyspace_hits", "keyspace_misses", "expired_keys",
                 "total_connections_received", "uptime_in_seconds"):
        assert isinstance(info[name], int)
    only = _info_text(server, "server", "clients")
    assert re.findall(r"^# (\w+)\r$", only, re.M) == ["Server", "Clients"]
    assert _info_text(server, "nosuchsection") == ""


def test_info_counters(server, r):
    c = Conn(server)
    try:
        r.config_resetstat()
        start = r.info("stats")
        assert start["total_commands_processed"] <= 3
        assert start["keyspace_hits"] == 0 and start["keyspace_misses"] == 0
        k0, k1 = keys_on(0, 1, "hit:")[0], keys_on(1, 1, "hit:")[0]
        c.call("SET", k0, "v")
        c.call("SET", k1, "v")
        for _ in range(3):
            c.call("GET", k0)
        c.call("GET", k1)
        c.call("GET", "missing-one")
        c.call("GET", "missing-two")
        for _ in range(20):
            c.call("PING")
        stats = r.info("stats")
        assert stats["keyspace_hits"] == 4
        assert stats["keyspace_misses"] == 2
        assert stats["total_commands_processed"] >= start["total_commands_processed"] + 28
        c.call("SET", "short-lived", "v", "PX", "30")
        time.sleep(0.1)
        assert c.call("GET", "short-lived") is None
        assert wait_until(lambda: r.info("stats")["expired_keys"] >= 1, 5)
    finally:
        c.close()


def test_info_keyspace_and_shards(server, r):
    k0, k1 = keys_on(0, 3, "ks:"), keys_on(1, 2, "ks:")
    for k in k0 + k1:
        r.set(k, "v")
    r.expire(k0[0], 1000)
    r1 = server.client(db=1)
    try:
        r1.set("in-db1", "v")
    finally:
        r1.close()
    keyspace = r.info("keyspace")
    assert keyspace["db0"]["keys"] == 5 and keyspace["db0"]["expires"] == 1
    assert keyspace["db1"]["keys"] == 1 and keyspace["db1"]["expires"] == 0
    raw = _info_text(server, "keyspace")
    assert re.search(r"^db0:keys=5,expires=1,avg_ttl=\d+\r$", raw, re.M)
    shards = r.info("shards")
    workers = {p.pid for p in server.children()}
    assert shards["shard0"]["pid"] in workers and shards["shard1"]["pid"] in workers
    assert shards["shard0"]["slots"] == "0-8191" and shards["shard1"]["slots"] == "8192-16383"
    k1_db1 = worker_of("in-db1") == 1
    assert shards["shard0"]["keys"] == 3 + (0 if k1_db1 else 1)
    assert shards["shard1"]["keys"] == 2 + (1 if k1_db1 else 0)


def test_role_wait_time_dbsize(server, r):
    assert r.execute_command("ROLE") == [b"master", 0, []]
    assert r.execute_command("WAIT", "0", "0") == 0
    c = Conn(server)
    try:
        assert err(c.call("WAIT", "0", "-1")) == "ERR timeout is negative"
        assert err(c.call("WAIT", "x", "0")) == "ERR value is not an integer or out of range"
        secs, usecs = c.call("TIME")
        assert abs(int(secs) + int(usecs) / 1e6 - time.time()) < 2
        assert 0 <= int(usecs) < 1_000_000
    finally:
        c.close()
    for k in keys_on(0, 4, "dbs:") + keys_on(1, 3, "dbs:"):
        r.set(k, "v")
    assert r.dbsize() == 7
    r2 = server.client(db=2)
    try:
        assert r2.dbsize() == 0
        r2.set("x", "1")
        assert r2.dbsize() == 1
    finally:
        r2.close()


def test_flushdb_flushall_async(server, r):
    keys = keys_on(0, 3, "fl:") + keys_on(1, 3, "fl:")
    r3 = server.client(db=3)
    try:
        for k in keys:
            r.set(k, "v")
            r3.set(k, "v")
        assert r3.flushdb() is True
        assert r3.dbsize() == 0 and r.dbsize() == 6
        for k in keys:
            r3.set(k, "v")
        c = Conn(server)
        try:
            assert c.call("FLUSHALL", "ASYNC") == b"OK"
            assert r.dbsize() == 0 and r3.dbsize() == 0
            assert c.call("FLUSHDB", "SYNC") == b"OK"
            assert err(c.call("FLUSHALL", "FOO")) == "ERR syntax error"
            assert err(c.call("FLUSHDB", "ASYNC", "x")) == "ERR syntax error"
        finally:
            c.close()
    finally:
        r3.close()


# --- CONFIG --------------------------------------------------------------------------------------

def _reference_configs() -> list[dict]:
    with open(os.path.join(REFERENCE, "configs.json")) as fh:
        return json.load(fh)


# Valkey 8's HIDDEN_CONFIG directives: CONFIG GET answers them by exact name only.
HIDDEN = {"aof-disable-auto-gc", "client-default-resp", "cluster-ping-interval", "debug-context",
          "enable-debug-assert", "events-per-io-thread", "key-load-delay", "rdb-key-save-delay",
          "req-res-logfile", "use-exit-on-panic", "watchdog-period"}


def test_config_get_star_answers_every_reference_config(server):
    c = server.client(decode_responses=True)
    try:
        everything = c.config_get("*")
        ref = _reference_configs()
        names = {e["name"] for e in ref}
        aliases = {e["alias"] for e in ref if e.get("alias")}
        assert names - HIDDEN <= set(everything)
        assert aliases <= set(everything)
        assert not HIDDEN & set(everything)
        for name in HIDDEN:
            assert set(c.config_get(name)) == {name}
        # Defaults, as a fresh Valkey prints them (the test harness set port, bind, save, dir).
        overridden = {"port", "bind", "save", "dir"}
        for e in ref:
            if e["name"] not in overridden:
                value = everything.get(e["name"]) if e["name"] not in HIDDEN else c.config_get(e["name"])[e["name"]]
                assert value == e["default"], e["name"]
        assert everything["port"] == str(server.port)
        assert everything["bind"] == "127.0.0.1"
        assert everything["save"] == ""
        assert everything["dir"] == os.path.realpath(server.dir)
    finally:
        c.close()


def test_config_get_globs(server):
    c = server.client(decode_responses=True)
    try:
        assert c.config_get("maxmemory*") == {
            "maxmemory": "0", "maxmemory-clients": "0", "maxmemory-eviction-tenacity": "10",
            "maxmemory-policy": "noeviction", "maxmemory-samples": "5"}
        assert set(c.config_get("*max-*-entries*")) == {
            "hash-max-listpack-entries", "hash-max-ziplist-entries", "set-max-intset-entries",
            "set-max-listpack-entries", "zset-max-listpack-entries", "zset-max-ziplist-entries"}
        assert c.config_get("MAXCLIENTS") == {"MAXCLIENTS": "10000"}
        assert c.config_get("nosuchconfig") == {}
        assert c.config_get("h?") == {"hz": "10"}
        multi = c.execute_command("CONFIG", "GET", "maxclients", "timeout", "maxclients")
        assert multi == {"maxclients": "10000", "timeout": "0"}
    finally:
        c.close()


def test_config_set(server):
    c = Conn(server)
    try:
        assert c.call("CONFIG", "SET", "maxmemory", "10mb", "maxmemory-policy", "allkeys-lru") == b"OK"
        assert c.call("CONFIG", "GET", "maxmemory", "maxmemory-policy") == [
            b"maxmemory", b"10485760", b"maxmemory-policy", b"allkeys-lru"]
        assert err(c.call("CONFIG", "SET", "daemonize", "yes")) == \
            "ERR CONFIG SET failed (possibly related to argument 'daemonize') - can't set immutable config"
        assert err(c.call("CONFIG", "SET", "maxmemory-policy", "foo")).startswith(
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) "
            "must be one of the following: volatile-lru, volatile-lfu,")
        assert err(c.call("CONFIG", "SET", "appendonly", "maybe")) == \
            "ERR CONFIG SET failed (possibly related to argument 'appendonly') - argument must be 'yes' or 'no'"
        assert err(c.call("CONFIG", "SET", "hz", "abc")) == \
            "ERR CONFIG SET failed (possibly related to argument 'hz') - argument couldn't be parsed into an integer"
        assert err(c.call("CONFIG", "SET", "maxmemory", "1xb")) == \
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
        assert err(c.call("CONFIG", "SET", "maxclients", "-5")) == (
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be "
            "between 1 and 4294967295 inclusive")
        assert err(c.call("CONFIG", "SET", "foo", "bar")) == \
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        assert err(c.call("CONFIG", "SET", "hz", "5", "hz", "6")) == \
            "ERR CONFIG SET failed (possibly related to argument 'hz') - duplicate parameter"
        assert err(c.call("CONFIG", "SET", "a", "b", "c")) == "ERR syntax error"
        assert err(c.call("CONFIG", "SET", "maxmemory")) == \
            "ERR wrong number of arguments for 'config|set' command"
        # All or nothing: a bad pair leaves the good one unset.
        assert err(c.call("CONFIG", "SET", "maxmemory", "20mb", "maxclients", "abc")) == (
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't "
            "be parsed into an integer")
        assert c.call("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"10485760"]
        assert c.call("CONFIG", "SET", "maxclients", "500") == b"OK"
        assert c.call("CONFIG", "GET", "maxclients") == [b"maxclients", b"500"]
        assert b"maxclients:500" in c.call("INFO", "clients")
        assert b"maxmemory:10485760" in c.call("INFO", "memory")
    finally:
        c.call("CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction", "maxclients", "10000")
        c.close()


def test_config_set_maxclients_is_enforced(server):
    c = Conn(server)
    extra = []
    try:
        connected = int(re.search(rb"connected_clients:(\d+)", c.call("INFO", "clients")).group(1))
        assert c.call("CONFIG", "SET", "maxclients", str(connected + 1)) == b"OK"
        extra.append(Conn(server))
        assert extra[0].call("PING") == b"PONG"
        with server.connect() as s:
            s.settimeout(5)
            assert s.recv(128) == b"-ERR max number of clients reached\r\n"
            assert s.recv(128) == b""
    finally:
        for e in extra:
            e.close()
        assert c.call("CONFIG", "SET", "maxclients", "10000") == b"OK"
        c.close()


def test_config_misc_subcommands(server):
    c = Conn(server)
    try:
        assert err(c.call("CONFIG", "GET")) == "ERR wrong number of arguments for 'config|get' command"
        assert err(c.call("CONFIG", "RESETSTAT", "x")) == \
            "ERR wrong number of arguments for 'config|resetstat' command"
        assert err(c.call("CONFIG", "REWRITE")) == "ERR The server is running without a config file"
        assert err(c.call("CONFIG", "FOO")) == "ERR unknown subcommand 'FOO'. Try CONFIG HELP."
        assert c.call("CONFIG", "HELP")[0].startswith(b"CONFIG <subcommand>")
        assert err(c.call("CONFIG", "HELP", "x")) == "ERR wrong number of arguments for 'config|help' command"
        assert c.call("CONFIG", "RESETSTAT") == b"OK"
    finally:
        c.close()


# --- CLUSTER -------------------------------------------------------------------------------------

def test_every_cluster_subcommand_is_disabled(server):
    ref = _reference_commands()
    subs = {n.split("|", 1)[1]: v["arity"] for n, v in ref.items() if n.startswith("CLUSTER|")}
    assert len(subs) > 20
    c = Conn(server)
    try:
        for sub, arity in subs.items():
            argc = arity if arity > 0 else -arity
            args = ["CLUSTER", sub] + ["1"] * (argc - 2)
            assert err(c.call(*args)) == "ERR This instance has cluster support disabled", sub
            assert err(c.call("cluster", sub.lower(), *args[2:])) == \
                "ERR This instance has cluster support disabled", sub
        assert err(c.call("CLUSTER", "FOO")) == "ERR unknown subcommand 'FOO'. Try CLUSTER HELP."
        assert err(c.call("CLUSTER", "INFO", "x")) == "ERR wrong number of arguments for 'cluster|info' command"
        assert err(c.call("CLUSTER")) == "ERR wrong number of arguments for 'cluster' command"
    finally:
        c.close()


# --- rename-command ------------------------------------------------------------------------------

def test_rename_command():
    with tempfile.TemporaryDirectory(prefix="shardd-rename-") as tmp:
        conf = os.path.join(tmp, "renamed.conf")
        with open(conf, "w") as fh:
            fh.write('rename-command FLUSHALL ""\nrename-command CONFIG myconfig\n')
        srv = Server(config_file=conf)
        try:
            c = Conn(srv)
            assert err(c.call("FLUSHALL")) == "ERR unknown command 'FLUSHALL', with args beginning with: "
            assert err(c.call("flushall", "ASYNC")) == \
                "ERR unknown command 'flushall', with args beginning with: 'ASYNC' "
            assert err(c.call("CONFIG", "GET", "port")) == \
                "ERR unknown command 'CONFIG', with args beginning with: 'GET' 'port' "
            assert c.call("myconfig", "GET", "port") == [b"port", str(srv.port).encode()]
            assert c.call("MYCONFIG", "SET", "maxclients", "77") == b"OK"
            assert c.call("MyConfig", "GET", "maxclients") == [b"maxclients", b"77"]
            assert c.call("SET", "k", "v") == b"OK"
            assert c.call("FLUSHDB") == b"OK"          # only FLUSHALL was renamed away
            assert c.call("DBSIZE") == 0
            info = c.call("INFO", "server").decode()
            assert f"config_file:{os.path.realpath(conf)}" in info
            c.close()
        finally:
            srv.stop()


# --- SHUTDOWN and signals --------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["NOSAVE"], ["SAVE"], ["NOW"], ["FORCE"], ["nosave", "now", "force"]])
def test_shutdown(flags):
    srv = Server(workers=1)
    try:
        kids = [p.pid for p in srv.children()]
        assert len(kids) == 2
        with srv.connect() as s:
            s.sendall(encode("SHUTDOWN", *flags))
            s.settimeout(10)
            try:
                assert s.recv(4096) == b""        # no reply: the connection just closes
            except ConnectionResetError:
                pass
        assert srv.proc.wait(10) == 0
        assert_gone(kids)
    finally:
        srv.stop()


def test_shutdown_errors(server):
    c = Conn(server)
    try:
        assert err(c.call("SHUTDOWN", "FOO")) == "ERR syntax error"
        assert err(c.call("SHUTDOWN", "NOSAVE", "SAVE")) == "ERR syntax error"
        assert err(c.call("SHUTDOWN", "ABORT")) == "ERR No shutdown in progress."
        assert c.call("PING") == b"PONG"
    finally:
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_sigint_shut_down_cleanly(sig):
    srv = Server()
    try:
        kids = [p.pid for p in srv.children()]
        assert len(kids) == 3
        srv.proc.send_signal(sig)
        assert srv.proc.wait(10) == 0
        assert_gone(kids)
    finally:
        srv.stop()


def test_sigkill_of_the_supervisor_leaves_nothing_behind():
    srv = Server()
    try:
        kids = [p.pid for p in srv.children()]
        assert len(kids) == 3
        srv.proc.kill()
        srv.proc.wait(10)
        assert_gone(kids, timeout=5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    finally:
        srv.stop()


def test_killed_worker_is_restarted():
    srv = Server()
    try:
        c = srv.client()
        k0, k1 = keys_on(0, 5, "wk:"), keys_on(1, 5, "wk:")
        for k in k0 + k1:
            c.set(k, k)
        shards = c.info("shards")
        victim = shards["shard1"]["pid"]
        survivor = shards["shard0"]["pid"]
        proxy = shards["proxy0"]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted():
            pid = c.info("shards")["shard1"]["pid"]
            return pid if pid != victim else None
        new_pid = wait_until(restarted, 10)
        assert psutil.pid_exists(new_pid)
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
        # The other worker's keys are intact, the restarted worker serves again.
        assert c.mget(k0) == [k.encode() for k in k0]
        wait_until(lambda: c.set(k1[0], "again"), 10)
        assert c.get(k1[0]) == b"again"
        shards = c.info("shards")
        assert shards["shard0"]["pid"] == survivor and shards["proxy0"]["pid"] == proxy
        assert sorted(p.pid for p in srv.children()) == sorted([survivor, new_pid, proxy])
        assert c.ping()
        c.close()
    finally:
        srv.stop()


# --- several proxies -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_proxies():
    srv = Server(proxies=2)
    c = srv.client()
    try:
        # Both proxies publish their pid once their loop runs.
        wait_until(lambda: all(c.info("shards")[f"proxy{i}"]["pid"] for i in range(2)), 20)
    finally:
        c.close()
    yield srv
    srv.stop()


@contextlib.contextmanager
def spread_connections(server, n: int):
    """n connections (more if needed, bounded) with some on each proxy, closed afterwards:
    proxy i hands out client ids ≡ i+1 (mod 2)."""
    conns = []
    try:
        while len(conns) < n or len({c.id % 2 for c in conns}) < 2:
            assert len(conns) < n + 200, "every connection landed on the same proxy"
            c = Conn(server)
            c.id = c.call("CLIENT", "ID")
            conns.append(c)
            if len(conns) >= n and len({x.id % 2 for x in conns}) < 2:
                time.sleep(0.01)
        yield conns
    finally:
        for c in conns:
            c.close()


def on_other_proxy(conns: list[Conn], c: Conn) -> Conn:
    """The first of the connections that is not on c's proxy."""
    return next(x for x in conns if x.id % 2 != c.id % 2)


def test_two_proxies_client_ids_and_list(two_proxies):
    with spread_connections(two_proxies, 20) as conns:
        ids = [c.id for c in conns]
        assert len(set(ids)) == len(ids)
        for c in conns[:3] + conns[-3:]:
            assert set(ids) <= listed_ids(c.call("CLIENT", "LIST").decode())
        clients = int(re.search(rb"connected_clients:(\d+)", conns[0].call("INFO", "clients")).group(1))
        assert clients >= len(conns)


def test_two_proxies_config_and_data_are_shared(two_proxies):
    with spread_connections(two_proxies, 20) as conns:
        try:
            assert conns[0].call("CONFIG", "SET", "maxmemory-samples", "7", "hz", "12") == b"OK"

            def everywhere():
                return all(c.call("CONFIG", "GET", "maxmemory-samples", "hz") ==
                           [b"maxmemory-samples", b"7", b"hz", b"12"] for c in conns)
            wait_until(everywhere, 5)
            keys = keys_on(0, 10, "px:") + keys_on(1, 10, "px:")
            for i, (c, k) in enumerate(zip(conns, keys)):
                assert c.call("SET", k, f"from-{c.id}") == b"OK"
            for c in conns:
                assert c.call("MGET", *keys) == [f"from-{x.id}".encode() for x in conns[:len(keys)]]
        finally:
            conns[0].call("CONFIG", "SET", "maxmemory-samples", "5", "hz", "10")


def test_two_proxies_config_set_is_visible_once_acknowledged(two_proxies):
    with spread_connections(two_proxies, 4) as conns:
        a = conns[0]
        b = on_other_proxy(conns, a)
        supervisor = two_proxies.proc.pid
        try:
            os.kill(supervisor, signal.SIGSTOP)     # the relay between proxies is slow for a while
            try:
                a.sock.sendall(encode("CONFIG", "SET", "maxmemory-samples", "9"))
                a.sock.settimeout(0.5)
                try:
                    early = a.sock.recv(64)          # a server that waits for the others answers later
                except socket.timeout:
                    early = None
                if early is not None:
                    assert early == b"+OK\r\n"
                    assert b.call("CONFIG", "GET", "maxmemory-samples") == [b"maxmemory-samples", b"9"]
            finally:
                os.kill(supervisor, signal.SIGCONT)
            if early is None:
                assert a.reply() == b"OK"
                assert b.call("CONFIG", "GET", "maxmemory-samples") == [b"maxmemory-samples", b"9"]
        finally:
            os.kill(supervisor, signal.SIGCONT)
            wait_until(lambda: a.call("CONFIG", "SET", "maxmemory-samples", "5") == b"OK", 5)


def test_two_proxies_client_kill_across_proxies(two_proxies):
    with spread_connections(two_proxies, 4) as conns:
        killer = conns[0]
        victim = on_other_proxy(conns, killer)
        killer.call("CLIENT", "KILL", "ID", victim.id)
        assert victim.closed_by_server()
        assert killer.call("PING") == b"PONG"
        assert victim.id not in listed_ids(killer.call("CLIENT", "LIST").decode())


def test_two_proxies_client_kill_counts_clients_of_other_proxies(two_proxies):
    with spread_connections(two_proxies, 4) as conns:
        killer = conns[0]
        assert killer.call("CLIENT", "KILL", "ID", on_other_proxy(conns, killer).id) == 1
