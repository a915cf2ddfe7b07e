"""Pub/Sub (SUBSCRIBE … PUBSUB) and MONITOR: replies and messages compared byte for byte with
redis-server where they are deterministic, RESP3 pushes mixed with replies, a subscriber that
does not read cut off by `client-output-buffer-limit pubsub`, redis-py's PubSub, and a server
with two proxies (io-threads 2) where publishers and subscribers sit on different proxies."""
from __future__ import annotations

import re
import socket
import time

import hiredis
import pytest

from helpers import RawConnection, encode, wait_until
from server import Server


# -- helpers -------------------------------------------------------------------------------------

def send(conn: RawConnection, *args) -> None:
    conn.send(encode(*args))


def replies(conn: RawConnection, n: int) -> list[bytes]:
    return [conn.read() for _ in range(n)]


def run_steps(port: int, steps: list[tuple[list, int]]) -> list[list[bytes]]:
    """Each step: a command and how many replies (or pushes) it produces, on one connection."""
    conn = RawConnection(port)
    try:
        out = []
        for args, n in steps:
            send(conn, *args)
            out.append(replies(conn, n))
        return out
    finally:
        conn.close()


def same_as_redis(server, oracle_port, steps) -> None:
    got, want = run_steps(server.port, steps), run_steps(oracle_port, steps)
    for (args, _), g, w in zip(steps, got, want):
        assert g == w, f"{args}: shardd {g} != redis {w}"


def silent_for(conn: RawConnection, seconds: float) -> bool:
    conn.sock.settimeout(seconds)
    try:
        return conn.buf == b"" and not conn.sock.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        return True
    finally:
        conn.sock.settimeout(10)


def client_id(conn: RawConnection) -> int:
    return int(conn.call("CLIENT", "ID")[1:-2])


# -- replies like redis-server's -----------------------------------------------------------------

def test_subscribe_and_unsubscribe_replies_like_redis(server, oracle_port):
    same_as_redis(server, oracle_port, [
        (["SUBSCRIBE", "a", "b"], 2), (["SUBSCRIBE", "a"], 1), (["PSUBSCRIBE", "p*", "q?"], 2),
        (["SSUBSCRIBE", "s", "t"], 2), (["UNSUBSCRIBE", "a", "zz"], 2), (["PUNSUBSCRIBE", "q?"], 1),
        (["PUNSUBSCRIBE"], 1), (["PUNSUBSCRIBE"], 1), (["SUNSUBSCRIBE", "t"], 1), (["SUNSUBSCRIBE"], 1),
        (["SUNSUBSCRIBE"], 1), (["UNSUBSCRIBE"], 1), (["UNSUBSCRIBE"], 1), (["GET", "x"], 1),
        (["UNSUBSCRIBE", "never"], 1), (["PUNSUBSCRIBE", "never*"], 1),
    ])


def test_resp2_subscribed_mode_allows_only_pubsub_commands(server, oracle_port):
    same_as_redis(server, oracle_port, [
        (["SUBSCRIBE", "a"], 1), (["GET", "x"], 1), (["SET", "x", "1"], 1), (["MULTI"], 1),
        (["CLIENT", "LIST"], 1), (["HELLO", "3"], 1), (["PING"], 1), (["PING", "hello"], 1),
        (["PSUBSCRIBE", "b*"], 1), (["SSUBSCRIBE", "c"], 1), (["UNSUBSCRIBE"], 1), (["PUNSUBSCRIBE"], 1),
        (["GET", "x"], 1),        # still subscribed to a shard channel
        (["SUNSUBSCRIBE"], 1), (["PING"], 1), (["GET", "x"], 1),
        (["SUBSCRIBE", "a"], 1), (["RESET"], 1), (["PING"], 1), (["GET", "x"], 1),
    ])


