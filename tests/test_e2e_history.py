"""
History and presence (docs/PROTOCOL.md) end to end: real server processes
restarted on the same data directory, real clients.
"""

import re
import signal
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from .harness import E2EMixin

TS = r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d"


class HistoryAcrossRestartsTests(E2EMixin, SynchronousTestCase):
    def test_group_members_and_history_survive_a_restart_and_a_kill(self):
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        yoda.command("/creategroup Jedi Hans", re.compile("^Group chat room has been created"))
        hans.expect(re.compile("invited to the group chat Jedi"))
        hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        yoda.expect("Hans has joined the group chat Jedi.")
        yoda.command("/groupmsg Jedi Do or do not; there is no try", "Group chat message sent.")
        hans.command("/msgto Yoda hello; master", re.compile("^message sent at"))
        yoda.command("/createbroadcast News Hans", re.compile("^Broadcast group has been created"))
        self.assertEqual(server.stop(signal.SIGTERM), 0)

        server = self.start_server(data_dir=server.data_dir, credentials=server.credentials)
        self.assertEqual(server.read("userlog.txt"), "")  # nobody is active after a restart
        yoda = self.login("Yoda", "wise@!man", server=server)
        hans = self.login("Hans", "falcon*solo", server=server)
        hans.command("/grouphistory Jedi",
                     re.compile(rf"^#1 {TS}, Jedi, Yoda: Do or do not; there is no try$"))
        yoda.command("/history Hans 5", re.compile(rf"^#1 {TS}, Hans: hello; master$"))
        # Membership and the broadcast flag came back too.
        hans.command("/groupmsg News hi", "Please join the group before sending messages.")
        hans.command("/joingroup News", "Joined the group chat: News successfully.")
        hans.command("/groupmsg News hi", "Only the owner can send messages to this broadcast group.")
        hans.command("/groupmsg Jedi after the restart", "Group chat message sent.")
        yoda.expect(re.compile(rf"^{TS}, Jedi, Hans: after the restart$"))

        server.kill()  # kill -9: the acknowledged records stay, in the files and the database
        server = self.start_server(data_dir=server.data_dir, credentials=server.credentials)
        leia = self.login("leia", "alderaan", server=server)
        leia.command("/grouphistory Jedi", "You are not in this group chat.")
        hans = self.login("Hans", "falcon*solo", server=server)
        hans.command("/grouphistory Jedi 1", re.compile(rf"^#2 {TS}, Jedi, Hans: after the restart$"))
        hans.command("/history leia", "No messages.")
        hans.command("/history Nobody", "No such user: Nobody")
        hans.command("/history leia 501", "Usage: /history USERNAME [N]")
        self.assertEqual(server.stop(signal.SIGTERM), 0)
        self.assertEqual(server.read("Jedi_messageLog.txt").count("\n"), 2)
        db = sqlite3.connect(server.path("chatproto.db"))
        try:
            rows = db.execute("SELECT seq, sender FROM messages WHERE log = 'Jedi' ORDER BY seq").fetchall()
        finally:
            db.close()
        self.assertEqual(rows, [(1, "Yoda"), (2, "Hans")])


class DatabaseStartupTests(E2EMixin, SynchronousTestCase):
    def test_database_that_cannot_be_opened_is_one_line_and_exit_1(self):
        import subprocess
        import sys
        import tempfile

        from .harness import DEMO_CREDENTIALS, child_env

        data_dir = tempfile.mkdtemp(prefix="chatproto-e2e-")
        self.addCleanup(__import__("shutil").rmtree, data_dir, True)
        result = subprocess.run(
            [sys.executable, "-m", "chatproto.server", "0", "3", "--interface", "127.0.0.1",
             "--data-dir", data_dir, "--credentials", DEMO_CREDENTIALS,
             "--database", "sqlite:missing/dir/chat.db"],
            env=child_env(), capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(b"cannot open the database", result.stderr)
