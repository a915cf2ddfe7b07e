"""ACL and out-of-memory checks inside scripts and transactions (Valkey 8's scriptCall,
execCommand and processCommand).

Valkey 8 words an ACL refusal inside a script "ACL failure in script: ..." (redis 7.0 said "The
user executing the script can't ..."), so those replies are checked against Valkey's text; the
OOM behaviour of MULTI/EXEC and of scripts is the same in redis 7.0 and is compared with the
oracle where one connection is enough, and checked against the oracle's texts where it is not.
"""
from __future__ import annotations

import pytest
import redis

from helpers import RawConnection, keys_on, run_both

SET_BODY = "return redis.call('set', KEYS[1], 'v')"
KEY_DENIED = "ERR ACL failure in script: No permissions to access a key"
OOM = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
EXEC_OOM = b"-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
CHANGED = (b"-NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. "
           b"This command is no longer allowed for the following reason: ")
LIBRARY = """#!lua name=acloom
server.register_function('fget', function(keys, args) return server.call('get', keys[1]) end)
server.register_function('fset', function(keys, args) return server.call('set', keys[1], 'v') end)
server.register_function{function_name='fset_oom', callback=function(keys, args)
  return server.call('set', keys[1], 'v') end, flags={'allow-oom'}}
server.register_function{function_name='fread', callback=function(keys, args)
  return server.call('get', keys[1]) end, flags={'no-writes'}}
"""

K0, K1 = keys_on(0, 1, "k0:")[0], keys_on(1, 1, "k1:")[0]


def sha1(body: str) -> str:
    import hashlib
    return hashlib.sha1(body.encode()).hexdigest()


def script_error(body: str, message: str, line: int = 1) -> bytes:
    """A redis.call error as the client sees it (luaCallFunction's suffix)."""
    return f"-{message} script: {sha1(body)}, on @user_script:{line}.\r\n".encode()


@pytest.fixture
def admin(server):
    conn = RawConnection(server.port)
    conn.call("FLUSHALL")
    conn.call("ACL", "LOG", "RESET")
    conn.call("FUNCTION", "FLUSH")
    yield conn
    conn.call("CONFIG", "SET", "maxmemory", "0")
    conn.call("RESET")
    for name in conn.call("ACL", "USERS").split(b"\r\n")[2::2]:
        if name and name != b"default":
            conn.call("ACL", "DELUSER", name)
    conn.call("FUNCTION", "FLUSH")
    conn.close()


def login(server, admin, *rules: str) -> RawConnection:
    assert admin.call("ACL", "SETUSER", "u", "on", "nopass", *rules) == b"+OK\r\n"
    conn = RawConnection(server.port)
    assert conn.call("AUTH", "u", "x") == b"+OK\r\n"
    return conn


def log_entries(server) -> list[dict]:
    client = server.client()
    try:
        return client.acl_log()
    finally:
        client.close()


# -- ACL inside scripts ---------------------------------------------------------------------------

def test_eval_checks_commands_keys_and_channels(server, admin):
    u = login(server, admin, "~*", "&*", "+@all", "-set")
    assert u.call("EVAL", SET_BODY, "1", K0) == script_error(
        SET_BODY, "ERR ACL failure in script: User u has no permissions to run the 'set' command")
    pcall = "return redis.pcall('set', KEYS[1], 'v')"
    assert u.call("EVAL", pcall, "1", K0) == \
        b"-ERR ACL failure in script: User u has no permissions to run the 'set' command\r\n"
    # pcall's error table, as a script sees it
    table = "local r = redis.pcall('set', KEYS[1], 'v') return {type(r), r['err']}"
    err = b"ERR ACL failure in script: User u has no permissions to run the 'set' command"
    assert u.call("EVAL", table, "1", K0) == b"*2\r\n$5\r\ntable\r\n$%d\r\n%s\r\n" % (len(err), err)
    assert u.call("EXISTS", K0) == b":0\r\n"
    assert u.call("EVAL", "return redis.call('get', KEYS[1])", "1", K0) == b"$-1\r\n"
    check = "return {redis.acl_check_cmd('set', 'a', 'b'), redis.acl_check_cmd('get', 'a')}"
    assert u.call("EVAL", check, "0") == b"*2\r\n$-1\r\n:1\r\n"
    assert admin.call("EVAL", check, "0") == b"*2\r\n:1\r\n:1\r\n"
    # keys (the undeclared ones too) and channels
    admin.call("ACL", "SETUSER", "u", "+set", "resetkeys", "~k0:*", "%R~ro*", "resetchannels", "&news")
    undeclared = "return redis.call('get', 'other')"
    assert u.call("EVAL", undeclared, "0") == script_error(undeclared, KEY_DENIED)
    write_ro = "return redis.call('set', 'ro1', 'v')"
    assert u.call("EVAL", write_ro, "0") == script_error(write_ro, KEY_DENIED)
    assert u.call("EVAL", "return redis.call('get', 'ro1')", "0") == b"$-1\r\n"
    publish = "return redis.call('publish', 'sports', 'x')"
    assert u.call("EVAL", publish, "0") == script_error(
        publish, "ERR ACL failure in script: No permissions to access a channel")
    # (an allowed PUBLISH from a script is refused by shardd itself: scripts cannot publish yet)
    # a subcommand is named as Valkey names it
    admin.call("ACL", "SETUSER", "u", "-object|encoding")
    encoding = "return redis.call('object', 'encoding', KEYS[1])"
    assert u.call("EVAL", encoding, "1", K0) == script_error(
        encoding, "ERR ACL failure in script: User u has no permissions to run the 'object|encoding' command")
    u.close()


