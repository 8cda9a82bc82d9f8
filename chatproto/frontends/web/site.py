"""
The web front end's HTTP side: the page, its assets, the login and logout
requests that set and clear the session cookie, and the WebSocket at C{/ws}.

    GET  /            the page (static/index.html)
    GET  /static/...  its scripts, styles and icon
    GET  /session     {"ok": true, "username": U} for a live session cookie, else {"ok": false}
    POST /login       {"username", "password"} -> sets the cookie, or the login's error text
    POST /logout      ends the session, clears the cookie
    GET  /ws          the WebSocket (same Origin only, a live session cookie only)

Every response carries a Content-Security-Policy that allows scripts, styles
and connections from this server only (no inline script, no frames).
"""

import json
import os

from twisted.logger import Logger
from twisted.web import http, resource, server
from twisted.web.websocket import WebSocketResource

from .session import COOKIE_NAME, LoginRefused

log = Logger()

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_BODY = 16 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    b"Content-Security-Policy": CSP.encode(),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
    b"Cache-Control": b"no-cache",
}


class WebRequest(server.Request):
    """A request with the security headers set, and a bounded body."""

    _body_size = 0
    _body_too_large = False

    def gotLength(self, length):
        if length is not None and length > MAX_BODY:
            self._body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._body_too_large:
            return
        self._body_size += len(data)
        if self._body_size > MAX_BODY:
            self._body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)

    def process(self):
        for name, value in SECURITY_HEADERS.items():
            self.responseHeaders.setRawHeaders(name, [value])
        if self._body_too_large:
            self.site = self.channel.site
            self.setResponseCode(413)
            self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            self.write(b"Request body too large\n")
            self.finish()
            return
        super().process()


HEADER_DEADLINE = 20.0  # seconds a request has for its request line and headers, however it trickles


class WebChannel(http.HTTPChannel):
    """
    An HTTP connection of the web front end: counted against the listener's
    connection caps (L{WebSite.buildProtocol}) until it is gone, WebSocket
    or not; and a request's head (request line and headers) must be
    complete within L{HEADER_DEADLINE} seconds of its first byte. Twisted's
    idle timer (which still closes a connection that sends nothing) starts
    again with each byte: a byte every 20 s kept a connection forever
    (issue 28, F2).
    """

    caps_host = None
    header_deadline = HEADER_DEADLINE
    _deadline = None
    _awaiting_head = True  # no request under way: the next byte starts one's head

    def connectionMade(self):
        super().connectionMade()
        # Counted by its transport: after a WebSocket upgrade this channel no longer
        # hears of the end (the WebSocket does: ChatSocketFactory.closed forgets it).
        caps = getattr(self.site, "caps", None)
        if caps is not None:
            caps.add(self.transport, self.caps_host)

    def dataReceived(self, data):
        if self._awaiting_head and self._deadline is None and self.header_deadline:
            self._deadline = self.callLater(self.header_deadline, self._headers_late)
        super().dataReceived(data)

    def _headers_late(self) -> None:
        self._deadline = None
        log.info("Closing {peer}: no complete request within {seconds:.0f} seconds",
                 peer=self.caps_host, seconds=self.header_deadline)
        self.transport.abortConnection()

    def allHeadersReceived(self):
        self._awaiting_head = False
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()
        super().allHeadersReceived()

    def requestDone(self, request):
        super().requestDone(request)
        if not self.requests:
            self._awaiting_head = True  # the next request's head has the same deadline

    def connectionLost(self, reason):
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()
        caps = getattr(self.site, "caps", None)
        if caps is not None:
            caps.forget(self.transport, self.caps_host)
        super().connectionLost(reason)


def _web_channel(site) -> WebChannel:
    # HTTP/1.1 only (no HTTP/2 negotiation wrapper): what the page and its WebSocket speak.
    return WebChannel()


def http_refusal(text: str) -> bytes:
    """The whole HTTP response to a connection over the caps: 503 and why."""
    body = text.encode("utf-8") + b"\n"
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


