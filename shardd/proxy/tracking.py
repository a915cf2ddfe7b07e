"""Server-assisted client-side caching: CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO, and the
invalidation messages (after Valkey's tracking.c).

- Default mode: a tracking client's reads go to the workers in frames flagged TRACK (OPTIN /
  OPTOUT and CLIENT CACHING decide command by command), and the worker remembers which client
  read which key. A write to such a key makes the worker send that client's proxy an
  invalidation (a WAKE frame of kind 4, one per worker turn) and forget the entry, as Valkey.
- BCAST: each proxy tells every worker whether it has BCAST clients (`__tracking`); a worker
  then reports every key written to those proxies, which match the keys against their clients'
  prefixes and send one message per prefix with the keys of that turn.
- FLUSHALL/FLUSHDB: worker 0 (every flush reaches it) reports it once; every tracking client
  gets the "invalidate everything" null.

Messages go out as Valkey's sendTrackingMessage: a RESP3 push on the client's own connection,
or, with REDIRECT, to the redirect client: a push if it speaks RESP3, else a message on
`__redis__:invalidate` if it is in Pub/Sub mode. The redirect client may be on another proxy:
the message travels over the peer link; a redirect client that is gone earns the tracking
client a `tracking-redir-broken` push (RESP3).
"""
from __future__ import annotations

import pickle
import struct

from .. import errors, resp
from ..errors import CommandError
from ..frames import NO_REPLY, NOTOUCH, TRACK
from ..numbers import string2ll

INVALIDATE_PUSH = b">2\r\n$10\r\ninvalidate\r\n"
INVALIDATE_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
RECORD = struct.Struct("<BQQI")          # kind, target client (0: any), writer client, key length
KEY, BCAST_KEY, FLUSH = 0, 1, 2

REDIRECT_SINGLE = "ERR A client can only redirect to a single other client"
REDIRECT_MISSING = "ERR The client ID you want redirect to does not exist"
PREFIX_NEEDS_BCAST = "ERR PREFIX option requires BCAST mode to be enabled"
BCAST_SWITCH = ("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then "
                "re-enabling it with a different mode.")
OPT_WITH_BCAST = "ERR OPTIN and OPTOUT are not compatible with BCAST"
OPTIN_AND_OPTOUT = "ERR You can't specify both OPTIN mode and OPTOUT mode"
OPT_SWITCH = ("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then "
              "re-enabling it with a different mode.")
CACHING_NOT_TRACKING = ("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN "
                        "or OPTOUT mode enabled")
CACHING_YES_OPTIN = "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
CACHING_NO_OPTOUT = "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."


class Tracking:
    """One client's CLIENT TRACKING state."""

    __slots__ = ("redirect", "bcast", "optin", "optout", "noloop", "caching", "prefixes", "broken")

    def __init__(self) -> None:
        self.redirect = 0
        self.bcast = False
        self.optin = False
        self.optout = False
        self.noloop = False
        self.caching = False          # CLIENT CACHING yes/no given for the next command
        self.prefixes: dict[bytes, None] = {}
        self.broken = False


