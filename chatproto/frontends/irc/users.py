"""
The IRC front end's user commands: PRIVMSG (the hot path, also taken
straight from the protocol's input loop), NOTICE, TAGMSG, WHO, WHOIS, ISON,
USERHOST, AWAY, WHOWAS, and an administrator's KILL.

Handlers take the connection (L{IRCProtocol}), the command's parameters and
tags, as the command table (L{commands}) calls them, once it has checked
their number; functions a Deferred calls take its result first, then the
connection (Twisted's callbackArgs).
"""

from twisted.internet import defer
from twisted.python.failure import Failure

from ...core import errors as codes
from ...core.realm import single_line
from . import texts as T
from .rendering import HOST, SERVER_NAME, core_error, need_more_params

AWAYLEN = 300  # characters of an away text (ISUPPORT AWAYLEN)

GROUP_SEND_ERRORS = {
    codes.NO_SUCH_GROUP: T.ERR_NOSUCHCHANNEL,
    codes.NOT_MEMBER: T.ERR_NOTONCHANNEL,
    codes.NOT_JOINED: T.ERR_CANNOTSENDTOCHAN,
    codes.BROADCAST_OWNER_ONLY: T.ERR_CANNOTSENDTOCHAN,
}
PRIVATE_SEND_ERRORS = {codes.NO_SUCH_USER: T.ERR_NOSUCHNICK, codes.NOT_ACTIVE: T.ERR_NOSUCHNICK}
# KILL and NOTICE $* (administrators): 481 ERR_NOPRIVILEGES for everyone else.
ADMIN_ERRORS = {codes.NO_SUCH_USER: T.ERR_NOSUCHNICK, codes.NOT_ACTIVE: T.ERR_NOSUCHNICK,
                codes.NOT_ADMIN: ("481", ())}


# Messages

def irc_PRIVMSG(irc, params, tags):
    if not params or not params[0]:
        irc.numeric(T.ERR_NORECIPIENT, "No recipient given (PRIVMSG)")
        return None
    if len(params) < 2 or not params[1]:
        irc.numeric(T.ERR_NOTEXTTOSEND, "No text to send")
        return None
    text = params[1]
    if text.startswith("\x01"):
        body = text.strip("\x01")
        if not body.upper().startswith("ACTION"):
            return None  # other CTCP requests: nobody here answers them
        text = "* " + body[len("ACTION"):].strip()
    # Messages do not hold up the next line (a client may pipeline many): the core
    # answers them in order, and their errors and echoes come out in that order.
    targets = [target for target in params[0].split(",") if target]
    if len(targets) > 1:
        # Each target is a message: counted against the command rate and the turn's
        # share (one line to 99 targets is 99 messages stored and delivered).
        if irc.rate is not None:
            irc.rate.charge(len(targets) - 1)
        irc._lines_this_turn += len(targets) - 1
    for target in targets:
        privmsg(irc, target, text)
    return None


def privmsg(irc, target: str, text: str):
    """One message from C{irc}'s user to C{target} (a nick or #group)."""
    if target[0] == "#":
        irc.frames_handled()  # the private messages before it first (PRIVMSG nick,#group :text too)
        d = irc.chat.send_group(irc.user, target[1:], text)
        if irc._echo:
            d.addCallbacks(sent, group_failed, callbackArgs=(irc,), errbackArgs=(irc, target))
        else:
            d.addErrback(group_failed, irc, target)  # no bound method per message
        return d
    # No Deferred per message: gathered with the others of this read and handed to the core
    # in one call (IRCProtocol.frames_handled), which answers the run's reply object (issue 25).
    irc.queue_private(target, text)
    return None


def group_failed(failure, irc, channel):
    core_error(failure, irc, GROUP_SEND_ERRORS, (channel,), group=channel[1:])


def sent(message, irc):
    """The echo (echo-message) of what C{irc}'s user sent, once stored."""
    if message is not None:
        irc.write(irc.factory.render_message(message, irc.tag_flags))


class PrivateRun:
    """
    The PRIVMSGs to users of one read (up to a line that is not one, a pause
    or the end of the connection's share of the turn), handed to the core in
    one call (L{ChatRealm.send_privates}): one call, one waiter and one
    callback for the run (issue 25). Once each is stored: C{301} when the
    user is away and the echo (echo-message); or the error numeric.
    """

    __slots__ = ("protocol", "messages")

    def __init__(self, protocol):
        self.protocol = protocol
        self.messages = []  # (nick, text), in the order of the lines

    def answered(self, i, message) -> None:
        protocol = self.protocol
        name = self.messages[i][0]
        if protocol._echo or protocol.chat.away_of(name):  # else nothing to say (the common case, inline)
            private_sent(protocol, name, message)

    def refused(self, i, error) -> None:
        private_refused(self.protocol, self.messages[i][0], error)

    def done(self) -> None:
        pass  # every answer was written as it came


def private_sent(protocol, name: str, message) -> None:
    """A PRIVMSG to C{name} is stored: 301 when they are away, and the echo (echo-message)."""
    # Away is looked up now that the message is durable, not when the PRIVMSG arrived (as the
    # line protocol and the page do): on a cluster node, an away set on another node just
    # before has been read from Redis by then (docs/CLUSTER.md, "Away").
    away = protocol.chat.away_of(name)
    if away:
        protocol.numeric(T.RPL_AWAY, name, away)
    if protocol._echo:
        sent(message, protocol)


def private_refused(protocol, name: str, error) -> None:
    core_error(Failure(error), protocol, PRIVATE_SEND_ERRORS, (name,), name=name)


