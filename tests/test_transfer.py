"""
Tests for L{chatproto.transfer}: two endpoints joined by an in-memory network
that can lose, duplicate, reorder and corrupt datagrams, on a L{task.Clock}.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import FakeDatagramTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from chatproto import transfer
from chatproto.transfer import endpoint as endpoint_module
from chatproto.transfer import incoming as incoming_module
from chatproto.transfer import names
from chatproto.transfer import TransferEndpoint, TransferFailed
from chatproto.transfer.names import INDEX_NAME
from chatproto.transfer import wire
from chatproto.transfer.wire import Keys

ALICE = ("127.0.0.1", 5001)
BOB = ("127.0.0.1", 5002)
MALLORY = ("127.0.0.1", 6666)
SECRET = bytes(range(32))
SECRET_HEX = SECRET.hex()
_ids = iter(range(0x1000, 1 << 62))


def new_transfer():
    """A transfer id and a secret, as the server would hand out."""
    return next(_ids), random.Random(next(_ids)).randbytes(32)


class Presenter:
    """Builds a presenter's datagrams for one transfer, sealed with its keys (or a wrong secret)."""

    def __init__(self, tid, secret=SECRET):
        self.tid = tid
        self.keys = Keys(secret, tid, presenter=True)

    def announce(self, size, chunk_size=512, presenter="alice", basename="huge.bin"):
        presenter = presenter.encode("utf-8") if isinstance(presenter, str) else presenter
        basename = basename.encode("utf-8") if isinstance(basename, str) else basename
        return self.keys.seal(
            transfer.ANNOUNCE,
            transfer.ANNOUNCE_BODY.pack(size, chunk_size, len(presenter), len(basename)) + presenter + basename,
        )

    def data(self, chunk, seq, payload):
        message = bytearray(
            transfer.DATA_HEADER.pack(
                transfer.MAGIC, transfer.DATA, self.tid, self.keys.next_number(), chunk, seq, 0
            )
            + payload
            + bytes(transfer.TAG_SIZE)
        )
        length = self.keys.seal_into(memoryview(message), len(message) - transfer.TAG_SIZE)
        return bytes(message[:length])

    def fail(self, reason=b"bye"):
        return self.keys.seal(transfer.FAIL, reason)

    def hash(self, digest=bytes(32)):
        return self.keys.seal(transfer.HASH, digest)


class Listener:
    """Records what the client would be told."""

    def __init__(self):
        self.received = []
        self.failed = []
        self.progress = []
        self.offered = []
        self.held = []

    def transfer_received(self, presenter, basename, final_path):
        self.received.append((presenter, basename, final_path))

    def transfer_failed(self, direction, peer_name, basename, reason):
        self.failed.append((direction, peer_name, basename, reason))

    def transfer_progress(self, tid, direction, basename, done, total, rate):
        self.progress.append((tid, direction, basename, done, total, rate))

    def transfer_offered(self, tid, presenter, basename, size):
        self.offered.append((tid, presenter, basename, size))

    def transfer_held(self, tid, peer_name, basename):
        self.held.append((tid, peer_name, basename))


class Wire:
    """A datagram transport that hands what is written to the L{Network}."""

    def __init__(self, network, address):
        self.network = network
        self.address = address

    def write(self, datagram, addr):
        self.network.queue.append((self.address, addr, bytes(datagram)))


class Network:
    """
    Datagrams in flight between endpoints; C{tamper} decides the fate of each
    one (a list of datagrams to deliver instead: none, one, several, changed).
    """

    def __init__(self, clock):
        self.clock = clock
        self.endpoints = {}
        self.queue = []
        self.tamper = None
        self.shuffle = None  # a Random to reorder each batch with
        self.delivered = 0

    def attach(self, address, endpoint):
        self.endpoints[address] = endpoint
        endpoint.makeConnection(Wire(self, address))

    def deliver(self):
        batch, self.queue = self.queue, []
        if self.shuffle is not None:
            self.shuffle.shuffle(batch)
        for source, destination, datagram in batch:
            copies = [datagram]
            if self.tamper is not None:
                copies = self.tamper(source, destination, datagram)
            for copy in copies:
                endpoint = self.endpoints.get(destination)
                if endpoint is not None:
                    self.delivered += 1
                    endpoint.datagramReceived(copy, source)

    def run(self, until, limit=120.0):
        """Deliver and advance the clock until C{until()} or C{limit} seconds."""
        deadline = self.clock.seconds() + limit
        while not until():
            if self.queue:
                self.deliver()
                continue
            calls = self.clock.getDelayedCalls()
            if not calls:
                return
            when = min(call.getTime() for call in calls)
            if when > deadline:
                return
            self.clock.advance(max(0.0, when - self.clock.seconds()))


