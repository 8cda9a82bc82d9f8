"""
Read markers (docs/PROTOCOL.md, "Read markers"): per user and conversation,
the SEQ of the newest message the user has read. A marker belongs to the
user, not to a session: it only moves forward, survives restarts (storage
keeps it) and every other session of the user is told when it moves
(L{ReadMarker}), so that reading on one device clears the unread count on
the others.

A conversation is another user (by name) or a group (C{#} and its name as
created when shown, C{#} and its folded name as stored, so that C{#jedi} and
C{#Jedi} are one marker).
"""

from twisted.internet import defer

from . import errors
from .errors import ChatError
from .events import ReadMarker

MAX_LOOKBACK = 500  # messages searched for the newest one at or before a time (IRC MARKREAD)
# The largest SEQ a database stores (a signed 64-bit integer): a marker asked for beyond it
# lands on the newest message, as one beyond the newest SEQ does (no database overflow).
MAX_SEQ = 2**63 - 1


class ReadMarkers:
    """The realm's read markers: what is checked, stored and told."""

    def __init__(self, realm):
        self.realm = realm

    def _conversation(self, user, name: str):
        """(stored key, shown name, group or None) of conversation C{name} of C{user}, or a ChatError."""
        realm = self.realm
        if name.startswith("#"):
            group = realm._joined_group(user, name[1:], errors.HISTORY_NOT_JOINED)
            return "#" + group.key, "#" + group.name, group
        if name == user.name or not realm.is_account(name):
            raise ChatError(errors.NO_SUCH_USER, name=name)
        return name, name, None

    def _history(self, user, shown, group, limit, before=None) -> defer.Deferred:
        realm = self.realm
        if group is None:
            return realm.storage.private_history(user.name, shown, limit, before)
        return realm.storage.group_history(group.name, limit, before, group.first_seq)

    def mark(self, user, name: str, seq: int | None = None, time: float | None = None) -> defer.Deferred:
        """
        Mark conversation C{name} read by C{user} up to SEQ C{seq} (None: up
        to its newest message; with C{time}: the newest message at or before
        that time). The marker lands on a message that exists, and never moves
        back. Fire with the L{ReadMarker} now in force (None: nothing read yet).
        """
        try:
            conversation = self._conversation(user, name)
        except ChatError:
            return defer.fail()
        _key, shown, group = conversation
        if time is not None:
            d = self._history(user, shown, group, MAX_LOOKBACK)
            # (an IRC timestamp has milliseconds: the message it names may be a little later)
            d.addCallback(lambda messages: [m for m in messages if m.time < time + 0.001][-1:])
        else:
            d = self._history(user, shown, group, 1, None if seq is None or seq >= MAX_SEQ else seq + 1)
        d.addCallback(self._landed, user, conversation)
        return d

    def _landed(self, messages, user, conversation):
        key, shown, _group = conversation
        storage = self.realm.storage
        target = messages[-1] if messages else None

        def compare(markers):
            current = markers.get(key, 0)
            if target is None or target.seq <= current:
                return self._marker(user, conversation, current)
            marker = ReadMarker(shown, target.seq, target.timestamp, target.time)
            d = storage.set_read_marker(user.name, key, target.seq)
            d.addCallback(lambda _: self._moved(user, marker))
            return d

        return storage.read_markers(user.name).addCallback(compare)

    def _marker(self, user, conversation, seq: int):
        """The L{ReadMarker} at SEQ C{seq} (with that message's time), or None for 0."""
        if not seq:
            return None
        _key, shown, group = conversation
        d = self._history(user, shown, group, 1, seq + 1)
        return d.addCallback(lambda found: ReadMarker(shown, seq, found[-1].timestamp, found[-1].time)
                             if found else ReadMarker(shown, seq, "", 0.0))

    def _moved(self, user, marker):
        self.realm._echo(user, marker)  # the user's other sessions: read here, read there
        return marker

    def current(self, user, name: str) -> defer.Deferred:
        """The L{ReadMarker} of conversation C{name} of C{user}, or None when nothing was read."""
        try:
            conversation = self._conversation(user, name)
        except ChatError:
            return defer.fail()
        d = self.realm.storage.read_markers(user.name)
        return d.addCallback(lambda markers: self._marker(user, conversation, markers.get(conversation[0], 0)))

    def unread(self, user, newest: bool = False) -> defer.Deferred:
        """
        The conversations with messages to C{user} after its read marker,
        newest activity first: a list of C{(NAME, COUNT)} (NAME a user, or
        C{#GROUPNAME}); with C{newest}, C{(NAME, COUNT, SEQ)}, SEQ the newest
        message counted (a session that counts arrivals itself skips those).
        """
        realm = self.realm
        groups = [("#" + g.key, g.name, g.first_seq) for g in realm._groups.values()
                  if g.members.get(user.name)]
        shown = {"#" + g.key: "#" + g.name for g in realm._groups.values()}
        d = realm.storage.unread_counts(user.name, groups)
        if newest:
            return d.addCallback(lambda rows: [(shown.get(name, name), count, seq)
                                               for name, count, _time, seq in rows])
        return d.addCallback(lambda rows: [(shown.get(name, name), count) for name, count, _time, _seq in rows])
