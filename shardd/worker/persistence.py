"""A worker's RDB snapshots: loading its part of the data at start, SAVE, BGSAVE (a fork of
this worker writing while the worker serves), and the state INFO persistence reports.

The proxy runs SAVE and BGSAVE on every worker inside one all-shards hold, so the files are
one point in time; it writes `shards.map` once every worker has saved (proxy/persistence.py).
"""
from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from .. import log, resp
from ..commands import internal_command
from ..errors import CommandError
from ..persist import files, rdb
from ..process import reap, run_forked
from ..slots import keyslot
from . import functions, keyspace
from .context import Ctx

BGSAVE_IN_PROGRESS = "ERR Background save already in progress"
LOADING_BATCH = 4096       # keys loaded between two looks at the rings
MISCONF = ("MISCONF Valkey is configured to save RDB snapshots, but it's currently unable to persist "
           "to disk. Commands that may modify the data set are disabled, because this instance is "
           "configured to report errors during writes if RDB snapshotting fails "
           "(stop-writes-on-bgsave-error option). Please check the Valkey logs for details about "
           "the RDB error.")


def debug_delay(usec: int) -> None:
    """Valkey's debugDelay, for key-load-delay (a testing aid): sleep usec µs per key; a
    negative value sleeps 1 µs once in -usec keys."""
    if usec < 0:
        usec = 1 if random.randrange(-usec) == 0 else 0
    if usec:
        time.sleep(usec / 1e6)


class LoadError(Exception):
    pass


