"""
A small in-memory realm following docs of the chat core's API (CORE_API.md):
enough for the IRC front end's unit tests. Results of login and sends fire
on the next turn of the clock, as the real core's do after its journal.
"""

import time
from dataclasses import dataclass, field

from twisted.internet import defer, task

ACCOUNTS = {"Hans": "falcon*solo", "Yoda": "wise@!man", "vader": "sithlord**", "leia": "alderaan",
            "luke": "jedi*knight", "obiwan": "hellothere", "han": "a:b"}


class ChatError(Exception):
    def __init__(self, code, **fields):
        super().__init__(code)
        self.code = code
        for k, v in fields.items():
            setattr(self, k, v)


def stamp(t):
    return time.strftime("%d %b %Y %H:%M:%S", time.localtime(t))


@dataclass(frozen=True)
class Message:
    kind: str
    seq: int
    timestamp: str
    time: float
    sender: str
    recipient: str | None
    group: str | None
    text: str


@dataclass(frozen=True)
class Invited:
    group: str
    by: str
    timestamp: str
    time: float


@dataclass(frozen=True)
class MemberJoined:
    group: str
    username: str
    timestamp: str
    time: float


@dataclass(frozen=True)
class MemberLeft:
    group: str
    username: str
    timestamp: str
    time: float


@dataclass(frozen=True)
class UserOnline:
    username: str
    timestamp: str
    time: float


@dataclass(frozen=True)
class UserOffline:
    username: str
    timestamp: str
    time: float


@dataclass(frozen=True)
class ServerNotice:
    text: str
    timestamp: str
    time: float


@dataclass
class User:
    name: str
    ip: str
    udp_port: int
    since: str
    since_time: float
    session: object


@dataclass
class GroupInfo:
    name: str
    owner: str
    broadcast: bool
    members: list = field(default_factory=list)


