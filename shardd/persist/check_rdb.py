"""shardd-check-rdb FILE: read an RDB file through, verifying every value and the checksum.

Prints a summary (version, AUX fields, functions, keys per db and type/encoding) and exits 0,
or prints the first bad offset with the reason and exits 1 (2 for a file that cannot be
opened or bad usage).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import TextIO

from . import rdb


def check(path: str, out: TextIO = sys.stdout) -> int:
    """Check the file at path, reporting to out; the exit code."""
    # Type names and OBJECT ENCODING answers come from the data-type modules.
    from ..worker import t_hash, t_keys, t_list, t_set, t_zset  # noqa: F401
    try:
        stream = open(path, "rb")
    except OSError as exc:
        print(f"Cannot open {path}: {exc.strerror}", file=out)
        return 2
    keys: dict[int, Counter] = {}
    volatile: Counter = Counter()
    expired: Counter = Counter()
    now = int(time.time() * 1000)
    reader = None
    with stream:
        try:
            reader = rdb.load(stream)
            for db, _key, value, expire_ms in reader:
                kind = t_keys.type_name(value).decode()
                encoding = t_keys.OBJECT_ENCODINGS[type(value)](value).decode()
                keys.setdefault(db, Counter())[(kind, encoding)] += 1
                if expire_ms is not None:
                    volatile[db] += 1
                    if expire_ms <= now:
                        expired[db] += 1
        except rdb.RdbError as exc:
            print("--- RDB ERROR DETECTED ---", file=out)
            print(f"[offset {exc.offset}] {exc.reason}", file=out)
            if reader is not None:
                total = sum(sum(c.values()) for c in keys.values())
                print(f"[additional info] {total} keys read before the error", file=out)
            return 1
    print(f"RDB file {path}: version {reader.version}, {reader.size} bytes", file=out)
    for name, value in reader.aux.items():
        print(f"  aux {name.decode(errors='replace')} = {value.decode(errors='replace')!r}",
              file=out)
    if reader.functions:
        print(f"  {len(reader.functions)} function libraries", file=out)
    for db in sorted(keys):
        counts = keys[db]
        print(f"db {db}: {sum(counts.values())} keys, {volatile[db]} with an expiry "
              f"({expired[db]} already expired)", file=out)
        for (kind, encoding), n in sorted(counts.items()):
            print(f"  {kind} ({encoding}): {n}", file=out)
    if reader.empty_keys_skipped:
        print(f"{reader.empty_keys_skipped} empty keys skipped", file=out)
    if reader.checksum is None:
        print("no checksum (RDB version < 5)", file=out)
    elif reader.checksum == 0:
        print("no checksum (saved with rdbchecksum no)", file=out)
    else:
        print("checksum OK", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardd-check-rdb",
                                     description="Verify an RDB file and summarize its contents.")
    parser.add_argument("file", help="the RDB file to check")
    args = parser.parse_args(argv)
    return check(args.file)


if __name__ == "__main__":
    sys.exit(main())
