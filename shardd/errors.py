"""Valkey's error strings, in one catalogue. Messages carry their code (ERR, WRONGTYPE, …)."""
from __future__ import annotations


class CommandError(Exception):
    """A command failed; `str(exc)` is the full error message sent to the client."""


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
INCR_NAN_INF = "ERR increment would produce NaN or Infinity"
NO_SUCH_KEY = "ERR no such key"
OUT_OF_RANGE = "ERR index out of range"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
DB_INDEX = "ERR DB index is out of range"
INVALID_DB_INDEX = "ERR invalid DB index"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_RANGE = "ERR offset is out of range"
CLUSTER_DISABLED = "ERR This instance has cluster support disabled"
LOADING = "LOADING Valkey is loading the dataset in memory"
NOPROTO = "NOPROTO unsupported protocol version"
NOT_POSITIVE = "ERR value is out of range, must be positive"
DECR_OVERFLOW = "ERR decrement would overflow"
LCS_NOT_STRINGS = "ERR The specified keys must contain string values"
LCS_LEN_AND_IDX = "ERR If you want both the length and indexes, please just use IDX."
LCS_TOO_LONG = "ERR String too long for LCS"
LCS_NO_MEMORY = "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
NOVALUES_NOT_HSCAN = "ERR NOVALUES option can only be used in HSCAN"
NOSCORES_NOT_ZSCAN = "ERR NOSCORES option can only be used in ZSCAN"
EXPIRE_NX_AND_OTHERS = "ERR NX and XX, GT or LT options at the same time are not compatible"
EXPIRE_GT_AND_LT = "ERR GT and LT options at the same time are not compatible"
LFU_NOT_SELECTED = ("ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
                    "Please note that when switching between policies at runtime LRU and LFU data "
                    "will take some time to adjust.")
LFU_SELECTED = ("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that "
                "when switching between policies at runtime LRU and LFU data will take some time "
                "to adjust.")


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name}' command"


def unknown_command(name: str, args: list[bytes]) -> str:
    shown = " ".join(f"'{_printable(a)}'" for a in args[:32])
    return f"ERR unknown command '{_printable(name.encode() if isinstance(name, str) else name, 128)}', with args beginning with: {shown}" + (" " if shown else "")


def unknown_subcommand(sub: bytes, container: str) -> str:
    return (f"ERR unknown subcommand '{_printable(sub, 128)}'. Try {container.upper()} HELP.")


def invalid_expire(name: str) -> str:
    return f"ERR invalid expire time in '{name}' command"


def unsupported_option(option: bytes) -> str:
    return f"ERR Unsupported option {option.decode('utf-8', 'replace')}"


def unknown_type_name(name: bytes) -> str:
    return f"ERR unknown type name '{name.decode('utf-8', 'replace')}'"


def _printable(value: bytes, limit: int = 128) -> str:
    text = value[:limit].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text)
CROSS_SHARD = "CROSSSLOT Keys in request don't hash to the same slot"
INVALID_CURSOR = "ERR invalid cursor"
BAD_CLIENT_NAME = "ERR Client names cannot contain spaces, newlines or special characters."
GETKEYS_INVALID_COMMAND = "ERR Invalid command specified"
GETKEYS_NO_KEYS = "ERR The command has no key arguments"
GETKEYS_BAD_ARITY = "ERR Invalid number of arguments specified for command"
GETKEYS_BAD_ARGUMENTS = "ERR Invalid arguments specified for command"
SAME_OBJECT = "ERR source and destination objects are the same"
INVALID_FIRST_DB = "ERR invalid first DB index"
INVALID_SECOND_DB = "ERR invalid second DB index"
MULTI_NESTED = "ERR MULTI calls can not be nested"
EXEC_WITHOUT_MULTI = "ERR EXEC without MULTI"
DISCARD_WITHOUT_MULTI = "ERR DISCARD without MULTI"
WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
NOT_IN_MULTI = "ERR Command not allowed inside a transaction"
