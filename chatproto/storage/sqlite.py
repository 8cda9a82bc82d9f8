"""
The embedded database: one SQLite file (WAL), written by one thread.

At start-up the file is opened, locked and migrated on the calling thread;
from then on every batch (one transaction per reactor turn) and every read
runs, in order, on one worker thread, so a read sees every batch before it
and the reactor never waits for the disk.
"""

import dataclasses
import heapq
import json
import operator
import os
import sqlite3
import time as _time

from twisted.internet import defer
from twisted.logger import Logger

from ..core.events import Message
from .model import COLUMNS, PRIVATE_LOG, DatabaseError, GroupRecord, message_from_row, peers_key, unread_counts
from .model import group_where, private_where, read_conversations, read_message, read_range
from .groupcommit import GroupCommit
from ..core.search import fold
from .search import DELETED, fts5_match, fts5_scope_match, run_scope, scope_tokens, searchable, sql_filters
from .search import word_test
from .worker import OneWorker, in_chunks

log = Logger()

# Each entry migrates the schema from version i to i + 1; never edit one that shipped.
MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE messages (
        log TEXT NOT NULL,            -- '' for private messages, else the group's log name
        seq INTEGER NOT NULL,
        timestamp TEXT NOT NULL,
        time REAL NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT,               -- private messages
        peers TEXT,                   -- private: both names, sorted, for the conversation index
        text TEXT NOT NULL,
        PRIMARY KEY (log, seq)
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_peers ON messages (peers, seq) WHERE peers IS NOT NULL;
    CREATE TABLE groups (
        key TEXT PRIMARY KEY,         -- the name folded to lower case
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        broadcast INTEGER NOT NULL,
        first_seq INTEGER NOT NULL DEFAULT 1  -- its log's first SEQ that is this group's
    );
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,       -- membership order
        group_key TEXT NOT NULL REFERENCES groups (key) ON DELETE CASCADE,
        username TEXT NOT NULL,
        joined INTEGER NOT NULL,
        UNIQUE (group_key, username)
    );
    """,
    # CHATHISTORY: any range of a conversation in the order (time, seq), and each
    # user's conversations with activity in a span of time (TARGETS).
    """
    CREATE INDEX messages_by_peers_time ON messages (peers, time, seq) WHERE peers IS NOT NULL;
    CREATE INDEX messages_by_log_time ON messages (log, time, seq) WHERE peers IS NULL;
    CREATE INDEX messages_by_sender ON messages (sender, time) WHERE peers IS NOT NULL;
    CREATE INDEX messages_by_recipient ON messages (recipient, time) WHERE peers IS NOT NULL;
    """,
    # Search (see chatproto.storage.search): the words and scope tokens of every message
    # that can be found, in FTS5 without a copy of the text (contentless); its rowid is
    # the message's time in microseconds (made unique), so that newest first is rowid
    # order; search_rows names the message of each rowid, messages.search_id the other way.
    """
    CREATE VIRTUAL TABLE search_index USING fts5 (
        text, scope, content = '', tokenize = 'unicode61 remove_diacritics 2');
    CREATE TABLE search_rows (id INTEGER PRIMARY KEY, log TEXT NOT NULL, seq INTEGER NOT NULL);
    ALTER TABLE messages ADD COLUMN search_id INTEGER;
    """,
    """
    CREATE TABLE bans (               -- administrators' bans
        username TEXT PRIMARY KEY,
        until REAL NOT NULL           -- when it ends (epoch seconds), Inf: never
    );
    """,
    # Issue 25: a private message's row kept four indexes up to date beside its table (each
    # about 1.5 us of the server's CPU a message); the two that only served TARGETS (a user's
    # conversations) give way to one row per pair of users who ever wrote, written once per
    # pair and batch. TARGETS reads a user's partners, then each conversation's index.
    """
    DROP INDEX messages_by_sender;
    DROP INDEX messages_by_recipient;
    CREATE TABLE partners (
        username TEXT NOT NULL,
        peer TEXT NOT NULL,
        PRIMARY KEY (username, peer)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO partners (username, peer)
        SELECT sender, recipient FROM messages WHERE peers IS NOT NULL;
    INSERT OR IGNORE INTO partners (username, peer)
        SELECT recipient, sender FROM messages WHERE peers IS NOT NULL;
    """,
    # Issue 25: the search index without its per-document sizes (columnsize = 0: no row of
    # search_index_docsize per message; only ranking by bm25 reads them, and search orders
    # by rowid): 2.9 -> 2.1 us of CPU per message indexed. Built again from the messages,
    # in the background, as the backlog of the first search index was.
    """
    DROP TABLE search_index;
    CREATE VIRTUAL TABLE search_index USING fts5 (
        text, scope, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 2');
    DELETE FROM search_rows;
    UPDATE messages SET search_id = NULL WHERE search_id IS NOT NULL;
    """,
    # Read markers (docs/PROTOCOL.md, "Read markers"): per user and conversation (another
    # user's name, or '#' and a group's folded name) the SEQ of the newest message read.
    # Unread private messages are counted per partner (partners) in each conversation's index.
    """
    CREATE TABLE read_markers (
        username TEXT NOT NULL,
        conversation TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (username, conversation)
    ) WITHOUT ROWID;
    """,
    # Away (docs/PROTOCOL.md, "Away"): a user's away message, kept until the user clears it
    # (across logouts and restarts); no row: not away.
    """
    CREATE TABLE away (
        username TEXT PRIMARY KEY,
        text TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # Issue 25: one conversation index, not two. A private message's time never goes back
    # in the order of its SEQ (L{SQLiteDatabase._insert_messages} keeps it so; this step
    # first mends older rows, see _mend_private_times), so the order (time, seq) of
    # (peers, time, seq) is the order of SEQ too, and /history and /unread read it (from
    # the time of the SEQ they start at) instead of a second index: about 1.5-2 us less of
    # the server's CPU a private message.
    """
    DROP INDEX messages_by_peers;
    """,
    # Issue 26: one FTS5 document per conversation run, not per message. FTS5 costs about
    # 2.3 us of CPU a one-message document and 0.7 a message in documents of 32, so the
    # messages a bulk indexes (L{SQLiteDatabase._index_waiting}) are grouped by conversation
    # (a group's log; a private pair, both ways), up to RUN_MESSAGES a document. A document's
    # rowid is the highest search_id of its messages (their time in microseconds, made
    # unique), so newest first is still rowid order; search_rows keeps its log and the SEQs of
    # its messages (a JSON list, in order). detail = column: no word positions (a search
    # never asks for a phrase; a document's positions grow with its messages): 84 -> 78 MiB
    # at a million messages. Built again from the messages, in the background, as the
    # first index was (see RUNS_VERSION).
    """
    DROP TABLE search_index;
    CREATE VIRTUAL TABLE search_index USING fts5 (
        text, scope, content = '', columnsize = 0, detail = column, tokenize = 'unicode61 remove_diacritics 2');
    DROP TABLE search_rows;
    CREATE TABLE search_rows (id INTEGER PRIMARY KEY, log TEXT NOT NULL, seqs TEXT NOT NULL);
    UPDATE messages SET search_id = NULL WHERE search_id IS NOT NULL;
    """,
    # Issue 25, third round: a private message's conversation is a number, not the text of
    # both names: the row binds and the conversation index (conversation, time, seq) holds an
    # integer; conversations gives each pair of users (both names, sorted, as peers was) its
    # number, and the server keeps the pairs it has seen in memory
    # (L{SQLiteDatabase._conversation}). A pair's partners rows are written with its number,
    # once, instead of a set of the pairs of each batch. The text column goes (the table is
    # written again once, here).
    """
    CREATE TABLE conversations (id INTEGER PRIMARY KEY, peers TEXT NOT NULL UNIQUE);
    INSERT INTO conversations (peers) SELECT DISTINCT peers FROM messages WHERE peers IS NOT NULL ORDER BY peers;
    ALTER TABLE messages ADD COLUMN conversation INTEGER;
    UPDATE messages SET conversation = (SELECT id FROM conversations AS c WHERE c.peers = messages.peers)
        WHERE peers IS NOT NULL;
    DROP INDEX messages_by_peers_time;
    DROP INDEX messages_by_log_time;
    ALTER TABLE messages DROP COLUMN peers;
    CREATE INDEX messages_by_conversation ON messages (conversation, time, seq) WHERE conversation IS NOT NULL;
    CREATE INDEX messages_by_log_time ON messages (log, time, seq) WHERE conversation IS NULL;
    """,
]
SEARCH_VERSION = 3  # the migration that adds the search index
REINDEX_VERSION = 6  # the migration that makes it again (its backlog planned the same way)
RUNS_VERSION = 10  # the migration that makes it again, one document per conversation run
RUN_MESSAGES = 32  # messages of one conversation in one FTS5 document at most (0.72 us a message; 64: 0.68)
ONE_CONVERSATION_INDEX_VERSION = 9  # private times made monotonic, (peers, seq) dropped
INDEX_CHUNK = 500  # messages indexed per transaction while the backlog is built
INDEX_BATCH = 5000  # messages stored but not yet in the search index: at this many, indexed in one go
SCAN_PROBE, SCAN_PROBE_HITS = 128, 4  # a search's first messages checked: fewer hits, the index answers
SCAN_MOST = 1500  # messages a search checks itself at most before the index answers
SCAN_FREQUENT = 0.1  # a word in this share of the messages checked is left to the check, not the index
SCHEMA_VERSION = len(MIGRATIONS)
MIN_SQLITE = (3, 35, 0)  # the SQLite the migrations need (DROP COLUMN); FTS5 is older
CONVERSATIONS_KEPT = 100000  # pairs of users whose conversation number is kept in memory at most


class SQLiteDatabase:
    """
    @param path: the database file.
    @param reactor: for the worker thread's results; None runs every call
        on the calling thread (unit tests on a Clock).
    @param durable: flush to stable storage at every commit (C{--fsync}).
    """

    def __init__(self, path: str, reactor=None, durable: bool = False):
        self.path = path
        self.reactor = reactor
        self.durable = durable
        self._db = None
        self._worker = OneWorker(None, "")  # until open()
        self._group = None  # GroupCommit once the worker thread runs
        # (sender, recipient) -> its conversation's number, both ways, for the pairs seen
        # (worker thread only; see _conversation); the pairs a batch in progress numbered.
        self._conversations: dict = {}
        self._numbered: list = []
        # Messages stored but not in the search index yet (worker thread only), indexed in
        # bulk (see _index_waiting): (search_id, log, seq, conversation, sender, recipient, text).
        self._waiting: list = []
        self._index_queued = False  # whether _index_in_background is queued on the worker

    # Start-up

    def open(self) -> "SQLiteDatabase":
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            # (schema 11 drops a column: ALTER TABLE ... DROP COLUMN came with SQLite 3.35)
            raise DatabaseError(f"SQLite {sqlite3.sqlite_version} is too old for the database: chatproto needs "
                                f"{'.'.join(map(str, MIN_SQLITE))} or later (Python's sqlite3 module is built with it)")
        if not os.path.exists(self.path):
            # Private messages: only the server's user reads them (SQLite gives its -wal and
            # -shm files the database's mode).
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as e:
                raise DatabaseError(f"cannot open the database {self.path}: {e.strerror}") from None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0.1)
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open the database {self.path}: {e}") from None
        try:
            db.execute("PRAGMA foreign_keys = ON")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise DatabaseError(f"cannot open the database {self.path}: WAL mode refused ({mode})")
            db.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            # One server at a time: a second one fails here, before touching anything.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("BEGIN IMMEDIATE")
            try:
                self._migrate(db)
                # Still there: the last server stopped without indexing what waited (a crash).
                # (Written at every start and removed by a clean stop, so that a database of an
                # older server, which indexed every message as it stored it, is not scanned.)
                crashed = db.execute("SELECT 1 FROM meta WHERE key = 'search_waiting'").fetchone()
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('search_waiting', '1')")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            db.close()
            raise DatabaseError(f"cannot open the database {self.path}: {e}") from None
        except DatabaseError:
            db.close()
            raise
        self._db = db
        floor = int(self._meta("search_floor") or 0)
        last = db.execute("SELECT MAX(id) FROM search_rows").fetchone()[0] or 0
        if crashed:
            last = self._catch_up(last)
        self._last_search_id = max(floor - 1, last)  # the rowid the last message stored got
        # The time of the newest private message: the next one's is never below it.
        newest = _private_time_before(db, MAX_SEQ_BOUND)
        self._private_time = float("-inf") if newest is None else newest
        self._worker = OneWorker(self.reactor, "chatproto-sqlite")
        if self.reactor is not None:
            self._group = GroupCommit(self.reactor, lambda ops: self._worker.run(self._commit, ops))
        return self

    def _migrate(self, db) -> None:
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        version = 0
        if has_meta:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"the database {self.path} has schema version {version}, newer than this "
                f"server's {SCHEMA_VERSION}: run a newer chatproto")
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    db.execute(statement)
            if step + 1 in (SEARCH_VERSION, REINDEX_VERSION, RUNS_VERSION):
                self._plan_backlog(db)
            if step + 1 == ONE_CONVERSATION_INDEX_VERSION:
                _mend_private_times(db)
        if version != SCHEMA_VERSION:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))

    def _plan_backlog(self, db) -> None:
        """
        The messages stored before the search index existed are indexed in
        the background (L{start_indexing}), walking the messages in key
        order from a cursor kept in C{meta}: a restart goes on from there.
        They take rowids below C{search_floor}, every later message above.
        """
        total, newest = db.execute("SELECT COUNT(*), MAX(time) FROM messages").fetchone()
        if not total:
            return
        floor = max(int(_time.time() * 1e6), int(newest * 1e6) + 1)
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
            ("search_floor", str(floor)), ("search_backlog", json.dumps(["", 0])),
            ("search_backlog_total", str(total)), ("search_backlog_done", "0")])

    def _meta(self, key: str):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def groups(self) -> list[GroupRecord]:
        groups = {}
        for key, name, owner, broadcast, first_seq in self._db.execute(
                "SELECT key, name, owner, broadcast, first_seq FROM groups"):
            groups[key] = GroupRecord(key, name, owner, bool(broadcast), [], first_seq)
        for key, username, joined in self._db.execute(
                "SELECT group_key, username, joined FROM members ORDER BY id"):
            groups[key].members.append([username, bool(joined)])
        return list(groups.values())

    def bans(self) -> list:
        """Every ban: C{(username, until)} (start-up, synchronous)."""
        return self._db.execute("SELECT username, until FROM bans ORDER BY username").fetchall()

    def last_seq(self, log: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM messages WHERE log = ?", (log,)).fetchone()
        return row[0] or 0

    def messages_after(self, log: str, seq: int) -> list[Message]:
        return [message_from_row(row) for row in self._db.execute(
            "SELECT log, seq, timestamp, time, sender, recipient, text FROM messages "
            "WHERE log = ? AND seq > ? ORDER BY seq", (log, seq))]

    # Run time: everything in order on the worker thread

    def _run(self, function, *args) -> defer.Deferred:
        if self._group is not None:
            self._group.start_now()  # a read sees every batch committed before it was asked for
        return self._worker.run(function, *args)

    def commit(self, ops) -> defer.Deferred:
        if self._group is None:
            return self._worker.run(self._commit, ops)
        return self._group.commit(ops)

    def commit_now(self, ops) -> None:
        """Commit on the calling thread (start-up, before the worker takes over)."""
        self._commit(ops)

    def _commit(self, ops) -> None:
        db = self._db
        messages = [op for op in ops if op[0] == "msg"]
        if len(messages) != len(ops) and self._waiting and any(op[0] == "del" for op in ops):
            # A deletion takes a message's words out of the index: what waits goes in first.
            self._index_waiting()
        waiting = len(self._waiting)
        self._numbered = []
        db.execute("BEGIN")
        try:
            if len(messages) == len(ops):  # the common batch: messages only
                self._insert_messages(db, messages)
            else:  # in order, each run of messages between the other operations in one go
                run: list = []
                for op in ops:
                    if op[0] == "msg":
                        run.append(op)
                        continue
                    if run:
                        self._insert_messages(db, run)
                        run = []
                    if op[0] == "del":
                        self._delete(db, op[1], op[2])
                    else:
                        _APPLY[op[0]](db, op)
                if run:
                    self._insert_messages(db, run)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            del self._waiting[waiting:]  # never stored
            for pair in self._numbered:  # nor these numbers
                self._conversations.pop(pair, None)
            raise
        if len(self._waiting) >= INDEX_BATCH and not self._index_queued:
            # Next on this thread, after this batch's result is handed back: never part of its wait.
            self._index_queued = True
            if self.reactor is None:
                self._index_in_background()
            else:
                self.reactor.callFromThread(self._queue_indexing)

    def _queue_indexing(self) -> None:
        if self._worker.running:  # else the database is closing, which indexes what waits
            self._worker.run(self._index_in_background)

    def _index_in_background(self) -> None:
        self._index_queued = False
        if self._db is None:
            return
        try:
            self._index_waiting()
        except sqlite3.Error as e:  # the messages are committed all the same; the next batch retries
            log.error("Search index: {count} messages not indexed yet: {error}",
                      count=len(self._waiting), error=str(e))

    def _conversation(self, a: str, b: str, create: bool = False):
        """
        The number of the conversation between two users (either order), from
        memory or the conversations table; None if they never wrote to each
        other, unless C{create}: then it is numbered now (in the transaction in
        progress), and both users' partners rows are written (TARGETS, see
        MIGRATIONS: one row per pair and way, not per message).
        """
        known = self._conversations
        number = known.get((a, b))
        if number is not None:
            return number
        db = self._db
        peers = peers_key(a, b)
        row = db.execute("SELECT id FROM conversations WHERE peers = ?", (peers,)).fetchone()
        if row is not None:
            number = row[0]
        elif not create:
            return None
        else:
            number = db.execute("INSERT INTO conversations (peers) VALUES (?)", (peers,)).lastrowid
            db.executemany(_INSERT_PARTNERS, ((a, b), (b, a)))
            self._numbered += ((a, b), (b, a))
        if len(known) >= CONVERSATIONS_KEPT:  # (many users: memory stays bounded, the table answers)
            known.clear()
        known[a, b] = known[b, a] = number
        return number

    def _insert_messages(self, db, ops) -> None:
        """
        The messages and their index rows. The search index is written later,
        in bulk (L{_index_waiting}): FTS5 costs about 4.5 us a document in
        transactions of 50, under 2 in transactions of 5,000, and a message's
        row is what the durability promise is about. The rowid it will have in
        the index is its C{search_id}, given now, in time order (its document's
        rowid is the highest of its messages').
        """
        rows = []
        waiting = self._waiting
        last = self._last_search_id
        private_time = self._private_time
        conversations = self._conversations
        for op in ops:
            _, log_name, seq, timestamp, time, sender, recipient, text = op
            conversation = None
            if log_name == PRIVATE_LOG:
                # Never back in SEQ order (a clock set back): the conversation index's
                # order (time, seq) stays the order of SEQ (ONE_CONVERSATION_INDEX_VERSION).
                if time < private_time:
                    time = private_time
                private_time = time
                if recipient is not None:
                    conversation = conversations.get((sender, recipient)) or self._conversation(
                        sender, recipient, True)
            if searchable(log_name, recipient, text):  # (bench/experiments/noindex_server.py replaces it)
                search_id = int(time * 1e6)
                if search_id <= last:
                    search_id = last + 1
                last = search_id
                # (the row is what waits for the index too: its first items are what _documents reads)
                row = (search_id, log_name, seq, conversation, sender, recipient, text, timestamp, time)
                waiting.append(row)
            else:
                row = (None, log_name, seq, conversation, sender, recipient, text, timestamp, time)
            rows.append(row)
        db.executemany(_INSERT_MESSAGE, rows)
        self._last_search_id = last
        self._private_time = private_time

    def _index_waiting(self) -> None:
        """Put the messages stored but not indexed yet into the search index, in one
        transaction (on the worker thread: before a search, a deletion, at
        L{INDEX_BATCH} messages waiting, and when the database closes), one
        document per run of a conversation (L{_documents})."""
        waiting = self._waiting
        if not waiting:
            return
        rows, documents = _documents(waiting)
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO search_rows (id, log, seqs) VALUES (?, ?, ?)", rows)
            db.executemany("INSERT INTO search_index (rowid, text, scope) VALUES (?, ?, ?)", documents)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._waiting = []

    def _catch_up(self, indexed: int) -> int:
        """
        At start-up after a server stopped without indexing the messages that
        waited (a crash): index every message whose C{search_id} is above the
        index's highest rowid (one scan of the messages), in the documents the
        server would have made; return the new highest.
        """
        rows = self._db.execute(
            "SELECT search_id, log, seq, conversation, sender, recipient, text FROM messages "
            "WHERE search_id > ? ORDER BY search_id", (indexed,)).fetchall()
        if not rows:
            return indexed
        self._waiting = rows
        self._index_waiting()
        log.info("Search index: {count} messages indexed that the last server left out (it did not stop "
                 "cleanly)", count=len(rows))
        return rows[-1][0]

    def _delete(self, db, log_name, seq) -> None:
        """Mark a message deleted, and take its words out of the index: its document
        is made again without it (a contentless FTS5 table forgets a row only when
        told the values it was given, so the old one is read before the mark)."""
        row = db.execute("SELECT sender, recipient, text, search_id FROM messages WHERE log = ? AND seq = ?",
                         (log_name, seq)).fetchone()
        waiting = self._waiting
        if row is not None and row[3] is not None and waiting and row[3] >= waiting[0][0]:
            # Stored by this batch (what waited before it was indexed first): not indexed yet.
            del waiting[[r[0] for r in waiting].index(row[3])]
        elif row is not None and row[3] is not None and row[2] != DELETED:
            self._take_out(db, log_name, seq, row[0], row[1], row[3])
        db.execute("UPDATE messages SET text = '[deleted]', search_id = NULL WHERE log = ? AND seq = ?",
                   (log_name, seq))

    def _take_out(self, db, log_name, seq, sender, recipient, search_id) -> None:
        """
        The document of an indexed message, made again without it (or dropped).
        Its document is the first of its conversation at or after its
        C{search_id}: a conversation's documents hold runs of its messages
        that never overlap in time, and each has the rowid of its newest.
        """
        for document, seqs in db.execute(
                "SELECT r.id, r.seqs FROM search_index JOIN search_rows AS r ON r.id = search_index.rowid "
                "WHERE search_index MATCH ? AND search_index.rowid >= ? ORDER BY search_index.rowid",
                (fts5_scope_match(log_name, sender, recipient), search_id)):
            seqs = json.loads(seqs)
            if seq in seqs:
                break
        else:
            return  # not in the index (never expected: a message with a search_id is indexed or waits)
        old = _run_messages(db, log_name, seqs)
        db.execute("INSERT INTO search_index (search_index, rowid, text, scope) VALUES ('delete', ?, ?, ?)",
                   (document, *_run_document(log_name, old)))
        kept = [message for message in old if message[2] != seq]
        if not kept:
            db.execute("DELETE FROM search_rows WHERE id = ?", (document,))
            return
        db.execute("UPDATE search_rows SET seqs = ? WHERE id = ?", (_seqs_json(kept), document))
        db.execute("INSERT INTO search_index (rowid, text, scope) VALUES (?, ?, ?)",
                   (document, *_run_document(log_name, kept)))

    # Search

    def search(self, query) -> defer.Deferred:
        """The messages of a L{SearchQuery}, newest first."""
        if query.is_empty():
            return defer.succeed([])
        return self._run(self._search, query)

    def _search(self, query):
        """
        FTS5 answers a prefix query by merging the postings of every word with
        that prefix first, so a frequent word costs in proportion to how often
        it was ever written (a word in half of a million messages: 150 ms) and
        a rare one almost nothing. So the newest messages the searcher may read
        (the scope alone: read lazily, newest first) are checked here first,
        which finds a frequent word's results at once; when the first ones show
        the words are rare here, FTS5 answers instead, asked only for the words
        that were rare in what was checked (the others are checked here on
        each of its results).

        Either way the index gives documents (runs of a conversation, see
        RUNS_VERSION), newest first by their newest message: each of their
        messages is checked here, and the results are complete once the next
        document is older than the C{limit}-th newest found.
        """
        self._index_waiting()  # a message is found as soon as it is stored
        sql, args = self._search_sql(query)
        tests = [word_test(word) for word in query.words]
        hits = [0] * len(tests)
        newest = _Newest(query.limit)
        checked = 0
        for row in self._db.execute(sql, [fts5_match(query, words=False), *args]):
            if newest.complete(row[8]):
                return newest.messages()
            checked += 1
            text, matched = fold(row[6]), True
            for i, test in enumerate(tests):
                if test(text):
                    hits[i] += 1
                else:
                    matched = False
            if matched:
                newest.add(row)
            if newest.short() and (
                    (checked == SCAN_PROBE and len(newest.found) < SCAN_PROBE_HITS) or checked == SCAN_MOST):
                break
        else:
            return newest.messages()  # everything the searcher may read: checked
        rare = tuple(word for word, n in zip(query.words, hits) if n < checked * SCAN_FREQUENT)
        narrower = dataclasses.replace(query, words=rare or (min(zip(hits, query.words))[1],))
        newest = _Newest(query.limit)
        for row in self._db.execute(sql, [fts5_match(narrower), *args]):
            if newest.complete(row[8]):
                break
            text = fold(row[6])
            if all(test(text) for test in tests):
                newest.add(row)
        return newest.messages()

    def _search_sql(self, query) -> tuple[str, list]:
        """The query of the messages of the documents the MATCH expression (the first
        argument) gives, newest document first, within the query's time, groups and
        sender; and its arguments after the first. Each row: the message's columns,
        its search_id and its document's rowid."""
        sql = ("SELECT m.log, m.seq, m.timestamp, m.time, m.sender, m.recipient, m.text, m.search_id, r.id "
               "FROM search_index JOIN search_rows AS r ON r.id = search_index.rowid "
               "CROSS JOIN json_each(r.seqs) AS j "  # (CROSS: in this order, a message by its key)
               "CROSS JOIN messages AS m ON m.log = r.log AND m.seq = j.value "
               "WHERE search_index MATCH ? AND m.text <> '[deleted]'")
        args: list = []
        if query.after is not None:
            # A rowid is never below its messages' time in microseconds, except for the
            # backlog's (below search_floor): a bound for the index; the time is checked below.
            sql += " AND (search_index.rowid > ? OR search_index.rowid < ?)"
            args += [int(query.after * 1e6), int(self._meta("search_floor") or 0)]
        if query.sender is not None:  # a document may hold both sides of a conversation
            sql += " AND m.sender = ?"
            args.append(query.sender)
        if query.peer is not None:
            # A document of both ways of a conversation holds ps and pr of each side, so
            # "(psU AND prU)" (one's conversation with oneself) matches U's with anyone: the
            # messages themselves say whose conversation they are.
            sql += " AND (m.log <> '' OR m.conversation = ?)"  # (None: they never wrote, no row)
            args.append(self._conversation(query.user, query.peer))
        filters, filter_args = sql_filters(query, "?", "m.")
        sql += filters + " ORDER BY search_index.rowid DESC"
        args += filter_args
        return sql, args

    # The backlog: messages stored before the index existed

    def start_indexing(self) -> defer.Deferred:
        """Index the backlog in the background, one small transaction at a time on the
        worker thread, between the batches (without a reactor: at once). The Deferred
        fires when it is done (or failed: logged)."""
        if self._meta("search_backlog") is None:
            return defer.succeed(None)
        if self.reactor is None:
            while self.index_some(INDEX_CHUNK):
                pass
            return defer.succeed(None)
        return in_chunks(self._worker.run, self.index_some, INDEX_CHUNK, lambda: self._db is not None)

    def index_some(self, limit: int) -> int:
        """Index up to C{limit} messages of the backlog, in one transaction; return how
        many messages it walked (0: the backlog is done)."""
        db = self._db
        if db is None:
            return 0
        cursor = self._meta("search_backlog")
        if cursor is None:
            return 0
        after_log, after_seq = json.loads(cursor)
        rows = db.execute(
            "SELECT log, seq, time, conversation, sender, recipient, text, search_id FROM messages "
            "WHERE (log, seq) > (?, ?) ORDER BY log, seq LIMIT ?", (after_log, after_seq, limit)).fetchall()
        floor = int(self._meta("search_floor") or 0)
        done = int(self._meta("search_backlog_done") or 0) + len(rows)
        total = int(self._meta("search_backlog_total") or 0)
        # The same documents as the server makes (_documents): a search_id from the time
        # (below the floor), the runs of a conversation in this chunk; a document whose
        # rowid is taken moves down, and its messages with it (never above its rowid).
        waiting = [(min(int(time * 1e6), floor - 1), log_name, seq, conversation, sender, recipient, text)
                   for log_name, seq, time, conversation, sender, recipient, text, search_id in rows
                   if search_id is None and searchable(log_name, recipient, text)]
        waiting.sort(key=lambda message: message[0])
        db.execute("BEGIN")
        try:
            for log_name, run in _runs(waiting) or [(m[1], [m]) for m in waiting]:
                document = run[-1][0]
                while db.execute("SELECT 1 FROM search_rows WHERE id = ?", (document,)).fetchone():
                    document -= 1
                db.execute("INSERT INTO search_rows (id, log, seqs) VALUES (?, ?, ?)",
                           (document, log_name, _seqs_json(run)))
                db.execute("INSERT INTO search_index (rowid, text, scope) VALUES (?, ?, ?)",
                           (document, *_run_document(log_name, run)))
                db.executemany("UPDATE messages SET search_id = ? WHERE log = ? AND seq = ?",
                               [(min(m[0], document), log_name, m[2]) for m in run])
            if rows:
                db.executemany("UPDATE meta SET value = ? WHERE key = ?", [
                    (json.dumps(list(rows[-1][:2])), "search_backlog"), (str(done), "search_backlog_done")])
            else:
                db.execute("DELETE FROM meta WHERE key LIKE 'search_backlog%'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not rows:
            log.info("Search index: built ({total} messages)", total=total)
        elif total and done * 10 // total != (done - len(rows)) * 10 // total:
            log.info("Search index: {done} of {total} stored messages indexed", done=done, total=total)
        return len(rows)

    def private_history(self, a, b, limit, before=None) -> defer.Deferred:
        return self._run(self._private_history, a, b, limit, before)

    def _private_history(self, a, b, limit, before):
        """The conversation's last C{limit} messages before SEQ C{before}, through its one
        index (conversation, time, seq): from the time of the private record before C{before}."""
        conversation = self._conversation(a, b)
        if conversation is None:
            return []  # they never wrote to each other
        query = f"SELECT {COLUMNS} FROM messages WHERE log = '' AND conversation = ?"
        args: list = [conversation]
        if before is not None:
            time = _private_time_before(self._db, before)
            if time is None:
                return []  # no private message before it at all
            query += " AND (time, seq) < (?, ?)"
            args += [time, before]
        query += " ORDER BY time DESC, seq DESC LIMIT ?"
        args.append(limit)
        rows = self._db.execute(query, args).fetchall()
        rows.reverse()
        return [message_from_row(row) for row in rows]

    def group_history(self, log, limit, before=None, since=1) -> defer.Deferred:
        return self._run(self._history, "log", log, limit, before, since)

    def _history(self, column, value, limit, before, since=1):
        query = (f"SELECT log, seq, timestamp, time, sender, recipient, text FROM messages "
                 f"WHERE {column} = ?")
        args = [value]
        if since > 1:
            query += " AND seq >= ?"
            args.append(since)
        if before is not None:
            query += " AND seq < ?"
            args.append(before)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        rows = self._db.execute(query, args).fetchall()
        rows.reverse()
        return [message_from_row(row) for row in rows]

    def read_markers(self, username) -> defer.Deferred:
        return self._run(lambda: dict(self._rows(
            "SELECT conversation, seq FROM read_markers WHERE username = ?", (username,))))

    def away_messages(self) -> defer.Deferred:
        return self._run(lambda: dict(self._rows("SELECT username, text FROM away", ())))

    def unread_counts(self, username, groups) -> defer.Deferred:
        return self._run(unread_counts, self._rows, "?", username, list(groups),
                         "SELECT peer FROM partners WHERE username = ?",
                         lambda seq: _private_time_before(self._db, seq + 1), "conversation",
                         self._conversation)

    def message(self, log, seq) -> defer.Deferred:
        return self._run(read_message, self._rows, "?", log, seq)

    def private_range(self, a, b, after, before, limit, latest=True) -> defer.Deferred:
        # (the pair's number on the worker thread, after every batch before this read)
        return self._run(lambda: read_range(
            self._rows, "?", private_where(a, b, "?", "conversation", self._conversation), after, before,
            limit, latest))

    def group_range(self, log, after, before, limit, latest=True, since=1) -> defer.Deferred:
        return self._run(read_range, self._rows, "?", group_where(log, since, "?", "conversation"), after,
                         before, limit, latest)

    def conversations(self, username, groups, after, before, limit, latest=False) -> defer.Deferred:
        return self._run(read_conversations, self._rows, "?", username, list(groups), after, before, limit,
                         latest, True, "conversation", self._conversation)

    def _rows(self, query, args) -> list:
        return self._db.execute(query, args).fetchall()

    def backup(self, target_path: str) -> defer.Deferred:
        """SQLite's online backup into a new file, on the worker thread after every batch before it."""

        def copy():
            self._index_waiting()
            target = sqlite3.connect(target_path)
            try:
                self._db.backup(target)
            finally:
                target.close()

        return self._run(copy)

    def close(self) -> defer.Deferred:
        if self._group is not None:
            self._group.start_now()
        return self._worker.run_last(self._close)

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._index_waiting()
                self._db.execute("DELETE FROM meta WHERE key = 'search_waiting'")
            except sqlite3.Error as e:  # the next start indexes them (see _catch_up)
                log.error("Search index: {count} messages left for the next start: {error}",
                          count=len(self._waiting), error=str(e))
            db, self._db = self._db, None
            db.close()


class _Newest:
    """The C{limit} newest messages found (by search_id) of documents read newest first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.found: list = []
        self._heap: list = []  # the limit highest search_ids found, lowest first

    def add(self, row) -> None:
        self.found.append(row)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, row[7])
        elif row[7] > self._heap[0]:
            heapq.heapreplace(self._heap, row[7])

    def short(self) -> bool:
        return len(self._heap) < self.limit

    def complete(self, document: int) -> bool:
        """Whether a document with this rowid (none of its messages newer) and every later
        one can only hold messages older than the C{limit} found."""
        return len(self._heap) == self.limit and document < self._heap[0]

    def messages(self) -> list:
        # (messages indexed from the backlog may share a search_id: then the later time, the
        # higher SEQ first)
        self.found.sort(key=lambda row: (row[7], row[3], row[1]), reverse=True)
        return [message_from_row(row[:7]) for row in self.found[:self.limit]]


MAX_SEQ_BOUND = 1 << 63  # above every SEQ SQLite can hold


def _private_time_before(db, seq: int):
    """The time of the newest private record with a SEQ below C{seq} (None: there is none)."""
    row = db.execute("SELECT time FROM messages WHERE log = '' AND seq < ? ORDER BY seq DESC LIMIT 1",
                     (min(seq, MAX_SEQ_BOUND - 1),)).fetchone()
    return None if row is None else row[0]


def _mend_private_times(db) -> None:
    """
    Private messages stored before ONE_CONVERSATION_INDEX_VERSION may have a
    time below an earlier SEQ's (the clock was set back): each such time is
    raised to the highest before it, once, in one pass in SEQ order.
    """
    highest, mended = float("-inf"), []
    for seq, time in db.execute("SELECT seq, time FROM messages WHERE log = '' ORDER BY seq"):
        if time < highest:
            mended.append((highest, seq))
        else:
            highest = time
    if mended:
        db.executemany("UPDATE messages SET time = ? WHERE log = '' AND seq = ?", mended)


def _documents(waiting) -> tuple[list, list]:
    """
    The search_rows rows and FTS5 documents of messages to index, given as
    C{(search_id, log, seq, conversation, sender, recipient, text)} in search_id
    order: one document per run of up to L{RUN_MESSAGES} messages of one
    conversation (a group's log, or a private pair both ways), its rowid the
    search_id of its newest message.
    """
    runs = _runs(waiting)
    if runs is None:  # every message alone in its conversation: its own document, in order
        # (made as executemany binds them: no row kept, so none for the garbage collector to
        # count and traverse)
        return ((m[0], m[1], f"[{m[2]}]") for m in waiting), \
            ((m[0], m[6], scope_tokens(m[1], m[4], m[5])) for m in waiting)
    rows, documents = [], []
    for log_name, run in runs:
        newest = run[-1]
        if len(run) == 1:  # the same values as below, without the steps (many conversations: 1.7 -> 0.9 us)
            rows.append((newest[0], log_name, f"[{newest[2]}]"))
            documents.append((newest[0], newest[6], scope_tokens(log_name, newest[4], newest[5])))
        else:
            rows.append((newest[0], log_name, _seqs_json(run)))
            documents.append((newest[0], *_run_document(log_name, run)))
    return rows, documents


def _runs(waiting) -> list | None:
    """The runs of L{_documents}: C{(log, messages)}, each a list of up to RUN_MESSAGES of
    C{waiting}'s entries of one conversation, in order; the runs in the order of their
    newest message. (FTS5 writes out what it holds in memory whenever a rowid is below the
    last one it was given: out of order, a bulk cost as much as a document a message.)
    None: every message is alone in its conversation, so each is a run of its own and
    they are in order already (issue 26: the steps below cost 0.5 us a message then)."""
    sample = waiting[::len(waiting) // 64 or 1]
    if len(set(map(_PEERS, sample))) == len(sample) and len(set(map(_PEERS, waiting))) == len(waiting):
        # Private messages each between another pair (a group's messages have no conversation: two
        # of them fail this), seen at the cost of a set of strings; first of 64 spread over
        # the bulk, which fails at once unless the bulk has thousands of conversations.
        # A bulk of one message each with groups among them is told apart below.
        return None
    conversations: dict = {}
    for message in waiting:
        key = message[3] or message[1]  # a private pair's number, a group's log name (never '')
        run = conversations.get(key)
        if run is None:
            conversations[key] = [message]
        else:
            run.append(message)
    if len(conversations) == len(waiting):
        return None
    runs = []
    for messages in conversations.values():
        log_name = messages[0][1]
        if len(messages) <= RUN_MESSAGES:
            runs.append((messages[-1][0], log_name, messages))  # (sorted by the unique search_id first)
        else:
            for start in range(0, len(messages), RUN_MESSAGES):
                run = messages[start:start + RUN_MESSAGES]
                runs.append((run[-1][0], log_name, run))
    runs.sort()
    return [(log_name, run) for _, log_name, run in runs]


def _run_document(log_name, run) -> tuple[str, str]:
    """The text and scope columns of a run's document, from its messages (as
    L{_documents} takes them) in order: the texts a line each, and the scope tokens
    of its messages (the same values again take it out of the contentless index)."""
    return "\n".join([m[6] for m in run]), run_scope(log_name, list(map(_SENDER_RECIPIENT, run)))


_SENDER_RECIPIENT = operator.itemgetter(4, 5)
_PEERS = operator.itemgetter(3)


def _seqs_json(run) -> str:
    return "[" + ",".join([str(m[2]) for m in run]) + "]"


def _run_messages(db, log_name, seqs) -> list:
    """A document's messages, as L{_documents} takes them, in its order."""
    rows = {row[2]: row for row in db.execute(
        f"SELECT search_id, log, seq, conversation, sender, recipient, text FROM messages "
        f"WHERE log = ? AND seq IN "
        f"({','.join('?' * len(seqs))})", (log_name, *seqs))}
    return [rows[seq] for seq in seqs]


_INSERT_PARTNERS = "INSERT OR IGNORE INTO partners (username, peer) VALUES (?, ?)"
_INSERT_MESSAGE = ("INSERT INTO messages (search_id, log, seq, conversation, sender, recipient, text, "
                   "timestamp, time) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


_APPLY = {
    "group": lambda db, op: db.execute(
        "INSERT INTO groups (key, name, owner, broadcast, first_seq) VALUES (?, ?, ?, ?, ?)",
        (op[1], op[2], op[3], int(op[4]), op[5] if len(op) > 5 else 1)),
    "member": lambda db, op: db.execute(
        "INSERT INTO members (group_key, username, joined) VALUES (?, ?, ?) "
        "ON CONFLICT (group_key, username) DO UPDATE SET joined = excluded.joined",
        (op[1], op[2], int(op[3]))),
    "unmember": lambda db, op: db.execute(
        "DELETE FROM members WHERE group_key = ? AND username = ?", op[1:]),
    "ungroup": lambda db, op: db.execute("DELETE FROM groups WHERE key = ?", op[1:]),
    "ban": lambda db, op: db.execute(
        "INSERT INTO bans (username, until) VALUES (?, ?) "
        "ON CONFLICT (username) DO UPDATE SET until = excluded.until", op[1:]),
    "unban": lambda db, op: db.execute("DELETE FROM bans WHERE username = ?", op[1:]),
    "mark": lambda db, op: db.execute(
        "INSERT INTO read_markers (username, conversation, seq) VALUES (?, ?, ?) "
        "ON CONFLICT (username, conversation) DO UPDATE SET seq = MAX(seq, excluded.seq)", op[1:]),
    "away": lambda db, op: db.execute("DELETE FROM away WHERE username = ?", op[1:2]) if op[2] is None
    else db.execute("INSERT INTO away (username, text) VALUES (?, ?) "
                    "ON CONFLICT (username) DO UPDATE SET text = excluded.text", op[1:]),
}
