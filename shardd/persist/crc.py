"""CRC-64/Jones, Redis's `crc64` (RDB files and DUMP payloads).

`crc64(data, crc=0)` continues a checksum over more data. Reflected, polynomial
0xad93d23594c935a9, initial value 0, no final xor. crcmod's C extension computes it; a
table-driven Python version stands in if crcmod is missing.
"""
from __future__ import annotations

from functools import lru_cache

POLY = 0xad93d23594c935a9


@lru_cache(maxsize=1)
def _table() -> tuple[int, ...]:
    reflected = int(f"{POLY:064b}"[::-1], 2)
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ reflected if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def crc64_python(data: bytes, crc: int = 0) -> int:
    """The table-driven fallback (slow: about 10 MB/s)."""
    table = _table()
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


try:
    import crcmod

    # crcmod wants the polynomial with its x^64 term.
    crc64 = crcmod.mkCrcFun((1 << 64) | POLY, initCrc=0, rev=True, xorOut=0)
except ImportError:                            # pragma: no cover - crcmod is a dependency
    crc64 = crc64_python

assert crc64(b"123456789") == 0xe9c6d914c4b8d9ca   # Redis's own test vector (crc64.c)
