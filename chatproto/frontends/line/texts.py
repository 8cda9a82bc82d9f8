"""
The line protocol's exact texts (docs/PROTOCOL.md): its replies and the core's
events in the words users (and chatproto's client) rely on. The error texts
it shares with every front end are in L{chatproto.texts}.
"""

from ...core.events import (
    PRIVATE,
    AwayChanged,
    FileOffer,
    Invited,
    MemberJoined,
    MemberLeft,
    Message,
    MessageDeleted,
    ReadMarker,
    Sent,
    ServerNotice,
)

# The words shared with the other front ends and the client (chatproto.texts), the line protocol's too.
from ...texts import (  # noqa: F401 - re-exported: the line protocol's words
    ACCOUNT_BLOCKED,
    ALREADY_LOGGED_IN,
    AWAY_CLEARED,
    AWAY_SET,
    BLOCKED_NOW,
    COMMAND_ERROR_TEXTS,
    CURRENT_INCORRECT,
    EMPTY_PASSWORD,
    ERROR_TEXTS,
    HAS_WHITESPACE,
    INVALID_PASSWORD,
    INVALID_USERNAME,
    IS_AWAY,
    NEW_MISMATCH,
    PASSWORD_CHANGED,
    error_text,
)

WELCOME = "Welcome to chatproto!"
INVALID_COMMAND = "Error. Invalid command!"
LOG_IN_FIRST = "Please log in first"
NO_MESSAGES = "No messages."
NO_MESSAGES_REPLY = "OK No messages."  # the whole line, as docs/PROTOCOL.md gives it
NO_MESSAGES_FOUND = "No messages found."  # /search
NO_GROUPS = "No groups."
NO_OTHER_ACTIVE_USER = "no other active user"
NO_OTHER_ACTIVE_USER_REPLY = "OK no other active user"  # the whole line, as docs/PROTOCOL.md gives it
SHUTDOWN_NOTICE = "Server shutting down"
DROPPED_NOTICE = "Disconnected: too much output waiting unread"
LOGIN_DEADLINE_NOTICE = "Disconnected: no login within 30 seconds"
TOO_MANY_LINES_NOTICE = "Disconnected: too many lines without a login"

# One person, several devices (docs/PROTOCOL.md, "Several sessions"); the away texts are shared
NO_UNREAD = "No unread messages."

# Administrators' commands (docs/OPERATING.md)
KICKED = "{name} has been disconnected."
BANNED = "{name} is banned until {until}."
BANNED_FOREVER = "{name} is banned until the ban is lifted (/unban {name})."
UNBANNED = "{name} is no longer banned."
ANNOUNCED = "Announcement sent to {n} active users."


def message_text(message: Message) -> str:
    """How a delivered message reads: C{TIMESTAMP, SENDER: TEXT} or C{TIMESTAMP, GROUP, SENDER: TEXT}."""
    if message.kind == PRIVATE:
        return f"{message.timestamp}, {message.sender}: {message.text}"
    return f"{message.timestamp}, {message.group}, {message.sender}: {message.text}"


def history_line(message: Message) -> str:
    return f"#{message.seq} {message_text(message)}"


def search_line(message: Message, username: str) -> str:
    """A result of /search for C{username}: C{NAME #SEQ TIMESTAMP, SENDER: MESSAGE}, NAME the
    other user of a private conversation or C{#GROUPNAME}."""
    if message.kind == PRIVATE:
        name = message.recipient if message.sender == username else message.sender
    else:
        name = "#" + message.group
    return f"{name} #{message.seq} {message.timestamp}, {message.sender}: {message.text}"


def event_line(event) -> str | None:
    """The whole server line (tag and text, no newline) for one event, or None for events not shown."""
    kind = type(event)
    if kind is Message:
        return "MSG " + message_text(event)
    if kind is Invited:
        return (f"NOTICE You have been invited to the group chat {event.group} by {event.by}. "
                f"Type /joingroup {event.group} to join.")
    if kind is MemberJoined:
        return f"NOTICE {event.username} has joined the group chat {event.group}."
    if kind is MemberLeft:
        return f"NOTICE {event.username} has left the group chat {event.group}."
    if kind is MessageDeleted:
        return f"NOTICE {event.by} deleted message {event.seq} in {event.group}."
    if kind is FileOffer:
        return (f"OFFER {event.transfer_id} {event.secret} {event.presenter} {event.presenter_ip} "
                f"{event.filename}")
    if kind is ServerNotice:
        return f"NOTICE {event.text}"
    if kind is Sent:  # sent from another session of this user
        message = event.message
        to = message.recipient if message.kind == PRIVATE else "#" + message.group
        return f"SENT {message.timestamp}, to {to}: {message.text}"
    if kind is ReadMarker:  # read on another session of this user
        return f"READ {event.conversation} {event.seq}"
    if kind is AwayChanged:  # the line protocol hears of its own user's only (another session)
        return away_notice(event.text) if event.text else f"NOTICE {AWAY_CLEARED}"
    return None


def away_notice(text: str) -> str:
    """C{NOTICE You are marked as away: TEXT}: away set on another session, or at login while away."""
    return f"NOTICE {AWAY_SET[:-1]}: {text}"
