"""
The connection layer under every front end: what a client connection is,
whatever the front end speaks over it (the line protocol, IRC, the page's
WebSocket).

A L{Connection} owns, once for all of them:
  - framing: frames are cut out of what was read one at a time, from an
    offset, in linear time however the input is cut and however often it
    pauses (newline-ended lines by default; L{Connection.frame_end} finds a
    WebSocket's frames for the web);
  - each connection's share of a reactor turn (L{LINES_PER_TURN} frames and
    L{limits.BYTES_PER_TURN} bytes) and its command rate: past either its
    input is I{held} (neither handled nor read further) until the next turn
    or the next token;
  - pauses by reason (a login being recorded, a command waiting for the core,
    a hold, closing), and reading the socket again only when little is left
    unread;
  - output: joined per reactor turn (the factory's L{OutputBatch}), sent
    straight to the socket when nothing waits, and bounded: a client that
    leaves more than C{max_output} bytes unread is dropped;
  - replies in the order of the commands (L{ReplySlot}s filled as the core
    answers);
  - the login deadline (L{LoginDeadlines}: one timer for all of a listener's
    connections), the listener's connection caps (L{ConnectionFactory}), and
    L{Connection.whenLost}.

A front end subclasses it and supplies only what is its own: L{frame_received}
(parse and act on one command), how it renders a notice before closing, an
error for an over-long frame, and who a connection is for the log.

Every attribute is a slot: an idle connection is a few hundred bytes (issue 17).
"""

from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from .limits import BYTES_PER_TURN, CommandRate, ConnectionCaps, default_burst
from .output import CLOSE_DEADLINE, DEFAULT_MAX_OUTPUT, OutputBatch, send_through, unsent_bytes

log = Logger()

LINES_PER_TURN = 64  # frames handled per connection per reactor turn, then its input waits a turn
DROP_DEADLINE = 1.0  # seconds a dropped slow reader has to take its last notice
LOGIN_DEADLINE = 30.0  # seconds a connection has to log in
# Replies one connection may have waiting for the core (commands pipelined ahead of their
# acknowledgements, each /msgto holding its message until its batch is committed): past it
# the input waits, unread, until they are down to half. A client that never waits for an
# answer cannot make the server hold an unbounded backlog for it (issue 25).
MAX_REPLIES_WAITING = 256

# (A set per connection is 216 bytes; pauses are rare.)
NO_PAUSES = frozenset()
# While a login is recorded (about one reactor turn), a command waits for the core, or a
# connection waits for the next turn (its share of this one spent), the socket is still read,
# a little: a hostile client's flood waits in its socket, not in the server's memory. Reading
# stops when more than that waits unread, and starts again only once the unread input is
# handled down to it: a client that pipelines without pause is not stopped and restarted every
# turn (two epoll_ctl calls each, 12 % of the server's CPU under issue 25's deep pipeline).
SHORT_PAUSES = frozenset({"login", "turn", "busy", "replies"})
MAX_UNREAD_WHILE_PAUSED = 4096
_LOST = ()  # Connection._lost once the connection is gone


class ReplySlot:
    """A reply's place in the order of the commands: its bytes, None until they are known."""

    __slots__ = ("data",)

    def __init__(self, data=None):
        self.data = data


