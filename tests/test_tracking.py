"""Client-side caching: CLIENT TRACKING (default mode, REDIRECT, BCAST/PREFIX, OPTIN, OPTOUT,
NOLOOP), CLIENT CACHING/GETREDIR/TRACKINGINFO. Each scenario's bytes are compared with
redis-server's (keys spread over both workers, reads across workers included), then several
proxies, and redis-py's client-side cache."""
from __future__ import annotations

import socket
import time

import pytest
import redis

from helpers import RawConnection, encode, wait_until, worker_of
from server import Server


def drain(conn: RawConnection, quiet: float = 0.2) -> bytes:
    """Everything that arrives until the connection is quiet for `quiet` seconds."""
    conn.sock.settimeout(quiet)
    out = conn.buf
    conn.buf = b""
    try:
        while True:
            chunk = conn.sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    conn.sock.settimeout(10)
    return out


def client_id(conn: RawConnection) -> bytes:
    return conn.call("CLIENT", "ID")[1:-2]


def test_keys_span_both_workers():
    assert worker_of("a") != worker_of("b") and worker_of("a") != worker_of("c")


def scenario(port: int, name: str) -> list:
    t, w, r = RawConnection(port), RawConnection(port), RawConnection(port)
    rid = client_id(r)
    out = []
    if name == "resp3":
        t.call("HELLO", "3")
        out += [t.call("CLIENT", "TRACKING", "ON"), t.call("GET", "a"), t.call("MGET", "b", "c", "a")]
        w.call("SET", "a", "1")
        w.call("SET", "c", "1")
        w.call("SET", "a", "2")            # no longer tracked: no second message
        out.append(drain(t))
        out += [t.call("SET", "b", "own"), drain(t), t.call("GET", "b"), t.call("SET", "b", "own2"), drain(t)]
        w.call("FLUSHALL")
        out.append(drain(t))
    elif name == "noloop":
        t.call("HELLO", "3")
        out.append(t.call("CLIENT", "TRACKING", "ON", "NOLOOP"))
        t.call("GET", "a")
        out += [t.call("SET", "a", "x"), drain(t)]
        t.call("GET", "a")
        w.call("SET", "a", "y")
        out.append(drain(t))
    elif name == "optin":
        t.call("HELLO", "3")
        out.append(t.call("CLIENT", "TRACKING", "ON", "OPTIN"))
        t.call("GET", "a")
        w.call("SET", "a", "1")
        out += [drain(t), t.call("CLIENT", "CACHING", "yes"), t.call("CLIENT", "TRACKINGINFO")]
        t.call("GET", "a")
        t.call("GET", "b")                 # the caching flag was for one command
        w.call("SET", "a", "2")
        w.call("SET", "b", "2")
        out.append(drain(t))
    elif name == "optout":
        t.call("HELLO", "3")
        out.append(t.call("CLIENT", "TRACKING", "ON", "OPTOUT"))
        t.call("CLIENT", "CACHING", "no")
        t.call("GET", "a")
        t.call("GET", "b")
        w.call("SET", "a", "1")
        w.call("SET", "b", "1")
        out.append(drain(t))
    elif name == "redirect":
        r.send(encode("SUBSCRIBE", "__redis__:invalidate"))
        out += [r.read(), t.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid),
                t.call("CLIENT", "GETREDIR") == b":%s\r\n" % rid]
        t.call("GET", "a")
        w.call("SET", "a", "1")
        out += [drain(r), drain(t)]
        w.call("FLUSHDB")
        out.append(drain(r))
    elif name == "broken":
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON", "REDIRECT", rid)
        r.close()
        time.sleep(0.1)
        t.call("GET", "a")
        w.call("SET", "a", "1")
        out += [drain(t).replace(rid, b"ID"), t.call("CLIENT", "TRACKINGINFO").replace(rid, b"ID")]
    elif name == "bcast":
        t.call("HELLO", "3")
        out.append(t.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "PREFIX", "b"))
        w.call("SET", "a1", "1")
        out.append(drain(t))
        w.call("SET", "c1", "1")
        w.call("SET", "b1", "1")
        out.append(drain(t))
    elif name == "bcast-noloop":
        t.call("HELLO", "3")
        out.append(t.call("CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP"))
        w.call("SET", "x", "1")
        out.append(drain(t))
        t.call("SET", "y", "1")
        out.append(drain(t))
    elif name == "resp2-without-redirect":
        out.append(t.call("CLIENT", "TRACKING", "ON"))
        t.call("GET", "a")
        w.call("SET", "a", "1")
        out.append(drain(t))
    elif name == "expiry":
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON")
        w.call("SET", "e", "1", "PX", "50")
        t.call("GET", "e")
        time.sleep(0.3)
        out.append(drain(t))
    elif name == "off":
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON")
        t.call("GET", "a")
        out.append(t.call("CLIENT", "TRACKING", "OFF"))
        w.call("SET", "a", "1")
        out += [drain(t), t.call("CLIENT", "GETREDIR")]
    elif name == "transaction":
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON")
        t.call("MULTI")
        t.call("GET", "a")
        t.call("GET", "b")
        out.append(t.call("EXEC"))
        w.call("SET", "a", "1")
        w.call("SET", "b", "1")
        out.append(drain(t))
    for c in (t, w, r):
        c.close()
    flusher = RawConnection(port)
    flusher.call("FLUSHALL")
    flusher.close()
    return out


