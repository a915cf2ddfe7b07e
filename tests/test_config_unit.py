"""Unit tests for shardd.config (in-process, no server)."""
from __future__ import annotations

import json
import os
import pickle
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from shardd import cli, config
from shardd.config import Config, ConfigError


def _table() -> list[dict]:
    return json.loads(resources.files("shardd").joinpath("data/configs.json").read_text())


def _write(tmp_path: Path, text: str, name: str = "test.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _load_error(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, text), overrides or [])
    return str(info.value)


# ---- defaults


def test_every_default_renders_like_valkey() -> None:
    cfg = Config()
    for entry in _table():
        if entry["name"] != "dir":
            assert cfg.render(entry["name"]) == entry["default"], entry["name"]


def test_typed_defaults() -> None:
    cfg = Config()
    assert cfg["port"] == 6379
    assert cfg["appendonly"] is False
    assert cfg["protected-mode"] is True
    assert cfg["maxmemory"] == 0
    assert cfg["proto-max-bulk-len"] == 512 * 1024 * 1024
    assert cfg["appendfsync"] == "everysec"
    assert cfg["save"] == [(3600, 1), (300, 100), (60, 10000)]
    assert cfg["bind"] == ["*", "-::*"]
    assert cfg["client-output-buffer-limit"]["pubsub"] == (33554432, 8388608, 60)
    assert cfg["notify-keyspace-events"] == ""
    assert cfg["dir"] == os.getcwd()
    assert cfg.render("save") == "3600 1 300 100 60 10000"
    assert cfg.render("client-output-buffer-limit") == (
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")


def test_shardd_directives() -> None:
    cfg = Config()
    assert 1 <= cfg["worker-processes"] <= 64
    assert cfg["worker-cpulist"] == "" and cfg["proxy-cpulist"] == ""
    assert not cfg.is_mutable("worker-processes")
    with pytest.raises(ConfigError, match="between 1 and 64"):
        cfg.set("worker-processes", ["65"], startup=True)


def test_aliases_and_case() -> None:
    cfg = Config()
    cfg.set("SLAVE-READ-ONLY", ["no"])
    assert cfg["replica-read-only"] is False
    assert cfg.get("Slave-Read-Only") is False
    assert Config.canonical("hash-max-ziplist-entries") == "hash-max-listpack-entries"
    assert "slaveof" in cfg and "nope" not in cfg
    with pytest.raises(KeyError):
        cfg.get("nope")


# ---- values


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("100", 100), ("1k", 1000), ("1kb", 1024), ("1K", 1000), ("1KB", 1024),
    ("2m", 2_000_000), ("2mb", 2 * 1024 ** 2), ("3g", 3 * 10 ** 9), ("3Gb", 3 * 1024 ** 3),
    ("10b", 10), ("", 0),
])
def test_parse_memory(text: str, expected: int) -> None:
    assert config.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["-1", "1t", "1 kb", "abc", "1.5mb", "99999999999999gb"])
