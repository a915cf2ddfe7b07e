"""Valkey's log line format: `pid:role dd Mon yyyy hh:mm:ss.mmm <level-char> message`."""
from __future__ import annotations

import os
import sys
import time

LEVELS = {"debug": 0, "verbose": 1, "notice": 2, "warning": 3, "nothing": 4}
_MARKS = {0: ".", 1: "-", 2: "*", 3: "#"}
_state = {"role": "M", "level": 2, "file": None}


def configure(role: str, level: str = "notice", logfile: str = "") -> None:
    _state["role"] = role
    _state["level"] = LEVELS.get(level, 2)
    _state["file"] = logfile or None


def log(level: str, message: str) -> None:
    lv = LEVELS.get(level, 2)
    if lv < _state["level"]:
        return
    now = time.time()
    stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(now)) + ".%03d" % int(now % 1 * 1000)
    line = f"{os.getpid()}:{_state['role']} {stamp} {_MARKS.get(lv, '*')} {message}\n"
    path = _state["file"]
    try:
        if path:
            with open(path, "a") as f:
                f.write(line)
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    except OSError:
        pass
