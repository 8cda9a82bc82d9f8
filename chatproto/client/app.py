"""
One client put together: its protocol model and the user interface for its
console (L{ChatClient}).
"""

from .model import ChatModel
from .terminal_ui import TerminalUI
from .ui import ConsoleUI


class ChatClient:
    """
    One client: its model and the user interface for C{console} (the
    terminal's when the console is C{rich}). The server connection talks to
    C{model}, the console to C{ui}; other attributes are the UI's.

    @param console: where the user reads and types (see L{chatproto.client.console}).
    @param udp_port: announced at login; where peers send files to us.
    @param on_exit: called once with the exit status.
    @param transfers: the UDP transfer endpoint, or None when there is none.
    @param clock: the time of one's own group messages (the reactor by default).
    @param reconnector: a L{reconnect.Reconnector} to use when the connection is
        lost after login; None: the client exits 1 (pipe mode, docs/CLIENT.md).
    @param username: from the configuration file: asked no more on a terminal.
    @param colours: False for no colours on a terminal.
    """

    def __init__(self, console, udp_port: int, on_exit, transfers=None, file_exists=None,
                 clock=None, reconnector=None, username=None, colours=True):
        rich = getattr(console, "rich", False)
        # On a terminal, a login deadline met under the prompt connects again without a word.
        self.model = ChatModel(udp_port, transfers, reconnector, reconnect_under_prompt=rich)
        if rich:
            self.ui = TerminalUI(self.model, console, on_exit, file_exists, clock, username, colours)
        else:
            self.ui = ConsoleUI(self.model, console, on_exit, file_exists, clock)

    # The server connection's calls (ServerConnection)

    def connected(self, server) -> None:
        self.model.connected(server)

    def server_line(self, tag: str, text: str) -> None:
        self.model.server_line(tag, text)

    def server_lost(self, server=None) -> None:
        self.model.server_lost(server)

    def reconnect_attempt(self, attempt: int, delay: float) -> None:
        self.model.reconnect_attempt(attempt, delay)

    # What is the model's

    @property
    def server(self):
        return self.model.server

    @property
    def files(self):
        return self.model.files

    @property
    def transfers(self):
        return self.model.transfers

    @transfers.setter
    def transfers(self, endpoint) -> None:
        self.model.transfers = endpoint

    @property
    def udp_port(self) -> int:
        return self.model.udp_port

    @udp_port.setter
    def udp_port(self, port: int) -> None:
        self.model.udp_port = port

    @property
    def file_exists(self):
        return self.ui.file_exists

    @file_exists.setter
    def file_exists(self, check) -> None:
        self.ui.file_exists = check

    def __getattr__(self, name):
        # line_entered, input_ended, conversations, transfer_*, exit, ...: the UI's
        if name in ("model", "ui"):
            raise AttributeError(name)
        return getattr(self.ui, name)
