"""
Issue 18 with real processes: chatproto-admin against a running server,
metrics scraped over HTTP, kick, ban across a restart, announce.
"""

import os
import re
import signal
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from .harness import TIMEOUT, E2EMixin, child_env

BLOCKED = "Your account is blocked due to multiple login failures. Please try again later"


def admin(server, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "chatproto.server.admin", "--credentials", server.credentials,
                           *args], input=stdin, capture_output=True, text=True, env=child_env(),
                          timeout=TIMEOUT)


def line_so_far(reader, pattern):
    """A line matching C{pattern} printed already (in any order with the others), or the next one."""
    for line in reader.lines:
        found = pattern.search(line)
        if found:
            return found
    return reader.expect(pattern)


def scrape(url) -> dict:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


class AdminCliLiveTests(E2EMixin, SynchronousTestCase):
    def test_add_log_in_and_delete_while_logged_in_without_a_restart(self):
        server = self.start_server()
        result = admin(server, "adduser", "rey", stdin="scavenger\nscavenger\n")
        self.assertEqual((result.returncode, result.stdout), (0, "Added rey.\n"), result.stderr)
        server.stdout.expect(re.compile(r"Accounts reloaded: 7 accounts, added rey, removed none$"))
        rey = self.login("rey", "scavenger")
        rey.command("/activeuser", "no other active user")

        result = admin(server, "deluser", "rey")
        self.assertEqual(result.returncode, 0, result.stderr)
        rey.expect("Your account has been removed")
        self.assertEqual(rey.wait(), 1)
        server.stdout.expect(re.compile(r"added none, removed rey$"))
        client = self.client()
        client.expect("Username: ")
        client.send("rey")
        client.expect("Password: ")
        client.send("scavenger")
        client.expect("Invalid Username. Please try again")

        # SIGHUP reloads too (an edit by hand, say).
        server.process.send_signal(signal.SIGHUP)
        server.stdout.expect(re.compile(r"Reloading the accounts from .* \(SIGHUP\)$"))
        server.stdout.expect(re.compile(r"Accounts reloaded: 6 accounts"))
        self.assertEqual(server.stop(), 0)


class MetricsTests(E2EMixin, SynchronousTestCase):
    def test_scraped_over_http_and_parsed(self):
        server = self.start_server(extra_args=["--metrics-port", "0"])
        url = "http://{}:{}/metrics".format(*line_so_far(
            server.stdout, re.compile(r"^Metrics on http://([\d.]+):(\d+)/metrics$")).groups())
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        yoda.command("/msgto Hans hello there", re.compile("message sent at"))
        hans.expect(re.compile("Yoda: hello there$"))
        bad = self.client()
        bad.expect("Username: ")
        bad.send("leia")
        bad.expect("Password: ")
        bad.send("wrong")
        bad.expect("Invalid Password. Please try again")
        samples = scrape(url)
        self.assertEqual(samples["chatproto_messages_total", (("kind", "private"),)], 1)
        self.assertEqual(samples["chatproto_deliveries_total", (("kind", "private"),)], 1)
        self.assertEqual(samples["chatproto_logins_total", (("frontend", "line"),)], 2)
        self.assertEqual(samples["chatproto_login_failures_total", (("reason", "wrong-password"),)], 1)
        self.assertEqual(samples["chatproto_active_users", (("frontend", "line"),)], 2)
        self.assertEqual(samples["chatproto_connections", (("frontend", "line"),)], 3)
        self.assertEqual(samples["chatproto_accounts", ()], 6)
        self.assertGreaterEqual(samples["chatproto_journal_batch_records_count", ()], 3)
        self.assertGreaterEqual(samples["chatproto_database_commit_seconds_count", ()], 1)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=TIMEOUT)
        self.assertEqual(caught.exception.code, 404)
        caught.exception.close()
        self.assertEqual(server.stop(), 0)


