"""
End to end: a real server with its IRC listener, real IRC clients (ii,
weechat-headless, irssi in tmux) and chatproto's own line-protocol client, in
one group and privately.
"""

import re
import shutil
import unittest

from tests.harness import E2EMixin
from tests.irc_clients import II, Irssi, Weechat, have

IRC_READY = re.compile(r"^IRC listening on ([\d.]+):(\d+)$")


class IRCServerMixin(E2EMixin):
    def start_irc_server(self, **kwargs):
        extra = list(kwargs.pop("extra_args", ())) + ["--irc-port", "0"]
        server = self.start_server(extra_args=extra, **kwargs)
        for line in server.stdout.lines:
            found = IRC_READY.match(line)
            if found:
                break
        else:
            found = server.stdout.expect(IRC_READY)
        server.irc_port = int(found.group(2))
        return server

    def ii(self, server, nick, password) -> II:
        client = II(server.host, server.irc_port, nick, password)
        self.addCleanup(client.cleanup)
        client.expect("Welcome to chatproto")
        return client

    def weechat(self, server, username, password, autojoin=()) -> Weechat:
        client = Weechat(server.host, server.irc_port, username, password, autojoin)
        self.addCleanup(client.cleanup)
        client.expect("Welcome to chatproto", "server")
        return client


def message_line(text):
    """A line-protocol delivery: TIMESTAMP, [GROUP, ]SENDER: text."""
    return re.compile(r"^\d\d \w{3} \d{4} \d\d:\d\d:\d\d, " + text + "$")


@unittest.skipUnless(have("ii"), "ii is not installed")
class IITests(IRCServerMixin, unittest.TestCase):
    def test_group_and_private_with_a_line_client(self):
        server = self.start_irc_server()
        luke = self.ii(server, "luke", "jedi*knight")
        yoda = self.login("Yoda", "wise@!man")
        yoda.command("/creategroup Jedi luke",
                     "Group chat room has been created, room name: Jedi, users in this room: Yoda luke")
        # (ii does not show INVITE lines; the invitation is in place once Yoda is answered.)
        luke.command("/j #Jedi")
        luke.expect("has joined #Jedi", "#jedi")
        yoda.expect("luke has joined the group chat Jedi.")
        luke.say("#Jedi", "hello from ii")
        yoda.expect(message_line("Jedi, luke: hello from ii"))
        yoda.command("/groupmsg Jedi hello from the line client", "Group chat message sent.")
        luke.expect("<Yoda> hello from the line client", "#jedi")
        yoda.command("/msgto luke psst", re.compile(r"^message sent at "))
        luke.expect("<Yoda> psst", "Yoda")
        luke.say("Yoda", "psst back")
        yoda.expect(message_line("luke: psst back"))
        log = server.read("messagelog.txt").splitlines()
        self.assertRegex(log[0], r"^1; .*; Yoda; psst$")
        self.assertRegex(log[1], r"^2; .*; luke; psst back$")
        group_log = server.read("Jedi_messageLog.txt").splitlines()
        self.assertRegex(group_log[0], r"^1; .*; luke; hello from ii$")
        # An IRC user has no UDP port.
        self.assertRegex(server.read("userlog.txt"), r"; luke; 127\.0\.0\.1; 0\n")
        yoda.command("/activeuser", re.compile(r"^luke, 127\.0\.0\.1, 0, active since "))
        luke.command("/PART #Jedi")
        yoda.expect("luke has left the group chat Jedi.")


