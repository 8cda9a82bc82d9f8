"""
The page over time, in a real headless Chromium against real server
processes: members that change while one is only invited (shown as they
change), a server restart (the page notices by itself when the server is
gone and back), status lines that fade, and the page's WebSocket in the
metrics.

Skipped, with the reason, when Playwright or Debian's chromium is missing
(as tests/test_e2e_web.py). Waits are for something to appear; the fading is
timed on the page's own clock (Playwright's clock), not by sleeping.
"""

import re

import pytest

from tests.test_e2e_web import (  # noqa: F401 - browser and cleanup are pytest fixtures
    browser,
    cleanup,
    create_group,
    line_client,
    logged_in,
    log_in,
    new_page,
    start,
    with_ii_luke,
)

SERVER_GONE = "The server is not reachable. This page will reconnect when it is back."
SERVER_BACK = "The server is back. Please log in again."


def test_members_are_current_for_an_invited_member(browser, cleanup):
    """
    Hans, on the page, is only invited to Jedi and has it open: joins from
    IRC (ii), the line protocol (the terminal client) and another page, and
    a part, show in its member list as they happen, without opening it again.
    """
    server, luke = with_ii_luke(cleanup)
    leia = line_client(server, cleanup, "leia", "alderaan")
    hans = logged_in(new_page(browser, cleanup), server.url, "Hans", "falcon*solo")
    obiwan = logged_in(new_page(browser, cleanup), server.url, "obiwan", "hellothere")
    yoda = line_client(server, cleanup, "Yoda", "wise@!man")
    yoda.send("/creategroup Jedi Hans luke leia obiwan")
    yoda.expect(re.compile(r"^Group chat room has been created, room name: Jedi"))
    hans.click("#group-list button[data-name=Jedi]")
    members = "#conversation-subtitle:text-is('owner Yoda; members: {}')"
    hans.wait_for_selector(members.format("Yoda, Hans (invited), luke (invited), leia (invited), obiwan (invited)"))
    luke.command("/j #Jedi")
    luke.expect("has joined #Jedi", "#jedi")
    hans.wait_for_selector(members.format("Yoda, Hans (invited), luke, leia (invited), obiwan (invited)"))
    leia.send("/joingroup Jedi")
    leia.expect("Joined the group chat: Jedi successfully.")
    hans.wait_for_selector(members.format("Yoda, Hans (invited), luke, leia, obiwan (invited)"))
    obiwan.click("#group-list button[data-name=Jedi]")
    obiwan.click("#join-button")
    hans.wait_for_selector(members.format("Yoda, Hans (invited), luke, leia, obiwan"))
    luke.command("/PART #Jedi")
    hans.wait_for_selector(members.format("Yoda, Hans (invited), leia, obiwan"))
    # The line protocol's joined members were told as before, in its own words.
    leia.expect("obiwan has joined the group chat Jedi.")
    leia.expect("luke has left the group chat Jedi.")
    assert hans.errors == [] and obiwan.errors == []


def logged_in_server_gone(browser, cleanup, stop):
    """A page logged in; then the server goes (C{stop}); returns a starter of the next one and the page."""
    server = start(cleanup)
    port = int(re.search(r":(\d+)/$", server.url).group(1))
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    stop(server)

    def start_again():
        # Same data, same web port: the page's address.
        again = start(cleanup, data_dir=server.data_dir, credentials=server.credentials, web_port=port)
        assert again.url == server.url

    return start_again, page


def test_a_server_restart_seen_from_the_login_form(browser, cleanup):
    start_again, page = logged_in_server_gone(browser, cleanup, lambda server: server.stop())
    # The session cannot survive a restart: the login form, saying what is going on now.
    page.wait_for_selector("#login-view:not([hidden])")
    page.wait_for_selector(f"#login-error:text-is('{SERVER_GONE}')")
    page.fill("#login-username", "Yoda")  # what the user types meanwhile is kept
    start_again()
    page.wait_for_selector(f"#login-info:text-is('{SERVER_BACK}')")
    assert page.text_content("#login-error") == ""
    assert page.input_value("#login-username") == "Yoda"
    page.fill("#login-password", "wise@!man")
    page.press("#login-password", "Enter")
    page.wait_for_selector("#chat-view:not([hidden])")
    assert page.errors == []


