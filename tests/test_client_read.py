"""
The terminal client's read markers (issue 24): what the user views in a
conversation is marked read on the server (C{/read NAME SEQ}), so that the
user's other devices clear it; the status line's unread counts clear when
the conversation is opened. The client on a fake terminal, the server's
lines fed by hand.
"""

from .test_client_terminal import TerminalClientTestCase


class ReadMarkerTests(TerminalClientTestCase):
    def test_opening_a_conversation_unread_at_login_marks_what_it_shows(self):
        self.login(unread=("DATA Hans 2", "OK"))
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Hans | unread: 2:Hans(2)")
        self.type(b"\x1b2")  # Alt-2: the window is empty (its history not loaded): nothing read yet
        self.assertEqual(self.sent(), [])
        self.type(b"/chat Hans\r")
        self.assertEqual(self.sent(), ["/history Hans 23"])  # 20, its one line (the /chat), the two unread
        self.answer("DATA #5 01 Jun 2022 21:30:04, Hans: are you there?",
                    "DATA #6 01 Jun 2022 21:31:00, Yoda: yes",
                    "DATA #7 01 Jun 2022 21:32:00, Hans: good", "OK")
        self.assertEqual(self.sent(), ["/users"])
        self.answer("DATA Hans active", "OK")
        self.assertEqual(self.sent(), ["/read Hans 7"])  # the newest shown, from Hans
        self.answer("OK")
        self.assertEqual(self.status(), "Yoda | 2:Hans | windows: 2:Hans")
        self.type(b"\x1b1\x1b2")
        self.type(b"thanks\r")
        self.assertEqual(self.sent(), ["/msgto Hans thanks"])  # read already: nothing more

    def test_a_group_is_marked_by_its_hash_name(self):
        self.login(groups=("DATA Jedi joined group", "OK"), unread=("DATA #Jedi 1", "OK"))
        self.type(b"/chat #Jedi\r")
        self.assertEqual(self.sent(), ["/grouphistory Jedi 21"])
        self.answer("DATA #4 01 Jun 2022 21:30:04, Jedi, luke: may the force", "OK")
        self.assertEqual(self.sent(), ["/read #Jedi 4", "/members Jedi"])

    def test_a_live_message_is_read_once_the_user_types_in_its_window(self):
        self.login()
        self.open_hans()
        self.answer("MSG 01 Jun 2022 21:33:00, Hans: fine")
        self.assertIn("21:33 <Hans> fine", self.look())
        self.assertEqual(self.sent(), [])  # shown, but nobody may be looking: not read yet
        self.type(b"me too\r")
        # A MSG line has no SEQ: the client finds it in the history, then marks it.
        self.assertEqual(self.sent(), ["/history Hans 20", "/msgto Hans me too"])
        self.answer("DATA #1 01 Jun 2022 21:30:04, Hans: are you there?",
                    "DATA #2 01 Jun 2022 21:31:00, Yoda: yes",
                    "DATA #3 01 Jun 2022 21:33:00, Hans: fine",
                    "DATA #4 01 Jun 2022 21:33:05, Hans: and another, on its way", "OK")
        self.assertEqual(self.sent(), ["/read Hans 3"])  # what was shown, not what is on its way
        self.answer("OK message sent at 01 Jun 2022 21:33:06.", "OK")
        self.type(b"/activeuser\r")
        self.assertEqual(self.sent(), ["/activeuser"])

    def test_switching_to_a_window_reads_what_came_there(self):
        self.login()
        self.answer("MSG 01 Jun 2022 21:40:00, leia: psst")
        self.type(b"/activeuser\r")  # in window 1: it shows everything and reads nothing
        self.assertEqual(self.sent(), ["/activeuser"])
        self.answer("OK no other active user")
        self.type(b"\x1b2")
        self.assertEqual(self.sent(), ["/history leia 20"])
        self.answer("DATA #9 01 Jun 2022 21:40:00, leia: psst", "OK")
        self.assertEqual(self.sent(), ["/read leia 9"])

    def test_read_on_another_device_is_not_marked_again(self):
        self.login(unread=("DATA Hans 2", "OK"))
        self.answer("READ Hans 2")
        self.assertEqual(self.sent(), ["/unread"])  # (were both unread ones up to SEQ 2?)
        self.answer("OK No unread messages.")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Hans")
        self.type(b"/chat Hans\r")
        self.answer("DATA #1 01 Jun 2022 21:30:04, Hans: one", "DATA #2 01 Jun 2022 21:30:05, Hans: two", "OK")
        self.answer("DATA Hans active", "OK")
        self.assertEqual(self.sent(), ["/history Hans 20", "/users"])

    def test_a_read_elsewhere_up_to_an_older_message_leaves_the_newer_ones_counted(self):
        # Yoda talks with Hans; leia's messages arrive meanwhile (MSG lines carry no SEQ). The phone
        # reads leia up to her first one: the count shown is the server's, not nothing.
        self.login()
        self.open_hans()
        self.answer("MSG 01 Jun 2022 21:40:00, leia: one", "MSG 01 Jun 2022 21:40:01, leia: two",
                    "MSG 01 Jun 2022 21:40:02, leia: three")
        self.assertEqual(self.status(), "Yoda | 2:Hans | windows: 2:Hans 3:leia | unread: 3:leia(3)")
        self.answer("READ leia 7")
        self.assertEqual(self.sent(), ["/unread"])  # which of them SEQ 7 covers: the server knows
        self.answer("MSG 01 Jun 2022 21:40:03, leia: four")  # before the answer: in its count
        self.answer("DATA leia 3", "OK")
        self.assertEqual(self.status(), "Yoda | 2:Hans | windows: 2:Hans 3:leia | unread: 3:leia(3)")
        self.answer("MSG 01 Jun 2022 21:40:04, leia: five")
        self.assertEqual(self.status(), "Yoda | 2:Hans | windows: 2:Hans 3:leia | unread: 3:leia(4)")
        self.answer("READ leia 11")
        self.assertEqual(self.sent(), ["/unread"])
        self.answer("OK No unread messages.")
        self.assertEqual(self.status(), "Yoda | 2:Hans | windows: 2:Hans 3:leia")

    def test_a_read_elsewhere_past_every_message_shown_clears_without_asking(self):
        self.login()
        self.type(b"/chat leia\r")
        self.answer("DATA #9 01 Jun 2022 21:40:00, leia: psst", "OK", "DATA leia active", "OK")
        self.type(b"/chat Hans\r")
        self.answer("OK No messages.", "DATA Hans active", "OK")
        self.sent()
        self.answer("READ leia 9")  # (window 3 showed #9 only, from its history, and counts nothing)
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.status(), "Yoda | 3:Hans | windows: 2:leia 3:Hans")

    def test_a_deleted_group_message_is_no_longer_counted(self):
        self.login(groups=("DATA Jedi joined group", "OK"), unread=("DATA #Jedi 2", "OK"))
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Jedi | unread: 2:Jedi(2)")
        self.answer("NOTICE Hans deleted message 4 in Jedi.")
        self.assertEqual(self.sent(), ["/unread"])
        self.answer("DATA #Jedi 1", "OK")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:Jedi | unread: 2:Jedi(1)")

    def test_a_server_without_read_markers_is_asked_once(self):
        self.login()
        self.open_hans()
        self.answer("MSG 01 Jun 2022 21:33:00, Hans: fine")
        self.type(b"/win 1\r")
        self.answer("DATA #3 01 Jun 2022 21:33:00, Hans: fine", "OK")
        self.assertEqual(self.sent(), ["/history Hans 20", "/read Hans 3"])
        self.answer("ERR Error. Invalid command!")
        self.answer("MSG 01 Jun 2022 21:34:00, Hans: again")
        self.type(b"/win 2\r")
        self.type(b"hello\r")
        self.assertEqual(self.sent(), ["/msgto Hans hello"])

    def test_offline_nothing_is_marked(self):
        self.login()
        self.open_hans()
        self.answer("MSG 01 Jun 2022 21:33:00, Hans: fine")
        self.chat.server_lost()
        self.type(b"/win 1\r")
        self.type(b"/win 2\r")
        self.assertEqual(self.server.sent, [])

    def test_a_read_cut_off_by_a_lost_connection_is_sent_again_after_the_reconnect(self):
        # The connection drops while a /read (and its SEQ look-up) waits for its answer: the
        # answer never comes, and after the reconnect the window is marked read all the same.
        from .test_client_terminal import FakeServer

        self.login()
        self.open_hans()
        self.answer("MSG 01 Jun 2022 21:33:00, Hans: fine")
        self.type(b"me too\r")
        self.assertEqual(self.sent(), ["/history Hans 20", "/msgto Hans me too"])
        self.chat.server_lost()  # no answer to either
        self.server = FakeServer()
        self.chat.connected(self.server)
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.answer("OK Welcome to chatproto!")
        self.assertEqual(self.sent(), ["/users", "/groups", "/history Hans 100"])
        self.answer("OK", "OK No groups.",
                    "DATA #3 01 Jun 2022 21:33:00, Hans: fine",
                    "DATA #4 01 Jun 2022 21:35:00, Hans: still there?", "OK")
        self.type(b"back\r")
        self.assertEqual(self.sent(), ["/read Hans 4", "/msgto Hans back"])

