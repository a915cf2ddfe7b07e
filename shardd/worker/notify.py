"""Keyspace notifications (notify-keyspace-events), raised by the worker that owns the key,
and what else a worker tells the proxies unasked: tracking invalidations (tracking.py) and the
MONITOR lines of the commands scripts run.

The worker's `observer` (None while notifications, tracking and MONITOR are all off, so the hot
path pays one attribute check) runs each command through `Events.run`: `observe` notes the
db's change counters, runs the handler, and when the command changed something raises the
events Valkey's code raises for it (`notifyKeyspaceEvent` in t_string.c, t_list.c …): a table
of rules, one per command, most of them "this event on the first key", some looking at the
keyspace after the command (a container that became empty also gets "del"; a *STORE with an
empty result is "del"), at its reply (the key BLPOP served, MOVE's :1) or at what was there
before (which keys DEL found). "new" (class n) is raised for keys a write created, "keymiss"
(m) for keys a read missed, "expired" from Db._expire (active and lazy expiry), "evicted" by
`key_evicted`. Commands scripts run go through `script_command`; commands whose keys span
workers run in the proxy on fetched copies, and the proxy raises their events with the same
rules (`emitter_for`, proxy/scratch.py, proxy/fanout.py).

What a frame raised leaves before the frame's replies (as Valkey publishes while the command
runs), in one WAKE frame per proxy (kind 3: notifications, 4: invalidations, 5: MONITOR
lines); what expiry raises between frames leaves at the end of the loop turn. Every proxy
gets the notifications and delivers them to its own subscribers (proxy/pubsub.py).
"""
from __future__ import annotations

import struct
from typing import Callable

from .. import monitor, resp
from ..commands import internal_command, key_positions
from ..frames import REPLY, WAKE_BID
from ..slots import keyslot
from . import keyspace
from .tracking import WorkerTracking

KEYSPACE_FRAME, MONITOR_FRAME = 3, 5     # WAKE frame kinds (tracking.py sends 4)
K, E = 1 << 0, 1 << 1
GENERIC, STRING, LIST, SET, HASH, ZSET = 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
EXPIRED, EVICTED, STREAM, KEY_MISS, MODULE, NEW = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 13, 1 << 14
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE
CLASSES = {"K": K, "E": E, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
           "x": EXPIRED, "e": EVICTED, "t": STREAM, "m": KEY_MISS, "d": MODULE, "n": NEW, "A": ALL}
ENTRY = struct.Struct("<I")
SHARD_MESSAGE = 1 << 31     # set in a channel's ENTRY length: SPUBLISH's, for SSUBSCRIBE's subscribers
EXPIRE_OPTIONS = frozenset((b"ex", b"px", b"exat", b"pxat"))


class ShardChannel(bytes):
    """A shard channel in Emitter.pending (SPUBLISH from a script)."""
    __slots__ = ()


current: "Events | None" = None      # this worker process's Events (for key_evicted)
# Commands whose misses Valkey does not report (LOOKUP_NONOTIFY): OBJECT, MEMORY USAGE.
NO_KEYMISS = frozenset(("object|encoding", "object|freq", "object|idletime", "object|refcount",
                        "memory|usage"))
# Commands that read their key as Valkey's lookupKeyRead does, though no miss is counted here.
READS_KEY = frozenset(("getdel", "getex", "pfmerge"))


def parse_flags(text: str) -> int:
    flags = 0
    for ch in text or "":
        flags |= CLASSES.get(ch, 0)
    return flags


def effective_flags(text: str) -> int:
    """The classes raised: none at all unless K or E is set."""
    flags = parse_flags(text)
    return flags if flags & (K | E) else 0


def emitter_for(proxy) -> "Emitter | None":
    """An Emitter for events a proxy raises (commands whose keys span workers, run there), or
    None when notifications are off."""
    flags = effective_flags(proxy.pubsub.notify_events)
    return Emitter(flags) if flags else None


def exists(db, key: bytes) -> bool:
    return db.lookup(key, keyslot(key)) is not None


def key_evicted(db, key: bytes) -> None:
    """For eviction (maxmemory): call after removing `key` from `db`."""
    if current is not None and current.flags:
        current.emit(EVICTED, b"evicted", key, db.index)


