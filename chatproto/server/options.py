"""Parsing and checking the server's options, shared by C{python -m chatproto.server} and twistd."""

import os

from twisted.python import usage


def attempts_error(value) -> str:
    return (
        f"Invalid number of allowed failed consecutive attempts: {value}. "
        "The valid value of argument number is an integer between 1 and 5"
    )


def parse_attempts(value: str) -> int:
    """ATTEMPTS: an integer from 1 to 5 (README, "Server options"), or L{usage.UsageError}."""
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


# On by default: a public server must not run out of descriptors for one
# address's sake; users behind one NAT address rarely need more than this.
DEFAULT_MAX_CONNECTIONS = 10000
DEFAULT_MAX_CONNECTIONS_PER_IP = 100
# On by default too (issue 28, F3): a connection pipelining messages as fast as
# it can would cost everyone else (memory for its recipients' queues, their
# round trips, a reader dropped for another's flood). Nobody typing sends 50
# commands a second, and a client's bursts (a paste, joining its channels)
# fit in 100; over the rate, input only waits. Benchmarks turn it off.
DEFAULT_RATE_LIMIT = 50

# Flood limits, shared by the twistd plugin and C{python -m chatproto.server}.
LIMIT_OPTIONS = [
    ["rate-limit", None, str(DEFAULT_RATE_LIMIT),
     "commands a second allowed per connection on average (0: no limit)"],
    ["rate-burst", None, "0", "commands a connection may send at once (default: twice the rate)"],
    ["max-connections", None, str(DEFAULT_MAX_CONNECTIONS),
     "connections allowed at once, per listener (0: no cap)"],
    ["max-connections-per-ip", None, str(DEFAULT_MAX_CONNECTIONS_PER_IP),
     "connections allowed at once from one address, per listener (0: no cap)"],
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


DEFAULT_DATABASE = "sqlite:chatproto.db"


def parse_database(value: str) -> str:
    """
    C{sqlite:PATH}, C{memory:} (nothing kept across restarts) or
    C{postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME} (shared by the nodes of a cluster).
    """
    if value.startswith("sqlite:") and len(value) > len("sqlite:"):
        return value
    if value == "memory:":
        return value
    if value.startswith(("postgresql://", "postgres://")):
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError when it is not a number
        except ValueError:
            parts = None
        if parts is None or not parts.hostname or not parts.path.strip("/"):
            raise usage.UsageError(
                f"invalid --database: {value!r} (postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME)")
        return value
    raise usage.UsageError(
        f"invalid --database: {value!r} (sqlite:PATH, memory: or postgresql://USER@HOST[:PORT]/DBNAME)")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def parse_cluster(value: str | None):
    """C{redis://HOST[:PORT][/DB]} as (host, port, db), or None when not given."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port or 6379
        db = int(parts.path.strip("/") or 0)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "redis" or not parts.hostname or db < 0:
        raise usage.UsageError(f"invalid --cluster: {value!r} (redis://HOST[:PORT][/DB])")
    return parts.hostname, port, db


def check_cluster(options) -> None:
    """--cluster needs a shared database."""
    if options["cluster"] is not None and not is_postgres(options["database"]):
        raise usage.UsageError("--cluster needs --database postgresql://... (shared by every node)")


def database_path(url: str, data_dir: str) -> str:
    """The file of a C{sqlite:PATH} URL; a relative PATH is in the data directory."""
    return os.path.join(data_dir, url[len("sqlite:"):])


COMMON_OPTIONS = [
    ["credentials", "c", "credentials.txt", "the accounts file"],
    ["data-dir", "d", ".", "where userlog.txt, the message logs and the database are written"],
    ["database", None, DEFAULT_DATABASE,
     "sqlite:PATH (relative to the data directory), memory: (nothing kept) or "
     "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"],
    ["cluster", None, None, "redis://HOST[:PORT][/DB]: be one node of a cluster (needs --database postgresql://)"],
    ["max-output", None, str(1024 * 1024),
     "bytes of unsent output a client may have before it is disconnected"],
]


# One person, several devices (docs/PROTOCOL.md, "Several sessions").
SESSION_OPTIONS = [
    ["max-sessions", None, "10", "sessions one account may have at once, 1 to 100 (1: one login per account)"],
]
SESSION_FLAGS = [["offline-messages", None, "accept private messages to inactive users (unread at their next login)"]]


def parse_sessions(options) -> dict:
    """C{--max-sessions} and C{--offline-messages} as L{ChatRealm} keyword arguments."""
    value = str(options["max-sessions"])
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 100:
        raise usage.UsageError(f"invalid --max-sessions: {value!r} (an integer from 1 to 100)")
    return {"max_sessions": int(value), "offline_messages": bool(options["offline-messages"])}


# The IRC front end (docs/IRC.md): off unless one of these is given.
IRC_OPTIONS = [
    ["irc-port", None, None, "also speak IRC on this TCP port (0: any free port)"],
    ["irc-listen", None, None, "also speak IRC on this server endpoint (tcp:6667, ssl:6697:...)"],
]


def parse_irc(options, interface: str = "") -> str | None:
    """The IRC listener's endpoint description from C{--irc-port}/C{--irc-listen}, or None."""
    port, listen = options["irc-port"], options["irc-listen"]
    if port is not None and listen is not None:
        raise usage.UsageError("give --irc-port or --irc-listen, not both")
    if listen is not None:
        return listen
    if port is None:
        return None
    description = f"tcp:{parse_port(port)}"
    if interface:
        description += ":interface=" + interface.replace(":", r"\:")
    return description
