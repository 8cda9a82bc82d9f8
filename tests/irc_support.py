"""IRC unit-test support: IRC connections over StringTransport, replies parsed with irctokens."""

import base64

import irctokens
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatproto.frontends.irc import IRCFactory


def settle(clock):
    """Run every call due now (the core's end-of-turn results), until none is left."""
    for _ in range(1000):
        if not any(c.getTime() <= clock.seconds() for c in clock.getDelayedCalls()):
            return
        clock.advance(0)


class IRCConnection:
    def __init__(self, factory, clock, port):
        self.clock = clock
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol.makeConnection(self.transport)

    def send_raw(self, data: bytes) -> list[irctokens.Line]:
        self.protocol.dataReceived(data)
        settle(self.clock)
        return self.lines()

    def send(self, *lines: str) -> list[irctokens.Line]:
        return self.send_raw(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def lines(self) -> list[irctokens.Line]:
        settle(self.clock)  # output leaves at the end of the turn
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return [irctokens.tokenise(raw) for raw in data.decode("utf-8").split("\r\n") if raw]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.protocol._closed

    def drop(self):
        self.protocol.connectionLost(None)
        settle(self.clock)


def commands(lines) -> list[str]:
    return [line.command for line in lines]


def find(lines, command) -> list[irctokens.Line]:
    return [line for line in lines if line.command == command]


def one(lines, command) -> irctokens.Line:
    found = find(lines, command)
    assert len(found) == 1, (command, [line.format() for line in lines])
    return found[0]


def sasl_plain(username: str, password: str) -> str:
    return base64.b64encode(f"{username}\0{username}\0{password}".encode()).decode()


class IRCEnvironment:
    """An L{IRCFactory} over a realm (C{chat}) on a Clock."""

    def __init__(self, chat, clock, **kwargs):
        self.chat = chat
        self.clock = clock
        self.factory = IRCFactory(chat, clock=clock, **kwargs)
        self.port = 50000

    def connect(self) -> IRCConnection:
        self.port += 1
        return IRCConnection(self.factory, self.clock, self.port)

    def register(self, username, password, caps=(), nick=None) -> IRCConnection:
        """A registered connection (PASS, or SASL when C{caps} has sasl)."""
        connection = self.connect()
        lines = []
        if caps:
            lines += connection.send("CAP LS 302")
            lines += connection.send("CAP REQ :" + " ".join(caps))
        if "sasl" in caps:
            lines += connection.send("NICK " + (nick or username), "USER u 0 * :real name",
                                     "AUTHENTICATE PLAIN")
            lines += connection.send("AUTHENTICATE " + sasl_plain(username, password))
            lines += connection.send("CAP END")
        else:
            lines += connection.send(f"PASS {password}", "NICK " + (nick or username),
                                     "USER u 0 * :real name")
            if caps:
                lines += connection.send("CAP END")
        assert "001" in commands(lines), [line.format() for line in lines]
        connection.registration = lines
        return connection
