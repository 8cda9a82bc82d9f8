"""
The terminal client (ChatClient on a TerminalConsole) over a fake terminal,
the renderer and the conversation model, the reconnector on a task.Clock and
the configuration file. No reactor, no sockets.
"""

import os
import tempfile

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatproto import client as client_module
from chatproto.client import config
from chatproto.client.conversations import Conversations
from chatproto.client.reconnect import Reconnector
from chatproto.client.render import Renderer, parse_history, parse_message, plain

from .test_terminal import FakeRawTerminal, Screen, TerminalConsole

UP = b"\x1b[A"


class FakeReconnector:
    def __init__(self):
        self.started = 0
        self.succeeded_calls = 0
        self.stopped = False

    def start(self):
        self.started += 1

    def succeeded(self):
        self.succeeded_calls += 1

    def stop(self):
        self.stopped = True


class FakeServer:
    def __init__(self):
        self.sent = []
        self.transport = StringTransport()

    def send(self, line):
        self.sent.append(line)


class TerminalClientTestCase(SynchronousTestCase):
    width, height = 80, 24
    username = None

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1654119004)
        self.raw = FakeRawTerminal((self.width, self.height))
        self.console = TerminalConsole(raw_terminal=self.raw, clock=self.clock)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        self.screen = Screen(self.width, self.height)
        self.exits = []
        self.reconnector = FakeReconnector()
        self.chat = client_module.ChatClient(
            self.console, 6000, self.exits.append, clock=self.clock, reconnector=self.reconnector,
            username=self.username)
        self.server = FakeServer()
        self.chat.connected(self.server)

    def type(self, data: bytes) -> None:
        self.console.dataReceived(data)

    def answer(self, *lines):
        for line in lines:
            self.chat.server_line(*line.partition(" ")[::2])

    def look(self) -> list[str]:
        self.screen.feed(self.transport.value())
        self.transport.clear()
        return self.screen.text()

    def status(self) -> str:
        return self.look()[-2].strip()

    def sent(self) -> list[str]:
        sent, self.server.sent = self.server.sent, []
        return sent

    def login(self, groups=("OK No groups.",), unread=("OK No unread messages.",)):
        if self.username is None:
            self.type(b"Yoda\r")
        self.type(b"wise@!man\r")
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.answer("OK Welcome to chatproto!")
        self.assertEqual(self.sent(), ["/users", "/groups", "/unread"])
        self.answer("DATA Hans active", "DATA Yoda active", "DATA leia inactive", "DATA luke active",
                    "OK", *groups, *unread)

    def open_hans(self):
        self.type(b"/chat Hans\r")
        self.assertEqual(self.sent(), ["/history Hans 20"])
        self.answer("DATA #1 01 Jun 2022 21:30:04, Hans: are you there?",
                    "DATA #2 01 Jun 2022 21:31:00, Yoda: yes",
                    "OK")
        self.assertEqual(self.sent(), ["/users"])  # who is active now
        self.answer("DATA Hans active", "DATA Yoda active", "OK")


