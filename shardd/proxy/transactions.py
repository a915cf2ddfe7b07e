"""MULTI/EXEC/DISCARD/WATCH/UNWATCH.

Commands are queued in the proxy. EXEC of plain commands on one worker is one frame (a frame
runs atomically in its worker); with WATCHes on that worker the frame is GUARDed: the worker
runs nothing if a watched key changed. Anything else (several workers, keys spanning workers,
proxy-local commands) runs under the coordinator: the watched shards are checked and the
commands run inside one hold, so the transaction is atomic as a whole.

Like Valkey's processCommand and execCommand: while a worker a command would touch is out of
memory (evict.py publishes it), MULTI refuses to queue the command (the transaction is then
aborted at EXEC) and EXEC refuses a transaction holding a denyoom command (EXECABORT); and a
client whose user may not run everything has each queued command checked again at EXEC (the
ACL may have changed meanwhile): a refused one answers NOPERM in its place of the EXEC reply.
"""
from __future__ import annotations

from .. import errors, resp
from ..commands import BLOCK, LOCAL, MULTI, SINGLE, CommandSpec, proxy_command
from ..errors import CommandError
from ..frames import ATOMIC, GUARD, NO_REPLY
from ..slots import keyslot
from ..worker.evict import OOM, SCRIPT_COMMANDS, worker_oom
from ..worker.scripting import denies_oom
from .fanout import PLANNERS, Parts, all_ok, first_reply, run_plan, split
from .replies import decode_or_raise

# Commands that act at once inside MULTI instead of being queued.
IMMEDIATE = frozenset(("exec", "discard", "multi", "watch", "quit", "reset"))
EXEC_OOM = "EXECABORT Transaction discarded because of: " + OOM


def out_of_memory(conn, keys: list[bytes]) -> bool:
    """Valkey's out_of_memory for a command with these keys: a worker holding one of them is
    over its share of maxmemory with nothing left to evict (keyless: any worker is)."""
    proxy = conn.proxy
    if not proxy.config.values.get("maxmemory"):
        return False
    links = proxy.links
    if not keys:
        return any(worker_oom(link) for link in links)
    slotmap = proxy.slotmap
    return any(worker_oom(links[slotmap[keyslot(key)]]) for key in keys)


def keys_of(spec: CommandSpec, argv: list[bytes]) -> list[bytes]:
    try:
        return spec.keys(argv)
    except (IndexError, ValueError, CommandError):     # malformed: the command reports it
        return []


def refused_for_oom(conn, queued: list[list[bytes]]) -> bool:
    """EXEC's denyoom check: a queued denyoom command whose worker is out of memory. A
    script is denyoom by its flags (an EVALSHA or FCALL unknown to this proxy is judged by
    its worker, inside the EXEC)."""
    for argv in queued:
        spec = command_spec(conn, argv)
        if spec is None:
            continue
        if "denyoom" not in spec.flags:
            if spec.name not in SCRIPT_COMMANDS or spec.name.startswith("fcall") or not denies_oom(spec, argv):
                continue
        if out_of_memory(conn, keys_of(spec, argv)):
            return True
    return False


def queue(conn, spec: CommandSpec, argv: list[bytes]) -> bytes:
    if spec.subcommands and len(argv) > 1:
        # A container the proxy answers itself (CONFIG, CLIENT …): its subcommand is checked
        # now, as Valkey's processCommand does, so a bad one aborts the transaction.
        sub = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
        if sub is None:
            conn.multi_error = True
            return resp.error(errors.unknown_subcommand(argv[1], spec.name))
        if not sub.arity_ok(len(argv)):
            conn.multi_error = True
            return resp.error(errors.wrong_arity(sub.name))
    if spec.route is SINGLE and spec.worker_handler is None and not spec.subcommands:
        conn.multi_error = True
        return resp.error(errors.unknown_command(argv[0], argv[1:]))
    if "no_multi" in spec.flags:
        conn.multi_error = True
        return resp.error(errors.NOT_IN_MULTI)
    if conn.proxy.config.values.get("maxmemory") and out_of_memory(conn, keys_of(spec, argv)):
        conn.multi_error = True          # queueing takes memory: refused, as Valkey does
        conn.proxy.opstats.rejected(spec)
        return resp.error(OOM)
    conn.multi.append(argv)
    return resp.QUEUED


