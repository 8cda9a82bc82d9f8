"""
Which names a transfer may use: the presenter's, the file's base name, the
name a received file is stored under (docs/TRANSFER.md, Verification, files, names).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile

MAX_REASON = 200  # bytes of a FAIL reason (and characters of a printable text)

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
    characters, more than 190 bytes of UTF-8 (so that PRESENTER_BASENAME fits in 255).
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


def size_text(size: float) -> str:
    """C{size} bytes for a person: C{16 GiB}, C{78.4 GiB}, C{512 bytes}."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + " " + unit
    return f"{size:g} bytes"


def printable(text: str, limit: int = MAX_REASON) -> str:
    """C{text} with anything a terminal could interpret replaced."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])



# --- where a received file is stored ---------------------------------------------
#
# A received file never replaces a file that this client did not itself
# receive from that same presenter.  The hidden index in the directory
# records every file the endpoint stored: its name, presenter and identity
# (device, inode, size, modification time).  A file of the wanted name that
# the index does not describe exactly (another program's, the user's, another
# presenter's, or one changed since) is kept, and the new file gets the next
# free name: C{Hans_video (2).bin}, C{Hans_video (3).bin}...

INDEX_NAME = ".chatproto-received.json"
MAX_INDEX = 4096  # records kept (the oldest forgotten first: their files are then kept)
MAX_COPIES = 1000  # names tried: NAME, NAME (2), ..., NAME (1000)


def store_received(directory: str, temp_path: str, presenter: str, basename: str) -> str:
    """
    Move the verified temporary file C{temp_path} to its final name in
    C{directory} and record it; return its path.  Raise L{OSError}.
    """
    index = load_index(directory)
    first = final_name(presenter, basename)
    for name in _candidates(first):
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if not _link_new(temp_path, path):
                continue  # it appeared meanwhile
        else:
            if not _ours(index.get(name), info, presenter):
                continue
            os.replace(temp_path, path)  # an older copy of what this presenter sent
        _record(directory, index, name, presenter, path)
        return path
    raise OSError(errno.EEXIST, f"{MAX_COPIES} files named like {first} exist already")


def _candidates(first: str):
    yield first
    stem, extension = os.path.splitext(first)
    for number in range(2, MAX_COPIES + 1):
        suffix = f" ({number}){extension}"
        while stem and len((stem + suffix).encode("utf-8", "surrogatepass")) > NAME_MAX:
            stem = stem[:-1]
        yield stem + suffix


def _link_new(temp_path: str, path: str) -> bool:
    """Give the file the new name C{path} without replacing anything; C{False} if it exists."""
    try:
        os.link(temp_path, path)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # no hard links on this file system: an empty file of our own, replaced
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        os.replace(temp_path, path)
        return True
    os.unlink(temp_path)
    return True


def _identity(info: os.stat_result) -> list:
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _ours(record, info: os.stat_result, presenter: str) -> bool:
    return (
        isinstance(record, dict)
        and record.get("presenter") == presenter
        and record.get("identity") == _identity(info)
        and stat.S_ISREG(info.st_mode)
    )


def load_index(directory: str) -> dict:
    """The index of files received into C{directory}: C{{name: {presenter, identity}}} ({} if unreadable)."""
    try:
        with open(os.path.join(directory, INDEX_NAME), encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _record(directory: str, index: dict, name: str, presenter: str, path: str) -> None:
    try:
        identity = _identity(os.lstat(path))
    except OSError:
        return
    index.pop(name, None)
    index[name] = {"presenter": presenter, "identity": identity}  # the newest last
    while len(index) > MAX_INDEX:
        index.pop(next(iter(index)))
    try:
        fd, temp = tempfile.mkstemp(prefix=INDEX_NAME + ".", suffix=".tmp", dir=directory)
    except OSError:
        return  # not recorded: the file will be kept, not replaced, next time
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(index, f)
        os.chmod(temp, 0o644)
        os.replace(temp, os.path.join(directory, INDEX_NAME))
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
