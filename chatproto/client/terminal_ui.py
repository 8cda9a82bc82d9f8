"""
The terminal's user interface over the protocol model: conversations (irssi's
windows, L{conversations}), readable messages (L{render}), a status line with
the unread counts, what was missed shown after a reconnect, and read markers:
what the user has seen here is marked read on the server, so that every other
device of the user (IRC, the page, another terminal) clears it too.

Its commands (C{/chat}, C{/win}, plain text to the current conversation, the
server commands it shows in its own way) are in L{conversing}; the console it
draws on is L{chatproto.client.terminal.TerminalConsole}.
"""

import re

from .commands import COMMAND_LIST, TERMINAL_COMMANDS
from .conversations import Conversations
from .conversing import INVALID_COMMAND, ConversationCommands
from .render import Renderer, parse_history
from .ui import OFFLINE, RECONNECTED, ClientUI

#: How many messages a reconnect looks back in each open conversation.
HISTORY_ON_RESUME = 100
#: How far back the SEQ of a message shown live (a MSG line carries none) is looked for.
FIND_SEQ_IN = 20
_GROUP_NOTICE = re.compile(
    r"^(?P<user>\S+) (?:has (?P<what>left|joined) the group chat (?P<group>\S+)"
    r"|deleted message \d+ in (?P<group2>\S+))\.$")
_NEW_GROUP = re.compile(r"^(?:Joined the group chat: (?P<group>\S+) successfully\."
                        r"|(?:Group chat room|Broadcast group) has been created, "
                        r"room name: (?P<group2>\S+),)")


