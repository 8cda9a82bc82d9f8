"""
The Redis bus of a cluster node: presence, deliveries to other nodes,
group changes and the lockout, over txredisapi (one command connection,
one subscriber connection, both reconnecting with backoff by themselves).

Redis keys and channels (PREFIX is C{chatproto:DB:}):
  PREFIX presence        hash: username -> JSON [node, ip, udp_port, since, since_time]
  PREFIX users:NODE      set: the usernames NODE claimed (to clean up after it)
  PREFIX alive:NODE      NODE's heartbeat, set every HEARTBEAT s, expiring after ALIVE s
  PREFIX all             channel: logins, logouts, group changes, lockout, to every node
  PREFIX node:NODE       channel: events for NODE's users, one publish per node and turn
"""

import collections
import json
import secrets

import txredisapi
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger

from ..core import errors, events
from ..core.errors import LoginFailed
from ..core.realm import Group
from ..turns import EndOfTurn

log = Logger()

HEARTBEAT = 2.0
ALIVE = 6  # a node silent this long is dead: its users go within ALIVE + HEARTBEAT seconds
SEEN = 10000  # messages remembered, so that a catch-up does not deliver one twice
COMMAND_TIMEOUT = 5
HOLD = 5.0  # a login while the node reconnects to Redis waits this long for it, then is refused

EVENT_TYPES = {cls.__name__: cls for cls in (
    events.Message, events.Invited, events.MemberJoined, events.MemberLeft, events.MessageDeleted,
    events.FileOffer, events.ServerNotice, events.MembersChanged)}

