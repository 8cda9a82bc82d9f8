"""Unit-test support: a realm over a temporary data directory, driven by a Clock."""

import os
import shutil
import tempfile

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatproto.core.realm import ChatRealm
from chatproto.frontends.line.protocol import ChatServerFactory
from chatproto.storage.credentials import CredentialsFile
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase

DEMO = """Hans falcon*solo
Yoda wise@!man
vader sithlord**
leia alderaan
luke jedi*knight
obiwan hellothere
"""


def hold_password_checks(chat) -> list:
    """
    Password checks of C{chat} wait "in a thread" until the test ends them:
    the returned list gets (Deferred, function, args) for each; fire the
    Deferred with C{function(*args)}.
    """
    from twisted.internet import defer

    pending = []

    def run(function, *args):
        d = defer.Deferred()
        pending.append((d, function, args))
        return d

    chat.passwords.run = run
    return pending


class ChatFixture:
    """A realm, a factory and connected protocols, all on one C{task.Clock}."""

    def __init__(self, testcase, attempts=3, credentials=DEMO, max_output=1024 * 1024, database=None,
                 lockout=None, **realm_options):
        self.dir = tempfile.mkdtemp(prefix="chatproto-unit-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        path = os.path.join(self.dir, "credentials.txt")
        with open(path, "w") as f:
            f.write(credentials)
        self.clock = task.Clock()
        self.clock.advance(1654119004)  # 01 Jun 2022, some time of day
        self.accounts = CredentialsFile(path).load()
        self.database = database if database is not None else MemoryDatabase()
        self.storage = Ledger(self.database, self.dir, self.clock)
        # lockout: called with (clock, attempts) for the realm's ILockout (default: its own).
        self.chat = ChatRealm(self.accounts, self.storage, self.clock, attempts,
                              lockout=lockout(self.clock, attempts) if lockout else None, **realm_options)
        self.chat.start()
        testcase.addCleanup(self.chat.close)
        self.factory = ChatServerFactory(self.chat, max_output)
        self.port = 40000

    def connect(self, host="127.0.0.1"):
        self.port += 1
        protocol = self.factory.buildProtocol(IPv4Address("TCP", host, self.port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, self.port))
        protocol.makeConnection(transport)
        return Connection(self, protocol, transport)

    def login(self, username, password, udp_port=6000):
        connection = self.connect()
        self.assertion = connection.send(f"LOGIN {username} {password} {udp_port}")
        assert self.assertion == ["OK Welcome to chatproto!"], self.assertion
        return connection

    def timers(self):
        """The clock's pending calls, but for the deadlines of connections (to log in, to be closed)."""
        return [call for call in self.clock.getDelayedCalls()
                if getattr(call.func, "__name__", "") not in ("_login_too_late", "abortConnection")]

    def read(self, name):
        with open(os.path.join(self.dir, name), encoding="utf-8") as f:
            return f.read()


class Connection:
    def __init__(self, fixture, protocol, transport):
        self.fixture = fixture
        self.protocol = protocol
        self.transport = transport

    def send_raw(self, data: bytes) -> list[str]:
        self.protocol.dataReceived(data)
        self.fixture.clock.advance(0)  # the journal's batch for this turn
        return self.output()

    def send(self, line: str) -> list[str]:
        return self.send_raw(line.encode("utf-8") + b"\n")

    def output(self) -> list[str]:
        data = self.transport.value()
        self.transport.clear()
        return data.decode("utf-8").splitlines()

    def drop(self):
        self.protocol.connectionLost(None)
