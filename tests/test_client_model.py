"""
The client's protocol model (chatproto/client/model.py) on its own: the real
wire connection (ServerConnection) on a StringTransport, no console, no UI.
What the server's lines become (typed events), the request queue, login and
logging in again after a lost connection.
"""

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatproto.client import events
from chatproto.client.model import ChatModel, ServerConnection

from .test_client_terminal import FakeReconnector


class Listener:
    def __init__(self):
        self.events = []

    def event(self, event):
        self.events.append(event)

    def take(self):
        taken, self.events = self.events, []
        return taken


class ModelTestCase(SynchronousTestCase):
    reconnector = None

    def setUp(self):
        self.model = ChatModel(6000, reconnector=self.reconnector)
        self.listener = Listener()
        self.model.listen(self.listener)
        self.connect()

    def connect(self):
        self.connection = ServerConnection(self.model)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def receive(self, *lines):
        self.connection.dataReceived(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def sent(self):
        lines = self.transport.value().decode("utf-8").splitlines()
        self.transport.clear()
        return lines

    def log_in(self):
        answers = []
        self.model.log_in("Yoda", "wise@!man", lambda ok, text: answers.append((ok, text)))
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.receive("OK Welcome to chatproto!")
        self.assertEqual(answers, [(True, "Welcome to chatproto!")])
        return answers


class ModelTests(ModelTestCase):
    def test_connected_asks_for_a_login(self):
        self.assertEqual(self.listener.take(), [events.LoginWanted()])

    def test_server_lines_become_typed_events(self):
        self.listener.take()
        self.log_in()
        self.receive("MSG 01 Jun 2022 21:30:04, Jedi, luke: hi, all",
                     "MSG not a message",
                     "SENT 01 Jun 2022 21:31:00, to Hans: from my phone",
                     "READ #Jedi 7",
                     "NOTICE luke has left the group chat Jedi.",
                     "NOTICE Server shutting down", "NOTICE Server shutting down",
                     "OK stray", "XYZ what")
        delivered, odd, sent, read, notice, shutdown, stray, unknown = self.listener.take()
        self.assertEqual((delivered.message.group, delivered.message.sender, delivered.message.text),
                         ("Jedi", "luke", "hi, all"))
        self.assertEqual(odd, events.Delivered("not a message", None))
        self.assertEqual((sent.message.peer, sent.message.sender, sent.message.text),
                         ("Hans", "Yoda", "from my phone"))
        self.assertEqual(read, events.ReadElsewhere("#Jedi", 7))
        self.assertEqual(notice, events.Notice("luke has left the group chat Jedi."))
        self.assertEqual(shutdown, events.ServerShutdown("Server shutting down"))  # once
        self.assertEqual(stray, events.Reply("stray"))
        self.assertEqual(unknown, events.Unknown("XYZ", "what"))

    def test_each_final_line_answers_its_own_request(self):
        self.log_in()
        self.listener.take()
        answers = []
        self.model.request("/history Hans 2", lambda ok, text: answers.append(("history", ok, text)),
                           lambda text: answers.append(("data", text)))
        self.model.request("/msgto Hans hi", lambda ok, text: answers.append(("msgto", ok, text)))
        self.assertEqual(self.sent(), ["/history Hans 2", "/msgto Hans hi"])
        self.receive("DATA #1 01 Jun 2022 21:30:04, Hans: one",
                     "MSG 01 Jun 2022 21:30:05, Hans: live",
                     "OK", "ERR Hans is not active")
        self.assertEqual(answers, [("data", "#1 01 Jun 2022 21:30:04, Hans: one"), ("history", True, ""),
                                   ("msgto", False, "Hans is not active")])
        [live] = self.listener.take()
        self.assertEqual(live.message.text, "live")

    def test_names_are_learned_from_what_the_server_says(self):
        self.log_in()
        self.model.learn_names()
        self.assertEqual(self.sent(), ["/users", "/groups"])
        self.receive("DATA Hans active", "DATA Yoda active", "OK", "DATA Jedi joined group", "OK",
                     "NOTICE You have been invited to the group chat Rebels by leia. Type /joingroup Rebels to join.")
        self.assertEqual(self.model.names(), {"Hans", "Jedi", "Rebels", "leia"})

    def test_peer_line_kept_for_the_command(self):
        self.log_in()
        self.model.command("/p2pvideo Hans clip.mp4", lambda ok, text: None)
        self.receive(f"PEER Hans 127.0.0.1 6001 {'ab' * 8} {'cd' * 32}", "OK")
        self.assertEqual(self.model.peer, ("Hans", "127.0.0.1", 6001, "ab" * 8, "cd" * 32))
        self.model.command("/activeuser", lambda ok, text: None)
        self.assertIsNone(self.model.peer)

    def test_lost_without_reconnecting(self):
        self.log_in()
        self.listener.take()
        self.connection.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.listener.take(), [events.ConnectionLost(False)])

    def test_closing_ends_the_connection_and_says_nothing_more(self):
        self.log_in()
        self.listener.take()
        self.model.close()
        self.assertTrue(self.transport.disconnecting)
        self.connection.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.listener.take(), [])


