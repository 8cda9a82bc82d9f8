"""
The line protocol front end (docs/PROTOCOL.md): one L{ChatLineProtocol}
per TCP connection over the shared realm.

Each command is one method, found by name: C{login_LOGIN} before login,
C{cmd_<name>} for C{/name} after it, so a user who has not logged in simply
has no chat handlers. A command's reply waits for the core's Deferred (the
change is durable then); replies leave in the order of the commands, while
deliveries (C{MSG}, C{NOTICE}) go out as they come.
"""

from collections import deque

from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from ...core.errors import ChatError, LoginFailed
from ...core.interfaces import ISession
from ..limits import CommandRate, ConnectionCaps, default_burst, over_turn
from ..output import DEFAULT_MAX_OUTPUT, BatchedOutput, OutputBatch
from . import texts
from .texts import error_text, event_line, history_line, search_line

log = Logger()

MAX_LINE = 65536
MAX_LINE_BEFORE_LOGIN = 4096  # LOGIN USERNAME PASSWORD UDP_PORT fits easily (docs/PROTOCOL.md)
MAX_LINES_BEFORE_LOGIN = 16  # then the connection is closed: nobody needs more to log in
LOGIN_DEADLINE = 30.0  # seconds a connection has to log in
LINES_PER_TURN = 64  # lines handled per connection per reactor turn, then its input waits a turn
# Replies one connection may have waiting for the core (commands pipelined ahead of their
# acknowledgements, each holding its message until the batch is committed): past it the
# input waits, unread, until they are down to half. A client that never waits for an
# answer cannot make the server hold an unbounded backlog for it (issue 25).
MAX_REPLIES_WAITING = 256
DROP_DEADLINE = 1.0  # seconds a dropped slow reader has to take its last notice
DEFAULT_HISTORY = 20
MAX_HISTORY = 500

USAGE = {
    "LOGIN": "LOGIN USERNAME PASSWORD UDP_PORT",
    "msgto": "/msgto USERNAME MESSAGE",
    "activeuser": "/activeuser",
    "creategroup": "/creategroup GROUPNAME USERNAME [USERNAME ...]",
    "joingroup": "/joingroup GROUPNAME",
    "groupmsg": "/groupmsg GROUPNAME MESSAGE",
    "p2pvideo": "/p2pvideo USERNAME FILENAME",
    "leavegroup": "/leavegroup GROUPNAME",
    "changepassword": "/changepassword CURRENT NEW",
    "deletemsg": "/deletemsg SEQ",
    "deletegroupmsg": "/deletegroupmsg GROUPNAME SEQ",
    "createbroadcast": "/createbroadcast GROUPNAME USERNAME [USERNAME ...]",
    "history": "/history USERNAME [N]",
    "grouphistory": "/grouphistory GROUPNAME [N]",
    "search": "/search [in NAME] TEXT",
    "groups": "/groups",
    "members": "/members GROUPNAME",
    "users": "/users",
    "help": "/help",
    # Several sessions (docs/PROTOCOL.md)
    "sessions": "/sessions",
    "away": "/away [MESSAGE]",
    "read": "/read NAME SEQ",
    "unread": "/unread",
    "logout": "/logout [all]",
    # Administrators only (docs/OPERATING.md)
    "kick": "/kick USERNAME [REASON]",
    "ban": "/ban USERNAME DURATION",
    "unban": "/unban USERNAME",
    "announce": "/announce MESSAGE",
}
ADMIN_COMMANDS = {"kick", "ban", "unban", "announce"}

_sent_at = ["", b""]  # the last timestamp and its reply: most messages share their second


def sent_at_line(timestamp: str) -> bytes:
    """C{OK message sent at TIMESTAMP.}, formatted once a second."""
    if _sent_at[0] is not timestamp:
        _sent_at[:] = [timestamp, f"OK message sent at {timestamp}.\n".encode()]
    return _sent_at[1]


_rendered = [None, b""]  # the last event and its line: a fan-out hands every member the same event


def rendered(event) -> bytes:
    if _rendered[0] is not event:
        line = event_line(event)
        _rendered[:] = [event, b"" if line is None else line.encode("utf-8", "surrogateescape") + b"\n"]
    return _rendered[1]


