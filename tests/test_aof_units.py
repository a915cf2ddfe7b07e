"""Crash-atomic cross-shard operations in the AOF (design item 9; shardd/persist/aof.py and
proxy/coordinator.py): each worker logs its part of a coordinated write behind a
`#shardd-unit` note, and a start drops a part whose siblings did not reach the other shards'
logs. Redis still reads a shard's AOF (it skips the notes)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time

import pytest
import redis

from helpers import REDIS_SERVER, keys_on, wait_until, worker_of
from server import Server
from test_aof import redis_server, snapshot
from test_aof_crash import kill_tree

ROOT = "appendonlydir"
MANIFEST = "appendonly.aof.manifest"
INCR = "appendonly.aof.1.incr.aof"


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="shardd-aof-units-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(workdir: str, *args: str) -> Server:
    return Server("--appendonly", "yes", "--appendfsync", "always", *args, dir=workdir)


def incr_path(workdir: str, shard: int) -> str:
    return os.path.join(workdir, ROOT, str(shard), INCR)


def incr(workdir: str, shard: int) -> bytes:
    with open(incr_path(workdir, shard), "rb") as stream:
        return stream.read()


def notes(data: bytes) -> list[list[bytes]]:
    return [line.split()[1:] for line in data.split(b"\r\n") if line.startswith(b"#shardd-unit ")]


def manifest(workdir: str, shard: int) -> str:
    with open(os.path.join(workdir, ROOT, str(shard), MANIFEST)) as stream:
        return stream.read()


def dropped(workdir: str, shard: int) -> set[str]:
    """The units a shard's manifest lists as dropped at an earlier start."""
    return {uid for line in manifest(workdir, shard).splitlines() if line.startswith("# shardd-dropped ")
            for uid in line.split()[2:]}


def test_coordinated_writes_carry_unit_notes_that_redis_skips(workdir):
    a, b = keys_on(0, 4, "a"), keys_on(1, 4, "b")
    srv = start(workdir)
    try:
        r = srv.client()
        r.set(a[3], "single")                                  # one shard: no note
        r.mset({a[0]: "1", b[0]: "1"})                         # one round: a commit per shard
        assert r.msetnx({a[1]: "2", b[1]: "2"})                # rounds, then a commit round
        pipe = r.pipeline(transaction=True)
        pipe.set(a[2], "3").incr(b[0]).get(a[0])
        assert pipe.execute() == [True, 2, b"1"]
        pipe = r.pipeline(transaction=True)
        pipe.watch(a[2])                                       # WATCH: an EXEC of several rounds
        pipe.multi()
        pipe.set(a[2], "4").set(b[2], "4")
        assert pipe.execute() == [True, True]
        assert r.mget(a[0], b[1], a[3]) == [b"1", b"2", b"single"]   # a read: no unit
        before = snapshot(r, 1)
    finally:
        srv.stop()
    for shard in (0, 1):
        found = notes(incr(workdir, shard))
        kinds = [note[1] for note in found]
        assert kinds == [b"c", b"p", b"c", b"c", b"p", b"c"], found
        assert {note[2] for note in found} == {b"0,1"}
        assert len({note[0] for note in found}) == 4
        assert incr(workdir, shard).endswith(b"#shardd-settled\r\n")
    assert notes(incr(workdir, 0)) == notes(incr(workdir, 1))
    srv = start(workdir)
    try:
        assert snapshot(srv.client(), 1) == before
    finally:
        srv.stop()
    if not os.path.exists(REDIS_SERVER):
        return
    proc, port = redis_server("--dir", os.path.join(workdir, ROOT), "--appenddirname", "0", "--appendonly", "yes")
    try:
        theirs = snapshot(redis.Redis(port=port), 1)
    finally:
        proc.kill()                                            # our own redis-server, by its PID
        proc.wait(5)
    assert theirs == {key: value for key, value in before.items() if worker_of(key[1]) == 0}


def worker_pid(r: redis.Redis, shard: int) -> int:
    return int(r.info("shards")[f"shard{shard}"]["pid"])


def crash(srv: Server, first: int | None = None, delay: float = 0.0) -> None:
    """SIGKILL every process of our own server; `first` (one of its workers) `delay` seconds
    before the others. The supervisor is stopped first, so it restarts nothing meanwhile."""
    os.kill(srv.proc.pid, signal.SIGSTOP)                      # our own server's supervisor
    if first is not None:
        os.kill(first, signal.SIGKILL)
        time.sleep(delay)
    kill_tree(srv)