def test_resp3_subscribed_client_runs_any_command(server, oracle_port):
    # HELLO's reply names the server: it runs outside the comparison.
    got, want = [], []
    for port, out in ((server.port, got), (oracle_port, want)):
        conn = RawConnection(port)
        conn.call("HELLO", "3")
        for args, n in [(["SUBSCRIBE", "a"], 1), (["SET", "k", "v"], 1), (["GET", "k"], 1), (["PING"], 1),
                        (["PUBLISH", "a", "to myself"], 2), (["PSUBSCRIBE", "*"], 1), (["PUBLISH", "a", "x"], 3),
                        (["UNSUBSCRIBE"], 1), (["UNSUBSCRIBE"], 1), (["HELLO", "2"], 1), (["GET", "k"], 1),
                        (["PUNSUBSCRIBE"], 1), (["DEL", "k"], 1)]:
            send(conn, *args)
            out.append(replies(conn, n))
        conn.close()
    got[9] = want[9] = None      # HELLO 2's reply
    assert got == want


def test_subscribe_inside_multi_like_redis(server, oracle_port):
    same_as_redis(server, oracle_port, [
        (["MULTI"], 1), (["SUBSCRIBE", "a"], 1), (["SSUBSCRIBE", "b"], 1), (["PSUBSCRIBE", "c"], 1),
        (["EXEC"], 1), (["PING"], 1), (["RESET"], 1), (["MULTI"], 1), (["MONITOR"], 1), (["EXEC"], 1),
    ])


def test_argument_errors_like_redis(server, oracle_port):
    same_as_redis(server, oracle_port, [
        (["PUBLISH", "a"], 1), (["PUBLISH", "a", "b", "c"], 1), (["SPUBLISH", "a"], 1), (["SUBSCRIBE"], 1),
        (["PSUBSCRIBE"], 1), (["SSUBSCRIBE"], 1), (["PUBSUB"], 1), (["PUBSUB", "FOO"], 1),
        (["PUBSUB", "CHANNELS", "a", "b"], 1), (["PUBSUB", "SHARDCHANNELS", "a", "b"], 1),
        (["PUBSUB", "NUMPAT", "x"], 1), (["PUBSUB", "NUMSUB"], 1), (["PUBSUB", "SHARDNUMSUB"], 1),
        (["MONITOR", "x"], 1),
    ])


def test_pubsub_help_is_valkeys(r):
    lines = r.execute_command("PUBSUB", "HELP")
    assert lines[0] == b"PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"HELP", b"    Print this help."] and len(lines) == 14


def test_publish_counts_and_messages_like_redis(server, oracle_port):
    """Channels, patterns (Valkey's glob, escapes and classes included) and shard channels."""
    channels = ["news", "news.sport", "nws", "n[e]ws", "n*ws", "", "news\\", "éte"]
    patterns = ["n*", "n?ws", "n[a-f]ws", "n\\*ws", "*", "news.[^s]*", "n[e]ws", "[", "*.sport"]
    results = []
    for port in (server.port, oracle_port):
        sub, pub = RawConnection(port), RawConnection(port)
        send(sub, "SUBSCRIBE", *channels)
        replies(sub, len(channels))
        send(sub, "PSUBSCRIBE", *patterns)
        replies(sub, len(patterns))
        send(sub, "SSUBSCRIBE", "news")
        replies(sub, 1)
        counts = [pub.call("PUBLISH", c, f"m{i}") for i, c in enumerate(channels + ["other", "news.weather"])]
        counts.append(pub.call("SPUBLISH", "news", "sharded"))
        counts.append(pub.call("SPUBLISH", "nothing", "sharded"))
        total = sum(int(c[1:-2]) for c in counts)
        received = replies(sub, total)      # redis walks its patterns in hash order: compare as sets
        results.append((counts, sorted(received)))
        sub.close()
        pub.close()
    assert results[0] == results[1]


