"""Operating a running server: SLOWLOG, LATENCY, INFO commandstats/errorstats/latencystats,
CONFIG REWRITE, CLIENT PAUSE/UNPAUSE/REPLY, DEBUG, the query and output buffer limits and
protected mode. Real servers (2 workers; one with 2 proxies), each stopped by its fixture."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import psutil
import pytest
import redis

from helpers import RawConnection, closed_by_server, encode, keys_on, read_exact, wait_until
from server import Server, free_port

DEBUG_NOT_ALLOWED = ("DEBUG command not allowed. If the enable-debug-command option is set to \"local\", "
                     "you can run it from a local connection, otherwise you need to set this option in the "
                     "configuration file, and then restart the server.")


@pytest.fixture(scope="module")
def srv():
    s = Server("--enable-debug-command", "yes")
    yield s
    s.stop()


@pytest.fixture
def r(srv):
    c = srv.client()
    c.flushall()
    c.config_set("slowlog-log-slower-than", 10000)
    c.config_set("slowlog-max-len", 128)
    c.config_set("latency-monitor-threshold", 0)
    c.slowlog_reset()
    c.execute_command("LATENCY", "RESET")
    c.config_resetstat()
    yield c
    c.execute_command("CLIENT", "UNPAUSE")
    c.close()


def conn(srv) -> RawConnection:
    return RawConnection(srv.port)


def slowlog(r, count: int = -1) -> list:
    return r.execute_command("SLOWLOG", "GET", count)


def info_lines(r, section: str) -> dict[str, str]:
    """INFO <section> as name → text, unparsed."""
    port = r.connection_pool.connection_kwargs["port"]
    c = RawConnection(port)
    try:
        raw = c.call("INFO", section)
    finally:
        c.close()
    text = raw[raw.index(b"\r\n") + 2:-2].decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


# --- SLOWLOG ------------------------------------------------------------------------------------

def test_slowlog_entries_from_proxy_and_workers(srv, r):
    k0, k1 = keys_on(0, 1, "sl:")[0], keys_on(1, 1, "sl:")[0]
    c = srv.client()
    try:
        c.client_setname("foobar")
        addr = re.search(r"addr=(\S+)", c.execute_command("CLIENT", "INFO").decode()).group(1)
        r.config_set("slowlog-log-slower-than", 0)
        c.set(k0, "v")
        c.get(k1)
        c.ping()
        c.execute_command("DEBUG", "SLEEP", "0.05")
        r.config_set("slowlog-log-slower-than", -1)
        entries = slowlog(r)          # while c is connected: workers' entries take its name from it
    finally:
        c.close()
    mine = [e for e in entries if e[4] == addr.encode()]
    argvs = [e[3] for e in mine]
    # Newest first, each as Valkey shapes it: id, unix time, µs, argv, client address, name.
    assert argvs == [[b"DEBUG", b"SLEEP", b"0.05"], [b"PING"], [b"GET", k1.encode()], [b"SET", k0.encode(), b"v"]]
    for e in mine:
        assert len(e) == 6 and e[5] == b"foobar"
        assert abs(e[1] - time.time()) < 30
    assert mine[0][2] >= 50000
    ids = [e[0] for e in entries]
    assert len(set(ids)) == len(ids)
    assert r.execute_command("SLOWLOG", "LEN") == len(entries)
    assert len(slowlog(r, 2)) == 2 and len(r.execute_command("SLOWLOG", "GET")) == min(10, len(entries))
    assert r.slowlog_reset() and r.execute_command("SLOWLOG", "LEN") == 0


def test_slowlog_thresholds_and_max_len(srv, r):
    r.config_set("slowlog-max-len", 10)
    r.config_set("slowlog-log-slower-than", 0)
    for i in range(30):
        r.ping()
        r.set(f"k{i}", "v")
    r.config_set("slowlog-log-slower-than", -1)
    assert r.execute_command("SLOWLOG", "LEN") == 10
    r.slowlog_reset()
    for value in (-1, 1_000_000):             # off, and far above what these commands take
        r.config_set("slowlog-log-slower-than", value)
        r.set("a", "b")
        r.ping()
        assert r.execute_command("SLOWLOG", "LEN") == 0
    r.config_set("slowlog-max-len", 0)
    r.config_set("slowlog-log-slower-than", 0)
    r.set("a", "b")
    r.config_set("slowlog-log-slower-than", -1)
    assert r.execute_command("SLOWLOG", "LEN") == 0


def test_slowlog_argument_truncation_like_redis(srv, r, oracle):
    long_value = "x" * 200
    many = [f"f{i}" for i in range(40)]
    for client in (r, oracle):
        client.config_set("slowlog-log-slower-than", 0)
        client.slowlog_reset()
        client.set("key", long_value)
        client.execute_command("SADD", "s", *many)
        client.config_set("slowlog-log-slower-than", -1)
    got = {tuple(e[3][:2]): e[3] for e in slowlog(r)}
    want = {tuple(e[3][:2]): e[3] for e in slowlog(oracle)}
    for key in ((b"SET", b"key"), (b"SADD", b"s")):
        assert got[key] == want[key]
    assert got[(b"SET", b"key")][2] == b"x" * 128 + b"... (72 more bytes)"
    assert len(got[(b"SADD", b"s")]) == 32 and got[(b"SADD", b"s")][-1] == b"... (11 more arguments)"


def test_slowlog_redacts_secrets(srv, r):
    c = conn(srv)
    try:
        r.config_set("slowlog-log-slower-than", 0)
        assert c.call("AUTH", "someone", "secret").startswith(b"-")
        assert c.call("CONFIG", "SET", "masterauth", "hush", "hz", "10") == b"+OK\r\n"
        r.config_set("slowlog-log-slower-than", -1)
    finally:
        c.close()
    argvs = [e[3] for e in slowlog(r)]
    assert [b"AUTH", b"(redacted)", b"(redacted)"] in argvs
    assert [b"CONFIG", b"SET", b"masterauth", b"(redacted)", b"hz", b"10"] in argvs
    assert not any(b"secret" in a or b"hush" in a for argv in argvs for a in argv)


def test_slowlog_one_entry_for_a_command_every_worker_runs(srv, r):
    r.set(keys_on(0, 1, "d:")[0], "v")
    r.config_set("slowlog-log-slower-than", 0)
    r.dbsize()
    r.config_set("slowlog-log-slower-than", -1)
    assert [e[3] for e in slowlog(r)].count([b"DBSIZE"]) == 1


def test_config_set_hz_takes_any_int_and_caps_it(srv, r):
    """Valkey's updateHZ: hz is a hint; CONFIG SET takes 0 or 1000 and keeps 1 or 500."""
    try:
        for asked, kept in (("0", "1"), ("1000", "500"), ("42", "42")):
            assert r.config_set("hz", asked)
            assert r.config_get("hz") == {"hz": kept}
        with pytest.raises(redis.ResponseError, match="argument must be between 0 and 2147483647"):
            r.config_set("hz", "-5")
    finally:
        r.config_set("hz", "10")


