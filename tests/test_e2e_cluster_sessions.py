"""
One account on several cluster nodes at once (docs/CLUSTER.md, "Sessions of
one account on several nodes"), end to end: real nodes on a private Redis and
PostgreSQL; Yoda in the terminal client on node A and over a raw socket
(the line protocol) on node B.
"""

import re
import socket
import time
import unittest

from .irc_clients import II, have
from .test_e2e_cluster import TS, ClusterCase

IRC_READY = re.compile(r"^IRC listening on [\d.]+:(\d+)$")


class LineSocket:
    """The line protocol over a raw socket: send a line, read lines until one matches."""

    def __init__(self, server, timeout=15):
        self.socket = socket.create_connection((server.host, server.port), timeout=timeout)
        self.file = self.socket.makefile("rwb")
        self.seen: list[str] = []

    def send(self, line: str) -> None:
        self.file.write(line.encode() + b"\n")
        self.file.flush()

    def expect(self, pattern) -> str:
        """The first line from now on that matches C{pattern} (a regex); every line read is kept."""
        while True:
            raw = self.file.readline()
            if not raw:
                raise AssertionError(f"connection closed; no line matching {pattern!r} in {self.seen}")
            line = raw.decode().rstrip("\n")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def closed(self) -> bool:
        """Whether the server closes the connection (after what it still sends)."""
        while True:
            raw = self.file.readline()
            if not raw:
                return True
            self.seen.append(raw.decode().rstrip("\n"))

    def close(self) -> None:
        self.file.close()
        self.socket.close()