def test_pubsub_introspection_like_redis(server, oracle_port):
    answers = []
    for port in (server.port, oracle_port):
        s1, s2, q = RawConnection(port), RawConnection(port), RawConnection(port)
        send(s1, "SUBSCRIBE", "a", "b", "c")
        replies(s1, 3)
        send(s2, "SUBSCRIBE", "a")
        replies(s2, 1)
        send(s2, "PSUBSCRIBE", "x*", "y*")
        replies(s2, 2)
        send(s1, "PSUBSCRIBE", "x*")
        replies(s1, 1)
        send(s1, "SSUBSCRIBE", "sa", "sb")
        replies(s1, 2)
        got = [q.call("PUBSUB", "NUMSUB", "a", "b", "z"), q.call("PUBSUB", "NUMPAT"),
               q.call("PUBSUB", "SHARDNUMSUB", "sa", "zz"), q.call("PUBSUB", "NUMSUB")]
        got.append(sorted(_parse(q.call("PUBSUB", "CHANNELS"))))
        got.append(sorted(_parse(q.call("PUBSUB", "CHANNELS", "[ab]"))))
        got.append(sorted(_parse(q.call("PUBSUB", "SHARDCHANNELS"))))
        got.append(sorted(_parse(q.call("PUBSUB", "SHARDCHANNELS", "*b"))))
        s1.close()
        time.sleep(0.05)
        got.append(q.call("PUBSUB", "NUMSUB", "a", "b"))
        answers.append(got)
        s2.close()
        q.close()
    assert answers[0] == answers[1]


def _parse(data: bytes):
    reader = hiredis.Reader()
    reader.feed(data)
    return reader.gets()


# -- pushes among replies ------------------------------------------------------------------------

def test_resp3_messages_interleave_with_replies_in_order(server, r):
    sub, pub = RawConnection(server.port), RawConnection(server.port)
    sub.call("HELLO", "3")
    send(sub, "SUBSCRIBE", "ch")
    assert sub.read().startswith(b">3\r\n$9\r\nsubscribe")
    reader = hiredis.Reader()
    for i in range(50):
        send(sub, "INCR", "counter")
        pub.call("PUBLISH", "ch", str(i))
    seen_messages, seen_counts = [], []
    while len(seen_messages) < 50 or len(seen_counts) < 50:
        item = sub.read()
        if item.startswith(b">3"):
            reader.feed(item)
            seen_messages.append(int(reader.gets()[2]))
        else:
            seen_counts.append(int(item[1:-2]))
    assert seen_messages == list(range(50))
    assert seen_counts == list(range(1, 51))
    sub.close()
    pub.close()


def test_push_reaches_a_client_blocked_on_a_key(server, r):
    """A RESP3 subscriber blocked in BLPOP gets messages at once, before BLPOP's reply."""
    sub, pub = RawConnection(server.port), RawConnection(server.port)
    sub.call("HELLO", "3")
    send(sub, "SUBSCRIBE", "ch")
    sub.read()
    send(sub, "BLPOP", "blocked-list", "0")
    time.sleep(0.1)
    assert pub.call("PUBLISH", "ch", "while blocked") == b":1\r\n"
    assert sub.read() == b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$13\r\nwhile blocked\r\n"
    pub.call("RPUSH", "blocked-list", "v")
    assert sub.read() == b"*2\r\n$12\r\nblocked-list\r\n$1\r\nv\r\n"
    sub.close()
    pub.close()


def test_keys_and_channels_do_not_mix(server, r):
    """A published channel named like a key is no key, and PUBLISH works inside MULTI."""
    sub = RawConnection(server.port)
    send(sub, "SUBSCRIBE", "k")
    sub.read()
    assert r.pipeline(transaction=True).publish("k", "a").set("k", "b").publish("k", "c").execute() == [1, True, 1]
    assert [sub.read(), sub.read()] == [b"*3\r\n$7\r\nmessage\r\n$1\r\nk\r\n$1\r\na\r\n",
                                       b"*3\r\n$7\r\nmessage\r\n$1\r\nk\r\n$1\r\nc\r\n"]
    assert r.get("k") == b"b"
    sub.close()


