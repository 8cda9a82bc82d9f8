"""
What the browser user reads for each core error code.

The texts are SPEC.md's (sections 2, 3, 6 and 7), so that a person sees the
same words in the page as in a terminal. A few codes read differently
depending on the command (C{no-such-group} for C{/joingroup} names the
group), hence the per-command overrides.
"""

# Login (SPEC.md section 2): the exact texts.
LOGIN_TEXTS = {
    "blocked": "Your account is blocked due to multiple login failures. Please try again later",
    "no-such-account": "Invalid Username. Please try again",
    "wrong-password": "Invalid Password. Please try again",
    "blocked-now": "Invalid Password. Your account has been blocked. Please try again later",
    "already-logged-in": "This account is already logged in",
    "server-error": "Server error: the login could not be recorded. Please try again later",
}

TEXTS = {
    "to-self": "You cannot send a message to yourself",
    "no-such-user": "No such user: {name}",
    "not-active": "{name} is not active",
    "not-saved": "Server error: the message could not be saved",
    "bad-group-name": "Group name must be 1-32 letters and digits",
    "group-exists": "A group chat (Name: {group}) already exists",
    "no-other-member": "Please enter at least one more active user.",
    "no-such-group": "The group chat does not exist.",
    "not-invited": "You are not a member of the group chat {group}.",
    "already-joined": "You have already joined the group chat {group}.",
    "not-member": "You are not in this group chat.",
    "not-joined": "Please join the group before sending messages.",
    "history-not-joined": "Please join the group before reading its history.",
    "broadcast-owner-only": "Only the owner can send messages to this broadcast group.",
    "already-member": "{name} is already a member of the group chat {group}.",
    "blocked": LOGIN_TEXTS["blocked"],
    "current-incorrect": "Current password is incorrect.",
    "password-whitespace": "A password cannot contain whitespace.",
    "password-empty": "A password cannot be empty.",
    "password-too-long": "That password is too long.",
    "no-such-message": "No message {seq}.",
    "not-author": "You can only delete your own messages.",
    "server-error": "Server error",
}

PER_COMMAND = {
    ("join", "no-such-group"): "Groupchat (Name: {group}) does not exist.",
    ("invite", "not-joined"): "Please join the group before inviting others.",
}

# Errors of the WebSocket protocol itself (not of the chat).
PROTOCOL_TEXTS = {
    "bad-json": "Invalid message: not a JSON object",
    "unknown-type": "Unknown request type: {type}",
    "bad-request": "Invalid request: {detail}",
    "too-long": "Message too long",
    "rate-limited": "Too many commands; slow down",
    "empty-message": "A message cannot be empty.",
    "text-too-long": "Message too long",
}


class _Fields(dict):
    """Leaves a field the error does not carry visible rather than failing."""

    def __missing__(self, key):
        return "?"


def error_text(command: str, code: str, error=None) -> str:
    """The text for core error C{code} raised by C{command}, filled from C{error}'s fields."""
    template = PER_COMMAND.get((command, code)) or TEXTS.get(code)
    if template is None:
        text = getattr(error, "text", None) or (str(error) if error is not None else "")
        return text or code
    fields = _Fields()
    if error is not None:
        for name in ("name", "group", "seq", "username"):
            value = getattr(error, name, None)
            if value is not None:
                fields[name] = value
        if "name" not in fields and "username" in fields:
            fields["name"] = fields["username"]
    return template.format_map(fields)


def login_text(code: str, error=None) -> str:
    return LOGIN_TEXTS.get(code) or getattr(error, "text", None) or "Login failed"


def protocol_text(code: str, **fields) -> str:
    return PROTOCOL_TEXTS[code].format_map(_Fields(fields))
