"""
End to end: a real server process and real client processes over loopback,
for every command and error row of docs/PROTOCOL.md (the login, the commands).
"""

import os
import re
import signal
import socket

from twisted.trial.unittest import SynchronousTestCase

from .harness import E2EMixin, ServerProcess

TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"


class LoginTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        # The login's rules (docs/PROTOCOL.md, LOGIN), one login per account among them (--max-sessions 1).
        self.server = self.start_server(attempts=2, extra_args=("--max-sessions", "1"))

    def test_login_errors_and_lockout(self):
        client = self.client()
        client.expect("Username: ")
        client.send("Nobody")
        client.expect("Password: ")
        client.send("whatever")
        client.expect("Invalid Username. Please try again")
        client.expect("Username: ")
        client.send("Yoda")
        client.expect("Password: ")
        client.send("wrong")
        client.expect("Invalid Password. Please try again")
        client.expect("Password: ")
        client.send("wrong-again")
        client.expect("Invalid Password. Your account has been blocked. Please try again later")
        self.assertEqual(client.wait(), 1)
        # Blocked across connections, even with the right password.
        other = self.client()
        other.expect("Username: ")
        other.send("Yoda")
        other.expect("Password: ")
        other.send("wise@!man")
        other.expect("Your account is blocked due to multiple login failures. Please try again later")
        self.assertEqual(other.wait(), 1)
        # Another account is not affected.
        self.login("Hans", "falcon*solo")

    def test_already_logged_in_and_userlog(self):
        yoda = self.login("Yoda", "wise@!man")
        self.assertRegex(self.server.read("userlog.txt"), rf"^1; {TS}; Yoda; 127\.0\.0\.1; {yoda.udp_port}\n$")
        second = self.client()
        second.expect("Username: ")
        second.send("Yoda")
        second.expect("Password: ")
        second.send("wise@!man")
        second.expect("This account is already logged in")
        second.expect("Username: ")
        second.send("Hans")
        second.expect("Password: ")
        second.send("falcon*solo")
        second.expect("Welcome to chatproto!")
        lines = self.server.read("userlog.txt").splitlines()
        self.assertEqual([line.split("; ")[0] + line.split("; ")[2] for line in lines], ["1Yoda", "2Hans"])
        yoda.send("/logout")
        yoda.expect("Bye, Yoda!")
        self.assertEqual(yoda.wait(), 0)
        # Hans is renumbered to 1 when Yoda leaves.
        self.assertRegex(self.server.read("userlog.txt"), rf"^1; {TS}; Hans; 127\.0\.0\.1; {second.udp_port}\n$")
        second.close_stdin()  # end of input: the client exits 0 and the server logs Hans out
        self.assertEqual(second.wait(), 0)
        self.server.stop()
        self.assertEqual(self.server.read("userlog.txt"), "")

    def test_end_of_input_at_username_prompt(self):
        client = self.client()
        client.expect("Username: ")
        client.close_stdin()
        self.assertEqual(client.wait(), 0)


