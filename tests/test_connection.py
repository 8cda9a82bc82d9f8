"""
The connection layer itself (chatproto/frontends/connection.py), under a
front end of its own that only echoes: framing, the share of a turn, rate
holds, the slow-reader drop, reply order, the login deadline, the caps and
whenLost. StringTransport and task.Clock: no reactor, no sockets.
"""

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatproto.frontends.connection import LINES_PER_TURN, Connection, ConnectionFactory
from chatproto.frontends.limits import BYTES_PER_TURN


class _Chat:
    """What the layer asks of the core: a clock and the metrics' notes."""

    def __init__(self, clock):
        self.clock = clock
        self.notes = []

    def note(self, what, detail, n=1):
        self.notes.append((what, detail))


class Echo(Connection):
    """A front end that answers each line with its length, in order, some of them later."""

    __slots__ = ("handled", "out_of_order")

    frontend = "echo"
    MAX_FRAME = 100
    login_deadline_notice = "no login"
    drop_notice = "too slow"

    def __init__(self, factory, host, rate):
        super().__init__(factory, host, rate)
        self.handled = []
        self.out_of_order = None

    def frame_received(self, frame: bytes) -> None:
        text = frame.rstrip(b"\r\n")
        self.handled.append(text)
        if text == b"login":
            self.logged_in = True
        if text.startswith(b"later"):
            self.out_of_order = defer.Deferred()
            self.later(self.out_of_order, lambda result: result + b"\n", "later")
        else:
            self.reply(b"OK %d\n" % len(text))

    def frame_too_long(self) -> None:
        self.reply(b"ERR too long\n")

    def notice_line(self, text: str) -> bytes:
        return f"NOTICE {text}\n".encode()

    def render_failure(self, failure, context) -> bytes:
        return b"ERR " + context.encode() + b"\n"


class EchoFactory(ConnectionFactory):
    frontend = "echo"

    def refusal_line(self, text: str) -> bytes:
        return f"ERR {text}\n".encode()

    def connection(self, host, rate):
        return Echo(self, host, rate)


class ConnectionLayerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.chat = _Chat(self.clock)
        self.factory = EchoFactory(self.chat, max_output=1000)
        self.port = 50000

    def connect(self, factory=None, host="10.0.0.1"):
        factory = factory or self.factory
        self.port += 1
        protocol = factory.buildProtocol(IPv4Address("TCP", host, self.port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, self.port))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_lines_cut_however_the_input_is_cut(self):
        protocol, transport = self.connect()
        for byte in b"one\r\ntwo\nthree\n":
            protocol.dataReceived(bytes([byte]))
        self.clock.advance(0)
        self.assertEqual(protocol.handled, [b"one", b"two", b"three"])
        self.assertEqual(transport.value(), b"OK 3\nOK 3\nOK 5\n")

    def test_an_over_long_line_is_answered_once_and_skipped(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"x" * 150)
        protocol.dataReceived(b"x" * 150 + b"\nafter\n")
        self.clock.advance(0)
        self.assertEqual(protocol.handled, [b"after"])
        self.assertEqual(transport.value(), b"ERR too long\nOK 5\n")

    def test_a_turn_handles_64_lines_then_the_rest_waits_for_the_next_turn(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"a\n" * 200)
        self.assertEqual(len(protocol.handled), LINES_PER_TURN)
        self.assertEqual(protocol.unread_input().count(b"\n"), 200 - LINES_PER_TURN)
        self.assertEqual(transport.value(), b"")  # this turn's output goes at its end
        self.clock.advance(0)  # (a Clock runs the turns that follow too)
        self.assertEqual(len(protocol.handled), 200)
        self.assertEqual(transport.value(), b"OK 1\n" * 200)

    def test_a_turn_handles_at_most_its_bytes(self):
        protocol, _ = self.connect(LongFactory(self.chat))
        line = b"y" * 4095 + b"\n"
        protocol.dataReceived(line * 10)
        self.assertEqual(len(protocol.handled), BYTES_PER_TURN // len(line))

    def test_a_command_rate_holds_input_until_the_next_token(self):
        factory = EchoFactory(self.chat, rate_limit=2.0, rate_burst=2)
        protocol, transport = self.connect(factory)
        protocol.dataReceived(b"a\nb\nc\n")
        self.clock.advance(0)
        self.assertEqual(protocol.handled, [b"a", b"b"])
        self.assertEqual(transport.producerState, "paused")  # nothing more is read meanwhile
        self.clock.advance(0.49)
        self.assertEqual(protocol.handled, [b"a", b"b"])
        self.clock.advance(0.01)
        self.assertEqual(protocol.handled, [b"a", b"b", b"c"])
        self.assertEqual(transport.producerState, "producing")

    def test_replies_leave_in_the_order_of_the_commands(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"later\nquick\n")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")  # "quick" waits for "later"'s answer
        protocol.out_of_order.callback(b"LATE")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"LATE\nOK 5\n")

    def test_a_failed_reply_is_rendered_by_the_front_end_in_its_place(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"later\nquick\n")
        protocol.out_of_order.errback(ValueError("boom"))
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"ERR later\nOK 5\n")

    def test_a_slow_reader_is_told_and_dropped_past_max_output(self):
        protocol, transport = self.connect()
        lost = protocol.whenLost()
        protocol.pauseProducing()  # the transport's buffer is full
        for _ in range(11):
            protocol.write(b"z" * 100)
            self.clock.advance(0)
        self.assertEqual(self.chat.notes, [("dropped", "echo")])
        self.assertTrue(transport.value().endswith(b"NOTICE too slow\n"))
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"ignored\n")  # nothing it sends now is acted on
        self.assertEqual(protocol.handled, [])
        self.assertNoResult(lost)
        self.clock.advance(1.0)  # it did not read its last notice: cut off
        self.assertTrue(transport.disconnected)
        protocol.connectionLost(None)
        self.successResultOf(lost)

    def test_a_reader_that_keeps_up_is_not_dropped(self):
        protocol, transport = self.connect()
        for _ in range(50):
            protocol.pauseProducing()
            protocol.write(b"z" * 100)
            self.clock.advance(0)
            protocol.resumeProducing()  # it drained
        self.assertEqual(self.chat.notes, [])
        self.assertFalse(transport.disconnecting)

    def test_the_login_deadline_closes_only_who_did_not_log_in(self):
        idle, idle_transport = self.connect()
        self.clock.advance(10)
        user, user_transport = self.connect()
        user.dataReceived(b"login\n")
        self.clock.advance(19.9)
        self.assertFalse(idle_transport.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(idle_transport.value(), b"NOTICE no login\n")
        self.assertTrue(idle_transport.disconnecting)
        # One timer served both deadlines; the logged-in one's needs none now.
        self.assertEqual([call.func.__name__ for call in self.clock.getDelayedCalls()], ["abortConnection"])
        self.clock.advance(30)
        self.assertFalse(user_transport.disconnecting)
        self.assertTrue(idle_transport.disconnected)  # it did not read its notice in 5 s
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_caps_count_and_forget_connections(self):
        factory = EchoFactory(self.chat, max_connections=3, max_connections_per_ip=2)
        first, _ = self.connect(factory)
        self.connect(factory)
        refused = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertEqual(transport.value(), b"ERR Too many connections from 10.0.0.1; try again later\n")
        self.assertEqual(self.chat.notes, [("refused", "echo")])
        self.connect(factory, host="10.0.0.2")
        self.assertEqual(len(factory.connections), 3)
        refused = factory.buildProtocol(IPv4Address("TCP", "10.0.0.3", 1))
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertEqual(transport.value(), b"ERR Too many connections to this server; try again later\n")
        first.connectionLost(None)
        self.assertEqual(len(factory.connections), 2)
        self.connect(factory)  # its place is free again
        self.assertEqual(len(factory.connections), 3)

    def test_when_lost_fires_once_gone_and_at_once_after(self):
        protocol, _ = self.connect()
        before = protocol.whenLost()
        self.assertNoResult(before)
        protocol.connectionLost(None)
        self.assertIsNone(self.successResultOf(before))
        self.assertIsNone(self.successResultOf(protocol.whenLost()))
        self.assertEqual(self.factory.connections, {})

    def test_closing_waits_for_the_replies_still_to_come(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"later\n")
        protocol.close("bye")
        protocol.dataReceived(b"more\n")  # read no more
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"NOTICE bye\n")
        self.assertFalse(transport.disconnecting)
        protocol.out_of_order.callback(b"LATE")
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"NOTICE bye\nLATE\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(protocol.handled, [b"later"])


