"""
Pipelined private messages (issue 25): many /msgto lines in one read, each
acknowledged only once its batch is durable, replies in the order of the
commands, whatever path the core takes to answer them (a waiter object with
the ledger, a Deferred with a storage that takes none).
"""

import os

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.events import Message
from chatproto.storage.ledger import Ledger
from chatproto.storage.model import peers_key
from chatproto.storage.sqlite import SQLiteDatabase

from .support import ChatFixture


class NoWaiters(Ledger):
    """A storage whose append_private only returns Deferreds (as the cluster's ledger)."""

    accepts_waiters = False

    def append_private(self, sender, recipient, timestamp, time, text):
        return super().append_private(sender, recipient, timestamp, time, text)


class PipelineTests(SynchronousTestCase):
    storage_class = Ledger

    def setUp(self):
        self.f = ChatFixture(self)
        if self.storage_class is not Ledger:
            self.f.chat.storage = self.storage_class(self.f.database, self.f.dir, self.f.clock)
            self.f.chat._waiters = self.f.chat.storage.accepts_waiters
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.hans.output()

    def test_replies_in_command_order(self):
        """Messages, a refused one and a command answered at once keep their order."""
        lines = b"".join(b"/msgto Hans m%d\n" % i for i in range(200))
        out = self.yoda.send_raw(lines + b"/msgto Nobody x\n/msgto Hans last\n/groups\n")
        self.f.clock.advance(0)
        out += self.yoda.output()
        self.assertEqual(len(out), 203, out[-5:])
        self.assertTrue(all(o.startswith("OK message sent at ") for o in out[:200]), out[:3])
        self.assertEqual(out[200], "ERR No such user: Nobody")
        self.assertTrue(out[201].startswith("OK message sent at "), out[201])
        got = self.hans.output()
        self.assertEqual([g.rsplit(" ", 1)[-1] for g in got], [f"m{i}" for i in range(200)] + ["last"])
        records = self.f.read("messagelog.txt").splitlines()
        self.assertEqual(len(records), 201)
        self.assertTrue(records[200].startswith("201; ") and records[200].endswith("; Yoda; last"))

    def test_a_pipelining_client_is_not_stopped_every_turn(self):
        """1,000 lines take 16 turns of 64; the socket's reading stops once, and starts once."""
        calls = []
        transport = self.yoda.transport
        self.patch(transport, "pauseProducing", lambda: calls.append("pause"))
        self.patch(transport, "resumeProducing", lambda: calls.append("resume"))
        self.yoda.protocol.dataReceived(b"".join(b"/msgto Hans p%d\n" % i for i in range(1000)))
        for _ in range(40):
            self.f.clock.advance(0)
        out = self.yoda.output()
        self.assertEqual(len(out), 1000)
        self.assertTrue(all(o.startswith("OK message sent at ") for o in out))
        self.assertEqual(calls, ["pause", "resume"])

    def test_a_client_that_never_waits_has_at_most_256_commands_in_flight(self):
        """While the database has not committed, a pipelining client's input waits past 256
        unanswered commands; it goes on once half of them are answered; nothing is lost."""
        from chatproto.frontends.connection import MAX_REPLIES_WAITING

        held = []

        def slow_commit(ops):
            self.f.database.commit_now(ops)
            d = defer.Deferred()
            held.append(d)
            return d

        self.patch(self.f.database, "commit", slow_commit)
        self.yoda.protocol.dataReceived(b"".join(b"/msgto Hans q%d\n" % i for i in range(1000)))
        for _ in range(40):
            self.f.clock.advance(0)
        stored = len(self.f.read("messagelog.txt").splitlines())
        self.assertEqual(stored, MAX_REPLIES_WAITING)  # read no further than the bound
        self.assertEqual(self.yoda.output(), [])  # nothing acknowledged before its commit
        out = []
        while held or self.f.timers():
            while held:
                held.pop(0).callback(None)
            self.f.clock.advance(0)
            out += self.yoda.output()
        self.assertEqual(len(out), 1000)
        self.assertTrue(all(o.startswith("OK message sent at ") for o in out))
        self.assertEqual([g.rsplit(" ", 1)[-1] for g in self.hans.output()], [f"q{i}" for i in range(1000)])

    def test_a_message_s_timestamp_is_the_second_of_its_time(self):
        """The clock is read once per message: a clock that moves between two readings
        (a second boundary) cannot give a timestamp of one second and a time of the next."""
        from chatproto.core.timestamps import format_timestamp

        clock = self.f.clock
        clock.advance((0.7 - clock.seconds() % 1) % 1)  # 0.7 s into a second: readings at .9, 1.1, ...
        real = clock.seconds
        self.patch(clock, "seconds", lambda: real() + 0.2 * len(readings.append(1) or readings))
        readings = []
        yoda = self.f.chat._active["Yoda"]
        d = self.f.chat.send_private(yoda, "Hans", "at the turn of a second")
        self.patch(clock, "seconds", real)
        clock.advance(1)  # (the batch was scheduled at the moved clock's time)
        message = self.successResultOf(d)
        self.assertEqual(message.timestamp, format_timestamp(message.time))

    def test_nothing_acknowledged_or_delivered_when_the_batch_fails(self):
        """A batch the database refuses: every message of it is refused, in order, none delivered."""

        def refuse(ops):
            return defer.fail(OSError("disk full"))

        self.patch(self.f.database, "commit", refuse)
        out = self.yoda.send_raw(b"/msgto Hans one\n/msgto Hans two\n/groups\n")
        self.assertEqual(out[:2], ["ERR Server error: the message could not be saved"] * 2)
        self.assertEqual(len(out), 3)
        self.assertEqual(self.hans.output(), [])
        self.flushLoggedErrors(OSError)

    def test_the_deferred_interface_still_fires_with_the_message(self):
        """Without a reply object, send_private returns a Deferred of the L{Message}."""
        yoda = self.f.chat._active["Yoda"]
        d = self.f.chat.send_private(yoda, "Hans", "through a Deferred")
        self.f.clock.advance(0)
        message = self.successResultOf(d)
        self.assertIsInstance(message, Message)
        self.assertEqual((message.sender, message.recipient, message.text),
                         ("Yoda", "Hans", "through a Deferred"))
        self.assertTrue(self.hans.output()[-1].endswith(" through a Deferred"))


