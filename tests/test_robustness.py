"""
The server under pressure (issue 6): floods, connection caps, slow readers,
kill -9, concurrent logins, exceptions inside handlers.

Unit tests drive a C{task.Clock} over C{StringTransport}s; the end-to-end
ones start a real server process and talk to it over raw sockets, waiting
for lines (with timeouts), never sleeping.
"""

import os
import re
import select
import socket
import threading
import time

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatproto import errors
from chatproto.frontends.limits import CommandRate
from chatproto.frontends.line.protocol import ChatServerFactory

from .harness import ServerProcess
from .support import ChatFixture

TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"
RECORD = re.compile(rf"^(\d+); ({TS}); ([^;\s]+); (.*)$")
PASSWORDS = {"Yoda": "wise@!man", "Hans": "falcon*solo", "vader": "sithlord**", "leia": "alderaan",
             "luke": "jedi*knight", "obiwan": "hellothere"}


def collect_failures(testcase) -> list:
    failures = []

    def observer(event):
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    testcase.addCleanup(globalLogPublisher.removeObserver, observer)
    return failures


# Floods: the command rate ------------------------------------------------------------


class CommandRateTests(SynchronousTestCase):
    def test_token_bucket(self):
        rate = CommandRate(2.0, 3, now=100.0)
        self.assertEqual([rate.allow(100.0) for _ in range(4)], [True, True, True, False])
        self.assertFalse(rate.allow(100.4))  # 0.8 of a token
        self.assertTrue(rate.allow(100.5))  # 1.0
        self.assertFalse(rate.allow(100.5))
        self.assertEqual([rate.allow(1000.0) for _ in range(4)], [True, True, True, False])
        # A clock that steps back refills nothing and breaks nothing.
        self.assertFalse(rate.allow(10.0))
        self.assertTrue(rate.allow(10.5))

    def test_flood_waits_for_tokens_unread(self):
        fixture = ChatFixture(self)
        fixture.factory = ChatServerFactory(fixture.chat, rate_limit=2.0, rate_burst=3)
        yoda = fixture.login("Yoda", "wise@!man")
        hans = fixture.login("Hans", "falcon*solo")
        fixture.clock.advance(10)
        hans.output()
        replies = yoda.send_raw(b"".join(b"/msgto Hans flood %d\n" % i for i in range(10)))
        # Three tokens: three lines read and answered; the rest waits unread (no error, no work).
        self.assertEqual(len(replies), 3)
        self.assertTrue(all(r.startswith("OK message sent at") for r in replies), replies)
        self.assertTrue(yoda.transport.producerState == "paused")
        self.assertEqual(fixture.read("messagelog.txt").count("\n"), 3)
        # Each half second brings one token, and one more line is read.
        fixture.clock.advance(0.5)
        self.assertEqual(len(yoda.output()), 1)
        for _ in range(6):
            fixture.clock.advance(0.5)
        self.assertEqual(len(yoda.output()), 6)
        self.assertEqual([line.rsplit(": ", 1)[1] for line in hans.output()],
                         [f"flood {i}" for i in range(10)])
        self.assertEqual(yoda.transport.producerState, "producing")

    def test_framing_errors_wait_like_any_line(self):
        fixture = ChatFixture(self)
        fixture.factory = ChatServerFactory(fixture.chat, rate_limit=1.0, rate_burst=1)
        connection = fixture.connect()
        self.assertEqual(connection.send("/activeuser"), ["ERR Please log in first"])
        self.assertEqual(connection.send_raw(b"\xff\n"), [])
        fixture.clock.advance(1)
        self.assertEqual(connection.output(), ["ERR Invalid UTF-8"])
        self.assertEqual(connection.send("LOGIN Yoda wise@!man 6000"), [])
        self.assertIsNone(fixture.chat.active_user("Yoda"))
        fixture.clock.advance(1)
        self.assertEqual(connection.output(), ["OK Welcome to chatproto!"])


    def test_no_limit_by_default(self):
        fixture = ChatFixture(self)
        yoda = fixture.login("Yoda", "wise@!man")
        fixture.login("Hans", "falcon*solo")
        replies = yoda.send_raw(b"/msgto Hans x\n" * 1000)
        self.assertEqual(sum(r.startswith("OK message sent at") for r in replies), 1000)


# Floods: connection caps -------------------------------------------------------------