class TerminalUI(ConversationCommands, ClientUI):
    """
    @param username: from the configuration file: asked no more.
    @param colours: False for no colours.
    """

    rich = True

    def __init__(self, model, console, on_exit, file_exists=None, clock=None, username=None,
                 colours=True):
        self.renderer = Renderer(colours)
        self.conversations = Conversations(self.renderer)
        super().__init__(model, console, on_exit, file_exists, clock)
        self._preset_username = username
        self._no_read_markers = False

    # What the user sees

    def _show(self, lines) -> None:
        for line in lines:
            self.console.show(line)

    def _reply(self, text: str, window=None) -> None:
        self._show(self.conversations.add_line(self.renderer.info(text), window))

    def _connection_notice(self, text: str) -> None:
        self._show(self.conversations.add_to_every_window(self.renderer.notice(text)))

    def _show_everywhere(self, text: str, notice: bool = True) -> None:
        line = self.renderer.notice(text) if notice else self.renderer.info(text)
        self._show(self.conversations.add_line(line, everywhere=True))

    def _set_status(self, connection: str | None = None) -> None:
        status = getattr(self.console, "status", None)
        if status is None:
            return
        if connection is None and self.model.offline:
            connection = "offline: reconnecting"
        if self._state in ("connecting", "username", "password", "logging_in") and not self.model.logged_in:
            status(None)
            return
        status(self.conversations.status_text(self.username, connection))

    # The model's events

    def on_Delivered(self, event) -> None:
        msg = event.message
        if msg is None:
            self._reply(event.text)
            return
        if msg.group is not None:
            window = self.conversations.open(msg.group, "group")
        else:
            window = self.conversations.open(msg.sender, "user")
        self._show(self.conversations.add_message(window, msg))
        self._seen(window, msg)
        self._set_status()

    def on_SentElsewhere(self, event) -> None:
        msg = event.message
        if msg is None:
            self.console.show(f"SENT {event.text}")
            return
        window = (self.conversations.open(msg.group, "group") if msg.group is not None
                  else self.conversations.open(msg.peer, "user"))
        self._show(self.conversations.add_message(window, msg, count=False))
        self._set_status()

    def on_ReadElsewhere(self, event) -> None:
        window = self._window_of(event.name)
        if window is None:
            return
        newest = window.newest_other
        if event.seq is not None and (newest is None or (newest.seq is not None and newest.seq <= event.seq)):
            window.unmarked = False  # (a newer message shown here, of unknown SEQ, stays to mark)
        # Read up to SEQ, but this window counts messages whose SEQs it does not know (a MSG line
        # has none; those unread at login were not shown): newer ones may have come meanwhile.
        self._count_again(window)

    def _count_again(self, window) -> None:
        """The count left in C{window} is the server's: C{/unread} (a MSG line before its answer
        is in it). Nothing counted there: nothing to ask."""
        if not window.unread and not window.missed:
            return

        def listed(ok, rows):
            if not ok or window not in self.conversations.windows:
                return
            count = next((n for shown, n in rows if self._window_of(shown) is window), 0)
            window.missed = min(window.missed, count)
            if window is not self.conversations.current:
                window.unread = count
            self._set_status()

        self._ask_unread(listed)

    def _window_of(self, name: str):
        """The window of conversation C{name} (C{#GROUP} or a user), or None."""
        if name.startswith("#"):
            return self.conversations.find(name[1:], "group")
        return self.conversations.find(name, "user")

    def _ask_unread(self, then) -> None:
        """C{/unread}; C{then(ok, [(NAME, COUNT)])}."""
        rows = []

        def row(text):
            name, _, count = text.rpartition(" ")
            if count.isdigit():
                rows.append((name, int(count)))

        self._request("/unread", lambda ok, text: then(ok, rows), row)

    def on_Notice(self, event) -> None:
        text = event.text
        found = _GROUP_NOTICE.match(text)
        window = None
        if found is not None:
            window = self.conversations.find(found["group"] or found["group2"], "group")
        if window is not None:
            self._show(self.conversations.add_line(self.renderer.notice(text), window))
            if found["group2"]:  # a deleted message is no longer unread: maybe one counted here
                self._count_again(window)
        else:
            self._show_everywhere(text)

    def on_Reconnected(self, event) -> None:
        self._connection_notice(RECONNECTED)
        for window in self.conversations.windows[1:]:
            window.marking = False  # a /read cut off with the old connection never gets its answer
            if window.kind != "search":  # a conversation's window: what it missed
                self._load_history(window, HISTORY_ON_RESUME, self._missed_history)
        self._set_status()

    # Login

    def _login_answer(self, ok: bool, text: str) -> None:
        self.conversations.all.append(self.renderer.info(text))
        super()._login_answer(ok, text)

    def _logged_in(self) -> None:
        self.renderer.own_name = self.username
        self.conversations.all.append(COMMAND_LIST)
        self.console.show(COMMAND_LIST)  # once (the terminal cuts it into rows)
        self.model.learn_names()
        self._show_unread()

    def _show_unread(self) -> None:
        """At login: what was missed since the last read, on any device (C{unread: Hans(2)})."""
        def listed(ok, rows):
            if not ok or not rows:
                return
            self._reply("unread: " + " ".join(f"{name}({count})" for name, count in rows))
            for name, count in rows:
                window = (self.conversations.open(name[1:], "group") if name.startswith("#")
                          else self.conversations.open(name, "user"))
                window.unread = count
                window.missed = count  # not shown here yet: /chat shows them, then marks them read
                window.unmarked = True
            self._set_status()

        self._ask_unread(listed)

    # From the console

    def echo_for(self, prompt: str, line: str) -> str | None:
        if self._state == "command" and line.strip() and not line.startswith("/") \
                and self.conversations.current.name is not None and not self.model.offline:
            return None  # shown as sent once the server has it
        self.conversations.current.append(prompt + line)  # there again after a switch
        return prompt + line

    def _commands(self) -> list[str]:
        return TERMINAL_COMMANDS

    def switch_window(self, number: int) -> None:
        """Alt-1..9, /win N."""
        window = self.conversations.by_number(number)
        if window is None:
            self._reply(f"No window {number} (1-{len(self.conversations.windows)}).")
            return
        self._switch(window)

    def _switch(self, window) -> None:
        lines = self.conversations.switch(window)
        set_window = getattr(self.console, "set_window", None)
        if set_window is not None:
            set_window(lines)
        else:
            self._show(lines)
        self._set_status()
        self._mark_read(window)  # the user views it
        if self._state == "command":
            self._ask_command()

    # Commands

    def _prompt_text(self) -> str:
        name = self.conversations.current.name
        return f"[{name}] " if name else "> "

    def _ask_command(self) -> None:
        self._state = "command"
        self._set_status()
        command_prompt = getattr(self.console, "command_prompt", None)
        if command_prompt is not None:
            command_prompt(self._prompt_text())
        else:
            self.console.prompt(self._prompt_text())

    def _entered_command(self, text: str) -> None:
        if text.strip():
            self._mark_read(self.conversations.current)  # the user is here, looking at it
        super()._entered_command(text)

    def _handled_here(self, line: str, words: list[str]) -> bool:
        if self.model.offline or self.model.server is None:
            if words[0] in ("/quit", "/logout"):
                self.exit(0)
                return True
            if words[0] not in ("/win", "/close", "/help") and words != ["/chat"]:
                self._reply(OFFLINE)
                self._ask_command()
                return True
        if not line.startswith("/"):
            self._say(line)
            return True
        local = getattr(self, "_local_" + words[0][1:], None) if words[0][1:].isidentifier() else None
        if local is not None:
            local(words[1:], line)
            return True
        return False

    def _answer_shown(self, ok: bool, text: str) -> bool:
        joined = _NEW_GROUP.search(text) if ok else None
        if joined:  # a group one has just joined or created opens, as /chat would: plain text goes there
            name = joined["group"] or joined["group2"]
            self.model.groups.setdefault(name, ("joined", "group"))
            self._open(name, "group", guessing=False, note=text)  # the confirmation shown in it
            return False
        if ok and self._last_command in ("/msgto", "/groupmsg"):
            self._shown_as_sent(text)
            return True
        return super()._answer_shown(ok, text)

    # Read markers

    def _seen(self, window, msg) -> None:
        """C{msg} is shown in C{window}: unread, for the server, until the user views the window."""
        if msg.sender != self.username and window.kind in ("user", "group"):
            window.newest_other = msg
            window.unmarked = True

    def _mark_read(self, window) -> None:
        """
        The user views C{window} (switched to it, or typed a line in it): mark
        its conversation read up to the newest message from someone else it
        shows, so that the user's other devices clear it too. Only what the
        server counts as unread, and only what was shown: a window holding
        unread messages it has not shown (at login) waits for C{/chat}.
        Messages that arrive while nobody types are not marked by themselves:
        a terminal left open at home must not read what waits for the phone.
        """
        if (window.kind not in ("user", "group") or not window.unmarked or window.missed
                or window.marking or window.newest_other is None or self._no_read_markers
                or self.model.offline or self.model.server is None):
            return
        msg = window.newest_other
        name = "#" + window.name if window.kind == "group" else window.name
        window.marking = True

        def marked(ok, text):
            window.marking = False
            if ok and window.newest_other is msg:
                window.unmarked = False  # (one shown meanwhile waits for the next view)
            elif not ok and text == INVALID_COMMAND:
                self._no_read_markers = True  # an older server

        def read(seq):
            if seq is None:  # not found (deleted, or too far back): nothing to mark
                window.marking = False
                return
            self._request(f"/read {name} {seq}", marked)

        if msg.seq is not None:
            read(msg.seq)
        else:
            self._find_seq(window, msg, read)

    def _find_seq(self, window, msg, then) -> None:
        """A live message's SEQ (its C{MSG} line has none), from the conversation's history."""
        command = "/history" if window.kind == "user" else "/grouphistory"
        found = []

        def data(text):
            stored = parse_history(text)
            if stored is not None and stored.same(msg):
                found.append(stored.seq)

        self._request(f"{command} {window.name} {FIND_SEQ_IN}",
                      lambda ok, text: then(found[-1] if found else None), data)
