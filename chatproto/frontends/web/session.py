"""
Web sessions: a browser's login, and one core session for each of its tabs.

A L{WebSession} is a browser's login: found again from the session cookie
that the login set (C{HttpOnly; SameSite=Strict}, random, never in a URL).
Each WebSocket of that browser (each tab) is a core session of its own, a
L{TabSession} (the core's C{ISession}): it counts against C{--max-sessions},
is listed by C{/sessions}, and is shown what the user's other sessions send
(the core's C{Sent}), other tabs of the same browser included, as every other
device is. The password is checked once, by the login; a further tab is
admitted by the core on the cookie's word (L{ChatRealm.add_session}), refused
with C{This account is already logged in} past the session limit.

When a tab closes while the browser has other tabs, its core session ends at
once. When the last one closes, its core session is kept for
L{GRACE_SECONDS}, without a socket, for the next WebSocket of that browser
(a reload takes well under a second): presence, the session count and the
unread counts do not move. After that the login ends, as a logout does.
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
# What a tab remembers of the messages and read markers that arrive while its count is asked
# for (a storage round trip): past this many, that count is asked again rather than kept growing.
MAX_HELD = 256


def conversation_key(kind: str, name: str) -> str:
    """C{user:NAME} (usernames are case-sensitive) or C{group:name} (group names are not)."""
    return f"user:{name}" if kind == "user" else f"group:{name.casefold()}"


def message_key(message, me: str) -> str:
    """The conversation a message belongs to, seen by user C{me}."""
    if message.kind == "group":
        return conversation_key("group", message.group)
    # conversation_key("user", ...), inline: one call less for every message a tab gets
    return "user:" + (message.recipient if message.sender == me else message.sender)


def shown_key(name: str) -> str:
    """The page's key of a conversation the core names C{USER} or C{#GROUP}."""
    return conversation_key("group", name[1:]) if name.startswith("#") else conversation_key("user", name)


