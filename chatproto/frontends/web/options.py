"""
The server options of the web front end (docs/WEB.md), for the server
app and the twistd plugin:

    --web-port N          the browser client on TCP port N (0: a free port), same interface as the chat
    --web-listen ENDPOINT a Twisted server endpoint: tcp:8080, ssl:8443:privateKey=key.pem:certKey=cert.pem
"""

from twisted.python import usage

from ..frontend import FrontEnd

WEB_OPTIONS = [
    ["web-port", None, None, "serve the browser client on this TCP port (0: any free port)"],
    ["web-listen", None, None, "serve the browser client on a server endpoint: tcp:8080, ssl:8443:..."],
]


def web_listen_description(options, interface: str = "") -> str | None:
    """The endpoint string the options ask for, None when the web client is off."""
    port, listen = options.get("web-port"), options.get("web-listen")
    if port is not None and listen is not None:
        raise usage.UsageError("give --web-port or --web-listen, not both")
    if listen is not None:
        return listen
    if port is None:
        return None
    port = str(port)
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise usage.UsageError(f"invalid --web-port: {port!r} (an integer from 0 to 65535)")
    description = f"tcp:{int(port)}"
    if interface:
        description += ":interface=" + interface.replace(":", r"\:")
    return description


def web_frontend(listen: str | None, max_output: int, limits: dict | None = None, clock=None):
    """The L{WebFrontEnd} for C{listen} (None: none), with the line protocol's limits."""
    if listen is None:
        return None
    from . import WebFrontEnd

    limits = limits or {}
    return WebFrontEnd(listen, max_output=max_output, rate_limit=limits.get("rate_limit", 0.0),
                       rate_burst=limits.get("rate_burst", 0), clock=clock,
                       max_connections=limits.get("max_connections", 0),
                       max_connections_per_ip=limits.get("max_connections_per_ip", 0))


def web_front_ends(listen: str | None, max_output: int, limits: dict | None = None) -> list:
    """The server app's L{FrontEnd} list for the web client: empty when it is off."""
    if listen is None:
        return []
    from . import ready_line

    web = web_frontend(listen, max_output, limits)

    def make_factory(chat_service):
        web.clock = chat_service.clock
        site = web.factory(chat_service.chat)
        # At shutdown the service flushes each factory's output after the core has told every
        # session (the pages' "ended"), then waits for the site's connections (its WebSockets).
        site.output = web.sockets.output
        # For the metrics: its connections are the pages' WebSockets (an HTTP request is brief).
        site.frontend = "web"
        site.open_connections = lambda: len(web.sockets.sockets)
        chat_service.factories.append(site)
        return site

    front_end = FrontEnd("web", listen, make_factory, ready_line)
    front_end.web = web
    return [front_end]
