"""
C{python -m chatproto.client SERVER_IP SERVER_PORT UDP_PORT}: the terminal
client.

L{ChatClient} is the client's logic, free of any terminal or socket: it
reacts to lines the user entered and to lines from the server, and shows
one prompt only when the server has answered the last command with its
final C{OK} or C{ERR} (so the prompt is never printed twice, and nothing
waits on a sleep).
"""

import os
import re
import sys

from twisted.internet import defer, protocol
from twisted.protocols.basic import LineReceiver

from .. import errors
from . import files

COMMANDS = ["/msgto", "/activeuser", "/creategroup", "/joingroup", "/groupmsg", "/p2pvideo",
            "/leavegroup", "/changepassword", "/deletemsg", "/deletegroupmsg", "/createbroadcast",
            "/help", "/logout"]
COMMAND_PROMPT = f"Enter one of the following commands ({', '.join(COMMANDS)}): "
USAGE = ("Usage: python -m chatproto.client [--p2p-timeout SECONDS] [--accept-files all|ask|none]"
         " SERVER_IP SERVER_PORT UDP_PORT")
DEFAULT_P2P_TIMEOUT = 10.0
CONNECTION_LOST = "Connection to the server was lost."
SHUTDOWN_NOTICE = "Server shutting down"
# Server lines that name users and groups, remembered for tab completion.
_NAMES_IN = [re.compile(p) for p in (
    r"^(?P<user>\S+), \S+, \d+, active since ",
    r"^\d\d \w{3} \d{4} [\d:]{8}, (?:(?P<group>[^\s,]+), )?(?P<user>[^\s,:]+): ",
    r"invited to the group chat (?P<group>\S+) by (?P<user>\S+)\.",
    r"^(?P<user>\S+) has left the group chat (?P<group>\S+)\.$",
    r"room name: (?P<group>\S+), users in this room: (?P<users>.*)$",
    r"^Joined the group chat: (?P<group>\S+) successfully\.$",
)]

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
        self.client.server_lost()


class ChatClient:
    """
    @param console: where the user reads and types (see L{chatproto.console}).
    @param udp_port: announced at login; where peers send files to us.
    @param transfers: the UDP transfer endpoint, or None when there is none.
    @param on_exit: called once with the exit status.
    """

    def __init__(self, console, udp_port: int, on_exit, transfers=None, file_exists=None):
        self.console = console
        self.udp_port = udp_port
        self.on_exit = on_exit
        self.transfers = transfers
        self.file_exists = file_exists or _readable_file
        self.server = None
        self.username = None
        self._password = None
        self._state = "connecting"
        self._peer = None
        self._pending_file = None
        self._exiting = False
        self._told_shutdown = False
        self._seen_names: set[str] = set()
        # p2p transfers: PEER and OFFER lines, /accept, /reject, --accept-files (files.py)
        self.files = files.FileTransfers(lambda text: self.console.show(text), lambda: self.transfers, self)
        console.attach(self)

    # From the server connection

    def connected(self, server) -> None:
        self.server = server
        self._ask_username()

    def server_line(self, tag: str, text: str) -> None:
        self._note_names(text)
        if tag in ("MSG", "NOTICE", "DATA"):
            if tag == "NOTICE" and text == SHUTDOWN_NOTICE:
                self._told_shutdown = True
            self.console.show(text)
        elif tag == "PEER":
            self._peer = self.files.peer_line(text)
        elif tag == "OFFER":
            self.files.offer_line(text)
        elif tag in ("OK", "ERR"):
            self._final(tag == "OK", text)
        else:
            self.console.show(f"{tag} {text}".strip())

    def _note_names(self, text: str) -> None:
        for pattern in _NAMES_IN:
            found = pattern.search(text)
            if found:
                names = found.groupdict()
                self._seen_names.update(n for n in (names.get("user"), names.get("group")) if n)
                self._seen_names.update((names.get("users") or "").split())
                return

    def completion_candidates(self) -> list[str]:
        """For tab completion: the commands, then the users and groups seen so far."""
        return COMMANDS + sorted(self._seen_names - {self.username})

    def server_lost(self) -> None:
        self.server = None
        if not self._exiting:
            if not self._told_shutdown:  # one line says the server went away
                self.console.show(CONNECTION_LOST)
            self.exit(1)

    # From the console

    def line_entered(self, text: str) -> None:
        handler = getattr(self, "_entered_" + self._state, None)
        if handler is not None:
            handler(text)

    def input_ended(self) -> None:
        """End of input at a prompt: close the client (the server logs us out)."""
        self.exit(0)

    # Login

    def _ask_username(self) -> None:
        self._state = "username"
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
        self.server.send(f"LOGIN {self.username} {password} {self.udp_port}")

    def _login_answer(self, ok: bool, text: str) -> None:
        self.console.show(text)
        if ok:
            self._ask_command()
        elif text in _GIVE_UP:
            self.exit(1)
        elif text in _ASK_PASSWORD:
            self._ask_password()
        else:
            self._ask_username()

    # Commands

    def _ask_command(self) -> None:
        self._state = "command"
        self.console.prompt(COMMAND_PROMPT)

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
        if words == ["/changepassword"]:
            self._ask_current_password()
            return
        if words[0] == "/p2pvideo" and len(words) == 3:
            filename = words[2]
            if not self.file_exists(filename):
                self.console.show(f"File {filename} does not exist")
                self._ask_command()
                return
            self._pending_file = filename
        self._peer = None
        self._state = "waiting"
        self._last_command = words[0]
        self.server.send(line)

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
        if problem is not None:
            self.console.show(problem)
            self._ask_command()
            return
        self._peer = None
        self._state = "waiting"
        self._last_command = "/changepassword"
        self.server.send(f"/changepassword {current} {new}")

    def _final(self, ok: bool, text: str) -> None:
        if self._state == "logging_in":
            self._login_answer(ok, text)
            return
        if self._state != "waiting":
            if text:
                self.console.show(text)
            return
        if text:
            self.console.show(text)
        command = self._last_command
        if ok and command == "/logout":
            self.exit(0)
            return
        if ok and command == "/p2pvideo" and self._peer is not None:
            self._start_transfer(self._peer, self._pending_file)
        self._pending_file = None
        self._ask_command()

    # P2P video

    def _start_transfer(self, peer, filename: str) -> None:
        name, ip, port, transfer_id, secret = peer
        basename = os.path.basename(filename)
        if self.transfers is None:
            self.console.show("P2P transfer is not available in this client.")
            return
        d = self.transfers.send_file(filename, self.username, (ip, port), peer_name=name,
                                     transfer_id=transfer_id, secret=secret)

        def uploaded(_):
            self.console.progress(f"send:{basename}", None)
            self.console.show(f"{basename} has been uploaded")

        def failed(failure):
            self.console.progress(f"send:{basename}", None)
            reason = getattr(failure.value, "reason", None) or failure.getErrorMessage()
            self.console.show(f"Sending {basename} to {name} failed: {reason}")

        d.addCallbacks(uploaded, failed)

    def transfer_received(self, presenter: str, basename: str, final_path: str) -> None:
        self.console.progress(f"receive:{basename}", None)
        self.console.show(f"A file ({basename}) has been received from {presenter}")

    def transfer_failed(self, direction: str, peer_name: str, basename: str, reason: str) -> None:
        if direction == "receive":
            self.console.progress(f"receive:{basename}", None)
            self.console.show(f"Receiving {basename} from {peer_name} failed: {reason}")
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
        if self.server is not None:
            self.server.transport.loseConnection()
        if self.transfers is not None:
            self.transfers.stop()
        d = defer.maybeDeferred(self.console.close)
        d.addBoth(lambda _: self.on_exit(status))