def test_slowlog_errors_and_help(srv, r):
    def err(*args) -> str:
        with pytest.raises(redis.ResponseError) as exc:
            r.execute_command(*args)
        return str(exc.value)
    assert err("SLOWLOG", "GET", "-2") == "count should be greater than or equal to -1"
    # getRangeLongFromObjectOrReply answers a non-integer with the range's message too
    assert err("SLOWLOG", "GET", "x") == "count should be greater than or equal to -1"
    assert err("SLOWLOG", "GET", "9223372036854775808") == "count should be greater than or equal to -1"
    assert err("SLOWLOG", "LEN", "x") == "wrong number of arguments for 'slowlog|len' command"
    assert err("SLOWLOG", "GET", "1", "2") == ("unknown subcommand or wrong number of arguments for 'GET'. "
                                                "Try SLOWLOG HELP.")
    assert err("SLOWLOG", "NOPE").startswith("unknown subcommand 'NOPE'. Try SLOWLOG HELP.")
    lines = r.execute_command("SLOWLOG", "HELP")
    assert lines[0] == b"SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == [b"HELP", b"    Print this help."] and b"RESET" in lines


# --- INFO commandstats / errorstats / latencystats ----------------------------------------------------

def test_commandstats_errorstats(srv, r):
    k0, k1 = keys_on(0, 1, "cs:")[0], keys_on(1, 1, "cs:")[0]
    c = conn(srv)
    try:
        c.call("CONFIG", "RESETSTAT")
        for k in (k0, k1, k0):
            c.call("SET", k, "1")
        c.call("GET", k0)
        c.call("MGET", k0, k1)
        c.call("DBSIZE")
        assert c.call("SET", k0).startswith(b"-ERR wrong number")          # rejected
        assert c.call("LPUSH", k0, "x").startswith(b"-WRONGTYPE")          # failed
        assert c.call("NOSUCHCOMMAND").startswith(b"-ERR unknown command")  # only an error
        assert c.call("CONFIG", "NOPE").startswith(b"-ERR unknown subcommand")
        stats = info_lines(r, "commandstats")
        errors = info_lines(r, "errorstats")
        total_errors = int(info_lines(r, "stats")["total_error_replies"])
    finally:
        c.close()

    def fields(name: str) -> dict[str, float]:
        return {k: float(v) for k, v in (p.split("=") for p in stats[f"cmdstat_{name}"].split(","))}
    assert re.fullmatch(r"calls=\d+,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=\d+,failed_calls=\d+",
                        stats["cmdstat_set"])
    assert fields("set")["calls"] == 3 and fields("set")["rejected_calls"] == 1
    assert fields("set")["failed_calls"] == 0 and fields("set")["usec"] > 0
    assert fields("lpush") == {**fields("lpush"), "calls": 1, "failed_calls": 1}
    assert fields("get")["calls"] == 1
    # A command split over the workers, or run by each of them, is one call.
    assert fields("mget")["calls"] == 1 and fields("dbsize")["calls"] == 1
    assert fields("config|resetstat")["calls"] == 1
    assert not any(name.startswith("cmdstat_nosuchcommand") or "__" in name for name in stats)
    assert errors == {"errorstat_ERR": "count=3", "errorstat_WRONGTYPE": "count=1"}
    assert total_errors == 4
    r.config_resetstat()
    assert set(info_lines(r, "commandstats")) <= {"cmdstat_config|resetstat"}
    assert info_lines(r, "errorstats") == {}