class ConversationTests(TerminalClientTestCase):
    def test_open_a_conversation_with_its_history_then_plain_text(self):
        self.login()
        self.look()
        self.open_hans()
        rows = self.look()
        # The screen shows this conversation only, with SEQs for /deletemsg.
        self.assertEqual(rows, ["--- 01 Jun 2022 ---", "#1 21:30 <Hans> are you there?", "#2 21:31 <Yoda> yes",
                                "-!- Hans is active", " Yoda | 2:Hans | windows: 2:Hans", "[Hans]"])
        self.type(b"how are you?\r")
        self.assertEqual(self.sent(), ["/msgto Hans how are you?"])
        self.assertNotIn("how are you?", "\n".join(self.look()))  # not echoed: shown once sent
        self.answer("OK message sent at 01 Jun 2022 21:32:10.")
        rows = self.look()
        self.assertEqual(rows[-3], "21:32 <Yoda> how are you?")
        self.assertEqual(rows[-1], "[Hans]")
        self.answer("MSG 01 Jun 2022 21:33:00, Hans: fine")
        self.assertEqual(self.look()[-3], "21:33 <Hans> fine")

    def test_unread_counts_for_other_conversations(self):
        self.login(groups=("DATA Jedi joined group", "OK"))
        self.open_hans()
        self.type(b"half typed")
        self.answer("MSG 01 Jun 2022 21:40:00, Jedi, luke: hi all")
        rows = self.look()
        self.assertNotIn("hi all", "\n".join(rows))
        self.assertEqual(rows[-2].strip(), "Yoda | 2:Hans | windows: 2:Hans 3:Jedi | unread: 3:Jedi(1)")
        self.assertEqual(rows[-1], "[Hans] half typed")
        self.answer("MSG 01 Jun 2022 21:40:05, Jedi, luke: anyone?",
                    "MSG 01 Jun 2022 21:40:06, leia: psst")
        self.assertEqual(self.status(),
                         "Yoda | 2:Hans | windows: 2:Hans 3:Jedi 4:leia | unread: 3:Jedi(2) 4:leia(1)")
        self.type(b"\x1b3")  # Alt-3
        rows = self.look()
        self.assertEqual(rows, ["21:40 <luke> hi all", "21:40 <luke> anyone?",
                                " Yoda | 3:Jedi | windows: 2:Hans 3:Jedi 4:leia | unread: 4:leia(1)",
                                "[Jedi] half typed"])
        self.type(b"\x15/win 1\r")
        rows = self.look()
        self.assertIn("21:40 [Jedi] <luke> hi all", rows)
        self.assertIn("21:40 <leia> psst", rows)
        self.assertEqual(rows[-1], "> ".strip())
        self.type(b"/chat\r")
        self.assertEqual(self.look()[-3], "Conversations: 1:all 2:Hans 3:Jedi 4:leia(1)")
        # Only Alt-3 asked the server anything: the SEQ of what it showed, to mark Jedi read
        # (ReadMarkerTests); switching windows and listing them are the client's own.
        self.assertEqual(self.sent(), ["/grouphistory Jedi 20"])

    def test_several_devices_unread_at_login_sent_and_read_elsewhere(self):
        self.login(groups=("DATA Jedi joined group", "OK"),
                   unread=("DATA Hans 2", "DATA #Jedi 1", "OK"))
        rows = self.look()
        self.assertIn("unread: Hans(2) #Jedi(1)", [row.strip() for row in rows])
        self.assertEqual(rows[-2].strip(), "Yoda | 1:all | windows: 2:Hans 3:Jedi | unread: 2:Hans(2) 3:Jedi(1)")
        # Read on another device: cleared here.
        self.answer("READ Hans 7")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Hans 3:Jedi | unread: 3:Jedi(1)")
        # Sent from another device: in its conversation, as one's own, not unread.
        self.answer("SENT 01 Jun 2022 21:41:00, to #Jedi: from my phone")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Hans 3:Jedi | unread: 3:Jedi(1)")
        self.type(b"\x1b3")  # Alt-3
        self.assertIn("21:41 <Yoda> from my phone", [row.strip() for row in self.look()])
        self.answer("SENT 01 Jun 2022 21:42:00, to leia: hello from the laptop")
        self.assertEqual(self.status(), "Yoda | 3:Jedi | windows: 2:Hans 3:Jedi 4:leia")

    def test_message_to_another_user_from_a_conversation_and_close(self):
        self.login()
        self.open_hans()
        self.type(b"/msgto leia psst\r")
        self.assertEqual(self.sent(), ["/msgto leia psst"])
        self.answer("OK message sent at 01 Jun 2022 21:40:00.")
        rows = self.look()
        self.assertEqual(rows[-3:], ["-> leia: psst", " Yoda | 2:Hans | windows: 2:Hans 3:leia", "[Hans]"])
        self.type(b"/close\r")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:leia")
        self.assertIn("21:40 [leia] <Yoda> psst", self.look())
        self.type(b"/close\r")
        self.assertEqual(self.look()[-3], "Window 1 stays open (/quit leaves).")

    def test_no_such_window(self):
        self.login()
        self.type(b"/win 4\r")
        self.assertEqual(self.look()[-3:], ["No window 4 (1-1).", " Yoda | 1:all", ">"])
        self.type(b"\x1b7")  # Alt-7
        self.assertEqual(self.look()[-3], "No window 7 (1-1).")
        self.type(b"/win\r")
        self.assertEqual(self.look()[-3], "Conversations: 1:all")
        self.type(b"/window 1\r")
        self.assertEqual(self.look()[-2:], [" Yoda | 1:all", ">"])
        self.type(b"/win x\r")
        self.assertEqual(self.look()[-3:], ["Usage: /win N", " Yoda | 1:all", ">"])

    def test_a_group_found_by_asking_and_its_members(self):
        self.login()
        self.type(b"/chat jedi\r")
        self.assertEqual(self.sent(), ["/history jedi 20"])
        self.answer("ERR No such user: jedi")
        self.assertEqual(self.sent(), ["/grouphistory jedi 20"])
        self.answer("DATA #7 01 Jun 2022 21:30:04, Jedi, luke: may the force", "OK")
        self.assertEqual(self.sent(), ["/members Jedi"])
        self.answer("DATA Yoda owner active", "DATA luke joined active", "DATA leia invited inactive", "OK")
        rows = self.look()
        self.assertEqual(rows[-4:], ["#7 21:30 <luke> may the force",
                                     "Members of Jedi: @Yoda luke leia (invited, offline)",
                                     " Yoda | 2:Jedi | windows: 2:Jedi", "[Jedi]"])
        self.type(b"hello\r")
        self.assertEqual(self.sent(), ["/groupmsg Jedi hello"])
        self.answer("OK Group chat message sent.")
        self.assertRegex(self.look()[-3], r"^\d\d:\d\d <Yoda> hello$")
        self.answer("NOTICE obiwan has joined the group chat Jedi.")
        self.assertEqual(self.look()[-3], "-!- obiwan has joined the group chat Jedi.")

    def test_hash_names_a_group_and_clear(self):
        self.login()
        self.type(b"/chat #Jedi\r")
        self.assertEqual(self.sent(), ["/grouphistory Jedi 20"])
        self.answer("DATA #1 01 Jun 2022 21:30:04, Jedi, luke: hi", "OK", "OK")
        self.assertEqual(self.sent(), ["/members Jedi"])
        self.assertIn("#1 21:30 <luke> hi", self.look())
        self.type(b"/clear\r")
        self.assertEqual(self.look(), [" Yoda | 2:Jedi | windows: 2:Jedi", "[Jedi]"])

    def test_no_such_name(self):
        self.login()
        self.type(b"/chat Palpatine\r")
        self.answer("ERR No such user: Palpatine", "ERR The group chat does not exist.")
        self.assertEqual(self.look()[-3], "No such user or group: Palpatine")
        self.assertEqual(self.status(), "Yoda | 1:all")

    def test_a_server_without_history(self):
        self.login()
        self.type(b"/chat Hans\r")
        self.answer("ERR Error. Invalid command!", "ERR Error. Invalid command!")
        rows = self.look()
        self.assertEqual(rows, ["-!- Hans is active", " Yoda | 2:Hans | windows: 2:Hans", "[Hans]"])
        self.type(b"/chat leia\r")
        self.answer("ERR Error. Invalid command!", "ERR Error. Invalid command!")
        self.assertEqual(self.look()[-3], "-!- leia is not logged in now")

    def test_plain_text_without_a_conversation(self):
        self.login()
        self.type(b"hello\r")
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.look()[-3], client_module.NO_CONVERSATION)

    def test_help_is_the_clients(self):
        self.login()
        self.type(b"/help\r")
        self.assertEqual(self.sent(), [])
        text = "\n".join(plain(line) for line in self.chat.conversations.current.lines)
        for form in ("/chat [NAME]", "/win N", "/history [USERNAME] [N]", "/members [GROUPNAME]", "/logout"):
            self.assertIn(form, text)

    def test_command_list_shown_once(self):
        self.login()
        self.type(b"/activeuser\r")
        self.answer("OK no other active user")
        text = "\n".join(self.look())
        self.assertEqual(text.count("Commands: "), 1)
        self.assertNotIn("Enter one of the following commands", text)

    def test_commands_in_a_conversation_default_to_it(self):
        self.login()
        self.open_hans()
        self.type(b"/history 5\r")
        self.assertEqual(self.sent(), ["/history Hans 5"])
        self.answer("OK No messages.")
        self.type(b"/history leia\r")
        self.assertEqual(self.sent(), ["/history leia"])
        self.answer("OK No messages.")
        self.type(b"/members\r")
        self.assertEqual(self.sent(), ["/members"])  # not a group: the server's usage error
        self.answer("ERR Usage: /members GROUPNAME")
        self.assertEqual(self.look()[-3], "Usage: /members GROUPNAME")
        self.type(b"/chat jedi\r")
        self.answer("ERR No such user: jedi", "OK No messages.", "OK")
        self.sent()
        self.type(b"/history\r")
        self.assertEqual(self.sent(), ["/grouphistory jedi"])
        self.answer("OK No messages.")
        self.type(b"/members\r")
        self.assertEqual(self.sent(), ["/members jedi"])

    def test_history_command_shows_seqs(self):
        self.login()
        self.type(b"/grouphistory Jedi 2\r")
        self.answer("DATA #11 01 Jun 2022 21:30:04, Jedi, luke: one",
                    "DATA #12 02 Jun 2022 08:00:00, Jedi, Yoda: two", "OK")
        self.assertEqual(self.look()[-4:-2], ["#11 21:30 [Jedi] <luke> one", "#12 08:00 [Jedi] <Yoda> two"])

    def test_resize_redraws_without_stale_rows(self):
        self.login()
        for i in range(40):
            self.answer(f"MSG 01 Jun 2022 21:30:{i:02d}, Hans: message {i} " + "x" * 60)
        self.type(b"half")
        self.console.editor.terminalSize(50, 24)
        self.screen = Screen(50, 24)  # the terminal's own idea of its rows is gone
        rows = self.look()
        self.assertEqual(rows[-1], "> half")
        self.assertEqual(rows[-2].strip(), "Yoda | 1:all | windows: 2:Hans")
        self.assertEqual(sum("Yoda | 1:all" in row for row in rows), 1)
        self.assertEqual(len(self.screen.lines()), 24)
        # Long messages are cut at word boundaries, their further rows indented to the text.
        self.assertEqual(rows[-4:-2], ["21:30 <Hans> message 39",
                                       "             " + "x" * 36, "             " + "x" * 24][1:])
        self.assertTrue(all(len(row) < 50 for row in rows))

    def test_ctrl_z_gives_the_terminal_back_and_takes_it_again(self):
        self.login()
        stopped = []
        self.console.stop_process = lambda: stopped.append(self.raw.raw)
        self.type(b"half\x1a")
        self.assertEqual(stopped, [False])  # cooked mode while stopped
        self.assertTrue(self.raw.raw)
        self.assertEqual(self.look()[-1], "> half")

    def test_changepassword_new_one_is_used_to_log_in_again(self):
        self.login()
        self.type(b"/changepassword\r")
        for typed in (b"wise@!man\r", b"Dag0bah\r", b"Dag0bah\r"):
            self.type(typed)
        self.assertEqual(self.sent(), ["/changepassword wise@!man Dag0bah"])
        self.answer("OK Your password has been changed.")
        self.chat.server_lost()
        server = FakeServer()
        self.chat.connected(server)
        self.assertEqual(server.sent, ["LOGIN Yoda Dag0bah 6000"])
        self.assertNotIn("Dag0bah", "\n".join(self.look()))
        self.type(UP)
        self.assertEqual(self.console.editor.text(), "/changepassword")


