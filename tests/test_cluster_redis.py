"""
The bus's Redis scripts (chatproto.cluster.bus) against a real redis-server:
the session count of an account is kept atomically across nodes, and a dead
node's sessions stop counting as soon as it no longer listens.
"""

import json
import socket

from twisted.trial.unittest import SynchronousTestCase

from chatproto.cluster.bus import CLAIM, FORGET_NODE, RELEASE

from .services import NeedsRedis

PREFIX = "chatproto:9:"
KEYS = [PREFIX + "presence", None, PREFIX + "alive:", PREFIX + "users:", PREFIX + "node:"]


def command(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    """A minimal RESP client: pipelined commands, their replies in order."""

    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.socket.makefile("rb")

    def send(self, *args) -> None:
        self.socket.sendall(command(*args))

    def reply(self):
        line = self.file.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else self.file.read(int(rest) + 2)[:-2].decode()
        if kind == b"*":
            return None if rest == b"-1" else [self.reply() for _ in range(int(rest))]
        if kind == b"-":
            raise AssertionError(rest.decode())
        return rest.decode()

    def call(self, *args):
        self.send(*args)
        return self.reply()

    def close(self):
        self.file.close()
        self.socket.close()


def claim_args(node, sid, limit):
    keys = list(KEYS)
    keys[1] = PREFIX + "users:" + node
    entry = json.dumps([sid, "line", "127.0.0.1", 7000, "07 Dec 2026 18:00:00", 1765130400.0 + sid])
    return ("EVAL", CLAIM, len(keys), *keys, "Yoda", node, entry, limit)


class ScriptTests(NeedsRedis, SynchronousTestCase):
    def setUp(self):
        self.connections = []
        self.admin = self.connect()
        self.admin.call("FLUSHALL")

    def connect(self):
        connection = Connection(self.redis.port)
        self.connections.append(connection)
        self.addCleanup(connection.close)
        return connection

    def node(self, name):
        """A living node: its heartbeat set, and listening on its channel."""
        self.admin.call("SET", PREFIX + "alive:" + name, "1")
        listener = self.connect()
        self.assertEqual(listener.call("SUBSCRIBE", PREFIX + "node:" + name)[0], "subscribe")
        return listener

    def test_claims_racing_on_two_nodes_count_exactly_to_the_limit(self):
        self.node("A"), self.node("B")
        a, b = self.connect(), self.connect()
        for sid in range(1, 21):  # 20 logins per node, sent together, interleaved by Redis
            a.send(*claim_args("A", sid, 10))
            b.send(*claim_args("B", 100 + sid, 10))
        granted = sum(connection.reply()[0] for _ in range(20) for connection in (a, b))
        self.assertEqual(granted, 10)
        places = json.loads(self.admin.call("HGET", PREFIX + "presence", "Yoda"))
        self.assertEqual(sum(len(sessions) for sessions in places.values()), 10)
        # A logout frees one: the next login anywhere gets it.
        node = next(iter(places))
        sid = places[node][0][0]
        release = list(KEYS)
        release[1] = PREFIX + "users:" + node
        self.assertEqual(self.admin.call("EVAL", RELEASE, 5, *release, "Yoda", node, sid), 1)
        self.assertEqual(self.admin.call(*claim_args("B", 999, 10)), [1])
        self.assertEqual(self.admin.call(*claim_args("A", 998, 10)), [0])

    def test_a_node_that_stopped_listening_no_longer_counts(self):
        listener = self.node("A")
        self.node("B")
        self.assertEqual(self.admin.call(*claim_args("A", 1, 1)), [1])
        self.assertEqual(self.admin.call(*claim_args("B", 2, 1)), [0])  # one login per account
        listener.close()  # node A killed: Redis drops its subscription (its heartbeat still runs)
        for _ in range(10000):  # until Redis has read the close (no timer: it is asked)
            if not self.admin.call("PUBSUB", "NUMSUB", PREFIX + "node:A")[1]:
                break
        self.assertEqual(self.admin.call(*claim_args("B", 2, 1)), [1, "A"])  # granted; A is dead
        keys = list(KEYS)
        keys[1] = PREFIX + "users:A"
        self.assertEqual(self.admin.call("EVAL", FORGET_NODE, 5, *keys, "A", "if dead"), [])
        self.assertEqual(list(json.loads(self.admin.call("HGET", PREFIX + "presence", "Yoda"))), ["B"])
        keys[1] = PREFIX + "users:B"
        self.assertIsNone(self.admin.call("EVAL", FORGET_NODE, 5, *keys, "B", "if dead"))  # B lives
