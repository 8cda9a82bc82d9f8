"""
One person, several devices (docs/PROTOCOL.md, "Several sessions"): one
account logged in several times at once, over the line protocol on
StringTransport with time on a task.Clock.
"""

import re

from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.events import UserOffline, UserOnline

from .support import ChatFixture
from .test_irc import OtherSession

TS = r"01 Jun 2022 \d{2}:\d{2}:\d{2}"


class Watcher(OtherSession):
    """A session that wants presence events about everyone (as the page does)."""

    frontend = "web"
    wants_presence = True


class SessionTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda1 = self.f.login("Yoda", "wise@!man", 6001)
        self.yoda2 = self.f.login("Yoda", "wise@!man", 6002)
        self.hans = self.f.login("Hans", "falcon*solo", 6003)

    def test_a_message_reaches_every_session_and_the_others_see_what_one_sent(self):
        self.assertRegex(self.hans.send("/msgto Yoda hello")[0], rf"^OK message sent at {TS}\.$")
        for yoda in (self.yoda1, self.yoda2):
            (line,) = yoda.output()
            self.assertRegex(line, rf"^MSG {TS}, Hans: hello$")
        self.assertRegex(self.yoda1.send("/msgto Hans hi back")[0], rf"^OK message sent at {TS}\.$")
        (sent,) = self.yoda2.output()
        self.assertRegex(sent, rf"^SENT {TS}, to Hans: hi back$")
        self.assertRegex(self.hans.output()[0], rf"^MSG {TS}, Yoda: hi back$")
        self.assertEqual(self.yoda1.output(), [])  # the sender has its OK, no echo

    def test_group_messages_and_membership_in_every_session(self):
        self.assertEqual(self.hans.send("/creategroup Jedi Yoda")[0][:3], "OK ")
        invitation = ("NOTICE You have been invited to the group chat Jedi by Hans. "
                      "Type /joingroup Jedi to join.")
        self.assertEqual(self.yoda1.output(), [invitation])
        self.assertEqual(self.yoda2.output(), [invitation])
        self.assertEqual(self.yoda2.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])
        self.assertEqual(self.yoda1.output(), ["NOTICE Yoda has joined the group chat Jedi."])
        self.assertEqual(self.yoda1.send("/groupmsg Jedi may the force"), ["OK Group chat message sent."])
        self.assertRegex(self.yoda2.output()[0], rf"^SENT {TS}, to #Jedi: may the force$")
        self.assertRegex(self.hans.output()[-1], rf"^MSG {TS}, Jedi, Yoda: may the force$")
        self.hans.send("/groupmsg Jedi be with you")
        for yoda in (self.yoda1, self.yoda2):
            self.assertRegex(yoda.output()[0], rf"^MSG {TS}, Jedi, Hans: be with you$")

    def test_userlog_activeuser_and_sessions(self):
        lines = self.f.read("userlog.txt").splitlines()
        self.assertEqual([line.split("; ")[0::2] for line in lines],
                         [["1", "Yoda", "6001"], ["2", "Yoda", "6002"], ["3", "Hans", "6003"]])
        self.assertEqual([re.sub(TS, "T", line) for line in self.hans.send("/activeuser")], [
            "DATA Yoda, 127.0.0.1, 6001, active since T.",
            "DATA Yoda, 127.0.0.1, 6002, active since T.",
            "OK",
        ])
        self.assertEqual([re.sub(TS, "T", line) for line in self.yoda2.send("/activeuser")],
                         ["DATA Hans, 127.0.0.1, 6003, active since T.", "OK"])
        self.assertEqual([re.sub(TS, "T", line) for line in self.yoda2.send("/sessions")], [
            "DATA 1, line, 127.0.0.1, 6001, active since T.",
            "DATA 2, line, 127.0.0.1, 6002, active since T (this one).",
            "OK",
        ])
        self.assertEqual(self.yoda2.send("/sessions now"), ["ERR Usage: /sessions"])
        self.yoda1.send("/logout")
        self.f.clock.advance(0)
        lines = self.f.read("userlog.txt").splitlines()
        self.assertEqual([line.split("; ")[0::2] for line in lines], [["1", "Yoda", "6002"], ["2", "Hans", "6003"]])
        self.assertEqual([re.sub(TS, "T", line) for line in self.yoda2.send("/sessions")],
                         ["DATA 1, line, 127.0.0.1, 6002, active since T (this one).", "OK"])
        # The user is still active: messages reach the session that is left.
        self.assertRegex(self.hans.send("/msgto Yoda still there?")[0], "^OK message sent at")
        self.assertRegex(self.yoda2.output()[0], "still there")

    def test_logout_all(self):
        self.assertEqual(self.yoda2.send("/logout everything"), ["ERR Usage: /logout [all]"])
        self.assertEqual(self.yoda2.send("/logout all"), ["OK Bye, Yoda!"])
        self.assertEqual(self.yoda1.output(), ["NOTICE You have been logged out from another session"])
        self.assertTrue(self.yoda1.transport.disconnecting)
        self.f.clock.advance(0)
        self.assertEqual(self.hans.send("/msgto Yoda hello"), ["ERR Yoda is not active"])
        self.assertNotIn("Yoda", self.f.read("userlog.txt"))

    def test_kick_ends_every_session(self):
        self.f.chat.admins.add("Hans")
        self.assertEqual(self.hans.send("/kick Yoda"), ["OK Yoda has been disconnected."])
        for yoda in (self.yoda1, self.yoda2):
            self.assertEqual(yoda.output(), ["NOTICE You have been disconnected by the administrator Hans"])
        self.assertEqual(self.hans.send("/msgto Yoda hello"), ["ERR Yoda is not active"])

    def test_p2pvideo_names_the_session_used_last_that_can_receive_files(self):
        self.yoda1.send("/groups")
        peer = self.hans.send("/p2pvideo Yoda film.mp4")
        self.assertRegex(peer[0], r"^PEER Yoda 127\.0\.0\.1 6001 ")
        self.assertEqual(self.yoda1.output()[0].split()[0], "OFFER")
        self.assertEqual(self.yoda2.output(), [])  # the offer goes to that session only
        self.yoda2.send("/groups")
        self.assertRegex(self.hans.send("/p2pvideo Yoda film.mp4")[0], r"^PEER Yoda 127\.0\.0\.1 6002 ")

    def test_presence_is_per_user(self):
        watcher = Watcher()
        self.f.chat.login("leia", "alderaan", watcher)
        self.f.clock.advance(0)
        luke1 = self.f.login("luke", "jedi*knight")
        luke2 = self.f.login("luke", "jedi*knight")
        self.assertEqual([type(e) for e in watcher.events], [UserOnline])
        luke1.send("/logout")
        self.assertEqual([type(e) for e in watcher.events], [UserOnline])
        luke2.drop()
        self.assertEqual([type(e) for e in watcher.events], [UserOnline, UserOffline])

    def test_a_message_on_its_way_when_the_first_session_leaves_reaches_the_others(self):
        # Hans's message is being stored when Yoda's first session logs out (the same turn):
        # the session still open shows it, as it shows every message to Yoda.
        self.hans.protocol.dataReceived(b"/msgto Yoda are you there?\n")
        self.yoda1.protocol.dataReceived(b"/logout\n")
        self.f.clock.advance(0)
        self.assertRegex(self.hans.output()[0], rf"^OK message sent at {TS}\.$")
        self.assertEqual(self.yoda1.output(), ["OK Bye, Yoda!"])
        (line,) = self.yoda2.output()
        self.assertRegex(line, rf"^MSG {TS}, Hans: are you there\?$")

    def test_what_a_session_sent_just_before_leaving_is_shown_on_the_others(self):
        # A script (or a hurried user) sends and logs out at once: the message is stored after
        # the session is gone; the account's other session shows it all the same.
        self.yoda1.protocol.dataReceived(b"/msgto Hans bye for now\n/logout\n")
        self.f.clock.advance(0)
        self.assertRegex(self.yoda1.output()[0], rf"^OK message sent at {TS}\.$")
        self.assertRegex(self.hans.output()[0], rf"^MSG {TS}, Yoda: bye for now$")
        (sent,) = self.yoda2.output()
        self.assertRegex(sent, rf"^SENT {TS}, to Hans: bye for now$")
        self.hans.send("/creategroup Jedi Yoda")
        self.yoda2.send("/joingroup Jedi")
        yoda3 = self.f.login("Yoda", "wise@!man", 6004)
        self.yoda2.protocol.dataReceived(b"/groupmsg Jedi may the force\n/logout\n")
        self.f.clock.advance(0)
        self.assertIn("Group chat message sent.", self.yoda2.output()[0])
        self.assertRegex(yoda3.output()[-1], rf"^SENT {TS}, to #Jedi: may the force$")

    def test_the_limit(self):
        f = ChatFixture(self, max_sessions=2)
        f.login("Yoda", "wise@!man")
        second = f.login("Yoda", "wise@!man")
        self.assertEqual(f.connect().send("LOGIN Yoda wise@!man 6000"), ["ERR This account is already logged in"])
        second.send("/logout")
        f.login("Yoda", "wise@!man")


