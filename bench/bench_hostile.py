"""
Hostile clients against a real server process (issue 12's figures).

    python bench/bench_hostile.py                    # every scenario
    python bench/bench_hostile.py --scenarios burst  # burst, anonymous, idle, bcrypt (issue 12);
                                                     # longline, http, flood, prereg, groups, tags, busy (issue 28)
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

Issue 28 (IRC and web front ends): longline (F1: a 64 KiB message to an IRC
user, its longest line and the lines a 512-byte reader would take as forged),
http (F2: plain HTTP connections trickling header bytes), flood (F3: one IRC
user's pipeline of PRIVMSG, and lines to 99 targets, with default options),
prereg (F4), groups (F5: JOIN of 10,000 new channels), tags (F6: 8 KiB tag
lines from unregistered connections against plain ones), busy (F8).

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
IRC_READY = re.compile(rb"IRC listening on ([0-9.]+):(\d+)")
WEB_READY = re.compile(rb"Web client on http://([0-9.]+):(\d+)/")


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
        wanted = [(READY, "port")]
        if "--irc-port" in extra:
            wanted.append((IRC_READY, "irc_port"))
        if "--web-port" in extra:
            wanted.append((WEB_READY, "web_port"))
        while time.monotonic() < deadline:
            out += self.process.stdout.readline()
            found = [(name, pattern.search(out)) for pattern, name in wanted]
            if all(m for _, m in found):
                for name, m in found:
                    setattr(self, name, int(m.group(2)))
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


# Issue 28's attacks on the IRC and web front ends (F1-F6, F8), at the issue's sizes.


def recv_until(s: socket.socket, marker: bytes, seconds: float = 30.0) -> bytes:
    """What C{s} sends until C{marker} appears (or C{seconds} pass, or it closes)."""
    s.setblocking(True)
    s.settimeout(seconds)
    data = b""
    deadline = time.monotonic() + seconds
    while marker not in data and time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 16)
        except (socket.timeout, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def irc_login(port: int, name: str, password: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"PASS {password}\r\nNICK {name}\r\nUSER u 0 * :bench\r\n".encode())
    data = recv_until(s, b" 422 ")
    if b" 001 " not in data:
        raise RuntimeError(f"IRC login of {name}: {data[-200:]!r}")
    return s


def drain(s: socket.socket) -> int:
    """Read what is there without waiting; the byte count (-1: closed)."""
    s.setblocking(False)
    total = 0
    while True:
        try:
            chunk = s.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return total
        except OSError:
            return -1
        if not chunk:
            return -1 if total == 0 else total
        total += len(chunk)


def forging_text(size: int = 65000) -> str:
    """A message padded so that a 512-byte reader would take forged lines from it (issue 28, F1)."""
    head = f":{loadgen.user_name(1)}!{loadgen.user_name(1)}@chatproto PRIVMSG {loadgen.user_name(2)} :"
    text = "hello"
    for k, forged in enumerate((":Hans!Hans@chatproto PRIVMSG user00002 :Hi, Hans here",
                                ":chatproto NOTICE user00002 :a server notice nobody sent"), start=1):
        text += " " * (512 * k - len(head) - len(text)) + forged
    return text + " x" * ((size - len(text)) // 2)


def scenario_longline():
    server = Server(3, ["--irc-port", "0"])
    try:
        leia = irc_login(server.irc_port, loadgen.user_name(2), loadgen.user_password(2))
        yoda = login(server.port, loadgen.user_name(1), loadgen.user_password(1))
        yoda.setblocking(True)
        yoda.sendall(f"/msgto {loadgen.user_name(2)} {forging_text()}\n/msgto {loadgen.user_name(2)} the end\n".encode())
        data = recv_until(leia, b":the end\r\n")
        lines = data.split(b"\r\n")[:-1]
        longest = max(len(line.split(b" ", 1)[1] if line.startswith(b"@") else line) for line in lines) + 2
        prefix = f":{loadgen.user_name(1)}!".encode()
        # ii reads a line into a 512-byte buffer: the rest of a longer line is its next line.
        pieces = [line[i:i + 510] for line in lines for i in range(0, len(line), 510)]
        forged = sum(1 for piece in pieces if piece.startswith(b":") and not piece.startswith(prefix))
        print(f"longline (F1): a 65,000-byte line-protocol message to an IRC user: {len(lines)} lines, "
              f"the longest {longest} bytes with CR LF; 512-byte pieces that start with someone else's "
              f"prefix (forged lines in ii): {forged}")
        leia.close()
        yoda.close()
    finally:
        server.stop()


def scenario_http(n: int, seconds: float):
    server = Server(3, ["--web-port", "0"])
    held, refused = [], 0
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.web_port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
            held.append(s)
        time.sleep(0.5)
        alive = []
        for s in held:
            got = drain(s)
            if got != 0:  # a 503 (and the close) came at once
                refused += 1
                s.close()
            else:
                alive.append(s)
        started = time.monotonic()
        closed_after = None
        while alive and time.monotonic() - started < seconds:
            time.sleep(2)
            still = []
            for s in alive:
                try:
                    s.send(b"a")  # one byte now and then
                    if drain(s) == -1:
                        s.close()
                        continue
                    still.append(s)
                except OSError:
                    s.close()
            alive = still
            if not alive and closed_after is None:
                closed_after = time.monotonic() - started
        line_user = login(server.port, loadgen.user_name(1), loadgen.user_password(1))
        line_user.close()
        print(f"http (F2): {n} connections trickling header bytes from one address: {n - refused} held, "
              f"{refused} refused with 503 at once (--max-connections-per-ip 100); the held ones closed by "
              f"the header deadline after {closed_after if closed_after is not None else float('nan'):.0f} s "
              f"of trickling ({len(alive)} left); a line-protocol login meanwhile: ok")
    finally:
        for s in held:
            s.close()
        server.stop()


def scenario_flood(seconds: float, extra=()):
    """Yoda pipelines PRIVMSG to luke over IRC; luke reads; a line user's /msgto round trip meanwhile."""
    server = Server(6, ["--irc-port", "0", *extra])
    try:
        luke = irc_login(server.irc_port, loadgen.user_name(2), loadgen.user_password(2))
        yoda = irc_login(server.irc_port, loadgen.user_name(1), loadgen.user_password(1))
        probe = login(server.port, loadgen.user_name(3), loadgen.user_password(3))
        other = login(server.port, loadgen.user_name(4), loadgen.user_password(4))
        probe.setblocking(True)
        before = rss_kib(server.pid)
        burst = f"PRIVMSG {loadgen.user_name(2)} :flood message\r\n".encode() * 2000
        view = memoryview(burst)
        yoda.setblocking(False)
        luke_bytes, luke_closed, latencies = 0, False, []
        deadline = time.monotonic() + seconds
        next_probe = time.monotonic()
        while time.monotonic() < deadline:
            try:
                sent = yoda.send(view)
                view = view[sent:] if sent < len(view) else memoryview(burst)
            except (BlockingIOError, InterruptedError):
                pass
            drain(yoda)
            got = drain(luke)
            if got == -1:
                luke_closed = True
            else:
                luke_bytes += got
            drain(other)
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + 0.05
                started = time.monotonic()
                probe.sendall(f"/msgto {loadgen.user_name(4)} ping\n".encode())
                recv_until(probe, b"\n", 60)
                latencies.append((time.monotonic() - started) * 1000)
            time.sleep(0.001)
        peak = rss_kib(server.pid, "VmHWM")
        with open(os.path.join(server.dir, "messagelog.txt"), "rb") as f:
            stored = sum(1 for line in f if line.split(b"; ")[2] == loadgen.user_name(1).encode())
        label = " ".join(extra) or "default options"
        print(f"flood (F3, {label}): {seconds:.0f} s of pipelined PRIVMSG from one IRC user: {stored} stored, "
              f"luke read {luke_bytes / 1024:.0f} KiB and was {'DROPPED' if luke_closed else 'not dropped'}; "
              f"another user's /msgto round trip p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms ({len(latencies)}); server RSS "
              f"{before / 1024:.0f} -> peak {peak / 1024:.0f} MiB")
        # One line to many targets is as many messages (from another user: Yoda's input still waits).
        yoda.close()
        yoda = irc_login(server.irc_port, loadgen.user_name(5), loadgen.user_password(5))
        fanout = (500 - len("PRIVMSG  :x")) // (len(loadgen.user_name(2)) + 1)  # as many as fit in 512 bytes
        targets = ",".join([loadgen.user_name(2)] * fanout)
        line = f"PRIVMSG {targets} :x\r\n".encode()
        yoda.setblocking(True)
        yoda.settimeout(5)
        sent_lines = 0
        started = time.monotonic()
        try:
            while sent_lines < (1 << 20) // len(line) and time.monotonic() - started < seconds:
                yoda.send(line)
                sent_lines += 1
                drain(luke)
        except OSError:
            pass  # the server stopped reading: the socket buffers are full
        end = time.monotonic() + seconds - (time.monotonic() - started)
        while time.monotonic() < end:
            drain(luke)
            time.sleep(0.05)
        with open(os.path.join(server.dir, "messagelog.txt"), "rb") as f:
            stored = sum(1 for line_ in f if line_.split(b"; ")[2] == loadgen.user_name(5).encode())
        print(f"flood (F3, {label}): {sent_lines} lines of PRIVMSG to {fanout} targets "
              f"({sent_lines * len(line) / 1024:.0f} KiB written) in {seconds:.0f} s: "
              f"{stored} messages stored")
        for s in (luke, yoda, probe, other):
            s.close()
    finally:
        server.stop()


