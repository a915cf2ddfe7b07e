"""The supervisor: the process started as shardd-server.

It reads the config (the CLI did), binds every listening socket once, maps the shared
memory for the rings, forks the shard workers and the proxies, restarts a worker or proxy
that dies, and shuts everything down on SIGTERM/SIGINT or a client's SHUTDOWN.
"""
from __future__ import annotations

import errno
import gc
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid

from . import REDIS_VERSION, __version__, log, resp
from .ring import FrameReader, FrameWriter, Ring, SharedRegion, Waker, ring_size
from .persist import LOAD_FAILED_EXIT
from .process import die_with_parent
from .slots import slot_map, slot_ranges

# A loop turn's frame is tens of KB even with 50 clients pipelining 16 commands, and frames
# larger than a ring cross it in pieces; every page a ring has used stays resident (shared
# memory), so rings cost their full size per proxy × worker pair once traffic went round them.
REQUEST_RING = 1 << 20
REPLY_RING = 1 << 20
CONTROL_RING = 256 << 10
SAVE_GRACE = 120.0          # seconds a stopping worker may take to save its snapshot


class BindError(Exception):
    """The server cannot listen where it was told to; `lines` are every warning that led here."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = lines or [message]


def parse_cpulist(text: str) -> set[int]:
    """Valkey's cpulist syntax: '0-3,8,10-15:2'."""
    cpus: set[int] = set()
    for part in filter(None, text.replace(" ", "").split(",")):
        step = 1
        if ":" in part:
            part, s = part.split(":")
            step = int(s)
        if "-" in part:
            lo, hi = part.split("-")
            cpus.update(range(int(lo), int(hi) + 1, step))
        else:
            cpus.add(int(part))
    return cpus


# Errors for which Valkey's listenToPort skips an address even when it is not optional:
# the protocol or address family is not there (an IPv6 address on a host without IPv6).
_UNSUPPORTED = {errno.ENOPROTOOPT, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPFNOSUPPORT,
                errno.EAFNOSUPPORT}


class _NetError(OSError):
    """anet's error text (`bind: Address already in use`) with the errno that caused it."""


def _tcp_listener(host: str, port: int, backlog: int) -> socket.socket:
    """anetTcpServer / anetTcp6Server: the first address `host` resolves to, bound and listening."""
    six = ":" in host
    family = socket.AF_INET6 if six else socket.AF_INET
    name = None if host == "*" or (six and host == "::*") else host
    try:
        infos = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise _NetError(None, exc.strerror) from None
    last = 0
    for fam, kind, proto, _, addr in infos:
        try:
            s = socket.socket(fam, kind, proto)
        except OSError as exc:
            last = exc.errno or 0
            continue
        step = "setsockopt"
        try:
            if fam == socket.AF_INET6:
                step = "setsockopt IPV6_V6ONLY"
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            step = "setsockopt SO_REUSEADDR"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            step = "bind"
            s.bind(addr)
            step = "listen"
            s.listen(backlog)
        except OSError as exc:
            s.close()
            raise _NetError(exc.errno, f"{step}: {exc.strerror}") from None
        s.setblocking(False)
        return s
    raise _NetError(last, f"unable to bind socket, errno: {last}")


def _unix_listener(path: str, perm: int, group: str, backlog: int) -> socket.socket:
    """anetUnixServer: bind, chmod to `unixsocketperm`, chown to `unixsocketgroup`, listen."""
    try:
        os.unlink(path)                 # don't care if this fails
    except OSError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            s.bind(path)
        except OSError as exc:
            raise _NetError(exc.errno, f"bind: {exc.strerror or exc}") from None
        if perm:
            os.chmod(path, perm)
        if group:
            import grp
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise _NetError(errno.ENOENT, f"getgrnam error for group '{group}': "
                                              f"{os.strerror(errno.ENOENT)}") from None
            try:
                os.chown(path, -1, gid)
            except OSError as exc:
                raise _NetError(exc.errno, f"chown error for unix socket: {exc.strerror}") from None
        try:
            s.listen(backlog)
        except OSError as exc:
            raise _NetError(exc.errno, f"listen: {exc.strerror}") from None
    except BaseException:
        s.close()
        raise
    s.setblocking(False)
    return s


