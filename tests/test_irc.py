"""The IRC front end over StringTransport: registration, CAP/SASL, every command and numeric."""

import irctokens
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from tests.irc_support import IRCEnvironment, commands, find, one, sasl_plain, settle
from tests.support import DEMO, ChatFixture

T0 = 1654119004.0


class OtherSession:
    """A user of another front end (the line protocol): records the events it gets."""

    frontend = "line"
    ip = "127.0.0.1"
    udp_port = 6000
    wants_presence = False

    def __init__(self):
        self.events = []
        self.notices = []

    def receive(self, event):
        self.events.append(event)

    def disconnect(self, notice):
        self.notices.append(notice)


class IRCTestCase(SynchronousTestCase):
    def setUp(self):
        # The real realm over in-memory storage (and text logs in a temporary directory).
        self.fixture = ChatFixture(self, credentials=DEMO + "han a:b\n")
        self.clock = self.fixture.clock
        self.chat = self.fixture.chat
        self.env = IRCEnvironment(self.chat, self.clock)

    def other(self, name, password):
        session = OtherSession()
        results = []
        self.chat.login(name, password, session).addBoth(results.append)
        settle(self.clock)
        session.user = results[0]
        return session

    def call(self, d):
        """The result of a realm call (synchronous, or a Deferred that fires on the next turns)."""
        if not isinstance(d, defer.Deferred):
            return d
        results = []
        d.addBoth(results.append)
        settle(self.clock)
        return results[0]

    def active(self) -> dict:
        return {user.name: user for user in self.call(self.chat.active_users())}

    def private_log(self, a, b) -> list:
        """The private messages between a and b (a must be active)."""
        return self.call(self.chat.history(self.active()[a], b, 500))

    def group_log(self, member, group) -> list:
        return self.call(self.chat.group_history(self.active()[member], group, 500))


class RegistrationTests(IRCTestCase):
    def test_pass_nick_user(self):
        c = self.env.connect()
        lines = c.send("PASS wise@!man", "NICK Yoda", "USER yoda 0 * :Master Yoda")
        self.assertEqual(commands(lines), ["001", "002", "003", "004", "005", "422"])
        self.assertEqual(lines[0].params, ["Yoda", "Welcome to chatproto, Yoda!"])
        self.assertIn("CHANTYPES=#", lines[4].params)
        user = self.active()["Yoda"]
        self.assertEqual((user.udp_port, user.ip), (0, "127.0.0.1"))

    def test_pass_username_colon_password(self):
        c = self.env.connect()
        lines = c.send("PASS Yoda:wise@!man", "NICK someone", "USER y 0 * :y")
        nick = one(lines, "NICK")
        self.assertEqual((nick.hostmask.nickname, nick.params), ("someone", ["Yoda"]))
        self.assertEqual(one(lines, "001").params[0], "Yoda")

    def test_password_with_colon(self):
        """PASS a:b with NICK han is han's password "a:b", han being an account."""
        c = self.env.connect()
        lines = c.send("PASS a:b", "NICK han", "USER y 0 * :y")
        self.assertEqual(one(lines, "001").params[0], "han")

    def test_user_before_nick(self):
        c = self.env.connect()
        self.assertEqual(c.send("PASS wise@!man", "USER y 0 * :y"), [])
        self.assertIn("001", commands(c.send("NICK Yoda")))

    def test_wrong_password_counts_toward_lockout(self):
        for _ in range(2):
            c = self.env.connect()
            lines = c.send("PASS nope", "NICK Yoda", "USER y 0 * :y")
            self.assertEqual(one(lines, "464").params, ["Yoda", "Invalid Password. Please try again"])
            self.assertEqual(one(lines, "ERROR").params,
                             ["Closing link: Invalid Password. Please try again"])
            self.assertTrue(c.closed)
        c = self.env.connect()
        lines = c.send("PASS nope", "NICK Yoda", "USER y 0 * :y")
        self.assertEqual(one(lines, "464").params[1],
                         "Invalid Password. Your account has been blocked. Please try again later")
        c = self.env.connect()
        lines = c.send("PASS wise@!man", "NICK Yoda", "USER y 0 * :y")
        self.assertEqual(one(lines, "464").params[1],
                         "Your account is blocked due to multiple login failures. Please try again later")
        self.assertIn("ERROR", commands(lines))
        self.assertNotIn("001", commands(lines))
        self.clock.advance(10)
        c = self.env.connect()
        self.assertIn("001", commands(c.send("PASS wise@!man", "NICK Yoda", "USER y 0 * :y")))

    def test_unknown_user(self):
        c = self.env.connect()
        lines = c.send("PASS x", "NICK nobody", "USER y 0 * :y")
        self.assertEqual(one(lines, "464").params[1], "Invalid Username. Please try again")

    def test_already_logged_in(self):
        self.chat.max_sessions = 1  # --max-sessions 1: one login per account
        self.env.register("Yoda", "wise@!man")
        c = self.env.connect()
        lines = c.send("PASS wise@!man", "NICK Yoda", "USER y 0 * :y")
        self.assertEqual(one(lines, "464").params[1], "This account is already logged in")
        self.assertTrue(c.closed)

    def test_no_password(self):
        c = self.env.connect()
        lines = c.send("NICK Yoda", "USER y 0 * :y")
        self.assertEqual(commands(lines), ["464", "ERROR"])
        self.assertTrue(c.closed)

    def test_451_before_registration(self):
        c = self.env.connect()
        lines = c.send("CAP LS 302", "JOIN :", "PRIVMSG Yoda :hi", "WHO #x")
        self.assertEqual(commands(lines), ["CAP", "451", "451", "451"])
        self.assertEqual(lines[1].params, ["*", "You have not registered"])

    def test_registration_timeout(self):
        c = self.env.connect()
        c.send("NICK Yoda")
        self.clock.advance(29)
        self.assertFalse(c.closed)
        self.clock.advance(1)
        self.assertEqual(one(c.lines(), "ERROR").params, ["Closing link: Registration timed out"])
        self.assertTrue(c.closed)

    def test_registration_timeouts_of_many(self):
        """Each connection has its own 30 s, counted from its connection (one timer serves them all)."""
        first = self.env.connect()
        self.clock.advance(10)
        second = self.env.connect()
        for _ in range(100):  # registered and gone meanwhile: the waiting ones are still timed
            self.env.register("Yoda", "wise@!man").drop()
        self.clock.advance(20)
        self.assertTrue(first.closed)
        self.assertFalse(second.closed)
        self.clock.advance(10)
        self.assertEqual(one(second.lines(), "ERROR").params, ["Closing link: Registration timed out"])
        first.drop()
        second.drop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_cancelled_by_registration(self):
        c = self.env.register("Yoda", "wise@!man")
        self.clock.advance(60)
        self.assertFalse(c.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reregister(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send("USER a b c d", "PASS x")), ["462", "462"])

    def test_ping_before_registration(self):
        c = self.env.connect()
        self.assertEqual(one(c.send("PING :abc"), "PONG").params, ["chatproto", "abc"])

    def test_quit_before_login(self):
        c = self.env.connect()
        self.assertEqual(one(c.send("QUIT :bye"), "ERROR").params, ["Closing link: Quit: bye"])
        self.assertTrue(c.closed)

    def test_disconnect_logs_out(self):
        c = self.env.register("Yoda", "wise@!man")
        c.drop()
        self.assertNotIn("Yoda", self.active())


