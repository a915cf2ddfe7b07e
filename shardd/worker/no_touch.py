"""CLIENT NO-TOUCH in a worker: the frames of such a client carry NOTOUCH, and while one runs
every lookup leaves the keys' access clocks alone (Valkey's LOOKUP_NOTOUCH for the lookups of a
client flagged CLIENT_NO_TOUCH), except in TOUCH, whose whole point is to set them.

The dbs change class for the length of the frame, so the lookups of every other client cost
nothing more: `NoTouchDb.lookup` is `Db.peek`.
"""
from __future__ import annotations

from .keyspace import Db


class NoTouchDb(Db):
    """A Db whose lookups do not count as accesses (the class of every db during a NOTOUCH frame)."""
    __slots__ = ()
    lookup = Db.peek


def _set_class(dbs: list[Db], cls: type) -> None:
    for db in dbs:
        db.__class__ = cls


def handle(worker, frame: bytes, link) -> None:
    """Run a NOTOUCH frame (Worker.handle) with its lookups not touching."""
    dbs = worker.dbs
    busy = "call" in worker.__dict__       # answering frames from a busy script's hook: no commands run
    worker.no_touch = True
    _set_class(dbs, NoTouchDb)
    if not busy:
        worker.call = lambda spec, argv: _call(worker, spec, argv)
    try:
        worker.handle(frame, link)
    finally:
        if not busy:
            worker.__dict__.pop("call", None)
        _set_class(dbs, Db)
        worker.no_touch = False


def _call(worker, spec, argv: list[bytes]) -> bytes:
    """Worker.call; TOUCH alone runs with the ordinary lookups."""
    call = type(worker).call
    if spec.name != "touch":
        return call(worker, spec, argv)
    _set_class(worker.dbs, Db)
    try:
        return call(worker, spec, argv)
    finally:
        _set_class(worker.dbs, NoTouchDb)
