"""
Message text on every front end and in the log file: joiners kept where they
join (emoji sequences, Indic scripts, Persian), invisible and
direction-changing characters made visible where they would hide text.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.irc_support import IRCEnvironment, find
from tests.web_support import WebFixture

ZWJ, ZWNJ = "\u200d", "\u200c"
TAGS = "".join(chr(0xE0000 + ord(c)) for c in "gbeng") + "\U000E007F"

# Real text a person sends: it must arrive on every front end as it was typed.
KEPT = {
    "family": f"👨{ZWJ}👩{ZWJ}👧",
    "technologist with a skin tone": f"👩🏽{ZWJ}💻",
    "rainbow flag (U+FE0F, then the joiner)": f"🏳️{ZWJ}🌈",
    "woman running": f"🏃{ZWJ}♀️",
    "flag of England (tags)": "🏴" + TAGS,
    "Devanagari half form": f"क्{ZWJ}ष",
    "Malayalam chillu, at the end of a word": f"അവന്{ZWJ} വന്നു",
    "Persian": f"می{ZWNJ}خواهم",
    "Hindi with a non-joiner": f"क्{ZWNJ}ष",
}

# Spoofing: what would hide or reverse text is shown as <U+XXXX>.
SHOWN = {
    f"pay \u202emoc.live\u202c now": "pay <U+202E>moc.live<U+202C> now",
    "\u2066admin\u2069 \u202aa\u202b\u202d": "<U+2066>admin<U+2069> <U+202A>a<U+202B><U+202D>",
    "Yo\u200bda\ufeff": "Yo<U+200B>da<U+FEFF>",
    f"Yo{ZWJ}da and pay{ZWNJ}pal": "Yo<U+200D>da and pay<U+200C>pal",  # joins nothing between ASCII
    f"{ZWJ}👨 👩{ZWJ} 👧{ZWJ}{ZWJ}👦": "<U+200D>👨 👩<U+200D> 👧<U+200D><U+200D>👦",
    f"😀{ZWJ}\u202e😀": "😀<U+200D><U+202E>😀",
    # Tag characters outside a region flag could carry a hidden text.
    "hi" + TAGS: "hi" + "".join(f"<U+{0xE0000 + ord(c):04X}>" for c in "gbeng") + "<U+E007F>",
    "🏴" + "".join(chr(0xE0000 + ord(c)) for c in "ignore all instructions") + "\U000E007F":
        "🏴" + "".join(f"<U+{0xE0000 + ord(c):04X}>" for c in "ignore all instructions") + "<U+E007F>",
}


class TextEverywhereTests(SynchronousTestCase):
    """Sent from the page; seen on the line protocol, on IRC, on the page and in the log."""

    def setUp(self):
        self.web = WebFixture(self)
        self.core = self.web.core
        self.page = self.web.browser("Yoda", "wise@!man")
        self.hans = self.core.login("Hans", "falcon*solo")
        self.irc = IRCEnvironment(self.core.chat, self.core.clock).register("luke", "jedi*knight")
        self.hans.send("/creategroup Jedi Yoda luke")
        self.page.request("join", group="Jedi")
        self.irc.send("JOIN #Jedi")
        self.hans.output()
        self.page.events()

    def arrives(self, text):
        """What each front end shows and the log holds for C{text} sent from the page."""
        reply = self.page.request("send", group="Jedi", text=text)
        self.assertTrue(reply["ok"], reply)
        line = self.hans.output()[-1]
        prefix = "MSG 01 Jun 2022 21:30:04, Jedi, Yoda: "
        self.assertTrue(line.startswith(prefix), line)
        (privmsg,) = find(self.irc.lines(), "PRIVMSG")
        log = self.core.read("Jedi_messageLog.txt").splitlines()[-1].split("; ", 3)[3]
        history = self.page.request("history", group="Jedi")["messages"][-1]["text"]
        seen = {"page": reply["message"]["text"], "line": line[len(prefix):], "irc": privmsg.params[1],
                "log": log, "history": history}
        self.assertEqual(len(set(seen.values())), 1, seen)
        return seen["page"]

    def test_joiners_are_kept_where_they_join(self):
        for name, text in KEPT.items():
            self.assertEqual(self.arrives(text), text, name)

    def test_characters_that_hide_or_reverse_text_are_shown(self):
        for text, shown in SHOWN.items():
            self.assertEqual(self.arrives(text), shown)

    def test_private_messages_and_the_line_protocol_too(self):
        family = KEPT["family"]
        self.hans.send(f"/msgto Yoda {family} \u202eevil")
        (message,) = [e for e in self.page.events() if e["type"] == "message"]
        self.assertEqual(message["message"]["text"], f"{family} <U+202E>evil")
        self.assertTrue(self.core.read("messagelog.txt").endswith(f"; Hans; {family} <U+202E>evil\n"))


class TerminalWidthTests(SynchronousTestCase):
    def test_joiners_and_marks_take_no_column(self):
        from chatproto.client.terminal import cell_width

        self.assertEqual(cell_width(KEPT["family"]), cell_width("👨👩👧"))
        self.assertEqual(cell_width(KEPT["Persian"]), cell_width("میخواهم"))
        self.assertEqual(cell_width("日本"), 4)
