"""
How the terminal client shows messages: compact times (C{21:30}, with a date
line when the day changes), sender names in stable colours, message SEQs
where the server gave them.

A rendered line is a list of C{(text, style)} segments; C{style} is a tuple
of SGR parameters (C{()} for none). The terminal console writes the text
through its own sanitiser and the styles as escape codes; anything else can
take C{plain(line)}.
"""

import re
import zlib
from dataclasses import dataclass

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_TS = r"(?P<ts>(?P<day>\d\d) (?P<mon>[A-Z][a-z]{2}) (?P<year>\d{4}) (?P<hm>\d\d:\d\d):\d\d)"
_MESSAGE = re.compile(_TS + r", (?:(?P<group>[^\s,]+), )?(?P<sender>[^\s,:]+): (?P<text>.*)\Z", re.S)
_HISTORY = re.compile(r"#(?P<seq>\d+) " + _MESSAGE.pattern, re.S)
_SENT_AT = re.compile(r"^message sent at " + _TS + r"\.$")
_SENT = re.compile(_TS + r", to (?P<to>#?[^\s,:]+): (?P<text>.*)\Z", re.S)

DIM = (2,)
BOLD = (1,)
#: Name colours: red, green, yellow, blue, magenta, cyan and their bright forms.
PALETTE = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)


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


def plain(line) -> str:
    if isinstance(line, str):
        return line
    return "".join(text for text, _style in line)


class Renderer:
    """
    @param own_name: the logged-in user (shown in bold).
    @param colours: False for none at all (no escape codes but the status line's).
    """

    def __init__(self, colours: bool = True):
        self.colours = colours
        self.own_name = None

    def _style(self, style: tuple) -> tuple:
        return style if self.colours else ()

    def name_style(self, name: str) -> tuple:
        if not self.colours:
            return ()
        if name == self.own_name:
            return BOLD
        return (PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)],)

    def message(self, msg: Message, tag: str | None = None) -> list:
        """C{#12 21:30 [Jedi] <luke> hello}; C{tag} names the conversation (in the all window)."""
        line = []
        if msg.seq is not None:
            line.append((f"#{msg.seq} ", self._style(DIM)))
        line.append((msg.hm + " ", self._style(DIM)))
        if tag:
            line.append((f"[{tag}] ", self._style((36,))))
        line.append(("<", ()))
        line.append((msg.sender, self.name_style(msg.sender)))
        line.append(("> ", ()))
        line.append((msg.text, ()))
        return line

    def search_result(self, msg: Message) -> list:
        """C{#12 01 Jun 2022 21:30 [#Jedi] <luke> hello}: a result of /search, with its day
        (results are newest first, so no date lines) and its conversation."""
        line = self.message(msg, f"#{msg.group}" if msg.group else msg.peer)
        line.insert(1, (msg.day + " ", self._style(DIM)))
        return line

    def day_line(self, day: str) -> list:
        return [(f"--- {day} ---", self._style(DIM))]

    def notice(self, text: str) -> list:
        return [("-!- ", self._style((36,))), (text, ())]

    def info(self, text: str) -> list:
        return [(text, ())]
