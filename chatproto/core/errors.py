"""
Typed errors of the chat core.

A L{ChatError} carries a C{code} (a short stable string) and the fields its
message needs. Each front end maps codes to its own words: the line protocol
to its exact texts (docs/PROTOCOL.md, L{chatproto.frontends.line.texts}), IRC to
numerics, the web client to JSON.
"""


class ChatError(Exception):
    """A command failed; nothing was changed."""

    def __init__(self, code: str, **fields):
        super().__init__(code, fields)
        self.code = code
        self.fields = fields

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"ChatError({self.code!r}, {self.fields!r})"


class LoginFailed(ChatError):
    """A login was refused (codes C{blocked}, C{no-such-account}, C{wrong-password},
    C{blocked-now}, C{already-logged-in}, C{server-error})."""


# Codes, for the front ends' maps and the core's own checks.
BLOCKED = "blocked"
NO_SUCH_ACCOUNT = "no-such-account"
WRONG_PASSWORD = "wrong-password"
BLOCKED_NOW = "blocked-now"
ALREADY_LOGGED_IN = "already-logged-in"
SERVER_ERROR = "server-error"
LOGIN_NOT_RECORDED = "login-not-recorded"
LOGIN_BUSY = "login-busy"
NOT_SAVED = "not-saved"

TO_SELF = "to-self"
TO_SELF_FILE = "to-self-file"
NO_SUCH_USER = "no-such-user"
NOT_ACTIVE = "not-active"
CANNOT_RECEIVE_FILES = "cannot-receive-files"

BAD_GROUP_NAME = "bad-group-name"
GROUP_EXISTS = "group-exists"
NO_OTHER_MEMBER = "no-other-member"
NO_SUCH_GROUP = "no-such-group"  # fields: name; the texts differ by command
NOT_INVITED = "not-invited"
ALREADY_JOINED = "already-joined"
NOT_MEMBER = "not-member"
NOT_JOINED = "not-joined"
HISTORY_NOT_JOINED = "history-not-joined"
BROADCAST_OWNER_ONLY = "broadcast-owner-only"
ALREADY_MEMBER = "already-member"
TOO_MANY_GROUPS = "too-many-groups"  # fields: limit
GROUPS_TOO_FAST = "groups-too-fast"  # fields: limit

CURRENT_INCORRECT = "current-incorrect"
PASSWORD_WHITESPACE = "password-whitespace"
PASSWORD_EMPTY = "password-empty"
PASSWORD_TOO_LONG = "password-too-long"
ACCOUNT_GONE = "account-gone"

NO_SUCH_MESSAGE = "no-such-message"
SEARCHES_WAITING = "searches-waiting"  # fields: limit
NOT_AUTHOR = "not-author"

# Administrators (chatproto.toml's admins)
NOT_ADMIN = "not-admin"
ADMIN_SELF = "admin-self"
BAD_DURATION = "bad-duration"
NOT_BANNED = "not-banned"
