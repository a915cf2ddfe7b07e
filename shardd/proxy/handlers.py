"""Imports every module that registers proxy-side commands."""
from . import (acl, blocking, connection, fanout, introspection, memory, migrate, persistence, pubsub,  # noqa: F401
               scripts, server_cmds, tracking, transactions)
