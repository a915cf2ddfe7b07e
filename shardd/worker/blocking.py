"""Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN …), after Valkey's blocked.c.

A blocking command runs its handler as usual; when it finds nothing to serve, the handler
calls `nothing()`, which acts on the mode the command runs in (`Ctx.block_mode`):

- NOWAIT: inside a transaction or a script, or on the coordinator's scratch copy: the timeout
  reply, at once (as Valkey does in MULTI).
- WAIT: a client's own blocking call, all of whose keys live on this worker: it joins the FIFO
  queue of each key and the proxy gets BLOCKED. When a write makes one of those keys ready,
  this worker runs the command again (mode SERVE) for the waiters in the order they came, right
  after the command that wrote, and sends each served reply to its proxy (a WAKE frame).
- SERVE: a re-run for a waiter: None means still nothing.
- REMOTE: the command's keys span workers, so no one worker may serve it alone: it queues like
  WAIT, but a ready key only sends its proxy a READY notice; the proxy retries the command
  under the coordinator and, served or not, tells each worker (`__unblock` / `__rearm`).

The proxy owns timeouts: it asks the worker to drop the waiter (`__unblock`) and answers the
timeout only if the worker still had it (else the served reply is already on its way, ahead
in the same ring).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .. import errors, resp
from ..numbers import LLONG_MAX
from ..commands import internal_command, lookup_argv
from ..slots import keyslot
from .context import Ctx
from .keyspace import Db
from .no_touch import run_touching

NOWAIT, WAIT, SERVE, REMOTE = range(4)
# A reply that cannot be RESP: the proxy keeps the client waiting.
BLOCKED = b"\x00blocked"
SERVED, READY = 1, 2      # WAKE frame kinds

TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
TIMEOUT_OUT_OF_RANGE = "ERR timeout is out of range"


def parse_timeout(value: bytes) -> float:
    """A blocking command's timeout in seconds (0: forever), as getTimeoutFromObjectOrReply."""
    try:
        text = value.decode("ascii")
        seconds = float(text)
    except (UnicodeDecodeError, ValueError):
        raise errors.CommandError(TIMEOUT_NOT_FLOAT) from None
    if text != text.strip() or "_" in text or seconds != seconds:     # strtold takes neither
        raise errors.CommandError(TIMEOUT_NOT_FLOAT)
    if seconds < 0:
        raise errors.CommandError(TIMEOUT_NEGATIVE)
    # Valkey: in milliseconds, rounded up, and its deadline (now + it) must fit a long long.
    if seconds * 1000 > LLONG_MAX - time.time() * 1000:
        raise errors.CommandError(TIMEOUT_OUT_OF_RANGE)
    return seconds


@dataclass(eq=False)
class Waiter:
    link: int                 # index of the proxy (ring link) the client is on
    client_id: int
    db: Db
    proto: int
    argv: list[bytes]
    keys: list[bytes]         # the keys it waits on, on this worker
    remote: bool = False
    notified: bool = False    # REMOTE: READY sent, the proxy's answer pending
    served: bool = field(default=False)
    no_touch: bool = False    # a CLIENT NO-TOUCH client's: its lookups leave access clocks alone