def scenario_prereg(n: int):
    server = Server(3, ["--irc-port", "0", "--max-connections-per-ip", "0"])
    sockets = []
    try:
        before = rss_kib(server.pid)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.irc_port), timeout=10)
            s.sendall(b"ab\n" * 21845)
            sockets.append(s)
        errors = sum(1 for s in sockets if b"Too many lines before registration" in recv_until(s, b"registration", 10))
        time.sleep(1)
        after = rss_kib(server.pid)
        print(f"prereg (F4): {n} unregistered IRC connections writing 21,845 lines each: {errors} closed with "
              f"ERROR; server RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB while they stay connected")
    finally:
        for s in sockets:
            s.close()
        server.stop()


def scenario_groups(names: int):
    server = Server(3, ["--irc-port", "0"])
    try:
        vader = irc_login(server.irc_port, loadgen.user_name(1), loadgen.user_password(1))
        vader.setblocking(True)
        joined = refused = 0
        for first in range(0, names, 60):
            channels = ",".join(f"#g{i}" for i in range(first, min(names, first + 60)))
            vader.sendall(f"JOIN {channels}\r\nPING done{first}\r\n".encode())
            data = recv_until(vader, f"done{first}".encode(), 60)
            joined += data.count(b" JOIN #")
            refused += data.count(b" 405 ")
        logs = [n for n in os.listdir(server.dir) if n.endswith("_messageLog.txt")]
        for first in range(0, names, 60):
            vader.sendall(f"PART {','.join(f'#g{i}' for i in range(first, min(names, first + 60)))}\r\n".encode())
        vader.sendall(b"PING parted\r\n")
        recv_until(vader, b"parted", 60)
        left = [n for n in os.listdir(server.dir) if n.endswith("_messageLog.txt")]
        print(f"groups (F5): JOIN of {names} new channels, 60 a line, as fast as answered: {joined} created, "
              f"{refused} refused (405); {len(logs)} log files; after PART of all: {len(left)} left")
        vader.close()
    finally:
        server.stop()


