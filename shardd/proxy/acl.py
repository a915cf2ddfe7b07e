"""ACL: users, their passwords and what they may run, checked by the proxy before a command runs.

Valkey's model (acl.c): a user has flags (on/off, nopass, sanitize-payload), SHA-256 password
hashes and selectors. The root selector and each extra "(...)" selector allow commands (by name,
`cmd|sub`, `cmd|first-arg` or category, from the command table's `acl_categories_all` facts),
key patterns (`~`, `%R~`, `%W~`, checked against the command's keys and their key-spec flags)
and channel patterns (`&`). A command runs when one selector allows all of it.

Every proxy holds the whole ACL state. A change made on one proxy is described as the lines of
ACL LIST and applied by every proxy (the control broadcast CONFIG SET uses) and kept by the
supervisor (`cfg.acl_state`), so a restarted proxy starts from it. The hot path pays nothing for
a client whose user may run everything on every key and channel: `Client.guarded` is False and
dispatch skips the check (a precomputed flag, refreshed whenever the ACL or the client's user
changes).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from .. import commands, errors, log, resp
from ..commands import COMMANDS, CommandSpec, proxy_command
from ..config import split_args
from ..glob import glob_match
from ..numbers import string2ll
from .server import proxy_query

# Key permissions of a key pattern (ACL_READ_PERMISSION, ACL_WRITE_PERMISSION).
READ, WRITE = 1, 2
ALL_PERMISSIONS = READ | WRITE
# Check results, ordered as Valkey orders them when several selectors fail.
ACL_OK, DENIED_CMD, DENIED_KEY, DENIED_AUTH, DENIED_CHANNEL = 0, 1, 2, 3, 4
REASONS = {DENIED_CMD: "command", DENIED_KEY: "key", DENIED_CHANNEL: "channel", DENIED_AUTH: "auth"}
STAT_NAMES = {DENIED_AUTH: "acl_access_denied_auth", DENIED_CMD: "acl_access_denied_cmd",
              DENIED_KEY: "acl_access_denied_key", DENIED_CHANNEL: "acl_access_denied_channel"}

CATEGORIES = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
              "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
              "connection", "transaction", "scripting")
# Order in which ACLDescribeUser prints the user flags.
USER_FLAGS = ("on", "off", "nopass", "skip-sanitize-payload", "sanitize-payload")
HASH_LEN = 64
GENPASS_MAX_BITS = 4096
LOG_GROUPING_MS = 60000

# Errors of ACLSetUser, by errno name (ACLSetUserStringError).
E_WRONG = "Wrong format"
E_NOENT = "Unknown command or category name in ACL"
E_INVAL = "Syntax error"
E_EXIST = ("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have "
           "any effect. Try 'resetkeys' to start with an empty list of patterns")
E_ISDIR = ("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not "
           "have any effect. Try 'resetchannels' to start with an empty list of channels")
E_NODEV = "The password you are trying to remove from the user does not exist"
E_BADMSG = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
E_ALREADY = "Duplicate user found. A user can only be defined once in config files"
E_CHILD = "Allowing first-arg of a subcommand is not supported"

NO_ACLFILE = ("ERR This Redis instance is not configured to use an ACL file. You may want to specify users "
              "via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis "
              "configuration file set) in order to store users in the Redis configuration.")
SAVE_FAILED = ("ERR There was an error trying to save the ACLs. Please check the server logs for more "
               "information")
GENPASS_RANGE = (f"ERR ACL GENPASS argument must be the number of bits for the output password, a positive "
                 f"number up to {GENPASS_MAX_BITS}")
SCRIPT_DENIED = "ERR ACL failure in script: "       # scriptVerifyACL's prefix
EXEC_DENIED = ("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. "
               "This command is no longer allowed for the following reason: ")
EXEC_REASONS = {DENIED_CMD: "no permission to execute the command or subcommand",
                DENIED_KEY: "no permission to touch the specified keys",
                DENIED_CHANNEL: "no permission to access one of the channels used as arguments"}
AUTH_WITHOUT_PASSWORD = ("ERR AUTH <password> called without any password configured for the default user. "
                         "Are you sure your configuration is correct?")

ACL_HELP = [
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
]


class AclError(Exception):
    """An ACL rule was refused; `str(exc)` is ACLSetUserStringError's text."""


# -- the command universe ---------------------------------------------------------------------

def all_commands() -> list[CommandSpec]:
    """Every command and subcommand (Valkey's orig_commands, with its subcommand dicts)."""
    out = []
    for spec in COMMANDS.values():
        out.append(spec)
        out.extend(spec.subcommands.values())
    return out


def _category_members() -> dict[str, frozenset[str]]:
    """category → the command bits `+@category` sets: each command in it and, for a container
    in it, all its subcommands (ACLSetSelectorCommandBitsForCategory + ACLChangeSelectorPerm)."""
    members: dict[str, set[str]] = {c: set() for c in CATEGORIES}
    for spec in all_commands():
        for cat in spec.facts.get("acl_categories_all", ()):
            names = members.get(cat.lstrip("@"))
            if names is not None:
                names.add(spec.name)
                names.update(sub.name for sub in spec.subcommands.values())
    return {c: frozenset(v) for c, v in members.items()}


CATEGORY_MEMBERS = _category_members()
ALL_NAMES = frozenset(spec.name for spec in all_commands())


def lookup_command(name: str) -> CommandSpec | None:
    """ACLLookupCommand: `cmd` or `container|sub`, from the original table (renames aside)."""
    parts = name.lower().split("|")
    if len(parts) > 2:
        return None
    base = COMMANDS.get(parts[0])
    if base is None or len(parts) == 1:
        return base
    return base.subcommands.get(parts[1])


def is_subcommand(spec: CommandSpec) -> bool:
    return "|" in spec.name


# -- selectors and users ----------------------------------------------------------------------