class MessagingTests(E2EMixin, SynchronousTestCase):
    def setUp(self):
        self.server = self.start_server()

    def test_private_messages(self):
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        yoda.command("/msgto Hans May the force; be with you", re.compile(rf"^message sent at {TS}\.$"))
        hans.expect(re.compile(rf"^{TS}, Yoda: May the force; be with you$"))
        yoda.command("/msgto vader hi", "vader is not active")
        yoda.command("/msgto Palpatine hi", "No such user: Palpatine")
        yoda.command("/msgto Yoda hi", "You cannot send a message to yourself")
        yoda.command("/msgto Hans", "Usage: /msgto USERNAME MESSAGE")
        yoda.command("/dance", "Error. Invalid command!")
        hans.command("/msgto Yoda second", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: second$"))
        log = self.server.read("messagelog.txt").splitlines()
        self.assertEqual(len(log), 2)
        self.assertRegex(log[0], rf"^1; {TS}; Yoda; May the force; be with you$")
        self.assertRegex(log[1], rf"^2; {TS}; Hans; second$")

    def test_message_numbering_continues_after_restart(self):
        yoda = self.login("Yoda", "wise@!man")
        self.login("Hans", "falcon*solo")
        yoda.command("/msgto Hans one", re.compile("^message sent at"))
        self.assertEqual(self.server.stop(), 0)
        yoda.expect("Server shutting down")
        self.assertEqual(yoda.wait(), 1)
        self.assertNotIn("Connection to the server was lost.", yoda.stdout.rest())  # one line, not two
        again = ServerProcess(data_dir=self.server.data_dir, credentials=self.server.credentials)
        self.addCleanup(again.cleanup)
        yoda = self.login("Yoda", "wise@!man", server=again)
        self.login("Hans", "falcon*solo", server=again)
        yoda.command("/msgto Hans two", re.compile("^message sent at"))
        seqs = [line.split("; ")[0] for line in again.read("messagelog.txt").splitlines()]
        self.assertEqual(seqs, ["1", "2"])

    def test_activeuser(self):
        yoda = self.login("Yoda", "wise@!man")
        yoda.command("/activeuser", "no other active user")
        hans = self.login("Hans", "falcon*solo")
        leia = self.login("leia", "alderaan")
        yoda.command(
            "/activeuser",
            re.compile(rf"^Hans, 127\.0\.0\.1, {hans.udp_port}, active since {TS}\.$"),
            re.compile(rf"^leia, 127\.0\.0\.1, {leia.udp_port}, active since {TS}\.$"),
        )
        yoda.command("/activeuser now", "Usage: /activeuser")

    def test_groups(self):
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        leia = self.login("leia", "alderaan")
        yoda.command("/creategroup Jedi", "Usage: /creategroup GROUPNAME USERNAME [USERNAME ...]")
        yoda.command("/creategroup Je-di Hans", "Group name must be 1-32 letters and digits")
        yoda.command("/creategroup Jedi Hans Palpatine", "No such user: Palpatine")
        yoda.command("/creategroup Jedi Hans vader", "vader is not active")
        yoda.command("/creategroup Jedi Yoda", "Please enter at least one more active user.")
        yoda.command("/creategroup Jedi Hans leia Hans Yoda",
                     "Group chat room has been created, room name: Jedi, users in this room: Yoda Hans leia")
        self.assertTrue(os.path.exists(self.server.path("Jedi_messageLog.txt")))
        hans.expect("You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join.")
        leia.expect("You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join.")
        hans.command("/creategroup jedi leia", "A group chat (Name: jedi) already exists")
        hans.command("/groupmsg Jedi hello", "Please join the group before sending messages.")
        hans.command("/joingroup Sith", "Groupchat (Name: Sith) does not exist.")
        hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        hans.command("/joingroup Jedi", "You have already joined the group chat Jedi.")
        luke = self.login("luke", "jedi*knight")
        luke.command("/joingroup Jedi", "You are not a member of the group chat Jedi.")
        luke.command("/groupmsg Jedi hi", "You are not in this group chat.")
        luke.command("/groupmsg Sith hi", "The group chat does not exist.")
        yoda.command("/groupmsg Jedi Do or do not", "Group chat message sent.")
        hans.expect(re.compile(rf"^{TS}, Jedi, Yoda: Do or do not$"))
        hans.command("/groupmsg Jedi there is no try", "Group chat message sent.")
        yoda.expect(re.compile(rf"^{TS}, Jedi, Hans: there is no try$"))
        log = self.server.read("Jedi_messageLog.txt").splitlines()
        self.assertRegex(log[0], rf"^1; {TS}; Yoda; Do or do not$")
        self.assertRegex(log[1], rf"^2; {TS}; Hans; there is no try$")
        self.assertEqual(len(log), 2)
        # leia was invited but did not join: she got nothing.
        leia.command("/activeuser", re.compile("^Yoda"), re.compile("^Hans"), re.compile("^luke"))
        self.assertFalse([line for line in leia.stdout.lines if "Do or do not" in line])

    def test_p2pvideo_lookup(self):
        yoda = self.login("Yoda", "wise@!man")
        yoda.command("/p2pvideo Hans nothere.mp4", "File nothere.mp4 does not exist")
        with open(os.path.join(yoda.cwd, "clip.mp4"), "wb") as f:
            f.write(b"x" * 10)
        yoda.command("/p2pvideo Hans clip.mp4", "Hans is not active")
        yoda.command("/p2pvideo Palpatine clip.mp4", "No such user: Palpatine")
        yoda.command("/p2pvideo Yoda clip.mp4", "You cannot send a file to yourself")


class ServerLifecycleTests(E2EMixin, SynchronousTestCase):
    def test_shutdown_notifies_clients(self):
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man")
        self.assertEqual(server.stop(signal.SIGINT), 0)
        yoda.expect("Server shutting down")
        self.assertEqual(yoda.wait(), 1)

    def test_wire_protocol_with_a_raw_socket(self):
        server = self.start_server()
        with socket.create_connection((server.host, server.port), timeout=10) as s:
            f = s.makefile("rwb")
            f.write(b"/activeuser\r\n")
            f.write(b"LOGIN Yoda wise@!man 7000\n")
            f.write(b"\xff\xfe\n")
            f.write(b"/msgto " + b"x" * 70000 + b"\n")
            f.write(b"/activeuser\n")
            f.flush()
            self.assertEqual(f.readline(), b"ERR Please log in first\n")
            self.assertEqual(f.readline(), b"OK Welcome to chatproto!\n")
            self.assertEqual(f.readline(), b"ERR Invalid UTF-8\n")
            self.assertEqual(f.readline(), b"ERR Line too long\n")
            self.assertEqual(f.readline(), b"OK no other active user\n")

    def run_second_server(self, port, data_dir, credentials):
        import subprocess
        import sys

        from .harness import child_env

        return subprocess.run(
            [sys.executable, "-m", "chatproto.server", str(port), "3", "--interface", "127.0.0.1",
             "--data-dir", data_dir, "--credentials", credentials],
            env=child_env(), capture_output=True, timeout=20, cwd=data_dir,
        )

    def test_data_directory_held_by_one_server(self):
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man")
        before = server.read("userlog.txt")
        other = self.run_second_server(0, server.data_dir, server.credentials)
        self.assertEqual(other.returncode, 1)
        self.assertEqual(other.stderr.decode().strip(),
                         f"Error: the data directory {server.data_dir} is in use by another chatproto server")
        self.assertEqual(server.read("userlog.txt"), before)  # the live server's files untouched
        yoda.command("/activeuser", "no other active user")

    def test_port_in_use(self):
        import tempfile

        server = self.start_server()
        elsewhere = tempfile.mkdtemp(prefix="chatproto-e2e-")
        self.addCleanup(__import__("shutil").rmtree, elsewhere, True)
        other = self.run_second_server(server.port, elsewhere, server.credentials)
        self.assertEqual(other.returncode, 1)
        self.assertIn(str(server.port), other.stderr.decode())
        self.assertEqual(len(other.stderr.decode().strip().splitlines()), 1, other.stderr)
        self.assertNotIn("Traceback", other.stderr.decode())


class ArgumentTests(SynchronousTestCase):
    def run_server(self, *args):
        import subprocess
        import sys

        from .harness import child_env

        return subprocess.run([sys.executable, "-m", "chatproto.server", *args], env=child_env(),
                              capture_output=True, timeout=20, text=True)

    def test_bad_attempts(self):
        for value in ("0", "6", "x", "2.5", "\u0663", "\u00b3"):
            result = self.run_server("9000", value)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(
                result.stderr.strip(),
                f"Invalid number of allowed failed consecutive attempts: {value}. "
                "The valid value of argument number is an integer between 1 and 5",
            )

    def test_usage(self):
        for args in ((), ("9000",), ("abc", "3"), ("70000", "3"), ("1", "2", "3"), ("\u00b2", "3")):
            result = self.run_server(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            self.assertTrue(result.stderr.startswith("Usage: "))

    def test_client_usage(self):
        import subprocess
        import sys

        from .harness import child_env

        result = subprocess.run([sys.executable, "-m", "chatproto.client", "127.0.0.1", "x"],
                                env=child_env(), capture_output=True, timeout=20, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertTrue(result.stderr.startswith("Usage: "))
        result = subprocess.run([sys.executable, "-m", "chatproto.client", "--help"],
                                env=child_env(), capture_output=True, timeout=20, text=True)
        self.assertEqual(result.returncode, 0)
        self.assertTrue(result.stdout.startswith("Usage: python -m chatproto.client"))
