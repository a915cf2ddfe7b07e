"""Stream commands and consumer groups, after Valkey 8's t_stream.c (replies, errors and
their order, lag and entries-read bookkeeping).

A stream is a `Stream`: a list of `Node`s, each standing for one of Valkey's listpack nodes
(the radix tree's values), with the node boundaries Valkey would have — a node takes entries
until it holds stream-node-max-entries of them (deleted ones included) or its listpack would
reach stream-node-max-bytes — so that approximate trimming (`~`, which removes whole nodes
only), XINFO's radix-tree counts and the listpacks written to an RDB file come out as Valkey's.

A node keeps its live entries in compact arrays: the IDs in two `array('Q')` (milliseconds and
sequence, searched with bisect) and the entries already encoded as RESP (`[id, [field, value,
…]]`, the same in RESP2 and RESP3) back to back in one bytearray, with the offset of each. So
a range read is a few slices per node however many entries it returns, appending is
amortised O(1), and an entry costs its RESP bytes plus 20 bytes. Deleted entries are dropped
from a node at once; only their count and their listpack bytes are remembered (Valkey keeps
them as flagged tombstones until the whole node goes).

Consumer groups: `Group` (last delivered ID, entries read, the PEL as a SortedDict of ID →
`Nack`, consumers by name), `Consumer` (seen/active times, its own PEL sharing the Nacks).

Blocking XREAD/XREADGROUP use blocking.py like the list pops: a reader that finds nothing and
gave BLOCK waits (in a transaction or a script it answers nil at once, as Valkey 8 does); a `$`
is first rewritten in the command to the stream's last ID (as Valkey rewrites it), so that the
re-run that serves the waiter returns only entries added after it blocked. XREADGROUP re-runs
as Valkey 8 re-executes it, so a destroyed group (or a deleted stream) answers the waiter with
NOGROUP and a stream replaced by another type with WRONGTYPE; a waiting XREAD is re-run only
when the written key holds a stream. XREAD's `+` (the last entry) is Valkey 8's (from Redis 7.4).

Persistence: XADD with a generated ID or an approximate trim, XTRIM with `~`, and the group
reads and claims are logged in the AOF as their effect (`take_effects`, read by
persist/aof.py), as Valkey propagates them: XADD with the ID it got and `MAXLEN =`/`MINID =`
the resulting bound, XCLAIM … FORCE JUSTID LASTID per delivered entry, XGROUP SETID …
ENTRIESREAD and XGROUP CREATECONSUMER. The RDB codec is in persist/rdb.py.
"""
from __future__ import annotations

import struct
import time
from array import array
from bisect import bisect_left, bisect_right
from typing import Iterator

import hiredis
from sortedcontainers import SortedDict

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import LLONG_MAX, arg_ll
from ..numbers import string2ll as parse_ll
from ..slots import keyslot
from . import blocking, keyspace, t_keys
from .context import Ctx
from .t_list import entry_size as lp_string_size

UINT64_MAX = (1 << 64) - 1
MAX_ID = (UINT64_MAX, UINT64_MAX)
ZERO_ID = (0, 0)
INVALID_ENTRIES_READ = -1                # SCG_INVALID_ENTRIES_READ
LISTPACK_MAX_SIZE = 1 << 30              # STREAM_LISTPACK_MAX_SIZE
NODE_RESP_LIMIT = (1 << 32) - 1          # a node's RESP bytes must fit its array('I') offsets
XAUTOCLAIM_ATTEMPTS_FACTOR = 10
XAUTOCLAIM_MAX_COUNT = LLONG_MAX // 16   # LONG_MAX / max(sizeof(streamID), attempts_factor)

_WRONGTYPE = errors.WRONGTYPE
_bulk = resp.bulk
_integer = resp.integer
_array_header = resp.array_header
ZERO = resp.ZERO
ONE = resp.ONE
OK = resp.OK
EMPTY_ARRAY = resp.EMPTY_ARRAY
_PAIR = b"*2\r\n"
_ID_STRUCT = struct.Struct(">QQ")

INVALID_ID = "ERR Invalid stream ID specified as stream command argument"
ID_ZERO = "ERR The ID specified in XADD must be greater than 0-0"
ID_TOO_SMALL = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
EXHAUSTED = "ERR The stream has exhausted the last possible ID, unable to add more items"
TOO_LARGE = "ERR Elements are too large to be stored"
MAXLEN_NEGATIVE = "ERR The MAXLEN argument must be >= 0."
LIMIT_NEGATIVE = "ERR The LIMIT argument must be >= 0."
MAXLEN_AND_MINID = "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
LIMIT_WITHOUT_STRATEGY = "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
XTRIM_WITHOUT_STRATEGY = "ERR syntax error, XTRIM must be called with a trimming strategy"
LIMIT_WITHOUT_APPROX = "ERR syntax error, LIMIT cannot be used without the special ~ option"
START_INTERVAL = "ERR invalid start ID for the interval"
END_INTERVAL = "ERR invalid end ID for the interval"
GROUP_ONLY_XREADGROUP = "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
NOACK_ONLY_XREADGROUP = "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
MISSING_GROUP = "ERR Missing GROUP option for XREADGROUP"
DOLLAR_IN_XREADGROUP = ("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the "
                        "history of this consumer by specifying a proper ID, or use the > ID to get new "
                        "messages. The $ ID would just return an empty result set.")
PLUS_IN_XREADGROUP = ("ERR The + ID is meaningless in the context of XREADGROUP: you want to read the "
                      "history of this consumer by specifying a proper ID, or use the > ID to get new "
                      "messages. The + ID would just return an empty result set.")
LAST_ID_ZERO = "ERR the stream last element ID is 0-0"
GT_IN_XREAD = ("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> "
               "<consumer> option.")
TIMEOUT_NOT_INTEGER = "ERR timeout is not an integer or out of range"
BUSYGROUP = "BUSYGROUP Consumer Group name already exists"
XGROUP_NEEDS_KEY = ("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may "
                    "want to use the MKSTREAM option to create an empty stream automatically.")
ENTRIESREAD_RANGE = "ERR value for ENTRIESREAD must be positive or -1"
ENTRIES_ADDED_NEGATIVE = "ERR entries_added must be positive"
XSETID_BELOW_GIVEN_MAXDEL = "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
XSETID_BELOW_MAXDEL = "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id"
XSETID_BELOW_TOP = "ERR The ID specified in XSETID is smaller than the target stream top item"
XSETID_BELOW_LENGTH = "ERR The entries_added specified in XSETID is smaller than the target stream length"
BAD_MIN_IDLE_XCLAIM = "ERR Invalid min-idle-time argument for XCLAIM"
BAD_MIN_IDLE_XAUTOCLAIM = "ERR Invalid min-idle-time argument for XAUTOCLAIM"
BAD_IDLE = "ERR Invalid IDLE option argument for XCLAIM"
BAD_TIME = "ERR Invalid TIME option argument for XCLAIM"
BAD_RETRYCOUNT = "ERR Invalid RETRYCOUNT option argument for XCLAIM"
COUNT_POSITIVE = "ERR COUNT must be > 0"

XGROUP_HELP = [
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Print this help.",
]
XINFO_HELP = [
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Print this help.",
]


def _nogroup(key: bytes, group: bytes, tail: str = "") -> str:
    return f"NOGROUP No such key '{_text(key)}' or consumer group '{_text(group)}'{tail}"


def _nogroup_for_key(group: bytes, key: bytes) -> str:
    return f"NOGROUP No such consumer group '{_text(group)}' for key name '{_text(key)}'"


def _subcommand_syntax(argv: list[bytes]) -> str:
    return (f"ERR unknown subcommand or wrong number of arguments for '{_text(argv[1][:128])}'. "
            f"Try {_text(argv[0]).upper()} HELP.")


def _text(value: bytes) -> str:
    """An argument as C's %s prints it: up to its first NUL byte."""
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


# -- stream IDs --------------------------------------------------------------------------------

_C_SPACES = b" \t\n\v\f\r"


def _string2ull(text: bytes) -> int | None:
    """Valkey's string2ull: string2ll when it parses (a negative number is refused), else
    C's strtoull (leading spaces and a sign allowed, the whole string used, no overflow)."""
    value = parse_ll(text)
    if value is not None:
        return value if value >= 0 else None
    digits = text.lstrip(_C_SPACES)
    negative = digits[:1] == b"-"
    if digits[:1] in (b"+", b"-"):
        digits = digits[1:]
    if not digits.isdigit():
        return None
    n = int(digits)
    if n > UINT64_MAX:
        return None
    return (-n) & UINT64_MAX if negative else n


