"""Limits every listener shares: connection caps and command rates."""

import time

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

log = Logger()
MIN_DELAY = 0.001  # the shortest wait for a token of a command rate
REPORT_SECONDS = 10.0  # at most one log line about refused connections in this time, per listener


# Input bytes handled per connection per reactor turn (with at most a number
# of lines, connection.LINES_PER_TURN), then its input waits a turn: a
# turn's share is measured in what it costs to parse and act on, not only in
# lines (64 lines of 8 KiB of IRC tags cost 60 ms; issue 28, F6). A line
# longer than this still goes, alone in its turn.
BYTES_PER_TURN = 16 * 1024


def default_burst(rate: float) -> int:
    """Twice a second's worth of commands, at least one."""
    return max(1, int(2 * rate))


class CommandRate:
    """
    A token bucket for one connection's commands: C{rate} a second on
    average, bursts of up to C{burst}. Refilled from the clock's timestamps
    on each line; no timer runs for it.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def delay(self, now: float) -> float:
        """Seconds until the next token (after a refused L{allow} at C{now})."""
        # At least a millisecond: a shorter wait added to an epoch time (ulp 2.4e-7 s)
        # may not move it, and the wake-up would find no more tokens, forever.
        return max(MIN_DELAY, (1.0 - self._tokens) / self.rate) if self.rate > 0 else 0.0

    def charge(self, n: int) -> None:
        """
        C{n} more commands in the one just allowed (an IRC line with several
        targets): taken even if that leaves a debt, so that the next lines
        wait until it is paid.
        """
        self._tokens -= n

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = max(0.0, now - self._last)  # a wall clock may step back
        self._last = now
        tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if tokens >= 1.0 - 1e-9:  # (a refill computed in floats may fall just short of a whole token)
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class Refusal(Protocol):
    """Tells a connection over the caps why it is refused (in the front end's own words), then closes it."""

    def __init__(self, line: bytes):
        self.line = line

    def connectionMade(self):
        self.transport.write(self.line)
        self.transport.loseConnection()


class ConnectionCaps:
    """
    Counts a listener's connections, in total and per client address, and
    tells when a new one is over a cap (0: no cap).
    """

    def __init__(self, max_connections: int = 0, max_per_ip: int = 0):
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        # A dict, not a set: at 5,000 connections a set's table is 512 KiB, a dict's 160.
        self.connections: dict = {}
        self._per_host: dict[str, int] = {}
        self.now = time.monotonic  # for the refusal reports' pace
        self._reported = None
        self._refused = 0

    def refusal(self, host) -> str | None:
        """Why a connection from C{host} is refused now, or None."""
        if self.max_connections and len(self.connections) >= self.max_connections:
            self._report("Refusing {host}: {n} connections already ({refused} refused since the last report)",
                         host=host, n=len(self.connections))
            return "Too many connections to this server; try again later"
        if self.max_per_ip and host is not None and self._per_host.get(host, 0) >= self.max_per_ip:
            self._report("Refusing {host}: too many connections from it ({refused} refused since the last report)",
                         host=host)
            return f"Too many connections from {host}; try again later"
        return None

    def _report(self, text: str, **fields) -> None:
        """
        Log a refusal: the first one, then one line (with a count) every
        REPORT_SECONDS at most, so that a flood of connections is in the log
        without flooding it.
        """
        self._refused += 1
        now = self.now()
        if self._reported is None or now - self._reported >= REPORT_SECONDS:
            log.info(text, refused=self._refused, **fields)
            self._reported = now
            self._refused = 0

    def refused(self, host, chat, frontend: str, render) -> Refusal | None:
        """
        Over a cap: a L{Refusal} saying why (C{render(text)} is the front end's
        own line), noted with the core as C{("refused", frontend)}; else None.
        """
        refusal = self.refusal(host)
        if refusal is None:
            return None
        chat.note("refused", frontend)
        return Refusal(render(refusal))

    def add(self, connection, host) -> None:
        self.connections[connection] = None
        if host is not None:
            self._per_host[host] = self._per_host.get(host, 0) + 1

    def forget(self, connection, host) -> None:
        """C{connection} is gone: it no longer counts toward the caps."""
        if self.connections.pop(connection, 0) is not None:
            return
        if host is not None:
            left = self._per_host.get(host, 0) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
