"""
The browser client end to end: a real server process with its web listener,
a real headless Chromium driven by Playwright, and line-protocol clients
(tests/harness.py) on the same server.

Skipped, with the reason, when Playwright or Debian's chromium is missing.
Every wait is for something to appear (Playwright's auto-waiting, the
harness's expect), never a sleep.
"""

import os
import tempfile
import re
import shutil

import pytest

from tests.harness import REPO, ServerProcess

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 780}
TIMEOUT_MS = 15000
WEB_READY = re.compile(r"^Web client on (http://[\d.]+:\d+/)$")
XSS = "<img src=x onerror=alert(1)>"


class WebServer(ServerProcess):
    """The server with its web listener on a free port; C{url} is the page."""

    def __init__(self, **kwargs):
        extra = list(kwargs.pop("extra_args", ())) + ["--web-port", str(kwargs.pop("web_port", 0))]
        try:
            super().__init__(extra_args=extra, **kwargs)
            for line in self.stdout.lines:
                match = WEB_READY.search(line)
                if match:
                    break
            else:
                match = self.stdout.expect(WEB_READY)
        except BaseException:
            if hasattr(self, "process"):
                self.cleanup()
            raise
        self.url = match.group(1)


def screenshot_path(name: str) -> str:
    """docs/NAME with CHATPROTO_SCREENSHOTS=docs (to refresh README's pictures), else a scratch file."""
    if os.environ.get("CHATPROTO_SCREENSHOTS") == "docs":
        return os.path.join(REPO, "docs", name)
    directory = os.path.join(tempfile.gettempdir(), "chatproto-screenshots")
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, name)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def cleanup():
    things = []
    yield things.append
    for thing in reversed(things):
        thing()


def new_page(browser, cleanup, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport)
    cleanup(context.close)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def log_in(page, url, username, password):
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached")  # the page knows it has no session
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.press("#login-password", "Enter")


def logged_in(page, url, username, password):
    log_in(page, url, username, password)
    page.wait_for_selector("#chat-view:not([hidden])")
    assert page.text_content("#me-name") == username
    return page


def start(cleanup, **kwargs) -> WebServer:
    server = WebServer(**kwargs)
    cleanup(server.cleanup)
    return server


def line_client(server, cleanup, username, password):
    client = server.client()
    cleanup(client.cleanup)
    client.login(username, password)
    return client


def test_login_texts_and_lockout(browser, cleanup):
    server = start(cleanup, attempts=2)
    page = new_page(browser, cleanup)
    log_in(page, server.url, "Nobody", "x")
    page.wait_for_selector("#login-error:has-text('Invalid Username. Please try again')")
    log_in(page, server.url, "Yoda", "wrong")
    page.wait_for_selector("#login-error:text-is('Invalid Password. Please try again')")
    log_in(page, server.url, "Yoda", "wrong again")
    page.wait_for_selector(
        "#login-error:text-is('Invalid Password. Your account has been blocked. Please try again later')")
    log_in(page, server.url, "Yoda", "wise@!man")
    page.wait_for_selector(
        "#login-error:text-is('Your account is blocked due to multiple login failures. Please try again later')")
    # The same lockout holds on the line protocol: it is one account.
    client = server.client()
    cleanup(client.cleanup)
    client.expect("Username: ")
    client.send("Yoda")
    client.expect("Password: ")
    client.send("wise@!man")
    client.expect("Your account is blocked due to multiple login failures. Please try again later")
    assert page.dialogs == [] and page.errors == []


