"""
End to end, docs/PROTOCOL.md's Extensions: a real server process and real client
processes over loopback for /leavegroup, /changepassword, /deletemsg,
/deletegroupmsg, /createbroadcast and /help.
"""

import os
import re
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatproto.core.passwords import password_matches
from chatproto.storage.credentials import parse_credentials

from .harness import TIMEOUT, E2EMixin, ServerProcess, child_env, free_udp_port

TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"
SENT = re.compile("^message sent at")


class GroupExtensionTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        self.server = self.start_server()
        self.yoda = self.login("Yoda", "wise@!man")
        self.hans = self.login("Hans", "falcon*solo")

    def test_prompt_and_help_list_the_new_commands(self):
        self.assertIn("/groupmsg, /p2pvideo, /leavegroup, /changepassword, /deletemsg, /deletegroupmsg, "
                      "/createbroadcast, /history, /grouphistory, /help, /logout): ",
                      self.yoda.stdout.lines[-1])
        self.yoda.command("/help", "/msgto USERNAME MESSAGE", "/leavegroup GROUPNAME",
                          "/changepassword CURRENT NEW", "/deletemsg SEQ", "/deletegroupmsg GROUPNAME SEQ",
                          "/createbroadcast GROUPNAME USERNAME [USERNAME ...]", "/help", "/sessions",
                          "/away [MESSAGE]", "/read NAME SEQ", "/unread", "/logout [all]")
        self.yoda.command("/help me", "Usage: /help")

    def test_leavegroup(self):
        leia = self.login("leia", "alderaan")
        self.yoda.command("/creategroup Jedi Hans leia", re.compile("^Group chat room has been created"))
        self.hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        self.yoda.command("/groupmsg Jedi one", "Group chat message sent.")
        self.hans.command("/leavegroup Jedi", "You have left the group chat Jedi.")
        self.yoda.expect("Hans has left the group chat Jedi.")
        self.hans.command("/leavegroup Jedi", "You are not in this group chat.")
        self.hans.command("/leavegroup Sith", "The group chat does not exist.")
        self.hans.command("/leavegroup", "Usage: /leavegroup GROUPNAME")
        leia.command("/leavegroup Jedi", "You have left the group chat Jedi.")
        self.yoda.command("/leavegroup Jedi", "You have left the group chat Jedi.")
        # The group is gone, its log stays; a new group of that name goes on numbering it.
        self.yoda.command("/joingroup Jedi", "Groupchat (Name: Jedi) does not exist.")
        self.yoda.command("/creategroup Jedi Hans", re.compile("^Group chat room has been created"))
        self.yoda.command("/groupmsg Jedi two", "Group chat message sent.")
        log = self.server.read("Jedi_messageLog.txt").splitlines()
        self.assertEqual([line.split("; ")[0] for line in log], ["1", "2"])
        self.assertRegex(log[1], rf"^2; {TS}; Yoda; two$")
        self.assertFalse([line for line in leia.stdout.lines if "has left" in line])  # never joined

    def test_createbroadcast(self):
        self.yoda.command(
            "/createbroadcast News Hans",
            "Broadcast group has been created, room name: News, users in this room: Yoda Hans")
        self.hans.expect("You have been invited to the group chat News by Yoda. Type /joingroup News to join.")
        self.hans.command("/joingroup News", "Joined the group chat: News successfully.")
        self.hans.command("/groupmsg News hello", "Only the owner can send messages to this broadcast group.")
        self.yoda.command("/groupmsg News hear ye", "Group chat message sent.")
        self.hans.expect(re.compile(rf"^{TS}, News, Yoda: hear ye$"))
        self.yoda.command("/createbroadcast news Hans", "A group chat (Name: news) already exists")
        self.yoda.command("/createbroadcast Other vader", "vader is not active")
        self.assertRegex(self.server.read("News_messageLog.txt"), rf"^1; {TS}; Yoda; hear ye\n$")

    def test_deletemsg(self):
        self.yoda.command("/msgto Hans secret; plans", SENT)
        self.hans.command("/msgto Yoda reply", SENT)
        before = self.server.read("messagelog.txt").splitlines()
        self.yoda.command("/deletemsg 2", "You can only delete your own messages.")
        self.yoda.command("/deletemsg 3", "No message 3.")
        self.yoda.command("/deletemsg x", "Usage: /deletemsg SEQ")
        self.assertEqual(self.server.read("messagelog.txt").splitlines(), before)
        self.yoda.command("/deletemsg 1", "Message 1 deleted.")
        after = self.server.read("messagelog.txt").splitlines()
        self.assertEqual(after, [before[0].replace("; secret; plans", "; [deleted]"), before[1]])
        self.assertRegex(after[0], rf"^1; {TS}; Yoda; \[deleted\]$")
        self.yoda.command("/msgto Hans three", SENT)
        self.assertRegex(self.server.read("messagelog.txt").splitlines()[2], rf"^3; {TS}; Yoda; three$")

    def test_deletegroupmsg(self):
        leia = self.login("leia", "alderaan")
        self.yoda.command("/creategroup Jedi Hans leia", re.compile("^Group chat room has been created"))
        self.hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        leia.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        self.hans.command("/groupmsg Jedi oops", "Group chat message sent.")
        self.yoda.command("/deletegroupmsg Jedi 1", "You can only delete your own messages.")
        self.hans.command("/deletegroupmsg Jedi 2", "No message 2.")
        self.hans.command("/deletegroupmsg Sith 1", "The group chat does not exist.")
        self.hans.command("/deletegroupmsg Jedi", "Usage: /deletegroupmsg GROUPNAME SEQ")
        self.hans.command("/deletegroupmsg Jedi 1", "Message 1 deleted.")
        self.yoda.expect("Hans deleted message 1 in Jedi.")
        leia.expect("Hans deleted message 1 in Jedi.")
        self.assertRegex(self.server.read("Jedi_messageLog.txt"), rf"^1; {TS}; Hans; \[deleted\]\n$")

    def test_no_line_lost_while_deleting(self):
        """
        Hans sends a burst of messages while Yoda deletes hers: every record
        is in the log once, in order, and only Yoda's are deleted.
        """
        leia = self.login("leia", "alderaan")
        for i in range(10):
            self.yoda.command(f"/msgto leia mine {i}", SENT)
        burst = 300
        self.hans.send("\n".join(f"/msgto leia burst {i}" for i in range(burst)))
        self.yoda.send("\n".join(f"/deletemsg {i + 1}" for i in range(10)))
        for i in range(10):
            self.yoda.expect(f"Message {i + 1} deleted.")
        for _ in range(burst):
            self.hans.expect(SENT)
        self.hans.expect_prompt()
        lines = self.server.read("messagelog.txt").splitlines()
        self.assertEqual([int(line.split("; ")[0]) for line in lines], list(range(1, burst + 11)))
        self.assertEqual([line.split("; ", 3)[3] for line in lines[:10]], ["[deleted]"] * 10)
        self.assertEqual([line.split("; ", 3)[3] for line in lines[10:]],
                         [f"burst {i}" for i in range(burst)])
        leia.expect(re.compile(rf"^{TS}, Hans: burst {burst - 1}$"))


class ChangePasswordTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        self.server = self.start_server(attempts=2)

    def change(self, client, current, new, repeat, *expected):
        client.send("/changepassword")
        client.expect("Current password: ")
        client.send(current)
        client.expect("New password: ")
        client.send(new)
        client.expect("Repeat new password: ")
        client.send(repeat)
        for pattern in expected:
            client.expect(pattern)
        client.expect_prompt()

    def credentials(self) -> bytes:
        with open(self.server.credentials, "rb") as f:
            return f.read()

    def test_change_then_login_with_the_new_password(self):
        before = self.credentials()
        yoda = self.login("Yoda", "wise@!man")
        self.change(yoda, "wise@!man", "n3w", "other", "The new passwords do not match.")
        self.change(yoda, "wise@!man", "a b", "a b", "A password cannot contain whitespace.")
        self.assertEqual(self.credentials(), before)
        self.change(yoda, "wise@!man", "dagobah", "dagobah", "Your password has been changed.")
        old, new = before.splitlines(keepends=True), self.credentials().splitlines(keepends=True)
        self.assertEqual(len(old), len(new))
        changed = [i for i in range(len(old)) if old[i] != new[i]]
        self.assertEqual([old[i] for i in changed], [b"Yoda wise@!man\n"])
        secret = new[changed[0]].decode().split()[1]
        self.assertRegex(secret, r"^\$2b\$12\$")
        self.assertTrue(password_matches(secret, "dagobah"))
        yoda.send("/logout")
        yoda.expect("Bye, Yoda!")
        self.assertEqual(yoda.wait(), 0)
        # The old password no longer works; the new one does, after a restart too.
        client = self.client()
        client.expect("Username: ")
        client.send("Yoda")
        client.expect("Password: ")
        client.send("wise@!man")
        client.expect("Invalid Password. Please try again")
        client.expect("Password: ")
        client.send("dagobah")
        client.expect("Welcome to chatproto!")
        client.expect_prompt()
        client.send("/logout")
        client.expect("Bye, Yoda!")
        self.assertEqual(self.server.stop(), 0)
        again = ServerProcess(data_dir=self.server.data_dir, credentials=self.server.credentials)
        self.addCleanup(again.cleanup)
        self.login("Yoda", "dagobah", server=again)
        self.login("Hans", "falcon*solo", server=again)  # plain-text lines keep working
        secrets, problems = parse_credentials("c", self.credentials().decode())
        self.assertEqual((len(secrets), problems), (6, []))

    def test_wrong_current_password_counts_toward_the_lockout(self):
        yoda = self.login("Yoda", "wise@!man")
        self.change(yoda, "wrong", "dagobah", "dagobah", "Current password is incorrect.")
        other = self.client()
        other.expect("Username: ")
        other.send("Yoda")
        other.expect("Password: ")
        other.send("wrongagain")
        other.expect("Invalid Password. Your account has been blocked. Please try again later")
        self.assertEqual(other.wait(), 1)
        self.change(yoda, "wise@!man", "dagobah", "dagobah",
                    "Your account is blocked due to multiple login failures. Please try again later")

    def test_other_users_are_not_held_up_by_hashing(self):
        """
        bcrypt (about 0.3 s at 12 rounds) runs in a thread: another user's
        command is answered at once while a password is hashed and checked.
        """
        yoda = socket.create_connection((self.server.host, self.server.port), timeout=10)
        hans = socket.create_connection((self.server.host, self.server.port), timeout=10)
        self.addCleanup(yoda.close)
        self.addCleanup(hans.close)
        yoda_in, hans_in = yoda.makefile("rb"), hans.makefile("rb")
        self.addCleanup(yoda_in.close)
        self.addCleanup(hans_in.close)
        yoda.sendall(b"LOGIN Yoda wise@!man 7001\n")
        hans.sendall(b"LOGIN Hans falcon*solo 7002\n")
        self.assertEqual(yoda_in.readline(), b"OK Welcome to chatproto!\n")
        self.assertEqual(hans_in.readline(), b"OK Welcome to chatproto!\n")
        latencies = []
        for current, new in [("wise@!man", "dagobah"), ("dagobah", "swamp")]:
            yoda.sendall(f"/changepassword {current} {new}\n".encode())
            started = time.monotonic()
            hans.sendall(b"/activeuser\n")
            self.assertRegex(hans_in.readline(), rb"^DATA Yoda, 127\.0\.0\.1, 7001, active since ")
            self.assertEqual(hans_in.readline(), b"OK\n")
            latencies.append(time.monotonic() - started)
            self.assertEqual(yoda_in.readline(), b"OK Your password has been changed.\n")
            hashing = time.monotonic() - started
        # The second change checks a bcrypt hash and makes one: two slow steps.
        self.assertGreater(hashing, 0.2)
        self.assertLess(max(latencies), 0.15, latencies)


