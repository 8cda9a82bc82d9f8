"""
The server's files: append-only record logs and the active-user log.

Records of one reactor turn are written together, then (with C{fsync})
flushed to stable storage once for the whole batch (group commit); only then
are the acknowledgements that depend on them released (L{chatproto.storage.ledger}).
Every record reaches the operating system in a single C{write} on a file
opened with C{O_APPEND}, so a crash of the process never tears one, and a
concurrent appender never interleaves with one.
"""

import os
import tempfile
from collections import OrderedDict

from twisted.logger import Logger

log = Logger()

SEPARATOR = "; "
# The logs hold private messages and users' addresses: only the server's user
# reads them (new files; an existing file keeps its mode).
FILE_MODE = 0o600
RETRY_SECONDS = 1.0  # after a failed userlog.txt write
# Readers split on the first three "; "; characters that would end a line in
# any common reader (str.splitlines) must not reach a record.
_LINE_BREAKS = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def single_line(text: str) -> str:
    """Replace control characters and line breaks so that C{text} stays one record."""
    if text.isprintable():
        return text
    return text.translate(_LINE_BREAKS)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        log.failure("Cannot cut a partial write off")


def recover_last_seq(path: str) -> int:
    """
    Return the last SEQ of a record log, or 0 for a missing or empty one.

    A trailing partial line (from a power cut during a write that was never
    acknowledged) is cut off, so the next record starts on a line of its own.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        block = 65536 + 4096
        end = size
        tail = b""
        while end > 0:
            start = max(0, end - block)
            tail = os.pread(fd, end - start, start) + tail
            end = start
            if tail.count(b"\n") >= 2 or start == 0:
                lines = tail.split(b"\n")
                if not tail.endswith(b"\n"):
                    cut = size - len(lines[-1])
                    log.warn("{path}: cutting off a partial last line of {n} bytes",
                                path=path, n=size - cut)
                    os.ftruncate(fd, cut)
                    size = cut
                lines.pop()  # the empty string after the last newline, or the cut part
                complete = lines[1:] if start > 0 else lines
                for line in reversed(complete):
                    seq = line.split(b";", 1)[0]
                    if seq.isdigit():
                        return int(seq)
                if start == 0:
                    return 0
                tail = lines[0]
                end = start
                # keep scanning backwards: the complete lines held no SEQ
        return 0
    finally:
        os.close(fd)


class RecordLog:
    """
    One append-only file of C{SEQ; TIMESTAMP; AUTHOR; MESSAGE} records whose
    numbering continues across restarts.
    """

    __slots__ = ("path", "last_seq", "_fd", "_pending", "_journal", "held")

    def __init__(self, path: str, journal: "Journal"):
        self.path = path
        self._journal = journal
        self.held = False  # being rewritten elsewhere: records wait, unwritten
        self.last_seq = recover_last_seq(path)
        self._fd = None
        self._open()
        self._pending: list[bytes] = []

    def _open(self) -> int:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        return self._fd

    def append(self, timestamp: str, author: str, message: str) -> int:
        """Queue one record for this turn's batch; return its SEQ."""
        seq = self.last_seq + 1
        self.last_seq = seq
        record = f"{seq}{SEPARATOR}{timestamp}{SEPARATOR}{author}{SEPARATOR}{single_line(message)}\n"
        if not self._pending:
            self._journal.mark(self)
        self._pending.append(record.encode("utf-8", "surrogateescape"))
        return seq

    def append_run(self, timestamp: str, author: str, messages: list[str]) -> int:
        """
        Queue a run of records of one author and one timestamp (a client's pipelined
        messages); return the SEQ of the first, the others follow it. One string and one
        encoding for the run instead of one per record (issue 25).
        """
        first = self.last_seq + 1
        self.last_seq += len(messages)
        if not "".join(messages).isprintable():  # (the core sends single lines: checked once)
            messages = [single_line(message) for message in messages]
        tail = f"{SEPARATOR}{timestamp}{SEPARATOR}{author}{SEPARATOR}"
        records = "".join([f"{seq}{tail}{message}\n" for seq, message in enumerate(messages, first)])
        if not self._pending:
            self._journal.mark(self)
        self._pending.append(records.encode("utf-8", "surrogateescape"))
        return first

    def append_record(self, seq: int, timestamp: str, author: str, message: str) -> None:
        """Queue a record whose SEQ was given elsewhere (the database, at start-up)."""
        if seq != self.last_seq + 1:
            raise ValueError(f"{self.path}: record {seq} after {self.last_seq}")
        self.append(timestamp, author, message)

    def append_numbered(self, seq: int, timestamp: str, author: str, message: str) -> None:
        """Queue a record numbered by a cluster's database: SEQs rise, with gaps
        (the records other nodes handled)."""
        if seq <= self.last_seq:
            raise ValueError(f"{self.path}: record {seq} after {self.last_seq}")
        self.last_seq = seq - 1
        self.append(timestamp, author, message)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def hold(self) -> None:
        """Write nothing until L{release_hold}: the file is being rewritten (a deletion)."""
        self.held = True

    def release_hold(self) -> None:
        """The rewrite is done: append to the new file, starting with what waited."""
        self.held = False
        try:
            self.reopen()
        except OSError:
            # The next write opens the path again (never the replaced file).
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            raise
        finally:
            if self._pending:
                self._journal.mark(self)

    def write_pending(self) -> None:
        if self.held:
            return  # kept, in order, for when the rewrite is done
        pending, self._pending = self._pending, []
        if pending:
            size = None
            try:
                fd = self._fd if self._fd is not None else self._open()
                size = os.fstat(fd).st_size
                _write_all(fd, b"".join(pending))
            except OSError:
                # Never leave a torn record; the numbers of the lost records
                # are given out again, and their acknowledgements become errors.
                # (One line a record; a run's records share one item of the list.)
                self.last_seq -= sum(part.count(b"\n") for part in pending)
                if size is not None:
                    _truncate(fd, size)
                raise

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def reopen(self) -> None:
        """Append to the file now at C{path}: it was replaced (see L{chatproto.records})."""
        old = self._fd
        if old is not None:  # a released log opens the new file at its next write
            self._open()
            os.close(old)

    def release(self) -> bool:
        """
        Give the file descriptor back (many groups, few of them busy); the
        next write opens the file again. Only a log with nothing waiting for
        the journal's batch can: what it wrote is as durable as the journal
        promises already. Return whether it did.
        """
        if self._pending or self.held:
            return False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return True

    def close(self) -> None:
        try:
            self.write_pending()
            if self._fd is not None and self._journal.durable:
                os.fsync(self._fd)
        except OSError:
            # Written outside the journal's batch: its acknowledgements become errors there.
            self._journal.note_failure(self)
            raise
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def write_file_atomically(path: str, parts, durable: bool = True) -> None:
    """
    Replace the file at C{path} (following a symbolic link) with the
    concatenation of C{parts}: bytes, or C{(fd, offset, length)} for that
    range of another file. They are written to a temporary file in the
    same directory, given the old file's permissions, flushed to disk
    (unless not C{durable}: then a crash of the process, not of the machine,
    is what it survives), then renamed over it. A crash at any moment leaves
    the old file or the new one, never a mix or a truncation.
    """
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    tmp_fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=directory)
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            os.fchmod(tmp_fd, st.st_mode & 0o7777)
            try:
                os.fchown(tmp_fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        for part in parts:
            if isinstance(part, tuple):
                _copy_range(*part, tmp_fd)
            else:
                _write_all(tmp_fd, part)
        if durable:
            os.fsync(tmp_fd)
        os.close(tmp_fd)
        tmp_fd = -1
        os.replace(tmp, path)
    except BaseException:
        if tmp_fd >= 0:
            os.close(tmp_fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        dirfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _copy_range(src: int, offset: int, length: int, dst: int, chunk: int = 1 << 20) -> None:
    end = offset + length
    while offset < end:
        data = os.pread(src, min(chunk, end - offset), offset)
        if not data:
            raise OSError(f"file shrank while copying it (at byte {offset})")
        _write_all(dst, data)
        offset += len(data)


class ActiveUserLog:
    """
    C{userlog.txt}: C{SEQ; TIMESTAMP; USERNAME; CLIENT_IP; CLIENT_UDP_PORT},
    exactly the users active now, numbered 1, 2, 3, ...

    A login appends one line. A logout must renumber the lines after it, so
    it marks the file for one atomic rewrite at the end of the turn, however
    many logouts the turn holds.
    """

    def __init__(self, path: str, journal: "Journal"):
        self.path = path
        self._journal = journal
        # session (an opaque token; or the username) -> the line without SEQ, login order:
        # one line a session
        self._entries: dict = {}
        self._appends: list[bytes] = []
        self._rewrite = False
        self._marked = False  # in the journal's batch
        self._retry = None  # a later rewrite after a failed one
        self.held = False  # never rewritten by a deletion
        write_file_atomically(path, [b""], journal.durable)  # at start-up nobody is active
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def add(self, username: str, timestamp: str, ip: str, udp_port: int, session=None) -> None:
        entry = f"{timestamp}{SEPARATOR}{username}{SEPARATOR}{ip}{SEPARATOR}{udp_port}\n"
        self._entries[username if session is None else session] = entry
        if not self._rewrite:
            self._appends.append(f"{len(self._entries)}{SEPARATOR}{entry}".encode())
        self._mark()

    def remove(self, username: str, session=None) -> None:
        if self._entries.pop(username if session is None else session, None) is None:
            return
        self._rewrite = True
        self._appends.clear()
        self._mark()

    def _mark(self) -> None:
        if not self._marked:
            self._marked = True
            self._journal.mark(self)

    def render(self) -> bytes:
        return "".join(
            f"{seq}{SEPARATOR}{entry}" for seq, entry in enumerate(self._entries.values(), 1)
        ).encode()

    def write_pending(self) -> None:
        self._marked = False
        if self._fd is None:
            raise OSError(f"{self.path} is closed")
        if self._rewrite:
            self._rewrite = False
            try:
                write_file_atomically(self.path, [self.render()], self._journal.durable)
            except OSError:
                self._rewrite = True  # the old file stands
                self._retry_later()
                raise
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        elif self._appends:
            appends, self._appends = self._appends, []
            size = os.fstat(self._fd).st_size
            try:
                _write_all(self._fd, b"".join(appends))
            except OSError:
                _truncate(self._fd, size)
                self._rewrite = True
                self._retry_later()
                raise

    def _retry_later(self) -> None:
        # Not at once (a full disk would spin the reactor), but not only at
        # the next login or logout either: the file must come right by itself.
        if self._retry is None or not self._retry.active():
            self._retry = self._journal.clock.callLater(RETRY_SECONDS, self._mark)

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._fd is None:
            return
        try:
            self.write_pending()
        finally:
            os.close(self._fd)
            self._fd = None


class Journal:
    """
    The text logs with records waiting to be written in this turn's batch.

    @param durable: flush to stable storage (C{fsync}) before acknowledging.
    @param schedule: called whenever something is waiting (the ledger's end of turn).
    """

    def __init__(self, clock, durable: bool, schedule):
        self.clock = clock
        self.durable = durable
        self._schedule = schedule
        self._dirty: list = []
        self._failed: set = set()

    def mark(self, log_file) -> None:
        """C{log_file} has records to write in this turn's batch."""
        self._dirty.append(log_file)
        self._schedule()

    def note_failure(self, log_file) -> None:
        """
        Records of C{log_file} waiting for this batch were lost by a write
        made outside L{write} (a rewrite or a close): their acknowledgements
        become errors at the next batch.
        """
        self._failed.add(log_file)
        self._schedule()

    def write(self) -> set:
        """Write (and with C{durable}, flush) every waiting record; return the logs that failed."""
        dirty, self._dirty = self._dirty, []
        failed, self._failed = self._failed, set()
        for log_file in dirty:
            try:
                log_file.write_pending()
                if self.durable:
                    log_file.sync()
            except Exception:  # noqa: BLE001 - an OSError, mostly; the other logs go on
                # This log's records of the batch are not written (and any
                # part of them is cut off again).
                log.failure("Cannot write {path}", path=log_file.path)
                failed.add(log_file)
        return failed


def group_log_name(group_name: str) -> str:
    return f"{group_name}_messageLog.txt"


USERLOG = "userlog.txt"
MESSAGELOG = "messagelog.txt"
MAX_OPEN_GROUP_LOGS = 64


class TextLogs:
    """
    The text logs in one data directory (README, "Files the server writes"):
    C{userlog.txt}, C{messagelog.txt}
    and one C{GROUPNAME_messageLog.txt} per group.

    Only the C{max_open} most recently used group logs keep a file
    descriptor; the others reopen at their next write.
    """

    def __init__(self, data_dir: str, clock, durable: bool, schedule, max_open: int | None = None):
        self.data_dir = data_dir
        self._max_open = max_open
        self.journal = Journal(clock, durable, schedule)
        self.userlog = ActiveUserLog(os.path.join(data_dir, USERLOG), self.journal)
        self.messagelog = RecordLog(os.path.join(data_dir, MESSAGELOG), self.journal)
        self._groups: dict[str, RecordLog] = {}  # log name -> its log
        self._open: OrderedDict[RecordLog, None] = OrderedDict()  # most recent last

    @property
    def max_open(self) -> int:
        return MAX_OPEN_GROUP_LOGS if self._max_open is None else self._max_open

    def group_log(self, name: str) -> RecordLog:
        """The log of the group created as C{name}: opened (created) on first use."""
        group_log = self._groups.get(name)
        if group_log is None:
            # A log left by an earlier group of this name is kept: RecordLog
            # continues its numbering.
            group_log = RecordLog(os.path.join(self.data_dir, group_log_name(name)), self.journal)
            self._groups[name] = group_log
        self._used(group_log)
        return group_log

    def _used(self, group_log: RecordLog) -> None:
        open_logs = self._open
        if group_log in open_logs:
            open_logs.move_to_end(group_log)
            return
        open_logs[group_log] = None
        if len(open_logs) > self.max_open:
            self.trim()

    def trim(self) -> None:
        """
        The least recently used logs with nothing waiting give back their
        descriptors (their groups still exist); none is flushed here.
        """
        open_logs = self._open
        if len(open_logs) <= self.max_open:
            return
        # The newest is in use right now (about to be appended to): never it.
        for candidate in list(open_logs)[:-1]:
            if candidate.release():
                del open_logs[candidate]
                if len(open_logs) <= self.max_open:
                    return

    def existing_group_log(self, name: str):
        """The log of the group created as C{name} if it is open, else None (nothing opened)."""
        return self._groups.get(name)

    def drop_group_log(self, name: str) -> None:
        """
        The group is gone: close its log. The file stays if it holds a
        message; an empty one goes (else a script creating and leaving
        groups would fill the directory with empty files: issue 28, F5).
        """
        group_log = self._groups.pop(name, None)
        path = os.path.join(self.data_dir, group_log_name(name))
        if group_log is not None:
            self._open.pop(group_log, None)
            try:
                group_log.close()
            except OSError:
                # Its last records are lost: their acknowledgements become errors.
                log.failure("closing {path}", path=group_log.path)
                return
        try:
            if os.path.getsize(path) == 0:
                os.remove(path)
        except OSError:
            pass  # already gone, or never made

    def write(self) -> set:
        failed = self.journal.write()
        self.trim()
        return failed

    def close(self) -> None:
        self.write()
        for log_file in [self.userlog, self.messagelog, *self._groups.values()]:
            log_file.close()


def read_records_after(path: str, seq: int):
    """
    Yield C{(seq, timestamp, author, message)} of the records of a log
    after C{seq}, in file order (a start-up job, when the database lags).
    """
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.rstrip("\n").split(SEPARATOR, 3)
            if len(fields) != 4 or not fields[0].isdigit():
                continue
            number = int(fields[0])
            if number > seq:
                yield number, fields[1], fields[2], fields[3]