def test_latencystats(srv, r):
    for _ in range(20):
        r.set("a", "b")
    stats = info_lines(r, "latencystats")
    p = dict(kv.split("=") for kv in stats["latency_percentiles_usec_set"].split(","))
    assert list(p) == ["p50", "p99", "p99.9"]
    assert all(0 < float(v) < 100_000 for v in p.values())
    r.config_set("latency-tracking-info-percentiles", "50 99.99")
    try:
        stats = info_lines(r, "latencystats")
        assert stats["latency_percentiles_usec_set"].startswith("p50=") and ",p99.99=" in stats["latency_percentiles_usec_set"]
        r.config_set("latency-tracking", "no")
        assert info_lines(r, "latencystats") == {}
    finally:
        r.config_set("latency-tracking", "yes")
        r.config_set("latency-tracking-info-percentiles", "50 99 99.9")
    everything = "\n".join(f"# {t}" for t in section_titles(r, "everything"))
    titles = re.findall(r"^# (\w+)$", everything, re.M)
    assert titles.index("Commandstats") < titles.index("Errorstats") < titles.index("Latencystats") < titles.index("Keyspace")
    assert "Commandstats" not in section_titles(r, "default")


def section_titles(r, *sections: str) -> list[str]:
    c = RawConnection(r.connection_pool.connection_kwargs["port"])
    try:
        return re.findall(r"^# (\w+)\r$", c.call("INFO", *sections).decode(), re.M)
    finally:
        c.close()


# --- LATENCY ------------------------------------------------------------------------------------

