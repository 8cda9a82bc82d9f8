"""
IRCv3 C{draft/chathistory}: a C{CHATHISTORY} command's parameters as a
question for the core (L{HistoryQuery}, or the span of time of C{TARGETS}),
with ergo's semantics:

    CHATHISTORY LATEST  <target> <* | ref> <limit>   the last messages (after ref)
    CHATHISTORY BEFORE  <target> <ref> <limit>       ("*": as LATEST *)
    CHATHISTORY AFTER   <target> <ref> <limit>
    CHATHISTORY AROUND  <target> <ref> <limit>
    CHATHISTORY BETWEEN <target> <ref | *> <ref | *> <limit>
    CHATHISTORY TARGETS <timestamp=> <timestamp=> <limit>

A reference is C{msgid=ID} (a message of that conversation) or
C{timestamp=YYYY-MM-DDThh:mm:ss.sssZ}. Times are shown to the millisecond
(rounded), so a timestamp stands for that millisecond: a range that starts
or ends at it leaves out every message shown with that time, as ergo does.
"""

from dataclasses import dataclass

from ...core.history import AFTER, AROUND, BEFORE, BETWEEN, LATEST, HistoryQuery
from ...core.interfaces import Bound
from ...core.markers import MAX_SEQ
from .wire import parse_server_time

SUBCOMMANDS = {"LATEST": LATEST, "BEFORE": BEFORE, "AFTER": AFTER, "AROUND": AROUND, "BETWEEN": BETWEEN}
TARGETS = "TARGETS"
# A msgid of another conversation, or of none: SEQ 0 is no message's, so the answer is empty.
NO_MESSAGE = Bound(seq=0)
_HALF_MS = 0.0005


class Refused(Exception):
    """The parameters of a FAIL CHATHISTORY reply (after the command)."""

    def __init__(self, *params: str):
        super().__init__(*params)
        self.params = params


@dataclass(frozen=True, slots=True)
class TargetsRequest:
    """TARGETS: conversations with a message strictly between two epoch times."""

    after: float
    before: float
    limit: int
    latest: bool


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    target: str
    query: HistoryQuery


def parse(params, max_limit: int):
    """A L{HistoryRequest} or a L{TargetsRequest}; raise L{Refused} when the parameters are wrong."""
    if len(params) < 3:
        raise Refused("INVALID_PARAMS", *params[:1], "Not enough parameters")
    sub = params[0].upper()
    if sub == TARGETS:
        return _targets(params, max_limit)
    kind = SUBCOMMANDS.get(sub)
    if kind is None:
        raise Refused("UNKNOWN_COMMAND", params[0], "Unknown CHATHISTORY subcommand")
    target = params[1]
    if kind == LATEST and len(params) == 3:  # LATEST <target> <limit>: as LATEST <target> * <limit>
        params = [*params[:2], "*", params[2]]
    wanted = 5 if kind == BETWEEN else 4
    if len(params) < wanted:
        raise Refused("INVALID_PARAMS", sub, "Not enough parameters")
    limit = _limit(sub, params[wanted - 1], max_limit)
    references = [_reference(sub, target, text, kind) for text in params[2:wanted - 1]]
    return HistoryRequest(target, HistoryQuery(kind, limit, *references))


def _limit(sub: str, text: str, max_limit: int) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise Refused("INVALID_PARAMS", sub, text, "Invalid limit")
    return min(int(text), max_limit)


def _reference(sub: str, target: str, text: str, kind: str) -> Bound | None:
    if text == "*" and kind in (LATEST, BEFORE, BETWEEN):
        return None
    name, _, value = text.partition("=")
    name = name.lower()
    if name == "msgid" and value:
        return _msgid(target, value)
    if name == "timestamp":
        moment = parse_server_time(value)
        if moment is not None:
            return Bound(time=moment - _HALF_MS, until=moment + _HALF_MS)
    raise Refused("INVALID_PARAMS", sub, text, "Invalid message reference")


def _msgid(target: str, msgid: str) -> Bound:
    """The message C{msgid} names (L{msgid_of}: C{p.SEQ}, C{g.GROUP.SEQ}), if it is of C{target}'s conversation."""
    head, _, seq = msgid.rpartition(".")
    if not (seq.isascii() and seq.isdigit()) or int(seq) > MAX_SEQ:  # beyond any database's SEQ
        return NO_MESSAGE
    if target.startswith("#"):
        if head.lower() != "g." + target[1:].lower():
            return NO_MESSAGE
    elif head != "p":
        return NO_MESSAGE
    return Bound(seq=int(seq))


def _targets(params, max_limit: int) -> TargetsRequest:
    if len(params) < 4:
        raise Refused("INVALID_PARAMS", TARGETS, "Not enough parameters")
    limit = _limit(TARGETS, params[3], max_limit)
    moments = []
    for text in params[1:3]:
        name, _, value = text.partition("=")
        moment = parse_server_time(value) if name.lower() == "timestamp" else None
        if moment is None:
            raise Refused("INVALID_PARAMS", TARGETS, text, "Invalid timestamp")
        moments.append(moment)
    start, end = moments
    # Backwards (the first after the second): the newest conversations of the span.
    low, high = sorted(moments)
    return TargetsRequest(low + _HALF_MS, high - _HALF_MS, limit, latest=start > end)