@implementer(IProtocol, IPushProducer)
class Connection:
    """
    One client connection (see the module's text). The transport is its
    consumer (output) and its producer (input): C{pauseProducing} and
    C{resumeProducing} here are the transport saying its write buffer is full
    or drained again.
    """

    __slots__ = (
        "factory", "chat", "clock", "host", "ip", "transport", "connected", "rate",
        "_buffer", "_offset", "_discarding", "_receiving", "_pauses", "_transport_paused",
        "_turn_seen", "_lines_this_turn", "_bytes_this_turn", "_wakeup", "_abort",
        "_out", "_out_paused", "_out_queued", "_out_closed", "_then_close",
        "_replies", "_closing", "_dropped", "_lost", "logged_in", "max_frame",
    )

    frontend = "?"  # for the metrics and the log (line, irc, web)
    lines_per_turn = LINES_PER_TURN
    MAX_FRAME = 65536  # the longest frame handled at first (max_frame); longer ones go to frame_too_long
    drop_deadline = DROP_DEADLINE
    login_deadline_notice = ""  # what a connection that did not log in in time is told
    drop_notice = ""  # what a dropped slow reader is told last (empty: it is cut off at once)

    def __init__(self, factory, host=None, rate=None):
        # Every attribute is set here, in one order.
        self.factory = factory
        self.chat = factory.chat
        self.clock = factory.clock
        self.host = host  # the address the caps count it under
        self.ip = host
        self.rate = rate  # a CommandRate when the server limits commands
        self.transport = None
        self.connected = 0
        self.logged_in = False  # set by the front end: the login deadline no longer applies
        self.max_frame = self.MAX_FRAME  # (a front end may allow more once logged in)
        self._buffer = b""  # what was read and not handled yet, from _offset on
        self._offset = 0
        self._discarding = False  # inside an over-long frame
        self._receiving = False  # the input loop is running (a frame's handler may read more)
        self._transport_paused = False  # the transport is paused: nothing is read from the socket
        self._pauses = NO_PAUSES  # why no input is handled now: "login", "turn", "rate", "closing", ...
        self._turn_seen = -1  # the output batch's turn count when the counts below were last reset
        self._lines_this_turn = 0
        self._bytes_this_turn = 0
        self._wakeup = None  # the IDelayedCall that ends a hold
        self._abort = None  # the IDelayedCall that cuts off a connection that does not read its last output
        self._out = None  # this turn's output, once there is some
        self._out_paused = False  # the transport's buffer is full (it paused us, its producer)
        self._out_queued = 0  # bytes written since then, for a transport that cannot tell its backlog
        self._out_closed = False  # nothing more is sent
        self._then_close = False  # close once this turn's output is handed over
        # Replies waiting for earlier ones: a deque of ReplySlots while there are any (an empty
        # deque is 600 bytes, an idle connection's largest object), None when there are not.
        self._replies = None
        self._closing = False  # close once every reply is out
        self._dropped = False  # gone, or dropped for not reading its output: nothing more is acted on
        self._lost = None  # the Deferreds of whenLost(), then _LOST

    # What a front end supplies

    def frame_received(self, frame: bytes) -> None:
        """One whole frame (a line without its LF or CR LF; a WebSocket frame with its head)."""
        raise NotImplementedError

    def frame_too_long(self) -> None:
        """A frame longer than C{max_frame}: by default skipped (up to its end) and nothing said."""

    def frames_handled(self) -> None:
        """
        The frames of this read (or of this share of the turn) are handled, up
        to a pause or a hold: a front end that gathered a run of them (the
        private messages of a pipelining client) hands it to the core now.
        """

    def notice_line(self, text: str) -> bytes:
        """C{text} as this front end tells it before closing (the login deadline, a slow reader's drop)."""
        return b""

    def who(self):
        """Who the connection is, for the log."""
        return self.host

    def log_out(self) -> None:
        """The connection is gone or dropped: its user (if any) logs out."""

    def lost(self, reason) -> None:
        """The connection is gone (after the layer's own cleanup)."""

    # IProtocol

    def makeConnection(self, transport):
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self):
        self.transport.registerProducer(self, True)  # it tells when its buffer is full
        # A peer that vanished (a NAT that forgot it) is found by TCP itself.
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(True)
        if not self.ip:
            self.ip = getattr(self.transport.getPeer(), "host", "") or ""
        if self.factory.deadlines is not None:
            self.factory.deadlines.expect(self)

    def logPrefix(self) -> str:
        return type(self).__name__

    def connectionLost(self, reason=None):
        # Every "is it still there?" check (a login or a password check that
        # ends later, a late reply) reads `connected`.
        self.connected = 0
        self._dropped = True
        self._replies = None
        self._buffer, self._offset = b"", 0
        for name in ("_wakeup", "_abort"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)
        self.discard_output()
        try:
            self.log_out()
            self.lost(reason)
        finally:
            self.factory.forget(self)  # no longer counted in the caps
            waiting, self._lost = self._lost, _LOST
            for d in waiting or ():
                d.callback(None)

    def whenLost(self) -> defer.Deferred:
        """A Deferred that fires (with None) once the connection is gone."""
        if self._lost is _LOST:
            return defer.succeed(None)
        d = defer.Deferred()
        if self._lost is None:
            self._lost = [d]
        else:
            self._lost.append(d)
        return d

    # Input

    # Where the frame starting at an offset of the buffer ends (past its delimiter), 0 while it
    # is incomplete: frame_end(buffer, offset), or None for newline-ended lines (found inline:
    # this runs for every line).
    frame_end = None

    def _frame_end(self, buffer: bytes, offset: int) -> int:
        frame_end = self.frame_end
        return buffer.find(b"\n", offset) + 1 if frame_end is None else frame_end(buffer, offset)

    def dataReceived(self, data: bytes) -> None:
        """
        Cut frames out of the buffer one at a time, from an offset, while
        input is not paused, and hand each to L{frame_received} (a line
        without its LF or CR LF; a WebSocket frame whole). An over-long frame
        goes to L{frame_too_long} in its place and is skipped up to its end.
        """
        if self._dropped or self._closing:
            return  # gone, dropped for not reading or closing: nothing more it sent is acted on or kept
        if data:
            if self._discarding:
                end = self._frame_end(data, 0)
                if not end:
                    return
                self._discarding = False
                data = data[end:]
            if self._offset:
                self._buffer = self._buffer[self._offset:] + data
                self._offset = 0
            else:
                self._buffer += data
            if self._pauses and len(self._buffer) - self._offset > MAX_UNREAD_WHILE_PAUSED:
                self._pause_transport()  # until the short pause is over
        if self._receiving:
            return  # the outer call goes on with the buffer
        self._receiving = True
        # The share of a turn: a connection gets lines_per_turn frames and BYTES_PER_TURN
        # bytes a reactor turn (a long frame goes alone), then its input is held until the
        # next turn, after everyone's output of this one; with a command rate, a token per
        # frame, else its input is held until the next token (nothing handled, nothing read).
        # Bytes are counted in a local here (the turn does not end inside this loop); frames in
        # the attribute, which a front end may raise for a frame that is several (IRC's PRIVMSG
        # to several targets: each a message).
        turn = self.factory.output.turns
        if turn != self._turn_seen:
            self._turn_seen = turn
            self._lines_this_turn = self._bytes_this_turn = 0
        nbytes = self._bytes_this_turn
        max_lines = self.lines_per_turn
        rate = self.rate
        frame_end = self.frame_end
        lifted = False
        try:
            while not self._pauses:
                buffer, offset = self._buffer, self._offset
                end = buffer.find(b"\n", offset) + 1 if frame_end is None else frame_end(buffer, offset)
                if end:
                    size = end - offset
                else:
                    size = len(buffer) - offset
                    if size <= self.max_frame:
                        break  # its rest is to come
                lines = self._lines_this_turn + 1
                self._lines_this_turn = lines
                nbytes += size
                held = False
                if lines > max_lines or (lines > 1 and nbytes > BYTES_PER_TURN):
                    self.hold("turn", 0)
                    held = True
                elif rate is not None:
                    now = self.clock.seconds()
                    if not rate.allow(now):
                        self.hold("rate", rate.delay(now))
                        held = True
                if not end:  # too long, and incomplete: answered now, skipped up to its end
                    self._buffer, self._offset = b"", 0
                    self._discarding = True
                    self.frame_too_long()
                    break
                if held:
                    break  # it waits in the buffer
                self._offset = end
                if size > self.max_frame:
                    self.frame_too_long()
                elif frame_end is None:
                    stop = end - 1
                    if stop > offset and buffer[stop - 1] == 13:  # CR LF
                        stop -= 1
                    self.frame_received(buffer[offset:stop])
                else:
                    self.frame_received(buffer[offset:end])
            paused = bool(self._pauses)
            self.frames_handled()
            lifted = paused and not self._pauses  # (its answers let the replies' pause go)
            if self._offset and self._offset >= len(self._buffer):
                self._buffer, self._offset = b"", 0
            if self._transport_paused and self.connected:
                # The input it stopped for is handled (down to the limit), or all that is
                # left is part of a frame: its rest is in the socket.
                self._read_again(not self._pauses)
        finally:
            self._bytes_this_turn = nbytes
            self._receiving = False
        if lifted and self.connected:
            self.dataReceived(b"")

    def unread_input(self) -> bytes:
        """What was read and is not handled yet."""
        return self._buffer[self._offset:]

    def forget_input(self) -> None:
        """
        Nothing more that was read is handled: a closed connection's unread
        input goes now, not when its socket is gone (issue 28, F4).
        """
        self._buffer, self._offset = b"", 0
        self._pauses = self._pauses | {"closing"}
        self._pause_transport()

    # Holds

    def hold(self, reason: str, seconds: float) -> None:
        """Handle no input for C{seconds} (0: until the next reactor turn, once its output is out)."""
        self.pause(reason)
        if self._wakeup is None:
            self._wakeup = self.clock.callLater(seconds, self._wake, reason)

    def _wake(self, reason: str) -> None:
        self._wakeup = None
        self._turn_seen = -1
        self.resume(reason)

    # Pauses

    @property
    def paused(self) -> bool:
        """No input is handled now (one pause or more hold)."""
        return bool(self._pauses)

    def pause(self, reason: str) -> None:
        """
        Handle no more input for C{reason}, until L{resume} of the same reason
        (several may hold). A short pause (a login being recorded) leaves the
        socket read, up to L{MAX_UNREAD_WHILE_PAUSED} bytes: stopping and
        restarting the reading costs two system calls.
        """
        self._pauses = self._pauses | {reason}
        if reason not in SHORT_PAUSES or len(self._buffer) - self._offset > MAX_UNREAD_WHILE_PAUSED:
            self._pause_transport()

    def _pause_transport(self) -> None:
        if not self._transport_paused and self.transport is not None:
            self._transport_paused = True
            self.transport.pauseProducing()

    def resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses = self._pauses - {reason} or NO_PAUSES
        if not self.connected:
            return
        self._read_again()
        if not self._pauses:
            self.dataReceived(b"")

    def _read_again(self, needed: bool = False) -> None:
        """Read the socket again if only short pauses hold and little input waits unread
        (or C{needed}: the unread input is part of a frame)."""
        if self._transport_paused and self._pauses <= SHORT_PAUSES and (
                needed or len(self._buffer) - self._offset <= MAX_UNREAD_WHILE_PAUSED):
            self._transport_paused = False
            self.transport.resumeProducing()

    def pause_until(self, d) -> None:
        """Handle no more input until C{d} has a result (a slow password check, a login being recorded)."""
        done = []
        d.addBoth(self._resume_after, done)
        if not done:  # (d.called is no guide: d may wait on a chained Deferred)
            done.append(False)
            self.pause("login")

    def _resume_after(self, result, done):
        if done:  # paused
            self.resume("login")
        else:
            done.append(True)
        return result

    # Output: a turn's output is joined and handed over once at the end of the
    # turn (the factory's OutputBatch calls send_output), straight to the socket
    # when nothing waits; a client that leaves more than max_output bytes unread
    # is dropped.

    def write(self, data: bytes) -> None:
        out = self._out
        if out is None:
            if self._out_closed:
                return
            self._out = [data]
            self.factory.output.add(self)
        else:
            out.append(data)

    @property
    def output_pending(self) -> bool:
        return self._out is not None

    def send_output(self) -> None:
        out, self._out = self._out, None
        transport = self.transport
        if out and not self._out_closed and transport is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            sent = send_through(transport, data)
            if sent < len(data):
                transport.write(data[sent:] if sent else data)
                if self._out_paused and self._over_bound(transport, len(data) - sent):
                    self._out_closed = True
                    self.drop_slow_reader()
                    return
        if self._then_close and not self._out_closed and transport is not None:
            self._out_closed = True
            transport.loseConnection()
            # A client that does not read what is left is cut off, queue and all.
            self._abort = self.clock.callLater(CLOSE_DEADLINE, transport.abortConnection)

    def _over_bound(self, transport, written: int) -> bool:
        """While the transport's buffer is full: is the unread backlog over max_output?"""
        # A reader that keeps up, however slowly, keeps its backlog short.
        unsent = unsent_bytes(transport)
        if unsent is None:
            self._out_queued += written
            unsent = self._out_queued
        return unsent > self.factory.max_output

    def close_when_sent(self) -> None:
        """Close the connection once this turn's output is handed over."""
        self._then_close = True
        if self._out is None:
            self._out = []
            self.factory.output.add(self)

    def discard_output(self) -> None:
        """Nothing more is sent."""
        self._out_closed = True
        self._out = None

    # IPushProducer, for the transport's write buffer

    def pauseProducing(self):
        self._out_paused = True

    def resumeProducing(self):
        self._out_paused = False
        self._out_queued = 0

    def stopProducing(self):
        pass

    def drop_slow_reader(self) -> None:
        """More than C{max_output} bytes wait unread: the connection is dropped, its user logged out."""
        log.info("Dropping {peer}: more than {limit} bytes of output unread", peer=self.who(),
                 limit=self.factory.max_output)
        self.chat.note("dropped", self.frontend)
        self._dropped = True
        self._replies = None
        self.forget_input()  # nothing more it sent is read
        self.log_out()
        notice = self.drop_notice
        transport = self.transport
        if not notice:
            transport.abortConnection()
            return
        # The notice goes after what is already queued; a client that reads
        # nothing more for a second is cut off, queue and all.
        transport.write(self.notice_line(notice))
        transport.loseConnection()
        self._abort = self.clock.callLater(self.drop_deadline, transport.abortConnection)

    # Closing

    def close(self, notice: str = "", wait_for_replies: bool = True) -> None:
        """
        Handle nothing more it sends; tell it C{notice} (before the replies
        still to come, or instead of them) and close once the output is out.
        """
        if self._dropped or self._closing or not self.connected:
            return
        if notice:
            self.write(self.notice_line(notice))
        self.forget_input()
        self._closing = True
        if not wait_for_replies:
            self._replies = None
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self._closing and not self._replies:
            self.close_when_sent()

    def login_too_late(self) -> None:
        """The login deadline (L{LoginDeadlines}) has come and it has not logged in."""
        log.info("Closing {peer}: no login within {n:.0f} s", peer=self.who(), n=self.factory.deadlines.seconds)
        self.close(self.login_deadline_notice, wait_for_replies=False)

    # Replies, in the order of the commands

    def reply(self, data: bytes) -> None:
        """C{data} after every reply still to come, or now."""
        if self._replies:
            self._replies.append(ReplySlot(data))
        else:
            self.write(data)
            self._close_if_done()

    def queue_slot(self, slot: ReplySlot) -> None:
        """C{slot}'s reply goes out once it and every earlier one have their data (L{release})."""
        if self._replies is None:
            self._replies = deque()
        self._replies.append(slot)
        if len(self._replies) >= MAX_REPLIES_WAITING:
            self.pause("replies")  # until release has sent half of them

    def later(self, d, render, context) -> None:
        """Reply with C{render(result)} when C{d} fires, or L{render_failure}; in order."""
        slot = ReplySlot()
        self.queue_slot(slot)
        d.addCallbacks(self._answered, self._refused, (slot, render), None, (slot, context))

    def render_failure(self, failure, context) -> bytes:
        """The reply to a command (C{context}) whose Deferred failed."""
        raise NotImplementedError

    def _answered(self, result, slot, render) -> None:
        slot.data = render(result)
        self.release()

    def _refused(self, failure, slot, context) -> None:
        slot.data = self.render_failure(failure, context)
        self.release()

    def release(self) -> None:
        """Send the replies whose turn has come."""
        replies = self._replies
        if replies is None:
            return  # gone
        if replies and replies[0].data is not None:
            ready = [replies.popleft().data]  # (one write for all that are ready: a run's replies)
            while replies and replies[0].data is not None:
                ready.append(replies.popleft().data)
            self.write(ready[0] if len(ready) == 1 else b"".join(ready))
        if not replies and self._replies is replies:
            self._replies = None
        self._close_if_done()
        if "replies" in self._pauses and len(replies) <= MAX_REPLIES_WAITING // 2:
            self.resume("replies")


