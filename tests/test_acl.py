"""ACL, requirepass/AUTH, rename-command and the limits on unauthenticated clients.

Replies are compared with redis-server 7.0 (the oracle) where Valkey 8 answers the same; where
Valkey 8 differs (NOPERM and DRYRUN texts name the user, ACL LOG has entry ids and timestamps,
a rule for a subcommand is kept beside its command's, HELP says "Print") the tests check
Valkey's behaviour explicitly.
"""
from __future__ import annotations

import signal

import psutil
import pytest
import redis

from helpers import RawConnection, keys_on, oracle_cases, run_both, wait_until
from server import Server

RESTORE = [("ACL", "DELUSER", "u1", "u2", "u3"), ("AUTH", "default", "x"), ("RESET",)]


def reset_acl(conn) -> None:
    conn.call("RESET")
    for name in conn.call("ACL", "USERS").split(b"\r\n")[2::2]:
        if name and name != b"default":
            conn.call("ACL", "DELUSER", name)


@pytest.fixture
def both(pair):
    for conn in pair:
        reset_acl(conn)
    yield pair
    for conn in pair:
        reset_acl(conn)


# -- ACL SETUSER / GETUSER / LIST / USERS / DELUSER / DRYRUN, against the oracle -------------

# redis 7.0 gives a new user no sanitize-payload flag (Valkey 8, like Redis 7.2, does), so these
# users start with `reset` (which sets it in both) and ACL LIST is checked apart.
SETUSER_CASES = [
    ["ACL SETUSER u1 reset", "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset on >p1 >p2 <p1 ~foo* %R~bar %W~baz %RW~qux &ch* +get +config|get -@all +@hash -hget",
     "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset +select|0 +select|1 (~x* +set) (&y +@read -get)", "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset allkeys allchannels allcommands -debug nopass skip-sanitize-payload", "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset on ~a (~b +get) reset", "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset #" + "a" * 64 + " !" + "a" * 64, "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset (~x* +get) clearselectors", "ACL GETUSER u1"],
    ["ACL SETUSER u1 reset ~a ~a %R~a %W~b %R~b", "ACL GETUSER u1"],
    # errors: nothing of a refused SETUSER is applied
    ["ACL SETUSER u1 reset", "ACL SETUSER u1 ~* ~x", "ACL SETUSER u1 &* &x", "ACL SETUSER u1 resetkeys %X~x",
     "ACL SETUSER u1 %~x", "ACL SETUSER u1 +nosuch", "ACL SETUSER u1 +@nosuch", "ACL SETUSER u1 -nosuch|x",
     "ACL SETUSER u1 #abc", "ACL SETUSER u1 <notthere", "ACL SETUSER u1 +config|get|x", "ACL SETUSER u1 +get|",
     "ACL SETUSER u1 bogus", "ACL SETUSER u1 on (~x +get", "ACL SETUSER u1 (~x +nosuch)",
     "ACL SETUSER u1 on ~a bogus", "ACL GETUSER u1"],
    [["ACL", "SETUSER", "u 1"], ["ACL", "SETUSER", "u\x001"], "ACL SETUSER", "ACL USERS"],
    ["ACL SETUSER u2 on", "ACL SETUSER u1 off", "ACL USERS", "ACL DELUSER default", "ACL DELUSER u1 u1 nosuch",
     "ACL USERS", "ACL GETUSER u1", "ACL DELUSER u2 default", "ACL USERS"],
    ["ACL SETUSER u2 on nopass ~a* +get &c* +publish +subscribe +psubscribe",
     "ACL DRYRUN u2 get a1", "ACL DRYRUN u2 publish c1 x", "ACL DRYRUN u2 subscribe c1 c2",
     "ACL DRYRUN u2 psubscribe c*", "ACL DRYRUN nosuch get x", "ACL DRYRUN u2 nosuch", "ACL DRYRUN u2 get",
     "ACL DRYRUN u2 config nosuch", "ACL DRYRUN u2 config get"],
    ["ACL CAT nosuch", "ACL GENPASS 0", "ACL GENPASS abc", "ACL GENPASS 5000", "ACL GENPASS -1",
     "ACL LOG abc", "ACL LOAD", "ACL SAVE", "ACL FOO", "ACL WHOAMI x", "ACL", "ACL LIST x", "ACL GETUSER"],
    ["AUTH x", "AUTH nosuch x", "AUTH a b c", "AUTH default x", "ACL WHOAMI"],
    ["ACL SETUSER u3 on >pw +@all ~*", "AUTH u3 nope", "AUTH u3 pw", "ACL WHOAMI", "GET k",
     "ACL SETUSER u3 off", "ACL WHOAMI", "GET k", "AUTH default nope", "AUTH default x",
     "ACL WHOAMI", "AUTH u3 pw"],
    ["ACL SETUSER u1 on nopass +@all ~* &*", "AUTH u1 anything", "ACL WHOAMI", "RESET", "ACL WHOAMI"],
]


