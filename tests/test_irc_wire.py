"""The IRC front end's line parser splits a line as twisted.words' parsemsg does."""

import random

import irctokens

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols import irc

from chatproto.frontends.irc.wire import BadLine, parse_line

WORDS = ["PRIVMSG", "privmsg", "#chan", "nick", ":hello", "there", ":", "a:b", "::x", "JOIN", "x y"]


class ParserAgreesWithParsemsgTests(SynchronousTestCase):
    def test_random_lines(self):
        rng = random.Random(17)
        compared = 0
        for _ in range(20000):
            parts = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
            if rng.random() < 0.3:
                parts.insert(0, ":" + rng.choice(["nick!user@host", "server.example", "x"]))
            text = " ".join(parts)
            try:
                ours = parse_line(text)
            except BadLine:
                continue
            try:
                prefix, command, params = irc.parsemsg(text)
            except Exception:  # noqa: BLE001 - a line parsemsg cannot take: nothing to compare
                continue
            self.assertEqual((ours.prefix, ours.command, ours.params),
                             (prefix, command.upper(), params), text)
            compared += 1
        self.assertGreater(compared, 10000)

    def test_tags_are_split_off_first(self):
        line = parse_line("@time=2026-12-01T00:00:00Z;label=a\\sb :nick PRIVMSG #c :hi there")
        self.assertEqual(line.tags, {"time": "2026-12-01T00:00:00Z", "label": "a b"})
        self.assertEqual((line.prefix, line.command, line.params), ("nick", "PRIVMSG", ["#c", "hi there"]))


class LongLinesKeepOneMsgidTests(SynchronousTestCase):
    def test_only_the_first_part_names_the_message(self):
        # A client that drops a msgid it has already seen would drop every part after the first.
        from chatproto.frontends.irc.wire import MAX_BODY, encode
        text = " ".join(f"word{i}" for i in range(400))
        raw = encode(f"@time=2026-12-07T12:00:00.000Z;msgid=p.7 :Yoda!Yoda@chatproto PRIVMSG luke :{text}")
        lines = raw.decode().split("\r\n")[:-1]
        self.assertGreater(len(lines), 3)
        parts = [irctokens.tokenise(line) for line in lines]
        self.assertEqual(parts[0].tags, {"time": "2026-12-07T12:00:00.000Z", "msgid": "p.7"})
        for part in parts[1:]:
            self.assertEqual(part.tags, {"time": "2026-12-07T12:00:00.000Z"})
        for line in lines:
            self.assertLessEqual(len(line.split(" ", 1)[1].encode()), MAX_BODY)
        self.assertEqual(" ".join(part.params[1] for part in parts), text)

    def test_a_part_left_with_no_tag_has_no_tag_part(self):
        from chatproto.frontends.irc.wire import encode
        raw = encode("@msgid=p.8 :Yoda!Yoda@chatproto PRIVMSG luke :" + "x " * 400)
        lines = raw.decode().split("\r\n")[:-1]
        self.assertTrue(lines[0].startswith("@msgid=p.8 :Yoda!"))
        self.assertTrue(all(line.startswith(":Yoda!Yoda@chatproto PRIVMSG luke :") for line in lines[1:]))


class MiddleParametersTests(SynchronousTestCase):
    def test_a_middle_parameter_that_cannot_be_one_is_a_star(self):
        # FAIL SEARCH INVALID_TARGET echoes the client's target: "a b" or ":x" would shift the line.
        from chatproto.frontends.irc.wire import format_line
        for target in ("a b", ":x", ""):
            line = irctokens.tokenise(format_line("FAIL", ["SEARCH", "INVALID_TARGET", target, "No such"],
                                                  prefix="chatproto"))
            self.assertEqual(line.params, ["SEARCH", "INVALID_TARGET", "*", "No such"])
        self.assertEqual(format_line("PRIVMSG", ["#Jedi", "hi there"]), "PRIVMSG #Jedi :hi there")
