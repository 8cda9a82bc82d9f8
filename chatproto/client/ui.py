"""
The client's user interfaces over its protocol model (L{model.ChatModel}).

L{ClientUI} is what every console shares: the login prompts, the command
prompt shown only once the server has answered the last command with its
final C{OK} or C{ERR} (so a prompt is never printed twice, and nothing waits
on a sleep), C{/changepassword}'s three prompts, the file check and the
transfer that follow C{/p2pvideo}, and the end of the client. It renders the
model's events (L{chatproto.client.events}) and turns what the user types
into the model's calls.

L{ConsoleUI} is the plain console's (stdin not a terminal: pipes, scripts,
tests): it prints the fixed lines scripts rely on (docs/CLIENT.md). The
terminal's, with conversations, is L{chatproto.client.terminal_ui}.
"""

import os

from twisted.internet import defer

from .. import errors
from . import files
from .commands import COMMAND_PROMPT, COMMANDS
from .model import GIVE_UP

CONNECTION_LOST = "Connection to the server was lost."
RECONNECTING = "Connection to the server was lost. Reconnecting (/quit or Ctrl-C leaves)..."
WAITING_FOR_SERVER = "Waiting for the server to come back (/quit or Ctrl-C leaves)..."
RECONNECTED = "Reconnected to the server."
OFFLINE = "Not connected to the server: reconnecting (/quit or Ctrl-C leaves)."
NO_TRANSFERS = "P2P transfer is not available in this client."

# What to ask next after a refused login.
_ASK_PASSWORD = {errors.INVALID_PASSWORD}


def readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


