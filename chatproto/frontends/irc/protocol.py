"""
The IRC front end: one L{IRCProtocol} per connection, over the chat core.

It only translates: IRC commands become calls on the core's realm (login,
send_private, join_group, ...), the core's events become IRC lines, and the
core's error codes become numerics with the line protocol's texts
(docs/IRC.md). Channels C{#G} are the core's groups C{G}; the nick is the
account's username.

This module is the connection: input (bounded lines, fair per turn, one
command at a time), output (batched per turn, a slow reader dropped), the
session the core talks to, and the factory. What a command does is in the
modules by concern, found through the command table (L{commands}, which
checks each command's parameter count once): L{registration} (CAP, SASL,
PASS/NICK/USER, PING, QUIT), L{channels}, L{users} (PRIVMSG, WHO, WHOIS,
AWAY...), L{history} (CHATHISTORY, MARKREAD, SEARCH); the core's events are
rendered by L{events}, messages and errors by L{rendering}.

Before registration only the registration commands exist; every other
command gets 451. After it the chat commands appear. Commands are handled
one at a time, in order: while one waits for the core (a login, a JOIN
being saved), the next lines wait; a PRIVMSG does not hold up the next line
(the core answers sends in order).
"""

from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.internet.protocol import ServerFactory
from twisted.protocols.basic import LineReceiver
from twisted.logger import Logger
from zope.interface import implementer

from ...core.events import Message
from ...core.interfaces import ISession
from ..limits import BYTES_PER_TURN, CommandRate, ConnectionCaps, default_burst, over_turn
from ..output import CLOSE_DEADLINE, DEFAULT_MAX_OUTPUT, OutputBatch, send_through, unsent_bytes
from . import caps as C
from . import texts as T
from . import users
from .channels import NO_CHANNELS
from .commands import find as find_command
from .events import HANDLERS as EVENT_HANDLERS
from .history import MAX_HISTORY
from .rendering import SERVER_NAME, VERSION, render_message, tag_flags
from .users import AWAYLEN
from .wire import MAX_LINE, MAX_REST, MAX_TAGS, BadLine, encode, format_line, parse_line

log = Logger()

REGISTRATION_TIMEOUT = 30.0
QUEUED_LINES_PAUSE = 1000  # stop reading a client that pipelines more than this while waiting
LINES_PER_TURN = 64  # lines handled per connection per reactor turn, then its input waits a turn
MAX_LINES_BEFORE_REGISTRATION = 64  # then the connection is closed: no client needs more
DROP_DEADLINE = 1.0  # seconds a dropped slow reader has to take its last line

NO_CAPS = frozenset()


