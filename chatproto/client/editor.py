"""
The terminal console's line editor and the painter of its live area, on
C{twisted.conch.recvline} (see L{chatproto.client.terminal}, which connects it
to the terminal).

The bottom of the screen is the I{live area}: the progress lines of running
transfers, the prompt when it is too long to share a row with the typing
(the pipe mode's command prompt), the status line (reverse video: the user, the
current conversation, unread counts, the connection) and the input line. Everything the client shows is
printed I{above} the live area, which is then drawn again, so a message
arriving while the user types never garbles the half-typed line and the
cursor stays where it was. The input line never wraps: it scrolls
horizontally, so the live area's height is always known.

Keys: Left/Right, Home/End (also Ctrl-A/Ctrl-E), Up/Down through the history
(also Ctrl-P/Ctrl-N), Backspace, Delete, Ctrl-U (delete to the start),
Ctrl-K (delete to the end), Ctrl-W (delete the word before the cursor),
Ctrl-L (redraw), Tab (complete a command, an active user's or a group's name;
twice lists the choices), Alt-1..9 (switch conversations), Ctrl-Z (suspend,
as any terminal program), Ctrl-C or Ctrl-D (on an empty line) to leave.

The editor remembers the lines it showed: a resize or Ctrl-L clears the
screen and draws them again for the new width (no stale rows), and
switching conversations draws that conversation's lines (L{set_window}).
Lines are plain strings or lists of C{(text, style)} segments (see
L{chatproto.client.render}); text is always shown through L{printable},
styles only as SGR codes.
"""

import codecs
import collections
import os

from twisted.conch import recvline

from .screen import cell_width, printable, truncate, wrapped

#: A prompt wider than this fraction of the screen gets rows of its own.
_LONG_PROMPT = 0.5
#: The input prompt under a prompt that got rows of its own.
SHORT_PROMPT = "> "
#: Lines kept for redrawing the screen.
SCROLLBACK = 2000
#: Commands whose arguments are secrets: masked on screen, never in the history.
SECRET_COMMANDS = ("/changepassword",)
REVERSE = (7,)


def masked(line: str) -> str | None:
    """C{/changepassword ****}, for a line whose arguments are secrets; else None."""
    command, _, rest = line.strip().partition(" ")
    if command in SECRET_COMMANDS and rest.strip():
        return f"{command} " + "*" * 8
    return None


