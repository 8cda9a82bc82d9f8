"""
Search in storage: one contract run against the memory database (a scan),
SQLite (FTS5) and PostgreSQL (tsvector + GIN), through the ledger; then each
index's migration of an older database (the backlog, indexed once, in
chunks, going on after a restart).
"""

import os
import shutil
import sqlite3
import tempfile

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.search import SearchQuery, search_words
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase
from chatproto.storage.sqlite import SQLiteDatabase

from .services import NeedsPostgres

T = "01 Jun 2022 21:30:04"


def query(text, user, **kwargs):
    return SearchQuery(search_words(text), user, **kwargs)


class SearchContract:
    """What every database's search must do (the memory scan is the reference)."""

    def make_database(self, directory):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-search-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = task.Clock()
        self.ledger = Ledger(self.make_database(self.dir), self.dir, self.clock)
        self.addCleanup(lambda: self.ledger.close())
        self.time = 1000.0

    def private(self, sender, recipient, text):
        self.time += 1
        d = self.ledger.append_private(sender, recipient, T, self.time, text)
        self.clock.advance(0)
        return self.successResultOf(d)

    def group(self, log, sender, text):
        self.time += 1
        d = self.ledger.append_group(log, sender, T, self.time, text)
        self.clock.advance(0)
        return self.successResultOf(d)

    def found(self, q):
        d = self.ledger.search(q)
        self.clock.advance(0)
        return [(m.group or "", m.seq, m.sender, m.text) for m in self.successResultOf(d)]

    def reopen(self):
        self.ledger.close()
        self.ledger = Ledger(self.make_database(self.dir), self.dir, self.clock)

    def test_a_word_finds_words_it_begins_whatever_the_case_and_accents(self):
        self.private("Yoda", "Hans", "Into HYPERSPACE we go, Café Noir")
        self.private("Yoda", "Hans", "nothing here")
        expected = [("", 1, "Yoda", "Into HYPERSPACE we go, Café Noir")]
        for text in ("hyper", "Hyperspace", "cafe", "CAFÉ", "café noi", "noir hyp"):
            self.assertEqual(self.found(query(text, "Yoda")), expected, text)
            self.assertEqual(self.found(query(text, "Hans")), expected, text)
        for text in ("space", "hyperspaces", "cafe xyz", "afé"):
            self.assertEqual(self.found(query(text, "Yoda")), [], text)

    def test_accents_typed_find_plain_words_too(self):
        self.private("Yoda", "Hans", "plain cafe creme")
        self.assertEqual(len(self.found(query("Café crème", "Hans"))), 1)

    def test_another_users_private_conversation_is_never_found(self):
        self.private("Yoda", "Hans", "secret plans")
        self.assertEqual(self.found(query("secret", "leia")), [])
        self.assertEqual(self.found(query("secret", "leia", peer="Yoda")), [])

    def test_in_one_conversation(self):
        self.private("Yoda", "Hans", "plans one")
        self.private("leia", "Yoda", "plans two")
        self.private("Hans", "leia", "plans three")
        self.assertEqual([r[3] for r in self.found(query("plans", "Yoda"))], ["plans two", "plans one"])
        self.assertEqual([r[3] for r in self.found(query("plans", "Yoda", peer="leia"))], ["plans two"])
        self.assertEqual([r[3] for r in self.found(query("plans", "Yoda", peer="Hans"))], ["plans one"])

    def test_groups_only_those_given_and_from_their_first_seq(self):
        self.group("Jedi", "Yoda", "force one")
        self.group("Sith", "Vader", "force two")
        self.group("Jedi", "Luke", "force three")
        self.private("Yoda", "Hans", "force four")
        self.assertEqual(self.found(query("force", "Yoda", private=False, groups={"Jedi": 1})),
                         [("Jedi", 2, "Luke", "force three"), ("Jedi", 1, "Yoda", "force one")])
        self.assertEqual(self.found(query("force", "Yoda", private=False, groups={"Jedi": 2})),
                         [("Jedi", 2, "Luke", "force three")])
        self.assertEqual([r[3] for r in self.found(query("force", "Yoda", groups={"Sith": 1}))],
                         ["force four", "force two"])
        self.assertEqual(self.found(query("force", "Yoda", private=False)), [])

    def test_newest_first_and_the_limit(self):
        for i in range(12):
            self.group("Jedi", "Yoda", f"lightsaber {i}")
        found = self.found(query("light", "Yoda", private=False, groups={"Jedi": 1}, limit=5))
        self.assertEqual([r[1] for r in found], [12, 11, 10, 9, 8])

    def test_letters_that_unaccent_writes_as_punctuation_are_words(self):
        # PostgreSQL's unaccent turns some letters into quotes, parentheses or colons
        # (ʼ -> ', ⑴ -> (1), ː -> :): a search for them answers, as every other does,
        # and another user's message stays out of reach.
        self.private("Yoda", "Hans", "plans ⑴ donʼt")
        self.private("leia", "luke", "plans ⑴ donʼt secret")
        for text in ("⑴", "donʼt", "ʼ plans", "plans ʼ", "aː", "½", "⑴ ʼ ː ⒜ ⒈"):
            found = self.found(query(text, "Yoda"))
            self.assertNotIn("secret", " ".join(r[3] for r in found), text)
        self.assertEqual([r[3] for r in self.found(query("plans", "Yoda"))], ["plans ⑴ donʼt"])

    def test_a_deleted_message_is_never_found(self):
        self.private("Yoda", "Hans", "delete me please")
        seq = self.group("Jedi", "Yoda", "delete me too")
        self.private("Yoda", "Hans", "keep me please")
        for d in (self.ledger.delete_message(None, 1, "Yoda"), self.ledger.delete_message("Jedi", seq, "Yoda")):
            self.clock.advance(0)
            self.assertTrue(self.successResultOf(d))
        self.assertEqual(self.found(query("me", "Yoda", groups={"Jedi": 1})), [("", 2, "Yoda", "keep me please")])
        self.assertEqual(self.found(query("deleted", "Yoda", groups={"Jedi": 1})), [])
        self.reopen()
        self.assertEqual(self.found(query("delete", "Hans")), [])

    def test_query_syntax_in_user_text_is_only_words(self):
        self.private("Yoda", "Hans", 'he said "NEAR" OR not - text: a*b {scope} col:umn')
        self.private("Yoda", "Hans", "unrelated")
        hit = [("", 1, "Yoda", 'he said "NEAR" OR not - text: a*b {scope} col:umn')]
        for text in ['"NEAR', "NEAR(", "OR", 'text:', "a*b", "scope : col", "{scope}", "-not", "said*", "\"'",
                     "col:umn"]:
            self.assertEqual(self.found(query(text, "Yoda")), hit if search_words(text) else [], text)
        # Operators would widen these (NOT, OR, a column filter): as words they find nothing.
        for text in ["*", '"', "-", ":", "(", "NOT unrelated", "text : unrelated", "x OR unrelated",
                     "he AND said", "'; DROP TABLE messages; --"]:
            self.assertEqual(self.found(query(text, "Yoda")), [], text)
        self.assertEqual(self.found(query('"unrelated"*', "Yoda")), [("", 2, "Yoda", "unrelated")])

    def test_scope_tokens_are_not_words(self):
        self.private("Yoda", "Hans", "hello")
        token = "ps" + "Yoda".encode().hex()
        self.assertEqual(self.found(query(token, "Yoda")), [])
        self.assertEqual(self.found(query("g" + "Jedi".encode().hex(), "Yoda", groups={"Jedi": 1})), [])

    def test_from_before_after(self):
        self.group("Jedi", "Yoda", "tea one")  # time 1001
        self.group("Jedi", "Luke", "tea two")  # 1002
        self.private("Luke", "Yoda", "tea three")  # 1003
        self.assertEqual([r[3] for r in self.found(query("tea", "Yoda", groups={"Jedi": 1}, sender="Luke"))],
                         ["tea three", "tea two"])
        self.assertEqual([r[3] for r in self.found(query("tea", "Yoda", groups={"Jedi": 1}, before=1003))],
                         ["tea two", "tea one"])
        self.assertEqual([r[3] for r in self.found(query("tea", "Yoda", groups={"Jedi": 1}, after=1001.5))],
                         ["tea three", "tea two"])

    def test_unicode_words(self):
        self.private("Yoda", "Hans", "Привет мир, 東京 Ünïcödé")
        for text in ("привет", "МИР", "unicode", "東京"):
            self.assertEqual(len(self.found(query(text, "Hans"))), 1, text)

    def test_the_index_survives_a_restart_and_stays_current(self):
        self.private("Yoda", "Hans", "before restart")
        self.reopen()
        self.private("Yoda", "Hans", "after restart")
        self.assertEqual([r[3] for r in self.found(query("restart", "Yoda"))], ["after restart", "before restart"])


