"""
The page's tabs end to end: two tabs of one browser (two pages in one
Playwright context, one cookie) in real headless Chromium against a real
server process are two sessions of Yoda. The server, not the page, shows
what one tab sends in the other; a message to Yoda reaches both; `/sessions`
lists both; a group left in one tab goes from the other, and the other
members' pages show the members without Yoda.

Skipped, with the reason, when Playwright or Debian's chromium is missing
(as tests/test_e2e_web.py). Every wait is for something to appear.
"""

import re

from tests.test_e2e_pty import WireUser
from tests.test_e2e_web import (  # noqa: F401 - browser and cleanup are pytest fixtures
    TIMEOUT_MS,
    browser,
    cleanup,
    create_group,
    line_client,
    logged_in,
    new_page,
    start,
)


def second_tab(page, url):
    """Another tab of the same browser (same context, so the same login cookie)."""
    tab = page.context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.goto(url)
    tab.wait_for_selector("#chat-view:not([hidden])")  # logged in by the cookie alone
    return tab


def shown(page, text):
    return page.locator(f"#messages li .text:text-is('{text}')")


def test_two_tabs_are_two_sessions(browser, cleanup):
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    tab1 = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    tab2 = second_tab(tab1, server.url)
    for tab in (tab1, tab2):
        tab.click("#people-list button[data-name=Hans]")
        tab.wait_for_selector("#conversation-title:text-is('Hans')")

    # /sessions (from a third session, the wire protocol) lists both tabs.
    yoda = WireUser(server.host, server.port, "Yoda", "wise@!man")
    cleanup(yoda.close)
    yoda.send("/sessions")
    sessions = [yoda.expect(re.compile(r"^DATA \d, ")) for _ in range(3)]
    assert [line.split(", ")[1] for line in sessions] == ["web", "web", "line"]

    # A send in tab 1: once in tab 1 (its reply), once in tab 2 (the server's Sent), and the
    # wire session gets SENT.
    tab1.fill("#composer-input", "from tab one")
    tab1.press("#composer-input", "Enter")
    hans.expect(re.compile(r", Yoda: from tab one$"))
    yoda.expect(re.compile(r"^SENT .*, to Hans: from tab one$"))
    tab2.wait_for_selector("#messages li.mine .text:text-is('from tab one')")
    # A message to Yoda: in both tabs. It also orders things: any echo of the first would be in by now.
    hans.send("/msgto Yoda to both tabs")
    for tab in (tab1, tab2):
        tab.wait_for_selector("#messages li:not(.mine) .text:text-is('to both tabs')")
        assert shown(tab, "to both tabs").count() == 1
        assert shown(tab, "from tab one").count() == 1

    # A group left in tab 2 goes from tab 1's list; leia's page shows the members without Yoda.
    leia = logged_in(new_page(browser, cleanup), server.url, "leia", "alderaan")
    create_group(tab1, "Jedi", ["leia"])
    leia.click("#group-list button[data-name=Jedi]")
    leia.click("#join-button")
    members = "#conversation-subtitle:text-is('owner Yoda; members: {}')"
    leia.wait_for_selector(members.format("Yoda, leia"))
    tab2.wait_for_selector("#group-list button[data-name=Jedi]")
    tab2.click("#group-list button[data-name=Jedi]")
    tab2.click("#leave-button")
    tab2.wait_for_selector("#status:text-is('You have left the group chat Jedi.')")
    tab1.wait_for_selector("#group-list button[data-name=Jedi]", state="detached")
    leia.wait_for_selector(members.format("leia"))
    assert tab1.errors == [] and tab2.errors == [] and leia.errors == []
