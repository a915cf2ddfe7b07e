"""MIGRATE (shardd/proxy/migrate.py) against real targets.

- differential: the same keys built on shardd and on a redis-server 7.0 source, the same
  MIGRATE sent by each to one redis-server target: the raw replies, what is left on the source
  and what arrived on the target must match (every type, TTLs, KEYS over both workers, COPY,
  REPLACE, BUSYKEY in part of a KEYS list, destination dbs, AUTH/AUTH2 against requirepass);
- shardd to a second shardd, and redis-server MIGRATEing into shardd (our RESTORE);
- a target that refuses connections or never answers (IOERR, keys kept, the hold's budget);
- argument errors compared with the oracle; reply order in pipelines, MULTI/EXEC and RESP3.
"""
from __future__ import annotations

import random
import socket
import time

import pytest
import redis

from helpers import RawConnection, encode, keys_on, run_both, start_redis_server, worker_of
from server import Server

OK = b"+OK\r\n"
NOKEY = b"+NOKEY\r\n"
BUSY = b"-ERR Target instance replied with error: BUSYKEY Target key name already exists.\r\n"
CONNECT_ERROR = b"-IOERR error or timeout connecting to the client\r\n"
READ_ERROR = b"-IOERR error or timeout reading to target instance\r\n"
WRITE_ERROR = b"-IOERR error or timeout writing to target instance\r\n"

_rng = random.Random(6)
# Every type and encoding, some with TTLs; names chosen to land on both workers.
DATA: dict[str, list[list]] = {
    "str": [["SET", "str", "hello"], ["PEXPIRE", "str", 50000]],
    "int": [["SET", "int", "-12345"]],
    "lzf": [["SET", "lzf", "compress me " * 2000]],
    "blob": [["SET", "blob", _rng.randbytes(150_000)], ["EXPIRE", "blob", 900]],
    "empty": [["SET", "empty", ""]],
    "list": [["RPUSH", "list", "a", "1", "-2", "x" * 70], ["PEXPIRE", "list", 80000]],
    "biglist": [["RPUSH", "biglist", *[f"element-{i}" for i in range(2000)]]],
    "hash": [["HSET", "hash", "f1", "v1", "n", "7"], ["EXPIRE", "hash", 1000]],
    "bighash": [["HSET", "bighash", *[x for i in range(300) for x in (f"field{i}", f"value{i}")]]],
    "intset": [["SADD", "intset", "5", "-1", "70000", "-5000000000"]],
    "strset": [["SADD", "strset", "a", "b", "c"], ["EXPIRE", "strset", 3000]],
    "bigset": [["SADD", "bigset", *[f"m{i}" for i in range(400)]]],
    "zset": [["ZADD", "zset", "1", "a", "2.5", "b", "-3", "c", "inf", "d"]],
    "bigzset": [["ZADD", "bigzset", *[x for i in range(200) for x in (str(i / 4), f"member{i}")]],
                ["PEXPIRE", "bigzset", 70000]],
    "hll": [["PFADD", "hll", *[f"e{i}" for i in range(50)]]],
}


def build(conn: RawConnection, names) -> None:
    for name in names:
        for command in DATA[name]:
            assert conn.call(*command)[:1] in b":+", command


def contents(client: redis.Redis, key) -> tuple | None:
    """(type, value, has a TTL) of a key, None when missing; its TTL checked to be sane."""
    kind = client.type(key).decode()
    read = {"none": lambda k: None, "string": client.get, "list": lambda k: client.lrange(k, 0, -1),
            "hash": client.hgetall, "set": lambda k: sorted(client.smembers(k)),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True)}[kind]
    if kind == "none":
        return None
    ttl = client.pttl(key)
    assert ttl == -1 or ttl > 0
    return kind, read(key), ttl > 0


def ttls(client: redis.Redis, keys) -> dict:
    return {k: client.pttl(k) for k in keys}


