"""
The terminal console (chatproto.terminal) over a fake terminal: its output
is fed to conch's in-memory terminal emulator and the tests assert what is
on the screen and where the cursor is, as twisted.conch's own recvline
tests do. No reactor: progress redraws run on a task.Clock.
"""

import sys

from twisted.conch.insults import helper, insults
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatproto import client as client_module
from chatproto.client import COMMAND_PROMPT, ChatClient
from chatproto.client.terminal import (
    PROGRESS_INTERVAL,
    SHUTDOWN_WAIT,
    RawTerminal,
    TerminalConsole,
    cell_width,
    printable,
)

UP, DOWN, RIGHT, LEFT = b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"
CTRL = {c: bytes([ord(c) - 0x40]) for c in "ABCDEFHKLNPUW"}


class Screen:
    """What a VT102 shows after receiving some output (conch's TerminalBuffer)."""

    def __init__(self, width=80, height=24):
        self.buffer = helper.TerminalBuffer()
        self.buffer.width, self.buffer.height = width, height
        self.parser = insults.ClientProtocol(lambda: self.buffer)
        self.parser.makeConnection(StringTransport())

    def feed(self, data: bytes) -> None:
        self.parser.dataReceived(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in bytes(self.buffer).decode("ascii").split("\n")]

    def text(self) -> list[str]:
        """The non-empty rows, top to bottom."""
        return [line for line in self.lines() if line]

    @property
    def cursor(self) -> tuple[int, int]:
        return self.buffer.x, self.buffer.y

    def cursor_line(self) -> str:
        return self.lines()[self.buffer.y]


class FakeClient:
    def __init__(self, candidates=()):
        self.entered: list[str] = []
        self.ended = 0
        self.candidates = list(candidates)
        self.console = None

    def line_entered(self, text):
        self.entered.append(text)

    def input_ended(self):
        self.ended += 1

    def completion_candidates(self):
        return self.candidates


class FakeRawTerminal:
    def __init__(self, size=(80, 24)):
        self.raw = False
        self.entered = 0
        self.restored = 0
        self._size = size

    def enter(self):
        self.raw = True
        self.entered += 1

    def restore(self):
        if self.raw:
            self.raw = False
            self.restored += 1

    def size(self):
        return self._size


class TerminalTestCase(SynchronousTestCase):
    width, height = 80, 24

    def setUp(self):
        self.clock = Clock()
        self.client = FakeClient(
            ["/msgto", "/activeuser", "/creategroup", "/joingroup", "/logout",
             "Yoda", "Hans", "Jedi", "Jedimasters"])
        self.raw = FakeRawTerminal((self.width, self.height))
        self.console = TerminalConsole(raw_terminal=self.raw, clock=self.clock)
        self.console.attach(self.client)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        self.screen = Screen(self.width, self.height)

    def type(self, data: bytes) -> None:
        self.console.dataReceived(data)

    def look(self) -> Screen:
        self.screen.feed(self.transport.value())
        self.transport.clear()
        return self.screen

    def assertCursorAfter(self, text_before_cursor: str) -> None:
        screen = self.look()
        x, y = screen.cursor
        self.assertEqual(screen.lines()[y].ljust(x)[:x], text_before_cursor)


