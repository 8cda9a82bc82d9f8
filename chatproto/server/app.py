"""
The server as Twisted services: shared by C{python -m chatproto.server} and
the C{twistd chat} plugin.

A L{ChatService} owns the realm and its storage; each front end is one
L{FrontEnd} (a name, an endpoint, a factory over the realm, a ready line)
that a L{ListeningService} puts on the air.
"""

import os

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python import usage

from ..core.realm import ChatRealm
from ..frontends.frontend import FrontEnd
from ..frontends.line.protocol import ChatServerFactory
from ..frontends.line.texts import SHUTDOWN_NOTICE
from ..frontends.output import DEFAULT_MAX_OUTPUT
from ..frontends.transports import lean
from ..frontends.web.options import WEB_OPTIONS, web_front_ends, web_listen_description
from ..storage.credentials import CredentialsFile
from ..storage.ledger import Ledger
from ..storage.memory import MemoryDatabase
from ..storage.model import DatabaseError
from ..storage.sqlite import SQLiteDatabase
from .collector import CollectorTuning
from . import ops
from .config import ConfigError, ConfigurableOptions, print_config
from .datadir import DataDirectoryInUse, is_server_file, lock_data_directory, remove_stale_temporaries
from .options import (
    COMMON_OPTIONS,
    check_cluster,
    DEFAULT_DATABASE,
    IRC_OPTIONS,
    LIMIT_OPTIONS,
    SESSION_FLAGS,
    SESSION_OPTIONS,
    database_path,
    is_postgres,
    parse_attempts,
    parse_cluster,
    parse_database,
    parse_irc,
    parse_limits,
    parse_sessions,
    parse_port,
    parse_size,
)

log = Logger()

SHUTDOWN_GRACE_SECONDS = 0.5  # then connections still draining are cut: SIGTERM ends in well under 1 s

__all__ = ["ChatService", "DataDirectoryInUse", "DatabaseError", "FrontEnd", "Options", "build_service",
           "makeService"]


def line_ready_line(address) -> str:
    return f"Server listening on {address.host}:{address.port}"


ready_line = line_ready_line


def irc_ready_line(address) -> str:
    return f"IRC listening on {address.host}:{address.port}"


def irc_front_end(listen: str) -> FrontEnd:
    """The IRC listener (docs/IRC.md) on C{listen}, over the same realm and limits."""

    def make_factory(chat_service):
        from ..frontends.irc import IRCFactory

        factory = IRCFactory(chat_service.chat, clock=chat_service.clock,
                             max_output=chat_service.max_output, **chat_service.limits)
        chat_service.factories.append(factory)
        return factory

    return FrontEnd("irc", listen, make_factory, irc_ready_line)


def open_database(url: str, data_dir: str, reactor, durable: bool, node=None):
    if url == "memory:":
        return MemoryDatabase().open()
    if is_postgres(url):
        from ..storage.postgres import PostgresDatabase

        return PostgresDatabase(url, reactor=reactor, durable=durable, node=node).open()
    path = database_path(url, data_dir)
    return SQLiteDatabase(path, reactor=reactor, durable=durable).open()


def logged_database(url: str) -> str:
    """The database as the log shows it: a PostgreSQL URL without its password."""
    if not is_postgres(url):
        return url
    from ..storage.postgres import connection_info

    return connection_info(url)


