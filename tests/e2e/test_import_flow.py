"""A SillyTavern user brings cards and a chat over through the pages, and takes them back out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import cardkit

pytestmark = pytest.mark.e2e


def test_import_cards_and_a_chat_then_download_them(page, app, signed_up, tmp_path, shot):
    good = tmp_path / "Ada.png"
    good.write_bytes(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Ada Lovecraft"))}))
    bad = tmp_path / "holiday.png"
    bad.write_bytes(cardkit.image_png())

    page.get_by_role("link", name="Import cards").click()
    page.get_by_label("Card files").set_input_files([str(good), str(bad)])
    page.get_by_role("button", name="Import").click()
    results = page.locator("#import-results li")
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_have_attribute("data-status", "imported")
    expect(results.nth(1)).to_have_attribute("data-status", "failed")
    expect(results.nth(1)).to_contain_text("the PNG holds no character card")
    shot("card-import")

    results.nth(0).get_by_role("link", name="Ada.png").click()
    expect(page.get_by_role("heading", name="Ada Lovecraft")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON", exact=True).click()
    card = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert card["data"]["extensions"]["vendor/x"] == {"y": [1, "z"]}

    chat = tmp_path / "Ada - 2024-10-18@20h52m17s.jsonl"
    chat.write_bytes(cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()]))
    page.get_by_label(re.compile("Chat file")).set_input_files(str(chat))
    page.get_by_role("button", name="Import chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    expect(page.locator(".flash")).to_contain_text("Imported 5 messages")
    expect(page.locator("article.message")).to_have_count(5)
    expect(page.locator("article.message").nth(2).locator(".swipe-pos")).to_have_text("2/3")

    with page.expect_download() as download:
        page.get_by_role("link", name="SillyTavern (.jsonl)").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").split("\n")
    assert json.loads(lines[0])["chat_metadata"]["integrity"] == "4f9c1c9e-1111-2222-3333-444455556666"
    assert [json.loads(line)["mes"] for line in lines[1:]] == [m["mes"] for m in cardkit.st_messages()]
