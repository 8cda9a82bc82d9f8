"""
The core's storage (L{IChatStorage}): the text logs (README, "Files the
server writes") and a database,
written together once per reactor turn.

At the end of a turn the turn's records go to the text logs (one write per
file, with C{--fsync} one flush per file), then whatever of them reached
their files goes to the database in one transaction; each change's Deferred
fires when both are done (group commit). A log whose write failed takes no
part in the transaction, and its changes fail with C{not-saved}. Reads wait
for the batch of their turn, so they see every change made before them.

At start-up the two are reconciled: records a crash left in a file but not
in the database are added to the database (an older server's logs too), and
records the database has beyond a file are appended to it. Nothing is
doubled (a record is the pair log and SEQ), nothing acknowledged is missing.
"""

from time import perf_counter

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..core import errors
from ..core.errors import ChatError
from ..core.interfaces import IChatStorage
from ..core.timestamps import parse_timestamp
from ..turns import EndOfTurn
from .bans import import_ban_file
from .model import PRIVATE_LOG, GroupRecord
from .records import NoSuchRecord, NotAuthor, delete_records
from .textlogs import TextLogs, read_records_after

log = Logger()


def _held(text_log) -> bool:
    return text_log is not None and getattr(text_log, "held", False)


@implementer(IChatStorage)
class Ledger:
    """
    @param database: a L{MemoryDatabase} or L{SQLiteDatabase}, opened.
    @param data_dir: where the text logs are written.
    """

    def __init__(self, database, data_dir: str, clock, durable: bool = False):
        self.database = database
        self.clock = clock
        self._turn = EndOfTurn(clock, self.flush)
        self.logs = TextLogs(data_dir, clock, durable, self._turn.schedule)
        self._ops: list = []  # (text log or None, database operation, or a run's list of them) of this turn
        self._waiting: list = []  # (Deferred, text log or None, result) of this turn
        self._reads: list = []  # reads waiting for this turn's batch
        self._deletions: dict = {}  # text log -> [(seq, author, log key, Deferred)] of this turn
        self._rewrites: set = set()  # the Deferreds of deletions running in a thread
        self._drop_after: dict = {}  # text log -> group log name: drop it once its rewrite is done
        self._groups: list[GroupRecord] = []
        self._closed = False
        self.observers: list = []  # observer(what, size, seconds) per batch: "journal", "database"
        self._open()
        self._bans = dict(self.database.bans())  # what bans() answers; kept up to date by each change

    def _open(self) -> None:
        self._groups = self.database.groups()
        self._reconcile(PRIVATE_LOG, self.logs.messagelog)
        for group in self._groups:
            self._reconcile(group.name, self.logs.group_log(group.name))
        self.logs.write()
        # Messages stored before the search index existed: indexed in the background.
        self.indexed = self.database.start_indexing()
        import_ban_file(self.logs.data_dir, self.database)

    def _reconcile(self, log_name: str, text_log) -> None:
        in_file = text_log.last_seq
        in_database = self.database.last_seq(log_name)
        if in_file > in_database:
            ops = [("msg", log_name, seq, timestamp, parse_timestamp(timestamp), author, None, message)
                   for seq, timestamp, author, message in read_records_after(text_log.path, in_database)]
            if ops:
                log.info("{path}: {n} records added to the database", path=text_log.path, n=len(ops))
                self.database.commit_now(ops)
        elif in_database > in_file:
            missing = self.database.messages_after(log_name, in_file)
            log.info("{path}: {n} records restored from the database", path=text_log.path, n=len(missing))
            for message in missing:
                text_log.append_record(message.seq, message.timestamp, message.sender, message.text)

    # The end of a turn

    def flush(self) -> None:
        self._turn.cancel()
        observers = self.observers
        if observers:
            started = perf_counter()
        failed = self.logs.write()
        if observers and self._waiting:
            written = perf_counter()
            for observer in observers:
                observer("journal", len(self._waiting), written - started)
        ops, self._ops = self._ops, []
        waiting, self._waiting = self._waiting, []
        reads, self._reads = self._reads, []
        if self._rewrites:
            # A log being rewritten (a deletion) writes nothing: its changes wait for the next batch.
            kept_ops = [entry for entry in ops if _held(entry[0])]
            kept_waiting = [entry for entry in waiting if _held(entry[1])]
            if kept_ops or kept_waiting:
                ops = [entry for entry in ops if not _held(entry[0])]
                waiting = [entry for entry in waiting if not _held(entry[1])]
                self._ops = kept_ops + self._ops
                self._waiting = kept_waiting + self._waiting
        self._start_deletions()
        if failed:
            ops = [entry for entry in ops if entry[0] not in failed]
            for d, text_log, _result in waiting:
                if text_log in failed:
                    d.errback(ChatError(errors.NOT_SAVED))
            waiting = [entry for entry in waiting if entry[1] not in failed]
        if ops:
            rows = []
            for _log, op in ops:
                if type(op) is list:  # a run of private messages (append_privates)
                    rows += op
                else:
                    rows.append(op)
            committed = self.database.commit(rows)
            if observers:
                committed.addBoth(self._timed, len(rows), perf_counter())
            committed.addCallbacks(self._committed, self._not_committed,
                                   callbackArgs=(waiting,), errbackArgs=(waiting,))
        else:
            self._committed(None, waiting)
        for read in reads:
            read()

    def _timed(self, result, size: int, started: float):
        seconds = perf_counter() - started
        for observer in self.observers:
            observer("database", size, seconds)
        return result

    def _committed(self, _, waiting) -> None:
        for d, _log, result in waiting:
            d.callback(result)  # a Deferred, or a waiter (append_private)

    def _not_committed(self, failure, waiting) -> None:
        log.failure("Cannot write the database", failure)
        for d, _log, _result in waiting:
            d.errback(ChatError(errors.NOT_SAVED))

    def _change(self, text_log, op, result=None) -> defer.Deferred:
        d = defer.Deferred()
        if op is not None:
            self._ops.append((text_log, op))
        self._waiting.append((d, text_log, result))
        self._turn.schedule()
        return d

    def _read(self, function, *args) -> defer.Deferred:
        if not self._turn.pending:
            return function(*args)
        d = defer.Deferred()
        self._reads.append(lambda: function(*args).chainDeferred(d))
        return d

    # IChatStorage

    def groups(self) -> defer.Deferred:
        return defer.succeed(list(self._groups))

    # append_private takes a waiter (an object with callback(seq) and errback(error)) in place
    # of the Deferred it would return: one object less per message, and no Deferred machinery
    # when the batch is committed (issue 25).
    accepts_waiters = True

    def append_private(self, sender, recipient, timestamp, time, text, waiter=None):
        text_log = self.logs.messagelog
        seq = text_log.append(timestamp, sender, text)
        op = ("msg", PRIVATE_LOG, seq, timestamp, time, sender, recipient, text)
        if waiter is None:
            return self._change(text_log, op, seq)
        self._ops.append((text_log, op))
        self._waiting.append((waiter, text_log, seq))
        self._turn.schedule()
        return None

    def append_privates(self, sender, timestamp, time, messages, waiter) -> None:
        """
        Store a run of private messages of one sender and one timestamp
        (C{messages}: C{(recipient, text)} pairs, in order) under one C{waiter}:
        C{waiter.callback(seq)} with the first's SEQ (the others follow it, one
        by one) once every one of them is in the text log and committed, or
        C{waiter.errback(error)} for all of them: one record string, one
        waiter and one callback for the run instead of one each (issue 25).
        """
        text_log = self.logs.messagelog
        first = text_log.append_run(timestamp, sender, [text for _recipient, text in messages])
        self._ops.append((text_log, [("msg", PRIVATE_LOG, seq, timestamp, time, sender, recipient, text)
                                     for seq, (recipient, text) in enumerate(messages, first)]))
        self._waiting.append((waiter, text_log, first))
        self._turn.schedule()

    def append_group(self, log_name, sender, timestamp, time, text) -> defer.Deferred:
        text_log = self.logs.group_log(log_name)
        seq = text_log.append(timestamp, sender, text)
        return self._change(text_log, ("msg", log_name, seq, timestamp, time, sender, None, text), seq)

    def delete_message(self, log_name, seq, author) -> defer.Deferred:
        """
        The deletions of a turn are done together, one rewrite per log, in a
        worker thread; meanwhile that log's new records wait (in order) and
        everything else goes on.
        """
        text_log = self.logs.messagelog if log_name is None else self.logs.group_log(log_name)
        if not 0 < seq <= text_log.last_seq:
            return defer.fail(ChatError(errors.NO_SUCH_MESSAGE, seq=seq))
        d = defer.Deferred()
        key = PRIVATE_LOG if log_name is None else log_name
        self._deletions.setdefault(text_log, []).append((seq, author, key, d))
        self._turn.schedule()
        return d

    def _start_deletions(self) -> None:
        deletions, self._deletions = self._deletions, {}
        for text_log, requests in deletions.items():
            if text_log.held:  # its last rewrite is still running: after it
                self._deletions[text_log] = requests
                continue
            text_log.hold()
            pairs = [(seq, author) for seq, author, _, _ in requests]
            done = self._in_thread(delete_records, text_log.path, pairs, self.logs.journal.durable)
            self._rewrites.add(done)
            done.addBoth(self._rewritten, text_log, requests, done)

    def _rewritten(self, results, text_log, requests, done) -> None:
        self._rewrites.discard(done)
        try:
            text_log.release_hold()
        except OSError:
            log.failure("Cannot reopen {path}", path=text_log.path)
        if isinstance(results, Failure):
            log.failure("Cannot rewrite {path}", results, path=text_log.path)
            results = [ChatError(errors.NOT_SAVED)] * len(requests)
        for (seq, _author, key, d), result in zip(requests, results, strict=True):
            if isinstance(result, NoSuchRecord):
                d.errback(ChatError(errors.NO_SUCH_MESSAGE, seq=seq))
            elif isinstance(result, NotAuthor):
                d.errback(ChatError(errors.NOT_AUTHOR, seq=seq))
            elif isinstance(result, ChatError):
                d.errback(result)
            else:
                # Deleted already in the file (a retry after a crash or a failed commit): the
                # database is told again all the same; the change is idempotent.
                self._change(None, ("del", key, seq), bool(result)).chainDeferred(d)
        drop = self._drop_after.pop(text_log, None)
        if drop is not None:
            self.logs.drop_group_log(drop)
        if self._deletions:
            self._turn.schedule()

    def _in_thread(self, function, *args) -> defer.Deferred:
        clock = self.clock
        if IReactorThreads.providedBy(clock):
            return threads.deferToThreadPool(clock, clock.getThreadPool(), function, *args)
        return defer.maybeDeferred(function, *args)

    def message(self, log_name, seq) -> defer.Deferred:
        return self._read(self.database.message, PRIVATE_LOG if log_name is None else log_name, seq)

    def private_history(self, a, b, limit, before=None) -> defer.Deferred:
        return self._read(self.database.private_history, a, b, limit, before)

    def group_history(self, log_name, limit, before=None, since=1) -> defer.Deferred:
        return self._read(self.database.group_history, log_name, limit, before, since)

    def private_range(self, a, b, after, before, limit, latest=True) -> defer.Deferred:
        return self._read(self.database.private_range, a, b, after, before, limit, latest)

    def group_range(self, log_name, after, before, limit, latest=True, since=1) -> defer.Deferred:
        return self._read(self.database.group_range, log_name, after, before, limit, latest, since)

    def conversations(self, username, groups, after, before, limit, latest=False) -> defer.Deferred:
        return self._read(self.database.conversations, username, groups, after, before, limit, latest)

    def search(self, query) -> defer.Deferred:
        return self._read(self.database.search, query)

    def save_group(self, record: GroupRecord) -> defer.Deferred:
        text_log = self.logs.group_log(record.name)  # a group's log file exists from its creation on
        record.first_seq = text_log.last_seq + 1
        self._ops.append((None, ("group", record.key, record.name, record.owner, record.broadcast,
                                 record.first_seq)))
        for username, joined in record.members:
            self._ops.append((None, ("member", record.key, username, joined)))
        return self._change(None, None)

    def set_member(self, key, username, joined) -> defer.Deferred:
        return self._change(None, ("member", key, username, joined))

    def remove_member(self, key, username) -> defer.Deferred:
        return self._change(None, ("unmember", key, username))

    def remove_group(self, key, log_name=None) -> defer.Deferred:
        d = self._change(None, ("ungroup", key))
        if log_name is not None:
            text_log = self.logs.existing_group_log(log_name)
            if text_log is not None and (text_log.held or text_log in self._deletions):
                self._drop_after[text_log] = log_name  # once its rewrite is done
            else:
                self.logs.drop_group_log(log_name)
        return d

    # Bans (IBanStore): in the database only

    def bans(self) -> defer.Deferred:
        return defer.succeed(dict(self._bans))

    def save_ban(self, username, until) -> defer.Deferred:
        self._bans[username] = until
        return self._change(None, ("ban", username, until))

    def remove_ban(self, username) -> defer.Deferred:
        self._bans.pop(username, None)
        return self._change(None, ("unban", username))

    # Read markers (docs/PROTOCOL.md)

    def set_read_marker(self, username, conversation, seq) -> defer.Deferred:
        return self._change(None, ("mark", username, conversation, seq))

    def read_markers(self, username) -> defer.Deferred:
        return self._read(self.database.read_markers, username)

    def unread_counts(self, username, groups) -> defer.Deferred:
        return self._read(self.database.unread_counts, username, list(groups))

    # Away (docs/PROTOCOL.md): in the database only

    def save_away(self, username, text) -> defer.Deferred:
        return self._change(None, ("away", username, text))

    def away_messages(self) -> defer.Deferred:
        return self._read(self.database.away_messages)

    def user_logged_in(self, username, timestamp, ip, udp_port, session=None) -> defer.Deferred:
        userlog = self.logs.userlog
        userlog.add(username, timestamp, ip, udp_port, session)
        return self._change(userlog, None)

    def user_logged_out(self, username, session=None) -> defer.Deferred:
        self.logs.userlog.remove(username, session)
        return self._change(self.logs.userlog, None)

    def close(self) -> defer.Deferred:
        """Wait for running rewrites, write what is pending, release everything."""
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        self.flush()

        @defer.inlineCallbacks
        def finish():
            # A rewrite may queue the next one (deletions that waited for it): until none is left.
            while self._rewrites or self._deletions:
                yield defer.DeferredList(list(self._rewrites))
                self.flush()
            self.logs.close()
            yield self.database.close()

        return finish()
