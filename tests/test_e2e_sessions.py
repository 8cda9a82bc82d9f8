"""
One person, several devices, end to end: a real server process with its IRC
and web listeners; Yoda logged in at once in the real terminal client (in a
pseudo-terminal), in a real IRC client (ii) and in real headless Chromium;
Hans speaks the wire protocol over a socket. Also: read markers and an
offline message surviving a server restart, seen by the terminal client at
login.

Every wait is for something to appear, never a sleep.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.harness import TIMEOUT, ServerProcess, child_env, free_udp_port
from tests.irc_clients import II, have
from tests.test_e2e_pty import COLUMNS, ROWS, ScreenReader, WireUser, termios
from tests.test_e2e_web import browser, logged_in, new_page  # noqa: F401 - browser is a fixture

IRC_READY = re.compile(r"^IRC listening on ([\d.]+):(\d+)$")
WEB_READY = re.compile(r"^Web client on (http://[\d.]+:\d+/)$")

pytestmark = pytest.mark.skipif(termios is None, reason="needs a POSIX pseudo-terminal")


@pytest.fixture
def cleanup():
    things = []
    yield things.append
    for thing in reversed(things):
        thing()


def ready_line(server, pattern):
    for line in server.stdout.lines:
        found = pattern.match(line)
        if found:
            return found
    return server.stdout.expect(pattern)


def start_server(cleanup, *extra, data_dir=None) -> ServerProcess:
    server = ServerProcess(data_dir=data_dir, extra_args=["--irc-port", "0", "--web-port", "0", *extra])
    cleanup(server.cleanup)
    server.irc_port = int(ready_line(server, IRC_READY).group(2))
    server.url = ready_line(server, WEB_READY).group(1)
    return server


def terminal_client(server, cleanup) -> ScreenReader:
    """The real client in a pseudo-terminal (rich mode)."""
    master, slave = os.openpty()
    cleanup(lambda: (os.close(master), os.close(slave)))
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ,
                ROWS.to_bytes(2, sys.byteorder) + COLUMNS.to_bytes(2, sys.byteorder) + bytes(4))
    home = tempfile.mkdtemp(prefix="chatproto-home-")
    cleanup(lambda: shutil.rmtree(home, True))
    process = subprocess.Popen(
        [sys.executable, "-m", "chatproto.client", server.host, str(server.port), str(free_udp_port())],
        stdin=slave, stdout=slave, stderr=slave, cwd=server.data_dir,
        env=child_env({"TERM": "xterm", "HOME": home, "XDG_CONFIG_HOME": ""}), start_new_session=True)

    def stop():
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)

    cleanup(stop)
    screen = ScreenReader(master, COLUMNS, ROWS)
    screen.process = process
    return screen


def log_in(screen, username, password):
    screen.wait_for_cursor_line("Username: ")
    os.write(screen.fd, username.encode() + b"\r")
    screen.wait_for_cursor_line("Password: ")
    os.write(screen.fd, password.encode() + b"\r")
    screen.wait_for_text("Welcome to chatproto!")
    screen.wait_for_cursor_line("> ")


def type_line(screen, text):
    os.write(screen.fd, text.encode() + b"\r")


def sends_to_yoda(user, *texts):
    """C{user} sends each of C{texts} to Yoda, each stored before the next."""
    for text in texts:
        user.send(f"/msgto Yoda {text}")
        user.expect(re.compile("^OK message sent at"))


def wire_user(server, cleanup, username, password) -> WireUser:
    user = WireUser(server.host, server.port, username, password)
    cleanup(user.close)
    return user


@pytest.mark.skipif(not have("ii"), reason="ii is not installed")
def test_one_user_in_the_terminal_irc_and_the_browser_at_once(browser, cleanup):  # noqa: F811
    server = start_server(cleanup)
    hans = wire_user(server, cleanup, "Hans", "falcon*solo")
    screen = terminal_client(server, cleanup)
    log_in(screen, "Yoda", "wise@!man")
    ii = II(server.host, server.irc_port, "Yoda", "wise@!man")
    cleanup(ii.cleanup)
    ii.expect("Welcome to chatproto, Yoda!")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")

    # /sessions lists the three devices; Hans sees one user with three sessions.
    type_line(screen, "/sessions")
    screen.wait_for(lambda: all(any(re.search(rf"^\d, {fe}, 127\.0\.0\.1, ", line.strip()) for line in screen.lines())
                                for fe in ("line", "irc", "web")), "three sessions")
    hans.send("/activeuser")
    lines = [hans.expect(re.compile(r"^DATA Yoda, ")) for _ in range(3)]
    assert sorted(line.split(", ")[2] for line in lines)[0] == "0"  # the page cannot receive files

    # A message to Yoda reaches all three.
    hans.send("/msgto Yoda hello everywhere")
    hans.expect(re.compile("^OK message sent at"))
    screen.wait_for_text("<Hans> hello everywhere")
    ii.expect("<Hans> hello everywhere", "hans")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge:text-is('1')")
    page.click("#people-list button[data-name=Hans]")
    page.wait_for_selector("#messages li .text:text-is('hello everywhere')")

    # What Yoda sends from IRC is shown in the terminal and on the page, in the conversation.
    ii.say("hans", "from irssi's cousin")
    hans.expect(re.compile(r"^MSG .*, Yoda: from irssi's cousin$"))
    screen.wait_for_text("<Yoda> from irssi's cousin")
    page.wait_for_selector("#messages li.mine .text:text-is(\"from irssi's cousin\")")
    # ... and from the page: IRC gets the PRIVMSG from Yoda (no echo-message asked for).
    page.fill("#composer-input", "from the browser")
    page.press("#composer-input", "Enter")
    hans.expect(re.compile(r"^MSG .*, Yoda: from the browser$"))
    ii.expect("<Yoda> from the browser", "hans")
    screen.wait_for_text("<Yoda> from the browser")

    # Away from the terminal: Hans is told; IRC and the page know.
    type_line(screen, "/away gone fishing")
    screen.wait_for_text("You are marked as away.")
    page.wait_for_selector("#away-button:text-is('Back')")
    hans.send("/msgto Yoda are you there?")
    hans.expect("NOTICE Yoda is away: gone fishing")
    hans.expect(re.compile("^OK message sent at"))
    # Back from the page: everywhere.
    page.click("#away-button")
    screen.wait_for_text("You are no longer marked as away.")
    hans.send("/msgto Yoda back?")
    assert hans.expect(re.compile(r"^(OK message sent at|NOTICE)")).startswith("OK")

    # /logout all from the terminal ends IRC and the page too.
    type_line(screen, "/logout all")
    ii.expect("You have been logged out from another session")
    page.wait_for_selector("#login-view:not([hidden])")
    hans.send("/msgto Yoda still there?")
    hans.expect("ERR Yoda is not active")
    assert page.errors == []


def test_reading_in_the_terminal_clears_the_other_devices(browser, cleanup):  # noqa: F811
    """Issue 24: the terminal client marks what it shows read; the page and another session clear."""
    server = start_server(cleanup)
    hans = wire_user(server, cleanup, "Hans", "falcon*solo")
    phone = wire_user(server, cleanup, "Yoda", "wise@!man")  # another device, on the wire protocol
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    for text in ("one", "two"):
        hans.send(f"/msgto Yoda {text}")
        hans.expect(re.compile("^OK message sent at"))
    page.wait_for_selector("#people-list button[data-name=Hans] .badge:text-is('2')")
    screen = terminal_client(server, cleanup)
    log_in(screen, "Yoda", "wise@!man")
    screen.wait_for_text("unread: 2:Hans(2)")  # the status line
    assert "<Hans> two" not in screen.text()

    # Opening the conversation shows the two and marks them read: every device clears.
    type_line(screen, "/chat Hans")
    screen.wait_for_text("#2 ")
    phone.expect("READ Hans 2")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge", state="detached")
    screen.wait_for(lambda: "unread:" not in screen.text(), "the status line without unread counts")

    # A message that arrives while the conversation is open is shown at once, and read for the
    # other devices once Yoda types in it (nobody may be at an idle terminal).
    hans.send("/msgto Yoda three")
    hans.expect(re.compile("^OK message sent at"))
    screen.wait_for_text("<Hans> three")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge:text-is('1')")
    type_line(screen, "three, yes")
    hans.expect(re.compile(r"^MSG .*, Yoda: three, yes$"))
    phone.expect("READ Hans 3")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge", state="detached")
    phone.send("/unread")
    phone.expect("OK No unread messages.")
    assert page.errors == []


def test_a_read_elsewhere_up_to_an_older_message_leaves_the_newer_ones_unread(browser, cleanup):  # noqa: F811
    """Issue 24: the phone reads Hans up to his first message; the page and the terminal client show
    the two that came after it as unread, as the server counts them, not nothing."""
    server = start_server(cleanup)
    hans = wire_user(server, cleanup, "Hans", "falcon*solo")
    wire_user(server, cleanup, "leia", "alderaan")
    phone = wire_user(server, cleanup, "Yoda", "wise@!man")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    screen = terminal_client(server, cleanup)
    log_in(screen, "Yoda", "wise@!man")
    type_line(screen, "/chat leia")  # the terminal looks at leia: Hans's messages wait in their window
    screen.wait_for_cursor_line("[leia] ")
    sends_to_yoda(hans, "one", "two", "three")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge:text-is('3')")
    screen.wait_for_text("Hans(3)")
    phone.send("/history Hans 3")
    first = int(phone.expect(re.compile(r"^DATA #\d+ .*, Hans: one$")).split()[1][1:])
    phone.expect("OK")
    phone.send(f"/read Hans {first}")
    phone.expect("OK")
    phone.send("/unread")
    phone.expect("DATA Hans 2")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge:text-is('2')")
    screen.wait_for_text("Hans(2)")
    phone.send("/read Hans 999")  # past the newest: everything read, everywhere
    phone.expect("OK")
    page.wait_for_selector("#people-list button[data-name=Hans] .badge", state="detached")
    screen.wait_for(lambda: "Hans(" not in screen.text(), "the status line without Hans's count")
    assert page.errors == []


def test_unread_survives_a_restart_and_shows_at_login(cleanup):
    server = start_server(cleanup, "--offline-messages")
    hans = wire_user(server, cleanup, "Hans", "falcon*solo")
    yoda = wire_user(server, cleanup, "Yoda", "wise@!man")
    sends_to_yoda(hans, "one", "two", "three")
    yoda.send("/read Hans 1")
    yoda.expect("OK")
    yoda.send("/logout")
    yoda.expect("OK Bye, Yoda!")
    hans.send("/msgto Yoda while you were out")  # kept: --offline-messages
    hans.expect(re.compile("^OK message sent at"))
    assert server.stop() == 0
    again = start_server(cleanup, "--offline-messages", data_dir=server.data_dir)
    screen = terminal_client(again, cleanup)
    log_in(screen, "Yoda", "wise@!man")
    screen.wait_for_text("unread: Hans(3)")
    screen.wait_for_text("unread: 2:Hans(3)")  # the status line
    other = wire_user(again, cleanup, "Yoda", "wise@!man")
    other.send("/read Hans 4")
    other.expect("OK")
    deadline = time.monotonic() + TIMEOUT
    while "unread: 2:Hans" in screen.text():  # the status line clears: read on another device
        assert time.monotonic() < deadline, screen.text()
        screen.pump(0.05)


def test_away_survives_a_restart(browser, cleanup):  # noqa: F811
    """Away is kept in the database until cleared: after a restart, with Yoda not logged in,
    a message to him (kept: --offline-messages) says he is away; his page shows it; he clears it."""
    server = start_server(cleanup, "--offline-messages")
    yoda = wire_user(server, cleanup, "Yoda", "wise@!man")
    yoda.send("/away gone fishing")
    yoda.expect("OK You are marked as away.")
    assert server.stop() == 0
    again = start_server(cleanup, "--offline-messages", data_dir=server.data_dir)
    hans = wire_user(again, cleanup, "Hans", "falcon*solo")
    hans.send("/msgto Yoda still fishing?")
    assert hans.expect(re.compile(r"^(OK|NOTICE) ")) == "NOTICE Yoda is away: gone fishing"
    hans.expect(re.compile("^OK message sent at"))
    page = logged_in(new_page(browser, cleanup), again.url, "Yoda", "wise@!man")
    page.wait_for_selector("#away-button:text-is('Back')")
    page.click("#away-button")
    page.wait_for_selector("#away-button:text-is('Set away')")
    hans.send("/msgto Yoda back?")
    assert hans.expect(re.compile(r"^(OK|NOTICE) ")).startswith("OK message sent at")
    assert page.errors == []


from twisted.trial.unittest import SynchronousTestCase  # noqa: E402

from tests import test_e2e_cluster as cluster  # noqa: E402 - its helpers, not its tests
from tests.services import NeedsPostgres, NeedsRedis  # noqa: E402


class AcrossClusterNodesTests(NeedsPostgres, NeedsRedis, SynchronousTestCase):
    """Two real nodes on Redis and PostgreSQL: away and read markers hold on both."""

    setUp = cluster.ClusterTests.setUp
    node = cluster.ClusterTests.node
    login = cluster.ClusterTests.login

    def test_away_and_read_markers_on_every_node(self):
        a, b = self.node(), self.node()
        yoda = self.login(a, "Yoda", "wise@!man")
        hans = self.login(b, "Hans", "falcon*solo")
        yoda.command("/away gone fishing", "You are marked as away.")
        hans.command("/msgto Yoda are you there?", "Yoda is away: gone fishing", re.compile("^message sent at"))
        hans.command("/msgto Yoda and now?", "Yoda is away: gone fishing", re.compile("^message sent at"))
        yoda.command("/away", "You are no longer marked as away.")
        hans.command("/msgto Yoda back?", re.compile("^message sent at"))
        yoda.command("/unread", "Hans 3")
        yoda.command("/read Hans 2")  # a bare OK: nothing to show
        yoda.send("/logout")
        yoda.expect("Bye, Yoda!")
        self.assertEqual(yoda.wait(), 0)
        # Node B hears of the logout (Redis released the name before telling it): Yoda is inactive.
        deadline = time.monotonic() + TIMEOUT
        while True:
            hans.send("/users")
            found = hans.expect(re.compile(r"^Yoda (in)?active$"))
            hans.expect_prompt()
            if found.group(1) or time.monotonic() > deadline:
                break
        # On the other node: the marker (in PostgreSQL) holds.
        again = self.login(b, "Yoda", "wise@!man")
        again.command("/unread", "Hans 1")
