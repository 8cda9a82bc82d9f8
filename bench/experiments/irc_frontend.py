"""
EXPERIMENT, benchmark only: the IRC front end's own cost, in process, with no
sockets (a transport that drops what is written), CPU time by
C{time.process_time} (another process on the machine does not count).

    python bench/experiments/irc_frontend.py login [N]     # PASS/NICK/USER over the real realm
    python bench/experiments/irc_frontend.py private [N]   # PRIVMSG over a stub core
    python bench/experiments/irc_frontend.py fanout [N]    # one group line to N sessions
    python bench/experiments/irc_frontend.py memory [N]    # tracemalloc per registered client
    ... --profile                                          # cProfile instead of the timing

C{private} and C{fanout} replace the core by a stub that only hands back a
Deferred and fires it at the end of the "turn" (what the ledger does), so
what is measured is the front end: reading and splitting lines, the PRIVMSG
short path, the errback, rendering, the output batch. C{login} and
C{memory} use the real realm over memory storage (its share included). Run
it from the root of the tree to measure (C{python -m}-style: this tree's
chatproto is imported), e.g. a checkout of the commit before for a side by
side comparison.
"""

import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatproto.core.events import GROUP, PRIVATE, Message
from chatproto.core.realm import ChatRealm
from chatproto.frontends.irc import IRCFactory
from chatproto.server.collector import tune_for_serving
from chatproto.storage.credentials import CredentialsFile
from chatproto.storage.ledger import Ledger
from chatproto.storage.memory import MemoryDatabase


class Sink(StringTransport):
    def write(self, data):
        pass


class StubCore:
    """send_private / send_group: a Deferred each, fired (and delivered) by L{flush}."""

    def __init__(self, sessions):
        self.sessions = sessions
        self.pending = []
        self.seq = 0

    def send_private(self, user, target, text, reply=None):
        # With a reply object (the front ends' way since issue 25) no Deferred is made.
        d = defer.Deferred() if reply is None else None
        self.pending.append((d or reply, user.name, target, text))
        return d

    def away_of(self, name):
        return None

    def flush(self):
        pending, self.pending = self.pending, []
        for d, sender, target, text in pending:
            self.seq += 1
            message = Message(PRIVATE, self.seq, "01 Jun 2022 21:30:04", 1654119004.0, sender, target, None, text)
            self.sessions[target].receive(message)
            if isinstance(d, defer.Deferred):
                d.callback(message)
            else:
                d.answered(message)


def settle(clock):
    for _ in range(1000):
        if not any(c.getTime() <= clock.seconds() for c in clock.getDelayedCalls()):
            return
        clock.advance(0)


def setup(n):
    directory = tempfile.mkdtemp(prefix="ircbench-")
    path = os.path.join(directory, "credentials.txt")
    with open(path, "w") as f:
        f.writelines(f"user{i:05d} pw{i:05d}\n" for i in range(1, n + 2))
    clock = task.Clock()
    clock.advance(1654119004)
    chat = ChatRealm(CredentialsFile(path).load(), Ledger(MemoryDatabase(), directory, clock), clock, 3)
    chat.start()
    factory = IRCFactory(chat, clock=clock)
    tune_for_serving()
    return clock, factory


def connect(factory, i):
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 10000 + i))
    protocol.makeConnection(Sink())
    return protocol


def register(protocol, i):
    protocol.dataReceived(f"PASS pw{i:05d}\r\nNICK user{i:05d}\r\nUSER u 0 * :bench\r\n".encode())


def measure(work, profile, repeat=3):
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        work()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return None
    best = None
    for _ in range(repeat):
        started = time.process_time()
        work()
        spent = time.process_time() - started
        best = spent if best is None else min(best, spent)
    return best


def main(argv):
    what = argv[1] if len(argv) > 1 else "private"
    numbers = [a for a in argv[2:] if a.isdigit()]
    n = int(numbers[0]) if numbers else 1000
    profile = "--profile" in argv
    clock, factory = setup(n)
    if what == "memory":
        import tracemalloc

        warm = [connect(factory, n + 1)]  # the first connection's one-off allocations
        register(warm[0], n + 1)
        settle(clock)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        protocols = [connect(factory, i) for i in range(1, n + 1)]
        for i, protocol in enumerate(protocols, 1):
            register(protocol, i)
        settle(clock)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"memory: {total / n:.0f} bytes of Python allocations per registered client "
              "(its transport a test double, the realm's share included)")
        for s in stats[:12]:
            print(f"  {s.size_diff / n:7.1f} B  {s.traceback[0]}")
        return 0
    protocols = [connect(factory, i) for i in range(1, n + 1)]
    if what == "login":
        def work():
            for i, protocol in enumerate(protocols, 1):
                register(protocol, i)
                if i % 64 == 0:
                    settle(clock)
            settle(clock)
        spent = measure(work, profile, repeat=1)
        assert all(p.registered for p in protocols)
        if spent:
            print(f"login: {spent / n * 1e6:.1f} us per login (the realm's share included)")
        return 0
    for i, protocol in enumerate(protocols, 1):
        register(protocol, i)
    settle(clock)
    if what == "private":
        sessions = {p.nick: p for p in protocols}
        core = StubCore(sessions)
        for protocol in protocols:
            protocol.chat = core
        rounds = 10
        reads = [b"".join(f"PRIVMSG user{(i % n) + 1:05d} :t{k} k0 hello from the benchmark\r\n".encode()
                          for k in range(32)) for i in range(1, n + 1)]

        def work():
            for _ in range(rounds):
                for protocol, data in zip(protocols, reads):
                    protocol.dataReceived(data)
                core.flush()
                factory.output.flush()
        spent = measure(work, profile)
        if spent:
            print(f"private: {spent / (n * rounds * 32) * 1e6:.3f} us per message in the front end "
                  "(the stub core's Deferred included)")
        return 0
    if what == "fanout":
        rounds = 200

        def work():
            for k in range(rounds):
                message = Message(GROUP, k, "01 Jun 2022 21:30:04", 1654119004.0, "user00001", None, "big",
                                  f"t1 k{k} fan-out")
                for protocol in protocols:
                    protocol.receive(message)
                factory.output.flush()
        spent = measure(work, profile)
        if spent:
            print(f"fanout: {spent / (n * rounds) * 1e6:.3f} us per delivery in the front end")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
