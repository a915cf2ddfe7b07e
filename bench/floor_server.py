#!/usr/bin/env python3
"""The floor of a uvloop server in Python: what one read-and-reply costs with no work at all.

It answers every command of a read at once (`+PONG` for PING, `+OK` for anything else) without
parsing: one `data_received` call, one count of the commands, one `transport.write` per read.
`compare.py --floor` runs it beside redis-server and shardd, so the table shows how much of a
gap to redis-server is the socket loop itself (shardd's proxy has this loop plus parsing,
routing, the rings and the workers).

Usage: python3 bench/floor_server.py --port P
"""
from __future__ import annotations

import argparse
import asyncio

import uvloop


class Floor(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        n = data.count(b"\r\n*") + 1     # commands of the read (redis-benchmark's are whole)
        self.transport.write(b"+PONG\r\n" * n if b"PING" in data[:20] else b"+OK\r\n" * n)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
