"""
C{python -m chatproto.client [SERVER_IP [SERVER_PORT [UDP_PORT]]]}: the
terminal client.

L{ChatClient} is the client's logic, free of any terminal or socket: it
reacts to lines the user entered and to lines from the server, and shows
one prompt only when the server has answered the last command with its
final C{OK} or C{ERR} (so the prompt is never printed twice, and nothing
waits on a sleep). Every line sent to the server waits in a queue for its
final reply, so the client can ask the server things of its own (history,
members, names for completion) without mixing their answers up.

With a plain console (stdin not a terminal) it prints the fixed lines
scripts rely on (docs/CLIENT.md).
With a terminal console (C{console.rich}) it adds conversations
(L{conversations}), readable messages (L{render}), a status line and
reconnecting (L{reconnect}).
"""

import os
import re
import sys
from collections import deque

from twisted.internet import defer, protocol
from twisted.protocols.basic import LineReceiver

from .. import errors
from . import files
from .commands import COMMAND_LIST, COMMAND_PROMPT, COMMANDS, TERMINAL_COMMANDS
from .conversations import Conversations
from .conversing import HISTORY_ON_OPEN, INVALID_COMMAND, NO_CONVERSATION, ConversationCommands
from .render import Renderer, parse_message, parse_sent

__all__ = ["COMMANDS", "COMMAND_PROMPT", "CONNECTION_LOST", "HISTORY_ON_OPEN", "INVALID_COMMAND",
           "NO_CONVERSATION", "ChatClient", "ServerConnection", "main"]

USAGE = ("Usage: python -m chatproto.client [--p2p-timeout SECONDS] [--no-reconnect | --reconnect] [--version]"
         " [--accept-files all|ask|none]"
         " [SERVER_IP [SERVER_PORT [UDP_PORT]]]")
DEFAULT_SERVER = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_UDP_PORT = 0
DEFAULT_P2P_TIMEOUT = 10.0
#: How many messages a reconnect looks back in each open conversation.
HISTORY_ON_RESUME = 100
CONNECTION_LOST = "Connection to the server was lost."
RECONNECTING = "Connection to the server was lost. Reconnecting (/quit or Ctrl-C leaves)..."
WAITING_FOR_SERVER = "Waiting for the server to come back (/quit or Ctrl-C leaves)..."
RECONNECTED = "Reconnected to the server."
OFFLINE = "Not connected to the server: reconnecting (/quit or Ctrl-C leaves)."
SHUTDOWN_NOTICE = "Server shutting down"
LOGIN_DEADLINE_NOTICE = "Disconnected: no login within"
# Server lines that name users and groups, remembered for tab completion.
_NAMES_IN = [re.compile(p) for p in (
    r"^(?P<user>\S+), \S+, \d+, active since ",
    r"^\d\d \w{3} \d{4} [\d:]{8}, (?:(?P<group>[^\s,]+), )?(?P<user>[^\s,:]+): ",
    r"invited to the group chat (?P<group>\S+) by (?P<user>\S+)\.",
    r"^(?P<user>\S+) has (?:left|joined) the group chat (?P<group>\S+)\.$",
    r"room name: (?P<group>\S+), users in this room: (?P<users>.*)$",
    r"^Joined the group chat: (?P<group>\S+) successfully\.$",
)]
_GROUP_NOTICE = re.compile(
    r"^(?P<user>\S+) (?:has (?P<what>left|joined) the group chat (?P<group>\S+)"
    r"|deleted message \d+ in (?P<group2>\S+))\.$")
_NEW_GROUP = re.compile(r"^(?:Joined the group chat: (?P<group>\S+) successfully\."
                        r"|(?:Group chat room|Broadcast group) has been created, "
                        r"room name: (?P<group2>\S+),)")

