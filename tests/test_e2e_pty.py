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
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from .harness import TIMEOUT, E2EMixin, child_env, free_udp_port

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

    def lines(self) -> list[str]:
        return self._lines()

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

    def spawn_client(self, port=None) -> ScreenReader:
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    (ROWS).to_bytes(2, sys.byteorder) + (COLUMNS).to_bytes(2, sys.byteorder)
                    + bytes(4))
        self.slave = slave
        self.original_modes = termios.tcgetattr(slave)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatproto.client", self.server.host,
             str(port or self.server.port),
             str(free_udp_port())],
            stdin=slave, stdout=slave, stderr=slave, cwd=self.server.data_dir,
            env=child_env({"TERM": "xterm"}), start_new_session=True,
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
        screen.wait_for_text("Hans: hello from the other side")

        lines = screen.lines()
        x, y = screen.cursor()
        self.assertEqual(lines[y], "> /msgto Hans half a li")
        self.assertEqual(x, len("> /msgto Hans half a "))
        message_rows = [i for i, line in enumerate(lines)
                        if re.fullmatch(r"\d\d \w{3} \d{4} [\d:]{8}, Hans: hello from the other side",
                                        line)]
        self.assertEqual(len(message_rows), 1, screen.text())
        self.assertLess(message_rows[0], y)
        self.assertGreaterEqual(y, typing_row)
        # The prompt's own rows sit between the message and the typing.
        self.assertIn("Enter one of the following commands", "\n".join(lines[message_rows[0]:y]))

        # The line goes on where it was, and is sent whole.
        os.write(screen.fd, b"\x05ne\r")
        line = hans.expect(re.compile(r", Yoda: "))
        self.assertRegex(line, r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Yoda: half a line$")
        screen.wait_for_text("message sent at ")
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
        screen = self.spawn_client()
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
        # The window shrinks: the prompt's rows are drawn again to fit.
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ,
                    (ROWS).to_bytes(2, sys.byteorder) + (50).to_bytes(2, sys.byteorder) + bytes(4))
        self.process.send_signal(signal.SIGWINCH)
        screen.wait_for(
            lambda: any(line.startswith("Enter one of the following commands")
                        and len(line) < 50 for line in screen.lines()),
            "the prompt rewrapped")
        os.write(screen.fd, b"\r")
        screen.wait_for_text("no other active user")
        screen.wait_for_cursor_line("> ")
        os.write(screen.fd, b"\x03")
        self.assertEqual(self.wait_exit(screen), 0)
        self.assertEqual(termios.tcgetattr(self.slave), self.original_modes)
        self.assertNotIn("Traceback", screen.text())
        self.assertEqual(self.server.read("userlog.txt"), "")

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