@dataclass(eq=False)
class Selector:
    root: bool = False
    allkeys: bool = False
    allchannels: bool = False
    allcommands: bool = False          # SELECTOR_FLAG_ALLCOMMANDS: the bitmap need not be looked at
    future: bool = False               # the reserved bit only +@all sets ("future commands")
    allowed: set[str] = field(default_factory=set)
    firstargs: dict[str, list[str]] = field(default_factory=dict)
    patterns: list[list] = field(default_factory=list)    # [pattern bytes, READ|WRITE]
    channels: list[bytes] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)        # command_rules, e.g. ["+get", "-@admin"]

    def copy(self) -> "Selector":
        return Selector(self.root, self.allkeys, self.allchannels, self.allcommands, self.future,
                        set(self.allowed), {k: list(v) for k, v in self.firstargs.items()},
                        [list(p) for p in self.patterns], list(self.channels), list(self.rules))

    @property
    def unrestricted(self) -> bool:
        return self.allcommands and self.allkeys and self.allchannels

    # -- ACLSetSelector -------------------------------------------------------------------
    def apply(self, op: bytes) -> None:
        lower = op.lower()
        if lower in (b"allkeys", b"~*"):
            self.allkeys = True
            self.patterns.clear()
        elif lower == b"resetkeys":
            self.allkeys = False
            self.patterns.clear()
        elif lower in (b"allchannels", b"&*"):
            self.allchannels = True
            self.channels.clear()
        elif lower == b"resetchannels":
            self.allchannels = False
            self.channels.clear()
        elif lower in (b"allcommands", b"+@all"):
            self.allowed = set(ALL_NAMES)
            self.allcommands = self.future = True
            self.rules.clear()
            self.firstargs.clear()
        elif lower in (b"nocommands", b"-@all"):
            self.allowed = set()
            self.allcommands = self.future = False
            self.rules.clear()
            self.firstargs.clear()
        elif op[:1] in (b"~", b"%"):
            self.add_key_pattern(op)
        elif op[:1] == b"&":
            if self.allchannels:
                raise AclError(E_ISDIR)
            if has_spaces(op[1:]):
                raise AclError(E_INVAL)
            if op[1:] not in self.channels:
                self.channels.append(op[1:])
            self.allchannels = False
        elif op[:1] == b"+" and op[1:2] != b"@":
            self.allow_command(op[1:].decode("utf-8", "surrogateescape"))
        elif op[:1] == b"-" and op[1:2] != b"@":
            spec = lookup_command(op[1:].decode("utf-8", "surrogateescape"))
            if spec is None:
                raise AclError(E_NOENT)
            self.change_perm(spec, False)
            self.update_rules(spec.name, False)
        elif op[:2] in (b"+@", b"-@"):
            category = op[2:].decode("utf-8", "surrogateescape").lower()
            if category not in CATEGORY_MEMBERS:
                raise AclError(E_NOENT)
            self.update_rules("@" + category, op[:1] == b"+")
            self.set_category(category, op[:1] == b"+")
        else:
            raise AclError(E_INVAL)

    def add_key_pattern(self, op: bytes) -> None:
        if self.allkeys:
            raise AclError(E_EXIST)
        flags, offset = 0, 1
        if op[:1] == b"%":
            ok = True
            while offset < len(op):
                ch = op[offset:offset + 1].upper()
                if ch == b"R" and not flags & READ:
                    flags |= READ
                elif ch == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif ch == b"~":
                    offset += 1
                    break
                else:
                    ok = False
                    break
                offset += 1
            if not flags or not ok:
                raise AclError(E_INVAL)
        else:
            flags = ALL_PERMISSIONS
        pattern = op[offset:]
        if has_spaces(pattern):
            raise AclError(E_INVAL)
        for existing in self.patterns:
            if existing[0] == pattern:
                existing[1] |= flags
                break
        else:
            self.patterns.append([pattern, flags])
        self.allkeys = False

    def allow_command(self, text: str) -> None:
        if "|" not in text:
            spec = lookup_command(text)
            if spec is None:
                raise AclError(E_NOENT)
            self.change_perm(spec, True)
            self.update_rules(spec.name, True)
            return
        base_name, sub = text.rsplit("|", 1)
        base = lookup_command(base_name)
        if base is None:
            raise AclError(E_NOENT)
        if is_subcommand(base):
            raise AclError(E_CHILD)
        if not sub:
            raise AclError(E_INVAL)
        if base.subcommands:
            spec = lookup_command(text)
            if spec is None:
                raise AclError(E_NOENT)
            self.change_perm(spec, True)
        else:
            log.log("warning", "Deprecation warning: Allowing a first arg of an otherwise blocked command is "
                               f"a misuse of ACL and may get disabled in the future (offender: +{text})")
            allowed = self.firstargs.setdefault(base.name, [])
            if sub.lower() not in (a.lower() for a in allowed):
                allowed.append(sub)
        self.update_rules(text, True)

    def change_perm(self, spec: CommandSpec, allow: bool) -> None:
        """ACLChangeSelectorPerm: the command's bit and its subcommands' bits."""
        names = [spec.name, *(sub.name for sub in spec.subcommands.values())]
        if allow:
            self.allowed.update(names)
        else:
            self.allowed.difference_update(names)
            self.allcommands = False
        self.firstargs.pop(spec.name, None)

    def set_category(self, category: str, allow: bool) -> None:
        names = CATEGORY_MEMBERS[category]
        if allow:
            self.allowed |= names
        else:
            self.allowed -= names
            self.allcommands = False
        for name in names:
            self.firstargs.pop(name, None)

    def update_rules(self, rule: str, allow: bool) -> None:
        """ACLUpdateCommandRules: drop earlier rules for the same command (and its `|` forms),
        then append this one, so the description replays to the same permissions."""
        rule = rule.lower()
        kept = []
        for existing in self.rules:
            body = existing[1:]
            if body == rule or (len(body) > len(rule) and body.startswith(rule) and body[len(rule)] == "|"):
                continue
            kept.append(existing)
        kept.append(("+" if allow else "-") + rule)
        self.rules = kept

    # -- descriptions -----------------------------------------------------------------------
    def command_rules(self) -> str:
        return " ".join(["+@all" if self.future else "-@all", *self.rules])

    def keys_text(self) -> str:
        if self.allkeys:
            return "~*"
        return " ".join(pattern_text(p, f) for p, f in self.patterns)

    def channels_text(self) -> str:
        if self.allchannels:
            return "&*"
        return " ".join("&" + c.decode("utf-8", "surrogateescape") for c in self.channels)

    def describe(self) -> str:
        parts = []
        if self.allkeys:
            parts.append("~*")
        else:
            parts.extend(pattern_text(p, f) for p, f in self.patterns)
        if self.allchannels:
            parts.append("&*")
        else:
            parts.append("resetchannels")
            parts.extend("&" + c.decode("utf-8", "surrogateescape") for c in self.channels)
        parts.append(self.command_rules())
        return " ".join(parts)

    # -- ACLSelectorCheckCmd ---------------------------------------------------------------
    def check(self, spec: CommandSpec, argv: list[bytes], keys: list | None) -> tuple[int, int]:
        """(result, argv position at fault) for running argv as spec; `keys` is a one-item
        cache of the command's (position, flags) list shared by the user's selectors."""
        if not self.allcommands and "no_auth" not in spec.flags and spec.name not in self.allowed:
            allowed = self.firstargs.get(spec.name)
            if not allowed or len(argv) < 2:
                return DENIED_CMD, 0
            first = argv[2 if is_subcommand(spec) else 1].decode("utf-8", "surrogateescape").lower()
            if first not in (a.lower() for a in allowed):
                return DENIED_CMD, 0
        if not self.allkeys and command_has_keys(spec):
            if not keys:
                keys.append(command_keys(spec, argv))
            for pos, flags in keys[0]:
                if not self.key_allowed(argv[pos], flags):
                    return DENIED_KEY, pos
        if not self.allchannels:
            for pos, pattern in command_channels(spec, argv):
                if not self.channel_allowed(argv[pos], pattern):
                    return DENIED_CHANNEL, pos
        return ACL_OK, 0

    def key_allowed(self, key: bytes, spec_flags) -> bool:
        if self.allkeys:
            return True
        wanted = (READ if "ACCESS" in spec_flags else 0) | (
            WRITE if {"INSERT", "DELETE", "UPDATE"}.intersection(spec_flags) else 0)
        return any(flags & wanted == wanted and glob_match(pattern, key) for pattern, flags in self.patterns)

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        if self.allchannels:
            return True
        if is_pattern:       # a PSUBSCRIBE pattern matches only the same pattern literally
            return channel in self.channels
        return any(glob_match(p, channel) for p in self.channels)


