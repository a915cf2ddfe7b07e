"""What a worker's data holds, in bytes, by its own account (design.md: used_memory is not RSS).

The figures are estimates of CPython's allocations, calibrated with tracemalloc on 64-bit
CPython 3.11 (see tests/test_memory.py and bench/README.md for their accuracy against RSS):

* a bytes object is 33 bytes of header plus its length, in pymalloc's 16-byte size classes
  (8 bytes of rounding on average);
* a key costs its bytes object plus one entry in its slot's dict and one in the db's dict of
  access clocks (a dict entry, with the table's spare room, is ~56 bytes on average);
* a TTL is an entry in the slot's dict of expiry times plus its int object;
* a small hash, set or sorted set at rest is packed (packed.py): its packed bytes object, as a
  string's value (its access clock is in it; the key's access-dict entry is still counted);
* a container is its own table (sys.getsizeof: the hash table, deque blocks or list array)
  plus its elements: exactly while it is small, else the average of the first `samples`
  elements times its length (Valkey's MEMORY USAGE samples the same way); a hash's field
  names that t_hash shares between hashes are not counted.

Measured against the workers' RSS growth (2 workers, ~40-100 MB of each kind of data), used
memory / RSS: strings of 10 B 1.03, 200 B 0.86, 4 KB 0.98; hashes of 20 fields 0.99; lists of 50
1.01; sets of 50 0.94; sorted sets of 50 0.93 (tests/test_memory.py checks plain strings).
"""
from __future__ import annotations

import sys
from collections import deque
from itertools import islice
from typing import Any

BYTES_OVERHEAD = 41          # PyBytesObject header (33) + average size-class rounding (8)
DICT_ENTRY = 56              # one entry of a dict, spare room of the table included
KEY_OVERHEAD = BYTES_OVERHEAD + 2 * DICT_ENTRY       # the key object, its slot-dict and access-dict entries
EXPIRE_OVERHEAD = DICT_ENTRY + 32                    # the expires entry and its int
FLOAT_SIZE = 24
TUPLE2_SIZE = 56             # a (score, member) pair of a sorted set's order
POINTER = 8
DEFAULT_SAMPLES = 32         # the worker's own accounting; MEMORY USAGE defaults to Valkey's 5
EXACT_UP_TO = 128            # containers this small are summed exactly (a C-speed map(len))


def string_size(value: bytes) -> int:
    return len(value) + BYTES_OVERHEAD


def _sampled(items, n: int, samples: int, per_item) -> int:
    """The elements' bytes: all of them, or `samples` of them scaled to n."""
    if samples <= 0 or n <= max(samples, EXACT_UP_TO):
        return per_item(items, n)
    part = list(islice(items, samples))
    return per_item(part, len(part)) * n // max(len(part), 1)


def _bytes_items(items, n: int) -> int:
    return sum(map(len, items)) + n * BYTES_OVERHEAD


def _shared_names() -> dict[bytes, bytes]:
    """t_hash's one copy of each short field name: a hash holding one does not pay for it."""
    from . import t_hash
    return t_hash._NAMES


def _pair_items(items, n: int) -> int:
    """Hash fields and values (both bytes); shared field names cost nothing here."""
    shared = _shared_names()
    if isinstance(items, dict):
        own = [k for k in items if shared.get(k) is not k]
        return sum(map(len, own)) + sum(map(len, items.values())) + (len(own) + n) * BYTES_OVERHEAD
    pairs = list(items)
    own = [k for k, _ in pairs if shared.get(k) is not k]
    return sum(map(len, own)) + sum(len(v) for _, v in pairs) + (len(own) + len(pairs)) * BYTES_OVERHEAD


def value_size(value: Any, samples: int = DEFAULT_SAMPLES) -> int:
    """The bytes a stored value holds (not its key)."""
    cls = value.__class__
    if cls is bytes:
        return len(value) + BYTES_OVERHEAD
    n = len(value) if hasattr(value, "__len__") else 0
    if hasattr(value, "order"):                 # a sorted set: member → score, plus its order
        order = value.order
        own = sys.getsizeof(value) + sys.getsizeof(order) + n * (FLOAT_SIZE + TUPLE2_SIZE + POINTER)
        return own + _sampled(iter(value), n, samples, _bytes_items)
    if isinstance(value, dict):
        if n <= max(samples, EXACT_UP_TO) or samples <= 0:
            return sys.getsizeof(value) + _pair_items(value, n)
        return sys.getsizeof(value) + _sampled(iter(value.items()), n, samples, _pair_items)
    if isinstance(value, (set, frozenset, deque, list, tuple)):
        return sys.getsizeof(value) + _sampled(iter(value), n, samples, _bytes_items)
    if isinstance(value, (bytearray, memoryview)):
        return sys.getsizeof(value)
    return sys.getsizeof(value)


def key_size(key: bytes) -> int:
    return len(key) + KEY_OVERHEAD
