"""
EXPERIMENT, benchmark only: the least CPU a stored private message can cost
through Python's sqlite3, whatever the schema around it (docs/PERFORMANCE.md,
"Where the floor is"). 200,000 rows of the benchmark's messages between 50
pairs, committed in batches (C{--batch}), CPU time per row, for:

- C{1 column} ... C{9 columns}: a rowid table in memory, the row's first N
  values of a private message (the cost of binding and inserting alone);
- C{message row, memory}: chatproto's messages table (WITHOUT ROWID, primary
  key (log, seq)) in memory, no index;
- C{message row, WAL file}: the same in a WAL file, synchronous = NORMAL,
  as the server opens it;
- C{+ conversation index}: and its index (peers, time, seq).

    python bench/experiments/sqlite_floor.py [--batch 2000]
"""

import argparse
import os
import shutil
import sqlite3
import tempfile
import time

PAIRS = 50
MESSAGES = 200_000
TABLE = ("CREATE TABLE messages (log TEXT NOT NULL, seq INTEGER NOT NULL, timestamp TEXT NOT NULL, "
         "time REAL NOT NULL, sender TEXT NOT NULL, recipient TEXT, peers TEXT, text TEXT NOT NULL, "
         "search_id INTEGER, PRIMARY KEY (log, seq)) WITHOUT ROWID")
INDEX = "CREATE INDEX messages_by_peers_time ON messages (peers, time, seq) WHERE peers IS NOT NULL"


def rows():
    for i in range(MESSAGES):
        sender, recipient = f"user{2 * (i % PAIRS) + 1:05d}", f"user{2 * (i % PAIRS) + 2:05d}"
        yield ("", i + 1, "01 Jun 2022 21:30:04", 1.7e9 + i * 1e-4, sender, recipient,
               f"{sender}\n{recipient}", f"hello from the benchmark t{i} k0", None)


def timed(db, insert, data, batch) -> float:
    started = time.process_time()
    for at in range(0, len(data), batch):
        db.execute("BEGIN")
        db.executemany(insert, data[at:at + batch])
        db.execute("COMMIT")
    return (time.process_time() - started) / len(data) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    data = list(rows())
    for n in (1, 3, 5, 9):
        db = sqlite3.connect(":memory:", isolation_level=None)
        db.execute(f"CREATE TABLE t (c0 {''.join(f', c{i}' for i in range(1, n))})")
        cost = timed(db, f"INSERT INTO t VALUES ({', '.join('?' * n)})", [row[:n] for row in data], args.batch)
        print(f"{n} column{'s' if n > 1 else ''}, rowid table, memory: {cost:.2f} us a row")
        db.close()
    insert = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    directory = tempfile.mkdtemp(prefix="chatproto-floor-")
    try:
        for label, path, index in (("message row, memory", ":memory:", False),
                                   ("message row, WAL file", "a.db", False),
                                   ("  + conversation index, WAL file", "b.db", True)):
            db = sqlite3.connect(path if path == ":memory:" else os.path.join(directory, path),
                                 isolation_level=None)
            if path != ":memory:":
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute(TABLE)
            if index:
                db.execute(INDEX)
            print(f"{label}: {timed(db, insert, data, args.batch):.2f} us a row")
            db.close()
    finally:
        shutil.rmtree(directory, True)
    print(f"(batches of {args.batch:,}; CPU time of this process)")


if __name__ == "__main__":
    main()