class ReconnectTests(TerminalClientTestCase):
    def test_lost_connection_reconnects_and_shows_what_was_missed(self):
        self.login()
        self.open_hans()
        self.type(b"half")
        self.chat.server_lost()
        self.assertEqual(self.reconnector.started, 1)
        rows = self.look()
        self.assertEqual(rows[-3], "-!- " + client_module.RECONNECTING)
        self.assertIn("offline", rows[-2])
        self.assertEqual(rows[-1], "[Hans] half")
        self.assertEqual(self.exits, [])
        # Typing meanwhile sends nothing.
        self.type(b"\x15anyone?\r")
        self.assertEqual(self.look()[-3], client_module.OFFLINE)
        # A failed attempt says nothing more.
        self.chat.server_lost()
        self.assertEqual(self.reconnector.started, 2)
        self.assertEqual("\n".join(self.look()).count("Connection to the server was lost"), 1)
        server = FakeServer()
        self.server = server
        self.chat.connected(server)
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.answer("OK Welcome to chatproto!")
        self.assertEqual(self.sent(), ["/users", "/groups", "/history Hans 100"])
        self.assertEqual(self.reconnector.succeeded_calls, 1)
        self.answer("OK", "OK No groups.",
                    "DATA #1 01 Jun 2022 21:30:04, Hans: are you there?",
                    "DATA #2 01 Jun 2022 21:31:00, Yoda: yes",
                    "DATA #3 01 Jun 2022 21:35:00, Hans: still there?",
                    "OK")
        rows = self.look()
        self.assertEqual(rows[-4:], ["-!- " + client_module.RECONNECTED, "#3 21:35 <Hans> still there?",
                                     " Yoda | 2:Hans | windows: 2:Hans", "[Hans]"])
        self.assertEqual("\n".join(rows).count("are you there?"), 1)
        self.type(b"back\r")
        # Typing here, the user has seen what came meanwhile: read on every device, then sent.
        self.assertEqual(self.sent(), ["/read Hans 3", "/msgto Hans back"])
        # Window 1 was told too.
        self.type(b"\x1b1")
        self.assertIn("-!- " + client_module.RECONNECTING, self.look())

    def test_logged_out_from_another_device_it_does_not_log_in_again(self):
        # /logout all from the phone ends the terminal left on a lost laptop: connecting and
        # logging in again by itself would undo it (as it would undo an administrator's kick).
        for notice in ("You have been logged out from another session",
                       "You have been disconnected by the administrator admin: enough"):
            self.setUp()
            self.login()
            self.answer("NOTICE " + notice)
            self.chat.server_lost()
            self.assertEqual(self.reconnector.started, 0, notice)
            self.assertIn("-!- " + notice, self.look())
            self.console.connectionLost(Failure(ConnectionDone()))  # the terminal given back
            self.assertEqual(self.exits, [1])

    def test_shutdown_notice_then_waiting(self):
        self.login()
        self.answer("NOTICE Server shutting down")
        self.chat.server_lost()
        rows = self.look()
        self.assertEqual(rows[-4:-2], ["-!- Server shutting down", "-!- " + client_module.WAITING_FOR_SERVER])
        self.assertNotIn(client_module.CONNECTION_LOST, "\n".join(rows))
        self.assertEqual(self.exits, [])
        self.type(b"/quit\r")
        self.assertTrue(self.reconnector.stopped)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.exits, [0])

    def test_account_already_logged_in_means_later(self):
        self.login()
        self.chat.server_lost()
        server = FakeServer()
        self.server = server
        self.chat.connected(server)
        self.answer("ERR This account is already logged in")
        self.assertTrue(server.transport.disconnecting)

    def test_login_deadline_reconnects_under_the_prompt(self):
        self.type(b"Yoda\r")
        self.look()
        self.answer("NOTICE Disconnected: no login within 30 seconds")
        self.chat.server_lost()
        self.assertEqual(self.reconnector.started, 1)
        self.assertEqual(self.look(), ["Username: Yoda", "Password:"])  # nothing said, the prompt stays
        self.type(b"wise@!man\r")  # typed before the new connection is there
        self.assertEqual(self.sent(), [])
        server = FakeServer()
        self.server = server
        self.chat.connected(server)
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.answer("OK Welcome to chatproto!")
        self.assertIn("Welcome to chatproto!", self.look())
        self.assertEqual(self.exits, [])

    def test_login_deadline_while_idle_at_the_username_prompt(self):
        self.answer("NOTICE Disconnected: no login within 30 seconds")
        self.chat.server_lost()
        server = FakeServer()
        self.server = server
        self.chat.connected(server)
        self.assertEqual(self.look(), ["Username:"])  # asked once only
        self.login()

    def test_no_reconnect_before_login(self):
        self.chat.server_lost()
        self.assertEqual(self.reconnector.started, 0)
        self.console.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.exits, [1])


