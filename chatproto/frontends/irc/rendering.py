"""
Rendering for the IRC front end: the server's names, a user's prefix, a core
Message as PRIVMSG lines with the tags a client asked for, a group's topic
and modes, and a core error as the numeric or NOTICE that answers it.

Pure functions of their arguments (C{core_error} aside, which sends its
answer on the connection it is given): the handler modules and the
event renderers (L{events}) share them.
"""

from twisted.logger import Logger

from ...core.events import GROUP
from . import caps as C
from . import texts as T
from .wire import MAX_BODY, format_tags, server_time, split_body

log = Logger()

SERVER_NAME = "chatproto"
HOST = "chatproto"  # the host part of every user's prefix: SENDER!SENDER@chatproto
VERSION = "chatproto-0.1.0"

# Tag flags of a rendered message: which tags this client gets.
TAG_TIME, TAG_ACCOUNT, TAG_MSGID = 1, 2, 4


def prefix_of(name: str) -> str:
    return f"{name}!{name}@{HOST}"


def msgid_of(message) -> str:
    if message.kind == GROUP:
        return f"g.{message.group}.{message.seq}"
    return f"p.{message.seq}"


def topic_of(info) -> str:
    kind = "Broadcast group" if info.broadcast else "Group chat"
    return f"{kind} {info.name}, owner {info.owner}"


def modes_of(info) -> str:
    return "+ntm" if info.broadcast else "+nt"


def tag_flags(caps) -> int:
    """The TAG_* flags of a connection with C{caps}."""
    flags = 0
    if C.SERVER_TIME in caps:
        flags |= TAG_TIME
    if C.ACCOUNT_TAG in caps:
        flags |= TAG_ACCOUNT
    if C.MESSAGE_TAGS in caps:
        flags |= TAG_MSGID
    return flags


def privmsg_body(sender: str, target: str, text: str) -> bytes:
    """C{:SENDER!SENDER@chatproto PRIVMSG TARGET :TEXT}, without tags or CR LF (one line of C{text})."""
    return f":{sender}!{sender}@{HOST} PRIVMSG {target} :{text}".encode("utf-8", "surrogateescape")


def render_message(message, flags: int, batch: str | None = None, prefix_text: bool = False) -> bytes:
    """
    A core Message as a PRIVMSG line, with the tags C{flags} asks for; a
    text too long for one line (512 bytes after the tags) as several, split
    by the wire's rule (L{split_body}); the first carries the msgid.
    """
    tags = []
    if batch is not None:
        tags.append(("batch", batch))
    if flags & TAG_TIME:
        tags.append(("time", server_time(message.time)))
    if flags & TAG_ACCOUNT:
        tags.append(("account", message.sender))
    target = "#" + message.group if message.kind == "group" else message.recipient
    text = message.text
    if "\n" in text or "\r" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    if prefix_text:
        text = f"[{message.timestamp}] {text}"
    body = privmsg_body(message.sender, target, text)
    if flags & TAG_MSGID:
        first = "@" + format_tags(tags + [("msgid", msgid_of(message))]) + " "
    else:
        first = "@" + format_tags(tags) + " " if tags else ""
    if len(body) <= MAX_BODY:
        return first.encode("utf-8", "surrogateescape") + body + b"\r\n" if first else body + b"\r\n"
    rest = ("@" + format_tags(tags) + " " if tags else "").encode("utf-8", "surrogateescape")
    lines = [rest + part + b"\r\n" for part in split_body(body)]
    lines[0] = first.encode("utf-8", "surrogateescape") + lines[0][len(rest):]
    return b"".join(lines)


def need_more_params(irc, command: str) -> None:
    """461 ERR_NEEDMOREPARAMS, as every command with too few parameters gets it."""
    irc.numeric(T.ERR_NEEDMOREPARAMS, command, "Not enough parameters")


def core_error(failure, irc, answers, params=(), **fields):
    """
    Answer a core failure on the connection C{irc}: C{answers} maps codes to
    a numeric (sent with C{params} before the text) or to (numeric, params);
    other codes get a NOTICE. The failure comes first, so that this is an
    errback as it is (C{d.addErrback(core_error, irc, answers)}).
    """
    code = T.error_code(failure.value)
    if code is None:
        log.failure("IRC command for {user}", failure, user=irc.nick)
        irc.notice(T.SERVER_ERROR)
        return
    text = T.error_text(code, failure.value, **fields)
    answer = answers.get(code)
    if isinstance(answer, tuple):
        answer, params = answer
    if answer is None:
        irc.notice(text)
    else:
        irc.numeric(answer, *params, text)
