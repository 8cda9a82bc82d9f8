"""
Deleting a record of an append-only message log (C{/deletemsg},
C{/deletegroupmsg}): its MESSAGE field becomes C{[deleted]}; SEQ, timestamp
and author stay, and so does every other byte of the file.

The file is rewritten atomically (temporary file, flushed, renamed over the
log), so a crash leaves the old log or the new one. No line appended
concurrently is lost:

- in this process every append goes through the log's L{RecordLog}, and
  runs on the reactor thread like the rewrite; the records of the current
  turn are written first, so they are in the copy, and the log then appends
  to the new file (L{RecordLog.reopen});
- another process that appends to a log must hold an exclusive C{flock} on
  it while it writes, and reopen the path when, once it holds the lock, its
  descriptor no longer names the file at that path: the rewrite holds the
  same lock on the old file from the read until the rename.
"""

import mmap
import os

from .textlogs import SEPARATOR, write_file_atomically

try:
    import fcntl
except ImportError:  # not POSIX: no lock for other processes
    fcntl = None

DELETED = "[deleted]"


class NoSuchRecord(Exception):
    """No record has this SEQ."""


class NotAuthor(Exception):
    """The record was written by someone else."""


def find_record(data, seq: int) -> tuple[int, int] | None:
    """
    Return C{(start, end)} of the line of record C{seq} in C{data} (bytes or
    an mmap), without its newline, or None.
    """
    prefix = f"{seq};".encode()
    if data[:len(prefix)] == prefix:
        start = 0
    else:
        start = data.find(b"\n" + prefix)
        if start < 0:
            return None
        start += 1
    end = data.find(b"\n", start)
    return start, (len(data) if end < 0 else end)


def deleted_line(line: bytes, author: str) -> bytes | None:
    """
    The record C{line} with its MESSAGE replaced, or None when it needs no
    change (deleted already). Raise L{NotAuthor} or L{NoSuchRecord} (a line
    that is no record).
    """
    sep = SEPARATOR.encode()
    fields = line.split(sep, 3)
    if len(fields) != 4:
        raise NoSuchRecord()
    if fields[2] != author.encode("utf-8", "surrogateescape"):
        raise NotAuthor()
    if fields[3] == DELETED.encode():
        return None
    return sep.join(fields[:3] + [DELETED.encode()])


def delete_records(path: str, requests, durable: bool = True) -> list:
    """
    Mark the records C{requests} (C{(seq, author)} pairs) of the log at
    C{path} deleted, in one atomic rewrite; safe to run in a worker thread
    while nothing appends to the log. Return one result per request: True
    (deleted), False (deleted already), or the L{NoSuchRecord} /
    L{NotAuthor} instance for it. C{durable}: flush the new file to disk.
    """
    results: list = []
    path = os.path.realpath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        changes: dict[int, tuple[int, int, bytes]] = {}  # start -> (start, end, new line)
        if size == 0:
            return [NoSuchRecord() for _ in requests]
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as data:
            for seq, author in requests:
                found = find_record(data, seq)
                if found is None:
                    results.append(NoSuchRecord())
                    continue
                start, end = found
                try:
                    line = deleted_line(data[start:end], author)
                except (NoSuchRecord, NotAuthor) as refused:
                    results.append(refused)
                    continue
                if line is None or start in changes:
                    results.append(False)  # deleted already (the file says so)
                    continue
                changes[start] = (start, end, line)
                results.append(True)
        if changes:
            parts, offset = [], 0
            for start, end, line in sorted(changes.values()):
                parts += [(fd, offset, start - offset), line]
                offset = end
            parts.append((fd, offset, size - offset))
            write_file_atomically(path, parts, durable)
    finally:
        os.close(fd)  # releases the lock, after the rename
    return results


def delete_record(record_log, seq: int, author: str) -> bool:
    """
    Mark record C{seq} of C{record_log} (a L{chatproto.storage.textlogs.RecordLog})
    deleted, if C{author} wrote it, on the calling thread. Return False when
    it was deleted already. Raise L{NoSuchRecord} or L{NotAuthor}; the file is
    unchanged then.
    """
    if not 0 < seq <= record_log.last_seq:
        raise NoSuchRecord()
    record_log.write_pending()  # this turn's records are in the file before it is copied
    (result,) = delete_records(record_log.path, [(seq, author)])
    if isinstance(result, Exception):
        raise result
    if result:
        record_log.reopen()
    return result
