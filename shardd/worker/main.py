"""A shard worker: a plain loop over its rings, plus timers. It never touches a socket."""
from __future__ import annotations

import array
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter_ns

import hiredis

from .. import commands, errors, log, resp
from ..frames import (NOTOUCH, TRACK, ATOMIC, BLOCKING, CLIENTS, EXEC_ALL, WAKE_BID, FRAMED_REPLY, GUARD, HOLD, IN_HOLD, NO_REPLY, RELEASE, REPLY, REQUEST,
                      SECTION, SPLIT)
from .coordination import forget_watches, watch_fired
from ..ring import FrameReader, FrameWriter, Waker
from . import keyspace
from .blocking import NOWAIT, WAIT, Blocked
from ..persist import LOAD_FAILED_EXIT, SAVE_FAILED_EXIT
from .persistence import MISCONF, LoadError, Persistence
from ..persist.aof import Aof
from .context import Ctx
from .notify import Events
from .evict import OOM_REPLY
from .names import original_argv
from .expire import ActiveExpire
from .server_cmds import TOTAL_NS, OpStats
from .keyspace import Db

FRAMES_PER_TURN = 64    # per proxy per loop turn, so one busy proxy cannot starve the others
# A hold whose coordinator goes quiet this long is dropped: a proxy that died mid-hold (its
# flock is released by the kernel) must not leave the shard stuck.
HOLD_TIMEOUT = 5.0
HOLD_LOST = b"-ERR cross-shard hold expired before this command ran\r\n"
MISCONF_REPLY = resp.error(MISCONF)
LOADING_REPLY = resp.error(errors.LOADING)


@dataclass
class ProxyLink:
    """This worker's end of the rings shared with one proxy."""
    requests: FrameReader
    control: FrameReader
    replies: FrameWriter
    proxy_waker: Waker
    epoch: memoryview         # [0] our restart generation, [1] the proxy's acknowledgement of it;
                              # [2] the proxy's restart generation, [3] our acknowledgement
    index: int = 0

    def in_sync(self) -> bool:
        return self.epoch[0] == self.epoch[1]


