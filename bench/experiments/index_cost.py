"""
What SQLite's search index costs a stored message, in process (docs/PERFORMANCE.md,
"Search, third round"): the batch path (L{SQLiteDatabase.commit_now}) of private
messages between 50 pairs (C{--pairs}), in batches of 64, the index included (every 5,000
waiting messages and at the close), CPU time per message.

    python bench/experiments/index_cost.py                      # the benchmark's text
    python bench/experiments/index_cost.py --text zipf          # 4-14 words of a 20,000-word vocabulary
    python bench/experiments/index_cost.py --noindex            # no message searchable
    python bench/experiments/index_cost.py --tree /tmp/before   # another checkout's chatproto

CPU time on a shared machine varies by tens of percent from one run to the next;
instructions do not: run it under C{valgrind --tool=callgrind --callgrind-out-file=/dev/null}
with C{--messages 20000} and again with C{--messages 1}, and divide the difference of the
"Collected" counts by 20,000.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

TIMESTAMP = "01 Jun 2022 21:30:04"


def texts(kind: str, n: int) -> list[str]:
    if kind == "bench":  # what bench/loadgen.py sends
        return [f"t{i} k0 hello from the benchmark" for i in range(n)]
    rng = random.Random(5)
    vocabulary = ["".join(rng.choice("bcdfghjklmnprstvzaeiouéè") for _ in range(rng.randint(3, 9)))
                  for _ in range(20000)]
    weights, total = [], 0.0
    for rank in range(1, len(vocabulary) + 1):  # Zipf: word k about 1/k as often as the first
        total += 1.0 / rank
        weights.append(total)
    return [" ".join(rng.choices(vocabulary, cum_weights=weights, k=rng.randint(4, 14))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=50, help="conversations (each message's pair: its number modulo)")
    parser.add_argument("--text", choices=("bench", "zipf"), default="bench")
    parser.add_argument("--noindex", action="store_true", help="no message searchable (as ours-noindex)")
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    args = parser.parse_args()
    sys.path.insert(0, args.tree)
    from chatproto.storage import sqlite

    if args.noindex:
        sqlite.searchable = lambda log, recipient, text: False
    ops = [("msg", "", i + 1, TIMESTAMP, 1e9 + i * 1e-3, f"sender{i % args.pairs}", f"receiver{i % args.pairs}", text)
           for i, text in enumerate(texts(args.text, args.messages))]
    directory = tempfile.mkdtemp(prefix="chatproto-index-cost-")
    try:
        db = sqlite.SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()
        started = time.process_time()
        for at in range(0, len(ops), args.batch):
            db.commit_now(ops[at:at + args.batch])
        db._close()
        print(f"{(time.process_time() - started) / len(ops) * 1e6:.2f} us a message (CPU), "
              f"{os.path.getsize(os.path.join(directory, 'chatproto.db')) / len(ops):.0f} bytes a message on disk")
    finally:
        shutil.rmtree(directory, True)


if __name__ == "__main__":
    main()
