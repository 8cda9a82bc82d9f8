"""
What the server's lines mean to the client: typed events, free of any
terminal or screen.

L{chatproto.client.model.ChatModel} turns each line that no request of its
own waits for into one of the events below and hands it to its user
interface; the messages in them are parsed (L{Message}: timestamp, sender,
text, group, SEQ where the server gave one). The connection's own events
(lost, offline, back) are here too, so that a user interface has one
vocabulary to render.
"""

import re
from dataclasses import dataclass

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_TS = r"(?P<ts>(?P<day>\d\d) (?P<mon>[A-Z][a-z]{2}) (?P<year>\d{4}) (?P<hm>\d\d:\d\d):\d\d)"
_MESSAGE = re.compile(_TS + r", (?:(?P<group>[^\s,]+), )?(?P<sender>[^\s,:]+): (?P<text>.*)\Z", re.S)
_HISTORY = re.compile(r"#(?P<seq>\d+) " + _MESSAGE.pattern, re.S)
_SENT_AT = re.compile(r"^message sent at " + _TS + r"\.$")
_SENT = re.compile(_TS + r", to (?P<to>#?[^\s,:]+): (?P<text>.*)\Z", re.S)

@dataclass
class Message:
    """One private or group message, parsed from the server's text."""

    timestamp: str
    sender: str
    text: str
    group: str | None = None
    seq: int | None = None
    peer: str | None = None  # the other side of a private message, when known

    @property
    def day(self) -> str:
        """C{01 Jun 2022}."""
        return self.timestamp[:11]

    @property
    def hm(self) -> str:
        return self.timestamp[12:17]

    def sort_key(self) -> tuple:
        d = self.timestamp
        return (d[7:11], _MONTHS.get(d[3:6], 0), d[0:2], d[12:])

    def same(self, other: "Message") -> bool:
        return (self.timestamp, self.sender, self.text, self.group) == (
            other.timestamp, other.sender, other.text, other.group)


def parse_message(text: str) -> Message | None:
    """A C{MSG} line's text: C{TIMESTAMP, [GROUP, ]SENDER: MESSAGE}."""
    found = _MESSAGE.match(text)
    if found is None or found["mon"] not in _MONTHS:
        return None
    return Message(found["ts"], found["sender"], found["text"], found["group"])


def parse_sent(text: str, me: str) -> Message | None:
    """A C{SENT} line's text (what C{me} sent from another session): C{TIMESTAMP, to NAME: MESSAGE}."""
    found = _SENT.match(text)
    if found is None or found["mon"] not in _MONTHS:
        return None
    to = found["to"]
    if to.startswith("#"):
        return Message(found["ts"], me, found["text"], to[1:])
    return Message(found["ts"], me, found["text"], peer=to)


def parse_history(text: str) -> Message | None:
    """A C{/history} or C{/grouphistory} C{DATA} line: C{#SEQ TIMESTAMP, ...}."""
    found = _HISTORY.match(text)
    if found is None or found["mon"] not in _MONTHS:
        return None
    return Message(found["ts"], found["sender"], found["text"], found["group"], int(found["seq"]))


def parse_search(text: str) -> Message | None:
    """A C{/search} C{DATA} line: C{NAME #SEQ TIMESTAMP, SENDER: MESSAGE} (NAME: a user, or
    C{#GROUP})."""
    name, _, rest = text.partition(" ")
    found = _HISTORY.match(rest)
    if not name or found is None or found["mon"] not in _MONTHS or found["group"] is not None:
        return None
    if name.startswith("#"):
        return Message(found["ts"], found["sender"], found["text"], name[1:], int(found["seq"]))
    return Message(found["ts"], found["sender"], found["text"], None, int(found["seq"]), peer=name)


def sent_at(text: str) -> str | None:
    """The timestamp of C{message sent at TIMESTAMP.}, or None."""
    found = _SENT_AT.match(text)
    return found["ts"] if found else None



# Events from server lines


@dataclass(frozen=True)
class Delivered:
    """C{MSG}: a message to us; C{message} is None when its text is not a message's."""

    text: str
    message: Message | None


@dataclass(frozen=True)
class SentElsewhere:
    """C{SENT}: what we sent from another session (device); C{message} None if malformed."""

    text: str
    message: Message | None


@dataclass(frozen=True)
class ReadElsewhere:
    """C{READ NAME SEQ}: read on another session; NAME a user or C{#GROUP}."""

    name: str
    seq: int | None


@dataclass(frozen=True)
class Notice:
    """C{NOTICE}: an invitation, someone joined or left, a deletion, being dropped."""

    text: str


@dataclass(frozen=True)
class ServerShutdown:
    """C{NOTICE Server shutting down} (told once, however often the server says it)."""

    text: str


@dataclass(frozen=True)
class Reply:
    """A C{DATA}, C{OK} or C{ERR} text that no request of the client waits for."""

    text: str


@dataclass(frozen=True)
class Unknown:
    """A line with a tag this client does not know."""

    tag: str
    text: str


# Events of the connection


@dataclass(frozen=True)
class LoginWanted:
    """Connected, nobody logged in: ask who the user is."""


@dataclass(frozen=True)
class LoginInterrupted:
    """The server closed the connection under a login prompt (its login deadline); the
    client connects again by itself. C{resend}: a login sent meanwhile has no answer."""

    resend: bool


@dataclass(frozen=True)
class Offline:
    """The connection was lost after login and the client reconnects. C{first}: it was
    online until now (later ones: an attempt connected, then lost again);
    C{after_shutdown}: the server had said it was shutting down."""

    first: bool
    after_shutdown: bool


@dataclass(frozen=True)
class Reconnecting:
    """An attempt to reconnect is scheduled (C{attempt}, after C{delay} seconds)."""

    attempt: int
    delay: float


@dataclass(frozen=True)
class LoggingInAgain:
    """Connected again after a loss; the login with the kept password is on its way."""


@dataclass(frozen=True)
class Reconnected:
    """Logged in again after a lost connection."""


@dataclass(frozen=True)
class ReloginRefused:
    """Logging in again after a lost connection failed with the server's C{text};
    C{give_up}: the account is blocked (the client ends)."""

    text: str
    give_up: bool


@dataclass(frozen=True)
class ConnectionLost:
    """The connection is gone for good; C{announced}: the server said it was shutting down."""

    announced: bool


@dataclass(frozen=True)
class FileNote:
    """A line from the file transfers (an offer, a refusal, an old server)."""

    text: str


def parse_read(text: str) -> ReadElsewhere:
    name, _, seq = text.rpartition(" ")
    if not name:
        name, seq = text, ""
    return ReadElsewhere(name, int(seq) if seq.isascii() and seq.isdigit() and len(seq) < 20 else None)