class MemorySearchTests(SearchContract, SynchronousTestCase):
    def make_database(self, directory):
        if not hasattr(self, "_memory"):
            self._memory = MemoryDatabase()
        return self._memory.open()


class SQLiteSearchTests(SearchContract, SynchronousTestCase):
    def make_database(self, directory):
        return SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()


class SQLiteIndexOnlySearchTests(SQLiteSearchTests):
    """The same contract with FTS5's own query always answering (no scan of the newest messages)."""

    def setUp(self):
        from chatproto.storage import sqlite

        self.patch(sqlite, "SCAN_PROBE", 1)
        self.patch(sqlite, "SCAN_PROBE_HITS", 2)
        super().setUp()


class SQLiteScanThenIndexTests(SynchronousTestCase):
    def test_a_rare_word_among_many_messages_is_found_by_the_index(self):
        from chatproto.storage import sqlite

        directory = tempfile.mkdtemp(prefix="chatproto-search-")
        self.addCleanup(shutil.rmtree, directory, True)
        db = SQLiteDatabase(os.path.join(directory, "x.db")).open()
        self.addCleanup(db._close)
        ops = [("msg", "", i, T, 100.0 + i, "Yoda", "Hans", f"filler {i}") for i in range(1, 600)]
        ops[10] = ("msg", "", 11, T, 111.0, "Yoda", "Hans", "the needle")
        db.commit_now(ops)
        self.successResultOf(db.search(query("x", "Hans")))  # a search first indexes what was stored
        calls = []
        execute = db._db.execute
        self.patch(db, "_db", type("Spy", (), {"execute": lambda _, sql, *a: (calls.append(sql), execute(sql, *a))[1]})())
        found = self.successResultOf(db.search(query("needle", "Hans")))
        self.assertEqual([m.seq for m in found], [11])
        self.assertEqual(len(calls), 2)  # the scan gave up after its probe; the index answered
        found = self.successResultOf(db.search(query("fill", "Hans", limit=3)))
        self.assertEqual([m.seq for m in found], [599, 598, 597])
        self.assertEqual(len(calls), 3)  # the newest messages had them: no second query
        self.assertLess(sqlite.SCAN_PROBE, 599)


