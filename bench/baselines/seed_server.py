"""
BENCHMARK BASELINE -- NOT PART OF CHATPROTO, NEVER SHIPPED.

The seed project's design (docs/PERFORMANCE.md, "The servers"), rebuilt only so
that bench/run_all.py can measure it side by side with chatproto:

- one thread per client, blocking sockets;
- one shared state (users, groups, counters) guarded by one lock;
- every private or group message appended to its log with a plain
  open/write/close, as the seed's logger does; every login appends to
  userlog.txt, every logout rewrites it whole (O(users)), as the seed does.

It speaks the same wire protocol as docs/PROTOCOL.md for the commands the
benchmark uses: LOGIN, /msgto, /activeuser, /creategroup, /joingroup,
/groupmsg, /logout (OK / ERR / DATA / MSG / NOTICE lines). Nothing else from
chatproto (p2p, extensions, --fsync, output bounds) is implemented.

    python bench/baselines/seed_server.py PORT ATTEMPTS \
        [--interface ADDR] [--data-dir DIR] [--credentials FILE]

prints ``Server listening on ADDR:PORT`` when ready; SIGTERM/SIGINT exits 0.
"""

import argparse
import os
import re
import signal
import socket
import sys
import threading
import time

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_LINE = 65536
BLOCK_SECONDS = 10.0
GROUP_NAME = re.compile(r"[A-Za-z0-9]{1,32}\Z")
COMMANDS = "/msgto, /activeuser, /creategroup, /joingroup, /groupmsg, /p2pvideo, /logout"


