"""
C{python -m chatproto.client [SERVER_IP [SERVER_PORT [UDP_PORT]]]}: the
terminal client.

It is two layers:
 - the protocol model (L{model.ChatModel}): the connection to the server.
   It sends command lines and matches each final C{OK} or C{ERR} to its
   request, turns the other server lines into typed events
   (L{events}), logs in and in again after a lost connection, and wires the
   UDP file transfers. No printing, no terminal.
 - its user interfaces, which render those events and turn what the user
   types into the model's calls: the plain console's (L{ui.ConsoleUI}: stdin
   not a terminal; the fixed lines scripts rely on, docs/CLIENT.md) and the
   terminal's (L{terminal_ui.TerminalUI}: conversations, a status line,
   reconnecting).

L{ChatClient} puts one model and the user interface for its console
together; L{cli.main} is the command line.
"""

from .app import ChatClient
from .cli import Arguments, main, make_console, parse_arguments, start_transfers
from .commands import COMMAND_PROMPT, COMMANDS
from .conversing import HISTORY_ON_OPEN, INVALID_COMMAND, NO_CONVERSATION
from .model import ChatModel, ServerConnection
from .terminal_ui import HISTORY_ON_RESUME, TerminalUI
from .ui import CONNECTION_LOST, OFFLINE, RECONNECTED, RECONNECTING, WAITING_FOR_SERVER, ConsoleUI

__all__ = ["COMMANDS", "COMMAND_PROMPT", "CONNECTION_LOST", "HISTORY_ON_OPEN", "HISTORY_ON_RESUME",
           "INVALID_COMMAND", "NO_CONVERSATION", "OFFLINE", "RECONNECTED", "RECONNECTING",
           "WAITING_FOR_SERVER", "Arguments", "ChatClient", "ChatModel", "ConsoleUI", "ServerConnection",
           "TerminalUI", "main", "make_console", "parse_arguments", "start_transfers"]
