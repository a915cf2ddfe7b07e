"""The proxy process: client connections, parsing, routing by slot, reply order.

Per client read event: hiredis parses the bytes, each command is routed, the commands of one
worker become one frame (with the raw bytes forwarded when the read held whole commands),
and replies are slotted back into the client's order as the workers answer. A read of plain
single-key commands that spans two workers goes whole to both with a map of which command
is whose (SPLIT); each answers with its runs and the proxy interleaves them.
"""
from __future__ import annotations

import array
import asyncio
import os
import re
import socket
import time
from binascii import crc_hqx
from collections import deque
from dataclasses import dataclass
from itertools import groupby
from time import perf_counter_ns
from typing import Callable

import hiredis

from .. import commands, errors, log, resp
from ..commands import SINGLE, CommandSpec
from ..frames import (CLIENTS, EXEC_ALL, FRAMED_REQUEST, NOTOUCH, ONE_COMMAND_SECTION, REPLY, REQUEST, SECTION,
                      SPLIT, WAKE_BID, split_runs)
from ..ring import FrameReader, FrameWriter, Waker
from ..slots import SLOT_MASK, keyslot
from ..worker.server_cmds import OpStats, may_replicate
from . import transactions
from ..worker.names import original_argv
from .request_parser import RequestParser



def suspicious_pattern(max_bulk_len: int) -> re.Pattern:
    """Bulk or multibulk headers long enough to be over the limit: the strict parser refuses
    them at the header, where hiredis would buffer the payload. Only searched when hiredis is
    left holding a partial request, or a read is longer than the limit."""
    digits = min(8, len(str(max_bulk_len)))
    return re.compile(rb"[*$]-?\d{%d,}" % digits)


# Elements hiredis takes as strings but Valkey refuses (`+`, `(`, `=`). The literal prefix keeps
# the search a memchr-speed scan over every read; a bulk payload that happens to match only
# costs the slower path.
NON_BULK_ELEMENT = re.compile(rb"\r\n[+(=]").search


# With output buffer limits set, the commands of one client in flight at once: a read holding
# more (a long pipeline) runs in pieces, each once the previous one has answered and the client
# is reading its replies, so what one client asks for cannot pile up far beyond its limits.
# Without limits (Valkey's default for normal clients) pipelines are not cut.
MAX_IN_FLIGHT = 128
NO_CAP = 1 << 62
# CLIENT REPLY modes (Client.reply_mode bits).
REPLY_OFF, REPLY_SKIP, REPLY_SKIP_NEXT = 1, 2, 4
PROTECTED_MODE_DENIED = (
    b"-DENIED Valkey is running in protected mode because protected mode is enabled and no password "
    b"is set for the default user. In this mode connections are only accepted from the loopback "
    b"interface. If you want to connect from external computers to Valkey you may adopt one of the "
    b"following solutions: 1) Just disable protected mode sending the command 'CONFIG SET "
    b"protected-mode no' from the loopback interface by connecting to Valkey from the same host the "
    b"server is running, however MAKE SURE Valkey is not publicly accessible from internet if you do "
    b"so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the "
    b"protected mode by editing the Valkey configuration file, and setting the protected mode option "
    b"to 'no', and then restarting the server. 3) If you started the server manually just for "
    b"testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password "
    b"for the default user. NOTE: You only need to do one of the above things in order for the server "
    b"to start accepting connections from the outside.\r\n")


@dataclass
class WorkerLink:
    """This proxy's end of the rings shared with one worker."""
    requests: FrameWriter
    control: FrameWriter
    replies: FrameReader
    worker_waker: Waker
    epoch: memoryview      # [0] the worker's restart generation, [1] the one we resynced to


class Entry:
    """One place in a client's reply order; data is None until its reply is known."""
    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data

    def fill(self, data: bytes) -> None:
        self.data = data


class MutedEntry(Entry):
    """A place whose reply is dropped (CLIENT REPLY OFF / SKIP): always ready, always empty.
    An Entry already handed out becomes one by a change of class."""
    __slots__ = ()

    @property
    def data(self) -> bytes:
        return b""

    @data.setter
    def data(self, value) -> None:
        pass


class Gather:
    """Sub-replies of a command split over workers, merged into one Entry when all are in."""
    __slots__ = ("entry", "parts", "missing", "merge")

    def __init__(self, entry: Entry, n: int, merge: Callable[[list[bytes]], bytes]) -> None:
        self.entry = entry
        self.parts: list[bytes | None] = [None] * n
        self.missing = n
        self.merge = merge

    def part(self, i: int) -> "GatherPart":
        return GatherPart(self, i)


class GatherPart:
    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def fill(self, data: bytes) -> None:
        g = self.gather
        g.parts[self.index] = data
        g.missing -= 1
        if g.missing == 0:
            settle(g.entry, g.merge, g.parts)


class SplitReply:
    """The place of a read split over two workers (SPLIT), filled once both have answered.
    It is the target of the first command's worker; `second` is the other's."""
    __slots__ = ("entry", "workers", "parts", "second")

    def __init__(self, entry: Entry, workers: bytes) -> None:
        self.entry = entry
        self.workers = workers
        self.parts: list[bytes | None] = [None, None]
        self.second = SecondPart(self)

    def fill(self, data: bytes) -> None:
        self.fill_part(0, data)

    def fill_part(self, index: int, data: bytes) -> None:
        parts = self.parts
        parts[index] = data
        if parts[1 - index] is not None:
            self.entry.data = merge_split(self.workers, parts)


class SecondPart:
    __slots__ = ("reply",)

    def __init__(self, reply: SplitReply) -> None:
        self.reply = reply

    def fill(self, data: bytes) -> None:
        self.reply.fill_part(1, data)


def merge_split(workers: bytes, parts: list[bytes]) -> bytes:
    """The replies of a read split over two workers (a SPLIT section each, parts[0] from the
    first command's worker): their runs alternate, that worker's first."""
    first, second = split_runs(parts[0]), split_runs(parts[1])
    if first is None or second is None or not 0 <= len(first) - len(second) <= 1:
        return failed_split(workers, parts)
    chunks = [b""] * (len(first) + len(second))
    chunks[0::2] = first
    chunks[1::2] = second
    return b"".join(chunks)


def failed_split(workers: bytes, parts: list[bytes]) -> bytes:
    """merge_split when a part is an error in place of runs (its worker restarted, or the
    replies were too large): that error answers each of the worker's commands."""
    runs = [split_runs(part) for part in parts]
    taken = [0, 0]
    out = []
    for w, commands_of_run in groupby(workers):
        k = 0 if w == workers[0] else 1
        got = runs[k]
        if got is not None and taken[k] < len(got):
            out.append(got[taken[k]])
        else:
            error = parts[k] if parts[k][:1] == b"-" else resp.error("ERR a shard worker's replies were lost")
            out.append(error * sum(1 for _ in commands_of_run))
        taken[k] += 1
    return b"".join(out)


def settle(entry: Entry, produce: Callable, arg) -> None:
    """Fill a reply place with produce(arg): bytes, an error, or another round of work."""
    try:
        result = produce(arg)
    except errors.CommandError as exc:
        result = resp.error(str(exc))
    if isinstance(result, Followup):
        result.conn.fanout_into(entry, result.parts, result.merge)
    else:
        entry.data = result


