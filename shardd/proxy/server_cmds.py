"""Server commands answered by the proxy: INFO, CONFIG, TIME, ROLE, WAIT, CLUSTER, SHUTDOWN."""
from __future__ import annotations

import os
import platform
import time

from .. import REDIS_VERSION, VALKEY_VERSION, errors, log, resp
from ..commands import COMMANDS, proxy_command
from ..config import ConfigError, rewrite_config
from .fanout import all_ok, to_all
from .server import proxy_query
from .replies import decode_or_raise
from .slowlog import (commandstats_lines, errorstats_lines, latencystats_lines, outside_exec, stats_fields,
                      unpickle, worker_parts)
from . import debug  # noqa: F401  (registers DEBUG)

DEFAULT_SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                    "modules", "errorstats", "cluster", "keyspace", "shards"]
ALL_SECTIONS = DEFAULT_SECTIONS + ["commandstats", "latencystats"]
# Valkey prints sections in this order, whatever order they were asked in.
SECTION_ORDER = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
                 "commandstats", "errorstats", "latencystats", "cluster", "keyspace", "shards"]
# Sections built from the command statistics every proxy and worker keeps.
OPSTATS_SECTIONS = frozenset(("stats", "errorstats", "commandstats", "latencystats"))


def human_bytes(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.2f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.2f}T"


def sum_fields(workers: list[dict]) -> dict:
    total: dict[str, float] = {}
    for w in workers:
        for k, v in w.items():
            total[k] = total.get(k, 0) + v
    return total


def proxy_totals(proxy) -> dict[str, int]:
    """Connection and command counters summed over every proxy (shared memory)."""
    return proxy.shared_stats()


def section_server(proxy, workers, totals) -> list[str]:
    info = proxy.info
    now = time.time()
    uptime = int(now - info["start_time"])
    cfg = proxy.config.values
    return [
        f"redis_version:{REDIS_VERSION}", "server_name:valkey", f"valkey_version:{VALKEY_VERSION}",
        "redis_git_sha1:00000000", "redis_git_dirty:0", "redis_build_id:0", "server_mode:standalone",
        f"os:{platform.system()} {platform.release()} {platform.machine()}", "arch_bits:64",
        "monotonic_clock:POSIX clock_gettime", "multiplexing_api:epoll", "gcc_version:0.0.0",
        f"process_id:{info['process_id']}", f"process_supervised:{info.get('supervised', 'no')}",
        f"run_id:{info['run_id']}", f"tcp_port:{cfg['port']}", f"server_time_usec:{int(now * 1e6)}",
        f"uptime_in_seconds:{uptime}", f"uptime_in_days:{uptime // 86400}", f"hz:{cfg['hz']}",
        f"configured_hz:{cfg['hz']}", f"lru_clock:{int(now) & ((1 << 24) - 1)}",
        f"executable:{info['executable']}", f"config_file:{info['config_file']}",
        f"io_threads_active:{1 if proxy.n_proxies > 1 else 0}",
        *listener_lines(cfg),
    ]


def listener_lines(cfg: dict) -> list[str]:
    """One line per kind of listener, as Valkey numbers them: tcp, unix, then tls."""
    binds = "".join(f",bind={b}" for b in cfg["bind"])
    kinds = [("tcp", binds + f",port={cfg['port']}" if cfg.get("port") else None),
             ("unix", f",bind={cfg['unixsocket']}" if cfg.get("unixsocket") else None),
             ("tls", binds + f",port={cfg['tls-port']}" if cfg.get("tls-port") else None)]
    listening = [(name, where) for name, where in kinds if where is not None]
    return [f"listener{i}:name={name}{where}" for i, (name, where) in enumerate(listening)]


def section_clients(proxy, workers, totals) -> list[str]:
    return [
        f"connected_clients:{totals['connected_clients']}", "cluster_connections:0",
        f"maxclients:{proxy.config.values['maxclients']}", "client_recent_max_input_buffer:0",
        "client_recent_max_output_buffer:0", f"blocked_clients:{totals['blocked_clients']}",
        f"tracking_clients:{len(proxy.pubsub.tracking.clients)}",
        f"pubsub_clients:{proxy.pubsub.subscribed_clients()}", "watching_clients:0", "clients_in_timeout_table:0",
        "total_watched_keys:0", "total_blocking_keys:0", "total_blocking_keys_on_nokey:0",
        *pause_fields(proxy),
    ]