class ChatLineEditor(recvline.HistoricRecvLine):
    """
    The line editor and the painter of the live area.

    C{lineBuffer} holds one item per character (its UTF-8 bytes), so the
    inherited cursor and history bookkeeping count characters, not bytes.
    """

    width = 80
    height = 24
    terminal = None

    def __init__(self, console: "TerminalConsole"):
        self.console = console
        self.prompt_text: str | None = None
        self.secret = False
        self.progress_lines: dict[str, str] = {}
        self.typed_ahead: list[str] = []
        self.keep_history = True
        self.status_text: str | None = None
        self.scrollback: collections.deque = collections.deque(maxlen=SCROLLBACK)
        self._live_rows = 0
        self._scroll = 0
        self._dirty = False
        self._last_tab = None
        self._after_cr = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    # Set up

    def connectionMade(self):
        super().connectionMade()
        t = self.terminal
        self.keyHandlers.update({
            b"\x01": self.handle_HOME,       # Ctrl-A
            b"\x02": self.handle_LEFT,       # Ctrl-B
            b"\x03": self.handle_INTERRUPT,  # Ctrl-C
            b"\x04": self.handle_EOF,        # Ctrl-D
            b"\x05": self.handle_END,        # Ctrl-E
            b"\x06": self.handle_RIGHT,      # Ctrl-F
            b"\x08": self.handle_BACKSPACE,  # Ctrl-H
            b"\x0b": self.handle_KILL_END,   # Ctrl-K
            b"\x0c": self.handle_REDRAW,     # Ctrl-L
            b"\x0e": self.handle_DOWN,       # Ctrl-N
            b"\x10": self.handle_UP,         # Ctrl-P
            b"\x15": self.handle_KILL_START,  # Ctrl-U
            b"\x17": self.handle_KILL_WORD,  # Ctrl-W
            b"\x1a": self.handle_SUSPEND,    # Ctrl-Z
            t.BACKSPACE: self.handle_BACKSPACE,
            t.TAB: self.handle_TAB,
        })
        self.paint()

    def initializeScreen(self):
        # RecvLine resets the whole screen; a chat client keeps what the
        # shell showed and draws only its live area.
        self.mode = "insert"

    def terminalSize(self, width, height):
        self.width = max(width, 10)
        self.height = max(height, 2)
        self.redraw()

    # The console's operations

    def show(self, line) -> None:
        self.paint(above=line.split("\n") if isinstance(line, str) else [line])

    def prompt(self, text: str, secret: bool, history: bool = False) -> None:
        self.prompt_text = text
        self.secret = secret
        self.keep_history = history
        if self.typed_ahead:
            # Typed before the prompt came: shown now, with its prompt.
            line = self.typed_ahead.pop(0)
            self._remember(line)
            echo = self._echo(line)
            if echo is not None:
                self.scrollback.append(echo)
                self._erase_live_area()
                self._write_line(echo)
                self._live_rows = 0
            self._deliver(line)
            return
        self.paint()

    def status(self, text: str | None) -> None:
        if text != self.status_text:
            self.status_text = text
            self.paint()

    def set_window(self, lines) -> None:
        """Show these lines instead of what the screen shows now (another conversation)."""
        self.scrollback.clear()
        self.scrollback.extend(lines)
        self.redraw()

    def progress(self, key: str, text: str | None) -> bool:
        """Record a progress line; True when the screen must be painted now."""
        if text is None:
            return self.progress_lines.pop(key, None) is not None
        self.progress_lines[key] = text
        return False

    def clear(self) -> None:
        """Erase the live area, leaving the cursor at the left of its first row."""
        if self.terminal is None:
            return
        self._erase_live_area()
        self._live_rows = 0

    # Keys

    def keystrokeReceived(self, keyID, modifier):
        if modifier is not None:
            if isinstance(keyID, bytes) and keyID.isdigit() and len(keyID) == 1:
                self.console.switch_window(int(keyID) or 10)  # Alt-1..9, Alt-0: 10
            return  # Alt-something else: nothing bound.
        if isinstance(keyID, bytes) and keyID >= b"\x80":
            for ch in self._decoder.decode(keyID):
                self.characterReceived(ch.encode("utf-8"), False)
            return
        self._decoder.reset()
        after_cr, self._after_cr = self._after_cr, keyID == b"\r"
        if keyID == b"\n" and after_cr:
            return  # CR LF (a pasted Windows line) is one Enter
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            handler()
        elif isinstance(keyID, bytes) and b" " <= keyID < b"\x7f":
            self.characterReceived(keyID, False)

    def characterReceived(self, ch, moreCharactersComing):
        self.lineBuffer.insert(self.lineBufferIndex, ch)
        self.lineBufferIndex += 1
        self._dirty = True

    def flush(self) -> None:
        """Draw the input line if keys changed it (once per chunk of input)."""
        if self._dirty:
            self.paint_input()

    def handle_LEFT(self):
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self._dirty = True

    def handle_RIGHT(self):
        if self.lineBufferIndex < len(self.lineBuffer):
            self.lineBufferIndex += 1
            self._dirty = True

    def handle_HOME(self):
        self.lineBufferIndex = 0
        self._dirty = True

    def handle_END(self):
        self.lineBufferIndex = len(self.lineBuffer)
        self._dirty = True

    def handle_BACKSPACE(self):
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._dirty = True

    def handle_DELETE(self):
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._dirty = True

    def handle_INSERT(self):
        pass  # Always insert: typeover is a surprise in a chat line.

    def handle_KILL_START(self):
        del self.lineBuffer[: self.lineBufferIndex]
        self.lineBufferIndex = 0
        self._dirty = True

    def handle_KILL_END(self):
        del self.lineBuffer[self.lineBufferIndex:]
        self._dirty = True

    def handle_KILL_WORD(self):
        end = self.lineBufferIndex
        start = end
        while start > 0 and self.lineBuffer[start - 1] == b" ":
            start -= 1
        while start > 0 and self.lineBuffer[start - 1] != b" ":
            start -= 1
        del self.lineBuffer[start:end]
        self.lineBufferIndex = start
        self._dirty = True

    def handle_UP(self):
        if not self.secret:
            super().handle_UP()
            self._dirty = True

    def handle_DOWN(self):
        if not self.secret:
            super().handle_DOWN()
            self.lineBufferIndex = len(self.lineBuffer)
            self._dirty = True

    def _deliverBuffer(self, buf):
        # The history holds whole lines of UTF-8: one buffer item per character.
        self.lineBuffer = [ch.encode("utf-8") for ch in buf.decode("utf-8", "replace")]
        self.lineBufferIndex = len(self.lineBuffer)

    def handle_REDRAW(self):
        self.redraw()

    def handle_SUSPEND(self):
        self.console.suspend()

    def handle_INTERRUPT(self):
        self.console.user_quit()

    def handle_EOF(self):
        if self.lineBuffer:
            self.handle_DELETE()
        else:
            self.console.user_quit()

    def handle_RETURN(self):
        line = self.text()
        waiting = self.prompt_text is not None
        echo = None
        if waiting:
            self._remember(line)
            echo = self._echo(line)
        self.historyPosition = len(self.historyLines)
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self._scroll = 0
        self._last_tab = None
        self.prompt_text = None
        self.secret = False
        self.paint(above=[echo] if echo is not None else [])
        if waiting:
            self._deliver(line)
        else:
            self.typed_ahead.append(line)  # shown with its prompt when that comes

    def _remember(self, line: str) -> None:
        """Into the history: command lines only, never a secret."""
        if self.secret or not self.keep_history or not line or masked(line) is not None:
            return
        if not self.historyLines or self.historyLines[-1] != line.encode("utf-8"):
            self.historyLines.append(line.encode("utf-8"))
        self.historyPosition = len(self.historyLines)

    def _echo(self, line: str):
        """What stays on screen for an entered line (None: nothing)."""
        if self.secret:
            return self.prompt_text or ""
        hidden = masked(line)
        if hidden is not None:
            return self._input_prompt() + hidden
        return self.console.echo_for(self._input_prompt(), line)

    def _deliver(self, line: str) -> None:
        self.prompt_text = None
        self.secret = False
        self.console.line_entered(line)
        if self.prompt_text is None:
            self.paint()

    # Completion

    def handle_TAB(self):
        if self.secret:
            return
        before = self.text()[: self.lineBufferIndex]
        start = before.rfind(" ") + 1
        word = before[start:]
        first = not before[:start].strip()
        matches = sorted({
            c for c in self.console.completion_candidates()
            if c.startswith(word) and c.startswith("/") == first
        })
        if not matches:
            return
        common = os.path.commonprefix(matches)  # noqa: RUF071 - completing characters is what is wanted
        if len(matches) == 1:
            common += " "
        if len(common) > len(word):
            self._insert(common[len(word):])
            self._last_tab = None
            return
        state = (self.text(), self.lineBufferIndex)
        if self._last_tab == state:
            self.paint(above=["  ".join(matches)])
        self._last_tab = state

    def _insert(self, text: str) -> None:
        for ch in text:
            if ch == " " and self.lineBufferIndex < len(self.lineBuffer) \
                    and self.lineBuffer[self.lineBufferIndex] == b" ":
                self.lineBufferIndex += 1
                continue
            self.characterReceived(ch.encode("utf-8"), True)

    # Drawing

    def text(self) -> str:
        return b"".join(self.lineBuffer).decode("utf-8", "replace")

    def _prompt_is_long(self) -> bool:
        return (self.prompt_text is not None
                and cell_width(self.prompt_text) > self.width * _LONG_PROMPT)

    def _input_prompt(self) -> str:
        if self.prompt_text is None:
            return ""
        return SHORT_PROMPT if self._prompt_is_long() else printable(self.prompt_text)

    def _live_rows_text(self) -> list:
        columns = self.width - 1
        rows = [truncate(printable(text), columns) for text in self.progress_lines.values()]
        limit = max(0, self.height - 2 - (self.status_text is not None))
        if len(rows) > limit:
            rows = rows[: max(0, limit - 1)] + [f"(and {len(rows) - limit + 1} more transfers)"]
            rows = rows[:limit]
        if self._prompt_is_long():
            rows += wrapped(self.prompt_text, columns)
        if self.status_text is not None:
            status = truncate(printable(" " + self.status_text), columns)
            rows.append([(status + " " * (columns - cell_width(status)), REVERSE)])
        return rows

    def _rows(self, line) -> tuple[int, list]:
        """
        C{line} cut into screen rows at word boundaries (the terminal never
        wraps a line itself); a message's further rows are indented to its
        text. Returns the indent and the rows, each a list of (char, style).
        """
        columns = self.width - 1
        segments = [(line, ())] if isinstance(line, str) else line
        chars = [(ch, style) for text, style in segments for ch in printable(text)]
        if cell_width("".join(ch for ch, _ in chars)) <= columns:
            return 0, [chars]
        indent = 0
        if not isinstance(line, str):
            position = 0
            for text, _style in segments:
                position += cell_width(printable(text))
                if text in ("> ", "-!- "):  # after a message's sender, a notice's mark
                    indent = position
                    break
            if indent > columns // 2:
                indent = 0
        rows = []
        start, room = 0, columns
        while start < len(chars):
            used, end, space = 0, start, None
            while end < len(chars):
                w = cell_width(chars[end][0])
                if used + w > room:
                    break
                if chars[end][0] == " ":
                    space = end
                used += w
                end += 1
            if end < len(chars) and space is not None and space > start:
                end = space + 1  # break after the last space that fits
            end = max(end, start + 1)
            rows.append(chars[start:end])
            start, room = end, columns - indent
        return indent, rows

    def _write_line(self, line) -> None:
        """One line and its newline (rows of its own when it is too wide); segments with their styles."""
        t = self.terminal
        if isinstance(line, str) and cell_width(line) < self.width and line.isprintable():
            t.write(line + "\n")
            return
        indent, rows = self._rows(line)
        for i, row in enumerate(rows):
            if i and indent:
                t.write(" " * indent)
            run, run_style = [], ()
            for ch, style in row + [("", None)]:
                if style != run_style or style is None:
                    if run:
                        if run_style:
                            t.selectGraphicRendition(*(str(a) for a in run_style))
                            t.write("".join(run))
                            t.selectGraphicRendition("0")
                        else:
                            t.write("".join(run))
                    run, run_style = [], style
                run.append(ch)
            t.write("\n")

    def _rows_of(self, line) -> int:
        """Screen rows a line takes."""
        return len(self._rows(line)[1]) or 1

    def redraw(self) -> None:
        """Clear the screen and draw the last lines shown, then the live area."""
        if self.terminal is None:
            return
        t = self.terminal
        t.eraseDisplay()
        t.cursorHome()
        room = self.height - 1 - len(self._live_rows_text())
        tail = []
        for line in reversed(self.scrollback):
            rows = self._rows_of(line)
            if rows > room:
                break
            room -= rows
            tail.append(line)
        for line in reversed(tail):
            self._write_line(line)
        self._live_rows = 0
        self.paint(remember=False)

    def _erase_live_area(self) -> None:
        t = self.terminal
        if self._live_rows:
            t.cursorUp(self._live_rows)
        t.write(b"\r")
        t.eraseToDisplayEnd()

    def paint(self, above=(), remember=True) -> None:
        """Draw C{above} (lines to keep) and then the live area afresh."""
        if self.terminal is None:
            return
        self._erase_live_area()
        for line in above:
            if remember:
                self.scrollback.append(line)
            self._write_line(line)
        rows = self._live_rows_text()
        for row in rows:
            self._write_line(row)
        self._live_rows = len(rows)
        self.paint_input()

    def paint_input(self) -> None:
        """Draw the input row (the cursor is on it) and put the cursor in place."""
        self._dirty = False
        if self.terminal is None:
            return
        t = self.terminal
        prompt = self._input_prompt()
        chars = [] if self.secret else [b.decode("utf-8", "replace") for b in self.lineBuffer]
        index = 0 if self.secret else self.lineBufferIndex
        avail = max(1, self.width - 1 - cell_width(prompt))
        widths = [cell_width(ch) for ch in chars]
        before = [0]  # before[i]: the columns of chars[:i]
        for w in widths:
            before.append(before[-1] + w)
        # Scroll so that the cursor is visible, and use the room there is.
        scroll = min(self._scroll, index)
        while before[index] - before[scroll] >= avail:
            scroll += 1
        while scroll > 0 and before[-1] - before[scroll - 1] < avail:
            scroll -= 1
        self._scroll = scroll
        end = scroll
        while end < len(chars) and before[end + 1] - before[scroll] <= avail:
            end += 1
        shown = chars[scroll:end]
        t.write(b"\r")
        t.write(prompt + printable("".join(shown)))
        t.eraseToLineEnd()
        back = before[end] - before[index]
        if back:
            t.cursorBackward(back)