class PresetUsernameTests(TerminalClientTestCase):
    username = "Yoda"

    def test_username_from_the_config_file(self):
        rows = self.look()
        self.assertEqual(rows, ["Username: Yoda", "Password:"])
        self.login()


class RendererTests(SynchronousTestCase):
    def test_messages_parsed(self):
        msg = parse_message("01 Jun 2022 21:30:04, Jedi, luke: a, b: c")
        self.assertEqual((msg.group, msg.sender, msg.text, msg.hm), ("Jedi", "luke", "a, b: c", "21:30"))
        msg = parse_message("01 Jun 2022 21:30:04, Hans: x, y: z")
        self.assertEqual((msg.group, msg.sender, msg.text), (None, "Hans", "x, y: z"))
        msg = parse_history("#12 01 Jun 2022 21:30:04, Hans: hi")
        self.assertEqual((msg.seq, msg.sender), (12, "Hans"))
        self.assertIsNone(parse_message("You have been invited"))

    def test_stable_colours(self):
        renderer = Renderer()
        renderer.own_name = "Yoda"
        hans = renderer.name_style("Hans")
        self.assertEqual(renderer.name_style("Hans"), hans)
        self.assertEqual(Renderer().name_style("Hans"), hans)  # the same in every run
        self.assertEqual(renderer.name_style("Yoda"), (1,))
        colours = {renderer.name_style(n) for n in ("Hans", "leia", "luke", "obiwan", "vader")}
        self.assertGreater(len(colours), 2)
        line = renderer.message(parse_message("01 Jun 2022 21:30:04, Hans: hi"))
        self.assertEqual(plain(line), "21:30 <Hans> hi")
        self.assertIn(("Hans", hans), line)
        self.assertTrue(all(style == () for _, style in Renderer(colours=False).message(
            parse_message("01 Jun 2022 21:30:04, Hans: hi"))))

    def test_colours_on_the_terminal_and_text_still_sanitised(self):
        from .test_terminal import TerminalTestCase  # noqa: F401 - the same fake terminal

        clock = Clock()
        transport = StringTransport()
        console = TerminalConsole(raw_terminal=FakeRawTerminal(), clock=clock)
        console.makeConnection(transport)
        renderer = Renderer()
        console.show(renderer.message(parse_message("01 Jun 2022 21:30:04, Hans: evil \x1b[2J")))
        written = transport.value()
        self.assertIn(b"\x1b[%dmHans\x1b[0m" % renderer.name_style("Hans"), written)
        self.assertNotIn(b"\x1b[2J", written)

    def test_date_line_when_the_day_changes(self):
        conversations = Conversations(Renderer(colours=False))
        window = conversations.open("Hans", "user")
        conversations.switch(window)
        shown = conversations.add_message(window, parse_message("01 Jun 2022 23:59:00, Hans: late"))
        self.assertEqual([plain(x) for x in shown], ["23:59 <Hans> late"])
        shown = conversations.add_message(window, parse_message("02 Jun 2022 00:01:00, Hans: early"))
        self.assertEqual([plain(x) for x in shown], ["--- 02 Jun 2022 ---", "00:01 <Hans> early"])


