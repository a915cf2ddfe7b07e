"""A proxy's listening sockets, and CONFIG SET port / tls-port / bind changing them at runtime
(Valkey's changeListener: the old listener closes, the new one opens; port 0 listens nowhere).

At start the proxy serves the sockets the supervisor bound (shared by every proxy). A runtime
change binds the new sockets in each proxy, with SO_REUSEPORT when there are several proxies
(they share the port, the kernel spreading connections among them); a port that
cannot be bound fails CONFIG SET and the old listener is opened again (as Valkey restores the
old value). A supervisor socket is closed with shutdown(), which stops it listening in every
process holding it.
"""
from __future__ import annotations

import errno
import socket

from .. import log
from ..config import ConfigError, config_set_error

# CONFIG SET's reasons, as Valkey's updatePort / applyTLSPort / applyBind give them.
PORT_FAILED = "Unable to listen on this port. Check server logs."
BIND_FAILED = "Failed to bind to specified addresses."
# Which config names each listener kind depends on, and the port's name.
PORT_NAMES = {"tcp": "port", "tls": "tls-port"}


def listener_kind(sock: socket.socket, values: dict) -> str:
    from .tls import is_tls_listener
    if sock.family == socket.AF_UNIX:
        return "unix"
    return "tls" if is_tls_listener(sock, values) else "tcp"


def bind_tcp(host: str, port: int, backlog: int, shared: bool) -> socket.socket:
    """One listening socket (anetTcpServer), SO_REUSEPORT when several proxies bind it."""
    six = ":" in host
    family = socket.AF_INET6 if six else socket.AF_INET
    name = None if host == "*" or (six and host == "::*") else host
    infos = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    fam, kind, proto, _, addr = infos[0]
    s = socket.socket(fam, kind, proto)
    try:
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(addr)
        s.listen(backlog)
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


def still_current(sock: socket.socket, ports: set[int]) -> bool:
    """A supervisor's TCP socket still listening on a port the config names (CONFIG SET may
    have shut it down, or moved its kind to another port)."""
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        return bool(listening) and sock.getsockname()[1] in ports
    except OSError:
        return False


