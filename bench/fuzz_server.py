"""
Fuzz a real server process over TCP: C{--lines} fuzzed lines (100,000 by
default) on several connections at once, pipelined in batches.

Reports the lines sent and answered, crashes (the server process died: goal
0), C{ERR Server error} replies, unexpected disconnects, lines without an
answer, lines a second, the server's peak RSS, and whether the log files are
still well formed.

    python bench/fuzz_server.py [--lines N] [--connections N] [--seed N] [--batch N]
                                [--server-arg=ARG ...]

Exit status 0 when nothing went wrong, 1 otherwise.
"""

import argparse
import os
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNTS = {"Yoda": "wise@!man", "Hans": "falcon*solo", "vader": "sithlord**", "leia": "alderaan",
            "luke": "jedi*knight", "obiwan": "hellothere", "padme": "naboo", "rey": "jakku"}
SESSION_USERS = ["Yoda", "Hans", "vader", "leia", "padme", "rey"]
MAX_LINE = 65536
TS = r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}"
RECORD = re.compile(rf"^(\d+); ({TS}); ([^;\s]+); (.*)$")

COMMANDS = ["/msgto", "/activeuser", "/creategroup", "/joingroup", "/groupmsg", "/p2pvideo",
            "/leavegroup", "/deletemsg", "/deletegroupmsg", "/createbroadcast", "/help", "/logout",
            "/changepassword", "LOGIN", "/nosuch", "/", "", "msgto", "/MSGTO", "/msg\x00to"]
NAMES = ["Yoda", "Hans", "vader", "leia", "padme", "rey", "Nobody", "yoda", "Jedi", "jedi", "Sith",
         "A" * 32, "A" * 33, "../etc", "..", "a/b", "CON", "Jedi\x00", "ok1", "Ünï", "1", "2", "0",
         "-1", "99999999999999999999", "6000", "65536"]
PIECES = ["a; b; c; d", ";", "; ", "\r", "\t", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u2028",
          "é", "\U0001f600", "hello", "world", " ", "%s", "{}", "\\n", "DATA ", "OK ", "ERR "]
BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xc0\xaf", b"\x80"]


class Fuzzer:
    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def text(self) -> str:
        r = self.random
        return "".join(r.choice(PIECES) if r.random() < 0.5 else chr(r.randrange(0x20, 0x3000))
                       for _ in range(r.randrange(0, 12)))

    def token(self) -> str:
        return self.random.choice(NAMES) if self.random.random() < 0.6 else self.text()

    def structured(self, logged_in: bool) -> bytes:
        r = self.random
        command = r.choice(COMMANDS)
        if command == "LOGIN" and not logged_in:
            # Never a wrong password for the accounts the sessions use: they
            # must be able to log in again after a fuzzed /logout.
            name = r.choice(["luke", "obiwan", "Nobody", ""])
            args = [name, r.choice([ACCOUNTS.get(name, "x"), "wrong"]), r.choice(["6000", "0", "x"])]
            args = args[:r.randrange(0, 5)]
        elif command == "/changepassword":
            args = [self.token() for _ in range(r.choice([0, 1, 3]))]  # never a real change
        else:
            args = [self.token() for _ in range(r.randrange(0, 5))]
        return (command + r.choice([" ", "  ", "\t", ""]) + " ".join(args)).encode("utf-8")

    def line(self, logged_in: bool) -> bytes:
        """One line, without its delimiter (and without any "\\n" inside)."""
        r = self.random
        kind = r.random()
        if kind < 0.70:
            line = self.structured(logged_in)
        elif kind < 0.80:
            line = bytes(r.randrange(256) for _ in range(r.randrange(0, 80)))
        elif kind < 0.88:
            line = self.structured(logged_in)
            at = r.randrange(len(line) + 1)
            line = line[:at] + r.choice(BAD_UTF8) + line[at:]
        elif kind < 0.98:
            line = f"/msgto {r.choice(SESSION_USERS)} {self.text()};{self.text()}\r{self.text()}".encode()
        elif kind < 0.9995:
            line = b""
        else:
            size = r.choice([MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE])
            line = (b"/msgto Hans " + b"x" * size)[:size]
        line = line.replace(b"\n", b"")
        if line.startswith(b"/logout") and r.random() < 0.9:
            line = b"/activeuser"  # keep logouts rare: each costs a reconnection
        return line


