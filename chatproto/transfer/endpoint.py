"""L{TransferEndpoint}: every p2p transfer of one client, over one UDP port."""

from __future__ import annotations

import os
import random
import socket
import struct

from twisted.internet import abstract, defer, error
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from . import incoming as _incoming_module
from .base import DEFAULT_RECEIVE_WINDOW, LOSS_ENVIRONMENT_VARIABLE, MIN_WINDOW, TransferFailed
from .incoming import Incoming
from .names import check_basename, check_presenter, printable, size_text
from .outgoing import Outgoing
from .wire import ACCEPT, ACCEPT_BODY, ACK, ANNOUNCE, ANNOUNCE_BODY, DATA, DATA_HEADER, DONE, FAIL, HASH
from .wire import DEFAULT_CHUNK_SIZE, HEADER, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, decode_reason
from .wire import encode_fail

log = Logger()

SOCKET_BUFFER = 4 * 1024 * 1024  # asked for with SO_RCVBUF / SO_SNDBUF
BUFFER_SHARE = 0.7  # of the receive buffer that the windows may fill
MAX_INCOMING = 32  # concurrent incoming transfers
MAX_INCOMING_PER_PEER = 4  # concurrent incoming transfers from one IP address
DEFAULT_MAX_FILE_SIZE = 16 * 1024**3  # the largest file accepted, unless configured
MAX_SETTLED = 1024  # finished incoming transfers remembered (to answer late datagrams)


def _loss_from_environment() -> float | None:
    text = os.environ.get(LOSS_ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return None
    return _check_loss(text, f"{LOSS_ENVIRONMENT_VARIABLE}={text}")


def _check_loss(value, label) -> float:
    try:
        loss = float(value)
    except (TypeError, ValueError):
        loss = -1.0
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f"{label}: the loss must be a fraction from 0 to 1")
    return loss