# What to ask next after a refused login.
_ASK_USERNAME = {errors.INVALID_USERNAME, errors.ALREADY_LOGGED_IN}
_ASK_PASSWORD = {errors.INVALID_PASSWORD}
_GIVE_UP = {errors.BLOCKED_NOW, errors.ACCOUNT_BLOCKED}


class ServerConnection(LineReceiver):
    """The client's end of the wire protocol: hands tagged lines to the client."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, client: "ChatClient"):
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


class ChatClient(ConversationCommands):
    """
    @param console: where the user reads and types (see L{chatproto.client.console}).
    @param udp_port: announced at login; where peers send files to us.
    @param transfers: the UDP transfer endpoint, or None when there is none.
    @param on_exit: called once with the exit status.
    @param clock: the time of one's own group messages (the reactor by default).
    @param reconnector: a L{reconnect.Reconnector} to use when the connection is
        lost after login; None: the client exits 1 (pipe mode, docs/CLIENT.md).
    @param username: from the configuration file: asked no more on a terminal.
    @param colours: False for no colours on a terminal.
    """

    def __init__(self, console, udp_port: int, on_exit, transfers=None, file_exists=None,
                 clock=None, reconnector=None, username=None, colours=True):
        self.console = console
        self.udp_port = udp_port
        self.on_exit = on_exit
        self.transfers = transfers
        self.file_exists = file_exists or _readable_file
        self.rich = bool(getattr(console, "rich", False))
        self.clock = clock
        self.reconnector = reconnector
        self.server = None
        self.username = None
        self._preset_username = username if self.rich else None
        self._password = None
        self._new_password = None
        self._state = "connecting"
        self._peer = None
        self._pending_file = None
        self._exiting = False
        self._told_shutdown = False
        self._logged_in = False
        self._offline = False
        self._at_login_prompt = False
        self._login_deadline_hit = False
        self._pending_login = None
        self._requests: deque[_Request] = deque()
        self._seen_names: set[str] = set()
        self._seen_groups: set[str] = set()
        self._users: dict[str, str] = {}
        self._groups: dict[str, tuple[str, str]] = {}
        self.renderer = Renderer(colours)
        self.conversations = Conversations(self.renderer)
        # p2p transfers: PEER and OFFER lines, /accept, /reject, --accept-files (files.py)
        self.files = files.FileTransfers(lambda text: self._show_everywhere(text, notice=False),
                                         lambda: self.transfers, self)
        console.attach(self)

    # Talking to the server

    def _request(self, line: str, on_final, on_data=None) -> None:
        self._requests.append(_Request(line, on_final, on_data))
        self.server.send(line)

    def connected(self, server) -> None:
        self.server = server
        if self._offline and self._password is not None:
            self._set_status()
            self._request(f"LOGIN {self.username} {self._password} {self.udp_port}", self._relogin_answer)
        elif self._at_login_prompt:
            # Connected again under a login prompt (the server's login deadline): the
            # prompt stays, and a login entered meanwhile goes now.
            self._at_login_prompt = False
            self.reconnector.succeeded()
            pending, self._pending_login = self._pending_login, None
            if pending is not None:
                self._send_login(pending)
        else:
            self._ask_username()

    def server_line(self, tag: str, text: str) -> None:
        self._note_names(text)
        if tag == "DATA":
            request = self._requests[0] if self._requests else None
            if request is not None and request.on_data is not None:
                request.on_data(text)
            else:
                self._reply(text)
        elif tag == "MSG":
            self._message(text)
        elif tag == "SENT":  # what this user sent from another session (device)
            self._sent_elsewhere(text)
        elif tag == "READ":  # read on another session: no longer unread here
            self._read_elsewhere(text)
        elif tag == "NOTICE":
            if text.startswith(LOGIN_DEADLINE_NOTICE) and self.rich and self.reconnector is not None \
                    and not self._logged_in:
                self._login_deadline_hit = True  # connected again under the prompt (server_lost)
            elif text == SHUTDOWN_NOTICE:
                if not self._told_shutdown:  # once, even if the server says it twice
                    self._told_shutdown = True
                    self._connection_notice(text)
            else:
                self._notice(text)
        elif tag == "PEER":
            self._peer = self.files.peer_line(text)
        elif tag == "OFFER":
            self.files.offer_line(text)
        elif tag in ("OK", "ERR"):
            request = self._requests.popleft() if self._requests else None
            if request is not None:
                request.on_final(tag == "OK", text)
            elif text:
                self._reply(text)
        else:
            self.console.show(f"{tag} {text}".strip())

    def _note_names(self, text: str) -> None:
        for pattern in _NAMES_IN:
            found = pattern.search(text)
            if found:
                names = found.groupdict()
                self._seen_names.update(n for n in (names.get("user"), names.get("group")) if n)
                if names.get("group"):
                    self._seen_groups.add(names["group"])
                self._seen_names.update((names.get("users") or "").split())
                return

    def completion_candidates(self) -> list[str]:
        """For tab completion: the commands, then the users and groups known so far."""
        commands = TERMINAL_COMMANDS if self.rich else COMMANDS
        names = self._seen_names | set(self._users) | set(self._groups)
        return commands + sorted(names - {self.username})

    def server_lost(self, server=None) -> None:
        if server is not None and self.server is not None and server is not self.server:
            return  # an older connection, already replaced
        self.server = None
        self._requests.clear()
        if self._exiting:
            return
        if self.reconnector is not None and not self._logged_in and self._login_deadline_hit:
            # Closed at a login prompt (the server gives a login 30 seconds): connect
            # again without a word; the user goes on typing.
            self._login_deadline_hit = False
            if self._state == "logging_in" and self._pending_login is None:
                self._state = "password"  # the LOGIN sent has no answer: ask again
                self.console.prompt("Password: ", secret=True)
            self._at_login_prompt = True
            self.reconnector.start()
            return
        if self.reconnector is not None and self._logged_in:
            if not self._offline:
                self._offline = True
                self._connection_notice(WAITING_FOR_SERVER if self._told_shutdown else RECONNECTING)
                self._told_shutdown = False
                if self._state in ("waiting", "logging_in"):
                    self._ask_command()
            self.reconnector.start()
            self._set_status()
            return
        if not self._told_shutdown:  # one line says the server went away
            self.console.show(CONNECTION_LOST)
        self.exit(1)

    def reconnect_attempt(self, attempt: int, delay: float) -> None:
        """The reconnector scheduled its next attempt."""
        self._set_status(f"offline: try {attempt} in {delay:g} s")

    # What the user sees

    def _show(self, lines) -> None:
        for line in lines:
            self.console.show(line)

    def _reply(self, text: str, window=None) -> None:
        """A reply to a command (or a line without a command)."""
        if self.rich:
            self._show(self.conversations.add_line(self.renderer.info(text), window))
        else:
            self.console.show(text)

    def _connection_notice(self, text: str) -> None:
        if self.rich:
            self._show(self.conversations.add_to_every_window(self.renderer.notice(text)))
        else:
            self.console.show(text)

    def _show_everywhere(self, text: str, notice: bool = True) -> None:
        if self.rich:
            line = self.renderer.notice(text) if notice else self.renderer.info(text)
            self._show(self.conversations.add_line(line, everywhere=True))
        else:
            self.console.show(text)

    def _set_status(self, connection: str | None = None) -> None:
        status = getattr(self.console, "status", None)
        if status is None or not self.rich:
            return
        if connection is None and self._offline:
            connection = "offline: reconnecting"
        if self._state in ("connecting", "username", "password", "logging_in") and not self._logged_in:
            status(None)
            return
        status(self.conversations.status_text(self.username, connection))

    def _message(self, text: str) -> None:
        if not self.rich:
            self.console.show(text)
            return
        msg = parse_message(text)
        if msg is None:
            self._reply(text)
            return
        if msg.group is not None:
            window = self.conversations.open(msg.group, "group")
        else:
            window = self.conversations.open(msg.sender, "user")
        self._show(self.conversations.add_message(window, msg))
        self._set_status()

    def _sent_elsewhere(self, text: str) -> None:
        msg = parse_sent(text, self.username) if self.rich else None
        if msg is None:
            self.console.show(f"SENT {text}")
            return
        window = (self.conversations.open(msg.group, "group") if msg.group is not None
                  else self.conversations.open(msg.peer, "user"))
        self._show(self.conversations.add_message(window, msg, count=False))
        self._set_status()

    def _read_elsewhere(self, text: str) -> None:
        if not self.rich:
            return  # nothing to clear in a plain transcript
        name = text.rsplit(" ", 1)[0]
        window = (self.conversations.find(name[1:], "group") if name.startswith("#")
                  else self.conversations.find(name, "user"))
        if window is not None and window.unread:
            window.unread = 0
            self._set_status()

    def _show_unread(self) -> None:
        """At login: what was missed since the last read, on any device (C{unread: Hans(2)})."""
        rows = []

        def listed(ok, text):
            if not ok or not rows:
                return
            self._reply("unread: " + " ".join(f"{name}({count})" for name, count in rows))
            for name, count in rows:
                window = (self.conversations.open(name[1:], "group") if name.startswith("#")
                          else self.conversations.open(name, "user"))
                window.unread = count
            self._set_status()

        def row(text):
            name, _, count = text.rpartition(" ")
            if count.isdigit():
                rows.append((name, int(count)))

        self._request("/unread", listed, row)

    def _notice(self, text: str) -> None:
        if not self.rich:
            self.console.show(text)
            return
        found = _GROUP_NOTICE.match(text)
        window = None
        if found is not None:
            window = self.conversations.find(found["group"] or found["group2"], "group")
        if window is not None:
            self._show(self.conversations.add_line(self.renderer.notice(text), window))
        else:
            self._show_everywhere(text)

    # From the console

    def line_entered(self, text: str) -> None:
        handler = getattr(self, "_entered_" + self._state, None)
        if handler is not None:
            handler(text)

    def input_ended(self) -> None:
        """End of input at a prompt: close the client (the server logs us out)."""
        self.exit(0)

    def echo_for(self, prompt: str, line: str) -> str | None:
        """What the terminal keeps on screen for an entered line (None: nothing)."""
        if self.rich and self._state == "command" and line.strip() and not line.startswith("/") \
                and self.conversations.current.name is not None and not self._offline:
            return None  # shown as sent once the server has it
        if self.rich:
            self.conversations.current.append(prompt + line)  # there again after a switch
        return prompt + line

    def switch_window(self, number: int) -> None:
        """Alt-1..9, /win N."""
        window = self.conversations.by_number(number)
        if window is None:
            self._reply(f"No window {number} (1-{len(self.conversations.windows)}).")
            return
        self._switch(window)

    def _switch(self, window) -> None:
        lines = self.conversations.switch(window)
        set_window = getattr(self.console, "set_window", None)
        if set_window is not None:
            set_window(lines)
        else:
            self._show(lines)
        self._set_status()
        if self._state == "command":
            self._ask_command()

    # Login

    def _ask_username(self) -> None:
        self._state = "username"
        self._set_status()
        if self._preset_username:
            username, self._preset_username = self._preset_username, None
            self.console.show(f"Username: {username}")
            self._entered_username(username)
            return
        self.console.prompt("Username: ")

    def _ask_password(self) -> None:
        self._state = "password"
        self.console.prompt("Password: ", secret=True)

    def _entered_username(self, text: str) -> None:
        username = text.strip()
        if not username or any(c.isspace() for c in username):
            self.console.show(errors.INVALID_USERNAME)
            self._ask_username()
            return
        self.username = username
        self._ask_password()

    def _entered_password(self, text: str) -> None:
        password = text.strip("\r\n")
        if not password or any(c.isspace() for c in password):
            # No account can have it (passwords hold no whitespace).
            self.console.show(errors.INVALID_PASSWORD)
            self._ask_password()
            return
        self._state = "logging_in"
        if self.server is None:  # reconnecting under the prompt: sent once connected
            self._pending_login = password
            return
        self._send_login(password)

    def _send_login(self, password: str) -> None:
        self._request(f"LOGIN {self.username} {password} {self.udp_port}",
                      lambda ok, text: self._login_answer(ok, text, password))

    def _login_answer(self, ok: bool, text: str, password: str) -> None:
        if self.rich:
            self.conversations.all.append(self.renderer.info(text))
        self.console.show(text)
        if ok:
            self._password = password  # in memory only: for logging in again after a reconnect
            self._logged_in = True
            self.renderer.own_name = self.username
            if self.rich:
                self.conversations.all.append(COMMAND_LIST)
                self.console.show(COMMAND_LIST)  # once (the terminal cuts it into rows)
                self._learn_names()
                self._show_unread()
            self._ask_command()
        elif text in _GIVE_UP:
            self.exit(1)
        elif text in _ASK_PASSWORD:
            self._ask_password()
        else:
            self._ask_username()

    def _relogin_answer(self, ok: bool, text: str) -> None:
        if ok:
            self._offline = False
            self.reconnector.succeeded()
            self._connection_notice(RECONNECTED)
            self._learn_names()
            for window in self.conversations.windows[1:]:
                if window.kind != "search":  # a conversation's window: what it missed
                    self._load_history(window, HISTORY_ON_RESUME, self._missed_history)
            self._set_status()
        elif text == errors.ALREADY_LOGGED_IN:
            # The server has not noticed the old connection is gone yet.
            self.server.transport.loseConnection()
        else:
            self._offline = False
            self._logged_in = False
            self._password = None
            self.console.show(text)
            if text in _GIVE_UP:
                self.exit(1)
            else:
                self._ask_username()

    def _learn_names(self) -> None:
        """Ask the server once for every account and one's groups (completion, /chat)."""

        def user(text):
            name, _, presence = text.partition(" ")
            self._users[name] = presence

        def group(text):
            fields = text.split()
            if len(fields) == 3:
                self._groups[fields[0]] = (fields[1], fields[2])

        self._request("/users", lambda ok, text: None, user)
        self._request("/groups", lambda ok, text: None, group)

    # Commands

    def _prompt_text(self) -> str:
        if not self.rich:
            return COMMAND_PROMPT
        name = self.conversations.current.name
        return f"[{name}] " if name else "> "

    def _ask_command(self) -> None:
        self._state = "command"
        self._set_status()
        command_prompt = getattr(self.console, "command_prompt", None)
        if self.rich and command_prompt is not None:
            command_prompt(self._prompt_text())
        else:
            self.console.prompt(self._prompt_text())

    def _entered_command(self, text: str) -> None:
        line = text.strip()
        if not line:
            self._ask_command()
            return
        words = line.split()
        if words[0] in files.COMMANDS:  # answered here, not by the server
            self.files.command(words)
            self._ask_command()
            return
        if self.rich:
            if self._offline or self.server is None:
                if words[0] in ("/quit", "/logout"):
                    self.exit(0)
                    return
                if words[0] not in ("/win", "/close", "/help") and words != ["/chat"]:
                    self._reply(OFFLINE)
                    self._ask_command()
                    return
            if not line.startswith("/"):
                self._say(text.strip())
                return
            local = getattr(self, "_local_" + words[0][1:], None) if words[0][1:].isidentifier() else None
            if local is not None:
                local(words[1:], line)
                return
        if words == ["/changepassword"]:
            self._ask_current_password()
            return
        if words[0] == "/changepassword" and len(words) == 3:
            self._new_password = words[2]
        if words[0] == "/p2pvideo" and len(words) == 3:
            filename = words[2]
            if not self.file_exists(filename):
                self._reply(f"File {filename} does not exist")
                self._ask_command()
                return
            self._pending_file = filename
        self._send_command(line, words[0])

    def _send_command(self, line: str, command: str, on_data=None) -> None:
        self._peer = None
        self._state = "waiting"
        self._last_command = command
        self._last_line = line
        self._request(line, self._command_done, on_data)

    # /changepassword: three prompts, then one wire line

    def _ask_current_password(self) -> None:
        self._state = "current_password"
        self.console.prompt("Current password: ", secret=True)

    def _entered_current_password(self, text: str) -> None:
        self._passwords = [text.strip("\r\n")]
        self._state = "new_password"
        self.console.prompt("New password: ", secret=True)

    def _entered_new_password(self, text: str) -> None:
        self._passwords.append(text.strip("\r\n"))
        self._state = "repeat_password"
        self.console.prompt("Repeat new password: ", secret=True)

    def _entered_repeat_password(self, text: str) -> None:
        (current, new), self._passwords = self._passwords, None
        problem = None
        if text.strip("\r\n") != new:
            problem = errors.NEW_MISMATCH
        elif not new:
            problem = errors.EMPTY_PASSWORD
        elif any(c.isspace() for c in new):
            problem = errors.HAS_WHITESPACE
        elif not current or any(c.isspace() for c in current):
            problem = errors.CURRENT_INCORRECT  # no account has such a password
        elif self.server is None:
            problem = OFFLINE
        if problem is not None:
            self._reply(problem)
            self._ask_command()
            return
        self._new_password = new
        self._send_command(f"/changepassword {current} {new}", "/changepassword")

    def _command_done(self, ok: bool, text: str) -> None:
        command = self._last_command
        joined = _NEW_GROUP.search(text) if self.rich and ok else None
        if joined:  # a group one has just joined or created opens, as /chat would: plain text goes there
            name = joined["group"] or joined["group2"]
            self._groups.setdefault(name, ("joined", "group"))
            self._pending_file = None
            self._open(name, "group", guessing=False, note=text)  # the confirmation shown in it
            return
        if self.rich and ok and command in ("/msgto", "/groupmsg"):
            self._shown_as_sent(text)
        elif text:
            self._reply(text)
        if ok and command == "/logout":
            self.exit(0)
            return
        if command == "/changepassword":
            if ok and text == errors.PASSWORD_CHANGED and self._new_password:
                self._password = self._new_password
            self._new_password = None
        if ok and command == "/p2pvideo" and self._peer is not None:
            self._start_transfer(self._peer, self._pending_file)
        self._pending_file = None
        self._ask_command()

    # P2P video

    def _start_transfer(self, peer, filename: str) -> None:
        name, ip, port, transfer_id, secret = peer
        basename = os.path.basename(filename)
        if self.transfers is None:
            self._reply("P2P transfer is not available in this client.")
            return
        d = self.transfers.send_file(filename, self.username, (ip, port), peer_name=name,
                                     transfer_id=transfer_id, secret=secret)

        def uploaded(_):
            self.console.progress(f"send:{basename}", None)
            self._show_everywhere(f"{basename} has been uploaded", notice=False)

        def failed(failure):
            self.console.progress(f"send:{basename}", None)
            reason = getattr(failure.value, "reason", None) or failure.getErrorMessage()
            self._show_everywhere(f"Sending {basename} to {name} failed: {reason}", notice=False)

        d.addCallbacks(uploaded, failed)

    def transfer_received(self, presenter: str, basename: str, final_path: str) -> None:
        self.console.progress(f"receive:{basename}", None)
        self._show_everywhere(f"A file ({basename}) has been received from {presenter}", notice=False)

    def transfer_failed(self, direction: str, peer_name: str, basename: str, reason: str) -> None:
        if direction == "receive":
            self.console.progress(f"receive:{basename}", None)
            self._show_everywhere(f"Receiving {basename} from {peer_name} failed: {reason}", notice=False)
        # A failed send is reported through send_file's Deferred.

    def transfer_progress(self, transfer_id, direction, basename, done, total, rate) -> None:
        percent = 100.0 * done / total if total else 100.0
        verb = "Sending" if direction == "send" else "Receiving"
        self.console.progress(
            f"{direction}:{basename}",  # the key under which the end removes it
            f"{verb} {basename}: {percent:5.1f}% ({done / 1048576:.1f}/{total / 1048576:.1f} MiB,"
            f" {rate / 1048576:.1f} MiB/s)",
        )

    # Exit

    def exit(self, status: int) -> None:
        if self._exiting:
            return
        self._exiting = True
        self._state = "exiting"
        self._password = None
        if self.reconnector is not None:
            self.reconnector.stop()
        if self.server is not None:
            self.server.transport.loseConnection()
        if self.transfers is not None:
            self.transfers.stop()
        d = defer.maybeDeferred(self.console.close)
        d.addBoth(lambda _: self.on_exit(status))


