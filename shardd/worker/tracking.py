"""Client tracking, the worker's half (after Valkey's tracking.c; the proxy's half is
proxy/tracking.py).

- Reads in frames flagged TRACK: the keys of each read-only command are remembered with the
  reading client (key name → {client id: proxy link}; one table for all dbs, as Valkey's).
- Every write (keyspace.on_write, called by Db.touch for each key a command, an expiry or an
  eviction changes): the clients that read the key get an invalidation and the entry goes;
  proxies with BCAST clients get every written key; a flush (key None) is reported by worker 0
  alone, which every FLUSHALL/FLUSHDB reaches.

Records wait in per-proxy lists and leave with the turn's notifications (notify.Events.flush)
as a WAKE frame of kind 4.
"""
from __future__ import annotations

import struct

from .. import resp
from ..commands import internal_command
from . import keyspace

TRACKING_FRAME = 4
RECORD = struct.Struct("<BQQI")        # kind, target client (0: any), writer client, key length
KEY, BCAST_KEY, FLUSH = 0, 1, 2


class WorkerTracking:
    def __init__(self, events) -> None:
        self.events = events
        self.worker = events.worker
        self.ctx = events.ctx
        self.table: dict[bytes, dict[int, int]] = {}    # key → {client id: link}
        self.items = 0                                   # (key, client) pairs in the table
        self.proxies: dict[int, tuple[int, int]] = {}   # link → (has tracking clients, has BCAST clients)
        self.client_links: list[int] = []
        self.bcast_links: list[int] = []
        self.out: dict[int, list[bytes]] = {}           # link → this turn's records
        self.flushed = False

    def watching_reads(self) -> bool:
        """Some proxy has tracking clients: their TRACK frames need Events.run."""
        return bool(self.client_links)

    def configure(self, link: int, clients: int, bcast: int) -> None:
        self.proxies[link] = (clients, bcast)
        self.client_links = [lk for lk, (c, _) in self.proxies.items() if c]
        self.bcast_links = [lk for lk, (_, b) in self.proxies.items() if b]
        if not self.client_links:
            self.table.clear()
            self.items = 0
        keyspace.on_write = self.written if self.client_links else None
        self.events.refresh()

    def remember(self, spec, argv: list[bytes], client_id: int, link: int) -> None:
        if "pubsub" in spec.flags:
            return
        self.note_reads(spec.keys(argv), client_id, link)

    def note_reads(self, keys, client_id: int, link: int) -> None:
        """These keys were read by this client: it gets an invalidation when one changes."""
        table = self.table
        for key in keys:
            readers = table.get(key)
            if readers is None:
                readers = table[key] = {}
            if client_id not in readers:
                readers[client_id] = link
                self.items += 1
        limit = self.worker.config.values.get("tracking-table-max-keys", 0)
        if limit and len(table) > max(limit // self.worker.n_shards, 1):
            self.limit_table(max(limit // self.worker.n_shards, 1))

    def limit_table(self, limit: int) -> None:
        """trackingLimitUsedSlots: over this worker's share of tracking-table-max-keys, the
        oldest keys leave the table and their readers get an invalidation, as if written."""
        table = self.table
        while len(table) > limit:
            key = next(iter(table))
            self.invalidate(key, table.pop(key), 0)

    def invalidate(self, key: bytes, readers: dict[int, int], writer: int) -> None:
        out = self.out
        for client_id, link in readers.items():
            out.setdefault(link, []).append(RECORD.pack(KEY, client_id, writer, len(key)) + key)
        self.items -= len(readers)
        self.events.queued = True

    def written(self, db, key: bytes | None) -> None:
        """keyspace.on_write: `key` of `db` changed (None: the db was flushed)."""
        writer = self.ctx.client_id
        out = self.out
        if key is None:
            self.table.clear()
            self.items = 0
            if self.worker.shard == 0 and not self.flushed:
                self.flushed = True
                record = RECORD.pack(FLUSH, 0, writer, 0)
                for link in self.client_links:
                    out.setdefault(link, []).append(record)
                self.events.queued = True
            return
        readers = self.table.pop(key, None)
        if readers:
            self.invalidate(key, readers, writer)
        if self.bcast_links:
            record = RECORD.pack(BCAST_KEY, 0, writer, len(key)) + key
            for link in self.bcast_links:
                out.setdefault(link, []).append(record)
            self.events.queued = True

    def flush(self) -> None:
        out, self.out = self.out, {}
        self.flushed = False
        links = self.worker.links
        for index, records in out.items():
            self.events.send(links[index], TRACKING_FRAME, b"".join(records))


@internal_command("__tracking", 3)
def tracking_command(ctx, argv: list[bytes]) -> bytes:
    """__tracking <has clients> <has BCAST clients>: what the sending proxy now has."""
    ctx.stats["worker"].events.tracking.configure(ctx.link, int(argv[1]), int(argv[2]))
    return resp.OK


@internal_command("__track", -2)
def track_command(ctx, argv: list[bytes]) -> bytes:
    """__track key …: remember these keys as read by the frame's client (reads whose keys
    span workers run under the coordinator; the proxy registers their keys first)."""
    ctx.stats["worker"].events.tracking.note_reads(argv[1:], ctx.client_id, ctx.link)
    return resp.OK
