"""
The realm of users and groups: where chat happens, for every front end.

Front ends log in sessions (L{ISession}) and call the methods below; each
returns a Deferred that fires once what the call changed is durable (in the
text logs and the database) and fails with a L{ChatError} whose code the
front end renders. Deliveries to other users are events handed to their
sessions once the change they report is durable, so nobody is shown a
message that was not saved.
"""

import functools
import itertools
import re
import secrets as random_secrets
from collections import deque

from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from . import errors
from .bans import FOREVER, Bans, parse_duration
from .errors import ChatError, LoginFailed
from .events import (
    GROUP,
    PRIVATE,
    AwayChanged,
    FileOffer,
    FilePeer,
    GroupInfo,
    Invited,
    MemberJoined,
    MemberLeft,
    MembersChanged,
    Message,
    MessageDeleted,
    PrivateMessageDeleted,
    Sent,
    ServerNotice,
    UserOffline,
    UserOnline,
)
from .history import HistoryQuery, answer
from .interfaces import GroupRecord, IBanStore, IDelivery, IGroupChanges, IGroupNews, IPresence, IRealmOfNode
from .lockout import LoginLockout
from .markers import MAX_SEQ, ReadMarkers
from .nodes import LocalNode
from .passwords import PasswordChecker, Passwords, UnknownUser, WrongPassword, check_new_password
from .search import MAX_RESULTS, MAX_WAITING, SearchQuery, search_words
from .text import single_line
from .timestamps import Timestamper, format_timestamp

log = Logger()

ACCOUNT_REMOVED_NOTICE = "Your account has been removed"
KICKED_NOTICE = "You have been disconnected by the administrator {admin}"
BANNED_NOTICE = "You have been banned by the administrator {admin} until {until}"
BANNED_FOREVER_NOTICE = "You have been banned by the administrator {admin}"
LOGGED_OUT_ELSEWHERE_NOTICE = "You have been logged out from another session"
DEFAULT_MAX_SESSIONS = 10
MAX_AWAY = 300  # characters of an away message (IRC's AWAYLEN)

GROUP_NAME = re.compile(r"[A-Za-z0-9]{1,32}", re.ASCII)
MAX_HISTORY = 500
# What one user may create (issue 28, F5): groups that exist with them as
# owner, and creations in any minute. A person creates a few groups; a
# script creating thousands fills the memory and the data directory.
MAX_GROUPS_OWNED = 100
GROUP_CREATIONS_PER_MINUTE = 10
MAX_WAITING_LOGINS = 8  # password checks queued for one account; more are refused at once


class IChatUser(Interface):
    """The avatar of a logged-in user."""


# Numbers commands in arrival order, while a user has several sessions (which of them was used
# last: User.touch).
_numbers = itertools.count(1)


class User:
    """
    One session of a logged-in user: the avatar a front end acts for.

    A user may have several sessions at once (docs/PROTOCOL.md, "Several
    sessions"): they share one list, C{peers}, of every session of the
    account on this node in login order. C{peers} is None while the
    session is the account's only one, so that a user with one session costs
    what it always did.
    """

    # (Two slots more than one session needs: an idle connection costs 16 bytes more, no more.)
    __slots__ = ("name", "session", "since", "since_time", "gone", "peers", "used")

    def __init__(self, name: str, session, since: str, since_time: float):
        self.name = name
        self.session = session
        self.since = since
        self.since_time = since_time
        self.gone = False
        self.peers = None
        self.used = 0

    def touch(self) -> None:
        """This session sent a command (front ends call it): it is the user's latest-used one."""
        if self.peers is not None:
            self.used = next(_numbers)

    @property
    def sessions(self) -> list:
        """Every session of this user here, in login order (this one too)."""
        return [self] if self.peers is None else list(self.peers)

    @property
    def ip(self) -> str:
        return self.session.ip

    @property
    def udp_port(self) -> int:
        return self.session.udp_port


class Group:
    """A group chat in memory: members (username -> joined) in membership order."""

    __slots__ = ("key", "name", "owner", "broadcast", "members", "first_seq")

    def __init__(self, name: str, owner: str, broadcast: bool, members: dict, first_seq: int = 1):
        self.key = name.lower()
        self.name = name
        self.owner = owner
        self.broadcast = broadcast
        self.members = members
        self.first_seq = first_seq  # history before it belongs to an earlier group of this name

    def info(self) -> GroupInfo:
        return GroupInfo(self.name, self.owner, self.broadcast, tuple(self.members.items()))


class AlreadyLoggedIn(Exception):
    pass


def _looks_up_refusals(method):
    """
    A cluster node: a refusal because a user is not active or a group does not exist may
    come from news not read yet (another node's login or group creation, published a
    moment before). Such a refusal asks the shared state first (L{IPresence.look_up},
    L{IGroupNews.look_up_group}) and, when it knows more, the call is made once more.
    A plain server: the call as it is.
    """

    @functools.wraps(method)
    def looking_up(self, *args, **kwargs):
        d = method(self, *args, **kwargs)
        if self._everyone is self._active:
            return d
        return d.addErrback(self._look_up_refusal, method, args, kwargs)

    return looking_up


class _PrivateSend:
    """
    One private message waiting for its batch to be durable: the storage's
    waiter (C{callback(seq)} / C{errback(error)}, what it would call on a
    Deferred), without a Deferred's machinery (issue 25).
    """

    __slots__ = ("realm", "sender", "recipient", "username", "timestamp", "now", "text", "reply")

    def __init__(self, realm, sender, recipient, username, timestamp, now, text, reply):
        self.realm = realm
        self.sender = sender
        self.recipient = recipient
        self.username = username
        self.timestamp = timestamp
        self.now = now
        self.text = text
        self.reply = reply

    def callback(self, seq) -> None:
        try:
            message = self.realm._private_stored(seq, self.sender, self.recipient, self.username,
                                                 self.timestamp, self.now, self.text)
            self.reply.answered(message)
        except Exception:  # noqa: BLE001 - the batch's other waiters are called all the same
            log.failure("after storing a message from {username}", username=self.sender.name)

    def errback(self, error) -> None:
        try:
            self.reply.refused(error.value if isinstance(error, Failure) else error)
        except Exception:  # noqa: BLE001 - as above
            log.failure("after failing to store a message from {username}",
                        username=self.sender.name)


class _PrivateRun:
    """
    A run of private messages from one session (L{ChatRealm.send_privates})
    waiting for its batch to be durable: the storage's one waiter for the
    whole run, called with the first message's SEQ (the others follow it).
    """

    __slots__ = ("realm", "sender", "sends", "timestamp", "now", "reply")

    def __init__(self, realm, sender, sends, timestamp, now, reply):
        self.realm = realm
        self.sender = sender
        self.sends = sends  # [(index in the run, recipient User or None, username, text)]
        self.timestamp = timestamp
        self.now = now
        self.reply = reply

    def callback(self, seq) -> None:
        realm = self.realm
        stored = realm._private_stored
        sender, timestamp, now, reply = self.sender, self.timestamp, self.now, self.reply
        name = sender.name
        observers = realm.observers
        for i, recipient, username, text in self.sends:
            try:
                if (recipient is None or recipient.peers is not None or recipient.gone or sender.peers is not None
                        or sender.gone or realm._elsewhere):
                    message = stored(seq, sender, recipient, username, timestamp, now, text)
                else:  # one session each side, one node: what _private_stored does then, inline (issue 25)
                    message = Message(PRIVATE, seq, timestamp, now, name, username, None, text)
                    try:
                        recipient.session.receive(message)
                    except Exception:  # noqa: BLE001 - as _deliver
                        log.failure("delivering to {username}", username=username)
                    for observer in observers:
                        observer("message", PRIVATE, True)
                reply.answered(i, message)
            except Exception:  # noqa: BLE001 - the run's other messages are delivered all the same
                log.failure("after storing a message from {username}", username=name)
            seq += 1
        self._done()

    def errback(self, error) -> None:
        error = error.value if isinstance(error, Failure) else error
        for i, _recipient, _username, _text in self.sends:
            try:
                self.reply.refused(i, error)
            except Exception:  # noqa: BLE001 - as above
                log.failure("after failing to store a message from {username}",
                            username=self.sender.name)
        self._done()

    def _done(self) -> None:
        try:
            self.reply.done()
        except Exception:  # noqa: BLE001 - never into the storage's batch
            log.failure("answering the messages of {username}", username=self.sender.name)


