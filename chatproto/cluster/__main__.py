"""
C{python -m chatproto.cluster demo --nodes 3}: a local cluster to try.

Starts a private PostgreSQL and a private Redis in a scratch directory (on
free loopback ports), then NODES server nodes on ports BASE, BASE+1, ...,
each with its own data directory, and prints how to connect to each. Ctrl-C
stops everything; the scratch directory is removed unless C{--keep}.
"""

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from .local import LocalPostgres, LocalRedis, postgres_bin, redis_bin

DEMO_ACCOUNTS = """Hans falcon*solo
Yoda wise@!man
vader sithlord**
leia alderaan
luke jedi*knight
obiwan hellothere
"""


def _relay(prefix, stream, ready, out=sys.stdout):
    for line in stream:
        if "listening on" in line:
            ready.set()
        out.write(f"{prefix} {line}")
        out.flush()
    ready.set()


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
        postgres = LocalPostgres(os.path.join(scratch, "postgres")).start()
        print(f"PostgreSQL: {postgres.url}", flush=True)
        redis = LocalRedis(os.path.join(scratch, "redis")).start()
        print(f"Redis: {redis.url}", flush=True)
        for i in range(args.nodes):
            data_dir = os.path.join(scratch, f"node{i + 1}")
            os.makedirs(data_dir, exist_ok=True)
            port = args.port + i
            command = [sys.executable, "-m", "chatproto.server", "--interface", "127.0.0.1",
                       "--data-dir", data_dir, "--credentials", credentials,
                       "--database", postgres.url, "--cluster", redis.url]
            if args.irc_port:
                command += ["--irc-port", str(args.irc_port + i)]
            if args.web_port:
                command += ["--web-port", str(args.web_port + i)]
            command += [str(port), str(args.attempts)]
            script = os.path.join(scratch, f"node{i + 1}.sh")
            with open(script, "w") as f:  # to start the node again by hand after killing it
                f.write("#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in command) + "\n")
            os.chmod(script, 0o755)
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
            ready = threading.Event()
            threading.Thread(target=_relay, args=(f"[node{i + 1}]", process.stdout, ready),
                             daemon=True).start()
            nodes.append(process)
            ready.wait(30)
            if process.poll() is not None:
                print(f"Error: node {i + 1} did not start (port {port} in use?)", file=sys.stderr)
                return 1
        print("", flush=True)
        print(f"{args.nodes} nodes are up. Accounts: {credentials}", flush=True)
        for i in range(args.nodes):
            extra = ""
            if args.irc_port:
                extra += f", IRC 127.0.0.1:{args.irc_port + i}"
            if args.web_port:
                extra += f", web http://127.0.0.1:{args.web_port + i}/"
            print(f"  node {i + 1}: python -m chatproto.client 127.0.0.1 {args.port + i} {6001 + i}"
                  f"{extra}   (data: {os.path.join(scratch, f'node{i + 1}')})", flush=True)
        print("Try: a user on each node, /creategroup, /groupmsg, /activeuser; kill -9 a node "
              "(pids: " + ", ".join(str(p.pid) for p in nodes) + f") and start it again with "
              f"{os.path.join(scratch, 'nodeN.sh')}. Ctrl-C stops everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            for process in nodes:
                process.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        for process in nodes:
            if process.poll() is None:
                process.terminate()
        for process in nodes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
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
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