# KEYS: presence, users:NODE, alive: prefix. ARGV: username, entry JSON, node.
CLAIM = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local holder = cjson.decode(current)[1]
  if holder ~= ARGV[3] and redis.call('EXISTS', KEYS[3] .. holder) == 1 then return 0 end
  redis.call('SREM', KEYS[4] .. holder, ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
# KEYS: presence, users:NODE. ARGV: username, node.
RELEASE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
if current and cjson.decode(current)[1] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# KEYS: presence, users:NODE. ARGV: node. Returns the names removed.
FORGET_NODE = """
local removed = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local current = redis.call('HGET', KEYS[1], name)
  if current and cjson.decode(current)[1] == ARGV[1] then
    redis.call('HDEL', KEYS[1], name)
    table.insert(removed, name)
  end
end
redis.call('DEL', KEYS[2])
return removed
"""


class RemoteSession:
    """The session of a user on another node: what it receives goes over the bus."""

    frontend = "remote"
    wants_presence = False

    __slots__ = ("bus", "node", "name", "ip", "udp_port")

    def __init__(self, bus, node, name, ip, udp_port):
        self.bus = bus
        self.node = node
        self.name = name
        self.ip = ip
        self.udp_port = udp_port

    def receive(self, event) -> None:
        self.bus.queue(self.node, self.name, event)

    def disconnect(self, notice) -> None:
        self.bus.end_session(self.node, self.name, notice)  # its own node disconnects it


class RemoteUser:
    """A user logged in on another node, as the realm sees it."""

    __slots__ = ("name", "node", "session", "since", "since_time", "gone")
    peers = None  # as the realm's User: one session, its own node delivers to all of the user's

    def __init__(self, bus, name, node, ip, udp_port, since, since_time):
        self.name = name
        self.node = node
        self.session = RemoteSession(bus, node, name, ip, udp_port)
        self.since = since
        self.since_time = since_time
        self.gone = False

    @property
    def ip(self):
        return self.session.ip

    @property
    def udp_port(self):
        return self.session.udp_port


class ClusterBus:
    """
    @param realm: the L{ChatRealm} of this node (install() adds the seams).
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
        self.remote: dict[str, RemoteUser] = {}
        # Everyone active on every node: one dict for the realm's lookups (a ChainMap of
        # local and remote costs 0.5 µs a lookup, 20 times a dict's).
        self.everyone: dict = {}
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
        realm = self.realm
        realm.cluster = self
        self.everyone.update(realm._active)
        realm._everyone = self.everyone
        if self.lockout is not None:
            self.lockout.tell = lambda username, until: self.tell_all({"t": "block", "u": username,
                                                                       "until": until})
        self.ledger.on_group_change = lambda op: self.tell_all({"t": "group", "op": list(op)})
        self.ledger.on_committed = self._committed
        self.ledger.on_first_seq = self._first_seq
        for shared in (self.accounts, self.bans):
            if shared is not None:
                shared.tell = self.tell_all
        self.ledger.on_deleted = lambda log_name, seq, author: self.tell_all(
            {"t": "deleted", "log": log_name, "seq": seq, "by": author})

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
                    yield self._publish(self.all_channel, {"t": "off", "n": self.node, "u": removed})
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
            for user in list(self.realm._active.values()):
                yield self._register(user)
            entries = yield self.redis.hgetall(self.presence_key)
            self._load_presence(entries)
            local = [self._entry(user) for user in self.realm._active.values()]
            if local:
                yield self._publish(self.all_channel, {"t": "on", "n": self.node, "u": local})
            first = not self.ever_up
            self.up = self.ever_up = True
            if first:
                log.info("Cluster: node {node} joined ({n} users on other nodes)", node=self.node,
                         n=len(self.remote))
            else:
                log.info("Cluster: node {node} reconnected to Redis", node=self.node)
                yield self._catch_up()
        except Exception as e:  # noqa: BLE001 - the next reconnection tries again
            log.warn("Cluster: cannot register with Redis: {why}", why=e)
            protocol.transport.loseConnection()
            return
        self._now_up()

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
            node, ip, udp_port, since, since_time = json.loads(raw)
            if node != self.node:
                seen[name] = (node, ip, udp_port, since, since_time)
        for name in [n for n in self.remote if n not in seen]:
            self._remote_off(name, None)
        for name, (node, ip, udp_port, since, since_time) in seen.items():
            self._remote_on(name, node, ip, udp_port, since, since_time)

    @defer.inlineCallbacks
    def _catch_up(self):
        """Deliver what this node's users missed while it was cut off, from PostgreSQL by position."""
        records = yield self.ledger.reload_groups()
        self._load_groups(records)
        users = list(self.realm._active)
        logs = [g.name for g in self.realm._groups.values()
                if any(g.members.get(name) for name in users)]
        missed = yield self.ledger.database.messages_since(self.cut_pos, users, logs)
        delivered = 0
        for pos, message in missed:
            self.received_pos = max(self.received_pos, pos)
            if not self._first_time(message):
                continue
            if message.kind == events.PRIVATE:
                targets = [message.recipient]
            else:
                group = self.realm._groups.get(message.group.lower())
                targets = [] if group is None else [n for n, joined in group.members.items()
                                                    if joined and n != message.sender]
            for name in targets:
                user = self.realm._active.get(name)
                if user is not None:
                    self.realm._deliver(user, message)
                    delivered += 1
        if missed:
            log.info("Cluster: caught up {n} messages missed while cut off", n=delivered)

    def _load_groups(self, records) -> None:
        groups = self.realm._groups
        groups.clear()
        for record in records:
            groups[record.key] = Group(record.name, record.owner, record.broadcast,
                                       {name: joined for name, joined in record.members}, record.first_seq)

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
                for user in list(self.realm._active.values()):
                    yield self._register(user)
                local = [self._entry(user) for user in self.realm._active.values()]
                if local:
                    yield self.tell_all({"t": "on", "u": local})
            for node in {user.node for user in self.remote.values()}:
                alive = yield self.redis.exists(self.prefix + "alive:" + node)
                if not alive:
                    removed = yield self._forget_node(node)
                    # Its users, gone from Redis (by this node or another one that saw it first).
                    names = set(removed or []) | {n for n, u in self.remote.items() if u.node == node}
                    self._node_gone(node, names)
                    if removed:
                        yield self._publish(self.all_channel, {"t": "off", "n": node, "u": removed,
                                                               "gone": True})
        except Exception as e:  # noqa: BLE001 - the connection is being lost: it reconnects
            log.warn("Cluster: heartbeat failed: {why}", why=e)

    def _first_seq(self, key, first_seq) -> None:
        group = self.realm._groups.get(key)
        if group is not None:
            group.first_seq = first_seq

    def end_session(self, node, name, notice) -> None:
        """An administrator here ended the session of C{name} on C{node} (kick, ban)."""
        if self.up:
            self._publish(self.prefix + "node:" + node, {"end": [[name, notice]]})

    def _forget_node(self, node):
        return self.redis.eval(FORGET_NODE, [self.presence_key, self.prefix + "users:" + node], [node])

    # Presence: the realm's seams

    def _entry(self, user):
        return [user.name, user.ip, user.udp_port, user.since, user.since_time]

    def _register(self, user):
        entry = json.dumps([self.node, user.ip, user.udp_port, user.since, user.since_time])
        return self.redis.eval(CLAIM, [self.presence_key, self.prefix + "users:" + self.node,
                                       self.prefix + "alive:", self.prefix + "users:"],
                               [user.name, entry, self.node])

    def claim(self, user) -> defer.Deferred:
        """Claim C{user}'s name in the whole cluster (the realm's login)."""
        if not self.up:
            if self.stopped or not self.ever_up:
                return defer.fail(LoginFailed(errors.LOGIN_NOT_RECORDED))
            return self._held(user)
        self.everyone[user.name] = user  # at once, as in the realm's _active

        def claimed(ok):
            if not ok:
                raise LoginFailed(errors.ALREADY_LOGGED_IN)
            # Waiting for Redis's reply means every node has been sent the news
            # before the user is welcomed.
            return self.tell_all({"t": "on", "u": [self._entry(user)]})

        def failed(failure):
            if failure.check(LoginFailed):
                return failure
            log.warn("Cluster: cannot claim {name}: {why}", name=user.name, why=failure.getErrorMessage())
            raise LoginFailed(errors.LOGIN_NOT_RECORDED)

        return self._register(user).addCallbacks(claimed, failed)

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
        return self.tell_all({"t": "away", "u": username, "x": text})

    def release(self, user) -> None:
        """C{user} logged out here (the realm's logout)."""
        if self.everyone.get(user.name) is user:
            del self.everyone[user.name]
        if not self.up:
            return  # re-registration after the reconnection leaves it out
        d = self.redis.eval(RELEASE, [self.presence_key, self.prefix + "users:" + self.node],
                            [user.name, self.node])
        d.addCallback(lambda _: self.tell_all({"t": "off", "u": [user.name]}))
        d.addErrback(lambda f: log.warn("Cluster: cannot release {name}: {why}", name=user.name,
                                        why=f.getErrorMessage()))

    def _remote_on(self, name, node, ip, udp_port, since, since_time) -> None:
        if name in self.realm._active:
            return  # ours (a stale entry being replaced)
        known = self.remote.get(name)
        if known is not None and known.node == node and known.since == since:
            return
        if known is not None:
            known.gone = True
        self.remote[name] = self.everyone[name] = RemoteUser(self, name, node, ip, udp_port, since,
                                                             since_time)
        if known is None:
            self.realm.presence_elsewhere(name, True)

    def _node_gone(self, node, names) -> None:
        """A dead node's users are offline here (told to the watching clients, as a logout
        on one server is); logged once per node, by whichever news of it comes first."""
        n = sum(self._remote_off(name, node) for name in sorted(names))
        if n:
            log.info("Cluster: node {node} is gone; {n} users inactive", node=node, n=n)

    def _remote_off(self, name, node) -> bool:
        known = self.remote.get(name)
        if known is None or (node is not None and known.node != node):
            return False
        del self.remote[name]
        if self.everyone.get(name) is known:
            del self.everyone[name]
        known.gone = True
        self.realm.presence_elsewhere(name, False)
        return True

    # Deliveries

    def fan_out(self, group, event, but: str) -> int:
        """
        A group event (the realm's fan-out): delivered here to this node's
        joined members, and published once to each node with joined members,
        which finds its own members in its copy of the group (no list of names).
        """
        realm = self.realm
        local = realm._active
        remote = self.remote
        nodes = set()
        n = 0
        for username, joined in group.members.items():
            if joined and username != but:
                user = local.get(username)
                if user is not None:
                    realm._deliver(user, event)
                    n += 1
                else:
                    other = remote.get(username)
                    if other is not None:
                        nodes.add(other.node)
                        n += 1
        for node in nodes:
            per_node = self._pending.get(node)
            if per_node is None:
                per_node = self._pending[node] = {}
            per_node[id(event)] = [event, None, group.key, but]
        if nodes:
            self._turn.schedule()
        return n

    def queue(self, node, name, event) -> None:
        per_node = self._pending.get(node)
        if per_node is None:
            per_node = self._pending[node] = {}
        entry = per_node.get(id(event))
        if entry is None:
            per_node[id(event)] = [event, [name]]
        else:
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
                values = [getattr(event, f) for f in event.__dataclass_fields__]
                pos = 0
                if type(event) is events.Message:
                    pos = self._positions.get((event.group or "", event.seq), 0)
                if names is None:  # a group's fan-out: [type, values, None, pos, group key, but]
                    batch.append([type(event).__name__, values, None, pos, entry[2], entry[3]])
                else:
                    batch.append([type(event).__name__, values, names, pos])
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

    def tell_all(self, payload) -> defer.Deferred:
        if not self.up:
            return defer.succeed(None)
        payload["n"] = self.node
        return self._publish(self.all_channel, payload)

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
        node = payload.get("n")
        if node == self.node:
            return
        kind = payload.get("t")
        if kind == "away":  # a user of that node set or cleared their away message
            self.realm.away_elsewhere(payload["u"], payload.get("x"))
            return
        if kind == "on":
            for name, ip, udp_port, since, since_time in payload["u"]:
                self._remote_on(name, node, ip, udp_port, since, since_time)
        elif kind == "off":
            if payload.get("gone"):
                self._node_gone(node, payload["u"])
            else:
                for name in payload["u"]:
                    self._remote_off(name, node)
        elif kind == "group":
            self._group_change(payload["op"])
        elif kind == "accounts" and self.accounts is not None:
            self._accounts_changed(payload["set"], payload["del"])
        elif kind == "ban":
            self.realm.bans.changed_elsewhere(payload["u"], payload["until"])
        elif kind == "deleted":  # the record may be in this node's file
            if self.ledger.delete_in_file(payload["log"], payload["seq"], payload["by"]):
                log.info("Cluster: record {seq} of {log} deleted here too (deleted through another node)",
                         seq=payload["seq"], log=payload["log"] or "messagelog.txt")
        elif kind == "block":
            if self.lockout is not None:
                self.lockout.blocked_elsewhere(payload["u"], payload["until"])

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
        active = realm._active
        for entry in batch:
            type_name, values, names, pos = entry[:4]
            cls = EVENT_TYPES.get(type_name)
            if cls is None:
                continue
            event = cls(*values)
            if cls is events.Message:
                self.received_pos = max(self.received_pos, pos)
                if not self._first_time(event):
                    continue
            if names is None:  # a group's fan-out: its joined members on this node
                group = realm._groups.get(entry[4])
                if group is None:
                    continue
                but = entry[5]
                for name, joined in group.members.items():
                    if joined and name != but:
                        user = active.get(name)
                        if user is not None:
                            realm._deliver(user, event)
                continue
            for name in names:
                user = active.get(name)
                if user is not None:
                    realm._deliver(user, event)

    def _group_change(self, op) -> None:
        groups = self.realm._groups
        kind = op[0]
        if kind == "group":
            key, name, owner, broadcast = op[1:5]
            groups[key] = Group(name, owner, bool(broadcast), {}, op[5] if len(op) > 5 else 1)
        elif kind == "member":
            group = groups.get(op[1])
            if group is not None:
                group.members[op[2]] = bool(op[3])
        elif kind == "unmember":
            group = groups.get(op[1])
            if group is not None:
                group.members.pop(op[2], None)
        elif kind == "ungroup":
            groups.pop(op[1], None)


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
