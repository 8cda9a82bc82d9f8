"""
The client's commands: the server's, in docs/PROTOCOL.md's order (the pipe-mode
prompt lists exactly these), and the terminal's own, with the few words
C{/help} says about each.
"""

#: The server commands, as the pipe-mode prompt lists them (docs/CLIENT.md).
COMMANDS = ["/msgto", "/activeuser", "/creategroup", "/joingroup", "/groupmsg", "/p2pvideo",
            "/leavegroup", "/changepassword", "/deletemsg", "/deletegroupmsg", "/createbroadcast",
            "/history", "/grouphistory", "/help", "/logout"]
COMMAND_PROMPT = f"Enter one of the following commands ({', '.join(COMMANDS)}): "

#: Server commands the client uses but does not list in the pipe-mode prompt,
#: and the answers to file offers (chatproto.client.files).
EXTRA_SERVER_COMMANDS = ["/users", "/groups", "/members", "/search", "/accept", "/reject"]

#: Commands the terminal client handles itself.
CLIENT_COMMANDS = ["/chat", "/query", "/win", "/window", "/close", "/clear", "/quit"]

#: Every command with its form and what it does, for the terminal's /help. In a
#: conversation, the name in brackets may be left out: it is the conversation's.
HELP = [
    ("/chat [NAME]", "open a conversation with a user or a group (alone: list the open ones)"),
    ("/query NAME", "the same as /chat NAME"),
    ("/win N", "switch to conversation N (also /window N, Alt-1..9; 1 shows everything)"),
    ("/close", "close the current conversation"),
    ("/clear", "empty the current window"),
    ("/msgto USERNAME MESSAGE", "private message to an active user"),
    ("/activeuser", "the other active users"),
    ("/users", "every account, active or not"),
    ("/creategroup GROUPNAME USERNAME [USERNAME ...]", "create a group and invite users"),
    ("/createbroadcast GROUPNAME USERNAME [USERNAME ...]", "a group in which only you can send"),
    ("/joingroup GROUPNAME", "accept an invitation to a group"),
    ("/groupmsg GROUPNAME MESSAGE", "message a group"),
    ("/leavegroup GROUPNAME", "leave a group (or decline its invitation)"),
    ("/groups", "the groups you are in"),
    ("/members [GROUPNAME]", "who is in a group, and who is active"),
    ("/history [USERNAME] [N]", "the last N messages with a user (#SEQ shown)"),
    ("/grouphistory [GROUPNAME] [N]", "the last N messages of a group (#SEQ shown)"),
    ("/search [in NAME] TEXT", "find messages with these words (or words they begin), newest first"),
    ("/deletemsg SEQ", "delete your private message #SEQ"),
    ("/deletegroupmsg GROUPNAME SEQ", "delete your group message #SEQ"),
    ("/p2pvideo USERNAME FILENAME", "send a file straight to a user"),
    ("/accept [N], /reject [N]", "take or refuse file offer N (with --accept-files ask)"),
    ("/changepassword", "change your password (asked for, never shown)"),
    ("/help", "this list"),
    ("/logout", "log out and leave (also /quit, Ctrl-C, Ctrl-D)"),
]

#: What the terminal completes in the first word.
TERMINAL_COMMANDS = sorted(set(COMMANDS + EXTRA_SERVER_COMMANDS + CLIENT_COMMANDS))

#: Shown once after login on a terminal, instead of the long prompt before every input.
COMMAND_LIST = ("Commands: " + " ".join(c for c in TERMINAL_COMMANDS)
                + " (/help says what each does; plain text goes to the open conversation)")