class Worker:
    def __init__(self, shard: int, links: list[ProxyLink], waker: Waker, config, slot_range: tuple[int, int],
                 restarted: bool = False) -> None:
        self.shard = shard
        self.links = links
        if restarted:
            # A new generation: each proxy fails what it had in flight, empties our rings and
            # acknowledges; until then we leave that proxy's rings alone.
            for link in links:
                link.epoch[0] += 1
                link.proxy_waker.wake_if_sleeping(force=True)
        self.syncing = restarted
        self.waker = waker
        self.config = config
        config.values["__slot_range__"] = slot_range
        for i, link in enumerate(links):
            link.index = i
        self.dirty: set[int] = set()       # clients whose WATCHed keys changed
        self.blocked = Blocked(self)
        self.ready = self.blocked.ready
        self.serve_now = True               # serve blocked clients after each command
        self.dbs = [Db(i, self.dirty, self.ready) for i in range(config.values["databases"])]
        self.ctx = Ctx(self.dbs, config.values, shard)
        self.ctx.blocked = self.blocked
        self.n_shards = config.values.get("__shards__", 1)
        self.persistence = Persistence(self)
        self.aof = Aof(self)                 # the AOF (persist/aof.py): logs calls while appendonly is on
        self.tracked_reader = 0              # the client whose reads this frame asks to remember (TRACK)
        self.no_touch = False                # running a NOTOUCH frame (worker/no_touch.py)
        self.observer: Events | None = None  # set while keyspace notifications or client tracking are on
        self.events = Events(self)           # notifications and tracking invalidations (notify.py)
        self.misconf = False                 # writes refused: the last save failed (MISCONF)
        self.exit_save: bool | None = None   # on exit: save (True), not (False), per config (None)
        self.ctx.stats["worker"] = self
        self.opstats = OpStats(config.values, in_proxy=False)
        self.reader = hiredis.Reader()
        self.expire = ActiveExpire(self.dbs)
        self.running = True
        from .names import command_names, renamed_names
        self.lookup = command_names(getattr(config, "renames", {})).get
        self.renamed = renamed_names(getattr(config, "renames", {})) or None   # rename-command: new → original
        self.held_by: ProxyLink | None = None   # the coordinator holding this shard
        self.hold_id = 0
        self.hold_deadline = 0.0
        from .evict import Memory
        self.limited = False                 # maxmemory set: each command checks the share first
        self.memory = Memory(self)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        hz_interval = 1.0 / max(1, self.config.values.get("hz", 10))
        next_tick = time.monotonic() + hz_interval
        parent = os.getppid()
        while self.running:
            self.turn()
            # sleep() looks at every ring before it blocks, so a turn that did work needs no
            # second, empty turn to find there is nothing more (a cost paid on every wake-up).
            worked = False
            if self.memory.pending and self.held_by is None:    # an eviction that ran out of time
                self.memory.perform()
                worked = True
            now = time.monotonic()
            if now >= next_tick:
                hz_interval = 1.0 / max(1, self.config.values.get("hz", 10))
                next_tick = now + hz_interval
                if os.getppid() != parent:
                    return
                keyspace.refresh_clock()
                self.persistence.tick()
                self.aof.tick()
                self.misconf = self.persistence.refuses_writes()
                if self.held_by is None:    # expiry would write in the middle of a hold
                    self.ctx.client_id = 0  # no client wrote what expires here (tracking's NOLOOP)
                    self.expire.cycle(budget=hz_interval * 0.25)
                elif now > self.hold_deadline:
                    self.held_by = None
                    self.aof.settle()
                self.memory.tick()
            events = self.events
            if events.queued:
                events.flush()
            if not worked:
                self.sleep(min(next_tick - now, 0.05))

    def at_exit(self) -> bool:
        """A stop asked for by a signal: save first when asked to (or when save points are
        set); False when that save failed."""
        self.persistence.kill_child()
        self.aof.shutdown()
        save = self.exit_save
        if save is None:
            save = bool(self.config.values.get("save"))
        if save and not self.running:
            try:
                self.persistence.save()
            except errors.CommandError:
                log.log("warning", "Error trying to save the DB before exiting.")
                return False
            log.log("notice", "DB saved on disk")
        return True

    def turn(self) -> bool:
        for link in self.links:
            if link.epoch[2] != link.epoch[3]:
                self.proxy_restarted(link)
        if self.held_by is not None:
            return self.turn_held(self.held_by)
        worked = False
        links = self.links
        if self.syncing:
            links = [link for link in links if link.in_sync()]
            self.syncing = len(links) < len(self.links)
        for link in links:
            frame = link.control.next()
            while frame is not None:
                worked = True
                self.handle(frame, link)
                if self.held_by is not None:   # from now on only this proxy's control frames
                    if link.replies.pending:
                        link.replies.flush()
                    link.proxy_waker.wake_if_sleeping()
                    return True
                frame = link.control.next()
        for link in links:
            n = 0
            frame = link.requests.next()
            while frame is not None:
                n += 1
                self.handle(frame, link)
                if n >= FRAMES_PER_TURN:
                    break
                frame = link.requests.next()
            moved = link.replies.flush() if link.replies.pending else False
            ring = link.requests.ring
            if ring.wants_space() and ring.free():
                # The proxy has a frame larger than the ring waiting for the room we made.
                ring.set_want_space(0)
                link.proxy_waker.wake_if_sleeping(force=True)
                worked = True
            elif n or moved:
                link.proxy_waker.wake_if_sleeping()
            if n or moved or link.requests.assembling():
                worked = True
        return worked

    def proxy_restarted(self, link: ProxyLink) -> None:
        """A new proxy process took over this link: forget what the old one sent (a frame may
        be half-written), drop its hold, and let it start."""
        for reader in (link.requests, link.control):
            reader.ring.counters[8] = reader.ring.counters[0]
            reader.ring.set_want_space(0)
            reader.reset()
        link.replies.pending.clear()
        self.blocked.drop_link(link.index)
        self.events.forget_link(link.index)
        if self.held_by is link:
            self.held_by = None
            self.aof.settle()
        link.epoch[3] = link.epoch[2]
        link.proxy_waker.wake_if_sleeping(force=True)

    def turn_held(self, link: ProxyLink) -> bool:
        """While held, only the holder's control frames run."""
        worked = False
        frame = link.control.next()
        while frame is not None and self.held_by is link:
            worked = True
            self.handle(frame, link)
            frame = link.control.next()
        if frame is not None:          # released mid-drain: the rest runs next turn
            self.handle(frame, link)
        if link.replies.pending:
            link.replies.flush()
        if worked:
            link.proxy_waker.wake_if_sleeping()
            self.hold_deadline = time.monotonic() + HOLD_TIMEOUT
        return worked

    def sleep(self, timeout: float) -> None:
        self.waker.prepare_sleep()
        if self.held_by is not None:
            if self.held_by.control.ring.available():
                self.waker.cancel_sleep()
                return
            self.wait(min(timeout, max(self.hold_deadline - time.monotonic(), 0.001)))
            return
        for link in self.links:
            if self.syncing and not link.in_sync():
                continue
            if (link.requests.ring.available() or link.control.ring.available()
                    or (link.replies.pending and link.replies.ring.free())):
                self.waker.cancel_sleep()
                return
        self.wait(timeout)

    def wait(self, timeout: float) -> None:
        try:
            select.select([self.waker.fd], [], [], max(timeout, 0.001))
        except InterruptedError:
            pass
        self.waker.cancel_sleep()
        self.waker.drain()

    # -- frames --------------------------------------------------------------------------
    def handle(self, frame: bytes, link: ProxyLink) -> None:
        bid, client_id, db, proto, flags, n_exec, n_runs, hold = REQUEST.unpack_from(frame)
        off = REQUEST.size
        if flags & NOTOUCH and not self.no_touch:
            from .no_touch import handle
            return handle(self, frame, link)
        if flags & (HOLD | IN_HOLD | RELEASE) and not self.enter_hold(link, flags, hold):
            # The hold this frame belongs to expired: run nothing, say so for each command.
            if not flags & NO_REPLY:
                link.replies.send(REPLY.pack(bid, n_runs) + array.array("I", [len(HOLD_LOST)] * n_runs).tobytes()
                                  + HOLD_LOST * n_runs)
            return
        if flags & CLIENTS:
            return self.handle_clients(frame, off, bid, n_runs, link)
        runs = array.array("I", frame[off:off + 4 * n_runs])
        off += 4 * n_runs
        if flags & EXEC_ALL:
            indices = None
        else:
            indices = array.array("I", frame[off:off + 4 * n_exec])
            off += 4 * n_exec
        slots = array.array("H", frame[off:off + 2 * n_exec])
        off += 2 * n_exec
        keyspace.refresh_clock()
        ctx = self.ctx
        ctx.db = self.dbs[db]
        ctx.proto = proto
        ctx.client_id = client_id
        ctx.link = link.index
        self.tracked_reader = client_id if flags & TRACK else 0
        if flags & GUARD:
            fired = watch_fired(ctx, client_id)
            forget_watches(ctx, client_id)
            if fired:
                link.replies.send(REPLY.pack(bid, n_runs) + bytes(4 * n_runs))
                return
        reader = self.reader
        reader.feed(frame, off)
        ctx.block_mode = WAIT if flags & BLOCKING else NOWAIT
        self.serve_now = not flags & (ATOMIC | HOLD | IN_HOLD)
        if self.limited and flags & ATOMIC and self.held_by is None:
            self.memory.perform()           # a transaction: before it, never inside it
        replies = self.execute(reader, slots, indices, n_exec)
        if self.aof.tx_open or self.aof.unit is not None:
            self.aof.end_transaction()  # the frame's AOF records as one MULTI/EXEC, before its replies
        ctx.block_mode = NOWAIT
        self.serve_now = True
        if flags & RELEASE:
            self.held_by = None
            self.aof.settle()          # the hold's cross-shard units are whole on every shard
        if self.ready and self.held_by is None:
            self.blocked.serve_ready()
        events = self.events
        if events.queued:
            events.flush()    # before the replies: Valkey publishes them while the command runs
        if flags & NO_REPLY:
            return
        if n_runs == 1:
            body = fit_run(b"".join(replies), n_exec)
            link.replies.send_framed(b"".join((FRAMED_REPLY.pack(REPLY.size + 4 + len(body), bid, 1),
                                               len(body).to_bytes(4, "little"), body)))
            return
        lengths = array.array("I")
        bodies: list[bytes] = []
        add_runs(replies, runs, lengths, bodies)
        send_runs(link, bid, lengths, bodies)

    def handle_clients(self, frame: bytes, off: int, bid: int, n_sections: int, link: ProxyLink) -> None:
        """A frame carrying the reads of several clients, one section each."""
        keyspace.refresh_clock()
        self.tracked_reader = 0
        ctx = self.ctx
        ctx.link = link.index
        reader = self.reader
        dbs = self.dbs
        lengths = array.array("I")
        bodies = []
        for _ in range(n_sections):
            client_id, db, proto, flags, n_exec, n_runs, size = SECTION.unpack_from(frame, off)
            off += SECTION.size
            ctx.db = dbs[db]
            ctx.proto = proto
            ctx.client_id = client_id
            if n_exec == 1 and flags & EXEC_ALL:
                # One command (every read without pipelining): its run count is 1, its slot
                # follows; no arrays to build, its reply is the run's body.
                ctx.slot = frame[off + 4] | frame[off + 5] << 8
                off += 6
                reader.feed(frame, off, size)
                off += size
                add_body(self.run_command(reader.gets()), lengths, bodies)
                continue
            if flags & SPLIT:
                workers = frame[off:off + n_exec]
                off += n_exec
                slots = array.array("H", frame[off:off + 2 * n_exec])
                off += 2 * n_exec
                reader.feed(frame, off, size)
                off += size
                # RUN_TOO_LARGE in its place answers each of this worker's commands (proxy)
                add_body(self.execute_split(reader, workers, slots, n_runs), lengths, bodies)
                continue
            runs = array.array("I", frame[off:off + 4 * n_runs])
            off += 4 * n_runs
            indices = None
            if not flags & EXEC_ALL:
                indices = array.array("I", frame[off:off + 4 * n_exec])
                off += 4 * n_exec
            slots = array.array("H", frame[off:off + 2 * n_exec])
            off += 2 * n_exec
            reader.feed(frame, off, size)
            off += size
            add_runs(self.execute(reader, slots, indices, n_exec), runs, lengths, bodies)
        events = self.events
        if events.queued:
            events.flush()
        send_runs(link, bid, lengths, bodies)

    def enter_hold(self, link: ProxyLink, flags: int, hold: int) -> bool:
        """Start or continue a hold; False when the frame's hold is no longer ours."""
        if flags & HOLD:
            self.held_by = link
            self.hold_id = hold
            self.hold_deadline = time.monotonic() + HOLD_TIMEOUT
            return True
        return self.held_by is link and self.hold_id == hold

    def execute(self, reader, slots, indices, n_exec: int) -> list[bytes]:
        ctx = self.ctx
        run_command = self.run_command
        replies = []
        append = replies.append
        if indices is None:
            for i in range(n_exec):
                argv = reader.gets()
                ctx.slot = slots[i]
                append(run_command(argv))
            return replies
        pos = 0
        for i in range(n_exec):
            want = indices[i]
            while pos < want:
                reader.gets()
                pos += 1
            argv = reader.gets()
            pos += 1
            ctx.slot = slots[i]
            append(run_command(argv))
        # Commands after the last one for us belong to other workers.
        while reader.has_data():
            if reader.gets() is False:
                break
        return replies

    def execute_split(self, reader, workers: bytes, slots, me: int) -> bytes:
        """The commands of a SPLIT section whose byte in `workers` is `me`: their replies as
        runs (consecutive commands of ours), in the section's reply format."""
        ctx = self.ctx
        run_command = self.run_command
        replies: list[bytes] = []
        runs: list[int] = []
        ours = False                 # the previous command was ours: this one joins its run
        for i in range(len(workers)):
            argv = reader.gets()
            if workers[i] != me:
                ours = False
                continue
            ctx.slot = slots[i]
            replies.append(run_command(argv))
            if ours:
                runs[-1] += 1
            else:
                runs.append(1)
                ours = True
        lengths = array.array("I")
        bodies: list[bytes] = []
        add_runs(replies, runs, lengths, bodies)
        return b"".join((len(lengths).to_bytes(4, "little"), lengths.tobytes(), *bodies))

    def run_command(self, argv: list[bytes]) -> bytes:
        """One command of a frame (ctx set for it): its reply; blocked clients its write made
        ready are served right after it, unless it is part of a transaction or hold."""
        lookup = self.lookup
        spec = lookup(argv[0]) or lookup(argv[0].lower())
        if self.renamed is not None:
            original_argv(self.renamed, argv)
        reply = OOM_REPLY if self.limited and self.memory.refuses(spec, argv) else self.call(spec, argv)
        if self.ready and self.serve_now:
            self.blocked.serve_ready()
        return reply

    def send_wake(self, link_index: int, kind: int, client_id: int, body: bytes) -> None:
        """An unasked-for reply: a blocked client was served (or, REMOTE, a key is ready)."""
        events = self.events
        if events.queued:
            events.flush()
        link = self.links[link_index]
        link.replies.send(REPLY.pack(WAKE_BID, kind) + client_id.to_bytes(8, "little") + body)
        link.proxy_waker.wake_if_sleeping()

    def call(self, spec, argv: list[bytes]) -> bytes:
        stats = self.opstats
        # perf_counter_ns is a vDSO read, not a syscall; with the slow log and the latency
        # monitor off no clock is read at all.
        start = perf_counter_ns() if stats.timed else 0
        try:
            if spec.subcommands and len(argv) > 1:     # by the container's table: it may be renamed
                spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower(), spec)
            if self.misconf and "write" in spec.flags:
                return MISCONF_REPLY
            observer = self.observer     # notify.Events: notifications, tracking (None: both off)
            reply = spec.worker_handler(self.ctx, argv) if observer is None else observer.run(spec, argv)
        except errors.CommandError as exc:
            reply = resp.error(str(exc))
            stats.failed(spec, reply)
        except Exception as exc:  # a bug must not take the shard down with it
            log.log("warning", f"internal error in {argv[0]!r}: {traceback.format_exc()}")
            reply = resp.error(f"ERR internal error in '{argv[0].decode('utf-8', 'replace')}': {exc.__class__.__name__}")
            stats.failed(spec, reply)
        counts = stats.counts[spec.name]
        if start:
            elapsed = perf_counter_ns() - start
            counts[elapsed.bit_length()] += 1    # the latency histogram (and the call count)
            counts[TOTAL_NS] += elapsed
            if elapsed >= stats.notable_ns:
                stats.notable(spec, argv, elapsed, self.ctx.client_id)
        else:
            counts[0] += 1
        return reply

    def serve_loading(self) -> None:
        """While loading data: answer the clients waiting -LOADING, except commands Valkey
        runs while loading (INFO, PING … flagged "loading")."""
        def answer(argv: list[bytes]) -> bytes:
            spec = commands.lookup_argv(argv) or self.lookup(argv[0])
            if spec is not None and "loading" in spec.flags:
                return Worker.call(self, spec, argv)
            return LOADING_REPLY
        self.serve_busy(answer)

    def serve_busy(self, answer) -> None:
        """Called from the Lua hook of a script running past busy-reply-threshold: answer
        the frames waiting now, every command by `answer(argv)` (BUSY, SCRIPT KILL …),
        without entering holds or serving blocked clients; the script's state is kept."""
        ctx = self.ctx
        saved = (self.reader, self.ready, self.held_by, self.hold_id, self.hold_deadline, self.serve_now,
                 ctx.db, ctx.proto, ctx.slot, ctx.client_id, ctx.link, ctx.block_mode, keyspace.now_ms)
        self.reader = hiredis.Reader()      # the script's own frame is still being read
        self.ready = []
        aof = self.aof
        if aof.tx_open:                     # the script's frame: its MULTI goes out now, its EXEC at its end
            aof.write_out()
        frame_tx = aof.tx_open, aof.unit
        aof.tx_open, aof.unit = False, None
        try:
            with self.call_replaced(lambda spec, argv: answer(argv)):
                self.answer_waiting()
        finally:
            aof.tx_open, aof.unit = frame_tx
            (self.reader, self.ready, self.held_by, self.hold_id, self.hold_deadline, self.serve_now,
             ctx.db, ctx.proto, ctx.slot, ctx.client_id, ctx.link, ctx.block_mode, keyspace.now_ms) = saved

    def answer_waiting(self) -> None:
        """Run the frames every proxy has waiting now (serve_busy, with its `call`)."""
        for link in self.links:
            if not link.in_sync() or link.epoch[2] != link.epoch[3]:
                continue
            for ring in (link.control, link.requests):
                frame = ring.next()
                while frame is not None:
                    self.handle(frame, link)
                    frame = ring.next()
            if link.replies.pending:
                link.replies.flush()
            link.proxy_waker.wake_if_sleeping()

    @contextmanager
    def call_replaced(self, call: Callable) -> Iterator[None]:
        """`call` runs the commands for a while (a busy script's -BUSY answers, a NOTOUCH
        frame), then the one before it again: the AOF's logging call while appendonly is on,
        or the class's. Unless a command meanwhile replaced it (CONFIG SET appendonly)."""
        before = self.__dict__.get("call")
        self.call = call
        try:
            yield
        finally:
            if self.__dict__.get("call") is call:
                if before is None:
                    del self.call
                else:
                    self.call = before