class ConnectionCapTests(SynchronousTestCase):
    def connect(self, factory, host, port):
        address = IPv4Address("TCP", host, port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_per_ip_and_total(self):
        fixture = ChatFixture(self)
        factory = ChatServerFactory(fixture.chat, max_connections=4, max_connections_per_ip=2)
        a1 = self.connect(factory, "10.0.0.1", 1)
        a2 = self.connect(factory, "10.0.0.1", 2)
        _, refused = self.connect(factory, "10.0.0.1", 3)
        self.assertEqual(refused.value(), b"ERR Too many connections from 10.0.0.1; try again later\n")
        self.assertTrue(refused.disconnecting)
        self.connect(factory, "10.0.0.2", 1)
        self.connect(factory, "10.0.0.3", 1)
        _, refused = self.connect(factory, "10.0.0.4", 1)
        self.assertEqual(refused.value(), b"ERR Too many connections to this server; try again later\n")
        self.assertTrue(refused.disconnecting)
        for _protocol, transport in (a1, a2):
            self.assertFalse(transport.disconnecting)
            self.assertEqual(transport.value(), b"")
        # A refused connection counts for nothing; a closed one frees its place.
        self.assertEqual(len(factory.connections), 4)
        a1[0].connectionLost(None)
        a2[0].connectionLost(None)
        a1[0].connectionLost(None)  # twice: still counted once
        _, transport = self.connect(factory, "10.0.0.1", 4)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(factory.caps._per_host, {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1})

    def test_no_cap_by_default(self):
        fixture = ChatFixture(self)
        for port in range(1, 300):
            _, transport = self.connect(fixture.factory, "10.0.0.1", port)
            self.assertFalse(transport.disconnecting)


# Exceptions inside handlers ----------------------------------------------------------


class Boom(Exception):
    pass


class HandlerExceptionTests(SynchronousTestCase):
    def test_server_error_logged_and_connection_kept(self):
        failures = collect_failures(self)
        fixture = ChatFixture(self)
        yoda = fixture.login("Yoda", "wise@!man")
        fixture.login("Hans", "falcon*solo")

        def broken(*args):
            raise Boom("a bug")

        fixture.chat.send_privates = broken  # (the line front end hands its /msgto lines over in runs)
        self.assertEqual(yoda.send("/msgto Hans hello"), ["ERR Server error"])
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0]["log_failure"].value, Boom)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        self.assertFalse(yoda.transport.disconnecting)
        # The connection and the session go on.
        del fixture.chat.send_privates
        self.assertRegex(yoda.send("/msgto Hans hello")[0], "^OK message sent at")
        self.assertEqual(yoda.send("/activeuser")[-1], "OK")


# Concurrent logins -------------------------------------------------------------------


