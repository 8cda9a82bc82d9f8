"""
The page's tabs on a cluster, end to end: Yoda in the terminal client on
node A and the page, two tabs of one browser in real headless Chromium, on
node B. Each tab is a core session of its own, counted in Redis with the
account's other sessions as a login is (docs/CLUSTER.md, "Sessions of one
account on several nodes"), so the page opens on node B while the terminal
is logged in on node A, a message to Yoda reaches all three, and with
`--max-sessions 3` a third tab is refused (the terminal on node A counts).

Every wait is for something to appear (a line, a selector), never a sleep.
"""

import re
import shutil

import pytest

from tests.test_e2e_cluster_frontends import WEB_READY, fresh_cluster, ready
from tests.test_e2e_cluster_sessions import LineSocket

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")

TS = r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d"
TIMEOUT_MS = 15000


def open_tab(context, url):
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(url)
    return tab


def test_the_page_on_one_node_and_the_terminal_on_another(request, tmp_path):
    cleanup = request.addfinalizer  # run last first
    node = fresh_cluster(cleanup, tmp_path)
    a, b = (node("--web-port", "0", "--max-sessions", "3") for _ in range(2))
    yoda = a.client()
    cleanup(yoda.cleanup)
    yoda.login("Yoda", "wise@!man")
    hans = LineSocket(a)
    cleanup(hans.close)
    hans.send("LOGIN Hans falcon*solo 7002")
    assert hans.expect("^(OK|ERR)") == "OK Welcome to chatproto!"

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = chromium.new_context()
            url = ready(b, WEB_READY)
            tab1 = open_tab(context, url)
            tab1.wait_for_selector("body[data-ready]", state="attached")
            tab1.fill("#login-username", "Yoda")
            tab1.fill("#login-password", "wise@!man")
            tab1.press("#login-password", "Enter")
            tab1.wait_for_selector("#chat-view:not([hidden])")
            tab2 = open_tab(context, url)
            tab2.wait_for_selector("#chat-view:not([hidden])")  # logged in by the cookie alone
            for tab in (tab1, tab2):
                tab.click("#people-list button[data-name=Hans]")
                tab.wait_for_selector("#conversation-title:text-is('Hans')")

            # /sessions, from the terminal on node A: itself and the two tabs on node B.
            yoda.send("/sessions")
            for _ in range(3):
                yoda.expect(re.compile(r"^\d, (line|web), "))
            yoda.expect_prompt()
            assert sorted(re.search(r"^\d, (\w+), ", line).group(1) for line in yoda.stdout.lines
                          if re.search(r"^\d, (line|web), ", line)) == ["line", "web", "web"]

            # A message to Yoda (sent on node A): in the terminal and in both tabs on node B.
            hans.send("/msgto Yoda to every device")
            hans.expect("^OK message sent at")
            yoda.expect(re.compile(rf"^{TS}, Hans: to every device$"))
            for tab in (tab1, tab2):
                tab.wait_for_selector("#messages li:not(.mine) .text:text-is('to every device')")

            # A send from tab 2: Hans gets it once; tab 1 (same node) and the terminal (node A) show it.
            tab2.fill("#composer-input", "from the second tab")
            tab2.press("#composer-input", "Enter")
            hans.expect(rf"^MSG {TS}, Yoda: from the second tab$")
            tab1.wait_for_selector("#messages li.mine .text:text-is('from the second tab')")
            yoda.expect(re.compile(r"from the second tab$"))
            for tab in (tab1, tab2):
                assert tab.locator("#messages li .text:text-is('from the second tab')").count() == 1

            # A third tab would be the account's fourth session (the terminal on node A counts):
            # refused with the login's text; the other two tabs and the terminal go on.
            tab3 = open_tab(context, url)
            tab3.wait_for_selector("#login-error:text-is('This account is already logged in')")
            hans.send("/msgto Yoda still three")
            hans.expect("^OK message sent at")
            yoda.expect(re.compile(rf"^{TS}, Hans: still three$"))
            for tab in (tab1, tab2):
                tab.wait_for_selector("#messages li:not(.mine) .text:text-is('still three')")
        finally:
            chromium.close()