def pause_fields(proxy) -> list[str]:
    """CLIENT PAUSE as INFO shows it (every proxy holds the same pause)."""
    if proxy.pause_actions is None or time.time() >= proxy.pause_end:
        return ["paused_reason:none", "paused_actions:none", "paused_timeout_milliseconds:0"]
    left = int((proxy.pause_end - time.time()) * 1000)
    return ["paused_reason:client_pause", f"paused_actions:{proxy.pause_actions}",
            f"paused_timeout_milliseconds:{left}"]


def section_memory(proxy, workers, totals) -> list[str]:
    from .memory import memory_lines
    return memory_lines(proxy, workers)


def section_persistence(proxy, workers, totals) -> list[str]:
    """Server-wide: a save is complete when every shard's is, so the last save time is the
    oldest shard's and the status is ok only when every shard's is."""
    def values(name: str) -> list[int]:
        return [int(w[name]) for w in workers if name in w] or [0]
    in_progress = max(values("rdb_bgsave_in_progress"))
    loading = max(values("loading"))
    # While a worker loads, Valkey's loading_* fields: the least advanced loading worker's.
    progress = [float(w["loading_loaded_perc"]) for w in workers if int(w.get("loading", 0))]
    loading_fields = [f"loading_loaded_perc:{min(progress):.2f}"] if loading and progress else []
    return [
        f"loading:{loading}", *loading_fields, "async_loading:0", "current_cow_peak:0", "current_cow_size:0",
        "current_cow_size_age:0", "current_fork_perc:0.00", "current_save_keys_processed:0",
        "current_save_keys_total:0",
        f"rdb_changes_since_last_save:{sum(values('rdb_changes_since_last_save'))}",
        f"rdb_bgsave_in_progress:{in_progress}",
        f"rdb_last_save_time:{min(values('rdb_last_save_time'))}",
        f"rdb_last_bgsave_status:{'ok' if min(values('rdb_last_bgsave_ok')) else 'err'}",
        f"rdb_last_bgsave_time_sec:{max(values('rdb_last_bgsave_time_sec'))}",
        f"rdb_current_bgsave_time_sec:{max(values('rdb_current_bgsave_time_sec')) if in_progress else -1}",
        f"rdb_saves:{min(values('rdb_saves'))}",
        "rdb_last_cow_size:0", "rdb_last_load_keys_expired:0", "rdb_last_load_keys_loaded:0",
        *aof_fields(workers),
        "module_fork_in_progress:0", "module_fork_last_cow_size:0",
    ]


def aof_fields(workers: list[dict]) -> list[str]:
    """Each worker has its own AOF: on when every shard's is, sizes summed, a rewrite in
    progress while any shard's is, complete (aof_rewrites) when every shard's is."""
    def values(name: str, default: int = 0) -> list[int]:
        return [int(w[name]) for w in workers if name in w] or [default]
    enabled = min(values("aof_enabled"))
    rewriting = max(values("aof_rewrite_in_progress"))
    lines = [
        f"aof_enabled:{enabled}", f"aof_rewrite_in_progress:{rewriting}",
        f"aof_rewrite_scheduled:{max(values('aof_rewrite_scheduled'))}",
        f"aof_last_rewrite_time_sec:{max(values('aof_last_rewrite_time_sec', -1))}",
        f"aof_current_rewrite_time_sec:{max(values('aof_current_rewrite_time_sec')) if rewriting else -1}",
        f"aof_last_bgrewrite_status:{'ok' if min(values('aof_last_bgrewrite_ok', 1)) else 'err'}",
        f"aof_rewrites:{min(values('aof_rewrites'))}",
        f"aof_rewrites_consecutive_failures:{max(values('aof_rewrites_consecutive_failures'))}",
        f"aof_last_write_status:{'ok' if min(values('aof_last_write_ok', 1)) else 'err'}",
        "aof_last_cow_size:0",
    ]
    if enabled:
        lines += [
            f"aof_current_size:{sum(values('aof_current_size'))}", f"aof_base_size:{sum(values('aof_base_size'))}",
            f"aof_pending_rewrite:{max(values('aof_rewrite_scheduled'))}",
            f"aof_buffer_length:{sum(values('aof_buffer_length'))}",
            f"aof_pending_bio_fsync:{sum(values('aof_pending_bio_fsync'))}", "aof_delayed_fsync:0",
        ]
    return lines


