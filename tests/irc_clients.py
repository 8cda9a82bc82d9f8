"""
Real IRC clients for end-to-end tests: ii (FIFO files), weechat-headless
(its command line, its FIFO, its log files) and irssi (in tmux).

Waiting is for an expected line in a file or a pane, polled at a short
interval up to a deadline; never a fixed sleep.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

TIMEOUT = 15.0
POLL = 0.02


def have(*programs) -> bool:
    return all(shutil.which(p) for p in programs)


def wait_until(check, what: str, timeout: float = TIMEOUT, describe=None):
    """Call C{check()} until it returns something true; fail after C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            detail = describe() if describe else ""
            raise AssertionError(f"timed out waiting for {what}\n{detail}")
        time.sleep(POLL)


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _matches(pattern, line: str):
    if isinstance(pattern, str):
        return pattern in line
    return pattern.search(line)


class _Process:
    process: subprocess.Popen
    dir: str

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class II(_Process):
    """C{ii -s HOST -p PORT -n NICK -i DIR -k VAR}: PASS from the environment variable."""

    def __init__(self, host, port, nick, password):
        self.dir = tempfile.mkdtemp(prefix="chatproto-ii-")
        self.host = host
        self.nick = nick
        env = dict(os.environ, II_PASSWORD=password)
        self.process = subprocess.Popen(
            ["ii", "-s", host, "-p", str(port), "-n", nick, "-i", self.dir, "-k", "II_PASSWORD"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.server_dir = os.path.join(self.dir, host)

    def path(self, target: str | None, name: str) -> str:
        if target is None:
            return os.path.join(self.server_dir, name)
        return os.path.join(self.server_dir, target.lower(), name)

    def out(self, target: str | None = None) -> list[str]:
        return read(self.path(target, "out")).splitlines()

    def expect(self, pattern, target: str | None = None, timeout=TIMEOUT) -> str:
        """A line of C{target}'s out file (the server's when None) containing C{pattern}."""
        def check():
            for line in self.out(target):
                if _matches(pattern, line):
                    return line
            return None

        return wait_until(check, f"ii {self.nick}: {pattern!r} in {target or 'server'} out",
                          timeout, lambda: "\n".join(self.out(target)[-30:]) + "\n-- server:\n"
                          + "\n".join(self.out(None)[-30:]))

    def write(self, target: str | None, line: str) -> None:
        fifo = self.path(target, "in")
        wait_until(lambda: os.path.exists(fifo), f"ii FIFO {fifo}")
        fd = wait_until(lambda: _open_fifo(fifo), f"ii reading {fifo}")
        try:
            os.write(fd, line.encode("utf-8") + b"\n")
        finally:
            os.close(fd)

    def command(self, line: str) -> None:
        """An ii command (C{/j #chan}); C{/WORD ...} sends C{WORD ...} as it is."""
        self.write(None, line)

    def say(self, target: str, text: str) -> None:
        if not target.startswith("#") and not os.path.exists(self.path(target, "in")):
            self.command(f"/j {target} {text}")  # opens the query and sends the text
            return
        self.write(target, text)


def _open_fifo(path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None  # nobody reads it yet


class Weechat(_Process):
    """
    C{weechat-headless} with one server C{t}, SASL PLAIN, its logger writing
    every buffer at once, and a FIFO for commands sent later.
    """

    def __init__(self, host, port, username, password, autojoin=()):
        self.dir = tempfile.mkdtemp(prefix="chatproto-weechat-")
        self.fifo = os.path.join(self.dir, "fifo")
        self.username = username
        commands = [
            "/set logger.file.auto_log on",
            "/set logger.file.flush_delay 0",
            "/set logger.level.irc 9",
            f"/set fifo.file.path {self.fifo}",
            f"/server add t {host}/{port} -notls",
            f"/set irc.server.t.nicks {username}",
            f"/set irc.server.t.sasl_username {username}",
            f"/set irc.server.t.sasl_password {password}",
            "/set irc.server.t.autoreconnect off",
            "/set irc.server.t.anti_flood_prio_high 0",  # no 2-second pause between our lines
            "/set irc.server.t.anti_flood_prio_low 0",
        ]
        if autojoin:
            commands.append(f"/set irc.server.t.autojoin {','.join(autojoin)}")
        commands.append("/connect t")
        self.process = subprocess.Popen(
            ["weechat-headless", "-d", self.dir, "-r", "; ".join(commands)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def log_path(self, buffer: str) -> str:
        name = "irc.server.t" if buffer == "server" else f"irc.t.{buffer.lower()}"
        return os.path.join(self.dir, "logs", f"{name}.weechatlog")

    def log(self, buffer: str) -> list[str]:
        return read(self.log_path(buffer)).splitlines()

    def expect(self, pattern, buffer: str, timeout=TIMEOUT) -> list[str]:
        """The first log line of C{buffer} containing C{pattern}, split on tabs (time, prefix, text)."""
        def check():
            for line in self.log(buffer):
                if _matches(pattern, line):
                    return line.split("\t", 2)
            return None

        return wait_until(check, f"weechat {self.username}: {pattern!r} in {buffer}", timeout,
                          lambda: "\n".join(self.log(buffer)[-30:]) + "\n-- server:\n"
                          + "\n".join(self.log("server")[-30:]))

    def command(self, buffer: str, line: str) -> None:
        """Run C{line} (a command or text) in C{buffer} ("server" or a channel or nick)."""
        wait_until(lambda: os.path.exists(self.fifo), "weechat's FIFO")
        full = "irc.server.t" if buffer == "server" else f"irc.t.{buffer}"
        fd = wait_until(lambda: _open_fifo(self.fifo), "weechat reading its FIFO")
        try:
            os.write(fd, f"{full} *{line}\n".encode())
        finally:
            os.close(fd)


class Irssi:
    """irssi in a tmux session on a private tmux socket."""

    def __init__(self, nick="irssi"):
        self.dir = tempfile.mkdtemp(prefix="chatproto-irssi-")
        self.socket = f"chatproto-test-{os.getpid()}-{id(self)}"
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y",
                        "50", f"irssi --home={self.dir} -n {nick}"], check=True)

    def quick(self) -> None:
        """No pause between the commands irssi sends (its flood protection)."""
        self.keys("/set cmd_queue_speed 0")
        self.keys("/set cmds_max_at_once 0")

    def keys(self, text: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "0", "-l", text], check=True)
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "0", "Enter"], check=True)

    def screen(self) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "0", "-S", "-200"],
                              capture_output=True, text=True)
        return done.stdout

    def expect(self, pattern, timeout=TIMEOUT) -> str:
        def check():
            for line in self.screen().splitlines():
                if _matches(pattern, line):
                    return line
            return None

        return wait_until(check, f"irssi: {pattern!r}", timeout, self.screen)

    def cleanup(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        path = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", self.socket)
        if os.path.exists(path):
            os.unlink(path)  # the private socket tmux leaves behind


TIME_OF_DAY = re.compile(r"\b\d\d:\d\d(:\d\d)?\b")
