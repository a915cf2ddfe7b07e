"""Valkey's log line format: `pid:role dd Mon yyyy hh:mm:ss.mmm <level-char> message`.

Every process of a server logs through here with its own role letter: the supervisor `M`,
proxies `P`, workers `W`. `logfile ""` writes to stdout (which a daemonized server points at
/dev/null, as Valkey does); `syslog-enabled yes` copies each line to syslog as well.
When the process was configured with its config values (`values=`), `loglevel`, `logfile`
and `syslog-enabled` are read at each line, so CONFIG SET applies to them at once.
"""
from __future__ import annotations

import os
import sys
import time

LEVELS = {"debug": 0, "verbose": 1, "notice": 2, "warning": 3, "nothing": 4}
_MARKS = {0: ".", 1: "-", 2: "*", 3: "#"}
_state: dict = {"role": "M", "level": 2, "file": None, "values": None, "syslog": False}

try:
    import syslog as _syslog
    _SYSLOG_PRIORITY = {0: _syslog.LOG_DEBUG, 1: _syslog.LOG_INFO, 2: _syslog.LOG_NOTICE,
                        3: _syslog.LOG_WARNING}
except ImportError:  # pragma: no cover - not on POSIX
    _syslog = None
    _SYSLOG_PRIORITY = {}


def configure(role: str, level: str = "notice", logfile: str = "", values: dict | None = None) -> None:
    """Set this process's role letter and where and what it logs (`values`: the live config)."""
    _state["role"] = role
    _state["level"] = LEVELS.get(level, 2)
    _state["file"] = logfile or None
    _state["values"] = values
    if values is not None:
        _state["level"] = LEVELS.get(values.get("loglevel", level), 2)
        _state["file"] = values.get("logfile", logfile) or None
        _open_syslog(values)


def _open_syslog(values: dict) -> None:
    """openlog(syslog-ident, LOG_PID | LOG_NDELAY | LOG_NOWAIT, syslog-facility), as Valkey."""
    _state["syslog"] = False
    if _syslog is None or not values.get("syslog-enabled"):
        return
    facility = getattr(_syslog, "LOG_" + str(values.get("syslog-facility", "local0")).upper(),
                       _syslog.LOG_LOCAL0)
    _syslog.openlog(str(values.get("syslog-ident", "valkey")),
                    _syslog.LOG_PID | _syslog.LOG_NDELAY | getattr(_syslog, "LOG_NOWAIT", 0), facility)
    _state["syslog"] = True


def enabled(level: str) -> bool:
    """Would a line at `level` be written?"""
    return LEVELS.get(level, 2) >= _current_level()


def _current_level() -> int:
    values = _state["values"]
    if values is not None:
        return LEVELS.get(values.get("loglevel", "notice"), 2)
    return _state["level"]


def _current_file() -> str | None:
    values = _state["values"]
    if values is not None:
        return values.get("logfile") or None
    return _state["file"]


def log(level: str, message: str) -> None:
    lv = LEVELS.get(level, 2)
    if lv < _current_level():
        return
    now = time.time()
    stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(now)) + ".%03d" % int(now % 1 * 1000)
    line = f"{os.getpid()}:{_state['role']} {stamp} {_MARKS.get(lv, '*')} {message}\n"
    _write(line)
    if _state["syslog"] and _syslog is not None:
        try:
            _syslog.syslog(_SYSLOG_PRIORITY.get(lv, _syslog.LOG_NOTICE), message)
        except (OSError, ValueError):
            pass


def _write(text: str) -> None:
    path = _current_file()
    try:
        if path:
            # One append per line: lines of several processes never interleave.
            with open(path, "a") as f:
                f.write(text)
        else:
            out = sys.__stdout__ or sys.stdout
            out.write(text)
            out.flush()
    except (OSError, ValueError):
        pass


class LogStream:
    """A text stream for sys.stderr: each line written becomes a warning log line, so
    tracebacks and library warnings of every process end up in the log (Valkey writes
    everything to its logfile)."""

    def __init__(self) -> None:
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                log("warning", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            log("warning", self.pending.rstrip())
        self.pending = ""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 2

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True
