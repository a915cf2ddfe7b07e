"""Packed small containers: how a hash, set or sorted set in Valkey's listpack (or intset) range
rests in the keyspace between commands.

A Python dict or set of five short bytes objects costs about three times Valkey's listpack (the
table, then a 48-byte object per element). At rest, such a value is instead one `Packed` object:
a bytes subclass holding the marshal of its elements (a flat tuple, or a dict for a hash) (C-speed both ways, 5 bytes
of framing per element) and of the key's access clock, which would otherwise cost an entry in
Db.access. A new small value is packed by the next settle(); the keyspace (keyspace.py)
unpacks a packed one into the real container when a command looks the key up, and packs it
again once nobody used it for IDLE_S seconds (Db.pack_idle), so commands only ever see
containers and a key in use is unpacked once, not once per command.

Only values that will be listpack-sized in any case are packed (at most PACK_MAX elements, an
O(n) unpack as listpack operations are O(n)); big ones stay containers.
"""
from __future__ import annotations

import marshal
from typing import Any

PACK_MAX = 128        # elements (pairs for a hash or zset) a packed value may hold
# Seconds a value a command unpacked stays a container after its last use before it is packed
# again: a key in use is not unpacked and packed over and over.
IDLE_S = 2
_dumps = marshal.dumps
_loads = marshal.loads


class Packed(bytes):
    """The packed form of a container (subclasses name the type and its encoding)."""
    __slots__ = ()


def pack(cls: type, clock: int | None, elements: Any) -> Packed:
    """A `cls` (a Packed subclass) holding the key's access clock (None: none recorded) and
    `elements` (a tuple, or an exact dict): a packed key's clock rests in it, not in Db.access."""
    return cls(_dumps((clock, elements)))


def unpack(packed: Packed) -> tuple[int | None, Any]:
    """(access clock, elements) of a packed value."""
    return _loads(packed)
