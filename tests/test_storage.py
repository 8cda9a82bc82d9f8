"""
The storage interface (the Ledger over each database), run against every
implementation: the same tests for the in-memory and the SQLite database.
"""

import math
import os
import shutil
import sqlite3
import tempfile
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.interfaces import Bound, Conversation, GroupRecord
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase
from chatproto.storage.model import DatabaseError
from chatproto.storage.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from chatproto.storage.postgres import PostgresDatabase
from chatproto.storage.sqlite import SCHEMA_VERSION, SQLiteDatabase

from .services import NeedsPostgres

T = "01 Jun 2022 21:30:04"


class StorageContract:
    """What every database behind the ledger must do."""

    def make_database(self, directory):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-storage-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = task.Clock()
        self.database = self.make_database(self.dir)
        self.ledger = Ledger(self.database, self.dir, self.clock)
        self.addCleanup(lambda: self.ledger.close())

    def durable(self, d):
        self.clock.advance(0)
        return self.successResultOf(d)

    def reopen(self):
        self.ledger.close()
        self.database = self.make_database(self.dir)
        self.ledger = Ledger(self.database, self.dir, self.clock)

    def test_messages_get_rising_seqs_and_history_both_ways(self):
        seqs = [self.durable(self.ledger.append_private(a, b, T, 1.0 + i, f"m{i}"))
                for i, (a, b) in enumerate([("Yoda", "Hans"), ("Hans", "Yoda"), ("Yoda", "leia")])]
        self.assertEqual(seqs, [1, 2, 3])
        history = self.successResultOf(self.ledger.private_history("Hans", "Yoda", 20))
        self.assertEqual([(m.seq, m.sender, m.recipient, m.text) for m in history],
                         [(1, "Yoda", "Hans", "m0"), (2, "Hans", "Yoda", "m1")])
        self.assertEqual(history[0].timestamp, T)
        self.assertEqual(history[0].time, 1.0)

    def test_history_limit_and_before(self):
        for i in range(10):
            self.ledger.append_group("Jedi", "Yoda", T, float(i), f"g{i}")
        self.clock.advance(0)
        last = self.successResultOf(self.ledger.group_history("Jedi", 3))
        self.assertEqual([m.seq for m in last], [8, 9, 10])
        older = self.successResultOf(self.ledger.group_history("Jedi", 3, before=8))
        self.assertEqual([m.seq for m in older], [5, 6, 7])
        self.assertEqual(older[0].group, "Jedi")
        self.assertEqual(self.successResultOf(self.ledger.group_history("Other", 3)), [])

    def test_a_read_sees_the_changes_of_its_turn(self):
        self.ledger.append_private("Yoda", "Hans", T, 1.0, "same turn")
        d = self.ledger.private_history("Yoda", "Hans", 5)
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual([m.text for m in self.successResultOf(d)], ["same turn"])

    def test_groups_and_members_survive_a_reopen(self):
        record = GroupRecord("jedi", "Jedi", "Yoda", True, [["Yoda", True], ["Hans", False], ["leia", False]])
        self.durable(self.ledger.save_group(record))
        self.durable(self.ledger.set_member("jedi", "Hans", True))
        self.durable(self.ledger.remove_member("jedi", "leia"))
        self.durable(self.ledger.set_member("jedi", "luke", False))
        self.durable(self.ledger.save_group(GroupRecord("gone", "Gone", "Yoda", False, [["Yoda", True]])))
        self.durable(self.ledger.remove_group("gone", "Gone"))
        self.durable(self.ledger.append_group("Jedi", "Yoda", T, 1.0, "kept"))
        self.reopen()
        groups = self.successResultOf(self.ledger.groups())
        self.assertEqual(groups, [GroupRecord("jedi", "Jedi", "Yoda", True,
                                              [["Yoda", True], ["Hans", True], ["luke", False]], 1)])
        self.assertEqual(self.durable(self.ledger.append_group("Jedi", "Hans", T, 2.0, "next")), 2)

    def test_a_group_created_again_starts_its_history_after_the_old_one(self):
        self.durable(self.ledger.save_group(GroupRecord("jedi", "Jedi", "Yoda", False, [["Yoda", True]])))
        self.durable(self.ledger.append_group("Jedi", "Yoda", T, 1.0, "old"))
        self.durable(self.ledger.remove_group("jedi", "Jedi"))
        again = GroupRecord("jedi", "Jedi", "leia", False, [["leia", True]])
        self.durable(self.ledger.save_group(again))
        self.assertEqual(again.first_seq, 2)
        self.durable(self.ledger.append_group("Jedi", "leia", T, 2.0, "new"))
        self.reopen()
        (record,) = self.successResultOf(self.ledger.groups())
        self.assertEqual(record.first_seq, 2)
        history = self.successResultOf(self.ledger.group_history("Jedi", 20, None, record.first_seq))
        self.assertEqual([m.text for m in history], ["new"])

    def test_delete(self):
        self.durable(self.ledger.append_private("Yoda", "Hans", T, 1.0, "oops"))
        not_author = self.ledger.delete_message(None, 1, "Hans")
        self.clock.advance(0)  # the deletions of a turn are done together
        self.assertEqual(self.failureResultOf(not_author).value.code, "not-author")
        self.assertEqual(self.failureResultOf(self.ledger.delete_message(None, 7, "Yoda")).value.code,
                         "no-such-message")
        self.assertTrue(self.durable(self.ledger.delete_message(None, 1, "Yoda")))
        self.assertFalse(self.durable(self.ledger.delete_message(None, 1, "Yoda")))
        history = self.successResultOf(self.ledger.private_history("Yoda", "Hans", 5))
        self.assertEqual([m.text for m in history], ["[deleted]"])
        message = self.successResultOf(self.ledger.message(None, 1))  # whom to tell of the deletion
        self.assertEqual((message.sender, message.recipient, message.text), ("Yoda", "Hans", "[deleted]"))
        self.assertIsNone(self.successResultOf(self.ledger.message(None, 2)))
        with open(os.path.join(self.dir, "messagelog.txt")) as f:
            self.assertEqual(f.read(), f"1; {T}; Yoda; [deleted]\n")

    def test_userlog(self):
        self.durable(self.ledger.user_logged_in("Yoda", T, "127.0.0.1", 6000))
        self.durable(self.ledger.user_logged_in("Hans", T, "127.0.0.1", 0))
        self.durable(self.ledger.user_logged_out("Yoda"))
        with open(os.path.join(self.dir, "userlog.txt")) as f:
            self.assertEqual(f.read(), f"1; {T}; Hans; 127.0.0.1; 0\n")

    def test_records_a_crash_left_in_a_file_only_reach_the_database(self):
        self.durable(self.ledger.append_private("Yoda", "Hans", T, 1.0, "one"))
        self.ledger.close()
        # A crash between the file write and the commit: the record is in the file only.
        with open(os.path.join(self.dir, "messagelog.txt"), "a") as f:
            f.write(f"2; {T}; Hans; two; with; semicolons\n")
        self.database = self.make_database(self.dir)
        self.ledger = Ledger(self.database, self.dir, self.clock)
        self.assertEqual(self.database.last_seq(""), self.expected_after_import(2))
        self.assertEqual(self.durable(self.ledger.append_private("Yoda", "Hans", T, 3.0, "three")), 3)
        with open(os.path.join(self.dir, "messagelog.txt")) as f:
            self.assertEqual([line.split("; ")[0] for line in f], ["1", "2", "3"])

    def expected_after_import(self, seq):
        return seq

    def test_read_markers_only_forward_unread_counts_and_a_restart(self):
        for i, (a, b) in enumerate([("Hans", "Yoda"), ("Hans", "Yoda"), ("leia", "Yoda"), ("Yoda", "Hans")]):
            self.durable(self.ledger.append_private(a, b, T, 10.0 + i, f"m{i}"))
        for i, author in enumerate(["Hans", "Yoda", "Hans"]):
            self.durable(self.ledger.append_group("Jedi", author, T, 20.0 + i, f"g{i}"))
        groups = [("#jedi", "Jedi", 1)]
        self.assertEqual(self.successResultOf(self.ledger.unread_counts("Yoda", groups)),
                         [("#jedi", 2, 22.0, 3), ("leia", 1, 12.0, 3), ("Hans", 2, 11.0, 2)])
        self.durable(self.ledger.set_read_marker("Yoda", "Hans", 2))
        self.durable(self.ledger.set_read_marker("Yoda", "Hans", 1))  # never back
        self.durable(self.ledger.set_read_marker("Yoda", "#jedi", 2))
        self.assertEqual(self.successResultOf(self.ledger.read_markers("Yoda")), {"Hans": 2, "#jedi": 2})
        self.reopen()
        self.assertEqual(self.successResultOf(self.ledger.read_markers("Yoda")), {"Hans": 2, "#jedi": 2})
        self.assertEqual(self.successResultOf(self.ledger.read_markers("Hans")), {})
        self.assertEqual(self.successResultOf(self.ledger.unread_counts("Yoda", groups)),
                         [("#jedi", 1, 22.0, 3), ("leia", 1, 12.0, 3)])
        # A group created again under an old name: its earlier messages are not its own.
        self.assertEqual(self.successResultOf(self.ledger.unread_counts("Yoda", [("#jedi", "Jedi", 4)])),
                         [("leia", 1, 12.0, 3)])

    def test_a_deleted_message_is_not_unread(self):
        self.durable(self.ledger.append_private("Hans", "Yoda", T, 10.0, "oops"))
        self.durable(self.ledger.append_private("Hans", "Yoda", T, 11.0, "hello"))
        self.durable(self.ledger.append_group("Jedi", "Hans", T, 12.0, "oops"))
        self.assertTrue(self.durable(self.ledger.delete_message(None, 1, "Hans")))
        self.assertTrue(self.durable(self.ledger.delete_message("Jedi", 1, "Hans")))
        self.assertEqual(self.successResultOf(self.ledger.unread_counts("Yoda", [("#jedi", "Jedi", 1)])),
                         [("Hans", 1, 11.0, 2)])

    def test_bans_are_kept_and_forgotten(self):
        self.assertEqual(self.successResultOf(self.ledger.bans()), {})
        self.durable(self.ledger.save_ban("vader", math.inf))
        self.durable(self.ledger.save_ban("Hans", 2000.0))
        self.durable(self.ledger.save_ban("Hans", 3000.5))  # a new ban replaces the old one
        self.durable(self.ledger.save_ban("leia", 10.0))
        self.durable(self.ledger.remove_ban("leia"))
        self.durable(self.ledger.remove_ban("nobody"))
        expected = {"vader": math.inf, "Hans": 3000.5}
        self.assertEqual(self.successResultOf(self.ledger.bans()), expected)
        self.reopen()
        self.assertEqual(self.successResultOf(self.ledger.bans()), expected)

    def test_away_is_kept_until_cleared_and_across_a_restart(self):
        self.assertEqual(self.successResultOf(self.ledger.away_messages()), {})
        self.durable(self.ledger.save_away("Yoda", "gone fishing"))
        self.durable(self.ledger.save_away("Hans", "at lunch"))
        self.durable(self.ledger.save_away("Hans", "in a meeting"))  # a new message replaces the old
        self.durable(self.ledger.save_away("leia", "away"))
        self.durable(self.ledger.save_away("leia", None))
        self.durable(self.ledger.save_away("nobody", None))
        expected = {"Yoda": "gone fishing", "Hans": "in a meeting"}
        self.assertEqual(self.successResultOf(self.ledger.away_messages()), expected)
        self.reopen()
        self.assertEqual(self.successResultOf(self.ledger.away_messages()), expected)

    # History ranges (CHATHISTORY): any reference, however old, answered by the database

    def private_texts(self, a, b, after=None, before=None, limit=10, latest=True):
        return [m.text for m in self.successResultOf(
            self.ledger.private_range(a, b, after, before, limit, latest))]

    def test_private_ranges_by_seq_and_by_time(self):
        for i in range(6):  # Yoda and Hans at times 10, 20, ... 60; one to leia between
            self.ledger.append_private(*(("Yoda", "Hans") if i % 2 else ("Hans", "Yoda")), T,
                                       10.0 * (i + 1), f"m{i}")
            if i == 2:
                self.ledger.append_private("Yoda", "leia", T, 35.0, "to leia")
        self.clock.advance(0)
        # SEQs: m0 1, m1 2, m2 3, to leia 4, m3 5, m4 6, m5 7
        self.assertEqual(self.private_texts("Hans", "Yoda"), ["m0", "m1", "m2", "m3", "m4", "m5"])
        self.assertEqual(self.private_texts("Yoda", "Hans", limit=2), ["m4", "m5"])
        self.assertEqual(self.private_texts("Yoda", "Hans", limit=2, latest=False), ["m0", "m1"])
        self.assertEqual(self.private_texts("Yoda", "Hans", before=Bound(seq=5), limit=2), ["m1", "m2"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(seq=3), latest=False), ["m3", "m4", "m5"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(seq=3, inclusive=True), limit=2,
                                            latest=False), ["m2", "m3"])
        self.assertEqual(self.private_texts("Yoda", "Hans", before=Bound(seq=5, inclusive=True), limit=2),
                         ["m2", "m3"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(time=20.0), before=Bound(time=50.0)),
                         ["m2", "m3"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(time=20.0, inclusive=True),
                                            before=Bound(time=50.0, inclusive=True)), ["m1", "m2", "m3", "m4"])
        shown_20 = Bound(time=19.9995, until=20.0005)  # 20.000 as a time to the millisecond
        self.assertEqual(self.private_texts("Yoda", "Hans", after=shown_20, limit=1, latest=False), ["m2"])
        self.assertEqual(self.private_texts("Yoda", "Hans", before=shown_20), ["m0"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=replace(shown_20, inclusive=True), limit=1,
                                            latest=False), ["m1"])
        self.assertEqual(self.private_texts("Yoda", "Hans", before=replace(shown_20, inclusive=True)),
                         ["m0", "m1"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(seq=2), before=Bound(time=55.0),
                                            limit=1, latest=False), ["m2"])
        # A SEQ of another conversation, or of none, is no reference here: nothing.
        self.assertEqual(self.private_texts("Yoda", "Hans", before=Bound(seq=4)), [])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(seq=99)), [])
        self.assertEqual(self.private_texts("Yoda", "leia"), ["to leia"])
        self.assertEqual(self.private_texts("Yoda", "Hans", after=Bound(seq=6), before=Bound(seq=2)), [])

    def test_a_reference_older_than_any_fixed_window(self):
        for i in range(1200):
            self.ledger.append_group("Jedi", "Yoda", T, 1000.0 + i, f"g{i}")
        self.clock.advance(0)
        texts = [m.text for m in self.successResultOf(
            self.ledger.group_range("Jedi", None, Bound(time=1003.5), 2, True, 1))]
        self.assertEqual(texts, ["g2", "g3"])
        texts = [m.text for m in self.successResultOf(
            self.ledger.group_range("Jedi", Bound(seq=3), None, 3, False, 1))]
        self.assertEqual(texts, ["g3", "g4", "g5"])

    def test_group_ranges_start_at_the_groups_first_seq_and_keep_the_time_order(self):
        for i, time in enumerate([1.0, 2.0, 3.0, 2.5]):  # the clock went back for the last one
            self.ledger.append_group("Jedi", "Yoda", T, time, f"g{i}")
        self.clock.advance(0)

        def texts(after=None, before=None, limit=10, latest=True, since=1):
            return [m.text for m in self.successResultOf(
                self.ledger.group_range("Jedi", after, before, limit, latest, since))]

        self.assertEqual(texts(), ["g0", "g1", "g3", "g2"])
        self.assertEqual(texts(since=2), ["g1", "g3", "g2"])
        self.assertEqual(texts(before=Bound(seq=1), since=2), [])  # before the group's history
        self.assertEqual(texts(after=Bound(seq=4)), ["g2"])
        self.assertEqual(texts(before=Bound(seq=3), limit=1), ["g3"])
        self.assertEqual(self.successResultOf(self.ledger.group_range("Other", None, None, 5, True, 1)), [])
        self.assertEqual(self.successResultOf(self.ledger.group_range("", None, None, 5, True, 1)), [])

    def test_conversations_with_activity_in_a_span_of_time(self):
        self.ledger.append_private("Yoda", "Hans", T, 10.0, "a")
        self.ledger.append_private("leia", "Yoda", T, 30.0, "b")
        self.ledger.append_private("Hans", "Yoda", T, 40.0, "c")
        self.ledger.append_private("Hans", "leia", T, 45.0, "not Yoda's")
        self.ledger.append_group("Jedi", "Hans", T, 20.0, "g")
        self.ledger.append_group("Sith", "Hans", T, 50.0, "not joined")
        self.ledger.append_group("Old", "Hans", T, 25.0, "before the group")
        self.clock.advance(0)
        groups = [("Jedi", 1), ("Old", 2)]

        def conversations(after, before, limit=10, latest=False):
            return self.successResultOf(self.ledger.conversations("Yoda", groups, after, before, limit, latest))

        self.assertEqual(conversations(0.0, 100.0), [Conversation("group", "Jedi", 20.0),
                                                     Conversation("private", "leia", 30.0),
                                                     Conversation("private", "Hans", 40.0)])
        self.assertEqual(conversations(0.0, 35.0), [Conversation("private", "Hans", 10.0),
                                                    Conversation("group", "Jedi", 20.0),
                                                    Conversation("private", "leia", 30.0)])
        self.assertEqual(conversations(0.0, 100.0, limit=1), [Conversation("group", "Jedi", 20.0)])
        self.assertEqual(conversations(0.0, 100.0, limit=1, latest=True), [Conversation("private", "Hans", 40.0)])
        self.assertEqual(conversations(40.0, 100.0), [])
        self.assertEqual(conversations(100.0, 200.0), [])


