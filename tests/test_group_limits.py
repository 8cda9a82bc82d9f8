"""
Groups without limit (issue 28, F5): what one user may create, and no log
file left for a group that never held a message. StringTransport and Clock.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.realm import GROUP_CREATIONS_PER_MINUTE, MAX_GROUPS_OWNED
from tests.irc_support import IRCEnvironment, find
from tests.support import ChatFixture

TOO_FAST = f"ERR Too many group chats created in a minute (at most {GROUP_CREATIONS_PER_MINUTE}). Please try again later"
TOO_MANY = f"ERR You already own {MAX_GROUPS_OWNED} group chats; no more can be created."


def reply(lines) -> str:
    """The command's reply among the notices that came with it."""
    return [line for line in lines if line.startswith(("OK", "ERR"))][0]


def group_logs(fixture) -> list[str]:
    return sorted(name for name in os.listdir(fixture.dir) if name.endswith("_messageLog.txt"))


class CreationLimitTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def create(self, name) -> list[str]:
        return self.yoda.send(f"/creategroup {name} Hans")

    def test_creations_per_minute(self):
        replies = [self.create(f"g{i}")[0] for i in range(GROUP_CREATIONS_PER_MINUTE + 5)]
        self.assertEqual(sum(r.startswith("OK Group chat room has been created") for r in replies),
                         GROUP_CREATIONS_PER_MINUTE)
        self.assertEqual(replies[GROUP_CREATIONS_PER_MINUTE:], [TOO_FAST] * 5)
        self.assertEqual(len(group_logs(self.f)), GROUP_CREATIONS_PER_MINUTE)  # nothing made for the refused
        self.assertEqual(reply(self.hans.send("/msgto Yoda still here"))[:3], "OK ")  # others unaffected
        self.f.clock.advance(60)
        self.assertTrue(reply(self.create("late")).startswith("OK Group chat room has been created"))

    def test_groups_owned(self):
        for i in range(MAX_GROUPS_OWNED):
            self.f.clock.advance(60 / GROUP_CREATIONS_PER_MINUTE)
            self.assertTrue(self.create(f"g{i}")[0].startswith("OK "), i)
        self.f.clock.advance(60)
        self.assertEqual(self.create("onemore"), [TOO_MANY])
        # Hans may still create his own.
        self.assertTrue(reply(self.hans.send("/creategroup hans Yoda")).startswith("OK "))


class EmptyLogTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.env = IRCEnvironment(self.f.chat, self.f.clock)

    def test_irc_join_flood_is_capped_and_leaves_no_empty_files(self):
        c = self.env.register("vader", "sithlord**")
        channels = ",".join(f"#g{i}" for i in range(60))
        lines = c.send(f"JOIN {channels}")
        self.assertEqual(len(find(lines, "JOIN")), GROUP_CREATIONS_PER_MINUTE)
        refused = find(lines, "405")
        self.assertEqual(len(refused), 60 - GROUP_CREATIONS_PER_MINUTE)
        self.assertEqual(refused[0].params[1:], [f"#g{GROUP_CREATIONS_PER_MINUTE}", TOO_FAST[4:]])
        self.assertEqual(len(group_logs(self.f)), GROUP_CREATIONS_PER_MINUTE)
        c.send("PRIVMSG #g0 :kept")
        c.send(f"PART {channels}")
        # The groups are gone; only the log that holds a message stays.
        self.assertEqual(group_logs(self.f), ["g0_messageLog.txt"])
        self.assertEqual(self.f.read("g0_messageLog.txt").count("; vader; kept"), 1)
