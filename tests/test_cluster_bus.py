"""
The cluster bus without Redis: a node's realm on a Clock with a recording
stand-in for the Redis connection. What other nodes are sent, and what a
node does with what it receives.
"""

import json

from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from chatproto.cluster.bus import CLAIM, FORGET_NODE, ClusterBus
from chatproto.cluster.lockout import SharedLockout
from chatproto.cluster.shared import SharedBans
from chatproto.storage.model import DatabaseError
from chatproto.core.realm import Group

from .support import ChatFixture


class RecordingRedis:
    def __init__(self):
        self.published = []
        self.hashes = {}  # key -> {field: value}: what Redis holds (the presence)

    def hget(self, key, field):
        return defer.succeed(self.hashes.get(key, {}).get(field))

    def publish(self, channel, message):
        self.published.append((channel, json.loads(message)))
        return defer.succeed(1)

    def eval(self, script, keys, args):
        return defer.succeed([1] if script is CLAIM else 1)  # (a claim: claimed, no dead node)


class BusTests(SynchronousTestCase):
    def setUp(self):
        table = LockoutTable()  # PostgreSQL's lockout, in memory
        table.rows["luke"] = [0, 1654119004 + 5]  # a block running when the node starts

        def shared(clock, attempts):
            self.lockout = SharedLockout(clock, attempts, table)
            self.lockout.load()
            return self.lockout

        self.fixture = ChatFixture(self, lockout=shared)
        self.chat = self.fixture.chat
        self.fixture.storage.last_pos = 0
        self.bus = ClusterBus(self.chat, self.fixture.storage, ("127.0.0.1", 6379, 0), self.fixture.clock,
                              node="A", lockout=self.lockout)
        self.bus.install()
        self.bus.redis = RecordingRedis()
        self.bus.up = True

    def to_nodes(self):
        return {channel.rsplit(":", 1)[1]: payload for channel, payload in self.bus.redis.published
                if ":node:" in channel}

    def test_a_login_while_redis_is_reconnected_waits_for_it(self):
        self.bus.up = False  # the subscriber connection was lost; the node reconnects
        self.bus.ever_up = True
        connection = self.fixture.connect()
        self.assertEqual(connection.send("LOGIN Yoda wise@!man 6000"), [])
        self.fixture.clock.advance(2)
        self.bus.up = True  # registered again
        self.bus._now_up()
        self.fixture.clock.advance(0)
        self.assertEqual(connection.output(), ["OK Welcome to chatproto!"])
        # Not back within the hold: refused, as before.
        self.bus.up = False
        hans = self.fixture.connect()
        self.assertEqual(hans.send("LOGIN Hans falcon*solo 6000"), [])
        self.fixture.clock.advance(4.9)
        self.assertEqual(hans.output(), [])
        self.fixture.clock.advance(0.1)
        self.assertEqual(hans.output(), ["ERR Server error: the login could not be recorded. Please try again later"])
        self.bus._now_up()  # back after all: the login that gave up stays refused
        self.assertEqual(sorted(self.bus.mine), ["Yoda"])  # the sessions it claims in Redis

    def test_fan_out_is_one_publish_per_node(self):
        members = {"Yoda": True}
        for i in range(1000):
            node = "B" if i % 2 else "C"
            name = f"m{i}"
            self.bus.received("chatproto:0:all", json.dumps(
                {"t": "on", "n": node, "u": [[name, [[1, "line", "10.0.0.1", 0, "01 Jun 2022 21:30:04", 1.0]]]]}))
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

    def test_an_invited_member_on_another_node_is_sent_the_members_now(self):
        """A join here: the group's members now go by name to an invited member's node (its page)."""
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", [[1, "line", "10.0.0.2", 6001, "01 Jun 2022 21:30:04", 1.0]]]]}))
        yoda = self.fixture.login("Yoda", "wise@!man")
        leia = self.fixture.login("leia", "alderaan")
        yoda.send("/creategroup Jedi leia Hans")
        leia.output()
        self.bus.redis.published.clear()
        self.assertEqual(leia.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])
        self.fixture.clock.advance(0)
        [[type_name, values, names, _pos]] = self.to_nodes()["B"]["e"]
        self.assertEqual((type_name, names), ("MembersChanged", ["Hans"]))
        self.assertEqual(values[:2], ["Jedi", [["Yoda", True], ["leia", True], ["Hans", False]]])

    def test_the_members_now_from_another_node_reach_a_page_here(self):
        """Another node's MembersChanged for an invited member here: the page's JSON, as on one server."""
        from chatproto.frontends.web.socket import event_json

        page = Watcher()  # a page's session
        logged_in = []
        self.chat.login("Hans", "falcon*solo", page).addBoth(logged_in.append)
        self.fixture.clock.advance(0)
        self.assertEqual(logged_in[0].name, "Hans")
        entry = ["MembersChanged", ["Jedi", [["Yoda", True], ["leia", True], ["Hans", False]],
                                    "01 Jun 2022 21:30:04", 1.0], ["Hans"], 0]
        self.bus.received("chatproto:0:node:A", json.dumps({"e": [entry]}))
        [event] = page.events
        self.assertEqual(event_json(event), {
            "type": "members_changed", "group": "Jedi", "timestamp": "01 Jun 2022 21:30:04",
            "members": [{"name": "Yoda", "joined": True}, {"name": "leia", "joined": True},
                        {"name": "Hans", "joined": False}]})

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
        # Hans, on node B, goes away: a message to him here says so, also after he logged out and
        # in again (away is kept until cleared); his clearing it on node B ends it.
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", [[1, "line", "10.0.0.2", 6001, "01 Jun 2022 21:30:04", 1.0]]]]}))
        self.bus.received("chatproto:0:all", json.dumps({"t": "away", "n": "B", "u": "Hans", "x": "at lunch"}))
        self.assertEqual(yoda.send("/msgto Hans hi")[0], "NOTICE Hans is away: at lunch")
        self.bus.received("chatproto:0:all", json.dumps({"t": "off", "n": "B", "u": ["Hans"]}))
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", [[1, "line", "10.0.0.2", 6001, "01 Jun 2022 21:30:05", 2.0]]]]}))
        self.assertEqual(yoda.send("/msgto Hans still at lunch?")[0], "NOTICE Hans is away: at lunch")
        self.bus.received("chatproto:0:all", json.dumps({"t": "away", "n": "B", "u": "Hans", "x": None}))
        self.assertRegex(yoda.send("/msgto Hans back?")[0], "^OK message sent at")

    def test_remote_users_are_listed_and_already_logged_in(self):
        self.chat.max_sessions = 1  # (--max-sessions 1: one login per account, on every node)
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["Hans", [[1, "line", "10.0.0.2", 6001, "01 Jun 2022 21:30:04", 1.0]]]]}))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(yoda.send("/activeuser"),
                         ["DATA Hans, 10.0.0.2, 6001, active since 01 Jun 2022 21:30:04.", "OK"])
        again = self.fixture.connect()
        self.bus.redis.eval = lambda script, keys, args: defer.succeed([0])  # Redis counts Hans's on B
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

    def test_a_block_decided_on_another_node_is_known_here_at_once(self):
        self.bus.received("chatproto:0:all", json.dumps({"t": "block", "n": "B", "u": "Yoda",
                                                         "until": self.fixture.clock.seconds() + 10}))
        self.assertEqual(self.fixture.connect().send("LOGIN Yoda wise@!man 6000"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])

    def test_a_block_decided_here_is_told_to_every_node(self):
        connection = self.fixture.connect()
        for _ in range(2):
            connection.send("LOGIN Yoda wrong 6000")
        self.assertEqual(connection.send("LOGIN Yoda wrong 6000"),
                         ["ERR Invalid Password. Your account has been blocked. Please try again later"])
        until = self.fixture.clock.seconds() + 10
        self.assertIn(("chatproto:0:all", {"t": "block", "u": "Yoda", "until": until, "n": "A"}),
                      self.bus.redis.published)

    def test_a_block_kept_in_postgresql_is_known_at_start(self):
        connection = self.fixture.connect()
        self.assertEqual(connection.send("LOGIN luke jedi*knight 6000"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])
        self.fixture.clock.advance(5)
        self.assertEqual(self.fixture.connect().send("LOGIN luke jedi*knight 6000"), ["OK Welcome to chatproto!"])