def test_acl_log_of_scripts(server, admin):
    u = login(server, admin, "~k0:*", "&*", "+@all", "-incr")
    body = "redis.pcall('incr', KEYS[1]) redis.pcall('incr', KEYS[1]) return redis.pcall('get', 'x')"
    assert u.call("EVAL", body, "1", K0) == b"-ERR ACL failure in script: No permissions to access a key\r\n"
    entries = log_entries(server)
    assert [(e["reason"], e["context"], e["object"], e["username"], e["count"]) for e in entries] == \
        [("key", "lua", "x", "u", 1), ("command", "lua", "incr", "u", 2)]
    assert entries[0]["client-info"]["cmd"] == "eval" and entries[0]["client-info"]["user"] == "u"
    stats = server.client().info("stats")
    assert stats["acl_access_denied_cmd"] >= 2 and stats["acl_access_denied_key"] >= 1
    u.close()


def test_default_user_and_unrestricted_users_are_not_checked(server, admin):
    u = login(server, admin, "~*", "&*", "+@all")
    assert u.call("EVAL", SET_BODY, "1", K0) == b"+OK\r\n"
    assert admin.call("EVAL", SET_BODY, "1", K1) == b"+OK\r\n"
    # a user losing a permission is checked from its next script on, and the other way round
    admin.call("ACL", "SETUSER", "u", "-set")
    assert u.call("EVAL", SET_BODY, "1", K0).startswith(b"-ERR ACL failure in script")
    admin.call("ACL", "SETUSER", "u", "+set")
    assert u.call("EVAL", SET_BODY, "1", K0) == b"+OK\r\n"
    u.close()


def test_fcall_and_evalsha_check_the_user(server, admin):
    assert admin.call("FUNCTION", "LOAD", LIBRARY) == b"$6\r\nacloom\r\n"
    sha = admin.call("SCRIPT", "LOAD", SET_BODY)[5:-2].decode()
    u = login(server, admin, "~*", "&*", "+@all", "-set")
    assert u.call("FCALL", "fset", "1", K0) == \
        b"-ERR ACL failure in script: User u has no permissions to run the 'set' command script: fset, " \
        b"on @user_function:3.\r\n"
    assert u.call("FCALL", "fget", "1", K1) == b"$-1\r\n"
    assert u.call("EVALSHA", sha, "1", K1) == script_error(
        SET_BODY, "ERR ACL failure in script: User u has no permissions to run the 'set' command")
    assert [e["context"] for e in log_entries(server)] == ["lua"]
    u.close()