def test_chat_with_a_terminal_user(browser, cleanup):
    """Page to terminal and back, presence, the XSS text, a reload; the screenshots for README."""
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    page.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    # The cookie: HttpOnly, SameSite=Strict, and not readable by the page's scripts.
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "chatproto_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "chatproto_session" not in page.evaluate("document.cookie")
    assert cookie["value"] not in page.url

    page.click("#people-list button[data-name=Hans]")
    page.fill("#composer-input", XSS)
    page.press("#composer-input", "Enter")
    hans.expect(re.compile(r"^\d\d \w{3} \d{4} \d\d:\d\d:\d\d, Yoda: " + re.escape(XSS) + "$"))
    page.wait_for_selector("#messages li.mine .text")
    assert page.text_content("#messages li.mine .text") == XSS
    assert page.locator("#messages img").count() == 0

    hans.send("/msgto Yoda Hello from the terminal!")
    hans.expect(re.compile(r"^message sent at "))
    page.wait_for_selector("#messages li:not(.mine) .text:text-is('Hello from the terminal!')")

    # Someone else arrives: presence is live; their message counts as unread.
    luke = line_client(server, cleanup, "luke", "jedi*knight")
    page.wait_for_selector("#people-list button[data-name=luke] .dot.on")
    luke.send("/msgto Yoda Are you there?")
    page.wait_for_selector("#people-list button[data-name=luke] .badge:text-is('1')")

    page.screenshot(path=screenshot_path("web-desktop.png"))
    phone = logged_in(new_page(browser, cleanup, PHONE), server.url, "leia", "alderaan")
    phone.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    hans.send("/msgto leia Hi leia, the page works on a phone too.")
    phone.wait_for_selector("#people-list button[data-name=Hans] .badge")
    phone.click("#people-list button[data-name=Hans]")
    phone.wait_for_selector("#messages li .text:text-is('Hi leia, the page works on a phone too.')")
    phone.fill("#composer-input", "Nice!")
    phone.press("#composer-input", "Enter")
    hans.expect(re.compile(r", leia: Nice!$"))
    phone.wait_for_selector("#messages li.mine")
    phone.screenshot(path=screenshot_path("web-phone.png"))

    # A reload keeps the login (the cookie) and the conversation's history.
    page.reload()
    page.wait_for_selector("#chat-view:not([hidden])")
    page.click("#people-list button[data-name=Hans]")
    page.wait_for_selector("#messages li .text:text-is('Hello from the terminal!')")
    hans.send("/activeuser")
    hans.expect(re.compile(r"^Yoda, 127\.0\.0\.1, 0, active since "))

    # Hans deletes his message (SEQ 2, after Yoda's): the open conversation shows it [deleted] at once.
    hans.send("/deletemsg 2")
    hans.expect("Message 2 deleted.")
    page.wait_for_selector("#messages li.deleted .text:text-is('[deleted]')")
    assert page.locator("#messages li .text:text-is('Hello from the terminal!')").count() == 0

    # Log out: the terminal sees Yoda go; a reload shows the login form.
    page.click("#logout-button")
    page.wait_for_selector("#login-info:text-is('Bye, Yoda!')")
    hans.send("/msgto Yoda still there?")
    hans.expect("Yoda is not active")
    page.reload()
    page.wait_for_selector("#login-view:not([hidden])")
    assert page.dialogs == [] and page.errors == [] and phone.errors == []


def test_groups_live(browser, cleanup):
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    page.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    page.click("#new-group-button")
    page.fill("#group-name", "Jedi")
    page.check("#group-members input[value=Hans]")
    page.click("#group-create")
    hans.expect("You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join.")
    page.wait_for_selector("#conversation-title:text-is('# Jedi')")
    hans.send("/joingroup Jedi")
    hans.expect("Joined the group chat: Jedi successfully.")
    page.wait_for_selector("#messages li.system:text-is('Hans has joined the group chat Jedi.')")
    hans.send("/groupmsg Jedi May the force be with you")
    page.wait_for_selector("#messages li .text:text-is('May the force be with you')")
    page.fill("#composer-input", "And with you.")
    page.press("#composer-input", "Enter")
    hans.expect(re.compile(r", Jedi, Yoda: And with you\.$"))
    hans.send("/leavegroup Jedi")
    page.wait_for_selector("#messages li.system:text-is('Hans has left the group chat Jedi.')")
    page.click("#leave-button")
    page.wait_for_selector("#status:text-is('You have left the group chat Jedi.')")
    assert page.errors == []