class ReconnectorTests(SynchronousTestCase):
    def test_backoff_until_it_connects(self):
        clock = Clock()
        attempts = []
        results = []

        def connect():
            attempts.append(clock.seconds())
            if len(attempts) < 4:
                return defer.fail(ConnectionRefusedError())
            results.append("connected")
            return defer.succeed(None)

        told = []
        reconnector = Reconnector(clock, connect, on_attempt=lambda n, d: told.append((n, d)))
        reconnector.start()
        clock.pump([1, 2, 4, 8, 16])
        self.assertEqual(attempts, [1, 3, 7, 15])
        self.assertEqual(told, [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)])
        self.assertEqual(results, ["connected"])
        self.assertEqual(clock.getDelayedCalls(), [])
        reconnector.succeeded()
        reconnector.start()
        self.assertEqual(told[-1], (1, 1.0))
        reconnector.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_delays_are_capped(self):
        clock = Clock()
        reconnector = Reconnector(clock, lambda: defer.fail(ConnectionRefusedError()))
        reconnector.start()
        clock.pump([1, 2, 4, 8, 16, 30, 30])
        [call] = clock.getDelayedCalls()
        self.assertEqual(call.getTime() - clock.seconds(), 30)
        reconnector.stop()


class ConfigTests(SynchronousTestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="chatproto-home-")
        self.addCleanup(__import__("shutil").rmtree, self.home, True)

    def write(self, text, base=None):
        path = os.path.join(base or os.path.join(self.home, ".config"), "chatproto", "client.toml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def test_none(self):
        self.assertEqual(config.load_config({"HOME": self.home}), {})

    def test_settings_and_xdg(self):
        self.write('server = "10.0.0.1"\nport = 9100\nusername = "Yoda"\ncolors = false\n')
        self.assertEqual(config.load_config({"HOME": self.home}),
                         {"server": "10.0.0.1", "port": 9100, "username": "Yoda", "colours": False})
        xdg = os.path.join(self.home, "xdg")
        self.write("port = 9200\n", base=xdg)
        self.assertEqual(config.load_config({"HOME": self.home, "XDG_CONFIG_HOME": xdg}), {"port": 9200})

    def test_bad_files_are_named(self):
        for text, why in (("port = \n", "client.toml"), ("port = 'x'\n", "port must be an integer"),
                          ("colour = 1\n", "unknown setting 'colour'"), ("port = 70000\n", "out of range")):
            self.write(text)
            with self.assertRaises(config.ConfigError) as caught:
                config.load_config({"HOME": self.home})
            self.assertIn(why, str(caught.exception))

    def test_arguments_over_config_over_defaults(self):
        args = client_module.parse_arguments([])
        self.assertEqual(tuple(args), ("127.0.0.1", 9000, 0, 10.0))
        self.assertIsNone(args.reconnect)
        args = client_module.parse_arguments(["10.1.1.1"], {"port": 9100, "udp_port": 7000})
        self.assertEqual(tuple(args)[:3], ("10.1.1.1", 9100, 7000))
        args = client_module.parse_arguments(["--no-reconnect", "h", "1", "2"], {"reconnect": True})
        self.assertEqual((tuple(args)[:3], args.reconnect), (("h", 1, 2), False))
        for bad in (["h", "x"], ["h", "1", "2", "3"], ["--frobnicate"], ["h", "0"]):
            with self.assertRaises(ValueError):
                client_module.parse_arguments(bad)

    def test_version(self):
        self.assertRegex(config.version(), r"^\d+\.\d+")


class HostileInputTests(TerminalClientTestCase):
    """Whatever the server sends and the user types, no exception and no escape code passes."""

    def test_random_server_lines_and_keys(self):
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        tags = st.sampled_from(["DATA", "OK", "ERR", "MSG", "NOTICE", "PEER", "XYZ", ""])
        texts = st.one_of(
            st.text(max_size=80),
            st.sampled_from(["01 Jun 2022 21:30:04, Hans: hi", "01 Jun 2022 21:30:04, Jedi, luke: \x1b[2J",
                             "#3 01 Jun 2022 21:30:04, Hans: x", "Hans active", "Jedi joined group",
                             "message sent at 01 Jun 2022 21:30:04.", "Server shutting down",
                             "No such user: Hans", "luke has left the group chat Jedi."]))
        keys = st.lists(st.sampled_from([b"a", b" ", b"\r", b"\t", b"\x1b2", b"\x1b1", b"\x1b[A", b"/chat Hans\r",
                                         b"/win 2\r", b"hello\r", b"\x15", b"\x0c", b"/help\r", b"/chat\r"]),
                        max_size=8)

        self.login()

        sizes = st.one_of(st.none(), st.tuples(st.integers(1, 120), st.integers(1, 40)))

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.tuples(tags, texts, keys, sizes), max_size=12))
        def run(steps):
            for tag, text, typed, size in steps:
                if size is not None:
                    self.console.editor.terminalSize(*size)
                self.chat.server_line(tag, text)
                for key in typed:
                    self.type(key)
                written = self.transport.value()
                self.transport.clear()
                # The only screen clearing is the client's own redraw (clear, then home).
                self.assertNotIn(b"\x1b[2J", written.replace(b"\x1b[2J\x1b[H", b""))
            self.assertEqual(self.exits, [])

        run()


