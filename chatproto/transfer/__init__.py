"""
Verified, authenticated, loss-tolerant file transfer between two clients over
UDP (/p2pvideo).

One L{TransferEndpoint} (a L{DatagramProtocol}) serves every transfer of a
client, in both directions at once.  It knows nothing of the chat client: it
is given a directory, a listener and, optionally, a clock.  The datagram
format and the state machines are described in C{docs/TRANSFER.md}.

The parts: L{wire} (the datagram formats), L{names} (which names are safe,
where a received file is stored), L{outgoing} (the presenter's side),
L{incoming} (the receiver's side and its worker thread), L{endpoint} (the
socket, the limits, the dispatch of datagrams).
"""

from .base import LOSS_ENVIRONMENT_VARIABLE, TransferFailed
from .endpoint import DEFAULT_MAX_FILE_SIZE, TransferEndpoint
from .names import check_basename, check_presenter, final_name
from .port import listen_udp
from .wire import (
    ACCEPT,
    ACCEPT_BODY,
    ACK,
    ACK_BODY,
    ANNOUNCE,
    ANNOUNCE_BODY,
    DATA,
    DATA_HEADER,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_HASH,
    DONE,
    HOLD,
    FAIL,
    HASH,
    HASH_BODY,
    HEADER,
    MAGIC,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    RANGE,
    TAG_SIZE,
    decode_reason,
)

__all__ = [
    "ACCEPT",
    "ACCEPT_BODY",
    "ACK",
    "ACK_BODY",
    "ANNOUNCE",
    "ANNOUNCE_BODY",
    "DATA",
    "DATA_HEADER",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_HASH",
    "DEFAULT_MAX_FILE_SIZE",
    "DONE",
    "FAIL",
    "HASH",
    "HASH_BODY",
    "HEADER",
    "HOLD",
    "LOSS_ENVIRONMENT_VARIABLE",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "RANGE",
    "TAG_SIZE",
    "TransferEndpoint",
    "TransferFailed",
    "check_basename",
    "check_presenter",
    "decode_reason",
    "final_name",
    "listen_udp",
]
