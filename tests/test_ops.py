"""
Issue 18, in process: administrators' commands, bans kept across a
restart, accounts reloaded live, the counters, the configuration file and
chatproto-admin's rewrites of credentials.txt.
"""

import io
import math
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatproto.core.bans import Bans
from chatproto.core.passwords import password_matches
from chatproto.server import ServerOptions
from chatproto.server import admin as admin_cli
from chatproto.server.app import Options as TwistdOptions
from chatproto.server.config import ConfigError
from chatproto.server.metrics import ChatMetrics
from chatproto.core.realm import ChatRealm
from chatproto.storage.ledger import Ledger
from chatproto.storage.sqlite import SQLiteDatabase
from chatproto.storage.credentials import username_problem

from .support import ChatFixture


def fixture(testcase, **kwargs):
    f = ChatFixture(testcase, **kwargs)
    f.chat.admins = {"Yoda"}
    return f


class AdminCommandTests(SynchronousTestCase):
    def test_kick_logs_the_user_out_with_a_notice(self):
        f = fixture(self)
        yoda, hans = f.login("Yoda", "wise@!man"), f.login("Hans", "falcon*solo")
        self.assertEqual(yoda.send("/kick Hans spamming the channel"), ["OK Hans has been disconnected."])
        self.assertEqual(hans.output(), [
            "NOTICE You have been disconnected by the administrator Yoda: spamming the channel"])
        self.assertTrue(hans.transport.disconnecting)
        self.assertIsNone(f.chat.active_user("Hans"))
        self.assertEqual(yoda.send("/kick Hans"), ["ERR Hans is not active"])
        self.assertEqual(yoda.send("/kick Nobody"), ["ERR No such user: Nobody"])
        self.assertEqual(yoda.send("/kick Yoda"), ["ERR You cannot do that to your own account."])
        self.assertEqual(yoda.send("/kick"), ["ERR Usage: /kick USERNAME [REASON]"])
        # A kicked user may log in again at once.
        f.login("Hans", "falcon*solo")

    def test_non_administrators_are_told(self):
        f = fixture(self)
        f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        for command in ("/kick Yoda", "/ban Yoda 1h", "/unban Yoda", "/announce hello"):
            self.assertEqual(hans.send(command), ["ERR You are not an administrator."], command)
        self.assertIsNotNone(f.chat.active_user("Yoda"))
        # /help lists the administrators' commands to administrators only.
        self.assertNotIn("DATA /kick USERNAME [REASON]", hans.send("/help"))

    def test_ban_refuses_logins_with_the_blocked_text_until_it_ends(self):
        f = fixture(self)
        yoda, hans = f.login("Yoda", "wise@!man"), f.login("Hans", "falcon*solo")
        reply = yoda.send("/ban Hans 2h")
        self.assertRegex(reply[0], r"^OK Hans is banned until \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d\.$")
        self.assertRegex(hans.output()[0],
                         r"^NOTICE You have been banned by the administrator Yoda until \d\d ")
        again = f.connect()
        self.assertEqual(again.send("LOGIN Hans falcon*solo 6001"), [
            "ERR Your account is blocked due to multiple login failures. Please try again later"])
        f.clock.advance(2 * 3600 + 1)
        f.login("Hans", "falcon*solo")
        self.assertEqual(yoda.send("/ban Hans soon"), [
            "ERR Invalid duration: soon (e.g. 30m, 2h, 7d, 1w or forever)"])
        self.assertEqual(yoda.send("/ban Hans"), ["ERR Usage: /ban USERNAME DURATION"])
        self.assertEqual(yoda.send("/ban leia forever"), [
            "OK leia is banned until the ban is lifted (/unban leia)."])
        self.assertEqual(yoda.send("/unban leia"), ["OK leia is no longer banned."])
        self.assertEqual(yoda.send("/unban leia"), ["ERR leia is not banned."])
        f.login("leia", "alderaan")

    def test_bans_survive_a_restart(self):
        f = fixture(self)
        yoda = f.login("Yoda", "wise@!man")
        yoda.send("/ban vader 1d")
        yoda.send("/ban leia forever")
        self.assertIn(("leia", math.inf), f.database.bans())  # in the database when acknowledged
        bans = Bans(f.clock, Ledger(f.database, f.dir, f.clock))  # what the next server reads
        bans.load()
        self.assertEqual(bans.names(), ["leia", "vader"])
        f.clock.advance(86401)
        self.assertEqual(bans.names(), ["leia"])
        f.clock.advance(0)  # the end of the turn: the ended ban is forgotten in the database too
        self.assertEqual(f.database.bans(), [("leia", math.inf)])

    def test_an_older_servers_bans_file_is_moved_into_the_database(self):
        f = fixture(self, database=SQLiteDatabase(os.path.join(tempfile.mkdtemp(prefix="chatproto-bans-"),
                                                               "chatproto.db")).open())
        self.addCleanup(shutil.rmtree, os.path.dirname(f.database.path), True)
        with open(os.path.join(f.dir, "bans.txt"), "w") as out:
            out.write(f"vader forever\nbad line\nhan {int(f.clock.seconds()) + 60}\n")
        f.chat = ChatRealm(f.accounts, Ledger(f.database, f.dir, f.clock), f.clock, 3, admins=["Yoda"])
        f.chat.start()
        f.factory.chat = f.chat
        self.assertEqual(sorted(f.chat.bans.names()), ["han", "vader"])
        self.assertFalse(os.path.exists(os.path.join(f.dir, "bans.txt")))
        self.assertIn("vader forever", f.read("bans.txt.imported"))
        self.assertEqual([name for name, _until in f.database.bans()], ["han", "vader"])
        yoda = f.login("Yoda", "wise@!man")
        self.assertEqual(yoda.send("/unban vader"), ["OK vader is no longer banned."])
        self.assertEqual([name for name, _until in f.database.bans()], ["han"])

    def test_a_ban_the_storage_cannot_keep_is_refused_and_not_in_force(self):
        f = fixture(self)
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        f.database.commit = lambda ops: defer.fail(OSError("disk full"))
        self.assertEqual(yoda.send("/ban Hans 1h"), ["ERR Server error: the message could not be saved"])
        self.assertEqual(f.chat.bans.names(), [])
        self.assertEqual(hans.output(), [])
        self.flushLoggedErrors(OSError)

    def test_announce_reaches_everyone(self):
        f = fixture(self)
        yoda, hans, leia = (f.login("Yoda", "wise@!man"), f.login("Hans", "falcon*solo"),
                            f.login("leia", "alderaan"))
        self.assertEqual(yoda.send("/announce Maintenance at 22:00"), [
            "NOTICE Maintenance at 22:00", "OK Announcement sent to 3 active users."])
        self.assertEqual(hans.output(), ["NOTICE Maintenance at 22:00"])
        self.assertEqual(leia.output(), ["NOTICE Maintenance at 22:00"])
        self.assertEqual(yoda.send("/announce   "), ["ERR Usage: /announce MESSAGE"])


