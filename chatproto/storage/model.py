"""The values storage keeps and gives back, and the database operations of one batch."""

from ..core.events import GROUP, PRIVATE, Message
from ..core.interfaces import Conversation, GroupRecord

__all__ = ["PRIVATE_LOG", "DatabaseError", "GroupRecord", "message_from_row", "newest_first", "peers_key",
           "unread_counts"]

COLUMNS = "log, seq, timestamp, time, sender, recipient, text"
_ABOVE_ANY_SEQ = 1 << 62

PRIVATE_LOG = ""  # the log name of private messages (messagelog.txt)
DELETED = "[deleted]"  # the text of a deleted message, in the logs and the database


def peers_key(a: str, b: str) -> str:
    """One key for the conversation between two users, whoever wrote."""
    return f"{a}\n{b}" if a < b else f"{b}\n{a}"


class DatabaseError(Exception):
    """The database cannot be opened, migrated or written; the text says which and why."""


# One batch is a list of operations, tuples whose first item names them:
#   ("msg", log, seq, timestamp, time, sender, recipient, text)
#   ("del", log, seq)
#   ("group", key, name, owner, broadcast, first_seq)
#   ("member", key, username, joined)
#   ("unmember", key, username)
#   ("ungroup", key)
#   ("ban", username, until)     until: epoch seconds, or math.inf (forever)
#   ("unban", username)
#   ("mark", username, conversation, seq)   a read marker, only forward
#   ("away", username, text)     text None: no longer away


def unread_counts(execute, mark: str, username: str, groups, partners_query: str, seq_time=None,
                  column: str = "peers", key=peers_key) -> list:
    """
    L{IChatStorage.unread_counts} over SQL: C{execute(query, args)} returns
    rows, C{mark} is the driver's placeholder (C{?} or C{%s}),
    C{partners_query} gives the users C{username} has a private conversation
    with. Then one range count per conversation, on its index (peers, seq) or
    (log, seq): the cost follows the user's conversations, not the table.
    A deleted message is nothing to read: it is not counted. Each row also
    names the newest SEQ counted, so that a session counting messages as they
    arrive can tell which of them this count already holds.

    C{seq_time}: a database whose only conversation index is (peers, time,
    seq), private times never going back in SEQ order (SQLite), gives the
    time of the private record at or before a SEQ (None: none), and the count
    starts from that (time, SEQ) on it.

    C{column}, C{key}: the column that names a private message's
    conversation and the function that gives its value for two users (SQLite:
    a number, None if they never wrote; see its MIGRATIONS).
    """
    q = mark
    markers = dict(execute(f"SELECT conversation, seq FROM read_markers WHERE username = {q}", (username,)))
    found = {}
    partners = [row[0] for row in execute(partners_query, (username,))]
    for partner in partners:
        after = markers.get(partner, 0)
        if seq_time is None:
            rows = execute("SELECT COUNT(*), MAX(time), MAX(seq) FROM messages "
                           f"WHERE {column} = {q} AND seq > {q} AND sender = {q} AND text <> {q}",
                           (key(username, partner), after, partner, DELETED))
        else:
            time = seq_time(after) if after else None
            rows = execute("SELECT COUNT(*), MAX(time), MAX(seq) FROM messages "
                           f"WHERE {column} = {q} AND (time, seq) > ({q}, {q}) AND sender = {q} "
                           f"AND text <> {q}",
                           (key(username, partner), float("-inf") if time is None else time, after,
                            partner, DELETED))
        for count, newest, seq in rows:
            if count:
                found[partner] = (count, newest, seq)
    for conversation, log_name, first_seq in groups:
        after = max(markers.get(conversation, 0), first_seq - 1)
        for count, newest, seq in execute("SELECT COUNT(*), MAX(time), MAX(seq) FROM messages "
                                     f"WHERE log = {q} AND seq > {q} AND sender <> {q} AND text <> {q}",
                                     (log_name, after, username, DELETED)):
            if count:
                found[conversation] = (count, newest, seq)
    return newest_first(found)


def newest_first(found: dict) -> list:
    """C{{conversation: (count, newest time, newest SEQ)}} as C{(conversation, count, newest time,
    newest SEQ)}, newest first."""
    return sorted(((name, count, time, seq) for name, (count, time, seq) in found.items()),
                  key=lambda entry: (-entry[2], entry[0]))


def message_from_row(row) -> Message:
    """A stored message, from C{(log, seq, timestamp, time, sender, recipient, text)}."""
    log, seq, timestamp, time, sender, recipient, text = row
    if log == PRIVATE_LOG:
        return Message(PRIVATE, seq, timestamp, time, sender, recipient, None, text)
    return Message(GROUP, seq, timestamp, time, sender, None, log, text)


# History ranges (CHATHISTORY), the same SQL for SQLite and PostgreSQL: C{execute(sql, args)}
# returns the rows, C{mark} is the driver's placeholder. A range is a strict limit on each
# side of the order (time, seq), so that one index per conversation, (its key, time, seq),
# answers any range, however old, without reading the messages outside it.

