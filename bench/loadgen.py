"""
The load generator of the chatproto benchmarks (issue 8).

It speaks three dialects over TCP: C{chat} (docs/PROTOCOL.md: chatproto's own
server and the seed baseline), C{irc} (the twistd words and InspIRCd
baselines: PASS / NICK / USER, JOIN #chan, PRIVMSG nick / #chan; InspIRCd,
whose connect class has no password, ignores PASS) and C{web} (chatproto's
browser protocol, docs/WEB.md: POST /login, the WebSocket with the session
cookie, JSON C{send} requests and C{message} events; bench/webclient.py). Clients live in a few worker
processes (C{python bench/loadgen.py worker}, driven over stdin/stdout with
one JSON object a line) so that the generator is not the bottleneck; the
coordinator (L{run_private}, L{run_fanout}, L{run_idle}, L{run_logins}, used
by C{bench/run_all.py}) tells them what to do and samples the server's CPU
time and RSS from C{/proc/PID}.

Every message carries the sender's C{time.monotonic_ns()} (C{t<ns>}; the
monotonic clock is shared by every process of the machine), so latency is
measured end to end by the receiver without any clock exchange.

Accounts are C{user00001 .. userNNNNN} with passwords C{pw00001 ..} (see
L{write_credentials}). Every wait is bounded; nothing runs forever.
"""

import array
import json
import os
import re
import resource
import sys
import time
from collections import deque

from twisted.internet import defer, protocol

import webclient  # (bench/ is on sys.path: this script's directory, or put there by its importers)

# --------------------------------------------------------------------------
# Shared helpers


def user_name(i: int) -> str:
    return f"user{i:05d}"


def user_password(i: int) -> str:
    return f"pw{i:05d}"


def accounts(first: int, count: int) -> list:
    return [[user_name(i), user_password(i)] for i in range(first, first + count)]


def write_credentials(path: str, n: int) -> None:
    """An accounts file (C{USERNAME PASSWORD} a line) with C{n} bench users."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{user_name(i)} {user_password(i)}\n" for i in range(1, n + 1))


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_times(pid: int, path: str = "/proc/{pid}/stat") -> tuple:
    """(utime, stime) in seconds, summed over every thread of C{pid}, from C{/proc/PID/stat}."""
    with open(path.format(pid=pid), "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


class CpuMeter:
    """CPU time of a server and of the load generator's processes over an interval."""

    def __init__(self, server_pid: int, generator_pids=()):
        self.server_pid = server_pid
        self.generator_pids = list(generator_pids)
        self.start()

    def _read(self):
        gen = 0.0
        for pid in self.generator_pids:
            try:
                gen += cpu_seconds(pid)
            except OSError:
                pass
        try:  # the main thread alone: chatproto's reactor (the rest: its database and other threads)
            main = sum(cpu_times(self.server_pid, "/proc/{pid}/task/{pid}/stat"))
        except OSError:
            main = 0.0
        return cpu_times(self.server_pid), gen, time.monotonic(), main

    def start(self):
        self._t0 = self._read()
        self._t1 = None

    def stop(self):
        self._t1 = self._read()
        return self

    def report(self, count: int, unit: str) -> dict:
        """Server CPU us per unit, plus user/sys split and CPU percentages."""
        (u0, s0), g0, w0, m0 = self._t0
        (u1, s1), g1, w1, m1 = self._t1
        cpu = (u1 - u0) + (s1 - s0)
        wall = w1 - w0
        return {
            f"cpu_us_per_{unit}": cpu * 1e6 / count if count else None,
            "server_cpu_pct": 100 * cpu / wall if wall else None,
            "server_sys_share_pct": 100 * (s1 - s0) / cpu if cpu else None,
            "server_main_thread_share_pct": 100 * (m1 - m0) / cpu if cpu else None,
            "generator_cpu_pct": 100 * (g1 - g0) / wall if wall else None,
            "cpu_ticks": round(cpu * CLOCK_TICKS),
        }


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def percentile(samples: list, weight: float, q: float):
    """The q-quantile (0..1) of sorted C{samples} (each standing for C{weight} messages)."""
    if not samples:
        return None
    i = min(len(samples) - 1, max(0, round(q * (len(samples) - 1))))
    return samples[i]


def merge_samples(parts: list) -> list:
    """Merge C{(sorted_sample, weight)} pairs into one sorted list, repeating by weight."""
    merged = []
    if not parts:
        return merged
    smallest = min((w for _, w in parts if w > 0), default=1)
    for sample, weight in parts:
        reps = max(1, round(weight / smallest))
        for v in sample:
            merged.extend([v] * reps)
    merged.sort()
    return merged


# --------------------------------------------------------------------------
# Dialects: the bytes each server understands


TS = re.compile(rb"[ :]t(\d+) ")
GROUP_TS = re.compile(rb"[ :]t(\d+) k(\d+) ")


