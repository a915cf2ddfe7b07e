"""Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP): on one
worker and across workers, FIFO fairness, timeouts, wake-ups by transactions and by writes from
other shards, and clients that go away while blocked."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
import redis

from helpers import RawConnection, encode, keys_on, wait_until, worker_of
from server import Server

A0, B0, C0 = keys_on(0, 3, "b0:")
A1, B1 = keys_on(1, 2, "b1:")


@pytest.fixture
def conns(server, r):
    made: list[RawConnection] = []

    def make() -> RawConnection:
        c = RawConnection(server.port)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def silent_for(conn: RawConnection, seconds: float) -> bool:
    """True when no reply arrives within `seconds`."""
    conn.sock.settimeout(seconds)
    try:
        data = conn.sock.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        return True
    finally:
        conn.sock.settimeout(10)
    return False


def block(conn: RawConnection, *args) -> None:
    """Send a blocking command and make sure it blocked."""
    conn.send(encode(*args))
    assert silent_for(conn, 0.2), f"{args} answered at once"


def test_keys_are_where_the_tests_think():
    assert {worker_of(k) for k in (A0, B0, C0)} == {0}
    assert {worker_of(k) for k in (A1, B1)} == {1}


# -- served at once ------------------------------------------------------------------------

def test_blpop_serves_an_existing_list_at_once(r, raw):
    r.rpush(A0, "x", "y")
    assert raw.call("BLPOP", B0, A0, 0) == b"*2\r\n$%d\r\n%b\r\n$1\r\nx\r\n" % (len(A0), A0.encode())
    assert r.lrange(A0, 0, -1) == [b"y"]
    assert raw.call("BRPOP", A0, 1) == b"*2\r\n$%d\r\n%b\r\n$1\r\ny\r\n" % (len(A0), A0.encode())
    assert r.exists(A0) == 0


def test_blocking_argument_errors(r, raw):
    assert raw.call("BLPOP", A0, "x") == b"-ERR timeout is not a float or out of range\r\n"
    assert raw.call("BLPOP", A0, "-1") == b"-ERR timeout is negative\r\n"
    assert raw.call("BLPOP", A0, "nan") == b"-ERR timeout is not a float or out of range\r\n"
    assert raw.call("BLPOP", A0, "1_0") == b"-ERR timeout is not a float or out of range\r\n"
    # Valkey's getTimeoutFromObjectOrReply: a deadline past a long long of ms is out of range
    for huge in ("1e100", "inf", "9223372036854775.807"):
        assert raw.call("BLPOP", A0, huge) == b"-ERR timeout is out of range\r\n"
    assert raw.call("BLPOP", A0, "-inf") == b"-ERR timeout is negative\r\n"
    assert raw.call("BZPOPMIN", A0, "1e100") == b"-ERR timeout is out of range\r\n"
    assert raw.call("BLPOP", A0) == b"-ERR wrong number of arguments for 'blpop' command\r\n"
    r.set(A0, "s")
    assert raw.call("BLPOP", A0, 0).startswith(b"-WRONGTYPE")
    assert raw.call("BLMOVE", B0, C0, "UP", "LEFT", 0) == b"-ERR syntax error\r\n"
    assert raw.call("PING") == b"+PONG\r\n"


def test_blocking_in_multi_does_not_block(r, raw):
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("BLPOP", A0, 0) == b"+QUEUED\r\n"
    assert raw.call("BLMOVE", A0, B0, "LEFT", "LEFT", 0) == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*2\r\n*-1\r\n$-1\r\n"


def test_blocking_in_multi_across_workers_does_not_block(r, raw):
    raw.call("MULTI")
    raw.call("BLPOP", A0, A1, 0)
    raw.call("SET", B1, "v")
    assert raw.call("EXEC") == b"*2\r\n*-1\r\n+OK\r\n"


# -- blocked, then woken -----------------------------------------------------------------

def test_blpop_wakes_on_push_and_later_commands_wait(r, conns):
    c = conns()
    c.send(encode("BLPOP", A0, 0) + encode("PING"))
    assert silent_for(c, 0.3)
    assert r.rpush(A0, "v") == 1
    assert c.read() == b"*2\r\n$%d\r\n%b\r\n$1\r\nv\r\n" % (len(A0), A0.encode())
    assert c.read() == b"+PONG\r\n"
    assert r.exists(A0) == 0


def test_served_before_the_pushers_next_command(r, conns):
    """Valkey serves a blocked client right after the command that pushed."""
    c, pusher = conns(), conns()
    block(c, "BLPOP", A0, 0)
    pusher.send(encode("RPUSH", A0, "v") + encode("LLEN", A0))
    assert pusher.read() == b":1\r\n"
    assert pusher.read() == b":0\r\n"
    assert c.read().endswith(b"$1\r\nv\r\n")


def test_fifo_the_first_blocked_is_served_first(r, conns):
    first, second, third = conns(), conns(), conns()
    block(first, "BLPOP", A0, 0)
    block(second, "BLPOP", A0, B0, 0)
    block(third, "BRPOP", A0, 0)
    r.rpush(A0, "1", "2")
    assert first.read().endswith(b"$1\r\n1\r\n")
    assert second.read().endswith(b"$1\r\n2\r\n")
    assert silent_for(third, 0.2)
    r.rpush(A0, "3")
    assert third.read().endswith(b"$1\r\n3\r\n")


def test_timeout_with_subsecond_precision(r, conns):
    c = conns()
    start = time.monotonic()
    assert c.call("BLPOP", A0, "0.3") == b"*-1\r\n"
    took = time.monotonic() - start
    assert 0.3 <= took < 1.5
    start = time.monotonic()
    assert c.call("BLMOVE", A0, B0, "LEFT", "RIGHT", "0.2") == b"*-1\r\n"     # a null array, as redis-server
    assert 0.2 <= time.monotonic() - start < 1.0
    assert c.call("BRPOPLPUSH", A0, B0, "0.05") == b"*-1\r\n"
    assert c.call("MULTI") == b"+OK\r\n" and c.call("BLMOVE", A0, B0, "LEFT", "RIGHT", "0.05") == b"+QUEUED\r\n"
    assert c.call("EXEC") == b"*1\r\n$-1\r\n"                 # unable to block: a null bulk


def test_timeout_resp3_null(r, conns):
    c = conns()
    c.call("HELLO", "3")
    assert c.call("BLPOP", A0, "0.05") == b"_\r\n"
    assert c.call("BRPOPLPUSH", A0, B0, "0.05") == b"_\r\n"


def test_timeout_zero_blocks_until_pushed(r, conns):
    c = conns()
    block(c, "BRPOP", A0, 0)
    assert silent_for(c, 1.0)
    r.lpush(A0, "late")
    assert c.read().endswith(b"$4\r\nlate\r\n")


def test_wrong_type_write_keeps_the_client_waiting(r, conns):
    c = conns()
    block(c, "BLPOP", A0, 0)
    r.set(A0, "string")
    assert silent_for(c, 0.2)
    r.delete(A0)
    r.rpush(A0, "v")
    assert c.read().endswith(b"$1\r\nv\r\n")


def test_blmove_blocked_then_moves(r, conns):
    c = conns()
    block(c, "BLMOVE", A0, B0, "RIGHT", "LEFT", 0)
    r.rpush(A0, "a", "b")
    assert c.read() == b"$1\r\nb\r\n"
    assert r.lrange(B0, 0, -1) == [b"b"]
    assert r.lrange(A0, 0, -1) == [b"a"]


def test_brpoplpush_chain_wakes_the_next(r, conns):
    """A BLMOVE's push serves the client blocked on its destination."""
    mover, popper = conns(), conns()
    block(mover, "BRPOPLPUSH", A0, B0, 0)
    block(popper, "BLPOP", B0, 0)
    r.rpush(A0, "v")
    assert mover.read() == b"$1\r\nv\r\n"
    assert popper.read().endswith(b"$1\r\nv\r\n")
    assert r.exists(A0, B0) == 0


