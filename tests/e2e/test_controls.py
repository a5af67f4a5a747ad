"""The chat controls in the browser: swipes, edit, branch, hide, delete, personas, long chats."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.e2e


def start_chat(page, name="Wren of the Hollow"):
    page.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))


def send(page, text):
    count = page.locator("article.message").count()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("article.message")).to_have_count(count + 2)
    expect(page.locator("article.message.assistant").last).to_have_attribute("data-status", "complete")


def more(page, article, item):
    article.locator("details.more summary").click()
    article.get_by_role("button", name=item).click()


def test_regenerate_swipe_edit_and_hide(page, app, signed_up):
    start_chat(page, "Professor Alder Quince")
    send(page, "Good morning, Professor.")
    reply = page.locator("article.message.assistant").last
    expect(reply).to_contain_text(TINY_REPLY)
    reply.get_by_role("button", name=re.compile("Next alternative")).click()  # past the end: regenerate
    expect(reply.locator(".swipe-pos")).to_have_text("2/2")
    reply = page.locator("article.message.assistant").last
    reply.get_by_role("button", name="Previous alternative").click()
    expect(page.locator("article.message.assistant").last.locator(".swipe-pos")).to_have_text("1/2")

    # Up in the empty box edits your last message in place.
    page.get_by_label("Your message").press("ArrowUp")
    editor = page.get_by_label(re.compile("Edit message"))
    editor.fill("Good *evening*, Professor.")
    page.get_by_role("button", name="Save").click()
    mine = page.locator("article.message.user").last
    expect(mine.locator(".content em")).to_have_text("evening")  # its Markdown, rendered
    expect(mine.locator("form.edit")).to_have_count(0)
    # The page keeps the version the edit left: a second edit in the same tab is not a conflict.
    more(page, mine, "Edit")
    page.get_by_label(re.compile("Edit message")).fill("Good evening, Professor.")
    page.get_by_role("button", name="Save").click()
    expect(mine.locator(".content")).to_have_text("Good evening, Professor.")
    expect(page.get_by_role("alert").filter(has_text="changed in another tab")).to_have_count(0)

    more(page, mine, "Hide from the model")
    expect(page.locator("article.message.user").last.locator(".badge")).to_have_text("hidden")


def test_an_edit_from_a_stale_tab_shows_a_conflict(page, app, signed_up, context):
    start_chat(page, "Unit K-7")
    other_tab = context.new_page()
    other_tab.goto(page.url)
    greeting = page.locator("article.message").first
    more(page, greeting, "Edit")
    page.get_by_label(re.compile("Edit message")).fill("Edited here first")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("article.message").first).to_contain_text("Edited here first")

    stale = other_tab.locator("article.message").first
    more(other_tab, stale, "Edit")
    other_tab.get_by_label(re.compile("Edit message")).fill("Edited in the stale tab")
    other_tab.get_by_role("button", name="Save").click()
    expect(other_tab.get_by_role("alert").filter(has_text="changed in another tab")).to_be_visible()
    page.reload()
    expect(page.locator("article.message").first).to_contain_text("Edited here first")


def test_branch_continue_delete_and_impersonate(page, app, signed_up):
    start_chat(page, "Captain Mira Vance")
    send(page, "First")
    send(page, "Second")
    first_reply = page.locator("article.message.assistant").nth(1)
    more(page, first_reply, "Branch from here")
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    expect(page.locator(".branch-note")).to_contain_text("Branched from")
    expect(page.locator("article.message")).to_have_count(3)

    page.get_by_role("button", name="Write for me").click()
    expect(page.get_by_label("Your message")).to_have_value(TINY_REPLY)

    page.once("dialog", lambda dialog: dialog.accept())
    more(page, page.locator("article.message").nth(1), "Delete this and all after")
    expect(page.locator("article.message")).to_have_count(1)


def test_switching_persona_changes_who_you_are(page, app, signed_up):
    page.get_by_role("link", name="Personas").click()
    page.get_by_role("link", name="Create a persona").click()
    page.get_by_label("Name").fill("Captain Ada")
    page.get_by_label("Description").fill("A retired pilot.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Captain Ada", exact=True)).to_be_visible()
    page.get_by_role("link", name="Characters").click()
    start_chat(page, "Wren of the Hollow")
    page.get_by_role("link", name="Chat settings").click()
    page.get_by_label(re.compile("Persona")).select_option(label="Captain Ada")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".engine")).to_contain_text("You are Captain Ada")
    send(page, "Hello!")
    expect(page.locator("article.message.user").last.locator(".speaker")).to_have_text("Captain Ada")


def test_older_messages_load_without_the_view_jumping(page, app, signed_up):
    code = (
        app.shell(
            "from django.contrib.auth import get_user_model\n"
            "from characters.models import Character\n"
            "from tests.factories import make_chat\n"
            f"u = get_user_model().objects.get(username='{signed_up}')\n"
            "c = make_chat(user=u, character=Character.objects.get(name='Wren of the Hollow'), messages=180)\n"
            "print(c.code)"
        )
        .strip()
        .splitlines()[-1]
    )
    page.goto(f"{app.base_url}/chats/{code}/")
    messages = page.locator("article.message")
    expect(messages).to_have_count(50)
    expect(messages.last).to_contain_text("Message 180")
    anchor = page.locator("#m131")
    page.wait_for_timeout(400)
    page.mouse.wheel(0, -page.evaluate("document.body.scrollHeight"))  # scroll to the top
    expect(messages).to_have_count(100)
    box = anchor.bounding_box()
    assert box is not None and box["y"] > -100, "the message that was at the top moved out of view"
    for _ in range(3):
        page.mouse.wheel(0, -20000)
        page.wait_for_timeout(300)
    expect(page.locator("#m1")).to_contain_text("Message 1")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    page.get_by_role("button", name="Jump to newest").click()
    expect(page.locator("#m180")).to_be_in_viewport()
