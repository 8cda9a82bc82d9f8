"""
Verified, loss-tolerant file transfer between two clients over UDP (/p2pvideo).

One L{TransferEndpoint} (a L{DatagramProtocol}) serves every transfer of a
client, in both directions at once.  It knows nothing of the chat client: it
is given a directory, a listener and, optionally, a clock.  The datagram
format and the state machines are described in C{docs/TRANSFER.md}.

In short, the presenter hashes the file, announces it (transfer id, presenter,
file name, size, chunk size, SHA-256), and once the receiver accepts it sends
numbered chunks under a congestion window bounded by the receiver's advertised
window.  The receiver writes every chunk into a temporary file in its
directory, acknowledges the highest packet it saw and lists the chunks it
still misses; the presenter resends what was lost.  When every chunk is there
and the SHA-256 matches, the receiver renames the temporary file to
C{PRESENTER_BASENAME} and confirms.  Silence for C{idle_timeout} seconds gives
a transfer up on either side, and no partial file is ever left under the final
name.
"""

from __future__ import annotations

import hashlib
import os
import errno
import random
import socket
import stat
import struct
import threading
from queue import SimpleQueue
from array import array
from collections import deque

from twisted.internet import abstract, defer, error
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_FILE_SIZE",
    "LOSS_ENVIRONMENT_VARIABLE",
    "TransferEndpoint",
    "TransferFailed",
    "check_basename",
    "check_presenter",
    "final_name",
]

log = Logger()

LOSS_ENVIRONMENT_VARIABLE = "CHATPROTO_TEST_UDP_LOSS"

# --- the datagram format (docs/TRANSFER.md) ------------------------------------

MAGIC = b"CT"
ANNOUNCE, ACCEPT, DATA, ACK, DONE, FAIL, HASH = 1, 2, 3, 4, 5, 6, 7

HEADER = struct.Struct("!2sBQ")  # magic, type, transfer id
ANNOUNCE_BODY = struct.Struct("!QIBH")  # size, chunk size, len(presenter), len(name)
ACCEPT_BODY = struct.Struct("!H")  # receive window (chunks)
DATA_HEADER = struct.Struct("!2sBQIII")  # header + chunk index, packet number, timestamp (us)
ACK_BODY = struct.Struct("!IIIIHH")  # highest packet, its timestamp, cum, hi, window, n ranges
RANGE = struct.Struct("!II")  # a run of missing chunks [start, end)
HASH_BODY = struct.Struct("!32s")  # the file's SHA-256, sent once every chunk was sent

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
MAX_CHUNK_SIZE = MAX_DATAGRAM - DATA_HEADER.size
MIN_CHUNK_SIZE = 512
DEFAULT_CHUNK_SIZE = 60 * 1024  # measured: bench/bench_transfer.py --chunk-size
MAX_RANGES = 128  # missing runs listed in one ACK
MAX_REASON = 200  # bytes of a FAIL reason

# --- names ---------------------------------------------------------------------

MAX_PRESENTER = 64
NAME_MAX = 255  # bytes of a file name on common file systems


def check_presenter(presenter: str) -> str | None:
    """
    Return why C{presenter} cannot prefix a file name, or L{None} if it can.

    A plain name is 1 to 64 bytes (UTF-8) of printable characters without
    whitespace or path separators, not starting with a dot.
    """
    if not presenter or len(presenter.encode("utf-8", "surrogatepass")) > MAX_PRESENTER:
        return "the presenter's name is empty or too long"
    if not presenter.isprintable() or any(c.isspace() for c in presenter):
        return "the presenter's name is not plain"
    if "/" in presenter or "\\" in presenter or presenter.startswith("."):
        return "the presenter's name is not plain"
    return None


def check_basename(basename: str) -> str | None:
    """
    Return why C{basename} is not a safe base name, or L{None} if it is.

    Refused: empty, C{.} or C{..}, path separators, NUL and other control
    characters, more than 200 bytes of UTF-8.
    """
    if basename in ("", ".", ".."):
        return "the file name is empty"
    if "/" in basename or "\\" in basename or "\x00" in basename:
        return "the file name contains a path separator"
    if not basename.isprintable():
        return "the file name contains control characters"
    if len(basename.encode("utf-8", "surrogatepass")) > NAME_MAX - MAX_PRESENTER - 1:
        return "the file name is too long"
    return None


def final_name(presenter: str, basename: str) -> str:
    """The name the receiver stores a file under: C{PRESENTER_BASENAME}."""
    return f"{presenter}_{basename}"


