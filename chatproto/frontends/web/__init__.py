"""
The browser client (docs/WEB.md): a page served by the chat server
itself, talking JSON over a WebSocket to the same core as the line protocol
and IRC.

L{WebFrontEnd} is what the server app adds to its services: C{factory(chat)}
builds the twisted.web site, C{ready_line(address)} is the line printed when
it listens, C{stop()} tells open pages the server is going away.
"""

from .session import GRACE_SECONDS, SessionStore
from .site import WebSite, build_root
from .socket import ChatSocketFactory

DEFAULT_MAX_OUTPUT = 1024 * 1024
SHUTDOWN_NOTICE = "Server shutting down"
HTTP_IDLE_SECONDS = 60


def ready_line(address) -> str:
    return f"Web client on http://{address.host}:{address.port}/"


class WebFrontEnd:
    """The web front end: one listener, one session store, over one core."""

    name = "web"

    def __init__(self, listen: str, max_output: int = DEFAULT_MAX_OUTPUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, origins=(), grace: float = GRACE_SECONDS, clock=None,
                 max_connections: int = 0, max_connections_per_ip: int = 0):
        self.listen = listen
        self.max_output = max_output
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.origins = tuple(origins)
        self.grace = grace
        self.clock = clock
        self.store = None
        self.sockets = None
        self.site = None

    def factory(self, chat) -> WebSite:
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = SessionStore(chat, clock, self.grace)
        self.sockets = ChatSocketFactory(chat, self.store, clock, self.max_output,
                                         self.rate_limit, self.rate_burst,
                                         self.max_connections, self.max_connections_per_ip)
        # An idle HTTP connection (not a WebSocket: the upgrade ends the channel's timer) is closed
        # after HTTP_IDLE_SECONDS.
        self.site = WebSite(build_root(self.store, self.sockets, self.origins), reactor=clock,
                            timeout=HTTP_IDLE_SECONDS, caps=self.sockets.caps, chat=chat,
                            sockets=self.sockets)
        return self.site

    def ready_line(self, address) -> str:
        return ready_line(address)

    def stop(self, notice: str = SHUTDOWN_NOTICE) -> list:
        """Tell every open page, log every web user out; the Deferreds of the logouts."""
        if self.store is None:
            return []
        waiting = self.store.shutdown(notice)
        self.sockets.stop()
        return waiting


__all__ = ["WebFrontEnd", "ready_line"]
