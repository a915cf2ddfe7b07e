"""The wire protocol against a real server: RESP2/RESP3, inline commands, pipelining, protocol
errors, big values, malformed input. Expected bytes are Valkey 8.0's."""
from __future__ import annotations

import random
import socket
import threading
import time

import hiredis
import pytest

from helpers import encode, keys_on, read_exact, read_reply, worker_of
from server import Server


# --- helpers ------------------------------------------------------------------------------

def talk(sock: socket.socket, data: bytes, expected: bytes, timeout: float = 10.0) -> None:
    sock.sendall(data)
    got = read_exact(sock, len(expected), timeout)
    assert got == expected


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes the connection (EOF or reset) with nothing more sent."""
    sock.settimeout(timeout)
    try:
        extra = sock.recv(4096)
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    assert extra == b"", f"unexpected bytes before close: {extra!r}"
    return True


def silent(sock: socket.socket, wait: float = 0.3) -> bool:
    """True when nothing arrives for `wait` seconds (and the connection stays open)."""
    sock.settimeout(wait)
    try:
        sock.recv(4096)
    except socket.timeout:
        return True
    return False


# --- RESP2 / RESP3 -------------------------------------------------------------------------

HELLO_FIELDS = [b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"]


def test_resp2_basic_replies(server, r):
    with server.connect() as s:
        talk(s, encode("SET", "k", "v"), b"+OK\r\n")
        talk(s, encode("GET", "k"), b"$1\r\nv\r\n")
        talk(s, encode("GET", "missing"), b"$-1\r\n")
        talk(s, encode("INCR", "n"), b":1\r\n")
        talk(s, encode("MGET", "k", "missing"), b"*2\r\n$1\r\nv\r\n$-1\r\n")
        talk(s, encode("CONFIG", "GET", "maxmemory"), b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")


def test_hello_2_is_a_flat_array(server):
    with server.connect() as s:
        s.sendall(encode("HELLO", "2"))
        reader = hiredis.Reader()
        reply = read_reply(s, reader)
        assert isinstance(reply, list) and len(reply) == 14
        assert reply[0::2] == HELLO_FIELDS
        fields = dict(zip(reply[0::2], reply[1::2]))
        assert fields[b"server"] == b"valkey"
        assert fields[b"proto"] == 2
        assert fields[b"mode"] == b"standalone"
        assert fields[b"role"] == b"master"
        assert fields[b"modules"] == []


def test_hello_3_auth_setname_raw(server, r):
    """HELLO 3 with AUTH and SETNAME answers a map; the connection then speaks RESP3."""
    with server.connect() as s:
        s.sendall(encode("HELLO", "3", "AUTH", "default", "anything", "SETNAME", "proto-test"))
        head = read_exact(s, 4)
        assert head == b"%7\r\n"
        reader = hiredis.Reader()
        reader.feed(b"*14\r\n")   # read the map's body as a flat array
        body = read_reply(s, reader)
        fields = dict(zip(body[0::2], body[1::2]))
        assert body[0::2] == HELLO_FIELDS
        assert fields[b"proto"] == 3 and fields[b"server"] == b"valkey"
        client_id = fields[b"id"]
        talk(s, encode("CLIENT", "GETNAME"), b"$10\r\nproto-test\r\n")
        talk(s, encode("CLIENT", "ID"), b":%d\r\n" % client_id)
        talk(s, encode("GET", "missing"), b"_\r\n")
        talk(s, encode("MGET", "missing"), b"*1\r\n_\r\n")
        talk(s, encode("CONFIG", "GET", "maxmemory"), b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")
        # Back to RESP2 on the same connection.
        s.sendall(encode("HELLO", "2"))
        assert read_exact(s, 5) == b"*14\r\n"
        read_reply(s, _reader_with(b"*13\r\n"))
        talk(s, encode("GET", "missing"), b"$-1\r\n")


def _reader_with(prefix: bytes) -> hiredis.Reader:
    reader = hiredis.Reader()
    reader.feed(prefix)
    return reader


def test_hello_errors(server):
    with server.connect() as s:
        talk(s, encode("HELLO", "4"), b"-NOPROTO unsupported protocol version\r\n")
        talk(s, encode("HELLO", "1"), b"-NOPROTO unsupported protocol version\r\n")
        talk(s, encode("HELLO", "x"), b"-ERR Protocol version is not an integer or out of range\r\n")
        talk(s, encode("HELLO", "3", "FOO"), b"-ERR Syntax error in HELLO option 'FOO'\r\n")
        talk(s, encode("HELLO", "3", "AUTH", "default"), b"-ERR Syntax error in HELLO option 'AUTH'\r\n")
        talk(s, encode("HELLO", "3", "SETNAME"), b"-ERR Syntax error in HELLO option 'SETNAME'\r\n")
        talk(s, encode("HELLO", "3", "SETNAME", "a b"),
             b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
        # None of the failed HELLOs switched the protocol.
        talk(s, encode("GET", "missing"), b"$-1\r\n")


def test_redis_py_protocol_3(server, r):
    r.set("k3", "v")
    c3 = server.client(protocol=3)
    try:
        hello = c3.execute_command("HELLO", "3", "SETNAME", "py3")
        assert hello[b"proto"] == 3
        assert hello[b"server"] == b"valkey"
        assert c3.client_getname() == b"py3"
        assert c3.get("k3") == b"v"
        assert c3.get("missing") is None
        assert c3.config_get("maxmemory") == {"maxmemory": "0"}
        assert c3.mget("k3", "missing") == [b"v", None]
        info = c3.client_info()
        assert info["resp"] == "3"
    finally:
        c3.close()


# --- inline commands -------------------------------------------------------------------------

def test_inline_commands(server, r):
    with server.connect() as s:
        talk(s, b"PING\r\n", b"+PONG\r\n")
        talk(s, b'SET a "b c"\r\n', b"+OK\r\n")
        talk(s, b"GET a\r\n", b"$3\r\nb c\r\n")
        talk(s, b"ECHO 'x'\r\n", b"$1\r\nx\r\n")
        talk(s, b'ECHO "\\x41\\n"\r\n', b"$2\r\nA\n\r\n")
        talk(s, b"ECHO 'it\\'s'\r\n", b"$4\r\nit's\r\n")
        talk(s, b"ECHO \"\"\r\n", b"$0\r\n\r\n")
        talk(s, b"\r\n\r\n   PING   \n", b"+PONG\r\n")      # blank lines are skipped
        talk(s, b"ECHO a\nECHO b\n", b"$1\r\na\r\n$1\r\nb\r\n")
    assert r.get("a") == b"b c"


@pytest.mark.parametrize("line", [b'SET a "b\r\n', b"ECHO 'a\r\n", b'SET k "b"c\r\n'])
def test_inline_unbalanced_quotes_closes(server, line):
    with server.connect() as s:
        talk(s, line, b"-ERR Protocol error: unbalanced quotes in request\r\n")
        assert is_closed(s)


def test_inline_and_multibulk_mixed_in_one_send(server, r):
    data = (b"PING\r\n" + encode("SET", "mix", "1") + b"INCR mix\r\n" + encode("ECHO", "hi")
            + b"GET mix\r\n" + encode("PING"))
    expected = b"+PONG\r\n+OK\r\n:2\r\n$2\r\nhi\r\n$1\r\n2\r\n+PONG\r\n"
    with server.connect() as s:
        talk(s, data, expected)
        # And split at awkward places: every byte on its own.
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
        assert read_exact(s, len(expected)) == expected


def test_command_names_are_case_insensitive(server, r):
    with server.connect() as s:
        talk(s, encode("sEt", "ci", "v"), b"+OK\r\n")
        talk(s, encode("gEt", "ci"), b"$1\r\nv\r\n")
        talk(s, b"gEt ci\r\n", b"$1\r\nv\r\n")
        talk(s, b"pInG\r\n", b"+PONG\r\n")
        talk(s, encode("cOnFiG", "gEt", "maxmemory"), b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")
        talk(s, encode("MgEt", "ci"), b"*1\r\n$1\r\nv\r\n")


# --- error strings ---------------------------------------------------------------------------

@pytest.mark.parametrize("request_bytes,reply", [
    (b"foo a b\r\n", b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
    (encode("foo", "a", "b"), b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
    (b"foo\r\n", b"-ERR unknown command 'foo', with args beginning with: \r\n"),
    (encode("GET"), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (encode("GET", "a", "b"), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (encode("SET", "a"), b"-ERR wrong number of arguments for 'set' command\r\n"),
    (encode("MGET"), b"-ERR wrong number of arguments for 'mget' command\r\n"),
    (encode("ECHO"), b"-ERR wrong number of arguments for 'echo' command\r\n"),
    (encode("PING", "a", "b"), b"-ERR wrong number of arguments for 'ping' command\r\n"),
    (encode("CONFIG", "GET"), b"-ERR wrong number of arguments for 'config|get' command\r\n"),
    (encode("CLIENT", "SETNAME"), b"-ERR wrong number of arguments for 'client|setname' command\r\n"),
    (encode("CLIENT", "FOO"), b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
])
def test_error_strings(server, request_bytes, reply):
    with server.connect() as s:
        talk(s, request_bytes, reply)
        talk(s, b"PING\r\n", b"+PONG\r\n")     # the connection stays usable


@pytest.mark.parametrize("request_bytes,reply", [
    (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
    (b"*2\r\n$4\r\nPING\r\n-x\r\n", b"-ERR Protocol error: expected '$', got '-'\r\n"),
    (b"*2\r\n$4\r\nECHO\r\n,1.5\r\n", b"-ERR Protocol error: expected '$', got ','\r\n"),
    (b"*2\r\n$4\r\nECHO\r\n_\r\n", b"-ERR Protocol error: expected '$', got '_'\r\n"),
    (b"*1\r\n*1\r\n$4\r\nPING\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
    (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*01\r\n$4\r\nPING\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*2\r\n$3\r\nGET\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*2\r\n$4\r\nECHO\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$04\r\nPING\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$600000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    # Commands before the error are answered first.
    (b"PING\r\n" + encode("ECHO", "x") + b"*1\r\n:5\r\n",
     b"+PONG\r\n$1\r\nx\r\n-ERR Protocol error: expected '$', got ':'\r\n"),
])
def test_protocol_errors_close_the_connection(server, request_bytes, reply):
    with server.connect() as s:
        talk(s, request_bytes, reply)
        assert is_closed(s)


@pytest.mark.parametrize("request_bytes,kind", [
    pytest.param(b"*1\r\n+PING\r\n", b"+"),
    pytest.param(b"*2\r\n$4\r\nECHO\r\n=7\r\ntxt:abc\r\n", b"="),
    pytest.param(b"*2\r\n$4\r\nECHO\r\n(12345\r\n", b"("),
    pytest.param(b"*2\r\n$4\r\nECHO\r\n%1\r\n", b"%"),
    pytest.param(b"*1\r\n*1\r\n", b"*"),
])
def test_non_bulk_argument_fails_at_once(server, request_bytes, kind):
    with server.connect() as s:
        talk(s, request_bytes, b"-ERR Protocol error: expected '$', got '%b'\r\n" % kind, timeout=1)
        assert is_closed(s)


def test_protocol_error_reports_the_raw_byte(server):
    with server.connect() as s:
        talk(s, b"*1\r\n\xff\r\n", b"-ERR Protocol error: expected '$', got '\xff'\r\n", timeout=2)


# --- proto-max-bulk-len ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_bulk_server():
    srv = Server("--proto-max-bulk-len", "1mb")
    yield srv
    srv.stop()


def test_bulk_header_over_limit_refused_immediately(small_bulk_server):
    with small_bulk_server.connect() as s:
        talk(s, b"*2\r\n$3\r\nGET\r\n$2000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n",
             timeout=1.5)
        assert is_closed(s, 3)


def test_bulk_header_over_limit_long_header(small_bulk_server):
    with small_bulk_server.connect() as s:
        talk(s, b"*2\r\n$3\r\nGET\r\n$20000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n",
             timeout=3)
        assert is_closed(s, 3)


def test_an_inline_clients_kept_parser_takes_a_changed_bulk_limit(small_bulk_server):
    """An inline read leaves the strict parser kept for the connection's next one; a
    proto-max-bulk-len set meanwhile applies to it."""
    c = small_bulk_server.client()
    try:
        assert c.config_set("proto-max-bulk-len", "2mb")
        with small_bulk_server.connect() as s:
            talk(s, b"PING\r\n", b"+PONG\r\n")
            assert c.config_set("proto-max-bulk-len", "1mb")
            talk(s, b"*2\r\n$4\r\nECHO\r\n$1500000\r\n", b"-ERR Protocol error: invalid bulk length\r\n",
                 timeout=3)
            assert is_closed(s, 3)
    finally:
        c.config_set("proto-max-bulk-len", "1mb")
        c.close()


def test_bulk_at_the_limit_is_accepted(small_bulk_server):
    value = b"v" * (1 << 20)
    c = small_bulk_server.client()
    try:
        assert c.set("atlimit", value)
        assert c.strlen("atlimit") == 1 << 20
        assert c.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": "1048576"}
    finally:
        c.close()


# --- pipelining ------------------------------------------------------------------------------

class Model:
    """What Valkey answers to the pipeline's commands (strings only, two databases)."""

    def __init__(self) -> None:
        self.dbs: list[dict[bytes, bytes]] = [{}, {}]
        self.db = 0

    def run(self, argv: list[bytes]):
        name = argv[0].upper()
        d = self.dbs[self.db]
        if name == b"SET":
            d[argv[1]] = argv[2]
            return b"OK"
        if name == b"GET":
            return d.get(argv[1])
        if name == b"INCR":
            old = d.get(argv[1], b"0")
            try:
                n = int(old)
                if str(n).encode() != old:
                    raise ValueError
            except ValueError:
                return hiredis.ReplyError("ERR value is not an integer or out of range")
            d[argv[1]] = str(n + 1).encode()
            return n + 1
        if name == b"DEL":
            return sum(1 for k in set(argv[1:]) if d.pop(k, None) is not None)
        if name == b"EXISTS":
            return sum(1 for k in argv[1:] if k in d)
        if name == b"MGET":
            return [d.get(k) for k in argv[1:]]
        if name == b"APPEND":
            d[argv[1]] = d.get(argv[1], b"") + argv[2]
            return len(d[argv[1]])
        if name == b"STRLEN":
            return len(d.get(argv[1], b""))
        if name == b"PING":
            return b"PONG" if len(argv) == 1 else argv[1]
        if name == b"ECHO":
            return argv[1]
        if name == b"SELECT":
            self.db = int(argv[1])
            return b"OK"
        if name == b"DBSIZE":
            return len(d)
        if name == b"NOSUCHCMD":
            return hiredis.ReplyError("ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' ")
        raise AssertionError(name)


