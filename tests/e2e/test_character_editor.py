"""A writer makes a character from nothing in the pages, chats with it, edits it, sees the edit in
the next prompt, brings an old version back; another user cannot open the editor."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.e2e


def portrait(tmp_path) -> str:
    path = tmp_path / "portrait.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (600, 400), (30, 90, 160)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())
    return str(path)


def write_character(page, app, tmp_path, name: str) -> str:
    """Create a character through the editor: picture, description, two alternate greetings."""
    page.goto(app.base_url + "/characters/")
    page.get_by_role("link", name="Write a character").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Picture").set_input_files(portrait(tmp_path))
    page.get_by_label("Description").fill("A lighthouse keeper who counts ships.")
    expect(page.locator("[data-count-for=description] span")).not_to_have_text("0")
    page.get_by_label("First message").fill("*The lamp turns.* Another ship, {{user}}?")
    page.get_by_role("button", name="Add a greeting").click()
    page.get_by_label("Greeting 1").fill("Fog again. Come in.")
    page.get_by_role("button", name="Add a greeting").click()
    page.get_by_label("Greeting 2").fill("You are late; the tide is not.")
    # Reordered in place: the second greeting moves up.
    page.locator("[data-greeting]").nth(1).get_by_role("button", name="Move up").click()
    expect(page.get_by_label("Greeting 1")).to_have_value("You are late; the tide is not.")
    page.get_by_role("button", name="Create the character").click()
    page.wait_for_url(re.compile(r"/characters/[0-9a-f-]{36}/edit/$"))
    expect(page.locator(".flash")).to_contain_text("is written")
    expect(page.locator("img.editor-portrait")).to_be_visible()
    return page.url.split("/characters/")[1].split("/")[0]


def send(page, text: str) -> None:
    replies = page.locator("article.message.assistant")
    before = replies.count()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    expect(replies).to_have_count(before + 1)
    reply = replies.last
    expect(reply).to_contain_text(TINY_REPLY)
    expect(reply).to_have_attribute("data-status", "complete")


def test_write_a_character_chat_edit_it_and_see_the_edit_in_the_next_prompt(
    page, app, signed_up, tmp_path, shot
):
    code = write_character(page, app, tmp_path, "Keeper Ansel")
    page.get_by_role("link", name="Its page").click()
    expect(page.get_by_role("heading", name="Keeper Ansel")).to_be_visible()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    chat_url = page.url
    greeting = page.locator("article.message").first
    expect(greeting.locator(".swipe-pos")).to_have_text("1/3")
    greeting.get_by_role("button", name="Next alternative").click()
    expect(page.locator("article.message").first).to_contain_text("You are late; the tide is not.")
    send(page, "Hello, keeper.")

    page.goto(f"{app.base_url}/characters/{code}/edit/")
    page.get_by_label("Description").fill("A lighthouse keeper who writes every storm down.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Saved as version 2")
    shot("character-editor")

    page.goto(chat_url)
    expect(page.locator("[data-character-changed]")).to_contain_text("version 1, now 2")
    send(page, "Any storms lately?")
    last = page.locator("article.message.assistant").last
    last.locator("details.more summary").click()
    last.get_by_role("link", name="Show the prompt").click()
    expect(page.locator("body")).to_contain_text("writes every storm down")
    expect(page.locator("body")).not_to_contain_text("counts ships")

    # Version 1 comes back in one click, as version 3.
    page.goto(f"{app.base_url}/characters/{code}/history/")
    page.get_by_role("button", name="Restore version 1").click()
    expect(page.locator(".flash")).to_contain_text("Version 1 is back, saved as version 3")
    shot("character-history")
    page.goto(f"{app.base_url}/characters/{code}/edit/")
    expect(page.get_by_label("Description")).to_have_value("A lighthouse keeper who counts ships.")


def test_another_user_gets_404_on_the_editor(page, app, signed_up, tmp_path, browser):
    code = write_character(page, app, tmp_path, "Private Ansel")
    context = browser.new_context()
    intruder = context.new_page()
    intruder.goto(app.base_url + "/accounts/signup/")
    intruder.get_by_label("Username").fill(f"intruder_{code[:8]}")
    intruder.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    intruder.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    intruder.get_by_role("button", name="Sign up").click()
    intruder.wait_for_url("**/characters/")
    for path in ("edit/", "history/"):
        response = intruder.goto(f"{app.base_url}/characters/{code}/{path}")
        assert response.status == 404
    context.close()


def test_the_editor_works_at_phone_width(page, app, signed_up, tmp_path, shot):
    page.set_viewport_size({"width": 360, "height": 740})
    code = write_character(page, app, tmp_path, "Small Screen Ansel")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the editor scrolls sideways at 360 px ({width} px wide)"
    shot("character-editor-phone")
    page.get_by_label("Scenario").fill("A storm at night.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Saved as version 2")
    page.goto(f"{app.base_url}/characters/{code}/history/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("link", name="What changed").first.click()
    expect(page.locator(".diff ins")).to_have_text("A storm at night.")


def test_two_tabs_the_second_save_is_refused_with_the_text_kept(page, app, signed_up, tmp_path, context):
    code = write_character(page, app, tmp_path, "Two-Tab Ansel")
    other = context.new_page()
    other.goto(f"{app.base_url}/characters/{code}/edit/")
    other.get_by_label("Scenario").fill("Written in the other tab.")
    other.get_by_role("button", name="Save").click()
    expect(other.locator(".flash")).to_contain_text("Saved as version 2")

    page.get_by_label("Description").fill("Written in the first tab.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#stale")).to_contain_text("this character changed since you opened the editor")
    expect(page.locator("#stale")).to_contain_text("Scenario")
    expect(page.get_by_label("Description")).to_have_value("Written in the first tab.")
    page.get_by_role("button", name="Overwrite with my version").click()
    expect(page.locator(".flash")).to_contain_text("Saved as version 3")
    expect(page.get_by_label("Description")).to_have_value("Written in the first tab.")


def test_text_typed_before_the_editor_script_ran_is_counted(page, app, signed_up):
    # On a slow line the form is shown before its script runs: here the script waits for the test.
    def held(route):
        script = route.fetch().text()
        route.fulfill(body="window.runEditor = function () {" + script + "};", content_type="text/javascript")

    page.route(re.compile(r"/character-editor[^/]*\.js$"), held)
    page.goto(app.base_url + "/characters/")
    page.get_by_role("link", name="Write a character").click()
    page.get_by_label("Description").fill("A lighthouse keeper who counts ships.")
    count = page.locator("[data-count-for=description] span")
    expect(count).to_have_text("0")
    page.wait_for_function("() => typeof window.runEditor === 'function'")  # fetched, held back
    page.evaluate("window.runEditor()")
    expect(count).not_to_have_text("0")
