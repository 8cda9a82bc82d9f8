"""
The line protocol front end (docs/PROTOCOL.md): one L{ChatLineProtocol}
per TCP connection over the shared realm.

Each command is one method, found by name: C{login_LOGIN} before login,
C{cmd_<name>} for C{/name} after it, so a user who has not logged in simply
has no chat handlers. A command's reply waits for the core's Deferred (the
change is durable then); replies leave in the order of the commands, while
deliveries (C{MSG}, C{NOTICE}) go out as they come.
"""

from twisted.logger import Logger
from zope.interface import implementer

from ...core.errors import ChatError, LoginFailed
from ...core.events import PRIVATE, Message
from ...core.interfaces import ISession
from ..connection import LINES_PER_TURN, LOGIN_DEADLINE, Connection, ConnectionFactory, ReplySlot  # noqa: F401 - tests
from . import texts
from .texts import error_text, event_line, history_line, search_line

log = Logger()

MAX_LINE = 65536
MAX_LINE_BEFORE_LOGIN = 4096  # LOGIN USERNAME PASSWORD UDP_PORT fits easily (docs/PROTOCOL.md)
MAX_LINES_BEFORE_LOGIN = 16  # then the connection is closed: nobody needs more to log in
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


class _SentRun:
    """
    The /msgto lines of one read (up to another command, a pause or the end
    of the connection's share of the turn), gathered with their reply places
    queued in command order, and handed to the core in one call
    (L{ChatRealm.send_privates}): one call, one waiter and one release of
    the replies for the run instead of one each (issue 25). The core fills
    each place when its message is durable (or refused), then says C{done}.
    """

    __slots__ = ("protocol", "messages", "slots")

    def __init__(self, protocol):
        self.protocol = protocol
        self.messages = []  # (username, text), in command order
        self.slots = []  # their ReplySlots, in the same order

    def answered(self, i, message) -> None:
        # Away is looked up now that the message is durable, not when it was sent (as the page
        # does): on a cluster node, an away set on another node just before the sender's line was
        # sent has been read from Redis by then (docs/CLUSTER.md, the sessions of one account).
        away = self.protocol.chat.away_of(message.recipient)
        if away is None:
            self.slots[i].data = sent_at_line(message.timestamp)
        else:  # delivered all the same; the sender is told why there may be no answer soon
            self.slots[i].data = (line("NOTICE", texts.IS_AWAY.format(name=message.recipient, text=away))
                                  + sent_at_line(message.timestamp))

    def refused(self, i, error) -> None:
        self.slots[i].data = (error_line(error, "msgto") if isinstance(error, ChatError)
                              else line("ERR", "Server error"))

    def done(self) -> None:
        self.protocol.release()


