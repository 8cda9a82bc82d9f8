"""
What the browser user reads for each core error code: the same words as
the line protocol's (docs/PROTOCOL.md, L{chatproto.texts}), so
that a person sees in the page what a terminal shows.
"""

from ... import texts as shared_texts
from ...texts import AWAY_CLEARED, AWAY_SET, IS_AWAY  # noqa: F401 - the page's words for away

# The web requests named as the line-protocol commands whose wording they share.
COMMANDS = {"join": "joingroup", "leave": "leavegroup", "send": "msgto", "create_group": "creategroup",
            "invite": "invite", "history": "history", "delete": "deletemsg",
            "change_password": "changepassword"}

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
WEB_TEXTS = {
    ("invite", "not-joined"): "Please join the group before inviting others.",
}


class _Fields(dict):
    """Leaves a field the error does not carry visible rather than failing."""

    def __missing__(self, key):
        return "?"


def error_text(command: str, code: str, error=None) -> str:
    """The text for core error C{code} raised by the web request C{command}."""
    template = WEB_TEXTS.get((command, code))
    fields = getattr(error, "fields", None) or {}
    if template is not None:
        return template.format_map(_Fields(fields))
    if error is not None and hasattr(error, "code"):
        return shared_texts.error_text(error, COMMANDS.get(command, command))
    return shared_texts.ERROR_TEXTS.get(code, "Server error")


def login_text(code: str, error=None) -> str:
    return shared_texts.ERROR_TEXTS.get(code) or "Login failed"


def protocol_text(code: str, **fields) -> str:
    return PROTOCOL_TEXTS[code].format_map(_Fields(fields))