def bind_listeners(cfg) -> list[socket.socket]:
    """Valkey's listenToPort + the unix socket listener.

    Every `bind` address gets its own socket (`*` = 0.0.0.0, `::*` = ::). An address that
    cannot be bound is logged; it is skipped when it is optional (`-` prefix) and not
    available on this host (EADDRNOTAVAIL), or when its protocol/family is unsupported;
    any other failure aborts the start (BindError). `port 0` listens on no TCP port.
    """
    values = cfg.values
    port = values["port"]
    backlog = values.get("tcp-backlog", 511)
    socks: list[socket.socket] = []
    lines: list[str] = []

    def fail(message: str) -> BindError:
        for s in socks:
            s.close()
        lines.append(message)
        return BindError(message, lines)

    # TCP on `port`, then TLS on `tls-port` (the proxies serve those with their SSL context).
    for port, kind in ((port, "tcp"), (values.get("tls-port") or 0, "tls")):
        if not port:
            continue
        for addr in values["bind"]:
            optional = addr.startswith("-")
            host = addr[1:] if optional else addr
            try:
                socks.append(_tcp_listener(host, port, backlog))
            except _NetError as exc:
                line = f"Warning: Could not create server TCP listening socket {host}:{port}: {exc.strerror}"
                log.log("warning", line)
                lines.append(line)
                if optional and exc.errno in (errno.EADDRNOTAVAIL, None):
                    continue
                if exc.errno in _UNSUPPORTED:
                    continue
                raise fail(f"Failed listening on port {port} ({kind}), aborting.")
    path = values.get("unixsocket")
    if path:
        try:
            socks.append(_unix_listener(path, values.get("unixsocketperm", 0) or 0,
                                        values.get("unixsocketgroup", "") or "", backlog))
        except OSError as exc:
            raise fail(f"Failed opening Unix socket: {exc.strerror or exc}")
    if not socks:
        raise fail("Configured to not listen anywhere, exiting.")
    return socks


class Plumbing:
    """The shared memory, rings and wakers of every proxy × worker pair."""

    def __init__(self, n_proxies: int, n_workers: int) -> None:
        per_pair = ring_size(REQUEST_RING) + ring_size(REPLY_RING) + ring_size(CONTROL_RING) + 5 * 64
        self.region = SharedRegion(n_proxies * n_workers * per_pair + (3 * n_proxies + n_workers + 4) * 64)
        self.worker_wakers = [Waker(self.region.take(64)) for _ in range(n_workers)]
        self.proxy_wakers = [Waker(self.region.take(64)) for _ in range(n_proxies)]
        self.proxy_stats = [self.region.take(128).cast("Q") for _ in range(n_proxies)]
        self.pairs = [[(Ring(self.region.take(ring_size(REQUEST_RING)), REQUEST_RING),
                        Ring(self.region.take(ring_size(CONTROL_RING)), CONTROL_RING),
                        Ring(self.region.take(ring_size(REPLY_RING)), REPLY_RING))
                       for _ in range(n_workers)] for _ in range(n_proxies)]
        # Per pair: [0] the worker's restart generation, [1] the last one the proxy resynced to.
        self.epochs = [[self.region.take(64).cast("Q") for _ in range(n_workers)] for _ in range(n_proxies)]

    def worker_links(self, w: int):
        from .worker.main import ProxyLink
        return [ProxyLink(FrameReader(row[w][0]), FrameReader(row[w][1]), FrameWriter(row[w][2]),
                          self.proxy_wakers[p], self.epochs[p][w]) for p, row in enumerate(self.pairs)]

    def proxy_links(self, p: int):
        from .proxy.server import WorkerLink
        return [WorkerLink(FrameWriter(req), FrameWriter(ctl), FrameReader(rep), self.worker_wakers[w],
                           self.epochs[p][w]) for w, (req, ctl, rep) in enumerate(self.pairs[p])]