def temporary_directory(case):
    """A fresh directory removed after the test (not under the working directory)."""
    path = tempfile.mkdtemp(prefix="chatproto-transfer-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def kind(datagram):
    return datagram[2] if datagram[:2] == transfer.MAGIC else None


def chunk_index(datagram):
    return struct.unpack_from("!I", datagram, transfer.HEADER.size)[0]


class TransferTestsMixin:
    chunk_size = 1024
    file_hash = "blake3"  # the presenter's (the receivers check what it announces)
    hash_name = "BLAKE3"  # as the users' texts name it

    def setUp(self):
        self.clock = task.Clock()
        self.network = Network(self.clock)
        self.addCleanup(self.assertNoTimers)  # after every endpoint stopped
        self.root = FilePath(temporary_directory(self))
        self.outbox = self.root.child("alice")
        self.inbox = self.root.child("bob")
        self.outbox.makedirs()
        self.inbox.makedirs()
        self.alice_listener = Listener()
        self.bob_listener = Listener()
        self.alice = self.endpoint(self.outbox, self.alice_listener, ALICE)
        self.bob = self.endpoint(self.inbox, self.bob_listener, BOB)

    def endpoint(self, directory, listener, address, **kwargs):
        kwargs.setdefault("loss", 0.0)
        kwargs.setdefault("chunk_size", self.chunk_size)
        kwargs.setdefault("file_hash", self.file_hash)
        endpoint = TransferEndpoint(directory.path, listener, clock=self.clock, **kwargs)
        self.network.attach(address, endpoint)
        self.addCleanup(endpoint.stop)
        return endpoint

    def assertNoTimers(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def make_file(self, name, size, seed=1, directory=None):
        data = random.Random(seed).randbytes(size)
        path = (directory or self.outbox).child(name)
        path.setContent(data)
        return path.path, data

    def send(self, name="clip.mp4", size=50_000, seed=1, receiver="bob", peer=BOB, decision="accept",
             **kwargs):
        """
        Offer a transfer to the receiver (as the server would) and start it;
        return (deferred's outcome list, the file's bytes).
        """
        path, data = self.make_file(name, size, seed)
        tid, secret = new_transfer()
        if receiver == "bob":
            self.bob.expect(tid, secret, "alice", ALICE[0], name, decision=decision)
        outcome = []
        d = self.alice.send_file(path, "alice", peer, transfer_id=tid, secret=secret, **kwargs)
        d.addBoth(outcome.append)
        self.tid, self.secret = tid, secret
        return outcome, data

    def inbox_files(self):
        return sorted(child.basename() for child in self.inbox.children() if child.basename() != INDEX_NAME)

    def assertDelivered(self, outcome, data, name="clip.mp4"):
        self.assertEqual(outcome, [name])
        self.assertEqual(self.inbox.child("alice_" + name).getContent(), data)
        self.assertIn(("alice", name, self.inbox.child("alice_" + name).path), self.bob_listener.received)


class DeliveryTests(TransferTestsMixin, SynchronousTestCase):
    """Files arrive intact whatever the network does to the datagrams."""

    def test_inOrder(self):
        outcome, data = self.send(size=100_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.inbox_files(), ["alice_clip.mp4"])
        self.assertEqual(self.alice_listener.failed + self.bob_listener.failed, [])

    def test_lastChunkShort(self):
        outcome, data = self.send(size=10 * 1024 + 17)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)

    def test_emptyFile(self):
        outcome, _data = self.send(size=0)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, b"")

    def test_reordered(self):
        self.network.shuffle = random.Random(7)
        outcome, data = self.send(size=200_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)

    def test_duplicated(self):
        self.network.tamper = lambda source, destination, datagram: [datagram, datagram]
        outcome, data = self.send(size=100_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(
            self.bob_listener.received,
            [("alice", "clip.mp4", self.inbox.child("alice_clip.mp4").path)],
        )

    def test_lost(self):
        """A fifth of the datagrams lost both ways, announce and confirmation included."""
        rng = random.Random(3)
        self.network.tamper = lambda s, d, datagram: [] if rng.random() < 0.2 else [datagram]
        outcome, data = self.send(size=300_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)

    def test_lossyReorderedDuplicated(self):
        rng = random.Random(11)

        def tamper(source, destination, datagram):
            r = rng.random()
            return [] if r < 0.1 else [datagram, datagram] if r < 0.2 else [datagram]

        self.network.tamper = tamper
        self.network.shuffle = random.Random(5)
        outcome, data = self.send(size=300_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)

    def test_firstAndLastChunksLost(self):
        """The head and the tail of the file lost twice each are sent again."""
        losses = {0: 2, 9: 2}

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.DATA:
                index = chunk_index(datagram)
                if losses.get(index):
                    losses[index] -= 1
                    return []
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=10 * 1024)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(losses, {0: 0, 9: 0})

    def test_confirmationLost(self):
        """The acknowledgements and the first DONE are lost: the presenter probes."""
        dropped = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.ACK or (
                kind(datagram) == transfer.DONE and transfer.DONE not in dropped
            ):
                dropped.append(kind(datagram))
                return []
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=30 * 1024)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertIn(transfer.DONE, dropped)
        self.assertEqual(len(self.bob_listener.received), 1)

    def test_hashLost(self):
        """The hash comes after the chunks; lost three times, it is sent again."""
        lost = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.HASH and len(lost) < 3:
                lost.append(self.clock.seconds())
                return []
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=30 * 1024)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(len(lost), 3)

    def test_noFileBeforeHash(self):
        """Every chunk arrived but not the hash: nothing is stored yet."""
        held = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.HASH:
                held.append(datagram)
                return []
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=30 * 1024)
        self.network.run(lambda: len(held) >= 2)
        (incoming,) = self.bob._incoming.values()
        self.assertEqual(incoming.count, incoming.nchunks)
        self.assertEqual(outcome, [])
        self.assertEqual(len(self.inbox_files()), 1)
        self.assertTrue(self.inbox_files()[0].startswith(".alice_clip.mp4."))
        self.network.tamper = None
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)

    def test_emptyFileWaitsForHash(self):
        """Even an empty file is stored only once its hash came and matched."""
        kinds = []

        def tamper(source, destination, datagram):
            kinds.append(kind(datagram))
            return [datagram]

        self.network.tamper = tamper
        outcome, _data = self.send(size=0)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, b"")
        self.assertEqual(kinds, [transfer.ANNOUNCE, transfer.ACCEPT, transfer.HASH, transfer.DONE])

    def test_lossSimulation(self):
        """The endpoint's own loss option drops what it sends, and it recovers."""
        self.alice.loss = 0.1
        self.bob.loss = 0.1
        self.alice.rng = random.Random(1)
        self.bob.rng = random.Random(2)
        outcome, data = self.send(size=200_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertGreater(self.alice.dropped, 0)
        self.assertGreater(self.bob.dropped, 0)

    def test_replacesOlderFileItReceived(self):
        """A file this client received from the same presenter is replaced by a newer one."""
        outcome, _old = self.send(size=5000, seed=1)
        self.network.run(lambda: outcome)
        outcome, data = self.send(size=7000, seed=2)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.inbox_files(), ["alice_clip.mp4"])

    def test_keepsFileItDidNotReceive(self):
        """A file of that name this client did not receive from alice is kept: the new one is (2)."""
        self.inbox.child("alice_clip.mp4").setContent(b"mine")
        outcome, data = self.send(size=5000)
        self.network.run(lambda: outcome)
        self.assertEqual(outcome, ["clip.mp4"])
        self.assertEqual(self.inbox.child("alice_clip.mp4").getContent(), b"mine")
        self.assertEqual(self.inbox.child("alice_clip (2).mp4").getContent(), data)
        self.assertEqual(
            self.bob_listener.received, [("alice", "clip.mp4", self.inbox.child("alice_clip (2).mp4").path)]
        )
        # sent again: the copy it received is replaced, the other file still kept
        outcome, data = self.send(size=6000, seed=3)
        self.network.run(lambda: outcome)
        self.assertEqual(self.inbox.child("alice_clip.mp4").getContent(), b"mine")
        self.assertEqual(self.inbox.child("alice_clip (2).mp4").getContent(), data)
        self.assertEqual(self.inbox_files(), ["alice_clip (2).mp4", "alice_clip.mp4"])

    def test_keepsReceivedFileChangedSince(self):
        """A received file the user changed (or replaced) since is no longer replaced."""
        outcome, _old = self.send(size=5000, seed=1)
        self.network.run(lambda: outcome)
        self.inbox.child("alice_clip.mp4").setContent(b"edited by the user")
        outcome, data = self.send(size=5000, seed=2)
        self.network.run(lambda: outcome)
        self.assertEqual(self.inbox.child("alice_clip.mp4").getContent(), b"edited by the user")
        self.assertEqual(self.inbox.child("alice_clip (2).mp4").getContent(), data)

    def test_otherPresenterPrefixKept(self):
        """Presenter "my" sending notes.txt never overwrites the user's my_notes.txt."""
        self.inbox.child("my_notes.txt").setContent(b"my own notes")
        path, data = self.make_file("notes.txt", 3000)
        tid, secret = new_transfer()
        self.bob.expect(tid, secret, "my", ALICE[0], "notes.txt")
        outcome = []
        self.alice.send_file(path, "my", BOB, transfer_id=tid, secret=secret).addBoth(outcome.append)
        self.network.run(lambda: outcome)
        self.assertEqual(outcome, ["notes.txt"])
        self.assertEqual(self.inbox.child("my_notes.txt").getContent(), b"my own notes")
        self.assertEqual(self.inbox.child("my_notes (2).txt").getContent(), data)

    def test_concurrent(self):
        """Two files each way at once."""
        first, data1 = self.send("one.bin", 120_000, seed=1)
        second, data2 = self.send("two.bin", 80_000, seed=2)
        path, data3 = self.make_file("three.bin", 90_000, seed=3, directory=self.inbox)
        third = []
        tid, secret = new_transfer()
        self.alice.expect(tid, secret, "bob", BOB[0], "three.bin")
        self.bob.send_file(path, "bob", ALICE, transfer_id=tid, secret=secret).addBoth(third.append)
        self.network.run(lambda: first and second and third)
        self.assertEqual((first, second, third), (["one.bin"], ["two.bin"], ["three.bin"]))
        self.assertEqual(self.inbox.child("alice_one.bin").getContent(), data1)
        self.assertEqual(self.inbox.child("alice_two.bin").getContent(), data2)
        self.assertEqual(self.outbox.child("bob_three.bin").getContent(), data3)
        self.assertEqual(
            sorted(self.bob_listener.received),
            [
                ("alice", "one.bin", self.inbox.child("alice_one.bin").path),
                ("alice", "two.bin", self.inbox.child("alice_two.bin").path),
            ],
        )
        self.assertEqual(
            self.alice_listener.received,
            [("bob", "three.bin", self.outbox.child("bob_three.bin").path)],
        )

    def test_progress(self):
        """Progress is reported on both sides, at most four times a second."""
        rng = random.Random(3)

        def slow(source, destination, datagram):
            self.clock.advance(0.01)
            return [] if rng.random() < 0.05 else [datagram]

        self.network.tamper = slow
        outcome, data = self.send(size=200_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        for listener, direction in ((self.alice_listener, "send"), (self.bob_listener, "receive")):
            reports = [p for p in listener.progress if p[1] == direction]
            self.assertTrue(reports)
            for _tid, _, name, done, total, rate in reports:
                self.assertEqual((name, total), ("clip.mp4", 200_000))
                self.assertTrue(0 <= done <= total)
                self.assertGreaterEqual(rate, 0)
            self.assertLessEqual(len(reports), 4 * self.clock.seconds() + 1)


class SmallBatchDeliveryTests(DeliveryTests):
    """
    The same, with the receiver's worker thread handed 3 chunks at a time and
    at most 2 batches queued: many hand-overs, read-backs and waits for room.
    """

    def setUp(self):
        self.patch(incoming_module, "WORKER_BATCH", 3 * self.chunk_size)
        self.patch(incoming_module, "WORKER_QUEUE", 6 * self.chunk_size)
        super().setUp()

    def test_batching(self):
        outcome, data = self.send(size=100 * 1024)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        (incoming,) = [t for t in self.bob._incoming.values()]
        self.assertEqual(incoming.queued, 34)  # 100 chunks, 3 at a time
        self.assertEqual(incoming.done, 34)


class FailureTests(TransferTestsMixin, SynchronousTestCase):
    """Transfers that cannot complete leave no file behind and say why."""

    def assertNothingStored(self):
        self.assertEqual(self.inbox_files(), [])

    def test_corruptChunk(self):
        """A chunk changed in transit fails authentication: dropped, sent again, the file intact."""
        corrupted = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.DATA and chunk_index(datagram) == 3 and not corrupted:
                changed = bytearray(datagram)
                changed[-transfer.TAG_SIZE - 1] ^= 0xFF
                corrupted.append(True)
                return [bytes(changed)]
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.bob.forged, 1)
        self.assertEqual(self.bob_listener.failed, [])

    def test_authenticCorruptChunk(self):
        """A chunk that is authentic but wrong (a presenter's bug) fails the hash check on both sides."""
        corrupted = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.DATA and chunk_index(datagram) == 3 and not corrupted:
                changed = bytearray(datagram)
                changed[-transfer.TAG_SIZE - 1] ^= 0xFF
                (outgoing,) = self.alice._outgoing.values()
                outgoing.keys.seal_into(memoryview(changed), len(changed) - transfer.TAG_SIZE)
                corrupted.append(True)
                return [bytes(changed)]
            return [datagram]

        self.network.tamper = tamper
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertNothingStored()
        reason = f"the file was corrupted in transit ({self.hash_name} mismatch)"
        outcome[0].trap(TransferFailed)
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertEqual(self.alice_listener.failed, [("send", "127.0.0.1:5002", "clip.mp4", reason)])
        self.assertEqual(self.bob_listener.received, [])

    def test_wrongHash(self):
        """An authentic hash that does not match what arrived fails the transfer on both sides."""

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.HASH:
                (outgoing,) = self.alice._outgoing.values()
                digest = bytearray(datagram[transfer.HEADER.size : -transfer.TAG_SIZE])
                digest[-1] ^= 1
                return [outgoing.keys.seal(transfer.HASH, bytes(digest))]
            return [datagram]

        self.network.tamper = tamper
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertNothingStored()
        reason = f"the file was corrupted in transit ({self.hash_name} mismatch)"
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])

    def test_fileChangedBeforeResend(self):
        """
        The file changes after a chunk was first sent (and hashed) and before
        it is resent: the receiver's hash differs, nothing is stored.
        """
        path = []
        lost = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.DATA and chunk_index(datagram) == 2 and not lost:
                lost.append(True)
                with open(path[0], "r+b") as f:
                    f.seek(2 * 1024)
                    f.write(b"changed")
                return []
            return [datagram]

        self.network.tamper = tamper
        outcome, _data = self.send(size=20_000)
        path.append(self.outbox.child("clip.mp4").path)
        self.network.run(lambda: outcome)
        self.assertTrue(lost)
        self.assertNothingStored()
        self.assertEqual(outcome[0].value.reason, f"the file was corrupted in transit ({self.hash_name} mismatch)")

    def test_fileShrunk(self):
        """The file shrinks while it is being sent: the presenter says so."""
        outcome, _data = self.send(size=20_000)
        path = self.outbox.child("clip.mp4").path
        os.truncate(path, 5000)
        self.network.run(lambda: outcome)
        reason = "clip.mp4 changed while it was being sent"
        self.assertEqual(outcome[0].value.reason, reason)
        self.network.run(lambda: self.bob_listener.failed)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertNothingStored()

    def test_writeError(self):
        """The receiver's worker thread cannot write: both sides are told, nothing is left."""
        self.patch(incoming_module, "WORKER_BATCH", 2 * self.chunk_size)

        def pwritev(fd, buffers, offset):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(incoming_module.os, "pwritev", pwritev)
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        reason = "cannot write the file: No space left on device"
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertNothingStored()

    def test_receiverStalls(self):
        """The receiver goes silent: the presenter gives up after the idle timeout."""
        accepted = []

        def tamper(source, destination, datagram):
            if source == BOB and accepted:
                return []
            if kind(datagram) == transfer.ACCEPT:
                accepted.append(self.clock.seconds())
            return [datagram]

        self.network.tamper = tamper
        outcome, _data = self.send(size=100_000, peer_name="bob")
        self.network.run(lambda: outcome, limit=9.9)
        self.assertEqual(outcome, [])
        self.network.run(lambda: outcome)
        self.assertAlmostEqual(self.clock.seconds() - accepted[0], 10.0, places=6)
        reason = "no answer from the receiver for 10 seconds"
        outcome[0].trap(TransferFailed)
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.alice_listener.failed, [("send", "bob", "clip.mp4", reason)])
        # the presenter's notice reaches the receiver, who removes its temp file
        self.network.run(lambda: self.bob_listener.failed)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertNothingStored()

    def test_presenterStalls(self):
        """The presenter goes silent: the receiver gives up and removes its temp file."""
        sent = []

        def tamper(source, destination, datagram):
            if source == ALICE and kind(datagram) == transfer.DATA:
                sent.append(datagram)
                if len(sent) > 5:
                    return []
            return [datagram]

        self.network.tamper = tamper
        self.alice.idle_timeout = 1000  # the presenter outlives the receiver here
        outcome, _data = self.send(size=100_000)
        self.network.run(lambda: len(sent) > 5)
        last = self.clock.seconds()
        self.assertEqual(len(self.inbox_files()), 1)  # the temp file, hidden
        self.assertTrue(self.inbox_files()[0].startswith(".alice_clip.mp4."))
        self.network.run(lambda: self.bob_listener.failed, limit=20)
        self.assertAlmostEqual(self.clock.seconds() - last, 10.0, places=6)
        reason = "no data from alice for 10 seconds"
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertNothingStored()
        self.network.run(lambda: outcome)
        outcome[0].trap(TransferFailed)
        self.assertEqual(outcome[0].value.reason, reason)

    def test_noReceiver(self):
        """Nobody answers the announcement at all."""
        outcome, _data = self.send(size=1000, receiver=None, peer=("127.0.0.1", 9), peer_name="carol")
        self.network.run(lambda: outcome)
        self.assertEqual(self.clock.seconds(), 10.0)
        outcome[0].trap(TransferFailed)
        self.assertEqual(
            self.alice_listener.failed,
            [("send", "carol", "clip.mp4", "no answer from the receiver for 10 seconds")],
        )

    def test_cancel(self):
        """Cancelling the Deferred tells the receiver, who removes its temp file."""
        outcome, _data = self.send(size=100_000)
        self.network.run(lambda: self.inbox_files())
        d = next(iter(self.alice._outgoing.values())).deferred
        d.cancel()
        self.network.run(lambda: self.bob_listener.failed)
        outcome[0].trap(TransferFailed)
        reason = "the presenter cancelled the transfer"
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertNothingStored()

    def test_stopRemovesTempFiles(self):
        outcome, _data = self.send(size=100_000)
        self.network.run(lambda: self.inbox_files())
        self.bob.stop()
        self.assertNothingStored()
        self.network.run(lambda: outcome)
        outcome[0].trap(TransferFailed)
        self.assertEqual(outcome[0].value.reason, "the receiver stopped")

    def test_stopFailsOutgoing(self):
        outcome, _data = self.send(size=100_000)
        self.network.run(lambda: self.inbox_files())
        self.alice.stop()
        outcome[0].trap(TransferFailed)
        self.network.run(lambda: self.bob_listener.failed)
        self.assertEqual(
            self.bob_listener.failed, [("receive", "alice", "clip.mp4", "the presenter stopped")]
        )
        self.assertNothingStored()

    def test_directory(self):
        d = self.alice.send_file(self.outbox.path, "alice", BOB, transfer_id=1, secret=SECRET)
        failure = self.failureResultOf(d, TransferFailed)
        self.assertEqual(failure.value.reason, "File alice cannot be read: not a regular file")

    def test_missingFile(self):
        d = self.alice.send_file(self.outbox.child("nope").path, "alice", BOB, transfer_id=1, secret=SECRET)
        failure = self.failureResultOf(d, TransferFailed)
        self.assertIn("nope", failure.value.reason)