class Chat:
    """The line protocol (docs/PROTOCOL.md): chatproto and the seed baseline."""

    name = "chat"
    ERR = b"ERR "
    TS = TS  # the send time stamped in a private message, as its receiver sees it

    @staticmethod
    def login(user: str, password: str, udp: int = 9) -> bytes:
        return f"LOGIN {user} {password} {udp}\n".encode()

    @staticmethod
    def login_result(line: bytes):
        if line.startswith(b"OK"):
            return True
        if line.startswith(b"ERR"):
            return False
        return None

    @staticmethod
    def private_line(to: str) -> bytes:
        """A C{%}-template: fill in the send time in ns."""
        return b"/msgto " + to.encode() + b" t%d k0 hello from the benchmark\n"

    @staticmethod
    def create_group(group: str, members: list) -> bytes:
        return f"/creategroup {group} {' '.join(members)}\n".encode()

    create_result = login_result

    @staticmethod
    def join(group: str) -> bytes:
        return f"/joingroup {group}\n".encode()

    join_result = login_result

    @staticmethod
    def group_line(group: str, t: int, k: int) -> bytes:
        return f"/groupmsg {group} t{t} k{k} fan-out\n".encode()

    group_ack = login_result

    @staticmethod
    def logout() -> bytes:
        return b"/logout\n"


class Irc:
    """twisted.words' IRC server, and InspIRCd (bench/baselines/inspircd.py)."""

    name = "irc"
    ERR = b" 401 "
    TS = TS

    @staticmethod
    def login(user: str, password: str, udp: int = 9) -> bytes:
        return f"PASS {password}\r\nNICK {user}\r\nUSER {user} 0 * :bench\r\n".encode()

    @staticmethod
    def login_result(line: bytes):
        if b" 001 " in line:
            return True
        if b"NickServ" in line and (b"Login failed" in line or b"Already logged" in line):
            return False
        return None

    @staticmethod
    def private_line(to: str) -> bytes:
        return b"PRIVMSG " + to.encode() + b" :t%d k0 hello from the benchmark\r\n"

    @staticmethod
    def create_group(group: str, members: list) -> bytes:
        return f"JOIN #{group}\r\n".encode()

    @staticmethod
    def join_result(line: bytes):
        if b" 366 " in line:
            return True
        if b" 403 " in line:
            return False
        return None

    create_result = join_result

    @staticmethod
    def join(group: str) -> bytes:
        return f"JOIN #{group}\r\n".encode()

    @staticmethod
    def group_line(group: str, t: int, k: int) -> bytes:
        # IRC has no acknowledgement: the PONG to the PING that follows is one.
        return f"PRIVMSG #{group} :t{t} k{k} fan-out\r\nPING bench\r\n".encode()

    @staticmethod
    def group_ack(line: bytes):
        return True if b"PONG" in line else None

    @staticmethod
    def logout() -> bytes:
        return b"QUIT :bye\r\n"


class ChatIrc(Irc):
    """chatproto's IRC front end: groups are invite-only, so the creator invites the members."""

    name = "chatirc"

    @staticmethod
    def login_result(line: bytes):
        if b" 001 " in line:
            return True
        if b" 464 " in line or b" 904 " in line:
            return False
        return None

    @staticmethod
    def create_group(group: str, members: list) -> bytes:
        invites = "".join(f"INVITE {name} #{group}\r\n" for name in members)
        return f"JOIN #{group}\r\n{invites}PING created\r\n".encode()

    @staticmethod
    def create_result(line: bytes):
        return True if b"PONG" in line else None

    @staticmethod
    def join_result(line: bytes):
        if b" 366 " in line:
            return True
        if b" 403 " in line or b" 473 " in line:
            return False
        return None


class Web:
    """
    chatproto's browser protocol (L{WebClient}): each "line" is one JSON
    object, a text frame's payload. Group fan-out is not driven over it (a
    page is sent every member list on each join: quadratic set-up).
    """

    name = "web"
    ERR = b'"ok":false'
    TS = re.compile(rb'"t(\d+) k0 ')

    @staticmethod
    def login_result(line: bytes):
        head = line[:24]
        if b'"type":"hello"' in head:
            return True
        if line.startswith(b"HTTP ") or b'"type":"refused"' in head or b'"type":"ended"' in head:
            return False
        return None

    @staticmethod
    def private_line(to: str) -> bytes:
        """The C{send} request's payload, a C{%}-template of the send time (framed by L{WebClient})."""
        # As the page writes it (connection.js: its fields, then id and type).
        return (b'{"text":"t%d k0 hello from the benchmark","to":"' + to.encode()
                + b'","id":1,"type":"send"}')


DIALECTS = {"chat": Chat, "irc": Irc, "chatirc": ChatIrc, "web": Web}


# --------------------------------------------------------------------------
# One client connection


