"""List commands, after Valkey 8's t_list.c (replies, errors and their order).

A list is a `List`: a deque (O(1) push and pop at both ends, indexing cheap near either end)
that also keeps the byte size the list would have as one listpack. That size and a sticky
`quick` flag let OBJECT ENCODING answer `listpack` or `quicklist` where Valkey would: a listpack
becomes a quicklist when a write would take it over list-max-listpack-size (checked before the
write, with the raw lengths of the new elements, like listTypeTryConversionAppend), and a
quicklist goes back to a listpack only after shrinking to half the limit. Valkey's "one packed
quicklist node" condition for going back is approximated by "the whole list fits half a node".

The blocking commands (BLPOP, BLMOVE, BLMPOP …) reuse `list_pop`, `list_move` and `lmpop_reply`.
"""
from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Iterable, Iterator

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import LLONG_MAX, LLONG_MIN, arg_ll, arg_range, clamp_range
from ..slots import keyslot
from . import t_keys
from . import blocking
from .context import Ctx

_WRONGTYPE = errors.WRONGTYPE
_SYNTAX = errors.SYNTAX
_bulk = resp.bulk
_integer = resp.integer
_bulk_array = resp.bulk_array
OK = resp.OK
ZERO = resp.ZERO
EMPTY_ARRAY = resp.EMPTY_ARRAY
_MINUS_ONE = resp.integer(-1)

POSITIVE_REQUIRED = errors.NOT_POSITIVE
RANK_ZERO = ("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
             "or use negative to start from the end of the list")
COUNT_NEGATIVE = "ERR COUNT can't be negative"
MAXLEN_NEGATIVE = "ERR MAXLEN can't be negative"
NUMKEYS_NOT_POSITIVE = "ERR numkeys should be greater than 0"
COUNT_NOT_POSITIVE = "ERR count should be greater than 0"

# -- listpack sizes and quicklist node limits (listpack.c, quicklist.c) -------------------------

LP_EMPTY_BYTES = 7              # listpack header (6) + end byte (1)
SIZE_SAFETY_LIMIT = 8192        # a node's bytes when list-max-listpack-size counts entries
SIZE_ESTIMATE_OVERHEAD = 8      # quicklist's per-entry overestimate when pushing into a node
_SIZE_LEVELS = (4096, 8192, 16384, 32768, 65536)     # list-max-listpack-size -1 … -5
_INT_ENTRY_SIZES = ((0, 127, 2), (-4096, 4095, 3), (-32768, 32767, 4),
                    (-8388608, 8388607, 5), (-2147483648, 2147483647, 6))


def _listpack_int(value: bytes) -> int | None:
    """The integer a listpack stores `value` as (lpStringToInt64: canonical int64), or None."""
    if value.isdigit():
        if value[0] == 48 and len(value) > 1:
            return None
        n = int(value)
        return n if n <= LLONG_MAX else None
    if value[:1] == b"-" and value[1:].isdigit() and value[1] != 48:
        n = -int(value[1:])
        return n if n >= LLONG_MIN else None
    return None


def entry_size(value: bytes) -> int:
    """Bytes one listpack entry for `value` takes: encoding, data and back-length."""
    n = len(value)
    if n <= 20 and n and (value[0] <= 57) and (i := _listpack_int(value)) is not None:
        for low, high, size in _INT_ENTRY_SIZES:
            if low <= i <= high:
                return size
        return 10
    if n < 64:
        return n + 2
    if n < 4096:
        return n + (3 if n <= 125 else 4)
    encoded = n + 5
    if encoded < 16383:
        return encoded + 2
    if encoded < 2097151:
        return encoded + 3
    return encoded + (4 if encoded < 268435455 else 5)


def _size_limit(fill: int) -> int:
    return _SIZE_LEVELS[min(-fill - 1, 4)]


def exceeds_node_limit(fill: int, size: int, count: int) -> bool:
    """Would a listpack of `size` bytes and `count` entries overflow one node (quicklistNodeExceedsLimit)."""
    if fill < 0:
        return size > _SIZE_LEVELS[min(-fill - 1, 4)]
    return size > SIZE_SAFETY_LIMIT or count > (fill or 1)