class SecurityTests(TransferTestsMixin, SynchronousTestCase):
    """
    Nobody but the presenter the server announced can write, only inside the
    directory, and only with the transfer's secret.
    """

    def sent_to(self, address):
        return [d for s, dest, d in self.network.queue if dest == address]

    def test_unsafeOffersRefused(self):
        """An offer (from the server) naming an unsafe presenter or file is refused at once."""
        names = [
            ("alice", ".."),
            ("alice", "."),
            ("alice", ""),
            ("alice", "x\x00y"),
            ("alice", "bell\x07"),
            ("alice", "x" * 250),
            ("../alice", "f"),
            ("al ice", "f"),
            ("", "f"),
            (".alice", "f"),
            ("a/b", "f"),
            ("a" * 65, "f"),
            ("é" * 33, "f"),
        ]
        for number, (presenter, basename) in enumerate(names):
            self.assertRaises(ValueError, self.bob.expect, number, SECRET, presenter, ALICE[0], basename)
        self.assertEqual(self.bob._offers, {})
        # the base name of what the presenter typed is used: a path cannot escape
        self.bob.expect(99, SECRET, "alice", ALICE[0], "../../etc/passwd")
        self.assertEqual(self.bob._offers[99].basename, "passwd")
        for bad in [("x", SECRET), (-1, SECRET), (1 << 64, SECRET), ("00" * 8, "ab"), (1, b"short")]:
            self.assertRaises(ValueError, self.bob.expect, bad[0], bad[1], "alice", ALICE[0], "f")
        self.assertRaises(ValueError, self.bob.expect, 5, SECRET, "alice", "localhost", "f")
        self.assertRaises(ValueError, self.bob.expect, 99, SECRET, "alice", ALICE[0], "f")  # already known

    def test_hexWireValues(self):
        """The id and secret as the server's lines carry them: 16 and 64 lowercase hex digits."""
        tid = self.bob.expect("00000000000004d2", SECRET_HEX, "alice", ALICE[0], "f")
        self.assertEqual(tid, 1234)
        for bad in ["4D2".rjust(16, "0"), "4d2", "0x" + "0" * 14]:
            self.assertRaises(ValueError, self.bob.expect, bad, SECRET_HEX, "alice", ALICE[0], "f")
        self.assertRaises(ValueError, self.bob.expect, 7, SECRET_HEX.upper(), "alice", ALICE[0], "f")

    def test_announcementMustMatchOffer(self):
        """The real presenter (right secret) announcing another name or presenter is refused."""
        for number, (presenter, basename) in enumerate([("Hans", "clip.mp4"), ("alice", "other.mp4")]):
            self.bob.expect(number, SECRET, "alice", ALICE[0], "clip.mp4")
            self.bob.datagramReceived(Presenter(number).announce(10, 1024, presenter, basename), ALICE)
        self.assertEqual(self.inbox_files(), [])
        reason = "the receiver refused the file: the announcement does not match the server's offer"
        self.assertEqual([r for _d, _p, _b, r in self.bob_listener.failed], [reason, reason])
        self.assertEqual({kind(d) for d in self.sent_to(ALICE)}, {transfer.FAIL})

    def test_tooLargeRefused(self):
        """A file larger than the free disk space is refused before anything is allocated."""
        self.bob.max_file_size = None  # only the disk space limits it
        self.bob.expect(1, SECRET, "alice", ALICE[0], "huge.bin")
        self.bob.datagramReceived(Presenter(1).announce(2**41, 1024), ALICE)  # 2 TiB
        self.assertEqual(self.inbox_files(), [])
        [(_, _, _, reason)] = self.bob_listener.failed
        self.assertTrue(reason.startswith("the receiver refused the file: not enough disk space"), reason)
        self.assertEqual([kind(d) for d in self.sent_to(ALICE)], [transfer.FAIL])

    def test_sendRefusesBadNames(self):
        path, _data = self.make_file("ok", 10)

        def send(path, presenter, peer, **kwargs):
            kwargs.setdefault("transfer_id", 1)
            kwargs.setdefault("secret", SECRET)
            return self.alice.send_file(path, presenter, peer, **kwargs)

        self.failureResultOf(send(path, "../alice", BOB), TransferFailed)
        self.failureResultOf(send(path, "", BOB), TransferFailed)
        self.failureResultOf(send(self.outbox.path + "/", "alice", BOB))
        failure = self.failureResultOf(send(path, "alice", ("localhost", 5002)), TransferFailed)
        self.assertEqual(failure.value.reason, "localhost is not an IP address")
        failure = self.failureResultOf(send(path, "alice", BOB, secret="short"), TransferFailed)
        self.assertEqual(failure.value.reason, "the transfer secret is not 64 hex digits")
        failure = self.failureResultOf(send(path, "alice", BOB, transfer_id="xyz"), TransferFailed)
        self.assertEqual(failure.value.reason, "the transfer id is not 16 hex digits")

    def test_plainNamesAccepted(self):
        self.bob.expect(1, SECRET, "Hans-Jürgen", ALICE[0], "My Holiday (2).mp4")
        self.bob.datagramReceived(Presenter(1).announce(10, 1024, "Hans-Jürgen", "My Holiday (2).mp4"), ALICE)
        [(_, _, reply)] = self.network.queue
        self.assertEqual(kind(reply), transfer.ACCEPT)

    def test_unannouncedTransferWritesNothing(self):
        """The server never told bob of this transfer: bob ignores it all, the presenter gives up."""
        outcome, _data = self.send(size=20_000, receiver=None)
        self.network.run(lambda: outcome)
        self.assertEqual(outcome[0].value.reason, "no answer from the receiver for 10 seconds")
        self.assertEqual(self.inbox_files(), [])
        self.assertEqual(self.sent_to(ALICE), [])
        self.assertGreater(self.bob.ignored, 0)
        self.assertEqual((self.bob._offers, self.bob._incoming, self.bob_listener.failed), ({}, {}, []))

    def test_forgedPresenterWritesNothing(self):
        """
        Mallory, who knows the transfer id but not the secret, announces as
        the offered presenter (from any address, even alice's): ignored.
        """
        self.bob.expect(1, SECRET, "Hans", ALICE[0], "video.bin")
        for source in (MALLORY, ALICE, ("10.9.9.9", 5001)):
            forger = Presenter(1, secret=b"\x01" * 32)
            self.bob.datagramReceived(forger.announce(10, 1024, "Hans", "video.bin"), source)
            self.bob.datagramReceived(forger.data(0, 1, b"x" * 10), source)
            self.bob.datagramReceived(forger.hash(), source)
            self.bob.datagramReceived(forger.fail(), source)
        # the right secret, but not from the presenter's address (the server said where it is)
        self.bob.datagramReceived(Presenter(1).announce(10, 1024, "Hans", "video.bin"), ("10.9.9.9", 5001))
        self.assertEqual(self.network.queue, [])
        self.assertEqual(self.inbox_files(), [])
        self.assertEqual(self.bob_listener.failed, [])
        self.assertEqual(self.bob._offers[1].state, "offered")
        self.assertEqual(self.bob.forged, 4)  # announce and fail from 127.0.0.1 (two ports); the rest: no lookup match

    def test_injectedDataIgnored(self):
        """
        Datagrams with the right transfer id but a wrong tag, injected into a
        running transfer from any address (the presenter's and the
        receiver's included), change nothing.
        """
        outcome, data = self.send(size=20_000)
        injected = []

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.DATA and not injected:
                tid = transfer.HEADER.unpack_from(datagram)[2]
                forger = Presenter(tid, secret=b"\x02" * 32)
                for origin in (ALICE, MALLORY):
                    for chunk in range(20):
                        forged = bytearray(datagram)
                        struct.pack_into("!II", forged, transfer.HEADER.size, chunk, 1000 + chunk)
                        forged[transfer.DATA_HEADER.size :] = b"\x00" * (len(forged) - transfer.DATA_HEADER.size)
                        self.bob.datagramReceived(bytes(forged), origin)
                        injected.append(origin)
                    self.bob.datagramReceived(forger.hash(), origin)
                    self.bob.datagramReceived(forger.fail(), origin)
                    self.bob.datagramReceived(forger.announce(1, 1024, "alice", "clip.mp4"), origin)
                for origin in (BOB, MALLORY):
                    # a forged confirmation, failure and hold to the presenter
                    for kind_ in (transfer.DONE, transfer.FAIL, transfer.HOLD, transfer.ACCEPT, transfer.ACK):
                        forged = transfer.HEADER.pack(transfer.MAGIC, kind_, tid, 99) + bytes(40)
                        self.alice.datagramReceived(forged, origin)
                # bob's own datagrams reflected back to bob fail (one key per direction)
                reflected = [d for s, dest, d in self.network.queue if s == BOB]
                for datagram_ in reflected:
                    self.bob.datagramReceived(datagram_, ALICE)
            return [datagram]

        self.network.tamper = tamper
        self.network.run(lambda: outcome)
        self.assertTrue(injected)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.sent_to(MALLORY), [])
        self.assertGreaterEqual(self.bob.forged, 23)  # those from alice's address: checked, failed
        self.assertEqual(self.alice.forged, 5)
        self.assertEqual(self.bob_listener.failed + self.alice_listener.failed, [])

    def test_unknownTransferIgnored(self):
        """Data, acknowledgements and garbage for transfers nobody offered are ignored."""
        transport = FakeDatagramTransport()
        endpoint = TransferEndpoint(self.inbox.path, Listener(), clock=self.clock, loss=0.0)
        endpoint.makeConnection(transport)
        self.addCleanup(endpoint.stop)
        forger = Presenter(99)
        datagrams = [
            forger.data(0, 1, b"x" * 10),
            forger.announce(10),
            forger.hash(),
            forger.fail(),
            forger.keys.seal(transfer.ACK, bytes(20)),
            forger.keys.seal(transfer.DONE),
            forger.keys.seal(transfer.ACCEPT, b"\x00\x10"),
            forger.keys.seal(transfer.HOLD),
            forger.keys.seal(77),
            b"",
            b"C2",
            b"garbage that is long enough to have a header",
            b"CT\x01" + bytes(60),  # the old, unauthenticated format
        ]
        for datagram in datagrams:
            endpoint.datagramReceived(datagram, MALLORY)
        self.assertEqual(transport.written, [])
        self.assertEqual(self.inbox_files(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((endpoint.ignored, endpoint.forged), (len(datagrams), 0))

    def test_forgeriesLoggedRarely(self):
        """Failed authentications are counted; the log says so at most once a minute."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.bob.offer_timeout = 100
        self.bob.expect(1, SECRET, "alice", ALICE[0], "f")
        forged = Presenter(1, secret=b"\x03" * 32).announce(10)
        for _ in range(1000):
            self.bob.datagramReceived(forged, ALICE)
        self.clock.advance(61)
        self.bob.datagramReceived(forged, ALICE)
        lines = [e for e in events if "failed authentication" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in lines], [1, 1000])
        self.assertEqual(self.bob.forged, 1001)


class OfferTests(TransferTestsMixin, SynchronousTestCase):
    """What the receiver decides about an offer, and offers that never come to anything."""

    def test_offerNeverAnnouncedExpires(self):
        """An offer whose presenter never announces costs a timer, and is forgotten after 10 s."""
        self.bob.expect(1, SECRET, "alice", ALICE[0], "clip.mp4")
        self.clock.advance(9.9)
        self.assertIn(1, self.bob._offers)
        self.clock.advance(0.1)
        self.assertEqual(self.bob._offers, {})
        self.assertEqual(
            self.bob_listener.failed, [("receive", "alice", "clip.mp4", "no data from alice for 10 seconds")]
        )

    def test_announcedButNoDataTimesOut(self):
        """
        Issue 12 item 6: an accepted transfer whose presenter only repeats its
        announcement every 3 s is given up 10 s after it was accepted.
        """
        self.bob.expect(1, SECRET, "alice", ALICE[0], "clip.mp4")
        presenter = Presenter(1)
        self.bob.datagramReceived(presenter.announce(1_000_000, 1024, "alice", "clip.mp4"), ALICE)
        self.assertIn(1, self.bob._incoming)
        for _ in range(3):
            self.clock.advance(3)
            self.bob.datagramReceived(presenter.announce(1_000_000, 1024, "alice", "clip.mp4"), ALICE)
        self.clock.advance(1)
        reason = "no data from alice for 10 seconds"
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertEqual(self.inbox_files(), [])
        self.clock.advance(10)
        self.assertEqual((self.bob._offers, self.bob._incoming), ({}, {}))

    def test_refuseAll(self):
        """--accept-files none: the presenter is told, nothing is written."""
        outcome, _data = self.send(decision="refuse")
        self.network.run(lambda: outcome)
        reason = "the receiver refused the file: it does not accept files"
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.inbox_files(), [])
        self.assertEqual(self.bob_listener.failed, [])  # the client said so when the offer came
        self.network.run(lambda: False)
        self.assertEqual(self.bob._offers, {})

    def test_askThenAccept(self):
        outcome, data = self.send(size=30_000, decision="ask")
        self.network.run(lambda: self.bob_listener.offered)
        self.assertEqual(self.bob_listener.offered, [(self.tid, "alice", "clip.mp4", 30_000)])
        # the presenter is told to wait, and waits longer than its idle timeout
        self.network.run(lambda: self.alice_listener.held)
        self.assertEqual(self.alice_listener.held, [(self.tid, "127.0.0.1:5002", "clip.mp4")])
        self.network.run(lambda: outcome, limit=60)
        self.assertEqual((outcome, self.inbox_files()), ([], []))
        self.assertTrue(self.bob.offer_waiting(self.tid))
        self.assertTrue(self.bob.accept_offer(self.tid))
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertFalse(self.bob.accept_offer(self.tid))
        self.assertEqual(self.bob_listener.offered, [(self.tid, "alice", "clip.mp4", 30_000)])

    def test_askThenReject(self):
        outcome, _data = self.send(decision="ask")
        self.network.run(lambda: self.bob_listener.offered)
        self.assertTrue(self.bob.refuse_offer(self.tid))
        self.network.run(lambda: outcome)
        self.assertEqual(outcome[0].value.reason, "the receiver refused the file: declined by the user")
        self.assertEqual(self.inbox_files(), [])
        self.assertFalse(self.bob.refuse_offer(self.tid))
        self.assertFalse(self.bob.accept_offer(self.tid))

    def test_askUnanswered(self):
        """Nobody answers for 120 s: both sides are told."""
        outcome, _data = self.send(decision="ask")
        self.network.run(lambda: outcome, limit=200)
        self.assertEqual(outcome[0].value.reason, "the receiver refused the file: not accepted within 120 seconds")
        self.assertEqual(
            self.bob_listener.failed,
            [("receive", "alice", "clip.mp4", "you did not accept it within 120 seconds")],
        )
        self.assertFalse(self.bob.offer_waiting(self.tid))

    def test_presenterGoneWhileAsking(self):
        _outcome, _data = self.send(decision="ask")
        self.network.run(lambda: self.bob_listener.offered)
        self.alice.stop()
        self.network.run(lambda: self.bob_listener.failed)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", "the presenter stopped")])
        self.assertFalse(self.bob.accept_offer(self.tid))

    def test_decidedBeforeAnnounced(self):
        """An answer given before the announcement arrived holds when it does."""
        outcome, _data = self.send(decision="ask")
        self.assertTrue(self.bob.refuse_offer(self.tid, "not now"))
        self.network.run(lambda: outcome)
        self.assertEqual(outcome[0].value.reason, "the receiver refused the file: not now")
        outcome, data = self.send(decision="ask", seed=2)
        self.assertTrue(self.bob.accept_offer(self.tid))
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.bob_listener.offered, [])

    def test_tooManyOffers(self):
        self.patch(endpoint_module, "MAX_OFFERS", 3)
        for number in range(3):
            self.bob.expect(number, SECRET, "alice", ALICE[0], "f")
        error = self.assertRaises(ValueError, self.bob.expect, 9, SECRET, "alice", ALICE[0], "f")
        self.assertEqual(str(error), "too many transfers offered at once")


class FloodTests(SynchronousTestCase):
    """
    Offered transfers cost the receiver almost nothing until data arrives,
    and what it commits is bounded: transfers in all and per IP address, the
    disk space (reserved across every transfer), the file size.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.directory = temporary_directory(self)
        self.listener = Listener()
        self.transport = FakeDatagramTransport()
        self.free = 2**60  # what free_space says
        self.patch(incoming_module, "free_space", lambda directory: self.free)
        self.endpoint = self.make()

    def make(self, **kwargs):
        kwargs.setdefault("loss", 0.0)
        endpoint = TransferEndpoint(self.directory, self.listener, clock=self.clock, **kwargs)
        endpoint.makeConnection(self.transport)
        self.addCleanup(endpoint.stop)
        return endpoint

    def announce(self, tid, size, source=MALLORY, chunk_size=512, endpoint=None):
        endpoint = endpoint or self.endpoint
        if tid not in endpoint._offers:
            endpoint.expect(tid, SECRET, "alice", source[0], "huge.bin")
        endpoint.datagramReceived(Presenter(tid).announce(size, chunk_size), source)
        address, reply = self.transport.written[-1][1], self.transport.written[-1][0]
        self.assertEqual(address, source)
        return kind(reply)

    def data(self, tid, chunk, seq, payload, source=MALLORY):
        self.endpoint.datagramReceived(Presenter(tid).data(chunk, seq, payload), source)

    def fail(self, tid, source):
        self.endpoint.datagramReceived(Presenter(tid).fail(), source)

    def reasons(self):
        return [reason for _direction, _peer, _name, reason in self.listener.failed]

    def test_hugeAnnouncementsAllocateLittle(self):
        """
        8 announcements of 1 TiB in chunks of 512 bytes (2**31 chunks each),
        accepted: no per-chunk state, no preallocated file, no thread.
        """
        self.endpoint.max_file_size = None
        threads = threading.active_count()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        for number in range(8):
            source = (f"10.0.0.{number // 4 + 1}", 4000 + number)
            self.assertEqual(self.announce(number, 2**40, source), transfer.ACCEPT)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.assertLess(peak, 256 * 1024)  # was 2 GiB per announcement
        self.assertEqual(threading.active_count(), threads)
        incoming = list(self.endpoint._incoming.values())
        self.assertEqual(len(incoming), 8)
        for t in incoming:
            self.assertEqual((t.nchunks, len(t.received), t.thread), (2**31, 0, None))
        parts = [os.stat(os.path.join(self.directory, name)) for name in os.listdir(self.directory)]
        self.assertEqual([(p.st_size, p.st_blocks) for p in parts], [(0, 0)] * 8)

    def test_trackingGrowsWithData(self):
        """Chunk state grows with the chunks that arrive, never beyond MAX_AHEAD past the prefix."""
        self.endpoint.max_file_size = None
        self.announce(1, 2**40)
        (incoming,) = self.endpoint._incoming.values()
        self.data(1, 1000, 1, b"x" * 512)
        self.assertEqual(len(incoming.received), 1001)
        self.data(1, incoming_module.MAX_AHEAD, 2, b"x" * 512)  # one past the limit
        self.data(1, 2**31 - 1, 3, b"x" * 512)  # the last chunk
        self.assertEqual(len(incoming.received), 1001)  # neither was kept
        self.assertEqual((incoming.count, incoming.cum, incoming.hi), (1, 0, incoming_module.MAX_AHEAD))
        # the ACK (at once: a gap, then too far) lists what is missing up to the limit
        ack = self.transport.written[-1][0]
        self.assertEqual(kind(ack), transfer.ACK)
        _seq, _echo, cum, hi, _window, nranges = transfer.ACK_BODY.unpack_from(ack, transfer.HEADER.size)
        ranges = [
            transfer.RANGE.unpack_from(ack, transfer.HEADER.size + transfer.ACK_BODY.size + 8 * i)
            for i in range(nranges)
        ]
        self.assertEqual((cum, hi, ranges), (0, incoming_module.MAX_AHEAD, [(0, 1000), (1001, incoming_module.MAX_AHEAD)]))
        self.data(1, incoming_module.MAX_AHEAD - 1, 4, b"x" * 512)
        self.assertEqual(len(incoming.received), incoming_module.MAX_AHEAD)
        self.assertEqual(incoming.count, 2)

    def test_reservedAcrossTransfers(self):
        """The free space is shared: an announcement must fit in what the others left."""
        self.free = 100 * 1048576
        self.assertEqual(self.announce(1, 60 * 1048576, ("10.0.0.1", 1)), transfer.ACCEPT)
        self.assertEqual(self.announce(2, 50 * 1048576, ("10.0.0.2", 1)), transfer.FAIL)
        self.assertEqual(self.announce(3, 40 * 1048576, ("10.0.0.3", 1)), transfer.ACCEPT)
        self.assertEqual(self.announce(4, 1, ("10.0.0.4", 1)), transfer.FAIL)
        self.assertEqual(
            self.reasons(),
            [
                "the receiver refused the file: not enough disk space for 50.0 MiB",
                "the receiver refused the file: not enough disk space for 0.0 MiB",
            ],
        )
        # a transfer that ends releases its reservation
        self.fail(1, ("10.0.0.1", 1))
        self.assertEqual(self.announce(5, 50 * 1048576, ("10.0.0.5", 1)), transfer.ACCEPT)
        # what arrived is no longer reserved (the disk's free space shows it)
        incoming = self.endpoint._incoming[5]
        self.assertEqual(incoming.remaining(), 50 * 1048576)
        incoming.count = 10
        self.assertEqual(incoming.remaining(), 50 * 1048576 - 10 * 512)

    def test_perPeerLimit(self):
        """At most MAX_INCOMING_PER_PEER transfers at once from one IP address, whatever the port."""
        for port in range(endpoint_module.MAX_INCOMING_PER_PEER):
            self.assertEqual(self.announce(port, 1000, ("10.0.0.1", 7000 + port)), transfer.ACCEPT)
        self.assertEqual(self.announce(99, 1000, ("10.0.0.1", 7999)), transfer.FAIL)
        self.assertEqual(
            self.reasons(), ["the receiver refused the file: too many transfers at once from 10.0.0.1"]
        )
        self.assertEqual(self.announce(100, 1000, ("10.0.0.2", 7000)), transfer.ACCEPT)
        # a repeated announcement of an accepted transfer is still answered
        self.assertEqual(self.announce(0, 1000, ("10.0.0.1", 7000)), transfer.ACCEPT)

    def test_globalLimit(self):
        for number in range(endpoint_module.MAX_INCOMING):
            source = (f"10.0.{number}.1", 7000)
            self.assertEqual(self.announce(number, 1000, source), transfer.ACCEPT)
        self.assertEqual(self.announce(99, 1000, ("10.1.0.1", 7000)), transfer.FAIL)
        self.assertEqual(self.reasons(), ["the receiver refused the file: too many transfers at once"])
        self.assertEqual(len(os.listdir(self.directory)), endpoint_module.MAX_INCOMING)

    def test_maxFileSize(self):
        """Larger than max_file_size (16 GiB by default): refused, with the limit."""
        self.assertEqual(self.endpoint.max_file_size, 16 * 2**30)
        self.assertEqual(self.announce(1, 16 * 2**30 + 1), transfer.FAIL)
        self.assertEqual(self.announce(2, 16 * 2**30, ("10.0.0.1", 1)), transfer.ACCEPT)
        small = self.make(max_file_size=1000)
        self.assertEqual(self.announce(3, 1001, endpoint=small), transfer.FAIL)
        self.assertEqual(self.announce(4, 1000, endpoint=small), transfer.ACCEPT)
        reasons = [
            "the receiver refused the file: the file is too large (16 GiB; the limit is 16 GiB)",
            "the receiver refused the file: the file is too large (1001 bytes; the limit is 1000 bytes)",
        ]
        self.assertEqual(self.reasons(), reasons)
        fail = self.transport.written[-2][0]
        self.assertEqual(kind(fail), transfer.FAIL)
        self.assertEqual(transfer.decode_reason(fail), reasons[1])
        self.assertRaises(ValueError, self.make, max_file_size=-1)

    def test_settledForgotten(self):
        """Finished transfers are remembered (to answer late datagrams) up to MAX_SETTLED."""
        self.patch(endpoint_module, "MAX_SETTLED", 3)
        for number in range(6):
            source = ("10.0.0.1", 7000 + number)
            self.assertEqual(self.announce(number, 1000, source), transfer.ACCEPT)
            self.fail(number, source)
        self.assertEqual(sorted(self.endpoint._incoming), [3, 4, 5])
        self.assertEqual(sorted(self.endpoint._settled), [3, 4, 5])
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)  # their expiry
        self.clock.advance(10)
        self.assertEqual((self.endpoint._incoming, self.endpoint._settled), ({}, {}))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SenderRefusedTests(TransferTestsMixin, SynchronousTestCase):
    """What the presenter is told when the receiver refuses a file."""

    def test_tooLargeForReceiver(self):
        self.bob.max_file_size = 40_000
        outcome, _data = self.send(size=50_000)
        self.network.run(lambda: outcome)
        [failure] = outcome
        reason = "the receiver refused the file: the file is too large (48.8 KiB; the limit is 39.1 KiB)"
        self.assertEqual(failure.value.reason, reason)
        self.assertEqual(self.alice_listener.failed, [("send", "127.0.0.1:5002", "clip.mp4", reason)])
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertEqual(self.inbox_files(), [])


class SmallTrackingTests(DeliveryTests):
    """
    The delivery tests with the chunk tracking at its limits: MAX_AHEAD below
    the window (chunks too far ahead are dropped and resent), the prefix
    forgotten every 4 chunks.
    """

    def setUp(self):
        self.patch(incoming_module, "MAX_AHEAD", 8)
        self.patch(incoming_module, "TRACK_TRIM", 4)
        super().setUp()

    def test_trackingStaysSmall(self):
        sizes = []
        original = incoming_module.Incoming.data

        def data(incoming, datagram):
            original(incoming, datagram)
            if incoming.received is not None:
                sizes.append(len(incoming.received))

        self.patch(incoming_module.Incoming, "data", data)
        rng = random.Random(3)
        self.network.tamper = lambda s, d, datagram: [] if rng.random() < 0.1 else [datagram]
        outcome, data_ = self.send(size=300 * 1024)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data_)
        self.assertLessEqual(max(sizes), 4 + 8)