def _pipeline_commands(rng: random.Random, n: int, full: bool) -> list[list[bytes]]:
    """n commands over keys of both workers; `full` adds multi-key commands, SELECT and
    error replies between them."""
    strs = keys_on(0, 8, "pipe:s:") + keys_on(1, 8, "pipe:s:")
    nums = keys_on(0, 4, "pipe:n:") + keys_on(1, 4, "pipe:n:")
    everything = strs + nums
    cmds: list[list[bytes]] = []
    while len(cmds) < n:
        i = len(cmds)
        roll = rng.random()
        k = rng.choice(strs).encode()
        if roll < 0.18:
            argv = [b"SET", k, b"v%d" % i]
        elif roll < 0.33:
            argv = [b"GET", rng.choice(everything).encode()]
        elif roll < 0.45:
            argv = [b"INCR", rng.choice(nums + strs[:1]).encode()]
        elif roll < 0.52:
            argv = [b"DEL"] + [rng.choice(everything).encode() for _ in range(rng.randint(1, 3))]
        elif roll < 0.62:
            argv = [b"MGET"] + [rng.choice(everything).encode() for _ in range(rng.randint(1, 5))]
        elif roll < 0.67:
            argv = [b"EXISTS"] + [rng.choice(everything).encode() for _ in range(rng.randint(1, 3))]
        elif roll < 0.72:
            argv = [b"APPEND", k, b"+"]
        elif roll < 0.75:
            argv = [b"STRLEN", k]
        elif roll < 0.80:
            argv = [b"PING"] if rng.random() < 0.5 else [b"PING", b"p%d" % i]
        elif roll < 0.85:
            argv = [b"ECHO", b"e%d" % i]
        elif roll < 0.92:
            argv = [b"SELECT", rng.choice([b"0", b"1"])]
        elif roll < 0.95:
            argv = [b"DBSIZE"]
        else:
            argv = [b"NOSUCHCMD", b"x"]
        if not full and argv[0] in (b"DEL", b"MGET", b"EXISTS", b"SELECT", b"DBSIZE", b"NOSUCHCMD"):
            continue
        cmds.append(argv)
    return cmds


