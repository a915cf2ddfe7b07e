"""A worker's append-only file, in Valkey 7's multi-part layout.

Each worker keeps its own AOF in `<dir>/<appenddirname>/<shard>/`: a base (an RDB file,
`<appendfilename>.<seq>.base.rdb`, or commands, `.base.aof`, per aof-use-rdb-preamble), incr
files of RESP commands (`<appendfilename>.<seq>.incr.aof`) and `<appendfilename>.manifest`
naming them (`file <name> seq <n> type b|i|h`, as Valkey writes it; a `#` comment line
records the shard layout).

What is logged: every command whose call changed the worker's data (`Db.changes` rose beyond
what lazy expiry accounted for), as the worker received it, with SELECT when the db changes;
commands whose replay would not give the same result are logged as their effect (relative
expiries as absolute times, SPOP as SREM, served blocking pops as plain pops, float
increments and cross-shard write-backs as the key's final state). Expired keys are logged as
DEL. A transaction's frame (ATOMIC, or one frame of a coordinator's hold) with more than one
record is wrapped in MULTI … EXEC.

When records reach the disk (appendfsync): the records of a turn are written (and with
`always` fsynced) before any reply of that turn leaves the worker: while records wait, the
reply rings' writers hold replies back (GatedWriter), and the first flush of replies writes
the records first. `everysec` fsyncs from the worker's timer in a background thread, at most
once a second; `no` leaves flushing to the OS.

BGREWRITEAOF forks: the child writes a new base while the parent appends to a new incr file;
when the child is done the manifest is replaced atomically and the old files go. Turning
appendonly on at runtime does the same, the new incr being a temp file until the base is
written (Valkey's AOF_WAIT_REWRITE).

Loading: base then incr files in manifest order, each command run through its worker handler;
a torn last record (or an unfinished MULTI at the tail) of the last file is cut off when
aof-load-truncated is yes, else the start stops.

Cross-shard operations are logged as units (`#shardd-unit` notes, see "cross-shard units"):
a start drops a unit at the tail of a log whose parts did not all reach the other shards'
logs. Started with another worker count, the old layout's AOF is re-partitioned by slot (see
"another worker count").
"""
from __future__ import annotations

import ctypes
import mmap
import os
import shlex
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

import hiredis

from .. import commands, errors, log, resp
from ..resp import CRLF, command, command_into
from ..ring import FrameWriter
from ..slots import keyslot
from ..worker import keyspace
from . import files, rdb

OFF, ON, WAIT_REWRITE = "off", "on", "wait_rewrite"
READ_CHUNK = 1 << 20
ITEMS_PER_COMMAND = 64          # AOF_REWRITE_ITEMS_PER_CMD: elements per command in a RESP base
REWRITE_RETRY_DELAY = 5.0       # after a failed rewrite, as Valkey waits before retrying
FSYNC_INTERVAL = 1.0
_PR_SET_PDEATHSIG = 1

ALREADY_REWRITING = "ERR Background append only file rewriting already in progress"
REWRITE_STARTED = "Background append only file rewriting started"
REWRITE_SCHEDULED = "Background append only file rewriting scheduled"

# -- RESP records ---------------------------------------------------------------------------

MULTI_RECORD = command([b"MULTI"])
EXEC_RECORD = command([b"EXEC"])
_SELECT_RECORDS = [command([b"SELECT", b"%d" % i]) for i in range(64)]


def select_record(index: int) -> bytes:
    return _SELECT_RECORDS[index] if index < 64 else command([b"SELECT", b"%d" % index])


class AofFormatError(Exception):
    """A record that is not a command (truncated=False), or a file that ends mid-record."""

    def __init__(self, offset: int, reason: str, truncated: bool = False) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.truncated = truncated


def _number(buf, start: int, end: int, what: str) -> int:
    text = bytes(buf[start:end])
    try:
        return int(text)
    except ValueError:
        raise AofFormatError(start, f"Invalid {what}: {text[:32]!r}") from None


def scan_records(buf, pos: int = 0, end: int | None = None,
                 notes: bool = False) -> Iterator[tuple[list[bytes] | None, int, int]]:
    """Each command of an AOF's RESP part as (argv, start offset, end offset), as Valkey's
    loader reads them (annotation lines `#…` are skipped; with `notes`, each is yielded with
    None for argv). Raises AofFormatError at the first record that is malformed, or truncated
    (the file ends inside it)."""
    if end is None:
        end = len(buf)
    while pos < end:
        start = pos
        first = buf[pos]
        if first == 0x23:                       # '#': an annotation line (#TS:…)
            newline = buf.find(b"\n", pos, end)
            if newline < 0:
                raise AofFormatError(start, "Truncated annotation", truncated=True)
            pos = newline + 1
            if notes:
                yield None, start, pos
            continue
        if first != 0x2A:                       # '*'
            raise AofFormatError(start, f"Expected prefix '*', got: '{chr(first)}'")
        line_end = buf.find(b"\r\n", pos, end)
        if line_end < 0:
            raise AofFormatError(start, "Reached EOF", truncated=True)
        argc = _number(buf, pos + 1, line_end, "multibulk length")
        if argc < 1:
            raise AofFormatError(start, f"Invalid multibulk length {argc}")
        pos = line_end + 2
        argv = []
        for _ in range(argc):
            if pos >= end:
                raise AofFormatError(start, "Reached EOF", truncated=True)
            if buf[pos] != 0x24:                # '$'
                raise AofFormatError(pos, f"Expected prefix '$', got: '{chr(buf[pos])}'")
            line_end = buf.find(b"\r\n", pos, end)
            if line_end < 0:
                raise AofFormatError(start, "Reached EOF", truncated=True)
            size = _number(buf, pos + 1, line_end, "bulk length")
            if size < 0:
                raise AofFormatError(pos, f"Expected to read string of {size} bytes, which is not in the suitable range")
            data_end = line_end + 2 + size
            if data_end + 2 > end:
                raise AofFormatError(start, "Reached EOF", truncated=True)
            if buf[data_end:data_end + 2] != CRLF:
                raise AofFormatError(data_end, f"Expected \\r\\n, got: {bytes(buf[data_end:data_end + 2]).hex()}")
            argv.append(bytes(buf[line_end + 2:data_end]))
            pos = data_end + 2
        yield argv, start, pos


@dataclass
class TailCheck:
    """Where a RESP part stops being valid: `ok_up_to` (the end of the last good command,
    or the start of an unfinished MULTI), why, and whether only a tail is missing."""
    ok_up_to: int
    size: int
    error: str = ""
    truncated: bool = False      # the file ends mid-record or mid-MULTI (a torn tail)

    @property
    def valid(self) -> bool:
        return self.ok_up_to == self.size and not self.error


def check_resp(buf, start: int, size: int) -> TailCheck:
    """Validate buf[start:size] as commands, MULTI/EXEC pairing included (valkey-check-aof).
    A cross-shard unit's annotation belongs to the MULTI it announces: a torn group is cut
    back to before its annotation."""
    ok = start
    multi_start = -1
    group_note = -1          # the start of a unit annotation whose MULTI … EXEC follows
    try:
        for argv, rec_start, rec_end in scan_records(buf, start, size, notes=True):
            if argv is None:
                if multi_start < 0:
                    note = parse_unit_note(buf[rec_start:rec_end])
                    if note is not None and note.grouped:
                        group_note = rec_start
                    elif group_note < 0:
                        ok = rec_end
                continue
            name = argv[0].lower()
            if name == b"multi":
                if multi_start >= 0:
                    return TailCheck(multi_start, size, f"0x{rec_start:16x}: Unexpected MULTI")
                multi_start = group_note if group_note >= 0 else rec_start
                group_note = -1
            elif name == b"exec":
                if multi_start < 0:
                    return TailCheck(ok, size, f"0x{rec_start:16x}: Unexpected EXEC")
                multi_start = -1
            if multi_start < 0:
                ok = rec_end
                group_note = -1
    except AofFormatError as exc:
        prefix = "Reached EOF" if exc.truncated else exc.reason
        return TailCheck(multi_start if multi_start >= 0 else ok, size,
                         f"0x{exc.offset:16x}: {prefix}", truncated=exc.truncated)
    if multi_start >= 0:
        return TailCheck(multi_start, size, f"0x{size:16x}: Reached EOF before reading EXEC for MULTI",
                         truncated=True)
    if group_note >= 0:
        return TailCheck(group_note, size, f"0x{size:16x}: Reached EOF before reading the MULTI of a "
                                           "cross-shard unit", truncated=True)
    return TailCheck(ok, size)


def map_file(path: str):
    """A read-only view of a file's bytes (b"" for an empty file)."""
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)


def rdb_part_end(path: str, config: Any = None) -> int:
    """The length of the RDB at the start of an AOF file (0 when it has none); RdbError
    when that RDB is broken."""
    with open(path, "rb") as stream:
        if stream.read(5) != b"REDIS":
            return 0
        stream.seek(0)
        reader = rdb.load(stream, config)
        for _ in reader:
            pass
        return reader.size


# -- cross-shard units -------------------------------------------------------------------------
#
# A coordinated operation that writes on several shards is a unit: each involved worker logs
# its part as `#shardd-unit <id> <kind> <participants> <grouped>` followed (grouped 1) by
# the part's records as one MULTI … EXEC. Kind `c` is the unit's commit: for a one-round
# operation its records, for one of several rounds an empty note after the last round (kind
# `p` marks the rounds). The coordinator holds the shards until every part is written, then
# RELEASE makes each worker log `#shardd-settled`: what comes before is whole everywhere. At
# load, a unit after the last settled note of a shard's log is kept only when every shard its
# commit names holds that commit whole. Redis and Valkey skip `#` lines at a record boundary
# (lines under 1024 bytes), so a shard's AOF stays readable by them.

UNIT_NOTE = b"#shardd-unit "
SETTLED_NOTE = b"#shardd-settled\r\n"
COMMIT, ROUND = b"c", b"p"
MANIFEST_LINE_MAX = 900          # Valkey reads manifest lines of up to 1024 bytes


@dataclass
class UnitNote:
    uid: bytes
    kind: bytes                    # COMMIT or ROUND
    participants: tuple[int, ...]
    grouped: bool                  # a MULTI … EXEC with the part's records follows