def test_scripts_across_shards_check_the_user(server, admin):
    u = login(server, admin, "~*", "&*", "+@all", "-set")
    both = "redis.call('get', KEYS[1]) return redis.call('set', KEYS[2], 'v')"
    assert u.call("EVAL", both, "2", K0, K1) == script_error(
        both, "ERR ACL failure in script: User u has no permissions to run the 'set' command")
    # declared on one worker, refused there, then it reaches the other worker's key: it runs
    # again across shards, and its refusal is logged once
    wander = f"local r = redis.pcall('set', KEYS[1], 'v') redis.call('get', '{K1}') return r"
    assert u.call("EVAL", wander, "1", K0) == \
        b"-ERR ACL failure in script: User u has no permissions to run the 'set' command\r\n"
    entries = log_entries(server)
    assert [(e["object"], e["context"], e["count"]) for e in entries] == [("set", "lua", 2)]
    admin.call("ACL", "SETUSER", "u", "+set", "resetkeys", "~k0:*")
    allowed = "return redis.call('set', KEYS[1], 'v')"
    assert u.call("EVAL", allowed, "1", K0) == b"+OK\r\n"
    reach = f"return redis.call('set', '{K1}', 'v')"
    assert u.call("EVAL", reach, "1", K0) == script_error(reach, KEY_DENIED)
    assert admin.call("EXISTS", K1) == b":0\r\n"
    u.close()


def test_script_inside_exec_runs_as_the_user(server, admin):
    u = login(server, admin, "~*", "&*", "+@all", "-set")
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("EVAL", SET_BODY, "1", K0) == b"+QUEUED\r\n"
    assert u.call("EVAL", "return redis.pcall('set', KEYS[1], 'v')", "2", K0, K1) == b"+QUEUED\r\n"
    assert u.call("EXEC") == b"*2\r\n" + script_error(
        SET_BODY, "ERR ACL failure in script: User u has no permissions to run the 'set' command") + \
        b"-ERR ACL failure in script: User u has no permissions to run the 'set' command\r\n"
    assert [e["context"] for e in log_entries(server)] == ["lua"]
    u.close()


# -- ACL checked again at EXEC ----------------------------------------------------------------------

def test_exec_after_the_user_lost_permissions(server, admin):
    u = login(server, admin, "~*", "&*", "+@all")
    assert u.call("MULTI") == b"+OK\r\n"
    for args in (("SET", K0, "1"), ("GET", K0), ("PUBLISH", "ch", "m"), ("SET", K1, "1")):
        assert u.call(*args) == b"+QUEUED\r\n"
    admin.call("ACL", "SETUSER", "u", "-set", "resetchannels", "&x")
    assert u.call("EXEC") == (b"*4\r\n" + CHANGED + b"no permission to execute the command or subcommand\r\n"
                              b"$-1\r\n" + CHANGED + b"no permission to access one of the channels used as "
                              b"arguments\r\n" + CHANGED + b"no permission to execute the command or subcommand\r\n")
    entries = log_entries(server)      # the second SET's refusal counts again, and comes first
    assert [(e["reason"], e["context"], e["object"]) for e in entries] == \
        [("command", "multi", "set"), ("channel", "multi", "ch")]
    assert entries[0]["count"] == 2 and entries[0]["client-info"]["cmd"] == "exec"
    # keys, on one worker (one frame) and on both
    admin.call("ACL", "SETUSER", "u", "+set", "resetkeys", "~*")
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("SET", K0, "2") == b"+QUEUED\r\n"
    assert u.call("GET", K0) == b"+QUEUED\r\n"
    admin.call("ACL", "SETUSER", "u", "resetkeys", "%R~k0:*")
    assert u.call("EXEC") == b"*2\r\n" + CHANGED + b"no permission to touch the specified keys\r\n$-1\r\n"
    admin.call("ACL", "SETUSER", "u", "resetkeys", "~*")
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("GET", K1) == b"+QUEUED\r\n"
    assert u.call("GET", K0) == b"+QUEUED\r\n"
    admin.call("ACL", "SETUSER", "u", "resetkeys", "~k1:*")
    assert u.call("EXEC") == b"*2\r\n$-1\r\n" + CHANGED + b"no permission to touch the specified keys\r\n"
    u.close()


def test_exec_with_unchanged_permissions_and_watch(server, admin):
    u = login(server, admin, "~*", "&*", "+@all", "-flushall")
    assert u.call("WATCH", K0) == b"+OK\r\n"
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("SET", K0, "1") == b"+QUEUED\r\n"
    assert u.call("SET", K1, "1") == b"+QUEUED\r\n"
    assert u.call("EXEC") == b"*2\r\n+OK\r\n+OK\r\n"
    # a watched key changed: nothing runs and nothing is checked (or logged)
    assert u.call("WATCH", K0) == b"+OK\r\n"
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("SET", K0, "2") == b"+QUEUED\r\n"
    admin.call("SET", K0, "x")
    admin.call("ACL", "SETUSER", "u", "-set")
    assert u.call("EXEC") == b"*-1\r\n"
    assert log_entries(server) == []
    u.close()