def _aligned_chunks(cmds: list[list[bytes]], size: int = 8192) -> list[tuple[bytes, int]]:
    """The requests packed into writes of at most ~size bytes that end on a command boundary,
    each with its number of commands."""
    chunks, cur = [], []
    n = 0
    for argv in cmds:
        req = encode(*argv)
        if cur and n + len(req) > size:
            chunks.append((b"".join(cur), len(cur)))
            cur, n = [], 0
        cur.append(req)
        n += len(req)
    if cur:
        chunks.append((b"".join(cur), len(cur)))
    return chunks


def _send_aligned(sock: socket.socket, chunks: list[bytes], sent: list[int], done: threading.Event,
                  window: int = 4) -> None:
    """Write the chunks keeping at most `window` of them unanswered, so each read of the server
    ends where one of our writes ended."""
    for i, chunk in enumerate(chunks):
        while i - done.counter >= window:        # type: ignore[attr-defined]
            if done.wait(0.001):
                return
        sock.sendall(chunk)
        sent.append(i)


def _run_pipeline(server, cmds: list[list[bytes]], timeout: float = 15.0,
                  aligned: bool = False) -> list:
    """Send the commands pipelined from a thread and read the replies in order: in one write,
    or (aligned) in command-aligned writes of 8 KiB with a few of them in flight."""
    payload = b"".join(encode(*argv) for argv in cmds)
    with server.connect() as s:
        if aligned:
            chunks = _aligned_chunks(cmds)
            ends, total = [], 0
            for _, count in chunks:
                total += count
                ends.append(total)
            stop = threading.Event()
            stop.counter = 0                       # chunks whose replies have all arrived
            sender = threading.Thread(target=_send_aligned, args=(s, [c for c, _ in chunks], [], stop),
                                      daemon=True)
        else:
            sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        reader = hiredis.Reader()
        got = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < len(cmds):
                reply = reader.gets()
                if reply is not False:
                    got.append(reply)
                    if aligned:
                        while stop.counter < len(ends) and ends[stop.counter] <= len(got):
                            stop.counter += 1
                    continue
                left = deadline - time.monotonic()
                assert left > 0, f"only {len(got)} of {len(cmds)} replies in time"
                s.settimeout(left)
                try:
                    chunk = s.recv(1 << 20)
                except socket.timeout:
                    chunk = None
                assert chunk, f"no more replies after {len(got)} of {len(cmds)}"
                reader.feed(chunk)
        finally:
            if aligned:
                stop.set()
        sender.join(10)
    return got


