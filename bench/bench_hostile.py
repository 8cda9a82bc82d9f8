"""
Hostile clients against a real server process (issue 12's figures).

    python bench/bench_hostile.py                    # every scenario
    python bench/bench_hostile.py --scenarios burst  # one of: burst, anonymous, idle, bcrypt
    python bench/bench_hostile.py --smoke            # small numbers, seconds

- burst: N logged-in connections each send 64 KiB of newlines, again and again,
  while a probe user asks /activeuser every 20 ms: its latency (p50/p99), the
  server's RSS growth, and how long SIGTERM takes under the load.
- anonymous: the same bursts from N connections that never log in.
- idle: N connections that never log in: RSS per connection, and whether the
  login deadline closes them all.
- bcrypt: 200 wrong logins at once for one bcrypt-hashed account: how many
  password checks the server runs (its CPU time), and another bcrypt user's
  login time meanwhile.

Every connection is to 127.0.0.1; every loop is bounded in count and time.
"""

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import loadgen  # noqa: E402

READY = re.compile(rb"Server listening on ([0-9.]+):(\d+)")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, users: int, extra=(), bcrypt_users=()):
        self.dir = tempfile.mkdtemp(prefix="chatproto-hostile-")
        credentials = os.path.join(self.dir, "credentials.txt")
        loadgen.write_credentials(credentials, users)
        if bcrypt_users:
            import bcrypt

            with open(credentials, "a") as f:
                for name, password in bcrypt_users:
                    f.write(f"{name} {bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()}\n")
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatproto.server", "0", "3", "--interface", "127.0.0.1",
             "--data-dir", self.dir, "--credentials", credentials, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=self.dir)
        deadline = time.monotonic() + 30
        out = b""
        while time.monotonic() < deadline:
            out += self.process.stdout.readline()
            m = READY.search(out)
            if m:
                self.port = int(m.group(2))
                break
        else:
            raise RuntimeError("the server did not start")
        # Drain its log so that it never blocks on a full pipe.
        import threading

        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        self.pid = self.process.pid

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        took = time.monotonic() - started
        shutil.rmtree(self.dir, ignore_errors=True)
        return took


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    return s


def login(port: int, name: str, password: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"LOGIN {name} {password} 6000\n".encode())
    reply = b""
    while b"\n" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"login of {name}: connection closed")
        reply += chunk
    if not reply.startswith(b"OK Welcome"):
        raise RuntimeError(f"login of {name}: {reply!r}")
    s.setblocking(False)
    return s


def flood(port, attackers, seconds, probe, anonymous=False):
    """Attackers send 64 KiB of newlines whenever they can (and read and drop what comes back)."""
    burst = b"\n" * 65536
    sel = selectors.DefaultSelector()
    for s in attackers:
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, [memoryview(burst)])
    latencies = []
    next_probe = time.monotonic()
    deadline = time.monotonic() + seconds
    probe.setblocking(True)
    probe.settimeout(10)
    closed = 0
    while time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.005):
            s = key.fileobj
            try:
                if events & selectors.EVENT_READ and not s.recv(1 << 16):
                    sel.unregister(s)
                    closed += 1
                    continue
                if events & selectors.EVENT_WRITE:
                    view = key.data[0]
                    sent = s.send(view)
                    key.data[0] = view[sent:] if sent < len(view) else memoryview(burst)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(s)
                closed += 1
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + 0.02
            started = time.monotonic()
            probe.sendall(b"/activeuser\n")
            data = b""
            while not data.endswith(b"OK\n") and not data.endswith(b"user\n"):
                chunk = probe.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("the probe was disconnected")
                data += chunk
            latencies.append((time.monotonic() - started) * 1000)
    sel.close()
    return latencies, closed


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def scenario_burst(n, seconds, anonymous):
    users = n + 1
    server = Server(users, ["--max-connections", "0", "--max-connections-per-ip", "0"])
    try:
        probe = login(server.port, loadgen.user_name(users), loadgen.user_password(users))
        if anonymous:
            attackers = [connect(server.port) for _ in range(n)]
        else:
            attackers = [login(server.port, loadgen.user_name(i), loadgen.user_password(i))
                         for i in range(1, n + 1)]
        before = rss_kib(server.pid)
        latencies, closed = flood(server.port, attackers, seconds, probe, anonymous)
        peak = rss_kib(server.pid, "VmHWM")
        took = server.stop()
        for s in attackers:
            s.close()
        kind = "anonymous" if anonymous else "logged-in"
        print(f"burst ({kind}): {n} connections x 64 KiB newlines for {seconds:.0f} s: "
              f"probe /activeuser p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
              f"({len(latencies)} probes); server RSS {before / 1024:.1f} -> peak {peak / 1024:.1f} MiB "
              f"(+{(peak - before) / 1024:.1f}); attackers closed by the server: {closed}; "
              f"SIGTERM under load: exit in {took:.2f} s")
    finally:
        if server.process.poll() is None:
            server.stop()


