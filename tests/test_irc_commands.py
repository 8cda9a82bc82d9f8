"""
The IRC command table: a command with too few parameters gets 461 with the
exact text and nothing else happens; an unknown command gets 421 (451 before
registration), as the front end always answered them.
"""

from tests.irc_support import commands, one, settle
from tests.test_irc import IRCTestCase


class CommandTableTests(IRCTestCase):
    def send_exact(self, connection, line: str) -> bytes:
        """What the server writes back for C{line}, byte for byte."""
        connection.protocol.dataReceived(line.encode("utf-8") + b"\r\n")
        settle(self.clock)
        data = connection.transport.value()
        connection.transport.clear()
        return data

    def test_too_few_parameters_after_registration(self):
        c = self.env.register("Yoda", "wise@!man")
        c.lines()
        for line, command in [("JOIN", "JOIN"), ("PART", "PART"), ("TOPIC", "TOPIC"), ("MODE", "MODE"),
                              ("INVITE luke", "INVITE"), ("KILL", "KILL"), ("KILL :", "KILL"),
                              ("CAP", "CAP")]:
            self.assertEqual(self.send_exact(c, line),
                             f":chatproto 461 Yoda {command} :Not enough parameters\r\n".encode(), line)

    def test_too_few_parameters_change_nothing(self):
        luke = self.other("luke", "jedi*knight")
        c = self.env.register("Yoda", "wise@!man")
        c.send("JOIN #Jedi")
        before = self.call(self.chat.group_info("Jedi")).members
        self.assertEqual(commands(c.send("INVITE luke")), ["461"])
        self.assertEqual(self.call(self.chat.group_info("Jedi")).members, before)
        self.assertEqual(luke.events, [])  # no invitation went out
        self.assertEqual(commands(c.send("PART")), ["461"])
        self.assertIn("Yoda", dict(self.call(self.chat.group_info("Jedi")).members))
        self.assertEqual(commands(c.send("KILL :")), ["461"])
        self.assertEqual(set(self.active()), {"luke", "Yoda"})
        self.assertFalse(c.closed)

    def test_too_few_parameters_before_registration(self):
        c = self.env.connect()
        self.assertEqual(self.send_exact(c, "USER yoda 0 *"), b":chatproto 461 * USER :Not enough parameters\r\n")
        self.assertEqual(self.send_exact(c, "PASS"), b":chatproto 461 * PASS :Not enough parameters\r\n")
        self.assertEqual(self.send_exact(c, "AUTHENTICATE"),
                         b":chatproto 461 * AUTHENTICATE :Not enough parameters\r\n")
        # The short USER was not taken: NICK alone does not register (nor ask for a password).
        self.assertEqual(self.send_exact(c, "NICK Yoda"), b"")
        self.assertNotIn("Yoda", self.active())
        # Nor the empty PASS: the whole USER now registers with the PASS that follows.
        c.send("PASS wise@!man")
        self.assertEqual(one(c.send("USER yoda 0 * :Master Yoda"), "001").params[0], "Yoda")
        self.assertIn("Yoda", self.active())

    def test_unknown_command(self):
        c = self.env.connect()
        self.assertEqual(self.send_exact(c, "FROB x"), b":chatproto 451 * :You have not registered\r\n")
        self.assertEqual(self.send_exact(c, "JOIN #Jedi"), b":chatproto 451 * :You have not registered\r\n")
        c = self.env.register("Yoda", "wise@!man")
        c.lines()
        self.assertEqual(self.send_exact(c, "FROB"), b":chatproto 421 Yoda FROB :Unknown command\r\n")
        self.assertEqual(self.send_exact(c, "frob x y"), b":chatproto 421 Yoda FROB :Unknown command\r\n")

    def test_enough_parameters_reach_the_command(self):
        c = self.env.register("Yoda", "wise@!man")
        self.assertEqual(commands(c.send("JOIN #Jedi")), ["JOIN", "332", "353", "366"])
        self.assertEqual(commands(c.send("TOPIC #Jedi")), ["332"])
        self.assertEqual(commands(c.send("MODE #Jedi")), ["324"])
        self.assertEqual(commands(c.send("KICK")), ["482"])  # no minimum: its own answer
        self.assertEqual(commands(c.send("WHOIS")), ["431"])
        self.assertEqual(commands(c.send("PRIVMSG")), ["411"])