class LoginRefused(Exception):
    """A login failed; C{code} is the core's, C{text} the line protocol's words for it."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


@implementer(ISession)
class TabSession:
    """The core's session for one tab of a browser login (C{ISession}): one WebSocket."""

    # one per open tab: no instance dict
    __slots__ = ("_again", "_held", "ip", "login", "newest", "socket", "unread", "user")
    frontend = "web"
    udp_port = 0  # a browser cannot receive p2p files
    wants_presence = True

    def __init__(self, login: "WebSession", ip: str):
        self.login = login
        self.ip = ip
        self.user = None  # the core's avatar, once admitted
        self.socket = None  # None: parked (the browser's last tab closed) or not attached yet
        # The server's unread counts as this tab knows them: conversation key -> count, and the
        # newest SEQ that count holds (a READ up to it, or beyond, reads them all).
        self.unread: dict[str, int] = {}
        self.newest: dict[str, int] = {}
        # While a count is asked for (None: not): what arrived meanwhile, replayed on its answer.
        self._held: list | None = None
        self._again = False  # a further count wanted once this one answers

    @property
    def username(self):
        return self.login.username

    @property
    def ended(self) -> bool:
        return self.login.ended

    # ISession

    def receive(self, event) -> None:
        """One core event: count it as unread where it belongs, hand it to the tab."""
        try:
            unread = None
            kind = type(event).__name__
            if kind == "Message":
                key = message_key(event, self.login.username)
                if self._held is not None:  # (a count on its way: rare; the hot path skips it)
                    self._hold("message", key, event.seq)
                unread = self._arrived(key, event.seq)
            elif kind == "ReadMarker":  # read on another tab or device of this user: read here too
                key = shown_key(event.conversation)
                self._hold("read", key, event.seq)
                self._read(key, event.seq)
                return
            elif kind == "MessageDeleted":  # maybe one counted unread here: the server counts again
                key = conversation_key("group", event.group)
                if event.seq <= self.newest.get(key, 0):
                    self._recount()
            elif kind == "PrivateMessageDeleted":  # the same for a private one (message_key: "private")
                key = conversation_key("user", event.sender)
                if event.sender != self.login.username and event.seq <= self.newest.get(key, 0):
                    self._recount()
            socket = self.socket
            if socket is not None:
                if unread is None:
                    socket.event(event, None)
                else:  # (a message)
                    socket.message_event(event, unread)
        except Exception:  # noqa: BLE001 - never raise into the core
            log.failure("delivering an event to the web session of {user}", user=self.username)

    # Unread counts: the server's (its read markers), kept here as messages and markers arrive

    def _arrived(self, key: str, seq: int) -> int:
        """A message of conversation C{key}: one more unread, unless a count already holds it."""
        if seq > self.newest.get(key, 0):
            self.newest[key] = seq
            self.unread[key] = self.unread.get(key, 0) + 1
        return self.unread.get(key, 0)

    def _read(self, key: str, seq: int) -> None:
        """
        The user's read marker of C{key} moved to C{seq} elsewhere: up to the
        newest message counted, nothing is left; short of it, the messages after
        it still are, and the server counts them (this tab knows no older SEQs).
        """
        if seq < self.newest.get(key, 0):
            if self._held is None:  # (while a count is asked for, its answer settles it)
                self.count(tell=True)
            return
        self.unread.pop(key, None)
        self.newest.pop(key, None)
        if self.socket is not None:
            self.socket.send({"type": "read", "conversation": key})

    def read_here(self, key: str) -> None:
        """This tab read conversation C{key} (its page opened it): nothing left there."""
        self.unread.pop(key, None)
        self.newest.pop(key, None)

    def marked(self, key: str, seq: int) -> None:
        """This tab's read landed on SEQ C{seq}: what arrived after it is unread after all."""
        self._hold("read", key, seq)
        self._read(key, seq)

    def _hold(self, what: str, key: str, seq: int) -> None:
        held = self._held
        if held is not None:
            if len(held) < MAX_HELD:
                held.append((what, key, seq))
            else:
                self._again = True

    def _recount(self) -> None:
        """The counts may have changed in a way only the server knows: asked again (once at a time)."""
        if self._held is not None:
            self._again = True  # (this count's answer may predate the change)
        else:
            self.count(tell=True)

    def unread_of(self, message) -> int:
        """The unread count now of C{message}'s conversation."""
        return self.unread.get(message_key(message, self.login.username), 0)

    def count(self, tell: bool = False) -> defer.Deferred:
        """
        Ask the core for the unread counts (what was missed since the last read,
        on any device) and take them as this tab's. A message that arrives
        while they are asked for is in them or not, whatever the order of its
        arrival and their answer: the answer names the newest SEQ it counted in
        each conversation, and what arrived meanwhile is replayed on it.
        C{tell}: the page is told of every count that changed (a C{read} event
        with the count left).
        """
        self._held = []
        self._again = False
        d = defer.maybeDeferred(self.login.store.chat.unread, self.user, True)
        d.addCallback(self._counted, tell)
        return d.addErrback(self._not_counted)

    def _counted(self, rows, tell: bool) -> None:
        held, self._held = self._held, None
        before, before_newest = self.unread, self.newest
        self.unread, self.newest = {}, {}
        for name, count, seq in rows:
            key = shown_key(name)
            self.unread[key] = count
            self.newest[key] = seq
        if self._again:  # too much arrived meanwhile to replay: counted again, from the server
            self.unread, self.newest = before, before_newest
            self.count(tell=True)
            return
        for what, key, seq in held:
            if what == "message":
                self._arrived(key, seq)
            elif seq >= self.newest.get(key, 0):
                self.unread.pop(key, None)
                self.newest.pop(key, None)
            else:  # read up to a SEQ before the newest counted: before or after the count? Ask again.
                self._again = True
        if self._again:
            self.count(tell=True)
            return
        if tell and self.socket is not None:
            for key in sorted(before.keys() | self.unread.keys()):
                if before.get(key, 0) != self.unread.get(key, 0):
                    self.socket.send({"type": "read", "conversation": key, "unread": self.unread.get(key, 0)})

    def _not_counted(self, failure) -> None:
        self._held = None
        log.failure("unread counts of {user}", failure, user=self.username)

    def disconnect(self, notice: str) -> None:
        """The core ends this session (kick, /logout all, shutdown): the browser's whole login ends."""
        self.login.store.ended(self.login, notice)

    def detach(self, socket) -> None:
        """The tab's WebSocket closed."""
        if self.socket is socket:
            self.socket = None
            if self.user is not None:
                self.login.tab_gone(self)


