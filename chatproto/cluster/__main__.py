"""
C{python -m chatproto.cluster demo --nodes 3}: a local cluster to try.

Starts a private PostgreSQL and a private Redis in a scratch directory (on
free loopback ports), then NODES server nodes on ports BASE, BASE+1, ...
(a port in use is replaced by the next free one), each with its own data
directory, and prints how to connect to each once every node has printed its
ready lines. A node that does not start stops the demo with its own error
and exit status 1. Ctrl-C stops everything; the scratch directory is removed
unless C{--keep}.
"""

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from .local import LocalPostgres, LocalRedis, free_port, postgres_bin, redis_bin

DEMO_ACCOUNTS = """Hans falcon*solo
Yoda wise@!man
vader sithlord**
leia alderaan
luke jedi*knight
obiwan hellothere
"""


# What a node prints once each of its listeners is open: only then is it up.
LINE_READY = "Server listening on "
IRC_READY = "IRC listening on "
WEB_READY = "Web client on http://"
READY_SECONDS = 60  # a node that has printed neither its ready lines nor its end by then is stuck
PORT_SCAN = 100  # a port in use is replaced by the next free one above it, this far at most


class Node:
    """One node process: its output relayed with a prefix, and whether it is up or has ended."""

    def __init__(self, number: int, process, expected: tuple, out=sys.stdout):
        self.number = number
        self.process = process
        self.missing = set(expected)  # ready lines not printed yet
        self.tail: list[str] = []  # its last lines: what it said when it fails
        self.settled = threading.Event()  # up, or its output ended
        self.ended = False  # its output ended: it exited (or is exiting)
        self.thread = threading.Thread(target=self._relay, args=(out,), daemon=True)
        self.thread.start()

    @property
    def up(self) -> bool:
        return not self.missing

    def _relay(self, out) -> None:
        prefix = f"[node{self.number}]"
        for line in self.process.stdout:
            self.tail = (self.tail + [line.rstrip("\n")])[-20:]
            for ready in list(self.missing):
                if line.startswith(ready):
                    self.missing.discard(ready)
            out.write(f"{prefix} {line}")
            out.flush()
            if self.up:
                self.settled.set()
        self.ended = True
        self.settled.set()

    def failure(self) -> str:
        """Why the node is not up, in its own words."""
        if self.ended:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        status = self.process.poll()
        said = [line.strip() for line in self.tail if line.strip()]
        errors = [line for line in said if line.startswith("Error:")]
        reason = (errors or said or ["(it printed nothing)"])[-1]
        if reason.startswith("Error: "):
            reason = reason[len("Error: "):]
        if status is None:
            return (f"node {self.number} printed no ready line within {READY_SECONDS} s; "
                    f"its last line: {reason}")
        return f"node {self.number} did not start (exit status {status}): {reason}"


