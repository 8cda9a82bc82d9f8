"""
The server as Twisted services: shared by C{python -m chatproto.server} and
the C{twistd chat} plugin.
"""

import os

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python import usage

from ..accounts import CredentialsFile
from ..chat import MESSAGELOG, USERLOG, Chat
from ..protocol import DEFAULT_MAX_OUTPUT, ChatServerFactory

log = Logger()

SHUTDOWN_NOTICE = "Server shutting down"
SHUTDOWN_GRACE_SECONDS = 2.0


def attempts_error(value) -> str:
    return (
        f"Invalid number of allowed failed consecutive attempts: {value}. "
        "The valid value of argument number is an integer between 1 and 5"
    )


def parse_attempts(value: str) -> int:
    """ATTEMPTS: an integer from 1 to 5 (SPEC.md), or L{usage.UsageError}."""
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 5:
        raise AttemptsError(attempts_error(value))
    return int(value)


class AttemptsError(usage.UsageError):
    """The exact one-line complaint about ATTEMPTS."""


def parse_port(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 0 <= int(value) <= 65535:
        raise usage.UsageError(f"invalid port: {value!r} (an integer from 0 to 65535)")
    return int(value)


def parse_size(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1024:
        raise usage.UsageError(f"invalid size: {value!r} (a number of bytes, at least 1024)")
    return int(value)


# Flood limits, shared by the twistd plugin and C{python -m chatproto.server}.
LIMIT_OPTIONS = [
    ["rate-limit", None, "0", "commands a second allowed per connection on average (0: no limit)"],
    ["rate-burst", None, "0", "commands a connection may send at once (default: twice the rate)"],
    ["max-connections", None, "0", "connections allowed at once (0: no cap)"],
    ["max-connections-per-ip", None, "0", "connections allowed at once from one address (0: no cap)"],
]


def _count(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise usage.UsageError(f"invalid --{name}: {value!r} (an integer, 0 or more)")
    return int(value)


def parse_limits(options) -> dict:
    """The flood limits of C{options} as L{ChatServerFactory} keyword arguments."""
    try:
        rate = float(options["rate-limit"])
    except ValueError:
        rate = -1.0
    if not 0 <= rate < float("inf"):
        raise usage.UsageError(
            f"invalid --rate-limit: {options['rate-limit']!r} (commands a second, 0 or more)")
    return {
        "rate_limit": rate,
        "rate_burst": _count("rate-burst", options["rate-burst"]),
        "max_connections": _count("max-connections", options["max-connections"]),
        "max_connections_per_ip": _count("max-connections-per-ip", options["max-connections-per-ip"]),
    }


LOCK_FILE = ".chatproto.lock"


def is_server_file(name: str) -> bool:
    return name in (USERLOG, MESSAGELOG) or name.endswith("_messageLog.txt")


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


class ChatService(service.Service):
    """Owns the L{Chat} realm: loads accounts at start, flushes and closes at stop."""

    def __init__(self, credentials_path: str, data_dir: str, attempts: int, clock=None,
                 durable: bool = False, max_output: int = DEFAULT_MAX_OUTPUT, limits=None):
        self.limits = limits or {}
        self.credentials_path = credentials_path
        self.data_dir = data_dir
        self.attempts = attempts
        self.durable = durable
        self.max_output = max_output
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.chat = None
        self.factory = None
        self._lock = None

    def load(self) -> ChatServerFactory:
        """
        Lock the data directory, read the accounts and open the logs; raise
        L{DataDirectoryInUse} or OSError when they cannot be.
        """
        self._lock = lock_data_directory(self.data_dir)
        # Temporary files of rewrites cut short by a crash: nobody else writes here now.
        remove_stale_temporaries(self.data_dir, is_server_file)
        credentials_dir, credentials_name = os.path.split(os.path.abspath(self.credentials_path))
        remove_stale_temporaries(credentials_dir, lambda name: name == credentials_name)
        accounts = CredentialsFile(self.credentials_path).load()
        self.chat = Chat(accounts, self.data_dir, self.clock, self.attempts, durable=self.durable)
        self.factory = ChatServerFactory(self.chat, self.max_output, **self.limits)
        return self.factory

    def startService(self):
        if self.chat is None:
            self.load()
        super().startService()

    def stopService(self):
        """Tell every client, let their output drain (briefly), then close the files."""
        super().stopService()
        connections = list(self.factory.connections) if self.factory else []
        waiting = []
        for protocol in connections:
            protocol.notice(SHUTDOWN_NOTICE)
            if protocol.user is not None:
                user, protocol.user = protocol.user, None
                self.chat.logout(user)
            lost = defer.Deferred()
            protocol.connectionLost = _chain(protocol.connectionLost, lost)
            protocol.close_when_sent()
            waiting.append(lost)
        if self.factory is not None:
            self.factory.output.flush()  # the logs, then every connection's notice
        d = defer.DeferredList(waiting)
        timeout = self.clock.callLater(SHUTDOWN_GRACE_SECONDS, d.cancel) if waiting else None

        def close(_):
            if timeout is not None and timeout.active():
                timeout.cancel()
            for protocol in connections:
                if protocol.connected:
                    protocol.transport.abortConnection()
            if self.chat is not None:
                self.chat.close()
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

        return d.addBoth(close)


def _chain(original, lost: defer.Deferred):
    def connectionLost(reason):
        try:
            original(reason)
        finally:
            if not lost.called:
                lost.callback(None)

    return connectionLost


class ListeningService(service.Service):
    """
    Listens on a server endpoint and reports the bound address, so that port
    0 ("any free port") can be read from the ready line.
    """

    def __init__(self, endpoint, factory_source, on_listening, on_error):
        self.endpoint = endpoint
        self.factory_source = factory_source
        self.on_listening = on_listening
        self.on_error = on_error
        self.port = None

    def startService(self):
        super().startService()
        d = self.endpoint.listen(self.factory_source())
        d.addCallbacks(self._listening, self.on_error)

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        self.on_listening(address)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)


def ready_line(address) -> str:
    return f"Server listening on {address.host}:{address.port}"


def build_service(listen: str, credentials: str, data_dir: str, attempts: int,
                  on_listening, on_error, durable=False, max_output=DEFAULT_MAX_OUTPUT, reactor=None,
                  limits=None):
    if reactor is None:
        from twisted.internet import reactor
    top = service.MultiService()
    chat_service = ChatService(credentials, data_dir, attempts, clock=reactor,
                               durable=durable, max_output=max_output, limits=limits)
    chat_service.setServiceParent(top)
    endpoint = endpoints.serverFromString(reactor, listen)
    ListeningService(endpoint, lambda: chat_service.factory, on_listening, on_error).setServiceParent(top)
    return top, chat_service


class Options(usage.Options):
    """C{twistd chat} options."""

    synopsis = "[--port N | --listen ENDPOINT] --attempts N --credentials FILE --data-dir DIR"
    optParameters = [
        ["port", "p", None, "TCP port to listen on, all interfaces (default 9000)"],
        ["listen", "l", None, "a server endpoint string: tcp:9000:interface=127.0.0.1, ssl:9443:..."],
        ["attempts", "a", "3", "consecutive failed logins allowed, 1 to 5"],
        ["credentials", "c", "credentials.txt", "the accounts file"],
        ["data-dir", "d", ".", "where userlog.txt and the message logs are written"],
        ["max-output", None, str(DEFAULT_MAX_OUTPUT),
         "bytes of unsent output a client may have before it is disconnected"],
        *LIMIT_OPTIONS,
    ]
    optFlags = [["fsync", None, "flush acknowledged records to stable storage (group commit)"]]

    def postOptions(self):
        self["limits"] = parse_limits(self)
        if self["port"] is not None and self["listen"] is not None:
            raise usage.UsageError("give --port or --listen, not both")
        if self["listen"] is None:
            port = parse_port(self["port"] or "9000")
            self["listen"] = f"tcp:{port}"
        self["attempts"] = parse_attempts(self["attempts"])
        self["max-output"] = parse_size(self["max-output"])
        if not os.path.isdir(self["data-dir"]):
            raise usage.UsageError(f"no such directory: {self['data-dir']}")
        if not os.access(self["credentials"], os.R_OK):
            raise usage.UsageError(f"cannot read the credentials file {self['credentials']}")


def makeService(options):
    """The twistd entry point."""

    def listening(address):
        log.info("{line}", line=ready_line(address))

    def failed(failure):
        log.failure("Cannot listen on {listen}", failure, listen=options["listen"])
        from twisted.internet import reactor

        reactor.stop()

    top, chat_service = build_service(
        options["listen"], options["credentials"], options["data-dir"], options["attempts"],
        listening, failed, durable=options["fsync"], max_output=options["max-output"],
        limits=options["limits"],
    )
    try:
        chat_service.load()
    except OSError as e:
        raise SystemExit(f"Error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from None
    return top
