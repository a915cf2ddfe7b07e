"""Commands whose keys span workers, and commands every worker answers.

Each splits into per-worker sub-commands and merges the sub-replies in argument order.
Until the coordinator (atomicity issue) lands, a command spanning workers is not atomic.
"""
from __future__ import annotations

import random
from typing import Callable

from .. import errors, resp
from ..commands import ALL, MULTI, cross_shard_command, proxy_command
from ..slots import keyslot
from .replies import decode, decode_or_raise


def group_keys(conn, keys: list[bytes], width: int = 1) -> dict[int, list[int]]:
    """Positions of each key (every `width` args) grouped by worker, in order."""
    slotmap = conn.proxy.slotmap
    groups: dict[int, list[int]] = {}
    for pos in range(0, len(keys), width):
        groups.setdefault(slotmap[keyslot(keys[pos])], []).append(pos)
    return groups


def split(conn, argv: list[bytes], width: int = 1) -> tuple[list[tuple[int, list[bytes], int]], list[list[int]]]:
    """Per-worker sub-commands of a multi-key command (key, or key+value when width 2)."""
    args = argv[1:]
    parts, positions = [], []
    for w, poss in group_keys(conn, args, width).items():
        sub = [argv[0]]
        for p in poss:
            sub.extend(args[p:p + width])
        parts.append((w, sub, keyslot(args[poss[0]])))
        positions.append(poss)
    return parts, positions


def sum_integers(parts: list[bytes]) -> bytes:
    return resp.integer(sum(decode_or_raise(p) for p in parts))


def all_ok(parts: list[bytes]) -> bytes:
    for p in parts:
        decode_or_raise(p)
    return resp.OK


@proxy_command("mget", route=MULTI)
def mget(conn, argv: list[bytes]) -> None:
    parts, positions = split(conn, argv)
    n = len(argv) - 1
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        values: list[bytes | None] = [None] * n
        for poss, reply in zip(positions, replies):
            for p, v in zip(poss, decode_or_raise(reply)):
                values[p] = v
        return resp.bulk_array(values, proto)
    conn.fanout(parts, merge)


def split_pairs(conn, argv: list[bytes]) -> list[tuple[int, list[bytes], int]]:
    """Per-worker sub-commands of MSET-like key/value pairs."""
    if len(argv) % 2 == 0:
        raise errors.CommandError(errors.wrong_arity(argv[0].decode("utf-8", "replace").lower()))
    return split(conn, argv, 2)[0]


@proxy_command("mset", route=MULTI)
def mset(conn, argv: list[bytes]) -> None:
    conn.fanout(split_pairs(conn, argv), all_ok)


@proxy_command("msetnx", route=MULTI)
def msetnx(conn, argv: list[bytes]) -> None:
    parts = split_pairs(conn, argv)
    if len(parts) == 1:
        conn.fanout(parts, lambda replies: replies[0])
        return None
    # Across workers: refuse if any key exists, then set them all.
    exists_parts = [(w, [b"EXISTS"] + sub[1::2], slot) for w, sub, slot in parts]
    set_parts = [(w, [b"MSET"] + sub[1:], slot) for w, sub, slot in parts]

    def after_exists(replies: list[bytes]) -> bytes | None:
        if sum(decode_or_raise(r) for r in replies):
            return resp.ZERO
        return conn.followup(set_parts, lambda rs: all_ok(rs) and resp.ONE)
    conn.fanout(exists_parts, after_exists)


@proxy_command("del", "exists", "unlink", "touch", route=MULTI)
def count_keys(conn, argv: list[bytes]) -> None:
    parts, _ = split(conn, argv)
    conn.fanout(parts, sum_integers)


def to_all(conn, argv: list[bytes], merge: Callable[[list[bytes]], bytes]) -> None:
    ranges = conn.proxy.info.get("slot_ranges")
    parts = [(w, argv, lo) for w, (lo, _) in enumerate(ranges)]
    conn.fanout(parts, merge)


@proxy_command("dbsize", route=ALL)
def dbsize(conn, argv: list[bytes]) -> None:
    to_all(conn, argv, sum_integers)


@proxy_command("flushdb", "flushall", route=ALL)
def flush(conn, argv: list[bytes]) -> None:
    to_all(conn, argv, all_ok)


@proxy_command("keys", route=ALL)
def keys(conn, argv: list[bytes]) -> None:
    def merge(replies: list[bytes]) -> bytes:
        found: list[bytes] = []
        for r in replies:
            found.extend(decode_or_raise(r))
        return resp.bulk_array(found, 2)
    to_all(conn, argv, merge)


@proxy_command("randomkey", route=ALL)
def randomkey(conn, argv: list[bytes]) -> None:
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        found = [k for k in (decode_or_raise(r) for r in replies) if k is not None]
        return resp.bulk(random.choice(found)) if found else resp.null(proto)
    to_all(conn, argv, merge)


@proxy_command("scan", route=ALL)
def scan(conn, argv: list[bytes]) -> bytes | None:
    """SCAN's cursor is the next hash slot to visit: it goes to the worker owning it."""
    from ..worker.t_keys import parse_cursor
    cursor = parse_cursor(argv[1])
    if cursor >= 16384:
        return resp.array([resp.bulk(b"0"), resp.EMPTY_ARRAY])
    conn.fanout([(conn.proxy.slotmap[cursor], argv, cursor)], lambda replies: replies[0])
    return None


@cross_shard_command("lcs")
def lcs_across(conn, argv: list[bytes]) -> None:
    """LCS of keys on two workers: fetch both values, compute here."""
    from ..worker.t_string import lcs_reply
    slotmap = conn.proxy.slotmap
    parts = [(slotmap[keyslot(k)], [b"GET", k], keyslot(k)) for k in argv[1:3]]
    limit = conn.proxy.config.values["proto-max-bulk-len"]
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        values = []
        for r in replies:
            try:
                values.append(decode_or_raise(r) or b"")
            except errors.CommandError as exc:
                if str(exc).startswith("WRONGTYPE"):
                    raise errors.CommandError(errors.LCS_NOT_STRINGS)
                raise
        return lcs_reply(values[0], values[1], argv, limit, proto)
    conn.fanout(parts, merge)
