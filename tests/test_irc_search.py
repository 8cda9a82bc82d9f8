"""IRC's soju.im/search over StringTransport, replies parsed with irctokens."""

from tests.irc_support import commands
from tests.test_irc import IRCTestCase


class IRCSearchTests(IRCTestCase):
    def setUp(self):
        super().setUp()
        self.luke = self.other("luke", "jedi*knight")
        self.c = self.env.register("Yoda", "wise@!man",
                                   caps=["soju.im/search", "batch", "server-time", "message-tags"])
        self.c.send("PRIVMSG luke :into hyperspace")
        self.clock.advance(10)
        self.c.send("JOIN #Jedi")
        self.c.send("PRIVMSG #Jedi :Café HYPERDRIVE")
        self.clock.advance(10)
        self.c.send("PRIVMSG luke :nothing here")
        self.clock.advance(10)
        self.call(self.chat.send_private(self.luke.user, "Yoda", "hyper back"))
        self.c.lines()  # luke's message, delivered

    def search(self, attributes):
        lines = self.c.send(f"SEARCH {attributes}")
        self.assertEqual(lines[0].command, "BATCH")
        ref = lines[0].params[0][1:]
        self.assertEqual(lines[0].params[1:], ["soju.im/search"])
        self.assertEqual(lines[-1].params, ["-" + ref])
        for line in lines[1:-1]:
            self.assertEqual(line.tags["batch"], ref)
            self.assertRegex(line.tags["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        return lines[1:-1]

    def test_cap_offered(self):
        c = self.env.connect()
        ls = c.send("CAP LS 302")[0]
        self.assertIn("soju.im/search", ls.params[-1].split())

    def test_results_oldest_first_in_one_batch(self):
        lines = self.search("text=hyper")
        self.assertEqual([(line.hostmask.nickname, line.command, *line.params) for line in lines], [
            ("Yoda", "PRIVMSG", "luke", "into hyperspace"),
            ("Yoda", "PRIVMSG", "#Jedi", "Café HYPERDRIVE"),
            ("luke", "PRIVMSG", "Yoda", "hyper back")])

    def test_in_from_limit_before_after(self):
        self.assertEqual([line.params[1] for line in self.search("text=hyper;in=#Jedi")], ["Café HYPERDRIVE"])
        self.assertEqual([line.params[1] for line in self.search("text=cafe;in=luke")], [])
        self.assertEqual([line.params[1] for line in self.search("text=hyper;from=luke")], ["hyper back"])
        self.assertEqual([line.params[1] for line in self.search("text=hyper;limit=2")],
                         ["Café HYPERDRIVE", "hyper back"])
        lines = self.search("text=hyper")
        middle = lines[1].tags["time"]
        self.assertEqual([line.params[1] for line in self.search(f"text=hyper;before={middle}")],
                         ["into hyperspace"])
        self.assertEqual([line.params[1] for line in self.search(f"text=hyper;after=timestamp={middle}")],
                         ["hyper back"])

    def test_escaped_text_and_operators_are_words(self):
        self.assertEqual([line.params[1] for line in self.search(r"text=into\shyp")], ["into hyperspace"])
        self.assertEqual(self.search(r'text=into\sOR\sback'), [])
        self.assertEqual(self.search('text="*"'), [])

    def test_refusals(self):
        for attributes, expected in [
                ("", ["FAIL", "SEARCH", "INVALID_PARAMS", "Not enough parameters"]),
                ("in=#Jedi", ["FAIL", "SEARCH", "INVALID_PARAMS", "text", "Missing search text"]),
                ("text=x;limit=0", ["FAIL", "SEARCH", "INVALID_PARAMS", "limit", "Invalid limit"]),
                ("text=x;before=yesterday", ["FAIL", "SEARCH", "INVALID_PARAMS", "before", "Invalid timestamp"]),
                ("text=x;in=nobody", ["FAIL", "SEARCH", "INVALID_TARGET", "nobody", "No such user: nobody"]),
                ("text=x;in=#Sith", ["FAIL", "SEARCH", "INVALID_TARGET", "#Sith",
                                     "The group chat does not exist."])]:
            lines = self.c.send(f"SEARCH {attributes}".strip())
            self.assertEqual([[line.command, *line.params] for line in lines], [expected], attributes)

    def test_another_users_conversations_and_groups_are_not_found(self):
        leia = self.env.register("leia", "alderaan", caps=["soju.im/search", "batch"])
        lines = leia.send("SEARCH text=hyper")
        self.assertEqual(commands(lines), ["BATCH", "BATCH"])

    def test_searches_sent_at_once_are_answered_in_turn(self):
        # One IRC connection's commands wait for each other: it never has two searches waiting.
        lines = self.c.send("SEARCH text=into", "SEARCH text=cafe", "SEARCH text=back")
        self.assertEqual([line.params[1] for line in lines if line.command == "PRIVMSG"],
                         ["into hyperspace", "Café HYPERDRIVE", "hyper back"])
        self.assertEqual([line.command for line in lines].count("BATCH"), 6)
