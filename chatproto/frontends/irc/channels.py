"""
The IRC front end's channel commands: JOIN, PART, NAMES, TOPIC, MODE, LIST,
INVITE, KICK, and what a connection knows of the groups it has joined
(L{Channel}). Channels C{#G} are the core's groups C{G}.

Handlers take the connection (L{IRCProtocol}), the command's parameters and
tags, as the command table (L{commands}) calls them, once it has checked
their number; functions a Deferred calls take its result first, then the
connection (Twisted's callbackArgs).
"""

from types import MappingProxyType

from twisted.internet import defer

from ...core import errors as codes
from . import caps as C
from . import history
from . import texts as T
from .rendering import TAG_TIME, core_error, modes_of, prefix_of, topic_of

PLAYBACK = 20  # messages of each joined group shown on (re)join to clients without chathistory

NO_CHANNELS = MappingProxyType({})  # the channels of a connection that has joined none (read-only)


class Channel:
    """What this connection knows of a group it has joined."""

    __slots__ = ("broadcast", "members", "name", "owner")

    def __init__(self, info):
        self.name = info.name
        self.owner = info.owner
        self.broadcast = bool(info.broadcast)
        self.members = {name: joined for name, joined in info.members}

    @property
    def channel(self) -> str:
        return "#" + self.name

    def joined(self, name: str) -> bool:
        return self.members.get(name, False)


def one_by_one(irc, channels: str, one):
    """C{one(irc, channel)} for each of the comma-separated C{channels}, each once the last is done."""
    d = defer.succeed(None)
    for channel in channels.split(","):
        if channel:
            d.addCallback(lambda _, channel=channel: one(irc, channel))
    return d


# JOIN

def irc_JOIN(irc, params, tags):
    return one_by_one(irc, params[0], join_one)


def join_one(irc, channel: str):
    if not channel.startswith("#") or len(channel) == 1:
        irc.numeric(T.ERR_NOSUCHCHANNEL, channel, "No such channel: a group is #GROUPNAME")
        return None
    group = channel[1:]
    d = defer.maybeDeferred(irc.chat.join_group, irc.user, group)
    d.addCallbacks(join_burst, join_failed, callbackArgs=(irc,), errbackArgs=(irc, channel, group))
    return d


def join_failed(failure, irc, channel, group):
    code = T.error_code(failure.value)
    if code == "no-such-group":
        d = defer.maybeDeferred(irc.factory.create_group, irc.user, group)
        answers = {
            "bad-group-name": (T.ERR_NOSUCHCHANNEL, (channel,)),
            "group-exists": (T.ERR_NOSUCHCHANNEL, (channel,)),
            codes.TOO_MANY_GROUPS: (T.ERR_TOOMANYCHANNELS, (channel,)),
            codes.GROUPS_TOO_FAST: (T.ERR_TOOMANYCHANNELS, (channel,)),
        }
        d.addCallbacks(join_burst, core_error, callbackArgs=(irc,), errbackArgs=(irc, answers),
                       errbackKeywords={"group": group})
        return d
    if code == "already-joined":
        if group.lower() in irc.channels:
            return None
        d = defer.maybeDeferred(irc.chat.group_info, group)
        d.addCallback(join_burst_if_any, irc)
        return d
    if code == "bad-group-name":
        irc.numeric(T.ERR_NOSUCHCHANNEL, channel, T.error_text(code, failure.value, group=group))
        return None
    if code == "not-invited":
        irc.numeric(T.ERR_INVITEONLYCHAN, channel, T.error_text(code, failure.value, group=group))
        return None
    return core_error(failure, irc, {}, group=group)


def join_burst(info, irc):
    """What a client sees on joining the group C{info}: JOIN, topic, names, marker, playback."""
    channel = Channel(info)
    channel.members[irc.nick] = True
    if irc.channels is NO_CHANNELS:
        irc.channels = {}
    irc.channels[info.name.lower()] = channel
    irc.send("JOIN", channel.channel, prefix=prefix_of(irc.nick))
    irc.numeric(T.RPL_TOPIC, channel.channel, topic_of(info))
    d = show_names(irc, info)
    if C.READ_MARKER in irc.caps:  # the client learns where it read up to, on any device
        d.addCallback(history.send_marker, irc, channel.channel)
    if C.CHATHISTORY not in irc.caps:
        d.addCallback(lambda _: playback(irc, info))
    return d


def join_burst_if_any(info, irc):
    """L{join_burst} of a group that may be gone meanwhile (C{info} None)."""
    return join_burst(info, irc) if info is not None else None


def playback(irc, info):
    """The last messages of a group, for clients that cannot ask for them (no chathistory)."""
    d = defer.maybeDeferred(irc.chat.group_history, irc.user, info.name, PLAYBACK)
    d.addCallback(history.send_history, irc, "#" + info.name, not (irc.tag_flags & TAG_TIME))
    d.addErrback(lambda f: None if T.error_code(f.value) else f)
    return d


# NAMES

def show_names(irc, info) -> defer.Deferred:
    d = defer.maybeDeferred(irc.chat.active_users)
    d.addCallback(send_names, irc, info)
    return d


def send_names(active, irc, info):
    active = {user.name for user in active}
    names = []
    for name, joined in info.members:
        if joined and (name in active or name == irc.nick):
            names.append(("@" if info.broadcast and name == info.owner else "") + name)
    channel = "#" + info.name
    chunk, size = [], 0
    for name in names:
        if chunk and size + len(name) + 1 > 400:
            irc.numeric(T.RPL_NAMREPLY, "=", channel, " ".join(chunk))
            chunk, size = [], 0
        chunk.append(name)
        size += len(name) + 1
    if chunk:
        irc.numeric(T.RPL_NAMREPLY, "=", channel, " ".join(chunk))
    irc.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")


