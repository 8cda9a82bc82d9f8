"""
Hostile clients against the IRC front end (issue 28), over StringTransport
and task.Clock: no forged lines, no input kept after a close, clean texts,
no traceback for a busy login, no members shown to strangers.
"""

from tests.irc_support import commands, find, one, settle
from tests.support import hold_password_checks
from tests.test_irc import IRCTestCase
from tests.test_robustness import collect_failures


def wire_lines(connection) -> list[bytes]:
    """The client's output since the last read, as raw lines (CR LF kept off)."""
    settle(connection.clock)
    data = connection.transport.value()
    connection.transport.clear()
    assert data == b"" or data.endswith(b"\r\n"), data[-80:]
    return data.split(b"\r\n")[:-1]


def untagged(line: bytes) -> bytes:
    return line.split(b" ", 1)[1] if line.startswith(b"@") else line


def pieces_of(data: bytes, size: int = 512) -> list[bytes]:
    """What a client that reads C{size}-byte pieces and takes each as a line (ii) sees."""
    return [data[i:i + size] for i in range(0, len(data), size)]


class LongLineTests(IRCTestCase):
    """F1: no line to an IRC client exceeds 512 bytes after its tags."""

    def setUp(self):
        super().setUp()
        self.yoda = self.other("Yoda", "wise@!man")  # a line-protocol user
        self.leia = self.env.register("leia", "alderaan")
        wire_lines(self.leia)

    def assertFits(self, lines):
        for line in lines:
            self.assertLessEqual(len(untagged(line)) + 2, 512, line[:100])
            line.decode("utf-8")  # never a character cut in two

    def test_a_64_KiB_message_arrives_as_lines_of_512_bytes_at_most(self):
        words = " ".join(f"word{i}" for i in range(12000))[:65000]
        self.call(self.chat.send_private(self.yoda.user, "leia", words))
        lines = wire_lines(self.leia)
        self.assertFits(lines)
        self.assertGreater(len(lines), 100)
        prefixes = {line.split(b" :", 1)[0] for line in lines}
        self.assertEqual(prefixes, {b":Yoda!Yoda@chatproto PRIVMSG leia"})
        # Cut at spaces: the words come back whole, in order.
        text = " ".join(line.split(b" :", 1)[1].decode() for line in lines)
        self.assertEqual(text, words)

    def test_private_messages_around_the_line_limit_read_the_same_with_or_without_tags(self):
        head = len(":Yoda!Yoda@chatproto PRIVMSG leia :")
        tagged = self.env.register("leia", "alderaan", caps=["server-time"])  # her second session
        wire_lines(tagged)
        for size in (1, 510 - head - 1, 510 - head, 510 - head + 1, 1200):
            text = ("ab " * size)[:size].rstrip() + "z"
            self.call(self.chat.send_private(self.yoda.user, "leia", text))
            plain = wire_lines(self.leia)
            self.assertFits(plain)
            self.assertEqual(len(plain) == 1, head + len(text.encode()) <= 510, size)
            self.assertEqual(" ".join(line.split(b" :", 1)[1].decode() for line in plain), text)
            self.assertEqual([untagged(line) for line in wire_lines(tagged)], plain)

    def test_text_padded_to_512_forges_no_line(self):
        head = ":Yoda!Yoda@chatproto PRIVMSG leia :"
        forged = ":Hans!Hans@chatproto PRIVMSG leia :Hi leia, Hans here"
        text = "hello leia" + " " * (512 - len(head) - len("hello leia"))
        text += forged + " " * (1024 - len(head) - len(text) - len(forged))
        text += ":chatproto NOTICE leia :the server says so"
        self.call(self.chat.send_private(self.yoda.user, "leia", text))
        data = b"".join(line + b"\r\n" for line in wire_lines(self.leia))
        self.assertFits(data.split(b"\r\n")[:-1])
        # ii reads 512-byte pieces: each is one of Yoda's lines, none is Hans's or the server's.
        seen = [piece.split(b"\r\n")[0] for piece in pieces_of(data)]
        for piece in seen:
            self.assertTrue(piece.startswith(b":Yoda!Yoda@chatproto PRIVMSG leia :"), piece[:60])

    def test_multibyte_text_is_never_cut_inside_a_character(self):
        for text in ("é" * 3000, "🚀" * 900 + "e", "a" + "€" * 2000):
            self.call(self.chat.send_private(self.yoda.user, "leia", text))
            lines = wire_lines(self.leia)
            self.assertFits(lines)
            self.assertEqual("".join(line.split(b" :", 1)[1].decode() for line in lines), text)

    def test_group_messages_and_history_replays_are_split_too(self):
        luke = self.env.register("luke", "jedi*knight",
                                 caps=["draft/chathistory", "batch", "server-time", "message-tags"])
        luke.send("JOIN #Jedi", "INVITE leia #Jedi", "INVITE Yoda #Jedi")
        self.leia.send("JOIN #Jedi")
        luke.send("PRIVMSG #Jedi :" + "y" * 400)
        self.leia.lines()
        text = "x" * 65000  # from the line protocol: IRC input is at most 512 bytes
        self.call(self.chat.join_group(self.yoda.user, "Jedi"))
        self.call(self.chat.send_group(self.yoda.user, "Jedi", text))
        for connection in (luke, self.leia):
            lines = [line for line in wire_lines(connection) if b"PRIVMSG" in line]
            self.assertFits(lines)
            self.assertGreater(len(lines), 130)
        luke.protocol.dataReceived(b"CHATHISTORY LATEST #Jedi * 10\r\n")
        lines = [line for line in wire_lines(luke) if b"PRIVMSG" in line]
        self.assertFits(lines)
        self.assertGreater(len(lines), 130)
        # Every part is in the batch and has the time; only the first names the message.
        self.assertTrue(all(b"batch=" in line and b"time=" in line for line in lines))
        with_msgid = [line for line in lines if b"msgid=" in line]
        self.assertEqual(len(with_msgid), 2)  # luke's short one and the first part of Yoda's

    def test_every_other_line_is_cut_or_split_too(self):
        # Numerics echoing a long name the client sent are cut (at a character boundary).
        self.leia.protocol.dataReceived(("PRIVMSG " + "n" * 480 + " :hi\r\n").encode())
        self.leia.protocol.dataReceived(("WHOIS " + "é" * 250 + "\r\n").encode())
        lines = wire_lines(self.leia)
        self.assertFits(lines)
        self.assertEqual(len(lines), 3)