def section_stats(proxy, workers, totals) -> list[str]:
    w = sum_fields(workers)
    ops = totals.get("ops") or {"total_error_replies": 0, "limits": {}}
    limits = ops["limits"]
    return [
        f"total_connections_received:{totals['total_connections_received']}",
        f"total_commands_processed:{totals['total_commands_processed']}",
        "instantaneous_ops_per_sec:0",
        f"total_net_input_bytes:{totals['total_net_input_bytes']}",
        f"total_net_output_bytes:{totals['total_net_output_bytes']}",
        "total_net_repl_input_bytes:0", "total_net_repl_output_bytes:0",
        "instantaneous_input_kbps:0.00", "instantaneous_output_kbps:0.00",
        "instantaneous_input_repl_kbps:0.00", "instantaneous_output_repl_kbps:0.00",
        f"rejected_connections:{totals['rejected_connections']}", "sync_full:0",
        "sync_partial_ok:0", "sync_partial_err:0", f"expired_keys:{int(w.get('expired_keys', 0))}",
        "expired_stale_perc:0.00", "expired_time_cap_reached_count:0", "expire_cycle_cpu_milliseconds:0",
        f"evicted_keys:{int(w.get('evicted_keys', 0))}", f"evicted_clients:{limits.get('evicted_clients', 0)}",
        f"total_eviction_exceeded_time:{int(w.get('total_eviction_exceeded_time', 0))}",
        f"current_eviction_exceeded_time:{int(max((x.get('current_eviction_exceeded_time', 0) for x in workers), default=0))}",
        f"keyspace_hits:{int(w.get('keyspace_hits', 0))}",
        f"keyspace_misses:{int(w.get('keyspace_misses', 0))}", *proxy.pubsub.info_counts(),
        "latest_fork_usec:0", "total_forks:0",
        "migrate_cached_sockets:0", "slave_expires_tracked_keys:0", "active_defrag_hits:0",
        "active_defrag_misses:0", "active_defrag_key_hits:0", "active_defrag_key_misses:0",
        "total_active_defrag_time:0", "current_active_defrag_time:0", f"tracking_total_keys:{int(w.get('tracking_total_keys', 0))}",
        f"tracking_total_items:{int(w.get('tracking_total_items', 0))}", f"tracking_total_prefixes:{proxy.pubsub.tracking.prefix_count()}", "unexpected_error_replies:0",
        f"total_error_replies:{ops['total_error_replies']}", "dump_payload_sanitizations:0", "total_reads_processed:0",
        "total_writes_processed:0", "io_threaded_reads_processed:0", "io_threaded_writes_processed:0",
        f"client_query_buffer_limit_disconnections:{limits.get('client_query_buffer_limit_disconnections', 0)}",
        f"client_output_buffer_limit_disconnections:{limits.get('client_output_buffer_limit_disconnections', 0)}",
        "reply_buffer_shrinks:0", "reply_buffer_expands:0", "eventloop_cycles:0",
        "eventloop_duration_sum:0", "eventloop_duration_cmd_sum:0",
        "instantaneous_eventloop_cycles_per_sec:0", "instantaneous_eventloop_duration_usec:0",
        *(f"{name}:{limits.get(name, 0)}" for name in ("acl_access_denied_auth", "acl_access_denied_cmd",
                                                         "acl_access_denied_key", "acl_access_denied_channel")),
    ]


def section_replication(proxy, workers, totals) -> list[str]:
    return [
        "role:master", "connected_slaves:0", "replicas_waiting_psync:0",
        "master_failover_state:no-failover",
        f"master_replid:{proxy.info.get('master_replid') or proxy.info['run_id'][:40]}",
        "master_replid2:0000000000000000000000000000000000000000", "master_repl_offset:0",
        "second_repl_offset:-1", "repl_backlog_active:0", "repl_backlog_size:1048576",
        "repl_backlog_first_byte_offset:0", "repl_backlog_histlen:0",
    ]


def section_cpu(proxy, workers, totals) -> list[str]:
    w = sum_fields(workers)
    t = os.times()
    return [
        f"used_cpu_sys:{w.get('used_cpu_sys', 0) + t.system:.6f}",
        f"used_cpu_user:{w.get('used_cpu_user', 0) + t.user:.6f}",
        "used_cpu_sys_children:0.000000", "used_cpu_user_children:0.000000",
        "used_cpu_sys_main_thread:0.000000", "used_cpu_user_main_thread:0.000000",
    ]


def section_modules(proxy, workers, totals) -> list[str]:
    return []


def section_errorstats(proxy, workers, totals) -> list[str]:
    return errorstats_lines(totals["ops"]["errors"]) if "ops" in totals else []


def section_commandstats(proxy, workers, totals) -> list[str]:
    return commandstats_lines(totals["ops"]["commands"]) if "ops" in totals else []


def section_latencystats(proxy, workers, totals) -> list[str]:
    return latencystats_lines(totals["ops"]["commands"], proxy.config.values) if "ops" in totals else []