def scenario_idle(n):
    server = Server(10, ["--max-connections", "0", "--max-connections-per-ip", "0"])
    sockets = []
    try:
        before = rss_kib(server.pid)
        for _ in range(n):
            sockets.append(connect(server.port))
        time.sleep(0.5)  # a benchmark, not a test: let the server accept them all
        after = rss_kib(server.pid)
        per = (after - before) / n
        started = time.monotonic()
        open_ = list(sockets)
        while open_ and time.monotonic() - started < 40:
            still = []
            for s in open_:
                try:
                    data = s.recv(4096)
                    if data and b"no login" in data:
                        continue
                    if not data:
                        continue
                    still.append(s)
                except BlockingIOError:
                    still.append(s)
                except OSError:
                    continue
            open_ = still
            time.sleep(0.2)
        print(f"idle (never log in): {n} connections: {per:.2f} KiB RSS each; "
              f"closed by the login deadline after {time.monotonic() - started:.1f} s of waiting: "
              f"{n - len(open_)} of {n}")
    finally:
        for s in sockets:
            s.close()
        server.stop()


def scenario_bcrypt(n):
    server = Server(5, ["--max-connections-per-ip", "0"],
                    bcrypt_users=[("Hans", "falcon*solo"), ("leia", "alderaan")])
    try:
        cpu_before = loadgen.cpu_seconds(server.pid)
        attackers = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            s.sendall(b"LOGIN Hans wrong 6000\n")
            attackers.append(s)
        started = time.monotonic()
        leia = login(server.port, "leia", "alderaan")
        leia_took = time.monotonic() - started
        replies = {}
        for s in attackers:
            s.settimeout(60)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            reply = data.split(b"\n")[0].decode()
            replies[reply] = replies.get(reply, 0) + 1
            s.close()
        cpu = loadgen.cpu_seconds(server.pid) - cpu_before
        leia.close()
        print(f"bcrypt: {n} wrong logins at once for Hans: server CPU {cpu:.2f} s "
              f"(one bcrypt check at cost 12 is ~0.25 s: about {cpu / 0.25:.1f} checks' worth, leia's included); "
              f"leia's login took {leia_took * 1000:.0f} ms; replies: {replies}")
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="burst,anonymous,idle,bcrypt")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    loadgen.raise_nofile()
    scenarios = args.scenarios.split(",")
    big = 10 if args.smoke else 1000
    if "burst" in scenarios:
        scenario_burst(big // 2 if args.smoke else 200, 2 if args.smoke else 10, anonymous=False)
    if "anonymous" in scenarios:
        scenario_burst(big, 2 if args.smoke else 10, anonymous=True)
    if "idle" in scenarios:
        scenario_idle(100 if args.smoke else 10000)
    if "bcrypt" in scenarios:
        scenario_bcrypt(20 if args.smoke else 200)


if __name__ == "__main__":
    main()
