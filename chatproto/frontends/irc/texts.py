"""
The core's error codes as IRC numerics, with SPEC.md's texts (sections 2,
3, 6, 7) in the trailing parameter.
"""

LOGIN_TEXTS = {
    "blocked": "Your account is blocked due to multiple login failures. Please try again later",
    "no-such-account": "Invalid Username. Please try again",
    "wrong-password": "Invalid Password. Please try again",
    "blocked-now": "Invalid Password. Your account has been blocked. Please try again later",
    "already-logged-in": "This account is already logged in",
    "server-error": "Server error",
}
# After these the connection is closed with ERROR.
LOGIN_FATAL = {"blocked", "blocked-now"}

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


def error_text(code: str, failure_value, name: str = "", group: str = "") -> str:
    """SPEC.md's text for a core error code (the failure's own text for codes not listed)."""
    texts = {
        "to-self": "You cannot send a message to yourself",
        "no-such-user": f"No such user: {name}",
        "not-active": f"{name} is not active",
        "not-saved": "The message could not be saved; it was not sent",
        "bad-group-name": "Group name must be 1-32 letters and digits",
        "group-exists": f"A group chat (Name: {group}) already exists",
        "no-other-member": "Please enter at least one more active user.",
        "not-invited": f"You are not a member of the group chat {group}.",
        "already-joined": f"You have already joined the group chat {group}.",
        "no-such-group": "The group chat does not exist.",
        "not-member": "You are not in this group chat.",
        "not-joined": "Please join the group before sending messages.",
        "history-not-joined": "Please join the group before reading its history.",
        "broadcast-owner-only": "Only the owner can send messages to this broadcast group.",
        "already-member": f"{name} is already a member of the group chat {group}.",
        "cannot-receive-files": f"{name} cannot receive files",
    }
    text = texts.get(code)
    if text is None:
        text = getattr(failure_value, "text", None) or SERVER_ERROR
    return text


def error_code(failure_value) -> str | None:
    return getattr(failure_value, "code", None)
