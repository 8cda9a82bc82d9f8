"""
EXPERIMENT, benchmark only: chatproto's server with the hot-path changes that
the profile suggests, applied as monkeypatches so that their effect can be
measured side by side (``python bench/run_all.py --servers ours,ours-hotpath``)
before anyone edits chatproto/. See docs/PERFORMANCE.md, "Profile".

1. Output coalescing: a connection's output lines of one reactor turn are
   joined and handed to the transport once, at the end of the turn, instead
   of one C{transport.write} (with its C{startWriting}/C{addWriter}/epoll
   bookkeeping) per line.
2. Write-through: at that point, if the transport has nothing buffered, the
   bytes are sent on the socket at once; only what the kernel does not take
   goes to the transport's buffer. An idle connection receiving a message no
   longer costs an epoll register + unregister + a doWrite dispatch.
3. Command dispatch by one dict lookup instead of string checks, string
   concatenation and C{getattr} per line.
4. Every per-connection attribute set in C{__init__}, in one order: an
   attribute added later (C{factory}, C{rate}, C{host} by the factory,
   C{transport}/C{connected} by Twisted, C{_buffer}/C{_busyReceiving} by the
   line splitter) makes CPython 3.11 give the instance a full dict (about
   320 bytes more per connection, measured with tracemalloc).

Same command line as C{python -m chatproto.server}.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from chatproto import protocol as cp

_dirty: list = []
_scheduled = [False]


def _flush_all():
    _scheduled[0] = False
    dirty = _dirty[:]
    del _dirty[:]
    for proto in dirty:
        out, proto._out = proto._out, None
        if out:
            _send(proto, b"".join(out) if len(out) > 1 else out[0])


def _send(proto, data: bytes) -> None:
    t = proto.transport
    if t is None:
        return
    if (not getattr(t, "TLS", False) and t.connected and not t.disconnecting
            and not t.dataBuffer and not t._tempDataBuffer):
        try:
            sent = t.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # let the transport's own write path see and report the error
        if sent == len(data):
            return
        data = data[sent:]
    t.write(data)


def _write(self, data: bytes) -> None:
    if self._held is not None:
        self._held.append(data)
        return
    if self._dropped:
        return
    out = self._out
    if out is None:
        self._out = [data]
        _dirty.append(self)
        if not _scheduled[0]:
            _scheduled[0] = True
            self.chat.clock.callLater(0, _flush_all)
    else:
        out.append(data)
    if self._output.paused:
        # As chatproto's own _write: drop a reader whose unsent output is too big.
        unsent = cp.unsent_bytes(self.transport)
        if unsent is None:
            self._output.queued += len(data)
            unsent = self._output.queued
        if unsent + sum(map(len, self._out or ())) > self.max_output:
            self._drop_slow_reader()


_original_drop = cp.ChatLineProtocol._drop_slow_reader


def _drop_slow_reader(self):
    self._out = None
    _original_drop(self)


COMMANDS = {
    "/" + name[4:]: func
    for name, func in vars(cp.ChatLineProtocol).items()
    if name.startswith("cmd_")
}
_original_dispatch = cp.ChatLineProtocol.dispatch


def _dispatch(self, command: str, args: str) -> None:
    if self.user is not None:
        handler = COMMANDS.get(command)
        if handler is not None:
            handler(self, args)
            return
    _original_dispatch(self, command, args)


_original_init = cp.ChatLineProtocol.__init__


def _init(self, *args, **kwargs):
    self.factory = None
    self.transport = None
    self.connected = 0
    self.rate = None
    self.host = None
    self._buffer = b""
    self._busyReceiving = False
    self.paused = False
    self._dropped = False
    self._out = None
    _original_init(self, *args, **kwargs)


# chatproto took these changes in ebdaa34 ("Hot path: ..."): patch only older trees.
ALREADY_APPLIED = "_out" in cp.ChatLineProtocol.__init__.__code__.co_names
if ALREADY_APPLIED:
    print("hotpath_server: chatproto already has these changes; running it unpatched",
          file=sys.stderr)
else:
    cp.ChatLineProtocol.__init__ = _init
    cp.ChatLineProtocol._out = None
    cp.ChatLineProtocol._write = _write
    cp.ChatLineProtocol._drop_slow_reader = _drop_slow_reader
    cp.ChatLineProtocol.dispatch = _dispatch

if __name__ == "__main__":
    from chatproto.server import main

    main()
