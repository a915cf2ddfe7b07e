"""CONFIG SET tls-port / port / bind open and close listeners at runtime (Valkey's changeListener),
and CONFIG SET tls-cert-file / tls-key-file reload the certificate new connections get."""
from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import redis

from helpers import RawConnection, encode
from server import Server, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")

NO_TLS = ("CONFIG SET failed (possibly related to argument 'tls-port') - "
          "Unable to update TLS configuration. Check server logs.")
PORT_BUSY = "CONFIG SET failed (possibly related to argument '{}') - Unable to listen on this port. Check server logs."


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """Two self-signed certificates for 127.0.0.1 ("first" and "second"), each its own CA."""
    d = tmp_path_factory.mktemp("tls-runtime")
    for name in ("first", "second"):
        subprocess.run(["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key",
                        "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       cwd=d, check=True, capture_output=True, timeout=60)
    (d / "both.crt").write_text((d / "first.crt").read_text() + (d / "second.crt").read_text())
    return d


def tls_call(port: int, certs: Path, *args) -> tuple[bytes, str]:
    """One command over a new TLS connection: (reply, the server certificate's CN)."""
    context = ssl.create_default_context(cafile=str(certs / "both.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(encode(*args))
            reply = s.recv(65536)
            subject = dict(item[0] for item in s.getpeercert()["subject"])
            return reply, subject["commonName"]


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@contextlib.contextmanager
def taken_port():
    """A port something else listens on, while the block runs."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        yield busy.getsockname()[1]
    finally:
        busy.close()


def use_certificate(r, certs: Path, name: str) -> None:
    r.config_set("tls-cert-file", str(certs / f"{name}.crt"), "tls-key-file", str(certs / f"{name}.key"))


@pytest.fixture
def srv():
    server = Server("--tls-auth-clients", "no")
    yield server
    server.stop()


def test_tls_port_needs_a_certificate(srv):
    r = srv.client()
    with pytest.raises(redis.ResponseError) as err:
        r.config_set("tls-port", free_port())
    assert str(err.value) == NO_TLS
    assert r.config_get("tls-port") == {"tls-port": "0"}
    assert "No tls-cert-file configured!" in srv.output()
    assert r.ping()


def test_tls_port_opens_moves_and_closes(srv, certs):
    r = srv.client()
    use_certificate(r, certs, "first")
    port = free_port()
    assert refuses(port)
    assert r.config_set("tls-port", port)
    assert r.config_get("tls-port") == {"tls-port": str(port)}
    assert tls_call(port, certs, "PING") == (b"+PONG\r\n", "first")
    kept = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs / "both.crt"), socket_timeout=5)
    assert kept.set("k", "v")
    # the same value again changes nothing
    assert r.config_set("tls-port", port)
    assert tls_call(port, certs, "GET", "k") == (b"$1\r\nv\r\n", "first")
    # moved: the old port refuses, the new one serves, open connections stay
    moved = free_port()
    assert r.config_set("tls-port", moved)
    assert refuses(port)
    assert tls_call(moved, certs, "GET", "k") == (b"$1\r\nv\r\n", "first")
    raw = RawConnection(srv.port)
    info = raw.call("INFO", "server").decode()
    raw.close()
    assert [line for line in info.splitlines() if line.startswith("listener")] == [
        f"listener0:name=tcp,bind=127.0.0.1,port={srv.port}", f"listener1:name=tls,bind=127.0.0.1,port={moved}"]
    assert kept.get("k") == b"v"
    # a new certificate: new connections get it, the open one keeps its session
    use_certificate(r, certs, "second")
    assert tls_call(moved, certs, "PING") == (b"+PONG\r\n", "second")
    assert kept.ping()
    # port 0 closes it
    assert r.config_set("tls-port", 0)
    assert refuses(moved)
    assert kept.ping() and r.ping()
    kept.close()


def test_tls_port_taken_fails_and_keeps_the_old_one(srv, certs):
    r = srv.client()
    use_certificate(r, certs, "first")
    port = free_port()
    r.config_set("tls-port", port)
    with taken_port() as busy:
        with pytest.raises(redis.ResponseError) as err:
            r.config_set("tls-port", busy)
        assert str(err.value) == PORT_BUSY.format("tls-port")
        assert r.config_get("tls-port") == {"tls-port": str(port)}
        assert tls_call(port, certs, "PING") == (b"+PONG\r\n", "first")


def test_port_moves(srv):
    r = srv.client()
    old = srv.port
    new = free_port()
    assert r.config_set("port", new)
    assert refuses(old)
    assert r.ping()                                   # the connection it came on stays
    moved = redis.Redis(port=new, socket_timeout=5)
    assert moved.config_get("port") == {"port": str(new)}
    assert moved.info("server")["tcp_port"] == new
    with taken_port() as busy:
        with pytest.raises(redis.ResponseError) as err:
            moved.config_set("port", busy)
        assert str(err.value) == PORT_BUSY.format("port")
    assert moved.config_get("port") == {"port": str(new)}
    assert redis.Redis(port=new, socket_timeout=5).ping()
    # bind to an address this host does not have: applyBind's error, nothing changes
    with pytest.raises(redis.ResponseError) as err:
        moved.config_set("bind", "192.0.2.1")
    assert str(err.value) == ("CONFIG SET failed (possibly related to argument 'bind') - "
                              "Failed to bind to specified addresses.")
    assert moved.config_get("bind") == {"bind": "127.0.0.1"}
    assert redis.Redis(port=new, socket_timeout=5).ping()
    # an optional address that is not here is skipped
    assert moved.config_set("bind", "127.0.0.1 -192.0.2.1")
    assert redis.Redis(port=new, socket_timeout=5).ping()
    moved.close()
    srv.port = new                                    # for stop()


def test_port_moves_on_every_proxy(certs):
    server = Server("--tls-auth-clients", "no", proxies=2)
    try:
        r = server.client()
        new = free_port()
        use_certificate(r, certs, "first")
        tls = free_port()
        assert r.config_set("port", new, "tls-port", tls)
        time.sleep(0.2)                               # the other proxy applies it too
        assert refuses(server.port)
        ids = set()
        clients = []
        for _ in range(24):
            c = redis.Redis(port=new, socket_timeout=5)
            ids.add(c.client_id() % 2)                 # client ids tell the proxies apart
            clients.append(c)
        assert ids == {0, 1}
        for _ in range(6):
            assert tls_call(tls, certs, "PING")[0] == b"+PONG\r\n"
        for c in clients:
            c.close()
    finally:
        server.stop()


def test_restarted_proxy_listens_where_config_set_moved_the_port():
    """A proxy the supervisor restarts after CONFIG SET port serves the new port (the
    supervisor's socket on the old port was shut down), sharing it with the other proxy."""
    import os
    import re
    import signal
    server = Server(proxies=2)
    try:
        r = server.client()
        new = free_port()
        assert r.config_set("port", new)
        time.sleep(0.2)
        moved = redis.Redis(port=new, socket_timeout=5)
        info = moved.info("shards")
        proxies = {int(k[5:]): v["pid"] for k, v in info.items() if re.fullmatch(r"proxy\d+", k)}
        os.kill(proxies[1], signal.SIGKILL)            # a PID of this test's own server

        def restarted() -> bool:
            try:
                got = redis.Redis(port=new, socket_timeout=2).info("shards")
            except redis.ConnectionError:
                return False
            pid = got.get("proxy1", {}).get("pid")
            return pid not in (None, 0, proxies[1])
        deadline = time.monotonic() + 15
        while not restarted() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert restarted()
        time.sleep(0.3)
        ids = set()
        for _ in range(24):
            c = redis.Redis(port=new, socket_timeout=5)
            ids.add(c.client_id() % 2)                 # both proxies accept on the new port
            c.close()
        assert ids == {0, 1}
        assert refuses(server.port)
        server.port = new
    finally:
        server.stop()