def test_parse_memory_errors(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_memory(text)


def test_memory_configs_take_units() -> None:
    cfg = Config()
    cfg.set("maxmemory", ["100mb"])
    cfg.set("client-query-buffer-limit", ["2gb"])
    assert cfg["maxmemory"] == 100 * 1024 * 1024
    assert cfg.render("maxmemory") == "104857600"
    assert cfg["client-query-buffer-limit"] == 2 * 1024 ** 3
    with pytest.raises(ConfigError, match="argument must be a memory value"):
        cfg.set("maxmemory", ["lots"])
    with pytest.raises(ConfigError, match="between 1048576 and 9223372036854775807"):
        cfg.set("proto-max-bulk-len", ["1k"])
    cfg.set("maxmemory-clients", ["10%"])
    assert cfg["maxmemory-clients"] == -10 and cfg.render("maxmemory-clients") == "10%"


@pytest.mark.parametrize("name, value, message", [
    ("appendonly", "maybe", "argument must be 'yes' or 'no'"),
    ("port", "abc", "argument couldn't be parsed into an integer"),
    ("port", "070", "argument couldn't be parsed into an integer"),
    ("port", "65536", "argument must be between 0 and 65535 inclusive"),
    ("maxclients", "0", "argument must be between 1 and 4294967295 inclusive"),
    ("appendfsync", "sometimes", "argument(s) must be one of the following: everysec, always, no"),
    ("save", "100", "Invalid save parameters"),
    ("save", "0 10", "Invalid save parameters"),
    ("notify-keyspace-events", "Kq", "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
    ("dbfilename", "a/b.rdb", "dbfilename can't be a path, just a filename"),
    ("client-output-buffer-limit", "normal 0 0",
     "Wrong number of arguments in buffer limit configuration."),
    ("shutdown-on-sigint", "save nosave",
     "shutdown options SAVE and NOSAVE can't be used simultaneously"),
])
def test_bad_values(name: str, value: str, message: str) -> None:
    cfg = Config()
    with pytest.raises(ConfigError) as info:
        cfg.set(name, [value], startup=True)
    assert str(info.value) == message


def test_enums() -> None:
    cfg = Config()
    cfg.set("maxmemory-policy", ["ALLKEYS-LRU"])
    assert cfg["maxmemory-policy"] == "allkeys-lru"
    cfg.set("oom-score-adj", ["relative"])
    assert cfg.render("oom-score-adj") == "yes"  # same value as "yes", as in Valkey
    cfg.set("shutdown-on-sigint", ["nosave force now"])
    assert cfg["shutdown-on-sigint"] == "nosave now force"


def test_keyspace_events_render() -> None:
    cfg = Config()
    cfg.set("notify-keyspace-events", ["KEA"])
    assert cfg["notify-keyspace-events"] == "AKE"
    cfg.set("notify-keyspace-events", ["Exg$"])
    assert cfg.render("notify-keyspace-events") == "g$xE"


def test_immutable_and_protected() -> None:
    cfg = Config()
    with pytest.raises(ConfigError, match="can't set immutable config"):
        cfg.set("databases", ["4"])
    cfg.set("databases", ["4"], startup=True)
    assert cfg["databases"] == 4
    with pytest.raises(ConfigError, match="can't set protected config"):
        cfg.set("dir", ["/"])
    cfg.set("enable-protected-configs", ["yes"], startup=True)
    cfg.set("dir", ["/"])
    assert cfg["dir"] == "/"


def test_config_set_is_all_or_nothing() -> None:
    cfg = Config()
    assert cfg.config_set([("port", "7000"), ("maxmemory", "1mb")]) == ["port", "maxmemory"]
    with pytest.raises(ConfigError) as info:
        cfg.config_set([("port", "7001"), ("maxmemory", "bogus")])
    assert str(info.value) == ("ERR CONFIG SET failed (possibly related to argument 'maxmemory')"
                               " - argument must be a memory value")
    assert cfg["port"] == 7000 and cfg["maxmemory"] == 1024 * 1024
    with pytest.raises(ConfigError, match="^ERR Unknown option or number of arguments for "
                                          "CONFIG SET - 'nope'$"):
        cfg.config_set([("nope", "1")])
    with pytest.raises(ConfigError, match="duplicate parameter"):
        cfg.config_set([("port", "1"), ("PORT", "2")])
    assert config.config_set_error("x", "why") == (
        "ERR CONFIG SET failed (possibly related to argument 'x') - why")


def test_config_set_save_and_bind_replace() -> None:
    cfg = Config()
    cfg.config_set([("save", "100 1 200 2")])
    assert cfg["save"] == [(100, 1), (200, 2)]
    cfg.config_set([("save", "")])
    assert cfg["save"] == []
    cfg.config_set([("bind", "127.0.0.1 ::1")])
    assert cfg["bind"] == ["127.0.0.1", "::1"]


# ---- CONFIG GET


def test_get_matching_globs() -> None:
    cfg = Config()
    names = dict(cfg.get_matching("maxmemory*"))
    assert names["maxmemory"] == "0" and names["maxmemory-policy"] == "noeviction"
    assert all(name.startswith("maxmemory") for name in names)
    assert dict(cfg.get_matching("*slave-read-only*")) == {"slave-read-only": "yes"}
    assert dict(cfg.get_matching("port")) == {"port": "6379"}
    assert cfg.get_matching("SLAVEOF") == [("SLAVEOF", "")]  # answered under the name asked
    assert dict(cfg.get_matching("h?")) == {"hz": "10"}
    assert dict(cfg.get_matching("[bp]ort")) == {"port": "6379"}
    assert cfg.get_matching("no-such-thing*") == []


def test_get_matching_star_skips_hidden_but_exact_finds_them() -> None:
    cfg = Config()
    everything = dict(cfg.get_matching("*"))
    assert "key-load-delay" not in everything
    assert "replica-read-only" in everything and "slave-read-only" in everything
    assert cfg.get_matching("key-load-delay") == [("key-load-delay", "0")]


def test_get_matching_several_patterns_dedup() -> None:
    pairs = Config().get_matching("port", "po*", "tls-port")
    assert [name for name, _ in pairs].count("port") == 1
    assert ("tls-port", "0") in pairs


# ---- split_args


@pytest.mark.parametrize("line, expected", [
    ("set a b", ["set", "a", "b"]),
    ("  set   a\tb  ", ["set", "a", "b"]),
    ('set "a b" c', ["set", "a b", "c"]),
    ("set 'a b' c", ["set", "a b", "c"]),
    ('"\\n\\r\\t\\b\\a\\\\\\"x"', ["\n\r\t\b\a\\\"x"]),
    ('"\\x41\\x7a"', ["Az"]),
    ('"\\xZZ"', ["xZZ"]),
    ("'it\\'s' '\\n'", ["it's", "\\n"]),
    ('foo"bar baz"', ["foobar baz"]),
    ('""', [""]),
    ("", []),
    ("a\vb", ["a\vb"]),
])
def test_split_args(line: str, expected: list[str]) -> None:
    assert config.split_args(line) == expected


@pytest.mark.parametrize("line", ['"open', "'open", '"a"b', "'a'b", 'x "a\\"'])
def test_split_args_unbalanced(line: str) -> None:
    assert config.split_args(line) is None


def test_split_args_bytes() -> None:
    assert config.split_args_bytes(b'GET "k\\xff"') == [b"GET", b"k\xff"]
    assert config.split_args_bytes(b"PING\r\n") == [b"PING"]
    assert config.split_args_bytes(b'"unbalanced') is None


# ---- config files


def test_file_basics(tmp_path: Path) -> None:
    text = """
# a comment
   # an indented comment
PORT 7000
maxmemory 10MB
appendonly YES
requirepass "with space"
masterauth 'single \\' quote'
hash-max-ziplist-entries 64
slaveof 10.0.0.1 6380
"""
    cfg = config.load(_write(tmp_path, text), [])
    assert cfg["port"] == 7000
    assert cfg["maxmemory"] == 10 * 1024 * 1024
    assert cfg["appendonly"] is True
    assert cfg["requirepass"] == "with space"
    assert cfg["primaryauth"] == "single ' quote"
    assert cfg["hash-max-listpack-entries"] == 64
    assert cfg.render("replicaof") == "10.0.0.1 6380"
    assert cfg.config_file == str(tmp_path / "test.conf")


def test_save_lines_accumulate(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, "save 900 1\nsave 300 10\n"), [])
    assert cfg["save"] == [(900, 1), (300, 10)]
    cfg = config.load(_write(tmp_path, "save 900 1\nsave 300 10\n"), ["--save", "60", "5"])
    assert cfg["save"] == [(900, 1), (300, 10), (60, 5)]
    cfg = config.load(_write(tmp_path, "save 900 1\nsave \"\"\n"), [])
    assert cfg["save"] == []
    cfg = config.load(_write(tmp_path, "save 900 1 300 10\n"), [])
    assert cfg.render("save") == "900 1 300 10"


def test_bind_replaces(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, "bind 127.0.0.1\nbind 10.0.0.1 ::1\n"), [])
    assert cfg["bind"] == ["10.0.0.1", "::1"]
    assert cfg.render("bind") == "10.0.0.1 ::1"