SCENARIOS = ["resp3", "noloop", "optin", "optout", "redirect", "broken", "bcast", "bcast-noloop",
             "resp2-without-redirect", "expiry", "off", "transaction"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_tracking_like_redis(server, oracle_port, r, name):
    assert scenario(server.port, name) == scenario(oracle_port, name)


ERROR_STEPS = [
    ["CLIENT", "TRACKING", "ON", "PREFIX", "a"], ["CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"],
    ["CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"], ["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"],
    ["CLIENT", "TRACKING", "ON", "REDIRECT", "x"], ["CLIENT", "TRACKING", "ON", "REDIRECT", "0"],
    ["CLIENT", "TRACKING", "FOO"], ["CLIENT", "TRACKING", "ON", "FOO"], ["CLIENT", "TRACKING"],
    ["CLIENT", "CACHING", "yes"], ["CLIENT", "GETREDIR"], ["CLIENT", "TRACKINGINFO"],
    ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "a"],
    ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "cd"], ["CLIENT", "TRACKINGINFO"],
    ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "c"], ["CLIENT", "TRACKING", "ON"],
    ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "x"], ["CLIENT", "TRACKINGINFO"], ["CLIENT", "GETREDIR"],
    ["CLIENT", "TRACKING", "OFF"], ["CLIENT", "TRACKING", "ON", "OPTIN"], ["CLIENT", "CACHING", "no"],
    ["CLIENT", "CACHING", "yes"], ["CLIENT", "TRACKINGINFO"], ["CLIENT", "CACHING", "maybe"],
    ["CLIENT", "TRACKING", "ON", "OPTOUT"], ["CLIENT", "TRACKING", "OFF"], ["CLIENT", "TRACKING", "ON", "OPTOUT", "NOLOOP"],
    ["CLIENT", "CACHING", "no"], ["CLIENT", "TRACKINGINFO"], ["CLIENT", "CACHING", "yes"],
]


def test_tracking_commands_and_errors_like_redis(server, oracle_port):
    got, want = [], []
    for port, out in ((server.port, got), (oracle_port, want)):
        conn = RawConnection(port)
        out += [conn.call(*args) for args in ERROR_STEPS]
        conn.call("HELLO", "3")
        out.append(conn.call("CLIENT", "TRACKINGINFO"))
        conn.close()
    for args, g, w in zip(ERROR_STEPS + [["HELLO 3: CLIENT TRACKINGINFO"]], got, want):
        assert g == w, f"{args}: shardd {g} != redis {w}"


def test_tracking_in_client_list_and_reset(server, r):
    t = RawConnection(server.port)
    t.call("HELLO", "3")
    t.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:")
    info = t.call("CLIENT", "INFO").decode()
    assert " flags=tB " in info and " redir=0 " in info
    assert r.info("clients")["tracking_clients"] == 1
    assert r.info("stats")["tracking_total_prefixes"] == 1
    t.call("RESET")
    assert " flags=N " in t.call("CLIENT", "INFO").decode()
    assert t.call("CLIENT", "GETREDIR") == b":-1\r\n"
    t.close()


# -- several proxies -----------------------------------------------------------------------------