def timestamp() -> str:
    # Re-formatted for every message, as the seed does.
    t = time.localtime()
    return (
        f"{t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


class User:
    """Seed-style user record: socket, login data, lockout counters."""

    def __init__(self, name, password):
        self.name = name
        self.password = password
        self.sock = None
        self.send_lock = threading.Lock()
        self.ip = None
        self.udp_port = None
        self.active = False
        self.login_time = None
        self.failures = 0
        self.blocked_until = 0.0

    def send(self, line: str) -> None:
        sock = self.sock
        if sock is None:
            return
        with self.send_lock:
            try:
                sock.sendall(line.encode("utf-8") + b"\n")
            except OSError:
                pass


class Group:
    def __init__(self, name, members):
        self.name = name
        self.members = members  # name -> joined?
        self.count = 0


class State:
    """The one shared state; every access holds C{lock}."""

    def __init__(self, accounts, attempts, data_dir):
        self.lock = threading.Lock()
        self.users = {name: User(name, pw) for name, pw in accounts.items()}
        self.active = []  # login order
        self.groups = {}  # lower-case name -> Group
        self.attempts = attempts
        self.data_dir = data_dir
        self.msg_seq = self._count_lines("messagelog.txt")
        with open(self.path("userlog.txt"), "w"):
            pass

    def path(self, name):
        return os.path.join(self.data_dir, name)

    def _count_lines(self, name):
        try:
            with open(self.path(name), encoding="utf-8") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def append(self, name, record):
        # A plain open/write/close per record, as the seed's logger.
        with open(self.path(name), "a", encoding="utf-8") as f:
            f.write(record + "\n")

    def rewrite_userlog(self):
        with open(self.path("userlog.txt"), "w", encoding="utf-8") as f:
            f.writelines(
                f"{seq}; {u.login_time}; {u.name}; {u.ip}; {u.udp_port}\n"
                for seq, u in enumerate(self.active, 1)
            )


class ClientThread(threading.Thread):
    def __init__(self, state, sock, addr):
        super().__init__(daemon=True)
        self.state = state
        self.sock = sock
        self.addr = addr
        self.user = None

    def send(self, line):
        if self.user is not None:
            self.user.send(line)
        else:
            try:
                self.sock.sendall(line.encode("utf-8") + b"\n")
            except OSError:
                pass

    def run(self):
        rfile = self.sock.makefile("rb")
        try:
            while True:
                raw = rfile.readline(MAX_LINE + 2)
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    if len(raw) < MAX_LINE + 2:
                        break  # EOF in the middle of a line
                    while raw and not raw.endswith(b"\n"):
                        raw = rfile.readline(MAX_LINE + 2)
                    self.send("ERR Line too long")
                    continue
                raw = raw.rstrip(b"\n").rstrip(b"\r")
                if len(raw) > MAX_LINE:
                    self.send("ERR Line too long")
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.send("ERR Invalid UTF-8")
                    continue
                if not self.handle(line):
                    break
        except OSError:
            pass
        finally:
            self.disconnect()
            try:
                rfile.close()
                self.sock.close()
            except OSError:
                pass

    def handle(self, line):
        if self.user is None:
            if line.startswith("LOGIN ") or line == "LOGIN":
                self.login(line.split())
            else:
                self.send("ERR Please log in first")
            return True
        if not line.strip():
            self.send("ERR Error. Invalid command!")
            return True
        command = line.split(" ", 1)[0]
        if command == "/msgto":
            self.msgto(line)
        elif command == "/activeuser":
            self.activeuser(line)
        elif command == "/creategroup":
            self.creategroup(line)
        elif command == "/joingroup":
            self.joingroup(line)
        elif command == "/groupmsg":
            self.groupmsg(line)
        elif command == "/logout":
            self.send(f"OK Bye, {self.user.name}!")
            return False
        else:
            self.send("ERR Error. Invalid command!")
        return True

    def login(self, args):
        if len(args) != 4 or not args[3].isdigit():
            self.send("ERR Usage: LOGIN USERNAME PASSWORD UDP_PORT")
            return
        _, name, password, udp = args
        st = self.state
        with st.lock:
            user = st.users.get(name)
            now = time.monotonic()
            if user is not None and user.blocked_until > now:
                reply = ("ERR Your account is blocked due to multiple login failures. "
                         "Please try again later")
            elif user is None:
                reply = "ERR Invalid Username. Please try again"
            elif user.password != password:
                if user.blocked_until:
                    user.blocked_until = 0.0
                    user.failures = 0
                user.failures += 1
                if user.failures >= st.attempts:
                    user.failures = 0
                    user.blocked_until = now + BLOCK_SECONDS
                    reply = ("ERR Invalid Password. Your account has been blocked. "
                             "Please try again later")
                else:
                    reply = "ERR Invalid Password. Please try again"
            elif user.active:
                reply = "ERR This account is already logged in"
            else:
                user.failures = 0
                user.active = True
                user.sock = self.sock
                user.ip = self.addr[0]
                user.udp_port = int(udp)
                user.login_time = timestamp()
                st.active.append(user)
                st.append(
                    "userlog.txt",
                    f"{len(st.active)}; {user.login_time}; {name}; {user.ip}; {user.udp_port}",
                )
                self.user = user
                reply = "OK Welcome to chatproto!"
        self.send(reply)

    def disconnect(self):
        user = self.user
        if user is None:
            return
        st = self.state
        with st.lock:
            user.active = False
            user.sock = None
            if user in st.active:
                st.active.remove(user)
                st.rewrite_userlog()  # O(users) per logout, as the seed
        self.user = None

    def msgto(self, line):
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1] or not parts[2].strip():
            self.send("ERR Usage: /msgto USERNAME MESSAGE")
            return
        _, name, text = parts
        st = self.state
        target = None
        with st.lock:
            other = st.users.get(name)
            if other is None:
                reply = f"ERR No such user: {name}"
            elif other is self.user:
                reply = "ERR You cannot send a message to yourself"
            elif not other.active:
                reply = f"ERR {name} is not active"
            else:
                ts = timestamp()
                st.msg_seq += 1
                st.append("messagelog.txt", f"{st.msg_seq}; {ts}; {self.user.name}; {text}")
                target = other
                reply = f"OK message sent at {ts}."
        if target is not None:
            target.send(f"MSG {ts}, {self.user.name}: {text}")
        self.send(reply)

    def activeuser(self, line):
        if line.strip() != "/activeuser":
            self.send("ERR Usage: /activeuser")
            return
        with self.state.lock:
            rows = [
                f"DATA {u.name}, {u.ip}, {u.udp_port}, active since {u.login_time}."
                for u in self.state.active
                if u is not self.user
            ]
        for row in rows:
            self.send(row)
        self.send("OK" if rows else "OK no other active user")

    def creategroup(self, line):
        args = line.split()
        if len(args) < 3:
            self.send("ERR Usage: /creategroup GROUPNAME USERNAME [USERNAME ...]")
            return
        name = args[1]
        if not GROUP_NAME.match(name):
            self.send("ERR Group name must be 1-32 letters and digits")
            return
        me = self.user.name
        st = self.state
        with st.lock:
            if name.lower() in st.groups:
                self.send(f"ERR A group chat (Name: {name}) already exists")
                return
            members = []
            for other in args[2:]:
                if other == me or other in members:
                    continue
                u = st.users.get(other)
                if u is None:
                    self.send(f"ERR No such user: {other}")
                    return
                if not u.active:
                    self.send(f"ERR {other} is not active")
                    return
                members.append(other)
            if not members:
                self.send("ERR Please enter at least one more active user.")
                return
            group = Group(name, {me: True, **{m: False for m in members}})
            group.count = st._count_lines(f"{name}_messageLog.txt")
            st.groups[name.lower()] = group
            open(st.path(f"{name}_messageLog.txt"), "a").close()
            invited = [st.users[m] for m in members]
        self.send(
            f"OK Group chat room has been created, room name: {name}, "
            f"users in this room: {me} {' '.join(members)}"
        )
        for u in invited:
            u.send(
                f"NOTICE You have been invited to the group chat {name} by {me}. "
                f"Type /joingroup {name} to join."
            )

    def joingroup(self, line):
        args = line.split()
        if len(args) != 2:
            self.send("ERR Usage: /joingroup GROUPNAME")
            return
        name = args[1]
        me = self.user.name
        with self.state.lock:
            group = self.state.groups.get(name.lower())
            if group is None:
                reply = f"ERR Groupchat (Name: {name}) does not exist."
            elif me not in group.members:
                reply = f"ERR You are not a member of the group chat {group.name}."
            elif group.members[me]:
                reply = f"ERR You have already joined the group chat {group.name}."
            else:
                group.members[me] = True
                reply = f"OK Joined the group chat: {group.name} successfully."
        self.send(reply)

    def groupmsg(self, line):
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1] or not parts[2].strip():
            self.send("ERR Usage: /groupmsg GROUPNAME MESSAGE")
            return
        _, name, text = parts
        me = self.user.name
        st = self.state
        with st.lock:
            group = st.groups.get(name.lower())
            if group is None:
                self.send("ERR The group chat does not exist.")
                return
            if me not in group.members:
                self.send("ERR You are not in this group chat.")
                return
            if not group.members[me]:
                self.send("ERR Please join the group before sending messages.")
                return
            ts = timestamp()
            group.count += 1
            st.append(f"{group.name}_messageLog.txt", f"{group.count}; {ts}; {me}; {text}")
            targets = [
                st.users[m] for m, joined in group.members.items()
                if joined and m != me and st.users[m].active
            ]
        # The sender's thread writes to every member's socket, one by one.
        for u in targets:
            u.send(f"MSG {ts}, {group.name}, {me}: {text}")
        self.send("OK Group chat message sent.")