class ClosedConnectionInputTests(IRCTestCase):
    """F4: a connection closed before registration keeps none of its unread input."""

    def test_a_flood_before_registration_is_dropped_with_the_connection(self):
        c = self.env.connect()
        c.protocol.dataReceived(b"ab\n" * 21845)
        lines = c.lines()
        self.assertEqual(commands(lines)[-1], "ERROR")
        self.assertEqual(lines[-1].params, ["Closing link: Too many lines before registration"])
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(c.protocol.unread_input().count(b"\n"), 0)  # was 21,780 lines until the 30 s deadline
        c.protocol.dataReceived(b"ab\n" * 1000)  # what still comes is not kept either
        self.assertEqual(c.protocol.unread_input().count(b"\n"), 0)
        self.assertEqual(c.lines(), [])

    def test_a_flood_behind_a_slow_login_is_dropped_with_the_connection(self):
        c = self.env.connect()
        # The login waits for the core; the lines behind it wait in the queue, then QUIT closes.
        c.protocol.dataReceived(b"PASS alderaan\r\nNICK leia\r\nUSER u 0 * :r\r\nQUIT\r\n" + b"PING x\r\n" * 3000)
        c.lines()
        self.assertTrue(c.closed)
        self.assertEqual(c.protocol.unread_input().count(b"\n"), 0)


def controls(lines) -> list[bytes]:
    """The lines that carry a control character (other than their CR LF)."""
    return [line for line in lines if any(b < 0x20 or b == 0x7F for b in line)]


class CleanTextTests(IRCTestCase):
    """F9: away texts and the nick echoed before registration are cleaned as message text is."""

    def test_away_text_reaches_nobody_with_control_characters(self):
        leia = self.env.register("leia", "alderaan", caps=["away-notify"])
        vader = self.env.register("vader", "sithlord**", caps=["away-notify"])
        vader.send("JOIN #Sith", "INVITE leia #Sith")
        leia.send("JOIN #Sith")
        vader.lines()
        leia.protocol.dataReceived(b"AWAY :gone \x1b[2J \x01x\x01 \x00z\xe2\x80\xaeevil\r\n")
        notify = wire_lines(vader)
        self.assertEqual(controls(notify), [])
        self.assertEqual(notify, [b":leia!leia@chatproto AWAY :gone  [2J  x   z<U+202E>evil"])
        vader.protocol.dataReceived(b"PRIVMSG leia :hi\r\nWHOIS leia\r\n")
        replies = wire_lines(vader)
        away = [line for line in replies if line.split(b" ")[1] == b"301"]
        self.assertEqual(len(away), 2)
        self.assertEqual(controls(replies), [])

    def test_the_nick_echoed_before_registration_is_cleaned(self):
        c = self.env.connect()
        c.protocol.dataReceived(b"NICK a\x1b[2Jb\x07\r\nJOIN #x\r\n")
        lines = wire_lines(c)
        self.assertEqual(controls(lines), [])
        self.assertEqual(lines, [b":chatproto 451 a_[2Jb_ :You have not registered"])


