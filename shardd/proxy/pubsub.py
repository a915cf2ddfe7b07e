"""Pub/Sub, the delivery of keyspace notifications, and MONITOR, in the proxies (they hold the
sockets).

Each proxy keeps its own clients' subscriptions (channel → clients, pattern → clients, shard
channel → clients) and, when there are several proxies, the subscription counts of every other
proxy, sent over the peer links (peers.py): a full table when a link comes up, then each change.
A SUBSCRIBE (or PSUBSCRIBE …) that changes the counts answers once every other proxy has
acknowledged the change, so a PUBLISH anywhere after that reply counts and reaches the new
subscriber. PUBLISH delivers to this proxy's subscribers, sends the message once to each other
proxy whose counts say someone there listens, and answers the sum of the counts at once.
With one proxy (the default) none of that exists: PUBLISH is a local loop.

Keyspace notifications come from the workers (worker/notify.py) to every proxy, in one WAKE
frame per worker turn, and each proxy delivers them to its own subscribers.

Pushes and the reply order: a message is one more place in the subscriber's reply order,
ready at once. It goes out after every reply the client is already owed, as Valkey writes a
push after what it has already written: replies of commands that ran, and replies a worker has
not sent yet (their commands ran, or run now, before the message reached this proxy; they come
within a worker round trip). The one wait that can be long, a command blocked on a key (BLPOP),
is not waited for: a push to a blocked client goes ahead of the blocked command's place, as
Valkey writes pushes to a blocked client. Pushes of one loop turn leave in one write per client.

A subscriber on the writer's own RESP3 connection gets a keyspace event after the reply of the
command that raised it (Valkey: before); PUBLISH answers once its message is on its way to the
other proxies, so two publishers on two proxies may see their messages arrive in either order
(each publisher's own order always holds).

MONITOR: every command a proxy runs or sends to a worker is shown, when it is dispatched, to
the monitors of every proxy (a monitor anywhere sends every client through the general dispatch
path; with none, nothing is looked at). Commands of a MULTI show at EXEC, before "exec"; the
commands a script runs are shown by the worker that runs it (`[0 lua]`).
"""
from __future__ import annotations

import pickle
import struct
from functools import lru_cache

from .. import monitor as monitor_lines, resp
from ..commands import proxy_command
from ..frames import NO_REPLY, NOTOUCH
from ..glob import glob_matcher
from ..worker.notify import SHARD_MESSAGE
from . import peers as peer_links
from .server import Entry
from .transactions import IMMEDIATE

# Peer frame kinds (peers.HELLO is 0).
SYNC, DELTA, ACK, MESSAGE, MONITOR_LINE, TRACKING_MESSAGE, REDIRECT_BROKEN = range(1, 8)
ACK_TIMEOUT = 2.0        # a peer that does not acknowledge a subscription change in time is not waited for

CHANNEL, PATTERN, SHARD = 0, 1, 2
KEYSPACE_FRAME, TRACKING_FRAME, MONITOR_FRAME = 3, 4, 5    # WAKE frame kinds (1, 2: blocking.py)

SUBSCRIBED_RESP2_ALLOWED = frozenset(("subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe",
                                      "punsubscribe", "ping", "quit", "reset"))
NOT_IN_SUBSCRIBED = ("ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                     "are allowed in this context")
DENY_BLOCKING = "ERR {} isn't allowed for a DENY BLOCKING client"
MONITOR_DENIED = "ERR MONITOR isn't allowed for DENY BLOCKING client"
# Valkey feeds these to MONITOR itself, before the commands they run, despite skip_monitor.
MONITORED_SCRIPTS = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"))

KINDS = {CHANNEL: (b"$9\r\nsubscribe\r\n", b"$11\r\nunsubscribe\r\n"),
         PATTERN: (b"$10\r\npsubscribe\r\n", b"$12\r\npunsubscribe\r\n"),
         SHARD: (b"$10\r\nssubscribe\r\n", b"$12\r\nsunsubscribe\r\n")}
MESSAGE_BULK = b"$7\r\nmessage\r\n"
PMESSAGE_BULK = b"$8\r\npmessage\r\n"
SMESSAGE_BULK = b"$8\r\nsmessage\r\n"
ENTRY = struct.Struct("<I")

PUBSUB_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Print this help.",
]


