"""TLS for client connections: Python's ssl on uvloop, configured by Valkey's tls-* directives.

The supervisor binds `tls-port` beside `port` (the same `bind` addresses); each proxy serves the
sockets bound to `tls-port` through an SSLContext built here. CONFIG SET of a tls-* directive
is checked on a new context, then applied to the listening one: connections accepted afterwards
use it, those already open keep theirs, as in Valkey.
"""
from __future__ import annotations

import socket
import ssl

from .. import log

PROTOCOLS = {"tlsv1": ssl.TLSVersion.TLSv1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
             "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_PROTOCOLS = "TLSv1.2 TLSv1.3"
VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}
BAD_PROTOCOLS = ("Invalid tls-protocols specified. Use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and "
                 "'TLSv1.3'.")
STARTUP_FAILED = "Failed to configure TLS. Check logs for more info."
UPDATE_FAILED = "Unable to update TLS configuration. Check server logs."


class TlsError(Exception):
    """The tls-* directives do not make a usable context (the message is Valkey's log line)."""


def wanted(values: dict) -> bool:
    """TLS is configured at start when something uses it (initListeners / tlsConfigure)."""
    return bool(values.get("tls-port") or values.get("tls-replication") or values.get("tls-cluster"))


def protocol_range(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """tls-protocols as (minimum, maximum) versions."""
    names = (text or DEFAULT_PROTOCOLS).lower().split()
    if not names or any(n not in PROTOCOLS for n in names):
        raise TlsError(BAD_PROTOCOLS)
    versions = sorted(PROTOCOLS[n] for n in names)
    return versions[0], versions[-1]


def build_context(values: dict) -> ssl.SSLContext:
    """tlsConfigure's server context from the tls-* values; TlsError with Valkey's reason."""
    cert, key = values.get("tls-cert-file") or "", values.get("tls-key-file") or ""
    if not cert:
        raise TlsError("No tls-cert-file configured!")
    if not key:
        raise TlsError("No tls-key-file configured!")
    ca_file, ca_dir = values.get("tls-ca-cert-file") or "", values.get("tls-ca-cert-dir") or ""
    auth = values.get("tls-auth-clients", "yes")
    if (auth != "no" or values.get("tls-cluster") or values.get("tls-replication")) and not (ca_file or ca_dir):
        raise TlsError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when tls-cluster, "
                       "tls-replication or tls-auth-clients are enabled!")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version, context.maximum_version = protocol_range(values.get("tls-protocols") or "")
    except ValueError as exc:
        raise TlsError(f"Failed to configure protocols: {exc}") from None
    try:
        context.load_cert_chain(cert, key, password=values.get("tls-key-file-pass") or None)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"Failed to load certificate: {cert}: {exc}") from None
    if ca_file or ca_dir:
        try:
            context.load_verify_locations(cafile=ca_file or None, capath=ca_dir or None)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"Failed to configure CA certificate(s) file/directory: {exc}") from None
    context.verify_mode = VERIFY.get(auth, ssl.CERT_REQUIRED)
    if values.get("tls-dh-params-file"):
        try:
            context.load_dh_params(values["tls-dh-params-file"])
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"Failed to load {values['tls-dh-params-file']}: {exc}") from None
    if values.get("tls-ciphers"):
        try:
            context.set_ciphers(values["tls-ciphers"])
        except ssl.SSLError as exc:
            raise TlsError(f"Failed to configure ciphers: {exc}") from None
    if values.get("tls-ciphersuites"):
        # Python's ssl has no SSL_CTX_set_ciphersuites: TLSv1.3 keeps OpenSSL's suites.
        log.log("verbose", "tls-ciphersuites is not applied (Python's ssl cannot set TLSv1.3 suites)")
    if values.get("tls-prefer-server-ciphers"):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not values.get("tls-session-caching", True):
        context.options |= ssl.OP_NO_TICKET
    return context


def is_tls_listener(sock: socket.socket, values: dict) -> bool:
    """The supervisor's TLS sockets are the TCP ones bound to tls-port."""
    port = values.get("tls-port") or 0
    if not port or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    return sock.getsockname()[1] == port


class Tls:
    """One proxy's TLS: the context its TLS listeners hand every new connection."""

    def __init__(self, values: dict) -> None:
        self.listening = build_context(values)

    def reconfigure(self, values: dict) -> None:
        """CONFIG SET tls-*: check the new setup on a fresh context (TlsError keeps the old
        one), then apply it to the listening context, which new connections take it from
        (a server keeps its context object; connections already open keep their settings).
        CA certificates once loaded stay trusted until a restart: OpenSSL's store only grows."""
        build_context(values)
        context = self.listening
        auth = values.get("tls-auth-clients", "yes")
        context.minimum_version, context.maximum_version = protocol_range(values.get("tls-protocols") or "")
        context.load_cert_chain(values["tls-cert-file"], values["tls-key-file"],
                                password=values.get("tls-key-file-pass") or None)
        if values.get("tls-ca-cert-file") or values.get("tls-ca-cert-dir"):
            context.load_verify_locations(cafile=values.get("tls-ca-cert-file") or None,
                                          capath=values.get("tls-ca-cert-dir") or None)
        context.verify_mode = VERIFY.get(auth, ssl.CERT_REQUIRED)
        context.set_ciphers(values.get("tls-ciphers") or "DEFAULT")
        if values.get("tls-prefer-server-ciphers"):
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if values.get("tls-session-caching", True):
            context.options &= ~ssl.OP_NO_TICKET
        else:
            context.options |= ssl.OP_NO_TICKET


def tls_names(pairs: list[tuple[str, str]]) -> bool:
    return any(name.lower().startswith("tls-") for name, _ in pairs)


def tls_config_set(proxy, pairs: list[tuple[str, str]], before: dict) -> None:
    """After CONFIG SET: a tls-* change rebuilds the context (applyTlsCfg); when that fails the
    old values come back and CONFIG SET fails."""
    if not tls_names(pairs) or getattr(proxy, "tls", None) is None:
        return
    try:
        proxy.tls.reconfigure(proxy.config.values)
    except TlsError as exc:
        from ..config import ConfigError, config_set_error
        log.log("warning", str(exc))
        proxy.config.values.update(before)
        first = next(name for name, _ in pairs if name.lower().startswith("tls-"))
        raise ConfigError(config_set_error(first, UPDATE_FAILED)) from None