class Client(protocol.Protocol):
    """
    A bench client. Complete lines are handed, a chunk at a time, to
    C{self.chunk}, which is swapped by role: waiting for one reply, ignoring
    (but counting errors), receiving private or group messages.
    """

    def __init__(self, dialect):
        self.dialect = dialect
        self.buf = b""
        self.chunk = self._ignore
        self._waiting = None
        self._predicate = None
        self.lost = defer.Deferred()
        self.errors = 0
        self.first_error = None
        self.pair = None
        self.worker = None

    def connectionMade(self):
        # An interactive client: no Nagle delay on what it sends.
        self.transport.setTcpNoDelay(True)

    def login_request(self, user: str, password: str) -> bytes:
        return self.dialect.login(user, password)

    def private_writer(self, to: str):
        """C{f(ns) -> bytes}: one private message to C{to} stamped with send time C{ns}."""
        return self.dialect.private_line(to).__mod__

    def send_logout(self) -> None:
        self.transport.write(self.dialect.logout())

    def dataReceived(self, data):
        buf = self.buf + data if self.buf else data
        i = buf.rfind(b"\n")
        if i < 0:
            self.buf = buf
            return
        self.buf = buf[i + 1:]
        self.chunk(buf[: i + 1])

    def connectionLost(self, reason):
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(ConnectionError("connection closed while waiting for a reply"))
        self.lost.callback(time.monotonic_ns())

    def expect(self, predicate, line: bytes = b"") -> defer.Deferred:
        """Write C{line}; fire with the first line for which C{predicate} is True."""
        self._waiting = defer.Deferred()
        self._predicate = predicate
        self.chunk = self._expect
        if line:
            self.transport.write(line)
        return self._waiting

    def _expect(self, chunk):
        for line in chunk.split(b"\n"):
            result = self._predicate(line)
            if result is None:
                continue
            waiting, self._waiting = self._waiting, None
            self.chunk = self._ignore
            if result:
                waiting.callback(line)
            else:
                waiting.errback(ReplyError(line.decode("utf-8", "replace").strip()))
            return

    def _ignore(self, chunk):
        if self.dialect.ERR in chunk:
            for line in chunk.split(b"\n"):
                if self.dialect.ERR in line:
                    self.errors += 1
                    if self.first_error is None:
                        self.first_error = line.decode("utf-8", "replace").strip()

    def _private(self, chunk):
        now = time.monotonic_ns()
        stamps = self.dialect.TS.findall(chunk)
        if stamps:
            self.pair.delivered_chunk(now, stamps)

    def _group(self, chunk):
        now = time.monotonic_ns()
        for _t, k in GROUP_TS.findall(chunk):
            self.worker.group_delivered(int(k), now)


class WebClient(Client):
    """
    A browser tab (L{Web}): C{POST /login}, then on the same connection the
    WebSocket's upgrade with the session cookie; from then on each text
    frame's payload is handed on as a line of L{Client}'s.
    """

    def __init__(self, dialect):
        super().__init__(dialect)
        self.http = None  # "login", "upgrade": waiting for that HTTP response; None: frames
        self.token = None
        self.key = webclient.new_mask()

    def _peer(self):
        peer = self.transport.getPeer()
        return peer.host, peer.port

    def login_request(self, user: str, password: str) -> bytes:
        self.http = "login"
        return webclient.login_request(*self._peer(), user, password)

    def private_writer(self, to: str):
        template, key, frame = self.dialect.private_line(to), self.key, webclient.client_frame
        return lambda ns: frame(template % ns, key)

    # Logouts open a connection each: at most this many at once, or a burst of thousands overflows
    # the server's listen queue (Twisted's backlog is 50) and SYN-cookie connections hang.
    LOGOUTS = defer.DeferredSemaphore(32)

    def send_logout(self) -> None:
        """What the page's Log out does: C{POST /logout}; the server then closes this WebSocket."""
        self.LOGOUTS.run(self._logout)

    def _logout(self) -> defer.Deferred:
        """C{POST /logout} on a connection of its own; fires once that connection is closed."""
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        host, port = self._peer()
        request = webclient.logout_request(host, port, self.token or "")
        done = defer.Deferred()
        one = protocol.Protocol()
        one.connectionMade = lambda: one.transport.write(request)
        one.connectionLost = lambda reason: done.callback(None)

        def failed(f):
            self.transport.loseConnection()
            done.callback(None)

        connectProtocol(TCP4ClientEndpoint(reactor, host, port, timeout=30), one).addErrback(failed)
        return done

    def dataReceived(self, data):
        if self.http is not None:
            self._http(data)
            return
        buf = self.buf + data if self.buf else data
        frames, self.buf = webclient.split_frames(buf)
        texts = []
        for opcode, payload in frames:
            if opcode == 1:
                texts.append(payload)
            elif opcode == webclient.PING:
                self.transport.write(webclient.client_frame(payload, self.key, webclient.PONG))
        if texts:
            texts.append(b"")
            self.chunk(b"\n".join(texts))

    def _http(self, data):
        buf = self.buf + data
        response = webclient.read_response(buf)
        if response is None:
            self.buf = buf
            return
        status, head, body, rest = response
        self.buf = b""
        if self.http == "login" and status == 200 and webclient.session_cookie(head):
            self.token = webclient.session_cookie(head)
            self.http = "upgrade"
            self.transport.write(webclient.upgrade_request(*self._peer(), self.token))
            if rest:
                self._http(rest)
        elif self.http == "upgrade" and status == 101:
            self.http = None
            if rest:
                self.dataReceived(rest)
        else:  # the login (or the upgrade) refused: a line L{Web.login_result} reads as failed
            self.http = None
            self.chunk(b"HTTP %d %s\n" % (status, body.replace(b"\n", b" ")))


