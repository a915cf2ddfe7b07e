"""MIGRATE, after Valkey 8's cluster.c (migrateCommand, migrateGetSocket).

The proxy owns the sockets, the workers own the data. Under one coordinator hold over the
workers of the keys: each present key's DUMP payload and TTL come from its worker (__dumpttl),
the target gets [AUTH] [SELECT] and one RESTORE per key, and the keys the target answered +OK
for are deleted (unless COPY) before the hold ends, so no client ever sees a key on neither
side, and a key leaves only once the target took it. The client's later commands wait for the
reply, in order.

The connection to the target is opened as soon as the command arrives, while it waits for the
hold (a NOKEY reply does not wait for it). Connections are kept for reuse, per proxy, for 10 s
after their last use (MIGRATE_SOCKET_CACHE_TTL) and with a database already SELECTed.

Errors are Valkey's, worded as it words them: no address or no connection within the timeout
is "-IOERR error or timeout connecting to the client"; a refused connection, which Valkey's
blocking connect only finds out about when it writes, is "-IOERR error or timeout writing to
target instance" after the one retry Valkey makes; a target's error reply comes back as "ERR
Target instance replied with error: ...", and the keys it did take are deleted all the same.

Timeouts: MIGRATE's timeout (ms; <= 0 means 1000) bounds each connect, write and read as in
Valkey. The workers give up a hold after 5 s without a frame (worker.main.HOLD_TIMEOUT), so the
target's whole part, from the keys' dump to its last reply, must also end within
TARGET_BUDGET (4 s) whatever the timeout says: past it MIGRATE answers the same -IOERR timeout
error a slow target would get in Valkey, and every key stays here (the target may have taken
some of them, as after any Valkey timeout). Transfers that take longer than that (hundreds of
MB to a slow target) are not possible in one MIGRATE: split them with KEYS.
"""
from __future__ import annotations

import asyncio
import errno
import random
import re
from dataclasses import dataclass

from .. import errors, log, resp
from ..commands import proxy_command
from ..errors import CommandError
from ..numbers import arg_ll
from ..slots import keyslot
from .fanout import PLANNERS
from .replies import decode_or_raise

NOKEY = b"+NOKEY\r\n"
CONNECT_ERROR = b"-IOERR error or timeout connecting to the client\r\n"
IO_ERROR = b"-IOERR error or timeout %s to target instance\r\n"
TARGET_ERROR = b"-ERR Target instance replied with error: "
KEYS_NEED_EMPTY_KEY = ("ERR When using MIGRATE KEYS option, the key argument must be set to the "
                       "empty string")

TARGET_BUDGET = 4.0           # seconds: below the workers' 5 s hold timeout, with a margin
CACHE_TTL = 10.0              # MIGRATE_SOCKET_CACHE_TTL
CACHE_ITEMS = 64              # MIGRATE_SOCKET_CACHE_ITEMS
CHUNK = 64 * 1024             # writes are timed per 64 KiB, as migrateCommand's


class SocketFailure(Exception):
    """A write or read that failed; Valkey retries once unless it timed out."""

    def __init__(self, timed_out: bool, writing: bool = False) -> None:
        super().__init__()
        self.timed_out = timed_out
        self.writing = writing


class ConnectFailure(Exception):
    """No connection: a bad address, or no answer within the timeout."""


@dataclass(frozen=True)
class Migration:
    """A parsed MIGRATE."""
    host: str
    port: int
    address: tuple[bytes, bytes]      # the cache's key: host and port as sent
    keys: list[bytes]
    db: int
    timeout: float                    # seconds
    copy: bool
    replace: bool
    username: bytes | None
    password: bytes | None


_ATOI = re.compile(rb"\s*([+-]?\d+)")


def port_of(value: bytes) -> int:
    """The port Valkey ends up connecting to: atoi (0 when no digits lead), printed and read
    back by getaddrinfo as a 16-bit number."""
    match = _ATOI.match(value)
    return int(match.group(1)) % 65536 if match else 0


