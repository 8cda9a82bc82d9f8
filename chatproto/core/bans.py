"""
Bans: an administrator's C{/ban USER DURATION}. A banned account's logins are
refused (with the blocked text, like a lockout) until the ban ends; bans are
kept by the storage (the database) so they survive a restart.
"""

import math
import re

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from . import errors
from .errors import ChatError
from .interfaces import IBanStore

log = Logger()

FOREVER = math.inf
_DURATION = re.compile(r"([0-9]{1,9})([smhdw]?)", re.ASCII)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """
    Seconds from C{30s}, C{10m}, C{2h}, C{7d}, C{1w}, a bare number of
    seconds, or C{forever}; a L{ChatError} C{bad-duration} otherwise.
    """
    if text.lower() in ("forever", "permanent"):
        return FOREVER
    match = _DURATION.fullmatch(text.lower())
    if match is None or int(match.group(1)) == 0:
        raise ChatError(errors.BAD_DURATION, duration=text)
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@implementer(IBanStore)
class MemoryBanStore:
    """Bans kept for the life of the process only (a storage that keeps none)."""

    def __init__(self):
        self.saved: dict[str, float] = {}

    def bans(self) -> defer.Deferred:
        return defer.succeed(dict(self.saved))

    def save_ban(self, username: str, until: float) -> defer.Deferred:
        self.saved[username] = until
        return defer.succeed(None)

    def remove_ban(self, username: str) -> defer.Deferred:
        self.saved.pop(username, None)
        return defer.succeed(None)


class Bans:
    """
    Username -> the epoch time its ban ends (L{FOREVER}: never), kept in
    memory for the logins' checks and in an L{IBanStore} (L{load} reads
    them at start-up). A change takes effect at once and is acknowledged
    (its Deferred fires) once the store has it durably; when the store
    fails, the change is undone.
    """

    def __init__(self, clock, store=None):
        self.clock = clock
        self.store = store if store is not None else MemoryBanStore()
        self._until: dict[str, float] = {}

    def load(self) -> defer.Deferred:
        def loaded(bans):
            self._until = dict(bans)

        return self.store.bans().addCallback(loaded)

    def until(self, username: str) -> float | None:
        """When C{username}'s ban ends, or None when it is not banned (an ended ban is forgotten)."""
        until = self._until.get(username)
        if until is None:
            return None
        if until <= self.clock.seconds():
            del self._until[username]
            self.store.remove_ban(username).addErrback(
                lambda f: log.failure("Cannot forget the ended ban of {username}", f, username=username))
            return None
        return until

    def ban(self, username: str, seconds: float) -> defer.Deferred:
        """Ban C{username} for C{seconds} from now (replacing any earlier ban); fire with the end."""
        until = FOREVER if seconds == FOREVER else self.clock.seconds() + seconds
        earlier = self._until.get(username)
        self._until[username] = until
        return self.store.save_ban(username, until).addCallbacks(
            lambda _: until, self._undo, errbackArgs=(username, earlier))

    def unban(self, username: str) -> defer.Deferred:
        """Lift C{username}'s ban; fire with False when there was none."""
        earlier = self.until(username)
        if earlier is None:
            return defer.succeed(False)
        del self._until[username]
        return self.store.remove_ban(username).addCallbacks(
            lambda _: True, self._undo, errbackArgs=(username, earlier))

    def changed_elsewhere(self, username: str, until: float | None) -> None:
        """A ban set (until C{until}) or lifted (None) through another server sharing the
        store (a cluster node): in effect here at once."""
        if until is None:
            self._until.pop(username, None)
        else:
            self._until[username] = until

    def _undo(self, failure, username: str, earlier: float | None):
        if earlier is None:
            self._until.pop(username, None)
        else:
            self._until[username] = earlier
        return failure

    def names(self) -> list[str]:
        return sorted(name for name in list(self._until) if self.until(name) is not None)