def unit_note(uid: bytes, kind: bytes, participants: bytes, grouped: bool) -> bytes:
    return b"#shardd-unit %s %s %s %d\r\n" % (uid, kind, participants, 1 if grouped else 0)


def parse_unit_note(line) -> UnitNote | None:
    line = bytes(line)
    if not line.startswith(UNIT_NOTE):
        return None
    fields = line[len(UNIT_NOTE):].split()
    if len(fields) != 4 or fields[1] not in (COMMIT, ROUND):
        return None
    try:
        participants = tuple(int(x) for x in fields[2].split(b","))
    except ValueError:
        return None
    return UnitNote(fields[0], fields[1], participants, fields[3] == b"1")


def walk_resp(view, start: int, end: int, sink) -> None:
    """Every command and annotation of view[start:end], in order, at hiredis speed:
    sink.command(argv) per command (looked up again after each annotation, so a sink may
    switch it), sink.note(line) per annotation line. An annotation is a '#' at a record
    boundary: the '#'s after a newline are candidates, and one is at a boundary when the
    reader holds nothing unparsed. Raises SlowPath on a malformed or torn record (or a sink
    error other than ReplayError)."""
    reader = hiredis.Reader()
    pos = start
    while pos < end and view[pos] == 0x23:
        newline = view.find(b"\n", pos, end)
        if newline < 0:
            raise SlowPath
        sink.note(bytes(view[pos:newline + 1]))
        pos = newline + 1
    fed = search = pos
    run = sink.command
    while True:
        candidate = view.find(b"\n#", search, end)
        stop = end if candidate < 0 else candidate + 1
        while fed < stop:
            size = min(READ_CHUNK, stop - fed)
            reader.feed(view, fed, size)
            fed += size
            try:
                while True:
                    argv = reader.gets()
                    if argv is False:
                        break
                    if type(argv) is not list or not argv:
                        raise SlowPath
                    run(argv)
            except (ReplayError, SlowPath):
                raise
            except Exception:
                raise SlowPath from None
        if candidate < 0:
            break
        if reader.has_data():           # inside a record: the '#' is data
            search = stop
            continue
        newline = view.find(b"\n", stop, end)
        if newline < 0:
            raise SlowPath
        sink.note(bytes(view[stop:newline + 1]))
        run = sink.command
        fed = newline + 1
        search = newline
    if reader.has_data():
        raise SlowPath


@dataclass
class UnitPart:
    """What one shard's log holds of a unit: the participants its commit names (None: no
    commit note) and whether that commit is whole."""
    commit: tuple[int, ...] | None = None
    committed: bool = False


class TailScan:
    """A walk_resp sink: the units after the last settled note of a log."""

    def __init__(self) -> None:
        self.units: dict[bytes, UnitPart] = {}
        self.open: UnitNote | None = None      # a unit note whose MULTI … EXEC is being read

    def note(self, line: bytes) -> None:
        if line.startswith(SETTLED_NOTE[:-2]):
            self.units.clear()
            self.open = None
            return
        note = parse_unit_note(line)
        if note is None:
            return
        part = self.units.setdefault(note.uid, UnitPart())
        if note.kind == COMMIT:
            part.commit = note.participants
            part.committed = not note.grouped
        self.open = note if note.grouped else None

    def command(self, argv: list[bytes]) -> None:
        if self.open is not None and argv[0].lower() == b"exec":
            if self.open.kind == COMMIT:
                self.units[self.open.uid].committed = True
            self.open = None


def group_whole(view, pos: int) -> bool:
    """A MULTI … EXEC starts at pos and ends before the file does."""
    try:
        for argv, _, _ in scan_records(view, pos):
            if argv[0].lower() == b"exec":
                return True
    except AofFormatError:
        return False
    return False


class ShardLogs:
    """The AOF of every shard of one layout (shard → directory, manifest), for deciding which
    units of a shard's tail are whole on every shard they involve. Every worker decides from
    the same files, so all keep or all drop a unit."""

    def __init__(self, logs: dict[int, tuple[str, "Manifest"]]) -> None:
        self.logs = logs
        self.found: dict[tuple[int, bytes], list[tuple[UnitNote, bool]]] = {}

    def tail(self, shard: int) -> dict[bytes, UnitPart]:
        directory, manifest = self.logs[shard]
        if not manifest.incrs:
            return {}
        path = os.path.join(directory, manifest.incrs[-1].name)
        try:
            view = map_file(path)
        except FileNotFoundError:
            return {}
        try:
            last_unit = view.rfind(b"\n" + UNIT_NOTE)
            if last_unit < 0:
                if view[:len(UNIT_NOTE)] != UNIT_NOTE:
                    return {}
                last_unit = 0
            if view.rfind(b"\n" + SETTLED_NOTE) > last_unit:
                return {}
            scan = TailScan()
            start = rdb_part_end(path) if view[:5] == b"REDIS" else 0
            try:
                walk_resp(view, start, len(view), scan)
            except SlowPath:
                pass                    # a torn or bad tail: what came before stands
            if scan.open is not None and scan.open.kind == COMMIT:
                scan.units[scan.open.uid].committed = False
            return scan.units
        finally:
            if isinstance(view, mmap.mmap):
                view.close()

    def holds(self, shard: int, uid: bytes) -> list[tuple[UnitNote, bool]]:
        """The notes of a unit in a shard's incr files, each with whether its part is whole
        (none when that shard dropped the unit at an earlier start)."""
        key = (shard, uid)
        if key in self.found:
            return self.found[key]
        out: list[tuple[UnitNote, bool]] = []
        directory, manifest = self.logs[shard]
        if uid not in manifest.dropped:
            needle = UNIT_NOTE + uid + b" "
            for item in reversed(manifest.incrs):
                try:
                    view = map_file(os.path.join(directory, item.name))
                except FileNotFoundError:
                    continue
                try:
                    pos = view.find(needle)
                    while pos >= 0:
                        newline = view.find(b"\n", pos)
                        if newline >= 0 and (pos == 0 or view[pos - 1] == 0x0A):
                            note = parse_unit_note(view[pos:newline + 1])
                            if note is not None:
                                out.append((note, not note.grouped or group_whole(view, newline + 1)))
                        pos = view.find(needle, pos + 1)
                finally:
                    if isinstance(view, mmap.mmap):
                        view.close()
        self.found[key] = out
        return out

    def drops(self, shard: int) -> tuple[set[bytes], bool]:
        """The units a load of a shard's log drops (those of its tail that are not whole, and
        those an earlier start dropped), and whether its tail had units at all."""
        tail = self.tail(shard)
        dropped = self.logs[shard][1].dropped
        out = {uid for uid, part in tail.items() if uid not in dropped and not self.whole(shard, uid, part)}
        return out | dropped, bool(tail)

    def whole(self, shard: int, uid: bytes, part: UnitPart) -> bool:
        commit = part.commit
        if commit is None:
            for other in self.logs:
                if other != shard:
                    commit = next((n.participants for n, _ in self.holds(other, uid) if n.kind == COMMIT), None)
                    if commit is not None:
                        break
        if commit is None:
            return False
        for other in commit:
            if other == shard:
                if not part.committed:
                    return False
            elif other not in self.logs or not any(n.kind == COMMIT and whole for n, whole in self.holds(other, uid)):
                return False
        return True


# -- the manifest -----------------------------------------------------------------------------

class ManifestError(Exception):
    pass


@dataclass
class AofFile:
    name: str
    seq: int
    kind: str           # "b" base, "i" incr, "h" history


@dataclass
class Manifest:
    base: AofFile | None = None
    incrs: list[AofFile] = field(default_factory=list)
    history: list[AofFile] = field(default_factory=list)
    base_seq: int = 0
    incr_seq: int = 0
    layout: str | None = None     # our comment line: which shard of how many wrote it
    # units of the incr files dropped at a start (their other parts did not reach the other
    # shards' logs): dropped again by every later load of these files
    dropped: set[bytes] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str) -> "Manifest":
        """aofLoadManifestFromFile's rules: base at most once, incr seqs increasing."""
        manifest = cls()
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise ManifestError("Found an empty AOF manifest")
        for number, raw in enumerate(lines, 1):
            if raw.startswith("#"):
                if raw.startswith("# shardd-layout "):
                    manifest.layout = raw[len("# shardd-layout "):].strip()
                elif raw.startswith("# shardd-dropped "):
                    manifest.dropped.update(x.encode() for x in raw[len("# shardd-dropped "):].split())
                continue
            line = raw.strip(" \t\r\n")
            try:
                parts = shlex.split(line) if line else []
            except ValueError:
                parts = []
            if len(parts) < 6 or len(parts) % 2:
                raise ManifestError(f"Invalid AOF manifest file format (line {number}: {raw!r})")
            entry: dict[str, str] = {}
            for i in range(0, len(parts), 2):
                entry[parts[i].lower()] = parts[i + 1]
            name, seq, kind = entry.get("file"), entry.get("seq"), entry.get("type", "")[:1]
            try:
                seq_n = int(seq or 0)
            except ValueError:
                seq_n = 0
            if not name or not seq_n or not kind:
                raise ManifestError(f"Invalid AOF manifest file format (line {number}: {raw!r})")
            if os.path.basename(name) != name:
                raise ManifestError(f"File can't be a path, just a filename (line {number}: {raw!r})")
            item = AofFile(name, seq_n, kind)
            if kind == "b":
                if manifest.base is not None:
                    raise ManifestError("Found duplicate base file information")
                manifest.base = item
                manifest.base_seq = seq_n
            elif kind == "h":
                manifest.history.append(item)
            elif kind == "i":
                if manifest.incrs and seq_n <= manifest.incrs[-1].seq:
                    raise ManifestError("Found a non-monotonic sequence number")
                manifest.incrs.append(item)
                manifest.incr_seq = seq_n
            else:
                raise ManifestError("Unknown AOF file type")
        return manifest

    @classmethod
    def read(cls, path: str) -> "Manifest":
        with open(path, "rb") as stream:
            return cls.parse(stream.read().decode("utf-8", "surrogateescape"))

    def render(self) -> bytes:
        lines = []
        if self.layout:
            lines.append(f"# shardd-layout {self.layout}")
        line = ""
        for uid in sorted(self.dropped):
            if len(line) + len(uid) > MANIFEST_LINE_MAX:
                lines.append(line)
                line = ""
            line = (line or "# shardd-dropped") + " " + uid.decode()
        if line:
            lines.append(line)
        for item in ([self.base] if self.base else []) + self.history + self.incrs:
            name = item.name
            if any(c in name for c in " \t\"'\\") or not name.isprintable():
                name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"file {name} seq {item.seq} type {item.kind}")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    def files(self) -> list[AofFile]:
        """What loading reads, in order: the base, then the incr files."""
        return ([self.base] if self.base else []) + self.incrs

    def copy(self) -> "Manifest":
        return Manifest(self.base, list(self.incrs), list(self.history), self.base_seq, self.incr_seq, self.layout,
                        set(self.dropped))