class OptionTests(SynchronousTestCase):
    def make(self, **kwargs):
        return TransferEndpoint(temporary_directory(self), Listener(), clock=task.Clock(), **kwargs)

    def setEnvironment(self, value):
        old = os.environ.get(transfer.LOSS_ENVIRONMENT_VARIABLE)
        if value is None:
            os.environ.pop(transfer.LOSS_ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[transfer.LOSS_ENVIRONMENT_VARIABLE] = value

        def restore():
            if old is None:
                os.environ.pop(transfer.LOSS_ENVIRONMENT_VARIABLE, None)
            else:
                os.environ[transfer.LOSS_ENVIRONMENT_VARIABLE] = old

        self.addCleanup(restore)

    def test_lossFromEnvironment(self):
        self.setEnvironment("0.05")
        self.assertEqual(self.make().loss, 0.05)
        self.assertEqual(self.make(loss=0.0).loss, 0.0)

    def test_noLossByDefault(self):
        self.setEnvironment(None)
        self.assertIsNone(self.make().loss)

    def test_badLoss(self):
        for value in ("abc", "1.5", "-0.1", "nan"):
            self.setEnvironment(value)
            self.assertRaises(ValueError, self.make)
        self.assertRaises(ValueError, self.make, loss=2)

    def test_lossDropsSends(self):
        """With loss=1 nothing reaches the transport."""
        transport = FakeDatagramTransport()
        endpoint = self.make(loss=1.0, rng=random.Random(0))
        endpoint.makeConnection(transport)
        endpoint._write(b"x", BOB)
        self.assertEqual(transport.written, [])
        self.assertEqual(endpoint.dropped, 1)

    def test_badChunkSize(self):
        self.assertRaises(ValueError, self.make, chunk_size=100)
        self.assertRaises(ValueError, self.make, chunk_size=70_000)

    def test_sendAfterStop(self):
        endpoint = self.make()
        endpoint.stop()
        d = endpoint.send_file(__file__, "alice", BOB, transfer_id=1, secret=SECRET)
        self.failureResultOf(d, TransferFailed)


class RealisticChunkTests(TransferTestsMixin, SynchronousTestCase):
    """The default chunk size and a file of several chunks, with loss."""

    chunk_size = transfer.DEFAULT_CHUNK_SIZE

    def test_lossy(self):
        rng = random.Random(9)
        self.network.tamper = lambda s, d, datagram: [] if rng.random() < 0.05 else [datagram]
        outcome, data = self.send(size=3 * 1024 * 1024 + 5)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)


