"""
What a search asks of storage: the words to find and the messages the
searcher may read, as plain values (no query syntax: each database turns
them into its own, quoting every word).
"""

import re
import unicodedata
from dataclasses import dataclass, field

MAX_RESULTS = 50  # at most 50 results (docs/PROTOCOL.md, /search)
MAX_WORDS = 16  # more words in one search are ignored: one hostile search stays cheap
MAX_WORD = 64  # characters of one word that are used (nobody types longer words)
MAX_WAITING = 2  # searches of one user in progress at once: more are refused (the database is shared)

# A word is a run of letters and digits (any script); everything else separates words,
# as in the databases' tokenizers. Quotes, '*', '-', ':' are never operators.
_SEPARATORS = re.compile(r"[\W_]+")


def search_words(text: str) -> tuple[str, ...]:
    """The words of C{text} a search looks for, in order, without repeats."""
    words: list[str] = []
    for word in _SEPARATORS.split(text):
        word = word[:MAX_WORD]
        if word and word not in words:
            words.append(word)
            if len(words) == MAX_WORDS:
                break
    return tuple(words)


def words_of(text: str) -> list[str]:
    """Every word of C{text}, as the databases' tokenizers split it (near enough)."""
    return [word for word in _SEPARATORS.split(text) if word]


def fold(text: str) -> str:
    """C{text} with case and accents ignored (C{Café} -> C{cafe}), as SQLite's unicode61
    tokenizer with remove_diacritics does (lower case, combining marks dropped)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFD", text.lower())
    if _NOT_ASCII_OR_ACCENT.search(decomposed) is None:
        # ASCII letters and the usual accents (U+0300-U+036F) only: the accents dropped in C.
        # A search checks every message of a matching document, and a character at a time in
        # Python was most of its time (6.5 -> 3 us a message of the search benchmark's text).
        return decomposed.encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_NOT_ASCII_OR_ACCENT = re.compile("[^\x00-\x7f" + "".join(
    chr(code) for code in range(0x300, 0x370) if unicodedata.combining(chr(code))) + "]")


@dataclass(slots=True)
class SearchQuery:
    """
    Find the messages, newest first, whose text has a word beginning with
    each of C{words} (case and accents ignored), among:

      - private messages sent or received by C{user} (C{private}), only
        those between C{user} and C{peer} when it is given;
      - the messages of the group logs C{groups} (log name -> the first SEQ
        that belongs to the group the user joined).

    C{sender}: only messages from this user; C{before}/C{after}: only
    messages whose time (epoch seconds) is below / above it.
    """

    words: tuple
    user: str
    private: bool = True
    peer: str | None = None
    groups: dict = field(default_factory=dict)
    sender: str | None = None
    before: float | None = None
    after: float | None = None
    limit: int = MAX_RESULTS

    def is_empty(self) -> bool:
        """Nothing can match: no word, or nowhere to look."""
        return not self.words or self.limit <= 0 or (not self.private and not self.groups)