class ChatService(service.Service):
    """Owns the realm and its storage: loads them at start, tells everyone and closes at stop."""

    def __init__(self, credentials_path: str, data_dir: str, attempts: int, clock=None,
                 durable: bool = False, max_output: int = DEFAULT_MAX_OUTPUT, limits=None,
                 database: str = DEFAULT_DATABASE, cluster=None, admins=(), sessions=None):
        self.limits = limits or {}
        self.admins = tuple(admins)  # accounts that may kick, ban and announce
        self.sessions = sessions or {}  # ChatRealm's max_sessions, offline_messages
        self.cluster = cluster  # (host, port, db) of Redis: one node of a cluster
        self.bus = None
        self.credentials_path = credentials_path
        self.data_dir = data_dir
        self.attempts = attempts
        self.durable = durable
        self.max_output = max_output
        self.database_url = database
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.chat = None
        self.storage = None
        self.factories: list = []
        self._lock = None

    def load(self) -> None:
        """
        Lock the data directory, read the accounts, open the database and the
        logs; raise L{DataDirectoryInUse}, L{DatabaseError} or OSError when
        they cannot be. Nothing is touched before the lock is held.
        """
        self._lock = lock_data_directory(self.data_dir)
        try:
            # Temporary files of rewrites cut short by a crash: nobody else writes here now.
            remove_stale_temporaries(self.data_dir, is_server_file)
            credentials_dir, credentials_name = os.path.split(os.path.abspath(self.credentials_path))
            remove_stale_temporaries(credentials_dir, lambda name: name == credentials_name)
            reactor = self.clock if hasattr(self.clock, "callFromThread") else None
            accounts = CredentialsFile(self.credentials_path, reactor).load()
            if self.cluster is None:
                database = open_database(self.database_url, self.data_dir, reactor, self.durable)
                self.storage = Ledger(database, self.data_dir, self.clock, self.durable)
                self.chat = ChatRealm(accounts, self.storage, self.clock, self.attempts, admins=self.admins,
                                      **self.sessions)
            else:
                self._load_node(accounts, reactor)
            self.chat.start()
        except BaseException:
            os.close(self._lock)
            self._lock = None
            raise
        log.info("Loaded {n} accounts; database {database}", n=len(accounts.names()),
                 database=logged_database(self.database_url))
        if self.admins:
            log.info("Administrators: {names}", names=" ".join(sorted(self.admins)))

    def _load_node(self, accounts, reactor) -> None:
        """One node of a cluster: PostgreSQL gives the SEQs, Redis carries presence and deliveries."""
        import secrets

        from ..cluster.bus import ClusterBus
        from ..cluster.ledger import ClusterLedger
        from ..cluster.lockout import SharedLockout
        from ..cluster.shared import SharedAccounts, SharedBans

        node = secrets.token_hex(6)
        database = open_database(self.database_url, self.data_dir, reactor, self.durable, node=node)
        self.storage = ClusterLedger(database, self.data_dir, self.clock, self.durable)
        lockout = SharedLockout(self.clock, self.attempts, database)  # counted in PostgreSQL
        lockout.load()
        # Accounts and bans changed on one node act on every node (told over the bus).
        accounts, bans = SharedAccounts(accounts), SharedBans(self.storage)
        self.chat = ChatRealm(accounts, self.storage, self.clock, self.attempts, admins=self.admins,
                              lockout=lockout, bans=bans, **self.sessions)
        self.bus = ClusterBus(self.chat, self.storage, self.cluster, self.clock, node, lockout=lockout,
                              accounts=accounts, bans=bans)
        self.bus.install()

    def line_factory(self) -> ChatServerFactory:
        factory = ChatServerFactory(self.chat, self.max_output, **self.limits)
        self.factories.append(factory)
        return factory

    def startService(self):
        if self.chat is None:
            self.load()
        if self.bus is not None:
            log.info("Cluster: node {node} joining Redis at {host}:{port}", node=self.bus.node,
                     host=self.bus.host, port=self.bus.port)
            self.bus.start(self.clock)
        super().startService()

    def when_ready(self) -> defer.Deferred:
        """
        Fires once every command works: at once for a server on its own; for a
        cluster node once it has joined Redis (PostgreSQL was opened by L{load}).
        The listeners open only then, so that a ready line (and an open port
        behind a load balancer) never answers a login with a server error.
        """
        if self.bus is None:
            return defer.succeed(None)
        return self.bus.when_up()

    def stopService(self):
        """Tell every client, let their output drain (briefly), then close the files."""
        super().stopService()
        log.info("Shutting down")
        connections = [c for factory in self.factories for c in list(factory.connections)]
        # Each connection says when it is gone (the connection layer's whenLost).
        waiting = [protocol.whenLost() for protocol in connections]
        if self.chat is not None:
            self.chat.shutdown(SHUTDOWN_NOTICE)
        for protocol in connections:
            if getattr(protocol, "user", None) is None and hasattr(protocol, "disconnect"):
                protocol.disconnect(SHUTDOWN_NOTICE)  # not logged in: told all the same
        if self.storage is not None:
            self.storage.flush()
        for factory in self.factories:
            factory.output.flush()  # every connection's notice
        d = defer.DeferredList(waiting, consumeErrors=True)  # (cut at the grace period: not an error)
        timeout = self.clock.callLater(SHUTDOWN_GRACE_SECONDS, d.cancel) if waiting else None

        def close(_):
            if timeout is not None and timeout.active():
                timeout.cancel()
            for protocol in connections:
                if protocol.connected:
                    protocol.transport.abortConnection()
            closed = self.chat.close() if self.chat is not None else defer.succeed(None)
            if self.bus is not None:
                bus = self.bus
                closed.addBoth(lambda result: bus.stop().addBoth(lambda _: result))

            def unlock(result):
                if self._lock is not None:
                    os.close(self._lock)
                    self._lock = None
                return result

            return closed.addBoth(unlock)

        return d.addBoth(close)