def test_history_after_a_restart(browser, cleanup):
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    page.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    page.click("#people-list button[data-name=Hans]")
    for n in range(1, 4):
        page.fill("#composer-input", f"before the restart {n}")
        page.press("#composer-input", "Enter")
        hans.expect(re.compile(f"Yoda: before the restart {n}$"))
    hans.cleanup()
    # Every text the login form shows from now on (the page moves on to "not reachable" by itself).
    page.evaluate("""() => { const error = document.getElementById('login-error'); window.seen = [];
        new MutationObserver(() => window.seen.push(error.textContent))
            .observe(error, {childList: true, characterData: true, subtree: true}); }""")
    assert server.stop() == 0  # SIGTERM: the tab is told, its output flushed, closed and waited for
    page.wait_for_function("() => window.seen.includes('Server shutting down')")
    page.wait_for_selector("#connection:text-is('Reconnecting…'), #login-view:not([hidden])")

    again = start(cleanup, data_dir=server.data_dir, credentials=server.credentials)
    page2 = logged_in(new_page(browser, cleanup), again.url, "Yoda", "wise@!man")
    page2.click("#people-list button[data-name=Hans]")
    page2.wait_for_selector("#messages li .text:text-is('before the restart 3')")
    texts = page2.locator("#messages li .text").all_text_contents()
    assert texts == [f"before the restart {n}" for n in (1, 2, 3)]
    assert page2.errors == []


def test_keyboard_alone_on_a_phone(browser, cleanup):
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = new_page(browser, cleanup, PHONE)
    page.goto(server.url)
    page.wait_for_selector("#login-username:focus")
    page.keyboard.type("Yoda")
    page.keyboard.press("Tab")
    page.keyboard.type("wise@!man")
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat-view:not([hidden])")
    page.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    for _ in range(20):
        if page.evaluate("document.activeElement.dataset.name") == "Hans":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Hans, active"
    page.keyboard.press("Enter")
    page.wait_for_selector("#composer-input:focus")
    assert not page.is_visible("#people-list")  # a phone shows one pane at a time
    page.keyboard.type("typed with the keyboard alone")
    page.keyboard.press("Enter")
    hans.expect(re.compile(r", Yoda: typed with the keyboard alone$"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#people-list button[data-name=Hans]:focus")
    assert page.errors == []


IRC_READY = re.compile(r"^IRC listening on ([\d.]+):(\d+)$")


def with_ii_luke(cleanup):
    """A server with its IRC listener, and luke logged in there with ii (skipped without ii)."""
    from tests.irc_clients import II, have

    if not have("ii"):
        pytest.skip("ii is not installed (apt-get install ii)")
    server = start(cleanup, extra_args=["--irc-port", "0"])
    for line in server.stdout.lines:
        found = IRC_READY.match(line)
        if found:
            break
    else:
        found = server.stdout.expect(IRC_READY)
    luke = II(server.host, int(found.group(2)), "luke", "jedi*knight")
    cleanup(luke.cleanup)
    luke.expect("Welcome to chatproto")
    return server, luke


def create_group(page, name, members):
    """The page's New group dialog, with C{members} (active users) invited; the group opens."""
    for member in members:
        page.wait_for_selector(f"#people-list button[data-name={member}] .dot.on")
    page.click("#new-group-button")
    page.fill("#group-name", name)
    for member in members:
        page.check(f"#group-members input[value={member}]")
    page.click("#group-create")
    page.wait_for_selector(f"#conversation-title:text-is('# {name}')")


def test_group_with_an_irc_user(browser, cleanup):
    server, luke = with_ii_luke(cleanup)
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    create_group(page, "Jedi", ["luke"])
    luke.command("/j #Jedi")
    luke.expect("has joined #Jedi", "#jedi")
    page.wait_for_selector("#messages li.system:text-is('luke has joined the group chat Jedi.')")
    luke.say("#Jedi", "hello from IRC")
    page.wait_for_selector("#messages li .text:text-is('hello from IRC')")
    page.fill("#composer-input", "hello from the web")
    page.press("#composer-input", "Enter")
    luke.expect("<Yoda> hello from the web", "#jedi")
    assert page.errors == []
