"""
The Redis bus of a cluster node: presence, deliveries to other nodes,
group changes and the lockout, over txredisapi (one command connection,
one subscriber connection, both reconnecting with backoff by themselves).

It plugs into the realm only through the core's seams
(L{chatproto.core.interfaces}): it is the realm's L{IPresence} (who is
logged in elsewhere, each session claimed against the account's session
limit on every node at once), L{IDelivery} (group events for other nodes)
and L{IGroupNews}; what happens on other nodes it tells the realm through
the realm's public methods (L{IRealmOfNode}, L{IGroupChanges}).

Redis keys and channels (PREFIX is C{chatproto:DB:}):
  PREFIX presence        hash: username -> JSON {node: [[sid, front end, ip, udp_port, since,
                         since_time], ...]}: every session of the account, per node
  PREFIX users:NODE      set: the usernames with sessions on NODE (to clean up after it)
  PREFIX alive:NODE      NODE's heartbeat, set every HEARTBEAT s, expiring after ALIVE s
  PREFIX all             channel: logins, logouts, group changes, lockout, to every node
  PREFIX node:NODE       channel: events for NODE's users, one publish per node and turn
A node is dead once its heartbeat expired or nobody listens on its channel
any more (Redis drops a killed process's subscription at once).
"""

import collections
import itertools
import json
import secrets

import txredisapi
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger
from zope.interface import implementer

from ..core import errors, events
from ..core.errors import LoginFailed
from ..core.interfaces import GroupRecord, IDelivery, IGroupNews, IPresence
from ..turns import EndOfTurn
from .commands import Away, BadCommand, Block, Deleted, GroupChange, Off, Sessions, parse

log = Logger()

HEARTBEAT = 2.0
ALIVE = 6  # a node silent this long is dead: its users go within ALIVE + HEARTBEAT seconds
SEEN = 10000  # messages remembered, so that a catch-up does not deliver one twice
COMMAND_TIMEOUT = 5
HOLD = 5.0  # a login while the node reconnects to Redis waits this long for it, then is refused

EVENT_TYPES = {cls.__name__: cls for cls in (
    events.Message, events.Invited, events.MemberJoined, events.MemberLeft, events.MessageDeleted,
    events.FileOffer, events.ServerNotice, events.MembersChanged, events.ReadMarker,
    events.AwayChanged, events.PrivateMessageDeleted)}

# Whether a node lives: its heartbeat is there and it listens on its channel. ARGV[1] the node,
# KEYS[3] the alive: prefix, KEYS[5] the node: channel prefix (in every script that needs it).
LIVES = """
local function lives(node)
  return redis.call('EXISTS', KEYS[3] .. node) == 1
     and redis.call('PUBSUB', 'NUMSUB', KEYS[5] .. node)[2] > 0
end
"""
# One more session of an account on this node, if the account's sessions on every living node
# are fewer than the limit (a dead node's are dropped on the way).
# KEYS: presence, users:NODE, alive: prefix, users: prefix, node: prefix.
# ARGV: username, node, session JSON, limit. Returns [1 (claimed) or 0 (too many), the dead
# nodes found on the way...].
CLAIM = LIVES + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local places = {}
if raw then places = cjson.decode(raw) end
local total = 0
local reply = {0}
for node, sessions in pairs(places) do
  if node ~= ARGV[2] and not lives(node) then
    places[node] = nil
    redis.call('SREM', KEYS[4] .. node, ARGV[1])
    table.insert(reply, node)
  else
    total = total + #sessions
  end
end
if total >= tonumber(ARGV[4]) then
  if #reply > 1 then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(places)) end
  return reply