def parse(argv: list[bytes]) -> Migration:
    """MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password |
    AUTH2 username password] [KEYS key ...], checked in migrateCommand's order."""
    copy = replace = False
    username = password = None
    keys = [argv[3]]
    j, argc = 6, len(argv)
    while j < argc:
        option = argv[j].lower()
        more = argc - 1 - j
        if option == b"copy":
            copy = True
        elif option == b"replace":
            replace = True
        elif option == b"auth":
            if not more:
                raise CommandError(errors.SYNTAX)
            j += 1
            password = argv[j]
        elif option == b"auth2":
            if more < 2:
                raise CommandError(errors.SYNTAX)
            username, password = argv[j + 1], argv[j + 2]
            j += 2
        elif option == b"keys":
            if argv[3]:
                raise CommandError(KEYS_NEED_EMPTY_KEY)
            keys = argv[j + 1:]
            break
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    timeout = arg_ll(argv[5])
    db = arg_ll(argv[4])
    if timeout <= 0:
        timeout = 1000
    return Migration(host=argv[1].decode("utf-8", "replace"), port=port_of(argv[2]),
                     address=(argv[1], argv[2]), keys=keys, db=db, timeout=timeout / 1000,
                     copy=copy, replace=replace, username=username, password=password)


# -- the target's sockets ------------------------------------------------------------------

class TargetSocket:
    __slots__ = ("reader", "writer", "last_db", "last_use")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_db: int | None = None      # the db SELECTed on it, None when not known
        self.last_use = 0.0

    def stale(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class SocketCache:
    """Idle target connections of this proxy by host and port. A MIGRATE takes its socket
    out while it talks, so two MIGRATEs never share one."""

    def __init__(self) -> None:
        self.idle: dict[tuple[bytes, bytes], TargetSocket] = {}
        self.sweeping = False

    def take(self, address: tuple[bytes, bytes]) -> TargetSocket | None:
        sock = self.idle.pop(address, None)
        if sock is not None and sock.stale():
            sock.close()
            return None
        return sock

    def give_back(self, address: tuple[bytes, bytes], sock: TargetSocket) -> None:
        loop = asyncio.get_running_loop()
        sock.last_use = loop.time()
        old = self.idle.pop(address, None)
        if old is not None:
            old.close()
        if len(self.idle) >= CACHE_ITEMS:
            self.idle.pop(random.choice(list(self.idle))).close()
        self.idle[address] = sock
        if not self.sweeping:
            self.sweeping = True
            loop.call_later(1.0, self.sweep)

    def sweep(self) -> None:
        """Close connections unused for CACHE_TTL (migrateCloseTimedoutSockets, each second)."""
        now = asyncio.get_running_loop().time()
        for address, sock in list(self.idle.items()):
            if now - sock.last_use > CACHE_TTL:
                del self.idle[address]
                sock.close()
        self.sweeping = bool(self.idle)
        if self.sweeping:
            asyncio.get_running_loop().call_later(1.0, self.sweep)


CACHE = SocketCache()


# Errors a non-blocking connect reports later, through the socket: Valkey's blocking connect
# only waits for the socket to be writable, so it learns of them when writing.
LATE_CONNECT_ERRORS = frozenset((errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH))


async def open_socket(m: Migration) -> TargetSocket:
    """A cached connection to the target, or a new one (within the timeout)."""
    sock = CACHE.take(m.address)
    if sock is not None:
        return sock
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), m.timeout)
    except OSError as exc:
        if exc.errno in LATE_CONNECT_ERRORS:
            raise SocketFailure(False, writing=True) from None
        raise ConnectFailure() from None
    except Exception:
        raise ConnectFailure() from None
    return TargetSocket(reader, writer)


