"""Every main page at desktop and phone widths: a screenshot, and axe-core finds nothing serious."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS, ROOT

pytestmark = pytest.mark.e2e

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": (1280, 800), "phone": (360, 740)}


@pytest.fixture
def axe_page(browser, app):
    """A tab whose CSP is bypassed, only so the axe script can be injected into each page."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci): accessibility checks skipped")
    context = browser.new_context(bypass_csp=True)
    yield context.new_page()
    context.close()


def check(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"page-{name}-{label}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways at {width} px"
    page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']})).violations"
    )
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{name}: " + "; ".join(serious)


def test_main_pages_are_accessible_at_desktop_and_phone_widths(axe_page, app):
    page = axe_page
    page.goto(app.base_url + "/accounts/login/")
    check(page, "login")
    page.goto(app.base_url + "/accounts/signup/")
    check(page, "signup")
    page.get_by_label("Username").fill("a11y-user")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/characters/")
    check(page, "gallery")
    page.get_by_role("link", name="Wren of the Hollow").click()
    check(page, "character")
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    box = page.get_by_label("Your message")
    box.fill("Hello, Wren!")
    box.press("Enter")
    expect(page.locator("article.message")).to_have_count(3)
    expect(page.locator("article.message.assistant").last).to_have_attribute("data-status", "complete")
    check(page, "chat")
    chat_url = page.url
    page.goto(chat_url + "settings/")
    check(page, "chat-settings")
    page.goto(chat_url + "messages/3/prompt/")
    check(page, "prompt-inspector")
    page.goto(chat_url)
    page.locator("#memory-panel summary").click()
    expect(page.locator("#memory-panel").get_by_label("Write a fact")).to_be_visible()
    check(page, "chat-memory-panel")
    page.goto(chat_url + "memory/")
    check(page, "chat-memory")
    for name, path in (
        ("chat-list", "/chats/"),
        ("personas", "/personas/"),
        ("presets", "/presets/"),
        ("settings", "/accounts/settings/"),
        ("models", "/accounts/models/"),
        ("trash", "/chats/trash/"),
    ):
        page.goto(app.base_url + path)
        check(page, name)


def test_the_lorebook_page_with_skipped_regex_keys_is_accessible(axe_page, app, tmp_path):
    page = axe_page
    page.goto(app.base_url + "/accounts/signup/")
    page.get_by_label("Username").fill("lore-keeper")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/characters/")
    entries = [
        {"id": i, "name": f"Entry {i}", "keys": [key], "content": "Lore.", "use_regex": True, "enabled": True}
        for i, key in enumerate(["/fores?t/i", r"(a)\1", "(?<!dark )wood", "[oak"])
    ]
    book = tmp_path / "Woods.json"
    book.write_text(json.dumps({"spec": "lorebook_v3", "data": {"name": "Woods", "entries": entries}}))
    page.goto(app.base_url + "/characters/lorebooks/")
    page.get_by_label(re.compile("Import SillyTavern World Info")).set_input_files(str(book))
    page.get_by_role("button", name="Import", exact=True).click()
    notes = page.get_by_role("list", name="Regex keys of Woods that replies skip").get_by_role("listitem")
    expect(notes).to_have_count(3)
    expect(notes.first).to_contain_text("backreferences are not supported")
    check(page, "lorebooks")
    # The book's editor, with its entries open.
    page.get_by_role("link", name="Woods").click()
    page.locator(".lore-entries summary").first.click()
    page.locator("#new-entry summary").click()
    check(page, "lorebook-editor")


def test_the_chat_page_is_usable_from_the_keyboard(page, app, signed_up):
    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # Every control has an accessible name.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, a, input, select, textarea, summary')]
              .filter(el => !el.hidden && el.type !== 'hidden' && !(el.getAttribute('aria-label') || el.textContent.trim() || (el.labels && el.labels.length) || el.title))
              .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    box = page.get_by_label("Your message")
    box.focus()
    box.type("Line one")
    box.press("Shift+Enter")
    box.type("Line two")
    assert box.input_value() == "Line one\nLine two"
    box.press("Enter")
    expect(page.locator("article.message.user").last).to_contain_text("Line two")


def test_the_character_editor_and_history_are_accessible(axe_page, app):
    page = axe_page
    page.goto(app.base_url + "/accounts/signup/")
    page.get_by_label("Username").fill("card-writer")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/characters/")
    page.get_by_role("link", name="Write a character").click()
    page.get_by_role("button", name="Add a greeting").click()
    check(page, "character-new")
    page.get_by_label("Name", exact=True).fill("Iris")
    page.get_by_label("Description").fill("A botanist.")
    page.get_by_role("button", name="Create the character").click()
    page.get_by_label("Description").fill("A botanist who talks to ferns.")
    page.get_by_role("button", name="Save").click()
    check(page, "character-editor")
    page.get_by_role("link", name="History").click()
    check(page, "character-history")
    page.get_by_role("link", name="What changed").click()
    check(page, "character-revision")