class WebSite(server.Site):
    """
    The web listener's factory. Every TCP connection, plain HTTP or one
    that becomes a WebSocket, counts against C{caps} (the front end's
    L{ConnectionCaps}); one over a cap is answered 503 and closed, and
    counted as refused (C{chat.note}).
    """

    requestFactory = WebRequest
    protocol = _web_channel
    displayTracebacks = False
    noisy = False

    def __init__(self, resource, *args, caps=None, chat=None, sockets=None, **kwargs):
        super().__init__(resource, *args, **kwargs)
        self.caps = caps
        self.chat = chat
        self.sockets = sockets  # the ChatSocketFactory of its pages' WebSockets

    @property
    def connections(self):
        """The connections the server's shutdown tells, flushes and waits for: the pages'
        WebSockets (a plain HTTP request is brief and is not waited for)."""
        return self.sockets.connections if self.sockets is not None else ()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if self.caps is not None:
            refusal = self.caps.refused(host, self.chat, "web", http_refusal)
            if refusal is not None:
                return refusal
        channel = super().buildProtocol(addr)
        channel.caps_host = host
        return channel

    def log(self, request):
        """No access log: it would only repeat what the chat's own log says."""


def expected_origin(request) -> str:
    host = (request.getHeader("host") or "").lower()
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host}"


def origin_allowed(request, extra=()) -> bool:
    """
    A browser always sends C{Origin} on a WebSocket handshake and a POST: it
    must be this server's own (or one configured in C{extra}). A request
    without one does not come from a page, so no page can ride on a cookie.
    """
    origin = request.getHeader("origin")
    if origin is None:
        return True
    origin = origin.lower()
    return origin == expected_origin(request) or origin in extra


def json_response(request, status: int, obj: dict) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def session_token(request) -> str | None:
    raw = request.getCookie(COOKIE_NAME.encode())
    if raw is None:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def set_cookie(request, token: str) -> None:
    request.addCookie(COOKIE_NAME, token, path="/", httpOnly=True, sameSite="strict",
                      secure=bool(request.isSecure()))


def clear_cookie(request) -> None:
    request.addCookie(COOKIE_NAME, "", path="/", httpOnly=True, sameSite="strict",
                      secure=bool(request.isSecure()), max_age="0",
                      expires="Thu, 01 Jan 1970 00:00:00 GMT")


def plain(request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return text.encode("utf-8") + b"\n"


class Plain(resource.Resource):
    """
    A resource whose errors are plain text: an unknown child is a 404 and a
    method it does not take a 405 (Twisted's own error pages are deprecated).
    """

    def getChild(self, path, request):
        return _Forbidden()

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        handler = getattr(self, "render_" + method, None)
        if handler is None and method == "HEAD":
            handler = getattr(self, "render_GET", None)
        if handler is None:
            allowed = [name[len("render_"):] for name in dir(self)
                       if name.startswith("render_") and name[len("render_"):].isupper()]
            request.setHeader(b"Allow", ", ".join(sorted(allowed)).encode())
            return plain(request, 405, "Method not allowed")
        return handler(request)


class _Forbidden(resource.Resource):
    isLeaf = True

    def render(self, request):
        return plain(request, 404, "Not found")


CONTENT_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".html": b"text/html; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}


class Asset(Plain):
    isLeaf = True

    def __init__(self, path: str, content_type: bytes):
        super().__init__()
        self.path = path
        self.content_type = content_type

    def render_GET(self, request):
        if request.postpath and request.postpath != [b""]:
            return _Forbidden().render(request)
        with open(self.path, "rb") as f:
            body = f.read()
        request.setHeader(b"Content-Type", self.content_type)
        return body

    render_HEAD = render_GET


class StaticFiles(Plain):
    """The assets directory: only the files it holds at start-up, no listing, no subdirectories."""

    def __init__(self, directory: str):
        super().__init__()
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            content_type = CONTENT_TYPES.get(os.path.splitext(name)[1])
            if os.path.isfile(path) and content_type is not None:
                self.putChild(name.encode(), Asset(path, content_type))

    def render_GET(self, request):
        return plain(request, 404, "Not found")


class Page(Asset):
    """GET /: the one page."""

    def __init__(self, path: str):
        super().__init__(path, CONTENT_TYPES[".html"])


class JSONPost(Plain):
    """A same-origin JSON POST."""

    isLeaf = True

    def __init__(self, store, origins):
        super().__init__()
        self.store = store
        self.origins = origins

    def render_POST(self, request):
        if not origin_allowed(request, self.origins):
            return json_response(request, 403, {"ok": False, "code": "foreign-origin",
                                                "error": "Forbidden: foreign Origin"})
        content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return json_response(request, 415, {"ok": False, "code": "bad-request",
                                                "error": "Expected application/json"})
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):  # (RecursionError: nested too deep)
            body = None
        if not isinstance(body, dict):
            return json_response(request, 400, {"ok": False, "code": "bad-request",
                                                "error": "Invalid request: not a JSON object"})
        return self.post(request, body)


