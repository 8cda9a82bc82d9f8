"""
A cluster node's storage: PostgreSQL gives the SEQs, the node's text files
follow.

Several nodes append to the same logs, so a SEQ cannot come from one node's
files: each batch goes to PostgreSQL first (one transaction, SEQs from the
per-log counter rows), and once it is committed the node appends the
records it handled to its own text files with the database's SEQs (rising,
with gaps where other nodes wrote). A change is acknowledged once it is
committed; a text file that cannot be written then is only logged (the
database has the record). There is nothing to reconcile at start-up: a
file never holds a record the database lacks.
"""

import os

from twisted.internet import defer
from twisted.logger import Logger

from ..core import errors
from ..core.errors import ChatError
from ..storage.ledger import Ledger
from ..storage.model import PRIVATE_LOG
from ..storage.records import NoSuchRecord, NotAuthor, delete_record
from ..storage.textlogs import group_log_name

log = Logger()


class ClusterLedger(Ledger):
    """
    @param database: an opened L{PostgresDatabase} (with this node's id).
    @ivar on_group_change: called with each committed group operation
        (the bus tells the other nodes).
    @ivar on_committed: called with the C{(log, seq, pos)} of each committed message.
    """

    on_group_change = None
    on_committed = None
    on_deleted = None  # called with (log name or None, seq, author) deleted in another node's file
    on_first_seq = None  # called with (group key, first SEQ) once the database gave it

    def _open(self) -> None:
        self._groups = self.database.groups()
        self.last_pos = 0
        self._messages_this_turn = 0  # messages in the pending batch
        self._in_flight = False
        self._landings: list = []  # Deferreds fired once nothing is in flight
        self.indexed = self.database.start_indexing()  # the search index's backlog (nodes share it)

    def flush(self) -> None:
        """
        Commit what is pending in one transaction; while one is in flight the
        next turns' changes wait and go together in the next one (the batch
        grows with the load instead of the queue of transactions).
        """
        self._turn.cancel()
        if self._in_flight:
            return  # flushed again when the commit in flight is done
        failed = self.logs.write()  # userlog.txt and deletions
        ops, self._ops = self._ops, []
        waiting, self._waiting = self._waiting, []
        reads, self._reads = self._reads, []
        self._messages_this_turn = 0
        if failed:
            for d, text_log, _result in waiting:
                if text_log in failed:
                    d.errback(ChatError(errors.NOT_SAVED))
            waiting = [entry for entry in waiting if entry[1] not in failed]
        if ops:
            self._in_flight = True
            committed = self.database.commit([op for _log, op in ops])
            committed.addCallbacks(self._cluster_committed, self._not_committed,
                                   callbackArgs=(ops, waiting), errbackArgs=(waiting,))
            committed.addBoth(self._landed)
        else:
            self._committed(None, waiting)
        for read in reads:
            read()

    def _landed(self, _) -> None:
        self._in_flight = False
        if self._ops or self._waiting or self._reads:
            self.flush()
        if not self._in_flight:
            landings, self._landings = self._landings, []
            for d in landings:
                d.callback(None)

    @defer.inlineCallbacks
    def close(self):
        """Commit everything pending (waiting for a commit in flight), then close."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        if self._in_flight:
            d = defer.Deferred()
            self._landings.append(d)
            yield d
        self.logs.close()
        yield self.database.close()

    def _read(self, function, *args) -> defer.Deferred:
        if not (self._turn.pending or self._ops or self._waiting):
            return function(*args)
        d = defer.Deferred()
        self._reads.append(lambda: function(*args).chainDeferred(d))
        return d

    def _cluster_committed(self, allocated, ops, waiting) -> None:
        positions = iter(allocated)
        refused = getattr(allocated, "refused_groups", set())
        first_seqs = getattr(allocated, "first_seqs", {})
        committed = []
        for text_log, op in ops:
            if op[0] == "msg":
                seq, pos = next(positions)
                _, log_name, _none, timestamp, _time, sender, _recipient, text = op
                if text_log is not None:
                    try:
                        text_log.append_numbered(seq, timestamp, sender, text)
                    except ValueError:
                        log.warn("{path}: record {seq} out of order, not written",
                                 path=text_log.path, seq=seq)
                self.last_pos = max(self.last_pos, pos)
                committed.append((log_name, seq, pos))
            elif op[0] in ("group", "member") and op[1] in refused:
                continue
            else:
                if op[0] == "group":
                    op = (*op[:5], first_seqs.get(op[1], 1))
                    if self.on_first_seq is not None:
                        self.on_first_seq(op[1], op[5])
                if self.on_group_change is not None:
                    self.on_group_change(op)
        if committed:
            if self.logs.write():
                log.warn("A text log could not be written; the database has its records")
            if self.on_committed is not None:
                self.on_committed(committed)
        for d, _log, result in waiting:
            if isinstance(result, _Pending):
                result = result.seq_of(allocated)
            elif isinstance(result, _Creation):
                if result.key in refused:  # another node created it first
                    d.errback(ChatError(errors.GROUP_EXISTS, name=result.name))
                    continue
                result = None
            d.callback(result)

    accepts_waiters = False  # append_private returns a Deferred (the SEQ comes from the database)

    def append_private(self, sender, recipient, timestamp, time, text) -> defer.Deferred:
        op = ("msg", PRIVATE_LOG, None, timestamp, time, sender, recipient, text)
        return self._message(self.logs.messagelog, op)

    def append_group(self, log_name, sender, timestamp, time, text) -> defer.Deferred:
        op = ("msg", log_name, None, timestamp, time, sender, None, text)
        return self._message(self.logs.group_log(log_name), op)

    def _message(self, text_log, op) -> defer.Deferred:
        index = self._messages_this_turn
        self._messages_this_turn += 1
        d = defer.Deferred()
        self._ops.append((text_log, op))
        self._waiting.append((d, None, _Pending(index)))
        self._turn.schedule()
        return d

    def delete_message(self, log_name, seq, author) -> defer.Deferred:
        """Checked by the database (another node may have written it), then in this node's file."""
        db_log = PRIVATE_LOG if log_name is None else log_name

        def checked(outcome):
            if outcome == "none":
                raise ChatError(errors.NO_SUCH_MESSAGE, seq=seq)
            if outcome == "not-author":
                raise ChatError(errors.NOT_AUTHOR, seq=seq)
            if outcome == "already":
                return False
            if not self.delete_in_file(log_name, seq, author) and self.on_deleted is not None:
                self.on_deleted(log_name, seq, author)  # another node handled it: its file has it
            return True

        def failed(failure):
            if failure.check(ChatError):
                return failure
            log.failure("Cannot delete a message", failure)
            raise ChatError(errors.NOT_SAVED)

        return self._read(self.database.delete_checked, db_log, seq, author).addCallbacks(checked, failed)

    def save_group(self, record) -> defer.Deferred:
        """A new group; fails with C{group-exists} when another node created it first."""
        self.logs.group_log(record.name)  # a group's log file exists from its creation on
        record.first_seq = 1  # until the database says (on_first_seq)
        self._ops.append((None, ("group", record.key, record.name, record.owner, record.broadcast, None)))
        for username, joined in record.members:
            self._ops.append((None, ("member", record.key, username, joined)))
        d = defer.Deferred()
        self._waiting.append((d, None, _Creation(record.key, record.name)))
        self._turn.schedule()
        return d

    def delete_in_file(self, log_name, seq, author) -> bool:
        """Mark a record deleted in this node's file; False when the file does not have it."""
        if log_name is not None and not os.path.exists(
                os.path.join(self.logs.data_dir, group_log_name(log_name))):
            return False
        text_log = self.logs.messagelog if log_name is None else self.logs.group_log(log_name)
        try:
            delete_record(text_log, seq, author)
        except (NoSuchRecord, NotAuthor):
            return False
        except OSError:
            log.failure("Cannot rewrite {path}", path=text_log.path)
        return True

    def reload_groups(self) -> defer.Deferred:
        return self.database.reload_groups()

    def group(self, key: str) -> defer.Deferred:
        return self._read(self.database.group, key)


class _Pending:
    """The result of a message change: its SEQ, known once committed."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def seq_of(self, allocated):
        return allocated[self.index][0]


class _Creation:
    """The result of a group's creation: refused when the name was taken meanwhile."""

    __slots__ = ("key", "name")

    def __init__(self, key, name):
        self.key = key
        self.name = name