def test_a_part_whose_sibling_never_reached_its_log_is_dropped(workdir):
    a, b = keys_on(0, 1, "x")[0], keys_on(1, 1, "y")[0]
    srv = start(workdir)
    try:
        r = srv.client()
        r.mset({a: "old", b: "old"})
        os.kill(worker_pid(r, 1), signal.SIGSTOP)               # a worker of our own server
        # Worker 0 runs and logs its part of this MSET; worker 1 never gets to its own.
        client = srv.client(socket_timeout=30)

        def write() -> None:
            try:
                client.mset({a: "new", b: "new"})
            except redis.RedisError:
                pass                                           # the server is killed meanwhile
        threading.Thread(target=write, daemon=True).start()
        assert wait_until(lambda: incr(workdir, 0).count(b"#shardd-unit ") == 2, 10)
    finally:
        crash(srv)
    assert b"$3\r\nnew" in incr(workdir, 0) and b"$3\r\nnew" not in incr(workdir, 1)
    for _ in range(2):                                         # decided once, the same every start
        srv = start(workdir)
        try:
            r = srv.client()
            assert r.mget(a, b) == [b"old", b"old"]
            assert "Dropped 1 cross-shard operation" in srv.output() or _ == 1
        finally:
            srv.stop()
    assert len(dropped(workdir, 0)) == 1 and not dropped(workdir, 1)
    srv = start(workdir)
    try:
        r = srv.client()
        r.mset({a: "later", b: "later"})
        assert r.bgrewriteaof()
        assert wait_until(lambda: r.info("persistence")["aof_rewrites"] >= 1, 10)
    finally:
        srv.stop()
    assert not dropped(workdir, 0)                             # gone with the files it was about
    srv = start(workdir)
    try:
        assert srv.client().mget(a, b) == [b"later", b"later"]
    finally:
        srv.stop()


def command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def group(uid: str, kind: str, key: str, value: str, torn: bool = False) -> bytes:
    body = command("MULTI") + command("SET", key, value) + command("EXEC")
    return f"#shardd-unit {uid} {kind} 0,1 1\r\n".encode() + (body[:-5] if torn else body)


def commit(uid: str) -> bytes:
    return f"#shardd-unit {uid} c 0,1 0\r\n".encode()


def test_the_tail_rule_on_written_logs(workdir):
    """Hand-written tails: a unit is kept when every shard its commit names holds that
    commit whole, else every part of it is dropped (and a torn one is cut off)."""
    x = keys_on(0, 7, "x")
    y = keys_on(1, 7, "y")
    srv = start(workdir)
    try:
        srv.client().mset({k: "0" for k in x + y})
    finally:
        srv.stop()
    tails = {
        0: [group("u1", "c", x[1], "1"),                      # whole on both: kept
            group("u3", "p", x[3], "3"), commit("u3"),         # rounds and commit on both: kept
            group("u2", "c", x[2], "2"),                       # shard 1 never logged it
            group("u4", "p", x[4], "4"),                       # shard 0's commit is missing
            group("u5", "p", x[5], "5"),                       # no commit anywhere
            group("u6", "c", x[6], "6")],                      # shard 1's part is torn
        1: [group("u1", "c", y[1], "1"),
            group("u3", "p", y[3], "3"), commit("u3"),
            group("u4", "p", y[4], "4"), commit("u4"),
            group("u6", "c", y[6], "6", torn=True)],
    }
    for shard, parts in tails.items():
        with open(incr_path(workdir, shard), "ab") as stream:
            stream.write(b"".join(parts))
    size_1 = len(incr(workdir, 1))
    srv = start(workdir)
    try:
        r = srv.client()
        assert r.mget(x) == [b"0", b"1", b"0", b"3", b"0", b"0", b"0"]
        assert r.mget(y) == [b"0", b"1", b"0", b"3", b"0", b"0", b"0"]
    finally:
        srv.stop()
    assert dropped(workdir, 0) == {"u2", "u4", "u5", "u6"} and dropped(workdir, 1) == {"u4", "u6"}
    # Shard 1's torn unit is cut off, its note with it; the settled note follows.
    data = incr(workdir, 1)
    assert b"u6" not in data and len(data) < size_1 and data.endswith(b"#shardd-settled\r\n")
    srv = start(workdir)
    try:
        r = srv.client()
        assert r.mget(x[1:5]) == [b"1", b"0", b"3", b"0"] and r.mget(y[1:5]) == [b"1", b"0", b"3", b"0"]
    finally:
        srv.stop()
    # Re-partitioned, the dropped units stay dropped.
    srv = Server("--appendonly", "yes", dir=workdir, workers=3)
    try:
        r = srv.client()
        assert wait_until(lambda: "Re-partition of the AOF complete" in srv.output(), 10)
        assert r.mget(x) == [b"0", b"1", b"0", b"3", b"0", b"0", b"0"]
        assert r.mget(y) == [b"0", b"1", b"0", b"3", b"0", b"0", b"0"]
    finally:
        srv.stop()