def _check_pipeline(server, cmds: list[list[bytes]], timeout: float = 15.0, aligned: bool = False) -> None:
    model = Model()
    expected = [model.run(argv) for argv in cmds]
    got = _run_pipeline(server, cmds, timeout, aligned)
    for i, (argv, want, have) in enumerate(zip(cmds, expected, got)):
        if isinstance(want, hiredis.ReplyError):
            assert isinstance(have, hiredis.ReplyError) and str(have) == str(want), (i, argv, have)
        else:
            assert have == want, (i, argv, have, want)
    # The workers agree with the model afterwards.
    names = {argv[1] for argv in cmds if argv[0] in (b"SET", b"INCR", b"APPEND")}
    for db in (0, 1):
        c = server.client(db=db)
        try:
            stored = {k: c.get(k) for k in names}
            assert {k: v for k, v in stored.items() if v is not None} == model.dbs[db]
        finally:
            c.close()


def test_pipeline_10000_single_key_and_local_commands(server, r):
    """SET/GET/INCR/APPEND/STRLEN/PING/ECHO over both workers, pipelined, replies in order.
    The writes end on command boundaries: a read that ends inside a request is a known bug
    of its own (test_pipeline_split_at_every_byte)."""
    cmds = _pipeline_commands(random.Random(99), 10_000, full=False)
    assert {worker_of(argv[1]) for argv in cmds if argv[0] == b"GET"} == {0, 1}
    _check_pipeline(server, cmds, aligned=True)


