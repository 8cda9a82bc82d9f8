"""
The cost per message of the metrics counters (issue 18: under 0.3 us).

    python bench/bench_metrics.py [--messages N] [--repeats R]

Two measurements, both in process on a task.Clock with the memory database:

1. the hook alone: the realm's loop over its observers for one message
   (C{observer("message", kind, deliveries)}) with the metrics observer
   attached, minus the same loop with no observer (what every message pays
   when metrics are on, against off);
2. the whole path: C{send_private} of N messages through the realm with
   the metrics attached and without, best of R runs each, the difference
   per message (noisier: it is a difference of two large numbers).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import task

from chatproto.core.realm import ChatRealm
from chatproto.server.metrics import ChatMetrics
from chatproto.storage.credentials import CredentialsFile
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase


class Session:
    frontend = "line"
    ip = "127.0.0.1"
    udp_port = 6000
    wants_presence = False

    def receive(self, event):
        pass

    def disconnect(self, notice):
        pass


class Service:
    def __init__(self, chat, storage):
        self.chat, self.storage, self.factories = chat, storage, []


def realm(directory):
    path = os.path.join(directory, "credentials.txt")
    with open(path, "w") as f:
        f.write("a x\nb y\n")
    clock = task.Clock()
    clock.advance(1654119004)
    storage = Ledger(MemoryDatabase().open(), directory, clock)
    chat = ChatRealm(CredentialsFile(path).load(), storage, clock, 3)
    chat.start()
    users = []
    for name, password in (("a", "x"), ("b", "y")):
        chat.login(name, password, Session()).addCallback(users.append)
    clock.advance(0)
    return chat, storage, clock, users


def hook_cost(n: int) -> float:
    directory = tempfile.mkdtemp()
    try:
        chat, storage, _clock, _users = realm(directory)

        def hook():  # what send_private runs per message, as in ChatRealm
            for observer in chat.observers:
                observer("message", "private", True)

        off = min(timeit.repeat(hook, number=n, repeat=7)) / n
        ChatMetrics(Service(chat, storage))
        on = min(timeit.repeat(hook, number=n, repeat=7)) / n
        return on - off, on, off
    finally:
        shutil.rmtree(directory, True)


def path_cost(n: int, repeats: int, metrics: bool) -> float:
    best = float("inf")
    for _ in range(repeats):
        directory = tempfile.mkdtemp()
        try:
            chat, storage, clock, (a, _b) = realm(directory)
            if metrics:
                ChatMetrics(Service(chat, storage))
            send = chat.send_private
            start = time.perf_counter()
            for i in range(n):
                send(a, "b", "hello")
                if i % 100 == 99:
                    clock.advance(0)  # one batch per 100 messages, as a busy reactor turn
            clock.advance(0)
            best = min(best, (time.perf_counter() - start) / n)
            chat.close()
        finally:
            shutil.rmtree(directory, True)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    extra, on, off = hook_cost(200000)
    print(f"hook per message: {extra * 1e6:.3f} us (call with the metrics observer {on * 1e6:.3f} us, "
          f"with none {off * 1e6:.3f} us)")
    without = with_metrics = float("inf")
    path_cost(args.messages, 1, False)  # warm up
    for _ in range(args.repeats):  # interleaved, best of each
        without = min(without, path_cost(args.messages, 1, False))
        with_metrics = min(with_metrics, path_cost(args.messages, 1, True))
    print(f"send_private per message: {without * 1e6:.2f} us without metrics, {with_metrics * 1e6:.2f} us "
          f"with; difference {(with_metrics - without) * 1e6:+.3f} us")
    return extra


if __name__ == "__main__":
    main()
