"""The coordinator: what spans shards runs under one process-shared lock and a hold.

A proxy takes the `flock` (shared by every proxy of the server; a dead holder's lock is
released by the kernel), then sends its sub-commands to each involved worker's control ring
with HOLD: the worker runs them and then serves nothing but this hold until RELEASE. Since
every shard involved is held until all have answered, no other client sees half of the
operation, on any shard; since every cross-shard operation holds the lock, they are ordered.
Work on one shard never comes here.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
from dataclasses import dataclass
from typing import Awaitable, Callable

from .. import errors, log, resp
from ..frames import HOLD, IN_HOLD, NO_REPLY, RELEASE
from .fanout import Parts

# Parts are (worker, argv, slot); a plan is one round of parts with their merge (Parts), or a
# coroutine function turning a hold into the client's reply.
Part = tuple[int, list[bytes], int]
Plan = Callable[["Hold"], Awaitable[bytes]]

REPLY_TIMEOUT = 10.0
TIMED_OUT = "ERR cross-shard operation timed out"


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
                rounds.setdefault((waiting.conn.db, waiting.conn.proto), []).append(waiting)
            else:
                steps.append(self.attempt(Hold(self, waiting.conn, hold_id, held), waiting))
        jobs = [self.one_round(group, Hold(self, group[0].conn, hold_id, held)) for group in rounds.values()]
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
        waiting.future.set_result(await Coordinator.outcome(hold, waiting))

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

    def __init__(self, coordinator: Coordinator, conn, hold_id: int, held: set[int]) -> None:
        self.proxy = coordinator.proxy
        self.conn = conn
        self.id = hold_id
        self.held = held

    async def run(self, parts: list[Part], db: int | None = None) -> list[bytes]:
        """Run sub-commands inside the hold (holding each worker on first use); the replies
        in the order of `parts`."""
        from .server import FrameBuilder
        proxy, conn = self.proxy, self.conn
        builders: dict[int, FrameBuilder] = {}
        futures = []
        for w, argv, slot in parts:
            b = builders.get(w)
            if b is None:
                b = builders[w] = FrameBuilder(0, IN_HOLD if w in self.held else HOLD, self.id)
            target = ReplyFuture(proxy.loop)
            b.add_extra(argv, slot)
            b.runs.append(1)
            b.targets.append(target)
            futures.append(target.future)
        for w, b in builders.items():
            bid = proxy.take_batch_id()
            frame = b.build(None, bid, conn.id, conn.db if db is None else db, conn.proto)
            proxy.send_frame(w, bid, frame, conn, b.targets, control=True)
            self.held.add(w)
        return list(await asyncio.gather(*futures))

