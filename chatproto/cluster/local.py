"""
Private PostgreSQL and Redis instances in a scratch directory, on free
loopback ports: for the tests and the demo cluster. Nothing here is needed
by a node in production, which is given the URLs of real instances.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> str | None:
    for directory in sorted(glob.glob(PG_BIN_GLOB), reverse=True):
        if os.path.exists(os.path.join(directory, "initdb")):
            return directory
    return None


def redis_bin() -> str | None:
    return shutil.which("redis-server")


class LocalPostgres:
    """A throw-away PostgreSQL cluster: C{start()}, C{url}, C{stop()}."""

    def __init__(self, directory: str, port: int | None = None):
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
        self.directory = os.path.abspath(directory)
        self.data = os.path.join(self.directory, "pgdata")
        self.port = port or free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args, check=True):
        command = [os.path.join(self.bin, args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)

    def start(self) -> "LocalPostgres":
        os.makedirs(self.directory, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l",
                  os.path.join(self.directory, "postgres.log"), "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)


class LocalRedis:
    """A throw-away redis-server (no persistence): C{start()}, C{url}, C{stop()}."""

    def __init__(self, directory: str, port: int | None = None):
        self.bin = redis_bin()
        if self.bin is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = os.path.abspath(directory)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        os.makedirs(self.directory, exist_ok=True)
        self.process = subprocess.Popen(
            [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:  # wait for its ready line
            if "Ready to accept connections" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError(f"redis-server exited: {self.process.wait()}")
        # Keep reading its output so that it never blocks on a full pipe.
        self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
        self._drain.start()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if getattr(self, "_drain", None) is not None:
            self._drain.join(10)
            self.process.stdout.close()
            self._drain = None
        self.process = None
