"""
The data directory: one server at a time, and no temporary file left by a
rewrite that a crash cut short.
"""

import os

from twisted.logger import Logger

from ..storage.textlogs import MESSAGELOG, USERLOG

log = Logger()

LOCK_FILE = ".chatproto.lock"


def is_server_file(name: str) -> bool:
    return name in (USERLOG, MESSAGELOG, "bans.txt") or name.endswith("_messageLog.txt")


def remove_stale_temporaries(directory: str, owned) -> None:
    """Remove C{.NAME.XXXXXXXX.tmp} files (L{write_file_atomically}'s) of the files C{owned(NAME)}."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        target = name[1:-len(".tmp")].rsplit(".", 1)[0]
        if owned(target):
            try:
                os.unlink(os.path.join(directory, name))
                log.info("Removed {name}, left by an interrupted rewrite", name=name)
            except OSError:
                pass


class DataDirectoryInUse(OSError):
    """Another server holds the data directory: two would tear each other's files."""


def lock_data_directory(data_dir: str) -> int:
    """Hold an exclusive lock on the data directory for as long as the returned descriptor is open."""
    import fcntl

    path = os.path.join(data_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirectoryInUse(
            f"the data directory {os.path.abspath(data_dir)} is in use by another chatproto server"
        ) from None
    return fd