@implementer(ICredentialsChecker)
class SlowChecker:
    """Answers like the real checker, C{delay} seconds later on the clock: checks overlap."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker, clock, delay=0.1):
        self.checker = checker
        self.clock = clock
        self.delay = delay

    def requestAvatarId(self, credentials):
        result = self.checker.requestAvatarId(credentials)
        d = defer.Deferred()
        self.clock.callLater(self.delay, lambda: result.chainDeferred(d))
        return d


class ConcurrentLoginTests(SynchronousTestCase):
    def setUp(self):
        self.fixture = ChatFixture(self, attempts=3, max_sessions=1)  # one login per account
        portal = self.fixture.chat.portal
        checker = portal.checkers[IUsernamePassword]
        portal.registerChecker(SlowChecker(checker, self.fixture.clock))

    def start_logins(self, passwords):
        connections = [self.fixture.connect() for _ in passwords]
        for connection, password in zip(connections, passwords, strict=True):
            connection.protocol.dataReceived(f"LOGIN Yoda {password} 6000\n".encode())
        for _ in passwords:  # one check at a time per account
            self.fixture.clock.advance(0.1)
            self.fixture.clock.advance(0)
        return [connection.output() for connection in connections]

    def test_one_session_per_account(self):
        replies = self.start_logins(["wise@!man"] * 5)
        self.assertEqual(sorted(replies), [[f"ERR {errors.ALREADY_LOGGED_IN}"]] * 4 + [["OK Welcome to chatproto!"]])
        self.assertEqual(self.fixture.read("userlog.txt").count("Yoda"), 1)

    def test_checks_queued_past_the_limit_are_refused_at_once(self):
        replies = self.start_logins(["wrong"] * 10)
        busy = "ERR Too many logins for this account at once. Please try again later"
        self.assertEqual(replies[9], [busy])  # one checked, eight waiting: the tenth is refused
        self.assertNotIn([busy], replies[:9])
        # Once the queue has drained, the account takes logins again.
        self.fixture.clock.advance(10)
        self.assertEqual(self.start_logins(["wise@!man"]), [["OK Welcome to chatproto!"]])

    def test_each_failure_counted_once(self):
        replies = self.start_logins(["wrong1", "wrong2", "wrong3", "wrong4", "wrong5"])
        self.assertEqual(replies, [
            [f"ERR {errors.INVALID_PASSWORD}"], [f"ERR {errors.INVALID_PASSWORD}"],
            [f"ERR {errors.BLOCKED_NOW}"],
            # Checks that waited behind the block find the account blocked, unchecked.
            [f"ERR {errors.ACCOUNT_BLOCKED}"], [f"ERR {errors.ACCOUNT_BLOCKED}"],
        ])
        # Blocked for 10 s from the third failure, then the right password works.
        self.assertEqual(self.start_logins(["wise@!man"]), [[f"ERR {errors.ACCOUNT_BLOCKED}"]])
        self.fixture.clock.advance(10)
        self.assertEqual(self.start_logins(["wise@!man"]), [["OK Welcome to chatproto!"]])

    def test_failures_and_success_interleaved(self):
        # Two wrong and one right at once: two failures counted, one session,
        # and the success resets the count.
        replies = self.start_logins(["wrong1", "wise@!man", "wrong2"])
        self.assertEqual(replies, [[f"ERR {errors.INVALID_PASSWORD}"], ["OK Welcome to chatproto!"],
                                   [f"ERR {errors.INVALID_PASSWORD}"]])
        lockout = self.fixture.chat.lockout
        self.assertFalse(lockout.is_blocked("Yoda"))
        # A wrong password for the logged-in account counts too.
        self.assertEqual(self.start_logins(["wrong3"]), [[f"ERR {errors.INVALID_PASSWORD}"]])
        self.assertEqual(self.start_logins(["wise@!man"]), [[f"ERR {errors.ALREADY_LOGGED_IN}"]])


# End to end: raw sockets against a real server process --------------------------------


class RawClient:
    """A client that speaks the wire protocol itself, over a blocking socket."""

    def __init__(self, server, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((server.host, server.port))
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def read_line(self, timeout=15.0) -> str | None:
        """The next line, or None at the end of the stream."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                raise AssertionError(f"no line within {timeout} s; buffered {self.buffer[:200]!r}")
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8")

    def final(self, timeout=15.0) -> str:
        """Skip deliveries up to the next OK or ERR."""
        while True:
            line = self.read_line(timeout)
            if line is None:
                raise AssertionError("connection closed before a final reply")
            if line.split(" ", 1)[0] in ("OK", "ERR"):
                return line

    def login(self, username, udp_port=6000) -> "RawClient":
        self.send(f"LOGIN {username} {PASSWORDS[username]} {udp_port}")
        reply = self.final()
        assert reply == "OK Welcome to chatproto!", reply
        return self

    def close(self):
        self.sock.close()


class Drain(threading.Thread):
    """Reads a socket to its end on a thread, counting lines."""

    def __init__(self, client: RawClient):
        super().__init__(daemon=True)
        self.client = client
        self.lines = 0
        self.start()

    def run(self):
        try:
            while True:
                data = self.client.sock.recv(1 << 20)
                if not data:
                    return
                self.lines += data.count(b"\n")
        except OSError:
            return


def rss_kib(pid: int, field: str) -> int:
    """C{VmRSS} or C{VmHWM} (the peak) of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def read_records(path: str) -> list[tuple[int, str, str]]:
    """(SEQ, AUTHOR, MESSAGE) of every record; asserts that every line is whole and well formed."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), f"{path}: torn last line {data[-100:]!r}"
    records = []
    for line in data.decode("utf-8").split("\n")[:-1]:
        match = RECORD.match(line)
        assert match, f"{path}: malformed line {line!r}"
        records.append((int(match.group(1)), match.group(3), match.group(4)))
    return records


class EndToEndMixin:
    def start_server(self, *extra_args, **kwargs) -> ServerProcess:
        server = ServerProcess(extra_args=extra_args, **kwargs)
        self.addCleanup(server.cleanup)
        return server

    def client(self, server, username=None, **kwargs) -> RawClient:
        client = RawClient(server, **kwargs)
        self.addCleanup(client.close)
        if username is not None:
            client.login(username)
        return client


def on_linux() -> bool:
    return os.path.exists("/proc/self/status")


