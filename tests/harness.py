"""
End-to-end test harness: a real server process and real client processes
over loopback.

Waiting is always for an expected line (with a timeout), never a sleep.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CREDENTIALS = os.path.join(REPO, "credentials.txt")
TIMEOUT = 15.0


def child_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CHATPROTO_TEST_UDP_LOSS", None)
    if extra:
        env.update(extra)
    return env


class OutputReader:
    """Collects a process's output lines on a thread; L{expect} waits for one."""

    def __init__(self, stream, name):
        self.name = name
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()
        self._seen = 0

    def _read(self, stream):
        for raw in iter(stream.readline, b""):
            self._queue.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._queue.put(None)

    def _pull(self, timeout):
        line = self._queue.get(timeout=timeout)
        if line is not None:
            self.lines.append(line)
        return line

    def expect(self, pattern, timeout=TIMEOUT) -> re.Match | str:
        """
        Wait for the next line (after those already matched) that matches
        C{pattern}: a plain string must equal a whole line, a compiled regex
        must search it.
        """
        deadline = time.monotonic() + timeout
        while True:
            while self._seen < len(self.lines):
                line = self.lines[self._seen]
                self._seen += 1
                found = _match(pattern, line)
                if found:
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: no line matching {pattern!r}; output so far:\n"
                    + "\n".join(self.lines[-40:])
                )
            try:
                if self._pull(remaining) is None:
                    raise AssertionError(
                        f"{self.name}: output ended before {pattern!r}; output:\n"
                        + "\n".join(self.lines[-40:])
                    )
            except queue.Empty:
                continue

    def expect_each(self, *patterns, timeout=TIMEOUT) -> None:
        """Wait until each pattern has matched a line of its own, in any order."""
        deadline = time.monotonic() + timeout
        waiting = list(patterns)
        i = self._seen
        while True:
            while i < len(self.lines) and waiting:
                line = self.lines[i]
                i += 1
                for pattern in waiting:
                    if _match(pattern, line):
                        waiting.remove(pattern)
                        break
            if not waiting:
                self._seen = i
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no lines matching {waiting!r}; output so far:\n"
                                     + "\n".join(self.lines[-40:]))
            try:
                if self._pull(remaining) is None:
                    raise AssertionError(f"{self.name}: output ended before {waiting!r}")
            except queue.Empty:
                continue

    def rest(self, timeout=TIMEOUT) -> list[str]:
        """All remaining lines until the stream ends."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._pull(max(0.01, deadline - time.monotonic())) is None:
                    break
            except queue.Empty:
                break
        out = self.lines[self._seen:]
        self._seen = len(self.lines)
        return out


def _match(pattern, line):
    if isinstance(pattern, str):
        return line if line == pattern else None
    return pattern.search(line)


class ServerProcess:
    """C{python -m chatproto.server 0 ATTEMPTS} in a fresh data directory."""

    def __init__(self, attempts=3, credentials=None, data_dir=None, extra_args=(), env=None, port=0):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="chatproto-e2e-")
        self._own_dir = data_dir is None
        self.credentials = credentials or os.path.join(self.data_dir, "credentials.txt")
        if credentials is None:
            shutil.copy(DEMO_CREDENTIALS, self.credentials)
        args = [sys.executable, "-m", "chatproto.server", str(port), str(attempts),
                "--interface", "127.0.0.1", "--data-dir", self.data_dir,
                "--credentials", self.credentials, *extra_args]
        self.process = subprocess.Popen(
            args, cwd=self.data_dir, env=child_env(env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stdout = OutputReader(self.process.stdout, "server stdout")
        self.stderr = OutputReader(self.process.stderr, "server stderr")
        match = self.stdout.expect(re.compile(r"^Server listening on ([\d.]+):(\d+)$"))
        self.host, self.port = match.group(1), int(match.group(2))

    def path(self, name):
        return os.path.join(self.data_dir, name)

    def read(self, name) -> str:
        with open(self.path(name), encoding="utf-8") as f:
            return f.read()

    def client(self, udp_port=0, **kwargs) -> "ClientProcess":
        return ClientProcess(self.host, self.port, udp_port or free_udp_port(), **kwargs)

    def login(self, username, password, **kwargs) -> "ClientProcess":
        client = self.client(**kwargs)
        client.login(username, password)
        return client

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.stdout.rest(1)
            self.stderr.rest(1)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)

    def cleanup(self):
        self.kill()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class ClientProcess:
    """C{python -m chatproto.client HOST PORT UDP_PORT} with piped stdin/stdout."""

    PROMPT = "Enter one of the following commands ("

    def __init__(self, host, port, udp_port, cwd=None, env=None, args=()):
        self.cwd = cwd or tempfile.mkdtemp(prefix="chatproto-client-")
        self.udp_port = udp_port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatproto.client", *args, host, str(port), str(udp_port)],
            # No configuration file of the person running the tests applies.
            cwd=self.cwd, env=child_env({"HOME": self.cwd, "XDG_CONFIG_HOME": os.path.join(self.cwd, ".config"),
                                         **(env or {})}),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stdout = OutputReader(self.process.stdout, f"client:{udp_port} stdout")
        self.stderr = OutputReader(self.process.stderr, f"client:{udp_port} stderr")

    def send(self, line: str) -> None:
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def expect(self, pattern, timeout=TIMEOUT):
        return self.stdout.expect(pattern, timeout)

    def expect_prompt(self, timeout=TIMEOUT):
        return self.expect(re.compile("^" + re.escape(self.PROMPT)), timeout)

    def login(self, username, password):
        self.expect("Username: ")
        self.send(username)
        self.expect("Password: ")
        self.send(password)
        self.expect("Welcome to chatproto!")
        self.expect_prompt()

    def command(self, line: str, *expected, timeout=TIMEOUT):
        """Send one command, expect each given line in order, then the next prompt."""
        self.send(line)
        for pattern in expected:
            self.expect(pattern, timeout)
        self.expect_prompt(timeout)

    def close_stdin(self):
        if not self.process.stdin.closed:
            self.process.stdin.close()

    def wait(self, timeout=TIMEOUT) -> int:
        return self.process.wait(timeout)

    def cleanup(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.cwd, ignore_errors=True)


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class E2EMixin:
    """For trial/unittest TestCases: C{self.server()} and C{self.login()} clean up after themselves."""

    def start_server(self, **kwargs) -> ServerProcess:
        server = ServerProcess(**kwargs)
        self.addCleanup(server.cleanup)
        self._server = server
        return server

    def login(self, username, password, server=None, **kwargs) -> ClientProcess:
        server = server or self._server
        client = server.client(**kwargs)
        self.addCleanup(client.cleanup)
        client.login(username, password)
        return client

    def client(self, server=None, **kwargs) -> ClientProcess:
        server = server or self._server
        client = server.client(**kwargs)
        self.addCleanup(client.cleanup)
        return client