class Persistence:
    def __init__(self, worker) -> None:
        self.worker = worker
        self.config = worker.config.values
        self.last_save = int(time.time())
        self.last_ok = True
        self.child = 0
        self.child_started = 0.0
        self.changes_at_fork = 0
        self.saved_changes = 0          # changes counted up to the last good snapshot
        self.last_duration = -1
        self.saves = 0
        self.loading = False
        self.load_total = 0           # bytes of the files being loaded
        self.load_done = 0

    # -- files ---------------------------------------------------------------------------
    def path(self) -> str:
        return os.path.join(self.config["dir"], files.shard_file_name(self.config["dbfilename"], self.worker.shard))

    def changes(self) -> int:
        return sum(db.changes for db in self.worker.dbs)

    def write_snapshot(self, stream) -> None:
        cfg = self.config
        low, high = cfg["__slot_range__"]
        writer = rdb.RdbWriter(stream, compress=cfg.get("rdbcompression", True),
                               checksum=cfg.get("rdbchecksum", True), fill=cfg.get("list-max-listpack-size", -2))
        writer.start({b"shardd-shard": self.worker.shard, b"shardd-shards": self.worker.n_shards,
                      b"shardd-slots": f"{low}-{high}"})
        for code in functions.library_codes():
            writer.function(code)
        for db in self.worker.dbs:
            rdb.write_db(writer, db)
        writer.finish()

    # -- SAVE / BGSAVE ---------------------------------------------------------------------
    def save(self) -> bytes:
        if self.child:
            raise CommandError(BGSAVE_IN_PROGRESS)
        started, changes = time.time(), self.changes()
        try:
            files.write_atomically(self.path(), self.write_snapshot)
        except OSError as exc:
            log.log("warning", f"Failed saving the DB: {exc}")
            self.last_ok = False
            raise CommandError("ERR") from None
        self.finished(True, started, changes)
        return resp.OK

    def bgsave(self) -> bytes:
        if self.child:
            raise CommandError(BGSAVE_IN_PROGRESS)
        self.changes_at_fork = self.changes()
        self.child_started = time.time()
        self.child = run_forked(lambda: files.write_atomically(self.path(), self.write_snapshot),
                                "Background save")
        return resp.status("Background saving started")

    def tick(self) -> None:
        """Reap a finished BGSAVE child (the worker's timer calls this)."""
        if not self.child:
            return
        outcome = reap(self.child)
        if outcome is None:
            return
        self.child = 0
        ok = outcome[0]
        if ok:
            log.log("notice", "Background saving terminated with success")
        else:
            log.log("warning", "Background saving error")
        self.finished(ok, self.child_started, self.changes_at_fork)

    def finished(self, ok: bool, started: float, changes: int) -> None:
        self.last_ok = ok
        self.last_duration = int(time.time() - started)
        if ok:
            self.last_save = int(time.time())
            self.saved_changes = changes
            self.saves += 1

    def refuses_writes(self) -> bool:
        """MISCONF: the last save failed, save points are set and the config says stop."""
        return (not self.last_ok and bool(self.config.get("save"))
                and self.config.get("stop-writes-on-bgsave-error", True))

    def kill_child(self) -> None:
        if self.child:
            try:
                os.kill(self.child, signal.SIGKILL)
                os.waitpid(self.child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.child = 0

    def status(self) -> dict[str, Any]:
        now = time.time()
        return self.worker.aof.status() | {
            "rdb_changes_since_last_save": self.changes() - self.saved_changes,
            "rdb_bgsave_in_progress": 1 if self.child else 0,
            "rdb_last_save_time": self.last_save,
            "rdb_last_bgsave_ok": 1 if self.last_ok else 0,
            "rdb_last_bgsave_time_sec": self.last_duration,
            "rdb_current_bgsave_time_sec": int(now - self.child_started) if self.child else -1,
            "rdb_saves": self.saves,
            "loading": 1 if self.loading else 0,
            "loading_loaded_perc": round(100.0 * self.load_done / self.load_total, 2) if self.load_total else 0.0,
        }

    # -- loading ---------------------------------------------------------------------------
    def own_file_fits(self, path: str) -> bool:
        """Our own shard file, written by a shard with our slots in a layout of our size."""
        if not os.path.exists(path):
            return False
        low, high = self.config["__slot_range__"]
        try:
            with open(path, "rb") as stream:
                reader = rdb.load(stream, self.config)
                next(iter(reader), None)        # the AUX fields come before the first key
                aux = reader.aux
        except (rdb.RdbError, OSError):
            return True            # the load itself reports what is wrong with it
        return (aux.get(b"shardd-slots") == f"{low}-{high}".encode()
                and aux.get(b"shardd-shards") == str(self.worker.n_shards).encode())

    def sources(self) -> list[tuple[str, bool]]:
        """The files this worker loads, oldest first, and whether to keep only its slots: its
        own file when a layout like ours wrote it; else every shard file and a foreign
        dump.rdb (a Redis dump, or files of another worker count), filtered by slot."""
        directory, name = self.config["dir"], self.config["dbfilename"]
        own = os.path.join(directory, files.shard_file_name(name, self.worker.shard))
        if self.own_file_fits(own):
            return [(own, False)]
        found = [os.path.join(directory, name)]
        shard = 0
        while os.path.exists(path := os.path.join(directory, files.shard_file_name(name, shard))):
            found.append(path)
            shard += 1
        found = [p for p in found if os.path.exists(p)]
        found.sort(key=lambda p: os.stat(p).st_mtime)
        return [(p, True) for p in found]

    def load(self) -> None:
        """Load this worker's keys; LoadError (naming the file and offset) on a bad file."""
        low, high = self.config["__slot_range__"]
        dbs = self.worker.dbs
        sources = self.sources()
        self.loading = True
        self.load_total = sum(os.path.getsize(path) for path, _ in sources)
        try:
            for path, filtered in sources:
                self.load_file(path, filtered, low, high, dbs)
        finally:
            self.loading = False
        for db in dbs:
            db.changes = 0

    def load_file(self, path: str, filtered: bool, low: int, high: int, dbs: list) -> None:
        """Load one file; every LOADING_BATCH keys, the clients waiting meanwhile get -LOADING."""
        done_before = self.load_done
        if True:
            started = time.time()
            loaded = 0
            keyspace.refresh_clock()
            now = keyspace.now_ms
            delay = self.config.get("key-load-delay", 0)
            try:
                with open(path, "rb") as stream:
                    reader = rdb.load(stream, self.config)
                    for index, key, value, when in reader:
                        if delay:
                            debug_delay(delay)
                        slot = keyslot(key)
                        if filtered and not low <= slot <= high:
                            continue
                        if when is not None and when <= now:
                            continue
                        if index >= len(dbs):
                            raise LoadError(f"{path}: the data has db {index}, but databases is {len(dbs)}")
                        dbs[index].store_expiring(key, slot, value, when)
                        loaded += 1
                        if not loaded % LOADING_BATCH:
                            self.load_done = done_before + stream.tell()
                            self.worker.serve_loading()
                    load_functions(reader.functions)
            except rdb.RdbError as exc:
                raise LoadError(f"Bad RDB file {path}: {exc}") from None
            except OSError as exc:
                raise LoadError(f"Cannot read RDB file {path}: {exc}") from None
            log.log("notice", f"Done loading RDB {os.path.basename(path)}, keys loaded: {loaded}, "
                              f"elapsed: {time.time() - started:.3f} seconds")
            self.load_done = done_before + os.path.getsize(path)


def load_functions(codes: list[bytes]) -> None:
    """The function libraries a file carries (FUNCTION2), loaded as Valkey does at start."""
    for code in codes:
        try:
            functions.load_library_code(code)
        except CommandError as exc:
            raise LoadError(f"a function library in the file does not load: {exc}") from None


def persistence(ctx: Ctx) -> Persistence:
    return ctx.stats["worker"].persistence


@internal_command("__save", 1)
def save(ctx: Ctx, argv: list[bytes]) -> bytes:
    return persistence(ctx).save()


@internal_command("__bgsave", 1)
def bgsave(ctx: Ctx, argv: list[bytes]) -> bytes:
    return persistence(ctx).bgsave()


@internal_command("__persistence", 1)
def status(ctx: Ctx, argv: list[bytes]) -> bytes:
    """This worker's snapshot state, as a flat map of integers."""
    return resp.encode({k.encode(): v for k, v in persistence(ctx).status().items()}, 2)
