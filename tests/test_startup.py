"""shardd-server's command line and config files, run as real processes (valkey-server's rules)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from server import ROOT, Server, free_port, server_env, stop_tree, tcp, unix, wait_answering

SCRIPT = shutil.which("shardd-server")


def server_cmd(console_script: bool = False) -> list[str]:
    if console_script:
        assert SCRIPT is not None
        return [SCRIPT]
    return [sys.executable, "-m", "shardd"]


def run_cli(*args: str, console_script: bool = False, timeout: float = 20.0, cwd=None) -> subprocess.CompletedProcess:
    """Run a command that is expected to exit by itself (bounded)."""
    return subprocess.run([*server_cmd(console_script), *args], capture_output=True, text=True,
                          timeout=timeout, env=server_env(), cwd=cwd or str(ROOT))


class Launched:
    """A server started with exactly the given arguments (no test-harness defaults)."""

    def __init__(self, args: list[str], tmp: Path, console_script: bool = False) -> None:
        self.log_path = tmp / f"launched-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*server_cmd(console_script), *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=server_env(), cwd=str(tmp))
        self.kids: list[int] = []

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, connect, timeout: float = 20.0) -> None:
        if not wait_answering(self.proc, connect, timeout):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            raise AssertionError(f"server did not start:\n{self.output()}")
        self.kids = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self) -> int | None:
        try:
            self.kids += [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        returncode = stop_tree(self.proc, set(self.kids))
        self.log.close()
        return returncode


# --- --version, --help ----------------------------------------------------------------------------

@pytest.mark.parametrize("console_script", [False, True])
@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(console_script, flag):
    if console_script and SCRIPT is None:
        pytest.skip("the shardd-server console script is not installed")
    done = run_cli(flag, console_script=console_script)
    assert done.returncode == 0
    from shardd import VALKEY_VERSION, __version__
    assert done.stdout.startswith("shardd-server v=")
    assert __version__ in done.stdout and VALKEY_VERSION in done.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    done = run_cli(flag)
    assert done.returncode == 0
    assert done.stdout.startswith("Usage:")
    for word in ("CONFIGFILE", "--directive", "--version", "--config", "--test-config"):
        assert word in done.stdout


# --- config files ------------------------------------------------------------------------------------

def _write_config(tmp: Path, port_in_file: int) -> Path:
    (tmp / "included.conf").write_text(
        "# an included file\n"
        "maxmemory 2mb\n"
        "save 900 1\n"
        "maxmemory-policy \"allkeys-lru\"\n")
    conf = tmp / "main.conf"
    conf.write_text(
        "# shardd test config\n"
        "\n"
        f"port {port_in_file}\n"
        "bind 0.0.0.0 ::1\n"
        "bind 127.0.0.1\n"
        f"include {tmp / 'included.conf'}\n"
        "save 300 10\n"
        "save 60 10000\n"
        "   hz 20   \n"
        "proto-max-bulk-len 1gb\n"
        "active-defrag-ignore-bytes 100k\n"
        "client-output-buffer-limit pubsub 32mb 8mb 60\n"
        "dbfilename \"my dump.rdb\"\n"
        "appenddirname 'aof dir'\n"
        "databases 4\n"
        f"dir {tmp}\n"
        "worker-processes 2\n"
        "io-threads 1\n")
    return conf


def _check_loaded(port: int, conf: Path, hz: str) -> None:
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)
    try:
        got = c.config_get("*")
        assert got["port"] == str(port)
        assert got["bind"] == "127.0.0.1"                      # the last bind line replaced the first
        assert got["save"] == "900 1 300 10 60 10000"          # save lines accumulate, include first
        assert got["hz"] == hz
        assert got["maxmemory"] == "2097152"                   # 2mb = 2 * 1024 * 1024
        assert got["maxmemory-policy"] == "allkeys-lru"
        assert got["proto-max-bulk-len"] == "1073741824"
        assert got["active-defrag-ignore-bytes"] == "100000"   # k = 1000, kb = 1024
        assert got["client-output-buffer-limit"] == \
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        assert got["dbfilename"] == "my dump.rdb"
        assert got["appenddirname"] == "aof dir"
        assert got["databases"] == "4"
        assert got["dir"] == str(conf.parent.resolve())
        assert c.info("server")["config_file"] == str(conf.resolve())
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            c.execute_command("SELECT", "4")
        assert c.set("k", "v") and c.get("k") == "v"
    finally:
        c.close()


@pytest.mark.parametrize("how", ["positional", "-c", "--config"])
def test_config_file_and_overrides(tmp_path, how):
    port = free_port()
    conf = _write_config(tmp_path, free_port())
    args = [str(conf)] if how == "positional" else [how, str(conf)]
    srv = Launched([*args, "--port", str(port), "--hz", "15"], tmp_path)
    try:
        srv.wait_ready(tcp(port))
        _check_loaded(port, conf, "15")
    finally:
        assert srv.stop() == 0


def test_config_file_with_console_script(tmp_path):
    if SCRIPT is None:
        pytest.skip("the shardd-server console script is not installed")
    port = free_port()
    conf = _write_config(tmp_path, port)
    srv = Launched([str(conf)], tmp_path, console_script=True)
    try:
        srv.wait_ready(tcp(port))
        _check_loaded(port, conf, "20")
    finally:
        assert srv.stop() == 0


def test_command_line_save_and_bind(tmp_path):
    port = free_port()
    srv = Launched(["--port", str(port), "--bind", "127.0.0.1", "--save", "100 1", "--save", "50 2",
                    "--dir", str(tmp_path), "--maxmemory", "1gb"], tmp_path)
    try:
        srv.wait_ready(tcp(port))
        c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)
        try:
            assert c.config_get("save") == {"save": "100 1 50 2"}
            assert c.config_get("maxmemory") == {"maxmemory": "1073741824"}
            assert c.info("server")["config_file"] == ""
        finally:
            c.close()
    finally:
        assert srv.stop() == 0


def test_test_config_flag(tmp_path):
    conf = _write_config(tmp_path, free_port())
    done = run_cli("--test-config", str(conf))
    assert done.returncode == 0
    assert "Configuration test passed" in done.stdout


# --- config errors --------------------------------------------------------------------------------

def test_unknown_directive(tmp_path):
    conf = tmp_path / "typo.conf"
    conf.write_text("# first line\nport 7000\ntio-threads 4\n")
    done = run_cli(str(conf))
    assert done.returncode == 1
    text = done.stderr
    assert "FATAL CONFIG FILE ERROR" in text
    assert f"line 3 of '{conf.resolve()}'" in text
    assert ">>> 'tio-threads 4'" in text
    assert "Bad directive or wrong number of arguments" in text
    assert "io-threads" in text.split(">>>", 1)[1].split("\n", 1)[1]   # the suggestion


def test_unknown_directive_on_the_command_line():
    done = run_cli("--tio-threads", "4")
    assert done.returncode == 1
    assert "the command line options" in done.stderr
    assert "io-threads" in done.stderr


@pytest.mark.parametrize("line,reason", [
    ("maxmemory lots", "argument must be a memory value"),
    ("hz abc", "argument couldn't be parsed into an integer"),
    ("appendonly maybe", "argument must be 'yes' or 'no'"),
    ("maxmemory-policy sometimes", "argument(s) must be one of the following"),
    ("save 100", "Invalid save parameters"),
    ("port \"7000", "Unbalanced quotes in configuration line"),
])
def test_bad_value_names_the_line(tmp_path, line, reason):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"port {free_port()}\n{line}\n")
    done = run_cli(str(conf))
    assert done.returncode == 1
    assert f"line 2 of '{conf.resolve()}'" in done.stderr
    assert f">>> '{line}'" in done.stderr
    assert reason in done.stderr


def test_missing_config_file(tmp_path):
    done = run_cli(str(tmp_path / "nope.conf"))
    assert done.returncode == 1
    assert "can't open config file" in done.stderr


def test_second_server_on_the_same_port_fails(tmp_path):
    first = Server(workers=1)
    try:
        done = run_cli("--port", str(first.port), "--bind", "127.0.0.1", "--save", "", "--dir",
                       str(tmp_path), "--worker-processes", "1", timeout=30)
        assert done.returncode == 1
        out = done.stdout + done.stderr
        assert f"127.0.0.1:{first.port}" in out and "Address already in use" in out
        assert first.client().ping()          # the first server is unharmed
    finally:
        first.stop()


# --- unix socket ------------------------------------------------------------------------------------

def test_port_0_and_unixsocket(tmp_path):
    path = str(tmp_path / "shardd.sock")
    srv = Launched(["--port", "0", "--unixsocket", path, "--unixsocketperm", "700", "--save", "",
                    "--dir", str(tmp_path), "--worker-processes", "2"], tmp_path)
    try:
        srv.wait_ready(unix(path))
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o700)
        c = redis.Redis(unix_socket_path=path, socket_timeout=10)
        try:
            assert c.ping()
            assert c.set("u", "1") and c.get("u") == b"1"
            assert c.config_get("port") == {"port": "0"}
            assert c.config_get("unixsocket") == {"unixsocket": path}
        finally:
            c.close()
    finally:
        assert srv.stop() == 0
    assert not os.path.exists(path)        # removed on shutdown


def test_unix_socket_client_addresses(tmp_path):
    path = str(tmp_path / "addr.sock")
    srv = Launched(["--port", "0", "--unixsocket", path, "--save", "", "--dir", str(tmp_path),
                    "--worker-processes", "1"], tmp_path)
    try:
        srv.wait_ready(unix(path))
        c = redis.Redis(unix_socket_path=path, socket_timeout=10)
        try:
            info = c.client_info()
            assert (info["addr"], info["laddr"], info["flags"]) == (f"{path}:0", f"{path}:0", "U")
        finally:
            c.close()
    finally:
        srv.stop()
