"""
The text of a message as it is stored and shown everywhere (the line
protocol, IRC, the page, the log files): one line, and nothing hidden.

Control characters and line breaks become spaces: a record stays one line
for any reader. Characters that are invisible or change the direction of the
text around them (Unicode's format characters: U+202A-U+202E, U+2066-U+2069,
U+200B, U+200E, U+FEFF, ...) become a visible C{<U+202E>}, so that nobody
can hide or reverse text in someone else's view (C{pay <U+202E>moc.live}).

Two of them are ordinary text where they join two characters, and are kept
there: U+200D ZERO WIDTH JOINER (emoji sequences such as the family
C{👨‍👩‍👧}, professions, the rainbow flag; conjuncts in Indic scripts) and
U+200C ZERO WIDTH NON-JOINER (Persian C{می‌خواهم}, Indic scripts). Joining
means: between two characters that are letters, marks or symbols outside
ASCII, or after an Indic virama (the Malayalam chillu C{ന്‍} ends a word
with one). Anywhere else (at an end, next to a space or another invisible
character, between Latin letters, where it joins nothing) it is shown like
the others. So are tag characters (U+E0020-U+E007F), except in the emoji
flags of regions (a black flag, two to seven tag letters or digits, a cancel
tag: the flag of England), as a run of them can carry a hidden text.
"""

import unicodedata

# Control characters and line breaks would break a record (one line for any reader).
_LINE_BREAKS = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
JOINERS = frozenset("\u200c\u200d")
# Letters, marks and symbols (emoji are So, their skin tones Sk, U+FE0F is Mn).
_JOINABLE = frozenset(("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "So", "Sk"))
FLAG_BASE = "\U0001F3F4"  # WAVING BLACK FLAG, the base of the flags of regions
CANCEL_TAG = "\U000E007F"
_TAG_SPEC = frozenset(map(chr, [*range(0xE0030, 0xE003A), *range(0xE0061, 0xE007B)]))
MAX_TAGS = 7


def visible(c: str) -> str:
    return f"<U+{ord(c):04X}>"


def _joinable(c: str) -> bool:
    return not c.isascii() and unicodedata.category(c) in _JOINABLE


def _after_virama(c: str) -> bool:
    """An Indic virama: a joiner after it shapes the consonant before it, at a word's end too."""
    return unicodedata.combining(c) == 9


def _flag_end(text: str, start: int) -> int:
    """The end of the region flag whose black flag is at C{start}, or C{start + 1} for none."""
    end = start + 1
    while end < len(text) and end - start <= MAX_TAGS and text[end] in _TAG_SPEC:
        end += 1
    if end - start >= 3 and end < len(text) and text[end] == CANCEL_TAG:
        return end + 1
    return start + 1


def _shown(text: str) -> str:
    out = []
    i = 0
    last = len(text) - 1
    while i <= last:
        c = text[i]
        if c == FLAG_BASE:
            end = _flag_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        if c.isprintable() or c == " ":
            out.append(c)
        elif c in JOINERS and i > 0 and (_after_virama(text[i - 1])
                                         or (i < last and _joinable(text[i - 1]) and _joinable(text[i + 1]))):
            out.append(c)
        else:
            out.append(visible(c))
        i += 1
    return "".join(out)


def single_line(text: str) -> str:
    """C{text} as it is stored and shown: one line, invisible characters visible where they hide."""
    if text.isprintable():
        return text
    text = text.translate(_LINE_BREAKS)
    if text.isprintable():
        return text
    return _shown(text)