class EditingTests(TerminalTestCase):
    def test_raw_mode_and_size(self):
        self.assertTrue(self.raw.raw)
        self.assertEqual((self.console.editor.width, self.console.editor.height), (80, 24))

    def test_typing_shows_prompt_and_text(self):
        self.console.prompt("Username: ")
        self.type(b"Yoda")
        self.assertEqual(self.look().text(), ["Username: Yoda"])
        self.assertCursorAfter("Username: Yoda")

    def test_cursor_keys_insert_in_the_middle(self):
        self.console.prompt("Username: ")
        self.type(b"Yda" + LEFT + LEFT + b"o")
        self.assertEqual(self.look().cursor_line(), "Username: Yoda")
        self.assertCursorAfter("Username: Yo")
        self.type(RIGHT + RIGHT + RIGHT + b"!")  # past the end: stays at the end
        self.assertEqual(self.look().cursor_line(), "Username: Yoda!")
        self.type(HOME + b">" + END + b"<")
        self.assertEqual(self.look().cursor_line(), "Username: >Yoda!<")
        self.type(CTRL["A"] + DELETE + CTRL["E"] + b"\x7f")
        self.assertEqual(self.look().cursor_line(), "Username: Yoda!")
        self.type(CTRL["B"] + CTRL["H"] + CTRL["F"] + b"?")
        self.assertEqual(self.look().cursor_line(), "Username: Yod!?")
        self.assertCursorAfter("Username: Yod!?")

    def test_kill_keys(self):
        self.console.prompt("> ")
        self.type(b"/msgto Yoda hello there" + CTRL["W"])
        self.assertEqual(self.look().cursor_line(), "> /msgto Yoda hello")
        self.type(CTRL["W"] + CTRL["W"])
        self.assertEqual(self.look().cursor_line(), "> /msgto")
        self.type(b"Hans hi" + LEFT * 3 + CTRL["K"])
        self.assertEqual(self.look().cursor_line(), "> /msgto Hans")
        self.type(LEFT * 4 + CTRL["U"])
        self.assertEqual(self.look().cursor_line(), "> Hans")
        self.assertCursorAfter("> ")
        self.type(b"\r")
        self.assertEqual(self.client.entered, ["Hans"])

    def test_enter_delivers_the_line_and_keeps_it_on_screen(self):
        self.console.prompt("Username: ")
        self.type(b"Yoda\r")
        self.assertEqual(self.client.entered, ["Yoda"])
        self.console.prompt("Password: ", secret=True)
        self.assertEqual(self.look().text(), ["Username: Yoda", "Password:"])
        self.assertCursorAfter("Password: ")

    def test_login_lines_stay_out_of_the_history(self):
        self.console.prompt("Username: ")
        self.type(b"Yoda\r")
        self.console.command_prompt("> ")
        self.type(UP)
        self.assertEqual(self.console.editor.text(), "")
        self.type(b"/activeuser\r")
        self.console.command_prompt("> ")
        self.type(UP)
        self.assertEqual(self.console.editor.text(), "/activeuser")

    def test_changepassword_on_one_line_is_masked_and_forgotten(self):
        self.console.command_prompt("> ")
        self.type(b"/changepassword wise@!man n3w-one\r")
        self.assertEqual(self.client.entered, ["/changepassword wise@!man n3w-one"])
        self.assertEqual(self.look().text(), ["> /changepassword ********"])
        self.assertNotIn(b"wise", self.transport.value() + bytes(self.screen.buffer))
        self.console.command_prompt("> ")
        self.type(UP)
        self.assertEqual(self.console.editor.text(), "")

    def test_password_is_not_echoed(self):
        self.console.prompt("Password: ", secret=True)
        self.type(b"wise@!man")
        self.assertEqual(self.look().text(), ["Password:"])
        self.assertNotIn(b"wise", self.screen.parser.transport.value() + bytes(self.screen.buffer))
        self.type(LEFT + UP + b"\t\r")
        self.assertEqual(self.client.entered, ["wise@!man"])
        self.assertEqual(self.look().text(), ["Password:"])
        # Never in the history either.
        self.console.prompt("> ")
        self.type(UP)
        self.assertEqual(self.console.editor.text(), "")

    def test_history_up_and_down(self):
        for line in ("/activeuser", "/msgto Yoda hi"):
            self.console.command_prompt("> ")
            self.type(line.encode() + b"\r")
        self.console.command_prompt("> ")
        self.type(b"half")
        self.type(UP)
        self.assertEqual(self.look().cursor_line(), "> /msgto Yoda hi")
        self.type(UP)
        self.assertEqual(self.look().cursor_line(), "> /activeuser")
        self.type(UP)  # the oldest: stays
        self.assertEqual(self.look().cursor_line(), "> /activeuser")
        self.type(DOWN + DOWN)
        self.assertEqual(self.look().cursor_line(), "> half")
        self.assertCursorAfter("> half")
        self.type(CTRL["P"] + b"\r")
        self.assertEqual(self.client.entered[-1], "/msgto Yoda hi")

    def test_non_ascii_input(self):
        self.console.command_prompt("> ")
        self.type("héllo wörld".encode())
        self.type(LEFT * 5 + b"\x7f")
        self.assertEqual(self.console.editor.text(), "héllowörld")
        self.type(b"\r")
        self.assertEqual(self.client.entered, ["héllowörld"])
        self.console.command_prompt("> ")
        self.type(UP + b"!\r")
        self.assertEqual(self.client.entered[-1], "héllowörld!")

    def test_pasted_lines(self):
        self.type(b"one\r\ntwo\rthree\n\n")
        self.console.prompt("> ")
        self.console.prompt("> ")
        self.console.prompt("> ")
        self.console.prompt("> ")
        self.assertEqual(self.client.entered, ["one", "two", "three", ""])

    def test_split_utf8_sequence(self):
        self.console.prompt("> ")
        data = "é".encode()
        self.type(data[:1])
        self.type(data[1:] + b"\r")
        self.assertEqual(self.client.entered, ["é"])

    def test_control_characters_are_not_inserted(self):
        self.console.prompt("> ")
        self.type(b"a\x0fb\x1b[99~c")
        self.assertEqual(self.console.editor.text(), "abc")

    def test_long_line_scrolls_instead_of_wrapping(self):
        self.console.prompt("> ")
        line = "".join(str(i % 10) for i in range(200))
        self.type(line.encode())
        screen = self.look()
        self.assertEqual(len(screen.text()), 1)
        row = screen.cursor_line()
        self.assertTrue(row.startswith("> "))
        self.assertLess(len(row), self.width)
        self.assertTrue(line.endswith(row[2:]))
        self.assertCursorAfter(row)
        self.type(HOME)
        row = self.look().cursor_line()
        self.assertTrue(line.startswith(row[2:]))
        self.assertCursorAfter("> ")
        self.type(b"\r")
        self.assertEqual(self.client.entered, [line])

    def test_wide_characters(self):
        self.assertEqual(cell_width("日本"), 4)
        self.assertEqual(cell_width("e\u0301"), 1)
        self.console.prompt("> ")
        self.type(("日" * 60).encode())
        written = self.transport.value().decode()
        last_row = written.rsplit("\r", 1)[-1]
        self.assertLessEqual(cell_width(last_row.split("\x1b")[0]), self.width - 1)

    def test_redraw(self):
        self.console.prompt("> ")
        self.type(b"abc" + LEFT + CTRL["L"])
        screen = self.look()
        self.assertEqual(screen.text(), ["> abc"])
        self.assertEqual(screen.cursor, (4, 0))


