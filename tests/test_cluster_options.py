"""--cluster and --database postgresql:// on the command line."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatproto.server.options import parse_cluster, parse_database

from .harness import child_env


class OptionTests(SynchronousTestCase):
    def test_cluster_urls(self):
        self.assertEqual(parse_cluster("redis://127.0.0.1:6380/2"), ("127.0.0.1", 6380, 2))
        self.assertEqual(parse_cluster("redis://redis.local"), ("redis.local", 6379, 0))
        self.assertIsNone(parse_cluster(None))
        for bad in ("http://x", "redis://", "redis://h:port", "redis://h/x"):
            with self.assertRaises(usage.UsageError):
                parse_cluster(bad)

    def test_postgres_urls(self):
        url = "postgresql://chat:secret@127.0.0.1:5432/chat"
        self.assertEqual(parse_database(url), url)
        for bad in ("postgresql://", "postgresql://host", "postgresql://h:x/db"):
            with self.assertRaises(usage.UsageError):
                parse_database(bad)

    def test_cluster_needs_a_shared_database(self):
        result = subprocess.run(
            [sys.executable, "-m", "chatproto.server", "--cluster", "redis://127.0.0.1:1", "0", "3"],
            capture_output=True, text=True, env=child_env(), timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--cluster needs --database postgresql://", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_unreachable_postgres_is_one_line(self):
        directory = tempfile.mkdtemp(prefix="chatproto-options-")
        self.addCleanup(shutil.rmtree, directory, True)
        credentials = os.path.join(directory, "credentials.txt")
        with open(credentials, "w") as f:
            f.write("Yoda wise@!man\n")
        result = subprocess.run(
            [sys.executable, "-m", "chatproto.server", "--database", "postgresql://chat@127.0.0.1:1/chat",
             "--credentials", credentials, "--data-dir", directory, "0", "3"],
            capture_output=True, text=True, env=child_env(), timeout=30)
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"^Error: cannot open the database .*127\.0\.0\.1.*\n$")


class DemoTests(SynchronousTestCase):
    """C{python -m chatproto.cluster demo}: real Redis, PostgreSQL and node processes."""

    def setUp(self):
        from chatproto.cluster.local import postgres_bin, redis_bin

        if postgres_bin() is None or redis_bin() is None:
            raise self.skipTest("needs PostgreSQL and redis-server")

    def demo(self, *args):
        from .harness import OutputReader

        process = subprocess.Popen([sys.executable, "-m", "chatproto.cluster", "demo", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env())

        def stop():
            # As Ctrl-C: the demo stops its nodes, Redis and PostgreSQL (a kill would leave them).
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)
            process.stdout.close()

        self.addCleanup(stop)
        return process, OutputReader(process.stdout, "demo")

    def test_demo_starts_two_nodes_and_stops_cleanly(self):
        import re

        from chatproto.cluster.local import free_port

        from .harness import ClientProcess

        base = _two_free_ports()  # below the ephemeral range, where Redis and PostgreSQL get theirs
        process, out = self.demo("--nodes", "2", "--port", str(base))
        scratch = out.expect(re.compile(r"^Scratch directory: (\S+)"), timeout=60).group(1)
        out.expect(re.compile(r"^2 nodes are up"), timeout=60)
        # The hint is a command that works here: this interpreter, the node's port, any UDP port.
        hint = out.expect(re.compile(rf"node 2: (\S+) -m chatproto\.client 127\.0\.0\.1 {base + 1} "))
        self.assertEqual(os.path.realpath(hint.group(1)), os.path.realpath(sys.executable))
        # A node listens only once it has joined the cluster: its "joined" came before.
        self.assertTrue(any(re.search(r"\[node2\] .*Cluster: node \w+ joined", line) for line in out.lines))
        client = ClientProcess("127.0.0.1", base + 1, free_port())
        self.addCleanup(client.cleanup)
        client.login("Yoda", "wise@!man")
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(60), 0)
        self.assertFalse(os.path.exists(scratch))  # removed at the end

    def test_a_port_in_use_is_replaced_by_a_free_one(self):
        """A server already on the first node's port (as README's own): node 1 gets another port."""
        import re
        import socket

        from chatproto.cluster.local import free_port

        from .harness import ClientProcess

        base = _two_free_ports()
        squatter = socket.socket()
        self.addCleanup(squatter.close)
        squatter.bind(("0.0.0.0", base))  # as a server on all interfaces holds it
        squatter.listen()
        process, out = self.demo("--nodes", "2", "--port", str(base))
        out.expect(f"In use: port {base}; the nodes use ports {base + 1}, {base + 2}", timeout=60)
        out.expect(re.compile(r"^2 nodes are up"), timeout=60)
        out.expect(re.compile(rf"node 1: \S+ -m chatproto\.client 127\.0\.0\.1 {base + 1} "))
        out.expect(re.compile(rf"node 2: \S+ -m chatproto\.client 127\.0\.0\.1 {base + 2} "))
        scratch = out.lines[0].split(": ", 1)[1]
        client = ClientProcess("127.0.0.1", base + 2, free_port())
        self.addCleanup(client.cleanup)
        client.login("Yoda", "wise@!man")
        self.assertFalse(any("Error" in line for line in out.lines), out.lines)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(60), 0)
        self.assertFalse(os.path.exists(scratch))

    def test_a_node_that_cannot_start_is_named_with_its_own_error(self):
        import re

        base = _two_free_ports()
        missing = os.path.join(tempfile.mkdtemp(prefix="chatproto-demo-"), "no-such-accounts.txt")
        self.addCleanup(shutil.rmtree, os.path.dirname(missing), True)
        process, out = self.demo("--nodes", "2", "--port", str(base), "--credentials", missing)
        self.assertEqual(process.wait(120), 1)
        out.expect(f"Error: node 1 did not start (exit status 1): {missing}: No such file or directory",
                   timeout=30)
        text = "\n".join(out.lines)
        self.assertNotIn("nodes are up", text)
        self.assertNotIn("node 2", text)  # the demo stopped at the first node that failed
        self.assertNotIn("in use?", text)  # no guess at a cause
        self.assertNotIn("Traceback", text)


def _two_free_ports() -> int:
    import random
    import socket

    while True:
        base = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
                return base
        except OSError:
            continue
