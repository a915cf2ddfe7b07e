"""Decoding workers' RESP replies in the proxy, for the rare paths that merge them."""
from __future__ import annotations

from typing import Any

import hiredis

from ..errors import CommandError


def decode(data: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(data)
    return reader.gets()


def decode_or_raise(data: bytes) -> Any:
    """The decoded reply; an error reply raises CommandError with its text."""
    value = decode(data)
    if isinstance(value, hiredis.ReplyError):
        raise CommandError(str(value))
    return value