class Watcher:
    """A session that watches everyone's presence (as the web page's does)."""

    frontend, ip, udp_port, wants_presence = "web", "127.0.0.1", 0, True

    def __init__(self):
        self.events = []

    def receive(self, event):
        self.events.append(event)

    def disconnect(self, notice):
        pass


class NodeGoneTests(SynchronousTestCase):
    def setUp(self):
        self.fixture = ChatFixture(self)
        self.fixture.storage.last_pos = 0
        self.bus = ClusterBus(self.fixture.chat, self.fixture.storage, ("127.0.0.1", 6379, 0),
                              self.fixture.clock, node="A")
        self.bus.install()
        self.bus.redis = RecordingRedis()
        self.bus.up = True
        self.logged = []
        observer = lambda event: self.logged.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def test_a_dead_node_s_users_go_offline_and_it_is_logged_once(self):
        watcher = Watcher()
        d = self.fixture.chat.login("Yoda", "wise@!man", watcher)
        self.fixture.clock.advance(0)  # the login recorded
        self.successResultOf(d)
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["leia", [[1, "line", "10.0.0.1", 0, "01 Jun 2022 21:30:04", 1.0]]]]}))
        gone = json.dumps({"t": "off", "n": "B", "u": ["leia"], "gone": True})
        for _ in range(2):  # from the node that saw it first, then this node's own view of it
            self.bus.received("chatproto:0:all", gone)
        self.assertEqual([type(e).__name__ + " " + e.username for e in watcher.events],
                         ["UserOnline leia", "UserOffline leia"])
        self.assertEqual([line for line in self.logged if "is gone" in line],
                         ["Cluster: node B is gone; 1 users inactive"])