def port_free(port: int) -> bool:
    """Whether a node could listen on C{port} on the loopback address now (as the server binds)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(first: int, count: int, taken: set, busy: list) -> list:
    """
    C{count} ports from C{first} up, one per node: a port in use (another
    server, a demo already running) is replaced by the next free one above
    it, so that the demo starts whatever else runs on the machine. The ports
    found in use are added to C{busy}.
    """
    ports = []
    candidate = first
    while len(ports) < count:
        for port in range(candidate, min(candidate + PORT_SCAN, 65536)):
            if port not in taken and port_free(port):
                break
            if port not in taken:
                busy.append(port)
        else:
            port = free_port()
        ports.append(port)
        taken.add(port)
        candidate = port + 1
    return ports


def client_command() -> str:
    """How to run this interpreter from here: C{.venv/bin/python} in a clone with its venv."""
    python = sys.executable
    relative = os.path.relpath(python)
    if not relative.startswith(os.pardir):
        python = relative
    return f"{shlex.quote(python)} -m chatproto.client"


def demo(args) -> int:
    missing = [name for name, found in (("PostgreSQL (postgresql)", postgres_bin()),
                                        ("Redis (redis-server)", redis_bin())) if found is None]
    if missing:
        print(f"Error: the demo needs {' and '.join(missing)} installed", file=sys.stderr)
        return 1
    scratch = os.path.abspath(args.dir) if args.dir else tempfile.mkdtemp(prefix="chatproto-cluster-")
    os.makedirs(scratch, exist_ok=True)
    os.chmod(scratch, 0o755)  # PostgreSQL runs as its own user and must reach its directory
    credentials = args.credentials or os.path.join(scratch, "credentials.txt")
    if not args.credentials and not os.path.exists(credentials):
        with open(credentials, "w") as f:
            f.write(DEMO_ACCOUNTS)
    postgres = redis = None
    nodes = []
    try:
        print(f"Scratch directory: {scratch}", flush=True)
        # Each is named before it starts: an interrupt while it starts still stops it.
        postgres = LocalPostgres(os.path.join(scratch, "postgres"))
        postgres.start()
        print(f"PostgreSQL: {postgres.url}", flush=True)
        redis = LocalRedis(os.path.join(scratch, "redis"))
        redis.start()
        print(f"Redis: {redis.url}", flush=True)
        taken: set = set()
        chosen = []
        for kind, first in (("", args.port), ("IRC ", args.irc_port), ("web ", args.web_port)):
            busy: list = []
            chosen.append(pick_ports(first, args.nodes, taken, busy) if first else None)
            if busy:
                print(f"In use: {kind}port {', '.join(map(str, busy))}; the nodes use {kind}ports "
                      + ", ".join(map(str, chosen[-1])), flush=True)
        ports, irc_ports, web_ports = chosen
        for i in range(args.nodes):
            data_dir = os.path.join(scratch, f"node{i + 1}")
            os.makedirs(data_dir, exist_ok=True)
            command = [sys.executable, "-m", "chatproto.server", "--interface", "127.0.0.1",
                       "--data-dir", data_dir, "--credentials", credentials,
                       "--database", postgres.url, "--cluster", redis.url]
            expected = [LINE_READY]
            if irc_ports:
                command += ["--irc-port", str(irc_ports[i])]
                expected.append(IRC_READY)
            if web_ports:
                command += ["--web-port", str(web_ports[i])]
                expected.append(WEB_READY)
            command += [str(ports[i]), str(args.attempts)]
            script = os.path.join(scratch, f"node{i + 1}.sh")
            with open(script, "w") as f:  # to start the node again by hand after killing it
                f.write("#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in command) + "\n")
            os.chmod(script, 0o755)
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace",
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
            node = Node(i + 1, process, tuple(expected))
            nodes.append(node)
            node.settled.wait(READY_SECONDS)
            if not node.up:
                print(f"Error: {node.failure()}", file=sys.stderr, flush=True)
                return 1
        print("", flush=True)
        print(f"{args.nodes} nodes are up. Accounts: {credentials}", flush=True)
        client = client_command()
        for i in range(args.nodes):
            extra = ""
            if irc_ports:
                extra += f", IRC 127.0.0.1:{irc_ports[i]}"
            if web_ports:
                extra += f", web http://127.0.0.1:{web_ports[i]}/"
            print(f"  node {i + 1}: {client} 127.0.0.1 {ports[i]}"
                  f"{extra}   (data: {os.path.join(scratch, f'node{i + 1}')})", flush=True)
        print("Try: a user on each node, /creategroup, /groupmsg, /activeuser; kill -9 a node "
              "(pids: " + ", ".join(str(n.process.pid) for n in nodes) + f") and start it again with "
              f"{os.path.join(scratch, 'nodeN.sh')}. Ctrl-C stops everything.", flush=True)
        try:
            for node in nodes:
                node.process.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
            node.thread.join(10)
            node.process.stdout.close()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"Kept {scratch}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatproto.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="start a local cluster on private Redis and PostgreSQL")
    run.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    run.add_argument("--port", type=int, default=9000, help="the first node's port (default 9000)")
    run.add_argument("--irc-port", type=int, default=0, help="IRC on this port for node 1, +1 per node")
    run.add_argument("--web-port", type=int, default=0,
                     help="the browser client on this port for node 1, +1 per node")
    run.add_argument("--attempts", type=int, default=3, help="failed logins before a block (1-5)")
    run.add_argument("--credentials", help="the accounts file (default: six demo accounts)")
    run.add_argument("--dir", help="the scratch directory (kept; default: a new temporary one)")
    run.add_argument("--keep", action="store_true", help="keep the scratch directory at the end")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 20:
        parser.error("--nodes: from 1 to 20")
    # SIGTERM stops everything as Ctrl-C does, at any moment (the demo's cleanup runs).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return demo(args)
    except KeyboardInterrupt:
        print("Interrupted: stopped everything.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
