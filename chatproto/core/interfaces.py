"""
The interfaces between the core and the rest: the sessions front ends hand
it, the storage it keeps its state in, the accounts it checks passwords against.
"""

from dataclasses import dataclass, field

from zope.interface import Attribute, Interface


@dataclass(slots=True)
class GroupRecord:
    """A group as storage keeps it."""

    key: str  # the name folded to lower case
    name: str  # as created: also the name of its log
    owner: str
    broadcast: bool
    members: list = field(default_factory=list)  # [username, joined] in membership order
    # The first SEQ of its log that belongs to this group: a group created again
    # under an old name continues the log's numbering, but not its history.
    first_seq: int = 1


@dataclass(frozen=True, slots=True)
class Bound:
    """
    One end of a range of a conversation's history. Messages are in the
    order of C{(time, seq)} (the order they were sent in). C{seq}: the
    message with that SEQ in the conversation (when there is none, the range
    is empty); else C{time}, an epoch time, or with C{until} the span of time
    C{[time, until)} that one shown time stands for (a time to the
    millisecond). The end (the whole span) is left out of the range unless
    C{inclusive}.
    """

    seq: int | None = None
    time: float | None = None
    inclusive: bool = False
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation with activity in a span of time: C{kind} PRIVATE (C{name} the other
    user) or GROUP (C{name} the group), C{time} its last message's in the span."""

    kind: str
    name: str
    time: float


class ISession(Interface):
    """A logged-in connection of some front end, as the core sees it."""

    frontend = Attribute("the front end's name: 'line', 'irc', 'web'")
    ip = Attribute("the client's address")
    udp_port = Attribute("the UDP port the client receives files on; 0 when it cannot")
    wants_presence = Attribute("True: also receive UserOnline/UserOffline about everyone; "
                               "'groups': about the members of the groups this user has joined")

    def receive(event):
        """One event of L{chatproto.core.events}; must not raise."""

    def disconnect(notice):
        """The core ends this session: tell the user C{notice} and close."""


class IAccounts(Interface):
    """Where accounts and their stored secrets (plain text or bcrypt hashes) live."""

    def secret(username):
        """The stored secret of C{username}, or None when there is no such account."""

    def names():
        """Every account name."""

    def set_secret(username, secret):
        """Store C{secret} for C{username} durably; a Deferred. Fails with
        L{KeyError} when the account has gone."""

    def reload():
        """Read the accounts again from where they live (the operator changed
        them); raise OSError, keeping the old ones, when they cannot be read."""


class IBanStore(Interface):
    """Where administrators' bans are kept (the storage, by default): USERNAME -> the epoch
    time the ban ends (C{math.inf}: never)."""

    def bans():
        """A Deferred dict of every ban kept (some may have ended)."""

    def save_ban(username, until):
        """Keep a ban of C{username} until C{until}, replacing any earlier one; a Deferred
        that fires once it is durable."""

    def remove_ban(username):
        """Forget the ban of C{username} (none: nothing changes); a Deferred, as L{save_ban}."""


class IChatStorage(IBanStore):
    """
    The core's state, behind one asynchronous interface. Every change
    returns a Deferred that fires once it is durable; reads see every change
    made before them.

    Keys: a group is named by its case-folded name (C{key}); its messages by
    its log name (the name as created), so that a group created again under
    the same spelling continues its numbering.
    """

    def groups():
        """A Deferred list of L{GroupRecord}s: every group that exists."""

    def append_private(sender, recipient, timestamp, time, text, waiter=None):
        """Store one private message; a Deferred firing with its SEQ. A storage
        whose C{accepts_waiters} is true takes a C{waiter} instead (an object
        with C{callback(seq)} and C{errback(error)}, called as the Deferred
        would fire) and returns None."""

    def append_privates(sender, timestamp, time, messages, waiter):
        """Optional (with C{accepts_waiters}): store a run of private messages
        (C{messages}: C{(recipient, text)} pairs) under one C{waiter}, called
        with the first's SEQ (the others follow it) once all are durable, or
        with one error for all. Returns None."""

    def append_group(log_name, sender, timestamp, time, text):
        """Store one group message; a Deferred firing with its SEQ."""

    def delete_message(log_name, seq, author):
        """Mark a message deleted (log_name None: private); a Deferred firing
        with False when it was deleted already. Fails with ChatError
        C{no-such-message} or C{not-author}."""

    def message(log_name, seq):
        """A Deferred firing with message C{seq} (log_name None: private) as
        stored, a L{Message}, or None when there is none."""

    def private_history(a, b, limit, before):
        """A Deferred list of the last C{limit} L{Message}s between a and b
        (SEQ below C{before} when given), oldest first."""

    def group_history(log_name, limit, before, since):
        """The same for a group's log, from SEQ C{since} on (the group's first_seq)."""

    def private_range(a, b, after, before, limit, latest):
        """
        A Deferred list of at most C{limit} L{Message}s between a and b that
        come after the L{Bound} C{after} and before the L{Bound} C{before}
        (None: no bound), oldest first: the newest of the range when
        C{latest}, else its oldest.
        """

    def group_range(log_name, after, before, limit, latest, since):
        """The same for a group's log, from SEQ C{since} on."""

    def conversations(username, groups, after, before, limit, latest):
        """
        A Deferred list of L{Conversation}s: C{username}'s private
        conversations and the C{groups} (C{(log_name, since)} pairs) that
        have a message with a time strictly between the epoch times C{after}
        and C{before}, each with its last such message's time, in the order
        of those times: at most C{limit}, the newest when C{latest}, else the
        oldest.
        """

    def search(query):
        """A Deferred list of the L{Message}s that match a
        L{chatproto.core.search.SearchQuery}, newest first."""

    def save_group(record):
        """A new group (L{GroupRecord}); its log is created, and C{record.first_seq} set
        (at once) to the SEQ its first message will get."""

    def set_member(key, username, joined):
        """Add a member to a group, or change whether it joined."""

    def remove_member(key, username):
        """Remove a member from a group."""

    def remove_group(key):
        """Remove a group (its messages stay)."""

    def user_logged_in(username, timestamp, ip, udp_port, session=None):
        """Record that a session of a user is active (userlog.txt, one line a
        session); C{session} is an opaque hashable token that tells the sessions
        apart, the same at logout (None: the username is the token)."""

    def user_logged_out(username, session=None):
        """Record that a session (as given to L{user_logged_in}) is no longer active."""

    def set_read_marker(username, conversation, seq):
        """Record that C{username} has read C{conversation} (a username, or C{#} and a
        group's folded name) up to SEQ C{seq}; a marker only moves forward. A Deferred."""

    def read_markers(username):
        """A Deferred dict: conversation -> SEQ, every read marker of C{username}."""

    def save_away(username, text):
        """Keep C{username}'s away message C{text} (None: no longer away) until it changes,
        across restarts; a Deferred that fires once it is durable."""

    def away_messages():
        """A Deferred dict: username -> away message, of every user who is away."""

    def unread_counts(username, groups):
        """
        A Deferred list of C{(conversation, count, newest time, newest SEQ)}: the
        conversations with messages to C{username} after their read marker
        (private: from each other user; C{groups}: C{(conversation, log name,
        first SEQ)} of the groups the user has joined, counting the others'
        messages), newest activity first.
        """

    def close():
        """Write what is pending and release everything; a Deferred."""