class Emitter:
    """Keyspace events raised, as (channel, message) pairs."""

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.pending: list[tuple[bytes, bytes]] = []
        self.queued = False           # something waits to be sent (Events.flush)

    def emit(self, cls: int, event: bytes, key: bytes, dbid: int) -> None:
        """notifyKeyspaceEvent: __keyspace@<db>__:<key> <event>, __keyevent@<db>__:<event> <key>."""
        flags = self.flags
        if not flags & cls:
            return
        if flags & K:
            self.pending.append((b"__keyspace@%d__:%b" % (dbid, key), event))
        if flags & E:
            self.pending.append((b"__keyevent@%d__:%b" % (dbid, event), key))
        self.queued = True


class _ReadKeys:
    """A command's read-only key specs alone (for key_positions)."""

    def __init__(self, spec) -> None:
        self.name = spec.name + "|ro"
        self.facts = {"key_specs": [ks for ks in spec.facts.get("key_specs", []) if "RO" in ks["flags"]]}


_read_keys: dict[str, _ReadKeys] = {}


def missed_keys(spec, argv: list[bytes]) -> list[bytes]:
    """The keys a command looks up for reading (Valkey's lookupKeyRead: its RO keys), the ones
    a keymiss may be about."""
    ro = _read_keys.get(spec.name)
    if ro is None:
        ro = _read_keys[spec.name] = _ReadKeys(spec)
    return [argv[i] for i in key_positions(ro, argv)]


def observe(ev: Emitter, ctx, spec, argv: list[bytes], handler: Callable | None = None) -> bytes:
    """Run a command's handler (`handler`, else its worker handler) and raise the events
    Valkey raises for it into `ev`."""
    flags = ev.flags
    db = ctx.db
    rule = RULES.get(spec.name)
    before = rule.before(ctx, argv) if rule is not None and rule.before is not None else None
    created = None
    if flags & NEW and "write" in spec.flags:
        created = [k for k in dict.fromkeys(spec.keys(argv)) if not exists(db, k)]
    absent = None
    if flags & KEY_MISS and spec.name in READS_KEY:
        absent = [k for k in dict.fromkeys(spec.keys(argv)) if not exists(db, k)]
    changes, gone, misses = db.changes, db.expired, db.misses
    reply = (handler or spec.worker_handler)(ctx, argv)
    if reply is None or reply[:1] == b"-":      # None: a blocked client's retry found nothing
        return reply
    if flags & KEY_MISS:
        if absent is None and db.misses != misses and spec.name not in NO_KEYMISS:
            absent = [k for k in dict.fromkeys(missed_keys(spec, argv)) if not exists(db, k)]
        for key in absent or ():
            ev.emit(KEY_MISS, b"keymiss", key, db.index)
    changed = db.changes - changes > db.expired - gone
    if created and changed and not (rule is not None and rule.own_new):
        for key in created:
            if exists(db, key):
                ev.emit(NEW, b"new", key, db.index)
    if rule is not None and (changed or rule.always):
        rule.after(ev, ctx, argv, reply, before)
    return reply


