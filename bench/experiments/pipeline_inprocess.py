"""
EXPERIMENT, benchmark only: issue 25's deep pipeline in process, with no
sockets: the real line front end, realm, ledger, text logs and database
(SQLite in a temporary directory, committing on this thread; or C{memory}),
driven by a C{task.Clock}. Each of 50 senders gets its private messages in
chunks of 100 lines, turn after turn, as fast as its input is read; CPU time by
C{time.process_time} (other processes on the machine do not count), so it
measures the code's own cost per message (system calls excluded).

    python bench/experiments/pipeline_inprocess.py [sqlite|memory] [MESSAGES_PER_SENDER]
    ... --profile          # cProfile instead of the timing
    ... --irc              # over the IRC front end (PASS/NICK/USER, PRIVMSG)

Run it from the root of the tree to measure (this tree's chatproto is
imported), e.g. a checkout of the commit before for a side by side comparison.
"""

import gc
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatproto.core.realm import ChatRealm
from chatproto.frontends.line.protocol import ChatServerFactory
from chatproto.server.collector import tune_for_serving
from chatproto.storage.credentials import CredentialsFile
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase
from chatproto.storage.sqlite import SQLiteDatabase

PAIRS = 50
CHUNK = int(os.environ.get("CHUNK", "100"))  # lines per read (CHUNK=1: a client that waits for each answer)


class Sink(StringTransport):
    """Counts what is written, keeps nothing."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.written = 0

    def write(self, data):
        self.written += data.count(b"\n")

    def writeSequence(self, seq):
        for data in seq:
            self.write(data)


def setup(kind: str, directory: str, irc: bool = False):
    path = os.path.join(directory, "credentials.txt")
    with open(path, "w") as f:
        f.writelines(f"user{i:05d} pw{i:05d}\n" for i in range(1, 2 * PAIRS + 1))
    clock = task.Clock()
    clock.advance(1_700_000_000)
    database = (MemoryDatabase() if kind == "memory"
                else SQLiteDatabase(os.path.join(directory, "chat.db")).open())
    chat = ChatRealm(CredentialsFile(path).load(), Ledger(database, directory, clock), clock, 3)
    chat.start()
    if irc:
        from chatproto.frontends.irc import IRCFactory

        factory = IRCFactory(chat, clock=clock, max_output=1 << 30)
    else:
        factory = ChatServerFactory(chat, 1 << 30)
    return clock, chat, factory


def turn(clock):
    for _ in range(10):
        if not clock.getDelayedCalls() or all(c.getTime() > clock.seconds()
                                              for c in clock.getDelayedCalls()):
            return
        clock.advance(0)


def main(argv):
    kind = argv[0] if argv and argv[0] in ("sqlite", "memory") else "sqlite"
    numbers = [a for a in argv if a.isdigit()]
    messages = int(numbers[0]) if numbers else 2000
    directory = tempfile.mkdtemp(prefix="chatpipe-")
    try:
        irc = "--irc" in argv
        clock, chat, factory = setup(kind, directory, irc)
        connections = []
        for i in range(1, 2 * PAIRS + 1):
            protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 20000 + i))
            transport = Sink(peerAddress=IPv4Address("TCP", "127.0.0.1", 20000 + i))
            protocol.makeConnection(transport)
            if irc:
                protocol.dataReceived(f"PASS pw{i:05d}\r\nNICK user{i:05d}\r\nUSER u 0 * :u\r\n".encode())
            else:
                protocol.dataReceived(f"LOGIN user{i:05d} pw{i:05d} 9\n".encode())
            turn(clock)
            connections.append((protocol, transport))
        senders = connections[0::2]
        receivers = connections[1::2]
        line = ("PRIVMSG user{:05d} :hello from the benchmark t1 k0\r\n" if irc
                else "/msgto user{:05d} hello from the benchmark t1 k0\n")
        chunks = [(line.format(2 * k + 2) * CHUNK).encode() for k in range(PAIRS)]
        for _p, transport in connections:
            transport.written = 0  # (the welcome)
        tune_for_serving()
        gc.collect()

        def run():
            left = [messages] * PAIRS
            while any(left):
                for k, (protocol, _t) in enumerate(senders):
                    # The next chunk once the protocol has read (not paused on) the last.
                    if left[k] and not protocol.paused and not protocol._buffer[protocol._offset:]:
                        protocol.dataReceived(chunks[k])
                        left[k] -= CHUNK
                turn(clock)
            for _ in range(1000):
                turn(clock)
                if not clock.getDelayedCalls():
                    break
                clock.advance(0.01)

        started = time.process_time()
        if "--profile" in argv:
            import cProfile
            import pstats

            cProfile.runctx("run()", globals(), {"run": run}, "/tmp/pipeline.prof")
            pstats.Stats("/tmp/pipeline.prof").sort_stats("tottime").print_stats(25)
        else:
            run()
        cpu = time.process_time() - started
        delivered = sum(t.written for _p, t in receivers)
        acked = sum(t.written for _p, t in senders)  # (IRC: none; the line protocol: one a message)
        total = messages * PAIRS
        print(f"{kind}{' IRC' if irc else ''}: {total} messages, delivered {delivered}, acknowledged {acked}: "
              f"{cpu * 1e6 / total:.2f} us CPU per message")
        chat.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
