"""
The shared database: PostgreSQL through psycopg 3.

At start-up the schema is migrated on the calling thread with a plain
connection (under an advisory lock, so that nodes starting together migrate
once). From then on every batch (one transaction per reactor turn) and every
read runs, in order, on one worker thread with its own connection; a
connection that broke is opened again for the next call, so the service
resumes by itself once PostgreSQL is back (the calls in between fail, and
their changes are reported C{not-saved}: nothing is acknowledged that was
not committed).

SEQs: a batch's messages may come with their SEQ (one server: the text logs
number them) or without (a cluster node: C{None}); then PostgreSQL gives
them, from one counter row per log updated inside the batch's transaction,
so several nodes appending to the same log never take the same SEQ. The
counter follows given SEQs too. Every message also gets a global position
(C{pos}), which cluster nodes catch up by.
"""

import dataclasses
import math
import select
import threading
import time as _time

from twisted.internet import defer
from twisted.logger import Logger

from ..core.events import Message
from ..core.search import search_words
from .model import PRIVATE_LOG, DatabaseError, GroupRecord, message_from_row, peers_key, unread_counts
from .model import group_where, private_where, read_conversations, read_message, read_range
from .search import sql_filters, tsquery_text, tsquery_words
from .worker import OneWorker, in_chunks

log = Logger()

try:
    import psycopg
except ImportError:  # pragma: no cover - an optional dependency
    psycopg = None

# Each entry migrates the schema from version i to i + 1; never edit one that shipped.
MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE messages (
        log TEXT NOT NULL,            -- '' for private messages, else the group's log name
        seq BIGINT NOT NULL,
        pos BIGINT GENERATED ALWAYS AS IDENTITY,  -- global position, for catching up
        timestamp TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT,               -- private messages
        peers TEXT,                   -- private: both names, sorted, for the conversation index
        text TEXT NOT NULL,
        node TEXT,                    -- the cluster node that committed it (NULL: one server)
        PRIMARY KEY (log, seq)
    );
    CREATE INDEX messages_by_peers ON messages (peers, seq) WHERE peers IS NOT NULL;
    CREATE UNIQUE INDEX messages_by_pos ON messages (pos);
    CREATE TABLE log_counters (log TEXT PRIMARY KEY, last BIGINT NOT NULL);
    CREATE TABLE groups (
        key TEXT PRIMARY KEY,         -- the name folded to lower case
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        broadcast BOOLEAN NOT NULL,
        first_seq BIGINT NOT NULL DEFAULT 1  -- its log's first SEQ that is this group's
    );
    CREATE TABLE members (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- membership order
        group_key TEXT NOT NULL REFERENCES groups (key) ON DELETE CASCADE,
        username TEXT NOT NULL,
        joined BOOLEAN NOT NULL,
        UNIQUE (group_key, username)
    );
    """,
    """
    CREATE TABLE blocks (             -- accounts blocked by the lockout, until when (epoch seconds)
        username TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL
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
    lambda db: _add_search(db),
    """
    CREATE TABLE bans (               -- administrators' bans: until when (epoch seconds; 'Infinity')
        username TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL
    );
    """,
    """
    CREATE TABLE lockout (            -- the lockout of every node: one row per account that failed
        username TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,    -- consecutive failed logins since the last success or block
        until DOUBLE PRECISION NOT NULL  -- the end of its block (epoch seconds); past: not blocked
    );
    INSERT INTO lockout (username, failures, until) SELECT username, 0, until FROM blocks;
    DROP TABLE blocks;
    """,
    # Read markers (docs/PROTOCOL.md, "Read markers"): per user and conversation (another
    # user's name, or '#' and a group's folded name) the SEQ of the newest message read.
    # Unread private messages are counted per partner (partners) in each conversation's index.
    """
    CREATE TABLE read_markers (
        username TEXT NOT NULL,
        conversation TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (username, conversation)
    );
    """,
    # Away (docs/PROTOCOL.md, "Away"): a user's away message, kept until the user clears it
    # (across logouts and restarts, on every node); no row: not away.
    """
    CREATE TABLE away (
        username TEXT PRIMARY KEY,
        text TEXT NOT NULL
    );
    """,
]
SEARCH_VERSION = 4  # the migration that adds the search index
INDEX_CHUNK = 2000  # positions walked per transaction while the backlog is indexed
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x63686174  # pg_advisory_xact_lock key: "chat"

