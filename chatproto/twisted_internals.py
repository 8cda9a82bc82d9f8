"""
The private parts of Twisted that chatproto relies on, in one place.

Each is used for a measured reason (given with it) where Twisted has no
public way; tests/test_twisted_internals.py checks every one against the
installed Twisted on real objects, so that an upgrade that renames or
changes one fails a test instead of corrupting output or losing bytes.
Nothing else in chatproto reads or sets a private Twisted name.
"""

from twisted.internet import tcp, udp

# TCP transports (twisted.internet.abstract.FileDescriptor, tcp.Server)


def unsent_bytes(transport) -> int | None:
    """
    Bytes waiting in the write buffer of a Twisted file-descriptor transport
    (TCP): C{dataBuffer} from C{offset} on, plus C{_tempDataLen} (what
    C{write} appended since). None for a transport that does not keep them
    (TLS, test doubles). The slow-reader bound needs the real backlog; a
    producer's pause only says it is over Twisted's 64 KiB.
    """
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


def send_now(transport, data: bytes, plain_tcp=(tcp.Server,)) -> int:
    """
    Send C{data} on the socket (C{transport.socket.send}) of a plain TCP
    transport (a type in C{plain_tcp}) whose write buffers
    (C{dataBuffer}, C{_tempDataBuffer}) are empty; return how many bytes the
    kernel took (0 when it cannot: the caller writes the rest with
    C{transport.write}). Twisted would register the socket for writing and
    send at the next wake-up: two more system calls and a dispatch per
    connection per turn, most of the cost of a fan-out to idle members.
    """
    if (type(transport) not in plain_tcp or transport.dataBuffer or transport._tempDataBuffer
            or transport.disconnecting or not transport.connected):
        return 0
    try:
        return transport.socket.send(data)
    except OSError:
        return 0  # EAGAIN, or an error the transport will find and report


def use_server_class(port, server_class) -> bool:
    """
    Have a listening C{tcp.Port}'s next connections be C{server_class} (a
    C{tcp.Server} subclass): C{Port.transport} is the class it builds them
    with. Only a plain C{tcp.Port} building C{tcp.Server}s is changed; say
    whether it was.
    """
    if type(port) is tcp.Port and port.transport is tcp.Server:
        port.transport = server_class
        return True
    return False


def port_number(port) -> int | None:
    """The number a C{tcp.Port} listens on (C{_realPortNumber}), for a connection's repr."""
    return getattr(port, "_realPortNumber", None)


# An HTTP connection that becomes a WebSocket


def replace_protocol(tcp_transport, channel, replacement) -> bool:
    """
    Make C{replacement} receive what C{tcp_transport} reads instead of the
    HTTP C{channel}: the transport holds its protocol in C{protocol} (plain
    TCP) or, under TLS, in C{wrappedProtocol}, possibly as the wrapper
    whose C{_channel} is the channel. Return False when neither holds it
    (the caller then redirects the channel's C{dataReceived}).
    """
    for holder in ("wrappedProtocol", "protocol"):  # TLS, then plain TCP
        current = getattr(tcp_transport, holder, None)
        if current is not None and (current is channel or getattr(current, "_channel", None) is channel):
            setattr(tcp_transport, holder, replacement)
            return True
    return False


# UDP reads (chatproto.transfer.port reads datagrams into its own buffers)


def udp_read_errors() -> tuple:
    """The errnos C{udp.Port.doRead} ignores (try later) and treats as a refusal: C{_sockErrRead*}."""
    return udp._sockErrReadIgnore, udp._sockErrReadRefuse


def udp_connected(port) -> bool:
    """Whether a C{udp.Port} is connected to one address (C{_connectedAddr})."""
    return bool(port._connectedAddr)
