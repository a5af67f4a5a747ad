"""A SillyTavern user brings a chat-completion preset through the Presets page, chooses it for one
chat, and the prompt inspector shows the reply was built with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.e2e

PRESETS = Path(__file__).parent.parent / "settings_app" / "presets"


def test_import_a_preset_and_choose_it_for_a_chat(page, app, signed_up, tmp_path, shot):
    not_a_preset = tmp_path / "notes.json"
    not_a_preset.write_text(json.dumps({"title": "shopping", "items": ["tea"]}))
    page.get_by_role("link", name="Presets").click()
    page.get_by_label("Preset files").set_input_files(
        [str(PRESETS / "OpenAI Settings/Layered.json"), str(not_a_preset)]
    )
    page.get_by_role("button", name="Import").click()
    results = page.locator("#import-results li")
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_have_attribute("data-status", "imported")
    expect(results.nth(0)).to_contain_text("chat-completion preset “Layered”")
    expect(results.nth(1)).to_have_attribute("data-status", "failed")
    expect(results.nth(1)).to_contain_text("not a SillyTavern preset")
    shot("presets-import")

    page.reload()
    row = page.get_by_role("row", name=re.compile("Layered"))
    expect(row).to_contain_text("Chat-completion preset")
    with page.expect_download() as download:
        row.get_by_role("link", name="Download").click()
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported == json.loads((PRESETS / "OpenAI Settings/Layered.json").read_text())

    page.get_by_role("link", name="Characters").click()
    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    chat_url = page.url
    page.get_by_role("link", name="Chat settings").click()
    page.get_by_label("Chat-completion preset (chat completions)").select_option(label="Layered")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(chat_url)

    box = page.get_by_label("Your message")
    box.fill("Hello, Wren!")
    box.press("Enter")
    reply = page.locator("article.message.assistant").last
    expect(reply).to_contain_text(TINY_REPLY)
    expect(reply).to_have_attribute("data-status", "complete")
    page.goto(chat_url + "messages/3/prompt/")
    expect(page.locator("dl.facts")).to_contain_text("chat-completion preset “Layered”")
    expect(page.locator(".prompt-message").first).to_contain_text("Play Wren of the Hollow opposite")
    expect(page.get_by_text("(Keep Wren of the Hollow's voice dry.)")).to_be_visible()
    shot("presets-prompt-inspector")