@unittest.skipUnless(have("weechat-headless"), "weechat-headless is not installed")
class WeechatTests(IRCServerMixin, unittest.TestCase):
    def test_group_private_and_backlog_after_restart(self):
        server = self.start_irc_server()
        yoda = self.login("Yoda", "wise@!man")
        # weechat creates #Jedi on its command line (autojoin): luke owns the new group.
        luke = self.weechat(server, "luke", "jedi*knight", autojoin=["#Jedi"])
        luke.expect("luke (luke@chatproto) has joined #Jedi", "#jedi")
        luke.command("#Jedi", "/invite Yoda #Jedi")
        yoda.expect("You have been invited to the group chat Jedi by luke. Type /joingroup Jedi to join.")
        yoda.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        luke.expect("Yoda (Yoda@chatproto) has joined #Jedi", "#jedi")
        luke.command("#Jedi", "hello from weechat")
        yoda.expect(message_line("Jedi, luke: hello from weechat"))
        yoda.command("/groupmsg Jedi hello from the line client", "Group chat message sent.")
        line = luke.expect("hello from the line client", "#jedi")
        self.assertEqual(line[1:], ["Yoda", "hello from the line client"])
        yoda.command("/msgto luke psst", re.compile(r"^message sent at "))
        self.assertEqual(luke.expect("psst", "Yoda")[1:], ["Yoda", "psst"])
        luke.command("Yoda", "psst back")
        yoda.expect(message_line("luke: psst back"))
        # The time weechat shows is the stored one (server-time), to the second.
        stored = server.read("Jedi_messageLog.txt").splitlines()[1].split("; ")[1]
        self.assertEqual(_weechat_time(line[0]), _stored_time(stored))

        # A restart: the group and its messages are kept; a new weechat is put back in #Jedi
        # and shown the backlog with the original times.
        luke.cleanup()
        yoda.cleanup()
        data_dir, credentials = server.data_dir, server.credentials
        self.assertEqual(server.stop(), 0)
        server = self.start_irc_server(data_dir=data_dir, credentials=credentials)
        luke = self.weechat(server, "luke", "jedi*knight")
        backlog = luke.expect("hello from the line client", "#jedi")
        self.assertEqual(backlog[1], "Yoda")
        self.assertEqual(_weechat_time(backlog[0]), _stored_time(stored))


@unittest.skipUnless(have("irssi", "tmux"), "irssi or tmux is not installed")
class IrssiSmokeTest(IRCServerMixin, unittest.TestCase):
    def test_irssi_in_a_group_with_a_line_client(self):
        server = self.start_irc_server()
        irssi = Irssi()
        self.addCleanup(irssi.cleanup)
        irssi.quick()
        irssi.keys(f"/connect -nocap {server.host} {server.irc_port} wise@!man Yoda")
        irssi.expect("Welcome to chatproto")
        irssi.keys("/join #Jedi")
        irssi.expect("Group chat Jedi, owner Yoda")
        luke = self.login("luke", "jedi*knight")
        irssi.keys("/invite luke #Jedi")
        luke.expect("You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join.")
        luke.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        irssi.expect(re.compile(r"luke \[luke@chatproto\] has joined #Jedi"))
        luke.command("/groupmsg Jedi hello irssi", "Group chat message sent.")
        irssi.expect(re.compile(r"<\s*luke> hello irssi"))
        irssi.keys("hello line client")
        luke.expect(message_line("Jedi, Yoda: hello line client"))


