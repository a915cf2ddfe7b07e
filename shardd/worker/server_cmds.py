"""Worker-side halves of server commands: its share of INFO, and CONFIG SET applied here."""
from __future__ import annotations

import os
import resource

import psutil

from .. import resp
from ..commands import worker_command
from ..errors import CommandError
from .context import Ctx

_counters = ("hits", "misses", "expired")
_process: psutil.Process | None = None
_baseline_rss = 0


def worker_process() -> psutil.Process:
    """This worker's process (made in the worker: the module is imported before the fork).
    Its RSS at first use is the baseline: used_memory is what grew since (until the memory
    issue brings a per-value account)."""
    global _process, _baseline_rss
    if _process is None or _process.pid != os.getpid():
        _process = psutil.Process()
        _baseline_rss = _process.memory_info().rss
    return _process


@worker_command("info")
def info(ctx: Ctx, argv: list[bytes]) -> bytes:
    """This worker's figures, as a flat map the proxy sums and formats."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = worker_process().memory_info().rss
    fields: dict[str, int | float] = {
        "pid": os.getpid(),
        "shard": ctx.shard,
        "keys": sum(db.size for db in ctx.dbs),
        "keyspace_hits": sum(db.hits for db in ctx.dbs),
        "keyspace_misses": sum(db.misses for db in ctx.dbs),
        "expired_keys": sum(db.expired for db in ctx.dbs),
        "used_cpu_sys": usage.ru_stime,
        "used_cpu_user": usage.ru_utime,
        "maxrss": usage.ru_maxrss * 1024,
        "rss": rss,
        "used_memory": max(rss - _baseline_rss, 0) + 1024 * 1024,
    }
    for db in ctx.dbs:
        if db.size:
            fields[f"db{db.index}_keys"] = db.size
            fields[f"db{db.index}_expires"] = db.volatile
    flat = []
    for name, value in fields.items():
        flat.append(resp.bulk(name.encode()))
        flat.append(resp.bulk(repr(value).encode()))
    return resp.array(flat)


@worker_command("config|set")
def config_set(ctx: Ctx, argv: list[bytes]) -> bytes:
    config = ctx.stats["worker"].config
    args = [a.decode("utf-8", "surrogateescape") for a in argv[2:]]
    try:
        config.config_set(list(zip(args[::2], args[1::2])))
    except Exception as exc:  # the proxy validated it already; report, don't crash
        raise CommandError(str(exc))
    return resp.OK


@worker_command("config|resetstat")
def config_resetstat(ctx: Ctx, argv: list[bytes]) -> bytes:
    for db in ctx.dbs:
        for name in _counters:
            setattr(db, name, 0)
    return resp.OK
