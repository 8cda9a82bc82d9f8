"""The presenter's side of one transfer (docs/TRANSFER.md, State machines, Reliability)."""

from __future__ import annotations

import errno
import os
import stat
import struct
from array import array
from collections import deque

from .base import ACK_DELAY, DEFAULT_RECEIVE_WINDOW, MIN_WINDOW, PROGRESS_INTERVAL, Timer, TransferFailed
from .wire import ACK_BODY, ANNOUNCE, ANNOUNCE_BODY, DATA, DATA_HEADER, HASH, HASH_BODY, HEADER, MAGIC
from .wire import ANNOUNCE_HASH, MAX_RANGES, RANGE, SHA256, TAG_SIZE, encode_fail, micros, new_hash

INITIAL_WINDOW = 16  # chunks in flight before the first acknowledgement
REORDER_THRESHOLD = 3  # a chunk is lost once 3 later packets arrived
LOSS_TOLERANCE = 0.15  # per-round loss fraction taken as random, not congestion
MIN_RTO, MAX_RTO, INITIAL_RTO = 0.05, 1.0, 0.25
MIN_TAIL_PROBE = 0.01
ANNOUNCE_RETRY = 0.1  # first interval between announcements (doubles up to 1 s)
MAX_ANNOUNCE_RETRY = 1.0


class Outgoing:
    """The presenter's side of one transfer."""

    def __init__(self, endpoint, keys, path, basename, presenter, peer, peer_name, deferred):
        self.endpoint = endpoint
        self.keys = keys  # seal what goes to the receiver, check what comes back
        self.tid = keys.tid
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
        # hash is sent at the end (HASH), so hashing overlaps sending
        self.algorithm = endpoint.file_hash
        self.hash = new_hash(self.algorithm)
        self.digest = None
        self.hash_seq = 0  # the next packet number when the HASH was last sent
        self.state = "starting"
        presenter_bytes = presenter.encode("utf-8")
        name = basename.encode("utf-8")
        self.announce = (  # sealed anew (a new number) each time it is sent
            ANNOUNCE_BODY.pack(self.size, self.chunk_size, len(presenter_bytes), len(name))
            + presenter_bytes
            + name
            # the hash, unless SHA-256: so receivers of before BLAKE3 still take those
            + (ANNOUNCE_HASH.pack(self.algorithm) if self.algorithm != SHA256 else b"")
        )
        # one datagram buffer, reused: the transport sends synchronously
        self.buffer = bytearray(DATA_HEADER.size + min(self.chunk_size, self.size) + TAG_SIZE)
        self.view = memoryview(self.buffer)
        self.announce_interval = ANNOUNCE_RETRY
        self.held = False  # the receiver's user is asked (HOLD)
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
        self.idle_timer = Timer(clock, self._idle)
        self.retry_timer = Timer(clock, self._retry)
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
        self.endpoint._write(self.keys.seal(ANNOUNCE, self.announce), self.peer)
        self.retry_timer.set(self.clock.seconds() + self.announce_interval)
        self.announce_interval = min(MAX_ANNOUNCE_RETRY, self.announce_interval * 2)

    # -- datagrams from the receiver ------------------------------------------

    def heard(self) -> None:
        now = self.clock.seconds()
        self.last_heard = now
        self.idle_timer.push(now + self.endpoint.idle_timeout)

    def hold(self) -> None:
        """The receiver asks its user: keep announcing (slowly) until ACCEPT, FAIL or silence."""
        if self.state != "announcing":
            return
        self.announce_interval = MAX_ANNOUNCE_RETRY
        if not self.held:
            self.held = True
            self.endpoint._notify("transfer_held", self.tid, self.peer_name, self.basename)

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
            rtt = ((micros(now) - echo) & 0xFFFFFFFF) / 1e6
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
        stamp = micros(self.clock.seconds())
        number = self.keys.next_number()
        DATA_HEADER.pack_into(self.buffer, 0, MAGIC, DATA, self.tid, number, chunk, seq, stamp)
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
        self.endpoint._write(view[: self.keys.seal_into(view, end)], self.peer)
        return True

    def _send_hash(self) -> None:
        """The hash of every chunk as first sent; repeated until DONE."""
        self.hash_seq = self.next_seq
        self.endpoint._write(self.keys.seal(HASH, HASH_BODY.pack(self.digest)), self.peer)

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
            self.endpoint._write(encode_fail(self.keys, reason), self.peer)
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


