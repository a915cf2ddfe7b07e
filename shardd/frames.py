"""The frames that cross the rings between a proxy and a worker.

Request:  REQUEST header | runs (u32 × n_runs) | [indices (u32 × n_exec)] | slots (u16 × n_exec) | RESP
  The RESP part is either the raw bytes of one client read event (so the proxy forwards them
  without re-encoding) followed by commands the proxy built itself; `indices` names which of
  those commands this worker executes (absent with EXEC_ALL). Replies come back grouped in
  runs: consecutive commands of the client that went to this worker, whose replies the
  proxy slots into the client's reply order.
Reply:    REPLY header | run lengths (u32 × n_runs) | concatenated RESP replies
"""
from __future__ import annotations

import array
import struct

REQUEST = struct.Struct("<IQBBHIII")  # batch id, client id, db, proto, flags, n_exec, n_runs, hold id
REPLY = struct.Struct("<II")          # batch id, n_runs
# The same headers behind the ring's u64 frame length, for building a frame in one join.
FRAMED_REQUEST = struct.Struct("<QIQBBHIII")
FRAMED_REPLY = struct.Struct("<QII")
SECTION = struct.Struct("<QBBHIII")   # client id, db, proto, flags (EXEC_ALL), n_exec, n_runs, RESP bytes
# A section of one command (EXEC_ALL): SECTION, then its one run count (1) and its slot.
ONE_COMMAND_SECTION = struct.Struct("<QBBHIIIIH")

EXEC_ALL = 1        # execute every command of the RESP part
# Control frames (on a worker's control ring, from the proxy holding the coordinator lock):
HOLD = 2            # run these commands, then serve nothing but this hold until RELEASE
IN_HOLD = 4         # run these commands within the hold named by the frame's hold id
RELEASE = 8         # end the hold (after running the frame's commands, if any)
NO_REPLY = 16       # the proxy expects no reply frame
CLIENTS = 64        # several clients' reads in one frame: the header's n_runs counts SECTIONs,
                    # each one client's read: SECTION | runs | [indices] | slots | RESP; the reply
                    # has the runs of every section, in order
ATOMIC = 128        # a transaction's commands: blocking commands do not block, and clients
                    # blocked on keys it writes are served after the whole frame
BLOCKING = 256      # the frame's one command may block (a client's own BLPOP …)
# A reply frame with this batch id is a WAKE: n_runs is its kind (blocking.SERVED/READY) and
# the body a u64 client id followed by the reply for that blocked client.
WAKE_BID = 0xFFFFFFFF
TRACK = 512         # client tracking: the worker remembers which keys the frame's read-only
                    # commands read, for the frame's client (worker/tracking.py)
NOTOUCH = 1024      # CLIENT NO-TOUCH: the frame's commands leave the keys' access clocks alone
                    # (LRU/LFU), TOUCH excepted (worker/no_touch.py)
SPLIT = 2048        # a CLIENTS section holding one read split over two workers: SECTION | worker
                    # map (u8 × n_exec, the worker of each command) | slots (u16 × n_exec) | RESP,
                    # n_runs the map's byte for this worker; its reply is one run, itself
                    # u32 n | run lengths (u32 × n) | run bodies (split_runs)
GUARD = 32          # EXEC on one worker: if a key the client WATCHes changed, run nothing and
                    # answer every run with an empty body; either way the client's watches end


def split_runs(blob: bytes) -> list[bytes] | None:
    """The run bodies of a SPLIT section's reply, or None when it is not one (an error a
    restarted worker left in its place)."""
    if len(blob) < 4:
        return None
    n = int.from_bytes(blob[:4], "little")
    pos = 4 + 4 * n
    if pos > len(blob):
        return None
    runs = []
    for size in array.array("I", blob[4:pos]):
        runs.append(blob[pos:pos + size])
        pos += size
    return runs if pos == len(blob) else None
