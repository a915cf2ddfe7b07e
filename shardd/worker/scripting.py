"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, after Valkey 8's eval.c and script.c.

A script runs in this process's Lua runtime (lua_sandbox.py); each redis.call goes through
`Session.call`, which checks the command as scriptCall does (unknown command, arity,
`noscript`, writes from read-only scripts) and runs its worker handler with the script's
context (its db after SELECT, its RESP version, nothing blocks).

Across shards. A worker owns a range of slots; a script sent to it may touch a key of
another worker (keys it did not declare). Before a write touches a key for the first time
the key's value and TTL are saved; on the first key of another worker everything the script
wrote is put back and the script stops, and the reply is a marker (never sent to a client)
asking the proxy to run the script again under the coordinator (proxy/scripts.py), where
the same handler runs on fetched copies of every key it touches. The proxy runs those in
its own runtime: `ctx.shard == -1` there.

Markers (a reply starting with '!', which no RESP reply does), then the reply proper:
    !\\x01<reply>   the script was new to this worker: load it on the others (EVALSHA works
                   anywhere, as on one server)
    !\\x02          the script touched another worker's key: nothing of it remains here
    !\\x04<n><log><reply>  commands the script's user may not run were refused: <log>, n bytes
                   (n: 4 bytes, little-endian), is the pickled (reason, object) list for the
                   proxy's ACL LOG (context "lua")
Flags combine; the log comes right after the flags byte.

ACL inside scripts. A client whose user may not run everything sends `__script_user <name>
<rules>` just before its script, in the same frame: the script's commands are checked
against those rules (parsed once, cached by their text) as scriptCall's scriptVerifyACL does.
The default user sends nothing and its scripts check nothing.

OOM inside scripts. `Memory.refuses` says whether the worker was out of memory as the script
started (pre_command_oom_state); a script that has not written yet, and did not declare
allow-oom, gets the OOM error for a denyoom command (scriptVerifyOOM).