class SessionsOnSeveralNodesTests(ClusterCase):
    def raw(self, server, username, password):
        line = LineSocket(server)
        self.addCleanup(line.close)
        line.send(f"LOGIN {username} {password} 7001")
        self.assertEqual(line.expect("^(OK|ERR)"), "OK Welcome to chatproto!")
        return line

    def test_one_account_logged_in_on_two_nodes(self):
        a, b = self.node(), self.node()
        yoda_a = self.login(a, "Yoda", "wise@!man")
        yoda_b = self.raw(b, "Yoda", "wise@!man")  # not "already logged in": a second session
        hans = self.login(b, "Hans", "falcon*solo")
        # A message to Yoda reaches both sessions, on both nodes.
        hans.command("/msgto Yoda hello both", re.compile("^message sent at"))
        yoda_a.expect(re.compile(rf"^{TS}, Hans: hello both$"))
        yoda_b.expect(rf"^MSG {TS}, Hans: hello both$")
        # What Yoda sends on node A shows on node B as his own (SENT), and reaches Hans once.
        yoda_a.command("/msgto Hans from the terminal", re.compile("^message sent at"))
        yoda_b.expect(rf"^SENT {TS}, to Hans: from the terminal$")
        hans.expect(re.compile(rf"^{TS}, Yoda: from the terminal$"))
        # A group message too: both sessions get Hans's, and Yoda's own shows as SENT on the other.
        hans.command("/creategroup Jedi Yoda", re.compile("^Group chat room has been created"))
        yoda_b.expect("invited to the group chat Jedi")
        yoda_a.expect(re.compile("invited to the group chat Jedi"))
        yoda_b.send("/joingroup Jedi")
        yoda_b.expect("^OK Joined the group chat: Jedi successfully.$")
        hans.command("/groupmsg Jedi to the group", "Group chat message sent.")
        yoda_a.expect(re.compile(rf"^{TS}, Jedi, Hans: to the group$"))
        yoda_b.expect(rf"^MSG {TS}, Jedi, Hans: to the group$")
        yoda_b.send("/groupmsg Jedi from the socket")
        yoda_b.expect("^OK Group chat message sent.$")
        hans.expect(re.compile(rf"^{TS}, Jedi, Yoda: from the socket$"))
        yoda_a.expect(re.compile(rf"to #Jedi: from the socket$"))
        # /sessions on B lists both, in login order; /activeuser on Hans's side lists both.
        yoda_b.send("/sessions")
        first = yoda_b.expect("^DATA 1, ")
        second = yoda_b.expect("^DATA 2, ")
        self.assertRegex(first, rf"^DATA 1, line, 127\.0\.0\.1, \d+, active since {TS}\.$")
        self.assertRegex(second, rf"^DATA 2, line, 127\.0\.0\.1, 7001, active since {TS} \(this one\)\.$")
        yoda_b.expect("^OK$")
        # /logout all from B ends the session on A too.
        yoda_b.send("/logout all")
        yoda_b.expect("^OK Bye, Yoda!$")
        yoda_a.expect("You have been logged out from another session")
        yoda_a.wait()  # the terminal client ends: its server closed the session
        hans.command("/msgto Yoda gone?", "Yoda is not active")

    @unittest.skipIf(not have("ii"), "ii is not installed")
    def test_the_terminal_client_on_one_node_and_ii_on_another(self):
        a, b = self.node(), self.node(extra=("--irc-port", "0"))
        irc_port = next((int(m.group(1)) for m in map(IRC_READY.search, b.stdout.lines) if m), None)
        irc_port = irc_port or int(b.stdout.expect(IRC_READY).group(1))
        terminal = self.login(a, "Yoda", "wise@!man")
        # Away set in the terminal on node A: a session that logs in afterwards on node B starts
        # away and is told (IRC 306, the line protocol's notice; node B has read the news before
        # the login, which waits for Redis itself).
        terminal.command("/away gone fishing", "You are marked as away.")
        ii = II(b.host, irc_port, "Yoda", "wise@!man")
        self.addCleanup(ii.cleanup)
        ii.expect("Welcome to chatproto, Yoda!")
        ii.expect("You have been marked as being away")
        self.raw(b, "Yoda", "wise@!man").expect("^NOTICE You are marked as away: gone fishing$")
        terminal.command("/away", "You are no longer marked as away.")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/msgto Yoda hello everywhere", re.compile("^message sent at"))
        terminal.expect(re.compile(rf"^{TS}, Hans: hello everywhere$"))
        ii.expect("<Hans> hello everywhere", "hans")
        # What Yoda sends in the terminal on node A: in ii's conversation with Hans on node B.
        terminal.command("/msgto Hans from the terminal", re.compile("^message sent at"))
        ii.expect("<Yoda> from the terminal", "hans")
        hans.expect(re.compile(rf"^{TS}, Yoda: from the terminal$"))
        # And the other way round: ii's message reaches Hans, and shows in the terminal as sent.
        ii.say("hans", "from ii")
        hans.expect(re.compile(rf"^{TS}, Yoda: from ii$"))
        terminal.expect(re.compile(r"to Hans: from ii$"))
        # /logout all in the terminal ends the IRC session on the other node.
        terminal.send("/logout all")
        ii.expect("You have been logged out from another session")
        hans.command("/msgto Yoda still there?", "Yoda is not active")

    def test_one_session_per_account_and_a_killed_node_frees_it_at_once(self):
        one_login = ("--max-sessions", "1")
        a, b = self.node(extra=one_login), self.node(extra=one_login)
        self.raw(a, "Yoda", "wise@!man")
        line = LineSocket(b)
        self.addCleanup(line.close)
        line.send("LOGIN Yoda wise@!man 7002")
        self.assertEqual(line.expect("^(OK|ERR)"), "ERR This account is already logged in")
        killed = time.monotonic()
        a.kill()
        # The killed node's subscription is gone from Redis at once: its session no longer counts.
        attempts = 0
        while True:
            attempts += 1
            again = LineSocket(b)
            self.addCleanup(again.close)
            again.send("LOGIN Yoda wise@!man 7002")
            answer = again.expect("^(OK|ERR)")
            if answer.startswith("OK") or time.monotonic() - killed > 15:
                break
        freed = time.monotonic() - killed
        self.assertEqual(answer, "OK Welcome to chatproto!")
        self.assertLess(freed, 2.0, f"seconds until the killed node's session stopped counting ({attempts} logins)")
        b.stdout.expect(re.compile(r"Cluster: node \w+ is gone; 1 users inactive"), timeout=8)