class WebSession:
    """A browser's login (its cookie): the core sessions of its tabs."""

    def __init__(self, store: "SessionStore", token: str, ip: str):
        self.store = store
        self.token = token
        self.ip = ip
        self.username = None
        self.tabs: list[TabSession] = []  # every live core session of this login, parked one too
        self.parked: TabSession | None = None  # the one kept without a socket
        self.ended = False
        self._grace = None

    def open_tab(self, socket, ip: str | None = None):
        """
        A WebSocket of this browser opened: C{(tab, d)}, its L{TabSession}
        and a Deferred that fires once the core has admitted it (at once
        when it takes over the parked session), or fails with
        L{LoginRefused} (the session limit).
        """
        parked = self.parked
        if parked is not None:
            self.parked = None
            self.cancel_grace()
            parked.socket = socket
            return parked, defer.succeed(parked)
        tab = TabSession(self, ip or self.ip)
        tab.socket = socket
        self.tabs.append(tab)
        d = defer.maybeDeferred(self.store.chat.add_session, self.username, tab)

        def admitted(user):
            tab.user = user
            if self.ended or tab not in self.tabs:  # logged out meanwhile
                self.store.chat.logout(user)
                raise LoginRefused("logged-out", "Please log in first")
            if tab.socket is None:  # the tab closed meanwhile
                self.tab_gone(tab)
                return tab
            return self.store.count_unread(tab).addCallback(lambda _: tab)

        def refused(failure):
            if tab in self.tabs:
                self.tabs.remove(tab)
            if failure.check(LoginRefused):
                return failure
            code = getattr(failure.value, "code", None)
            if code is None:
                log.failure("another tab of {user}", failure, user=self.username)
                code = "server-error"
            raise LoginRefused(code, login_text(code, failure.value))

        return tab, d.addCallbacks(admitted, refused)

    def tab_gone(self, tab: TabSession) -> None:
        """A tab's WebSocket closed: its core session ends, unless it was the browser's last tab."""
        if self.ended or tab not in self.tabs:
            return
        if self.parked is None and not any(t.socket is not None for t in self.tabs if t is not tab):
            self.parked = tab  # a reload comes back to it
            self.start_grace()
            return
        self.tabs.remove(tab)
        d = defer.maybeDeferred(self.store.chat.logout, tab.user)
        d.addErrback(lambda f: log.failure("web logout of a tab of {user}", f, user=self.username))

    def start_grace(self) -> None:
        if self._grace is None or not self._grace.active():
            self._grace = self.store.clock.callLater(self.store.grace, self.store.expire, self)

    def cancel_grace(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None


class SessionStore:
    """Every live browser login, by its secret token."""

    def __init__(self, chat, clock, grace: float = GRACE_SECONDS):
        self.chat = chat
        self.clock = clock
        self.grace = grace
        self.sessions: dict[str, WebSession] = {}

    def get(self, token) -> WebSession | None:
        if not token:
            return None
        session = self.sessions.get(token)
        if session is None or session.ended or session.username is None:
            return None
        return session

    def login(self, username: str, password: str, ip: str) -> defer.Deferred:
        """
        Log in to the core; fires with a new L{WebSession} (its first tab's
        core session parked for the page's WebSocket) or fails with
        L{LoginRefused}.
        """
        token = secrets.token_urlsafe(32)
        session = WebSession(self, token, ip)
        tab = TabSession(session, ip)
        d = defer.maybeDeferred(self.chat.login, username, password, tab)

        def logged_in(user):
            tab.user = user
            session.username = user.name
            session.tabs.append(tab)
            session.parked = tab
            self.sessions[token] = session
            session.start_grace()  # until the page's WebSocket attaches
            return self.count_unread(tab).addCallback(lambda _: session)

        def refused(failure):
            code = getattr(failure.value, "code", None)
            if code is None:
                log.failure("web login of {username}", failure, username=username)
                code = "server-error"
            raise LoginRefused(code, login_text(code, failure.value))

        return d.addCallbacks(logged_in, refused)

    def count_unread(self, tab: TabSession) -> defer.Deferred:
        """What was missed since the last read, on any device (the core's read markers)."""
        return tab.count()

    def logout(self, session: WebSession, text: str = "") -> defer.Deferred:
        """The user logs out (or the grace ran out): end every tab's core session."""
        if session.ended:
            return defer.succeed(None)
        users = self._end(session, {"type": "logged_out", "text": text} if text else None)
        return self._logout(users)

    def _logout(self, users) -> defer.Deferred:
        waiting = []
        for user in users:
            d = defer.maybeDeferred(self.chat.logout, user)
            waiting.append(d.addErrback(lambda f, name=user.name: log.failure(
                "web logout of {user}", f, user=name)))
        return defer.gatherResults(waiting)

    def expire(self, session: WebSession) -> None:
        session._grace = None
        if session.parked is not None:
            self.logout(session)

    def ended(self, session: WebSession, notice: str) -> None:
        """The core ended a session of this login: the login ends, every tab told (the core logs
        out the sessions it ends; any other tab is logged out here, once)."""
        if not session.ended:
            self._logout(self._end(session, {"type": "ended", "text": notice}))

    def _end(self, session: WebSession, farewell) -> list:
        """End the login: every tab told C{farewell} and closed; the core's users to log out."""
        session.ended = True
        session.cancel_grace()
        self.sessions.pop(session.token, None)
        tabs, session.tabs, session.parked = session.tabs, [], None
        for tab in tabs:
            socket, tab.socket = tab.socket, None
            if socket is not None:
                if farewell is not None:
                    socket.send(farewell)
                socket.close()
        return [tab.user for tab in tabs if tab.user is not None and not tab.user.gone]

    def shutdown(self, notice: str) -> list:
        """Server stop: tell every tab, log every web user out; returns the Deferreds."""
        waiting = []
        for session in list(self.sessions.values()):
            waiting.append(self._logout(self._end(session, {"type": "ended", "text": notice})))
        return waiting