def _finish(request, status, obj):
    if request.channel is not None and not request.finished:  # no channel: the connection is gone
        request.write(json_response(request, status, obj))
        request.finish()


class Login(JSONPost):
    def post(self, request, body):
        username = body.get("username")
        password = body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username or (
                len(username) > 256 or len(password) > 1024):
            return json_response(request, 400, {"ok": False, "code": "bad-request",
                                                "error": "Please enter a username and a password"})
        ip = request.getClientAddress()
        ip = getattr(ip, "host", "") or ""
        d = self.store.login(username, password, ip)

        def ok(session):
            if request.channel is None:  # nobody to give the cookie to: the login ends now (it
                self.store.logout(session)  # must not hold one of the account's sessions meanwhile)
                return
            set_cookie(request, session.token)
            _finish(request, 200, {"ok": True, "username": session.username})

        def refused(failure):
            failure.trap(LoginRefused)
            _finish(request, 403, {"ok": False, "code": failure.value.code, "error": failure.value.text})

        def broken(failure):
            log.failure("web login", failure)
            _finish(request, 500, {"ok": False, "code": "server-error", "error": "Server error"})

        d.addCallback(ok).addErrback(refused).addErrback(broken)
        return server.NOT_DONE_YET


class Logout(JSONPost):
    def post(self, request, body):
        session = self.store.get(session_token(request))
        clear_cookie(request)
        if session is None:
            return json_response(request, 200, {"ok": True, "text": ""})
        text = f"Bye, {session.username}!"
        d = self.store.logout(session, text)
        d.addBoth(lambda _: _finish(request, 200, {"ok": True, "text": text}))
        return server.NOT_DONE_YET


class SessionInfo(Plain):
    isLeaf = True

    def __init__(self, store):
        super().__init__()
        self.store = store

    def render_GET(self, request):
        session = self.store.get(session_token(request))
        if session is None:
            return json_response(request, 200, {"ok": False})
        return json_response(request, 200, {"ok": True, "username": session.username})


class ChatWebSocket(WebSocketResource):
    """C{/ws}: refuses a foreign Origin or a missing session before the handshake."""

    isLeaf = True

    def __init__(self, factory, store, origins):
        super().__init__(factory)
        self.store = store
        self.origins = origins

    def render(self, request):
        if request.method != b"GET":
            request.setHeader(b"Allow", b"GET")
            return plain(request, 405, "Method not allowed")
        return self.render_GET(request)

    def render_GET(self, request):
        if not origin_allowed(request, self.origins):
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Forbidden: foreign Origin\n"
        session = self.store.get(session_token(request))
        if session is None:
            request.setResponseCode(401)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Please log in first\n"
        # (Its connection was counted against the caps when it was made: WebSite.buildProtocol.)
        request.chat_session = session
        return super().render_GET(request)


def build_root(store, socket_factory, origins=(), static_dir=STATIC_DIR) -> resource.Resource:
    origins = tuple(o.lower().rstrip("/") for o in origins)
    root = Plain()
    root.putChild(b"", Page(os.path.join(static_dir, "index.html")))
    root.putChild(b"static", StaticFiles(static_dir))
    root.putChild(b"session", SessionInfo(store))
    root.putChild(b"login", Login(store, origins))
    root.putChild(b"logout", Logout(store, origins))
    root.putChild(b"ws", ChatWebSocket(socket_factory, store, origins))
    return root


__all__ = ["WebSite", "build_root", "origin_allowed"]
