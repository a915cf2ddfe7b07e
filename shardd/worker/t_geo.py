"""Geo commands on sorted sets, after Valkey 8's geo.c, geohash.c and geohash_helper.c.

A position is the score of a zset member: the 52-bit interleaved geohash of (longitude,
latitude) over Valkey's ranges (longitude -180..180, latitude -85.05112878..85.05112878).
The arithmetic follows the C code step by step (same doubles, same libm functions, same
64-bit wrap-arounds), so positions, distances and hashes print the same digits as Valkey.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .. import errors, resp
from ..commands import worker_command
from ..errors import CommandError
from ..numbers import arg_ll
from ..slots import keyslot
from .context import Ctx
from .t_zset import ZADD_CH, ZADD_NX, ZADD_XX, ZSet, arg_double, store_zset, zadd_apply, zadd_options

# -- error strings -----------------------------------------------------------------------------

BAD_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
NEED_RADIUS = "ERR need numeric radius"
NEED_WIDTH = "ERR need numeric width"
NEED_HEIGHT = "ERR need numeric height"
NEGATIVE_RADIUS = "ERR radius cannot be negative"
NEGATIVE_BOX = "ERR height or width cannot be negative"
BAD_MEMBER = "ERR could not decode requested zset member"
COUNT_NOT_POSITIVE = "ERR COUNT must be > 0"
ANY_NEEDS_COUNT = "ERR the ANY argument requires COUNT argument"
STORE_WITH_OPTIONS = "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
NEED_FROM = "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {}"
NEED_BY = "ERR exactly one of BYRADIUS and BYBOX can be specified for {}"


def _bad_pair(lon: float, lat: float) -> str:
    return "ERR invalid longitude,latitude pair %f,%f" % (lon, lat)


# -- geohash.c ---------------------------------------------------------------------------------

STEP_MAX = 26
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
LONG_MIN, LONG_MAX = -180.0, 180.0
_M64 = (1 << 64) - 1
_EVEN = 0x5555555555555555
_ODD = 0xAAAAAAAAAAAAAAAA
_INTERLEAVE = ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
               (2, 0x3333333333333333), (1, 0x5555555555555555))
_DEINTERLEAVE = ((0, 0x5555555555555555), (1, 0x3333333333333333), (2, 0x0F0F0F0F0F0F0F0F),
                 (4, 0x00FF00FF00FF00FF), (8, 0x0000FFFF0000FFFF), (16, 0x00000000FFFFFFFF))


class Area(NamedTuple):
    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float


def interleave64(xlo: int, ylo: int) -> int:
    """Bits of x in the even positions, bits of y in the odd ones (x, y < 2**32)."""
    x, y = xlo, ylo
    for shift, mask in _INTERLEAVE:
        x = (x | (x << shift)) & mask
        y = (y | (y << shift)) & mask
    return x | (y << 1)


def deinterleave64(interleaved: int) -> int:
    x, y = interleaved, interleaved >> 1
    for shift, mask in _DEINTERLEAVE:
        x = (x | (x >> shift)) & mask
        y = (y | (y >> shift)) & mask
    return x | (y << 32)


def geohash_encode(lon: float, lat: float, step: int, lon_range=(LONG_MIN, LONG_MAX),
                   lat_range=(LAT_MIN, LAT_MAX)) -> int | None:
    """geohashEncode: the 2*step-bit hash of a position, None outside the ranges."""
    if step > 32 or step == 0:
        return None
    if lon > LONG_MAX or lon < LONG_MIN or lat > LAT_MAX or lat < LAT_MIN:
        return None
    if lat < lat_range[0] or lat > lat_range[1] or lon < lon_range[0] or lon > lon_range[1]:
        return None
    lat_offset = (lat - lat_range[0]) / (lat_range[1] - lat_range[0])
    lon_offset = (lon - lon_range[0]) / (lon_range[1] - lon_range[0])
    scale = float(1 << step)
    return interleave64(int(lat_offset * scale), int(lon_offset * scale))


def geohash_decode(bits: int, step: int) -> Area:
    """geohashDecode over Valkey's ranges: the cell a hash stands for."""
    separated = deinterleave64(bits)
    lat_scale = LAT_MAX - LAT_MIN
    lon_scale = LONG_MAX - LONG_MIN
    ilat = separated & 0xFFFFFFFF
    ilon = (separated >> 32) & 0xFFFFFFFF
    cells = float(1 << step)
    return Area(LONG_MIN + (ilon * 1.0 / cells) * lon_scale,
                LONG_MIN + (((ilon + 1) & 0xFFFFFFFF) * 1.0 / cells) * lon_scale,
                LAT_MIN + (ilat * 1.0 / cells) * lat_scale,
                LAT_MIN + (((ilat + 1) & 0xFFFFFFFF) * 1.0 / cells) * lat_scale)