def pattern_text(pattern: bytes, flags: int) -> str:
    prefix = {ALL_PERMISSIONS: "~", READ: "%R~", WRITE: "%W~"}[flags]
    return prefix + pattern.decode("utf-8", "surrogateescape")


def has_spaces(text: bytes) -> bool:
    """ACLStringHasSpaces: isspace() or NUL anywhere."""
    return any(c in b" \t\n\v\f\r\0" for c in text)


def hash_password(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


def valid_hash(text: bytes) -> bool:
    return len(text) == HASH_LEN and all(c in b"0123456789abcdef" for c in text)


def password_digest(op: bytes) -> str:
    """The digest a `>pass` / `<pass` rule hashes, or a `#hash` / `!hash` rule gives."""
    if op[:1] in (b">", b"<"):
        return hash_password(op[1:])
    if valid_hash(op[1:]):
        return op[1:].decode()
    raise AclError(E_BADMSG)


@dataclass(eq=False)
class User:
    name: str
    enabled: bool = False
    nopass: bool = False
    sanitize: bool = True              # sanitize-payload (else skip-sanitize-payload)
    passwords: list[str] = field(default_factory=list)
    selectors: list[Selector] = field(default_factory=list)
    # permissions_text() once computed (a User is replaced, never changed, when its rules change)
    permissions: bytes | None = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str, pubsub_all: bool) -> "User":
        return cls(name, selectors=[Selector(root=True, allchannels=pubsub_all)])

    def copy(self) -> "User":
        return User(self.name, self.enabled, self.nopass, self.sanitize, list(self.passwords),
                    [s.copy() for s in self.selectors])

    @property
    def root(self) -> Selector:
        return self.selectors[0]

    @property
    def unrestricted(self) -> bool:
        return any(s.unrestricted for s in self.selectors)

    # -- ACLSetUser -----------------------------------------------------------------------
    def apply(self, op: bytes, pubsub_all: bool) -> None:
        if not op:
            return
        lower = op.lower()
        if lower == b"on":
            self.enabled = True
        elif lower == b"off":
            self.enabled = False
        elif lower == b"skip-sanitize-payload":
            self.sanitize = False
        elif lower == b"sanitize-payload":
            self.sanitize = True
        elif lower == b"nopass":
            self.nopass = True
            self.passwords.clear()
        elif lower == b"resetpass":
            self.nopass = False
            self.passwords.clear()
        elif op[:1] in (b">", b"#"):
            digest = password_digest(op)
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif op[:1] in (b"<", b"!"):
            digest = password_digest(op)
            if digest not in self.passwords:
                raise AclError(E_NODEV)
            self.passwords.remove(digest)
        elif op[:1] == b"(" and op[-1:] == b")":
            selector = Selector(allchannels=pubsub_all)
            for part in split_args(op[1:-1].decode("utf-8", "surrogateescape")) or []:
                selector.apply(part.encode("utf-8", "surrogateescape"))
            self.selectors.append(selector)
        elif lower == b"clearselectors":
            del self.selectors[1:]
        elif lower == b"reset":
            for step in (b"resetpass", b"resetkeys", b"resetchannels",
                         *((b"allchannels",) if pubsub_all else ()), b"off", b"sanitize-payload",
                         b"clearselectors", b"-@all"):
                self.apply(step, pubsub_all)
        else:
            self.root.apply(op)

    def describe(self) -> str:
        flags = [("on" if self.enabled else "off")]
        if self.nopass:
            flags.append("nopass")
        flags.append("sanitize-payload" if self.sanitize else "skip-sanitize-payload")
        text = " ".join(flags) + " " + "".join(f"#{p} " for p in self.passwords) + self.root.describe()
        for selector in self.selectors[1:]:
            text += f" ({selector.describe()})"
        return text

    def permissions_text(self) -> bytes:
        """Its selectors as ACL rules (no flags, no passwords): what a worker needs to check
        the commands of this user's scripts (`user_from_permissions` reads it back)."""
        if self.permissions is None:
            text = self.root.describe() + "".join(f" ({s.describe()})" for s in self.selectors[1:])
            self.permissions = text.encode("utf-8", "surrogateescape")
        return self.permissions

    def flag_names(self) -> list[str]:
        out = ["on" if self.enabled else "off"]
        if self.nopass:
            out.append("nopass")
        out.append("sanitize-payload" if self.sanitize else "skip-sanitize-payload")
        return out

    def password_ok(self, password: bytes) -> bool:
        """ACLCheckUserCredentials for an existing user."""
        if not self.enabled:
            return False
        if self.nopass:
            return True
        digest = hash_password(password)
        return any(hmac.compare_digest(digest, p) for p in self.passwords)

    def check(self, spec: CommandSpec, argv: list[bytes]) -> tuple[int, int]:
        """ACLCheckAllUserCommandPerm: OK if any selector allows it, else the most relevant
        failure (a key or channel failure over a command one, the later position first)."""
        keys: list = []
        relevant, last = DENIED_CMD, 0
        for selector in self.selectors:
            result, pos = selector.check(spec, argv, keys)
            if result == ACL_OK:
                return ACL_OK, 0
            if result > relevant or (result == relevant and pos > last):
                relevant, last = result, pos
        return relevant, last


