"""
The cluster (docs/CLUSTER.md) end to end: real nodes on a private Redis
and PostgreSQL, real clients on each node.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from .harness import DEMO_CREDENTIALS, ServerProcess, child_env
from .services import NeedsPostgres, NeedsRedis

TS = r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d"
JOINED = re.compile(r"Cluster: node \w+ joined")


class ClusterCase(NeedsPostgres, NeedsRedis, SynchronousTestCase):
    """Real nodes on the run's PostgreSQL and redis-server (started at first use, under pytest and trial)."""

    def setUp(self):
        self.database = self.postgres.fresh_database()
        self.shared = tempfile.mkdtemp(prefix="chatproto-cluster-")
        self.addCleanup(shutil.rmtree, self.shared, True)
        self.credentials = shutil.copy(DEMO_CREDENTIALS, self.shared)
        # A fresh Redis database number per test would need more; flush instead.
        with socket.create_connection(("127.0.0.1", self.redis.port)) as s:
            s.sendall(b"FLUSHALL\r\n")
            assert s.recv(100).startswith(b"+OK")

    def node(self, attempts=3, credentials=None, data_dir=None, extra=()):
        server = ServerProcess(attempts=attempts, credentials=credentials or self.credentials,
                               data_dir=data_dir, extra_args=(
                                   "--database", self.database, "--cluster", self.redis.url, *extra))
        self.addCleanup(server.cleanup)
        # Ready means joined: the node listens only once it is in the cluster.
        self.assertTrue(any(JOINED.search(line) for line in server.stdout.lines), server.stdout.lines)
        return server

    def login(self, server, username, password):
        client = server.client()
        self.addCleanup(client.cleanup)
        client.login(username, password)
        return client


