"""
The client's protocol model: its connection to the server, free of any
screen, prompt or terminal.

L{ChatModel} sends command lines and keeps each in one queue until its final
C{OK} or C{ERR} (so the client's own questions, such as history, members or
names for completion, never mix with the user's), turns every other server
line into a typed event (L{chatproto.client.events}) for its user interface,
logs in, keeps the password in memory to log in again after a lost
connection, drives the L{reconnect.Reconnector}, learns user and group names
from what it sees, and wires the UDP file transfers (L{files},
L{chatproto.transfer}) to the server's C{PEER} and C{OFFER} lines.

The user interfaces (L{chatproto.client.ui}, L{chatproto.client.terminal_ui})
render the events and turn what the user types into calls of this model.
"""

import re
from collections import deque

from twisted.protocols.basic import LineReceiver

from .. import errors
from . import events, files
from .events import parse_message, parse_read, parse_sent

SHUTDOWN_NOTICE = "Server shutting down"
LOGIN_DEADLINE_NOTICE = "Disconnected: no login within"
#: The server ended this session on purpose (/logout all from another device, an administrator's
#: /kick): logging in again by itself would undo it.
ENDED_NOTICES = ("You have been logged out from another session",
                 "You have been disconnected by the administrator")
#: The login answers after which the client gives up (the account is blocked).
GIVE_UP = frozenset((errors.BLOCKED_NOW, errors.ACCOUNT_BLOCKED))

# Server lines that name users and groups, remembered for tab completion.
_NAMES_IN = [re.compile(p) for p in (
    r"^(?P<user>\S+), \S+, \d+, active since ",
    r"^\d\d \w{3} \d{4} [\d:]{8}, (?:(?P<group>[^\s,]+), )?(?P<user>[^\s,:]+): ",
    r"invited to the group chat (?P<group>\S+) by (?P<user>\S+)\.",
    r"^(?P<user>\S+) has (?:left|joined) the group chat (?P<group>\S+)\.$",
    r"room name: (?P<group>\S+), users in this room: (?P<users>.*)$",
    r"^Joined the group chat: (?P<group>\S+) successfully\.$",
)]


