"""shardd-check-aof [--fix] <file.manifest|file.aof>: like valkey-check-aof.

Given a manifest (Valkey 7's multi-part AOF, one shard's directory of a shardd AOF), it
checks the base (an RDB, or commands) and every incr file in order; given a single file, that
file (an old-style AOF, possibly with an RDB preamble). For each file it reports
`AOF analyzed: filename=…, size=…, ok_up_to=…, ok_up_to_line=…, diff=…` and the first bad
offset. `--fix` truncates a torn tail (a record cut short, an unfinished MULTI) after asking
for confirmation, and only in the last file, as Valkey's tool does. Exit code 0 when the AOF
is valid (or was fixed), 1 otherwise.
"""
from __future__ import annotations

import argparse
import mmap
import os
import sys
from typing import TextIO

from . import rdb
from .aof import Manifest, ManifestError, check_resp, map_file

CHECK_OK, CHECK_EMPTY, CHECK_TRUNCATED = 0, 1, 2


class Abort(Exception):
    """Stop with exit code 1 (the message was printed)."""


def ask(out: TextIO, question: str) -> bool:
    print(question, end="", file=out, flush=True)
    answer = sys.stdin.readline()
    return answer[:1].lower() == "y"


def check_file(name: str, path: str, last: bool, fix: bool, out: TextIO) -> int:
    """checkSingleAof: validate one file (its RDB part, then its commands)."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        print(f"Cannot open file {path}: {exc.strerror}, aborting...", file=out)
        raise Abort from None
    if size == 0:
        return CHECK_EMPTY
    rdb_end = 0
    with open(path, "rb") as stream:
        if stream.read(5) == b"REDIS":
            stream.seek(0)
            try:
                reader = rdb.load(stream)
                for _ in reader:
                    pass
                rdb_end = reader.size
            except rdb.RdbError as exc:
                print("--- RDB ERROR DETECTED ---", file=out)
                print(f"[offset {exc.offset}] {exc.reason}", file=out)
                print("RDB preamble of AOF file is not sane, aborting.", file=out)
                raise Abort from None
            print("RDB preamble is OK, proceeding with AOF tail...", file=out)
    view = map_file(path)
    try:
        check = check_resp(view, rdb_end, size)
        line = view[rdb_end:check.ok_up_to].count(b"\n") + 1
    finally:
        if isinstance(view, mmap.mmap):
            view.close()
    if check.error:
        print(check.error, file=out)
    diff = size - check.ok_up_to
    print(f"AOF analyzed: filename={name}, size={size}, ok_up_to={check.ok_up_to}, "
          f"ok_up_to_line={line}, diff={diff}", file=out)
    if diff <= 0:
        return CHECK_OK
    if not fix:
        print(f"AOF {name} is not valid. Use the --fix option to try fixing it.", file=out)
        raise Abort
    if not last:
        print(f"Failed to truncate AOF {name} because it is not the last file", file=out)
        raise Abort
    print(f"This will shrink the AOF {name} from {size} bytes, with {diff} bytes, to {check.ok_up_to} bytes",
          file=out)
    if not ask(out, "Continue? [y/N]: "):
        print("Aborting...", file=out)
        raise Abort
    try:
        os.truncate(path, check.ok_up_to)
    except OSError:
        print(f"Failed to truncate AOF {name}", file=out)
        raise Abort from None
    return CHECK_TRUNCATED


def report(result: int, name: str, kind: str, out: TextIO) -> None:
    if result == CHECK_OK:
        print(f"{kind} {name} is valid", file=out)
    elif result == CHECK_EMPTY:
        print(f"{kind} {name} is empty", file=out)
    elif result == CHECK_TRUNCATED:
        print(f"Successfully truncated AOF {name}", file=out)


def is_manifest(path: str) -> bool:
    """fileIsManifest: its first line that is not a comment starts with `file`."""
    try:
        with open(path, "rb") as stream:
            for raw in stream:
                if raw.startswith(b"#"):
                    continue
                return raw.startswith(b"file")
    except OSError:
        return False
    return False


def check_multi_part(manifest_path: str, fix: bool, out: TextIO) -> None:
    print("Start checking Multi Part AOF", file=out)
    try:
        manifest = Manifest.read(manifest_path)
    except (ManifestError, OSError) as exc:
        print("*** FATAL AOF MANIFEST FILE ERROR ***", file=out)
        print(str(exc), file=out)
        raise Abort from None
    directory = os.path.dirname(manifest_path) or "."
    items = manifest.files()
    for n, item in enumerate(items):
        path = os.path.join(directory, item.name)
        last = n == len(items) - 1
        if item.kind == "b":
            with open(path, "rb") as stream:
                preamble = stream.read(5) == b"REDIS"
            print(f"Start to check BASE AOF ({'RDB' if preamble else 'RESP'} format).", file=out)
            report(check_file(item.name, path, last, fix, out), item.name, "BASE AOF", out)
        else:
            if n == (1 if manifest.base else 0):
                print("Start to check INCR files.", file=out)
            report(check_file(item.name, path, last, fix, out), item.name, "INCR AOF", out)
    print("All AOF files and manifest are valid", file=out)


def check(path: str, fix: bool = False, out: TextIO = sys.stdout) -> int:
    """Check (and with fix, repair) the AOF at path; the exit code."""
    if not os.path.exists(path):
        print(f"Cannot open file {path}: No such file or directory", file=out)
        return 1
    try:
        if is_manifest(path):
            check_multi_part(path, fix, out)
        else:
            print("Start checking Old-Style AOF", file=out)
            report(check_file(path, path, True, fix, out), path, "AOF", out)
    except Abort:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardd-check-aof",
                                     description="Verify an append-only file (a manifest of a multi-part "
                                                 "AOF, or a single file); --fix truncates a torn tail.")
    parser.add_argument("--fix", action="store_true", help="truncate the last file at its first bad offset")
    parser.add_argument("file", help="<file.manifest|file.aof>")
    args = parser.parse_args(argv)
    return check(args.file, args.fix)


if __name__ == "__main__":
    sys.exit(main())