Runaway scripts: past busy-reply-threshold the worker answers other clients' frames with
BUSY from the Lua count hook (Worker.serve_busy), and honours SCRIPT KILL / FUNCTION KILL
for scripts that have not written.
"""
from __future__ import annotations

import copy
import hashlib
import pickle
import time
from collections import OrderedDict
from typing import Any

from .. import commands, errors, log, resp
from ..config import split_args_bytes as split_args
from ..commands import ALL, internal_command, worker_command
from ..errors import CommandError
from ..glob import glob_matcher
from ..numbers import string2ll
from ..slots import keyslot
from . import lua_sandbox, notify
from .blocking import NOWAIT
from .context import Ctx

NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
NUMKEYS_TOO_BIG = "ERR Number of keys can't be greater than number of args"
NUMKEYS_NEGATIVE = "ERR Number of keys can't be negative"
RO_WRITE_FLAG = "ERR Can not execute a script with write flag using *_ro command."
NOTBUSY = b"-NOTBUSY No scripts in execution right now.\r\n"
UNKILLABLE = (b"-UNKILLABLE Sorry the script already executed write commands against the dataset. "
              b"You can either wait the script termination or kill the server in a hard way using "
              b"the SHUTDOWN NOSAVE command.\r\n")
BUSY_EVAL = b"-BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
BUSY_FUNCTION = (b"-BUSY Valkey is busy running a script. You can only call FUNCTION KILL or "
                 b"SHUTDOWN NOSAVE.\r\n")
# scriptCall's refusals, as redis.call sees them.
UNKNOWN_FROM_SCRIPT = b"-ERR Unknown command called from script\r\n"
ARITY_FROM_SCRIPT = b"-ERR Wrong number of args calling command from script\r\n"
NOSCRIPT_FROM_SCRIPT = b"-ERR This Redis command is not allowed from script\r\n"
WRITE_FROM_RO_SCRIPT = b"-ERR Write commands are not allowed from read-only scripts.\r\n"

NEW_SCRIPT, DIVERTED, ACL_LOG = 1, 2, 4   # marker flags
MARK = 0x21                          # '!'
LRU_LENGTH = 500                     # EVAL-created scripts kept (eval.c LRU_LIST_LENGTH)
SCRATCH_TIME_LIMIT = 4.0             # seconds a script may run across shards (the hold's limit is 5)
FLAG_NAMES = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")
NO_WRITES = "no-writes"
ALLOW_OOM = "allow-oom"
OOM_EXEMPT = frozenset((NO_WRITES, ALLOW_OOM))     # no-writes implies allow-oom
OOM_REPLY = resp.error("OOM command not allowed when used memory > 'maxmemory'.")
MAX_SCRIPT_USERS = 256                             # parsed `__script_user` rules kept

# Aborts: why a script stopped before its end.
KILLED, DIVERT, FATAL, TIMEOUT, EXITING = range(1, 6)


class Script:
    __slots__ = ("sha", "body", "flags", "fn")

    def __init__(self, sha: bytes, body: bytes, flags: frozenset[str] | None, fn: Any) -> None:
        self.sha = sha
        self.body = body
        self.flags = flags            # None: no shebang (the compatibility mode)
        self.fn = fn


SCRIPTS: dict[bytes, Script] = {}
EVICTABLE: OrderedDict[bytes, None] = OrderedDict()   # EVAL-created, oldest first


def sha1hex(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def shebang_flags(body: bytes) -> tuple[frozenset[str] | None, int]:
    """(flags or None without a shebang, the shebang's length); Valkey's errors for a bad one."""
    if not body.startswith(b"#!"):
        return None, 0
    end = body.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid script shebang")
    parts = split_args(body[:end])
    if not parts:
        raise CommandError("ERR Invalid engine in script shebang")
    if parts[0] != b"#!lua":
        raise CommandError(f"ERR Unexpected engine in script shebang: {text(parts[0])}")
    flags: set[str] = set()
    for part in parts[1:]:
        if part.startswith(b"flags="):
            for flag in part[6:].split(b","):
                if not flag and part == b"flags=":
                    continue
                name = flag.decode("utf-8", "replace")
                if name not in FLAG_NAMES:
                    raise CommandError(f"ERR Unexpected flag in script shebang: {name}")
                flags.add(name)
        else:
            raise CommandError(f"ERR Unknown lua shebang option: {text(part)}")
    return frozenset(flags), end


def text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def register(body: bytes, from_eval: bool) -> tuple[Script, bool]:
    """The cached script of body, compiling it when new: (script, created now)."""
    sha = sha1hex(body)
    script = SCRIPTS.get(sha)
    if script is not None:
        if from_eval:
            if sha in EVICTABLE:
                EVICTABLE.move_to_end(sha)
        else:
            EVICTABLE.pop(sha, None)      # SCRIPT LOAD keeps it for good
        return script, False
    flags, shebang = shebang_flags(body)
    fn, err = lua_sandbox.engine().compile_eval(body[shebang:], b"@user_script")
    if fn is None:
        raise CommandError(f"ERR Error compiling script (new function): {text(err)}")
    script = Script(sha, body, flags, fn)
    if from_eval:
        while len(EVICTABLE) >= LRU_LENGTH:
            oldest, _ = EVICTABLE.popitem(last=False)
            SCRIPTS.pop(oldest, None)
        EVICTABLE[sha] = None
    SCRIPTS[sha] = script
    return script, True


def flush_scripts() -> None:
    SCRIPTS.clear()
    EVICTABLE.clear()


# -- a script run -------------------------------------------------------------------------------

def copy_value(value: Any) -> Any:
    return value if type(value) is bytes else copy.deepcopy(value)


def is_write(spec) -> bool:
    return "write" in spec.flags


def may_write(spec) -> bool:
    return "write" in spec.flags or "MAY_REPLICATE" in spec.facts.get("command_flags", ())


def sort_reads_keys(argv: list[bytes]) -> bool:
    for i in range(2, len(argv) - 1):
        if argv[i].lower() in (b"by", b"get"):
            pattern = argv[i + 1]
            if b"*" in pattern and pattern != b"#":
                return True
    return False


class Session:
    """One script run: what the bridge serves while its Lua code executes."""

    def __init__(self, ctx: Ctx, eval_mode: bool, funcname: bytes, read_only: bool, argv: list[bytes],
                 user: Any = None, allow_oom: bool = False) -> None:
        self.ctx = ctx
        self.user = user                  # the acl.User to check commands against (None: all allowed)
        self.denials: list[tuple[int, bytes]] = []    # (reason, object) for the ACL LOG
        # scriptVerifyOOM: out of memory as the script started, and no allow-oom flag
        self.deny_oom = not allow_oom and out_of_memory(ctx)
        self.eval_mode = eval_mode
        self.funcname = funcname
        self.read_only = read_only
        self.argv = argv
        self.db = ctx.db
        self.resp = 2
        self.start = time.monotonic()
        self.dirty = False
        self.killed = False
        self.timed_out = False
        self.abort = 0
        self.fatal_exc: BaseException | None = None
        self.scratch = ctx.shard < 0
        self.missing_deadline = 0.0
        slot_range = ctx.config.get("__slot_range__")
        # The slots this worker owns, when it does not own them all (keys outside: divert).
        self.local_range = slot_range if (not self.scratch and slot_range is not None
                                          and tuple(slot_range) != (0, 16383)) else None
        self.journal: dict[tuple[int, bytes], tuple[Any, int | None] | None] = {}
        # The keyspace events (and PUBLISHes) queued before the script: a diverted run takes
        # its own back.
        worker = ctx.stats.get("worker")
        self.events_before = len(worker.events.pending) if worker is not None else 0

    # -- redis.call -----------------------------------------------------------------------
    def call(self, argv: list[bytes]) -> bytes | int:
        if self.abort:
            return lua_sandbox.ABORT
        spec = commands.lookup(argv[0])
        if spec is None:
            return UNKNOWN_FROM_SCRIPT
        if spec.subcommands and len(argv) > 1:
            spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
            if spec is None:
                return UNKNOWN_FROM_SCRIPT
        if not spec.arity_ok(len(argv)):
            return ARITY_FROM_SCRIPT
        if "noscript" in spec.flags:
            return NOSCRIPT_FROM_SCRIPT
        if self.user is not None:
            from ..proxy.acl import script_denial
            denied = script_denial(self.user, spec, argv)
            if denied is not None:
                self.denials.append(denied[1:])
                return denied[0]
        if self.read_only and may_write(spec):
            return WRITE_FROM_RO_SCRIPT
        writes = is_write(spec)
        ctx = self.ctx
        if writes and not self.dirty:
            worker = ctx.stats.get("worker")
            if worker is not None and getattr(worker, "misconf", False):
                from .main import MISCONF_REPLY     # the last save failed: writes are refused
                return MISCONF_REPLY
        if self.deny_oom and not self.dirty and "denyoom" in spec.flags:
            return OOM_REPLY
        if writes:
            self.dirty = True
        keys = spec.keys(argv) if spec.has_keys() else []
        if self.local_range is not None:
            if self.foreign(spec, argv, keys):
                self.divert()
                return lua_sandbox.ABORT
            if writes:
                self.save_keys(spec, argv, keys)
        handler = LOCAL_COMMANDS.get(spec.name)
        if handler is None:
            handler = spec.worker_handler
            if handler is None or spec.route is commands.LOCAL:
                return not_in_scripts(spec, argv)
        if self.scratch and spec.route is ALL:
            if spec.name == "keys":
                return self.keys_across(argv[1])
            if spec.name == "dbsize":
                return self.dbsize_across()
            return resp.error(f"ERR '{spec.name}' cannot run in a script whose keys live on several shards")
        saved = ctx.db, ctx.proto, ctx.slot, ctx.block_mode
        ctx.db = self.db
        ctx.proto = self.resp
        ctx.slot = keyslot(keys[0]) if keys else 0
        ctx.block_mode = NOWAIT
        try:
            # Keyspace notifications and MONITOR's "lua" lines (worker/notify.py), when on.
            events = getattr(ctx.stats.get("worker"), "observer", None)
            emitter = ctx.stats.get("emitter")     # a script run across shards, in the proxy
            if handler is select_command:
                reply = select_command(ctx, argv, self)
                if events is not None:
                    events.show_script_command(spec, argv, self.db.index)
            elif emitter is not None:
                reply = notify.observe(emitter, ctx, spec, argv, handler)
            else:
                reply = handler(ctx, argv) if events is None else events.script_command(spec, handler, argv)
        except CommandError as exc:
            reply = resp.error(str(exc))
        except Exception as exc:
            log.log("warning", f"internal error in {argv[0]!r} called from a script: {exc!r}")
            reply = resp.error(f"ERR internal error in '{spec.name}': {exc.__class__.__name__}")
        finally:
            ctx.db, ctx.proto, ctx.slot, ctx.block_mode = saved
        if self.scratch and self.db.missing and not self.missing_deadline:
            # Keys to fetch: run on a little (more missing keys in one go), then rerun.
            self.missing_deadline = time.monotonic() + 0.05
        return reply

    def across(self, query: tuple[bytes, ...]) -> list | None:
        """In a script run by the proxy: every worker's reply to `query` in the script's db,
        or None the first time (the proxy asks under the hold, then the run starts again)."""
        stats = self.ctx.stats
        replies = stats.get("answers", {}).get((self.db.index, query))
        if replies is None:
            stats.setdefault("needed", set()).add((self.db.index, query))
            if not self.missing_deadline:
                self.missing_deadline = time.monotonic() + 0.05
        return replies

    def dbsize_across(self) -> bytes:
        """DBSIZE in a script run by the proxy: the workers' sizes, plus the keys this run
        created, less those it deleted (keys it wrote unread are fetched first, to know)."""
        db = self.db
        replies = self.across((b"DBSIZE",))
        unread = [key for key in db.written if key not in db.fetched]
        if replies is None or unread:
            db.missing.update(unread)
            return resp.integer(0)
        grown = sum((db.entry(key) is not None) - (db.fetched[key] is not None) for key in db.written)
        return resp.integer(sum(replies) + grown)

    def keys_across(self, pattern: bytes) -> bytes:
        """KEYS in a script run by the proxy: every worker's answer, with what this run wrote
        on top."""
        db = self.db
        replies = self.across((b"KEYS", pattern))
        if replies is None:
            return resp.EMPTY_ARRAY
        base = [key for reply in replies for key in reply]
        touched = set(db.fetched) | db.written
        found = [k for k in base if k not in touched or db.entry(k) is not None]
        listed = set(base)
        matches = glob_matcher(pattern)
        found += [k for k in touched if k not in listed and db.entry(k) is not None and matches(k)]
        return resp.bulk_array(found, 2)

    def foreign(self, spec, argv: list[bytes], keys: list[bytes]) -> bool:
        """Does the command reach beyond this worker's slots (then the script must move)?"""
        lo, hi = self.local_range
        for key in keys:
            slot = keyslot(key)
            if slot < lo or slot > hi:
                return True
        name = spec.name
        if spec.route is ALL or name == "swapdb":
            return True
        return name in ("sort", "sort_ro") and sort_reads_keys(argv)

    def save_keys(self, spec, argv: list[bytes], keys: list[bytes]) -> None:
        """Copy-on-first-write: what a diverted script must put back."""
        db = self.db
        for key in keys:
            self.save(db, key)
        name = spec.name
        if name == "move":                      # the key lands in another db of this worker
            self.save_in_db(argv[2], argv[1])
        elif name == "copy":
            for i in range(3, len(argv) - 1):
                if argv[i].lower() == b"db":
                    self.save_in_db(argv[i + 1], argv[2])

    def save_in_db(self, index_arg: bytes, key: bytes) -> None:
        index = string2ll(index_arg)
        if index is not None and 0 <= index < len(self.ctx.dbs):
            self.save(self.ctx.dbs[index], key)

    def save(self, db, key: bytes) -> None:
        entry = (db.index, key)
        if entry in self.journal:
            return
        slot = keyslot(key)
        value = db.lookup(key, slot)
        self.journal[entry] = None if value is None else (copy_value(value), db.get_expire(key, slot))

    def divert(self) -> None:
        """Put back every key the script wrote and stop it."""
        dbs = self.ctx.dbs
        for (index, key), saved in self.journal.items():
            db = dbs[index]
            slot = keyslot(key)
            if saved is None:
                if db.lookup(key, slot) is not None:
                    db.delete(key, slot)
            else:
                value, when = saved
                db.store_expiring(key, slot, value, when)
        self.journal.clear()
        worker = self.ctx.stats.get("worker")
        if worker is not None:       # the run across shards raises them again, once
            del worker.events.pending[self.events_before:]
        self.abort = DIVERT

    # -- the count hook -------------------------------------------------------------------
    def tick(self) -> int:
        if self.abort:
            return 1
        now = time.monotonic()
        if self.scratch:
            if now - self.start > SCRATCH_TIME_LIMIT or (self.missing_deadline and now > self.missing_deadline):
                self.abort = TIMEOUT
                return 1
            return 0
        if not self.timed_out:
            threshold = self.ctx.config.get("busy-reply-threshold", 5000) or 0
            elapsed = (now - self.start) * 1000
            if threshold <= 0 or elapsed < threshold:
                return 0
            self.timed_out = True
            log.log("warning", f"Slow script detected: still in execution after {int(elapsed)} milliseconds. "
                               f"You can try killing the script using the "
                               f"{'SCRIPT KILL' if self.eval_mode else 'FUNCTION KILL'} command. "
                               f"Script name is: {text(self.funcname)}.")
        worker = self.ctx.stats.get("worker")
        if worker is not None:
            worker.serve_busy(self.busy_reply)
            if not worker.running:          # SHUTDOWN: the worker stops, the script with it
                self.abort = EXITING
                return 1
        if self.killed:
            self.abort = KILLED
            return 1
        return 0

    def busy_reply(self, argv: list[bytes]) -> bytes:
        """What a command of another client gets while this script is busy."""
        name = argv[0].lower()
        sub = argv[1].lower() if len(argv) == 2 else b""
        if name == b"script" and sub == b"kill":
            return self.kill(True)
        if name == b"function" and sub == b"kill":
            return self.kill(False)
        if name == b"function" and sub == b"stats":
            if self.eval_mode:
                return BUSY_EVAL
            from .functions import stats_reply
            return stats_reply(self.ctx.proto, self)
        if name in (b"__watch", b"__unwatch"):
            return commands.INTERNAL[name].worker_handler(self.ctx, argv)
        return BUSY_EVAL if self.eval_mode else BUSY_FUNCTION

    def kill(self, from_script_kill: bool) -> bytes:
        if self.dirty:
            return UNKILLABLE
        if from_script_kill and not self.eval_mode:
            return BUSY_FUNCTION
        if not from_script_kill and self.eval_mode:
            return BUSY_EVAL
        self.killed = True
        return resp.OK

    def abort_message(self) -> bytes:
        if self.abort == KILLED:
            message = f"Script killed by user with {'SCRIPT KILL' if self.eval_mode else 'FUNCTION KILL'}."
            log.log("notice", message)
            return message.encode()
        if self.abort == TIMEOUT:
            return b"Script ran too long across shards (a cross-shard hold is limited)"
        if self.abort == EXITING:
            return b"Script stopped: the server is shutting down"
        return b"Script stopped"

    def fatal(self, exc: BaseException) -> None:
        if self.fatal_exc is None:
            self.fatal_exc = exc
        self.abort = FATAL


def not_in_scripts(spec, argv: list[bytes]) -> bytes:
    if spec.proxy_handler is not None or spec.worker_handler is not None:
        return resp.error(f"ERR '{spec.name}' cannot be called from scripts on shardd")
    return resp.error(errors.unknown_command(argv[0], argv[1:]))


# -- commands the proxy answers for clients, answered here for scripts --------------------------

def ping_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        raise CommandError(errors.wrong_arity("ping"))
    return resp.bulk(argv[1]) if len(argv) == 2 else b"+PONG\r\n"


def echo_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.bulk(argv[1])


def time_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    now = time.time()
    seconds = int(now)
    return resp.bulk_array([b"%d" % seconds, b"%d" % int((now - seconds) * 1_000_000)], 2)


def select_command(ctx: Ctx, argv: list[bytes], session: Session) -> bytes:
    index = string2ll(argv[1])
    if index is None or not -(1 << 31) <= index < (1 << 31):
        raise CommandError(errors.NOT_INTEGER)
    if not 0 <= index < ctx.config["databases"]:
        raise CommandError(errors.DB_INDEX)
    session.db = ctx.dbs[index]
    return resp.OK


def publish_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """PUBLISH from a script: the message goes to every proxy's subscribers once the script is
    done, with the worker's keyspace notifications (a script run across shards: the proxy
    publishes it). A worker has no clients of its own, so, as a cluster node counts only its
    own clients' subscriptions, the reply counts none: 0."""
    worker = ctx.stats.get("worker")
    if worker is not None:
        worker.events.pending.append((argv[1], argv[2]))
        worker.events.queued = True
    else:
        ctx.stats.setdefault("published", []).append((argv[1], argv[2]))
    return resp.ZERO


def spublish_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """SPUBLISH from a script: as PUBLISH, to the shard channel's (SSUBSCRIBE) subscribers."""
    return publish_command(ctx, [argv[0], notify.ShardChannel(argv[1]), argv[2]])


LOCAL_COMMANDS = {"ping": ping_command, "echo": echo_command, "time": time_command, "select": select_command,
                  "publish": publish_command, "spublish": spublish_command}


# -- running --------------------------------------------------------------------------------

def numkeys_of(argv: list[bytes], not_integer: str = errors.NOT_INTEGER) -> int:
    numkeys = string2ll(argv[2])
    if numkeys is None:
        raise CommandError(not_integer)
    if numkeys > len(argv) - 3:
        raise CommandError(NUMKEYS_TOO_BIG)
    if numkeys < 0:
        raise CommandError(NUMKEYS_NEGATIVE)
    return numkeys


def read_only_run(flags: frozenset[str] | None, ro: bool) -> bool:
    """scriptPrepareForRun's checks; whether writes are refused."""
    if flags is not None and NO_WRITES not in flags and ro:
        raise CommandError(RO_WRITE_FLAG)
    return ro or (flags is not None and NO_WRITES in flags)


def out_of_memory(ctx: Ctx) -> bool:
    """Was the server out of memory when the running command started (pre_command_oom_state)?
    A worker knows from its Memory; the proxy's cross-shard run is told in ctx.stats."""
    worker = ctx.stats.get("worker")
    if worker is None:
        return bool(ctx.stats.get("oom"))
    return worker.limited and worker.memory.oom


def denies_oom(spec, argv: list[bytes]) -> bool:
    """Is this EVAL/EVALSHA/FCALL denyoom (evalGetCommandFlags, fcallGetCommandFlags)? Only a
    script that declared flags, without no-writes or allow-oom, is; a script unknown here
    counts as one without flags (its run reports what is wrong)."""
    name = spec.name
    if name.startswith("fcall"):
        from .functions import CURRENT
        fn = CURRENT.functions.get(argv[1].lower()) if len(argv) > 1 else None
        flags = None if fn is None else fn.flags
    elif name.startswith("evalsha"):
        script = SCRIPTS.get(argv[1].lower()) if len(argv) > 1 else None
        flags = None if script is None else script.flags
    elif name.startswith("eval") and len(argv) > 1:
        try:
            flags = shebang_flags(argv[1])[0]
        except CommandError:
            return False
    else:
        return False
    return flags is not None and not flags & OOM_EXEMPT


# -- the user a script runs as --------------------------------------------------------------

SCRIPT_USERS: OrderedDict[tuple[bytes, bytes], Any] = OrderedDict()


@internal_command("__script_user", 3)
def script_user_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    """`__script_user <name> <rules>`: the client's next command (its script, in this frame)
    runs as this user. The reply is ignored."""
    entry = (argv[1], argv[2])
    user = SCRIPT_USERS.get(entry)
    if user is None:
        from ..proxy.acl import user_from_permissions
        user = SCRIPT_USERS[entry] = user_from_permissions(argv[1], argv[2])
        while len(SCRIPT_USERS) > MAX_SCRIPT_USERS:
            SCRIPT_USERS.popitem(last=False)
    ctx.stats["script_user"] = (ctx.client_id, user)
    return b""


def take_script_user(ctx: Ctx) -> Any:
    """The user this client's script runs as (None: unrestricted); read once, by the script."""
    found = ctx.stats.pop("script_user", None)
    if found is None or found[0] != ctx.client_id:
        return None
    return found[1]


def acl_log_marker(ctx: Ctx, flags: int) -> tuple[int, bytes]:
    """(flags, log bytes) for the marker: the script's refused commands, if any."""
    denials = ctx.stats.pop("acl_denials", None)
    if not denials:
        return flags, b""
    payload = pickle.dumps(denials, pickle.HIGHEST_PROTOCOL)
    return flags | ACL_LOG, len(payload).to_bytes(4, "little") + payload


def run(ctx: Ctx, fn: Any, eval_mode: bool, funcname: bytes, read_only: bool, argv: list[bytes],
        numkeys: int, user: Any = None, allow_oom: bool = False) -> tuple[bytes, bool]:
    """Run a compiled script or function: (its reply, whether it must move to the coordinator).
    Commands the user may not run are left in ctx.stats["acl_denials"]."""
    engine = lua_sandbox.engine()
    session = Session(ctx, eval_mode, funcname, read_only, argv, user, allow_oom)
    keys = argv[3:3 + numkeys]
    args = argv[3 + numkeys:]
    previous = engine.session
    engine.session = session
    try:
        runner = engine.run_eval if eval_mode else engine.run_function
        result = runner(fn, ctx.proto, *engine.pass_arguments(keys, args))
    finally:
        engine.session = previous
        if session.denials:
            ctx.stats["acl_denials"] = session.denials
    engine.step_gc()
    if session.fatal_exc is not None:
        exc = session.fatal_exc
        if not isinstance(exc, Exception):
            raise exc
        log.log("warning", f"internal error while running a script: {exc!r}")
        return resp.error(f"ERR internal error while running a script: {exc.__class__.__name__}"), False
    if session.abort == DIVERT:
        return b"", True
    if session.abort == TIMEOUT:
        ctx.stats["timed_out"] = True       # the proxy writes nothing of a run it stopped
    status = result[0]
    if status == 0 or status == 3:        # 3: it caught the abort's error and returned
        return result[1], False
    return error_reply(funcname, result), False


def error_reply(funcname: bytes, result: tuple) -> bytes:
    """luaCallFunction's error reply from the error table's fields."""
    _, msg, source, line = result[:4]
    if len(result) > 4 and result[4] is not None:
        return resp.error(f"ERR Error running script {text(funcname)}, {text(result[4])[:100]}")
    message = text(msg) if msg is not None else "ERR unknown error"
    if line is not None and source is not None:
        message += f" script: {text(funcname)}, on {text(source)}:{text(line)}."
    return resp.error(message)


def marked(reply: bytes, flags: int, log: bytes = b"") -> bytes:
    return bytes((MARK, flags)) + log + reply


def finish(ctx: Ctx, reply: bytes, diverted: bool, created: bool) -> bytes:
    """A script's reply as the worker sends it: marked when the proxy has work to do."""
    flags, log = acl_log_marker(ctx, NEW_SCRIPT if created else 0)
    if diverted:
        return marked(b"", (flags | DIVERTED) & ~ACL_LOG)     # the rerun logs its own refusals
    if flags:
        return marked(reply, flags, log)
    return reply


def multi_worker(ctx: Ctx) -> bool:
    slot_range = ctx.config.get("__slot_range__")
    return ctx.shard >= 0 and slot_range is not None and tuple(slot_range) != (0, 16383)


@worker_command("eval", "evalsha", "eval_ro", "evalsha_ro")
def eval_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    user = take_script_user(ctx)
    name = argv[0].lower()
    evalsha = name.startswith(b"evalsha")
    ro = name.endswith(b"_ro")
    numkeys = numkeys_of(argv)
    created = False
    if evalsha:
        script = SCRIPTS.get(argv[1].lower()) if len(argv[1]) == 40 else None
        if script is None:
            raise CommandError(NOSCRIPT)
    else:
        script, created = register(argv[1], from_eval=True)
    read_only = read_only_run(script.flags, ro)
    allow_oom = script.flags is not None and ALLOW_OOM in script.flags
    reply, diverted = run(ctx, script.fn, True, script.sha, read_only, argv, numkeys, user, allow_oom)
    if ctx.shard < 0:           # the proxy's cross-shard run: it takes the ACL log itself
        return reply
    return finish(ctx, reply, diverted, created and (diverted or multi_worker(ctx)))


# -- SCRIPT -----------------------------------------------------------------------------------

@worker_command("script|load")
def script_load(ctx: Ctx, argv: list[bytes]) -> bytes:
    script, _ = register(argv[2], from_eval=False)
    return resp.bulk(script.sha)


@worker_command("script|exists")
def script_exists(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.array([resp.ONE if sha.lower() in SCRIPTS else resp.ZERO for sha in argv[2:]])


@worker_command("script|flush")
def script_flush(ctx: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 3 or (len(argv) == 3 and argv[2].lower() not in (b"sync", b"async")):
        raise CommandError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    flush_scripts()
    return resp.OK


@worker_command("script|kill")
def script_kill(ctx: Ctx, argv: list[bytes]) -> bytes:
    return NOTBUSY


@worker_command("script|debug")
def script_debug(ctx: Ctx, argv: list[bytes]) -> bytes:
    mode = argv[2].lower()
    if mode == b"no":
        return resp.OK
    if mode in (b"yes", b"sync"):
        raise CommandError("ERR SCRIPT DEBUG (the Lua debugger) is not supported by shardd")
    raise CommandError("ERR Use SCRIPT DEBUG YES/SYNC/NO")


SCRIPT_HELP = [
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
]


def help_reply(lines: list[str]) -> bytes:
    return resp.array([resp.status(line) for line in lines])


@worker_command("script|help")
def script_help(ctx: Ctx, argv: list[bytes]) -> bytes:
    return help_reply(SCRIPT_HELP)


@internal_command("__script_body", 2)
def script_body(ctx: Ctx, argv: list[bytes]) -> bytes:
    """The body of a cached script (the proxy runs EVALSHA across shards itself)."""
    script = SCRIPTS.get(argv[1].lower())
    return resp.null(ctx.proto) if script is None else resp.bulk(script.body)


from . import functions  # noqa: E402,F401  (FUNCTION/FCALL share this module's runner)