def test_latency_monitor(srv, r):
    assert r.execute_command("LATENCY", "LATEST") == []
    assert r.execute_command("LATENCY", "DOCTOR").decode().startswith("I'm sorry, Dave, I can't do that.")
    r.config_set("latency-monitor-threshold", 20)
    r.execute_command("DEBUG", "SLEEP", "0.05")
    (event, when, latest, worst), = r.execute_command("LATENCY", "LATEST")
    assert event == b"command" and abs(when - time.time()) < 30 and 50 <= latest == worst < 5000
    assert r.execute_command("LATENCY", "HISTORY", "command") == [[when, latest]]
    assert r.execute_command("LATENCY", "HISTORY", "nothing") == []
    graph = r.execute_command("LATENCY", "GRAPH", "command").decode()
    assert graph.startswith(f"command - high {latest} ms, low {latest} ms (all time high {worst} ms)\n" + "-" * 80)
    doctor = r.execute_command("LATENCY", "DOCTOR").decode()
    assert "1. command: 1 latency spikes" in doctor and "Slow Log" in doctor
    with pytest.raises(redis.ResponseError, match="No samples available for event 'nothing'"):
        r.execute_command("LATENCY", "GRAPH", "nothing")
    # A "fast" command slower than the threshold is a fast-command event (one per worker).
    r.config_set("latency-monitor-threshold", 1)
    r.execute_command("RPUSH", "biglist", *range(200_000))
    r.config_set("latency-monitor-threshold", 0)
    events = {e[0] for e in r.execute_command("LATENCY", "LATEST")}
    assert b"fast-command" in events
    assert r.execute_command("LATENCY", "RESET", "command") == 1
    assert {e[0] for e in r.execute_command("LATENCY", "LATEST")} == events - {b"command"}
    assert r.execute_command("LATENCY", "RESET") == len(events) - 1
    assert r.execute_command("LATENCY", "LATEST") == []
    assert r.execute_command("LATENCY", "HELP")[1] == b"DOCTOR"


def test_latency_histogram(srv, r):
    for _ in range(5):
        r.set("h", "1")
    r.get("h")
    hist = r.execute_command("LATENCY", "HISTOGRAM", "set", "nosuch")
    assert list(hist) == [b"set"]
    assert hist[b"set"][b"calls"] == 5
    buckets = hist[b"set"][b"histogram_usec"]
    counts = list(buckets.values())
    assert counts == sorted(counts) and counts[-1] == 5
    assert all(b in (1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227) or b > 4227 for b in buckets)
    assert set(r.execute_command("LATENCY", "HISTOGRAM")) >= {b"set", b"get"}
    raw = conn(srv)
    try:
        raw.call("HELLO", "3")
        assert raw.call("LATENCY", "HISTOGRAM", "get").startswith(b"%1\r\n$3\r\nget\r\n%2\r\n$5\r\ncalls\r\n:1\r\n")
    finally:
        raw.close()


# --- CONFIG REWRITE -----------------------------------------------------------------------------

CONF = """\
# my server
port {port}
bind 127.0.0.1

# tuning
hz 10
maxmemory 100mb
save 900 1
save 300 10
# keep this comment
slowlog-max-len 100
rename-command KEYS ""
"""


def test_config_rewrite_keeps_comments_and_order(tmp_path):
    port = free_port()
    conf = tmp_path / "shardd.conf"
    conf.write_text(CONF.format(port=port))
    srv = Server(config_file=str(conf), port=port, dir=str(tmp_path))
    try:
        r = srv.client()
        r.config_set("maxmemory", "2gb")
        r.config_set("slowlog-max-len", "128")        # back to the default: stays in place
        r.config_set("save", "60 5")
        r.config_set("latency-monitor-threshold", "7")
        assert r.config_rewrite()
        lines = conf.read_text().splitlines()
        assert lines[:4] == ["# my server", f"port {port}", "bind 127.0.0.1", ""]
        # The second save line is blanked (one save point now), the rest stays in place.
        assert lines[4:11] == ["# tuning", "hz 10", "maxmemory 2gb", "save 60 5", "",
                               "# keep this comment", "slowlog-max-len 128"]
        assert lines[11] == 'rename-command KEYS ""'

        generated = lines[lines.index("# Generated by CONFIG REWRITE") + 1:]
        assert "latency-monitor-threshold 7" in generated
        assert any(line.startswith("dir ") for line in generated)
        # Defaults the file never had are not written.
        assert not any(line.startswith(("timeout ", "databases ", "tcp-keepalive ")) for line in lines)
        assert lines.count("# Generated by CONFIG REWRITE") == 1
        r.config_set("hz", "12")
        assert r.config_rewrite()
        again = conf.read_text().splitlines()
        assert again.count("# Generated by CONFIG REWRITE") == 1 and "hz 12" in again
        r.close()
    finally:
        srv.stop()
    restarted = Server(config_file=str(conf), port=port, dir=str(tmp_path))
    try:
        r = restarted.client()
        assert r.config_get("maxmemory") == {"maxmemory": str(2 << 30)}
        assert r.config_get("latency-monitor-threshold") == {"latency-monitor-threshold": "7"}
        assert r.config_get("hz") == {"hz": "12"}
        r.close()
    finally:
        restarted.stop()


