"""
The client's console when stdin is a terminal: the line editor
(L{chatproto.client.editor}) on C{twisted.conch.insults}, as
C{twisted.conch.stdio} uses them.

Input escape sequences are parsed by C{insults.ServerProtocol}; output goes
through its C{ITerminalTransport} methods. The terminal is in raw mode while
the console runs and is restored when it closes, when stdin goes away, and
at interpreter exit, whatever ended the client. Ctrl-Z and C{kill -TSTP}
give the terminal back to the shell; SIGCONT and SIGWINCH draw everything
again.
"""

import atexit
import os
import signal
import sys

from twisted.conch.insults import insults
from twisted.internet import defer

from .editor import ChatLineEditor, masked  # noqa: F401 - masked: its older home
from .screen import cell_width, printable, truncate  # noqa: F401 - their older home

#: How often a changing progress line is drawn again, at most (seconds).
PROGRESS_INTERVAL = 0.1
#: How long a signalled shutdown waits for the terminal's last output (seconds).
SHUTDOWN_WAIT = 2.0


class RawTerminal:
    """
    Puts the terminal on C{fd} in raw input mode and restores it, once, at
    the first of L{restore}, or interpreter exit.

    Output processing stays on, so a stray C{print} still starts its lines at
    the left margin.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._saved = None

    def enter(self) -> None:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)
        attrs = termios.tcgetattr(self.fd)
        attrs[1] |= termios.OPOST | getattr(termios, "ONLCR", 0)
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        atexit.register(self.restore)

    def restore(self) -> None:
        import termios

        saved, self._saved = self._saved, None
        if saved is None:
            return
        atexit.unregister(self.restore)
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        except (termios.error, OSError, ValueError):
            pass

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.fd)
        except OSError:
            return 80, 24
        return size.columns or 80, size.lines or 24


def _stop_process() -> None:
    """Stop this process as the shell's Ctrl-Z would (the default SIGTSTP action)."""
    if hasattr(signal, "SIGTSTP"):
        previous = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGTSTP)
        finally:
            signal.signal(signal.SIGTSTP, previous)