@proxy_command("multi")
def multi(conn, argv: list[bytes]) -> bytes:
    if conn.multi is not None:
        return resp.error(errors.MULTI_NESTED)
    conn.multi = []
    conn.multi_error = False
    return resp.OK


@proxy_command("discard")
def discard(conn, argv: list[bytes]) -> bytes:
    if conn.multi is None:
        return resp.error(errors.DISCARD_WITHOUT_MULTI)
    end_transaction(conn)
    return resp.OK


def end_transaction(conn) -> None:
    """Forget the queued commands and every WATCH (DISCARD, RESET, disconnection)."""
    conn.multi = None
    conn.multi_error = False
    unwatch_quietly(conn)


@proxy_command("watch")
def watch(conn, argv: list[bytes]) -> bytes | None:
    if conn.multi is not None:
        return resp.error(errors.WATCH_IN_MULTI)
    parts, _ = split(conn, [b"__watch", *argv[1:]])
    conn.watching.update(w for w, _, _ in parts)
    return run_plan(conn, Parts(parts, all_ok), atomic=False)


@proxy_command("unwatch")
def unwatch(conn, argv: list[bytes]) -> bytes:
    unwatch_quietly(conn)
    return resp.OK


def unwatch_quietly(conn) -> None:
    """Drop the client's watches on every worker, expecting no answer."""
    from .server import FrameBuilder
    proxy = conn.proxy
    for w in conn.watching:
        b = FrameBuilder(0, NO_REPLY)
        b.add_extra([b"__unwatch"], 0)
        b.runs.append(1)
        proxy.send_frame(w, 0, b.build(None, 0, conn.id, conn.db, conn.proto), None, None)
    conn.watching = set()


@proxy_command("exec")
def exec_(conn, argv: list[bytes]) -> bytes | None:
    if conn.multi is None:
        return resp.error(errors.EXEC_WITHOUT_MULTI)
    queued, aborted = conn.multi, conn.multi_error
    conn.multi, conn.multi_error = None, False
    watching, conn.watching = conn.watching, set()
    if aborted or (conn.proxy.config.values.get("maxmemory") and refused_for_oom(conn, queued)):
        conn.watching = watching
        unwatch_quietly(conn)
        return resp.error(errors.EXECABORT if aborted else EXEC_OOM)
    if conn.guarded and conn.proxy.acl.exec_denied(conn, queued):
        return run_plan(conn, exec_steps(conn, queued, watching))
    worker = one_worker(conn, queued)
    if worker is not None and queued and watching <= {worker}:
        return exec_in_one_frame(conn, queued, worker, bool(watching))
    if not watching:
        plan = exec_one_round(conn, queued)
        if plan is not None:
            return run_plan(conn, plan)
    return run_plan(conn, exec_steps(conn, queued, watching))


def exec_one_round(conn, queued: list[list[bytes]]) -> Parts | None:
    """A transaction whose commands each take one round: all of them in one frame per worker
    (each worker runs its share in queue order, under the hold), or None."""
    plans = []
    for argv in queued:
        try:
            plan = plan_for(conn, argv)
        except CommandError:
            return None
        if not isinstance(plan, Parts):
            return None
        plans.append(plan)
    proto = conn.proto

    def merge(replies: list[bytes]) -> bytes:
        out, pos = [resp.array_header(len(plans))], 0
        for plan in plans:
            n = len(plan.parts)
            out.append(settle(plan.merge, replies[pos:pos + n]))
            pos += n
        return b"".join(out)
    return Parts([part for plan in plans for part in plan.parts], merge)


def one_worker(conn, queued: list[list[bytes]]) -> int | None:
    """The worker every queued command runs on, when all are plain single-worker commands."""
    worker = None
    for argv in queued:
        spec = command_spec(conn, argv)
        if spec is None:
            return None
        # Multi-key commands (MGET, MSET, DEL …) whose keys are all on one worker run there as
        # they are, like a plain single-worker command: no coordinator.
        if spec.route not in (SINGLE, BLOCK) and (spec.route is not MULTI or spec.worker_handler is None):
            return None
        keys = spec.keys(argv)
        if not keys:
            return None
        for key in keys:
            w = conn.proxy.slotmap[keyslot(key)]
            if worker is None:
                worker = w
            elif w != worker:
                return None
    return worker