@pytest.fixture(scope="module")
def targets():
    """Two redis-servers of our own: a plain target and one with requirepass and a user."""
    plain, plain_port = start_redis_server()
    locked, locked_port = start_redis_server()
    try:
        admin = redis.Redis(port=locked_port)
        admin.execute_command("ACL", "SETUSER", "mover", "on", ">moverpass", "~*", "+@all")
        admin.config_set("requirepass", "secret")
        admin.close()
        yield plain_port, locked_port
    finally:
        for proc in (plain, locked):       # our own redis-servers, by their PIDs
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def second():
    """A second shardd, as a target."""
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def sources(server, oracle_port):
    """(shardd, redis) raw connections and clients, flushed."""
    conns = [RawConnection(server.port), RawConnection(oracle_port)]
    clients = [server.client(), redis.Redis(port=oracle_port, socket_timeout=10)]
    for c in clients:
        c.flushall()
    yield conns, clients
    for c in conns:
        c.close()
    for c in clients:
        c.close()


def target_client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=10)


def differential(sources, target: redis.Redis, setup_source, setup_target, migrates, keys, db: int = 0):
    """Run the same case with shardd and with redis-server as the source: the replies, the
    sources' keys and the target's keys (in `db`) must be the same."""
    conns, clients = sources
    results = []
    for conn, client in zip(conns, clients):
        client.flushall()
        target.flushall()
        for command in setup_source:
            conn.call(*command)
        for command in setup_target:
            target.execute_command(*command)
        replies = [conn.call(*command) for command in migrates]
        kwargs = target.connection_pool.connection_kwargs
        moved = redis.Redis(port=kwargs["port"], password=kwargs.get("password"), db=db, socket_timeout=10)
        state = ({k: contents(client, k) for k in keys}, {k: contents(moved, k) for k in keys})
        target_ttls = ttls(moved, keys)
        moved.close()
        results.append((replies, state, target_ttls))
    (ours, our_state, our_ttls), (theirs, their_state, their_ttls) = results
    assert ours == theirs
    assert our_state == their_state
    for key in keys:                       # the TTLs travelled, give or take the test's time
        assert abs(our_ttls[key] - their_ttls[key]) < 3000, key
    return ours, our_state


def migrate(port: int, key, *rest) -> list:
    return ["MIGRATE", "127.0.0.1", port, key, *rest]


def test_data_lands_on_both_workers():
    assert {worker_of(k) for k in DATA} == {0, 1}


def test_argument_errors(pair, oracle_port):
    run_both(pair, [
        "SET k v",
        "MIGRATE 127.0.0.1 1 k 0 1000 FOO",
        "MIGRATE 127.0.0.1 1 k 0 abc FOO",          # options are checked before numbers
        "MIGRATE 127.0.0.1 1 k 0 1000 AUTH",
        "MIGRATE 127.0.0.1 1 k 0 1000 AUTH2 user",
        "MIGRATE 127.0.0.1 1 k 0 1000 COPY AUTH2",
        "MIGRATE 127.0.0.1 1 k 0 1000 KEYS k",
        "MIGRATE 127.0.0.1 1 k 0 1000 copy replace KEYS",
        "MIGRATE 127.0.0.1 1 k 0 abc",
        "MIGRATE 127.0.0.1 1 k abc 1000",
        "MIGRATE 127.0.0.1 1 k 0 99999999999999999999",
        "MIGRATE 127.0.0.1 1 k 0",
        "MIGRATE 127.0.0.1 1 missing 0 1000",       # NOKEY: no connection is tried
        'MIGRATE 127.0.0.1 1 "" 0 1000 KEYS',
        'MIGRATE 127.0.0.1 1 "" 0 1000 KEYS a b c',
        'MIGRATE 127.0.0.1 1 "" 0 1000 AUTH2 u p COPY KEYS a',
        "MIGRATE 127.0.0.1 1 k 0 100",             # port 1 refuses: found out when writing
        "MIGRATE 127.0.0.1 notaport k 0 100",       # atoi: port 0
        "MIGRATE 127.0.0.1 65537 k 0 100",          # port 1 again
        "MIGRATE no.such.host.invalid 1 k 0 100",   # no address: IOERR connecting
        "MIGRATE 127.0.0.1 1 k 0 -5 COPY REPLACE",
        "EXISTS k",
    ], [])


def test_every_type_one_key_at_a_time(sources, targets):
    plain_port = targets[0]
    target = target_client(plain_port)
    setup = [command for name in DATA for command in DATA[name]]
    replies, (left, arrived) = differential(
        sources, target, setup, [], [migrate(plain_port, k, 0, 1000) for k in DATA], list(DATA))
    assert replies == [OK] * len(DATA)
    assert all(v is None for v in left.values())
    assert all(v is not None for v in arrived.values())
    assert arrived["str"][2] and arrived["blob"][2] and not arrived["int"][2]


