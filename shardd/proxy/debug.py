"""DEBUG, behind `enable-debug-command`: the subcommands tools and test suites use.

SLEEP stops the proxy that received it (every client of that proxy waits, as every client of
a Valkey server does; with io-threads > 1 the other proxies go on). Subcommands about a key
run on the key's worker, POPULATE and SET-ACTIVE-EXPIRE on every worker. RELOAD checks its
options and answers OK without saving and reloading (persistence is not wired to it yet).
"""
from __future__ import annotations

import os
import random
import re
import time

from .. import log, resp
from ..commands import proxy_command
from ..config import parse_memory
from ..errors import CommandError
from ..glob import glob_match
from ..numbers import string2ll
from ..slots import keyslot
from .connection import is_local_address
from .fanout import all_ok, first_reply, to_all
from .server import proxy_query
from .slowlog import outside_exec, subcommand_syntax_error

NOT_ALLOWED = ("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", "
               "you can run it from a local connection, otherwise you need to set this option in the "
               "configuration file, and then restart the server.")

DEBUG_HELP = [
    "AOF-FLUSH-SLEEP <microsec>",
    "    Server will sleep before flushing the AOF, this is used for testing.",
    "ASSERT",
    "    Crash by assertion failed.",
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "CONFIG-REWRITE-FORCE-ALL",
    "    Like CONFIG REWRITE but writes all configuration options, including",
    "    keywords not listed in original configuration file or default values.",
    "CRASH-AND-RECOVER [<milliseconds>]",
    "    Hard crash and restart after a <milliseconds> delay (default 0).",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "ERROR <string>",
    "    Return a Redis protocol error with <string> as message. Useful for clients",
    "    unit tests to simulate Redis errors.",
    "LEAK <string>",
    "    Create a memory leak of the input string.",
    "LOG <message>",
    "    Write <message> to the server log.",
    "HTSTATS <dbid> [full]",
    "    Return hash table statistics of the specified Redis database.",
    "HTSTATS-KEY <key> [full]",
    "    Like HTSTATS but for the hash table stored at <key>'s value.",
    "LOADAOF",
    "    Flush the AOF buffers on disk and reload the AOF in memory.",
    "REPLICATE <string>",
    "    Replicates the provided string to replicas, allowing data divergence.",
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "DROP-CLUSTER-PACKET-FILTER <packet-type>",
    "    Drop all packets that match the filtered type. Set to -1 allow all packets.",
    "CLOSE-CLUSTER-LINK-ON-PACKET-DROP <0|1>",
    "    This is valid only when DROP-CLUSTER-PACKET-FILTER is set to a valid packet type.",
    "    When set to 1, the cluster link is closed after dropping a packet based on the filter.",
    "OOM",
    "    Crash the server simulating an out-of-memory error.",
    "PANIC",
    "    Crash the server simulating a panic.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "PROTOCOL <type>",
    "    Reply with a test value of the specified type. <type> can be: string,",
    "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
    "    true, false.",
    "RELOAD [option ...]",
    "    Save the RDB on disk and reload it back to memory. Valid <option> values:",
    "    * MERGE: conflicting keys will be loaded from RDB.",
    "    * NOFLUSH: the existing database will not be removed before load, but",
    "      conflicting keys will generate an exception and kill the server.",
    "    * NOSAVE: the database will be loaded from an existing RDB file.",
    "    Examples:",
    "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
    "      the database.",
    "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an",
    "      existing RDB file.",
    "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB",
    "      file to the database.",
    "RESTART [<milliseconds>]",
    "    Graceful restart: save config, db, restart after a <milliseconds> delay (default 0).",
    "SDSLEN <key>",
    "    Show low level SDS string info representing `key` and value.",
    "SEGFAULT",
    "    Crash the server with sigsegv.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
    "SET-SKIP-CHECKSUM-VALIDATION <0|1>",
    "    Enables or disables checksum checks for RDB files and RESTORE's payload.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "STRINGMATCH-LEN",
    "    Run a fuzz tester against the stringmatchlen() function.",
    "STRUCTSIZE",
    "    Return the size of different Redis core C structures.",
    "LISTPACK <key>",
    "    Show low level info about the listpack encoding of <key>.",
    "QUICKLIST <key> [<0|1>]",
    "    Show low level info about the quicklist encoding of <key>.",
    "    The optional argument (0 by default) sets the level of detail",
    "CLIENT-EVICTION",
    "    Show low level client eviction pools info (maxmemory-clients).",
    "PAUSE-CRON <0|1>",
    "    Stop periodic cron job processing.",
    "REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>",
    "    Sets the time (in milliseconds) to wait between client reply buffer peak resets.",
    "    In case NEVER is provided the last observed peak will never be reset",
    "    In case RESET is provided the peak reset time will be restored to the default value",
    "REPLYBUFFER RESIZING <0|1>",
    "    Enable or disable the reply buffer resize cron job",
    "DICT-RESIZING <0|1>",
    "    Enable or disable the main dict and expire dict resizing.",
]

