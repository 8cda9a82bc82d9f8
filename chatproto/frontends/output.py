"""
Output every front end shares: each connection's output of a reactor turn
joined and sent once (L{OutputBatch}), straight to the socket when nothing
waits (L{send_through}). The connection layer (L{connection.Connection})
writes through it and bounds what a client leaves unread.
"""

from twisted.logger import Logger

from ..turns import EndOfTurn
from ..twisted_internals import send_now, unsent_bytes  # noqa: F401 - unsent_bytes: the front ends' too
from .transports import PLAIN_TCP

log = Logger()

DEFAULT_MAX_OUTPUT = 1024 * 1024
CLOSE_DEADLINE = 5.0  # seconds a closed connection has to read what was left for it


def send_through(transport, data: bytes) -> int:
    """
    Send C{data} on a TCP transport's socket at once, when the transport has
    nothing waiting; return how many bytes the kernel took (0 when it cannot).
    Only a plain C{tcp.Server} (or L{LeanServer}) qualifies (not TLS, not a
    test double); the rest of C{data} goes through C{transport.write} as
    usual. (Why: L{chatproto.twisted_internals.send_now}.)
    """
    return send_now(transport, data, PLAIN_TCP)


class OutputBatch:
    """
    Each connection's output of one reactor turn, handed over once at the
    end of the turn: a connection calls L{add} when it first has output in a
    turn, and the batch calls its C{send_output()} then.
    """

    def __init__(self, clock):
        self.clock = clock
        self._dirty: list = []
        self._turn = EndOfTurn(clock, self.flush)
        self.turns = 0  # end-of-turn flushes so far: tells a connection a new turn has begun

    def add(self, connection) -> None:
        self._dirty.append(connection)
        self._turn.schedule()

    def flush(self) -> None:
        self._turn.cancel()
        self.turns += 1
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            try:
                connection.send_output()
            except Exception:  # noqa: BLE001 - one broken connection must not stop the others' output
                log.failure("sending output to {peer}", peer=getattr(connection, "host", None))

    stop = flush
