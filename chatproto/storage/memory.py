"""
A database in this process's memory: for tests, and the model the others
follow (the storage tests run against every implementation).
"""

from twisted.internet import defer

from ..core.events import Message
from .model import PRIVATE_LOG, GroupRecord, message_from_row, peers_key
from .search import matches


class MemoryDatabase:
    def __init__(self):
        self._messages: dict[str, dict[int, list]] = {}  # log -> seq -> row
        self._by_peers: dict[str, list] = {}  # peers -> [row] in SEQ order
        self._stored: list = []  # every row, in the order stored (search scans it backwards)
        self._groups: dict[str, GroupRecord] = {}

    # Start-up (synchronous: nothing else runs yet)

    def open(self) -> "MemoryDatabase":
        return self

    def groups(self) -> list[GroupRecord]:
        return [GroupRecord(g.key, g.name, g.owner, g.broadcast, [list(m) for m in g.members], g.first_seq)
                for g in self._groups.values()]

    def last_seq(self, log: str) -> int:
        rows = self._messages.get(log)
        return max(rows) if rows else 0

    def messages_after(self, log: str, seq: int) -> list[Message]:
        rows = self._messages.get(log, {})
        return [message_from_row(rows[s]) for s in sorted(rows) if s > seq]

    # Run time

    def commit(self, ops) -> defer.Deferred:
        self.commit_now(ops)
        return defer.succeed(None)

    def commit_now(self, ops) -> None:
        for op in ops:
            getattr(self, "_op_" + op[0])(*op[1:])

    def _op_msg(self, log, seq, timestamp, time, sender, recipient, text):
        row = [log, seq, timestamp, time, sender, recipient, text]
        self._messages.setdefault(log, {})[seq] = row
        self._stored.append(row)
        if log == PRIVATE_LOG and recipient is not None:
            self._by_peers.setdefault(peers_key(sender, recipient), []).append(row)

    def _op_del(self, log, seq):
        row = self._messages.get(log, {}).get(seq)
        if row is not None:
            row[6] = "[deleted]"

    def _op_group(self, key, name, owner, broadcast, first_seq=1):
        self._groups[key] = GroupRecord(key, name, owner, bool(broadcast), [], first_seq)

    def _op_member(self, key, username, joined):
        members = self._groups[key].members
        for member in members:
            if member[0] == username:
                member[1] = bool(joined)
                return
        members.append([username, bool(joined)])

    def _op_unmember(self, key, username):
        group = self._groups.get(key)
        if group is not None:
            group.members = [m for m in group.members if m[0] != username]

    def _op_ungroup(self, key):
        self._groups.pop(key, None)

    def private_history(self, a, b, limit, before=None):
        rows = self._by_peers.get(peers_key(a, b), [])
        return defer.succeed(_last(rows, limit, before))

    def group_history(self, log, limit, before=None, since=1):
        rows = self._messages.get(log, {})
        return defer.succeed(_last([rows[s] for s in sorted(rows) if s >= since], limit, before))

    def search(self, query):
        """The messages of a L{SearchQuery}, newest first: a scan, the reference for the indexes."""
        found = []
        if not query.is_empty():
            for row in reversed(self._stored):
                if matches(query, *row[:2], row[3], *row[4:]):
                    found.append(message_from_row(row))
                    if len(found) == query.limit:
                        break
        return defer.succeed(found)

    def start_indexing(self) -> defer.Deferred:
        """Nothing to index: every search is a scan."""
        return defer.succeed(None)

    def close(self) -> defer.Deferred:
        return defer.succeed(None)


def _last(rows, limit, before):
    if before is not None:
        rows = [row for row in rows if row[1] < before]
    return [message_from_row(row) for row in rows[-limit:]] if limit > 0 else []
