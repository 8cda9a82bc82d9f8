"""
Twisted's TCP server transport without its two description strings.

C{twisted.internet.tcp.Server} keeps, per connection, a log prefix
(C{"ChatLineProtocol,1234,127.0.0.1"}) and a C{repr} text
(C{"<ChatLineProtocol #1234 on 6000>"}): 160 bytes of an idle connection's
1.7 KiB (tracemalloc, issue 17). Here the C{repr} is made when asked for,
and the log prefix, read at every read and write event, is the protocol's
class name: Twisted's own error reports name the kind of connection, not
its peer (chatproto's log names peers where it matters).
"""

from twisted.internet import tcp

from ..twisted_internals import port_number, use_server_class


class LeanServer(tcp.Server):
    @property
    def logstr(self) -> str:
        return type(self.protocol).__name__

    @logstr.setter
    def logstr(self, _value) -> None:
        pass  # tcp.Server.__init__ sets it: not kept

    @property
    def repstr(self) -> str:
        port = port_number(self.server)
        return f"<{type(self.protocol).__name__} #{self.sessionno} on {port}>"

    @repstr.setter
    def repstr(self, _value) -> None:
        pass


# The transports whose socket output.send_through may write to directly.
PLAIN_TCP = (tcp.Server, LeanServer)


def lean(port) -> None:
    """Have a listening port's next connections use L{LeanServer} (plain TCP ports only)."""
    use_server_class(port, LeanServer)
