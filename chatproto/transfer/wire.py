"""
The datagram format of the p2p transfer and its authentication
(docs/TRANSFER.md, Datagram format and Authentication).

Every datagram is C{header, body, tag}.  The header names the transfer (the
64-bit id the server chose) and numbers the datagram (per direction, from 1);
the tag authenticates the header and the body with the transfer's key for
that direction: AES-256-GCM with an empty plaintext (GMAC), the datagram
number as its nonce.  The two keys are derived from the transfer's secret,
which the server handed to both clients over their TCP sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

try:
    import blake3 as _blake3
except ImportError:  # pragma: no cover - blake3 is in install_requires; SHA-256 still works
    _blake3 = None

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .names import printable

MAGIC = b"C2"  # "CT" was the unauthenticated format
ANNOUNCE, ACCEPT, DATA, ACK, DONE, FAIL, HASH, HOLD = 1, 2, 3, 4, 5, 6, 7, 8

HEADER = struct.Struct("!2sBQQ")  # magic, type, transfer id, datagram number
ANNOUNCE_BODY = struct.Struct("!QIBH")  # size, chunk size, len(presenter), len(name)
ACCEPT_BODY = struct.Struct("!H")  # receive window (chunks)
DATA_HEADER = struct.Struct("!2sBQQIII")  # header + chunk index, packet number, timestamp (us)
ACK_BODY = struct.Struct("!IIIIHH")  # highest packet, its timestamp, cum, hi, window, n ranges
RANGE = struct.Struct("!II")  # a run of missing chunks [start, end)
HASH_BODY = struct.Struct("!32s")  # the file's hash (32 bytes), sent once every chunk was sent
ANNOUNCE_HASH = struct.Struct("!B")  # after the names: the file hash's algorithm (absent: SHA-256)
TAG_SIZE = 16  # the GMAC tag at the end of every datagram

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
MAX_CHUNK_SIZE = MAX_DATAGRAM - DATA_HEADER.size - TAG_SIZE
MIN_CHUNK_SIZE = 512
MIN_DATAGRAM = HEADER.size + TAG_SIZE
DEFAULT_CHUNK_SIZE = 60 * 1024  # measured: bench/bench_transfer.py --chunk-size
MAX_RANGES = 128  # missing runs listed in one ACK
MAX_REASON = 200  # bytes of a FAIL reason

SECRET_SIZE = 32  # bytes (64 hex digits on the wire lines)
_NONCE_PAD = bytes(4)  # the 12-byte nonce: 4 zero bytes, then the datagram number
_LABELS = (b"chatproto p2p v2: presenter to receiver", b"chatproto p2p v2: receiver to presenter")


# The file hash (docs/TRANSFER.md, Verification): the presenter chooses it and
# names it in its ANNOUNCE; a receiver checks either.  An announcement without
# the byte (clients before BLAKE3) means SHA-256.
SHA256, BLAKE3 = 1, 2
HASH_NAMES = {SHA256: "SHA-256", BLAKE3: "BLAKE3"}
HASH_IDS = {"sha256": SHA256, "blake3": BLAKE3}


def hash_available(algorithm: int) -> bool:
    return algorithm == SHA256 or (algorithm == BLAKE3 and _blake3 is not None)


def new_hash(algorithm: int):
    """A fresh hasher (C{update}, C{digest}: 32 bytes) for an algorithm of L{HASH_NAMES}."""
    if algorithm == BLAKE3:
        if _blake3 is None:
            raise ValueError("BLAKE3 is not available (pip install blake3)")
        return _blake3.blake3()
    if algorithm == SHA256:
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm}")


def parse_hash_name(name: str) -> int:
    """C{"blake3"} or C{"sha256"} as an algorithm number (C{ValueError} else, or if not installed)."""
    algorithm = HASH_IDS.get(name)
    if algorithm is None:
        raise ValueError(f"file_hash must be one of {', '.join(HASH_IDS)}")
    if not hash_available(algorithm):
        raise ValueError("BLAKE3 is not available (pip install blake3)")
    return algorithm


DEFAULT_HASH = "blake3" if _blake3 is not None else "sha256"


def micros(seconds: float) -> int:
    return int(seconds * 1e6) & 0xFFFFFFFF


def parse_transfer_id(value) -> int:
    """A transfer id: an C{int} of 64 bits, or its 16 lowercase hex digits (C{ValueError} else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) == 16 and _is_hex(value):
        number = int(value, 16)
    else:
        raise ValueError("the transfer id is not 16 hex digits")
    if not 0 <= number < 1 << 64:
        raise ValueError("the transfer id is not 64 bits")
    return number


def parse_secret(value) -> bytes:
    """A transfer secret: 32 bytes, or their 64 lowercase hex digits (C{ValueError} else)."""
    if isinstance(value, (bytes, bytearray)) and len(value) == SECRET_SIZE:
        return bytes(value)
    if isinstance(value, str) and len(value) == 2 * SECRET_SIZE and _is_hex(value):
        return bytes.fromhex(value)
    raise ValueError("the transfer secret is not 64 hex digits")


def _is_hex(text: str) -> bool:
    return text.isascii() and all(c in "0123456789abcdef" for c in text)


class Keys:
    """
    One side's keys for one transfer: one to seal what it sends, one to check
    what it receives (the other direction's), and the number of the last
    datagram it sealed (each number is used once: it is the GCM nonce).
    """

    __slots__ = ("_check", "_seal", "tid", "sent")

    def __init__(self, secret: bytes, tid: int, presenter: bool):
        salt = tid.to_bytes(8, "big")
        p2r, r2p = (AESGCM(hmac.digest(secret, label + salt, "sha256")) for label in _LABELS)
        self._seal, self._check = (p2r, r2p) if presenter else (r2p, p2r)
        self.tid = tid
        self.sent = 0

    def seal(self, kind: int, body=b"") -> bytes:
        """A whole datagram: header (with the next number), C{body}, tag."""
        self.sent += 1
        message = HEADER.pack(MAGIC, kind, self.tid, self.sent) + body
        return message + self._seal.encrypt(_NONCE_PAD + message[11:19], b"", message)

    def next_number(self) -> int:
        """The number for a datagram built in place (see L{seal_into})."""
        self.sent += 1
        return self.sent

    def seal_into(self, view: memoryview, end: int) -> int:
        """Tag C{view[:end]} (its header holds a fresh number) in place; return the datagram's length."""
        view[end : end + TAG_SIZE] = self._seal.encrypt(_NONCE_PAD + bytes(view[11:19]), b"", view[:end])
        return end + TAG_SIZE

    def check(self, data: bytes) -> bool:
        """Whether C{data} (a whole datagram) was sealed with the other side's key."""
        try:
            self._check.decrypt(_NONCE_PAD + data[11:19], data[-TAG_SIZE:], memoryview(data)[:-TAG_SIZE])
        except InvalidTag:
            return False
        return True


def encode_fail(keys: Keys, reason: str) -> bytes:
    return keys.seal(FAIL, reason.encode("utf-8")[:MAX_REASON])


def decode_reason(data: bytes) -> str:
    return printable(data[HEADER.size : -TAG_SIZE].decode("utf-8", "replace"))