def _double_to_uint64(value: float) -> int:
    """(uint64_t)value as gcc compiles it on x86-64, out-of-range values included."""
    if value != value:
        return 1 << 63
    if value >= 18446744073709551616.0:
        return 0
    if value >= 9223372036854775808.0:
        return int(value)
    if value <= -9223372036854775808.0:
        return 1 << 63
    return int(value) & _M64


def decode_score(score: float) -> tuple[float, float]:
    """decodeGeohash: the (longitude, latitude) a zset score stands for (the cell's centre)."""
    area = geohash_decode(_double_to_uint64(score), STEP_MAX)
    lon = min(max((area.lon_min + area.lon_max) / 2, LONG_MIN), LONG_MAX)
    lat = min(max((area.lat_min + area.lat_max) / 2, LAT_MIN), LAT_MAX)
    return lon, lat


def score_of(lon: float, lat: float) -> float:
    """The zset score of a (validated) position: its 52-bit geohash."""
    return float(geohash_encode(lon, lat, STEP_MAX))


def _move_x(bits: int, step: int, direction: int) -> int:
    x, y = bits & _ODD, bits & _EVEN
    zz = _EVEN >> (64 - step * 2)
    if direction > 0:
        x = x + (zz + 1)
    else:
        x = ((x | zz) - (zz + 1)) & _M64
    return (x & (_ODD >> (64 - step * 2))) | y


def _move_y(bits: int, step: int, direction: int) -> int:
    x, y = bits & _ODD, bits & _EVEN
    zz = _ODD >> (64 - step * 2)
    if direction > 0:
        y = y + (zz + 1)
    else:
        y = ((y | zz) - (zz + 1)) & _M64
    return x | (y & (_EVEN >> (64 - step * 2)))


def neighbors(bits: int, step: int) -> list[int]:
    """geohashNeighbors: north, south, east, west, north-east, north-west, south-east,
    south-west, in the order geo.c searches them."""
    def moved(dx: int, dy: int) -> int:
        b = _move_x(bits, step, dx) if dx else bits
        return _move_y(b, step, dy) if dy else b
    return [moved(0, 1), moved(0, -1), moved(1, 0), moved(-1, 0),
            moved(1, 1), moved(-1, 1), moved(1, -1), moved(-1, -1)]


# -- geohash_helper.c --------------------------------------------------------------------------

D_R = math.pi / 180.0
EARTH_RADIUS_IN_METERS = 6372797.560856
MERCATOR_MAX = 20037726.37
_NAN = math.nan


def _cos(x: float) -> float:
    return math.cos(x) if math.isfinite(x) else _NAN


def _sin(x: float) -> float:
    return math.sin(x) if math.isfinite(x) else _NAN


def _asin(x: float) -> float:
    return math.asin(x) if -1.0 <= x <= 1.0 else _NAN


def _sqrt(x: float) -> float:
    return math.sqrt(x) if not x < 0 else _NAN


def _div(a: float, b: float) -> float:
    """C's a / b, which gives ±inf or NaN where Python raises."""
    if b:
        return a / b
    if a != a or a == 0:
        return _NAN
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS_IN_METERS * abs(lat2 * D_R - lat1 * D_R)


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """geohashGetDistance: haversine, in meters."""
    lon1r = lon1 * D_R
    lon2r = lon2 * D_R
    v = _sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r = lat1 * D_R
    lat2r = lat2 * D_R
    u = _sin((lat2r - lat1r) / 2)
    a = u * u + _cos(lat1r) * _cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * _asin(_sqrt(a))