class ReloadTests(SynchronousTestCase):
    def test_added_account_logs_in_and_a_removed_one_is_logged_out(self):
        f = fixture(self)
        hans = f.login("Hans", "falcon*solo")
        path = f.accounts.path
        with open(path, "a") as out:
            out.write("rey scavenger\n")
        with open(path) as source:
            text = source.read().replace("Hans falcon*solo\n", "")
        with open(path, "w") as out:
            out.write(text)
        added, removed = f.chat.reload_accounts()
        self.assertEqual((added, removed), (["rey"], ["Hans"]))
        f.clock.advance(0)  # the end of the turn: output leaves
        self.assertEqual(hans.output(), ["NOTICE Your account has been removed"])
        self.assertTrue(hans.transport.disconnecting)
        f.login("rey", "scavenger")
        self.assertEqual(f.connect().send("LOGIN Hans falcon*solo 6001"), [
            "ERR Invalid Username. Please try again"])

    def test_an_unreadable_file_keeps_the_accounts(self):
        f = fixture(self)
        os.unlink(f.accounts.path)
        self.assertRaises(OSError, f.chat.reload_accounts)
        f.login("Hans", "falcon*solo")


class WatcherTests(SynchronousTestCase):
    def test_the_mtime_check_where_there_is_no_inotify(self):
        from chatproto.server.ops import POLL_SECONDS, SETTLE_SECONDS, AccountsWatcher

        f = fixture(self)
        hans = f.login("Hans", "falcon*solo")
        watcher = AccountsWatcher(f.chat, f.accounts.path, f.clock)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        f.clock.advance(POLL_SECONDS)
        self.assertEqual(hans.output(), [])  # nothing changed: nothing reloaded
        from chatproto.storage.credentials import delete_account

        delete_account(f.accounts.path, "Hans")
        f.clock.advance(POLL_SECONDS)
        f.clock.advance(SETTLE_SECONDS)
        self.assertEqual(hans.output(), ["NOTICE Your account has been removed"])
        self.assertNotIn("Hans", f.chat.account_names())


