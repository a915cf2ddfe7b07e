"""Cross-shard atomicity, against real servers:

1. multi-key commands whose keys live on different workers (oracle table, MSETNX all or
   nothing, TTLs kept by RENAME/COPY, races on MSETNX and RENAME);
2. MULTI/EXEC/DISCARD/WATCH/UNWATCH (oracle tables: one client, two clients, pipelined, RESP3);
3. an invariant under concurrent load (100 balances, 8 writers, 4 readers), 1 and 2 proxies;
4. a proxy SIGKILLed while it holds the coordinator's lock, and one SIGSTOPped while it holds
   workers (HOLD_TIMEOUT);
5. single-shard work answered while the test itself holds the coordinator's flock.

With 2 workers, slots 0-8191 are worker 0's and 8192-16383 worker 1's: `{a}` keys live on
worker 1, `{b}` keys on worker 0. Replies are compared byte for byte with Debian's redis-server
7.0 (the oracle) where the two agree with Valkey 8; where they differ Valkey wins and the case
is tested directly.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import shlex
import signal
import socket
import threading
import time

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers import RawConnection, encode, keys_on, oracle_cases, run_both, run_threads, worker_of, wait_until
from server import Server

A = "{a}"    # worker 1
B = "{b}"    # worker 0


def test_tags_are_on_different_workers():
    assert worker_of(A + "k") == 1 and worker_of(B + "k") == 0


# -- 1. multi-key commands on keys of both workers: the oracle table ------------------------------
# Left out on purpose: PTTL right after a move (a millisecond may pass differently; TTL with
# seconds is compared instead, PTTL is bounded in test_rename_keeps_ttl_across_workers); KEYS
# (order differs: test_keys_dbsize_flush_across_workers compares sets).

MULTI_KEY_CASES = [
    # MGET / MSET
    ["MSET {a}x 1 {b}y 2", "MGET {a}x {b}y {a}nokey {b}y {a}x {b}nokey"],
    ["MSET {a}x 1 {b}y 2 {a}x 3 {b}y 4", "MGET {a}x {b}y"],
    ["MSET {a}x 1 {b}y", "MGET {a}x {b}y", "MSET", "MGET"],
    ["SET {a}x 1", "MSET {b}y 2 {a}x 5", "GET {a}x"],
    # DEL / EXISTS / UNLINK / TOUCH: counts summed over both workers, repeats counted
    ["MSET {a}x 1 {b}y 2 {a}z 3", "EXISTS {a}x {b}y {a}x {b}nokey {b}y", "DEL {a}x {b}y {b}nokey {a}x",
     "EXISTS {a}x {b}y {a}z"],
    ["MSET {a}x 1 {b}y 2", "TOUCH {b}y {a}x {a}x {b}nokey", "UNLINK {b}y {a}x {b}y", "DBSIZE"],
    ["DEL", "EXISTS", "UNLINK", "TOUCH"],
    # MSETNX: all or nothing, whichever worker the existing key is on
    ["SET {b}y old", "MSETNX {a}x 1 {b}y 2", "MGET {a}x {b}y", "EXISTS {a}x"],
    ["SET {a}x old", "MSETNX {a}x 1 {b}y 2 {a}z 3", "MGET {a}x {b}y {a}z"],
    ["MSETNX {a}x 1 {b}y 2", "MGET {a}x {b}y", "MSETNX {a}x 1 {b}y 2", "MSETNX {b}q 1 {a}x 2"],
    ["MSETNX {a}x 1 {b}y 2 {a}x 3", "MGET {a}x {b}y"],
    ["MSETNX {a}x 1 {b}y", "MSETNX", "EXISTS {a}x"],
    # RENAME / RENAMENX across workers
    ["SET {a}s hello EX 1000", "RENAME {a}s {b}d", "TTL {b}d", "GET {b}d", "EXISTS {a}s"],
    ["SET {b}s hello", "SET {a}d old EX 1000", "RENAME {b}s {a}d", "TTL {a}d", "GET {a}d"],
    ["RENAME {a}nokey {b}d", "RENAMENX {a}nokey {b}d", "SET {b}d x", "RENAME {a}nokey {b}d",
     "GET {b}d"],
    ["SET {a}s v", "RENAME {a}s {a}s", "RENAMENX {a}s {a}s", "RENAME {a}nokey {a}nokey",
     "RENAMENX {b}nokey {b}nokey", "GET {a}s"],
    ["MSET {a}s new {b}d old", "RENAMENX {a}s {b}d", "MGET {a}s {b}d", "RENAMENX {b}d {a}t",
     "MGET {b}d {a}t"],
    ["SET {b}s v EX 1000", "RENAMENX {b}s {a}d", "TTL {a}d", "EXISTS {b}s"],
    ["RENAME {a}s", "RENAMENX {a}s {b}d x"],
    # COPY across workers
    ["SET {a}s v EX 1000", "COPY {a}s {b}d", "TTL {b}d", "GET {b}d", "GET {a}s", "TTL {a}s"],
    ["MSET {a}s new {b}d old", "COPY {a}s {b}d", "GET {b}d", "COPY {a}s {b}d REPLACE", "GET {b}d",
     "COPY {a}s {b}d replace", "COPY {a}s {b}d REPLACE REPLACE"],
    ["SET {b}d old EX 1000", "SET {a}s new", "COPY {a}s {b}d REPLACE", "TTL {b}d"],
    ["SET {a}s v EX 1000", "COPY {a}s {b}d DB 1", "EXISTS {b}d", "SELECT 1", "GET {b}d", "TTL {b}d",
     "COPY {a}s {b}d", "SET {b}x in1", "SELECT 0", "COPY {a}s {b}x DB 1", "COPY {a}s {b}x DB 1 REPLACE",
     "SELECT 1", "GET {b}x", "SELECT 0"],
    ["COPY {a}nokey {b}d", "SET {b}d x", "COPY {a}nokey {b}d REPLACE", "GET {b}d", "COPY {a}nokey {b}d DB 3"],
    ["SET {a}s v", "COPY {a}s {b}d DB 16", "COPY {a}s {b}d DB -1", "COPY {a}s {b}d DB abc",
     "COPY {a}s {b}d DB", "COPY {a}s {b}d FOO", "COPY {a}s {b}d DB 1 FOO", "COPY {a}s", "EXISTS {b}d"],
    ["SET {a}s v", "COPY {a}s {a}s", "COPY {a}s {a}s DB 0", "COPY {a}s {a}s DB 1", "SELECT 1",
     "GET {a}s", "SELECT 0"],
    # MOVE (one key: it stays on its worker, only the db changes)
    ["SET {a}k v EX 1000", "MOVE {a}k 1", "MOVE {a}k 1", "EXISTS {a}k", "SELECT 1", "GET {a}k", "TTL {a}k",
     "MOVE {a}k 0", "SELECT 0", "GET {a}k"],
    ["MSET {b}k here", "SELECT 1", "SET {b}k there", "SELECT 0", "MOVE {b}k 1", "GET {b}k"],
    ["SET {a}k v", "MOVE {a}k 0", "MOVE {a}k 16", "MOVE {a}k -1", "MOVE {a}k abc", "MOVE {a}nokey 1",
     "MOVE {a}k"],
    # SWAPDB: data on both workers, and its errors
    ["MSET {a}1 x {b}1 y", "SELECT 1", "MSET {a}2 z {b}2 w", "SWAPDB 0 1", "MGET {a}1 {b}1 {a}2 {b}2",
     "DBSIZE", "SELECT 0", "MGET {a}1 {b}1 {a}2 {b}2", "DBSIZE", "SWAPDB 1 0", "MGET {a}1 {b}1 {a}2 {b}2"],
    ["SET {a}x v EX 1000", "SWAPDB 0 2", "SELECT 2", "TTL {a}x", "SELECT 0", "SWAPDB 0 0", "SWAPDB 2 2"],
    ["SWAPDB a 1", "SWAPDB 1 a", "SWAPDB a b", "SWAPDB 16 a", "SWAPDB a 16", "SWAPDB 0 16", "SWAPDB 16 0",
     "SWAPDB -1 0", "SWAPDB 0 -1", "SWAPDB 1.5 0", "SWAPDB 0 99999999999", "SWAPDB 0", "SWAPDB 0 1 2"],
    # LCS across workers
    ["MSET {a}x ohmytext {b}y mynewtext", "LCS {a}x {b}y", "LCS {b}y {a}x", "LCS {a}x {b}y LEN",
     "LCS {a}x {b}y IDX", "LCS {a}x {b}y IDX MINMATCHLEN 4 WITHMATCHLEN", "LCS {a}x {b}nokey",
     "LCS {a}nokey {b}nokey LEN", "LCS {a}x {b}y FOO", "LCS {a}x {b}y LEN IDX", "LCS {a}x"],
    # DBSIZE / FLUSHDB / FLUSHALL over both workers
    ["MSET {a}x 1 {b}y 2 {a}z 3", "DBSIZE", "SELECT 1", "SET {b}q 1", "DBSIZE", "SELECT 0", "FLUSHDB",
     "DBSIZE", "SELECT 1", "DBSIZE", "FLUSHALL", "DBSIZE", "SELECT 0"],
    ["FLUSHDB ASYNC", "FLUSHDB SYNC", "FLUSHALL ASYNC", "FLUSHDB FOO", "FLUSHALL FOO", "FLUSHALL SYNC ASYNC",
     "DBSIZE x"],
]


@oracle_cases(MULTI_KEY_CASES)
def test_multi_key_oracle(pair, case):
    run_both(pair, case, [("SELECT", "0")])


def test_msetnx_all_or_nothing(r):
    """MSETNX sets nothing when one key exists, on either worker, and everything otherwise."""
    a, b = keys_on(1, 3, A), keys_on(0, 3, B)
    for existing in (a[1], b[2]):
        r.flushall()
        r.set(existing, "old")
        assert r.msetnx({k: "new" for k in a + b}) is False
        assert r.mget(a + b) == [b"old" if k == existing else None for k in a + b]
    r.flushall()
    assert r.msetnx({k: "new" for k in a + b}) is True
    assert r.mget(a + b) == [b"new"] * 6


def test_rename_keeps_ttl_across_workers(r):
    r.set(A + "s", "v", px=100_000)
    assert r.rename(A + "s", B + "d")
    assert 99_000 < r.pttl(B + "d") <= 100_000
    assert r.renamenx(B + "d", A + "e")
    assert 99_000 < r.pttl(A + "e") <= 100_000
    assert r.copy(A + "e", B + "c")
    assert 99_000 < r.pttl(B + "c") <= 100_000
    assert r.exists(A + "s", B + "d") == 0


def test_rename_of_expired_key_across_workers(r, raw):
    r.set(A + "s", "v", px=30)
    r.set(B + "d", "old")
    time.sleep(0.1)
    assert raw.call("RENAME", A + "s", B + "d") == b"-ERR no such key\r\n"
    assert raw.call("COPY", A + "s", B + "d", "REPLACE") == b":0\r\n"
    assert r.get(B + "d") == b"old"


def test_keys_dbsize_flush_across_workers(r, oracle):
    keys = keys_on(0, 5, "k") + keys_on(1, 5, "k")
    for client in (r, oracle):
        client.mset({k: "v" for k in keys})
        assert client.dbsize() == 10
        assert sorted(client.keys("*")) == sorted(k.encode() for k in keys)
        assert sorted(client.keys("k1*")) == sorted(k.encode() for k in keys if k.startswith("k1"))
    assert sorted(r.keys("*")) == sorted(oracle.keys("*"))
    r.flushdb()
    assert r.dbsize() == 0 and r.keys("*") == []


def test_flushall_and_swapdb_reach_every_worker(server, r):
    keys = keys_on(0, 3, "f") + keys_on(1, 3, "f")
    r1 = server.client(db=1)
    try:
        r.mset({k: "0" for k in keys})
        r1.mset({k: "1" for k in keys})
        assert r.swapdb(0, 1)
        assert r.mget(keys) == [b"1"] * 6 and r1.mget(keys) == [b"0"] * 6
        assert r.flushall()
        assert r.dbsize() == 0 and r1.dbsize() == 0
    finally:
        r1.close()


def test_concurrent_msetnx_has_one_winner(server):
    """Clients race MSETNX on the same key pair (one key per worker): exactly one wins and
    both keys carry its value."""
    rounds, n_clients = 150, 4
    wins: dict[int, list[int]] = {i: [] for i in range(rounds)}
    errors_seen = []

    def racer(me: int) -> None:
        c = server.client()
        try:
            for i in range(rounds):
                if c.msetnx({f"{A}nx:{i}": me, f"{B}nx:{i}": me}):
                    wins[i].append(me)
        except Exception as exc:  # noqa: BLE001
            errors_seen.append(repr(exc))
        finally:
            c.close()
    r = server.client()
    try:
        r.flushall()
        threads = [threading.Thread(target=racer, args=(me,), daemon=True) for me in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads) and not errors_seen, errors_seen[:3]
        for i in range(rounds):
            assert len(wins[i]) == 1, (i, wins[i])
            assert r.mget(f"{A}nx:{i}", f"{B}nx:{i}") == [str(wins[i][0]).encode()] * 2
    finally:
        r.close()


def test_concurrent_renames_across_workers_are_atomic(server):
    """A value bounces between a key on each worker by RENAME; readers always find exactly one
    of the two keys, with the value intact."""
    src, dst = A + "bounce", B + "bounce"
    stop = threading.Event()
    stats = {"moves": 0, "reads": 0, "bad": []}

    def mover() -> None:
        c = server.client()
        try:
            while not stop.is_set():
                for a, b in ((src, dst), (dst, src)):
                    try:
                        c.rename(a, b)
                        stats["moves"] += 1
                    except redis.ResponseError as exc:
                        if "no such key" not in str(exc):
                            stats["bad"].append(repr(exc))
        finally:
            c.close()

    def reader() -> None:
        c = server.client()
        try:
            while not stop.is_set():
                n, values = c.exists(src, dst), c.mget(src, dst)
                stats["reads"] += 1
                if n != 1 or sorted(values, key=lambda v: v is None) != [b"payload", None]:
                    stats["bad"].append((n, values))
        finally:
            c.close()
    r = server.client()
    try:
        r.flushall()
        r.set(src, "payload", ex=1000)
        run_threads((mover, mover, reader, reader), stop, 2.0)
        assert not stats["bad"], stats["bad"][:5]
        assert stats["moves"] >= 50 and stats["reads"] >= 50, stats
        assert r.exists(src, dst) == 1 and 990 < max(r.ttl(src), r.ttl(dst)) <= 1000
    finally:
        r.close()


# -- 2. MULTI / EXEC / DISCARD / WATCH / UNWATCH ------------------------------------------------
# One client: compared with the oracle byte for byte.

TRANSACTION_CASES = [
    # QUEUED replies; on one worker and across workers
    ["MULTI", "SET {a}x 1", "SET {a}y 2", "GET {a}x", "INCR {a}y", "EXEC", "MGET {a}x {a}y"],
    ["MULTI", "SET {a}x 1", "SET {b}y 2", "GET {a}x", "MGET {a}x {b}y", "INCR {b}y", "EXEC", "MGET {a}x {b}y"],
    ["MULTI", "EXEC", "MULTI", "PING", "ECHO hi", "EXEC"],
    # multi-key commands with every key on one worker
    ["MULTI", "MSET {a}x 1 {a}y 2", "MGET {a}x {a}y {a}z", "DEL {a}x {a}nokey", "EXISTS {a}x {a}y {a}y",
     "MSETNX {a}x 1 {a}z 2", "MSETNX {a}y 1 {a}q 2", "MSET {a}x 1 {a}y", "TOUCH {a}y", "UNLINK {a}y", "EXEC",
     "MGET {a}x {a}y {a}z {a}q"],
    # every multi-key command inside a transaction, across workers
    ["MULTI", "MSET {a}x 1 {b}y 2", "MSETNX {a}x 1 {b}z 3", "MSETNX {a}n 1 {b}m 2", "EXISTS {a}x {b}y {b}z",
     "TOUCH {a}x {b}y", "DEL {a}x {b}y", "RENAME {b}m {a}m2", "COPY {a}m2 {b}c", "RENAMENX {a}n {b}c",
     "DBSIZE", "UNLINK {a}n {b}c", "LCS {a}m2 {b}nokey", "MGET {a}m2 {b}c {a}n", "EXEC"],
    ["SET {a}k v", "MULTI", "MOVE {a}k 1", "SWAPDB 0 1", "GET {a}k", "FLUSHALL", "DBSIZE", "EXEC"],
    # a queuing error aborts the whole transaction (EXECABORT), nothing runs
    ["MULTI", "SET {a}x 1", "FOOBAR x", "SET {b}y 2", "EXEC", "MGET {a}x {b}y"],
    ["MULTI", "SET {a}x", "SET {b}y 2", "EXEC", "EXISTS {a}x {b}y"],
    ["MULTI", "SET {b}y 2", "GET", "MGET", "EXEC", "EXISTS {b}y"],
    ["MULTI", "SET {b}y 2", "CONFIG FOO", "EXEC", "EXISTS {b}y"],
    ["MULTI", "SET {b}y 2", "CONFIG GET", "EXEC", "MULTI", "CLIENT FOO", "EXEC", "MULTI", "OBJECT FOO x",
     "EXEC", "EXISTS {b}y"],
    ["MULTI", "SET {a}x 1", "FOOBAR", "DISCARD", "EXISTS {a}x", "EXEC"],
    # runtime errors do not roll anything back
    ["SET {a}s abc", "MULTI", "INCR {a}s", "SET {b}y 2", "INCR {b}y", "SET {a}t 1", "EXEC", "MGET {a}s {b}y {a}t"],
    ["SET {a}s abc", "MULTI", "INCR {a}s", "SET {a}t 1", "INCRBY {a}t x", "INCR {a}t", "EXEC", "MGET {a}s {a}t"],
    ["MULTI", "RENAME {a}nokey {b}x", "SET {b}x 1", "COPY {a}s {b}x DB 99", "SWAPDB a 1", "EXEC", "GET {b}x"],
    # nesting and misplaced commands
    ["MULTI", "MULTI", "SET {a}x 1", "EXEC", "GET {a}x"],
    ["EXEC", "DISCARD", "MULTI", "DISCARD", "DISCARD", "EXEC"],
    ["MULTI", "WATCH {a}x", "SET {a}x 1", "EXEC", "GET {a}x"],
    ["MULTI", "WATCH {a}x {b}y", "EXEC"],
    ["MULTI", "SET {a}x 1", "DISCARD", "GET {a}x", "EXEC"],
    ["MULTI", "UNWATCH", "SET {a}x 1", "EXEC"],
    # SELECT inside MULTI changes the db of the commands queued after it (and stays changed)
    ["MULTI", "SET {a}x db0", "SELECT 1", "SET {a}x db1", "SET {b}y db1", "MGET {a}x {b}y", "EXEC",
     "MGET {a}x {b}y", "SELECT 0", "MGET {a}x {b}y"],
    ["MULTI", "SELECT 2", "SET {a}x 1", "SELECT 0", "SET {b}y 1", "EXEC", "MGET {a}x {b}y", "SELECT 2",
     "MGET {a}x {b}y", "SELECT 0"],
    ["MULTI", "SELECT 99", "SELECT abc", "SET {a}x 1", "EXEC", "GET {a}x"],
    # WATCH by the same client before MULTI
    ["SET {a}x 1", "WATCH {a}x", "SET {a}x 2", "MULTI", "GET {a}x", "EXEC", "GET {a}x"],
    ["WATCH {a}x {b}y", "SET {b}y 2", "MULTI", "SET {a}x 1", "EXEC", "EXISTS {a}x"],
    ["WATCH {a}x", "GET {a}x", "MULTI", "SET {a}x 1", "EXEC", "GET {a}x"],
    ["WATCH {b}y", "MSET {a}x 1 {b}y 1", "MULTI", "SET {a}z 1", "EXEC", "EXISTS {a}z"],
    ["SET {a}x 1", "WATCH {a}x", "SET {a}x 1", "UNWATCH", "MULTI", "GET {a}x", "EXEC"],
    ["SET {a}x 1", "WATCH {a}x {b}y", "DEL {b}y", "MULTI", "GET {a}x", "EXEC"],
    ["SET {a}x 1", "WATCH {a}x", "EXPIRE {a}x 100", "MULTI", "GET {a}x", "EXEC"],
    ["WATCH {a}x", "MULTI", "FOOBAR", "EXEC", "SET {a}x 1", "MULTI", "GET {a}x", "EXEC"],
    ["WATCH {a}x", "SET {a}x 1", "EXEC", "MULTI", "GET {a}x", "EXEC"],
    ["WATCH {a}x", "SET {a}x 1", "MULTI", "DISCARD", "MULTI", "GET {a}x", "EXEC"],
    ["WATCH", "UNWATCH", "UNWATCH x"],
    # RESET discards the transaction and the watches
    ["MULTI", "SET {a}x 1", "SET {b}y 1", "RESET", "EXEC", "EXISTS {a}x {b}y"],
    ["SET {a}x 1", "WATCH {a}x {b}y", "SET {b}y 1", "RESET", "MULTI", "GET {a}x", "EXEC"],
]


# Whole transactions sent in one write (with commands before and after), replies compared.
PIPELINED = [
    ["SET {a}x 1", "MULTI", "INCR {a}x", "SET {b}y 2", "MGET {a}x {b}y", "EXEC", "GET {b}y", "MULTI",
     "GET {a}x", "EXEC", "MGET {a}x {b}y"],
    ["MULTI", "SET {a}x 1", "FOOBAR", "EXEC", "MULTI", "SET {a}x 2", "EXEC", "GET {a}x"],
    ["WATCH {a}x {b}y", "SET {b}y 1", "MULTI", "SET {a}x 1", "EXEC", "MULTI", "MSETNX {a}x 1 {b}z 1",
     "RENAME {b}y {a}y", "COPY {a}y {b}c", "DBSIZE", "EXEC", "MULTI", "SELECT 1", "SET {a}x 1", "EXEC",
     "GET {a}x", "SELECT 0", "KEYS {b}c"],
]


@pytest.mark.parametrize("commands", PIPELINED, ids=[c[-1] for c in PIPELINED])
def test_pipelined_transactions_oracle(pair, commands):
    got = []
    for conn in pair:
        conn.call("FLUSHALL")
        conn.send(b"".join(encode(*shlex.split(c)) for c in commands))
        got.append([conn.read() for _ in commands])
    for command, mine, theirs in zip(commands, *got):
        assert mine == theirs, f"{command!r}: shardd {mine!r} != redis {theirs!r}"
    for conn in pair:
        conn.call("SELECT", "0")


@oracle_cases(TRANSACTION_CASES)
def test_transaction_oracle(pair, case):
    run_both(pair, case, [("SELECT", "0")])


RESP3_CASES = [
    [("!", "HELLO 3"), "SET {a}x 1", "WATCH {a}x {b}y", "SET {a}x 2", "MULTI", "GET {a}x", "EXEC"],
    [("!", "HELLO 3"), "MULTI", "SET {a}x 1", "GET {a}x", "MGET {a}x {b}y", "EXEC"],
]


@oracle_cases(RESP3_CASES)
def test_transaction_oracle_resp3(pair, case):
    run_both(pair, case, [("HELLO", "2"), ("SELECT", "0")])


# Two clients per server: steps are (client, command) or ("sleep", seconds).
WATCH_CASES = {
    "other client, one worker": [
        (0, "SET {a}x 1"), (0, "WATCH {a}x"), (1, "SET {a}x 2"), (0, "MULTI"), (0, "SET {a}y 1"),
        (0, "EXEC"), (0, "EXISTS {a}y")],
    "other client, one-worker transaction of multi-key commands": [
        (0, "MSET {a}x 1 {a}y 1"), (0, "WATCH {a}x"), (1, "DEL {a}x"), (0, "MULTI"), (0, "MGET {a}x {a}y"),
        (0, "MSET {a}x 2 {a}y 2"), (0, "EXEC"), (0, "MGET {a}x {a}y"), (0, "WATCH {a}y"), (0, "MULTI"),
        (0, "MGET {a}x {a}y"), (0, "DEL {a}x {a}y"), (0, "EXEC")],
    "other client, other worker of the transaction": [
        (0, "WATCH {b}w"), (1, "SET {b}w 2"), (0, "MULTI"), (0, "SET {a}x 1"), (0, "EXEC"), (0, "EXISTS {a}x")],
    "other client, cross-shard transaction": [
        (0, "WATCH {a}x"), (1, "INCR {a}x"), (0, "MULTI"), (0, "SET {a}y 1"), (0, "SET {b}y 1"),
        (0, "EXEC"), (0, "EXISTS {a}y {b}y")],
    "watch on both workers, one changes": [
        (0, "WATCH {a}x {b}y"), (1, "SET {b}y 2"), (0, "MULTI"), (0, "SET {a}x 1"), (0, "EXEC"),
        (0, "EXISTS {a}x")],
    "watch on both workers, cross-shard MSET changes them": [
        (0, "WATCH {a}x"), (0, "WATCH {b}y"), (1, "MSET {a}q 1 {b}y 2"), (0, "MULTI"), (0, "GET {a}x"),
        (0, "EXEC")],
    "watch on both workers, nothing changes": [
        (0, "SET {a}x 1"), (0, "WATCH {a}x {b}y"), (1, "GET {a}x"), (1, "SET {a}other 1"),
        (0, "MULTI"), (0, "INCR {a}x"), (0, "SET {b}y 1"), (0, "EXEC")],
    "cross-worker RENAME changes the watched destination": [
        (0, "SET {a}s v"), (0, "WATCH {b}d"), (1, "RENAME {a}s {b}d"), (0, "MULTI"), (0, "GET {b}d"),
        (0, "EXEC")],
    "cross-worker RENAME changes the watched source": [
        (0, "SET {a}s v"), (0, "WATCH {a}s"), (1, "RENAME {a}s {b}d"), (0, "MULTI"), (0, "GET {b}d"),
        (0, "EXEC")],
    "cross-worker COPY changes the watched destination": [
        (0, "SET {a}s v"), (0, "WATCH {b}d"), (1, "COPY {a}s {b}d"), (0, "MULTI"), (0, "GET {b}d"),
        (0, "EXEC")],
    "a failed MSETNX changes nothing": [
        (0, "SET {a}x 1"), (0, "WATCH {b}y"), (1, "MSETNX {a}x 2 {b}y 2"), (0, "MULTI"), (0, "GET {b}y"),
        (0, "EXEC")],
    "a key in another db": [
        (0, "WATCH {a}x"), (1, "SELECT 1"), (1, "SET {a}x 1"), (0, "MULTI"), (0, "SET {a}y 1"), (0, "EXEC")],
    "expiry before EXEC": [
        (0, "SET {a}x 1 PX 100"), (0, "WATCH {a}x"), ("sleep", 0.3), (0, "MULTI"), (0, "SET {a}y 1"),
        (0, "EXEC"), (0, "EXISTS {a}y")],
    "expiry before EXEC, cross-shard": [
        (0, "SET {b}x 1 PX 100"), (0, "WATCH {a}k {b}x"), ("sleep", 0.3), (0, "MULTI"), (0, "SET {a}y 1"),
        (0, "SET {b}y 1"), (0, "EXEC"), (0, "EXISTS {a}y {b}y")],
    # Valkey flags a key already expired at WATCH time: its deletion is no change (repeated:
    # whether the active expiry cycle got to the key first is a matter of timing).
    "expired before WATCH": [
        (0, "SET {a}x 1 PX 20"), ("sleep", 0.05), (0, "WATCH {a}x"), (0, "MULTI"), (0, "SET {a}y 1"), (0, "EXEC"),
        (0, "SET {b}x 1 PX 20"), ("sleep", 0.04), (0, "WATCH {b}x {a}q"), (0, "GET {b}x"), (0, "MULTI"),
        (0, "SET {b}y 1"), (0, "SET {a}y 1"), (0, "EXEC"),
        (0, "SET {a}x 1 PX 20"), ("sleep", 0.03), (0, "WATCH {a}x"), (0, "MULTI"), (0, "SET {a}y 1"), (0, "EXEC")],
    "expired before WATCH, then set again": [
        (0, "SET {a}x 1 PX 20"), ("sleep", 0.05), (0, "WATCH {a}x"), (1, "SET {a}x 2"), (0, "MULTI"),
        (0, "SET {a}y 1"), (0, "EXEC"), (0, "EXISTS {a}y")],
    "FLUSHALL": [
        (0, "MSET {a}x 1 {b}y 1"), (0, "WATCH {a}x"), (1, "FLUSHALL"), (0, "MULTI"), (0, "SET {a}z 1"),
        (0, "EXEC"), (0, "EXISTS {a}z")],
    "FLUSHALL, watch on the other worker": [
        (0, "MSET {a}x 1 {b}y 1"), (0, "WATCH {b}y"), (1, "FLUSHALL"), (0, "MULTI"), (0, "SET {a}z 1"),
        (0, "EXEC")],
    "FLUSHALL, the watched key does not exist": [
        (0, "MSET {a}x 1 {b}y 1"), (0, "WATCH {a}nokey {b}nokey"), (1, "FLUSHALL"), (0, "MULTI"),
        (0, "SET {a}z 1"), (0, "EXEC"), (0, "EXISTS {a}z")],
    "FLUSHDB, the watched key does not exist": [
        (0, "MSET {a}x 1 {b}y 1"), (0, "WATCH {b}nokey"), (1, "FLUSHDB"), (0, "MULTI"),
        (0, "SET {a}z 1"), (0, "EXEC")],
    "SWAPDB, the watched key exists in neither db": [
        (0, "MSET {a}x 1 {b}y 1"), (0, "WATCH {a}nokey"), (1, "SWAPDB 0 1"), (0, "MULTI"),
        (0, "SET {a}z 1"), (0, "EXEC")],
    "FLUSHDB": [
        (0, "SET {b}y 1"), (0, "WATCH {b}y"), (1, "FLUSHDB"), (0, "MULTI"), (0, "GET {b}y"), (0, "EXEC")],
    "FLUSHDB of another db": [
        (0, "SET {b}y 1"), (0, "WATCH {b}y"), (1, "SELECT 1"), (1, "SET {b}y 1"), (1, "FLUSHDB"),
        (0, "MULTI"), (0, "GET {b}y"), (0, "EXEC")],
    "SWAPDB": [
        (0, "SET {a}x 1"), (0, "WATCH {a}x"), (1, "SWAPDB 0 1"), (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC")],
    "SWAPDB brings the watched key in": [
        (1, "SELECT 1"), (1, "SET {b}y 1"), (0, "WATCH {b}y"), (1, "SWAPDB 0 1"), (0, "MULTI"), (0, "GET {b}y"),
        (0, "EXEC")],
    "SWAPDB of other dbs": [
        (0, "SET {a}x 1"), (0, "WATCH {a}x"), (1, "SWAPDB 1 2"), (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC")],
    "UNWATCH clears the watches": [
        (0, "WATCH {a}x {b}y"), (1, "MSET {a}x 1 {b}y 1"), (0, "UNWATCH"), (0, "MULTI"), (0, "GET {a}x"),
        (0, "GET {b}y"), (0, "EXEC")],
    "DISCARD clears the watches": [
        (0, "WATCH {a}x {b}y"), (1, "MSET {a}x 1 {b}y 1"), (0, "MULTI"), (0, "DISCARD"), (0, "MULTI"),
        (0, "GET {a}x"), (0, "EXEC")],
    "EXEC clears the watches": [
        (0, "WATCH {a}x {b}y"), (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC"), (1, "MSET {a}x 1 {b}y 1"),
        (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC")],
    "an aborted EXEC clears the watches": [
        (0, "WATCH {a}x {b}y"), (1, "SET {b}y 1"), (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC"),
        (1, "SET {a}x 2"), (0, "MULTI"), (0, "GET {a}x"), (0, "EXEC")],
    "changes after EXEC queued do not matter": [
        (0, "WATCH {a}x"), (0, "MULTI"), (0, "SET {a}x mine"), (1, "SET {b}y 1"), (0, "EXEC"), (0, "GET {a}x")],
}


def run_clients(ports: tuple[int, int], steps: list) -> None:
    """Run steps on two fresh connections to each of shardd and the oracle, comparing replies."""
    conns = [[RawConnection(port) for _ in range(2)] for port in ports]
    try:
        for side in conns:
            assert side[0].call("FLUSHALL") == b"+OK\r\n"
        for who, command in steps:
            if who == "sleep":
                time.sleep(command)
                continue
            args = shlex.split(command)
            got, want = conns[0][who].call(*args), conns[1][who].call(*args)
            assert got == want, f"client {who} {command!r}: shardd {got!r} != redis {want!r}"
    finally:
        for side in conns:
            for c in side:
                c.close()


@pytest.mark.parametrize("steps", [pytest.param(v, id=k) for k, v in WATCH_CASES.items()])
def test_watch_oracle(server, oracle_port, steps):
    run_clients((server.port, oracle_port), steps)


def test_watch_expiry_with_px(server, r):
    """A watched key with a PX that runs out before EXEC aborts it (a null reply)."""
    c = server.client()
    try:
        r.set(A + "x", "1", px=80)
        with c.pipeline(transaction=True) as p:
            p.watch(A + "x", B + "y")
            time.sleep(0.25)
            p.multi()
            p.set(B + "y", "1")
            with pytest.raises(redis.WatchError):
                p.execute()
        assert r.exists(B + "y") == 0
    finally:
        c.close()


def test_redis_py_pipeline_transaction(r):
    with r.pipeline(transaction=True) as p:
        p.set(A + "x", 1).set(B + "y", 2).incr(A + "x").mget(A + "x", B + "y").get(B + "nokey")
        assert p.execute() == [True, True, 2, [b"2", b"2"], None]
    with r.pipeline(transaction=True) as p:
        p.set(A + "x", 5).get(A + "x")
        assert p.execute() == [True, b"5"]
    with r.pipeline(transaction=True) as p:
        p.set(A + "s", "abc").incr(A + "s").set(B + "z", 1)
        with pytest.raises(redis.ResponseError):
            p.execute()                       # the INCR failed; the others ran
    assert r.mget(A + "s", B + "z") == [b"abc", b"1"]


def test_redis_py_transaction_func(server, r):
    """r.transaction(func, *keys): WATCH on both workers, retried until no other client
    interferes; the interfering client changes the keys the first two times."""
    other = server.client()
    r.mset({A + "x": 10, B + "y": 0})
    calls = []

    def move(pipe):
        calls.append(1)
        x, y = int(pipe.get(A + "x")), int(pipe.get(B + "y"))
        if len(calls) <= 2:
            other.incr(A + "x" if len(calls) == 1 else B + "y")
        pipe.multi()
        pipe.mset({A + "x": x - 3, B + "y": y + 3})
    try:
        assert r.transaction(move, A + "x", B + "y") == [True]
        assert len(calls) == 3
        assert r.mget(A + "x", B + "y") == [b"8", b"4"]
    finally:
        other.close()


def test_watch_by_another_client_with_redis_py(server, r):
    other = server.client()
    try:
        for key in (A + "w", B + "w"):
            with r.pipeline(transaction=True) as p:
                p.watch(A + "w", B + "w")
                other.set(key, "changed")
                p.multi()
                p.set(A + "t", key)
                p.set(B + "t", key)
                with pytest.raises(redis.WatchError):
                    p.execute()
        assert r.exists(A + "t", B + "t") == 0
    finally:
        other.close()


# -- 3. the invariant under load ---------------------------------------------------------------

N_BALANCES = 100
START = 1000
TOTAL = N_BALANCES * START
LOAD_SECONDS = 8.0


def balance_keys() -> list[str]:
    return [f"bal:{i}" for i in range(N_BALANCES)]


def run_invariant_load(srv: Server, seconds: float = LOAD_SECONDS) -> dict:
    keys = balance_keys()
    spread = [worker_of(k) for k in keys]
    assert min(spread.count(0), spread.count(1)) >= 30, "balances must spread over both workers"
    setup = srv.client()
    setup.flushall()
    setup.mset({k: START for k in keys})
    setup.close()

    stop = threading.Event()
    lock = threading.Lock()
    stats = {"transfers": 0, "renames": 0, "copies": 0, "watched": 0, "aborted": 0,
             "mget": 0, "multi_mget": 0, "multi_get": 0, "bad": [], "errors": [], "client_ids": set()}

    def note(name: str, n: int = 1) -> None:
        with lock:
            stats[name] += n

    def fail(kind: str, detail) -> None:
        with lock:
            stats[kind].append(detail)
        stop.set()

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        c = srv.client()
        # Temporary keys on each worker, of this writer only.
        tmp = {0: keys_on(0, 1, f"tmp{seed}:")[0], 1: keys_on(1, 1, f"tmp{seed}:")[0]}
        try:
            with lock:
                stats["client_ids"].add(c.client_id())
            while not stop.is_set():
                a, b = rnd.sample(keys, 2)
                amount = rnd.randint(1, 50)
                kind = rnd.random()
                if kind < 0.08:
                    # A balance leaves for a temporary key on the other worker and comes back.
                    t = tmp[1 - worker_of(a)]
                    with c.pipeline(transaction=True) as p:
                        p.rename(a, t).rename(t, a)
                        assert p.execute() == [True, True]
                    note("renames")
                elif kind < 0.16:
                    t = tmp[1 - worker_of(a)]
                    with c.pipeline(transaction=True) as p:
                        p.copy(a, t).delete(a).copy(t, a).delete(t)
                        assert p.execute() == [True, 1, True, 1]
                    note("copies")
                elif kind < 0.24:
                    # Optimistic: WATCH both (often on both workers), read, write with MSET.
                    with c.pipeline(transaction=True) as p:
                        p.watch(a, b)
                        va, vb = (int(v) for v in p.mget(a, b))
                        p.multi()
                        p.mset({a: va - amount, b: vb + amount})
                        try:
                            assert p.execute() == [True]
                            note("watched")
                        except redis.WatchError:
                            note("aborted")
                else:
                    with c.pipeline(transaction=True) as p:
                        p.decrby(a, amount).incrby(b, amount)
                        p.execute()
                    note("transfers")
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            fail("errors", f"writer {seed}: {exc!r}")
        finally:
            c.close()

    def check(kind: str, values) -> None:
        if any(v is None for v in values) or sum(int(v) for v in values) != TOTAL:
            fail("bad", (kind, None if any(v is None for v in values) else sum(int(v) for v in values),
                         [i for i, v in enumerate(values) if v is None][:5]))
        else:
            note(kind)

    def reader(seed: int) -> None:
        c = srv.client()
        try:
            with lock:
                stats["client_ids"].add(c.client_id())
            mode = 0
            while not stop.is_set():
                mode = (mode + 1) % 3
                if mode == 0:
                    check("mget", c.mget(keys))
                elif mode == 1:
                    with c.pipeline(transaction=True) as p:
                        p.mget(keys)
                        check("multi_mget", p.execute()[0])
                else:
                    with c.pipeline(transaction=True) as p:
                        for k in keys:
                            p.get(k)
                        check("multi_get", p.execute())
        except Exception as exc:  # noqa: BLE001
            fail("errors", f"reader {seed}: {exc!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(8)]
    threads += [threading.Thread(target=reader, args=(100 + i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a load thread is stuck"
    final = srv.client()
    try:
        values = final.mget(keys)
        stats["final"] = sum(int(v) for v in values)
        stats["leftover"] = final.dbsize() - N_BALANCES
    finally:
        final.close()
    return stats


def assert_invariant_held(stats: dict) -> None:
    assert not stats["errors"], stats["errors"][:5]
    assert not stats["bad"], f"reads that did not sum to {TOTAL}: {stats['bad'][:5]}"
    assert stats["final"] == TOTAL and stats["leftover"] == 0
    reads = stats["mget"] + stats["multi_mget"] + stats["multi_get"]
    print({k: v for k, v in stats.items() if k not in ("client_ids",)})
    assert reads >= 100 and min(stats["mget"], stats["multi_mget"], stats["multi_get"]) >= 20, stats
    assert stats["transfers"] >= 100 and stats["renames"] >= 5 and stats["copies"] >= 5, stats
    assert stats["watched"] >= 5, stats


def test_invariant_under_load_one_proxy(server):
    assert_invariant_held(run_invariant_load(server))


def test_invariant_under_load_two_proxies():
    srv = Server(workers=2, proxies=2)
    try:
        stats = run_invariant_load(srv)
        assert_invariant_held(stats)
        # With 2 proxies odd client ids are proxy 0's and even ones proxy 1's.
        assert {i % 2 for i in stats["client_ids"]} == {0, 1}, "the load should use both proxies"
    finally:
        srv.stop()


# -- 4. a proxy that dies while it may hold workers ------------------------------------------------

def shards_info(client: redis.Redis) -> tuple[dict[int, int], dict[int, int]]:
    """(worker pids, proxy pids) from INFO shards."""
    info = client.info("shards")
    workers = {int(k[5:]): v["pid"] for k, v in info.items() if re.fullmatch(r"shard\d+", k)}
    proxies = {int(k[5:]): v["pid"] for k, v in info.items() if re.fullmatch(r"proxy\d+", k)}
    return workers, proxies


def clients_by_proxy(srv: Server, per_proxy: int) -> dict[int, list[redis.Redis]]:
    """Open connections until each of the 2 proxies serves `per_proxy` of them."""
    groups: dict[int, list[redis.Redis]] = {0: [], 1: []}
    extra = []
    for _ in range(200):
        if all(len(g) >= per_proxy for g in groups.values()):
            break
        c = srv.client(socket_timeout=20)
        proxy = (c.client_id() - 1) % 2         # ids are proxy_index+1 + k*2
        (groups[proxy] if len(groups[proxy]) < per_proxy else extra).append(c)
    for c in extra:
        c.close()
    assert all(len(g) >= per_proxy for g in groups.values()), "could not reach both proxies"
    return groups


def test_dead_holder_does_not_wedge_the_other_proxy():
    srv = Server(workers=2, proxies=2)
    groups = {}
    try:
        admin = srv.client()
        workers, proxies = wait_until(lambda: (lambda w, p: (w, p) if all(p.values()) and len(p) == 2 else None)(
            *shards_info(admin)), 10)
        kids = {p.pid for p in srv.children()}
        assert set(workers.values()) | set(proxies.values()) <= kids
        groups = clients_by_proxy(srv, 3)
        victim, survivor = 0, 1
        # The admin connection must survive: it has to be on the surviving proxy.
        admin.close()
        admin = groups[survivor].pop()

        stop = threading.Event()
        lock = threading.Lock()
        results = {0: [], 1: []}          # (time, ok) per proxy group
        bad = []

        def load(proxy: int, c: redis.Redis, n: int) -> None:
            i = 0
            ka, kb = f"{A}dh{proxy}:{n}", f"{B}dh{proxy}:{n}"
            while not stop.is_set():
                i += 1
                v = f"{n}:{i}"
                try:
                    assert c.mset({ka: v, kb: v})
                    got = c.mget(ka, kb, f"{A}shared", f"{B}shared")
                    if proxy == survivor:
                        # Only the survivors write the pair everyone reads: a victim killed
                        # between its frames to the two workers could leave a pair torn.
                        c.mset({f"{A}shared": v, f"{B}shared": v})
                    ok = got[0] == got[1] == v.encode() and got[2] == got[3]
                    if not ok:
                        with lock:
                            bad.append((proxy, v, got))
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    if proxy == victim:
                        return                   # expected: its proxy is gone
                    with lock:
                        bad.append((proxy, v, repr(exc)))
                    return
                except redis.ResponseError as exc:
                    with lock:
                        bad.append((proxy, v, repr(exc)))
                    ok = False
                with lock:
                    results[proxy].append((time.monotonic(), ok))

        threads = [threading.Thread(target=load, args=(p, c, n), daemon=True)
                   for p, cs in groups.items() for n, c in enumerate(cs)]
        for t in threads:
            t.start()
        wait_until(lambda: len(results[0]) > 50 and len(results[1]) > 50, 10)
        # Kill the victim while it holds the coordinator's lock (so most likely the workers too):
        # stop it, look in /proc/locks, let it go on if it does not hold it, try again.
        holding = stop_while_holding(proxies[victim], coordinator_lock_path(srv))
        killed_at = time.monotonic()
        os.kill(proxies[victim], signal.SIGKILL)      # a PID of our own server's proxy

        # The surviving proxy's clients keep getting correct replies, within HOLD_TIMEOUT + margin.
        def survivor_progress():
            with lock:
                return [t for t, ok in results[survivor] if t > killed_at and ok]
        late = wait_until(lambda: len(survivor_progress()) >= 20, 15)
        stop.set()
        for t in threads:
            t.join(25)
        assert not any(t.is_alive() for t in threads), "a client of the surviving proxy is stuck"
        assert not bad, bad[:5]
        assert late, "the surviving proxy's clients got no replies within 15 s of the kill"
        times = [killed_at] + survivor_progress()
        stall = max(b - a for a, b in zip(times, times[1:]))
        print(f"victim held the coordinator lock when killed: {holding}; longest stall after: {stall:.2f}s")
        assert stall < 15

        # The supervisor restarts the proxy; workers are the same processes.
        def restarted():
            w, p = shards_info(admin)
            return (w, p) if p.get(victim) not in (0, None, proxies[victim]) else None
        after = wait_until(restarted, 15, 0.2)
        assert after, "the killed proxy was not restarted"
        new_workers, new_proxies = after
        assert new_workers == workers, "a worker was restarted"
        assert new_proxies[survivor] == proxies[survivor]
        assert all(psutil.pid_exists(pid) for pid in workers.values())
        # New clients reach the new proxy, and cross-shard work goes on from both proxies.
        fresh = clients_by_proxy(srv, 1)
        for proxy, (c,) in fresh.items():
            assert c.mset({A + "after": proxy, B + "after": proxy})
            assert c.mget(A + "after", B + "after") == [str(proxy).encode()] * 2
            with c.pipeline(transaction=True) as p:
                p.incr(A + "n").incr(B + "n")
                assert p.execute()
            c.close()
        assert admin.mget(A + "n", B + "n") == [b"2", b"2"]
        # The victim's own pairs: torn only if it died between its frames to the two workers
        # (a window of microseconds), so this is reported, not asserted.
        pairs = [admin.mget(f"{A}dh{victim}:{n}", f"{B}dh{victim}:{n}") for n in range(3)]
        print(f"victim pairs left torn: {sum(a != b for a, b in pairs)}")
        admin.close()
    finally:
        for cs in groups.values():
            for c in cs:
                c.close()
        srv.stop()


def test_stuck_holder_loses_its_hold():
    """A proxy stopped (SIGSTOP) while it holds workers: after HOLD_TIMEOUT the workers serve
    the other proxy's single-shard commands again; once it goes on, its clients get a reply
    (the result or an error, never a hang) and cross-shard work resumes everywhere."""
    srv = Server(workers=2, proxies=2)
    groups = {}
    victim_pid = None
    try:
        groups = clients_by_proxy(srv, 2)
        admin = groups[1].pop()
        _, proxies = wait_until(lambda: (lambda w, p: (w, p) if len(p) == 2 and all(p.values()) else None)(
            *shards_info(admin)), 10)
        victim_pid = proxies[0]
        stop = threading.Event()
        replies, errors_seen = [], []

        def load(n: int, c: redis.Redis) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    c.mset({f"{A}st:{n}": i, f"{B}st:{n}": i})
                    replies.append(i)
                except redis.ResponseError as exc:
                    errors_seen.append(str(exc))
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    errors_seen.append(repr(exc))
                    return
        threads = [threading.Thread(target=load, args=(n, c), daemon=True) for n, c in enumerate(groups[0])]
        for t in threads:
            t.start()
        wait_until(lambda: len(replies) > 50, 10)
        holding = stop_while_holding(victim_pid, coordinator_lock_path(srv))
        stopped_at = time.monotonic()
        try:
            # Single-shard commands of the other proxy, on both workers.
            assert admin.set(A + "single", 1) and admin.set(B + "single", 1)
            waited = time.monotonic() - stopped_at
            assert admin.mget(A + "single", A + "other") == [b"1", None]
        finally:
            os.kill(victim_pid, signal.SIGCONT)
        print(f"victim held the lock: {holding}; single-shard commands waited {waited:.2f}s")
        assert waited < 12                   # HOLD_TIMEOUT (5 s) and a margin
        # Cross-shard work resumes from both proxies; the victim's clients were not left hanging.
        n_before = len(replies)
        assert wait_until(lambda: len(replies) > n_before + 20, 15), "the stopped proxy's clients got no replies"
        stop.set()
        for t in threads:
            t.join(25)
        assert not any(t.is_alive() for t in threads)
        print(f"errors the stopped proxy's clients got: {sorted(set(errors_seen))}")
        assert all("hold" in e or "timed out" in e for e in errors_seen), errors_seen[:5]
        assert admin.mset({A + "after": 1, B + "after": 1})
        assert admin.mget(A + "after", B + "after") == [b"1", b"1"]
        pairs = [admin.mget(f"{A}st:{n}", f"{B}st:{n}") for n in range(2)]
        assert all(a == b for a, b in pairs), pairs
        admin.close()
    finally:
        if victim_pid is not None:
            try:
                os.kill(victim_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for cs in groups.values():
            for c in cs:
                c.close()
        srv.stop()


def flock_holder_pids(path: str) -> set[int]:
    """PIDs /proc/locks names as holding an flock on the file at `path`."""
    inode = os.stat(path).st_ino
    pids = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue
            if int(fields[5].rsplit(":", 1)[1]) == inode:
                pids.add(int(fields[4]))
    return pids


def stop_while_holding(pid: int, lock_path: str, timeout: float = 5.0) -> bool:
    """SIGSTOP our proxy `pid` at a moment it holds the coordinator's lock (True), or give up
    after `timeout` and leave it stopped anyway (False)."""
    deadline = time.monotonic() + timeout
    while True:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.01)               # the stop is delivered asynchronously
        if pid in flock_holder_pids(lock_path) or time.monotonic() > deadline:
            return pid in flock_holder_pids(lock_path)
        os.kill(pid, signal.SIGCONT)
        time.sleep(random.uniform(0.001, 0.02))


# -- 5. single-shard work never waits for the coordinator ---------------------------------------

def coordinator_lock_path(srv: Server) -> str:
    for child in srv.children():
        try:
            for f in child.open_files():
                if os.path.basename(f.path).startswith("shardd-coordinator-"):
                    return f.path
        except psutil.Error:
            continue
    pytest.skip("the coordinator's lock file is not visible among the server's open files")


def test_single_shard_work_while_the_coordinator_lock_is_held(server, r):
    """With the coordinator's flock taken by the test, a cross-shard MSETNX (two rounds under
    a hold) waits, and so does the cross-shard MGET sent behind it; single-worker MGET,
    MULTI/EXEC (with and without WATCH) and same-worker RENAME/COPY are answered."""
    r.mset({A + "1": "x", A + "2": "y", B + "1": "z"})
    fd = os.open(coordinator_lock_path(server), os.O_RDWR)
    waiting = server.connect()
    behind = server.connect()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        waiting.sendall(encode("MSETNX", A + "9", "v", B + "9", "v"))
        waiting.settimeout(0.5)
        with pytest.raises(socket.timeout):
            waiting.recv(100)              # the cross-shard MSETNX waits for the lock
        behind.sendall(encode("MGET", A + "1", B + "1"))
        behind.settimeout(0.3)
        with pytest.raises(socket.timeout):
            behind.recv(100)               # no operation goes without a hold while one waits

        c = server.client(socket_timeout=3, retry=Retry(NoBackoff(), 0))
        try:
            assert c.mget(A + "1", A + "2") == [b"x", b"y"]
            assert c.mget(B + "1", B + "1") == [b"z", b"z"]
            with c.pipeline(transaction=True) as p:
                p.set(A + "3", "w").mget(A + "1", A + "3").incr(A + "n")
                assert p.execute() == [True, [b"x", b"w"], 1]
            with c.pipeline(transaction=True) as p:
                p.watch(A + "1", A + "2")
                p.multi()
                p.set(A + "2", "y2").get(A + "1")
                assert p.execute() == [True, b"x"]
            assert c.rename(A + "3", A + "4") and c.copy(A + "4", A + "5")
            assert c.exists(A + "1", A + "2", A + "5") == 3
            assert c.delete(B + "nokey", B + "nokey2") == 0
        finally:
            c.close()
        waiting.settimeout(0.3)
        with pytest.raises(socket.timeout):
            waiting.recv(100)              # still waiting
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    try:
        waiting.settimeout(10)
        assert waiting.recv(100) == b":1\r\n"
        behind.settimeout(10)
        data = b""
        while not data.endswith(b"z\r\n"):
            chunk = behind.recv(100)
            assert chunk
            data += chunk
        assert data == b"*2\r\n$1\r\nx\r\n$1\r\nz\r\n"
    finally:
        waiting.close()
        behind.close()


def test_held_operations_never_see_half_of_an_unheld_mset(server):
    """With one proxy, a cross-shard MSET goes without a hold (each worker runs it in ring
    order). A script reading both keys runs under a hold across the workers: it must see both
    values of one MSET, never one new and one old, while MSETs stream in pipelined."""
    ka, kb = A + "pair", B + "pair"
    setup = server.client()
    setup.mset({ka: 0, kb: 0})
    setup.close()
    stop = threading.Event()
    seen = {"checks": 0, "bad": [], "errors": []}

    def writer() -> None:
        conn = RawConnection(server.port)
        i = 0
        try:
            while not stop.is_set():
                batch = b"".join(encode("MSET", ka, str(i + j), kb, str(i + j)) for j in range(16))
                conn.send(batch)
                for _ in range(16):
                    assert conn.read() == b"+OK\r\n"
                i += 16
        except Exception as exc:  # noqa: BLE001
            seen["errors"].append(repr(exc))
        finally:
            conn.close()

    def checker() -> None:
        c = server.client()
        try:
            while not stop.is_set():
                a, b = c.eval("return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}", 2, ka, kb)
                seen["checks"] += 1
                if a != b:
                    seen["bad"].append((a, b))
                    stop.set()
        except Exception as exc:  # noqa: BLE001
            seen["errors"].append(repr(exc))
        finally:
            c.close()

    run_threads((writer, writer, checker, checker), stop, 3.0)
    assert not seen["errors"], seen["errors"][:3]
    assert not seen["bad"], seen["bad"][:3]
    assert seen["checks"] >= 50, seen