class AdminCommandsLiveTests(E2EMixin, SynchronousTestCase):
    def test_kick_announce_and_a_ban_that_survives_a_restart(self):
        config = ["--admins", "Yoda"]
        server = self.start_server(extra_args=config)
        yoda = self.login("Yoda", "wise@!man")
        hans = self.login("Hans", "falcon*solo")
        leia = self.login("leia", "alderaan")
        yoda.command("/announce Maintenance at 22:00", "Maintenance at 22:00",
                     "Announcement sent to 3 active users.")
        hans.expect("Maintenance at 22:00")
        leia.expect("Maintenance at 22:00")
        hans.command("/kick leia", "You are not an administrator.")

        yoda.command("/kick leia flooding", "leia has been disconnected.")
        leia.expect("You have been disconnected by the administrator Yoda: flooding")
        self.assertEqual(leia.wait(), 1)

        yoda.command("/ban Hans 1h", re.compile(r"^Hans is banned until \d\d [A-Z][a-z]{2} \d{4} "))
        hans.expect(re.compile(r"^You have been banned by the administrator Yoda until "))
        self.assertEqual(hans.wait(), 1)
        self.assertEqual(server.stop(), 0)
        self.assertTrue(any("Admin Yoda kicked leia: flooding" in line for line in server.stderr.lines))
        self.assertTrue(any("Admin Yoda banned Hans until" in line for line in server.stderr.lines))

        server = self.start_server(data_dir=server.data_dir, credentials=server.credentials, extra_args=config)
        hans = self.client(server=server)
        hans.expect("Username: ")
        hans.send("Hans")
        hans.expect("Password: ")
        hans.send("falcon*solo")
        hans.expect(BLOCKED)
        self.assertEqual(hans.wait(), 1)
        yoda = self.login("Yoda", "wise@!man", server=server)
        yoda.command("/unban Hans", "Hans is no longer banned.")
        self.login("Hans", "falcon*solo", server=server)
        self.assertEqual(server.stop(), 0)

    def test_backup_on_sigusr2_and_by_the_admin_command(self):
        server = self.start_server()
        yoda = self.login("Yoda", "wise@!man")
        self.login("Hans", "falcon*solo")
        yoda.command("/msgto Hans kept", re.compile("message sent at"))
        server.process.send_signal(signal.SIGUSR2)
        written = server.stdout.expect(re.compile(r"Backup written to (\S+)$")).group(1)
        self.assertEqual(sorted(os.listdir(written)), ["chatproto.db", "credentials.txt", "messagelog.txt"])
        import sqlite3

        db = sqlite3.connect(os.path.join(written, "chatproto.db"))
        try:
            self.assertEqual(db.execute("SELECT text FROM messages").fetchall(), [("kept",)])
        finally:
            db.close()
        dest = os.path.join(server.data_dir, "copy")
        result = admin(server, "--data-dir", server.data_dir, "backup", dest)
        self.assertEqual(result.returncode, 1)
        self.assertIn("Send it SIGUSR2", result.stderr)
        self.assertEqual(server.stop(), 0)
        result = admin(server, "--data-dir", server.data_dir, "backup", dest)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(os.listdir(dest)), ["chatproto.db", "credentials.txt", "messagelog.txt"])


class ConfigProcessTests(SynchronousTestCase):
    def run_server(self, *args, cwd):
        return subprocess.run([sys.executable, "-m", "chatproto.server", *args], cwd=cwd, env=child_env(),
                              capture_output=True, text=True, timeout=TIMEOUT)

    def test_a_bad_file_is_one_line_and_status_2_and_print_config_exits_0(self):
        import tempfile

        directory = tempfile.mkdtemp(prefix="chatproto-config-e2e-")
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        path = os.path.join(directory, "chatproto.toml")
        with open(path, "w") as f:
            f.write("port = 0\nattempts = 3\nmax-connectons = 5\n")
        result = self.run_server("--config", path, cwd=directory)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr, f"Error: {path}: unknown setting 'max-connectons' "
                                        "(did you mean max-connections?)\n")
        self.assertEqual(result.stdout, "")
        with open(path, "w") as f:
            f.write("port = 0\nattempts = 3\nrate-limit = 5\n")
        result = self.run_server("--config", path, "--rate-limit", "7", "--print-config", cwd=directory)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("rate-limit = 7  # command line\n", result.stdout)
        self.assertIn(f"attempts = 3  # {path}\n", result.stdout)
