"""Geo commands against a real shardd-server (2 workers), compared byte for byte with Debian's
redis-server 7.0 (same geohash code, same libm, so the same digits): an oracle table of normal,
edge and error cases, RESP3 shapes, and a seeded differential test of random points and
searches. Scores stored by STOREDIST are compared as numbers: 7.0 prints doubles with %.17g,
Valkey 8 with its shortest form (tested in test_zset.py).

Keys share the hash tag {g} (worker 1) unless a test is about keys on both workers.
"""
from __future__ import annotations

import random

import pytest

from helpers import keys_on, oracle_cases, run_both, worker_of

from shardd.worker.t_geo import decode_score, fixed4, human_double, score_of, standard_geohash

RESTORE = [("HELLO", "2")]

SICILY = "GEOADD {g}s 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 13.583333 37.316667 Agrigento"
POINTS = ("GEOADD {g}p -73.9454966 40.747533 lic 2.1734035 41.3850639 bcn -122.4194155 37.7749295 sf "
          "151.2092955 -33.8688197 syd 139.6503106 35.6762419 tokyo -0.1276474 51.5073219 london")
EDGES = ("GEOADD {g}e -180 -85.05112878 sw 180 85.05112878 ne 0 0 zero 179.9999 10 east -179.9999 10 west "
         "0.0001 -0.0001 tiny 10 85 north 10 -85 south")

TIES = "GEOADD {g}t " + " ".join(f"1 1 m{i}" for i in range(10)) + " 2 2 far 1.5 1.5 mid"
MANY_TIES = "GEOADD {g}t " + " ".join(f"{1 + (i % 3) * 0.5} {1 + (i % 3) * 0.5} m{i}" for i in range(60))

