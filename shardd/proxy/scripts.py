"""EVAL and FCALL in the proxy: where a script runs, and the coordinator when no worker can.

A script whose declared keys share a worker goes to that worker (keyless: slot 0's worker)
and the client's next commands wait for its reply: the worker may answer with a marker
(worker/scripting.py) saying the script touched a key of another worker and left nothing
behind, and then it runs again under the coordinator, on fetched copies of every key it
touches (scratch.py's Db, this process's Lua runtime), before anything the client sent
after it. A script whose keys span workers, or one known to wander, goes to the coordinator
at once. Either way it is atomic: nothing else runs on the shards it touches meanwhile.

A client whose user may not run everything sends `__script_user <name> <rules>` in front of
its script (worker/scripting.py checks the script's commands against them); the worker's
reply then carries the refusals for this proxy's ACL LOG. A script run here is checked
against the client's user directly. The default user's scripts carry nothing.

SCRIPT LOAD/FLUSH and FUNCTION LOAD/DELETE/FLUSH/RESTORE reach every worker, so that
EVALSHA and FCALL work wherever a script lands; SCRIPT KILL, FUNCTION KILL and FUNCTION
STATS ask every worker (the busy one answers from inside its script).
"""
from __future__ import annotations

import pickle
import time

from .. import commands, log, resp
from ..commands import LOCAL, proxy_command
from ..errors import CommandError
from ..frames import NO_REPLY
from ..slots import keyslot
from ..worker import functions, keyspace, notify, scripting
from ..worker.blocking import NOWAIT
from ..worker.scripting import ACL_LOG, DIVERTED, MARK, NEW_SCRIPT
from .fanout import PLANNERS, Parts, every_worker, to_all
from .replies import decode_or_raise
from .scratch import ScratchDb, scratch_ctx
from .transactions import out_of_memory

SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
MAX_RUNS = 64            # runs of one script that may each discover keys of other workers
MAX_WANDERERS = 4096

# Scripts that touched keys of other workers once: they go to the coordinator directly.
wanderers: dict[bytes, None] = {}


def script_id(argv: list[bytes]) -> bytes:
    name = argv[0].lower()
    if name.startswith(b"fcall"):
        return b"f" + argv[1].lower()
    if name.startswith(b"evalsha"):
        return b"s" + argv[1].lower()
    return b"b" + argv[1]


def remember_wanderer(argv: list[bytes]) -> None:
    if len(wanderers) >= MAX_WANDERERS:
        wanderers.clear()
    wanderers[script_id(argv)] = None


def placement(conn, keys: list[bytes]) -> tuple[int, int] | None:
    """(worker, slot) running a script with these declared keys; None when they span workers."""
    slotmap = conn.proxy.slotmap
    if not keys:
        return slotmap[0], 0
    slot = keyslot(keys[0])
    worker = slotmap[slot]
    for key in keys[1:]:
        if slotmap[keyslot(key)] != worker:
            return None
    return worker, slot


def load_everywhere(conn, body: bytes, skip: int = -1) -> None:
    """SCRIPT LOAD on the other workers, expecting no answer (their request rings keep the
    order, so this client's EVALSHA after it finds the script)."""
    from .server import FrameBuilder
    proxy = conn.proxy
    for w in range(len(proxy.links)):
        if w == skip:
            continue
        b = FrameBuilder(0, NO_REPLY)
        b.add_extra([b"SCRIPT", b"LOAD", body], 0)
        b.runs.append(1)
        proxy.send_frame(w, 0, b.build(None, 0, conn.id, conn.db, conn.proto), None, None)


def is_eval_body(argv: list[bytes]) -> bool:
    return argv[0].lower() in (b"eval", b"eval_ro")


