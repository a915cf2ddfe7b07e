"""The execution context a worker hands to every command handler."""
from __future__ import annotations

from typing import Any

from .keyspace import Db


class Ctx:
    """One per worker, updated per frame (db, proto, client) and per command (slot).

    Handlers have the signature `handler(ctx, argv) -> bytes` (an encoded RESP reply) and
    raise `shardd.errors.CommandError` for error replies.
    """

    __slots__ = ("db", "dbs", "proto", "slot", "client_id", "config", "shard", "stats", "watching",
                 "link", "block_mode", "blocked", "ready_key")

    def __init__(self, dbs: list[Db], config: dict[str, Any], shard: int = 0) -> None:
        self.dbs = dbs
        self.db = dbs[0]
        self.proto = 2
        self.slot = 0
        self.client_id = 0
        self.config = config      # typed config values by name, e.g. config["proto-max-bulk-len"]
        self.shard = shard
        self.stats: dict[str, int] = {}
        self.watching: dict[int, list[tuple[Db, bytes]]] = {}   # client id → its WATCHed keys here
        self.link = 0             # the proxy (ring link index) the current frame came from
        self.block_mode = 0       # blocking.NOWAIT / WAIT / SERVE / REMOTE
        self.blocked: Any = None  # the worker's blocking.Blocked
        self.ready_key: bytes | None = None   # SERVE: the key that became ready
