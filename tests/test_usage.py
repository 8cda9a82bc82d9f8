"""What a new user reads first: --version and --help of each program, as run from a shell."""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from .harness import child_env


def run(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=child_env(),
                          timeout=60, stdin=subprocess.DEVNULL)


class UsageTests(SynchronousTestCase):
    def test_admin_version(self):
        result = run("-m", "chatproto.server.admin", "--version")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertRegex(result.stdout, r"^chatproto-admin \d+\.\d+\S*\n$")

    def test_client_help_shows_both_reconnect_options(self):
        result = run("-m", "chatproto.client", "--help")
        self.assertEqual(result.returncode, 0)
        first = result.stdout.splitlines()[0]
        self.assertIn("[--no-reconnect | --reconnect]", first)
        self.assertIn("\n  --reconnect: ", result.stdout)

    def test_twistd_usage_shows_the_web_options(self):
        from chatproto.server.app import Options

        synopsis = str(Options()).splitlines()[0]
        for option in ("--web-port N", "--web-listen ENDPOINT", "--irc-port N", "--irc-listen ENDPOINT"):
            self.assertIn(option, synopsis)


class HelpIntoAClosedPipeTests(SynchronousTestCase):
    """`--help | head -1`: the reader goes away early; the program says nothing more, no traceback."""

    def test_client_and_server(self):
        import os

        for module in ("chatproto.client", "chatproto.server"):
            read_end, write_end = os.pipe()
            os.close(read_end)  # gone before anything is written: every write fails
            try:
                result = subprocess.run([sys.executable, "-m", module, "--help"], stdout=write_end,
                                        stderr=subprocess.PIPE, text=True, env=child_env(), timeout=60)
            finally:
                os.close(write_end)
            self.assertEqual((result.returncode, result.stderr), (0, ""), module)
