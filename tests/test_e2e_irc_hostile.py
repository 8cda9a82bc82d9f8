"""
End to end (issue 28, F1): a line-protocol user pads a message so that a
forged IRC line would start at offset 512; ii, which reads 512-byte pieces
and takes each as a line, shows only Yoda's own words.
"""

import os
import re
import unittest

from tests.irc_clients import have
from tests.test_e2e_irc import IRCServerMixin

HEAD = ":Yoda!Yoda@chatproto PRIVMSG leia :"  # 35 bytes before the text on the wire


def forging_text() -> str:
    """Yoda's text: the next line of a 512-byte reader would start with Hans's prefix, then the server's."""
    text = "hello leia"
    text += " " * (512 - len(HEAD) - len(text))
    forged = ":Hans!Hans@chatproto PRIVMSG leia :Hi leia, Hans here"
    text += forged + " " * (1024 - len(HEAD) - len(text) - len(forged))
    forged = ":chatproto NOTICE leia :FORGED server notice"
    text += forged + " " * (1536 - len(HEAD) - len(text) - len(forged))
    text += ":Hans!Hans@chatproto PRIVMSG #jedi :FORGED in jedi"
    return text


@unittest.skipUnless(have("ii"), "ii is not installed")
class ForgedLineTests(IRCServerMixin, unittest.TestCase):
    def test_ii_shows_no_line_that_nobody_wrote(self):
        server = self.start_irc_server()
        leia = self.ii(server, "leia", "alderaan")
        yoda = self.login("Yoda", "wise@!man")
        yoda.command("/msgto leia " + forging_text(), re.compile(r"^message sent at "))
        yoda.command("/msgto leia the end", re.compile(r"^message sent at "))
        leia.expect("<Yoda> the end", "Yoda")
        # Only Yoda's query and the server's window: no query from Hans, no #jedi.
        self.assertEqual(sorted(os.listdir(leia.server_dir)), ["in", "out", "yoda"])
        shown = leia.out("Yoda")
        self.assertTrue(all("<Yoda>" in line for line in shown), shown)
        self.assertTrue([line for line in shown if "FORGED" in line])  # Yoda's text, shown as his
        self.assertEqual([line for line in leia.out(None) if "FORGED" in line], [])
