"""
What a front end gives the server app to be put on the air: a L{FrontEnd}.
In the front ends' package, so that a front end describes itself without
importing the server that assembles them (C{chatproto.server.app}).
"""

from dataclasses import dataclass


@dataclass
class FrontEnd:
    """
    One listener of the server.

    @param name: for logs (C{line}, C{irc}, C{web}, C{metrics}).
    @param listen: a server endpoint description (C{tcp:9000}, C{ssl:...}).
    @param make_factory: called with the L{ChatService} once it is loaded;
        returns the protocol factory (with C{connections} and optionally
        C{output.flush()}).
    @param ready_line: the line printed once listening, from the bound address.
    """

    name: str
    listen: str
    make_factory: object
    ready_line: object
