"""CLIENT NO-TOUCH (reads that leave access times alone) and maxmemory-clients (client eviction)."""
from __future__ import annotations

import re
import socket
import time

import pytest

from helpers import RawConnection, closed_by_server, encode, keys_on, wait_until
from server import Server


# -- CLIENT NO-TOUCH -------------------------------------------------------------------------------
def old_key(r, key: str, idle: int = 500, value: str = "v") -> None:
    """A key last accessed `idle` seconds ago (RESTORE IDLETIME)."""
    r.set("__src", value)
    payload = r.dump("__src")
    r.delete("__src")
    r.execute_command("RESTORE", key, 0, payload, "IDLETIME", idle, "REPLACE")


def idle(r, key: str) -> int:
    return r.object("idletime", key)


def client_flags(conn: RawConnection) -> bytes:
    info = conn.call("CLIENT", "INFO")
    return info.split(b" flags=")[1].split(b" ")[0]


def test_no_touch_reads_leave_idle_time(server, r):
    old_key(r, "k")
    old_key(r, "h")
    c = RawConnection(server.port)
    try:
        assert c.call("CLIENT", "NO-TOUCH", "on") == b"+OK\r\n"
        assert c.call("GET", "k") == b"$1\r\nv\r\n"
        assert c.call("STRLEN", "h") == b":1\r\n"
        assert c.call("EXISTS", "k") == b":1\r\n"
        # a pipeline of reads in one write takes the same path
        c.send(encode("GET", "k") + encode("GET", "h") + encode("TYPE", "k"))
        assert [c.read() for _ in range(3)] == [b"$1\r\nv\r\n", b"$1\r\nv\r\n", b"+string\r\n"]
        assert idle(r, "k") >= 500 and idle(r, "h") >= 500
        # a write in place looks the key up without touching it too
        assert c.call("APPEND", "h", "w") == b":2\r\n"
        assert idle(r, "h") >= 500
        # TOUCH is the exception: it touches
        assert c.call("TOUCH", "k") == b":1\r\n"
        assert idle(r, "k") <= 1
        old_key(r, "k")
        assert c.call("CLIENT", "NO-TOUCH", "off") == b"+OK\r\n"
        assert c.call("GET", "k") == b"$1\r\nv\r\n"
        assert idle(r, "k") <= 1
    finally:
        c.close()


def test_no_touch_client_served_later_keeps_it(server, r):
    """A blocked NO-TOUCH client's command, run when another client's write wakes it, still
    leaves the clocks of the keys it looks up alone."""
    r.rpush("{nt}dst", "old")
    payload = r.dump("{nt}dst")
    r.execute_command("RESTORE", "{nt}dst", 0, payload, "IDLETIME", 500, "REPLACE")
    c = RawConnection(server.port)
    try:
        assert c.call("CLIENT", "NO-TOUCH", "on") == b"+OK\r\n"
        c.send(encode("BLMOVE", "{nt}src", "{nt}dst", "LEFT", "RIGHT", "5"))
        wait_until(lambda: r.info("clients")["blocked_clients"] == 1, 5)
        r.lpush("{nt}src", "new")
        assert c.read() == b"$3\r\nnew\r\n"
        assert idle(r, "{nt}dst") >= 500
        assert r.lrange("{nt}dst", 0, -1) == [b"old", b"new"]
    finally:
        c.close()
        r.delete("{nt}dst", "{nt}src")


