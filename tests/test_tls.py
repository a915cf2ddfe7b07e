"""TLS on tls-port: certificates made here with the openssl command line, clients on Python's ssl."""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import redis

from helpers import encode
from server import Server, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, both signed
    by the CA, and a second CA that signed nothing of ours."""
    d = tmp_path_factory.mktemp("tls")
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-days", "2", "-subj", f"/CN={ca}", cwd=d)
    for name, extra in (("server", ["-extfile", "san.cnf"]), ("client", []), ("stranger", [])):
        ca = "other-ca" if name == "stranger" else "ca"
        openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra, cwd=d)
    return d


def tls_args(certs: Path, port: int, *more: str) -> list[str]:
    return ["--tls-port", str(port), "--tls-cert-file", str(certs / "server.crt"),
            "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"), *more]


def client_context(certs: Path, cert: str | None = "client", version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if cert:
        context.load_cert_chain(str(certs / f"{cert}.crt"), str(certs / f"{cert}.key"))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


class TlsConnection:
    """A raw RESP connection over TLS."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")

    def call(self, *args) -> bytes:
        self.sock.sendall(encode(*args))
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def refused(port: int, context: ssl.SSLContext) -> bool:
    """The handshake fails, or the server closes the connection at the first command."""
    try:
        conn = TlsConnection(port, context)
        try:
            conn.call("PING")
        finally:
            conn.close()
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


@pytest.fixture(scope="module")
def tls_server(certs):
    port = free_port()
    srv = Server(*tls_args(certs, port))
    srv.tls_port = port
    yield srv
    srv.stop()


def test_tls_clients_with_certificates(tls_server, certs):
    conn = TlsConnection(tls_server.tls_port, client_context(certs))
    assert conn.call("PING") == b"+PONG\r\n"
    assert conn.call("SET", "tls:k", "v") == b"+OK\r\n"
    assert conn.call("GET", "tls:k") == b"$1\r\nv\r\n"
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    conn.close()
    # the plain port serves the same data
    assert tls_server.client().get("tls:k") == b"v"
    # redis-py over TLS: pipelines, big values
    r = redis.Redis(port=tls_server.tls_port, ssl=True, ssl_certfile=str(certs / "client.crt"),
                    ssl_keyfile=str(certs / "client.key"), ssl_ca_certs=str(certs / "ca.crt"), socket_timeout=10)
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"tls:{i}", str(i) * 100)
    assert all(pipe.execute())
    r.set("tls:big", b"x" * 3_000_000)
    assert len(r.get("tls:big")) == 3_000_000
    assert r.client_info()["laddr"].endswith(f":{tls_server.tls_port}")
    r.close()


def test_tls_auth_clients(tls_server, certs):
    port = tls_server.tls_port
    admin = tls_server.client()
    assert refused(port, client_context(certs, cert=None))            # tls-auth-clients yes (the default)
    assert refused(port, client_context(certs, cert="stranger"))      # signed by a CA we do not trust
    try:
        admin.config_set("tls-auth-clients", "optional")
        assert not refused(port, client_context(certs, cert=None))
        assert refused(port, client_context(certs, cert="stranger"))  # optional: a bad one still fails
        admin.config_set("tls-auth-clients", "no")
        assert not refused(port, client_context(certs, cert=None))
    finally:
        admin.config_set("tls-auth-clients", "yes")
    assert refused(port, client_context(certs, cert=None))


def test_tls_protocols_and_ciphers(tls_server, certs):
    port = tls_server.tls_port
    admin = tls_server.client()
    try:
        admin.config_set("tls-protocols", "TLSv1.3")
        assert refused(port, client_context(certs, version=ssl.TLSVersion.TLSv1_2))
        conn = TlsConnection(port, client_context(certs, version=ssl.TLSVersion.TLSv1_3))
        assert conn.sock.version() == "TLSv1.3" and conn.call("PING") == b"+PONG\r\n"
        conn.close()
        admin.config_set("tls-protocols", "TLSv1.2")
        admin.config_set("tls-ciphers", "ECDHE-RSA-AES128-GCM-SHA256")
        conn = TlsConnection(port, client_context(certs))
        assert conn.sock.version() == "TLSv1.2" and conn.sock.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"
        conn.close()
        with pytest.raises(redis.ResponseError, match="argument must be one of|Invalid|Unable to update"):
            admin.config_set("tls-protocols", "SSLv3")
        with pytest.raises(redis.ResponseError, match="Unable to update TLS configuration"):
            admin.config_set("tls-ciphers", "NO-SUCH-CIPHER")
        assert admin.config_get("tls-ciphers")["tls-ciphers"] == "ECDHE-RSA-AES128-GCM-SHA256"
    finally:
        admin.config_set("tls-protocols", "")
        admin.config_set("tls-ciphers", "")


def test_tls_config_set_keeps_a_working_setup(tls_server, certs):
    admin = tls_server.client()
    with pytest.raises(redis.ResponseError) as err:
        admin.config_set("tls-cert-file", str(certs / "nosuch.crt"))
    assert str(err.value) == ("CONFIG SET failed (possibly related to argument 'tls-cert-file') - "
                              "Unable to update TLS configuration. Check server logs.")
    assert admin.config_get("tls-cert-file")["tls-cert-file"] == str(certs / "server.crt")
    conn = TlsConnection(tls_server.tls_port, client_context(certs))
    assert conn.call("PING") == b"+PONG\r\n"
    conn.close()
    assert "Failed to load certificate" in tls_server.output()


def test_tls_only_with_requirepass(certs):
    port = free_port()
    srv = Server(*tls_args(certs, port, "--tls-auth-clients", "no", "--requirepass", "pw"), port=free_port(),
                 wait=False)
    try:
        # the plain port is there too (Server passes --port); TLS answers NOAUTH until AUTH
        srv.wait_ready()
        conn = TlsConnection(port, client_context(certs, cert=None))
        assert conn.call("GET", "k") == b"-NOAUTH Authentication required.\r\n"
        assert conn.call("AUTH", "pw") == b"+OK\r\n"
        assert conn.call("GET", "k") == b"$-1\r\n"
        conn.close()
        assert "Ready to accept connections tls" in srv.output()
    finally:
        srv.stop()


def test_tls_misconfiguration_stops_the_start(certs):
    srv = Server("--tls-port", str(free_port()), wait=False)
    assert srv.proc.wait(20) == 1
    out = srv.output()
    srv.stop()
    assert "No tls-cert-file configured!" in out and "Failed to configure TLS. Check logs for more info." in out
    srv = Server("--tls-port", str(free_port()), "--tls-cert-file", str(certs / "server.crt"),
                 "--tls-key-file", str(certs / "server.key"), wait=False)
    assert srv.proc.wait(20) == 1
    out = srv.output()
    srv.stop()
    assert "Either tls-ca-cert-file or tls-ca-cert-dir must be specified" in out
    srv = Server(*tls_args(certs, free_port(), "--tls-protocols", "TLSv9"), wait=False)
    assert srv.proc.wait(20) == 1
    out = srv.output()
    srv.stop()
    assert "Invalid tls-protocols specified." in out