def estimate_steps(range_meters: float, lat: float) -> int:
    """geohashEstimateStepsByRadius."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


class Shape:
    """GeoShape: a centre and a radius or a width × height box, in a unit."""

    __slots__ = ("lon", "lat", "circle", "radius", "width", "height", "conversion")

    def __init__(self) -> None:
        self.lon = self.lat = 0.0
        self.circle = True
        self.radius = self.width = self.height = 0.0
        self.conversion = 1.0

    def bounding_box(self) -> tuple[float, float, float, float]:
        """geohashBoundingBox: (min lon, min lat, max lon, max lat)."""
        lon, lat = self.lon, self.lat
        height = self.conversion * (self.radius if self.circle else self.height / 2)
        width = self.conversion * (self.radius if self.circle else self.width / 2)
        lat_delta = height / EARTH_RADIUS_IN_METERS / D_R
        top = _div(width / EARTH_RADIUS_IN_METERS, _cos((lat + lat_delta) * D_R)) / D_R
        bottom = _div(width / EARTH_RADIUS_IN_METERS, _cos((lat - lat_delta) * D_R)) / D_R
        delta = bottom if lat < 0 else top
        return lon - delta, lat - lat_delta, lon + delta, lat + lat_delta

    def contains(self, score: float) -> tuple[float, float, float] | None:
        """geoWithinShape: (distance, lon, lat) of a point inside the shape, else None."""
        lon, lat = decode_score(score)
        if self.circle:
            d = distance(self.lon, self.lat, lon, lat)
            if d > self.radius * self.conversion:
                return None
            return d, lon, lat
        if lat_distance(lat, self.lat) > self.height * self.conversion / 2:
            return None
        if distance(lon, lat, self.lon, lat) > self.width * self.conversion / 2:
            return None
        return distance(self.lon, self.lat, lon, lat), lon, lat


def search_areas(shape: Shape) -> list[tuple[int, int]]:
    """geohashCalculateAreasByShapeWGS84: the centre cell and its 8 neighbours as (bits,
    step), a (0, 0) for each neighbour the search can skip."""
    min_lon, min_lat, max_lon, max_lat = shape.bounding_box()
    if shape.circle:
        radius = shape.radius
    else:
        radius = _sqrt((shape.width / 2) * (shape.width / 2) + (shape.height / 2) * (shape.height / 2))
    radius *= shape.conversion
    steps = estimate_steps(radius, shape.lat)
    bits = geohash_encode(shape.lon, shape.lat, steps)
    around = neighbors(bits, steps)
    north, south = geohash_decode(around[0], steps), geohash_decode(around[1], steps)
    east, west = geohash_decode(around[2], steps), geohash_decode(around[3], steps)
    if steps > 1 and (north.lat_max < max_lat or south.lat_min > min_lat
                      or east.lon_max < max_lon or west.lon_min > min_lon):
        steps -= 1
        bits = geohash_encode(shape.lon, shape.lat, steps)
        around = neighbors(bits, steps)
    area = geohash_decode(bits, steps)
    cells = [(bits, steps)] + [(b, steps) for b in around]
    if steps >= 2:
        skip = set()
        if area.lat_min < min_lat:
            skip.update((2, 7, 8))          # south, south-east, south-west
        if area.lat_max > max_lat:
            skip.update((1, 5, 6))          # north, north-east, north-west
        if area.lon_min < min_lon:
            skip.update((4, 8, 6))          # west, south-west, north-west
        if area.lon_max > max_lon:
            skip.update((3, 7, 5))          # east, south-east, north-east
        for i in skip:
            cells[i] = (0, 0)
    return cells


# -- searching a zset --------------------------------------------------------------------------

class Point(NamedTuple):
    dist: float
    score: float
    member: bytes
    lon: float
    lat: float


def _points_in_cell(zset: ZSet, bits: int, step: int, shape: Shape, found: list[Point],
                    limit: int) -> None:
    """geoGetPointsInRange over one cell's score range [min, max)."""
    shift = 52 - step * 2
    low, high = float(bits << shift), float((bits + 1) << shift)
    order = zset.order
    lo, hi = order.bisect_left((low,)), order.bisect_left((high,))
    for score, member in order.islice(lo, hi):
        inside = shape.contains(score)
        if inside is not None:
            found.append(Point(inside[0], score, member, inside[1], inside[2]))
        if found and limit and len(found) >= limit:
            break