def test_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf.d").mkdir()
    _write(tmp_path, "maxmemory 1gb\nport 7001\n", "conf.d/a.conf")
    _write(tmp_path, "port 7002\n", "conf.d/b.conf")
    _write(tmp_path, "loglevel warning\n", "inc.conf")
    main = _write(tmp_path, "port 7000\ninclude inc.conf\ninclude conf.d/*.conf\n"
                            "include none/*.conf\n")
    monkeypatch.chdir(tmp_path)  # include paths are relative to the working directory
    cfg = config.load(main, [])
    assert cfg["loglevel"] == "warning"
    assert cfg["maxmemory"] == 1024 ** 3
    assert cfg["port"] == 7002


def test_error_in_included_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "\nport nope\n", "inc.conf")
    monkeypatch.chdir(tmp_path)
    message = _load_error(tmp_path, "include inc.conf\n")
    assert "at line 2 of '" + str(tmp_path / "inc.conf") + "'" in message
    assert ">>> 'port nope'" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="can't open config file"):
        config.load(str(tmp_path / "absent.conf"), [])


def test_unknown_directive_suggests(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "port 7000\ntio-threads 4\n")
    lines = message.splitlines()
    assert lines[0].startswith("*** FATAL CONFIG FILE ERROR")
    assert "at line 2" in lines[1] and str(tmp_path / "test.conf") in lines[1]
    assert lines[2] == ">>> 'tio-threads 4'"
    assert lines[3].startswith("Bad directive or wrong number of arguments")
    assert "did you mean io-threads?" in lines[3]


