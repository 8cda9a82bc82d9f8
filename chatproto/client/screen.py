"""
What text takes on a terminal screen: columns (wide East Asian characters
take two, joiners and marks none), the longest start that fits, and control
characters shown in caret notation so that no text from the network can move
the cursor or reprogram the terminal.
"""

import functools
import textwrap
import unicodedata

_ZERO_WIDTH = frozenset(("Mn", "Me", "Cf"))


def cell_width(text: str) -> int:
    """Screen columns C{text} takes (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in _ZERO_WIDTH:
            continue  # marks and joiners (an emoji sequence's U+200D, U+FE0F) take no column
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def truncate(text: str, columns: int) -> str:
    """The longest start of C{text} that fits in C{columns} screen columns."""
    out = []
    used = 0
    for ch in text:
        w = cell_width(ch)
        if used + w > columns:
            break
        out.append(ch)
        used += w
    return "".join(out)


def printable(text: str) -> str:
    """
    C{text} with every control character (which could move the cursor or
    reprogram the terminal) shown in caret notation instead, tabs as spaces.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t":
            out.append("    ")
        elif code < 0x20 or code == 0x7F:
            out.append("^" + chr(code ^ 0x40))
        elif 0x80 <= code < 0xA0:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=16)
def wrapped(text: str, columns: int) -> list[str]:
    """C{text} in rows of at most C{columns} (the long prompt's rows)."""
    return textwrap.wrap(printable(text), columns, drop_whitespace=False) or [""]