def parse_id(arg: bytes, missing_seq: int = 0, strict: bool = False,
             seq_star: bool = False) -> tuple[int, int, bool]:
    """streamGenericParseIDOrReply: (ms, seq, seq_given). `-` and `+` are the smallest and
    largest IDs unless strict; `ms` alone takes missing_seq; `ms-*` (only with seq_star, for
    XADD) leaves the sequence to be generated (seq_given False)."""
    if len(arg) > 127:
        raise CommandError(INVALID_ID)
    if b"\0" in arg:
        arg = arg.split(b"\0", 1)[0]
    if arg == b"-" or arg == b"+":
        if strict:
            raise CommandError(INVALID_ID)
        return (0, 0, True) if arg == b"-" else (UINT64_MAX, UINT64_MAX, True)
    ms_text, dash, seq_text = arg.partition(b"-")
    ms = _string2ull(ms_text)
    if ms is None:
        raise CommandError(INVALID_ID)
    if not dash:
        return ms, missing_seq, True
    if seq_star and seq_text == b"*":
        return ms, 0, False
    seq = _string2ull(seq_text)
    if seq is None:
        raise CommandError(INVALID_ID)
    return ms, seq, True


def parse_strict_id(arg: bytes, missing_seq: int = 0) -> tuple[int, int]:
    ms, seq, _ = parse_id(arg, missing_seq, True)
    return ms, seq


def parse_interval_id(arg: bytes, missing_seq: int) -> tuple[tuple[int, int], bool]:
    """streamParseIntervalIDOrReply: (ID, exclusive) where `(` makes an exclusive bound."""
    if len(arg) > 1 and arg[0] == 40:        # '('
        ms, seq, _ = parse_id(arg[1:], missing_seq, True)
        return (ms, seq), True
    ms, seq, _ = parse_id(arg, missing_seq)
    return (ms, seq), False


def incr_id(sid: tuple[int, int]) -> tuple[int, int] | None:
    """The next ID, None past the last possible one (streamIncrID)."""
    ms, seq = sid
    if seq < UINT64_MAX:
        return ms, seq + 1
    if ms < UINT64_MAX:
        return ms + 1, 0
    return None


def decr_id(sid: tuple[int, int]) -> tuple[int, int] | None:
    ms, seq = sid
    if seq:
        return ms, seq - 1
    if ms:
        return ms - 1, UINT64_MAX
    return None


def id_text(sid: tuple[int, int]) -> bytes:
    return b"%d-%d" % sid


def id_bulk(sid: tuple[int, int]) -> bytes:
    return _bulk(b"%d-%d" % sid)