def test_config_rewrite_marks_unknown_lines(tmp_path):
    from shardd import config
    cfg = config.load(None, ["--port", "7000"])
    out = config.rewrite_text(cfg, "port 6379\nno-such-directive-anymore yes\n   indented-junk\n#c\n\n\n\nhz 10\n")
    lines = out.splitlines()
    assert lines[:6] == ["port 7000", "# ??? no-such-directive-anymore yes", "# ??? indented-junk", "#c", "",
                         "hz 10"]


def test_config_rewrite_without_config_file(srv, r):
    with pytest.raises(redis.ResponseError, match="^The server is running without a config file$"):
        r.config_rewrite()


# --- CLIENT PAUSE / UNPAUSE / REPLY ---------------------------------------------------------------------

def send_later(srv, *args) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(encode(*args))
    return s


def replied(s: socket.socket, wait: float = 0.3) -> bytes:
    s.settimeout(wait)
    try:
        return s.recv(1000)
    except socket.timeout:
        return b""


def test_client_pause_write(srv, r):
    r.set("k", "v")
    assert r.execute_command("CLIENT", "PAUSE", 100000, "WRITE") == b"OK"
    clients = info_lines(r, "clients")
    assert clients["paused_reason"] == "client_pause" and clients["paused_actions"] == "write"
    assert 0 < int(clients["paused_timeout_milliseconds"]) <= 100000
    writer = send_later(srv, "SET", "k", "w")
    pfcount = send_later(srv, "PFCOUNT", "hll")       # may replicate: held too
    reader = send_later(srv, "GET", "k")
    assert replied(reader) == b"$1\r\nv\r\n"
    assert replied(writer) == b"" and replied(pfcount) == b""
    assert wait_until(lambda: r.info("clients")["blocked_clients"] == 2, 3)
    assert "flags=b" in r.execute_command("CLIENT", "LIST").decode()
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("SET", "k")                 # syntax errors answer at once
    assert r.execute_command("CLIENT", "UNPAUSE") == b"OK"
    assert replied(writer, 5) == b"+OK\r\n" and replied(pfcount, 5) == b":0\r\n"
    assert r.get("k") == b"w"
    assert info_lines(r, "clients")["paused_actions"] == "none"
    writer.close(), pfcount.close(), reader.close()


def test_client_pause_all_and_expiry(srv, r):
    start = time.monotonic()
    assert r.execute_command("CLIENT", "PAUSE", 300, "ALL") == b"OK"
    assert r.execute_command("CLIENT", "PAUSE", 20, "WRITE") == b"OK"     # ALL and the later end stay
    other = srv.client()
    try:
        assert other.get("nothing") is None
        assert time.monotonic() - start >= 0.25
        # MULTI with a write: EXEC waits for the end of a WRITE pause.
        pipe = other.pipeline()
        assert r.execute_command("CLIENT", "PAUSE", 300, "WRITE") == b"OK"
        t = time.monotonic()
        pipe.set("m", "1").get("m")
        assert pipe.execute() == [True, b"1"]
        assert time.monotonic() - t >= 0.2
    finally:
        other.close()


def test_client_pause_errors(srv, r):
    for args, message in (((1000, "BOGUS"), "CLIENT PAUSE mode must be WRITE or ALL"),
                          (("x",), "timeout is not an integer or out of range"),
                          ((-1,), "timeout is negative")):
        with pytest.raises(redis.ResponseError, match=re.escape(message)):
            r.execute_command("CLIENT", "PAUSE", *args)
    assert r.execute_command("CLIENT", "PAUSE", 0) == b"OK"
    assert r.ping()


