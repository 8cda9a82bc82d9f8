"""
The page's search end to end: a real server (its SQLite index), headless
Chromium through Playwright, and a line-protocol client writing the messages.
"""

import re

from tests.test_e2e_web import (  # noqa: F401
    XSS, browser, cleanup, line_client, logged_in, new_page, screenshot_path, start)

MESSAGE_SENT = re.compile(r"^message sent at ")


def test_search_box_highlights_and_opens_the_conversation_at_the_message(browser, cleanup):  # noqa: F811
    server = start(cleanup)
    hans = line_client(server, cleanup, "Hans", "falcon*solo")
    page = logged_in(new_page(browser, cleanup), server.url, "Yoda", "wise@!man")
    page.wait_for_selector("#people-list button[data-name=Hans] .dot.on")
    hans.command("/msgto Yoda The Café HYPERDRIVE is broken", MESSAGE_SENT)
    hans.command(f"/msgto Yoda {XSS} hyperlink", MESSAGE_SENT)
    for i in range(120):  # more than a page of history after it: opening it loads older ones
        hans.command(f"/msgto Yoda filler {i}", MESSAGE_SENT)

    page.fill("#search-input", "cafe hyper")
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-summary:text-is('1 message with “cafe hyper”, newest first.')")
    assert page.locator("#search-results mark").all_text_contents() == ["Café", "HYPERDRIVE"]
    assert page.text_content("#search-results .text") == "The Café HYPERDRIVE is broken"

    page.fill("#search-input", "hyp")
    page.click("#search-button")
    page.wait_for_selector("#search-summary:text-is('2 messages with “hyp”, newest first.')")
    assert page.locator("#search-results .text").all_text_contents() == [
        f"{XSS} hyperlink", "The Café HYPERDRIVE is broken"]
    assert page.locator("#search-results img").count() == 0  # text, never HTML
    assert page.locator("#search-results mark").all_text_contents() == ["hyperlink", "HYPERDRIVE"]
    page.screenshot(path=screenshot_path("web-search.png"))

    page.fill("#search-input", "nothing-like-this")
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-summary:text-is('No messages found.')")
    page.fill("#search-input", "hyperdrive")
    page.press("#search-input", "Enter")
    page.wait_for_selector("#search-results button.result")
    page.click("#search-results button.result")

    # The conversation opens at that message, the first of 122: older history was loaded for it.
    found = page.wait_for_selector("#messages li.found[data-seq='1']")
    assert page.text_content("#conversation-title") == "Hans"
    assert page.locator("#messages li[data-seq]").count() == 122
    assert found.is_visible()
    box, view = found.bounding_box(), page.locator("#scroller").bounding_box()
    assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]
    assert page.evaluate("document.activeElement.dataset.seq") == "1"
    assert page.errors == [] and page.dialogs == []
