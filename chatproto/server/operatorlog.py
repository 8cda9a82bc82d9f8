"""
The operator's log: the server's own informational events on standard
output, warnings and errors from anything on standard error.

Lines look like twisted.logger's text observer's
(C{2026-12-01T19:07:59+0000 [chatproto.core.realm#info] text}), but are made
cheaper: every login and logout writes one, and Twisted's own formatting
(string.Formatter, a time zone object per event, a flush per line) cost a
login about a third of its CPU (issue 17). chatproto's events are formatted
with C{str.format_map}; an event that needs more (a traceback, another
library's format) goes through twisted.logger's formatter. A reactor turn's
lines are written and flushed together, at its end.
"""

import time

from twisted.logger import LogLevel, formatEventAsClassicLogText


class LogLines:
    """An observer writing each event as one classic log line to C{out}."""

    def __init__(self, out, reactor=None):
        self.out = out
        self.reactor = reactor
        self._pending: list[str] = []  # this turn's lines
        self._second = None
        self._stamp = ""

    def _timestamp(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
        return self._stamp

    def format(self, event) -> str | None:
        log_format = event.get("log_format")
        when = event.get("log_time")
        if (log_format is None or when is None or "log_failure" in event or "log_system" in event
                or not str(event.get("log_namespace", "")).startswith("chatproto")):
            return formatEventAsClassicLogText(event)
        try:
            text = log_format.format_map(event)
        except Exception:  # noqa: BLE001 - whatever str.format cannot do, Twisted's formatter can
            return formatEventAsClassicLogText(event)
        level = event.get("log_level")
        return (f"{self._timestamp(when)} [{event['log_namespace']}#{level.name if level else '-'}] "
                + text.replace("\n", "\n\t") + "\n")

    def __call__(self, event) -> None:
        text = self.format(event)
        if not text:
            return
        reactor = self.reactor
        if reactor is None or not getattr(reactor, "running", False):
            self._flush()
            self.out.write(text)
            self.out.flush()
            return
        if not self._pending:
            reactor.callLater(0, self._flush)
        self._pending.append(text)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.out.write("".join(pending))  # one write (the stream may be unbuffered)
            self.out.flush()


class OperatorLog:
    """
    One observer for both streams (two filtering observers cost a login 2
    us more): the server's own informational events (start, logins,
    lockouts, dropped readers, shutdown) to C{out}, warnings and errors from
    anything to C{err}, at once; not Twisted's informational chatter ("Main
    loop terminated.", port opened), so that a failure to start is one line
    on C{err}.
    """

    def __init__(self, out, err, reactor=None):
        self.information = LogLines(out, reactor)
        self.problems = LogLines(err)

    def flush(self) -> None:
        """Write this turn's lines now (before a line printed outside the log, such as a ready line)."""
        self.information._flush()

    def __call__(self, event) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            self.problems(event)
        elif str(event.get("log_namespace", "")).startswith("chatproto"):
            self.information(event)


def server_log_observers(out, err, reactor=None):
    """The observers of the operator's log (L{OperatorLog})."""
    return [OperatorLog(out, err, reactor)]