def points_in_shape(zset: ZSet, shape: Shape, limit: int = 0) -> list[Point]:
    """membersOfAllNeighbors: the points inside the shape, cell by cell, in Valkey's order
    (a cell that repeats the one searched just before is skipped, as Valkey does)."""
    found: list[Point] = []
    cells = search_areas(shape)
    last = 0
    for i, (bits, step) in enumerate(cells):
        if bits == 0 and step == 0:
            continue
        if last and (bits, step) == cells[last]:
            continue
        if found and limit and len(found) >= limit:
            break
        _points_in_cell(zset, bits, step, shape, found, limit)
        last = i
    return found


# -- pqsort.c: the partial quicksort Valkey sorts with when COUNT keeps fewer points ------------

def _med3(arr: list, a: int, b: int, c: int, cmp) -> int:
    if cmp(arr[a], arr[b]) < 0:
        return b if cmp(arr[b], arr[c]) < 0 else (c if cmp(arr[a], arr[c]) < 0 else a)
    return b if cmp(arr[b], arr[c]) > 0 else (a if cmp(arr[a], arr[c]) < 0 else c)


def pqsort(arr: list, cmp, lrange: int, rrange: int) -> None:
    """Sort arr in place enough that positions lrange..rrange hold what a full sort would put
    there, moving equal elements exactly as Valkey's pqsort (NetBSD's qsort) does."""
    def swap(i: int, j: int) -> None:
        arr[i], arr[j] = arr[j], arr[i]

    def vecswap(i: int, j: int, n: int) -> None:
        for k in range(n):
            swap(i + k, j + k)

    def overlaps(start: int, n: int) -> bool:
        end = start + n
        return not ((lrange < start and rrange < start) or (lrange >= end and rrange >= end))

    def sort(a: int, n: int) -> None:
        while True:
            if n < 7:
                for m in range(a + 1, a + n):
                    i = m
                    while i > a and cmp(arr[i - 1], arr[i]) > 0:
                        swap(i, i - 1)
                        i -= 1
                return
            pm = a + n // 2
            if n > 7:
                pl, pn = a, a + n - 1
                if n > 40:
                    d = n // 8
                    pl = _med3(arr, pl, pl + d, pl + 2 * d, cmp)
                    pm = _med3(arr, pm - d, pm, pm + d, cmp)
                    pn = _med3(arr, pn - 2 * d, pn - d, pn, cmp)
                pm = _med3(arr, pl, pm, pn, cmp)
            swap(a, pm)
            pa = pb = a + 1
            pc = pd = a + n - 1
            while True:
                while pb <= pc:
                    c = cmp(arr[pb], arr[a])
                    if c > 0:
                        break
                    if c == 0:
                        swap(pa, pb)
                        pa += 1
                    pb += 1
                while pb <= pc:
                    c = cmp(arr[pc], arr[a])
                    if c < 0:
                        break
                    if c == 0:
                        swap(pc, pd)
                        pd -= 1
                    pc -= 1
                if pb > pc:
                    break
                swap(pb, pc)
                pb += 1
                pc -= 1
            pn = a + n
            r = min(pa - a, pb - pa)
            vecswap(a, pb - r, r)
            r = min(pd - pc, pn - pd - 1)
            vecswap(pb, pn - r, r)
            r = pb - pa
            if r > 1 and overlaps(a, r):
                sort(a, r)
            r = pd - pc
            if r <= 1:
                return
            a, n = pn - r, r
            if not overlaps(a, n):
                return

    sort(0, len(arr))


def _by_distance(p: Point, q: Point) -> int:
    return (p.dist > q.dist) - (p.dist < q.dist)


def _by_distance_desc(p: Point, q: Point) -> int:
    return (p.dist < q.dist) - (p.dist > q.dist)


# -- argument helpers --------------------------------------------------------------------------

_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}


def unit_factor(unit: bytes) -> float:
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise CommandError(BAD_UNIT)
    return factor


def parse_lonlat(lon_arg: bytes, lat_arg: bytes) -> tuple[float, float]:
    """extractLongLatOrReply."""
    lon, lat = arg_double(lon_arg), arg_double(lat_arg)
    if lon < LONG_MIN or lon > LONG_MAX or lat < LAT_MIN or lat > LAT_MAX:
        raise CommandError(_bad_pair(lon, lat))
    return lon, lat


