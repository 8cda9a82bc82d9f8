"""
C{bans.txt}, where servers before the database kept administrators' bans:
one ban a line, C{USERNAME UNTIL} (UNTIL the epoch second the ban ends, or
C{forever}). Bans are in the database now (L{IBanStore}); at start-up a
C{bans.txt} left by an older server is added to the database, then renamed
C{bans.txt.imported} so that it is read once. A malformed line is reported
and skipped.
"""

import math
import os

from twisted.logger import Logger

log = Logger()

BANS_FILE = "bans.txt"
IMPORTED_SUFFIX = ".imported"


def read_ban_file(path: str) -> dict:
    bans: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
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
            log.warn("{path}:{lineno}: expected 'USERNAME UNTIL'; line skipped", path=path, lineno=lineno)
            continue
        bans[fields[0]] = until
    return bans


def import_ban_file(data_dir: str, database) -> None:
    """Add the bans of an older server's C{bans.txt} to C{database} (start-up, synchronous)."""
    path = os.path.join(data_dir, BANS_FILE)
    if not getattr(database, "keeps_data", True) or not os.path.exists(path):
        return  # a database in memory would forget them: the file stays for a real one
    bans = read_ban_file(path)
    database.commit_now([("ban", username, until) for username, until in sorted(bans.items())])
    os.replace(path, path + IMPORTED_SUFFIX)
    log.info("{path}: {n} bans added to the database; the file is now {name}", path=path, n=len(bans),
             name=BANS_FILE + IMPORTED_SUFFIX)