def user_from_permissions(name: bytes, permissions: bytes) -> User:
    """The user `User.permissions_text` describes (its checks only: no flags, no passwords)."""
    user = User.create(name.decode("utf-8", "surrogateescape"), False)
    merged, _ = merge_selector_args(permissions.split(b" "))
    for op in merged or []:
        user.apply(op, False)
    return user


def script_denial(user: User, spec: CommandSpec, argv: list[bytes]) -> tuple[bytes, int, bytes] | None:
    """scriptVerifyACL: None when the user may run argv from a script, else (the script's
    error reply, the ACL LOG reason, the logged object)."""
    result, pos = user.check(spec, argv)
    if result == ACL_OK:
        return None
    message = denial_message(result, user.name, spec, argv[pos], False)
    return (resp.error(SCRIPT_DENIED + message), result,
            argv[pos] if result != DENIED_CMD else spec.name.encode())


def merge_selector_args(args: list[bytes]) -> tuple[list[bytes] | None, int]:
    """ACLMergeSelectorArguments: a selector spread over several arguments becomes one.
    (None, index of its first argument) when a parenthesis is left open."""
    merged: list[bytes] = []
    start = -1
    selector = b""
    for j, op in enumerate(args):
        if start == -1 and op[:1] == b"(" and op[-1:] != b")":
            selector, start = op, j
            continue
        if start != -1:
            selector += b" " + op
            if op[-1:] == b")":
                start = -1
                merged.append(selector)
            continue
        merged.append(op)
    if start != -1:
        return None, start
    return merged, -1


def command_has_keys(spec: CommandSpec) -> bool:
    from .introspection import has_keys
    return has_keys(spec)


def command_keys(spec: CommandSpec, argv: list[bytes]) -> list:
    from .introspection import command_keys as keys_of
    return keys_of(spec, argv)


# getChannelsFromCommand: (first channel position, every argument from there, pattern)
_CHANNEL_ARGS = {"publish": (1, False, False), "spublish": (1, False, False), "subscribe": (1, True, False),
                 "ssubscribe": (1, True, False), "psubscribe": (1, True, True)}


def command_channels(spec: CommandSpec, argv: list[bytes]) -> list[tuple[int, bool]]:
    found = _CHANNEL_ARGS.get(spec.name)
    if found is None:
        return []
    first, rest, pattern = found
    end = len(argv) if rest else min(first + 1, len(argv))
    return [(i, pattern) for i in range(first, end)]


def pubsub_revoked(old: User, new: User, state) -> bool:
    """A subscriber of `old` holds a subscription `new` no longer allows."""
    if any(s.allchannels for s in new.selectors):
        return False
    upcoming = [c for s in new.selectors for c in s.channels]
    if not any(s.allchannels for s in old.selectors) and all(
            c in upcoming for s in old.selectors for c in s.channels):
        return False        # nothing taken away
    if any(p not in upcoming for p in state.patterns):
        return True
    return any(not any(glob_match(p, c) for p in upcoming) for c in (*state.channels, *state.shard))


def denial_message(result: int, user: str, spec: CommandSpec, value: bytes, verbose: bool) -> str:
    """getAclErrorMessage."""
    if result == DENIED_CMD:
        return f"User {user} has no permissions to run the '{spec.name}' command"
    what = "key" if result == DENIED_KEY else "channel"
    if verbose:
        return f"User {user} has no permissions to access the '{value.decode('utf-8', 'surrogateescape')}' {what}"
    return f"No permissions to access a {what}"


# -- the ACL state of one proxy ---------------------------------------------------------------

@dataclass
class LogEntry:
    count: int
    reason: int
    context: str
    object: bytes
    username: str
    ctime: int
    cinfo: str
    entry_id: int
    created: int


class Users:
    """The users, by name; the default user always exists."""

    def __init__(self, pubsub_all: bool = False) -> None:
        self.pubsub_all = pubsub_all
        self.by_name: dict[str, User] = {}
        self.by_name["default"] = default_user(pubsub_all)

    @property
    def default(self) -> User:
        return self.by_name["default"]

    def lines(self) -> list[str]:
        """ACL LIST: `user <name> <rules>`, by name."""
        return [f"user {name} {self.by_name[name].describe()}" for name in sorted(self.by_name, key=_name_key)]

    def set_user(self, name: str, ops: list[bytes]) -> None:
        """ACLStringSetUser: all of ops or none (AclError with Valkey's message)."""
        merged, bad = merge_selector_args(ops)
        if merged is None:
            raise AclError(f"Unmatched parenthesis in acl selector starting at "
                           f"'{ops[bad].decode('utf-8', 'surrogateescape')}'.")
        existing = self.by_name.get(name)
        temp = existing.copy() if existing is not None else User.create(name, self.pubsub_all)
        for op in merged:
            try:
                temp.apply(op, self.pubsub_all)
            except AclError as exc:
                raise AclError(f"Error in ACL SETUSER modifier '{op.decode('utf-8', 'surrogateescape')}': "
                               f"{exc}") from None
        self.by_name[name] = temp


