"""
Server timestamps: local time as C{%d %b %Y %H:%M:%S} with English month
names whatever the locale (docs/PROTOCOL.md, TIMESTAMP).
"""

import time

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_timestamp(seconds: float) -> str:
    t = time.localtime(seconds)
    return (
        f"{t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


class Timestamper:
    """
    Formats the clock's current second, once per second: every message on the
    hot path needs a timestamp, and most share their second with the last one.
    """

    __slots__ = ("_clock", "_second", "_text")

    def __init__(self, clock):
        self._clock = clock
        self._second = None
        self._text = ""

    def now(self) -> str:
        return self.at(self._clock.seconds())

    def at(self, seconds: float) -> str:
        """The timestamp of C{seconds} (a time read from the clock just before)."""
        second = int(seconds)
        if second != self._second:
            self._second = second
            self._text = format_timestamp(second)
        return self._text


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of a timestamp in that form (local time); 0.0 if malformed."""
    try:
        day, month, year, clock = text.split(" ")
        hour, minute, second = clock.split(":")
        fields = (int(year), MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second),
                  0, 0, -1)
        return time.mktime(fields)
    except (ValueError, OverflowError):
        return 0.0