class OperatingTests(SynchronousTestCase):
    """An administrator on this node and users on another one; what another node's administrator did here."""

    def setUp(self):
        self.fixture = ChatFixture(self)
        self.chat = self.fixture.chat
        self.chat.admins = {"Yoda"}
        self.fixture.storage.last_pos = 0
        self.bans = SharedBans(self.fixture.storage)
        self.chat.bans.store = self.bans  # as a node is assembled: ChatRealm(..., bans=SharedBans(ledger))
        self.bus = ClusterBus(self.chat, self.fixture.storage, ("127.0.0.1", 6379, 0), self.fixture.clock,
                              node="A", bans=self.bans)
        self.bus.install()
        self.bus.redis = RecordingRedis()
        self.bus.up = True
        self.bus.received("chatproto:0:all", json.dumps(
            {"t": "on", "n": "B", "u": [["leia", [[1, "line", "10.0.0.1", 0, "01 Jun 2022 21:30:04", 1.0]]]]}))

    def test_kick_and_ban_of_a_user_on_another_node_end_the_session_there(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(yoda.send("/kick leia flooding"), ["OK leia has been disconnected."])
        self.fixture.clock.advance(0)
        self.assertIn(("chatproto:0:node:B",
                       {"end": [["leia", "You have been disconnected by the administrator Yoda: flooding"]]}),
                      self.bus.redis.published)
        self.assertEqual(yoda.send("/ban leia forever"),
                         ["OK leia is banned until the ban is lifted (/unban leia)."])
        self.assertIn(("chatproto:0:all", {"t": "ban", "u": "leia", "until": float("inf"), "n": "A"}),
                      self.bus.redis.published)

    def test_what_another_node_s_administrator_did_applies_here(self):
        hans = self.fixture.login("Hans", "falcon*solo")
        self.bus.received("chatproto:0:node:A", json.dumps(
            {"end": [["Hans", "You have been disconnected by the administrator Yoda"]]}))
        self.fixture.clock.advance(0)
        self.assertEqual(hans.output(), ["NOTICE You have been disconnected by the administrator Yoda"])
        self.bus.received("chatproto:0:all", json.dumps({"t": "ban", "n": "B", "u": "Hans", "until": 2e9}))
        self.assertEqual(self.fixture.connect().send("LOGIN Hans falcon*solo 6000"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])
        self.bus.received("chatproto:0:all", json.dumps({"t": "ban", "n": "B", "u": "Hans", "until": None}))
        self.assertEqual(self.fixture.connect().send("LOGIN Hans falcon*solo 6000"), ["OK Welcome to chatproto!"])


class LockoutTable:
    """
    PostgreSQL's lockout table and its two statements (tested against
    PostgreSQL in test_storage), in memory: each call is atomic, as each
    statement is.
    """

    def __init__(self):
        self.rows = {}  # username -> [failures, until]

    def lockout_failure(self, username, now, attempts, block_seconds):
        row = self.rows.setdefault(username, [0, 0.0])
        was_blocked = row[1] > now
        if not was_blocked:
            if row[0] + 1 >= attempts:
                row[:] = [0, now + block_seconds]
            else:
                row[0] += 1
        return defer.succeed((row[1], was_blocked))

    def lockout_success(self, username, now):
        row = self.rows.get(username)
        if row is None:
            return defer.succeed(0.0)
        if row[1] <= now:
            row[0] = 0
        return defer.succeed(row[1])

    def blocks(self, now):
        return sorted((name, until) for name, (_failures, until) in self.rows.items() if until > now)


class SharedLockoutTests(SynchronousTestCase):
    """Two nodes' lockouts on one table and one clock: node A's realm, node B's lockout."""

    def setUp(self):
        self.table = LockoutTable()
        self.told = []

        def node_a(clock, attempts):
            lockout = SharedLockout(clock, attempts, self.table)
            lockout.tell = lambda username, until: self.told.append((username, until))
            return lockout

        self.fixture = ChatFixture(self, attempts=2, lockout=node_a)
        self.clock = self.fixture.clock
        self.b = SharedLockout(self.clock, 2, self.table)

    def login(self, password):
        return self.fixture.connect().send(f"LOGIN Yoda {password} 6000")

    def test_failures_on_two_nodes_count_toward_one_block_that_ends_at_once_everywhere(self):
        self.assertEqual(self.successResultOf(self.b.failed("Yoda")), "wrong-password")
        self.assertEqual(self.login("wrong"),
                         ["ERR Invalid Password. Your account has been blocked. Please try again later"])
        until = self.clock.seconds() + 10
        self.assertEqual(self.told, [("Yoda", until)])
        self.b.blocked_elsewhere("Yoda", until)  # what the bus does on node B
        self.clock.advance(9.99)
        self.assertTrue(self.b.is_blocked("Yoda"))
        self.assertEqual(self.login("wise@!man"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])
        self.clock.advance(0.01)  # the same moment on both nodes
        self.assertFalse(self.b.is_blocked("Yoda"))
        self.assertEqual(self.login("wise@!man"), ["OK Welcome to chatproto!"])
        self.assertEqual(self.fixture.timers(), [])

    def test_a_failure_during_a_block_elsewhere_is_refused_as_blocked(self):
        self.successResultOf(self.b.failed("Yoda"))
        self.assertEqual(self.successResultOf(self.b.failed("Yoda")), "blocked-now")
        # Node A has not heard of the block yet: the table refuses all the same.
        self.assertEqual(self.login("wrong"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])

    def test_the_right_password_on_a_node_that_has_not_heard_of_the_block_is_refused(self):
        self.successResultOf(self.b.failed("Yoda"))
        self.successResultOf(self.b.failed("Yoda"))
        self.assertEqual(self.login("wise@!man"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])
        self.clock.advance(10)
        self.assertEqual(self.login("wise@!man"), ["OK Welcome to chatproto!"])

    def test_a_success_starts_the_count_again_on_every_node(self):
        self.successResultOf(self.b.failed("Yoda"))
        self.assertEqual(self.login("wise@!man"), ["OK Welcome to chatproto!"])
        self.assertEqual(self.successResultOf(self.b.failed("Yoda")), "wrong-password")

    def test_a_ban_told_while_the_login_is_checked_refuses_it(self):
        pending = defer.Deferred()
        self.table.lockout_success = lambda username, now: pending  # PostgreSQL answering
        connection = self.fixture.connect()
        connection.protocol.dataReceived(b"LOGIN Yoda wise@!man 6000\n")
        self.fixture.chat.bans.changed_elsewhere("Yoda", float("inf"))  # what the bus does
        pending.callback(0.0)
        self.clock.advance(0)
        self.assertEqual(connection.output(),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])

    def test_a_node_that_cannot_reach_the_database_counts_alone(self):
        self.table.lockout_failure = lambda *args: defer.fail(DatabaseError("the database: gone"))
        self.assertEqual(self.login("wrong"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(self.login("wrong"),
                         ["ERR Invalid Password. Your account has been blocked. Please try again later"])


def on(node, name, *sessions):
    """The bus's news that C{name}'s sessions on C{node} are now C{sessions} ([] none)."""
    return json.dumps({"t": "on", "n": node, "u": [[name, [list(one) for one in sessions]]]})


YODA_ON_B = (7, "irc", "10.0.0.2", 0, "01 Jun 2022 21:30:05", 1654119005.0)  # after the logins here


class SessionsOnSeveralNodesTests(SynchronousTestCase):
    """One account logged in on this node (A) and on node B at once (--max-sessions)."""

    def setUp(self):
        self.fixture = ChatFixture(self)
        self.chat = self.fixture.chat
        self.fixture.storage.last_pos = 0
        self.bus = ClusterBus(self.chat, self.fixture.storage, ("127.0.0.1", 6379, 0), self.fixture.clock,
                              node="A")
        self.bus.install()
        self.bus.redis = RecordingRedis()
        self.bus.up = True
        self.claims = []
        self.bus.redis.eval = lambda script, keys, args: (self.claims.append(args), defer.succeed([1]))[1]

    def to_node(self, node):
        return [payload for channel, payload in self.bus.redis.published if channel == "chatproto:0:node:" + node]

    def test_a_message_reaches_the_account_s_sessions_here_and_on_the_other_node(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        hans = self.fixture.login("Hans", "falcon*solo")
        self.assertRegex(hans.send("/msgto Yoda hi both")[0], "^OK message sent at")
        self.fixture.clock.advance(0)
        self.assertRegex(yoda.output()[0], "^MSG .*, Hans: hi both$")
        [[entry]] = [payload["e"] for payload in self.to_node("B")]
        self.assertEqual((entry[0], entry[1][-1], entry[2]), ("Message", "hi both", ["Yoda"]))

    def test_what_the_account_sends_here_is_shown_on_its_sessions_elsewhere(self):
        self.bus.received("chatproto:0:all", on("B", "Hans", (1, "line", "10.0.0.3", 0, "01 Jun 2022 21:30:04", 1.0)))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        self.assertRegex(yoda.send("/msgto Hans hello")[0], "^OK message sent at")
        self.fixture.clock.advance(0)
        [payload] = self.to_node("B")
        kinds = sorted((entry[0], tuple(entry[2])) for entry in payload["e"])
        self.assertEqual(kinds, [("Message", ("Hans",)), ("Sent", ("Yoda",))])  # one publish for both

    def test_a_send_from_another_node_is_shown_here_as_sent(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        sent = ["Sent", ["private", 9, "01 Jun 2022 21:30:06", 3.0, "Yoda", "Hans", None, "from B"], ["Yoda"], 0]
        self.bus.received("chatproto:0:node:A", json.dumps({"e": [sent]}))
        self.fixture.clock.advance(0)
        self.assertEqual(yoda.output(), ["SENT 01 Jun 2022 21:30:06, to Hans: from B"])

    def test_sessions_lists_every_node_and_logout_all_ends_them_there(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        lines = yoda.send("/sessions")
        self.assertEqual(len(lines), 3)
        self.assertRegex(lines[0], r"^DATA 1, line, 127\.0\.0\.1, 6000, active since .* \(this one\)\.$")
        self.assertEqual(lines[1:], ["DATA 2, irc, 10.0.0.2, 0, active since 01 Jun 2022 21:30:05.", "OK"])
        self.assertEqual(yoda.send("/logout all"), ["OK Bye, Yoda!"])
        self.assertIn({"end": [["Yoda", "You have been logged out from another session"]]}, self.to_node("B"))

    def test_the_session_limit_counts_every_node(self):
        self.chat.max_sessions = 2
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(self.claims[-1][0::3], ["Yoda", "2"])  # counted by Redis against the limit
        # Redis counts the session on B: a third one is refused, and not kept here.
        self.bus.redis.eval = lambda script, keys, args: defer.succeed([0] if script is CLAIM else 1)
        self.assertEqual(self.fixture.connect().send("LOGIN Yoda wise@!man 6000"),
                         ["ERR This account is already logged in"])
        self.assertEqual(len(self.bus.mine["Yoda"]), 1)  # the refused session is not kept

    def test_a_tab_refused_while_another_was_claimed_is_not_left_in_the_other_nodes_lists(self):
        # Two tabs of Yoda's browser open here at once (sessions admitted on the cookie's word),
        # one session on B, a limit of 2: Redis grants the first and refuses the second. The
        # other nodes' /sessions and /activeuser must end with the one session here.
        from .test_irc import OtherSession

        self.chat.max_sessions = 2
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        claims = []

        def eval_(script, keys, args):
            if script is CLAIM:
                claims.append(defer.Deferred())
                return claims[-1]
            return defer.succeed(0)  # RELEASE: the refused session was never in Redis

        self.bus.redis.eval = eval_
        tabs = [OtherSession(), OtherSession()]
        tabs[1].ip = "10.0.0.9"
        results = [self.chat.add_session("Yoda", tab) for tab in tabs]
        self.assertEqual(len(claims), 2)
        claims[0].callback([1])
        claims[1].callback([0])
        self.fixture.clock.advance(0)
        self.successResultOf(results[0])
        self.assertEqual(self.failureResultOf(results[1]).value.code, "already-logged-in")
        told = [payload["u"] for channel, payload in self.bus.redis.published
                if channel == "chatproto:0:all" and payload.get("t") == "on"]
        [[name, sessions]] = told[-1]  # what the other nodes hold last of Yoda's sessions here
        self.assertEqual((name, [entry[2] for entry in sessions]), ("Yoda", ["127.0.0.1"]))

    def test_away_changed_while_this_node_was_cut_off_is_caught_up(self):
        # Redis restarted: what Yoda (on B) did with their away message meanwhile was told to
        # nobody. Back on the bus, this node reads it again from the shared database, or Hans
        # here would hear 'Yoda is away: lunch' long after Yoda came back.
        from chatproto.cluster.commands import Away

        hans = self.fixture.login("Hans", "falcon*solo")
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        told = Away("Yoda", "lunch")
        told.node = "B"
        self.bus.received("chatproto:0:all", json.dumps(told.to_json()))
        self.assertIn("NOTICE Yoda is away: lunch", hans.send("/msgto Yoda hungry?"))
        self.bus._lost()  # cut off; meanwhile, through B, into the shared database:
        database = self.fixture.storage.database
        database.commit_now([("away", "Yoda", None), ("away", "leia", "on Alderaan")])
        self.fixture.storage.reload_groups = lambda: defer.succeed([])
        database.messages_since = lambda *args: defer.succeed([])
        self.successResultOf(self.bus._catch_up())
        reply = hans.send("/msgto Yoda back?")
        self.assertEqual(len(reply), 1)
        self.assertRegex(reply[0], "^OK message sent at")
        self.assertEqual(self.chat.away_of("leia"), "on Alderaan")

    def test_presence_is_told_once_for_an_account_on_several_nodes(self):
        watcher = Watcher()
        d = self.chat.login("leia", "alderaan", watcher)
        self.fixture.clock.advance(0)  # the login recorded
        self.successResultOf(d)
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(yoda.send("/logout"), ["OK Bye, Yoda!"])
        self.bus.received("chatproto:0:all", on("B", "Yoda"))
        self.assertEqual([type(e).__name__ for e in watcher.events if getattr(e, "username", "") == "Yoda"],
                         ["UserOnline", "UserOffline"])

    def test_a_refusal_asks_redis_when_the_news_of_a_login_is_not_here_yet(self):
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.redis.hashes["chatproto:0:presence"] = {"Hans": json.dumps({"B": [[1, "line", "10.0.0.3", 0,
                                                                                      "01 Jun 2022 21:30:04", 1.0]]})}
        self.assertRegex(yoda.send("/msgto Hans are you there")[0], "^OK message sent at")
        self.fixture.clock.advance(0)
        [[entry]] = [payload["e"] for payload in self.to_node("B")]
        self.assertEqual(entry[2], ["Hans"])
        self.assertEqual(yoda.send("/msgto leia hi"), ["ERR leia is not active"])  # asked, and not there

    def test_a_refusal_asks_the_database_when_the_news_of_a_group_is_not_here_yet(self):
        hans = self.fixture.login("Hans", "falcon*solo")
        # Created through node B: in the shared database, its news not read here yet.
        database = self.fixture.storage.database
        database.commit_now([("group", "jedi", "Jedi", "Yoda", False), ("member", "jedi", "Yoda", True),
                             ("member", "jedi", "Hans", False)])
        self.fixture.storage.group = lambda key: defer.succeed(
            next((g for g in database.groups() if g.key == key), None))
        self.assertEqual(hans.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])
        self.assertEqual(hans.send("/joingroup Sith"), ["ERR Groupchat (Name: Sith) does not exist."])

    def test_a_dead_node_found_by_a_claim_is_gone_everywhere_at_once(self):
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        replies = {CLAIM: [1, "B"], FORGET_NODE: []}  # B is dead: the claim dropped Yoda's session there
        self.bus.redis.eval = lambda script, keys, args: defer.succeed(replies.get(script, 1))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertEqual(len(yoda.send("/sessions")), 2)  # this one, and OK: B's is gone
        self.assertIn(("chatproto:0:all", {"t": "off", "n": "B", "u": ["Yoda"], "gone": True}),
                      self.bus.redis.published)

    def test_away_and_read_markers_reach_the_account_s_sessions_on_other_nodes(self):
        hans = self.fixture.login("Hans", "falcon*solo")
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.bus.received("chatproto:0:all", on("B", "Yoda", YODA_ON_B))
        hans.send("/msgto Yoda read me")
        self.fixture.clock.advance(0)
        yoda.output()
        self.bus.redis.published.clear()
        self.assertEqual(yoda.send("/away gone fishing"), ["OK You are marked as away."])
        self.assertEqual(yoda.send("/read Hans 1"), ["OK"])
        self.fixture.clock.advance(0)
        sent = [(entry[0], entry[2], entry[1][:2]) for payload in self.to_node("B") for entry in payload["e"]]
        self.assertEqual(sent, [("AwayChanged", ["Yoda"], ["Yoda", "gone fishing"]),
                                ("ReadMarker", ["Yoda"], ["Hans", 1])])


    def test_a_file_offer_goes_to_one_session_on_one_node(self):
        self.bus.received("chatproto:0:all", on("B", "Hans", (1, "web", "10.0.0.3", 0, "01 Jun 2022 21:30:04", 1.0),
                                                (2, "line", "10.0.0.4", 6001, "01 Jun 2022 21:30:05", 2.0)))
        yoda = self.fixture.login("Yoda", "wise@!man")
        self.assertRegex(yoda.send("/p2pvideo Hans film.mp4")[0], r"^PEER Hans 10\.0\.0\.4 6001 ")
        self.fixture.clock.advance(0)
        [[entry]] = [payload["e"] for payload in self.to_node("B")]
        self.assertEqual((entry[0], entry[2], entry[6]), ("FileOffer", ["Hans"], 2))  # session 2 only

    def test_a_file_offer_from_another_node_reaches_that_session_only(self):
        first = self.fixture.login("Hans", "falcon*solo", udp_port=6001)
        second = self.fixture.login("Hans", "falcon*solo", udp_port=6002)
        sid = next(entry[0] for user, entry in self.bus.mine["Hans"].items() if user.udp_port == 6002)
        offer = ["FileOffer", ["ab12", "00" * 32, "Yoda", "10.0.0.1", "film.mp4", "01 Jun 2022 21:30:06", 3.0],
                 ["Hans"], 0, None, None, sid]
        self.bus.received("chatproto:0:node:A", json.dumps({"e": [offer]}))
        self.fixture.clock.advance(0)
        self.assertEqual(first.output(), [])
        self.assertEqual([line.split()[0] for line in second.output()], ["OFFER"])

class CommandTests(SynchronousTestCase):
    """The bus's messages (chatproto.cluster.commands): what is sent is read back the same;
    what cannot be read is dropped with a clear log line, and nothing changes."""

    def test_every_command_reads_back_what_it_sends(self):
        from chatproto.cluster import commands

        sent = [commands.Sessions([["Yoda", [[1, "line", "10.0.0.1", 6000, "01 Jun 2022 21:30:04", 1.0]]]]),
                commands.Off(["Yoda"], gone=True), commands.Away("Yoda", None),
                commands.GroupChange(["member", "jedi", "Hans", True]),
                commands.Accounts({"rey": "secret"}, ["luke"]), commands.Ban("Hans", None),
                commands.Deleted(None, 3, "Yoda"), commands.Block("Yoda", 12.5)]
        self.assertEqual(sorted(type(one).NAME for one in sent), sorted(commands.COMMANDS))
        for one in sent:
            one.node = "A"
            self.assertEqual(commands.parse(json.loads(json.dumps(one.to_json()))), one)

    def test_a_message_that_cannot_be_read_is_dropped_and_logged(self):
        fixture = ChatFixture(self)
        fixture.storage.last_pos = 0
        bus = ClusterBus(fixture.chat, fixture.storage, ("127.0.0.1", 6379, 0), fixture.clock, node="A")
        bus.install()
        logged = []
        observer = lambda event: logged.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for raw in ('{"t": "on", "n": "B"}', '{"t": "on", "n": "B", "u": [["Hans", [[1, "line"]]]]}',
                    '{"t": "dance", "n": "B"}', '[1, 2]', '{"t": "group", "n": "B", "op": ["member"]}', "{"):
            bus.received("chatproto:0:all", raw)
        self.assertEqual(bus.elsewhere, {})
        self.assertEqual([line for line in logged if line.startswith("Cluster:")], [
            "Cluster: a bus message dropped: on without 'u'",
            "Cluster: a bus message dropped: on: a session without its six fields",
            "Cluster: a bus message dropped: unknown command 'dance'",
            "Cluster: a bus message dropped: not a JSON object",
            "Cluster: a bus message dropped: group: not an operation: ['member']",
            "Cluster: unreadable bus message on chatproto:0:all"])