def test_pipeline_10000_mixed_commands_aligned_writes(scratch_server):
    """Every command kind of the full pipeline, in command-aligned writes."""
    c = scratch_server.client()
    c.flushall()
    c.close()
    cmds = _pipeline_commands(random.Random(4321), 10_000, full=True)
    _check_pipeline(scratch_server, cmds, aligned=True)


def test_pipeline_10000_mixed_commands(scratch_server):
    """SET/GET/INCR/DEL/MGET/EXISTS/APPEND/STRLEN/PING/ECHO/SELECT/DBSIZE and unknown commands,
    keys on both workers, one send, every reply checked in order."""
    c = scratch_server.client()
    c.flushall()
    c.close()
    _check_pipeline(scratch_server, _pipeline_commands(random.Random(1234), 10_000, full=True), 6)


# Targeted forms of dispatch bugs, each in one write (so in one read of the proxy).

@pytest.fixture(scope="module")
def scratch_server():
    """A server for the tests that are known to crash or wedge workers."""
    srv = Server()
    yield srv
    srv.stop()


def _one_write(server, cmds: list[list], n_replies: int, timeout: float = 1.5) -> list:
    with server.connect() as s:
        s.sendall(b"".join(encode(*argv) for argv in cmds))
        reader = hiredis.Reader()
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n_replies:
            reply = reader.gets()
            if reply is not False:
                got.append(reply)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            reader.feed(chunk)
        return got