def irc_NAMES(irc, params, tags):
    if not params or not params[0]:
        irc.numeric(T.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
        return None
    channel = params[0].split(",")[0]
    if not channel.startswith("#"):
        irc.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")
        return None

    def names(info):
        # Members only (as /members): to anyone else a group has no names.
        if info is None or info.role(irc.nick) is None:
            irc.numeric(T.RPL_ENDOFNAMES, channel, "End of /NAMES list.")
            return None
        return show_names(irc, info)

    d = defer.maybeDeferred(irc.chat.group_info, channel[1:])
    d.addCallback(names)
    return d


# PART

def irc_PART(irc, params, tags):
    return one_by_one(irc, params[0], part_one)


def part_one(irc, channel: str):
    group = channel[1:] if channel.startswith("#") else channel
    d = defer.maybeDeferred(irc.chat.leave_group, irc.user, group)
    answers = {
        "no-such-group": (T.ERR_NOSUCHCHANNEL, (channel,)),
        "not-member": (T.ERR_NOTONCHANNEL, (channel,)),
    }

    def left(info):
        known = irc.channels.pop(group.lower(), None) if irc.channels else None
        name = info.name if info is not None else (known.name if known else group)
        irc.send("PART", "#" + name, f"You have left the group chat {name}.",
                 prefix=prefix_of(irc.nick))

    d.addCallbacks(left, core_error, errbackArgs=(irc, answers), errbackKeywords={"group": group})
    return d


# INVITE, TOPIC, MODE, LIST, KICK

def irc_INVITE(irc, params, tags):
    name, channel = params[0], params[1]
    group = channel[1:] if channel.startswith("#") else channel
    d = defer.maybeDeferred(irc.chat.invite, irc.user, group, name)
    answers = {
        "no-such-group": (T.ERR_NOSUCHCHANNEL, (channel,)),
        "not-member": (T.ERR_NOTONCHANNEL, (channel,)),
        "not-joined": (T.ERR_NOTONCHANNEL, (channel,)),
        "no-such-user": (T.ERR_NOSUCHNICK, (name,)),
        "not-active": (T.ERR_NOSUCHNICK, (name,)),
        "already-member": (T.ERR_USERONCHANNEL, (name, channel)),
    }

    def invited(info):
        irc.numeric(T.RPL_INVITING, name, "#" + (info.name if info is not None else group))

    d.addCallbacks(invited, core_error, errbackArgs=(irc, answers),
                   errbackKeywords={"group": group, "name": name})
    return d


def group_or_403(irc, channel: str, then):
    """
    Call C{then(info)} with the group of C{channel}, or answer 403; 442
    to a non-member, as the line protocol's C{/members} answers: a group
    shows itself (owner, kind, members) only to its members.
    """
    if not channel.startswith("#"):
        irc.numeric(T.ERR_NOSUCHCHANNEL, channel, "No such channel")
        return None
    d = defer.maybeDeferred(irc.chat.group_info, channel[1:])

    def found(info):
        if info is None:
            irc.numeric(T.ERR_NOSUCHCHANNEL, channel, "The group chat does not exist.")
            return None
        if info.role(irc.nick) is None:
            irc.numeric(T.ERR_NOTONCHANNEL, channel, T.not_member_text(info.name))
            return None
        return then(info)

    return d.addCallback(found)


def irc_TOPIC(irc, params, tags):
    channel = params[0]

    def topic(info):
        if len(params) > 1:
            irc.numeric(T.ERR_CHANOPRIVSNEEDED, "#" + info.name, "Topics cannot be changed on chatproto")
        else:
            irc.numeric(T.RPL_TOPIC, "#" + info.name, topic_of(info))

    return group_or_403(irc, channel, topic)


def irc_MODE(irc, params, tags):
    target = params[0]
    if not target.startswith("#"):
        if target != irc.nick:
            irc.numeric(T.ERR_USERSDONTMATCH, "Cannot change mode for other users")
        elif len(params) == 1:
            irc.numeric(T.RPL_UMODEIS, "+")
        return None  # user modes: none to set, a request is simply ignored

    def mode(info):
        channel = "#" + info.name
        if len(params) == 1:
            irc.numeric(T.RPL_CHANNELMODEIS, channel, modes_of(info))
        elif params[1].lstrip("+") in ("b", "e", "I") and len(params) == 2:
            end = {"b": (T.RPL_ENDOFBANLIST, "End of channel ban list"),
                   "e": ("349", "End of channel exception list"),
                   "I": ("347", "End of channel invite list")}[params[1].lstrip("+")]
            irc.numeric(end[0], channel, end[1])
        else:
            irc.numeric(T.ERR_CHANOPRIVSNEEDED, channel, "Channel modes cannot be changed on chatproto")

    return group_or_403(irc, target, mode)


def irc_LIST(irc, params, tags):
    d = defer.maybeDeferred(irc.chat.groups_of, irc.nick)
    active = defer.maybeDeferred(irc.chat.active_users)

    def listed(results):
        groups, users = results
        names = {user.name for user in users}
        irc.numeric(T.RPL_LISTSTART, "Channel", "Users  Name")
        for info in groups:
            count = sum(1 for name, joined in info.members if joined and name in names)
            irc.numeric(T.RPL_LIST, "#" + info.name, str(count), topic_of(info))
        irc.numeric(T.RPL_LISTEND, "End of /LIST")

    return defer.gatherResults([d, active], consumeErrors=True).addCallback(listed)


def irc_KICK(irc, params, tags):
    channel = params[0] if params else "*"
    irc.numeric(T.ERR_CHANOPRIVSNEEDED, channel, "Members cannot be removed from a group on chatproto")