def _readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def parse_arguments(argv: list[str]):
    """C{[--p2p-timeout SECONDS] SERVER_IP SERVER_PORT UDP_PORT}."""
    argv = list(argv)
    timeout = DEFAULT_P2P_TIMEOUT
    for i, arg in enumerate(argv):
        if arg.startswith("--p2p-timeout"):
            value = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            del argv[i:i + (1 if "=" in arg else 2)]
            try:
                timeout = float(value)
            except ValueError:
                timeout = 0
            if not 0 < timeout <= 3600:
                raise ValueError(f"invalid --p2p-timeout: {value!r}")
            break
    if len(argv) != 3:
        raise ValueError("wrong number of arguments")
    host, server_port, udp_port = argv
    for value in (server_port, udp_port):
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
            raise ValueError(f"invalid port: {value!r}")
    return host, int(server_port), int(udp_port), timeout


def make_console():
    from .console import LineConsole, stdin_is_terminal

    if stdin_is_terminal():
        try:
            from .terminal import TerminalConsole
        except ImportError:
            return LineConsole(interactive=True), None
        return TerminalConsole(), "terminal"
    return LineConsole(interactive=False), None


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--help"], ["-h"]):
        print(USAGE)
        print("  UDP_PORT: where this client receives files from other clients (/p2pvideo)")
        print("  --p2p-timeout SECONDS: give a silent transfer up after this long (default 10)")
        print(files.OPTION_HELP)
        sys.exit(0)
    try:
        argv, accept_files = files.take_option(argv)
        host, server_port, udp_port, p2p_timeout = parse_arguments(argv)
    except ValueError as e:
        print(f"{USAGE} ({e})", file=sys.stderr)
        sys.exit(2)

    from twisted.internet import endpoints, reactor, stdio
    from twisted.internet.error import CannotListenError, ReactorNotRunning

    status = {"code": 0}

    def on_exit(code):
        status["code"] = code
        try:
            reactor.stop()
        except ReactorNotRunning:  # already stopping (a signal) or never started
            pass

    console, _kind = make_console()
    client = ChatClient(console, udp_port, on_exit)
    client.files.policy = accept_files
    try:
        client.transfers = start_transfers(reactor, udp_port, client, p2p_timeout)
    except CannotListenError as e:
        print(f"Error: cannot use UDP port {udp_port}: {e.socketError}", file=sys.stderr)
        sys.exit(1)

    def connect():
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, server_port, timeout=10)
        d = endpoint.connect(protocol.Factory.forProtocol(lambda: ServerConnection(client)))

        def failed(failure):
            print(f"Error: cannot connect to {host}:{server_port}: {failure.getErrorMessage()}",
                  file=sys.stderr)
            client.exit(1)  # closes the console too (a terminal is restored)

        d.addErrback(failed)

    stdio.StandardIO(console)
    reactor.callWhenRunning(connect)
    reactor.run()
    sys.stdout.flush()
    sys.exit(status["code"])


def start_transfers(reactor, udp_port: int, client, idle_timeout: float = 10.0):
    """Bind the UDP port where peers send us files (raises CannotListenError)."""
    try:
        from ..transfer import TransferEndpoint
    except ImportError:
        from twisted.internet.protocol import DatagramProtocol

        reactor.listenUDP(udp_port, DatagramProtocol())
        return None
    endpoint = TransferEndpoint(os.getcwd(), client.files, clock=reactor, idle_timeout=idle_timeout)
    reactor.listenUDP(udp_port, endpoint)
    return endpoint


if __name__ == "__main__":
    main()
