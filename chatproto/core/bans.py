"""
Bans: an administrator's C{/ban USER DURATION}. A banned account's logins are
refused (with the blocked text, like a lockout) until the ban ends; bans are
kept by a store (the data directory's C{bans.txt}) so they survive a restart.
"""

import math
import re

from . import errors
from .errors import ChatError

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


class MemoryBanStore:
    """Bans kept for the life of the process only (tests, C{memory:} databases)."""

    def __init__(self):
        self.saved: dict[str, float] = {}

    def load(self) -> dict:
        return dict(self.saved)

    def save(self, bans: dict) -> None:
        self.saved = dict(bans)


class Bans:
    """Username -> the epoch time its ban ends (L{FOREVER}: never)."""

    def __init__(self, clock, store=None):
        self.clock = clock
        self.store = store if store is not None else MemoryBanStore()
        self._until: dict[str, float] = self.store.load()

    def until(self, username: str) -> float | None:
        """When C{username}'s ban ends, or None when it is not banned (an ended ban is forgotten)."""
        until = self._until.get(username)
        if until is None:
            return None
        if until <= self.clock.seconds():
            del self._until[username]
            self._save()
            return None
        return until

    def ban(self, username: str, seconds: float) -> float:
        """Ban C{username} for C{seconds} from now (replacing any earlier ban); return the end."""
        until = FOREVER if seconds == FOREVER else self.clock.seconds() + seconds
        self._until[username] = until
        self._save()
        return until

    def unban(self, username: str) -> bool:
        if self.until(username) is None:
            return False
        del self._until[username]
        self._save()
        return True

    def names(self) -> list[str]:
        return sorted(name for name in list(self._until) if self.until(name) is not None)

    def _save(self) -> None:
        self.store.save(self._until)