class MessageAboveTests(TerminalTestCase):
    def test_message_above_half_typed_line(self):
        self.console.prompt("> ")
        self.type(b"/msgto Yoda half a li" + LEFT * 4)
        self.console.show("01 Jun 2022 21:30:04, Hans: hello there")
        screen = self.look()
        self.assertEqual(screen.text(), ["01 Jun 2022 21:30:04, Hans: hello there",
                                         "> /msgto Yoda half a li"])
        self.assertCursorAfter("> /msgto Yoda half ")
        # Typing goes on where it was.
        self.type(b"X")
        self.assertEqual(self.look().cursor_line(), "> /msgto Yoda half Xa li")

    def test_many_messages_keep_order_and_the_line(self):
        self.console.prompt("> ")
        self.type(b"abc")
        for i in range(30):
            self.console.show(f"message {i}")
        screen = self.look()
        self.assertEqual(screen.text()[-3:], ["message 28", "message 29", "> abc"])
        self.assertEqual(screen.cursor[1], self.height - 1)
        self.assertCursorAfter("> abc")

    def test_message_without_prompt(self):
        self.console.show("Welcome to chatproto!")
        self.assertEqual(self.look().text(), ["Welcome to chatproto!"])
        self.assertEqual(self.screen.cursor, (0, 1))

    def test_escape_codes_from_the_server_are_neutralised(self):
        self.console.prompt("> ")
        self.console.show("evil \x1b[2J\x1bc\x07 text")
        self.assertNotIn(b"\x1b[2J", self.transport.value())
        self.assertEqual(self.look().text()[0], "evil ^[[2J^[c^G text")
        self.assertEqual(printable("a\tb\x9bc"), "a    b\ufffdc")

    def test_long_prompt_gets_rows_of_its_own(self):
        self.console.prompt(COMMAND_PROMPT)
        self.type(b"/activeuser")
        screen = self.look()
        lines = screen.text()
        self.assertEqual(lines[-1], "> /activeuser")
        self.assertEqual(" ".join(lines[:-1]).replace("  ", " "), COMMAND_PROMPT.strip())
        self.type(b"\r")
        self.assertEqual(self.client.entered, ["/activeuser"])
        # Once entered, the line stays with the short prompt; the long one is
        # drawn again with the next prompt only.
        self.console.show("Hans, 127.0.0.1, 5000, active since 01 Jun 2022 21:30:04.")
        self.assertEqual(self.look().text(), [
            "> /activeuser", "Hans, 127.0.0.1, 5000, active since 01 Jun 2022 21:30:04.", ""][:2])
        self.console.prompt(COMMAND_PROMPT)
        self.assertEqual(self.look().text()[-1], ">")
        self.assertIn("Enter one of the following commands", " ".join(self.screen.text()))

    def test_typed_ahead_lines_wait_for_the_prompt(self):
        self.type(b"Yoda\r")
        self.assertEqual(self.client.entered, [])
        self.assertEqual(self.look().text(), [])
        self.console.prompt("Username: ")
        self.assertEqual(self.client.entered, ["Yoda"])
        # Shown with its prompt, as if typed after it.
        self.assertEqual(self.look().text(), ["Username: Yoda"])
        self.type(b"wise@!man\r")
        self.console.prompt("Password: ", secret=True)
        self.assertEqual(self.client.entered, ["Yoda", "wise@!man"])
        self.assertEqual(self.look().text(), ["Username: Yoda", "Password:"])
        self.assertNotIn(b"wise", bytes(self.screen.buffer))


