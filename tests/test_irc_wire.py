"""The IRC front end's line parser splits a line as twisted.words' parsemsg does."""

import random

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
