"""Running shardd in production: systemd supervision (sd_notify), daemonize, the pid file, the
log file and level, `dir`, `bind`, the unix socket, the systemd units. Real server processes,
each on free ports in its own temporary directory; every process a test starts is stopped."""
from __future__ import annotations

import configparser
import grp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis

from helpers import wait_until
from server import ROOT, Server, answers_ping, free_port, reap, server_env, stop_tree, tcp, unix, \
    wait_answering

LINE = re.compile(r"^(\d+):([MPWC]) (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
                  r"(\d\d):(\d\d):(\d\d)\.(\d{3}) ([.\-*#]) (.+)$")


def base_cmd(port: int, tmp: Path, *args: str, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "shardd", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(tmp), "--worker-processes", str(workers), "--io-threads", "1", *args]


def run_cmd(cmd: list[str], tmp: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or server_env(),
                          cwd=str(tmp))


def leftovers(marker: str) -> list[psutil.Process]:
    """Processes started by this test: their command line names our own temporary directory."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(marker in part for part in (p.info["cmdline"] or ())):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def kill_leftovers(marker: str) -> None:
    procs = leftovers(marker)
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


def server_output(srv: Server) -> str:
    """What a Server printed (also after stop(), which closes its log)."""
    return Path(srv.log_path).read_text(errors="replace")


def log_lines(path: Path) -> list[re.Match]:
    lines = path.read_text().splitlines()
    matches = [LINE.match(line) for line in lines]
    bad = [line for line, m in zip(lines, matches) if m is None]
    assert not bad, f"lines not in Valkey's log format: {bad[:5]}"
    return matches


class NotifySocket:
    """A fake $NOTIFY_SOCKET: a unix datagram socket that also learns each sender's pid."""

    def __init__(self, tmp: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"shardd-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout: float) -> tuple[int, str]:
        """(sender pid, message); raises socket.timeout when nothing comes."""
        self.sock.settimeout(timeout)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        return pid, data.decode()

    def close(self) -> None:
        self.sock.close()


# --- systemd: sd_notify -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["path", "abstract", "requirepass", "unixsocket"])
def test_sd_notify_sequence(tmp_path, variant):
    notify = NotifySocket(tmp_path, abstract=variant == "abstract")
    port = free_port()
    args = ["--supervised", "systemd", "--daemonize", "yes"]     # supervised: no daemonizing
    connect = tcp(port)
    if variant == "requirepass":
        args += ["--requirepass", "s3cret"]
    if variant == "unixsocket":
        path = str(tmp_path / "s.sock")
        args += ["--port", "0", "--unixsocket", path]
        connect = unix(path)
    env = dict(server_env(), NOTIFY_SOCKET=notify.env, WATCHDOG_USEC="300000")
    env.pop("WATCHDOG_PID", None)
    out = open(tmp_path / "out.log", "wb")
    proc = subprocess.Popen(base_cmd(port, tmp_path, *args), stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=str(tmp_path))
    kids: list[psutil.Process] = []
    try:
        before_ready = []
        while True:
            try:
                pid, msg = notify.recv(30)
            except socket.timeout:
                raise AssertionError(f"no READY=1; got {before_ready}\n{(tmp_path / 'out.log').read_text()}")
            assert pid == proc.pid, "only the main process (the supervisor) may notify"
            if msg == "READY=1\n":
                # At READY the port answers at once, and so does every worker (DBSIZE).
                assert answers_ping(connect, (b"+PONG", b"-NOAUTH"))
                client = (redis.Redis(unix_socket_path=path, socket_timeout=10) if variant == "unixsocket"
                          else redis.Redis(port=port, socket_timeout=10,
                                           password="s3cret" if variant == "requirepass" else None))
                try:
                    assert client.dbsize() == 0
                finally:
                    client.close()
                break
            before_ready.append(msg)
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert len(kids) == 3
        statuses = [m for m in before_ready if m.startswith("STATUS=")]
        assert statuses[0] == "STATUS=shardd is loading...\n"
        assert statuses[-1] == "STATUS=Ready to accept connections\n"
        assert any(m.startswith("STATUS=Waiting for the workers") for m in statuses)
        assert set(before_ready) <= set(statuses) | {"WATCHDOG=1\n"}
        # WATCHDOG=1 every WATCHDOG_USEC/2 = 0.15 s
        t0 = time.monotonic()
        pings = 0
        while pings < 4:
            pid, msg = notify.recv(5)
            assert (pid, msg) == (proc.pid, "WATCHDOG=1\n")
            pings += 1
        assert time.monotonic() - t0 < 2.0
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        while True:
            pid, msg = notify.recv(10)
            assert pid == proc.pid
            if msg == "STOPPING=1\n":
                break
            assert msg == "WATCHDOG=1\n"
        assert proc.wait(20) == 0
        assert not reap(kids)
        text = (tmp_path / "out.log").read_text()
        assert "Supervised by systemd. Please make sure you set appropriate values for TimeoutStartSec " \
               "and TimeoutStopSec in your service unit." in text
    finally:
        stop_tree(proc, kids)
        out.close()
        notify.close()


@pytest.mark.parametrize("mode,warned", [("systemd", True), ("auto", False)])
def test_supervised_without_notify_socket(tmp_path, mode, warned):
    """`supervised systemd` with no NOTIFY_SOCKET logs Valkey's error and runs unsupervised;
    `auto` without systemd or upstart is simply not supervised."""
    port = free_port()
    env = server_env()
    for name in ("NOTIFY_SOCKET", "UPSTART_JOB", "WATCHDOG_USEC"):
        env.pop(name, None)
    out = open(tmp_path / "out.log", "wb")
    proc = subprocess.Popen(base_cmd(port, tmp_path, "--supervised", mode), stdout=out,
                            stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    kids = []
    try:
        assert wait_answering(proc, tcp(port))
        kids = psutil.Process(proc.pid).children(recursive=True)
        text = (tmp_path / "out.log").read_text()
        assert ("systemd supervision error: NOTIFY_SOCKET not found!" in text) == warned
        assert "Supervised by systemd" not in text
        c = redis.Redis(port=port, socket_timeout=10)
        try:
            assert c.info("server")["process_id"] == proc.pid
        finally:
            c.close()
    finally:
        assert stop_tree(proc, kids) == 0
        out.close()


# --- daemonize, pidfile -----------------------------------------------------------------------------

def test_daemonize(tmp_path):
    port = free_port()
    pidfile, logfile = tmp_path / "shardd.pid", tmp_path / "shardd.log"
    cmd = base_cmd(port, tmp_path, "--daemonize", "yes", "--pidfile", str(pidfile), "--logfile", str(logfile))
    try:
        done = run_cmd(cmd, tmp_path)
        # The command returns once the server is up: it answers right away.
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == ("", "")
        assert answers_ping(tcp(port))
        text = pidfile.read_text()
        pid = int(text)
        assert text == f"{pid}\n"
        daemon = psutil.Process(pid)
        assert daemon.ppid() != os.getpid()
        assert os.getsid(pid) != os.getsid(0)                          # a session of its own
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
        kids = daemon.children(recursive=True)
        assert len(kids) == 3 and all(k.ppid() == pid for k in kids)
        c = redis.Redis(port=port, socket_timeout=10)
        try:
            assert c.info("server")["process_id"] == pid
            assert c.set("k", "v") and c.get("k") == b"v"
        finally:
            c.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        _, alive = psutil.wait_procs(kids, timeout=10)
        assert not alive
        assert not pidfile.exists()
        roles = {(m.group(2), m.group(11)) for m in log_lines(logfile)}
        assert ("M", "Removing the pid file.") in roles
        assert ("M", "Ready to accept connections tcp") in roles
        assert not leftovers(str(tmp_path))
    finally:
        kill_leftovers(str(tmp_path))


def test_daemonize_logs_nowhere_without_logfile(tmp_path):
    """`logfile ""` while daemonized: stdout is /dev/null, as Valkey."""
    port = free_port()
    pidfile = tmp_path / "shardd.pid"
    try:
        done = run_cmd(base_cmd(port, tmp_path, "--daemonize", "yes", "--pidfile", str(pidfile)), tmp_path)
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == ("", "")
        assert answers_ping(tcp(port))
        daemon = psutil.Process(int(pidfile.read_text()))
        kids = daemon.children(recursive=True)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        assert not reap(kids)
        assert not pidfile.exists()
        assert sorted(os.listdir(tmp_path)) == []
    finally:
        kill_leftovers(str(tmp_path))


def test_daemonize_failure_exits_1(tmp_path):
    """The launching command reports a server that cannot start: exit 1 and why, on stderr."""
    port = free_port()
    pidfile = tmp_path / "shardd.pid"
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        done = run_cmd(base_cmd(port, tmp_path, "--daemonize", "yes", "--pidfile", str(pidfile)), tmp_path)
        assert done.returncode == 1
        assert f"127.0.0.1:{port}" in done.stderr and "Address already in use" in done.stderr
        assert f"Failed listening on port {port} (tcp), aborting." in done.stderr
        assert wait_until(lambda: not leftovers(str(tmp_path)), 10)
        assert not pidfile.exists()
    finally:
        holder.close()
        kill_leftovers(str(tmp_path))


def test_pidfile_without_daemonize(tmp_path):
    """An explicit pidfile is written in the foreground too (Valkey: daemonized or pidfile set)."""
    pidfile = tmp_path / "fg.pid"
    srv = Server("--pidfile", str(pidfile), dir=str(tmp_path))
    try:
        assert pidfile.read_text() == f"{srv.proc.pid}\n"
    finally:
        assert srv.stop() == 0
    assert not pidfile.exists()
    assert "Removing the pid file." in server_output(srv)


# --- logfile, loglevel ------------------------------------------------------------------------------

def test_logfile_lines_of_every_role(tmp_path):
    logfile = tmp_path / "shardd.log"
    srv = Server("--logfile", str(logfile), workers=2, proxies=2, dir=str(tmp_path))
    try:
        c = srv.client()
        try:
            assert c.set("a", "1") and c.get("a") == b"1"
        finally:
            c.close()
        # A worker killed outright: the supervisor says so, the new worker says it started.
        victim = next(int(m.group(1)) for m in log_lines(logfile) if m.group(2) == "W")
        psutil.Process(victim).kill()
        assert wait_until(lambda: sum("started, hash slots" in m.group(11) for m in log_lines(logfile)) == 3)
        assert srv.client().ping()
    finally:
        assert srv.stop() == 0
    assert server_output(srv) == ""                      # everything went to the log file
    matches = log_lines(logfile)
    by_role: dict[str, set[int]] = {}
    for m in matches:
        by_role.setdefault(m.group(2), set()).add(int(m.group(1)))
    assert by_role["M"] == {srv.proc.pid}
    assert len(by_role["P"]) == 2
    assert len(by_role["W"]) == 3                  # two workers, one of them restarted
    said = {(m.group(2), m.group(10), m.group(11)) for m in matches}
    for line in [("M", "*", "Server initialized"), ("M", "*", "Ready to accept connections tcp"),
                 ("M", "*", "Configuration loaded"), ("M", "#", "User requested shutdown..."),
                 ("M", "#", "shardd is now ready to exit, bye bye..."),
                 ("P", "*", "Proxy 0 started"), ("P", "*", "Proxy 1 started"),
                 ("W", "*", "Worker 0 started, hash slots 0-8191"),
                 ("W", "*", "Worker 1 started, hash slots 8192-16383")]:
        assert line in said, line
    assert any(role == "M" and text.startswith(f"Worker ") and "restarting it" in text
               for role, _, text in said)
    text = logfile.read_text()
    assert text.index("oO0OoO0OoO0Oo shardd is starting") < text.index("Server initialized") \
        < text.index("Ready to accept connections tcp") < text.index("User requested shutdown...")


def test_loglevel_warning_hides_notice_lines(tmp_path):
    logfile = tmp_path / "quiet.log"
    srv = Server("--logfile", str(logfile), "--loglevel", "warning", dir=str(tmp_path))
    try:
        assert srv.client().ping()
    finally:
        assert srv.stop() == 0
    matches = log_lines(logfile)
    assert matches and {m.group(10) for m in matches} == {"#"}
    texts = [m.group(11) for m in matches]
    assert "User requested shutdown..." in texts
    assert "Server initialized" not in texts and "Ready to accept connections tcp" not in texts


def test_config_set_loglevel_applies_to_every_process(tmp_path):
    """CONFIG SET loglevel reaches the supervisor too (with several proxies the query passes
    through it): its notice line "Removing the pid file." is no longer written."""
    logfile, pidfile = tmp_path / "live.log", tmp_path / "live.pid"
    srv = Server("--logfile", str(logfile), "--pidfile", str(pidfile), proxies=2, dir=str(tmp_path))
    try:
        c = srv.client(decode_responses=True)
        try:
            assert c.config_set("loglevel", "warning")
            assert c.config_get("loglevel") == {"loglevel": "warning"}
        finally:
            c.close()
        time.sleep(0.2)
    finally:
        assert srv.stop() == 0
    texts = [m.group(11) for m in log_lines(logfile)]
    assert "Server initialized" in texts and "User requested shutdown..." in texts
    assert "Removing the pid file." not in texts
    assert not pidfile.exists()


# --- dir --------------------------------------------------------------------------------------------

def test_bad_dir(tmp_path):
    missing = tmp_path / "missing"
    done = run_cmd([sys.executable, "-m", "shardd", "--port", str(free_port()), "--dir", str(missing)], tmp_path)
    assert done.returncode == 1
    assert "FATAL CONFIG FILE ERROR" in done.stderr
    assert f">>> 'dir \"{missing}\"'" in done.stderr
    assert "No such file or directory" in done.stderr


def test_dir_gone_before_start(tmp_path):
    """The supervisor's own chdir, when the directory vanished after the config was read."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys\n"
            "from shardd import config, supervisor\n"
            f"cfg = config.load(None, ['--dir', {str(gone)!r}, '--port', '0'])\n"
            f"os.rmdir({str(gone)!r})\n"
            "sys.exit(supervisor.run(cfg))\n")
    done = run_cmd([sys.executable, "-c", code], tmp_path)
    assert done.returncode == 1
    assert re.search(rf"^\d+:M .* # Can't chdir to '{re.escape(str(gone))}': No such file or directory$",
                     done.stdout, re.M), done.stdout + done.stderr


# --- bind, unix socket, tcp-backlog --------------------------------------------------------------

def _bindable(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


UNAVAILABLE = "192.0.2.1"        # TEST-NET-1: not an address of this host


def test_several_bind_addresses_with_an_optional_unavailable_one(tmp_path):
    if not _bindable("127.0.0.2") or _bindable(UNAVAILABLE):
        pytest.skip("needs 127.0.0.2 bindable and 192.0.2.1 not")
    srv = Server("--bind", f"127.0.0.1 127.0.0.2 -{UNAVAILABLE}", dir=str(tmp_path))
    try:
        for host in ("127.0.0.1", "127.0.0.2"):
            assert answers_ping(lambda: socket.create_connection((host, srv.port), timeout=2))
        c = srv.client(decode_responses=True)
        try:
            assert c.config_get("bind") == {"bind": f"127.0.0.1 127.0.0.2 -{UNAVAILABLE}"}
        finally:
            c.close()
    finally:
        assert srv.stop() == 0
    assert (f"# Warning: Could not create server TCP listening socket {UNAVAILABLE}:{srv.port}: "
            f"bind: Cannot assign requested address") in server_output(srv)


def test_unavailable_bind_address_that_is_not_optional(tmp_path):
    if _bindable(UNAVAILABLE):
        pytest.skip("192.0.2.1 is an address of this host")
    port = free_port()
    done = run_cmd(base_cmd(port, tmp_path, "--bind", f"127.0.0.1 {UNAVAILABLE}"), tmp_path)
    assert done.returncode == 1
    assert (f"Warning: Could not create server TCP listening socket {UNAVAILABLE}:{port}: "
            f"bind: Cannot assign requested address") in done.stdout
    assert f"Failed listening on port {port} (tcp), aborting." in done.stdout
    assert not leftovers(str(tmp_path))


def test_optional_bind_address_in_use_still_fails(tmp_path):
    """`-` only forgives an address the host does not have (Valkey's listenToPort)."""
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        done = run_cmd(base_cmd(port, tmp_path, "--bind", "-127.0.0.1"), tmp_path)
    finally:
        holder.close()
    assert done.returncode == 1
    assert f"127.0.0.1:{port}: bind: Address already in use" in done.stdout


def test_bind_wildcards(tmp_path):
    srv = Server("--bind", "* -::*", dir=str(tmp_path))
    try:
        assert answers_ping(tcp(srv.port))
        if _bindable("::1"):
            assert answers_ping(lambda: socket.create_connection(("::1", srv.port), timeout=2))
    finally:
        assert srv.stop() == 0


def test_unixsocket_perm_and_group(tmp_path):
    path = tmp_path / "shardd.sock"
    group = grp.getgrgid(os.getgid()).gr_name
    logfile = tmp_path / "unix.log"
    out = open(tmp_path / "out.log", "wb")
    proc = subprocess.Popen(base_cmd(0, tmp_path, "--unixsocket", str(path), "--unixsocketperm", "640",
                                     "--unixsocketgroup", group, "--logfile", str(logfile)),
                            stdout=out, stderr=subprocess.STDOUT, env=server_env(), cwd=str(tmp_path))
    kids = []
    try:
        assert wait_answering(proc, unix(str(path))), logfile.read_text()
        kids = psutil.Process(proc.pid).children(recursive=True)
        st = os.stat(path)
        assert oct(st.st_mode & 0o777) == oct(0o640)
        assert st.st_gid == os.getgid()
        c = redis.Redis(unix_socket_path=str(path), socket_timeout=10, decode_responses=True)
        try:
            assert c.config_get("unixsocketperm") == {"unixsocketperm": "640"}
            assert c.config_get("port") == {"port": "0"}
        finally:
            c.close()
    finally:
        assert stop_tree(proc, kids) == 0
        out.close()
    assert not path.exists()
    texts = [m.group(11) for m in log_lines(logfile)]
    assert "Ready to accept connections unix" in texts and "Ready to accept connections tcp" not in texts
    assert "Removing the unix socket file." in texts


def test_unixsocket_that_cannot_be_created(tmp_path):
    done = run_cmd(base_cmd(0, tmp_path, "--unixsocket", str(tmp_path / "no" / "such" / "dir.sock")), tmp_path)
    assert done.returncode == 1
    assert "Failed opening Unix socket: bind: No such file or directory" in done.stdout


def test_tcp_backlog_above_somaxconn_is_warned_about(tmp_path):
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text().split()[0])
    except (OSError, ValueError):
        pytest.skip("no /proc/sys/net/core/somaxconn")
    srv = Server("--tcp-backlog", str(somaxconn + 1), dir=str(tmp_path))
    try:
        assert srv.client().ping()
    finally:
        srv.stop()
    assert (f"WARNING: The TCP backlog setting of {somaxconn + 1} cannot be enforced because "
            f"/proc/sys/net/core/somaxconn is set to the lower value of {somaxconn}.") in server_output(srv)


def test_nowhere_to_listen(tmp_path):
    done = run_cmd(base_cmd(0, tmp_path), tmp_path)
    assert done.returncode == 1
    assert "Configured to not listen anywhere, exiting." in done.stdout


# --- the systemd units ------------------------------------------------------------------------------

def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(ROOT / "systemd" / name)
    return parser


@pytest.mark.parametrize("name,conf", [("shardd.service", "/etc/shardd/valkey.conf"),
                                       ("shardd@.service", "/etc/shardd/%i.conf")])
def test_systemd_units(tmp_path, name, conf):
    unit = _unit(name)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"] == f"/usr/local/bin/shardd-server {conf} --supervised systemd --daemonize no"
    for key, value in [("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("UMask", "0077"), ("LimitNOFILE", "10032"),
                       ("KillMode", "mixed")]:
        assert service[key] == value, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    analyze, script = shutil.which("systemd-analyze"), shutil.which("shardd-server")
    if analyze is None or script is None:
        return
    # systemd's own check, with ExecStart pointing at an installed shardd-server.
    text = (ROOT / "systemd" / name).read_text().replace("/usr/local/bin/shardd-server", script)
    copy = tmp_path / (name.replace("@", "@6380") if "@" in name else name)
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "AssertPathExists" not in line]
    assert not problems, problems


def test_timeout_closes_idle_clients_only():
    """`timeout 1`: an idle client is closed within a few seconds; a busy one stays."""
    srv = Server("--timeout", "1")
    try:
        start = time.monotonic()
        idle = srv.connect()
        busy = srv.client()
        closed = None
        idle.settimeout(0.2)
        while time.monotonic() - start < 6:
            assert busy.ping()
            try:
                if idle.recv(16) == b"":
                    closed = time.monotonic() - start
                    break
            except socket.timeout:
                pass
        assert closed is not None and 1.0 <= closed < 5.0, closed
        assert busy.ping()
        idle.close()
        busy.close()
    finally:
        srv.stop()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read socket timers")
def test_tcp_keepalive_is_set_on_client_sockets():
    """`tcp-keepalive 60`: the server's end of a client connection runs a keepalive timer."""
    srv = Server("--tcp-keepalive", "60")
    try:
        c = srv.client()
        assert c.ping()
        def timers() -> str:
            return subprocess.run(["ss", "-tno", "state", "established", f"( sport = :{srv.port} )"],
                                  capture_output=True, text=True, timeout=10).stdout
        def keepalive_timer() -> str:
            out = timers()
            return out if "keepalive" in out else ""
        # Once the reply is acknowledged, the idle connection's timer is the keepalive one.
        out = wait_until(keepalive_timer, 5) or timers()
        assert "keepalive" in out, out
        c.close()
    finally:
        srv.stop()


# --- the example production config --------------------------------------------------------------

PRODUCTION_CONF = ROOT.parent / "shared" / "examples" / "production-valkey.conf"


def _directives(text: str) -> list[tuple[str, list[str]]]:
    from shardd.config import split_args
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            argv = split_args(line)
            out.append((argv[0].lower(), argv[1:]))
    return out


@pytest.mark.skipif(not PRODUCTION_CONF.exists(), reason="no ../shared/examples/production-valkey.conf")
def test_production_valkey_conf(tmp_path):
    """A real user's valkey.conf, its paths and port swapped for temporary ones, starts shardd
    unchanged, and every directive in it is in force or named in the log as not acted on yet."""
    port = free_port()
    for sub in ("data", "log", "run"):
        (tmp_path / sub).mkdir()
    text = PRODUCTION_CONF.read_text()
    text = re.sub(r"^port 6379$", f"port {port}", text, flags=re.M)
    text = (text.replace("/var/lib/valkey", str(tmp_path / "data"))
                .replace("/var/log/valkey", str(tmp_path / "log"))
                .replace("/var/run/valkey", str(tmp_path / "run")))
    if not _bindable("::1"):
        text = re.sub(r"^bind 127.0.0.1 ::1$", "bind 127.0.0.1 -::1", text, flags=re.M)
    conf = tmp_path / "valkey.conf"
    conf.write_text(text)
    directives = _directives(text)
    notify = NotifySocket(tmp_path)
    env = dict(server_env(), NOTIFY_SOCKET=notify.env)
    env.pop("WATCHDOG_USEC", None)
    out = open(tmp_path / "out.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "shardd", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=str(tmp_path))
    kids: list[psutil.Process] = []
    password = dict(directives)["requirepass"][0]
    try:
        while notify.recv(30)[1] != "READY=1\n":          # supervised systemd
            pass
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert answers_ping(tcp(port), (b"-NOAUTH",))       # requirepass
        c = redis.Redis(port=port, password=password, socket_timeout=10)

        def config(name: str) -> str:
            return c.config_get(name)[name]

        # Every directive reads back as the file set it.
        for name, args in directives:
            if name == "rename-command":
                continue
            value = config(name)
            if name == "save":              # several lines add up
                assert value == " ".join(" ".join(a) for n, a in directives if n == "save")
            elif name in ("maxmemory", "auto-aof-rewrite-min-size"):
                from shardd.config import parse_memory
                assert int(value) == parse_memory(args[0])
            elif name == "bind":
                assert value == " ".join(args)
            else:
                assert value == " ".join(args), (name, value, args)
        # ... and is in force.
        assert proc.poll() is None                                                   # daemonize no
        info = c.info("server")
        assert info["process_supervised"] == "systemd" and info["tcp_port"] == port   # supervised, port
        assert (tmp_path / "run" / "valkey-server.pid").read_text().strip() == str(proc.pid)   # pidfile
        log = (tmp_path / "log" / "valkey-server.log")
        lines = log_lines(log)                                                         # logfile, format
        assert {m.group(10) for m in lines} <= {"*", "#"}                              # loglevel notice
        assert config("dir") == str(tmp_path / "data")                                 # dir
        assert c.execute_command("SELECT", 15) is True                                 # databases 16
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            c.execute_command("SELECT", 16)
        c.execute_command("SELECT", 0)
        for command in ("FLUSHALL", "FLUSHDB"):                                        # rename-command
            with pytest.raises(redis.ResponseError, match=f"unknown command '{command}'"):
                c.execute_command(command)
        assert c.info("shards")["proxies"] == 4 and len(kids) == 4 + c.info("shards")["shards"]  # io-threads 4
        if _bindable("::1"):                                                           # bind 127.0.0.1 ::1
            assert answers_ping(lambda: socket.create_connection(("::1", port), timeout=2), (b"-NOAUTH",))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:          # tcp-keepalive 300
            s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
            assert s.recv(16) == b"+OK\r\n"
        text_log = log.read_text()
        # Accepted, not acted on yet (eviction), said once in the log.
        from shardd.config import NOT_ACTED_ON
        inert = re.search(r"Accepted but not acted on yet: (.*)$", text_log, re.M)
        not_yet = set(re.findall(r"([a-z-]+) \(", inert.group(1))) if inert else set()
        assert not_yet == {name for name, _ in directives if name in NOT_ACTED_ON}, text_log[-2000:]
        in_force = {"port", "bind", "protected-mode", "tcp-backlog", "timeout", "tcp-keepalive", "daemonize",
                    "supervised", "pidfile", "loglevel", "logfile", "databases", "dir", "requirepass",
                    "rename-command", "io-threads", "io-threads-do-reads", "maxmemory", "maxmemory-policy",
                    # persistence (RDB and AOF), the persistence work's own tests check them
                    "save", "stop-writes-on-bgsave-error", "rdbcompression", "rdbchecksum", "appendonly",
                    "appendfilename", "appendfsync", "no-appendfsync-on-rewrite", "auto-aof-rewrite-percentage",
                    "auto-aof-rewrite-min-size"}
        for name, _ in directives:
            assert name in in_force or name in NOT_ACTED_ON, f"{name}: neither honoured nor declared inert"
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not (tmp_path / "run" / "valkey-server.pid").exists()
    finally:
        stop_tree(proc, kids)
        out.close()
        notify.close()
