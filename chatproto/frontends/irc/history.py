"""
The IRC front end's history commands: C{CHATHISTORY} (draft/chathistory,
parsed by L{chathistory}), C{MARKREAD} (draft/read-marker) and C{SEARCH}
(soju.im/search, parsed by L{search}), and the batches that answer them.

Handlers take the connection (L{IRCProtocol}), the command's parameters and
tags, as the command table (L{commands}) calls them; functions a Deferred
calls take its result first, then the connection (Twisted's callbackArgs).
"""

from twisted.internet import defer
from twisted.logger import Logger

from ...core import errors as codes
from ...core.events import GROUP
from . import caps as C
from . import chathistory
from . import search as irc_search
from . import texts as T
from .rendering import render_message
from .wire import parse_server_time, server_time

log = Logger()

MAX_HISTORY = 500


def open_batch(irc, letter: str, *params: str) -> str | None:
    """A new batch of C{params} for a client with the batch cap: its name; else None."""
    if C.BATCH not in irc.caps:
        return None
    irc._batches += 1
    batch = f"{letter}{irc._batches}"
    irc.send("BATCH", "+" + batch, *params)
    return batch


# Read markers (draft/read-marker)

def irc_MARKREAD(irc, params, tags):
    """draft/read-marker: C{MARKREAD target} asks, C{MARKREAD target timestamp=…} moves it."""
    if not params or not params[0]:
        irc.send("FAIL", "MARKREAD", "NEED_MORE_PARAMS", "Missing target")
        return None
    target = params[0]
    if len(params) < 2:
        d = irc.chat.read_marker(irc.user, target)
    else:
        value = params[1]
        when = parse_server_time(value[len("timestamp="):]) if value.startswith("timestamp=") else None
        if when is None:
            irc.send("FAIL", "MARKREAD", "INVALID_PARAMS", target, "Invalid timestamp")
            return None
        d = irc.chat.mark_read(irc.user, target, time=when)
    d.addCallback(lambda marker: markread_line(irc, target, marker))

    def refused(failure):
        code = T.error_code(failure.value)
        if code is None:
            return failure
        irc.send("FAIL", "MARKREAD", "INVALID_PARAMS", target,
                 T.error_text(code, failure.value, name=target, group=target[1:]))
        return None

    return d.addErrback(refused)


def markread_line(irc, target: str, marker) -> None:
    value = f"timestamp={server_time(marker.time)}" if marker is not None and marker.time else "*"
    irc.send("MARKREAD", target, value)


def send_marker(result, irc, target: str):
    d = irc.chat.read_marker(irc.user, target)
    d.addCallback(lambda marker: markread_line(irc, target, marker))
    d.addErrback(lambda failure: None if T.error_code(failure.value) else failure)
    return result


# CHATHISTORY (draft/chathistory)

def send_history(messages, irc, target: str, prefix_text: bool = False):
    if not messages and C.BATCH not in irc.caps:
        return
    batch = open_batch(irc, "h", "chathistory", target)
    for message in messages:
        irc.write(render_message(message, irc.tag_flags, batch, prefix_text))
    if batch is not None:
        irc.send("BATCH", "-" + batch)


def irc_CHATHISTORY(irc, params, tags):
    try:
        request = chathistory.parse(params, MAX_HISTORY)
    except chathistory.Refused as refused:
        irc.send("FAIL", "CHATHISTORY", *refused.params)
        return None
    sub = params[0].upper()
    if isinstance(request, chathistory.TargetsRequest):
        d = defer.maybeDeferred(irc.chat.conversations, irc.user, request.after, request.before,
                                request.limit, request.latest)
        return d.addCallbacks(send_targets, history_failed, callbackArgs=(irc,), errbackArgs=(irc, sub, None))
    target = request.target
    if target.startswith("#"):
        d = defer.maybeDeferred(irc.chat.query_group_history, irc.user, target[1:], request.query)
    else:
        d = defer.maybeDeferred(irc.chat.query_history, irc.user, target, request.query)
    return d.addCallbacks(send_history, history_failed, callbackArgs=(irc, target),
                          errbackArgs=(irc, sub, target))


def send_targets(conversations, irc):
    batch = open_batch(irc, "h", "draft/chathistory-targets")
    for conversation in conversations:
        name = "#" + conversation.name if conversation.kind == GROUP else conversation.name
        irc.send("CHATHISTORY", "TARGETS", name, server_time(conversation.time),
                 tags=f"batch={batch}" if batch else "")
    if batch is not None:
        irc.send("BATCH", "-" + batch)


def history_failed(failure, irc, sub: str, target: str | None):
    code = T.error_code(failure.value)
    if code is None:
        log.failure("CHATHISTORY {sub} from {user}", failure, sub=sub, user=irc.nick)
        irc.send("FAIL", "CHATHISTORY", "MESSAGE_ERROR", sub, "Messages could not be retrieved")
        return None
    text = T.error_text(code, failure.value, name=target, group=(target or "")[1:])
    irc.send("FAIL", "CHATHISTORY", "INVALID_TARGET", sub, target or "*", text)
    return None


# SEARCH (soju.im/search)

def irc_SEARCH(irc, params, tags):
    try:
        request = irc_search.parse(params)
    except chathistory.Refused as refused:
        irc.send("FAIL", irc_search.COMMAND, *refused.params)
        return None
    d = defer.maybeDeferred(irc.chat.search, irc.user, request.text, request.in_, request.limit,
                            request.sender, request.before, request.after)
    return d.addCallbacks(send_found, search_failed, callbackArgs=(irc,), errbackArgs=(irc, request.in_))


def send_found(messages, irc):
    """The results in one C{soju.im/search} batch, oldest first (as every IRC batch of
    messages), each with its server-time."""
    batch = open_batch(irc, "s", C.SEARCH)
    for message in reversed(messages):
        irc.write(render_message(message, irc.tag_flags, batch))
    if batch is not None:
        irc.send("BATCH", "-" + batch)


def search_failed(failure, irc, target: str | None):
    code = T.error_code(failure.value)
    if code is None:
        log.failure("SEARCH from {user}", failure, user=irc.nick)
        irc.send("FAIL", irc_search.COMMAND, "MESSAGE_ERROR", "Messages could not be searched")
        return None
    text = T.error_text(code, failure.value, name=target, group=(target or "").removeprefix("#"))
    if code == codes.SEARCHES_WAITING:
        irc.send("FAIL", irc_search.COMMAND, "TEMPORARILY_UNAVAILABLE", text)
    else:
        irc.send("FAIL", irc_search.COMMAND, "INVALID_TARGET", target or "*", text)
    return None