class ListeningService(service.Service):
    """
    Listens on a server endpoint and reports the bound address, so that port
    0 ("any free port") can be read from the ready line.
    """

    def __init__(self, endpoint, factory_source, on_listening, on_error, ready=None):
        self.endpoint = endpoint
        self.factory_source = factory_source
        self.on_listening = on_listening
        self.on_error = on_error
        self.ready = ready  # a callable: a Deferred that fires when the server can serve
        self.port = None

    def startService(self):
        super().startService()
        d = self.ready() if self.ready is not None else defer.succeed(None)
        d.addCallback(self._listen)

    def _listen(self, _):
        if not self.running:
            return  # stopped before the server was ready
        d = self.endpoint.listen(self.factory_source())
        d.addCallbacks(self._listening, self.on_error)

    def _listening(self, port):
        if not self.running:  # stopped while the port was being opened
            return port.stopListening()
        self.port = port
        lean(port)
        self.on_listening(port.getHost())

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)


def build_service(listen: str, credentials: str, data_dir: str, attempts: int,
                  on_listening, on_error, durable=False, max_output=DEFAULT_MAX_OUTPUT, reactor=None,
                  limits=None, database: str = DEFAULT_DATABASE, front_ends=(), cluster=None, admins=(),
                  sessions=None):
    """
    The whole server: the chat service, the line protocol on C{listen}, and
    each extra L{FrontEnd}. C{on_listening(front_end, address)} is called as
    each listener is up; C{on_error(front_end, failure)} when one cannot be.
    """
    if reactor is None:
        from twisted.internet import reactor
    top = service.MultiService()
    chat_service = ChatService(credentials, data_dir, attempts, clock=reactor, durable=durable,
                               max_output=max_output, limits=limits, database=database, cluster=cluster,
                               admins=admins, sessions=sessions)
    chat_service.setServiceParent(top)
    line = FrontEnd("line", listen, ChatService.line_factory, line_ready_line)
    for front_end in [line, *front_ends]:
        listen_on(top, front_end, chat_service, on_listening, on_error, reactor)
    CollectorTuning().setServiceParent(top)
    return top, chat_service


# Connections the kernel queues for a listener before the server accepts them. Twisted's default,
# 50, overflows under a burst of logins (a page reloaded by many users after a restart): the
# kernel then answers with SYN cookies and those clients hang. The kernel caps it (somaxconn).
LISTEN_BACKLOG = 1024
_BACKLOG_KINDS = ("tcp", "tcp6", "ssl", "unix")


def server_endpoint(reactor, description: str):
    """The server endpoint of C{description}, queueing L{LISTEN_BACKLOG} connections
    unless the description names its own C{backlog=}."""
    if description.partition(":")[0] in _BACKLOG_KINDS and "backlog=" not in description:
        description = f"{description}:backlog={LISTEN_BACKLOG}"
    return endpoints.serverFromString(reactor, description)


def listen_on(top, front_end: FrontEnd, chat_service, on_listening, on_error, reactor) -> None:
    """Put C{front_end} on the air under C{top}, once the service starts."""
    ListeningService(
        server_endpoint(reactor, front_end.listen),
        lambda: front_end.make_factory(chat_service),
        lambda address: on_listening(front_end, address),
        lambda failure: on_error(front_end, failure),
        ready=chat_service.when_ready,
    ).setServiceParent(top)