def command_spec(conn, argv: list[bytes]) -> CommandSpec | None:
    spec = conn.proxy.lookup(argv[0])
    if spec is not None and spec.subcommands and spec.proxy_handler is None and len(argv) > 1:
        spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
    return spec


def exec_in_one_frame(conn, queued: list[list[bytes]], worker: int, guarded: bool) -> None:
    n = len(queued)
    proto = conn.proto
    parts = [(worker, argv, slot_of(conn, argv)) for argv in queued]

    def merge(replies: list[bytes]) -> bytes:
        if not replies[0]:        # GUARD: a watched key changed, nothing ran
            return resp.null_array(proto)
        return resp.array_header(n) + b"".join(replies)
    conn.fanout(parts, merge, flags=ATOMIC | GUARD if guarded else ATOMIC)
    return None


def slot_of(conn, argv: list[bytes]) -> int:
    keys = command_spec(conn, argv).keys(argv)
    return keyslot(keys[0]) if keys else 0


def exec_steps(conn, queued: list[list[bytes]], watching: set[int]):
    proto = conn.proto
    ranges = conn.proxy.info["slot_ranges"]

    async def steps(hold) -> bytes:
        if watching:
            checks = [(w, [b"__dirty"], ranges[w][0]) for w in sorted(watching)]
            fired = await hold.run(checks)
            await hold.run([(w, [b"__unwatch"], slot) for w, _, slot in checks])
            if any(decode_or_raise(f) for f in fired):
                return resp.null_array(proto)
        replies: list[bytes] = []
        batch: list[tuple[int, Parts]] = []

        async def flush() -> None:
            if not batch:
                return
            flat = [part for _, plan in batch for part in plan.parts]
            results = await hold.run(flat)
            pos = 0
            for index, plan in batch:
                mine = results[pos:pos + len(plan.parts)]
                pos += len(plan.parts)
                replies[index] = settle(plan.merge, mine)
            batch.clear()

        for argv in queued:
            replies.append(b"")
            if conn.guarded:        # the ACL may have changed since it was queued (or in this EXEC)
                denial = conn.proxy.acl.exec_denial(conn, argv)
                if denial is not None:
                    replies[-1] = denial
                    continue
            try:
                plan = plan_for(conn, argv)
            except CommandError as exc:
                replies[-1] = resp.error(str(exc))
                continue
            if isinstance(plan, Parts):
                batch.append((len(replies) - 1, plan))
                continue
            await flush()
            if isinstance(plan, CommandSpec):       # proxy-local: runs now, in order
                replies[-1] = run_local(conn, plan, argv)
            elif isinstance(plan, bytes):
                replies[-1] = plan
            else:
                try:
                    replies[-1] = await plan(hold)
                except CommandError as exc:
                    replies[-1] = resp.error(str(exc))
        await flush()
        return resp.array_header(len(replies)) + b"".join(replies)
    return steps


def settle(merge, replies: list[bytes]) -> bytes:
    try:
        return merge(replies)
    except CommandError as exc:
        return resp.error(str(exc))


def plan_for(conn, argv: list[bytes]):
    """What one queued command becomes inside EXEC: Parts, Steps, bytes, or (local) its spec."""
    spec = command_spec(conn, argv)
    if spec is None:
        raise CommandError(errors.unknown_command(argv[0], argv[1:]))
    single = spec.route is SINGLE or spec.route is BLOCK    # inside EXEC nothing blocks
    if spec.name in PLANNERS and not single:
        return PLANNERS[spec.name](conn, argv)
    if spec.route is LOCAL or spec.proxy_handler is not None and not single:
        return spec
    keys = spec.keys(argv)
    if not keys:
        return Parts([(0, argv, 0)], first_reply)
    slot = keyslot(keys[0])
    worker = conn.proxy.slotmap[slot]
    if any(conn.proxy.slotmap[keyslot(k)] != worker for k in keys[1:]):
        if spec.name not in PLANNERS:
            raise CommandError(errors.CROSS_SHARD)
        return PLANNERS[spec.name](conn, argv)
    return Parts([(worker, argv, slot)], first_reply)


def run_local(conn, spec: CommandSpec, argv: list[bytes]) -> bytes:
    try:
        reply = spec.proxy_handler(conn, argv)
    except CommandError as exc:
        return resp.error(str(exc))
    if reply is None:
        return resp.error(f"ERR '{spec.name}' cannot run inside a transaction in shardd")
    return reply
