"""
The IRC front end's command table: each command's handler and the number of
parameters it needs, checked once, before the handler runs, as ergo's
C{Command{handler, minParams}} (irc/commands.go): too few get 461
ERR_NEEDMOREPARAMS and nothing else happens. A handler checks only what a
count cannot tell (an empty nick, a PRIVMSG without text, which have their
own numerics).

Two tables, as twisted.words has no chat handlers before login: before
registration only L{REGISTRATION} exists (any other command gets 451),
after it only L{COMMANDS} (an unknown command gets 421). The protocol's
C{dispatch} looks a command up with L{find}.
"""

from . import channels, history, registration, users
from . import texts as T
from .rendering import need_more_params


class Command:
    """A command's handler, called as C{handler(protocol, params, tags)}, and its minimum of parameters."""

    __slots__ = ("handler", "min_params")

    def __init__(self, handler, min_params: int = 0):
        self.handler = handler
        self.min_params = min_params


# Before registration.
REGISTRATION = {
    "CAP": Command(registration.irc_CAP, 1),
    "PASS": Command(registration.pre_PASS, 1),
    "NICK": Command(registration.pre_NICK),  # none: 431 ERR_NONICKNAMEGIVEN
    "USER": Command(registration.pre_USER, 4),
    "AUTHENTICATE": Command(registration.pre_AUTHENTICATE, 1),
    "PING": Command(registration.irc_PING),
    "PONG": Command(registration.irc_PONG),
    "QUIT": Command(registration.irc_QUIT),
}

# After registration.
COMMANDS = {
    # Connection and registration
    "CAP": Command(registration.irc_CAP, 1),
    "PING": Command(registration.irc_PING),
    "PONG": Command(registration.irc_PONG),
    "QUIT": Command(registration.irc_QUIT),
    "NICK": Command(registration.irc_NICK),
    "USER": Command(registration.irc_USER),
    "PASS": Command(registration.irc_USER),  # 462 as USER
    "AUTHENTICATE": Command(registration.irc_AUTHENTICATE),
    "MOTD": Command(registration.irc_MOTD),
    "VERSION": Command(registration.irc_VERSION),
    "TIME": Command(registration.irc_TIME),
    "LUSERS": Command(registration.irc_LUSERS),
    # Channels
    "JOIN": Command(channels.irc_JOIN, 1),
    "PART": Command(channels.irc_PART, 1),
    "NAMES": Command(channels.irc_NAMES),
    "TOPIC": Command(channels.irc_TOPIC, 1),
    "MODE": Command(channels.irc_MODE, 1),
    "LIST": Command(channels.irc_LIST),
    "INVITE": Command(channels.irc_INVITE, 2),
    "KICK": Command(channels.irc_KICK),  # 482 whatever its parameters
    # Users
    "PRIVMSG": Command(users.irc_PRIVMSG),  # none: 411 ERR_NORECIPIENT, 412 ERR_NOTEXTTOSEND
    "NOTICE": Command(users.irc_NOTICE),  # never answered
    "TAGMSG": Command(users.irc_TAGMSG),
    "WHO": Command(users.irc_WHO),
    "WHOIS": Command(users.irc_WHOIS),  # none: 431 ERR_NONICKNAMEGIVEN
    "WHOWAS": Command(users.irc_WHOWAS),
    "ISON": Command(users.irc_ISON),
    "USERHOST": Command(users.irc_USERHOST),
    "AWAY": Command(users.irc_AWAY),
    "KILL": Command(users.irc_KILL, 1),
    # History: answered with FAIL (IRCv3 standard replies), not numerics
    "CHATHISTORY": Command(history.irc_CHATHISTORY),
    "MARKREAD": Command(history.irc_MARKREAD),
    "SEARCH": Command(history.irc_SEARCH),
}


def find(protocol, command: str, params):
    """
    The handler of C{command} with C{params} for C{protocol} in its state, or
    None once the refusal is sent: 451 before registration, 421 unknown, 461
    too few parameters.
    """
    if not protocol.registered:
        entry = REGISTRATION.get(command)
        if entry is None:
            protocol.numeric(T.ERR_NOTREGISTERED, "You have not registered")
            return None
    else:
        entry = COMMANDS.get(command)
        if entry is None:
            protocol.numeric(T.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            return None
    if len(params) < entry.min_params:
        need_more_params(protocol, command)
        return None
    return entry.handler