class Connector:
    """The target socket of one MIGRATE: opened ahead of the hold when `early`, else when
    first asked for; each `get` after a failed attempt opens a new one."""

    def __init__(self, m: Migration, early: bool) -> None:
        self.m = m
        self.pending = asyncio.get_running_loop().create_task(open_socket(m)) if early else None

    async def get(self, deadline: float) -> TargetSocket:
        """The socket; ConnectFailure, or SocketFailure for a refusal met late."""
        task, self.pending = self.pending, None
        loop = asyncio.get_running_loop()
        if task is None:
            task = loop.create_task(open_socket(self.m))
        try:
            return await asyncio.wait_for(task, max(deadline - loop.time(), 0))
        except (SocketFailure, ConnectFailure):
            raise
        except Exception:
            raise ConnectFailure() from None

    def abandon(self) -> None:
        """The socket opened ahead is not needed (NOKEY, or the plan never ran): keep it."""
        task, self.pending = self.pending, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            CACHE.give_back(self.m.address, task.result())


# -- talking to the target ------------------------------------------------------------------

async def bounded(awaitable, m: Migration, deadline: float, writing: bool = False):
    """One I/O operation within MIGRATE's timeout and what is left of the hold's budget."""
    limit = min(m.timeout, deadline - asyncio.get_running_loop().time())
    try:
        return await asyncio.wait_for(awaitable, max(limit, 0))
    except TimeoutError:
        raise SocketFailure(True, writing) from None
    except Exception:
        raise SocketFailure(False, writing) from None


async def write_all(sock: TargetSocket, data: bytes, m: Migration, deadline: float) -> None:
    writer = sock.writer
    for pos in range(0, len(data), CHUNK):
        writer.write(data[pos:pos + CHUNK])
        await bounded(writer.drain(), m, deadline, writing=True)


async def read_line(sock: TargetSocket, m: Migration, deadline: float) -> bytes:
    """One reply line without its CRLF (connSyncReadLine: an empty line is a failure too)."""
    line = await bounded(sock.reader.readline(), m, deadline)
    if not line.endswith(b"\n"):
        raise SocketFailure(False)
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if not line:
        raise SocketFailure(False)
    return line


def target_commands(m: Migration, items: list[tuple[bytes, bytes, int]], select: bool) -> bytes:
    out = []
    if m.password is not None:
        auth = [b"AUTH", m.password] if m.username is None else [b"AUTH", m.username, m.password]
        out.append(resp.command(auth))
    if select:
        out.append(resp.command([b"SELECT", b"%d" % m.db]))
    tail = [b"REPLACE"] if m.replace else []
    for key, payload, ttl in items:
        out.append(resp.command([b"RESTORE", key, b"%d" % max(ttl, 0), payload, *tail]))
    return b"".join(out)


async def transfer(m: Migration, items: list[tuple[bytes, bytes, int]], connector: Connector,
                   deadline: float) -> tuple[bytes, list[bytes]]:
    """(reply, keys the target took) after sending the RESTOREs, with migrateCommand's one
    retry on a fresh connection when nothing was taken and nothing timed out."""
    may_retry = True
    while True:
        sock = None
        try:
            sock = await connector.get(deadline)
            outcome = await converse(sock, m, items, deadline, may_retry)
        except ConnectFailure:
            return CONNECT_ERROR, []
        except SocketFailure as failure:
            if sock is not None:
                sock.close()
            if may_retry and not failure.timed_out:
                may_retry = False
                continue
            return IO_ERROR % (b"writing" if failure.writing else b"reading"), []
        except BaseException:       # cancelled with the hold: the socket's state is unknown
            if sock is not None:
                sock.close()
            raise
        reply, taken, broken = outcome
        if broken:
            sock.close()
        else:
            CACHE.give_back(m.address, sock)
        return reply, taken


