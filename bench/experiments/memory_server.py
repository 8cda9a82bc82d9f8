"""
EXPERIMENT, benchmark only: chatproto's server under tracemalloc, to see what
an idle logged-in client costs in Python memory.

    python bench/experiments/memory_server.py PORT ATTEMPTS [server options]

SIGUSR1 writes a snapshot diff (against the moment the server became ready)
grouped by allocation line to C{$CHATPROTO_MEMDUMP} (default
C{memdump.txt} in the working directory). tracemalloc itself costs memory:
compare the shares, not the absolute RSS.
"""

import os
import signal
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

tracemalloc.start(4)
baseline = []


def dump(signum, frame):
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.compare_to(baseline[0], "lineno") if baseline else snapshot.statistics(
        "lineno")
    path = os.environ.get("CHATPROTO_MEMDUMP", "memdump.txt")
    total = sum(s.size_diff for s in stats) if baseline else sum(s.size for s in stats)
    with open(path, "w") as f:
        f.write(f"total python bytes since ready: {total}\n")
        for s in stats[:40]:
            f.write(f"{s.size_diff:>10} {s.count_diff:>7} {s.traceback}\n")


signal.signal(signal.SIGUSR1, dump)

if __name__ == "__main__":
    from chatproto import server

    def ready_and_mark(address, _original=server.ready_line):
        baseline.append(tracemalloc.take_snapshot())
        return _original(address)

    server.ready_line = ready_and_mark
    server.main()