def section_cluster(proxy, workers, totals) -> list[str]:
    return ["cluster_enabled:0"]


def section_keyspace(proxy, workers, totals) -> list[str]:
    keys: dict[int, list[int]] = {}
    for w in workers:
        for name, value in w.items():
            if name.startswith("db") and name.endswith("_keys"):
                db = int(name[2:-5])
                keys.setdefault(db, [0, 0])[0] += int(value)
                keys[db][1] += int(w.get(f"db{db}_expires", 0))
    return [f"db{db}:keys={k},expires={e},avg_ttl=0" for db, (k, e) in sorted(keys.items()) if k]


def section_shards(proxy, workers, totals) -> list[str]:
    lines = [f"shards:{len(workers)}", f"proxies:{proxy.n_proxies}"]
    for w, (lo, hi) in zip(sorted(workers, key=lambda x: x["shard"]), proxy.info["slot_ranges"]):
        lines.append(f"shard{int(w['shard'])}:pid={int(w['pid'])},keys={int(w['keys'])},"
                     f"slots={lo}-{hi},rss={int(w.get('rss', 0))}")
    for i, pid in enumerate(proxy.shared_proxy_pids()):
        lines.append(f"proxy{i}:pid={pid}")
    return lines


SECTIONS = {name: globals()[f"section_{name}"] for name in ALL_SECTIONS}
TITLES = {"cpu": "CPU", "modules": "Modules", "errorstats": "Errorstats"}


def wanted_sections(argv: list[bytes]) -> list[str]:
    asked = [a.decode("utf-8", "replace").lower() for a in argv[1:]]
    if not asked or "default" in asked:
        names = list(DEFAULT_SECTIONS)
    elif "all" in asked or "everything" in asked:
        names = list(ALL_SECTIONS)
    else:
        names = []
    names += [a for a in asked if a in SECTIONS and a not in names]
    return sorted(names, key=SECTION_ORDER.index)


@proxy_command("info")
def info(conn, argv: list[bytes]) -> None:
    proxy = conn.proxy
    names = wanted_sections(argv)
    proto = conn.proto

    n_workers = len(proxy.info["slot_ranges"])

    def merge(replies: list[bytes], proxy_shares: list | None = None) -> bytes:
        workers = []
        for r in replies[:n_workers]:
            flat = decode_or_raise(r)
            workers.append({flat[i].decode(): float(flat[i + 1]) for i in range(0, len(flat), 2)})
        totals = proxy_totals(proxy)
        if proxy_shares is not None:
            totals["ops"] = stats_fields(proxy_shares, [unpickle(r) for r in replies[n_workers:]])
        blocks = []
        for name in names:
            lines = SECTIONS[name](proxy, workers, totals)
            blocks.append("# " + TITLES.get(name, name.capitalize()) + "\r\n" + "".join(l + "\r\n" for l in lines))
        return resp.verbatim("\r\n".join(blocks).encode(), proto)
    outside_exec(conn, "info")
    if not OPSTATS_SECTIONS.intersection(names):
        to_all(conn, [b"INFO"], merge)
        return
    # Command statistics live where commands run: every proxy's share, then every worker's.
    parts = [(w, [b"INFO"], lo) for w, (lo, _) in enumerate(proxy.info["slot_ranges"])]
    parts += worker_parts(conn, b"counts")
    proxy.ask_all(conn, "opstats", ("counts", None),
                  lambda shares: conn.followup(parts, lambda replies: merge(replies, shares)))


# -- CONFIG ---------------------------------------------------------------------------------
CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
    "RESETSTAT", "    Reset statistics reported by the INFO command.",
    "REWRITE", "    Rewrite the configuration file.",
    "HELP", "    Print this help.",
]


def subcommand_error(argv: list[bytes], container: str) -> bytes | None:
    """Valkey's checks before a container's handler runs: the subcommand exists and its
    arity is right (processCommand: commandCheckExistence, commandCheckArity)."""
    sub = COMMANDS[container].subcommands.get(argv[1].decode("utf-8", "replace").lower())
    if sub is None:
        return resp.error(errors.unknown_subcommand(argv[1], container))
    if not sub.arity_ok(len(argv)):
        return resp.error(errors.wrong_arity(sub.name))
    return None


