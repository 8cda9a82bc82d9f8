"""
Hostile clients against the web front end (issue 28), over StringTransport
and task.Clock: plain HTTP connections count against the caps, a request's
head has a deadline that a trickle of bytes does not move.
"""

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from chatproto.frontends.web.site import HEADER_DEADLINE
from tests.test_robustness import collect_failures
from tests.web_support import Response, WebFixture


class HTTPCapTests(SynchronousTestCase):
    """F2: plain HTTP connections are capped like WebSockets and the other front ends' connections."""

    def setUp(self):
        self.web = WebFixture(self, max_connections_per_ip=3)
        self.refused = []
        self.web.chat.observers.append(lambda what, detail, n: self.refused.append(detail)
                                       if what == "refused" else None)

    def trickler(self):
        channel, transport = self.web.connect_http()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
        return channel, transport

    def test_idle_http_connections_count_against_the_caps(self):
        events = self.enterContext(capturedLogs())
        logged = lambda: [e for e in events if "Refusing" in (e.get("log_format") or "")]  # noqa: E731
        held = [self.trickler() for _ in range(3)]
        self.assertFalse(any(transport.disconnecting for _, transport in held))
        channel, transport = self.web.connect_http()  # the fourth from the address
        response = Response(transport.value())
        self.assertEqual(response.status, 503)
        self.assertEqual(response.body, b"Too many connections from 127.0.0.1; try again later\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refused, ["web"])  # the refused metric counts the web front end
        self.assertEqual(len(logged()), 1)  # and the log says so
        # A WebSocket needs a connection too: refused as well while the three are held.
        self.assertEqual(self.web.ws().status, 503)
        for _ in range(100):
            self.web.connect_http()
        self.assertEqual(len(self.refused), 102)
        self.assertEqual(len(logged()), 1)  # a flood is reported, not logged line by line
        held[0][0].connectionLost(None)
        token_reply = self.web.login("Yoda", "wise@!man")  # a connection is free again
        self.assertEqual(token_reply.status, 200)

    def test_websockets_and_plain_requests_share_the_cap(self):
        browser = self.web.browser("Yoda", "wise@!man")
        held = [self.trickler() for _ in range(2)]
        self.assertEqual(self.web.ws().status, 503)
        browser.drop()
        self.assertTrue(self.web.ws(self.web.token("Hans", "falcon*solo")).accepted)
        self.assertEqual(len(held), 2)


class HeaderDeadlineTests(SynchronousTestCase):
    """F2: a request's head must be complete within HEADER_DEADLINE seconds, however it trickles."""

    def setUp(self):
        self.web = WebFixture(self)

    def test_a_trickle_of_header_bytes_does_not_keep_a_connection(self):
        channel, transport = self.web.connect_http()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
        sent = 0
        while not transport.disconnected and sent < 100:
            self.web.clock.advance(HEADER_DEADLINE / 4)
            channel.dataReceived(b"a")  # each byte resets Twisted's idle timer
            sent += 1
        self.assertTrue(transport.disconnected)
        self.assertEqual(sent, 4)  # cut off at the deadline, not after 100 bytes (or ever)
        channel.connectionLost(None)
        self.assertEqual(self.web.site.caps.connections, {})

    def test_the_next_request_on_a_kept_connection_has_the_same_deadline(self):
        channel, transport = self.web.connect_http()
        channel.dataReceived(b"GET /session HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        self.web.clock.advance(0)
        self.assertEqual(Response(transport.value()).status, 200)
        self.web.clock.advance(HEADER_DEADLINE * 2)  # idle between requests: the idle timer's business
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        for _ in range(3):
            self.web.clock.advance(HEADER_DEADLINE / 4)
            channel.dataReceived(b"X-b: b\r\n")
        self.assertFalse(transport.disconnected)
        self.web.clock.advance(HEADER_DEADLINE / 4)
        self.assertTrue(transport.disconnected)

    def test_a_page_load_is_not_affected(self):
        failures = collect_failures(self)
        response = self.web.http("GET", "/")
        self.assertEqual(response.status, 200)
        self.web.clock.advance(HEADER_DEADLINE * 2)
        self.assertEqual(failures, [])

