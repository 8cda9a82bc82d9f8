"""
The cluster bus without Redis: a node's realm on a Clock with a recording
stand-in for the Redis connection. What other nodes are sent, and what a
node does with what it receives.
"""

import json

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from chatproto.cluster.bus import ClusterBus
from chatproto.core.realm import Group

from .support import ChatFixture


class RecordingRedis:
    def __init__(self):
        self.published = []

    def publish(self, channel, message):
        self.published.append((channel, json.loads(message)))
        return defer.succeed(1)

    def eval(self, script, keys, args):
        return defer.succeed(1)


class BusTests(SynchronousTestCase):
    def setUp(self):
        self.fixture = ChatFixture(self)
        self.chat = self.fixture.chat
        self.fixture.storage.last_pos = 0
        database = self.fixture.storage.database  # PostgreSQL's lockout calls, recorded
        self.saved_blocks = []
        database.blocks = lambda now: [("luke", now + 5)]
        database.save_block = lambda name, until: defer.succeed(self.saved_blocks.append(name))
        self.bus = ClusterBus(self.chat, self.fixture.storage, ("127.0.0.1", 6379, 0), self.fixture.clock,
                              node="A")
        self.bus.install()
        self.bus.redis = RecordingRedis()
        self.bus.up = True

    def to_nodes(self):
        return {channel.rsplit(":", 1)[1]: payload for channel, payload in self.bus.redis.published
                if ":node:" in channel}

    def test_fan_out_is_one_publish_per_node(self):
        members = {"Yoda": True}
        for i in range(1000):
            node = "B" if i % 2 else "C"
            name = f"m{i}"
            self.bus.received("chatproto:0:all", json.dumps(
                {"t": "on", "n": node, "u": [[name, "10.0.0.1", 0, "01 Jun 2022 21:30:04", 1.0]]}))
            members[name] = True
        self.chat._groups["fans"] = Group("Fans", "Yoda", False, members)
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.redis.published.clear()
        self.assertEqual(yoda.send("/groupmsg Fans hello all"), ["OK Group chat message sent."])
        sent = self.to_nodes()
        self.assertEqual(sorted(sent), ["B", "C"])  # 2 publishes for 1000 remote members
        for node in ("B", "C"):
            [[type_name, values, names, _pos, key, but]] = sent[node]["e"]
            self.assertEqual((type_name, names, key, but), ("Message", None, "fans", "Yoda"))
            self.assertIn("hello all", values)  # each node finds its members in its copy of the group

    def test_a_group_event_from_another_node_reaches_the_joined_members_here(self):
        self.chat._groups["jedi"] = Group("Jedi", "Yoda", False, {"Yoda": True, "Hans": True, "leia": False})
        hans = self.fixture.login("Hans", "falcon*solo")
        leia = self.fixture.login("leia", "alderaan")
        event = ["Message", ["group", 3, "01 Jun 2022 21:30:04", 1.0, "Yoda", None, "Jedi", "hi all"],
                 None, 9, "jedi", "Yoda"]
        self.bus.received("chatproto:0:node:A", json.dumps({"e": [event]}))
        self.fixture.clock.advance(0)
        self.assertEqual(hans.output(), ["MSG 01 Jun 2022 21:30:04, Jedi, Yoda: hi all"])
        self.assertEqual(leia.output(), [])  # invited, not joined

    def test_a_remote_delivery_reaches_the_local_session_once(self):
        hans = self.fixture.login("Hans", "falcon*solo")
        event = ["Message", ["private", 7, "01 Jun 2022 21:30:04", 1.0, "Yoda", "Hans", None, "hi"],
                 ["Hans"], 42]
        for _ in range(2):  # the second copy: a catch-up that overlaps
            self.bus.received("chatproto:0:node:A", json.dumps({"e": [event]}))
        self.fixture.clock.advance(0)
        self.assertEqual(hans.output(), ["MSG 01 Jun 2022 21:30:04, Yoda: hi"])
        self.assertEqual(self.bus.received_pos, 42)

    def test_away_is_told_to_every_node_and_heard_from_them(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.redis.published.clear()
        self.assertEqual(yoda.send("/away gone fishing"), ["OK You are marked as away."])
        (channel, payload), = self.bus.redis.published
        self.assertEqual((channel, payload["t"], payload["u"], payload["x"]),
                         ("chatproto:0:all", "away", "Yoda", "gone fishing"))
        # Hans, on node B, goes away: a message to him here says so; his logout ends it.
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", "10.0.0.2", 6001, "01 Jun 2022 21:30:04", 1.0]]}))
        self.bus.received("chatproto:0:all", json.dumps({"t": "away", "n": "B", "u": "Hans", "x": "at lunch"}))
        self.assertEqual(yoda.send("/msgto Hans hi")[0], "NOTICE Hans is away: at lunch")
        self.bus.received("chatproto:0:all", json.dumps({"t": "off", "n": "B", "u": ["Hans"]}))
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", "10.0.0.2", 6001, "01 Jun 2022 21:30:05", 2.0]]}))
        self.assertRegex(yoda.send("/msgto Hans back?")[0], "^OK message sent at")

    def test_remote_users_are_listed_and_already_logged_in(self):
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", "10.0.0.2", 6001, "01 Jun 2022 21:30:04", 1.0]]}))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(yoda.send("/activeuser"),
                         ["DATA Hans, 10.0.0.2, 6001, active since 01 Jun 2022 21:30:04.", "OK"])
        again = self.fixture.connect()
        self.assertEqual(again.send("LOGIN Hans falcon*solo 6000"), ["ERR This account is already logged in"])
        self.bus.received("chatproto:0:all", json.dumps({"t": "off", "n": "B", "u": ["Hans"]}))
        self.assertEqual(yoda.send("/msgto Hans there?"), ["ERR Hans is not active"])

    def test_group_changes_from_other_nodes_are_applied(self):
        for op in (["group", "jedi", "Jedi", "Hans", False], ["member", "jedi", "Hans", True],
                   ["member", "jedi", "Yoda", False]):
            self.bus.received("chatproto:0:all", json.dumps({"t": "group", "n": "B", "op": op}))
        self.assertEqual(self.chat.group_info("Jedi").members, (("Hans", True), ("Yoda", False)))
        self.bus.received("chatproto:0:all", json.dumps({"t": "group", "n": "B", "op": ["ungroup", "jedi"]}))
        self.assertIsNone(self.chat.group_info("Jedi"))

    def test_failures_on_other_nodes_count_toward_the_lockout(self):
        for _ in range(2):
            self.bus.received("chatproto:0:all", json.dumps({"t": "fail", "n": "B", "u": "Yoda"}))
        connection = self.fixture.connect()
        self.assertEqual(connection.send("LOGIN Yoda wrong 6000"),
                         ["ERR Invalid Password. Your account has been blocked. Please try again later"])
        self.assertIn(("chatproto:0:all", {"t": "fail", "u": "Yoda", "n": "A"}), self.bus.redis.published)
        self.assertEqual(self.saved_blocks, ["Yoda"])

    def test_a_block_kept_in_postgresql_is_known_at_start(self):
        connection = self.fixture.connect()
        self.assertEqual(connection.send("LOGIN luke jedi*knight 6000"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])
        self.fixture.clock.advance(5)
        self.assertEqual(self.fixture.connect().send("LOGIN luke jedi*knight 6000"), ["OK Welcome to chatproto!"])