def irc_NOTICE(irc, params, tags):
    if len(params) >= 2 and params[0] in ("$*", "$$*") and params[1].strip():
        # An administrator's announcement to everyone (docs/OPERATING.md: /announce).
        d = irc.chat.announce_by(irc.user, params[1])
        d.addErrback(core_error, irc, ADMIN_ERRORS, ())
        return d
    return None  # NOTICE never gets an automatic reply; chatproto has no place for them


def irc_TAGMSG(irc, params, tags):
    return None  # client-only tags (typing notifications): nothing to relay them to


# Who is there

def flags_of(irc, name: str) -> str:
    return "G" if irc.factory.away_of(name) else "H"


def irc_WHO(irc, params, tags):
    mask = params[0] if params else "*"
    d = defer.maybeDeferred(irc.chat.active_users)

    def who(users):
        active = {user.name for user in users}
        if mask.startswith("#"):
            return defer.maybeDeferred(irc.chat.group_info, mask[1:]).addCallback(who_channel, active)
        if mask in active:
            irc.numeric(T.RPL_WHOREPLY, "*", mask, HOST, SERVER_NAME, mask, flags_of(irc, mask),
                        f"0 {mask}")
        irc.numeric(T.RPL_ENDOFWHO, mask, "End of /WHO list.")
        return None

    def who_channel(info, active):
        if info is not None and info.role(irc.nick) is not None:  # members only, as /members
            for name, joined in info.members:
                if joined and name in active:
                    flags = flags_of(irc, name) + ("@" if info.broadcast and name == info.owner else "")
                    irc.numeric(T.RPL_WHOREPLY, "#" + info.name, name, HOST, SERVER_NAME, name, flags,
                                f"0 {name}")
        irc.numeric(T.RPL_ENDOFWHO, mask, "End of /WHO list.")

    return d.addCallback(who)


def irc_WHOIS(irc, params, tags):
    if not params:
        irc.numeric(T.ERR_NONICKNAMEGIVEN, "No nickname given")
        return None
    name = params[-1]
    active = defer.maybeDeferred(irc.chat.active_users)
    accounts = defer.maybeDeferred(irc.chat.account_names)
    groups = defer.maybeDeferred(irc.chat.groups_of, name)

    def whois(results):
        users, names, member_of = results
        if name not in {user.name for user in users}:
            text = f"{name} is not active" if name in names else f"No such user: {name}"
            irc.numeric(T.ERR_NOSUCHNICK, name, text)
            irc.numeric(T.RPL_ENDOFWHOIS, name, "End of /WHOIS list.")
            return
        irc.numeric(T.RPL_WHOISUSER, name, name, HOST, "*", name)
        # Only the groups the asker is in too: a group's members are its members' business.
        joined = [("@" if info.broadcast and info.owner == name else "") + "#" + info.name
                  for info in member_of if dict(info.members).get(name) and info.role(irc.nick)]
        if joined:
            irc.numeric(T.RPL_WHOISCHANNELS, name, " ".join(joined))
        irc.numeric(T.RPL_WHOISSERVER, name, SERVER_NAME, "chatproto")
        away = irc.factory.away_of(name)
        if away:
            irc.numeric(T.RPL_AWAY, name, away)
        irc.numeric(T.RPL_WHOISACCOUNT, name, name, "is logged in as")
        irc.numeric(T.RPL_ENDOFWHOIS, name, "End of /WHOIS list.")

    return defer.gatherResults([active, accounts, groups], consumeErrors=True).addCallback(whois)


def irc_ISON(irc, params, tags):
    wanted = " ".join(params).split()

    def ison(users):
        active = {user.name for user in users}
        irc.numeric(T.RPL_ISON, " ".join(name for name in wanted if name in active))

    return defer.maybeDeferred(irc.chat.active_users).addCallback(ison)


def irc_USERHOST(irc, params, tags):
    wanted = " ".join(params).split()[:5]

    def userhost(users):
        active = {user.name for user in users}
        replies = [f"{n}={'-' if irc.factory.away_of(n) else '+'}{n}@{HOST}"
                   for n in wanted if n in active]
        irc.numeric(T.RPL_USERHOST, " ".join(replies))

    return defer.maybeDeferred(irc.chat.active_users).addCallback(userhost)


def irc_WHOWAS(irc, params, tags):
    name = params[0] if params else "*"
    irc.numeric("406", name, "There was no such nickname")
    irc.numeric("369", name, "End of WHOWAS")


# Away

def irc_AWAY(irc, params, tags):
    # The user's, for all their sessions (the core keeps it): shown to others (301,
    # away-notify), cleaned as message text is, at most AWAYLEN characters.
    text = single_line(params[0])[:AWAYLEN].strip() if params and params[0] else None
    d = irc.chat.set_away(irc.user, text)
    d.addCallback(away_numeric, irc)
    return d


def away_numeric(text, irc) -> None:
    if text:
        irc.numeric(T.RPL_NOWAWAY, "You have been marked as being away")
    else:
        irc.numeric(T.RPL_UNAWAY, "You are no longer marked as being away")


# Administrators

def irc_KILL(irc, params, tags):
    """An administrator's /kick (docs/OPERATING.md): KILL NICK [REASON]."""
    name = params[0]
    if not name:  # "KILL :" has its one parameter, but no nick in it
        need_more_params(irc, "KILL")
        return None
    d = irc.chat.kick(irc.user, name, params[1] if len(params) > 1 else "")
    d.addCallbacks(lambda _: irc.notice(f"{name} has been disconnected."), core_error,
                   errbackArgs=(irc, ADMIN_ERRORS, (name,)))
    return d
