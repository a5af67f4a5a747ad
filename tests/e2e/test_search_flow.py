"""A user searches their chats from the header, opens a result, and lands on that message in the
chat, with older and newer messages loadable around it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_search_opens_the_chat_at_the_found_message(page, app, signed_up, shot):
    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    # A long history, with one message saying something findable in the middle of it.
    app.manage(
        "shell",
        "-c",
        "from chats.models import ChatSession\n"
        "from tests.factories import add_messages\n"
        f"chat = ChatSession.objects.get(user__username='{signed_up}')\n"
        "add_messages(chat, 99, text='Small talk number {seq}.')\n"
        "add_messages(chat, 1, text='Behind the mill lies the <b>copper</b> key.')\n"
        "add_messages(chat, 200, text='More small talk {seq}.')\n",
    )
    search = page.get_by_label("Search your chats and characters")
    search.fill("copper key")
    search.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q=copper\+key"))
    result = page.locator(".search-results li").first
    expect(result.locator("mark")).to_have_count(2)
    expect(result).to_contain_text("<b>copper</b>")  # shown as text, not markup
    shot("search-results")

    result.get_by_role("link").click()
    page.wait_for_url(re.compile(r"\?at=101#m101$"))
    target = page.locator("#m101")
    expect(target).to_have_class(re.compile(r"\btarget\b"))
    expect(target).to_be_in_viewport()
    expect(target).to_contain_text("Behind the mill")
    shot("chat-at-message")

    before = page.locator("article.message").count()
    page.get_by_role("button", name="Load newer messages").click()
    expect(page.locator("article.message")).to_have_count(before + 50)
    page.get_by_role("button", name="Load older messages").click()
    expect(page.locator("article.message")).to_have_count(before + 100)
    page.get_by_role("link", name="Jump to the newest").click()
    expect(page.locator("article.message").last).to_contain_text("More small talk 301.")
