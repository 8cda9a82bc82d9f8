"""
The web front end's benchmarks (issue 14): WebSocket clients next to
line-protocol clients on the same server, measured by one generator.

    python bench/bench_web.py                 # 1,000 idle WebSocket clients; private msgs/s, both protocols
    python bench/bench_web.py --idle 200 --pairs 10 --duration 2    # quicker

1. Idle: N browser-protocol clients (POST /login, then the WebSocket with the
   session cookie, each reading its hello) stay connected; (server RSS now -
   RSS before) / N. The same for N line-protocol clients, for comparison.
2. Private messages: P sender/receiver pairs, each sender keeping at most W
   messages in flight (sent, not yet delivered) to its receiver; deliveries
   a second over the measured window, and the server's CPU per message.
   Once over WebSocket (JSON `send` requests, `message` events), once over
   the line protocol (`/msgto`, `MSG`), same generator design.

The clients' bytes are bench/webclient.py's (shared with bench/run_all.py's
`ours-web` kind). One process drives every client, so compare the two
protocols with each other rather than with bench/run_all.py's figures.
Everything listens on 127.0.0.1, port 0, in a temporary directory.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet import defer, protocol, task

import loadgen
import webclient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAMP = re.compile(rb"t(\d+) k0")


def start_server(data_dir: str, credentials: str):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, *(["-m", "cProfile", "-o", os.environ["BENCH_WEB_PROFILE"]]
                           if os.environ.get("BENCH_WEB_PROFILE") else []),
         "-m", "chatproto.server", "0", "5", "--interface", "127.0.0.1",
         "--web-port", "0", "--data-dir", data_dir, "--credentials", credentials,
         "--max-connections", "0", "--max-connections-per-ip", "0", "--rate-limit", "0"],
        cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line_port = web_port = None
    deadline = time.monotonic() + 30
    while (line_port is None or web_port is None) and time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        m = re.match(r"Server listening on [\d.]+:(\d+)", line)
        if m:
            line_port = int(m.group(1))
        m = re.match(r"Web client on http://[\d.]+:(\d+)/", line)
        if m:
            web_port = int(m.group(1))
    if line_port is None or web_port is None:
        process.kill()
        raise SystemExit("the server did not start (or has no web listener)")
    # The operator's log (a line per login) must not fill the pipe and stall the server.
    threading.Thread(target=lambda: [None for _ in iter(process.stdout.readline, b"")], daemon=True).start()
    return process, line_port, web_port


# -------------------------------------------------------------------- clients


class HTTPLogin(protocol.Protocol):
    """POST /login; fires with the session cookie's value."""

    def __init__(self, port, user, password):
        self.request = webclient.login_request("127.0.0.1", port, user, password, keep_alive=False)
        self.data = b""
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        token = webclient.session_cookie(self.data)
        if token:
            self.done.callback(token)
        else:
            self.done.errback(RuntimeError(self.data[:200].decode("latin-1")))


class WSClient(protocol.Protocol):
    """A browser-protocol client: the WebSocket with the cookie; counts stamped `message` events."""

    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.key = webclient.new_mask()
        self.ready = defer.Deferred()
        self.pair = None
        self.buf = b""
        self.upgraded = False
        self.hello = False

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(webclient.upgrade_request("127.0.0.1", self.port, self.token))

    def dataReceived(self, data):
        buf = self.buf + data
        if not self.upgraded:
            response = webclient.read_response(buf)
            if response is None:
                self.buf = buf
                return
            status, _, body, buf = response
            if status != 101:
                self.ready.errback(RuntimeError(f"upgrade refused: {status} {body[:200]!r}"))
                return
            self.upgraded = True
        frames, self.buf = webclient.split_frames(buf)
        stamps = 0
        for opcode, payload in frames:
            if opcode == webclient.PING:
                self.transport.write(webclient.client_frame(payload, self.key, webclient.PONG))
            elif opcode != 1:
                continue
            elif not self.hello:
                self.hello = True
                self.ready.callback(self)
            elif self.pair is not None and payload.startswith(b'{"type":"message"'):
                stamps += len(STAMP.findall(payload))
        if stamps:
            self.pair.delivered(stamps)

    def send_private(self, to: str, n: int):
        now = time.monotonic_ns()
        self.transport.write(webclient.text_frame(
            f'{{"text":"t{now} k0 hello from the benchmark","to":"{to}","id":1,"type":"send"}}', self.key) * n)