class ServerConnection(LineReceiver):
    """The client's end of the wire protocol: hands tagged lines to the model."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, client):
        self.client = client

    def connectionMade(self):
        self.client.connected(self)

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        tag, _, text = line.decode("utf-8", "replace").partition(" ")
        self.client.server_line(tag, text)

    def send(self, text: str) -> None:
        self.sendLine(text.encode("utf-8"))

    def connectionLost(self, reason):
        self.client.server_lost(self)


class _Request:
    """A line sent to the server, waiting for its final OK or ERR."""

    __slots__ = ("line", "on_final", "on_data")

    def __init__(self, line, on_final, on_data):
        self.line = line
        self.on_final = on_final
        self.on_data = on_data


class ChatModel:
    """
    @param udp_port: announced at login; where peers send files to us.
    @param transfers: the UDP transfer endpoint, or None when there is none.
    @param reconnector: a L{reconnect.Reconnector} to use when the connection is
        lost after login; None: a lost connection ends the client.
    @param reconnect_under_prompt: connect again, without a word, when the
        server closes the connection under a login prompt (its login deadline).
    @ivar listener: the user interface: C{event(e)} for every event, and the
        file transfers' C{transfer_*} calls (L{files.FileTransfers}).
    """

    def __init__(self, udp_port: int, transfers=None, reconnector=None, reconnect_under_prompt=False):
        self.udp_port = udp_port
        self.transfers = transfers
        self.reconnector = reconnector
        self.reconnect_under_prompt = reconnect_under_prompt
        self.listener = None
        self.server = None
        self.username = None
        self.logged_in = False
        self.offline = False
        self.peer = None  # the last PEER line's peer (files.parse_peer)
        self.users: dict[str, str] = {}  # every account: "active" or not (/users)
        self.groups: dict[str, tuple[str, str]] = {}  # one's groups: (role, kind) (/groups)
        self.seen_names: set[str] = set()
        self.seen_groups: set[str] = set()
        self._password = None
        self._closed = False
        self._told_shutdown = False
        self._ended = False  # told ENDED_NOTICES: no reconnecting
        self._at_login_prompt = False
        self._login_deadline_hit = False
        self._login_in_flight = False
        self._pending_login = None
        self._requests: deque[_Request] = deque()
        # p2p transfers: PEER and OFFER lines, /accept, /reject, --accept-files (files.py)
        self.files = files.FileTransfers(lambda text: self._emit(events.FileNote(text)),
                                         lambda: self.transfers, None)

    def listen(self, listener) -> None:
        self.listener = listener
        self.files.listener = listener

    def _emit(self, event) -> None:
        if self.listener is not None:
            self.listener.event(event)

    # Sending

    def request(self, line: str, on_final, on_data=None) -> None:
        """Send C{line}; C{on_final(ok, text)} at its OK or ERR, C{on_data(text)} for its DATA lines."""
        self._requests.append(_Request(line, on_final, on_data))
        self.server.send(line)

    def command(self, line: str, on_final, on_data=None) -> None:
        """A command the user typed (its PEER line, if any, is kept in C{peer})."""
        self.peer = None
        self.request(line, on_final, on_data)

    # Logging in

    def log_in(self, username: str, password: str, on_answer) -> None:
        """
        Send C{LOGIN}; C{on_answer(ok, text)}. Not connected (reconnecting under
        a login prompt): it goes once connected.
        """
        self.username = username
        if self.server is None:
            self._pending_login = (password, on_answer)
            return
        self._login_in_flight = True

        def answered(ok, text):
            self._login_in_flight = False
            if ok:
                self._password = password  # in memory only: for logging in again after a reconnect
                self.logged_in = True
            on_answer(ok, text)

        self.request(f"LOGIN {username} {password} {self.udp_port}", answered)

    def password_changed(self, new: str) -> None:
        """C{/changepassword} succeeded: the next login after a reconnect uses C{new}."""
        if self._password is not None:
            self._password = new

    def _relogin_answer(self, ok: bool, text: str) -> None:
        if ok:
            self.offline = False
            self.reconnector.succeeded()
            self.learn_names()
            self._emit(events.Reconnected())
        elif text == errors.ALREADY_LOGGED_IN:
            # The server has not noticed the old connection is gone yet.
            self.server.transport.loseConnection()
        else:
            self.offline = False
            self.logged_in = False
            self._password = None
            self._emit(events.ReloginRefused(text, text in GIVE_UP))

    def learn_names(self) -> None:
        """Ask the server once for every account and one's groups (completion, /chat)."""

        def user(text):
            name, _, presence = text.partition(" ")
            self.users[name] = presence

        def group(text):
            fields = text.split()
            if len(fields) == 3:
                self.groups[fields[0]] = (fields[1], fields[2])

        self.request("/users", lambda ok, text: None, user)
        self.request("/groups", lambda ok, text: None, group)

    def names(self) -> set[str]:
        """The users and groups known so far (but oneself)."""
        return (self.seen_names | set(self.users) | set(self.groups)) - {self.username}

    def _note_names(self, text: str) -> None:
        for pattern in _NAMES_IN:
            found = pattern.search(text)
            if found:
                names = found.groupdict()
                self.seen_names.update(n for n in (names.get("user"), names.get("group")) if n)
                if names.get("group"):
                    self.seen_groups.add(names["group"])
                self.seen_names.update((names.get("users") or "").split())
                return

    # The connection

    def connected(self, server) -> None:
        self.server = server
        if self.offline and self._password is not None:
            self._emit(events.LoggingInAgain())
            self.request(f"LOGIN {self.username} {self._password} {self.udp_port}", self._relogin_answer)
        elif self._at_login_prompt:
            # Connected again under a login prompt (the server's login deadline): the
            # prompt stays, and a login entered meanwhile goes now.
            self._at_login_prompt = False
            self.reconnector.succeeded()
            pending, self._pending_login = self._pending_login, None
            if pending is not None:
                self.log_in(self.username, *pending)
        else:
            self._emit(events.LoginWanted())

    def server_line(self, tag: str, text: str) -> None:
        self._note_names(text)
        if tag == "DATA":
            request = self._requests[0] if self._requests else None
            if request is not None and request.on_data is not None:
                request.on_data(text)
            else:
                self._emit(events.Reply(text))
        elif tag == "MSG":
            self._emit(events.Delivered(text, parse_message(text)))
        elif tag == "SENT":  # what this user sent from another session (device)
            self._emit(events.SentElsewhere(text, parse_sent(text, self.username)))
        elif tag == "READ":  # read on another session: no longer unread here
            self._emit(parse_read(text))
        elif tag == "NOTICE":
            if text.startswith(LOGIN_DEADLINE_NOTICE) and self.reconnect_under_prompt \
                    and self.reconnector is not None and not self.logged_in:
                self._login_deadline_hit = True  # connected again under the prompt (server_lost)
            elif text.startswith(ENDED_NOTICES):
                self._ended = True
                self._emit(events.Notice(text))
            elif text == SHUTDOWN_NOTICE:
                if not self._told_shutdown:  # once, even if the server says it twice
                    self._told_shutdown = True
                    self._emit(events.ServerShutdown(text))
            else:
                self._emit(events.Notice(text))
        elif tag == "PEER":
            self.peer = self.files.peer_line(text)
        elif tag == "OFFER":
            self.files.offer_line(text)
        elif tag in ("OK", "ERR"):
            request = self._requests.popleft() if self._requests else None
            if request is not None:
                request.on_final(tag == "OK", text)
            elif text:
                self._emit(events.Reply(text))
        else:
            self._emit(events.Unknown(tag, text))

    def server_lost(self, server=None) -> None:
        if server is not None and self.server is not None and server is not self.server:
            return  # an older connection, already replaced
        self.server = None
        self._requests.clear()
        resend, self._login_in_flight = self._login_in_flight, False
        if self._closed:
            return
        if self._ended:  # the notice said why; the client ends as with no reconnecting at all
            self._emit(events.ConnectionLost(True))
            return
        if self.reconnector is not None and not self.logged_in and self._login_deadline_hit:
            # Closed at a login prompt (the server gives a login 30 seconds): connect
            # again without a word; the user goes on typing.
            self._login_deadline_hit = False
            self._at_login_prompt = True
            self._emit(events.LoginInterrupted(resend and self._pending_login is None))
            self.reconnector.start()
            return
        if self.reconnector is not None and self.logged_in:
            first = not self.offline
            told = first and self._told_shutdown
            if first:
                self.offline = True
                self._told_shutdown = False
            self.reconnector.start()
            self._emit(events.Offline(first, told))
            return
        self._emit(events.ConnectionLost(self._told_shutdown))

    def reconnect_attempt(self, attempt: int, delay: float) -> None:
        """The reconnector scheduled its next attempt."""
        self._emit(events.Reconnecting(attempt, delay))

    # Files

    def send_file(self, peer, filename: str):
        """Send C{filename} to the C{PEER} line's peer; a Deferred, or None without transfers."""
        if self.transfers is None:
            return None
        name, ip, port, transfer_id, secret = peer
        return self.transfers.send_file(filename, self.username, (ip, port), peer_name=name,
                                        transfer_id=transfer_id, secret=secret)

    # The end

    def close(self) -> None:
        """The client ends: no reconnecting, the connection closed, the transfers stopped."""
        if self._closed:
            return
        self._closed = True
        self._password = None
        if self.reconnector is not None:
            self.reconnector.stop()
        if self.server is not None:
            self.server.transport.loseConnection()
        if self.transfers is not None:
            self.transfers.stop()
