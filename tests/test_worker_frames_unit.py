"""The worker's reply runs: a run whose replies add up to more than a frame's u32 length gets an
error per command instead (the worker goes on; Valkey has no such limit, shardd's frames do).
And a read split over two workers: how the proxy puts their runs back in order."""
from __future__ import annotations

import array

from shardd.frames import split_runs
from shardd.proxy.server import merge_split
from shardd.worker import main


def test_runs_over_the_length_limit_become_one_error_per_command(monkeypatch):
    monkeypatch.setattr(main, "MAX_RUN_BYTES", 10)
    lengths, bodies = array.array("I"), []
    main.add_runs([b"+OK\r\n", b"$3\r\nabc\r\n", b":1\r\n", b":2\r\n"], [2, 2], lengths, bodies)
    assert bodies == [main.RUN_TOO_LARGE * 2, b":1\r\n:2\r\n"]
    assert list(lengths) == [len(main.RUN_TOO_LARGE) * 2, 8]
    assert main.RUN_TOO_LARGE.startswith(b"-ERR ") and main.RUN_TOO_LARGE.endswith(b"\r\n")


def test_u32_lengths_overflow_as_the_fast_path_expects():
    lengths = array.array("I")
    try:
        lengths.append(1 << 32)
    except OverflowError:
        pass
    else:
        raise AssertionError("array('I') took a length over 4 GB")
    assert main.MAX_RUN_BYTES == (1 << 32) - 1


# -- a read split over two workers (SPLIT sections) ---------------------------------------------

def split_reply(*runs: list[bytes]) -> bytes:
    """A worker's SPLIT section reply holding these runs (each a list of replies)."""
    bodies = [b"".join(run) for run in runs]
    return (len(bodies).to_bytes(4, "little") + array.array("I", map(len, bodies)).tobytes()
            + b"".join(bodies))


def test_split_runs_reads_a_section_reply_and_refuses_anything_else():
    assert split_runs(split_reply([b":1\r\n", b":2\r\n"], [b"+OK\r\n"])) == [b":1\r\n:2\r\n", b"+OK\r\n"]
    assert split_runs(split_reply()) == []
    assert split_runs(b"-ERR shard worker 1 exited while running this command\r\n") is None
    assert split_runs(split_reply([b":1\r\n"])[:-1]) is None      # short
    assert split_runs(split_reply([b":1\r\n"]) + b"x") is None    # long


def test_split_reads_interleave_the_two_workers_runs():
    # commands: 0 0 1 0 1 1 0 → runs: first worker [2, 1, 1], second [1, 2]
    workers = bytes([0, 0, 1, 0, 1, 1, 0])
    first = split_reply([b":1\r\n", b":2\r\n"], [b":4\r\n"], [b":7\r\n"])
    second = split_reply([b":3\r\n"], [b":5\r\n", b":6\r\n"])
    assert merge_split(workers, [first, second]) == b"".join(b":%d\r\n" % i for i in range(1, 8))
    # the first command's worker may have the higher byte
    workers = bytes([1, 0, 0])
    assert merge_split(workers, [split_reply([b"+a\r\n"]), split_reply([b"+b\r\n", b"+c\r\n"])]) == b"+a\r\n+b\r\n+c\r\n"


def test_a_split_read_whose_worker_failed_answers_its_commands_with_the_error():
    failed = b"-ERR shard worker 1 exited while running this command; it was restarted\r\n"
    workers = bytes([0, 1, 1, 0, 1])
    first = split_reply([b":1\r\n"], [b":4\r\n"])
    assert merge_split(workers, [first, failed]) == b":1\r\n" + failed * 2 + b":4\r\n" + failed
    assert merge_split(workers, [failed, failed]) == failed * 5
    # not an error either: the commands are not left without a reply
    merged = merge_split(workers, [first, b"garbage"])
    assert merged.startswith(b":1\r\n-ERR ") and merged.count(b"\r\n") == 5
