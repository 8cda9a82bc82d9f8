"""
What the benchmarks' browser-protocol clients send and read (docs/WEB.md,
docs/PROTOCOL.md "WebSocket"): C{POST /login}, then C{GET /ws} upgraded to a
WebSocket with the session cookie, then JSON requests and events as text
frames. Used by bench/loadgen.py (the C{web} dialect of bench/run_all.py) and
bench/bench_web.py.

The bytes are built and parsed here by hand rather than with wsproto: its
per-frame event objects would make the load generator, not the server, the
bottleneck. Client frames are masked, as a browser's are (RFC 6455 5.3), with
a key per client (a browser draws one per frame; the server's work is the same).
"""

import base64
import json
import os
import re

COOKIE = re.compile(rb"chatproto_session=([A-Za-z0-9_-]+)")
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)
CHUNKED = re.compile(rb"\r\ntransfer-encoding: *chunked", re.I)
# Any fixed 16-byte nonce works: the server only echoes its digest.
WS_KEY = base64.b64encode(b"chatproto-bench!")


def login_request(host: str, port: int, user: str, password: str, keep_alive: bool = True) -> bytes:
    """C{POST /login}; with C{keep_alive} the WebSocket's upgrade follows on the same connection."""
    body = json.dumps({"username": user, "password": password}).encode()
    return (b"POST /login HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n%s" % (
                host.encode(), port, len(body), b"" if keep_alive else b"Connection: close\r\n", body))


def logout_request(host: str, port: int, token: str) -> bytes:
    """C{POST /logout} with the session cookie: every tab of that login is told and closed."""
    return (b"POST /logout HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Cookie: chatproto_session=%s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}" % (
                host.encode(), port, token.encode()))


def upgrade_request(host: str, port: int, token: str) -> bytes:
    """C{GET /ws}, asking for the WebSocket with the session cookie (no Origin: not a page of another site)."""
    return (b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Cookie: chatproto_session=%s\r\n\r\n" % (host.encode(), port, WS_KEY, token.encode()))


def read_response(buf: bytes):
    """One HTTP response at the start of C{buf}: C{(status, head, body, rest)}, or None while incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end]
    status = int(head.split(b" ", 2)[1])
    start = end + 4
    if status != 101 and CHUNKED.search(head):  # (Twisted's answer to a request it finished later)
        body, pos = [], start
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                return None
            body.append(buf[eol + 2:eol + 2 + size])
            pos = eol + 2 + size + 2
            if not size:  # (no trailers are sent)
                return status, head, b"".join(body), buf[pos:]
    m = CONTENT_LENGTH.search(head)
    size = int(m.group(1)) if m and status != 101 else 0
    if len(buf) < start + size:
        return None
    return status, head, buf[start:start + size], buf[start + size:]


def session_cookie(head: bytes):
    m = COOKIE.search(head)
    return m.group(1).decode() if m else None


def new_mask() -> bytes:
    return os.urandom(4)


def masked(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 5.3: C{payload} XOR the 4-byte key, repeated."""
    n = len(payload)
    if not n:
        return b""
    stream = int.from_bytes((key * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ stream).to_bytes(n, "little")


def client_frame(payload: bytes, key: bytes, opcode: int = 1) -> bytes:
    """One final, masked frame (text by default) as a browser sends it."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    return head + key + masked(payload, key)


def text_frame(text: str, key: bytes) -> bytes:
    return client_frame(text.encode("utf-8"), key)


def split_frames(buf: bytes):
    """
    The server's complete (unmasked) frames at the start of C{buf}:
    C{(frames, rest)}, each frame C{(opcode, payload)}. Fragments are not
    joined: the server sends each message in one frame.
    """
    frames = []
    pos, size = 0, len(buf)
    while size - pos >= 2:
        n = buf[pos + 1] & 0x7F
        head = 2
        if n == 126:
            if size - pos < 4:
                break
            n = int.from_bytes(buf[pos + 2:pos + 4], "big")
            head = 4
        elif n == 127:
            if size - pos < 10:
                break
            n = int.from_bytes(buf[pos + 2:pos + 10], "big")
            head = 10
        end = pos + head + n
        if end > size:
            break
        frames.append((buf[pos] & 0x0F, buf[pos + head:end]))
        pos = end
    return frames, buf[pos:]


PING, PONG, CLOSE = 9, 10, 8