async def converse(sock: TargetSocket, m: Migration, items: list[tuple[bytes, bytes, int]],
                   deadline: float, may_retry: bool) -> tuple[bytes, list[bytes], bool]:
    """(reply, keys taken, socket broken) of one attempt; SocketFailure when it may be
    retried or nothing was read yet."""
    select = sock.last_db != m.db
    await write_all(sock, target_commands(m, items, select), m, deadline)
    early_error = None      # an AUTH or SELECT error makes every RESTORE reply count as one
    if m.password is not None:
        line = await read_line(sock, m, deadline)
        if line[:1] == b"-":
            early_error = line
    if select:
        line = await read_line(sock, m, deadline)
        if line[:1] == b"-" and early_error is None:
            early_error = line
    target_error = None
    taken = []
    for j, (key, _, _) in enumerate(items):
        try:
            line = await read_line(sock, m, deadline)
        except SocketFailure as failure:
            if target_error is None and j == 0 and may_retry and not failure.timed_out:
                raise
            if target_error is not None:
                return target_error, taken, True
            return IO_ERROR % b"reading", taken, True
        error = early_error or (line if line[:1] == b"-" else None)
        if error is None:
            taken.append(key)
        elif target_error is None:
            target_error = TARGET_ERROR + error[1:] + b"\r\n"
    if target_error is not None:
        sock.last_db = None
        return target_error, taken, False
    sock.last_db = m.db
    return resp.OK, taken, False


# -- the plan ------------------------------------------------------------------------------

async def fetch(hold, conn, keys: list[bytes]) -> list[tuple[bytes, bytes, int]]:
    """(key, payload, ms to live or -1) of each present key, in argument order."""
    slotmap = conn.proxy.slotmap
    parts = []
    for key in keys:
        slot = keyslot(key)
        parts.append((slotmap[slot], [b"__dumpttl", key], slot))
    items = []
    for key, reply in zip(keys, await hold.run(parts)):
        found = decode_or_raise(reply)
        if found is not None:
            items.append((key, found[0], found[1]))
    return items


async def delete(hold, conn, keys: list[bytes]) -> None:
    slotmap = conn.proxy.slotmap
    by_worker: dict[int, list[bytes]] = {}
    for key in keys:
        by_worker.setdefault(slotmap[keyslot(key)], []).append(key)
    parts = [(w, [b"DEL", *group], keyslot(group[0])) for w, group in by_worker.items()]
    for reply in await hold.run(parts):
        decode_or_raise(reply)


def migration_steps(conn, m: Migration, connector: Connector):
    async def steps(hold) -> bytes:
        items = await fetch(hold, conn, m.keys)
        if not items:
            connector.abandon()
            return NOKEY
        deadline = asyncio.get_running_loop().time() + TARGET_BUDGET
        reply, taken = await transfer(m, items, connector, deadline)
        if taken and not m.copy:
            await delete(hold, conn, taken)
        return reply
    return steps


def migrate_in_transaction(conn, argv: list[bytes]):
    """EXEC's plan: the same steps inside the transaction's hold."""
    m = parse(argv)
    if not m.keys:
        return NOKEY
    return migration_steps(conn, m, Connector(m, early=False))


PLANNERS["migrate"] = migrate_in_transaction


@proxy_command("migrate")
def migrate_command(conn, argv: list[bytes]) -> bytes | None:
    m = parse(argv)
    if not m.keys:
        return NOKEY
    entry = conn.hold_place()
    conn.proxy.loop.create_task(run_migration(conn, entry, m))
    return None


async def run_migration(conn, entry, m: Migration) -> None:
    connector = Connector(m, early=True)
    try:
        # Earlier commands of this client first: a hold would overtake them on their rings.
        await conn.until_first(entry)
        steps = migration_steps(conn, m, connector)
        entry.data = await conn.proxy.coordinator.run(conn, steps, frozenset(m.keys))
    except Exception as exc:  # a bug answers this client, it does not wedge it
        log.log("warning", f"internal error in MIGRATE: {exc!r}")
        entry.data = resp.error(f"ERR internal error: {exc.__class__.__name__}")
    finally:
        connector.abandon()
    conn.resume()