end
local mine = places[ARGV[2]] or {}
table.insert(mine, cjson.decode(ARGV[3]))
places[ARGV[2]] = mine
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(places))
redis.call('SADD', KEYS[2], ARGV[1])
reply[1] = 1
return reply
"""
# Every session of an account on this node, as given (after a reconnection): no limit, they
# are logged in already. KEYS: presence, users:NODE. ARGV: username, node, sessions JSON.
REGISTER = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local places = {}
if raw then places = cjson.decode(raw) end
places[ARGV[2]] = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(places))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
# One session ended. KEYS: presence, users:NODE. ARGV: username, node, sid.
# Returns 1 when it was there.
RELEASE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then redis.call('SREM', KEYS[2], ARGV[1]) return 0 end
local places = cjson.decode(raw)
local mine = places[ARGV[2]]
if not mine then redis.call('SREM', KEYS[2], ARGV[1]) return 0 end
local kept = {}
for _, one in ipairs(mine) do
  if tostring(one[1]) ~= ARGV[3] then table.insert(kept, one) end
end
if #kept == #mine then return 0 end
if #kept == 0 then
  places[ARGV[2]] = nil
  redis.call('SREM', KEYS[2], ARGV[1])
else
  places[ARGV[2]] = kept
end
if next(places) == nil then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(places))
end
return 1
"""
# Every session of a node gone (unless it lives, with ARGV[2] "if dead"). KEYS: presence,
# users:NODE, alive: prefix, (unused), node: prefix. ARGV: node, "if dead" or "".
# Returns the names whose sessions there were removed, or false when the node lives.
FORGET_NODE = LIVES + """
if ARGV[2] == "if dead" and lives(ARGV[1]) then return false end
local removed = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local raw = redis.call('HGET', KEYS[1], name)
  if raw then
    local places = cjson.decode(raw)
    if places[ARGV[1]] then
      places[ARGV[1]] = nil
      table.insert(removed, name)
      if next(places) == nil then
        redis.call('HDEL', KEYS[1], name)
      else
        redis.call('HSET', KEYS[1], name, cjson.encode(places))
      end
    end
  end
end
redis.call('DEL', KEYS[2])
return removed
"""


class RemoteSessionInfo:
    """One session of a user on another node (C{/sessions}, C{/activeuser}, a file offer)."""

    __slots__ = ("bus", "sid", "name", "node", "frontend", "ip", "udp_port", "since", "since_time")
    peers = None
    gone = False

    def __init__(self, bus, sid, name, node, frontend, ip, udp_port, since, since_time):
        self.bus = bus
        self.sid = sid
        self.name = name
        self.node = node
        self.frontend = frontend
        self.ip = ip
        self.udp_port = udp_port
        self.since = since
        self.since_time = since_time

    @property
    def session(self):
        return self  # what a front end reads of a session (its frontend), and receive()

    def receive(self, event) -> None:
        """To this one session, on its node."""
        self.bus.queue(self.node, self.name, event, sid=self.sid)


class RemoteSession:
    """The sessions of a user on other nodes: what they receive goes over the bus to each node."""

    frontend = "remote"
    wants_presence = False

    __slots__ = ("bus", "user")

    def __init__(self, bus, user):
        self.bus = bus
        self.user = user

    @property
    def ip(self):
        return self.user.ip

    @property
    def udp_port(self):
        return self.user.udp_port

    def receive(self, event) -> None:
        for node in self.user.nodes:
            self.bus.queue(node, self.user.name, event)

    def disconnect(self, notice) -> None:
        for node in list(self.user.nodes):
            self.bus.end_session(node, self.user.name, notice)  # each node disconnects its own