def range_key(bound, side: str, found_time: float | None = None) -> tuple[float, int]:
    """
    The L{Bound} as a strict limit on C{(time, seq)}: messages above it
    (C{side} "after") or below it ("before"). A SEQ bound needs its
    message's time, C{found_time}.
    """
    if bound.seq is not None:
        seq = bound.seq
        if bound.inclusive:
            seq = seq - 1 if side == "after" else seq + 1
        return (found_time, seq)
    # No message has SEQ 0, and none has one above _ABOVE_ANY_SEQ.
    if bound.until is not None:  # a span [time, until): ">= (t, 0)" is "time >= t", "< (t, 0)" "time < t"
        leaves_out = (side == "after") != bound.inclusive
        return (bound.until if leaves_out else bound.time, 0)
    exclusive = _ABOVE_ANY_SEQ if side == "after" else 0
    return (bound.time, exclusive if not bound.inclusive else _ABOVE_ANY_SEQ - exclusive)


def private_where(a: str, b: str, mark: str, column: str = "peers", key=peers_key) -> tuple[str, list]:
    return f"log = '' AND {column} = {mark}", [key(a, b)]


def group_where(log_name: str, since: int, mark: str, column: str = "peers") -> tuple[str, list]:
    # "+seq": the order (time, seq) comes from the index on it, not from the primary key.
    return f"log = {mark} AND {column} IS NULL AND +seq >= {mark}", [log_name, since]


def read_range(execute, mark: str, where: tuple[str, list], after, before, limit: int,
               latest: bool) -> list[Message]:
    """L{IChatStorage.private_range} and C{group_range} for a database."""
    condition, args = where
    keys = []
    for side, bound in (("after", after), ("before", before)):
        if bound is None:
            continue
        found = None
        if bound.seq is not None:
            rows = execute(f"SELECT time FROM messages WHERE {condition} AND seq = {mark}",
                           [*args, bound.seq])
            if not rows:
                return []  # a reference to no message of this conversation
            found = rows[0][0]
        keys.append((side, range_key(bound, side, found)))
    query = f"SELECT {COLUMNS} FROM messages WHERE {condition}"
    args = list(args)
    for side, key in keys:
        query += f" AND (time, seq) {'>' if side == 'after' else '<'} ({mark}, {mark})"
        args.extend(key)
    order = "DESC" if latest else "ASC"
    query += f" ORDER BY time {order}, seq {order} LIMIT {mark}"
    args.append(limit)
    rows = execute(query, args)
    if latest:
        rows.reverse()
    return [message_from_row(row) for row in rows]


def read_message(execute, mark: str, log: str, seq: int) -> Message | None:
    """L{IChatStorage.message} for a database."""
    rows = execute(f"SELECT {COLUMNS} FROM messages WHERE log = {mark} AND seq = {mark}", [log, seq])
    return message_from_row(rows[0]) if rows else None


def read_conversations(execute, mark: str, username: str, groups, after: float, before: float,
                       limit: int, latest: bool, partners: bool = False, column: str = "peers",
                       key=peers_key) -> list[Conversation]:
    """
    L{IChatStorage.conversations} for a database. C{partners}: the database
    lists who wrote to whom in a table C{partners} (SQLite): each of the
    user's conversations is then read through its own index. C{column},
    C{key}: as for L{unread_counts}.
    """
    found = []
    if partners:
        for (peer,) in execute(f"SELECT peer FROM partners WHERE username = {mark}", [username]):
            rows = execute(f"SELECT MAX(time) FROM messages WHERE {column} = {mark} AND time > {mark} "
                           f"AND time < {mark}", [key(username, peer), after, before])
            if rows and rows[0][0] is not None:
                found.append((peer, rows[0][0]))
    for side, other in (("sender", "recipient"), ("recipient", "sender")) if not partners else ():
        found += execute(
            f"SELECT {other}, MAX(time) FROM messages WHERE peers IS NOT NULL AND {side} = {mark} "
            f"AND time > {mark} AND time < {mark} GROUP BY {other}", [username, after, before])
    last: dict[str, float] = {}
    for name, time in found:
        if time > last.get(name, float("-inf")):
            last[name] = time
    conversations = [Conversation(PRIVATE, name, time) for name, time in last.items()]
    for log_name, since in groups:
        rows = execute(
            f"SELECT time FROM messages WHERE log = {mark} AND {column} IS NULL AND seq >= {mark} "
            f"AND time > {mark} AND time < {mark} ORDER BY time DESC LIMIT 1",
            [log_name, since, after, before])
        if rows:
            conversations.append(Conversation(GROUP, log_name, rows[0][0]))
    return pick_conversations(conversations, limit, latest)


def pick_conversations(conversations, limit: int, latest: bool) -> list[Conversation]:
    conversations.sort(key=lambda c: (c.time, c.kind, c.name))
    return conversations[-limit:] if latest and limit > 0 else conversations[:max(limit, 0)]