class MemoryStorageTests(StorageContract, SynchronousTestCase):
    def make_database(self, directory):
        if not hasattr(self, "_memory"):
            self._memory = MemoryDatabase()
        return self._memory.open()


class SQLiteStorageTests(StorageContract, SynchronousTestCase):
    def make_database(self, directory):
        return SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()

    def test_records_the_database_has_beyond_a_file_are_appended_to_it(self):
        for text in ("one", "two"):
            self.durable(self.ledger.append_private("Yoda", "Hans", T, 1.0, text))
        self.ledger.close()
        with open(os.path.join(self.dir, "messagelog.txt"), "w") as f:
            f.write(f"1; {T}; Yoda; one\n")  # the file lost its last record (a power cut)
        self.reopen()
        with open(os.path.join(self.dir, "messagelog.txt")) as f:
            self.assertEqual(f.read(), f"1; {T}; Yoda; one\n2; {T}; Yoda; two\n")

    def test_a_database_from_before_away_is_migrated(self):
        """A database with read markers and no away table (the schema before it) keeps its
        markers and keeps away from then on."""
        from chatproto.storage.sqlite import MIGRATIONS

        self.ledger.close()
        path = os.path.join(self.dir, "older.db")
        db = sqlite3.connect(path)
        for migration in MIGRATIONS[:-1]:
            db.executescript(migration)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(len(MIGRATIONS) - 1),))
        db.execute("INSERT INTO read_markers (username, conversation, seq) VALUES ('Yoda', 'Hans', 3)")
        db.commit()
        db.close()
        self.ledger = Ledger(SQLiteDatabase(path).open(), self.dir, self.clock)
        self.assertEqual(self.successResultOf(self.ledger.read_markers("Yoda")), {"Hans": 3})
        self.durable(self.ledger.save_away("Yoda", "gone fishing"))
        self.assertEqual(self.successResultOf(self.ledger.away_messages()), {"Yoda": "gone fishing"})

    def test_newer_schema_refused_and_untouched(self):
        self.ledger.close()
        path = os.path.join(self.dir, "chatproto.db")
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        db.commit()
        db.close()
        with self.assertRaises(DatabaseError) as raised:
            SQLiteDatabase(path).open()
        self.assertIn("newer than this server's", str(raised.exception))

    def test_second_server_on_the_same_database_is_refused(self):
        with self.assertRaises(DatabaseError) as raised:
            SQLiteDatabase(os.path.join(self.dir, "chatproto.db")).open()
        self.assertIn("locked", str(raised.exception))

    def test_history_ranges_are_read_through_an_index_in_their_order(self):
        """However old the reference, a range reads its own rows only: no scan, no sort."""
        from chatproto.storage import model

        plans = []

        def explain(query, args):
            if "FROM messages" in query:
                plans.append(" ".join(row[3] for row in self.database._db.execute("EXPLAIN QUERY PLAN " + query,
                                                                                    args)))
            return self.database._db.execute(query, args).fetchall()

        self.durable(self.ledger.append_private("Yoda", "Hans", T, 5.0, "hi"))
        number = self.database._conversation  # (SQLite names a conversation by a number)
        for where in (model.private_where("Yoda", "Hans", "?", "conversation", number),
                      model.group_where("Jedi", 2, "?", "conversation")):
            for after, before in ((None, None), (Bound(time=1.0), None), (None, Bound(time=9.0))):
                model.read_range(explain, "?", where, after, before, 5, True)
        model.read_conversations(explain, "?", "Yoda", [("Jedi", 1)], 0.0, 9.0, 5, False, True, "conversation",
                                 number)
        for plan in plans:
            self.assertRegex(plan, "USING (COVERING )?INDEX")
            self.assertNotIn("FOR ORDER BY", plan)

    def test_history_and_unread_read_the_one_conversation_index(self):
        """/history and /unread start at a SEQ, and read (peers, time, seq) from its time: no scan, no sort."""
        for i in range(6):
            self.durable(self.ledger.append_private("Hans", "Yoda", T, 10.0 + i, f"m{i}"))
        self.durable(self.ledger.set_read_marker("Yoda", "Hans", 4))
        plans = []
        execute = self.database._db.execute

        class Explaining:
            def execute(self, query, args=()):
                if query.lstrip().startswith("SELECT") and "FROM messages" in query:
                    plans.append(" ".join(row[3] for row in execute("EXPLAIN QUERY PLAN " + query, args)))
                return execute(query, args)

        self.database._db = Explaining()
        try:
            history = self.successResultOf(self.ledger.private_history("Yoda", "Hans", 2, before=5))
            unread = self.successResultOf(self.ledger.unread_counts("Yoda", []))
        finally:
            self.database._db = execute.__self__
        self.assertEqual([m.seq for m in history], [3, 4])
        self.assertEqual(unread, [("Hans", 2, 15.0, 6)])
        self.assertTrue(plans)
        for plan in plans:
            self.assertIn("USING", plan)
            self.assertNotIn("SCAN", plan)
            self.assertNotIn("FOR ORDER BY", plan)

    def test_a_clock_set_back_keeps_history_and_unread_in_seq_order(self):
        """A private message's stored time never goes below an earlier one's: history stays in SEQ order."""
        for i, time in enumerate([10.0, 20.0, 5.0, 6.0, 30.0]):
            self.durable(self.ledger.append_private("Hans", "Yoda", T, time, f"m{i}"))
        self.reopen()
        self.durable(self.ledger.append_private("Hans", "Yoda", T, 1.0, "m5"))  # set back across a restart
        history = self.successResultOf(self.ledger.private_history("Yoda", "Hans", 20))
        self.assertEqual([m.text for m in history], [f"m{i}" for i in range(6)])
        self.assertEqual([m.time for m in history], [10.0, 20.0, 20.0, 20.0, 30.0, 30.0])
        before = self.successResultOf(self.ledger.private_history("Yoda", "Hans", 2, before=4))
        self.assertEqual([m.seq for m in before], [2, 3])
        self.durable(self.ledger.set_read_marker("Yoda", "Hans", 3))
        self.assertEqual(self.successResultOf(self.ledger.unread_counts("Yoda", [])), [("Hans", 3, 30.0, 6)])

    def older_database(self, version):
        """The path of a database as a server of schema C{version} left it, and a connection
        to it (for its rows; commit and close it before opening)."""
        from chatproto.storage.sqlite import MIGRATIONS

        self.ledger.close()
        path = os.path.join(self.dir, f"version{version}.db")
        db = sqlite3.connect(path)
        for migration in MIGRATIONS[:version]:
            db.executescript(migration)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
        return path, db

    def test_an_older_database_has_its_private_times_mended_once(self):
        """Version 8 kept a set-back clock's times and a (peers, seq) index; version 9 mends and drops."""
        path, db = self.older_database(8)
        db.executemany("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                       "VALUES ('', ?, ?, ?, 'Hans', 'Yoda', 'Hans\nYoda', ?)",
                       [(i + 1, T, time, f"m{i}") for i, time in enumerate([10.0, 20.0, 5.0, 30.0])])
        db.commit()
        db.close()
        database = SQLiteDatabase(path).open()
        self.addCleanup(database.close)
        self.assertEqual([m.time for m in self.successResultOf(database.private_history("Hans", "Yoda", 9))],
                         [10.0, 20.0, 20.0, 30.0])
        indexes = {row[0] for row in database._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        self.assertNotIn("messages_by_peers", indexes)
        self.assertIn("messages_by_conversation", indexes)

    def test_a_database_before_conversation_numbers_is_migrated(self):
        """Version 10 named a private conversation by both names; version 11 numbers it: the
        older messages keep their conversations (history, unread counts, TARGETS, a search with
        a peer), and new messages join them."""
        from chatproto.core.search import SearchQuery, search_words

        path, db = self.older_database(10)
        db.executemany("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                           ("", 1, T, 10.0, "Hans", "Yoda", "Hans\nYoda", "old one"),
                           ("", 2, T, 11.0, "Yoda", "Luke", "Luke\nYoda", "old two"),
                           ("", 3, T, 12.0, "Yoda", "Hans", "Hans\nYoda", "old three"),
                           ("Jedi", 1, T, 13.0, "Luke", None, None, "group one")])
        db.executemany("INSERT INTO partners (username, peer) VALUES (?, ?)",
                       [("Hans", "Yoda"), ("Yoda", "Hans"), ("Yoda", "Luke"), ("Luke", "Yoda")])
        db.commit()
        db.close()
        database = SQLiteDatabase(path).open()
        self.addCleanup(database.close)
        columns = {row[1] for row in database._db.execute("PRAGMA table_info(messages)")}
        self.assertNotIn("peers", columns)
        database.commit([("msg", "", 4, T, 14.0, "Hans", "Yoda", "new four"),
                         ("msg", "", 5, T, 15.0, "Leia", "Yoda", "new five")])
        history = self.successResultOf(database.private_history("Yoda", "Hans", 9))
        self.assertEqual([(m.seq, m.text) for m in history], [(1, "old one"), (3, "old three"), (4, "new four")])
        self.assertEqual([m.seq for m in self.successResultOf(database.private_history("Luke", "Yoda", 9))], [2])
        self.assertEqual([m.seq for m in self.successResultOf(
            database.private_range("Hans", "Yoda", Bound(seq=1), None, 9, False))], [3, 4])
        self.assertEqual(self.successResultOf(database.private_history("Luke", "Hans", 9)), [])
        self.assertEqual(self.successResultOf(database.unread_counts("Yoda", [])),
                         [("Leia", 1, 15.0, 5), ("Hans", 2, 14.0, 4)])
        found = self.successResultOf(database.conversations("Yoda", [("Jedi", 1)], 0.0, 100.0, 10))
        self.assertEqual([(c.name, c.time) for c in found],
                         [("Luke", 11.0), ("Jedi", 13.0), ("Hans", 14.0), ("Leia", 15.0)])
        self.assertEqual([m.text for m in self.successResultOf(database.group_history("Jedi", 9))], ["group one"])
        found = self.successResultOf(database.search(SearchQuery(search_words("new"), "Yoda", peer="Hans")))
        self.assertEqual([m.seq for m in found], [4])

    def test_a_batch_of_messages_and_other_operations_keeps_their_order(self):
        """The messages between a batch's other operations go in together, in their place: a
        deletion after a message of the same batch finds it, a marker counts what came before."""
        self.ledger.close()
        database = SQLiteDatabase(os.path.join(self.dir, "mixed.db")).open()
        self.addCleanup(database.close)
        database.commit([("msg", "", 1, T, 1.0, "Hans", "Yoda", "one"),
                         ("msg", "", 2, T, 2.0, "Hans", "Yoda", "two"),
                         ("mark", "Yoda", "Hans", 2),
                         ("msg", "", 3, T, 3.0, "Hans", "Yoda", "three"),
                         ("del", "", 3),
                         ("msg", "", 4, T, 4.0, "Hans", "Yoda", "four"),
                         ("away", "Yoda", "gone")])
        history = self.successResultOf(database.private_history("Yoda", "Hans", 9))
        self.assertEqual([m.text for m in history], ["one", "two", "[deleted]", "four"])
        self.assertEqual(self.successResultOf(database.unread_counts("Yoda", [])), [("Hans", 1, 4.0, 4)])
        self.assertEqual(self.successResultOf(database.away_messages()), {"Yoda": "gone"})

    def test_a_failed_batch_numbers_no_conversation(self):
        """A batch rolled back takes its new conversations with it: the next one numbers them again."""
        self.ledger.close()
        database = SQLiteDatabase(os.path.join(self.dir, "failed.db")).open()
        self.addCleanup(database.close)
        database.commit([("msg", "", 1, T, 1.0, "Hans", "Yoda", "one")])
        with self.assertRaises(sqlite3.IntegrityError):  # SEQ 1 again: the batch fails whole
            database.commit_now([("msg", "", 2, T, 2.0, "Leia", "Yoda", "two"),
                                 ("msg", "", 1, T, 2.0, "Leia", "Yoda", "again")])
        database.commit([("msg", "", 2, T, 3.0, "Leia", "Yoda", "three")])
        self.assertEqual([m.text for m in self.successResultOf(database.private_history("Yoda", "Leia", 9))],
                         ["three"])
        self.assertEqual(self.successResultOf(database.unread_counts("Yoda", [])),
                         [("Leia", 1, 3.0, 2), ("Hans", 1, 1.0, 1)])

    def test_unopenable_database(self):
        with self.assertRaises(DatabaseError) as raised:
            SQLiteDatabase(os.path.join(self.dir, "no", "such", "dir.db")).open()
        self.assertIn("cannot open the database", str(raised.exception))

    def test_an_sqlite_too_old_for_the_migrations_is_named_and_nothing_is_touched(self):
        path = os.path.join(self.dir, "fresh.db")
        self.patch(sqlite3, "sqlite_version_info", (3, 34, 1))
        self.patch(sqlite3, "sqlite_version", "3.34.1")
        with self.assertRaises(DatabaseError) as raised:
            SQLiteDatabase(path).open()
        self.assertEqual(str(raised.exception), "SQLite 3.34.1 is too old for the database: chatproto needs "
                                                "3.35.0 or later (Python's sqlite3 module is built with it)")
        self.assertFalse(os.path.exists(path))


