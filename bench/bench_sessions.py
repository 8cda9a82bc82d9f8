"""
What several sessions of one user cost a delivery (issue 24: a user with 4
sessions, a delivery at most 4 times one delivery).

    python bench/bench_sessions.py [--messages N] [--repeats R]

In process, on a task.Clock with the memory database: user C{b} is logged in
over the real line protocol (StringTransport) once, then 4 times; C{a} sends
N private messages to C{b} through the realm (stored, delivered, rendered,
written to each session's output at the end of the turn). Two figures, best
of R runs each:

1. the whole path per message (store, deliver, render, write);
2. the delivery alone: the realm's delivery of one stored message to every
   session of C{b}, with the line rendering and the output write.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

if not os.environ.get("PYTHONPATH"):  # else the tree it names (another commit, side by side)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import task  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from chatproto.core.realm import ChatRealm  # noqa: E402
from chatproto.frontends.line.protocol import ChatServerFactory  # noqa: E402
from chatproto.storage.credentials import CredentialsFile  # noqa: E402
from chatproto.storage.ledger import Ledger  # noqa: E402
from chatproto.storage.memory import MemoryDatabase  # noqa: E402


def setup(directory, sessions: int):
    path = os.path.join(directory, "credentials.txt")
    with open(path, "w") as f:
        f.write("a x\nb y\n")
    clock = task.Clock()
    clock.advance(1654119004)
    storage = Ledger(MemoryDatabase().open(), directory, clock)
    chat = ChatRealm(CredentialsFile(path).load(), storage, clock, 3)
    chat.start()
    factory = ChatServerFactory(chat)
    transports = []
    for port, (name, password) in enumerate([("a", "x")] + [("b", "y")] * sessions, 40000):
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        protocol.makeConnection(transport)
        protocol.dataReceived(f"LOGIN {name} {password} {port}\n".encode())
        clock.advance(0)
        transports.append((protocol, transport))
    a = transports[0][0].user
    b = chat.active_user("b")
    assert len(getattr(b, "sessions", [b])) == sessions  # (an older tree: one session only)
    return chat, clock, a, b, [t for _p, t in transports]


def whole_path(sessions: int, n: int) -> float:
    directory = tempfile.mkdtemp()
    try:
        chat, clock, a, _b, transports = setup(directory, sessions)
        started = time.process_time()
        for i in range(n):
            chat.send_private(a, "b", "hello there, how are you")
            if i % 64 == 63:
                clock.advance(0)  # the end of a turn: store, deliver, write
                for transport in transports:
                    transport.clear()
        clock.advance(0)
        return (time.process_time() - started) / n
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def delivery(sessions: int, n: int) -> float:
    directory = tempfile.mkdtemp()
    try:
        chat, clock, a, b, transports = setup(directory, sessions)
        messages = []
        chat.send_private(a, "b", "hello there, how are you").addCallback(messages.append)
        clock.advance(0)
        (message,) = messages
        started = time.process_time()
        for i in range(n):
            message.seq = i  # a new message each time as far as rendering caches go
            chat._deliver(b, type(message)(**{f: getattr(message, f) for f in message.__slots__}))
            if i % 64 == 63:
                clock.advance(0)
                for transport in transports:
                    transport.clear()
        clock.advance(0)
        return (time.process_time() - started) / n
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", action="store_true",
                        help="one session only (to run it side by side on a tree before sessions: "
                             "PYTHONPATH=TREE python bench/bench_sessions.py --one)")
    args = parser.parse_args(argv)
    if args.one:
        for name, measure in (("whole path per message", whole_path), ("delivery alone", delivery)):
            print(f"{name}: 1 session {min(measure(1, args.messages) for _ in range(args.repeats)) * 1e6:.2f} us")
        return 0
    for name, measure in (("whole path per message", whole_path), ("delivery alone", delivery)):
        one = min(measure(1, args.messages) for _ in range(args.repeats))
        four = min(measure(4, args.messages) for _ in range(args.repeats))
        print(f"{name}: 1 session {one * 1e6:.2f} us, 4 sessions {four * 1e6:.2f} us "
              f"({four / one:.2f}x one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