class ClientUI:
    """
    @param model: the connection to the server (L{model.ChatModel}).
    @param console: where the user reads and types (see L{chatproto.client.console}).
    @param on_exit: called once with the exit status.
    @param file_exists: checks a file named to C{/p2pvideo} (readable by default).
    @param clock: the time of one's own messages (the reactor by default).
    """

    #: Conversations, styled lines and the status line (the terminal's).
    rich = False

    def __init__(self, model, console, on_exit, file_exists=None, clock=None):
        self.model = model
        self.console = console
        self.on_exit = on_exit
        self.file_exists = file_exists or readable_file
        self.clock = clock
        self._state = "connecting"
        self._preset_username = None
        self._username_entered = None
        self._pending_file = None
        self._new_password = None
        self._passwords = None
        self._last_command = None
        self._last_line = None
        self._exiting = False
        model.listen(self)
        console.attach(self)

    # What the model knows, under the names the commands use

    @property
    def username(self):
        return self.model.username

    @property
    def _users(self) -> dict:
        return self.model.users

    @property
    def _groups(self) -> dict:
        return self.model.groups

    @property
    def _seen_groups(self) -> set:
        return self.model.seen_groups

    def _request(self, line: str, on_final, on_data=None) -> None:
        self.model.request(line, on_final, on_data)

    # The model's events

    def event(self, event) -> None:
        getattr(self, "on_" + type(event).__name__)(event)

    def on_Delivered(self, event) -> None:
        self.console.show(event.text)

    def on_SentElsewhere(self, event) -> None:
        self.console.show(f"SENT {event.text}")

    def on_ReadElsewhere(self, event) -> None:
        """Nothing to clear in a plain transcript."""

    def on_Notice(self, event) -> None:
        self.console.show(event.text)

    def on_ServerShutdown(self, event) -> None:
        self._connection_notice(event.text)

    def on_Reply(self, event) -> None:
        self._reply(event.text)

    def on_Unknown(self, event) -> None:
        self.console.show(f"{event.tag} {event.text}".strip())

    def on_FileNote(self, event) -> None:
        self._show_everywhere(event.text, notice=False)

    def on_LoginWanted(self, event) -> None:
        self._ask_username()

    def on_LoginInterrupted(self, event) -> None:
        if event.resend and self._state == "logging_in":
            self._state = "password"  # the LOGIN sent has no answer: ask again
            self.console.prompt("Password: ", secret=True)

    def on_Offline(self, event) -> None:
        if event.first:
            self._connection_notice(WAITING_FOR_SERVER if event.after_shutdown else RECONNECTING)
            if self._state in ("waiting", "logging_in"):
                self._ask_command()
        self._set_status()

    def on_Reconnecting(self, event) -> None:
        self._set_status(f"offline: try {event.attempt} in {event.delay:g} s")

    def on_LoggingInAgain(self, event) -> None:
        self._set_status()  # no longer counting down to the next attempt

    def on_Reconnected(self, event) -> None:
        self._connection_notice(RECONNECTED)
        self._set_status()

    def on_ReloginRefused(self, event) -> None:
        self.console.show(event.text)
        if event.give_up:
            self.exit(1)
        else:
            self._ask_username()

    def on_ConnectionLost(self, event) -> None:
        if not event.announced:  # one line says the server went away
            self.console.show(CONNECTION_LOST)
        self.exit(1)

    # What the user sees (the terminal shows these in its windows)

    def _reply(self, text: str, window=None) -> None:
        """A reply to a command (or a line without a command)."""
        self.console.show(text)

    def _connection_notice(self, text: str) -> None:
        self.console.show(text)

    def _show_everywhere(self, text: str, notice: bool = True) -> None:
        self.console.show(text)

    def _set_status(self, connection: str | None = None) -> None:
        """A plain console has no status line."""

    # From the console

    def line_entered(self, text: str) -> None:
        handler = getattr(self, "_entered_" + self._state, None)
        if handler is not None:
            handler(text)

    def input_ended(self) -> None:
        """End of input at a prompt: close the client (the server logs us out)."""
        self.exit(0)

    def echo_for(self, prompt: str, line: str) -> str | None:
        """What the console keeps on screen for an entered line (None: nothing)."""
        return prompt + line

    def completion_candidates(self) -> list[str]:
        """For tab completion: the commands, then the users and groups known so far."""
        return self._commands() + sorted(self.model.names())

    def _commands(self) -> list[str]:
        return COMMANDS

    # Login

    def _ask_username(self) -> None:
        self._state = "username"
        self._set_status()
        if self._preset_username:
            username, self._preset_username = self._preset_username, None
            self.console.show(f"Username: {username}")
            self._entered_username(username)
            return
        self.console.prompt("Username: ")

    def _ask_password(self) -> None:
        self._state = "password"
        self.console.prompt("Password: ", secret=True)

    def _entered_username(self, text: str) -> None:
        username = text.strip()
        if not username or any(c.isspace() for c in username):
            self.console.show(errors.INVALID_USERNAME)
            self._ask_username()
            return
        self._username_entered = username
        self._ask_password()

    def _entered_password(self, text: str) -> None:
        password = text.strip("\r\n")
        if not password or any(c.isspace() for c in password):
            # No account can have it (passwords hold no whitespace).
            self.console.show(errors.INVALID_PASSWORD)
            self._ask_password()
            return
        self._state = "logging_in"
        self.model.log_in(self._username_entered, password, self._login_answer)

    def _login_answer(self, ok: bool, text: str) -> None:
        self.console.show(text)
        if ok:
            self._logged_in()
            self._ask_command()
        elif text in GIVE_UP:
            self.exit(1)
        elif text in _ASK_PASSWORD:
            self._ask_password()
        else:
            self._ask_username()

    def _logged_in(self) -> None:
        """Just logged in (the terminal asks the server a few things of its own)."""

    # Commands

    def _prompt_text(self) -> str:
        return COMMAND_PROMPT

    def _ask_command(self) -> None:
        self._state = "command"
        self._set_status()
        self.console.prompt(self._prompt_text())

    def _entered_command(self, text: str) -> None:
        line = text.strip()
        if not line:
            self._ask_command()
            return
        words = line.split()
        if words[0] in files.COMMANDS:  # answered here, not by the server
            self.model.files.command(words)
            self._ask_command()
            return
        if self._handled_here(line, words):
            return
        if words == ["/changepassword"]:
            self._ask_current_password()
            return
        if words[0] == "/changepassword" and len(words) == 3:
            self._new_password = words[2]
        if words[0] == "/p2pvideo" and len(words) == 3:
            filename = words[2]
            if not self.file_exists(filename):
                self._reply(f"File {filename} does not exist")
                self._ask_command()
                return
            self._pending_file = filename
        self._send_command(line, words[0])

    def _handled_here(self, line: str, words: list[str]) -> bool:
        """The terminal's own commands and plain text: True when C{line} is dealt with."""
        return False

    def _send_command(self, line: str, command: str, on_data=None) -> None:
        self._state = "waiting"
        self._last_command = command
        self._last_line = line
        self.model.command(line, self._command_done, on_data)

    # /changepassword: three prompts, then one wire line

    def _ask_current_password(self) -> None:
        self._state = "current_password"
        self.console.prompt("Current password: ", secret=True)

    def _entered_current_password(self, text: str) -> None:
        self._passwords = [text.strip("\r\n")]
        self._state = "new_password"
        self.console.prompt("New password: ", secret=True)

    def _entered_new_password(self, text: str) -> None:
        self._passwords.append(text.strip("\r\n"))
        self._state = "repeat_password"
        self.console.prompt("Repeat new password: ", secret=True)

    def _entered_repeat_password(self, text: str) -> None:
        (current, new), self._passwords = self._passwords, None
        problem = None
        if text.strip("\r\n") != new:
            problem = errors.NEW_MISMATCH
        elif not new:
            problem = errors.EMPTY_PASSWORD
        elif any(c.isspace() for c in new):
            problem = errors.HAS_WHITESPACE
        elif not current or any(c.isspace() for c in current):
            problem = errors.CURRENT_INCORRECT  # no account has such a password
        elif self.model.server is None:
            problem = OFFLINE
        if problem is not None:
            self._reply(problem)
            self._ask_command()
            return
        self._new_password = new
        self._send_command(f"/changepassword {current} {new}", "/changepassword")

    def _command_done(self, ok: bool, text: str) -> None:
        command = self._last_command
        if not self._answer_shown(ok, text):
            self._pending_file = None
            return
        if ok and command == "/logout":
            self.exit(0)
            return
        if command == "/changepassword":
            if ok and text == errors.PASSWORD_CHANGED and self._new_password:
                self.model.password_changed(self._new_password)
            self._new_password = None
        if ok and command == "/p2pvideo" and self.model.peer is not None:
            self._start_transfer(self.model.peer, self._pending_file)
        self._pending_file = None
        self._ask_command()

    def _answer_shown(self, ok: bool, text: str) -> bool:
        """Show a command's final answer; False when showing it took over (the next prompt too)."""
        if text:
            self._reply(text)
        return True

    # P2P video

    def _start_transfer(self, peer, filename: str) -> None:
        basename = os.path.basename(filename)
        name = peer[0]
        d = self.model.send_file(peer, filename)
        if d is None:
            self._reply(NO_TRANSFERS)
            return

        def uploaded(_):
            self.console.progress(f"send:{basename}", None)
            self._show_everywhere(f"{basename} has been uploaded", notice=False)

        def failed(failure):
            self.console.progress(f"send:{basename}", None)
            reason = getattr(failure.value, "reason", None) or failure.getErrorMessage()
            self._show_everywhere(f"Sending {basename} to {name} failed: {reason}", notice=False)

        d.addCallbacks(uploaded, failed)

    def transfer_received(self, presenter: str, basename: str, final_path: str) -> None:
        self.console.progress(f"receive:{basename}", None)
        self._show_everywhere(f"A file ({basename}) has been received from {presenter}", notice=False)

    def transfer_failed(self, direction: str, peer_name: str, basename: str, reason: str) -> None:
        if direction == "receive":
            self.console.progress(f"receive:{basename}", None)
            self._show_everywhere(f"Receiving {basename} from {peer_name} failed: {reason}", notice=False)
        # A failed send is reported through send_file's Deferred.

    def transfer_progress(self, transfer_id, direction, basename, done, total, rate) -> None:
        percent = 100.0 * done / total if total else 100.0
        verb = "Sending" if direction == "send" else "Receiving"
        self.console.progress(
            f"{direction}:{basename}",  # the key under which the end removes it
            f"{verb} {basename}: {percent:5.1f}% ({done / 1048576:.1f}/{total / 1048576:.1f} MiB,"
            f" {rate / 1048576:.1f} MiB/s)",
        )

    # Exit

    def exit(self, status: int) -> None:
        if self._exiting:
            return
        self._exiting = True
        self._state = "exiting"
        self.model.close()
        d = defer.maybeDeferred(self.console.close)
        d.addBoth(lambda _: self.on_exit(status))


class ConsoleUI(ClientUI):
    """The plain console's: every line as the server gave it (docs/CLIENT.md, pipe mode)."""
