"""
The InspIRCd baseline's plumbing (issue 17), without InspIRCd: the tests never
install or start it (bench/run_all.py does, at benchmark time). Checked here:
the configuration it is given, the ready line that names the pid to measure,
and the ratios and goals bench/run_all.py reports against it.
"""

import importlib.util
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

import run_all  # noqa: E402
import servers  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "bench_inspircd", os.path.join(REPO, "bench", "baselines", "inspircd.py"))
inspircd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inspircd)


def result(private, fanout, idle, login):
    return {
        "private": {"cpu_us_per_msg": private},
        "fanout": {"cpu_us_per_delivery": fanout},
        "idle": {"levels": {"100": {"held": 100, "kib_per_client": idle}}},
        "logins": {"login_cpu_us_per_login": login},
    }


class InspircdBaselineTests(SynchronousTestCase):
    def test_config(self):
        """Flood control off, large buffers, no DNS or ident, on the given address and port."""
        directory = self.mktemp()
        path = inspircd.write_config(directory, "127.0.0.1", 40123)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for setting in ['<bind address="127.0.0.1" port="40123" type="clients">',
                        'threshold="4000000"', 'commandrate="1000000000"', 'fakelag="no"',
                        'resolvehostnames="no"', 'useident="no"', 'localmax="100000"',
                        'globalmax="100000"', 'limit="100000"', 'netbuffersize="65534"',
                        'softlimit="19000"', 'somaxconn="4096"']:
            self.assertIn(setting, text)
        self.assertTrue(os.path.exists(os.path.join(directory, "inspircd.motd")))

    def test_ready_line_names_the_measured_pid(self):
        """The bench measures InspIRCd's pid, not the wrapper's."""
        argv, _env = servers.command("inspircd", "/tmp/x", "/tmp/creds")
        self.assertTrue(argv[1].endswith(os.path.join("baselines", "inspircd.py")))
        self.assertEqual(servers.SERVERS["inspircd"], ("inspircd", "irc"))
        m = servers.ready_line("inspircd").search(
            b"noise\nServer listening on 127.0.0.1:40123 (inspircd pid 4242)\n")
        self.assertEqual(m.groups(), (b"127.0.0.1", b"40123", b"4242"))
        # An incomplete line is not ready yet.
        self.assertIsNone(servers.ready_line("inspircd").search(
            b"Server listening on 127.0.0.1:40123 (inspircd pid 42"))
        self.assertEqual(servers.ready_line("ours").groups, 2)

    def test_ratios_and_goals(self):
        """Both front ends get a ratio column against InspIRCd and the issue-17 goals."""
        results = {"ours": result(6.0, 11.0, 1.0, 200.0),
                   "ours-irc": result(3.0, 10.0, 2.0, 50.0),
                   "inspircd": result(2.0, 10.0, 2.0, 100.0)}
        profile = {"fanout": {"members": 1000}, "idle": {"levels": [100]}}
        table = run_all.build_table(results, profile, ["ours", "ours-irc", "inspircd"])
        self.assertEqual(table[0][-2:], ["ours vs inspircd", "ours-irc vs inspircd"])
        row = next(r for r in table if r[0] == "private server CPU us/msg")
        self.assertEqual(row[-2:], ["0.33x", "0.67x"])
        goals = {text: (value, met) for text, value, met in
                 run_all.goals_inspircd(results, profile)}
        self.assertEqual(goals["ours: server CPU per private message <= 1.5x InspIRCd's"],
                         ("3.00x", False))
        self.assertEqual(goals["ours-irc: server CPU per private message <= 1.5x InspIRCd's"],
                         ("1.50x", True))
        self.assertEqual(
            goals["ours: server CPU per fan-out delivery (1000) <= 1.1x InspIRCd's"],
            ("1.10x", True))
        self.assertEqual(goals["ours-irc: idle RSS per client @100 <= 0.8x InspIRCd's"],
                         ("1.00x", False))
        self.assertEqual(goals["ours-irc: server CPU per login <= 1.0x InspIRCd's"],
                         ("0.50x", True))

    def test_not_a_default_server(self):
        """CI runs the default servers and needs no InspIRCd."""
        self.assertNotIn("inspircd", run_all.DEFAULT_SERVERS.split(","))
        self.assertIn("inspircd", run_all.ORDER)
        self.assertIn("inspircd", run_all.BASELINES)
