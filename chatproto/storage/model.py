"""The values storage keeps and gives back, and the database operations of one batch."""

from ..core.events import GROUP, PRIVATE, Message
from ..core.interfaces import GroupRecord

__all__ = ["PRIVATE_LOG", "DatabaseError", "GroupRecord", "message_from_row", "newest_first", "peers_key",
           "unread_counts"]

PRIVATE_LOG = ""  # the log name of private messages (messagelog.txt)


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
#   ("mark", username, conversation, seq)   a read marker, only forward


def unread_counts(execute, mark: str, username: str, groups) -> list:
    """
    L{IChatStorage.unread_counts} over SQL: C{execute(query, args)} returns
    rows, C{mark} is the driver's placeholder (C{?} or C{%s}). Private
    messages in one query (by recipient), then one range count per group.
    """
    q = "?" if mark == "?" else "%s"
    found = {sender: (count, newest) for sender, count, newest in execute(
        "SELECT m.sender, COUNT(*), MAX(m.time) FROM messages m "
        "LEFT JOIN read_markers r ON r.username = m.recipient AND r.conversation = m.sender "
        f"WHERE m.recipient = {q} AND m.log = '' AND m.seq > COALESCE(r.seq, 0) GROUP BY m.sender",
        (username,))}
    markers = dict(execute(f"SELECT conversation, seq FROM read_markers WHERE username = {q}", (username,)))
    for conversation, log_name, first_seq in groups:
        after = max(markers.get(conversation, 0), first_seq - 1)
        for count, newest in execute("SELECT COUNT(*), MAX(time) FROM messages "
                                     f"WHERE log = {q} AND seq > {q} AND sender <> {q}",
                                     (log_name, after, username)):
            if count:
                found[conversation] = (count, newest)
    return newest_first(found)


def newest_first(found: dict) -> list:
    """C{{conversation: (count, newest time)}} as C{(conversation, count, newest time)}, newest first."""
    return sorted(((name, count, time) for name, (count, time) in found.items()),
                  key=lambda entry: (-entry[2], entry[0]))


def message_from_row(row) -> Message:
    """A stored message, from C{(log, seq, timestamp, time, sender, recipient, text)}."""
    log, seq, timestamp, time, sender, recipient, text = row
    if log == PRIVATE_LOG:
        return Message(PRIVATE, seq, timestamp, time, sender, recipient, None, text)
    return Message(GROUP, seq, timestamp, time, sender, None, log, text)
