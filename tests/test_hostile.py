"""
Hostile clients (issue 12) over StringTransport and task.Clock: one connection
cannot starve the others, connections that never log in cost little and go away.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatproto.frontends.line.protocol import LINES_PER_TURN, LOGIN_DEADLINE, MAX_LINES_BEFORE_LOGIN

from .support import ChatFixture, hold_password_checks


class FairnessTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def test_a_burst_is_read_a_slice_per_turn(self):
        burst = b"".join(b"/msgto Yoda flood %d\n" % i for i in range(1000))
        self.hans.protocol.dataReceived(burst)
        # Only a slice of the burst is read in this turn; the rest waits, unread.
        self.assertEqual(self.hans.transport.producerState, "paused")
        # Someone else's command of the same turn is not queued behind the burst.
        self.yoda.protocol.dataReceived(b"/msgto Hans mine\n")
        while self.hans.transport.producerState == "paused":
            self.f.clock.advance(0)
        authors = [line.split("; ")[2] for line in self.f.read("messagelog.txt").splitlines()]
        self.assertEqual(len(authors), 1001)
        self.assertEqual(authors.index("Yoda"), LINES_PER_TURN)
        replies = self.hans.output()
        self.assertEqual(len([r for r in replies if r.startswith("OK message sent at")]), 1000)

    def test_the_order_of_replies_is_kept_across_turns(self):
        lines = b"".join(b"/msgto Yoda n%d\n" % i for i in range(LINES_PER_TURN * 3))
        self.hans.protocol.dataReceived(lines)
        for _ in range(5):
            self.f.clock.advance(0)
        delivered = [line.rsplit(": ", 1)[1] for line in self.yoda.output()]
        self.assertEqual(delivered, [f"n{i}" for i in range(LINES_PER_TURN * 3)])


class BeforeLoginTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)

    def test_login_deadline(self):
        idle = self.f.connect()
        logged_in = self.f.connect()
        self.assertEqual(logged_in.send("LOGIN Yoda wise@!man 6000"), ["OK Welcome to chatproto!"])
        self.f.clock.advance(LOGIN_DEADLINE - 0.1)
        self.assertFalse(idle.transport.disconnecting)
        self.f.clock.advance(0.1)
        self.assertEqual(idle.output(), ["NOTICE Disconnected: no login within 30 seconds"])
        self.assertTrue(idle.transport.disconnecting)
        self.assertFalse(logged_in.transport.disconnecting)

    def test_small_lines_before_login(self):
        c = self.f.connect()
        self.assertEqual(c.send_raw(b"LOGIN " + b"x" * 5000 + b"\n"), ["ERR Line too long"])
        # A half line is not kept beyond the bound either: it is skipped up to its end.
        self.assertEqual(c.send_raw(b"y" * 10000), ["ERR Line too long"])
        self.assertLess(len(c.protocol._buffer), 8192)
        self.assertEqual(c.send_raw(b"rest of it\nLOGIN Yoda wise@!man 6000\n"), ["OK Welcome to chatproto!"])
        # After login, long lines are fine.
        self.assertEqual(c.send("/msgto Yoda " + "z" * 60000), ["ERR You cannot send a message to yourself"])

    def test_many_lines_without_a_login_close_the_connection(self):
        c = self.f.connect()
        replies = c.send_raw(b"hello\n" * (MAX_LINES_BEFORE_LOGIN + 5))
        self.assertEqual(replies, ["ERR Please log in first"] * MAX_LINES_BEFORE_LOGIN
                         + ["NOTICE Disconnected: too many lines without a login"])
        self.assertTrue(c.transport.disconnecting)


class PasswordCheckFloodTests(SynchronousTestCase):
    """Checks of hashed passwords cannot be queued without limit (issue 12, item 3)."""

    def test_a_flood_of_wrong_logins_runs_at_most_attempts_checks(self):
        from chatproto.core.passwords import hash_password

        f = ChatFixture(self, attempts=3)
        f.accounts.secrets["Hans"] = hash_password("falcon*solo", rounds=4)
        f.accounts.secrets["leia"] = hash_password("alderaan", rounds=4)
        pending = hold_password_checks(f.chat)
        flood = [f.connect() for _ in range(200)]
        for c in flood:
            c.protocol.dataReceived(b"LOGIN Hans wrong 6000\n")
        leia = f.connect()
        leia.protocol.dataReceived(b"LOGIN leia alderaan 6001\n")
        # leia's check is not queued behind Hans's: it runs at once, beside his first.
        self.assertEqual(len(pending), 2)
        checks = 0
        while pending:
            d, function, args = pending.pop(0)
            checks += function is not None
            d.callback(function(*args))
            f.clock.advance(0)
        self.assertEqual(leia.output(), ["OK Welcome to chatproto!"])
        self.assertEqual(checks, 1 + 3)  # leia's, and Hans's until the block
        replies = [c.output() for c in flood]
        self.assertEqual(replies[:3], [["ERR Invalid Password. Please try again"]] * 2
                         + [["ERR Invalid Password. Your account has been blocked. Please try again later"]])
        rest = {reply[0] for reply in replies[3:]}
        self.assertLessEqual(rest, {
            "ERR Your account is blocked due to multiple login failures. Please try again later",
            "ERR Too many logins for this account at once. Please try again later"})


class DeletionTests(SynchronousTestCase):
    """/deletemsg rewrites a log off the reactor thread, one rewrite per log per turn (issue 12, item 7)."""

    def setUp(self):
        from twisted.internet import defer

        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        for i in range(60):
            self.yoda.send(f"/msgto Hans m{i}")
        self.hans.output()
        self.rewrites = []

        def in_thread(function, *args):  # "a worker thread": it ends when the test says so
            d = defer.Deferred()
            self.rewrites.append((d, function, args))
            return d

        self.f.storage._in_thread = in_thread

    def finish_rewrites(self):
        while self.rewrites:
            d, function, args = self.rewrites.pop(0)
            d.callback(function(*args))
        self.f.clock.advance(0)

    def test_pipelined_deletes_are_one_rewrite_and_nobody_waits(self):
        self.yoda.protocol.dataReceived(b"".join(b"/deletemsg %d\n" % seq for seq in range(1, 51)))
        self.f.clock.advance(0)
        self.assertEqual(len(self.rewrites), 1)  # fifty deletions, one rewrite
        # While it runs, others are answered at once, and new messages to that log wait in order.
        self.assertEqual(self.hans.send("/activeuser")[-1], "OK")
        self.hans.protocol.dataReceived(b"/msgto Yoda during the rewrite\n")
        self.f.clock.advance(0)
        self.assertEqual(self.hans.output(), [])
        self.finish_rewrites()
        out = self.yoda.output()
        self.assertEqual([line for line in out if line.startswith("OK")],
                         [f"OK Message {seq} deleted." for seq in range(1, 51)])
        self.assertEqual([line for line in out if line.startswith("MSG")],
                         ["MSG 01 Jun 2022 21:30:04, Hans: during the rewrite"])
        self.assertRegex(self.hans.output()[0], "^OK message sent at")
        lines = self.f.read("messagelog.txt").splitlines()
        self.assertEqual(len(lines), 61)
        self.assertTrue(all(line.endswith("; Yoda; [deleted]") for line in lines[:50]))
        self.assertTrue(lines[50].endswith("; Yoda; m50"))
        self.assertTrue(lines[60].startswith("61; ") and lines[60].endswith("; Hans; during the rewrite"))
        history = self.yoda.send("/history Hans 2")
        self.assertEqual([h.split(": ", 1)[1] for h in history[:-1]], ["m59", "during the rewrite"])
        self.assertEqual(self.yoda.send("/history Hans 500")[0].split(": ", 1)[1], "[deleted]")


class TextAndFilesTests(SynchronousTestCase):
    def test_invisible_and_direction_changing_characters_are_shown(self):
        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        yoda.send("/msgto Hans pay \u202emoc.live\u202c now\u200b\ufeff!")
        self.assertTrue(hans.output()[0].endswith(", Yoda: pay <U+202E>moc.live<U+202C> now<U+200B><U+FEFF>!"))
        self.assertTrue(f.read("messagelog.txt").endswith("; Yoda; pay <U+202E>moc.live<U+202C> now<U+200B><U+FEFF>!\n"))
        yoda.send("/msgto Hans café 😀 日本")  # printable text stays as it is
        self.assertTrue(hans.output()[0].endswith(", Yoda: café 😀 日本"))

    def test_server_files_are_private(self):
        import os
        import stat

        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        f.login("Hans", "falcon*solo")
        yoda.send("/creategroup Jedi Hans")
        yoda.send("/msgto Hans hi")
        for name in ("userlog.txt", "messagelog.txt", "Jedi_messageLog.txt"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(f.dir, name)).st_mode), 0o600, name)

    def test_database_file_is_private(self):
        import os
        import stat
        import tempfile

        from chatproto.storage.sqlite import SQLiteDatabase

        directory = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, directory)
        database = SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()
        self.addCleanup(database.close)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, "chatproto.db")).st_mode), 0o600)


class RecreatedGroupTests(SynchronousTestCase):
    def test_a_group_created_again_does_not_show_the_old_groups_history(self):
        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        leia = f.login("leia", "alderaan")
        yoda.send("/creategroup Jedi Hans")
        yoda.send("/groupmsg Jedi the secret plans are on Hoth")
        hans.send("/leavegroup Jedi")
        yoda.send("/leavegroup Jedi")  # the group is gone; its log stays
        self.assertEqual(leia.send("/creategroup Jedi Hans"), [
            "OK Group chat room has been created, room name: Jedi, users in this room: leia Hans"])
        self.assertEqual(leia.send("/grouphistory Jedi"), ["OK No messages."])
        leia.send("/groupmsg Jedi hello")
        history = leia.send("/grouphistory Jedi")
        self.assertEqual(len(history), 2)
        self.assertRegex(history[0], r"^DATA #2 .*, Jedi, leia: hello$")  # the log's numbering goes on


class PresenceTests(SynchronousTestCase):
    """Presence goes to whoever watches everyone (web) and, for IRC, to members of shared groups only."""

    def test_group_watchers_hear_only_of_their_groups_members(self):
        f = ChatFixture(self)

        class Session:
            frontend, ip, udp_port = "test", "127.0.0.1", 0

            def __init__(self, wants):
                self.wants_presence = wants
                self.events = []

            def receive(self, event):
                self.events.append(type(event).__name__ + " " + getattr(event, "username", ""))

            def disconnect(self, notice):
                pass

        def login(name, password, wants):
            session = Session(wants)
            d = f.chat.login(name, password, session)
            f.clock.advance(0)
            return self.successResultOf(d), session

        _web, web_session = login("Yoda", "wise@!man", True)
        irc, irc_session = login("Hans", "falcon*solo", "groups")
        f.clock.advance(0)
        login("leia", "alderaan", False)  # shares no group with Hans
        self.assertEqual(irc_session.events, [])
        self.assertIn("UserOnline leia", web_session.events)
        luke, _ = login("luke", "jedi*knight", False)
        self.assertEqual(irc_session.events, [])  # no group in common yet
        f.chat.create_group(irc, "Jedi", ["luke"])
        f.clock.advance(0)
        f.chat.join_group(luke, "Jedi")
        f.clock.advance(0)
        irc_session.events.clear()
        f.chat.logout(luke)
        f.clock.advance(0)
        self.assertEqual(irc_session.events, ["UserOffline luke"])


class FailedGroupChangeTests(SynchronousTestCase):
    """A group change the database refused changes nothing (ERR ... nothing changed)."""

    def test_join_leave_and_invite_undone_when_not_saved(self):
        from twisted.internet import defer

        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        f.login("leia", "alderaan")
        yoda.send("/creategroup Jedi Hans")
        hans.output()
        real_commit = f.database.commit

        def refuse(ops):
            return defer.fail(OSError("the database is gone"))

        f.database.commit = refuse
        self.assertEqual(hans.send("/joingroup Jedi"), ["ERR Server error: the message could not be saved"])
        self.assertEqual(yoda.send("/leavegroup Jedi"), ["ERR Server error: the message could not be saved"])
        self.flushLoggedErrors(OSError)
        f.database.commit = real_commit
        self.assertEqual(yoda.send("/members Jedi"), ["DATA Yoda owner active", "DATA Hans invited active", "OK"])
        self.assertEqual(hans.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])


class InputDuringLoginTests(SynchronousTestCase):
    """While a login is being recorded, what follows it waits; a little of it in the server."""

    def setUp(self):
        self.f = ChatFixture(self)
        self.f.login("Yoda", "wise@!man")

    def test_commands_sent_with_the_login_are_answered_after_it_in_order(self):
        hans = self.f.connect()
        hans.protocol.dataReceived(b"LOGIN Hans falcon*solo 6000\n/msgto Yoda first\n/activeuser\n")
        self.assertEqual(hans.transport.producerState, "producing")  # a few bytes: still read
        self.f.clock.advance(0)
        self.f.clock.advance(0)
        replies = hans.output()
        self.assertEqual(replies[0], "OK Welcome to chatproto!")
        self.assertTrue(replies[1].startswith("OK message sent at"), replies)
        self.assertTrue(replies[2].startswith("DATA Yoda, 127.0.0.1, 6000, active since"), replies)
        self.assertEqual(hans.transport.producerState, "producing")

    def test_a_flood_sent_with_the_login_waits_in_the_socket(self):
        hans = self.f.connect()
        flood = b"".join(b"/msgto Yoda flood %d\n" % i for i in range(400))  # about 8 KiB
        hans.protocol.dataReceived(b"LOGIN Hans falcon*solo 6000\n" + flood[:1000])
        self.assertEqual(hans.transport.producerState, "producing")
        hans.protocol.dataReceived(flood[1000:])
        self.assertEqual(hans.transport.producerState, "paused")  # over 4 KiB unread: not read
        for _ in range(20):
            self.f.clock.advance(0)
        self.assertEqual(hans.transport.producerState, "producing")
        sent = [r for r in hans.output() if r.startswith("OK message sent at")]
        self.assertEqual(len(sent), 400)