def _is_large_element(size: int, fill: int) -> bool:
    """An element quicklist keeps in a node of its own (isLargeElement)."""
    return size > (_size_limit(fill) if fill < 0 else SIZE_SAFETY_LIMIT)


# -- the value type ----------------------------------------------------------------------------

class List(deque):
    """A list value: a deque of bytes plus what OBJECT ENCODING needs.

    `lp_bytes` is the listpack byte size of all the elements (kept exact by every command);
    `quick` says whether Valkey would hold the list as a quicklist now.
    """

    __slots__ = ("quick", "lp_bytes")

    def __init__(self, values: Iterable[bytes] = (), quick: bool = False,
                 lp_bytes: int | None = None) -> None:
        super().__init__(values)
        self.quick = quick
        if lp_bytes is None:
            lp_bytes = LP_EMPTY_BYTES + sum(map(entry_size, self)) if self else LP_EMPTY_BYTES
        self.lp_bytes = lp_bytes

    def __reduce__(self) -> tuple:
        return (List, (list(self), self.quick, self.lp_bytes))

    def __copy__(self) -> "List":
        return List(self, self.quick, self.lp_bytes)

    copy = __copy__

    def __deepcopy__(self, memo: dict) -> "List":
        return List(self, self.quick, self.lp_bytes)     # the elements are immutable bytes

    def grow(self, fill: int, add_bytes: int, add_count: int) -> None:
        """Before adding elements of `add_bytes` raw bytes: maybe become a quicklist
        (listTypeTryConversionAppend)."""
        if not self.quick and exceeds_node_limit(fill, self.lp_bytes + add_bytes, len(self) + add_count):
            self.quick = True

    def shrunk(self, fill: int) -> None:
        """After removing elements: maybe go back to a listpack (LIST_CONV_SHRINKING)."""
        if self.quick:
            if fill < 0:
                if self.lp_bytes <= _size_limit(fill) // 2:
                    self.quick = False
            elif self.lp_bytes <= SIZE_SAFETY_LIMIT and len(self) <= (fill or 1) // 2:
                self.quick = False

    def push(self, values: list[bytes], left: bool) -> None:
        if left:
            self.extendleft(values)
        else:
            self.extend(values)
        self.lp_bytes += sum(map(entry_size, values))


def list_encoding(value: List) -> bytes:
    return b"quicklist" if value.quick else b"listpack"


t_keys.TYPE_NAMES[List] = b"list"
t_keys.OBJECT_ENCODINGS[List] = list_encoding


def new_list(values: list[bytes], fill: int) -> List:
    """A list created by pushing `values` to a missing key (LPUSH/RPUSH/LMOVE's new list)."""
    lst = List()
    lst.grow(fill, sum(map(len, values)), len(values))
    lst.push(values, False)
    return lst


def list_from_quicklist(values: list[bytes], fill: int) -> List:
    """A list built as a quicklist and then converted if it fits one listpack (SORT … STORE:
    createQuicklistObject, pushes, listTypeTryConversion(LIST_CONV_AUTO))."""
    lst = List(values, True)
    if values and _one_packed_node(values, fill):
        size_limit = _size_limit(fill) if fill < 0 else None
        if (lst.lp_bytes <= size_limit) if size_limit is not None else len(lst) <= (fill or 1):
            lst.quick = False
    return lst


def _one_packed_node(values: list[bytes], fill: int) -> bool:
    """Whether quicklist tail pushes of `values` all land in one packed node."""
    first = values[0]
    if _is_large_element(len(first), fill):
        return False
    node_bytes = LP_EMPTY_BYTES + entry_size(first)
    count = 1
    for value in islice(values, 1, None):
        size = len(value)
        count += 1
        if (_is_large_element(size, fill)
                or exceeds_node_limit(fill, node_bytes + size + SIZE_ESTIMATE_OVERHEAD, count)):
            return False
        node_bytes += entry_size(value)
    return True


def _fill(ctx: Ctx) -> int:
    return ctx.config["list-max-listpack-size"]


def _lookup_list(ctx: Ctx, key: bytes, slot: int, read: bool = False) -> List | None:
    return ctx.db.lookup_as(key, slot, List, read)


# -- the pieces the blocking commands share ----------------------------------------------------

