"""
End to end: /search on a real server (its SQLite index) through the
line-protocol client, IRC SEARCH over a real socket (parsed with irctokens),
and the index kept across a restart.
"""

import re
import signal
import socket
import unittest

import irctokens

from tests.harness import TIMEOUT
from tests.irc_clients import have, wait_until
from tests.test_e2e_irc import IRCServerMixin

TS = r"\d\d \w{3} \d{4} \d\d:\d\d:\d\d"


class RawIRC:
    """A minimal IRC client on a real socket: lines sent as typed, received ones parsed by irctokens."""

    def __init__(self, host, port):
        self.socket = socket.create_connection((host, port), timeout=TIMEOUT)
        self.decoder = irctokens.StatefulDecoder()
        self.pending = []

    def send(self, line: str) -> None:
        self.socket.sendall(line.encode("utf-8") + b"\r\n")

    def until(self, command: str) -> list:
        """Every line up to and including the next one with this command."""
        seen = []
        while True:
            while self.pending:
                line = self.pending.pop(0)
                seen.append(line)
                if line.command == command:
                    return seen
            data = self.socket.recv(65536)
            if not data:
                raise AssertionError(f"connection closed before {command}: {seen}")
            self.pending.extend(self.decoder.push(data) or [])

    def close(self):
        self.socket.close()


class SearchEndToEndTests(IRCServerMixin, unittest.TestCase):
    def test_line_client_irc_and_a_restart(self):
        server = self.start_irc_server()
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        yoda.command("/msgto Hans Into hyperspace we go", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: Into hyperspace we go$"))
        hans.command("/msgto Yoda the Café is closed", re.compile("^message sent at"))
        yoda.command("/search CAFE", re.compile(rf"^Hans #2 {TS}, Hans: the Café is closed$"))
        yoda.command("/search in Hans hyp", re.compile(rf"^Hans #1 {TS}, Yoda: Into hyperspace we go$"))
        leia = self.login("leia", "alderaan")
        leia.command("/search hyperspace", "No messages found.")

        hans.send("/logout")
        hans.expect("Bye, Hans!")
        irc = RawIRC(server.host, server.irc_port)
        self.addCleanup(irc.close)
        for line in ("CAP LS 302", "CAP REQ :soju.im/search batch server-time", "PASS falcon*solo",
                     "NICK Hans", "USER hans 0 * :Hans", "CAP END"):
            irc.send(line)
        irc.until("001")
        irc.send("SEARCH text=hyper\\sinto")
        lines = irc.until("BATCH")
        lines = irc.until("BATCH")
        self.assertEqual(lines[-1].params[0][0], "-")
        found = [line for line in lines if line.command == "PRIVMSG"]
        self.assertEqual([(line.hostmask.nickname, line.params) for line in found],
                         [("Yoda", ["Hans", "Into hyperspace we go"])])
        self.assertIn("time", found[0].tags)
        irc.close()

        # A restart keeps the index (and never rebuilds it: no backlog line in the log).
        for client in (yoda, hans, leia):
            client.cleanup()
        data_dir = server.data_dir
        server.stop()
        server = self.start_server(data_dir=data_dir)
        yoda = self.login("Yoda", "wise@!man", server=server)
        yoda.command("/search cafe", re.compile(rf"^Hans #2 {TS}, Hans: the Café is closed$"))
        log = server.stdout.lines
        self.assertTrue([line for line in log if "Loaded 6 accounts" in line], log)  # the operator's log
        self.assertFalse([line for line in log if "Search index" in line], log)


class SearchAfterACrashTests(IRCServerMixin, unittest.TestCase):
    def test_a_killed_server_s_acknowledged_messages_are_found_after_the_restart(self):
        """SQLite indexes in bulk: what was acknowledged but not indexed when the server was
        killed is indexed by the next start, before it listens."""
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        for n in range(1, 4):
            yoda.command(f"/msgto Hans hyperdrive part {n}", re.compile("^message sent at"))
        for client in (yoda, hans):
            client.cleanup()
        data_dir = server.data_dir
        server.stop(signal.SIGKILL)  # no clean stop: the index had not been written yet
        server = self.start_server(data_dir=data_dir)
        log = server.stdout.lines
        self.assertTrue([line for line in log if line.endswith(
            "Search index: 3 messages indexed that the last server left out (it did not stop cleanly)")], log)
        hans = self.login("Hans", "falcon*solo", server=server)
        hans.command("/search hyperdrive", *(re.compile(rf"^Yoda #{n} {TS}, Yoda: hyperdrive part {n}$")
                                             for n in (3, 2, 1)))


@unittest.skipUnless(have("weechat-headless"), "weechat-headless is not installed")
class WeechatSearchTest(IRCServerMixin, unittest.TestCase):
    def test_quote_search_in_weechat(self):
        """weechat has no search command: /quote sends SEARCH, and the results show as messages."""
        server = self.start_irc_server()
        luke = self.weechat(server, "luke", "jedi*knight")
        yoda = self.login("Yoda", "wise@!man")
        yoda.command("/msgto luke the hyperdrive is fixed", re.compile("^message sent at"))
        luke.expect("the hyperdrive is fixed", "Yoda")
        luke.command("server", "/quote SEARCH text=HYPER")
        wait_until(lambda: len([line for line in luke.log("Yoda") if "the hyperdrive is fixed" in line]) == 2,
                   "the search's result in weechat's Yoda buffer", TIMEOUT,
                   lambda: "\n".join(luke.log("Yoda") + luke.log("server")[-20:]))
