"""
The login lockout: ATTEMPTS consecutive failures block an account for a
while, across every connection.
"""

from twisted.internet.interfaces import IReactorTime

BLOCK_SECONDS = 10.0


class LoginLockout:
    """
    Counts consecutive failed logins per account.

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

    def _unblock(self, username: str) -> None:
        del self._blocks[username]
        self._failures.pop(username, None)

    def stop(self) -> None:
        for call in self._blocks.values():
            if call.active():
                call.cancel()
        self._blocks.clear()