class Supervisor:
    def __init__(self, cfg, supervised: str = "no", ready_fd: int | None = None, pidfile: str = "",
                 daemonized: bool = False) -> None:
        self.cfg = cfg
        self.supervised = supervised          # resolved: "systemd", "upstart" or "no"
        self.ready_fd = ready_fd              # daemonized: the pipe to the waiting parent, until ready
        self.daemonized = daemonized
        self.pidfile = pidfile                # written at start, removed at exit ("" = none)
        self.probe: ReadyProbe | None = None
        self.ready = False
        self.watchdog = watchdog_interval() if supervised == "systemd" else None
        self.next_watchdog = 0.0
        self.n_workers = cfg.values["worker-processes"]
        self.n_proxies = max(1, cfg.values.get("io-threads", 1))
        self.slotmap = slot_map(self.n_workers)
        self.ranges = slot_ranges(self.n_workers)
        self.cfg.values["__shards__"] = self.n_workers
        self.workers: dict[int, int] = {}   # pid → shard
        self.proxies: dict[int, int] = {}   # pid → index
        self.control: list[socket.socket] = []
        self.stopping = False
        self.save_on_exit: bool | None = None    # SHUTDOWN SAVE (True) / NOSAVE (False)
        self.exit_code = 0
        self.exit_statuses: dict[int, int] = {}
        self.info = {
            "run_id": uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "process_id": os.getpid(),
            "start_time": time.time(),
            "config_file": getattr(cfg, "config_file", None) or "",
            "executable": os.path.abspath(sys.argv[0]),
            "tcp_port": cfg.values["port"],
            "workers": self.n_workers,
            "proxies": self.n_proxies,
            "supervised": supervised,
        }

    def start(self) -> None:
        self.listeners = bind_listeners(self.cfg)
        # The coordinator's lock: each proxy opens it itself (flock is per open file).
        fd, self.lock_path = tempfile.mkstemp(prefix="shardd-coordinator-", suffix=".lock")
        os.close(fd)
        self.plumbing = Plumbing(self.n_proxies, self.n_workers)
        try:
            # An AOF written by another worker count is moved aside for the workers to
            # re-partition (before any of them looks at it).
            from .persist.aof import prepare_layout
            prepare_layout(self.cfg.values, self.n_workers)
        except Exception as exc:     # OSError, a bad manifest: the workers' load reports it
            log.log("warning", f"Could not prepare the AOF for {self.n_workers} workers: {exc}")
        for w in range(self.n_workers):
            self.spawn_worker(w)
        self.control = [None] * self.n_proxies
        for p in range(self.n_proxies):
            self.spawn_proxy(p)

    def spawn_worker(self, w: int, restarted: bool = False) -> None:
        def body() -> None:
            from .worker import main as worker_main
            worker_main.run(w, self.plumbing.worker_links(w), self.plumbing.worker_wakers[w],
                            self.cfg, self.ranges[w], restarted)
        self.workers[self._fork("W", "worker-cpulist", w, body)] = w

    def spawn_proxy(self, p: int, restarted: bool = False) -> None:
        parent_end, child_end = socket.socketpair()

        def body() -> None:
            parent_end.close()
            from .proxy import server as proxy_server
            info = dict(self.info, control=child_end, proxy_index=p, lock_path=self.lock_path, restarted=restarted,
                        proxy_stats=self.plumbing.proxy_stats, slot_ranges=self.ranges)
            proxy_server.run(p, self.n_proxies, self.plumbing.proxy_links(p),
                             self.plumbing.proxy_wakers[p], self.cfg, self.slotmap,
                             self.listeners, info)
        pid = self._fork("P", "proxy-cpulist", p, body)
        child_end.close()
        old = self.control[p]
        if old is not None:
            self.sel.unregister(old)
            old.close()
        self.control[p] = parent_end
        parent_end.setblocking(False)
        self.sel.register(parent_end, selectors.EVENT_READ, ("control", p))
        self.proxies[pid] = p

    def _fork(self, role: str, cpulist: str, index: int, body) -> int:
        """Fork a child that runs body() (pinned per `cpulist` when set) and never returns."""
        # What the supervisor holds now leaves the collector's generations: the children's
        # collections would otherwise write to every inherited object and copy its page
        # (about 10 MB per child).
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid:
            return pid
        self._child(role)
        name = "Worker" if role == "W" else "Proxy"
        code = 0
        try:
            cpus = self.cfg.values.get(cpulist)
            if cpus:
                all_cpus = sorted(parse_cpulist(cpus))
                os.sched_setaffinity(0, {all_cpus[index % len(all_cpus)]})
            if role == "W":
                lo, hi = self.ranges[index]
                log.log("notice", f"Worker {index} started, hash slots {lo}-{hi}")
            else:
                log.log("notice", f"Proxy {index} started")
            body()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException as exc:
            import traceback
            log.log("warning", f"{name} {index} failed: {exc!r}")
            for line in traceback.format_exc().rstrip().splitlines():
                log.log("warning", line)
            code = 1
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)

    def _child(self, role: str) -> None:
        die_with_parent()
        # The supervisor's handlers only wake its loop: a SIGTERM arriving before this child
        # installs its own must stop it, not be swallowed.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        # Only the supervisor talks to systemd and to a daemonizing parent.
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None
        if self.probe is not None and self.probe.sock is not None:
            self.probe.sock.close()
        for name in _CHILD_ENV:
            os.environ.pop(name, None)
        log.configure(role, values=self.cfg.values)
        if self.daemonized or self.cfg.values.get("logfile"):
            sys.stderr = log.LogStream()

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        self.sel = selectors.DefaultSelector()
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        self.sel.register(rfd, selectors.EVENT_READ, ("signal", None))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.notify(f"STATUS=Starting {self.n_workers} workers and {self.n_proxies} proxies\n")
        try:
            self.start()
        except BindError as exc:
            log.log("warning", str(exc))
            self.report_failure(exc.lines)
            self.remove_pidfile()
            return 1
        log.log("notice", "Server initialized")
        log.log("notice", f"shardd {__version__} (Redis {REDIS_VERSION} compatible) started, "
                          f"{self.n_workers} workers, {self.n_proxies} proxies, port {self.cfg.values['port']}")
        from .proxy.tls import is_tls_listener
        plain = [s for s in self.listeners if not is_tls_listener(s, self.cfg.values)]
        if plain and (self.ready_fd is not None or self.supervised != "no"):
            # Someone waits for "ready": confirm it the way a client would see it.
            self.probe = ReadyProbe(self.sel, plain, self.cfg.values.get("requirepass") or "")
            self.notify(f"STATUS=Waiting for the workers and proxies to answer on {self.probe.describe()}\n")
        else:
            self.on_ready()
        while not self.stopping:
            now = time.monotonic()
            timeout = 1.0
            if self.probe is not None:
                timeout = min(timeout, self.probe.wait_time(now))
            if self.watchdog is not None:
                timeout = min(timeout, max(0.0, self.next_watchdog - now))
            for key, _ in self.sel.select(timeout=timeout):
                kind, arg = key.data
                if kind == "signal":
                    self.on_signals(rfd)
                elif kind == "control":
                    self.on_control(arg)
                elif kind == "probe" and self.probe is not None:
                    self.probe.on_event()
            now = time.monotonic()
            if self.probe is not None and not self.stopping:
                self.probe.tick(now)
                if self.probe.done:
                    self.on_ready()
            if self.watchdog is not None and now >= self.next_watchdog:
                sd_notify("WATCHDOG=1\n")
                self.next_watchdog = now + self.watchdog
        return self.shutdown()

    # -- readiness, supervision ------------------------------------------------------------
    def notify(self, state: str) -> None:
        """Tell systemd, when it supervises us."""
        if self.supervised == "systemd":
            communicate_systemd(state)

    def on_ready(self) -> None:
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.close()
            if not isinstance(probe.answer, int):
                log.log("verbose", f"Readiness check: DBSIZE on {probe.describe()} answered "
                                   f"{probe.answer!r}; the workers were not confirmed")
        self.ready = True
        from .proxy.tls import is_tls_listener
        kinds = {"unix" if s.family == socket.AF_UNIX else "tls" if is_tls_listener(s, self.cfg.values) else "tcp"
                 for s in self.listeners}
        for kind in ("tcp", "tls", "unix"):
            if kind in kinds:
                log.log("notice", f"Ready to accept connections {kind}")
        if self.supervised == "systemd":
            self.notify("STATUS=Ready to accept connections\n")
            self.notify("READY=1\n")
        elif self.supervised == "upstart":
            os.environ.pop("UPSTART_JOB", None)
            os.kill(os.getpid(), signal.SIGSTOP)
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, b"R")
            except OSError:
                pass
            os.close(self.ready_fd)
            self.ready_fd = None

    def report_failure(self, lines: list[str]) -> None:
        """A daemonizing parent prints why the server did not start."""
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, b"E" + "\n".join(lines).encode())
            except OSError:
                pass
            os.close(self.ready_fd)
            self.ready_fd = None

    def remove_pidfile(self) -> None:
        if self.pidfile:
            log.log("notice", "Removing the pid file.")
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass

    def on_signals(self, rfd: int) -> None:
        try:
            data = os.read(rfd, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.log("warning", f"Received {signal.Signals(signum).name} scheduling shutdown...")
                self.stopping = True
            elif signum == signal.SIGCHLD:
                self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.stopping:
                self.workers.pop(pid, None)
                self.proxies.pop(pid, None)
                continue
            if pid in self.workers and os.WIFEXITED(status) and os.WEXITSTATUS(status) == LOAD_FAILED_EXIT:
                w = self.workers.pop(pid)
                log.log("warning", f"Worker {w} could not load its data (see above): stopping the server")
                self.report_failure([f"worker {w} could not load its data; see the log"])
                self.stopping = True
                self.exit_code = 1
                self.save_on_exit = False    # the others must not overwrite files not yet read
            elif pid in self.workers:
                w = self.workers.pop(pid)
                log.log("warning", f"Worker {w} (pid {pid}) exited with status {status}; restarting it")
                self.spawn_worker(w, restarted=True)
            elif pid in self.proxies:
                p = self.proxies.pop(pid)
                log.log("warning", f"Proxy {p} (pid {pid}) exited with status {status}; restarting it")
                self.spawn_proxy(p, restarted=True)

    # -- messages from proxies -------------------------------------------------------------
    def on_control(self, p: int) -> None:
        sock = self.control[p]
        try:
            msgs = recv_messages(sock)
        except (ConnectionError, OSError):
            msgs = []
        for msg in msgs:
            op = msg.get("op")
            if op == "shutdown":
                self.stopping = True
                self.exit_code = 0
                self.save_on_exit = msg.get("save")
            elif op == "broadcast":
                self.broadcast(msg["msg"], exclude=p)
            elif op == "query":
                if msg.get("what") == "config_set":
                    self.apply_config(msg.get("args") or [])
                self.broadcast(msg, exclude=p)
            elif op == "config_set":
                # A proxy applied CONFIG SET (loglevel …): the supervisor's own copy follows.
                self.apply_config(msg.get("pairs") or [])
            elif op == "acl_state":
                # The ACL after a change (ACL LIST lines): a restarted proxy starts from it.
                self.cfg.acl_state = msg["lines"]
            elif op == "answer":
                self.broadcast(msg, exclude=None, only=msg["to"])

    def apply_config(self, pairs: list[tuple[str, str]]) -> None:
        try:
            self.cfg.config_set(pairs)
        except Exception:   # the proxy that was asked already answered the client
            pass

    def broadcast(self, msg: dict, exclude: int | None = None, only: int | None = None) -> None:
        for i, sock in enumerate(self.control):
            if i != exclude and sock is not None and (only is None or i == only):
                try:
                    send_message(sock, msg)
                except OSError:
                    pass

    def wait_children(self, alive: set[int], timeout: float) -> set[int]:
        """Reap children until none of `alive` is left or the time is up; those left."""
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return set()
            if pid == 0:
                time.sleep(0.01)
            else:
                alive.discard(pid)
                self.exit_statuses[pid] = status
        return alive

    def worker_grace(self) -> float:
        """How long stopping workers may take: long enough to save when they save."""
        saving = self.save_on_exit if self.save_on_exit is not None else bool(self.cfg.values.get("save"))
        return SAVE_GRACE if saving else 3.0

    def record_snapshot_layout(self, workers: list[int]) -> None:
        """Every worker saved on its way out: the files are this layout's."""
        saving = self.save_on_exit if self.save_on_exit is not None else bool(self.cfg.values.get("save"))
        if not saving or any(self.exit_statuses.get(pid) != 0 for pid in workers):
            return
        from .persist import files
        values = self.cfg.values
        try:
            files.write_map(values["dir"], values["dbfilename"], self.ranges)
            files.remove_stale_shard_files(values["dir"], values["dbfilename"], self.n_workers)
        except OSError as exc:
            log.log("warning", f"Could not write the shard map: {exc}")

    def shutdown(self) -> int:
        log.log("warning", "User requested shutdown...")
        self.notify("STOPPING=1\n")
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        # Proxies first, so no command reaches a worker that is saving on its way out; the
        # workers then save (SIGTERM: if save points are set; SHUTDOWN SAVE/NOSAVE decided).
        worker_signal = {None: signal.SIGTERM, True: signal.SIGUSR1, False: signal.SIGUSR2}[self.save_on_exit]
        alive: set[int] = set()
        for pids, sig, grace in ((list(self.proxies), signal.SIGTERM, 3.0),
                                 (list(self.workers), worker_signal, self.worker_grace())):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            alive |= self.wait_children(set(pids), grace)
        self.record_snapshot_layout(list(self.workers))
        if alive:
            # Children hold no state that a clean exit would save yet (persistence comes
            # later): one that did not stop within the grace is killed.
            log.log("warning", f"Killing children that did not stop: {sorted(alive)}")
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.wait_children(alive, 2.0)
        self.remove_pidfile()
        for s in getattr(self, "listeners", ()):
            s.close()
        if self.cfg.values.get("unixsocket"):
            log.log("notice", "Removing the unix socket file.")
        for path in (self.cfg.values.get("unixsocket"), getattr(self, "lock_path", None)):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        log.log("warning", "shardd is now ready to exit, bye bye...")
        if self.ready_fd is not None:      # stopped before it was ready
            self.report_failure(["the server was shut down before it was ready to accept connections"])
        return self.exit_code


def send_message(sock: socket.socket, msg: dict) -> None:
    data = pickle.dumps(msg)
    sock.sendall(struct.pack("<I", len(data)) + data)


def recv_messages(sock: socket.socket) -> list[dict]:
    """Read what is there (messages are small and written whole)."""
    buf = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except BlockingIOError:
        pass
    out = []
    while len(buf) >= 4:
        n = struct.unpack_from("<I", buf)[0]
        if len(buf) < 4 + n:
            break
        out.append(pickle.loads(buf[4:4 + n]))
        buf = buf[4 + n:]
    return out


# -- running in production: supervision, daemonizing, the pid file -----------------------------

DEFAULT_PIDFILE = "/var/run/valkey.pid"   # Valkey's CONFIG_DEFAULT_PID_FILE
_CHILD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "UPSTART_JOB")


