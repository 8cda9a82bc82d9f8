"""
EXPERIMENT, benchmark only: what storing a private conversation's run as one
SQLite row (not a row per message) would cost per message, beside today's row
per message (docs/PERFORMANCE.md, "Where the floor is"). 200,000 private
messages between 50 pairs, in batches (C{--batch}); each batch's messages of
one conversation become one row: (peers, first and last SEQ, first and last
time, the messages encoded), with an index on (peers, last time). CPU time per
message, the grouping and encoding included; the search index left out (it is
already written one document per conversation run).

    python bench/experiments/run_rows.py [--batch 2000]
"""

import argparse
import os
import shutil
import sqlite3
import tempfile
import time

from sqlite_floor import INDEX, MESSAGES, TABLE, rows


def open_db(path: str):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    data = list(rows())
    directory = tempfile.mkdtemp(prefix="chatproto-runs-")
    try:
        db = open_db(os.path.join(directory, "rows.db"))
        db.execute(TABLE)
        db.execute(INDEX)
        started = time.process_time()
        for at in range(0, len(data), args.batch):
            db.execute("BEGIN")
            db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", data[at:at + args.batch])
            db.execute("COMMIT")
        per_row = (time.process_time() - started) / MESSAGES * 1e6
        db.close()

        db = open_db(os.path.join(directory, "runs.db"))
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, peers TEXT NOT NULL, first_seq INTEGER NOT NULL, "
                   "last_seq INTEGER NOT NULL, first_time REAL NOT NULL, last_time REAL NOT NULL, body TEXT NOT NULL)")
        db.execute("CREATE INDEX runs_by_peers ON runs (peers, last_time, last_seq)")
        started = time.process_time()
        for at in range(0, len(data), args.batch):
            runs: dict = {}
            for row in data[at:at + args.batch]:
                run = runs.get(row[6])
                if run is None:
                    runs[row[6]] = [row]
                else:
                    run.append(row)
            records = []
            for peers, run in runs.items():
                # One line a message, as the text log's (SEQ, time, timestamp, sender, text; tabs/newlines
                # cannot occur in a stored text: single_line).
                body = "\n".join([f"{r[1]}\t{r[3]!r}\t{r[2]}\t{r[4]}\t{r[7]}" for r in run])
                records.append((peers, run[0][1], run[-1][1], run[0][3], run[-1][3], body))
            db.execute("BEGIN")
            db.executemany("INSERT INTO runs (peers, first_seq, last_seq, first_time, last_time, body) "
                           "VALUES (?, ?, ?, ?, ?, ?)", records)
            db.execute("COMMIT")
        per_run = (time.process_time() - started) / MESSAGES * 1e6
        db.close()
    finally:
        shutil.rmtree(directory, True)
    print(f"batches of {args.batch:,}: a row per message {per_row:.2f} us a message; "
          f"a row per conversation run {per_run:.2f} us a message")


if __name__ == "__main__":
    main()
