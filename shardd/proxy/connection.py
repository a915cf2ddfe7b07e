"""Connection commands, answered by the proxy: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT."""
from __future__ import annotations

import ipaddress
import time

from .. import VALKEY_VERSION, errors, resp
from .. import commands
from ..commands import COMMANDS, proxy_command
from ..errors import CommandError
from ..numbers import arg_int, arg_ll, string2ll
from .server import REPLY_OFF, REPLY_SKIP, REPLY_SKIP_NEXT, proxy_query


@proxy_command("ping")
def ping(conn, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        return resp.error(errors.wrong_arity("ping"))
    if conn.pubsub is not None:            # RESP2 subscribed mode answers ["pong", message]
        from .pubsub import ping_reply
        reply = ping_reply(conn, argv)
        if reply is not None:
            return reply
    return resp.PONG if len(argv) == 1 else resp.bulk(argv[1])


@proxy_command("echo")
def echo(conn, argv: list[bytes]) -> bytes:
    return resp.bulk(argv[1])


def check_password(conn, user: bytes, password: bytes, command: bytes = b"auth") -> bool:
    """Log the client in as the ACL user (proxy/acl.py); False (and an ACL LOG entry) if refused."""
    return conn.proxy.acl.authenticate(conn, user, password, command)


@proxy_command("auth")
def auth(conn, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        return resp.error(errors.SYNTAX)
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    if len(argv) == 2 and conn.proxy.acl.default_nopass():
        return resp.error("ERR AUTH <password> called without any password configured for the "
                          "default user. Are you sure your configuration is correct?")
    if not check_password(conn, user, password, argv[0]):
        return resp.error(errors.WRONGPASS)
    return resp.OK


@proxy_command("hello")
def hello(conn, argv: list[bytes]) -> bytes:
    proto = conn.proto
    i = 1
    if len(argv) > 1:
        try:
            proto = int(argv[1])
        except ValueError:
            return resp.error("ERR Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return resp.error(errors.NOPROTO)
        i = 2
    name = None
    while i < len(argv):
        opt = argv[i].upper()
        more = len(argv) - i - 1
        if opt == b"AUTH" and more >= 2:
            if not check_password(conn, argv[i + 1], argv[i + 2], argv[0]):
                return resp.error(errors.WRONGPASS)
            i += 3
        elif opt == b"SETNAME" and more >= 1:
            name = argv[i + 1]
            if not valid_client_name(name):
                return resp.error(errors.BAD_CLIENT_NAME)
            i += 2
        else:
            return resp.error(f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'")
    if not conn.authenticated:
        return resp.error("NOAUTH HELLO must be called with the client already authenticated, otherwise "
                          "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
                          "client and select the RESP protocol version at the same time")
    if name is not None:
        conn.name = name
    if proto != conn.proto:
        conn.state_changed()
        conn.proto = proto
    return resp.encode({"server": "valkey", "version": VALKEY_VERSION, "proto": proto, "id": conn.id,
                        "mode": "standalone", "role": "master", "modules": []}, proto)


@proxy_command("select")
def select(conn, argv: list[bytes]) -> bytes:
    index = arg_int(argv[1])
    if not 0 <= index < conn.proxy.config.values["databases"]:
        return resp.error(errors.DB_INDEX)
    if index != conn.db:
        conn.state_changed()
        conn.db = index
    return resp.OK


@proxy_command("quit")
def quit_(conn, argv: list[bytes]) -> bytes:
    conn.closing = True
    return resp.OK


@proxy_command("reset")
def reset(conn, argv: list[bytes]) -> bytes:
    conn.state_changed()
    conn.db = 0
    conn.proto = 2
    conn.name = b""
    conn.proxy.acl.greet(conn)          # the default user, authenticated if it needs no password
    conn.flags.discard("no-evict")
    set_no_touch(conn, False)
    from .transactions import end_transaction
    end_transaction(conn)
    if conn.pubsub is not None:            # no subscriptions, tracking or MONITOR (pubsub.py)
        conn.proxy.pubsub.forget(conn)
    return resp.status(b"RESET")


# -- CLIENT ---------------------------------------------------------------------------------
def valid_client_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def pending_query_bytes(conn) -> int:
    """Bytes read from the client and not yet made into commands (Valkey's qbuf)."""
    if conn.strict is not None:
        return conn.strict.buffered()
    return conn.reader.len() if conn.carry else 0


def unsent_reply_bytes(conn) -> int:
    """Replies computed and not yet taken by the socket (Valkey's omem)."""
    queued = sum(len(e.data) for e in conn.out if e.data is not None)
    if conn.transport is None or conn.closed:
        return queued
    return queued + conn.transport.get_write_buffer_size()


# What a client costs beside its buffers (CLIENT LIST's rbs): tot-mem and maxmemory-clients.
CLIENT_OVERHEAD = 1024


def client_memory(conn) -> int:
    """getClientMemoryUsage: the overhead, the pending query and the unsent replies (tot-mem)."""
    return CLIENT_OVERHEAD + pending_query_bytes(conn) + unsent_reply_bytes(conn)


def client_info_line(conn) -> str:
    now = time.time()
    flags = "".join(letter for flag, letter in (("unix", "U"), ("no-evict", "e"), ("no-touch", "T"))
                    if flag in conn.flags)
    if conn.id in conn.proxy.blocked or conn.id in conn.proxy.postponed:
        flags += "b"
    if conn.multi is not None:
        flags += "x"
    from .pubsub import client_list_fields
    front, tracking, sub, psub, ssub, redir = client_list_fields(conn)
    flags = front + flags + tracking or "N"
    spec = commands.lookup_argv(conn.last_argv)
    cmd = spec.name if spec is not None else "NULL"
    qbuf = pending_query_bytes(conn)
    omem = unsent_reply_bytes(conn)
    multi = len(conn.multi) if conn.multi is not None else -1
    events = "rw" if omem else "r"
    return (f"id={conn.id} addr={conn.addr} laddr={conn.laddr} fd={conn.fd} "
            f"name={conn.name.decode('utf-8', 'replace')} age={int(now - conn.created)} "
            f"idle={int(now - conn.last_interaction)} flags={flags} db={conn.db} sub={sub} psub={psub} ssub={ssub} "
            f"multi={multi} watch=0 qbuf={qbuf} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 "
            f"obl=0 oll={sum(1 for e in conn.out if e.data)} omem={omem} tot-mem={CLIENT_OVERHEAD + qbuf + omem} "
            f"events={events} cmd={cmd} "
            f"user={conn.user} redir={redir} resp={conn.proto} "
            f"lib-name={conn.lib_name.decode('utf-8', 'replace')} lib-ver={conn.lib_ver.decode('utf-8', 'replace')}")


def is_local_address(peer) -> bool:
    """connIsLocal: a unix socket, or a TCP peer on 127.0.0.0/8 or ::1."""
    if not isinstance(peer, tuple):
        return True
    try:
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback


def protected_mode_denies(values: dict, peer, default_nopass: bool | None = None) -> bool:
    """protected-mode as Valkey 8 applies it on accept: protected mode on, no password for the
    default user (`default_nopass`, the ACL's; else from requirepass), and a client that is not
    local. (bind is not looked at: Valkey dropped that condition in 6.0, its comment
    notwithstanding.)"""
    if default_nopass is None:
        default_nopass = not values.get("requirepass")
    return bool(values.get("protected-mode")) and default_nopass and not is_local_address(peer)


def client_type(c) -> str:
    """getClientType for a client of ours: subscribed to any channel or pattern, "pubsub"."""
    return "pubsub" if c.obuf_class == "pubsub" else "normal"


@proxy_query("client_list")
def local_client_lines(proxy, query: tuple, asker) -> list[tuple[int, str]]:
    ids, kind = query
    return [(c.id, client_info_line(c)) for c in proxy.clients.values()
            if (ids is None or c.id in ids) and (kind is None or client_type(c) == kind)]


def client_matches(c, key: bytes, value: bytes) -> bool:
    text = value.decode("utf-8", "replace")
    if key == b"ID":
        return str(c.id) == text
    if key == b"ADDR":
        return c.addr == text
    if key == b"LADDR":
        return c.laddr == text
    if key == b"USER":
        return c.user == text
    if key == b"TYPE":
        return text.lower() == client_type(c)
    if key == b"MAXAGE":
        return time.time() - c.created >= int(value)
    return key == b"SKIPME"


@proxy_query("client_kill")
def kill_local_clients(proxy, filters: dict[bytes, bytes], asker) -> int:
    """Close this proxy's clients matching every filter; the caller last (its reply first)."""
    skipme = filters.get(b"SKIPME", b"yes").lower() == b"yes"
    killed = 0
    for c in list(proxy.clients.values()):
        if c is asker and skipme:
            continue
        if all(client_matches(c, k, v) for k, v in filters.items()):
            killed += 1
            if c is asker:
                c.closing = True
            elif c.transport is not None:
                c.transport.close()
    return killed


def parse_on_off(value: bytes) -> bool:
    v = value.upper()
    if v not in (b"ON", b"OFF"):
        raise CommandError(errors.SYNTAX)
    return v == b"ON"


CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ID", "    Return the ID of the current connection.",
    "INFO", "    Return information about the current client connection.",
    "GETNAME", "    Return the name of the current connection.",
    "LIST [options ...]", "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]", "      Return clients of specified IDs only.",
    "UNPAUSE", "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]", "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
    "SETNAME <name>", "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>", "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.", "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)", "    Will not touch LRU/LFU stats when this mode is on.",
    "HELP", "    Print this help.",
]


@proxy_command("client")
def client(conn, argv: list[bytes]) -> bytes | None:
    sub = argv[1].lower()
    handler = CLIENT_SUBCOMMANDS.get(sub)
    if handler is None:
        return resp.error(errors.unknown_subcommand(argv[1], "CLIENT"))
    spec = COMMANDS["client"].subcommands.get(sub.decode("utf-8", "replace"))
    if spec is not None and not spec.arity_ok(len(argv)):
        return resp.error(errors.wrong_arity(spec.name))
    return handler(conn, argv)


def _arity(argv: list[bytes], sub: str, ok: bool) -> None:
    if not ok:
        raise CommandError(errors.wrong_arity(f"client|{sub}"))


def client_id(conn, argv):
    _arity(argv, "id", len(argv) == 2)
    return resp.integer(conn.id)


def outside_exec(conn, name: str) -> None:
    """Commands answered after asking every proxy cannot run inside EXEC (see slowlog.py)."""
    if conn.paused:
        raise CommandError(f"ERR '{name}' cannot run inside a transaction in shardd")


def client_setname(conn, argv):
    _arity(argv, "setname", len(argv) == 3)
    if not valid_client_name(argv[2]):
        return resp.error(errors.BAD_CLIENT_NAME)
    conn.name = argv[2]
    return resp.OK


def client_getname(conn, argv):
    _arity(argv, "getname", len(argv) == 2)
    return resp.bulk(conn.name) if conn.name else resp.null(conn.proto)


def client_setinfo(conn, argv):
    _arity(argv, "setinfo", len(argv) == 4)
    attr, value = argv[2].upper(), argv[3]
    if attr not in (b"LIB-NAME", b"LIB-VER"):
        return resp.error(f"ERR Unrecognized option '{argv[2].decode('utf-8', 'replace')}'")
    if not valid_client_name(value) and value:
        return resp.error(f"ERR {argv[2].decode('utf-8', 'replace')} cannot contain spaces, newlines or "
                          "special characters.")
    if attr == b"LIB-NAME":
        conn.lib_name = value
    else:
        conn.lib_ver = value
    return resp.OK


def client_info(conn, argv):
    _arity(argv, "info", len(argv) == 2)
    return resp.verbatim((client_info_line(conn) + "\n").encode(), conn.proto)


def client_list(conn, argv):
    ids = None
    wanted_type = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"TYPE" and i + 1 < len(argv):
            kind = argv[i + 1].lower()
            if kind not in CLIENT_TYPES:
                return resp.error(f"ERR Unknown client type '{argv[i + 1].decode('utf-8', 'replace')}'")
            if kind in (b"normal", b"pubsub"):
                wanted_type = kind.decode()
            else:                          # no replicas or primaries here
                ids = set()
            i += 2
        elif opt == b"ID" and i + 1 < len(argv):
            try:
                wanted = {int(a) for a in argv[i + 1:]}
            except ValueError:
                return resp.error("ERR Invalid client ID")
            ids = wanted if ids is None else ids & wanted
            i = len(argv)
        else:
            return resp.error(errors.SYNTAX)
    proto = conn.proto
    outside_exec(conn, "client|list")

    def render(lines: list[str]) -> bytes:
        text = "".join(line + "\n" for line in lines)
        return resp.verbatim(text.encode(), proto)
    conn.proxy.ask_all(conn, "client_list", (ids, wanted_type),
                       lambda answers: render([line for _, line in sorted(sum(answers, []))]))
    return None


def client_no_flag(flag: str):
    def handler(conn, argv):
        _arity(argv, flag, len(argv) == 3)
        if parse_on_off(argv[2]):
            conn.flags.add(flag)
        else:
            conn.flags.discard(flag)
        return resp.OK
    return handler


def set_no_touch(conn, on: bool) -> None:
    """CLIENT NO-TOUCH: the client's frames carry NOTOUCH (its reads leave access clocks alone);
    such a client takes dispatch's general path, where frames get the client's flags."""
    from ..frames import NOTOUCH
    if on:
        conn.flags.add("no-touch")
    else:
        conn.flags.discard("no-touch")
    flags = conn.frame_flags | NOTOUCH if on else conn.frame_flags & ~NOTOUCH
    if flags != conn.frame_flags:
        conn.send_frames()           # what came before it goes with the flags it had
        conn.frame_flags = flags
        conn.proxy.pubsub.refresh_special(conn)


def client_no_touch(conn, argv):
    _arity(argv, "no-touch", len(argv) == 3)
    set_no_touch(conn, parse_on_off(argv[2]))
    return resp.OK


def client_help(conn, argv):
    return resp.array([resp.status(line) for line in CLIENT_HELP])


CLIENT_TYPES = (b"normal", b"master", b"primary", b"replica", b"slave", b"pubsub")


def client_kill(conn, argv):
    """CLIENT KILL addr (old form), or CLIENT KILL <filter> <value> ... (Valkey 8's filters)."""
    outside_exec(conn, "client|kill")
    if len(argv) == 3:
        conn.proxy.ask_all(conn, "client_kill", {b"ADDR": argv[2], b"SKIPME": b"no"},
                           lambda answers: resp.OK if sum(answers) else resp.error("ERR No such client"))
        return None
    if len(argv) % 2:
        return resp.error(errors.SYNTAX)
    filters = {b"SKIPME": b"yes"}      # always present: the proxy skips the caller only then
    for i in range(2, len(argv), 2):
        opt, value = argv[i].upper(), argv[i + 1]
        if opt == b"ID":
            try:
                ok = 1 <= int(value) < 1 << 63 and str(int(value)).encode() == value
            except ValueError:
                ok = False
            if not ok:
                return resp.error("ERR client-id should be greater than 0")
        elif opt == b"MAXAGE":
            try:
                age = int(value)
                if str(age).encode() != value or not -(1 << 63) <= age < 1 << 63:
                    raise ValueError
            except ValueError:
                return resp.error("ERR maxage is not an integer or out of range")
            if age <= 0:
                return resp.error("ERR maxage should be greater than 0")
        elif opt == b"TYPE":
            if value.lower() not in CLIENT_TYPES:
                return resp.error(f"ERR Unknown client type '{value.decode('utf-8', 'replace')}'")
        elif opt == b"USER":
            if value.decode("utf-8", "surrogateescape") not in conn.proxy.acl.users.by_name:
                return resp.error(f"ERR No such user '{value.decode('utf-8', 'replace')}'")
        elif opt == b"SKIPME":
            if value.lower() not in (b"yes", b"no"):
                return resp.error(errors.SYNTAX)
        elif opt not in (b"ADDR", b"LADDR"):
            return resp.error(errors.SYNTAX)
        filters[opt] = value
    conn.proxy.ask_all(conn, "client_kill", filters, lambda answers: resp.integer(sum(answers)))
    return None


@proxy_query("client_unblock")
def unblock_local_client(proxy, args: tuple[int, bool], asker) -> int:
    waiting = proxy.blocked.get(args[0])
    if waiting is None:
        return 0
    waiting.unblock(resp.error(UNBLOCKED) if args[1] else None)
    return 1


UNBLOCKED = "UNBLOCKED client unblocked via CLIENT UNBLOCK"


def client_unblock(conn, argv):
    _arity(argv, "unblock", len(argv) in (3, 4))
    client_id = arg_ll(argv[2])
    outside_exec(conn, "client|unblock")
    error = False
    if len(argv) == 4:
        reason = argv[3].lower()
        if reason not in (b"timeout", b"error"):
            raise CommandError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        error = reason == b"error"
    conn.proxy.ask_all(conn, "client_unblock", (client_id, error),
                       lambda answers: resp.integer(int(any(answers))))
    return None


# -- CLIENT PAUSE / UNPAUSE / REPLY ----------------------------------------------------------
@proxy_query("client_pause")
def pause_local_clients(proxy, args: tuple[str, float], asker) -> bool:
    proxy.pause(*args)
    return True


@proxy_query("client_unpause")
def unpause_local_clients(proxy, args, asker) -> bool:
    proxy.unpause()
    return True


def every_proxy(conn, what: str, args) -> bytes | None:
    """Apply `what` on every proxy, answering OK once all have (CONFIG SET's way). Inside EXEC
    (the client is held) this proxy applies it now and tells the others without waiting."""
    proxy = conn.proxy
    if not conn.paused:
        proxy.ask_all(conn, what, args, lambda answers: resp.OK)
        return None
    from .server import QUERIES
    QUERIES[what](proxy, args, conn)
    if proxy.n_proxies > 1:
        proxy.send_control({"op": "query", "qid": 0, "from": proxy.index, "what": what, "args": args})
    return resp.OK


def client_pause(conn, argv):
    actions = "all"
    if len(argv) == 4:
        mode = argv[3].lower()
        if mode not in (b"write", b"all"):
            raise CommandError("ERR CLIENT PAUSE mode must be WRITE or ALL")
        actions = mode.decode()
    timeout = string2ll(argv[2])
    if timeout is None:
        raise CommandError("ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise CommandError("ERR timeout is negative")
    return every_proxy(conn, "client_pause", (actions, time.time() + timeout / 1000))


def client_unpause(conn, argv):
    return every_proxy(conn, "client_unpause", None)


def client_reply(conn, argv):
    """ON answers OK; OFF and SKIP answer nothing (SKIP also drops the next command's reply)."""
    mode = argv[2].lower()
    if mode == b"on":
        conn.reply_mode = 0
        conn.detour = conn.proxy.pause_actions is not None
        return resp.OK
    if mode == b"off":
        conn.reply_mode = REPLY_OFF
    elif mode == b"skip":
        if not conn.reply_mode & REPLY_OFF:
            conn.reply_mode |= REPLY_SKIP_NEXT
    elif conn.reply_mode & (REPLY_OFF | REPLY_SKIP):
        return None                  # the syntax error is dropped like any reply
    else:
        raise CommandError(errors.SYNTAX)
    conn.detour = True
    return None


CLIENT_SUBCOMMANDS = {
    b"id": client_id, b"setname": client_setname, b"getname": client_getname,
    b"setinfo": client_setinfo, b"info": client_info, b"list": client_list,
    b"no-evict": client_no_flag("no-evict"), b"no-touch": client_no_touch,
    b"help": client_help, b"kill": client_kill, b"unblock": client_unblock,
    b"pause": client_pause, b"unpause": client_unpause, b"reply": client_reply,
}