class OverTheWireTests(TerminalClientTestCase):
    """The same through the model's real wire connection (ServerConnection on a StringTransport)."""

    def test_read_markers_on_the_wire(self):
        from twisted.internet.testing import StringTransport

        from chatproto.client.model import ServerConnection

        connection = ServerConnection(self.chat.model)
        wire = StringTransport()
        connection.makeConnection(wire)  # connected again: the model asks who the user is
        self.type(b"Yoda\rwise@!man\r")
        self.assertEqual(wire.value(), b"LOGIN Yoda wise@!man 6000\n")
        wire.clear()

        def server(*lines):
            connection.dataReceived(b"".join(line.encode() + b"\r\n" for line in lines))

        server("OK Welcome to chatproto!", "OK", "OK No groups.", "DATA leia 1", "OK",
               "MSG 01 Jun 2022 21:40:00, leia: psst")
        self.assertEqual(self.status(), "Yoda | 1:all | windows: 2:leia | unread: 2:leia(1)")
        self.type(b"/chat leia\r")
        server("DATA #8 01 Jun 2022 21:39:00, leia: before", "DATA #9 01 Jun 2022 21:40:00, leia: psst", "OK",
               "DATA leia active", "OK")
        self.assertEqual(wire.value(), b"/users\n/groups\n/unread\n/history leia 22\n/users\n/read leia 9\n")
        wire.clear()
        server("OK", "READ leia 9")
        self.assertEqual(self.status(), "Yoda | 2:leia | windows: 2:leia")
        self.type(b"ok\r")
        self.assertEqual(wire.value(), b"/msgto leia ok\n")  # read: nothing more to mark
