"""
Accounts: the space-separated C{credentials.txt}, and its atomic rewrite
behind C{/changepassword}.

One account a line, C{USERNAME PASSWORD}, separated by one space. Blank
lines are ignored; a malformed line is reported (file and line number) and
skipped, never fatal for the rest.
"""

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from zope.interface import implementer

from ..core.interfaces import IAccounts
from .textlogs import write_file_atomically

log = Logger()


@dataclass(slots=True)
class CredentialProblem:
    path: str
    lineno: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}; line skipped"


def parse_credentials(path: str, text: str):
    """Return C{(secrets, problems)}: username -> stored secret, and what was skipped."""
    secrets: dict[str, str] = {}
    problems: list[CredentialProblem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(" ")
        if len(fields) != 2 or not all(fields) or any(c.isspace() for c in line if c != " "):
            problems.append(CredentialProblem(path, lineno, "expected 'USERNAME PASSWORD'"))
            continue
        username, secret = fields
        if username in secrets:
            problems.append(CredentialProblem(path, lineno, f"duplicate account {username!r}"))
            continue
        secrets[username] = secret
    return secrets, problems


@implementer(IAccounts)
class CredentialsFile:
    """
    The accounts, loaded from one file.

    @param reactor: where C{set_secret}'s rewrites run in a thread (one at a
        time, in order), so the reactor never waits for the disk's flush;
        None rewrites on the calling thread (tests on a Clock).
    """

    def __init__(self, path: str, reactor=None):
        self.path = path
        self.reactor = reactor if IReactorThreads.providedBy(reactor) else None
        self._rewrites = defer.DeferredLock()  # one rewrite at a time: the file lock is per process
        self.secrets: dict[str, str] = {}
        self.problems: list[CredentialProblem] = []

    def load(self) -> "CredentialsFile":
        with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
            self.secrets, self.problems = parse_credentials(self.path, f.read())
        for problem in self.problems:
            log.warn("{problem}", problem=str(problem))
        return self

    def reload(self) -> "CredentialsFile":
        """Read the file again (SIGHUP, a change seen by the watcher); OSError keeps the old accounts."""
        return self.load()

    def __contains__(self, username: str) -> bool:
        return username in self.secrets

    def secret(self, username: str):
        return self.secrets.get(username)

    def names(self) -> list[str]:
        return sorted(self.secrets)

    def set_secret(self, username: str, secret: str) -> defer.Deferred:
        """
        Store C{secret} for C{username}, rewriting the file atomically (every
        other byte kept); fire once it is on disk.
        """

        def rewrite():
            if self.reactor is None:
                return defer.maybeDeferred(rewrite_credentials, self.path, username, secret)
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), rewrite_credentials,
                                             self.path, username, secret)

        def stored(_):
            self.secrets[username] = secret

        def not_stored(failure):
            if failure.check(AccountNotInFile):
                raise KeyError(username)
            return failure

        return self._rewrites.run(rewrite).addCallbacks(stored, not_stored)


class AccountNotInFile(Exception):
    """The account is no longer in the credentials file (edited by hand since start-up)."""


def replace_line_secret(path: str, data: bytes, username: str, secret: str) -> bytes:
    """
    Return C{data} (a credentials file) with the secret of C{username}'s line
    replaced, every other byte kept. The line is the one the loader uses: the
    first well-formed line for that account, split into lines as the loader
    splits them.
    """
    text = data.decode("utf-8", "surrogateescape")
    pieces = text.splitlines(keepends=True)
    for i, piece in enumerate(pieces):
        body = piece.splitlines()[0]
        if username not in parse_credentials(path, body)[0]:
            continue
        pieces[i] = f"{username} {secret}{piece[len(body):]}"
        return "".join(pieces).encode("utf-8", "surrogateescape")
    raise AccountNotInFile(username)


def rewrite_credentials(path: str, username: str, secret: str) -> None:
    """Store C{secret} for C{username} in the credentials file, atomically."""
    with credentials_lock(path):
        with open(path, "rb") as f:
            data = f.read()
        write_file_atomically(path, [replace_line_secret(path, data, username, secret)])


# Account names chatproto-admin creates (docs/OPERATING.md): the file only forbids
# whitespace; these also stay clear of what the IRC and web front ends give a
# meaning to (#channels, "user:password", "$*", option-like "-x").
USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", re.ASCII)
USERNAME_RULE = ("1 to 32 ASCII letters, digits, '_', '.' or '-', "
                 "starting with a letter, a digit or '_'")


def username_problem(name: str) -> str | None:
    """Why C{name} cannot be a new account's name, or None."""
    if USERNAME.fullmatch(name):
        return None
    return f"a username is {USERNAME_RULE}"


@contextlib.contextmanager
def credentials_lock(path: str):
    """
    Hold an exclusive lock on the credentials file while it is read and
    rewritten, so that the server's C{/changepassword} and C{chatproto-admin}
    never undo each other's change. The lock is on the file itself (no file
    of its own): a rewrite replaces the file, so a lock taken on a file that
    was replaced meanwhile is taken again on the new one.
    """
    real = os.path.realpath(path)
    while True:
        try:
            fd = os.open(real, os.O_RDONLY)
        except FileNotFoundError:
            yield  # nothing to lock yet (adduser creates the file)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(real).st_ino:
                break
        except OSError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def add_account(path: str, username: str, secret: str) -> None:
    """Append C{USERNAME SECRET} to the credentials file (created if missing), atomically."""
    with credentials_lock(path):
        try:
            data = _read(path)
        except FileNotFoundError:
            data = b""
        if username in parse_credentials(path, data.decode("utf-8", "surrogateescape"))[0]:
            raise AccountExists(username)
        if data and not data.endswith((b"\n", b"\r")):
            data += b"\n"
        write_file_atomically(path, [data, f"{username} {secret}\n".encode("utf-8", "surrogateescape")])


def delete_account(path: str, username: str) -> None:
    """Remove every line of C{username}'s account (a duplicate would take its place), atomically."""
    with credentials_lock(path):
        text = _read(path).decode("utf-8", "surrogateescape")
        pieces = text.splitlines(keepends=True)
        kept = [piece for piece in pieces
                if not (piece.strip() and piece.split(" ", 1)[0] == username
                        and username in parse_credentials(path, piece.splitlines()[0])[0])]
        if len(kept) == len(pieces):
            raise AccountNotInFile(username)
        write_file_atomically(path, ["".join(kept).encode("utf-8", "surrogateescape")])


class AccountExists(Exception):
    """The credentials file has this account already."""