# -- slow subscribers ----------------------------------------------------------------------------

def test_slow_subscriber_is_cut_off_at_the_pubsub_output_limit(server, r):
    r.config_set("client-output-buffer-limit", "pubsub 262144 131072 60")
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(encode("SUBSCRIBE", "flood"))
        time.sleep(0.1)
        before = r.info("stats")["client_output_buffer_limit_disconnections"]
        payload = "x" * 16384
        delivered = 0
        for _ in range(400):          # 6.4 MB to a subscriber that never reads
            delivered += r.publish("flood", payload)
            if delivered and r.pubsub_numsub("flood")[0][1] == 0:
                break
        assert wait_until(lambda: r.pubsub_numsub("flood")[0][1] == 0, 5)
        assert r.info("stats")["client_output_buffer_limit_disconnections"] == before + 1
        assert r.publish("flood", "gone") == 0
        sock.close()
    finally:
        r.config_set("client-output-buffer-limit", "pubsub 33554432 8388608 60")


def test_normal_limit_does_not_apply_to_subscribers(server, r):
    """A subscriber is a pubsub client: the normal class's (tiny) limit leaves it alone."""
    r.config_set("client-output-buffer-limit", "normal 10000 5000 60")
    try:
        sub, pub = RawConnection(server.port), RawConnection(server.port)
        send(sub, "SUBSCRIBE", "big")
        sub.read()
        pub.call("PUBLISH", "big", "y" * 50000)
        assert sub.read() == b"*3\r\n$7\r\nmessage\r\n$3\r\nbig\r\n$50000\r\n" + b"y" * 50000 + b"\r\n"
        sub.close()
        pub.close()
    finally:
        r.config_set("client-output-buffer-limit", "normal 0 0 0")


# -- redis-py ------------------------------------------------------------------------------------

def test_redis_py_pubsub_works_unchanged(server, r):
    p = r.pubsub()
    got = []
    p.subscribe(**{"handled": lambda m: got.append(m["data"])})
    p.psubscribe(**{"pat.*": lambda m: got.append((m["pattern"], m["data"]))})
    assert p.get_message(timeout=2)["type"] == "subscribe"
    assert p.get_message(timeout=2)["type"] == "psubscribe"
    worker = p.run_in_thread(sleep_time=0.01)
    try:
        assert wait_until(lambda: r.pubsub_numsub("handled") == [(b"handled", 1)], 5)
        assert r.publish("handled", "one") == 1
        assert r.publish("pat.x", "two") == 1
        assert wait_until(lambda: got == [b"one", (b"pat.*", b"two")], 5)
    finally:
        worker.stop()
        worker.join(5)
    p.close()
    p2 = r.pubsub(ignore_subscribe_messages=True)
    p2.subscribe("plain")
    r.publish("plain", "hello")
    message = None
    deadline = time.monotonic() + 5
    while message is None and time.monotonic() < deadline:
        message = p2.get_message(timeout=0.5)
    assert message == {"type": "message", "pattern": None, "channel": b"plain", "data": b"hello"}
    p2.close()


def test_redis_py_resp3_pubsub(server):
    r3 = server.client(protocol=3)
    p = r3.pubsub()
    p.subscribe("r3")
    assert p.get_message(timeout=2)["type"] == "subscribe"
    assert r3.publish("r3", "push") == 1
    message = p.get_message(timeout=2)
    assert message["data"] == b"push" and message["channel"] == b"r3"
    p.close()
    r3.close()


# -- MONITOR -------------------------------------------------------------------------------------

