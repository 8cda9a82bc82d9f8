"""
Backups of a data directory: the SQLite database through SQLite's online
backup (a consistent copy), the text logs, bans and the credentials file.

A running server holds the database in exclusive mode, so nothing else can
read it: the server makes the copy itself when sent SIGUSR2 (into
C{DATA_DIR/backups/YYYYmmdd-HHMMSS/}); C{chatproto-admin backup DEST} does the
same for a stopped server (and says to send SIGUSR2 when it runs).
"""

import os
import shutil
import sqlite3
import time

from twisted.internet import defer
from twisted.logger import Logger

from ..storage.bans import BANS_FILE
from ..storage.textlogs import MESSAGELOG
from .options import database_path

log = Logger()

BACKUPS = "backups"


def text_files(data_dir: str) -> list[str]:
    """The files of a data directory worth keeping: message logs and bans (userlog.txt is transient)."""
    names = sorted(name for name in os.listdir(data_dir)
                   if name in (MESSAGELOG, BANS_FILE) or name.endswith("_messageLog.txt"))
    return [os.path.join(data_dir, name) for name in names]


def copy_text_files(data_dir: str, credentials: str | None, dest: str) -> list[str]:
    copied = []
    for path in text_files(data_dir) + ([credentials] if credentials and os.path.exists(credentials) else []):
        target = os.path.join(dest, os.path.basename(path))
        shutil.copy2(path, target)
        copied.append(target)
    return copied


def sqlite_backup(source, target_path: str) -> None:
    """SQLite's online backup of the connection C{source} into a new file."""
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
    finally:
        target.close()


def new_backup_directory(data_dir: str) -> str:
    base = os.path.join(data_dir, BACKUPS, time.strftime("%Y%m%d-%H%M%S"))
    dest, n = base, 1
    while os.path.exists(dest):
        n += 1
        dest = f"{base}-{n}"
    os.makedirs(dest)
    return dest


def backup_running(chat_service) -> defer.Deferred:
    """
    The server's own backup (SIGUSR2): the turn's changes are written, the
    text files copied on the reactor thread (nothing appends meanwhile), then
    the database copied on its worker thread after every commit before it.
    A database a little ahead of the copied logs is fine: at a restore the
    start-up reconciliation appends what the logs miss.
    """
    try:
        dest = new_backup_directory(chat_service.data_dir)
        storage = chat_service.storage
        storage.flush()
        copy_text_files(chat_service.data_dir, chat_service.credentials_path, dest)
    except OSError as e:
        log.warn("Backup failed: {why}", why=f"{e.filename}: {e.strerror}" if e.filename else e)
        return defer.succeed(None)
    database = storage.database
    if not hasattr(database, "backup"):
        log.info("Backup written to {dest} (text files only: the database is memory:)", dest=dest)
        return defer.succeed(dest)
    target = os.path.join(dest, os.path.basename(database.path))
    d = database.backup(target)

    def done(_):
        log.info("Backup written to {dest}", dest=dest)
        return dest

    def failed(failure):
        log.warn("Backup of the database failed: {why}", why=failure.getErrorMessage())

    return d.addCallbacks(done, failed)


def backup_stopped(data_dir: str, database_url: str, credentials: str | None, dest: str) -> list[str]:
    """The same for a stopped server: raise L{DataDirectoryInUse} when one runs."""
    from .datadir import lock_data_directory

    lock = lock_data_directory(data_dir)
    try:
        os.makedirs(dest, exist_ok=True)
        copied = copy_text_files(data_dir, credentials, dest)
        if database_url.startswith("sqlite:"):
            path = database_path(database_url, data_dir)
            if os.path.exists(path):
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    target = os.path.join(dest, os.path.basename(path))
                    sqlite_backup(source, target)
                    copied.append(target)
                finally:
                    source.close()
        return copied
    finally:
        os.close(lock)