GEO_CASES = [
    # GEOADD
    [SICILY, "ZCARD {g}s", "ZRANGE {g}s 0 -1 WITHSCORES", "GEOADD {g}s 13.361389 38.115556 Palermo",
     "GEOADD {g}s CH 13.361389 38.115556 Palermo 13 38 Palermo", "GEOADD {g}s CH 13 38 Palermo"],
    [SICILY, "GEOADD {g}s NX 1 1 Palermo 2 2 new", "GEOADD {g}s XX 3 3 Palermo 4 4 other",
     "GEOADD {g}s XX CH 5 5 Palermo", "GEOPOS {g}s Palermo new other", "GEOADD {g}x XX 1 1 a", "EXISTS {g}x"],
    ["GEOADD {g}s NX XX 1 1 a"], ["GEOADD {g}s 1 1"], ["GEOADD {g}s 1 1 a 2"], ["GEOADD {g}s CH 1 1"],
    ["GEOADD {g}s GT 1 1 a"], ["GEOADD {g}s INCR 1 1 a"], ["GEOADD {g}s CH CH CH"], ["GEOADD {g}s NX CH XX"],
    ["GEOADD {g}s a 1 m"], ["GEOADD {g}s 1 b m"], ["GEOADD {g}s nan 1 m"], ["GEOADD {g}s 1 1e400 m"],
    ["GEOADD {g}s 180.0000001 0 m"], ["GEOADD {g}s -180.0000001 0 m"], ["GEOADD {g}s 0 85.05112879 m"],
    ["GEOADD {g}s 0 -85.05112879 m"], ["GEOADD {g}s 200 100 m"], ["GEOADD {g}s -1e300 1 m"],
    ["GEOADD {g}s inf 1 m"], ["GEOADD {g}s 1 2 a 200 1 b", "EXISTS {g}s"], ["GEOADD {g}s 1 2 a x 1 b", "EXISTS {g}s"],
    ["geoadd {g}s ch nx 1 2 a", "geoadd {g}s Xx cH 1 3 a"],
    [EDGES, "GEOPOS {g}e sw ne zero east west tiny north south", "GEOHASH {g}e sw ne zero east west tiny north south",
     "ZRANGE {g}e 0 -1 WITHSCORES", "GEODIST {g}e sw ne", "GEODIST {g}e east west km", "GEODIST {g}e zero tiny"],
    # GEOPOS, GEOHASH, GEODIST
    [SICILY, "GEOPOS {g}s Palermo Catania nope Agrigento", "GEOPOS {g}s nope", "GEOPOS {g}nokey a b",
     "GEOHASH {g}s Palermo Catania nope", "GEOHASH {g}nokey a", "GEOPOS {g}s", "GEOHASH {g}s"],
    [POINTS, "GEOPOS {g}p lic bcn sf syd tokyo london", "GEOHASH {g}p lic bcn sf syd tokyo london"],
    [SICILY, "GEODIST {g}s Palermo Catania", "GEODIST {g}s Palermo Catania m", "GEODIST {g}s Palermo Catania KM",
     "GEODIST {g}s Palermo Catania mi", "GEODIST {g}s Palermo Catania FT", "GEODIST {g}s Palermo Palermo",
     "GEODIST {g}s Palermo nope", "GEODIST {g}s nope Palermo km", "GEODIST {g}nokey a b"],
    [SICILY, "GEODIST {g}s Palermo Catania parsecs", "GEODIST {g}s Palermo Catania km extra",
     "GEODIST {g}nokey a b parsecs", "GEODIST {g}s Palermo", "GEODIST {g}nokey a b c d"],
    [POINTS, "GEODIST {g}p lic bcn", "GEODIST {g}p sf syd km", "GEODIST {g}p tokyo london mi",
     "GEODIST {g}p syd tokyo ft", "GEODIST {g}p london bcn"],
    # zsets whose scores are not geohashes
    ["ZADD {g}z 0 zero -1 neg 1 one 4503599627370495 max52 4503599627370496 big 1e18 huge 0.5 half",
     "GEOPOS {g}z zero neg one max52 big huge half", "GEOHASH {g}z zero neg one max52 big huge half",
     "GEODIST {g}z zero one", "GEORADIUS {g}z 0 0 100 km", "GEOSEARCH {g}z FROMMEMBER neg BYRADIUS 1 km"],
    # GEORADIUS and GEORADIUS_RO
    [SICILY, "GEORADIUS {g}s 15 37 100 km", "GEORADIUS {g}s 15 37 200 km", "GEORADIUS {g}s 15 37 200 km ASC",
     "GEORADIUS {g}s 15 37 200 km DESC", "GEORADIUS {g}s 15 37 200000 m WITHDIST",
     "GEORADIUS {g}s 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC", "GEORADIUS {g}s 15 37 200 km withhash desc",
     "GEORADIUS {g}s 15 37 124.2 mi WITHCOORD", "GEORADIUS {g}s 15 37 656168 ft WITHDIST DESC",
     "GEORADIUS {g}s 15 37 0 km", "GEORADIUS {g}s 13.361389 38.115556 0 km WITHDIST"],
    [SICILY, "GEORADIUS {g}s 15 37 200 km COUNT 1", "GEORADIUS {g}s 15 37 200 km COUNT 2 DESC WITHDIST",
     "GEORADIUS {g}s 15 37 200 km COUNT 1 ANY", "GEORADIUS {g}s 15 37 200 km COUNT 2 ANY DESC",
     "GEORADIUS {g}s 15 37 200 km ANY COUNT 5", "GEORADIUS {g}s 15 37 200 km COUNT 10 ASC COUNT 1",
     "GEORADIUS {g}s 15 37 200 km ASC DESC"],
    [SICILY, "GEORADIUS {g}s 15 37 200 km COUNT 0", "GEORADIUS {g}s 15 37 200 km COUNT -1",
     "GEORADIUS {g}s 15 37 200 km COUNT a", "GEORADIUS {g}s 15 37 200 km COUNT", "GEORADIUS {g}s 15 37 200 km ANY",
     "GEORADIUS {g}s 15 37 -1 km", "GEORADIUS {g}s 15 37 a km", "GEORADIUS {g}s 15 37 1 parsecs",
     "GEORADIUS {g}s 15 91 1 km", "GEORADIUS {g}s x 37 1 km", "GEORADIUS {g}s 15 37 1 km FOO",
     "GEORADIUS {g}s 15 37 1 km FROMLONLAT 1 2", "GEORADIUS {g}s 15 37 1 km BYRADIUS 1 km",
     "GEORADIUS {g}s 15 37 1 km STOREDIST", "GEORADIUS {g}s 15 37", "GEORADIUS {g}s 15 37 1"],
    [SICILY, "GEORADIUS {g}nokey 15 37 200 km", "GEORADIUS {g}nokey 15 37 a km", "GEORADIUS {g}nokey 15 37 1 km FOO",
     "GEORADIUS {g}nokey 15 37 1 km STORE {g}d", "GEORADIUS {g}nokey 15 37 1 km ANY"],
    [SICILY, "GEORADIUS {g}s 15 37 200 km STORE {g}d", "ZRANGE {g}d 0 -1", "GEORADIUS {g}s 15 37 200 km STOREDIST {g}d",
     "ZRANGE {g}d 0 -1", "GEORADIUS {g}s 15 37 200 km STORE {g}d STOREDIST {g}d2", "EXISTS {g}d2",
     "GEORADIUS {g}s 15 37 200 km COUNT 1 STORE {g}d", "ZRANGE {g}d 0 -1",
     "GEORADIUS {g}s 15 37 1 km STORE {g}d", "EXISTS {g}d"],
    [SICILY, "GEORADIUS {g}s 15 37 200 km STORE {g}d WITHDIST", "GEORADIUS {g}s 15 37 200 km WITHCOORD STOREDIST {g}d",
     "GEORADIUS {g}s 15 37 200 km STORE", "SET {g}d x EX 100", "GEORADIUS {g}s 15 37 200 km STORE {g}d",
     "TTL {g}d", "TYPE {g}d", "GEORADIUS_RO {g}s 15 37 200 km STORE {g}d", "GEORADIUS_RO {g}s 15 37 200 km WITHDIST",
     "GEORADIUS_RO {g}s 15 37 200 km STOREDIST {g}d"],
    # GEORADIUSBYMEMBER and _RO
    [SICILY, "GEORADIUSBYMEMBER {g}s Agrigento 100 km", "GEORADIUSBYMEMBER {g}s Palermo 200 km WITHDIST ASC",
     "GEORADIUSBYMEMBER {g}s Catania 500 km WITHCOORD DESC COUNT 2", "GEORADIUSBYMEMBER {g}s nope 100 km",
     "GEORADIUSBYMEMBER {g}s nope a km", "GEORADIUSBYMEMBER {g}s Palermo a km", "GEORADIUSBYMEMBER {g}s Palermo 1 xx",
     "GEORADIUSBYMEMBER {g}nokey nope a km", "GEORADIUSBYMEMBER {g}nokey nope 1 km FOO",
     "GEORADIUSBYMEMBER {g}nokey nope 1 km STORE {g}d", "GEORADIUSBYMEMBER_RO {g}s Palermo 200 km WITHDIST",
     "GEORADIUSBYMEMBER_RO {g}s Palermo 200 km STORE {g}d", "GEORADIUSBYMEMBER {g}s Palermo 200 km STORE {g}d",
     "ZRANGE {g}d 0 -1"],
    # GEOSEARCH
    [SICILY, "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km ASC", "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km",
     "GEOSEARCH {g}s FROMMEMBER Palermo BYRADIUS 200 km DESC WITHDIST WITHCOORD WITHHASH",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 200 200 km", "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 100 400 km WITHDIST",
     "GEOSEARCH {g}s BYRADIUS 200 km FROMLONLAT 15 37 COUNT 1", "GEOSEARCH {g}s FROMMEMBER Catania BYBOX 0 0 m",
     "GEOSEARCH {g}s fromlonlat 15 37 bybox 250 250 mi withdist count 2 any"],
    [SICILY, "GEOSEARCH {g}s BYRADIUS 1 km", "GEOSEARCH {g}s FROMLONLAT 15 37", "geosearch {g}s frommember x",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 1 km BYBOX 1 1 km", "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1 km BYRADIUS 1 km",
     "GEOSEARCH {g}s FROMMEMBER Palermo FROMLONLAT 15 37 BYRADIUS 1 km",
     "GEOSEARCH {g}s FROMLONLAT 15 37 FROMMEMBER Palermo BYRADIUS 1 km",
     "GEOSEARCH {g}s FROMMEMBER nope BYRADIUS 1 km", "GEOSEARCH {g}s FROMLONLAT 15 100 BYRADIUS 1 km",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX -1 1 km", "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 -1 km",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX a 1 km", "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 b km",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1 parsecs", "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 1", "GEOSEARCH {g}s FROMLONLAT 15 BYRADIUS 1 km",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km STORE {g}d", "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km ANY", "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km COUNT 0"],
    [SICILY, "GEOSEARCH {g}nokey FROMMEMBER nope BYRADIUS 1 km", "GEOSEARCH {g}nokey FROMLONLAT 1 1 BYRADIUS 1 km",
     "GEOSEARCH {g}nokey FROMMEMBER nope", "GEOSEARCH {g}nokey BYBOX 1 1 km", "GEOSEARCH {g}nokey FROMLONLAT 1 1 BYBOX a 1 km"],
    # GEOSEARCHSTORE
    [SICILY, "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km", "ZRANGE {g}d 0 -1",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST ASC COUNT 2", "ZRANGE {g}d 0 -1",
     "GEOSEARCHSTORE {g}d {g}s FROMMEMBER Palermo BYBOX 10 10 km", "ZRANGE {g}d 0 -1",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 0 0 BYRADIUS 1 km", "EXISTS {g}d",
     "GEOSEARCHSTORE {g}d {g}nokey FROMLONLAT 0 0 BYRADIUS 1 km", "GEOSEARCHSTORE {g}s {g}s FROMMEMBER Palermo BYRADIUS 1 m",
     "ZRANGE {g}s 0 -1"],
    [SICILY, "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km WITHDIST",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km WITHHASH",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km STORE {g}x",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST {g}x",
     "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37", "GEOSEARCHSTORE {g}d {g}s BYRADIUS 1 km",
     "SET {g}d x EX 100", "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km", "TTL {g}d"],
    # whole-world, polar and antimeridian searches (neighbour cells repeat and wrap)
    [POINTS, EDGES, "GEORADIUS {g}p 0 0 20000 km ASC", "GEORADIUS {g}p 0 0 20000 km", "GEORADIUS {g}e 0 0 20000 km",
     "GEORADIUS {g}e 179 0 3000 km WITHDIST", "GEORADIUS {g}e -179 0 3000 km WITHDIST",
     "GEORADIUS {g}e 10 84 500 km WITHDIST", "GEORADIUS {g}e 10 -84 500 km WITHDIST ASC",
     "GEOSEARCH {g}e FROMLONLAT 180 0 BYBOX 5000 5000 km WITHDIST", "GEOSEARCH {g}e FROMLONLAT 0 85 BYBOX 50000 100 km",
     "GEOSEARCH {g}p FROMLONLAT 0 0 BYBOX 40000 20000 km ASC", "GEOSEARCH {g}p FROMMEMBER syd BYRADIUS 10000 mi DESC",
     "GEORADIUS {g}p 0 0 1e308 km", "GEORADIUS {g}p 0 0 inf km"],
    # equal distances: COUNT sorts with Valkey's partial quicksort, which moves ties its own way
    [TIES, "GEORADIUS {g}t 1 1 500 km COUNT 3", "GEORADIUS {g}t 1 1 500 km COUNT 3 DESC",
     "GEORADIUS {g}t 1 1 500 km COUNT 5 DESC", "GEORADIUS {g}t 1 1 500 km COUNT 9 ASC WITHDIST",
     "GEORADIUS {g}t 1 1 500 km ASC", "GEORADIUS {g}t 1 1 500 km DESC", "GEORADIUS {g}t 0 0 500 km COUNT 8",
     "GEOSEARCH {g}t FROMMEMBER mid BYRADIUS 500 km COUNT 4 DESC", "GEORADIUS {g}t 1 1 500 km COUNT 13"],
    [MANY_TIES, "GEORADIUS {g}t 1 1 500 km COUNT 10", "GEORADIUS {g}t 1 1 500 km COUNT 45 DESC",
     "GEORADIUS {g}t 1 1 500 km COUNT 1 DESC", "GEOSEARCH {g}t FROMLONLAT 1.2 1.2 BYBOX 900 900 km COUNT 30 ASC"],
    # wrong type
    ["SET {g}x v", "GEOADD {g}x 1 1 a", "GEOPOS {g}x a", "GEOHASH {g}x a", "GEODIST {g}x a b",
     "GEORADIUS {g}x 1 1 1 km", "GEORADIUSBYMEMBER {g}x a 1 km", "GEOSEARCH {g}x FROMLONLAT 1 1 BYRADIUS 1 km",
     "GEOSEARCHSTORE {g}d {g}x FROMLONLAT 1 1 BYRADIUS 1 km", "GEORADIUS_RO {g}x 1 1 1 km",
     "GEORADIUS {g}x a b c d", "GEODIST {g}x a b parsecs", "GEOADD {g}x 200 1 a", "GEOADD {g}x NX XX 1 1 a"],
    # arity
    ["GEOADD {g}x 1 1"], ["GEOPOS"], ["GEOHASH"], ["GEODIST {g}x a"], ["GEORADIUS {g}x 1 1 1"],
    ["GEORADIUSBYMEMBER {g}x a 1"], ["GEOSEARCH {g}x FROMLONLAT 1 1 BYRADIUS"], ["GEOSEARCHSTORE {g}d {g}x FROMLONLAT 1 1 BYRADIUS"],
    # RESP3
    [("!", "HELLO 3"), SICILY, "GEOPOS {g}s Palermo nope", "GEOHASH {g}s Palermo nope", "GEODIST {g}s Palermo Catania",
     "GEODIST {g}s Palermo nope", "GEORADIUS {g}s 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC",
     "GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 400 400 km WITHCOORD", "GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 1 km",
     "GEORADIUS {g}nokey 15 37 200 km", "GEOPOS {g}nokey a"],
]