class PropertyTests(SynchronousTestCase):
    """Whatever the network does (short of silence), the file arrives intact."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        size=st.integers(0, 40_000),
        chunk_size=st.sampled_from([512, 1000, 4096]),
        loss=st.floats(0, 0.3),
        duplication=st.floats(0, 0.3),
        seed=st.integers(0, 2**32 - 1),
        reorder=st.booleans(),
    )
    def test_alwaysIntact(self, size, chunk_size, loss, duplication, seed, reorder):
        clock = task.Clock()
        network = Network(clock)
        rng = random.Random(seed)
        network.tamper = lambda s, d, datagram: (
            [] if rng.random() < loss else [datagram] * (2 if rng.random() < duplication else 1)
        )
        if reorder:
            network.shuffle = random.Random(seed + 1)
        root = tempfile.mkdtemp(prefix="chatproto-transfer-")
        endpoints = []
        try:
            listeners = Listener(), Listener()
            for address, listener in zip((ALICE, BOB), listeners):
                os.mkdir(os.path.join(root, str(address[1])))
                endpoint = TransferEndpoint(
                    os.path.join(root, str(address[1])),
                    listener,
                    clock=clock,
                    loss=0.0,
                    chunk_size=chunk_size,
                )
                network.attach(address, endpoint)
                endpoints.append(endpoint)
            data = random.Random(seed).randbytes(size)
            source = os.path.join(root, "5001", "f.bin")
            with open(source, "wb") as f:
                f.write(data)
            outcome = []
            tid, secret = new_transfer()
            endpoints[1].expect(tid, secret, "alice", ALICE[0], "f.bin")
            endpoints[0].send_file(source, "alice", BOB, transfer_id=tid, secret=secret).addBoth(outcome.append)
            network.run(lambda: outcome)
            self.assertEqual(outcome, ["f.bin"])
            with open(os.path.join(root, "5002", "alice_f.bin"), "rb") as f:
                self.assertEqual(f.read(), data)
            self.assertEqual(sorted(os.listdir(os.path.join(root, "5002"))), [INDEX_NAME, "alice_f.bin"])
        finally:
            for endpoint in endpoints:
                endpoint.stop()
            shutil.rmtree(root, True)
        self.assertEqual(clock.getDelayedCalls(), [])


class RealSocketSmokeTests(SynchronousTestCase):
    """
    C{bench/bench_transfer.py --smoke}: two real endpoints in two processes over
    loopback, lossless and with 5% loss, files compared byte for byte. Figures
    are not checked (CI machines are noisy); an error or a corrupt file is.
    """

    def test_benchSmoke(self):
        bench = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "bench",
            "bench_transfer.py",
        )
        env = {k: v for k, v in os.environ.items() if k != transfer.LOSS_ENVIRONMENT_VARIABLE}
        result = subprocess.run(
            [sys.executable, bench, "--smoke"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(len(result.stdout.splitlines()), 8, result.stdout)  # header + 7 rows
        self.assertEqual(result.stdout.count("intact"), 2, result.stdout)
        self.assertNotIn("ERROR", result.stdout)


class StoreReceivedTests(SynchronousTestCase):
    """Where a verified file goes (names.store_received), without any network."""

    def setUp(self):
        self.directory = FilePath(temporary_directory(self))

    def temp(self, content):
        path = self.directory.child(".part")
        path.setContent(content)
        return path.path

    def store(self, content, presenter="Hans", basename="video.bin"):
        return os.path.basename(names.store_received(self.directory.path, self.temp(content), presenter, basename))

    def test_freshThenReplaced(self):
        self.assertEqual(self.store(b"one"), "Hans_video.bin")
        self.assertEqual(self.store(b"two"), "Hans_video.bin")
        self.assertEqual(self.directory.child("Hans_video.bin").getContent(), b"two")
        self.assertEqual(sorted(self.directory.listdir()), [INDEX_NAME, "Hans_video.bin"])

    def test_unreadableIndexKeepsEverything(self):
        """An index that cannot be read (corrupt, removed) means nothing is ours: nothing replaced."""
        self.store(b"one")
        self.directory.child(INDEX_NAME).setContent(b"{not json")
        self.assertEqual(self.store(b"two"), "Hans_video (2).bin")
        self.directory.child(INDEX_NAME).remove()
        self.assertEqual(self.store(b"three"), "Hans_video (3).bin")
        self.assertEqual(self.directory.child("Hans_video.bin").getContent(), b"one")

    def test_otherPresenterRecordNotOurs(self):
        """A file recorded as received from another presenter is not replaced by this one."""
        self.store(b"from Hans", presenter="Hans", basename="x_y.bin")  # Hans_x_y.bin
        self.assertEqual(self.store(b"from Hans_x", presenter="Hans_x", basename="y.bin"), "Hans_x_y (2).bin")
        self.assertEqual(self.directory.child("Hans_x_y.bin").getContent(), b"from Hans")

    def test_directoryOfThatNameKept(self):
        self.directory.child("Hans_video.bin").makedirs()
        self.assertEqual(self.store(b"one"), "Hans_video (2).bin")

    def test_longNameShortened(self):
        basename = "v" * 186 + ".bin"  # the longest base name (190 bytes)
        presenter = "P" * 64
        self.assertEqual(len(self.store(b"a", presenter, basename).encode()), 255)
        os.unlink(self.directory.child(f"{presenter}_{basename}").path)
        with open(self.directory.child(f"{presenter}_{basename}").path, "wb") as f:
            f.write(b"mine")  # not FilePath.setContent: its temporary name would be too long
        stored = self.store(b"c", presenter, basename)
        self.assertTrue(stored.endswith(" (2).bin"), stored)
        self.assertLessEqual(len(stored.encode()), 255)

    def test_allNamesTaken(self):
        self.patch(names, "MAX_COPIES", 3)
        for name in ("Hans_video.bin", "Hans_video (2).bin", "Hans_video (3).bin"):
            self.directory.child(name).setContent(b"mine")
        error = self.assertRaises(OSError, self.store, b"x")
        self.assertEqual(error.errno, errno.EEXIST)

    def test_noHardLinks(self):
        """On a file system without hard links, a placeholder of its own is created, then replaced."""

        def link(source, destination):
            raise OSError(errno.EPERM, "Operation not permitted")

        self.patch(names.os, "link", link)
        self.assertEqual(self.store(b"one"), "Hans_video.bin")
        self.assertEqual(self.directory.child("Hans_video.bin").getContent(), b"one")
        self.assertFalse(self.directory.child(".part").exists())


class ForgedSmokeTests(SynchronousTestCase):
    """
    C{bench/bench_forged.py --smoke}: 20,000 forged datagrams at a real
    receiver process during real transfers; every transfer intact, nothing
    but the offered file written.  No figures are checked.
    """

    def test_forgedSmoke(self):
        bench = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench_forged.py"
        )
        env = {k: v for k, v in os.environ.items() if k != transfer.LOSS_ENVIRONMENT_VARIABLE}
        result = subprocess.run(
            [sys.executable, bench, "--smoke"], capture_output=True, text=True, timeout=120, check=False, env=env
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("all intact: True", result.stdout)
        self.assertIn(f"files in the receiver's directory: ['{INDEX_NAME}', 'bench_video.bin']", result.stdout)
        self.assertNotIn("ERROR", result.stdout)


class Sha256DeliveryTests(DeliveryTests):
    """The delivery tests again, with a presenter that verifies its files with SHA-256."""

    file_hash = "sha256"
    hash_name = "SHA-256"


class Sha256FailureTests(FailureTests):
    """The failure tests again with SHA-256: a corrupted file says C{SHA-256 mismatch}."""

    file_hash = "sha256"
    hash_name = "SHA-256"


class HashChoiceTests(TransferTestsMixin, SynchronousTestCase):
    """The presenter names its file hash in the ANNOUNCE; the receiver checks with that one."""

    def announce_body(self, datagram):
        return datagram[transfer.HEADER.size : -transfer.TAG_SIZE]

    def reannounce(self, change):
        """Tamper: every ANNOUNCE's body is C{change(body)}, sealed again with the presenter's key."""

        def tamper(source, destination, datagram):
            if kind(datagram) == transfer.ANNOUNCE:
                (outgoing,) = self.alice._outgoing.values()
                return [outgoing.keys.seal(transfer.ANNOUNCE, change(self.announce_body(datagram)))]
            return [datagram]

        self.network.tamper = tamper

    def captured(self, wanted):
        seen = []

        def tamper(source, destination, datagram):
            if kind(datagram) == wanted:
                seen.append(datagram)
            return [datagram]

        self.network.tamper = tamper
        return seen

    def test_blake3ByDefault(self):
        """By default the ANNOUNCE ends with BLAKE3's number."""
        self.assertEqual(TransferEndpoint(self.outbox.path, Listener(), clock=self.clock).file_hash, wire.BLAKE3)
        announces = self.captured(transfer.ANNOUNCE)
        outcome, data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertEqual(self.announce_body(announces[0])[-1], wire.BLAKE3)

    def test_hashSentIsTheFilesDigest(self):
        """The HASH datagram carries the announced algorithm's digest of the file, for both."""
        import blake3
        import hashlib

        for name, digest in (("blake3", blake3.blake3), ("sha256", hashlib.sha256)):
            alice = self.endpoint(self.outbox, self.alice_listener, ("127.0.0.1", 5100), file_hash=name)
            hashes = self.captured(transfer.HASH)
            path, data = self.make_file(f"{name}.bin", 20_000)
            tid, secret = new_transfer()
            self.bob.expect(tid, secret, "alice", "127.0.0.1", f"{name}.bin")
            outcome = []
            alice.send_file(path, "alice", BOB, transfer_id=tid, secret=secret).addBoth(outcome.append)
            self.network.run(lambda outcome=outcome: outcome)
            self.assertEqual(outcome, [f"{name}.bin"])
            self.assertEqual(hashes[0][transfer.HEADER.size : -transfer.TAG_SIZE], digest(data).digest())
            self.assertEqual(self.inbox.child(f"alice_{name}.bin").getContent(), data)
            alice.stop()
            del self.network.endpoints[("127.0.0.1", 5100)]

    def test_earlierPresenterMeansSha256(self):
        """
        An ANNOUNCE without the hash byte (a client of before BLAKE3) is
        checked with SHA-256; a presenter using SHA-256 sends no byte (so such
        receivers take its files).
        """
        self.alice.file_hash = wire.SHA256
        announces = self.captured(transfer.ANNOUNCE)
        outcome, data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        body = self.announce_body(announces[0])
        self.assertEqual(len(body), transfer.ANNOUNCE_BODY.size + len("alice") + len("clip.mp4"))

    def test_receiverChecksWhatWasAnnounced(self):
        """
        A BLAKE3 file announced (wrongly) as SHA-256 fails the receiver's
        check: it really verifies with the announced hash, and stores nothing.
        """
        self.reannounce(lambda body: body[:-1])
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        reason = "the file was corrupted in transit (SHA-256 mismatch)"
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.bob_listener.failed, [("receive", "alice", "clip.mp4", reason)])
        self.assertEqual(self.inbox_files(), [])

    def test_unknownHashRefused(self):
        """An algorithm this client does not know is refused, saying so, before any data."""
        self.reannounce(lambda body: body[:-1] + bytes([9]))
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        reason = "the receiver refused the file: this client cannot check the file's hash (number 9)"
        self.assertEqual(outcome[0].value.reason, reason)
        self.assertEqual(self.inbox_files(), [])

    def test_malformedAnnounceIgnored(self):
        """Two bytes after the names is not an announcement: ignored, the presenter times out."""
        self.reannounce(lambda body: body + b"\x02")
        outcome, _data = self.send(size=20_000)
        self.network.run(lambda: outcome)
        self.assertEqual(outcome[0].value.reason, "no answer from the receiver for 10 seconds")
        self.assertEqual(self.inbox_files(), [])

    def test_receiverWithoutBlake3(self):
        """A receiver without the blake3 package refuses a BLAKE3 file, saying why."""
        outcome, _data = self.send(size=20_000)  # the presenter made its BLAKE3 hasher
        self.patch(wire, "_blake3", None)
        self.network.run(lambda: outcome)
        reason = "the receiver refused the file: this client cannot check the file's hash (BLAKE3)"
        self.assertEqual(outcome[0].value.reason, reason)

    def test_option(self):
        """C{file_hash}: C{blake3} or C{sha256}; anything else, or BLAKE3 without the package, is refused."""
        directory = self.outbox.path
        self.assertEqual(TransferEndpoint(directory, None, clock=self.clock, file_hash="sha256").file_hash,
                         wire.SHA256)
        error = self.assertRaises(ValueError, TransferEndpoint, directory, None, clock=self.clock, file_hash="md5")
        self.assertEqual(str(error), "file_hash must be one of sha256, blake3")
        self.patch(wire, "_blake3", None)
        error = self.assertRaises(ValueError, TransferEndpoint, directory, None, clock=self.clock,
                                  file_hash="blake3")
        self.assertEqual(str(error), "BLAKE3 is not available (pip install blake3)")