_STRTOD = re.compile(rb"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.I)


def strtod(text: bytes) -> float:
    """C's strtod as DEBUG SLEEP uses it: the leading number, 0 when there is none."""
    match = _STRTOD.match(text)
    return float(match.group()) if match else 0.0


def atoi(text: bytes) -> int:
    match = re.match(rb"\s*[+-]?\d+", text)
    return int(match.group()) if match else 0


def debug_allowed(conn) -> bool:
    """allowProtectedAction(enable-debug-command): yes, or local and a local client."""
    setting = conn.proxy.config.values["enable-debug-command"]
    if setting == "yes":
        return True
    if setting == "local":
        return "unix" in conn.flags or is_local_address(tuple(conn.addr.rsplit(":", 1)))
    return False


def on_key(conn, argv: list[bytes]) -> None:
    """A subcommand about argv[2]'s value, run on its worker."""
    outside_exec(conn, "debug")
    slot = keyslot(argv[2])
    conn.fanout([(conn.proxy.slotmap[slot], [b"__debug", *argv[1:]], slot)], first_reply)


@proxy_command("debug")
def debug(conn, argv: list[bytes]) -> bytes | None:
    if not debug_allowed(conn):
        raise CommandError(NOT_ALLOWED)
    sub = argv[1].lower()
    n = len(argv)
    handler = SUBCOMMANDS.get(sub)
    if handler is None or not handler[1](n):
        raise CommandError(subcommand_syntax_error(argv))
    return handler[0](conn, argv)


def debug_help(conn, argv):
    text = ["DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", *DEBUG_HELP,
            "HELP", "    Print this help."]
    return resp.array([resp.status(line) for line in text])


def debug_sleep(conn, argv):
    seconds = strtod(argv[2])
    usec = int(seconds * 1_000_000) if seconds == seconds and abs(seconds) < 1e12 else 0
    if usec > 0:
        time.sleep(usec / 1_000_000)
    return resp.OK


def debug_object(conn, argv):
    on_key(conn, argv)
    return None


def debug_set_active_expire(conn, argv):
    outside_exec(conn, "debug")
    to_all(conn, [b"__ops", b"set-active-expire", b"1" if atoi(argv[2]) else b"0"], all_ok)
    return None


def debug_populate(conn, argv):
    count = string2ll(argv[2])
    if count is None:
        raise CommandError("ERR value is not an integer or out of range")
    if count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    prefix = argv[3] if len(argv) > 3 else b"key"
    size = 0
    if len(argv) > 4:
        size = string2ll(argv[4])
        if size is None:
            raise CommandError("ERR value is not an integer or out of range")
        if size < 0:
            raise CommandError("ERR value is out of range, must be positive")
    outside_exec(conn, "debug")
    parts = [(w, [b"__debug", b"populate", str(count).encode(), prefix, str(size).encode()], lo)
             for w, (lo, _) in enumerate(conn.proxy.info["slot_ranges"])]
    conn.fanout(parts, all_ok)
    return None


@proxy_query("change_replid")
def change_replid(proxy, replid: str, asker) -> bool:
    proxy.info["master_replid"] = replid
    return True


def debug_change_repl_id(conn, argv):
    outside_exec(conn, "debug")
    log.log("notice", "Changing replication IDs after receiving DEBUG change-repl-id")
    conn.proxy.ask_all(conn, "change_replid", os.urandom(20).hex(), lambda answers: resp.OK)
    return None


def debug_reload(conn, argv):
    for opt in argv[2:]:
        if opt.lower() not in (b"merge", b"noflush", b"nosave"):
            raise CommandError("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.")
    log.log("notice", "DB reloaded by DEBUG RELOAD")
    return resp.OK


def debug_quicklist_packed_threshold(conn, argv):
    try:
        size = parse_memory(argv[2].decode("utf-8", "replace"))
    except ValueError:
        size = -1
    if size < 0 or size > (1 << 32) - (1 << 20):
        raise CommandError("ERR argument must be a memory value bigger than 1 and smaller than 4gb")
    return resp.OK


def debug_stringmatch_len(conn, argv):
    """stringmatchlen_fuzz_test: random patterns against random strings, for crashes."""
    rng = random.Random()
    for _ in range(1000):
        pattern = bytes(rng.randrange(256) for _ in range(rng.randrange(32)))
        text = bytes(rng.randrange(256) for _ in range(rng.randrange(32)))
        glob_match(pattern, text, nocase=bool(rng.randrange(2)))
    return resp.status(b"Apparently Valkey did not crash: test passed")


def debug_error(conn, argv):
    return b"-" + argv[2].replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def debug_log(conn, argv):
    log.log("warning", f"DEBUG LOG: {argv[2].decode('utf-8', 'replace')}")
    return resp.OK


def debug_protocol(conn, argv):
    proto = conn.proto
    kind = argv[2].lower()
    replies = {
        b"string": resp.bulk(b"Hello World"),
        b"integer": resp.integer(12345),
        b"double": resp.double(3.141, proto),
        b"bignum": (b"(1234567999999999999999999999999999999\r\n" if proto == 3
                    else resp.bulk(b"1234567999999999999999999999999999999")),
        b"null": resp.null(proto),
        b"array": resp.array([resp.integer(j) for j in range(3)]),
        b"set": resp.set_header(3, proto) + b"".join(resp.integer(j) for j in range(3)),
        b"map": resp.map_header(3, proto) + b"".join(resp.integer(j) + resp.boolean(j == 1, proto)
                                                     for j in range(3)),
        b"attrib": ((b"|1\r\n" + resp.bulk(b"key-popularity") + resp.array([resp.bulk(b"key:123"),
                                                                              resp.integer(90)])
                     if proto == 3 else b"") + resp.bulk(b"Some real reply following the attribute")),
        b"true": resp.boolean(True, proto),
        b"false": resp.boolean(False, proto),
        b"verbatim": resp.verbatim(b"This is a verbatim\nstring", proto),
    }
    if kind == b"push":
        if proto < 3:
            raise CommandError("ERR RESP2 is not supported by this command")
        return (resp.push_header(2, proto) + resp.bulk(b"server-cpu-usage") + resp.integer(42)
                + resp.bulk(b"Some real reply following the push reply"))
    if kind not in replies:
        raise CommandError("ERR Wrong protocol type name. Please use one of the following: "
                           "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false")
    return replies[kind]


def ok(conn, argv):
    return resp.OK


# name → (handler, accepted argument counts)
SUBCOMMANDS = {
    b"help": (debug_help, lambda n: n == 2),
    b"sleep": (debug_sleep, lambda n: n == 3),
    b"object": (debug_object, lambda n: n in (3, 4)),
    b"listpack": (debug_object, lambda n: n == 3),
    b"quicklist": (debug_object, lambda n: n in (3, 4)),
    b"set-active-expire": (debug_set_active_expire, lambda n: n == 3),
    b"populate": (debug_populate, lambda n: 3 <= n <= 5),
    b"change-repl-id": (debug_change_repl_id, lambda n: n == 2),
    b"reload": (debug_reload, lambda n: n >= 2),
    b"quicklist-packed-threshold": (debug_quicklist_packed_threshold, lambda n: n == 3),
    b"stringmatch-len": (debug_stringmatch_len, lambda n: n == 2),
    b"error": (debug_error, lambda n: n == 3),
    b"log": (debug_log, lambda n: n == 3),
    b"protocol": (debug_protocol, lambda n: n == 3),
    b"jmap": (ok, lambda n: n == 2),
    b"set-skip-checksum-validation": (ok, lambda n: n == 3),
    b"set-disable-deny-scripts": (ok, lambda n: n == 3),
    b"pause-cron": (ok, lambda n: n == 3),
    b"dict-resizing": (ok, lambda n: n == 3),
    b"replybuffer": (ok, lambda n: n == 4),
}
