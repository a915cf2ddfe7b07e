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
    inner = worker.call             # the AOF's logging call, a busy script's answer, or the class's

    def call(spec, argv: list[bytes]) -> bytes:
        return _call(worker, inner, spec, argv)
    worker.no_touch = True
    _set_class(dbs, NoTouchDb)
    try:
        with worker.call_replaced(call):
            worker.handle(frame, link)
    finally:
        _set_class(dbs, Db)
        worker.no_touch = False


def _call(worker, inner, spec, argv: list[bytes]) -> bytes:
    """The worker's call; TOUCH alone runs with the ordinary lookups."""
    if spec.name != "touch":
        return inner(spec, argv)
    _set_class(worker.dbs, Db)
    try:
        return inner(spec, argv)
    finally:
        _set_class(worker.dbs, NoTouchDb)


def run_touching(worker, touching: bool, fn):
    """fn() with lookups that touch (or not) whatever the frame running it is: a blocked
    client served later keeps the NO-TOUCH mode it blocked with."""
    _set_class(worker.dbs, Db if touching else NoTouchDb)
    try:
        return fn()
    finally:
        _set_class(worker.dbs, NoTouchDb if worker.no_touch else Db)
