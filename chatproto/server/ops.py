"""
Running the server for real (docs/OPERATING.md): the administrators option
(the realm is built with them; bans are kept by the storage), accounts
reloaded without a restart (SIGHUP, and a watch on the credentials file),
backups on SIGUSR2 and the metrics listener.
Shared by C{python -m chatproto.server} and C{twistd chat}.
"""

import os
import signal
import threading

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger
from twisted.python import usage

from ..frontends.frontend import FrontEnd
from ..storage.credentials import username_problem
from .options import parse_port

log = Logger()

OPS_OPTIONS = [
    ["config", None, None, "a TOML file of settings (docs/chatproto.example.toml); options override it"],
    ["admins", None, "", "accounts that may /kick, /ban, /unban and /announce, comma-separated"],
    ["metrics-port", None, None, "serve Prometheus metrics at http://ADDR:N/metrics (ADDR: --interface, "
                                 "else 127.0.0.1)"],
    ["metrics-listen", None, None, "the metrics listener as an endpoint string (tcp:9100: every interface)"],
]
PRINT_CONFIG_FLAG = ["print-config", None, "print the effective settings and where each came from, then exit"]

POLL_SECONDS = 2.0  # the credentials file's mtime check where inotify is not available
SETTLE_SECONDS = 0.05  # several changes of the file in a row: one reload


def parse_ops(options, metrics_interface: str) -> None:
    """Check the options of this module; C{admins} becomes a list, C{metrics-listen} an endpoint or None."""
    admins = [name.strip() for name in (options["admins"] or "").split(",") if name.strip()]
    for name in admins:
        problem = username_problem(name)
        if problem:
            raise usage.UsageError(f"invalid --admins: {name!r}: {problem}")
    options["admins"] = admins
    port, listen = options["metrics-port"], options["metrics-listen"]
    if port is not None and listen is not None:
        raise usage.UsageError("give --metrics-port or --metrics-listen, not both")
    if port is not None:
        port = parse_port(str(port))
        listen = f"tcp:{port}:interface=" + metrics_interface.replace(":", r"\:")
    options["metrics-listen"] = listen


def attach(top, chat_service, options, reactor) -> FrontEnd | None:
    """
    Once the chat service is loaded (with its administrators and bans): the
    accounts watcher and backups on a signal under C{top}; return the
    metrics listener the options ask for (the server app puts it on the air),
    or None.
    """
    chat = chat_service.chat
    AccountsWatcher(chat, chat_service.credentials_path, reactor).setServiceParent(top)
    BackupOnSignal(chat_service, reactor).setServiceParent(top)
    listen = options.get("metrics-listen")
    if not listen:
        return None
    from .metrics import ChatMetrics, metrics_site

    metrics = ChatMetrics(chat_service)
    chat_service.metrics = metrics
    return FrontEnd("metrics", listen, lambda _service: metrics_site(metrics.registry),
                    lambda address: f"Metrics on http://{address.host}:{address.port}/metrics")


def _on_signal(signum, reactor, function):
    """Run C{function} in the reactor when C{signum} arrives; return what to restore, or None."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return None
    return signal.signal(signum, lambda *_: reactor.callFromThread(function))


class AccountsWatcher(service.Service):
    """
    Reloads the accounts (L{ChatRealm.reload_accounts}) on SIGHUP and when
    the credentials file changes: seen by inotify on its directory (an
    atomic rewrite replaces the file), else by a check of its mtime every
    L{POLL_SECONDS}.
    """

    def __init__(self, chat, path: str, reactor):
        self.chat = chat
        self.path = os.path.realpath(path)
        self.reactor = reactor
        self._notifier = None
        self._poll = None
        self._pending = None
        self._previous_handler = None
        self._stamp = self._file_stamp()

    def _file_stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def startService(self):
        super().startService()
        self._previous_handler = _on_signal(signal.SIGHUP, self.reactor, lambda: self.reload("SIGHUP"))
        try:
            from twisted.internet import inotify
            from twisted.internet.interfaces import IReactorFDSet
            from twisted.python.filepath import FilePath

            if not IReactorFDSet.providedBy(self.reactor):
                raise RuntimeError("the clock cannot watch files")
            notifier = inotify.INotify(self.reactor)
            notifier.startReading()
            mask = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_DELETE
                    | inotify.IN_MOVED_FROM)
            notifier.watch(FilePath(os.path.dirname(self.path)), mask=mask, callbacks=[self._inotify])
            self._notifier = notifier
        except Exception as e:  # noqa: BLE001 - not Linux, or no inotify: poll instead
            log.info("Watching {path} every {n} s ({why})", path=self.path, n=POLL_SECONDS, why=e)
            self._poll = task.LoopingCall(self._check_stamp)
            self._poll.clock = self.reactor
            self._poll.start(POLL_SECONDS, now=False)

    def _inotify(self, _watch, filepath, _mask):
        if os.fsdecode(filepath.basename()) == os.path.basename(self.path):
            self._soon()

    def _check_stamp(self):
        if self._file_stamp() != self._stamp:
            self._soon()

    def _soon(self):
        if self._pending is None or not self._pending.active():
            self._pending = self.reactor.callLater(SETTLE_SECONDS, self.reload, "the file changed")

    def reload(self, why: str = "") -> None:
        stamp = self._file_stamp()
        if stamp is None:
            log.warn("Cannot reload the accounts: {path} is missing; keeping the {n} loaded",
                     path=self.path, n=len(self.chat.accounts.names()))
            return
        if why != "SIGHUP" and stamp == self._stamp:
            return  # nothing new (the watcher saw our own temporary file, or a touch of another file)
        self._stamp = stamp
        log.info("Reloading the accounts from {path} ({why})", path=self.path, why=why)
        try:
            self.chat.reload_accounts()
        except OSError as e:
            log.warn("Cannot reload the accounts from {path}: {why}; keeping the {n} loaded",
                     path=self.path, why=e.strerror or e, n=len(self.chat.accounts.names()))

    def stopService(self):
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()


class BackupOnSignal(service.Service):
    """SIGUSR2: a consistent copy of the database and the text logs (L{chatproto.server.backup})."""

    def __init__(self, chat_service, reactor):
        self.chat_service = chat_service
        self.reactor = reactor
        self._previous_handler = None

    def startService(self):
        super().startService()
        if hasattr(signal, "SIGUSR2"):
            self._previous_handler = _on_signal(signal.SIGUSR2, self.reactor, self.backup)

    def backup(self):
        from .backup import backup_running

        return backup_running(self.chat_service)

    def stopService(self):
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGUSR2, self._previous_handler)
            self._previous_handler = None
