"""SAVE, BGSAVE, LASTSAVE, SHUTDOWN's save, and save points: snapshots of every shard at one
point in time (worker/persistence.py writes each shard's file).

SAVE and BGSAVE run on every worker as one plan: with several workers the coordinator holds
them all, so every shard snapshots (or forks) at the same point of the command order. Proxy 0
checks the `save <seconds> <changes>` points once a second and records the shard layout
(`shards.map`) once every shard's save of it has succeeded.
"""
from __future__ import annotations

import time

from .. import errors, log, resp
from ..commands import proxy_command
from ..persist import files
from .fanout import Parts, every_worker, run_plan
from .replies import decode_or_raise

SHUTDOWN_SAVE_FAILED = "ERR Errors trying to SHUTDOWN. Check logs."


def worker_replies_ok(replies: list[bytes], ok: bytes) -> bytes:
    """The first error of any worker, else `ok`."""
    for reply in replies:
        decode_or_raise(reply)
    return ok


def save_plan(conn, after=None) -> Parts:
    proxy = conn.proxy

    def merge(replies: list[bytes]) -> bytes:
        reply = worker_replies_ok(replies, resp.OK)
        record_layout(proxy)
        return reply if after is None else after(reply)
    return Parts(every_worker(conn, [b"__save"]), merge)


def record_layout(proxy) -> None:
    """Every shard saved: the files in dir are this layout's (stale shards' files go)."""
    values = proxy.config.values
    try:
        files.write_map(values["dir"], values["dbfilename"], proxy.info["slot_ranges"])
        files.remove_stale_shard_files(values["dir"], values["dbfilename"], len(proxy.links))
    except OSError as exc:
        log.log("warning", f"Could not write the shard map: {exc}")


@proxy_command("save")
def save(conn, argv: list[bytes]) -> bytes | None:
    return run_plan(conn, save_plan(conn))


@proxy_command("bgsave")
def bgsave(conn, argv: list[bytes]) -> bytes | None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise errors.CommandError(errors.SYNTAX)
    schedule = len(argv) == 2
    state = conn.proxy.snapshots

    def merge(replies: list[bytes]) -> bytes:
        for reply in replies:
            try:
                decode_or_raise(reply)
            except errors.CommandError as exc:
                if schedule and str(exc) == "ERR Background save already in progress":
                    state.scheduled = True
                    return resp.status("Background saving scheduled")
                raise
        state.started()
        return resp.status("Background saving started")
    return run_plan(conn, Parts(every_worker(conn, [b"__bgsave"]), merge))


@proxy_command("bgrewriteaof")
def bgrewriteaof(conn, argv: list[bytes]) -> bytes | None:
    """Every worker rewrites its own AOF (persist/aof.py); no hold: each shard's AOF stays
    complete whenever its rewrite happens."""
    def merge(replies: list[bytes]) -> bytes:
        busy = 0
        scheduled = False
        for reply in replies:
            try:
                answer = decode_or_raise(reply)
            except errors.CommandError as exc:
                if str(exc) != "ERR Background append only file rewriting already in progress":
                    raise
                busy += 1
                continue
            scheduled = scheduled or b"scheduled" in answer
        if busy == len(replies):
            raise errors.CommandError("ERR Background append only file rewriting already in progress")
        if scheduled:
            return resp.status("Background append only file rewriting scheduled")
        return resp.status("Background append only file rewriting started")
    return run_plan(conn, Parts(every_worker(conn, [b"__bgrewriteaof"]), merge), atomic=False)


@proxy_command("lastsave")
def lastsave(conn, argv: list[bytes]) -> bytes | None:
    def merge(replies: list[bytes]) -> bytes:
        times = [dict(zip(*[iter(decode_or_raise(r))] * 2))[b"rdb_last_save_time"] for r in replies]
        return resp.integer(min(int(t) for t in times))
    return run_plan(conn, Parts(every_worker(conn, [b"__persistence"]), merge), atomic=False)