def _size_text(size: float) -> str:
    """C{size} bytes for a person: C{16 GiB}, C{78.4 GiB}, C{512 bytes}."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + " " + unit
    return f"{size:g} bytes"


def _printable(text: str, limit: int = MAX_REASON) -> str:
    """C{text} with anything a terminal could interpret replaced."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class TransferFailed(Exception):
    """A transfer was given up; C{reason} (also C{str(error)}) says why, for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- tuning --------------------------------------------------------------------

INITIAL_WINDOW = 16  # chunks in flight before the first acknowledgement
MIN_WINDOW = 2
DEFAULT_RECEIVE_WINDOW = 64  # chunks, when the socket's buffer size is unknown
SOCKET_BUFFER = 4 * 1024 * 1024  # asked for with SO_RCVBUF / SO_SNDBUF
BUFFER_SHARE = 0.7  # of the receive buffer that the windows may fill
REORDER_THRESHOLD = 3  # a chunk is lost once 3 later packets arrived
LOSS_TOLERANCE = 0.15  # per-round loss fraction taken as random, not congestion
ACK_EVERY = 8  # data packets per acknowledgement
ACK_DELAY = 0.005  # seconds before a lone packet is acknowledged
MIN_RTO, MAX_RTO, INITIAL_RTO = 0.05, 1.0, 0.25
MIN_TAIL_PROBE = 0.01
ANNOUNCE_RETRY = 0.1  # first interval between announcements (doubles up to 1 s)
MAX_ANNOUNCE_RETRY = 1.0
REPLY_INTERVAL = 0.02  # at most one DONE/FAIL repeat per this many seconds
PROGRESS_INTERVAL = 0.25
MAX_INCOMING = 32  # concurrent incoming transfers
MAX_INCOMING_PER_PEER = 4  # concurrent incoming transfers from one IP address
DEFAULT_MAX_FILE_SIZE = 16 * 1024**3  # the largest file accepted, unless configured
MAX_AHEAD = 1 << 18  # chunks tracked beyond the contiguous prefix (> 2 x the largest window)
TRACK_TRIM = 4096  # chunks of the prefix dropped from the tracking at a time
MAX_SETTLED = 1024  # finished incoming transfers remembered (to answer late datagrams)
WORKER_BATCH = 1024 * 1024  # bytes of chunks handed over to a receiver's worker thread at a time
WORKER_QUEUE = 4 * 1024 * 1024  # bytes of chunks queued for the worker, at most
READ_BACK = 1024 * 1024  # bytes read back (and hashed) at a time when a gap fills


def _micros(seconds: float) -> int:
    return int(seconds * 1e6) & 0xFFFFFFFF


def _encode_fail(tid: int, reason: str) -> bytes:
    return HEADER.pack(MAGIC, FAIL, tid) + reason.encode("utf-8")[:MAX_REASON]


def _decode_reason(data: bytes) -> str:
    return _printable(data[HEADER.size :].decode("utf-8", "replace"))


class _Timer:
    """
    A deadline on a clock that can be pushed later cheaply.

    Moving the deadline later only stores it; the pending call, when it fires
    early, schedules itself again.  So a per-packet update costs an assignment.
    """

    __slots__ = ("_call", "_clock", "_fn", "deadline")

    def __init__(self, clock, fn):
        self._clock = clock
        self._fn = fn
        self._call = None
        self.deadline = None

    def set(self, deadline: float) -> None:
        self.deadline = deadline
        call = self._call
        if call is None:
            self._call = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._fire)
        elif deadline < call.getTime():
            call.reset(max(0.0, deadline - self._clock.seconds()))

    def push(self, deadline: float) -> None:
        """Move a pending deadline (later, cheaply); no effect on an idle timer."""
        if self.deadline is not None:
            if deadline < self.deadline:
                self.set(deadline)
            else:
                self.deadline = deadline

    def cancel(self) -> None:
        self.deadline = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    @property
    def active(self) -> bool:
        return self.deadline is not None

    def _fire(self) -> None:
        self._call = None
        if self.deadline is None:
            return
        now = self._clock.seconds()
        if now + 1e-9 < self.deadline:
            self._call = self._clock.callLater(self.deadline - now, self._fire)
            return
        self.deadline = None
        self._fn()


class _Outgoing:
    """The presenter's side of one transfer."""

    def __init__(self, endpoint, tid, path, basename, presenter, peer, peer_name, deferred):
        self.endpoint = endpoint
        self.tid = tid
        self.path = path
        self.basename = basename
        self.presenter = presenter
        self.peer = peer
        self.peer_name = peer_name
        self.deferred = deferred
        clock = endpoint.clock
        self.clock = clock
        self.chunk_size = endpoint.chunk_size
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self.fd)
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        self.size = info.st_size
        self.nchunks = -(-self.size // self.chunk_size)
        # hashed as each chunk is sent for the first time (in order): the
        # SHA-256 is sent at the end (HASH), so hashing overlaps sending
        self.hash = hashlib.sha256()
        self.digest = None
        self.hash_seq = 0  # the next packet number when the HASH was last sent
        self.state = "starting"
        presenter_bytes = presenter.encode("utf-8")
        name = basename.encode("utf-8")
        self.announce = (
            HEADER.pack(MAGIC, ANNOUNCE, tid)
            + ANNOUNCE_BODY.pack(self.size, self.chunk_size, len(presenter_bytes), len(name))
            + presenter_bytes
            + name
        )
        # one datagram buffer, reused: the transport sends synchronously
        self.buffer = bytearray(DATA_HEADER.size + min(self.chunk_size, self.size))
        self.view = memoryview(self.buffer)
        self.announce_interval = ANNOUNCE_RETRY
        # sending
        self.next_new = 0  # first chunk never sent
        self.next_seq = 1  # packet number of the next data packet
        self.last_sent = array("I", bytes(4 * self.nchunks))  # chunk -> packet number
        self.retransmit = deque()
        self.queued = set()
        self.highest_acked = 0  # highest packet number the receiver saw
        self.cum = 0  # chunks below this one all arrived
        self.probe_seq = 0  # packets before this one are lost once it is acknowledged
        self.flight_base = 0  # packets up to this one no longer count as in flight
        self.tail_probed = False
        self.holes = []  # the missing ranges of the freshest ACK
        self.hi = 0  # and its "hi"
        self.cwnd = float(INITIAL_WINDOW)
        self.ssthresh = float("inf")
        self.rwnd = DEFAULT_RECEIVE_WINDOW
        self.round_end = 1
        self.round_start = 1
        self.round_lost = 0
        self.srtt = None
        self.rttvar = 0.0
        self.rto = INITIAL_RTO
        self.sent_packets = 0
        self.retransmitted = 0
        self.start = clock.seconds()
        self.timeline = {"start": self.start}  # when each phase began (diagnostics)
        self.last_heard = self.start
        self.progress_at = self.start
        self.progress_bytes = 0
        self.idle_timer = _Timer(clock, self._idle)
        self.retry_timer = _Timer(clock, self._retry)
        self.start_call = clock.callLater(0, self._start)

    # -- before the transfer ------------------------------------------------

    def _start(self) -> None:
        self.start_call = None
        self.state = "announcing"
        now = self.clock.seconds()
        self.timeline["announced"] = now
        self.last_heard = now
        self.start = now
        self.progress_at = now
        self.idle_timer.set(now + self.endpoint.idle_timeout)
        self._send_announce()

    def _send_announce(self) -> None:
        self.endpoint._write(self.announce, self.peer)
        self.retry_timer.set(self.clock.seconds() + self.announce_interval)
        self.announce_interval = min(MAX_ANNOUNCE_RETRY, self.announce_interval * 2)

    # -- datagrams from the receiver ------------------------------------------

    def heard(self) -> None:
        now = self.clock.seconds()
        self.last_heard = now
        self.idle_timer.push(now + self.endpoint.idle_timeout)

    def accepted(self, rwnd: int) -> None:
        if self.state != "announcing":
            return
        self.state = "sending"
        self.timeline["accepted"] = self.clock.seconds()
        self.rwnd = max(MIN_WINDOW, rwnd)
        self.retry_timer.cancel()
        self._pump()

    def acked(self, data: bytes) -> None:
        if self.state == "announcing":
            self.accepted(self.rwnd)
        if self.state != "sending":
            return
        try:
            highest, echo, cum, hi, rwnd, nranges = ACK_BODY.unpack_from(data, HEADER.size)
        except struct.error:
            return
        if highest >= self.next_seq or cum > self.nchunks or hi > self.nchunks:
            return  # not an answer to anything sent
        now = self.clock.seconds()
        self.rwnd = max(MIN_WINDOW, rwnd)
        self.cum = max(self.cum, cum)
        newly = highest - self.highest_acked
        fresh = newly >= 0
        if fresh:
            self.hi = hi
            holes = self.holes = []
        if newly > 0:
            self.highest_acked = highest
            self.tail_probed = False
            rtt = ((_micros(now) - echo) & 0xFFFFFFFF) / 1e6
            if rtt < MAX_RTO:
                if self.srtt is None:
                    self.srtt, self.rttvar = rtt, rtt / 2
                else:
                    self.rttvar += 0.25 * (abs(self.srtt - rtt) - self.rttvar)
                    self.srtt += 0.125 * (rtt - self.srtt)
                self.rto = min(MAX_RTO, max(MIN_RTO, self.srtt + 4 * self.rttvar + ACK_DELAY))
            if self.cwnd < self.ssthresh:
                self.cwnd += newly
            else:
                self.cwnd += newly / self.cwnd
            limit = 2 * self.rwnd
            if self.cwnd > limit:
                self.cwnd = float(limit)
        # losses: missing chunks whose last copy was overtaken by later packets
        last_sent = self.last_sent
        queued = self.queued
        probe = self.probe_seq
        lost_before = highest - REORDER_THRESHOLD
        lost = 0
        offset = HEADER.size + ACK_BODY.size
        for _ in range(min(nranges, MAX_RANGES)):
            try:
                start, end = RANGE.unpack_from(data, offset)
            except struct.error:
                break
            offset += RANGE.size
            end = min(end, self.next_new)
            if fresh and start < end:
                holes.append((start, end))
            for chunk in range(start, end):
                seq = last_sent[chunk]
                if chunk not in queued and seq and (seq <= lost_before or (seq < probe <= highest)):
                    queued.add(chunk)
                    self.retransmit.append(chunk)
                    lost += 1
        self.round_lost += lost
        if highest >= self.round_end:
            sent = self.round_end - self.round_start
            if self.round_lost > LOSS_TOLERANCE * sent:
                self.cwnd = max(float(MIN_WINDOW), self.cwnd * 0.7)
                self.ssthresh = self.cwnd
            elif self.round_lost:
                self.ssthresh = min(self.ssthresh, self.cwnd)
            self.round_start = self.round_end
            self.round_end = self.next_seq
            self.round_lost = 0
        if newly > 0:
            self.retry_timer.push(now + self.rto)
        if cum == self.nchunks and self.digest is not None and highest >= self.hash_seq:
            # every chunk arrived, and a packet sent after the HASH too, yet no
            # DONE: the HASH was lost
            self._send_hash()
        self._pump()
        if self.state == "sending":
            self._progress(now)

    def _progress(self, now: float) -> None:
        if now - self.progress_at < PROGRESS_INTERVAL:
            return
        done = min(self.size, self.cum * self.chunk_size)
        rate = (done - self.progress_bytes) / (now - self.progress_at)
        self.progress_at, self.progress_bytes = now, done
        self.endpoint._notify("transfer_progress", self.tid, "send", self.basename, done, self.size, rate)

    # -- sending ----------------------------------------------------------------

    def _pump(self) -> None:
        window = min(int(self.cwnd), self.rwnd)
        retransmit = self.retransmit
        base = max(self.highest_acked, self.flight_base)
        while self.next_seq - 1 - base < window:
            if retransmit:
                chunk = retransmit.popleft()
                self.queued.discard(chunk)
                if chunk < self.cum:
                    continue
                self.retransmitted += 1
            elif self.next_new < self.nchunks:
                chunk = self.next_new
                self.next_new += 1
                if not self._send_chunk(chunk, first=True):
                    return
                continue
            else:
                break
            if not self._send_chunk(chunk):
                return
        if self.next_new == self.nchunks and self.digest is None:
            self.digest = self.hash.digest()
            self.hash = None
            self.timeline["all sent"] = self.clock.seconds()
            self._send_hash()
        # The timer stays armed until DONE: it recovers lost tails, lost
        # retransmissions and lost acknowledgements alike.
        now = self.clock.seconds()
        if self.next_new == self.nchunks and not retransmit and not self.tail_probed:
            # the tail: if its last packets are lost nothing would reveal it,
            # so probe soon after the acknowledgements stop
            delay = self.rto if self.srtt is None else max(2 * self.srtt, MIN_TAIL_PROBE)
            self.retry_timer.set(now + min(delay, self.rto))
        elif not self.retry_timer.active:
            self.retry_timer.set(now + self.rto)

    def _send_chunk(self, chunk: int, first: bool = False) -> bool:
        """Read and send one chunk (hashing it if C{first}); C{False} if the transfer failed."""
        offset = chunk * self.chunk_size
        length = min(self.chunk_size, self.size - offset)
        end = DATA_HEADER.size + length
        view = self.view
        seq = self.next_seq
        self.next_seq = seq + 1
        stamp = _micros(self.clock.seconds())
        DATA_HEADER.pack_into(self.buffer, 0, MAGIC, DATA, self.tid, chunk, seq, stamp)
        try:
            got = os.preadv(self.fd, [view[DATA_HEADER.size : end]], offset)
        except OSError as e:
            self.fail(f"cannot read {self.basename}: {e.strerror}")
            return False
        if got != length:
            self.fail(f"{self.basename} changed while it was being sent")
            return False
        if first:
            self.hash.update(view[DATA_HEADER.size : end])
        self.last_sent[chunk] = seq
        self.sent_packets += 1
        self.endpoint._write(view[:end], self.peer)
        return True

    def _send_hash(self) -> None:
        """The SHA-256 of every chunk as first sent; repeated until DONE."""
        self.hash_seq = self.next_seq
        self.endpoint._write(HEADER.pack(MAGIC, HASH, self.tid) + HASH_BODY.pack(self.digest), self.peer)

    def _retry(self) -> None:
        """
        The retransmission timer: announce again; or, after a silence, take
        everything in flight and every missing chunk as lost and probe.
        """
        if self.state == "announcing":
            self._send_announce()
            return
        if self.state != "sending":
            return
        if self.next_new == self.nchunks and not self.tail_probed:
            self.tail_probed = True  # a tail loss probe: no penalty yet
        else:
            # nothing acknowledged for a whole RTO: congestion or a blackout
            self.cwnd = max(float(MIN_WINDOW), self.cwnd / 2)
            self.ssthresh = self.cwnd
            self.rto = min(MAX_RTO, self.rto * 2)
        self.flight_base = self.next_seq - 1
        self.probe_seq = self.next_seq
        queued, retransmit = self.queued, self.retransmit
        for start, end in self.holes:
            for chunk in range(max(start, self.cum), end):
                if chunk not in queued:
                    queued.add(chunk)
                    retransmit.append(chunk)
        self._pump()
        if self.state != "sending":
            return
        if self.digest is not None:
            self._send_hash()  # it may have been lost (before the probe: see acked)
        if (self.hi < self.next_new or not self.holes) and self.next_new:
            # the receiver's answer to the last chunk sent reveals any gap
            # below it, or repeats a lost DONE
            self.probe_seq = self.next_seq
            self.retransmitted += 1
            if not self._send_chunk(self.next_new - 1):
                return
        self.retry_timer.set(self.clock.seconds() + self.rto)

    # -- the end ------------------------------------------------------------------

    def _idle(self) -> None:
        seconds = self.endpoint.idle_timeout
        self.fail(f"no answer from the receiver for {seconds:g} seconds")

    def done(self) -> None:
        if self.state not in ("announcing", "sending"):
            return
        self._close("done")
        self.deferred.callback(self.basename)

    def peer_failed(self, reason: str) -> None:
        if self.state in ("announcing", "sending"):
            self.fail(reason, tell_peer=False)

    def fail(self, reason: str, tell_peer: bool = True, notify: bool = True) -> None:
        if self.state in ("done", "failed"):
            return
        if tell_peer and self.state != "starting":
            self.endpoint._write(_encode_fail(self.tid, reason), self.peer)
        self._close("failed")
        if notify:
            self.endpoint._notify("transfer_failed", "send", self.peer_name, self.basename, reason)
        self.deferred.errback(TransferFailed(reason))

    def _close(self, state: str) -> None:
        self.state = state
        self.timeline[state] = self.clock.seconds()
        self.idle_timer.cancel()
        self.retry_timer.cancel()
        if self.start_call is not None and self.start_call.active():
            self.start_call.cancel()
        self.start_call = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.endpoint._outgoing.pop(self.tid, None)


class _Incoming:
    """The receiver's side of one transfer."""

    def __init__(self, endpoint, key, presenter, basename, size, chunk_size):
        self.endpoint = endpoint
        self.key = key
        self.peer, self.tid = key
        self.presenter = presenter
        self.basename = basename
        self.size = size
        self.chunk_size = chunk_size
        self.expected = None  # the SHA-256, once the presenter sent it (HASH)
        self.nchunks = -(-size // chunk_size)
        clock = endpoint.clock
        self.clock = clock
        self.final_path = os.path.join(endpoint.directory, final_name(presenter, basename))
        fd, self.temp_path = _mkstemp(endpoint.directory, final_name(presenter, basename))
        self.fd = fd
        self.state = "receiving"
        # Which chunks arrived: the chunks below cum all did; received[i]
        # says whether chunk base + i did, for base <= cum.  It grows only as
        # chunks really arrive, at most MAX_AHEAD beyond cum, and forgets the
        # prefix as cum advances: an announcement alone allocates nothing,
        # whatever size it claims (docs/TRANSFER.md, Security).
        self.received = bytearray()
        self.base = 0
        self.count = 0
        self.cum = 0  # the chunks below cum all arrived and are hashed
        self.hi = 0  # one more than the highest chunk that arrived
        self.hash = hashlib.sha256()  # the worker thread's, until it ends
        self.error = None  # set by the worker thread: why writing or reading back failed
        self.cancelled = False
        self.jobs = SimpleQueue()
        self.queued = 0  # jobs put (by the reactor thread)
        self.done = 0  # jobs run (by the worker thread)
        self.batch = []  # jobs not yet handed over to the worker
        self.batch_size = max(1, WORKER_BATCH // chunk_size)
        self.queue_limit = max(2, WORKER_QUEUE // WORKER_BATCH)  # batches
        self.room = threading.Event()
        self.room.set()
        self.thread = None
        self.highest_seq = 0
        self.echo = 0
        self.unacked = 0
        self.ack_every = ACK_EVERY
        self.duplicates = 0
        self.reply = b""
        self.replied_at = -1.0
        self.start = clock.seconds()
        self.progress_at = self.start
        self.progress_bytes = 0
        self.idle_timer = _Timer(clock, self._idle)
        self.ack_timer = _Timer(clock, self.send_ack)
        self.expire_timer = _Timer(clock, self._expire)
        self.idle_timer.set(self.start + endpoint.idle_timeout)
        # Nothing is preallocated (no ftruncate to the announced size) and the
        # worker thread starts with the first batch of data.

    def remaining(self) -> int:
        """Bytes of disk space this transfer may still need (its reservation)."""
        if self.state != "receiving":
            return 0
        return max(0, self.size - self.count * self.chunk_size)

    def accept(self) -> None:
        self.endpoint._write(
            HEADER.pack(MAGIC, ACCEPT, self.tid) + ACCEPT_BODY.pack(self.endpoint._receive_window()),
            self.peer,
        )

    def hashed(self, data: bytes) -> None:
        """The presenter's SHA-256 (the first one counts: it is sent once every chunk was)."""
        self.heard()
        if self.state != "receiving":
            self._repeat_reply()
            return
        if self.expected is None:
            try:
                (self.expected,) = HASH_BODY.unpack_from(data, HEADER.size)
            except struct.error:
                return
        if self.count == self.nchunks:
            self._finish()

    def announced_again(self) -> None:
        self.heard()
        if self.state == "receiving":
            self.accept()
        else:
            self._repeat_reply(force=True)

    def heard(self) -> None:
        self.idle_timer.push(self.clock.seconds() + self.endpoint.idle_timeout)

    def data(self, data: bytes) -> None:
        if self.state != "receiving":
            self._repeat_reply()
            return
        chunk, seq, stamp = struct.unpack_from("!III", data, HEADER.size)
        now = self.clock.seconds()
        self.idle_timer.push(now + self.endpoint.idle_timeout)
        if chunk >= self.nchunks:
            return
        chunk_size = self.chunk_size
        offset = chunk * chunk_size
        length = len(data) - DATA_HEADER.size
        if length != min(chunk_size, self.size - offset):
            return  # malformed
        if seq > self.highest_seq:
            self.highest_seq = seq
            self.echo = stamp
        ack_now = False
        received = self.received
        cum = self.cum
        index = chunk - self.base
        if chunk == cum and self.hi == cum:
            # the usual case, in order with nothing ahead: nothing to track
            job = (data, offset, True, chunk + 1, chunk + 1)
            self.cum = self.hi = self.base = chunk + 1
            if received:
                del received[:]
        elif index < 0 or (index < len(received) and received[index]):
            job = None
            self.duplicates += 1
            ack_now = True  # the presenter is probing or lags behind
        elif chunk - cum >= MAX_AHEAD:
            # Too far ahead of the contiguous prefix to be tracked (never with
            # an honest presenter: MAX_AHEAD is over twice the largest window):
            # dropped, as if lost. The ACK lists every chunk up to the limit
            # that did not arrive as missing, the one the prefix waits for first.
            job = None
            self.hi = max(self.hi, min(self.nchunks, cum + MAX_AHEAD))
            ack_now = True
        else:
            if index >= len(received):
                # grow (doubling) up to the chunk, never beyond cum + MAX_AHEAD
                limit = min(self.nchunks, cum + MAX_AHEAD) - self.base
                received.extend(bytes(min(limit, max(index + 1, 2 * len(received), 256)) - len(received)))
            received[index] = 1
            if chunk > self.hi:
                ack_now = True  # a new gap: tell the presenter at once
            if chunk >= self.hi:
                self.hi = chunk + 1
            if chunk == cum:
                # this chunk and those that arrived ahead of it are now contiguous
                base = self.base
                cum = received.find(0, index + 1)
                self.cum = cum = base + (len(received) if cum < 0 else cum)
                job = (data, offset, True, chunk + 1, cum)
                if cum - base >= TRACK_TRIM:
                    del received[: cum - base]  # cheap: a bytearray drops its head in place
                    self.base = cum
            else:
                job = (data, offset, False, 0, 0)
        if job is not None:
            if self.error is not None:
                self.fail(self.error)
                return
            self.count += 1
            # writing and hashing run in the worker thread (both release the
            # GIL), a batch at a time: few hand-overs between the threads
            batch = self.batch
            batch.append(job)
            if len(batch) >= self.batch_size:
                self._hand_over()
            if self.count == self.nchunks:
                if self.expected is not None:
                    self._finish()
                    return
                ack_now = True  # all here: the HASH is late, or lost
        self.unacked += 1
        if ack_now or self.unacked >= self.ack_every:
            self.send_ack()
        elif not self.ack_timer.active:
            self.ack_timer.set(now + ACK_DELAY)
        if now - self.progress_at >= PROGRESS_INTERVAL:
            self._progress(now)

    # -- the worker thread: writes and hashes, in arrival order ----------------

    def _hand_over(self) -> None:
        """Queue the batch for the worker; wait if it is too far behind (back pressure)."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name=f"transfer-{self.tid:016x}", daemon=True)
            self.thread.start()
        self.queued += 1
        self.jobs.put(batch)
        if self.queued - self.done > self.queue_limit:
            room = self.room
            room.clear()
            if self.queued - self.done > self.queue_limit:
                room.wait()

    def _work(self) -> None:
        """
        Run batches of jobs C{(datagram, offset, extends, read back from, to)}.
        Write every datagram's chunk at its C{offset} (contiguous ones with
        one C{pwritev}); then, in order, hash the chunks that extend the
        contiguous prefix, each followed by the chunks C{[from, to)} that had
        arrived ahead of it, read back from the file.  C{None} ends the thread.
        """
        jobs, room = self.jobs, self.room
        limit = self.queue_limit // 2
        while True:
            batch = jobs.get()
            if batch is None:
                return
            if self.error is None and not self.cancelled:
                try:
                    self._write_batch(batch)
                    self._hash_batch(batch)
                except OSError as e:
                    self.error = e.strerror
                except Exception as e:  # noqa: BLE001 - the reactor thread reports it
                    self.error = f"cannot write the file: {e!r}"
            self.done += 1
            if not room.is_set() and self.queued - self.done <= limit:
                room.set()

    def _write_batch(self, batch) -> None:
        fd, header = self.fd, DATA_HEADER.size
        run, run_offset, run_end = [], 0, -1
        for data, offset, _extends, _start, _end in batch + [(b"", -2, False, 0, 0)]:
            if offset != run_end or len(run) >= 512:
                if run:
                    expected = run_end - run_offset
                    try:
                        written = os.pwritev(fd, run, run_offset)
                    except OSError as e:
                        raise OSError(e.errno, f"cannot write the file: {e.strerror}") from None
                    if written != expected:
                        raise OSError(errno.ENOSPC, "cannot write the file: no space left on device")
                run, run_offset, run_end = [], offset, offset
            payload = memoryview(data)[header:]
            run.append(payload)
            run_end += len(payload)

    def _hash_batch(self, batch) -> None:
        fd, digest, chunk_size, size = self.fd, self.hash, self.chunk_size, self.size
        header = DATA_HEADER.size
        pending = []  # consecutive payloads to hash in one update
        for data, _offset, extends, start, end in batch:
            if not extends:
                continue
            pending.append(memoryview(data)[header:])
            if start == end:
                continue
            digest.update(b"".join(pending))
            pending = []
            position, stop = start * chunk_size, min(size, end * chunk_size)
            while position < stop:
                try:
                    piece = os.pread(fd, min(READ_BACK, stop - position), position)
                except OSError as e:
                    raise OSError(e.errno, f"cannot read the file back: {e.strerror}") from None
                if not piece:
                    raise OSError(errno.EIO, "cannot read the file back: it is shorter")
                digest.update(piece)
                position += len(piece)
        if pending:
            digest.update(b"".join(pending))

    def _stop_worker(self, cancel: bool) -> None:
        """Let the worker finish (or skip, if C{cancel}) what is queued, and end it."""
        self.cancelled = cancel
        if cancel and self.thread is None:
            self.batch = []  # nothing was handed over: nothing to undo
            return
        self._hand_over()
        if self.thread is None:
            return  # no data ever came
        self.jobs.put(None)
        self.room.set()
        self.thread.join()
        self.thread = None

    def send_ack(self) -> None:
        if self.state != "receiving":
            return
        self.unacked = 0
        self.ack_timer.cancel()
        # the missing runs in [cum, hi), as flat start, end pairs relative to base
        bounds = []
        find = self.received.find
        base = self.base
        start = self.cum - base
        hi = self.hi - base
        tracked = len(self.received)  # the chunks from there to hi did not arrive
        limit = 2 * MAX_RANGES
        while start < hi and len(bounds) < limit:
            found = find(0, start, hi)
            if found < 0:
                if tracked < hi:
                    bounds += (max(start, tracked), hi)
                break
            end = find(1, found, hi)
            if end < 0:
                end = hi
            bounds += (found, end)
            start = end
        if base:
            bounds = [bound + base for bound in bounds]
        window = self.endpoint._receive_window()
        self.ack_every = max(1, min(ACK_EVERY, window // 4))
        self.endpoint._write(
            HEADER.pack(MAGIC, ACK, self.tid)
            + ACK_BODY.pack(
                self.highest_seq,
                self.echo,
                self.cum,
                self.hi,
                window,
                len(bounds) // 2,
            )
            + struct.pack(f"!{len(bounds)}I", *bounds),
            self.peer,
        )

    def _progress(self, now: float) -> None:
        done = min(self.size, self.count * self.chunk_size)
        rate = (done - self.progress_bytes) / (now - self.progress_at)
        self.progress_at, self.progress_bytes = now, done
        self.endpoint._notify("transfer_progress", self.tid, "receive", self.basename, done, self.size, rate)

    def _finish(self) -> None:
        self._stop_worker(cancel=False)
        if self.error is not None:
            self.fail(self.error)
            return
        digest = self.hash.digest()
        self._close_file()
        if digest != self.expected:
            self._remove_temp()
            self.fail("the file was corrupted in transit (SHA-256 mismatch)")
            return
        try:
            os.replace(self.temp_path, self.final_path)
        except OSError as e:
            self._remove_temp()
            self.fail(f"cannot store the file: {e.strerror}")
            return
        self._settle("done", HEADER.pack(MAGIC, DONE, self.tid))
        self.endpoint._notify("transfer_received", self.presenter, self.basename, self.final_path)

    def _idle(self) -> None:
        seconds = self.endpoint.idle_timeout
        self.fail(f"no data from {self.presenter} for {seconds:g} seconds")

    def fail(self, reason: str, tell_peer: bool = True, notify: bool = True) -> None:
        if self.state != "receiving":
            return
        self._stop_worker(cancel=True)
        self._close_file()
        self._remove_temp()
        reply = _encode_fail(self.tid, reason)
        self._settle("failed", reply if tell_peer else b"")
        if notify:
            self.endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)

    def _settle(self, state: str, reply: bytes) -> None:
        """Keep answering late datagrams with C{reply} for a while, then forget."""
        self.state = state
        self.hash = None
        self.received = None
        self.idle_timer.cancel()
        self.ack_timer.cancel()
        self.reply = reply
        self._repeat_reply(force=True)
        self.expire_timer.set(self.clock.seconds() + self.endpoint.idle_timeout)
        self.endpoint._remember_settled(self.key)

    def _repeat_reply(self, force: bool = False) -> None:
        now = self.clock.seconds()
        if self.reply and (force or now - self.replied_at >= REPLY_INTERVAL):
            self.replied_at = now
            self.endpoint._write(self.reply, self.peer)

    def _expire(self) -> None:
        self.expire_timer.cancel()
        self.endpoint._incoming.pop(self.key, None)
        self.endpoint._settled.pop(self.key, None)

    def stop(self) -> None:
        self.fail("the receiver stopped", notify=False)
        self.idle_timer.cancel()
        self.ack_timer.cancel()
        self._expire()

    def _close_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _remove_temp(self) -> None:
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


def _mkstemp(directory: str, name: str):
    import tempfile

    fd, path = tempfile.mkstemp(prefix=f".{name[:100]}.", suffix=".part", dir=directory)
    try:
        os.fchmod(fd, 0o644)
    except (AttributeError, OSError):
        pass
    return fd, path


def _free_space(directory: str) -> float:
    """Bytes available in C{directory}'s file system (infinite if unknown)."""
    try:
        info = os.statvfs(directory)
    except (AttributeError, OSError):
        return float("inf")
    return info.f_bavail * info.f_frsize


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
        self._outgoing: dict[int, _Outgoing] = {}
        self._incoming: dict[tuple, _Incoming] = {}
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
            transfer = _Outgoing(self, tid, path, basename, presenter, peer, peer_name, deferred)
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

    def _outgoing_from(self, addr, tid) -> _Outgoing | None:
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
            transfer.peer_failed(_decode_reason(data))
            return
        incoming = self._incoming.get((addr, tid))
        if incoming is not None:
            incoming.fail(_decode_reason(data), tell_peer=False)

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
            why = f"the file is too large ({_size_text(size)}; the limit is {_size_text(limit)})"
        if why is None:
            # Every commitment is bounded: the number of transfers (in all and
            # per IP address) and the disk space, reserved across them all.
            receiving = [t for t in self._incoming.values() if t.state == "receiving"]
            if len(receiving) >= MAX_INCOMING:
                why = "too many transfers at once"
            elif sum(t.peer[0] == addr[0] for t in receiving) >= MAX_INCOMING_PER_PEER:
                why = f"too many transfers at once from {_printable(str(addr[0]), 64)}"
            elif size > _free_space(self.directory) - sum(t.remaining() for t in receiving):
                why = f"not enough disk space for {size / 1048576:.1f} MiB"
        if why is not None:
            return self._refuse(key, presenter, basename, why)
        try:
            transfer = _Incoming(self, key, presenter, basename, size, chunk_size)
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
        self._write(_encode_fail(tid, reason), addr)
        self._notify("transfer_failed", "receive", _printable(presenter, 64), _printable(basename), reason)
