"""
Web sessions: one login of a browser, shared by its tabs and kept across a
reload.

A L{WebSession} is the core's session object (C{ISession}) for a browser
login. It is found again from the session cookie that the login set
(C{HttpOnly; SameSite=Strict}, random, never in a URL); each WebSocket of
that browser attaches to it, and every event the core gives the session
goes to all of them. When the last WebSocket closes, the session waits
L{GRACE_SECONDS} for another (a reload takes well under a second) before it
logs the user out of the core; a logout ends it at once.
"""

import secrets

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ...core.interfaces import ISession

from .texts import login_text

log = Logger()

GRACE_SECONDS = 120.0
COOKIE_NAME = "chatproto_session"


def conversation_key(kind: str, name: str) -> str:
    """C{user:NAME} (usernames are case-sensitive) or C{group:name} (group names are not)."""
    return f"user:{name}" if kind == "user" else f"group:{name.casefold()}"


def message_key(message, me: str) -> str:
    """The conversation a message belongs to, seen by user C{me}."""
    if message.kind == "group":
        return conversation_key("group", message.group)
    other = message.recipient if message.sender == me else message.sender
    return conversation_key("user", other)


class LoginRefused(Exception):
    """A login failed; C{code} is the core's, C{text} the line protocol's words for it."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


@implementer(ISession)
class WebSession:
    """The core's session for one browser login (C{ISession})."""

    frontend = "web"
    udp_port = 0  # a browser cannot receive p2p files
    wants_presence = True

    def __init__(self, store: "SessionStore", token: str, ip: str):
        self.store = store
        self.token = token
        self.ip = ip
        self.user = None
        self.sockets: list = []
        self.unread: dict[str, int] = {}
        self.ended = False
        self._grace = None

    @property
    def username(self):
        return self.user.name if self.user is not None else None

    # ISession

    def receive(self, event) -> None:
        """One core event: count it as unread where it belongs, hand it to every tab."""
        try:
            unread = None
            kind = type(event).__name__
            if kind == "Message" and self.user is not None:
                key = message_key(event, self.user.name)
                unread = self.unread[key] = self.unread.get(key, 0) + 1
            elif kind == "ReadMarker":  # read on another device of this user: read here too
                name = event.conversation
                self.mark_read(conversation_key("group", name[1:]) if name.startswith("#")
                               else conversation_key("user", name))
                return
            for socket in list(self.sockets):
                socket.event(event, unread)
        except Exception:  # noqa: BLE001 - never raise into the core
            log.failure("delivering an event to the web session of {user}", user=self.username)

    def disconnect(self, notice: str) -> None:
        """The core ends this session (kick, shutdown): tell every tab, close them."""
        self.store.ended(self, notice)

    # Tabs

    def attach(self, socket) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        self.sockets.append(socket)

    def detach(self, socket) -> None:
        if socket in self.sockets:
            self.sockets.remove(socket)
        if not self.sockets and not self.ended:
            self.start_grace()

    def start_grace(self) -> None:
        if self._grace is None or not self._grace.active():
            self._grace = self.store.clock.callLater(self.store.grace, self.store.expire, self)

    def cancel_grace(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None

    def mark_read(self, key: str, except_socket=None) -> None:
        self.unread.pop(key, None)
        for socket in list(self.sockets):
            if socket is not except_socket:
                socket.send({"type": "read", "conversation": key})


class SessionStore:
    """Every live web session, by its secret token."""

    def __init__(self, chat, clock, grace: float = GRACE_SECONDS):
        self.chat = chat
        self.clock = clock
        self.grace = grace
        self.sessions: dict[str, WebSession] = {}

    def get(self, token) -> WebSession | None:
        if not token:
            return None
        session = self.sessions.get(token)
        if session is None or session.ended or session.user is None:
            return None
        return session

    def login(self, username: str, password: str, ip: str) -> defer.Deferred:
        """Log in to the core; fires with a new L{WebSession} or fails with L{LoginRefused}."""
        token = secrets.token_urlsafe(32)
        session = WebSession(self, token, ip)
        d = defer.maybeDeferred(self.chat.login, username, password, session)

        def logged_in(user):
            session.user = user
            self.sessions[token] = session
            session.start_grace()  # until the page's WebSocket attaches
            # What was missed since the last read, on any device (the core's read markers).
            d = defer.maybeDeferred(self.chat.unread, user)
            d.addCallback(counted)
            d.addErrback(lambda f: log.failure("unread counts of {user}", f, user=username))
            return d.addCallback(lambda _: session)

        def counted(rows):
            for name, count in rows:
                key = conversation_key("group", name[1:]) if name.startswith("#") else conversation_key("user", name)
                session.unread[key] = session.unread.get(key, 0) + count

        def refused(failure):
            code = getattr(failure.value, "code", None)
            if code is None:
                log.failure("web login of {username}", failure, username=username)
                code = "server-error"
            raise LoginRefused(code, login_text(code, failure.value))

        return d.addCallbacks(logged_in, refused)

    def logout(self, session: WebSession, text: str = "") -> defer.Deferred:
        """The user logs out (or the grace ran out): end the session and the core's login."""
        if session.ended:
            return defer.succeed(None)
        user = self._end(session, {"type": "logged_out", "text": text} if text else None)
        if user is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self.chat.logout, user).addErrback(
            lambda f: log.failure("web logout of {user}", f, user=user.name))

    def expire(self, session: WebSession) -> None:
        session._grace = None
        if not session.sockets:
            self.logout(session)

    def ended(self, session: WebSession, notice: str) -> None:
        """The core ended the session (it has logged the user out itself)."""
        self._end(session, {"type": "ended", "text": notice})

    def _end(self, session: WebSession, farewell):
        session.ended = True
        session.cancel_grace()
        self.sessions.pop(session.token, None)
        user, session.user = session.user, None
        for socket in list(session.sockets):
            if farewell is not None:
                socket.send(farewell)
            socket.close()
        session.sockets = []
        return user

    def shutdown(self, notice: str) -> list:
        """Server stop: tell every tab, log every web user out; returns the Deferreds."""
        waiting = []
        for session in list(self.sessions.values()):
            user = self._end(session, {"type": "ended", "text": notice})
            if user is not None:
                waiting.append(defer.maybeDeferred(self.chat.logout, user))
        return waiting
