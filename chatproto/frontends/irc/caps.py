"""IRCv3 capabilities the IRC front end offers (CAP LS 302 / REQ / END)."""

SASL = "sasl"
SERVER_TIME = "server-time"
MESSAGE_TAGS = "message-tags"
ECHO_MESSAGE = "echo-message"
MULTI_PREFIX = "multi-prefix"
AWAY_NOTIFY = "away-notify"
ACCOUNT_TAG = "account-tag"
BATCH = "batch"
CHATHISTORY = "draft/chathistory"
READ_MARKER = "draft/read-marker"
SEARCH = "soju.im/search"

# Name -> value shown in CAP LS 302 (None: no value).
OFFERED = {
    ACCOUNT_TAG: None,
    AWAY_NOTIFY: None,
    BATCH: None,
    CHATHISTORY: None,
    ECHO_MESSAGE: None,
    MESSAGE_TAGS: None,
    MULTI_PREFIX: None,
    READ_MARKER: None,
    SASL: "PLAIN",
    SEARCH: None,
    SERVER_TIME: None,
}


def ls_items(version: int) -> list[str]:
    """The CAP LS tokens: values only for 302 and later."""
    return [name if value is None or version < 302 else f"{name}={value}"
            for name, value in OFFERED.items()]


def parse_request(text: str) -> tuple[set[str], set[str]] | None:
    """
    A CAP REQ list as (to enable, to disable), or None when any of it is not
    offered (the whole request is then refused, as the CAP spec says).
    """
    enable, disable = set(), set()
    for token in text.split():
        name = token[1:] if token.startswith("-") else token
        if name not in OFFERED:
            return None
        (disable if token.startswith("-") else enable).add(name)
    if not enable and not disable:
        return None
    return enable, disable
