"""
The IRC front end's connection and registration commands: CAP (capability
negotiation), PASS, NICK, USER and AUTHENTICATE (SASL PLAIN) up to the login
and the welcome burst; PING, PONG, QUIT; and what a registered client asks of
the server itself (MOTD, VERSION, TIME, LUSERS) or may not change (NICK,
USER, PASS, AUTHENTICATE again).

Before registration only the C{pre_*} handlers and those of both tables
exist (L{commands}). Handlers take the connection (L{IRCProtocol}), the
command's parameters and tags, once the table has checked their number;
functions a Deferred calls take its result first, then the connection
(Twisted's callbackArgs).
"""

import base64
import binascii

from twisted.internet import defer
from twisted.logger import Logger

from ...core.realm import single_line
from . import caps as C
from . import channels
from . import texts as T
from . import users
from .rendering import HOST, SERVER_NAME, VERSION, prefix_of
from .wire import server_time

log = Logger()

SASL_CHUNK = 400
MAX_SASL = 4 * SASL_CHUNK


# Capabilities (CAP LS/LIST/REQ/END), before and after registration

def irc_CAP(irc, params, tags):
    sub = params[0].upper()
    target = irc.nick or "*"
    if sub == "LS":
        if not irc.registered:
            irc.cap_negotiating = True
        version = params[1] if len(params) > 1 else ""
        irc.cap_version = max(irc.cap_version, int(version) if version.isdigit() else 0)
        irc.send("CAP", target, "LS", " ".join(C.ls_items(irc.cap_version)))
    elif sub == "LIST":
        irc.send("CAP", target, "LIST", " ".join(sorted(irc.caps)))
    elif sub == "REQ":
        if not irc.registered:
            irc.cap_negotiating = True
        text = params[1] if len(params) > 1 else ""
        request = C.parse_request(text)
        if request is None:
            irc.send("CAP", target, "NAK", text)
        else:
            enable, disable = request
            irc.caps = irc.factory.caps_set((irc.caps | enable) - disable)
            irc.caps_changed()
            irc.send("CAP", target, "ACK", text.strip())
    elif sub == "END":
        if not irc.registered:
            irc.cap_negotiating = False
            return try_register(irc)
    else:
        irc.numeric("410", params[0], "Invalid CAP command")
    return None


# Registration: PASS, NICK, USER, AUTHENTICATE (SASL PLAIN), then the login

def pre_PASS(irc, params, tags):
    irc.password = params[0]


def pre_NICK(irc, params, tags):
    if not params or not params[0]:
        irc.numeric(T.ERR_NONICKNAMEGIVEN, "No nickname given")
        return None
    # Echoed in every reply before registration: cleaned as message text is,
    # and still one parameter (no space).
    irc.nick = single_line(params[0]).replace(" ", "_")
    return try_register(irc)


def pre_USER(irc, params, tags):
    irc.user_seen = True
    return try_register(irc)