def _name_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def default_user(pubsub_all: bool) -> User:
    """ACLCreateDefaultUser."""
    user = User.create("default", pubsub_all)
    for op in (b"+@all", b"~*", b"&*", b"on", b"nopass"):
        user.apply(op, pubsub_all)
    return user


def pubsub_default(values: dict) -> bool:
    return values.get("acl-pubsub-default", "resetchannels") == "allchannels"


def set_default_password(user: User, password: str) -> None:
    """ACLUpdateDefaultUserPassword (requirepass)."""
    user.apply(b"resetpass", False)
    user.apply(b">" + password.encode("utf-8", "surrogateescape") if password else b"nopass", False)


def check_user_directive(argv: list[str], seen: Iterable[str] = ()) -> str | None:
    """ACLAppendUserForLoading for a `user` line of the config: None, or the config error.
    Unknown commands are not errors yet (they fail when the users are loaded)."""
    if argv[1] in seen:
        return f"Error in user declaration '{argv[1]}': {E_ALREADY}"
    ops = [a.encode("utf-8", "surrogateescape") for a in argv[2:]]
    merged, bad = merge_selector_args(ops)
    if merged is None:
        return f"Error in user declaration '{argv[bad]}': {E_WRONG}"
    fake = User.create("__fakeuser__", False)
    for j, op in enumerate(merged):
        try:
            fake.apply(op, False)
        except AclError as exc:
            if str(exc) != E_NOENT:
                # Valkey indexes argv with the position among the rules (argv[j]).
                return f"Error in user declaration '{argv[j]}': {exc}"
    return None


class StartupError(Exception):
    """The users cannot be loaded at start; the server must not start (args: lines to log)."""


CRITICAL = "Critical error while loading ACLs. Exiting."


def load_users_at_startup(cfg) -> list[str]:
    """ACLLoadUsersAtStartup: requirepass, the config's `user` lines, then the aclfile; the
    resulting ACL LIST lines. Raises StartupError."""
    values = cfg.values
    users = Users(pubsub_default(values))
    if values.get("requirepass"):
        set_default_password(users.default, values["requirepass"])
    aclfile = values.get("aclfile") or ""
    if aclfile and cfg.users:
        raise StartupError("Configuring Redis with users defined in redis.conf and at the same setting an ACL "
                           "file path is invalid. This setup is very likely to lead to configuration errors and "
                           "security holes, please define either an ACL file or declare users directly in your "
                           "redis.conf, but not both.")
    for line in cfg.users:
        argv = split_args(line) or []
        name = argv[1]
        if has_spaces(name.encode("utf-8", "surrogateescape")):
            raise StartupError("Spaces not allowed in ACL usernames", CRITICAL)
        user = users.by_name.get(name)
        if user is None:
            user = users.by_name[name] = User.create(name, users.pubsub_all)
        else:
            user.apply(b"reset", users.pubsub_all)
        merged, _ = merge_selector_args([a.encode("utf-8", "surrogateescape") for a in argv[2:]])
        for op in merged or []:
            try:
                user.apply(op, users.pubsub_all)
            except AclError as exc:
                raise StartupError(f"Error loading ACL rule '{op.decode('utf-8', 'surrogateescape')}' for the user "
                                   f"named '{name}': {exc}", CRITICAL) from None
        if not user.enabled:
            log.log("notice", f"The user '{name}' is disabled (there is no 'on' modifier in the user "
                              "description). Make sure this is not a configuration error.")
    if aclfile:
        loaded, problems = load_file(aclfile, users.pubsub_all)
        if problems:
            raise StartupError(f"Aborting Redis startup because of ACL errors: {problems}")
        users = loaded
    return users.lines()


