"""The values storage keeps and gives back, and the database operations of one batch."""

from ..core.events import GROUP, PRIVATE, Message
from ..core.interfaces import GroupRecord

__all__ = ["PRIVATE_LOG", "DatabaseError", "GroupRecord", "message_from_row", "peers_key"]

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


def message_from_row(row) -> Message:
    """A stored message, from C{(log, seq, timestamp, time, sender, recipient, text)}."""
    log, seq, timestamp, time, sender, recipient, text = row
    if log == PRIVATE_LOG:
        return Message(PRIVATE, seq, timestamp, time, sender, recipient, None, text)
    return Message(GROUP, seq, timestamp, time, sender, None, log, text)