class Snapshots:
    """Proxy 0's watch over background saves and save points."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.scheduled = False
        self.in_progress = False
        self.last_try = 0.0

    def started(self) -> None:
        self.in_progress = True

    def tick(self) -> None:
        """Once a second: ask the workers how far they are, then act on it."""
        if self.proxy.index != 0:
            return
        conn = self.proxy.internal_client()
        conn.fanout(every_worker(conn, [b"__persistence"]), self.on_status)
        conn.send_frames()

    def on_status(self, replies: list[bytes]) -> bytes:
        status = [dict(zip(*[iter(decode_or_raise(r))] * 2)) for r in replies]
        busy = any(int(s[b"rdb_bgsave_in_progress"]) for s in status)
        if self.in_progress and not busy:
            self.in_progress = False
            if all(int(s[b"rdb_last_bgsave_ok"]) for s in status):
                record_layout(self.proxy)
        if busy:
            return resp.OK
        if self.scheduled or self.save_point_reached(status):
            self.scheduled = False
            self.start_bgsave()
        return resp.OK

    def save_point_reached(self, status: list[dict]) -> bool:
        points = self.proxy.config.values.get("save") or []
        if not points:
            return False
        changes = sum(int(s[b"rdb_changes_since_last_save"]) for s in status)
        last = min(int(s[b"rdb_last_save_time"]) for s in status)
        ok = all(int(s[b"rdb_last_bgsave_ok"]) for s in status)
        now = time.time()
        # After a failed save, wait CONFIG_BGSAVE_RETRY_DELAY (5 s) before trying again.
        if not ok and now - self.last_try < 5:
            return False
        return any(changes >= n and now - last > seconds for seconds, n in save_points(points))

    def start_bgsave(self) -> None:
        self.last_try = time.time()
        conn = self.proxy.internal_client()
        log.log("notice", "Background saving started by the save points")

        def merge(replies: list[bytes]) -> bytes:
            self.in_progress = True
            return resp.OK
        run_plan(conn, Parts(every_worker(conn, [b"__bgsave"]), merge))


def save_points(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The `save` config: (seconds, changes) pairs."""
    return [(int(seconds), int(changes)) for seconds, changes in points]


def shutdown_saving(conn, flags: set[bytes]) -> bytes | None:
    """SHUTDOWN: save first (SAVE, or save points set and not NOSAVE), then stop; a failed
    save keeps the server running unless FORCE. Only NOSAVE stops a server whose worker runs
    a script past busy-reply-threshold (that worker's BUSY is the reply), as in Valkey."""
    if b"NOSAVE" in flags:
        stop_after_reply(conn)
        return None
    values = conn.proxy.config.values
    saving = b"SAVE" in flags or bool(values.get("save"))
    ranges = conn.proxy.info["slot_ranges"]

    async def steps(hold) -> bytes:
        # A busy worker's script hook answers any command BUSY; __dirty only reads.
        probes = await hold.run([(w, [b"__dirty"], lo) for w, (lo, _) in enumerate(ranges)])
        busy = next((reply for reply in probes if reply.startswith(b"-BUSY")), None)
        if busy is not None:
            return busy
        if not saving:
            stop_after_reply(conn)
            return b""
        log.log("notice", "Saving the final RDB snapshot before exiting.")
        replies = await hold.run(every_worker(conn, [b"__save"]))
        try:
            worker_replies_ok(replies, resp.OK)
        except errors.CommandError:
            if b"FORCE" not in flags:
                log.log("warning", "Error trying to save the DB, can't exit.")
                return resp.error(SHUTDOWN_SAVE_FAILED)
        record_layout(conn.proxy)
        stop_after_reply(conn)
        return b""
    return run_plan(conn, steps)


def stop_after_reply(conn) -> None:
    """The server stops; this client's connection closes once its replies are out."""
    conn.proxy.request_shutdown(save=False)
    conn.closing = True
