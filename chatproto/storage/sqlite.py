"""
The embedded database: one SQLite file (WAL), written by one thread.

At start-up the file is opened, locked and migrated on the calling thread;
from then on every batch (one transaction per reactor turn) and every read
runs, in order, on one worker thread, so a read sees every batch before it
and the reactor never waits for the disk.
"""

import os
import sqlite3

from twisted.internet import defer

from ..core.events import Message
from .model import PRIVATE_LOG, DatabaseError, GroupRecord, message_from_row, peers_key
from .model import group_where, private_where, read_conversations, read_range
from .groupcommit import GroupCommit
from .worker import OneWorker

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
]
SCHEMA_VERSION = len(MIGRATIONS)


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
        self._partners: set = set()  # (sender, recipient) pairs known to be in the partners table

    # Start-up

    def open(self) -> "SQLiteDatabase":
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
        if version != SCHEMA_VERSION:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))

    def groups(self) -> list[GroupRecord]:
        groups = {}
        for key, name, owner, broadcast, first_seq in self._db.execute(
                "SELECT key, name, owner, broadcast, first_seq FROM groups"):
            groups[key] = GroupRecord(key, name, owner, bool(broadcast), [], first_seq)
        for key, username, joined in self._db.execute(
                "SELECT group_key, username, joined FROM members ORDER BY id"):
            groups[key].members.append([username, bool(joined)])
        return list(groups.values())

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
        db.execute("BEGIN")
        try:
            messages = [op for op in ops if op[0] == "msg"]
            if len(messages) == len(ops):  # the common batch: messages only
                db.executemany(_INSERT_MESSAGE, [_message_row(op) for op in messages])
            else:
                for op in ops:
                    _APPLY[op[0]](db, op)
            # Who wrote to whom: one row per pair, not per message (TARGETS, see MIGRATIONS).
            pairs = {(op[5], op[6]) for op in messages if op[6] is not None and op[1] == PRIVATE_LOG}
            new = pairs - self._partners
            if new:
                db.executemany(_INSERT_PARTNERS, [row for a, b in new for row in ((a, b), (b, a))])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if new:
            self._partners |= new

    def private_history(self, a, b, limit, before=None) -> defer.Deferred:
        return self._run(self._history, "peers", peers_key(a, b), limit, before)

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

    def private_range(self, a, b, after, before, limit, latest=True) -> defer.Deferred:
        return self._run(read_range, self._rows, "?", private_where(a, b, "?"), after, before, limit, latest)

    def group_range(self, log, after, before, limit, latest=True, since=1) -> defer.Deferred:
        return self._run(read_range, self._rows, "?", group_where(log, since, "?"), after, before, limit,
                         latest)

    def conversations(self, username, groups, after, before, limit, latest=False) -> defer.Deferred:
        return self._run(read_conversations, self._rows, "?", username, list(groups), after, before, limit,
                         latest, True)

    def _rows(self, query, args) -> list:
        return self._db.execute(query, args).fetchall()

    def backup(self, target_path: str) -> defer.Deferred:
        """SQLite's online backup into a new file, on the worker thread after every batch before it."""

        def copy():
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
            db, self._db = self._db, None
            db.close()


_INSERT_PARTNERS = "INSERT OR IGNORE INTO partners (username, peer) VALUES (?, ?)"
_INSERT_MESSAGE = ("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _message_row(op):
    _, log, seq, timestamp, time, sender, recipient, text = op
    peers = peers_key(sender, recipient) if log == PRIVATE_LOG and recipient is not None else None
    return (log, seq, timestamp, time, sender, recipient, peers, text)


_APPLY = {
    "msg": lambda db, op: db.execute(_INSERT_MESSAGE, _message_row(op)),
    "del": lambda db, op: db.execute(
        "UPDATE messages SET text = '[deleted]' WHERE log = ? AND seq = ?", op[1:]),
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
}