STAMP = re.compile(rb"^\+\d+\.\d{6} \[(\d+) [^\]]*\]")
MONITORED = [["SET", "a", "1"], ["GET", "a"], ["AUTH", "pw"], ["AUTH", "user", "pw"],
             ["HELLO", "2", "AUTH", "default", "x", "SETNAME", "n"], ["SELECT", "2"], ["SELECT", "0"],
             ["MULTI"], ["SET", "x", "1"], ["INCR", "x"], ["EXEC"], ["MULTI"], ["NOPE"], ["EXEC"],
             ["EVAL", "redis.call('set', KEYS[1], 'v') return redis.call('get', KEYS[1])", "1", "a"],
             ["EVAL", "redis.call('select', 5) return redis.call('ping')", "0"], ["CLIENT", "LIST"], ["CONFIG", "GET", "port"], ["PING"], ["NOSUCH"], ["GET"],
             ["SET", 'q"uo\\te', "a\nb\r\t\x07\x08\x01\xff é"], ["PUBLISH", "ch", "m"], ["DEBUG", "SLEEP", "0"],
             ["CLIENT", "ID"], ["MGET", "a", "x"], ["ECHO", "hi"]]


def monitor_lines(port: int) -> list:
    monitor, c, marker = RawConnection(port), RawConnection(port), RawConnection(port)
    assert monitor.call("MONITOR") == b"+OK\r\n"
    out = []
    for args in MONITORED:
        send(c, *args)
        c.read()
        marker.call("ECHO", "MARK")
        got = []
        while True:
            line = STAMP.sub(rb"+T [\1 ADDR]", monitor.read())
            if line.endswith(b'"ECHO" "MARK"\r\n'):
                break
            got.append(line)
        out.append(got)
    for conn in (monitor, c, marker):
        conn.close()
    return out


def test_monitor_lines_like_redis(server, oracle_port, r):
    got, want = monitor_lines(server.port), monitor_lines(oracle_port)
    for args, g, w in zip(MONITORED, got, want):
        assert g == w, f"{args}: shardd {g} != redis {w}"


def test_monitor_line_format(server, r):
    monitor = RawConnection(server.port)
    assert monitor.call("MONITOR") == b"+OK\r\n"
    send(monitor, "MONITOR")            # a second MONITOR: no reply at all
    r.set("fmt", "1")
    line = monitor.read()
    assert re.match(rb'^\+\d{10}\.\d{6} \[0 127\.0\.0\.1:\d+\] "SET" "fmt" "1"\r\n$', line), line
    assert silent_for(monitor, 0.2)
    monitor.call("RESET")
    r.set("fmt", "2")
    assert silent_for(monitor, 0.2)
    monitor.close()


# -- several proxies -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def proxies2():
    srv = Server(proxies=2)
    yield srv
    srv.stop()


def on_each_proxy(srv, per_proxy: int = 2) -> dict[int, list[RawConnection]]:
    """Connections sorted by the proxy that accepted them (client ids are index + 1 + k·n)."""
    found: dict[int, list[RawConnection]] = {0: [], 1: []}
    spare = []
    while any(len(v) < per_proxy for v in found.values()):
        c = RawConnection(srv.port)
        p = (client_id(c) - 1) % 2
        (found[p] if len(found[p]) < per_proxy else spare).append(c)
    for c in spare:
        c.close()
    return found