async def ensure_local(hold, conn, argv: list[bytes]) -> None:
    """This process's runtime gets the workers' current script or library before running it."""
    name = argv[0].lower()
    ranges = conn.proxy.info["slot_ranges"]
    if name.startswith(b"evalsha"):
        sha = argv[1].lower()
        if len(sha) != 40:
            return
        (reply,) = await hold.run([(0, [b"__script_body", sha], ranges[0][0])])
        body = decode_or_raise(reply)
        if body is None:
            scripting.SCRIPTS.pop(sha, None)
        else:
            scripting.register(body, from_eval=False)
    elif name.startswith(b"fcall"):
        (reply,) = await hold.run([(0, [b"__function_code", argv[1]], ranges[0][0])])
        code = decode_or_raise(reply)
        if code is not None:
            functions.ensure_library(code)
            return
        fn = functions.CURRENT.functions.get(argv[1].lower())
        if fn is not None:
            functions.CURRENT.unlink(fn.library)


async def fetch_into(hold, conn, db: int, keys, payloads: dict[bytes, bytes | None]) -> None:
    """The pickled (value, expiry) of each key of db (None when missing), into payloads."""
    keys = [k for k in dict.fromkeys(keys) if k not in payloads]
    if not keys:
        return
    slotmap = conn.proxy.slotmap
    parts = [(slotmap[keyslot(k)], [b"__dump", k], keyslot(k)) for k in keys]
    for key, reply in zip(keys, await hold.run(parts, db=db)):
        payloads[key] = decode_or_raise(reply)


def user_command(conn) -> list[bytes] | None:
    """`__script_user` for a client whose user may not run everything, else None."""
    user = conn.proxy.acl.script_user(conn)
    if user is None:
        return None
    return [b"__script_user", user.name.encode("utf-8", "surrogateescape"), user.permissions_text()]


def log_denials(conn, denials: list[tuple[int, bytes]]) -> None:
    """Commands a script of this client was refused, into the ACL LOG (context "lua")."""
    acl = conn.proxy.acl
    for reason, obj in denials:
        acl.add_log(conn, reason, obj, conn.user, "lua")


async def run_across(hold, conn, spec, argv: list[bytes], keys: list[bytes]) -> bytes:
    """The script on fetched copies of the keys it touches (in any db it SELECTs), run again
    each time it finds more; what it wrote goes back to the workers, all in this hold."""
    await ensure_local(hold, conn, argv)
    oom = out_of_memory(conn, keys)
    if oom and scripting.denies_oom(spec, argv):
        return scripting.OOM_REPLY
    user = conn.proxy.acl.script_user(conn)
    payloads: dict[int, dict[bytes, bytes | None]] = {conn.db: {}}
    await fetch_into(hold, conn, conn.db, keys, payloads[conn.db])
    databases = conn.proxy.config.values["databases"]
    answers: dict[tuple[int, tuple[bytes, ...]], list] = {}   # (db, query) → every worker's reply
    deadline = time.monotonic() + scripting.SCRATCH_TIME_LIMIT
    for _ in range(MAX_RUNS):
        if time.monotonic() > deadline:
            raise CommandError("ERR Script ran too long across shards (a cross-shard hold is limited)")
        keyspace.refresh_clock()
        dbs = [ScratchDb(i, payloads.get(i, {})) for i in range(databases)]
        ctx = scratch_ctx(conn, dbs[conn.db], keys[0] if keys else None, NOWAIT)
        ctx.dbs = dbs
        ctx.stats["answers"] = answers
        ctx.stats["oom"] = oom
        events = notify.emitter_for(conn.proxy)      # keyspace notifications, if on
        if events is not None:
            ctx.stats["emitter"] = events
        if user is not None:
            ctx.stats["script_user"] = (ctx.client_id, user)
        try:
            reply = spec.worker_handler(ctx, argv)
        except CommandError as exc:
            reply = resp.error(str(exc))
        missing = [(db.index, db.missing) for db in dbs if db.missing]
        needed = ctx.stats.get("needed")
        if missing or needed:
            for index, found in missing:
                await fetch_into(hold, conn, index, found, payloads.setdefault(index, {}))
            for index, query in needed or ():
                replies = await hold.run(every_worker(conn, list(query)), db=index)
                answers[index, query] = [decode_or_raise(r) for r in replies]
            continue
        denials = ctx.stats.pop("acl_denials", None)
        if denials:
            log_denials(conn, denials)
        if ctx.stats.get("timed_out"):
            return reply
        for db in dbs:
            if db.written:
                await write_back_db(hold, conn, db)
        if events is not None and events.pending:
            conn.proxy.pubsub.raise_events(events.pending)
        for channel, message in ctx.stats.get("published", ()):
            conn.proxy.pubsub.publish(channel, message, shard=channel.__class__ is notify.ShardChannel)
        if is_eval_body(argv):
            load_everywhere(conn, argv[1])
        return reply
    raise CommandError("ERR script reads too many keys of other shards")