@dataclass
class Followup:
    """A merge's answer when it needs another round of sub-commands (fills the same place)."""
    conn: "Client"
    parts: list
    merge: Callable


class FrameBuilder:
    """The commands of one client read event bound for one worker."""
    __slots__ = ("indices", "slots", "runs", "targets", "extras", "n_raw", "flags", "hold")

    def __init__(self, n_raw: int, flags: int = 0, hold: int = 0) -> None:
        self.flags = flags
        self.hold = hold
        self.indices: list[int] = []
        self.slots: list[int] = []
        self.runs: list[int] = []
        self.targets: list = []
        self.extras: list[bytes] = []
        self.n_raw = n_raw

    def add_extra(self, argv: list[bytes], slot: int) -> None:
        self.indices.append(self.n_raw + len(self.extras))
        self.extras.append(resp.command(argv))
        self.slots.append(slot)

    def turn_read(self, raw: bytes | None, conn: "Client") -> tuple | None:
        """These commands as a section of the turn's frame to their worker (Proxy.add_to_turn),
        or None when there are none."""
        if not self.indices:
            return None
        slots = self.slots
        if raw is not None and len(self.indices) == self.n_raw and not self.extras:
            return conn, self.targets, self.runs, None, slots, raw, conn.db, conn.proto
        if raw is None or self.indices[0] >= self.n_raw:
            return conn, self.targets, self.runs, None, slots, b"".join(self.extras), conn.db, conn.proto
        return conn, self.targets, self.runs, self.indices, slots, b"".join((raw, *self.extras)), conn.db, conn.proto

    def build(self, raw: bytes | None, bid: int, client_id: int, db: int, proto: int) -> bytes:
        """The whole frame, ring length prefix included."""
        n = len(self.indices)
        runs = array.array("I", self.runs).tobytes()
        slots = array.array("H", self.slots).tobytes()
        if raw is not None and n == self.n_raw and not self.extras:
            parts = [runs, slots, raw]
            flags = EXEC_ALL
        elif raw is None or not self.indices or self.indices[0] >= self.n_raw:
            parts = [runs, slots, *self.extras]   # only commands we encoded: all ours, in order
            flags = EXEC_ALL
        else:
            parts = [runs, array.array("I", self.indices).tobytes(), slots, raw, *self.extras]
            flags = 0
        size = REQUEST.size + sum(map(len, parts))
        return b"".join((FRAMED_REQUEST.pack(size, bid, client_id, db, proto, flags | self.flags, n,
                                             len(self.runs), self.hold), *parts))


@dataclass
class Query:
    """A question to every proxy, answered into one place of a client's replies."""
    conn: "Client"
    entry: Entry
    answers: list
    combine: Callable


# what → handler(proxy, args, asking client or None) -> answer; the command families register them.
QUERIES: dict[str, Callable] = {}