def _parse_radius(shape: Shape, value: bytes, unit: bytes) -> None:
    radius = arg_double(value, NEED_RADIUS)
    if radius < 0:
        raise CommandError(NEGATIVE_RADIUS)
    shape.radius = radius
    shape.conversion = unit_factor(unit)
    shape.circle = True


def _parse_box(shape: Shape, width_arg: bytes, height_arg: bytes, unit: bytes) -> None:
    width = arg_double(width_arg, NEED_WIDTH)
    height = arg_double(height_arg, NEED_HEIGHT)
    if height < 0 or width < 0:
        raise CommandError(NEGATIVE_BOX)
    shape.width, shape.height = width, height
    shape.conversion = unit_factor(unit)
    shape.circle = False


def _member_position(zset: ZSet, member: bytes) -> tuple[float, float]:
    score = zset.get(member)
    if score is None:
        raise CommandError(BAD_MEMBER)
    return decode_score(score)


def _lookup(ctx: Ctx, key: bytes, slot: int) -> ZSet | None:
    return ctx.db.lookup_as(key, slot, ZSet, read=True)


# -- formatting --------------------------------------------------------------------------------

def human_double(value: float) -> bytes:
    """ld2string(LD_STR_HUMAN): %.17Lf without trailing zeros (GEOPOS, WITHCOORD)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    text = b"%.17f" % value
    text = text.rstrip(b"0").rstrip(b".")
    return b"0" if text == b"-0" else text


def reply_human(value: float, proto: int) -> bytes:
    text = human_double(value)
    return b"," + text + b"\r\n" if proto == 3 else resp.bulk(text)


def fixed4(value: float) -> bytes:
    """fixedpoint_d2string(value, 4): llrint(value * 10000) printed with 4 decimals."""
    if value == 0:
        return b"0.0000"
    scaled = round(value * 10000.0)             # round half to even, as llrint
    digits = b"%d" % abs(scaled)
    if len(digits) <= 4:
        digits = b"0" * (5 - len(digits)) + digits
    return (b"-" if scaled < 0 else b"") + digits[:-4] + b"." + digits[-4:]


# -- GEOADD ------------------------------------------------------------------------------------

@worker_command("geoadd")
def geoadd_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    flags, first = zadd_options(argv, 2, ZADD_NX | ZADD_XX | ZADD_CH)
    if (len(argv) - first) % 3 or (flags & ZADD_NX and flags & ZADD_XX):
        raise CommandError(errors.SYNTAX)
    scores = []
    for i in range(first, len(argv), 3):
        lon, lat = parse_lonlat(argv[i], argv[i + 1])
        scores.append(score_of(lon, lat))
    if not scores:
        raise CommandError(errors.SYNTAX)
    return zadd_apply(ctx, argv[1], ctx.slot, scores, argv[first + 2::3], flags)


# -- GEOPOS, GEOHASH, GEODIST ------------------------------------------------------------------

_GEOALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"


@worker_command("geopos")
def geopos_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    zset = _lookup(ctx, argv[1], ctx.slot)
    proto = ctx.proto
    out = [resp.array_header(len(argv) - 2)]
    for member in argv[2:]:
        score = zset.get(member) if zset is not None else None
        if score is None:
            out.append(resp.null_array(proto))
        else:
            lon, lat = decode_score(score)
            out.append(b"*2\r\n" + reply_human(lon, proto) + reply_human(lat, proto))
    return b"".join(out)


def standard_geohash(score: float) -> bytes:
    """The 11-character geohash of a position, re-encoded on the standard latitude range."""
    lon, lat = decode_score(score)
    bits = geohash_encode(lon, lat, 26, (-180.0, 180.0), (-90.0, 90.0)) or 0
    chars = [_GEOALPHABET[(bits >> (52 - (i + 1) * 5)) & 0x1F] for i in range(10)]
    return bytes(chars) + b"0"


@worker_command("geohash")
def geohash_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    zset = _lookup(ctx, argv[1], ctx.slot)
    nil = resp.null(ctx.proto)
    out = [resp.array_header(len(argv) - 2)]
    for member in argv[2:]:
        score = zset.get(member) if zset is not None else None
        out.append(nil if score is None else resp.bulk(standard_geohash(score)))
    return b"".join(out)


@worker_command("geodist")
def geodist_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    to_meter = 1.0
    if len(argv) == 5:
        to_meter = unit_factor(argv[4])
    elif len(argv) > 5:
        raise CommandError(errors.SYNTAX)
    zset = _lookup(ctx, argv[1], ctx.slot)
    nil = resp.null(ctx.proto)
    if zset is None:
        return nil
    score1, score2 = zset.get(argv[2]), zset.get(argv[3])
    if score1 is None or score2 is None:
        return nil
    lon1, lat1 = decode_score(score1)
    lon2, lat2 = decode_score(score2)
    return resp.bulk(fixed4(distance(lon1, lat1, lon2, lat2) / to_meter))


# -- GEORADIUS, GEORADIUSBYMEMBER, GEOSEARCH, GEOSEARCHSTORE -----------------------------------

RADIUS_COORDS, RADIUS_MEMBER, RADIUS_NOSTORE, GEOSEARCH, GEOSEARCHSTORE = (1 << i for i in range(5))
_SORT_NONE, _SORT_ASC, _SORT_DESC = range(3)


class Search:
    """georadiusGeneric's arguments, parsed."""

    __slots__ = ("shape", "store_key", "storedist", "withdist", "withhash", "withcoord",
                 "frommember", "fromloc", "byradius", "bybox", "any", "sort", "count")

    def __init__(self) -> None:
        self.shape = Shape()
        self.store_key: bytes | None = None
        self.storedist = False
        self.withdist = self.withhash = self.withcoord = False
        self.frommember = self.fromloc = self.byradius = self.bybox = self.any = False
        self.sort = _SORT_NONE
        self.count = 0


