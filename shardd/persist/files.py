"""Where persistence files live in `dir`, and writing them so a crash never leaves a broken one.

Each shard writes `dump-<shard>.rdb` (from `dbfilename`: `dump.rdb` → `dump-0.rdb` …);
`shards.map` records, after a complete save, how many shards wrote files and their slot ranges.
"""
from __future__ import annotations

import os
from typing import BinaryIO, Callable

MAP_NAME = "shards.map"


def shard_file_name(dbfilename: str, shard: int) -> str:
    base, ext = os.path.splitext(dbfilename)
    return f"{base}-{shard}{ext}"


def write_atomically(path: str, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """Write to a temp file beside `path`, fsync it, rename it over `path`, fsync the dir."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f"temp-{os.getpid()}-{os.path.basename(path)}")
    try:
        with open(tmp, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_map(directory: str, dbfilename: str, ranges: list[tuple[int, int]]) -> None:
    lines = ["# shardd: the shards that wrote the files in this dir (shard first-slot last-slot file)",
             f"shards {len(ranges)}"]
    lines += [f"{i} {lo} {hi} {shard_file_name(dbfilename, i)}" for i, (lo, hi) in enumerate(ranges)]
    text = ("\n".join(lines) + "\n").encode()
    write_atomically(os.path.join(directory, MAP_NAME), lambda stream: stream.write(text))


def read_map(directory: str) -> list[tuple[int, int, str]] | None:
    """(first slot, last slot, file name) per shard of the last complete save, or None."""
    try:
        with open(os.path.join(directory, MAP_NAME)) as stream:
            text = stream.read()
    except FileNotFoundError:
        return None
    shards = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit():
            shards.append((int(parts[1]), int(parts[2]), parts[3]))
    return shards


def remove_stale_shard_files(directory: str, dbfilename: str, n_shards: int) -> None:
    """After a complete save by n shards: files of shards beyond n are from an older layout."""
    shard = n_shards
    while True:
        path = os.path.join(directory, shard_file_name(dbfilename, shard))
        if not os.path.exists(path):
            return
        os.unlink(path)
        shard += 1