def load_file(path: str, pubsub_all: bool) -> tuple[Users, str]:
    """ACLLoadFromFile: the users of the file, or the errors found (nothing is loaded then)."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        return Users(pubsub_all), f"Error loading ACLs, opening file '{path}': {os.strerror(exc.errno or 0)}"
    users = Users(pubsub_all)
    del users.by_name["default"]
    problems = ""
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r\n")
        if not line:
            continue
        argv = line.split(" ")
        if argv[0] != "user" or len(argv) < 2:
            problems += f"{path}:{number} should start with user keyword followed by the username. "
            continue
        name = argv[1]
        if has_spaces(name.encode("utf-8", "surrogateescape")):
            problems += f"'{path}:{number}: username '{name}' contains invalid characters. "
            continue
        if name in users.by_name:
            problems += f"WARNING: Duplicate user '{name}' found on line {number}. "
            continue
        user = users.by_name[name] = User.create(name, pubsub_all)
        merged, _ = merge_selector_args([a.encode("utf-8", "surrogateescape") for a in argv[2:]])
        if merged is None:
            problems += f"{path}:{number}: Unmatched parenthesis in selector definition."
            merged = []
        syntax_error = False
        for op in merged:
            op = op.strip(b"\t\r\n")
            try:
                user.apply(op, pubsub_all)
            except AclError as exc:
                if str(exc) == E_NOENT:
                    problems += (f"{path}:{number}: Error in applying operation "
                                 f"'{op.decode('utf-8', 'surrogateescape')}': {exc}. ")
                elif not syntax_error:
                    problems += f"{path}:{number}: {exc}. "
                    syntax_error = True
    if problems:
        return users, problems + "WARNING: ACL errors detected, no change to the previously active ACL rules " \
                                 "was performed"
    if "default" not in users.by_name:
        users.by_name["default"] = default_user(pubsub_all)
    return users, ""


def users_from_lines(lines: list[str], pubsub_all: bool) -> Users:
    """The state ACL LIST describes (the lines every proxy passes around)."""
    users = Users(pubsub_all)
    for line in lines:
        argv = line.split(" ")
        user = User.create(argv[1], pubsub_all)
        merged, _ = merge_selector_args([a.encode("utf-8", "surrogateescape") for a in argv[2:]])
        for op in merged or []:
            user.apply(op, pubsub_all)
        users.by_name[argv[1]] = user
    return users


class Acl:
    """One proxy's ACL: the users, the log, and the per-client checks."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        values = proxy.config.values
        lines = getattr(proxy.config, "acl_state", None)
        if lines is None:
            try:
                lines = load_users_at_startup(proxy.config)
            except StartupError as exc:
                log.log("warning", exc.args[0])
                lines = Users(pubsub_default(values)).lines()
        self.users = users_from_lines(lines, pubsub_default(values))
        if not values.get("aclfile"):
            proxy.config.users = list(lines)      # CONFIG REWRITE writes them as ACL LIST does
        self.log: list[LogEntry] = []
        self.log_count = 0
        proxy.limit_stats.update({name: 0 for name in STAT_NAMES.values()})

    # -- clients ------------------------------------------------------------------------------
    def default_nopass(self) -> bool:
        """The default user needs no password (protected mode and AUTH <password> ask)."""
        return self.users.default.nopass

    def greet(self, conn) -> None:
        """A new connection (and RESET): the default user, authenticated if it needs no
        password and is on (clientSetDefaultAuth)."""
        conn.user = "default"
        conn.logged_in = False
        self.refresh(conn)

    def refresh(self, conn) -> None:
        """The client's precomputed flags after a change of its user or of the ACL."""
        user = self.users.by_name.get(conn.user)
        default = self.users.default
        conn.authenticated = conn.logged_in or (default.nopass and default.enabled)
        conn.guarded = not conn.authenticated or user is None or not user.unrestricted

    def refresh_all(self) -> None:
        for conn in list(self.proxy.clients.values()):
            self.refresh(conn)

    def authenticate(self, conn, username: bytes, password: bytes, command: bytes) -> bool:
        """ACLAuthenticateUser: log the client in as the user, or log the failure."""
        name = username.decode("utf-8", "surrogateescape")
        user = self.users.by_name.get(name)
        if user is None or not user.password_ok(password):
            self.add_log(conn, DENIED_AUTH, command, name)
            return False
        conn.user = name
        conn.logged_in = True
        self.refresh(conn)
        return True

    def refuses(self, conn, spec: CommandSpec, argv: list[bytes]) -> bool:
        """The checks a guarded client's command passes before it runs (authRequired, then
        ACLCheckAllPerm); True when it was refused (the reply is queued)."""
        proxy = self.proxy
        if not conn.authenticated and "no_auth" not in spec.flags:
            proxy.opstats.rejected(spec)
            conn.reply_local(resp.error(errors.NOAUTH))
            return True
        if spec.subcommands and len(argv) > 1:     # a proxy handler's container: judge its subcommand
            sub = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower())
            if sub is None or not sub.arity_ok(len(argv)):
                return False                        # the handler answers with the arity/unknown error
            spec = sub
        user = self.users.by_name.get(conn.user)
        if user is None:
            return False
        result, pos = user.check(spec, argv)
        if result == ACL_OK:
            return False
        conn.last_argv = argv
        self.add_log(conn, result, argv[pos] if pos else spec.name.encode(), conn.user)
        conn.reject("NOPERM " + denial_message(result, conn.user, spec, argv[pos], False), spec)
        return True

    # -- scripts and transactions ----------------------------------------------------------
    def script_user(self, conn) -> User | None:
        """The user whose permissions a script of this client must be checked against; None
        when it may run everything (the default user: scripts pay nothing)."""
        if not conn.guarded:
            return None
        user = self.users.by_name.get(conn.user)
        return None if user is None or user.unrestricted else user

    def exec_check(self, conn, argv: list[bytes]) -> tuple[int, int, CommandSpec | None]:
        """ACLCheckAllPerm of a queued command at EXEC: (result, position, spec)."""
        user = self.users.by_name.get(conn.user)
        spec = self.proxy.lookup(argv[0])
        if user is None or spec is None:
            return ACL_OK, 0, spec
        if spec.subcommands and len(argv) > 1:
            spec = spec.subcommands.get(argv[1].decode("utf-8", "replace").lower(), spec)
        result, pos = user.check(spec, argv)
        return result, pos, spec

    def exec_denied(self, conn, queued: list[list[bytes]]) -> bool:
        """Would EXEC refuse one of the queued commands (the ACL changed since it was queued)?"""
        return any(self.exec_check(conn, argv)[0] != ACL_OK for argv in queued)

    def exec_denial(self, conn, argv: list[bytes]) -> bytes | None:
        """execCommand's check of one queued command: its NOPERM reply (logged, context
        "multi") or None when it may run."""
        result, pos, spec = self.exec_check(conn, argv)
        if result == ACL_OK:
            return None
        self.add_log(conn, result, argv[pos] if pos else spec.name.encode(), conn.user, "multi")
        return resp.error(EXEC_DENIED + EXEC_REASONS.get(result, "no permission"))

    # -- the ACL log ------------------------------------------------------------------------
    def add_log(self, conn, reason: int, obj: bytes, username: str, context: str | None = None) -> None:
        """addACLLogEntry: a new entry, or a similar recent one counted again. `context`:
        "lua" or "multi" when not where the client is (toplevel, or queueing in MULTI)."""
        from .connection import client_info_line
        stats = self.proxy.limit_stats
        stats[STAT_NAMES[reason]] = stats.get(STAT_NAMES[reason], 0) + 1
        now = int(time.time() * 1000)
        if context is None:
            context = "multi" if conn.multi is not None else "toplevel"
        try:
            cinfo = client_info_line(conn)
        except Exception:  # a client with no socket (internal)
            cinfo = ""
        for i, entry in enumerate(self.log[:10]):
            if (entry.reason == reason and entry.context == context and abs(entry.ctime - now) <= LOG_GROUPING_MS
                    and entry.object == obj and entry.username == username):
                entry.count += 1
                entry.ctime = now
                entry.cinfo = cinfo
                self.log.insert(0, self.log.pop(i))
                return
        self.log.insert(0, LogEntry(1, reason, context, obj, username, now, cinfo, self.log_count, now))
        self.log_count += 1
        del self.log[max(self.proxy.config.values.get("acllog-max-len", 128), 0):]

    # -- changes ----------------------------------------------------------------------------
    def replace(self, lines: list[str], killed: Iterable[str], asker=None,
                before: dict[str, User] | None = None) -> None:
        """Take the ACL state `lines`; close the clients of the users named in `killed`
        (deleted users; every non-default user after ACL LOAD)."""
        old = before if before is not None else self.users.by_name
        self.users = users_from_lines(lines, pubsub_default(self.proxy.config.values))
        killed = set(killed)
        for conn in list(self.proxy.clients.values()):
            if conn.user not in killed and getattr(conn, "pubsub", None) is not None and conn.user in old:
                new = self.users.by_name.get(conn.user)
                if new is not None and pubsub_revoked(old[conn.user], new, conn.pubsub):
                    # ACLKillPubsubClientsIfNeeded: its subscriptions are no longer allowed
                    if conn.transport is not None:
                        conn.transport.close()
                    continue
            if conn.user in killed:
                conn.user = "default"
                conn.logged_in = False
                if conn is asker:
                    conn.closing = True
                elif conn.transport is not None:
                    conn.transport.close()
            self.refresh(conn)
        if not self.proxy.config.values.get("aclfile"):
            self.proxy.config.users = list(lines)    # what CONFIG REWRITE writes

    def publish(self, conn, killed: Iterable[str], reply: bytes, before: dict[str, User]) -> bytes | None:
        """Share the new state with the supervisor and every other proxy; the client's reply
        once every proxy has it (inside EXEC: at once). `before`: the users before the change."""
        lines = self.users.lines()
        killed = sorted(killed)
        self.replace(lines, killed, conn, before)
        proxy = self.proxy
        proxy.send_control({"op": "acl_state", "lines": lines})
        if proxy.n_proxies == 1:
            return reply
        if conn.paused:
            proxy.send_control({"op": "query", "qid": 0, "from": proxy.index, "what": "acl_replace",
                                "args": (lines, killed)})
            return reply
        proxy.ask_all(conn, "acl_replace", (lines, killed), lambda answers: reply)
        return None

    def config_set(self, pairs: list[tuple[str, str]]) -> None:
        """CONFIG SET requirepass (ACLUpdateDefaultUserPassword) and acllog-max-len."""
        names = {name.lower() for name, _ in pairs}
        if "requirepass" in names:
            set_default_password(self.users.default, self.proxy.config.values.get("requirepass") or "")
            self.refresh_all()
            lines = self.users.lines()
            if not self.proxy.config.values.get("aclfile"):
                self.proxy.config.users = list(lines)
            self.proxy.send_control({"op": "acl_state", "lines": lines})
        if "acllog-max-len" in names:
            del self.log[max(self.proxy.config.values["acllog-max-len"], 0):]
        if "acl-pubsub-default" in names:
            self.users.pubsub_all = pubsub_default(self.proxy.config.values)


