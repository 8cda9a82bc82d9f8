"""
A run of private messages (issue 25): the /msgto lines (IRC: plain PRIVMSGs
to users) of one read go to the core in one call, under one waiter. What a
client sees must not change: replies in command order with other commands'
replies between them, each message's own error, each message delivered once
and in order, effects of a command after the messages before it, nothing
acknowledged or delivered when the run's batch is not saved.
"""

import json

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from chatproto.frontends.line.protocol import ChatLineProtocol

from .irc_support import IRCEnvironment, commands, find
from .support import ChatFixture

NOT_SAVED = "ERR Server error: the message could not be saved"


def texts(lines):
    """The message texts of MSG deliveries (the text is the last word in these tests)."""
    return [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("MSG ")]


def records(fixture):
    return [line.split("; ") for line in fixture.read("messagelog.txt").splitlines()]


class LineRunTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")
        for c in (self.yoda, self.hans, self.leia):
            c.output()

    def test_a_mixed_pipelined_write(self):
        """Messages to two users, errors and other commands in one write: every reply in
        command order, each message delivered once, in order, and logged in that order."""
        out = self.yoda.send_raw(
            b"/msgto Hans h1\n"
            b"/msgto leia l1\n"
            b"/msgto Nobody x\n"         # no such user
            b"/msgto Hans h2\n"
            b"/msgto Yoda me\n"          # to oneself
            b"/msgto luke x\n"           # not active
            b"/msgto Hans\n"             # wrong usage
            b"/groups\n"                 # answered at once, in the middle
            b"/msgto leia l2\n"
            b"/bogus\n"
            b"/msgto Hans h3\n")
        self.assertEqual(len(out), 11, out)
        sent = [i for i, line in enumerate(out) if line.startswith("OK message sent at ")]
        self.assertEqual(sent, [0, 1, 3, 8, 10])
        self.assertEqual(out[2], "ERR No such user: Nobody")
        self.assertEqual(out[4], "ERR You cannot send a message to yourself")
        self.assertEqual(out[5], "ERR luke is not active")
        self.assertEqual(out[6], "ERR Usage: /msgto USERNAME MESSAGE")
        self.assertEqual(out[7], "OK No groups.")
        self.assertTrue(out[9].startswith("ERR "), out[9])
        self.assertEqual(texts(self.hans.output()), ["h1", "h2", "h3"])
        self.assertEqual(texts(self.leia.output()), ["l1", "l2"])
        logged = records(self.f)
        self.assertEqual([(r[0], r[2], r[3]) for r in logged],
                         [("1", "Yoda", "h1"), ("2", "Yoda", "l1"), ("3", "Yoda", "h2"),
                          ("4", "Yoda", "l2"), ("5", "Yoda", "h3")])

    def test_a_command_after_messages_sees_them(self):
        """/deletemsg in the middle of a run finds the message before it (its SEQ is given out
        before the command runs), and the history shows what is left in order."""
        out = self.yoda.send_raw(b"/msgto Hans a\n/deletemsg 1\n/msgto Hans b\n")
        self.assertEqual(len(out), 3, out)
        self.assertTrue(out[0].startswith("OK message sent at "), out)
        self.assertEqual(out[1], "OK Message 1 deleted.")
        self.assertTrue(out[2].startswith("OK message sent at "), out)
        history = self.yoda.send("/history Hans")
        self.assertEqual([line.rsplit(" ", 1)[-1] for line in history[:-1]], ["[deleted]", "b"])

    def test_away_notices_per_message(self):
        """Only the messages to a user who is away get the away notice before their OK."""
        self.assertEqual(self.hans.send("/away gone fishing"), ["OK You are marked as away."])
        out = self.yoda.send_raw(b"/msgto Hans h\n/msgto leia l\n/msgto Hans i\n")
        self.assertEqual(len(out), 5, out)
        self.assertEqual(out[0], "NOTICE Hans is away: gone fishing")
        self.assertTrue(out[1].startswith("OK message sent at "))
        self.assertTrue(out[2].startswith("OK message sent at "))
        self.assertEqual(out[3], "NOTICE Hans is away: gone fishing")
        self.assertTrue(out[4].startswith("OK message sent at "))

    def test_observers_count_each_message(self):
        seen = []
        self.f.chat.observers.append(lambda what, detail, n: seen.append((what, detail, n)))
        self.yoda.send_raw(b"/msgto Hans a\n/msgto Nobody b\n/msgto leia c\n")
        self.assertEqual([s for s in seen if s[0] == "message"],
                         [("message", "private", True), ("message", "private", True)])

    def test_nothing_delivered_when_the_run_is_not_committed(self):
        """The database refuses the batch: each message of the run gets the not-saved error in its
        place (a wrong one its own error), none is delivered or acknowledged."""
        self.patch(self.f.database, "commit", lambda ops: defer.fail(OSError("disk full")))
        out = self.yoda.send_raw(b"/msgto Hans a\n/msgto leia b\n/msgto Nobody c\n/msgto Hans d\n/users\n")
        self.assertEqual(out[:4], [NOT_SAVED, NOT_SAVED, "ERR No such user: Nobody", NOT_SAVED])
        self.assertEqual(out[-1], "OK")
        self.assertEqual(self.hans.output(), [])
        self.assertEqual(self.leia.output(), [])
        self.flushLoggedErrors(OSError)

    def test_nothing_delivered_when_the_text_log_is_not_written(self):
        """The text log's write fails: each message of the run is refused, none delivered, and
        the run's SEQs are given out again (no gap in the log)."""
        from chatproto.storage import textlogs

        real = textlogs._write_all
        failures = [OSError("disk full")]

        def write_all(fd, data):
            if failures and b"; Yoda; " in data:
                raise failures.pop()
            return real(fd, data)

        self.patch(textlogs, "_write_all", write_all)
        out = self.yoda.send_raw(b"/msgto Hans a\n/msgto leia b\n/msgto Hans c\n")
        self.assertEqual(out, [NOT_SAVED] * 3)
        self.assertEqual(self.hans.output() + self.leia.output(), [])
        out = self.yoda.send_raw(b"/msgto Hans again\n")
        self.assertTrue(out[0].startswith("OK message sent at "), out)
        self.assertEqual([(r[0], r[3]) for r in records(self.f)], [("1", "again")])
        self.assertEqual(texts(self.hans.output()), ["again"])
        self.flushLoggedErrors(OSError)

    def test_replies_waiting_lift_while_the_run_is_handed_over(self):
        """A share of a turn longer than the replies' bound: the run's refusals answered at once
        let the pause go, and the rest of the read is handled (nothing waits forever)."""
        from chatproto.frontends.connection import MAX_REPLIES_WAITING

        self.patch(ChatLineProtocol, "lines_per_turn", 1000)
        n = MAX_REPLIES_WAITING + 44
        out = self.yoda.send_raw(b"/msgto Nobody x\n" * n)
        self.assertEqual(out, ["ERR No such user: Nobody"] * n)

    def test_offline_messages_in_a_run(self):
        """With offline messages, one to an inactive user in the middle of a run is kept, answered in order."""
        f = ChatFixture(self, offline_messages=True)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        yoda.output()
        hans.output()
        out = yoda.send_raw(b"/msgto Hans a\n/msgto luke b\n/msgto Hans c\n")
        self.assertEqual(len(out), 3)
        self.assertTrue(all(line.startswith("OK message sent at ") for line in out), out)
        self.assertEqual(texts(hans.output()), ["a", "c"])
        self.assertEqual([(r[0], r[3]) for r in records(f)], [("1", "a"), ("2", "b"), ("3", "c")])


class IRCRunTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.env = IRCEnvironment(self.f.chat, self.f.clock)
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")
        for c in (self.hans, self.leia):
            c.output()

    def test_a_mixed_pipelined_write(self):
        """PRIVMSGs to two users, a 401 and a PING in the middle: the 401 before the PONG, every
        echo in order, each message delivered once, in order."""
        c = self.env.register("Yoda", "wise@!man", caps=["echo-message"])
        lines = c.send("PRIVMSG Hans :h1", "PRIVMSG leia :l1", "PRIVMSG nobody :x", "PRIVMSG Hans :h2",
                       "PING :middle", "PRIVMSG leia :l2", "PRIVMSG Hans :h3")
        self.assertEqual(commands(lines).index("401"), commands(lines).index("PONG") - 1)
        self.assertEqual(find(lines, "401")[0].params, ["Yoda", "nobody", "No such user: nobody"])
        self.assertEqual([(line.params[0], line.params[1]) for line in find(lines, "PRIVMSG")],
                         [("Hans", "h1"), ("leia", "l1"), ("Hans", "h2"), ("leia", "l2"), ("Hans", "h3")])
        self.assertEqual(texts(self.hans.output()), ["h1", "h2", "h3"])
        self.assertEqual(texts(self.leia.output()), ["l1", "l2"])

    def test_a_command_after_messages_sees_them(self):
        """A channel message after a run is stored after it (one log, SEQ order for private ones)."""
        c = self.env.register("Yoda", "wise@!man")
        c.send("PRIVMSG Hans :a", "PRIVMSG Hans :b", "PRIVMSG #nowhere :x", "PRIVMSG Hans :c")
        self.assertEqual([(r[0], r[3]) for r in records(self.f)], [("1", "a"), ("2", "b"), ("3", "c")])
        self.assertEqual(texts(self.hans.output()), ["a", "b", "c"])

    def test_nothing_delivered_when_the_run_is_not_committed(self):
        self.patch(self.f.database, "commit", lambda ops: defer.fail(OSError("disk full")))
        c = self.env.register("Yoda", "wise@!man", caps=["echo-message"])
        lines = c.send("PRIVMSG Hans :a", "PRIVMSG leia :b")
        self.assertEqual(find(lines, "PRIVMSG"), [])
        self.assertEqual(len(find(lines, "FAIL") + find(lines, "NOTICE")), 2, [line.format() for line in lines])
        self.assertEqual(self.hans.output() + self.leia.output(), [])
        self.flushLoggedErrors(OSError)

    def test_several_targets_and_a_channel_keep_their_order(self):
        """A PRIVMSG to a user and a channel at once (the long path) joins the run in its place:
        the user's 401 comes before the channel's 403, every message is delivered once, in order."""
        c = self.env.register("Yoda", "wise@!man")
        lines = c.send("PRIVMSG Hans :a", "PRIVMSG nobody,#nowhere :x", "PRIVMSG leia,Hans :b",
                       "@+draft/reply=1 PRIVMSG Hans :c")
        self.assertEqual(commands(lines), ["401", "403"])
        self.assertEqual(texts(self.hans.output()), ["a", "b", "c"])
        self.assertEqual(texts(self.leia.output()), ["b"])
        self.assertEqual([(r[0], r[3]) for r in records(self.f)], [("1", "a"), ("2", "b"), ("3", "b"), ("4", "c")])

    def test_away_reply_per_message(self):
        """Only the messages to a user who is away get 301, each after its message is stored."""
        self.assertEqual(self.hans.send("/away gone fishing"), ["OK You are marked as away."])
        c = self.env.register("Yoda", "wise@!man", caps=["echo-message"])
        lines = c.send("PRIVMSG Hans :h", "PRIVMSG leia :l", "PRIVMSG Hans :i")
        self.assertEqual([(line.command, line.params[1]) for line in lines],
                         [("301", "Hans"), ("PRIVMSG", "h"), ("PRIVMSG", "l"), ("301", "Hans"), ("PRIVMSG", "i")])


