"""The command names a worker accepts, rename-command included."""
from __future__ import annotations

from .. import commands
from ..commands import CommandSpec


def renamed_names(renames: dict[str, str]) -> dict[bytes, bytes]:
    """Each rename-command's new name (as given, lower and upper case) → the original name:
    handlers that tell commands apart by argv[0] (HSET/HMSET, TTL/PTTL …) see the original,
    as Valkey's keep their own proc whatever the name."""
    out: dict[bytes, bytes] = {}
    for original, new in renames.items():
        if new and original in commands.COMMANDS:
            for form in (new, new.lower(), new.upper()):
                out[form.encode("utf-8", "surrogateescape")] = original.encode()
    return out


def command_names(renames: dict[str, str]) -> dict[bytes, CommandSpec]:
    """name → spec for a worker: every original name (the proxy's own sub-commands and the
    coordinator use them; clients cannot, the proxy refuses a renamed command's old name) plus,
    for each rename-command, the new name in lower and upper case (clients' raw commands reach
    the worker as they were sent). Internal commands come last."""
    names = dict(commands.BY_NAME)
    for new, original in renamed_names(renames).items():
        names.setdefault(new, commands.COMMANDS[original.decode()])
    names.update(commands.INTERNAL)
    return names


def original_argv(renamed: dict[bytes, bytes], argv: list[bytes]) -> list[bytes]:
    """argv with a renamed command's name put back (any case)."""
    original = renamed.get(argv[0]) or renamed.get(argv[0].lower())
    if original is not None:
        argv[0] = original
    return argv