WELCOME_LINE = f"OK {texts.WELCOME}\n".encode()
GROUP_SENT_LINE = b"OK Group chat message sent.\n"
NO_OTHER_ACTIVE_USER_LINE = (texts.NO_OTHER_ACTIVE_USER_REPLY + "\n").encode()
NO_MESSAGES_LINE = (texts.NO_MESSAGES_REPLY + "\n").encode()
NO_MESSAGES_FOUND_LINE = f"OK {texts.NO_MESSAGES_FOUND}\n".encode()
OK_LINE = b"OK\n"


def line(tag: str, text: str = "") -> bytes:
    return (f"{tag} {text}\n" if text else f"{tag}\n").encode("utf-8", "surrogateescape")


# (A set per connection is 216 bytes; pauses are rare.)
NO_PAUSES = frozenset()
# While a login is recorded (about one reactor turn), or a connection waits for the next turn
# (its share of this one spent), the socket is still read, a little: a hostile client's flood
# waits in its socket, not in the server's memory. Reading stops when more than that waits
# unread, and starts again only once the unread input is handled down to it: a client that
# pipelines without pause is not stopped and restarted every turn (two epoll_ctl calls each,
# 12 % of the server's CPU under issue 25's deep pipeline).
SHORT_PAUSES = frozenset({"login", "turn", "replies"})
MAX_UNREAD_WHILE_PAUSED = 4096


class UsageError(ChatError):
    """Arguments missing or malformed: the text names the right form."""

    def __init__(self, command: str):
        super().__init__("usage", command=command)
        self.text = f"Usage: {USAGE[command]}"


def split_args(args: str, command: str, count: int) -> list[str]:
    """Exactly C{count} whitespace-separated arguments, or a usage error."""
    parts = args.split()
    if len(parts) != count:
        raise UsageError(command)
    return parts


MAX_SEQ_DIGITS = 100  # far more than any SEQ or count has


def parse_seq(text: str, command: str) -> int:
    """A record's SEQ: a positive decimal number, or a usage error."""
    # (Python refuses to convert more than 4300 digits: a longer one is no SEQ, not a server error.)
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_SEQ_DIGITS or int(text) == 0:
        raise UsageError(command)
    return int(text)


def split_message(args: str, command: str) -> tuple[str, str]:
    """C{NAME MESSAGE}: the message is the rest of the line, spaces kept."""
    parts = args.split(None, 1)
    if len(parts) != 2 or not parts[1].strip():
        raise UsageError(command)
    return parts[0], parts[1]


def name_and_count(args: str, command: str) -> tuple[str, int]:
    """C{NAME [N]}, N from 1 to 500 (default 20)."""
    parts = args.split()
    if not 1 <= len(parts) <= 2:
        raise UsageError(command)
    count = DEFAULT_HISTORY
    if len(parts) == 2:
        text = parts[1]
        if (not (text.isascii() and text.isdigit()) or len(text) > MAX_SEQ_DIGITS
                or not 1 <= int(text) <= MAX_HISTORY):
            raise UsageError(command)
        count = int(text)
    return parts[0], count


def error_line(error: ChatError, command: str) -> bytes:
    text = error.text if isinstance(error, UsageError) else error_text(error, command)
    return line("ERR", text)


class _Reply:
    """A reply's place in the order of the commands: its bytes, None until they are known."""

    __slots__ = ("data",)

    def __init__(self, data=None):
        self.data = data


class _SentReply(_Reply):
    """
    The place of a /msgto's reply, filled by the core when the message is
    durable (L{ChatRealm.send_private}'s C{reply}): no Deferred, callbacks or
    closure per message.
    """

    __slots__ = ("protocol",)

    def __init__(self, protocol):
        self.data = None
        self.protocol = protocol

    def answered(self, message) -> None:
        self.data = sent_at_line(message.timestamp)
        self.protocol._release()

    def refused(self, error) -> None:
        self.data = (error_line(error, "msgto") if isinstance(error, ChatError)
                     else line("ERR", "Server error"))
        self.protocol._release()


class _SentToAwayReply(_SentReply):
    """A /msgto's reply to an away user: C{NOTICE USERNAME is away: MESSAGE}, then the OK."""

    __slots__ = ("notice",)

    def __init__(self, protocol, notice: bytes):
        super().__init__(protocol)
        self.notice = notice

    def answered(self, message) -> None:
        self.data = self.notice + sent_at_line(message.timestamp)
        self.protocol._release()