def test_client_reply(srv, r):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        s.sendall(b"CLIENT REPLY SKIP\r\nSET x 1\r\nGET x\r\nCLIENT REPLY OFF\r\nPING\r\nGET x\r\nBADCMD\r\n"
                  b"CLIENT REPLY ON\r\nPING\r\n")
        assert read_exact(s, len(b"$1\r\n1\r\n+OK\r\n+PONG\r\n"), 5) == b"$1\r\n1\r\n+OK\r\n+PONG\r\n"
        s.sendall(encode("CLIENT", "REPLY", "SKIP") + encode("INCR", "x") + encode("INCR", "x"))
        assert read_exact(s, 4, 5) == b":3\r\n"
        s.sendall(encode("CLIENT", "REPLY", "MAYBE"))
        assert read_exact(s, 19, 5) == b"-ERR syntax error\r\n"
    finally:
        s.close()


@pytest.fixture(scope="module")
def two_proxies():
    s = Server("--io-threads", "2")
    yield s
    s.stop()


def test_client_pause_holds_clients_of_every_proxy(two_proxies):
    clients = [two_proxies.client()]
    pauser = clients[0]
    others = []
    while not others and len(clients) < 40:      # client ids are odd on one proxy, even on the other
        clients.append(two_proxies.client())
        if clients[-1].client_id() % 2 != pauser.client_id() % 2:
            others.append(clients[-1])
    try:
        assert others, "no client on the other proxy"
        assert pauser.execute_command("CLIENT", "PAUSE", 300, "WRITE") == b"OK"
        t = time.monotonic()
        assert others[0].set("p", "1")
        assert time.monotonic() - t >= 0.2
        assert others[0].get("p") == b"1"
    finally:
        for c in clients:
            c.close()


# --- DEBUG ----------------------------------------------------------------------------------------

def test_debug_needs_enable_debug_command(tmp_path):
    for setting, allowed in (("no", False), ("local", True)):
        s = Server("--enable-debug-command", setting, workers=1)
        try:
            c = s.client()
            if allowed:
                assert c.execute_command("DEBUG", "SLEEP", "0") == b"OK"
            else:
                with pytest.raises(redis.ResponseError) as exc:
                    c.execute_command("DEBUG", "SLEEP", "0")
                assert str(exc.value) == DEBUG_NOT_ALLOWED
            with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'debug' command"):
                c.execute_command("DEBUG")
            c.close()
        finally:
            s.stop()


def test_debug_subcommands(srv, r):
    start = time.monotonic()
    assert r.execute_command("DEBUG", "SLEEP", "0.1") == b"OK"
    assert time.monotonic() - start >= 0.1
    r.set("s", "hello")
    # Valkey's line (what redis-server 7.0 prints too, with enable-debug-command set).
    shape = r"Value at:0x[0-9a-f]+ refcount:1 encoding:embstr serializedlength:6 lru:\d+ lru_seconds_idle:\d+"
    assert re.fullmatch(shape, r.execute_command("DEBUG", "OBJECT", "s").decode())
    r.set("n", "42")
    assert " refcount:2147483647 encoding:int " in r.execute_command("DEBUG", "OBJECT", "n").decode()
    assert "serializedlength" not in r.execute_command("DEBUG", "OBJECT", "s", "fast").decode()
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        r.execute_command("DEBUG", "OBJECT", "missing")
    r.hset("h", "f", "v")
    assert r.execute_command("DEBUG", "LISTPACK", "h") == b"Listpack structure printed on stdout"
    with pytest.raises(redis.ResponseError, match="Not a listpack encoded object"):
        r.execute_command("DEBUG", "LISTPACK", "s")
    assert r.execute_command("DEBUG", "POPULATE", 100) == b"OK"
    assert r.dbsize() == 103 and r.get("key:7") == b"value:7"
    assert r.execute_command("DEBUG", "POPULATE", 10, "p", 3) == b"OK" and r.get("p:4") == b"val"
    assert r.execute_command("DEBUG", "JMAP") == b"OK"
    assert r.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100mb") == b"OK"
    with pytest.raises(redis.ResponseError, match="memory value bigger than 1 and smaller than 4gb"):
        r.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "5gb")
    assert r.execute_command("DEBUG", "STRINGMATCH-LEN") == b"Apparently Valkey did not crash: test passed"
    assert r.execute_command("DEBUG", "RELOAD") == b"OK"
    with pytest.raises(redis.ResponseError, match="DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE"):
        r.execute_command("DEBUG", "RELOAD", "FAST")
    before = info_lines(r, "replication")["master_replid"]
    assert r.execute_command("DEBUG", "CHANGE-REPL-ID") == b"OK"
    after = info_lines(r, "replication")["master_replid"]
    assert re.fullmatch(r"[0-9a-f]{40}", after) and after != before
    with pytest.raises(redis.ResponseError, match="^Boom$"):
        r.execute_command("DEBUG", "ERROR", "Boom")
    with pytest.raises(redis.ResponseError, match="unknown subcommand or wrong number of arguments for 'NOPE'. Try DEBUG HELP."):
        r.execute_command("DEBUG", "NOPE")
    assert r.execute_command("DEBUG", "HELP")[0] == b"DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"


