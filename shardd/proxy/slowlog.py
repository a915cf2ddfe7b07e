"""SLOWLOG, LATENCY and the INFO sections built from command statistics (commandstats,
errorstats, latencystats), merged from every process that runs commands.

Each worker and each proxy keeps its own `OpStats` (shardd/worker/server_cmds.py): workers
time the data commands they run, proxies the commands they answer themselves. The proxy a
client asks gathers every proxy's share (a control query) and every worker's (`__ops`), then
merges:

* slow log entries are ordered by time, newest first. Ids are unique server-wide: entry n
  (from 0) of source s is n * S + s, S being the number of proxies plus workers and s the
  proxy index or n_proxies + worker index. So ids grow with time within a source but not
  strictly across sources. A command every worker runs with the same arguments (DBSIZE,
  KEYS, FLUSHALL …) is one entry, with the slowest worker's time; a command split over
  workers (MGET/MSET/DEL with keys on several workers) shows each worker's part. Workers do
  not know client names and addresses: the merge takes them from the proxies' client tables,
  so a client that has gone shows empty ones.
* latency events: per event, the samples of every source, one per second (the highest).
* command statistics: calls of the commands the proxy handles (CONFIG, INFO, MGET, DBSIZE,
  BLPOP …) are the proxy's count, their time adds what the workers spent on their parts;
  other commands sum the workers' figures.
"""
from __future__ import annotations

import pickle
import time
from typing import Any, Callable

from .. import resp
from ..commands import COMMANDS, proxy_command
from ..errors import CommandError
from ..numbers import string2ll
from ..worker.server_cmds import FAILED, N_COUNTERS, REJECTED, TOTAL_NS, counted_by_proxy
from .replies import decode_or_raise
from .server import proxy_query

LATENCY_TS_LEN = 160
FANOUT_SLACK_US = 1_000_000     # a fan-out's parts on two workers start within this of each other


def help_reply(container: str, lines: list[str]) -> bytes:
    """addReplyHelp: the header, the lines, then HELP."""
    text = [f"{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", *lines,
            "HELP", "    Print this help."]
    return resp.array([resp.status(line) for line in text])


def worker_parts(conn, *argv: bytes) -> list[tuple[int, list[bytes], int]]:
    return [(w, [b"__ops", *argv], lo) for w, (lo, _) in enumerate(conn.proxy.info["slot_ranges"])]


def unpickle(reply: bytes) -> Any:
    """A worker's `__ops` answer (an error reply raises CommandError)."""
    data = decode_or_raise(reply)
    try:
        return pickle.loads(data)
    except Exception:
        raise CommandError(f"ERR unexpected statistics reply: {bytes(data[:40])!r}") from None


def outside_exec(conn, name: str) -> None:
    """Commands that answer later (after asking the other proxies or the workers) cannot run
    inside EXEC, where each queued command must answer at once: refuse before taking a place
    in the client's replies. (A handler runs while the client is held only inside EXEC.)"""
    if conn.paused:
        raise CommandError(f"ERR '{name}' cannot run inside a transaction in shardd")


def gather(conn, what: str, args, worker_argv: list[bytes] | None,
           finish: Callable[[list, list], bytes]) -> None:
    """Ask every proxy `what` (with args), then every worker `__ops <worker_argv>`; `finish`
    gets (proxy answers, worker answers) and makes the reply."""
    outside_exec(conn, what)
    def after_proxies(answers: list) -> Any:
        if worker_argv is None:
            return finish(answers, [])
        return conn.followup(worker_parts(conn, *worker_argv),
                             lambda replies: finish(answers, [unpickle(r) for r in replies]))
    conn.proxy.ask_all(conn, "opstats", (what, args), after_proxies)


