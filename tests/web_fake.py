"""
A small in-memory realm following docs of the core's API (CORE_API.md), for
the web front end's unit tests: enough of login, presence, private and group
messages, history and groups to drive the WebSocket protocol.
"""

import time
from dataclasses import dataclass, field

from twisted.internet import defer


class ChatError(Exception):
    def __init__(self, code, **fields):
        super().__init__(code)
        self.code = code
        for k, v in fields.items():
            setattr(self, k, v)


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
    timestamp: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class MemberJoined:
    group: str
    username: str
    timestamp: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class MemberLeft:
    group: str
    username: str
    timestamp: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class UserOnline:
    username: str
    timestamp: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class UserOffline:
    username: str
    timestamp: str = ""
    time: float = 0.0


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


def stamp(t):
    return time.strftime("%d %b %Y %H:%M:%S", time.localtime(t))


class FakeChat:
    def __init__(self, clock, accounts=None, attempts=3):
        self.clock = clock
        self.accounts = dict(accounts or {"Yoda": "wise@!man", "Hans": "falcon*solo", "leia": "alderaan",
                                          "luke": "jedi*knight"})
        self.attempts = attempts
        self.failures = {}
        self.blocked_until = {}
        self.users = {}
        self.messages = []
        self.groups = {}
        self.group_messages = {}

    def _now(self):
        t = self.clock.seconds()
        return t, stamp(t)

    def _fanout_presence(self, event, skip):
        for u in list(self.users.values()):
            if u.name != skip and u.session.wants_presence:
                u.session.receive(event)

    def login(self, username, password, session):
        now = self.clock.seconds()
        if self.blocked_until.get(username, 0) > now:
            return defer.fail(ChatError("blocked"))
        if username not in self.accounts:
            return defer.fail(ChatError("no-such-account"))
        if self.accounts[username] != password:
            n = self.failures[username] = self.failures.get(username, 0) + 1
            if n >= self.attempts:
                self.failures[username] = 0
                self.blocked_until[username] = now + 10
                return defer.fail(ChatError("blocked-now"))
            return defer.fail(ChatError("wrong-password"))
        if username in self.users:
            return defer.fail(ChatError("already-logged-in"))
        self.failures[username] = 0
        t, ts = self._now()
        user = User(username, session.ip, session.udp_port, ts, t, session)
        self.users[username] = user
        self._fanout_presence(UserOnline(username, ts, t), username)
        return defer.succeed(user)

    def logout(self, user):
        if self.users.get(user.name) is user:
            del self.users[user.name]
            t, ts = self._now()
            self._fanout_presence(UserOffline(user.name, ts, t), user.name)
        return defer.succeed(None)

    def active_users(self):
        return defer.succeed(list(self.users.values()))

    def account_names(self):
        return defer.succeed(sorted(self.accounts))

    def send_private(self, user, to, text):
        if to == user.name:
            return defer.fail(ChatError("to-self"))
        if to not in self.accounts:
            return defer.fail(ChatError("no-such-user", name=to))
        if to not in self.users:
            return defer.fail(ChatError("not-active", name=to))
        t, ts = self._now()
        m = Message("private", len(self.messages) + 1, ts, t, user.name, to, None, text)
        self.messages.append(m)
        self.users[to].session.receive(m)
        return defer.succeed(m)

    def _group(self, name):
        return self.groups.get(name.casefold())

    def create_group(self, user, name, usernames, broadcast=False):
        if not (name.isascii() and name.isalnum() and 1 <= len(name) <= 32):
            return defer.fail(ChatError("bad-group-name", group=name))
        if self._group(name):
            return defer.fail(ChatError("group-exists", group=name))
        members = []
        for u in usernames:
            if u == user.name or u in members:
                continue
            if u not in self.accounts:
                return defer.fail(ChatError("no-such-user", name=u))
            if u not in self.users:
                return defer.fail(ChatError("not-active", name=u))
            members.append(u)
        if not members:
            return defer.fail(ChatError("no-other-member"))
        info = GroupInfo(name, user.name, broadcast, [(user.name, True)] + [(m, False) for m in members])
        self.groups[name.casefold()] = info
        self.group_messages[name.casefold()] = []
        t, ts = self._now()
        for m in members:
            self.users[m].session.receive(Invited(name, user.name, ts, t))
        return defer.succeed(info)

    def _member(self, info, username):
        for name, joined in info.members:
            if name == username:
                return joined
        return None

    def join_group(self, user, name):
        info = self._group(name)
        if info is None:
            return defer.fail(ChatError("no-such-group", group=name))
        joined = self._member(info, user.name)
        if joined is None:
            return defer.fail(ChatError("not-invited", group=info.name))
        if joined:
            return defer.fail(ChatError("already-joined", group=info.name))
        info.members = [(n, j or n == user.name) for n, j in info.members]
        t, ts = self._now()
        for n, j in info.members:
            if j and n != user.name and n in self.users:
                self.users[n].session.receive(MemberJoined(info.name, user.name, ts, t))
        return defer.succeed(info)

    def invite(self, user, name, username):
        info = self._group(name)
        if info is None:
            return defer.fail(ChatError("no-such-group", group=name))
        joined = self._member(info, user.name)
        if joined is None:
            return defer.fail(ChatError("not-member", group=info.name))
        if not joined:
            return defer.fail(ChatError("not-joined", group=info.name))
        if username not in self.accounts:
            return defer.fail(ChatError("no-such-user", name=username))
        if self._member(info, username) is not None:
            return defer.fail(ChatError("already-member", name=username, group=info.name))
        info.members.append((username, False))
        if username in self.users:
            t, ts = self._now()
            self.users[username].session.receive(Invited(info.name, user.name, ts, t))
        return defer.succeed(info)

    def send_group(self, user, name, text):
        info = self._group(name)
        if info is None:
            return defer.fail(ChatError("no-such-group", group=name))
        joined = self._member(info, user.name)
        if joined is None:
            return defer.fail(ChatError("not-member", group=info.name))
        if not joined:
            return defer.fail(ChatError("not-joined", group=info.name))
        if info.broadcast and user.name != info.owner:
            return defer.fail(ChatError("broadcast-owner-only", group=info.name))
        log = self.group_messages[name.casefold()]
        t, ts = self._now()
        m = Message("group", len(log) + 1, ts, t, user.name, None, info.name, text)
        log.append(m)
        for n, j in info.members:
            if j and n != user.name and n in self.users:
                self.users[n].session.receive(m)
        return defer.succeed(m)

    def leave_group(self, user, name):
        info = self._group(name)
        if info is None:
            return defer.fail(ChatError("no-such-group", group=name))
        if self._member(info, user.name) is None:
            return defer.fail(ChatError("not-member", group=info.name))
        info.members = [(n, j) for n, j in info.members if n != user.name]
        t, ts = self._now()
        for n, j in info.members:
            if j and n in self.users:
                self.users[n].session.receive(MemberLeft(info.name, user.name, ts, t))
        if not info.members:
            del self.groups[name.casefold()]
        return defer.succeed(info)

    def change_password(self, user, current, new):
        if self.accounts[user.name] != current:
            return defer.fail(ChatError("current-incorrect"))
        if any(c.isspace() for c in new):
            return defer.fail(ChatError("password-whitespace"))
        if not new:
            return defer.fail(ChatError("password-empty"))
        self.accounts[user.name] = new
        return defer.succeed(None)

    def history(self, user, username, limit, before=None):
        if username not in self.accounts:
            return defer.fail(ChatError("no-such-user", name=username))
        pair = {user.name, username}
        ms = [m for m in self.messages if {m.sender, m.recipient} == pair and (before is None or m.seq < before)]
        return defer.succeed(ms[-limit:])

    def group_history(self, user, name, limit, before=None):
        info = self._group(name)
        if info is None:
            return defer.fail(ChatError("no-such-group", group=name))
        joined = self._member(info, user.name)
        if joined is None:
            return defer.fail(ChatError("not-member", group=info.name))
        if not joined:
            return defer.fail(ChatError("history-not-joined", group=info.name))
        ms = [m for m in self.group_messages[name.casefold()] if before is None or m.seq < before]
        return defer.succeed(ms[-limit:])

    def group_info(self, name):
        return defer.succeed(self._group(name))

    def groups_of(self, username):
        return defer.succeed([g for g in self.groups.values() if self._member(g, username) is not None])

    def delete_message(self, user, seq):
        return defer.fail(ChatError("no-such-message", seq=seq))

    def delete_group_message(self, user, name, seq):
        return defer.fail(ChatError("no-such-message", seq=seq))