@lru_cache(maxsize=4096)
def matcher(pattern: bytes):
    return glob_matcher(pattern)


class ClientState:
    """A client's pub/sub, tracking and MONITOR state (conn.pubsub; None for most clients)."""

    __slots__ = ("channels", "patterns", "shard", "tracking", "monitor")

    def __init__(self) -> None:
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        self.shard: dict[bytes, None] = {}
        self.tracking = None          # tracking.Tracking while CLIENT TRACKING is on
        self.monitor = False

    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns or self.shard)

    def count(self, kind: int) -> int:
        """The count a (un)subscribe confirmation shows: shard channels alone, or the rest."""
        if kind == SHARD:
            return len(self.shard)
        return len(self.channels) + len(self.patterns)

    def table(self, kind: int) -> dict[bytes, None]:
        return self.shard if kind == SHARD else self.patterns if kind == PATTERN else self.channels

    def idle(self) -> bool:
        return not self.subscribed() and self.tracking is None and not self.monitor


class RemoteTable:
    """What another proxy has told us of its subscriptions."""

    __slots__ = ("counts", "monitors", "tracking")

    def __init__(self, state: dict) -> None:
        self.counts = {CHANNEL: state["channels"], PATTERN: state["patterns"], SHARD: state["shard"]}
        self.monitors = state["monitors"]

    def apply(self, kind: int, name: bytes, delta: int) -> None:
        table = self.counts[kind]
        n = table.get(name, 0) + delta
        if n > 0:
            table[name] = n
        else:
            table.pop(name, None)

    def receivers(self, channel: bytes, shard: bool) -> int:
        if shard:
            return self.counts[SHARD].get(channel, 0)
        n = self.counts[CHANNEL].get(channel, 0)
        for pattern, count in self.counts[PATTERN].items():
            if matcher(pattern)(channel):
                n += count
        return n


