"""
Hostile input over the line protocol (issue 6): property tests with
hypothesis, over C{StringTransport} and a C{task.Clock}, no reactor.

The properties, for any input whatsoever:
  - every complete line gets exactly one final C{OK} or C{ERR}, in order
    (an over-long line C{ERR Line too long}, a line that is not UTF-8
    C{ERR Invalid UTF-8}); after C{/logout} nothing more is read;
  - every line the server writes is one tagged line;
  - no exception escapes, none is logged, nobody sees C{ERR Server error};
  - the log files stay well formed: every line C{SEQ; TIMESTAMP; AUTHOR;
    MESSAGE} with SEQ 1, 2, 3, ..., and C{userlog.txt} lists exactly the
    users active now.
"""

import itertools
import os
import re
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from chatproto.storage.credentials import CredentialsFile
from chatproto.core.realm import ChatRealm
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase
from chatproto.frontends.line.protocol import MAX_LINE, USAGE, ChatServerFactory

ACCOUNTS = {"Yoda": "wise@!man", "Hans": "falcon*solo", "vader": "sithlord**", "leia": "alderaan"}
TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"
RECORD = re.compile(rf"^(\d+); ({TS}); ([^;\s]+); (.*)$")
USERLOG_LINE = re.compile(rf"^(\d+); ({TS}); ([^;\s]+); ([0-9.]+); (\d+)$")
TAGS = {"DATA", "OK", "ERR", "MSG", "NOTICE", "PEER", "OFFER"}
FINAL = {"OK", "ERR"}

# More examples for a deeper run: CHATPROTO_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py
EXAMPLES = int(os.environ.get("CHATPROTO_FUZZ_EXAMPLES", "150"))

# What a line is expected to get, whatever else happens.
LONG, BAD_UTF8, ANY = "long", "utf8", "any"