def list_pop(ctx: Ctx, key: bytes, lst: List, left: bool, count: int,
             slot: int | None = None) -> list[bytes]:
    """Pop up to `count` elements of the non-empty `lst` stored at `key`, from the head when
    `left`; the key is deleted when emptied (listElementsRemoved). Returns them in pop order."""
    n = len(lst)
    if count >= n:
        values = list(lst)
        if not left:
            values.reverse()
        lst.clear()
        lst.lp_bytes = LP_EMPTY_BYTES
        ctx.db.delete(key, keyslot(key) if slot is None else slot)
        return values
    pop = lst.popleft if left else lst.pop
    if count == 1:
        values = [pop()]
    else:
        values = [pop() for _ in range(count)]
    lst.lp_bytes -= sum(map(entry_size, values))
    lst.shrunk(_fill(ctx))
    ctx.db.modified(key)
    return values


def list_move(ctx: Ctx, src: bytes, src_list: List, dst: bytes, left_from: bool, left_to: bool,
              src_slot: int | None = None) -> bytes:
    """Move one element from the non-empty `src_list` (stored at `src`) to the list at `dst`
    (LMOVE's step): WRONGTYPE, before anything moves, when dst holds another type. Returns the
    element."""
    db = ctx.db
    same = dst == src
    dst_slot = keyslot(dst)
    dst_list = src_list if same else db.lookup(dst, dst_slot)
    if dst_list is not None and type(dst_list) is not List:
        raise CommandError(_WRONGTYPE)
    fill = _fill(ctx)
    value = src_list.popleft() if left_from else src_list.pop()
    size = entry_size(value)
    src_list.lp_bytes -= size
    # A value popped from a quicklist that holds an integer comes back int-encoded, and
    # listTypeTryConversionAppend counts only string-encoded bytes.
    add_bytes = 0 if src_list.quick and size <= 10 and _listpack_int(value) is not None else len(value)
    if dst_list is None:
        dst_list = List()
        dst_list.grow(fill, add_bytes, 1)
        dst_list.append(value)
        dst_list.lp_bytes += size
        db.store(dst, dst_slot, dst_list)
    else:
        dst_list.grow(fill, add_bytes, 1)
        if left_to:
            dst_list.appendleft(value)
        else:
            dst_list.append(value)
        dst_list.lp_bytes += size
        db.modified(dst)
    if not src_list:
        db.delete(src, keyslot(src) if src_slot is None else src_slot)
    else:
        src_list.shrunk(fill)
        db.modified(src)
    return value


def lmpop_reply(key: bytes, values: list[bytes], proto: int) -> bytes:
    """LMPOP/BLMPOP's reply: the key, then the popped elements."""
    return b"*2\r\n" + _bulk(key) + _bulk_array(values, proto)


def parse_where(arg: bytes) -> bool:
    """LEFT → True, RIGHT → False, else a syntax error (getListPositionFromObjectOrReply)."""
    low = arg.lower()
    if low == b"left":
        return True
    if low == b"right":
        return False
    raise CommandError(_SYNTAX)


def parse_lmpop(argv: list[bytes], numkeys_index: int) -> tuple[list[bytes], bool, int]:
    """(keys, left, count) of LMPOP/BLMPOP from argv[numkeys_index:] (lmpopGenericCommand)."""
    numkeys = arg_long_or(argv[numkeys_index], NUMKEYS_NOT_POSITIVE, 1)
    where_index = numkeys_index + numkeys + 1
    if where_index >= len(argv):
        raise CommandError(_SYNTAX)
    left = parse_where(argv[where_index])
    count = -1
    j = where_index + 1
    n = len(argv)
    while j < n:
        if count == -1 and argv[j].lower() == b"count" and j + 1 < n:
            j += 1
            count = arg_long_or(argv[j], COUNT_NOT_POSITIVE, 1)
        else:
            raise CommandError(_SYNTAX)
        j += 1
    return argv[numkeys_index + 1:where_index], left, (1 if count == -1 else count)


def arg_long_or(value: bytes, message: str, low: int = 0) -> int:
    """An integer >= low, else `message` both when not a number and out of range
    (getRangeLongFromObjectOrReply with a message, e.g. getPositiveLongFromObjectOrReply)."""
    try:
        n = arg_ll(value)
    except CommandError:
        raise CommandError(message) from None
    if n < low:
        raise CommandError(message)
    return n


