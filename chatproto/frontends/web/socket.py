"""
The WebSocket at C{/ws}: one L{ChatSocket} per browser tab, speaking the JSON
messages of docs/PROTOCOL.md ("WebSocket") over the core of the session its
cookie names.

Requests are objects C{{"id": N, "type": T, ...}}; each gets exactly one
C{{"type": "reply", "id": N, "ok": ...}}. Events (messages, invitations,
presence) arrive at any time as objects of their own C{type}.
"""

import dataclasses
import json
import re
import struct

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...core import errors
from ...core.errors import ChatError
from ...core.search import MAX_RESULTS, search_words
from ...twisted_internals import replace_protocol
from ..connection import MAX_REPLIES_WAITING, Connection, ConnectionFactory
from ..limits import CommandRate
from .session import conversation_key, message_key
from .texts import AWAY_CLEARED, AWAY_SET, IS_AWAY, error_text, protocol_text

log = Logger()

MAX_TEXT = 65536  # bytes of one chat message, as a line-protocol line
MAX_FRAME = 2 * MAX_TEXT + 4096  # characters of one JSON request (escapes included)
MAX_BUFFERED = MAX_FRAME + 65536  # bytes read towards one request before the socket is closed
HISTORY_DEFAULT = 50
HISTORY_MAX = 500
PING_INTERVAL = 30.0  # seconds between pings; a socket that has not answered the last one is dropped
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class _SentRun:
    """
    The private C{send}s of one read (up to another request, a pause or the
    end of the connection's share of the turn), handed to the core in one
    call (L{ChatRealm.send_privates}: one waiter and one callback for the
    run, issue 25). The core answers each by its index once it is durable and
    delivered, or refuses it; each gets its reply, by its request's id, as
    any request's.
    """

    __slots__ = ("socket", "user", "messages", "ids")

    def __init__(self, socket, user):
        self.socket = socket
        self.user = user
        self.messages = []  # (username, text), in the order sent
        self.ids = []  # their requests' ids; _ANSWERED once answered

    def answered(self, i, message) -> None:
        rid, self.ids[i] = self.ids[i], _ANSWERED
        socket = self.socket
        socket.waiting -= 1
        if message.recipient is not None and socket.chat.away_of(message.recipient):
            socket._answer_sent(message, rid)
            return
        # (_answer_sent's reply, written here: once a private message)
        last = _last_bytes  # (its event, written first, left the message's JSON here)
        data = last[2] if last[0] is message and last[1] is message.text else message_bytes(message)
        socket.send_data(b"".join((_REPLY_SENT, b"%d" % rid if type(rid) is int else _id_bytes(rid),
                                   _REPLY_MESSAGE, data, b"}")))

    def refused(self, i, error) -> None:
        rid, self.ids[i] = self.ids[i], _ANSWERED
        self.socket.waiting -= 1
        if not isinstance(error, BaseException):  # the core failed without a ChatError
            error = RuntimeError("a private message failed")
        self.socket._failed(Failure(error), rid, "send")

    def done(self) -> None:
        """(Each reply was written as it came.) The page's input goes on once half of the sends
        waiting are answered (L{ChatSocket.do_send})."""
        self.socket.answers_done()


_ANSWERED = object()


class BadRequest(Exception):
    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


def bad(detail: str) -> BadRequest:
    return BadRequest("bad-request", protocol_text("bad-request", detail=detail))


class _BatchedTransport:
    """
    What the WebSocket wire protocol writes its frames to: the connection
    layer's output (joined per reactor turn, sent straight to the socket when
    nothing waits, bounded), with everything else passed to the TCP transport.
    """

    __slots__ = ("output", "tcp")

    def __init__(self, tcp, output: Connection):
        self.tcp = tcp
        self.output = output

    def write(self, data: bytes) -> None:
        self.output.write(data)

    def writeSequence(self, data) -> None:
        self.output.write(b"".join(data))

    def loseConnection(self) -> None:
        self.output.close_when_sent()

    def __getattr__(self, name):
        return getattr(self.tcp, name)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# A JSON string as _dumps writes it (ensure_ascii=False): the C function json itself calls.
_json_string = json.encoder.encode_basestring
_scan = json.JSONDecoder().scan_once
try:  # websockets' C unmasking (issue 25): under half the time of the pure-Python one, the fallback
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # (a build without it: the pure-Python unmasking; the tests run both)
    _apply_mask = None


def loads(text: str):
    """
    C{json.loads(text)}. A page's request starts with its value and ends
    with it: json's C scanner reads it at once, without C{json.loads}'s
    Python layers (white space skipped twice, the error's words); anything
    else goes to C{json.loads} itself, so the result and the errors are
    always its.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


_SHORT_HEADS = [bytes((0x81, n)) for n in range(126)]
_HEAD16 = struct.Struct("!BBH").pack  # (one C call: half the time of to_bytes and two joins)
_HEAD64 = struct.Struct("!BBQ").pack


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 section 5.2), as a server sends it."""
    data = text.encode("utf-8", "replace")  # a lone surrogate cannot be sent as UTF-8
    n = len(data)
    if n < 126:
        return _SHORT_HEADS[n] + data
    if n < 65536:
        return _HEAD16(0x81, 126, n) + data
    return _HEAD64(0x81, 127, n) + data