class PipelineWithoutWaitersTests(PipelineTests):
    """The same, through a storage that only returns Deferreds."""

    storage_class = NoWaiters


class PipelineOnSQLiteTests(SynchronousTestCase):
    def test_pipelined_messages_are_in_the_database_before_their_acknowledgement(self):
        directory = self.mktemp()
        os.makedirs(directory)
        database = SQLiteDatabase(os.path.join(directory, "chat.db")).open()
        f = ChatFixture(self, database=database)
        yoda = f.login("Yoda", "wise@!man")
        f.login("Hans", "falcon*solo")
        committed = []
        real_commit = database._commit

        def commit(ops):
            real_commit(ops)
            committed.append(len(yoda.transport.value().splitlines()))

        self.patch(database, "_commit", commit)
        yoda.output()
        out = yoda.send_raw(b"".join(b"/msgto Hans n%d\n" % i for i in range(50)))
        self.assertEqual(len(out), 50)
        self.assertEqual(committed, [0])  # one batch, committed before any acknowledgement left
        history = self.successResultOf(database.private_history("Yoda", "Hans", 100))
        self.assertEqual([m.text for m in history], [f"n{i}" for i in range(50)])


class PartnersMigrationTests(SynchronousTestCase):
    """A database of schema version 2 (TARGETS read two indexes) opens with its partners listed."""

    def test_partners_of_an_older_database(self):
        import sqlite3

        from chatproto.storage import sqlite as store

        path = os.path.join(self.mktemp() + ".db")
        db = sqlite3.connect(path, isolation_level=None)
        for migration in store.MIGRATIONS[:2]:
            for statement in migration.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
        for seq, (sender, recipient, time) in enumerate(
                [("Yoda", "Hans", 10.0), ("leia", "Yoda", 30.0), ("Hans", "leia", 45.0)], 1):
            db.execute("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                       "VALUES ('', ?, 't', ?, ?, ?, ?, 'x')",
                       (seq, time, sender, recipient, peers_key(sender, recipient)))
        db.close()
        database = SQLiteDatabase(path).open()
        self.addCleanup(database._close)
        found = self.successResultOf(database.conversations("Yoda", [], 0.0, 100.0, 10))
        self.assertEqual([(c.name, c.time) for c in found], [("Hans", 10.0), ("leia", 30.0)])
        indexes = {row[0] for row in database._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        self.assertNotIn("messages_by_sender", indexes)
        # A new pair written after the migration is listed too.
        database.commit_now([("msg", "", 4, "t", 50.0, "obiwan", "Yoda", "y")])
        found = self.successResultOf(database.conversations("Yoda", [], 0.0, 100.0, 10))
        self.assertEqual([c.name for c in found], ["Hans", "leia", "obiwan"])