def _parse_search(argv: list[bytes], flags: int, zset: ZSet | None) -> Search:
    """The arguments of GEORADIUS*, GEOSEARCH and GEOSEARCHSTORE, checked in Valkey's order
    (a missing key still gets its options parsed, but no member looked up)."""
    q = Search()
    shape = q.shape
    if flags & RADIUS_COORDS:
        base = 6
        shape.lon, shape.lat = parse_lonlat(argv[2], argv[3])
        _parse_radius(shape, argv[4], argv[5])
    elif flags & RADIUS_MEMBER:
        base = 5
        if zset is not None:
            shape.lon, shape.lat = _member_position(zset, argv[2])
            _parse_radius(shape, argv[3], argv[4])
    else:
        base = 3 if flags & GEOSEARCHSTORE else 2
        if flags & GEOSEARCHSTORE:
            q.store_key = argv[1]
    search = flags & GEOSEARCH
    n = len(argv)
    i = base
    while i < n:
        arg = argv[i].lower()
        left = n - i - 1                     # arguments after this one
        if arg == b"withdist":
            q.withdist = True
        elif arg == b"withhash":
            q.withhash = True
        elif arg == b"withcoord":
            q.withcoord = True
        elif arg == b"any":
            q.any = True
        elif arg == b"asc":
            q.sort = _SORT_ASC
        elif arg == b"desc":
            q.sort = _SORT_DESC
        elif arg == b"count" and left >= 1:
            q.count = arg_ll(argv[i + 1])
            if q.count <= 0:
                raise CommandError(COUNT_NOT_POSITIVE)
            i += 1
        elif arg in (b"store", b"storedist") and left >= 1 and not flags & (RADIUS_NOSTORE | GEOSEARCH):
            q.store_key = argv[i + 1]
            q.storedist = arg == b"storedist"
            i += 1
        elif arg == b"storedist" and search and flags & GEOSEARCHSTORE:
            q.storedist = True
        elif arg == b"frommember" and left >= 1 and search and not q.fromloc:
            if zset is not None:
                shape.lon, shape.lat = _member_position(zset, argv[i + 1])
            q.frommember = True
            i += 1
        elif arg == b"fromlonlat" and left >= 2 and search and not q.frommember:
            shape.lon, shape.lat = parse_lonlat(argv[i + 1], argv[i + 2])
            q.fromloc = True
            i += 2
        elif arg == b"byradius" and left >= 2 and search and not q.bybox:
            _parse_radius(shape, argv[i + 1], argv[i + 2])
            q.byradius = True
            i += 2
        elif arg == b"bybox" and left >= 3 and search and not q.byradius:
            _parse_box(shape, argv[i + 1], argv[i + 2], argv[i + 3])
            q.bybox = True
            i += 3
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if q.store_key is not None and (q.withdist or q.withhash or q.withcoord):
        raise CommandError(STORE_WITH_OPTIONS.format(
            "GEOSEARCHSTORE" if flags & GEOSEARCHSTORE else "STORE option in GEORADIUS"))
    name = argv[0].decode("utf-8", "replace")
    if search and not (q.frommember or q.fromloc):
        raise CommandError(NEED_FROM.format(name))
    if search and not (q.byradius or q.bybox):
        raise CommandError(NEED_BY.format(name))
    if q.any and not q.count:
        raise CommandError(ANY_NEEDS_COUNT)
    if q.count and q.sort == _SORT_NONE and not q.any:
        q.sort = _SORT_ASC                   # COUNT keeps the nearest
    return q


