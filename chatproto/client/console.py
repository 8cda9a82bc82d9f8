"""
The client's console when stdin is not a terminal (pipes, scripts, tests),
and the minimal fallback when it is: plain lines in, plain lines out.

Every console offers the same four operations to the client:
C{show(text)}, C{prompt(text, secret=False)}, C{progress(key, text)} and
C{close()}; the client receives C{line_entered(text)} and C{input_ended()}.
"""

import os
import sys

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class LineConsole(LineReceiver):
    """
    Reads stdin line by line through C{stdio.StandardIO} and hands the client
    one line per prompt, keeping lines typed ahead for the next prompts.

    When stdin is not a terminal every prompt is printed as a line of its own
    and nothing but the fixed texts of docs/CLIENT.md is printed.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, interactive: bool | None = None):
        if interactive is None:
            interactive = sys.stdin.isatty()
        self.interactive = interactive
        self.client = None
        self._typed_ahead: list[str] = []
        self._waiting = False
        self._ended = False
        self._closed = defer.Deferred()
        self._secret = False
        self._prompt = ""

    def attach(self, client) -> None:
        self.client = client

    # Output

    def _print(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(text.encode("utf-8", "replace"))

    def show(self, text: str) -> None:
        if self.interactive and self._waiting and self._prompt:
            # Keep the prompt visible under a message that arrived meanwhile.
            self._print(f"\r\n{text}\n{self._prompt}")
        else:
            self._print(text + "\n")

    def prompt(self, text: str, secret: bool = False) -> None:
        self._prompt = text
        self._print(text if self.interactive else text + "\n")
        self._secret = secret
        if secret:
            self._set_echo(False)
        self._waiting = True
        self._pump()

    def progress(self, key: str, text: str | None) -> None:
        """Transient status lines are for terminals; a plain console prints none."""

    def close(self) -> defer.Deferred:
        self._set_echo(True)
        if self.transport is not None and self.connected:
            self.transport.loseConnection()
        elif not self._closed.called:
            self._closed.callback(None)
        return self._closed

    # Input

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self._typed_ahead.append(line.decode("utf-8", "replace"))
        self._pump()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.show("Error. That line is too long.")

    def readConnectionLost(self) -> None:
        if self._buffer:  # a last line without its newline is a line all the same
            rest, self._buffer = self._buffer, b""
            self.lineReceived(rest)
        self._ended = True
        self._pump()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        self._set_echo(True)
        if not self._closed.called:
            self._closed.callback(None)
        if not self._ended:
            self._ended = True
            self._pump()

    def _pump(self) -> None:
        if not self._waiting or self.client is None:
            return
        if self._typed_ahead:
            self._waiting = False
            if self._secret:
                self._set_echo(True)
                if self.interactive:
                    self._print("\n")
            self.client.line_entered(self._typed_ahead.pop(0))
        elif self._ended:
            self._waiting = False
            self.client.input_ended()

    def _set_echo(self, on: bool) -> None:
        if not self.interactive:
            return
        try:
            import termios

            fd = sys.stdin.fileno()
            attrs = termios.tcgetattr(fd)
            if on:
                attrs[3] |= termios.ECHO
            else:
                attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except (ImportError, OSError, ValueError, AttributeError):
            pass


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return False