class Listeners:
    """The sockets one proxy accepts clients on, by kind ("tcp", "tls", "unix")."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.socks: dict[str, list[socket.socket]] = {"tcp": [], "tls": [], "unix": []}
        self.servers: dict[str, list] = {"tcp": [], "tls": [], "unix": []}
        values = proxy.config.values
        # What each TCP kind listens on now: (bind addresses, port).
        self.where = {kind: (tuple(values["bind"]), values.get(name) or 0) for kind, name in PORT_NAMES.items()}

    def context(self, kind: str):
        return self.proxy.tls.listening if kind == "tls" else None

    def serve_startup(self, socks: list[socket.socket]) -> None:
        """The supervisor's sockets, served before the loop runs. A proxy restarted after
        CONFIG SET moved a listener skips the supervisor's socket that no longer listens (or
        listens on the old port) and binds the current port itself."""
        loop = self.proxy.loop
        values = self.proxy.config.values
        ports = {values.get(name) or 0 for name in PORT_NAMES.values()}
        for sock in socks:
            kind = listener_kind(sock, values)
            if kind != "unix" and not still_current(sock, ports):
                continue
            self.socks[kind].append(sock)
            self.servers[kind].append(loop.run_until_complete(self.create_server(sock, kind)))
        for kind, (bind, port) in self.where.items():
            if port and not self.socks[kind]:
                try:
                    self.listen(kind, bind, port)
                except _Failed:
                    log.log("warning", f"Could not listen on port {port} ({kind}) after a restart")

    def create_server(self, sock: socket.socket, kind: str):
        from .server import Client
        proxy = self.proxy
        return proxy.loop.create_server(lambda: Client(proxy), sock=sock, ssl=self.context(kind),
                                        backlog=proxy.config.values.get("tcp-backlog", 511))

    # -- CONFIG SET ---------------------------------------------------------------------------
    def config_set(self, pairs: list[tuple[str, str]], before: dict) -> None:
        """After CONFIG SET: open the listeners a changed port / tls-port / bind asks for and
        close the old ones; when a socket cannot be bound (or TLS cannot be set up) nothing
        changes, the old values come back and CONFIG SET fails."""
        names = [name.lower() for name, _ in pairs]
        if not {"port", "tls-port", "bind"}.intersection(names):
            return
        values = self.proxy.config.values
        wanted = {kind: (tuple(values["bind"]), values.get(name) or 0) for kind, name in PORT_NAMES.items()}
        changed = [kind for kind in PORT_NAMES if wanted[kind] != self.where[kind]]
        if not changed:
            return
        closed: list[str] = []
        try:
            if "tls" in changed and wanted["tls"][1]:
                self.ensure_tls()
            for kind in changed:
                closed.append(kind)
                self.close_kind(kind)
                self.listen(kind, *wanted[kind])
        except _Failed as failure:
            values.update(before)
            for kind in closed:           # restoreBackupConfig: the old listeners again
                self.close_kind(kind)
                try:
                    self.listen(kind, *self.where[kind])
                except _Failed:
                    log.log("warning", f"Could not listen again on {self.where[kind]} ({kind})")
            raise ConfigError(failure.message(names)) from None
        self.where.update(wanted)

    def listen(self, kind: str, bind: tuple[str, ...], port: int) -> None:
        """Open this kind's sockets; the loop starts accepting on them once it runs again."""
        socks = self.bind_all(kind, bind, port)
        self.socks[kind] = socks
        for sock in socks:
            self.proxy.loop.create_task(self.start_serving(sock, kind))

    def ensure_tls(self) -> None:
        """applyTLSPort: TLS is configured now if it was not (no certificate: it fails)."""
        proxy = self.proxy
        if getattr(proxy, "tls", None) is not None:
            return
        from .tls import Tls, TlsError
        try:
            proxy.tls = Tls(proxy.config.values)
        except TlsError as exc:
            log.log("warning", str(exc))
            raise _Failed("tls", _TLS_FAILED) from None

    def bind_all(self, kind: str, bind: tuple[str, ...], port: int) -> list[socket.socket]:
        """A socket per bind address (listenToPort: an optional `-` address that is not on this
        host is skipped); none for port 0."""
        if not port:
            return []
        proxy = self.proxy
        backlog = proxy.config.values.get("tcp-backlog", 511)
        socks: list[socket.socket] = []
        for addr in bind:
            optional = addr.startswith("-")
            host = addr[1:] if optional else addr
            try:
                socks.append(bind_tcp(host, port, backlog, proxy.n_proxies > 1))
            except (OSError, socket.gaierror) as exc:
                log.log("warning", f"Could not create server TCP listening socket {host}:{port}: "
                                   f"{exc.strerror or exc}")
                if (optional and getattr(exc, "errno", None) in (errno.EADDRNOTAVAIL, None)) or \
                        getattr(exc, "errno", None) in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                    continue
                for s in socks:
                    s.close()
                raise _Failed(kind, PORT_FAILED) from None
        return socks

    async def start_serving(self, sock: socket.socket, kind: str) -> None:
        if sock not in self.socks[kind]:      # closed again before the loop got to it
            return
        server = await self.create_server(sock, kind)
        if sock in self.socks[kind]:
            self.servers[kind].append(server)
        else:
            server.close()

    def close_kind(self, kind: str) -> None:
        """connCloseListener: stop accepting on every socket of this kind (connections already
        accepted stay). shutdown() reaches the copies the supervisor and other proxies hold."""
        for sock in self.socks[kind]:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        for server in self.servers[kind]:
            server.close()
        for sock in self.socks[kind]:
            sock.close()
        self.socks[kind] = []
        self.servers[kind] = []


_TLS_FAILED = "Unable to update TLS configuration. Check server logs."


class _Failed(Exception):
    """A listener kind could not be opened, for `reason`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def message(self, names: list[str]) -> str:
        """CONFIG SET's error, naming the config whose apply failed: the kind's port if it was
        set, else bind (applyBind's own reason)."""
        name = PORT_NAMES[self.kind]
        if name in names:
            return config_set_error(name, self.reason)
        return config_set_error("bind", BIND_FAILED if self.reason == PORT_FAILED else self.reason)
