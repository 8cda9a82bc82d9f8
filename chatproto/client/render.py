"""
How the terminal client shows messages: compact times (C{21:30}, with a date
line when the day changes), sender names in stable colours, message SEQs
where the server gave them.

A rendered line is a list of C{(text, style)} segments; C{style} is a tuple
of SGR parameters (C{()} for none). The terminal console writes the text
through its own sanitiser and the styles as escape codes; anything else can
take C{plain(line)}. The messages come parsed from L{chatproto.client.events}.
"""

import zlib

from .events import (  # noqa: F401 - the parsers' older home; tests and callers import them here
    Message,
    parse_history,
    parse_message,
    parse_search,
    parse_sent,
    sent_at,
)

DIM = (2,)
BOLD = (1,)
#: Name colours: red, green, yellow, blue, magenta, cyan and their bright forms.
PALETTE = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)


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