@pytest.mark.parametrize("first", [["DEL", "{K}"], ["MGET", "{K}"], ["EXISTS", "{K}"],
                                   ["MSET", "{K}", "1"], ["DBSIZE"]])
def test_multikey_then_single_key_in_one_read(scratch_server, first):
    k = keys_on(0, 1, "mk:")[0]
    pids = sorted(p.pid for p in scratch_server.children())
    first = [a.replace("{K}", k) for a in first]
    got = _one_write(scratch_server, [first, ["SET", k, "v"], ["GET", k]], 3)
    assert got[1:] == [b"OK", b"v"]
    assert sorted(p.pid for p in scratch_server.children()) == pids


def test_key_command_after_select_in_one_read(scratch_server):
    k0, k1 = keys_on(0, 1, "sel:")[0], keys_on(1, 1, "sel:")[0]
    got = _one_write(scratch_server, [["SET", k1, "a"], ["SELECT", "1"], ["SET", k0, "b"],
                                      ["GET", k0]], 4)
    assert got == [b"OK", b"OK", b"OK", b"b"]


def test_error_reply_between_two_commands_of_one_worker(scratch_server):
    k = keys_on(0, 1, "ord:")[0]
    got = _one_write(scratch_server, [["SET", k, "v"], ["NOSUCH"], ["GET", k], ["GET"], ["GET", k]], 5)
    assert [str(x) if isinstance(x, hiredis.ReplyError) else x for x in got] == [
        b"OK", "ERR unknown command 'NOSUCH', with args beginning with: ", b"v",
        "ERR wrong number of arguments for 'get' command", b"v"]


