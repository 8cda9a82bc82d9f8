"""
The line protocol's login and password texts that chatproto's client reacts
to (the server's side is L{chatproto.frontends.line.texts}).
"""

from .frontends.line.texts import (  # noqa: F401 - re-exported for the client
    ACCOUNT_BLOCKED,
    ALREADY_LOGGED_IN,
    BLOCKED_NOW,
    CURRENT_INCORRECT,
    EMPTY_PASSWORD,
    HAS_WHITESPACE,
    INVALID_PASSWORD,
    INVALID_USERNAME,
    NEW_MISMATCH,
    PASSWORD_CHANGED,
)