def scenario_tags(n: int, seconds: float, heavy: bool):
    server = Server(3, ["--irc-port", "0", "--max-connections-per-ip", "0"])
    line = (b"@" + b"a=\\s\\:;" * 1169 + b" PING x\r\n") if heavy else b"PING x\r\n"
    per_connection = line * 60  # under the 64 lines allowed before registration
    try:
        probe = irc_login(server.irc_port, loadgen.user_name(1), loadgen.user_password(1))
        attackers = []
        latencies = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            attackers = [s for s in attackers if drain(s) != -1]
            while len(attackers) < n:
                s = socket.create_connection(("127.0.0.1", server.irc_port), timeout=10)
                s.setblocking(False)
                try:
                    s.send(per_connection)
                except OSError:
                    pass
                attackers.append(s)
            started = time.monotonic()
            probe.sendall(b"PING probe\r\n")
            recv_until(probe, b"probe", 30)
            latencies.append((time.monotonic() - started) * 1000)
            time.sleep(0.02)
        kind = "8 KiB tag lines" if heavy else "plain PING lines"
        print(f"tags (F6): {n} unregistered connections sending {kind} for {seconds:.0f} s: a registered "
              f"user's PING p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
              f"({len(latencies)})")
        for s in attackers:
            s.close()
        probe.close()
    finally:
        server.stop()


def scenario_busy(n: int):
    server = Server(5, ["--irc-port", "0", "--max-connections-per-ip", "0"],
                    bcrypt_users=[("Hans", "falcon*solo")])
    try:
        sockets = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.irc_port), timeout=60)
            s.sendall(f"PASS wrong{i}\r\nNICK Hans\r\nUSER u 0 * :bench\r\n".encode())
            sockets.append(s)
        replies = {}
        for s in sockets:
            data = recv_until(s, b" 464 ", 60)
            text = data.split(b" 464 ", 1)[1].split(b"\r\n")[0].split(b" :", 1)[-1].decode() if b" 464 " in data else "none"
            replies[text] = replies.get(text, 0) + 1
            s.close()
        print(f"busy (F8): {n} concurrent IRC logins with wrong passwords for a bcrypt account: {replies}")
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="burst,anonymous,idle,bcrypt,longline,http,flood,prereg,groups,"
                                                "tags,busy")
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
    if "longline" in scenarios:
        scenario_longline()
    if "http" in scenarios:
        scenario_http(200 if args.smoke else 2000, 6 if args.smoke else 30)
    if "flood" in scenarios:
        scenario_flood(2 if args.smoke else 10)
    if "prereg" in scenarios:
        scenario_prereg(10 if args.smoke else 100)
    if "groups" in scenarios:
        scenario_groups(300 if args.smoke else 10000)
    if "tags" in scenarios:
        scenario_tags(20, 2 if args.smoke else 10, heavy=False)
        scenario_tags(20, 2 if args.smoke else 10, heavy=True)
    if "busy" in scenarios:
        scenario_busy(10 if args.smoke else 50)


if __name__ == "__main__":
    main()