# The seams of a cluster (docs/CLUSTER.md, "The seams in the core"). The realm asks an
# IPresence and an IDelivery; a plain server's are chatproto.core.nodes.LocalPresence and
# LocalDelivery (nobody elsewhere), a cluster node's is its bus. The other way round, the bus
# tells the realm what happened on other nodes through the realm's public methods listed in
# IRealmOfNode and IGroupChanges, never through its private state.


class IPresence(Interface):
    """Who is logged in on the other nodes, and this node's sessions told to them."""

    elsewhere = Attribute(
        "dict: username -> the account's sessions on other nodes (an object with C{name}, "
        "C{count}, C{sessions} (each with C{ip}, C{udp_port}, C{since}, C{since_time}, "
        "C{session.frontend}), C{since}, C{since_time}, C{ip}, C{udp_port}, C{peers} None, C{gone}, "
        "and C{session}, whose C{receive(event)} sends the event to all of them and "
        "C{disconnect(notice)} ends them; C{nodes}: the nodes that hold them; C{for_files()}: "
        "the one session a file offer goes to, an object like a session's user). Empty on a "
        "plain server; the realm only reads it.")

    def claim(user):
        """
        One more session of C{user}'s account here (a login): None when it is granted at
        once, else a Deferred that fails with L{LoginFailed} when the account may not have
        one more session anywhere (the realm's C{max_sessions} counted on every node).
        """

    def release(user):
        """One session here ended (claimed or not: a refused claim is released too)."""

    def away_changed(username, text):
        """C{username} set (C{text}) or cleared (None) their away message here; a Deferred
        that fires once every node has been sent it."""

    def look_up(username):
        """A Deferred: whether C{username} has a session anywhere, asked of the shared
        presence itself (C{elsewhere} is brought up to date first), for a refusal that a
        mirror just behind the news would give wrongly."""


class IDelivery(Interface):
    """Events for users on other nodes (the single-user ones go through C{elsewhere})."""

    def group_event(group, event, but, places):
        """A group event for the joined members (but C{but}) on the nodes C{places} (a set):
        each of them delivers it to its own joined members."""


class IGroupChanges(Interface):
    """Groups changed on another node, applied to this node's copy (the realm provides it)."""

    def groups_loaded(records):
        """Every group that exists (L{GroupRecord}s), in place of those known."""

    def group_created(record):
        """A new group (a L{GroupRecord})."""

    def member_changed(key, username, joined):
        """A member added, or whether it joined changed (C{joined} None: removed)."""

    def group_removed(key):
        """A group is gone."""

    def first_seq_known(key, first_seq):
        """The database gave a group its first SEQ."""


class IGroupNews(Interface):
    """Where news of groups changed on other nodes comes from."""

    def look_up_group(name):
        """A Deferred: whether group C{name} exists, asked of the shared database (the
        realm's copy brought up to date first through L{IGroupChanges}), for a refusal that a
        copy just behind the news would give wrongly."""


class IRealmOfNode(Interface):
    """What the realm offers the bus of a cluster node."""

    def attach_node(node):
        """Be one node of a cluster: C{node} (an L{IPresence}, L{IDelivery} and L{IGroupNews})
        from now on."""

    def deliver_here(usernames, event):
        """C{event} to every session here of each of C{usernames} (sent by another node)."""

    def deliver_to_session(user, event):
        """C{event} to this one session here (sent by another node for it alone: a file offer)."""

    def fan_out_here(key, event, but):
        """A group event (group C{key}) to its joined members here but C{but}."""

    def presence_elsewhere(username, online):
        """C{elsewhere} gained (lost) C{username}: tell who watches presence, if that changes
        whether the user is active at all."""

    def away_elsewhere(username, text):
        """A user of another node set or cleared their away message."""

    def aways_loaded(away):
        """Every away message (username -> text), read again from the shared database."""

    def end_session(username, notice):
        """End every session of C{username} here, each told C{notice}."""
