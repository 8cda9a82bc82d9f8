"""
Reconnecting to the server with backoff: 1, 2, 4, 8, 16, then every 30
seconds, until it answers or the user quits. The client logs in again with
the password it keeps in memory (never on disk).
"""

from twisted.internet import defer

DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class Reconnector:
    """
    @param clock: schedules the attempts (the reactor, or a task.Clock in tests).
    @param connect: makes one attempt; returns a Deferred that fails when it did not connect.
    @param on_attempt: told C{(attempt, delay)} when an attempt is scheduled.
    """

    def __init__(self, clock, connect, on_attempt=None, delays=DELAYS):
        self.clock = clock
        self.connect = connect
        self.on_attempt = on_attempt
        self.delays = delays
        self.attempt = 0
        self._call = None
        self._stopped = False

    @property
    def waiting(self) -> bool:
        return self._call is not None and self._call.active()

    def start(self) -> None:
        """The connection was lost: try again after a while."""
        self._stopped = False
        self._schedule()

    def _schedule(self) -> None:
        if self._stopped or self.waiting:
            return
        delay = self.delays[min(self.attempt, len(self.delays) - 1)]
        self.attempt += 1
        if self.on_attempt is not None:
            self.on_attempt(self.attempt, delay)
        self._call = self.clock.callLater(delay, self._try)

    def _try(self) -> None:
        self._call = None
        d = defer.maybeDeferred(self.connect)
        d.addErrback(lambda _failure: self._schedule())

    def retry_later(self) -> None:
        """Connected, but the login cannot succeed yet: try again later."""
        self._schedule()

    def succeeded(self) -> None:
        """Logged in again: the next loss starts from the shortest delay."""
        self.attempt = 0

    def stop(self) -> None:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