class CounterTests(SynchronousTestCase):
    def test_counts_and_exposition(self):
        f = fixture(self, attempts=1)

        class Service:
            chat, storage, factories = f.chat, f.storage, [f.factory]

        metrics = ChatMetrics(Service)
        yoda, hans = f.login("Yoda", "wise@!man"), f.login("Hans", "falcon*solo")
        yoda.send("/msgto Hans hi")
        yoda.send("/creategroup Jedi Hans")
        hans.send("/joingroup Jedi")
        yoda.send("/groupmsg Jedi hello")
        f.connect().send("LOGIN leia wrong 6001")
        f.connect().send("LOGIN leia wrong 6001")
        f.connect().send("LOGIN nobody x 6001")
        yoda.send("/p2pvideo Hans clip.mp4")
        yoda.send("/announce hi")
        from prometheus_client import generate_latest

        families = {m.name: m for m in text_string_to_metric_families(generate_latest(metrics.registry).decode())}

        def value(name, **labels):
            for family in families.values():
                for sample in family.samples:
                    if sample.name in (name, name + "_total") and sample.labels == labels:
                        return sample.value
            return None

        self.assertEqual(value("chatproto_messages", kind="private"), 1)
        self.assertEqual(value("chatproto_deliveries", kind="group"), 1)
        self.assertEqual(value("chatproto_logins", frontend="line"), 2)
        self.assertEqual(value("chatproto_login_failures", reason="blocked-now"), 1)
        self.assertEqual(value("chatproto_login_failures", reason="blocked"), 1)
        self.assertEqual(value("chatproto_login_failures", reason="no-such-account"), 1)
        self.assertEqual(value("chatproto_lockouts", reason="blocked-now"), 1)
        self.assertEqual(value("chatproto_file_offers", frontend="line"), 1)
        self.assertEqual(value("chatproto_admin_actions", action="announce"), 1)
        self.assertEqual(value("chatproto_active_users", frontend="line"), 2)
        self.assertEqual(value("chatproto_connections", frontend="line"), 5)
        self.assertGreaterEqual(value("chatproto_journal_batch_records_count"), 4)
        self.assertGreaterEqual(value("chatproto_database_commit_seconds_count"), 2)


class ConfigTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-config-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, text: str) -> str:
        path = os.path.join(self.dir, "chatproto.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, *argv, options=ServerOptions):
        o = options()
        o.parseOptions(list(argv))
        return o

    def test_precedence_flag_over_file_over_default(self):
        path = self.config(f'port = 9100\nattempts = 4\nmax-output = 4096\nrate_limit = 2.5\n'
                           f'data-dir = "{self.dir}"\nadmins = ["Yoda", "leia"]\nfsync = true\n')
        o = self.parse("--config", path, "--max-output", "8192")
        self.assertEqual((o["port"], o["attempts"], o["max-output"]), (9100, 4, 8192))
        self.assertEqual(o["limits"]["rate_limit"], 2.5)
        self.assertEqual(o["admins"], ["Yoda", "leia"])
        self.assertTrue(o["fsync"])
        self.assertEqual(o["database"], "sqlite:chatproto.db")  # the default
        o = self.parse("--config", path, "9200", "2")  # the positional arguments win too
        self.assertEqual((o["port"], o["attempts"]), (9200, 2))

    def test_print_config_says_where_each_value_came_from(self):
        path = self.config(f'port = 9100\nattempts = 4\ndata-dir = "{self.dir}"\n')
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertRaises(SystemExit, self.parse, "--config", path, "--print-config", "--fsync")
        lines = out.getvalue().splitlines()
        self.assertIn(f"port = 9100  # {path}", lines)
        self.assertIn("fsync = true  # command line", lines)
        self.assertIn('credentials = "credentials.txt"  # default', lines)
        self.assertIn("metrics-port = (not set)  # default", lines)

    def test_every_error_is_one_line_naming_the_file(self):
        cases = {
            "prot = 9000\n": "unknown setting 'prot' (did you mean port?)",
            "port = 9000\nattempts = 9\n": "attempts = 9: Invalid number of allowed failed consecutive",
            "port = 99999\nattempts = 3\n": "port = 99999: invalid port",
            "port = 0\nattempts = 3\nmax-output = 10\n": "max-output = 10: invalid size",
            "port = 0\nattempts = 3\nfsync = 1\n": "fsync = 1: expected true or false",
            "port = 0\nattempts = 3\ninterface = true\n": "interface = true: expected a string or a number",
            "port = 0\nattempts = 3\ndatabase = \"mysql:x\"\n": "database = \"mysql:x\": invalid --database",
            "port = 0\nattempts = 3\nrate-burst = -1\n": "rate-burst = -1: invalid --rate-burst",
            "port = 0\nattempts = 3\nadmins = [\"Darth Vader\"]\n": "invalid --admins",
            "port = 0\nattempts = 3\nmetrics-port = \"x\"\n": "metrics-port = \"x\": invalid port",
            "port = 0\nattempts = 3\ndata-dir = \"/no/such/dir\"\n": "no such directory: /no/such/dir",
            "port = [0\n": "not valid TOML",
            "[server]\nport = 0\n": "unknown setting 'server'",
        }
        for text, expected in cases.items():
            path = self.config(text)
            with self.assertRaises(ConfigError, msg=text) as caught:
                self.parse("--config", path, "--data-dir", self.dir) if "data-dir" not in text else \
                    self.parse("--config", path)
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"{path}: "), message)
            self.assertIn(expected, message)
            self.assertNotIn("\n", message)
        with self.assertRaises(ConfigError) as caught:
            self.parse("--config", os.path.join(self.dir, "missing.toml"))
        self.assertIn("cannot read the configuration file", str(caught.exception))

    def test_the_twistd_plugin_reads_the_same_file(self):
        credentials = os.path.join(self.dir, "credentials.txt")
        with open(credentials, "w") as f:
            f.write("Yoda x\n")
        path = self.config(f'listen = "tcp:9300:interface=127.0.0.1"\nattempts = 5\ncredentials = "{credentials}"\n'
                           f'data-dir = "{self.dir}"\nmetrics-port = 9301\n')
        o = self.parse("--config", path, "--attempts", "2", options=TwistdOptions)
        self.assertEqual((o["listen"], o["attempts"]), ("tcp:9300:interface=127.0.0.1", 2))
        self.assertEqual(o["metrics-listen"], "tcp:9301:interface=127.0.0.1")
        bad = self.config("attempts = 7\n")
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as caught:
            self.parse("--config", bad, options=TwistdOptions)
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertIn("attempts = 7", err.getvalue())

    def test_new_options_are_settings_without_editing_the_loader(self):
        class WithIrc(ServerOptions):
            optParameters = [["irc-port", None, None, "IRC"]]

        path = self.config(f'port = 1\nattempts = 1\nirc-port = 6667\ndata-dir = "{self.dir}"\n')
        self.assertEqual(self.parse("--config", path, options=WithIrc)["irc-port"], "6667")

    def test_usage_errors_stay_usage_errors(self):
        self.assertRaises(usage.UsageError, self.parse)
        self.assertRaises(usage.UsageError, self.parse, "9000")


