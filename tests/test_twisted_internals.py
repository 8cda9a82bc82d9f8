"""
Each private part of Twisted that chatproto relies on (chatproto.twisted_internals),
checked on real objects of the installed Twisted: a Twisted upgrade that changes
one fails here, not in a user's output.
"""

import contextlib
import errno
import socket

import pytest_twisted

from twisted.internet import defer, protocol, reactor, tcp, udp
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http, resource, server

from chatproto import twisted_internals as internals


class Accepting(protocol.Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)
        self.factory.accepted.callback(self)


@contextlib.contextmanager
def listening(server_class=None):
    """A loopback listener; yields (port, a Deferred of the accepted server side, the client socket)."""
    factory = protocol.Factory.forProtocol(Accepting)
    factory.accepted = defer.Deferred()
    factory.connections = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = None
    try:
        if server_class is not None:
            assert internals.use_server_class(port, server_class)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        yield port, factory.accepted, client
    finally:
        if client is not None:
            client.close()
        port.stopListening()
        for accepted in factory.connections:
            accepted.transport.abortConnection()


@pytest_twisted.inlineCallbacks
def test_unsent_bytes_is_what_write_keeps_until_the_socket_takes_it():
    with listening() as (_port, accepted, _client):
        transport = (yield accepted).transport
        assert internals.unsent_bytes(transport) == 0
        transport.write(b"x" * 1000)  # buffered until the reactor's next write event
        assert internals.unsent_bytes(transport) == 1000
        transport.write(b"y" * 24)
        assert internals.unsent_bytes(transport) == 1024
        assert internals.unsent_bytes(StringTransport()) is None


@pytest_twisted.inlineCallbacks
def test_send_now_writes_to_the_socket_only_when_nothing_waits():
    with listening() as (_port, accepted, client):
        transport = (yield accepted).transport
        assert internals.send_now(transport, b"direct") == 6
        assert (yield _read(client, 6)) == b"direct"
        transport.write(b"queued")
        assert internals.send_now(transport, b"after") == 0  # it would overtake "queued"
        assert internals.send_now(StringTransport(), b"x") == 0


@pytest_twisted.inlineCallbacks
def test_a_ports_server_class_and_its_number():
    class Marked(tcp.Server):
        pass

    with listening(Marked) as (port, accepted, _client):
        transport = (yield accepted).transport
        assert type(transport) is Marked
        assert internals.port_number(transport.server) == port.getHost().port
        assert not internals.use_server_class(port, tcp.Server)  # changed once only


@pytest_twisted.inlineCallbacks
def test_tcp_server_keeps_two_texts_per_connection():
    """What LeanServer (frontends/transports.py) saves: the texts tcp.Server sets on each one."""
    with listening() as (_port, accepted, _client):
        transport = (yield accepted).transport
        assert type(transport) is tcp.Server
        assert "logstr" in vars(transport) and "repstr" in vars(transport)


def _read(sock, size):
    """The next C{size} bytes from a non-blocking socket, once the reactor has sent them."""
    result = defer.Deferred()
    data = bytearray()

    def poll():
        try:
            data.extend(sock.recv(size - len(data)))
        except BlockingIOError:
            pass
        if len(data) >= size:
            result.callback(bytes(data))
        else:
            reactor.callLater(0.01, poll)

    poll()
    return result


class Upgraded(protocol.Protocol):
    def __init__(self):
        self.received = []

    def dataReceived(self, data):
        self.received.append(data)


class ChannelSwapTests(SynchronousTestCase):
    """An HTTP channel's transport hands its bytes to another protocol (a WebSocket's)."""

    def site(self):
        return server.Site(resource.Resource())

    def test_plain_tcp_holds_the_channel_as_its_protocol(self):
        channel = self.site().buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        transport.protocol = channel  # as tcp.Server keeps it
        replacement = Upgraded()
        self.assertTrue(internals.replace_protocol(transport, getattr(channel, "_channel", channel),
                                                   replacement))
        self.assertIs(transport.protocol, replacement)

    def test_tls_holds_it_as_its_wrapped_protocol(self):
        from twisted.internet import ssl

        tls = TLSMemoryBIOFactory(ssl.CertificateOptions(), False, self.site())
        wrapper = tls.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        channel = wrapper.wrappedProtocol
        inner = getattr(channel, "_channel", channel)
        self.assertIsInstance(inner, http.HTTPChannel)
        replacement = Upgraded()
        self.assertTrue(internals.replace_protocol(wrapper, inner, replacement))
        self.assertIs(wrapper.wrappedProtocol, replacement)
        self.assertFalse(internals.replace_protocol(StringTransport(), inner, replacement))

    def test_a_request_whose_connection_is_gone_has_no_channel(self):
        """(Public, but relied on: web/site.py answers nobody once the channel is None.)"""
        seen = []

        class Hold(resource.Resource):
            isLeaf = True

            def render_GET(self, request):
                seen.append(request)
                return server.NOT_DONE_YET

        channel = server.Site(Hold()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (request,) = seen
        self.assertIsNotNone(request.channel)
        channel.connectionLost(None)
        self.assertIsNone(request.channel)


def test_udp_read_errors():
    ignore, refuse = internals.udp_read_errors()
    assert errno.EAGAIN in ignore
    assert errno.ECONNREFUSED in refuse


@pytest_twisted.inlineCallbacks
def test_udp_connected():
    port = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
    try:
        assert not internals.udp_connected(port)
        port.connect("127.0.0.1", 9)
        assert internals.udp_connected(port)
    finally:
        yield port.stopListening()
