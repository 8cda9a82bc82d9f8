"""
The ergo baseline's plumbing (issue 25), without ergo: its sources are never
part of this repository, and the tests never build or start it. Checked here:
the reason it is skipped without Go or sources, the configuration derived
from a default.yaml of ergo's layout, and the ready line naming the pid.
"""

import importlib.util
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "bench", "baselines"))

import servers  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "bench_ergo", os.path.join(REPO, "bench", "baselines", "ergo.py"))
ergo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ergo)

# The parts of ergo's default.yaml the wrapper changes, in its layout (written for this test).
DEFAULT_YAML = """\
server:
    name: ergo.test
    listeners:
        # plaintext, loopback
        "127.0.0.1:6667": # comment
        "[::1]:6667":
        ":6697":
            tls:
                cert: fullchain.pem
                key: privkey.pem

    # sets the permissions for Unix listen sockets
    unix-bind-mode: 0777
    motd: ergo.motd
    max-sendq: 96k
    ip-limits:
        count: true
        max-concurrent-connections: 16
        throttle: true
        window: 10m
languages:
    enabled: true
    path: languages
fakelag:
    # whether to enforce fakelag
    enabled: true
    window: 1s
"""


class ErgoBaselineTests(SynchronousTestCase):
    def source(self, with_vendor=True) -> str:
        src = self.mktemp()
        os.makedirs(os.path.join(src, "vendor") if with_vendor else src)
        for name, text in (("ergo.go", "package main\n"), ("default.yaml", DEFAULT_YAML)):
            with open(os.path.join(src, name), "w", encoding="utf-8") as f:
                f.write(text)
        self.patch(os, "environ", dict(os.environ, ERGO_SRC=src))
        return src

    def test_missing_sources_are_named(self):
        self.patch(os, "environ", dict(os.environ, ERGO_SRC=self.mktemp()))
        self.assertIn("no ergo source tree", ergo.missing())
        self.assertIn("no ergo source tree", servers.available("ergo"))
        self.source(with_vendor=False)
        self.assertIn("no vendor/", ergo.missing())

    def test_missing_go_is_named(self):
        self.source()
        self.patch(ergo.shutil, "which", lambda name: None)
        self.assertIn("no go compiler", ergo.missing())

    def test_config(self):
        """One loopback listener, fakelag and IP limits off, a large sendq."""
        src = self.source()
        path = ergo.write_config(self.mktemp(), "127.0.0.1", 40123)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn('    listeners:\n        "127.0.0.1:40123":\n', text)
        for gone in ("6667", "6697", "tls:", "fullchain"):
            self.assertNotIn(gone, text)
        self.assertIn("unix-bind-mode: 0777", text)
        self.assertIn("fakelag:\n    # whether to enforce fakelag\n    enabled: false\n", text)
        self.assertIn("        count: false\n", text)
        self.assertIn("        throttle: false\n", text)
        self.assertIn("    max-sendq: 64M\n", text)
        self.assertIn(f"    motd: {os.path.join(src, 'ergo.motd')}\n", text)
        self.assertIn("languages:\n    enabled: false\n", text)

    def test_ready_line_names_the_measured_pid(self):
        m = servers.ready_line("ergo").search(b"Server listening on 127.0.0.1:6667 (ergo pid 4242)\n")
        self.assertEqual(m.groups(), (b"127.0.0.1", b"6667", b"4242"))
        self.assertEqual(servers.SERVERS["ergo"], ("ergo", "irc"))