def test_keys_option_across_workers(sources, targets):
    plain_port = targets[0]
    target = target_client(plain_port)
    setup = [command for name in DATA for command in DATA[name]]
    names = list(DATA)
    keys = names[:5] + ["missing-one"] + names[5:] + ["missing-two"]
    replies, (left, arrived) = differential(
        sources, target, setup, [], [migrate(plain_port, "", 0, 5000, "KEYS", *keys)], keys)
    assert replies == [OK]
    assert all(v is None for v in left.values())
    assert [k for k in keys if arrived[k] is None] == ["missing-one", "missing-two"]


@pytest.mark.parametrize("case", [
    pytest.param(([["SET", "k", "v"]], [], [("k", 0, 1000, "COPY")]), id="copy"),
    pytest.param(([["SET", "k", "new"]], [["SET", "k", "old"]], [("k", 0, 1000, "REPLACE")]), id="replace"),
    pytest.param(([["SET", "k", "new"]], [["SET", "k", "old"]], [("k", 0, 1000)]), id="busykey"),
    pytest.param(([["SET", "k", "new"]], [["SET", "k", "old"]], [("k", 0, 1000, "COPY", "REPLACE")]),
                 id="copy-replace"),
    pytest.param(([["MSET", "a{1}", "1", "b{1}", "2", "c{1}", "3"], ["SET", "d", "4"]], [["SET", "b{1}", "old"]],
                  [("", 0, 1000, "KEYS", "a{1}", "b{1}", "c{1}", "d")]), id="busykey-in-keys"),
    pytest.param(([["MSET", "a{1}", "1", "b{1}", "2"], ["SET", "d", "4"]], [["SET", "b{1}", "old"]],
                  [("", 0, 1000, "COPY", "KEYS", "a{1}", "b{1}", "d")]), id="copy-busykey-in-keys"),
    pytest.param(([["SET", "k", "v"], ["SET", "k", "v2"]], [], [("k", 0, 1000), ("k", 0, 1000)]), id="nokey-after"),
    pytest.param(([["SET", "k", "v", "PXAT", "1"]], [], [("k", 0, 1000)]), id="expired"),
    pytest.param(([["SET", "k", "v"]], [], [("k", 99, 1000)]), id="db-out-of-range"),
    pytest.param(([["SET", "k", "v"]], [], [("k", 5, 1000)]), id="db-5"),
    pytest.param(([["SET", "k", "v"], ["SET", "j", "w"]], [], [("k", 0, 1000), ("j", 0, 1000, "COPY")]),
                 id="two-in-a-row"),
])
def test_options_against_redis(sources, targets, case):
    plain_port = targets[0]
    setup_source, setup_target, calls = case
    db = calls[0][1] if calls[0][1] < 16 else 0     # where the keys are looked for on the target
    differential(sources, target_client(plain_port), setup_source, setup_target,
                 [migrate(plain_port, *call) for call in calls], ["k", "j", "a{1}", "b{1}", "c{1}", "d"], db)


def test_busykey_keeps_the_refused_key(raw, targets):
    plain_port = targets[0]
    target = target_client(plain_port)
    target.flushall()
    target.set("b{1}", "old")
    raw.call("MSET", "a{1}", "1", "b{1}", "2", "c{1}", "3")
    got = raw.call(*migrate(plain_port, "", 0, 1000, "KEYS", "a{1}", "b{1}", "c{1}"))
    assert got == BUSY
    assert raw.call("EXISTS", "a{1}", "b{1}", "c{1}") == b":1\r\n"
    assert target.mget("a{1}", "b{1}", "c{1}") == [b"1", b"old", b"3"]


def test_destination_db(raw, targets):
    plain_port = targets[0]
    target = target_client(plain_port)
    target.flushall()
    raw.call("RPUSH", "l", "x", "y")
    raw.call("EXPIRE", "l", 100)
    assert raw.call(*migrate(plain_port, "l", 3, 1000)) == OK
    raw.call("SET", "s", "1")
    assert raw.call(*migrate(plain_port, "s", 3, 1000)) == OK   # the cached socket is in db 3
    raw.call("SET", "t", "2")
    assert raw.call(*migrate(plain_port, "t", 0, 1000)) == OK
    assert target.get("t") == b"2" and target.exists("l", "s") == 0
    target.execute_command("SELECT", 3)
    assert target.lrange("l", 0, -1) == [b"x", b"y"] and 95_000 < target.pttl("l") <= 100_000
    assert target.get("s") == b"1"