class TrackingRegistry:
    """One proxy's tracking clients (pubsub.Registry.tracking)."""

    def __init__(self, registry) -> None:
        self.registry = registry
        self.proxy = registry.proxy
        self.clients: dict = {}       # tracking clients of this proxy
        self.bcast: dict = {}         # those in BCAST mode
        self.told = (0, 0)            # what the workers were last told: (any clients, any BCAST)

    def prefix_count(self) -> int:
        """INFO tracking_total_prefixes (this proxy's BCAST prefixes)."""
        return len({p for c in self.bcast for p in c.pubsub.tracking.prefixes})

    # -- turning tracking on and off -------------------------------------------------------
    def enable(self, conn, redirect: int, bcast: bool, optin: bool, optout: bool, noloop: bool,
               prefixes: list[bytes]) -> None:
        from .pubsub import client_state
        state = client_state(conn)
        t = state.tracking
        if t is None:
            t = state.tracking = Tracking()
        t.redirect = redirect
        t.broken = False
        t.bcast, t.optin, t.optout, t.noloop = bcast, optin, optout, noloop
        if bcast:
            for prefix in prefixes or [b""]:
                t.prefixes[prefix] = None
            self.bcast[conn] = None
        self.clients[conn] = None
        self.registry.refresh_special(conn)

    def disable(self, conn) -> None:
        state = conn.pubsub
        if state is None or state.tracking is None:
            return
        state.tracking = None
        self.clients.pop(conn, None)
        self.bcast.pop(conn, None)
        if conn.frame_flags & TRACK:
            conn.send_frames()
            conn.frame_flags &= ~TRACK
        if not conn.closed:
            self.registry.refresh_special(conn)
        self.tell_workers(conn, wait=False)

    def tell_workers(self, conn, wait: bool) -> bool:
        """Tell every worker whether this proxy has tracking (and BCAST) clients, when that
        changed. With `wait`, the client's reply waits for every worker (True: a place was
        taken for it)."""
        now = (int(bool(self.clients)), int(bool(self.bcast)))
        if now == self.told:
            return False
        self.told = now
        argv = [b"__tracking", b"%d" % now[0], b"%d" % now[1]]
        ranges = self.proxy.info["slot_ranges"]
        if wait and not conn.paused and not conn.closed:
            conn.fanout([(w, argv, lo) for w, (lo, _) in enumerate(ranges)], lambda replies: resp.OK)
            return True
        from .server import FrameBuilder
        for w, (lo, _) in enumerate(ranges):
            b = FrameBuilder(0, NO_REPLY)
            b.add_extra(argv, lo)
            b.runs.append(1)
            self.proxy.send_frame(w, 0, b.build(None, 0, conn.id, 0, 2), None, None)
        return False

    # -- the general dispatch path ------------------------------------------------------------
    def before_command(self, conn, t: Tracking, spec, argv: list[bytes]) -> None:
        """Which of this client's reads the workers remember: its frames carry TRACK or not.
        Reads whose keys span workers (or run in EXEC) go under the coordinator, in frames
        of their own: their keys are registered with each worker first (`__track`)."""
        if t.bcast:
            return
        tracked = t.caching if t.optin else not t.caching if t.optout else True
        flags = (TRACK if tracked else 0) | (conn.frame_flags & NOTOUCH)
        if flags != conn.frame_flags:
            conn.send_frames()
            conn.frame_flags = flags
        in_multi = conn.multi is not None
        if tracked:
            if spec.name == "exec" and in_multi:
                self.register_transaction(conn)
            elif not in_multi and "readonly" in spec.flags and spec.has_keys():
                self.register_reads(conn, [(spec, argv)], spanning_only=True)
        # CLIENT CACHING lasts for one command (a whole transaction; CLIENT itself keeps it).
        if t.caching and spec.name not in ("client", "multi") and (not in_multi or spec.name == "exec"):
            t.caching = False

    def register_transaction(self, conn) -> None:
        queued = []
        for argv in conn.multi or ():
            spec = self.proxy.lookup(argv[0])
            if spec is not None and spec.subcommands and len(argv) > 1:
                spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower(), spec)
            if spec is not None and "readonly" in spec.flags and spec.has_keys():
                queued.append((spec, argv))
        if queued:
            self.register_reads(conn, queued, spanning_only=False)

    def register_reads(self, conn, reads: list, spanning_only: bool) -> None:
        """Have each worker remember the keys these reads will read, for this client."""
        from ..slots import keyslot
        from .server import FrameBuilder
        slotmap = self.proxy.slotmap
        by_worker: dict[int, list[bytes]] = {}
        for spec, argv in reads:
            for key in spec.keys(argv):
                by_worker.setdefault(slotmap[keyslot(key)], []).append(key)
        if spanning_only and len(by_worker) < 2:
            return                   # one worker: the TRACK flag of the frame does it
        conn.send_frames()
        for w, keys in by_worker.items():
            b = FrameBuilder(0, NO_REPLY)
            b.add_extra([b"__track", *keys], keyslot(keys[0]))
            b.runs.append(1)
            self.proxy.send_frame(w, 0, b.build(None, 0, conn.id, conn.db, conn.proto), None, None)

    # -- invalidations ------------------------------------------------------------------------
    def on_worker_frame(self, frame: bytes) -> None:
        body = memoryview(frame)[16:]
        clients = self.proxy.clients
        pos, end = 0, len(body)
        written: dict[bytes, int] = {}
        flushed = False
        while pos < end:
            kind, target, writer, n = RECORD.unpack_from(body, pos)
            pos += RECORD.size
            key = bytes(body[pos:pos + n])
            pos += n
            if kind == KEY:
                c = clients.get(target)
                state = c.pubsub if c is not None else None
                t = state.tracking if state is not None else None
                if t is None or t.bcast or (t.noloop and writer == target):
                    continue
                self.send(c, t, resp.array_header(1) + resp.bulk(key))
            elif kind == BCAST_KEY:
                written[key] = writer
            elif kind == FLUSH:
                flushed = True
        if flushed:
            for c in list(self.clients):
                self.send(c, c.pubsub.tracking, resp.null(c.proto))
        if written and self.bcast:
            self.broadcast(written)

    def broadcast(self, written: dict[bytes, int]) -> None:
        """BCAST clients: per prefix, the keys written under it (NOLOOP: not by the client)."""
        keys = sorted(written)
        for c in list(self.bcast):
            t = c.pubsub.tracking
            for prefix in t.prefixes:
                mine = [k for k in keys if k.startswith(prefix) and not (t.noloop and written[k] == c.id)]
                if mine:
                    self.send(c, t, resp.array_header(len(mine)) + b"".join(map(resp.bulk, mine)))

    def send(self, c, t: Tracking, payload: bytes) -> None:
        """sendTrackingMessage: `payload` is the keys array (or the null of a flush)."""
        if not t.redirect:
            if c.proto == 3:
                self.registry.push(c, INVALIDATE_PUSH + payload)
            return
        target = self.proxy.clients.get(t.redirect)
        if target is not None:
            self.deliver(target, payload)
            return
        peers = self.registry.peers
        owner = (t.redirect - 1) % self.proxy.n_proxies
        if peers is not None and owner != self.proxy.index and owner in peers.links:
            from .pubsub import TRACKING_MESSAGE
            peers.send(owner, TRACKING_MESSAGE, pickle.dumps((t.redirect, c.id, payload)))
            return
        self.redirect_broken(c)

    def deliver(self, target, payload: bytes) -> None:
        """Into the redirect client: a push in RESP3, a Pub/Sub message if it is subscribed."""
        if target.proto == 3:
            self.registry.push(target, INVALIDATE_PUSH + payload)
        elif target.pubsub is not None and target.pubsub.subscribed():
            self.registry.push(target, INVALIDATE_MESSAGE + payload)

    def redirect_broken(self, c) -> None:
        state = c.pubsub
        t = state.tracking if state is not None else None
        if t is None:
            return
        t.broken = True
        if c.proto == 3:
            self.registry.push(c, b">2\r\n$21\r\ntracking-redir-broken\r\n" + resp.integer(t.redirect))

    def on_peer_frame(self, kind: int, payload: bytes) -> None:
        from .pubsub import REDIRECT_BROKEN, TRACKING_MESSAGE
        if kind == TRACKING_MESSAGE:
            target_id, origin, data = pickle.loads(payload)
            target = self.proxy.clients.get(target_id)
            if target is not None:
                self.deliver(target, data)
                return
            owner = (origin - 1) % self.proxy.n_proxies
            self.registry.peers.send(owner, REDIRECT_BROKEN, struct.pack("<Q", origin))
        elif kind == REDIRECT_BROKEN:
            c = self.proxy.clients.get(struct.unpack("<Q", payload)[0])
            if c is not None:
                self.redirect_broken(c)