async def write_back_db(hold, conn, db: ScratchDb) -> None:
    slotmap = conn.proxy.slotmap
    parts = []
    for key in db.written:
        slot = keyslot(key)
        entry = db.entry(key)
        if entry is None:
            parts.append((slotmap[slot], [b"DEL", key], slot))
        else:
            parts.append((slotmap[slot], [b"__restore", key, pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)], slot))
    for reply in await hold.run(parts, db=db.index):
        decode_or_raise(reply)


def unmark(conn, argv: list[bytes], reply: bytes, worker: int) -> tuple[bytes, bool]:
    """A worker's script reply without its marker: (reply, whether the script must move)."""
    if len(reply) < 2 or reply[0] != MARK:
        return reply, False
    flags = reply[1]
    body = reply[2:]
    if flags & ACL_LOG:
        size = int.from_bytes(body[:4], "little")
        log_denials(conn, pickle.loads(body[4:4 + size]))
        body = body[4 + size:]
    if flags & NEW_SCRIPT and is_eval_body(argv):
        load_everywhere(conn, argv[1], skip=worker)
    if flags & DIVERTED:
        remember_wanderer(argv)
        return b"", True
    return body, False


class ScriptReply:
    """The target of a script sent to one worker: its reply fills the client's held place,
    or the script runs again under the coordinator."""
    __slots__ = ("conn", "entry", "spec", "argv", "keys", "worker")

    def __init__(self, conn, entry, spec, argv: list[bytes], keys: list[bytes], worker: int) -> None:
        self.conn = conn
        self.entry = entry
        self.spec = spec
        self.argv = argv
        self.keys = keys
        self.worker = worker

    def fill(self, data: bytes) -> None:
        reply, moved = unmark(self.conn, self.argv, data, self.worker)
        if not moved:
            self.entry.data = reply
            self.conn.resume()
            return
        self.conn.proxy.loop.create_task(self.rerun())

    async def rerun(self) -> None:
        conn = self.conn
        spec, argv, keys = self.spec, self.argv, self.keys

        async def steps(hold) -> bytes:
            return await run_across(hold, conn, spec, argv, keys)
        try:
            # Earlier commands of this client first: a hold would overtake them on their rings.
            await conn.until_first(self.entry)
            self.entry.data = await conn.proxy.coordinator.run(conn, steps, None)
        except Exception as exc:  # a bug answers this client, it does not wedge it
            log.log("warning", f"internal error in a cross-shard script: {exc!r}")
            self.entry.data = resp.error(f"ERR internal error: {exc.__class__.__name__}")
        conn.resume()


def script_spec(conn, argv: list[bytes]):
    spec = conn.proxy.lookup(argv[0])
    return spec if spec is not None else commands.lookup(argv[0])