class Events(Emitter):
    """A worker's notifications and tracking invalidations, sent to the proxies before the
    replies of the frame that raised them (or at the end of the turn: expiry)."""

    def __init__(self, worker) -> None:
        global current
        current = self
        super().__init__(0)
        self.worker = worker
        self.ctx = worker.ctx
        self.tracking = WorkerTracking(self)
        self.monitoring: set[int] = set()        # links whose proxies want script commands shown
        self.monitor_lines: list[bytes] = []
        self.configure()

    def configure(self, argv: list[bytes] | None = None) -> None:
        """notify-keyspace-events was (re)set. The raw CONFIG SET value is read when given:
        the stored text drops "n" next to "A" (as Valkey prints it), the flags keep it."""
        text = self.worker.config.values.get("notify-keyspace-events", "")
        if argv is not None:
            for i in range(2, len(argv) - 1, 2):
                if argv[i].lower() == b"notify-keyspace-events":
                    text = argv[i + 1].decode("utf-8", "replace")
        self.flags = effective_flags(text)
        keyspace.on_expired_event = self.expired if self.flags & EXPIRED else None
        self.refresh()

    def refresh(self) -> None:
        """The worker runs commands through `run` only while something needs it."""
        wanted = self.flags or self.tracking.watching_reads() or self.monitoring
        self.worker.observer = self if wanted else None

    def forget_link(self, link: int) -> None:
        """A proxy restarted: its tracking clients and monitors are gone."""
        self.monitoring.discard(link)
        self.tracking.configure(link, 0, 0)

    def expired(self, db, key: bytes) -> None:
        self.emit(EXPIRED, b"expired", key, db.index)

    def run(self, spec, argv: list[bytes]) -> bytes:
        """Worker.call's handler step while notifications or tracking are on."""
        reader = self.worker.tracked_reader
        try:
            if self.flags:
                return observe(self, self.ctx, spec, argv)
            return spec.worker_handler(self.ctx, argv)
        finally:
            if reader and "readonly" in spec.flags:
                self.tracking.remember(spec, argv, reader, self.ctx.link)

    def script_command(self, spec, handler: Callable, argv: list[bytes]) -> bytes:
        """A command a script runs (scripting.py): its events raised, and shown to MONITOR,
        as Valkey's script calls are."""
        ctx = self.ctx
        try:
            if self.flags:
                return observe(self, ctx, spec, argv, handler)
            return handler(ctx, argv)
        finally:
            self.show_script_command(spec, argv, ctx.db.index)

    def show_script_command(self, spec, argv: list[bytes], db: int) -> None:
        """MONITOR's `[<db> lua]` line, once the command ran (as Valkey feeds it)."""
        if self.monitoring and not ("admin" in spec.flags or "skip_monitor" in spec.flags):
            self.monitor_lines.append(monitor.line(argv, db, b"lua"))
            self.queued = True

    # -- sending ------------------------------------------------------------------------------
    def flush(self) -> None:
        """The notifications raised so far to every proxy, invalidations to the proxies of the
        clients concerned."""
        self.queued = False
        if self.pending:
            body = b"".join(b"%b%b%b%b" % (ENTRY.pack(len(c) | (SHARD_MESSAGE if c.__class__ is ShardChannel else 0)), c,
                                           ENTRY.pack(len(m)), m) for c, m in self.pending)
            self.pending.clear()
            for link in self.worker.links:
                self.send(link, KEYSPACE_FRAME, body)
        if self.tracking.out:
            self.tracking.flush()
        if self.monitor_lines:
            body = b"".join(self.monitor_lines)
            self.monitor_lines.clear()
            for link in self.worker.links:
                self.send(link, MONITOR_FRAME, body)

    def send(self, link, kind: int, body: bytes) -> None:
        if not link.in_sync() or link.epoch[2] != link.epoch[3]:
            return
        link.replies.send(REPLY.pack(WAKE_BID, kind) + bytes(8) + body)
        link.proxy_waker.wake_if_sleeping(force=True)


# -- the rules --------------------------------------------------------------------------------
class Rule:
    __slots__ = ("after", "before", "always", "own_new")

    def __init__(self, after: Callable, before: Callable | None = None, always: bool = False,
                 own_new: bool = False) -> None:
        self.after = after
        self.before = before
        self.always = always      # run even when the db's counters did not move (MOVE, COPY)
        self.own_new = own_new    # raises "new" itself, between its other events (MSET)


RULES: dict[str, Rule] = {}


def rule(*names: str, before: Callable | None = None, always: bool = False, own_new: bool = False):
    def register(fn: Callable) -> Callable:
        for name in names:
            RULES[name] = Rule(fn, before, always, own_new)
        return fn
    return register


def on_key(cls: int, event: bytes, *names: str, pop: bool = False) -> None:
    """`event` on argv[1]; with `pop`, "del" too when the command emptied it."""
    def after(ev: Emitter, ctx, argv, reply, before) -> None:
        key, dbid = argv[1], ctx.db.index
        ev.emit(cls, event, key, dbid)
        if pop and not exists(ctx.db, key):
            ev.emit(GENERIC, b"del", key, dbid)
    for name in names:
        RULES[name] = Rule(after)


def stored(cls: int, event: bytes, *names: str, destination: Callable[[list[bytes]], bytes | None]) -> None:
    """A command that stores a result: its event if the result was stored, "del" if empty."""
    def after(ev: Emitter, ctx, argv, reply, before) -> None:
        key = destination(argv)
        if key is None:
            return
        if exists(ctx.db, key):
            ev.emit(cls, event, key, ctx.db.index)
        else:
            ev.emit(GENERIC, b"del", key, ctx.db.index)
    for name in names:
        RULES[name] = Rule(after)


def reply_key(reply: bytes) -> bytes | None:
    """The key at the head of a pop reply: *N $len key … (BLPOP, LMPOP, BZPOPMIN, ZMPOP)."""
    if reply[:1] != b"*":
        return None
    i = reply.find(b"\r\n") + 2
    if reply[i:i + 1] != b"$":
        return None
    j = reply.find(b"\r\n", i)
    n = int(reply[i + 1:j])
    return reply[j + 2:j + 2 + n]


