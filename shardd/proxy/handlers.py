"""Imports every module that registers proxy-side commands."""
from . import blocking, connection, fanout, introspection, persistence, scripts, server_cmds, transactions  # noqa: F401