class ReplyError(Exception):
    """The server answered with an error (the text is the line)."""


async def connect(reactor, host: str, port: int, dialect) -> Client:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=30)
    return await connectProtocol(endpoint, (WebClient if dialect is Web else Client)(dialect))


async def login(client: Client, name: str, password: str) -> Client:
    await client.expect(client.dialect.login_result, client.login_request(name, password))
    return client


async def bounded(n: int, thunks):
    """Run the coroutine functions in C{thunks}, at most C{n} at a time; return results."""
    sem = defer.DeferredSemaphore(n)
    ds = [sem.run(lambda f=f: defer.ensureDeferred(f())) for f in thunks]
    return await defer.DeferredList(ds, consumeErrors=True)


# --------------------------------------------------------------------------
# Worker process side


class Pair:
    """A sender keeping at most C{window} private messages in flight to its receiver."""

    __slots__ = ("delivered", "low", "receiver", "sender", "sending", "sent", "template",
                 "window", "worker")

    def __init__(self, worker, sender, receiver, window):
        self.worker = worker
        self.sender = sender
        self.receiver = receiver
        self.template = sender.private_writer(receiver.name)
        self.window = window
        self.low = window // 2
        self.sent = 0
        self.delivered = 0
        self.sending = False

    def refill(self):
        n = self.window - (self.sent - self.delivered)
        if n > 0:
            self.sender.transport.write(self.template(time.monotonic_ns()) * n)
            self.sent += n

    def delivered_chunk(self, now, stamps):
        n = len(stamps)
        self.delivered += n
        w = self.worker
        if w.t_measure <= now <= w.t_end:
            w.count += n
            w.latencies.extend([(now - int(t)) // 1000 for t in stamps])
        if self.sending and self.sent - self.delivered <= self.low:
            self.refill()


class PipePair:
    """
    A sender writing C{messages} private messages to its receiver in writes of
    C{batch} lines, each write as soon as the socket has taken the one before
    (a pull producer on the sender's transport): the deep-pipeline shape of
    issue 25, with no window and no waiting for deliveries.
    """

    __slots__ = ("batch", "delivered", "done", "left", "receiver", "sender", "template",
                 "worker")

    def __init__(self, worker, sender, receiver, messages, batch):
        self.worker = worker
        self.sender = sender
        self.receiver = receiver
        self.template = sender.private_writer(receiver.name)
        self.left = messages
        self.batch = batch
        self.delivered = 0
        self.done = defer.Deferred()

    # IPullProducer: the transport asks for more once its buffer is written out.
    def resumeProducing(self):
        n = min(self.batch, self.left)
        if n <= 0:
            self.sender.transport.unregisterProducer()
            return
        self.left -= n
        self.sender.transport.write(self.template(time.monotonic_ns()) * n)

    def stopProducing(self):
        self.left = 0

    def delivered_chunk(self, now, stamps):
        n = len(stamps)
        self.delivered += n
        w = self.worker
        w.count += n
        w.t_last = now
        w.latencies.extend([(now - int(t)) // 1000 for t in stamps])
        if self.left <= 0 and self.delivered >= w.per_pair and not self.done.called:
            self.done.callback(None)


class Worker:
    """The clients of one worker process and the commands that drive them."""

    def __init__(self, reactor, emit):
        self.reactor = reactor
        self.emit = emit
        self.clients: dict = {}
        self.fresh: list = []  # connected, not logged in
        self.t_measure = self.t_end = 0
        self.count = 0
        self.latencies = array.array("q")
        self.group_counts: dict = {}
        self.group_last: dict = {}

    async def cmd_login(self, host, port, dialect, users, concurrency=64):
        d = DIALECTS[dialect]

        async def one(name, password):
            client = await connect(self.reactor, host, port, d)
            client.name = name
            try:
                await login(client, name, password)
            except Exception:
                client.transport.loseConnection()
                raise
            self.clients[name] = client

        results = await bounded(concurrency, [lambda u=u: one(*u) for u in users])
        failures = [r for ok, r in results if not ok]
        return {
            "n": len(users) - len(failures),
            "failed": len(failures),
            "first_error": str(failures[0].value) if failures else None,
        }

    async def cmd_connect(self, host, port, dialect, n, concurrency=64):
        d = DIALECTS[dialect]

        async def one():
            self.fresh.append(await connect(self.reactor, host, port, d))

        results = await bounded(concurrency, [one] * n)
        failures = [r for ok, r in results if not ok]
        return {"n": len(self.fresh), "failed": len(failures),
                "first_error": str(failures[0].value) if failures else None}

    async def cmd_login_go(self, users):
        clients, self.fresh = self.fresh[: len(users)], self.fresh[len(users):]
        last = [0]

        def done(_, client, name):
            last[0] = max(last[0], time.monotonic_ns())
            self.clients[name] = client

        ds = []
        t_first = time.monotonic_ns()
        for client, (name, password) in zip(clients, users):
            client.name = name
            d = client.expect(client.dialect.login_result, client.login_request(name, password))
            ds.append(d.addCallback(done, client, name))
        results = await defer.DeferredList(ds, consumeErrors=True)
        failures = [r for ok, r in results if not ok]
        return {"ok": len(ds) - len(failures), "failed": len(failures), "t_first": t_first,
                "t_last": last[0],
                "first_error": str(failures[0].value) if failures else None}

    async def cmd_logout_go(self):
        clients = list(self.clients.values())
        self.clients.clear()
        t_first = time.monotonic_ns()
        for client in clients:
            client.send_logout()
        times = await defer.gatherResults([c.lost for c in clients])
        return {"n": len(clients), "t_first": t_first, "t_last": max(times, default=t_first)}

    async def cmd_private(self, pairs, window, t_start, t_measure, t_end, drain=10.0):
        from twisted.internet import task

        self.t_measure, self.t_end = t_measure, t_end
        self.count = 0
        self.latencies = array.array("q")
        active = []
        for s, r in pairs:
            pair = Pair(self, self.clients[s], self.clients[r], window)
            pair.receiver.pair = pair
            pair.receiver.chunk = pair.receiver._private
            active.append(pair)

        await task.deferLater(self.reactor, max(0.0, (t_start - time.monotonic_ns()) / 1e9),
                              lambda: None)
        for pair in active:
            pair.sending = True
            pair.refill()
        await task.deferLater(self.reactor, max(0.0, (t_end - time.monotonic_ns()) / 1e9),
                              lambda: None)
        for pair in active:
            pair.sending = False
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and any(p.sent > p.delivered for p in active):
            await task.deferLater(self.reactor, 0.05, lambda: None)
        return {"sent": sum(p.sent for p in active),
                "delivered": sum(p.delivered for p in active), **self._finish(active)}

    def _finish(self, active) -> dict:
        """The receivers back to ignoring; the count, errors and latency sample of a run."""
        for pair in active:
            pair.receiver.chunk = pair.receiver._ignore
        sample, weight = self._sample(self.latencies)
        senders = [p.sender for p in active]
        return {
            "count": self.count,
            "errors": sum(c.errors for c in senders),
            "first_error": next((c.first_error for c in senders if c.first_error), None),
            "lat_us": sample,
            "weight": weight,
        }

    @staticmethod
    def _sample(values, limit=20000):
        values = sorted(values)
        if len(values) <= limit:
            return values, 1.0
        step = len(values) / limit
        return [values[int(i * step)] for i in range(limit)], step

    async def cmd_join(self, group):
        clients = list(self.clients.values())

        async def one(client):
            d = client.dialect
            await client.expect(d.join_result, d.join(group))

        results = await bounded(256, [lambda c=c: one(c) for c in clients])
        failures = [r for ok, r in results if not ok]
        self.group_counts.clear()
        self.group_last.clear()
        for client in clients:
            client.worker = self
            client.chunk = client._group
        return {"joined": len(clients) - len(failures), "failed": len(failures),
                "first_error": str(failures[0].value) if failures else None}

    async def cmd_pipeline(self, pairs, messages, batch, t_start, deadline=120.0):
        """Every pair sends C{messages} in writes of C{batch}; wait until all are delivered."""
        from twisted.internet import task

        self.count = 0
        self.t_last = 0
        self.per_pair = messages
        self.latencies = array.array("q")
        active = []
        for s, r in pairs:
            pair = PipePair(self, self.clients[s], self.clients[r], messages, batch)
            pair.receiver.pair = pair
            pair.receiver.chunk = pair.receiver._private
            active.append(pair)
        await task.deferLater(self.reactor, max(0.0, (t_start - time.monotonic_ns()) / 1e9),
                              lambda: None)
        t_first = time.monotonic_ns()
        for pair in active:
            pair.sender.transport.registerProducer(pair, False)
        all_done = defer.DeferredList([p.done for p in active])
        try:
            await all_done.addTimeout(deadline, self.reactor)
        except defer.TimeoutError:
            pass
        return {"sent": sum(messages - max(p.left, 0) for p in active), "t_first": t_first,
                "t_last": self.t_last, **self._finish(active)}

    def group_delivered(self, k, now):
        n = self.group_counts.get(k, 0) + 1
        self.group_counts[k] = n
        if now > self.group_last.get(k, 0):
            self.group_last[k] = now
        if n == len(self.clients):
            self.emit({"type": "event", "got": k, "t_last": self.group_last.pop(k)})
            del self.group_counts[k]

    async def cmd_quit(self):
        for client in list(self.clients.values()) + self.fresh:
            client.transport.abortConnection()
        self.reactor.callLater(0.1, self.reactor.stop)
        return {"bye": True}


class CommandChannel:
    """stdin/stdout of a worker: one JSON command a line in, one JSON reply a line out."""

    def __init__(self, reactor):
        from twisted.protocols.basic import LineReceiver

        channel = self

        class Lines(LineReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1 << 26

            def lineReceived(self, line):
                channel.received(line)

            def connectionLost(self, reason):
                if reactor.running:
                    reactor.stop()

        self.protocol = Lines()
        self.worker = Worker(reactor, self.send)

    def send(self, obj):
        self.protocol.transport.write(json.dumps(obj).encode() + b"\n")

    def received(self, line):
        cmd = json.loads(line)
        name = cmd.pop("cmd")
        d = defer.ensureDeferred(getattr(self.worker, "cmd_" + name)(**cmd))

        def ok(result):
            result["type"] = "reply"
            self.send(result)

        def failed(f):
            self.send({"type": "reply", "error": f"{f.type.__name__}: {f.getErrorMessage()}"})

        d.addCallbacks(ok, failed)


def worker_main() -> None:
    raise_nofile()
    from twisted.internet import reactor, stdio

    channel = CommandChannel(reactor)
    stdio.StandardIO(channel.protocol)
    reactor.run()


# --------------------------------------------------------------------------
# Coordinator side


class WorkerError(Exception):
    pass


class WorkerProcess(protocol.ProcessProtocol):
    def __init__(self):
        self.buf = b""
        self.pending = deque()
        self.on_event = None
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("type") == "event":
                if self.on_event is not None:
                    self.on_event(msg)
                continue
            d = self.pending.popleft()
            if "error" in msg:
                d.errback(WorkerError(msg["error"]))
            else:
                d.callback(msg)

    def request(self, reactor, timeout: float, cmd: str, **args) -> defer.Deferred:
        d = defer.Deferred()
        self.pending.append(d)
        self.transport.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        return d.addTimeout(timeout, reactor)

    def processEnded(self, reason):
        while self.pending:
            self.pending.popleft().errback(WorkerError("worker exited"))
        self.ended.callback(None)


class WorkerPool:
    """C{n} worker processes; L{stop} ends them (abruptly after a few seconds)."""

    def __init__(self, reactor, n: int):
        self.reactor = reactor
        self.workers = []
        for _ in range(n):
            w = WorkerProcess()
            reactor.spawnProcess(
                w, sys.executable, [sys.executable, os.path.abspath(__file__), "worker"],
                env=dict(os.environ), childFDs={0: "w", 1: "r", 2: 2},
            )
            self.workers.append(w)

    @property
    def pids(self):
        return [w.transport.pid for w in self.workers if w.transport.pid]

    def each(self, cmd: str, args_list: list, timeout: float = 600) -> defer.Deferred:
        ds = [w.request(self.reactor, timeout, cmd, **a) for w, a in zip(self.workers, args_list)]
        return defer.gatherResults(ds, consumeErrors=True)

    def all(self, cmd: str, timeout: float = 600, **args) -> defer.Deferred:
        return self.each(cmd, [args] * len(self.workers), timeout)

    async def stop(self):
        from twisted.internet import task

        for w in self.workers:
            if w.transport.pid:
                w.request(self.reactor, 5, "quit").addErrback(lambda f: None)
        done = defer.DeferredList([w.ended for w in self.workers])
        timeout = task.deferLater(self.reactor, 5, lambda: None)
        await defer.DeferredList([done, timeout], fireOnOneCallback=True, consumeErrors=True)
        for w in self.workers:
            if w.transport.pid:
                w.transport.signalProcess("KILL")
        if not timeout.called:
            timeout.cancel()
        await done


def split(items: list, n: int) -> list:
    """C{items} dealt into C{n} nearly equal consecutive slices."""
    k, r = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + k + (1 if i < r else 0)
        out.append(items[start:end])
        start = end
    return out


class Target:
    """A running server: where it listens, which dialect, its pid."""

    def __init__(self, name, dialect, host, port, pid):
        self.name, self.dialect, self.host, self.port, self.pid = name, dialect, host, port, pid


def _check_login(replies, what):
    failed = sum(r.get("failed", 0) for r in replies)
    if failed:
        first = next(r["first_error"] for r in replies if r.get("first_error"))
        raise WorkerError(f"{what}: {failed} failed, e.g. {first}")


async def _sleep_until(reactor, t_ns: int):
    from twisted.internet import task

    await task.deferLater(reactor, max(0.0, (t_ns - time.monotonic_ns()) / 1e9), lambda: None)


async def run_private(reactor, target: Target, pool: WorkerPool, pairs_per_worker=20,
                      window=32, warmup=1.0, duration=5.0) -> dict:
    """Private-message throughput: pipelined pairs, each with a bounded window."""
    n = len(pool.workers)
    users = split(accounts(1, 2 * pairs_per_worker * n), n)
    _check_login(await pool.each("login", [
        {"host": target.host, "port": target.port, "dialect": target.dialect, "users": u}
        for u in users]), "login")
    t_start = time.monotonic_ns() + 300_000_000
    t_measure = t_start + int(warmup * 1e9)
    t_end = t_measure + int(duration * 1e9)
    work = pool.each("private", [
        {"pairs": [[u[i][0], u[i + 1][0]] for i in range(0, len(u), 2)], "window": window,
         "t_start": t_start, "t_measure": t_measure, "t_end": t_end}
        for u in users], timeout=duration + warmup + 60)
    await _sleep_until(reactor, t_measure)
    meter = CpuMeter(target.pid, pool.pids)
    await _sleep_until(reactor, t_end)
    meter.stop()
    replies = await work
    count = sum(r["count"] for r in replies)
    lat = merge_samples([(r["lat_us"], r["weight"]) for r in replies])
    errors = sum(r["errors"] for r in replies)
    wall = (t_end - t_measure) / 1e9
    return {
        "msgs_per_s": count / wall,
        "p50_ms": _ms(percentile(lat, 1, 0.50)),
        "p99_ms": _ms(percentile(lat, 1, 0.99)),
        **meter.report(count, "msg"),
        "messages": count,
        "errors": errors,
        "first_error": next((r["first_error"] for r in replies if r["first_error"]), None),
        "lost": sum(r["sent"] - r["delivered"] for r in replies),
    }


async def run_pipeline(reactor, target: Target, pool: WorkerPool, pairs=50, messages=4000,
                       batch=100, timeout=120.0) -> dict:
    """
    The deep pipeline (issue 25): C{pairs} sender/receiver pairs (dealt over the
    workers), each sender writing C{messages} private messages in writes of
    C{batch} lines as fast as its socket takes them. Rate = deliveries / (first
    write to last delivery); server CPU over all its threads per delivered message.
    """
    n = len(pool.workers)
    # Pairs are dealt to the workers whole: a sender and its receiver share a process.
    dealt = split([accounts(2 * i + 1, 2) for i in range(pairs)], n)
    users = [[a for pair in part for a in pair] for part in dealt]
    _check_login(await pool.each("login", [
        {"host": target.host, "port": target.port, "dialect": target.dialect, "users": u}
        for u in users]), "login")
    t_start = time.monotonic_ns() + 300_000_000
    work = pool.each("pipeline", [
        {"pairs": [[s[0], r[0]] for s, r in part],
         "messages": messages, "batch": batch, "t_start": t_start, "deadline": timeout}
        for part in dealt], timeout=timeout + 60)
    await _sleep_until(reactor, t_start)
    meter = CpuMeter(target.pid, pool.pids)
    replies = await work
    meter.stop()
    count = sum(r["count"] for r in replies)
    lat = merge_samples([(r["lat_us"], r["weight"]) for r in replies])
    wall = (max(r["t_last"] for r in replies) - min(r["t_first"] for r in replies)) / 1e9
    expected = messages * pairs
    return {
        "msgs_per_s": count / wall if wall > 0 else None,
        "p50_ms": _ms(percentile(lat, 1, 0.50)),
        "p99_ms": _ms(percentile(lat, 1, 0.99)),
        **meter.report(count, "msg"),
        "messages": count,
        "expected": expected,
        "lost": expected - count,
        "errors": sum(r["errors"] for r in replies),
        "first_error": next((r["first_error"] for r in replies if r["first_error"]), None),
    }


def _ms(us):
    return None if us is None else us / 1000.0


async def run_fanout(reactor, target: Target, pool: WorkerPool, members=1000, repeats=30,
                     warmup=3) -> dict:
    """One message to a group of C{members} joined members; time until the last has it."""
    d = DIALECTS[target.dialect]
    n = len(pool.workers)
    group = "benchgroup"
    sender = await connect(reactor, target.host, target.port, d)
    try:
        await login(sender, user_name(1), user_password(1))
        member_accounts = accounts(2, members)
        _check_login(await pool.each("login", [
            {"host": target.host, "port": target.port, "dialect": target.dialect, "users": u}
            for u in split(member_accounts, n)]), "login")
        await sender.expect(d.create_result,
                            d.create_group(group, [name for name, _ in member_accounts]))
        joined = await pool.all("join", group=group)
        _check_login([{"failed": r["failed"], "first_error": r["first_error"]} for r in joined],
                     "join")
        expected = len([w for w, u in zip(pool.workers, split(member_accounts, n)) if u])
        got: dict = {}
        waiting: dict = {}

        def on_event(msg):
            k = msg["got"]
            got.setdefault(k, []).append(msg["t_last"])
            if len(got[k]) == expected and k in waiting:
                waiting.pop(k).callback(max(got[k]))

        for w in pool.workers:
            w.on_event = on_event
        latencies = []
        meter = None
        for k in range(warmup + repeats):
            if k == warmup:
                meter = CpuMeter(target.pid, pool.pids)
            waiting[k] = defer.Deferred().addTimeout(60, reactor)
            t_send = time.monotonic_ns()
            ack = sender.expect(d.group_ack, d.group_line(group, t_send, k))
            t_last = await waiting[k]
            await ack
            if k >= warmup:
                latencies.append((t_last - t_send) / 1e6)
        meter.stop()
    finally:
        sender.transport.loseConnection()
    latencies.sort()
    deliveries = repeats * members
    return {
        "members": members,
        "repeats": repeats,
        "p50_ms": percentile(latencies, 1, 0.50),
        "p99_ms": percentile(latencies, 1, 0.99),
        "max_ms": latencies[-1] if latencies else None,
        **meter.report(deliveries, "delivery"),
    }


async def run_idle(reactor, target: Target, pool: WorkerPool, levels=(1000, 5000, 10000)):
    """Server RSS per logged-in idle client at each level of C{levels}."""
    n = len(pool.workers)
    rss0 = rss_bytes(target.pid)
    result = {"rss0_mib": rss0 / 2**20, "levels": {}}
    have = 0
    for level in levels:
        new = accounts(have + 1, level - have)
        replies = await pool.each("login", [
            {"host": target.host, "port": target.port, "dialect": target.dialect, "users": u,
             "concurrency": 32}
            for u in split(new, n)], timeout=900)
        held = have + sum(r["n"] for r in replies)
        rss = rss_bytes(target.pid)
        result["levels"][level] = {
            "held": held,
            "rss_mib": rss / 2**20,
            "kib_per_client": (rss - rss0) / 1024 / held if held else None,
        }
        if held < level:
            result["levels"][level]["first_error"] = next(
                (r["first_error"] for r in replies if r.get("first_error")), None)
            break
        have = level
    return result


async def run_logins(reactor, target: Target, pool: WorkerPool, n=10000) -> dict:
    """Logins per second (pre-connected sockets, all LOGINs at once), then logouts."""
    workers = len(pool.workers)
    parts = split(accounts(1, n), workers)
    _check_login(await pool.each("connect", [
        {"host": target.host, "port": target.port, "dialect": target.dialect, "n": len(u),
         "concurrency": 32}
        for u in parts], timeout=900), "connect")
    meter = CpuMeter(target.pid, pool.pids)
    replies = await pool.each("login_go", [{"users": u} for u in parts], timeout=600)
    meter.stop()
    ok = sum(r["ok"] for r in replies)
    _check_login(replies, "login")
    wall = (max(r["t_last"] for r in replies) - min(r["t_first"] for r in replies)) / 1e9
    out = {"logins": ok, "logins_per_s": ok / wall,
           **{"login_" + k: v for k, v in meter.report(ok, "login").items()}}
    meter = CpuMeter(target.pid, pool.pids)
    replies = await pool.all("logout_go", timeout=600)
    meter.stop()
    done = sum(r["n"] for r in replies)
    wall = (max(r["t_last"] for r in replies) - min(r["t_first"] for r in replies)) / 1e9
    out.update({"logouts": done, "logouts_per_s": done / wall if wall > 0 else None,
                **{"logout_" + k: v for k, v in meter.report(done, "logout").items()}})
    return out


SCENARIOS = {"private": run_private, "pipeline": run_pipeline, "fanout": run_fanout,
             "idle": run_idle, "logins": run_logins}


def main(argv=None) -> int:
    """C{loadgen.py worker}, or one scenario against a server already running."""
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker_main()
        return 0
    parser = argparse.ArgumentParser(
        description="Run one benchmark scenario against a running server whose accounts "
        "are user00001.. / pw00001.. (see write_credentials); bench/run_all.py runs them all.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server's pid")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="chat")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--args", default="{}", help="JSON keyword arguments of the scenario")
    args = parser.parse_args(argv)
    raise_nofile()
    from twisted.internet import task

    async def run(reactor):
        pool = WorkerPool(reactor, args.workers)
        try:
            target = Target("server", args.dialect, args.host, args.port, args.pid)
            result = await SCENARIOS[args.scenario](reactor, target, pool,
                                                    **json.loads(args.args))
            print(json.dumps(result, indent=2))
        finally:
            await pool.stop()

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
