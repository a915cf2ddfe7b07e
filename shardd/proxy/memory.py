"""MEMORY (USAGE, STATS, DOCTOR, MALLOC-STATS, PURGE, HELP) and the INFO memory section.

used_memory is the workers' own account of what their data holds (shardd/worker/memsize.py),
plus the startup share each worker counts; RSS (the workers' resident memory, which never
shrinks) is reported beside it, not instead of it. maxmemory is split evenly between workers.
"""
from __future__ import annotations

import pickle

import psutil

from .. import errors, resp
from ..commands import COMMANDS
from ..errors import CommandError
from ..commands import proxy_command
from .fanout import PLANNERS, Parts, all_ok, every_worker, first_reply, run_plan, shard_of
from .replies import decode_or_raise

MEMORY_HELP = [
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]
NO_MALLOC_STATS = b"Stats not supported for the current allocator"
MB = 1024 * 1024


def human_bytes(n: float) -> str:
    """bytesToHuman."""
    n = float(n)
    for unit, size in (("B", 1), ("K", 1024), ("M", 1024 ** 2), ("G", 1024 ** 3), ("T", 1024 ** 4),
                       ("P", 1024 ** 5)):
        if n < size * 1024 or unit == "P":
            return f"{int(n)}B" if unit == "B" else f"{n / size:.2f}{unit}"
    return f"{n:.2f}B"


def total_system_memory() -> int:
    try:
        return psutil.virtual_memory().total
    except Exception:
        return 0


class Overview:
    """The server's memory from every worker's figures (getMemoryOverheadData)."""

    def __init__(self, workers: list[dict]) -> None:
        def total(name: str) -> int:
            return int(sum(w.get(name, 0) for w in workers))
        self.used = total("used_memory")
        self.startup = total("used_memory_startup")
        self.peak = max(total("used_memory_peak"), self.used)
        self.rss = total("rss")
        self.rss_growth = max(self.rss - total("rss_baseline"), 0)
        self.keys = total("keys")
        self.evicted = total("evicted_keys")
        self.dbs: dict[int, tuple[int, int]] = {}
        for w in workers:
            for name, value in w.items():
                if name.startswith("db") and name.endswith("_overhead_main"):
                    index = int(name[2:-len("_overhead_main")])
                    main, expires = self.dbs.get(index, (0, 0))
                    self.dbs[index] = (main + int(value), expires + int(w.get(f"db{index}_overhead_expires", 0)))
        def everywhere(name: str) -> int:
            """Scripts and libraries are loaded on every worker: one worker's figure is the server's."""
            return max((int(w.get(name, 0)) for w in workers), default=0)
        self.cached_scripts = everywhere("cached_scripts")
        self.scripts_bytes = everywhere("scripts_bytes")
        self.functions = everywhere("functions")
        self.libraries = everywhere("libraries")
        self.functions_bytes = everywhere("functions_bytes")
        self.scripts_memory = self.scripts_bytes + self.functions_bytes
        self.overhead = self.startup + sum(main + expires for main, expires in self.dbs.values())
        self.dataset = max(self.used - self.overhead, 0)
        net = self.used - self.startup if self.used > self.startup else 1
        self.dataset_perc = self.dataset * 100 / net
        self.peak_perc = self.used * 100 / self.peak if self.peak else 100.0
        self.frag = self.rss / self.used if self.used else 0.0
        self.frag_bytes = self.rss - self.used


def own_clients_memory(proxy) -> int:
    """What this proxy's clients hold (CLIENT LIST's tot-mem, summed)."""
    from .connection import client_memory
    return sum(client_memory(c) for c in proxy.clients.values())


def clients_memory(proxy) -> int:
    """mem_clients_normal, server-wide: this proxy's clients now, the other proxies' as they
    published them (once a second)."""
    field = proxy.STAT_FIELDS.index("mem_clients_normal")
    others = sum(view[field] for i, view in enumerate(proxy.info["proxy_stats"]) if i != proxy.index)
    return own_clients_memory(proxy) + others