class CapTests(IRCTestCase):
    def test_ls_302(self):
        c = self.env.connect()
        line = one(c.send("CAP LS 302"), "CAP")
        self.assertEqual(line.params[:2], ["*", "LS"])
        offered = line.params[2].split()
        for cap in ("sasl=PLAIN", "server-time", "message-tags", "echo-message", "multi-prefix",
                    "away-notify", "account-tag", "batch", "draft/chathistory"):
            self.assertIn(cap, offered)

    def test_ls_without_version_has_no_values(self):
        c = self.env.connect()
        self.assertIn("sasl", one(c.send("CAP LS"), "CAP").params[2].split())

    def test_req_ack_nak_list(self):
        c = self.env.connect()
        c.send("CAP LS 302")
        self.assertEqual(one(c.send("CAP REQ :server-time echo-message"), "CAP").params,
                         ["*", "ACK", "server-time echo-message"])
        self.assertEqual(one(c.send("CAP REQ :server-time bogus"), "CAP").params,
                         ["*", "NAK", "server-time bogus"])
        self.assertEqual(sorted(one(c.send("CAP LIST"), "CAP").params[2].split()),
                         ["echo-message", "server-time"])
        c.send("CAP REQ :-echo-message")
        self.assertEqual(one(c.send("CAP LIST"), "CAP").params[2], "server-time")

    def test_registration_waits_for_cap_end(self):
        c = self.env.connect()
        c.send("CAP LS 302")
        self.assertEqual(commands(c.send("PASS wise@!man", "NICK Yoda", "USER y 0 * :y")), [])
        self.assertEqual(commands(c.send("CAP END"))[:1], ["001"])

    def test_invalid_cap_command(self):
        c = self.env.connect()
        self.assertEqual(commands(c.send("CAP FOO", "CAP")), ["410", "461"])

    def test_cap_after_registration(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(one(c.send("CAP REQ :away-notify"), "CAP").params, ["Yoda", "ACK", "away-notify"])
        self.assertEqual(c.send("CAP END"), [])


class SaslTests(IRCTestCase):
    def start(self):
        c = self.env.connect()
        c.send("CAP LS 302", "CAP REQ :sasl", "NICK Yoda", "USER y 0 * :y")
        return c

    def test_success(self):
        c = self.start()
        self.assertEqual(one(c.send("AUTHENTICATE PLAIN"), "AUTHENTICATE").params, ["+"])
        lines = c.send("AUTHENTICATE " + sasl_plain("Yoda", "wise@!man"))
        self.assertEqual(commands(lines), ["900", "903"])
        self.assertEqual(lines[0].params, ["Yoda", "Yoda!Yoda@chatproto", "Yoda",
                                           "You are now logged in as Yoda"])
        self.assertEqual(commands(c.send("CAP END"))[0], "001")

    def test_failure_texts(self):
        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        lines = c.send("AUTHENTICATE " + sasl_plain("Yoda", "bad"))
        self.assertEqual(one(lines, "904").params, ["Yoda", "Invalid Password. Please try again"])
        self.assertFalse(c.closed)
        c.send("AUTHENTICATE PLAIN")
        lines = c.send("AUTHENTICATE " + sasl_plain("nobody", "bad"))
        self.assertEqual(one(lines, "904").params[1], "Invalid Username. Please try again")
        # Giving up on SASL without PASS: no login at all.
        lines = c.send("CAP END")
        self.assertEqual(commands(lines), ["464", "ERROR"])

    def test_blocked_closes(self):
        c = self.start()
        for text in ("Invalid Password. Please try again", "Invalid Password. Please try again"):
            c.send("AUTHENTICATE PLAIN")
            self.assertEqual(one(c.send("AUTHENTICATE " + sasl_plain("Yoda", "x")), "904").params[1], text)
        c.send("AUTHENTICATE PLAIN")
        lines = c.send("AUTHENTICATE " + sasl_plain("Yoda", "x"))
        self.assertEqual(one(lines, "904").params[1],
                         "Invalid Password. Your account has been blocked. Please try again later")
        self.assertIn("ERROR", commands(lines))
        self.assertTrue(c.closed)
        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        lines = c.send("AUTHENTICATE " + sasl_plain("Yoda", "wise@!man"))
        self.assertEqual(one(lines, "904").params[1],
                         "Your account is blocked due to multiple login failures. Please try again later")
        self.assertEqual(one(lines, "ERROR").params,
                         ["Closing link: Your account is blocked due to multiple login failures. "
                          "Please try again later"])

    def test_already_logged_in(self):
        self.chat.max_sessions = 1  # --max-sessions 1: one login per account
        self.env.register("Yoda", "wise@!man")
        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        lines = c.send("AUTHENTICATE " + sasl_plain("Yoda", "wise@!man"))
        self.assertEqual(one(lines, "904").params[1], "This account is already logged in")

    def test_other_mechanism(self):
        c = self.start()
        self.assertEqual(commands(c.send("AUTHENTICATE EXTERNAL")), ["908", "904"])

    def test_abort_and_malformed(self):
        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        self.assertEqual(commands(c.send("AUTHENTICATE *")), ["906"])
        c.send("AUTHENTICATE PLAIN")
        self.assertEqual(commands(c.send("AUTHENTICATE !!!notbase64")), ["904"])
        c.send("AUTHENTICATE PLAIN")
        self.assertEqual(commands(c.send("AUTHENTICATE " + "A" * 401)), ["905"])

    def test_chunked_payload(self):
        """A 400-byte chunk means more follows; "+" ends an exact multiple of 400."""
        import base64

        password = "p" * 294
        payload = base64.b64encode(f"\0luke\0{password}".encode()).decode()
        self.assertEqual(len(payload), 400)
        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        self.assertEqual(c.send("AUTHENTICATE " + payload), [])
        # The wrong password (luke's is not p*294), but the message was understood whole.
        self.assertEqual(one(c.send("AUTHENTICATE +"), "904").params[1], "Invalid Password. Please try again")

    def test_authzid_must_match(self):
        import base64

        c = self.start()
        c.send("AUTHENTICATE PLAIN")
        payload = base64.b64encode(b"vader\0Yoda\0wise@!man").decode()
        self.assertEqual(commands(c.send("AUTHENTICATE " + payload)), ["904"])

    def test_after_registration(self):
        c = self.env.register("Yoda", "wise@!man", caps=["sasl"])
        self.assertEqual(commands(c.send("AUTHENTICATE PLAIN")), ["907"])


class FramingTests(IRCTestCase):
    def test_long_line_417_then_continue(self):
        c = self.env.register("Yoda", "wise@!man")
        lines = c.send("PRIVMSG x :" + "a" * 600, "PING :still")
        self.assertEqual(commands(lines), ["417", "PONG"])

    def test_very_long_line_in_pieces(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send_raw(b"PRIVMSG x :" + b"a" * 20000)), ["417"])
        self.assertEqual(c.send_raw(b"a" * 20000), [])
        self.assertEqual(commands(c.send_raw(b"aaa\r\nPING :x\r\n")), ["PONG"])

    def test_tags_may_be_long(self):
        c = self.env.register("Yoda", "wise@!man")
        lines = c.send("@+draft/x=" + "v" * 8000 + " PING :ok")
        self.assertEqual(one(lines, "PONG").params, ["chatproto", "ok"])
        self.assertEqual(commands(c.send("@+x=" + "v" * 9000 + " PING :ok")), ["417"])

    def test_417_before_registration(self):
        c = self.env.connect()
        self.assertEqual(commands(c.send("NICK " + "x" * 600)), ["417"])

    def test_invalid_utf8(self):
        c = self.env.register("Yoda", "wise@!man")
        line = one(c.send_raw(b"PRIVMSG x :\xff\xfe\r\n"), "FAIL")
        self.assertEqual(line.params[:2], ["*", "INVALID_UTF8"])

    def test_unknown_command_and_blank_lines(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send("", "   ", "FROB x")), ["421"])

    def test_lowercase_command_and_lf_only(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send_raw(b"ping :x\n")), ["PONG"])


