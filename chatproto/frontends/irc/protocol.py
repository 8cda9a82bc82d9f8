"""
The IRC front end: one L{IRCProtocol} per connection, over the chat core.

It only translates: IRC commands become calls on the core's realm (login,
send_private, join_group, ...), the core's events become IRC lines, and the
core's error codes become numerics with the line protocol's texts
(docs/IRC.md). Channels C{#G} are the core's groups C{G}; the nick is the
account's username.

Before registration only the registration commands exist (C{pre_*}
methods); every other command gets 451. After it the chat commands
(C{irc_*}) appear. Commands are handled one at a time, in order: while one
waits for the core (a login, a JOIN being saved), the next lines wait; a
PRIVMSG does not hold up the next line (the core answers sends in order).
"""

import base64
import binascii
from collections import deque
from types import MappingProxyType

from twisted.internet import defer
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.internet.protocol import ServerFactory
from twisted.protocols.basic import LineReceiver
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ...core import errors as codes
from ...core.events import GROUP, Message
from ...core.interfaces import ISession
from ...core.realm import single_line
from ..limits import BYTES_PER_TURN, CommandRate, ConnectionCaps, default_burst, over_turn
from ..output import CLOSE_DEADLINE, DEFAULT_MAX_OUTPUT, OutputBatch, send_through, unsent_bytes
from . import caps as C
from . import chathistory
from . import search as irc_search
from . import texts as T
from .wire import (
    MAX_BODY,
    MAX_LINE,
    MAX_REST,
    MAX_TAGS,
    BadLine,
    encode,
    format_line,
    format_tags,
    parse_line,
    parse_server_time,
    server_time,
    split_body,
)

log = Logger()

SERVER_NAME = "chatproto"
HOST = "chatproto"  # the host part of every user's prefix: SENDER!SENDER@chatproto
VERSION = "chatproto-0.1.0"
REGISTRATION_TIMEOUT = 30.0
PLAYBACK = 20  # messages of each joined group shown on (re)join to clients without chathistory
MAX_HISTORY = 500
SASL_CHUNK = 400
MAX_SASL = 4 * SASL_CHUNK
QUEUED_LINES_PAUSE = 1000  # stop reading a client that pipelines more than this while waiting
LINES_PER_TURN = 64  # lines handled per connection per reactor turn, then its input waits a turn
MAX_LINES_BEFORE_REGISTRATION = 64  # then the connection is closed: no client needs more
AWAYLEN = 300  # characters of an away text (ISUPPORT AWAYLEN)
DROP_DEADLINE = 1.0  # seconds a dropped slow reader has to take its last line

# Tag flags of a rendered message: which tags this client gets.
TAG_TIME, TAG_ACCOUNT, TAG_MSGID = 1, 2, 4

GROUP_SEND_ERRORS = {
    codes.NO_SUCH_GROUP: T.ERR_NOSUCHCHANNEL,
    codes.NOT_MEMBER: T.ERR_NOTONCHANNEL,
    codes.NOT_JOINED: T.ERR_CANNOTSENDTOCHAN,
    codes.BROADCAST_OWNER_ONLY: T.ERR_CANNOTSENDTOCHAN,
}
PRIVATE_SEND_ERRORS = {codes.NO_SUCH_USER: T.ERR_NOSUCHNICK, codes.NOT_ACTIVE: T.ERR_NOSUCHNICK}
# KILL and NOTICE $* (administrators): 481 ERR_NOPRIVILEGES for everyone else.
ADMIN_ERRORS = {codes.NO_SUCH_USER: T.ERR_NOSUCHNICK, codes.NOT_ACTIVE: T.ERR_NOSUCHNICK,
                codes.NOT_ADMIN: ("481", ())}

# Commands that exist before registration.
REGISTRATION_COMMANDS = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"})


EVENT_HANDLERS: dict = {}  # event type -> IRCProtocol.event_NAME (or None: not shown)


def prefix_of(name: str) -> str:
    return f"{name}!{name}@{HOST}"


def msgid_of(message) -> str:
    if message.kind == GROUP:
        return f"g.{message.group}.{message.seq}"
    return f"p.{message.seq}"


class Channel:
    """What this connection knows of a group it has joined."""

    __slots__ = ("broadcast", "members", "name", "owner")

    def __init__(self, info):
        self.name = info.name
        self.owner = info.owner
        self.broadcast = bool(info.broadcast)
        self.members = {name: joined for name, joined in info.members}

    @property
    def channel(self) -> str:
        return "#" + self.name

    def joined(self, name: str) -> bool:
        return self.members.get(name, False)


def topic_of(info) -> str:
    kind = "Broadcast group" if info.broadcast else "Group chat"
    return f"{kind} {info.name}, owner {info.owner}"


def modes_of(info) -> str:
    return "+ntm" if info.broadcast else "+nt"


