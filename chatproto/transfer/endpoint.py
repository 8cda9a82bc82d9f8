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
from .incoming import Incoming, Offer
from .names import check_basename, check_presenter, printable, size_text
from .outgoing import Outgoing
from .port import BufferPool
from .wire import ACCEPT, ACCEPT_BODY, ACK, ANNOUNCE, ANNOUNCE_BODY, DATA, DATA_HEADER, DONE, FAIL, HASH
from .wire import DEFAULT_CHUNK_SIZE, HEADER, HOLD, MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, MIN_DATAGRAM
from .wire import ANNOUNCE_HASH, DEFAULT_HASH, HASH_NAMES, SHA256, TAG_SIZE, Keys, decode_reason
from .wire import hash_available, parse_hash_name, parse_secret, parse_transfer_id

log = Logger()

SOCKET_BUFFER = 4 * 1024 * 1024  # asked for with SO_RCVBUF / SO_SNDBUF
BUFFER_SHARE = 0.7  # of the receive buffer that the windows may fill
MAX_INCOMING = 32  # concurrent incoming transfers
MAX_INCOMING_PER_PEER = 4  # concurrent incoming transfers from one IP address
DEFAULT_MAX_FILE_SIZE = 16 * 1024**3  # the largest file accepted, unless configured
MAX_SETTLED = 1024  # finished incoming transfers remembered (to answer late datagrams)
MAX_OFFERS = 256  # transfers offered to this client (by the server) and not yet settled
DEFAULT_ASK_TIMEOUT = 120.0  # seconds the user has to /accept or /reject an offer
REPORT_INTERVAL = 60.0  # at most one log line this often about datagrams that failed authentication
DECISIONS = ("accept", "ask", "refuse")


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

    A file is received only for a transfer the server offered (L{expect}),
    and every datagram of a transfer, both ways, is authenticated with its
    secret: anything else is ignored at the cost of a dictionary lookup.

    @param directory: where received files are written.
    @param listener: told of received files, failures and progress (see
        C{docs/TRANSFER.md}); its methods are called from the reactor thread.
    @param clock: an L{IReactorTime}; the global reactor by default.
    @param idle_timeout: seconds of silence from the peer after which a
        transfer is given up, on either side; also how long an offer waits
        for its announcement.
    @param loss: the fraction of the datagrams this endpoint sends that it
        drops on purpose (tests, benchmarks); L{None} reads
        C{CHATPROTO_TEST_UDP_LOSS}, unset means none.
    @param rng: a L{random.Random} for the loss simulation.
    @param chunk_size: bytes of file data per datagram.
    @param max_file_size: the largest file accepted from a peer, in bytes
        (16 GiB by default); L{None}: only the free disk space limits it.
    @param ask_timeout: seconds the user has to accept an offer (C{"ask"}).
    @param file_hash: the hash this endpoint's outgoing files are verified
        with, C{"blake3"} (the default) or C{"sha256"}; incoming files are
        checked with the hash their presenter announced, either.
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
        ask_timeout: float = DEFAULT_ASK_TIMEOUT,
        file_hash: str = DEFAULT_HASH,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")
        if max_file_size is not None and max_file_size < 0:
            raise ValueError("max_file_size must be a number of bytes, or None")
        self.file_hash = parse_hash_name(file_hash)
        self.directory = directory
        self.listener = listener
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.offer_timeout = idle_timeout
        self.ask_timeout = ask_timeout
        self.loss = _loss_from_environment() if loss is None else _check_loss(loss, "loss")
        self.rng = rng if rng is not None else random.Random()
        self.chunk_size = chunk_size
        self.max_file_size = max_file_size
        self.dropped = 0  # datagrams dropped by the loss simulation
        self.ignored = 0  # datagrams of no transfer this endpoint knows (or from elsewhere)
        self.forged = 0  # datagrams of a known transfer that failed authentication
        self._reported_forged = 0
        self._report_at = None
        self._receive_buffer = None  # bytes, once known from the socket
        self._sendto = None  # the socket's own sendto, once known (see startProtocol)
        self.pool = BufferPool()  # the datagram buffers a TransferPort reads into (port.py)
        self._outgoing: dict[int, Outgoing] = {}
        self._offers: dict[int, Offer] = {}
        self._incoming: dict[int, Incoming] = {}
        self._settled: dict[int, None] = {}  # ids of finished incoming transfers, oldest first
        self._stopped = False
        self._handlers = {
            ANNOUNCE: self._on_announce,
            ACCEPT: self._on_accept,
            ACK: self._on_ack,
            DONE: self._on_done,
            FAIL: self._on_fail,
            HASH: self._on_hash,
            HOLD: self._on_hold,
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
        if isinstance(sock, socket.socket) and not getattr(transport, "_connectedAddr", None):
            # Twisted's Port.write checks the address (three isIPAddress calls,
            # ~3 us a datagram); every address this endpoint sends to is an
            # IP address already checked (send_file) or one a datagram came from
            self._sendto = sock.sendto
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
        self._sendto = None

    def _receive_window(self) -> int:
        """Chunks the socket buffer holds, shared by the transfers coming in."""
        active = sum(1 for t in self._incoming.values() if t.state == "receiving") or 1
        if self._receive_buffer is None:
            window = DEFAULT_RECEIVE_WINDOW
        else:
            # what a datagram costs in the buffer on Linux (measured): small
            # ones take a power-of-two allocation, large ones ~1.2 KiB extra
            size = self.chunk_size + DATA_HEADER.size + TAG_SIZE
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
            if self._sendto is not None:
                self._sendto(datagram, addr)
            else:
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
        self,
        path: str,
        presenter: str,
        peer: tuple[str, int],
        peer_name: str | None = None,
        *,
        transfer_id,
        secret,
    ) -> defer.Deferred:
        """
        Send the file at C{path} to C{peer} as C{presenter}, in the transfer
        the server set up (C{transfer_id}, C{secret}: from its C{PEER} line).

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
        try:
            tid = parse_transfer_id(transfer_id)
            keys = Keys(parse_secret(secret), tid, presenter=True)
        except ValueError as e:
            why = str(e)
        else:
            if tid in self._outgoing:
                why = "this transfer is already being sent"
        if self._stopped:
            why = "the transfer endpoint is stopped"
        if why is not None:
            return defer.fail(TransferFailed(why))
        transfer = None

        def cancel(deferred):
            if transfer is not None:
                transfer.fail("the presenter cancelled the transfer", notify=False)

        deferred = defer.Deferred(cancel)
        try:
            transfer = Outgoing(self, keys, path, basename, presenter, peer, peer_name, deferred)
        except OSError as e:
            return defer.fail(TransferFailed(f"File {basename} cannot be read: {e.strerror}"))
        self._outgoing[tid] = transfer
        return deferred

    def expect(self, transfer_id, secret, presenter: str, presenter_ip: str, filename: str,
               decision: str = "accept") -> int:
        """
        The server told this client (C{OFFER}) that C{presenter}, from
        C{presenter_ip}, sends it C{filename} (its base name is used) in the
        transfer C{transfer_id} with C{secret}.  Only then is that transfer's
        announcement answered.  C{decision}: C{"accept"} it at once, C{"ask"}
        (the listener's C{transfer_offered} is called once it is announced,
        then L{accept_offer} or L{refuse_offer}), or C{"refuse"} it (the
        presenter is told so).

        @return: the transfer id, as an C{int}.
        @raise ValueError: a malformed id or secret, an unsafe name, an id
            already known, too many offers at once; the text says which.
        """
        if decision not in DECISIONS:
            raise ValueError(f"the decision must be one of {', '.join(DECISIONS)}")
        tid = parse_transfer_id(transfer_id)
        keys = Keys(parse_secret(secret), tid, presenter=False)
        basename = os.path.basename(filename)
        why = check_presenter(presenter) or check_basename(basename)
        if why is None and not (abstract.isIPAddress(presenter_ip) or abstract.isIPv6Address(presenter_ip)):
            why = "the presenter's address is not an IP address"
        if why is None and self._stopped:
            why = "the transfer endpoint is stopped"
        if why is None and (tid in self._offers or tid in self._outgoing):
            why = "this transfer was already offered"
        if why is None and len(self._offers) >= MAX_OFFERS:
            why = "too many transfers offered at once"
        if why is not None:
            raise ValueError(why)
        self._offers[tid] = Offer(self, keys, presenter, presenter_ip, basename, decision)
        return tid

    def accept_offer(self, transfer_id) -> bool:
        """The user accepts an offer it was asked about; C{False} if it is no longer waiting."""
        offer = self._offers.get(parse_transfer_id(transfer_id))
        return offer is not None and offer.accept()

    def refuse_offer(self, transfer_id, why: str = "declined by the user") -> bool:
        """The user refuses an offer; the presenter is told; C{False} if it is no longer waiting."""
        offer = self._offers.get(parse_transfer_id(transfer_id))
        if offer is None or offer.state not in ("offered", "asking"):
            return False
        offer.refuse(why, notify=False)
        return True

    def offer_waiting(self, transfer_id) -> bool:
        """Whether an offer still waits for the user's answer."""
        offer = self._offers.get(parse_transfer_id(transfer_id))
        return offer is not None and offer.state in ("offered", "asking")

    def stop(self) -> None:
        """Give every transfer up, tell the peers, cancel the timers, remove temp files."""
        if self._stopped:
            return
        self._stopped = True
        for transfer in list(self._outgoing.values()):
            transfer.fail("the presenter stopped", notify=False)
        for transfer in list(self._incoming.values()):
            transfer.stop()
        for offer in list(self._offers.values()):
            offer.stop()

    # -- datagrams ----------------------------------------------------------------
    #
    # Cheap checks first (the type, a dictionary lookup of the transfer id,
    # the source address), then the tag; a datagram that fails any of them is
    # only counted.  Handlers get the datagram without its tag.

    def datagramReceived(self, data: bytes, addr) -> None:
        if self._stopped or len(data) < MIN_DATAGRAM or data[:2] != MAGIC:
            self.ignored += 1
            return
        kind = data[2]
        tid = int.from_bytes(data[3:11], "big")
        if kind == DATA:
            transfer = self._incoming.get(tid)
            if transfer is None or transfer.peer != addr or len(data) < DATA_HEADER.size + TAG_SIZE:
                self.ignored += 1
            elif transfer.keys.check(data):
                transfer.data(data)
            else:
                self._forgery()
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.ignored += 1
        else:
            handler(data, addr, tid)

    def slotReceived(self, slot: bytearray, size: int, addr) -> bool:
        """
        A datagram a L{TransferPort} read into C{slot} (from L{pool}): a DATA
        datagram is taken as a C{memoryview} of it; C{True} if the endpoint
        kept the buffer (the receiver's worker gives it back once written and
        hashed), C{False} if the port may reuse it at once.
        """
        if size < DATA_HEADER.size + TAG_SIZE or slot[2] != DATA or self._stopped or slot[:2] != MAGIC:
            self.datagramReceived(bytes(memoryview(slot)[:size]), addr)
            return False
        transfer = self._incoming.get(int.from_bytes(slot[3:11], "big"))
        if transfer is None or transfer.peer != addr:
            self.ignored += 1
            return False
        data = memoryview(slot)[:size]
        if not transfer.keys.check(data):
            self._forgery()
            return False
        return transfer.data(data)

    def _forgery(self) -> None:
        """Count a datagram that failed authentication; log a count at most once a minute."""
        self.forged += 1
        now = self.clock.seconds()
        if self._report_at is None or now >= self._report_at:
            self._report_at = now + REPORT_INTERVAL
            count, self._reported_forged = self.forged - self._reported_forged, self.forged
            log.info("p2p: {count} datagram(s) failed authentication and were ignored", count=count)

    def _authentic_outgoing(self, data, addr, tid) -> Outgoing | None:
        """The presenter's transfer this datagram from its receiver is for, if authentic."""
        transfer = self._outgoing.get(tid)
        if transfer is None or transfer.peer != addr:
            self.ignored += 1
            return None
        if not transfer.keys.check(data):
            self._forgery()
            return None
        transfer.heard()
        return transfer

    def _authentic_offer(self, data, addr, tid) -> Offer | None:
        """The offer this datagram from its presenter is for, if authentic."""
        offer = self._offers.get(tid)
        if offer is None or addr[0] != offer.presenter_ip or (offer.peer is not None and offer.peer != addr):
            self.ignored += 1
            return None
        if not offer.keys.check(data):
            self._forgery()
            return None
        return offer

    def _on_accept(self, data, addr, tid) -> None:
        transfer = self._authentic_outgoing(data, addr, tid)
        if transfer is not None:
            try:
                (rwnd,) = ACCEPT_BODY.unpack_from(data[:-TAG_SIZE], HEADER.size)
            except struct.error:
                rwnd = DEFAULT_RECEIVE_WINDOW
            transfer.accepted(rwnd)

    def _on_ack(self, data, addr, tid) -> None:
        transfer = self._authentic_outgoing(data, addr, tid)
        if transfer is not None:
            transfer.acked(data[:-TAG_SIZE])

    def _on_done(self, data, addr, tid) -> None:
        transfer = self._authentic_outgoing(data, addr, tid)
        if transfer is not None:
            transfer.done()

    def _on_hold(self, data, addr, tid) -> None:
        transfer = self._authentic_outgoing(data, addr, tid)
        if transfer is not None:
            transfer.hold()

    def _on_fail(self, data, addr, tid) -> None:
        outgoing = self._outgoing.get(tid)
        if outgoing is not None and outgoing.peer == addr:
            if outgoing.keys.check(data):
                outgoing.heard()
                outgoing.peer_failed(decode_reason(data))
                return
            if tid not in self._offers:
                self._forgery()
                return
        offer = self._authentic_offer(data, addr, tid)
        if offer is not None:
            offer.presenter_failed(decode_reason(data))

    def _on_hash(self, data, addr, tid) -> None:
        incoming = self._incoming.get(tid)
        if incoming is None or incoming.peer != addr:
            self.ignored += 1
        elif incoming.keys.check(data):
            incoming.hashed(data[:-TAG_SIZE])
        else:
            self._forgery()

    def _on_announce(self, data, addr, tid) -> None:
        offer = self._authentic_offer(data, addr, tid)
        if offer is not None:
            offer.announced(data[:-TAG_SIZE], addr)

    # -- what an offer asks of the endpoint -----------------------------------------

    def _parse_announce(self, body: bytes):
        """
        C{(size, chunk size, presenter, base name, hash algorithm)} of an
        ANNOUNCE without its tag, or L{None}.  The algorithm's byte after the
        names is absent in announcements of earlier clients: SHA-256.
        """
        try:
            size, chunk_size, plen, nlen = ANNOUNCE_BODY.unpack_from(body, HEADER.size)
        except struct.error:
            return None
        start = HEADER.size + ANNOUNCE_BODY.size
        names_end = start + plen + nlen
        if len(body) == names_end:
            algorithm = SHA256
        elif len(body) == names_end + ANNOUNCE_HASH.size:
            (algorithm,) = ANNOUNCE_HASH.unpack_from(body, names_end)
        else:
            return None
        try:
            presenter = body[start : start + plen].decode("utf-8")
            basename = body[start + plen : names_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return size, chunk_size, presenter, basename, algorithm

    def _check_announce(self, size: int, chunk_size: int, algorithm: int = SHA256) -> str | None:
        """Why an announced file cannot be taken whatever else runs, or L{None}."""
        if not hash_available(algorithm):
            name = HASH_NAMES.get(algorithm, f"number {algorithm}")
            return f"this client cannot check the file's hash ({name})"
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            return "the chunk size is out of range"
        if -(-size // chunk_size) > 0xFFFFFFFF:
            return "the file is too large"
        limit = self.max_file_size
        if limit is not None and size > limit:
            return f"the file is too large ({size_text(size)}; the limit is {size_text(limit)})"
        return None

    def _check_load(self, size: int, addr) -> str | None:
        """
        Why a transfer cannot start now, or L{None}.  Every commitment is
        bounded: the number of transfers (in all and per IP address) and the
        disk space, reserved across them all.
        """
        receiving = [t for t in self._incoming.values() if t.state == "receiving"]
        if len(receiving) >= MAX_INCOMING:
            return "too many transfers at once"
        if sum(t.peer[0] == addr[0] for t in receiving) >= MAX_INCOMING_PER_PEER:
            return f"too many transfers at once from {printable(str(addr[0]), 64)}"
        if size > _incoming_module.free_space(self.directory) - sum(t.remaining() for t in receiving):
            return f"not enough disk space for {size / 1048576:.1f} MiB"
        return None

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