def test_read_ending_inside_a_request(scratch_server):
    k = keys_on(1, 1, "tail:")[0]
    c = scratch_server.client()
    try:
        c.set(k, "kept")
        pids = sorted(p.pid for p in scratch_server.children())
        with scratch_server.connect() as a:
            talk(a, encode("GET", k) + b"*", b"$4\r\nkept\r\n")
            with scratch_server.connect() as b:
                talk(b, encode("GET", k), b"$4\r\nkept\r\n", timeout=3)
        assert c.get(k) == b"kept"
        assert sorted(p.pid for p in scratch_server.children()) == pids
    finally:
        c.close()


def test_pipeline_split_at_every_byte(scratch_server):
    k0, k1 = keys_on(0, 1, "split:")[0], keys_on(1, 1, "split:")[0]
    payload = encode("SET", k0, "v0") + encode("GET", k1) + encode("APPEND", k0, "+") + encode("GET", k0)
    expected = b"+OK\r\n$-1\r\n:3\r\n$3\r\nv0+\r\n"
    with scratch_server.connect() as other:
        for i in range(1, len(payload)):
            with scratch_server.connect() as s:
                s.sendall(payload[:i])
                time.sleep(0.01)
                # Another client's frames reach both workers between the two halves.
                talk(other, encode("GET", k1) + encode("GET", "x" + k0), b"$-1\r\n$-1\r\n", timeout=3)
                s.sendall(payload[i:])
                assert read_exact(s, len(expected), timeout=3) == expected, i
            talk(other, encode("DEL", k0), b":1\r\n", timeout=3)


# --- big values ------------------------------------------------------------------------------

def test_64mib_value_round_trip(server, r):
    big = bytes(range(256)) * (1 << 18)
    assert len(big) == 64 << 20
    c = server.client(socket_timeout=60)
    try:
        assert c.set("big", big)
        assert c.strlen("big") == len(big)
        assert c.get("big") == big
        assert c.getrange("big", 0, 9) == bytes(range(10))
        assert c.getrange("big", -3, -1) == b"\xfd\xfe\xff"
        mid = 40 << 20
        assert c.getrange("big", mid + 5, mid + 9) == bytes(range(5, 10))
        assert c.append("big", b"!") == len(big) + 1
        assert c.getrange("big", -2, -1) == b"\xff!"
        assert c.delete("big") == 1
    finally:
        c.close()


# --- malformed and random input ----------------------------------------------------------------