class SQLiteIndexLaterTests(SynchronousTestCase):
    """
    SQLite's index is written in bulk, after the messages (docs/DESIGN.md,
    "Search"): a search or a deletion first indexes what waits, and a start
    after a crash indexes what the last server stored but left out.
    """

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-search-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "chatproto.db")

    def found(self, database, text, user="Hans"):
        return [m.seq for m in self.successResultOf(database.search(query(text, user)))]

    def test_a_message_deleted_in_the_batch_that_stored_it_is_never_found(self):
        database = SQLiteDatabase(self.path).open()
        database.commit_now([("msg", "", 1, T, 100.0, "Yoda", "Hans", "gone soon"), ("del", "", 1),
                             ("msg", "", 2, T, 101.0, "Yoda", "Hans", "gone nowhere")])
        self.assertEqual(self.found(database, "gone"), [2])
        database._close()
        database = SQLiteDatabase(self.path).open()
        self.addCleanup(database._close)
        self.assertEqual(self.found(database, "soon"), [])
        self.assertEqual(self.found(database, "gone"), [2])

    def test_after_a_crash_the_next_start_indexes_what_was_left_out(self):
        from twisted.logger import formatEvent, globalLogPublisher

        database = SQLiteDatabase(self.path).open()
        database.commit_now([("msg", "", i, T, 100.0 + i, "Yoda", "Hans", f"word{i} crash") for i in (1, 2, 3)])
        database.commit_now([("del", "", 2)])  # indexes 1-3 first, then takes 2 out
        database.commit_now([("msg", "", i, T, 100.0 + i, "Hans", "Yoda", f"word{i} crash") for i in (4, 5)])
        # The files as a crash now leaves them: every batch committed, 4 and 5 not indexed.
        crashed = os.path.join(self.dir, "crashed.db")
        for suffix in ("", "-wal"):
            shutil.copyfile(self.path + suffix, crashed + suffix)
        database._close()
        lines = []
        observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        try:
            database = SQLiteDatabase(crashed).open()
        finally:
            globalLogPublisher.removeObserver(observer)
        self.addCleanup(database._close)
        self.assertEqual(self.found(database, "crash"), [5, 4, 3, 1])
        self.assertEqual(self.found(database, "word4"), [4])
        self.assertEqual([line for line in lines if line.startswith("Search index")],
                         ["Search index: 2 messages indexed that the last server left out (it did not stop "
                          "cleanly)"])
        database.commit_now([("del", "", 4)])
        self.assertEqual(self.found(database, "crash"), [5, 3, 1])


