# BENCHMARK BASELINE -- NOT PART OF CHATPROTO, NEVER SHIPPED.
#
# Twisted's own IRC server (twisted.words) as a baseline for bench/run_all.py:
#
#     WORDS_PORT=0 WORDS_INTERFACE=127.0.0.1 twistd -n -y bench/baselines/words.tac
#
# Why a .tac and not `twistd words`: on Python 3 `twistd words --group` crashes
# and `--passwd` never matches (the IRC nick arrives as str, the file checker
# holds bytes), so no benchmark user could ever log in. Here the realm is
# InMemoryWordsRealm with createGroupOnRequest=True (channels appear on JOIN), and
# the checker accepts every user name with any password; users are created on
# their first login (createUserOnRequest, the default). Nothing is written to
# disk.
#
# When the port is bound it prints `Server listening on ADDR:PORT` (the same
# ready line as chatproto's server), so port 0 works.

import os
import sys

from twisted.application import service
from twisted.cred import checkers, credentials, portal
from twisted.internet import defer
from twisted.words import service as words
from zope.interface import implementer


@implementer(checkers.ICredentialsChecker)
class AcceptAnyone:
    """Every user name is valid, whatever the password: a benchmark fixture."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        name = creds.username
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        return defer.succeed(name)


class ReadyListener(service.Service):
    """Listens on WORDS_INTERFACE:WORDS_PORT and prints the ready line."""

    def __init__(self, factory, port, interface):
        self.factory = factory
        self.port = port
        self.interface = interface
        self.listening = None

    def startService(self):
        from twisted.internet import reactor

        service.Service.startService(self)
        self.listening = reactor.listenTCP(
            self.port, self.factory, backlog=4096, interface=self.interface
        )
        addr = self.listening.getHost()
        # twistd has replaced sys.stdout by its log; write to the real one.
        sys.__stdout__.write(f"Server listening on {addr.host}:{addr.port}\n")
        sys.__stdout__.flush()

    def stopService(self):
        service.Service.stopService(self)
        if self.listening is not None:
            return self.listening.stopListening()


realm = words.InMemoryWordsRealm("bench")
# WordsRealm.__init__ takes only the name: set the class flag on the instance.
realm.createGroupOnRequest = True
the_portal = portal.Portal(realm, [AcceptAnyone()])
factory = words.IRCFactory(realm, the_portal)

application = service.Application("words-baseline")
ReadyListener(
    factory,
    int(os.environ.get("WORDS_PORT", "6667")),
    os.environ.get("WORDS_INTERFACE", "127.0.0.1"),
).setServiceParent(application)
