"""Links between proxies, for what must reach the clients of another proxy: published messages,
MONITOR lines, tracking invalidations redirected to a client over there, and the subscription
counts each proxy keeps of the others.

Transport: one unix stream socket per pair of proxies, in the abstract namespace (named after
the server's run id, so nothing is left on disk and a second server never collides). The
lower-numbered proxy connects, the other accepts; each side writes its frames in order, so
everything one proxy sends another (a publisher's messages included) arrives in the order sent.
What a proxy sends during one loop turn leaves in one write per peer.

Why not the other channels at hand: the supervisor's control sockets cost two hops through a
Python process and a pickle per message; the worker rings would put every message through a
worker busy with data; new shared-memory rings between proxies would need the supervisor to
map them and a restart protocol of their own. A socket pair gives ordering, buffering and
restart detection (EOF) for free. With one proxy (the default) none of this exists.

A proxy that restarts loses its sockets; the survivors notice the EOF, forget what they knew
of its subscriptions, and the lower-numbered side reconnects (retrying every RETRY seconds).
"""
from __future__ import annotations

import asyncio
import socket
import struct
from typing import Callable

FRAME = struct.Struct("<IB")      # payload length (type byte included), frame type
RETRY = 0.05                      # seconds between attempts to reach a peer that is down


def socket_name(run_id: str, index: int) -> bytes:
    return b"\0shardd-peer-" + run_id.encode() + b"-%d" % index


class PeerLink(asyncio.Protocol):
    """One connection to another proxy (either end of it)."""

    def __init__(self, peers: "Peers", index: int | None) -> None:
        self.peers = peers
        self.index = index            # the peer's proxy index (None until its HELLO, when accepted)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.up = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.index is not None:      # we connected: say who we are
            self.peers.link_up(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        frames = []
        while end - pos >= FRAME.size:
            size, kind = FRAME.unpack_from(buf, pos)
            stop = pos + 4 + size
            if stop > end:
                break
            frames.append((kind, bytes(buf[pos + FRAME.size:stop])))
            pos = stop
        if pos:
            del buf[:pos]
        peers = self.peers
        for kind, payload in frames:
            if self.index is None:       # the first frame of an accepted link names the peer
                if kind != HELLO:
                    self.transport.close()
                    return
                self.index = struct.unpack("<H", payload)[0]
                peers.link_up(self)
                continue
            peers.handler(self.index, kind, payload)

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self.up:
            self.peers.link_down(self)

    def send(self, kind: int, payload: bytes) -> None:
        if self.transport is None:
            return
        if not self.out:
            self.peers.schedule_flush(self)
        self.out.append(FRAME.pack(len(payload) + 1, kind))
        self.out.append(payload)

    def flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


HELLO = 0


class Peers:
    """This proxy's links to every other proxy.

    `handler(peer, kind, payload)` gets every frame but HELLO; `on_up(peer)` runs when a link
    is ready (send the full state there), `on_down(peer)` when it is lost."""

    def __init__(self, proxy, handler: Callable, on_up: Callable, on_down: Callable) -> None:
        self.proxy = proxy
        self.index = proxy.index
        self.n = proxy.n_proxies
        self.run_id = proxy.info["run_id"]
        self.handler = handler
        self.on_up = on_up
        self.on_down = on_down
        self.links: dict[int, PeerLink] = {}        # peer index → the link, once up
        self.to_flush: list[PeerLink] = []
        self.connecting: set[int] = set()
        self.unseen = set(range(self.n)) - {self.index}    # never linked yet (the start-up window)
        self.server = None

    def start(self) -> None:
        loop = self.proxy.loop
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(socket_name(self.run_id, self.index))
        sock.listen(64)
        sock.setblocking(False)
        self.server = loop.run_until_complete(loop.create_unix_server(lambda: PeerLink(self, None), sock=sock))
        for p in range(self.index + 1, self.n):
            self.connect(p)

    def connect(self, p: int) -> None:
        if p in self.connecting or p in self.links:
            return
        self.connecting.add(p)
        self.proxy.loop.create_task(self._connect(p))

    async def _connect(self, p: int) -> None:
        loop = self.proxy.loop
        while p not in self.links:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, socket_name(self.run_id, p))
                await loop.create_unix_connection(lambda: PeerLink(self, p), sock=sock)
                break
            except OSError:
                sock.close()
                await asyncio.sleep(RETRY)

        self.connecting.discard(p)

    def link_up(self, link: PeerLink) -> None:
        old = self.links.get(link.index)
        if old is not None and old is not link:     # the peer restarted: the old link is stale
            old.up = False
            if old.transport is not None:
                old.transport.close()
            self.on_down(link.index)
        link.up = True
        self.links[link.index] = link
        self.unseen.discard(link.index)
        if link.index > self.index:      # we connected: the accepting side learns who we are
            link.send(HELLO, struct.pack("<H", self.index))
        self.on_up(link.index)

    def link_down(self, link: PeerLink) -> None:
        link.up = False
        if self.links.get(link.index) is link:
            del self.links[link.index]
            self.on_down(link.index)
            if link.index > self.index:
                self.connect(link.index)

    def send(self, p: int, kind: int, payload: bytes) -> None:
        link = self.links.get(p)
        if link is not None:
            link.send(kind, payload)

    def broadcast(self, kind: int, payload: bytes) -> None:
        for link in self.links.values():
            link.send(kind, payload)

    def schedule_flush(self, link: PeerLink) -> None:
        if not self.to_flush:
            self.proxy.loop.call_soon(self.flush)
        self.to_flush.append(link)

    def flush(self) -> None:
        links, self.to_flush = self.to_flush, []
        for link in links:
            link.flush()
