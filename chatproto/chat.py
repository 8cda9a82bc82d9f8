"""
The chat domain: accounts logging in and out, private messages, groups.

It knows nothing of sockets or of any wire format. A front end (the line
protocol today; IRC or WebSocket later) calls these methods with plain
strings, turns L{ChatError}s into its own replies, and receives deliveries
through the session object it passed at login (anything with C{deliver}).
"""

import os
import re
from collections import OrderedDict

from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from . import errors
from .accounts import CredentialsFile, UnknownUser, WrongPassword
from .errors import ChatError, LoginFailed, NoSuchUser, NotActive
from .journal import ActiveUserLog, Journal, RecordLog, single_line
from .lockout import LoginLockout
from .passwords import (
    AccountNotInFile,
    PasswordChecker,
    Passwords,
    check_new_password,
    rewrite_credentials,
)
from .records import NoSuchRecord, NotAuthor, delete_record
from .store import MemoryStore
from .timestamps import Timestamper

log = Logger()

GROUP_NAME = re.compile(r"[A-Za-z0-9]{1,32}", re.ASCII)
USERLOG = "userlog.txt"
MAX_OPEN_GROUP_LOGS = 64
MESSAGELOG = "messagelog.txt"


def group_log_name(group_name: str) -> str:
    return f"{group_name}_messageLog.txt"


class IChatUser(Interface):
    """The avatar of a logged-in user."""


class Delivery:
    """
    One message or notice for one or more users, formatted once however many
    receive it. A front end renders it to its wire format once, too
    (L{line}: the line protocol's bytes, cached).
    """

    __slots__ = ("kind", "text", "_line")

    def __init__(self, kind: str, text: str):
        self.kind = kind  # "MSG" or "NOTICE"
        self.text = text
        self._line = None

    @property
    def line(self) -> bytes:
        if self._line is None:
            self._line = f"{self.kind} {self.text}\n".encode("utf-8", "surrogateescape")
        return self._line


class ActiveUser:
    """A logged-in user: the avatar the front end acts for."""

    __slots__ = ("name", "ip", "udp_port", "since", "session")

    def __init__(self, name: str, ip: str, udp_port: int, since: str, session):
        self.name = name
        self.ip = ip
        self.udp_port = udp_port
        self.since = since
        self.session = session


class Group:
    """
    A group chat: its members (invited or joined) and its log.

    A broadcast group is a group whose policy lets only its owner send.
    """

    __slots__ = ("name", "owner", "members", "log", "broadcast")

    def __init__(self, name: str, owner: str, invited: list[str], log_file: RecordLog, broadcast=False):
        self.name = name
        self.owner = owner
        self.members: dict[str, bool] = {owner: True}  # username -> joined
        for username in invited:
            self.members[username] = False
        self.log = log_file
        self.broadcast = broadcast


class LoginMind:
    """What the front end tells the realm about a connection logging in."""

    __slots__ = ("ip", "udp_port", "session")

    def __init__(self, ip: str, udp_port: int, session):
        self.ip = ip
        self.udp_port = udp_port
        self.session = session


class AlreadyLoggedIn(Exception):
    pass