def proxy_query(what: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        QUERIES[what] = fn
        return fn
    return register


class Proxy:
    """Process-wide state of one proxy."""

    def __init__(self, index: int, n_proxies: int, links: list[WorkerLink], waker: Waker,
                 config, slotmap: bytes, server_info: dict) -> None:
        self.index = index
        self.n_proxies = n_proxies
        self.links = links
        self.waker = waker
        self.config = config
        self.slotmap = slotmap
        self.info = server_info
        self.clients: dict[int, Client] = {}
        self.pending: dict[int, tuple] = {}
        self.blocked: dict[int, object] = {}    # client id → its blocking.Waiting
        self._internal: Client | None = None
        from .persistence import Snapshots
        self.snapshots = Snapshots(self)
        from .pubsub import Registry
        self.pubsub = Registry(self)       # subscriptions, monitors, tracking clients (pubsub.py)
        self.next_bid = 1
        self.next_client_id = index + 1
        self.poll_scheduled = False
        self.to_wake = [False] * len(links)
        self.turn_reads: list[list[tuple]] = [[] for _ in links]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.names: dict[bytes, CommandSpec] = {}
        self.stats = {"total_connections_received": 0, "total_commands_processed": 0,
                      "rejected_connections": 0, "total_net_input_bytes": 0,
                      "total_net_output_bytes": 0, "blocked_clients": 0, "mem_clients_normal": 0}
        self.start_time = time.time()
        self.queries: dict[int, Query] = {}
        self.long_header = suspicious_pattern(config.values["proto-max-bulk-len"]).search
        self.max_bulk_len = config.values["proto-max-bulk-len"]
        self.opstats = OpStats(config.values, in_proxy=True)
        self.limit_stats = {"client_query_buffer_limit_disconnections": 0,
                            "client_output_buffer_limit_disconnections": 0, "evicted_clients": 0}
        # CLIENT PAUSE: "write" or "all" until pause_end (unix time); postponed clients wait.
        self.pause_actions: str | None = None
        self.pause_end = 0.0
        self.pause_timer: asyncio.TimerHandle | None = None
        self.postponed: dict[int, "Client"] = {}
        self.build_names()
        from .acl import Acl
        self.acl = Acl(self)
        from .client_eviction import configure
        self.client_eviction = None        # client_eviction.ClientEviction while maxmemory-clients is set
        configure(self)

    def build_names(self) -> None:
        """The command names clients may call, after rename-command."""
        names = dict(commands.BY_NAME)
        for old, new in self.config.renames.items():
            spec = commands.COMMANDS.get(old.lower())
            if spec is None:
                continue
            names.pop(old.lower().encode(), None)
            names.pop(old.upper().encode(), None)
            if new:
                names[new.encode()] = spec
                names[new.lower().encode()] = spec
                names[new.upper().encode()] = spec
        self.names = names
        from ..worker.names import renamed_names
        self.renamed = renamed_names(self.config.renames)   # new name → original, for handlers

    # -- server-wide state shared with the other proxies -----------------------------------
    STAT_FIELDS = ("pid", "connected_clients", "total_connections_received", "total_commands_processed",
                   "total_net_input_bytes", "total_net_output_bytes", "rejected_connections",
                   "blocked_clients", "mem_clients_normal")   # u64 fields: each proxy has 128 bytes
    GAUGES = ("blocked_clients", "mem_clients_normal")      # what CONFIG RESETSTAT leaves alone

    def publish_stats(self) -> None:
        """Copy this proxy's counters to shared memory, where every proxy's INFO reads them."""
        view = self.info["proxy_stats"][self.index]
        view[0] = os.getpid()
        view[1] = len(self.clients)
        self.stats["blocked_clients"] = len(self.blocked) + len(self.postponed)
        for i, name in enumerate(self.STAT_FIELDS[2:], 2):
            view[i] = self.stats[name]

    def shared_stats(self) -> dict[str, int]:
        self.publish_stats()
        totals = dict.fromkeys(self.STAT_FIELDS[1:], 0)
        for view in self.info["proxy_stats"]:
            for i, name in enumerate(self.STAT_FIELDS[1:], 1):
                totals[name] += view[i]
        return totals

    def shared_proxy_pids(self) -> list[int]:
        return [view[0] for view in self.info["proxy_stats"]]

    def reset_stats(self) -> None:
        for name in self.stats:
            if name not in self.GAUGES:
                self.stats[name] = 0
        self.publish_stats()

    def apply_config(self, pairs: list[tuple[str, str]]) -> None:
        before = dict(self.config.values)
        self.config.config_set(pairs)
        self.acl.config_set(pairs)
        self.pubsub.config_set(pairs)
        from .tls import tls_config_set
        tls_config_set(self, pairs, before)
        self.listeners.config_set(pairs, before)
        self.config_changed()

    def config_changed(self) -> None:
        self.long_header = suspicious_pattern(self.config.values["proto-max-bulk-len"]).search
        self.max_bulk_len = self.config.values["proto-max-bulk-len"]
        self.opstats.configure(self.config.values)
        for c in self.clients.values():
            c.set_output_limits()
        from .client_eviction import configure
        configure(self)

    # -- CLIENT PAUSE ----------------------------------------------------------------------
    def pause(self, actions: str, end: float) -> None:
        """Pause clients' commands ("write" or "all") until `end` (unix time). A pause in
        force keeps the stricter mode and the later end, as Valkey's pauseActions."""
        if self.pause_actions is not None:
            if self.pause_actions == "all":
                actions = "all"
            end = max(end, self.pause_end)
        self.pause_actions = actions
        self.pause_end = end
        for c in self.clients.values():
            c.detour = True
        if self.pause_timer is not None:
            self.pause_timer.cancel()
        self.pause_timer = self.loop.call_later(max(end - time.time(), 0), self.pause_expired)

    def pause_expired(self) -> None:
        self.pause_timer = None
        if time.time() >= self.pause_end:
            self.unpause()
        else:
            self.pause_timer = self.loop.call_later(self.pause_end - time.time(), self.pause_expired)

    def unpause(self) -> None:
        """End the pause: postponed clients run what they sent meanwhile, in arrival order."""
        if self.pause_timer is not None:
            self.pause_timer.cancel()
            self.pause_timer = None
        self.pause_actions = None
        self.pause_end = 0.0
        for c in self.clients.values():
            c.detour = bool(c.reply_mode)
        waiting, self.postponed = list(self.postponed.values()), {}
        for c in waiting:
            self.loop.call_soon(c.run_deferred)

    def request_shutdown(self, save: bool | None = None) -> None:
        """Ask the supervisor to stop; the workers save on the way out per `save` (None:
        when save points are set)."""
        self.send_control({"op": "shutdown", "save": save})

    def internal_client(self) -> "Client":
        """A client with no socket, for work the proxy starts itself (save points)."""
        if self._internal is None:
            self._internal = Client(self)
            self._internal.closed = True
        return self._internal

    def send_control(self, msg: dict) -> None:
        from ..supervisor import send_message
        try:
            send_message(self.info["control"], msg)
        except OSError:
            pass

    def on_control(self) -> None:
        from ..supervisor import recv_messages
        try:
            msgs = recv_messages(self.info["control"])
        except OSError:
            msgs = []
        for msg in msgs:
            op = msg.get("op")
            if op == "query":
                answer = QUERIES[msg["what"]](self, msg["args"], None)
                self.send_control({"op": "answer", "to": msg["from"], "qid": msg["qid"], "data": answer})
            elif op == "answer":
                query = self.queries.get(msg["qid"])
                if query is not None:
                    query.answers.append(msg["data"])
                    if len(query.answers) >= self.n_proxies:
                        self.finish_query(msg["qid"])

    def ask_all(self, conn: "Client", what: str, args, combine: Callable[[list], bytes]) -> None:
        """Server-wide state: every proxy (this one included) answers `what`; `combine`
        turns the answers into this client's reply (or a Followup for the workers)."""
        entry = Entry()
        conn.out.append(entry)
        conn.last_worker = -1
        query = Query(conn, entry, [QUERIES[what](self, args, conn)], combine)
        if self.n_proxies == 1:
            settle(entry, combine, query.answers)
            return
        qid = self.next_bid = self.next_bid + 1
        self.queries[qid] = query
        self.send_control({"op": "query", "qid": qid, "from": self.index, "what": what, "args": args})
        self.loop.call_later(2.0, self.finish_query, qid)

    def finish_query(self, qid: int) -> None:
        query = self.queries.pop(qid, None)
        if query is not None:
            settle(query.entry, query.combine, query.answers)
            query.conn.flush_out()

    def close_idle_clients(self) -> None:
        """`timeout`: close clients idle that long, except those waiting on a reply or in
        the middle of a cross-shard operation (Valkey spares blocked clients too)."""
        limit = self.config.values.get("timeout", 0)
        if not limit:
            return
        deadline = time.time() - limit
        for c in list(self.clients.values()):
            if c.last_interaction < deadline and not c.out and not c.paused and c.transport is not None:
                c.transport.close()

    def lookup(self, name: bytes) -> CommandSpec | None:
        spec = self.names.get(name)
        if spec is None:
            spec = self.names.get(name.lower())
        return spec

    def new_client_id(self) -> int:
        cid = self.next_client_id
        self.next_client_id += self.n_proxies
        return cid

    # -- rings ---------------------------------------------------------------------------
    def take_batch_id(self) -> int:
        bid = self.next_bid
        self.next_bid = bid + 1 if bid < 0xFFFFFFF0 else 1
        return bid

    def send_frame(self, worker: int, bid: int, payload: bytes, conn: "Client | None", targets: list | None,
                   control: bool = False) -> None:
        link = self.links[worker]
        if not control and self.turn_reads[worker]:
            self.send_reads(worker)     # a ring's frames leave in the order they were made
        if targets is not None:
            self.pending[bid] = (conn, targets, worker)
        (link.control if control else link.requests).send_framed(payload)
        # Wake-ups wait for the end of this loop turn: one eventfd write per worker per turn
        # however many clients sent it frames meanwhile.
        self.to_wake[worker] = True
        if not self.poll_scheduled:
            self.poll_scheduled = True
            self.loop.call_soon(self.poll)

    def add_to_turn(self, worker: int, read: tuple) -> None:
        """A client read for one worker: it leaves at the end of this loop turn, in one frame
        with the other clients' reads for that worker (per-frame costs shared by all). `read`
        is (client, reply targets, runs, command indices or None for all, slots, request
        bytes, db, protocol), the db and protocol as they were when the commands were read; for
        a read split over two workers (SPLIT) it is (client, [its SplitReply or SecondPart], this worker's
        byte, the worker map, the packed slots of every command, request bytes, db, protocol)."""
        self.turn_reads[worker].append(read)
        if not self.poll_scheduled:
            self.poll_scheduled = True
            self.loop.call_soon(self.poll)

    def send_turn(self) -> None:
        """One frame per worker with every client read of this loop turn bound for it."""
        for w, reads in enumerate(self.turn_reads):
            if reads:
                self.send_reads(w)

    def send_reads(self, w: int) -> None:
        """One frame to worker w with the client reads gathered for it so far."""
        reads = self.turn_reads[w]
        self.turn_reads[w] = []
        bid = self.take_batch_id()
        parts = []
        conns = []
        targets = []
        for conn, read_targets, runs, indices, slots, raw, db, proto in reads:
            n = len(slots)
            conns.append(conn)
            targets.extend(read_targets)
            if n == 1 and indices is None:
                parts.append(ONE_COMMAND_SECTION.pack(conn.id, db, proto, EXEC_ALL, 1, 1, len(raw), 1, slots[0]))
                parts.append(raw)
                continue
            if indices.__class__ is bytes:      # the worker map of a read split over two workers
                parts += (SECTION.pack(conn.id, db, proto, SPLIT, len(indices), runs, len(raw)), indices, slots, raw)
                continue
            flags = EXEC_ALL if indices is None else 0
            parts.append(SECTION.pack(conn.id, db, proto, flags, n, len(runs), len(raw)))
            parts.append(array.array("I", runs).tobytes())
            if indices is not None:
                parts.append(array.array("I", indices).tobytes())
            parts.append(array.array("H", slots).tobytes())
            parts.append(raw)
        size = REQUEST.size + sum(map(len, parts))
        parts.insert(0, FRAMED_REQUEST.pack(size, bid, 0, 0, 2, CLIENTS, 0, len(reads), 0))
        self.send_frame(w, bid, b"".join(parts), conns, targets)

    def on_wake(self) -> None:
        self.waker.drain()
        self.poll()

    def poll(self) -> None:
        self.send_turn()            # before clearing the flag: these frames need no second poll
        self.poll_scheduled = False
        to_wake = self.to_wake
        for w, link in enumerate(self.links):
            if to_wake[w]:
                to_wake[w] = False
                link.worker_waker.wake_if_sleeping()
        while True:
            self.drain_replies()
            if not self.pending and not self.blocked:
                return
            # Ask the workers for a wake-up, then look once more: a reply published before
            # the flag was visible would otherwise wait for nobody.
            self.waker.prepare_sleep()
            if not any(link.replies.ring.available() for link in self.links):
                return
            self.waker.cancel_sleep()

    def take_over(self, timeout: float = 10.0) -> None:
        """A restarted proxy: have every worker drop what our predecessor left in our rings
        (and any hold it had), then skip the replies it never read."""
        for link in self.links:
            link.epoch[2] += 1
            link.worker_waker.wake_if_sleeping(force=True)
        deadline = time.monotonic() + timeout
        while any(link.epoch[2] != link.epoch[3] for link in self.links) and time.monotonic() < deadline:
            time.sleep(0.001)
        for link in self.links:
            ring = link.replies.ring
            ring.counters[8] = ring.counters[0]
            ring.set_want_space(0)
            link.replies.reset()

    def resync(self, w: int, link: WorkerLink) -> None:
        """Worker w was restarted: fail what it had in flight, empty the rings it abandoned
        (it leaves them alone until we acknowledge), and let it start."""
        for ring in (link.requests.ring, link.control.ring, link.replies.ring):
            ring.counters[8] = ring.counters[0]
            ring.set_want_space(0)
        link.requests.pending.clear()
        link.control.pending.clear()
        link.replies.reset()
        failed = resp.error(f"ERR shard worker {w} exited while running this command; it was restarted")
        from .blocking import fail_worker
        fail_worker(self, w, str(failed[1:-2], "utf-8"))
        touched = set()
        for bid in [b for b, (_, _, worker) in self.pending.items() if worker == w]:
            conn, targets, _ = self.pending.pop(bid)
            for target in targets:
                target.fill(failed)
            touched.update(conn if conn.__class__ is list else [conn])
        link.epoch[1] = link.epoch[0]
        link.worker_waker.wake_if_sleeping(force=True)
        for conn in touched:
            conn.flush_out()

    def on_wake_frame(self, kind: int, frame: bytes) -> None:
        """A worker served a blocked client, or has a key ready for a REMOTE wait; or sends
        keyspace notifications (kind 3) or tracking invalidations (kind 4)."""
        if kind >= 3:
            return self.pubsub.on_worker_frame(kind, frame)
        off = REPLY.size
        waiting = self.blocked.get(int.from_bytes(frame[off:off + 8], "little"))
        if waiting is not None:
            waiting.on_wake(kind, frame[off + 8:])

    def drain_replies(self) -> int:
        got = 0
        touched = set()
        pending = self.pending
        for w, link in enumerate(self.links):
            epoch = link.epoch
            if epoch[0] != epoch[1]:
                self.resync(w, link)
            if link.requests.pending and link.requests.flush():
                link.worker_waker.wake_if_sleeping(force=True)
            if link.control.pending and link.control.flush():
                link.worker_waker.wake_if_sleeping(force=True)
            reader = link.replies
            frame = reader.next()
            while frame is not None:
                got += 1
                bid, n_runs = REPLY.unpack_from(frame)
                if bid == WAKE_BID:
                    self.on_wake_frame(n_runs, frame)
                    frame = reader.next()
                    continue
                conn, targets, _ = pending.pop(bid)
                off = REPLY.size
                if n_runs == 1:
                    targets[0].fill(frame[off + 4:])
                else:
                    lengths = array.array("I", frame[off:off + 4 * n_runs])
                    pos = off + 4 * n_runs
                    for target, n in zip(targets, lengths):
                        target.fill(frame[pos:pos + n])
                        pos += n
                if conn.__class__ is list:     # a frame of several clients' reads
                    touched.update(conn)
                else:
                    touched.add(conn)
                frame = reader.next()
            if reader.ring.wants_space():
                reader.ring.set_want_space(0)
                link.worker_waker.wake_if_sleeping(force=True)
        for conn in touched:
            conn.flush_out()
        return got


class Client(asyncio.Protocol):
    """One client connection."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.id = proxy.new_client_id()
        self.db = 0
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.user = "default"
        self.authenticated = False   # no AUTH needed (set with `guarded` by proxy.acl)
        self.guarded = True          # NOAUTH or ACL checks apply: dispatch runs them
        self.logged_in = False       # AUTH / HELLO AUTH succeeded
        proxy.acl.greet(self)
        self.reader = hiredis.Reader()
        self.strict: RequestParser | None = None
        self.spare_parser: RequestParser | None = None   # the strict parser, kept between inline reads
        self.carry: list[bytes] = []
        self.carried = 0
        self.out: deque[Entry] = deque()
        self.closed = False
        self.closing = False
        self.created = time.time()
        self.last_interaction = self.created
        self.last_argv: list[bytes] = [b"NULL"]
        self.addr = "?"
        self.laddr = "?"
        self.fd = -1
        self.flags = set()
        self.builders: dict[int, FrameBuilder] = {}
        self.raw: bytes | None = None
        self.n_raw = 0
        self.last_worker = -1
        # While a cross-shard operation of this client runs, its later commands wait here.
        self.paused = False
        self.deferred: list[list[bytes]] = []
        self.turn: tuple[Entry, asyncio.Future] | None = None
        self.multi: list[list[bytes]] | None = None   # queued commands between MULTI and EXEC
        self.multi_error = False
        self.watching: set[int] = set()                # workers holding this client's WATCHes
        # CLIENT REPLY: 0 ON, else OFF / SKIP bits; `detour` sends every read through
        # dispatch (reply mode not ON, or a CLIENT PAUSE in force).
        self.reply_mode = 0
        self.detour = proxy.pause_actions is not None
        self.muting = False
        self.soft_limit_since: float | None = None   # output above the soft limit since
        self.backlogged = False                      # replies wait unsent (pause_writing)
        self.in_flight_cap = NO_CAP                  # MAX_IN_FLIGHT under output limits
        # Pub/Sub, tracking, MONITOR (pubsub.py): the client's state, whether its commands go past
        # pubsub.intercept (subscribed, tracking, or a monitor anywhere), its output buffer class,
        # and the flags of its frames (TRACK: the workers remember its reads).
        self.pubsub = None
        self.special = proxy.pubsub.monitoring
        self.obuf_class = "normal"
        self.frame_flags = 0

    # -- asyncio ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        proxy = self.proxy
        maxclients = proxy.config.values.get("maxclients", 10000)
        if len(proxy.clients) >= maxclients:
            proxy.stats["rejected_connections"] += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self.closed = True
            return
        from .connection import protected_mode_denies
        if protected_mode_denies(proxy.config.values, transport.get_extra_info("peername"),
                                 proxy.acl.default_nopass()):
            proxy.stats["rejected_connections"] += 1
            transport.write(PROTECTED_MODE_DENIED)
            transport.close()
            self.closed = True
            return
        proxy.clients[self.id] = self
        self.special = proxy.pubsub.monitoring     # a MONITOR may have started since __init__
        proxy.stats["total_connections_received"] += 1
        proxy.publish_stats()
        self.set_output_limits()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            set_keepalive(sock, proxy.config.values.get("tcp-keepalive", 300))
            self.addr = _format_addr(transport.get_extra_info("peername"))
        else:   # a unix socket: Valkey shows the socket path for both ends
            self.flags.add("unix")
            self.addr = _format_addr(local)
        self.laddr = _format_addr(local)
        if self.strict is None and not self.authenticated:
            self.strict = RequestParser(proxy.config.values["proto-max-bulk-len"])
            self.strict.unauthenticated = True

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.proxy.clients.pop(self.id, None)
        self.proxy.postponed.pop(self.id, None)
        waiting = self.proxy.blocked.get(self.id)
        if waiting is not None:
            waiting.forget()
        if self.watching:
            transactions.unwatch_quietly(self)
        if self.pubsub is not None:
            self.proxy.pubsub.forget(self)
        if self.turn is not None:
            self.turn[1].set_result(None)
            self.turn = None

    def data_received(self, data: bytes) -> None:
        self.last_interaction = time.time()
        self.proxy.stats["total_net_input_bytes"] += len(data)
        if self.closing:
            return
        if self.strict is not None:
            return self.strict_received(data)
        if (not self.carry and data[0] != 42) or NON_BULK_ELEMENT(data) is not None:
            return self.go_strict(data, fed=False)
        reader = self.reader
        reader.feed(data)
        cmds = []
        try:
            cmd = reader.gets()
            while cmd is not False:
                if cmd.__class__ is not list or not cmd:
                    return self.go_strict(data)
                for a in cmd:
                    if a.__class__ is not bytes:
                        return self.go_strict(data)
                cmds.append(cmd)
                cmd = reader.gets()
            if not reader.has_data():
                # hiredis may hold a half-parsed request with no bytes left (the read ended on
                # a CRLF inside it). An empty multibulk completes at once only at a boundary.
                reader.feed(b"*0\r\n")
                if reader.gets() != []:
                    return self.go_strict(data)
        except Exception:  # hiredis refusing what it read (or choking on a RESP3 aggregate)
            return self.go_strict(data)
        if reader.has_data():
            if self.proxy.long_header(data) is not None:
                return self.go_strict(data)
            raw = None
            self.carry.append(data)
            self.carried += len(cmds)
            if reader.len() > self.proxy.config.values["client-query-buffer-limit"]:
                return self.query_buffer_overflow(self.carry[0])
            if self.proxy.client_eviction is not None:
                self.proxy.client_eviction.grew(self)
                if self.closed:
                    return
        else:
            if len(data) > self.proxy.max_bulk_len and self.proxy.long_header(data) is not None:
                return self.go_strict(data)
            raw = data if not self.carry else None
            self.carry = []
            self.carried = 0
        if cmds and (raw is None or self.multi is not None or self.guarded or self.paused
                     or self.detour or self.special or len(cmds) > self.in_flight_cap
                     or not self.dispatch_direct(cmds, raw)):
            self.dispatch(cmds, raw)

    def dispatch_direct(self, cmds: list[list[bytes]], raw: bytes) -> bool:
        """The common read: plain single-key commands. The read's bytes go on as they came,
        one frame per worker naming the commands it runs; consecutive commands of one worker
        share one place in the reply order. False (nothing done) when the read needs the
        general path."""
        proxy = self.proxy
        names = proxy.names
        slotmap = proxy.slotmap
        slots = []
        workers = []
        # No '{' in the read, so no hash tag: each slot is the key's CRC16 (keyslot, inlined).
        tagless = raw.find(b"{") < 0
        for argv in cmds:
            spec = names.get(argv[0])
            if spec is None:
                return False
            k = spec.direct_key
            a = spec.arity
            if not k or ((len(argv) != a) if a > 0 else (len(argv) < -a)):
                return False
            slot = crc_hqx(argv[k], 0) & SLOT_MASK if tagless else keyslot(argv[k])
            slots.append(slot)
            workers.append(slotmap[slot])
        n = len(cmds)
        proxy.stats["total_commands_processed"] += n
        self.last_argv = cmds[-1]
        first = workers[0]
        if workers.count(first) == n:
            entry = Entry()
            self.out.append(entry)
            proxy.add_to_turn(first, (self, [entry], [n], None, slots, raw, self.db, self.proto))
            return True
        pair = set(workers)
        if len(pair) == 2:
            pair.discard(first)
            self.send_split(first, pair.pop(), bytes(workers), slots, raw)
            return True
        frames: dict[int, tuple[list[int], list[int], list[int], list[Entry]]] = {}
        out = self.out
        last = -1
        for i, w in enumerate(workers):
            f = frames.get(w)
            if f is None:
                f = frames[w] = ([], [], [], [])
            if w != last:
                e = Entry()
                out.append(e)
                f[2].append(1)
                f[3].append(e)
                last = w
            else:
                f[2][-1] += 1
            f[0].append(i)
            f[1].append(slots[i])
        for w, (indices, wslots, runs, targets) in frames.items():
            proxy.add_to_turn(w, (self, targets, runs, indices, wslots, raw, self.db, self.proto))
        return True

    def send_split(self, first: int, second: int, workers: bytes, slots: list[int], raw: bytes) -> None:
        """A read whose commands go to two workers (the common pipeline with two): the whole
        read and its worker map go to both, each runs its own commands and answers with its
        runs, and one place in the reply order takes them, interleaved (merge_split)."""
        entry = Entry()
        self.out.append(entry)
        reply = SplitReply(entry, workers)
        packed = array.array("H", slots).tobytes()
        db, proto = self.db, self.proto
        self.proxy.add_to_turn(first, (self, [reply], first, workers, packed, raw, db, proto))
        self.proxy.add_to_turn(second, (self, [reply.second], second, workers, packed, raw, db, proto))

    def go_strict(self, data: bytes, fed: bool = True) -> None:
        """Switch this connection to the strict parser from the last command boundary (`fed`:
        hiredis has seen `data`, so its reader starts anew)."""
        parser = self.spare_parser      # an inline client comes here on every read
        if parser is None:
            parser = RequestParser(self.proxy.config.values["proto-max-bulk-len"])
        else:
            self.spare_parser = None
            parser.reset(self.proxy.config.values["proto-max-bulk-len"])
        self.strict = parser
        if fed or self.carry:
            self.reader = hiredis.Reader()
        pending = b"".join(self.carry) + data if self.carry else data
        skip = self.carried   # commands of the carried bytes that already ran
        self.carry = []
        self.carried = 0
        parser.feed(pending)
        self.drain_strict(skip)
        eviction = self.proxy.client_eviction
        if eviction is not None and self.strict is not None and self.strict.buffered() and not self.closed:
            eviction.grew(self)

    def strict_received(self, data: bytes) -> None:
        self.strict.feed(data)
        if self.strict.buffered() > self.proxy.config.values["client-query-buffer-limit"]:
            return self.query_buffer_overflow(data)
        self.drain_strict()
        eviction = self.proxy.client_eviction
        if eviction is not None and self.strict is not None and self.strict.buffered() and not self.closed:
            eviction.grew(self)

    # -- limits ----------------------------------------------------------------------------
    def query_buffer_overflow(self, head: bytes) -> None:
        """client-query-buffer-limit: the pending query grew past it; close, as Valkey."""
        from ..config import _repr_arg
        from .connection import client_info_line
        log.log("warning", f"Closing client that reached max query buffer length: {client_info_line(self)} "
                           f"(qbuf initial bytes: {_repr_arg(head[:64].decode('latin-1'))})")
        self.proxy.limit_stats["client_query_buffer_limit_disconnections"] += 1
        self.closing = True
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def set_output_limits(self) -> None:
        """client-output-buffer-limit (the client's class: normal, or pubsub while subscribed):
        the transport calls pause_writing when what it holds unsent passes the lower limit, and
        only then are the limits checked."""
        if self.transport is None or self.closed:
            return
        hard, soft, _ = self.proxy.config.values["client-output-buffer-limit"].get(self.obuf_class, (0, 0, 0))
        limits = [n for n in (hard, soft) if n]
        if limits:
            self.transport.set_write_buffer_limits(high=min(limits), low=min(limits) // 2)
            self.in_flight_cap = MAX_IN_FLIGHT
        else:
            self.transport.set_write_buffer_limits()
            self.in_flight_cap = NO_CAP

    def pause_writing(self) -> None:
        """The client reads less than we send. With output limits set (the transport calls
        this at the lower one), read no more of its commands until it catches up, and watch
        every flush: it is disconnected at a limit, as in Valkey, before it can pile up more."""
        hard, soft, _ = self.proxy.config.values["client-output-buffer-limit"].get(self.obuf_class, (0, 0, 0))
        self.backlogged = True
        if self.transport is None:
            return
        if self.proxy.client_eviction is not None:     # maxmemory-clients: watched while backlogged
            self.flush_out = self.flush_out_watched
            self.proxy.client_eviction.grew(self)
        if not (hard or soft) or self.closed:
            return
        self.flush_out = self.flush_out_watched
        self.transport.pause_reading()
        self.check_output_limits()

    def resume_writing(self) -> None:
        self.backlogged = False
        if self.__dict__.pop("flush_out", None) is not None and not self.closed:
            self.transport.resume_reading()
        self.soft_limit_since = None

    def flush_out_watched(self) -> None:
        Client.flush_out(self)
        if not self.closed:
            self.check_output_limits()
        eviction = self.proxy.client_eviction
        if eviction is not None and not self.closed:
            eviction.grew(self)

    def check_output_limits(self) -> None:
        """checkClientOutputBufferLimits for a normal client: over the hard limit, or over the
        soft one for more than its seconds, the client is closed."""
        if self.closed or self.transport is None:
            return
        hard, soft, seconds = self.proxy.config.values["client-output-buffer-limit"].get(self.obuf_class, (0, 0, 0))
        size = self.transport.get_write_buffer_size()
        over = bool(hard and size >= hard)
        if not over and soft and size >= soft:
            now = time.monotonic()
            if self.soft_limit_since is None:
                self.soft_limit_since = now
                self.proxy.loop.call_later(seconds + 0.05, self.check_output_limits)
            over = now - self.soft_limit_since > seconds
        elif not over:
            self.soft_limit_since = None
        if over:
            from .connection import client_info_line
            log.log("warning", f"Client {client_info_line(self)} scheduled to be closed ASAP for overcoming "
                               "of output buffer limits.")
            self.proxy.limit_stats["client_output_buffer_limit_disconnections"] += 1
            self.closing = True
            self.closed = True
            self.out.clear()
            self.transport.abort()

    def drain_strict(self, skip: int = 0) -> None:
        """Run what the strict parser has. While unauthenticated it yields one command at a
        time, since AUTH changes the limits that apply to the next one."""
        parser = self.strict
        while True:
            parser.unauthenticated = not self.authenticated
            cmds, error = parser.parse()
            parsed_any = bool(cmds)
            if skip and cmds:
                dropped = min(skip, len(cmds))
                cmds = cmds[dropped:]
                skip -= dropped
            if cmds:
                self.dispatch(cmds, None)
            if error is not None:
                # The offending byte is sent back as it came (Valkey prints it with %c).
                self.reply_local(b"-" + error.encode("latin-1", "replace") + b"\r\n")
                self.closing = True
                self.flush_out()
                return
            if self.closing or not parsed_any:
                break
        # Authenticated and nothing buffered: back to the fast path.
        if self.authenticated and self.strict is parser and parser.at_boundary():
            self.strict = None
            self.spare_parser = parser

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, cmds: list[list[bytes]], raw: bytes | None) -> None:
        if self.paused:
            self.deferred.extend(cmds)
            return
        if self.reply_mode and not self.muting:
            return self.dispatch_muted(cmds)
        if len(cmds) > self.in_flight_cap:
            return self.dispatch_throttled(cmds)
        proxy = self.proxy
        names = proxy.names
        slotmap = proxy.slotmap
        self.raw = raw
        self.n_raw = len(cmds) if raw is not None else 0
        self.last_worker = -1
        builders = self.builders
        proxy.stats["total_commands_processed"] += len(cmds)
        for i, argv in enumerate(cmds):
            spec = names.get(argv[0])
            if spec is None:
                spec = proxy.lookup(argv[0])
                if spec is None:
                    self.reject(errors.unknown_command(argv[0], argv[1:]))
                    continue
            a = spec.arity
            if (len(argv) != a) if a > 0 else (len(argv) < -a):
                self.reject(errors.wrong_arity(spec.display_name), spec)
                continue
            if spec.subcommands and spec.proxy_handler is None:
                spec = self.subcommand(spec, argv)
                if spec is None:
                    continue
            if self.guarded and proxy.acl.refuses(self, spec, argv):
                continue
            if proxy.pause_actions is not None and self.held_by_pause(spec, argv):
                self.postpone(cmds[i:])
                break
            if self.special and proxy.pubsub.intercept(self, spec, argv):
                continue
            if self.multi is not None and spec.name not in transactions.IMMEDIATE:
                if spec.proxy_handler is not None:   # counted now: EXEC runs it in the proxy
                    proxy.opstats.record_proxy(spec, argv, 0, None, self)
                self.reply_local(transactions.queue(self, spec, argv))
                continue
            if spec.route is SINGLE:
                if spec.worker_handler is None and not spec.subcommands:
                    self.reply_local(resp.error(errors.unknown_command(argv[0], argv[1:])))
                    continue
                fk = spec.direct_key
                if fk:
                    slot = keyslot(argv[fk])
                else:
                    slot = self.route_slot(spec, argv)
                    if slot < 0:
                        continue
                w = slotmap[slot]
                b = builders.get(w)
                if b is None:
                    b = builders[w] = FrameBuilder(self.n_raw, self.frame_flags)
                if self.last_worker == w:
                    b.runs[-1] += 1
                else:
                    e = Entry()
                    self.out.append(e)
                    b.runs.append(1)
                    b.targets.append(e)
                    self.last_worker = w
                if raw is not None and not b.extras:
                    b.indices.append(i)
                    b.slots.append(slot)
                else:
                    # The worker runs a frame's commands in index order: once this frame holds
                    # a command we encoded (after the raw bytes), later ones are encoded too.
                    b.add_extra(argv, slot)
            else:
                self.last_worker = -1
                self.last_argv = argv
                start = perf_counter_ns()
                if proxy.renamed:
                    original_argv(proxy.renamed, argv)
                try:
                    reply = spec.proxy_handler(self, argv)
                except errors.CommandError as exc:
                    reply = resp.error(str(exc))
                except Exception as exc:  # a bug answers this client, it does not drop it
                    log.log("warning", f"internal error in {spec.name}: {exc!r}")
                    reply = resp.error(f"ERR internal error in '{spec.name}': {exc.__class__.__name__}")
                proxy.opstats.record_proxy(spec, argv, perf_counter_ns() - start, reply, self)
                if reply is not None:
                    self.reply_local(reply)
                if self.closing:
                    break
                if self.paused:
                    self.deferred.extend(cmds[i + 1:])
                    break
                if self.reply_mode and not self.muting:   # CLIENT REPLY OFF / SKIP just ran
                    self.step_reply_mode()
                    self.send_frames()
                    self.flush_out()
                    return self.dispatch_muted(cmds[i + 1:])
        if builders:
            self.send_frames()
            self.last_argv = cmds[-1]
        self.flush_out()

    def reject(self, message: str, spec: CommandSpec | None = None) -> None:
        """An error before the command ran; inside MULTI it dooms the transaction (EXECABORT)."""
        if self.multi is not None:
            self.multi_error = True
        self.proxy.opstats.rejected(spec)
        self.reply_local(resp.error(message))

    def subcommand(self, spec: CommandSpec, argv: list[bytes]) -> CommandSpec | None:
        sub = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
        if sub is None:
            self.reject(errors.unknown_subcommand(argv[1], spec.name))
        elif not sub.arity_ok(len(argv)):
            self.reject(errors.wrong_arity(sub.name), sub)
            sub = None
        return sub

    def dispatch_throttled(self, cmds: list[list[bytes]]) -> None:
        """The first MAX_IN_FLIGHT commands now, the rest once they have answered."""
        self.dispatch(cmds[:self.in_flight_cap], None)
        rest = cmds[self.in_flight_cap:]
        if self.closing or self.closed:
            return
        self.deferred.extend(rest)   # after what the first part left waiting, if anything
        if self.paused:              # a pause or a cross-shard operation resumes them
            return
        mark = Entry()
        self.out.append(mark)
        self.paused = True
        self.proxy.loop.create_task(self.resume_when_drained(mark))

    async def resume_when_drained(self, mark: Entry) -> None:
        await self.until_first(mark)
        while self.backlogged and not self.closed:   # not reading: it may reach a limit
            await asyncio.sleep(0.01)
        mark.data = b""
        self.resume()

    def dispatch_muted(self, cmds: list[list[bytes]]) -> None:
        """CLIENT REPLY OFF / SKIP: commands one by one, the places of those whose reply is
        dropped turned into MutedEntry (CLIENT REPLY itself answers for itself)."""
        for i, argv in enumerate(cmds):
            if self.paused:
                self.deferred.extend(cmds[i:])
                return
            if self.closing:
                return
            muted = bool(self.reply_mode) and not (len(argv) > 1 and argv[0].lower() == b"client"
                                                    and argv[1].lower() == b"reply")
            self.muting = True
            if muted:
                mark = MutedEntry()
                self.out.append(mark)
                watched = self.__dict__.get("flush_out")
                self.flush_out = lambda: None     # nothing leaves before it is muted
            try:
                self.dispatch([argv], None)
            finally:
                self.muting = False
                if muted:
                    for e in reversed(self.out):
                        if e is mark:
                            break
                        e.__class__ = MutedEntry
                    self.out.append(Entry(b""))     # later local replies must not join a muted place
                    if watched is None:
                        del self.flush_out
                    else:
                        self.flush_out = watched
            self.step_reply_mode()
            self.flush_out()

    def step_reply_mode(self) -> None:
        """After each command (resetClient): SKIP has dropped its reply; SKIP_NEXT becomes SKIP."""
        self.reply_mode &= ~REPLY_SKIP
        if self.reply_mode & REPLY_SKIP_NEXT:
            self.reply_mode ^= REPLY_SKIP_NEXT | REPLY_SKIP
        self.detour = bool(self.reply_mode) or self.proxy.pause_actions is not None

    def held_by_pause(self, spec: CommandSpec, argv: list[bytes]) -> bool:
        """CLIENT PAUSE: ALL holds every command, WRITE those that write or may replicate
        (EXEC when it runs such a command)."""
        proxy = self.proxy
        if time.time() >= proxy.pause_end:
            proxy.unpause()
            return False
        if proxy.pause_actions == "all":
            return True
        if spec.name == "exec" and self.multi:
            return any(may_replicate(queued) for queued in self.multi)
        return may_replicate(argv)

    def postpone(self, cmds: list[list[bytes]]) -> None:
        """Wait for the end of the pause with these commands (and all read after them)."""
        self.send_frames()
        self.paused = True
        self.deferred.extend(cmds)
        self.proxy.postponed[self.id] = self

    def route_slot(self, spec: CommandSpec, argv: list[bytes]) -> int:
        """The slot of a command with no single key: keyless → slot 0, else all keys must
        live on one worker (cross-shard commands come with the coordinator)."""
        keys = spec.keys(argv)
        if not keys:
            return 0
        slot = keyslot(keys[0])
        shard = self.proxy.slotmap[slot]
        for k in keys[1:]:
            if self.proxy.slotmap[keyslot(k)] != shard:
                if spec.cross_shard is not None:
                    self.last_worker = -1
                    reply = spec.cross_shard(self, argv)
                    self.proxy.opstats.record_proxy(spec, argv, 0, reply, self)
                    if reply is not None:
                        self.reply_local(reply)
                else:
                    self.reply_local(resp.error(errors.CROSS_SHARD))
                return -1
        return slot

    def send_frames(self) -> None:
        """Close the frames under construction (state such as db may change next)."""
        proxy = self.proxy
        raw = self.raw
        for w, b in self.builders.items():
            read = b.turn_read(raw, self) if not b.flags and not b.hold else None
            if read is not None:
                proxy.add_to_turn(w, read)
                continue
            bid = proxy.take_batch_id()
            proxy.send_frame(w, bid, b.build(raw, bid, self.id, self.db, self.proto), self, b.targets)
        self.builders.clear()
        self.last_worker = -1

    def fanout(self, parts: list[tuple[int, list[bytes], int]], merge: Callable[[list[bytes]], bytes],
               flags: int = 0) -> None:
        """Send sub-commands (worker, argv, slot) and merge their replies in this place."""
        entry = Entry()
        self.out.append(entry)
        if flags:   # frame flags apply to the whole frame: these parts get frames of their own
            self.send_frames()
            self.add_parts(self.builders, 0, entry, parts, merge, flags | (self.frame_flags & NOTOUCH))
            self.send_frames()
        else:
            self.add_parts(self.builders, self.n_raw, entry, parts, merge, self.frame_flags)
        self.last_worker = -1

    def followup(self, parts: list[tuple[int, list[bytes], int]], merge: Callable) -> Followup:
        """What a merge returns to send another round of sub-commands into its place."""
        return Followup(self, parts, merge)

    def fanout_into(self, entry: Entry, parts: list, merge: Callable) -> None:
        builders: dict[int, FrameBuilder] = {}
        self.add_parts(builders, 0, entry, parts, merge)
        for w, b in builders.items():
            bid = self.proxy.take_batch_id()
            self.proxy.send_frame(w, bid, b.build(None, bid, self.id, self.db, self.proto), self, b.targets)

    @staticmethod
    def add_parts(builders: dict, n_raw: int, entry: Entry, parts: list, merge: Callable, flags: int = 0) -> None:
        gather = Gather(entry, len(parts), merge)
        for i, (w, argv, slot) in enumerate(parts):
            b = builders.get(w)
            if b is None:
                b = builders[w] = FrameBuilder(n_raw, flags)
            b.add_extra(argv, slot)
            b.runs.append(1)
            b.targets.append(gather.part(i))

    def hold_place(self) -> Entry:
        """A place in the reply order for a reply that comes later; this client's next
        commands wait until `resume()`."""
        entry = Entry()
        self.out.append(entry)
        self.last_worker = -1
        self.send_frames()
        self.paused = True
        return entry

    def resume(self) -> None:
        """The held place is filled: send it (and what is ready behind it), run what waited."""
        self.flush_out()
        self.proxy.loop.call_soon(self.run_deferred)

    def run_deferred(self) -> None:
        # Still paused until now, so commands read meanwhile queue up behind the deferred ones.
        self.paused = False
        deferred, self.deferred = self.deferred, []
        if deferred and not self.closed:
            self.dispatch(deferred, None)

    def send_alone(self, worker: int, argv: list[bytes], slot: int, flags: int, target) -> None:
        """One command in a frame of its own (flags apply to it alone, with CLIENT NO-TOUCH's)."""
        b = FrameBuilder(0, flags | (self.frame_flags & NOTOUCH))
        b.add_extra(argv, slot)
        b.runs.append(1)
        proxy = self.proxy
        bid = proxy.take_batch_id()
        proxy.send_frame(worker, bid, b.build(None, bid, self.id, self.db, self.proto), self,
                         None if target is None else [target])

    def coordinate(self, plan, keys: frozenset[bytes] | None = None) -> None:
        """Run a cross-shard plan under the coordinator in this place of the replies. It starts
        once this client's earlier commands have answered; its later ones wait for it."""
        entry = Entry()
        self.out.append(entry)
        self.last_worker = -1
        self.send_frames()
        self.paused = True
        self.proxy.loop.create_task(self.coordinated(entry, plan, keys))

    async def coordinated(self, entry: Entry, plan, keys: frozenset[bytes] | None) -> None:
        try:
            await self.until_first(entry)
            entry.data = await self.proxy.coordinator.run(self, plan, keys)
        except Exception as exc:  # a bug answers this client, it does not wedge it
            log.log("warning", f"internal error in a cross-shard operation: {exc!r}")
            entry.data = resp.error(f"ERR internal error: {exc.__class__.__name__}")
        self.resume()

    async def until_first(self, entry: Entry) -> None:
        """Wait until every reply before `entry` has gone out."""
        if not self.out or self.out[0] is entry or self.closed:
            return
        future = self.proxy.loop.create_future()
        self.turn = (entry, future)
        await future

    def state_changed(self) -> None:
        """db or protocol changes: commands after this one go in new frames."""
        if self.builders:
            self.send_frames()

    def reply_local(self, data: bytes) -> None:
        self.last_worker = -1
        if data[:1] == b"-":
            self.proxy.opstats.error(data)
        out = self.out
        if out and out[-1].data is not None:
            out[-1].data += data
        else:
            out.append(Entry(data))

    def flush_out(self) -> None:
        out = self.out
        if not out or out[0].data is None:
            if self.closing and not out and self.transport is not None:
                self.transport.close()
            return
        if len(out) == 1:
            data = out.popleft().data
        else:
            chunks = []
            while out and out[0].data is not None:
                chunks.append(out.popleft().data)
            data = b"".join(chunks)
        if not self.closed:
            self.proxy.stats["total_net_output_bytes"] += len(data)
            self.transport.write(data)
        turn = self.turn
        if turn is not None and (not out or out[0] is turn[0]):
            self.turn = None
            turn[1].set_result(None)
        if self.closing and not out and self.transport is not None:
            self.transport.close()


def set_keepalive(sock, interval: int) -> None:
    """`tcp-keepalive`: probes after `interval` idle seconds, as Valkey's anetKeepAlive."""
    if not interval or sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(interval // 3, 1))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        pass


def _format_addr(addr, unix_path: str = "") -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return f"{addr or unix_path}:0"


def run(index: int, n_proxies: int, links: list[WorkerLink], waker: Waker, config, slotmap: bytes,
        listeners: list[socket.socket], server_info: dict) -> None:
    import signal
    import uvloop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    proxy = Proxy(index, n_proxies, links, waker, config, slotmap, server_info)
    proxy.loop = loop
    from .coordinator import Coordinator
    proxy.coordinator = Coordinator(proxy, server_info["lock_path"])
    from . import handlers, scratch  # noqa: F401  (registers the proxy's commands)
    scratch.install()
    commands.finish_table()
    server_info["proxy"] = proxy
    proxy.pubsub.start()          # the links to the other proxies
    loop.add_reader(waker.fd, proxy.on_wake)
    loop.add_reader(server_info["control"].fileno(), proxy.on_control)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    parent = os.getppid()

    ticks = [0]
    from .memory import own_clients_memory

    def watch_parent() -> None:
        if os.getppid() != parent:
            loop.stop()
            return
        proxy.publish_stats()
        proxy.close_idle_clients()
        if proxy.client_eviction is not None:
            proxy.client_eviction.check()
        ticks[0] += 1
        if ticks[0] % 10 == 0:
            proxy.snapshots.tick()
            # What the other proxies' INFO memory counts for our clients (a walk of all of
            # them, so once a second rather than per INFO or per connection).
            proxy.stats["mem_clients_normal"] = own_clients_memory(proxy)
        loop.call_later(0.1, watch_parent)

    if server_info.get("restarted"):
        proxy.take_over()
    elif index == 0:
        from ..config import inert_directives
        inert = inert_directives(config.values)
        if inert:
            log.log("warning", "Accepted but not acted on yet: " + ", ".join(inert))
    from .tls import Tls, wanted
    proxy.tls = Tls(config.values) if wanted(config.values) else None
    from .listeners import Listeners
    proxy.listeners = Listeners(proxy)
    proxy.listeners.serve_startup(listeners)
    loop.call_later(0.5, watch_parent)
    try:
        loop.run_forever()
    finally:
        for c in list(proxy.clients.values()):
            if c.transport is not None:
                c.transport.abort()
