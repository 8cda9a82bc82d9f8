"""
The line protocol's login and password texts that chatproto's client reacts
to (the words every side shares are L{chatproto.texts}).
"""

from .texts import (  # noqa: F401 - re-exported for the client
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