class LoginDeadlines:
    """
    Closes the connections that have not logged in within C{seconds}: one
    timer for all of a listener's connections (in the order they came, the
    order of their deadlines) instead of a DelayedCall each, made and
    cancelled on every login.
    """

    __slots__ = ("clock", "seconds", "_deadlines", "_kept", "_sweep")

    def __init__(self, clock, seconds: float = LOGIN_DEADLINE):
        self.clock = clock
        self.seconds = seconds
        self._deadlines = deque()
        self._kept = 0  # how many were left the last time the settled ones were let go
        self._sweep = None

    @staticmethod
    def _settled(connection) -> bool:
        return connection.logged_in or not connection.connected or connection._closing or connection._dropped

    def expect(self, connection) -> None:
        deadlines = self._deadlines
        deadlines.append((self.clock.seconds() + self.seconds, connection))
        if self._sweep is None:
            self._sweep = self.clock.callLater(self.seconds, self._login_too_late)
        elif len(deadlines) > 2 * self._kept + 64:
            # Mostly logged in or gone: let them go before their deadline (amortized O(1) a connection).
            self._deadlines = deque(entry for entry in deadlines if not self._settled(entry[1]))
            self._kept = len(self._deadlines)

    def _login_too_late(self) -> None:
        self._sweep = None
        now = self.clock.seconds()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            connection = deadlines.popleft()[1]
            if not self._settled(connection):
                connection.login_too_late()
        while deadlines and self._settled(deadlines[0][1]):
            deadlines.popleft()
        if deadlines:
            self._sweep = self.clock.callLater(max(0.0, deadlines[0][0] - now), self._login_too_late)

    def stop(self) -> None:
        sweep, self._sweep = self._sweep, None
        if sweep is not None and sweep.active():
            sweep.cancel()
        self._deadlines.clear()