def memory_lines(proxy, workers: list[dict]) -> list[str]:
    """INFO memory with Valkey 8's field names, then one line per worker."""
    o = Overview(workers)
    cfg = proxy.config.values
    maxmem = cfg.get("maxmemory", 0)
    system = total_system_memory()
    lines = [
        f"used_memory:{o.used}", f"used_memory_human:{human_bytes(o.used)}",
        f"used_memory_rss:{o.rss}", f"used_memory_rss_human:{human_bytes(o.rss)}",
        f"used_memory_peak:{o.peak}", f"used_memory_peak_human:{human_bytes(o.peak)}",
        f"used_memory_peak_perc:{o.peak_perc:.2f}%", f"used_memory_overhead:{o.overhead}",
        f"used_memory_startup:{o.startup}", f"used_memory_dataset:{o.dataset}",
        f"used_memory_dataset_perc:{o.dataset_perc:.2f}%",
        f"allocator_allocated:{o.used}", f"allocator_active:{o.used}", f"allocator_resident:{o.rss}",
        "allocator_muzzy:0", f"total_system_memory:{system}", f"total_system_memory_human:{human_bytes(system)}",
        "used_memory_lua:0", "used_memory_vm_eval:0", "used_memory_lua_human:0B",
        f"used_memory_scripts_eval:{o.scripts_bytes}", f"number_of_cached_scripts:{o.cached_scripts}",
        f"number_of_functions:{o.functions}", f"number_of_libraries:{o.libraries}",
        "used_memory_vm_functions:0", "used_memory_vm_total:0", "used_memory_vm_total_human:0B",
        f"used_memory_functions:{o.functions_bytes}", f"used_memory_scripts:{o.scripts_memory}",
        f"used_memory_scripts_human:{human_bytes(o.scripts_memory)}",
        f"maxmemory:{maxmem}", f"maxmemory_human:{human_bytes(maxmem)}",
        f"maxmemory_policy:{cfg.get('maxmemory-policy', 'noeviction')}",
        "allocator_frag_ratio:1.00", "allocator_frag_bytes:0",
        f"allocator_rss_ratio:{o.frag:.2f}", f"allocator_rss_bytes:{o.frag_bytes}",
        "rss_overhead_ratio:1.00", "rss_overhead_bytes:0",
        f"mem_fragmentation_ratio:{o.frag:.2f}", f"mem_fragmentation_bytes:{o.frag_bytes}",
        "mem_not_counted_for_evict:0", "mem_replication_backlog:0", "mem_total_replication_buffers:0",
        "mem_clients_slaves:0", f"mem_clients_normal:{clients_memory(proxy)}", "mem_cluster_links:0", "mem_aof_buffer:0",
        "mem_allocator:libc", "mem_overhead_db_hashtable_rehashing:0", "active_defrag_running:0",
        "lazyfree_pending_objects:0", "lazyfreed_objects:0",
    ]
    for w in sorted(workers, key=lambda x: x.get("shard", 0)):
        lines.append(f"shard{int(w.get('shard', 0))}_memory:used_memory={int(w.get('used_memory', 0))},"
                     f"used_memory_rss={int(w.get('rss', 0))},used_memory_peak={int(w.get('used_memory_peak', 0))},"
                     f"maxmemory={int(w.get('maxmemory_share', 0))},evicted_keys={int(w.get('evicted_keys', 0))}")
    return lines