@pytest_twisted.inlineCallbacks
def test_sqlite_worker_thread_commits_in_order_on_the_real_reactor(tmp_path):
    from twisted.internet import reactor

    database = SQLiteDatabase(str(tmp_path / "chatproto.db"), reactor=reactor).open()
    ledger = Ledger(database, str(tmp_path), reactor)
    try:
        seqs = yield __import__("twisted.internet.defer", fromlist=["x"]).gatherResults(
            [ledger.append_group("Jedi", "Yoda", T, float(i), f"g{i}") for i in range(100)])
        assert seqs == list(range(1, 101))
        history = yield ledger.group_history("Jedi", 500)
        assert [m.text for m in history] == [f"g{i}" for i in range(100)]
    finally:
        yield ledger.close()


@pytest.mark.usefixtures("postgres_class")
class PostgresStorageTests(NeedsPostgres, StorageContract, SynchronousTestCase):
    def make_database(self, directory):
        if not hasattr(self, "_url"):
            self._url = self.postgres.fresh_database()
        return PostgresDatabase(self._url).open()

    def test_records_the_database_has_beyond_a_file_are_appended_to_it(self):
        SQLiteStorageTests.test_records_the_database_has_beyond_a_file_are_appended_to_it(self)

    def test_newer_schema_refused_and_untouched(self):
        self.ledger.close()
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as db:
            db.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(PG_SCHEMA_VERSION + 1),))
        with self.assertRaises(DatabaseError) as raised:
            PostgresDatabase(self._url).open()
        self.assertIn("newer than this server's", str(raised.exception))

    def test_conversations_read_a_group_through_its_time_index(self):
        """TARGETS on PostgreSQL finds a group's newest message in the span through the index
        (log, time, seq) of group messages, not by sorting every message of the group."""
        import psycopg

        from chatproto.storage import model

        plans = []
        with psycopg.connect(self._url, autocommit=True) as db:
            db.execute("SET enable_seqscan = off")  # (a few rows: which indexes can serve, not the cheapest)

            def explain(query, args):
                if "log = %s" in query:
                    plans.append(" ".join(row[0] for row in db.execute("EXPLAIN " + query, args)))
                return db.execute(query, args).fetchall()

            # (what PostgresDatabase.conversations reads)
            model.read_conversations(explain, "%s", "Yoda", [("Jedi", 1)], 0.0, 9.0, 5, False)
        self.assertEqual(len(plans), 1)
        self.assertIn("messages_by_log_time", plans[0])
        self.assertNotIn("Sort", plans[0])

    def test_unreachable_database(self):
        url = self._url.rsplit(":", 1)[0] + ":1/nothing"
        with self.assertRaises(DatabaseError) as raised:
            PostgresDatabase(url).open()
        self.assertIn("cannot open the database", str(raised.exception))

    def test_seqs_allocated_by_the_database_for_two_writers(self):
        other = PostgresDatabase(self._url).open()
        self.addCleanup(other.close)
        ops = [("msg", "Jedi", None, T, 1.0, "Yoda", None, "a"), ("msg", "Jedi", None, T, 1.0, "Yoda", None, "b")]
        first = self.successResultOf(self.database.commit(ops))
        second = self.successResultOf(other.commit(ops[:1]))
        self.assertEqual([seq for seq, _pos in first + second], [1, 2, 3])
        self.assertLess(first[1][1], second[0][1])  # positions rise too
        # A given SEQ moves the counter on: the next allocated one follows it.
        self.successResultOf(other.commit([("msg", "Jedi", 10, T, 1.0, "Yoda", None, "c")]))
        self.assertEqual(self.successResultOf(self.database.commit(ops[:1])), [(11, first[1][1] + 3)])
        since = self.successResultOf(self.database.messages_since(first[0][1], ["nobody"], ["Jedi"]))
        self.assertEqual([m.seq for _pos, m in since], [2, 3, 10, 11])

    def test_checked_delete(self):
        self.successResultOf(self.database.commit([("msg", "", None, T, 1.0, "Yoda", "Hans", "x")]))
        self.assertEqual(self.successResultOf(self.database.delete_checked("", 1, "Hans")), "not-author")
        self.assertEqual(self.successResultOf(self.database.delete_checked("", 2, "Yoda")), "none")
        self.assertEqual(self.successResultOf(self.database.delete_checked("", 1, "Yoda")), "deleted")
        self.assertEqual(self.successResultOf(self.database.delete_checked("", 1, "Yoda")), "already")


