"""
Start and stop the servers under test, each as a subprocess on 127.0.0.1 with
a port it picks itself (port 0) and its files in a directory of its own.

- C{ours}: C{python -m chatproto.server 0 5 --interface 127.0.0.1 --data-dir D
  --credentials F}
- C{before}: the same at another commit (a checkout named by C{BENCH_BEFORE_TREE})
- C{before-irc}: C{ours-irc} at that other commit
- C{seed}: C{bench/baselines/seed_server.py}, same arguments (benchmark only)
- C{words}: C{twistd -n -y bench/baselines/words.tac} (twisted.words IRC)
- C{ours-irc}: C{ours} with C{--irc-port 0}, driven over IRC (ready line
  C{IRC listening on ADDR:PORT})
- C{ours-web}: C{ours} with C{--web-port 0}, driven over the browser protocol
  (POST /login, the WebSocket; ready line C{Web client on http://ADDR:PORT/});
  C{before-web}: the same at the C{BENCH_BEFORE_TREE} commit
- C{inspircd}: C{bench/baselines/inspircd.py --dir D} (Debian's InspIRCd 3.15,
  installed with apt-get when missing; benchmark only, never in the tests). Its
  ready line names the pid to measure: C{Server listening on ADDR:PORT
  (inspircd pid N)} (the wrapper script is not the server)
- C{ergo}: C{bench/baselines/ergo.py --dir D} (ergo 2.11.1, Go, built from a
  copy of its sources named by C{ERGO_SRC}; skipped when Go or the sources are
  missing, see L{available}); ready line C{... (ergo pid N)}

Each prints C{Server listening on ADDR:PORT} when ready. The open-file limit
is raised in this process first, and the servers inherit it.
"""

import os
import re
import sys

from twisted.internet import defer, protocol, task

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
READY = re.compile(rb"Server listening on ([0-9.]+):(\d+)")
IRC_READY = re.compile(rb"IRC listening on ([0-9.]+):(\d+)")
WEB_READY = re.compile(rb"Web client on http://([0-9.]+):(\d+)/")
INSPIRCD_READY = re.compile(rb"Server listening on ([0-9.]+):(\d+) \(inspircd pid (\d+)\)\n")
ERGO_READY = re.compile(rb"Server listening on ([0-9.]+):(\d+) \(ergo pid (\d+)\)\n")

SERVERS = {
    # name: (label, dialect)
    "ours": ("ours", "chat"),
    "seed": ("seed-threaded", "chat"),
    "words": ("twistd-words", "irc"),
    # InspIRCd 3.15, a production C++ IRC server (issue 17), same IRC dialect.
    "inspircd": ("inspircd", "irc"),
    # ergo 2.11.1, a production Go IRC server (issue 25), history in memory.
    "ergo": ("ergo", "irc"),
    # chatproto's IRC front end (the same server, its --irc-port listener).
    "ours-irc": ("ours-irc", "chatirc"),
    # Its web front end: the browser's protocol (bench/webclient.py), each client a tab.
    "ours-web": ("ours-web", "web"),
    # Ours without the search index (bench/experiments/noindex_server.py): what the index costs.
    "ours-noindex": ("ours-no-search-index", "chat"),
    # EXPERIMENT: ours storing a conversation's run as one row (bench/experiments/runrows_server.py).
    "ours-runrows": ("ours-run-rows", "chat"),
    # Ours at another commit, side by side in the same run: a checkout named by
    # BENCH_BEFORE_TREE (e.g. `git worktree add /tmp/before 3f303dc`).
    "before": ("ours-before", "chat"),
    # The same over IRC: the other commit's --irc-port listener.
    "before-irc": ("ours-irc-before", "chatirc"),
    "before-web": ("ours-web-before", "web"),
    # Ours at a second other commit in the same run (BENCH_OLD_TREE): issue 25 compares with the
    # last release before the database (3f303dc) as well as with the commit before a change.
    "old": ("ours-old", "chat"),
}


BEFORE = ("before", "before-irc", "before-web")  # ours at the commit BENCH_BEFORE_TREE


def command(kind: str, data_dir: str, credentials: str, profile_to: str = None):
    """(argv, env) to start server C{kind}; chatproto's under cProfile, written to C{profile_to}, if given."""
    env = dict(os.environ)
    python = [sys.executable, *(["-m", "cProfile", "-o", profile_to] if profile_to else [])]
    if profile_to and kind not in ("ours", "ours-irc", "ours-web", "old", *BEFORE):
        raise ValueError(f"server {kind!r} is not chatproto's: it cannot run under cProfile")
    common = ["0", "5", "--interface", "127.0.0.1", "--data-dir", data_dir,
              "--credentials", credentials]
    # The load generator opens thousands of connections from one address: no caps; and its
    # clients send as fast as they can: no command rate (on by default since issue 28).
    uncapped = ["--max-connections", "0", "--max-connections-per-ip", "0", "--rate-limit", "0"]
    # The second listener, for the kinds driven over IRC or the web socket.
    extra = {"irc": ["--irc-port", "0"], "web": ["--web-port", "0"]}.get(kind.rpartition("-")[2], [])
    if kind in ("ours", "ours-irc", "ours-web"):
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        return [*python, "-m", "chatproto.server", *common, *uncapped, *extra], env
    if kind in BEFORE or kind == "old":
        variable = "BENCH_OLD_TREE" if kind == "old" else "BENCH_BEFORE_TREE"
        tree = os.environ.get(variable)
        if not tree:
            raise ValueError(f"server {kind!r} needs {variable} (a checkout of the other commit)")
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
        return [*python, "-m", "chatproto.server", *common, *uncapped, *extra], env
    if kind in ("ours-noindex", "ours-runrows"):
        script = os.path.join(BENCH, "experiments",
                              "noindex_server.py" if kind == "ours-noindex" else "runrows_server.py")
        return [sys.executable, script, *common, *uncapped], env
    if kind == "seed":
        return [sys.executable, os.path.join(BENCH, "baselines", "seed_server.py"), *common], env
    if kind == "words":
        env["WORDS_PORT"] = "0"
        env["WORDS_INTERFACE"] = "127.0.0.1"
        return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
                "-y", os.path.join(BENCH, "baselines", "words.tac")], env
    if kind == "inspircd":
        script = os.path.join(BENCH, "baselines", "inspircd.py")
        return [sys.executable, script, "--dir", data_dir, "--interface", "127.0.0.1"], env
    if kind == "ergo":
        script = os.path.join(BENCH, "baselines", "ergo.py")
        return [sys.executable, script, "--dir", data_dir, "--interface", "127.0.0.1"], env
    raise ValueError(f"unknown server {kind!r}")


