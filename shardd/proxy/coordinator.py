"""The coordinator: what spans shards runs under one process-shared lock and a hold.

A proxy takes the `flock` (shared by every proxy of the server; a dead holder's lock is
released by the kernel), then sends its sub-commands to each involved worker's control ring
with HOLD: the worker runs them and then serves nothing but this hold until RELEASE. Since
every shard involved is held until all have answered, no other client sees half of the
operation, on any shard; since every cross-shard operation holds the lock, they are ordered.
Work on one shard never comes here, nor, with one proxy and no AOF, one-round operations of
one command per worker (may_skip_hold).

With appendonly on, each operation (or group of one-round operations sharing a frame) whose
rounds may write is an AOF unit (persist/aof.py): its rounds start with `__aofunit <id> <kind>
<workers>`, so each worker logs its part behind a note with the id; an operation of several
rounds ends with a commit round (`c`, no other command) on every worker it wrote on, before
its reply. A crash then leaves no half of it after a restart.
"""
from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
from dataclasses import dataclass
from typing import Awaitable, Callable

from .. import commands, errors, log, resp
from ..frames import HOLD, IN_HOLD, NO_REPLY, NOTOUCH, RELEASE
from .fanout import Parts

# Parts are (worker, argv, slot); a plan is one round of parts with their merge (Parts), or a
# coroutine function turning a hold into the client's reply.
Part = tuple[int, list[bytes], int]
Plan = Callable[["Hold"], Awaitable[bytes]]

REPLY_TIMEOUT = 10.0
TIMED_OUT = "ERR cross-shard operation timed out"
# Internal commands of coordinated rounds that change no data (any other may write).
READ_ONLY_INTERNAL = frozenset((b"__dump", b"__dumpttl", b"__dirty", b"__watch", b"__unwatch", b"__script_body",
                                b"__function_code", b"__memory", b"__persistence", b"__ops", b"__tracking"))


def may_write(argv: list[bytes]) -> bool:
    """A round's command that may change data (and so be logged in the AOF)."""
    spec = commands.lookup_argv(argv)
    if spec is not None:
        return "readonly" not in spec.flags
    return argv[0].lower() not in READ_ONLY_INTERNAL


class Ignored:
    """The target of a reply nobody waits for (the __aofunit of a round)."""
    __slots__ = ()

    def fill(self, data: bytes) -> None:
        pass


IGNORED = Ignored()


class ReplyFuture:
    """A frame target that resolves an asyncio future."""
    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future = loop.create_future()

    def fill(self, data: bytes) -> None:
        if not self.future.done():
            self.future.set_result(data)


@dataclass
class Waiting:
    """An operation queued for the next hold: its keys (None: run it alone) and its reply."""
    conn: object
    plan: Plan
    keys: frozenset[bytes] | None
    future: asyncio.Future


