"""Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP,
and XREAD/XREADGROUP given BLOCK: without it they go the way of any other command).

The proxy's half of worker/blocking.py. A blocked client's later commands wait (like during
a cross-shard operation); the proxy keeps its timeout.

- Keys on one worker: the command goes in a frame of its own flagged BLOCKING; the worker
  serves it at once or queues it and answers BLOCKED; later a WAKE frame brings the reply.
- Keys on several workers: under the coordinator, the command runs on fetched copies of its
  keys; if nothing is there, every worker queues it as a REMOTE waiter, in the same hold. A
  worker whose key becomes ready sends READY; the proxy retries under the coordinator and
  either serves the client (and `__unblock`s it everywhere) or `__rearm`s the waits.
"""
from __future__ import annotations

import asyncio

from .. import commands, resp
from ..commands import proxy_command
from ..frames import BLOCKING, NO_REPLY
from ..numbers import string2ll
from ..slots import keyslot
from ..worker.blocking import BLOCKED, SERVE, SERVED, parse_timeout
from . import scratch
from .replies import decode_or_raise

# The blocking commands and whether their timeout reply is a null array (else a null bulk).
BLOCKING_COMMANDS = ("blpop", "brpop", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "blmove", "brpoplpush",
                     "xread", "xreadgroup")
TIMEOUT_FIRST = frozenset(("blmpop", "bzmpop"))     # their timeout is argv[1], not the last
STREAM_READS = frozenset(("xread", "xreadgroup"))   # they block only given BLOCK <milliseconds>


