"""
What SQLite's search index costs a stored message, in process (docs/PERFORMANCE.md,
"Search, third round"): the batch path (L{SQLiteDatabase.commit_now}) of private
messages between 50 pairs (C{--pairs}), in batches of 64, the index included (every 5,000
waiting messages and at the close), CPU time per message.

    python bench/experiments/index_cost.py                      # the benchmark's text
    python bench/experiments/index_cost.py --text zipf          # 4-14 words of a 20,000-word vocabulary
    python bench/experiments/index_cost.py --noindex            # no message searchable
    python bench/experiments/index_cost.py --marks 100          # a read marker after every 100 messages
    python bench/experiments/index_cost.py --tree /tmp/before   # another checkout's chatproto
    python bench/experiments/index_cost.py --batch 2000 --batch 600 --tree . --tree /tmp/before --rounds 3
        # before and after in one run: each tree and batch in a fresh process, in turn, each round
        # (the deep pipeline's group commit gives batches of about 2,000, the windowed load 600-900)

CPU time on a shared machine varies by tens of percent from one run to the next;
instructions do not: run it under C{valgrind --tool=callgrind --callgrind-out-file=/dev/null}
with C{--messages 20000} and again with C{--messages 1}, and divide the difference of the
"Collected" counts by 20,000.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
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
    parser.add_argument("--batch", type=int, action="append", help="messages a commit (again: each in turn); 64")
    parser.add_argument("--pairs", type=int, default=50, help="conversations (each message's pair: its number modulo)")
    parser.add_argument("--text", choices=("bench", "zipf"), default="bench")
    parser.add_argument("--noindex", action="store_true", help="no message searchable (as ours-noindex)")
    parser.add_argument("--marks", type=int, default=0,
                        help="a read marker after every N messages (the same turn's other changes share its batch)")
    parser.add_argument("--tree", action="append", help="the checkout whose chatproto runs (again: each in turn)")
    parser.add_argument("--rounds", type=int, default=1, help="with several trees or batches: runs of each")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees, batches = args.tree or [here], args.batch or [64]
    if len(trees) > 1 or len(batches) > 1 or args.rounds > 1:
        compare(args, trees, batches)
        return
    args.batch = batches[0]
    sys.path.insert(0, trees[0])
    from chatproto.storage import sqlite

    if args.noindex:
        sqlite.searchable = lambda log, recipient, text: False
    ops = [("msg", "", i + 1, TIMESTAMP, 1e9 + i * 1e-3, f"sender{i % args.pairs}", f"receiver{i % args.pairs}", text)
           for i, text in enumerate(texts(args.text, args.messages))]
    messages = len(ops)
    if args.marks:
        ops = [op for i, message in enumerate(ops) for op in (
            (message, ("mark", message[6], message[5], message[2])) if i % args.marks == args.marks - 1 else (message,))]
    directory = tempfile.mkdtemp(prefix="chatproto-index-cost-")
    try:
        db = sqlite.SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()
        started = time.process_time()
        for at in range(0, len(ops), args.batch):
            db.commit_now(ops[at:at + args.batch])
        db._close()
        print(f"{(time.process_time() - started) / messages * 1e6:.2f} us a message (CPU), "
              f"{os.path.getsize(os.path.join(directory, 'chatproto.db')) / messages:.0f} bytes a message on disk")
    finally:
        shutil.rmtree(directory, True)


def compare(args, trees, batches) -> None:
    """Each tree and batch size in a process of its own, in turn, C{args.rounds} times; the median."""
    passed = [a for a in sys.argv[1:]]
    for option in ("--tree", "--batch", "--rounds"):  # the rest is passed on as given
        while option in passed:
            at = passed.index(option)
            del passed[at:at + 2]
    results: dict = {}
    for _ in range(args.rounds):
        for batch in batches:
            for tree in trees:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--tree", tree, "--batch", str(batch),
                                      *passed], check=True, capture_output=True, text=True).stdout
                results.setdefault((batch, tree), []).append(float(out.split()[0]))
    for (batch, tree), runs in results.items():
        print(f"batch {batch:5d}  {tree}: {statistics.median(runs):.2f} us a message (CPU, median of "
              f"{' '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