class TerminalChangePasswordTests(E2EMixin, SynchronousTestCase):
    """The three password prompts in a real pseudo-terminal: nothing typed is shown."""

    def test_passwords_not_echoed(self):
        try:
            import fcntl
            import termios
        except ImportError:
            raise SkipTest("needs a POSIX pseudo-terminal") from None
        from .test_e2e_pty import COLUMNS, ROWS, ScreenReader

        server = self.start_server()
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    ROWS.to_bytes(2, sys.byteorder) + COLUMNS.to_bytes(2, sys.byteorder) + bytes(4))
        process = subprocess.Popen(
            [sys.executable, "-m", "chatproto.client", server.host, str(server.port),
             str(free_udp_port())],
            stdin=slave, stdout=slave, stderr=slave, cwd=server.data_dir,
            env=child_env({"TERM": "xterm"}), start_new_session=True,
        )

        def stop():
            if process.poll() is None:
                process.kill()
            process.wait(TIMEOUT)

        self.addCleanup(stop)
        screen = ScreenReader(master, COLUMNS, ROWS)
        for prompt, typed in [("Username: ", "Yoda"), ("Password: ", "wise@!man")]:
            screen.wait_for_cursor_line(prompt)
            os.write(master, typed.encode() + b"\r")
        screen.wait_for_text("Welcome to chatproto!")
        screen.wait_for_cursor_line("> ")
        os.write(master, b"/changepassword\r")
        for prompt, typed in [("Current password: ", "wise@!man"), ("New password: ", "Dag0bah"),
                              ("Repeat new password: ", "Dag0bah")]:
            screen.wait_for_cursor_line(prompt)
            os.write(master, typed.encode() + b"\r")
        screen.wait_for_text("Your password has been changed.")
        self.assertNotIn("wise@!man", screen.text())
        self.assertNotIn("Dag0bah", screen.text())
        self.assertNotIn(b"Dag0bah", bytes(screen.log))