class CompletionTests(TerminalTestCase):
    def setUp(self):
        super().setUp()
        self.console.prompt("> ")

    def test_command(self):
        self.type(b"/ms\t")
        self.assertEqual(self.console.editor.text(), "/msgto ")

    def test_user_name(self):
        self.type(b"/msgto Yo\thi")
        self.assertEqual(self.console.editor.text(), "/msgto Yoda hi")

    def test_common_prefix_then_list(self):
        self.type(b"/joingroup J\t")
        self.assertEqual(self.console.editor.text(), "/joingroup Jedi")
        self.type(b"\t")
        self.assertEqual(self.look().text()[-1], "> /joingroup Jedi")
        self.type(b"\t")
        self.assertEqual(self.look().text(), ["Jedi  Jedimasters", "> /joingroup Jedi"])
        self.assertCursorAfter("> /joingroup Jedi")

    def test_ambiguous_command(self):
        self.type(b"/\t\t")
        listed = self.look().text()[0].split()
        self.assertEqual(listed, sorted(c for c in self.client.candidates if c.startswith("/")))

    def test_no_match(self):
        self.type(b"/msgto Zz\t")
        self.assertEqual(self.console.editor.text(), "/msgto Zz")

    def test_in_the_middle(self):
        self.type(b"/msgto Ha hello" + LEFT * 6 + b"\t")
        self.assertEqual(self.console.editor.text(), "/msgto Hans hello")
        self.assertCursorAfter("> /msgto Hans ")

    def test_commands_only_in_first_word(self):
        self.type(b"/msgto /lo\t")
        self.assertEqual(self.console.editor.text(), "/msgto /lo")


