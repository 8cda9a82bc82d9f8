"""
The terminal client's conversations (irssi's windows): window 1 shows
everything; each further window is one private conversation or one group.
Plain text goes to the current window's user or group; messages of other
windows are kept there and counted as unread until the user switches to it.

Pure bookkeeping: no terminal, no server. Every C{add_*} returns the lines
the screen must show now (those of the current window).
"""

from collections import deque

from .render import Message, Renderer

#: Lines a window keeps (older ones are dropped).
WINDOW_LINES = 2000


class Window:
    def __init__(self, number_hint: int, name: str | None, kind: str | None):
        self.name = name
        self.kind = kind  # "user", "group", "search" (the results of /search) or None (window 1)
        self.lines: list = []
        self.unread = 0
        self.last_day: str | None = None
        self.last_message: Message | None = None
        self.members: list[tuple[str, str, str]] = []
        self.loaded = False  # its history shown (by /chat)
        self.recent: deque[Message] = deque(maxlen=64)  # to tell missed messages from known ones
        # Read markers (the server's, shared by all one's devices; see terminal_ui):
        self.newest_other: Message | None = None  # the newest message from someone else shown here
        self.unmarked = False  # the server counts messages here as unread (as far as we know)
        self.missed = 0  # unread at login and not shown yet (its history not loaded)
        self.marking = False  # a /read of this window is on its way

    def reset(self) -> None:
        """Forget the lines (the history is about to be shown instead)."""
        self.lines = []
        self.last_day = None

    @property
    def label(self) -> str:
        return self.name or "all"

    def append(self, line) -> None:
        self.lines.append(line)
        if len(self.lines) > WINDOW_LINES:
            del self.lines[: len(self.lines) - WINDOW_LINES]


class Conversations:
    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self.windows: list[Window] = [Window(1, None, None)]
        self.current = self.windows[0]

    # Windows

    @property
    def all(self) -> Window:
        return self.windows[0]

    def number(self, window: Window) -> int:
        return self.windows.index(window) + 1

    def find(self, name: str, kind: str | None = None) -> Window | None:
        for window in self.windows[1:]:
            if window.kind == "group" and kind != "user" and window.name.lower() == name.lower():
                return window
            if window.kind == "user" and kind != "group" and window.name == name:
                return window
        return None

    def open(self, name: str, kind: str) -> Window:
        window = self.find(name, kind)
        if window is None:
            window = Window(len(self.windows) + 1, name, kind)
            self.windows.append(window)
        return window

    def search_window(self) -> Window:
        """The window of /search's results (one, reused), emptied for new ones."""
        for window in self.windows[1:]:
            if window.kind == "search":
                window.reset()
                return window
        window = Window(len(self.windows) + 1, "search", "search")
        self.windows.append(window)
        return window

    def close(self, window: Window) -> None:
        if window is not self.all and window in self.windows:
            self.windows.remove(window)
            if self.current is window:
                self.current = self.all

    def switch(self, window: Window) -> list:
        """Make C{window} current; the lines the screen now shows."""
        self.current = window
        window.unread = 0
        return list(window.lines)

    def by_number(self, number: int) -> Window | None:
        if 1 <= number <= len(self.windows):
            return self.windows[number - 1]
        return None

    # Lines

    def _dated(self, window: Window, msg: Message, line) -> list:
        added = []
        if msg.day != window.last_day:
            if window.last_day is not None or msg.seq is not None:
                added.append(self.renderer.day_line(msg.day))
            window.last_day = msg.day
        added.append(line)
        for item in added:
            window.append(item)
        return added

    def add_message(self, window: Window | None, msg: Message, count: bool = True) -> list:
        """
        A live message for C{window} (None: no conversation, window 1 only),
        also kept in window 1.
        """
        shown = []
        if window is not None:
            window.last_message = msg
            window.recent.append(msg)
            added = self._dated(window, msg, self.renderer.message(msg))
            if window is self.current:
                shown = added
            elif count and self.current is not self.all:
                window.unread += 1
        tag = None
        if window is not None and (msg.group or msg.sender != window.name):
            tag = window.name
        added = self._dated(self.all, msg, self.renderer.message(msg, tag))
        if self.current is self.all:
            shown = added
        return shown

    def add_history(self, window: Window, msg: Message) -> list:
        """A message from /history: in its own window only."""
        if window.last_message is None or msg.sort_key() >= window.last_message.sort_key():
            window.last_message = msg
        window.recent.append(msg)
        added = self._dated(window, msg, self.renderer.message(msg))
        return added if window is self.current else []

    def add_line(self, line, window: Window | None = None, everywhere: bool = False) -> list:
        """
        A notice or a reply: in C{window} (the current one by default) and in
        window 1; C{everywhere}: in the current window as well.
        """
        targets = [window or self.current, self.all]
        if everywhere:
            targets.append(self.current)
        shown = []
        seen = set()
        for target in targets:
            if id(target) in seen:
                continue
            seen.add(id(target))
            target.append(line)
            if target is self.current:
                shown = [line]
        return shown

    def add_to_every_window(self, line) -> list:
        """A line every window gets (the connection lost, back)."""
        for window in self.windows:
            window.append(line)
        return [line]

    # The status line

    def activity(self) -> list[tuple[int, Window]]:
        return [(self.number(w), w) for w in self.windows[1:] if w.unread]

    def status_text(self, username: str | None, connection: str | None = None) -> str:
        parts = []
        if username:
            parts.append(username)
        current = self.current
        parts.append(f"{self.number(current)}:{current.label}")
        if len(self.windows) > 1:
            parts.append("windows: " + " ".join(
                f"{self.number(w)}:{w.label}" for w in self.windows[1:]))
        active = self.activity()
        if active:
            parts.append("unread: " + " ".join(f"{n}:{w.label}({w.unread})" for n, w in active))
        if connection:
            parts.append(connection)
        return " | ".join(parts)