def test_debug_set_active_expire(srv, r):
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"OK"
    try:
        r.set("gone", "v", px=50)
        time.sleep(0.4)
        assert r.dbsize() == 1                       # expired, but nobody removed it
    finally:
        assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1") == b"OK"
    assert wait_until(lambda: r.dbsize() == 0, 5)


# --- buffer limits -------------------------------------------------------------------------------

def listed(r, s: socket.socket) -> bool:
    """Whether the server still has the connection of socket s among its clients."""
    addr = "addr=%s:%d " % s.getsockname()
    return addr in r.execute_command("CLIENT", "LIST").decode()


@pytest.mark.parametrize("bulk_len", [5_000_000, 50_000_000])      # 7 digits: hiredis, 8: strict parser
def test_query_buffer_limit(srv, r, bulk_len):
    r.config_set("client-query-buffer-limit", "1mb")
    try:
        before = int(info_lines(r, "stats")["client_query_buffer_limit_disconnections"])
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$%d\r\n" % bulk_len)
        try:
            for _ in range(30):
                s.sendall(b"x" * 65536)
        except OSError:
            pass
        assert closed_by_server(s)
        s.close()
        assert int(info_lines(r, "stats")["client_query_buffer_limit_disconnections"]) == before + 1
        assert r.get("q") is None and r.ping()
        assert "Closing client that reached max query buffer length" in Path(srv.log_path).read_text()
        # A partial command under the limit shows in CLIENT LIST's qbuf.
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$%d\r\n" % bulk_len + b"y" * 100_000)
        assert wait_until(lambda: re.search(r"qbuf=(\d{6,}) ", r.execute_command("CLIENT", "LIST").decode()), 3)
        s.close()
    finally:
        r.config_set("client-query-buffer-limit", "1gb")


def server_rss(srv) -> int:
    return sum(p.memory_info().rss for p in srv.children())


def test_output_buffer_limit_keeps_memory_bounded(srv, r):
    """A client that asks for 1 GB of replies and reads none is disconnected at its limit;
    the server's memory grows by a small part of that."""
    r.config_set("client-output-buffer-limit", "normal 2mb 1mb 10")
    try:
        r.set("big", b"x" * 100_000)
        base = server_rss(srv)
        before = int(info_lines(r, "stats")["client_output_buffer_limit_disconnections"])
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = encode("GET", "big") * 50
        sent = 0
        try:
            for _ in range(200):                       # 10000 GETs: 1 GB of replies
                s.sendall(request)
                sent += 50
        except OSError:
            pass
        assert wait_until(lambda: int(info_lines(r, "stats")["client_output_buffer_limit_disconnections"])
                          == before + 1, 10)
        # Gone from the server (the kernel may still hold what was written before the close).
        assert wait_until(lambda: not listed(r, s), 5)
        s.close()
        assert server_rss(srv) - base < 200 << 20
        assert "scheduled to be closed ASAP for overcoming of output buffer limits" in Path(srv.log_path).read_text()
        assert r.ping()
    finally:
        r.config_set("client-output-buffer-limit", "normal 0 0 0")


def test_output_soft_limit_needs_its_seconds(srv, r):
    r.config_set("client-output-buffer-limit", "normal 0 256kb 1")
    try:
        r.set("big", b"x" * 2_000_000)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        addr = "%s:%d" % s.getsockname()
        s.sendall(encode("GET", "big") * 8)        # more than the kernel's socket buffers take

        def line() -> str:
            found = [c for c in r.execute_command("CLIENT", "LIST").decode().splitlines() if f"addr={addr} " in c]
            return found[0] if found else ""
        time.sleep(0.4)
        assert re.search(r"omem=\d{6,}", line())           # over the soft limit, not for long enough
        assert wait_until(lambda: line() == "", 4)
        s.close()
        # One that reads its reply in time stays.
        c = srv.client()
        assert len(c.get("big")) == 2_000_000 and c.ping()
        c.close()
    finally:
        r.config_set("client-output-buffer-limit", "normal 0 0 0")


