"""
Accounts: the space-separated C{credentials.txt} and a C{twisted.cred}
checker over it.

One account a line, C{USERNAME PASSWORD}, separated by one space. Blank
lines are ignored; a malformed line is reported (file and line number) and
skipped, never fatal for the rest.
"""

from dataclasses import dataclass

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


class UnknownUser(UnauthorizedLogin):
    """No account has this name."""


class WrongPassword(UnauthorizedLogin):
    """The account exists; the password does not match."""


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


def password_matches(secret: str, password: str) -> bool:
    """A stored secret is plain text, or a bcrypt hash in its usual C{$2b$...} form."""
    if secret.startswith(("$2a$", "$2b$", "$2y$")):
        import bcrypt

        try:
            return bcrypt.checkpw(password.encode("utf-8"), secret.encode("ascii"))
        except ValueError:
            return False
    return secret == password


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

    def __contains__(self, username: str) -> bool:
        return username in self.secrets

    def check(self, username: str, password: str) -> None:
        """Raise L{UnknownUser} or L{WrongPassword}, or return when they match."""
        secret = self.secrets.get(username)
        if secret is None:
            raise UnknownUser(username)
        if not password_matches(secret, password):
            raise WrongPassword(username)


@implementer(ICredentialsChecker)
class CredentialsFileChecker:
    """Checks L{IUsernamePassword} credentials against a L{CredentialsFile}."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts: CredentialsFile):
        self.accounts = accounts

    def requestAvatarId(self, credentials):
        try:
            self.accounts.check(credentials.username, credentials.password)
        except UnauthorizedLogin:
            return defer.fail()
        return defer.succeed(credentials.username)
