"""A user writes a lorebook in the pages, gives it to their character, and sees it reach the prompt."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import cardkit

pytestmark = pytest.mark.e2e


def import_character(page, tmp_path, name: str) -> None:
    card = tmp_path / f"{name}.png"
    card.write_bytes(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card(name, book=False))}))
    page.get_by_role("link", name="Import cards").click()
    page.get_by_label("Card files").set_input_files([str(card)])
    page.get_by_role("button", name="Import").click()
    page.locator("#import-results li").first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


@pytest.mark.parametrize("width", [1280, 360])
def test_write_a_lorebook_attach_it_and_see_its_entry_fire(page, app, signed_up, tmp_path, shot, width):
    page.set_viewport_size({"width": width, "height": 900})
    name = f"Keeper {width}"
    import_character(page, tmp_path, name)
    character_url = page.url

    # A new book, and its first entry with two keys typed as tags.
    page.goto(app.base_url + "/characters/lorebooks/")
    page.get_by_role("link", name="Write a new lorebook").click()
    page.get_by_label("Name").fill(f"Coast {width}")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".flash")).to_contain_text("created")
    new_entry = page.locator("#new-entry")
    new_entry.get_by_label("Title").fill("The lighthouse")
    # The keys box turns into tags once the editor's script has run; typing before that would go
    # into the plain field the script then replaces.
    expect(new_entry.locator(".tag-input")).to_have_count(2)  # keys and secondary keys
    keys = new_entry.get_by_label("Keys", exact=True)
    keys.fill("lighthouse")
    keys.press("Enter")
    keys.fill("beacon")
    keys.press("Enter")
    expect(new_entry.locator(".tag-chip")).to_have_count(2)
    new_entry.get_by_label("Content").fill("The lighthouse keeper is called Bram Okonkwo.")
    if width == 360:
        box = new_entry.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, "the entry form fits a phone's width"
    new_entry.get_by_role("button", name="Add entry").click()
    expect(page.locator(".flash")).to_contain_text("“The lighthouse” saved")
    entry = page.locator(".lore-entries > li").first
    expect(entry).to_contain_text("lighthouse")
    expect(entry).to_contain_text("beacon")
    shot(f"lorebook-editor-{width}")

    # An invalid regex key is refused next to the field, with the text kept.
    entry.locator("summary").click()
    entry.get_by_label("Keys are regular expressions").check()
    entry.get_by_label("Keys", exact=True).fill("/(a)\\1/")
    entry.get_by_label("Keys", exact=True).press("Enter")
    entry.get_by_role("button", name="Save entry").click()
    expect(page.locator("[role=alert]").first).to_contain_text("cannot be used")
    page.goto(page.url.split("?")[0].split("entries/")[0])

    # Attached to the character as World Info.
    page.goto(character_url)
    page.get_by_role("link", name="World Info and lorebook").click()
    page.get_by_label(re.compile(f"Coast {width}")).check()
    page.get_by_role("button", name="Save World Info").click()
    expect(page.locator(".flash")).to_contain_text("saved")

    # A chat that mentions a key: the entry is in the prompt, and the inspector says it fired.
    page.goto(character_url)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    box = page.get_by_label("Your message")
    box.fill("Who keeps the beacon lit?")
    box.press("Enter")
    expect(page.locator("article.message.user")).to_have_count(1)
    expect(page.locator("article.message.assistant")).to_have_count(2)  # the greeting and the reply
    reply = page.locator("article.message.assistant").last
    expect(reply).to_have_attribute("data-status", "complete")
    reply_seq = reply.get_attribute("id").lstrip("m")
    page.goto(page.url + f"messages/{reply_seq}/prompt/")
    expect(page.get_by_text("The lighthouse keeper is called Bram Okonkwo.").first).to_be_visible()
    expect(
        page.locator("dt", has_text="Lore activated").locator("xpath=following-sibling::dd[1]")
    ).to_contain_text("The lighthouse")
    # The lore table says why it fired.
    expect(page.locator("table.lore-decisions tr", has_text="The lighthouse")).to_contain_text(
        "key matched: beacon"
    )


def test_an_entry_opened_before_the_editor_script_ran_still_opens_in_place(page, app, signed_up):
    page.goto(app.base_url + "/characters/lorebooks/")
    page.get_by_role("link", name="Write a new lorebook").click()
    page.get_by_label("Name").fill("Slow line")
    page.get_by_role("button", name="Create").click()
    new_entry = page.locator("#new-entry")
    expect(new_entry.locator(".tag-input")).to_have_count(2)
    new_entry.get_by_label("Title").fill("The harbour")
    new_entry.get_by_label("Keys", exact=True).fill("harbour")
    new_entry.get_by_label("Content").fill("Boats come in at dawn.")
    new_entry.get_by_role("button", name="Add entry").click()
    expect(page.locator(".flash")).to_contain_text("saved")

    # On a slow line the page is shown before its script runs: here the script waits for the test.
    def held(route):
        script = route.fetch().text()
        route.fulfill(body="window.runEditor = function () {" + script + "};", content_type="text/javascript")

    page.route(re.compile(r"/lorebook-editor[^/]*\.js$"), held)
    page.reload()
    entry = page.locator(".lore-entries > li").first
    entry.locator("summary").click()
    expect(entry.get_by_role("link", name="Edit this entry")).to_be_visible()
    page.wait_for_function("() => typeof window.runEditor === 'function'")  # fetched, held back
    page.evaluate("window.runEditor()")
    expect(entry.get_by_label("Keys are regular expressions")).to_be_visible()
    expect(entry.get_by_label("Content")).to_have_value("Boats come in at dawn.")