class Waiting:
    """A client blocked on keys; its reply fills `entry`."""

    def __init__(self, conn, spec, argv: list[bytes], keys: list[bytes], timeout: float) -> None:
        self.conn = conn
        self.proxy = conn.proxy
        self.spec = spec
        self.argv = argv
        self.keys = keys
        self.timeout = timeout
        self.entry = None
        self.workers = sorted({conn.proxy.slotmap[keyslot(k)] for k in keys}) or [0]
        self.timer: asyncio.TimerHandle | None = None
        self.retrying = False
        self.again = False          # a READY came while retrying
        self.timed_out: bytes | None = None    # the reply of a timeout that came while retrying
        self.done = False

    @property
    def timeout_reply(self) -> bytes:
        """A null array for every blocking command, BLMOVE and BRPOPLPUSH too (Valkey's
        replyToBlockedClientTimedOut); they answer a null bulk only when they cannot block."""
        return resp.null_array(self.conn.proto)

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        conn = self.conn
        self.entry = conn.hold_place()
        if len(self.workers) == 1:
            w = self.workers[0]
            slot = keyslot(self.keys[0]) if self.keys else 0
            conn.send_alone(w, self.argv, slot, BLOCKING, self)
        else:
            self.proxy.loop.create_task(self.across())

    def fill(self, data: bytes) -> None:
        """The worker's first answer (one-worker case)."""
        if data == BLOCKED:
            self.wait()
        else:
            self.finish(data)

    async def across(self) -> None:
        conn = self.conn
        # Known (and "retrying") from now: a READY that comes before the hold's end is kept.
        self.retrying = True
        self.proxy.blocked[conn.id] = self
        try:
            await conn.until_first(self.entry)
            reply = await self.proxy.coordinator.run(conn, self.first_attempt, frozenset(self.keys))
        except Exception as exc:   # a bug answers this client, it does not wedge it
            reply = resp.error(f"ERR internal error: {exc.__class__.__name__}")
        self.retrying = False
        if reply != BLOCKED:
            if reply[:1] == b"-":       # a worker may have queued it before another failed
                self.unblock_everywhere()
            self.finish(reply)
        elif conn.closed:
            self.forget()
        elif self.timed_out is not None:
            self.unblock(self.timed_out)
        else:
            self.wait()
            if self.again:
                self.retrying = True
                self.proxy.loop.create_task(self.retry())

    async def first_attempt(self, hold) -> bytes:
        reply = await scratch.attempt(hold, self.conn, self.spec, self.argv, self.keys, SERVE)
        if reply is not None:
            return reply
        ranges = self.proxy.info["slot_ranges"]
        for r in await hold.run([(w, [b"__block", *self.argv], ranges[w][0]) for w in self.workers]):
            decode_or_raise(r)
        return BLOCKED

    # -- waiting -------------------------------------------------------------------------
    def wait(self) -> None:
        if self.conn.closed:
            self.forget()
            return
        self.proxy.blocked[self.conn.id] = self
        if self.timeout > 0:
            self.timer = self.proxy.loop.call_later(self.timeout, self.on_timeout)

    def on_wake(self, kind: int, body: bytes) -> None:
        if kind == SERVED:
            self.finish(body)
        elif self.retrying:
            self.again = True
        else:
            self.retrying = True      # now: a second READY must not start a second retry
            self.proxy.loop.create_task(self.retry())

    async def retry(self) -> None:
        """A key of a REMOTE wait is ready: try again, atomically over every worker."""
        try:
            while True:
                self.again = False
                reply = await self.proxy.coordinator.run(self.conn, self.retry_steps, frozenset(self.keys))
                if reply is not None or not self.again or self.done:
                    break
        finally:
            self.retrying = False
        if self.done:
            return
        if reply is not None:
            self.finish(reply)
        elif self.conn.closed:
            self.forget()
        elif self.timed_out is not None:
            self.unblock(self.timed_out)

    async def retry_steps(self, hold) -> bytes | None:
        reply = await scratch.attempt(hold, self.conn, self.spec, self.argv, self.keys, SERVE)
        ranges = self.proxy.info["slot_ranges"]
        step = b"__rearm" if reply is None else b"__unblock"
        await hold.run([(w, [step], ranges[w][0]) for w in self.workers])
        return reply

    def on_timeout(self) -> None:
        self.timer = None
        self.unblock(None)

    def unblock(self, reply: bytes | None) -> None:
        """Stop waiting (timeout, CLIENT UNBLOCK): answer `reply` (None: the timeout reply)."""
        if self.done:
            return
        reply = self.timeout_reply if reply is None else reply
        if len(self.workers) == 1:
            # Only if the worker still had us: else its reply is ahead in the same ring.
            self.conn.send_alone(self.workers[0], [b"__unblock"], self.first_slot(), 0,
                                 UnblockAnswer(self, reply))
        elif self.retrying:
            self.timed_out = reply
        else:
            self.unblock_everywhere()
            self.finish(reply)

    def first_slot(self) -> int:
        return keyslot(self.keys[0]) if self.keys else 0

    def unblock_everywhere(self) -> None:
        ranges = self.proxy.info["slot_ranges"]
        for w in self.workers:
            self.conn.send_alone(w, [b"__unblock"], ranges[w][0], NO_REPLY, None)

    def end(self) -> bool:
        """Stop waiting, once: False when it had already ended."""
        if self.done:
            return False
        self.done = True
        self.proxy.blocked.pop(self.conn.id, None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return True

    def forget(self) -> None:
        """The client went away (or a worker died): drop its waits without a reply."""
        if self.end():
            self.unblock_everywhere()

    def finish(self, reply: bytes) -> None:
        if not self.end():
            return
        self.entry.data = reply
        self.conn.resume()


class UnblockAnswer:
    """The reply to a one-worker wait's `__unblock`: :1 means it was still waiting."""
    __slots__ = ("waiting", "reply")

    def __init__(self, waiting: Waiting, reply: bytes) -> None:
        self.waiting = waiting
        self.reply = reply

    def fill(self, data: bytes) -> None:
        if data == resp.ONE:
            self.waiting.finish(self.reply)


@proxy_command(*BLOCKING_COMMANDS, route=commands.BLOCK)
def blocking_command(conn, argv: list[bytes]) -> bytes | None:
    spec = commands.lookup_argv(argv)
    if spec.name in STREAM_READS:
        timeout = stream_block_timeout(argv)
        if timeout is None:
            return route_plainly(conn, spec, argv)
    else:
        timeout = parse_timeout(argv[1] if spec.name in TIMEOUT_FIRST else argv[-1])
    Waiting(conn, spec, argv, spec.keys(argv), timeout).start()
    return None


def stream_block_timeout(argv: list[bytes]) -> float | None:
    """XREAD/XREADGROUP's BLOCK in seconds (0: forever); None when the call does not block,
    or has arguments the worker will refuse (it answers the error in Valkey's order)."""
    timeout = None
    i, n = 1, len(argv)
    while i < n:
        opt = argv[i].lower()
        more = n - i - 1
        if opt == b"block" and more:
            ms = string2ll(argv[i + 1])
            if ms is None or ms < 0:
                return None
            timeout = ms / 1000
            i += 2
        elif opt == b"count" and more:
            i += 2
        elif opt == b"group" and more >= 2:
            i += 3
        elif opt == b"noack":
            i += 1
        else:
            break           # STREAMS, or a syntax error
    return timeout


def route_plainly(conn, spec, argv: list[bytes]) -> None:
    """A command of the BLOCK route that will not block: on to its worker like any other (or
    the cross-shard fallback when its keys span workers), after this client's earlier ones."""
    from .server import Entry
    slot = conn.route_slot(spec, argv)
    if slot < 0:            # answered (the fallback, or CROSSSLOT)
        return None
    conn.send_frames()
    entry = Entry()
    conn.out.append(entry)
    conn.send_alone(conn.proxy.slotmap[slot], argv, slot, 0, entry)
    return None


def fail_worker(proxy, worker: int, message: str) -> None:
    """Worker `worker` restarted: the clients waiting on it get an error."""
    for waiting in [w for w in proxy.blocked.values() if worker in w.workers]:
        waiting.forget()
        waiting.entry.data = resp.error(message)
        waiting.conn.resume()


def blocked_count(proxy) -> int:
    return len(proxy.blocked)