# -- CLIENT subcommands -----------------------------------------------------------------------
def client_tracking(conn, argv: list[bytes]) -> bytes | None:
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        more = len(argv) - 1 - j
        if opt == b"redirect" and more:
            j += 1
            if redirect:
                raise CommandError(REDIRECT_SINGLE)
            redirect = string2ll(argv[j])
            if redirect is None:
                raise CommandError(errors.NOT_INTEGER)
            # Valkey requires the client to exist now; one of another proxy is asked below.
            if conn.proxy.clients.get(redirect) is None and not elsewhere(conn, redirect):
                raise CommandError(REDIRECT_MISSING)
        elif opt == b"bcast":
            bcast = True
        elif opt == b"optin":
            optin = True
        elif opt == b"optout":
            optout = True
        elif opt == b"noloop":
            noloop = True
        elif opt == b"prefix" and more:
            j += 1
            prefixes.append(argv[j])
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    switch = argv[2].lower()
    registry = conn.proxy.pubsub.tracking
    if switch == b"off":
        registry.disable(conn)
        return resp.OK
    if switch != b"on":
        raise CommandError(errors.SYNTAX)
    current = conn.pubsub.tracking if conn.pubsub is not None else None
    check_options(current, redirect, bcast, optin, optout, prefixes)
    if redirect and conn.proxy.clients.get(redirect) is None:
        return enable_after_asking(conn, redirect, (bcast, optin, optout, noloop, prefixes))
    return enable(conn, redirect, bcast, optin, optout, noloop, prefixes)


def elsewhere(conn, client_id: int) -> bool:
    """Could this id be a client of another proxy (which must then be asked)?"""
    proxy = conn.proxy
    return client_id > 0 and (client_id - 1) % proxy.n_proxies != proxy.index and not conn.paused