def test_invalidations_and_redirects_across_proxies():
    srv = Server(proxies=2)
    try:
        by_proxy: dict[int, list[RawConnection]] = {0: [], 1: []}
        while min(len(v) for v in by_proxy.values()) < 2:
            c = RawConnection(srv.port)
            by_proxy[(int(client_id(c)) - 1) % 2].append(c)
        (t, redirect_target), (w, other) = by_proxy[0][:2], by_proxy[1][:2]
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON")
        t.call("MGET", "a", "b")
        w.call("SET", "b", "written on the other proxy")
        assert drain(t) == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nb\r\n"
        # RESP2 redirect to a subscribed client of the other proxy.
        other_id = client_id(other)
        other.send(encode("SUBSCRIBE", "__redis__:invalidate"))
        other.read()
        r2 = RawConnection(srv.port)
        while (int(client_id(r2)) - 1) % 2 != 0:
            r2.close()
            r2 = RawConnection(srv.port)
        assert r2.call("CLIENT", "TRACKING", "ON", "REDIRECT", other_id) == b"+OK\r\n"
        r2.call("GET", "c")
        w.call("SET", "c", "1")
        assert drain(other) == b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nc\r\n"
        # The redirect client goes: the tracking client hears of it (RESP3).
        t.call("CLIENT", "TRACKING", "ON", "REDIRECT", other_id)
        t.call("GET", "d")
        other.close()
        time.sleep(0.2)
        w.call("SET", "d", "1")
        assert drain(t).startswith(b">2\r\n$21\r\ntracking-redir-broken\r\n")
        # BCAST clients on both proxies see a write on either.
        for c in (t, redirect_target):
            c.call("HELLO", "3")
            c.call("CLIENT", "TRACKING", "OFF")
            assert c.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:") == b"+OK\r\n"
        w.call("SET", "user:1", "x")
        for c in (t, redirect_target):
            assert drain(c) == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nuser:1\r\n"
        for c in (t, redirect_target, w, r2):
            c.close()
    finally:
        srv.stop()


# -- redis-py's client-side cache ----------------------------------------------------------------

def test_redis_py_client_side_cache(server, r, monkeypatch):
    """redis-py's cache (RESP3, cache_config) on its own machinery. redis-py only enables it
    for a server calling itself "redis" 7.4 or later, which Valkey 8 (and shardd, which says
    valkey 8.0.1 in HELLO) does not: the test lifts that check, nothing else."""
    cache_module = pytest.importorskip("redis.cache")
    from redis.connection import CacheProxyConnection
    monkeypatch.setattr(CacheProxyConnection, "DEFAULT_SERVER_NAME", "valkey")
    monkeypatch.setattr(CacheProxyConnection, "MIN_ALLOWED_VERSION", "7.0.0")
    cached = redis.Redis(host="127.0.0.1", port=server.port, protocol=3,
                         cache_config=cache_module.CacheConfig(), socket_timeout=10)
    try:
        r.set("cached", "v1")
        assert cached.get("cached") == b"v1"
        cache = cached.get_cache()
        assert cache.size == 1
        assert cached.get("cached") == b"v1"          # from the cache
        r.set("cached", "v2")                         # another client: the entry is invalidated
        assert wait_until(lambda: cached.get("cached") == b"v2", 5)
        r.delete("cached")
        assert wait_until(lambda: cached.get("cached") is None, 5)
    finally:
        cached.close()


def test_tracking_table_max_keys(server, r):
    """Over tracking-table-max-keys, keys leave the table and their readers get invalidations
    though nobody wrote them (trackingLimitUsedSlots); INFO counts the table."""
    r.config_set("tracking-table-max-keys", 10)
    t = RawConnection(server.port)
    try:
        t.call("HELLO", "3")
        t.call("CLIENT", "TRACKING", "ON")
        names = [f"lim:{i}" for i in range(40)]
        t.sock.sendall(b"".join(encode("GET", name) for name in names))
        got = drain(t, 0.5)
        assert got.count(b"_\r\n") == 40                 # the GET replies, pushes between them
        invalidated = [name for name in names if f"${len(name)}\r\n{name}\r\n".encode() in got]
        assert got.count(b">2\r\n$10\r\ninvalidate\r\n") == len(invalidated)
        assert len(invalidated) >= 40 - 10
        stats = r.info("stats")
        assert 1 <= stats["tracking_total_keys"] <= 10
        assert stats["tracking_total_items"] == stats["tracking_total_keys"]
        r.config_set("tracking-table-max-keys", 0)    # no limit: nothing more leaves
        t.sock.sendall(b"".join(encode("GET", name) for name in names))
        assert drain(t, 0.5) == b"_\r\n" * 40
        assert r.info("stats")["tracking_total_keys"] == 40
    finally:
        t.close()
        r.config_set("tracking-table-max-keys", 1000000)
