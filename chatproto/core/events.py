"""
What the core tells sessions: plain values, rendered by each front end.

Every event has C{time} (seconds since the epoch) and C{timestamp} (the
server's local time, as docs/PROTOCOL.md's TIMESTAMP). One event object is handed to
every recipient, so a front end can render it once for all of its sessions;
nobody changes one (they are not frozen only because a frozen dataclass
costs three times as much to make, on the hot path of every message).
"""

from dataclasses import dataclass

PRIVATE = "private"
GROUP = "group"


@dataclass(slots=True)
class Message:
    """A private or group message as stored (C{text} is C{[deleted]} once deleted)."""

    kind: str  # PRIVATE or GROUP
    seq: int
    timestamp: str
    time: float
    sender: str
    recipient: str | None  # private messages
    group: str | None  # group messages: the group's name as created
    text: str


@dataclass(slots=True)
class Sent:
    """
    A message the user sent from another of their sessions (docs/PROTOCOL.md,
    "Several sessions"): every device holds the whole conversation. The
    session that sent it gets no event (its command's answer says it was
    sent).
    """

    message: Message


@dataclass(slots=True)
class Invited:
    group: str
    by: str
    timestamp: str
    time: float


@dataclass(slots=True)
class MemberJoined:
    group: str
    username: str
    timestamp: str
    time: float


@dataclass(slots=True)
class MemberLeft:
    group: str
    username: str
    timestamp: str
    time: float


@dataclass(slots=True)
class MembersChanged:
    """
    A group's members now, after a join, a leave, an invitation or one
    declined: to every active member as the group is now, invited ones too
    (whom L{MemberJoined} and L{MemberLeft} do not reach; the one who joined
    or invited among them, for their other sessions). For front ends that
    keep a member list on screen (the page); the line protocol and IRC show
    nothing for it.
    """

    group: str
    members: tuple  # of (username, joined), as GroupInfo.members
    timestamp: str
    time: float


@dataclass(slots=True)
class MessageDeleted:
    group: str
    seq: int
    by: str
    timestamp: str
    time: float


@dataclass(slots=True)
class PrivateMessageDeleted:
    """
    Private message C{seq} deleted by its author C{sender}: to the sessions
    of C{recipient} and the author's other sessions, so that a count of it
    as unread, or its text on screen, can go. Plain values only (it crosses
    a cluster's bus). The line protocol has no line for it (none is
    specified) and IRC none either: they show nothing; the page does.
    """

    seq: int
    sender: str
    recipient: str
    timestamp: str  # of the deletion
    time: float


@dataclass(slots=True)
class FileOffer:
    """A presenter is about to send the receiver a file (see docs/TRANSFER.md)."""

    transfer_id: str  # 16 hex digits
    secret: str  # 64 hex digits
    presenter: str
    presenter_ip: str
    filename: str
    timestamp: str
    time: float


@dataclass(slots=True)
class FilePeer:
    """The presenter's answer to a file offer: where to send, and the transfer's id and secret."""

    username: str
    ip: str
    udp_port: int
    transfer_id: str
    secret: str


@dataclass(slots=True)
class UserOnline:
    username: str
    timestamp: str
    time: float


@dataclass(slots=True)
class UserOffline:
    username: str
    timestamp: str
    time: float


@dataclass(slots=True)
class ReadMarker:
    """
    The user's read marker of a conversation moved (read on another of their
    sessions): C{conversation} is another user's name or C{#GROUPNAME}; C{seq},
    C{timestamp} and C{time} are those of the newest message read.
    """

    conversation: str
    seq: int
    timestamp: str
    time: float


@dataclass(slots=True)
class AwayChanged:
    """A user set (C{text}) or cleared (C{text} None) their away message, for all their sessions."""

    username: str
    text: str | None
    timestamp: str
    time: float


@dataclass(slots=True)
class ServerNotice:
    text: str
    timestamp: str
    time: float


@dataclass(slots=True)
class GroupInfo:
    """A group as a front end sees it: members in membership order, owner first."""

    name: str
    owner: str
    broadcast: bool
    members: tuple  # of (username, joined)

    def role(self, username: str) -> str | None:
        """C{owner}, C{joined}, C{invited}, or None for a non-member."""
        for member, joined in self.members:
            if member == username:
                if member == self.owner:
                    return "owner"
                return "joined" if joined else "invited"
        return None