def load_credentials(path):
    accounts = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split(" ")
            if len(fields) != 2 or not all(fields):
                print(f"{path}:{lineno}: expected 'USERNAME PASSWORD'; line skipped",
                      file=sys.stderr)
                continue
            accounts.setdefault(fields[0], fields[1])
    return accounts


def main(argv=None):
    parser = argparse.ArgumentParser(description="seed-design baseline (benchmarks only)")
    parser.add_argument("port", type=int)
    parser.add_argument("attempts", type=int)
    parser.add_argument("--interface", default="0.0.0.0")
    parser.add_argument("--data-dir", default=".")
    parser.add_argument("--credentials", default="credentials.txt")
    args = parser.parse_args(argv)
    if not 1 <= args.attempts <= 5:
        print(f"Invalid number of allowed failed consecutive attempts: {args.attempts}. "
              "The valid value of argument number is an integer between 1 and 5",
              file=sys.stderr)
        return 2

    # Ten thousand threads: a small stack keeps the address space sane; RSS
    # only counts the pages a thread touches, so this does not flatter it.
    threading.stack_size(256 * 1024)
    state = State(load_credentials(args.credentials), args.attempts, args.data_dir)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((args.interface, args.port))
    except OSError as e:
        print(f"Cannot listen on port {args.port}: {e.strerror}", file=sys.stderr)
        return 1
    server.listen(4096)
    host, port = server.getsockname()
    print(f"Server listening on {host}:{port}", flush=True)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            sock, addr = server.accept()
            ClientThread(state, sock, addr).start()
    except SystemExit:
        with state.lock:
            users = list(state.active)
        for u in users:
            u.send("NOTICE Server shutting down")
        return 0


if __name__ == "__main__":
    sys.exit(main())