class SlowReaderTests(EndToEndMixin, SynchronousTestCase):
    """One client never reads while another sends it 50 MB."""

    TOTAL = 50 * 1024 * 1024
    MESSAGE = 60000  # bytes of text in each /msgto

    def test_non_reader_is_dropped_and_memory_bounded(self):
        if not on_linux():
            self.skipTest("reads the server's memory from /proc")
        server = self.start_server()
        reader = self.client(server, "leia", rcvbuf=4096)  # and never reads again
        sender = self.client(server, "Yoda")
        hans = self.client(server, "Hans")
        hans_drain = Drain(hans)
        baseline = rss_kib(server.process.pid, "VmRSS")

        payload = "x" * self.MESSAGE
        line = f"/msgto leia {payload}\n".encode()
        count = self.TOTAL // len(line) + 1
        replies = []
        started = time.monotonic()
        sent = 0
        while sent < count or len(replies) < count:
            writable = [sender.sock] if sent < count else []
            readable, writable, _ = select.select([sender.sock], writable, [], 15)
            self.assertTrue(readable or writable, "the server stopped answering the sender")
            if writable:
                sender.sock.sendall(line)
                sent += 1
                if sent % 50 == 0:
                    sender.send("/msgto Hans still here")
                    count += 1
                    sent += 1
            if readable:
                data = sender.sock.recv(1 << 16)
                self.assertTrue(data, "the sender was disconnected")
                sender.buffer += data
                *lines, sender.buffer = sender.buffer.split(b"\n")
                replies.extend(lines)
        elapsed = time.monotonic() - started
        peak = rss_kib(server.process.pid, "VmHWM")

        delivered = [r for r in replies if r.startswith(b"OK message sent at")]
        not_active = [r for r in replies if r == b"ERR leia is not active"]
        print(f"\n[slow reader] {self.TOTAL / 2**20:.0f} MiB sent in {elapsed:.2f} s; "
              f"{len(delivered)} delivered before the drop; server RSS baseline "
              f"{baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
        self.assertEqual(len(delivered) + len(not_active), count, set(replies) - set(delivered))
        self.assertGreater(len(not_active), 0)
        # Every reply after the first "not active" is "not active" again (for leia).
        first = replies.index(b"ERR leia is not active")
        self.assertFalse([r for r in replies[first:] if r.startswith(b"ERR") and r != b"ERR leia is not active"])

        # The reader was disconnected and logged out.
        self.assertNotIn("leia", server.read("userlog.txt"))
        sender.send("/msgto leia are you there?")
        self.assertEqual(sender.final(), "ERR leia is not active")
        reader.sock.setblocking(False)
        reader.sock.settimeout(15)
        tail = b""
        try:
            while chunk := reader.sock.recv(1 << 20):
                tail = (tail + chunk)[-200:]
            # It read what was queued in time: the last line says why it was dropped.
            self.assertTrue(tail.endswith(b"\nNOTICE Disconnected: too much output waiting unread\n"), tail)
        except ConnectionResetError:
            pass  # it did not read it within the deadline: cut off, queue and all
        server.stdout.expect(re.compile(r"Dropping .*more than 1048576 bytes of output unread"))

        # Nobody else was slowed down: all of it took seconds, Hans still chats.
        hans.send("/msgto Yoda fine here")
        self.assertRegex(sender.read_line(), rf"^MSG {TS}, Hans: fine here$")
        self.assertLess(elapsed, 60)
        # Memory stayed bounded: far less than the 50 MB pushed through.
        growth_mib = (peak - baseline) / 1024
        self.assertLess(growth_mib, 25, f"peak RSS {peak} KiB, baseline {baseline} KiB")
        self.assertGreater(hans_drain.lines, 0)


class CrashTests(EndToEndMixin, SynchronousTestCase):
    """kill -9 in the middle of a burst of acknowledged messages, then restart."""

    BURST = 60000
    KILL_AFTER = 300  # acknowledgements read before the kill: early, so that it lands mid-burst on a busy machine too

    def test_kill_9_loses_no_acknowledged_line(self):
        server = self.start_server()
        yoda = self.client(server, "Yoda")
        hans = self.client(server, "Hans")
        yoda.send("/creategroup Jedi Hans")
        self.assertRegex(yoda.final(), "^OK Group chat room has been created")
        hans.send("/joingroup Jedi")
        self.assertEqual(hans.final(), "OK Joined the group chat: Jedi successfully.")
        self.assertEqual(yoda.read_line(), "NOTICE Hans has joined the group chat Jedi.")
        Drain(hans)

        lines = []
        for i in range(self.BURST):
            lines.append(f"/msgto Hans m{i};x" if i % 2 == 0 else f"/groupmsg Jedi g{i}; y")
        burst = ("\n".join(lines) + "\n").encode()
        sender = threading.Thread(target=self._send_quietly, args=(yoda.sock, burst), daemon=True)
        sender.start()
        acknowledged = []
        while True:
            line = yoda.read_line()
            if line is None:
                break
            self.assertTrue(line.startswith("OK "), line)
            acknowledged.append(lines[len(acknowledged)])
            if len(acknowledged) == self.KILL_AFTER:
                server.process.kill()  # SIGKILL, mid-burst
        server.process.wait(15)
        self.assertLess(len(acknowledged), self.BURST, "the burst ended before the kill")

        private = read_records(server.path("messagelog.txt"))
        group = read_records(server.path("Jedi_messageLog.txt"))
        for records in (private, group):
            self.assertEqual([seq for seq, _, _ in records], list(range(1, len(records) + 1)))
            messages = [message for _, _, message in records]
            self.assertEqual(len(messages), len(set(messages)), "a duplicated line")
        logged = {message for _, _, message in private} | {message for _, _, message in group}
        acked_messages = [line.split(" ", 2)[2] for line in acknowledged]
        lost = [message for message in acked_messages if message not in logged]
        self.assertEqual(lost, [])
        # What was logged is the burst, in order (some beyond the last acknowledgement).
        self.assertEqual([m for _, _, m in private], [line.split(" ", 2)[2] for line in lines[0::2]][:len(private)])
        self.assertEqual([m for _, _, m in group], [line.split(" ", 2)[2] for line in lines[1::2]][:len(group)])
        print(f"\n[kill -9] {len(acknowledged)} acknowledged before the kill, "
              f"{len(private) + len(group)} logged, {len(lost)} lost")
        self.assertLess(len(private) + len(group), self.BURST, "the kill came after the burst")

        # Restart on the same files: numbering continues, in both logs.
        restarted = self.start_server(data_dir=server.data_dir, credentials=server.credentials)
        yoda = self.client(restarted, "Yoda")
        hans = self.client(restarted, "Hans")
        yoda.send("/msgto Hans after the crash")
        self.assertRegex(yoda.final(), "^OK message sent at")
        # The group survived the crash (groups are durable), and so did every acknowledged record.
        yoda.send("/groupmsg Jedi after the crash")
        self.assertEqual(yoda.final(), "OK Group chat message sent.")
        restarted.stop()
        self.assertEqual(read_records(restarted.path("messagelog.txt"))[-1],
                         (len(private) + 1, "Yoda", "after the crash"))
        self.assertEqual(read_records(restarted.path("Jedi_messageLog.txt"))[-1],
                         (len(group) + 1, "Yoda", "after the crash"))
        # The database holds exactly the records of the files: none missing, none doubled.
        import sqlite3

        db = sqlite3.connect(restarted.path("chatproto.db"))
        try:
            for log_name, records in (("", private), ("Jedi", group)):
                rows = db.execute("SELECT seq, sender, text FROM messages WHERE log = ? ORDER BY seq",
                                  (log_name,)).fetchall()
                self.assertEqual([(seq, sender, text) for seq, sender, text in rows][:len(records)],
                                 [tuple(r) for r in records])
                self.assertEqual(len(rows), len(records) + 1)
        finally:
            db.close()

    @staticmethod
    def _send_quietly(sock, data):
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server was killed


class FloodEndToEndTests(EndToEndMixin, SynchronousTestCase):
    def test_caps_and_rate_limit(self):
        server = self.start_server("--max-connections-per-ip", "2", "--max-connections", "3",
                                   "--rate-limit", "5", "--rate-burst", "5")
        yoda = self.client(server, "Yoda")
        self.client(server, "Hans")
        refused = self.client(server)
        self.assertEqual(refused.read_line(), "ERR Too many connections from 127.0.0.1; try again later")
        self.assertIsNone(refused.read_line())
        # A pipelined flood: four answered at once (the login took a token), the rest read as
        # tokens come back (five a second), every line answered.
        started = time.monotonic()
        yoda.sock.sendall(b"/activeuser\n" * 8)
        finals = [yoda.final() for _ in range(8)]
        self.assertEqual(finals, ["OK"] * 8)
        self.assertGreaterEqual(time.monotonic() - started, 0.6)

    def test_concurrent_logins_with_hashed_password(self):
        # A bcrypt hash is checked in the reactor's thread pool: the checks
        # really overlap.
        import bcrypt

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credentials = os.path.join(directory, "credentials.txt")
        secret = bcrypt.hashpw(b"wise@!man", bcrypt.gensalt(4)).decode()
        with open(credentials, "w") as f:
            f.write(f"Yoda {secret}\nHans falcon*solo\n")
        server = self.start_server("--max-sessions", "1", data_dir=directory, credentials=credentials,
                                   attempts=3)
        clients = [self.client(server) for _ in range(6)]
        for client in clients:
            client.send("LOGIN Yoda wise@!man 6000")
        replies = [client.final() for client in clients]
        self.assertEqual(sorted(replies), [f"ERR {errors.ALREADY_LOGGED_IN}"] * 5 + ["OK Welcome to chatproto!"])
        self.assertEqual(server.read("userlog.txt").count("; Yoda; "), 1)
        # Wrong passwords at once, on several connections: each counted once.
        others = [client for client, reply in zip(clients, replies, strict=True) if reply.startswith("ERR")]
        for client in others:
            client.send("LOGIN Yoda wrong 6000")
        replies = [client.final() for client in others]
        self.assertEqual(replies.count(f"ERR {errors.BLOCKED_NOW}"), 1, replies)
        self.assertEqual(replies.count(f"ERR {errors.INVALID_PASSWORD}"), 2, replies)
        self.assertEqual(replies.count(f"ERR {errors.ACCOUNT_BLOCKED}"), 2, replies)



class LimitOptionsTests(SynchronousTestCase):
    """The flood limits are options of both C{python -m chatproto.server} and C{twistd chat}."""

    def test_server_and_twistd_options(self):
        from twisted.python import usage

        from chatproto.server.app import Options
        from chatproto.server import ServerOptions, options_first

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credentials = os.path.join(directory, "credentials.txt")
        with open(credentials, "w") as f:
            f.write("Yoda wise@!man\n")
        limits = ["--rate-limit", "2.5", "--rate-burst", "4", "--max-connections", "100",
                  "--max-connections-per-ip", "3"]
        expected = {"rate_limit": 2.5, "rate_burst": 4, "max_connections": 100,
                    "max_connections_per_ip": 3}
        server = ServerOptions()
        server.parseOptions(options_first(["0", "3", "--data-dir", directory, *limits]))
        self.assertEqual(server["limits"], expected)
        twistd = Options()
        twistd.parseOptions(["--credentials", credentials, "--data-dir", directory, *limits])
        self.assertEqual(twistd["limits"], expected)
        defaults = ServerOptions()
        defaults.parseOptions(["--data-dir", directory, "0", "3"])
        # On by default (issue 28, F3): 50 commands a second, bursts of twice that.
        self.assertEqual(defaults["limits"], {"rate_limit": 50.0, "rate_burst": 0, "max_connections": 10000,
                                              "max_connections_per_ip": 100})
        for bad in (["--rate-limit", "x"], ["--rate-limit", "-1"], ["--rate-limit", "nan"],
                    ["--rate-limit", "inf"], ["--max-connections", "-1"],
                    ["--max-connections-per-ip", "2.5"], ["--rate-burst", "many"]):
            self.assertRaises(usage.UsageError, ServerOptions().parseOptions,
                              ["--data-dir", directory, *bad, "0", "3"])
            self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--credentials", credentials, "--data-dir", directory, *bad])


class ListenBacklogTests(SynchronousTestCase):
    """
    A burst of connections (many users reconnecting after a restart) waits in the
    kernel's queue rather than overflowing Twisted's default of 50, which makes
    the kernel answer with SYN cookies and those clients hang.
    """

    def listened(self, description: str):
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import MemoryReactor

        from chatproto.server.app import server_endpoint

        reactor = MemoryReactor()
        self.successResultOf(server_endpoint(reactor, description).listen(Factory()))
        return reactor

    def test_every_listener_queues_a_burst(self):
        for description in ("tcp:9000", "tcp:6667:interface=127.0.0.1"):
            port, _factory, backlog, interface = self.listened(description).tcpServers[0]
            self.assertEqual(backlog, 1024, description)
        self.assertEqual(self.listened("unix:/tmp/chat.sock").unixServers[0][2], 1024)

    def test_a_backlog_the_operator_gives_is_kept(self):
        self.assertEqual(self.listened("tcp:9000:backlog=64").tcpServers[0][2], 64)