class TransferEndpoint(DatagramProtocol):
    """
    Every p2p file transfer of one client, over one UDP port.

    @param directory: where received files are written.
    @param listener: told of received files, failures and progress (see
        C{docs/TRANSFER.md}); its methods are called from the reactor thread.
    @param clock: an L{IReactorTime}; the global reactor by default.
    @param idle_timeout: seconds of silence from the peer after which a
        transfer is given up, on either side.
    @param loss: the fraction of the datagrams this endpoint sends that it
        drops on purpose (tests, benchmarks); L{None} reads
        C{CHATPROTO_TEST_UDP_LOSS}, unset means none.
    @param rng: a L{random.Random} for the loss simulation and transfer ids.
    @param chunk_size: bytes of file data per datagram.
    @param max_file_size: the largest file accepted from a peer, in bytes
        (16 GiB by default); L{None}: only the free disk space limits it.
    """

    def __init__(
        self,
        directory: str,
        listener,
        clock=None,
        idle_timeout: float = 10.0,
        loss: float | None = None,
        rng: random.Random | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")
        if max_file_size is not None and max_file_size < 0:
            raise ValueError("max_file_size must be a number of bytes, or None")
        self.directory = directory
        self.listener = listener
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.loss = _loss_from_environment() if loss is None else _check_loss(loss, "loss")
        self.rng = rng if rng is not None else random.Random()
        self._ids = rng if rng is not None else random.SystemRandom()
        self.chunk_size = chunk_size
        self.max_file_size = max_file_size
        self.dropped = 0  # datagrams dropped by the loss simulation
        self._receive_buffer = None  # bytes, once known from the socket
        self._outgoing: dict[int, Outgoing] = {}
        self._incoming: dict[tuple, Incoming] = {}
        self._settled: dict[tuple, None] = {}  # keys of finished incoming transfers, oldest first
        self._stopped = False
        self._handlers = {
            ANNOUNCE: self._on_announce,
            ACCEPT: self._on_accept,
            ACK: self._on_ack,
            DONE: self._on_done,
            FAIL: self._on_fail,
            HASH: self._on_hash,
        }

    # -- the socket ---------------------------------------------------------------

    def startProtocol(self) -> None:
        transport = self.transport
        if hasattr(transport, "maxPacketSize"):
            transport.maxPacketSize = 65536  # listenUDP's default of 8192 truncates chunks
            transport.maxThroughput = max(getattr(transport, "maxThroughput", 0), 1 << 20)
        try:
            sock = transport.getHandle()
        except AttributeError:
            return
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
        try:
            self._receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            self._receive_buffer = None

    def stopProtocol(self) -> None:
        self.stop()

    def _receive_window(self) -> int:
        """Chunks the socket buffer holds, shared by the transfers coming in."""
        active = sum(1 for t in self._incoming.values() if t.state == "receiving") or 1
        if self._receive_buffer is None:
            window = DEFAULT_RECEIVE_WINDOW
        else:
            # what a datagram costs in the buffer on Linux (measured): small
            # ones take a power-of-two allocation, large ones ~1.2 KiB extra
            size = self.chunk_size + DATA_HEADER.size
            cost = size + 1200 if size >= 16384 else 2 * size + 512
            window = int(self._receive_buffer * BUFFER_SHARE) // cost
        return max(MIN_WINDOW, min(0xFFFF, window // active))

    def _write(self, datagram, addr) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        transport = self.transport
        if transport is None:
            return
        try:
            transport.write(datagram, addr)
        except (OSError, error.MessageLengthError, error.InvalidAddressError) as e:
            # a full socket buffer: the datagram is lost, and recovered as such
            log.debug("UDP write to {addr} failed: {e}", addr=addr, e=e)

    def _notify(self, method: str, *args) -> None:
        callback = getattr(self.listener, method, None)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a listener's bug must not stop transfers
            log.failure("transfer listener {method} failed", method=method)

    # -- the API ------------------------------------------------------------------

    def send_file(
        self, path: str, presenter: str, peer: tuple[str, int], peer_name: str | None = None
    ) -> defer.Deferred:
        """
        Send the file at C{path} to C{peer} as C{presenter}.

        @param peer_name: how the listener names the receiver on failure
            (C{HOST:PORT} by default).
        @return: a L{Deferred} that fires with the base name once the receiver
            confirmed the file complete and verified, or fails with
            L{TransferFailed}; cancelling it cancels the transfer.
        """
        basename = os.path.basename(path)
        if peer_name is None:
            peer_name = f"{peer[0]}:{peer[1]}"
        why = check_presenter(presenter) or check_basename(basename)
        if not (abstract.isIPAddress(peer[0]) or abstract.isIPv6Address(peer[0])):
            why = f"{peer[0]} is not an IP address"
        if self._stopped:
            why = "the transfer endpoint is stopped"
        if why is not None:
            return defer.fail(TransferFailed(why))
        tid = self._ids.getrandbits(64)
        while tid in self._outgoing:
            tid = self._ids.getrandbits(64)
        transfer = None

        def cancel(deferred):
            if transfer is not None:
                transfer.fail("the presenter cancelled the transfer", notify=False)

        deferred = defer.Deferred(cancel)
        try:
            transfer = Outgoing(self, tid, path, basename, presenter, peer, peer_name, deferred)
        except OSError as e:
            return defer.fail(TransferFailed(f"File {basename} cannot be read: {e.strerror}"))
        self._outgoing[tid] = transfer
        return deferred

    def stop(self) -> None:
        """Give every transfer up, tell the peers, cancel the timers, remove temp files."""
        if self._stopped:
            return
        self._stopped = True
        for transfer in list(self._outgoing.values()):
            transfer.fail("the presenter stopped", notify=False)
        for transfer in list(self._incoming.values()):
            transfer.stop()

    # -- datagrams ----------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr) -> None:
        if self._stopped or len(data) < HEADER.size or data[:2] != MAGIC:
            return
        kind = data[2]
        if kind == DATA:
            if len(data) < DATA_HEADER.size:
                return
            transfer = self._incoming.get((addr, int.from_bytes(data[3:11], "big")))
            if transfer is not None:
                transfer.data(data)
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(data, addr, HEADER.unpack_from(data)[2])

    def _outgoing_from(self, addr, tid) -> Outgoing | None:
        transfer = self._outgoing.get(tid)
        if transfer is None or transfer.peer != addr:
            return None
        transfer.heard()
        return transfer

    def _on_accept(self, data, addr, tid) -> None:
        transfer = self._outgoing_from(addr, tid)
        if transfer is not None:
            try:
                (rwnd,) = ACCEPT_BODY.unpack_from(data, HEADER.size)
            except struct.error:
                rwnd = DEFAULT_RECEIVE_WINDOW
            transfer.accepted(rwnd)

    def _on_ack(self, data, addr, tid) -> None:
        transfer = self._outgoing_from(addr, tid)
        if transfer is not None:
            transfer.acked(data)

    def _on_done(self, data, addr, tid) -> None:
        transfer = self._outgoing_from(addr, tid)
        if transfer is not None:
            transfer.done()

    def _on_fail(self, data, addr, tid) -> None:
        transfer = self._outgoing_from(addr, tid)
        if transfer is not None:
            transfer.peer_failed(decode_reason(data))
            return
        incoming = self._incoming.get((addr, tid))
        if incoming is not None:
            incoming.fail(decode_reason(data), tell_peer=False)

    def _on_hash(self, data, addr, tid) -> None:
        incoming = self._incoming.get((addr, tid))
        if incoming is not None:
            incoming.hashed(data)

    def _on_announce(self, data, addr, tid) -> None:
        key = (addr, tid)
        existing = self._incoming.get(key)
        if existing is not None:
            existing.announced_again()
            return
        try:
            size, chunk_size, plen, nlen = ANNOUNCE_BODY.unpack_from(data, HEADER.size)
        except struct.error:
            return
        start = HEADER.size + ANNOUNCE_BODY.size
        if len(data) != start + plen + nlen:
            return
        try:
            presenter = data[start : start + plen].decode("utf-8")
            basename = data[start + plen :].decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(key, "?", "?", "the file name is not UTF-8")
        why = check_presenter(presenter) or check_basename(basename)
        if why is None and not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            why = "the chunk size is out of range"
        if why is None and -(-size // chunk_size) > 0xFFFFFFFF:
            why = "the file is too large"
        limit = self.max_file_size
        if why is None and limit is not None and size > limit:
            why = f"the file is too large ({size_text(size)}; the limit is {size_text(limit)})"
        if why is None:
            # Every commitment is bounded: the number of transfers (in all and
            # per IP address) and the disk space, reserved across them all.
            receiving = [t for t in self._incoming.values() if t.state == "receiving"]
            if len(receiving) >= MAX_INCOMING:
                why = "too many transfers at once"
            elif sum(t.peer[0] == addr[0] for t in receiving) >= MAX_INCOMING_PER_PEER:
                why = f"too many transfers at once from {printable(str(addr[0]), 64)}"
            elif size > _incoming_module.free_space(self.directory) - sum(t.remaining() for t in receiving):
                why = f"not enough disk space for {size / 1048576:.1f} MiB"
        if why is not None:
            return self._refuse(key, presenter, basename, why)
        try:
            transfer = Incoming(self, key, presenter, basename, size, chunk_size)
        except OSError as e:
            return self._refuse(key, presenter, basename, f"cannot create the file: {e.strerror}")
        self._incoming[key] = transfer
        transfer.accept()

    def _remember_settled(self, key) -> None:
        """Answer late datagrams of at most MAX_SETTLED finished transfers: forget the oldest."""
        settled = self._settled
        settled[key] = None
        while len(settled) > MAX_SETTLED:
            oldest = self._incoming.get(next(iter(settled)))
            if oldest is None:
                settled.pop(next(iter(settled)))
            else:
                oldest._expire()

    def _refuse(self, key, presenter, basename, why) -> None:
        addr, tid = key
        reason = f"the receiver refused the file: {why}"
        self._write(encode_fail(tid, reason), addr)
        self._notify("transfer_failed", "receive", printable(presenter, 64), printable(basename), reason)
