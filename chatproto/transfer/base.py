"""What both sides of a transfer share: the error, the tuning they both use, a cheap timer."""

from __future__ import annotations

LOSS_ENVIRONMENT_VARIABLE = "CHATPROTO_TEST_UDP_LOSS"

MIN_WINDOW = 2
DEFAULT_RECEIVE_WINDOW = 64  # chunks, when the socket's buffer size is unknown
ACK_DELAY = 0.005  # seconds before a lone packet is acknowledged
PROGRESS_INTERVAL = 0.25


class TransferFailed(Exception):
    """A transfer was given up; C{reason} (also C{str(error)}) says why, for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Timer:
    """
    A deadline on a clock that can be pushed later cheaply.

    Moving the deadline later only stores it; the pending call, when it fires
    early, schedules itself again.  So a per-packet update costs an assignment.
    """

    __slots__ = ("_call", "_clock", "_fn", "deadline")

    def __init__(self, clock, fn):
        self._clock = clock
        self._fn = fn
        self._call = None
        self.deadline = None

    def set(self, deadline: float) -> None:
        self.deadline = deadline
        call = self._call
        if call is None:
            self._call = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._fire)
        elif deadline < call.getTime():
            call.reset(max(0.0, deadline - self._clock.seconds()))

    def push(self, deadline: float) -> None:
        """Move a pending deadline (later, cheaply); no effect on an idle timer."""
        if self.deadline is not None:
            if deadline < self.deadline:
                self.set(deadline)
            else:
                self.deadline = deadline

    def cancel(self) -> None:
        self.deadline = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    @property
    def active(self) -> bool:
        return self.deadline is not None

    def _fire(self) -> None:
        self._call = None
        if self.deadline is None:
            return
        now = self._clock.seconds()
        if now + 1e-9 < self.deadline:
            self._call = self._clock.callLater(self.deadline - now, self._fire)
            return
        self.deadline = None
        self._fn()


