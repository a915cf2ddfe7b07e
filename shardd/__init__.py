"""shardd: a Valkey/Redis-compatible in-memory data server built from processes."""

__version__ = "0.1.0"
# The Redis/Valkey version we report to clients (INFO, HELLO, Lua's REDIS_VERSION).
REDIS_VERSION = "7.2.4"
VALKEY_VERSION = "8.0.1"