def test_blmpop_blocks_and_pops_count(r, conns):
    c = conns()
    block(c, "BLMPOP", 0, 2, A0, B0, "LEFT", "COUNT", 5)
    r.rpush(B0, "1", "2", "3")
    assert c.read() == (b"*2\r\n$%d\r\n%b\r\n*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
                        % (len(B0), B0.encode()))


def test_push_inside_transaction_serves_after_exec(r, conns):
    c, tx = conns(), conns()
    block(c, "BLPOP", A0, 0)
    tx.send(encode("MULTI") + encode("RPUSH", A0, "v") + encode("LLEN", A0) + encode("EXEC"))
    for _ in range(3):
        tx.read()
    assert tx.read() == b"*2\r\n:1\r\n:1\r\n"      # the blocked client is served after EXEC
    assert c.read().endswith(b"$1\r\nv\r\n")


# -- across workers ----------------------------------------------------------------------

def test_blpop_across_workers_served_at_once(r, raw):
    r.rpush(A1, "v")
    assert raw.call("BLPOP", A0, A1, 0).endswith(b"$1\r\nv\r\n")


def test_blpop_across_workers_wakes_on_either_and_serves_once(r, conns):
    for pushed in (A0, A1):
        c = conns()
        block(c, "BLPOP", A0, A1, 0)
        r.rpush(pushed, "v")
        assert c.read() == b"*2\r\n$%d\r\n%b\r\n$1\r\nv\r\n" % (len(pushed), pushed.encode())
        assert r.exists(A0, A1) == 0
        other = A0 if pushed == A1 else A1
        r.rpush(other, "other")                 # nobody waits any more: the value stays
        time.sleep(0.1)
        assert r.lrange(other, 0, -1) == [b"other"]
        r.delete(A0, A1)


