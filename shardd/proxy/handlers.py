"""Imports every module that registers proxy-side commands."""
from . import blocking, connection, fanout, introspection, server_cmds, transactions  # noqa: F401
