"""
L{listen_udp}: the UDP port of a L{TransferEndpoint}, reading into reused
buffers (docs/TRANSFER.md, Integration notes; PERFORMANCE.md, P2P transfer).

Twisted's C{udp.Port} reads each datagram with C{recvfrom(65536)}: a new
64 KiB object per datagram, freed later by the receiver's worker thread once
written and hashed.  That churn makes glibc return the heap to the kernel and
fault it back in (16 page faults per DATA datagram), which cost the receiving
end more than the copy itself.  This port reads with C{recvfrom_into} into
64 KiB buffers from a free list: a DATA datagram is handed to the endpoint as a
C{memoryview} of its buffer, which goes back to the free list once the worker
is done with it (or at once if the endpoint did not keep it); every other
datagram is handed over as C{bytes}, as from Twisted's port.
"""

from __future__ import annotations

import socket
from collections import deque

from twisted.internet import udp
from twisted.python import log

from ..twisted_internals import udp_connected, udp_read_errors

SLOT_SIZE = 65536  # one datagram (the largest UDP payload fits)
KEEP_SLOTS = 128  # free buffers kept (8 MiB); beyond that a returned one is dropped


class BufferPool:
    """Free 64 KiB buffers; C{take} from the reactor thread, C{give} back from any thread."""

    def __init__(self, keep: int = KEEP_SLOTS):
        self.free = deque()
        self.keep = keep
        self.made = 0  # buffers allocated so far (tests)

    def take(self) -> bytearray:
        try:
            return self.free.pop()  # the most recently used: still in the cache
        except IndexError:
            self.made += 1
            return bytearray(SLOT_SIZE)

    def give(self, slot: bytearray) -> None:
        if len(self.free) < self.keep:
            self.free.append(slot)  # deque.append is atomic: the worker threads give back

    def trim(self, keep: int) -> None:
        """Keep at most C{keep} free buffers (when no transfer is coming in)."""
        while len(self.free) > keep:
            try:
                self.free.popleft()
            except IndexError:
                return


class TransferPort(udp.Port):
    """C{udp.Port} whose reads go into the endpoint's L{BufferPool} (see the module)."""

    def doRead(self):
        protocol = self.protocol
        pool = getattr(protocol, "pool", None)
        slot_received = getattr(protocol, "slotReceived", None)
        if pool is None or slot_received is None:
            return super().doRead()
        read = 0
        recvfrom_into = self.socket.recvfrom_into
        ipv6 = self.addressFamily == socket.AF_INET6
        while read < self.maxThroughput:
            slot = pool.take()
            try:
                size, addr = recvfrom_into(slot)
            except OSError as se:
                pool.give(slot)
                no = se.args[0]
                ignore, refuse = udp_read_errors()
                if no in ignore:
                    return
                if no in refuse:
                    if udp_connected(self):
                        protocol.connectionRefused()
                    return
                raise
            read += size
            if ipv6:
                addr = addr[:2]
            try:
                kept = slot_received(slot, size, addr)
            except Exception:  # noqa: BLE001 - as in udp.Port: a bug must not stop the reads
                kept = False
                log.err()
            if not kept:
                pool.give(slot)


def listen_udp(reactor, port: int, endpoint, interface: str = ""):
    """
    Like C{reactor.listenUDP(port, endpoint, interface, maxPacketSize=65536)},
    with a L{TransferPort} where the reactor is a POSIX one (else the
    reactor's own port: the endpoint works the same, reading C{bytes}).
    """
    from twisted.internet.posixbase import PosixReactorBase

    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenUDP(port, endpoint, interface=interface, maxPacketSize=SLOT_SIZE)
    listening = TransferPort(port, endpoint, interface, SLOT_SIZE, reactor)
    listening.startListening()
    return listening
