"""
The product's words that every side shares: the core's error codes as
users read them (the line protocol says them verbatim; IRC and the web page
put them in their own frames) and the login and password texts chatproto's
client reacts to. A module of its own, so that the IRC and web front ends
and the client need not import the line protocol's.
"""

from .core import errors as codes

NEW_MISMATCH = "The new passwords do not match."
PASSWORD_CHANGED = "Your password has been changed."

# Login failures: the client picks its next step from these exact texts.
ACCOUNT_BLOCKED = "Your account is blocked due to multiple login failures. Please try again later"
INVALID_USERNAME = "Invalid Username. Please try again"
INVALID_PASSWORD = "Invalid Password. Please try again"
BLOCKED_NOW = "Invalid Password. Your account has been blocked. Please try again later"
ALREADY_LOGGED_IN = "This account is already logged in"
HAS_WHITESPACE = "A password cannot contain whitespace."
EMPTY_PASSWORD = "A password cannot be empty."
CURRENT_INCORRECT = "Current password is incorrect."

# Away (one person, several devices): the answers to setting and clearing it, and what a
# sender is told of an away recipient; the line protocol says them verbatim, the page shows them.
AWAY_SET = "You are marked as away."
AWAY_CLEARED = "You are no longer marked as away."
IS_AWAY = "{name} is away: {text}"

ERROR_TEXTS = {
    codes.BLOCKED: ACCOUNT_BLOCKED,
    codes.NO_SUCH_ACCOUNT: INVALID_USERNAME,
    codes.WRONG_PASSWORD: INVALID_PASSWORD,
    codes.BLOCKED_NOW: BLOCKED_NOW,
    codes.ALREADY_LOGGED_IN: ALREADY_LOGGED_IN,
    codes.SERVER_ERROR: "Server error",
    codes.LOGIN_NOT_RECORDED: "Server error: the login could not be recorded. Please try again later",
    codes.NOT_SAVED: "Server error: the message could not be saved",
    codes.LOGIN_BUSY: "Too many logins for this account at once. Please try again later",
    codes.TO_SELF: "You cannot send a message to yourself",
    codes.TO_SELF_FILE: "You cannot send a file to yourself",
    codes.NO_SUCH_USER: "No such user: {name}",
    codes.NOT_ACTIVE: "{name} is not active",
    codes.CANNOT_RECEIVE_FILES: "{name} cannot receive files",
    codes.BAD_GROUP_NAME: "Group name must be 1-32 letters and digits",
    codes.GROUP_EXISTS: "A group chat (Name: {name}) already exists",
    codes.NO_OTHER_MEMBER: "Please enter at least one more active user.",
    codes.NO_SUCH_GROUP: "The group chat does not exist.",
    codes.NOT_INVITED: "You are not a member of the group chat {name}.",
    codes.ALREADY_JOINED: "You have already joined the group chat {name}.",
    codes.NOT_MEMBER: "You are not in this group chat.",
    codes.NOT_JOINED: "Please join the group before sending messages.",
    codes.HISTORY_NOT_JOINED: "Please join the group before reading its history.",
    codes.BROADCAST_OWNER_ONLY: "Only the owner can send messages to this broadcast group.",
    codes.ALREADY_MEMBER: "{name} is already a member of the group chat {group}.",
    codes.TOO_MANY_GROUPS: "You already own {limit} group chats; no more can be created.",
    codes.GROUPS_TOO_FAST: "Too many group chats created in a minute (at most {limit}). Please try again later",
    codes.CURRENT_INCORRECT: CURRENT_INCORRECT,
    codes.PASSWORD_WHITESPACE: HAS_WHITESPACE,
    codes.PASSWORD_EMPTY: EMPTY_PASSWORD,
    codes.PASSWORD_TOO_LONG: "A password cannot be longer than {limit} bytes.",
    codes.ACCOUNT_GONE: "Your account is no longer in the credentials file; the password was not changed.",
    codes.NO_SUCH_MESSAGE: "No message {seq}.",
    codes.NOT_AUTHOR: "You can only delete your own messages.",
    codes.SEARCHES_WAITING: "Too many searches at once (at most {limit}). Please wait for the results.",
}

ERROR_TEXTS.update({
    codes.NOT_ADMIN: "You are not an administrator.",
    codes.ADMIN_SELF: "You cannot do that to your own account.",
    codes.BAD_DURATION: "Invalid duration: {duration} (e.g. 30m, 2h, 7d, 1w or forever)",
    codes.NOT_BANNED: "{name} is not banned.",
})

# Where a command words an error its own way.
COMMAND_ERROR_TEXTS = {
    ("joingroup", codes.NO_SUCH_GROUP): "Groupchat (Name: {name}) does not exist.",
}


def error_text(error, command: str = "") -> str:
    """The user's text for a L{ChatError} raised by C{command}."""
    template = COMMAND_ERROR_TEXTS.get((command, error.code)) or ERROR_TEXTS.get(error.code)
    if template is None:
        return "Server error"
    try:
        return template.format(**error.fields)
    except (KeyError, IndexError):
        return template
