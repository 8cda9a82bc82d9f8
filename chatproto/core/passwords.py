"""
Passwords: bcrypt hashing and checking off the reactor thread, and the
C{twisted.cred} checker the realm logs users in with.

A stored secret is either plain text (as the seed's file has them) or a
bcrypt hash in its usual C{$2b$...} form; both keep working. A changed
password is always stored hashed.

bcrypt is slow on purpose (about 0.3 s at 12 rounds): on a real reactor the
hashing and the checking of hashed secrets run in the reactor's thread pool,
so one login or password change never stalls every other user. With a
L{twisted.internet.task.Clock} (unit tests) they run synchronously, so tests
stay deterministic. Plain-text secrets are compared on the spot.
"""

import hmac

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from zope.interface import implementer

from . import errors
from .errors import ChatError

HASH_ROUNDS = 12
HASH_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
MAX_IN_FLIGHT = 2  # bcrypt computations at once (this machine has 2 cores)


class UnknownUser(UnauthorizedLogin):
    """No account has this name."""


class WrongPassword(UnauthorizedLogin):
    """The account exists; the password does not match."""


def is_hashed(secret: str) -> bool:
    return secret.startswith(HASH_PREFIXES)


def password_matches(secret: str, password: str) -> bool:
    """A stored secret is plain text, or a bcrypt hash in its usual C{$2b$...} form."""
    if is_hashed(secret):
        try:
            return bcrypt.checkpw(password.encode("utf-8", "surrogateescape"), secret.encode("ascii"))
        except ValueError:
            return False
    return hmac.compare_digest(secret.encode("utf-8", "surrogateescape"),
                               password.encode("utf-8", "surrogateescape"))


def hash_password(password: str, rounds: int = HASH_ROUNDS) -> str:
    """A salted bcrypt hash of C{password}, as text (C{$2b$12$...})."""
    hashed = bcrypt.hashpw(password.encode("utf-8", "surrogateescape"), bcrypt.gensalt(rounds))
    return hashed.decode("ascii")


def check_new_password(password: str) -> None:
    """Raise L{ChatError} when C{password} cannot be stored."""
    if not password:
        raise ChatError(errors.PASSWORD_EMPTY)
    if any(c.isspace() for c in password):
        raise ChatError(errors.PASSWORD_WHITESPACE)
    if len(password.encode("utf-8", "surrogateescape")) > MAX_PASSWORD_BYTES:
        raise ChatError(errors.PASSWORD_TOO_LONG, limit=MAX_PASSWORD_BYTES)


class Passwords:
    """
    Hashes and checks passwords, in the reactor's thread pool when C{clock}
    is a real reactor, synchronously otherwise.
    """

    def __init__(self, clock=None, rounds: int = HASH_ROUNDS, in_flight: int = MAX_IN_FLIGHT):
        self.clock = clock
        self.rounds = rounds
        # Hashing is bounded in total too: the thread pool stays free for
        # everything else, and a flood of checks waits in line (in order).
        self._slots = defer.DeferredSemaphore(in_flight)

    def run(self, f, *args) -> defer.Deferred:
        clock = self.clock
        if IReactorThreads.providedBy(clock):
            return self._slots.run(threads.deferToThreadPool, clock, clock.getThreadPool(), f, *args)
        return defer.maybeDeferred(f, *args)

    def verify(self, secret: str, password: str) -> defer.Deferred:
        """A Deferred firing with whether C{password} matches the stored C{secret}."""
        if not is_hashed(secret):
            return defer.succeed(password_matches(secret, password))
        return self.run(password_matches, secret, password)

    def hash(self, password: str) -> defer.Deferred:
        """A Deferred firing with the hash of C{password}, to be stored."""
        return self.run(hash_password, password, self.rounds)


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Checks L{IUsernamePassword} credentials against L{IAccounts}, hashes off the reactor thread."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts, passwords: Passwords):
        self.accounts = accounts
        self.passwords = passwords

    def requestAvatarId(self, credentials):
        username = credentials.username
        secret = self.accounts.secret(username)
        if secret is None:
            return defer.fail(UnknownUser(username))

        def checked(matches):
            if not matches:
                raise WrongPassword(username)
            return username

        return self.passwords.verify(secret, credentials.password).addCallback(checked)
