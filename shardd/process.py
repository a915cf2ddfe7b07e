"""Child processes: dying with the parent, and the forks that write files in the background
(BGSAVE, BGREWRITEAOF) while the worker that forked them serves."""
from __future__ import annotations

import ctypes
import os
import signal
import traceback
from typing import Callable

from . import log

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def run_forked(body: Callable[[], None], what: str) -> int:
    """Fork; the child runs body() with default signal handling, dies with its parent, and
    exits 0 (1 after logging why `what` failed) without running any cleanup of ours. The
    parent gets the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        die_with_parent()
        body()
        code = 0
    except BaseException:
        log.log("warning", f"{what} failed: {traceback.format_exc()}")
    finally:
        os._exit(code)


def reap(pid: int) -> tuple[bool, int] | None:
    """A finished child's (success, wait status), or None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False, 1
    if done == 0:
        return None
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