def token_after(argv: list[bytes], start: int, tokens: tuple[bytes, ...]) -> bytes | None:
    for i in range(start, len(argv) - 1):
        if argv[i].lower() in tokens:
            return argv[i + 1]
    return None


def has_option(argv: list[bytes], start: int, options: frozenset[bytes]) -> bool:
    return any(a.lower() in options for a in argv[start:])


# strings, bitmaps, HyperLogLog
on_key(STRING, b"set", "setnx", "getset")
on_key(STRING, b"append", "append")
on_key(STRING, b"incrby", "incr", "decr", "incrby", "decrby")
on_key(STRING, b"incrbyfloat", "incrbyfloat")
on_key(STRING, b"setrange", "setrange")
on_key(STRING, b"setbit", "setbit", "bitfield")
on_key(STRING, b"pfadd", "pfadd", "pfmerge")
on_key(GENERIC, b"del", "getdel")
on_key(GENERIC, b"persist", "persist")
on_key(GENERIC, b"restore", "restore")
stored(STRING, b"set", "bitop", destination=lambda argv: argv[2])


@rule("set")
def _set(ev: Emitter, ctx, argv, reply, before) -> None:
    ev.emit(STRING, b"set", argv[1], ctx.db.index)
    if has_option(argv, 3, EXPIRE_OPTIONS):
        ev.emit(GENERIC, b"expire", argv[1], ctx.db.index)


@rule("setex", "psetex")
def _setex(ev: Emitter, ctx, argv, reply, before) -> None:
    ev.emit(STRING, b"set", argv[1], ctx.db.index)
    ev.emit(GENERIC, b"expire", argv[1], ctx.db.index)


def _absent(ctx, argv) -> set[bytes]:
    return {k for k in argv[1::2] if not exists(ctx.db, k)}


@rule("mset", "msetnx", before=_absent, own_new=True)
def _mset(ev: Emitter, ctx, argv, reply, absent: set[bytes]) -> None:
    for key in argv[1::2]:
        if key in absent:
            absent.discard(key)
            ev.emit(NEW, b"new", key, ctx.db.index)
        ev.emit(STRING, b"set", key, ctx.db.index)


@rule("getex")
def _getex(ev: Emitter, ctx, argv, reply, before) -> None:
    key, dbid = argv[1], ctx.db.index
    if not exists(ctx.db, key):
        ev.emit(GENERIC, b"del", key, dbid)
    elif has_option(argv, 2, EXPIRE_OPTIONS):
        ev.emit(GENERIC, b"expire", key, dbid)
    else:
        ev.emit(GENERIC, b"persist", key, dbid)


# generic
@rule("expire", "pexpire", "expireat", "pexpireat")
def _expire(ev: Emitter, ctx, argv, reply, before) -> None:
    key, dbid = argv[1], ctx.db.index
    ev.emit(GENERIC, b"expire" if exists(ctx.db, key) else b"del", key, dbid)


def _existing(ctx, argv) -> list[bytes]:
    return [k for k in dict.fromkeys(argv[1:]) if exists(ctx.db, k)]


@rule("del", "unlink", before=_existing)
def _del(ev: Emitter, ctx, argv, reply, before) -> None:
    for key in before:
        if not exists(ctx.db, key):
            ev.emit(GENERIC, b"del", key, ctx.db.index)


def _second_key_exists(ctx, argv) -> bool:
    return exists(ctx.db, argv[2])


@rule("rename", "renamenx", before=_second_key_exists)
def _rename(ev: Emitter, ctx, argv, reply, replaced: bool) -> None:
    if argv[1] != argv[2]:
        renamed(ev, argv[1], argv[2], ctx.db.index, replaced)


def renamed(ev: Emitter, src: bytes, dst: bytes, dbid: int, replaced: bool = True) -> None:
    """RENAME's events (also raised by the proxy when the keys live on two workers). Valkey
    deletes an existing destination and adds it anew: "new" even then."""
    if replaced:
        ev.emit(NEW, b"new", dst, dbid)
    ev.emit(GENERIC, b"rename_from", src, dbid)
    ev.emit(GENERIC, b"rename_to", dst, dbid)


@rule("move", always=True)
def _move(ev: Emitter, ctx, argv, reply, before) -> None:
    if reply == b":1\r\n":
        ev.emit(NEW, b"new", argv[1], int(argv[2]))
        ev.emit(GENERIC, b"move_from", argv[1], ctx.db.index)
        ev.emit(GENERIC, b"move_to", argv[1], int(argv[2]))


