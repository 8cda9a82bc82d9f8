"""Work done once at the end of a reactor turn, however often it is asked for."""


class EndOfTurn:
    """
    Calls C{function} once, at the end of the current reactor turn, however
    often it is asked to during the turn (C{callLater(0)} on the clock).
    """

    __slots__ = ("_call", "_clock", "_function")

    def __init__(self, clock, function):
        self._clock = clock
        self._function = function
        self._call = None

    @property
    def pending(self) -> bool:
        return self._call is not None

    def schedule(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(0, self._function)

    def cancel(self) -> None:
        """The work is being done now: no later call for it."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
