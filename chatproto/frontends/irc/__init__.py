"""The IRC front end (docs/IRC.md): IRC clients on the chat core."""

from .protocol import IRCFactory, IRCProtocol

__all__ = ["IRCFactory", "IRCProtocol"]