@proxy_query("acl_replace")
def replace_state(proxy, args: tuple[list[str], list[str]], asker) -> None:
    if asker is None:          # the asking proxy has it already
        proxy.acl.replace(args[0], args[1])


@proxy_query("acl_log")
def local_log(proxy, args, asker) -> Any:
    if args == "reset":
        proxy.acl.log.clear()
        return None
    return [(e.count, e.reason, e.context, e.object, e.username, e.ctime, e.cinfo, e.entry_id, e.created)
            for e in proxy.acl.log]


# -- the ACL command ------------------------------------------------------------------------

def acl_of(conn) -> Acl:
    return conn.proxy.acl


@proxy_command("acl")
def acl_command(conn, argv: list[bytes]) -> bytes | None:
    sub = argv[1].decode("utf-8", "replace").lower()
    spec = COMMANDS["acl"].subcommands.get(sub)
    if spec is None:
        return resp.error(errors.unknown_subcommand(argv[1], "ACL"))
    if not spec.arity_ok(len(argv)):
        return resp.error(errors.wrong_arity(spec.name))
    handler = ACL_SUBCOMMANDS[sub]
    return handler(conn, argv)


def acl_setuser(conn, argv: list[bytes]) -> bytes | None:
    name = argv[2].decode("utf-8", "surrogateescape")
    if has_spaces(argv[2]):
        return resp.error("ERR Usernames can't contain spaces or null characters")
    acl = acl_of(conn)
    before = dict(acl.users.by_name)          # set_user replaces the User, never changes it
    try:
        acl.users.set_user(name, argv[3:])
    except AclError as exc:
        return resp.error("ERR " + str(exc))
    return acl.publish(conn, (), resp.OK, before)


def acl_deluser(conn, argv: list[bytes]) -> bytes | None:
    names = [a.decode("utf-8", "surrogateescape") for a in argv[2:]]
    if "default" in names:
        return resp.error("ERR The 'default' user cannot be removed")
    acl = acl_of(conn)
    before = dict(acl.users.by_name)
    deleted = [n for n in dict.fromkeys(names) if acl.users.by_name.pop(n, None) is not None]
    if not deleted:
        return resp.integer(0)
    return acl.publish(conn, deleted, resp.integer(len(deleted)), before)


def acl_getuser(conn, argv: list[bytes]) -> bytes:
    user = acl_of(conn).users.by_name.get(argv[2].decode("utf-8", "surrogateescape"))
    proto = conn.proto
    if user is None:
        return resp.null(proto)

    def selector_fields(s: Selector) -> list[bytes]:
        return [resp.bulk(b"commands"), resp.bulk(s.command_rules().encode()),
                resp.bulk(b"keys"), resp.bulk(s.keys_text().encode("utf-8", "surrogateescape")),
                resp.bulk(b"channels"), resp.bulk(s.channels_text().encode("utf-8", "surrogateescape"))]
    flags = user.flag_names()
    out = [resp.map_header(6, proto),
           resp.bulk(b"flags"), resp.set_header(len(flags), proto), *(resp.bulk(f.encode()) for f in flags),
           resp.bulk(b"passwords"), resp.bulk_array([p.encode() for p in user.passwords], proto),
           *selector_fields(user.root),
           resp.bulk(b"selectors"), b"*%d\r\n" % (len(user.selectors) - 1)]
    for selector in user.selectors[1:]:
        out.append(resp.map_header(3, proto))
        out.extend(selector_fields(selector))
    return b"".join(out)


def acl_list(conn, argv: list[bytes]) -> bytes:
    return resp.bulk_array([line.encode("utf-8", "surrogateescape") for line in acl_of(conn).users.lines()],
                           conn.proto)