class Session:
    """
    A realm in a fresh directory with three users logged in over
    StringTransports (Yoda, Hans, vader) and a group Jedi that Yoda created
    and Hans joined.
    """

    def __init__(self, rate_limit=0.0, rate_burst=0):
        self.dir = tempfile.mkdtemp(prefix="chatproto-fuzz-")
        path = os.path.join(self.dir, "credentials.txt")
        with open(path, "w") as f:
            f.writelines(f"{name} {password}\n" for name, password in ACCOUNTS.items())
        self.clock = task.Clock()
        self.clock.advance(1654119004)
        self.storage = Ledger(MemoryDatabase(), self.dir, self.clock)
        self.chat = ChatRealm(CredentialsFile(path).load(), self.storage, self.clock, 3)
        self.chat.start()
        self.factory = ChatServerFactory(self.chat, rate_limit=rate_limit, rate_burst=rate_burst)
        self.connections = []
        for port, name in enumerate(["Yoda", "Hans", "vader"], 40001):
            protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
            protocol.makeConnection(transport)
            self.connections.append((protocol, transport))
            self.clock.advance(2)  # one fresh token, if rate limited
            self.feed(len(self.connections) - 1, f"LOGIN {name} {ACCOUNTS[name]} {port}\n".encode())
        self.clock.advance(2)
        self.feed(0, b"/creategroup Jedi Hans vader\n")
        self.feed(1, b"/joingroup Jedi\n")
        self.clock.advance(60)  # a fresh bucket for each connection, if rate limited
        self.setup_output = [self.take(i) for i in range(len(self.connections))]

    def feed(self, index: int, data: bytes) -> None:
        protocol, _transport = self.connections[index]
        protocol.dataReceived(data)
        self.clock.advance(0)  # the journal's batch of this turn

    def take(self, index: int) -> bytes:
        _protocol, transport = self.connections[index]
        data = transport.value()
        transport.clear()
        return data

    def closed(self, index: int) -> bool:
        return self.connections[index][1].disconnecting

    def close(self):
        self.chat.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def expectation(line: bytes) -> str:
    """What a complete line (without its C{\\n}) must get, whatever the state."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        return LONG
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return BAD_UTF8
    return ANY


# Strategies ---------------------------------------------------------------

COMMANDS = ["/msgto", "/activeuser", "/creategroup", "/joingroup", "/groupmsg", "/p2pvideo",
            "/logout", "/leavegroup", "/deletemsg", "/deletegroupmsg", "/createbroadcast", "/help",
            "LOGIN", "/nosuch", "/", "", "msgto", "/MSGTO", "/msgto;", "/msg\x00to", "/ünï"]
NAMES = ["Yoda", "Hans", "vader", "leia", "Nobody", "yoda", "Jedi", "jedi", "Sith", "A" * 32,
         "A" * 33, "../etc", "..", "a/b", "x\\y", "CON", "Jedi\x00", "ok1", "Ünï", "1", "0", "-1",
         "99999999999999999999", "wise@!man", "6000", "65536"]
# Message text: anything but the line delimiter; control characters, ";" and
# "\r" included on purpose.
TEXT = st.one_of(
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["a; b; c; d", "semi;colon", "cr\rinside", "tab\there", "nul\x00byte",
                     "bell\x07", "del\x7f", "nel\x85", "ls\u2028ps\u2029", "; ", ";", "\r", " ",
                     "\x1b[31mred", "é" * 10, "\U0001f600"]),
)
TOKEN = st.one_of(st.sampled_from(NAMES), TEXT)

structured = st.builds(
    lambda command, args, sep: (command + sep + " ".join(args)).encode("utf-8"),
    st.sampled_from(COMMANDS),
    st.lists(TOKEN, max_size=5),
    st.sampled_from([" ", "  ", "\t", ""]),
)


def _insert(data: bytes, at: int, insert: bytes) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] + insert + data[at:]


invalid_utf8 = st.builds(
    _insert, structured, st.integers(0, 200),
    st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80",
                     b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]),
)
random_bytes = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b""))
huge = st.builds(
    lambda prefix, size, filler: (prefix + filler * size)[:size],
    st.sampled_from([b"", b"/msgto Hans ", b"/groupmsg Jedi ", b"LOGIN "]),
    st.sampled_from([MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2, 3 * MAX_LINE]),
    st.sampled_from([b"x", b"\xff", b"\xc3\xa9", b";"]),
)
LINE = st.one_of(structured, structured, structured, invalid_utf8, random_bytes, huge)

# One step: a connection, a few lines (each with its delimiter), the places
# where the bytes are cut into separate reads, and time passing afterwards.
STEP = st.tuples(
    st.integers(0, 2),
    st.lists(st.tuples(LINE, st.sampled_from([b"\n", b"\r\n"])), min_size=1, max_size=4),
    st.lists(st.integers(0, 4 * MAX_LINE), max_size=3),
    st.sampled_from([0, 0, 0, 0.01, 0.5, 11]),
)


class FuzzTests(SynchronousTestCase):
    def setUp(self):
        self.failures = []

        def observer(event):
            if "log_failure" in event:
                self.failures.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def run_steps(self, session: Session, steps, tail: bytes):
        expected = [[] for _ in session.connections]
        output = [b"" for _ in session.connections]
        for index, lines, cuts, pause in steps:
            if session.closed(index):
                continue
            data = b"".join(line + end for line, end in lines)
            expected[index].extend(expectation(line + end[:-1]) for line, end in lines)
            bounds = sorted({c % len(data) for c in cuts} | {0, len(data)})
            for start, end in itertools.pairwise(bounds):
                session.feed(index, data[start:end])
            if pause:
                session.clock.advance(pause)
            for i in range(len(session.connections)):
                output[i] += session.take(i)
        # Lines over a command rate wait, unread, for their tokens: let them come.
        for _ in range(sum(len(lines) for _, lines, _, _ in steps) + 1):
            session.clock.advance(1)
        for i in range(len(session.connections)):
            output[i] += session.take(i)
        if tail and not session.closed(0):
            session.feed(0, tail)  # a last line without its newline: no answer yet
            output[0] += session.take(0)
        return expected, output

    def check_connection(self, expected: list[str], output: bytes, closed: bool):
        self.assertTrue(output == b"" or output.endswith(b"\n"), output[-200:])
        finals = []
        for raw in output.split(b"\n")[:-1]:
            text = raw.decode("utf-8")  # the server only writes UTF-8
            tag = text.split(" ", 1)[0]
            self.assertIn(tag, TAGS, text)
            self.assertNotIn("\r", text)
            if tag in FINAL:
                finals.append(text)
        self.assertNotIn("ERR Server error", finals)
        # After a successful /logout nothing more is read.
        for position, final in enumerate(finals):
            if final.startswith("OK Bye, "):
                self.assertTrue(closed)
                expected = expected[:position + 1]
                break
        self.assertEqual(len(finals), len(expected), (finals, expected))
        for final, kind in zip(finals, expected, strict=True):
            if kind == LONG:
                self.assertEqual(final, "ERR Line too long")
            elif kind == BAD_UTF8:
                self.assertEqual(final, "ERR Invalid UTF-8")
            else:
                self.assertNotIn(final, ("ERR Line too long", "ERR Invalid UTF-8"))

    def check_logs(self, session: Session):
        session.chat.storage.flush()
        names = os.listdir(session.dir)
        for name in names:
            if name in ("credentials.txt", "userlog.txt") or not name.endswith(".txt"):
                continue
            self.assertTrue(name == "messagelog.txt" or re.fullmatch(r"[A-Za-z0-9]{1,32}_messageLog\.txt", name),
                            name)
            with open(os.path.join(session.dir, name), "rb") as f:
                data = f.read()
            self.assertTrue(data == b"" or data.endswith(b"\n"), name)
            for seq, line in enumerate(data.decode("utf-8").split("\n")[:-1], 1):
                match = RECORD.match(line)
                self.assertIsNotNone(match, (name, line))
                self.assertEqual(int(match.group(1)), seq, (name, line))
                # One line for any common reader, no terminal control codes.
                self.assertEqual(line.splitlines(), [line], (name, line))
                self.assertFalse(re.search("[\x00-\x1f\x7f]", line), (name, line))
        with open(os.path.join(session.dir, "userlog.txt"), encoding="utf-8") as f:
            users = f.read().splitlines()
        active = [user.name for user in session.chat.active_users()]
        self.assertEqual(len(users), len(active))
        for seq, (line, name) in enumerate(zip(users, active, strict=True), 1):
            match = USERLOG_LINE.match(line)
            self.assertIsNotNone(match, line)
            self.assertEqual((int(match.group(1)), match.group(3)), (seq, name))
        # Nothing outside the data directory, nothing but the chat's files in it.
        for name in names:
            self.assertRegex(name, r"^(credentials|userlog|messagelog|[A-Za-z0-9]{1,32}_messageLog)\.txt$")

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(STEP, min_size=1, max_size=12),
           st.one_of(st.just(b""), random_bytes, structured),
           st.sampled_from([(0.0, 0), (0.0, 0), (5.0, 3), (1.0, 1)]))
    def test_every_line_answered_once(self, steps, tail, rate):
        session = Session(*rate)
        try:
            for setup in session.setup_output:
                self.assertNotIn(b"ERR", setup)
            expected, output = self.run_steps(session, steps, tail.replace(b"\n", b""))
            for index, (kinds, data) in enumerate(zip(expected, output, strict=True)):
                self.check_connection(kinds, data, session.closed(index))
            self.check_logs(session)
            self.assertEqual(self.failures, [])
        finally:
            session.close()


class WrongArgumentCountTests(SynchronousTestCase):
    """Every command, with too few and too many arguments: its usage line, nothing changed."""

    def test_every_command(self):
        session = Session()
        self.addCleanup(session.close)
        checked = 0
        for command, form in USAGE.items():
            if command == "LOGIN":
                continue
            words = form.split()
            fixed = re.sub(r"\[.*\]", "", form).split()[1:]
            rest_of_line = "MESSAGE" in words
            variadic = "[" in form
            counts = list(range(len(fixed)))
            if not (rest_of_line or variadic):
                counts.append(len(fixed) + 1)
            for count in counts:
                line = " ".join([words[0], *["Hans"] * count])
                session.feed(0, line.encode() + b"\n")
                output = session.take(0).decode().splitlines()
                if count < len(fixed):
                    self.assertEqual(output, [f"ERR Usage: {form}"], line)
                else:
                    # One too many: an error (a usage line, or a reason such
                    # as "A password cannot contain whitespace.").
                    self.assertEqual(len(output), 1, line)
                    self.assertRegex(output[0], r"^ERR (?!Server error|Error\. Invalid command)", line)
                checked += 1
        self.assertGreaterEqual(checked, 10)
        self.assertEqual(session.chat.storage.logs.messagelog.last_seq, 0)

    def test_login_wrong_counts_before_login(self):
        session = Session()
        self.addCleanup(session.close)
        protocol = session.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol.makeConnection(transport)
        for line in [b"LOGIN", b"LOGIN leia", b"LOGIN leia alderaan", b"LOGIN leia alderaan 1 2",
                     b"LOGIN leia alderaan port", b"LOGIN leia alderaan 0", b"LOGIN leia alderaan 65536"]:
            protocol.dataReceived(line + b"\n")
            session.clock.advance(0)
            self.assertEqual(transport.value(), b"ERR Usage: LOGIN USERNAME PASSWORD UDP_PORT\n", line)
            transport.clear()
        self.assertIsNone(session.chat.active_user("leia"))


class FramingTests(SynchronousTestCase):
    """The edges of the framing, one by one."""

    def setUp(self):
        self.session = Session()
        self.addCleanup(self.session.close)

    def send(self, data: bytes, index=0) -> list[str]:
        self.session.feed(index, data)
        return self.session.take(index).decode("utf-8").splitlines()

    def test_longest_line_accepted_with_either_delimiter(self):
        message = b"/msgto Hans " + b"x" * (MAX_LINE - len(b"/msgto Hans "))
        self.assertEqual(len(message), MAX_LINE)
        for end in (b"\n", b"\r\n"):
            reply = self.send(message + end)
            self.assertEqual(len(reply), 1)
            self.assertTrue(reply[0].startswith("OK message sent at "), reply)
        # Cut just after the "\r": still the longest line, not a long one.
        self.session.feed(0, message + b"\r")
        self.assertEqual(self.send(b"\n")[0][:19], "OK message sent at ")

    def test_one_byte_more_is_too_long(self):
        for end in (b"\n", b"\r\n"):
            self.assertEqual(self.send(b"x" * (MAX_LINE + 1) + end), ["ERR Line too long"])
        reply = self.send(b"/activeuser\n")
        self.assertEqual([line.split(",")[0] for line in reply], ["DATA Hans", "DATA vader", "OK"])

    def test_long_line_in_pieces_then_more(self):
        self.assertEqual(self.send(b"y" * 50000), [])
        self.assertEqual(self.send(b"y" * 50000), ["ERR Line too long"])
        self.assertEqual(self.send(b"y" * 200000), [])  # still discarding
        self.assertEqual(self.send(b"yy\n/msgto\n"), ["ERR Usage: /msgto USERNAME MESSAGE"])

    def test_separators_and_control_characters_in_messages(self):
        hans = self.session.take(1)  # noqa: F841  (drain)
        reply = self.send(b"/msgto Hans a; b;c\rd\x00e\x1bf\x7fg\xc2\x85h\xe2\x80\xa8i\n")
        self.assertTrue(reply[0].startswith("OK message sent at "))
        delivered = self.session.take(1).decode("utf-8")
        self.assertEqual(delivered.count("\n"), 1)
        self.assertTrue(delivered.endswith(": a; b;c d e f g h i\n"), delivered)
        self.session.chat.storage.flush()
        with open(os.path.join(self.session.dir, "messagelog.txt"), encoding="utf-8") as f:
            record = f.read()
        self.assertRegex(record, rf"^1; {TS}; Yoda; a; b;c d e f g h i\n$")
        # Readers split on the first three "; ": the message comes back whole.
        self.assertEqual(record.rstrip("\n").split("; ", 3)[3], "a; b;c d e f g h i")

    def test_group_message_with_separators(self):
        reply = self.send(b"/groupmsg Jedi x;; y\r\r\n")
        self.assertEqual(reply, ["OK Group chat message sent."])
        self.session.chat.storage.flush()
        with open(os.path.join(self.session.dir, "Jedi_messageLog.txt"), encoding="utf-8") as f:
            self.assertRegex(f.read(), rf"^1; {TS}; Yoda; x;; y \n$")

    def test_no_newline_no_answer(self):
        self.assertEqual(self.send(b"/activeuser"), [])
        self.assertEqual(len(self.send(b"\n")), 3)  # two DATA lines and OK

    def test_empty_and_blank_lines(self):
        for line in (b"\n", b"\r\n", b"   \n", b"\t\n", b"\x00\n"):
            self.assertEqual(self.send(line), ["ERR Error. Invalid command!"], line)

    def test_names_never_become_paths(self):
        for name in ["../x", "..", "a/b", "/tmp/x", "x\\y", "A" * 33, "ü", "a.b", "a_b", "a\x00b"]:
            reply = self.send(f"/creategroup {name} Hans\n".encode())
            self.assertEqual(reply, ["ERR Group name must be 1-32 letters and digits"], name)
        self.assertEqual(sorted(os.listdir(self.session.dir)),
                         ["Jedi_messageLog.txt", "credentials.txt", "messagelog.txt", "userlog.txt"])