def test_acl_list_valkey_format(raw):
    reset_acl(raw)
    try:
        assert raw.call("ACL", "SETUSER", "u1") == b"+OK\r\n"
        assert raw.call("ACL", "SETUSER", "u2", "on", ">pw", "~a*", "%R~b", "&c", "-@all", "+get", "+client",
                        "-client|kill", "+client|kill", "(+set ~s*)") == b"+OK\r\n"
        pw = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"
        assert raw.call("ACL", "LIST") == encode_list([
            "user default on nopass sanitize-payload ~* &* +@all",
            "user u1 off sanitize-payload resetchannels -@all",
            f"user u2 on sanitize-payload #{pw} ~a* %R~b resetchannels &c -@all +get +client +client|kill "
            "(~s* resetchannels -@all +set)"])
        # Valkey keeps the rules as given (redis 7.0 rebuilt them from the command bitmap)
        raw.call("ACL", "SETUSER", "u1", "reset", "+@all", "-@dangerous", "+flushall", "-config|set", "+acl|whoami",
                 "-get", "+get")
        assert b"+@all -@dangerous +flushall -config|set +acl|whoami +get\r\n" in raw.call("ACL", "GETUSER", "u1")
    finally:
        reset_acl(raw)


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_list(lines: list[str]) -> bytes:
    return b"*%d\r\n" % len(lines) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x.encode()) for x in lines)


@oracle_cases(SETUSER_CASES)
def test_acl_against_oracle(both, case):
    run_both(both, case, RESTORE)


def test_acl_cat(both):
    s, o = both
    assert s.call("ACL", "CAT") == o.call("ACL", "CAT")
    for category in ("hash", "dangerous", "keyspace", "connection", "pubsub", "scripting"):
        got = set(s.call("ACL", "CAT", category).split(b"\r\n")[2::2])
        want = set(o.call("ACL", "CAT", category).split(b"\r\n")[2::2])
        # Valkey 8's table has commands 7.0 lacks; every 7.0 command must be there
        assert want - got <= {b""}, (category, want - got)


def test_acl_genpass_lengths(r):
    assert len(r.execute_command("ACL", "GENPASS")) == 64
    assert len(r.execute_command("ACL", "GENPASS", "1")) == 1
    assert len(r.execute_command("ACL", "GENPASS", "5")) == 2
    assert len(r.execute_command("ACL", "GENPASS", "4096")) == 1024
    assert int(r.execute_command("ACL", "GENPASS", "32"), 16) >= 0
    assert r.execute_command("ACL", "GENPASS") != r.execute_command("ACL", "GENPASS")


def test_acl_help(raw):
    reply = raw.call("ACL", "HELP")
    assert reply.startswith(b"*29\r\n+ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n")
    assert reply.endswith(b"+HELP\r\n+    Print this help.\r\n")      # Valkey's wording


# -- permissions -------------------------------------------------------------------------------

