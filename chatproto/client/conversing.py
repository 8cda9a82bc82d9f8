"""
The terminal client's conversations: plain text to the current one, C{/chat}
and C{/query}, C{/win}, C{/close}, C{/quit}, the terminal's C{/help}, and the
server commands it shows in its own way (C{/history}, C{/grouphistory},
C{/members}, C{/users}, C{/groups}).

A mixin of L{chatproto.client.terminal_ui.TerminalUI}: the methods use the
protocol model's request queue (C{_request}, C{_send_command}), the screen
(C{_reply}, C{_show}, C{_switch}) and the windows (C{conversations},
C{renderer}).
"""

import time

from .commands import HELP
from .render import Message, parse_history, parse_search, sent_at

HISTORY_ON_OPEN = 20
INVALID_COMMAND = "Error. Invalid command!"
NO_CONVERSATION = "Plain text goes to a conversation: /chat NAME opens one."
SEARCH_HINT = "/chat NAME opens a conversation (NAME as in [NAME] above); /win 1 goes back."
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _timestamp(seconds: float) -> str:
    """The server's timestamps (docs/PROTOCOL.md, TIMESTAMP), English month names whatever the locale."""
    t = time.localtime(seconds)
    return f"{t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} {t.tm_year} {time.strftime('%H:%M:%S', t)}"


