"""
soju's C{soju.im/search}: a C{SEARCH} command's one parameter, a list of
C{key=value} attributes written as message tags are (C{;} between them, the
same escapes), as a question for the core's search:

    SEARCH text=hyper;in=#Jedi;from=Hans;after=2022-06-01T00:00:00.000Z;limit=20

C{text} (required): the words; C{in}: a channel (C{#GROUP}) or a nick;
C{from}: the sender; C{before}/C{after}: a server-time timestamp (also as
C{timestamp=...}, CHATHISTORY's reference form); C{limit}: 1 or more, at
most the core's 50. Unknown attributes are ignored, as soju does.
"""

from dataclasses import dataclass

from ...core.search import MAX_RESULTS
from .chathistory import Refused
from .wire import parse_server_time, parse_tags

COMMAND = "SEARCH"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    text: str
    in_: str | None = None
    sender: str | None = None
    before: float | None = None
    after: float | None = None
    limit: int = MAX_RESULTS


def parse(params) -> SearchRequest:
    """The request of C{SEARCH}'s parameters; raise L{Refused} (a C{FAIL SEARCH}'s parameters)."""
    if not params or not params[0]:
        raise Refused("INVALID_PARAMS", "Not enough parameters")
    attributes = parse_tags(params[0])
    text = attributes.get("text", "")
    if not text.strip():
        raise Refused("INVALID_PARAMS", "text", "Missing search text")
    moments = {}
    for name in ("before", "after"):
        value = attributes.get(name)
        if value is None:
            continue
        if value.lower().startswith("timestamp="):
            value = value[len("timestamp="):]
        moments[name] = parse_server_time(value)
        if moments[name] is None:
            raise Refused("INVALID_PARAMS", name, "Invalid timestamp")
    limit = attributes.get("limit", str(MAX_RESULTS))
    if not (limit.isascii() and limit.isdigit()) or int(limit) < 1:
        raise Refused("INVALID_PARAMS", "limit", "Invalid limit")
    return SearchRequest(text, attributes.get("in") or None, attributes.get("from") or None,
                         moments.get("before"), moments.get("after"), min(int(limit), MAX_RESULTS))