class IRCRunOrderTests(SynchronousTestCase):
    """Lines the connection layer answers without the front end's command loop come after the run too."""

    def setUp(self):
        self.f = ChatFixture(self)
        self.env = IRCEnvironment(self.f.chat, self.f.clock)
        self.hans = self.f.login("Hans", "falcon*solo")
        self.hans.output()

    def test_a_line_too_long_is_answered_after_the_run_before_it(self):
        """A PRIVMSG to nobody, then a line longer than any the server reads: 401 first, then 417
        (as when each PRIVMSG went to the core alone)."""
        c = self.env.register("Yoda", "wise@!man")
        lines = c.send_raw(b"PRIVMSG nobody :x\r\nPRIVMSG Hans :" + b"y" * 9000 + b"\r\nPRIVMSG Hans :ok\r\n")
        self.assertEqual(commands(lines), ["401", "417"])
        self.assertEqual(texts(self.hans.output()), ["ok"])


class IRCTurnShareTests(SynchronousTestCase):
    def test_a_line_to_many_users_takes_that_many_lines_of_the_turn(self):
        """PRIVMSG to 80 targets is 80 messages: it takes more than the connection's share of a
        turn (64 lines), so the line after it waits for the next turn (other clients' lines
        first), and a read of such lines never makes one run of thousands of messages."""
        f = ChatFixture(self)
        env = IRCEnvironment(f.chat, f.clock)
        hans = f.login("Hans", "falcon*solo")
        c = env.register("Yoda", "wise@!man")
        c.protocol.dataReceived(("PRIVMSG " + ",".join(["Hans"] * 80) + " :x\r\n").encode()
                                + b"PRIVMSG Hans :after\r\n")
        self.assertEqual(c.protocol.unread_input(), b"PRIVMSG Hans :after\r\n")
        c.lines()
        self.assertEqual(texts(hans.output()), ["x"] * 80 + ["after"])