class ConversationCommands:
    def _say(self, text: str) -> None:
        window = self.conversations.current
        if window.kind not in ("user", "group"):
            self._reply(NO_CONVERSATION)
            self._ask_command()
            return
        command = "/msgto" if window.kind == "user" else "/groupmsg"
        self._send_command(f"{command} {window.name} {text}", command)

    def _shown_as_sent(self, ok_text: str) -> None:
        """C{/msgto} or C{/groupmsg} went through: show one's own message."""
        words = self._last_line.split(None, 2)
        name, body = (words[1], words[2]) if len(words) == 3 else (None, "")
        stamp = sent_at(ok_text)
        if stamp is None:
            stamp = _timestamp(self._now())
        if self._last_command == "/groupmsg":
            window = self.conversations.find(name, "group") or self.conversations.open(name, "group")
            msg = Message(stamp, self.username, body, group=window.name)
        else:
            window = self.conversations.open(name, "user")
            msg = Message(stamp, self.username, body, peer=name)
        shown = self.conversations.add_message(window, msg, count=False)
        if not shown:  # sent from another conversation's window
            shown = self.conversations.add_line(
                self.renderer.info(f"-> {window.name}: {body}"), self.conversations.current)
        self._show(shown)

    def _now(self) -> float:
        if self.clock is not None:
            return self.clock.seconds()
        return time.time()

    def _kind_of(self, name: str) -> str | None:
        if any(g.lower() == name.lower() for g in (*self._groups, *self._seen_groups)):
            return "group"
        if name in self._users:
            return "user"
        return None

    def _local_chat(self, args: list[str], line: str) -> None:
        if not args:
            listed = " ".join(
                f"{self.conversations.number(w)}:{w.label}" + (f"({w.unread})" if w.unread else "")
                for w in self.conversations.windows)
            self._reply("Conversations: " + listed)
            self._ask_command()
            return
        if len(args) != 1:
            self._reply("Usage: /chat NAME")
            self._ask_command()
            return
        name = args[0]
        kind = self._kind_of(name)
        if name.startswith("#") and len(name) > 1:  # irssi's habit: #GROUP
            name, kind = name[1:], "group"
        if name == self.username:
            self._reply("You cannot send a message to yourself")
            self._ask_command()
            return
        window = self.conversations.find(name, kind)
        if window is not None and window.loaded:
            self._switch(window)
            return
        if window is not None:  # opened by a message that came: now with its history
            self._open(window.name, window.kind, guessing=False, count=len(window.lines) + window.missed)
            return
        self._open(name, kind or "user", guessing=kind is None)

    _local_query = _local_chat

    def _local_clear(self, args: list[str], line: str) -> None:
        """Empty the current window (the messages stay on the server)."""
        window = self.conversations.current
        del window.lines[:]
        self._switch(window)

    def _open(self, name: str, kind: str, guessing: bool, count: int = 0, note: str | None = None) -> None:
        """
        Open a conversation with its last messages (at least C{count} more than
        the default: those its window holds already); try a group when no user
        has the name. C{note} (a command's reply) follows the history in it.
        """
        self._state = "waiting"
        found = []
        command = "/history" if kind == "user" else "/grouphistory"

        def data(text):
            msg = parse_history(text)
            if msg is not None:
                found.append(msg)

        def done(ok, text):
            if not ok and guessing and kind == "user" and text == f"No such user: {name}":
                self._open(name, "group", guessing=True)
                return
            if not ok and kind == "group" and text == "The group chat does not exist." and guessing:
                self._reply(f"No such user or group: {name}")
                self._ask_command()
                return
            if not ok and kind == "group" and text == "The group chat does not exist.":
                self._reply(text)
                self._ask_command()
                return
            if not ok and text == f"No such user: {name}":
                self._reply(text)
                self._ask_command()
                return
            exact = name
            if kind == "group":
                exact = next((g for g in self._groups if g.lower() == name.lower()), name)
                if found and found[0].group:
                    exact = found[0].group
            window = self.conversations.open(exact, kind)
            window.loaded = True
            self.conversations.switch(window)
            if found and window.lines:
                # The history holds what the window showed (and what came before).
                window.reset()
            for msg in found:
                self.conversations.add_history(window, msg)
                if msg.sender != self.username:
                    window.newest_other = msg  # with its SEQ: what a /read names
            window.missed = 0  # shown now
            if note:
                window.append(self.renderer.info(note))
            if text and (ok or text != INVALID_COMMAND):
                window.append(self.renderer.info(text))
            if kind == "group":
                self._switch(window)
                self._members(window, self._ask_command)
                return

            def presence():
                if exact in self._users:
                    away = self._users[exact] != "active"
                    window.append(self.renderer.notice(
                        f"{exact} is not logged in now" if away else f"{exact} is active"))
                self._switch(window)
                self._ask_command()

            self._refresh_users(presence)

        self._request(f"{command} {name} {min(500, HISTORY_ON_OPEN + count)}", done, data)

    def _refresh_users(self, then) -> None:
        """Ask who is active now (for a conversation that opens), then C{then()}."""
        users = {}

        def data(text):
            name, _, presence = text.partition(" ")
            users[name] = presence

        def done(ok, text):
            self._users.update(users)
            then()

        self._request("/users", done, data)

    def _members(self, window, then) -> None:
        members = []

        def data(text):
            fields = text.split()
            if len(fields) == 3:
                members.append(tuple(fields))

        def done(ok, text):
            if ok and members:
                window.members = members
                self._show(self.conversations.add_line(
                    self.renderer.info(_members_text(window.name, members)), window))
            elif not ok and text != INVALID_COMMAND:
                self._show(self.conversations.add_line(self.renderer.info(text), window))
            then()

        self._request(f"/members {window.name}", done, data)

    def _missed_history(self, window, messages: list) -> None:
        """After a reconnect: what came while the client was away."""
        last = window.last_message
        for msg in messages:
            if last is not None and (msg.sort_key() < last.sort_key() or msg.same(last)
                                     or (msg.sort_key() == last.sort_key()
                                         and any(msg.same(m) for m in window.recent))):
                continue
            self._show(self.conversations.add_message(window, msg))
            self._seen(window, msg)
        self._set_status()

    def _load_history(self, window, count: int, then) -> None:
        command = "/history" if window.kind == "user" else "/grouphistory"
        found = []

        def data(text):
            msg = parse_history(text)
            if msg is not None:
                found.append(msg)

        self._request(f"{command} {window.name} {count}", lambda ok, text: then(window, found), data)

    def _local_win(self, args: list[str], line: str) -> None:
        if not args:
            self._local_chat(args, line)  # the list
            return
        if len(args) != 1 or not (args[0].isascii() and args[0].isdigit()):
            self._reply("Usage: /win N")
            self._ask_command()
            return
        window = self.conversations.by_number(int(args[0]))
        if window is None:
            self._reply(f"No window {args[0]} (1-{len(self.conversations.windows)}).")
            self._ask_command()
            return
        self._switch(window)  # with the prompt of that window

    _local_window = _local_win  # irssi's /window N

    def _local_close(self, args: list[str], line: str) -> None:
        window = self.conversations.current
        if window.name is None:
            self._reply("Window 1 stays open (/quit leaves).")
            self._ask_command()
            return
        self.conversations.close(window)
        self._switch(self.conversations.all)

    def _local_quit(self, args: list[str], line: str) -> None:
        self._send_command("/logout", "/logout")

    def _local_help(self, args: list[str], line: str) -> None:
        if args:
            self._reply("Usage: /help")
        else:
            width = 30
            for form, what in HELP:
                if len(form) > width:
                    self._reply(form)
                    self._reply(f"{'':{width}}  {what}")
                else:
                    self._reply(f"{form:{width}}  {what}")
            self._reply("Keys: Alt-1..9 switch conversations, Tab completes, Up/Down history, "
                        "Ctrl-L redraws, Ctrl-Z suspends, Ctrl-C or Ctrl-D leaves.")
        self._ask_command()

    def _here(self, args) -> tuple[str | None, str | None]:
        """In a conversation, a command's name argument may be left out: (kind, name)."""
        window = self.conversations.current
        if window.kind == "search":
            return None, None
        return window.kind, window.name

    def _local_search(self, args, line) -> None:
        """/search [in NAME] TEXT: the results, newest first, in a window of their own."""
        found = []

        def data(text):
            msg = parse_search(text)
            if msg is None:
                self._reply(text)
            else:
                found.append(msg)

        def done(ok, text):
            if not ok:
                self._reply(text)
                self._ask_command()
                return
            window = self.conversations.search_window()
            query = " ".join(args)
            count = f"{len(found)} message{'s' if len(found) != 1 else ''}, newest first" if found else text
            window.append(self.renderer.info(f"Search {query}: {count}"))
            for msg in found:
                window.append(self.renderer.search_result(msg))
            if found:
                window.append(self.renderer.info(SEARCH_HINT))
            self._switch(window)
            self._ask_command()

        self._state = "waiting"
        self._request(line, done, data)

    def _local_history(self, args, line) -> None:
        kind, name = self._here(args)
        if name is not None and (not args or (len(args) == 1 and args[0].isdigit())):
            # /history [N] in a conversation: its own history
            command = "/history" if kind == "user" else "/grouphistory"
            line = " ".join([command, name, *args])
        self._send_command(line, line.split()[0], self._history_line)

    def _local_grouphistory(self, args, line) -> None:
        kind, name = self._here(args)
        if kind == "group" and (not args or (len(args) == 1 and args[0].isdigit())):
            line = " ".join(["/grouphistory", name, *args])
        self._send_command(line, "/grouphistory", self._history_line)

    def _history_line(self, text: str) -> None:
        msg = parse_history(text)
        if msg is None:
            self._reply(text)
        else:
            self._show(self.conversations.add_line(self.renderer.message(msg, msg.group)))

    def _local_members(self, args, line) -> None:
        kind, name = self._here(args)
        if not args and kind == "group":
            args, line = [name], f"/members {name}"
        members = []

        def data(text):
            fields = text.split()
            if len(fields) == 3:
                members.append(tuple(fields))
            else:
                self._reply(text)

        def done(ok, text):
            if ok and members:
                self._reply(_members_text(args[0], members))
            elif text:
                self._reply(text)
            self._ask_command()

        self._state = "waiting"
        self._request(line, done, data)

    def _local_users(self, args, line) -> None:
        rows = []

        def data(text):
            name, _, presence = text.partition(" ")
            self._users[name] = presence
            rows.append(name if presence == "active" else f"{name} (offline)")

        def done(ok, text):
            if rows:
                self._reply("Users: " + " ".join(rows))
            if text:
                self._reply(text)
            self._ask_command()

        self._state = "waiting"
        self._request(line, done, data)

    def _local_groups(self, args, line) -> None:
        rows = []

        def data(text):
            fields = text.split()
            if len(fields) == 3:
                self._groups[fields[0]] = (fields[1], fields[2])
                name, role, kind = fields
                rows.append(f"{name} ({role}{', broadcast' if kind == 'broadcast' else ''})")
            else:
                self._reply(text)

        def done(ok, text):
            if rows:
                self._reply("Groups: " + " ".join(rows))
            if text:
                self._reply(text)
            self._ask_command()

        self._state = "waiting"
        self._request(line, done, data)


def _members_text(group: str, members) -> str:
    """C{Members of Jedi: @Yoda luke leia (invited) obiwan (offline)}."""
    shown = []
    for name, role, presence in members:
        text = ("@" if role == "owner" else "") + name
        notes = [n for n in ("invited" if role == "invited" else "",
                             "offline" if presence != "active" else "") if n]
        if notes:
            text += f" ({', '.join(notes)})"
        shown.append(text)
    return f"Members of {group}: " + " ".join(shown)
