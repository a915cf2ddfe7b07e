"""Redis Cluster hash slots: CRC16-XMODEM of the key or its {hash tag}, modulo 16384."""
from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384
SLOT_MASK = SLOTS - 1


def keyslot(key: bytes) -> int:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc_hqx(key, 0) & SLOT_MASK


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """Contiguous, inclusive slot ranges, one per shard."""
    bounds = [SLOTS * i // shards for i in range(shards + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(shards)]


def slot_map(shards: int) -> bytes:
    """slot → shard, as a bytes object indexed by slot (shards ≤ 255)."""
    table = bytearray(SLOTS)
    for shard, (lo, hi) in enumerate(slot_ranges(shards)):
        table[lo:hi + 1] = bytes([shard]) * (hi - lo + 1)
    return bytes(table)
