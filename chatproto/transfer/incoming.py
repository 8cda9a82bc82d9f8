"""
The receiver's side of one transfer, and its worker thread that writes and
hashes (docs/TRANSFER.md, State machines, Verification).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import tempfile
import threading
from queue import SimpleQueue

from .base import ACK_DELAY, PROGRESS_INTERVAL, Timer
from .names import final_name, store_received
from .wire import ACCEPT, ACCEPT_BODY, ACK, ACK_BODY, DATA_HEADER, DONE, HASH_BODY, HEADER, HOLD
from .wire import HASH_NAMES, MAX_RANGES, SHA256, TAG_SIZE, encode_fail, new_hash

ACK_EVERY = 8  # data packets per acknowledgement
REPLY_INTERVAL = 0.02  # at most one DONE/FAIL repeat per this many seconds
MAX_AHEAD = 1 << 18  # chunks tracked beyond the contiguous prefix (> 2 x the largest window)
TRACK_TRIM = 4096  # chunks of the prefix dropped from the tracking at a time
WORKER_BATCH = 1024 * 1024  # bytes of chunks handed over to a receiver's worker thread at a time
WORKER_QUEUE = 4 * 1024 * 1024  # bytes of chunks queued for the worker, at most
READ_BACK = 1024 * 1024  # bytes read back (and hashed) at a time when a gap fills
IDLE_SLOTS = 8  # the port's free 64 KiB buffers kept once no transfer is coming in (port.py)
ALLOCATE_AHEAD = 8 * 1024 * 1024  # bytes of disk allocated (fallocate) beyond the data written


class Offer:
    """
    A transfer the server told this client of (C{OFFER}): its id, keys,
    presenter, the presenter's IP address and the file's base name, and what
    to do when it is announced (C{decision}: C{"accept"}, C{"ask"} the user,
    C{"refuse"}).  Only its presenter's authenticated ANNOUNCE starts it.

    States: C{offered} (nothing heard yet), C{asking} (announced; the user
    decides), C{accepted} (an L{Incoming} runs it), C{refused} (its FAIL is
    repeated to late announcements).  An offer not announced within
    C{offer_timeout}, or not decided within C{ask_timeout}, is given up.
    """

    def __init__(self, endpoint, keys, presenter, presenter_ip, basename, decision):
        self.endpoint = endpoint
        self.keys = keys
        self.tid = keys.tid
        self.presenter = presenter
        self.presenter_ip = presenter_ip
        self.basename = basename
        self.decision = decision
        self.state = "offered"
        self.peer = None  # (IP, port) of its first authenticated ANNOUNCE
        self.size = self.chunk_size = self.algorithm = None
        self.incoming = None
        self.reply = b""
        self.replied_at = -1.0
        clock = endpoint.clock
        self.clock = clock
        self.timer = Timer(clock, self._expire)
        self.timer.set(clock.seconds() + endpoint.offer_timeout)

    def announced(self, body: bytes, addr) -> None:
        """An authenticated ANNOUNCE (without its tag) from C{addr}."""
        if self.incoming is not None:
            if addr == self.peer:
                self.incoming.announced_again()
            return
        if self.peer is not None and addr != self.peer:
            return
        if self.state == "refused":
            self.peer = addr  # refused before it was announced: answer its presenter
            self._repeat_reply()
            return
        endpoint = self.endpoint
        parsed = endpoint._parse_announce(body)
        if parsed is None:
            return  # authenticated but malformed: nothing to answer
        size, chunk_size, presenter, basename, algorithm = parsed
        self.peer = addr
        if presenter != self.presenter or basename != self.basename:
            self.refuse("the announcement does not match the server's offer")
            return
        why = endpoint._check_announce(size, chunk_size, algorithm)
        if why is not None:
            self.refuse(why)
            return
        self.size, self.chunk_size, self.algorithm = size, chunk_size, algorithm
        if self.decision == "refuse":
            self.refuse("it does not accept files", notify=False)  # the client said so at the OFFER
        elif self.decision == "ask":
            if self.state == "offered":
                self.state = "asking"
                self.timer.set(self.clock.seconds() + endpoint.ask_timeout)
                endpoint._notify("transfer_offered", self.tid, self.presenter, self.basename, size)
            if self.state == "asking":
                endpoint._write(self.keys.seal(HOLD), addr)
        else:
            self.accept()

    def accept(self) -> bool:
        """Start receiving (the user said yes, or no question was asked); C{False} if too late."""
        if self.state not in ("offered", "asking"):
            return False
        self.decision = "accept"
        if self.peer is None:
            return True  # accepted before it was announced
        endpoint = self.endpoint
        why = endpoint._check_load(self.size, self.peer)
        if why is not None:
            self.refuse(why)
            return True
        try:
            incoming = Incoming(endpoint, self, self.peer, self.size, self.chunk_size, self.algorithm)
        except OSError as e:
            self.refuse(f"cannot create the file: {e.strerror}")
            return True
        self.state = "accepted"
        self.timer.cancel()
        self.incoming = incoming
        endpoint._incoming[self.tid] = incoming
        incoming.accept()
        return True

    def refuse(self, why: str, notify: bool = True) -> None:
        """Tell the presenter (if it announced) and the listener; answer later announcements alike."""
        if self.state in ("accepted", "refused"):
            return
        self.state = "refused"
        reason = f"the receiver refused the file: {why}"
        self.reply = encode_fail(self.keys, reason)
        if self.peer is not None:
            self._repeat_reply(force=True)
        # remembered a while, to answer a presenter that did not hear it
        self.timer.set(self.clock.seconds() + self.endpoint.idle_timeout)
        if notify:
            self.endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)

    def presenter_failed(self, reason: str) -> None:
        if self.incoming is not None:
            self.incoming.fail(reason, tell_peer=False)
        elif self.state in ("offered", "asking"):
            self.state = "refused"
            self.timer.set(self.clock.seconds() + self.endpoint.idle_timeout)
            self.endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)

    def _repeat_reply(self, force: bool = False) -> None:
        now = self.clock.seconds()
        if self.reply and self.peer is not None and (force or now - self.replied_at >= REPLY_INTERVAL):
            self.replied_at = now
            self.endpoint._write(self.reply, self.peer)

    def _expire(self) -> None:
        endpoint = self.endpoint
        if self.state == "offered" and self.decision != "refuse":
            seconds = endpoint.offer_timeout
            reason = f"no data from {self.presenter} for {seconds:g} seconds"
            endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)
        elif self.state == "asking":
            seconds = endpoint.ask_timeout
            self.refuse(f"not accepted within {seconds:g} seconds", notify=False)
            reason = f"you did not accept it within {seconds:g} seconds"
            endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)
            return  # refuse() set the timer: forgotten once it fires again
        if self.incoming is None:
            endpoint._offers.pop(self.tid, None)

    def stop(self) -> None:
        self.timer.cancel()
        if self.incoming is not None:
            self.incoming.stop()
        elif self.state == "asking":
            self.reply = encode_fail(self.keys, "the receiver stopped")
            self._repeat_reply(force=True)
        self.state = "refused"
        self.endpoint._offers.pop(self.tid, None)


class Incoming:
    """The receiver's side of one transfer."""

    def __init__(self, endpoint, offer, peer, size, chunk_size, algorithm=SHA256):
        self.endpoint = endpoint
        self.offer = offer
        self.keys = offer.keys
        self.key = self.tid = offer.tid
        self.peer = peer
        self.presenter = presenter = offer.presenter
        basename = offer.basename
        self.basename = basename
        self.size = size
        self.chunk_size = chunk_size
        self.expected = None  # the file's hash, once the presenter sent it (HASH)
        self.algorithm = algorithm  # which hash (the presenter's ANNOUNCE said)
        self.nchunks = -(-size // chunk_size)
        clock = endpoint.clock
        self.clock = clock
        self.final_path = None  # chosen when the file is stored (never over a file not ours)
        fd, self.temp_path = mkstemp(endpoint.directory, final_name(presenter, basename))
        self.fd = fd
        # the worker allocates the disk space a little ahead of the writes
        # (ALLOCATE_AHEAD): ext4 then writes ~35% faster; 0 once unsupported
        self.allocated = 0 if _fallocate is not None else None
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
        self.hash = new_hash(algorithm)  # the worker thread's, until it ends
        self.hashed_to = 0  # bytes of the file hashed (by the worker thread)
        self.read_buffer = None  # the worker's, to read the file back into
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
        self.idle_timer = Timer(clock, self._idle)
        self.ack_timer = Timer(clock, self.send_ack)
        self.expire_timer = Timer(clock, self._expire)
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
            self.keys.seal(ACCEPT, ACCEPT_BODY.pack(self.endpoint._receive_window())),
            self.peer,
        )

    def hashed(self, data: bytes) -> None:
        """The presenter's hash of the file (the first one counts: it is sent once every chunk was)."""
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
        # not heard(): an announcement alone does not keep a transfer alive
        # (one that never sends data times out, docs/TRANSFER.md)
        if self.state == "receiving":
            self.accept()
        else:
            self._repeat_reply(force=True)

    def heard(self) -> None:
        self.idle_timer.push(self.clock.seconds() + self.endpoint.idle_timeout)

    def data(self, data) -> bool:
        """
        An authentic DATA datagram (C{bytes}, or a C{memoryview} of a pool
        buffer: see port.py); C{True} if it was kept (for the worker thread).
        """
        if self.state != "receiving":
            self._repeat_reply()
            return False
        chunk, seq, stamp = struct.unpack_from("!III", data, HEADER.size)
        now = self.clock.seconds()
        self.idle_timer.push(now + self.endpoint.idle_timeout)
        if chunk >= self.nchunks:
            return False
        chunk_size = self.chunk_size
        offset = chunk * chunk_size
        length = len(data) - DATA_HEADER.size - TAG_SIZE
        if length != min(chunk_size, self.size - offset):
            return False  # malformed
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
                return False
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
                    return True
                ack_now = True  # all here: the HASH is late, or lost
        self.unacked += 1
        if ack_now or self.unacked >= self.ack_every:
            self.send_ack()
        elif not self.ack_timer.active:
            self.ack_timer.set(now + ACK_DELAY)
        if now - self.progress_at >= PROGRESS_INTERVAL:
            self._progress(now)
        return job is not None

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
        give = self.endpoint.pool.give
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
            for job in batch:  # the port's buffers (port.py), free again
                data = job[0]
                if type(data) is memoryview:
                    give(data.obj)
            batch = job = data = None
            self.done += 1
            if not room.is_set() and self.queued - self.done <= limit:
                room.set()

    def _allocate(self, end: int) -> None:
        """Allocate the file's blocks up to past C{end} (bounded: never the announced size at once)."""
        allocated = self.allocated
        if allocated is None or end <= allocated:
            return
        target = min(self.size, end + ALLOCATE_AHEAD)
        if _fallocate(self.fd, allocated, target - allocated):
            self.allocated = target
        else:
            self.allocated = None  # unsupported here, or no room: the writes say which

    def _write_batch(self, batch) -> None:
        fd, header = self.fd, DATA_HEADER.size
        self._allocate(max(offset for _data, offset, *_rest in batch) + self.chunk_size)
        run, run_offset, run_end = [], 0, -1
        for data, offset, _extends, _start, _end in batch + [(bytes(TAG_SIZE), -2, False, 0, 0)]:
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
            payload = memoryview(data)[header:-TAG_SIZE]
            run.append(payload)
            run_end += len(payload)

    def _hash_batch(self, batch) -> None:
        """
        Hash the file's contiguous prefix as far as this batch extends it,
        reading it back from the file (just written: the page cache) in
        C{READ_BACK} blocks into one reused buffer.  So what is hashed is what
        the file holds, and no copy is made while holding the GIL (a
        C{b"".join} of the datagrams stalled the reactor thread 1 MiB at a time).
        """
        stop = min(self.size, max((job[4] for job in batch if job[2]), default=0) * self.chunk_size)
        position = self.hashed_to
        if position >= stop:
            return
        if self.read_buffer is None:
            self.read_buffer = memoryview(bytearray(READ_BACK))
        fd, digest, view = self.fd, self.hash, self.read_buffer
        while position < stop:
            try:
                got = os.preadv(fd, [view[: min(READ_BACK, stop - position)]], position)
            except OSError as e:
                raise OSError(e.errno, f"cannot read the file back: {e.strerror}") from None
            if not got:
                raise OSError(errno.EIO, "cannot read the file back: it is shorter")
            digest.update(view[:got])
            position += got
        self.hashed_to = position

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
            self.keys.seal(
                ACK,
                ACK_BODY.pack(self.highest_seq, self.echo, self.cum, self.hi, window, len(bounds) // 2)
                + struct.pack(f"!{len(bounds)}I", *bounds),
            ),
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
            self.fail(f"the file was corrupted in transit ({HASH_NAMES[self.algorithm]} mismatch)")
            return
        try:
            directory = self.endpoint.directory
            self.final_path = store_received(directory, self.temp_path, self.presenter, self.basename)
        except OSError as e:
            self._remove_temp()
            self.fail(f"cannot store the file: {e.strerror}")
            return
        self._settle("done", self.keys.seal(DONE))
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
        reply = encode_fail(self.keys, reason)
        self._settle("failed", reply if tell_peer else b"")
        if notify:
            self.endpoint._notify("transfer_failed", "receive", self.presenter, self.basename, reason)

    def _settle(self, state: str, reply: bytes) -> None:
        """Keep answering late datagrams with C{reply} for a while, then forget."""
        self.state = state
        endpoint = self.endpoint
        if not any(t.state == "receiving" for t in endpoint._incoming.values()):
            endpoint.pool.trim(IDLE_SLOTS)  # the port's buffers: a few kept while nothing comes in
        self.hash = None
        self.read_buffer = None
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
        self.endpoint._offers.pop(self.key, None)

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


def _load_fallocate():
    """fallocate(2) (Linux): C{fallocate(fd, offset, length) -> bool}; L{None} elsewhere.

    Not C{os.posix_fallocate}: where the file system lacks it, glibc emulates
    it by writing every block, slower than the writes it is meant to speed up.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    call.restype = ctypes.c_int

    def fallocate(fd: int, offset: int, length: int) -> bool:
        return call(fd, 0, offset, length) == 0

    return fallocate


_fallocate = _load_fallocate()


def mkstemp(directory: str, name: str):
    fd, path = tempfile.mkstemp(prefix=f".{name[:100]}.", suffix=".part", dir=directory)
    try:
        os.fchmod(fd, 0o644)
    except (AttributeError, OSError):
        pass
    return fd, path


def free_space(directory: str) -> float:
    """Bytes available in C{directory}'s file system (infinite if unknown)."""
    try:
        info = os.statvfs(directory)
    except (AttributeError, OSError):
        return float("inf")
    return info.f_bavail * info.f_frsize

