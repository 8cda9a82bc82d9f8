"""
The lockout of a cluster node (L{ILockout}): failures are counted in
PostgreSQL, one atomic statement each, so that failures on every node count
toward one block and two nodes failing the same account at the same moment
count two. A block has one end, C{until} (epoch seconds), decided by the
statement that caused it: it is told to every node over the bus at once,
and each node's own timer ends it at that moment.

A correct password asks PostgreSQL too (one statement that starts the count
again unless the account is blocked), so a login on a node that has not yet
heard of a block made elsewhere is refused all the same.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ..core import errors
from ..core.lockout import BLOCK_SECONDS, ILockout, LoginLockout

log = Logger()


@implementer(ILockout)
class SharedLockout:
    """
    @param database: an opened L{chatproto.storage.postgres.PostgresDatabase}.
    @ivar tell: called with C{(username, until)} for each block decided on
        this node (the bus tells the other nodes); None: nobody to tell.
    """

    def __init__(self, clock, attempts: int, database, block_seconds: float = BLOCK_SECONDS):
        self.clock = clock
        self.database = database
        # The blocks this node knows of, with their timers; also the fallback
        # count while PostgreSQL cannot be reached.
        self.known = LoginLockout(clock, attempts, block_seconds)
        self.attempts = attempts
        self.block_seconds = block_seconds
        self.tell = None

    def load(self) -> None:
        """The blocks running now (start-up, synchronous): a node started during a block knows it."""
        for username, until in self.database.blocks(self.clock.seconds()):
            self.known.block_until(username, until)

    def is_blocked(self, username: str) -> bool:
        return self.known.is_blocked(username)

    def failed(self, username: str) -> defer.Deferred:
        now = self.clock.seconds()
        d = self.database.lockout_failure(username, now, self.attempts, self.block_seconds)

        def counted(result):
            until, was_blocked = result
            if until <= now:
                return errors.WRONG_PASSWORD
            self.known.block_until(username, until)
            if was_blocked:
                return errors.BLOCKED  # by an earlier failure (on any node)
            if self.tell is not None:
                self.tell(username, until)
            return errors.BLOCKED_NOW

        def unreachable(failure):
            log.warn("Cannot count the failed login of {username} in the database ({why}); "
                     "counted on this node only", username=username, why=failure.getErrorMessage())
            return self.known.failed(username)

        return d.addCallbacks(counted, unreachable)

    def succeeded(self, username: str) -> defer.Deferred:
        now = self.clock.seconds()
        d = self.database.lockout_success(username, now)

        def checked(until):
            if until > now:
                self.known.block_until(username, until)
                return False
            self.known.record_success(username)
            return True

        def unreachable(failure):
            log.warn("Cannot check the lockout of {username} in the database ({why}); "
                     "this node's knowledge decides", username=username, why=failure.getErrorMessage())
            return self.known.succeeded(username)

        return d.addCallbacks(checked, unreachable)

    def blocked_elsewhere(self, username: str, until: float) -> None:
        """Another node blocked C{username} until C{until}: refused here too, until that moment."""
        self.known.block_until(username, until)

    def stop(self) -> None:
        self.known.stop()
