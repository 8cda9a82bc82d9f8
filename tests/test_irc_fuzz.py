"""
Hostile input over the IRC front end: for any bytes, no exception escapes or
is logged, every line written is a well-formed IRC line, and the connection
is either open or closed with ERROR.
"""

import irctokens
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.irc_support import IRCEnvironment
from tests.support import ChatFixture

COMMANDS = ["CAP LS 302", "CAP REQ :sasl server-time", "CAP END", "PASS wise@!man", "NICK Yoda",
            "USER y 0 * :y", "AUTHENTICATE PLAIN", "AUTHENTICATE *", "JOIN #Jedi", "JOIN #",
            "PART #Jedi", "PRIVMSG #Jedi :hi", "PRIVMSG luke :hi", "INVITE luke #Jedi", "NAMES #Jedi",
            "WHO #Jedi", "WHOIS luke", "LIST", "TOPIC #Jedi", "MODE #Jedi", "MODE #Jedi +b",
            "AWAY :x", "AWAY", "PING :x", "CHATHISTORY LATEST #Jedi * 5",
            "CHATHISTORY BEFORE luke msgid=p.1 5", "@a=b;c PRIVMSG luke :tagged", ":prefix PING x",
            "JOIN :", "", "QUIT"]

lines = st.one_of(
    st.sampled_from(COMMANDS),
    st.builds(lambda c, a: f"{c} {a}", st.sampled_from(["PRIVMSG", "JOIN", "CAP", "AUTHENTICATE",
                                                        "CHATHISTORY", "MODE", "WHO", "NICK"]),
              st.text(max_size=40)),
)
chunks = st.lists(st.one_of(
    st.builds(lambda line: line.encode("utf-8", "surrogatepass") + b"\r\n", lines),
    st.binary(max_size=60),
), max_size=25)


class IRCFuzzTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(chunks)
    def test_any_input(self, data):
        errors = []

        def observer(event):
            if event.get("log_failure") is not None or event.get("isError"):
                errors.append(event)

        globalLogPublisher.addObserver(observer)
        try:
            fixture = ChatFixture(self)
            clock, chat = fixture.clock, fixture.chat
            env = IRCEnvironment(chat, clock)
            luke = env.register("luke", "jedi*knight")
            luke.lines()
            c = env.connect()
            out = []
            for chunk in data:
                out += c.send_raw(chunk)
                if c.closed:
                    break
            closed = c.closed
            c.drop()
            luke.lines()
        finally:
            globalLogPublisher.removeObserver(observer)
        self.assertEqual(errors, [])
        for line in out:
            self.assertIsInstance(line, irctokens.Line)
            self.assertTrue(line.command)
        if closed and not c.transport.disconnected:
            self.assertIn("ERROR", [line.command for line in out])
        self.assertEqual([u.name for u in chat.active_users()], ["luke"])