class WebRunOrderTests(SynchronousTestCase):
    """A page's sends of one read: what the page is told keeps the order of its requests, as when
    each send went to the core alone (the replies a page matches by id, the errors without one)."""

    def setUp(self):
        from tests.web_support import WebFixture

        self.web = WebFixture(self)
        self.yoda = self.web.browser("Yoda", "wise@!man")
        self.hans = self.web.browser("Hans", "falcon*solo")
        self.yoda.events()

    def write(self, *texts):
        from wsproto.events import TextMessage

        self.yoda.write(b"".join(self.yoda.ws.send(TextMessage(text)) for text in texts))
        return [m for m in self.yoda.events() if m["type"] in ("reply", "error")]

    def test_refusals_and_errors_in_request_order(self):
        out = self.write('{"id": 1, "type": "send", "to": "Nobody", "text": "x"}',
                         'not json',
                         '{"id": 3, "type": "send", "to": "Hans", "text": "   "}',
                         '{"id": 4, "type": "send", "to": "Nobody", "text": "y"}',
                         '{"id": 5, "type": "frobnicate"}',
                         '{"id": 6, "type": "send", "to": "Hans", "text": "ok"}')
        self.assertEqual([(m.get("id"), m.get("code")) for m in out],
                         [(1, "no-such-user"), (None, "bad-json"), (3, "empty-message"),
                          (4, "no-such-user"), (5, "unknown-type"), (6, None)])
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"], ["ok"])

    def test_a_refusal_before_a_close_frame_is_sent(self):
        """A send to nobody, then the page's close frame in the same read: the refusal still
        comes before the close (nothing the page asked before closing goes unanswered)."""
        from wsproto.events import CloseConnection, TextMessage

        ws = self.yoda.ws
        self.yoda.write(ws.send(TextMessage('{"id": 7, "type": "send", "to": "Nobody", "text": "x"}'))
                        + ws.send(CloseConnection(code=1000)))
        self.assertEqual([(m.get("id"), m.get("code")) for m in self.yoda.messages if m["type"] == "reply"],
                         [(7, "no-such-user")])

    def test_a_page_that_never_waits_has_at_most_256_sends_in_flight(self):
        """While the database has not committed, a page pipelining sends is read no further
        past 256 unanswered ones (its backlog waits in its socket, not in the server's memory);
        it goes on once half of them are answered; nothing is lost, each answered in order."""
        from wsproto.events import TextMessage

        from chatproto.frontends.connection import MAX_REPLIES_WAITING
        from chatproto.frontends.web.socket import WebSocketConnection

        self.patch(WebSocketConnection, "lines_per_turn", 10000)  # (the bound, not the turn's share)
        core = self.web.core
        held = []

        def slow_commit(ops):
            core.database.commit_now(ops)
            d = defer.Deferred()
            held.append(d)
            return d

        self.patch(core.database, "commit", slow_commit)
        ws = self.yoda.ws
        self.yoda.transport.protocol.dataReceived(b"".join(
            ws.send(TextMessage(json.dumps({"id": i, "type": "send", "to": "Hans", "text": f"q{i}"})))
            for i in range(1000)))
        for _ in range(40):
            self.web.clock.advance(0)
        self.assertEqual(len(core.read("messagelog.txt").splitlines()), MAX_REPLIES_WAITING)
        self.assertEqual([m for m in self.yoda.events() if m["type"] == "reply"], [])  # none before its commit
        replies = []
        while held:  # (each commit let through: the next batch comes once it is answered)
            while held:
                held.pop(0).callback(None)
            for _ in range(5):
                self.web.clock.advance(0)
            replies += [m for m in self.yoda.events() if m["type"] == "reply"]
        self.assertEqual([(m["id"], m["ok"], m["message"]["text"]) for m in replies],
                         [(i, True, f"q{i}") for i in range(1000)])
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"],
                         [f"q{i}" for i in range(1000)])

    def test_refusals_past_the_bound_let_the_input_go_on(self):
        """More sends to nobody in one read than the bound: their refusals, answered at once,
        let the pause go, and the rest of the read is handled (nothing waits forever)."""
        from chatproto.frontends.connection import MAX_REPLIES_WAITING
        from chatproto.frontends.web.socket import WebSocketConnection

        self.patch(WebSocketConnection, "lines_per_turn", 10000)
        n = MAX_REPLIES_WAITING + 44
        out = self.write(*[json.dumps({"id": i, "type": "send", "to": "Nobody", "text": "x"}) for i in range(n)],
                         '{"id": "last", "type": "send", "to": "Hans", "text": "ok"}')
        self.assertEqual([(m["id"], m.get("code")) for m in out],
                         [(i, "no-such-user") for i in range(n)] + [("last", None)])
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"], ["ok"])
