"""
IRC lines: parsing incoming lines with IRCv3 message tags, formatting
outgoing ones. Text inside, bytes at the edge (L{encode}).
"""

import time as _time

# IRCv3 message-tags: the tag part may take 8191 bytes (with its "@" and the
# space after it); the rest of the line IRC's 512 (with its CR LF).
MAX_TAGS = 8191
MAX_REST = 512
MAX_LINE = MAX_TAGS + MAX_REST
MAX_BODY = MAX_REST - 2  # an outgoing line after its tags, without its CR LF
# Commands whose trailing text is split into lines of their own when too long;
# any other line is cut (its text is the server's, or a name the client sent).
SPLIT_COMMANDS = (b"PRIVMSG", b"NOTICE")

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class BadLine(ValueError):
    """A line that is not an IRC message."""


def unescape_tag_value(value: str) -> str:
    if "\\" not in value:
        return value  # the usual case: nothing to undo
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 1
            if i < len(value):
                out.append(_UNESCAPE.get(value[i], value[i]))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return value.translate(_ESCAPE)


def parse_tags(text: str) -> dict[str, str]:
    tags = {}
    for item in text.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = unescape_tag_value(value)
    return tags


class Line:
    """One parsed line: C{tags} (dict), C{prefix}, C{command} (upper case), C{params}."""

    __slots__ = ("command", "params", "prefix", "tags")

    def __init__(self, tags, prefix, command, params):
        self.tags = tags
        self.prefix = prefix
        self.command = command
        self.params = params

    def __repr__(self):
        return f"Line({self.tags!r}, {self.prefix!r}, {self.command!r}, {self.params!r})"


def parse_line(text: str) -> Line:
    """
    Parse one line (without its delimiter): C{[@TAGS] [:PREFIX] COMMAND PARAMS [:TRAILING]}.
    The same split as Twisted's C{irc.parsemsg} after the tags (the trailing
    parameter starts at the first " :"), without its exceptions and copies.
    """
    tags = {}
    text = text.lstrip(" ")
    if text.startswith("@"):
        tag_text, _, text = text[1:].partition(" ")
        tags = parse_tags(tag_text)
        text = text.lstrip(" ")
    prefix = ""
    if text.startswith(":"):
        prefix, space, text = text[1:].partition(" ")
        if not space or not text.strip():
            raise BadLine(text)
    head, colon, trailing = text.partition(" :")
    params = head.split()
    if colon:
        params.append(trailing)
    if not params:
        raise BadLine(text)
    command = params.pop(0)
    return Line(tags, prefix, command.upper(), params)


def format_line(command: str, params=(), prefix: str | None = None, tags: str = "") -> str:
    """
    One line without its delimiter. The last parameter gets a ":" when it
    needs one (empty, has a space, starts with ":"); a middle one that
    cannot be one (the same cases: a client's own text echoed back, as a
    target of FAIL) is sent as "*"; C{tags} is the already-formatted tag
    text without its "@".
    """
    parts = []
    if tags:
        parts.append("@" + tags)
    if prefix:
        parts.append(":" + prefix)
    parts.append(command)
    if params:
        params = [p.replace("\r", " ").replace("\n", " ") for p in params]
        *middle, last = params
        parts.extend(p if p and " " not in p and p[0] != ":" else "*" for p in middle)
        if not last or " " in last or last.startswith(":"):
            last = ":" + last
        parts.append(last)
    return " ".join(parts)


def format_tags(tags) -> str:
    """C{tags}: (key, value or None) pairs."""
    return ";".join(k if v is None else f"{k}={escape_tag_value(v)}" for k, v in tags)


_last_second = [None, ""]


def server_time(epoch: float) -> str:
    """IRCv3 server-time: UTC, milliseconds, e.g. C{2022-06-01T21:30:04.000Z}."""
    seconds = int(epoch)
    millis = round((epoch - seconds) * 1000)
    if millis >= 1000:
        seconds, millis = seconds + 1, millis - 1000
    if _last_second[0] != seconds:  # messages come in bursts within one second
        _last_second[0] = seconds
        _last_second[1] = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds))
    return f"{_last_second[1]}.{millis:03d}Z"


def parse_server_time(text: str) -> float | None:
    """The epoch of a server-time text, or None when it is not one."""
    import calendar

    try:
        main, _, fraction = text.rstrip("Z").partition(".")
        seconds = calendar.timegm(_time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)
    except ValueError:
        return None


def encode(line: str) -> bytes:
    """
    One line as the bytes sent, never more than 512 after its tags (see
    L{fit}): every line to an IRC client is made here or by L{fit} directly.
    """
    data = line.encode("utf-8", "surrogateescape")
    if len(data) > MAX_BODY or b"\n" in data or b"\r" in data:
        return fit(data)
    return data + b"\r\n"


def fit(data: bytes) -> bytes:
    """
    A formatted line (with its tags, without CR LF) as the lines an IRC
    client can read: CR and LF become spaces, and a line longer than 512
    bytes after its tags is split (PRIVMSG, NOTICE: L{split_body}) or cut.
    A client reading 512-byte pieces (ii) or a 64 KiB buffer (irssi) would
    take the rest of a longer line as a line of its own: a line forged by
    whoever wrote the text (issue 28, F1).
    """
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    tags = b""
    if data.startswith(b"@"):
        space = data.find(b" ")
        if space > 0:
            tags, data = data[:space + 1], data[space + 1:]
    first, *rest = split_body(data)
    # The parts after the first are other lines: a client that drops a msgid it
    # has seen (echo, playback) would drop them if they carried the same one.
    later = _without_msgid(tags) if rest else tags
    return b"".join([tags + first + b"\r\n", *(later + body + b"\r\n" for body in rest)])


def _without_msgid(tags: bytes) -> bytes:
    """C{b"@time=...;msgid=... "} without its msgid (nothing when none is left)."""
    kept = [tag for tag in tags[1:].rstrip(b" ").split(b";")
            if tag != b"msgid" and not tag.startswith(b"msgid=")]
    return b"@" + b";".join(kept) + b" " if kept else b""


def split_body(body: bytes) -> list[bytes]:
    """
    A line without tags as lines of at most L{MAX_BODY} bytes: the text of
    a PRIVMSG or NOTICE in parts, each a line with the same prefix, command
    and target (L{split_text}); any other line cut at a character boundary.
    """
    if len(body) <= MAX_BODY:
        return [body]
    head, colon, text = body.partition(b" :")
    words = head.split(b" ", 2)
    command = words[1] if head.startswith(b":") and len(words) > 1 else words[0]
    room = MAX_BODY - len(head) - 2
    if colon and command in SPLIT_COMMANDS and room >= 64:
        head += b" :"
        return [head + piece for piece in split_text(text, room)]
    return [body[:_char_start(body, MAX_BODY)]]


def split_text(text: bytes, room: int) -> list[bytes]:
    """
    C{text} (UTF-8) in pieces of at most C{room} bytes, as IRC servers and
    clients split long messages: at the last space that fits (the space
    itself dropped), else before the first character that does not fit;
    never inside a character.
    """
    pieces = []
    while len(text) > room:
        cut = text.rfind(b" ", 1, room + 1)
        if cut > 0:
            pieces.append(text[:cut])
            text = text[cut + 1:]
        else:
            cut = _char_start(text, room)
            pieces.append(text[:cut])
            text = text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces


def _char_start(data: bytes, index: int) -> int:
    """C{index}, or the start of the UTF-8 character it falls in (continuation bytes are 10xxxxxx)."""
    cut = index
    while cut > index - 4 and cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > 0 else index