class LineClient(protocol.Protocol):
    def __init__(self, user, password):
        self.login = f"LOGIN {user} {password} 9\n".encode()
        self.ready = defer.Deferred()
        self.buf = b""
        self.pair = None
        self.logged_in = False

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.login)

    def dataReceived(self, data):
        buf = self.buf + data
        i = buf.rfind(b"\n")
        if i < 0:
            self.buf = buf
            return
        self.buf = buf[i + 1:]
        chunk = buf[:i + 1]
        if not self.logged_in:
            if b"OK" in chunk:
                self.logged_in = True
                self.ready.callback(self)
            return
        if self.pair is not None:
            n = len(STAMP.findall(chunk))
            if n:
                self.pair.delivered(n)

    def send_private(self, to: str, n: int):
        self.transport.write((f"/msgto {to} t{time.monotonic_ns()} k0 hello from the benchmark\n".encode()) * n)


class Pair:
    def __init__(self, run, sender, receiver, to, window):
        self.run = run
        self.sender = sender
        self.to = to
        self.window = window
        self.sent = 0
        self.got = 0
        receiver.pair = self

    def refill(self):
        n = self.window - (self.sent - self.got)
        if n > 0:
            self.sender.send_private(self.to, n)
            self.sent += n

    def delivered(self, n):
        self.got += n
        now = time.monotonic()
        if self.run.t_measure <= now <= self.run.t_end:
            self.run.count += n
        if self.run.sending and self.sent - self.got <= self.window // 2:
            self.refill()


class Run:
    def __init__(self):
        self.t_measure = self.t_end = 0.0
        self.count = 0
        self.sending = False


async def connect(reactor, port, proto):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30), proto)


async def ws_client(reactor, web_port, i):
    login = HTTPLogin(web_port, loadgen.user_name(i), loadgen.user_password(i))
    await connect(reactor, web_port, login)
    token = await login.done
    client = WSClient(web_port, token)
    await connect(reactor, web_port, client)
    return await client.ready


async def line_client(reactor, line_port, i):
    client = LineClient(loadgen.user_name(i), loadgen.user_password(i))
    await connect(reactor, line_port, client)
    return await client.ready


async def many(n, thunks, concurrency=50):
    sem = defer.DeferredSemaphore(concurrency)
    results = await defer.gatherResults(
        [sem.run(lambda f=f: defer.ensureDeferred(f())) for f in thunks], consumeErrors=True)
    return results


async def idle(reactor, pid, make, first, n):
    await task.deferLater(reactor, 0.5, lambda: None)
    before = loadgen.rss_bytes(pid)
    clients = await many(n, [lambda i=i: make(first + i) for i in range(n)])
    await task.deferLater(reactor, 0.5, lambda: None)
    after = loadgen.rss_bytes(pid)
    return clients, (after - before) / n / 1024


async def run_pairs(reactor, make, first, pairs, window, ready, go):
    """Connect the pairs, call C{ready()}, wait for C{go} (the window's monotonic bounds), run them."""
    clients = await many(2 * pairs, [lambda i=i: make(first + i) for i in range(2 * pairs)])
    run = Run()
    ps = [Pair(run, clients[2 * k], clients[2 * k + 1], loadgen.user_name(first + 2 * k + 1), window)
          for k in range(pairs)]
    ready()
    run.t_measure, run.t_end = await go
    run.sending = True
    for p in ps:
        p.refill()
    await task.deferLater(reactor, max(0.0, run.t_end - time.monotonic()), lambda: None)
    run.sending = False
    for c in clients:
        c.transport.loseConnection()
    return run.count


