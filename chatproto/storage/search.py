"""
The search index's vocabulary, shared by the databases.

Each indexed message has, besides the words of its text, a few *scope*
tokens that say who may find it: C{ps}+sender and C{pr}+recipient (private
messages), C{g}+log name (group messages), C{s}+sender (every message, for
the C{from} filter), each name written in hexadecimal (only C{0-9a-f}
follows the prefix, so no name can be mistaken for another or for a
prefix). A search is then one index lookup: its words AND any of the scopes
the searcher may read, newest first, stopping at the limit; permissions are
not a filter over every match but part of the lookup.

User text never becomes query syntax: it is split into words of letters and
digits (L{chatproto.core.search.search_words}) and every word is quoted
(FTS5) or made of nothing but letters and digits (PostgreSQL's tsquery).
"""

import functools
import re

from ..core.search import SearchQuery, fold, words_of
from .model import DELETED, PRIVATE_LOG


def _hex(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").hex()


@functools.lru_cache(maxsize=65536)  # every message of a conversation has the same (issue 25)
def scope_tokens(log: str, sender: str, recipient: str | None) -> str | None:
    """The scope tokens of a message (space-separated), or None: nobody can search it (a
    private record without its recipient, as an older server's text log gives it)."""
    # (_hex written out, the sender's once: a conversation's first message, or every
    # message when each is in a conversation of its own, pays this: 0.55 -> 0.39 us)
    sender_hex = sender.encode("utf-8", "surrogateescape").hex()
    if log == PRIVATE_LOG:
        if recipient is None:
            return None
        return f"ps{sender_hex} pr{recipient.encode('utf-8', 'surrogateescape').hex()} s{sender_hex}"
    return f"g{log.encode('utf-8', 'surrogateescape').hex()} s{sender_hex}"


def run_scope(log: str, pairs) -> str:
    """The scope tokens of a document of several messages of one conversation (their
    (sender, recipient) pairs, in order): each message's, once, in order of appearance.
    Permissions stay exact: every message of a document is in the same conversation, so
    whoever may read one may read all (only the C{from} filter is checked per message)."""
    if pairs.count(pairs[0]) == len(pairs):
        return scope_tokens(log, *pairs[0])
    return " ".join(dict.fromkeys(  # in order (a set's would change from one process to the next)
        token for pair in dict.fromkeys(pairs) for token in scope_tokens(log, *pair).split()))


def searchable(log: str, recipient: str | None, text: str) -> bool:
    return text != DELETED and (log != PRIVATE_LOG or recipient is not None)


# The query of each index: the same expression in two syntaxes


def _expression(query: SearchQuery, word, token, both: str, either: str, text: str = "", scope: str = "",
                words: bool = True) -> str:
    """The words of C{query} AND any of its scopes: C{word}/C{token} write a word (a
    prefix) and a scope token, C{both}/C{either} are the syntax's AND and OR.
    C{words} False: the scopes alone (every message the searcher may read)."""
    user = _hex(query.user)
    scopes = []
    if query.private:
        if query.peer is None:
            scopes.append(token(f"ps{user}") + either + token(f"pr{user}"))
        else:
            peer = _hex(query.peer)
            scopes.append(f"({token(f'ps{user}')}{both}{token(f'pr{peer}')}){either}"
                          f"({token(f'ps{peer}')}{both}{token(f'pr{user}')})")
    scopes.extend(token(f"g{_hex(log)}") for log in query.groups)
    expression = f"{scope}({either.join(scopes)})"
    if words:
        expression = f"{text}({both.join(word(w) for w in query.words)}){both}" + expression
    if query.sender is not None:
        expression += f"{both}{scope}{token(f's{_hex(query.sender)}')}"
    return expression


def _quoted(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def fts5_match(query: SearchQuery, words: bool = True) -> str:
    """SQLite: the FTS5 MATCH expression of C{query} (a table with columns C{text} and C{scope});
    C{words} False: its scopes alone."""
    return _expression(query, lambda w: _quoted(w) + "*", _quoted, " AND ", " OR ", "text : ", "scope : ",
                       words)


def fts5_scope_match(log: str, sender: str, recipient: str | None) -> str:
    """SQLite: the FTS5 MATCH expression of the documents that may hold a message (its scope tokens)."""
    return "scope : (" + " AND ".join(_quoted(token) for token in scope_tokens(log, sender, recipient).split()) + ")"


def tsquery_text(query: SearchQuery) -> str:
    """
    PostgreSQL: the argument of C{to_tsquery('simple', ...)} for C{query}
    (its words unaccented already). The document's words have weight D, its scope tokens weight
    A, so that a word never matches a scope token; a word here is letters and
    digits only, never an operator.
    """
    return _expression(query, lambda w: f"{w}:*D", lambda t: f"{t}:A", " & ", " | ")


def tsquery_words(query: SearchQuery) -> str:
    """PostgreSQL: the words of C{query} alone (weight D: never a scope token), for a query
    whose scopes are SQL conditions."""
    return " & ".join(f"{w}:*D" for w in query.words)


def sql_filters(query: SearchQuery, mark: str, prefix: str = "") -> tuple[str, list]:
    """The conditions on the time and on the groups' first SEQ, as SQL to add to a WHERE
    clause (C{mark}: the driver's placeholder) and its arguments."""
    sql, args = "", []
    if query.after is not None:
        sql += f" AND {prefix}time > {mark}"
        args.append(query.after)
    if query.before is not None:
        sql += f" AND {prefix}time < {mark}"
        args.append(query.before)
    for log_name, first_seq in query.groups.items():
        if first_seq > 1:  # an earlier group of the same name: not this group's history
            sql += f" AND NOT ({prefix}log = {mark} AND {prefix}seq < {mark})"
            args += [log_name, first_seq]
    return sql, args


# The memory database: a scan


def matches(query: SearchQuery, log: str, seq: int, time: float, sender: str, recipient, text: str) -> bool:
    """Whether a message is a result of C{query} (the reference the indexes must agree with)."""
    if not searchable(log, recipient, text):
        return False
    if log == PRIVATE_LOG:
        if not query.private or query.user not in (sender, recipient):
            return False
        if query.peer is not None and {sender, recipient} != {query.user, query.peer}:
            return False
    elif seq < query.groups.get(log, seq + 1):
        return False
    if query.sender is not None and sender != query.sender:
        return False
    if query.before is not None and not time < query.before:
        return False
    if query.after is not None and not time > query.after:
        return False
    return text_matches([fold(word) for word in query.words], text)


def word_test(word: str):
    """A test of a folded text: has it a word that begins with C{word}?"""
    return re.compile(r"(?:^|[\W_])" + re.escape(fold(word))).search


def text_matches(prefixes, text: str) -> bool:
    """Whether C{text} has, for each of C{prefixes} (folded), a word that begins with it."""
    words = words_of(fold(text))
    return all(any(w.startswith(prefix) for w in words) for prefix in prefixes)
