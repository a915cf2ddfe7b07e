#!/usr/bin/env python3
"""The design with nothing else: a uvloop proxy and shard workers over shardd's rings, GET/SET only.

What the architecture itself can reach on this machine, so the gap between shardd and
redis-server splits into what the design costs (this server) and what shardd's features cost
(shardd against this server). It keeps every part of shardd's hot path that the design needs
and drops everything else:

- the proxy parses each read with hiredis, routes each command by CRC16 of its key (no hash
  tags), and sends one frame per worker per loop turn with every read bound for it;
- a read whose commands all go to one worker goes as it came; a read spanning two workers goes
  whole to both with a one-byte-per-command worker map (shardd's SPLIT), each worker runs its
  own commands and answers with its runs, and the proxy interleaves the runs;
- workers sleep on an eventfd behind a shared-memory flag (shardd.ring.Waker) and answer with
  one frame per turn;
- no command table, statistics, expiry, eviction, persistence, errors beyond an unknown
  command, or protocol checks.

`compare.py --minimal` runs it beside redis-server and shardd for set and get.

Usage: python3 bench/minimal_server.py --port P [--workers 1|2]
"""
from __future__ import annotations

import argparse
import array
import asyncio
import os
import select
import signal
import struct
import sys
from binascii import crc_hqx
from pathlib import Path

import hiredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shardd import resp  # noqa: E402
from shardd.ring import FrameReader, FrameWriter, Ring, SharedRegion, Waker, ring_size  # noqa: E402

RING_BYTES = 1 << 22
SECTION = struct.Struct("<QIII")   # client id, commands, request bytes, worker-map bytes (0: all ours)
ANSWER = struct.Struct("<QI")      # client id, reply bytes
FRAME_LENGTH = struct.Struct("<Q")
OK, NIL, PONG = resp.OK, resp.NULL2, resp.PONG
UNKNOWN = b"-ERR unknown command\r\n"


def execute(data: dict[bytes, bytes], argv: list[bytes]) -> bytes:
    name = argv[0].upper()
    if name == b"GET":
        value = data.get(argv[1])
        return NIL if value is None else resp.bulk(value)
    if name == b"SET":
        data[argv[1]] = argv[2]
        return OK
    if name == b"PING":
        return PONG
    if name == b"FLUSHALL":
        data.clear()
        return OK
    return UNKNOWN


def run_section(data: dict, reader: hiredis.Reader, n: int, worker_map: bytes, me: int) -> bytes:
    """One client's read: its replies, or (with a worker map) u32 runs | u32 lengths | bodies."""
    if not worker_map:
        return b"".join([execute(data, reader.gets()) for _ in range(n)])
    runs: list[list[bytes]] = []
    previous_ours = False
    for i in range(n):
        argv = reader.gets()
        if worker_map[i] != me:
            previous_ours = False
            continue
        if not previous_ours:
            runs.append([])
            previous_ours = True
        runs[-1].append(execute(data, argv))
    bodies = [b"".join(run) for run in runs]
    return len(bodies).to_bytes(4, "little") + array.array("I", map(len, bodies)).tobytes() + b"".join(bodies)


def worker(me: int, requests: FrameReader, replies: FrameWriter, own: Waker, proxy: Waker) -> None:
    data: dict[bytes, bytes] = {}
    reader = hiredis.Reader()
    parent = os.getppid()
    while True:
        frame = requests.next()
        if frame is None:
            own.prepare_sleep()
            if not requests.ring.available():
                select.select([own.fd], [], [], 1.0)
                if os.getppid() != parent:      # the proxy is gone
                    return
            own.cancel_sleep()
            own.drain()
            continue
        out = []
        pos = 0
        while pos < len(frame):
            client, n, size, map_size = SECTION.unpack_from(frame, pos)
            pos += SECTION.size
            worker_map = frame[pos:pos + map_size]
            pos += map_size
            reader.feed(frame, pos, size)
            pos += size
            body = run_section(data, reader, n, worker_map, me)
            out += (ANSWER.pack(client, len(body)), body)
        payload = b"".join(out)
        replies.send_framed(FRAME_LENGTH.pack(len(payload)) + payload)
        proxy.wake_if_sleeping()


def merge_runs(worker_map: bytes, parts: dict[int, bytes]) -> bytes:
    """Two workers' runs of one read, interleaved back into command order."""
    runs = {}
    for w, body in parts.items():
        n = int.from_bytes(body[:4], "little")
        pos = 4 + 4 * n
        mine = []
        for length in array.array("I", body[4:pos]):
            mine.append(body[pos:pos + length])
            pos += length
        runs[w] = mine
    first, second = runs[worker_map[0]], runs[1 - worker_map[0]]
    merged: list[bytes] = [b""] * (len(first) + len(second))
    merged[0::2], merged[1::2] = first, second
    return b"".join(merged)