# -- push --------------------------------------------------------------------------------------

def _push(ctx: Ctx, argv: list[bytes], left: bool, only_existing: bool) -> bytes:
    key = argv[1]
    db, slot = ctx.db, ctx.slot
    lst = db.lookup(key, slot)
    values = argv[2:]
    if lst is None:
        if only_existing:
            return ZERO
        lst = List()
        lst.grow(_fill(ctx), sum(map(len, values)), len(values))
        lst.push(values, left)
        db.store(key, slot, lst)
        return _integer(len(lst))
    if type(lst) is not List:
        raise CommandError(_WRONGTYPE)
    lst.grow(_fill(ctx), sum(map(len, values)), len(values))
    lst.push(values, left)
    db.modified(key)
    return _integer(len(lst))


@worker_command("lpush")
def lpush_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _push(ctx, argv, True, False)


@worker_command("rpush")
def rpush_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _push(ctx, argv, False, False)


@worker_command("lpushx")
def lpushx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _push(ctx, argv, True, True)


@worker_command("rpushx")
def rpushx_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _push(ctx, argv, False, True)


# -- pop ---------------------------------------------------------------------------------------

def _pop(ctx: Ctx, argv: list[bytes], left: bool) -> bytes:
    """LPOP/RPOP key [count] (popGenericCommand)."""
    argc = len(argv)
    if argc > 3:
        raise CommandError(errors.wrong_arity("lpop" if left else "rpop"))
    count = arg_long_or(argv[2], POSITIVE_REQUIRED) if argc == 3 else -1
    key = argv[1]
    lst = _lookup_list(ctx, key, ctx.slot)
    if lst is None:
        return resp.null(ctx.proto) if count < 0 else resp.null_array(ctx.proto)
    if count == 0:
        return EMPTY_ARRAY
    if count < 0:
        return _bulk(list_pop(ctx, key, lst, left, 1, ctx.slot)[0])
    return _bulk_array(list_pop(ctx, key, lst, left, count, ctx.slot), ctx.proto)


@worker_command("lpop")
def lpop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _pop(ctx, argv, True)


@worker_command("rpop")
def rpop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _pop(ctx, argv, False)


@worker_command("lmpop")
def lmpop_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    keys, left, count = parse_lmpop(argv, 1)
    db = ctx.db
    for i, key in enumerate(keys):
        slot = ctx.slot if i == 0 else keyslot(key)
        lst = db.lookup(key, slot)
        if lst is None:
            continue
        if type(lst) is not List:
            raise CommandError(_WRONGTYPE)
        if lst:
            return lmpop_reply(key, list_pop(ctx, key, lst, left, count, slot), ctx.proto)
    return resp.null_array(ctx.proto)


# -- move --------------------------------------------------------------------------------------

def _move(ctx: Ctx, argv: list[bytes], left_from: bool, left_to: bool) -> bytes:
    src = argv[1]
    lst = _lookup_list(ctx, src, ctx.slot)
    if not lst:
        return resp.null(ctx.proto)
    return _bulk(list_move(ctx, src, lst, argv[2], left_from, left_to, ctx.slot))


@worker_command("lmove")
def lmove_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    left_from = parse_where(argv[3])
    left_to = parse_where(argv[4])
    return _move(ctx, argv, left_from, left_to)


@worker_command("rpoplpush")
def rpoplpush_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _move(ctx, argv, False, True)


# -- reads -------------------------------------------------------------------------------------

@worker_command("llen")
def llen_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    lst = _lookup_list(ctx, argv[1], ctx.slot, read=True)
    return ZERO if lst is None else _integer(len(lst))


@worker_command("lindex")
def lindex_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    lst = _lookup_list(ctx, argv[1], ctx.slot, read=True)
    if lst is None:
        return resp.null(ctx.proto)
    index = arg_ll(argv[2])
    n = len(lst)
    if -n <= index < n:
        return _bulk(lst[index])
    return resp.null(ctx.proto)