def acl_users(conn, argv: list[bytes]) -> bytes:
    names = sorted(acl_of(conn).users.by_name, key=_name_key)
    return resp.bulk_array([_name_key(n) for n in names], conn.proto)


def acl_whoami(conn, argv: list[bytes]) -> bytes:
    return resp.bulk(conn.user.encode("utf-8", "surrogateescape"))


def acl_cat(conn, argv: list[bytes]) -> bytes:
    if len(argv) == 2:
        return resp.bulk_array([c.encode() for c in CATEGORIES], conn.proto)
    category = argv[2].decode("utf-8", "replace").lower()
    if category not in CATEGORY_MEMBERS:
        return resp.error(f"ERR Unknown category '{argv[2][:128].decode('utf-8', 'replace')}'")
    names = [spec.name.encode() for spec in all_commands()
             if "@" + category in spec.facts.get("acl_categories_all", ())]
    return resp.bulk_array(names, conn.proto)


def acl_genpass(conn, argv: list[bytes]) -> bytes:
    bits = 256
    if len(argv) == 3:
        value = string2ll(argv[2])
        if value is None:
            return resp.error(errors.NOT_INTEGER)
        bits = value
    if bits <= 0 or bits > GENPASS_MAX_BITS:
        return resp.error(GENPASS_RANGE)
    chars = (bits + 3) // 4
    return resp.bulk(secrets.token_hex((chars + 1) // 2)[:chars].encode())


def acl_log(conn, argv: list[bytes]) -> bytes | None:
    count = 10
    if len(argv) == 3:
        if argv[2].lower() == b"reset":
            from .connection import every_proxy
            return every_proxy(conn, "acl_log", "reset")
        value = string2ll(argv[2])
        if value is None:
            return resp.error(errors.NOT_INTEGER)
        count = max(value, 0)
    proto = conn.proto

    def render(answers: list) -> bytes:
        entries = merge_logs(answers)[:count]
        now = int(time.time() * 1000)
        out = [b"*%d\r\n" % len(entries)]
        for n, reason, context, obj, username, ctime, cinfo, entry_id, created in entries:
            out += [resp.map_header(10, proto),
                    resp.bulk(b"count"), resp.integer(n),
                    resp.bulk(b"reason"), resp.bulk(REASONS[reason].encode()),
                    resp.bulk(b"context"), resp.bulk(context.encode()),
                    resp.bulk(b"object"), resp.bulk(obj),
                    resp.bulk(b"username"), resp.bulk(username.encode("utf-8", "surrogateescape")),
                    resp.bulk(b"age-seconds"), resp.double((now - ctime) / 1000, proto),
                    resp.bulk(b"client-info"), resp.bulk(cinfo.encode("utf-8", "surrogateescape")),
                    resp.bulk(b"entry-id"), resp.integer(entry_id),
                    resp.bulk(b"timestamp-created"), resp.integer(created),
                    resp.bulk(b"timestamp-last-updated"), resp.integer(ctime)]
        return b"".join(out)
    if conn.paused:            # inside EXEC: this proxy's log
        return render([local_log(conn.proxy, None, conn)])
    conn.proxy.ask_all(conn, "acl_log", None, render)
    return None


def merge_logs(answers: list[list[tuple]]) -> list[tuple]:
    """Every proxy's entries, newest first; the same event logged by several proxies (same
    reason, context, object and user, within a minute) is one entry, as in one process."""
    merged: list[list] = []
    for entry in sorted((e for answer in answers for e in answer), key=lambda e: e[5], reverse=True):
        for m in merged:
            if m[1:5] == list(entry[1:5]) and abs(m[5] - entry[5]) <= LOG_GROUPING_MS:
                m[0] += entry[0]
                m[8] = min(m[8], entry[8])
                break
        else:
            merged.append(list(entry))
    return [tuple(m) for m in merged]


def acl_dryrun(conn, argv: list[bytes]) -> bytes:
    name = argv[2].decode("utf-8", "surrogateescape")
    user = acl_of(conn).users.by_name.get(name)
    if user is None:
        return resp.error(f"ERR User '{name}' not found")
    call = argv[3:]
    spec = commands.lookup(call[0])
    if spec is not None and spec.subcommands and len(call) > 1:
        spec = spec.subcommands.get(call[1].decode("utf-8", "replace").lower())
    if spec is None:
        return resp.error(f"ERR Command '{call[0].decode('utf-8', 'surrogateescape')}' not found")
    if not spec.arity_ok(len(call)):
        return resp.error(f"ERR wrong number of arguments for '{spec.name}' command")
    result, pos = user.check(spec, call)
    if result != ACL_OK:
        return resp.bulk(denial_message(result, name, spec, call[pos], True).encode("utf-8", "surrogateescape"))
    return resp.OK


def acl_load(conn, argv: list[bytes]) -> bytes | None:
    acl = acl_of(conn)
    path = conn.proxy.config.values.get("aclfile") or ""
    if not path:
        return resp.error(NO_ACLFILE)
    users, problems = load_file(path, acl.users.pubsub_all)
    if problems:
        return resp.error("ERR " + problems)
    before = acl.users.by_name
    acl.users = users
    return acl.publish(conn, [n for n in before if n != "default"], resp.OK, before)


def acl_save(conn, argv: list[bytes]) -> bytes:
    path = conn.proxy.config.values.get("aclfile") or ""
    if not path:
        return resp.error(NO_ACLFILE)
    text = "".join(line + "\n" for line in acl_of(conn).users.lines()).encode("utf-8", "surrogateescape")
    tmp = f"{path}.tmp-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        log.log("warning", f"Writing ACL file for ACL SAVE: {exc.strerror or exc}")
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return resp.error(SAVE_FAILED)
    return resp.OK


def acl_help(conn, argv: list[bytes]) -> bytes:
    from .slowlog import help_reply
    return help_reply("ACL", ACL_HELP)


ACL_SUBCOMMANDS = {
    "setuser": acl_setuser, "deluser": acl_deluser, "getuser": acl_getuser, "list": acl_list,
    "users": acl_users, "whoami": acl_whoami, "cat": acl_cat, "genpass": acl_genpass, "log": acl_log,
    "dryrun": acl_dryrun, "load": acl_load, "save": acl_save, "help": acl_help,
}
