"""Worker-side halves of server commands: its share of INFO, and CONFIG SET applied here;
and `OpStats`, the per-process command statistics, slow log and latency events that every
worker and every proxy keeps for the commands it runs (the proxy asked merges them)."""
from __future__ import annotations

import os
import pickle
import resource
import time
from collections import defaultdict, deque

import psutil

from .. import resp
from ..commands import COMMANDS, LOCAL, CommandSpec, internal_command, worker_command
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
        "tracking_total_keys": len(ctx.stats["worker"].events.tracking.table),
        "tracking_total_items": ctx.stats["worker"].events.tracking.items,
        "used_cpu_sys": usage.ru_stime,
        "used_cpu_user": usage.ru_utime,
        "maxrss": usage.ru_maxrss * 1024,
        "rss": rss,
        "rss_baseline": _baseline_rss,
    }
    fields.update(memory_fields(ctx))
    fields.update(ctx.stats["worker"].persistence.status())
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
    worker_opstats(ctx).configure(config.values)
    ctx.stats["worker"].aof.config_changed()    # appendonly on/off takes effect before the reply
    ctx.stats["worker"].events.configure(argv)  # notify-keyspace-events
    from .evict import config_changed
    config_changed(ctx.stats["worker"])         # maxmemory, its policy, LFU parameters
    return resp.OK


# -- memory: INFO's figures, MEMORY's worker halves --------------------------------------------

def memory_fields(ctx: Ctx) -> dict[str, int | float]:
    """This worker's memory by its own account (memsize.py), its share of maxmemory, evictions."""
    from .memsize import EXPIRE_OVERHEAD, KEY_OVERHEAD
    memory = ctx.stats["worker"].memory
    used = memory.used()
    total_exceeded, current_exceeded = memory.exceeded_time_ms()
    fields: dict[str, int | float] = {
        "used_memory": used, "used_memory_peak": memory.peak, "used_memory_startup": memory.startup,
        "maxmemory_share": memory.limit, "evicted_keys": memory.evicted,
        "total_eviction_exceeded_time": total_exceeded, "current_eviction_exceeded_time": current_exceeded,
    }
    from . import functions, scripting
    # Every worker holds every script and library (loaded everywhere): the proxy shows one's.
    fields["cached_scripts"] = len(scripting.SCRIPTS)
    fields["scripts_bytes"] = sum(len(script.body) for script in scripting.SCRIPTS.values())
    fields["functions"] = len(functions.CURRENT.functions)
    fields["libraries"] = len(functions.CURRENT.libraries)
    fields["functions_bytes"] = sum(len(library.code) for library in functions.CURRENT.libraries.values())
    for db in ctx.dbs:
        if db.size or db.used:
            fields[f"db{db.index}_overhead_main"] = db.size * KEY_OVERHEAD
            fields[f"db{db.index}_overhead_expires"] = db.volatile * EXPIRE_OVERHEAD
            fields[f"db{db.index}_key_bytes"] = db.used
    return fields


@worker_command("memory|usage")
def memory_usage(ctx: Ctx, argv: list[bytes]) -> bytes:
    """MEMORY USAGE key [SAMPLES count]: the key's bytes by the worker's account."""
    from .memsize import key_size, value_size
    from ..numbers import string2ll
    from .. import errors
    samples = 5                               # OBJ_COMPUTE_SIZE_DEF_SAMPLES
    j = 3
    while j < len(argv):
        if argv[j].lower() == b"samples" and j + 1 < len(argv):
            value = string2ll(argv[j + 1])
            if value is None:
                raise CommandError(errors.NOT_INTEGER)
            if value < 0:
                raise CommandError(errors.SYNTAX)
            samples = value            # 0: every element
            j += 2
        else:
            raise CommandError(errors.SYNTAX)
    key = argv[2]
    value = ctx.db.peek(key, ctx.slot)
    if value is None:
        return resp.null(ctx.proto)
    from .memsize import EXPIRE_OVERHEAD
    size = key_size(key) + value_size(value, samples)
    if ctx.db.get_expire(key, ctx.slot) is not None:
        size += EXPIRE_OVERHEAD
    return resp.integer(size)