@implementer(ISession)
class ChatLineProtocol(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE + 1  # room for the "\r" of a "\r\n" delimiter
    frontend = "line"
    wants_presence = False

    def __init__(self, chat, max_output: int = DEFAULT_MAX_OUTPUT, batch: OutputBatch = None,
                 factory=None, rate=None, host=None):
        # Every attribute is set here, in one order: instances then share
        # their attribute layout (a small fraction of a dict each).
        self.chat = chat
        self.factory = factory
        self.rate = rate  # a CommandRate when the server limits commands
        self.host = host
        self.ip = host
        self.udp_port = 0
        self.transport = None
        self.connected = 0
        self.user = None
        # Replies waiting for earlier ones: a deque of [bytes or None] while there are any (an
        # empty deque is 600 bytes, an idle connection's largest object), None when there are not.
        self._replies = None
        self._closing = False  # close once every reply is out
        self._dropped = False  # gone, or disconnected for not reading its output
        self._discarding = False  # inside an over-long line
        self._buffer = b""  # what was read and not handled yet, from _offset on
        self._offset = 0
        self._busyReceiving = False
        self.paused = False  # no line is handled
        self._transport_paused = False  # nothing is read from the socket either
        self._pauses = NO_PAUSES  # why input is not read: "login", "turn", "rate", "closing"
        self._lines_this_turn = 0
        self._bytes_this_turn = 0
        self._turn_seen = -1  # the output batch's turn count when _lines_this_turn was last reset
        self._lines_before_login = 0
        self._deadline = None  # the login deadline's IDelayedCall
        self._wakeup = None  # the IDelayedCall that resumes a paused input
        self._abort = None  # the IDelayedCall that cuts off a dropped slow reader
        if batch is None:
            batch = OutputBatch(chat.clock)
        self.output = BatchedOutput(batch, max_output, self._drop_slow_reader)

    # Connection

    def connectionMade(self):
        self.output.attach(self.transport)
        # A peer that vanished (a NAT that forgot it) is found by TCP itself.
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(True)
        if self.ip is None:
            self.ip = getattr(self.transport.getPeer(), "host", "")
        self._deadline = self.chat.clock.callLater(LOGIN_DEADLINE, self._login_too_late)

    def _login_too_late(self) -> None:
        self._deadline = None
        if self.user is None and self.connected and not self._closing:
            log.info("Closing {peer}: no login within {n:.0f} s", peer=self.host, n=LOGIN_DEADLINE)
            self._close_with_notice(texts.LOGIN_DEADLINE_NOTICE)

    def _close_with_notice(self, notice: str) -> None:
        self.output.write(line("NOTICE", notice))
        self.pause("closing")
        self._closing = True
        self._replies = None
        self._close_if_done()

    def _cancel_timers(self) -> None:
        for name in ("_deadline", "_wakeup", "_abort"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)

    def connectionLost(self, reason):
        # Every "is it still there?" check (a login or a password check that
        # ends later, a late reply) reads `connected`.
        self.connected = 0
        self._dropped = True
        self._replies = None
        self._cancel_timers()
        self.output.discard()
        self._log_out()
        if self.factory is not None:
            self.factory.forget(self)

    def _log_out(self) -> None:
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)

    # ISession

    def receive(self, event) -> None:
        if not self._dropped:
            data = rendered(event)
            if data:
                self.output.write(data)

    def disconnect(self, notice: str) -> None:
        self.user = None  # the core logs the user out
        if self.connected and not self._dropped and not self._closing:
            self.output.write(line("NOTICE", notice))
            self.pause("closing")
            self._closing = True
            self._close_if_done()

    # Replies, in the order of the commands

    def _reply(self, data: bytes) -> None:
        if self._replies:
            self._replies.append(_Reply(data))
        else:
            self.output.write(data)
            self._close_if_done()

    def ok(self, text: str = "") -> None:
        self._reply(line("OK", text))

    def err(self, text: str) -> None:
        self._reply(line("ERR", text))

    def _later(self, d, render, command: str) -> None:
        """Reply with C{render(result)} when C{d} fires, or with its error; in order."""
        slot = _Reply()
        self._queue_reply(slot)
        d.addCallbacks(self._answered, self._refused, (slot, render), None, (slot, command))

    def _queue_reply(self, slot) -> None:
        if self._replies is None:
            self._replies = deque()
        self._replies.append(slot)
        if len(self._replies) >= MAX_REPLIES_WAITING:
            self.pause("replies")  # until _release has sent half of them

    def _answered(self, result, slot, render) -> None:
        slot.data = render(result)
        self._release()

    def _refused(self, failure, slot, command) -> None:
        if failure.check(ChatError):
            slot.data = error_line(failure.value, command)
        else:
            log.failure("handling /{command} from {user}", failure, command=command, user=self.user_name)
            slot.data = line("ERR", "Server error")
        self._release()

    def _release(self) -> None:
        replies = self._replies
        if replies is None:
            return  # gone
        while replies and replies[0].data is not None:
            self.output.write(replies.popleft().data)
        if not replies and self._replies is replies:
            self._replies = None
        self._close_if_done()
        if "replies" in self._pauses and len(replies) <= MAX_REPLIES_WAITING // 2:
            self.resume("replies")

    def _close_if_done(self) -> None:
        if self._closing and not self._replies:
            self.output.close_when_sent()

    def _drop_slow_reader(self) -> None:
        log.info("Dropping {peer}: more than {limit} bytes of output unread",
                 peer=self.host, limit=self.output.max_output)
        self.chat.note("dropped", self.frontend)
        self._dropped = True
        self._replies = None
        self.pause("closing")  # nothing more it sent is read
        self._log_out()
        # The notice goes after what is already queued; a client that reads
        # nothing more for a second is cut off, queue and all.
        self.transport.write(line("NOTICE", texts.DROPPED_NOTICE))
        self.transport.loseConnection()
        self._abort = self.chat.clock.callLater(DROP_DEADLINE, self.transport.abortConnection)

    # Input

    def dataReceived(self, data: bytes) -> None:
        """
        LineReceiver's framing, in linear time however the input is cut and
        however often it pauses, and in no more memory than what was read:
        lines are cut out of the buffer one at a time, from an offset, while
        reading is not paused. An over-long line is answered once, in its
        place, and skipped up to its end; the session is kept.
        """
        if self._dropped:
            return  # gone, or dropped for not reading: nothing more it sent is acted on
        if data:
            if self._discarding:
                end = data.find(b"\n")
                if end < 0:
                    return
                self._discarding = False
                data = data[end + 1:]
            if self._offset:
                self._buffer = self._buffer[self._offset:] + data
                self._offset = 0
            else:
                self._buffer += data
            if self.paused and len(self._buffer) - self._offset > MAX_UNREAD_WHILE_PAUSED:
                self._pause_transport()  # until the short pause is over
        if self._busyReceiving:
            return  # the outer call goes on with the buffer
        self._busyReceiving = True
        try:
            while not self.paused:
                buffer, offset = self._buffer, self._offset
                end = buffer.find(b"\n", offset)
                if end < 0:
                    if len(buffer) - offset > self.max_length():
                        self._buffer, self._offset = b"", 0
                        self._discarding = True
                        self._take_turn(len(buffer) - offset)
                        if not self._count_before_login():
                            self.err("Line too long")
                    break
                self._take_turn(end - offset + 1)
                if self.paused:
                    break
                self._offset = end + 1
                if end - offset > self.max_length():
                    if not self._count_before_login():
                        self.err("Line too long")
                else:
                    self.lineReceived(buffer[offset:end])
            if self._offset and self._offset >= len(self._buffer):
                self._buffer, self._offset = b"", 0
            if self._transport_paused and self.connected:
                # The input it stopped for is handled (down to the limit), or all that is
                # left is part of a line: its rest is in the socket.
                self._read_again(not self.paused)
        finally:
            self._busyReceiving = False

    def max_length(self) -> int:
        """The longest line read: small until the user has logged in."""
        return self.MAX_LENGTH if self.user is not None else MAX_LINE_BEFORE_LOGIN + 1

    def _take_turn(self, size: int) -> None:
        """
        Before each line (of C{size} bytes): a connection gets
        C{LINES_PER_TURN} lines and C{BYTES_PER_TURN} bytes a reactor turn
        (then its input waits for the next turn, after everyone's output of
        this one), and with a command rate, a token per line (without one,
        its input waits for the next token: nothing is read, nothing answered).
        """
        turn = self.output.batch.turns
        if turn != self._turn_seen:
            self._turn_seen = turn
            self._lines_this_turn = 0
            self._bytes_this_turn = 0
        self._lines_this_turn += 1
        self._bytes_this_turn += size
        if over_turn(self._lines_this_turn, self._bytes_this_turn, LINES_PER_TURN):
            self._wait("turn", 0)
            return
        rate = self.rate
        if rate is not None:
            now = self.chat.clock.seconds()
            if not rate.allow(now):
                self._wait("rate", rate.delay(now))

    def _count_before_login(self) -> bool:
        """Count a line read before login; close the connection past the budget (return True then)."""
        if self.user is not None:
            return False
        self._lines_before_login += 1
        if self._lines_before_login <= MAX_LINES_BEFORE_LOGIN:
            return False
        log.info("Closing {peer}: {n} lines without a login", peer=self.host, n=MAX_LINES_BEFORE_LOGIN)
        self._close_with_notice(texts.TOO_MANY_LINES_NOTICE)
        return True

    def lineReceived(self, data: bytes) -> None:
        if data.endswith(b"\r"):
            data = data[:-1]
        if self.user is None and self._count_before_login():
            return
        if len(data) > MAX_LINE:
            self.err("Line too long")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.err("Invalid UTF-8")
            return
        command, _, args = text.lstrip().partition(" ")
        try:
            self.dispatch(command, args)
        except UsageError as e:
            self.err(e.text)
        except ChatError as e:
            self._reply(error_line(e, command.lstrip("/")))
        except Exception:  # noqa: BLE001 - answered and logged; the session goes on
            log.failure("handling {command!r} from {user}", command=command, user=self.user_name)
            self.err("Server error")

    @property
    def user_name(self):
        return self.user.name if self.user is not None else None

    def dispatch(self, command: str, args: str) -> None:
        if self.user is None:
            method = self.LOGIN_COMMANDS.get(command)
            if method is None:
                raise ChatError("log-in-first")
        else:
            method = self.COMMANDS.get(command)
            if method is None:
                raise ChatError("invalid-command")
            if self.user.peers is not None:
                self.user.touch()  # this session is the user's latest-used one (/p2pvideo)
        method(self, args)

    def pause(self, reason: str) -> None:
        """
        Handle no more input for C{reason}, until L{resume} of the same reason
        (several may hold). A short pause (a login being recorded) leaves the
        socket read, up to L{MAX_UNREAD_WHILE_PAUSED} bytes: stopping and
        restarting the reading costs two system calls.
        """
        self._pauses = self._pauses | {reason}
        self.paused = True
        if reason not in SHORT_PAUSES or len(self._buffer) - self._offset > MAX_UNREAD_WHILE_PAUSED:
            self._pause_transport()

    def _pause_transport(self) -> None:
        if not self._transport_paused:
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
            self.paused = False
            self.dataReceived(b"")

    def _read_again(self, needed: bool = False) -> None:
        """Read the socket again if only short pauses hold and little input waits unread
        (or C{needed}: the unread input is part of a line)."""
        if self._transport_paused and self._pauses <= SHORT_PAUSES and (
                needed or len(self._buffer) - self._offset <= MAX_UNREAD_WHILE_PAUSED):
            self._transport_paused = False
            self.transport.resumeProducing()

    def _pause_until(self, d) -> None:
        """Read nothing more until C{d} has a result (a slow password check, a login being recorded)."""
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

    def _wait(self, reason: str, seconds: float) -> None:
        """Stop reading for C{seconds} (0: until the end of this turn, once its output is out)."""
        self.pause(reason)
        if self._wakeup is None:
            self._wakeup = self.chat.clock.callLater(seconds, self._wake, reason)

    def _wake(self, reason: str) -> None:
        self._wakeup = None
        self._turn_seen = -1
        self.resume(reason)

    # Before login

    def login_LOGIN(self, args: str) -> None:
        username, password, udp_port = split_args(args, "LOGIN", 3)
        if not (udp_port.isascii() and udp_port.isdigit()) or not 0 < int(udp_port) < 65536:
            raise UsageError("LOGIN")
        self.udp_port = int(udp_port)
        d = self.chat.login(username, password, self)
        d.addCallback(self._logged_in)
        self._pause_until(d)
        self._later(d, lambda _: WELCOME_LINE, "LOGIN")

    def _logged_in(self, user):
        if not self.connected:
            self.chat.logout(user)
            raise LoginFailed("server-error")
        self.user = user
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        return user

    # After login: one method per command

    def cmd_msgto(self, args: str) -> None:
        username, message = split_message(args, "msgto")
        # No Deferred per message: the core fills the reply's place (issue 25).
        away = self.chat.away_of(username)
        if away is None:
            reply = _SentReply(self)
        else:  # delivered all the same; the sender is told why there may be no answer soon
            reply = _SentToAwayReply(self, line("NOTICE", texts.IS_AWAY.format(name=username, text=away)))
        self._queue_reply(reply)
        try:
            self.chat.send_private(self.user, username, message, reply)
        except Exception:  # noqa: BLE001 - the place is filled all the same: replies stay in order
            log.failure("handling /msgto from {user}", user=self.user_name)
            reply.refused(None)

    def cmd_activeuser(self, args: str) -> None:
        split_args(args, "activeuser", 0)
        me = self.user.name
        # Every session of every other user (docs/PROTOCOL.md, "Several sessions").
        others = [other for other in self.chat.active_sessions() if other.name != me]
        if not others:
            self._reply(NO_OTHER_ACTIVE_USER_LINE)
            return
        self._reply(b"".join(
            line("DATA", f"{o.name}, {o.ip}, {o.udp_port}, active since {o.since}.") for o in others
        ) + OK_LINE)

    def cmd_creategroup(self, args: str) -> None:
        self._create_group(args, "creategroup", broadcast=False)

    def cmd_createbroadcast(self, args: str) -> None:
        self._create_group(args, "createbroadcast", broadcast=True)

    def _create_group(self, args: str, command: str, broadcast: bool) -> None:
        parts = args.split()
        if len(parts) < 2:
            raise UsageError(command)
        kind = "Broadcast group" if broadcast else "Group chat room"

        def created(group):
            members = " ".join(name for name, _ in group.members)
            return line("OK", f"{kind} has been created, room name: {group.name}, "
                              f"users in this room: {members}")

        self._later(self.chat.create_group(self.user, parts[0], parts[1:], broadcast), created, command)

    def cmd_joingroup(self, args: str) -> None:
        (name,) = split_args(args, "joingroup", 1)
        self._later(self.chat.join_group(self.user, name),
                    lambda g: line("OK", f"Joined the group chat: {g.name} successfully."), "joingroup")

    def cmd_groupmsg(self, args: str) -> None:
        name, message = split_message(args, "groupmsg")
        self._later(self.chat.send_group(self.user, name, message), lambda _: GROUP_SENT_LINE, "groupmsg")

    def cmd_p2pvideo(self, args: str) -> None:
        username, filename = split_args(args, "p2pvideo", 2)

        def peer(p):
            return line("PEER", f"{p.username} {p.ip} {p.udp_port} {p.transfer_id} {p.secret}") + OK_LINE

        self._later(self.chat.offer_file(self.user, username, filename), peer, "p2pvideo")

    # Beyond the seed (docs/PROTOCOL.md, Extensions)

    def cmd_leavegroup(self, args: str) -> None:
        (name,) = split_args(args, "leavegroup", 1)
        self._later(self.chat.leave_group(self.user, name),
                    lambda g: line("OK", f"You have left the group chat {g.name}."), "leavegroup")

    def cmd_changepassword(self, args: str) -> None:
        parts = args.split()
        if len(parts) > 2:
            raise ChatError("password-whitespace")  # in CURRENT or NEW: either way no password
        if len(parts) != 2:
            raise UsageError("changepassword")
        current, new = parts
        d = self.chat.change_password(self.user, current, new)
        self._pause_until(d)
        self._later(d, lambda _: line("OK", texts.PASSWORD_CHANGED), "changepassword")

    def cmd_deletemsg(self, args: str) -> None:
        (seq,) = split_args(args, "deletemsg", 1)
        seq = parse_seq(seq, "deletemsg")
        self._later(self.chat.delete_message(self.user, seq),
                    lambda _: line("OK", f"Message {seq} deleted."), "deletemsg")

    def cmd_deletegroupmsg(self, args: str) -> None:
        name, seq = split_args(args, "deletegroupmsg", 2)
        seq = parse_seq(seq, "deletegroupmsg")
        self._later(self.chat.delete_group_message(self.user, name, seq),
                    lambda _: line("OK", f"Message {seq} deleted."), "deletegroupmsg")

    # History and presence (docs/PROTOCOL.md)

    def cmd_history(self, args: str) -> None:
        username, count = name_and_count(args, "history")
        self._later(self.chat.history(self.user, username, count), history_reply, "history")

    def cmd_grouphistory(self, args: str) -> None:
        name, count = name_and_count(args, "grouphistory")
        self._later(self.chat.group_history(self.user, name, count), history_reply, "grouphistory")

    # For clients: what the other replies do not say (docs/PROTOCOL.md)

    def cmd_groups(self, args: str) -> None:
        split_args(args, "groups", 0)
        me = self.user.name
        groups = self.chat.groups_of(me)
        if not groups:
            self.ok(texts.NO_GROUPS)
            return
        self._reply(b"".join(
            line("DATA", f"{g.name} {g.role(me)} {'broadcast' if g.broadcast else 'group'}") for g in groups
        ) + OK_LINE)

    def cmd_members(self, args: str) -> None:
        (name,) = split_args(args, "members", 1)
        group = self.chat.group_info(name)
        if group is None:
            raise ChatError("no-such-group", name=name)
        if group.role(self.user.name) is None:
            raise ChatError("not-member", name=group.name)
        active = self.chat.active_user
        self._reply(b"".join(
            line("DATA", f"{member} {group.role(member)} "
                         f"{'active' if active(member) is not None else 'inactive'}")
            for member, _joined in group.members
        ) + OK_LINE)

    def cmd_users(self, args: str) -> None:
        split_args(args, "users", 0)
        active = self.chat.active_user
        self._reply(b"".join(
            line("DATA", f"{name} {'active' if active(name) is not None else 'inactive'}")
            for name in self.chat.account_names()
        ) + OK_LINE)

    def cmd_search(self, args: str) -> None:
        """C{/search TEXT} or C{/search in NAME TEXT} (NAME: a user, C{#GROUP} or a group)."""
        parts = args.split(None, 2)
        if not parts:
            raise UsageError("search")
        if parts[0] == "in" and len(parts) == 3:
            d = self.chat.search(self.user, parts[2], parts[1])
        else:
            d = self.chat.search(self.user, args.strip())
        name = self.user.name
        self._later(d, lambda messages: search_reply(messages, name), "search")

    def cmd_help(self, args: str) -> None:
        split_args(args, "help", 0)
        admin = self.chat.is_admin(self.user.name)
        self._reply(b"".join(
            line("DATA", form) for command, form in USAGE.items()
            if "/" + command in self.COMMANDS and (admin or command not in ADMIN_COMMANDS)
        ) + OK_LINE)

    def cmd_sessions(self, args: str) -> None:
        split_args(args, "sessions", 0)
        me = self.user
        self._reply(b"".join(
            line("DATA", f"{n}, {getattr(one.session, 'frontend', '?')}, {one.ip}, {one.udp_port}, "
                         f"active since {one.since}{' (this one)' if one is me else ''}.")
            for n, one in enumerate(self.chat.sessions_of(me), 1)
        ) + OK_LINE)

    def cmd_away(self, args: str) -> None:
        d = self.chat.set_away(self.user, args)
        self._later(d, lambda text: line("OK", texts.AWAY_SET if text else texts.AWAY_CLEARED), "away")

    def cmd_read(self, args: str) -> None:
        name, seq = split_args(args, "read", 2)
        seq = parse_seq(seq, "read")
        self._later(self.chat.mark_read(self.user, name, seq), lambda _: OK_LINE, "read")

    def cmd_unread(self, args: str) -> None:
        split_args(args, "unread", 0)

        def listed(rows):
            if not rows:
                return line("OK", texts.NO_UNREAD)
            return b"".join(line("DATA", f"{name} {count}") for name, count in rows) + OK_LINE

        self._later(self.chat.unread(self.user), listed, "unread")

    def cmd_logout(self, args: str) -> None:
        if args.strip() not in ("", "all"):
            raise UsageError("logout")
        name = self.user.name
        if args.strip() == "all":
            user, self.user = self.user, None
            self.chat.logout_all(user)
        else:
            self._log_out()
        self.ok(f"Bye, {name}!")
        self.pause("closing")  # nothing after /logout is read
        self._closing = True
        self._close_if_done()

    # Administrators (the realm refuses everyone else: "You are not an administrator.")

    def cmd_kick(self, args: str) -> None:
        parts = args.split(None, 1)
        if not parts:
            raise UsageError("kick")
        reason = parts[1] if len(parts) == 2 else ""
        self._later(self.chat.kick(self.user, parts[0], reason),
                    lambda name: line("OK", texts.KICKED.format(name=name)), "kick")

    def cmd_ban(self, args: str) -> None:
        username, duration = split_args(args, "ban", 2)

        def banned(until):
            if until is None:
                return line("OK", texts.BANNED_FOREVER.format(name=username))
            return line("OK", texts.BANNED.format(name=username, until=until))

        self._later(self.chat.ban(self.user, username, duration), banned, "ban")

    def cmd_unban(self, args: str) -> None:
        (username,) = split_args(args, "unban", 1)
        self._later(self.chat.unban(self.user, username),
                    lambda name: line("OK", texts.UNBANNED.format(name=name)), "unban")

    def cmd_announce(self, args: str) -> None:
        if not args.strip():
            raise UsageError("announce")
        self._later(self.chat.announce_by(self.user, args),
                    lambda n: line("OK", texts.ANNOUNCED.format(n=n)), "announce")


