"""
The IRC front end: one L{IRCProtocol} per connection, over the chat core.

It only translates: IRC commands become calls on the core's realm (login,
send_private, join_group, ...), the core's events become IRC lines, and the
core's error codes become numerics with the line protocol's texts
(docs/IRC.md). Channels C{#G} are the core's groups C{G}; the nick is the
account's username.

This module is the connection: on the connection layer (bounded lines, fair
per turn, output batched per turn, a slow reader dropped), IRC's lines, one
command at a time, the session the core talks to, and the factory. What a command does is in the
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

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ...core.events import PRIVATE, Message
from ...core.interfaces import ISession
from ..connection import Connection, ConnectionFactory
from ..output import DEFAULT_MAX_OUTPUT
from . import caps as C
from . import texts as T
from . import users
from .channels import NO_CHANNELS
from .commands import find as find_command
from .events import HANDLERS as EVENT_HANDLERS
from .history import MAX_HISTORY
from .rendering import SERVER_NAME, VERSION, privmsg_body, render_message, tag_flags
from .users import AWAYLEN
from .wire import MAX_BODY, MAX_LINE, MAX_REST, MAX_TAGS, BadLine, encode, format_line, parse_line

log = Logger()

REGISTRATION_TIMEOUT = 30.0
MAX_LINES_BEFORE_REGISTRATION = 64  # then the connection is closed: no client needs more

NO_CAPS = frozenset()


@implementer(ISession)
class IRCProtocol(Connection):
    """
    One IRC connection; also the core's session object for its user.

    A L{Connection} (the connection layer: framing, the share of a turn,
    rate holds, output, the slow-reader drop, the registration deadline)
    with IRC's lines, commands and words. Memory per idle client is a goal
    (docs/PERFORMANCE.md): every attribute is a slot, and what most
    connections never need is made on first use: the events held before
    registration ends, the channels; cap sets are shared between
    connections.
    """

    __slots__ = (
        "nick", "user_seen", "password", "caps", "tag_flags", "_echo", "_fast", "cap_version",
        "cap_negotiating", "sasl", "user", "registered", "ready", "channels",
        "_pending_events", "_lines_before_registration", "_closed", "_batches", "_run",
    )

    frontend = "irc"
    udp_port = 0
    wants_presence = "groups"  # JOIN/QUIT of channel members; nothing about strangers (O(n) per login)
    hostname = SERVER_NAME
    MAX_FRAME = MAX_LINE + 2  # a line, its CR and its LF
    login_deadline_notice = "Registration timed out"
    drop_notice = "too much output waiting unread"

    def __init__(self, factory, host=None, rate=None):
        super().__init__(factory, host, rate)
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
        self._pending_events = None  # a list of the events that came before registration ended
        self._lines_before_registration = 0
        self._closed = False  # closed, dropped or gone: nothing more is handled or sent
        self._batches = 0
        self._run = None  # the PRIVMSGs to users of this read not yet handed to the core (PrivateRun)

    # What the connection layer asks of a front end

    def notice_line(self, text: str) -> bytes:
        return encode(format_line("ERROR", [f"Closing link: {text}"]))

    def who(self):
        return self.nick

    def log_out(self) -> None:
        self._closed = True
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)

    def login_too_late(self) -> None:
        self.close(self.login_deadline_notice)

    def close(self, reason: str = "", wait_for_replies: bool = False) -> None:
        """Tell the client C{reason} with ERROR and close the connection; nothing is sent after it."""
        if self._closed:
            return
        Connection.close(self, reason, wait_for_replies)
        self._closed = True

    def write(self, data: bytes) -> None:
        if not self._closed:
            Connection.write(self, data)

    def send_line(self, line: str) -> None:
        self.write(encode(line))

    def send(self, command: str, *params: str, prefix: str = SERVER_NAME, tags: str = "") -> None:
        self.write(encode(format_line(command, params, prefix, tags)))

    def numeric(self, code: str, *params: str) -> None:
        self.send(code, self.nick or "*", *params)

    def notice(self, text: str) -> None:
        self.send("NOTICE", self.nick or "*", text)

    # Input: bounded lines (the connection layer cuts them and takes their
    # share of the turn and of the command rate), one command at a time

    def _count_before_registration(self) -> bool:
        """Count a line read before registration; close the connection past the budget (True then)."""
        if self.registered:
            return False
        self._lines_before_registration += 1
        if self._lines_before_registration <= MAX_LINES_BEFORE_REGISTRATION:
            return False
        self.close("Too many lines before registration")
        return True

    def frame_too_long(self) -> None:
        if not self._count_before_registration():
            if self._run is not None:
                self.frames_handled()  # the messages before this line first: its 417 comes after them
            self.numeric(T.ERR_INPUTTOOLONG, "Input line was too long")

    def frame_received(self, raw: bytes) -> None:
        if self._fast:
            if raw.startswith(b"PRIVMSG ") and len(raw) <= MAX_REST:
                # The hot path: a registered client's plain "PRIVMSG TARGET :text".
                try:
                    target, colon, text = raw[8:].decode("utf-8").partition(" :")
                except UnicodeDecodeError:
                    target = colon = ""
                if colon and text and target and " " not in target and "," not in target \
                        and not text.startswith("\x01"):
                    if target[0] != "#":
                        self.queue_private(target, text)
                        return
                    users.privmsg(self, target, text)
                    return
        elif self._count_before_registration():
            return
        if self._run is not None:
            self.frames_handled()  # the messages before this line first: its effects and words come after
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

    def queue_private(self, target: str, text: str) -> None:
        """A PRIVMSG to user C{target}: gathered with the others of this read, handed to the
        core in one call for the run (L{frames_handled})."""
        run = self._run
        if run is None:
            run = self._run = users.PrivateRun(self)
        run.messages.append((target, text))

    def frames_handled(self) -> None:
        run = self._run
        if run is None:
            return
        self._run = None
        if self.user is None:
            return  # (the core ended the session meanwhile: nothing it sent is acted on)
        try:
            self.chat.send_privates(self.user, run.messages, run)
        except Exception:  # noqa: BLE001 - logged and answered; the connection goes on
            log.failure("IRC PRIVMSG from {user}", user=self.nick)
            self.notice(T.SERVER_ERROR)

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
            self.pause("busy")
            result.addErrback(self._command_failed, command)
            result.addBoth(self._command_done)

    def _command_failed(self, failure, command):
        log.failure("IRC command {command} from {user}", failure, command=command, user=self.nick)
        if not self._closed:
            self.notice(T.SERVER_ERROR)

    def _command_done(self, _):
        self.resume("busy")

    # The core's session interface

    def receive(self, event) -> None:
        if type(event) is Message and self.ready and not self._closed:
            factory = self.factory
            line = None
            if event.kind == PRIVATE and not self.tag_flags:
                # A private message without tags: one reader, nothing to share; render_message's
                # plain case inline (issue 25), when the text is one wire line.
                text = event.text
                if "\n" not in text and "\r" not in text:
                    body = privmsg_body(event.sender, event.recipient, text)
                    if len(body) <= MAX_BODY:
                        line = body + b"\r\n"
            elif event is factory._rendered_message:
                # The hot path of a fan-out: one line rendered once for every receiver.
                line = factory._rendered.get(self.tag_flags)
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


class IRCFactory(ConnectionFactory):
    """The IRC listener's factory: shared state of every IRC connection (see L{ConnectionFactory})."""

    protocol = IRCProtocol
    frontend = IRCProtocol.frontend

    def __init__(self, chat, clock=None, max_output: int = DEFAULT_MAX_OUTPUT,
                 registration_timeout: float = REGISTRATION_TIMEOUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, max_connections: int = 0, max_connections_per_ip: int = 0):
        if clock is None:
            clock = getattr(chat, "clock", None)
        if clock is None:
            from twisted.internet import reactor as clock
        super().__init__(chat, max_output, rate_limit, rate_burst, max_connections, max_connections_per_ip,
                         clock=clock, login_deadline=registration_timeout)
        self.registration_timeout = registration_timeout
        self.sessions: dict[str, IRCProtocol] = {}  # registered users by name
        self._rendered_message = None
        self._rendered: dict[int, bytes] = {}
        self._cap_sets: dict[frozenset, frozenset] = {NO_CAPS: NO_CAPS}
        self._welcome = None  # (the ISUPPORT it was made with, the welcome burst split at the nick)
        self.isupport = [
            "CASEMAPPING=ascii", "CHANTYPES=#", "CHANMODES=b,,,m", "PREFIX=(o)@",
            f"NETWORK={SERVER_NAME}", "NICKLEN=64", "CHANNELLEN=33", "MODES=1", f"AWAYLEN={AWAYLEN}",
            f"CHATHISTORY={MAX_HISTORY}", "MSGREFTYPES=msgid,timestamp", "UTF8ONLY",
        ]

    def refusal_line(self, text: str) -> bytes:
        return encode(format_line("ERROR", [f"Closing link: {text}"]))

    def connection(self, host, rate) -> IRCProtocol:
        return self.protocol(self, host, rate)

    def forget(self, protocol) -> None:
        super().forget(protocol)
        if protocol.nick is not None and self.sessions.get(protocol.nick) is protocol:
            del self.sessions[protocol.nick]

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
        protocol.logged_in = True  # the registration deadline no longer applies

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