@proxy_command(*SCRIPT_COMMANDS, route=LOCAL)
def script_command(conn, argv: list[bytes]) -> bytes | None:
    spec = script_spec(conn, argv)
    keys = spec.keys(argv)
    where = placement(conn, keys)
    if where is None or script_id(argv) in wanderers:
        async def steps(hold) -> bytes:
            return await run_across(hold, conn, spec, argv, keys)
        conn.coordinate(steps)
        return None
    worker, slot = where
    as_user = user_command(conn)
    if len(conn.proxy.links) == 1:          # one worker: nothing to move, no markers but the ACL's
        if as_user is None:
            conn.fanout([(worker, argv, slot)], lambda replies: replies[0])
        else:
            conn.fanout([(worker, as_user, slot), (worker, argv, slot)],
                        lambda replies: unmark(conn, argv, replies[1], worker)[0])
        return None
    entry = conn.hold_place()
    target = ScriptReply(conn, entry, spec, argv, keys, worker)
    if as_user is None:
        conn.send_alone(worker, argv, slot, 0, target)
    else:
        send_as_user(conn, worker, as_user, argv, slot, target)
    return None


def send_as_user(conn, worker: int, as_user: list[bytes], argv: list[bytes], slot: int, target) -> None:
    """The script in a frame of its own after its `__script_user` (whose reply is dropped)."""
    from .server import Entry, FrameBuilder
    b = FrameBuilder(0)
    for command in (as_user, argv):
        b.add_extra(command, slot)
        b.runs.append(1)
    proxy = conn.proxy
    bid = proxy.take_batch_id()
    proxy.send_frame(worker, bid, b.build(None, bid, conn.id, conn.db, conn.proto), conn, [Entry(), target])


def script_in_transaction(conn, argv: list[bytes]):
    """EXEC's plan for a script: the same choice, inside the transaction's hold."""
    spec = script_spec(conn, argv)
    keys = spec.keys(argv)
    where = placement(conn, keys)

    async def steps(hold) -> bytes:
        if where is not None and script_id(argv) not in wanderers:
            worker, slot = where
            as_user = user_command(conn)     # the user at EXEC
            if as_user is None:
                (reply,) = await hold.run([(worker, argv, slot)])
            else:
                _, reply = await hold.run([(worker, as_user, slot), (worker, argv, slot)])
            reply, moved = unmark(conn, argv, reply, worker)
            if not moved:
                return reply
        return await run_across(hold, conn, spec, argv, keys)
    return steps


for _name in SCRIPT_COMMANDS:
    PLANNERS[_name] = script_in_transaction


# -- SCRIPT and FUNCTION subcommands that concern every worker -------------------------------

def same_everywhere(replies: list[bytes]) -> bytes:
    """Every worker did the same: its reply (the first error if one failed)."""
    for reply in replies:
        if reply[:1] == b"-":
            return reply
    return replies[0]


def busy_answer(replies: list[bytes]) -> bytes:
    """SCRIPT KILL / FUNCTION KILL: the busy worker's answer, else NOTBUSY."""
    for reply in replies:
        if not reply.startswith(b"-NOTBUSY"):
            return reply
    return replies[0]


def running_stats(replies: list[bytes]) -> bytes:
    """FUNCTION STATS: the worker running a function says so (or that an EVAL is busy)."""
    for reply in replies:
        if reply[:1] == b"-":
            return reply
    for reply in replies:
        head = reply.find(b"running_script\r\n")
        if head >= 0 and reply[head + 16:head + 19] not in (b"$-1", b"_\r\n"):
            return reply
    return replies[0]


def on_every_worker(names: tuple[str, ...], merge, after=None) -> None:
    def handler(conn, argv: list[bytes]) -> None:
        if after is not None:
            after(argv)
        to_all(conn, argv, merge)
        return None

    def planner(conn, argv: list[bytes]) -> Parts:
        if after is not None:
            after(argv)
        return Parts(every_worker(conn, argv), merge)
    for name in names:
        proxy_command(name, route=LOCAL)(handler)
        PLANNERS[name] = planner


def forget_local_scripts(argv: list[bytes]) -> None:
    scripting.flush_scripts()


on_every_worker(("script|load", "function|load", "function|delete", "function|flush", "function|restore"),
                same_everywhere)
on_every_worker(("script|flush",), same_everywhere, forget_local_scripts)
on_every_worker(("script|kill", "function|kill"), busy_answer)
on_every_worker(("function|stats",), running_stats)