class Coordinator:
    def __init__(self, proxy, lock_path: str) -> None:
        self.proxy = proxy
        # Our own open file description: flock excludes descriptions, not processes' copies.
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.queue: list[Waiting] = []
        self.leading = False
        self.next_hold = proxy.index + 1
        # AOF unit ids: unique across proxies and restarts (the AOF outlives the process).
        self.unit_prefix = os.urandom(6).hex().encode()
        self.unit_numbers = itertools.count(1)
        # One-round operations sent without a hold whose replies are not all in yet, and
        # what a hold about to start waits on until they are.
        self.unheld_in_flight = 0
        self.unheld_drained: asyncio.Future | None = None

    def may_skip_hold(self) -> bool:
        """Whether a one-round operation with one command per worker may go without a hold.
        With a single proxy every worker runs its ring in the order this proxy wrote it, so
        all workers see the same serial order, which is what the hold gives. Not while a
        hold runs or waits (a worker takes the hold ahead of frames still in its ring), nor
        with appendonly, whose cross-shard units only the hold writes."""
        return self.proxy.n_proxies == 1 and not self.leading and not self.logging()

    def unheld(self, merge: Callable[[list[bytes]], bytes]) -> Callable[[list[bytes]], bytes]:
        """merge, counted in flight until the operation's replies are all in."""
        self.unheld_in_flight += 1

        def merged(replies: list[bytes]) -> bytes:
            if self.unheld_in_flight:      # 0: drain_unheld gave up waiting for it
                self.unheld_in_flight -= 1
            if not self.unheld_in_flight and self.unheld_drained is not None and not self.unheld_drained.done():
                self.unheld_drained.set_result(None)
            return merge(replies)
        return merged

    async def drain_unheld(self) -> None:
        """Wait (bounded: a worker that died may never answer) for the unheld operations."""
        if self.unheld_in_flight:
            self.unheld_drained = self.proxy.loop.create_future()
            try:
                await asyncio.wait_for(self.unheld_drained, REPLY_TIMEOUT)
            except asyncio.TimeoutError:
                self.unheld_in_flight = 0
            self.unheld_drained = None

    def new_unit_id(self) -> bytes:
        return b"%s%x" % (self.unit_prefix, next(self.unit_numbers))

    def logging(self) -> bool:
        """appendonly is on: rounds that may write carry their unit."""
        return bool(self.proxy.config.values.get("appendonly"))

    def new_hold_id(self) -> int:
        hold = self.next_hold
        self.next_hold = hold + self.proxy.n_proxies if hold < 0xFFFF0000 else self.proxy.index + 1
        return hold

    async def run(self, conn, plan: Plan, keys: frozenset[bytes] | None = None) -> bytes:
        """The reply of a plan run under the coordinator. Operations that queue up while a
        hold is in progress share the next one (group commit)."""
        future = self.proxy.loop.create_future()
        self.queue.append(Waiting(conn, plan, keys, future))
        if not self.leading:
            self.leading = True
            self.proxy.loop.create_task(self.lead())
        return await future

    async def lead(self) -> None:
        try:
            while self.queue:
                await self.drain_unheld()
                batch, self.queue = self.queue, []
                await self.acquire()
                hold_id, held = self.new_hold_id(), set()
                try:
                    for wave in waves(batch):
                        await self.run_wave(wave, hold_id, held)
                finally:
                    release(self.proxy, held, hold_id)
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.leading = False

    async def run_wave(self, wave: list[Waiting], hold_id: int, held: set[int]) -> None:
        """Run operations on disjoint keys side by side: the one-round ones (Parts) of one db
        and protocol together, in one frame per worker; the others as their own coroutines."""
        rounds: dict[tuple[int, int], list[Waiting]] = {}
        steps = []
        for waiting in wave:
            if isinstance(waiting.plan, Parts):
                # CLIENT NO-TOUCH is a frame flag: such clients' rounds go in frames of their own
                key = (waiting.conn.db, waiting.conn.proto, waiting.conn.frame_flags & NOTOUCH)
                rounds.setdefault(key, []).append(waiting)
            else:
                steps.append(self.attempt(Hold(self, waiting.conn, hold_id, held), waiting))
        jobs = [self.one_round(group, Hold(self, group[0].conn, hold_id, held, one_round=True))
                for group in rounds.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*jobs, *steps), REPLY_TIMEOUT)
        except asyncio.TimeoutError:
            pass
        for waiting in wave:
            if not waiting.future.done():
                waiting.future.set_result(resp.error(TIMED_OUT))

    @staticmethod
    async def one_round(group: list[Waiting], hold: "Hold") -> None:
        parts = [part for waiting in group for part in waiting.plan.parts]
        replies = await hold.run(parts)
        pos = 0
        for waiting in group:
            n = len(waiting.plan.parts)
            try:
                reply = waiting.plan.merge(replies[pos:pos + n])
            except errors.CommandError as exc:
                reply = resp.error(str(exc))
            except Exception as exc:
                log.log("warning", f"internal error in a cross-shard operation: {exc!r}")
                reply = resp.error(f"ERR internal error: {exc.__class__.__name__}")
            pos += n
            waiting.future.set_result(reply)

    @staticmethod
    async def attempt(hold: "Hold", waiting: Waiting) -> None:
        reply = await Coordinator.outcome(hold, waiting)
        failed = await hold.commit()   # the AOF commit of its rounds, before the reply
        waiting.future.set_result(reply if failed is None else failed)

    @staticmethod
    async def outcome(hold: "Hold", waiting: Waiting) -> bytes:
        try:
            return await waiting.plan(hold)
        except errors.CommandError as exc:
            return resp.error(str(exc))
        except Exception as exc:  # a bug answers this client; the others in the hold go on
            log.log("warning", f"internal error in a cross-shard operation: {exc!r}")
            return resp.error(f"ERR internal error: {exc.__class__.__name__}")

    async def acquire(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await self.proxy.loop.run_in_executor(None, fcntl.flock, self.fd, fcntl.LOCK_EX)


def waves(batch: list[Waiting]) -> list[list[Waiting]]:
    """Split a batch, in order, into groups that run side by side, the groups one after the
    other. One-round operations (Parts) never conflict with each other: they share one frame
    per worker, which every worker runs in the same order, so all see one serial order. An
    operation of several rounds (Steps) must not share keys with anything beside it; one whose
    keys are not known runs alone."""
    groups: list[list[Waiting]] = []
    current: list[Waiting] = []
    by_steps: set[bytes] = set()     # keys of the Steps operations in `current`
    by_parts: set[bytes] = set()     # keys of its Parts operations
    for waiting in batch:
        keys = waiting.keys
        one_round = isinstance(waiting.plan, Parts)
        clash = keys is None or (by_steps & keys if one_round else (by_steps | by_parts) & keys)
        if clash:
            if current:
                groups.append(current)
            current, by_steps, by_parts = [], set(), set()
            if keys is None:
                groups.append([waiting])
                continue
        current.append(waiting)
        (by_parts if one_round else by_steps).update(keys)
    if current:
        groups.append(current)
    return groups


def release(proxy, held: set[int], hold_id: int) -> None:
    from .server import FrameBuilder
    for w in held:
        b = FrameBuilder(0, RELEASE | NO_REPLY, hold_id)
        proxy.send_frame(w, 0, b.build(None, 0, 0, 0, 2), None, None, control=True)
    held.clear()


class Hold:
    """One operation's view of the hold it runs in (several share one in a group commit)."""

    def __init__(self, coordinator: Coordinator, conn, hold_id: int, held: set[int],
                 one_round: bool = False) -> None:
        self.coordinator = coordinator
        self.proxy = coordinator.proxy
        self.conn = conn
        self.id = hold_id
        self.held = held
        self.one_round = one_round       # its one run() is all it does (Parts)
        self.unit: bytes | None = None   # its AOF unit id, once a round may write
        self.wrote: set[int] = set()     # workers that ran a round that may write (to commit)
        self.flags = conn.frame_flags & NOTOUCH   # the client's reads leave access times alone

    async def run(self, parts: list[Part], db: int | None = None) -> list[bytes]:
        """Run sub-commands inside the hold (holding each worker on first use); the replies
        in the order of `parts`."""
        from .server import FrameBuilder
        proxy = self.proxy
        builders: dict[int, FrameBuilder] = {}
        note = self.unit_command(parts)
        futures = []
        for w, argv, slot in parts:
            b = builders.get(w)
            if b is None:
                b = builders[w] = FrameBuilder(0, (IN_HOLD if w in self.held else HOLD) | self.flags, self.id)
                if note is not None:
                    b.add_extra(note, slot)
                    b.runs.append(1)
                    b.targets.append(IGNORED)
            target = ReplyFuture(proxy.loop)
            b.add_extra(argv, slot)
            b.runs.append(1)
            b.targets.append(target)
            futures.append(target.future)
        self.send(builders, db)
        return list(await asyncio.gather(*futures))

    def send(self, builders: dict, db: int | None) -> None:
        proxy, conn = self.proxy, self.conn
        for w, b in builders.items():
            bid = proxy.take_batch_id()
            frame = b.build(None, bid, conn.id, conn.db if db is None else db, conn.proto)
            proxy.send_frame(w, bid, frame, conn, b.targets, control=True)
            self.held.add(w)

    def unit_command(self, parts: list[Part]) -> list[bytes] | None:
        """The __aofunit that starts this round's frames, when the AOF is on and it may write:
        a one-round operation's round is its commit (`c`), any other a round (`p`) of a unit
        that commit() ends."""
        if not self.coordinator.logging() or not any(may_write(argv) for _, argv, _ in parts):
            return None
        workers = sorted({w for w, _, _ in parts})
        if self.one_round:
            if len(workers) < 2:
                return None              # one frame on one worker: whole by itself
            kind = b"c"
        else:
            kind = b"p"
            self.wrote.update(workers)
        if self.unit is None:
            self.unit = self.coordinator.new_unit_id()
        return [b"__aofunit", self.unit, kind, b",".join(b"%d" % w for w in workers)]

    async def commit(self) -> bytes | None:
        """After the last round of an operation of several: every worker it wrote on logs
        the unit's commit (before the operation's reply, so a crash keeps all or none). An
        error when a worker could not (it exited, or lost the hold): the operation may then
        stand on some workers only, and its client must not be told it succeeded."""
        if not self.wrote:
            return None
        from .server import FrameBuilder
        workers = sorted(self.wrote)
        self.wrote = set()
        note = [b"__aofunit", self.unit, b"c", b",".join(b"%d" % w for w in workers)]
        builders = {}
        futures = []
        for w in workers:
            b = builders[w] = FrameBuilder(0, (IN_HOLD if w in self.held else HOLD) | self.flags, self.id)
            target = ReplyFuture(self.proxy.loop)
            b.add_extra(note, 0)
            b.runs.append(1)
            b.targets.append(target)
            futures.append(target.future)
        self.send(builders, None)
        for reply in await asyncio.gather(*futures):
            if reply[:1] == b"-":
                return resp.error("ERR a shard worker failed while this cross-shard operation was committed "
                                  f"({reply[1:].decode('utf-8', 'replace').strip()}); it may be partly applied")
        return None