class Blocked:
    """This worker's waiters, by client and (in each Db's `blocked`) by key."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.by_client: dict[tuple[int, int], Waiter] = {}
        self.ready: list[tuple[Db, bytes]] = []     # shared with every Db of the worker

    def add(self, ctx: Ctx, argv: list[bytes], keys: list[bytes], remote: bool) -> None:
        waiter = Waiter(ctx.link, ctx.client_id, ctx.db, ctx.proto, argv, keys, remote,
                        no_touch=self.worker.no_touch)
        self.remove((ctx.link, ctx.client_id))
        self.by_client[(ctx.link, ctx.client_id)] = waiter
        blocked = ctx.db.blocked
        for key in keys:
            queue = blocked.get(key)
            if queue is None:
                queue = blocked[key] = deque()
            queue.append(waiter)

    def remove(self, who: tuple[int, int]) -> Waiter | None:
        waiter = self.by_client.pop(who, None)
        if waiter is None:
            return None
        blocked = waiter.db.blocked
        for key in waiter.keys:
            queue = blocked.get(key)
            if queue is not None:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass
                if not queue:
                    del blocked[key]
        return waiter

    def drop_link(self, link: int) -> None:
        """A proxy restarted: its clients are gone."""
        for who in [who for who in self.by_client if who[0] == link]:
            self.remove(who)

    def serve_ready(self) -> None:
        """Serve the waiters of every key made ready, oldest first (handleClientsBlockedOnKeys).
        Serving one (BLMOVE) may make another key ready: the loop runs until none is left."""
        ready = self.ready
        ctx = self.worker.ctx
        saved = ctx.db, ctx.proto, ctx.client_id, ctx.slot, ctx.link, ctx.block_mode
        ctx.block_mode = SERVE
        try:
            while ready:
                db, key = ready.pop(0)
                ctx.ready_key = key
                self.serve_key(ctx, db, key)
        finally:
            ctx.ready_key = None
            ctx.db, ctx.proto, ctx.client_id, ctx.slot, ctx.link, ctx.block_mode = saved

    def serve_key(self, ctx: Ctx, db: Db, key: bytes) -> None:
        """Run the command of each waiter on key again, oldest first, as Valkey re-runs every
        client blocked on a ready key: one that still finds nothing keeps waiting and the next
        is tried (of two XREADGROUPs of one group only the first gets the new entry; an XREAD
        behind them must get it too). A snapshot: serving may queue or drop waiters."""
        queue = db.blocked.get(key)
        if not queue:
            return
        for waiter in list(queue):
            if self.by_client.get((waiter.link, waiter.client_id)) is not waiter:
                continue    # served or gone meanwhile
            if waiter.remote:
                if not waiter.notified and db.exists(key, keyslot(key)):
                    waiter.notified = True
                    self.worker.send_wake(waiter.link, READY, waiter.client_id, b"")
                return      # the ones behind it wait for the proxy's decision
            ctx.db, ctx.proto, ctx.client_id, ctx.link = db, waiter.proto, waiter.client_id, waiter.link
            ctx.slot = keyslot(waiter.keys[0])
            worker = self.worker
            if waiter.no_touch == worker.no_touch:
                reply = worker.call(lookup_argv(waiter.argv), waiter.argv)
            else:                       # served in a frame of the other kind
                reply = run_touching(worker, not waiter.no_touch,
                                     lambda: worker.call(lookup_argv(waiter.argv), waiter.argv))
            if reply is None:
                continue
            self.remove((waiter.link, waiter.client_id))
            self.worker.send_wake(waiter.link, SERVED, waiter.client_id, reply)


def nothing(ctx: Ctx, argv: list[bytes], keys: list[bytes], timeout_reply: bytes) -> bytes | None:
    """What a blocking command answers when none of its keys has anything for it."""
    mode = ctx.block_mode
    if mode == NOWAIT:
        return timeout_reply
    if mode == SERVE:
        return None
    low, high = ctx.config["__slot_range__"]
    mine = [k for k in dict.fromkeys(keys) if low <= keyslot(k) <= high]
    if mine:
        ctx.blocked.add(ctx, argv, mine, remote=mode == REMOTE)
    return BLOCKED


def signal_ready(db: Db, key: bytes) -> None:
    db.ready.append((db, key))


def ready_value(ctx: Ctx, key: bytes, kind: type):
    """The non-empty value of type `kind` at key for a blocking command, else None.
    WRONGTYPE for another type, except when serving a waiter: then the write that woke it did
    not give it what it waits for, and it keeps waiting (Valkey serves only keys of the type a
    client waits for)."""
    value = ctx.db.lookup(key, keyslot(key))
    if value is None:
        return None
    if type(value) is not kind:
        if ctx.block_mode == SERVE:
            return None
        raise errors.CommandError(errors.WRONGTYPE)
    return value or None


def candidates(ctx: Ctx, keys: list[bytes]) -> list[bytes]:
    """The keys a blocking command looks at: all of them, or when serving a waiter, the one
    key that became ready (Valkey serves a blocked client from the key that was written)."""
    key = ctx.ready_key
    return keys if key is None or ctx.block_mode != SERVE else [key]


@internal_command("__block", -2)
def block(ctx: Ctx, argv: list[bytes]) -> bytes:
    """Queue this client as a REMOTE waiter on its keys here (the proxy found nothing anywhere,
    under the coordinator's hold)."""
    command = argv[1:]
    saved = ctx.block_mode
    ctx.block_mode = REMOTE
    try:
        ctx.slot = keyslot(command[1]) if len(command) > 1 else 0
        spec = lookup_argv(command)
        reply = spec.worker_handler(ctx, command)
    finally:
        ctx.block_mode = saved
    return resp.OK if reply is BLOCKED else reply


@internal_command("__unblock", 1)
def unblock(ctx: Ctx, argv: list[bytes]) -> bytes:
    """Forget this client's wait: :1 if it was still waiting here, :0 if it was served."""
    waiter = ctx.blocked.remove((ctx.link, ctx.client_id))
    if waiter is None:
        return resp.ZERO
    if waiter.notified:         # the waiters behind it may now be served
        for key in waiter.keys:
            signal_ready(waiter.db, key)
    return resp.ONE


@internal_command("__rearm", 1)
def rearm(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The proxy's retry found nothing: wait again for the next write."""
    waiter = ctx.blocked.by_client.get((ctx.link, ctx.client_id))
    if waiter is not None:
        waiter.notified = False
    return resp.OK