def stats_reply(workers: list[dict], proto: int) -> bytes:
    """MEMORY STATS: Valkey's 31 fields plus one map per db."""
    o = Overview(workers)
    items: list[tuple[bytes, bytes]] = []

    def put(name: str, value: bytes) -> None:
        items.append((resp.bulk(name.encode()), value))
    for name, value in (("peak.allocated", o.peak), ("total.allocated", o.used), ("startup.allocated", o.startup),
                        ("replication.backlog", 0), ("clients.slaves", 0), ("clients.normal", 0),
                        ("cluster.links", 0), ("aof.buffer", 0), ("lua.caches", 0), ("functions.caches", 0)):
        put(name, resp.integer(value))
    for index, (main, expires) in sorted(o.dbs.items()):
        put(f"db.{index}", resp.map_header(2, proto) + resp.bulk(b"overhead.hashtable.main") + resp.integer(main)
            + resp.bulk(b"overhead.hashtable.expires") + resp.integer(expires))
    for name, value in (("overhead.db.hashtable.lut", 0), ("overhead.db.hashtable.rehashing", 0),
                        ("overhead.total", o.overhead), ("db.dict.rehashing.count", 0), ("keys.count", o.keys),
                        ("keys.bytes-per-key", o.dataset // o.keys if o.keys else 0), ("dataset.bytes", o.dataset)):
        put(name, resp.integer(value))
    put("dataset.percentage", resp.double(o.dataset_perc, proto))
    put("peak.percentage", resp.double(o.peak_perc, proto))
    for name, value in (("allocator.allocated", o.used), ("allocator.active", o.used),
                        ("allocator.resident", o.rss), ("allocator.muzzy", 0)):
        put(name, resp.integer(value))
    put("allocator-fragmentation.ratio", resp.double(1.0, proto))
    put("allocator-fragmentation.bytes", resp.integer(0))
    put("allocator-rss.ratio", resp.double(o.frag, proto))
    put("allocator-rss.bytes", resp.integer(o.frag_bytes))
    put("rss-overhead.ratio", resp.double(1.0, proto))
    put("rss-overhead.bytes", resp.integer(0))
    put("fragmentation", resp.double(o.frag, proto))
    put("fragmentation.bytes", resp.integer(o.frag_bytes))
    return resp.map_header(len(items), proto) + b"".join(k + v for k, v in items)


DOCTOR_EMPTY = ("Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used "
                "in these conditions. Please, leave for your mission on Earth and fill it with some data. The new "
                "Sam and I will be back to our programming as soon as I finished rebooting.\n")
DOCTOR_FINE = ("Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on "
               "this base.\n")
DOCTOR_PEAK = (" * Peak memory: In the past this instance used more than 150% the memory that is currently using. "
               "The allocator is normally not able to release memory after a peak, so you can expect to see a big "
               "fragmentation ratio, however this is actually harmless and is only due to the memory peak, and if the "
               "Valkey instance Resident Set Size (RSS) is currently bigger than expected, the memory will be used as "
               "soon as you fill the Valkey instance with more data. If the memory peak was only occasional and you "
               "want to try to reclaim memory, please try the MEMORY PURGE command, otherwise the only other option "
               "is to shutdown and restart the instance.\n\n")
DOCTOR_FRAG = (" * High total RSS: This instance has a memory fragmentation and RSS overhead greater than 1.4 (this "
               "means that the Resident Set Size of the Valkey process is much larger than the sum of the logical "
               "allocations Valkey performed). This problem is usually due either to a large peak memory (check if "
               "there is a peak memory entry above in the report) or may result from a workload that causes the "
               "allocator to fragment memory a lot. If the problem is a large peak memory, then there is no issue. "
               "Otherwise, make sure you are using the Jemalloc allocator and not the default libc malloc. Note: The "
               "currently used allocator is \"libc\".\n\n")


def doctor_report(workers: list[dict]) -> str:
    """getMemoryDoctorReport. Fragmentation compares the workers' RSS growth since they started
    (the interpreter's own pages aside) with what their data holds."""
    o = Overview(workers)
    if o.used < 5 * MB:
        return DOCTOR_EMPTY
    issues = []
    if o.peak / o.used > 1.5:
        issues.append(DOCTOR_PEAK)
    data = max(o.used - o.startup, 1)
    if o.rss_growth / data > 1.4 and o.rss_growth - data > 10 * MB:
        issues.append(DOCTOR_FRAG)
    if not issues:
        return DOCTOR_FINE
    return ("Sam, I detected a few issues in this Valkey instance memory implants:\n\n" + "".join(issues)
            + "I'm here to keep you safe, Sam. I want to help you.\n")


def worker_stats(replies: list[bytes]) -> list[dict]:
    return [pickle.loads(decode_or_raise(r)) for r in replies]


def memory_plan(conn, argv: list[bytes]):
    """MEMORY: USAGE on the key's worker, STATS/DOCTOR/PURGE on every worker."""
    sub = argv[1].decode("utf-8", "replace").lower()
    spec = COMMANDS["memory"].subcommands.get(sub)
    if spec is None:
        raise CommandError(errors.unknown_subcommand(argv[1], "MEMORY"))
    if not spec.arity_ok(len(argv)):
        raise CommandError(errors.wrong_arity(spec.name))
    proto = conn.proto
    if sub == "usage":
        w, slot = shard_of(conn, argv[2])
        return Parts([(w, [b"MEMORY", *argv[1:]], slot)], first_reply)
    if sub == "stats":
        return Parts(every_worker(conn, [b"__memory", b"stats"]),
                     lambda replies: stats_reply(worker_stats(replies), proto))
    if sub == "doctor":
        return Parts(every_worker(conn, [b"__memory", b"stats"]),
                     lambda replies: resp.verbatim(doctor_report(worker_stats(replies)).encode(), proto))
    if sub == "purge":
        return Parts(every_worker(conn, [b"__memory", b"purge"]), all_ok)
    if sub == "malloc-stats":
        return resp.bulk(NO_MALLOC_STATS)
    from .slowlog import help_reply
    return help_reply("MEMORY", MEMORY_HELP)


PLANNERS["memory"] = memory_plan      # MULTI/EXEC plans it like any fan-out


@proxy_command("memory")
def memory(conn, argv: list[bytes]) -> bytes | None:
    """MEMORY's workers answer with no hold: figures, not data, need no consistency."""
    try:
        plan = memory_plan(conn, argv)
    except CommandError as exc:
        return resp.error(str(exc))
    return run_plan(conn, plan, atomic=False)