class FakeChat:
    def __init__(self, clock=None, attempts=3):
        self.clock = clock or task.Clock()
        self.attempts = attempts
        self.users = {}  # name -> User, login order
        self.failures = {}
        self.blocked_until = {}
        self.groups = {}  # lower -> GroupInfo (members: list of [name, joined])
        self.private = []
        self.group_logs = {}
        self.logouts = []

    def _later(self, result=None, error=None):
        d = defer.Deferred()
        if error is not None:
            self.clock.callLater(0, d.errback, error)
        else:
            self.clock.callLater(0, d.callback, result)
        return d

    def _now(self):
        t = self.clock.seconds()
        return stamp(t), t

    def _events(self, names, event):
        for name in names:
            user = self.users.get(name)
            if user is not None:
                user.session.receive(event)

    def login(self, username, password, session):
        now = self.clock.seconds()
        if self.blocked_until.get(username, 0) > now:
            return self._later(error=ChatError("blocked"))
        if username not in ACCOUNTS:
            return self._later(error=ChatError("no-such-account"))
        if ACCOUNTS[username] != password:
            self.failures[username] = self.failures.get(username, 0) + 1
            if self.failures[username] >= self.attempts:
                self.failures[username] = 0
                self.blocked_until[username] = now + 10
                return self._later(error=ChatError("blocked-now"))
            return self._later(error=ChatError("wrong-password"))
        if username in self.users:
            return self._later(error=ChatError("already-logged-in"))
        self.failures[username] = 0
        ts, t = self._now()
        user = User(username, session.ip, session.udp_port, ts, t, session)
        self.users[username] = user
        event = UserOnline(username, ts, t)
        for other in list(self.users.values()):
            if other.session.wants_presence:
                other.session.receive(event)
        return self._later(user)

    def logout(self, user):
        if self.users.get(user.name) is user:
            del self.users[user.name]
            self.logouts.append(user.name)
            ts, t = self._now()
            event = UserOffline(user.name, ts, t)
            for other in list(self.users.values()):
                if other.session.wants_presence:
                    other.session.receive(event)
        return defer.succeed(None)

    def active_users(self):
        return defer.succeed(list(self.users.values()))

    def account_names(self):
        return defer.succeed(sorted(ACCOUNTS))

    def send_private(self, user, to, text):
        if to == user.name:
            return self._later(error=ChatError("to-self"))
        if to not in ACCOUNTS:
            return self._later(error=ChatError("no-such-user", name=to))
        if to not in self.users:
            return self._later(error=ChatError("not-active", name=to))
        ts, t = self._now()
        message = Message("private", len(self.private) + 1, ts, t, user.name, to, None, text)
        self.private.append(message)
        self.users[to].session.receive(message)
        return self._later(message)

    def _info(self, g):
        return GroupInfo(g.name, g.owner, g.broadcast, [tuple(m) for m in g.members])

    def create_group(self, user, name, usernames, broadcast=False, allow_alone=False):
        if not name.isalnum() or not name.isascii() or len(name) > 32:
            return self._later(error=ChatError("bad-group-name"))
        if name.lower() in self.groups:
            return self._later(error=ChatError("group-exists", group=name))
        others = [n for n in dict.fromkeys(usernames) if n != user.name]
        if not others and not allow_alone:
            return self._later(error=ChatError("no-other-member"))
        group = GroupInfo(name, user.name, broadcast, [[user.name, True]] + [[n, False] for n in others])
        self.groups[name.lower()] = group
        self.group_logs[name.lower()] = []
        ts, t = self._now()
        self._events(others, Invited(name, user.name, ts, t))
        return self._later(self._info(group))

    def _member(self, group, name):
        for m in group.members:
            if m[0] == name:
                return m
        return None

    def join_group(self, user, name):
        group = self.groups.get(name.lower())
        if group is None:
            return self._later(error=ChatError("no-such-group", group=name))
        member = self._member(group, user.name)
        if member is None:
            return self._later(error=ChatError("not-invited", group=name))
        if member[1]:
            return self._later(error=ChatError("already-joined", group=group.name))
        member[1] = True
        ts, t = self._now()
        self._events([m[0] for m in group.members if m[1] and m[0] != user.name],
                     MemberJoined(group.name, user.name, ts, t))
        return self._later(self._info(group))

    def invite(self, user, name, username):
        group = self.groups.get(name.lower())
        if group is None:
            return self._later(error=ChatError("no-such-group", group=name))
        member = self._member(group, user.name)
        if member is None:
            return self._later(error=ChatError("not-member", group=name))
        if not member[1]:
            return self._later(error=ChatError("not-joined", group=name))
        if username not in ACCOUNTS:
            return self._later(error=ChatError("no-such-user", name=username))
        if self._member(group, username) is not None:
            return self._later(error=ChatError("already-member", name=username, group=name))
        group.members.append([username, False])
        ts, t = self._now()
        self._events([username], Invited(group.name, user.name, ts, t))
        return self._later(self._info(group))

    def send_group(self, user, name, text):
        group = self.groups.get(name.lower())
        if group is None:
            return self._later(error=ChatError("no-such-group", group=name))
        member = self._member(group, user.name)
        if member is None:
            return self._later(error=ChatError("not-member", group=name))
        if not member[1]:
            return self._later(error=ChatError("not-joined", group=name))
        if group.broadcast and user.name != group.owner:
            return self._later(error=ChatError("broadcast-owner-only", group=name))
        log = self.group_logs[name.lower()]
        ts, t = self._now()
        message = Message("group", len(log) + 1, ts, t, user.name, None, group.name, text)
        log.append(message)
        self._events([m[0] for m in group.members if m[1] and m[0] != user.name], message)
        return self._later(message)

    def leave_group(self, user, name):
        group = self.groups.get(name.lower())
        if group is None:
            return self._later(error=ChatError("no-such-group", group=name))
        member = self._member(group, user.name)
        if member is None:
            return self._later(error=ChatError("not-member", group=name))
        group.members.remove(member)
        ts, t = self._now()
        if member[1]:
            self._events([m[0] for m in group.members if m[1]], MemberLeft(group.name, user.name, ts, t))
        info = self._info(group)
        if not group.members:
            del self.groups[name.lower()]
        return self._later(info)

    def history(self, user, username, limit, before=None):
        if username not in ACCOUNTS:
            return defer.fail(ChatError("no-such-user", name=username))
        pair = {user.name, username}
        found = [m for m in self.private if {m.sender, m.recipient} == pair
                 and (before is None or m.seq < before)]
        return defer.succeed(found[-limit:])

    def group_history(self, user, name, limit, before=None):
        group = self.groups.get(name.lower())
        if group is None:
            return defer.fail(ChatError("no-such-group", group=name))
        member = self._member(group, user.name)
        if member is None:
            return defer.fail(ChatError("not-member", group=name))
        if not member[1]:
            return defer.fail(ChatError("history-not-joined", group=name))
        found = [m for m in self.group_logs[name.lower()] if before is None or m.seq < before]
        return defer.succeed(found[-limit:])

    def group_info(self, name):
        group = self.groups.get(name.lower())
        return defer.succeed(self._info(group) if group else None)

    def groups_of(self, username):
        return defer.succeed([self._info(g) for g in self.groups.values()
                              if self._member(g, username) is not None])

    def announce(self, text):
        ts, t = self._now()
        self._events(list(self.users), ServerNotice(text, ts, t))