def test_blpop_across_workers_times_out(r, conns):
    c = conns()
    start = time.monotonic()
    assert c.call("BLPOP", A0, A1, "0.3") == b"*-1\r\n"
    assert 0.3 <= time.monotonic() - start < 1.5
    r.rpush(A1, "kept")
    time.sleep(0.1)
    assert r.lrange(A1, 0, -1) == [b"kept"]


def test_blmove_across_workers(r, conns):
    c = conns()
    block(c, "BLMOVE", A0, A1, "LEFT", "RIGHT", 0)
    r.rpush(A0, "x")
    assert c.read() == b"$1\r\nx\r\n"
    assert r.lrange(A1, 0, -1) == [b"x"] and r.exists(A0) == 0


def test_lmove_from_another_shard_wakes(r, conns):
    c = conns()
    block(c, "BLPOP", A1, 0)
    r.rpush(A0, "m")
    assert r.lmove(A0, A1, "LEFT", "RIGHT") == b"m"
    assert c.read().endswith(b"$1\r\nm\r\n")


def test_transaction_across_shards_wakes(r, conns):
    c, tx = conns(), conns()
    block(c, "BLPOP", A0, 0)
    tx.send(encode("MULTI") + encode("SET", A1, "x") + encode("RPUSH", A0, "v") + encode("EXEC"))
    for _ in range(3):
        tx.read()
    assert tx.read() == b"*2\r\n+OK\r\n:1\r\n"
    assert c.read().endswith(b"$1\r\nv\r\n")


def test_many_clients_across_workers_each_value_once(r, server):
    """Poppers on keys of both workers, pushers on both: every value is served exactly once."""
    n = 20
    got: list[bytes] = []
    lock = threading.Lock()

    def popper() -> None:
        c = RawConnection(server.port)
        try:
            reply = c.call("BLPOP", A0, A1, 5)
            with lock:
                got.append(reply.rsplit(b"\r\n", 2)[-2])
        finally:
            c.close()
    threads = [threading.Thread(target=popper) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    for i in range(n):
        r.rpush(A0 if i % 2 else A1, f"v{i}")
    for t in threads:
        t.join(15)
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(n))
    assert r.exists(A0, A1) == 0