@rule("copy", before=_second_key_exists, always=True)
def _copy(ev: Emitter, ctx, argv, reply, replaced: bool) -> None:
    if reply == b":1\r\n":
        target = token_after(argv, 3, (b"db",))
        dbid = int(target) if target is not None else ctx.db.index
        # The generic check raised "new" for a destination absent from this db before.
        copied(ev, argv[2], dbid, new=dbid != ctx.db.index or replaced)


def copied(ev: Emitter, dst: bytes, dbid: int, new: bool = True) -> None:
    """COPY's events: the destination is added anew ("new", even over an old value) and "copy_to"."""
    if new:
        ev.emit(NEW, b"new", dst, dbid)
    ev.emit(GENERIC, b"copy_to", dst, dbid)


def _sort_destination(argv: list[bytes]) -> bytes | None:
    i = 2
    while i < len(argv):
        word = argv[i].lower()
        if word == b"store" and i + 1 < len(argv):
            return argv[i + 1]
        i += 3 if word == b"limit" else 2 if word in (b"by", b"get") else 1
    return None


stored(LIST, b"sortstore", "sort", destination=_sort_destination)

# lists
on_key(LIST, b"lpush", "lpush", "lpushx")
on_key(LIST, b"rpush", "rpush", "rpushx")
on_key(LIST, b"linsert", "linsert")
on_key(LIST, b"lset", "lset")
on_key(LIST, b"lpop", "lpop", pop=True)
on_key(LIST, b"rpop", "rpop", pop=True)
on_key(LIST, b"lrem", "lrem", pop=True)


@rule("ltrim", before=lambda ctx, argv: exists(ctx.db, argv[1]), always=True)
def _ltrim(ev: Emitter, ctx, argv, reply, existed: bool) -> None:
    """LTRIM notifies whenever the list exists, trimmed or not."""
    if existed:
        ev.emit(LIST, b"ltrim", argv[1], ctx.db.index)
        if not exists(ctx.db, argv[1]):
            ev.emit(GENERIC, b"del", argv[1], ctx.db.index)



def popped(ev: Emitter, ctx, key: bytes | None, cls: int, event: bytes) -> None:
    if key is None:
        return
    ev.emit(cls, event, key, ctx.db.index)
    if not exists(ctx.db, key):
        ev.emit(GENERIC, b"del", key, ctx.db.index)


@rule("blpop", "brpop")
def _blpop(ev: Emitter, ctx, argv, reply, before) -> None:
    popped(ev, ctx, reply_key(reply), LIST, b"lpop" if argv[0].lower() == b"blpop" else b"rpop")


@rule("lmpop", "blmpop", "zmpop", "bzmpop")
def _mpop(ev: Emitter, ctx, argv, reply, before) -> None:
    first = 2 if argv[0].lower() in (b"lmpop", b"zmpop") else 3      # where the keys start
    where = argv[first + int(argv[first - 1])].lower()
    names = {b"left": (LIST, b"lpop"), b"right": (LIST, b"rpop"), b"min": (ZSET, b"zpopmin"),
             b"max": (ZSET, b"zpopmax")}
    cls, event = names[where]
    popped(ev, ctx, reply_key(reply), cls, event)


@rule("lmove", "blmove", "rpoplpush", "brpoplpush")
def _lmove(ev: Emitter, ctx, argv, reply, before) -> None:
    src, dst, dbid = argv[1], argv[2], ctx.db.index
    if argv[0].lower() in (b"rpoplpush", b"brpoplpush"):
        wherefrom, whereto = b"right", b"left"
    else:
        wherefrom, whereto = argv[3].lower(), argv[4].lower()
    ev.emit(LIST, b"lpush" if whereto == b"left" else b"rpush", dst, dbid)
    ev.emit(LIST, b"lpop" if wherefrom == b"left" else b"rpop", src, dbid)
    if not exists(ctx.db, src):
        ev.emit(GENERIC, b"del", src, dbid)


# hashes
on_key(HASH, b"hset", "hset", "hmset", "hsetnx")
on_key(HASH, b"hdel", "hdel", pop=True)
on_key(HASH, b"hincrby", "hincrby")
on_key(HASH, b"hincrbyfloat", "hincrbyfloat")

