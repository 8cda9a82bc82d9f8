"""
The login lockout: ATTEMPTS consecutive failures block an account for a
while, across every connection.

The realm uses it through L{ILockout}: L{LoginLockout} counts in this
process (the default); a cluster node is given one that counts in the
shared database (L{chatproto.cluster.lockout.SharedLockout}), so that
failures on every node count toward one block.
"""

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface, implementer

from . import errors

BLOCK_SECONDS = 10.0


class ILockout(Interface):
    """What the realm asks of the lockout."""

    attempts = Attribute("consecutive failures that block an account")
    block_seconds = Attribute("how long a block lasts")

    def is_blocked(username):
        """Whether a block of C{username} is known here to be running: a quick refusal, no I/O."""

    def failed(username):
        """
        Count one failed password check of C{username}; a Deferred firing with
        C{errors.WRONG_PASSWORD} (counted), C{errors.BLOCKED_NOW} (this failure
        blocks the account) or C{errors.BLOCKED} (it was blocked already).
        """

    def succeeded(username):
        """
        A correct password: the count starts again. A Deferred firing with
        True, or False when the account is blocked (by a failure elsewhere)
        and the login must be refused.
        """

    def stop():
        """Cancel every timer."""


@implementer(ILockout)
class LoginLockout:
    """
    Counts consecutive failed logins per account, in this process.

    The block's countdown is one C{callLater} on the injected clock per
    blocked account (not per connection); L{stop} cancels them all.
    """

    def __init__(self, clock: IReactorTime, attempts: int, block_seconds: float = BLOCK_SECONDS):
        if not attempts >= 1:
            raise ValueError("attempts must be at least 1")
        self.clock = clock
        self.attempts = attempts
        self.block_seconds = block_seconds
        self._failures: dict[str, int] = {}
        self._blocks: dict = {}

    def is_blocked(self, username: str) -> bool:
        return username in self._blocks

    def record_failure(self, username: str) -> bool:
        """Count one failure; return True when this one blocks the account."""
        if username in self._blocks:
            return True  # already blocked: the running countdown stands
        count = self._failures.get(username, 0) + 1
        if count < self.attempts:
            self._failures[username] = count
            return False
        self._failures.pop(username, None)
        self._blocks[username] = self.clock.callLater(
            self.block_seconds, self._unblock, username
        )
        return True

    def record_success(self, username: str) -> None:
        self._failures.pop(username, None)

    def failed(self, username: str) -> defer.Deferred:
        if username in self._blocks:
            return defer.succeed(errors.BLOCKED)
        return defer.succeed(errors.BLOCKED_NOW if self.record_failure(username) else errors.WRONG_PASSWORD)

    def succeeded(self, username: str) -> defer.Deferred:
        if username in self._blocks:
            return defer.succeed(False)
        self.record_success(username)
        return defer.succeed(True)

    def block_until(self, username: str, until: float) -> None:
        """A block decided elsewhere (another node) that ends at C{until} (epoch seconds):
        known here until then, so that it ends at the same moment everywhere."""
        remaining = until - self.clock.seconds()
        call = self._blocks.get(username)
        if call is not None:
            if call.active() and call.getTime() >= until:
                return
            call.cancel()
            del self._blocks[username]
        if remaining > 0:
            self._failures.pop(username, None)
            self._blocks[username] = self.clock.callLater(remaining, self._unblock, username)

    def _unblock(self, username: str) -> None:
        del self._blocks[username]
        self._failures.pop(username, None)

    def stop(self) -> None:
        for call in self._blocks.values():
            if call.active():
                call.cancel()
        self._blocks.clear()