def pre_AUTHENTICATE(irc, params, tags):
    if irc.user is not None:
        irc.numeric(T.ERR_SASLALREADY, "You have already authenticated using SASL")
        return None
    arg = params[0]
    if arg == "*":
        if irc.sasl is not None:
            irc.sasl = None
            irc.numeric(T.ERR_SASLABORTED, "SASL authentication aborted")
        else:
            irc.numeric(T.ERR_SASLFAIL, "SASL authentication failed")
        return None
    if irc.sasl is None:
        if arg.upper() != "PLAIN":
            irc.numeric(T.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
            irc.numeric(T.ERR_SASLFAIL, "SASL authentication failed")
            return None
        irc.sasl = ""
        irc.send("AUTHENTICATE", "+", prefix=None)
        return None
    if len(arg) > SASL_CHUNK:
        irc.sasl = None
        irc.numeric(T.ERR_SASLTOOLONG, "SASL message too long")
        return None
    if arg != "+":
        irc.sasl += arg
    if len(irc.sasl) > MAX_SASL:
        irc.sasl = None
        irc.numeric(T.ERR_SASLTOOLONG, "SASL message too long")
        return None
    if len(arg) == SASL_CHUNK:
        return None  # more to come
    payload, irc.sasl = irc.sasl, None
    try:
        fields = base64.b64decode(payload, validate=True).decode("utf-8").split("\0")
    except (binascii.Error, ValueError):
        fields = []
    if len(fields) != 3 or not fields[1] or (fields[0] and fields[0] != fields[1]):
        irc.numeric(T.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN message")
        return None
    _, username, password = fields
    return login(irc, username, password, sasl=True)


def login(irc, username: str, password: str, sasl: bool):
    d = defer.maybeDeferred(irc.chat.login, username, password, irc)
    d.addCallbacks(logged_in, login_failed, callbackArgs=(irc, sasl), errbackArgs=(irc, sasl))
    return d


def logged_in(user, irc, sasl):
    if irc._closed:
        irc.chat.logout(user)
        return None
    irc.user = user
    if sasl:
        nick = irc.nick or user.name
        irc.numeric(T.RPL_LOGGEDIN, f"{nick}!{user.name}@{HOST}", user.name,
                    f"You are now logged in as {user.name}")
        irc.numeric(T.RPL_SASLSUCCESS, "SASL authentication successful")
        return None
    return welcome(irc)


def login_failed(failure, irc, sasl):
    code = T.error_code(failure.value)
    if code not in T.LOGIN_TEXTS:
        log.failure("IRC login", failure)
        code = "server-error"
    text = T.LOGIN_TEXTS[code]
    if sasl:
        irc.numeric(T.ERR_SASLFAIL, text)
        if code in T.LOGIN_FATAL:
            irc.close(text)
    else:
        irc.numeric(T.ERR_PASSWDMISMATCH, text)
        irc.close(text)


def try_register(irc):
    if irc.registered or irc.cap_negotiating or irc.nick is None or not irc.user_seen:
        return None
    if irc.user is not None:
        return welcome(irc)
    if irc.password is None:
        text = "Password required: use PASS PASSWORD (or PASS USERNAME:PASSWORD) or SASL PLAIN"
        irc.numeric(T.ERR_PASSWDMISMATCH, text)
        irc.close(text)
        return None
    whole, irc.password = irc.password, None  # not kept once used
    name, colon, password = whole.partition(":")
    if not (colon and name):
        return login(irc, irc.nick, whole, sasl=False)
    if name == irc.nick:
        return login(irc, name, password, sasl=False)
    # PASS USERNAME:PASSWORD, unless the nick is an account whose password has a colon.
    d = defer.maybeDeferred(irc.chat.account_names)

    def choose(names):
        if irc.nick in names:
            return login(irc, irc.nick, whole, sasl=False)
        return login(irc, name, password, sasl=False)

    return d.addCallback(choose)


def welcome(irc):
    irc.registered = True
    irc._fast = True
    name = irc.user.name
    if irc.nick != name and irc.nick is not None:
        irc.send("NICK", name, prefix=prefix_of(irc.nick))
    irc.nick = name
    irc.factory.registered(irc)
    irc.write(irc.factory.welcome_burst(name))  # 001 to 005 and 422, formatted once
    away = irc.factory.away_of(name)
    if away:  # the user is away (set on another session, kept across logins): so is this session
        users.away_numeric(away, irc)  # 306, which irssi and weechat show in their status bar
    try:
        groups = irc.chat.groups_of(name)
    except Exception:  # noqa: BLE001 - answered as a failed command (dispatch)
        groups = defer.fail()
    if isinstance(groups, defer.Deferred):
        return groups.addCallback(show_joined_groups, irc).addBoth(ready, irc)
    try:
        shown = show_joined_groups(groups, irc)
    except Exception:  # noqa: BLE001
        shown = defer.fail()
    if shown is None:  # in no group, the usual case: ready at once, no Deferred
        ready(None, irc)
        return None
    return shown.addBoth(ready, irc)


def show_joined_groups(groups, irc):
    """The joined groups' bursts and the invitations waiting: a Deferred, or None if nothing waits."""
    if not groups:
        return None
    mine = [info for info in groups if dict(info.members).get(irc.nick)]
    for info in groups:
        if not dict(info.members).get(irc.nick, True):
            # Invited while away: shown as the invitation it is.
            irc.send("INVITE", irc.nick, "#" + info.name, prefix=prefix_of(info.owner))
    if not mine:
        return None
    d = defer.succeed(None)
    for info in mine:
        d.addCallback(lambda _, info=info: channels.join_burst(info, irc))
    return d


def ready(result, irc):
    """Registered and the joined channels shown: the events held meanwhile go out, then every one at once."""
    irc.ready = True
    pending, irc._pending_events = irc._pending_events, None
    for event in pending or ():
        irc.receive(event)
    return result


# After registration: what cannot change, and what the server tells about itself

def irc_NICK(irc, params, tags):
    if params and params[0] != irc.nick:
        irc.numeric(T.ERR_ERRONEUSNICKNAME, params[0],
                    "Your nick is your username; it cannot be changed")


def irc_USER(irc, params, tags):
    irc.numeric(T.ERR_ALREADYREGISTRED, "You may not reregister")


def irc_AUTHENTICATE(irc, params, tags):
    irc.numeric(T.ERR_SASLALREADY, "You have already authenticated")


def irc_MOTD(irc, params, tags):
    irc.numeric(T.ERR_NOMOTD, "MOTD File is missing")


def irc_VERSION(irc, params, tags):
    irc.numeric("351", VERSION, SERVER_NAME, "chatproto's IRC front end")
    irc.numeric(T.RPL_ISUPPORT, *irc.factory.isupport, "are supported by this server")


def irc_TIME(irc, params, tags):
    irc.numeric("391", SERVER_NAME, server_time(irc.clock.seconds()))


def irc_LUSERS(irc, params, tags):
    def lusers(users):
        irc.numeric("251", f"There are {len(users)} users and 0 invisible on 1 servers")
        irc.numeric("255", f"I have {len(users)} clients and 0 servers")

    return defer.maybeDeferred(irc.chat.active_users).addCallback(lusers)


# Either side of registration

def irc_PING(irc, params, tags):
    irc.send("PONG", SERVER_NAME, params[0] if params else "")


def irc_PONG(irc, params, tags):
    return None


def irc_QUIT(irc, params, tags):
    reason = params[0] if params else ""
    irc.close(f"Quit: {reason}" if reason else "Quit")

