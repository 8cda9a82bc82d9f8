"""
Unit-test support for the web front end: HTTP requests and WebSocket
clients over in-memory transports (a Site's channel on a StringTransport, a
wsproto client connection), all on one task.Clock. No sockets, no reactor.
"""

import json
import re

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from chatproto.frontends.web import WebFrontEnd
from tests.support import ChatFixture

HOST = "localhost:8080"
ORIGIN = "http://localhost:8080"


class WebFixture:
    """A web front end over a realm, and helpers to talk to it as a browser would."""

    def __init__(self, testcase, attempts=3, realm_options=None, **options):
        self.testcase = testcase
        # The real realm, in-memory storage (realm_options: e.g. max_sessions).
        self.core = ChatFixture(testcase, attempts=attempts, **(realm_options or {}))
        self.clock = self.core.clock
        self.chat = self.core.chat
        self.frontend = WebFrontEnd("tcp:0", clock=self.clock, **options)
        self.site = self.frontend.factory(self.chat)
        self.port = 50000

    def advance(self, seconds, *clients):
        """Let C{seconds} pass on the clock while C{clients} keep reading (they answer pings)."""
        step = 10.0
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
            for client in clients:
                client.pump()

    def connect_http(self):
        self.port += 1
        address = IPv4Address("TCP", "127.0.0.1", self.port)
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        transport.protocol = channel  # as a TCP transport holds its protocol
        channel.makeConnection(transport)
        return channel, transport

    def http(self, method, path, body=None, headers=None, raw_body=None):
        """One HTTP/1.1 request; returns a L{Response}."""
        channel, transport = self.connect_http()
        all_headers = {"Host": HOST}
        if body is not None:
            raw_body = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if raw_body is not None:
            all_headers["Content-Length"] = str(len(raw_body))
        all_headers.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in all_headers.items() if v is not None) + "\r\n"
        channel.dataReceived(head.encode() + (raw_body or b""))
        self.clock.advance(0)
        response = Response(transport.value())
        channel.connectionLost(None)
        return response

    def login(self, username, password, origin=ORIGIN):
        response = self.http("POST", "/login", {"username": username, "password": password},
                             headers={"Origin": origin})
        return response

    def token(self, username, password) -> str:
        response = self.login(username, password)
        assert response.status == 200, response.json()
        return response.cookie_value("chatproto_session")

    def browser(self, username, password) -> "WSClient":
        """Log in as a page does, then open its WebSocket; the client has read the hello."""
        token = self.token(username, password)
        client = self.ws(token)
        assert client.accepted, client.status
        hello = client.next("hello")
        client.hello = hello
        client.token = token
        return client

    def ws(self, token=None, origin=ORIGIN, path="/ws") -> "WSClient":
        channel, transport = self.connect_http()
        return WSClient(self, channel, transport, token, origin, path)


class Response:
    def __init__(self, data: bytes):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        if self.header("transfer-encoding") == "chunked":
            out = b""
            while body:
                size, _, rest = body.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                out += rest[:n]
                body = rest[n + 2:]
            body = out
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)

    def cookie_value(self, name):
        for value in self.all("set-cookie"):
            match = re.match(rf"{name}=([^;]*)", value)
            if match:
                return match.group(1)
        return None


class WSClient:
    """A browser tab's WebSocket, spoken with wsproto over the channel's StringTransport."""

    def __init__(self, fixture, channel, transport, token, origin, path):
        self.fixture = fixture
        self.channel = channel
        self.transport = transport
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted = False
        self.status = None
        self.closed = None
        self.reject_body = b""
        self.messages: list[dict] = []
        self._text = ""
        self._seen = 0
        self._id = 0
        headers = []
        if origin is not None:
            headers.append((b"Origin", origin.encode()))
        if token is not None:
            headers.append((b"Cookie", f"chatproto_session={token}".encode()))
        self.write(self.ws.send(Request(host=HOST, target=path, extra_headers=headers)))

    def write(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(data)
        self.pump()

    def pump(self) -> None:
        self.fixture.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        if not data:
            return
        self.ws.receive_data(data)
        answers = []
        for event in self.ws.events():
            if isinstance(event, Ping):
                answers.append(self.ws.send(event.response()))
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.messages.append(json.loads(self._text))
                    self._text = ""
            elif isinstance(event, CloseConnection):
                self.closed = event.code
        for answer in answers:
            self.write(answer)

    def send_raw(self, text: str) -> None:
        self.write(self.ws.send(TextMessage(text)))

    def request(self, type_, **fields) -> dict:
        """Send one request; return its reply (events that came meanwhile stay readable)."""
        self._id += 1
        rid = self._id
        self.send_raw(json.dumps({"id": rid, "type": type_, **fields}, ensure_ascii=False))
        for m in self.messages:
            if m.get("type") == "reply" and m.get("id") == rid:
                self.messages.remove(m)
                self._seen = min(self._seen, len(self.messages))
                return m
        raise AssertionError(f"no reply to {type_}; got {str(self.messages)[:2000]}")

    def events(self) -> list[dict]:
        """Everything that arrived since the last call."""
        self.pump()
        out = self.messages[self._seen:]
        self._seen = len(self.messages)
        return out

    def next(self, type_) -> dict:
        for m in self.events():
            if m["type"] == type_:
                return m
        raise AssertionError(f"no {type_} event; got {str(self.messages)[:2000]}")

    def drop(self) -> None:
        """The tab goes away (a reload, a closed tab)."""
        self.transport.protocol.connectionLost(None)