@internal_command("__memory", 2)
def memory_worker(ctx: Ctx, argv: list[bytes]) -> bytes:
    """MEMORY STATS / DOCTOR (this worker's figures, pickled) and PURGE (malloc_trim)."""
    op = argv[1].lower()
    if op == b"purge":
        purge()
        return resp.OK
    memory = ctx.stats["worker"].memory
    fields = memory_fields(ctx)
    fields["rss"] = worker_process().memory_info().rss
    fields["rss_baseline"] = _baseline_rss
    fields["keys"] = sum(db.size for db in ctx.dbs)
    fields["limit"] = memory.limit
    return resp.bulk(pickle.dumps(fields, pickle.HIGHEST_PROTOCOL))


def purge() -> None:
    """MEMORY PURGE: glibc's malloc_trim gives free heap pages back to the system."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


@worker_command("config|resetstat")
def config_resetstat(ctx: Ctx, argv: list[bytes]) -> bytes:
    for db in ctx.dbs:
        for name in _counters:
            setattr(db, name, 0)
    worker_opstats(ctx).reset_counters()
    ctx.stats["worker"].memory.reset_stats()
    return resp.OK


# -- command statistics, the slow log and latency events ----------------------------------------
#
# Each process counts the commands it runs: a worker its data commands, a proxy those it answers
# itself. Per command one list of counters: [0] calls made while timing was off, [i] for
# 1 <= i < 64 calls that took [2**(i-1), 2**i) ns (the latency histogram), then the total time,
# failed and rejected calls. The hot path does one dict lookup and two list increments.

TOTAL_NS, FAILED, REJECTED, N_COUNTERS = 64, 65, 66, 67
SLOWLOG_ENTRY_MAX_ARGC = 32
SLOWLOG_ENTRY_MAX_STRING = 128
LATENCY_TS_LEN = 160
NEVER = 1 << 62


def new_row() -> list[int]:
    return [0] * N_COUNTERS


def error_code(reply: bytes) -> str:
    """The errorstats name of an error reply: its first word when that word ends within 32
    bytes (Valkey's afterErrorReply), else ERR."""
    space = reply.find(b" ", 1, 33)
    return reply[1:space].decode("utf-8", "replace") if space > 0 else "ERR"


def slowlog_argv(argv: list[bytes]) -> list[bytes]:
    """argv as the slow log keeps it: at most 32 arguments, each at most 128 bytes."""
    argc = len(argv)
    kept = min(argc, SLOWLOG_ENTRY_MAX_ARGC)
    out = []
    for j in range(kept):
        if kept != argc and j == kept - 1:
            out.append(b"... (%d more arguments)" % (argc - kept + 1))
        elif len(argv[j]) > SLOWLOG_ENTRY_MAX_STRING:
            out.append(argv[j][:SLOWLOG_ENTRY_MAX_STRING]
                       + b"... (%d more bytes)" % (len(argv[j]) - SLOWLOG_ENTRY_MAX_STRING))
        else:
            out.append(argv[j])
    return out


def container_of(spec: CommandSpec) -> CommandSpec:
    return COMMANDS.get(spec.name.split("|", 1)[0], spec)


def answered_by_proxy(spec: CommandSpec) -> bool:
    """Commands the proxy answers itself (their parts that run on workers are not the client's
    command: the proxy logs and times the whole)."""
    return spec.route == LOCAL or container_of(spec).route == LOCAL


def counted_by_proxy(spec: CommandSpec) -> bool:
    """Commands whose calls the proxy counts (it handles them, whatever runs on workers)."""
    return spec.proxy_handler is not None or container_of(spec).proxy_handler is not None


def may_replicate(argv: list[bytes]) -> bool:
    """A command CLIENT PAUSE WRITE holds: it writes or may be replicated (PUBLISH, EVAL …)."""
    from ..commands import lookup_argv
    spec = lookup_argv(argv)
    flags = spec.facts.get("command_flags", ()) if spec is not None else ()
    return "WRITE" in flags or "MAY_REPLICATE" in flags


# Config values the slow log never shows (Valkey's SENSITIVE_CONFIG).
SENSITIVE_CONFIGS = frozenset((b"requirepass", b"masterauth", b"primaryauth", b"tls-key-file-pass",
                               b"tls-client-key-file-pass"))
REDACTED = b"(redacted)"


def redacted(spec: CommandSpec, argv: list[bytes]) -> list[bytes]:
    """argv with what Valkey redacts (redactClientCommandArgument) replaced: AUTH's
    arguments, HELLO's AUTH pair, CONFIG SET's values of sensitive configs."""
    name = spec.name
    if name == "auth":
        return argv[:1] + [REDACTED] * (len(argv) - 1)
    if name == "hello":
        out = list(argv)
        for j in range(2, len(out) - 2):
            if out[j].lower() == b"auth":
                out[j + 1] = out[j + 2] = REDACTED
        return out
    if name == "config|set":
        out = list(argv)
        for j in range(2, len(out) - 1, 2):
            if out[j].lower() in SENSITIVE_CONFIGS:
                out[j + 1] = REDACTED
        return out
    return argv


class OpStats:
    """This process's commandstats, errorstats, latency histograms, slow log and latency
    monitor events."""

    def __init__(self, values: dict, in_proxy: bool) -> None:
        self.in_proxy = in_proxy
        # command name → counters; a missing name gets a fresh row (the hot path subscripts)
        self.counts: defaultdict[str, list[int]] = defaultdict(new_row)
        self.errors: dict[str, int] = {}
        self.slowlog: deque[tuple] = deque()    # newest first
        self.slow_seq = 0
        self.events: dict[str, list] = {}       # event → [all-time max ms, deque of [sec, ms]]
        self.configure(values)

    def configure(self, values: dict) -> None:
        """Derive the thresholds from the config (at start and after CONFIG SET)."""
        slower = values["slowlog-log-slower-than"]
        self.slowlog_max = values["slowlog-max-len"]
        self.slower_ns = slower * 1000 if slower >= 0 and self.slowlog_max else NEVER
        monitor = values["latency-monitor-threshold"]
        self.latency_ns = monitor * 1_000_000 if monitor > 0 else NEVER
        # Without the slow log and the latency monitor nothing needs a clock: commands are
        # only counted (Valkey times them anyway; commandstats usec stays 0 here then).
        self.timed = slower >= 0 or monitor > 0
        self.notable_ns = min(self.slower_ns, self.latency_ns)
        while len(self.slowlog) > self.slowlog_max:
            self.slowlog.pop()

    def failed(self, spec: CommandSpec, reply: bytes) -> None:
        self.counts[spec.name][FAILED] += 1
        self.error(reply)

    def record_proxy(self, spec: CommandSpec, argv: list[bytes], elapsed_ns: int, reply: bytes | None,
                     conn) -> None:
        """A command the proxy handled (elapsed 0: counted, not timed)."""
        if spec.subcommands:
            # Checks Valkey makes before running a container's subcommand: an unknown one is
            # no command at all, a wrong argument count a rejected call.
            spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower()) if len(argv) > 1 else None
            if spec is None:
                return
            if not spec.arity_ok(len(argv)):
                self.rejected(spec)
                return
        counts = self.counts[spec.name]
        counts[elapsed_ns.bit_length()] += 1
        counts[TOTAL_NS] += elapsed_ns
        if reply is not None and reply[:1] == b"-":
            counts[FAILED] += 1
        if elapsed_ns >= self.notable_ns:
            self.notable(spec, redacted(spec, argv), elapsed_ns, conn.id, conn.addr,
                         conn.name.decode("utf-8", "replace"))

    def rejected(self, spec: CommandSpec | None) -> None:
        if spec is not None:
            self.counts[spec.name][REJECTED] += 1

    def error(self, reply: bytes) -> None:
        code = error_code(reply)
        self.errors[code] = self.errors.get(code, 0) + 1

    def reset_counters(self) -> None:
        """CONFIG RESETSTAT (the slow log and latency events stay, as in Valkey)."""
        self.counts.clear()
        self.errors.clear()

    # -- the slow path: a command took at least notable_ns --------------------------------
    def notable(self, spec: CommandSpec, argv: list[bytes], elapsed_ns: int, client_id: int,
                addr: str = "", name: str = "") -> None:
        if "skip_slowlog" in spec.flags or spec.group == "internal":
            return
        if answered_by_proxy(spec) != self.in_proxy:   # the other side logs it
            return
        if elapsed_ns >= self.slower_ns:
            self.slow_seq += 1
            self.slowlog.appendleft((self.slow_seq, time.time_ns() // 1000, elapsed_ns // 1000,
                                     slowlog_argv(argv), client_id, addr, name))
            while len(self.slowlog) > self.slowlog_max:
                self.slowlog.pop()
        if elapsed_ns >= self.latency_ns:
            self.add_latency("fast-command" if "fast" in spec.flags else "command", elapsed_ns // 1_000_000)

    def add_latency(self, event: str, latency_ms: int) -> None:
        """latencyAddSample: one sample per second per event, the highest of that second."""
        series = self.events.get(event)
        if series is None:
            series = self.events[event] = [0, deque(maxlen=LATENCY_TS_LEN)]
        series[0] = max(series[0], latency_ms)
        now = int(time.time())
        samples = series[1]
        if samples and samples[-1][0] == now:
            samples[-1][1] = max(samples[-1][1], latency_ms)
        else:
            samples.append([now, latency_ms])

    def reset_latency(self, events: list[str]) -> list[str]:
        """LATENCY RESET [event ...]: the events dropped here (all when none are named)."""
        wanted = {e.lower() for e in events}
        dropped = [e for e in self.events if not wanted or e.lower() in wanted]
        for e in dropped:
            del self.events[e]
        return dropped

    # -- what the merging proxy asks for ----------------------------------------------------
    def snapshot(self, what: str):
        """Plain data for the proxy merging every process's share (pickled)."""
        if what == "counts":
            return {"counts": {name: list(c) for name, c in self.counts.items()},
                    "errors": dict(self.errors)}
        if what == "slowlog":
            return list(self.slowlog)
        if what == "latency":
            return {e: (s[0], [tuple(x) for x in s[1]]) for e, s in self.events.items()}
        raise CommandError(f"ERR unknown statistics '{what}'")


def worker_opstats(ctx: Ctx) -> OpStats:
    return ctx.stats["worker"].opstats


@internal_command("__ops", -2)
def ops_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The proxy's questions about this worker's statistics: __ops counts|slowlog|latency,
    __ops slowlog-reset, __ops latency-reset [event ...], __ops set-active-expire 0|1."""
    stats = worker_opstats(ctx)
    op = argv[1].decode("utf-8", "replace")
    if op == "slowlog-reset":
        stats.slowlog.clear()
        data = None
    elif op == "latency-reset":
        data = stats.reset_latency([a.decode("utf-8", "replace") for a in argv[2:]])
    elif op == "set-active-expire":
        set_active_expire(ctx.stats["worker"].expire, argv[2] != b"0")
        return resp.OK
    else:
        data = stats.snapshot(op)
    return resp.bulk(pickle.dumps(data, pickle.HIGHEST_PROTOCOL))


def set_active_expire(expire, enabled: bool) -> None:
    """DEBUG SET-ACTIVE-EXPIRE: the active expiry cycle runs, or does nothing."""
    if enabled:
        expire.__dict__.pop("cycle", None)
    else:
        expire.cycle = lambda budget: 0


# -- DEBUG's worker halves ------------------------------------------------------------------------
SHARED_INTEGERS = 10000
OBJ_SHARED_REFCOUNT = 2147483647


def serialized_length(value, ctx: Ctx) -> int:
    """rdbSavedObjectLen: the value's RDB serialization (without type byte, version, CRC)."""
    try:
        from ..persist.rdb import dump_value
    except ImportError:        # before persistence: a rough size
        return len(pickle.dumps(value))
    fill = ctx.config.get("list-max-listpack-size", -2)
    return len(dump_value(value, ctx.config.get("rdbcompression", True), fill)) - 11


def quicklist_details(value, ctx: Ctx, fast: bool) -> str:
    """DEBUG OBJECT's extra fields for a quicklist-encoded list."""
    fill = ctx.config.get("list-max-listpack-size", -2)
    try:
        from ..persist.rdb import quicklist_nodes
        nodes = max(len(quicklist_nodes(value, fill)), 1)
    except ImportError:
        nodes = 1
    text = f" ql_nodes:{nodes} ql_avg_node:{len(value) / nodes:.2f} ql_listpack_max:{fill} ql_compressed:" \
           f"{int(bool(ctx.config.get('list-compress-depth', 0)))}"
    if not fast:
        text += f" ql_uncompressed_size:{sum(len(v) + 2 for v in value)}"
    return text


@internal_command("__debug", -2)
def debug_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """DEBUG subcommands that need a key's value, or every worker: __debug object <key> [fast],
    __debug listpack|quicklist <key>, __debug populate <count> <prefix> <size>."""
    from .t_keys import OBJECT_ENCODINGS, parse_ll
    sub = argv[1].lower()
    if sub == b"populate":
        return populate(ctx, int(argv[2]), argv[3], int(argv[4]))
    value = ctx.db.peek(argv[2], ctx.slot)       # dbFind: the access clock stays
    if value is None:
        raise CommandError("ERR no such key")
    encoding = OBJECT_ENCODINGS[type(value)](value)
    if sub == b"listpack":
        if encoding != b"listpack":
            raise CommandError("ERR Not a listpack encoded object.")
        return resp.status(b"Listpack structure printed on stdout")
    if sub == b"quicklist":
        if encoding != b"quicklist":
            raise CommandError("ERR Not a quicklist encoded object.")
        return resp.status(b"Quicklist structure printed on stdout")
    fast = len(argv) > 3 and argv[3].lower() == b"fast"
    refcount = 1
    if type(value) is bytes and len(value) <= 20:
        n = parse_ll(value)
        if n is not None and 0 <= n < SHARED_INTEGERS and not ctx.config.get("maxmemory"):
            refcount = OBJ_SHARED_REFCOUNT
    line = f"Value at:0x{id(value):x} refcount:{refcount} encoding:{encoding.decode()}"
    if not fast:
        line += f" serializedlength:{serialized_length(value, ctx)}"
    from . import keyspace
    from .evict import idle_ms
    clock = ctx.db.access.get(argv[2], keyspace.lru_clock)
    line += f" lru:{clock} lru_seconds_idle:{idle_ms(clock) // 1000 if not ctx.db.lfu else 0}"
    if encoding == b"quicklist":
        line += quicklist_details(value, ctx, fast)
    return resp.status(line.encode())


def populate(ctx: Ctx, count: int, prefix: bytes, size: int) -> bytes:
    """DEBUG POPULATE's share of one worker: the keys of its slots not already there."""
    from ..slots import keyslot
    lo, hi = ctx.config["__slot_range__"]
    db = ctx.db
    for j in range(count):
        key = b"%s:%d" % (prefix, j)
        slot = keyslot(key)
        if not lo <= slot <= hi or db.lookup(key, slot) is not None:
            continue
        value = b"value:%d" % j
        if size:
            value = value[:size].ljust(size, b"\0")
        db.store(key, slot, value)
    return resp.OK
