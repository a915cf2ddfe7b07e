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
from typing import Awaitable, Callable

from .. import errors, resp
from ..frames import HOLD, IN_HOLD, NO_REPLY, RELEASE

# Parts are (worker, argv, slot); a plan turns a hold into the client's reply.
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


class Coordinator:
    def __init__(self, proxy, lock_path: str) -> None:
        self.proxy = proxy
        # Our own open file description: flock excludes descriptions, not processes' copies.
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.local = asyncio.Lock()
        self.next_hold = proxy.index + 1

    def new_hold_id(self) -> int:
        hold = self.next_hold
        self.next_hold = hold + self.proxy.n_proxies if hold < 0xFFFF0000 else self.proxy.index + 1
        return hold

    async def run(self, conn, plan: Plan) -> bytes:
        async with self.local:            # flock does not exclude ourselves
            await self.acquire()
            hold = Hold(self, conn)
            try:
                return await asyncio.wait_for(plan(hold), REPLY_TIMEOUT)
            except errors.CommandError as exc:
                return resp.error(str(exc))
            except asyncio.TimeoutError:
                return resp.error(TIMED_OUT)
            finally:
                hold.release()
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    async def acquire(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await self.proxy.loop.run_in_executor(None, fcntl.flock, self.fd, fcntl.LOCK_EX)


class Hold:
    """The shards one coordinated operation holds."""

    def __init__(self, coordinator: Coordinator, conn) -> None:
        self.coordinator = coordinator
        self.proxy = coordinator.proxy
        self.conn = conn
        self.id = coordinator.new_hold_id()
        self.held: set[int] = set()

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

    def release(self) -> None:
        from .server import FrameBuilder
        proxy = self.proxy
        for w in self.held:
            b = FrameBuilder(0, RELEASE | NO_REPLY, self.id)
            proxy.send_frame(w, 0, b.build(None, 0, self.conn.id, 0, 2), None, None, control=True)
        self.held.clear()