class Long(Echo):
    __slots__ = ()
    MAX_FRAME = 8192


class LongFactory(EchoFactory):
    def connection(self, host, rate):
        return Long(self, host, rate)


class CapsOfEveryFrontEndTests(SynchronousTestCase):
    """
    Every front end's connections count in its listener's caps; one over a
    cap is refused in the front end's own words and counted in the refused
    metric, under the front end's name.
    """

    def setUp(self):
        from .support import ChatFixture

        self.fixture = ChatFixture(self)
        self.chat = self.fixture.chat
        self.refused = []
        self.chat.observers.append(lambda what, detail, n: self.refused.append(detail) if what == "refused" else None)

    def over_the_cap(self, factory) -> bytes:
        first = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        first.makeConnection(StringTransport())
        second = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 2))
        transport = StringTransport()
        second.makeConnection(transport)
        self.assertTrue(transport.disconnecting)
        first.connectionLost(None)
        third = factory.buildProtocol(IPv4Address("TCP", "10.0.0.3", 3))
        third.makeConnection(StringTransport())
        self.assertIsNot(type(third), type(second))  # its place was free again
        return transport.value()

    def test_line(self):
        from chatproto.frontends.line.protocol import ChatServerFactory

        refusal = self.over_the_cap(ChatServerFactory(self.chat, max_connections=1))
        self.assertEqual(refusal, b"ERR Too many connections to this server; try again later\n")
        self.assertEqual(self.refused, ["line"])

    def test_irc(self):
        from chatproto.frontends.irc import IRCFactory

        refusal = self.over_the_cap(IRCFactory(self.chat, max_connections=1))
        self.assertEqual(refusal, b"ERROR :Closing link: Too many connections to this server; try again later\r\n")
        self.assertEqual(self.refused, ["irc"])

    def test_web(self):
        from chatproto.frontends.web import WebFrontEnd

        site = WebFrontEnd("tcp:0", clock=self.fixture.clock, max_connections=1).factory(self.chat)
        refusal = self.over_the_cap(site)
        self.assertTrue(refusal.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refusal)
        self.assertTrue(refusal.endswith(b"Too many connections to this server; try again later\n"), refusal)
        self.assertEqual(self.refused, ["web"])