# -- clients that go away ---------------------------------------------------------------

def test_disconnected_client_is_forgotten(r, server):
    for keys in ([A0], [A0, A1]):
        c = RawConnection(server.port)
        block(c, "BLPOP", *keys, 0)
        c.close()
        time.sleep(0.2)
        r.rpush(A0, "stays")
        time.sleep(0.1)
        assert r.lrange(A0, 0, -1) == [b"stays"]
        r.delete(A0)


def test_killed_worker_fails_its_blocked_clients():
    srv = Server()
    try:
        waiting, across = RawConnection(srv.port), RawConnection(srv.port)
        block(waiting, "BLPOP", A0, 0)
        block(across, "BLPOP", A0, A1, 0)
        info = srv.client().info("shards")
        os.kill(int(info["shard0"]["pid"]), signal.SIGKILL)     # a worker of our own server
        assert waiting.read().startswith(b"-ERR shard worker 0 exited")
        assert across.read().startswith(b"-ERR shard worker 0 exited")
        assert waiting.call("PING") == b"+PONG\r\n"
        r = srv.client()

        def pushed() -> bool:
            try:
                return r.rpush(A0, "v") == 1
            except redis.ResponseError:     # the restarted worker may still be loading
                return False
        assert wait_until(pushed)
        for c in (waiting, across):
            c.close()
    finally:
        srv.stop()


def test_several_proxies_fifo(tmp_path):
    srv = Server(proxies=2)
    try:
        cs = [RawConnection(srv.port) for _ in range(4)]
        for c in cs:
            block(c, "BLPOP", A0, 0)
        r = srv.client()
        r.rpush(A0, "0", "1", "2", "3")
        got = [c.read().rsplit(b"\r\n", 2)[-2] for c in cs]
        assert got == [b"0", b"1", b"2", b"3"]
        for c in cs:
            c.close()
    finally:
        srv.stop()


# -- introspection and CLIENT UNBLOCK -----------------------------------------------------

def client_id_of(conn: RawConnection) -> int:
    return int(conn.call("CLIENT", "ID")[1:-2])


@pytest.mark.parametrize("keys", [[A0], [A0, A1]], ids=["one-worker", "across"])
def test_client_unblock_timeout_and_error(r, conns, keys):
    c = conns()
    cid = client_id_of(c)
    block(c, "BLPOP", *keys, 0)
    assert r.info("clients")["blocked_clients"] == 1
    line = next(entry for entry in r.client_list() if entry["id"] == str(cid))
    assert "b" in line["flags"]
    assert r.execute_command("CLIENT", "UNBLOCK", cid) == 1
    assert c.read() == b"*-1\r\n"
    assert r.info("clients")["blocked_clients"] == 0
    assert r.execute_command("CLIENT", "UNBLOCK", cid) == 0
    block(c, "BLPOP", *keys, 0)
    assert r.execute_command("CLIENT", "UNBLOCK", cid, "ERROR") == 1
    assert c.read() == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    r.rpush(A0, "stays")
    time.sleep(0.1)
    assert r.lrange(A0, 0, -1) == [b"stays"]


def test_client_unblock_errors(r, raw):
    assert raw.call("CLIENT", "UNBLOCK", "x") == b"-ERR value is not an integer or out of range\r\n"
    assert raw.call("CLIENT", "UNBLOCK", 1, "MAYBE") == b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    assert raw.call("CLIENT", "UNBLOCK", 999999) == b":0\r\n"


def test_swapdb_serves_clients_blocked_in_the_other_db(r, conns):
    c = conns()
    c.call("SELECT", 1)
    block(c, "BLPOP", A0, 0)
    r.rpush(A0, "from-db0")
    assert silent_for(c, 0.2)
    assert r.swapdb(0, 1)
    assert c.read().endswith(b"$8\r\nfrom-db0\r\n")