def test_no_touch_with_the_aof_logging_calls(tmp_path):
    """With appendonly on (its logging wraps the worker's calls), reads still leave the clock
    and TOUCH still sets it; the writes are logged."""
    srv = Server("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        r = srv.client()
        old_key(r, "k")
        c = RawConnection(srv.port)
        try:
            assert c.call("CLIENT", "NO-TOUCH", "on") == b"+OK\r\n"
            assert c.call("GET", "k") == b"$1\r\nv\r\n"
            assert c.call("SET", "w", "1") == b"+OK\r\n"
            assert idle(r, "k") >= 500
            assert c.call("TOUCH", "k") == b":1\r\n"
            assert idle(r, "k") <= 1
        finally:
            c.close()
        wait_until(lambda: any(b"w" in p.read_bytes() for p in tmp_path.rglob("*.incr.aof")), 5)
    finally:
        srv.stop()


def test_no_touch_flag_in_client_list_and_reset(server, r):
    c = RawConnection(server.port)
    try:
        assert client_flags(c) == b"N"
        assert c.call("CLIENT", "NO-TOUCH", "on") == b"+OK\r\n"
        assert client_flags(c) == b"T"
        assert c.call("CLIENT", "NO-EVICT", "on") == b"+OK\r\n"
        assert client_flags(c) == b"eT"
        listed = [line for line in r.client_list() if line["id"] == c.call("CLIENT", "ID")[1:-2].decode()]
        assert listed[0]["flags"] == "eT"
        assert c.call("RESET") == b"+RESET\r\n"
        assert client_flags(c) == b"N"
        old_key(r, "k")
        assert c.call("GET", "k") == b"$1\r\nv\r\n"
        assert idle(r, "k") <= 1                       # RESET ended NO-TOUCH
        assert c.call("CLIENT", "NO-TOUCH", "maybe") == b"-ERR syntax error\r\n"
        assert c.call("CLIENT", "NO-TOUCH") == (b"-ERR wrong number of arguments for 'client|no-touch' "
                                                b"command\r\n")
        assert c.call("CLIENT", "NO-TOUCH", "on", "off").startswith(b"-ERR")
    finally:
        c.close()


def test_no_touch_multi_key_reads_on_both_workers(server, r):
    keys = keys_on(0, 2, "nt0:") + keys_on(1, 2, "nt1:")
    for key in keys:
        old_key(r, key)
    c = RawConnection(server.port)
    try:
        c.call("CLIENT", "NO-TOUCH", "on")
        assert c.call("MGET", *keys) == b"*4\r\n" + b"$1\r\nv\r\n" * 4
        assert c.call("EXISTS", *keys) == b":4\r\n"
        assert all(idle(r, key) >= 500 for key in keys)
        assert c.call("TOUCH", *keys) == b":4\r\n"
        assert all(idle(r, key) <= 1 for key in keys)
    finally:
        c.close()


def test_no_touch_in_transactions_and_scripts(server, r):
    old_key(r, "{x}a")
    old_key(r, "{x}b")
    c = RawConnection(server.port)
    try:
        c.call("CLIENT", "NO-TOUCH", "on")
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("GET", "{x}a") == b"+QUEUED\r\n"
        assert c.call("STRLEN", "{x}b") == b"+QUEUED\r\n"
        assert c.call("EXEC") == b"*2\r\n$1\r\nv\r\n:1\r\n"
        assert c.call("EVAL", "return redis.call('GET', KEYS[1])", "1", "{x}a") == b"$1\r\nv\r\n"
        assert idle(r, "{x}a") >= 500 and idle(r, "{x}b") >= 500
    finally:
        c.close()


def test_no_touch_keeps_lfu_counter(server, r):
    try:
        r.config_set("maxmemory-policy", "allkeys-lfu")
        r.set("__src", "v")
        r.execute_command("RESTORE", "f", 0, r.dump("__src"), "FREQ", 3)
        c = RawConnection(server.port)
        c.call("HELLO", "3")
        c.call("CLIENT", "NO-TOUCH", "on")
        for _ in range(50):
            c.call("GET", "f")
        assert r.object("freq", "f") == 3
        c.call("CLIENT", "NO-TOUCH", "off")
        for _ in range(50):
            c.call("GET", "f")
        assert r.object("freq", "f") > 3
        c.close()
    finally:
        r.config_set("maxmemory-policy", "noeviction")


def test_no_touch_with_tracking(server, r):
    """Tracking and NO-TOUCH both set frame flags: each keeps working with the other."""
    old_key(r, "tk")
    c = RawConnection(server.port)
    try:
        c.call("HELLO", "3")
        assert c.call("CLIENT", "NO-TOUCH", "on") == b"+OK\r\n"
        assert c.call("CLIENT", "TRACKING", "on") == b"+OK\r\n"
        assert c.call("GET", "tk") == b"$1\r\nv\r\n"
        assert idle(r, "tk") >= 500
        r.set("tk", "w")
        assert c.read() == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n"
    finally:
        c.close()


def test_no_touch_after_tracking_off(server, r):
    old_key(r, "tk2")
    c = RawConnection(server.port)
    try:
        c.call("HELLO", "3")
        c.call("CLIENT", "NO-TOUCH", "on")
        c.call("CLIENT", "TRACKING", "on")
        assert c.call("CLIENT", "TRACKING", "off") == b"+OK\r\n"
        assert c.call("GET", "tk2") == b"$1\r\nv\r\n"
        assert idle(r, "tk2") >= 500
        assert client_flags(c) == b"T"
    finally:
        c.close()


# -- maxmemory-clients -----------------------------------------------------------------------------
LIMIT = 200 * 1024


@pytest.fixture(scope="module")
def evicting():
    srv = Server("--maxmemory-clients", str(LIMIT))
    yield srv
    srv.stop()


def partial_command(port: int, size: int) -> socket.socket:
    """A client with `size` bytes of a command not yet complete in its query buffer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n" + b"x" * size)
    return s


def still_connected(s: socket.socket) -> bool:
    s.settimeout(0.3)
    try:
        return s.recv(1) != b""
    except socket.timeout:
        return True
    except OSError:
        return False


def qbuf_sizes(r) -> list[int]:
    return sorted(int(c["qbuf"]) for c in r.client_list() if int(c["qbuf"]) > 1000)


def test_maxmemory_clients_evicts_the_largest_first(evicting):
    r = evicting.client()
    r.config_resetstat()
    big = partial_command(evicting.port, 120_000)
    wait_until(lambda: qbuf_sizes(r) == [120_000 + 4])
    small = partial_command(evicting.port, 60_000)
    wait_until(lambda: len(qbuf_sizes(r)) == 2)
    assert still_connected(big) and still_connected(small)     # 180 KB + overhead: under the limit
    tot = [int(c["tot-mem"]) for c in r.client_list() if int(c["qbuf"]) > 1000]
    assert sorted(tot) == [60_004 + 1024, 120_004 + 1024]
    assert int(r.info("memory")["mem_clients_normal"]) >= 180_000
    small.sendall(b"x" * 40_000)                               # 220 KB: the largest goes
    assert closed_by_server(big)
    assert still_connected(small)
    assert qbuf_sizes(r) == [100_004]
    assert r.info("stats")["evicted_clients"] == 1
    assert "Evicting client:" in evicting.output()
    small.close()
    r.close()


def test_maxmemory_clients_spares_no_evict(evicting):
    r = evicting.client()
    r.config_resetstat()
    keeper = socket.create_connection(("127.0.0.1", evicting.port), timeout=5)
    keeper.sendall(encode("CLIENT", "NO-EVICT", "on"))
    assert keeper.recv(100) == b"+OK\r\n"
    keeper.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n" + b"x" * 150_000)
    wait_until(lambda: qbuf_sizes(r) == [150_000 + 4])
    other = partial_command(evicting.port, 60_000)
    assert closed_by_server(other)                  # the larger one cannot go: the next one does
    assert still_connected(keeper)
    assert r.info("stats")["evicted_clients"] == 1
    assert r.ping()                             # a client at its overhead was not needed
    keeper.close()
    r.close()


def test_maxmemory_clients_output_buffer(evicting):
    r = evicting.client()
    r.config_resetstat()
    r.config_set("maxmemory-clients", 0)
    r.set("big", b"y" * 1_000_000)              # its own query buffer would be too large
    r.config_set("maxmemory-clients", LIMIT)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", evicting.port))
    reader.sendall(encode("GET", "big") * 20)   # and reads none of it
    wait_until(lambda: r.info("stats")["evicted_clients"] == 1)
    assert closed_by_server(reader)
    r.config_set("maxmemory-clients", 0)
    r.delete("big")
    r.config_set("maxmemory-clients", LIMIT)
    r.close()


def test_maxmemory_clients_percent_and_off(evicting):
    r = evicting.client()
    r.config_resetstat()
    try:
        r.config_set("maxmemory-clients", "0")
        big = partial_command(evicting.port, 300_000)
        wait_until(lambda: qbuf_sizes(r) == [300_004])
        assert still_connected(big)
        r.config_set("maxmemory", "10mb")
        assert r.config_get("maxmemory-clients") == {"maxmemory-clients": "0"}
        r.config_set("maxmemory-clients", "2%")              # 2% of 10 MB: 200 KB, applied at once
        assert r.config_get("maxmemory-clients") == {"maxmemory-clients": "2%"}
        assert closed_by_server(big)
        assert r.info("stats")["evicted_clients"] == 1
        r.config_resetstat()
        assert r.info("stats")["evicted_clients"] == 0
        # a percentage without maxmemory: off
        r.config_set("maxmemory", 0)
        big = partial_command(evicting.port, 300_000)
        wait_until(lambda: qbuf_sizes(r) == [300_004])
        assert still_connected(big)
        big.close()
    finally:
        r.config_set("maxmemory-clients", LIMIT)
        r.config_set("maxmemory", 0)
        r.close()


def test_maxmemory_clients_minimum(evicting):
    """A tiny setting acts as 128 KB (getClientEvictionLimit), so the server stays usable."""
    r = evicting.client()
    try:
        r.config_set("maxmemory-clients", "1kb")
        assert r.ping()
        ok = partial_command(evicting.port, 100_000)
        time.sleep(0.3)
        assert still_connected(ok)
        ok.sendall(b"x" * 40_000)
        assert closed_by_server(ok)
    finally:
        r.config_set("maxmemory-clients", LIMIT)
        r.close()


def test_maxmemory_clients_share_per_proxy():
    """With two proxies each holds its clients to half the limit."""
    srv = Server("--maxmemory-clients", str(2 * LIMIT), proxies=2)
    try:
        r = srv.client()
        conns = [partial_command(srv.port, 150_000) for _ in range(4)]
        time.sleep(0.5)
        assert r.info("stats")["evicted_clients"] >= 2         # 150 KB fits one share, two do not
        alive = [c for c in conns if still_connected(c)]
        assert 1 <= len(alive) <= 2
        for c in conns:
            c.close()
        r.close()
    finally:
        srv.stop()


def test_mem_clients_normal_counts_every_proxys_clients():
    """INFO memory's mem_clients_normal is server-wide: a client holding a big partial query
    on one proxy counts in the INFO another proxy answers (within its once-a-second update)."""
    srv = Server(proxies=2)
    socks = []
    try:
        by_proxy: dict[int, socket.socket] = {}
        deadline = time.monotonic() + 10     # the second proxy may still be starting
        while time.monotonic() < deadline:   # bursts of connections: the proxies race to accept them
            time.sleep(0.1)
            burst = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(4)]
            socks.extend(burst)
            for s in burst:
                s.sendall(b"CLIENT ID\r\n")
                client_id = int(s.recv(100)[1:-2])
                by_proxy.setdefault((client_id - 1) % 2, s)     # ids count up per proxy from its index
            if len(by_proxy) == 2:
                break
        assert len(by_proxy) == 2, "every connection went to one proxy"
        holder, asker = by_proxy[0], by_proxy[1]
        holder.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n" + b"x" * 200_000)

        def reported() -> int:
            asker.sendall(b"INFO memory\r\n")
            data = asker.recv(65536)
            while b"\r\n" not in data:
                data += asker.recv(65536)
            size = int(data[1:data.index(b"\r\n")])
            while len(data) < data.index(b"\r\n") + 2 + size + 2:
                data += asker.recv(65536)
            return int(re.search(rb"mem_clients_normal:(\d+)", data).group(1))
        assert wait_until(lambda: reported() >= 200_000, 5), reported()
    finally:
        for s in socks:
            s.close()
        srv.stop()