def _parse_range(start_arg: bytes, end_arg: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive (start, end) from XRANGE-style bounds, with `(` for exclusive ones."""
    start, exclusive = parse_interval_id(start_arg, 0)
    if exclusive:
        start = incr_id(start)
        if start is None:
            raise CommandError(START_INTERVAL)
    end, exclusive = parse_interval_id(end_arg, UINT64_MAX)
    if exclusive:
        end = decr_id(end)
        if end is None:
            raise CommandError(END_INTERVAL)
    return start, end


# -- listpack sizes (for the node boundaries Valkey has) ---------------------------------------

def _int64(v: int) -> int:
    """v as lpAppendInteger stores a uint64 difference: the signed 64-bit value."""
    v &= UINT64_MAX
    return v - (1 << 64) if v >= 1 << 63 else v


def lp_int_size(v: int) -> int:
    """Bytes of a listpack integer entry (encoding, data, back-length)."""
    if 0 <= v <= 127:
        return 2
    if -4096 <= v <= 4095:
        return 3
    if -32768 <= v <= 32767:
        return 4
    if -8388608 <= v <= 8388607:
        return 5
    if -2147483648 <= v <= 2147483647:
        return 6
    return 10


_LP_HEADER_AND_END = 7
# Rough CPython sizes for __sizeof__: a node's object and arrays, a PEL entry (its ID tuple,
# its Nack and its two SortedDict slots), a consumer, a group, the stream itself.
_NODE_OVERHEAD = 400
_NACK_OVERHEAD = 260
_CONSUMER_OVERHEAD = 600
_GROUP_OVERHEAD = 800
_STREAM_OVERHEAD = 200


def entry_blob(sid: tuple[int, int], pairs: list[bytes]) -> bytes:
    """An entry as XRANGE replies it: [id, [field, value, …]]."""
    return b"".join((_PAIR, _bulk(b"%d-%d" % sid), _array_header(len(pairs)), *map(_bulk, pairs)))


# -- the value types ---------------------------------------------------------------------------

class Node:
    """One of Valkey's listpack nodes: its master entry (ID and fields), its live entries, and
    what its listpack would hold besides (tombstones, byte size)."""

    __slots__ = ("ms", "seq", "offs", "resp", "master", "fields", "deleted", "last", "lp_body")

    def __init__(self, master: tuple[int, int], fields: tuple[bytes, ...], lp_body: int) -> None:
        self.ms = array("Q")          # the live entries' IDs
        self.seq = array("Q")
        self.offs = array("I")        # where each live entry's RESP starts in `resp`
        self.resp = bytearray()
        self.master = master          # the radix tree key: the first ID the node took
        self.fields = fields          # the master entry's fields
        self.deleted = 0              # tombstones (Valkey's 'deleted' count)
        self.last = master            # the last ID the node took, deleted or not
        self.lp_body = lp_body        # listpack bytes but for the count and deleted entries

    def lp_bytes(self) -> int:
        return self.lp_body + lp_int_size(len(self.ms)) + lp_int_size(self.deleted)

    def lower(self, ms: int, seq: int) -> int:
        """Index of the first entry whose ID is >= (ms, seq)."""
        m = self.ms
        a = bisect_left(m, ms)
        return bisect_left(self.seq, seq, a, bisect_right(m, ms, a))

    def upper(self, ms: int, seq: int) -> int:
        """Index of the first entry whose ID is > (ms, seq)."""
        m = self.ms
        a = bisect_left(m, ms)
        return bisect_right(self.seq, seq, a, bisect_right(m, ms, a))

    def span(self, i: int, j: int) -> bytes:
        """The RESP of entries i..j-1."""
        offs = self.offs
        return self.resp[offs[i]:offs[j] if j < len(offs) else len(self.resp)]

    def entry(self, i: int) -> bytes:
        return self.span(i, i + 1)

    def id_at(self, i: int) -> tuple[int, int]:
        return self.ms[i], self.seq[i]

    def load(self, sid: tuple[int, int], pairs: list[bytes]) -> None:
        """Add an entry read from a file (the caller sets the listpack facts)."""
        self.ms.append(sid[0])
        self.seq.append(sid[1])
        self.offs.append(len(self.resp))
        self.resp += entry_blob(sid, pairs)

    def pairs(self) -> Iterator[tuple[tuple[int, int], list[bytes]]]:
        """(ID, [field, value, …]) of each live entry (for the RDB writer)."""
        reader = hiredis.Reader()
        reader.feed(bytes(self.resp))
        ms, seq = self.ms, self.seq
        for i in range(len(ms)):
            yield (ms[i], seq[i]), reader.gets()[1]

    def remove(self, i: int) -> None:
        """Drop live entry i (it becomes a tombstone)."""
        offs = self.offs
        start = offs[i]
        end = offs[i + 1] if i + 1 < len(offs) else len(self.resp)
        del self.resp[start:end]
        del self.ms[i], self.seq[i], offs[i]
        size = end - start
        for k in range(i, len(offs)):
            offs[k] -= size
        self.deleted += 1

    def remove_head(self, k: int) -> None:
        """Drop the first k live entries."""
        if k >= len(self.ms):
            self.resp = bytearray()
            self.offs = array("I")
        else:
            base = self.offs[k]
            del self.resp[:base]
            self.offs = array("I", [o - base for o in self.offs[k:]])
        del self.ms[:k], self.seq[:k]
        self.deleted += k


class Nack:
    """A pending entry: last delivery time (ms), delivery count, the consumer owning it."""

    __slots__ = ("time", "count", "consumer")

    def __init__(self, time: int, count: int, consumer: bytes | None) -> None:
        self.time = time
        self.count = count
        self.consumer = consumer


class Consumer:
    __slots__ = ("name", "seen", "active", "pel")

    def __init__(self, name: bytes, seen: int, active: int = -1) -> None:
        self.name = name
        self.seen = seen
        self.active = active
        self.pel: SortedDict = SortedDict()     # ID → the Nack it shares with the group's PEL


class Group:
    __slots__ = ("last_id", "entries_read", "pel", "consumers")

    def __init__(self, last_id: tuple[int, int], entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: SortedDict = SortedDict()     # ID → Nack
        self.consumers: dict[bytes, Consumer] = {}

    def consumer(self, name: bytes, now: int) -> tuple[Consumer, bool]:
        """The named consumer, created if missing (streamCreateConsumer); (it, created)."""
        consumer = self.consumers.get(name)
        if consumer is not None:
            return consumer, False
        consumer = self.consumers[name] = Consumer(name, now)
        return consumer, True


class Stream:
    """A stream value (see the module docstring)."""

    __slots__ = ("nodes", "keys", "length", "last_id", "first_id", "max_deleted", "entries_added",
                 "groups")

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.keys: list[tuple[int, int]] = []    # each node's master ID, for bisect
        self.length = 0
        self.last_id = ZERO_ID
        self.first_id = ZERO_ID
        self.max_deleted = ZERO_ID
        self.entries_added = 0
        self.groups: dict[bytes, Group] | None = None

    def __sizeof__(self) -> int:
        """An estimate of the bytes held (sys.getsizeof, for the memory accounting): up to 32
        nodes sampled and scaled, plus the groups' PELs and consumers."""
        nodes = self.nodes
        step = max(len(nodes) // 32, 1)
        sample = nodes[::step]
        per_node = sum(len(n.resp) + 20 * len(n.ms) + _NODE_OVERHEAD for n in sample)
        size = _STREAM_OVERHEAD + per_node * len(nodes) // max(len(sample), 1)
        for group in (self.groups or {}).values():
            size += _GROUP_OVERHEAD + _NACK_OVERHEAD * len(group.pel) + _CONSUMER_OVERHEAD * len(group.consumers)
        return size

    # -- appending ---------------------------------------------------------------------------
    def next_id(self, given: tuple[int, int] | None, seq_given: bool) -> tuple[int, int]:
        """The ID XADD gives its entry (streamAppendItem's rules), or the EDOM error."""
        last = self.last_id
        if given is None:
            now = _now()
            new = (now, 0) if now > last[0] else incr_id(last)
        elif seq_given:
            new = given
        elif last[0] == given[0]:
            if last[1] == UINT64_MAX:
                raise CommandError(ID_TOO_SMALL)
            new = (last[0], last[1] + 1)
        else:
            new = (given[0], 0)
        if new is None or new <= last:
            raise CommandError(ID_TOO_SMALL)
        return new

    def append(self, sid: tuple[int, int], pairs: list[bytes], max_bytes: int, max_entries: int) -> None:
        """Add an entry of field/value pairs with ID sid (> last_id), in a new node when the
        tail one is full (streamAppendItem)."""
        total = 0
        for x in pairs:
            total += len(x)
        nodes = self.nodes
        node = nodes[-1] if nodes else None
        blob = entry_blob(sid, pairs)
        if node is not None:
            if max_bytes <= 0 or max_bytes > LISTPACK_MAX_SIZE:
                max_bytes = LISTPACK_MAX_SIZE
            if (node.lp_bytes() + total >= max_bytes
                    or (max_entries and len(node.ms) + node.deleted >= max_entries)
                    or len(node.resp) + len(blob) > NODE_RESP_LIMIT):
                node.resp = bytearray(node.resp)     # lpShrinkToFit: no spare room kept
                node = None
        fields = tuple(pairs[0::2])
        values = pairs[1::2]
        nfields = len(fields)
        if node is None:
            body = _LP_HEADER_AND_END + lp_int_size(nfields) + sum(map(lp_string_size, fields)) + 2
            node = Node(sid, fields, body)
            nodes.append(node)
            self.keys.append(sid)
            same = True
        else:
            same = fields == node.fields
        master = node.master
        size = (2 + lp_int_size(_int64(sid[0] - master[0])) + lp_int_size(_int64(sid[1] - master[1]))
                + sum(map(lp_string_size, values)))
        if same:
            size += lp_int_size(nfields + 3)
        else:
            size += lp_int_size(nfields) + sum(map(lp_string_size, fields)) + lp_int_size(2 * nfields + 4)
        node.lp_body += size
        node.ms.append(sid[0])
        node.seq.append(sid[1])
        node.offs.append(len(node.resp))
        node.resp += blob
        node.last = sid
        self.length += 1
        self.entries_added += 1
        self.last_id = sid
        if self.length == 1:
            self.first_id = sid

    # -- finding -----------------------------------------------------------------------------
    def locate(self, sid: tuple[int, int]) -> tuple[int, int] | None:
        """(node index, entry index) of the live entry sid, else None."""
        ni = bisect_right(self.keys, sid) - 1
        if ni < 0:
            return None
        node = self.nodes[ni]
        i = node.lower(*sid)
        if i < len(node.ms) and node.ms[i] == sid[0] and node.seq[i] == sid[1]:
            return ni, i
        return None

    def entry_resp(self, sid: tuple[int, int]) -> bytes | None:
        found = self.locate(sid)
        if found is None:
            return None
        return self.nodes[found[0]].entry(found[1])

    def first_live(self) -> tuple[int, int] | None:
        for node in self.nodes:
            if node.ms:
                return node.ms[0], node.seq[0]
        return None

    def last_live(self) -> tuple[int, int] | None:
        """streamLastValidID."""
        for node in reversed(self.nodes):
            if node.ms:
                return node.ms[-1], node.seq[-1]
        return None

    def range(self, start: tuple[int, int], end: tuple[int, int], count: int = 0) -> tuple[int, list]:
        """Entries start..end (inclusive), at most count (0: all): (n, RESP chunks)."""
        out: list = []
        n = 0
        if not self.length or start > end:
            return 0, out
        nodes = self.nodes
        ni = bisect_right(self.keys, start) - 1
        if ni < 0:
            ni = 0
        first = True
        while ni < len(nodes):
            node = nodes[ni]
            ni += 1
            size = len(node.ms)
            if not size:
                continue
            i = node.lower(*start) if first else 0
            first = False
            stop = (node.ms[-1], node.seq[-1]) > end
            j = node.upper(*end) if stop else size
            if count and j - i >= count - n:
                j = i + count - n
                stop = True
            if j > i:
                out.append(node.span(i, j))
                n += j - i
            if stop:
                break
        return n, out

    def rev_range(self, start: tuple[int, int], end: tuple[int, int], count: int = 0) -> tuple[int, list]:
        """Entries end..start, newest first, at most count (0: all)."""
        out: list = []
        if not self.length or start > end:
            return 0, out
        nodes = self.nodes
        ni = bisect_right(self.keys, end) - 1
        first = True
        while ni >= 0:
            node = nodes[ni]
            ni -= 1
            size = len(node.ms)
            if not size:
                continue
            j = node.upper(*end) if first else size
            first = False
            stop = (node.ms[0], node.seq[0]) < start
            i = node.lower(*start) if stop else 0
            for k in range(j - 1, i - 1, -1):
                out.append(node.entry(k))
                if count and len(out) >= count:
                    return len(out), out
            if stop:
                break
        return len(out), out

    def iter_from(self, start: tuple[int, int]):
        """(node, index) of each live entry from start on, oldest first."""
        nodes = self.nodes
        ni = bisect_right(self.keys, start) - 1
        if ni < 0:
            ni = 0
        first = True
        while ni < len(nodes):
            node = nodes[ni]
            ni += 1
            i = node.lower(*start) if first else 0
            first = False
            while i < len(node.ms):
                yield node, i
                i += 1

    # -- deleting ----------------------------------------------------------------------------
    def delete(self, sid: tuple[int, int]) -> bool:
        found = self.locate(sid)
        if found is None:
            return False
        ni, i = found
        node = self.nodes[ni]
        if len(node.ms) == 1:            # its last live entry: the whole node goes
            del self.nodes[ni]
            del self.keys[ni]
        else:
            node.remove(i)
        self.length -= 1
        return True

    def trim(self, maxlen: int | None, minid: tuple[int, int] | None, approx: bool, limit: int) -> int:
        """streamTrim: drop the oldest entries down to maxlen, or those below minid; with
        approx only whole nodes; at most limit entries (0: no limit). Returns how many."""
        nodes, keys = self.nodes, self.keys
        deleted = 0
        while nodes:
            if maxlen is not None and self.length <= maxlen:
                break
            node = nodes[0]
            entries = len(node.ms)
            if limit and deleted + entries > limit:
                break
            if maxlen is not None:
                whole = self.length - entries >= maxlen
            else:
                whole = node.last < minid
            if whole:
                del nodes[0]
                del keys[0]
                self.length -= entries
                deleted += entries
                continue
            if approx:
                break
            k = self.length - maxlen if maxlen is not None else node.lower(*minid)
            if k > 0:
                node.remove_head(k)
                self.length -= k
                deleted += k
            break
        if not self.length:
            self.first_id = ZERO_ID
        elif deleted:
            self.first_id = self.first_live() or ZERO_ID
        return deleted

    # -- consumer group bookkeeping ------------------------------------------------------------
    def tombstones_from(self, start: tuple[int, int]) -> bool:
        """streamRangeHasTombstones(s, start, NULL)."""
        if not self.length or self.max_deleted == ZERO_ID or self.first_id > self.max_deleted:
            return False
        return start <= self.max_deleted

    def distance(self, sid: tuple[int, int]) -> int:
        """streamEstimateDistanceFromFirstEverEntry: the entries-read counter of sid, or -1."""
        if not self.entries_added:
            return 0
        if not self.length and sid <= self.last_id:
            return self.entries_added
        if sid == self.last_id:
            return self.entries_added
        if sid > self.last_id:
            return INVALID_ENTRIES_READ
        if self.max_deleted == ZERO_ID or self.max_deleted < self.first_id:
            if sid < self.first_id:
                return self.entries_added - self.length
            if sid == self.first_id:
                return self.entries_added - self.length + 1
        return INVALID_ENTRIES_READ

    def lag(self, group: Group) -> int | None:
        """streamReplyWithCGLag's number (None: unknown)."""
        if not self.entries_added:
            return 0
        if group.entries_read != INVALID_ENTRIES_READ and not self.tombstones_from(group.last_id):
            return self.entries_added - group.entries_read
        read = self.distance(group.last_id)
        return None if read == INVALID_ENTRIES_READ else self.entries_added - read

    def advance(self, group: Group, sid: tuple[int, int]) -> None:
        """A group delivers sid, beyond its last ID: move it and its read counter."""
        if group.entries_read != INVALID_ENTRIES_READ and not self.tombstones_from(sid):
            group.entries_read += 1
        elif self.entries_added:
            group.entries_read = self.distance(sid)
        group.last_id = sid

    def rax_nodes(self) -> int:
        """The radix tree's node count (XINFO's radix-tree-nodes) for these node keys, as
        Valkey's rax compresses them: the root, the children of every branching point, and
        every branching point or leaf reached through a compressed run."""
        keys = self.keys
        if not keys:
            return 1
        depth, children, parent = [0], [0], [-1]
        stack = [0]
        prev = None
        for ms, seq in keys:
            k = (ms << 64) | seq
            if prev is not None:
                common = 16 - (((prev ^ k).bit_length() + 7) >> 3)
                last = -1
                while depth[stack[-1]] > common:
                    last = stack.pop()
                top = stack[-1]
                if depth[top] < common:
                    new = len(depth)
                    depth.append(common)
                    children.append(1)
                    parent.append(top)
                    parent[last] = new
                    stack.append(new)
            leaf = len(depth)
            depth.append(16)
            children.append(0)
            parent.append(stack[-1])
            children[stack[-1]] += 1
            stack.append(leaf)
            prev = k
        total = 1 + sum(c for c in children if c >= 2)
        for u in range(1, len(depth)):
            p = parent[u]
            if not (children[p] >= 2 and depth[p] == depth[u] - 1):
                total += 1
        return total


def stream_encoding(value: Stream) -> bytes:
    return b"stream"


t_keys.TYPE_NAMES[Stream] = b"stream"
t_keys.OBJECT_ENCODINGS[Stream] = stream_encoding


def _now() -> int:
    """The command's clock in ms. The AOF loader holds keyspace.now_ms at 0 (so that nothing
    expires meanwhile); group times (XCLAIM TIME's bound, seen times) need the real one."""
    return keyspace.now_ms or int(time.time() * 1000)


# -- AOF effects -------------------------------------------------------------------------------

_effects: list[list[bytes]] | None = None


def take_effects() -> list[list[bytes]] | None:
    """What the AOF logs for the stream command that just ran, instead of the command as it
    came (None: log it as it came); persist/aof.py asks right after the call."""
    global _effects
    out, _effects = _effects, None
    return out


def _xclaim_effect(key: bytes, gname: bytes, group: Group, sid: tuple[int, int], nack: Nack) -> list[bytes]:
    """streamPropagateXCLAIM: an idempotent XCLAIM giving the entry its owner and counters."""
    return [b"XCLAIM", key, gname, nack.consumer, b"0", id_text(sid), b"TIME", b"%d" % nack.time,
            b"RETRYCOUNT", b"%d" % nack.count, b"FORCE", b"JUSTID", b"LASTID", id_text(group.last_id)]


def _setid_effect(key: bytes, gname: bytes, group: Group) -> list[bytes]:
    return [b"XGROUP", b"SETID", key, gname, id_text(group.last_id), b"ENTRIESREAD",
            b"%d" % group.entries_read]


def _state_changed(ctx: Ctx, key: bytes) -> None:
    """A change of a stream's group state: a write for persistence (the AOF, save points, the
    proxy's scratch copy that writes back what was touched) that, as in Valkey, is not a
    modification of the key for WATCH."""
    db = ctx.db
    db.changes += 1
    db.watched.get(key)          # the AOF's script recorder notes the keys it is asked about
    resized = getattr(db, "resized", None)
    if resized is not None:      # the memory accounting estimates the value again
        resized.add(key)
    if ctx.shard < 0:
        db.touch(key)


# -- lookups -----------------------------------------------------------------------------------

def _read_stream(ctx: Ctx, key: bytes, slot: int | None = None) -> Stream | None:
    return ctx.db.lookup_as(key, ctx.slot if slot is None else slot, Stream, read=True)


def _write_stream(ctx: Ctx, key: bytes) -> Stream | None:
    return ctx.db.lookup_as(key, ctx.slot, Stream)


def _entries_reply(n: int, chunks: list) -> bytes:
    return _array_header(n) + b"".join(chunks)


def _node_limits(ctx: Ctx) -> tuple[int, int]:
    config = ctx.config
    return config.get("stream-node-max-bytes", 4096), config.get("stream-node-max-entries", 100)


# -- XADD, XTRIM -------------------------------------------------------------------------------

class AddTrimArgs:
    """streamAddTrimArgs, and where the arguments were (for the AOF rewrite)."""

    __slots__ = ("id", "id_given", "seq_given", "nomkstream", "maxlen", "minid", "approx", "limit",
                 "strategy_idx", "limit_idx", "idpos")

    def __init__(self) -> None:
        self.id: tuple[int, int] | None = None
        self.id_given = False
        self.seq_given = True
        self.nomkstream = False
        self.maxlen: int | None = None
        self.minid: tuple[int, int] | None = None
        self.approx = False
        self.limit = 0
        self.strategy_idx = 0
        self.limit_idx = 0
        self.idpos = 0

    @property
    def trims(self) -> bool:
        return self.maxlen is not None or self.minid is not None


def _parse_add_trim(ctx: Ctx, argv: list[bytes], xadd: bool) -> AddTrimArgs:
    """streamParseAddOrTrimArgsOrReply."""
    args = AddTrimArgs()
    argc = len(argv)
    limit_given = False
    i = 2
    while i < argc:
        more = argc - 1 - i
        opt = argv[i]
        low = opt.lower()
        if xadd and opt == b"*":
            break
        if (low == b"maxlen" or low == b"minid") and more:
            if args.trims:
                raise CommandError(MAXLEN_AND_MINID)
            args.approx = False
            nxt = argv[i + 1]
            if more >= 2 and nxt == b"~":
                args.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            if low == b"maxlen":
                maxlen = arg_ll(argv[i + 1])
                if maxlen < 0:
                    raise CommandError(MAXLEN_NEGATIVE)
                args.maxlen = maxlen
            else:
                args.minid = parse_strict_id(argv[i + 1])
            i += 1
            args.strategy_idx = i
        elif low == b"limit" and more:
            limit = arg_ll(argv[i + 1])
            if limit < 0:
                raise CommandError(LIMIT_NEGATIVE)
            args.limit = limit
            args.limit_idx = i
            limit_given = True
            i += 1
        elif xadd and low == b"nomkstream":
            args.nomkstream = True
        elif xadd:
            ms, seq, seq_given = parse_id(opt, 0, True, seq_star=True)
            args.id = (ms, seq)
            args.seq_given = seq_given
            args.id_given = True
            break
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    args.idpos = i
    if args.limit and not args.trims:
        raise CommandError(LIMIT_WITHOUT_STRATEGY)
    if not xadd and not args.trims:
        raise CommandError(XTRIM_WITHOUT_STRATEGY)
    if limit_given:
        if not args.approx:
            raise CommandError(LIMIT_WITHOUT_APPROX)
    elif args.approx:
        limit = 100 * ctx.config.get("stream-node-max-entries", 100)
        if limit <= 0:
            limit = 10000
        args.limit = min(limit, 1000000)
    else:
        args.limit = 0
    return args


def _rewritten_trim(argv: list[bytes], args: AddTrimArgs, s: Stream) -> list[bytes]:
    """The command with `~ bound [LIMIT n]` as `= <what it left>` (streamRewriteTrimArgument),
    so that a replay trims exactly what this run did."""
    out = list(argv)
    out[args.strategy_idx - 1] = b"="
    if args.maxlen is not None:
        out[args.strategy_idx] = b"%d" % s.length
    else:
        out[args.strategy_idx] = id_text(s.first_live() or MAX_ID)
    if args.limit_idx:
        del out[args.limit_idx:args.limit_idx + 2]
    return out


@worker_command("xadd")
def xadd_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    global _effects
    _effects = None
    args = _parse_add_trim(ctx, argv, True)
    field_pos = args.idpos + 1
    n = len(argv) - field_pos
    if n < 2 or n & 1:
        raise CommandError(errors.wrong_arity("xadd"))
    if args.id_given and args.seq_given and args.id == ZERO_ID:
        raise CommandError(ID_ZERO)
    key = argv[1]
    s = _write_stream(ctx, key)
    created = s is None
    if created:
        if args.nomkstream:
            return resp.null(ctx.proto)
        s = Stream()
    if s.last_id == MAX_ID:
        raise CommandError(EXHAUSTED)
    pairs = argv[field_pos:]
    sid = s.next_id(args.id if args.id_given else None, args.seq_given)
    if sum(map(len, pairs)) > LISTPACK_MAX_SIZE:
        raise CommandError(TOO_LARGE)
    max_bytes, max_entries = _node_limits(ctx)
    s.append(sid, pairs, max_bytes, max_entries)
    if args.trims:
        s.trim(args.maxlen, args.minid, args.approx, args.limit)
    if created:
        ctx.db.store(key, ctx.slot, s)
    else:
        ctx.db.modified(key)
    text = b"%d-%d" % sid
    if args.approx or not args.id_given or not args.seq_given:
        record = list(argv)
        record[args.idpos] = text
        _effects = [_rewritten_trim(record, args, s) if args.approx else record]
    return _bulk(text)


@worker_command("xtrim")
def xtrim_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    global _effects
    _effects = None
    args = _parse_add_trim(ctx, argv, False)
    key = argv[1]
    s = _write_stream(ctx, key)
    if s is None:
        return ZERO
    deleted = s.trim(args.maxlen, args.minid, args.approx, args.limit)
    if deleted:
        if args.approx:
            _effects = [_rewritten_trim(argv, args, s)]
        ctx.db.modified(key)
    return _integer(deleted)


# -- XDEL, XLEN, XRANGE, XREVRANGE -------------------------------------------------------------

@worker_command("xdel")
def xdel_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key = argv[1]
    s = _write_stream(ctx, key)
    if s is None:
        return ZERO
    ids = [parse_strict_id(arg) for arg in argv[2:]]
    deleted = 0
    first_entry = False
    for sid in ids:
        if s.delete(sid):
            if sid == s.first_id:
                first_entry = True
            if sid > s.max_deleted:
                s.max_deleted = sid
            deleted += 1
    if deleted:
        if not s.length:
            s.first_id = ZERO_ID
        elif first_entry:
            s.first_id = s.first_live() or ZERO_ID
        ctx.db.modified(key)
    return _integer(deleted)


@worker_command("xlen")
def xlen_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _read_stream(ctx, argv[1])
    return ZERO if s is None else _integer(s.length)


def _xrange(ctx: Ctx, argv: list[bytes], rev: bool) -> bytes:
    start_arg, end_arg = (argv[3], argv[2]) if rev else (argv[2], argv[3])
    start, end = _parse_range(start_arg, end_arg)
    count = -1
    j = 4
    argc = len(argv)
    while j < argc:
        if argv[j].lower() == b"count" and j + 1 < argc:
            count = max(arg_ll(argv[j + 1]), 0)
            j += 2
        else:
            raise CommandError(errors.SYNTAX)
    s = _read_stream(ctx, argv[1])
    if s is None:
        return EMPTY_ARRAY
    if count == 0:
        return resp.null_array(ctx.proto)
    count = max(count, 0)
    n, chunks = s.rev_range(start, end, count) if rev else s.range(start, end, count)
    return _entries_reply(n, chunks)


@worker_command("xrange")
def xrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _xrange(ctx, argv, False)


@worker_command("xrevrange")
def xrevrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _xrange(ctx, argv, True)


# -- XREAD, XREADGROUP -------------------------------------------------------------------------

def _block_timeout(value: bytes) -> int:
    """getTimeoutFromObjectOrReply in milliseconds (only checked: the proxy keeps time)."""
    ms = parse_ll(value)
    if ms is None:
        raise CommandError(TIMEOUT_NOT_INTEGER)
    if ms < 0:
        raise CommandError(blocking.TIMEOUT_NEGATIVE)
    if ms > LLONG_MAX - _now():
        raise CommandError(blocking.TIMEOUT_OUT_OF_RANGE)
    return ms


def _xread(ctx: Ctx, argv: list[bytes], xreadgroup: bool) -> bytes | None:
    global _effects
    if xreadgroup:
        _effects = []
    argc = len(argv)
    block = False
    count = 0
    streams_arg = 0
    noack = False
    gname = cname = None
    i = 1
    while i < argc:
        more = argc - i - 1
        opt = argv[i].lower()
        if opt == b"block" and more:
            i += 1
            _block_timeout(argv[i])
            block = True
        elif opt == b"count" and more:
            i += 1
            count = max(arg_ll(argv[i]), 0)
        elif opt == b"streams" and more:
            streams_arg = i + 1
            if (argc - streams_arg) & 1:
                name, symbol = ("xreadgroup", ">") if xreadgroup else ("xread", "$")
                raise CommandError(f"ERR Unbalanced '{name}' list of streams: for each stream key an "
                                   f"ID or '{symbol}' must be specified.")
            break
        elif opt == b"group" and more >= 2:
            if not xreadgroup:
                raise CommandError(GROUP_ONLY_XREADGROUP)
            gname, cname = argv[i + 1], argv[i + 2]
            i += 2
        elif opt == b"noack":
            if not xreadgroup:
                raise CommandError(NOACK_ONLY_XREADGROUP)
            noack = True
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if not streams_arg:
        raise CommandError(errors.SYNTAX)
    if xreadgroup and gname is None:
        raise CommandError(MISSING_GROUP)
    nstreams = (argc - streams_arg) // 2
    keys = argv[streams_arg:streams_arg + nstreams]
    serving = ctx.block_mode == blocking.SERVE
    if serving and not xreadgroup and ctx.ready_key is not None:
        # Valkey re-runs a waiting XREAD only when the written key holds a stream
        ready = ctx.db.lookup(ctx.ready_key, keyslot(ctx.ready_key))
        if type(ready) is not Stream:
            return None
    # resolve the IDs (and check types and groups) in argument order
    ids: list[tuple[int, int] | None] = []      # None: '>'
    groups: list[Group | None] = []
    remote = ctx.block_mode == blocking.REMOTE
    if remote:      # queueing a wait across workers: only this worker's keys are here
        low, high = ctx.config["__slot_range__"]
    for k in range(nstreams):
        key = keys[k]
        if remote and not low <= keyslot(key) <= high:
            ids.append(None)
            groups.append(None)
            continue
        value = ctx.db.lookup_read(key, keyslot(key))
        if value is not None and type(value) is not Stream:
            raise CommandError(_WRONGTYPE)
        group = None
        if xreadgroup:
            group = value.groups.get(gname) if value is not None and value.groups else None
            if group is None:
                raise CommandError(_nogroup(key, gname, " in XREADGROUP with GROUP option"))
        groups.append(group)
        arg = argv[streams_arg + nstreams + k]
        if arg == b"$":
            if xreadgroup:
                raise CommandError(DOLLAR_IN_XREADGROUP)
            ids.append(value.last_id if value is not None else ZERO_ID)
            if block:           # what '$' meant when the reader blocked (Valkey rewrites it too)
                argv[streams_arg + nstreams + k] = id_text(ids[-1])
        elif arg == b"+":          # the last entry (Valkey 8, after Redis 7.4)
            if xreadgroup:
                raise CommandError(PLUS_IN_XREADGROUP)
            if value is None:
                ids.append(ZERO_ID)
            else:
                before_last = decr_id(value.last_id)
                if before_last is None:
                    raise CommandError(LAST_ID_ZERO)
                ids.append(before_last)
        elif arg == b">":
            if not xreadgroup:
                raise CommandError(GT_IN_XREAD)
            ids.append(None)
        else:
            ids.append(parse_strict_id(arg))
    # serve what can be served now
    proto = ctx.proto
    now = _now()
    parts: list[bytes] = []
    served = 0
    for k in range(nstreams):
        key = keys[k]
        if remote and not low <= keyslot(key) <= high:
            continue
        s = ctx.db.lookup_read(key, keyslot(key))
        if s is None:
            continue
        gt = ids[k]
        if xreadgroup:
            group = groups[k]
            history = gt is not None
            if not history:
                top = s.last_live() if s.length else None
                serve = top is not None and top > group.last_id
            else:
                serve = True
            consumer, created = group.consumer(cname, now)
            consumer.seen = now
            if created:
                _effects.append([b"XGROUP", b"CREATECONSUMER", key, gname, cname])
                _state_changed(ctx, key)
            if not serve:
                continue
            if history:
                start = incr_id(gt) or ZERO_ID
                n, chunks = _deliver_history(ctx, s, key, gname, group, consumer, start, count)
            else:
                n, chunks = _deliver_new(ctx, s, key, gname, group, consumer, count, noack)
            _state_changed(ctx, key)
        else:
            top = s.last_live() if s.length else None
            if top is None or not top > gt:
                continue
            n, chunks = s.range(incr_id(gt), MAX_ID, count)
        served += 1
        if proto == 2:
            parts.append(_PAIR)
        parts.append(_bulk(key))
        parts.append(_array_header(n))
        parts.extend(chunks)
    if served:
        return (resp.map_header(served, proto) if proto == 3 else _array_header(served)) + b"".join(parts)
    if block:
        return blocking.nothing(ctx, argv, keys, resp.null_array(proto))
    return resp.null_array(proto)


def _deliver_new(ctx: Ctx, s: Stream, key: bytes, gname: bytes, group: Group, consumer: Consumer,
                 count: int, noack: bool) -> tuple[int, list]:
    """XREADGROUP '>': the entries after the group's last ID, each added to the PEL (unless
    NOACK) as this consumer's (streamReplyWithRange with a group)."""
    now = _now()
    chunks = []
    pel = group.pel
    moved = False
    for node, i in s.iter_from(incr_id(group.last_id) or MAX_ID):
        sid = (node.ms[i], node.seq[i])
        if sid > group.last_id:
            s.advance(group, sid)
            moved = True
        chunks.append(node.entry(i))
        if not noack:
            nack = pel.get(sid)
            if nack is None:
                nack = pel[sid] = Nack(now, 1, consumer.name)
            else:          # after an XGROUP SETID back: the entry changes owner
                owner = group.consumers.get(nack.consumer)
                if owner is not None:
                    owner.pel.pop(sid, None)
                nack.consumer = consumer.name
                nack.time = now
                nack.count = 1
            consumer.pel[sid] = nack
            consumer.active = now
            _effects.append(_xclaim_effect(key, gname, group, sid, nack))
        if count and len(chunks) == count:
            break
    if moved:
        _effects.append(_setid_effect(key, gname, group))
    return len(chunks), chunks


def _deliver_history(ctx: Ctx, s: Stream, key: bytes, gname: bytes, group: Group, consumer: Consumer,
                     start: tuple[int, int], count: int) -> tuple[int, list]:
    """XREADGROUP with an ID: the consumer's own pending entries from start on; an entry no
    longer in the stream comes as [id, nil]."""
    now = _now()
    chunks = []
    nil = resp.null_array(ctx.proto)
    for sid in consumer.pel.irange(minimum=start):
        entry = s.entry_resp(sid)
        if entry is None:
            chunks.append(_PAIR + id_bulk(sid) + nil)
        else:
            chunks.append(entry)
            nack = consumer.pel[sid]
            nack.time = now
            nack.count += 1
            _effects.append(_xclaim_effect(key, gname, group, sid, nack))
        if count and len(chunks) == count:
            break
    return len(chunks), chunks


@worker_command("xread")
def xread_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _xread(ctx, argv, False)


@worker_command("xreadgroup")
def xreadgroup_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _xread(ctx, argv, True)


# -- XGROUP ------------------------------------------------------------------------------------

def _xgroup_prepare(ctx: Ctx, argv: list[bytes]) -> tuple[Stream | None, Group | None, bool, int]:
    """The common part of XGROUP's subcommands: options (MKSTREAM, ENTRIESREAD), the key and
    the group, checked in Valkey's order. (stream, group, mkstream, entries_read)."""
    sub = argv[1].lower()
    create, setid = sub == b"create", sub == b"setid"
    mkstream = False
    entries_read = INVALID_ENTRIES_READ
    argc = len(argv)
    i = 5
    while i < argc:
        opt = argv[i].lower()
        if create and opt == b"mkstream":
            mkstream = True
            i += 1
        elif (create or setid) and opt == b"entriesread" and i + 1 < argc:
            entries_read = arg_ll(argv[i + 1])
            if entries_read < 0 and entries_read != INVALID_ENTRIES_READ:
                raise CommandError(ENTRIESREAD_RANGE)
            i += 2
        else:
            raise CommandError(_subcommand_syntax(argv))
    s = _write_stream(ctx, argv[2])
    group = None
    if not mkstream:
        if s is None:
            raise CommandError(XGROUP_NEEDS_KEY)
        group = s.groups.get(argv[3]) if s.groups else None
        if group is None and sub in (b"setid", b"createconsumer", b"delconsumer"):
            raise CommandError(_nogroup_for_key(argv[3], argv[2]))
    elif s is not None and s.groups:
        group = s.groups.get(argv[3])
    return s, group, mkstream, entries_read


@worker_command("xgroup|create")
def xgroup_create(ctx: Ctx, argv: list[bytes]) -> bytes:
    s, _, mkstream, entries_read = _xgroup_prepare(ctx, argv)
    if len(argv) > 8:
        raise CommandError(_subcommand_syntax(argv))
    key, gname = argv[2], argv[3]
    if argv[4] == b"$":
        last = s.last_id if s is not None else ZERO_ID
    else:
        last = parse_strict_id(argv[4])
    if s is None:
        s = Stream()
        ctx.db.store(key, ctx.slot, s)
    if s.groups is None:
        s.groups = {}
    if gname in s.groups:
        raise CommandError(BUSYGROUP)
    s.groups[gname] = Group(last, entries_read)
    _state_changed(ctx, key)
    return OK


@worker_command("xgroup|setid")
def xgroup_setid(ctx: Ctx, argv: list[bytes]) -> bytes:
    s, group, _, entries_read = _xgroup_prepare(ctx, argv)
    if len(argv) not in (5, 7):
        raise CommandError(_subcommand_syntax(argv))
    if argv[4] == b"$":
        last = s.last_id
    else:
        ms, seq, _ = parse_id(argv[4])
        last = (ms, seq)
    group.last_id = last
    group.entries_read = entries_read
    _state_changed(ctx, argv[2])
    return OK


@worker_command("xgroup|destroy")
def xgroup_destroy(ctx: Ctx, argv: list[bytes]) -> bytes:
    s, group, _, _ = _xgroup_prepare(ctx, argv)
    if group is None:
        return ZERO
    key = argv[2]
    del s.groups[argv[3]]
    _state_changed(ctx, key)
    if key in ctx.db.blocked:       # waiting XREADGROUPs of that group learn it is gone
        blocking.signal_ready(ctx.db, key)
    return ONE


@worker_command("xgroup|createconsumer")
def xgroup_createconsumer(ctx: Ctx, argv: list[bytes]) -> bytes:
    _, group, _, _ = _xgroup_prepare(ctx, argv)
    _, created = group.consumer(argv[4], _now())
    if created:
        _state_changed(ctx, argv[2])
    return ONE if created else ZERO


@worker_command("xgroup|delconsumer")
def xgroup_delconsumer(ctx: Ctx, argv: list[bytes]) -> bytes:
    _, group, _, _ = _xgroup_prepare(ctx, argv)
    consumer = group.consumers.pop(argv[4], None)
    if consumer is None:
        return ZERO
    for sid in consumer.pel:
        del group.pel[sid]
    _state_changed(ctx, argv[2])
    return _integer(len(consumer.pel))


@worker_command("xgroup|help")
def xgroup_help(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.array([resp.status(line) for line in XGROUP_HELP])


# -- XSETID, XACK, XPENDING --------------------------------------------------------------------

@worker_command("xsetid")
def xsetid_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    sid = parse_strict_id(argv[2])
    max_xdel = ZERO_ID
    entries_added = -1
    argc = len(argv)
    i = 3
    while i < argc:
        more = argc - 1 - i
        opt = argv[i].lower()
        if opt == b"entriesadded" and more:
            entries_added = arg_ll(argv[i + 1])
            if entries_added < 0:
                raise CommandError(ENTRIES_ADDED_NEGATIVE)
            i += 2
        elif opt == b"maxdeletedid" and more:
            max_xdel = parse_strict_id(argv[i + 1])
            if sid < max_xdel:
                raise CommandError(XSETID_BELOW_GIVEN_MAXDEL)
            i += 2
        else:
            raise CommandError(errors.SYNTAX)
    key = argv[1]
    s = _write_stream(ctx, key)
    if s is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if sid < s.max_deleted:
        raise CommandError(XSETID_BELOW_MAXDEL)
    if s.length:
        if sid < s.last_live():
            raise CommandError(XSETID_BELOW_TOP)
        if entries_added != -1 and s.length > entries_added:
            raise CommandError(XSETID_BELOW_LENGTH)
    s.last_id = sid
    if entries_added != -1:
        s.entries_added = entries_added
    if max_xdel != ZERO_ID:
        s.max_deleted = max_xdel
    _state_changed(ctx, key)
    return OK


@worker_command("xack")
def xack_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key = argv[1]
    s = _read_stream(ctx, key)
    group = s.groups.get(argv[2]) if s is not None and s.groups else None
    if group is None:
        return ZERO
    ids = [parse_strict_id(arg) for arg in argv[3:]]
    acked = 0
    pel = group.pel
    for sid in ids:
        nack = pel.pop(sid, None)
        if nack is not None:
            owner = group.consumers.get(nack.consumer)
            if owner is not None:
                owner.pel.pop(sid, None)
            acked += 1
    if acked:
        _state_changed(ctx, key)
    return _integer(acked)


@worker_command("xpending")
def xpending_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    argc = len(argv)
    if argc != 3 and not 6 <= argc <= 9:
        raise CommandError(errors.SYNTAX)
    minidle = 0
    cname = None
    if argc >= 6:
        startidx = 3
        if argv[3].lower() == b"idle":
            minidle = arg_ll(argv[4])
            if argc < 8:
                raise CommandError(errors.SYNTAX)
            startidx += 2
        count = max(arg_ll(argv[startidx + 2]), 0)
        start, end = _parse_range(argv[startidx], argv[startidx + 1])
        if startidx + 3 < argc:
            cname = argv[startidx + 3]
    key, gname = argv[1], argv[2]
    s = _read_stream(ctx, key)
    group = s.groups.get(gname) if s is not None and s.groups else None
    if group is None:
        raise CommandError(_nogroup(key, gname))
    proto = ctx.proto
    pel = group.pel
    if argc == 3:
        if not pel:
            return b"*4\r\n:0\r\n" + resp.null(proto) + resp.null(proto) + resp.null_array(proto)
        owners = [(name, len(c.pel)) for name, c in sorted(group.consumers.items()) if c.pel]
        return b"".join((b"*4\r\n", _integer(len(pel)), id_bulk(pel.keys()[0]), id_bulk(pel.keys()[-1]),
                         _array_header(len(owners)),
                         *(_PAIR + _bulk(name) + _bulk(b"%d" % n) for name, n in owners)))
    if cname is not None:
        consumer = group.consumers.get(cname)
        if consumer is None:
            return EMPTY_ARRAY
        pel = consumer.pel
    now = _now()
    out = []
    if count:
        for sid in pel.irange(minimum=start, maximum=end):
            nack = pel[sid]
            if minidle and now - nack.time < minidle:
                continue
            out.append(b"".join((b"*4\r\n", id_bulk(sid), _bulk(nack.consumer),
                                 _integer(max(now - nack.time, 0)), _integer(nack.count))))
            if len(out) == count:
                break
    return _array_header(len(out)) + b"".join(out)


# -- XCLAIM, XAUTOCLAIM ------------------------------------------------------------------------

def _claim_group(ctx: Ctx, key: bytes, gname: bytes) -> tuple[Stream, Group]:
    s = _read_stream(ctx, key)
    group = s.groups.get(gname) if s is not None and s.groups else None
    if group is None:
        raise CommandError(_nogroup(key, gname))
    return s, group


def _drop_nack(group: Group, sid: tuple[int, int], nack: Nack) -> None:
    del group.pel[sid]
    owner = group.consumers.get(nack.consumer)
    if owner is not None:
        owner.pel.pop(sid, None)


@worker_command("xclaim")
def xclaim_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    global _effects
    _effects = []
    key, gname, cname = argv[1], argv[2], argv[3]
    s, group = _claim_group(ctx, key, gname)
    minidle = parse_ll(argv[4])
    if minidle is None:
        raise CommandError(BAD_MIN_IDLE_XCLAIM)
    minidle = max(minidle, 0)
    argc = len(argv)
    ids = []
    j = 5
    while j < argc:
        try:
            ids.append(parse_strict_id(argv[j]))
        except CommandError:
            break
        j += 1
    now = _now()
    delivery = -1
    retrycount = -1
    force = justid = False
    last_id = ZERO_ID
    while j < argc:
        more = argc - 1 - j
        opt = argv[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            idle = parse_ll(argv[j])
            if idle is None:
                raise CommandError(BAD_IDLE)
            delivery = now - idle
        elif opt == b"time" and more:
            j += 1
            delivery = parse_ll(argv[j])
            if delivery is None:
                raise CommandError(BAD_TIME)
        elif opt == b"retrycount" and more:
            j += 1
            retrycount = parse_ll(argv[j])
            if retrycount is None:
                raise CommandError(BAD_RETRYCOUNT)
        elif opt == b"lastid" and more:
            j += 1
            last_id = parse_strict_id(argv[j])
        else:
            raise CommandError(f"ERR Unrecognized XCLAIM option '{_text(argv[j])}'")
        j += 1
    changed = False
    propagate_last_id = False
    if last_id > group.last_id:
        group.last_id = last_id
        propagate_last_id = True
        changed = True
    if delivery == -1 or delivery < 0 or delivery > now:
        delivery = now
    consumer, created = group.consumer(cname, now)
    consumer.seen = now
    if created:
        _effects.append([b"XGROUP", b"CREATECONSUMER", key, gname, cname])
        changed = True
    out = []
    pel = group.pel
    for sid in ids:
        nack = pel.get(sid)
        entry = s.entry_resp(sid)
        if entry is None:
            if nack is not None:     # pending for an entry gone from the stream: let it go
                _effects.append(_xclaim_effect(key, gname, group, sid, nack))
                propagate_last_id = False
                _drop_nack(group, sid, nack)
                changed = True
            continue
        if force and nack is None:        # a NACK of no consumer yet
            nack = pel[sid] = Nack(now, 1, None)
        if nack is None:
            continue
        if nack.consumer and minidle and now - nack.time < minidle:
            continue
        if nack.consumer != cname:
            owner = group.consumers.get(nack.consumer)
            if owner is not None:
                owner.pel.pop(sid, None)
        nack.time = delivery
        if retrycount >= 0:
            nack.count = retrycount
        elif not justid:
            nack.count += 1
        if nack.consumer != cname:
            consumer.pel[sid] = nack
            nack.consumer = cname
        out.append(id_bulk(sid) if justid else entry)
        consumer.active = now
        _effects.append(_xclaim_effect(key, gname, group, sid, nack))
        propagate_last_id = False
        changed = True
    if propagate_last_id:
        _effects.append(_setid_effect(key, gname, group))
    if changed:
        _state_changed(ctx, key)
    return _array_header(len(out)) + b"".join(out)


@worker_command("xautoclaim")
def xautoclaim_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    global _effects
    _effects = []
    key, gname, cname = argv[1], argv[2], argv[3]
    minidle = parse_ll(argv[4])
    if minidle is None:
        raise CommandError(BAD_MIN_IDLE_XAUTOCLAIM)
    minidle = max(minidle, 0)
    start, exclusive = parse_interval_id(argv[5], 0)
    if exclusive:
        start = incr_id(start)
        if start is None:
            raise CommandError(START_INTERVAL)
    count = 100
    justid = False
    argc = len(argv)
    j = 6
    while j < argc:
        more = argc - 1 - j
        opt = argv[j].lower()
        if opt == b"count" and more:
            count = parse_ll(argv[j + 1])
            if count is None or not 1 <= count <= XAUTOCLAIM_MAX_COUNT:
                raise CommandError(COUNT_POSITIVE)
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    s, group = _claim_group(ctx, key, gname)
    now = _now()
    changed = False
    consumer, created = group.consumer(cname, now)
    consumer.seen = now
    if created:
        _effects.append([b"XGROUP", b"CREATECONSUMER", key, gname, cname])
        changed = True
    attempts = count * XAUTOCLAIM_ATTEMPTS_FACTOR
    pel = group.pel
    pel_keys = pel.keys()
    pos = pel.bisect_left(start)
    claimed = []
    deleted = []
    while attempts and count and pos < len(pel_keys):
        attempts -= 1
        sid = pel_keys[pos]
        nack = pel[sid]
        entry = s.entry_resp(sid)
        if entry is None:
            _effects.append(_xclaim_effect(key, gname, group, sid, nack))
            _drop_nack(group, sid, nack)
            deleted.append(sid)
            count -= 1
            changed = True
            continue
        pos += 1
        if minidle and now - nack.time < minidle:
            continue
        if nack.consumer != cname:
            owner = group.consumers.get(nack.consumer)
            if owner is not None:
                owner.pel.pop(sid, None)
            consumer.pel[sid] = nack
            nack.consumer = cname
        nack.time = now
        if not justid:
            nack.count += 1
        claimed.append(id_bulk(sid) if justid else entry)
        count -= 1
        consumer.active = now
        _effects.append(_xclaim_effect(key, gname, group, sid, nack))
        changed = True
    cursor = pel_keys[pos] if pos < len(pel_keys) else ZERO_ID
    if changed:
        _state_changed(ctx, key)
    return b"".join((b"*3\r\n", id_bulk(cursor), _array_header(len(claimed)), *claimed,
                     _array_header(len(deleted)), *map(id_bulk, deleted)))


# -- XINFO -------------------------------------------------------------------------------------

def _info_stream(ctx: Ctx, argv: list[bytes]) -> Stream:
    value = ctx.db.lookup_read(argv[2], ctx.slot)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if type(value) is not Stream:
        raise CommandError(_WRONGTYPE)
    return value


def _lag_reply(s: Stream, group: Group, proto: int) -> bytes:
    lag = s.lag(group)
    return resp.null(proto) if lag is None else _integer(lag)


def _entries_read_reply(group: Group, proto: int) -> bytes:
    if group.entries_read == INVALID_ENTRIES_READ:
        return resp.null(proto)
    return _integer(group.entries_read)


@worker_command("xinfo|stream")
def xinfo_stream(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _info_stream(ctx, argv)
    opts = argv[3:]
    full = bool(opts)
    count = 10
    if full:
        if len(opts) not in (1, 3) or opts[0].lower() != b"full":
            raise CommandError(_subcommand_syntax(argv))
        if len(opts) == 3:
            if opts[1].lower() != b"count":
                raise CommandError(_subcommand_syntax(argv))
            count = arg_ll(opts[2])
            if count < 0:
                count = 10
    proto = ctx.proto
    out = [resp.map_header(9 if full else 10, proto),
           _bulk(b"length"), _integer(s.length),
           _bulk(b"radix-tree-keys"), _integer(len(s.nodes)),
           _bulk(b"radix-tree-nodes"), _integer(s.rax_nodes()),
           _bulk(b"last-generated-id"), id_bulk(s.last_id),
           _bulk(b"max-deleted-entry-id"), id_bulk(s.max_deleted),
           _bulk(b"entries-added"), _integer(s.entries_added),
           _bulk(b"recorded-first-entry-id"), id_bulk(s.first_id)]
    if not full:
        nil = resp.null(proto)
        _, first = s.range(ZERO_ID, MAX_ID, 1)
        _, last = s.rev_range(ZERO_ID, MAX_ID, 1)
        out += [_bulk(b"groups"), _integer(len(s.groups) if s.groups else 0),
                _bulk(b"first-entry"), first[0] if first else nil,
                _bulk(b"last-entry"), last[0] if last else nil]
        return b"".join(out)
    n, chunks = s.range(ZERO_ID, MAX_ID, count)
    out += [_bulk(b"entries"), _array_header(n), *chunks, _bulk(b"groups")]
    groups = sorted(s.groups.items()) if s.groups else []
    out.append(_array_header(len(groups)))
    for gname, group in groups:
        out += [resp.map_header(7, proto), _bulk(b"name"), _bulk(gname),
                _bulk(b"last-delivered-id"), id_bulk(group.last_id),
                _bulk(b"entries-read"), _entries_read_reply(group, proto),
                _bulk(b"lag"), _lag_reply(s, group, proto),
                _bulk(b"pel-count"), _integer(len(group.pel)), _bulk(b"pending")]
        pending = []
        for sid, nack in group.pel.items():
            if count and len(pending) >= count:
                break
            pending.append(b"".join((b"*4\r\n", id_bulk(sid), _bulk(nack.consumer), _integer(nack.time),
                                     _integer(nack.count))))
        out.append(_array_header(len(pending)))
        out += pending
        out += [_bulk(b"consumers"), _array_header(len(group.consumers))]
        for cname, consumer in sorted(group.consumers.items()):
            out += [resp.map_header(5, proto), _bulk(b"name"), _bulk(cname),
                    _bulk(b"seen-time"), _integer(consumer.seen),
                    _bulk(b"active-time"), _integer(consumer.active),
                    _bulk(b"pel-count"), _integer(len(consumer.pel)), _bulk(b"pending")]
            pending = []
            for sid, nack in consumer.pel.items():
                if count and len(pending) >= count:
                    break
                pending.append(b"".join((b"*3\r\n", id_bulk(sid), _integer(nack.time), _integer(nack.count))))
            out.append(_array_header(len(pending)))
            out += pending
    return b"".join(out)


@worker_command("xinfo|groups")
def xinfo_groups(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _info_stream(ctx, argv)
    if not s.groups:
        return EMPTY_ARRAY
    proto = ctx.proto
    out = [_array_header(len(s.groups))]
    for gname, group in sorted(s.groups.items()):
        out += [resp.map_header(6, proto), _bulk(b"name"), _bulk(gname),
                _bulk(b"consumers"), _integer(len(group.consumers)),
                _bulk(b"pending"), _integer(len(group.pel)),
                _bulk(b"last-delivered-id"), id_bulk(group.last_id),
                _bulk(b"entries-read"), _entries_read_reply(group, proto),
                _bulk(b"lag"), _lag_reply(s, group, proto)]
    return b"".join(out)


@worker_command("xinfo|consumers")
def xinfo_consumers(ctx: Ctx, argv: list[bytes]) -> bytes:
    s = _info_stream(ctx, argv)
    group = s.groups.get(argv[3]) if s.groups else None
    if group is None:
        raise CommandError(_nogroup_for_key(argv[3], argv[2]))
    proto = ctx.proto
    now = _now()
    out = [_array_header(len(group.consumers))]
    for cname, consumer in sorted(group.consumers.items()):
        inactive = now - consumer.active if consumer.active != -1 else -1
        out += [resp.map_header(4, proto), _bulk(b"name"), _bulk(cname),
                _bulk(b"pending"), _integer(len(consumer.pel)),
                _bulk(b"idle"), _integer(max(now - consumer.seen, 0)),
                _bulk(b"inactive"), _integer(inactive)]
    return b"".join(out)


@worker_command("xinfo|help")
def xinfo_help(ctx: Ctx, argv: list[bytes]) -> bytes:
    return resp.array([resp.status(line) for line in XINFO_HELP])