@pytest_twisted.inlineCallbacks
def test_many_messages_are_indexed_in_the_background_and_found(tmp_path, monkeypatch):
    """Past INDEX_BATCH waiting messages, the worker indexes them after the batch, on its own."""
    from twisted.internet import reactor

    from chatproto.storage import sqlite

    monkeypatch.setattr(sqlite, "INDEX_BATCH", 3)
    ledger = Ledger(SQLiteDatabase(str(tmp_path / "chatproto.db"), reactor=reactor).open(), str(tmp_path), reactor)
    try:
        seqs = []
        for i in range(10):
            seqs.append((yield ledger.append_private("Hans", "Yoda", T, 5000.0 + i, f"many {i}")))
        assert (yield ledger.delete_message(None, seqs[4], "Hans"))
        found = yield ledger.search(query("many", "Yoda"))
        assert [m.text for m in found] == [f"many {i}" for i in (9, 8, 7, 6, 5, 3, 2, 1, 0)]
    finally:
        yield ledger.close()
    database = SQLiteDatabase(str(tmp_path / "chatproto.db")).open()
    try:
        assert len(database.search(query("many", "Hans")).result) == 9
    finally:
        database._close()


@pytest.mark.usefixtures("postgres_class")
class PostgresSearchTests(NeedsPostgres, SearchContract, SynchronousTestCase):
    def make_database(self, directory):
        from chatproto.storage.postgres import PostgresDatabase

        if not hasattr(self, "_url"):
            self._url = self.postgres.fresh_database()
        return PostgresDatabase(self._url).open()


class PostgresFrequentWordsSearchTests(PostgresSearchTests):
    """The same contract with every word frequent by PostgreSQL's statistics (a test database
    has none: every word is rare there, and the GIN index answers): one query a conversation."""

    def setUp(self):
        from chatproto.storage import postgres

        self.patch(postgres, "_shares", lambda db, words: {word: 0.5 for word in words})
        super().setUp()


class PostgresFrequentWordsSeldomTogetherSearchTests(PostgresSearchTests):
    """Frequent words seldom together (0.05 each): the GIN index's matches of one, the other checked."""

    def setUp(self):
        from chatproto.storage import postgres

        self.patch(postgres, "_shares", lambda db, words: {word: 0.05 for word in words})
        super().setUp()


def _old_sqlite(path, n):
    """A database as a server before the search index left it: version 1, C{n} messages."""
    from chatproto.storage.sqlite import MIGRATIONS

    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    db.executemany("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                   "VALUES ('', ?, ?, ?, 'Yoda', 'Hans', 'Hans\nYoda', ?)",
                   [(i, T, 100.0 + i, f"old word{i}") for i in range(1, n + 1)])
    db.execute("UPDATE messages SET text = '[deleted]' WHERE seq = 3")
    db.commit()
    db.close()


class SQLiteBacklogTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-search-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "chatproto.db")

    def test_older_messages_are_indexed_once_in_chunks_and_a_restart_goes_on(self):
        _old_sqlite(self.path, 10)
        database = SQLiteDatabase(self.path).open()
        self.assertEqual(self.successResultOf(database.search(query("old", "Yoda"))), [])
        self.assertEqual(database.index_some(4), 4)
        database._close()
        database = SQLiteDatabase(self.path).open()  # a restart: on from the 5th, not from scratch
        database.commit_now([("msg", "", 11, T, 500.0, "Hans", "Yoda", "old but live")])
        self.assertEqual(database.index_some(100), 7)  # 5..10 and 11 walked (11 indexed already)
        self.assertEqual(database.index_some(100), 0)
        self.assertEqual(database.index_some(100), 0)
        found = self.successResultOf(database.search(query("old", "Yoda")))
        self.assertEqual([m.seq for m in found], [11, 10, 9, 8, 7, 6, 5, 4, 2, 1])
        database.commit_now([("del", "", 9)])
        found = self.successResultOf(database.search(query("word", "Hans")))
        self.assertEqual([m.seq for m in found], [10, 8, 7, 6, 5, 4, 2, 1])
        database._close()

    def test_the_ledger_indexes_the_backlog_at_start(self):
        _old_sqlite(self.path, 1200)
        clock = task.Clock()
        with open(os.path.join(self.dir, "messagelog.txt"), "w") as f:
            f.writelines(f"{i}; {T}; Yoda; old word{i}\n" for i in range(1, 1201))
        ledger = Ledger(SQLiteDatabase(self.path).open(), self.dir, clock)
        self.addCleanup(ledger.close)
        d = ledger.search(query("word120", "Hans"))
        self.assertEqual([m.seq for m in self.successResultOf(d)], [1200, 120])


@pytest.mark.usefixtures("postgres_class")
class PostgresBacklogTests(NeedsPostgres, SynchronousTestCase):
    def test_older_messages_are_indexed_once_and_a_restart_goes_on(self):
        import psycopg

        from chatproto.storage.postgres import MIGRATIONS, PostgresDatabase

        url = self.postgres.fresh_database()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(MIGRATIONS[0])
            db.execute(MIGRATIONS[1])
            db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
            for i in range(1, 11):
                db.execute("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                           "VALUES ('', %s, %s, %s, 'Yoda', 'Hans', 'Hans\nYoda', %s)",
                           (i, T, 100.0 + i, "[deleted]" if i == 3 else f"old word{i}"))
        database = PostgresDatabase(url).open()
        self.assertEqual(self.successResultOf(database.search(query("old", "Yoda"))), [])
        self.assertEqual(database.index_some(4), 4)
        database._close()
        database = PostgresDatabase(url).open()
        self.addCleanup(database._close)
        self.assertEqual(database.index_some(100), 6)
        self.assertEqual(database.index_some(100), 0)
        found = self.successResultOf(database.search(query("old", "Yoda")))
        self.assertEqual([m.seq for m in found], [10, 9, 8, 7, 6, 5, 4, 2, 1])


@pytest_twisted.inlineCallbacks
def test_the_backlog_is_indexed_in_the_background_with_progress_in_the_log(tmp_path):
    from twisted.internet import reactor
    from twisted.logger import formatEvent, globalLogPublisher

    path = str(tmp_path / "chatproto.db")
    _old_sqlite(path, 2000)
    lines = []
    observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    ledger = Ledger(SQLiteDatabase(path, reactor=reactor).open(), str(tmp_path), reactor)
    try:
        # Meanwhile the server goes on: a message stored now is found at once.
        seq = yield ledger.append_private("Hans", "Yoda", T, 5000.0, "new word")
        found = yield ledger.search(query("new", "Yoda"))
        assert [m.seq for m in found] == [seq]
        yield ledger.indexed
        found = yield ledger.search(query("word", "Yoda", limit=3))
        assert [m.seq for m in found] == [seq, 2000, 1999]
    finally:
        globalLogPublisher.removeObserver(observer)
        yield ledger.close()
    progress = [line for line in lines if line.startswith("Search index")]
    assert progress == [f"Search index: {n} of 2000 stored messages indexed" for n in (500, 1000, 1500, 2000)] + [
        "Search index: built (2000 messages)"]
