"""The character gallery's filters redraw the results in place: typing, and the Filter button."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _stay_marker(page) -> None:
    """A value that lives as long as the page: a navigation would drop it."""
    page.evaluate("window.__samePage = true")


def test_the_filter_button_redraws_the_results_without_leaving_the_page(page, app, signed_up):
    cards = page.locator("#gallery-results .character-card")
    expect(cards).to_have_count(4)  # the demo characters
    _stay_marker(page)
    page.get_by_label("Search by name").fill("wren")
    page.get_by_role("button", name="Filter").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Wren of the Hollow")
    assert page.evaluate("window.__samePage === true"), "pressing Filter loaded a new page"
    assert page.url.endswith("/characters/?q=wren&tag=&label=")  # a link to these results, kept

    # Typing redraws too, after a pause; and the address follows it.
    page.get_by_label("Search by name").fill("")
    expect(cards).to_have_count(4)
    assert page.evaluate("window.__samePage === true")
    assert "q=wren" not in page.url


def test_a_filter_press_whose_redraw_fails_loads_the_results_as_a_page(page, app, signed_up):
    """The in-place request refused (a server error): the form is submitted the ordinary way."""
    _stay_marker(page)

    def refuse_partial(route):
        if route.request.headers.get("x-partial"):
            route.fulfill(status=502, body="bad gateway")
        else:
            route.continue_()

    page.route("**/characters/?*", refuse_partial)
    page.get_by_label("Search by name").fill("quince")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/characters/?q=quince*")
    expect(page.locator("#gallery-results .character-card")).to_have_count(1)
    assert page.evaluate("window.__samePage === undefined"), "the page should have been loaded anew"