class Connection:
    def __init__(self, host, port, username=None):
        self.sock = socket.create_connection((host, port))
        self.sock.setblocking(False)
        self.buffer = b""
        self.username = username
        self.waiting = 0  # complete lines sent, not answered yet
        self.closed = False


def start_server(data_dir, credentials, extra):
    args = [sys.executable, "-m", "chatproto.server", "0", "5", "--interface", "127.0.0.1",
            "--data-dir", data_dir, "--credentials", credentials, *extra]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stderr = open(os.path.join(data_dir, "server.stderr"), "wb")  # noqa: SIM115
    process = subprocess.Popen(args, cwd=data_dir, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=stderr)
    stderr.close()
    line = process.stdout.readline().decode()
    match = re.match(r"Server listening on ([\d.]+):(\d+)", line)
    if not match:
        raise SystemExit(f"the server did not start: {line!r}")
    return process, match.group(1), int(match.group(2))


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def check_logs(data_dir) -> list[str]:
    """Problems with the record logs: torn, malformed or misnumbered lines."""
    problems = []
    for name in sorted(os.listdir(data_dir)):
        if name != "messagelog.txt" and not name.endswith("_messageLog.txt"):
            continue
        with open(os.path.join(data_dir, name), "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            problems.append(f"{name}: torn last line")
        for seq, raw in enumerate(data.split(b"\n")[:-1], 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{name}:{seq}: not UTF-8")
                continue
            match = RECORD.match(line)
            if not match or int(match.group(1)) != seq or line.splitlines() != [line]:
                problems.append(f"{name}:{seq}: malformed {line[:80]!r}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="fuzzed lines to send")
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--batch", type=int, default=200, help="lines pipelined per round trip")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for answers")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra server argument, e.g. --server-arg=--fsync")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    options = parser.parse_args(argv)

    data_dir = tempfile.mkdtemp(prefix="chatproto-fuzz-")
    credentials = os.path.join(data_dir, "credentials.txt")
    with open(credentials, "w") as f:
        f.writelines(f"{name} {password}\n" for name, password in ACCOUNTS.items())
    process, host, port = start_server(data_dir, credentials, options.server_arg)
    fuzzer = Fuzzer(options.seed)
    stats = {key: 0 for key in ("sent", "logins", "answered", "server_errors", "disconnects",
                                "unanswered", "reconnects", "logouts", "after_logout", "too_long",
                                "bad_utf8")}

    def connect(index):
        username = SESSION_USERS[index] if index < len(SESSION_USERS) and index % 3 != 2 else None
        connection = Connection(host, port, username)
        if username:
            connection.sock.sendall(f"LOGIN {username} {ACCOUNTS[username]} 6000\n".encode())
            connection.waiting += 1
            stats["logins"] += 1
        return connection

    connections = [connect(i) for i in range(options.connections)]
    started = time.monotonic()
    crashed = False
    try:
        while stats["sent"] < options.lines and not crashed:
            for index, connection in enumerate(connections):
                if connection.closed:
                    stats["reconnects"] += 1
                    connection = connections[index] = connect(index)
                count = min(options.batch, options.lines - stats["sent"])
                if count <= 0:
                    break
                data = b"".join(fuzzer.line(connection.username is not None) + b"\n"
                                for _ in range(count))
                connection.sock.setblocking(True)
                try:
                    connection.sock.sendall(data)
                except OSError:
                    connection.closed = True
                    stats["disconnects"] += 1
                connection.sock.setblocking(False)
                connection.waiting += count
                stats["sent"] += count
            crashed = not collect(connections, stats, options.timeout, process)
        for connection in connections:  # a last line without its newline, then a drop
            if not connection.closed:
                try:
                    connection.sock.sendall(b"/msgto Hans never finished")
                except OSError:
                    pass
            connection.sock.close()
        time.sleep(0.2)  # let the server notice the drops before the last checks
        crashed = crashed or process.poll() is not None
    finally:
        elapsed = time.monotonic() - started
        peak = peak_rss_kib(process.pid)
        if process.poll() is None:
            process.terminate()
            process.wait(15)
        problems = check_logs(data_dir)

    print(f"fuzzed lines sent:        {stats['sent']}")
    print(f"final replies (OK/ERR):   {stats['answered']}  (of which Line too long {stats['too_long']}, "
          f"Invalid UTF-8 {stats['bad_utf8']})")
    print(f"crashes (server died):    {int(crashed)}")
    print(f"ERR Server error:         {stats['server_errors']}")
    print(f"unexpected disconnects:   {stats['disconnects']}")
    print(f"lines left unanswered:    {stats['unanswered']}")
    print(f"logouts / reconnections:  {stats['logouts']} / {stats['reconnects']} "
          f"({stats['after_logout']} lines sent after a /logout, not read by design)")
    accounted = stats["answered"] + stats["after_logout"] + stats["unanswered"]
    print(f"every line answered once: {'yes' if accounted == stats['sent'] + stats['logins'] else 'NO'}"
          f" ({stats['answered']} + {stats['after_logout']} = {stats['sent']} fuzzed + "
          f"{stats['logins']} logins)")
    print(f"elapsed:                  {elapsed:.2f} s, {stats['sent'] / elapsed:,.0f} lines/s")
    if peak is not None:
        print(f"server peak RSS:          {peak / 1024:.1f} MiB")
    print(f"log files well formed:    {'yes' if not problems else 'NO'}")
    for problem in problems[:20]:
        print("   ", problem)
    if options.keep:
        print(f"data directory:           {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    bad = crashed or stats["server_errors"] or stats["disconnects"] or stats["unanswered"] or problems
    return 1 if bad else 0


def collect(connections, stats, timeout, process) -> bool:
    """Read until every line sent is answered (or its connection logged out); False if the server died."""
    deadline = time.monotonic() + timeout
    while any(c.waiting and not c.closed for c in connections):
        remaining = deadline - time.monotonic()
        open_ = [c.sock for c in connections if c.waiting and not c.closed]
        readable = select.select(open_, [], [], max(0.0, min(remaining, 1.0)))[0]
        if process.poll() is not None:
            return False
        if not readable:
            if remaining <= 0:
                for c in connections:
                    if c.waiting and not c.closed:
                        stats["unanswered"] += c.waiting
                        c.waiting = 0
                break
            continue
        for connection in connections:
            if connection.sock in readable:
                read(connection, stats)
    return process.poll() is None


def read(connection, stats):
    try:
        data = connection.sock.recv(1 << 20)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        connection.closed = True
        stats["disconnects"] += 1
        return
    connection.buffer += data
    *lines, connection.buffer = connection.buffer.split(b"\n")
    for line in lines:
        tag = line.split(b" ", 1)[0]
        if tag not in (b"OK", b"ERR"):
            continue
        connection.waiting -= 1
        stats["answered"] += 1
        if line == b"ERR Server error":
            stats["server_errors"] += 1
        elif line == b"ERR Line too long":
            stats["too_long"] += 1
        elif line == b"ERR Invalid UTF-8":
            stats["bad_utf8"] += 1
        elif line.startswith(b"OK Welcome"):
            connection.username = connection.username or "someone"
        elif line.startswith(b"OK Bye, "):
            # Nothing after /logout is read: the rest of the batch goes unanswered.
            stats["logouts"] += 1
            stats["after_logout"] += connection.waiting
            connection.waiting = 0
            connection.closed = True
            connection.sock.close()
            return


if __name__ == "__main__":
    sys.exit(main())
