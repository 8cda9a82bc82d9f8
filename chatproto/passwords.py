"""
Passwords: bcrypt hashing, checking off the reactor thread, and the atomic
rewrite of C{credentials.txt} behind C{/changepassword}.

A stored secret is either plain text (as the seed's file has them) or a
bcrypt hash in its usual C{$2b$...} form; both keep working. A changed
password is always stored hashed.

bcrypt is slow on purpose (about 0.3 s at 12 rounds): on a real reactor the
hashing and the checking of hashed secrets run in the reactor's thread pool,
so one login or password change never stalls every other user. With a
L{twisted.internet.task.Clock} (unit tests) they run synchronously, so tests
stay deterministic. Plain-text secrets are compared on the spot.
"""

import bcrypt
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads

from .accounts import (
    CredentialsFileChecker,
    UnknownUser,
    WrongPassword,
    parse_credentials,
    password_matches,
)
from .errors import EMPTY_PASSWORD, HAS_WHITESPACE, ChatError
from .journal import write_file_atomically

HASH_ROUNDS = 12
HASH_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_PASSWORD_BYTES = 72  # bcrypt's limit

TOO_LONG = f"A password cannot be longer than {MAX_PASSWORD_BYTES} bytes."


def is_hashed(secret: str) -> bool:
    return secret.startswith(HASH_PREFIXES)


def hash_password(password: str, rounds: int = HASH_ROUNDS) -> str:
    """A salted bcrypt hash of C{password}, as text (C{$2b$12$...})."""
    hashed = bcrypt.hashpw(password.encode("utf-8", "surrogateescape"), bcrypt.gensalt(rounds))
    return hashed.decode("ascii")


def check_new_password(password: str) -> None:
    """Raise L{ChatError} with the user's text when C{password} cannot be stored."""
    if not password:
        raise ChatError(EMPTY_PASSWORD)
    if any(c.isspace() for c in password):
        raise ChatError(HAS_WHITESPACE)
    if len(password.encode("utf-8", "surrogateescape")) > MAX_PASSWORD_BYTES:
        raise ChatError(TOO_LONG)


class Passwords:
    """
    Hashes and checks passwords, in the reactor's thread pool when C{clock}
    is a real reactor, synchronously otherwise.
    """

    def __init__(self, clock=None, rounds: int = HASH_ROUNDS):
        self.clock = clock
        self.rounds = rounds

    def _run(self, f, *args) -> defer.Deferred:
        clock = self.clock
        if IReactorThreads.providedBy(clock):
            return threads.deferToThreadPool(clock, clock.getThreadPool(), f, *args)
        return defer.maybeDeferred(f, *args)

    def verify(self, secret: str, password: str) -> defer.Deferred:
        """A Deferred firing with whether C{password} matches the stored C{secret}."""
        if not is_hashed(secret):
            return defer.succeed(password_matches(secret, password))
        return self._run(password_matches, secret, password)

    def hash(self, password: str) -> defer.Deferred:
        """A Deferred firing with the hash of C{password}, to be stored."""
        return self._run(hash_password, password, self.rounds)


class PasswordChecker(CredentialsFileChecker):
    """
    The realm's C{twisted.cred} checker: L{CredentialsFileChecker}, with
    hashed secrets checked through L{Passwords} (off the reactor thread).
    Both logins and C{/changepassword} go through it.
    """

    def __init__(self, accounts, passwords: Passwords):
        super().__init__(accounts)
        self.passwords = passwords

    def requestAvatarId(self, credentials):
        username = credentials.username
        secret = self.accounts.secrets.get(username)
        if secret is None:
            return defer.fail(UnknownUser(username))

        def checked(matches):
            if not matches:
                raise WrongPassword(username)
            return username

        return self.passwords.verify(secret, credentials.password).addCallback(checked)


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