@pytest.mark.usefixtures("postgres_class")
class ClusterLedgerTests(NeedsPostgres, SynchronousTestCase):
    """Two nodes' ledgers on one PostgreSQL: the database numbers, each node's files follow."""

    def setUp(self):
        from chatproto.cluster.ledger import ClusterLedger

        url = self.postgres.fresh_database()
        self.clock = task.Clock()
        self.dirs, self.ledgers = [], []
        for node in ("A", "B"):
            directory = tempfile.mkdtemp(prefix=f"chatproto-node{node}-")
            self.addCleanup(shutil.rmtree, directory, True)
            ledger = ClusterLedger(PostgresDatabase(url, node=node).open(), directory, self.clock)
            self.addCleanup(ledger.close)
            self.dirs.append(directory)
            self.ledgers.append(ledger)

    def read(self, i, name):
        with open(os.path.join(self.dirs[i], name)) as f:
            return f.read()

    def test_seqs_interleave_and_each_file_holds_its_own(self):
        a, b = self.ledgers
        first = a.append_private("Yoda", "Hans", T, 1.0, "a1")
        second = b.append_private("Hans", "Yoda", T, 2.0, "b1")
        third = a.append_private("Yoda", "Hans", T, 3.0, "a2")
        self.clock.advance(0)
        seqs = [self.successResultOf(d) for d in (first, second, third)]
        self.assertEqual(sorted(seqs), [1, 2, 3])
        seq_b = seqs[1]
        self.assertEqual(self.read(1, "messagelog.txt"), f"{seq_b}; {T}; Hans; b1\n")
        self.assertEqual([line.split("; ")[3] for line in self.read(0, "messagelog.txt").splitlines()],
                         ["a1", "a2"])
        history = self.successResultOf(b.private_history("Yoda", "Hans", 10))
        self.assertEqual(sorted(m.text for m in history), ["a1", "a2", "b1"])

    def test_the_second_creation_of_a_group_is_refused(self):
        a, b = self.ledgers
        won = a.save_group(GroupRecord("jedi", "Jedi", "Yoda", False, [["Yoda", True], ["luke", False]]))
        lost = b.save_group(GroupRecord("jedi", "JEDI", "Hans", False, [["Hans", True], ["leia", False]]))
        self.clock.advance(0)
        self.successResultOf(won)
        self.assertEqual(self.failureResultOf(lost).value.code, "group-exists")
        groups = a.database.groups()
        self.assertEqual(groups, [GroupRecord("jedi", "Jedi", "Yoda", False, [["Yoda", True], ["luke", False]])])

    def test_lockout_failures_are_counted_atomically_across_nodes(self):
        import threading

        a, b = (ledger.database for ledger in self.ledgers)  # no reactor: calls run on the caller's thread

        def fail(database):
            for _ in range(50):
                self.assertEqual(self.successResultOf(database.lockout_failure("Yoda", 100.0, 101, 10)),
                                 (0, False))

        threads = [threading.Thread(target=fail, args=(database,)) for database in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        import psycopg

        with psycopg.connect(a.url) as db:  # two nodes failing at once: every failure counted
            self.assertEqual(db.execute("SELECT failures FROM lockout").fetchall(), [(100,)])
        # The 101st blocks until now + 10, on every node; the count starts again.
        self.assertEqual(self.successResultOf(b.lockout_failure("Yoda", 100.0, 101, 10)), (110.0, False))
        self.assertEqual(a.blocks(105.0), [("Yoda", 110.0)])
        self.assertEqual(self.successResultOf(a.lockout_failure("Yoda", 100.0, 101, 10)),
                         (110.0, True))  # blocked already: no change, even at the same moment
        self.assertEqual(self.successResultOf(a.lockout_success("Yoda", 109.0)), 110.0)  # still blocked
        self.assertEqual(self.successResultOf(a.lockout_success("Yoda", 110.0)), 110.0)  # ended
        self.assertEqual(b.blocks(110.0), [])
        self.assertEqual(self.successResultOf(a.lockout_success("Hans", 0.0)), 0.0)  # never failed
        # ATTEMPTS 1: the first failure blocks.
        self.assertEqual(self.successResultOf(a.lockout_failure("leia", 200.0, 1, 10)), (210.0, False))

    def test_a_group_created_again_starts_after_its_old_log(self):
        a, b = self.ledgers
        self.clock.advance(0)
        record = GroupRecord("jedi", "Jedi", "Yoda", False, [["Yoda", True]])
        self.successResultOf(self._durable(a.save_group(record)))
        for text in ("old1", "old2"):
            self.successResultOf(self._durable(a.append_group("Jedi", "Yoda", T, 1.0, text)))
        self.successResultOf(self._durable(a.remove_group("jedi", "Jedi")))
        again = GroupRecord("jedi", "Jedi", "Hans", False, [["Hans", True]])
        seen = []
        b.on_first_seq = lambda key, first: seen.append((key, first))
        self.successResultOf(self._durable(b.save_group(again)))
        self.assertEqual(seen, [("jedi", 3)])
        self.assertEqual([g.first_seq for g in b.database.groups()], [3])
        self.assertEqual(self.successResultOf(self._durable(b.append_group("Jedi", "Hans", T, 2.0, "new"))), 3)
        history = self.successResultOf(b.group_history("Jedi", 10, None, 3))
        self.assertEqual([m.text for m in history], ["new"])

    def _durable(self, d):
        self.clock.advance(0)
        return d


@pytest.mark.usefixtures("postgres_class")
class PostgresMigrationTests(NeedsPostgres, SynchronousTestCase):
    def test_a_version_1_database_is_migrated(self):
        import psycopg

        from chatproto.storage.postgres import MIGRATIONS

        url = self.postgres.fresh_database()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(MIGRATIONS[0])
            db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
            db.execute("INSERT INTO messages (log, seq, timestamp, time, sender, text) "
                       "VALUES ('', 1, %s, 1.0, 'Yoda', 'kept')", (T,))
        database = PostgresDatabase(url).open()
        self.addCleanup(database.close)
        self.assertEqual(database.blocks(0.0), [])
        self.assertEqual(database.last_seq(""), 1)
        with psycopg.connect(url) as db:
            self.assertEqual(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0],
                             str(PG_SCHEMA_VERSION))



@pytest_twisted.inlineCallbacks
def test_password_rewrites_run_in_a_thread_one_at_a_time(tmp_path):
    """IAccounts.set_secret off the reactor thread: several at once all land, each durable when it fires."""
    import threading

    from twisted.internet import defer, reactor

    from chatproto.storage import credentials

    path = tmp_path / "credentials.txt"
    path.write_text("Yoda one\nHans two\nleia three\n")
    accounts = credentials.CredentialsFile(str(path), reactor).load()
    threads_seen = set()
    original = credentials.rewrite_credentials

    def watched(*args):
        threads_seen.add(threading.current_thread() is threading.main_thread())
        return original(*args)

    credentials.rewrite_credentials = watched
    try:
        yield defer.gatherResults([accounts.set_secret(name, f"new-{name}") for name in ("Yoda", "Hans", "leia")])
    finally:
        credentials.rewrite_credentials = original
    assert path.read_text() == "Yoda new-Yoda\nHans new-Hans\nleia new-leia\n"
    assert accounts.secret("Hans") == "new-Hans"
    assert threads_seen == {False}
    with pytest.raises(KeyError):
        yield accounts.set_secret("nobody", "x")