class Registry:
    """One proxy's subscriptions, monitors and links to the other proxies (proxy.pubsub)."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.channels: dict[bytes, dict] = {}       # name → {client: None}
        self.patterns: dict[bytes, dict] = {}
        self.shard: dict[bytes, dict] = {}
        self.monitors: dict = {}                     # client → None
        self.monitoring = False                      # a monitor on some proxy
        self.remote: dict[int, RemoteTable] = {}
        self.peers: peer_links.Peers | None = None
        self.pushed: dict = {}                       # clients with pushes waiting for the end of the turn
        self.ack_id = 0
        self.waits: dict[int, tuple[set[int], object]] = {}
        self.notify_events: str = proxy.config.values.get("notify-keyspace-events", "")
        from .tracking import TrackingRegistry
        self.tracking = TrackingRegistry(self)

    def config_set(self, pairs: list[tuple[str, str]]) -> None:
        """Keep notify-keyspace-events as given: the stored text drops "n" beside "A"."""
        for name, value in pairs:
            if name == "notify-keyspace-events":
                self.notify_events = value

    def start(self) -> None:
        """Open the links to the other proxies (after the event loop exists)."""
        if self.proxy.n_proxies > 1:
            self.peers = peer_links.Peers(self.proxy, self.on_peer_frame, self.on_peer_up, self.on_peer_down)
            self.peers.start()

    def tables(self, kind: int) -> dict[bytes, dict]:
        return self.shard if kind == SHARD else self.patterns if kind == PATTERN else self.channels

    # -- subscribing -------------------------------------------------------------------------
    def add(self, conn, kind: int, name: bytes) -> bool:
        state = client_state(conn)
        mine = state.table(kind)
        if name in mine:
            return False
        mine[name] = None
        table = self.tables(kind)
        subs = table.get(name)
        if subs is None:
            subs = table[name] = {}
        subs[conn] = None
        return True

    def remove(self, conn, kind: int, name: bytes) -> bool:
        state = conn.pubsub
        if state is None:
            return False
        mine = state.table(kind)
        if name not in mine:
            return False
        del mine[name]
        table = self.tables(kind)
        subs = table.get(name)
        if subs is not None:
            subs.pop(conn, None)
            if not subs:
                del table[name]
        return True

    def mode_changed(self, conn) -> None:
        """After (un)subscribing: the output buffer class and the dispatch path follow."""
        state = conn.pubsub
        subscribed = state is not None and state.subscribed()
        wanted = "pubsub" if subscribed else "normal"
        if conn.obuf_class != wanted:
            conn.obuf_class = wanted
            conn.set_output_limits()
        self.refresh_special(conn)
        if state is not None and state.idle():
            conn.pubsub = None

    def refresh_special(self, conn) -> None:
        """Whether every command of this client goes past `intercept` (dispatch's general path)."""
        state = conn.pubsub
        conn.special = (self.monitoring or conn.frame_flags & NOTOUCH != 0   # CLIENT NO-TOUCH
                        or (state is not None and (state.subscribed() or state.tracking is not None)))

    def forget(self, conn) -> None:
        """A client leaves (or RESET): its subscriptions, tracking and monitoring end silently."""
        state = conn.pubsub
        if state is None:
            return
        changes = []
        for kind in (CHANNEL, PATTERN, SHARD):
            for name in list(state.table(kind)):
                if self.remove(conn, kind, name):
                    changes.append((kind, name, -1))
        monitors = 0
        if state.monitor:
            state.monitor = False
            self.monitors.pop(conn, None)
            monitors = -1
        if state.tracking is not None:
            self.tracking.disable(conn)
        if changes or monitors:
            self.announce(changes, monitors, wait=False)
            if monitors:
                self.update_monitoring()
        conn.pubsub = None
        if not conn.closed:
            self.mode_changed(conn)

    # -- telling the other proxies -----------------------------------------------------------
    def announce(self, changes: list, monitors: int = 0, wait: bool = True):
        """Send subscription changes to every other proxy; with `wait`, the ack id to wait for
        (None when there is nobody to wait for)."""
        peers = self.peers
        if peers is None or not (peers.links or peers.unseen) or not (changes or monitors):
            return None
        self.ack_id += 1
        ack = self.ack_id if wait else 0
        if peers.links:
            peers.broadcast(DELTA, pickle.dumps((ack, changes, monitors), pickle.HIGHEST_PROTOCOL))
        return ack or None

    def reply_after_ack(self, conn, ack: int | None, reply: bytes) -> bytes | None:
        """`reply` once every proxy has the change `ack` stands for (inside EXEC: at once)."""
        if ack is None or conn.paused:
            return reply
        entry = Entry()
        conn.out.append(entry)
        conn.last_worker = -1

        def done() -> None:
            entry.data = reply
            conn.flush_out()
        self.wait_for(ack, done)
        return None

    def wait_for(self, ack: int, done) -> None:
        """Run `done` once every proxy has acknowledged `ack`: those linked now, and at start
        those not linked yet (the full table they get when the link comes up covers it)."""
        self.waits[ack] = (set(self.peers.links) | self.peers.unseen, done)
        self.proxy.loop.call_later(ACK_TIMEOUT, self.release, ack)

    def release(self, ack: int) -> None:
        wait = self.waits.pop(ack, None)
        if wait is not None:
            wait[1]()

    def acknowledged(self, peer: int, upto: int) -> None:
        for ack in [a for a, (waiting, _) in self.waits.items() if a <= upto]:
            waiting = self.waits[ack][0]
            waiting.discard(peer)
            if not waiting:
                self.release(ack)

    def full_state(self) -> dict:
        return {"channels": {n: len(s) for n, s in self.channels.items()},
                "patterns": {n: len(s) for n, s in self.patterns.items()},
                "shard": {n: len(s) for n, s in self.shard.items()},
                "monitors": len(self.monitors)}

    def on_peer_up(self, peer: int) -> None:
        self.ack_id += 1
        self.peers.send(peer, SYNC, pickle.dumps((self.ack_id, self.full_state()), pickle.HIGHEST_PROTOCOL))

    def on_peer_down(self, peer: int) -> None:
        self.remote.pop(peer, None)
        for ack in list(self.waits):
            wait = self.waits.get(ack)
            if wait is not None:
                wait[0].discard(peer)
                if not wait[0]:
                    self.release(ack)
        self.update_monitoring()

    def on_peer_frame(self, peer: int, kind: int, payload: bytes) -> None:
        if kind == MESSAGE:
            shard, n = payload[0], ENTRY.unpack_from(payload, 1)[0]
            self.deliver(payload[5:5 + n], payload[5 + n:], bool(shard))
        elif kind == MONITOR_LINE:
            for monitor in self.monitors:
                self.push(monitor, payload)
        elif kind == DELTA:
            ack, changes, monitors = pickle.loads(payload)
            table = self.remote.get(peer)
            if table is not None:
                for change in changes:
                    table.apply(*change)
                if monitors:
                    table.monitors += monitors
                    self.update_monitoring()
            if ack:
                self.peers.send(peer, ACK, struct.pack("<Q", ack))
        elif kind == ACK:
            self.acknowledged(peer, struct.unpack("<Q", payload)[0])
        elif kind == SYNC:
            ack, state = pickle.loads(payload)
            self.remote[peer] = RemoteTable(state)
            self.update_monitoring()
            self.peers.send(peer, ACK, struct.pack("<Q", ack))
        elif kind in (TRACKING_MESSAGE, REDIRECT_BROKEN):
            self.tracking.on_peer_frame(kind, payload)

    # -- publishing --------------------------------------------------------------------------
    def publish(self, channel: bytes, message: bytes, shard: bool = False) -> int:
        """Deliver everywhere; the number of receivers server-wide."""
        n = self.deliver(channel, message, shard)
        if self.remote:
            payload = None
            for peer, table in self.remote.items():
                k = table.receivers(channel, shard)
                if k:
                    n += k
                    if payload is None:
                        payload = b"%c%b%b%b" % (shard, ENTRY.pack(len(channel)), channel, message)
                    self.peers.send(peer, MESSAGE, payload)
        return n

    def deliver(self, channel: bytes, message: bytes, shard: bool = False) -> int:
        """Deliver to this proxy's subscribers; how many got it."""
        n = 0
        subs = (self.shard if shard else self.channels).get(channel)
        if subs:
            body = (SMESSAGE_BULK if shard else MESSAGE_BULK) + resp.bulk(channel) + resp.bulk(message)
            self.push_all(subs, body, b"*3\r\n", b">3\r\n")
            n = len(subs)
        if not shard and self.patterns:
            for pattern, subs in self.patterns.items():
                if matcher(pattern)(channel):
                    body = PMESSAGE_BULK + resp.bulk(pattern) + resp.bulk(channel) + resp.bulk(message)
                    self.push_all(subs, body, b"*4\r\n", b">4\r\n")
                    n += len(subs)
        return n

    def push_all(self, clients: dict, body: bytes, head2: bytes, head3: bytes) -> None:
        """push() to each client (inlined: this is the loop a PUBLISH to many subscribers runs)."""
        two = head2 + body
        three = None
        pushed = self.pushed
        if not pushed:
            self.proxy.loop.call_soon(self.flush_pushed)
        for c in clients:
            if c.closed:
                continue
            if c.proto == 3:
                if three is None:
                    three = head3 + body
                data = three
            else:
                data = two
            out = c.out
            if out and c.paused and out[-1].data is None:
                self.push(c, data)
            else:
                out.append(Entry(data))
                pushed[c] = None

    def push(self, c, data: bytes) -> None:
        """One more place in c's reply order, ready now; it leaves at the end of this loop turn."""
        if c.closed:
            return
        out = c.out
        if out and c.paused and out[-1].data is None:
            waiting = self.proxy.blocked.get(c.id)
            if waiting is not None and waiting.entry is out[-1]:
                out.insert(len(out) - 1, Entry(data))   # not behind a command blocked on a key
                self.mark_pushed(c)
                return
        out.append(Entry(data))
        self.mark_pushed(c)

    def mark_pushed(self, c) -> None:
        pushed = self.pushed
        if not pushed:
            self.proxy.loop.call_soon(self.flush_pushed)
        pushed[c] = None

    def flush_pushed(self) -> None:
        pushed, self.pushed = self.pushed, {}
        for c in pushed:
            c.flush_out()

    def raise_events(self, events: list[tuple[bytes, bytes]]) -> None:
        """Keyspace notifications of a command this proxy ran itself (its keys spanned
        workers): to every proxy's subscribers, as a worker's would be."""
        for channel, message in events:
            self.publish(channel, message)

    def on_worker_frame(self, kind: int, frame: bytes) -> None:
        """A WAKE frame of kind 3 (keyspace notifications) or 4 (tracking invalidations)."""
        if kind == KEYSPACE_FRAME:
            body = memoryview(frame)[16:]      # REPLY header (8) + client id (8)
            pos, end = 0, len(body)
            while pos < end:
                n = ENTRY.unpack_from(body, pos)[0]
                shard = n >= SHARD_MESSAGE
                n &= SHARD_MESSAGE - 1
                channel = bytes(body[pos + 4:pos + 4 + n])
                pos += 4 + n
                n = ENTRY.unpack_from(body, pos)[0]
                message = bytes(body[pos + 4:pos + 4 + n])
                pos += 4 + n
                self.deliver(channel, message, shard)
        elif kind == TRACKING_FRAME:
            self.tracking.on_worker_frame(frame)
        elif kind == MONITOR_FRAME:
            body = bytes(memoryview(frame)[16:])
            for monitor in self.monitors:
                self.push(monitor, body)

    # -- introspection -----------------------------------------------------------------------
    def counts(self, kind: int) -> dict[bytes, int]:
        """Subscribers per channel (or pattern) server-wide."""
        out = {name: len(subs) for name, subs in self.tables(kind).items()}
        for table in self.remote.values():
            for name, n in table.counts[kind].items():
                out[name] = out.get(name, 0) + n
        return out

    def subscribed_clients(self) -> int:
        """INFO pubsub_clients (this proxy's)."""
        return sum(1 for c in self.proxy.clients.values() if c.pubsub is not None and c.pubsub.subscribed())

    def info_counts(self) -> list[str]:
        """INFO's channel and pattern counts, server-wide."""
        return [f"pubsub_channels:{len(self.counts(CHANNEL))}", f"pubsub_patterns:{len(self.counts(PATTERN))}",
                f"pubsubshard_channels:{len(self.counts(SHARD))}"]

    # -- MONITOR -----------------------------------------------------------------------------
    def update_monitoring(self) -> None:
        monitoring = bool(self.monitors) or any(t.monitors for t in self.remote.values())
        if monitoring != self.monitoring:
            self.monitoring = monitoring
            for c in self.proxy.clients.values():
                self.refresh_special(c)
            self.tell_workers_monitoring()

    def tell_workers_monitoring(self) -> None:
        """Workers show what scripts run (`[0 lua]` lines) while some proxy has monitors."""
        from .server import FrameBuilder
        argv = [b"__monitoring", b"1" if self.monitoring else b"0"]
        for w, (lo, _) in enumerate(self.proxy.info["slot_ranges"]):
            b = FrameBuilder(0, NO_REPLY)
            b.add_extra(argv, lo)
            b.runs.append(1)
            self.proxy.send_frame(w, 0, b.build(None, 0, 0, 0, 2), None, None)

    def feed(self, conn, argv: list[bytes], db: int, skip=None) -> None:
        line = monitor_line(conn, argv, db)
        for monitor in self.monitors:
            if monitor is not skip:
                self.push(monitor, line)
        for peer, table in self.remote.items():
            if table.monitors:
                self.peers.send(peer, MONITOR_LINE, line)

    # -- the general dispatch path -----------------------------------------------------------
    def intercept(self, conn, spec, argv: list[bytes]) -> bool:
        """For clients with `special` set, before a command runs or is queued: True when it
        was answered here (refused in RESP2 subscribed mode)."""
        state = conn.pubsub
        if state is not None:
            if conn.proto == 2 and spec.name not in SUBSCRIBED_RESP2_ALLOWED and state.subscribed():
                conn.reject(NOT_IN_SUBSCRIBED.format(full_name(spec, argv)), spec)
                return True
            if state.tracking is not None:
                self.tracking.before_command(conn, state.tracking, spec, argv)
        if self.monitoring and (conn.multi is None or spec.name in IMMEDIATE):
            self.monitor_command(conn, spec, argv)
        return False

    def monitor_command(self, conn, spec, argv: list[bytes]) -> None:
        if spec.name == "exec" and conn.multi is not None and not conn.multi_error:
            for queued in conn.multi:
                queued_spec = self.proxy.lookup(queued[0])
                if queued_spec is not None and shown_to_monitors(queued_spec, queued):
                    self.feed(conn, queued, conn.db)
        if not shown_to_monitors(spec, argv):
            return
        db = conn.db
        if spec.name == "select":
            try:
                wanted = int(argv[1])
            except ValueError:
                wanted = -1
            if 0 <= wanted < self.proxy.config.values["databases"]:
                db = wanted
        elif spec.name == "reset":      # shown after it ran: no longer to the client itself
            self.feed(conn, argv, 0, skip=conn)
            return
        self.feed(conn, argv, db)


def full_name(spec, argv: list[bytes]) -> str:
    """The command's full name as Valkey prints it: `client|list` for a subcommand."""
    if spec.subcommands and len(argv) > 1:
        sub = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
        if sub is not None:
            return sub.name
    return spec.name


def shown_to_monitors(spec, argv: list[bytes]) -> bool:
    flags = spec.flags
    if spec.subcommands and len(argv) > 1:
        sub = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
        if sub is not None:
            flags = sub.flags
    return not ("admin" in flags or "skip_monitor" in flags) or spec.name in MONITORED_SCRIPTS


def client_list_fields(conn) -> tuple[str, str, int, int, int, int]:
    """CLIENT LIST's view: leading flags (O monitor, P pubsub), tracking flags (t, R, B), the
    sub / psub / ssub counts and redir."""
    state = conn.pubsub
    if state is None:
        return "", "", 0, 0, 0, -1
    front = ("O" if state.monitor else "") + ("P" if state.subscribed() else "")
    t = state.tracking
    tracking = "" if t is None else "t" + ("R" if t.broken else "") + ("B" if t.bcast else "")
    return (front, tracking, len(state.channels), len(state.patterns), len(state.shard),
            -1 if t is None else t.redirect)


def client_state(conn) -> ClientState:
    state = conn.pubsub
    if state is None:
        state = conn.pubsub = ClientState()
    return state


# -- MONITOR lines ----------------------------------------------------------------------------
def monitor_line(conn, argv: list[bytes], db: int) -> bytes:
    """replicationFeedMonitors: +<time> [<db> <addr>] "arg" ..."""
    if "unix" in conn.flags:
        source = b"unix:" + (conn.proxy.config.values.get("unixsocket") or "").encode()
    else:
        source = conn.addr.encode()
    return monitor_lines.line(argv, db, source)


# -- commands -----------------------------------------------------------------------------------
def confirmation(kind_bulk: bytes, name: bytes | None, count: int, proto: int) -> bytes:
    return ((b">3\r\n" if proto == 3 else b"*3\r\n") + kind_bulk
            + (resp.bulk(name) if name is not None else resp.null(proto)) + resp.integer(count))


def subscribe_command(kind: int, command: str):
    def handler(conn, argv: list[bytes]) -> bytes | None:
        if conn.paused and kind == SHARD:        # inside EXEC (Valkey: a DENY BLOCKING client)
            return resp.error(DENY_BLOCKING.format(command))
        registry = conn.proxy.pubsub
        state = client_state(conn)
        head = KINDS[kind][0]
        replies = []
        changes = []
        for name in argv[1:]:
            if registry.add(conn, kind, name):
                changes.append((kind, name, 1))
            replies.append(confirmation(head, name, state.count(kind), conn.proto))
        registry.mode_changed(conn)
        return registry.reply_after_ack(conn, registry.announce(changes), b"".join(replies))
    return handler


def unsubscribe_command(kind: int):
    def handler(conn, argv: list[bytes]) -> bytes | None:
        registry = conn.proxy.pubsub
        state = conn.pubsub
        head = KINDS[kind][1]
        names = argv[1:] if len(argv) > 1 else list(state.table(kind)) if state is not None else []
        replies = []
        changes = []
        for name in names:
            if registry.remove(conn, kind, name):
                changes.append((kind, name, -1))
            replies.append(confirmation(head, name, state.count(kind) if state is not None else 0, conn.proto))
        if not names:
            replies.append(confirmation(head, None, 0 if state is None else state.count(kind), conn.proto))
        registry.mode_changed(conn)
        return registry.reply_after_ack(conn, registry.announce(changes), b"".join(replies))
    return handler


proxy_command("subscribe")(subscribe_command(CHANNEL, "SUBSCRIBE"))
proxy_command("psubscribe")(subscribe_command(PATTERN, "PSUBSCRIBE"))
proxy_command("ssubscribe")(subscribe_command(SHARD, "SSUBSCRIBE"))
proxy_command("unsubscribe")(unsubscribe_command(CHANNEL))
proxy_command("punsubscribe")(unsubscribe_command(PATTERN))
proxy_command("sunsubscribe")(unsubscribe_command(SHARD))


@proxy_command("publish")
def publish(conn, argv: list[bytes]) -> bytes:
    return resp.integer(conn.proxy.pubsub.publish(argv[1], argv[2]))


@proxy_command("spublish")
def spublish(conn, argv: list[bytes]) -> bytes:
    return resp.integer(conn.proxy.pubsub.publish(argv[1], argv[2], shard=True))


def channel_list(conn, kind: int, argv: list[bytes]) -> bytes:
    names = list(conn.proxy.pubsub.counts(kind))
    if len(argv) == 3:
        matches = matcher(argv[2])
        names = [n for n in names if matches(n)]
    return resp.bulk_array(names, conn.proto)


def subscriber_counts(conn, kind: int, argv: list[bytes]) -> bytes:
    counts = conn.proxy.pubsub.counts(kind)
    out = [resp.array_header(2 * (len(argv) - 2))]
    for name in argv[2:]:
        out.append(resp.bulk(name))
        out.append(resp.integer(counts.get(name, 0)))
    return b"".join(out)


def subcommand_syntax_error(argv: list[bytes]) -> bytes:
    return resp.error(f"ERR unknown subcommand or wrong number of arguments for "
                      f"'{argv[1][:128].decode('utf-8', 'replace')}'. Try PUBSUB HELP.")


@proxy_command("pubsub|channels")
def pubsub_channels(conn, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        return subcommand_syntax_error(argv)
    return channel_list(conn, CHANNEL, argv)


@proxy_command("pubsub|shardchannels")
def pubsub_shardchannels(conn, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        return subcommand_syntax_error(argv)
    return channel_list(conn, SHARD, argv)


@proxy_command("pubsub|numsub")
def pubsub_numsub(conn, argv: list[bytes]) -> bytes:
    return subscriber_counts(conn, CHANNEL, argv)


@proxy_command("pubsub|shardnumsub")
def pubsub_shardnumsub(conn, argv: list[bytes]) -> bytes:
    return subscriber_counts(conn, SHARD, argv)


@proxy_command("pubsub|numpat")
def pubsub_numpat(conn, argv: list[bytes]) -> bytes:
    return resp.integer(len(conn.proxy.pubsub.counts(PATTERN)))


@proxy_command("pubsub|help")
def pubsub_help(conn, argv: list[bytes]) -> bytes:
    return resp.array([resp.status(line) for line in PUBSUB_HELP])


@proxy_command("monitor")
def monitor_command(conn, argv: list[bytes]) -> bytes | None:
    if conn.paused:                  # inside EXEC
        return resp.error(MONITOR_DENIED)
    state = client_state(conn)
    if state.monitor:                # already monitoring: no reply at all, as Valkey
        return None
    registry = conn.proxy.pubsub
    state.monitor = True
    registry.monitors[conn] = None
    registry.update_monitoring()
    return registry.reply_after_ack(conn, registry.announce([], 1), resp.OK)


def ping_reply(conn, argv: list[bytes]) -> bytes | None:
    """PING in RESP2 subscribed mode answers ["pong", message] (None: the usual reply)."""
    state = conn.pubsub
    if conn.proto != 2 or state is None or not state.subscribed():
        return None
    return b"*2\r\n$4\r\npong\r\n" + resp.bulk(argv[1] if len(argv) > 1 else b"")


def reset_client(conn) -> None:
    """RESET: no subscriptions, no tracking, no MONITOR (clearClientConnectionState)."""
    conn.proxy.pubsub.forget(conn)
