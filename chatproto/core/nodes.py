"""
The realm's cluster seams on a plain server (chatproto.core.interfaces:
L{IPresence}, L{IDelivery}, L{IGroupNews}): nobody is elsewhere, every login
is granted at once, nothing is sent anywhere. A cluster node replaces them
with its bus (L{chatproto.cluster.bus.ClusterBus}, through
C{ChatRealm.attach_node}).
"""

from twisted.internet import defer
from zope.interface import implementer

from .interfaces import IDelivery, IGroupNews, IPresence


@implementer(IPresence, IDelivery, IGroupNews)
class LocalNode:
    """The one process is the whole service."""

    def __init__(self):
        self.elsewhere: dict = {}  # always empty: the realm tests it before any lookup

    def claim(self, user):
        return None  # granted: the realm counted the sessions itself

    def release(self, user) -> None:
        pass

    def away_changed(self, username, text) -> defer.Deferred:
        return defer.succeed(None)

    def look_up(self, username) -> defer.Deferred:
        return defer.succeed(False)

    def group_event(self, group, event, but, places) -> None:
        raise AssertionError("no other node to send to")  # elsewhere is empty: never asked

    def look_up_group(self, name) -> defer.Deferred:
        return defer.succeed(False)