@implementer(IRealm)
class Chat:
    """
    The realm of users and groups.

    @param accounts: the loaded credentials.
    @param data_dir: where the log files live.
    @param clock: the reactor, or a L{twisted.internet.task.Clock} in tests.
    """

    def __init__(self, accounts: CredentialsFile, data_dir: str, clock, attempts: int,
                 durable: bool = False, store=None):
        self.accounts = accounts
        self.data_dir = data_dir
        self.clock = clock
        self.store = store if store is not None else MemoryStore()
        self.lockout = LoginLockout(clock, attempts)
        self.timestamps = Timestamper(clock)
        self.journal = Journal(clock, durable)
        self.userlog = ActiveUserLog(os.path.join(data_dir, USERLOG), self.journal)
        self.messagelog = RecordLog(os.path.join(data_dir, MESSAGELOG), self.journal)
        # Logs of the groups that exist; of those, the most recently used
        # MAX_OPEN_GROUP_LOGS keep a file descriptor (most recent last).
        self._group_logs: set[RecordLog] = set()
        self._open_group_logs: OrderedDict[RecordLog, None] = OrderedDict()
        self.passwords = Passwords(clock)
        self.journal.after_flush.append(self._trim_group_logs)
        self.portal = Portal(self, [PasswordChecker(accounts, self.passwords)])

    # Login and logout

    def login(self, username: str, password: str, ip: str, udp_port: int, session):
        """
        Return a Deferred firing with the L{ActiveUser}, or failing with
        L{LoginFailed} carrying the user's text. Checked in SPEC.md's order:
        blocked, unknown username, wrong password, already logged in.
        """
        if self.lockout.is_blocked(username):
            return defer.fail(LoginFailed(errors.ACCOUNT_BLOCKED))
        d = self.portal.login(
            UsernamePassword(username, password), LoginMind(ip, udp_port, session), IChatUser
        )
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(username,))
        return d

    def _logged_in(self, result):
        _interface, user, _logout = result
        self.lockout.record_success(user.name)
        return user

    def _login_failed(self, failure, username):
        if failure.check(UnknownUser):
            raise LoginFailed(errors.INVALID_USERNAME)
        if failure.check(WrongPassword):
            if self.lockout.is_blocked(username):
                # A concurrent check ended in a block while this one ran: the
                # account is blocked, and a failure now counts for nothing.
                raise LoginFailed(errors.ACCOUNT_BLOCKED)
            if self.lockout.record_failure(username):
                raise LoginFailed(errors.BLOCKED_NOW)
            raise LoginFailed(errors.INVALID_PASSWORD)
        if failure.check(AlreadyLoggedIn):
            raise LoginFailed(errors.ALREADY_LOGGED_IN)
        if failure.check(LoginFailed):
            return failure
        log.failure("login of {username}", failure, username=username)
        raise LoginFailed("Server error")

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IChatUser not in interfaces:
            raise NotImplementedError(interfaces)
        username = avatarId
        # The password check may have run asynchronously: a block or another
        # login may have happened meanwhile.
        if self.lockout.is_blocked(username):
            raise LoginFailed(errors.ACCOUNT_BLOCKED)
        if self.store.active_user(username) is not None:
            raise AlreadyLoggedIn(username)
        since = self.timestamps.now()
        user = ActiveUser(username, mind.ip, mind.udp_port, since, mind.session)
        self.store.add_active_user(user)
        self.userlog.add(username, since, mind.ip, mind.udp_port)
        return IChatUser, user, lambda: self.logout(user)

    def logout(self, user: ActiveUser) -> None:
        if self.store.active_user(user.name) is user:
            self.store.remove_active_user(user.name)
            self.userlog.remove(user.name)

    # Private messages

    def _recipient(self, sender: ActiveUser, username: str, to_self: str) -> ActiveUser:
        if username == sender.name:
            raise ChatError(to_self)
        recipient = self.store.active_user(username)
        if recipient is None:
            if username not in self.accounts:
                raise NoSuchUser(username)
            raise NotActive(username)
        return recipient

    def send_private(self, sender: ActiveUser, username: str, message: str) -> str:
        """Deliver and log one private message; return its timestamp."""
        recipient = self._recipient(sender, username, "You cannot send a message to yourself")
        message = single_line(message)
        timestamp = self.timestamps.now()
        self.messagelog.append(timestamp, sender.name, message)
        recipient.session.deliver(Delivery("MSG", f"{timestamp}, {sender.name}: {message}"))
        return timestamp

    def other_active_users(self, user: ActiveUser) -> list[ActiveUser]:
        return [other for other in self.store.active_users() if other is not user]

    def peer_address(self, user: ActiveUser, username: str) -> ActiveUser:
        return self._recipient(user, username, "You cannot send a file to yourself")

    # Groups

    def _group_log(self, name: str) -> RecordLog:
        # A log left by an earlier group of this name is kept: RecordLog
        # continues its numbering.
        group_log = RecordLog(os.path.join(self.data_dir, group_log_name(name)), self.journal)
        self._group_logs.add(group_log)
        self._used(group_log)
        return group_log

    def _used(self, group_log: RecordLog) -> None:
        open_logs = self._open_group_logs
        if group_log in open_logs:
            open_logs.move_to_end(group_log)
            return
        open_logs[group_log] = None
        if len(open_logs) > MAX_OPEN_GROUP_LOGS:
            self._trim_group_logs()

    def _trim_group_logs(self) -> None:
        """
        The least recently used logs with nothing waiting give back their
        descriptors (their groups still exist); none is flushed here. Runs
        after every journal flush too, for logs that were busy before it.
        """
        open_logs = self._open_group_logs
        if len(open_logs) <= MAX_OPEN_GROUP_LOGS:
            return
        for candidate in list(open_logs):
            if candidate.release():
                del open_logs[candidate]
                if len(open_logs) <= MAX_OPEN_GROUP_LOGS:
                    return

    def _remove_group(self, group: Group) -> None:
        self.store.remove_group(group)
        self._group_logs.discard(group.log)
        self._open_group_logs.pop(group.log, None)
        try:
            group.log.close()
        except OSError:
            # Its last records are lost: the journal turns their
            # acknowledgements into errors. The group is gone all the same.
            log.failure("closing {path}", path=group.log.path)

    def create_group(self, owner: ActiveUser, name: str, usernames: list[str],
                     broadcast: bool = False) -> Group:
        if not GROUP_NAME.fullmatch(name):
            raise ChatError("Group name must be 1-32 letters and digits")
        if self.store.group(name) is not None:
            raise ChatError(f"A group chat (Name: {name}) already exists")
        invited: list[str] = []
        for username in usernames:
            if username == owner.name or username in invited:
                continue
            if self.store.active_user(username) is None:
                if username not in self.accounts:
                    raise NoSuchUser(username)
                raise NotActive(username)
            invited.append(username)
        if not invited:
            raise ChatError("Please enter at least one more active user.")
        group = Group(name, owner.name, invited, self._group_log(name), broadcast)
        self.store.add_group(group)
        invitation = Delivery(
            "NOTICE",
            f"You have been invited to the group chat {name} by {owner.name}. "
            f"Type /joingroup {name} to join.",
        )
        for username in invited:
            self.store.active_user(username).session.deliver(invitation)
        return group

    def join_group(self, user: ActiveUser, name: str) -> Group:
        group = self.store.group(name)
        if group is None:
            raise ChatError(f"Groupchat (Name: {name}) does not exist.")
        joined = group.members.get(user.name)
        if joined is None:
            raise ChatError(f"You are not a member of the group chat {group.name}.")
        if joined:
            raise ChatError(f"You have already joined the group chat {group.name}.")
        group.members[user.name] = True
        return group

    def group_message(self, sender: ActiveUser, name: str, message: str) -> Group:
        group = self.store.group(name)
        if group is None:
            raise ChatError("The group chat does not exist.")
        joined = group.members.get(sender.name)
        if joined is None:
            raise ChatError("You are not in this group chat.")
        if not joined:
            raise ChatError("Please join the group before sending messages.")
        if group.broadcast and sender.name != group.owner:
            raise ChatError("Only the owner can send messages to this broadcast group.")
        message = single_line(message)
        timestamp = self.timestamps.now()
        group.log.append(timestamp, sender.name, message)
        self._used(group.log)
        self._fan_out(group, Delivery("MSG", f"{timestamp}, {group.name}, {sender.name}: {message}"),
                      sender.name)
        return group

    def _fan_out(self, group: Group, delivery: Delivery, sender: str) -> None:
        active_user = self.store.active_user
        for username, joined in group.members.items():
            if not joined or username == sender:
                continue
            member = active_user(username)
            if member is None:
                continue
            try:
                member.session.deliver(delivery)
            except Exception:  # noqa: BLE001
                # One broken member must not stop the others' deliveries.
                log.failure("delivering to {username}", username=username)

    # Beyond the seed (SPEC.md section 6)

    def leave_group(self, user: ActiveUser, name: str) -> Group:
        """
        Leave a group (or decline its invitation). The other joined active
        members are told when a joined member leaves; a group with no
        members left is removed, its log kept (a new group of that name
        continues its numbering).
        """
        group = self.store.group(name)
        if group is None:
            raise ChatError("The group chat does not exist.")
        if user.name not in group.members:
            raise ChatError("You are not in this group chat.")
        joined = group.members.pop(user.name)
        if not group.members:
            self._remove_group(group)
        elif joined:
            self._fan_out(group, Delivery("NOTICE", f"{user.name} has left the group chat {group.name}."),
                          user.name)
        return group

    def change_password(self, user: ActiveUser, current: str, new: str) -> defer.Deferred:
        """
        Check C{current} through the login checker, then store C{new} hashed.
        Fires with None, or fails with L{ChatError}. A wrong C{current}
        counts toward the lockout like a failed login; while the account is
        blocked its password cannot be changed.
        """
        username = user.name
        if self.lockout.is_blocked(username):
            return defer.fail(ChatError(errors.ACCOUNT_BLOCKED))
        try:
            check_new_password(new)
        except ChatError:
            return defer.fail()
        checker = self.portal.checkers[IUsernamePassword]
        d = checker.requestAvatarId(UsernamePassword(username, current))
        d.addCallbacks(lambda _: self.passwords.hash(new), self._password_refused,
                       errbackArgs=(username,))
        d.addCallback(self._store_password, username)
        return d

    def _password_refused(self, failure, username: str):
        failure.trap(WrongPassword, UnknownUser)
        if self.lockout.is_blocked(username):
            # Blocked by a concurrent check while this one ran (in a thread):
            # a failure now counts for nothing.
            raise ChatError(errors.ACCOUNT_BLOCKED)
        self.lockout.record_failure(username)
        raise ChatError(errors.CURRENT_INCORRECT)

    def _store_password(self, secret: str, username: str) -> None:
        if self.lockout.is_blocked(username):  # blocked while the hash was computed
            raise ChatError(errors.ACCOUNT_BLOCKED)
        try:
            rewrite_credentials(self.accounts.path, username, secret)
        except AccountNotInFile:
            raise ChatError("Your account is no longer in the credentials file; "
                            "the password was not changed.") from None
        self.accounts.secrets[username] = secret
        self.lockout.record_success(username)

    def delete_message(self, user: ActiveUser, seq: int) -> None:
        """Mark private message C{seq} deleted, if C{user} wrote it."""
        self._delete_record(self.messagelog, user, seq)

    def delete_group_message(self, user: ActiveUser, name: str, seq: int) -> Group:
        """Mark message C{seq} of a group deleted, if C{user} wrote it; tell the members."""
        group = self.store.group(name)
        if group is None:
            raise ChatError("The group chat does not exist.")
        if self._delete_record(group.log, user, seq):
            self._fan_out(group, Delivery("NOTICE", f"{user.name} deleted message {seq} in {group.name}."),
                          user.name)
        return group

    def _delete_record(self, record_log: RecordLog, user: ActiveUser, seq: int) -> bool:
        try:
            return delete_record(record_log, seq, user.name)
        except NoSuchRecord:
            raise ChatError(f"No message {seq}.") from None
        except NotAuthor:
            raise ChatError("You can only delete your own messages.") from None

    # Shutdown

    def close(self) -> None:
        self.lockout.stop()
        self.journal.flush()
        for log_file in [self.userlog, self.messagelog, *self._group_logs]:
            log_file.close()