class NewcomerTests(TerminalClientTestCase):
    """What a new user tries first: /users, and typing after /joingroup or /creategroup."""

    def test_users_says_offline(self):
        self.login()
        self.type(b"/users\r")
        self.assertEqual(self.sent(), ["/users"])
        self.answer("DATA Hans active", "DATA Yoda active", "DATA leia inactive", "OK")
        self.assertEqual(self.look()[-3], "Users: Hans Yoda leia (offline)")

    def test_plain_text_goes_to_the_group_just_joined(self):
        self.login(groups=("DATA Rebels invited group", "OK"))
        self.type(b"/joingroup Rebels\r")
        self.assertEqual(self.sent(), ["/joingroup Rebels"])
        self.answer("OK Joined the group chat: Rebels successfully.")
        # It opens as /chat Rebels does: its last messages, then its members.
        self.assertEqual(self.sent(), ["/grouphistory Rebels 20"])
        self.answer("DATA #1 01 Jun 2022 21:30:04, Rebels, leia: welcome", "OK")
        self.assertEqual(self.sent(), ["/members Rebels"])
        self.answer("DATA leia owner active", "DATA Yoda joined active", "OK")
        rows = self.look()
        self.assertIn("#1 21:30 <leia> welcome", rows)
        self.assertEqual(rows[-2:], [" Yoda | 2:Rebels | windows: 2:Rebels", "[Rebels]"])
        self.type(b"hello rebels\r")
        self.assertEqual(self.sent(), ["/groupmsg Rebels hello rebels"])
        self.assertNotIn(client_module.NO_CONVERSATION, self.look())

    def test_plain_text_goes_to_the_group_just_created(self):
        self.login()
        self.type(b"/creategroup Jedi Hans\r")
        self.assertEqual(self.sent(), ["/creategroup Jedi Hans"])
        self.answer("OK Group chat room has been created, room name: Jedi, users in this room: Yoda Hans")
        self.assertEqual(self.sent(), ["/grouphistory Jedi 20"])
        self.answer("OK No messages.")
        self.assertEqual(self.sent(), ["/members Jedi"])
        self.answer("DATA Yoda owner active", "DATA Hans invited active", "OK")
        self.assertEqual(self.status(), "Yoda | 2:Jedi | windows: 2:Jedi")
        self.type(b"first!\r")
        self.assertEqual(self.sent(), ["/groupmsg Jedi first!"])