@oracle_cases(GEO_CASES)
def test_oracle(pair, case):
    run_both(pair, case, RESTORE)


def test_oracle_table_size():
    assert len(GEO_CASES) >= 45


# -- the helpers, without a server --------------------------------------------------------------

def test_score_round_trip_and_formats():
    score = score_of(13.361389, 38.115556)
    assert score == 3479099956230698.0
    assert decode_score(score) == (13.361389338970184, 38.1155563954963)
    assert human_double(13.361389338970184) == b"13.36138933897018433"
    assert human_double(-0.0) == b"0" and human_double(180.0) == b"180" and human_double(-1e-30) == b"0"
    assert standard_geohash(score) == b"sqc8b49rny0"
    assert fixed4(0.0) == b"0.0000" and fixed4(0.00005) == b"0.0000" and fixed4(0.00015) == b"0.0001"
    assert fixed4(0.00035) == b"0.0004" and fixed4(-0.00001) == b"0.0000" and fixed4(-2.5) == b"-2.5000"
    assert fixed4(166274.15156960033) == b"166274.1516" and fixed4(12.5) == b"12.5000"


# -- GEOSEARCHSTORE ... STOREDIST scores, compared as numbers -----------------------------------

def test_storedist_scores(pair):
    s, o = pair
    commands = [SICILY, POINTS,
                "GEOSEARCHSTORE {g}d {g}s FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST",
                "GEORADIUS {g}p 0 0 20000 mi STOREDIST {g}d2",
                "GEORADIUSBYMEMBER {g}s Palermo 300 km STOREDIST {g}d3 COUNT 2 DESC"]
    run_both(pair, commands, RESTORE)
    for key in ("{g}d", "{g}d2", "{g}d3"):
        got = _pairs(s.call("ZRANGE", key, "0", "-1", "WITHSCORES"))
        want = _pairs(o.call("ZRANGE", key, "0", "-1", "WITHSCORES"))
        assert [m for m, _ in got] == [m for m, _ in want] and got
        assert [float(x) for _, x in got] == [float(x) for _, x in want]