def check_options(current: Tracking | None, redirect: int, bcast: bool, optin: bool, optout: bool,
                  prefixes: list[bytes]) -> None:
    """Valkey's checks, in its order, before tracking is turned on."""
    if not bcast and prefixes:
        raise CommandError(PREFIX_NEEDS_BCAST)
    if current is not None and current.bcast != bcast:
        raise CommandError(BCAST_SWITCH)
    if bcast and (optin or optout):
        raise CommandError(OPT_WITH_BCAST)
    if optin and optout:
        raise CommandError(OPTIN_AND_OPTOUT)
    if current is not None and ((optin and current.optout) or (optout and current.optin)):
        raise CommandError(OPT_SWITCH)
    if bcast:
        check_prefixes(current, prefixes)


def check_prefixes(current: Tracking | None, prefixes: list[bytes]) -> None:
    """checkPrefixCollisionsOrReply: no two prefixes of one client may cover the same key."""
    existing = list(current.prefixes) if current is not None else []
    for i, prefix in enumerate(prefixes):
        for old in existing:
            if old.startswith(prefix) or prefix.startswith(old):
                raise CommandError(f"ERR Prefix '{_text(prefix)}' overlaps with an existing prefix '{_text(old)}'. "
                                   "Prefixes for a single client must not overlap.")
        for other in prefixes[i + 1:]:
            if other.startswith(prefix) or prefix.startswith(other):
                raise CommandError(f"ERR Prefix '{_text(prefix)}' overlaps with another provided prefix "
                                   f"'{_text(other)}'. Prefixes for a single client must not overlap.")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def enable(conn, redirect: int, bcast: bool, optin: bool, optout: bool, noloop: bool,
           prefixes: list[bytes]) -> bytes | None:
    registry = conn.proxy.pubsub.tracking
    registry.enable(conn, redirect, bcast, optin, optout, noloop, prefixes)
    if registry.tell_workers(conn, wait=True):
        return None            # OK once every worker knows
    return resp.OK


def enable_after_asking(conn, redirect: int, options: tuple) -> None:
    """The redirect client would be on another proxy: ask there first; this client's later
    commands wait for the answer."""
    proxy = conn.proxy

    def answered(answers: list) -> bytes:
        proxy.loop.call_soon(conn.run_deferred)
        if not any(answers):
            return resp.error(REDIRECT_MISSING)
        registry = proxy.pubsub.tracking
        registry.enable(conn, redirect, *options)
        registry.tell_workers(conn, wait=False)
        return resp.OK
    proxy.ask_all(conn, "client_exists", redirect, answered)
    conn.send_frames()
    conn.paused = True
    return None


def client_exists(proxy, client_id: int, asker) -> bool:
    return client_id in proxy.clients


def client_caching(conn, argv: list[bytes]) -> bytes:
    state = conn.pubsub
    t = state.tracking if state is not None else None
    if t is None:
        raise CommandError(CACHING_NOT_TRACKING)
    opt = argv[2].lower()
    if opt == b"yes":
        if not t.optin:
            raise CommandError(CACHING_YES_OPTIN)
    elif opt == b"no":
        if not t.optout:
            raise CommandError(CACHING_NO_OPTOUT)
    else:
        raise CommandError(errors.SYNTAX)
    t.caching = True
    return resp.OK


def client_getredir(conn, argv: list[bytes]) -> bytes:
    t = conn.pubsub.tracking if conn.pubsub is not None else None
    return resp.integer(-1 if t is None else t.redirect)


def client_trackinginfo(conn, argv: list[bytes]) -> bytes:
    t = conn.pubsub.tracking if conn.pubsub is not None else None
    proto = conn.proto
    flags = [b"on" if t is not None else b"off"]
    if t is not None:
        if t.bcast:
            flags.append(b"bcast")
        if t.optin:
            flags.append(b"optin")
            if t.caching:
                flags.append(b"caching-yes")
        if t.optout:
            flags.append(b"optout")
            if t.caching:
                flags.append(b"caching-no")
        if t.noloop:
            flags.append(b"noloop")
        if t.broken:
            flags.append(b"broken_redirect")
    prefixes = sorted(t.prefixes) if t is not None else []
    return b"".join((resp.map_header(3, proto),
                     resp.bulk(b"flags"), resp.set_header(len(flags), proto), *map(resp.bulk, flags),
                     resp.bulk(b"redirect"), resp.integer(-1 if t is None else t.redirect),
                     resp.bulk(b"prefixes"), resp.array_header(len(prefixes)), *map(resp.bulk, prefixes)))


def install() -> None:
    """Add the subcommands to CLIENT (connection.py) and the peer question REDIRECT needs."""
    from .connection import CLIENT_SUBCOMMANDS
    from .server import proxy_query
    CLIENT_SUBCOMMANDS.update({b"tracking": client_tracking, b"caching": client_caching,
                               b"getredir": client_getredir, b"trackinginfo": client_trackinginfo})
    proxy_query("client_exists")(client_exists)


install()
