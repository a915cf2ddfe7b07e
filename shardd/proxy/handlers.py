"""Imports every module that registers proxy-side commands."""
from . import connection, fanout, introspection, server_cmds, transactions  # noqa: F401