@proxy_query("opstats")
def local_opstats(proxy, request: tuple[str, Any], asker) -> Any:
    """This proxy's share of the server's statistics, or a reset of it."""
    what, args = request
    stats = proxy.opstats
    if what == "slowlog":
        clients = {c.id: (c.addr, c.name.decode("utf-8", "replace")) for c in proxy.clients.values()}
        return {"index": proxy.index, "entries": stats.snapshot("slowlog"), "clients": clients}
    if what == "slowlog-reset":
        stats.slowlog.clear()
        return None
    if what == "latency":
        return stats.snapshot("latency")
    if what == "latency-reset":
        return stats.reset_latency(list(args))
    if what == "counts":
        return {**stats.snapshot("counts"), "limits": dict(proxy.limit_stats)}
    if what == "resetstat":
        stats.reset_counters()
        for name in proxy.limit_stats:
            proxy.limit_stats[name] = 0
        proxy.reset_stats()
        return None
    raise CommandError(f"ERR unknown statistics '{what}'")


# -- SLOWLOG ------------------------------------------------------------------------------------
SLOWLOG_HELP = [
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]


def merged_slowlog(conn, proxy_answers: list[dict], worker_logs: list[list]) -> list[tuple]:
    """Every source's entries as (id, unix seconds, µs, argv, addr, name), newest first."""
    n_proxies = conn.proxy.n_proxies
    sources = n_proxies + len(worker_logs)
    clients: dict[int, tuple[str, str]] = {}
    rows = []     # (end µs, id, µs, argv, addr, name)
    for answer in proxy_answers:
        clients.update(answer["clients"])
        for seq, end, dur, argv, cid, addr, name in answer["entries"]:
            rows.append((end, (seq - 1) * sources + answer["index"], dur, argv, addr, name))
    folded = fold_fanouts([(n_proxies + w, entry) for w, entries in enumerate(worker_logs) for entry in entries])
    for source, seq, end, dur, argv, cid in folded:
        addr, name = clients.get(cid, ("", ""))
        rows.append((end, (seq - 1) * sources + source, dur, argv, addr, name))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    limit = conn.proxy.config.values["slowlog-max-len"]
    return [(i, end // 1_000_000, dur, argv, addr, name) for end, i, dur, argv, addr, name in rows[:limit]]


def fold_fanouts(tagged: list[tuple[int, tuple]]) -> list[tuple]:
    """Worker entries of one client's command that every worker ran with the same arguments
    become one: (source, seq, end µs, µs, argv, client id) with the first source's id, the
    latest end and the longest time."""
    groups: dict[tuple, list] = {}
    for source, (seq, end, dur, argv, cid, _, _) in tagged:
        groups.setdefault((cid, tuple(argv)), []).append((end - dur, end, dur, source, seq, argv, cid))
    folded = []
    for group in groups.values():
        group.sort()
        cluster: list | None = None
        for start, end, dur, source, seq, argv, cid in group:
            if (cluster is not None and source not in cluster[6]
                    and start <= cluster[2] + FANOUT_SLACK_US):
                if (seq - 1, source) < (cluster[1] - 1, cluster[0]):
                    cluster[0], cluster[1] = source, seq
                cluster[2] = max(cluster[2], end)
                cluster[3] = max(cluster[3], dur)
                cluster[6].add(source)
                continue
            cluster = [source, seq, end, dur, argv, cid, {source}]
            folded.append(cluster)
    return [tuple(c[:6]) for c in folded]


@proxy_command("slowlog|help")
def slowlog_help(conn, argv: list[bytes]) -> bytes:
    return help_reply("SLOWLOG", SLOWLOG_HELP)


@proxy_command("slowlog|reset")
def slowlog_reset(conn, argv: list[bytes]) -> None:
    gather(conn, "slowlog-reset", None, [b"slowlog-reset"], lambda p, w: resp.OK)


@proxy_command("slowlog|len")
def slowlog_len(conn, argv: list[bytes]) -> None:
    gather(conn, "slowlog", None, [b"slowlog"], lambda p, w: resp.integer(len(merged_slowlog(conn, p, w))))


@proxy_command("slowlog|get")
def slowlog_get(conn, argv: list[bytes]) -> None:
    if len(argv) > 3:
        raise CommandError(subcommand_syntax_error(argv))
    count = 10
    if len(argv) == 3:
        count = string2ll(argv[2])
        if count is None or count < -1:     # getRangeLongFromObjectOrReply: one message for both
            raise CommandError("ERR count should be greater than or equal to -1")
    proto = conn.proto

    def reply(p: list, w: list) -> bytes:
        entries = merged_slowlog(conn, p, w)
        if count != -1:
            entries = entries[:count]
        out = [resp.array_header(len(entries))]
        for i, when, dur, args, addr, name in entries:
            out += [resp.array_header(6), resp.integer(i), resp.integer(when), resp.integer(dur),
                    resp.bulk_array(args, proto), resp.bulk(addr.encode()), resp.bulk(name.encode())]
        return b"".join(out)
    gather(conn, "slowlog", None, [b"slowlog"], reply)


def subcommand_syntax_error(argv: list[bytes]) -> str:
    """addReplySubcommandSyntaxError."""
    sub = argv[1].decode("utf-8", "replace")[:128]
    return (f"ERR unknown subcommand or wrong number of arguments for '{sub}'. "
            f"Try {argv[0].decode('utf-8', 'replace').upper()} HELP.")


# -- LATENCY ------------------------------------------------------------------------------------
LATENCY_HELP = [
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
]


def merged_events(shares: list[dict]) -> dict[str, tuple[int, list[tuple[int, int]]]]:
    """event → (all-time max ms, samples (unix second, ms) oldest first, at most 160)."""
    merged: dict[str, list] = {}
    for share in shares:
        for event, (top, samples) in share.items():
            entry = merged.setdefault(event, [0, {}])
            entry[0] = max(entry[0], top)
            for sec, ms in samples:
                entry[1][sec] = max(entry[1].get(sec, 0), ms)
    return {event: (top, sorted(by_second.items())[-LATENCY_TS_LEN:])
            for event, (top, by_second) in merged.items()}


@proxy_command("latency|help")
def latency_help(conn, argv: list[bytes]) -> bytes:
    return help_reply("LATENCY", LATENCY_HELP)


@proxy_command("latency|histogram")
def latency_histogram(conn, argv: list[bytes]) -> None:
    names = [a.decode("utf-8", "replace") for a in argv[2:]]
    proto = conn.proto
    gather(conn, "counts", None, [b"counts"], lambda p, w: histogram_reply(merge_counts(p, w)[0], names, proto))


@proxy_command("latency|reset")
def latency_reset(conn, argv: list[bytes]) -> None:
    names = [a.decode("utf-8", "replace") for a in argv[2:]]

    def reply(p: list, w: list) -> bytes:
        dropped = [name for answer in p + w for name in answer]
        if not names:
            return resp.integer(len(set(dropped)))
        return resp.integer(sum(len({d for d in dropped if d.lower() == name.lower()}) for name in names))
    gather(conn, "latency-reset", tuple(names), [b"latency-reset", *argv[2:]], reply)


@proxy_command("latency|latest", "latency|history", "latency|doctor", "latency|graph")
def latency(conn, argv: list[bytes]) -> None:
    """The subcommands made from the merged events."""
    sub = argv[1].lower()
    proto = conn.proto
    event = argv[2].decode("utf-8", "replace") if len(argv) == 3 else ""
    threshold = conn.proxy.config.values["latency-monitor-threshold"]

    def reply(p: list, w: list) -> bytes:
        events = merged_events(p + w)
        if sub == b"latest":
            out = [resp.array_header(len(events))]
            for name, (top, samples) in sorted(events.items()):
                sec, ms = samples[-1]
                out += [resp.array_header(4), resp.bulk(name.encode()), resp.integer(sec),
                        resp.integer(ms), resp.integer(top)]
            return b"".join(out)
        if sub == b"history":
            samples = events.get(event, (0, []))[1]
            return resp.array([resp.array([resp.integer(s), resp.integer(ms)]) for s, ms in samples])
        if sub == b"graph":
            if event not in events:
                raise CommandError(f"ERR No samples available for event '{event}'")
            return resp.verbatim(latency_graph(event, *events[event]).encode(), proto)
        return resp.verbatim(latency_doctor(events, conn.proxy.config.values, threshold).encode(), proto)
    gather(conn, "latency", None, [b"latency"], reply)


def latency_graph(event: str, top: int, samples: list[tuple[int, int]]) -> str:
    """latencyCommandGenSparkeline: a title, a rule, and an 80-column sparkline whose labels
    say how long ago each sample was."""
    now = int(time.time())
    values, labels = [], []
    for sec, ms in samples:
        elapsed = now - sec
        labels.append(f"{elapsed}s" if elapsed < 60 else f"{elapsed // 60}m" if elapsed < 3600
                      else f"{elapsed // 3600}h" if elapsed < 86400 else f"{elapsed // 86400}d")
        values.append(ms)
    high, low = (max(values), min(values)) if values else (0, 0)
    graph = f"{event} - high {high} ms, low {low} ms (all time high {top} ms)\n" + "-" * 80 + "\n"
    return graph + sparkline(values, labels, columns=80, rows=4)


def sparkline(values: list[float], labels: list[str], columns: int, rows: int) -> str:
    """sparklineRender with SPARKLINE_FILL (Valkey's sparkline.c)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    out = []
    for start in range(0, len(values), columns):
        if start:
            out.append("\n")
        out.append(sparkline_range(values[start:start + columns], labels[start:start + columns],
                                   low, high, rows, any(labels)))
    return "".join(out)


def sparkline_range(values: list[float], labels: list[str], low: float, high: float, rows: int,
                    has_labels: bool) -> str:
    fill = "_o#"
    relmax = (high - low) or 1
    steps = len(fill) * rows
    lines = []
    row = 0
    while True:
        chars = [" "] * len(values)
        more = False
        for j, value in enumerate(values):
            step = int(int((value - low) * steps) / relmax)
            step = min(max(step, 0), steps - 1)
            if row < rows:
                more = True
                index = step - (rows - row - 1) * len(fill)
                if 0 <= index < len(fill):
                    chars[j] = fill[index]
                elif index >= len(fill):
                    chars[j] = "|"
            else:
                if has_labels and row - rows < 1:     # one blank line above the labels
                    more = True
                    break
                label_char = row - rows - 1
                if labels[j] and len(labels[j]) > label_char:
                    more = True
                    chars[j] = labels[j][label_char]
        if not more:
            break
        row += 1
        lines.append("".join(chars) + "\n")
    return "".join(lines)


def latency_doctor(events: dict, values: dict, threshold: int) -> str:
    """createLatencyReport for the events shardd records (command, fast-command)."""
    if not events and threshold == 0:
        return ("I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Valkey instance. "
                "You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it.\n")
    report = []
    advice: set[str] = set()
    slower = values["slowlog-log-slower-than"]
    now = int(time.time())
    for number, (event, (top, samples)) in enumerate(sorted(events.items()), 1):
        if number == 1:
            report.append("Latency spikes are observed in this Valkey instance.\n\n")
        lat = [ms for _, ms in samples]
        avg = sum(lat) // len(lat) if lat else 0
        mad = sum(abs(avg - ms) for ms in lat) // len(lat) if lat else 0
        period = (now - min(sec for sec, _ in samples)) if samples else 0
        period = period or 1
        report.append(f"{number}. {event}: {len(lat)} latency spikes (average {avg}ms, mean deviation "
                      f"{mad}ms, period {period / max(len(lat), 1):.2f} sec). Worst all time event {top}ms.")
        if event.lower() == "command":
            if slower < 0 or values["slowlog-max-len"] == 0:
                advice.add("slowlog_enabled")
            elif slower / 1000 > threshold:
                advice.add("slowlog_tuning")
            advice.update(("slowlog_inspect", "large_objects"))
        if event.lower() == "fast-command":
            advice.add("scheduler")
        report.append("\n")
    if anon_huge_pages():
        advice.add("disable_thp")
    if not events and not advice:
        report.append("No latency spike was observed during the lifetime of this Valkey instance, "
                      "not in the slightest bit.\n")
    elif events and not advice:
        report.append("\nThere are latency events logged that are not easy to fix. Please get some help "
                      "from Valkey community, providing this report in your help request.\n")
    else:
        report.append("\nHere is some advice for you:\n\n")
        for key, text in DOCTOR_ADVICE:
            if key in advice:
                report.append(text.format(threshold_us=threshold * 1000))
    return "".join(report)


DOCTOR_ADVICE = [
    ("slowlog_enabled",
     "- There are latency issues with potentially slow commands you are using. Try to enable the Slow Log "
     "Valkey feature using the command 'CONFIG SET slowlog-log-slower-than {threshold_us}'. If the Slow log "
     "is disabled Valkey is not able to log slow commands execution for you.\n"),
    ("slowlog_tuning",
     "- Your current Slow Log configuration only logs events that are slower than your configured latency "
     "monitor threshold. Please use 'CONFIG SET slowlog-log-slower-than {threshold_us}'.\n"),
    ("slowlog_inspect",
     "- Check your Slow Log to understand what are the commands you are running which are too slow to "
     "execute. Please check https://valkey.io/commands/slowlog for more information.\n"),
    ("scheduler",
     "- The system is slow to execute Valkey code paths not containing system calls. This usually means the "
     "system does not provide Valkey CPU time to run for long periods. You should try to:\n"
     "  1) Lower the system load.\n"
     "  2) Use a computer / VM just for Valkey if you are running other software in the same system.\n"
     "  3) Check if you have a \"noisy neighbour\" problem.\n"
     "  4) Check with 'valkey-cli --intrinsic-latency 100' what is the intrinsic latency in your system.\n"
     "  5) Check if the problem is allocator-related by recompiling Valkey with MALLOC=libc, if you are "
     "using Jemalloc. However this may create fragmentation problems.\n"),
    ("large_objects",
     "- Deleting, expiring or evicting (because of maxmemory policy) large objects is a blocking operation. "
     "If you have very large objects that are often deleted, expired, or evicted, try to fragment those "
     "objects into multiple smaller objects.\n"),
    ("disable_thp",
     "- I detected a non zero amount of anonymous huge pages used by your process. This creates very serious "
     "latency events in different conditions, especially when Valkey is persisting on disk. To disable THP "
     "support use the command 'echo never > /sys/kernel/mm/transparent_hugepage/enabled', make sure to also "
     "add it into /etc/rc.local so that the command will be executed again after a reboot. Note that even if "
     "you have already disabled THP, you still need to restart the Valkey process to get rid of the huge "
     "pages already created.\n"),
]


def anon_huge_pages() -> int:
    """THPGetAnonHugePagesSize: AnonHugePages of this process, in kB."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


# -- command statistics -------------------------------------------------------------------------
def spec_by_name(name: str):
    parent, _, sub = name.partition("|")
    spec = COMMANDS.get(parent)
    if spec is not None and sub:
        spec = spec.subcommands.get(sub)
    return spec


def add_into(total: list[int], counts: list[int]) -> None:
    for i, n in enumerate(counts):
        total[i] += n


def merge_counts(proxy_answers: list[dict], worker_answers: list[dict]) -> tuple[dict[str, list[int]], dict[str, int], dict[str, int]]:
    """(command name → counters, error code → count, limit disconnections) for the server."""
    by_proxy: dict[str, list[int]] = {}
    by_worker: dict[str, list[int]] = {}
    errors_seen: dict[str, int] = {}
    limits: dict[str, int] = {}
    for answers, into in ((proxy_answers, by_proxy), (worker_answers, by_worker)):
        for answer in answers:
            for name, counts in answer["counts"].items():
                add_into(into.setdefault(name, [0] * N_COUNTERS), counts)
            for code, n in answer["errors"].items():
                errors_seen[code] = errors_seen.get(code, 0) + n
            for name, n in answer.get("limits", {}).items():
                limits[name] = limits.get(name, 0) + n
    merged: dict[str, list[int]] = {}
    for name in set(by_proxy) | set(by_worker):
        spec = spec_by_name(name)
        if spec is None or spec.group == "internal":
            continue
        p = by_proxy.get(name, [0] * N_COUNTERS)
        w = by_worker.get(name, [0] * N_COUNTERS)
        if counted_by_proxy(spec):
            # The proxy counted the client's calls; workers ran parts of them.
            total = list(p)
            total[TOTAL_NS] += w[TOTAL_NS]
            total[FAILED] = min(calls(p), p[FAILED] + w[FAILED])
        else:
            total = list(p)
            add_into(total, w)
        if calls(total) or total[FAILED] or total[REJECTED]:
            merged[name] = total
    return merged, errors_seen, limits


def calls(counts: list[int]) -> int:
    return sum(counts[:TOTAL_NS])


def commandstats_lines(merged: dict[str, list[int]]) -> list[str]:
    lines = []
    for name in sorted(merged):
        c = merged[name]
        n = calls(c)
        usec = c[TOTAL_NS] // 1000
        lines.append(f"cmdstat_{name}:calls={n},usec={usec},usec_per_call={usec / n if n else 0:.2f},"
                     f"rejected_calls={c[REJECTED]},failed_calls={c[FAILED]}")
    return lines


def errorstats_lines(errors_seen: dict[str, int]) -> list[str]:
    return [f"errorstat_{code}:count={n}" for code, n in sorted(errors_seen.items()) if n]


def bucket_usec(i: int) -> float:
    """The value reported for histogram bucket i (durations in [2**(i-1), 2**i) ns), in µs:
    its geometric middle, so within a factor of 1.42 of any duration in it."""
    return (1 << i) / 1000 / 2 ** 0.5


def latencystats_lines(merged: dict[str, list[int]], values: dict) -> list[str]:
    if not values["latency-tracking"]:
        return []
    percentiles = [p for p in values["latency-tracking-info-percentiles"].split() if p]
    lines = []
    for name in sorted(merged):
        hist = merged[name][1:TOTAL_NS]
        total = sum(hist)
        if not total:
            continue
        shown = []
        for label in percentiles:
            want = max(1, int(float(label) / 100 * total + 0.5))
            seen = 0
            for i, n in enumerate(hist, 1):
                seen += n
                if seen >= want:
                    break
            shown.append(f"p{label}={bucket_usec(i):.3f}")
        lines.append(f"latency_percentiles_usec_{name}:" + ",".join(shown))
    return lines


def histogram_reply(merged: dict[str, list[int]], names: list[str], proto: int) -> bytes:
    """LATENCY HISTOGRAM: per command, calls and the cumulative distribution over power-of-two
    µs buckets (Valkey's hdr_iter_log from 1024 ns, doubling)."""
    wanted = set()
    for name in names:
        spec = spec_by_name(name.lower())
        if spec is None:
            continue
        wanted.add(spec.name)
        wanted.update(sub.name for sub in spec.subcommands.values())
    chosen = [n for n in sorted(merged) if (not names or n in wanted) and sum(merged[n][1:TOTAL_NS])]
    out = [resp.map_header(len(chosen), proto)]
    for name in chosen:
        hist = merged[name][1:TOTAL_NS]
        rows = []
        seen = 0
        for bound in range(10, TOTAL_NS):           # buckets up to 2**bound ns, from 1024 ns
            before = seen
            seen = sum(hist[:bound])
            if seen > before:
                rows.append((hdr_label(bound), seen))
            if seen == sum(hist):
                break
        out += [resp.bulk(name.encode()), resp.map_header(2, proto), resp.bulk(b"calls"),
                resp.integer(calls(merged[name])), resp.bulk(b"histogram_usec"), resp.map_header(len(rows), proto)]
        for label, cumulative in rows:
            out += [resp.integer(label), resp.integer(cumulative)]
    return b"".join(out)


def hdr_label(bound: int) -> int:
    """The µs label Valkey prints for the bucket ending at 2**bound ns: the highest value an
    HDR histogram with 2 significant digits keeps equivalent to it, in whole µs."""
    value = 1 << bound
    sub_bucket = max(bound - 7, 0)            # log2 of the equivalent range at this magnitude
    return (value + (1 << sub_bucket) - 1) // 1000


def stats_fields(proxy_answers: list[dict], worker_answers: list[dict]) -> dict[str, Any]:
    """What INFO needs from the merged statistics."""
    merged, errors_seen, limits = merge_counts(proxy_answers, worker_answers)
    return {"commands": merged, "errors": errors_seen, "limits": limits,
            "total_error_replies": sum(errors_seen.values())}