class _OneOfRun:
    """One message of a run sent alone (L{ChatRealm.send_private}'s reply): told to the run's reply by its index."""

    __slots__ = ("reply", "index")

    def __init__(self, reply, index):
        self.reply = reply
        self.index = index

    def answered(self, message) -> None:
        self.reply.answered(self.index, message)
        self.reply.done()

    def refused(self, error) -> None:
        self.reply.refused(self.index, error)
        self.reply.done()


def _refused_with_error(failure, reply) -> None:
    """A Deferred's failure to a C{reply} object: a ChatError, or the failure logged."""
    if not failure.check(ChatError):
        log.failure("sending a private message", failure)
    reply.refused(failure.value)


@implementer(IRealm, IRealmOfNode, IGroupChanges)
class ChatRealm:
    """
    @param accounts: an L{IAccounts}.
    @param storage: an L{IChatStorage}; its groups are loaded by L{start}.
    @param clock: the reactor, or a L{twisted.internet.task.Clock} in tests.
    @param attempts: consecutive failed logins before a block.
    @param lockout: an L{ILockout}; by default one that counts in this process
        (a cluster node passes one that counts on every node).
    @param admins: the account names that may kick, ban and announce.
    @param bans: the L{IBanStore} that keeps bans; by default C{storage}
        (or, when it keeps none, this process's memory).
    """

    def __init__(self, accounts, storage, clock, attempts: int, passwords: Passwords | None = None,
                 admins=(), bans=None, lockout=None, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 offline_messages: bool = False):
        self.max_sessions = max_sessions  # sessions one account may have at once
        self.offline_messages = offline_messages  # private messages to inactive users are kept for them
        self.accounts = accounts
        self.storage = storage
        # The storage takes a waiter object in place of a Deferred (append_private's C{waiter}).
        self._waiters = getattr(storage, "accepts_waiters", False)
        self.clock = clock
        self.lockout = lockout if lockout is not None else LoginLockout(clock, attempts)
        self.timestamps = Timestamper(clock)
        self.passwords = passwords if passwords is not None else Passwords(clock)
        self.checker = PasswordChecker(accounts, self.passwords)
        self.portal = Portal(self, [self.checker])
        # Each active user's first session still logged in, in login order (the others: its peers).
        self._active: dict[str, User] = {}
        # Everyone active, for lookups: this process's users; on a cluster node
        # (attach_node) a dict of every node's users that the realm keeps itself: the
        # local User while the account has a session here, else its sessions elsewhere.
        self._everyone = self._active
        # The cluster seams (chatproto.core.interfaces): nobody elsewhere by default.
        self.node = LocalNode()
        self._elsewhere = self.node.elsewhere  # username -> their sessions on other nodes
        self._groups: dict[str, Group] = {}  # by folded name
        self._away: dict[str, str] = {}  # username -> away message, kept in storage until cleared
        self.markers = ReadMarkers(self)
        self._watchers: set[User] = set()  # sessions that want presence events about everyone
        self._group_watchers: set[User] = set()  # ... about the members of their groups
        self._login_queues: dict[str, list] = {}  # per account being checked: the checks waiting
        self.observers: list = []  # callables told of every event (metrics, tests): see _notify
        self.admins: set[str] = set(admins)  # account names that may kick, ban and announce
        if bans is None and IBanStore.providedBy(storage):
            bans = storage
        self.bans = Bans(clock, bans)  # loaded by start()
        self._searching: dict[str, int] = {}  # username -> searches in progress
        self.max_groups_owned = MAX_GROUPS_OWNED  # 0: no limit
        self.group_creations_per_minute = GROUP_CREATIONS_PER_MINUTE  # 0: no limit
        self._creations: dict[str, deque] = {}  # per user: the times of their creations in the last minute

    def start(self) -> defer.Deferred:
        """Load the groups from storage, the bans, and who is away."""
        loading = [self.storage.groups().addCallback(self.groups_loaded), self.bans.load()]
        if hasattr(self.storage, "away_messages"):  # (a storage without it keeps away in memory only)
            loading.append(self.storage.away_messages().addCallback(self._away.update))
        return defer.gatherResults(loading, consumeErrors=True)

    def _now(self):
        # One reading of the clock for both: a message's timestamp and time never fall in two
        # different seconds, and the hot path reads the clock once (issue 25).
        now = self.clock.seconds()
        return self.timestamps.at(now), now

    def _notify(self, what: str, detail: str, n: int = 1) -> None:
        """
        Tell each observer C{observer(what, detail, n)}: C{("message", kind,
        deliveries)}, C{("delivery", event type, n)}, C{("login", front end)},
        C{("login-failed", code)}, C{("lockout", front end)}, C{("file-offer",
        front end)}, C{("admin", action)}, and what front ends report through
        L{note} (C{"refused"}, C{"dropped"}).
        """
        for observer in self.observers:
            observer(what, detail, n)

    def note(self, what: str, detail: str) -> None:
        """A front end reports an event of its own (a refused connection, a dropped slow reader)."""
        for observer in self.observers:
            observer(what, detail, 1)

    def _deliver(self, user: User, event) -> None:
        """C{event} to every session of C{user}'s account (on every node)."""
        peers = user.peers
        if peers is None:
            try:
                user.session.receive(event)
            except Exception:  # noqa: BLE001 - one broken session must not stop the others' deliveries
                log.failure("delivering to {username}", username=user.name)
        else:
            for one in list(peers):
                self._deliver_one(one, event)
        if self._elsewhere:  # a cluster node: the account's sessions on other nodes too
            other = self._elsewhere.get(user.name)
            if other is not None and other is not user:
                other.session.receive(event)

    def _deliver_one(self, user: User, event) -> None:
        """C{event} to this one session."""
        try:
            user.session.receive(event)
        except Exception:  # noqa: BLE001 - one broken session must not stop the others' deliveries
            log.failure("delivering to {username}", username=user.name)

    def _echo(self, actor: User, event) -> None:
        """C{event} to the other sessions of C{actor}'s account (what one device did, the others see)."""
        if actor.gone:  # the acting session ended before its change was kept: the account's sessions now
            stand_in = self._everyone.get(actor.name)
            if stand_in is not None:
                self._deliver(stand_in, event)
            return
        peers = actor.peers
        if peers is not None:
            for one in list(peers):
                if one is not actor:
                    self._deliver_one(one, event)
        if self._elsewhere:  # a cluster node: the account's sessions on other nodes
            other = self._elsewhere.get(actor.name)
            if other is not None:
                other.session.receive(event)

    # Login and logout

    def login(self, username: str, password: str, session) -> defer.Deferred:
        """
        Fire with the L{User} once the login is recorded, or fail with
        L{LoginFailed}. Checked in this order (docs/PROTOCOL.md, LOGIN): blocked, unknown
        username, wrong password, already logged in.
        """
        if self.lockout.is_blocked(username) or self.bans.until(username) is not None:
            log.info("Login refused for {username}: blocked", username=username)
            self._notify("login-failed", errors.BLOCKED)
            return defer.fail(LoginFailed(errors.BLOCKED))
        # One check at a time per account, in arrival order: a check that
        # waited behind a failure sees the block it caused, and costs nothing.
        waiting = self._login_queues.get(username)
        if waiting is None:
            self._login_queues[username] = []
            return self._run_check(username, password, session)
        if len(waiting) >= MAX_WAITING_LOGINS:
            self._notify("login-failed", errors.LOGIN_BUSY)
            return defer.fail(LoginFailed(errors.LOGIN_BUSY))
        d = defer.Deferred()
        waiting.append((d, password, session))
        return d

    def add_session(self, username: str, session) -> defer.Deferred:
        """
        Another session of an account whose password a front end has
        already checked in this process (the page: another tab of a browser
        logged in as C{username}, known by its cookie): admitted as a login
        after the password check is (blocked, banned, the session limit) and
        recorded as one. Fire with the L{User}, or fail with L{LoginFailed}.
        """
        if self.lockout.is_blocked(username) or self.bans.until(username) is not None:
            return defer.fail(LoginFailed(errors.BLOCKED))
        d = defer.maybeDeferred(self._admit, True, username, session)
        return d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(username,))

    def _run_check(self, username: str, password: str, session) -> defer.Deferred:
        try:
            d = self._check_login(username, password, session)
        except Exception:  # noqa: BLE001 - becomes the login's failure (a server error)
            d = defer.fail()
        if self.observers:
            d.addErrback(self._count_failure)
        return d.addBoth(self._next_check, username)

    def _next_check(self, result, username: str):
        waiting = self._login_queues.get(username)
        if waiting:
            d, password, session = waiting.pop(0)
            self._run_check(username, password, session).chainDeferred(d)
        else:
            self._login_queues.pop(username, None)
        return result

    def _check_login(self, username: str, password: str, session) -> defer.Deferred:
        if self.lockout.is_blocked(username):
            return defer.fail(LoginFailed(errors.BLOCKED))
        d = self.portal.login(UsernamePassword(username, password), session, IChatUser)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(username,))
        return d

    def _count_failure(self, failure):
        code = getattr(failure.value, "code", errors.SERVER_ERROR)
        self._notify("login-failed", code)
        if code == errors.BLOCKED_NOW:
            self._notify("lockout", code)
        return failure

    def _logged_in(self, result):
        _interface, user, _logout = result
        log.info("{username} logged in from {ip} ({frontend})", username=user.name, ip=user.ip,
                 frontend=getattr(user.session, "frontend", "?"))
        self._notify("login", getattr(user.session, "frontend", "?"))
        return user

    def _login_failed(self, failure, username):
        if failure.check(UnknownUser):
            log.info("Failed login: no account {username!r}", username=username)
            raise LoginFailed(errors.NO_SUCH_ACCOUNT)
        if failure.check(WrongPassword):
            if self.lockout.is_blocked(username):
                # A concurrent check ended in a block while this one ran.
                raise LoginFailed(errors.BLOCKED)
            return self.lockout.failed(username).addCallback(self._counted, username)
        if failure.check(AlreadyLoggedIn):
            raise LoginFailed(errors.ALREADY_LOGGED_IN)
        if failure.check(LoginFailed):
            return failure
        log.failure("login of {username}", failure, username=username)
        raise LoginFailed(errors.SERVER_ERROR)

    def _counted(self, outcome: str, username: str):
        """A wrong password counted by the lockout: the login's failure."""
        if outcome == errors.BLOCKED_NOW:
            log.warn("{username} blocked after {n} failed logins", username=username,
                     n=self.lockout.attempts)
        elif outcome == errors.WRONG_PASSWORD:
            log.info("Failed login for {username}: wrong password", username=username)
        raise LoginFailed(outcome)

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IChatUser not in interfaces:
            raise NotImplementedError(interfaces)
        username, session = avatarId, mind
        # The password check may have run asynchronously: a block or another
        # login may have happened meanwhile.
        if self.lockout.is_blocked(username):
            raise LoginFailed(errors.BLOCKED)
        self._refuse_another_session(username)
        # The right password starts the count again, unless the account was
        # blocked meanwhile (a cluster's lockout knows of failures elsewhere).
        return self.lockout.succeeded(username).addCallback(self._admit, username, session)

    def _refuse_another_session(self, username: str):
        """The account's first session here, or None; AlreadyLoggedIn when one more is too many
        here. (A cluster node's claim, L{IPresence.claim}, counts every living node's sessions
        atomically: the copy of them here may still hold a node that just died.)"""
        first = self._everyone.get(username)
        if first is not None:
            if first is not self._active.get(username):  # on another cluster node only
                return None
            if (1 if first.peers is None else len(first.peers)) >= self.max_sessions:
                raise AlreadyLoggedIn(username)
        return first

    def _admit(self, admitted: bool, username: str, session):
        if not admitted or self.bans.until(username) is not None:  # banned meanwhile (on any node)
            raise LoginFailed(errors.BLOCKED)
        first = self._refuse_another_session(username)  # (logged in meanwhile)
        since, since_time = self._now()
        user = User(username, session, since, since_time)
        # userlog.txt's key of the session: the avatar itself, an opaque token (no allocation)
        record = (username, since, session.ip, session.udp_port, user)
        # Active before (here or on another node): presence is told of the first login only.
        was_active = first is not None or (self._elsewhere and username in self._elsewhere)
        if first is not None:  # another session of an active user: at once, a concurrent login sees it
            if first.peers is None:
                first.peers = [first]
            first.peers.append(user)
            user.peers = first.peers
        else:
            self._active[username] = user  # at once: a concurrent login sees it
            if self._everyone is not self._active:
                self._everyone[username] = user
        claimed = self.node.claim(user)  # a cluster node: counted on every node first
        if claimed is None:
            d = self.storage.user_logged_in(*record)
        else:
            d = claimed.addCallback(lambda _: self.storage.user_logged_in(*record))

        def recorded(_):
            presence = getattr(session, "wants_presence", False)
            if presence == "groups":
                self._group_watchers.add(user)
            elif presence:
                self._watchers.add(user)
            if not was_active:  # presence is per user: the first login only
                self._tell_watchers(UserOnline(username, since, since_time), user)
            return IChatUser, user, lambda: self.logout(user)

        def not_recorded(failure):
            if failure.check(LoginFailed):  # a cluster's refusal
                self._forget(user)
                return failure
            log.warn("Cannot record the login of {username}: {why}", username=username,
                     why=failure.getErrorMessage())
            self._forget(user)
            # Nor later, by the log's own retry: the session is not active.
            self.storage.user_logged_out(username, user).addErrback(lambda _: None)
            raise LoginFailed(errors.LOGIN_NOT_RECORDED)

        return d.addCallbacks(recorded, not_recorded)

    def _forget(self, user: User) -> bool | None:
        """
        Take one session away: None if it was not there, else whether it was
        the user's last (the user stays active while another session is).
        """
        name = user.name
        first = self._active.get(name)
        if user.gone or first is None:
            return None
        peers = user.peers
        if peers is None:
            if first is not user:
                return None
            del self._active[name]
        else:
            peers.remove(user)
            if first is user:  # the next session stands for the user, in the same place
                self._active[name] = peers[0]
            if len(peers) == 1:
                peers[0].peers = None  # alone again
            user.peers = None
        if self._everyone is not self._active:
            self._stands_for(name)
        self.node.release(user)
        self._watchers.discard(user)
        self._group_watchers.discard(user)
        user.gone = True
        return peers is None

    def _stands_for(self, name: str) -> None:
        """A cluster node: C{_everyone[name]} is the account's first session here, else its
        sessions on other nodes, else nothing."""
        user = self._active.get(name) or self._elsewhere.get(name)
        if user is None:
            self._everyone.pop(name, None)
        else:
            self._everyone[name] = user

    def logout(self, user: User) -> defer.Deferred:
        """End one session; the user is told offline when it was their last."""
        last = self._forget(user)
        if last is None:
            return defer.succeed(None)
        log.info("{username} logged out{rest}", username=user.name,
                 rest="" if last else " (one session; others stay)")
        # (away is kept: it lasts until the user clears it, as ergo's always-on clients')
        if last and not (self._elsewhere and user.name in self._elsewhere):  # not active anywhere now
            timestamp, now = self._now()
            self._tell_watchers(UserOffline(user.name, timestamp, now), user)
        return self.storage.user_logged_out(user.name, user).addErrback(
            self._logout_not_recorded, user.name)

    def logout_all(self, user: User) -> defer.Deferred:
        """C{/logout all}: end every other session of the account (each told so), then this one."""
        for other in user.sessions:
            if other is not user:
                self._end_one(other, LOGGED_OUT_ELSEWHERE_NOTICE)
        self._end_elsewhere(user.name, LOGGED_OUT_ELSEWHERE_NOTICE)
        return self.logout(user)

    def _end_elsewhere(self, username: str, notice: str) -> None:
        """A cluster node: the account's sessions on the other nodes are ended there."""
        if self._elsewhere:
            other = self._elsewhere.get(username)
            if other is not None:
                other.session.disconnect(notice)

    def sessions_of(self, user: User) -> list[User]:
        """Every session of C{user}'s account (on every node), in login order."""
        sessions = user.sessions
        if self._elsewhere:
            other = self._elsewhere.get(user.name)
            if other is not None and other is not user:
                sessions = sorted(sessions + other.sessions, key=lambda one: one.since_time)
        return sessions

    def _logout_not_recorded(self, failure, username: str) -> None:
        # The user is gone all the same; userlog.txt comes right by itself (a retry).
        log.warn("Cannot record the logout of {username}: {why}", username=username,
                 why=failure.getErrorMessage())

    def _tell_watchers(self, event, about: User | None) -> None:
        """UserOnline/UserOffline/AwayChanged to the sessions that watch everyone, and to those
        that watch the members of their groups (IRC), without a scan of every session."""
        name = event.username
        for watcher in list(self._watchers):
            if watcher.name != name:  # about a user: not to their own sessions
                self._deliver_one(watcher, event)
        if self._group_watchers:
            told = set()
            for group in list(self._groups.values()):
                if name in group.members:
                    for member in self._joined_members(group, name):
                        for one in member.peers or (member,):  # each session of the member
                            if one in self._group_watchers and one not in told:
                                told.add(one)
                                self._deliver_one(one, event)

    def active_user(self, username: str) -> User | None:
        return self._everyone.get(username)

    def active_users(self) -> list[User]:
        """Every active user, once (their first session), in login order."""
        if self._everyone is not self._active:  # a cluster node: every node's users
            return sorted(self._everyone.values(), key=lambda user: user.since_time)
        return list(self._active.values())

    def active_sessions(self) -> list[User]:
        """Every session of every active user (on every node), in login order (C{/activeuser})."""
        users = self.active_users()
        if not self._elsewhere and all(getattr(user, "peers", None) is None for user in users):
            return users
        sessions = [one for user in users for one in self.sessions_of(user)]
        return sorted(sessions, key=lambda one: one.since_time)  # stable: login order within a user

    def account_names(self) -> list[str]:
        return sorted(self.accounts.names())

    def is_account(self, username: str) -> bool:
        return self.accounts.secret(username) is not None

    # Away (docs/PROTOCOL.md, "Away"): the user's, for all their sessions

    def away_of(self, username: str) -> str | None:
        """The away message of C{username}, or None when they are not away."""
        return self._away.get(username) if self._away else None

    def set_away(self, user: User, text: str | None) -> defer.Deferred:
        """
        Set (or, with a blank C{text}, clear) C{user}'s away message; their
        other sessions and whoever watches presence are told (L{AwayChanged}).
        Fire with the message as kept (cleaned as message text is, at most
        L{MAX_AWAY} characters), or None, once it is durable: it lasts until
        the user clears it, across logouts and restarts.
        """
        text = single_line(text or "").strip()[:MAX_AWAY].strip() or None
        if self._away.get(user.name) == text:
            return defer.succeed(text)
        save = getattr(self.storage, "save_away", None)
        d = save(user.name, text) if save is not None else defer.succeed(None)

        def saved(_):
            if self._away.get(user.name) != text:
                self._echo(user, self._away_changed(user.name, text))
            if self._everyone is not self._active:
                # The other nodes' users see it too (301, away-notify): answered once Redis has
                # handed it to every node, as a login is, so that a message sent after the answer
                # finds it there.
                return self.node.away_changed(user.name, text).addBoth(lambda _: text)
            return text

        return d.addCallbacks(saved, _not_saved, errbackArgs=("Cannot save the away message of {username}",
                                                              user.name))

    def away_elsewhere(self, username: str, text: str | None) -> None:
        """A user of another cluster node set or cleared their away message (the cluster's bus)."""
        if self._away.get(username) != text:
            self._away_changed(username, text)

    def aways_loaded(self, away: dict) -> None:
        """Every away message, read again (a cluster node back on its bus, whose news of
        changes on other nodes may be lost): each difference told as L{away_elsewhere} tells it."""
        for username in [name for name in self._away if name not in away]:
            self.away_elsewhere(username, None)
        for username, text in away.items():
            self.away_elsewhere(username, text)

    def _away_changed(self, username: str, text: str | None) -> AwayChanged:
        if text is None:
            self._away.pop(username, None)
        else:
            self._away[username] = text
        timestamp, now = self._now()
        event = AwayChanged(username, text, timestamp, now)
        self._tell_watchers(event, None)
        return event

    # Read markers (chatproto.core.markers)

    def mark_read(self, user: User, name: str, seq: int | None = None,
                  time: float | None = None) -> defer.Deferred:
        """Move C{user}'s read marker of conversation C{name} (a user or C{#GROUP}) forward."""
        return self.markers.mark(user, name, seq, time)

    def read_marker(self, user: User, name: str) -> defer.Deferred:
        return self.markers.current(user, name)

    def unread(self, user: User, newest: bool = False) -> defer.Deferred:
        """C{[(NAME, COUNT)]}: the conversations with messages after the read marker, newest first
        (C{newest}: C{[(NAME, COUNT, SEQ)]}, SEQ the newest message counted)."""
        return self.markers.unread(user, newest)

    # Private messages

    def _recipient(self, sender: User, username: str, to_self: str) -> User:
        if username == sender.name:
            raise ChatError(to_self)
        recipient = self._everyone.get(username)
        if recipient is None:
            if not self.is_account(username):
                raise ChatError(errors.NO_SUCH_USER, name=username)
            raise ChatError(errors.NOT_ACTIVE, name=username)
        return recipient

    def _look_up_refusal(self, failure, method, args, kwargs):
        error = failure.value
        code = getattr(error, "code", None)
        if code == errors.NOT_ACTIVE:
            d = self.node.look_up(error.name)
        elif code == errors.NO_SUCH_GROUP:
            d = self.node.look_up_group(error.name)
        else:
            return failure

        def looked(found):
            if not found:
                return failure
            log.info("{name} was found elsewhere: the news had not arrived yet", name=error.name)
            return method(self, *args, **kwargs)

        def unknown(why):
            log.warn("Cannot look {name} up: {why}", name=error.name, why=why.getErrorMessage())
            return failure

        return d.addCallbacks(looked, unknown)

    def _send_after_look_up(self, error, sender: User, username: str, text: str, reply):
        """L{send_private} on a cluster node to a user not active here: asked of the shared
        presence before the refusal (L{_looks_up_refusals})."""

        def looked(found):
            if found and not sender.gone and username in self._everyone:
                return self.send_private(sender, username, text, reply, looked_up=True)
            if reply is None:
                raise error
            reply.refused(error)

        d = self.node.look_up(username).addErrback(lambda _: False).addCallback(looked)
        return d if reply is None else None

    def send_private(self, sender: User, username: str, text: str, reply=None, looked_up: bool = False):
        """
        Store one private message, then deliver it; fire with the L{Message}.

        With C{reply} (an object with C{answered(message)} and C{refused(error)}),
        no Deferred is made: C{reply.answered} is called once the message is
        durable and delivered, C{reply.refused} with the L{ChatError} otherwise
        (at once when the recipient is wrong), and None is returned. A front end
        whose pipelined messages each wait on their batch saves a Deferred, its
        callbacks and a closure per message that way (issue 25).
        """
        try:
            recipient = self._recipient(sender, username, errors.TO_SELF)
        except ChatError as e:
            if e.code == errors.NOT_ACTIVE and self._everyone is not self._active and not looked_up:
                return self._send_after_look_up(e, sender, username, text, reply)  # (a cluster node)
            if not (e.code == errors.NOT_ACTIVE and self.offline_messages):
                if reply is None:
                    return defer.fail()
                reply.refused(e)
                return None
            recipient = None  # kept for them: unread at their next login
        text = single_line(text)
        timestamp, now = self._now()
        if reply is not None and self._waiters:
            self.storage.append_private(sender.name, username, timestamp, now, text,
                                        _PrivateSend(self, sender, recipient, username, timestamp,
                                                     now, text, reply))
            return None
        d = self.storage.append_private(sender.name, username, timestamp, now, text)
        d.addCallback(self._private_stored, sender, recipient, username, timestamp, now, text)
        if reply is not None:
            d.addCallbacks(reply.answered, _refused_with_error, errbackArgs=(reply,))
            return None
        return d

    def send_privates(self, sender: User, messages, reply) -> None:
        """
        Store a run of private messages from one session (C{messages}:
        C{(username, text)} pairs, in the order sent), then deliver each in
        that order: what L{send_private} does for each, with one call, one
        clock reading, one record string, one waiter and one callback for the
        run (issue 25). Errors are per message, as L{send_private}'s.

        C{reply} is told of each message by its index in C{messages}:
        C{answered(i, message)} once it is durable and delivered,
        C{refused(i, error)} otherwise (at once when the recipient is wrong);
        then C{done()}, once after each group of answers (the refusals made
        during the call, the run's commit, a look-up on a cluster node): a
        front end sends what it has then.
        """
        storage = self.storage
        if len(messages) == 1 or not (self._waiters and hasattr(storage, "append_privates")):
            # One at a time: a run of one (a client that waits for each answer: the run's
            # machinery costs it more than it saves), or a storage without runs (a cluster's).
            for i, (username, text) in enumerate(messages):
                self.send_private(sender, username, text, _OneOfRun(reply, i))
            return
        name = sender.name
        everyone = self._everyone
        sends = []
        refused = False
        for i, (username, text) in enumerate(messages):
            recipient = everyone.get(username)
            if recipient is None or username == name:
                try:
                    recipient = self._recipient(sender, username, errors.TO_SELF)
                except ChatError as e:
                    if e.code == errors.NOT_ACTIVE and everyone is not self._active:
                        # (a cluster node: maybe logged in elsewhere a moment ago)
                        self._send_after_look_up(e, sender, username, text, _OneOfRun(reply, i))
                        continue
                    if not (e.code == errors.NOT_ACTIVE and self.offline_messages):
                        reply.refused(i, e)
                        refused = True
                        continue
                    recipient = None  # kept for them: unread at their next login
            sends.append((i, recipient, username, single_line(text)))
        if sends:
            timestamp, now = self._now()
            storage.append_privates(name, timestamp, now, [(send[2], send[3]) for send in sends],
                                    _PrivateRun(self, sender, sends, timestamp, now, reply))
        if refused:
            reply.done()

    def _private_stored(self, seq, sender, recipient, username, timestamp, now, text) -> Message:
        """A private message is durable: deliver it (and show it on the sender's other sessions); return it."""
        message = Message(PRIVATE, seq, timestamp, now, sender.name, username, None, text)
        if recipient is not None and recipient.gone:  # the session that stood for them left meanwhile:
            recipient = self._everyone.get(username)  # their other sessions, if any, show it all the same
        delivered = recipient is not None
        if delivered:
            self._deliver(recipient, message)
        if sender.peers is not None or self._elsewhere or sender.gone:  # (a cluster: maybe on other nodes)
            self._echo(sender, Sent(message))
        for observer in self.observers:  # inline: the hot path (bench/bench_metrics.py)
            observer("message", PRIVATE, delivered)
        return message

    @_looks_up_refusals
    def offer_file(self, presenter: User, username: str, filename: str) -> defer.Deferred:
        """
        Tell C{username}'s session that C{presenter} sends it C{filename}, with
        a fresh transfer id and secret; fire with the L{FilePeer} for the
        presenter. The offer reaches the receiver before the presenter learns
        where to send.
        """
        try:
            receiver = self._recipient(presenter, username, errors.TO_SELF_FILE)
        except ChatError:
            return defer.fail()
        if receiver.peers is not None:  # the session used last, among those that can receive files
            receiver = max((one for one in receiver.peers if one.udp_port), key=lambda one: one.used,
                           default=receiver)
        elif receiver is self._elsewhere.get(username):  # a cluster: only on other nodes; one of them
            receiver = receiver.for_files()
        if not receiver.udp_port:
            return defer.fail(ChatError(errors.CANNOT_RECEIVE_FILES, name=username))
        transfer_id = random_secrets.token_hex(8)
        secret = random_secrets.token_hex(32)
        timestamp, now = self._now()
        self._deliver_one(receiver, FileOffer(transfer_id, secret, presenter.name, presenter.ip,
                                              filename, timestamp, now))
        self._notify("file-offer", getattr(presenter.session, "frontend", "?"))
        return defer.succeed(FilePeer(receiver.name, receiver.ip, receiver.udp_port, transfer_id, secret))

    def history(self, user: User, username: str, limit: int, before: int | None = None) -> defer.Deferred:
        """The last C{limit} messages between C{user} and C{username}, oldest first."""
        if not self.is_account(username):
            return defer.fail(ChatError(errors.NO_SUCH_USER, name=username))
        if before is not None and before > MAX_SEQ:  # beyond every stored SEQ: the latest
            before = None
        return self.storage.private_history(user.name, username, min(limit, MAX_HISTORY), before)

    def query_history(self, user: User, username: str, query: HistoryQuery) -> defer.Deferred:
        """L{history} for any L{HistoryQuery}: at most L{MAX_HISTORY} messages, oldest first."""
        if not self.is_account(username):
            return defer.fail(ChatError(errors.NO_SUCH_USER, name=username))
        a, b = user.name, username

        def fetch(after, before, limit, latest):
            return self.storage.private_range(a, b, after, before, limit, latest)

        return answer(query, fetch, min(query.limit, MAX_HISTORY))

    def conversations(self, user: User, after: float, before: float, limit: int,
                      latest: bool = False) -> defer.Deferred:
        """
        C{user}'s conversations (private ones, and the groups it has joined)
        with a message strictly between the epoch times C{after} and
        C{before}: a Deferred list of L{Conversation}s in the order of their
        last such message, at most L{MAX_HISTORY} (the newest when C{latest}).
        """
        groups = {group.name: group.first_seq for group in self._groups.values()
                  if group.members.get(user.name)}
        return self.storage.conversations(user.name, list(groups.items()), after, before,
                                          min(limit, MAX_HISTORY), latest)

    # Groups

    def group_info(self, name: str) -> GroupInfo | None:
        group = self._groups.get(name.lower())
        return None if group is None else group.info()

    def groups(self) -> list[GroupInfo]:
        """Every group that exists."""
        return [group.info() for group in self._groups.values()]

    def groups_of(self, username: str) -> list[GroupInfo]:
        return [group.info() for group in self._groups.values() if username in group.members]

    def _group(self, name: str) -> Group:
        group = self._groups.get(name.lower())
        if group is None:
            raise ChatError(errors.NO_SUCH_GROUP, name=name)
        return group

    def _joined_group(self, user: User, name: str, not_joined: str = errors.NOT_JOINED) -> Group:
        """The group C{name}, which C{user} has joined; or the ChatError that says why not."""
        group = self._group(name)
        joined = group.members.get(user.name)
        if joined is None:
            raise ChatError(errors.NOT_MEMBER, name=group.name)
        if not joined:
            raise ChatError(not_joined, name=group.name)
        return group

    def _joined_members(self, group: Group, but: str):
        active = self._everyone
        for username, joined in group.members.items():
            if joined and username != but:
                member = active.get(username)
                if member is not None:
                    yield member

    def _fan_out(self, group: Group, event, but: str, here_only: bool = False) -> int:
        """
        C{event} to the joined members of C{group} but C{but}: the one fan-out. Each
        session here gets it; on a cluster node, each other node that holds a session of
        a joined member is sent it once (L{IDelivery.group_event}) and finds its own members
        in its own copy of the group (L{fan_out_here}, C{here_only}). Return the members
        reached.
        """
        # The hot loop of a fan-out: one pass over the members, no generator, no call per member
        # but the delivery itself.
        n = 0
        active = self._active
        elsewhere = None if here_only else self._elsewhere
        places = None
        for username, joined in group.members.items():
            if joined and username != but:
                member = active.get(username)
                if member is not None:
                    if member.peers is None:
                        try:
                            member.session.receive(event)
                        except Exception:  # noqa: BLE001 - one broken session must not stop the others
                            log.failure("delivering to {username}", username=username)
                    else:
                        for one in list(member.peers):
                            self._deliver_one(one, event)
                    n += 1
                if elsewhere:
                    other = elsewhere.get(username)
                    if other is not None:
                        if places is None:
                            places = set()
                        places.update(other.nodes)
                        n += member is None
        if places:
            self.node.group_event(group, event, but, places)
        return n

    def fan_out_here(self, key: str, event, but: str) -> None:
        """Another node's group event: to the joined members of group C{key} here but C{but}."""
        group = self._groups.get(key)
        if group is not None:
            self._fan_out(group, event, but, here_only=True)

    def deliver_to_session(self, user: User, event) -> None:
        """Another node's event for one session here (a file offer)."""
        if not user.gone:
            self._deliver_one(user, event)

    def deliver_here(self, usernames, event) -> None:
        """Another node's event for C{usernames}: to each one's sessions here (not elsewhere again)."""
        active = self._active
        for name in usernames:
            user = active.get(name)
            if user is not None:
                for one in user.sessions:
                    self._deliver_one(one, event)

    def _tell_members(self, group: Group) -> None:
        """
        L{MembersChanged} to every active member of C{group}, joined or
        invited: an invited member's page shows the members too, though it
        hears of no join or leave (the line protocol and IRC show nothing).
        """
        timestamp, now = self._now()
        event = MembersChanged(group.name, tuple(group.members.items()), timestamp, now)
        everyone = self._everyone
        for username in group.members:
            member = everyone.get(username)
            if member is not None:
                self._deliver(member, event)

    @_looks_up_refusals
    def create_group(self, owner: User, name: str, usernames, broadcast: bool = False,
                     allow_alone: bool = False) -> defer.Deferred:
        """
        Create a group with C{owner} joined and C{usernames} invited (each an
        active account; the owner's own name and repeats ignored). Without
        C{allow_alone} (the IRC front end's JOIN of a new channel) at least
        one other member is needed.
        """
        try:
            if not GROUP_NAME.fullmatch(name):
                raise ChatError(errors.BAD_GROUP_NAME, name=name)
            if name.lower() in self._groups:
                raise ChatError(errors.GROUP_EXISTS, name=name)
            invited: list[str] = []
            for username in usernames:
                if username == owner.name or username in invited:
                    continue
                if username not in self._everyone:
                    if not self.is_account(username):
                        raise ChatError(errors.NO_SUCH_USER, name=username)
                    raise ChatError(errors.NOT_ACTIVE, name=username)
                invited.append(username)
            if not invited and not allow_alone:
                raise ChatError(errors.NO_OTHER_MEMBER)
            self._may_create_group(owner.name)
        except ChatError:
            return defer.fail()
        members = {owner.name: True}
        for username in invited:
            members[username] = False
        group = Group(name, owner.name, broadcast, members)
        self._groups[group.key] = group  # at once: the next command sees it
        record = GroupRecord(group.key, name, owner.name, broadcast, [[u, j] for u, j in members.items()])
        d = self.storage.save_group(record)
        group.first_seq = record.first_seq

        def saved(_):
            timestamp, now = self._now()
            invitation = Invited(name, owner.name, timestamp, now)
            for username in invited:
                member = self._everyone.get(username)
                if member is not None:
                    self._deliver(member, invitation)
            log.info("{owner} created the group {name}", owner=owner.name, name=name)
            return group.info()

        def not_saved(failure):
            if self._groups.get(group.key) is group:
                del self._groups[group.key]
            return failure

        return d.addCallbacks(saved, not_saved)

    def _may_create_group(self, name: str) -> None:
        """Raise the ChatError that says why C{name} may not create a group now; else count the creation."""
        limit = self.group_creations_per_minute
        now = self.clock.seconds()
        recent = self._creations.get(name)
        if limit and recent:
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= limit:
                raise ChatError(errors.GROUPS_TOO_FAST, limit=limit)
        owned_limit = self.max_groups_owned
        if owned_limit and sum(1 for group in self._groups.values() if group.owner == name) >= owned_limit:
            raise ChatError(errors.TOO_MANY_GROUPS, limit=owned_limit)
        if limit:
            if recent is None:
                if len(self._creations) > 4096:  # those of users who have not created lately go
                    self._creations = {user: times for user, times in self._creations.items()
                                       if times and times[-1] > now - 60}
                recent = self._creations[name] = deque()
            recent.append(now)

    @_looks_up_refusals
    def join_group(self, user: User, name: str) -> defer.Deferred:
        try:
            group = self._group(name)
            joined = group.members.get(user.name)
            if joined is None:
                raise ChatError(errors.NOT_INVITED, name=group.name)
            if joined:
                raise ChatError(errors.ALREADY_JOINED, name=group.name)
        except ChatError:
            return defer.fail()
        group.members[user.name] = True
        d = self.storage.set_member(group.key, user.name, True)

        def saved(_):
            timestamp, now = self._now()
            joined_event = MemberJoined(group.name, user.name, timestamp, now)
            self._fan_out(group, joined_event, user.name)
            self._echo(user, joined_event)
            self._tell_members(group)
            return group.info()

        def not_saved(failure):
            if group.members.get(user.name) is True:
                group.members[user.name] = False  # nothing changed after all
            return failure

        return d.addCallbacks(saved, not_saved)

    @_looks_up_refusals
    def invite(self, user: User, name: str, username: str) -> defer.Deferred:
        """Invite C{username} to a group C{user} has joined."""
        try:
            group = self._joined_group(user, name)
            if not self.is_account(username):
                raise ChatError(errors.NO_SUCH_USER, name=username)
            if username in group.members:
                raise ChatError(errors.ALREADY_MEMBER, name=username, group=group.name)
        except ChatError:
            return defer.fail()
        group.members[username] = False
        d = self.storage.set_member(group.key, username, False)

        def saved(_):
            member = self._everyone.get(username)
            if member is not None:
                timestamp, now = self._now()
                self._deliver(member, Invited(group.name, user.name, timestamp, now))
            self._tell_members(group)
            return group.info()

        def not_saved(failure):
            if group.members.get(username) is False:
                del group.members[username]  # nothing changed after all
            return failure

        return d.addCallbacks(saved, not_saved)

    @_looks_up_refusals
    def send_group(self, sender: User, name: str, text: str) -> defer.Deferred:
        """Store one group message, then fan it out; fire with the L{Message}."""
        try:
            group = self._joined_group(sender, name)
            if group.broadcast and sender.name != group.owner:
                raise ChatError(errors.BROADCAST_OWNER_ONLY, name=group.name)
        except ChatError:
            return defer.fail()
        text = single_line(text)
        timestamp, now = self._now()
        d = self.storage.append_group(group.name, sender.name, timestamp, now, text)

        def stored(seq):
            message = Message(GROUP, seq, timestamp, now, sender.name, None, group.name, text)
            n = self._fan_out(group, message, sender.name)
            if sender.peers is not None or self._elsewhere or sender.gone:
                self._echo(sender, Sent(message))
            for observer in self.observers:
                observer("message", GROUP, n)
            return message

        return d.addCallback(stored)

    @_looks_up_refusals
    def leave_group(self, user: User, name: str) -> defer.Deferred:
        """
        Leave a group (or decline its invitation). The other joined active
        members are told when a joined member leaves; a group with no members
        left is removed, its log kept.
        """
        try:
            group = self._group(name)
            if user.name not in group.members:
                raise ChatError(errors.NOT_MEMBER, name=group.name)
        except ChatError:
            return defer.fail()
        order = list(group.members)
        joined = group.members.pop(user.name)
        info = group.info()

        def not_saved(failure):
            # Nothing changed after all: the member is back in its place, and the group.
            if user.name not in group.members:
                members = {name: group.members[name] for name in order if name in group.members}
                members[user.name] = joined
                restored = {name: members[name] for name in order if name in members}
                restored.update((name, j) for name, j in group.members.items() if name not in restored)
                group.members.clear()
                group.members.update(restored)
            if group.key not in self._groups:
                self._groups[group.key] = group
            return failure

        def told(_):
            # The leaver's other sessions (devices, the page's other tabs) drop the group too:
            # the part, and the members now, which no longer name this user.
            timestamp, now = self._now()
            if joined:
                left = MemberLeft(group.name, user.name, timestamp, now)
                if group.members:
                    self._fan_out(group, left, user.name)
                self._echo(user, left)
            if group.members:
                self._tell_members(group)  # a declined invitation too
            self._echo(user, MembersChanged(group.name, tuple(group.members.items()), timestamp, now))
            return info

        if not group.members:
            del self._groups[group.key]
            d = self.storage.remove_group(group.key, group.name)
        else:
            d = self.storage.remove_member(group.key, user.name)
        return d.addCallbacks(told, not_saved)

    @_looks_up_refusals
    def group_history(self, user: User, name: str, limit: int, before: int | None = None) -> defer.Deferred:
        try:
            group = self._joined_group(user, name, errors.HISTORY_NOT_JOINED)
        except ChatError:
            return defer.fail()
        if before is not None and before > MAX_SEQ:  # beyond every stored SEQ: the latest
            before = None
        return self.storage.group_history(group.name, min(limit, MAX_HISTORY), before, group.first_seq)

    @_looks_up_refusals
    def query_group_history(self, user: User, name: str, query: HistoryQuery) -> defer.Deferred:
        """L{group_history} for any L{HistoryQuery}."""
        try:
            group = self._joined_group(user, name, errors.HISTORY_NOT_JOINED)
        except ChatError:
            return defer.fail()
        log_name, since = group.name, group.first_seq

        def fetch(after, before, limit, latest):
            return self.storage.group_range(log_name, after, before, limit, latest, since)

        return answer(query, fetch, min(query.limit, MAX_HISTORY))

    def search(self, user: User, text: str, in_: str | None = None, limit: int = MAX_RESULTS,
               sender: str | None = None, before: float | None = None,
               after: float | None = None) -> defer.Deferred:
        """
        The messages C{user} can read whose text has a word beginning with
        each word of C{text} (case and accents ignored), newest first, at most
        L{MAX_RESULTS}: the private messages they sent or received and those
        of the groups they have joined now (not one they left or were only
        invited to). C{in_}: one conversation, C{#GROUP}, or a name (a user's
        first, else a group's); refused as L{history} and L{group_history}.
        C{sender}, C{before}, C{after} (epoch seconds): narrower still.
        """
        query = SearchQuery(search_words(text), user.name, limit=max(0, min(limit, MAX_RESULTS)),
                            sender=sender, before=before, after=after)
        if in_ is None:
            query.groups = {group.name: group.first_seq for group in self._groups.values()
                            if group.members.get(user.name)}
        elif not in_.startswith("#") and (self.is_account(in_) or in_.lower() not in self._groups):
            if not self.is_account(in_):
                return defer.fail(ChatError(errors.NO_SUCH_USER, name=in_))
            query.peer = in_
        else:
            try:
                group = self._joined_group(user, in_.removeprefix("#"), errors.HISTORY_NOT_JOINED)
            except ChatError:
                return defer.fail()
            query.private = False
            query.groups = {group.name: group.first_seq}
        if query.is_empty():
            return defer.succeed([])
        # One database worker serves everybody: a client sending searches faster than they
        # are answered is told to wait instead of queueing work in front of everyone's messages.
        waiting = self._searching.get(user.name, 0)
        if waiting >= MAX_WAITING:
            return defer.fail(ChatError(errors.SEARCHES_WAITING, limit=MAX_WAITING))
        self._searching[user.name] = waiting + 1

        def done(result):
            left = self._searching.pop(user.name, 1) - 1
            if left:
                self._searching[user.name] = left
            return result

        return self.storage.search(query).addBoth(done)

    def delete_message(self, user: User, seq: int) -> defer.Deferred:
        """Mark private message C{seq} deleted, if C{user} wrote it; tell the recipient's sessions
        and the author's other sessions (L{PrivateMessageDeleted})."""
        d = self.storage.delete_message(None, seq, user.name)

        def deleted(changed):
            if changed:  # (the answer does not wait for the recipient's name to be read)
                self.storage.message(None, seq).addCallback(self._private_deleted, user).addErrback(
                    lambda failure: log.failure("telling of deleted message {seq}", failure, seq=seq))

        return d.addCallback(deleted)

    def _private_deleted(self, message: Message | None, author: User) -> None:
        if message is None or message.kind != PRIVATE:
            return
        timestamp, now = self._now()
        event = PrivateMessageDeleted(message.seq, message.sender, message.recipient, timestamp, now)
        recipient = self._everyone.get(message.recipient)
        if recipient is not None and message.recipient != author.name:
            self._deliver(recipient, event)
        self._echo(author, event)

    def delete_group_message(self, user: User, name: str, seq: int) -> defer.Deferred:
        """Mark message C{seq} of a group deleted, if C{user} wrote it; tell the members."""
        try:
            group = self._group(name)
        except ChatError:
            return defer.fail()
        d = self.storage.delete_message(group.name, seq, user.name)

        def deleted(changed):
            if changed:
                timestamp, now = self._now()
                self._fan_out(group, MessageDeleted(group.name, seq, user.name, timestamp, now), user.name)

        return d.addCallback(deleted)

    # Accounts

    def change_password(self, user: User, current: str, new: str) -> defer.Deferred:
        """
        Check C{current} through the login checker, then store C{new} hashed.
        A wrong C{current} counts toward the lockout like a failed login;
        while the account is blocked its password cannot be changed.
        """
        username = user.name
        if self.lockout.is_blocked(username):
            return defer.fail(ChatError(errors.BLOCKED))
        try:
            check_new_password(new)
        except ChatError:
            return defer.fail()
        d = self.checker.requestAvatarId(UsernamePassword(username, current))
        d.addCallbacks(lambda _: self.passwords.hash(new), self._password_refused,
                       errbackArgs=(username,))
        d.addCallback(self._store_password, username)
        return d

    def _password_refused(self, failure, username: str):
        failure.trap(WrongPassword, UnknownUser)
        if self.lockout.is_blocked(username):
            raise ChatError(errors.BLOCKED)

        def counted(outcome):
            if outcome == errors.BLOCKED:
                raise ChatError(errors.BLOCKED)
            if outcome == errors.BLOCKED_NOW:
                log.warn("{username} blocked after {n} failed password checks", username=username,
                         n=self.lockout.attempts)
            raise ChatError(errors.CURRENT_INCORRECT)

        return self.lockout.failed(username).addCallback(counted)

    def _store_password(self, secret: str, username: str):
        if self.lockout.is_blocked(username):  # blocked while the hash was computed
            raise ChatError(errors.BLOCKED)

        def stored(_):
            self.lockout.succeeded(username)
            log.info("{username} changed their password", username=username)

        def failed(failure):
            if failure.check(KeyError):
                raise ChatError(errors.ACCOUNT_GONE)
            log.failure("Cannot store the new password of {username}", failure, username=username)
            raise ChatError(errors.NOT_SAVED)

        return self.accounts.set_secret(username, secret).addCallbacks(stored, failed)

    # The whole service

    def announce(self, text: str) -> None:
        """A server notice to everyone active."""
        timestamp, now = self._now()
        notice = ServerNotice(text, timestamp, now)
        for user in list(self._everyone.values()):  # a cluster: every node's users
            self._deliver(user, notice)

    def shutdown(self, notice: str) -> None:
        """Tell every session C{notice}, close it and log its user out."""
        for user in list(self._active.values()):
            self._end_session(user, notice)

    def _end_session(self, user: User, notice: str, everywhere: bool = False) -> defer.Deferred:
        """End every session of C{user}'s account here (C{everywhere}: on every node), each
        told C{notice}."""
        sessions = [user] if user.peers is None else list(user.peers)  # (a cluster's RemoteUser too)
        if everywhere and self._elsewhere.get(user.name) not in (None, user):
            self._end_elsewhere(user.name, notice)
        return defer.gatherResults([self._end_one(one, notice) for one in sessions])

    def _end_one(self, user: User, notice: str) -> defer.Deferred:
        try:
            user.session.disconnect(notice)
        except Exception:  # noqa: BLE001
            log.failure("disconnecting {username}", username=user.name)
        return self.logout(user)

    # Accounts changed by the operator (chatproto-admin, an edit of credentials.txt)

    def reload_accounts(self) -> tuple[list[str], list[str]]:
        """
        Read the accounts again (L{IAccounts.reload}); log out, with
        L{ACCOUNT_REMOVED_NOTICE}, whoever is logged in to an account that is
        gone. Return the names added and removed. When the accounts cannot
        be read (OSError) the old ones stay and the error is raised.
        """
        reload = getattr(self.accounts, "reload", None)
        if reload is None:
            log.warn("These accounts cannot be reloaded; restart the server to apply changes")
            return [], []
        before = set(self.accounts.names())
        reload()
        after = set(self.accounts.names())
        added, removed = sorted(after - before), sorted(before - after)
        for username in removed:
            self.remove_account(username)
        log.info("Accounts reloaded: {n} accounts, added {added}, removed {removed}",
                 n=len(after), added=" ".join(added) or "none", removed=" ".join(removed) or "none")
        return added, removed

    def presence_elsewhere(self, username: str, online: bool) -> None:
        """C{username} logged in (or out) on another cluster node (the bus changed C{elsewhere}):
        the sessions here that watch presence are told, as of a login (logout) here, unless
        the user has a session here (active all along)."""
        self._stands_for(username)
        if username in self._active:
            return
        timestamp, now = self._now()
        self._tell_watchers((UserOnline if online else UserOffline)(username, timestamp, now), None)

    def end_session(self, username: str, notice: str) -> None:
        """Log out C{username}'s sessions here, if any, telling each C{notice} (a cluster node
        does this for an administrator, or C{/logout all}, on another node)."""
        user = self._active.get(username)
        if user is not None:
            self._end_session(user, notice)

    def remove_account(self, username: str, notice: str | None = None) -> None:
        """The account C{username} is gone: log out its session, if any, telling it C{notice}."""
        user = self._active.get(username)
        if user is not None:
            log.info("{username} logged out: the account was removed", username=username)
            self._end_session(user, notice or ACCOUNT_REMOVED_NOTICE)

    # Administrators

    def is_admin(self, username: str) -> bool:
        return username in self.admins

    def _check_admin(self, admin: User, action: str, target: str | None = None) -> None:
        if admin.name not in self.admins:
            log.warn("{username} tried /{action} but is not an administrator", username=admin.name,
                     action=action)
            raise ChatError(errors.NOT_ADMIN)
        if target is not None:
            if target == admin.name:
                raise ChatError(errors.ADMIN_SELF)
            if not self.is_account(target):
                raise ChatError(errors.NO_SUCH_USER, name=target)

    @_looks_up_refusals
    def kick(self, admin: User, username: str, reason: str = "") -> defer.Deferred:
        """Log C{username} out with a notice naming C{admin} (and C{reason})."""
        try:
            self._check_admin(admin, "kick", username)
            user = self._everyone.get(username)  # a user on another node is ended by its node
            if user is None:
                raise ChatError(errors.NOT_ACTIVE, name=username)
        except ChatError:
            return defer.fail()
        reason = single_line(reason).strip()
        log.warn("Admin {admin} kicked {username}{why}", admin=admin.name, username=username,
                 why=f": {reason}" if reason else "")
        self._notify("admin", "kick")
        notice = KICKED_NOTICE.format(admin=admin.name) + (f": {reason}" if reason else "")
        return self._end_session(user, notice, everywhere=True).addCallback(lambda _: username)

    def ban(self, admin: User, username: str, duration: str) -> defer.Deferred:
        """
        Refuse C{username}'s logins for C{duration} (L{parse_duration}), kept
        across restarts; a logged-in user is logged out with a notice. Fire
        with the ban's end as a server timestamp, or C{None} for a ban forever.
        """
        try:
            self._check_admin(admin, "ban", username)
            seconds = parse_duration(duration)
        except ChatError:
            return defer.fail()

        def banned(until):
            ends = None if until == FOREVER else format_timestamp(until)
            log.warn("Admin {admin} banned {username} until {until}", admin=admin.name, username=username,
                     until=ends or "forever")
            self._notify("admin", "ban")
            user = self._everyone.get(username)
            if user is None:
                return ends
            notice = (BANNED_NOTICE.format(admin=admin.name, until=ends) if ends
                      else BANNED_FOREVER_NOTICE.format(admin=admin.name))
            return self._end_session(user, notice, everywhere=True).addCallback(lambda _: ends)

        return self.bans.ban(username, seconds).addCallbacks(banned, _not_saved, errbackArgs=(
            "Cannot save the ban of {username}", username))

    def unban(self, admin: User, username: str) -> defer.Deferred:
        try:
            self._check_admin(admin, "unban")
        except ChatError:
            return defer.fail()

        def lifted(was_banned):
            if not was_banned:
                raise ChatError(errors.NOT_BANNED, name=username)
            log.warn("Admin {admin} lifted the ban of {username}", admin=admin.name, username=username)
            self._notify("admin", "unban")
            return username

        return self.bans.unban(username).addCallbacks(lifted, _not_saved, errbackArgs=(
            "Cannot save the end of the ban of {username}", username))

    def announce_by(self, admin: User, text: str) -> defer.Deferred:
        """L{announce} for an administrator; fire with the number of users told."""
        try:
            self._check_admin(admin, "announce")
        except ChatError:
            return defer.fail()
        text = single_line(text).strip()
        log.warn("Admin {admin} announced: {text}", admin=admin.name, text=text)
        self._notify("admin", "announce")
        self.announce(text)
        return defer.succeed(len(self._everyone))

    def close(self) -> defer.Deferred:
        self.lockout.stop()
        return self.storage.close()

    # One node of a cluster (chatproto.core.interfaces: IRealmOfNode, IGroupChanges)

    def attach_node(self, node) -> None:
        """Be one node of a cluster: C{node} (its bus) tells who is elsewhere and takes what
        is for them; the lookups of active users see every node's."""
        if not (IPresence.providedBy(node) and IDelivery.providedBy(node) and IGroupNews.providedBy(node)):
            raise TypeError(f"{node!r} is not an IPresence, IDelivery and IGroupNews")
        self.node = node
        self._elsewhere = node.elsewhere
        self._everyone = dict(self._active)
        for name in list(self._elsewhere):
            self._stands_for(name)

    def local_users(self) -> list[User]:
        """The users with a session on this node (their first session), in login order."""
        return list(self._active.values())

    def groups_loaded(self, records) -> None:
        self._groups.clear()
        for record in records:
            self.group_created(record)

    def group_created(self, record: GroupRecord) -> None:
        self._groups[record.key] = Group(record.name, record.owner, record.broadcast,
                                         {name: joined for name, joined in record.members},
                                         record.first_seq)

    def member_changed(self, key: str, username: str, joined: bool | None) -> None:
        group = self._groups.get(key)
        if group is not None:
            if joined is None:
                group.members.pop(username, None)
            else:
                group.members[username] = joined

    def group_removed(self, key: str) -> None:
        self._groups.pop(key, None)

    def first_seq_known(self, key: str, first_seq: int) -> None:
        group = self._groups.get(key)
        if group is not None:
            group.first_seq = first_seq


def _not_saved(failure, what: str, username: str):
    """A change the storage could not keep: C{not-saved} for the user (logged, unless the storage did)."""
    if failure.check(ChatError):
        return failure
    log.failure(what, failure, username=username)
    raise ChatError(errors.NOT_SAVED)


__all__ = ["ChatRealm", "IUsernamePassword", "User"]