def ready_line(kind: str):
    """The regex of C{kind}'s ready line: groups host, port and (maybe) the measured pid."""
    return {"ours-irc": IRC_READY, "before-irc": IRC_READY, "ours-web": WEB_READY,
            "before-web": WEB_READY, "inspircd": INSPIRCD_READY, "ergo": ERGO_READY}.get(kind, READY)


def available(kind: str) -> str:
    """Why server C{kind} cannot run here ("" when it can): ergo needs Go and its sources."""
    if kind == "ergo":
        sys.path.insert(0, os.path.join(BENCH, "baselines"))
        try:
            import ergo
        finally:
            sys.path.pop(0)
        return ergo.missing()
    return ""


def ours_available() -> bool:
    return os.path.exists(os.path.join(REPO, "chatproto", "server", "__init__.py"))


class ServerFailed(Exception):
    pass


class ServerProcess(protocol.ProcessProtocol):
    def __init__(self, log_path: str, ready=READY):
        self.ready_line = ready
        self.log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.out = b""

    def outReceived(self, data):
        os.write(self.log, data)
        if not self.ready.called:
            self.out += data
            m = self.ready_line.search(self.out)
            if m:
                pid = int(m.group(3)) if m.re.groups >= 3 else None
                self.ready.callback((m.group(1).decode(), int(m.group(2)), pid))

    def processEnded(self, reason):
        os.close(self.log)
        if not self.ready.called:
            self.ready.errback(ServerFailed(f"server exited before it was ready: {reason.value}"))
        self.ended.callback(reason.value)


class RunningServer:
    def __init__(self, kind, proc, transport, host, port, data_dir, pid=None):
        self.kind = kind
        self.label, self.dialect = SERVERS[kind]
        self.proc = proc
        self.transport = transport
        # The process whose CPU and memory are measured (a wrapper may name its child).
        self.pid = pid or transport.pid
        self.host = host
        self.port = port
        self.data_dir = data_dir

    async def stop(self, reactor, grace: float = 10.0):
        """SIGTERM, then SIGKILL after C{grace} seconds."""
        if self.transport.pid is None:
            return
        self.transport.signalProcess("TERM")
        timer = task.deferLater(reactor, grace, lambda: None)
        await defer.DeferredList([self.proc.ended, timer], fireOnOneCallback=True,
                                 consumeErrors=True)
        if not self.proc.ended.called and self.transport.pid is not None:
            self.transport.signalProcess("KILL")
        if not timer.called:
            timer.cancel()
        await self.proc.ended


def tail(path: str, size: int = 2000) -> str:
    with open(path, "rb") as f:
        return f.read()[-size:].decode("utf-8", "replace")


async def start(reactor, kind: str, data_dir: str, credentials: str,
                timeout: float = 30.0, profile_to: str = None) -> RunningServer:
    os.makedirs(data_dir, exist_ok=True)
    argv, env = command(kind, data_dir, credentials, profile_to)
    log_path = os.path.join(data_dir, "server-output.log")
    proc = ServerProcess(log_path, ready_line(kind))
    # `python -m` puts its working directory first on sys.path: the other commit's tree for
    # "before" ("old"), else that server runs this tree's code.
    cwd = (os.environ["BENCH_BEFORE_TREE"] if kind in BEFORE
           else os.environ["BENCH_OLD_TREE"] if kind == "old" else REPO)
    err = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        transport = reactor.spawnProcess(proc, argv[0], argv, env=env, path=cwd,
                                         childFDs={0: "w", 1: "r", 2: err})
    finally:
        os.close(err)
    try:
        host, port, pid = await proc.ready.addTimeout(timeout, reactor)
    except Exception as e:  # noqa: BLE001 - any failure: kill it, show its output
        if transport.pid is not None:
            transport.signalProcess("KILL")
        raise ServerFailed(f"{kind}: {e}\n{tail(log_path)}") from None
    return RunningServer(kind, proc, transport, host, port, data_dir, pid)


def react_main(run, args) -> int:
    """Run the coroutine C{run(reactor, args)} under the reactor; return its exit status."""
    from twisted.internet import defer, task

    status = []

    async def go(reactor):
        status.append(await run(reactor, args))

    try:
        task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    return status[0] if status else 1
