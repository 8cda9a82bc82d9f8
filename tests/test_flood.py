"""
One user's pipeline flood with the server's default options (issue 28, F3):
the sender is slowed before it costs anyone else anything. StringTransport
and task.Clock; every front end built with the limits the server's options
give by default.
"""

import tempfile

from twisted.trial.unittest import SynchronousTestCase

from chatproto.server import ServerOptions
from tests.irc_support import IRCEnvironment, settle
from tests.support import ChatFixture
from tests.web_support import WebFixture


def default_limits() -> dict:
    """The limits of a server started with no option."""
    options = ServerOptions()
    options.parseOptions(["--data-dir", tempfile.gettempdir(), "0", "3"])
    return options["limits"]


def stored(fixture, sender: str) -> int:
    return sum(1 for line in fixture.read("messagelog.txt").splitlines() if line.split("; ")[2] == sender)


class IRCFloodTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.clock = self.f.clock
        self.env = IRCEnvironment(self.f.chat, self.clock, max_output=64 * 1024, **default_limits())
        self.luke = self.env.register("luke", "jedi*knight")
        self.yoda = self.env.register("Yoda", "wise@!man")
        self.hans = self.env.register("Hans", "falcon*solo")
        self.luke.lines()

    def test_a_pipeline_flood_is_slowed_and_its_recipient_is_not_dropped(self):
        # luke's socket buffer is full for a second (he reads, but not that fast).
        self.luke.protocol.pauseProducing()
        self.yoda.protocol.dataReceived(b"PRIVMSG luke :flood message\r\n" * 2000)
        self.hans.protocol.dataReceived(b"PRIVMSG luke :hello luke\r\n")
        settle(self.clock)
        self.assertLessEqual(stored(self.f, "Yoda"), 100)  # a burst, not 2,000 at once
        self.assertEqual(stored(self.f, "Hans"), 1)  # the others are not queued behind the flood
        for _ in range(10):
            self.clock.advance(0.1)
        self.assertFalse(self.luke.closed)  # not dropped as a slow reader for Yoda's flood
        self.luke.protocol.resumeProducing()
        self.assertLessEqual(stored(self.f, "Yoda"), 100 + 50 * 1 + 1)
        shown = self.luke.lines()
        self.assertEqual(len([line for line in shown if line.params[-1] == "hello luke"]), 1)
        # It goes on at the rate: nothing is refused or lost.
        for _ in range(40):
            self.clock.advance(1)
            self.luke.lines()
        self.assertEqual(stored(self.f, "Yoda"), 2000)

    def test_each_target_of_a_line_counts_as_a_message(self):
        targets = ",".join(["luke"] * 99)
        self.yoda.protocol.dataReceived(f"PRIVMSG {targets} :x\r\n".encode() * 2 + b"PRIVMSG luke :next\r\n")
        self.clock.advance(0.2)
        self.assertEqual(stored(self.f, "Yoda"), 198)
        # The two lines took 198 tokens of a burst of 100: the third waits for the debt (2 s at 50/s).
        self.clock.advance(1.7)
        self.assertEqual(stored(self.f, "Yoda"), 198)
        self.clock.advance(0.3)
        self.assertEqual(stored(self.f, "Yoda"), 199)


class LineFloodTests(SynchronousTestCase):
    def test_a_msgto_flood_is_slowed(self):
        f = ChatFixture(self)
        from chatproto.frontends.line.protocol import ChatServerFactory

        f.factory = ChatServerFactory(f.chat, 64 * 1024, **default_limits())
        f.login("luke", "jedi*knight")
        yoda = f.login("Yoda", "wise@!man")
        yoda.protocol.dataReceived(b"/msgto luke flood message\n" * 5000)
        for _ in range(5):
            f.clock.advance(0)
        self.assertLessEqual(stored(f, "Yoda"), 100)
        f.clock.advance(1)
        self.assertLessEqual(stored(f, "Yoda"), 151)


class WebFloodTests(SynchronousTestCase):
    def test_send_frames_over_the_rate_are_refused(self):
        web = WebFixture(self, **default_limits())
        luke = web.browser("luke", "jedi*knight")
        yoda = web.browser("Yoda", "wise@!man")
        replies = [yoda.request("send", to="luke", text="flood") for _ in range(300)]
        self.assertLessEqual(sum(reply["ok"] for reply in replies), 101)
        self.assertEqual({reply["error"] for reply in replies if not reply["ok"]}, {"Too many commands; slow down"})
        self.assertLessEqual(stored(web.core, "Yoda"), 101)
        self.assertFalse(luke.transport.disconnecting)