class Place:
    """One read's place in its client's reply order: one worker's, or both (split)."""
    __slots__ = ("worker", "data", "worker_map", "parts")

    def __init__(self, worker: int, worker_map: bytes = b"") -> None:
        self.worker = worker            # -1: split over both workers
        self.data: bytes | None = None
        self.worker_map = worker_map
        self.parts: dict[int, bytes] = {}


class Proxy:
    def __init__(self, links: list[tuple[FrameWriter, FrameReader, Waker]], waker: Waker) -> None:
        self.links = links
        self.waker = waker
        self.turn: list[list[bytes]] = [[] for _ in links]
        self.send_scheduled = False
        self.clients: dict[int, Client] = {}
        self.touched: set[Client] = set()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(waker.fd, self.on_wake)
        waker.prepare_sleep()           # replies wake us from the start

    def add(self, w: int, client: int, n: int, raw: bytes, worker_map: bytes = b"") -> None:
        self.turn[w] += (SECTION.pack(client, n, len(raw), len(worker_map)), worker_map, raw)
        if not self.send_scheduled:
            self.send_scheduled = True
            self.loop.call_soon(self.send_turn)

    def send_turn(self) -> None:
        self.send_scheduled = False
        for w, parts in enumerate(self.turn):
            if parts:
                self.turn[w] = []
                payload = b"".join(parts)
                requests, _, waker = self.links[w]
                requests.send_framed(FRAME_LENGTH.pack(len(payload)) + payload)
                waker.wake_if_sleeping()

    def on_wake(self) -> None:
        self.waker.drain()
        while True:
            for w, (_, replies, _) in enumerate(self.links):
                frame = replies.next()
                while frame is not None:
                    self.answer(w, frame)
                    frame = replies.next()
            for client in self.touched:
                client.flush()
            self.touched.clear()
            self.waker.prepare_sleep()
            if not any(replies.ring.available() for _, replies, _ in self.links):
                return
            self.waker.cancel_sleep()

    def answer(self, w: int, frame: bytes) -> None:
        pos = 0
        while pos < len(frame):
            client_id, size = ANSWER.unpack_from(frame, pos)
            pos += ANSWER.size
            client = self.clients.get(client_id)
            if client is not None:
                client.fill(w, frame[pos:pos + size])
                self.touched.add(client)
            pos += size


class Client(asyncio.Protocol):
    next_id = 0

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.reader = hiredis.Reader()
        self.places: list[Place] = []
        Client.next_id += 1
        self.id = Client.next_id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.proxy.clients[self.id] = self

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.pop(self.id, None)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        cmds = []
        cmd = reader.gets()
        while cmd is not False:
            cmds.append(cmd)
            cmd = reader.gets()
        if not cmds or reader.has_data():
            raise NotImplementedError("a read ending inside a command (not sent by redis-benchmark)")
        n_workers = len(self.proxy.links)
        workers = bytes([(crc_hqx(argv[1], 0) & 16383) % n_workers if len(argv) > 1 else 0 for argv in cmds])
        first = workers[0]
        if workers.count(first) == len(workers):
            self.places.append(Place(first))
            self.proxy.add(first, self.id, len(cmds), data)
            return
        self.places.append(Place(-1, workers))
        for w in (0, 1):
            self.proxy.add(w, self.id, len(cmds), data, workers)

    def fill(self, w: int, body: bytes) -> None:
        """Worker w's next answer for us: the oldest place still waiting for it."""
        for place in self.places:
            if place.data is not None:
                continue
            if place.worker == w:
                place.data = body
                return
            if place.worker < 0 and w not in place.parts:
                place.parts[w] = body
                if len(place.parts) == 2:
                    place.data = merge_runs(place.worker_map, place.parts)
                return

    def flush(self) -> None:
        places = self.places
        ready = 0
        while ready < len(places) and places[ready].data is not None:
            ready += 1
        if ready:
            self.transport.write(b"".join([p.data for p in places[:ready]]))
            del places[:ready]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, choices=(1, 2), default=2)
    args = parser.parse_args()
    region = SharedRegion(args.workers * 2 * ring_size(RING_BYTES) + 64 * (args.workers + 2))
    proxy_waker = Waker(region.take(64))
    rings = [(Ring(region.take(ring_size(RING_BYTES)), RING_BYTES),
              Ring(region.take(ring_size(RING_BYTES)), RING_BYTES), Waker(region.take(64)))
             for _ in range(args.workers)]
    children = []
    for w, (requests, replies, waker) in enumerate(rings):
        pid = os.fork()
        if pid == 0:
            worker(w, FrameReader(requests), FrameWriter(replies), waker, proxy_waker)
            os._exit(0)
        children.append(pid)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stopping = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stopping.set_result, None)   # then stop the workers
        proxy = Proxy([(FrameWriter(req), FrameReader(rep), waker) for req, rep, waker in rings], proxy_waker)
        server = await loop.create_server(lambda: Client(proxy), "127.0.0.1", args.port)
        async with server:
            await stopping

    try:
        uvloop.run(serve())
    finally:
        for pid in children:
            os.kill(pid, 15)


if __name__ == "__main__":
    main()
