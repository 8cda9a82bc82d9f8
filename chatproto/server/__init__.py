"""
C{python -m chatproto.server PORT ATTEMPTS}: the server, started by hand.
"""

import os
import sys

from twisted.python import usage

from ..frontends.web.options import WEB_OPTIONS, web_front_ends, web_listen_description
from . import ops
from .app import DatabaseError, DataDirectoryInUse, attach_ops, build_service, irc_front_end
from .config import ConfigError, ConfigurableOptions, print_config
from .operatorlog import server_log_observers
from .options import (
    COMMON_OPTIONS,
    IRC_OPTIONS,
    LIMIT_OPTIONS,
    SESSION_FLAGS,
    SESSION_OPTIONS,
    AttemptsError,
    check_cluster,
    parse_attempts,
    parse_cluster,
    parse_database,
    parse_irc,
    parse_limits,
    parse_sessions,
    parse_port,
    parse_size,
)

USAGE = ("Usage: python -m chatproto.server [--config FILE] [--print-config] [--interface ADDR] "
         "[--credentials FILE] [--data-dir DIR] [--database URL] [--max-output BYTES] [--rate-limit N] "
         "[--rate-burst N] [--max-connections N] [--max-connections-per-ip N] "
         "[--irc-port N | --irc-listen ENDPOINT] [--web-port N | --web-listen ENDPOINT] [--admins NAMES] "
         "[--metrics-port N] [--cluster redis://HOST:PORT] [--max-sessions N] [--offline-messages] [--fsync] "
         "PORT ATTEMPTS")


class ServerOptions(ConfigurableOptions, usage.Options):
    config_positional = ("port", "attempts")  # from the configuration file when not given
    optParameters = [
        ["interface", None, None, "listen on this address only (default: all interfaces)"],
        *COMMON_OPTIONS,
        *SESSION_OPTIONS,
        *LIMIT_OPTIONS,
        *IRC_OPTIONS,
        *WEB_OPTIONS,
        *ops.OPS_OPTIONS,
    ]
    optFlags = [["fsync", None, "flush acknowledged records to stable storage (group commit)"],
                *SESSION_FLAGS, ops.PRINT_CONFIG_FLAG]

    def parseArgs(self, *args):
        if len(args) == 2:
            self["port"], self["attempts"] = args
        elif args:
            raise usage.UsageError("Wrong number of arguments.")

    def postOptions(self):
        self.apply_config()
        snapshot = dict(self)
        self.check_config(self._check)
        if self["print-config"]:
            print_config(self, snapshot)
            sys.exit(0)

    def _check(self):
        if self.get("port") is None or self.get("attempts") is None:
            raise usage.UsageError("PORT and ATTEMPTS are needed, as arguments or in the --config file")
        self["port"] = parse_port(str(self["port"]))
        self["attempts"] = parse_attempts(str(self["attempts"]))
        self["max-output"] = parse_size(self["max-output"])
        self["limits"] = parse_limits(self)
        self["sessions"] = parse_sessions(self)
        self["database"] = parse_database(self["database"])
        self["cluster"] = parse_cluster(self["cluster"])
        check_cluster(self)
        self["irc"] = parse_irc(self, self["interface"])
        self["web-listen"] = web_listen_description(self, self["interface"])
        if not os.path.isdir(self["data-dir"]):
            raise usage.UsageError(f"no such directory: {self['data-dir']}")
        ops.parse_ops(self, self["interface"] or "127.0.0.1")

    def opt_help(self):
        """show this help and exit"""
        try:
            print(USAGE)
            print(self.__str__().split("\n", 1)[1], flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)

    def opt_version(self):
        """show chatproto's version and exit"""
        print(f"chatproto {package_version()}")
        sys.exit(0)


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("chatproto")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def listen_description(port: int, interface: str) -> str:
    description = f"tcp:{port}"
    if interface:
        description += ":interface=" + interface.replace(":", r"\:")
    return description


FLAGS = {"--fsync", "--help", "-h", "--version", "--print-config"}


def options_first(argv: list[str]) -> list[str]:
    """Let options follow the positional arguments too (getopt stops at the first of them)."""
    options, positional = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            positional.extend(args)
        elif arg.startswith("-") and len(arg) > 1 and not arg.lstrip("-").isdigit():
            options.append(arg)
            if arg not in FLAGS and "=" not in arg:
                value = next(args, None)
                if value is not None:
                    options.append(value)
        else:
            positional.append(arg)
    return options + positional


def raise_descriptor_limit() -> None:
    """As many descriptors as the system lets this process have: one per connection, and some."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    options = ServerOptions()
    try:
        options.parseOptions(options_first(argv))
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    except AttemptsError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    except usage.UsageError as e:
        print(f"{USAGE} ({e})", file=sys.stderr)
        sys.exit(2)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    observers = server_log_observers(sys.stdout, sys.stderr, reactor)
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
    status = {"code": 0}

    def listening(front_end, address):
        for observer in observers:  # what led to it first (a cluster node: "joined")
            observer.flush()
        print(front_end.ready_line(address), flush=True)

    def listen_failed(front_end, failure):
        reason = getattr(failure.value, "socketError", None)
        reason = getattr(reason, "strerror", None) or failure.getErrorMessage()
        port = failure.value.port if hasattr(failure.value, "port") else options["port"]
        print(f"Error: cannot listen on port {port} ({front_end.name}): {reason}",
              file=sys.stderr, flush=True)
        status["code"] = 1
        reactor.stop()

    top, chat_service = build_service(
        listen_description(options["port"], options["interface"]),
        options["credentials"], options["data-dir"], options["attempts"],
        listening, listen_failed, durable=options["fsync"],
        max_output=options["max-output"], reactor=reactor, limits=options["limits"],
        database=options["database"], cluster=options["cluster"], admins=options.get("admins") or (),
        sessions=options["sessions"],
        front_ends=([irc_front_end(options["irc"])] if options["irc"] else [])
        + web_front_ends(options["web-listen"], options["max-output"], options["limits"]),
    )
    try:
        chat_service.load()
    except (DataDirectoryInUse, DatabaseError) as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f"Error: {e.filename}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
    raise_descriptor_limit()
    attach_ops(top, chat_service, options, listening, listen_failed, reactor)
    reactor.callWhenRunning(top.startService)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    sys.exit(status["code"])


if __name__ == "__main__":
    main()