@pytest.fixture
def acl_users(server):
    admin = RawConnection(server.port)
    reset_acl(admin)
    admin.call("FLUSHALL")
    yield admin
    reset_acl(admin)
    admin.close()


def login(server, user: str, password: str = "pw") -> RawConnection:
    conn = RawConnection(server.port)
    assert conn.call("AUTH", user, password) == b"+OK\r\n"
    return conn


def test_command_permissions_and_noperm_texts(server, acl_users):
    admin = acl_users
    assert admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~*", "-@all", "+get", "+@hash", "-hdel",
                      "+config|get", "+select|0") == b"+OK\r\n"
    u = login(server, "u1")
    assert u.call("GET", "k") == b"$-1\r\n"
    assert u.call("HSET", "h", "f", "v") == b":1\r\n"
    assert u.call("SET", "k", "v") == b"-NOPERM User u1 has no permissions to run the 'set' command\r\n"
    assert u.call("HDEL", "h", "f") == b"-NOPERM User u1 has no permissions to run the 'hdel' command\r\n"
    assert u.call("CONFIG", "GET", "port")[:1] == b"*"
    assert u.call("CONFIG", "SET", "port", "1") == \
        b"-NOPERM User u1 has no permissions to run the 'config|set' command\r\n"
    assert u.call("SELECT", "0") == b"+OK\r\n"
    assert u.call("SELECT", "1") == b"-NOPERM User u1 has no permissions to run the 'select' command\r\n"
    # arity and unknown-subcommand errors come before the permission check, as in Valkey
    assert u.call("CONFIG", "NOSUCH") == b"-ERR unknown subcommand 'NOSUCH'. Try CONFIG HELP.\r\n"
    assert u.call("SET", "k") == b"-ERR wrong number of arguments for 'set' command\r\n"
    assert u.call("AUTH", "u1", "pw") == b"+OK\r\n"          # no_auth commands need no permission
    assert u.call("ACL", "WHOAMI") == b"-NOPERM User u1 has no permissions to run the 'acl|whoami' command\r\n"
    # a change reaches the connected user at once
    assert admin.call("ACL", "SETUSER", "u1", "+set") == b"+OK\r\n"
    assert u.call("SET", "k", "v") == b"+OK\r\n"
    assert admin.call("ACL", "SETUSER", "u1", "-@all") == b"+OK\r\n"
    assert u.call("GET", "k") == b"-NOPERM User u1 has no permissions to run the 'get' command\r\n"
    u.close()


def test_key_patterns_read_write(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "+@all", "~app:*", "%R~ro:*", "%W~wo:*")
    u = login(server, "u1")
    denied = b"-NOPERM No permissions to access a key\r\n"
    assert u.call("SET", "app:1", "v") == b"+OK\r\n"
    assert u.call("GET", "app:1") == b"$1\r\nv\r\n"
    assert u.call("GET", "other") == denied
    assert u.call("GET", "ro:1") == b"$-1\r\n"
    assert u.call("SET", "ro:1", "v") == denied
    assert u.call("SET", "wo:1", "v") == b"+OK\r\n"           # SET is write-only (OW UPDATE)
    assert u.call("GET", "wo:1") == denied
    assert u.call("SET", "wo:1", "v", "GET") == denied        # SET ... GET also reads (RW ACCESS)
    assert u.call("COPY", "ro:1", "wo:2") == b":0\r\n"        # source read, destination written
    assert u.call("COPY", "wo:1", "ro:2") == denied
    assert u.call("MSET", "app:2", "v", "other", "v") == denied
    assert u.call("MGET", "app:1", "ro:1") == b"*2\r\n$1\r\nv\r\n$-1\r\n"
    assert u.call("DEL", "ro:1") == denied
    assert u.call("KEYS", "*")[:1] == b"*"                    # KEYS takes no key argument
    u.close()
    log = admin.call("ACL", "LOG", "1")
    assert b"reason\r\n$3\r\nkey" in log and b"$7\r\ncontext\r\n$8\r\ntoplevel" in log