class ModelReconnectTests(ModelTestCase):
    def setUp(self):
        self.reconnector = FakeReconnector()
        super().setUp()

    def test_logs_in_again_with_the_password_kept_in_memory(self):
        self.log_in()
        self.listener.take()
        self.receive("NOTICE Server shutting down")
        self.connection.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.listener.take(), [events.ServerShutdown("Server shutting down"),
                                                events.Offline(first=True, after_shutdown=True)])
        self.assertEqual(self.reconnector.started, 1)
        self.assertTrue(self.model.offline)
        self.connect()
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.receive("OK Welcome to chatproto!")
        self.assertEqual(self.sent(), ["/users", "/groups"])
        self.assertEqual(self.listener.take(), [events.LoggingInAgain(), events.Reconnected()])
        self.assertFalse(self.model.offline)
        self.assertEqual(self.reconnector.succeeded_calls, 1)

    def test_a_changed_password_is_the_one_used_again(self):
        self.log_in()
        self.model.password_changed("Dag0bah")
        self.connection.connectionLost(Failure(Exception("gone")))
        self.connect()
        self.assertEqual(self.sent(), ["LOGIN Yoda Dag0bah 6000"])
        self.receive("ERR Your account is blocked due to multiple login failures. Please try again later")
        self.assertEqual(self.listener.take()[-1], events.ReloginRefused(
            "Your account is blocked due to multiple login failures. Please try again later", True))

    def test_login_deadline_connects_again_under_the_prompt(self):
        self.model.reconnect_under_prompt = True
        self.listener.take()
        answers = []
        self.model.log_in("Yoda", "wise@!man", lambda ok, text: answers.append((ok, text)))
        self.receive("NOTICE Disconnected: no login within 30 seconds")
        self.connection.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.listener.take(), [events.LoginInterrupted(resend=True)])
        self.assertEqual(self.reconnector.started, 1)
        self.model.log_in("Yoda", "wise@!man", lambda ok, text: answers.append((ok, text)))  # not connected
        self.sent()
        self.connect()
        self.assertEqual(self.sent(), ["LOGIN Yoda wise@!man 6000"])
        self.receive("OK Welcome to chatproto!")
        self.assertEqual(answers, [(True, "Welcome to chatproto!")])
        self.assertEqual(self.listener.take(), [])


def test_send_file_without_transfers_is_none():
    assert ChatModel(0).send_file(("Hans", "127.0.0.1", 6001, "ab", "cd"), "clip.mp4") is None


def test_send_file_goes_to_the_peer():
    class Transfers:
        def send_file(self, path, presenter, peer, peer_name=None, *, transfer_id, secret):
            self.call = (path, presenter, peer, peer_name, transfer_id, secret)
            return defer.succeed(path)

    transfers = Transfers()
    model = ChatModel(0, transfers)
    model.username = "Yoda"
    model.send_file(("Hans", "127.0.0.1", 6001, "ab", "cd"), "clip.mp4")
    assert transfers.call == ("clip.mp4", "Yoda", ("127.0.0.1", 6001), "Hans", "ab", "cd")
