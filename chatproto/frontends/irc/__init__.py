"""The IRC front end (SPEC.md section 8): IRC clients on the chat core."""

from .protocol import IRCFactory, IRCProtocol

__all__ = ["IRCFactory", "IRCProtocol"]