def history_reply(messages) -> bytes:
    if not messages:
        return NO_MESSAGES_LINE
    return b"".join(line("DATA", history_line(m)) for m in messages) + OK_LINE


def search_reply(messages, username: str) -> bytes:
    if not messages:
        return NO_MESSAGES_FOUND_LINE
    return b"".join(line("DATA", search_line(m, username)) for m in messages) + OK_LINE


# The command word as typed -> its method: LOGIN -> login_LOGIN before login, /msgto ->
# cmd_msgto after it. Built once from the methods' names (one dict lookup per line).
ChatLineProtocol.LOGIN_COMMANDS = {
    name[len("login_"):]: getattr(ChatLineProtocol, name)
    for name in dir(ChatLineProtocol) if name.startswith("login_")
}
ChatLineProtocol.COMMANDS = {
    "/" + name[len("cmd_"):]: getattr(ChatLineProtocol, name)
    for name in dir(ChatLineProtocol) if name.startswith("cmd_")
}
texts.ERROR_TEXTS.setdefault("log-in-first", texts.LOG_IN_FIRST)
texts.ERROR_TEXTS.setdefault("invalid-command", texts.INVALID_COMMAND)


class ChatServerFactory(ServerFactory):
    """
    Builds one L{ChatLineProtocol} per connection over the shared realm.

    @param rate_limit: commands a second allowed per connection on average
        (0: no limit), in bursts of up to C{rate_burst}.
    @param max_connections: connections allowed at once (0: no cap).
    @param max_connections_per_ip: connections allowed at once from one
        address (0: no cap).
    """

    noisy = False

    def __init__(self, chat, max_output: int = DEFAULT_MAX_OUTPUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, max_connections: int = 0, max_connections_per_ip: int = 0):
        self.chat = chat
        self.max_output = max_output
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst or default_burst(rate_limit)
        self.caps = ConnectionCaps(max_connections, max_connections_per_ip)
        self.output = OutputBatch(chat.clock)

    @property
    def connections(self) -> dict:
        return self.caps.connections

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        refusal = self.caps.refused(host, self.chat, ChatLineProtocol.frontend,
                                    lambda text: line("ERR", text))
        if refusal is not None:
            return refusal
        rate = None
        if self.rate_limit > 0:
            rate = CommandRate(self.rate_limit, self.rate_burst, self.chat.clock.seconds())
        protocol = ChatLineProtocol(self.chat, self.max_output, self.output, self, rate, host)
        self.caps.add(protocol, host)
        return protocol

    def forget(self, protocol: ChatLineProtocol) -> None:
        self.caps.forget(protocol, protocol.host)
