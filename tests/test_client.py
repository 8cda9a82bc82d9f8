"""The client's logic with a fake console and a fake server connection."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from chatproto.client import COMMAND_PROMPT, ChatClient


class FakeConsole:
    def __init__(self):
        self.screen: list[str] = []
        self.secret_prompts: list[str] = []
        self.closed = False

    def attach(self, client):
        self.client = client

    def show(self, text):
        self.screen.append(text)

    def prompt(self, text, secret=False):
        self.screen.append(text)
        if secret:
            self.secret_prompts.append(text)

    def progress(self, key, text):
        pass

    def close(self):
        self.closed = True
        return defer.succeed(None)


class FakeServer:
    class transport:
        @staticmethod
        def loseConnection():
            FakeServer.lost = True

    def __init__(self):
        self.sent: list[str] = []

    def send(self, text):
        self.sent.append(text)


class FakeTransfers:
    def __init__(self):
        self.sends = []

    def send_file(self, path, presenter, peer, peer_name=None, *, transfer_id, secret):
        d = defer.Deferred()
        self.sends.append((path, presenter, peer, d))
        self.keys = (transfer_id, secret)
        return d

    def stop(self):
        pass


class ClientTests(SynchronousTestCase):
    def setUp(self):
        self.console = FakeConsole()
        self.exits = []
        self.transfers = FakeTransfers()
        self.client = ChatClient(self.console, 6000, self.exits.append, self.transfers,
                                 file_exists=lambda path: path == "clip.mp4")
        self.server = FakeServer()
        self.client.connected(self.server)

    def type(self, text):
        self.console.screen.clear()
        self.client.line_entered(text)

    def answer(self, *lines):
        for line in lines:
            tag, _, text = line.partition(" ")
            self.client.server_line(tag, text)

    def log_in(self):
        self.type("Yoda")
        self.type("wise@!man")
        self.answer("OK Welcome to chatproto!")

    def test_login_sends_one_line_and_password_is_secret(self):
        self.assertEqual(self.console.screen, ["Username: "])
        self.type("Yoda")
        self.assertEqual(self.console.screen, ["Password: "])
        self.assertEqual(self.console.secret_prompts, ["Password: "])
        self.type("wise@!man")
        self.assertEqual(self.server.sent, ["LOGIN Yoda wise@!man 6000"])
        self.assertEqual(self.console.screen, [])  # no prompt until the server answers
        self.answer("OK Welcome to chatproto!")
        self.assertEqual(self.console.screen, ["Welcome to chatproto!", COMMAND_PROMPT])

    def test_next_step_chosen_from_the_error_text(self):
        self.type("Yoda")
        self.type("bad")
        self.console.screen.clear()
        self.answer("ERR Invalid Password. Please try again")
        self.assertEqual(self.console.screen, ["Invalid Password. Please try again", "Password: "])
        self.type("bad")
        self.console.screen.clear()
        self.answer("ERR Invalid Username. Please try again")
        self.assertEqual(self.console.screen[-1], "Username: ")
        self.type("Yoda")
        self.type("bad")
        self.answer("ERR Invalid Password. Your account has been blocked. Please try again later")
        self.assertEqual(self.exits, [1])

    def test_prompt_only_after_final_reply(self):
        self.log_in()
        self.type("/activeuser")
        self.assertEqual(self.console.screen, [])
        self.answer("DATA Hans, 127.0.0.1, 6001, active since 01 Jun 2022 21:30:04.")
        self.answer("MSG 01 Jun 2022 21:30:05, Hans: hi")
        self.assertEqual(self.console.screen[-1], "01 Jun 2022 21:30:05, Hans: hi")
        self.answer("OK")
        self.assertEqual(self.console.screen, [
            "Hans, 127.0.0.1, 6001, active since 01 Jun 2022 21:30:04.",
            "01 Jun 2022 21:30:05, Hans: hi",
            COMMAND_PROMPT,
        ])

    def test_message_while_idle_at_prompt(self):
        self.log_in()
        self.console.screen.clear()
        self.answer("MSG 01 Jun 2022 21:30:05, Hans: hi")
        self.assertEqual(self.console.screen, ["01 Jun 2022 21:30:05, Hans: hi"])

    def test_p2pvideo_checks_file_then_starts_transfer(self):
        self.log_in()
        self.type("/p2pvideo Hans missing.mp4")
        self.assertEqual(self.console.screen, ["File missing.mp4 does not exist", COMMAND_PROMPT])
        self.assertEqual(self.server.sent[-1], "LOGIN Yoda wise@!man 6000")
        self.type("/p2pvideo Hans clip.mp4")
        self.assertEqual(self.server.sent[-1], "/p2pvideo Hans clip.mp4")
        self.answer(f"PEER Hans 127.0.0.1 6001 {'ab' * 8} {'cd' * 32}", "OK")
        (path, presenter, peer, d), = self.transfers.sends
        self.assertEqual((path, presenter, peer), ("clip.mp4", "Yoda", ("127.0.0.1", 6001)))
        self.assertEqual(self.transfers.keys, ("ab" * 8, "cd" * 32))
        self.console.screen.clear()
        d.callback("clip.mp4")
        self.assertEqual(self.console.screen, ["clip.mp4 has been uploaded"])

    def test_received_file_is_announced(self):
        self.log_in()
        self.console.screen.clear()
        self.client.transfer_received("Hans", "clip.mp4", "/x/Hans_clip.mp4")
        self.assertEqual(self.console.screen, ["A file (clip.mp4) has been received from Hans"])

    def test_logout_exits_zero(self):
        self.log_in()
        self.type("/logout")
        self.answer("OK Bye, Yoda!")
        self.assertEqual(self.console.screen, ["Bye, Yoda!"])
        self.assertEqual(self.exits, [0])

    def test_lost_server_exits_one(self):
        self.log_in()
        self.console.screen.clear()
        self.client.server_lost()
        self.assertEqual(self.console.screen, ["Connection to the server was lost."])
        self.assertEqual(self.exits, [1])

    def test_end_of_input_exits_zero(self):
        self.client.input_ended()
        self.assertEqual(self.exits, [0])
        self.assertTrue(self.console.closed)


class LineConsoleTests(SynchronousTestCase):
    def test_last_line_without_newline_is_entered(self):
        from twisted.internet.testing import StringTransport

        from chatproto.client.console import LineConsole

        entered = []

        class Client:
            def line_entered(self, text):
                entered.append(text)
                console.prompt("next: ")

            def input_ended(self):
                entered.append(None)

        console = LineConsole(interactive=False)
        console.attach(Client())
        console.makeConnection(StringTransport())
        console.prompt("Username: ")
        console.dataReceived(b"Yoda\n/msgto Hans hi")
        console.readConnectionLost()
        self.assertEqual(entered, ["Yoda", "/msgto Hans hi", None])
        self.assertEqual(console.transport.value(), b"Username: \nnext: \nnext: \n")