def test_auth_and_auth2(sources, targets):
    locked_port = targets[1]
    target = target_client(locked_port, "secret")
    setup = [["SET", "k", "v"], ["SET", "j", "w"]]
    cases = [
        [migrate(locked_port, "k", 0, 1000)],                                   # NOAUTH
        [migrate(locked_port, "k", 0, 1000, "AUTH", "wrong")],
        [migrate(locked_port, "k", 0, 1000, "AUTH2", "mover", "wrong")],
        [migrate(locked_port, "k", 0, 1000, "AUTH", "secret")],
        [migrate(locked_port, "", 0, 1000, "AUTH2", "mover", "moverpass", "KEYS", "k", "j")],
        [migrate(locked_port, "", 0, 1000, "AUTH2", "nobody", "x", "REPLACE", "KEYS", "k", "j")],
    ]
    seen = []
    for calls in cases:
        replies, (left, arrived) = differential(sources, target, setup, [], calls, ["k", "j"])
        seen.append(replies[0])
    assert seen[0] == b"-ERR Target instance replied with error: NOAUTH Authentication required.\r\n"
    assert seen[1].startswith(b"-ERR Target instance replied with error: WRONGPASS")
    assert seen[2] == seen[1]
    assert seen[3] == OK and seen[4] == OK
    # A failed AUTH fails every RESTORE sent with it, even on a connection authenticated before.
    assert seen[5] == seen[1]


def test_shardd_to_shardd(raw, r, second):
    dest = second.client()
    dest.flushall()
    names = list(DATA)
    conn = RawConnection(second.port)
    try:
        build(raw, names)
        before = {k: contents(r, k) for k in names}
        assert raw.call(*migrate(second.port, "", 1, 5000, "KEYS", *names)) == OK
        assert r.exists(*names) == 0
        conn.call("SELECT", "1")
        moved = redis.Redis(port=second.port, db=1, socket_timeout=10)
        assert {k: contents(moved, k) for k in names} == before
        assert 45_000 < moved.pttl("str") <= 50_000 and moved.ttl("hash") > 990
        # Back again, partly refused: the target's RESTORE error comes through.
        build(raw, ["str", "list"])
        assert conn.call(*migrate(server_port(r), "", 0, 5000, "KEYS", "str", "list", "hash")) == \
            b"-ERR Target instance replied with error: BUSYKEY Target key name already exists.\r\n"
        assert moved.exists("str", "list", "hash") == 2 and r.exists("hash") == 1
        assert conn.call(*migrate(server_port(r), "", 0, 5000, "REPLACE", "KEYS", "str", "list")) == OK
        assert moved.exists("str", "list") == 0 and contents(r, "list") == before["list"]
        moved.close()
    finally:
        conn.close()
        dest.close()


def server_port(client: redis.Redis) -> int:
    return client.connection_pool.connection_kwargs["port"]


def test_redis_into_shardd(r, server, oracle_port, oracle):
    """redis-server MIGRATEs into shardd: our RESTORE takes Redis 7.0's payloads."""
    names = list(DATA)
    src = RawConnection(oracle_port)
    try:
        build(src, names)
        before = {k: contents(oracle, k) for k in names}
        assert src.call(*migrate(server.port, "", 0, 5000, "KEYS", *names)) == OK
        assert oracle.exists(*names) == 0
        assert {k: contents(r, k) for k in names} == before
        assert 45_000 < r.pttl("str") <= 50_000
        src.call("SET", "str", "again")
        assert src.call(*migrate(server.port, "str", 0, 5000)) == BUSY
        assert src.call(*migrate(server.port, "str", 0, 5000, "REPLACE")) == OK
        assert r.get("str") == b"again" and r.pttl("str") == -1
    finally:
        src.close()