def _pairs(reply: bytes) -> list[tuple[bytes, bytes]]:
    items = [line for i, line in enumerate(reply.split(b"\r\n")[1:-1]) if i % 2]
    return list(zip(items[::2], items[1::2]))


# -- differential test: random points, random searches ------------------------------------------

_UNITS = ["m", "km", "mi", "ft"]


def _random_point(rnd: random.Random, region: str) -> tuple[str, str]:
    if region == "local":
        lon, lat = rnd.uniform(12, 16), rnd.uniform(36, 39)
    elif region == "polar":
        lon, lat = rnd.uniform(-180, 180), rnd.choice([1, -1]) * rnd.uniform(75, 85.05)
    elif region == "seam":
        lon, lat = rnd.choice([1, -1]) * rnd.uniform(175, 180), rnd.uniform(-30, 30)
    else:
        lon, lat = rnd.uniform(-180, 180), rnd.uniform(-85.05, 85.05)
    return f"{lon:.6f}", f"{lat:.6f}"


def _random_search(rnd: random.Random, key: str, members: list[str], region: str) -> list[str]:
    scale = {"local": 300, "polar": 3000, "seam": 2000, "world": 15000}[region]
    unit = rnd.choice(_UNITS)
    factor = {"m": 0.001, "km": 1, "mi": 1.60934, "ft": 0.0003048}[unit]
    size = lambda: f"{rnd.uniform(0, scale) / factor:.3f}"   # noqa: E731
    opts = rnd.sample(["WITHDIST", "WITHCOORD", "WITHHASH"], rnd.randint(0, 3))
    opts += rnd.choice([[], ["ASC"], ["DESC"]])
    if rnd.random() < 0.4:
        opts += ["COUNT", str(rnd.randint(1, 6))] + (["ANY"] if rnd.random() < 0.3 else [])
    rnd.shuffle(opts) if rnd.random() < 0.2 else None
    center = (["FROMMEMBER", rnd.choice(members)] if rnd.random() < 0.4
              else ["FROMLONLAT", *_random_point(rnd, region)])
    shape = (["BYRADIUS", size(), unit] if rnd.random() < 0.5 else ["BYBOX", size(), size(), unit])
    kind = rnd.randrange(4)
    if kind == 0:
        return ["GEOSEARCH", key, *center, *shape, *opts]
    if kind == 1:
        return ["GEORADIUS", key, *_random_point(rnd, region), size(), unit, *opts]
    if kind == 2:
        return ["GEORADIUSBYMEMBER_RO", key, rnd.choice(members), size(), unit, *opts]
    return ["GEODIST", key, rnd.choice(members), rnd.choice(members), unit]


