"""The worker's reply runs: a run whose replies add up to more than a frame's u32 length gets an
error per command instead (the worker goes on; Valkey has no such limit, shardd's frames do)."""
from __future__ import annotations

import array

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