class AllocationTests(TransferTestsMixin, SynchronousTestCase):
    """The receiver's worker allocates the file only a little ahead of the data written."""

    def test_allocatedAheadBounded(self):
        """With 4 KiB ahead, the temporary file never holds more than that beyond the data."""
        self.patch(incoming_module, "ALLOCATE_AHEAD", 4096)
        self.patch(incoming_module, "WORKER_BATCH", 2 * self.chunk_size)
        sizes = []

        def tamper(source, destination, datagram):
            for incoming in self.bob._incoming.values():
                if incoming.fd is not None and incoming.thread is not None:
                    incoming._stop_worker(cancel=False)  # the worker is done with what it got
                    written = incoming.count * self.chunk_size - len(incoming.batch) * self.chunk_size
                    sizes.append((os.fstat(incoming.fd).st_size, written))
            return [datagram]

        self.network.tamper = tamper
        outcome, data = self.send(size=50_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.assertTrue(any(size > written for size, written in sizes), sizes)  # allocated ahead
        for size, written in sizes:
            self.assertLessEqual(size, written + self.chunk_size + 4096)

    def test_unsupported(self):
        """Where fallocate fails (a file system without it), the file still arrives intact."""
        self.patch(incoming_module, "_fallocate", lambda fd, offset, length: False)
        outcome, data = self.send(size=50_000)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data)
        self.patch(incoming_module, "_fallocate", None)
        outcome, data = self.send(name="other.bin", size=50_000, seed=2)
        self.network.run(lambda: outcome)
        self.assertDelivered(outcome, data, name="other.bin")