class BusyLoginTests(IRCTestCase):
    """F8: IRC says the line protocol's words for a login refused because too many wait."""

    def test_concurrent_wrong_passwords_get_the_busy_text_and_no_traceback(self):
        from chatproto.core.passwords import hash_password

        self.fixture.accounts.secrets["Hans"] = hash_password("falcon*solo", rounds=4)
        pending = hold_password_checks(self.chat)
        failures = collect_failures(self)
        flood = [self.env.connect() for _ in range(50)]
        for i, c in enumerate(flood):
            c.protocol.dataReceived(f"PASS wrong{i}\r\nNICK Hans\r\nUSER u 0 * :r\r\n".encode())
        while pending:
            d, function, args = pending.pop(0)
            d.callback(function(*args))
            settle(self.clock)
        texts = [one(c.lines(), "464").params[-1] for c in flood]
        busy = "Too many logins for this account at once. Please try again later"
        self.assertGreater(texts.count(busy), 30)
        self.assertEqual([t for t in texts if "Server error" in t], [])
        self.assertEqual(failures, [])


class PrivacyTests(IRCTestCase):
    """F7: a group's members, owner and kind are shown to its members only (as /members)."""

    def setUp(self):
        super().setUp()
        self.yoda = self.env.register("Yoda", "wise@!man")
        self.hans = self.env.register("Hans", "falcon*solo")
        self.yoda.send("JOIN #secret", "INVITE Hans #secret")
        self.hans.send("JOIN #secret")
        self.vader = self.env.register("vader", "sithlord**")
        self.yoda.lines()

    def test_a_stranger_sees_no_member_owner_or_mode(self):
        lines = self.vader.send("NAMES #secret", "WHO #secret", "WHOIS Hans", "TOPIC #secret",
                                "MODE #secret", "LIST")
        self.assertEqual([line.format() for line in lines if "Yoda" in line.format()], [])
        self.assertEqual(find(lines, "353") + find(lines, "352") + find(lines, "319") + find(lines, "322")
                         + find(lines, "332") + find(lines, "324"), [])
        self.assertEqual([line.params[1:] for line in find(lines, "442")],
                         [["#secret", "You are not in this group chat."]] * 2)
        self.assertEqual(commands(lines).count("366"), 1)
        self.assertEqual(commands(lines).count("315"), 1)

    def test_members_still_see_it_all(self):
        lines = self.yoda.send("NAMES #secret", "WHO #secret", "WHOIS Hans", "TOPIC #secret", "MODE #secret",
                               "LIST")
        self.assertEqual(one(lines, "353").params[-1], "Yoda Hans")
        self.assertEqual(sorted(line.params[5] for line in find(lines, "352")), ["Hans", "Yoda"])
        self.assertEqual(one(lines, "319").params[-1], "#secret")
        self.assertEqual(one(lines, "332").params[-1], "Group chat secret, owner Yoda")
        self.assertEqual(one(lines, "324").params[-1], "+nt")
        self.assertEqual(one(lines, "322").params[1], "#secret")


HEAVY = b"@" + b"a=\\s\\:;" * 1169 + b" PING x\r\n"  # 8 KiB of tags that take long to parse


class ByteFairnessTests(IRCTestCase):
    """F6: a turn's share of input is measured in bytes too, not only in lines."""

    def test_heavy_lines_get_a_turn_of_bytes_not_of_64_lines(self):
        heavy = [self.env.connect() for _ in range(5)]
        other = self.env.connect()
        written = []  # (connection, bytes), in the order they reach the transports
        for c in heavy + [other]:
            c.transport.write = lambda data, c=c, write=c.transport.write: (written.append((c, data)), write(data))
        for c in heavy:
            c.protocol.dataReceived(HEAVY * 60)
        other.protocol.dataReceived(b"PING mine\r\n")
        settle(self.clock)
        pongs = [c for c, data in written for _ in range(data.count(b"PONG"))]
        self.assertEqual(len(pongs), 5 * 60 + 1)  # nothing is lost, only spread over turns
        # Before the other connection's answer: a turn's worth of bytes of each heavy connection
        # (two lines at most), not all their 300 lines.
        self.assertLessEqual(pongs.index(other), 2 * 5)
        self.assertEqual(wire_lines(other), [b":chatproto PONG chatproto mine"])
