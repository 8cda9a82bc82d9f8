"""
The benchmark harness keeps working: C{bench/run_all.py --smoke} (a few
seconds) against the seed baseline and chatproto's own server must complete
and print every row of its table. No figures are checked: CI machines are
too noisy for that (see docs/PERFORMANCE.md for the real runs).
"""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ALL = os.path.join(REPO, "bench", "run_all.py")

ROWS = [
    "private msgs/s",
    "private p99 latency ms",
    "private server CPU us/msg",
    "fan-out 20: p99 ms",
    "fan-out 20: server CPU us/delivery",
    "idle RSS KiB/client @100",
    "logins/s",
    "logouts/s",
]


class BenchSmokeTests(SynchronousTestCase):
    def run_smoke(self, servers: str) -> str:
        result = subprocess.run(
            [sys.executable, RUN_ALL, "--smoke", "--servers", servers],
            cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_smoke_table(self):
        """Every row is printed with a figure for each server, and a ratio column."""
        out = self.run_smoke("ours,seed")
        lines = out.splitlines()
        header = next((line for line in lines if line.startswith("metric")), "")
        self.assertIn("ours", header)
        self.assertIn("seed-threaded", header)
        self.assertIn("ours vs seed-threaded", header)
        for row in ROWS:
            matching = [line for line in lines if line.startswith(row)]
            self.assertEqual(len(matching), 1, f"row {row!r} missing in:\n{out}")
            cells = matching[0][len(row):].split()
            self.assertGreaterEqual(len(cells), 2, matching[0])
            for cell in cells[:2]:
                float(cell.replace(",", ""))  # a number, not "error" or "-"
        self.assertNotIn("ERROR", out)

    def test_smoke_web_socket(self):
        """
        The web socket kind drives the browser protocol (POST /login, the
        WebSocket with the cookie, JSON sends): every message of the private
        and pipeline scenarios is delivered, none lost, no error.
        """
        result = subprocess.run(
            [sys.executable, RUN_ALL, "--smoke", "--servers", "ours-web",
             "--scenarios", "private,pipeline,logins"],
            cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
        )
        out = result.stdout
        self.assertEqual(result.returncode, 0, out + result.stderr)
        header = next((line for line in out.splitlines() if line.startswith("metric")), "")
        self.assertIn("ours-web", header)
        for row in ["private msgs/s", "private server CPU us/msg", "pipeline msgs/s",
                    "pipeline server CPU us/msg", "logins/s", "logouts/s"]:
            line = next((line for line in out.splitlines() if line.startswith(row)), None)
            self.assertIsNotNone(line, f"row {row!r} missing in:\n{out}")
            figure = float(line[len(row):].split()[0].replace(",", ""))
            if "CPU" in row:  # (a figure: the smoke pipeline's 800 messages may take less than the
                self.assertGreaterEqual(figure, 0, line)  # one clock tick /proc counts CPU in)
            else:
                self.assertGreater(figure, 0, line)
        lost = next(line for line in out.splitlines() if line.startswith("pipeline lost"))
        self.assertEqual(lost.split()[-1], "0", lost)
        self.assertNotIn("ERROR", out)