_COLUMNS = "log, seq, timestamp, time, sender, recipient, text"


def connection_info(url: str) -> str:
    """The URL without any password, for logs and errors."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, minus nothing
        return url
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(info.items()))


class PostgresDatabase:
    """
    @param url: C{postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME}.
    @param reactor: for the worker thread's results; None runs every call on
        the calling thread (unit tests on a Clock).
    @param durable: C{synchronous_commit} on (the default of PostgreSQL);
        without it commits do not wait for the WAL flush (C{--fsync} off).
    """

    def __init__(self, url: str, reactor=None, durable: bool = False, node: str | None = None):
        if psycopg is None:
            raise DatabaseError("--database postgresql://... needs psycopg 3: pip install 'psycopg[binary]'")
        self.url = url
        self.reactor = reactor
        self.durable = durable
        self.node = node  # a cluster node's id, kept with each message it commits
        self._db = None
        self._worker = OneWorker(None, "")  # until open()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return connection_info(self.url)

    def _connect(self):
        db = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        if not self.durable:
            db.execute("SET synchronous_commit = off")
        return db

    # Start-up

    def open(self) -> "PostgresDatabase":
        try:
            db = self._connect()
        except psycopg.Error as e:
            raise DatabaseError(f"cannot open the database {self.name}: {_why(e)}") from None
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                self._migrate(db)
        except psycopg.Error as e:
            db.close()
            raise DatabaseError(f"cannot open the database {self.name}: {_why(e)}") from None
        except DatabaseError:
            db.close()
            raise
        self._db = db
        self._worker = OneWorker(self.reactor, "chatproto-postgres")
        return self

    def _migrate(self, db) -> None:
        has_meta = db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
        version = 0
        if has_meta:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"the database {self.name} has schema version {version}, newer than this "
                f"server's {SCHEMA_VERSION}: run a newer chatproto")
        for step in range(version, SCHEMA_VERSION):
            if callable(MIGRATIONS[step]):
                MIGRATIONS[step](db)
            else:
                db.execute(MIGRATIONS[step])
        if version != SCHEMA_VERSION:
            db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    def groups(self) -> list[GroupRecord]:
        return self._groups(self._connection())

    def _groups(self, db, key: str | None = None) -> list[GroupRecord]:
        groups = {}
        where, args = ("", ()) if key is None else (" WHERE key = %s", (key,))
        for key, name, owner, broadcast, first_seq in db.execute(
                "SELECT key, name, owner, broadcast, first_seq FROM groups" + where, args):
            groups[key] = GroupRecord(key, name, owner, bool(broadcast), [], first_seq)
        where = where.replace("key", "group_key")
        for key, username, joined in db.execute(
                "SELECT group_key, username, joined FROM members" + where + " ORDER BY id", args):
            if key in groups:
                groups[key].members.append([username, bool(joined)])
        return list(groups.values())

    def bans(self) -> list:
        """Every ban: C{(username, until)} (start-up, synchronous)."""
        return self._guarded(lambda db: db.execute("SELECT username, until FROM bans ORDER BY username").fetchall())

    def last_seq(self, log: str) -> int:
        row = self._connection().execute("SELECT MAX(seq) FROM messages WHERE log = %s", (log,)).fetchone()
        return row[0] or 0

    def messages_after(self, log: str, seq: int) -> list[Message]:
        return [message_from_row(row) for row in self._connection().execute(
            f"SELECT {_COLUMNS} FROM messages WHERE log = %s AND seq > %s ORDER BY seq", (log, seq))]

    # Run time: everything in order on the worker thread

    def _connection(self):
        if self._db is None or self._db.closed or self._db.broken:
            if self._db is not None:
                self._db.close()
                self._db = None
            try:
                self._db = self._connect()
            except psycopg.Error as e:
                raise DatabaseError(f"cannot reach the database {self.name}: {_why(e)}") from None
        return self._db

    def _guarded(self, function, *args):
        with self._lock:
            if self._db is not None and _hung_up(self._db):
                # PostgreSQL closed this idle connection (a restart, an administrator):
                # open a new one instead of failing a user's command with it.
                self._db.close()
                self._db = None
            try:
                return function(self._connection(), *args)
            except psycopg.OperationalError as e:
                # The connection may be gone: open a new one next time.
                if self._db is not None and (self._db.closed or self._db.broken):
                    self._db.close()
                    self._db = None
                raise DatabaseError(f"the database {self.name}: {_why(e)}") from None

    def _run(self, function, *args) -> defer.Deferred:
        return self._worker.run(self._guarded, function, *args)

    def commit(self, ops) -> defer.Deferred:
        """Commit one batch; fire with the C{(seq, pos)} of each of its messages, in order."""
        return self._run(_commit, ops, self.node)

    def commit_now(self, ops) -> list:
        """Commit on the calling thread (start-up, before the worker takes over)."""
        return self._guarded(_commit, ops, self.node)

    def private_history(self, a, b, limit, before=None) -> defer.Deferred:
        return self._run(_history, "peers", peers_key(a, b), limit, before)

    def group_history(self, log, limit, before=None, since=1) -> defer.Deferred:
        return self._run(_history, "log", log, limit, before, since)

    def read_markers(self, username) -> defer.Deferred:
        return self._run(lambda db: dict(db.execute(
            "SELECT conversation, seq FROM read_markers WHERE username = %s", (username,)).fetchall()))

    def away_messages(self) -> defer.Deferred:
        return self._run(lambda db: dict(db.execute("SELECT username, text FROM away").fetchall()))

    def unread_counts(self, username, groups) -> defer.Deferred:
        return self._run(_unread_counts, username, list(groups))

    def message(self, log, seq) -> defer.Deferred:
        return self._run(lambda db: read_message(_rows_of(db), "%s", log, seq))

    def private_range(self, a, b, after, before, limit, latest=True) -> defer.Deferred:
        return self._run(_range, private_where(a, b, "%s"), after, before, limit, latest)

    def group_range(self, log, after, before, limit, latest=True, since=1) -> defer.Deferred:
        return self._run(_range, group_where(log, since, "%s"), after, before, limit, latest)

    def conversations(self, username, groups, after, before, limit, latest=False) -> defer.Deferred:
        return self._run(lambda db: read_conversations(_rows_of(db), "%s", username, list(groups), after,
                                                       before, limit, latest))

    def search(self, query) -> defer.Deferred:
        """The messages of a L{SearchQuery}, newest first."""
        if query.is_empty():
            return defer.succeed([])
        return self._run(_search, query)

    def start_indexing(self) -> defer.Deferred:
        """Index the backlog (messages stored before the index existed) in the background,
        one small transaction at a time on the worker thread (without a reactor: at once);
        the Deferred fires when it is done. Every node of a cluster may take part: a
        message is never indexed twice."""
        if self.reactor is None:
            while self.index_some(INDEX_CHUNK):
                pass
            return defer.succeed(None)
        return in_chunks(self._run, _index_some, INDEX_CHUNK, lambda: self._worker.running)

    def index_some(self, limit: int) -> int:
        """Walk up to C{limit} positions of the backlog, in one transaction; return how
        many were walked (0: the backlog is done)."""
        return self._guarded(_index_some, limit)

    def reload_groups(self) -> defer.Deferred:
        """Every group, read again (a cluster node that may have missed changes)."""
        return self._run(lambda db: self._groups(db))

    def group(self, key: str) -> defer.Deferred:
        """The group C{key} (folded name) as a L{GroupRecord}, or None (a cluster node's look-up)."""
        return self._run(lambda db: (self._groups(db, key) or [None])[0])

    def delete_checked(self, log, seq, author) -> defer.Deferred:
        """
        Mark a message deleted if C{author} wrote it, in its own transaction;
        fire with C{"deleted"}, C{"already"}, C{"none"} or C{"not-author"}.
        """
        return self._run(_delete_checked, log, seq, author)

    def messages_since(self, pos: int, usernames, logs, limit: int = 10000) -> defer.Deferred:
        """
        Messages after position C{pos} (oldest first) to any of C{usernames}
        (private) or in any of C{logs} (groups): what a node cut off from the
        bus missed. Fires with a list of C{(pos, Message)}.
        """
        return self._run(_messages_since, pos, list(usernames), list(logs), limit, self.node)

    def blocks(self, now: float) -> list:
        """The accounts blocked at C{now}: C{(username, until)} (start-up, synchronous)."""
        return self._guarded(lambda db: db.execute(
            "SELECT username, until FROM lockout WHERE until > %s ORDER BY username", (now,)).fetchall())

    def lockout_failure(self, username: str, now: float, attempts: int, block_seconds: float) -> defer.Deferred:
        """
        Count one failed login of C{username}, in one atomic statement (two
        nodes failing the same account at once count two); fire with the end
        of its block (epoch seconds; C{<= now}: not blocked) and whether it
        was blocked before. A failure during a block changes nothing; the
        ATTEMPTS-th blocks it until C{now + block_seconds} and starts the
        count again.
        """
        return self._run(_lockout_failure, username, now, attempts, now + block_seconds)

    def lockout_success(self, username: str, now: float) -> defer.Deferred:
        """A correct password: the count starts again unless blocked; fire with the block's end (or 0)."""
        return self._run(_lockout_success, username, now)


    def last_pos(self) -> defer.Deferred:
        return self._run(lambda db: db.execute("SELECT COALESCE(MAX(pos), 0) FROM messages").fetchone()[0])

    def close(self) -> defer.Deferred:
        return self._worker.run_last(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                db.close()

    def __repr__(self):
        return f"<PostgresDatabase {self.name}>"


def _hung_up(db) -> bool:
    """Whether the server wrote to a connection with no query outstanding: only a
    goodbye (an error before closing, or the end of the stream). One poll, no round trip."""
    try:
        readable, _, _ = select.select([db.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _why(error) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


_INSERT_MESSAGE = ("INSERT INTO messages (log, seq, timestamp, time, sender, recipient, peers, text, node) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq, pos")


class Committed(list):
    """The C{(seq, pos)} of each message of a batch, in order; C{refused_groups}: the keys of
    the groups it created that existed already (another node created them first)."""

    refused_groups: set
    first_seqs: dict  # group key -> the first SEQ of its log that is this group's (given by the database)


def _commit(db, ops, node=None) -> list:
    results = Committed()
    results.refused_groups = refused = set()
    results.first_seqs = first_seqs = {}
    with db.transaction():
        cursor = db.cursor()
        # SEQs to allocate: one counter update per log in the batch.
        wanted: dict[str, int] = {}
        for op in ops:
            if op[0] == "msg" and op[2] is None:
                wanted[op[1]] = wanted.get(op[1], 0) + 1
        next_seq = {}
        for log_name in sorted(wanted):  # a fixed order: no deadlock between nodes
            n = wanted[log_name]
            last = cursor.execute(
                "INSERT INTO log_counters AS c (log, last) VALUES (%s, "
                "  COALESCE((SELECT MAX(seq) FROM messages WHERE log = %s), 0) + %s) "
                "ON CONFLICT (log) DO UPDATE SET last = c.last + %s RETURNING last",
                (log_name, log_name, n, n)).fetchone()[0]
            next_seq[log_name] = last - n + 1
        given: dict[str, int] = {}
        for op in ops:
            kind = op[0]
            if kind == "msg":
                _, log_name, seq, timestamp, time, sender, recipient, text = op
                if seq is None:
                    seq = next_seq[log_name]
                    next_seq[log_name] = seq + 1
                else:
                    given[log_name] = max(given.get(log_name, 0), seq)
                private = log_name == PRIVATE_LOG and recipient is not None
                peers = peers_key(sender, recipient) if private else None
                row = cursor.execute(_INSERT_MESSAGE, (log_name, seq, timestamp, time, sender, recipient,
                                                       peers, text, node)).fetchone()
                results.append((row[0], row[1]))
            elif kind == "del":
                cursor.execute("UPDATE messages SET text = '[deleted]' WHERE log = %s AND seq = %s", op[1:])
            elif kind == "group":
                key, name, owner, broadcast = op[1:5]
                first_seq = op[5] if len(op) > 5 else 1
                if first_seq is None:  # a cluster node: after whatever the log holds
                    row = cursor.execute("SELECT last FROM log_counters WHERE log = %s", (name,)).fetchone()
                    first_seq = (row[0] if row else 0) + 1
                created = cursor.execute(
                    "INSERT INTO groups (key, name, owner, broadcast, first_seq) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    (key, name, owner, broadcast, first_seq)).fetchone()
                if created is None:
                    refused.add(key)
                else:
                    first_seqs[key] = first_seq
            elif kind == "member" and op[1] in refused:
                pass  # the members of a creation that lost: not added to the group that won
            elif kind == "member":
                cursor.execute(
                    "INSERT INTO members (group_key, username, joined) "
                    "SELECT %s, %s, %s WHERE EXISTS (SELECT 1 FROM groups WHERE key = %s) "
                    "ON CONFLICT (group_key, username) DO UPDATE SET joined = excluded.joined",
                    (op[1], op[2], bool(op[3]), op[1]))
            elif kind == "unmember":
                cursor.execute("DELETE FROM members WHERE group_key = %s AND username = %s", op[1:])
            elif kind == "ungroup":
                cursor.execute("DELETE FROM groups WHERE key = %s", op[1:])
            elif kind == "ban":
                cursor.execute("INSERT INTO bans (username, until) VALUES (%s, %s) "
                               "ON CONFLICT (username) DO UPDATE SET until = excluded.until",
                               op[1:])
            elif kind == "unban":
                cursor.execute("DELETE FROM bans WHERE username = %s", op[1:])
            elif kind == "mark":
                cursor.execute(
                    "INSERT INTO read_markers AS r (username, conversation, seq) VALUES (%s, %s, %s) "
                    "ON CONFLICT (username, conversation) DO UPDATE SET seq = GREATEST(r.seq, excluded.seq)",
                    op[1:])
            elif kind == "away" and op[2] is None:
                cursor.execute("DELETE FROM away WHERE username = %s", op[1:2])
            elif kind == "away":
                cursor.execute("INSERT INTO away (username, text) VALUES (%s, %s) "
                               "ON CONFLICT (username) DO UPDATE SET text = excluded.text", op[1:])
            else:
                raise ValueError(f"unknown operation {kind!r}")
        for log_name, seq in sorted(given.items()):  # the counter follows given SEQs
            cursor.execute(
                "INSERT INTO log_counters AS c (log, last) VALUES (%s, %s) "
                "ON CONFLICT (log) DO UPDATE SET last = GREATEST(c.last, excluded.last)", (log_name, seq))
    return results


# failures: consecutive failures since the last success or block; during a block it
# goes below zero (one less per failure), so that the result says whether this
# statement blocked the account (0) or it was blocked already (< 0).
_LOCKOUT_FAILURE = """
INSERT INTO lockout AS l (username, failures, until)
VALUES (%(u)s, CASE WHEN %(a)s <= 1 THEN 0 ELSE 1 END, CASE WHEN %(a)s <= 1 THEN %(until)s ELSE 0 END)
ON CONFLICT (username) DO UPDATE SET
  failures = CASE WHEN l.until > %(now)s THEN LEAST(l.failures, 0) - 1
                  WHEN GREATEST(l.failures, 0) + 1 >= %(a)s THEN 0 ELSE GREATEST(l.failures, 0) + 1 END,
  until = CASE WHEN l.until > %(now)s THEN l.until
               WHEN GREATEST(l.failures, 0) + 1 >= %(a)s THEN %(until)s ELSE l.until END
RETURNING until, failures
"""


def _lockout_failure(db, username, now, attempts, until):
    until, failures = db.execute(_LOCKOUT_FAILURE, {"u": username, "a": attempts, "now": now,
                                                    "until": until}).fetchone()
    return until, until > now and failures < 0


def _lockout_success(db, username, now):
    row = db.execute("UPDATE lockout SET failures = CASE WHEN until > %(now)s THEN LEAST(failures, 0) ELSE 0 END "
                     "WHERE username = %(u)s RETURNING until", {"u": username, "now": now}).fetchone()
    return row[0] if row else 0.0


def _unread_counts(db, username, groups) -> list:
    return unread_counts(_rows_of(db), "%s", username, groups,
                         "SELECT DISTINCT sender FROM messages WHERE recipient = %s AND peers IS NOT NULL")


def _history(db, column, value, limit, before, since=1):
    query = f"SELECT {_COLUMNS} FROM messages WHERE {column} = %s"
    args = [value]
    if since > 1:
        query += " AND seq >= %s"
        args.append(since)
    if before is not None:
        query += " AND seq < %s"
        args.append(before)
    query += " ORDER BY seq DESC LIMIT %s"
    args.append(limit)
    rows = db.execute(query, args).fetchall()
    rows.reverse()
    return [message_from_row(row) for row in rows]


def _rows_of(db):
    return lambda query, args: db.execute(query, args).fetchall()


def _range(db, where, after, before, limit, latest):
    return read_range(_rows_of(db), "%s", where, after, before, limit, latest)


def _add_search(db) -> None:
    """
    The search index: a C{tsvector} column kept by a trigger (so every way
    a message is written or deleted keeps it, the cluster's too), with a GIN
    index. Words: the C{simple} configuration (no stemming, no stop words:
    a chat has every language) over the text with its accents removed by the
    C{unaccent} extension; scope tokens with weight A, words with weight D
    (see L{chatproto.storage.search}). Messages stored before run in the
    background (L{PostgresDatabase.start_indexing}) from position 0 up to
    the position recorded here.
    """
    db.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    schema = db.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                        "WHERE extname = 'unaccent'").fetchone()[0]
    db.execute(f"""
    CREATE FUNCTION chatproto_unaccent(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT {schema}.unaccent('{schema}.unaccent'::regdictionary, $1) $$;
    -- The scope tokens are written as a tsvector (hexadecimal needs no quoting), with
    -- positions so that they keep their weight.
    CREATE FUNCTION chatproto_search_document(log text, sender text, recipient text, body text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT CASE WHEN body = '[deleted]' OR (log = '' AND recipient IS NULL) THEN ''::tsvector
      ELSE setweight(to_tsvector('simple'::regconfig, chatproto_unaccent(body)), 'D')
        || (CASE WHEN log = '' THEN
             'ps' || encode(convert_to(sender, 'UTF8'), 'hex') || ':1A '
             'pr' || encode(convert_to(recipient, 'UTF8'), 'hex') || ':2A '
             's' || encode(convert_to(sender, 'UTF8'), 'hex') || ':3A'
           ELSE
             'g' || encode(convert_to(log, 'UTF8'), 'hex') || ':1A '
             's' || encode(convert_to(sender, 'UTF8'), 'hex') || ':2A' END)::tsvector
      END $$;
    CREATE FUNCTION chatproto_search_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      NEW.search := chatproto_search_document(NEW.log, NEW.sender, NEW.recipient, NEW.text);
      RETURN NEW;
    END $$;
    ALTER TABLE messages ADD COLUMN search tsvector;
    CREATE TRIGGER messages_search BEFORE INSERT OR UPDATE OF text ON messages
      FOR EACH ROW EXECUTE FUNCTION chatproto_search_trigger();
    CREATE INDEX messages_search ON messages USING GIN (search);
    INSERT INTO meta (key, value) SELECT 'search_backlog', '0' FROM messages HAVING COUNT(*) > 0;
    INSERT INTO meta (key, value) SELECT 'search_backlog_end', MAX(pos)::text FROM messages
      HAVING COUNT(*) > 0;
    """)


def _index_some(db, limit) -> int:
    with db.transaction():
        row = db.execute("SELECT (SELECT value FROM meta WHERE key = 'search_backlog'), "
                         "(SELECT value FROM meta WHERE key = 'search_backlog_end')").fetchone()
        if row[0] is None:
            return 0
        start, end = int(row[0]), int(row[1])
        if start >= end:
            db.execute("DELETE FROM meta WHERE key LIKE 'search_backlog%'")
            log.info("Search index: built ({end} positions)", end=end)
            return 0
        stop = min(start + limit, end)
        db.execute("UPDATE messages SET search = chatproto_search_document(log, sender, recipient, text) "
                   "WHERE pos > %s AND pos <= %s AND search IS NULL", (start, stop))
        db.execute("UPDATE meta SET value = GREATEST(value::bigint, %s)::text WHERE key = 'search_backlog'",
                   (stop,))
    if end and stop * 10 // end != start * 10 // end:
        log.info("Search index: {done} of {end} stored positions indexed", done=stop, end=end)
    return stop - start


def _search(db, query):
    if not all(word.isascii() for word in query.words):
        # unaccent writes some letters as punctuation (ʼ -> ', ⑴ -> (1), ː -> :), which
        # in a tsquery is syntax (a search for them failed): the words are unaccented
        # first, then split again into letters and digits, so the tsquery has no syntax
        # but what tsquery_text writes. (ASCII words are unaccent's already.)
        rows = db.execute("SELECT chatproto_unaccent(w) FROM unnest(%s::text[]) WITH ORDINALITY AS t(w, i) "
                          "ORDER BY i", (list(query.words),)).fetchall()
        query = dataclasses.replace(query, words=search_words(" ".join(row[0] for row in rows)))
        if query.is_empty():
            return []
    scopes = _scopes(query)
    shares = _shares(db, query.words)
    # A word's condition that the GIN index cannot take (COALESCE): checked on each row read.
    checked = "COALESCE(search, ''::tsvector) @@ to_tsquery('simple', %s)"
    if math.prod(shares.values()) < FREQUENT_SHARE or len(scopes) > SEARCH_MERGE_MOST:
        # Rare words (or frequent ones seldom together): one query over the GIN index, its
        # matches of the rare words (at least the rarest) AND any of the scope tokens (weight
        # A), newest first; the frequent words checked on each of them (the GIN index's matches
        # of a frequent word are much of the table: intersecting two took 2-3 s).
        indexed = tuple(w for w in query.words if shares[w] < FREQUENT_SHARE) or (min(query.words, key=shares.get),)
        sql = (f"SELECT {_COLUMNS} FROM messages WHERE search @@ to_tsquery('simple', %s) "
               "AND text <> '[deleted]'")
        args: list = [tsquery_text(dataclasses.replace(query, words=indexed))]
        if len(indexed) < len(query.words):
            sql += " AND " + checked
            args.append(tsquery_words(dataclasses.replace(
                query, words=tuple(w for w in query.words if w not in indexed))))
        filters, filter_args = sql_filters(query, "%s")
        sql += filters + " ORDER BY pos DESC LIMIT %s"
        args += filter_args + [query.limit]
    else:
        # Every word frequent: one query per conversation the searcher may read, each on that
        # conversation's own index, newest first, at most the limit; merged. (The query above
        # would walk everyone's messages to find the searcher's: a common word at a million
        # messages read 7,000 rows for 50 results; here about 50 a conversation.)
        parts, args = [], []
        for where, where_args in scopes:
            part = (f"(SELECT {_COLUMNS}, pos FROM messages WHERE {where} "
                    "AND search @@ to_tsquery('simple', %s) AND text <> '[deleted]'")
            args += where_args + [tsquery_words(query)]
            if query.sender is not None:
                part += " AND sender = %s"
                args.append(query.sender)
            if query.after is not None:
                part += " AND time > %s"
                args.append(query.after)
            if query.before is not None:
                part += " AND time < %s"
                args.append(query.before)
            parts.append(part + " ORDER BY time DESC LIMIT %s)")
            args.append(query.limit)
        sql = (f"SELECT {_COLUMNS} FROM ({' UNION ALL '.join(parts)}) AS found "
               "ORDER BY time DESC, pos DESC LIMIT %s")
        args.append(query.limit)
        # Each part walked newest first and read only as far as the merge needs: the planner,
        # estimating few matches a conversation, would rather read all of them and sort them
        # (or intersect the words' GIN matches), which is what the shares above ruled out.
        with db.transaction():
            db.execute("SET LOCAL enable_bitmapscan = off")
            db.execute("SET LOCAL enable_sort = off")
            return [message_from_row(row) for row in db.execute(sql, args, prepare=False)]
    # Never a prepared statement (psycopg prepares a query run 5 times): its generic plan does
    # not know the words, and took the GIN index's matches of a common word (a second and more).
    return [message_from_row(row) for row in db.execute(sql, args, prepare=False)]


SEARCH_MERGE_MOST = 64  # conversations a search queries one by one at most; more: the GIN index
FREQUENT_SHARE = 0.01  # words in this share of the messages together: walk the conversations (_shares)
STATISTICS_AGE = 600.0  # seconds the statistics read from pg_stats are used before reading them again
_statistics: dict = {}  # the connection's DSN -> (when read, [(lexeme, share of the messages)])


def _shares(db, words) -> dict:
    """
    Each word's share of the messages (those with a lexeme it begins), by PostgreSQL's own
    statistics of the C{search} column (C{pg_stats}: its most common lexemes and their
    shares, from ANALYZE and autovacuum); 0 for a word none of them begins. The planner's own
    estimates for prefix tsqueries are too rough to choose between the GIN index and walking
    a conversation's messages: with two frequent words it intersected their GIN matches in
    every conversation (2-3 s at a million messages). No statistics yet (a new database):
    every word rare, the GIN index answers.
    """
    key = db.info.dsn
    read = _statistics.get(key)
    if read is None or _time.monotonic() - read[0] > STATISTICS_AGE:
        row = db.execute("SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
                         "WHERE tablename = 'messages' AND attname = 'search' "
                         "AND schemaname = current_schema()").fetchone()
        read = _statistics[key] = (_time.monotonic(), list(zip(*row)) if row and row[0] else [])
    return {word: min(1.0, sum(share for lexeme, share in read[1] if lexeme.startswith(word.lower())))
            for word in words}


def _scopes(query) -> list:
    """The conversations a search reads, as conditions that match one of the messages' indexes
    (C{(sender|recipient, time)}, C{(peers, time, seq)}, C{(log, time, seq)}), with arguments."""
    scopes = []
    if query.private:
        if query.peer is None:
            scopes.append(("peers IS NOT NULL AND sender = %s", [query.user]))
            scopes.append(("peers IS NOT NULL AND recipient = %s AND sender <> %s", [query.user, query.user]))
        else:
            scopes.append(("peers = %s", [peers_key(query.user, query.peer)]))
    for log_name, first_seq in query.groups.items():
        scopes.append(("peers IS NULL AND log = %s AND seq >= %s", [log_name, first_seq]))
    return scopes


def _delete_checked(db, log, seq, author) -> str:
    with db.transaction():
        row = db.execute("SELECT sender, text FROM messages WHERE log = %s AND seq = %s FOR UPDATE",
                         (log, seq)).fetchone()
        if row is None:
            return "none"
        if row[0] != author:
            return "not-author"
        if row[1] == "[deleted]":
            return "already"
        db.execute("UPDATE messages SET text = '[deleted]' WHERE log = %s AND seq = %s", (log, seq))
        return "deleted"


def _messages_since(db, pos, usernames, logs, limit, node):
    rows = db.execute(
        f"SELECT pos, {_COLUMNS} FROM messages WHERE pos > %s "
        "AND (%s::text IS NULL OR node IS DISTINCT FROM %s) "
        "AND ((log = '' AND recipient = ANY(%s)) OR log = ANY(%s)) ORDER BY pos LIMIT %s",
        (pos, node, node, usernames, logs, limit)).fetchall()
    return [(row[0], message_from_row(row[1:])) for row in rows]