def list_range(lst: List, start: int, end: int) -> list[bytes]:
    """The elements start..end (inclusive, negative from the tail) as LRANGE clamps them."""
    n = len(lst)
    span = clamp_range(start, end, n)
    if span is None:
        return []
    start, end = span
    if start <= n - 1 - end:                 # nearer the head: walk from there
        return list(islice(lst, start, end + 1))
    values = list(islice(reversed(lst), n - 1 - end, n - start))
    values.reverse()
    return values


@worker_command("lrange")
def lrange_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    start = arg_ll(argv[2])
    end = arg_ll(argv[3])
    lst = _lookup_list(ctx, argv[1], ctx.slot, read=True)
    if lst is None:
        return EMPTY_ARRAY
    return _bulk_array(list_range(lst, start, end), ctx.proto)


def _match_positions(lst: List, element: bytes, from_tail: bool, maxlen: int) -> Iterator[int]:
    """Positions (counted from the scan's start) of `element`, scanning at most maxlen
    elements (0: all) in C-speed chunks."""
    source = reversed(lst) if from_tail else iter(lst)
    budget = maxlen or len(lst)
    scanned = 0
    chunk = 256
    while scanned < budget:
        part = list(islice(source, min(chunk, budget - scanned)))
        if not part:
            return
        i = -1
        while True:
            try:
                i = part.index(element, i + 1)
            except ValueError:
                break
            yield scanned + i
        scanned += len(part)
        chunk = min(chunk * 4, 65536)


@worker_command("lpos")
def lpos_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    rank, count, maxlen = 1, -1, 0
    j, argc = 3, len(argv)
    while j < argc:
        option = argv[j].lower()
        more = j + 1 < argc
        if option == b"rank" and more:
            j += 1
            rank = arg_range(argv[j], -LLONG_MAX, LLONG_MAX)
            if rank == 0:
                raise CommandError(RANK_ZERO)
        elif option == b"count" and more:
            j += 1
            count = arg_long_or(argv[j], COUNT_NEGATIVE)
        elif option == b"maxlen" and more:
            j += 1
            maxlen = arg_long_or(argv[j], MAXLEN_NEGATIVE)
        else:
            raise CommandError(_SYNTAX)
        j += 1
    lst = _lookup_list(ctx, argv[1], ctx.slot, read=True)
    if lst is None:
        return EMPTY_ARRAY if count != -1 else resp.null(ctx.proto)
    from_tail = rank < 0
    skip = abs(rank) - 1
    n = len(lst)
    found: list[int] = []
    wanted = count if count > 0 else (1 if count == -1 else n)
    for position in _match_positions(lst, argv[2], from_tail, maxlen):
        if skip:
            skip -= 1
            continue
        found.append(n - 1 - position if from_tail else position)
        if len(found) >= wanted:
            break
    if count == -1:
        return _integer(found[0]) if found else resp.null(ctx.proto)
    return resp.array_header(len(found)) + b"".join(map(_integer, found))


# -- in-place writes ---------------------------------------------------------------------------

@worker_command("lset")
def lset_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    key = argv[1]
    lst = _lookup_list(ctx, key, ctx.slot)
    if lst is None:
        raise CommandError(errors.NO_SUCH_KEY)
    index = arg_ll(argv[2])
    value = argv[3]
    fill = _fill(ctx)
    lst.grow(fill, len(value), 1)
    n = len(lst)
    if not -n <= index < n:
        raise CommandError(errors.OUT_OF_RANGE)
    lst.lp_bytes += entry_size(value) - entry_size(lst[index])
    lst[index] = value
    lst.shrunk(fill)
    ctx.db.modified(key)
    return OK


@worker_command("linsert")
def linsert_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    where = argv[2].lower()
    if where == b"after":
        after = True
    elif where == b"before":
        after = False
    else:
        raise CommandError(_SYNTAX)
    key = argv[1]
    lst = _lookup_list(ctx, key, ctx.slot)
    if lst is None:
        return ZERO
    value = argv[4]
    lst.grow(_fill(ctx), len(value), 1)
    try:
        index = lst.index(argv[3])
    except ValueError:
        return _MINUS_ONE
    lst.insert(index + 1 if after else index, value)
    lst.lp_bytes += entry_size(value)
    ctx.db.modified(key)
    return _integer(len(lst))


