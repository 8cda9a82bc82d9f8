"""
Typed errors of the chat domain.

Each carries the exact text the user sees (SPEC.md); a front end (the line
protocol, later IRC or WebSocket) decides how to frame it.
"""


class ChatError(Exception):
    """A command failed; nothing was changed. C{str(error)} is the user's text."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class UsageError(ChatError):
    """Arguments missing or malformed."""


class NoSuchUser(ChatError):
    def __init__(self, name: str):
        super().__init__(f"No such user: {name}")


class NotActive(ChatError):
    def __init__(self, name: str):
        super().__init__(f"{name} is not active")


# Login failures: the client picks its next step from these exact texts.
ACCOUNT_BLOCKED = "Your account is blocked due to multiple login failures. Please try again later"
INVALID_USERNAME = "Invalid Username. Please try again"
INVALID_PASSWORD = "Invalid Password. Please try again"
BLOCKED_NOW = "Invalid Password. Your account has been blocked. Please try again later"
ALREADY_LOGGED_IN = "This account is already logged in"


class LoginFailed(ChatError):
    """A login was refused; C{text} is one of the five texts above."""


# /changepassword (SPEC.md section 6); the client checks the new password too.
PASSWORD_CHANGED = "Your password has been changed."
CURRENT_INCORRECT = "Current password is incorrect."
NEW_MISMATCH = "The new passwords do not match."
HAS_WHITESPACE = "A password cannot contain whitespace."
EMPTY_PASSWORD = "A password cannot be empty."
