"""The supervisor: the process started as shardd-server.

It reads the config (the CLI did), binds every listening socket once, maps the shared
memory for the rings, forks the shard workers and the proxies, restarts a worker or proxy
that dies, and shuts everything down on SIGTERM/SIGINT or a client's SHUTDOWN.
"""
from __future__ import annotations

import ctypes
import errno
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time
import uuid

from . import REDIS_VERSION, __version__, log
from .ring import FrameReader, FrameWriter, Ring, SharedRegion, Waker, ring_size
from .slots import slot_map, slot_ranges

REQUEST_RING = 4 << 20
REPLY_RING = 4 << 20
CONTROL_RING = 256 << 10
_PR_SET_PDEATHSIG = 1


class BindError(Exception):
    pass


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


def bind_listeners(cfg) -> list[socket.socket]:
    port = cfg.values["port"]
    socks: list[socket.socket] = []
    if port:
        for addr in cfg.values["bind"]:
            optional = addr.startswith("-")
            host = addr[1:] if optional else addr
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            host = {"*": "0.0.0.0", "::*": "::"}.get(host, host)
            try:
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
                s.listen(cfg.values.get("tcp-backlog", 511))
                s.setblocking(False)
                socks.append(s)
            except OSError as exc:
                s.close()
                if optional or exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) and host == "::":
                    continue
                for other in socks:
                    other.close()
                raise BindError(f"Warning: Could not create server TCP listening socket {addr}:{port}: bind: {exc.strerror}")
    path = cfg.values.get("unixsocket")
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
        except OSError as exc:
            raise BindError(f"Failed opening Unix socket: bind: {exc.strerror}")
        perm = cfg.values.get("unixsocketperm", 0)
        if perm:
            os.chmod(path, int(str(perm), 8) if isinstance(perm, str) else perm)
        s.listen(cfg.values.get("tcp-backlog", 511))
        s.setblocking(False)
        socks.append(s)
    if not socks:
        raise BindError("Configured to not listen anywhere, exiting.")
    return socks


class Plumbing:
    """The shared memory, rings and wakers of every proxy × worker pair."""

    def __init__(self, n_proxies: int, n_workers: int) -> None:
        per_pair = ring_size(REQUEST_RING) + ring_size(REPLY_RING) + ring_size(CONTROL_RING) + 5 * 64
        self.region = SharedRegion(n_proxies * n_workers * per_pair + (2 * n_proxies + n_workers + 4) * 64)
        self.worker_wakers = [Waker(self.region.take(64)) for _ in range(n_workers)]
        self.proxy_wakers = [Waker(self.region.take(64)) for _ in range(n_proxies)]
        self.proxy_stats = [self.region.take(64).cast("Q") for _ in range(n_proxies)]
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


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.n_workers = cfg.values["worker-processes"]
        self.n_proxies = max(1, cfg.values.get("io-threads", 1))
        self.slotmap = slot_map(self.n_workers)
        self.ranges = slot_ranges(self.n_workers)
        self.workers: dict[int, int] = {}   # pid → shard
        self.proxies: dict[int, int] = {}   # pid → index
        self.control: list[socket.socket] = []
        self.stopping = False
        self.info = {
            "run_id": uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "process_id": os.getpid(),
            "start_time": time.time(),
            "config_file": getattr(cfg, "config_file", None) or "",
            "executable": os.path.abspath(sys.argv[0]),
            "tcp_port": cfg.values["port"],
            "workers": self.n_workers,
            "proxies": self.n_proxies,
        }

    def start(self) -> None:
        self.listeners = bind_listeners(self.cfg)
        self.plumbing = Plumbing(self.n_proxies, self.n_workers)
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

    def spawn_proxy(self, p: int) -> None:
        parent_end, child_end = socket.socketpair()

        def body() -> None:
            parent_end.close()
            from .proxy import server as proxy_server
            info = dict(self.info, control=child_end, proxy_index=p,
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
        pid = os.fork()
        if pid:
            return pid
        self._child(role)
        code = 0
        try:
            cpus = self.cfg.values.get(cpulist)
            if cpus:
                all_cpus = sorted(parse_cpulist(cpus))
                os.sched_setaffinity(0, {all_cpus[index % len(all_cpus)]})
            body()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        os._exit(code)

    def _child(self, role: str) -> None:
        _die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        log.configure(role, self.cfg.values.get("loglevel", "notice"), self.cfg.values.get("logfile", ""))

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        self.sel = selectors.DefaultSelector()
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        self.sel.register(rfd, selectors.EVENT_READ, ("signal", None))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)
        try:
            self.start()
        except BindError as exc:
            log.log("warning", str(exc))
            return 1
        log.log("notice", f"shardd {__version__} (Redis {REDIS_VERSION} compatible) started, "
                          f"{self.n_workers} workers, {self.n_proxies} proxies, port {self.cfg.values['port']}")
        log.log("notice", "Ready to accept connections tcp")
        while not self.stopping:
            for key, _ in self.sel.select(timeout=1.0):
                kind, arg = key.data
                if kind == "signal":
                    self.on_signals(rfd)
                elif kind == "control":
                    self.on_control(arg)
        return self.shutdown()

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
            if pid in self.workers:
                w = self.workers.pop(pid)
                log.log("warning", f"Worker {w} (pid {pid}) exited with status {status}; restarting it")
                self.spawn_worker(w, restarted=True)
            elif pid in self.proxies:
                p = self.proxies.pop(pid)
                log.log("warning", f"Proxy {p} (pid {pid}) exited with status {status}; restarting it")
                self.spawn_proxy(p)

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
            elif op == "broadcast":
                self.broadcast(msg["msg"], exclude=p)
            elif op == "query":
                self.broadcast(msg, exclude=p)
            elif op == "answer":
                self.broadcast(msg, exclude=None, only=msg["to"])

    def broadcast(self, msg: dict, exclude: int | None = None, only: int | None = None) -> None:
        for i, sock in enumerate(self.control):
            if i != exclude and sock is not None and (only is None or i == only):
                try:
                    send_message(sock, msg)
                except OSError:
                    pass

    def shutdown(self) -> int:
        log.log("warning", "User requested shutdown...")
        children = list(self.proxies) + list(self.workers)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        alive = set(children)
        while alive and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
            else:
                alive.discard(pid)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        path = self.cfg.values.get("unixsocket")
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
        log.log("warning", "shardd is now ready to exit, bye bye...")
        return 0


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


def run(cfg) -> int:
    log.configure("M", cfg.values.get("loglevel", "notice"), cfg.values.get("logfile", ""))
    try:
        os.chdir(cfg.values["dir"])
    except OSError as exc:
        log.log("warning", f"Can't chdir to '{cfg.values['dir']}': {exc.strerror}")
        return 1
    # Import every command family before forking so all processes share one table.
    from .worker import t_string, t_keys, server_cmds  # noqa: F401
    from .proxy import handlers  # noqa: F401
    sup = Supervisor(cfg)
    return sup.run()