def add_body(body: bytes, lengths: array.array, bodies: list[bytes]) -> None:
    """One run's body, as it is unless over a run's u32 length (then RUN_TOO_LARGE)."""
    try:
        lengths.append(len(body))
    except OverflowError:
        body = RUN_TOO_LARGE
        lengths.append(len(body))
    bodies.append(body)


def add_runs(replies: list[bytes], runs, lengths: array.array, bodies: list[bytes]) -> None:
    """Join replies into one body per run (consecutive commands of one client)."""
    pos = 0
    for count in runs:
        body = fit_run(b"".join(replies[pos:pos + count]), count)
        pos += count
        lengths.append(len(body))
        bodies.append(body)


# A run's length is a u32 in the reply frame: replies adding up to more (a pipeline of big
# values) get an error each instead, and the worker goes on.
MAX_RUN_BYTES = 0xFFFFFFFF
RUN_TOO_LARGE = resp.error("ERR the replies of these commands add up to more than 4 GB: ask for them in "
                           "smaller pieces")


def fit_run(body: bytes, count: int) -> bytes:
    return body if len(body) <= MAX_RUN_BYTES else RUN_TOO_LARGE * count


def send_runs(link: ProxyLink, bid: int, lengths: array.array, bodies: list[bytes]) -> None:
    body = b"".join(bodies)
    link.replies.send_framed(b"".join((FRAMED_REPLY.pack(REPLY.size + 4 * len(lengths) + len(body), bid,
                                                         len(lengths)), lengths.tobytes(), body)))


def run(shard: int, links: list[ProxyLink], waker: Waker, config, slot_range: tuple[int, int],
        restarted: bool = False) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .server_cmds import worker_process
    worker_process()      # the RSS baseline of INFO's used_memory, before any data
    worker = Worker(shard, links, waker, config, slot_range, restarted)

    def stop(save: bool | None):
        def handler(*_) -> None:
            worker.running = False
            worker.exit_save = save
        return handler
    # The supervisor's SIGTERM saves if save points are set; SIGUSR1 always, SIGUSR2 never.
    signal.signal(signal.SIGTERM, stop(None))
    signal.signal(signal.SIGUSR1, stop(True))
    signal.signal(signal.SIGUSR2, stop(False))
    try:
        worker.aof.load_data()     # the AOF when appendonly is on and there is one, else the RDB
    except LoadError as exc:
        log.log("warning", f"Fatal error loading the DB: {exc}. Exiting.")
        sys.exit(LOAD_FAILED_EXIT)
    worker.run()
    if not worker.at_exit():
        sys.exit(SAVE_FAILED_EXIT)
