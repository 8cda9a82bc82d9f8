"""
The core's events as IRC lines: one renderer per event type, found by the
event's class in L{HANDLERS} (the session's C{receive} looks it up); a type
without one is not shown on IRC. A Message is rendered by the factory once
for all its receivers (the protocol's C{receive} takes that path itself).

Each renderer takes the connection (L{IRCProtocol}) and the event.
"""

from twisted.internet import defer

from ...core import events as E
from . import caps as C
from . import channels
from . import history
from . import users
from .rendering import prefix_of


def event_Message(irc, message):
    irc.write(irc.factory.render_message(message, irc.tag_flags))


def event_Sent(irc, event):
    # What another session of this user sent: the message itself, as ergo does, with or
    # without echo-message (that cap is about this session's own sends).
    irc.write(irc.factory.render_message(event.message, irc.tag_flags))


def event_ReadMarker(irc, event):
    # Read on another session of this user (draft/read-marker): this client clears it too.
    if C.READ_MARKER in irc.caps:
        history.markread_line(irc, event.conversation, event)


def event_Invited(irc, event):
    irc.send("INVITE", irc.nick, "#" + event.group, prefix=prefix_of(event.by))


def event_MemberJoined(irc, event):
    if event.username == irc.nick:  # joined from another session of this user: here too
        if event.group.lower() not in irc.channels:
            d = defer.maybeDeferred(irc.chat.group_info, event.group)
            d.addCallback(channels.join_burst_if_any, irc)
        return
    channel = irc.channels.get(event.group.lower())
    if channel is None:
        return
    channel.members[event.username] = True
    irc.send("JOIN", channel.channel, prefix=prefix_of(event.username))


def event_MemberLeft(irc, event):
    channel = irc.channels.get(event.group.lower())
    if channel is not None and event.username == irc.nick:  # left from another session
        del irc.channels[event.group.lower()]
        irc.send("PART", channel.channel, f"You have left the group chat {channel.name}.",
                 prefix=prefix_of(irc.nick))
        return
    if channel is None or event.username == irc.nick:
        return
    channel.members.pop(event.username, None)
    irc.send("PART", channel.channel, f"{event.username} has left the group chat {channel.name}.",
             prefix=prefix_of(event.username))


def event_MessageDeleted(irc, event):
    irc.send("NOTICE", "#" + event.group, f"{event.by} deleted message {event.seq} in {event.group}.")


def event_UserOnline(irc, event):
    name = event.username
    if name == irc.nick:
        return
    for channel in irc.channels.values():
        if channel.joined(name):
            irc.send("JOIN", channel.channel, prefix=prefix_of(name))


def event_UserOffline(irc, event):
    name = event.username
    if name != irc.nick and any(c.joined(name) for c in irc.channels.values()):
        irc.send("QUIT", "Logged out", prefix=prefix_of(name))


def event_ServerNotice(irc, event):
    irc.notice(event.text)


def event_AwayChanged(irc, event):
    if event.username == irc.nick:  # set or cleared from another session of this user
        users.away_numeric(event.text, irc)
    else:
        away_changed(irc, event.username, event.text)


def away_changed(irc, name: str, text: str | None) -> None:
    """Another IRC user went away or came back (away-notify)."""
    if C.AWAY_NOTIFY in irc.caps and any(c.joined(name) for c in irc.channels.values()):
        if text:
            irc.send("AWAY", text, prefix=prefix_of(name))
        else:
            irc.send("AWAY", prefix=prefix_of(name))



HANDLERS = {
    E.Message: event_Message,
    E.Sent: event_Sent,
    E.ReadMarker: event_ReadMarker,
    E.Invited: event_Invited,
    E.MemberJoined: event_MemberJoined,
    E.MemberLeft: event_MemberLeft,
    E.MessageDeleted: event_MessageDeleted,
    E.UserOnline: event_UserOnline,
    E.UserOffline: event_UserOffline,
    E.ServerNotice: event_ServerNotice,
    E.AwayChanged: event_AwayChanged,
}
