"""The line protocol over StringTransport, with time on a task.Clock."""


from twisted.trial.unittest import SynchronousTestCase

from .support import ChatFixture

TS = "01 Jun 2022 " + r"\d{2}:\d{2}:\d{2}"


class LoginTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self, attempts=3)

    def test_before_login(self):
        c = self.f.connect()
        self.assertEqual(c.send("/msgto Hans hi"), ["ERR Please log in first"])
        self.assertEqual(c.send("LOGIN Yoda"), ["ERR Usage: LOGIN USERNAME PASSWORD UDP_PORT"])
        self.assertEqual(c.send("LOGIN Yoda wise@!man port"), ["ERR Usage: LOGIN USERNAME PASSWORD UDP_PORT"])
        self.assertEqual(c.send("LOGIN Yoda wise@!man ²"), ["ERR Usage: LOGIN USERNAME PASSWORD UDP_PORT"])
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), ["OK Welcome to chatproto!"])

    def test_order_of_checks_and_lockout(self):
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Nobody x 6000"), ["ERR Invalid Username. Please try again"])
        self.assertEqual(c.send("LOGIN Yoda x 6000"), ["ERR Invalid Password. Please try again"])
        other = self.f.connect()  # failures count across connections
        self.assertEqual(other.send("LOGIN Yoda y 6000"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(
            c.send("LOGIN Yoda z 6000"),
            ["ERR Invalid Password. Your account has been blocked. Please try again later"],
        )
        blocked = ["ERR Your account is blocked due to multiple login failures. Please try again later"]
        self.assertEqual(other.send("LOGIN Yoda wise@!man 6000"), blocked)
        self.assertEqual(c.send("LOGIN Yoda x 6000"), blocked)  # no new failure while blocked
        self.f.clock.advance(9.9)
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), blocked)
        self.f.clock.advance(0.1)
        self.assertEqual(other.send("LOGIN Yoda x 6000"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), ["OK Welcome to chatproto!"])
        self.assertEqual(self.f.timers(), [])

    def test_success_resets_failures(self):
        c = self.f.connect()
        c.send("LOGIN Yoda x 6000")
        c.send("LOGIN Yoda y 6000")
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6000"), ["OK Welcome to chatproto!"])
        c.send("/logout")
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Yoda x 6000"), ["ERR Invalid Password. Please try again"])
        self.assertEqual(c.send("LOGIN Yoda y 6000"), ["ERR Invalid Password. Please try again"])

    def test_already_logged_in(self):
        self.f = ChatFixture(self, attempts=3, max_sessions=1)  # one login per account (the seed's rule)
        self.f.login("Yoda", "wise@!man")
        c = self.f.connect()
        self.assertEqual(c.send("LOGIN Yoda wise@!man 6001"), ["ERR This account is already logged in"])
        # A wrong password for a logged-in account is a failure all the same.
        self.assertEqual(c.send("LOGIN Yoda x 6001"), ["ERR Invalid Password. Please try again"])

    def test_userlog_written_before_ok(self):
        c = self.f.connect()
        c.protocol.dataReceived(b"LOGIN Yoda wise@!man 6000\n")
        self.assertEqual(c.transport.value(), b"")  # the OK waits for the journal
        self.f.clock.advance(0)
        self.assertRegex(self.f.read("userlog.txt"), rf"^1; {TS}; Yoda; 127\.0\.0\.1; 6000\n$")
        self.assertEqual(c.output(), ["OK Welcome to chatproto!"])

    def test_userlog_renumbered_on_disconnect(self):
        yoda = self.f.login("Yoda", "wise@!man", 6000)
        self.f.login("Hans", "falcon*solo", 6001)
        self.f.login("leia", "alderaan", 6002)
        yoda.drop()
        self.f.clock.advance(0)
        lines = self.f.read("userlog.txt").splitlines()
        self.assertEqual([(line.split("; ")[0], line.split("; ")[2]) for line in lines],
                         [("1", "Hans"), ("2", "leia")])


class CommandTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man", 6000)
        self.hans = self.f.login("Hans", "falcon*solo", 6001)

    def test_msgto(self):
        out = self.yoda.send("/msgto Hans  hello;  there ")
        self.assertEqual(len(out), 1)
        self.assertRegex(out[0], rf"^OK message sent at {TS}\.$")
        self.assertRegex(self.hans.output()[0], rf"^MSG {TS}, Yoda: hello;  there $")
        self.assertRegex(self.f.read("messagelog.txt"), rf"^1; {TS}; Yoda; hello;  there \n$")

    def test_msgto_errors_log_nothing(self):
        self.assertEqual(self.yoda.send("/msgto vader hi"), ["ERR vader is not active"])
        self.assertEqual(self.yoda.send("/msgto Nobody hi"), ["ERR No such user: Nobody"])
        self.assertEqual(self.yoda.send("/msgto Yoda hi"), ["ERR You cannot send a message to yourself"])
        self.assertEqual(self.yoda.send("/msgto Hans"), ["ERR Usage: /msgto USERNAME MESSAGE"])
        self.assertEqual(self.yoda.send("/msgto Hans   "), ["ERR Usage: /msgto USERNAME MESSAGE"])
        self.assertEqual(self.f.read("messagelog.txt"), "")
        self.assertEqual(self.hans.output(), [])

    def test_invalid_commands(self):
        for line in ("/dance", "hello", "/", "/msg!to Hans x", "LOGIN Yoda wise@!man 6000", ""):
            self.assertEqual(self.yoda.send(line), ["ERR Error. Invalid command!"], line)

    def test_activeuser(self):
        out = self.yoda.send("/activeuser")
        self.assertEqual(len(out), 2)
        self.assertRegex(out[0], rf"^DATA Hans, 127\.0\.0\.1, 6001, active since {TS}\.$")
        self.assertEqual(out[1], "OK")
        self.hans.send("/logout")
        self.assertEqual(self.yoda.send("/activeuser"), ["OK no other active user"])

    def test_logout(self):
        self.assertEqual(self.hans.send("/logout"), ["OK Bye, Hans!"])
        self.assertTrue(self.hans.transport.disconnecting)
        self.assertEqual(self.yoda.send("/msgto Hans hi"), ["ERR Hans is not active"])
        self.assertNotIn("Hans", self.f.read("userlog.txt"))

    def test_groups(self):
        leia = self.f.login("leia", "alderaan", 6002)
        self.assertEqual(self.yoda.send("/creategroup Jedi Hans leia Yoda Hans"), [
            "OK Group chat room has been created, room name: Jedi, users in this room: Yoda Hans leia"])
        invite = "NOTICE You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join."
        self.assertEqual(self.hans.output(), [invite])
        self.assertEqual(leia.output(), [invite])
        self.assertEqual(self.hans.send("/groupmsg jedi hi"), ["ERR Please join the group before sending messages."])
        self.assertEqual(self.hans.send("/joingroup JEDI"), ["OK Joined the group chat: Jedi successfully."])
        self.assertEqual(self.yoda.send("/groupmsg Jedi Do or do not"),
                         ["NOTICE Hans has joined the group chat Jedi.", "OK Group chat message sent."])
        self.assertRegex(self.hans.output()[0], rf"^MSG {TS}, Jedi, Yoda: Do or do not$")
        self.assertEqual(leia.output(), [])
        self.assertRegex(self.f.read("Jedi_messageLog.txt"), rf"^1; {TS}; Yoda; Do or do not\n$")

    def test_creategroup_errors_in_order(self):
        cases = [
            ("/creategroup Jedi", "ERR Usage: /creategroup GROUPNAME USERNAME [USERNAME ...]"),
            ("/creategroup Je_di Nobody", "ERR Group name must be 1-32 letters and digits"),
            ("/creategroup " + "a" * 33 + " Hans", "ERR Group name must be 1-32 letters and digits"),
            ("/creategroup Jédi Hans", "ERR Group name must be 1-32 letters and digits"),
            ("/creategroup Jedi Nobody vader", "ERR No such user: Nobody"),
            ("/creategroup Jedi vader Nobody", "ERR vader is not active"),
            ("/creategroup Jedi Yoda Yoda", "ERR Please enter at least one more active user."),
        ]
        for line, expected in cases:
            self.assertEqual(self.yoda.send(line), [expected], line)
        self.assertEqual(self.f.chat.groups(), [])
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.output()
        self.assertEqual(self.hans.send("/creategroup jEDI Yoda"), ["ERR A group chat (Name: jEDI) already exists"])

    def test_joingroup_errors(self):
        self.f.login("leia", "alderaan", 6002)
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.output()
        leia = self.f.chat.active_user("leia").session
        self.assertEqual(self.hans.send("/joingroup Sith"), ["ERR Groupchat (Name: Sith) does not exist."])
        self.assertEqual(self.yoda.send("/joingroup Jedi"), ["ERR You have already joined the group chat Jedi."])
        leia.dataReceived(b"/joingroup Jedi\n")
        self.f.clock.advance(0)
        self.assertIn(b"ERR You are not a member of the group chat Jedi.\n", leia.transport.value())

    def test_groupmsg_errors(self):
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.output()
        self.assertEqual(self.hans.send("/groupmsg Sith hi"), ["ERR The group chat does not exist."])
        luke = self.f.login("luke", "jedi*knight", 6003)
        self.assertEqual(luke.send("/groupmsg Jedi hi"), ["ERR You are not in this group chat."])
        self.assertEqual(self.yoda.send("/groupmsg Jedi"), ["ERR Usage: /groupmsg GROUPNAME MESSAGE"])
        self.assertEqual(self.f.read("Jedi_messageLog.txt"), "")

    def test_group_log_continues_for_recreated_name(self):
        import os

        with open(os.path.join(self.f.dir, "Jedi_messageLog.txt"), "w") as f:
            f.write("1; 01 Jun 2022 10:00:00; Yoda; old\n7; 01 Jun 2022 10:00:01; Yoda; older\n")
        self.yoda.send("/creategroup Jedi Hans")
        self.yoda.send("/groupmsg Jedi new")
        self.assertRegex(self.f.read("Jedi_messageLog.txt").splitlines()[-1], r"^8; .*; Yoda; new$")

    def test_p2pvideo_lookup(self):
        peer, ok = self.yoda.send("/p2pvideo Hans clip.mp4")
        self.assertRegex(peer, "^PEER Hans 127.0.0.1 6001 [0-9a-f]{16} [0-9a-f]{64}$")
        self.assertEqual(ok, "OK")
        _, _, _, _, transfer_id, secret = peer.split()
        # The receiver was told first, over its own session, with the same id and secret.
        self.assertEqual(self.hans.output(), [f"OFFER {transfer_id} {secret} Yoda 127.0.0.1 clip.mp4"])
        self.assertEqual(self.yoda.send("/p2pvideo vader clip.mp4"), ["ERR vader is not active"])
        self.assertEqual(self.yoda.send("/p2pvideo Nobody clip.mp4"), ["ERR No such user: Nobody"])
        self.assertEqual(self.yoda.send("/p2pvideo Yoda clip.mp4"), ["ERR You cannot send a file to yourself"])
        self.assertEqual(self.yoda.send("/p2pvideo Hans"), ["ERR Usage: /p2pvideo USERNAME FILENAME"])

    def test_message_with_control_characters_stays_one_record(self):
        self.yoda.send_raw("/msgto Hans a\rb\x00c\u2028d\n".encode())
        log = self.f.read("messagelog.txt")
        self.assertEqual(log.count("\n"), 1)
        self.assertEqual(len(log.splitlines()), 1)
        self.assertTrue(log.rstrip("\n").endswith("; Yoda; a b c d"))


class FramingTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")

    def test_long_line_rejected_and_session_kept(self):
        out = self.yoda.send_raw(b"/msgto Hans " + b"x" * 70000 + b"\n/activeuser\n")
        self.assertEqual(out, ["ERR Line too long", "OK no other active user"])

    def test_long_line_in_pieces(self):
        out = self.yoda.send_raw(b"x" * 40000)
        out += self.yoda.send_raw(b"x" * 40000)
        out += self.yoda.send_raw(b"y" * 40000)
        out += self.yoda.send_raw(b"z\n/activeuser\n")
        self.assertEqual(out, ["ERR Line too long", "OK no other active user"])

    def test_line_at_the_limit_is_accepted(self):
        self.f.login("Hans", "falcon*solo")
        prefix = b"/msgto Hans "
        out = self.yoda.send_raw(prefix + b"m" * (65536 - len(prefix)) + b"\n")
        self.assertRegex(out[0], "^OK message sent at")

    def test_invalid_utf8(self):
        self.assertEqual(self.yoda.send_raw(b"/msgto Hans \xff\n"), ["ERR Invalid UTF-8"])
        self.assertEqual(self.f.connect().send_raw(b"\xc3\x28\n"), ["ERR Invalid UTF-8"])

    def test_crlf_accepted(self):
        self.assertEqual(self.yoda.send_raw(b"/activeuser\r\n"), ["OK no other active user"])

    def test_handler_exception_is_answered_and_logged(self):
        def broken():
            raise RuntimeError("boom")

        self.f.chat.active_users = broken  # a bug behind /activeuser
        self.assertEqual(self.yoda.send("/activeuser"), ["ERR Server error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.yoda.transport.disconnecting)


class SlowReaderTests(SynchronousTestCase):
    def test_client_that_does_not_read_is_dropped(self):
        f = ChatFixture(self, max_output=100_000)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        # Hans's transport stops draining: the producer is paused by the transport.
        hans.transport.producer.pauseProducing()
        message = "/msgto Hans " + "x" * 1000
        for _ in range(90):  # about 93,000 bytes waiting
            self.assertRegex(yoda.send(message)[0], "^OK message sent")
        self.assertFalse(hans.transport.disconnected)
        for _ in range(10):
            yoda.send(message)
        # Dropped: told why after what is queued, and cut off if that is not read within a second.
        self.assertTrue(hans.transport.disconnecting)
        self.assertTrue(hans.transport.value().endswith(b"\nNOTICE Disconnected: too much output waiting unread\n"))
        self.assertFalse(hans.transport.disconnected)
        f.clock.advance(1.0)
        self.assertTrue(hans.transport.disconnected)
        self.assertEqual(yoda.send("/msgto Hans hi"), ["ERR Hans is not active"])
        hans.send("LOGIN Hans falcon*solo 6001")  # still in flight from a dropped client: not read
        self.assertIsNone(f.chat.active_user("Hans"))
        self.assertNotIn("Hans", f.read("userlog.txt"))


class TimestampTests(SynchronousTestCase):
    def test_english_months_whatever_the_locale(self):
        from chatproto.core.timestamps import format_timestamp

        text = format_timestamp(1654119004)
        self.assertRegex(text, r"^01 Jun 2022 \d{2}:\d{2}:04$")


def open_group_logs(directory):
    """The group logs of C{directory} that this process holds open."""
    import os

    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(directory) and target.endswith("_messageLog.txt"):
            names.append(target)
    return names


class GroupLogDescriptorTests(SynchronousTestCase):
    def test_many_groups_hold_a_bounded_number_of_descriptors(self):
        import os

        from chatproto.storage import textlogs as chat

        self.patch(chat, "MAX_OPEN_GROUP_LOGS", 3)
        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        before = len(os.listdir("/proc/self/fd"))
        for i in range(10):
            yoda.send(f"/creategroup G{i} Hans")
            hans.send(f"/joingroup G{i}")
        yoda.output()  # Hans's join notices
        self.assertLessEqual(len(os.listdir("/proc/self/fd")) - before, 3)
        # Every group still logs, in order, with its own numbering.
        for i in (0, 9, 0):
            self.assertEqual(yoda.send(f"/groupmsg G{i} hello {i}"), ["OK Group chat message sent."])
        self.assertEqual([line.split("; ")[0] for line in f.read("G0_messageLog.txt").splitlines()], ["1", "2"])
        self.assertEqual(len(f.read("G9_messageLog.txt").splitlines()), 1)

    def test_removed_group_closes_its_log_and_a_new_one_continues_it(self):
        f = ChatFixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        yoda.send("/creategroup Jedi Hans")
        yoda.send("/groupmsg Jedi one")
        hans.send("/leavegroup Jedi")
        self.assertEqual(yoda.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual(f.chat.groups(), [])
        yoda.send("/creategroup Jedi Hans")
        yoda.send("/groupmsg Jedi two")
        self.assertEqual([line.split("; ")[0] for line in f.read("Jedi_messageLog.txt").splitlines()], ["1", "2"])


class SlowButReadingClientTests(SynchronousTestCase):
    def test_a_reader_that_keeps_up_is_not_dropped(self):
        from twisted.internet.testing import StringTransport

        class BufferedTransport(StringTransport):
            """Exposes the write buffer the way Twisted's TCP transport does."""

            dataBuffer = b""
            offset = 0
            _tempDataLen = 0

            def write(self, data):
                super().write(data)
                self._tempDataLen += len(data)

        f = ChatFixture(self, max_output=100_000)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.connect()
        hans.transport = BufferedTransport()
        hans.protocol.makeConnection(hans.transport)
        hans.send("LOGIN Hans falcon*solo 6001")
        hans.transport.producer.pauseProducing()  # the buffer is past its mark ...
        message = "/msgto Hans " + "x" * 1000
        for _ in range(500):  # ... but Hans reads: what is unsent stays near 50 KB
            yoda.send(message)
            if hans.transport._tempDataLen > 50_000:
                hans.transport._tempDataLen -= 1050
        self.assertFalse(hans.transport.disconnected)
        self.assertRegex(yoda.send("/msgto Hans still there?")[0], "^OK message sent")
        hans.transport._tempDataLen = 100_001  # now it stops reading
        yoda.send(message)
        self.assertTrue(hans.transport.disconnecting)
        self.assertIsNone(f.chat.active_user("Hans"))


class DiskFullTests(SynchronousTestCase):
    """A record that cannot be written is never acknowledged, never torn, and wedges nobody."""

    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def fail_writes(self, times=1):
        import errno

        from chatproto.storage import textlogs as journal

        real = journal._write_all
        calls = {"left": times}

        def write_part_then_fail(fd, data):
            if calls["left"] <= 0:
                return real(fd, data)
            calls["left"] -= 1
            real(fd, data[: len(data) // 2])  # a torn write, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(journal, "_write_all", write_part_then_fail)

    def test_message_not_written_is_not_acknowledged(self):
        self.fail_writes()
        self.yoda.protocol.dataReceived(b"/msgto Hans lost\n")
        self.hans.protocol.dataReceived(b"/activeuser\n")  # same turn, another session
        self.f.clock.advance(0)
        self.assertEqual(self.yoda.output(), ["ERR Server error: the message could not be saved"])
        self.assertEqual(self.hans.output()[-1], "OK")
        self.assertEqual(self.f.read("messagelog.txt"), "")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        # The disk has room again: numbering goes on from the last record written.
        self.assertRegex(self.yoda.send("/msgto Hans kept")[0], "^OK message sent at")
        self.assertRegex(self.f.read("messagelog.txt"), r"^1; .*; Yoda; kept\n$")
        self.assertEqual(self.hans.send("/activeuser")[-1], "OK")

    def test_login_not_recorded_is_refused(self):
        self.fail_writes()
        leia = self.f.connect()
        self.assertEqual(leia.send("LOGIN leia alderaan 6002"),
                         ["ERR Server error: the login could not be recorded. Please try again later"])
        self.flushLoggedErrors(OSError)
        self.assertIsNone(self.f.chat.active_user("leia"))
        self.assertEqual(leia.send("LOGIN leia alderaan 6002"), ["OK Welcome to chatproto!"])
        self.assertEqual([line.split("; ")[2] for line in self.f.read("userlog.txt").splitlines()],
                         ["Yoda", "Hans", "leia"])


class LateAnswerTests(SynchronousTestCase):
    """Answers that come after the connection is gone, or after a pause."""

    def setUp(self):
        from twisted.internet import defer

        self.f = ChatFixture(self)
        yoda = self.f.login("Yoda", "wise@!man")
        yoda.send("/changepassword wise@!man hashed")  # checks of a hash run "in a thread"
        yoda.send("/logout")
        self.pending = []

        def run(function, *args):
            d = defer.Deferred()
            self.pending.append((d, function, args))
            return d

        self.f.chat.passwords.run = run

    def finish_checks(self):
        while self.pending:
            d, function, args = self.pending.pop(0)
            d.callback(function(*args))
        self.f.clock.advance(0)

    def test_login_that_ends_after_the_connection_is_gone(self):
        c = self.f.connect()
        c.protocol.dataReceived(b"LOGIN Yoda hashed 6000\n")
        c.protocol.connectionLost(None)
        self.finish_checks()
        self.assertIsNone(self.f.chat.active_user("Yoda"))
        self.assertNotIn("Yoda", self.f.read("userlog.txt"))
        self.assertEqual(self.f.connect().send("LOGIN Yoda hashed 6001"), [])  # checked "in a thread" again
        self.finish_checks()

    def test_long_rest_waits_for_the_paused_reply(self):
        c = self.f.connect()
        c.protocol.dataReceived(b"LOGIN Yoda hashed 6000\n" + b"x" * 70000)
        self.f.clock.advance(0)
        self.assertEqual(c.output(), [])
        self.finish_checks()
        self.assertEqual(c.output(), ["OK Welcome to chatproto!", "ERR Line too long"])


class FailureIsolationTests(SynchronousTestCase):
    def setUp(self):
        self.f = ChatFixture(self)
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")

    def test_write_failure_outside_the_batch_turns_earlier_acks_into_errors(self):
        import errno

        from chatproto.storage import textlogs as journal

        def fail(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(journal, "_write_all", fail)
        out = self.yoda.send_raw(b"/msgto Hans one\n/deletemsg 1\n")
        # The message was not saved, so there is no message 1 to delete.
        self.assertEqual(out, ["ERR Server error: the message could not be saved", "ERR No message 1."])
        self.assertEqual(self.f.read("messagelog.txt"), "")
        self.flushLoggedErrors(OSError)

    def test_one_broken_connection_does_not_stop_the_others_output(self):
        def broken(data):
            raise RuntimeError("broken transport")

        self.hans.transport.write = broken
        self.assertRegex(self.yoda.send("/msgto Hans hi")[0], "^OK message sent at")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.yoda.send("/activeuser")[-1], "OK")
        self.assertRegex(self.yoda.send("/msgto Hans again")[0], "^OK message sent at")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_descriptors_trimmed_after_a_busy_turn(self):
        from chatproto.storage import textlogs as chat

        self.patch(chat, "MAX_OPEN_GROUP_LOGS", 3)
        for i in range(10):
            self.yoda.send(f"/creategroup G{i} Hans")
        self.yoda.send_raw(b"".join(f"/groupmsg G{i} hi\n".encode() for i in range(10)))
        self.assertLessEqual(len(open_group_logs(self.f.dir)), 3)


class UserlogRetryTests(SynchronousTestCase):
    def test_failed_userlog_rewrite_is_retried_by_itself(self):
        import errno

        from chatproto.storage import textlogs as journal

        f = ChatFixture(self)
        f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        original = journal.write_file_atomically

        def fail(path, parts, durable=True):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(journal, "write_file_atomically", fail)
        hans.send("/logout")  # the rewrite that drops Hans fails
        self.flushLoggedErrors(OSError)
        self.assertIn("; Hans; ", f.read("userlog.txt"))
        self.patch(journal, "write_file_atomically", original)  # the disk has room again
        f.clock.advance(journal.RETRY_SECONDS)  # nobody logs in or out meanwhile
        f.clock.advance(0)
        self.assertEqual([line.split("; ")[2] for line in f.read("userlog.txt").splitlines()], ["Yoda"])
        self.assertEqual(f.timers(), [])