# -- sorted sets ----------------------------------------------------------------------------

def test_bzpopmin_at_once_and_blocked(r, conns):
    r.zadd(A0, {"a": 1, "b": 2})
    c = conns()
    assert c.call("BZPOPMIN", A0, 0) == b"*3\r\n$%d\r\n%b\r\n$1\r\na\r\n$1\r\n1\r\n" % (len(A0), A0.encode())
    assert c.call("BZPOPMAX", A0, 0) == b"*3\r\n$%d\r\n%b\r\n$1\r\nb\r\n$1\r\n2\r\n" % (len(A0), A0.encode())
    block(c, "BZPOPMAX", B0, A0, 0)
    r.zadd(A0, {"x": 1.5, "y": 2.5})
    assert c.read() == b"*3\r\n$%d\r\n%b\r\n$1\r\ny\r\n$3\r\n2.5\r\n" % (len(A0), A0.encode())


def test_bzmpop_across_workers_and_timeout(r, conns):
    c = conns()
    block(c, "BZMPOP", 0, 2, A0, A1, "MIN", "COUNT", 2)
    r.zadd(A1, {"p": 1, "q": 2, "s": 3})
    assert c.read() == (b"*2\r\n$%d\r\n%b\r\n*2\r\n*2\r\n$1\r\np\r\n$1\r\n1\r\n*2\r\n$1\r\nq\r\n$1\r\n2\r\n"
                        % (len(A1), A1.encode()))
    c.call("HELLO", "3")
    assert c.call("BZPOPMIN", A0, "0.05") == b"_\r\n"
    assert c.call("BZMPOP", "0.05", 1, A0, "MAX") == b"_\r\n"
    assert c.call("BZPOPMIN", A1, 0) == b"*3\r\n$%d\r\n%b\r\n$1\r\ns\r\n,3\r\n" % (len(A1), A1.encode())


def test_bzpop_wrong_type_and_errors(r, raw):
    r.set(A0, "s")
    assert raw.call("BZPOPMIN", A0, 0).startswith(b"-WRONGTYPE")
    assert raw.call("BZMPOP", 0, 0, A0, "MIN").startswith(b"-ERR numkeys")
    assert raw.call("BZPOPMIN", B0, "-1") == b"-ERR timeout is negative\r\n"


def test_blocking_command_after_pipelined_multi_key_work_keeps_order(r, raw):
    """One read: multi-key and subcommand work waits for the end of the proxy's loop turn, a
    blocking command leaves at once; the worker still runs them in the client's order."""
    raw.send(encode("MSET", A0, "1", A1, "2") + encode("XGROUP", "CREATE", B0, "g", "$", "MKSTREAM")
             + encode("XREADGROUP", "GROUP", "g", "c", "BLOCK", "50", "STREAMS", B0, ">")
             + encode("MGET", A0, A1))
    assert [raw.read() for _ in range(4)] == [b"+OK\r\n", b"+OK\r\n", b"*-1\r\n",
                                              b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n"]


def test_pipelined_multi_key_work_keeps_its_db(server, raw):
    """Work sent at the end of the loop turn runs in the db its command was read in."""
    raw.send(encode("SELECT", "1") + encode("MSET", A0, "db1", A1, "db1") + encode("SELECT", "0")
             + encode("MSET", A0, "db0", A1, "db0") + encode("MGET", A0, A1) + encode("SELECT", "1")
             + encode("MGET", A0, A1) + encode("SELECT", "0"))
    replies = [raw.read() for _ in range(8)]
    assert replies[4] == b"*2\r\n$3\r\ndb0\r\n$3\r\ndb0\r\n"
    assert replies[6] == b"*2\r\n$3\r\ndb1\r\n$3\r\ndb1\r\n"
    r1 = server.client(db=1)
    try:
        assert r1.mget(A0, A1) == [b"db1", b"db1"]
    finally:
        r1.flushall()
        r1.close()