class OfflineMessageTests(SynchronousTestCase):
    def test_without_the_option_the_user_must_be_active(self):
        f = ChatFixture(self)
        hans = f.login("Hans", "falcon*solo")
        self.assertEqual(hans.send("/msgto Yoda are you there?"), ["ERR Yoda is not active"])

    def test_with_the_option_a_message_waits(self):
        f = ChatFixture(self, offline_messages=True)
        hans = f.login("Hans", "falcon*solo")
        self.assertRegex(hans.send("/msgto Yoda are you there?")[0], rf"^OK message sent at {TS}\.$")
        self.assertEqual(hans.send("/msgto Nobody hi"), ["ERR No such user: Nobody"])
        yoda = f.login("Yoda", "wise@!man")
        self.assertRegex(yoda.send("/history Hans")[0], rf"^DATA #1 {TS}, Hans: are you there\?$")


class EveryFrontEndTests(SynchronousTestCase):
    """Yoda on the line protocol, on IRC twice and in a browser at once."""

    def setUp(self):
        from .irc_support import IRCEnvironment, commands, find
        from .web_support import WebFixture

        self.commands, self.find = commands, find
        self.web = WebFixture(self)
        self.f = self.web.core
        self.env = IRCEnvironment(self.f.chat, self.f.clock)
        self.line = self.f.login("Yoda", "wise@!man", 6001)
        self.irc = self.env.register("Yoda", "wise@!man")
        self.irc_echo = self.env.register("Yoda", "wise@!man", caps=["echo-message"])
        self.page = self.web.browser("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo", 6003)

    def privmsgs(self, connection):
        return [(line.source.split("!")[0], line.params) for line in self.find(connection.lines(), "PRIVMSG")]

    def test_a_message_to_the_user_reaches_all_of_them(self):
        self.hans.send("/msgto Yoda hello everywhere")
        self.assertRegex(self.line.output()[0], "^MSG .*, Hans: hello everywhere$")
        self.assertEqual(self.privmsgs(self.irc), [("Hans", ["Yoda", "hello everywhere"])])
        self.assertEqual(self.privmsgs(self.irc_echo), [("Hans", ["Yoda", "hello everywhere"])])
        got = self.page.next("message")["message"]
        self.assertEqual((got["sender"], got["text"]), ("Hans", "hello everywhere"))

    def test_what_one_sends_the_others_show(self):
        self.irc.send("PRIVMSG Hans :from irssi")
        self.assertEqual(self.privmsgs(self.irc), [])  # no echo-message: its own send is not echoed
        self.assertEqual(self.privmsgs(self.irc_echo), [("Yoda", ["Hans", "from irssi"])])
        self.assertRegex(self.line.output()[0], "^SENT .*, to Hans: from irssi$")
        got = self.page.next("message")
        self.assertEqual((got["message"]["sender"], got["message"]["recipient"], got["message"]["text"]),
                         ("Yoda", "Hans", "from irssi"))
        self.assertNotIn("unread", got)
        self.assertRegex(self.hans.output()[0], "^MSG .*, Yoda: from irssi$")
        # From the page: the IRC sessions get the PRIVMSG from Yoda whether or not they asked for echoes.
        self.assertTrue(self.page.request("send", to="Hans", text="from the page")["ok"])
        self.assertEqual(self.privmsgs(self.irc), [("Yoda", ["Hans", "from the page"])])
        self.assertEqual(self.privmsgs(self.irc_echo), [("Yoda", ["Hans", "from the page"])])
        self.assertRegex(self.line.output()[0], "^SENT .*, to Hans: from the page$")

    def test_a_channel_joined_in_one_session_is_joined_in_the_others(self):
        self.hans.send("/creategroup Jedi Yoda")
        self.irc.lines(), self.irc_echo.lines(), self.line.output()
        self.irc.send("JOIN #Jedi")
        joins = self.find(self.irc_echo.lines(), "JOIN")
        self.assertEqual([(j.source.split("!")[0], j.params[0]) for j in joins], [("Yoda", "#Jedi")])
        self.assertEqual(self.line.output(), ["NOTICE Yoda has joined the group chat Jedi."])
        self.line.send("/groupmsg Jedi from the terminal")
        for irc in (self.irc, self.irc_echo):
            self.assertEqual(self.privmsgs(irc), [("Yoda", ["#Jedi", "from the terminal"])])
        self.irc_echo.send("PART #Jedi")
        self.assertEqual([p.params[0] for p in self.find(self.irc.lines(), "PART")], ["#Jedi"])

    def test_a_group_left_in_one_session_is_left_in_the_others(self):
        """The leaver's other sessions are told (the page: the members now, without Yoda), and so
        are the other members; the last member leaving tells the leaver's other sessions too."""
        hans_page = self.web.browser("Hans", "falcon*solo")
        self.hans.send("/creategroup Jedi Yoda")
        self.line.send("/joingroup Jedi")
        self.line.output(), self.page.events(), hans_page.events(), self.irc.lines(), self.hans.output()
        self.assertEqual(self.line.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual([p.params[0] for p in self.find(self.irc.lines(), "PART")], ["#Jedi"])
        for page in (hans_page, self.page):
            changed = [e for e in page.events() if e["type"] == "members_changed"]
            self.assertEqual([[(m["name"], m["joined"]) for m in e["members"]] for e in changed],
                             [[("Hans", True)]])
        self.assertEqual(self.hans.output(), ["NOTICE Yoda has left the group chat Jedi."])
        self.assertEqual(self.line.send("/joingroup Jedi"), ["ERR You are not a member of the group chat Jedi."])
        # Hans, the last member, leaves from the terminal: his page drops the group (no members).
        self.assertEqual(self.hans.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        changed = [e for e in hans_page.events() if e["type"] == "members_changed"]
        self.assertEqual([(e["group"], e["members"]) for e in changed], [("Jedi", [])])
        self.assertEqual(self.page.events(), [])

    def test_away_is_the_users_on_every_front_end(self):
        from .irc_support import one

        lk = self.env.register("luke", "jedi*knight", caps=["away-notify"])
        lk.send("JOIN #Jedi", "INVITE Yoda #Jedi")
        self.irc.send("JOIN #Jedi")
        lk.lines(), self.irc_echo.lines(), self.line.output()
        self.assertEqual(self.line.send("/away gone fishing"), ["OK You are marked as away."])
        # Yoda's other sessions hear of it; so does everyone who watches presence.
        self.assertEqual(one(self.irc.lines(), "306").params[-1], "You have been marked as being away")
        self.assertEqual(self.page.next("away")["text"], "gone fishing")
        away = one(lk.lines(), "AWAY")
        self.assertEqual((away.source, away.params), ("Yoda!Yoda@chatproto", ["gone fishing"]))
        # A private message is delivered, and its sender told: on every front end in its words.
        lines = self.hans.send("/msgto Yoda are you there?")
        self.assertEqual(lines[0], "NOTICE Yoda is away: gone fishing")
        self.assertRegex(lines[1], "^OK message sent at")
        self.assertEqual(one(lk.send("PRIVMSG Yoda :hello?"), "301").params[1:], ["Yoda", "gone fishing"])
        self.assertRegex(self.line.output()[0], "^MSG .*, Hans: are you there\\?$")
        # Cleared from another device (IRC): back everywhere.
        self.assertEqual(one(self.irc_echo.send("AWAY"), "305").params[-1], "You are no longer marked as being away")
        self.assertEqual(self.line.output(), ["NOTICE You are no longer marked as away."])
        self.assertEqual(one(lk.lines(), "AWAY").params, [])
        self.assertIsNone(self.page.next("away")["text"])
        self.assertRegex(self.hans.send("/msgto Yoda back?")[0], "^OK message sent at")
        self.line.output()
        self.assertEqual(self.line.send("/away"), ["OK You are no longer marked as away."])

    def test_a_session_that_logs_in_while_away_is_told(self):
        self.assertEqual(self.line.send("/away gone fishing"), ["OK You are marked as away."])
        # The line protocol: the usual welcome, then the notice the other sessions got.
        line = self.f.connect()
        self.assertEqual(line.send("LOGIN Yoda wise@!man 6005"),
                         ["OK Welcome to chatproto!", "NOTICE You are marked as away: gone fishing"])
        # IRC: 306 after the welcome burst (irssi and weechat then show away in their status bar).
        irc = self.env.register("Yoda", "wise@!man")
        replies = self.commands(irc.registration)
        self.assertLess(replies.index("422"), replies.index("306"))
        self.assertEqual(self.find(irc.registration, "306")[0].params,
                         ["Yoda", "You have been marked as being away"])
        # Not away: no notice, no 306.
        self.line.send("/away")
        self.assertEqual(self.f.connect().send("LOGIN Yoda wise@!man 6006"), ["OK Welcome to chatproto!"])
        self.assertNotIn("306", self.commands(self.env.register("Yoda", "wise@!man").registration))

    def test_away_from_the_page(self):
        reply = self.page.request("away", text="in a meeting")
        self.assertEqual((reply["away"], reply["text"]), ("in a meeting", "You are marked as away."))
        self.assertEqual(self.line.output(), ["NOTICE You are marked as away: in a meeting"])
        hans_page = self.web.browser("Hans", "falcon*solo")
        self.assertEqual([u.get("away") for u in hans_page.hello["active"] if u["name"] == "Yoda"],
                         ["in a meeting"])
        self.assertEqual(hans_page.request("send", to="Yoda", text="hi")["away"], "Yoda is away: in a meeting")
        self.assertEqual(self.page.request("away", text="")["away"], None)
        self.assertEqual(hans_page.next("away")["username"], "Yoda")


    def test_read_on_one_device_clears_the_others(self):
        from .irc_support import one

        marker = self.env.register("Yoda", "wise@!man", caps=["draft/read-marker", "server-time"])
        for text in ("one", "two"):
            self.hans.send(f"/msgto Yoda {text}")
            self.f.clock.advance(1)
        times = [line.tags["time"] for line in self.find(marker.lines(), "PRIVMSG")]
        self.assertEqual(self.page.next("message")["unread"], 1)
        self.line.output()
        # irssi reads the first message (MARKREAD with its time): the others are told.
        self.assertEqual(one(marker.send(f"MARKREAD Hans timestamp={times[0]}"), "MARKREAD").params,
                         ["Hans", f"timestamp={times[0]}"])
        self.assertEqual(self.line.output(), ["READ Hans 1"])
        self.assertEqual(self.page.next("read")["conversation"], "user:Hans")
        self.assertEqual(self.line.send("/unread"), ["DATA Hans 1", "OK"])
        # The page opens the conversation: read up to its newest message, everywhere.
        self.assertEqual(self.page.request("read", kind="user", name="Hans")["ok"], True)
        self.assertEqual(self.line.output(), ["READ Hans 2"])
        self.assertEqual(one(marker.lines(), "MARKREAD").params, ["Hans", f"timestamp={times[1]}"])
        self.assertEqual(one(marker.send("MARKREAD Hans"), "MARKREAD").params, ["Hans", f"timestamp={times[1]}"])
        self.assertEqual(one(marker.send("MARKREAD leia"), "MARKREAD").params, ["leia", "*"])
        self.assertEqual(one(marker.send("MARKREAD Hans timestamp=yesterday"), "FAIL").params,
                         ["MARKREAD", "INVALID_PARAMS", "Hans", "Invalid timestamp"])
        self.assertEqual(self.line.send("/unread"), ["OK No unread messages."])

    def test_a_new_browser_login_shows_what_was_missed(self):
        self.hans.send("/msgto Yoda while you were out")
        self.hans.send("/msgto Yoda and again")
        later = self.web.browser("Yoda", "wise@!man")
        self.assertEqual(later.hello["unread"], {"user:Hans": 2})
        self.line.send("/read Hans 2")
        self.assertEqual(self.web.browser("Yoda", "wise@!man").hello["unread"], {})


class ReadMarkerTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda1 = self.f.login("Yoda", "wise@!man", 6001)
        self.yoda2 = self.f.login("Yoda", "wise@!man", 6002)
        self.hans = self.f.login("Hans", "falcon*solo", 6003)
        self.leia = self.f.login("leia", "alderaan", 6004)

    def test_unread_read_and_the_other_sessions_told(self):
        self.assertEqual(self.yoda1.send("/unread"), ["OK No unread messages."])
        for text in ("one", "two", "three"):
            self.hans.send(f"/msgto Yoda {text}")
        self.leia.send("/creategroup Jedi Yoda")
        self.yoda1.send("/joingroup Jedi")
        self.leia.send("/groupmsg Jedi to the group")
        self.yoda1.send("/groupmsg Jedi mine is not unread")
        self.yoda1.output(), self.yoda2.output()
        self.assertEqual(self.yoda2.send("/unread"), ["DATA #Jedi 1", "DATA Hans 3", "OK"])
        # Read up to the second message on one device: the other is told at once.
        self.assertEqual(self.yoda1.send("/read Hans 2"), ["OK"])
        self.assertEqual(self.yoda2.output(), ["READ Hans 2"])
        self.assertEqual(self.yoda2.send("/unread"), ["DATA #Jedi 1", "DATA Hans 1", "OK"])
        # Only forward: an older SEQ changes nothing and tells nobody.
        self.assertEqual(self.yoda2.send("/read Hans 1"), ["OK"])
        self.assertEqual(self.yoda1.output(), [])
        # A SEQ past the newest lands on the newest; groups by any spelling of their name.
        self.assertEqual(self.yoda2.send("/read Hans 999"), ["OK"])
        self.assertEqual(self.yoda1.output(), ["READ Hans 3"])
        self.assertEqual(self.yoda2.send("/read #jedi 1"), ["OK"])
        self.assertEqual(self.yoda1.output(), ["READ #Jedi 1"])
        self.assertEqual(self.yoda1.send("/unread"), ["OK No unread messages."])
        # Markers are the user's: a new session sees them.
        self.assertEqual(self.f.login("Yoda", "wise@!man").send("/unread"), ["OK No unread messages."])

    def test_bad_input(self):
        self.assertEqual(self.yoda1.send("/read Hans"), ["ERR Usage: /read NAME SEQ"])
        self.assertEqual(self.yoda1.send("/read Hans x"), ["ERR Usage: /read NAME SEQ"])
        self.assertEqual(self.yoda1.send("/read Hans 0"), ["ERR Usage: /read NAME SEQ"])
        self.assertEqual(self.yoda1.send("/read Nobody 1"), ["ERR No such user: Nobody"])
        self.assertEqual(self.yoda1.send("/read Yoda 1"), ["ERR No such user: Yoda"])
        self.assertEqual(self.yoda1.send("/read #Nope 1"), ["ERR The group chat does not exist."])
        self.assertEqual(self.yoda1.send("/unread now"), ["ERR Usage: /unread"])
        self.assertEqual(self.yoda2.output(), [])

    def test_offline_messages_are_unread_at_the_next_login(self):
        f = ChatFixture(self, offline_messages=True)
        hans = f.login("Hans", "falcon*solo")
        hans.send("/msgto Yoda one")
        hans.send("/msgto Yoda two")
        self.assertEqual(f.login("Yoda", "wise@!man").send("/unread"), ["DATA Hans 2", "OK"])


class MetricsTests(SynchronousTestCase):
    def test_active_users_count_sessions_by_front_end(self):
        from prometheus_client import CollectorRegistry, generate_latest

        from chatproto.server.metrics import ChatMetrics

        f = ChatFixture(self)
        f.login("Yoda", "wise@!man")
        f.login("Yoda", "wise@!man")
        f.chat.login("Yoda", "wise@!man", Watcher())
        f.clock.advance(0)

        class Service:
            chat, storage, factories = f.chat, f.storage, [f.factory]

        registry = CollectorRegistry()
        registry.register(ChatMetrics(Service()))
        text = generate_latest(registry).decode()
        self.assertIn('chatproto_active_users{frontend="line"} 2.0', text)
        self.assertIn('chatproto_active_users{frontend="web"} 1.0', text)