@worker_command("lrem")
def lrem_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    to_remove = arg_range(argv[2], -LLONG_MAX, LLONG_MAX)
    key = argv[1]
    lst = _lookup_list(ctx, key, ctx.slot)
    if lst is None:
        return ZERO
    element = argv[3]
    values = list(lst)
    from_tail = to_remove < 0
    if from_tail:
        values.reverse()
    limit = abs(to_remove) or len(values)
    cuts = []
    i = -1
    while len(cuts) < limit:
        try:
            i = values.index(element, i + 1)
        except ValueError:
            break
        cuts.append(i)
    if not cuts:
        return ZERO
    kept: list[bytes] = []
    begin = 0
    for i in cuts:
        kept += values[begin:i]
        begin = i + 1
    kept += values[begin:]
    if from_tail:
        kept.reverse()
    db = ctx.db
    if not kept:
        db.delete(key, ctx.slot)
    else:
        lst.clear()
        lst.extend(kept)
        lst.lp_bytes -= len(cuts) * entry_size(element)
        lst.shrunk(_fill(ctx))
        db.modified(key)
    return _integer(len(cuts))


@worker_command("ltrim")
def ltrim_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    start = arg_ll(argv[2])
    end = arg_ll(argv[3])
    key = argv[1]
    lst = _lookup_list(ctx, key, ctx.slot)
    if lst is None:
        return OK
    n = len(lst)
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        ctx.db.delete(key, ctx.slot)
        return OK
    if end >= n:
        end = n - 1
    head, tail = start, n - 1 - end
    if not head and not tail:
        return OK
    kept = end - start + 1
    if head + tail > kept:                   # cheaper to rebuild from what stays
        values = list_range(lst, start, end)
        lst.clear()
        lst.extend(values)
        lst.lp_bytes = LP_EMPTY_BYTES + sum(map(entry_size, values))
    else:
        removed = 0
        popleft, pop = lst.popleft, lst.pop
        for _ in range(head):
            removed += entry_size(popleft())
        for _ in range(tail):
            removed += entry_size(pop())
        lst.lp_bytes -= removed
    lst.shrunk(_fill(ctx))
    ctx.db.modified(key)
    return OK


# -- blocking pops (blocking.py keeps the waiters and serves them) ------------------------------

def _blocking_pop(ctx: Ctx, argv: list[bytes], left: bool) -> bytes | None:
    blocking.parse_timeout(argv[-1])
    keys = argv[1:-1]
    for key in blocking.candidates(ctx, keys):
        lst = blocking.ready_value(ctx, key, List)
        if lst is not None:
            (value,) = list_pop(ctx, key, lst, left, 1)
            return b"*2\r\n" + _bulk(key) + _bulk(value)
    return blocking.nothing(ctx, argv, keys, resp.null_array(ctx.proto))


@worker_command("blpop")
def blpop_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _blocking_pop(ctx, argv, True)


@worker_command("brpop")
def brpop_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _blocking_pop(ctx, argv, False)


def _blocking_move(ctx: Ctx, argv: list[bytes], left_from: bool, left_to: bool) -> bytes | None:
    blocking.parse_timeout(argv[-1])
    src = argv[1]
    lst = blocking.ready_value(ctx, src, List) if src in blocking.candidates(ctx, [src]) else None
    if lst is not None:
        return _bulk(list_move(ctx, src, lst, argv[2], left_from, left_to))
    return blocking.nothing(ctx, argv, [src], resp.null(ctx.proto))


@worker_command("blmove")
def blmove_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    left_from = parse_where(argv[3])
    left_to = parse_where(argv[4])
    return _blocking_move(ctx, argv, left_from, left_to)


@worker_command("brpoplpush")
def brpoplpush_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _blocking_move(ctx, argv, False, True)


@worker_command("blmpop")
def blmpop_command(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    blocking.parse_timeout(argv[1])
    keys, left, count = parse_lmpop(argv, 2)
    for key in blocking.candidates(ctx, keys):
        lst = blocking.ready_value(ctx, key, List)
        if lst is not None:
            return lmpop_reply(key, list_pop(ctx, key, lst, left, count), ctx.proto)
    return blocking.nothing(ctx, argv, keys, resp.null_array(ctx.proto))