def test_publish_reaches_subscribers_on_every_proxy(proxies2):
    conns = on_each_proxy(proxies2)
    (s0, p0), (s1, p1) = conns[0], conns[1]
    send(s0, "SUBSCRIBE", "x")
    s0.read()
    send(s1, "PSUBSCRIBE", "x*")
    s1.read()
    assert p1.call("PUBSUB", "NUMSUB", "x") == b"*2\r\n$1\r\nx\r\n:1\r\n"
    assert p0.call("PUBSUB", "NUMPAT") == b":1\r\n"
    assert p1.call("PUBLISH", "x", "from 1") == b":2\r\n"
    assert p0.call("PUBLISH", "x", "from 0") == b":2\r\n"
    # Two publishers: each one's messages keep their order, not the two together (a message
    # from another proxy may still be on its way when PUBLISH answers).
    assert sorted(replies(s0, 2)) == [b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$6\r\nfrom 0\r\n",
                                      b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$6\r\nfrom 1\r\n"]
    assert sorted(replies(s1, 2)) == [b"*4\r\n$8\r\npmessage\r\n$2\r\nx*\r\n$1\r\nx\r\n$6\r\nfrom 0\r\n",
                                      b"*4\r\n$8\r\npmessage\r\n$2\r\nx*\r\n$1\r\nx\r\n$6\r\nfrom 1\r\n"]
    assert p1.call("SPUBLISH", "x", "shard") == b":0\r\n"
    send(s1, "SSUBSCRIBE", "x")
    s1.read()
    assert p0.call("SPUBLISH", "x", "shard") == b":1\r\n"
    assert s1.read() == b"*3\r\n$8\r\nsmessage\r\n$1\r\nx\r\n$5\r\nshard\r\n"
    send(s0, "UNSUBSCRIBE", "x")
    s0.read()
    assert p1.call("PUBLISH", "x", "after") == b":1\r\n"
    assert p1.call("PUBSUB", "CHANNELS") == b"*0\r\n"
    for c in (s0, p0, s1, p1):
        c.close()
    time.sleep(0.1)


def test_messages_of_one_publisher_arrive_once_and_in_order(proxies2):
    conns = on_each_proxy(proxies2)
    sub, remote_pub = conns[0][0], conns[1][0]
    local_sub = conns[1][1]
    send(sub, "SUBSCRIBE", "o1", "o2")
    replies(sub, 2)
    send(local_sub, "PSUBSCRIBE", "o?")
    local_sub.read()
    n = 2000
    remote_pub.send(b"".join(encode("PUBLISH", f"o{1 + i % 2}", str(i)) for i in range(n)))
    assert replies(remote_pub, n) == [b":2\r\n"] * n
    reader = hiredis.Reader()
    for conn, index in ((sub, 3), (local_sub, 4)):
        got = []
        for item in replies(conn, n):
            reader.feed(item)
            got.append(int(reader.gets()[index - 1]))
        assert got == list(range(n))
        assert silent_for(conn, 0.2)
    for group in conns.values():
        for c in group:
            c.close()
    time.sleep(0.1)


def test_subscriber_leaving_is_seen_by_every_proxy(proxies2):
    conns = on_each_proxy(proxies2, 1)
    sub, pub = conns[0][0], conns[1][0]
    send(sub, "SUBSCRIBE", "leaving")
    sub.read()
    assert pub.call("PUBLISH", "leaving", "1") == b":1\r\n"
    sub.close()
    assert wait_until(lambda: pub.call("PUBLISH", "leaving", "2") == b":0\r\n", 5)
    pub.close()


def test_monitor_sees_the_commands_of_every_proxy(proxies2):
    conns = on_each_proxy(proxies2, 1)
    monitor, other = conns[1][0], conns[0][0]
    assert monitor.call("MONITOR") == b"+OK\r\n"
    other.call("SET", "watched", "1")
    assert monitor.read().endswith(b'"SET" "watched" "1"\r\n')
    monitor.close()
    time.sleep(0.1)
    other.call("SET", "unwatched", "1")
    other.close()


def test_client_list_and_info_show_subscriptions(server, r):
    sub, mon = RawConnection(server.port), RawConnection(server.port)
    sub_id, mon_id = client_id(sub), client_id(mon)
    send(sub, "SUBSCRIBE", "a", "b")
    replies(sub, 2)
    send(sub, "PSUBSCRIBE", "p*")
    sub.read()
    mon.call("MONITOR")
    lines = {int(line.split()[0][3:]): line for line in r.execute_command("CLIENT", "LIST").decode().splitlines()}
    assert " flags=P " in lines[sub_id] and " sub=2 psub=1 ssub=0 " in lines[sub_id]
    assert " flags=O " in lines[mon_id] and " sub=0 psub=0 ssub=0 " in lines[mon_id]
    stats, clients = r.info("stats"), r.info("clients")
    assert (stats["pubsub_channels"], stats["pubsub_patterns"], stats["pubsubshard_channels"]) == (2, 1, 0)
    assert clients["pubsub_clients"] == 1
    sub.close()
    mon.close()


# -- PUBLISH from scripts -------------------------------------------------------------------------

def publishing_scripts(command: str, a: str, b: str) -> list[tuple[str, list[str]]]:
    """Scripts that publish ARGV[1] to 'news' with `command`, keys a and b on different workers:
    run on a's worker, across both, and moved across them by an undeclared read of b."""
    publish = f"redis.call('{command}', 'news', ARGV[1])"
    return [(f"redis.call('set', KEYS[1], 'x') return {publish}", [a]),
            (f"redis.call('set', KEYS[1], 'x') redis.call('set', KEYS[2], 'y') return {publish}", [a, b]),
            (f"redis.call('set', KEYS[1], 'x') {publish} return redis.call('get', '{b}')", [a])]


def test_publish_from_scripts_reaches_subscribers(server, oracle_port, r):
    """A script's PUBLISH reaches channel and pattern subscribers once, whether the script
    runs on one worker, across workers, or is moved across workers by an undeclared key; the
    reply counts no receivers (a worker has no clients of its own, as a cluster node counts
    only its own). EVAL_RO refuses it as Valkey does."""
    from helpers import keys_on
    a, b = keys_on(0, 1, "pub:")[0], keys_on(1, 1, "pub:")[0]
    sub, psub = RawConnection(server.port), RawConnection(server.port)
    try:
        send(sub, "SUBSCRIBE", "news")
        sub.read()
        send(psub, "PSUBSCRIBE", "n*")
        psub.read()
        for i, (body, keys) in enumerate(publishing_scripts("publish", a, b)):
            r.eval(body, len(keys), *keys, f"m{i}")
            assert sub.read() == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nm%d\r\n" % i
            assert psub.read() == b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nm%d\r\n" % i
        assert r.eval("return redis.call('publish', 'news', 'x')", 0) == 0
        sub.read()
        psub.read()
        ro = ["EVAL_RO", "return redis.call('publish', 'news', 'x')", "0"]
        assert run_steps(server.port, [(ro, 1)]) == run_steps(oracle_port, [(ro, 1)])
        sub.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):             # nothing more: each message went once
            sub.sock.recv(100)
    finally:
        sub.close()
        psub.close()