class TerminalConsole(insults.ServerProtocol):
    #: The client may use conversations, styled lines and the status line.
    rich = True

    """
    The console for a terminal, connected to C{stdio.StandardIO}; same
    interface as L{chatproto.console.LineConsole}.

    @param raw_terminal: what puts the terminal in raw mode and restores it
        (a L{RawTerminal} on stdin by default; None for none, as in tests).
    @param clock: schedules the progress line's redraws.
    @param size: (columns, rows) when there is no real terminal to ask.
    """

    def __init__(self, raw_terminal="stdin", clock=None, size=None):
        super().__init__()
        if raw_terminal == "stdin":
            raw_terminal = RawTerminal(sys.__stdin__.fileno())
        if clock is None:
            from twisted.internet import reactor as clock
        self.raw_terminal = raw_terminal
        self.clock = clock
        self.client = None
        self.editor = ChatLineEditor(self)
        if size is not None:
            self.editor.width, self.editor.height = size
        self._progress_call = None
        self._closing = False
        self._closed = defer.Deferred()
        self._old_winch = None
        self._old_cont = None
        self._old_tstp = None
        self._shutdown_trigger = None
        self.stop_process = _stop_process

    def attach(self, client) -> None:
        self.client = client

    # Connection to the terminal

    def connectionMade(self):
        if self.raw_terminal is not None:
            self.raw_terminal.enter()
            self.editor.width, self.editor.height = self.raw_terminal.size()
            self._watch_size()
            if hasattr(self.clock, "addSystemEventTrigger"):
                # SIGINT/SIGTERM stop the reactor: leave as Ctrl-C does.
                self._shutdown_trigger = self.clock.addSystemEventTrigger(
                    "before", "shutdown", self._reactor_stopping)
        self.terminalProtocol = self.editor
        self.editor.makeConnection(self)

    def dataReceived(self, data):
        super().dataReceived(data)
        if self.terminalProtocol is not None:
            self.editor.flush()

    def connectionLost(self, reason):
        self._restore()
        try:
            super().connectionLost(reason)
        finally:
            if not self._closing:
                self._closing = True
                if self.client is not None:
                    self.client.input_ended()
            if not self._closed.called:
                self._closed.callback(None)

    def loseConnection(self):
        # ServerProtocol's resets (clears) the whole terminal: not ours to wipe.
        self.transport.loseConnection()

    def _watch_size(self) -> None:
        if not hasattr(signal, "SIGWINCH"):
            return
        reactor = self.clock

        def resized(signum, frame):
            reactor.callFromThread(self._resized)

        def continued(signum, frame):
            reactor.callFromThread(self._continued)

        def stop_asked(signum, frame):  # kill -TSTP: leave the terminal tidy first, as Ctrl-Z
            reactor.callFromThread(self.suspend)

        try:
            self._old_winch = signal.signal(signal.SIGWINCH, resized)
            self._old_cont = signal.signal(signal.SIGCONT, continued)
            self._old_tstp = signal.signal(signal.SIGTSTP, stop_asked)
        except ValueError:  # not the main thread
            self._old_winch = None

    def _resized(self) -> None:
        if self.raw_terminal is not None and not self._closing:
            self.editor.terminalSize(*self.raw_terminal.size())

    def suspend(self) -> None:
        """Ctrl-Z: give the terminal back to the shell, stop; SIGCONT comes back here."""
        if self._closing or self.raw_terminal is None:
            return
        self.editor.clear()
        self._flush()
        self.raw_terminal.restore()
        self.stop_process()  # returns once continued
        self._continued()

    def _flush(self) -> None:
        """Write what waits in the stdio transport now: the process is about to stop."""
        writer = getattr(self.transport, "_writer", None)
        if writer is not None and hasattr(writer, "doWrite"):
            try:
                writer.doWrite()
            except OSError:
                pass

    def _continued(self) -> None:
        """Back from a stop (Ctrl-Z, or kill -STOP/-CONT): raw mode again, everything drawn."""
        if self._closing or self.raw_terminal is None:
            return
        self.raw_terminal.restore()  # (a no-op after Ctrl-Z) then raw again, whatever the shell set
        self.raw_terminal.enter()
        self.editor.width, self.editor.height = self.raw_terminal.size()
        self.editor.redraw()

    def _reactor_stopping(self) -> defer.Deferred:
        """Shutdown waits (a little) until the terminal has been left tidy."""
        self._shutdown_trigger = None
        self.user_quit()
        done = defer.Deferred()

        def closed(result):
            if not done.called:
                done.callback(None)
            return result

        self._closed.addBoth(closed)
        done.addTimeout(SHUTDOWN_WAIT, self.clock, onTimeoutCancel=lambda *_: None)
        return done

    def _restore(self) -> None:
        if self._shutdown_trigger is not None:
            self.clock.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
            self._old_winch = None
        if self._old_cont is not None:
            signal.signal(signal.SIGCONT, self._old_cont)
            self._old_cont = None
        if self._old_tstp is not None:
            signal.signal(signal.SIGTSTP, self._old_tstp)
            self._old_tstp = None
        if self.raw_terminal is not None:
            self.raw_terminal.restore()

    # The console interface (see chatproto.console)

    def show(self, text) -> None:
        if not self._closing:
            self.editor.show(text)

    def prompt(self, text: str, secret: bool = False) -> None:
        """A login or password prompt: what is typed there stays out of the history."""
        if not self._closing:
            self.editor.prompt(text, secret)

    def command_prompt(self, text: str) -> None:
        """The prompt for commands and messages: what is typed enters the history."""
        if not self._closing:
            self.editor.prompt(text, False, history=True)

    def status(self, text: str | None) -> None:
        """The status line above the input (None: none)."""
        if not self._closing:
            self.editor.status(text)

    def set_window(self, lines) -> None:
        if not self._closing:
            self.editor.set_window(lines)

    def progress(self, key: str, text: str | None) -> None:
        if self._closing:
            return
        if self.editor.progress(key, text):
            self.editor.paint()
        elif text is not None and self._progress_call is None:
            self._progress_call = self.clock.callLater(PROGRESS_INTERVAL, self._progress_tick)

    def _progress_tick(self) -> None:
        self._progress_call = None
        self.editor.paint()

    def close(self) -> defer.Deferred:
        if self._closing:
            return self._closed
        self._closing = True
        if self._progress_call is not None:
            if self._progress_call.active():
                self._progress_call.cancel()
            self._progress_call = None
        if self.transport is not None and self.connected:
            self.editor.clear()
            self._restore()
            self.transport.loseConnection()
        else:
            self._restore()
            self._closed.callback(None)
        return self._closed

    # From the editor to the client

    def line_entered(self, text: str) -> None:
        if self.client is not None:
            self.client.line_entered(text)

    def user_quit(self) -> None:
        """Ctrl-C, or Ctrl-D on an empty line: leave (the server logs us out)."""
        if self.client is not None and not self._closing:
            self.client.input_ended()

    def echo_for(self, prompt: str, line: str):
        echo = getattr(self.client, "echo_for", None)
        return echo(prompt, line) if echo is not None else prompt + line

    def switch_window(self, number: int) -> None:
        switch = getattr(self.client, "switch_window", None)
        if switch is not None and not self._closing:
            switch(number)

    def completion_candidates(self) -> list[str]:
        candidates = getattr(self.client, "completion_candidates", None)
        return list(candidates()) if candidates is not None else []