class PrivateMessageTests(IRCTestCase):
    def test_irc_to_line_user_and_back(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man", caps=["server-time", "account-tag", "message-tags"])
        self.assertEqual(c.send("PRIVMSG luke :Do or do not"), [])
        message = luke.events[-1]
        self.assertEqual((message.kind, message.sender, message.recipient, message.text, message.seq),
                         ("private", "Yoda", "luke", "Do or do not", 1))
        self.call(self.chat.send_private(luke.user, "Yoda", "There is no try?"))
        line = one(c.lines(), "PRIVMSG")
        self.assertEqual(line.hostmask.nickname, "luke")
        self.assertEqual(line.source, "luke!luke@chatproto")
        self.assertEqual(line.params, ["Yoda", "There is no try?"])
        self.assertEqual(line.tags, {"time": "2022-06-01T21:30:04.000Z", "account": "luke", "msgid": "p.2"})

    def test_no_tags_without_caps(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        self.call(self.chat.send_private(luke.user, "Yoda", "hi"))
        self.assertEqual(one(c.lines(), "PRIVMSG").tags, None)

    def test_echo_message(self):
        self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man", caps=["echo-message", "server-time"])
        line = one(c.send("PRIVMSG luke :hello there"), "PRIVMSG")
        self.assertEqual((line.source, line.params), ("Yoda!Yoda@chatproto", ["luke", "hello there"]))
        self.assertIn("time", line.tags)

    def test_errors(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(one(c.send("PRIVMSG nobody :x"), "401").params, ["Yoda", "nobody", "No such user: nobody"])
        self.assertEqual(one(c.send("PRIVMSG luke :x"), "401").params, ["Yoda", "luke", "luke is not active"])
        self.assertEqual(one(c.send("PRIVMSG Yoda :x"), "NOTICE").params,
                         ["Yoda", "You cannot send a message to yourself"])
        self.assertEqual(commands(c.send("PRIVMSG", "PRIVMSG luke", "PRIVMSG luke :")), ["411", "412", "412"])
        self.other("luke", "jedi*knight")
        self.assertEqual(self.private_log("luke", "Yoda"), [])

    def test_several_targets(self):
        luke = self.other("luke", "jedi*knight")
        leia = self.other("leia", "alderaan")
        c = self.env.register("Yoda", "wise@!man")
        c.send("PRIVMSG luke,leia :both")
        self.assertEqual([e.text for e in luke.events + leia.events], ["both", "both"])

    def test_action_and_ctcp(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(c.send("PRIVMSG luke :\x01ACTION nods\x01", "PRIVMSG luke :\x01VERSION\x01",
                                "NOTICE luke :hm", "@+typing=active TAGMSG luke"), [])
        self.assertEqual([e.text for e in luke.events], ["* nods"])

    def test_away_reply(self):
        c = self.env.register("Yoda", "wise@!man")
        lk = self.env.register("luke", "jedi*knight")
        self.assertEqual(one(lk.send("AWAY :training"), "306").params, ["luke", "You have been marked as being away"])
        lines = c.send("PRIVMSG luke :hi")
        self.assertEqual(one(lines, "301").params, ["Yoda", "luke", "training"])
        self.assertEqual(one(lk.lines(), "PRIVMSG").params, ["luke", "hi"])
        self.assertEqual(one(lk.send("AWAY"), "305").params[1], "You are no longer marked as being away")
        self.assertEqual(find(c.send("PRIVMSG luke :hi"), "301"), [])

    def test_away_reply_says_the_away_known_when_the_message_is_stored(self):
        """On a cluster node the news of an away set on another node may arrive while a PRIVMSG is
        being stored: its 301 says what the node knows once the message is durable."""
        c = self.env.register("Yoda", "wise@!man")
        self.env.register("luke", "jedi*knight")
        database = self.fixture.database
        real_commit, held = database.commit, []

        def hold(ops):
            held.append((ops, defer.Deferred()))
            return held[-1][1]

        def release():
            database.commit = real_commit
            for ops, d in held:
                database.commit_now(ops)
                d.callback(None)
            del held[:]

        database.commit = hold
        self.assertEqual(c.send("PRIVMSG luke :hi"), [])  # not stored yet: nothing to say
        self.chat.away_elsewhere("luke", "training")  # what the bus tells of the other node's AWAY
        release()
        self.assertEqual(one(c.lines(), "301").params, ["Yoda", "luke", "training"])
        database.commit = hold
        c.send("PRIVMSG luke :back yet?")
        self.chat.away_elsewhere("luke", None)  # back before that message was stored
        release()
        self.assertEqual(find(c.lines(), "301"), [])

    def test_pipelined_commands_in_order(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.connect()
        c.send_raw(b"PASS wise@!man\r\nNICK Yoda\r\nUSER y 0 * :y\r\nJOIN #Jedi\r\n"
                   b"INVITE luke #Jedi\r\nPRIVMSG #Jedi :first\r\nPRIVMSG luke :second\r\n")
        # (MembersChanged: the group's members now, for a page; IRC and the line protocol show nothing.)
        self.assertEqual([type(e).__name__ for e in luke.events], ["Invited", "MembersChanged", "Message"])
        self.assertEqual(self.group_log("Yoda", "Jedi")[0].text, "first")


class ChannelTests(IRCTestCase):
    def test_join_creates_group(self):
        c = self.env.register("Yoda", "wise@!man")
        lines = c.send("JOIN #Jedi")
        self.assertEqual(commands(lines), ["JOIN", "332", "353", "366"])
        self.assertEqual((lines[0].source, lines[0].params), ("Yoda!Yoda@chatproto", ["#Jedi"]))
        self.assertEqual(lines[1].params, ["Yoda", "#Jedi", "Group chat Jedi, owner Yoda"])
        self.assertEqual(lines[2].params, ["Yoda", "=", "#Jedi", "Yoda"])
        self.assertEqual(self.call(self.chat.group_info("Jedi")).owner, "Yoda")

    def test_join_bad_name(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(one(c.send("JOIN #no-dash"), "403").params,
                         ["Yoda", "#no-dash", "Group name must be 1-32 letters and digits"])
        self.assertEqual(commands(c.send("JOIN nohash", "JOIN")), ["403", "461"])

    def test_join_not_member_473(self):
        luke = self.other("luke", "jedi*knight")
        self.other("leia", "alderaan")
        self.call(self.chat.create_group(luke.user, "Jedi", ["leia"]))
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(one(c.send("JOIN #jedi"), "473").params,
                         ["Yoda", "#jedi", "You are not a member of the group chat Jedi."])

    def test_invited_join_seen_by_others(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        self.call(self.chat.create_group(luke.user, "Jedi", ["Yoda"]))
        invite = one(c.lines(), "INVITE")
        self.assertEqual((invite.source, invite.params), ("luke!luke@chatproto", ["Yoda", "#Jedi"]))
        lines = c.send("JOIN #jedi")
        self.assertEqual(lines[0].params, ["#Jedi"])
        self.assertEqual(one(lines, "353").params[3].split(), ["luke", "Yoda"])
        self.assertEqual([type(e).__name__ for e in luke.events[-2:]], ["MemberJoined", "MembersChanged"])
        # joining again is nothing new
        self.assertEqual(c.send("JOIN #Jedi"), [])

    def test_group_messages_both_ways(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man", caps=["server-time", "echo-message"])
        c.send("JOIN #Jedi", "INVITE luke #Jedi")
        self.call(self.chat.join_group(luke.user, "Jedi"))
        join = one(c.lines(), "JOIN")
        self.assertEqual((join.source, join.params), ("luke!luke@chatproto", ["#Jedi"]))
        echo = one(c.send("PRIVMSG #Jedi :hello group"), "PRIVMSG")
        self.assertEqual((echo.source, echo.params), ("Yoda!Yoda@chatproto", ["#Jedi", "hello group"]))
        self.assertEqual(luke.events[-1].text, "hello group")
        self.assertEqual(luke.events[-1].group, "Jedi")
        self.clock.advance(5)
        self.call(self.chat.send_group(luke.user, "Jedi", "hi back"))
        line = one(c.lines(), "PRIVMSG")
        self.assertEqual((line.source, line.params, line.tags["time"]),
                         ("luke!luke@chatproto", ["#Jedi", "hi back"], "2022-06-01T21:30:09.000Z"))

    def test_group_send_errors(self):
        luke = self.other("luke", "jedi*knight")
        self.other("leia", "alderaan")
        c = self.env.register("Yoda", "wise@!man")
        self.call(self.chat.create_group(luke.user, "Jedi", ["leia"]))
        self.call(self.chat.create_group(luke.user, "Sith", ["Yoda"]))
        c.lines()
        self.assertEqual(one(c.send("PRIVMSG #nope :x"), "403").params[1:],
                         ["#nope", "The group chat does not exist."])
        self.assertEqual(one(c.send("PRIVMSG #Jedi :x"), "442").params[1:],
                         ["#Jedi", "You are not in this group chat."])
        self.assertEqual(one(c.send("PRIVMSG #Sith :x"), "404").params[1:],
                         ["#Sith", "Please join the group before sending messages."])

    def test_broadcast_group(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        self.call(self.chat.create_group(luke.user, "News", ["Yoda"], broadcast=True))
        lines = c.send("JOIN #News")
        self.assertEqual(one(lines, "353").params[3].split(), ["@luke", "Yoda"])
        self.assertEqual(one(lines, "332").params[2], "Broadcast group News, owner luke")
        self.assertEqual(one(c.send("MODE #News"), "324").params, ["Yoda", "#News", "+ntm"])
        self.assertEqual(one(c.send("PRIVMSG #News :x"), "404").params[2],
                         "Only the owner can send messages to this broadcast group.")
        who = find(c.send("WHO #News"), "352")
        self.assertEqual([(w.params[5], w.params[6]) for w in who], [("luke", "H@"), ("Yoda", "H")])

    def test_invite(self):
        c = self.env.register("Yoda", "wise@!man")
        lk = self.env.register("luke", "jedi*knight")
        c.send("JOIN #Jedi")
        self.assertEqual(one(c.send("INVITE luke #Jedi"), "341").params, ["Yoda", "luke", "#Jedi"])
        self.assertEqual(one(lk.lines(), "INVITE").params, ["luke", "#Jedi"])
        self.assertEqual(one(c.send("INVITE luke #Jedi"), "443").params[1:3], ["luke", "#Jedi"])
        self.assertEqual(one(c.send("INVITE nobody #Jedi"), "401").params[1:], ["nobody", "No such user: nobody"])
        self.assertEqual(one(c.send("INVITE leia #None"), "403").params[1], "#None")
        self.assertEqual(one(lk.send("INVITE leia #Jedi"), "442").params[1:],
                         ["#Jedi", "Please join the group before sending messages."])
        self.assertEqual(commands(c.send("INVITE luke")), ["461"])

    def test_an_invited_member_is_shown_no_change_of_members(self):
        """
        The core tells a group's invited members of joins, invitations and
        leaves too (MembersChanged, the members now: for the page); an
        invited IRC user's wire stays as it was, silent.
        """
        luke = self.other("luke", "jedi*knight")
        leia = self.other("leia", "alderaan")
        obiwan = self.other("obiwan", "hellothere")
        c = self.env.register("Yoda", "wise@!man")
        self.call(self.chat.create_group(luke.user, "Jedi", ["Yoda", "leia", "obiwan"]))
        self.assertEqual(commands(c.lines()), ["INVITE"])
        self.call(self.chat.join_group(leia.user, "Jedi"))
        self.call(self.chat.invite(luke.user, "Jedi", "Hans"))  # an account, not active
        self.call(self.chat.leave_group(leia.user, "Jedi"))
        self.assertEqual(c.lines(), [])
        told = [e for e in obiwan.events if type(e).__name__ == "MembersChanged"]
        self.assertEqual([e.members for e in told], [
            (("luke", True), ("Yoda", False), ("leia", True), ("obiwan", False)),
            (("luke", True), ("Yoda", False), ("leia", True), ("obiwan", False), ("Hans", False)),
            (("luke", True), ("Yoda", False), ("obiwan", False), ("Hans", False)),
        ])
        self.assertEqual({e.group for e in told}, {"Jedi"})

    def test_part(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "INVITE luke #Jedi")
        self.call(self.chat.join_group(luke.user, "Jedi"))
        c.lines()
        part = one(c.send("PART #Jedi :bye"), "PART")
        self.assertEqual((part.source, part.params), ("Yoda!Yoda@chatproto",
                                                       ["#Jedi", "You have left the group chat Jedi."]))
        self.assertEqual([type(e).__name__ for e in luke.events[-2:]], ["MemberLeft", "MembersChanged"])
        self.assertEqual(one(c.send("PART #Jedi"), "442").params[2], "You are not in this group chat.")
        self.assertEqual(one(c.send("PART #Nope"), "403").params[2], "The group chat does not exist.")

    def test_others_part_and_presence(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "INVITE luke #Jedi")
        self.call(self.chat.join_group(luke.user, "Jedi"))
        c.lines()
        self.call(self.chat.logout(luke.user))
        quit_ = one(c.lines(), "QUIT")
        self.assertEqual(quit_.source, "luke!luke@chatproto")
        self.assertEqual(one(c.send("NAMES #Jedi"), "353").params[3], "Yoda")
        luke = self.other("luke", "jedi*knight")
        self.assertEqual(one(c.lines(), "JOIN").source, "luke!luke@chatproto")
        self.call(self.chat.leave_group(luke.user, "Jedi"))
        self.assertEqual(one(c.lines(), "PART").params, ["#Jedi", "luke has left the group chat Jedi."])

    def test_names_topic_mode_list(self):
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi")
        self.assertEqual(commands(c.send("NAMES #Jedi")), ["353", "366"])
        self.assertEqual(commands(c.send("NAMES")), ["366"])
        self.assertEqual(commands(c.send("NAMES #none")), ["366"])
        self.assertEqual(one(c.send("TOPIC #Jedi"), "332").params[2], "Group chat Jedi, owner Yoda")
        self.assertEqual(commands(c.send("TOPIC #Jedi :new")), ["482"])
        self.assertEqual(commands(c.send("TOPIC #none")), ["403"])
        self.assertEqual(one(c.send("MODE #Jedi"), "324").params[2], "+nt")
        self.assertEqual(commands(c.send("MODE #Jedi b", "MODE #Jedi +o luke", "MODE #none")),
                         ["368", "482", "403"])
        self.assertEqual(one(c.send("MODE Yoda"), "221").params, ["Yoda", "+"])
        self.assertEqual(c.send("MODE Yoda +i"), [])
        self.assertEqual(commands(c.send("MODE luke")), ["502"])
        lines = c.send("LIST")
        self.assertEqual(commands(lines), ["321", "322", "323"])
        self.assertEqual(lines[1].params, ["Yoda", "#Jedi", "1", "Group chat Jedi, owner Yoda"])

    def test_who_whois_ison_userhost(self):
        c = self.env.register("Yoda", "wise@!man")
        self.other("luke", "jedi*knight")
        c.send("JOIN #Jedi")
        who = one(c.send("WHO #Jedi"), "352")
        self.assertEqual(who.params, ["Yoda", "#Jedi", "Yoda", "chatproto", "chatproto", "Yoda", "H", "0 Yoda"])
        self.assertEqual(commands(c.send("WHO luke")), ["352", "315"])
        self.assertEqual(commands(c.send("WHO nobody")), ["315"])
        lines = c.send("WHOIS Yoda")
        self.assertEqual(commands(lines), ["311", "319", "312", "330", "318"])
        self.assertEqual(lines[1].params, ["Yoda", "Yoda", "#Jedi"])
        self.assertEqual(one(c.send("WHOIS leia"), "401").params[2], "leia is not active")
        self.assertEqual(one(c.send("WHOIS nobody"), "401").params[2], "No such user: nobody")
        self.assertEqual(one(c.send("ISON luke leia Yoda"), "303").params, ["Yoda", "luke Yoda"])
        self.assertEqual(one(c.send("USERHOST luke"), "302").params, ["Yoda", "luke=+luke@chatproto"])
        self.assertEqual(commands(c.send("MOTD", "PING x", "PONG x", "NICK Other", "NICK Yoda")),
                         ["422", "PONG", "432"])

    def test_small_commands(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send("VERSION", "TIME", "LUSERS", "KICK #Jedi luke", "WHOWAS x")),
                         ["351", "005", "391", "251", "255", "482", "406", "369"])

    def test_pending_invitation_shown_at_registration(self):
        luke = self.other("luke", "jedi*knight")
        self.other("leia", "alderaan")
        self.call(self.chat.create_group(luke.user, "Jedi", ["leia"]))
        self.call(self.chat.invite(luke.user, "Jedi", "Yoda"))  # Yoda is not connected
        c = self.env.register("Yoda", "wise@!man")
        invite = one(c.registration, "INVITE")
        self.assertEqual((invite.source, invite.params), ("luke!luke@chatproto", ["Yoda", "#Jedi"]))

    def test_away_notify(self):
        c = self.env.register("Yoda", "wise@!man", caps=["away-notify"])
        lk = self.env.register("luke", "jedi*knight")
        c.send("JOIN #Jedi", "INVITE luke #Jedi")
        lk.send("JOIN #Jedi")
        c.lines()
        lk.send("AWAY :busy")
        away = one(c.lines(), "AWAY")
        self.assertEqual((away.source, away.params), ("luke!luke@chatproto", ["busy"]))
        self.assertEqual([w.params[6] for w in find(c.send("WHO #Jedi"), "352")], ["H", "G"])
        lk.send("AWAY")
        self.assertEqual(one(c.lines(), "AWAY").params, [])
        lk.send("AWAY :gone")
        c.lines()
        lk.drop()
        # Away is the user's until cleared (kept in storage): a new login is still away.
        self.assertEqual(commands(c.lines()), ["QUIT"])
        lk = self.env.register("luke", "jedi*knight")
        self.assertEqual([w.params[6] for w in find(c.send("WHO #Jedi"), "352")], ["H", "G"])
        lk.send("AWAY")
        self.assertEqual([w.params[6] for w in find(c.send("WHO #Jedi"), "352")], ["H", "H"])

    def test_rejoin_on_registration_and_playback(self):
        """Groups stay joined in the core: a new connection is put back in them, with the last messages."""
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "INVITE luke #Jedi", "PRIVMSG #Jedi :one")
        self.call(self.chat.join_group(luke.user, "Jedi"))
        self.call(self.chat.send_group(luke.user, "Jedi", "two"))
        c.drop()
        c = self.env.register("Yoda", "wise@!man", caps=["server-time", "batch"])
        lines = c.registration[commands(c.registration).index("422") + 1:]
        self.assertEqual(commands(lines), ["JOIN", "332", "353", "366", "BATCH", "PRIVMSG", "PRIVMSG", "BATCH"])
        self.assertEqual(lines[4].params[1:], ["chathistory", "#Jedi"])
        batch = lines[4].params[0][1:]
        self.assertEqual([(m.source, m.params[1], m.tags["batch"]) for m in lines[5:7]],
                         [("Yoda!Yoda@chatproto", "one", batch), ("luke!luke@chatproto", "two", batch)])
        self.assertIn("time", lines[5].tags)

    def test_playback_without_server_time_shows_the_time(self):
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "PRIVMSG #Jedi :one")
        c.drop()
        c = self.env.register("Yoda", "wise@!man")
        line = one(c.registration, "PRIVMSG")
        self.assertEqual(line.params, ["#Jedi", f"[{self.group_log('Yoda', 'Jedi')[0].timestamp}] one"])

    def test_no_playback_with_chathistory(self):
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "PRIVMSG #Jedi :one")
        c.drop()
        c = self.env.register("Yoda", "wise@!man", caps=["draft/chathistory"])
        self.assertEqual(find(c.registration, "PRIVMSG"), [])
        self.assertEqual(commands(c.registration)[-4:], ["JOIN", "332", "353", "366"])


class HistoryTests(IRCTestCase):
    def setUp(self):
        super().setUp()
        self.luke = self.other("luke", "jedi*knight")
        self.c = self.env.register("Yoda", "wise@!man",
                                   caps=["draft/chathistory", "batch", "server-time", "message-tags"])
        for i in range(5):
            self.c.send(f"PRIVMSG luke :to luke {i}")
            self.clock.advance(1)
        self.c.send("JOIN #Jedi")
        for i in range(3):
            self.c.send(f"PRIVMSG #Jedi :group {i}")
            self.clock.advance(1)

    def history(self, command):
        lines = self.c.send(command)
        self.assertEqual(lines[0].command, "BATCH")
        self.assertEqual(lines[-1].command, "BATCH")
        ref = lines[0].params[0][1:]
        self.assertEqual(lines[-1].params, ["-" + ref])
        for line in lines[1:-1]:
            self.assertEqual(line.tags["batch"], ref)
        return lines[1:-1]

    def test_latest(self):
        lines = self.history("CHATHISTORY LATEST luke * 3")
        self.assertEqual([line.params for line in lines],
                         [["luke", "to luke 2"], ["luke", "to luke 3"], ["luke", "to luke 4"]])
        self.assertEqual(lines[0].tags["msgid"], "p.3")
        lines = self.history("CHATHISTORY LATEST #Jedi * 10")
        self.assertEqual([line.params[1] for line in lines], ["group 0", "group 1", "group 2"])
        self.assertEqual(lines[0].tags["msgid"], "g.Jedi.1")

    def test_before_msgid_and_timestamp(self):
        lines = self.history("CHATHISTORY BEFORE luke msgid=p.3 10")
        self.assertEqual([line.params[1] for line in lines], ["to luke 0", "to luke 1"])
        lines = self.history("CHATHISTORY BEFORE #Jedi msgid=g.Jedi.3 1")
        self.assertEqual([line.params[1] for line in lines], ["group 1"])
        stamp = self.history("CHATHISTORY LATEST luke * 1")[0].tags["time"]
        lines = self.history(f"CHATHISTORY BEFORE luke timestamp={stamp} 2")
        self.assertEqual([line.params[1] for line in lines], ["to luke 2", "to luke 3"])

    def test_latest_after_reference(self):
        lines = self.history("CHATHISTORY LATEST luke msgid=p.3 10")
        self.assertEqual([line.params[1] for line in lines], ["to luke 3", "to luke 4"])

    def test_errors(self):
        self.assertEqual(one(self.c.send("CHATHISTORY SIDEWAYS luke * 3"), "FAIL").params[:2],
                         ["CHATHISTORY", "UNKNOWN_COMMAND"])
        self.assertEqual(one(self.c.send("CHATHISTORY LATEST luke * x"), "FAIL").params[1], "INVALID_PARAMS")
        self.assertEqual(one(self.c.send("CHATHISTORY BEFORE luke junk 3"), "FAIL").params[1], "INVALID_PARAMS")
        fail = one(self.c.send("CHATHISTORY LATEST nobody * 3"), "FAIL")
        self.assertEqual(fail.params, ["CHATHISTORY", "INVALID_TARGET", "LATEST", "nobody", "No such user: nobody"])
        self.assertEqual(one(self.c.send("CHATHISTORY LATEST #Nope * 3"), "FAIL").params[-1],
                         "The group chat does not exist.")
        self.assertEqual(one(self.c.send("CHATHISTORY LATEST"), "FAIL").params[1], "INVALID_PARAMS")


class FullHistoryTests(HistoryTests):
    """draft/chathistory's other subcommands: AFTER, AROUND, BETWEEN, TARGETS (setUp: p.1-p.5, g.Jedi.1-3)."""

    def texts(self, command):
        return [line.params[1] for line in self.history(command)]

    def stamp(self, msgid):
        lines = self.history(f"CHATHISTORY AROUND {'#Jedi' if msgid.startswith('g') else 'luke'} msgid={msgid} 1")
        self.assertEqual(lines[0].tags["msgid"], msgid)
        return lines[0].tags["time"]

    def test_after(self):
        self.assertEqual(self.texts("CHATHISTORY AFTER luke msgid=p.2 2"), ["to luke 2", "to luke 3"])
        self.assertEqual(self.texts(f"CHATHISTORY AFTER luke timestamp={self.stamp('p.2')} 10"),
                         ["to luke 2", "to luke 3", "to luke 4"])
        self.assertEqual(self.texts("CHATHISTORY AFTER #Jedi msgid=g.Jedi.1 10"), ["group 1", "group 2"])
        self.assertEqual(self.texts("CHATHISTORY AFTER luke msgid=p.5 10"), [])

    def test_latest_after_a_timestamp(self):
        self.assertEqual(self.texts(f"CHATHISTORY LATEST luke timestamp={self.stamp('p.2')} 2"),
                         ["to luke 3", "to luke 4"])
        self.assertEqual(self.texts(f"CHATHISTORY LATEST luke timestamp={self.stamp('p.5')} 2"), [])

    def test_around(self):
        self.assertEqual(self.texts("CHATHISTORY AROUND luke msgid=p.3 3"), ["to luke 1", "to luke 2", "to luke 3"])
        self.assertEqual(self.texts("CHATHISTORY AROUND luke msgid=p.1 3"), ["to luke 0", "to luke 1", "to luke 2"])
        self.assertEqual(self.texts(f"CHATHISTORY AROUND #Jedi timestamp={self.stamp('g.Jedi.2')} 2"),
                         ["group 0", "group 1"])

    def test_between_both_ways(self):
        self.assertEqual(self.texts("CHATHISTORY BETWEEN luke msgid=p.1 msgid=p.5 10"),
                         ["to luke 1", "to luke 2", "to luke 3"])
        self.assertEqual(self.texts("CHATHISTORY BETWEEN luke msgid=p.1 msgid=p.5 2"), ["to luke 1", "to luke 2"])
        self.assertEqual(self.texts("CHATHISTORY BETWEEN luke msgid=p.5 msgid=p.1 2"), ["to luke 2", "to luke 3"])
        first, last = self.stamp("p.1"), self.stamp("p.5")
        self.assertEqual(self.texts(f"CHATHISTORY BETWEEN luke timestamp={last} timestamp={first} 1"),
                         ["to luke 3"])
        self.assertEqual(self.texts(f"CHATHISTORY BETWEEN luke timestamp={first} msgid=p.4 10"),
                         ["to luke 1", "to luke 2"])
        self.assertEqual(self.texts("CHATHISTORY BETWEEN luke * msgid=p.3 10"), ["to luke 0", "to luke 1"])

    def test_a_reference_from_another_conversation_finds_nothing(self):
        self.assertEqual(self.texts("CHATHISTORY BEFORE luke msgid=g.Jedi.3 10"), [])
        self.assertEqual(self.texts("CHATHISTORY AFTER #Jedi msgid=p.1 10"), [])
        self.assertEqual(self.texts("CHATHISTORY AROUND #Jedi msgid=g.Sith.2 10"), [])

    def test_references_older_than_any_window(self):
        for i in range(700):
            self.call(self.chat.send_private(self.luke.user, "Yoda", f"old {i}"))
            self.clock.advance(1)
        self.assertEqual(len(find(self.c.lines(), "PRIVMSG")), 700)  # delivered live
        first = self.stamp("p.6")
        self.assertEqual(self.texts(f"CHATHISTORY AFTER luke timestamp={first} 2"), ["old 1", "old 2"])
        self.assertEqual(self.texts(f"CHATHISTORY BEFORE luke timestamp={first} 2"), ["to luke 3", "to luke 4"])
        self.assertEqual(len(self.history("CHATHISTORY LATEST luke * 1000")), 500)  # CHATHISTORY=500

    def test_a_long_message_is_replayed_in_lines_of_512_bytes(self):
        text = " ".join(f"word{i}" for i in range(700))  # about 6 KB, sent from the line protocol
        self.call(self.chat.send_private(self.luke.user, "Yoda", text))
        self.c.lines()
        raw_lines = [line.format() for line in self.history("CHATHISTORY LATEST luke * 1")]
        parts = [irctokens.tokenise(raw) for raw in raw_lines]
        self.assertGreater(len(parts), 10)
        for raw in raw_lines:
            self.assertLessEqual(len(raw.split(" ", 1)[1].encode()) + 2, 512)  # after the tags, with CR LF
        self.assertEqual(" ".join(part.params[1] for part in parts), text)
        self.assertEqual(parts[0].tags["msgid"], "p.6")

    def test_targets(self):
        start = "2000-01-01T00:00:00.000Z"
        lines = self.c.send(f"CHATHISTORY TARGETS timestamp={start} timestamp=2100-01-01T00:00:00.000Z 10")
        self.assertEqual(commands(lines), ["BATCH", "CHATHISTORY", "CHATHISTORY", "BATCH"])
        self.assertEqual(lines[0].params[1:], ["draft/chathistory-targets"])
        self.assertEqual([line.params for line in lines[1:3]],
                         [["TARGETS", "luke", self.stamp("p.5")], ["TARGETS", "#Jedi", self.stamp("g.Jedi.3")]])
        self.assertEqual(lines[1].tags["batch"], lines[0].params[0][1:])
        # Backwards: the newest; a span that ends at the last message leaves it out.
        lines = self.c.send(f"CHATHISTORY TARGETS timestamp=2100-01-01T00:00:00.000Z timestamp={start} 1")
        self.assertEqual([line.params[1] for line in find(lines, "CHATHISTORY")], ["#Jedi"])
        lines = self.c.send(f"CHATHISTORY TARGETS timestamp={start} timestamp={self.stamp('g.Jedi.1')} 5")
        self.assertEqual([line.params[1] for line in find(lines, "CHATHISTORY")], ["luke"])
        self.assertEqual(one(self.c.send("CHATHISTORY TARGETS msgid=p.1 timestamp=x 5"), "FAIL").params[1],
                         "INVALID_PARAMS")

    def test_more_errors(self):
        fail = one(self.c.send("CHATHISTORY AROUND luke * 3"), "FAIL")
        self.assertEqual(fail.params, ["CHATHISTORY", "INVALID_PARAMS", "AROUND", "*", "Invalid message reference"])
        self.assertEqual(one(self.c.send("CHATHISTORY BETWEEN luke msgid=p.1 5"), "FAIL").params[1:3],
                         ["INVALID_PARAMS", "BETWEEN"])
        self.assertEqual(one(self.c.send("CHATHISTORY AFTER luke timestamp=soon 5"), "FAIL").params[1],
                         "INVALID_PARAMS")
        fail = one(self.c.send("CHATHISTORY AFTER #Sith msgid=g.Sith.1 5"), "FAIL")
        self.assertEqual(fail.params[1:4], ["INVALID_TARGET", "AFTER", "#Sith"])
        leia = self.other("leia", "alderaan")
        self.call(self.chat.create_group(leia.user, "Rebels", []))
        fail = one(self.c.send("CHATHISTORY AROUND #Rebels msgid=g.Rebels.1 5"), "FAIL")
        self.assertEqual(fail.params[1:4], ["INVALID_TARGET", "AROUND", "#Rebels"])
        self.assertEqual(find(self.c.lines(), "PRIVMSG"), [])


class EventTests(IRCTestCase):
    def test_server_notice_and_disconnect(self):
        c = self.env.register("Yoda", "wise@!man")
        self.chat.announce("Maintenance at noon")
        self.assertEqual(one(c.lines(), "NOTICE").params, ["Yoda", "Maintenance at noon"])
        c.protocol.disconnect("Server shutting down")
        self.assertEqual(one(c.lines(), "ERROR").params, ["Closing link: Server shutting down"])
        self.assertTrue(c.closed)

    def test_events_wait_for_registration(self):
        """Events that arrive between a SASL login and CAP END come after 001-005."""
        luke = self.other("luke", "jedi*knight")
        c = self.env.connect()
        c.send("CAP LS 302", "CAP REQ :sasl", "NICK Yoda", "USER y 0 * :y", "AUTHENTICATE PLAIN")
        c.send("AUTHENTICATE " + sasl_plain("Yoda", "wise@!man"))
        self.call(self.chat.send_private(luke.user, "Yoda", "early"))
        self.assertEqual(find(c.lines(), "PRIVMSG"), [])
        lines = c.send("CAP END")
        self.assertEqual(commands(lines)[0], "001")
        self.assertEqual(lines[-1].params, ["Yoda", "early"])

    def test_message_deleted(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi", "INVITE luke #Jedi")
        self.call(self.chat.join_group(luke.user, "Jedi"))
        self.call(self.chat.send_group(luke.user, "Jedi", "oops"))
        c.lines()
        self.call(self.chat.delete_group_message(luke.user, "Jedi", 1))
        self.assertEqual(one(c.lines(), "NOTICE").params, ["#Jedi", "luke deleted message 1 in Jedi."])
        self.assertEqual(self.fixture.read("Jedi_messageLog.txt").split("; ")[-1], "[deleted]\n")

    def test_unknown_events_are_ignored(self):
        c = self.env.register("Yoda", "wise@!man")
        c.protocol.receive(object())
        self.assertEqual(c.lines(), [])


class LimitTests(IRCTestCase):
    def test_slow_reader_dropped(self):
        self.env = IRCEnvironment(self.chat, self.clock, max_output=4096)
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.protocol.pauseProducing()  # the transport's buffer is full (the protocol is its producer)
        for i in range(100):
            self.call(self.chat.send_private(luke.user, "Yoda", f"message {i} " + "x" * 50))
        self.assertTrue(c.transport.disconnected or c.closed)
        c.drop()
        self.assertNotIn("Yoda", self.active())

    def test_rate_limit(self):
        """Over the command rate, input waits for the next token: nothing is refused or lost."""
        self.env = IRCEnvironment(self.chat, self.clock, rate_limit=1.0, rate_burst=3)
        c = self.env.connect()
        self.assertEqual(commands(c.send("PING a", "PING b", "PING c", "PING d", "PING e")),
                         ["PONG", "PONG", "PONG"])
        self.assertEqual(c.transport.producerState, "paused")
        self.clock.advance(1)
        self.assertEqual([line.params[1] for line in c.lines()], ["d"])
        self.clock.advance(1)
        self.assertEqual([line.params[1] for line in c.lines()], ["e"])
        self.assertEqual(c.transport.producerState, "producing")

    def test_lines_per_turn(self):
        """A connection's pipelined lines are handled 64 a turn; the rest wait for the next turns."""
        c = self.env.register("Yoda", "wise@!man")
        c.protocol.dataReceived(b"PING x\r\n" * 200)
        self.assertEqual(c.protocol.unread_input().count(b"\n"), 200 - 64)
        self.assertEqual(len(find(c.lines(), "PONG")), 200)

    def test_lines_per_turn_messages(self):
        """Pipelined PRIVMSGs (their short path) and other commands share the 64 lines of a turn, in order."""
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        lines = [f"PRIVMSG luke :m{i}" if i % 3 else f"PING p{i}" for i in range(200)]
        c.protocol.dataReceived("".join(line + "\r\n" for line in lines).encode())
        self.assertEqual(c.protocol.unread_input().count(b"\n"), 200 - 64)
        pongs = [line.params[1] for line in find(c.lines(), "PONG")]
        self.assertEqual(pongs, [f"p{i}" for i in range(0, 200, 3)])
        texts = [event.text for event in luke.events if type(event).__name__ == "Message"]
        self.assertEqual(texts, [f"m{i}" for i in range(200) if i % 3])

    def test_too_many_lines_before_registration(self):
        c = self.env.connect()
        lines = c.send(*["PING x"] * 70)
        self.assertEqual(commands(lines), ["PONG"] * 64 + ["ERROR"])
        self.assertEqual(lines[-1].params, ["Closing link: Too many lines before registration"])

    def test_flooding_while_waiting_pauses_reading(self):
        c = self.env.register("Yoda", "wise@!man")
        self.other("luke", "jedi*knight")
        c.protocol.dataReceived(b"JOIN #Jedi\r\n" * 1500 + b"PRIVMSG luke :x\r\n")
        self.assertEqual(c.transport.producerState, "paused")
        settle(self.clock)
        self.assertEqual(c.transport.producerState, "producing")
        self.assertEqual(len(self.private_log("luke", "Yoda")), 1)


class WireTests(SynchronousTestCase):
    def test_tags_round_trip(self):
        from chatproto.frontends.irc.wire import format_tags, parse_line, parse_tags

        value = "a; b\\c\r\nd"
        text = format_tags([("k", value), ("flag", None)])
        self.assertEqual(parse_tags(text), {"k": value, "flag": ""})
        line = parse_line("@k=" + text.split("=", 1)[1] + " :src PRIVMSG #a :hello  world")
        self.assertEqual((line.tags["k"], line.prefix, line.command, line.params),
                         (value, "src", "PRIVMSG", ["#a", "hello  world"]))

    def test_server_time(self):
        from chatproto.frontends.irc.wire import parse_server_time, server_time

        self.assertEqual(server_time(T0), "2022-06-01T21:30:04.000Z")
        self.assertEqual(server_time(T0 + 0.9996), "2022-06-01T21:30:05.000Z")
        self.assertEqual(server_time(T0 + 0.25), "2022-06-01T21:30:04.250Z")
        self.assertEqual(parse_server_time("2022-06-01T21:30:04.250Z"), T0 + 0.25)
        self.assertIsNone(parse_server_time("yesterday"))

    def test_format_line(self):
        from chatproto.frontends.irc.wire import format_line

        self.assertEqual(format_line("PRIVMSG", ["#a", "x"], "me"), ":me PRIVMSG #a x")
        self.assertEqual(format_line("PRIVMSG", ["#a", ":)"]), "PRIVMSG #a ::)")
        self.assertEqual(format_line("PRIVMSG", ["#a", ""]), "PRIVMSG #a :")
        self.assertEqual(format_line("NOTICE", ["a", "two\r\nlines"]), "NOTICE a :two  lines")

    def test_bad_lines(self):
        from chatproto.frontends.irc.wire import BadLine, parse_line

        for text in ("", ":", ":prefixonly", "@tags", "@a=b "):
            with self.assertRaises(BadLine):
                parse_line(text)


class WithLineProtocolTests(IRCTestCase):
    """An IRC user and a line-protocol user on one realm (the line protocol's unit fixture)."""

    def test_private_both_ways_same_log(self):
        line = self.fixture.login("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man", caps=["server-time"])
        c.send("PRIVMSG luke :from irc")
        self.assertRegex(line.output()[0], r"^MSG \d\d \w{3} \d{4} [\d:]{8}, Yoda: from irc$")
        self.assertRegex(line.send("/msgto Yoda from line")[0], r"^OK message sent at ")
        self.assertEqual(one(c.lines(), "PRIVMSG").params, ["Yoda", "from line"])
        log = self.fixture.read("messagelog.txt").splitlines()
        self.assertRegex(log[0], r"^1; .*; Yoda; from irc$")
        self.assertRegex(log[1], r"^2; .*; luke; from line$")

    def test_irc_user_has_no_udp_port(self):
        line = self.fixture.login("luke", "jedi*knight")
        self.env.register("Yoda", "wise@!man")
        self.assertRegex(self.fixture.read("userlog.txt"), r"\n2; .*; Yoda; 127\.0\.0\.1; 0\n$")
        self.assertRegex(line.send("/activeuser")[0], r"^DATA Yoda, 127\.0\.0\.1, 0, active since ")
        self.assertEqual(line.send("/p2pvideo Yoda film.mp4"), ["ERR Yoda cannot receive files"])

    def test_lockout_across_front_ends(self):
        for _ in range(2):
            self.assertEqual(self.fixture.connect().send("LOGIN Yoda nope 6000"),
                             ["ERR Invalid Password. Please try again"])
        c = self.env.connect()
        lines = c.send("PASS nope", "NICK Yoda", "USER y 0 * :y")
        self.assertEqual(one(lines, "464").params[1],
                         "Invalid Password. Your account has been blocked. Please try again later")
        self.assertEqual(self.fixture.connect().send("LOGIN Yoda wise@!man 6000"),
                         ["ERR Your account is blocked due to multiple login failures. Please try again later"])

    def test_already_logged_in_on_the_other_front_end(self):
        self.chat.max_sessions = 1  # --max-sessions 1: one login per account
        self.fixture.login("Yoda", "wise@!man")
        c = self.env.connect()
        self.assertEqual(one(c.send("PASS wise@!man", "NICK Yoda", "USER y 0 * :y"), "464").params[1],
                         "This account is already logged in")
        self.env.register("luke", "jedi*knight")
        self.assertEqual(self.fixture.connect().send("LOGIN luke jedi*knight 6000"),
                         ["ERR This account is already logged in"])

    def test_group_with_both(self):
        line = self.fixture.login("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(line.send("/creategroup Jedi Yoda"),
                         ["OK Group chat room has been created, room name: Jedi, users in this room: luke Yoda"])
        self.assertEqual(one(c.lines(), "INVITE").params, ["Yoda", "#Jedi"])
        c.send("JOIN #Jedi")
        self.assertEqual(line.output(), ["NOTICE Yoda has joined the group chat Jedi."])
        c.send("PRIVMSG #Jedi :hello all")
        self.assertRegex(line.output()[0], r"^MSG .*, Jedi, Yoda: hello all$")
        self.assertEqual(line.send("/groupmsg Jedi hi Yoda"), ["OK Group chat message sent."])
        self.assertEqual(one(c.lines(), "PRIVMSG").params, ["#Jedi", "hi Yoda"])
        c.send("PART #Jedi")
        self.assertEqual(line.output(), ["NOTICE Yoda has left the group chat Jedi."])
        self.assertRegex(self.fixture.read("Jedi_messageLog.txt"), r"^1; .*; Yoda; hello all\n2; .*; luke; hi Yoda\n$")

    def test_shutdown_notice(self):
        c = self.env.register("Yoda", "wise@!man")
        self.chat.shutdown("Server shutting down")
        self.assertEqual(one(c.lines(), "ERROR").params, ["Closing link: Server shutting down"])
        self.assertTrue(c.transport.disconnecting)


class OptionsTests(SynchronousTestCase):
    def test_python_m_server(self):
        from chatproto.server import ServerOptions, options_first

        options = ServerOptions()
        options.parseOptions(options_first(["0", "3", "--interface", "127.0.0.1", "--irc-port", "6667"]))
        self.assertEqual(options["irc"], "tcp:6667:interface=127.0.0.1")
        options = ServerOptions()
        options.parseOptions(options_first(["--irc-listen", "ssl:6697:privateKey=k.pem", "0", "3"]))
        self.assertEqual(options["irc"], "ssl:6697:privateKey=k.pem")
        options = ServerOptions()
        options.parseOptions(["0", "3"])
        self.assertIsNone(options["irc"])

    def test_twistd(self):
        import os
        import tempfile

        from twisted.python import usage

        from chatproto.server.app import Options

        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        options = Options()
        options.parseOptions(["--irc-listen", "tcp:6667", "--credentials", os.devnull, "--data-dir", directory])
        self.assertEqual(options["irc"], "tcp:6667")
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--irc-port", "x", "--credentials", os.devnull, "--data-dir", directory])

    def test_ready_line(self):
        from twisted.internet.address import IPv4Address

        from chatproto.server.app import irc_front_end

        front_end = irc_front_end("tcp:0")
        self.assertEqual((front_end.name, front_end.listen), ("irc", "tcp:0"))
        self.assertEqual(front_end.ready_line(IPv4Address("TCP", "127.0.0.1", 6667)),
                         "IRC listening on 127.0.0.1:6667")