async def private(reactor, pid, kind, ports, first, pairs, window, warmup, duration, workers):
    """
    C{workers} generator processes (this script with C{--worker}), each with
    C{pairs} pairs, so that the generator is not the bottleneck.
    """
    procs = []
    for w in range(workers):
        proto = _WorkerProtocol()
        args = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--ports", ports,
                "--first", str(first + 2 * pairs * w), "--pairs", str(pairs), "--window", str(window)]
        reactor.spawnProcess(proto, sys.executable, args, env=dict(os.environ))
        procs.append(proto)
    await defer.gatherResults([p.ready for p in procs])
    now = time.monotonic()
    t_measure, t_end = now + warmup, now + warmup + duration
    for p in procs:
        p.transport.write(f"{t_measure} {t_end}\n".encode())
    await task.deferLater(reactor, warmup, lambda: None)
    cpu0 = loadgen.cpu_seconds(pid)
    await task.deferLater(reactor, duration, lambda: None)
    cpu = loadgen.cpu_seconds(pid) - cpu0
    count = sum(await defer.gatherResults([p.done for p in procs]))
    return {"msgs_per_s": count / duration, "cpu_us_per_msg": cpu * 1e6 / max(1, count),
            "server_cpu_pct": 100 * cpu / duration}


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self):
        self.ready = defer.Deferred()
        self.done = defer.Deferred()
        self.out = b""

    def outReceived(self, data):
        self.out += data
        if not self.ready.called and b"ready\n" in self.out:
            self.ready.callback(None)

    def processEnded(self, reason):
        m = re.search(rb"count (\d+)", self.out)
        if not self.ready.called:
            self.ready.errback(RuntimeError(self.out.decode(errors="replace")[-500:]))
        if m:
            self.done.callback(int(m.group(1)))
        else:
            self.done.errback(RuntimeError("worker failed: " + self.out.decode(errors="replace")[-500:]))


async def worker(reactor, args):
    loadgen.raise_nofile()
    line_port, web_port = (int(p) for p in args.ports.split(","))
    if args.worker == "ws":
        make = lambda i: ws_client(reactor, web_port, i)  # noqa: E731
    else:
        make = lambda i: line_client(reactor, line_port, i)  # noqa: E731
    from twisted.internet import threads

    def ready():
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    go = threads.deferToThread(lambda: tuple(float(x) for x in sys.stdin.readline().split()))
    count = await run_pairs(reactor, make, args.first, args.pairs, args.window, ready, go)
    sys.stdout.write(f"count {count}\n")
    sys.stdout.flush()


async def main(reactor, args):
    loadgen.raise_nofile()
    work = tempfile.mkdtemp(prefix="chatproto-bench-web-")
    try:
        n_accounts = 2 * args.idle + 4 * args.pairs * args.workers + 10
        credentials = os.path.join(work, "credentials.txt")
        loadgen.write_credentials(credentials, n_accounts)
        results = {}
        process, line_port, web_port = start_server(work, credentials)
        try:
            pid = process.pid
            ws_make = lambda i: ws_client(reactor, web_port, i)  # noqa: E731
            line_make = lambda i: line_client(reactor, line_port, i)  # noqa: E731

            clients, per = await idle(reactor, pid, ws_make, 1, args.idle)
            results["idle_ws_kib_per_client"] = per
            others, per = await idle(reactor, pid, line_make, 1 + args.idle, args.idle)
            results["idle_line_kib_per_client"] = per
            for c in clients + others:
                c.transport.loseConnection()
            await task.deferLater(reactor, 1.0, lambda: None)
            first = 1 + 2 * args.idle
            ports = f"{line_port},{web_port}"
            span = 2 * args.pairs * args.workers
            results["private_ws"] = await private(reactor, pid, "ws", ports, first, args.pairs, args.window,
                                                  args.warmup, args.duration, args.workers)
            results["private_line"] = await private(reactor, pid, "line", ports, first + span, args.pairs,
                                                    args.window, args.warmup, args.duration, args.workers)
        finally:
            process.terminate()
            process.wait(30)
        ws, line = results["private_ws"], results["private_line"]
        print(f"idle WebSocket clients: {args.idle}, {results['idle_ws_kib_per_client']:.1f} KiB each "
              f"(line protocol: {results['idle_line_kib_per_client']:.1f} KiB each)")
        print(f"private msgs/s over WebSocket: {ws['msgs_per_s']:,.0f} ({ws['cpu_us_per_msg']:.1f} us server CPU/msg, "
              f"server {ws['server_cpu_pct']:.0f}% busy)")
        print(f"private msgs/s over the line protocol: {line['msgs_per_s']:,.0f} ({line['cpu_us_per_msg']:.1f} us "
              f"server CPU/msg, server {line['server_cpu_pct']:.0f}% busy)")
        print(f"WebSocket / line protocol: {ws['msgs_per_s'] / max(1.0, line['msgs_per_s']):.2f}")
        if args.json:
            print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cli(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) - 1)),
                        help="generator processes for the private messages (default: cores - 1, at most 4)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=["ws", "line"], help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        task.react(lambda reactor: defer.ensureDeferred(worker(reactor, args)))
    else:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))


if __name__ == "__main__":
    cli()