# sets
on_key(SET, b"sadd", "sadd")
on_key(SET, b"srem", "srem", pop=True)
on_key(SET, b"spop", "spop", pop=True)
stored(SET, b"sinterstore", "sinterstore", destination=lambda argv: argv[1])
stored(SET, b"sunionstore", "sunionstore", destination=lambda argv: argv[1])
stored(SET, b"sdiffstore", "sdiffstore", destination=lambda argv: argv[1])


def _smove_before(ctx, argv) -> tuple[bool, bool]:
    """(the destination existed, it held the member)."""
    dst = ctx.db.lookup(argv[2], keyslot(argv[2]))
    try:
        return dst is not None, dst is not None and argv[3] in dst
    except TypeError:
        return True, False


@rule("smove", before=_smove_before, own_new=True)
def _smove(ev: Emitter, ctx, argv, reply, before: tuple[bool, bool]) -> None:
    src, dst, dbid = argv[1], argv[2], ctx.db.index
    dst_existed, had_member = before
    ev.emit(SET, b"srem", src, dbid)
    if not exists(ctx.db, src):
        ev.emit(GENERIC, b"del", src, dbid)
    if not dst_existed:
        ev.emit(NEW, b"new", dst, dbid)
    if not had_member:
        ev.emit(SET, b"sadd", dst, dbid)


# sorted sets, geo
ZADD_OPTIONS = frozenset((b"nx", b"xx", b"gt", b"lt", b"ch", b"incr"))


@rule("zadd")
def _zadd(ev: Emitter, ctx, argv, reply, before) -> None:
    incr = False
    for word in argv[2:]:
        word = word.lower()
        if word not in ZADD_OPTIONS:
            break
        incr = incr or word == b"incr"
    ev.emit(ZSET, b"zincr" if incr else b"zadd", argv[1], ctx.db.index)


on_key(ZSET, b"zincr", "zincrby")
on_key(ZSET, b"zadd", "geoadd")
on_key(ZSET, b"zrem", "zrem", pop=True)
on_key(ZSET, b"zremrangebyscore", "zremrangebyscore", pop=True)
on_key(ZSET, b"zremrangebyrank", "zremrangebyrank", pop=True)
on_key(ZSET, b"zremrangebylex", "zremrangebylex", pop=True)
on_key(ZSET, b"zpopmin", "zpopmin", pop=True)
on_key(ZSET, b"zpopmax", "zpopmax", pop=True)
for _name in ("zunionstore", "zinterstore", "zdiffstore", "zrangestore"):
    stored(ZSET, _name.encode(), _name, destination=lambda argv: argv[1])
stored(ZSET, b"georadiusstore", "georadius", "georadiusbymember",
       destination=lambda argv: token_after(argv, 5, (b"store", b"storedist")))
stored(ZSET, b"geosearchstore", "geosearchstore", destination=lambda argv: argv[1])


# streams (t_stream.c)
def _stream_length(ctx, argv) -> int:
    value = ctx.db.lookup(argv[1], keyslot(argv[1]))
    return getattr(value, "length", 0)


@rule("xadd", before=_stream_length)
def _xadd(ev: Emitter, ctx, argv, reply, length_before: int) -> None:
    """XADD, and "xtrim" when its MAXLEN/MINID removed entries."""
    ev.emit(STREAM, b"xadd", argv[1], ctx.db.index)
    if _stream_length(ctx, argv) <= length_before:
        ev.emit(STREAM, b"xtrim", argv[1], ctx.db.index)


on_key(STREAM, b"xtrim", "xtrim")
on_key(STREAM, b"xdel", "xdel")
on_key(STREAM, b"xsetid", "xsetid")
for _sub in ("create", "setid", "destroy", "createconsumer", "delconsumer"):
    RULES[f"xgroup|{_sub}"] = Rule(lambda ev, ctx, argv, reply, before, _event=f"xgroup-{_sub}".encode():
                                   ev.emit(STREAM, _event, argv[2], ctx.db.index))


@rule("bzpopmin", "bzpopmax")
def _bzpop(ev: Emitter, ctx, argv, reply, before) -> None:
    popped(ev, ctx, reply_key(reply), ZSET, b"zpopmin" if argv[0].lower() == b"bzpopmin" else b"zpopmax")


@internal_command("__monitoring", 2)
def monitoring_command(ctx, argv: list[bytes]) -> bytes:
    """__monitoring 0|1: whether the sending proxy's server has monitors (script lines)."""
    events = ctx.stats["worker"].events
    if argv[1] == b"1":
        events.monitoring.add(ctx.link)
    else:
        events.monitoring.discard(ctx.link)
    events.refresh()
    return resp.OK