def _readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


class Arguments:
    """What the command line (and the configuration file) asked for."""

    def __init__(self):
        self.host = DEFAULT_SERVER
        self.server_port = DEFAULT_PORT
        self.udp_port = DEFAULT_UDP_PORT
        self.p2p_timeout = DEFAULT_P2P_TIMEOUT
        self.reconnect = None  # None: on a terminal only
        self.version = False
        self.help = False

    def __iter__(self):  # host, server_port, udp_port, timeout (the older tuple)
        return iter((self.host, self.server_port, self.udp_port, self.p2p_timeout))


def _port(value: str, lowest: int) -> int:
    if not (value.isascii() and value.isdigit()) or not lowest <= int(value) < 65536:
        raise ValueError(f"invalid port: {value!r}")
    return int(value)


def parse_arguments(argv: list[str], config=None) -> Arguments:
    """C{[--p2p-timeout SECONDS] [--no-reconnect|--reconnect] [SERVER_IP [SERVER_PORT [UDP_PORT]]]}."""
    config = config or {}
    args = Arguments()
    args.host = config.get("server", args.host)
    args.server_port = config.get("port", args.server_port)
    args.udp_port = config.get("udp_port", args.udp_port)
    args.reconnect = config.get("reconnect")
    positional = []
    argv = list(argv)
    while argv:
        arg = argv.pop(0)
        if arg.startswith("--p2p-timeout"):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif argv:
                value = argv.pop(0)
            else:
                value = ""
            try:
                timeout = float(value)
            except ValueError:
                timeout = 0
            if not 0 < timeout <= 3600:
                raise ValueError(f"invalid --p2p-timeout: {value!r}")
            args.p2p_timeout = timeout
        elif arg == "--no-reconnect":
            args.reconnect = False
        elif arg == "--reconnect":
            args.reconnect = True
        elif arg == "--version":
            args.version = True
        elif arg in ("--help", "-h"):
            args.help = True
        elif arg == "--":
            positional.extend(argv)
            break
        elif arg.startswith("-") and len(arg) > 1:
            raise ValueError(f"unknown option: {arg}")
        else:
            positional.append(arg)
    if len(positional) > 3:
        raise ValueError("wrong number of arguments")
    if positional:
        args.host = positional[0]
    if len(positional) > 1:
        args.server_port = _port(positional[1], 1)
    if len(positional) > 2:
        args.udp_port = _port(positional[2], 0)
    return args


