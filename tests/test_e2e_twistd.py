"""The twistd plugin, from a regular (non-editable) install."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from .harness import DEMO_CREDENTIALS, ClientProcess, OutputReader, child_env, free_udp_port


def plugin_installed() -> bool:
    return importlib.util.find_spec("twisted.plugins.chatproto_plugin") is not None


class TwistdPluginTests(SynchronousTestCase):
    def setUp(self):
        if not plugin_installed():
            self.skipTest("the chat plugin is installed by a regular `pip install .`")
        self.dir = tempfile.mkdtemp(prefix="chatproto-twistd-")

    def twistd(self, *args, **kwargs):
        return subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args],
            cwd=self.dir, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
        )

    def test_help_lists_chat(self):
        process = self.twistd("--help")
        out, _ = process.communicate(timeout=30)
        self.assertRegex(out.decode(), r"(?m)^\s+chat\s+chatproto")

    def test_serves_clients(self):
        process = self.twistd(
            "-n", "--pidfile=", "chat", "--listen", "tcp:0:interface=127.0.0.1", "--attempts", "2",
            "--credentials", DEMO_CREDENTIALS, "--data-dir", self.dir,
        )
        output = OutputReader(process.stdout, "twistd")
        try:
            match = output.expect(re.compile(r"Server listening on 127\.0\.0\.1:(\d+)"), timeout=30)
            client = ClientProcess("127.0.0.1", int(match.group(1)), free_udp_port())
            self.addCleanup(client.cleanup)
            client.login("Yoda", "wise@!man")
            client.command("/activeuser", "no other active user")
            with open(os.path.join(self.dir, "userlog.txt")) as f:
                self.assertIn("; Yoda; 127.0.0.1; ", f.read())
            process.send_signal(signal.SIGTERM)
            client.expect("Server shutting down")
            self.assertEqual(client.wait(), 1)
            # twistd ends with the signal that stopped it, after a clean shutdown.
            self.assertIn(process.wait(30), (0, -signal.SIGTERM))
            self.assertIn("Main loop terminated.", "\n".join(output.rest(5)))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()

    def test_bad_attempts(self):
        process = self.twistd("-n", "chat", "--attempts", "9", "--credentials", DEMO_CREDENTIALS)
        out, _ = process.communicate(timeout=30)
        self.assertNotEqual(process.returncode, 0)
        self.assertIn("Invalid number of allowed failed consecutive attempts: 9.", out.decode())