def manifest_name(appendfilename: str) -> str:
    return f"{appendfilename}.manifest"


def shard_dir(config: dict, shard: int) -> str:
    return os.path.join(config["dir"], config["appenddirname"], str(shard))


def layout_of(shard: int, shards: int, slot_range: tuple[int, int]) -> str:
    return f"shard={shard} shards={shards} slots={slot_range[0]}-{slot_range[1]}"


def layout_shards(layout: str | None) -> int | None:
    """The shard count a manifest's layout line names."""
    for part in (layout or "").split():
        if part.startswith("shards=") and part[7:].isdigit():
            return int(part[7:])
    return None


# -- another worker count ---------------------------------------------------------------------------
#
# Started with a worker count other than the one that wrote the AOF, the supervisor moves
# `appenddirname` aside as `<appenddirname>.repartition` (one rename) before it forks the
# workers. Each worker loads its slots out of every old shard's AOF there and writes its own
# new AOF in `appenddirname/<shard>/`; it serves once every worker's new manifest is written,
# and the first worker to see all of them renames the old directory to `….repartition-done`
# (the commit) and removes it. A crash before the commit leaves the old layout whole (a new
# start loads it again, into whatever worker count it has); after it, the new one.

REPARTITION_SUFFIX = ".repartition"
REPARTITION_DONE_SUFFIX = ".repartition-done"


def aof_root(config: dict) -> str:
    return os.path.join(config["dir"], config["appenddirname"])


def repartition_source(config: dict) -> str | None:
    """The old layout's AOF being re-partitioned, when there is one."""
    source = aof_root(config) + REPARTITION_SUFFIX
    return source if os.path.isdir(source) else None


def old_layout_logs(root: str, appendfilename: str) -> dict[int, tuple[str, Manifest]]:
    """The shard AOFs under root that belong to one layout (that of shard 0, else of the
    lowest shard there), by shard."""
    found: dict[int, tuple[str, Manifest]] = {}
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return {}
    for name in names:
        path = os.path.join(root, name, manifest_name(appendfilename))
        if name.isdigit() and os.path.exists(path):
            found[int(name)] = (os.path.join(root, name), Manifest.read(path))
    if not found:
        return {}
    shards = layout_shards(found[min(found)][1].layout)
    if shards is None:
        return found
    return {shard: log_ for shard, log_ in found.items()
            if shard < shards and layout_shards(log_[1].layout) == shards}


def layout_count(root: str, appendfilename: str) -> int | None:
    """How many shards wrote the AOF under root (None: no shard AOF, or no layout line)."""
    logs = old_layout_logs(root, appendfilename)
    return layout_shards(logs[min(logs)][1].layout) if logs else None


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_layout(config: dict, shards: int) -> None:
    """Run by the supervisor before it forks the workers: when appendonly is yes and the AOF
    in appenddirname was written by another worker count, move it aside for the workers to
    re-partition; finish what an interrupted re-partition left (undo it when the count is
    the old one again)."""
    if not config.get("appendonly"):
        return
    root = aof_root(config)
    source, done = root + REPARTITION_SUFFIX, root + REPARTITION_DONE_SUFFIX
    if os.path.isdir(done):
        shutil.rmtree(done)
    name = config["appendfilename"]
    if os.path.isdir(source):
        old = layout_count(source, name)
        shutil.rmtree(root, ignore_errors=True)       # the new layout's unfinished files
        if old == shards:
            os.rename(source, root)
            fsync_dir(config["dir"])
            log.log("warning", f"An interrupted re-partition of the AOF is undone: {shards} workers again, "
                               f"the AOF of {shards} shards is back in {root}")
            return
        os.makedirs(root)
        fsync_dir(config["dir"])
        log.log("warning", f"Resuming the interrupted re-partition of the AOF of {old} shards ({source}) "
                           f"into {shards} shards")
        return
    old = layout_count(root, name)
    if old is None or old == shards:
        return
    os.rename(root, source)
    fsync_dir(config["dir"])
    os.makedirs(root)
    fsync_dir(config["dir"])
    log.log("notice", f"The AOF was written by {old} shards and the server starts {shards} workers: "
                      f"re-partitioning it ({root} moved to {source} until every worker has written its new AOF)")


def commit_repartition(config: dict) -> None:
    """Every worker wrote its new AOF: the old layout's files go (the rename is the commit)."""
    root = aof_root(config)
    try:
        os.rename(root + REPARTITION_SUFFIX, root + REPARTITION_DONE_SUFFIX)
    except FileNotFoundError:
        return                           # another worker committed
    fsync_dir(config["dir"])
    log.log("notice", "Re-partition of the AOF complete: every worker wrote its new AOF; the old files are removed")
    shutil.rmtree(root + REPARTITION_DONE_SUFFIX, ignore_errors=True)


# -- replaying commands -----------------------------------------------------------------------

class ReplayError(Exception):
    pass


class Replay:
    """Runs AOF commands on a worker's dbs through their worker handlers (a fake client:
    SELECT, MULTI/EXEC queueing, SWAPDB done here; error replies ignored, as Valkey does)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.dbs = ctx.dbs
        ctx.db = ctx.dbs[0]
        table = {**commands.BY_NAME, **commands.INTERNAL}
        self.lookup = table.get
        self.queue: list[list[bytes]] | None = None     # inside MULTI: the queued commands
        self.commands = 0
        self.drop: set[bytes] = set()       # cross-shard units whose records are skipped
        self.dropping = False
        self.command = self.run             # what runs the next command (walk_resp's sink)

    def reset_client(self) -> None:
        """Each file is read by a new fake client: db 0, no MULTI."""
        self.ctx.db = self.dbs[0]
        self.queue = None
        self.dropping = False
        self.command = self.run

    def note(self, line: bytes) -> None:
        """An annotation: a unit to drop makes the MULTI … EXEC after it skipped."""
        if not self.drop:
            return
        note = parse_unit_note(line)
        if note is not None and note.grouped and note.uid in self.drop:
            self.dropping = True
            self.command = self.skip_group

    def skip_group(self, argv: list[bytes]) -> None:
        """A dropped unit's records: only SELECT runs (later records rely on it)."""
        if not self.dropping:
            self.run(argv)
            return
        name = argv[0].lower()
        if name == b"exec":
            self.dropping = False
            self.command = self.run
        elif name == b"select":
            self.run(argv)

    def spec_of(self, argv: list[bytes]):
        name = argv[0]
        spec = self.lookup(name)
        if spec is None:
            spec = self.lookup(name.lower())
            if spec is None:
                raise ReplayError(f"Unknown command '{name.decode('utf-8', 'replace')}'")
        return spec

    def run(self, argv: list[bytes]) -> None:
        spec = self.spec_of(argv)
        queue = self.queue
        if queue is not None:
            if spec.name == "exec":
                self.queue = None
                for queued in queue:
                    self.execute(self.spec_of(queued), queued)
            elif spec.name != "multi":      # a nested MULTI is an error reply: ignored
                queue.append(argv)
            return
        if spec.worker_handler is not None and not spec.subcommands:
            self.execute(spec, argv)
        elif spec.name == "multi":
            self.queue = []
        elif spec.name != "exec":
            self.execute(spec, argv)

    def execute(self, spec, argv: list[bytes]) -> None:
        ctx = self.ctx
        self.commands += 1
        handler = spec.worker_handler
        if spec.subcommands:
            spec = commands.lookup_argv(argv)
            handler = spec.worker_handler if spec is not None else None
        if handler is None:
            self.special(spec, argv)
            return
        first = spec.first_key
        if 0 < first < len(argv) and "movablekeys" not in spec.flags:
            ctx.slot = keyslot(argv[first])
        else:
            keys = spec.keys(argv) if spec.has_keys() else ()
            ctx.slot = keyslot(keys[0]) if keys else 0
        try:
            handler(ctx, argv)
        except errors.CommandError:
            pass

    def special(self, spec, argv: list[bytes]) -> None:
        name = spec.name if spec is not None else ""
        ctx = self.ctx
        if name == "select" and len(argv) == 2:
            try:
                index = int(argv[1])
            except ValueError:
                index = -1
            if not 0 <= index < len(self.dbs):
                raise ReplayError(f"SELECT {argv[1]!r}: no such db (databases {len(self.dbs)})")
            ctx.db = self.dbs[index]
        elif name == "swapdb" and len(argv) == 3:
            from ..worker.coordination import swapdb
            swapdb(ctx, [b"__swapdb", argv[1], argv[2]])
        elif name in ("multi", "exec", "discard", "ping", "echo"):
            pass
        else:
            raise ReplayError(f"Unknown command '{argv[0].decode('utf-8', 'replace')}'")


class SlowPath(Exception):
    """The fast loader met something it does not settle itself (a torn tail, an unfinished
    MULTI, a malformed record, annotations): load again record by record."""


def replay_fast(replay: Replay, view, start: int) -> None:
    """Run every command of a file's RESP part (from start, after any RDB part) through
    hiredis; SlowPath when the file does not end at a record and transaction boundary."""
    walk_resp(view, start, len(view), replay)
    if replay.queue is not None or replay.dropping:
        raise SlowPath


# -- what gets logged ---------------------------------------------------------------------------