@implementer(IProtocol, IPushProducer, ISession)
class IRCProtocol(LineReceiver):
    """
    One IRC connection; also the core's session object for its user.

    A LineReceiver with its own framing (C{dataReceived}: lines cut from an
    offset, fair per turn, bounded; see there), as the line protocol's.
    Memory per idle client is a goal (docs/PERFORMANCE.md): every attribute
    is a slot (LineReceiver's base allows an instance dict, but none is ever
    made: nothing outside the slots is assigned), and what most connections
    never need is made on first use: the queue of waiting lines, the events
    held before registration ends, the channels; cap sets are shared
    between connections.
    """

    __slots__ = (
        "factory", "chat", "clock", "ip", "caps_host", "transport", "connected",
        "_out", "_out_paused", "_out_queued", "_out_closed", "_then_close", "_close_deadline",
        "nick", "user_seen", "password", "caps", "tag_flags", "_echo", "_fast", "cap_version",
        "cap_negotiating", "sasl", "user", "registered", "ready", "channels", "rate",
        "_pending_events", "_lines", "_buffer", "_discarding", "_busy", "_held", "_wakeup", "_abort",
        "_turn_seen", "_lines_this_turn", "_bytes_this_turn", "_lines_before_registration", "_processing",
        "_reading_paused", "_closed", "_batches", "_lost_hook",
    )

    frontend = "irc"
    udp_port = 0
    wants_presence = "groups"  # JOIN/QUIT of channel members; nothing about strangers (O(n) per login)
    hostname = SERVER_NAME

    def __init__(self, factory, ip: str):
        self.factory = factory
        self.chat = factory.chat
        self.clock = factory.clock
        self.ip = ip
        self.caps_host = None  # the address the factory's connection caps count it under
        self.transport = None
        self.connected = 0
        self.nick = None
        self.user_seen = False
        self.password = None
        self.caps = NO_CAPS  # a frozenset, shared (IRCFactory.caps_set)
        self.tag_flags = 0
        self._echo = False
        self._fast = False  # registered: PRIVMSG takes the short path
        self.cap_version = 0
        self.cap_negotiating = False
        self.sasl = None  # None, or the base64 text of a PLAIN exchange under way
        self.user = None  # the core's User once logged in
        self.registered = False
        self.ready = False  # registered and the joined channels shown: events go out at once
        self.channels = NO_CHANNELS  # a dict of name.lower() -> Channel once one is joined
        self.rate = None
        if factory.rate_limit > 0:
            self.rate = CommandRate(factory.rate_limit, factory.rate_burst, self.clock.seconds())
        self._pending_events = None  # a list of the events that came before registration ended
        self._lines = None  # a deque of the lines waiting to be handled, once one had to wait
        self._buffer = b""
        self._discarding = False
        self._busy = False  # a command waits for the core: the next lines wait for it
        self._held = False  # input waits for the next turn, or for a token of the command rate
        self._wakeup = None  # the IDelayedCall that ends a hold
        self._abort = None  # the IDelayedCall that cuts off a dropped slow reader
        self._turn_seen = -1
        self._lines_this_turn = 0
        self._bytes_this_turn = 0
        self._lines_before_registration = 0
        self._processing = False
        self._reading_paused = False
        self._closed = False
        self._batches = 0
        self._lost_hook = None  # what was assigned to connectionLost (see there)
        # Output (see "Output" below)
        self._out = None  # this turn's lines, once there is one
        self._out_paused = False  # the transport's buffer is full (it paused us, its producer)
        self._out_queued = 0  # bytes written since then, for a transport that cannot tell its backlog
        self._out_closed = False  # nothing more is sent
        self._then_close = False  # close once this turn's output is handed over
        self._close_deadline = None  # the IDelayedCall that cuts off a closed connection that does not read

    def makeConnection(self, transport):
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def logPrefix(self) -> str:
        return "IRCProtocol"

    def _queue(self):
        """The queue of waiting lines, made on first use."""
        lines = self._lines
        if lines is None:
            lines = self._lines = deque()
        return lines

    # Connection

    def connectionMade(self):
        self.transport.registerProducer(self, True)  # it tells when its buffer is full
        if not self.ip:
            self.ip = getattr(self.transport.getPeer(), "host", "") or ""
        self.factory.expect_registration(self)  # one timer for every connection (IRCFactory)

    # The server's shutdown (chatproto/server/app.py) wraps a connection's
    # connectionLost by assigning the attribute; with slots and no instance
    # dict, this property keeps what is assigned.

    @property
    def connectionLost(self):
        return self._lost_hook or self._connection_lost

    @connectionLost.setter
    def connectionLost(self, hook):
        self._lost_hook = hook

    def _connection_lost(self, reason=None):
        for name in ("_wakeup", "_abort"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        self._closed = True
        self.connected = 0
        self._discard_output()
        self.factory.forget(self)
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)

    def _registration_timeout(self):
        if not self.registered:
            self.close("Registration timed out")

    def close(self, reason: str) -> None:
        """Tell the client C{reason} with ERROR and close the connection."""
        if self._closed:
            return
        self.send_line(format_line("ERROR", [f"Closing link: {reason}"]))
        self._closed = True
        self._forget_input()
        self._close_when_sent()

    def _forget_input(self) -> None:
        """
        A closed connection's unread input goes now, not when its socket is
        gone: the waiting lines of a flood of small lines take many times
        their size in memory (issue 28, F4).
        """
        self._lines = None
        self._buffer = b""

    # Output: what chatproto/frontends/output.py's BatchedOutput and OutputBound
    # do for the other front ends, in this object's slots (two objects and a bound
    # method fewer per connection): a turn's lines are joined and handed over
    # once at the end of the turn (the factory's OutputBatch calls send_output),
    # straight to the socket when nothing waits; a client that leaves more than
    # max_output bytes unread is dropped.

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        out = self._out
        if out is None:
            if self._out_closed:
                return
            self._out = [data]
            self.factory.output.add(self)
        else:
            out.append(data)

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
                    self._drop_slow_reader()
                    return
        if self._then_close and not self._out_closed and transport is not None:
            self._out_closed = True
            transport.loseConnection()
            # A client that does not read what is left is cut off, queue and all.
            self._close_deadline = self.clock.callLater(CLOSE_DEADLINE, transport.abortConnection)

    def _over_bound(self, transport, written: int) -> bool:
        """While the transport's buffer is full: is the unread backlog over max_output?"""
        unsent = unsent_bytes(transport)
        if unsent is None:
            self._out_queued += written
            unsent = self._out_queued
        return unsent > self.factory.max_output

    def _close_when_sent(self) -> None:
        self._then_close = True
        if self._out is None:
            self._out = []
            self.factory.output.add(self)

    def _discard_output(self) -> None:
        self._out_closed = True
        self._out = None
        call, self._close_deadline = self._close_deadline, None
        if call is not None and call.active():
            call.cancel()

    # IPushProducer, for the transport's buffer

    def pauseProducing(self):
        self._out_paused = True

    def resumeProducing(self):
        self._out_paused = False
        self._out_queued = 0

    def stopProducing(self):
        pass

    def _drop_slow_reader(self):
        log.info("Dropping {user}: more than {limit} bytes of output unread",
                 user=self.nick, limit=self.factory.max_output)
        self.chat.note("dropped", self.frontend)
        self._closed = True
        self._forget_input()
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)
        # The ERROR goes after what is already queued; a client that reads
        # nothing more for a second is cut off, queue and all.
        self.transport.write(encode(format_line("ERROR", ["Closing link: too much output waiting unread"])))
        self.transport.loseConnection()
        self._abort = self.clock.callLater(DROP_DEADLINE, self.transport.abortConnection)

    def send_line(self, line: str) -> None:
        self.write(encode(line))

    def send(self, command: str, *params: str, prefix: str = SERVER_NAME, tags: str = "") -> None:
        self.write(encode(format_line(command, params, prefix, tags)))

    def numeric(self, code: str, *params: str) -> None:
        self.send(code, self.nick or "*", *params)

    def notice(self, text: str) -> None:
        self.send("NOTICE", self.nick or "*", text)

    # Input: bounded lines, one command at a time

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        buffer = self._buffer + data
        if self._discarding:
            end = buffer.find(b"\n")
            if end < 0:
                self._buffer = b""
                return
            self._discarding = False
            buffer = buffer[end + 1:]
        lines = buffer.split(b"\n")
        rest = lines.pop()
        self._buffer = rest
        if self._lines or self._busy or self._held or self._processing:
            queue = self._queue()
            for line in lines:
                queue.append(line if len(line) <= MAX_LINE + 1 else None)
        else:
            # Nothing waiting: handle the lines straight from this read.
            self._processing = True
            try:
                if self._fast:
                    self._fast_lines(lines)
                else:
                    self._slow_lines(lines)
            finally:
                self._processing = False
            if self._closed:
                return
        if len(rest) > MAX_LINE + 1:
            self._queue().append(None)
            self._discarding = True
            rest = b""
        self._buffer = rest
        self._process()

    def _fast_lines(self, lines) -> None:
        """
        The lines of one read of a registered client: a plain "PRIVMSG
        TARGET :text" goes to the core from here (after a token of the
        command rate, if there is one), the rest through L{_line}; the
        fairness count is kept as L{_line} keeps it.
        """
        turn = self.factory.output.turns
        if turn != self._turn_seen:
            self._turn_seen = turn
            self._lines_this_turn = 0
            self._bytes_this_turn = 0
        count = self._lines_this_turn
        nbytes = self._bytes_this_turn
        privmsg = users.privmsg
        rate = self.rate
        now = self.clock.seconds() if rate is not None else 0.0
        for index, raw in enumerate(lines):
            if self._closed:
                return  # what a closed connection sent is never handled: nothing is kept
            if self._busy or self._held or count >= LINES_PER_TURN or nbytes >= BYTES_PER_TURN:
                # The rest waits (_line holds a line over the turn's share).
                self._lines_this_turn = count
                self._bytes_this_turn = nbytes
                queue = self._queue()
                for queued in lines[index:]:
                    queue.append(queued if len(queued) <= MAX_LINE + 1 else None)
                return
            if raw.startswith(b"PRIVMSG "):
                size = len(raw)
                if raw.endswith(b"\r"):
                    size -= 1
                if size <= MAX_REST:
                    try:
                        target, colon, text = raw[8:size].decode("utf-8").partition(" :")
                    except UnicodeDecodeError:
                        colon = ""
                    if colon and text and target and " " not in target and "," not in target \
                            and not text.startswith("\x01") and (rate is None or rate.allow(now)):
                        count += 1
                        nbytes += size + 1
                        privmsg(self, target, text)
                        continue
                    # (Without a token, _line holds the line until there is one.)
            self._lines_this_turn = count
            self._bytes_this_turn = nbytes
            self._line(raw if len(raw) <= MAX_LINE + 1 else None)
            count = self._lines_this_turn
            nbytes = self._bytes_this_turn
        self._lines_this_turn = count
        self._bytes_this_turn = nbytes

    def _slow_lines(self, lines) -> None:
        for index, line in enumerate(lines):
            if self._closed:
                return  # what a closed connection sent is never handled: nothing is kept
            if self._busy or self._held:
                queue = self._queue()
                for queued in lines[index:]:
                    queue.append(queued if len(queued) <= MAX_LINE + 1 else None)
                return
            self._line(line if len(line) <= MAX_LINE + 1 else None)

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            while self._lines and not self._busy and not self._held and not self._closed:
                self._line(self._lines.popleft())
        finally:
            self._processing = False
        if self.transport is None or self._closed:
            return
        waiting = len(self._lines) if self._lines is not None else 0
        stop = self._held or (self._busy and waiting > QUEUED_LINES_PAUSE)
        if stop and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not stop and self._reading_paused and waiting < QUEUED_LINES_PAUSE // 2:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _hold(self, raw, seconds: float) -> None:
        """Keep C{raw} for later: input waits C{seconds} (0: until the next reactor turn)."""
        self._queue().appendleft(raw)
        self._held = True
        if self._wakeup is None:
            self._wakeup = self.clock.callLater(seconds, self._wake)

    def _wake(self) -> None:
        self._wakeup = None
        self._held = False
        self._turn_seen = -1
        self._process()

    def _line(self, raw: bytes | None) -> None:
        # Fairness: a connection gets LINES_PER_TURN lines and BYTES_PER_TURN bytes
        # a reactor turn, and with a command rate a token per line; then its input waits.
        turn = self.factory.output.turns
        if turn != self._turn_seen:
            self._turn_seen = turn
            self._lines_this_turn = 0
            self._bytes_this_turn = 0
        self._lines_this_turn += 1
        self._bytes_this_turn += len(raw) + 1 if raw is not None else MAX_LINE
        if over_turn(self._lines_this_turn, self._bytes_this_turn, LINES_PER_TURN):
            self._hold(raw, 0)
            return
        if self.rate is not None:
            now = self.clock.seconds()
            if not self.rate.allow(now):
                self._hold(raw, self.rate.delay(now))
                return
        if not self.registered:
            self._lines_before_registration += 1
            if self._lines_before_registration > MAX_LINES_BEFORE_REGISTRATION:
                self.close("Too many lines before registration")
                return
        if raw is not None and raw.startswith(b"PRIVMSG ") and self._fast:
            # The hot path: a registered client's plain "PRIVMSG TARGET :text".
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) <= MAX_REST:
                try:
                    target, colon, text = raw[8:].decode("utf-8").partition(" :")
                except UnicodeDecodeError:
                    target = colon = ""
                if colon and text and target and " " not in target and "," not in target \
                        and not text.startswith("\x01"):
                    users.privmsg(self, target, text)
                    return
        if raw is None:
            self.numeric(T.ERR_INPUTTOOLONG, "Input line was too long")
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(b"@"):
            tags, _, rest = raw.partition(b" ")
            too_long = len(tags) + 1 > MAX_TAGS or len(rest) > MAX_REST
        else:
            too_long = len(raw) > MAX_REST
        if too_long:
            self.numeric(T.ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.send("FAIL", "*", "INVALID_UTF8", "Lines must be UTF-8; this one was ignored")
            return
        if text.startswith("@"):
            # A client's tags are bounded and checked above, never parsed: no command here
            # uses them (no labeled-response; TAGMSG relays nothing), and 8 KiB of them took
            # a millisecond to unescape, a turn's worth for 20 connections (issue 28, F6).
            text = text.partition(" ")[2]
        try:
            line = parse_line(text)
        except BadLine:
            return  # blank lines, a lone prefix: nothing to answer
        self.dispatch(line)

    def dispatch(self, line) -> None:
        command = line.command
        params = line.params
        handler = find_command(self, command, params)  # answers 451, 421 or 461 itself
        if handler is None:
            return
        try:
            result = handler(self, params, line.tags)
        except Exception:  # noqa: BLE001 - logged and answered; the connection goes on
            log.failure("IRC command {command} from {user}", command=command, user=self.nick)
            self.notice(T.SERVER_ERROR)
            return
        if result is not None and isinstance(result, defer.Deferred):
            # The next line waits until this command is done (at once if it already is).
            self._busy = True
            result.addErrback(self._command_failed, command)
            result.addBoth(self._command_done)

    def _command_failed(self, failure, command):
        log.failure("IRC command {command} from {user}", failure, command=command, user=self.nick)
        if not self._closed:
            self.notice(T.SERVER_ERROR)

    def _command_done(self, _):
        self._busy = False
        self._process()

    # The core's session interface

    def receive(self, event) -> None:
        if type(event) is Message and self.ready and not self._closed:
            # The hot path of a fan-out: one line rendered once for every receiver.
            factory = self.factory
            line = factory._rendered.get(self.tag_flags) if event is factory._rendered_message else None
            if line is None:
                line = factory.render_message(event, self.tag_flags)
            out = self._out
            if out is None:
                if self._out_closed:
                    return
                self._out = [line]
                factory.output.add(self)
            else:
                out.append(line)
            return
        if self._closed:
            return
        if not self.ready:
            if self._pending_events is None:
                self._pending_events = []
            self._pending_events.append(event)
            return
        handler = EVENT_HANDLERS.get(type(event))
        if handler is None:  # not shown on IRC
            return
        try:
            handler(self, event)
        except Exception:  # noqa: BLE001 - never raise into the core
            log.failure("IRC rendering of {event!r} for {user}", event=event, user=self.nick)

    def disconnect(self, notice: str) -> None:
        self.user = None  # the core has ended the session
        self.close(notice)

    def caps_changed(self) -> None:
        """The caps changed (CAP REQ): the tags and echoes this client gets."""
        self.tag_flags = tag_flags(self.caps)
        self._echo = C.ECHO_MESSAGE in self.caps


class IRCFactory(ServerFactory):
    """The IRC listener's factory: shared state of every IRC connection."""

    noisy = False
    protocol = IRCProtocol

    def __init__(self, chat, clock=None, max_output: int = DEFAULT_MAX_OUTPUT,
                 registration_timeout: float = REGISTRATION_TIMEOUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, max_connections: int = 0, max_connections_per_ip: int = 0):
        if clock is None:
            clock = getattr(chat, "clock", None)
        if clock is None:
            from twisted.internet import reactor as clock
        self.chat = chat
        self.clock = clock
        self.max_output = max_output
        self.registration_timeout = registration_timeout
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst or default_burst(rate_limit)
        self.caps = ConnectionCaps(max_connections, max_connections_per_ip)
        self.output = OutputBatch(clock)
        self.sessions: dict[str, IRCProtocol] = {}  # registered users by name
        self._rendered_message = None
        self._rendered: dict[int, bytes] = {}
        self._cap_sets: dict[frozenset, frozenset] = {NO_CAPS: NO_CAPS}
        self._welcome = None  # (the ISUPPORT it was made with, the welcome burst split at the nick)
        self._deadlines: deque = deque()  # (registration deadline, protocol), oldest first
        self._sweep = None  # the IDelayedCall of the next deadline
        self.isupport = [
            "CASEMAPPING=ascii", "CHANTYPES=#", "CHANMODES=b,,,m", "PREFIX=(o)@",
            f"NETWORK={SERVER_NAME}", "NICKLEN=64", "CHANNELLEN=33", "MODES=1", f"AWAYLEN={AWAYLEN}",
            f"CHATHISTORY={MAX_HISTORY}", "MSGREFTYPES=msgid,timestamp", "UTF8ONLY",
        ]

    @property
    def connections(self) -> dict:
        return self.caps.connections

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        refusal = self.caps.refused(host, self.chat, IRCProtocol.frontend,
                                    lambda text: encode(format_line("ERROR", [f"Closing link: {text}"])))
        if refusal is not None:
            return refusal
        protocol = self.protocol(self, host or "")
        protocol.caps_host = host
        self.caps.add(protocol, host)
        return protocol

    def forget(self, protocol) -> None:
        self.caps.forget(protocol, protocol.caps_host)
        if protocol.nick is not None and self.sessions.get(protocol.nick) is protocol:
            del self.sessions[protocol.nick]

    def expect_registration(self, protocol) -> None:
        """Close C{protocol} if it has not registered in C{registration_timeout} seconds."""
        deadlines = self._deadlines
        deadlines.append((self.clock.seconds() + self.registration_timeout, protocol))
        if self._sweep is None:
            self._sweep = self.clock.callLater(self.registration_timeout, self._sweep_registrations)
        elif len(deadlines) > 2 * (len(self.caps.connections) - len(self.sessions)) + 64:
            # Mostly registered or gone: let them go before their deadline.
            self._deadlines = deque(entry for entry in deadlines
                                    if not (entry[1].registered or entry[1]._closed))

    def _sweep_registrations(self) -> None:
        """
        The registration deadlines that have come: one timer for all the
        connections (in the order they came, the order of their deadlines)
        instead of a DelayedCall each, made and cancelled on every login.
        """
        self._sweep = None
        now = self.clock.seconds()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            protocol = deadlines.popleft()[1]
            if not (protocol.registered or protocol._closed):
                protocol._registration_timeout()
        while deadlines and (deadlines[0][1].registered or deadlines[0][1]._closed):
            deadlines.popleft()
        if deadlines:
            self._sweep = self.clock.callLater(max(0.0, deadlines[0][0] - now), self._sweep_registrations)

    def welcome_burst(self, name: str) -> bytes:
        """001-005 and 422 for C{name}: the lines are formatted once, the name put in."""
        burst = self._welcome
        if burst is None or burst[0] != self.isupport:
            nick = "\0"  # no name holds it
            lines = [
                (T.RPL_WELCOME, f"Welcome to chatproto, {nick}!"),
                (T.RPL_YOURHOST, f"Your host is {SERVER_NAME}, running version {VERSION}"),
                (T.RPL_CREATED, "This server was created for chatproto"),
                (T.RPL_MYINFO, SERVER_NAME, VERSION, "i", "m"),
                (T.RPL_ISUPPORT, *self.isupport, "are supported by this server"),
                (T.ERR_NOMOTD, "MOTD File is missing"),
            ]
            data = b"".join(encode(format_line(code, (nick, *params), SERVER_NAME))
                            for code, *params in lines)
            burst = self._welcome = (list(self.isupport), data.split(b"\0"))
        return name.encode("utf-8", "surrogateescape").join(burst[1])

    def caps_set(self, caps) -> frozenset:
        """C{caps} as a frozenset shared by every connection with the same caps."""
        caps = frozenset(caps)
        shared = self._cap_sets.get(caps)
        if shared is None:
            if len(self._cap_sets) > 4096:  # a few dozen caps: a few combinations in practice
                return caps
            shared = self._cap_sets[caps] = caps
        return shared

    def registered(self, protocol) -> None:
        self.sessions[protocol.nick] = protocol

    def create_group(self, user, name):
        """A new group with C{user} as its owner and only member (the core's IRC entry)."""
        return self.chat.create_group(user, name, [], broadcast=False, allow_alone=True)

    def away_of(self, name: str) -> str | None:
        """A user's away message (the core's: set from any front end), or None."""
        return self.chat.away_of(name)

    def render_message(self, message, flags: int) -> bytes:
        """The line for C{message} and tag C{flags}, rendered once for all its receivers."""
        if message is not self._rendered_message:
            line = render_message(message, flags)
            self._rendered_message = message
            self._rendered = {flags: line}
            return line
        line = self._rendered.get(flags)
        if line is None:
            line = self._rendered[flags] = render_message(message, flags)
        return line