def _sorted_points(found: list[Point], sort: int, returned: int) -> list[Point]:
    """The first `returned` points in Valkey's order: glibc's qsort (a stable merge sort) when
    all are kept, its partial quicksort (pqsort) when COUNT keeps fewer."""
    if sort != _SORT_NONE:
        if returned == len(found):
            found.sort(key=lambda p: p.dist, reverse=sort == _SORT_DESC)
        else:
            pqsort(found, _by_distance if sort == _SORT_ASC else _by_distance_desc, 0, returned - 1)
    return found[:returned]


def _georadius_generic(ctx: Ctx, argv: list[bytes], src_index: int, flags: int) -> bytes:
    """georadiusGeneric: the search, then its reply or its stored result."""
    src = argv[src_index]
    zset = _lookup(ctx, src, ctx.slot if src_index == 1 else keyslot(src))
    q = _parse_search(argv, flags, zset)
    store_key = q.store_key
    store_slot = 0
    if store_key is not None:
        store_slot = ctx.slot if flags & GEOSEARCHSTORE else keyslot(store_key)
    if zset is None:
        if store_key is not None:
            return resp.integer(store_zset(ctx, store_key, store_slot, []))
        return resp.EMPTY_ARRAY
    found = points_in_shape(zset, q.shape, q.count if q.any else 0)
    if not found and store_key is None:
        return resp.EMPTY_ARRAY
    found = _sorted_points(found, q.sort, min(q.count, len(found)) if q.count else len(found))
    conversion = q.shape.conversion
    if store_key is not None:
        pairs: dict[bytes, float] = {}       # a member found in two cells is stored once
        for p in found:
            pairs.setdefault(p.member, p.dist / conversion if q.storedist else p.score)
        store_zset(ctx, store_key, store_slot, [(s, m) for m, s in pairs.items()])
        return resp.integer(len(found))
    return _search_reply(found, conversion, q.withdist, q.withhash, q.withcoord, ctx.proto)


def _search_reply(found: list[Point], conversion: float, withdist: bool, withhash: bool,
                  withcoord: bool, proto: int) -> bytes:
    options = withdist + withhash + withcoord
    out = [resp.array_header(len(found))]
    for p in found:
        if not options:
            out.append(resp.bulk(p.member))
            continue
        out.append(resp.array_header(options + 1) + resp.bulk(p.member))
        if withdist:
            out.append(resp.bulk(fixed4(p.dist / conversion)))
        if withhash:
            out.append(resp.integer(int(p.score)))
        if withcoord:
            out.append(b"*2\r\n" + reply_human(p.lon, proto) + reply_human(p.lat, proto))
    return b"".join(out)


@worker_command("georadius")
def georadius_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 1, RADIUS_COORDS)


@worker_command("georadiusbymember")
def georadiusbymember_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 1, RADIUS_MEMBER)


@worker_command("georadius_ro")
def georadius_ro_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 1, RADIUS_COORDS | RADIUS_NOSTORE)


@worker_command("georadiusbymember_ro")
def georadiusbymember_ro_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 1, RADIUS_MEMBER | RADIUS_NOSTORE)


@worker_command("geosearch")
def geosearch_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 1, GEOSEARCH)


@worker_command("geosearchstore")
def geosearchstore_command(ctx: Ctx, argv: list[bytes]) -> bytes:
    return _georadius_generic(ctx, argv, 2, GEOSEARCH | GEOSEARCHSTORE)