@implementer(ISession)
class ChatLineProtocol(Connection):
    """
    One line-protocol connection: the connection layer (framing, the share
    of a turn, output, reply order, the login deadline) with the line
    protocol's commands and texts.
    """

    __slots__ = ("user", "udp_port", "_lines_before_login", "_run")

    MAX_LENGTH = MAX_LINE + 1  # room for the "\r" of a "\r\n" delimiter
    frontend = "line"
    wants_presence = False
    login_deadline_notice = texts.LOGIN_DEADLINE_NOTICE
    drop_notice = texts.DROPPED_NOTICE

    def __init__(self, factory, host=None, rate=None):
        super().__init__(factory, host, rate)
        self.udp_port = 0
        self.user = None
        self._lines_before_login = 0
        self._run = None  # the /msgto lines of this read not yet handed to the core (_SentRun)

    # The longest line read, with its newline: small until the user has logged in.
    MAX_FRAME = MAX_LINE_BEFORE_LOGIN + 2

    # What the connection layer asks of a front end

    def notice_line(self, text: str) -> bytes:
        return line("NOTICE", text)

    def log_out(self) -> None:
        if self.user is not None:
            user, self.user = self.user, None
            self.chat.logout(user)

    def render_failure(self, failure, command: str) -> bytes:
        if failure.check(ChatError):
            return error_line(failure.value, command)
        log.failure("handling /{command} from {user}", failure, command=command, user=self.user_name)
        return line("ERR", "Server error")

    def frame_too_long(self) -> None:
        if not self._count_before_login():
            self.err("Line too long")

    # ISession

    def receive(self, event) -> None:
        if not self._dropped:
            if type(event) is Message and event.kind == PRIVATE:  # one reader: nothing to share
                data = f"MSG {event.timestamp}, {event.sender}: {event.text}\n".encode("utf-8", "surrogateescape")
            else:
                data = rendered(event)
                if not data:
                    return
            self.write(data)

    def disconnect(self, notice: str) -> None:
        self.user = None  # the core logs the user out
        self.close(notice)

    # Replies, in the order of the commands

    def ok(self, text: str = "") -> None:
        self.reply(line("OK", text))

    def err(self, text: str) -> None:
        self.reply(line("ERR", text))

    # Input

    def _count_before_login(self) -> bool:
        """Count a line read before login; close the connection past the budget (return True then)."""
        if self.user is not None:
            return False
        self._lines_before_login += 1
        if self._lines_before_login <= MAX_LINES_BEFORE_LOGIN:
            return False
        log.info("Closing {peer}: {n} lines without a login", peer=self.host, n=MAX_LINES_BEFORE_LOGIN)
        self.close(texts.TOO_MANY_LINES_NOTICE, wait_for_replies=False)
        return True

    def frame_received(self, data: bytes) -> None:
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
        if command == "/msgto" and self.user is not None:
            # The hot path, inline (issue 25): what dispatch and cmd_msgto do for it.
            parts = args.split(None, 1)
            if len(parts) == 2:  # (split leaves no blank rest)
                if self.user.peers is not None:
                    self.user.touch()
                self._queue_private(parts[0], parts[1])
                return
        try:
            self.dispatch(command, args)
        except UsageError as e:
            self.err(e.text)
        except ChatError as e:
            self.reply(error_line(e, command.lstrip("/")))
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
            if self._run is not None and method is not ChatLineProtocol.cmd_msgto:
                self.frames_handled()  # the messages before it first: what it does comes after them
            if self.user.peers is not None:
                self.user.touch()  # this session is the user's latest-used one (/p2pvideo)
        method(self, args)

    # Before login

    def login_LOGIN(self, args: str) -> None:
        username, password, udp_port = split_args(args, "LOGIN", 3)
        if not (udp_port.isascii() and udp_port.isdigit()) or not 0 < int(udp_port) < 65536:
            raise UsageError("LOGIN")
        self.udp_port = int(udp_port)
        d = self.chat.login(username, password, self)
        d.addCallback(self._logged_in)
        self.pause_until(d)
        self.later(d, self._welcome, "LOGIN")

    def _welcome(self, user) -> bytes:
        # A session that logs in while its user is away starts away, and is told so as the user's
        # other sessions were when it was set (docs/PROTOCOL.md, "Away").
        away = self.chat.away_of(user.name)
        if away is None:
            return WELCOME_LINE
        return WELCOME_LINE + (texts.away_notice(away) + "\n").encode("utf-8", "surrogateescape")

    def _logged_in(self, user):
        if not self.connected:
            self.chat.logout(user)
            raise LoginFailed("server-error")
        self.user = user
        self.logged_in = True  # the login deadline no longer applies
        self.max_frame = self.MAX_LENGTH + 1
        return user

    # After login: one method per command

    def cmd_msgto(self, args: str) -> None:
        self._queue_private(*split_message(args, "msgto"))

    def _queue_private(self, username: str, message: str) -> None:
        # Its reply's place now, in command order; the message goes to the core with the
        # others of this read (frames_handled), one call for the run (issue 25).
        slot = ReplySlot()
        self.queue_slot(slot)
        run = self._run
        if run is None:
            run = self._run = _SentRun(self)
        run.messages.append((username, message))
        run.slots.append(slot)

    def frames_handled(self) -> None:
        run = self._run
        if run is None:
            return
        self._run = None
        try:
            self.chat.send_privates(self.user, run.messages, run)
        except Exception:  # noqa: BLE001 - every place is filled all the same: replies stay in order
            log.failure("handling /msgto from {user}", user=self.user_name)
            for slot in run.slots:
                if slot.data is None:
                    slot.data = line("ERR", "Server error")
            self.release()

    def cmd_activeuser(self, args: str) -> None:
        split_args(args, "activeuser", 0)
        me = self.user.name
        # Every session of every other user (docs/PROTOCOL.md, "Several sessions").
        others = [other for other in self.chat.active_sessions() if other.name != me]
        if not others:
            self.reply(NO_OTHER_ACTIVE_USER_LINE)
            return
        self.reply(b"".join(
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

        self.later(self.chat.create_group(self.user, parts[0], parts[1:], broadcast), created, command)

    def cmd_joingroup(self, args: str) -> None:
        (name,) = split_args(args, "joingroup", 1)
        self.later(self.chat.join_group(self.user, name),
                    lambda g: line("OK", f"Joined the group chat: {g.name} successfully."), "joingroup")

    def cmd_groupmsg(self, args: str) -> None:
        name, message = split_message(args, "groupmsg")
        self.later(self.chat.send_group(self.user, name, message), lambda _: GROUP_SENT_LINE, "groupmsg")

    def cmd_p2pvideo(self, args: str) -> None:
        username, filename = split_args(args, "p2pvideo", 2)

        def peer(p):
            return line("PEER", f"{p.username} {p.ip} {p.udp_port} {p.transfer_id} {p.secret}") + OK_LINE

        self.later(self.chat.offer_file(self.user, username, filename), peer, "p2pvideo")

    # Beyond the seed (docs/PROTOCOL.md, Extensions)

    def cmd_leavegroup(self, args: str) -> None:
        (name,) = split_args(args, "leavegroup", 1)
        self.later(self.chat.leave_group(self.user, name),
                    lambda g: line("OK", f"You have left the group chat {g.name}."), "leavegroup")

    def cmd_changepassword(self, args: str) -> None:
        parts = args.split()
        if len(parts) > 2:
            raise ChatError("password-whitespace")  # in CURRENT or NEW: either way no password
        if len(parts) != 2:
            raise UsageError("changepassword")
        current, new = parts
        d = self.chat.change_password(self.user, current, new)
        self.pause_until(d)
        self.later(d, lambda _: line("OK", texts.PASSWORD_CHANGED), "changepassword")

    def cmd_deletemsg(self, args: str) -> None:
        (seq,) = split_args(args, "deletemsg", 1)
        seq = parse_seq(seq, "deletemsg")
        self.later(self.chat.delete_message(self.user, seq),
                    lambda _: line("OK", f"Message {seq} deleted."), "deletemsg")

    def cmd_deletegroupmsg(self, args: str) -> None:
        name, seq = split_args(args, "deletegroupmsg", 2)
        seq = parse_seq(seq, "deletegroupmsg")
        self.later(self.chat.delete_group_message(self.user, name, seq),
                    lambda _: line("OK", f"Message {seq} deleted."), "deletegroupmsg")

    # History and presence (docs/PROTOCOL.md)

    def cmd_history(self, args: str) -> None:
        username, count = name_and_count(args, "history")
        self.later(self.chat.history(self.user, username, count), history_reply, "history")

    def cmd_grouphistory(self, args: str) -> None:
        name, count = name_and_count(args, "grouphistory")
        self.later(self.chat.group_history(self.user, name, count), history_reply, "grouphistory")

    # For clients: what the other replies do not say (docs/PROTOCOL.md)

    def cmd_groups(self, args: str) -> None:
        split_args(args, "groups", 0)
        me = self.user.name
        groups = self.chat.groups_of(me)
        if not groups:
            self.ok(texts.NO_GROUPS)
            return
        self.reply(b"".join(
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
        self.reply(b"".join(
            line("DATA", f"{member} {group.role(member)} "
                         f"{'active' if active(member) is not None else 'inactive'}")
            for member, _joined in group.members
        ) + OK_LINE)

    def cmd_users(self, args: str) -> None:
        split_args(args, "users", 0)
        active = self.chat.active_user
        self.reply(b"".join(
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
        self.later(d, lambda messages: search_reply(messages, name), "search")

    def cmd_help(self, args: str) -> None:
        split_args(args, "help", 0)
        admin = self.chat.is_admin(self.user.name)
        self.reply(b"".join(
            line("DATA", form) for command, form in USAGE.items()
            if "/" + command in self.COMMANDS and (admin or command not in ADMIN_COMMANDS)
        ) + OK_LINE)

    def cmd_sessions(self, args: str) -> None:
        split_args(args, "sessions", 0)
        me = self.user
        self.reply(b"".join(
            line("DATA", f"{n}, {getattr(one.session, 'frontend', '?')}, {one.ip}, {one.udp_port}, "
                         f"active since {one.since}{' (this one)' if one is me else ''}.")
            for n, one in enumerate(self.chat.sessions_of(me), 1)
        ) + OK_LINE)

    def cmd_away(self, args: str) -> None:
        d = self.chat.set_away(self.user, args)
        self.later(d, lambda text: line("OK", texts.AWAY_SET if text else texts.AWAY_CLEARED), "away")

    def cmd_read(self, args: str) -> None:
        name, seq = split_args(args, "read", 2)
        seq = parse_seq(seq, "read")
        self.later(self.chat.mark_read(self.user, name, seq), lambda _: OK_LINE, "read")

    def cmd_unread(self, args: str) -> None:
        split_args(args, "unread", 0)

        def listed(rows):
            if not rows:
                return line("OK", texts.NO_UNREAD)
            return b"".join(line("DATA", f"{name} {count}") for name, count in rows) + OK_LINE

        self.later(self.chat.unread(self.user), listed, "unread")

    def cmd_logout(self, args: str) -> None:
        if args.strip() not in ("", "all"):
            raise UsageError("logout")
        name = self.user.name
        if args.strip() == "all":
            user, self.user = self.user, None
            self.chat.logout_all(user)
        else:
            self.log_out()
        self.ok(f"Bye, {name}!")
        self.close()  # nothing after /logout is read

    # Administrators (the realm refuses everyone else: "You are not an administrator.")

    def cmd_kick(self, args: str) -> None:
        parts = args.split(None, 1)
        if not parts:
            raise UsageError("kick")
        reason = parts[1] if len(parts) == 2 else ""
        self.later(self.chat.kick(self.user, parts[0], reason),
                    lambda name: line("OK", texts.KICKED.format(name=name)), "kick")

    def cmd_ban(self, args: str) -> None:
        username, duration = split_args(args, "ban", 2)

        def banned(until):
            if until is None:
                return line("OK", texts.BANNED_FOREVER.format(name=username))
            return line("OK", texts.BANNED.format(name=username, until=until))

        self.later(self.chat.ban(self.user, username, duration), banned, "ban")

    def cmd_unban(self, args: str) -> None:
        (username,) = split_args(args, "unban", 1)
        self.later(self.chat.unban(self.user, username),
                    lambda name: line("OK", texts.UNBANNED.format(name=name)), "unban")

    def cmd_announce(self, args: str) -> None:
        if not args.strip():
            raise UsageError("announce")
        self.later(self.chat.announce_by(self.user, args),
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


class ChatServerFactory(ConnectionFactory):
    """Builds one L{ChatLineProtocol} per connection over the shared realm (see L{ConnectionFactory})."""

    frontend = ChatLineProtocol.frontend

    def refusal_line(self, text: str) -> bytes:
        return line("ERR", text)

    def connection(self, host, rate) -> ChatLineProtocol:
        return ChatLineProtocol(self, host, rate)
