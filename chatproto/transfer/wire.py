"""
The datagram format of the p2p transfer (docs/TRANSFER.md, Datagram format).
"""

from __future__ import annotations

import struct

from .names import printable

# --- the datagram format (docs/TRANSFER.md) ------------------------------------

MAGIC = b"CT"
ANNOUNCE, ACCEPT, DATA, ACK, DONE, FAIL, HASH = 1, 2, 3, 4, 5, 6, 7

HEADER = struct.Struct("!2sBQ")  # magic, type, transfer id
ANNOUNCE_BODY = struct.Struct("!QIBH")  # size, chunk size, len(presenter), len(name)
ACCEPT_BODY = struct.Struct("!H")  # receive window (chunks)
DATA_HEADER = struct.Struct("!2sBQIII")  # header + chunk index, packet number, timestamp (us)
ACK_BODY = struct.Struct("!IIIIHH")  # highest packet, its timestamp, cum, hi, window, n ranges
RANGE = struct.Struct("!II")  # a run of missing chunks [start, end)
HASH_BODY = struct.Struct("!32s")  # the file's SHA-256, sent once every chunk was sent

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
MAX_CHUNK_SIZE = MAX_DATAGRAM - DATA_HEADER.size
MIN_CHUNK_SIZE = 512
DEFAULT_CHUNK_SIZE = 60 * 1024  # measured: bench/bench_transfer.py --chunk-size
MAX_RANGES = 128  # missing runs listed in one ACK
MAX_REASON = 200  # bytes of a FAIL reason



def micros(seconds: float) -> int:
    return int(seconds * 1e6) & 0xFFFFFFFF


def encode_fail(tid: int, reason: str) -> bytes:
    return HEADER.pack(MAGIC, FAIL, tid) + reason.encode("utf-8")[:MAX_REASON]


def decode_reason(data: bytes) -> str:
    return printable(data[HEADER.size :].decode("utf-8", "replace"))