@pytest.fixture
def silent():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_unreachable_and_silent_targets(raw, r, silent):
    raw.call("SET", "k", "v")
    assert raw.call(*migrate(closed_port(), "k", 0, 1000)) == WRITE_ERROR
    assert raw.call("MIGRATE", "no.such.host.invalid", "6379", "k", 0, 1000) == CONNECT_ERROR
    start = time.monotonic()
    assert raw.call(*migrate(silent, "k", 0, 300)) == READ_ERROR
    assert 0.25 < time.monotonic() - start < 2
    assert r.get("k") == b"v"
    # The keys' workers are held while the target talks: a long timeout is cut at the budget.
    other = keys_on(1 - worker_of("k"), 1, "other")[0]
    start = time.monotonic()
    raw.send(encode(*migrate(silent, "k", 0, 20000)) + encode("GET", "k"))
    time.sleep(0.2)
    assert r.set(other, "1") and r.get(other) == b"1"       # the other worker keeps serving
    assert raw.read() == READ_ERROR
    assert raw.read() == b"$1\r\nv\r\n"
    assert 3.5 < time.monotonic() - start < 6


def test_reply_order_transactions_and_resp3(raw, targets):
    plain_port = targets[0]
    target = target_client(plain_port)
    target.flushall()
    raw.send(encode("SET", "a", "1") + encode(*migrate(plain_port, "a", 0, 1000)) + encode("EXISTS", "a")
             + encode(*migrate(plain_port, "a", 0, 1000)) + encode("SET", "a", "2") + encode("GET", "a"))
    assert [raw.read() for _ in range(6)] == [OK, OK, b":0\r\n", NOKEY, OK, b"$1\r\n2\r\n"]
    assert target.get("a") == b"1"
    for command in (["MULTI"], ["SET", "b", "3"], migrate(plain_port, "b", 0, 1000, "REPLACE"),
                    migrate(plain_port, "nothing", 0, 1000), ["EXISTS", "b"]):
        raw.call(*command)
    assert raw.call("EXEC") == b"*4\r\n+OK\r\n+OK\r\n+NOKEY\r\n:0\r\n"
    assert target.get("b") == b"3"
    raw.call("HELLO", "3")
    raw.call("SET", "c", "4")
    assert raw.call(*migrate(plain_port, "c", 0, 1000)) == OK
    assert raw.call(*migrate(plain_port, "c", 0, 1000)) == NOKEY
    assert raw.call(*migrate(plain_port, "", 0, 1000, "KEYS", "c", "d")) == NOKEY


def test_cached_connection_closed_by_the_target(raw, targets):
    """The connection kept from the last MIGRATE is gone: a new one is opened (and SELECTs)."""
    plain_port = targets[0]
    target = target_client(plain_port)
    target.flushall()
    target.client_kill_filter(_type="normal", skipme=True)
    raw.call("MSET", "w", "0", "x", "1", "y", "2", "z", "3")
    assert raw.call(*migrate(plain_port, "w", 2, 1000)) == OK
    assert raw.call(*migrate(plain_port, "x", 2, 1000)) == OK
    movers = [c for c in target.client_list() if c["cmd"] == "restore"]
    assert len(movers) == 1 and movers[0]["db"] == "2"          # one connection, reused
    assert target.client_kill_filter(_type="normal", skipme=True) == 1
    assert raw.call(*migrate(plain_port, "y", 2, 1000)) == OK
    target.client_kill_filter(_type="normal", skipme=True)
    assert raw.call(*migrate(plain_port, "", 2, 1000, "KEYS", "z")) == OK
    target.execute_command("SELECT", 2)
    assert target.mget("w", "x", "y", "z") == [b"0", b"1", b"2", b"3"]


def test_concurrent_migrations(server, r, targets):
    """Clients migrating at once (one connection to the target each at most, never shared)."""
    import threading
    plain_port = targets[0]
    target = target_client(plain_port)
    target.flushall()
    names = [f"c{i}" for i in range(160)]
    r.mset({k: k for k in names})
    failures = []

    def mover(mine: list[str]) -> None:
        """One key alone, then two with KEYS, and so on."""
        conn = RawConnection(server.port)
        try:
            for i in range(0, len(mine), 3):
                first, *rest = mine[i:i + 3]
                replies = [conn.call(*migrate(plain_port, first, 0, 2000))]
                if rest:
                    replies.append(conn.call(*migrate(plain_port, "", 0, 2000, "KEYS", *rest)))
                failures.extend(reply for reply in replies if reply != OK)
        finally:
            conn.close()

    threads = [threading.Thread(target=mover, args=(names[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert r.exists(*names) == 0
    assert target.mget(names) == [k.encode() for k in names]
