"""
The server in this process on the real reactor, over real loopback sockets
(pytest-twisted drives the reactor): what the protocol and the journal do
together with real TCP transports, including the write-through path.
"""

import os
import re
import shutil

import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.protocols.basic import LineReceiver

from chatproto.server.app import ChatService

from .harness import DEMO_CREDENTIALS


class WireClient(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self):
        self.lines = defer.DeferredQueue()

    def lineReceived(self, line):
        self.lines.put(line.decode())

    @defer.inlineCallbacks
    def command(self, line, count=1):
        self.sendLine(line.encode())
        replies = []
        for _ in range(count):
            replies.append((yield self.lines.get()))
        return replies


@pytest_twisted.inlineCallbacks
def test_messages_and_fan_out_over_real_sockets(tmp_path):
    credentials = tmp_path / "credentials.txt"
    shutil.copy(DEMO_CREDENTIALS, credentials)
    service = ChatService(str(credentials), str(tmp_path), 3, clock=reactor)
    service.load()
    factory = service.line_factory()
    service.startService()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    clients = []
    try:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        for name, password in (("Yoda", "wise@!man"), ("Hans", "falcon*solo"), ("leia", "alderaan")):
            client = yield endpoint.connect(protocol.Factory.forProtocol(WireClient))
            clients.append(client)
            assert (yield client.command(f"LOGIN {name} {password} 6000")) == ["OK Welcome to chatproto!"]
        yoda, hans, leia = clients

        reply = yield yoda.command("/msgto Hans over a real socket")
        assert re.fullmatch(r"OK message sent at .+\.", reply[0])
        assert (yield hans.lines.get()).endswith(", Yoda: over a real socket")
        # The record was on disk before the acknowledgement.
        with open(os.path.join(tmp_path, "messagelog.txt")) as f:
            assert f.read().endswith("; Yoda; over a real socket\n")

        yield yoda.command("/creategroup Jedi Hans leia")
        for member in (hans, leia):
            assert (yield member.lines.get()).startswith("NOTICE You have been invited")
            assert (yield member.command("/joingroup Jedi")) == ["OK Joined the group chat: Jedi successfully."]
        # Each join was told to the members who had joined before.
        assert (yield yoda.lines.get()) == "NOTICE Hans has joined the group chat Jedi."
        assert (yield yoda.lines.get()) == "NOTICE leia has joined the group chat Jedi."
        assert (yield hans.lines.get()) == "NOTICE leia has joined the group chat Jedi."
        assert (yield yoda.command("/groupmsg Jedi to all")) == ["OK Group chat message sent."]
        for member in (hans, leia):
            assert (yield member.lines.get()).endswith(", Jedi, Yoda: to all")
    finally:
        for client in clients:
            client.transport.loseConnection()
        yield port.stopListening()
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_lean_connections_keep_no_description_strings_and_still_work():
    from chatproto.frontends.output import send_through
    from chatproto.frontends.transports import LeanServer, lean

    accepted = defer.Deferred()

    class Echo(protocol.Protocol):
        def connectionMade(self):
            accepted.callback(self)

        def dataReceived(self, data):
            # Straight to the socket, as the chat front ends send.
            assert send_through(self.transport, data) == len(data)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    lean(port)
    try:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        client = yield endpoint.connect(protocol.Factory.forProtocol(WireClient))
        server_side = yield accepted
        transport = server_side.transport
        assert type(transport) is LeanServer
        assert "logstr" not in vars(transport) and "repstr" not in vars(transport)
        assert transport.logPrefix() == "Echo"
        assert repr(transport) == f"<Echo #{transport.sessionno} on {port.getHost().port}>"
        client.sendLine(b"still echoed")
        assert (yield client.lines.get()) == "still echoed"
        client.transport.loseConnection()
    finally:
        yield port.stopListening()


class IRCWireClient(LineReceiver):
    def connectionMade(self):
        self.lines = defer.DeferredQueue()
        self.lost = defer.Deferred()

    def lineReceived(self, line):
        self.lines.put(line.decode())

    def connectionLost(self, reason):
        self.lost.callback(None)

    @defer.inlineCallbacks
    def until(self, word):
        """The first line whose command (or numeric) is C{word}."""
        while True:
            line = yield self.lines.get()
            if line.split(" ")[1:2] == [word] or line.startswith(word + " "):
                return line


@pytest_twisted.inlineCallbacks
def test_shutdown_with_irc_clients(tmp_path):
    """The server stops at once with IRC clients connected: each is told why, then closed."""
    from chatproto.server.app import irc_front_end

    credentials = tmp_path / "credentials.txt"
    shutil.copy(DEMO_CREDENTIALS, credentials)
    service = ChatService(str(credentials), str(tmp_path), 3, clock=reactor)
    service.load()
    factory = irc_front_end("tcp:0").make_factory(service)
    service.startService()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    clients = []
    for name, password in (("Yoda", "wise@!man"), ("Hans", "falcon*solo")):
        client = yield endpoint.connect(protocol.Factory.forProtocol(IRCWireClient))
        client.sendLine(f"PASS {password}\r\nNICK {name}\r\nUSER u 0 * :real".encode())
        yield client.until("001")
        clients.append(client)
    waiting = yield endpoint.connect(protocol.Factory.forProtocol(IRCWireClient))  # not registered
    clients.append(waiting)
    yield port.stopListening()
    started = reactor.seconds()
    yield service.stopService()
    assert reactor.seconds() - started < 2  # not the shutdown grace period
    for client in clients:
        assert (yield client.until("ERROR")) == "ERROR :Closing link: Server shutting down"
        yield client.lost
