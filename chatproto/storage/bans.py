"""
C{bans.txt} in the data directory: one ban a line, C{USERNAME UNTIL} (UNTIL
the epoch second the ban ends, or C{forever}), rewritten atomically at every
change. A malformed line is reported and skipped.
"""

import math
import os

from twisted.logger import Logger

from .textlogs import write_file_atomically

log = Logger()

BANS_FILE = "bans.txt"


class BanFile:
    """A L{chatproto.core.bans.Bans} store."""

    def __init__(self, data_dir: str):
        self.path = os.path.join(data_dir, BANS_FILE)

    def load(self) -> dict:
        bans: dict[str, float] = {}
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return bans
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.split(" ")
            try:
                if len(fields) != 2:
                    raise ValueError(line)
                until = math.inf if fields[1] == "forever" else float(int(fields[1]))
            except ValueError:
                log.warn("{path}:{lineno}: expected 'USERNAME UNTIL'; line skipped", path=self.path,
                         lineno=lineno)
                continue
            bans[fields[0]] = until
        return bans

    def save(self, bans: dict) -> None:
        text = "".join(f"{name} {'forever' if until == math.inf else math.ceil(until)}\n"
                       for name, until in sorted(bans.items()))
        write_file_atomically(self.path, [text.encode("utf-8", "surrogateescape")])