@proxy_command("config")
def config(conn, argv: list[bytes]) -> bytes | None:
    failed = subcommand_error(argv, "config")
    if failed is not None:
        return failed
    sub = argv[1].lower()
    if sub == b"get":
        return config_get(conn, argv)
    if sub == b"set":
        if len(argv) % 2:
            return resp.error(errors.SYNTAX)
        return config_set(conn, argv)
    if sub == b"resetstat":
        # Every proxy's counters (the shared ones and its command statistics), then every worker's.
        outside_exec(conn, "config|resetstat")
        parts = [(w, [b"CONFIG", b"RESETSTAT"], lo) for w, (lo, _) in enumerate(conn.proxy.info["slot_ranges"])]
        conn.proxy.ask_all(conn, "opstats", ("resetstat", None), lambda answers: conn.followup(parts, all_ok))
        return None
    if sub == b"rewrite":
        return config_rewrite(conn)
    if sub == b"help":
        return resp.array([resp.status(line) for line in CONFIG_HELP])
    return resp.error(errors.unknown_subcommand(argv[1], "CONFIG"))


def config_rewrite(conn) -> bytes:
    """CONFIG REWRITE: the config file the server started with, rewritten in place."""
    path = conn.proxy.config.config_file or conn.proxy.info.get("config_file")
    if not path:
        return resp.error("ERR The server is running without a config file")
    try:
        rewrite_config(conn.proxy.config, path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        log.log("warning", f"CONFIG-REWRITE failed: {reason}")
        return resp.error(f"ERR Rewriting config file: {reason}")
    log.log("notice", "CONFIG REWRITE executed with success.")
    return resp.OK


def config_get(conn, argv: list[bytes]) -> bytes:
    cfg = conn.proxy.config
    found: dict[str, str] = {}
    for pattern in argv[2:]:
        for name, value in cfg.get_matching(pattern.decode("utf-8", "replace")):
            found.setdefault(name, value)
    out = [resp.map_header(len(found), conn.proto)]
    for name, value in found.items():
        out.append(resp.bulk(name.encode()))
        out.append(resp.bulk(value.encode()))
    return b"".join(out)


def config_set(conn, argv: list[bytes]) -> bytes | None:
    proxy = conn.proxy
    outside_exec(conn, "config|set")
    pairs = [(argv[i].decode("utf-8", "replace").lower(), argv[i + 1].decode("utf-8", "surrogateescape"))
             for i in range(2, len(argv), 2)]
    try:
        proxy.apply_config(pairs)
    except ConfigError as exc:
        return resp.error(str(exc))
    flat = [b"CONFIG", b"SET"]
    for name, value in pairs:
        flat += [name.encode(), value.encode("utf-8", "surrogateescape")]
    parts = [(w, flat, lo) for w, (lo, _) in enumerate(proxy.info["slot_ranges"])]
    proxy.send_control({"op": "config_set", "pairs": pairs})   # the supervisor's own settings (loglevel …)
    # Answer only once every proxy and every worker has the new values.
    proxy.ask_all(conn, "config_set", pairs, lambda answers: conn.followup(parts, all_ok))
    return None


@proxy_query("config_set")
def apply_config_set(proxy, pairs: list[tuple[str, str]], asker) -> None:
    if asker is None:          # the asking proxy applied it already
        proxy.apply_config(pairs)


# -- the rest --------------------------------------------------------------------------------
@proxy_command("time")
def time_(conn, argv: list[bytes]) -> bytes:
    now = time.time_ns() // 1000
    return resp.bulk_array([str(now // 1_000_000).encode(), str(now % 1_000_000).encode()], 2)


@proxy_command("role")
def role(conn, argv: list[bytes]) -> bytes:
    return resp.array([resp.bulk(b"master"), resp.integer(0), resp.EMPTY_ARRAY])


@proxy_command("wait")
def wait(conn, argv: list[bytes]) -> bytes:
    for value in argv[1:3]:
        try:
            if int(value) < 0 and value is argv[2]:
                return resp.error("ERR timeout is negative")
        except ValueError:
            return resp.error(errors.NOT_INTEGER)
    return resp.integer(0)


@proxy_command("cluster")
def cluster(conn, argv: list[bytes]) -> bytes:
    return subcommand_error(argv, "cluster") or resp.error(errors.CLUSTER_DISABLED)


@proxy_command("shutdown")
def shutdown(conn, argv: list[bytes]) -> bytes | None:
    flags = {a.upper() for a in argv[1:]}
    if not flags <= {b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"} or {b"NOSAVE", b"SAVE"} <= flags:
        return resp.error(errors.SYNTAX)
    if b"ABORT" in flags:
        if len(flags) > 1:
            return resp.error(errors.SYNTAX)
        return resp.error("ERR No shutdown in progress.")
    from .persistence import shutdown_saving
    return shutdown_saving(conn, flags)