class ProgressTests(TerminalTestCase):
    def test_progress_line_shown_updated_and_removed(self):
        self.console.prompt("> ")
        self.type(b"typing")
        self.console.progress("send:1", "Sending a.mp4:  10.0%")
        self.assertEqual(self.look().text(), ["> typing"])  # drawn at the next tick
        self.clock.advance(PROGRESS_INTERVAL)
        self.assertEqual(self.look().text(), ["Sending a.mp4:  10.0%", "> typing"])
        for percent in (20, 30, 40):
            self.console.progress("send:1", f"Sending a.mp4:  {percent}.0%")
        self.console.progress("recv:2", "Receiving b.mp4:   5.0%")
        self.clock.advance(PROGRESS_INTERVAL)
        self.assertEqual(self.look().text(), ["Sending a.mp4:  40.0%", "Receiving b.mp4:   5.0%",
                                              "> typing"])
        self.assertCursorAfter("> typing")
        self.console.show("a message")
        self.assertEqual(self.look().text(), ["a message", "Sending a.mp4:  40.0%",
                                              "Receiving b.mp4:   5.0%", "> typing"])
        self.console.progress("send:1", None)
        self.console.show("a.mp4 has been uploaded")
        self.assertEqual(self.look().text(), ["a message", "a.mp4 has been uploaded",
                                              "Receiving b.mp4:   5.0%", "> typing"])
        self.console.progress("recv:2", None)
        self.assertEqual(self.look().text(), ["a message", "a.mp4 has been uploaded", "> typing"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_progress_lines_never_wrap(self):
        self.console.progress("k", "x" * 200)
        self.clock.advance(PROGRESS_INTERVAL)
        screen = self.look()
        self.assertEqual(screen.text(), ["x" * (self.width - 1)])

    def test_removing_an_unknown_key_draws_nothing(self):
        self.transport.clear()
        self.console.progress("nothing", None)
        self.assertEqual(self.transport.value(), b"")


class ExitTests(TerminalTestCase):
    def test_ctrl_c(self):
        self.console.prompt("> ")
        self.type(b"half\x03")
        self.assertEqual(self.client.ended, 1)

    def test_ctrl_d_on_empty_line(self):
        self.console.prompt("> ")
        self.type(b"\x04")
        self.assertEqual(self.client.ended, 1)

    def test_ctrl_d_deletes_when_there_is_text(self):
        self.console.prompt("> ")
        self.type(b"ab" + LEFT + b"\x04")
        self.assertEqual(self.client.ended, 0)
        self.assertEqual(self.console.editor.text(), "a")

    def test_close_erases_live_area_and_restores(self):
        self.console.prompt(COMMAND_PROMPT)
        self.console.progress("k", "Sending")
        self.type(b"half")
        self.console.show("Bye, Yoda!")
        d = self.console.close()
        self.assertFalse(self.raw.raw)
        self.assertTrue(self.transport.disconnecting)
        screen = self.look()
        self.assertEqual(screen.text(), ["Bye, Yoda!"])
        self.assertEqual(screen.cursor, (0, 1))
        self.assertNoResult(d)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(self.client.ended, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Late output is dropped, not written to a closed terminal.
        self.console.show("late")
        self.console.prompt("> ")
        self.console.progress("k", "x")
        self.assertEqual(self.transport.value(), b"")
        self.assertIs(self.console.close(), d)
        self.assertEqual(self.raw.restored, 1)

    def test_lost_terminal_ends_input_and_restores(self):
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.client.ended, 1)
        self.assertFalse(self.raw.raw)
        self.successResultOf(self.console.close())

    def test_close_before_connection(self):
        console = TerminalConsole(raw_terminal=None, clock=self.clock)
        console.show("nothing to draw on")
        self.successResultOf(console.close())


class FakeReactor(Clock):
    def __init__(self):
        super().__init__()
        self.triggers = {}

    def addSystemEventTrigger(self, phase, event, f, *args):
        key = object()
        self.triggers[key] = (phase, event, f)
        return key

    def removeSystemEventTrigger(self, key):
        del self.triggers[key]


class SignalTests(TerminalTestCase):
    """SIGINT/SIGTERM stop the reactor: the console leaves as for Ctrl-C."""

    def setUp(self):
        super().setUp()
        self.reactor = FakeReactor()
        self.console = TerminalConsole(raw_terminal=self.raw, clock=self.reactor)
        self.console.attach(self.client)
        self.client.input_ended = self.console.close
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)

    def shutdown(self):
        [key] = self.reactor.triggers
        phase, event, f = self.reactor.triggers.pop(key)  # fired: gone
        self.assertEqual((phase, event), ("before", "shutdown"))
        return f()

    def test_shutdown_waits_for_the_tidy_terminal(self):
        self.console.prompt("> ")
        self.type(b"half")
        d = self.shutdown()
        self.assertFalse(self.raw.raw)
        self.assertEqual(self.look().text(), [])
        self.assertNoResult(d)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(self.reactor.triggers, {})
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_shutdown_waits_a_little_only(self):
        d = self.shutdown()
        self.reactor.advance(SHUTDOWN_WAIT)
        self.successResultOf(d)

    def test_close_removes_the_trigger(self):
        self.console.close()
        self.assertEqual(self.reactor.triggers, {})


class NarrowTerminalTests(TerminalTestCase):
    width, height = 30, 6

    def test_many_progress_lines_fit_the_screen(self):
        for i in range(10):
            self.console.progress(str(i), f"transfer {i}")
        self.clock.advance(PROGRESS_INTERVAL)
        self.console.prompt("> ")
        rows = self.look().text()
        self.assertEqual(len(rows), self.height - 1)
        self.assertEqual(rows[-2], "(and 7 more transfers)")
        self.assertEqual(rows[-1], ">")

    def test_resize(self):
        self.console.prompt("> ")
        self.type(b"x" * 50)
        self.console.editor.terminalSize(60, 10)
        self.assertEqual(self.console.editor.width, 60)


class WithChatClientTests(TerminalTestCase):
    """The real ChatClient driving the terminal console."""

    def setUp(self):
        super().setUp()
        self.exits = []
        self.chat = ChatClient(self.console, 6000, self.exits.append)
        self.sent = []
        server = type("Server", (), {})()
        server.send = self.sent.append
        server.transport = StringTransport()
        self.chat.connected(server)

    def login(self):
        self.type(b"Yoda\r")
        self.type(b"wise@!man\r")
        self.assertEqual(self.sent, ["LOGIN Yoda wise@!man 6000"])
        self.chat.server_line("OK", "Welcome to chatproto!")
        # Names for completion and /chat, asked once; what was missed since the last read.
        self.assertEqual(self.sent[1:], ["/users", "/groups", "/unread"])
        for line in ("DATA Hans active", "DATA Yoda active", "DATA leia inactive", "OK",
                     "OK No groups.", "OK No unread messages."):
            self.chat.server_line(*line.partition(" ")[::2])
        del self.sent[:]

    def test_login_and_message_above(self):
        self.login()
        screen = self.look()
        self.assertEqual(screen.text()[:3], ["Username: Yoda", "Password:", "Welcome to chatproto!"])
        self.assertTrue(screen.text()[3].startswith("Commands: /accept /activeuser /changepassword /chat"))
        self.assertNotIn("wise", "\n".join(screen.lines()))
        self.type(b"/msgto Hans half")
        self.chat.server_line("MSG", "01 Jun 2022 21:30:04, Hans: are you there?")
        rows = self.look().text()
        self.assertEqual(rows[-3], "21:30 <Hans> are you there?")
        self.assertEqual(rows[-2].strip(), "Yoda | 1:all | windows: 2:Hans")
        self.assertEqual(rows[-1], "> /msgto Hans half")
        self.assertCursorAfter("> /msgto Hans half")

    def test_completion_learns_names(self):
        self.login()
        self.chat.server_line("DATA", "Hans, 127.0.0.1, 5000, active since 01 Jun 2022 21:30:04.")
        self.chat.server_line("MSG", "01 Jun 2022 21:30:05, Jedi, luke: hi all")
        self.chat.server_line(
            "NOTICE", "You have been invited to the group chat Sith by vader. "
                      "Type /joingroup Sith to join.")
        self.chat.server_line("MSG", "01 Jun 2022 21:30:06, leia: hello")
        self.chat.server_line(
            "OK", "Group chat room has been created, room name: Rebels, users in this room: "
                  "Yoda obiwan")
        names = [c for c in self.chat.completion_candidates() if not c.startswith("/")]
        self.assertEqual(names, sorted(["Hans", "Jedi", "luke", "Sith", "vader", "leia",
                                        "Rebels", "obiwan"]))
        commands = [c for c in self.chat.completion_candidates() if c.startswith("/")]
        self.assertEqual(commands, sorted(commands))
        self.assertTrue(set(client_module.COMMANDS) < set(commands))
        self.assertIn("/chat", commands)
        self.type(b"/msgto ob\t")
        self.assertEqual(self.console.editor.text(), "/msgto obiwan ")

    def test_ctrl_d_exits_zero(self):
        self.login()
        self.type(b"\x04")
        self.assertTrue(self.chat.server.transport.disconnecting)
        self.assertFalse(self.raw.raw)
        self.assertEqual(self.exits, [])
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.exits, [0])

    def test_lost_server_one_line_exit_one(self):
        self.login()
        self.type(b"half")
        self.chat.server_lost()
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.exits, [1])
        rows = self.look().text()
        self.assertEqual(rows[-1], client_module.CONNECTION_LOST)
        self.assertFalse(self.raw.raw)

    def test_transfer_progress_lines_end_with_the_transfer(self):
        from twisted.internet import defer

        sends = []

        class Transfers:
            def send_file(self, filename, username, address, **kwargs):
                sends.append(defer.Deferred())
                return sends[-1]

            def stop(self):
                pass

        self.chat.transfers = Transfers()
        self.chat.file_exists = lambda path: True
        self.login()
        self.type(b"/p2pvideo Hans clip.mp4\r")
        self.chat.server_line("PEER", "Hans 127.0.0.1 7000 " + "ab" * 8 + " " + "cd" * 32)
        self.chat.server_line("OK", "")
        self.chat.transfer_progress(1, "send", "clip.mp4", 512, 1024, 2048)
        self.chat.transfer_progress(2, "receive", "talk.mp4", 1 << 20, 4 << 20, 1 << 20)
        self.clock.advance(PROGRESS_INTERVAL)
        rows = self.look().text()
        self.assertIn("Sending clip.mp4:  50.0% (0.0/0.0 MiB, 0.0 MiB/s)", rows)
        self.assertIn("Receiving talk.mp4:  25.0% (1.0/4.0 MiB, 1.0 MiB/s)", rows)
        sends[0].callback(None)
        self.chat.transfer_received("Hans", "talk.mp4", "/tmp/Hans_talk.mp4")
        rows = self.look().text()
        self.assertNotIn("Sending", "\n".join(rows))
        self.assertNotIn("Receiving", "\n".join(rows))
        uploaded = rows.index("clip.mp4 has been uploaded")
        self.assertEqual(rows[uploaded + 1], "A file (talk.mp4) has been received from Hans")
        self.assertEqual(rows[uploaded + 2].strip(), "Yoda | 1:all")
        self.assertEqual(rows[-1], ">")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RawTerminalTests(SynchronousTestCase):
    """RawTerminal on a real pseudo-terminal (no process, no reactor)."""

    def setUp(self):
        try:
            import fcntl
            import termios
        except ImportError:
            raise SkipTest("needs POSIX terminals") from None
        import os

        self.termios = termios
        master, self.slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, self.slave)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ,
                    (33).to_bytes(2, sys.byteorder) + (101).to_bytes(2, sys.byteorder) + bytes(4))

    def test_enter_and_restore(self):
        termios = self.termios
        original = termios.tcgetattr(self.slave)
        raw = RawTerminal(self.slave)
        raw.enter()
        iflag, oflag, _cflag, lflag = termios.tcgetattr(self.slave)[:4]
        self.assertFalse(lflag & (termios.ECHO | termios.ICANON | termios.ISIG))
        self.assertFalse(iflag & termios.IXON)
        self.assertTrue(oflag & termios.OPOST)  # a stray print still starts at the margin
        self.assertEqual(raw.size(), (101, 33))
        raw.restore()
        self.assertEqual(termios.tcgetattr(self.slave), original)
        raw.restore()  # once only: a later change is not undone
        self.assertEqual(termios.tcgetattr(self.slave), original)

    def test_size_without_terminal(self):
        import os

        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        self.assertEqual(RawTerminal(read).size(), (80, 24))
