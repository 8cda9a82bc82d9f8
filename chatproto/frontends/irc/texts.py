"""
The core's error codes as IRC numerics, with the line protocol's words
(docs/PROTOCOL.md) in the trailing parameter.
"""

from ...core import errors as codes
from ...core.errors import ChatError
from ...texts import ERROR_TEXTS
from ...texts import error_text as shared_error_text

LOGIN_CODES = (codes.BLOCKED, codes.NO_SUCH_ACCOUNT, codes.WRONG_PASSWORD, codes.BLOCKED_NOW,
               codes.ALREADY_LOGGED_IN, codes.SERVER_ERROR, codes.LOGIN_NOT_RECORDED, codes.LOGIN_BUSY)
LOGIN_TEXTS = {code: ERROR_TEXTS[code] for code in LOGIN_CODES}
# After these the connection is closed with ERROR.
LOGIN_FATAL = {codes.BLOCKED, codes.BLOCKED_NOW}

# Numerics (Twisted's irc module names most of them; these are the ones used here).
RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_AWAY = "301"
RPL_USERHOST = "302"
RPL_ISON = "303"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_ENDOFWHO = "315"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_WHOISACCOUNT = "330"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_INVITING = "341"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_ENDOFBANLIST = "368"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_CANNOTSENDTOCHAN = "404"
ERR_TOOMANYCHANNELS = "405"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_USERONCHANNEL = "443"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTRED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_INVITEONLYCHAN = "473"
ERR_CHANOPRIVSNEEDED = "482"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"
RPL_LOGGEDIN = "900"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"

SERVER_ERROR = "Server error: please try again"


def error_text(code: str, failure_value, **_fields) -> str:
    """The line protocol's text for a core error (docs/PROTOCOL.md), or a server error."""
    if not isinstance(failure_value, ChatError):
        return SERVER_ERROR
    return shared_error_text(failure_value)


def error_code(failure_value) -> str | None:
    """The core's error code of a failure, or None for anything else (a bug)."""
    return failure_value.code if isinstance(failure_value, ChatError) else None


def not_member_text(group: str) -> str:
    """The line protocol's words for a group the user is not in."""
    return shared_error_text(ChatError(codes.NOT_MEMBER, name=group))
