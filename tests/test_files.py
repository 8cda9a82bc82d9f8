"""
The client's p2p file handling (chatproto/client/files.py) through the chat
client: the server's PEER and OFFER lines, --accept-files, /accept and
/reject, with two real transfer endpoints joined by the in-memory network of
test_transfer on a task.Clock.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from chatproto.client import COMMAND_PROMPT, ChatClient, files
from chatproto.transfer import TransferEndpoint

from .test_client import FakeConsole, FakeServer
from .test_transfer import ALICE, BOB, Network, temporary_directory

TID = "00000000000004d2"
SECRET = "ab" * 32
PEER = f"PEER Hans 127.0.0.1 {BOB[1]} {TID} {SECRET}"
OFFER = f"OFFER {TID} {SECRET} Yoda 127.0.0.1 clips/clip.mp4"


class Side:
    """One chat client with its console, server connection and transfer endpoint."""

    def __init__(self, case, network, address, username, password, policy="all"):
        self.directory = FilePath(temporary_directory(case))
        self.console = FakeConsole()
        self.server = FakeServer()
        self.client = ChatClient(self.console, address[1], lambda status: None,
                                 file_exists=lambda path: True)
        self.client.files.policy = policy
        self.endpoint = TransferEndpoint(self.directory.path, self.client.files, clock=network.clock, loss=0.0,
                                         chunk_size=1024)
        self.client.transfers = self.endpoint
        network.attach(address, self.endpoint)
        case.addCleanup(self.endpoint.stop)
        self.client.connected(self.server)
        self.type(username)
        self.type(password)
        self.answer("OK Welcome to chatproto!")
        self.console.screen.clear()

    def type(self, text):
        self.client.line_entered(text)

    def answer(self, *lines):
        for line in lines:
            tag, _, text = line.partition(" ")
            self.client.server_line(tag, text)

    def shown(self):
        return [line for line in self.console.screen if line != COMMAND_PROMPT]

    def lines(self):
        shown = self.shown()
        self.console.screen.clear()
        return shown


class FileTransferTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.network = Network(self.clock)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def sides(self, policy="all"):
        self.yoda = Side(self, self.network, ALICE, "Yoda", "wise@!man")
        self.hans = Side(self, self.network, BOB, "Hans", "falcon*solo", policy)
        self.yoda.directory.child("clip.mp4").setContent(b"x" * 5000)

    def present(self):
        """Yoda types /p2pvideo; the server offers it to Hans, then answers Yoda."""
        self.yoda.type("/p2pvideo Hans " + self.yoda.directory.child("clip.mp4").path)
        self.hans.answer(OFFER)
        self.yoda.answer(PEER, "OK")

    def test_acceptAll(self):
        self.sides()
        self.present()
        self.network.run(lambda: self.hans.shown() and self.yoda.shown())
        self.assertEqual(self.hans.lines(), ["A file (clip.mp4) has been received from Yoda"])
        self.assertEqual(self.yoda.lines(), ["clip.mp4 has been uploaded"])
        self.assertEqual(self.hans.directory.child("Yoda_clip.mp4").getContent(), b"x" * 5000)

    def test_ask_accept(self):
        self.sides("ask")
        self.present()
        self.network.run(lambda: self.hans.shown() and self.yoda.shown())
        self.assertEqual(
            self.hans.lines(), ["Yoda wants to send you clip.mp4 (4.9 KiB). Type /accept 1 or /reject 1."]
        )
        self.assertEqual(self.yoda.lines(), ["Waiting for Hans to accept clip.mp4..."])
        self.hans.type("/accept 1")
        self.assertEqual(self.hans.server.sent[-1], "LOGIN Hans falcon*solo 5002")  # nothing sent
        self.assertEqual(self.hans.console.screen, ["Accepted clip.mp4 from Yoda.", COMMAND_PROMPT])
        self.hans.lines()
        self.network.run(lambda: self.hans.shown() and self.yoda.shown())
        self.assertEqual(self.hans.lines(), ["A file (clip.mp4) has been received from Yoda"])
        self.assertEqual(self.yoda.lines(), ["clip.mp4 has been uploaded"])

    def test_ask_reject(self):
        self.sides("ask")
        self.present()
        self.network.run(lambda: self.hans.shown())
        self.hans.lines()
        self.hans.type("/reject")  # the only offer waiting
        self.assertEqual(self.hans.lines(), ["Rejected clip.mp4 from Yoda."])
        self.network.run(lambda: self.yoda.shown()[1:])
        self.assertEqual(
            self.yoda.lines(),
            [
                "Waiting for Hans to accept clip.mp4...",
                "Sending clip.mp4 to Hans failed: the receiver refused the file: declined by the user",
            ],
        )
        self.assertEqual(self.hans.directory.listdir(), [])
        self.hans.type("/accept 1")
        self.assertEqual(self.hans.lines(), ["No file offer 1 is waiting."])

    def test_ask_badAnswers(self):
        self.sides("ask")
        self.hans.type("/accept")
        self.assertEqual(self.hans.lines(), ["No file offer is waiting."])
        self.present()
        self.network.run(lambda: self.hans.shown())
        self.hans.lines()
        self.hans.type("/accept 7")
        self.assertEqual(self.hans.lines(), ["No file offer 7 is waiting."])
        self.hans.type("/reject 1 2")
        self.assertEqual(self.hans.lines(), ["Usage: /reject [N]"])
        self.hans.type("/accept 1")
        self.assertEqual(self.hans.lines(), ["Accepted clip.mp4 from Yoda."])
        self.network.run(lambda: self.yoda.shown()[1:])

    def test_none(self):
        self.sides("none")
        self.present()
        self.assertEqual(
            self.hans.lines(), ["Refused clip.mp4 from Yoda (this client accepts no files: --accept-files none)."]
        )
        self.network.run(lambda: self.yoda.shown())
        self.assertEqual(
            self.yoda.lines(), ["Sending clip.mp4 to Hans failed: the receiver refused the file: it does not accept files"]
        )
        self.assertEqual(self.hans.directory.listdir(), [])

    def test_unofferedIgnored(self):
        """Yoda gets a PEER line but Hans never got the OFFER: Hans writes nothing, Yoda gives up."""
        self.sides()
        self.yoda.type("/p2pvideo Hans " + self.yoda.directory.child("clip.mp4").path)
        self.yoda.answer(PEER, "OK")
        self.network.run(lambda: self.yoda.shown())
        self.assertEqual(
            self.yoda.lines(), ["Sending clip.mp4 to Hans failed: no answer from the receiver for 10 seconds"]
        )
        self.assertEqual((self.hans.lines(), self.hans.directory.listdir()), ([], []))

    def test_oldServerPeer(self):
        """A PEER line without id and secret (an older server): nothing is sent, the user is told why."""
        self.sides()
        self.yoda.type("/p2pvideo Hans clip.mp4")
        self.yoda.answer("PEER Hans 127.0.0.1 5002", "OK")
        self.assertEqual(self.yoda.lines(), [files.OLD_SERVER])
        self.assertEqual(self.yoda.endpoint._outgoing, {})

    def test_badOffers(self):
        self.sides()
        self.hans.answer("OFFER 12 34")
        self.hans.answer(f"OFFER zz {SECRET} Yoda 127.0.0.1 clip.mp4")
        self.hans.answer(f"OFFER {TID} {SECRET} ../Yoda 127.0.0.1 clip.mp4")
        self.assertEqual(
            self.hans.lines(),
            [
                "Ignored a malformed file offer from the server: 12 34",
                "Refused clip.mp4 from Yoda: the transfer id is not 16 hex digits",
                "Refused clip.mp4 from ../Yoda: the presenter's name is not plain",
            ],
        )
        self.assertEqual(self.hans.endpoint._offers, {})

    def test_savedUnderAnotherName(self):
        """A file of that name that Hans did not receive from Yoda is kept; the message says where."""
        self.sides()
        self.hans.directory.child("Yoda_clip.mp4").setContent(b"Hans's own")
        self.present()
        self.network.run(lambda: self.hans.shown())
        self.assertEqual(
            self.hans.lines(),
            [
                "A file (clip.mp4) has been received from Yoda",
                "It was saved as Yoda_clip (2).mp4: Yoda_clip.mp4 exists and was not received from Yoda.",
            ],
        )
        self.assertEqual(self.hans.directory.child("Yoda_clip.mp4").getContent(), b"Hans's own")
        self.network.run(lambda: self.yoda.shown())


class OptionTests(SynchronousTestCase):
    def test_takeOption(self):
        self.assertEqual(files.take_option(["h", "1", "2"]), (["h", "1", "2"], "all"))
        self.assertEqual(files.take_option(["--accept-files", "ask", "h", "1", "2"]), (["h", "1", "2"], "ask"))
        self.assertEqual(files.take_option(["h", "--accept-files=none", "1", "2"]), (["h", "1", "2"], "none"))
        for bad in (["--accept-files"], ["--accept-files", "maybe"], ["--accept-files="]):
            self.assertRaises(ValueError, files.take_option, bad)

    def test_parsePeer(self):
        self.assertEqual(files.parse_peer(f"Hans 1.2.3.4 6000 {TID} {SECRET}"), ("Hans", "1.2.3.4", 6000, TID, SECRET))
        for bad in ("Hans 1.2.3.4 6000", f"Hans 1.2.3.4 0 {TID} {SECRET}", f"Hans 1.2.3.4 x {TID} {SECRET}"):
            self.assertIsNone(files.parse_peer(bad))