def unmask(payload: bytes, mask: bytes, _from_bytes=int.from_bytes) -> bytes:
    """RFC 6455 section 5.3: the payload XOR the 4-byte masking key, repeated (one expression, the
    method bound once: a fifth less time a request than with a name for the key)."""
    if _apply_mask is not None:
        return _apply_mask(payload, mask)
    n = len(payload)
    if not n:
        return b""
    if n < 126:  # a request's usual size: the key read once, repeated by a multiplication
        return (_from_bytes(payload, "little") ^ _from_bytes(mask, "little") * _REPEAT[n] & _LOW[n]).to_bytes(
            n, "little")
    return (_from_bytes(payload, "little") ^ _from_bytes((mask * ((n >> 2) + 1))[:n], "little")).to_bytes(
        n, "little")


# For a payload of n < 126 bytes (a request's usual size): the 4-byte masking key, read as an int,
# times _REPEAT[n] is the key repeated over n bytes and a little more, _LOW[n] cuts it to n bytes
# (one multiplication instead of repeating, cutting and reading the key as bytes).
_REPEAT = [sum(1 << (32 * i) for i in range((n + 3) // 4)) for n in range(126)]
_LOW = [(1 << (8 * n)) - 1 for n in range(126)]


def frame_end(buf: bytes, pos: int) -> int:
    """Where the WebSocket frame starting at C{pos} ends; 0 while it is incomplete."""
    size = len(buf)
    if size - pos < 2:
        return 0
    b1 = buf[pos + 1]
    n = b1 & 0x7F
    mask = 4 if b1 & 0x80 else 0
    if n < 126:  # (the common frame, computed inline: one per request)
        end = pos + 2 + mask + n
    else:
        head = 4 if n == 126 else 10
        if size - pos < head:
            return 0
        end = pos + head + mask + int.from_bytes(buf[pos + 2:pos + head], "big")
    return end if end <= size else 0


class WebSocketConnection(Connection):
    """
    The connection layer under an upgraded WebSocket (see
    L{ChatSocket.negotiationStarted}), its frames being WebSocket frames.

    The common frame from a browser, one complete masked text message, is
    unmasked and handed to the socket here (wsproto's pure-Python frame
    machinery costs more than the rest of a request); every other frame
    (control frames, fragments, anything unusual or invalid) goes whole, in
    order, to Twisted's wire protocol and wsproto. Bytes towards the next
    request are counted: a peer that never completes one is cut off (Twisted
    would reassemble fragments without a limit).
    """

    __slots__ = ("channel", "in_fragment", "received", "socket", "upgraded")

    frontend = "web"
    MAX_FRAME = MAX_BUFFERED

    def __init__(self, factory, socket, channel):
        super().__init__(factory, socket.host)
        self.socket = socket
        self.channel = channel  # told when the connection is gone (None: it hears of it itself)
        self.upgraded = channel.dataReceived
        self.in_fragment = False
        self.received = 0

    frame_end = staticmethod(frame_end)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > MAX_BUFFERED:
            self.socket._too_big()
            return
        super().dataReceived(data)

    def request_complete(self) -> None:
        """A whole request arrived: the count towards the next one starts again."""
        self.received = 0

    def frame_received(self, frame: bytes) -> None:
        b0 = frame[0]
        text = None
        b1 = frame[1]
        if b0 == 0x81 and b1 & 0x80 and not self.in_fragment:  # FIN, no RSV bits, a masked text frame
            n = b1 & 0x7F  # (the frame is whole: its head is 2 bytes, the length's, the mask's 4)
            try:
                head = 6 if n < 126 else 8 if n == 126 else 14
                text = unmask(frame[head:], frame[head - 4:head]).decode("utf-8")
            except UnicodeDecodeError:
                text = None  # wsproto refuses it properly
        socket = self.socket
        if text is not None:
            socket.textMessageReceived(text)
        else:
            opcode = b0 & 0x0F
            closing = False
            if opcode in (1, 2) and not b0 & 0x80:
                self.in_fragment = True
            elif opcode == 0 and b0 & 0x80:
                self.in_fragment = False
            elif opcode == 8:
                closing = True
            # (Answered by wsproto at once, a close frame too: the sends before it go to the core first.)
            socket.send_run()
            self.upgraded(frame)
            if closing:
                self.forget_input()
                return
        if socket.closed:
            self.forget_input()

    def frame_too_long(self) -> None:
        self.socket._too_big()

    def frames_handled(self) -> None:
        self.socket.send_run()

    def who(self):
        session = self.socket.session
        return f"a web client of {session.username if session else None}"

    def log_out(self) -> None:
        self.socket.closed = True  # (its session logs out when its last tab is gone)

    def disconnect(self, notice: str) -> None:
        """Server stop: a tab the core has not told (not admitted yet) is told C{notice} and closed."""
        socket = self.socket
        if not socket.closed:
            socket.send({"type": "ended", "text": notice})
            socket.close()

    def lost(self, reason) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.connectionLost(reason)  # and so the wire protocol, the ChatSocket, the caps


# JSON shapes of the core's objects


def user_json(user, chat=None) -> dict:
    out = {"name": user.name, "since": user.since}
    away = chat.away_of(user.name) if chat is not None else None
    if away:
        out["away"] = away
    return out


def group_json(info) -> dict:
    return {
        "name": info.name,
        "owner": info.owner,
        "broadcast": bool(info.broadcast),
        "members": [{"name": name, "joined": bool(joined)} for name, joined in info.members],
    }


_last_message = (None, None, "")  # (message, its text, its JSON): its reply and its event share it


def message_text(message) -> str:
    """
    C{_dumps(message_json(message))}, written directly: a private message is
    written twice (its sender's reply, its receiver's event), and json's
    general encoder costs more than the rest of its way through this module.
    The last message's JSON is kept for the next use of the same message
    (with the same text: a deleted one's reads C{[deleted]}). Anything not
    of the usual types goes to json itself.
    """
    global _last_message
    last = _last_message
    if last[0] is message and last[1] is message.text:
        return last[2]
    seq, when = message.seq, message.time
    if type(seq) is int and type(when) is float and when - when == 0:  # (json writes NaN, inf its own way)
        string = _json_string
        recipient = getattr(message, "recipient", None)
        group = getattr(message, "group", None)
        try:  # (an f-string: compiled, a third cheaper than % with its format read each time)
            text = (f'{{"kind":{string(message.kind)},"seq":{seq},"timestamp":{string(message.timestamp)},'
                    f'"time":{when!r},"sender":{string(message.sender)},'
                    f'"recipient":{"null" if recipient is None else string(recipient)},'
                    f'"group":{"null" if group is None else string(group)},"text":{string(message.text)}}}')
        except TypeError:  # a field of another type
            text = _dumps(message_json(message))
    else:
        text = _dumps(message_json(message))
    _last_message = (message, message.text, text)
    return text


# A private message's JSON as UTF-8, for its reply and its event (issue 25, third round): the messages
# of one run (ChatRealm.send_privates) share their kind, time, timestamp, sender and recipient, so
# what comes before and after the SEQ is written once for the run (the last such context kept), and
# each message adds only its SEQ and its text; the whole is encoded once, not once per frame.
_context = (None, None, None, None, None, None, b"", b"")  # (time, timestamp, sender, recipient,
# group, kind, the bytes before the SEQ, the bytes between the SEQ and the text)
_last_bytes = (None, None, b"")  # (message, its text, its JSON as UTF-8)
_REPLY_SENT = b'{"type":"reply","id":'
_REPLY_MESSAGE = b',"ok":true,"message":'
_EVENT_MESSAGE = b'{"type":"message","message":'
_EVENT_UNREAD = b',"unread":'


def message_bytes(message) -> bytes:
    """
    C{message_text(message)} as a frame carries it (UTF-8, a lone surrogate
    replaced). Anything not of the usual types goes to L{message_text}.
    """
    global _last_bytes
    text = message.text
    last = _last_bytes
    if last[0] is message and last[1] is text:
        return last[2]
    seq, when = message.seq, message.time
    if type(seq) is int and type(when) is float and type(text) is str:
        recipient = getattr(message, "recipient", None)
        group = getattr(message, "group", None)
        c = _context
        if not (when == c[0] and message.timestamp == c[1] and message.sender == c[2] and recipient == c[3]
                and group == c[4] and message.kind == c[5]):
            c = _message_context(message, when, recipient, group)
        if c is not None:
            data = b"".join((c[6], b"%d" % seq, c[7], _json_string(text).encode("utf-8", "replace"), b"}"))
            _last_bytes = (message, text, data)
            return data
    data = message_text(message).encode("utf-8", "replace")
    _last_bytes = (message, text, data)
    return data


def _message_context(message, when, recipient, group):
    """The bytes of C{message}'s JSON around its SEQ, kept for the next messages of its run (None:
    a field of another type, or a time that json writes its own way)."""
    global _context
    if when - when != 0:  # (NaN, inf)
        return None
    kind, timestamp, sender = message.kind, message.timestamp, message.sender
    string = _json_string
    try:
        before = f'{{"kind":{string(kind)},"seq":'
        between = (f',"timestamp":{string(timestamp)},"time":{when!r},"sender":{string(sender)},'
                   f'"recipient":{"null" if recipient is None else string(recipient)},'
                   f'"group":{"null" if group is None else string(group)},"text":')
    except TypeError:  # a field of another type
        return None
    c = _context = (when, timestamp, sender, recipient, group, kind, before.encode("utf-8", "replace"),
                    between.encode("utf-8", "replace"))
    return c


def _id_bytes(rid) -> bytes:
    """A request's id (an int, a string or None) as JSON, UTF-8."""
    return b"%d" % rid if type(rid) is int else _dumps(rid).encode("utf-8", "replace")


def event_text(event, unread=None) -> str | None:
    """C{_dumps(event_json(event, unread))} (None: not for browsers); a message written directly."""
    kind = type(event).__name__
    if kind == "Message":
        if unread is None:
            return f'{{"type":"message","message":{message_text(event)}}}'
        if type(unread) is int:
            return f'{{"type":"message","message":{message_text(event)},"unread":{unread}}}'
    elif kind == "Sent":
        return f'{{"type":"message","message":{message_text(event.message)}}}'
    out = event_json(event, unread)
    return None if out is None else _dumps(out)


def message_json(message) -> dict:
    return {
        "kind": message.kind,
        "seq": message.seq,
        "timestamp": message.timestamp,
        "time": message.time,
        "sender": message.sender,
        "recipient": getattr(message, "recipient", None),
        "group": getattr(message, "group", None),
        "text": message.text,
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Core event class -> JSON type; anything else is sent as its fields under its snake_case name.
EVENT_TYPES = {
    "UserOnline": "user_online",
    "UserOffline": "user_offline",
    "MemberJoined": "member_joined",
    "MemberLeft": "member_left",
    "MessageDeleted": "message_deleted",
    "Invited": "invited",
    "ServerNotice": "notice",
    "AwayChanged": "away",
}
NOT_FOR_BROWSERS = {"FileOffer"}  # a web session has no UDP port: the core never offers it one


def event_json(event, unread=None) -> dict | None:
    name = type(event).__name__
    if name == "Message":
        out = {"type": "message", "message": message_json(event)}
        if unread is not None:
            out["unread"] = unread
        return out
    if name == "Sent":  # sent from another session of this user: shown in its conversation
        return {"type": "message", "message": message_json(event.message)}
    if name == "MembersChanged":  # the page's member list, current for invited members too
        return {"type": "members_changed", "group": event.group, "timestamp": event.timestamp,
                "members": [{"name": member, "joined": bool(joined)} for member, joined in event.members]}
    if name == "PrivateMessageDeleted":  # the page marks it [deleted] in that conversation
        return {"type": "message_deleted", "seq": event.seq, "by": event.sender, "timestamp": event.timestamp,
                "time": event.time, "message": {"kind": "private", "seq": event.seq, "sender": event.sender,
                                                "recipient": event.recipient, "group": None, "text": "[deleted]"}}
    if name in NOT_FOR_BROWSERS:
        return None
    out = {"type": EVENT_TYPES.get(name) or _snake(name)}
    if dataclasses.is_dataclass(event):
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            if isinstance(value, str | int | float | bool) or value is None:
                out[field.name] = value
    return out


MAX_EARLY_EVENTS = 4096  # events a tab holds while its first state (the hello) is read


def _string(request: dict, name: str, required=True) -> str | None:
    value = request.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise bad(f"{name} must be a non-empty string")
    return value


def _clean_text(text) -> str:
    if not isinstance(text, str):
        raise bad("text must be a string")
    if not (text.isascii() and text.isprintable()):  # (printable ASCII: nothing to replace)
        text = _CONTROL.sub(" ", text)  # a message is one line on every other front end
    if text.isascii():
        size = len(text)
    else:
        text = text.encode("utf-8", "replace").decode("utf-8")  # JSON may carry lone surrogates
        size = len(text.encode("utf-8"))
    if not text or text.isspace():
        raise BadRequest("empty-message", protocol_text("empty-message"))
    if size > MAX_TEXT:
        raise BadRequest("text-too-long", protocol_text("text-too-long"))
    return text


class ChatSocket:
    """One browser tab's WebSocket (twisted.web.websocket's C{WebSocketProtocol})."""

    __slots__ = ("_early", "_ready", "_run", "awaiting_pong", "chat", "closed", "connection", "factory", "host",
                 "login", "open", "rate", "request", "session", "tcp", "transport", "waiting")

    def __init__(self, factory: "ChatSocketFactory", request, login):
        self.factory = factory
        self.chat = factory.chat
        self.login = login  # the browser's login (its cookie)
        self.session = None  # this tab's own core session (a TabSession), once admitted
        self.request = request
        self.transport = None
        self.host = None
        self.tcp = None
        self.open = False
        self.closed = False
        self._ready = False
        self._early: list = []
        self._run = None  # the private sends of this read not yet handed to the core (a _SentRun)
        self.awaiting_pong = False
        self.waiting = 0  # private sends given to the core (or about to be) and not answered yet
        self.connection = None  # the connection layer under it, once upgraded
        self.rate = None
        if factory.rate_limit > 0:
            self.rate = CommandRate(factory.rate_limit, factory.rate_burst, factory.clock.seconds())

    # WebSocketProtocol

    def negotiationStarted(self, transport) -> None:
        self.transport = transport  # the WebSocket wire protocol
        channel = getattr(self.request, "channel", None)
        tcp = getattr(channel, "transport", None)
        self.tcp = tcp
        if tcp is None:
            return
        # After the upgrade the HTTP channel no longer needs to hear of a full buffer; we do.
        try:
            tcp.unregisterProducer()
        except Exception:  # noqa: BLE001 - a transport without a producer registered
            pass
        # The bytes now go to the WebSocket wire protocol through the connection layer, which
        # counts what arrives towards the next complete request (Twisted reassembles fragments
        # without a limit). Handing the transport to it also frees the HTTP channel and the
        # request, a few KiB a connection.
        connection = self.connection = WebSocketConnection(self.factory, self, channel)
        connection.makeConnection(tcp)
        transport.transport = _BatchedTransport(tcp, connection)
        if not replace_protocol(tcp, channel, connection):
            connection.channel = None  # the channel hears of the end itself
            channel.dataReceived = connection.dataReceived

    def negotiationFinished(self) -> None:
        # The upgraded request never finishes: let it (headers and all) go, it is not needed now.
        request, self.request = self.request, None
        requests = getattr(getattr(request, "channel", None), "requests", None)
        if isinstance(requests, list) and request in requests:
            requests.remove(request)
        self.open = True
        self.factory.opened(self)
        login = self.login
        if login is None or login.ended:
            self.send({"type": "ended", "text": "Please log in first"})
            self.close()
            return
        # This tab is a core session of its own (the parked one after a reload, else a new one).
        self.session, d = login.open_tab(self, self.host)
        d.addCallbacks(lambda _: self._hello(), self._tab_refused)

    def _tab_refused(self, failure) -> None:
        """The core did not admit this tab (the account's session limit): the page says why."""
        error = failure.value
        self.send({"type": "refused", "code": getattr(error, "code", "server-error"),
                   "text": getattr(error, "text", "Server error")})
        self.close()

    def textMessageReceived(self, text: str) -> None:
        self.connection.request_complete()
        self.awaiting_pong = False
        if self.closed:
            return
        allowed = self.rate is None or self.rate.allow(self.factory.clock.seconds())
        if len(text) > MAX_FRAME:
            self.send({"type": "error", "code": "too-long", "error": protocol_text("too-long")})
            return
        try:
            request = loads(text)
        except (ValueError, RecursionError):  # (RecursionError: nested past the decoder's depth)
            request = None
        if not isinstance(request, dict):
            self.send({"type": "error", "code": "bad-json", "error": protocol_text("bad-json")})
            return
        rid = request.get("id")
        if type(rid) is not int and (not (isinstance(rid, (int, str)) and not isinstance(rid, bool)) or (
                isinstance(rid, str) and len(rid) > 64)):
            rid = None
        kind = request.get("type")
        if not allowed:
            self._refuse(rid, "rate-limited", protocol_text("rate-limited"))
            return
        if kind == "send":
            method = None  # (the hot path below)
        else:
            method = getattr(self, f"do_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
            if method is None:
                self._refuse(rid, "unknown-type", protocol_text("unknown-type", type=str(kind)[:64]))
                return
        session = self.session
        if session is None or session.ended or session.user is None:
            self._refuse(rid, "logged-out", "Please log in first")
            return
        if kind == "send":  # the hot path: answered by the core itself, no Deferred (issue 25)
            try:
                self.do_send(request, rid, session.user)
            except Exception:  # noqa: BLE001 - a bad request, or logged as the others are
                self._failed(Failure(), rid, kind)
            return
        if self._run is not None:
            self.send_run()  # the messages before it first: what it does comes after them
        d = defer.maybeDeferred(method, request)
        d.addCallbacks(self._answer, self._failed, callbackArgs=(rid,), errbackArgs=(rid, kind))

    def bytesMessageReceived(self, data) -> None:
        self.connection.request_complete()
        self.send({"type": "error", "code": "bad-json", "error": protocol_text("bad-json")})

    def pongReceived(self, payload) -> None:
        self.awaiting_pong = False
        if not self.connection.in_fragment:  # nothing of a request waits: an idle page's pongs are
            self.connection.request_complete()  # not counted towards one (else cut off after days)

    def ping(self) -> None:
        """The factory's periodic check: a peer that did not answer the last ping is gone."""
        if self.closed or self.transport is None:
            return
        if self.awaiting_pong:
            log.info("Dropping a web client of {user}: no answer to a ping",
                     user=self.session.username if self.session else None)
            self._too_big()
            return
        self.awaiting_pong = True
        self.transport.ping(b"")

    def connectionLost(self, reason) -> None:
        self.open = False
        self.closed = True
        connection = self.connection
        if connection is not None and connection.connected:
            connection.connectionLost(reason)
        self.factory.closed(self)
        if self.session is not None:
            self.session.detach(self)

    # Output

    def send(self, obj: dict) -> None:
        self.send_text(_dumps(obj))

    def send_text(self, text: str) -> None:
        """One JSON object, already written (L{message_text}, L{event_text})."""
        self.send_data(text.encode("utf-8", "replace"))  # (a lone surrogate cannot be sent as UTF-8)

    def send_data(self, data: bytes) -> None:
        """One JSON object, already written and encoded: sent as one text frame."""
        if self._run is not None:
            # Anything written while this read's sends wait (an error, a refused or quick request)
            # comes after their answers, as when each send went to the core alone.
            self.send_run()
        if not self.open or self.closed or self.connection is None:
            return
        n = len(data)  # (text_frame's head, inline: twice a private message)
        self.connection.write((_SHORT_HEADS[n] if n < 126 else _HEAD16(0x81, 126, n) if n < 65536
                               else _HEAD64(0x81, 127, n)) + data)

    def event(self, event, unread=None) -> None:
        """An event of the core for this tab's session."""
        if not self._ready:
            if len(self._early) >= MAX_EARLY_EVENTS:
                # The tab's first state is slow to come (a slow database): rather than hold
                # events without bound, close as for a slow reader; the page connects again.
                if not self.closed:
                    log.info("Closing a tab of {user}: {n} events waited for its first state",
                             user=self.session.username if self.session else None, n=len(self._early))
                    self._early = []
                    self.close(1013)
                return
            self._early.append((event, unread))
            return
        text = event_text(event, unread)
        if text is not None:
            self.send_text(text)

    def message_event(self, message, unread) -> None:
        """L{event} for a message with its unread count (the hot path: no look at its type)."""
        if self._ready and type(unread) is int:
            self.send_data(b"".join((_EVENT_MESSAGE, message_bytes(message), _EVENT_UNREAD, b"%d" % unread,
                                     b"}")))
        else:
            self.event(message, unread)

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        self.send_run()  # the sends before it are answered first
        self.closed = True
        if self.transport is not None:
            self.transport.loseConnection(code)

    def _too_big(self) -> None:
        """Drop the connection at once (too much input, or a dead peer)."""
        if not self.closed:
            self.closed = True
            if self.tcp is not None:
                self.tcp.abortConnection()

    def _refuse(self, rid, code: str, text: str) -> None:
        self.send({"type": "reply", "id": rid, "ok": False, "code": code, "error": text})

    def _answer(self, result, rid) -> None:
        reply = {"type": "reply", "id": rid, "ok": True}
        if result:
            reply.update(result)
        self.send(reply)

    def _failed(self, failure, rid, kind) -> None:
        error = failure.value
        if isinstance(error, BadRequest):
            self._refuse(rid, error.code, error.text)
            return
        code = getattr(error, "code", None)
        if not isinstance(code, str):
            log.failure("web request {kind!r} of {user}", failure, kind=kind,
                        user=self.session.username if self.session else None)
            code = "server-error"
        self._refuse(rid, code, error_text(kind, code, error))

    # The state a tab starts from

    def _hello(self) -> None:
        session = self.session
        user = session.user
        d = self._snapshot()

        def send_hello(results):
            active, accounts, groups = results
            if session.ended or self.closed:
                return
            self._ready = True
            self.send({
                "type": "hello",
                "username": user.name,
                "since": user.since,
                "active": [user_json(u, self.chat) for u in active],
                "accounts": list(accounts),
                "groups": [group_json(g) for g in groups],
                "unread": dict(session.unread),
                "limits": {"text_bytes": MAX_TEXT, "history_max": HISTORY_MAX},
            })
            early, self._early = self._early, []
            for event, unread in early:
                # The hello's counts hold every message that came before it: each says the count
                # now, not the one when it came (which the count's answer may have corrected).
                self.event(event, unread if unread is None else session.unread_of(event))

        def failed(failure):
            log.failure("web hello for {user}", failure, user=user.name)
            self.send({"type": "error", "code": "server-error", "error": "Server error"})
            self.close(1011)

        d.addCallbacks(send_hello, failed)

    # Requests: do_<type>(request) returns a dict (or a Deferred of one) merged into the reply

    @property
    def user(self):
        return self.session.user

    def _snapshot(self) -> defer.Deferred:
        """Fires with (active users, account names, groups of this user)."""
        d = defer.gatherResults([
            defer.maybeDeferred(self.chat.active_users),
            defer.maybeDeferred(self.chat.account_names),
            defer.maybeDeferred(self.chat.groups_of, self.user.name),
        ], consumeErrors=True)
        return d.addErrback(lambda f: f.value.subFailure if isinstance(f.value, defer.FirstError) else f)

    def do_ping(self, request):
        return {}

    def do_active(self, request):
        d = defer.maybeDeferred(self.chat.active_users)
        return d.addCallback(lambda users: {"active": [user_json(u, self.chat) for u in users]})

    def do_state(self, request):
        d = self._snapshot()

        def state(results):
            active, accounts, groups = results
            return {"active": [user_json(u, self.chat) for u in active], "accounts": list(accounts),
                    "groups": [group_json(g) for g in groups], "unread": dict(self.session.unread)}

        return d.addCallback(state)

    def do_send(self, request, rid=None, user=None):
        """A private message joins this read's run (L{send_run}: the core answers each once it is
        durable, no Deferred per message, as the line protocol's /msgto); a group message goes
        to the core at once (after the run before it), answered through a Deferred."""
        user = user or self.user
        text = request.get("text")
        # (_clean_text's checks for the common text, printable ASCII, inline: it is left as it is)
        if not (type(text) is str and text.isascii() and text.isprintable() and 0 < len(text) <= MAX_TEXT) or (
                text.isspace()):
            text = _clean_text(text)
        to = request.get("to")
        if not (type(to) is str and 0 < len(to) <= 256 and request.get("group") is None):  # (_string's checks)
            to = _string(request, "to", required=False)
            group = _string(request, "group", required=False)
            if (to is None) == (group is None):
                raise bad("give either to or group")
            if to is None:
                if self._run is not None:
                    self.send_run()
                d = defer.maybeDeferred(self.chat.send_group, user, group, text)
                d.addCallbacks(self._answer_sent, self._failed, callbackArgs=(rid,), errbackArgs=(rid, "send"))
                return
        run = self._run
        if run is None:
            run = self._run = _SentRun(self, user)
        run.messages.append((to, text))
        run.ids.append(rid)
        # A page that never waits for its answers (sends pipelined ahead of their commits) is read
        # no further past MAX_REPLIES_WAITING unanswered sends, as the line protocol's /msgto: its
        # backlog waits in its socket, not in the server's memory (issue 25: unbounded, the web
        # pipeline held a quarter more memory at mid-run than the line protocol, and twice its page
        # faults; the CPU a message is the same either way).
        self.waiting += 1
        if self.waiting >= MAX_REPLIES_WAITING and self.connection is not None:
            self.connection.pause("replies")  # (the run so far goes to the core: frames_handled)

    def send_run(self) -> None:
        """This read's private sends to the core, in one call (the connection layer's frames_handled)."""
        run = self._run
        if run is None:
            return
        self._run = None
        try:
            self.chat.send_privates(run.user, run.messages, run)
        except Exception:  # noqa: BLE001 - every send not answered yet is answered all the same
            failure = Failure()
            for rid in run.ids:
                if rid is not _ANSWERED:
                    self.waiting -= 1
                    self._failed(failure, rid, "send")
            self.answers_done()

    def answers_done(self) -> None:
        """Answers to private sends were written: the input waiting for them goes on at half the bound."""
        connection = self.connection
        if self.waiting <= MAX_REPLIES_WAITING // 2 and connection is not None:
            connection.resume("replies")  # (nothing when not paused for them)

    def do_away(self, request):
        text = request.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > 4096):
            raise bad("text must be a string (blank or absent: no longer away)")
        d = defer.maybeDeferred(self.chat.set_away, self.user, text)

        def kept(away):  # (the user's other sessions, other tabs too, are told by the core)
            return {"away": away, "text": AWAY_SET if away else AWAY_CLEARED}

        return d.addCallback(kept)

    def _answer_sent(self, message, rid) -> None:
        """The reply to a send: its message, and whether its recipient is away."""
        # (The core shows it in the sender's other sessions, this browser's other tabs too: Sent.)
        away = self.chat.away_of(message.recipient) if message.recipient is not None else None
        if away:  # delivered all the same; the page says why there may be no answer soon
            self._answer({"message": message_json(message),
                          "away": IS_AWAY.format(name=message.recipient, text=away)}, rid)
        else:
            self.send_data(b"".join((_REPLY_SENT, _id_bytes(rid), _REPLY_MESSAGE, message_bytes(message),
                                     b"}")))

    def do_history(self, request):
        limit = request.get("limit", HISTORY_DEFAULT)
        before = request.get("before")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_MAX:
            raise bad(f"limit must be an integer from 1 to {HISTORY_MAX}")
        if before is not None and (not isinstance(before, int) or isinstance(before, bool) or before < 1):
            raise bad("before must be a positive integer")
        with_ = _string(request, "with", required=False)
        group = _string(request, "group", required=False)
        if (with_ is None) == (group is None):
            raise bad("give either with or group")
        if with_ is not None:
            d = defer.maybeDeferred(self.chat.history, self.user, with_, limit, before=before)
        else:
            d = defer.maybeDeferred(self.chat.group_history, self.user, group, limit, before=before)
        return d.addCallback(lambda messages: {"messages": [message_json(m) for m in messages]})

    def do_search(self, request):
        """The messages with these words, newest first (at most 50); C{in}: a user or C{#GROUP}."""
        text = request.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 1024:
            raise bad("text must be a non-empty string of at most 1024 characters")
        limit = request.get("limit", MAX_RESULTS)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RESULTS:
            raise bad(f"limit must be an integer from 1 to {MAX_RESULTS}")
        d = defer.maybeDeferred(self.chat.search, self.user, text, _string(request, "in", required=False),
                                limit)
        return d.addCallback(lambda messages: {"messages": [message_json(m) for m in messages],
                                               "words": list(search_words(text))})

    def _group_reply(self, info):
        return {"group": group_json(info)}

    def do_create_group(self, request):
        name = _string(request, "name")
        members = request.get("members")
        if not isinstance(members, list) or not members or len(members) > 1000 or not all(
                isinstance(m, str) and m for m in members):
            raise bad("members must be a non-empty list of usernames")
        broadcast = request.get("broadcast", False)
        if not isinstance(broadcast, bool):
            raise bad("broadcast must be true or false")
        d = defer.maybeDeferred(self.chat.create_group, self.user, name, members, broadcast=broadcast)
        return d.addCallback(self._group_reply)

    def do_join(self, request):
        d = defer.maybeDeferred(self.chat.join_group, self.user, _string(request, "group"))
        return d.addCallback(self._group_reply)

    def do_invite(self, request):
        d = defer.maybeDeferred(self.chat.invite, self.user, _string(request, "group"),
                                _string(request, "username"))
        return d.addCallback(self._group_reply)

    def do_leave(self, request):
        d = defer.maybeDeferred(self.chat.leave_group, self.user, _string(request, "group"))
        return d.addCallback(self._group_reply)

    def do_change_password(self, request):
        current = request.get("current")
        new = request.get("new")
        if not isinstance(current, str) or not isinstance(new, str) or len(current) > 1024 or len(new) > 1024:
            raise bad("current and new must be strings")
        d = defer.maybeDeferred(self.chat.change_password, self.user, current, new)
        return d.addCallback(lambda _: {"text": "Your password has been changed."})

    def do_delete(self, request):
        seq = request.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise bad("seq must be a positive integer")
        group = _string(request, "group", required=False)
        if group is None:
            d = defer.maybeDeferred(self.chat.delete_message, self.user, seq)
        else:
            d = defer.maybeDeferred(self.chat.delete_group_message, self.user, group, seq)
        return d.addCallback(lambda _: {"text": f"Message {seq} deleted."})

    def do_read(self, request):
        kind = request.get("kind")
        if kind not in ("user", "group"):
            raise bad("kind must be user or group")
        name = _string(request, "name")
        if kind == "user" and name.startswith("#"):  # the core reads '#NAME' as a group: no user is named so
            raise ChatError(errors.NO_SUCH_USER, name=name)
        key = conversation_key(kind, name)
        self.session.read_here(key)  # the other tabs: the core's ReadMarker
        # The user's read marker (every device): up to the conversation's newest message.
        d = defer.maybeDeferred(self.chat.mark_read, self.user, "#" + name if kind == "group" else name)

        def landed(marker):
            if marker is not None:  # (one that came just before it, unseen here, is read too)
                self.session.marked(key, marker.seq)
            return {}

        return d.addCallback(landed)


class ChatSocketFactory(ConnectionFactory):
    """
    Builds a L{ChatSocket} for each WebSocket request that passed the
    resource's checks. Its caps are the web listener's: its site counts
    every TCP connection, WebSocket or not (L{site.WebSite}); a socket's
    login is its cookie's, so there is no login deadline here.
    """

    frontend = "web"

    def __init__(self, chat, store, clock, max_output: int, rate_limit: float = 0.0, rate_burst: int = 0,
                 max_connections: int = 0, max_connections_per_ip: int = 0):
        super().__init__(chat, max_output, rate_limit, rate_burst, max_connections, max_connections_per_ip,
                         clock=clock, login_deadline=0)
        self.store = store
        self.sockets: set = set()
        self._pinger = None

    @property
    def connections(self) -> list:
        """The open pages' WebSockets, as the connection layer under each (what the server's shutdown
        waits for); the caps count the site's TCP connections instead."""
        return [socket.connection for socket in self.sockets if socket.connection is not None]

    def opened(self, socket) -> None:
        self.sockets.add(socket)
        if self._pinger is None:
            self._pinger = task.LoopingCall(self._ping)
            self._pinger.clock = self.clock
            self._pinger.start(PING_INTERVAL, now=False)

    def closed(self, socket) -> None:
        self.sockets.discard(socket)
        if socket.tcp is not None:
            self.caps.forget(socket.tcp, socket.host)  # its connection was counted by the site (WebChannel)
        if not self.sockets:
            self.stop()

    def stop(self) -> None:
        if self._pinger is not None:
            pinger, self._pinger = self._pinger, None
            if pinger.running:
                pinger.stop()

    def _ping(self) -> None:
        for socket in list(self.sockets):
            try:
                socket.ping()
            except Exception:  # noqa: BLE001 - one broken socket must not stop the others' pings
                log.failure("pinging a web client")

    def buildProtocol(self, request) -> ChatSocket:
        session = getattr(request, "chat_session", None)
        socket = ChatSocket(self, request, session)
        socket.host = getattr(request.getClientAddress(), "host", None)
        return socket


__all__ = ["ChatSocket", "ChatSocketFactory", "event_json", "message_key"]