VALID_REQUESTS = [
    encode("SET", "fz:a", "value"), encode("GET", "fz:a"), encode("MGET", "fz:a", "fz:b", "fz:c"),
    encode("INCR", "fz:n"), encode("ECHO", "hello world"), encode("PING"),
    encode("HELLO", "3"), encode("CLIENT", "SETNAME", "fz"), encode("APPEND", "fz:a", "x"),
    encode("DEL", "fz:a", "fz:b"), encode("EXISTS", "fz:a"), encode("GETRANGE", "fz:a", "0", "-1"),
    b"SET fz:i \"a b\"\r\n", b"GET fz:i\r\n", b"PING\r\n", b"ECHO 'q'\r\n",
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and b:
            del b[pos:pos + rng.randint(1, 6)]
        elif op == 3:
            b = b[:pos]
        elif op == 4:
            b[pos:pos] = rng.choice([b"\r\n", b"*", b"$", b"-1", b"99999999999", b"\x00", b"\"", b"'"])
        else:
            b += rng.choice(VALID_REQUESTS)
    return bytes(b)


def _fire(server, data: bytes) -> bool:
    """Send data on a fresh connection and half-close it; True once the server closed the
    connection too (as Valkey does on EOF), False if it was still open after 5 s."""
    with server.connect() as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return True             # the server already closed on a protocol error
        deadline = time.monotonic() + 5
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            try:
                if not s.recv(65536):
                    return True
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True


def _random_inputs(rng: random.Random, n: int) -> list[bytes]:
    """Random bytes, and random strings over the protocol's own characters."""
    inputs = []
    for _ in range(n):
        size = rng.choice([1, 2, 5, 16, 64, 300, 2000])
        alphabet = rng.choice([None, b"*$\r\n0123456789-:+ abc\"'\\"])
        if alphabet is None:
            inputs.append(bytes(rng.randrange(256) for _ in range(size)))
        else:
            inputs.append(bytes(rng.choice(alphabet) for _ in range(size)))
    return inputs


def _mutated_inputs(rng: random.Random, n: int) -> list[bytes]:
    return [_mutate(rng, b"".join(rng.choice(VALID_REQUESTS) for _ in range(rng.randint(1, 3))))
            for _ in range(n)]


def _survives(server, inputs: list[bytes]) -> None:
    """Each input on a fresh connection; then the server answers, keeps its data, lost no
    process and logged no traceback."""
    r = server.client()
    try:
        r.flushall()
        sentinels = {k: f"keep-{k}".encode()
                     for k in keys_on(0, 3, "fuzzsentinel:") + keys_on(1, 3, "fuzzsentinel:")}
        for k, v in sentinels.items():
            r.set(k, v)
        before = sorted(p.pid for p in server.children())
        log_before = server.output()
        t0 = time.monotonic()
        left_open = [data for data in inputs if not _fire(server, data)]
        assert not left_open, f"connections not closed after EOF: {left_open[:3]!r}"
        assert time.monotonic() - t0 < 45
        with server.connect() as s:
            talk(s, b"PING\r\n", b"+PONG\r\n")
        assert r.ping()
        for k, v in sentinels.items():
            assert r.get(k) == v
        assert sorted(p.pid for p in server.children()) == before
        new_log = server.output()[len(log_before):]
        assert "Traceback" not in new_log, new_log[-3000:]
    finally:
        r.close()


def test_random_input_does_not_hurt_the_server(scratch_server):
    _survives(scratch_server, _random_inputs(random.Random(20240531), 300))


def test_mutated_requests_do_not_hurt_the_server(scratch_server):
    _survives(scratch_server, _mutated_inputs(random.Random(20240601), 300))


def test_stalled_half_command_does_not_block_others(server, r):
    with server.connect() as stalled, server.connect() as stalled_inline, server.connect() as other:
        stalled.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nhalf1\r\n$10\r\nabc")
        stalled_inline.sendall(b"SET half2 xy")
        t0 = time.monotonic()
        for i in range(50):
            talk(other, encode("SET", f"o{i}", i), b"+OK\r\n", timeout=2)
            talk(other, encode("GET", f"o{i}"), b"$%d\r\n%d\r\n" % (len(str(i)), i), timeout=2)
        assert time.monotonic() - t0 < 5
        assert silent(stalled, 0.05) and silent(stalled_inline, 0.05)
        # The stalled clients finish their commands later and get their replies.
        talk(stalled, b"defghij\r\n", b"+OK\r\n")
        talk(stalled_inline, b"z\r\n", b"+OK\r\n")
        talk(other, encode("MGET", "half1", "half2"), b"*2\r\n$10\r\nabcdefghij\r\n$3\r\nxyz\r\n")
