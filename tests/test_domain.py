"""The domain without sockets: accounts, lockout, journal."""

import os
import tempfile

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from chatproto.storage.credentials import CredentialsFile, parse_credentials
from chatproto.storage.textlogs import ActiveUserLog, RecordLog, recover_last_seq
from chatproto.storage.textlogs import Journal as TextJournal
from chatproto.turns import EndOfTurn
from chatproto.core.lockout import LoginLockout


class CredentialsTests(SynchronousTestCase):
    def test_malformed_lines_reported_and_skipped(self):
        text = "Yoda wise@!man\n\nbad\nHans  two spaces\nleia alderaan extra\nluke jedi*knight\nYoda again\n"
        secrets, problems = parse_credentials("credentials.txt", text)
        self.assertEqual(secrets, {"Yoda": "wise@!man", "luke": "jedi*knight"})
        self.assertEqual([p.lineno for p in problems], [3, 4, 5, 7])
        self.assertTrue(str(problems[0]).startswith("credentials.txt:3: "))

    def test_usernames_case_sensitive(self):
        d = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, d)
        path = os.path.join(d, "c.txt")
        with open(path, "w") as f:
            f.write("Yoda pw\n")
        accounts = CredentialsFile(path).load()
        self.assertIn("Yoda", accounts)
        self.assertNotIn("yoda", accounts)


class LockoutTests(SynchronousTestCase):
    def test_block_and_unblock_on_the_clock(self):
        clock = task.Clock()
        lockout = LoginLockout(clock, attempts=2)
        self.assertFalse(lockout.record_failure("Yoda"))
        self.assertTrue(lockout.record_failure("Yoda"))
        self.assertTrue(lockout.is_blocked("Yoda"))
        self.assertFalse(lockout.is_blocked("Hans"))
        clock.advance(10)
        self.assertFalse(lockout.is_blocked("Yoda"))
        self.assertFalse(lockout.record_failure("Yoda"))  # the count restarted

    def test_stop_cancels_timers(self):
        clock = task.Clock()
        lockout = LoginLockout(clock, attempts=1)
        lockout.record_failure("Yoda")
        lockout.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


def read(path):
    with open(path) as f:
        return f.read()


def Journal(clock, durable=False):
    """The text logs' journal, written at the end of each turn, with when_durable for the tests."""
    waiting = []

    def flush():
        turn.cancel()
        failed = journal.write()
        for callback in waiting:
            callback(failed)
        waiting.clear()

    turn = EndOfTurn(clock, flush)
    journal = TextJournal(clock, durable, turn.schedule)
    journal.flush = flush
    journal.when_durable = lambda callback: (waiting.append(callback), turn.schedule())
    return journal


class JournalTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, self.dir)
        self.clock = task.Clock()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_records_written_once_per_turn_then_acknowledged(self):
        journal = Journal(self.clock)
        log = RecordLog(self.path("m.txt"), journal)
        acked = []
        log.append("01 Jun 2022 21:30:04", "Yoda", "one")
        log.append("01 Jun 2022 21:30:04", "Yoda", "two; with; semicolons")
        journal.when_durable(lambda failed: acked.append(read(self.path("m.txt"))))
        self.assertEqual(acked, [])
        self.clock.advance(0)
        self.assertEqual(acked, ["1; 01 Jun 2022 21:30:04; Yoda; one\n"
                                 "2; 01 Jun 2022 21:30:04; Yoda; two; with; semicolons\n"])
        log.close()

    def test_numbering_continues_and_partial_line_cut(self):
        with open(self.path("m.txt"), "w") as f:
            f.write("1; t; a; x\n41; t; a; y\n42; t; a; torn wri")
        self.assertEqual(recover_last_seq(self.path("m.txt")), 41)
        with open(self.path("m.txt")) as f:
            self.assertEqual(f.read(), "1; t; a; x\n41; t; a; y\n")
        journal = Journal(self.clock)
        log = RecordLog(self.path("m.txt"), journal)
        self.assertEqual(log.append("t", "b", "z"), 42)
        journal.flush()
        log.close()
        with open(self.path("m.txt")) as f:
            self.assertEqual(f.read().splitlines()[-1], "42; t; b; z")

    def test_recover_with_long_lines(self):
        with open(self.path("m.txt"), "w") as f:
            for seq in range(1, 4):
                f.write(f"{seq}; t; a; {'x' * 100000}\n")
        self.assertEqual(recover_last_seq(self.path("m.txt")), 3)
        self.assertEqual(recover_last_seq(self.path("missing.txt")), 0)

    def test_userlog_append_and_rewrite(self):
        with open(self.path("userlog.txt"), "w") as f:
            f.write("1; stale; Nobody; 1.2.3.4; 1\n")
        journal = Journal(self.clock)
        users = ActiveUserLog(self.path("userlog.txt"), journal)
        self.assertEqual(read(self.path("userlog.txt")), "")  # emptied at start-up
        users.add("Yoda", "T1", "127.0.0.1", 6000)
        users.add("Hans", "T2", "127.0.0.1", 6001)
        journal.flush()
        users.add("leia", "T3", "127.0.0.1", 6002)
        users.remove("Yoda")
        users.add("luke", "T4", "127.0.0.1", 6003)
        journal.flush()
        self.assertEqual(read(self.path("userlog.txt")),
                         "1; T2; Hans; 127.0.0.1; 6001\n2; T3; leia; 127.0.0.1; 6002\n"
                         "3; T4; luke; 127.0.0.1; 6003\n")
        users.add("obiwan", "T5", "127.0.0.1", 6004)  # appends again after a rewrite
        journal.flush()
        self.assertEqual(read(self.path("userlog.txt")).splitlines()[-1],
                         "4; T5; obiwan; 127.0.0.1; 6004")
        users.close()

    def test_fsync_mode_syncs_before_acknowledging(self):
        journal = Journal(self.clock, durable=True)
        synced = []

        class CountingLog(RecordLog):
            __slots__ = ()

            def sync(self):
                synced.append(True)

        log = CountingLog(self.path("m.txt"), journal)
        log.append("t", "a", "x")
        log.append("t", "a", "y")
        journal.when_durable(lambda failed: synced.append("ack"))
        self.clock.advance(0)
        self.assertEqual(synced, [True, "ack"])  # one flush for the whole turn
        log.close()


class LockoutWhileBlockedTests(SynchronousTestCase):
    def test_failure_during_a_block_keeps_one_countdown(self):
        clock = task.Clock()
        lockout = LoginLockout(clock, attempts=1)
        self.assertTrue(lockout.record_failure("Yoda"))
        clock.advance(5)
        self.assertTrue(lockout.record_failure("Yoda"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(5)
        self.assertFalse(lockout.is_blocked("Yoda"))
        self.assertEqual(clock.getDelayedCalls(), [])


class StaleTemporaryFileTests(SynchronousTestCase):
    def test_interrupted_rewrites_are_cleaned_at_start(self):
        import shutil

        from chatproto.server.app import ChatService

        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        with open(os.path.join(d, "credentials.txt"), "w") as f:
            f.write("Yoda wise@!man\n")
        stale = [".credentials.txt.k3j4h5.tmp", ".messagelog.txt.a1b2c3.tmp", ".Jedi_messageLog.txt.x9y8z7.tmp",
                 ".userlog.txt.q1w2e3.tmp"]
        kept = [".notes.txt.abcdef.tmp", "credentials.txt", "holiday.tmp"]
        for name in stale + kept[:1] + kept[2:]:
            with open(os.path.join(d, name), "w") as f:
                f.write("partial")
        service = ChatService(os.path.join(d, "credentials.txt"), d, 3, clock=task.Clock())
        service.load()
        self.addCleanup(os.close, service._lock)
        self.addCleanup(service.chat.close)
        names = set(os.listdir(d))
        self.assertFalse(names & set(stale))
        self.assertTrue(set(kept) <= names)