def make_console():
    from .console import LineConsole, stdin_is_terminal

    if stdin_is_terminal():
        try:
            from .terminal import TerminalConsole
        except ImportError:
            return LineConsole(interactive=True), None
        return TerminalConsole(), "terminal"
    return LineConsole(interactive=False), None


def _print_help() -> None:
    from .config import config_path

    print(USAGE)
    print(f"  SERVER_IP SERVER_PORT: the server (default {DEFAULT_SERVER} {DEFAULT_PORT})")
    print("  UDP_PORT: where this client receives files from other clients (/p2pvideo);"
          " 0 (the default) picks a free one")
    print("  --p2p-timeout SECONDS: give a silent transfer up after this long (default 10)")
    print("  --no-reconnect: exit 1 when the server goes away (the default when stdin is not a terminal)")
    print("  --reconnect: when the server goes away, log in again once it is back (the default on a"
          " terminal)")
    print("  --version: print the version and exit")
    print(files.OPTION_HELP)
    print(f"  Settings (server, port, udp_port, username, colours, reconnect): {config_path()}")


def main(argv=None) -> None:
    from .config import ConfigError, load_config, version

    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        try:
            _print_help()
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if "--version" in argv:
        print(f"chatproto-client {version()}")
        sys.exit(0)
    try:
        config = load_config()
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        argv, accept_files = files.take_option(argv)
        args = parse_arguments(argv, config)
    except ValueError as e:
        print(f"{USAGE} ({e})", file=sys.stderr)
        sys.exit(2)

    from twisted.internet import endpoints, reactor, stdio
    from twisted.internet.error import CannotListenError, ReactorNotRunning

    from .reconnect import Reconnector

    status = {"code": 0}

    def on_exit(code):
        status["code"] = code
        try:
            reactor.stop()
        except ReactorNotRunning:  # already stopping (a signal) or never started
            pass

    console, kind = make_console()
    reconnect = args.reconnect if args.reconnect is not None else kind == "terminal"
    factory = protocol.Factory.forProtocol(lambda: ServerConnection(client))

    def connect_once():
        endpoint = endpoints.TCP4ClientEndpoint(reactor, args.host, args.server_port, timeout=10)
        return endpoint.connect(factory)

    reconnector = None
    if reconnect:
        reconnector = Reconnector(reactor, connect_once,
                                  on_attempt=lambda n, delay: client.reconnect_attempt(n, delay))
    colours = config.get("colours", True) and not os.environ.get("NO_COLOR")
    client = ChatClient(console, 0, on_exit, clock=reactor, reconnector=reconnector,
                        username=config.get("username"), colours=colours)
    client.files.policy = accept_files
    try:
        client.transfers, udp_port = start_transfers(reactor, args.udp_port, client, args.p2p_timeout)
    except CannotListenError as e:
        print(f"Error: cannot use UDP port {args.udp_port}: {e.socketError}", file=sys.stderr)
        sys.exit(1)
    client.udp_port = udp_port
    if args.udp_port == 0:
        # Any free port: say which (on stderr when piped, so stdout keeps only the fixed lines).
        print(f"Receiving files on UDP port {udp_port}",
              file=sys.stdout if kind == "terminal" else sys.stderr)

    def connect():
        def failed(failure):
            print(f"Error: cannot connect to {args.host}:{args.server_port}: "
                  f"{failure.getErrorMessage()}", file=sys.stderr)
            client.exit(1)  # closes the console too (a terminal is restored)

        connect_once().addErrback(failed)

    stdio.StandardIO(console)
    reactor.callWhenRunning(connect)
    reactor.run()
    sys.stdout.flush()
    sys.exit(status["code"])


def start_transfers(reactor, udp_port: int, client, idle_timeout: float = 10.0):
    """
    Bind the UDP port where peers send us files (raises CannotListenError);
    returns the transfer endpoint (or None) and the port bound.
    """
    try:
        from ..transfer import TransferEndpoint, listen_udp
    except ImportError:
        from twisted.internet.protocol import DatagramProtocol

        port = reactor.listenUDP(udp_port, DatagramProtocol())
        return None, port.getHost().port
    endpoint = TransferEndpoint(os.getcwd(), client.files, clock=reactor, idle_timeout=idle_timeout)
    port = listen_udp(reactor, udp_port, endpoint)
    return endpoint, port.getHost().port


if __name__ == "__main__":
    main()
