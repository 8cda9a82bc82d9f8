"""The IRC front end (SPEC.md section 8): IRC clients on the chat core."""

from .protocol import DEFAULT_MAX_OUTPUT, IRCFactory, IRCProtocol

__all__ = ["IRCFactory", "IRCFrontEnd", "IRCProtocol"]


class IRCFrontEnd:
    """
    What the server app needs to run the IRC listener: its C{name}, the
    endpoint string it C{listen}s on, a C{factory(chat)} and its ready line.
    """

    name = "irc"

    def __init__(self, listen: str, max_output: int = DEFAULT_MAX_OUTPUT, rate_limit: float = 0.0,
                 rate_burst: int = 0, clock=None):
        self.listen = listen
        self.max_output = max_output
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.clock = clock

    def factory(self, chat) -> IRCFactory:
        return IRCFactory(chat, clock=self.clock, max_output=self.max_output,
                          rate_limit=self.rate_limit, rate_burst=self.rate_burst)

    @staticmethod
    def ready_line(address) -> str:
        return f"IRC listening on {address.host}:{address.port}"
