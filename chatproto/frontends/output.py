"""
Output every front end shares: each connection's output of a reactor turn
joined and sent once, and the bound on output a client leaves unread.
"""

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ..turns import EndOfTurn
from ..twisted_internals import send_now, unsent_bytes  # noqa: F401 - unsent_bytes: the front ends' too
from .transports import PLAIN_TCP

log = Logger()

DEFAULT_MAX_OUTPUT = 1024 * 1024
CLOSE_DEADLINE = 5.0  # seconds a closed connection has to read what was left for it


@implementer(IPushProducer)
class OutputBound:
    """
    Tells when output waits unsent for a client that does not keep up.

    The transport pauses its producer when its buffer is full and resumes it
    once the buffer has drained. While paused, the connection measures what
    is really unsent (L{unsent_bytes}); for a transport that cannot tell, it
    counts what was written since the pause.
    """

    __slots__ = ("paused", "queued")

    def __init__(self):
        self.paused = False
        self.queued = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.queued = 0

    def stopProducing(self):
        pass

    def over(self, transport, written: int, limit: int) -> bool:
        """After C{written} more bytes went to C{transport}: is the unread backlog over C{limit}?"""
        if not self.paused:
            return False
        # A reader that keeps up, however slowly, keeps its backlog short.
        unsent = unsent_bytes(transport)
        if unsent is None:
            self.queued += written
            unsent = self.queued
        return unsent > limit


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


class BatchedOutput:
    """
    One connection's output: joined per turn through an L{OutputBatch}, sent
    straight to the socket when nothing waits, and bounded: a client leaving
    more than C{max_output} bytes unread is dropped (C{on_overflow}).
    """

    __slots__ = ("batch", "max_output", "transport", "on_overflow", "_out", "bound", "closed", "_then_close",
                 "_abort")

    def __init__(self, batch: OutputBatch, max_output: int, on_overflow):
        self.batch = batch
        self.max_output = max_output
        self.on_overflow = on_overflow
        self.transport = None
        self._out = None
        self.bound = OutputBound()
        self.closed = False
        self._then_close = False
        self._abort = None

    def attach(self, transport) -> None:
        self.transport = transport
        transport.registerProducer(self.bound, True)

    def write(self, data: bytes) -> None:
        out = self._out
        if out is None:
            if self.closed:
                return
            self._out = [data]
            self.batch.add(self)
        else:
            out.append(data)

    @property
    def pending(self) -> bool:
        return self._out is not None

    def send_output(self) -> None:
        out, self._out = self._out, None
        transport = self.transport
        if out and not self.closed and transport is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            sent = send_through(transport, data)
            if sent < len(data):
                transport.write(data[sent:] if sent else data)
                if self.bound.over(transport, len(data) - sent, self.max_output):
                    self.closed = True
                    self.on_overflow()
                    return
        if self._then_close and not self.closed and transport is not None:
            self.closed = True
            transport.loseConnection()
            # A client that does not read what is left is cut off, queue and all.
            self._abort = self.batch.clock.callLater(CLOSE_DEADLINE, transport.abortConnection)

    def close_when_sent(self) -> None:
        """Close the connection once this turn's output is handed over."""
        self._then_close = True
        if self._out is None:
            self._out = []
            self.batch.add(self)

    def discard(self) -> None:
        """The connection is gone: nothing more is sent."""
        self.closed = True
        self._out = None
        if self._abort is not None:
            if self._abort.active():
                self._abort.cancel()
            self._abort = None