def _parse_reply(reply: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(reply)
    value = reader.gets()
    return None if isinstance(value, hiredis.ReplyError) or value is False else value


def key_state(aof: "Aof", db, key: bytes) -> list[bytes]:
    """A command giving key its current value and expiry (DEL when it has none)."""
    slot = keyslot(key)
    values = db.data.get(slot)
    value = values.get(key) if values is not None else None
    if value is None:
        return [b"DEL", key]
    when = db.get_expire(key, slot)
    if type(value) is bytes:
        return [b"SET", key, value] if when is None else [b"SET", key, value, b"PXAT", b"%d" % when]
    payload = rdb.dump_value(keyspace.unpacked(value), aof.config.get("rdbcompression", True),
                             aof.config.get("list-max-listpack-size", -2))
    return [b"RESTORE", key, b"%d" % (when or 0), payload, b"REPLACE", b"ABSTTL"]


def ttl_state(db, key: bytes) -> list[bytes]:
    """A command giving key its current expiry (or deleting it, when an expiry removed it)."""
    slot = keyslot(key)
    values = db.data.get(slot)
    if values is None or key not in values:
        return [b"DEL", key]
    when = db.get_expire(key, slot)
    return [b"PERSIST", key] if when is None else [b"PEXPIREAT", key, b"%d" % when]


Rewrite = Callable[["Aof", Any, list[bytes], bytes], "list[list[bytes]] | None"]


def _final_state(aof, db, argv, reply):
    return [key_state(aof, db, argv[1])]


def _ttl(aof, db, argv, reply):
    return [ttl_state(db, argv[1])]


def _set(aof, db, argv, reply):
    if len(argv) > 3 and any(arg.lower() in (b"ex", b"px") for arg in argv[3:]):
        return [key_state(aof, db, argv[1])]
    return None


def _getex(aof, db, argv, reply):
    return [ttl_state(db, argv[1])] if len(argv) > 2 else None


def _hincrbyfloat(aof, db, argv, reply):
    value = _parse_reply(reply)
    return [[b"HSET", argv[1], argv[2], value]] if isinstance(value, bytes) else [key_state(aof, db, argv[1])]


def _spop(aof, db, argv, reply):
    value = _parse_reply(reply)
    if isinstance(value, bytes):
        return [[b"SREM", argv[1], value]]
    if isinstance(value, (list, set)) and value:
        return [[b"SREM", argv[1], *value]]
    return [key_state(aof, db, argv[1])]


def _served_pop(command: bytes) -> Rewrite:
    """BLPOP/BRPOP served: [key, element] → LPOP/RPOP key."""
    def rewrite(aof, db, argv, reply):
        value = _parse_reply(reply)
        if isinstance(value, list) and value:
            return [[command, value[0]]]
        return None
    return rewrite


def _blmove(aof, db, argv, reply):
    return [[b"LMOVE", *argv[1:5]]]


def _brpoplpush(aof, db, argv, reply):
    return [[b"RPOPLPUSH", argv[1], argv[2]]]


def _blmpop(aof, db, argv, reply):
    value = _parse_reply(reply)
    if not (isinstance(value, list) and len(value) == 2):
        return None
    try:
        where = argv[3 + int(argv[2])].lower()
    except (ValueError, IndexError):
        return None
    return [[b"LPOP" if where == b"left" else b"RPOP", value[0], b"%d" % len(value[1])]]


def _members_of(popped: Any) -> list[bytes]:
    """The members of a ZMPOP-style reply's elements ([[member, score], …] or a map)."""
    if isinstance(popped, dict):
        return list(popped)
    return [item[0] if isinstance(item, list) else item for item in popped]


def _bzpop(aof, db, argv, reply):
    value = _parse_reply(reply)
    if isinstance(value, list) and len(value) >= 2:
        return [[b"ZREM", value[0], value[1]]]
    return None


def _bzmpop(aof, db, argv, reply):
    value = _parse_reply(reply)
    if isinstance(value, list) and len(value) == 2 and value[1]:
        return [[b"ZREM", value[0], *_members_of(value[1])]]
    return None


def _swapdb(aof, db, argv, reply):
    return [[b"SWAPDB", argv[1], argv[2]]]


def _block(aof, db, argv, reply):
    """__block <command …>: a blocking command the proxy retried, logged as that command."""
    inner = argv[1:]
    spec = commands.lookup_argv(inner)
    rewrite = REWRITES.get(spec.name) if spec is not None else None
    records = rewrite(aof, db, inner, reply) if rewrite is not None else None
    return records if records is not None else [inner]


def _stream_effects(aof, db, argv, reply):
    """Stream commands: what the handler said it did (XADD with the ID it got and an exact
    trim bound, XREADGROUP/XCLAIM/XAUTOCLAIM as XCLAIM … FORCE and XGROUP SETID/CREATECONSUMER,
    as Valkey propagates them); None: the command as it came."""
    from ..worker import t_stream
    return t_stream.take_effects()


REWRITES: dict[str, Rewrite] = {
    "xadd": _stream_effects, "xtrim": _stream_effects, "xreadgroup": _stream_effects,
    "xclaim": _stream_effects, "xautoclaim": _stream_effects,
    "set": _set,
    "setex": _final_state, "psetex": _final_state, "getex": _getex,
    "incrbyfloat": _final_state, "restore": _final_state, "__restore": _final_state,
    "expire": _ttl, "pexpire": _ttl, "expireat": _ttl, "pexpireat": _ttl,
    "hincrbyfloat": _hincrbyfloat, "spop": _spop,
    "blpop": _served_pop(b"LPOP"), "brpop": _served_pop(b"RPOP"), "blmove": _blmove,
    "brpoplpush": _brpoplpush, "blmpop": _blmpop, "bzpopmin": _bzpop, "bzpopmax": _bzpop,
    "bzmpop": _bzmpop, "__swapdb": _swapdb, "__block": _block,
}
# The argument count from which a command needs its rewrite (SET only with options …).
_NEVER = 1 << 62
REWRITE_FROM = {name: 0 for name in REWRITES} | {"set": 4, "getex": 3}
# Commands that may change dbs other than the one they run in.
CROSS_DB = ("move", "copy", "flushall", "__swapdb")
# Scripts: logged as their effects (the final state of every key they wrote), so that a
# replay never depends on the script cache, on time or on randomness.
SCRIPTS = ("eval", "evalsha", "fcall")
# FUNCTION subcommands that change the libraries (no Db counts them): logged as sent.
FUNCTION_WRITES = frozenset((b"load", b"delete", b"flush", b"restore"))


class KeyRecorder(dict):
    """Stands in for a Db's `watched` map during a script: every write touches its key, so
    the keys written are recorded (and a FLUSHDB, which looks at every watched key)."""

    def __init__(self, watched: dict) -> None:
        super().__init__(watched)
        self.keys: dict[bytes, None] = {}
        self.flushed = False

    def __bool__(self) -> bool:       # the Db calls touch() only when someone watches
        return True

    def get(self, key, default=None):
        self.keys[key] = None
        return dict.get(self, key, default)

    def items(self):
        self.flushed = True
        self.keys.clear()
        return dict.items(self)


# -- writing a base -----------------------------------------------------------------------------

def write_rdb_base(stream: BinaryIO, worker, config: dict) -> None:
    """The base as an RDB (aof-use-rdb-preamble yes), marked aof-base as Valkey marks it."""
    low, high = config["__slot_range__"]
    writer = rdb.RdbWriter(stream, compress=config.get("rdbcompression", True),
                           checksum=config.get("rdbchecksum", True), fill=config.get("list-max-listpack-size", -2))
    writer.start({b"aof-base": 1, b"shardd-shard": worker.shard, b"shardd-shards": worker.n_shards,
                  b"shardd-slots": f"{low}-{high}"})
    for code in _library_codes():
        writer.function(code)
    for db in worker.dbs:
        rdb.write_db(writer, db)
    writer.finish()


def _library_codes() -> list[bytes]:
    """The function libraries (kept per worker process) a base carries."""
    from ..worker import functions
    return functions.library_codes()


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _score(value: float) -> bytes:
    return repr(float(value)).encode()


def key_commands(key: bytes, value: Any, when: int | None, config: dict) -> list[list[bytes]]:
    """Commands that rebuild one key (rewriteAppendOnlyFileRio's per-type commands)."""
    from ..worker.t_hash import Hash
    from ..worker.t_list import List
    from ..worker.t_set import Set
    from ..worker.t_zset import ZSet
    value = keyspace.unpacked(value)        # a small container rests packed in the keyspace
    kind = type(value)
    if kind is bytes:
        out = [[b"SET", key, value]]
    elif kind is List:
        out = [[b"RPUSH", key, *part] for part in _chunks(list(value), ITEMS_PER_COMMAND)]
    elif kind is Set:
        out = [[b"SADD", key, *part] for part in _chunks(list(value), ITEMS_PER_COMMAND)]
    elif kind is Hash:
        pairs = [x for item in value.items() for x in item]
        out = [[b"HSET", key, *part] for part in _chunks(pairs, 2 * ITEMS_PER_COMMAND)]
    elif kind is ZSet:
        pairs = [x for member, score in value.items() for x in (_score(score), member)]
        out = [[b"ZADD", key, *part] for part in _chunks(pairs, 2 * ITEMS_PER_COMMAND)]
    else:
        payload = rdb.dump_value(value, config.get("rdbcompression", True), config.get("list-max-listpack-size", -2))
        return [[b"RESTORE", key, b"%d" % (when or 0), payload, b"REPLACE", b"ABSTTL"]]
    if when is not None:
        out.append([b"PEXPIREAT", key, b"%d" % when])
    return out


def write_resp_base(stream: BinaryIO, worker, config: dict) -> None:
    """The base as commands (aof-use-rdb-preamble no)."""
    out: list[bytes] = []
    for code in _library_codes():
        command_into(out, [b"FUNCTION", b"LOAD", code])
    for db in worker.dbs:
        if not db.size:
            continue
        command_into(out, [b"SELECT", b"%d" % db.index])
        for slot, keys in db.data.items():
            expires = db.expires.get(slot) or {}
            for key, value in keys.items():
                for argv in key_commands(key, value, expires.get(key), config):
                    command_into(out, argv)
                if len(out) > 4096:
                    stream.write(b"".join(out))
                    out.clear()
    stream.write(b"".join(out))


# -- the reply gate -----------------------------------------------------------------------------

class GatedWriter(FrameWriter):
    """A reply ring's writer that holds replies back while AOF records wait to be written:
    the first flush of replies writes (and with `always` fsyncs) them first."""

    __slots__ = ("aof",)

    def __init__(self, writer: FrameWriter, aof: "Aof") -> None:
        super().__init__(writer.ring)
        self.pending = writer.pending
        self.aof = aof

    def send_framed(self, frame: bytes) -> bool:
        if self.aof.unwritten:
            self.pending.append(memoryview(frame))
            return False
        return FrameWriter.send_framed(self, frame)

    def flush(self) -> bool:
        if self.aof.unwritten:
            self.aof.write_out()
        return FrameWriter.flush(self)


# -- the worker's AOF ------------------------------------------------------------------------------

def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class Aof:
    """One worker's AOF: its files, what it logs, when it writes and fsyncs, rewrites."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self.config: dict = worker.config.values
        self.state = OFF
        self.fd = -1
        self.dir = shard_dir(self.config, worker.shard)
        self.manifest = Manifest()
        self.incr_path = ""
        self.buf: list[bytes] = []
        self.unwritten = False            # records wait: replies are held back
        self.selected = -1                # the db of the last record in the current file
        self.expired = 0                  # expiry DELs logged (so call() can tell them apart)
        self.logging = False
        # the current frame's transaction: records since its start, where MULTI would go
        self.tx_open = False
        self.tx_start = 0
        self.tx_records = 0
        self.tx_multi_written = False
        self.unit: bytes | None = None     # the current frame's cross-shard unit note (grouped 1)
        self.unsettled = False             # unit parts logged since the last settled note
        # sizes and sync state
        self.size = 0                     # base + incr files, as aof_current_size
        self.base_size = 0                # aof_current_size after the last rewrite (or load)
        self.written_at_fsync = 0
        self.last_fsync = time.monotonic()
        self.fsync_thread: threading.Thread | None = None
        self.write_ok = True
        # the rewrite child
        self.child = 0
        self.child_started = 0.0
        self.child_temp = ""
        self.child_incr_from = 0          # the first incr seq written after the fork
        self.scheduled = False
        self.retry_at = 0.0
        self.rewrites = 0
        self.last_rewrite_ok = True
        self.consecutive_failures = 0
        self.last_rewrite_time = -1
        self.plain_call = worker.call
        self.ctx = worker.ctx
        # Commands that need more than the changes count of their db (by spec identity).
        self.special: dict[int, Callable] = {}
        for names, method in ((CROSS_DB, self.cross_db_call), (SCRIPTS, self.script_call),
                              (("function",), self.function_call)):
            for name in names:
                spec = commands.INTERNAL.get(name.encode()) or commands.COMMANDS.get(name)
                if spec is not None:
                    self.special[id(spec)] = method
        for link in worker.links:
            if not isinstance(link.replies, GatedWriter):
                link.replies = GatedWriter(link.replies, self)

    # -- turning logging on and off ------------------------------------------------------------
    def start_logging(self) -> None:
        self.logging = True
        keyspace.on_expire = self.log_expired
        self.worker.call = self.make_logged_call()

    def stop_logging(self) -> None:
        self.logging = False
        if keyspace.on_expire == self.log_expired:
            keyspace.on_expire = None
        self.worker.__dict__.pop("call", None)
        self.end_transaction()
        self.buf.clear()
        self.unwritten = False
        self.unsettled = False

    # -- the hot path ---------------------------------------------------------------------------
    def make_logged_call(self) -> Callable[[Any, list[bytes]], bytes]:
        """Worker.call, logging the command when it changed data (a closure: this runs for
        every command while the AOF is on)."""
        ctx, plain_call, buf = self.ctx, self.plain_call, self.buf
        special = self.special.get
        worker = self.worker
        rewrite_from = REWRITE_FROM.get

        def logged_call(spec, argv: list[bytes]) -> bytes:
            method = special(id(spec))
            if method is not None:
                return method(spec, argv)
            db = ctx.db
            before = db.changes
            expired = self.expired
            reply = plain_call(spec, argv)
            if db.changes - before > self.expired - expired:
                if (len(argv) >= rewrite_from(spec.name, _NEVER) or self.tx_open or not worker.serve_now
                        or db.index != self.selected):
                    self.log_command(db, spec, argv, reply)
                else:                   # the common case, inline: the command as it came
                    command_into(buf, argv)
                    self.unwritten = True
            return reply
        return logged_call

    def cross_db_call(self, spec, argv: list[bytes]) -> bytes:
        dbs = self.worker.dbs
        db = self.worker.ctx.db
        before = sum(d.changes for d in dbs)
        expired = self.expired
        reply = self.plain_call(spec, argv)
        if sum(d.changes for d in dbs) - before > self.expired - expired or spec.name == "__swapdb":
            self.log_command(db, spec, argv, reply)
        return reply

    def script_call(self, spec, argv: list[bytes]) -> bytes:
        """EVAL/EVALSHA/FCALL (and their _RO forms): the final state of each key written."""
        dbs = self.worker.dbs
        recorders = []
        for db in dbs:
            recorder = KeyRecorder(db.watched)
            recorders.append(recorder)
            db.watched = recorder
        try:
            reply = self.plain_call(spec, argv)
        finally:
            for db, recorder in zip(dbs, recorders):
                db.watched = dict(recorder)
        group = []
        for db, recorder in zip(dbs, recorders):
            if recorder.flushed:
                group.append((db.index, [b"FLUSHDB"]))
            group += [(db.index, key_state(self, db, key)) for key in recorder.keys]
        if group:
            self.append_group(group)
        return reply

    def function_call(self, spec, argv: list[bytes]) -> bytes:
        """FUNCTION LOAD/DELETE/FLUSH/RESTORE change the libraries: logged as sent."""
        reply = self.plain_call(spec, argv)
        if len(argv) > 1 and argv[1].lower() in FUNCTION_WRITES and not reply.startswith(b"-"):
            self.append(self.ctx.db.index, argv)
        return reply

    def append_group(self, group: list[tuple[int, list[bytes]]]) -> None:
        """Records that stand for one command: one MULTI … EXEC (unless the frame already is)."""
        own = len(group) > 1 and self.worker.serve_now and not self.tx_open
        if own:
            self.buf.append(MULTI_RECORD)
        for index, argv in group:
            self.append(index, argv)
        if own:
            self.buf.append(EXEC_RECORD)

    def log_command(self, db, spec, argv: list[bytes], reply: bytes) -> None:
        rewrite = REWRITES.get(spec.name)
        records = rewrite(self, db, argv, reply) if rewrite is not None else None
        if records is None:
            self.append(db.index, argv)
        else:
            for record in records:
                self.append(db.index, record)

    def log_expired(self, db, key: bytes) -> None:
        self.expired += 1
        self.append(db.index, [b"DEL", key])

    def append(self, index: int, argv: list[bytes]) -> None:
        buf = self.buf
        if not self.worker.serve_now and not self.tx_open:
            self.tx_open = True
            self.tx_start = len(buf)
            self.tx_records = 0
            self.tx_multi_written = False
        if index != self.selected:
            buf.append(select_record(index))
            self.selected = index
        command_into(buf, argv)
        if self.tx_open:
            self.tx_records += 1
        self.unwritten = True

    def end_transaction(self) -> None:
        """The end of a transaction's frame: its records become one MULTI … EXEC (behind the
        unit's note when the frame is part of a cross-shard unit)."""
        unit = self.unit
        if unit is not None:
            self.unit = None
            self.unsettled = True
            if not self.tx_open:          # no records here: the note alone says we got here
                self.buf.append(unit[:-4] + b" 0\r\n")
                self.unwritten = True
                return
        if not self.tx_open:
            return
        self.tx_open = False
        if self.tx_multi_written:
            self.buf.append(EXEC_RECORD)
        elif unit is not None:
            self.buf.insert(self.tx_start, unit + MULTI_RECORD)
            self.buf.append(EXEC_RECORD)
        elif self.tx_records > 1:
            self.buf.insert(self.tx_start, MULTI_RECORD)
            self.buf.append(EXEC_RECORD)
        self.unwritten = bool(self.buf)

    def begin_unit(self, uid: bytes, kind: bytes, participants: bytes) -> None:
        """This frame is part of a cross-shard unit (the coordinator's __aofunit)."""
        if self.state != OFF:
            self.unit = unit_note(uid, kind, participants, True)

    def settle(self) -> None:
        """The coordinator released this shard: every unit part logged so far is whole on
        every shard, and no later load needs to check it."""
        if self.unsettled:
            self.unsettled = False
            if self.state != OFF:
                self.buf.append(SETTLED_NOTE)
                # Now, not at the next reply or tick (a long command may come first): once
                # every peer has settled, one may rewrite its AOF, and then only this note
                # tells a restart that the unit was whole.
                if not self.tx_open:
                    self.write_out()

    # -- writing and fsyncing ---------------------------------------------------------------------
    def write_out(self) -> None:
        """Write the waiting records (and fsync them with appendfsync always)."""
        buf = self.buf
        if self.tx_open and not self.tx_multi_written:
            # Written mid-transaction (not expected): open the MULTI now, EXEC follows.
            buf.insert(self.tx_start, MULTI_RECORD if self.unit is None else self.unit + MULTI_RECORD)
            self.tx_multi_written = True
        self.tx_start = 0
        if not buf or self.fd < 0:
            self.unwritten = False
            return
        data = b"".join(buf)
        buf.clear()
        if not self.write_all(data):
            buf.append(data)
            if self.config.get("appendfsync") == "always":
                log.log("warning", "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...")
                os._exit(1)
            self.unwritten = False       # everysec/no: replies go; the records are retried
            return
        self.unwritten = False
        if self.config.get("appendfsync") == "always" and not self.fsync_suspended():
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                log.log("warning", f"Can't persist the AOF (fsync: {exc}). Exiting...")
                os._exit(1)
            self.written_at_fsync = self.size
            self.last_fsync = time.monotonic()

    def write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, view[done:])
        except OSError as exc:
            if done:
                # Never leave half a record behind: cut what went in (as Valkey does).
                try:
                    os.ftruncate(self.fd, self.incr_size_before(done))
                except OSError:
                    pass
            if self.write_ok:
                log.log("warning", f"Error writing to the AOF file: {exc}")
            self.write_ok = False
            return False
        if not self.write_ok:
            log.log("warning", "AOF write error looks solved, the server can write again.")
        self.write_ok = True
        self.size += len(data)
        return True

    def incr_size_before(self, partial: int) -> int:
        return os.fstat(self.fd).st_size - partial

    def fsync_suspended(self) -> bool:
        return bool(self.child) and self.config.get("no-appendfsync-on-rewrite", False)

    def fsync_busy(self) -> bool:
        return self.fsync_thread is not None and self.fsync_thread.is_alive()

    def background_fsync(self) -> None:
        fd = self.fd

        def sync() -> None:
            try:
                os.fdatasync(fd)
            except OSError as exc:
                log.log("warning", f"AOF background fsync failed: {exc}")
        self.fsync_thread = threading.Thread(target=sync, name="aof-fsync", daemon=True)
        self.fsync_thread.start()
        self.written_at_fsync = self.size
        self.last_fsync = time.monotonic()

    def close_fd(self) -> None:
        if self.fd < 0:
            return
        if self.fsync_busy():
            self.fsync_thread.join()
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    # -- the timer ---------------------------------------------------------------------------------
    def tick(self) -> None:
        """The worker's timer: config changes, pending writes, everysec fsync, the rewrite."""
        self.config_changed()
        if self.child:
            self.reap_child()
        if self.state == OFF:
            if self.scheduled and not self.busy():
                self.rewrite_background()
            return
        if self.buf and not self.tx_open:
            self.write_out()
        if (self.config.get("appendfsync") == "everysec" and self.fd >= 0
                and self.written_at_fsync != self.size and not self.fsync_suspended()
                and time.monotonic() - self.last_fsync >= FSYNC_INTERVAL and not self.fsync_busy()):
            self.background_fsync()
        if self.busy() or self.worker.held_by is not None or self.unsettled:
            return          # a rewrite waits until no unit part needs its note in the incr files
        if self.state == WAIT_REWRITE or self.scheduled:
            if time.monotonic() >= self.retry_at:
                self.rewrite_background()
        elif self.auto_rewrite_due():
            log.log("notice", f"Starting automatic rewriting of AOF on {self.growth()}% growth")
            self.rewrite_background()

    def config_changed(self) -> None:
        """appendonly turned on or off (by CONFIG SET: applied at once, as Valkey does). While
        the data loads it waits for tick(): a rewrite forked now would hold part of the keys,
        and the loader stores the rest without logging them."""
        if self.worker.persistence.loading:
            return
        wanted = bool(self.config.get("appendonly"))
        if wanted and self.state == OFF:
            self.start_runtime()
        elif not wanted and self.state != OFF:
            self.stop()

    def busy(self) -> bool:
        """A fork is running (ours, or the snapshot's)."""
        return bool(self.child) or bool(self.worker.persistence.child)

    def growth(self) -> int:
        base = self.base_size or 1
        return self.size * 100 // base - 100

    def auto_rewrite_due(self) -> bool:
        percentage = self.config.get("auto-aof-rewrite-percentage", 100)
        if not percentage or self.size <= self.config.get("auto-aof-rewrite-min-size", 64 << 20):
            return False
        return self.growth() >= percentage and time.monotonic() >= self.retry_at

    # -- files ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config["appendfilename"]

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def layout(self) -> str:
        return layout_of(self.worker.shard, self.worker.n_shards, self.config["__slot_range__"])

    def base_name(self, seq: int) -> str:
        suffix = ".rdb" if self.config.get("aof-use-rdb-preamble", True) else ".aof"
        return f"{self.name}.{seq}.base{suffix}"

    def incr_name(self, seq: int) -> str:
        return f"{self.name}.{seq}.incr.aof"

    def temp_incr_path(self) -> str:
        return self.path(f"temp-{self.name}.incr")

    def persist_manifest(self, manifest: Manifest) -> None:
        manifest.layout = self.layout()
        text = manifest.render()
        files.write_atomically(self.path(manifest_name(self.name)), lambda stream: stream.write(text))
        self.manifest = manifest

    def open_for_append(self, path: str, new: bool) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if new else 0)
        fd = os.open(path, flags, 0o644)
        self.close_fd()
        self.fd = fd
        self.incr_path = path
        self.selected = -1        # a new file is read by a new client: it starts at db 0

    def write_base(self, stream: BinaryIO) -> None:
        if self.config.get("aof-use-rdb-preamble", True):
            write_rdb_base(stream, self.worker, self.config)
        else:
            write_resp_base(stream, self.worker, self.config)

    def files_size(self, manifest: Manifest) -> int:
        total = 0
        for item in manifest.files():
            try:
                total += os.path.getsize(self.path(item.name))
            except OSError:
                pass
        return total

    def delete_files(self, items: list[AofFile]) -> None:
        for item in items:
            try:
                os.unlink(self.path(item.name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.log("warning", f"Could not remove the AOF file {item.name}: {exc}")

    def remove_temp_files(self) -> None:
        """Leftovers of a rewrite that did not finish (a killed worker's, or its child's)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith("temp-"):
                try:
                    os.unlink(self.path(name))
                except OSError:
                    pass

    # -- starting --------------------------------------------------------------------------------
    def load_data(self) -> None:
        """At start: the AOF when appendonly is yes and this shard has one (else its RDB, then
        a new AOF beginning with a base of what was loaded); the RDB when appendonly is no.
        When the supervisor moved an AOF of another worker count aside (prepare_layout), every
        old shard's AOF is loaded keeping our slots, and we serve once every worker has
        written its new AOF."""
        from ..worker.persistence import LoadError
        if not self.config.get("appendonly"):
            self.worker.persistence.load()
            return
        manifest_path = self.path(manifest_name(self.name))
        try:
            source = repartition_source(self.config)
            if source is not None:
                self.load_repartition(source)
            elif os.path.exists(manifest_path):
                manifest = self.read_manifest(manifest_path)
                self.check_layout(manifest)
                logs = ShardLogs(self.layout_logs(manifest))
                drops, had_units = logs.drops(self.worker.shard)
                self.load_manifest(manifest, self.dir, drop=drops)
                self.open_after_load(manifest)
                if had_units:
                    self.record_resolution(drops)
            else:
                self.check_other_layouts()
                foreign = self.foreign_source()
                if foreign is not None:
                    self.load_foreign(*foreign)
                else:
                    self.worker.persistence.load()
                self.create_fresh()
        except (OSError, rdb.RdbError) as exc:
            raise LoadError(f"AOF of shard {self.worker.shard} in {self.dir}: {exc}") from None
        for db in self.worker.dbs:
            db.changes = 0
        self.state = ON
        self.start_logging()

    def read_manifest(self, path: str) -> Manifest:
        from ..worker.persistence import LoadError
        try:
            return Manifest.read(path)
        except ManifestError as exc:
            raise LoadError(f"FATAL AOF MANIFEST FILE ERROR in {path}: {exc}") from None

    def check_layout(self, manifest: Manifest) -> None:
        from ..worker.persistence import LoadError
        if manifest.layout is not None and manifest.layout != self.layout():
            raise LoadError(
                f"the AOF in {self.dir} was written by a server with another shard layout "
                f"({manifest.layout}; this worker is {self.layout()}), and the supervisor did not "
                "re-partition it (see the log above)")

    def check_other_layouts(self) -> None:
        """No AOF of our own, but shards of another layout left theirs: stop, not lose data."""
        root = os.path.join(self.config["dir"], self.config["appenddirname"])
        for shard in range(max(self.worker.n_shards, 1) + 8):
            path = os.path.join(root, str(shard), manifest_name(self.name))
            if shard == self.worker.shard or not os.path.exists(path):
                continue
            layout = self.read_manifest(path).layout or ""
            if f"shards={self.worker.n_shards} " not in layout + " ":
                self.check_layout(Manifest(layout=layout))

    def layout_logs(self, own: Manifest) -> dict[int, tuple[str, Manifest]]:
        """Every shard's AOF of our layout (ours as just read), for checking units."""
        logs = {self.worker.shard: (self.dir, own)}
        for shard in range(self.worker.n_shards):
            if shard != self.worker.shard:
                directory = shard_dir(self.config, shard)
                try:
                    logs[shard] = (directory, Manifest.read(os.path.join(directory, manifest_name(self.name))))
                except (OSError, ManifestError):
                    pass
        return logs

    def record_resolution(self, drops: set[bytes]) -> None:
        """The units of our log's tail are decided: the dropped ones go in the manifest (later
        loads drop them again), and a settled note ends the tail, so no later load decides
        again from files that may have changed by then."""
        new = drops - self.manifest.dropped
        if new:
            manifest = self.manifest.copy()
            manifest.dropped |= new
            self.persist_manifest(manifest)
            log.log("warning", f"Dropped {len(new)} cross-shard operation(s) at the tail of the AOF: their parts "
                               "did not all reach the other shards' AOF (a crash in the middle of them)")
        self.buf.append(SETTLED_NOTE)
        self.write_out()
        os.fsync(self.fd)

    def foreign_source(self) -> tuple[Manifest, str] | None:
        """An AOF that no shard wrote: Valkey's own (a manifest directly in appenddirname) or
        an old single-file `appendonly.aof` in dir."""
        root = os.path.join(self.config["dir"], self.config["appenddirname"])
        path = os.path.join(root, manifest_name(self.name))
        if os.path.exists(path):
            return self.read_manifest(path), root
        single = os.path.join(self.config["dir"], self.name)
        if os.path.exists(single):
            return Manifest(incrs=[AofFile(self.name, 1, "i")]), self.config["dir"]
        return None

    def load_foreign(self, manifest: Manifest, directory: str, drop: set[bytes] = frozenset(),
                     may_truncate: bool = False) -> None:
        """Every key of an AOF that is not ours (Valkey's, or an old layout's shard), of which
        the keys of our slots are kept. It is loaded on its own, then those keys are moved in:
        its FLUSHALLs and SWAPDBs must not touch what other files gave us."""
        low, high = self.config["__slot_range__"]
        kept, dropped = self.load_filtered(
            lambda: self.load_manifest(manifest, directory, may_truncate=may_truncate, drop=drop, cut=False))
        log.log("notice", f"Loaded the AOF in {directory}; kept the {kept} keys of slots {low}-{high} "
                          f"({dropped} keys of other shards dropped)")

    def load_filtered(self, load: Callable[[], None]) -> tuple[int, int]:
        """Run a load into empty dbs, then move the keys of our slots (with their expiry)
        into ours; how many were kept and dropped."""
        from ..worker.keyspace import Db
        worker = self.worker
        dbs = worker.dbs                 # the list the worker and its ctx share
        own = list(dbs)
        dbs[:] = [Db(i, worker.dirty, worker.ready) for i in range(len(own))]
        try:
            load()
        finally:
            loaded = list(dbs)
            dbs[:] = own
            worker.ctx.db = own[0]
        low, high = self.config["__slot_range__"]
        kept = dropped = 0
        for source, target in zip(loaded, own):
            for slot, keys in source.data.items():
                if not low <= slot <= high:
                    dropped += len(keys)
                    continue
                expires = source.expires.get(slot) or {}
                for key, value in keys.items():
                    target.store_expiring(key, slot, value, expires.get(key))
                kept += len(keys)
            source.flush()
        return kept, dropped

    def load_repartition(self, source: str) -> None:
        """Our slots out of every shard's AOF of the old layout (moved aside to `source`),
        each shard's tail units decided among the old shards; then our own new AOF; then we
        wait until every worker has written its own, and the first to see that commits."""
        from ..worker.persistence import LoadError
        old = old_layout_logs(source, self.name)
        if not old:
            raise LoadError(f"{source} (an AOF being re-partitioned) has no shard AOF in it")
        shards = layout_shards(next(iter(old.values()))[1].layout) or len(old)
        log.log("notice", f"Re-partitioning the AOF of {shards} shards in {source}: loading the keys of "
                          f"slots {self.config['__slot_range__'][0]}-{self.config['__slot_range__'][1]}")
        logs = ShardLogs(old)
        self.worker.persistence.loading = True
        try:
            for shard in range(shards):
                if shard in old:
                    directory, manifest = old[shard]
                    drops, _ = logs.drops(shard)
                    self.load_foreign(manifest, directory, drop=drops, may_truncate=True)
                    continue
                # That shard never had an AOF (appendonly turned on while it could not
                # rewrite): its snapshot, if any, is what it had.
                dump = os.path.join(self.config["dir"], files.shard_file_name(self.config["dbfilename"], shard))
                if not os.path.exists(dump):
                    raise LoadError(f"shard {shard} of the old layout has no AOF in {source} and no {dump}")
                low, high = self.config["__slot_range__"]
                log.log("warning", f"Shard {shard} of the old layout has no AOF: loading {dump}")
                self.worker.persistence.load_file(dump, True, low, high, self.worker.dbs)
            self.create_fresh()
            self.await_commit(source)
        finally:
            self.worker.persistence.loading = False

    def await_commit(self, source: str) -> None:
        """Serve -LOADING until every worker of our layout has written its new AOF; whoever
        sees that first commits the re-partition (the old files go)."""
        from ..slots import slot_ranges
        shards = self.worker.n_shards
        ranges = slot_ranges(shards)
        root = os.path.join(self.config["dir"], self.config["appenddirname"])
        parent = os.getppid()
        waiting_since = time.monotonic()
        while os.path.exists(source):
            written = 0
            for shard in range(shards):
                try:
                    layout = Manifest.read(os.path.join(root, str(shard), manifest_name(self.name))).layout
                except (OSError, ManifestError):
                    break
                if layout != layout_of(shard, shards, ranges[shard]):
                    break
                written += 1
            if written == shards:
                commit_repartition(self.config)
                break
            if not self.worker.running or os.getppid() != parent:
                return                     # stopping: the old layout stays the one to load
            if time.monotonic() - waiting_since > 1.0:
                waiting_since = time.monotonic()
                log.log("verbose", f"Waiting for the other workers' AOF ({written} of {shards} written)")
            self.worker.serve_loading()
            time.sleep(0.005)

    def create_fresh(self) -> None:
        """A new AOF for this shard: a base of the data now in memory, an empty incr."""
        os.makedirs(self.dir, exist_ok=True)
        self.remove_temp_files()
        old = None
        manifest_path = self.path(manifest_name(self.name))
        if os.path.exists(manifest_path):
            old = Manifest.read(manifest_path)
        manifest = Manifest(base_seq=old.base_seq if old else 0, incr_seq=old.incr_seq if old else 0)
        manifest.base_seq += 1
        manifest.incr_seq += 1
        manifest.base = AofFile(self.base_name(manifest.base_seq), manifest.base_seq, "b")
        manifest.incrs = [AofFile(self.incr_name(manifest.incr_seq), manifest.incr_seq, "i")]
        log.log("notice", f"Creating AOF base file {manifest.base.name} on server start")
        files.write_atomically(self.path(manifest.base.name), self.write_base)
        log.log("notice", f"Creating AOF incr file {manifest.incrs[0].name} on server start")
        self.open_for_append(self.path(manifest.incrs[0].name), new=True)
        self.persist_manifest(manifest)
        if old is not None:
            self.delete_files([f for f in old.files() + old.history if f.name not in
                               (manifest.base.name, manifest.incrs[0].name)])
        self.size = self.base_size = self.files_size(manifest)
        self.written_at_fsync = self.size

    def open_after_load(self, manifest: Manifest) -> None:
        """Keep appending to the last incr file (a new one when there is none)."""
        self.remove_temp_files()
        if manifest.history:
            self.delete_files(manifest.history)
            manifest = manifest.copy()
            manifest.history = []
            self.persist_manifest(manifest)
        if manifest.incrs:
            self.open_for_append(self.path(manifest.incrs[-1].name), new=False)
            self.manifest = manifest
        else:
            manifest = manifest.copy()
            manifest.incr_seq += 1
            manifest.incrs.append(AofFile(self.incr_name(manifest.incr_seq), manifest.incr_seq, "i"))
            self.open_for_append(self.path(manifest.incrs[-1].name), new=True)
            self.persist_manifest(manifest)
        self.size = self.base_size = self.files_size(manifest)
        self.written_at_fsync = self.size

    # -- loading -----------------------------------------------------------------------------------
    def load_manifest(self, manifest: Manifest, directory: str, may_truncate: bool = True,
                      drop: set[bytes] = frozenset(), cut: bool = True) -> None:
        """Replay the base and incr files, skipping the records of the cross-shard units in
        `drop`; a torn tail of the last one is handled per aof-load-truncated (and cut off the
        file unless `cut` is False: files others may be reading). Raises LoadError when the
        data cannot be loaded whole."""
        from ..worker import keyspace
        from ..worker.persistence import LoadError
        items = manifest.files()
        for item in items:
            if not os.path.exists(os.path.join(directory, item.name)):
                raise LoadError(f"The AOF file {item.name} listed in the manifest of {directory} doesn't exist")
        started = time.time()
        saved_clock = keyspace.now_ms
        # Valkey expires nothing while loading: a key whose time has passed is still there
        # for the commands after it (which ran when it was alive); it goes once loading ends.
        keyspace.now_ms = 0
        replay = Replay(self.worker.ctx)
        replay.drop = set(drop)
        try:
            try:
                self.replay_files(replay, items, directory, True, may_truncate, cut)
            except SlowPath:
                log.log("notice", "The AOF needs a record-by-record load (a torn tail, an unfinished "
                                  "MULTI, annotations or a malformed record): loading it again")
                for db in self.worker.dbs:
                    db.flush()
                replay = Replay(self.worker.ctx)
                replay.drop = set(drop)
                self.replay_files(replay, items, directory, False, may_truncate, cut)
        except ReplayError as exc:
            raise LoadError(f"{exc} reading the append only file in {directory}") from None
        finally:
            keyspace.now_ms = saved_clock
            keyspace.refresh_clock()
            self.worker.ctx.db = self.worker.dbs[0]
        keys = sum(db.size for db in self.worker.dbs)
        log.log("notice", f"DB loaded from append only file: {time.time() - started:.3f} seconds "
                          f"({replay.commands} commands, {keys} keys)")

    def replay_files(self, replay: Replay, items: list[AofFile], directory: str, fast: bool,
                     may_truncate: bool, cut: bool) -> None:
        from ..worker.persistence import LoadError
        for n, item in enumerate(items):
            path = os.path.join(directory, item.name)
            last = n == len(items) - 1
            replay.reset_client()
            if os.path.getsize(path) == 0:
                continue
            rdb_end = self.load_rdb_part(path)
            if item.kind == "b" and rdb_end:
                log.log("notice", f"Reading RDB base file on AOF loading... ({item.name})")
            view = map_file(path)
            try:
                if fast:
                    replay_fast(replay, view, rdb_end)
                    continue
                check = check_resp(view, rdb_end, len(view))
                if check.error and not check.truncated:
                    raise LoadError(f"Bad file format reading the append only file {item.name} ({check.error}): "
                                    f"make a backup of your AOF file, then use shardd-check-aof --fix "
                                    f"<filename.manifest>")
                for argv, start, end in scan_records(view, rdb_end, check.ok_up_to, notes=True):
                    if argv is None:
                        replay.note(bytes(view[start:end]))
                        continue
                    try:
                        replay.command(argv)
                    except ReplayError:
                        raise
                    except Exception as exc:
                        raise LoadError(f"{item.name} at offset {start}: {argv[0]!r} failed: {exc!r}") from None
            finally:
                if isinstance(view, mmap.mmap):
                    view.close()
            if check.valid:
                continue
            self.torn_tail(item.name, path, check, last and may_truncate, cut)

    def torn_tail(self, name: str, path: str, check: TailCheck, may_truncate: bool, cut: bool = True) -> None:
        """A file ending mid-record or mid-MULTI: cut it back (aof-load-truncated yes, last
        file only; with `cut` False the file stays as it is), or stop the start."""
        from ..worker.persistence import LoadError
        if check.error.endswith("Reached EOF before reading EXEC for MULTI"):
            log.log("warning", f"Revert incomplete MULTI/EXEC transaction in AOF file {name}")
        if not may_truncate:
            raise LoadError(f"The AOF file {name} is truncated ({check.error}) and it is not the last file: "
                            "use shardd-check-aof to examine it")
        if not self.config.get("aof-load-truncated", True):
            raise LoadError(f"Unexpected end of file reading the append only file {name} ({check.error}). You can: "
                            "1) Make a backup of your AOF file, then use shardd-check-aof --fix <filename.manifest>. "
                            "2) Alternatively you can set the 'aof-load-truncated' configuration option to yes "
                            "and restart the server.")
        log.log("warning", f"!!! Warning: short read while loading the AOF file {name}!!!")
        if not cut:
            log.log("warning", f"AOF {name} loaded up to offset {check.ok_up_to} because aof-load-truncated "
                               "is enabled (the file is left as it is)")
            return
        log.log("warning", f"!!! Truncating the AOF {name} at offset {check.ok_up_to} !!!")
        os.truncate(path, check.ok_up_to)
        log.log("warning", f"AOF {name} loaded anyway because aof-load-truncated is enabled")

    def load_rdb_part(self, path: str) -> int:
        """Load the RDB at the start of a file (a base, or an old preamble AOF); its length."""
        with open(path, "rb") as stream:
            if stream.read(5) != b"REDIS":
                return 0
            stream.seek(0)
            reader = rdb.load(stream, self.config)
            dbs = self.worker.dbs
            for index, key, value, when in reader:
                dbs[index].store_expiring(key, keyslot(key), value, when)
            from ..worker.persistence import load_functions
            load_functions(reader.functions)
            return reader.size

    # -- rewriting ---------------------------------------------------------------------------------
    def bgrewrite(self) -> bytes:
        """BGREWRITEAOF on this worker."""
        if self.child:
            raise errors.CommandError(ALREADY_REWRITING)
        if self.busy():
            self.scheduled = True
            return resp.status(REWRITE_SCHEDULED)
        if not self.rewrite_background():
            raise errors.CommandError("ERR Can't execute an AOF background rewriting. "
                                      "Please check the server logs for more information.")
        return resp.status(REWRITE_STARTED)

    def rewrite_background(self) -> bool:
        """Fork a child writing a new base; meanwhile new records go to a new incr file."""
        self.scheduled = False
        try:
            os.makedirs(self.dir, exist_ok=True)
            self.prepare_incr_for_rewrite()
        except OSError as exc:
            log.log("warning", f"Can't open a new AOF file for the rewrite: {exc}")
            self.rewrite_failed()
            return False
        temp = self.path(f"temp-rewriteaof-bg-{os.getpid()}.aof")
        self.child_started = time.time()
        pid = os.fork()
        if pid == 0:
            self.run_child(temp)
        self.child = pid
        self.child_temp = temp
        if self.state == WAIT_REWRITE and not self.logging:
            self.start_logging()
        log.log("notice", f"Background append only file rewriting started by pid {pid}")
        return True

    def prepare_incr_for_rewrite(self) -> None:
        """Flush what waits, then switch to a new incr file (ON: listed in the manifest now;
        WAIT_REWRITE: a temp file, listed when the base exists; OFF: none)."""
        if self.state == OFF:
            return
        self.end_transaction()
        self.write_out()
        if self.state == WAIT_REWRITE:
            self.open_for_append(self.temp_incr_path(), new=True)
            self.size = 0
            self.written_at_fsync = 0
            return
        manifest = self.manifest.copy()
        manifest.incr_seq += 1
        item = AofFile(self.incr_name(manifest.incr_seq), manifest.incr_seq, "i")
        manifest.incrs.append(item)
        self.open_for_append(self.path(item.name), new=True)
        self.persist_manifest(manifest)
        self.child_incr_from = manifest.incr_seq
        self.written_at_fsync = self.size

    def run_child(self, temp: str) -> None:
        """The forked copy: write the base and exit without running any cleanup."""
        code = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent()
            with open(temp, "wb") as stream:
                self.write_base(stream)
                stream.flush()
                os.fsync(stream.fileno())
            code = 0
        except BaseException:
            log.log("warning", f"Background AOF rewrite failed: {traceback.format_exc()}")
        finally:
            os._exit(code)

    def reap_child(self) -> None:
        try:
            pid, status = os.waitpid(self.child, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.child, 1
        if pid == 0:
            return
        self.child = 0
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        self.last_rewrite_time = int(time.time() - self.child_started)
        if ok:
            try:
                self.rewrite_done()
                log.log("notice", "Background AOF rewrite finished successfully")
                return
            except OSError as exc:
                log.log("warning", f"Error finishing the AOF rewrite: {exc}")
        elif os.WIFSIGNALED(status):
            log.log("warning", f"Background AOF rewrite terminated by signal {os.WTERMSIG(status)}")
        else:
            log.log("warning", "Background AOF rewrite terminated with error")
        self.rewrite_failed()

    def rewrite_done(self) -> None:
        """The child wrote the base: it and the incr files since the fork become the AOF."""
        os.makedirs(self.dir, exist_ok=True)
        if self.state == ON:
            old = self.manifest
            manifest = old.copy()
        else:
            # Not (yet) on: what is on disk is an AOF of an earlier time (or none). Its files
            # go once the new manifest is in place; the sequence numbers continue from it.
            old = Manifest()
            if os.path.exists(self.path(manifest_name(self.name))):
                old = Manifest.read(self.path(manifest_name(self.name)))
            manifest = Manifest(base_seq=old.base_seq, incr_seq=old.incr_seq)
        manifest.base_seq += 1
        manifest.base = AofFile(self.base_name(manifest.base_seq), manifest.base_seq, "b")
        os.rename(self.child_temp, self.path(manifest.base.name))
        if self.state == WAIT_REWRITE:
            manifest.incr_seq += 1
            item = AofFile(self.incr_name(manifest.incr_seq), manifest.incr_seq, "i")
            os.rename(self.temp_incr_path(), self.path(item.name))
            self.incr_path = self.path(item.name)
            manifest.incrs = [item]
        elif self.state == ON:
            manifest.incrs = [f for f in manifest.incrs if f.seq >= self.child_incr_from]
        else:
            manifest.incrs = []
        manifest.history = []
        manifest.dropped = set()          # the files holding dropped units are gone
        self.persist_manifest(manifest)
        keep = {f.name for f in manifest.files()}
        self.delete_files([f for f in old.files() + old.history if f.name not in keep])
        if self.state == WAIT_REWRITE:
            self.state = ON
            log.log("notice", "Background append only file rewriting completed: the AOF is on")
        self.size = self.base_size = self.files_size(manifest)
        self.written_at_fsync = self.size if self.state == ON else 0
        self.rewrites += 1
        self.last_rewrite_ok = True
        self.consecutive_failures = 0

    def rewrite_failed(self) -> None:
        try:
            if self.child_temp:
                os.unlink(self.child_temp)
        except OSError:
            pass
        self.child_temp = ""
        self.last_rewrite_ok = False
        self.consecutive_failures += 1
        self.retry_at = time.monotonic() + REWRITE_RETRY_DELAY
        if self.state == WAIT_REWRITE:
            # What the temp incr holds is in the next attempt's base: start it again then.
            self.stop_logging()
            self.close_fd()
            try:
                os.unlink(self.temp_incr_path())
            except OSError:
                pass

    def kill_child(self) -> None:
        if not self.child:
            return
        try:
            os.kill(self.child, signal.SIGKILL)
            os.waitpid(self.child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.child = 0
        if self.child_temp:
            try:
                os.unlink(self.child_temp)
            except OSError:
                pass
            self.child_temp = ""

    # -- appendonly yes/no at runtime, and the end ---------------------------------------------------
    def start_runtime(self) -> None:
        """CONFIG SET appendonly yes (startAppendOnly): the AOF is on once a rewrite has
        written its base; until then records go to a temp incr file."""
        self.kill_child()
        self.state = WAIT_REWRITE
        self.retry_at = 0.0
        if self.busy():
            self.scheduled = True
            log.log("notice", "AOF was enabled but there is already another background operation. "
                              "An AOF background was scheduled to start when possible.")
            return
        log.log("notice", "AOF was enabled: rewriting the AOF in the background")
        self.rewrite_background()

    def stop(self) -> None:
        """CONFIG SET appendonly no (stopAppendOnly): flush, fsync, close; the files stay."""
        self.end_transaction()
        if self.state == ON:
            self.write_out()
        self.kill_child()
        waiting = self.state == WAIT_REWRITE
        self.stop_logging()
        self.close_fd()
        if waiting:
            try:
                os.unlink(self.temp_incr_path())
            except OSError:
                pass
        self.state = OFF
        self.scheduled = False
        log.log("notice", "AOF is off")

    def shutdown(self) -> None:
        """The worker is exiting: its records on disk, fsynced; a rewrite in progress dropped."""
        self.kill_child()
        if self.state == OFF:
            return
        self.end_transaction()
        if self.state == ON:
            self.write_out()
            if self.fd >= 0:
                log.log("notice", "Calling fsync() on the AOF file.")
        self.close_fd()

    # -- INFO ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, int]:
        now = time.time()
        return {
            "aof_enabled": 0 if self.state == OFF else 1,
            "aof_rewrite_in_progress": 1 if self.child else 0,
            "aof_rewrite_scheduled": 1 if self.scheduled else 0,
            "aof_last_rewrite_time_sec": self.last_rewrite_time,
            "aof_current_rewrite_time_sec": int(now - self.child_started) if self.child else -1,
            "aof_last_bgrewrite_ok": 1 if self.last_rewrite_ok else 0,
            "aof_rewrites": self.rewrites,
            "aof_rewrites_consecutive_failures": self.consecutive_failures,
            "aof_last_write_ok": 1 if self.write_ok else 0,
            "aof_current_size": self.size,
            "aof_base_size": self.base_size,
            "aof_buffer_length": sum(map(len, self.buf)),
            "aof_pending_bio_fsync": 1 if self.fsync_busy() else 0,
        }


# -- worker commands -------------------------------------------------------------------------------

def _aof(ctx) -> Aof:
    return ctx.stats["worker"].aof


@commands.internal_command("__bgrewriteaof", 1)
def bgrewriteaof(ctx, argv: list[bytes]) -> bytes:
    return _aof(ctx).bgrewrite()


@commands.internal_command("__aofunit", 4)
def aofunit(ctx, argv: list[bytes]) -> bytes:
    """__aofunit <id> c|p <participants>: this frame's records are a part of a cross-shard
    unit (sent first in the frame by the coordinator while appendonly is on)."""
    uid, kind, participants = argv[1], argv[2], argv[3]
    if kind not in (COMMIT, ROUND) or not uid.isalnum() or not all(p.isdigit() for p in participants.split(b",")):
        raise errors.CommandError("ERR syntax error")
    _aof(ctx).begin_unit(uid, kind, participants)
    return resp.OK