class ConnectionFactory(ServerFactory):
    """
    A listener's connections: its caps (a connection over one is refused in
    the front end's own words and counted), its command rate, its output
    batch and its login deadlines.

    @param rate_limit: commands a second allowed per connection on average
        (0: no limit), in bursts of up to C{rate_burst}.
    @param max_connections: connections allowed at once (0: no cap).
    @param max_connections_per_ip: connections allowed at once from one
        address (0: no cap).
    """

    noisy = False
    frontend = "?"

    def __init__(self, chat, max_output: int = DEFAULT_MAX_OUTPUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, max_connections: int = 0, max_connections_per_ip: int = 0,
                 clock=None, login_deadline: float = LOGIN_DEADLINE):
        self.chat = chat
        self.clock = clock if clock is not None else chat.clock
        self.max_output = max_output
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst or default_burst(rate_limit)
        self.caps = ConnectionCaps(max_connections, max_connections_per_ip)
        self.output = OutputBatch(self.clock)
        self.deadlines = LoginDeadlines(self.clock, login_deadline) if login_deadline else None

    @property
    def connections(self) -> dict:
        """The open connections (the registry the server's shutdown goes through)."""
        return self.caps.connections

    def refusal_line(self, text: str) -> bytes:
        """Why a connection over the caps is refused, in the front end's own words."""
        raise NotImplementedError

    def connection(self, host, rate):
        """A new connection from C{host} (with its L{CommandRate}, or None)."""
        raise NotImplementedError

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        refusal = self.caps.refused(host, self.chat, self.frontend, self.refusal_line)
        if refusal is not None:
            return refusal
        rate = None
        if self.rate_limit > 0:
            rate = CommandRate(self.rate_limit, self.rate_burst, self.clock.seconds())
        protocol = self.connection(host, rate)
        self.caps.add(protocol, host)
        return protocol

    def forget(self, protocol) -> None:
        """C{protocol} is gone: it no longer counts toward the caps."""
        self.caps.forget(protocol, protocol.host)