def sd_notify(state: str) -> int:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or an abstract
    socket when it starts with '@'). 1 when sent, 0 when there is no socket, -errno on error."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where:
        return 0
    if where[0] == "@":
        addr = b"\0" + os.fsencode(where[1:])
    elif where[0] == "/":
        addr = os.fsencode(where)
    else:
        return -errno.EAFNOSUPPORT
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    return 1


def communicate_systemd(state: str) -> int:
    """serverCommunicateSystemd: sd_notify, logging what went wrong."""
    ret = sd_notify(state)
    if ret == 0:
        log.log("warning", "systemd supervision error: NOTIFY_SOCKET not found!")
    elif ret < 0:
        log.log("warning", f"systemd supervision error: sd_notify: {ret}")
    return ret


def detect_supervision(mode: str) -> str:
    """serverIsSupervised: resolve `supervised` (auto = upstart when UPSTART_JOB is set,
    systemd when NOTIFY_SOCKET is) to "upstart", "systemd" or "no"."""
    if mode == "auto":
        if os.environ.get("UPSTART_JOB"):
            log.log("verbose", "Upstart supervision detected.")
            mode = "upstart"
        elif os.environ.get("NOTIFY_SOCKET"):
            log.log("verbose", "Systemd supervision detected.")
            mode = "systemd"
    if mode == "upstart":
        if not os.environ.get("UPSTART_JOB"):
            log.log("warning", "upstart supervision requested, but UPSTART_JOB not found!")
            return "no"
        log.log("notice", "supervised by upstart, will stop to signal readiness.")
        return "upstart"
    if mode == "systemd":
        if communicate_systemd("STATUS=shardd is loading...\n") <= 0:
            return "no"
        log.log("notice", "Supervised by systemd. Please make sure you set appropriate values for "
                          "TimeoutStartSec and TimeoutStopSec in your service unit.")
        return "systemd"
    return "no"


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when the service has no
    watchdog or it is meant for another process (WATCHDOG_PID)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        pid = int(os.environ.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2 / 1e6


def daemonize() -> tuple[bool, int]:
    """Double fork into a new session with stdio on /dev/null.

    In the daemon returns (True, fd): the write end of a pipe on which the daemon reports "R"
    once it answers, or "E<why>" when it could not start. In the calling process returns
    (False, exit code) once the daemon reported, or exited without reporting: 0 only when the
    server is up and listening."""
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    first = os.fork()
    if first:
        os.close(wfd)
        return False, _await_daemon(rfd, first)
    os.close(rfd)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return True, wfd


def _await_daemon(rfd: int, first: int) -> int:
    os.waitpid(first, 0)
    data = b""
    while True:
        try:
            chunk = os.read(rfd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    os.close(rfd)
    if data.startswith(b"R"):
        return 0
    why = data[1:].decode(errors="replace").strip() if data.startswith(b"E") else \
        "the server exited before it was ready to accept connections"
    sys.stderr.write(f"{why}\n")
    sys.stderr.flush()
    return 1


def write_pidfile(path: str) -> bool:
    """createPidFile: best effort, the pid and a newline."""
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        log.log("warning", f"Failed to write PID file: {exc.strerror}")
        return False
    return True


def check_tcp_backlog(backlog: int) -> None:
    """checkTcpBacklogSettings."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if 0 < somaxconn < backlog:
        log.log("warning", f"WARNING: The TCP backlog setting of {backlog} cannot be enforced because "
                           f"/proc/sys/net/core/somaxconn is set to the lower value of {somaxconn}.")


class ReadyProbe:
    """Readiness confirmed from the outside, as a client sees it: connect to our own listening
    socket and ask DBSIZE (after AUTH when requirepass is set). Every worker has to answer a
    DBSIZE, so an integer reply means the proxy accepted the connection and all workers run.
    Any other reply (a renamed DBSIZE, an ACL refusal) still shows the port answers. Retries
    until it gets its replies; runs inside the supervisor's selector, never blocking it."""

    ATTEMPT = 5.0     # seconds one connection may take to answer
    RETRY = 0.05

    def __init__(self, sel: selectors.BaseSelector, listeners: list[socket.socket], password: str) -> None:
        self.sel = sel
        self.target = self._target(listeners)
        cmds = ([resp.command([b"AUTH", password.encode()])] if password else []) + [resp.command([b"DBSIZE"])]
        self.payload = b"".join(cmds)
        self.expect = len(cmds)
        self.sock: socket.socket | None = None
        self.out = b""
        self.replies: list = []
        self.reader = None
        self.next_try = 0.0
        self.deadline = 0.0
        self.done = False
        self.answer = None
        self.attempts = 0

    @staticmethod
    def _target(listeners: list[socket.socket]):
        for s in listeners:
            if s.family in (socket.AF_INET, socket.AF_INET6):
                host, port = s.getsockname()[:2]
                host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
                return s.family, (host, port)
        s = listeners[0]
        return s.family, s.getsockname()

    def describe(self) -> str:
        family, addr = self.target
        return addr if family == socket.AF_UNIX else f"{addr[0]}:{addr[1]}"

    def wait_time(self, now: float) -> float:
        return max(0.0, (self.next_try if self.sock is None else self.deadline) - now)

    def tick(self, now: float) -> None:
        if self.done:
            return
        if self.sock is None:
            if now >= self.next_try:
                self._connect(now)
        elif now >= self.deadline:
            self._retry(now)

    def _connect(self, now: float) -> None:
        import hiredis
        self.attempts += 1
        family, addr = self.target
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.next_try = now + self.RETRY
            return
        self.sock, self.out, self.replies = s, self.payload, []
        self.reader = hiredis.Reader()
        self.deadline = now + self.ATTEMPT
        self.sel.register(s, selectors.EVENT_WRITE, ("probe", None))

    def on_event(self) -> None:
        s = self.sock
        if s is None:
            return
        now = time.monotonic()
        try:
            if self.out:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                self.out = self.out[s.send(self.out):]
                if not self.out:
                    self.sel.modify(s, selectors.EVENT_READ, ("probe", None))
                return
            data = s.recv(4096)
            if not data:
                raise ConnectionResetError
            self.reader.feed(data)
            reply = self.reader.gets()
            while reply is not False:
                self.replies.append(reply)
                reply = self.reader.gets()
        except BlockingIOError:
            return
        except Exception:  # refused, reset, a protocol error: try again
            self._retry(now)
            return
        if len(self.replies) >= self.expect:
            self.answer = self.replies[-1]
            self.done = True
            self.close()

    def _retry(self, now: float) -> None:
        self.close()
        self.next_try = now + self.RETRY

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None


def run(cfg) -> int:
    """valkey-server's main() from the config on: chdir, supervision, daemonize, pid file,
    banner, then the supervisor's loop. Returns the exit code."""
    values = cfg.values
    log.configure("M", values=values)
    try:
        os.chdir(values["dir"])
    except OSError as exc:
        log.log("warning", f"Can't chdir to '{values['dir']}': {exc.strerror}")
        return 1
    supervised = detect_supervision(values.get("supervised", "no"))
    background = bool(values.get("daemonize")) and supervised == "no"
    ready_fd = None
    if background:
        in_daemon, n = daemonize()
        if not in_daemon:
            return n
        ready_fd = n
    if background or values.get("logfile"):
        sys.stderr = log.LogStream()     # tracebacks and warnings go to the log too
    log.log("notice", "oO0OoO0OoO0Oo shardd is starting oO0OoO0OoO0Oo")
    log.log("notice", f"shardd version={__version__}, bits={64 if sys.maxsize > 2**32 else 32}, "
                      f"commit=00000000, modified=0, pid={os.getpid()}, just started")
    if len(sys.argv) <= 1:
        log.log("warning", "Warning: no config file specified, using the default config. In order to "
                           f"specify a config file use {sys.argv[0]} /path/to/valkey.conf")
    else:
        log.log("notice", "Configuration loaded")
    from .proxy.acl import StartupError, load_users_at_startup
    try:
        cfg.acl_state = load_users_at_startup(cfg)     # every proxy starts from these users
    except StartupError as exc:
        for line in exc.args:
            log.log("warning", line)
        return 1
    from .proxy import tls
    if tls.wanted(values):
        try:
            tls.build_context(values)           # each proxy builds its own; a bad setup stops here
        except tls.TlsError as exc:
            log.log("warning", str(exc))
            log.log("warning", tls.STARTUP_FAILED)
            return 1
    pidfile = values.get("pidfile") or (DEFAULT_PIDFILE if background else "")
    if pidfile:
        write_pidfile(pidfile)
    log.log("notice", f"Running mode=standalone, port={values['port']}.")
    check_tcp_backlog(values.get("tcp-backlog", 511))
    # Import every command family before forking so all processes share one table (after
    # daemonizing: worker/server_cmds.py takes psutil.Process() of the importing process).
    from .worker import (coordination, dump, server_cmds, sort, t_bitops, t_geo, t_hash, t_hll,  # noqa: F401
                         t_keys, t_list, t_set, t_stream, t_string, t_zset, persistence)
    from .proxy import handlers  # noqa: F401
    sup = Supervisor(cfg, supervised=supervised, ready_fd=ready_fd, pidfile=pidfile, daemonized=background)
    return sup.run()