def attach_ops(top, chat_service, options, on_listening, on_error, reactor=None) -> None:
    """Once the chat service is loaded: L{ops.attach}'s services, and the metrics listener if asked for."""
    if reactor is None:
        from twisted.internet import reactor
    metrics = ops.attach(top, chat_service, options, reactor)
    if metrics is not None:
        listen_on(top, metrics, chat_service, on_listening, on_error, reactor)


class Options(ConfigurableOptions, usage.Options):
    """C{twistd chat} options."""

    synopsis = ("[--port N | --listen ENDPOINT] [--irc-port N | --irc-listen ENDPOINT] "
                "[--web-port N | --web-listen ENDPOINT] --attempts N --credentials FILE --data-dir DIR")
    optParameters = [
        ["port", "p", None, "TCP port to listen on, all interfaces (default 9000)"],
        ["listen", "l", None, "a server endpoint string: tcp:9000:interface=127.0.0.1, ssl:9443:..."],
        ["interface", None, "", "with --port: listen on this address only (default: all interfaces)"],
        ["attempts", "a", "3", "consecutive failed logins allowed, 1 to 5"],
        *COMMON_OPTIONS,
        *SESSION_OPTIONS,
        *LIMIT_OPTIONS,
        *IRC_OPTIONS,
        *WEB_OPTIONS,
        *ops.OPS_OPTIONS,
    ]
    optFlags = [["fsync", None, "flush acknowledged records to stable storage (group commit)"],
                *SESSION_FLAGS, ops.PRINT_CONFIG_FLAG]

    def postOptions(self):
        import sys

        try:
            self.apply_config()
            snapshot = dict(self)
            self.check_config(self._check)
        except ConfigError as e:  # one line and status 2, not twistd's whole usage
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        if self["print-config"]:
            print_config(self, snapshot)
            raise SystemExit(0)

    def _check(self):
        self["limits"] = parse_limits(self)
        self["sessions"] = parse_sessions(self)
        self["irc"] = parse_irc(self)
        self["web-listen"] = web_listen_description(self)
        if self["port"] is not None and self["listen"] is not None:
            raise usage.UsageError("give --port or --listen, not both")
        if self["listen"] is None:
            port = parse_port(str(self["port"] or "9000"))
            self["listen"] = f"tcp:{port}"
            if self["interface"]:
                self["listen"] += ":interface=" + self["interface"].replace(":", r"\:")
        elif self["interface"]:
            raise usage.UsageError("give --interface with --port, or put it in --listen")
        self["attempts"] = parse_attempts(self["attempts"])
        self["max-output"] = parse_size(self["max-output"])
        self["database"] = parse_database(self["database"])
        self["cluster"] = parse_cluster(self["cluster"])
        check_cluster(self)
        if not os.path.isdir(self["data-dir"]):
            raise usage.UsageError(f"no such directory: {self['data-dir']}")
        if not os.access(self["credentials"], os.R_OK):
            raise usage.UsageError(f"cannot read the credentials file {self['credentials']}")
        ops.parse_ops(self, self["interface"] or "127.0.0.1")


def makeService(options):
    """The twistd entry point."""

    def listening(front_end, address):
        log.info("{line}", line=front_end.ready_line(address))

    def failed(front_end, failure):
        log.failure("Cannot listen on {listen}", failure, listen=front_end.listen)
        from twisted.internet import reactor

        reactor.stop()

    top, chat_service = build_service(
        options["listen"], options["credentials"], options["data-dir"], options["attempts"],
        listening, failed, durable=options["fsync"], max_output=options["max-output"],
        limits=options["limits"], database=options["database"], cluster=options["cluster"],
        admins=options.get("admins") or (), sessions=options["sessions"],
        front_ends=([irc_front_end(options["irc"])] if options["irc"] else [])
        + web_front_ends(options["web-listen"], options["max-output"], options["limits"]),
    )
    try:
        chat_service.load()
    except DatabaseError as e:
        raise SystemExit(f"Error: {e}") from None
    except OSError as e:
        raise SystemExit(f"Error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from None
    attach_ops(top, chat_service, options, listening, failed)
    return top
