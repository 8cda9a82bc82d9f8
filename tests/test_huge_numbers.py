"""
Numbers no record has, on the commands that take a SEQ, a count or a msgid,
over SQLite (whose integers are 64-bit): a clear answer, never a server error.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from chatproto.storage.sqlite import SQLiteDatabase

from .irc_support import IRCEnvironment
from .support import ChatFixture
from .test_irc import IRCTestCase

TS = r"01 Jun 2022 \d{2}:\d{2}:\d{2}"
BEYOND_64_BITS = "9" * 30
BEYOND_PYTHON = "1" * 5000  # more digits than Python converts to an int


def sqlite_fixture(testcase):
    probe = ChatFixture(testcase)
    return ChatFixture(testcase, database=SQLiteDatabase(os.path.join(probe.dir, "chatproto.db")).open())


class LineHugeNumberTests(SynchronousTestCase):
    def setUp(self):
        self.f = sqlite_fixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man", 6001)
        self.hans = self.f.login("Hans", "falcon*solo", 6002)
        self.hans.send("/msgto Yoda hello")
        self.f.clock.advance(0)
        self.yoda.output()

    def send(self, command):
        lines = self.yoda.send(command)
        self.f.clock.advance(0)
        return lines + self.yoda.output()

    def test_read_beyond_every_seq_marks_the_newest_message(self):
        self.assertEqual(self.send("/unread"), ["DATA Hans 1", "OK"])
        self.assertEqual(self.send(f"/read Hans {BEYOND_64_BITS}"), ["OK"])
        self.assertEqual(self.send(f"/read Hans {2**63 - 1}"), ["OK"])
        self.assertEqual(self.send("/unread"), ["OK No unread messages."])

    def test_too_many_digits_is_a_usage_error(self):
        self.assertEqual(self.send(f"/read Hans {BEYOND_PYTHON}"), ["ERR Usage: /read NAME SEQ"])
        self.assertEqual(self.send(f"/deletemsg {BEYOND_PYTHON}"), ["ERR Usage: /deletemsg SEQ"])
        self.assertEqual(self.send(f"/history Hans {BEYOND_PYTHON}"), ["ERR Usage: /history USERNAME [N]"])
        self.assertRegex(self.send("/history Hans 5")[0], rf"^DATA #1 {TS}, Hans: hello$")


class IRCHugeMsgidTests(IRCTestCase):
    def setUp(self):
        self.fixture = sqlite_fixture(self)
        self.clock = self.fixture.clock
        self.chat = self.fixture.chat
        self.env = IRCEnvironment(self.chat, self.clock)

    def test_msgid_beyond_64_bits_names_no_message(self):
        self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man", caps=["batch", "server-time", "message-tags",
                                                           "draft/chathistory"])
        c.send("PRIVMSG luke :hello")
        for sub in ("BEFORE", "AFTER", "AROUND"):
            lines = c.send(f"CHATHISTORY {sub} luke msgid=p.{BEYOND_64_BITS} 10")
            self.assertEqual([(line.command, *line.params[:1]) for line in lines],
                             [("BATCH", lines[0].params[0]), ("BATCH", lines[-1].params[0])])
            self.assertTrue(lines[0].params[0].startswith("+"))


class HistoryBeforeTests(SynchronousTestCase):
    """The page's history request takes C{before}, any JSON integer: the core's history."""

    def test_before_beyond_64_bits_is_the_latest(self):
        f = sqlite_fixture(self)
        yoda = f.login("Yoda", "wise@!man", 6001)
        f.login("Hans", "falcon*solo", 6002)
        yoda.send("/creategroup Jedi Hans")
        yoda.send("/msgto Hans hello")
        yoda.send("/groupmsg Jedi hi all")
        f.clock.advance(0)
        user = next(u for u in f.chat.active_users() if u.name == "Yoda")
        private = f.chat.history(user, "Hans", 10, before=10**30)
        group = f.chat.group_history(user, "Jedi", 10, before=10**30)
        f.clock.advance(0)
        self.assertEqual([m.text for m in self.successResultOf(private)], ["hello"])
        self.assertEqual([m.text for m in self.successResultOf(group)], ["hi all"])
