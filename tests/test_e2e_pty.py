"""
End to end in a real pseudo-terminal: the real client (`python -m
chatproto.client`) runs on the slave side of a pty, a real server process
serves it, another user speaks the wire protocol over a raw socket, and the
test reads the screen through a terminal emulator (pyte when installed,
else twisted.conch's TerminalBuffer).

No sleeps: every wait reads output until the screen shows what is expected,
with a timeout.
"""

import os
import re
import select
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from .harness import TIMEOUT, E2EMixin, ServerProcess, child_env, free_udp_port

try:
    import fcntl
    import termios
except ImportError:  # not a POSIX system
    termios = None

COLUMNS, ROWS = 100, 30


class ScreenReader:
    """The screen of a terminal emulator fed with the bytes a pty master reads."""

    def __init__(self, master_fd: int, columns: int, rows: int):
        self.fd = master_fd
        self.log = bytearray()
        try:
            import pyte
        except ImportError:
            pyte = None
        if pyte is not None:
            self._screen = pyte.Screen(columns, rows)
            stream = pyte.ByteStream(self._screen)
            self._feed = stream.feed
            self._lines = lambda: [line.rstrip() for line in self._screen.display]
            self._cursor = lambda: (self._screen.cursor.x, self._screen.cursor.y)
        else:
            from twisted.conch.insults import helper, insults
            from twisted.internet.testing import StringTransport

            buffer = helper.TerminalBuffer()
            buffer.width, buffer.height = columns, rows
            parser = insults.ClientProtocol(lambda: buffer)
            parser.makeConnection(StringTransport())
            self._feed = parser.dataReceived
            self._lines = lambda: [
                line.rstrip() for line in bytes(buffer).decode("utf-8", "replace").split("\n")]
            self._cursor = lambda: (buffer.x, buffer.y)
            self._buffer = buffer

    def lines(self) -> list[str]:
        return self._lines()

    def resize(self, columns: int, rows: int) -> None:
        """The emulated terminal changes size too (as the real window would)."""
        if hasattr(self, "_screen"):
            self._screen.resize(rows, columns)
        else:
            self._buffer.width, self._buffer.height = columns, rows

    def cursor(self) -> tuple[int, int]:
        return self._cursor()

    def cursor_line(self) -> str:
        """The cursor's row, with its trailing blanks up to the cursor."""
        x, y = self.cursor()
        return self.lines()[y].ljust(x)

    def text(self) -> str:
        return "\n".join(self.lines())

    def pump(self, timeout: float) -> bool:
        """Read what is there (waiting up to C{timeout}); False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the slave side is closed
            return False
        if not data:
            return False
        self.log += data
        self._feed(data)
        return True

    def wait_for(self, condition, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.pump(remaining):
                raise AssertionError(
                    f"timed out waiting for {what}; screen:\n{self.text()}\n"
                    f"cursor: {self.cursor()}")

    def wait_for_text(self, text: str, timeout: float = TIMEOUT):
        return self.wait_for(lambda: text in self.text(), repr(text), timeout)

    def wait_for_cursor_line(self, text: str, timeout: float = TIMEOUT):
        return self.wait_for(lambda: self.cursor_line() == text,
                             f"the cursor on the line {text!r}", timeout)


class WireUser:
    """Another user, speaking the wire protocol over a plain socket."""

    def __init__(self, host, port, username, password):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.send(f"LOGIN {username} {password} {free_udp_port()}")
        self.expect("OK Welcome to chatproto!")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def expect(self, pattern) -> str:
        while True:
            line = self.file.readline()
            if not line:
                raise AssertionError(f"connection closed before {pattern!r}")
            line = line.decode("utf-8").rstrip("\r\n")
            if (line == pattern) if isinstance(pattern, str) else pattern.search(line):
                return line

    def close(self):
        self.file.close()
        self.sock.close()


class TerminalClientTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        if termios is None:
            raise SkipTest("needs a POSIX pseudo-terminal")
        self.server = self.start_server()

    def spawn_client(self, port=None, args=(), config=None) -> ScreenReader:
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    (ROWS).to_bytes(2, sys.byteorder) + (COLUMNS).to_bytes(2, sys.byteorder)
                    + bytes(4))
        self.slave = slave
        self.original_modes = termios.tcgetattr(slave)
        home = tempfile.mkdtemp(prefix="chatproto-home-")
        self.addCleanup(shutil.rmtree, home, True)
        if config is not None:
            os.makedirs(os.path.join(home, ".config", "chatproto"))
            with open(os.path.join(home, ".config", "chatproto", "client.toml"), "w") as f:
                f.write(config)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatproto.client", *args, self.server.host,
             str(port or self.server.port),
             str(free_udp_port())],
            stdin=slave, stdout=slave, stderr=slave, cwd=self.server.data_dir,
            env=child_env({"TERM": "xterm", "HOME": home, "XDG_CONFIG_HOME": ""}),
            start_new_session=True,
        )

        def stop():
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(TIMEOUT)

        self.addCleanup(stop)
        return ScreenReader(master, COLUMNS, ROWS)

    def login(self, screen, username, password):
        screen.wait_for_cursor_line("Username: ")
        os.write(screen.fd, username.encode() + b"\r")
        screen.wait_for_cursor_line("Password: ")
        os.write(screen.fd, password.encode() + b"\r")
        screen.wait_for_text("Welcome to chatproto!")
        screen.wait_for_cursor_line("> ")

    def wait_exit(self, screen) -> int:
        deadline = time.monotonic() + TIMEOUT
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the client did not exit; screen:\n{screen.text()}")
            screen.pump(0.05)
        return self.process.wait()

    def test_message_arrives_above_the_half_typed_line(self):
        hans = WireUser(self.server.host, self.server.port, "Hans", "falcon*solo")
        self.addCleanup(hans.close)
        screen = self.spawn_client()
        self.login(screen, "Yoda", "wise@!man")
        self.assertNotIn("wise@!man", screen.text())
        self.assertFalse(termios.tcgetattr(self.slave)[3] & termios.ECHO)  # raw mode

        # Half a line, with the cursor moved back into it.
        os.write(screen.fd, b"/msgto Hans half a li\x1b[D\x1b[D")
        screen.wait_for(lambda: screen.cursor() == (len("> /msgto Hans half a "), screen.cursor()[1])
                        and screen.cursor_line() == "> /msgto Hans half a li", "the half line")
        typing_row = screen.cursor()[1]

        hans.send("/msgto Yoda hello from the other side")
        hans.expect(re.compile(r"^OK message sent at "))
        # (The message and the live area below it may come in more than one read.)
        screen.wait_for(lambda: "<Hans> hello from the other side" in screen.text()
                        and screen.cursor_line() == "> /msgto Hans half a li", "the message above the line")

        lines = screen.lines()
        x, y = screen.cursor()
        self.assertEqual(lines[y], "> /msgto Hans half a li")
        self.assertEqual(x, len("> /msgto Hans half a "))
        message_rows = [i for i, line in enumerate(lines)
                        if re.fullmatch(r"\d\d:\d\d <Hans> hello from the other side", line)]
        self.assertEqual(len(message_rows), 1, screen.text())
        self.assertLess(message_rows[0], y)
        self.assertGreaterEqual(y, typing_row)
        # The status line sits between the message and the typing; the long prompt is gone.
        self.assertEqual(lines[y - 1].strip(), "Yoda | 1:all | windows: 2:Hans")
        self.assertNotIn("Enter one of the following commands", screen.text())

        # The line goes on where it was, and is sent whole; one's own message is shown as sent.
        os.write(screen.fd, b"\x05ne\r")
        line = hans.expect(re.compile(r", Yoda: "))
        self.assertRegex(line, r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Yoda: half a line$")
        screen.wait_for_text("[Hans] <Yoda> half a line")
        screen.wait_for_cursor_line("> ")

        # Tab completes a name the client has seen.
        os.write(screen.fd, b"/msg\tHa\thi again")
        screen.wait_for_cursor_line("> /msgto Hans hi again")
        os.write(screen.fd, b"\x15")  # Ctrl-U
        screen.wait_for_cursor_line("> ")

        # Ctrl-D logs out: exit 0, the terminal restored, the server lets go.
        os.write(screen.fd, b"\x04")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)
        hans.send("/msgto Yoda still there?")
        hans.expect("ERR Yoda is not active")

    def test_password_retry_ctrl_c_and_lost_server(self):
        screen = self.spawn_client(args=["--no-reconnect"])
        screen.wait_for_cursor_line("Username: ")
        os.write(screen.fd, b"Hans\r")
        screen.wait_for_cursor_line("Password: ")
        os.write(screen.fd, b"not-it\r")
        screen.wait_for_text("Invalid Password. Please try again")
        screen.wait_for_cursor_line("Password: ")
        os.write(screen.fd, b"falcon*solo\r")
        screen.wait_for_cursor_line("> ")
        self.assertNotIn("not-it", screen.text())
        self.assertNotIn("falcon", screen.text())

        os.write(screen.fd, b"half typed")
        screen.wait_for_cursor_line("> half typed")
        self.server.stop()
        self.assertEqual(self.wait_exit(screen), 1)
        # One line says the server went away: its shutdown notice.
        screen.wait_for_text("Server shutting down")
        self.assertEqual(screen.text().count("Server shutting down"), 1)
        self.assertNotIn("Connection to the server was lost.", screen.text())
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)

    def test_resize_then_ctrl_c_logs_out(self):
        screen = self.spawn_client()
        self.login(screen, "leia", "alderaan")
        os.write(screen.fd, b"/activeuser")
        screen.wait_for_cursor_line("> /activeuser")
        # The window shrinks: everything is drawn again for the new width, no stale rows.
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ,
                    (ROWS).to_bytes(2, sys.byteorder) + (50).to_bytes(2, sys.byteorder) + bytes(4))
        self.process.send_signal(signal.SIGWINCH)
        screen.resize(50, ROWS)
        screen.wait_for(lambda: screen.lines()[1].startswith("Password:")
                        and any(line.startswith("Commands: ") and len(line) < 50 for line in screen.lines())
                        and screen.cursor_line() == "> /activeuser",
                        "the screen redrawn at 50 columns")
        self.assertEqual(sum("leia | 1:all" in line for line in screen.lines()), 1, screen.text())
        self.assertTrue(all(len(line) <= 50 for line in screen.lines()))
        os.write(screen.fd, b"\r")
        screen.wait_for_text("no other active user")
        screen.wait_for_cursor_line("> ")
        os.write(screen.fd, b"\x03")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(self.server.read("userlog.txt"), "")

    def test_conversation_with_plain_text_and_an_unread_count(self):
        hans = WireUser(self.server.host, self.server.port, "Hans", "falcon*solo")
        self.addCleanup(hans.close)
        screen = self.spawn_client()
        self.login(screen, "Yoda", "wise@!man")
        hans.send("/creategroup Jedi Yoda")
        hans.expect(re.compile("^OK Group chat room has been created"))
        screen.wait_for_text("You have been invited to the group chat Jedi by Hans.")
        os.write(screen.fd, b"/joingroup Jedi\r")
        screen.wait_for_text("Joined the group chat: Jedi successfully.")
        os.write(screen.fd, b"/chat Hans\r")
        screen.wait_for_cursor_line("[Hans] ")
        os.write(screen.fd, b"plain text, no command\r")
        hans.expect(re.compile(r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Yoda: plain text, no command$"))
        screen.wait_for(lambda: any(re.fullmatch(r"\d\d:\d\d <Yoda> plain text, no command", line)
                                    for line in screen.lines()), "one's own message")
        hans.send("/msgto Yoda reply in the conversation")
        screen.wait_for_text("<Hans> reply in the conversation")
        # A message for the group: not in this conversation, counted in the status line.
        hans.send("/groupmsg Jedi for the group")
        hans.expect("OK Group chat message sent.")
        screen.wait_for_text("unread: 2:Jedi(1)")
        hans.send("/groupmsg Jedi and again")
        screen.wait_for_text("unread: 2:Jedi(2)")
        self.assertNotIn("for the group", screen.text())
        os.write(screen.fd, b"\x1b2")  # Alt-2
        screen.wait_for_cursor_line("[Jedi] ")
        lines = screen.lines()
        self.assertTrue(any(re.fullmatch(r"\d\d:\d\d <Hans> for the group", line) for line in lines))
        self.assertNotIn("reply in the conversation", screen.text())
        self.assertNotIn("unread:", screen.text())
        os.write(screen.fd, b"to the group\r")
        hans.expect(re.compile(r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Jedi, Yoda: to the group$"))
        os.write(screen.fd, b"\x04")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertNotIn("Traceback", screen.text())

    def test_history_shown_when_a_conversation_opens(self):
        hans = WireUser(self.server.host, self.server.port, "Hans", "falcon*solo")
        self.addCleanup(hans.close)
        hans.send("/history Yoda 1")
        if hans.expect(re.compile(r"^(OK|ERR)")) == "ERR Error. Invalid command!":
            raise SkipTest("the server has no /history yet")
        screen = self.spawn_client()
        self.login(screen, "Yoda", "wise@!man")
        hans.send("/msgto Yoda said before the window opened")
        hans.expect(re.compile("^OK message sent at"))
        screen.wait_for_text("said before the window opened")
        os.write(screen.fd, b"/chat Hans\r")
        screen.wait_for_cursor_line("[Hans] ")
        screen.wait_for(lambda: any(re.fullmatch(r"#\d+ \d\d:\d\d <Hans> said before the window opened", line)
                                    for line in screen.lines()), "the history with its SEQ")

    def test_password_never_on_screen_or_in_history(self):
        screen = self.spawn_client()
        self.login(screen, "luke", "jedi*knight")
        os.write(screen.fd, b"\x1b[A")  # Up: the username typed at login is not in the history
        os.write(screen.fd, b"/activeuser\r")
        screen.wait_for_text("no other active user")
        screen.wait_for_cursor_line("> ")
        # The one-line form: masked on screen, sent, and left out of the history.
        os.write(screen.fd, b"/changepassword jedi*knight Dag0bah\r")
        screen.wait_for_text("Your password has been changed.")
        screen.wait_for_cursor_line("> ")
        self.assertIn("> /changepassword ********", screen.lines())
        os.write(screen.fd, b"\x1b[A")
        screen.wait_for_cursor_line("> /activeuser")
        os.write(screen.fd, b"\x1b[A")
        screen.wait_for_cursor_line("> /activeuser")  # the oldest line: no username before it
        os.write(screen.fd, b"\x15/changepassword\r")
        for prompt, typed in [("Current password: ", "Dag0bah"), ("New password: ", "Hoth3"),
                              ("Repeat new password: ", "Hoth3")]:
            screen.wait_for_cursor_line(prompt)
            os.write(screen.fd, typed.encode() + b"\r")
        screen.wait_for_text("Your password has been changed.")
        screen.wait_for_cursor_line("> ")
        os.write(screen.fd, b"\x04")
        self.assertEqual(self.wait_exit(screen), 0)
        for secret in (b"jedi*knight", b"Dag0bah", b"Hoth3"):
            self.assertNotIn(secret, bytes(screen.log))

    def test_reconnect_after_a_server_restart(self):
        screen = self.spawn_client()
        self.login(screen, "Yoda", "wise@!man")
        hans = WireUser(self.server.host, self.server.port, "Hans", "falcon*solo")
        hans.send("/creategroup Jedi Yoda")
        hans.expect(re.compile("^OK Group chat room has been created"))
        os.write(screen.fd, b"/joingroup Jedi\r")
        screen.wait_for_text("Joined the group chat: Jedi successfully.")
        os.write(screen.fd, b"/chat Jedi\r")
        screen.wait_for_cursor_line("[Jedi] ")
        hans.send("/groupmsg Jedi before the restart")
        screen.wait_for_text("<Hans> before the restart")
        os.write(screen.fd, b"half typed")
        screen.wait_for_cursor_line("[Jedi] half typed")
        hans.close()

        port = self.server.port
        self.assertEqual(self.server.stop(), 0)
        screen.wait_for_text("Waiting for the server to come back")
        self.assertIsNone(self.process.poll())
        again = ServerProcess(data_dir=self.server.data_dir, credentials=self.server.credentials, port=port)
        self.addCleanup(again.cleanup)
        hans = WireUser(again.host, again.port, "Hans", "falcon*solo")
        self.addCleanup(hans.close)
        hans.send("/grouphistory Jedi 1")
        has_history = hans.expect(re.compile(r"^(OK|ERR)")) != "ERR Error. Invalid command!"
        if has_history:
            # Sent while Yoda may still be away: shown once, live or as missed.
            hans.send("/groupmsg Jedi while you were away")
            hans.expect(re.compile(r"^(OK|ERR)"))
        screen.wait_for_text("Reconnected to the server.")
        screen.wait_for_cursor_line("[Jedi] half typed")
        if has_history:
            screen.wait_for_text("while you were away")
            self.assertEqual(screen.text().count("while you were away"), 1)
        self.assertEqual(screen.text().count("before the restart"), 1)
        # (Groups outlive a restart only once the server keeps them in its database.)
        os.write(screen.fd, b"\x15/msgto Hans back again\r")
        hans.expect(re.compile(r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Yoda: back again$"))
        self.assertEqual(screen.text().count("Waiting for the server"), 1)
        os.write(screen.fd, b"/quit\r")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)

    def test_username_from_the_config_file_and_version(self):
        screen = self.spawn_client(config='username = "obiwan"\ncolours = false\n')
        screen.wait_for_cursor_line("Password: ")
        self.assertIn("Username: obiwan", screen.lines())
        os.write(screen.fd, b"hellothere\r")
        screen.wait_for_text("Welcome to chatproto!")
        os.write(screen.fd, b"\x04")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertNotIn(b"\x1b[3", bytes(screen.log))  # no colours asked: none
        result = subprocess.run([sys.executable, "-m", "chatproto.client", "--version"],
                                env=child_env(), capture_output=True, timeout=20, text=True)
        self.assertEqual(result.returncode, 0)
        self.assertRegex(result.stdout, r"^chatproto-client \d+\.\d+")

    def test_sigterm_leaves_a_tidy_terminal(self):
        screen = self.spawn_client()
        self.login(screen, "luke", "jedi*knight")
        os.write(screen.fd, b"half typed")
        screen.wait_for_cursor_line("> half typed")
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)
        screen.wait_for(lambda: "half typed" not in screen.text(), "the live area erased")
        self.assertEqual(screen.cursor_line(), "")
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(self.server.read("userlog.txt"), "")

    def test_no_server_one_line_exit_one(self):
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]  # bound, never listening: refused
            screen = self.spawn_client(port)
            self.assertEqual(self.wait_exit(screen), 1)
        screen.wait_for_text("Error: cannot connect to 127.0.0.1:")
        self.assertEqual(screen.text().count("Error:"), 1)
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)


class PipeReconnectTests(E2EMixin, SynchronousTestCase):
    """With --reconnect a piped client comes back too, in plain lines."""

    def test_pipe_client_with_reconnect(self):
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man", args=["--reconnect"])
        port = server.port
        self.assertEqual(server.stop(), 0)
        yoda.expect("Server shutting down")
        yoda.expect("Waiting for the server to come back (/quit or Ctrl-C leaves)...")
        again = ServerProcess(data_dir=server.data_dir, credentials=server.credentials, port=port)
        self.addCleanup(again.cleanup)
        yoda.expect("Reconnected to the server.")
        hans = WireUser(again.host, again.port, "Hans", "falcon*solo")
        self.addCleanup(hans.close)
        yoda.send("/msgto Hans after the restart")
        hans.expect(re.compile(r", Yoda: after the restart$"))
        yoda.expect(re.compile("^message sent at "))
        yoda.close_stdin()
        self.assertEqual(yoda.wait(), 0)
        self.assertNotIn("\x1b", "\n".join(yoda.stdout.lines))
