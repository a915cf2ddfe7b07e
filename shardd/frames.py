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

import struct

REQUEST = struct.Struct("<IQBBHII")   # batch id, client id, db, proto, flags, n_exec, n_runs
REPLY = struct.Struct("<II")          # batch id, n_runs
# The same headers behind the ring's u64 frame length, for building a frame in one join.
FRAMED_REQUEST = struct.Struct("<QIQBBHII")
FRAMED_REPLY = struct.Struct("<QII")

EXEC_ALL = 1        # execute every command of the RESP part
CONTROL = 2         # a coordinator/control frame (the atomicity issue builds on it)
