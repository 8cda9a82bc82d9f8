"""
Questions about a conversation's history, and how each is answered with the
storage's ranges (L{IChatStorage.private_range}, C{group_range}): the latest
messages, those before or after a reference, around it, or between two.

A reference is a L{Bound}: a message (its SEQ) or a moment (an epoch time).
Messages are in the order they were sent, C{(time, seq)}; every answer is
oldest first.
"""

from dataclasses import dataclass, replace

from twisted.internet import defer

from .interfaces import Bound  # noqa: F401 - in the annotations

LATEST, BEFORE, AFTER, AROUND, BETWEEN = "latest", "before", "after", "around", "between"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """
    C{LATEST}: the last C{limit} messages (after C{start} when given);
    C{BEFORE}/C{AFTER}: the C{limit} messages nearest to C{start} on that side;
    C{AROUND}: C{limit} messages about C{start} (a message referred to is one of them);
    C{BETWEEN}: from C{start} towards C{end}, whichever comes first in time.
    """

    kind: str
    limit: int
    start: Bound | None = None
    end: Bound | None = None


def answer(query: HistoryQuery, fetch, limit: int) -> defer.Deferred:
    """
    The messages C{query} asks for, at most C{limit}; C{fetch(after, before,
    limit, latest)} reads one range of the conversation (a Deferred list).
    """
    kind, start, end = query.kind, query.start, query.end
    if limit <= 0:
        return defer.succeed([])
    if kind == LATEST:
        return fetch(start, None, limit, True)
    if kind == BEFORE:
        return fetch(None, start, limit, True)
    if kind == AFTER:
        return fetch(start, None, limit, False)
    if kind == AROUND:
        return _around(fetch, start, limit)
    if kind == BETWEEN:
        return _between(fetch, start, end, limit)
    raise ValueError(f"unknown history query {kind!r}")


@defer.inlineCallbacks
def _around(fetch, reference: Bound, limit: int):
    # Half before the reference, the rest from it on (the message referred to included).
    before = (yield fetch(None, reference, limit // 2, True)) if limit > 1 else []
    since = replace(reference, inclusive=True)
    after = yield fetch(since, None, limit - len(before), False)
    return list(before) + list(after)


@defer.inlineCallbacks
def _between(fetch, start: Bound | None, end: Bound | None, limit: int):
    if start is None or end is None:  # "*": open on that side
        messages = yield fetch(start, end, limit, start is None)
        return messages
    # Forwards when start comes first; otherwise that range is empty, and the
    # answer is the one backwards from start (the newest of the span).
    messages = yield fetch(start, end, limit, False)
    if not messages:
        messages = yield fetch(end, start, limit, True)
    return messages
