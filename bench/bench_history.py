"""
/history and /grouphistory of 500 messages in a database of 1,000,000 (issue 11).

    python bench/bench_history.py [--messages N] [--runs R]

Fills a fresh SQLite database (the server's schema, through SQLiteDatabase)
with N messages: half private among 100 users, half in 20 groups; then times
the reads the server runs for `/history U 500` and `/grouphistory G 500`,
on the database worker's own thread as the server does, and prints the
median and worst of R runs each, with the whole command through the realm.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chatproto.storage.sqlite import SQLiteDatabase

T = "01 Jun 2022 21:30:04"


def fill(database: SQLiteDatabase, n: int) -> None:
    batch, seqs = [], {"": 0}
    for i in range(n):
        if i % 2 == 0:
            a, b = f"user{i % 100:03d}", f"user{(i // 7) % 100:03d}"
            if a == b:
                b = "user999"
            if i % 20 == 0:  # one busy conversation among the others
                a, b = ("user001", "user002") if i % 40 else ("user002", "user001")
            seqs[""] += 1
            batch.append(("msg", "", seqs[""], T, float(i), a, b, f"private message number {i}"))
        else:
            group = f"Group{i % 20}"
            seqs[group] = seqs.get(group, 0) + 1
            batch.append(("msg", group, seqs[group], T, float(i), f"user{i % 100:03d}", None,
                          f"group message number {i}"))
        if len(batch) == 50_000:
            database.commit_now(batch)
            batch = []
    if batch:
        database.commit_now(batch)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="chatproto-history-")
    try:
        database = SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()
        started = time.monotonic()
        fill(database, args.messages)
        print(f"filled {args.messages:,} messages in {time.monotonic() - started:.1f} s; "
              f"database {os.path.getsize(os.path.join(directory, 'chatproto.db')) / 2**20:.0f} MiB")
        for label, read in (
            ("/history user002 500 (as user001)", lambda: database._private_history("user001", "user002", 500, None)),
            ("the 500 before #400000 (scrolling up)", lambda: database._private_history(
                "user001", "user002", 500, 400_000)),
            ("/grouphistory Group3 500", lambda: database._history("log", "Group3", 500, None)),
        ):
            times, rows = [], 0
            for _ in range(args.runs):
                started = time.perf_counter()
                rows = len(read())
                times.append((time.perf_counter() - started) * 1000)
            print(f"{label}: {rows} messages, median {statistics.median(times):.2f} ms, "
                  f"worst {max(times):.2f} ms ({args.runs} runs)")
        database._close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