def test_a_server_killed_and_started_again(browser, cleanup):
    """No shutdown notice at all (kill -9): the page retries, then asks for a new login."""
    start_again, page = logged_in_server_gone(browser, cleanup, lambda server: server.kill())
    page.wait_for_selector("#connection:text-is('Reconnecting…')")
    start_again()
    page.wait_for_selector("#login-info:text-is('The server has restarted. Please log in again.')")
    assert page.text_content("#login-error") == ""
    assert page.errors == []


def test_status_messages_fade(browser, cleanup):
    server = start(cleanup)
    line_client(server, cleanup, "Hans", "falcon*solo")
    page = new_page(browser, cleanup)
    page.clock.install()  # the page's timers run when the test says
    logged_in(page, server.url, "Yoda", "wise@!man")
    create_group(page, "Jedi", ["Hans"])
    created = "Group chat room has been created, room name: Jedi, users in this room: Yoda Hans"
    page.wait_for_selector(f"#status:text-is('{created}')")
    page.clock.run_for(9000)
    assert page.text_content("#status") == created
    page.clock.run_for(2000)
    page.wait_for_selector("#status:empty", state="attached")
    # A newer reply starts its own time.
    page.click("#leave-button")
    page.wait_for_selector("#status:text-is('You have left the group chat Jedi.')")
    page.clock.run_for(5000)
    assert page.text_content("#status") == "You have left the group chat Jedi."
    assert page.errors == []


def test_the_page_is_in_the_connection_metrics(browser, cleanup):
    from tests.test_e2e_ops import scrape

    server = start(cleanup, extra_args=["--metrics-port", "0"])
    for line in server.stdout.lines:
        found = re.search(r"^Metrics on (http://[\d.]+:\d+/metrics)$", line)
        if found:
            break
    else:
        found = server.stdout.expect(re.compile(r"^Metrics on (http://[\d.]+:\d+/metrics)$"))
    url = found.group(1)
    assert scrape(url)["chatproto_connections", (("frontend", "web"),)] == 0
    line_client(server, cleanup, "Hans", "falcon*solo")
    logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    samples = scrape(url)
    assert samples["chatproto_connections", (("frontend", "web"),)] == 1
    assert samples["chatproto_connections", (("frontend", "line"),)] == 1
    assert samples["chatproto_active_users", (("frontend", "web"),)] == 1


def test_emoji_sequences_from_the_page_reach_ii_the_terminal_and_the_log(browser, cleanup):
    """The family emoji keeps its joiners everywhere; a right-to-left override is shown."""
    server, luke = with_ii_luke(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    create_group(page, "Jedi", ["luke", "Hans"])
    luke.command("/j #Jedi")
    luke.expect("has joined #Jedi", "#jedi")
    hans.send("/joingroup Jedi")
    hans.expect("Joined the group chat: Jedi successfully.")
    family = "👨\u200d👩\u200d👧"
    page.fill("#composer-input", f"{family} and \u202eevil")
    page.press("#composer-input", "Enter")
    shown = f"{family} and <U+202E>evil"
    luke.expect(f"<Yoda> {shown}", "#jedi")
    hans.expect(re.compile(r", Jedi, Yoda: " + re.escape(shown) + "$"))
    page.wait_for_selector("#messages li.mine .text")
    assert page.text_content("#messages li.mine .text") == shown
    assert server.read("Jedi_messageLog.txt").endswith(f"; Yoda; {shown}\n")
    assert page.errors == []