class TLSTest(IRCServerMixin, unittest.TestCase):
    def test_irc_over_tls_and_a_raw_session(self):
        """--irc-listen ssl:...: a TLS IRC session (read with irctokens) talks to a line client."""
        import socket
        import ssl
        import tempfile

        import irctokens

        from tests.test_e2e_twistd import TwistdPluginTests

        holder = type("Holder", (), {})()
        holder.dir = tempfile.mkdtemp(prefix="chatproto-tls-")
        self.addCleanup(shutil.rmtree, holder.dir, True)
        key, cert = TwistdPluginTests.self_signed_certificate(holder)
        server = self.start_server(extra_args=[
            "--irc-listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
        for line in server.stdout.lines:
            found = IRC_READY.match(line)
            if found:
                break
        else:
            found = server.stdout.expect(IRC_READY)
        luke = self.login("luke", "jedi*knight")
        context = ssl.create_default_context(cafile=cert)
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", int(found.group(2))), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                f = tls.makefile("rwb")

                def read_until(command):
                    while True:
                        data = f.readline()
                        self.assertTrue(data, f"connection closed before {command}")
                        line = irctokens.tokenise(data.decode().rstrip("\r\n"))
                        if line.command == command:
                            return line

                f.write(b"CAP LS 302\r\nJOIN :\r\nCAP REQ :server-time echo-message\r\n"
                        b"PASS Yoda:wise@!man\r\nNICK x\r\nUSER x 0 * :x\r\nCAP END\r\n")
                f.flush()
                self.assertEqual(read_until("451").params[0], "*")
                self.assertEqual(read_until("001").params[0], "Yoda")
                f.write(b"PRIVMSG luke :over TLS\r\n")
                f.flush()
                echo = read_until("PRIVMSG")
                self.assertEqual((echo.hostmask.nickname, echo.params), ("Yoda", ["luke", "over TLS"]))
                self.assertIn("time", echo.tags)
                luke.expect(message_line("Yoda: over TLS"))
        self.assertRegex(server.read("messagelog.txt"), r"^1; .*; Yoda; over TLS\n$")


def _weechat_time(text: str) -> str:
    """weechat's log time C{2026-12-01 16:37:10} as C{16:37:10}."""
    return text.split(" ")[1]


def _stored_time(text: str) -> str:
    """A server timestamp C{01 Jun 2022 21:30:04} as C{21:30:04}."""
    return text.split(" ")[3]


class ChathistoryTest(IRCServerMixin, unittest.TestCase):
    def test_chathistory_from_the_database_after_a_restart(self):
        """draft/chathistory over a real socket (no client here speaks it), read with irctokens."""
        import signal
        import socket

        import irctokens

        def connect(port):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(raw.close)
            f = raw.makefile("rwb")
            f.write(b"CAP REQ :draft/chathistory batch server-time message-tags\r\n"
                    b"PASS Yoda:wise@!man\r\nNICK Yoda\r\nUSER y 0 * :y\r\nCAP END\r\n")
            f.flush()
            return f

        def send(f, line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        def read_batch(f):
            """The lines of the next batch (its BATCH lines left out)."""
            lines = None
            while True:
                data = f.readline()
                self.assertTrue(data, "connection closed")
                line = irctokens.tokenise(data.decode().rstrip("\r\n"))
                if line.command == "FAIL":
                    self.fail(line.format())
                if line.command == "BATCH" and line.params[0].startswith("+"):
                    lines = []
                elif line.command == "BATCH":
                    return lines
                elif lines is not None:
                    lines.append(line)

        server = self.start_irc_server()
        luke = self.login("luke", "jedi*knight")
        yoda = connect(server.irc_port)
        for i in range(30):
            send(yoda, f"PRIVMSG luke :message {i}")
        send(yoda, "CHATHISTORY LATEST luke * 1")
        (last,) = read_batch(yoda)
        self.assertEqual(last.params, ["luke", "message 29"])
        luke.expect(message_line("Yoda: message 29"))
        self.assertEqual(server.stop(signal.SIGTERM), 0)

        server = self.start_irc_server(data_dir=server.data_dir, credentials=server.credentials)
        yoda = connect(server.irc_port)
        send(yoda, "CHATHISTORY AFTER luke msgid=p.3 2")
        self.assertEqual([m.params[1] for m in read_batch(yoda)], ["message 3", "message 4"])
        send(yoda, "CHATHISTORY AROUND luke msgid=p.10 4")
        around = read_batch(yoda)
        self.assertEqual([m.params[1] for m in around], [f"message {i}" for i in range(7, 11)])
        send(yoda, "CHATHISTORY LATEST luke * 100")
        every = read_batch(yoda)
        self.assertEqual([m.params[1] for m in every], [f"message {i}" for i in range(30)])
        # A timestamp stands for its millisecond: BEFORE it, the messages shown with an earlier one.
        stamp = around[0].tags["time"]
        send(yoda, f"CHATHISTORY BEFORE luke timestamp={stamp} 100")
        self.assertEqual([m.params[1] for m in read_batch(yoda)],
                         [m.params[1] for m in every if m.tags["time"] < stamp])
        send(yoda, "CHATHISTORY BETWEEN luke msgid=p.30 msgid=p.25 2")
        self.assertEqual([m.params[1] for m in read_batch(yoda)], ["message 27", "message 28"])
        send(yoda, "CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2200-01-01T00:00:00.000Z 10")
        self.assertEqual([t.params[:2] for t in read_batch(yoda)], [["TARGETS", "luke"]])