@pytest.mark.parametrize("region", ["local", "polar", "seam", "world"])
def test_differential_random_searches(pair, region):
    rnd = random.Random(region)
    key = "{g}pts"
    members = [f"p{i}" for i in range(60)]
    adds = [["GEOADD", key, *_random_point(rnd, region), m] for m in members]
    probes = [["GEOPOS", key, *members[:20]], ["GEOHASH", key, *members[:20]]]
    searches = [_random_search(rnd, key, members, region) for _ in range(120)]
    run_both(pair, adds + probes + searches, RESTORE)


# -- keys on both workers -------------------------------------------------------------------------

def test_geosearchstore_cross_shard(pair):
    (src,), (dst,) = keys_on(0, 1, "gsrc"), keys_on(1, 1, "gdst")
    assert worker_of(src) != worker_of(dst)
    run_both(pair, [
        f"GEOADD {src} 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        f"GEOSEARCHSTORE {dst} {src} FROMLONLAT 15 37 BYRADIUS 200 km ASC", f"ZRANGE {dst} 0 -1",
        f"GEOSEARCHSTORE {dst} {src} FROMLONLAT 0 0 BYRADIUS 1 km", f"EXISTS {dst}",
    ], RESTORE)


def test_georadius_store_cross_shard(pair):
    (src,), (dst,) = keys_on(0, 1, "gsrc"), keys_on(1, 1, "gdst")
    run_both(pair, [
        f"GEOADD {src} 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        f"GEORADIUS {src} 15 37 200 km STORE {dst}", f"ZRANGE {dst} 0 -1",
        f"GEORADIUSBYMEMBER {src} Palermo 10 km STORE {dst}", f"ZRANGE {dst} 0 -1",
    ], RESTORE)
