"""
Secrets never in the operator's log: a real server on the run's PostgreSQL,
given a database URL with a password (the run's server trusts every local
connection, so any password connects).
"""

from twisted.trial.unittest import SynchronousTestCase

from .harness import ServerProcess
from .services import NeedsPostgres

PASSWORD = "Zq7-not-for-logs"


class DatabasePasswordTests(NeedsPostgres, SynchronousTestCase):
    def test_the_database_password_is_not_logged(self):
        url = self.postgres.fresh_database().replace("postgresql://postgres@",
                                                     f"postgresql://postgres:{PASSWORD}@", 1)
        self.assertIn(PASSWORD, url)
        server = ServerProcess(extra_args=("--database", url))
        self.addCleanup(server.cleanup)
        client = server.login("Yoda", "wise@!man")
        self.addCleanup(client.cleanup)
        client.command("/msgto Hans hello", "Hans is not active")
        server.stop()
        log = server.stdout.lines + server.stderr.lines
        loaded = [line for line in log if "Loaded 6 accounts; database" in line]
        self.assertTrue(loaded, log)
        self.assertIn("user=postgres", loaded[0])
        self.assertFalse([line for line in log if PASSWORD in line], log)
