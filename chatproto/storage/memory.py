"""
A database in this process's memory: for tests, and the model the others
follow (the storage tests run against every implementation).
"""

from twisted.internet import defer

from ..core.events import GROUP, PRIVATE, Message
from ..core.interfaces import Conversation
from .model import DELETED, PRIVATE_LOG, GroupRecord, message_from_row, newest_first, peers_key, pick_conversations, range_key
from .search import matches


class MemoryDatabase:
    keeps_data = False  # nothing survives the process

    def __init__(self):
        self._messages: dict[str, dict[int, list]] = {}  # log -> seq -> row
        self._by_peers: dict[str, list] = {}  # peers -> [row] in SEQ order
        self._stored: list = []  # every row, in the order stored (search scans it backwards)
        self._groups: dict[str, GroupRecord] = {}
        self._bans: dict[str, float] = {}
        self._markers: dict[str, dict[str, int]] = {}  # username -> conversation -> SEQ read
        self._away: dict[str, str] = {}  # username -> away message

    # Start-up (synchronous: nothing else runs yet)

    def open(self) -> "MemoryDatabase":
        return self

    def groups(self) -> list[GroupRecord]:
        return [GroupRecord(g.key, g.name, g.owner, g.broadcast, [list(m) for m in g.members], g.first_seq)
                for g in self._groups.values()]

    def bans(self) -> list:
        return sorted(self._bans.items())

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

    def _op_ban(self, username, until):
        self._bans[username] = until

    def _op_unban(self, username):
        self._bans.pop(username, None)

    def _op_mark(self, username, conversation, seq):
        markers = self._markers.setdefault(username, {})
        if seq > markers.get(conversation, 0):
            markers[conversation] = seq

    def read_markers(self, username):
        return defer.succeed(dict(self._markers.get(username, {})))

    def _op_away(self, username, text):
        if text is None:
            self._away.pop(username, None)
        else:
            self._away[username] = text

    def away_messages(self):
        return defer.succeed(dict(self._away))

    def unread_counts(self, username, groups):
        markers = self._markers.get(username, {})
        found = {}  # conversation -> [count, newest time, newest SEQ]
        for row in self._messages.get(PRIVATE_LOG, {}).values():
            _log, seq, _timestamp, time, sender, recipient, _text = row
            if recipient == username and seq > markers.get(sender, 0) and _text != DELETED:
                entry = found.setdefault(sender, [0, 0.0, 0])
                entry[0] += 1
                entry[1] = max(entry[1], time)
                entry[2] = max(entry[2], seq)
        for conversation, log, first_seq in groups:
            after = max(markers.get(conversation, 0), first_seq - 1)
            for seq, row in self._messages.get(log, {}).items():
                if seq > after and row[4] != username and row[6] != DELETED:
                    entry = found.setdefault(conversation, [0, 0.0, 0])
                    entry[0] += 1
                    entry[1] = max(entry[1], row[3])
                    entry[2] = max(entry[2], seq)
        return defer.succeed(newest_first(found))

    def private_history(self, a, b, limit, before=None):
        rows = self._by_peers.get(peers_key(a, b), [])
        return defer.succeed(_last(rows, limit, before))

    def group_history(self, log, limit, before=None, since=1):
        rows = self._messages.get(log, {})
        return defer.succeed(_last([rows[s] for s in sorted(rows) if s >= since], limit, before))

    def message(self, log, seq):
        row = self._messages.get(log, {}).get(seq)
        return defer.succeed(message_from_row(row) if row is not None else None)

    def private_range(self, a, b, after, before, limit, latest=True):
        return defer.succeed(_range(self._by_peers.get(peers_key(a, b), []), after, before, limit, latest))

    def group_range(self, log, after, before, limit, latest=True, since=1):
        rows = self._messages.get(log, {}) if log != PRIVATE_LOG else {}
        return defer.succeed(_range([rows[s] for s in sorted(rows) if s >= since], after, before, limit,
                                    latest))

    def conversations(self, username, groups, after, before, limit, latest=False):
        last: dict[str, float] = {}
        for peers, rows in self._by_peers.items():
            a, b = peers.split("\n")
            if username in (a, b):
                times = [row[3] for row in rows if after < row[3] < before]
                if times:
                    last[b if a == username else a] = max(times)
        found = [Conversation(PRIVATE, name, time) for name, time in last.items()]
        for log, since in groups:
            rows = self._messages.get(log, {})
            times = [row[3] for seq, row in rows.items() if seq >= since and after < row[3] < before]
            if times:
                found.append(Conversation(GROUP, log, max(times)))
        return defer.succeed(pick_conversations(found, limit, latest))

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


def _range(rows, after, before, limit, latest):
    """The rows (one conversation's) in (time, seq) order, within the bounds."""
    by_seq = {row[1]: row for row in rows}
    keys = []
    for side, bound in (("after", after), ("before", before)):
        if bound is not None:
            if bound.seq is not None and bound.seq not in by_seq:
                return []
            found = by_seq[bound.seq][3] if bound.seq is not None else None
            keys.append((side, range_key(bound, side, found)))
    chosen = sorted((row for row in rows
                     if all((row[3], row[1]) > key if side == "after" else (row[3], row[1]) < key
                            for side, key in keys)),
                    key=lambda row: (row[3], row[1]))
    if limit <= 0:
        return []
    chosen = chosen[-limit:] if latest else chosen[:limit]
    return [message_from_row(row) for row in chosen]