class ClusterTests(ClusterCase):
    def test_two_nodes_behave_as_one_server(self):
        one_login = ("--max-sessions", "1")  # one session per account, on every node together
        a, b = self.node(extra=one_login), self.node(extra=one_login)
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/activeuser", re.compile(r"^Yoda, 127\.0\.0\.1, \d+, active since"))
        yoda.command("/activeuser", re.compile(r"^Hans, 127\.0\.0\.1, \d+, active since"))
        hans.command("/msgto Yoda hello from B", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: hello from B$"))
        yoda.command("/msgto Hans and back", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: and back$"))
        # Already logged in, whichever node.
        again = a.client()
        self.addCleanup(again.cleanup)
        again.expect("Username: ")
        again.send("Hans")
        again.expect("Password: ")
        again.send("falcon*solo")
        again.expect("This account is already logged in")
        # Groups: created on A, joined on B, fan-out both ways, history from either node.
        leia = self.login(b, "leia", "alderaan")
        yoda.command("/activeuser", re.compile(r"^Hans, "), re.compile(r"^leia, "))
        yoda.command("/creategroup Jedi Hans leia", re.compile("^Group chat room has been created"))
        hans.expect(re.compile("invited to the group chat Jedi"))
        hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        yoda.expect("Hans has joined the group chat Jedi.")
        leia.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        yoda.command("/groupmsg Jedi Do or do not", "Group chat message sent.")
        hans.expect(re.compile(rf"^{TS}, Jedi, Yoda: Do or do not$"))
        leia.expect(re.compile(rf"^{TS}, Jedi, Yoda: Do or do not$"))
        hans.command("/groupmsg Jedi there is no try", "Group chat message sent.")
        yoda.expect(re.compile(rf"^{TS}, Jedi, Hans: there is no try$"))
        leia.command("/grouphistory Jedi", re.compile(rf"^#1 {TS}, Jedi, Yoda: Do or do not$"),
                     re.compile(rf"^#2 {TS}, Jedi, Hans: there is no try$"))
        yoda.command("/history Hans", re.compile(rf"^#1 {TS}, Hans: hello from B$"),
                     re.compile(rf"^#2 {TS}, Yoda: and back$"))
        # Each node's files hold what it handled, with the database's SEQs.
        self.assertRegex(a.read("messagelog.txt"), rf"^2; {TS}; Yoda; and back\n$")
        self.assertRegex(b.read("messagelog.txt"), rf"^1; {TS}; Hans; hello from B\n$")
        self.assertRegex(b.read("Jedi_messageLog.txt"), rf"^2; {TS}; Hans; there is no try\n$")

    def test_ready_means_every_command_works_and_a_restart_answers_no_server_error(self):
        a = self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        directory = tempfile.mkdtemp(prefix="chatproto-restarted-")
        self.addCleanup(shutil.rmtree, directory, True)
        b = self.node(data_dir=directory)
        self.assertEqual(self.raw_login(b, "Hans", "falcon*solo"), "OK Welcome to chatproto!")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/msgto Yoda ready", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: ready$"))
        # B restarted while Yoda keeps writing to Hans: an answer, never a server error.
        self.assertEqual(b.stop(), 0)
        hans.expect(re.compile("Server shutting down"))
        answer = re.compile(r"^message sent at|^Hans is not active|Server error")
        yoda.send("/msgto Hans while away")
        self.assertNotIn("Server error", yoda.expect(answer).group(0))
        yoda.expect_prompt()
        b = self.node(data_dir=directory)
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/msgto Yoda back", re.compile("^message sent at"))
        # Node A has had the news of Hans's login (it came first on the same connection).
        yoda.expect(re.compile(rf"^{TS}, Hans: back$"))
        yoda.command("/msgto Hans welcome back", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: welcome back$"))

    def test_operating_a_cluster_acts_on_every_node(self):
        own = [shutil.copy(DEMO_CREDENTIALS, os.path.join(self.shared, f"credentials{i}.txt")) for i in (1, 2)]
        a = self.node(credentials=own[0], extra=("--admins", "Yoda"))
        b = self.node(credentials=own[1], extra=("--admins", "Yoda"))
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        leia = self.login(b, "leia", "alderaan")
        luke = self.login(a, "luke", "jedi*knight")
        yoda.command("/activeuser", re.compile(r"^Hans, "), re.compile(r"^leia, "), re.compile(r"^luke, "))
        yoda.command("/announce Maintenance at 22:00", "Maintenance at 22:00",
                     "Announcement sent to 4 active users.")
        hans.expect("Maintenance at 22:00")
        leia.expect("Maintenance at 22:00")
        # /kick and /ban of users on the other node.
        yoda.command("/kick leia flooding", "leia has been disconnected.")
        leia.expect("You have been disconnected by the administrator Yoda: flooding")
        self.assertEqual(leia.wait(), 1)
        yoda.command("/ban Hans 1h", re.compile(r"^Hans is banned until "))
        hans.expect(re.compile(r"^You have been banned by the administrator Yoda until "))
        self.assertEqual(hans.wait(), 1)
        blocked = "Your account is blocked due to multiple login failures. Please try again later"
        self.try_login(b, "Hans", "falcon*solo", blocked)  # refused on node B at once
        yoda.command("/unban Hans", "Hans is no longer banned.")
        self.login(b, "Hans", "falcon*solo")
        # An account deleted through node B's file (its own copy) is logged out on node A.
        result = subprocess.run([sys.executable, "-m", "chatproto.server.admin", "--credentials", own[1],
                                 "deluser", "luke"], capture_output=True, text=True, env=child_env())
        self.assertEqual(result.returncode, 0, result.stderr)
        luke.expect("Your account has been removed")
        self.assertEqual(luke.wait(), 1)
        with open(own[0]) as f:
            self.assertNotIn("luke", f.read())  # node A's copy too
        # One added through node A's file logs in on node B.
        result = subprocess.run([sys.executable, "-m", "chatproto.server.admin", "--credentials", own[0],
                                 "adduser", "rey"], input="scavenger\nscavenger\n", capture_output=True,
                                text=True, env=child_env())
        self.assertEqual(result.returncode, 0, result.stderr)
        b.stdout.expect(re.compile(r"Accounts reloaded: .* added rey"))
        self.login(b, "rey", "scavenger")

    def raw_login(self, server, username, password):
        """LOGIN sent the moment the node said it listens; its answer, then logged out."""
        with socket.create_connection((server.host, server.port), timeout=10) as s:
            f = s.makefile("rwb")
            f.write(f"LOGIN {username} {password} 7000\n".encode())
            f.flush()
            answer = f.readline().decode().rstrip("\n")
            if answer.startswith("OK"):
                f.write(b"/logout\n")
                f.flush()
                f.read()  # until the server closes after the logout
            return answer

    def try_login(self, server, username, password, expected):
        client = server.client()
        self.addCleanup(client.cleanup)
        client.expect("Username: ")
        client.send(username)
        client.expect("Password: ")
        client.send(password)
        client.expect(expected)
        return client

    def test_lockout_counted_across_nodes(self):
        # Every node and connection is ready before the first failure: the 10-second block then
        # only has to outlast five lines, not a node's start on a loaded machine. (A node started
        # during a block reads it from PostgreSQL: test_cluster_bus.py, on a task.Clock.)
        a, b, c = self.node(attempts=2), self.node(attempts=2), self.node(attempts=2)
        failing = [socket.create_connection((node.host, node.port), timeout=10) for node in (a, b)]
        right = [socket.create_connection((node.host, node.port), timeout=10) for node in (a, b, c)]
        for s in failing + right:
            self.addCleanup(s.close)
        # Two nodes failing the same account at the same moment count two.
        for s in failing:
            s.sendall(b"LOGIN Yoda wrong 7000\n")
        answers = sorted(s.makefile("rb").readline().decode().strip() for s in failing)
        self.assertEqual(answers, ["ERR Invalid Password. Please try again",
                                   "ERR Invalid Password. Your account has been blocked. Please try again later"])
        # The right password is refused on both, and on node C, which took no part (PostgreSQL
        # has the block).
        for s in right:
            s.sendall(b"LOGIN Yoda wise@!man 7000\n")
        self.assertEqual(
            [s.makefile("rb").readline().decode().strip() for s in right],
            ["ERR Your account is blocked due to multiple login failures. Please try again later"] * 3)

    def test_a_killed_node_s_users_are_inactive_within_15_seconds(self):
        a, b, c = self.node(), self.node(), self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        leia = self.login(c, "leia", "alderaan")
        # One group over three nodes.
        yoda.command("/creategroup Jedi Hans leia", re.compile("^Group chat room has been created"))
        for member in (hans, leia):
            member.expect(re.compile("invited to the group chat Jedi"))
            member.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        leia.command("/groupmsg Jedi from node three", "Group chat message sent.")
        for member in (yoda, hans):
            member.expect(re.compile(rf"^{TS}, Jedi, leia: from node three$"))
        # Each node published its login on Redis before what it sent after it (the invitation from
        # A, leia's message from C): B has read both logins now (the window before is in CLUSTER.md).
        hans.command("/activeuser", re.compile(r"^Yoda, "), re.compile(r"^leia, "))
        killed = time.monotonic()
        a.kill()
        for node in (b, c):
            node.stdout.expect(re.compile(r"Cluster: node \w+ is gone; 1 users inactive"), timeout=15)
        self.assertLess(time.monotonic() - killed, 15)
        hans.command("/activeuser", re.compile(r"^leia, "))
        leia.command("/msgto Yoda still there?", "Yoda is not active")
        # Yoda can log in again elsewhere at once.
        yoda = self.login(c, "Yoda", "wise@!man")
        # Node B learns of the login through Redis, in order with what node C sends after it:
        # once Yoda's message is in, B knows him (the window before that is in CLUSTER.md).
        yoda.command("/msgto Hans back on node three", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: back on node three$"))
        hans.command("/msgto Yoda welcome back", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: welcome back$"))

    def test_redis_restarted_mid_traffic(self):
        a, b = self.node(), self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/activeuser", re.compile(r"^Yoda, "))
        hans.command("/msgto Yoda before", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: before$"))
        self.redis.stop()
        a.stderr.expect(re.compile("lost Redis"))
        b.stderr.expect(re.compile("lost Redis"))
        # Acknowledged while the bus is down: it is in PostgreSQL.
        hans.command("/msgto Yoda during", re.compile("^message sent at"))
        self.redis.start()
        a.stdout.expect(re.compile("reconnected to Redis"), timeout=30)
        b.stdout.expect(re.compile("reconnected to Redis"), timeout=30)
        yoda.expect(re.compile(rf"^{TS}, Hans: during$"))  # caught up from PostgreSQL
        hans.command("/msgto Yoda after", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: after$"))
        yoda.command("/activeuser", re.compile(r"^Hans, "))
        yoda.command("/history Hans", re.compile(rf"^#1 {TS}, Hans: before$"),
                     re.compile(rf"^#2 {TS}, Hans: during$"), re.compile(rf"^#3 {TS}, Hans: after$"))

    def test_postgresql_unreachable_then_back(self):
        a, b = self.node(), self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/activeuser", re.compile(r"^Yoda, "))
        self.postgres.local.stop("fast")
        try:
            # Nothing is acknowledged that is not committed: a clear error instead.
            hans.command("/msgto Yoda lost?", "Server error: the message could not be saved")
        finally:
            self.postgres.local.start()
        hans.command("/msgto Yoda back", re.compile("^message sent at"))
        yoda.expect(re.compile(rf"^{TS}, Hans: back$"))
        yoda.command("/history Hans", re.compile(rf"^#1 {TS}, Hans: back$"))  # node A's first use

    def test_deleted_through_another_node_and_a_clean_stop(self):
        a, b = self.node(), self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        hans.command("/activeuser", re.compile(r"^Yoda, "))
        yoda.command("/msgto Hans oops", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: oops$"))
        yoda.send("/logout")
        yoda.expect(re.compile("^Bye"))
        yoda = self.login(b, "Yoda", "wise@!man")  # now on the other node
        yoda.command("/deletemsg 1", "Message 1 deleted.")
        hans.command("/history Yoda", re.compile(rf"^#1 {TS}, Yoda: \[deleted\]$"))
        a.stdout.expect(re.compile("record 1 of messagelog.txt deleted here too"))
        self.assertRegex(a.read("messagelog.txt"), rf"^1; {TS}; Yoda; \[deleted\]\n$")
        # A node stopped cleanly takes its users with it at once.
        leia = self.login(a, "leia", "alderaan")
        leia.command("/activeuser", re.compile(r"^Hans, "), re.compile(r"^Yoda, "))
        self.assertEqual(b.stop(), 0)
        leia.command("/activeuser", "no other active user")

    def test_a_password_changed_on_one_node_works_on_every_node(self):
        own = shutil.copy(DEMO_CREDENTIALS, tempfile.mkdtemp(prefix="chatproto-own-credentials-"))
        self.addCleanup(shutil.rmtree, os.path.dirname(own), True)
        a = self.node()
        b = self.node(credentials=own)
        yoda = self.login(a, "Yoda", "wise@!man")
        yoda.command("/changepassword wise@!man newpass1", "Your password has been changed.")
        yoda.send("/logout")
        yoda.expect(re.compile("^Bye"))
        self.login(b, "Yoda", "newpass1")  # b's own copy of the accounts was updated too
        with open(own) as f:
            self.assertNotIn("wise@!man", f.read())