def test_spublish_from_scripts_reaches_shard_subscribers(server, oracle_port, r):
    """A script's SPUBLISH reaches SSUBSCRIBE's subscribers once (on one worker, across
    workers, or moved across them), and neither channel nor pattern subscribers; EVAL_RO
    refuses it as Valkey does."""
    from helpers import keys_on
    a, b = keys_on(0, 1, "spub:")[0], keys_on(1, 1, "spub:")[0]
    ssub, sub, psub = RawConnection(server.port), RawConnection(server.port), RawConnection(server.port)
    try:
        for conn, command in ((ssub, "SSUBSCRIBE"), (sub, "SUBSCRIBE"), (psub, "PSUBSCRIBE")):
            send(conn, command, "news")
            conn.read()
        for i, (body, keys) in enumerate(publishing_scripts("spublish", a, b)):
            r.eval(body, len(keys), *keys, f"m{i}")
            assert ssub.read() == b"*3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$2\r\nm%d\r\n" % i
        ro = ["EVAL_RO", "return redis.call('spublish', 'news', 'x')", "0"]
        assert run_steps(server.port, [(ro, 1)]) == run_steps(oracle_port, [(ro, 1)])
        for conn in (ssub, sub, psub):
            conn.sock.settimeout(0.3)
            with pytest.raises(socket.timeout):         # nothing more, and nothing elsewhere
                conn.sock.recv(100)
    finally:
        for conn in (ssub, sub, psub):
            conn.close()