# --- protected mode ------------------------------------------------------------------------------

def test_protected_mode_decision():
    from shardd.proxy.connection import protected_mode_denies
    on = {"protected-mode": True, "requirepass": ""}
    assert protected_mode_denies(on, ("192.0.2.7", 5000))
    assert protected_mode_denies(on, ("fd00::9", 5000, 0, 0))
    assert not protected_mode_denies(on, ("127.0.0.1", 5000))
    assert not protected_mode_denies(on, ("127.9.9.9", 5000))
    assert not protected_mode_denies(on, ("::1", 5000, 0, 0))
    assert not protected_mode_denies(on, "/tmp/shardd.sock")            # a unix socket peer
    assert not protected_mode_denies({**on, "requirepass": "pw"}, ("192.0.2.7", 5000))
    assert not protected_mode_denies({**on, "protected-mode": False}, ("192.0.2.7", 5000))


def outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


@pytest.mark.skipif(outside_address() is None, reason="no non-loopback address on this machine")
def test_protected_mode_denies_outside_clients():
    address = outside_address()
    s = Server("--bind", "0.0.0.0", workers=1)
    try:
        with socket.create_connection((address, s.port), timeout=5) as c:
            reply = read_exact(c, 2000, 5)
        assert reply.startswith(b"-DENIED Valkey is running in protected mode because protected mode is enabled")
        assert reply.endswith(b"to start accepting connections from the outside.\r\n")
        local = s.client()
        assert local.ping()
        assert local.info("stats")["rejected_connections"] == 1
        assert local.config_set("protected-mode", "no")
        with socket.create_connection((address, s.port), timeout=5) as c:
            c.sendall(b"PING\r\n")
            assert read_exact(c, 7, 5) == b"+PONG\r\n"
        local.close()
    finally:
        s.stop()


def test_statistics_of_every_proxy(two_proxies):
    """Commands answered by either proxy show in INFO and SLOWLOG asked from either."""
    clients = [two_proxies.client()]
    first = clients[0]
    while len(clients) < 40 and clients[-1].client_id() % 2 == first.client_id() % 2:
        clients.append(two_proxies.client())      # client ids are odd on one proxy, even on the other
    try:
        other = clients[-1]
        assert other.client_id() % 2 != first.client_id() % 2, "no client on the other proxy"
        first.config_resetstat()
        first.config_set("slowlog-log-slower-than", 0)
        first.slowlog_reset()
        for c in (first, other):
            c.execute_command("CLIENT", "SETNAME", f"n{c.client_id()}")
            c.echo("hello")
            c.set("x", "1")
        first.config_set("slowlog-log-slower-than", -1)
        for asker in (first, other):
            calls = {k: v["calls"] for k, v in asker.info("commandstats").items()}
            assert calls["cmdstat_echo"] == 2 and calls["cmdstat_set"] == 2
            entries = [e for e in asker.execute_command("SLOWLOG", "GET", -1) if e[3][0] in (b"ECHO", b"SET")]
            assert sorted(e[5] for e in entries) == sorted([f"n{c.client_id()}".encode() for c in (first, other)] * 2)
            assert len({e[0] for e in entries}) == 4
    finally:
        for c in clients:
            c.close()


def test_commands_that_ask_every_process_refuse_to_run_inside_exec(srv, r):
    """Inside EXEC every queued command answers at once; those that must ask the other proxies
    or the workers first refuse there (their reply would come after EXEC's otherwise)."""
    pipe = r.pipeline()
    pipe.execute_command("CLIENT", "LIST").info().execute_command("SLOWLOG", "LEN").set("a", "1").get("a")
    replies = pipe.execute(raise_on_error=False)
    assert [type(x).__name__ for x in replies[:3]] == ["ResponseError"] * 3
    assert "cannot run inside a transaction" in str(replies[0])
    assert replies[3:] == [True, b"1"]
    assert r.ping()