def test_channel_patterns(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "+@all", "~*", "resetchannels", "&news.*", "&exact[")
    assert admin.call("ACL", "DRYRUN", "u1", "PUBLISH", "news.x", "hi") == b"+OK\r\n"
    assert admin.call("ACL", "DRYRUN", "u1", "PUBLISH", "sport", "hi") == \
        bulk(b"User u1 has no permissions to access the 'sport' channel")
    assert admin.call("ACL", "DRYRUN", "u1", "SUBSCRIBE", "news.a", "news.b") == b"+OK\r\n"
    assert admin.call("ACL", "DRYRUN", "u1", "PSUBSCRIBE", "news.*") == b"+OK\r\n"     # the same pattern
    assert admin.call("ACL", "DRYRUN", "u1", "PSUBSCRIBE", "news.a*")[:1] == b"$"      # only literally
    assert admin.call("ACL", "DRYRUN", "u1", "UNSUBSCRIBE", "sport") == b"+OK\r\n"
    u = login(server, "u1")
    assert u.call("PUBLISH", "sport", "x") == b"-NOPERM No permissions to access a channel\r\n"
    assert u.call("PUBLISH", "news.1", "x") == b":0\r\n"
    u.close()


def test_revoked_channels_disconnect_subscribers(server, acl_users):
    """ACLKillPubsubClientsIfNeeded: a subscriber whose channels the user may no longer use is
    disconnected; one still allowed stays."""
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~*", "+@all", "resetchannels", "&news*")
    kept, dropped, by_pattern = login(server, "u1"), login(server, "u1"), login(server, "u1")
    kept.call("SUBSCRIBE", "news1")
    dropped.call("SUBSCRIBE", "news2")
    by_pattern.call("PSUBSCRIBE", "news*")
    assert admin.call("ACL", "SETUSER", "u1", "&other") == b"+OK\r\n"        # adds: nobody goes
    assert kept.call("PING") == dropped.call("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert admin.call("ACL", "SETUSER", "u1", "resetchannels", "&news1") == b"+OK\r\n"
    assert kept.call("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    for conn in (dropped, by_pattern):
        with pytest.raises((ConnectionError, OSError)):
            conn.call("PING")
    kept.close()


def test_selectors(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~a*", "+get", "(~b* +set)", "(%R~c* +@read)")
    u = login(server, "u1")
    assert u.call("GET", "a1") == b"$-1\r\n"
    assert u.call("SET", "b1", "v") == b"+OK\r\n"
    assert u.call("GET", "c1") == b"$-1\r\n"
    # GET b1: the root selector runs GET but not on b*, the b* selector not GET: a key failure
    assert u.call("GET", "b1") == b"-NOPERM No permissions to access a key\r\n"
    assert u.call("SET", "a1", "v") == b"-NOPERM No permissions to access a key\r\n"
    assert u.call("DEL", "a1") == b"-NOPERM User u1 has no permissions to run the 'del' command\r\n"
    assert admin.call("ACL", "DRYRUN", "u1", "GET", "b1") == bulk(b"User u1 has no permissions to access the 'b1' key")
    u.close()


def test_transaction_with_a_denied_command_aborts(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~*", "+@all", "-set")
    u = login(server, "u1")
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("SET", "k", "v") == b"-NOPERM User u1 has no permissions to run the 'set' command\r\n"
    assert u.call("GET", "k") == b"+QUEUED\r\n"
    assert u.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    u.close()
    log = admin.call("ACL", "LOG", "1")
    assert b"$7\r\ncontext\r\n$5\r\nmulti" in log


def test_acl_log_and_info_counters(server, acl_users, r):
    admin = acl_users
    assert admin.call("ACL", "LOG", "RESET") == b"+OK\r\n"
    r.config_resetstat()
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~k*", "+get")
    conn = RawConnection(server.port)
    for _ in range(3):
        assert conn.call("AUTH", "u1", "wrong")[:10] == b"-WRONGPASS"
    assert conn.call("AUTH", "u1", "pw") == b"+OK\r\n"
    conn.call("SET", "k", "v")
    conn.call("GET", "x")
    conn.close()
    entries = r.acl_log()
    assert [e["reason"] for e in entries] == ["key", "command", "auth"]
    assert entries[2]["count"] == 3 and entries[2]["object"] == "AUTH" and entries[2]["username"] == "u1"
    assert entries[1]["object"] == "set" and entries[0]["object"] == "x"
    assert entries[0]["client-info"]["cmd"] == "get" and entries[0]["client-info"]["user"] == "u1"
    raw_log = admin.call("ACL", "LOG")
    for field in (b"entry-id", b"timestamp-created", b"timestamp-last-updated", b"age-seconds"):
        assert field in raw_log
    assert len(r.acl_log(count=1)) == 1
    assert admin.call("ACL", "LOG", "-5") == b"*0\r\n"
    stats = r.info("stats")
    assert (stats["acl_access_denied_auth"], stats["acl_access_denied_cmd"], stats["acl_access_denied_key"],
            stats["acl_access_denied_channel"]) == (3, 1, 1, 0)
    assert r.acl_log_reset() and r.acl_log() == []


def test_deluser_disconnects_its_clients(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~*", "+@all")
    u, v = login(server, "u1"), login(server, "u1")
    assert u.call("CLIENT", "KILL", "USER", "nosuch") == b"-ERR No such user 'nosuch'\r\n"
    assert u.call("ACL", "DELUSER", "u1") == b":1\r\n"      # its own connection: after the reply
    for conn in (u, v):
        with pytest.raises((ConnectionError, OSError)):
            conn.call("PING")
            conn.call("PING")


def test_client_kill_by_user(server, acl_users):
    admin = acl_users
    admin.call("ACL", "SETUSER", "u1", "on", ">pw", "~*", "+@all")
    u = login(server, "u1")
    assert admin.call("CLIENT", "KILL", "USER", "u1") == b":1\r\n"
    with pytest.raises((ConnectionError, OSError)):
        u.call("PING")
        u.call("PING")
    assert b"user=default" in admin.call("CLIENT", "INFO")


# -- requirepass, AUTH, HELLO -------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured():
    srv = Server("--requirepass", "s3cret", "--user", "ops", "on", ">opspw", "~*", "+@all", "-@dangerous")
    yield srv
    srv.stop()


def test_requirepass_and_auth(secured):
    c = RawConnection(secured.port)
    assert c.call("PING") == b"-NOAUTH Authentication required.\r\n"
    assert c.call("GET", "k") == b"-NOAUTH Authentication required.\r\n"
    assert c.call("AUTH", "wrong") == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert c.call("AUTH", "s3cret") == b"+OK\r\n"
    assert c.call("ACL", "WHOAMI") == b"$7\r\ndefault\r\n"
    assert c.call("RESET") == b"+RESET\r\n"
    assert c.call("PING") == b"-NOAUTH Authentication required.\r\n"
    assert c.call("AUTH", "ops", "opspw") == b"+OK\r\n"
    assert c.call("FLUSHALL") == b"-NOPERM User ops has no permissions to run the 'flushall' command\r\n"
    c.close()
    d = RawConnection(secured.port)
    hello = d.call("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "x")
    assert hello.startswith(b"%7\r\n")
    assert d.call("CLIENT", "GETNAME") == b"$1\r\nx\r\n"
    assert d.call("HELLO", "2", "AUTH", "ops", "nope") == \
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    # the default user's password follows requirepass; connected clients stay as they are
    assert d.call("CONFIG", "SET", "requirepass", "other") == b"+OK\r\n"
    e = RawConnection(secured.port)
    assert e.call("AUTH", "s3cret")[:10] == b"-WRONGPASS"
    assert e.call("AUTH", "other") == b"+OK\r\n"
    assert d.call("PING") == b"+PONG\r\n"
    assert d.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
    f = RawConnection(secured.port)
    assert f.call("PING") == b"+PONG\r\n"            # the default user needs no password now
    assert f.call("AUTH", "x").startswith(b"-ERR AUTH <password> called without any password configured")
    assert d.call("ACL", "GETUSER", "default").count(b"nopass") == 1
    assert d.call("CONFIG", "SET", "requirepass", "s3cret") == b"+OK\r\n"
    for conn in (d, e, f):
        conn.close()


def test_unauthenticated_limits(secured):
    c = RawConnection(secured.port)
    c.send(b"*11\r\n")
    assert c.read() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    c.close()
    c = RawConnection(secured.port)
    c.send(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n")
    assert c.read() == b"-ERR Protocol error: unauthenticated bulk length\r\n"
    c.close()
    c = RawConnection(secured.port)        # at the limits, and after AUTH, bigger is fine
    assert c.call("ECHO", "y" * 16384) == b"-NOAUTH Authentication required.\r\n"
    assert c.call("AUTH", "s3cret") == b"+OK\r\n"
    assert c.call("ECHO", "y" * 20000) == b"$20000\r\n" + b"y" * 20000 + b"\r\n"
    assert c.call("DEL", *["k"] * 20) == b":0\r\n"
    c.close()


def test_protected_mode_asks_the_acl():
    from shardd.proxy.connection import protected_mode_denies
    on = {"protected-mode": True, "requirepass": ""}
    assert protected_mode_denies(on, ("192.0.2.7", 5000), True)
    assert not protected_mode_denies(on, ("192.0.2.7", 5000), False)   # default user has a password


# -- several proxies: a change reaches all of them ------------------------------------------------

def connections_on_both_proxies(srv: Server, per_proxy: int) -> list[RawConnection]:
    """Authenticated connections, `per_proxy` on each of 2 proxies (ids are index+1 + k*2)."""
    groups: dict[int, list[RawConnection]] = {0: [], 1: []}
    for _ in range(200):
        if all(len(g) >= per_proxy for g in groups.values()):
            break
        c = RawConnection(srv.port)
        assert c.call("AUTH", "pw") == b"+OK\r\n"
        group = groups[(int(c.call("CLIENT", "ID")[1:-2]) - 1) % 2]
        if len(group) < per_proxy:
            group.append(c)
        else:
            c.close()
    assert all(len(g) >= per_proxy for g in groups.values()), "could not reach both proxies"
    return groups[0] + groups[1]


def test_acl_changes_reach_every_proxy():
    srv = Server("--io-threads", "2", "--requirepass", "pw")
    try:
        admin = srv.client(password="pw")
        conns = connections_on_both_proxies(srv, 4)
        assert admin.execute_command("ACL", "SETUSER", "u1", "on", ">x", "~k*", "+get") == b"OK"
        for c in conns:
            assert c.call("AUTH", "u1", "x") == b"+OK\r\n"
            assert c.call("GET", "k1") == b"$-1\r\n"
            assert c.call("GET", "z") == b"-NOPERM No permissions to access a key\r\n"
        log = admin.acl_log()                         # every proxy's log, as one
        assert len(log) == 1 and log[0]["count"] == 8 and log[0]["object"] == "z"
        assert admin.info("stats")["acl_access_denied_key"] == 8
        assert admin.execute_command("ACL", "DELUSER", "u1") == 1
        for c in conns:
            with pytest.raises((ConnectionError, OSError)):
                c.call("PING")
                c.call("PING")
        assert admin.execute_command("CONFIG", "SET", "requirepass", "new")
        fresh = [RawConnection(srv.port) for _ in range(6)]
        for c in fresh:
            assert c.call("AUTH", "new") == b"+OK\r\n"
    finally:
        srv.stop()


# -- users from the config, the ACL file, CONFIG REWRITE ------------------------------------------

def test_user_directives_and_config_rewrite(tmp_path):
    conf = tmp_path / "valkey.conf"
    conf.write_text("user alice on >apw ~a:* +@read\nuser default on nopass ~* &* +@all -keys\n")
    srv = Server(config_file=str(conf))
    try:
        r = srv.client()
        assert r.acl_users() == ["alice", "default"]
        with pytest.raises(redis.ResponseError, match="User default has no permissions to run the 'keys'"):
            r.keys()
        alice = srv.client(username="alice", password="apw")
        assert alice.get("a:1") is None
        assert r.config_rewrite()
        assert ">apw" not in conf.read_text()                  # passwords are written hashed
        r.execute_command("ACL", "SETUSER", "bob", "on", "#" + "b" * 64, "~*", "+get")
        assert r.config_rewrite()
        text = conf.read_text()
        assert "user alice on sanitize-payload #" in text
        assert "user bob on sanitize-payload #" + "b" * 64 + " ~* resetchannels -@all +get" in text
        assert "user default on nopass sanitize-payload ~* &* +@all -keys" in text
    finally:
        srv.stop()


def test_bad_user_directive_stops_the_start(tmp_path):
    srv = Server("--user", "bob", "on", "+nosuchcommand", wait=False)
    assert srv.proc.wait(20) == 1
    out = srv.output()
    srv.stop()
    assert "Error loading ACL rule '+nosuchcommand' for the user named 'bob'" in out
    assert "Critical error while loading ACLs. Exiting." in out
    conf = tmp_path / "bad.conf"
    conf.write_text("user bob on badrule\n")
    srv = Server(config_file=str(conf), wait=False)
    assert srv.proc.wait(20) == 1
    out = srv.output()
    srv.stop()
    assert "Error in user declaration 'bob': Syntax error" in out


def test_aclfile_load_and_save(tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user alice on >apw ~* +@all\nuser default on nopass ~* &* +@all\n")
    srv = Server("--aclfile", str(aclfile))
    try:
        r = srv.client()
        assert r.acl_users() == ["alice", "default"]
        alice = RawConnection(srv.port)
        assert alice.call("AUTH", "alice", "apw") == b"+OK\r\n"
        r.execute_command("ACL", "SETUSER", "carol", "on", ">cpw", "~c*", "+get")
        assert r.execute_command("ACL", "SAVE") == b"OK"
        saved = aclfile.read_text().splitlines()
        assert [line.split()[1] for line in saved] == ["alice", "carol", "default"]
        assert saved[1].startswith("user carol on sanitize-payload #")
        # a bad file changes nothing
        aclfile.write_text("user alice on >apw ~* +@all\nuser bob on +nosuch\nnotauser x\nuser alice on\n")
        with pytest.raises(redis.ResponseError) as err:
            r.execute_command("ACL", "LOAD")
        message = str(err.value)
        assert f"{aclfile}:2: Error in applying operation '+nosuch': Unknown command or category name in ACL." \
               in message
        assert f"{aclfile}:3 should start with user keyword followed by the username." in message
        assert "WARNING: Duplicate user 'alice' found on line 4." in message
        assert message.endswith("WARNING: ACL errors detected, no change to the previously active ACL rules "
                                "was performed")
        assert r.acl_users() == ["alice", "carol", "default"]
        # a good one replaces every user; clients of users other than default are disconnected
        aclfile.write_text("user dave on >dpw ~* +@all\n")
        assert r.execute_command("ACL", "LOAD") == b"OK"
        assert r.acl_users() == ["dave", "default"]
        with pytest.raises((ConnectionError, OSError)):
            alice.call("PING")
            alice.call("PING")
        assert r.ping()                                   # default's clients stay
        assert r.execute_command("ACL", "GETUSER", "default")[b"flags"] == [b"on", b"nopass", b"sanitize-payload"]
    finally:
        srv.stop()


def test_aclfile_with_user_directives_refuses_to_start(tmp_path):
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("")
    srv = Server("--aclfile", str(aclfile), "--user", "x", "on", wait=False)
    assert srv.proc.wait(20) == 1
    assert "at the same setting an ACL file path is invalid" in srv.output()
    srv.stop()


# -- rename-command ------------------------------------------------------------------------------

def test_rename_command():
    srv = Server("--rename-command", "SET", "MYSET", "--rename-command", "GET", "",
                 "--rename-command", "OBJECT", "obj", "--rename-command", "mget", "MultiGet",
                 "--rename-command", "config", "cfg")
    try:
        c = RawConnection(srv.port)
        assert c.call("MYSET", "k", "v") == b"+OK\r\n"
        assert c.call("myset", "k2", "v2") == b"+OK\r\n"
        assert c.call("MySet", "k3", "v3") == b"+OK\r\n"
        assert c.call("SET", "k", "v") == b"-ERR unknown command 'SET', with args beginning with: 'k' 'v' \r\n"
        assert c.call("GET", "k") == b"-ERR unknown command 'GET', with args beginning with: 'k' \r\n"
        assert c.call("OBJECT", "ENCODING", "k")[:20] == b"-ERR unknown command"
        assert c.call("OBJ", "ENCODING", "k") == b"$6\r\nembstr\r\n"
        assert c.call("MULTIGET", "k", "k2", "nosuch") == b"*3\r\n$1\r\nv\r\n$2\r\nv2\r\n$-1\r\n"
        assert c.call("CONFIG", "GET", "port")[:20] == b"-ERR unknown command"
        assert c.call("CFG", "GET", "maxmemory") == b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
        assert c.call("MULTI") == b"+OK\r\n"
        assert c.call("myset", "t", "1") == b"+QUEUED\r\n"
        assert c.call("multiget", "t") == b"+QUEUED\r\n"
        assert c.call("EXEC") == b"*2\r\n+OK\r\n*1\r\n$1\r\n1\r\n"
        # ACL rules name the original commands
        assert c.call("ACL", "SETUSER", "u1", "on", "nopass", "~*", "+set") == b"+OK\r\n"
        assert c.call("ACL", "DRYRUN", "u1", "set", "k", "v") == b"+OK\r\n"
        assert c.call("ACL", "SETUSER", "u1", "+myset") == \
            b"-ERR Error in ACL SETUSER modifier '+myset': Unknown command or category name in ACL\r\n"
        c.close()
    finally:
        srv.stop()


def test_renamed_command_keys_on_both_workers():
    srv = Server("--rename-command", "HSET", "put")
    try:
        c = RawConnection(srv.port)
        for worker in (0, 1):
            for key in keys_on(worker, 3, "h"):
                assert c.call("PUT", key, "f", "v") == b":1\r\n"
                assert c.call("HGET", key, "f") == b"$1\r\nv\r\n"
        c.close()
    finally:
        srv.stop()


def test_a_restarted_proxy_keeps_the_acl():
    """The supervisor keeps the ACL as it stands (not as the config had it) for a proxy it
    restarts."""
    srv = Server("--requirepass", "pw")
    try:
        admin = srv.client(password="pw")
        admin.execute_command("ACL", "SETUSER", "late", "on", ">lpw", "~*", "+get")
        admin.config_set("requirepass", "pw2")
        pid = int(admin.info("shards")["proxy0"]["pid"])
        psutil.Process(pid).send_signal(signal.SIGKILL)
        assert wait_until(lambda: _answers(srv.port), 15)
        c = RawConnection(srv.port)
        assert c.call("AUTH", "late", "lpw") == b"+OK\r\n"
        assert c.call("SET", "k", "v") == b"-NOPERM User late has no permissions to run the 'set' command\r\n"
        assert c.call("AUTH", "pw2") == b"+OK\r\n"
        c.close()
    finally:
        srv.stop()


def _answers(port: int) -> bool:
    try:
        c = RawConnection(port, timeout=1)
        try:
            return c.call("PING") == b"-NOAUTH Authentication required.\r\n"
        finally:
            c.close()
    except OSError:
        return False