class PairWriters:
    """Threads each writing one pair of keys on different workers, always to equal values,
    by cross-shard MSET, MULTI/EXEC in one round, and WATCH … EXEC and MSETNX (several
    rounds, then a commit); what got a reply is recorded."""

    def __init__(self, port: int, attempt: int, n: int = 6) -> None:
        self.port = port
        self.attempt = attempt
        self.pairs = [(keys_on(0, n, "pa")[t], keys_on(1, n, "pb")[t]) for t in range(n)]
        self.sent = [0] * n
        self.acked = [0] * n
        self.created: list[list[tuple[str, str, bool]]] = [[] for _ in range(n)]   # MSETNX pairs, acked
        self.running = True
        self.threads = [threading.Thread(target=self.write, args=(t,), daemon=True) for t in range(n)]
        for thread in self.threads:
            thread.start()

    def write(self, t: int) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
        a, b = self.pairs[t]
        n = 0
        while self.running:
            n += 1
            self.sent[t] = n
            try:
                if n % 4 == 0:
                    client.mset({a: n, b: n})
                elif n % 4 == 1:
                    pipe = client.pipeline(transaction=True)
                    pipe.set(a, n).set(b, n)
                    pipe.execute()
                elif n % 4 == 2:
                    pipe = client.pipeline(transaction=True)
                    pipe.watch(a)
                    pipe.multi()
                    pipe.set(a, n).set(b, n)
                    pipe.execute()
                else:
                    c, d = f"{a}:{self.attempt}:{n}", f"{b}:{self.attempt}:{n}"
                    self.created[t].append((c, d, False))
                    assert client.msetnx({c: n, d: n})
                    self.created[t][-1] = (c, d, True)
                    client.mset({a: n, b: n})
                self.acked[t] = n
            except (redis.RedisError, OSError):
                return

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(10)

    def check(self, r: redis.Redis) -> list[str]:
        problems = []
        for t, (a, b) in enumerate(self.pairs):
            va, vb = r.get(a), r.get(b)
            if va != vb or not self.acked[t] <= int(va or 0) <= self.sent[t]:
                problems.append(f"{a}={va} {b}={vb} acked={self.acked[t]} sent={self.sent[t]}")
            for c, d, acked in self.created[t]:
                there = r.exists(c) + r.exists(d)
                if there not in (0, 2) or (acked and there != 2):
                    problems.append(f"{c}/{d}: {there} of 2 there (acked: {acked})")
        return problems


def test_sigkill_while_clients_run_cross_shard_writes_leaves_no_half(workdir):
    """The whole server is SIGKILLed, one worker a moment before the rest (as a crash of
    the machine can order it): the other one may still log its part of a unit meanwhile."""
    rng = random.Random(11)
    for attempt in range(3):
        srv = start(workdir)
        r = srv.client()
        pids = [worker_pid(r, shard) for shard in (0, 1)]
        writers = PairWriters(srv.port, attempt)
        assert wait_until(lambda: min(writers.acked) > 10, 10)
        crash(srv, first=pids[attempt % 2], delay=rng.uniform(0, 0.002))
        writers.stop()
        srv = Server("--appendonly", "yes", dir=workdir)
        try:
            assert writers.check(srv.client()) == []
        finally:
            srv.stop()


def test_the_fast_reader_finds_exactly_the_annotations_at_record_boundaries():
    """walk_resp (hiredis, '#' after a newline as candidates) against the record-by-record
    scanner, on random logs whose values are full of newlines and '#'."""
    from shardd.persist.aof import scan_records, walk_resp
    from shardd.resp import command as encode_command

    class Sink:
        def __init__(self) -> None:
            self.seen: list = []

        def command(self, argv: list[bytes]) -> None:
            self.seen.append(argv)

        def note(self, line: bytes) -> None:
            self.seen.append(line)

    rng = random.Random(5)
    pieces = [b"#", b"\n", b"\r\n", b"#shardd-unit x c 0,1 1", b"*1", b"$4", b"a", b"", b"\n#"]
    for _ in range(300):
        out = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.3:
                out.append(b"#note %d\r\n" % rng.randint(0, 99))
            else:
                argv = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 4))]
                out.append(encode_command(argv))
        data = b"".join(out)
        expected = [argv if argv is not None else data[start:end]
                    for argv, start, end in scan_records(data, 0, notes=True)]
        sink = Sink()
        walk_resp(data, 0, len(data), sink)
        assert sink.seen == expected, data