def test_exec_of_a_deleted_user_closes_the_connection(server, admin):
    u = login(server, admin, "~*", "&*", "+@all")
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("GET", K0) == b"+QUEUED\r\n"
    assert admin.call("ACL", "DELUSER", "u") == b":1\r\n"
    with pytest.raises((ConnectionError, OSError)):
        u.call("EXEC")
    u.close()


# -- OOM and MULTI/EXEC -------------------------------------------------------------------------------

OOM_RESTORE = [("CONFIG", "SET", "maxmemory", "0"), ("RESET",)]


def test_multi_exec_under_oom_against_the_oracle(pair):
    run_both(pair, [
        "SET x 123", ("!", "CONFIG SET maxmemory 1"),
        "MULTI", "GET x", "EXEC", "MULTI", "EXEC", "MULTI", "PING", "DISCARD", "MULTI", "SET y 1", "EXEC",
        "MULTI", "RESET", "GET x", "SET y 1", "DEL x", ("!", "CONFIG SET maxmemory 0"), "EXISTS x y",
    ], OOM_RESTORE)


def test_exec_with_a_denyoom_command_under_oom(server, admin):
    u = RawConnection(server.port)
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("SET", K0, "1") == b"+QUEUED\r\n"
    assert u.call("GET", K1) == b"+QUEUED\r\n"
    assert admin.call("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
    assert u.call("EXEC") == EXEC_OOM
    assert u.call("EXEC") == b"-ERR EXEC without MULTI\r\n"
    # reads alone still run; so does a script that declared no-writes
    assert admin.call("CONFIG", "SET", "maxmemory", "0") == b"+OK\r\n"
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("GET", K1) == b"+QUEUED\r\n"
    assert u.call("EVAL", "#!lua flags=no-writes\nreturn 1", "0") == b"+QUEUED\r\n"
    assert admin.call("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
    assert u.call("EXEC") == b"*2\r\n$-1\r\n:1\r\n"
    # a script that declared flags, without allow-oom, is denyoom; one without flags is not
    for body, reply in (("#!lua\nreturn 1", EXEC_OOM), ("return 1", b"*1\r\n:1\r\n")):
        admin.call("CONFIG", "SET", "maxmemory", "0")
        assert u.call("MULTI") == b"+OK\r\n"
        assert u.call("EVAL", body, "0") == b"+QUEUED\r\n"
        admin.call("CONFIG", "SET", "maxmemory", "1")
        assert u.call("EXEC") == reply
    admin.call("CONFIG", "SET", "maxmemory", "0")
    assert admin.call("EXISTS", K0) == b":0\r\n"
    u.close()


def test_multi_queueing_refused_while_oom_aborts(server, admin):
    u = RawConnection(server.port)
    assert admin.call("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
    assert u.call("MULTI") == b"+OK\r\n"
    assert u.call("GET", K0) == OOM
    assert u.call("CONFIG", "GET", "maxmemory") == OOM
    admin.call("CONFIG", "SET", "maxmemory", "0")
    assert u.call("SET", K0, "1") == b"+QUEUED\r\n"
    assert u.call("EXEC") == EXECABORT
    assert admin.call("EXISTS", K0) == b":0\r\n"
    u.close()


# -- OOM and scripts --------------------------------------------------------------------------------

def test_scripts_under_oom_against_the_oracle(pair):
    fn = ("FUNCTION LOAD \"#!lua name=oomlib\n"
          "redis.register_function('fw', function(k) return redis.call('set', k[1], 1) end)\n"
          "redis.register_function{function_name='fr', callback=function(k) return redis.call('get', k[1]) end, "
          "flags={'no-writes'}}\n"
          "redis.register_function{function_name='fo', callback=function(k) return redis.call('set', k[1], 2) end, "
          "flags={'allow-oom'}}\"")
    run_both(pair, [
        ("!", "FUNCTION FLUSH"), fn, "SET x 123", ("!", "CONFIG SET maxmemory 1"),
        # no shebang: runs, and its first denyoom call fails unless it wrote already
        "EVAL \"redis.call('set', KEYS[1], 1) return 1\" 1 x",
        "EVAL \"return redis.pcall('set', KEYS[1], 1)\" 1 x",
        "EVAL \"local r = redis.pcall('set', KEYS[1], 1) return r['err']\" 1 x",
        "EVAL \"return redis.call('get', KEYS[1])\" 1 x",
        "EVAL_RO \"return redis.call('get', KEYS[1])\" 1 x",
        "EVAL \"redis.call('del', 'nosuch') return redis.call('set', KEYS[1], 2)\" 1 x",
        "EVAL \"redis.call('incr', KEYS[1]) return redis.call('set', KEYS[1], 3)\" 1 x",
        "EVAL \"redis.call('expire', KEYS[1], 100) return redis.call('set', KEYS[1], 3)\" 1 x",
        # a shebang: refused unless no-writes or allow-oom
        "EVAL \"#!lua flags=\nreturn 1\" 1 x", "EVAL \"#!lua\nreturn 1\" 0",
        "EVAL_RO \"#!lua\nreturn 1\" 0",
        "EVAL \"#!lua flags=allow-oom\nredis.call('set', KEYS[1], 4) return redis.call('get', KEYS[1])\" 1 x",
        "EVAL \"#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])\" 1 x",
        "EVAL \"#!lua flags=no-writes,allow-oom\nreturn 5\" 0",
        "SCRIPT LOAD \"#!lua\nreturn 6\"", f"EVALSHA {sha1(chr(35) + '!lua' + chr(10) + 'return 6')} 0",
        f"EVALSHA_RO {sha1(chr(35) + '!lua' + chr(10) + 'return 6')} 0",
        "FCALL fw 1 x", "FCALL fr 1 x", "FCALL_RO fr 1 x", "FCALL fo 1 x",
        ("!", "CONFIG SET maxmemory 0"), "GET x",
    ], OOM_RESTORE + [("FUNCTION", "FLUSH")])


def test_scripts_under_oom_across_shards(server, admin):
    admin.call("SET", K0, "a")
    admin.call("SET", K1, "b")
    assert admin.call("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
    both = "redis.call('get', KEYS[1]) return redis.call('set', KEYS[2], 'v')"
    assert admin.call("EVAL", both, "2", K0, K1) == script_error(both, OOM[1:-2].decode())
    assert admin.call("EVAL", "#!lua\nreturn 1", "2", K0, K1) == OOM
    reads = "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}"
    assert admin.call("EVAL", "#!lua flags=no-writes\n" + reads, "2", K0, K1) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    wrote = "#!lua flags=allow-oom\nredis.call('set', KEYS[1], 'c') return redis.call('set', KEYS[2], 'd')"
    assert admin.call("EVAL", wrote, "2", K0, K1) == b"+OK\r\n"
    admin.call("CONFIG", "SET", "maxmemory", "0")
    assert admin.call("MGET", K0, K1) == b"*2\r\n$1\r\nc\r\n$1\r\nd\r\n"


def test_oom_is_per_worker(server, admin):
    """Each worker holds its own share: one full worker does not refuse writes to the other."""
    r = server.client()
    try:
        r.config_set("maxmemory", 4 << 20)
        value = "x" * 1000
        filled = 0
        for i in range(20000):
            try:
                r.set(f"{keys_on(0, 1, f'fill{i}:')[0]}", value)
                filled += 1
            except redis.ResponseError:
                break
        else:
            pytest.skip("worker 0 never filled up")
        u = RawConnection(server.port)
        assert u.call("SET", K1, "1") == b"+OK\r\n"
        assert u.call("MULTI") == b"+OK\r\n"
        assert u.call("SET", K1, "2") == b"+QUEUED\r\n"
        assert u.call("SET", K0, "2") == OOM
        assert u.call("DISCARD") == b"+OK\r\n"
        assert u.call("EVAL", "#!lua\nreturn redis.call('set', KEYS[1], 3)", "1", K1) == b"+OK\r\n"
        assert u.call("EVAL", "#!lua\nreturn redis.call('set', KEYS[1], 3)", "1", K0) == OOM
        u.close()
    finally:
        r.config_set("maxmemory", 0)
        r.flushall()
        r.close()
