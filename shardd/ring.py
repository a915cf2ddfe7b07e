"""Single-producer/single-consumer byte rings in shared memory, and their wake-ups.

The supervisor maps one anonymous shared region before it forks; every ring and every
sleep flag is a fixed slice of it. Counters are monotonic byte totals: the producer owns
`head`, the consumer owns `tail`, each on its own cache line. x86 keeps stores in order and
loads in order, so publishing `head` after copying the bytes is enough for the data path.

Wake-ups: a consumer that is about to sleep sets its flag, issues a full fence, re-checks its
rings, and only then waits on its eventfd (with a short timeout as a safety net). A producer
publishes, fences, and writes the eventfd only if the flag is set. The fence is an uncontended
lock round trip: its locked instruction is a full barrier, the one reordering (store→load)
x86 allows is closed by it, and it costs ~80 ns where a CFFI atomic costs microseconds.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
from collections import deque

_LINE = 64
RING_HEADER = 2 * _LINE
_fence_lock = threading.Lock()
_U64 = struct.Struct("<Q")


def full_fence() -> None:
    _fence_lock.acquire()
    _fence_lock.release()


class SharedRegion:
    """An anonymous shared mapping carved into rings and flags by a bump allocator."""

    def __init__(self, size: int) -> None:
        self.mm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        self.view = memoryview(self.mm)
        self.used = 0

    def take(self, size: int) -> memoryview:
        start = (self.used + _LINE - 1) // _LINE * _LINE
        if start + size > len(self.mm):
            raise MemoryError("shared region exhausted")
        self.used = start + size
        return self.view[start:start + size]


def ring_size(capacity: int) -> int:
    return RING_HEADER + capacity


class Ring:
    """One direction of bytes; either end may use it (producer: write, consumer: read)."""

    __slots__ = ("counters", "data", "capacity", "mask", "want_space")

    def __init__(self, region: memoryview, capacity: int) -> None:
        assert capacity & (capacity - 1) == 0, "capacity must be a power of two"
        self.counters = region[:RING_HEADER].cast("Q")   # [0] head, [8] tail, [9] want_space
        self.data = region[RING_HEADER:RING_HEADER + capacity]
        self.capacity = capacity
        self.mask = capacity - 1

    # -- producer ----------------------------------------------------------------------
    def free(self) -> int:
        c = self.counters
        return self.capacity - (c[0] - c[8])

    def write(self, data: bytes | memoryview) -> int:
        """Copy as much of data as fits; returns the number of bytes written."""
        c = self.counters
        head = c[0]
        n = min(len(data), self.capacity - (head - c[8]))
        if n <= 0:
            return 0
        pos = head & self.mask
        first = min(n, self.capacity - pos)
        self.data[pos:pos + first] = data[:first] if first < len(data) else data
        if first < n:
            self.data[0:n - first] = data[first:n]
        c[0] = head + n
        return n

    # -- consumer ----------------------------------------------------------------------
    def available(self) -> int:
        c = self.counters
        return c[0] - c[8]

    def read(self, n: int) -> bytes:
        """Take exactly n bytes (the caller checked available())."""
        c = self.counters
        tail = c[8]
        pos = tail & self.mask
        end = pos + n
        if end <= self.capacity:
            out = self.data[pos:end].tobytes()
        else:
            out = self.data[pos:].tobytes() + self.data[:end - self.capacity].tobytes()
        c[8] = tail + n
        return out

    # -- producer waiting for space ------------------------------------------------------
    def set_want_space(self, value: int) -> None:
        self.counters[9] = value

    def wants_space(self) -> bool:
        return self.counters[9] != 0


class Waker:
    """A process's sleep flag (in shared memory) and eventfd."""

    __slots__ = ("flag", "fd")

    def __init__(self, region: memoryview) -> None:
        self.flag = region[:8].cast("Q")
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def wake_if_sleeping(self, force: bool = False) -> None:
        """Producer side, after publishing: the fence orders our head store before the load."""
        full_fence()
        if self.flag[0] or force:
            self.flag[0] = 0
            try:
                os.eventfd_write(self.fd, 1)
            except BlockingIOError:
                pass

    def prepare_sleep(self) -> None:
        self.flag[0] = 1
        full_fence()

    def cancel_sleep(self) -> None:
        self.flag[0] = 0

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass


FRAME_HEADER = _U64


class FrameWriter:
    """Writes length-prefixed frames to a ring; what does not fit waits in a queue."""

    __slots__ = ("ring", "pending")

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.pending: deque[memoryview] = deque()

    def send(self, payload: bytes) -> bool:
        """Queue one frame and push what fits; True when everything is in the ring."""
        return self.send_framed(_U64.pack(len(payload)) + payload)

    def send_framed(self, frame: bytes) -> bool:
        """Like send, for a frame that starts with its own u64 payload length."""
        if self.pending:
            self.pending.append(memoryview(frame))
            self.flush()
            return False
        n = self.ring.write(frame)
        if n == len(frame):
            return True
        self.pending.append(memoryview(frame)[n:])
        self.ring.set_want_space(1)
        return False

    def flush(self) -> bool:
        """Push queued bytes; True when any moved (the consumer should then be woken)."""
        ring = self.ring
        pending = self.pending
        moved = False
        while pending:
            chunk = pending[0]
            n = ring.write(chunk)
            if n:
                moved = True
            if n == len(chunk):
                pending.popleft()
                continue
            if n:
                pending[0] = chunk[n:]
            ring.set_want_space(1)
            break
        return moved


class FrameReader:
    """Reads whole frames from a ring, assembling frames larger than the ring in pieces."""

    __slots__ = ("ring", "need", "parts", "got")

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.need = -1          # payload bytes of the frame being assembled, -1 when none
        self.parts: list[bytes] = []
        self.got = 0

    def reset(self) -> None:
        self.need = -1
        self.parts = []
        self.got = 0

    def assembling(self) -> bool:
        """A frame larger than the ring is part-way in."""
        return self.need >= 0

    def next(self) -> bytes | None:
        ring = self.ring
        avail = ring.available()
        if self.need < 0:
            if avail < 8:
                return None
            self.need = _U64.unpack(ring.read(8))[0]
            avail -= 8
        need = self.need - self.got
        if avail >= need and not self.parts:
            self.need = -1
            return ring.read(need)
        if avail:
            take = min(avail, need)
            self.parts.append(ring.read(take))
            self.got += take
            if take == need:
                out = b"".join(self.parts)
                self.parts = []
                self.got = 0
                self.need = -1
                return out
        return None