NO_CAPS = frozenset()
NO_CHANNELS = MappingProxyType({})  # the channels of a connection that has joined none (read-only)


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
        privmsg = self._privmsg
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
                        privmsg(target, text)
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
                    self._privmsg(target, text)
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
        if not self.registered:
            method = PRE_COMMANDS.get(command)
            if method is None:
                self.numeric(T.ERR_NOTREGISTERED, "You have not registered")
                return
        else:
            method = COMMANDS.get(command)
            if method is None:
                self.numeric(T.ERR_UNKNOWNCOMMAND, command, "Unknown command")
                return
        try:
            result = method(self, line.params, line.tags)
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

    # Registration

    def pre_CAP(self, params, tags):
        return self.irc_CAP(params, tags)

    def irc_CAP(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
            return None
        sub = params[0].upper()
        target = self.nick or "*"
        if sub == "LS":
            if not self.registered:
                self.cap_negotiating = True
            version = params[1] if len(params) > 1 else ""
            self.cap_version = max(self.cap_version, int(version) if version.isdigit() else 0)
            self.send("CAP", target, "LS", " ".join(C.ls_items(self.cap_version)))
        elif sub == "LIST":
            self.send("CAP", target, "LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if not self.registered:
                self.cap_negotiating = True
            text = params[1] if len(params) > 1 else ""
            request = C.parse_request(text)
            if request is None:
                self.send("CAP", target, "NAK", text)
            else:
                enable, disable = request
                self.caps = self.factory.caps_set((self.caps | enable) - disable)
                self.caps_changed()
                self.send("CAP", target, "ACK", text.strip())
        elif sub == "END":
            if not self.registered:
                self.cap_negotiating = False
                return self.try_register()
        else:
            self.numeric("410", params[0], "Invalid CAP command")
        return None

    def pre_PASS(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
            return
        self.password = params[0]

    def pre_NICK(self, params, tags):
        if not params or not params[0]:
            self.numeric(T.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        # Echoed in every reply before registration: cleaned as message text is,
        # and still one parameter (no space).
        self.nick = single_line(params[0]).replace(" ", "_")
        return self.try_register()

    def pre_USER(self, params, tags):
        if len(params) < 4:
            self.numeric(T.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
            return None
        self.user_seen = True
        return self.try_register()

    def pre_AUTHENTICATE(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "AUTHENTICATE", "Not enough parameters")
            return None
        if self.user is not None:
            self.numeric(T.ERR_SASLALREADY, "You have already authenticated using SASL")
            return None
        arg = params[0]
        if arg == "*":
            if self.sasl is not None:
                self.sasl = None
                self.numeric(T.ERR_SASLABORTED, "SASL authentication aborted")
            else:
                self.numeric(T.ERR_SASLFAIL, "SASL authentication failed")
            return None
        if self.sasl is None:
            if arg.upper() != "PLAIN":
                self.numeric(T.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                self.numeric(T.ERR_SASLFAIL, "SASL authentication failed")
                return None
            self.sasl = ""
            self.send("AUTHENTICATE", "+", prefix=None)
            return None
        if len(arg) > SASL_CHUNK:
            self.sasl = None
            self.numeric(T.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if arg != "+":
            self.sasl += arg
        if len(self.sasl) > MAX_SASL:
            self.sasl = None
            self.numeric(T.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if len(arg) == SASL_CHUNK:
            return None  # more to come
        payload, self.sasl = self.sasl, None
        try:
            fields = base64.b64decode(payload, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, ValueError):
            fields = []
        if len(fields) != 3 or not fields[1] or (fields[0] and fields[0] != fields[1]):
            self.numeric(T.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN message")
            return None
        _, username, password = fields
        return self._login(username, password, sasl=True)

    def _login(self, username: str, password: str, sasl: bool):
        d = defer.maybeDeferred(self.chat.login, username, password, self)
        d.addCallbacks(self._logged_in, self._login_failed, callbackArgs=(sasl,), errbackArgs=(sasl,))
        return d

    def _logged_in(self, user, sasl):
        if self._closed:
            self.chat.logout(user)
            return None
        self.user = user
        if sasl:
            nick = self.nick or user.name
            self.numeric(T.RPL_LOGGEDIN, f"{nick}!{user.name}@{HOST}", user.name,
                         f"You are now logged in as {user.name}")
            self.numeric(T.RPL_SASLSUCCESS, "SASL authentication successful")
            return None
        return self.welcome()

    def _login_failed(self, failure, sasl):
        code = T.error_code(failure.value)
        if code not in T.LOGIN_TEXTS:
            log.failure("IRC login", failure)
            code = "server-error"
        text = T.LOGIN_TEXTS[code]
        if sasl:
            self.numeric(T.ERR_SASLFAIL, text)
            if code in T.LOGIN_FATAL:
                self.close(text)
        else:
            self.numeric(T.ERR_PASSWDMISMATCH, text)
            self.close(text)

    def try_register(self):
        if self.registered or self.cap_negotiating or self.nick is None or not self.user_seen:
            return None
        if self.user is not None:
            return self.welcome()
        if self.password is None:
            text = "Password required: use PASS PASSWORD (or PASS USERNAME:PASSWORD) or SASL PLAIN"
            self.numeric(T.ERR_PASSWDMISMATCH, text)
            self.close(text)
            return None
        whole, self.password = self.password, None  # not kept once used
        name, colon, password = whole.partition(":")
        if not (colon and name):
            return self._login(self.nick, whole, sasl=False)
        if name == self.nick:
            return self._login(name, password, sasl=False)
        # PASS USERNAME:PASSWORD, unless the nick is an account whose password has a colon.
        d = defer.maybeDeferred(self.chat.account_names)

        def choose(names):
            if self.nick in names:
                return self._login(self.nick, whole, sasl=False)
            return self._login(name, password, sasl=False)

        return d.addCallback(choose)

    def welcome(self):
        self.registered = True
        self._fast = True
        name = self.user.name
        if self.nick != name and self.nick is not None:
            self.send("NICK", name, prefix=prefix_of(self.nick))
        self.nick = name
        self.factory.registered(self)
        self.write(self.factory.welcome_burst(name))  # 001 to 005 and 422, formatted once
        try:
            groups = self.chat.groups_of(name)
        except Exception:  # noqa: BLE001 - answered as a failed command (dispatch)
            groups = defer.fail()
        if isinstance(groups, defer.Deferred):
            return groups.addCallback(self._show_joined_groups).addBoth(self._ready)
        try:
            shown = self._show_joined_groups(groups)
        except Exception:  # noqa: BLE001
            shown = defer.fail()
        if shown is None:  # in no group, the usual case: ready at once, no Deferred
            self._ready(None)
            return None
        return shown.addBoth(self._ready)

    def _show_joined_groups(self, groups):
        """The joined groups' bursts and the invitations waiting: a Deferred, or None if nothing waits."""
        if not groups:
            return None
        mine = [info for info in groups if dict(info.members).get(self.nick)]
        for info in groups:
            if not dict(info.members).get(self.nick, True):
                # Invited while away: shown as the invitation it is.
                self.send("INVITE", self.nick, "#" + info.name, prefix=prefix_of(info.owner))
        if not mine:
            return None
        d = defer.succeed(None)
        for info in mine:
            d.addCallback(lambda _, info=info: self._join_burst(info))
        return d

    def _ready(self, result):
        self.ready = True
        pending, self._pending_events = self._pending_events, None
        for event in pending or ():
            self.receive(event)
        return result

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
        kind = type(event)
        handler = EVENT_HANDLERS.get(kind, False)
        if handler is False:
            handler = EVENT_HANDLERS[kind] = getattr(IRCProtocol, "event_" + kind.__name__, None)
        if handler is None:
            return
        try:
            handler(self, event)
        except Exception:  # noqa: BLE001 - never raise into the core
            log.failure("IRC rendering of {event!r} for {user}", event=event, user=self.nick)

    def disconnect(self, notice: str) -> None:
        self.user = None  # the core has ended the session
        self.close(notice)

    # Rendering

    def caps_changed(self) -> None:
        self.tag_flags = self._tag_flags()
        self._echo = C.ECHO_MESSAGE in self.caps

    def _tag_flags(self) -> int:
        caps = self.caps
        flags = 0
        if C.SERVER_TIME in caps:
            flags |= TAG_TIME
        if C.ACCOUNT_TAG in caps:
            flags |= TAG_ACCOUNT
        if C.MESSAGE_TAGS in caps:
            flags |= TAG_MSGID
        return flags

    def _message_bytes(self, message, batch: str | None = None, prefix_text: bool = False) -> bytes:
        if batch is None and not prefix_text:
            return self.factory.render_message(message, self.tag_flags)
        return render_message(message, self.tag_flags, batch, prefix_text)

    def event_Message(self, message):
        self.write(self.factory.render_message(message, self.tag_flags))

    def event_Sent(self, event):
        # What another session of this user sent: the message itself, as ergo does, with or
        # without echo-message (that cap is about this session's own sends).
        self.write(self._message_bytes(event.message))

    def event_ReadMarker(self, event):
        # Read on another session of this user (draft/read-marker): this client clears it too.
        if C.READ_MARKER in self.caps:
            self._markread_line(event.conversation, event)

    def _markread_line(self, target: str, marker) -> None:
        value = f"timestamp={server_time(marker.time)}" if marker is not None and marker.time else "*"
        self.send("MARKREAD", target, value)

    def _send_marker(self, result, target: str):
        d = self.chat.read_marker(self.user, target)
        d.addCallback(lambda marker: self._markread_line(target, marker))
        d.addErrback(lambda failure: None if T.error_code(failure.value) else failure)
        return result

    def irc_MARKREAD(self, params, tags):
        """draft/read-marker: C{MARKREAD target} asks, C{MARKREAD target timestamp=…} moves it."""
        if not params or not params[0]:
            self.send("FAIL", "MARKREAD", "NEED_MORE_PARAMS", "Missing target")
            return None
        target = params[0]
        if len(params) < 2:
            d = self.chat.read_marker(self.user, target)
        else:
            value = params[1]
            when = parse_server_time(value[len("timestamp="):]) if value.startswith("timestamp=") else None
            if when is None:
                self.send("FAIL", "MARKREAD", "INVALID_PARAMS", target, "Invalid timestamp")
                return None
            d = self.chat.mark_read(self.user, target, time=when)
        d.addCallback(lambda marker: self._markread_line(target, marker))

        def refused(failure):
            code = T.error_code(failure.value)
            if code is None:
                return failure
            self.send("FAIL", "MARKREAD", "INVALID_PARAMS", target,
                      T.error_text(code, failure.value, name=target, group=target[1:]))
            return None

        return d.addErrback(refused)

    def event_Invited(self, event):
        self.send("INVITE", self.nick, "#" + event.group, prefix=prefix_of(event.by))

    def event_MemberJoined(self, event):
        if event.username == self.nick:  # joined from another session of this user: here too
            if event.group.lower() not in self.channels:
                d = defer.maybeDeferred(self.chat.group_info, event.group)
                d.addCallback(lambda info: self._join_burst(info) if info is not None else None)
            return
        channel = self.channels.get(event.group.lower())
        if channel is None:
            return
        channel.members[event.username] = True
        self.send("JOIN", channel.channel, prefix=prefix_of(event.username))

    def event_MemberLeft(self, event):
        channel = self.channels.get(event.group.lower())
        if channel is not None and event.username == self.nick:  # left from another session
            del self.channels[event.group.lower()]
            self.send("PART", channel.channel, f"You have left the group chat {channel.name}.",
                      prefix=prefix_of(self.nick))
            return
        if channel is None or event.username == self.nick:
            return
        channel.members.pop(event.username, None)
        self.send("PART", channel.channel, f"{event.username} has left the group chat {channel.name}.",
                  prefix=prefix_of(event.username))

    def event_MessageDeleted(self, event):
        self.send("NOTICE", "#" + event.group, f"{event.by} deleted message {event.seq} in {event.group}.")

    def event_UserOnline(self, event):
        name = event.username
        if name == self.nick:
            return
        for channel in self.channels.values():
            if channel.joined(name):
                self.send("JOIN", channel.channel, prefix=prefix_of(name))

    def event_UserOffline(self, event):
        name = event.username
        if name != self.nick and any(c.joined(name) for c in self.channels.values()):
            self.send("QUIT", "Logged out", prefix=prefix_of(name))

    def event_ServerNotice(self, event):
        self.notice(event.text)

    def away_changed(self, name: str, text: str | None) -> None:
        """Another IRC user went away or came back (away-notify)."""
        if C.AWAY_NOTIFY in self.caps and any(c.joined(name) for c in self.channels.values()):
            if text:
                self.send("AWAY", text, prefix=prefix_of(name))
            else:
                self.send("AWAY", prefix=prefix_of(name))

    # Errors of the core

    def _core_error(self, failure, answers, params=(), **fields):
        """
        Answer a core failure: C{answers} maps codes to a numeric (sent with
        C{params} before the text) or to (numeric, params); other codes get a NOTICE.
        """
        code = T.error_code(failure.value)
        if code is None:
            log.failure("IRC command for {user}", failure, user=self.nick)
            self.notice(T.SERVER_ERROR)
            return
        text = T.error_text(code, failure.value, **fields)
        answer = answers.get(code)
        if isinstance(answer, tuple):
            answer, params = answer
        if answer is None:
            self.notice(text)
        else:
            self.numeric(answer, *params, text)

    # Messages

    def irc_PRIVMSG(self, params, tags):
        if not params or not params[0]:
            self.numeric(T.ERR_NORECIPIENT, "No recipient given (PRIVMSG)")
            return None
        if len(params) < 2 or not params[1]:
            self.numeric(T.ERR_NOTEXTTOSEND, "No text to send")
            return None
        text = params[1]
        if text.startswith("\x01"):
            body = text.strip("\x01")
            if not body.upper().startswith("ACTION"):
                return None  # other CTCP requests: nobody here answers them
            text = "* " + body[len("ACTION"):].strip()
        # Messages do not hold up the next line (a client may pipeline many): the core
        # answers them in order, and their errors and echoes come out in that order.
        targets = [target for target in params[0].split(",") if target]
        if len(targets) > 1:
            # Each target is a message: counted against the command rate and the turn's
            # share (one line to 99 targets is 99 messages stored and delivered).
            if self.rate is not None:
                self.rate.charge(len(targets) - 1)
            self._lines_this_turn += len(targets) - 1
        for target in targets:
            self._privmsg(target, text)
        return None

    def _privmsg(self, target: str, text: str):
        if target[0] == "#":
            d = self.chat.send_group(self.user, target[1:], text)
            if self._echo:
                d.addCallbacks(self._sent, self._group_failed, errbackArgs=(target,))
            else:
                d.addErrback(_group_send_failed, self, target)  # no bound method per message
            return d
        # No Deferred per message: the core answers the reply object (issue 25).
        self.chat.send_private(self.user, target, text, _PrivateReply(self, target))
        away = self.chat.away_of(target)
        if away:
            self.numeric(T.RPL_AWAY, target, away)
        return None

    def _group_failed(self, failure, channel):
        self._core_error(failure, GROUP_SEND_ERRORS, (channel,), group=channel[1:])

    def _private_failed(self, failure, name):
        self._core_error(failure, PRIVATE_SEND_ERRORS, (name,), name=name)

    def _sent(self, message):
        if message is not None:
            self.write(self._message_bytes(message))

    def irc_NOTICE(self, params, tags):
        if len(params) >= 2 and params[0] in ("$*", "$$*") and params[1].strip():
            # An administrator's announcement to everyone (docs/OPERATING.md: /announce).
            d = self.chat.announce_by(self.user, params[1])
            d.addErrback(self._core_error, ADMIN_ERRORS, ())
            return d
        return None  # NOTICE never gets an automatic reply; chatproto has no place for them

    def irc_TAGMSG(self, params, tags):
        return None  # client-only tags (typing notifications): nothing to relay them to

    # Channels

    def irc_JOIN(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
            return None
        d = defer.succeed(None)
        for channel in params[0].split(","):
            if channel:
                d.addCallback(lambda _, channel=channel: self._join(channel))
        return d

    def _join(self, channel: str):
        if not channel.startswith("#") or len(channel) == 1:
            self.numeric(T.ERR_NOSUCHCHANNEL, channel, "No such channel: a group is #GROUPNAME")
            return None
        group = channel[1:]
        d = defer.maybeDeferred(self.chat.join_group, self.user, group)
        d.addCallbacks(self._join_burst, self._join_failed, errbackArgs=(channel, group))
        return d

    def _join_failed(self, failure, channel, group):
        code = T.error_code(failure.value)
        if code == "no-such-group":
            d = defer.maybeDeferred(self.factory.create_group, self.user, group)
            answers = {
                "bad-group-name": (T.ERR_NOSUCHCHANNEL, (channel,)),
                "group-exists": (T.ERR_NOSUCHCHANNEL, (channel,)),
                codes.TOO_MANY_GROUPS: (T.ERR_TOOMANYCHANNELS, (channel,)),
                codes.GROUPS_TOO_FAST: (T.ERR_TOOMANYCHANNELS, (channel,)),
            }
            d.addCallbacks(self._join_burst, self._core_error, errbackArgs=(answers,),
                           errbackKeywords={"group": group})
            return d
        if code == "already-joined":
            if group.lower() in self.channels:
                return None
            d = defer.maybeDeferred(self.chat.group_info, group)
            d.addCallback(lambda info: self._join_burst(info) if info is not None else None)
            return d
        if code == "bad-group-name":
            self.numeric(T.ERR_NOSUCHCHANNEL, channel, T.error_text(code, failure.value, group=group))
            return None
        if code == "not-invited":
            self.numeric(T.ERR_INVITEONLYCHAN, channel, T.error_text(code, failure.value, group=group))
            return None
        return self._core_error(failure, {}, group=group)

    def _join_burst(self, info):
        channel = Channel(info)
        channel.members[self.nick] = True
        if self.channels is NO_CHANNELS:
            self.channels = {}
        self.channels[info.name.lower()] = channel
        self.send("JOIN", channel.channel, prefix=prefix_of(self.nick))
        self.numeric(T.RPL_TOPIC, channel.channel, topic_of(info))
        d = self._names(info)
        if C.READ_MARKER in self.caps:  # the client learns where it read up to, on any device
            d.addCallback(self._send_marker, channel.channel)
        if C.CHATHISTORY not in self.caps:
            d.addCallback(lambda _: self._playback(info))
        return d

    def _playback(self, info):
        """The last messages of a group, for clients that cannot ask for them (no chathistory)."""
        d = defer.maybeDeferred(self.chat.group_history, self.user, info.name, PLAYBACK)
        d.addCallback(self._send_history, "#" + info.name, not (self.tag_flags & TAG_TIME))
        d.addErrback(lambda f: None if T.error_code(f.value) else f)
        return d

    def _send_history(self, messages, target: str, prefix_text: bool = False):
        if not messages and C.BATCH not in self.caps:
            return
        batch = None
        if C.BATCH in self.caps:
            self._batches += 1
            batch = f"h{self._batches}"
            self.send("BATCH", "+" + batch, "chathistory", target)
        for message in messages:
            self.write(render_message(message, self.tag_flags, batch, prefix_text))
        if batch is not None:
            self.send("BATCH", "-" + batch)

    def _names(self, info) -> defer.Deferred:
        d = defer.maybeDeferred(self.chat.active_users)
        d.addCallback(self._send_names, info)
        return d

    def _send_names(self, active, info):
        active = {user.name for user in active}
        names = []
        for name, joined in info.members:
            if joined and (name in active or name == self.nick):
                names.append(("@" if info.broadcast and name == info.owner else "") + name)
        channel = "#" + info.name
        chunk, size = [], 0
        for name in names:
            if chunk and size + len(name) + 1 > 400:
                self.numeric(T.RPL_NAMREPLY, "=", channel, " ".join(chunk))
                chunk, size = [], 0
            chunk.append(name)
            size += len(name) + 1
        if chunk:
            self.numeric(T.RPL_NAMREPLY, "=", channel, " ".join(chunk))
        self.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")

    def irc_PART(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
            return None
        d = defer.succeed(None)
        for channel in params[0].split(","):
            if channel:
                d.addCallback(lambda _, channel=channel: self._part(channel))
        return d

    def _part(self, channel: str):
        group = channel[1:] if channel.startswith("#") else channel
        d = defer.maybeDeferred(self.chat.leave_group, self.user, group)
        answers = {
            "no-such-group": (T.ERR_NOSUCHCHANNEL, (channel,)),
            "not-member": (T.ERR_NOTONCHANNEL, (channel,)),
        }

        def left(info):
            known = self.channels.pop(group.lower(), None) if self.channels else None
            name = info.name if info is not None else (known.name if known else group)
            self.send("PART", "#" + name, f"You have left the group chat {name}.",
                      prefix=prefix_of(self.nick))

        d.addCallbacks(left, self._core_error, errbackArgs=(answers,), errbackKeywords={"group": group})
        return d

    def irc_INVITE(self, params, tags):
        if len(params) < 2:
            self.numeric(T.ERR_NEEDMOREPARAMS, "INVITE", "Not enough parameters")
            return None
        name, channel = params[0], params[1]
        group = channel[1:] if channel.startswith("#") else channel
        d = defer.maybeDeferred(self.chat.invite, self.user, group, name)
        answers = {
            "no-such-group": (T.ERR_NOSUCHCHANNEL, (channel,)),
            "not-member": (T.ERR_NOTONCHANNEL, (channel,)),
            "not-joined": (T.ERR_NOTONCHANNEL, (channel,)),
            "no-such-user": (T.ERR_NOSUCHNICK, (name,)),
            "not-active": (T.ERR_NOSUCHNICK, (name,)),
            "already-member": (T.ERR_USERONCHANNEL, (name, channel)),
        }

        def invited(info):
            self.numeric(T.RPL_INVITING, name, "#" + (info.name if info is not None else group))

        d.addCallbacks(invited, self._core_error, errbackArgs=(answers,),
                       errbackKeywords={"group": group, "name": name})
        return d

    def _group_or_403(self, channel: str, then):
        """
        Call C{then(info)} with the group of C{channel}, or answer 403; 442
        to a non-member, as the line protocol's C{/members} answers: a group
        shows itself (owner, kind, members) only to its members.
        """
        if not channel.startswith("#"):
            self.numeric(T.ERR_NOSUCHCHANNEL, channel, "No such channel")
            return None
        d = defer.maybeDeferred(self.chat.group_info, channel[1:])

        def found(info):
            if info is None:
                self.numeric(T.ERR_NOSUCHCHANNEL, channel, "The group chat does not exist.")
                return None
            if info.role(self.nick) is None:
                self.numeric(T.ERR_NOTONCHANNEL, channel, T.not_member_text(info.name))
                return None
            return then(info)

        return d.addCallback(found)

    def irc_NAMES(self, params, tags):
        if not params or not params[0]:
            self.numeric(T.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
            return None
        channel = params[0].split(",")[0]
        if not channel.startswith("#"):
            self.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")
            return None

        def names(info):
            # Members only (as /members): to anyone else a group has no names.
            if info is None or info.role(self.nick) is None:
                self.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")
                return None
            return self._names(info)

        d = defer.maybeDeferred(self.chat.group_info, channel[1:])
        d.addCallback(names)
        return d

    def irc_TOPIC(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
            return None
        channel = params[0]

        def topic(info):
            if len(params) > 1:
                self.numeric(T.ERR_CHANOPRIVSNEEDED, "#" + info.name, "Topics cannot be changed on chatproto")
            else:
                self.numeric(T.RPL_TOPIC, "#" + info.name, topic_of(info))

        return self._group_or_403(channel, topic)

    def irc_MODE(self, params, tags):
        if not params:
            self.numeric(T.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
            return None
        target = params[0]
        if not target.startswith("#"):
            if target != self.nick:
                self.numeric(T.ERR_USERSDONTMATCH, "Cannot change mode for other users")
            elif len(params) == 1:
                self.numeric(T.RPL_UMODEIS, "+")
            return None  # user modes: none to set, a request is simply ignored

        def mode(info):
            channel = "#" + info.name
            if len(params) == 1:
                self.numeric(T.RPL_CHANNELMODEIS, channel, modes_of(info))
            elif params[1].lstrip("+") in ("b", "e", "I") and len(params) == 2:
                end = {"b": (T.RPL_ENDOFBANLIST, "End of channel ban list"),
                       "e": ("349", "End of channel exception list"),
                       "I": ("347", "End of channel invite list")}[params[1].lstrip("+")]
                self.numeric(end[0], channel, end[1])
            else:
                self.numeric(T.ERR_CHANOPRIVSNEEDED, channel, "Channel modes cannot be changed on chatproto")

        return self._group_or_403(target, mode)

    def irc_LIST(self, params, tags):
        d = defer.maybeDeferred(self.chat.groups_of, self.nick)
        active = defer.maybeDeferred(self.chat.active_users)

        def listed(results):
            groups, users = results
            names = {user.name for user in users}
            self.numeric(T.RPL_LISTSTART, "Channel", "Users  Name")
            for info in groups:
                count = sum(1 for name, joined in info.members if joined and name in names)
                self.numeric(T.RPL_LIST, "#" + info.name, str(count), topic_of(info))
            self.numeric(T.RPL_LISTEND, "End of /LIST")

        return defer.gatherResults([d, active], consumeErrors=True).addCallback(listed)

    # Users

    def _flags(self, name: str) -> str:
        return "G" if self.factory.away_of(name) else "H"

    def irc_WHO(self, params, tags):
        mask = params[0] if params else "*"
        d = defer.maybeDeferred(self.chat.active_users)

        def who(users):
            active = {user.name for user in users}
            if mask.startswith("#"):
                return defer.maybeDeferred(self.chat.group_info, mask[1:]).addCallback(who_channel, active)
            if mask in active:
                self.numeric(T.RPL_WHOREPLY, "*", mask, HOST, SERVER_NAME, mask, self._flags(mask),
                             f"0 {mask}")
            self.numeric(T.RPL_ENDOFWHO, mask, "End of /WHO list.")
            return None

        def who_channel(info, active):
            if info is not None and info.role(self.nick) is not None:  # members only, as /members
                for name, joined in info.members:
                    if joined and name in active:
                        flags = self._flags(name) + ("@" if info.broadcast and name == info.owner else "")
                        self.numeric(T.RPL_WHOREPLY, "#" + info.name, name, HOST, SERVER_NAME, name, flags,
                                     f"0 {name}")
            self.numeric(T.RPL_ENDOFWHO, mask, "End of /WHO list.")

        return d.addCallback(who)

    def irc_WHOIS(self, params, tags):
        if not params:
            self.numeric(T.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        name = params[-1]
        active = defer.maybeDeferred(self.chat.active_users)
        accounts = defer.maybeDeferred(self.chat.account_names)
        groups = defer.maybeDeferred(self.chat.groups_of, name)

        def whois(results):
            users, names, member_of = results
            if name not in {user.name for user in users}:
                text = f"{name} is not active" if name in names else f"No such user: {name}"
                self.numeric(T.ERR_NOSUCHNICK, name, text)
                self.numeric(T.RPL_ENDOFWHOIS, name, "End of /WHOIS list.")
                return
            self.numeric(T.RPL_WHOISUSER, name, name, HOST, "*", name)
            # Only the groups the asker is in too: a group's members are its members' business.
            joined = [("@" if info.broadcast and info.owner == name else "") + "#" + info.name
                      for info in member_of if dict(info.members).get(name) and info.role(self.nick)]
            if joined:
                self.numeric(T.RPL_WHOISCHANNELS, name, " ".join(joined))
            self.numeric(T.RPL_WHOISSERVER, name, SERVER_NAME, "chatproto")
            away = self.factory.away_of(name)
            if away:
                self.numeric(T.RPL_AWAY, name, away)
            self.numeric(T.RPL_WHOISACCOUNT, name, name, "is logged in as")
            self.numeric(T.RPL_ENDOFWHOIS, name, "End of /WHOIS list.")

        return defer.gatherResults([active, accounts, groups], consumeErrors=True).addCallback(whois)

    def irc_ISON(self, params, tags):
        wanted = " ".join(params).split()

        def ison(users):
            active = {user.name for user in users}
            self.numeric(T.RPL_ISON, " ".join(name for name in wanted if name in active))

        return defer.maybeDeferred(self.chat.active_users).addCallback(ison)

    def irc_USERHOST(self, params, tags):
        wanted = " ".join(params).split()[:5]

        def userhost(users):
            active = {user.name for user in users}
            replies = [f"{n}={'-' if self.factory.away_of(n) else '+'}{n}@{HOST}"
                       for n in wanted if n in active]
            self.numeric(T.RPL_USERHOST, " ".join(replies))

        return defer.maybeDeferred(self.chat.active_users).addCallback(userhost)

    def irc_AWAY(self, params, tags):
        # The user's, for all their sessions (the core keeps it): shown to others (301,
        # away-notify), cleaned as message text is, at most AWAYLEN characters.
        text = single_line(params[0])[:AWAYLEN].strip() if params and params[0] else None
        d = self.chat.set_away(self.user, text)
        d.addCallback(self._away_numeric)
        return d

    def _away_numeric(self, text) -> None:
        if text:
            self.numeric(T.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.numeric(T.RPL_UNAWAY, "You are no longer marked as being away")

    def event_AwayChanged(self, event):
        if event.username == self.nick:  # set or cleared from another session of this user
            self._away_numeric(event.text)
        else:
            self.away_changed(event.username, event.text)

    def irc_NICK(self, params, tags):
        if params and params[0] != self.nick:
            self.numeric(T.ERR_ERRONEUSNICKNAME, params[0],
                         "Your nick is your username; it cannot be changed")

    def irc_USER(self, params, tags):
        self.numeric(T.ERR_ALREADYREGISTRED, "You may not reregister")

    irc_PASS = irc_USER

    def irc_AUTHENTICATE(self, params, tags):
        self.numeric(T.ERR_SASLALREADY, "You have already authenticated")

    def irc_MOTD(self, params, tags):
        self.numeric(T.ERR_NOMOTD, "MOTD File is missing")

    def irc_VERSION(self, params, tags):
        self.numeric("351", VERSION, SERVER_NAME, "chatproto's IRC front end")
        self.numeric(T.RPL_ISUPPORT, *self.factory.isupport, "are supported by this server")

    def irc_TIME(self, params, tags):
        self.numeric("391", SERVER_NAME, server_time(self.clock.seconds()))

    def irc_LUSERS(self, params, tags):
        def lusers(users):
            self.numeric("251", f"There are {len(users)} users and 0 invisible on 1 servers")
            self.numeric("255", f"I have {len(users)} clients and 0 servers")

        return defer.maybeDeferred(self.chat.active_users).addCallback(lusers)

    def irc_KICK(self, params, tags):
        channel = params[0] if params else "*"
        self.numeric(T.ERR_CHANOPRIVSNEEDED, channel, "Members cannot be removed from a group on chatproto")

    def irc_KILL(self, params, tags):
        """An administrator's /kick (docs/OPERATING.md): KILL NICK [REASON]."""
        if not params or not params[0]:
            self.numeric(T.ERR_NEEDMOREPARAMS, "KILL", "Not enough parameters")
            return None
        name = params[0]
        d = self.chat.kick(self.user, name, params[1] if len(params) > 1 else "")
        d.addCallbacks(lambda _: self.notice(f"{name} has been disconnected."), self._core_error,
                       errbackArgs=(ADMIN_ERRORS, (name,)))
        return d

    def irc_WHOWAS(self, params, tags):
        name = params[0] if params else "*"
        self.numeric("406", name, "There was no such nickname")
        self.numeric("369", name, "End of WHOWAS")

    # History (draft/chathistory)

    def irc_CHATHISTORY(self, params, tags):
        try:
            request = chathistory.parse(params, MAX_HISTORY)
        except chathistory.Refused as refused:
            self.send("FAIL", "CHATHISTORY", *refused.params)
            return None
        sub = params[0].upper()
        if isinstance(request, chathistory.TargetsRequest):
            d = defer.maybeDeferred(self.chat.conversations, self.user, request.after, request.before,
                                    request.limit, request.latest)
            return d.addCallbacks(self._send_targets, self._history_failed, errbackArgs=(sub, None))
        target = request.target
        if target.startswith("#"):
            d = defer.maybeDeferred(self.chat.query_group_history, self.user, target[1:], request.query)
        else:
            d = defer.maybeDeferred(self.chat.query_history, self.user, target, request.query)
        return d.addCallbacks(self._send_history, self._history_failed, callbackArgs=(target,),
                              errbackArgs=(sub, target))

    def _send_targets(self, conversations):
        batch = None
        if C.BATCH in self.caps:
            self._batches += 1
            batch = f"h{self._batches}"
            self.send("BATCH", "+" + batch, "draft/chathistory-targets")
        for conversation in conversations:
            name = "#" + conversation.name if conversation.kind == GROUP else conversation.name
            self.send("CHATHISTORY", "TARGETS", name, server_time(conversation.time),
                      tags=f"batch={batch}" if batch else "")
        if batch is not None:
            self.send("BATCH", "-" + batch)

    def _history_failed(self, failure, sub: str, target: str | None):
        code = T.error_code(failure.value)
        if code is None:
            log.failure("CHATHISTORY {sub} from {user}", failure, sub=sub, user=self.nick)
            self.send("FAIL", "CHATHISTORY", "MESSAGE_ERROR", sub, "Messages could not be retrieved")
            return None
        text = T.error_text(code, failure.value, name=target, group=(target or "")[1:])
        self.send("FAIL", "CHATHISTORY", "INVALID_TARGET", sub, target or "*", text)
        return None

    # Search (soju.im/search)

    def irc_SEARCH(self, params, tags):
        try:
            request = irc_search.parse(params)
        except chathistory.Refused as refused:
            self.send("FAIL", irc_search.COMMAND, *refused.params)
            return None
        d = defer.maybeDeferred(self.chat.search, self.user, request.text, request.in_, request.limit,
                                request.sender, request.before, request.after)
        return d.addCallbacks(self._send_found, self._search_failed, errbackArgs=(request.in_,))

    def _send_found(self, messages):
        """The results in one C{soju.im/search} batch, oldest first (as every IRC batch of
        messages), each with its server-time."""
        batch = None
        if C.BATCH in self.caps:
            self._batches += 1
            batch = f"s{self._batches}"
            self.send("BATCH", "+" + batch, C.SEARCH)
        for message in reversed(messages):
            self.write(render_message(message, self.tag_flags, batch))
        if batch is not None:
            self.send("BATCH", "-" + batch)

    def _search_failed(self, failure, target: str | None):
        code = T.error_code(failure.value)
        if code is None:
            log.failure("SEARCH from {user}", failure, user=self.nick)
            self.send("FAIL", irc_search.COMMAND, "MESSAGE_ERROR", "Messages could not be searched")
            return None
        text = T.error_text(code, failure.value, name=target, group=(target or "").removeprefix("#"))
        if code == codes.SEARCHES_WAITING:
            self.send("FAIL", irc_search.COMMAND, "TEMPORARILY_UNAVAILABLE", text)
        else:
            self.send("FAIL", irc_search.COMMAND, "INVALID_TARGET", target or "*", text)
        return None

    # Connection commands

    def pre_PING(self, params, tags):
        self.send("PONG", SERVER_NAME, params[0] if params else "")

    irc_PING = pre_PING

    def pre_PONG(self, params, tags):
        return None

    irc_PONG = pre_PONG

    def pre_QUIT(self, params, tags):
        reason = params[0] if params else ""
        self.close(f"Quit: {reason}" if reason else "Quit")

    irc_QUIT = pre_QUIT


def _group_send_failed(failure, protocol, channel):
    protocol._group_failed(failure, channel)


class _PrivateReply:
    """
    What becomes of one PRIVMSG to a user (L{ChatRealm.send_private}'s reply):
    the echo (echo-message) once it is stored, or the error numeric.
    """

    __slots__ = ("protocol", "name")

    def __init__(self, protocol, name):
        self.protocol = protocol
        self.name = name

    def answered(self, message) -> None:
        if self.protocol._echo:
            self.protocol._sent(message)

    def refused(self, error) -> None:
        self.protocol._private_failed(Failure(error), self.name)


# Dispatch by one dict lookup: command -> IRCProtocol function.
PRE_COMMANDS = {name: getattr(IRCProtocol, "pre_" + name) for name in REGISTRATION_COMMANDS}
COMMANDS = {name[4:]: getattr(IRCProtocol, name) for name in dir(IRCProtocol) if name.startswith("irc_")}


def render_message(message, flags: int, batch: str | None = None, prefix_text: bool = False) -> bytes:
    """
    A core Message as a PRIVMSG line, with the tags C{flags} asks for; a
    text too long for one line (512 bytes after the tags) as several, split
    by the wire's rule (L{split_body}); the first carries the msgid.
    """
    tags = []
    if batch is not None:
        tags.append(("batch", batch))
    if flags & TAG_TIME:
        tags.append(("time", server_time(message.time)))
    if flags & TAG_ACCOUNT:
        tags.append(("account", message.sender))
    target = "#" + message.group if message.kind == "group" else message.recipient
    text = message.text
    if "\n" in text or "\r" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    if prefix_text:
        text = f"[{message.timestamp}] {text}"
    sender = message.sender
    body = f":{sender}!{sender}@{HOST} PRIVMSG {target} :{text}".encode("utf-8", "surrogateescape")
    if flags & TAG_MSGID:
        first = "@" + format_tags(tags + [("msgid", msgid_of(message))]) + " "
    else:
        first = "@" + format_tags(tags) + " " if tags else ""
    if len(body) <= MAX_BODY:
        return first.encode("utf-8", "surrogateescape") + body + b"\r\n" if first else body + b"\r\n"
    rest = ("@" + format_tags(tags) + " " if tags else "").encode("utf-8", "surrogateescape")
    lines = [rest + part + b"\r\n" for part in split_body(body)]
    lines[0] = first.encode("utf-8", "surrogateescape") + lines[0][len(rest):]
    return b"".join(lines)


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