@pytest.mark.parametrize("text, line, reason", [
    ("appendonly maybe\n", 1, "argument must be 'yes' or 'no'"),
    ("\n\nport 99999\n", 3, "argument must be between 0 and 65535 inclusive"),
    ("# c\nport 1 2\n", 2, "wrong number of arguments"),
    ('port "6379\n', 1, "Unbalanced quotes in configuration line"),
    ("loadmodule /x.so\n", 1, "loadmodule is not supported"),
    ("rename-command nosuchcmd x\n", 1, "No such command in rename-command"),
    ("rename-command get set\n", 1, "Target command name already exists"),
    ("appendfsync sometimes\n", 1,
     "argument(s) must be one of the following: everysec, always, no"),
    ("save 10\n", 1, "Invalid save parameters"),
    ("include\n", 1, "Bad directive or wrong number of arguments"),
])
def test_bad_lines(tmp_path: Path, text: str, line: int, reason: str) -> None:
    message = _load_error(tmp_path, text)
    assert f"at line {line} of " in message
    assert message.splitlines()[-1] == reason


def test_rename_command_and_user(tmp_path: Path) -> None:
    text = ('rename-command FLUSHALL ""\nrename-command config myconfig\n'
            "rename-command myconfig cfg\nuser alice on >pw ~* +@all\n")
    cfg = config.load(_write(tmp_path, text), [])
    assert cfg.renames == {"flushall": "", "config": "cfg"}
    assert cfg.users == ["user alice on >pw ~* +@all"]


def test_deprecated_and_sentinel_lines_ignored(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, "list-max-ziplist-entries 512\nsentinel\n"), [])
    assert cfg["port"] == 6379


def test_post_load_checks(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "cluster-enabled yes\nreplicaof 1.2.3.4 6379\n")
    assert message.splitlines()[-1] == "replicaof directive not allowed in cluster mode"
    cfg = config.load(_write(tmp_path, "cluster-enabled yes\nhz 1000\n"), [])
    assert cfg["databases"] == 1 and cfg["hz"] == 500


# ---- command-line overrides


def test_cli_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "port 7000\nloglevel warning\n")
    cfg = config.load(path, ["--port", "7001", "--save", "", "--dir", str(tmp_path),
                             "--maxmemory", "1mb", "--bind", "127.0.0.1", "::1",
                             "--rename-command", "keys", ""])
    assert cfg["port"] == 7001
    assert cfg["loglevel"] == "warning"
    assert cfg["save"] == []
    assert cfg["dir"] == os.path.realpath(tmp_path)
    assert cfg["maxmemory"] == 1024 * 1024
    assert cfg["bind"] == ["127.0.0.1", "::1"]
    assert cfg.renames == {"keys": ""}


def test_cli_option_forms() -> None:
    cfg = config.load(None, ["--maxmemory 700mb", "--save", "--port", "6380",
                             "--shutdown-on-sigterm", "nosave force", "--bind", "1.2.3.4 ::1"])
    assert cfg["maxmemory"] == 700 * 1024 * 1024
    assert cfg["save"] == [] and cfg["port"] == 6380
    assert cfg["shutdown-on-sigterm"] == "nosave force"
    assert cfg["bind"] == ["1.2.3.4", "::1"]
    assert config.load(None, ["--port", "1", "--save"])["save"] == []


@pytest.mark.parametrize("tokens, shown, reason", [
    (["--port"], "'port'", "wrong number of arguments"),
    (["--port", "6379", "6380"], "'port \"6379\" \"6380\"'", "wrong number of arguments"),
    (["--port", "--bla", "--loglevel", "verbose"], "'port \"--bla\"'",
     "argument couldn't be parsed into an integer"),
    (["--replicaof", "127.0.0.1", "abc"], "'replicaof \"127.0.0.1\" \"abc\"'",
     "Invalid primary port"),
    (["--tio-threads", "4"], "'tio-threads \"4\"'", "did you mean io-threads?"),
])
def test_cli_errors(tokens: list[str], shown: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(None, tokens)
    message = str(info.value)
    assert "command line" in message
    assert f">>> {shown}" in message
    assert reason in message.splitlines()[-1]


def test_pickle_and_dict_round_trip() -> None:
    cfg = config.load(None, ["--port", "7005", "--save", "10 1", "--rename-command", "del", ""])
    for copy_ in (pickle.loads(pickle.dumps(cfg)),
                  Config.from_dict(json.loads(json.dumps(cfg.to_dict())))):
        assert copy_.values == cfg.values
        assert copy_.renames == cfg.renames


# ---- the shardd-server command


def test_cli_command(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("shardd-server v=")
    path = _write(tmp_path, "port 7000\n")
    result = runner.invoke(cli.main, [path, "--port", "7001", "--save", "", "--test-config"])
    assert result.exit_code == 0, result.output
    assert "Configuration test passed" in result.output
    result = runner.invoke(cli.main, ["-c", path, "--test-config", "--tio-threads", "4"])
    assert result.exit_code == 1
    assert "did you mean io-threads?" in result.output