class AdminCliTests(SynchronousTestCase):
    ORIGINAL = b"Hans falcon*solo\r\n\n# not an account line\nYoda wise@!man\nleia alderaan"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatproto-admin-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "credentials.txt")
        with open(self.path, "wb") as f:
            f.write(self.ORIGINAL)

    def run_cli(self, *argv, stdin=""):
        import sys

        out, err = io.StringIO(), io.StringIO()
        old = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    admin_cli.main(["--credentials", self.path, *argv])
                    code = 0
                except SystemExit as e:
                    code = e.code
        finally:
            sys.stdin = old
        return code, out.getvalue(), err.getvalue()

    def content(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def test_adduser_appends_a_bcrypt_line_and_keeps_every_other_byte(self):
        self.assertEqual(self.run_cli("adduser", "rey", stdin="jakku\njakku\n")[:2], (0, "Added rey.\n"))
        data = self.content()
        self.assertTrue(data.startswith(self.ORIGINAL + b"\nrey $2b$"))
        secret = data.rsplit(b" ", 1)[1].strip().decode()
        self.assertTrue(password_matches(secret, "jakku"))

    def test_passwd_and_deluser(self):
        self.assertEqual(self.run_cli("passwd", "Yoda", stdin="green\ngreen\n")[0], 0)
        data = self.content()
        before, after = self.ORIGINAL.split(b"Yoda wise@!man")
        self.assertTrue(data.startswith(before + b"Yoda $2b$") and data.endswith(after))
        self.assertEqual(self.run_cli("deluser", "Yoda")[0], 0)
        self.assertEqual(self.content(), before + after.lstrip(b"\n"))
        code, _, err = self.run_cli("deluser", "Yoda")
        self.assertEqual((code, err), (1, f"Error: No account 'Yoda' in {self.path}.\n"))

    def test_refusals_change_nothing(self):
        cases = [
            (("adduser", "Hans"), "a\na\n", "Hans has an account already"),
            (("adduser", "Darth Vader"), "a\na\n", "Invalid username"),
            (("adduser", "#jedi"), "a\na\n", "Invalid username"),
            (("adduser", "rey"), "one\ntwo\n", "The passwords do not match; nothing changed."),
            (("adduser", "rey"), "\n\n", "A password cannot be empty."),
            (("adduser", "rey"), "a b\na b\n", "A password cannot contain whitespace."),
            (("passwd", "nobody"), "a\na\n", "No account 'nobody'"),
        ]
        for argv, stdin, expected in cases:
            code, _, err = self.run_cli(*argv, stdin=stdin)
            self.assertEqual(code, 1, argv)
            self.assertIn(expected, err)
            self.assertEqual(len([line for line in err.splitlines() if line.startswith("Error")]), 1, err)
            self.assertEqual(self.content(), self.ORIGINAL)

    def test_list(self):
        self.run_cli("adduser", "rey", stdin="x\nx\n")
        code, out, err = self.run_cli("list")
        self.assertEqual(code, 0)
        self.assertEqual(out, "Hans plain-text\nYoda plain-text\nleia plain-text\nrey bcrypt\n")
        self.assertIn("expected 'USERNAME PASSWORD'", err)  # the comment line, reported

    def test_the_name_rule(self):
        for good in ("Yoda", "obi-wan", "r2.d2", "_x", "a" * 32):
            self.assertIsNone(username_problem(good), good)
        for bad in ("", "a" * 33, "-x", ".x", "a b", "a:b", "#c", "$*", "é"):
            self.assertIsNotNone(username_problem(bad), bad)


class RotationTests(SynchronousTestCase):
    def test_the_documented_rotation_keeps_seq_going(self):
        """docs/OPERATING.md: stop, move the log away, keep its last record as the new file's first."""
        from twisted.internet import task

        from chatproto.storage.ledger import Ledger
        from chatproto.storage.sqlite import SQLiteDatabase

        directory = tempfile.mkdtemp(prefix="chatproto-rotate-")
        self.addCleanup(shutil.rmtree, directory, True)
        clock = task.Clock()
        clock.advance(1654119004)

        def ledger():
            return Ledger(SQLiteDatabase(os.path.join(directory, "chatproto.db")).open(), directory, clock)

        storage = ledger()
        for text in ("one", "two", "three"):
            storage.append_private("Yoda", "Hans", "01 Jun 2022 21:30:04", clock.seconds(), text)
        clock.advance(0)
        storage.close()
        log = os.path.join(directory, "messagelog.txt")
        with open(log) as f:
            last = f.read().splitlines()[-1]
        os.rename(log, log + ".1")
        with open(log, "w") as f:
            f.write(last + "\n")
        storage = ledger()
        seqs = []
        storage.append_private("Yoda", "Hans", "01 Jun 2022 21:30:05", clock.seconds(), "four").addCallback(
            seqs.append)
        clock.advance(0)
        history = []
        storage.private_history("Yoda", "Hans", 10).addCallback(history.extend)
        storage.close()
        self.assertEqual(seqs, [4])
        with open(log) as f:
            self.assertEqual([line.split(";")[0] for line in f.read().splitlines()], ["3", "4"])
        self.assertEqual([m.text for m in history], ["one", "two", "three", "four"])


class AcrossFrontEndsTests(SynchronousTestCase):
    def test_a_line_administrator_reaches_irc_users(self):
        from .irc_support import IRCEnvironment, commands, find

        f = fixture(self)
        env = IRCEnvironment(f.chat, f.clock)
        yoda = f.login("Yoda", "wise@!man")
        hans, leia = env.register("Hans", "falcon*solo"), env.register("leia", "alderaan")
        yoda.send("/announce Maintenance at 22:00")
        notices = find(hans.lines(), "NOTICE")
        self.assertTrue(notices and notices[-1].params[-1].endswith("Maintenance at 22:00"), notices)
        self.assertEqual(yoda.send("/kick Hans enough"), ["OK Hans has been disconnected."])
        said = " ".join(" ".join(line.params) for line in hans.lines())
        self.assertIn("You have been disconnected by the administrator Yoda: enough", said)
        self.assertTrue(hans.closed)
        self.assertRegex(yoda.send("/ban leia 1d")[0], "^OK leia is banned until ")
        self.assertTrue(leia.closed)
        again = env.connect()
        lines = again.send("PASS alderaan", "NICK leia", "USER u 0 * :real name")
        self.assertNotIn("001", commands(lines))
        self.assertIsNone(f.chat.active_user("leia"))

    def test_irc_kill_and_notice_to_everyone_for_administrators(self):
        from .irc_support import IRCEnvironment, find, one

        f = fixture(self)
        env = IRCEnvironment(f.chat, f.clock)
        yoda, hans = env.register("Yoda", "wise@!man"), env.register("Hans", "falcon*solo")
        leia = f.login("leia", "alderaan")
        refused = one(hans.send("KILL leia :go"), "481")
        self.assertEqual(refused.params[-1], "You are not an administrator.")
        one(hans.send("NOTICE $* :hello all"), "481")
        self.assertEqual(leia.output(), [])
        yoda.send("NOTICE $* :Maintenance at 22:00")
        self.assertEqual(leia.output(), ["NOTICE Maintenance at 22:00"])
        self.assertIn("Maintenance at 22:00", [n.params[-1] for n in find(hans.lines(), "NOTICE")])
        one(yoda.send("KILL nobody"), "401")
        lines = yoda.send("KILL leia :flooding")
        self.assertIn("leia has been disconnected.", [n.params[-1] for n in find(lines, "NOTICE")])
        self.assertEqual(leia.output(), ["NOTICE You have been disconnected by the administrator Yoda: flooding"])
        self.assertIsNone(f.chat.active_user("leia"))


class RefusedAndDroppedTests(SynchronousTestCase):
    def test_counted(self):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from chatproto.frontends.line.protocol import ChatServerFactory

        f = fixture(self)
        seen = []
        f.chat.observers.append(lambda what, detail, n: seen.append((what, detail, n)))
        factory = ChatServerFactory(f.chat, 1024, max_connections=1)
        address = IPv4Address("TCP", "127.0.0.1", 40001)
        first = factory.buildProtocol(address)
        first.makeConnection(StringTransport())
        factory.buildProtocol(address).makeConnection(StringTransport())
        self.assertIn(("refused", "line", 1), seen)
        first.dataReceived(b"LOGIN Hans falcon*solo 6001\n")
        f.clock.advance(0)
        first.pauseProducing()  # the transport's buffer is full: nothing more is read
        for _ in range(20):
            first.write(b"x" * 100)
            f.clock.advance(0)
        self.assertIn(("dropped", "line", 1), seen)
