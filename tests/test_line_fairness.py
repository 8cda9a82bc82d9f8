"""
Input fairness of the line protocol counted in bytes as well as lines (issue
28, F6): 64 lines of 60 KiB are not one connection's share of a turn.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatproto.frontends.limits import BYTES_PER_TURN

from .support import ChatFixture


class ByteBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def authors(self) -> list[str]:
        return [line.split("; ")[2] for line in self.f.read("messagelog.txt").splitlines()]

    def test_big_lines_get_a_turn_of_bytes(self):
        big = b"/msgto Yoda " + b"x" * 60000 + b"\n"
        self.hans.protocol.dataReceived(big * 20)
        self.yoda.protocol.dataReceived(b"/msgto Hans mine\n")
        while self.hans.transport.producerState == "paused" or self.f.timers():
            self.f.clock.advance(0)
        authors = self.authors()
        self.assertEqual(len(authors), 21)  # nothing lost
        self.assertEqual(authors.index("Yoda"), 1)  # one 60 KB line was Hans's whole turn, not 20

    def test_small_lines_still_get_64_a_turn(self):
        self.hans.protocol.dataReceived(b"/msgto Yoda small\n" * 100)
        self.yoda.protocol.dataReceived(b"/msgto Hans mine\n")
        while self.hans.transport.producerState == "paused" or self.f.timers():
            self.f.clock.advance(0)
        self.assertEqual(self.authors().index("Yoda"), 64)
        self.assertGreater(BYTES_PER_TURN, 64 * len(b"/msgto Yoda small\n"))
