"""MONITOR lines, as Valkey's replicationFeedMonitors writes them:
`+<unix time with µs> [<db> <client address | lua | unix:path>] "arg" "arg" …`, each argument
quoted as sdscatrepr does, AUTH's arguments and HELLO's AUTH username and password redacted.
Proxies format the lines of the commands they dispatch, workers those a script runs."""
from __future__ import annotations

import re
import time

_NEEDS_ESCAPE = re.compile(rb'[^\x20-\x7e]|["\\]').search
_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r", ord("\t"): b"\\t",
            7: b"\\a", 8: b"\\b"}
REDACTED = b"(redacted)"


def quote(arg: bytes) -> bytes:
    """sdscatrepr: a quoted string with C escapes, other unprintable bytes as \\xHH."""
    if _NEEDS_ESCAPE(arg) is None:
        return b'"' + arg + b'"'
    out = [b'"']
    for c in arg:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 0x20 <= c <= 0x7E:
            out.append(bytes((c,)))
        else:
            out.append(b"\\x%02x" % c)
    out.append(b'"')
    return b"".join(out)


def redacted(argv: list[bytes]) -> list[bytes]:
    """AUTH's arguments and HELLO's AUTH username and password are never shown."""
    name = argv[0].lower()
    if name == b"auth":
        return [argv[0]] + [REDACTED] * (len(argv) - 1)
    if name == b"hello":
        argv = list(argv)
        i = 2
        while i < len(argv):
            if argv[i].lower() == b"auth" and i + 2 < len(argv):
                argv[i + 1] = argv[i + 2] = REDACTED
                i += 3
            elif argv[i].lower() == b"setname":
                i += 2
            else:
                i += 1
    return argv


def line(argv: list[bytes], db: int, source: bytes) -> bytes:
    now = time.time_ns() // 1000
    if argv[0].lower() in (b"auth", b"hello"):
        argv = redacted(argv)
    return b"+%d.%06d [%d %b] %b\r\n" % (now // 1_000_000, now % 1_000_000, db, source,
                                         b" ".join(map(quote, argv)))