class RemoteUser:
    """A user's sessions on the other nodes, as the realm sees them (L{IPresence.elsewhere})."""

    __slots__ = ("name", "nodes", "session", "gone")
    peers = None  # as the realm's User: one session, which stands for all of them

    def __init__(self, bus, name):
        self.name = name
        self.nodes: dict[str, list] = {}  # node -> [RemoteSessionInfo] in login order
        self.session = RemoteSession(bus, self)
        self.gone = False

    @property
    def sessions(self) -> list:
        return sorted((one for there in self.nodes.values() for one in there), key=lambda one: one.since_time)

    @property
    def count(self) -> int:
        return sum(len(there) for there in self.nodes.values())

    def _first(self):
        return min((there[0] for there in self.nodes.values()), key=lambda one: one.since_time)

    def for_files(self) -> RemoteSessionInfo:
        """The session a file offer goes to: the latest logged in that can receive files (which
        one its user used last is known on its own node only)."""
        return max((one for one in self.sessions if one.udp_port), key=lambda one: one.since_time,
                   default=self._first())

    @property
    def ip(self):
        return self._first().ip

    @property
    def udp_port(self):
        return self._first().udp_port

    @property
    def since(self):
        return self._first().since

    @property
    def since_time(self):
        return self._first().since_time


@implementer(IPresence, IDelivery, IGroupNews)
class ClusterBus:
    """
    @param realm: the L{ChatRealm} of this node (install() attaches the bus to it).
    @param ledger: its L{ClusterLedger}.
    @param redis: (host, port, db).
    """

    def __init__(self, realm, ledger, redis, clock, node: str | None = None, lockout=None,
                 accounts=None, bans=None):
        self.realm = realm
        self.lockout = lockout  # a SharedLockout: its blocks are told to every node at once
        self.accounts = accounts  # a SharedAccounts: changes of the accounts, to every node
        self.bans = bans  # a SharedBans: bans and their end, to every node
        self.ledger = ledger
        self.host, self.port, self.db = redis
        self.clock = clock
        self.node = node or secrets.token_hex(6)
        prefix = f"chatproto:{self.db}:"
        self.prefix = prefix
        self.presence_key = prefix + "presence"
        self.all_channel = prefix + "all"
        self.node_channel = prefix + "node:" + self.node
        # IPresence.elsewhere: username -> RemoteUser, the account's sessions on other nodes.
        self.elsewhere: dict[str, RemoteUser] = {}
        # This node's sessions as claimed in Redis: username -> {User: [sid, front end, ip,
        # udp_port, since, since_time]} (registered again after a reconnection).
        self.mine: dict[str, dict] = {}
        self._sids = itertools.count(1)
        self.up = False  # subscribed and registered: claims and deliveries work
        self.ever_up = False
        self.cut_pos = 0  # the last position known when the bus was lost
        self.received_pos = 0
        self._pending: dict = {}  # node -> {id(event): [event, [names]]}
        self._turn = EndOfTurn(clock, self.flush)
        self._positions: dict = {}  # (log, seq) -> pos of messages committed here
        self._seen = set()
        self._seen_order = collections.deque()
        self._heartbeat = None
        self._commands = None
        self._subscriber = None
        self._up_waiters: list = []
        self.stopped = False
        self.publishes = 0  # counted, for the benchmark and tests

    # Wiring

    def install(self) -> None:
        self.realm.attach_node(self)
        if self.lockout is not None:
            self.lockout.tell = lambda username, until: self.tell_all(Block(username, until))
        self.ledger.on_group_change = lambda op: self.tell_all(GroupChange(list(op)))
        self.ledger.on_committed = self._committed
        self.ledger.on_first_seq = self.realm.first_seq_known
        for shared in (self.accounts, self.bans):
            if shared is not None:
                shared.tell = self.tell_all
        self.ledger.on_deleted = lambda log_name, seq, author: self.tell_all(Deleted(log_name, seq, author))

    def start(self, reactor) -> None:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, self.host, self.port, timeout=5)
        commands = txredisapi.RedisFactory(f"{self.host}:{self.port}", self.db, 1, isLazy=True,
                                           replyTimeout=COMMAND_TIMEOUT)
        commands.protocol = _Commands
        commands.startConnecting(endpoint)
        self._commands = commands
        self.redis = commands.handler
        subscriber = txredisapi.SubscriberFactory(isLazy=True)
        subscriber.protocol = _Subscriber
        subscriber.bus = self
        subscriber.startConnecting(endpoint)
        self._subscriber = subscriber
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(HEARTBEAT, now=False).addErrback(
            lambda f: log.failure("heartbeat", f))

    def when_up(self) -> defer.Deferred:
        if self.up:
            return defer.succeed(None)
        d = defer.Deferred()
        self._up_waiters.append(d)
        return d

    @defer.inlineCallbacks
    def stop(self):
        """Forget this node's users in Redis, stop (re)connecting."""
        self.stopped = True
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self.flush()
        if self.up:
            try:
                yield self.redis.delete(self.prefix + "alive:" + self.node)
                removed = yield self._forget_node(self.node)
                if removed:
                    yield self._publish(self.all_channel, Off(removed, node=self.node).to_json())
            except Exception as e:  # noqa: BLE001 - Redis may be gone: its keys expire anyway
                log.warn("Cluster: cannot say goodbye to Redis: {why}", why=e)
        self.up = False
        for factory in (self._subscriber, self._commands):
            if factory is not None:
                yield factory.disconnect()

    # The connection

    @defer.inlineCallbacks
    def _subscribed(self, protocol):
        """The subscriber is (re)connected: subscribe, register, learn who is where, catch up."""
        try:
            yield protocol.subscribe([self.all_channel, self.node_channel])
            yield self.redis.set(self.prefix + "alive:" + self.node, "1", expire=ALIVE)
            yield self._forget_node(self.node)  # what a partition may have left behind
            yield self._register_all()
            entries = yield self.redis.hgetall(self.presence_key)
            self._load_presence(entries)
            first = not self.ever_up
            self.up = self.ever_up = True
            if first:
                log.info("Cluster: node {node} joined ({n} users on other nodes)", node=self.node,
                         n=len(self.elsewhere))
            else:
                log.info("Cluster: node {node} reconnected to Redis", node=self.node)
                yield self._catch_up()
        except Exception as e:  # noqa: BLE001 - the next reconnection tries again
            log.warn("Cluster: cannot register with Redis: {why}", why=e)
            protocol.transport.loseConnection()
            return
        self._now_up()

    @defer.inlineCallbacks
    def _register_all(self):
        """Every session here, in Redis again (after a reconnection, or taken for dead), told to every node."""
        here = []
        for name, sessions in list(self.mine.items()):
            listed = list(sessions.values())
            yield self.redis.eval(REGISTER, [self.presence_key, self.prefix + "users:" + self.node],
                                  [name, self.node, json.dumps(listed)])
            here.append([name, listed])
        if here:
            yield self._publish(self.all_channel, Sessions(here, node=self.node).to_json())

    def _now_up(self) -> None:
        waiters, self._up_waiters = self._up_waiters, []
        for d in waiters:
            d.callback(None)  # ignored by a waiter that gave up (cancelled)

    def _lost(self) -> None:
        if self.up:
            self.cut_pos = max(self.ledger.last_pos, self.received_pos)
            log.warn("Cluster: lost Redis; reconnecting (position {pos})", pos=self.cut_pos)
        self.up = False

    def _load_presence(self, entries) -> None:
        seen = {}
        for name, raw in (entries or {}).items():
            for node, sessions in json.loads(raw).items():
                if node != self.node:
                    seen.setdefault(name, {})[node] = sessions
        for name, known in list(self.elsewhere.items()):
            for node in list(known.nodes):
                if node not in seen.get(name, ()):
                    self._sessions_there(name, node, [])
        for name, places in seen.items():
            for node, sessions in places.items():
                self._sessions_there(name, node, sessions)

    @defer.inlineCallbacks
    def _catch_up(self):
        """Deliver what this node's users missed while it was cut off, from PostgreSQL by position."""
        records = yield self.ledger.reload_groups()
        self.realm.groups_loaded(records)
        away = yield self.ledger.away_messages()  # set or cleared on other nodes meanwhile: told to nobody
        self.realm.aways_loaded(away)
        users = [user.name for user in self.realm.local_users()]
        logs = [g.name for g in self.realm.groups() if any(j and n in users for n, j in g.members)]
        missed = yield self.ledger.database.messages_since(self.cut_pos, users, logs)
        delivered = 0
        for pos, message in missed:
            self.received_pos = max(self.received_pos, pos)
            if not self._first_time(message):
                continue
            if message.kind == events.PRIVATE:
                self.realm.deliver_here([message.recipient], message)
            else:
                self.realm.fan_out_here(message.group.lower(), message, message.sender)
            delivered += 1
        if missed:
            log.info("Cluster: caught up {n} messages missed while cut off", n=delivered)

    # Heartbeat and expiry

    @defer.inlineCallbacks
    def _beat(self):
        if not self.up:
            return
        try:
            before = yield self.redis.execute_command("SET", self.prefix + "alive:" + self.node, "1",
                                                      "EX", str(ALIVE), "GET")
            if before is None:
                # This node was taken for dead (a long pause): its users were removed.
                log.warn("Cluster: this node was taken for dead; registering its users again")
                yield self._register_all()
            for node in {node for user in self.elsewhere.values() for node in user.nodes}:
                yield self._bury(node)
        except Exception as e:  # noqa: BLE001 - the connection is being lost: it reconnects
            log.warn("Cluster: heartbeat failed: {why}", why=e)

    @defer.inlineCallbacks
    def _bury(self, node):
        """If C{node} is dead, its sessions go from Redis and every node's copy (told on C{all})."""
        removed = yield self._forget_node(node, if_dead=True)
        if removed is None:
            return  # it lives
        # Its users, gone from Redis (by this node, a claim, or another node that saw it first).
        names = set(removed) | {n for n, u in self.elsewhere.items() if node in u.nodes}
        self._node_gone(node, names)
        if names:
            yield self._publish(self.all_channel, Off(sorted(names), gone=True, node=node).to_json())

    def end_session(self, node, name, notice) -> None:
        """Every session of C{name} on C{node} is to end (an administrator here, C{/logout all})."""
        if self.up:
            self._publish(self.prefix + "node:" + node, {"end": [[name, notice]]})

    def _keys(self, node):
        return [self.presence_key, self.prefix + "users:" + node, self.prefix + "alive:",
                self.prefix + "users:", self.prefix + "node:"]

    def _forget_node(self, node, if_dead: bool = False) -> defer.Deferred:
        """Remove C{node}'s sessions from Redis; fire with the names removed (None: it lives)."""
        d = self.redis.eval(FORGET_NODE, self._keys(node), [node, "if dead" if if_dead else ""])
        return d.addCallback(lambda removed: None if removed is None else list(removed or []))

    # Presence: IPresence

    def claim(self, user) -> defer.Deferred:
        """One more session of C{user}'s account, counted on every node against the realm's
        C{max_sessions} in one Redis script (the realm's login)."""
        if not self.up:
            if self.stopped or not self.ever_up:
                return defer.fail(LoginFailed(errors.LOGIN_NOT_RECORDED))
            return self._held(user)
        entry = [next(self._sids), getattr(user.session, "frontend", "?"), user.ip, user.udp_port,
                 user.since, user.since_time]
        # Before Redis has it: a reconnection meanwhile registers it with the others.
        self.mine.setdefault(user.name, {})[user] = entry

        def claimed(reply):
            ok, dead = reply[0], reply[1:]
            for node in dead:  # found dead by the claim: gone everywhere now, not at the next beat
                self._bury(node).addErrback(lambda f: log.warn("Cluster: {why}", why=f.getErrorMessage()))
            if not ok:
                raise LoginFailed(errors.ALREADY_LOGGED_IN)
            # Waiting for Redis's reply means every node has been sent the news
            # before the user is welcomed.
            return self._tell_sessions(user.name)

        def failed(failure):
            if failure.check(LoginFailed):
                return failure
            log.warn("Cluster: cannot claim {name}: {why}", name=user.name, why=failure.getErrorMessage())
            raise LoginFailed(errors.LOGIN_NOT_RECORDED)

        d = self.redis.eval(CLAIM, self._keys(self.node),
                            [user.name, self.node, json.dumps(entry), str(self.realm.max_sessions)])
        return d.addCallbacks(claimed, failed)

    def _tell_sessions(self, name) -> defer.Deferred:
        """Every node is told C{name}'s sessions here now (none: gone from here)."""
        return self.tell_all(Sessions([[name, list(self.mine.get(name, {}).values())]]))

    def _held(self, user) -> defer.Deferred:
        """
        Redis is being reconnected (it restarted, say): the login waits for
        the node to be back in the cluster, up to L{HOLD} seconds, so that a
        short outage answers nobody with a server error.
        """
        waiting = self.when_up()
        timer = self.clock.callLater(HOLD, waiting.cancel)

        def up(_):
            if timer.active():
                timer.cancel()
            if user.gone:  # the client left meanwhile
                raise LoginFailed(errors.LOGIN_NOT_RECORDED)
            return self.claim(user)

        def still_down(failure):
            failure.trap(defer.CancelledError)
            log.warn("Cluster: login of {name} refused: Redis still unreachable after {n} s",
                     name=user.name, n=HOLD)
            raise LoginFailed(errors.LOGIN_NOT_RECORDED)

        return waiting.addCallbacks(up, still_down)

    def away_changed(self, username: str, text) -> defer.Deferred:
        """C{username}, logged in here, set (or cleared: None) their away message (the realm's away);
        fires once Redis has handed it to every node."""
        return self.tell_all(Away(username, text))

    def release(self, user) -> None:
        """A session here ended (the realm's logout, or a refused claim)."""
        sessions = self.mine.get(user.name)
        entry = None if sessions is None else sessions.pop(user, None)
        if entry is None:
            return
        if not sessions:
            del self.mine[user.name]
        if not self.up:
            return  # re-registration after the reconnection leaves it out
        d = self.redis.eval(RELEASE, self._keys(self.node), [user.name, self.node, str(entry[0])])
        # Told even when Redis never had it (a refused claim): another claim's news, sent while
        # this one waited, listed it to every node.
        d.addCallback(lambda _: self._tell_sessions(user.name))
        d.addErrback(lambda f: log.warn("Cluster: cannot release {name}: {why}", name=user.name,
                                        why=f.getErrorMessage()))

    def look_up(self, username) -> defer.Deferred:
        """Whether C{username} has a session anywhere, from Redis itself (the mirror updated)."""
        if not self.up:
            return defer.succeed(username in self.elsewhere)

        def found(raw):
            places = json.loads(raw) if raw else {}
            for node, sessions in places.items():
                known = self.elsewhere.get(username)
                if node != self.node and (known is None or node not in known.nodes):
                    self._sessions_there(username, node, sessions)  # news not read yet
            return bool(places)

        return self.redis.hget(self.presence_key, username).addCallback(found)

    def _sessions_there(self, name, node, sessions) -> None:
        """C{name}'s sessions on C{node} are now C{sessions} (entries as in Redis; [] none)."""
        known = self.elsewhere.get(name)
        if not sessions:
            if known is None or known.nodes.pop(node, None) is None:
                return
            if not known.nodes:
                del self.elsewhere[name]
                known.gone = True
                self.realm.presence_elsewhere(name, False)
            return
        infos = [RemoteSessionInfo(self, entry[0], name, node, *entry[1:6]) for entry in sessions]
        if known is None:
            known = self.elsewhere[name] = RemoteUser(self, name)
            known.nodes[node] = infos
            self.realm.presence_elsewhere(name, True)
        else:
            known.nodes[node] = infos

    def _node_gone(self, node, names) -> None:
        """A dead node's users are offline here (told to the watching clients, as a logout
        on one server is); logged once per node, by whichever news of it comes first."""
        n = 0
        for name in sorted(names):
            known = self.elsewhere.get(name)
            if known is not None and node in known.nodes:
                self._sessions_there(name, node, [])
                n += 1
        if n:
            log.info("Cluster: node {node} is gone; {n} users inactive", node=node, n=n)

    # Deliveries: IDelivery

    def group_event(self, group, event, but: str, places) -> None:
        """
        A group event (the realm's fan-out) published once to each node in C{places}, which
        finds its own joined members in its copy of the group (no list of names).
        """
        for node in places:
            per_node = self._pending.get(node)
            if per_node is None:
                per_node = self._pending[node] = {}
            per_node[id(event)] = [event, None, group.key, but]
        self._turn.schedule()

    def queue(self, node, name, event, sid=None) -> None:
        """C{event} for C{name}'s sessions on C{node} (C{sid}: that one session only)."""
        per_node = self._pending.get(node)
        if per_node is None:
            per_node = self._pending[node] = {}
        entry = per_node.get(id(event))
        if sid is not None:
            per_node[id(event)] = [event, [name], None, None, sid]
        elif entry is None:
            per_node[id(event)] = [event, [name]]
        elif entry[1] is not None and name not in entry[1]:
            entry[1].append(name)
        self._turn.schedule()

    def flush(self) -> None:
        """One publish per node with everything for its users this turn."""
        self._turn.cancel()
        pending, self._pending = self._pending, {}
        if not self.up:
            return  # in PostgreSQL: the node catches up when the bus is back
        for node, entries in pending.items():
            batch = []
            for entry in entries.values():
                event, names = entry[0], entry[1]
                type_name = type(event).__name__
                if type(event) is events.Sent:  # what one's own session sent, shown on the others
                    type_name, event = "Sent", event.message
                values = [getattr(event, f) for f in event.__dataclass_fields__]
                pos = 0
                if type(event) is events.Message:
                    pos = self._positions.get((event.group or "", event.seq), 0)
                if names is None:  # a group's fan-out: [type, values, None, pos, group key, but]
                    batch.append([type_name, values, None, pos, entry[2], entry[3]])
                elif len(entry) > 4:  # to one session: [type, values, [name], pos, None, None, sid]
                    batch.append([type_name, values, names, pos, None, None, entry[4]])
                else:
                    batch.append([type_name, values, names, pos])
            self._publish(self.prefix + "node:" + node, {"e": batch})
        if len(self._positions) > SEEN:
            self._positions.clear()

    def _committed(self, committed) -> None:
        for log_name, seq, pos in committed:
            self._positions[(log_name, seq)] = pos

    def _publish(self, channel, payload):
        self.publishes += 1
        d = self.redis.publish(channel, json.dumps(payload, separators=(",", ":")))
        d.addErrback(lambda f: log.warn("Cluster: cannot publish: {why}", why=f.getErrorMessage()))
        return d

    def tell_all(self, command) -> defer.Deferred:
        """A L{chatproto.cluster.commands.Command} to every node; fires once Redis has it."""
        if not self.up:
            return defer.succeed(None)
        command.node = self.node
        return self._publish(self.all_channel, command.to_json())

    def _first_time(self, message) -> bool:
        key = (message.group or "", message.seq)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > SEEN:
            self._seen.discard(self._seen_order.popleft())
        return True

    def received(self, channel, raw) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            log.warn("Cluster: unreadable bus message on {channel}", channel=channel)
            return
        if channel == self.node_channel:
            if "e" in payload:
                self._deliveries(payload["e"])
            for name, notice in payload.get("end", ()):
                self.realm.end_session(name, notice)
            return
        try:
            command = parse(payload)
        except BadCommand as e:
            log.warn("Cluster: a bus message dropped: {why}", why=e)
            return
        if command.node != self.node:
            getattr(self, "_on_" + command.NAME)(command)

    # The commands from other nodes (chatproto.cluster.commands), one handler each

    def _on_on(self, command) -> None:
        for name, sessions in command.accounts:
            self._sessions_there(name, command.node, sessions)

    def _on_off(self, command) -> None:
        if command.gone:
            self._node_gone(command.node, command.names)
        else:
            for name in command.names:
                self._sessions_there(name, command.node, [])

    def _on_away(self, command) -> None:  # a user of that node set or cleared their away message
        self.realm.away_elsewhere(command.username, command.text)

    def _on_group(self, command) -> None:
        self._group_change(command.op)

    def _on_accounts(self, command) -> None:
        if self.accounts is not None:
            self._accounts_changed(command.changed, command.removed)

    def _on_ban(self, command) -> None:
        self.realm.bans.changed_elsewhere(command.username, command.until)

    def _on_deleted(self, command) -> None:  # the record may be in this node's file
        if self.ledger.delete_in_file(command.log, command.seq, command.by):
            log.info("Cluster: record {seq} of {log} deleted here too (deleted through another node)",
                     seq=command.seq, log=command.log or "messagelog.txt")

    def _on_block(self, command) -> None:
        if self.lockout is not None:
            self.lockout.blocked_elsewhere(command.username, command.until)

    def _accounts_changed(self, changed, removed) -> None:
        """Accounts added, changed or removed through another node: here too, and a removed
        account's session here is logged out."""
        try:
            self.accounts.apply(changed, removed)
            self.realm.reload_accounts()
        except OSError as e:
            log.warn("Cluster: cannot apply the accounts changed on another node: {why}",
                     why=e.strerror or e)

    def _deliveries(self, batch) -> None:
        realm = self.realm
        for entry in batch:
            type_name, values, names, pos = entry[:4]
            if type_name == "Sent":
                event = events.Sent(events.Message(*values))
            else:
                cls = EVENT_TYPES.get(type_name)
                if cls is None:
                    continue
                event = cls(*values)
                if cls is events.Message:
                    self.received_pos = max(self.received_pos, pos)
                    if not self._first_time(event):
                        continue
            if names is None:  # a group's fan-out: its joined members on this node
                realm.fan_out_here(entry[4], event, entry[5])
            elif len(entry) > 6:  # one session: the one with that sid (if it is still here)
                sessions = self.mine.get(names[0], {})
                for user, claimed in list(sessions.items()):
                    if claimed[0] == entry[6]:
                        realm.deliver_to_session(user, event)
            else:
                realm.deliver_here(names, event)

    def _group_change(self, op) -> None:
        realm = self.realm
        kind = op[0]
        if kind == "group":
            key, name, owner, broadcast = op[1:5]
            realm.group_created(GroupRecord(key, name, owner, bool(broadcast), [],
                                            op[5] if len(op) > 5 else 1))
        elif kind == "member":
            realm.member_changed(op[1], op[2], bool(op[3]))
        elif kind == "unmember":
            realm.member_changed(op[1], op[2], None)
        elif kind == "ungroup":
            realm.group_removed(op[1])

    # IGroupNews

    def look_up_group(self, name) -> defer.Deferred:
        """Whether group C{name} exists, from PostgreSQL (the realm's copy brought up to date)."""
        def found(record):
            if record is None:
                return False
            if self.realm.group_info(record.name) is None:  # news not read yet
                self.realm.group_created(record)
            return True

        return self.ledger.group(name.lower()).addCallback(found)


class _Commands(txredisapi.RedisProtocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        return super().connectionMade()


class _Subscriber(txredisapi.SubscriberProtocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        d = super().connectionMade()
        self.whenConnected().addCallback(lambda _: self.factory.bus._subscribed(self))
        return d

    def connectionLost(self, why):
        self.factory.bus._lost()
        super().connectionLost(why)

    def messageReceived(self, pattern, channel, message):
        try:
            self.factory.bus.received(channel, message)
        except Exception:  # noqa: BLE001 - one bad message must not drop the subscription
            log.failure("Cluster: handling a bus message")