class PortTests(SynchronousTestCase):
    """
    L{transfer.listen_udp}'s port over real loopback sockets, driven by hand
    (C{doRead} when a datagram is waiting; a loopback C{sendto} has queued it
    by the time it returns) on a L{task.Clock}.
    """

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.clock = task.Clock()
        self.root = FilePath(temporary_directory(self))

    def port(self, name, listener, **kwargs):
        from chatproto.transfer.port import TransferPort

        directory = self.root.child(name)
        directory.makedirs()
        endpoint = TransferEndpoint(directory.path, listener, clock=self.clock, loss=0.0, **kwargs)
        port = TransferPort(0, endpoint, "127.0.0.1", 65536, self.reactor)
        port.startListening()

        def close():
            port.stopReading()
            port.connectionLost(None)

        self.addCleanup(close)
        return endpoint, port, directory

    def test_otherDatagramsAsBytes(self):
        """What is not a DATA datagram reaches the endpoint as bytes; the buffer is reused at once."""
        endpoint, port, _ = self.port("bob", Listener())
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        seen = []
        original = endpoint.datagramReceived
        endpoint.datagramReceived = lambda data, addr: (seen.append(type(data)), original(data, addr))
        for datagram in (b"garbage", transfer.MAGIC + bytes([transfer.ANNOUNCE]) + bytes(40)):
            sender.sendto(datagram, ("127.0.0.1", port.getHost().port))
        port.doRead()
        self.assertEqual(seen, [bytes, bytes])
        self.assertEqual(endpoint.ignored, 2)
        self.assertEqual((endpoint.pool.made, len(endpoint.pool.free)), (1, 1))

    def test_transfer(self):
        """
        A file through two such ports arrives intact, a forged DATA datagram
        from the presenter's address among its own changing nothing; the
        DATA buffers come back to the pool.
        """
        alice_listener, bob_listener = Listener(), Listener()
        alice, alice_port, outbox = self.port("alice", alice_listener)
        bob, bob_port, inbox = self.port("bob", bob_listener, chunk_size=8192)
        data = random.Random(3).randbytes(2 * 1024 * 1024 + 5)
        outbox.child("clip.mp4").setContent(data)
        tid, secret = new_transfer()
        bob.expect(tid, secret, "alice", "127.0.0.1", "clip.mp4")
        outcome = []
        peer = ("127.0.0.1", bob_port.getHost().port)
        alice.send_file(outbox.child("clip.mp4").path, "alice", peer, transfer_id=tid, secret=secret).addBoth(
            outcome.append
        )
        forged = bytearray(transfer.DATA_HEADER.pack(transfer.MAGIC, transfer.DATA, tid, 1 << 40, 2, 1, 0))
        forged += bytes(8192) + bytes(transfer.TAG_SIZE)  # chunk 2 all zeros, a wrong tag
        for _ in range(20_000):
            if outcome:
                break
            if bob._incoming and not bob.forged:
                alice_port.socket.sendto(forged, peer)  # from the presenter's own address
            bob_port.doRead()
            alice_port.doRead()
            self.clock.advance(0.001)
        self.assertEqual(outcome, ["clip.mp4"])
        self.assertEqual(inbox.child("alice_clip.mp4").getContent(), data)
        self.assertEqual(bob.forged, 1)
        self.assertGreater(bob.pool.made, 0)
        self.assertLessEqual(bob.pool.made, 200)  # reused: 257 DATA datagrams, a few in flight
        # trimmed once nothing comes in, plus the buffer of the datagram that ended it
        self.assertLessEqual(len(bob.pool.free), incoming_module.IDLE_SLOTS + 1)
        alice.stop()
        bob.stop()
