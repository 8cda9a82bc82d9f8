"""
Accounts: the space-separated C{credentials.txt}, and its atomic rewrite
behind C{/changepassword}.

One account a line, C{USERNAME PASSWORD}, separated by one space. Blank
lines are ignored; a malformed line is reported (file and line number) and
skipped, never fatal for the rest.
"""

from dataclasses import dataclass

from twisted.internet import defer
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
    """The accounts, loaded from one file."""

    def __init__(self, path: str):
        self.path = path
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
        """Store C{secret} for C{username}, rewriting the file atomically (every other byte kept)."""
        try:
            rewrite_credentials(self.path, username, secret)
        except AccountNotInFile:
            return defer.fail(KeyError(username))
        except OSError:
            return defer.fail()
        self.secrets[username] = secret
        return defer.succeed(None)


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
    with open(path, "rb") as f:
        data = f.read()
    write_file_atomically(path, [replace_line_secret(path, data, username, secret)])

