"""The rough edges a new user hit, at desktop (1280 px) and phone (360 px) widths: message menus,
Retry on a failed reply, the group's title and composer, the demo-model notice, the phone menu,
the theme, gallery portraits, the character page, a chat background and the favicon."""

from __future__ import annotations

import io
import os
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS, admin_set_engine
from tests.e2e.test_pages import AXE, check

pytestmark = pytest.mark.e2e

PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


def start_chat(page, name="Wren of the Hollow"):
    page.get_by_role("link", name=name).first.click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))


def send(page, text):
    count = page.locator("article.message").count()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("article.message")).to_have_count(count + 2)
    expect(page.locator("article.message.assistant").last).to_have_attribute("data-status", "complete")


def open_menus(page) -> int:
    return page.locator("details.more[open]").count()


def inside(page, locator, width: int) -> dict:
    """The locator's box once it settles, asserted inside the window."""
    box = None
    for _ in range(20):
        box = locator.bounding_box()
        if box and box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] >= 0:
            return box
        page.wait_for_timeout(50)
    raise AssertionError(f"outside the {width} px window: {box}")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_message_menus_close_by_themselves_and_open_inside_the_window(page, app, signed_up, viewport):
    page.set_viewport_size(viewport)
    start_chat(page)
    send(page, "Hello, Wren.")
    send(page, "Tell me about the inn.")
    for article in (page.locator("article.message").first, page.locator("article.message.user").first):
        article.scroll_into_view_if_needed()
        article.locator("details.more summary").click()
        menu = article.locator(".menu")
        expect(menu).to_be_visible()
        inside(page, menu, viewport["width"])
        page.keyboard.press("Escape")
        assert open_menus(page) == 0
        expect(article.locator("details.more summary")).to_be_focused()

    greeting = page.locator("article.message").first
    greeting.locator("details.more summary").click()
    page.locator("h1").click()  # anywhere else
    assert open_menus(page) == 0

    # Opening one menu closes the other; sending closes any.
    greeting.locator("details.more summary").click()
    page.locator("article.message.user").first.locator("details.more summary").click()
    assert open_menus(page) == 1
    count = page.locator("article.message").count()
    page.get_by_label("Your message").fill("One more.")
    page.get_by_label("Your message").press("Enter")
    assert open_menus(page) == 0
    expect(page.locator("article.message")).to_have_count(count + 2)
    expect(page.locator("article.message.assistant").last).to_have_attribute("data-status", "complete")

    # After its action, a link's too: back from the prompt inspector, no menu is open (and the
    # chat is the one left, not the copy the browser first loaded).
    shown = page.locator("article.message").count()
    reply = page.locator("article.message.assistant").last
    reply.locator("details.more summary").click()
    reply.get_by_role("link", name="Show the prompt").click()
    page.wait_for_url("**/prompt/")
    page.go_back()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    expect(page.locator("article.message")).to_have_count(shown)
    assert open_menus(page) == 0

    mine = page.locator("article.message.user").first
    mine.locator("details.more summary").click()
    mine.get_by_role("button", name="Hide from the model").click()
    expect(page.locator("article.message.user").first.locator(".badge")).to_have_text("hidden")
    assert open_menus(page) == 0


def test_a_failed_empty_reply_offers_retry_not_continue(page, browser, app, signed_up):
    start_chat(page, "Unit K-7")
    # An engine nobody listens on: the reply fails at once, with no text.
    admin_set_engine(browser, app, base_url="http://127.0.0.1:9/v1", name="Nobody home")
    try:
        box = page.get_by_label("Your message")
        box.fill("Dinner?")
        box.press("Enter")
        reply = page.locator("article.message.assistant").last
        expect(reply).to_have_attribute("data-status", "error", timeout=20_000)
        expect(reply.get_by_role("button", name="Retry")).to_be_visible()
        expect(reply.get_by_role("button", name="Continue")).to_have_count(0)
    finally:
        admin_set_engine(browser, app, base_url=None, name="Nobody home")
    reply.get_by_role("button", name="Retry").click()
    expect(page.locator("article.message.assistant").last).to_have_attribute("data-status", "complete")
    expect(
        page.locator("article.message.assistant").last.get_by_role("button", name="Continue")
    ).to_be_visible()


def test_a_group_chat_names_the_group_and_its_composer_is_compact_on_a_phone(page, app, signed_up):
    start_chat(page, "Captain Mira Vance")
    page.get_by_role("link", name="Chat settings").click()
    page.get_by_label("Add a character").select_option(label="Professor Alder Quince")
    page.get_by_role("button", name="Add to chat").click()
    page.get_by_role("link", name="← Back to the chat").click()
    title = "Chat with Captain Mira Vance and Professor Alder Quince"
    expect(page.locator("h1")).to_have_text(title)
    assert page.title().startswith(title)
    page.set_viewport_size(PHONE)
    composer = page.locator("#composer").bounding_box()
    assert composer["height"] <= 120, f"the group composer takes {composer['height']} px of 740"
    for name in ("Send", "Write for me", "Let them speak"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
    expect(page.get_by_label("Who answers")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1


def test_the_demo_notice_is_dismissed_for_the_account_and_the_chat_still_names_the_model(
    page, browser, app, signed_up
):
    page.set_viewport_size(PHONE)
    notice = page.get_by_role("note").filter(has_text="built-in demo model")
    expect(notice).to_be_visible()
    page.get_by_role("button", name="Dismiss the demo model notice").click()
    page.wait_for_url("**/characters/")
    expect(notice).to_have_count(0)
    start_chat(page)
    expect(page.locator(".engine")).to_contain_text("built-in demo model (SmolLM2-135M)")
    # Another device of the same account.
    context = browser.new_context(viewport=PHONE)
    other = context.new_page()
    other.goto(app.base_url + "/accounts/login/")
    other.get_by_label("Username").fill(signed_up)
    other.get_by_label("Password").fill("a-long-pass-phrase-7")
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url("**/characters/")
    expect(other.get_by_role("note").filter(has_text="built-in demo model")).to_have_count(0)
    context.close()


def test_the_header_folds_into_a_menu_button_on_a_phone(page, app, signed_up):
    page.set_viewport_size(PHONE)
    page.goto(app.base_url + "/characters/")
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] <= 60, f"the header is {header['height']} px tall"
    chats = page.get_by_role("link", name="Chats", exact=True)
    expect(chats).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(chats).to_be_visible()
    expect(page.get_by_label("Search your chats and characters")).to_be_visible()
    box = page.locator("#site-menu").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.keyboard.press("Escape")
    expect(chats).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    chats.click()
    page.wait_for_url("**/chats/")
    page.set_viewport_size(DESKTOP)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.get_by_role("link", name="Characters", exact=True)).to_be_visible()
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] <= 70


def test_the_theme_is_the_accounts_on_every_device_from_the_first_paint(page, browser, app, signed_up):
    page.emulate_media(color_scheme="light")
    page.goto(app.base_url + "/accounts/settings/")
    page.get_by_label("Dark").check()
    page.get_by_role("button", name="Save theme").click()
    expect(page.get_by_text("Theme saved.")).to_be_visible()
    dark = "rgb(22, 23, 26)"
    expect(page.locator("body")).to_have_css("background-color", dark)
    context = browser.new_context(color_scheme="light")
    other = context.new_page()
    # The theme is in the HTML itself: the first paint is dark, before any script runs.
    other.route("**/*.js", lambda route: route.abort())
    other.goto(app.base_url + "/accounts/login/")
    other.get_by_label("Username").fill(signed_up)
    other.get_by_label("Password").fill("a-long-pass-phrase-7")
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url("**/characters/")
    expect(other.locator("body")).to_have_css("background-color", dark)
    context.close()
    page.get_by_label("Follow the system").check()
    # Saving posts the form and loads the page again: wait for that page, not the old one.
    with page.expect_navigation():
        page.get_by_role("button", name="Save theme").click()
    expect(page.locator("body")).to_have_css("background-color", "rgb(247, 246, 243)")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_gallery_cards_show_portraits_in_the_cards_frame(page, app, signed_up, viewport):
    page.set_viewport_size(viewport)
    page.goto(app.base_url + "/characters/")
    portraits = page.locator(".character-card img.card-portrait")
    expect(portraits.first).to_be_visible()
    assert portraits.count() >= 4
    for i in range(4):
        image = portraits.nth(i)
        expect(image).to_have_attribute("loading", "lazy")
        box = image.bounding_box()
        assert abs(box["height"] / box["width"] - 1.5) < 0.02, box
        assert box["width"] >= 140, box
    rows = {round(portraits.nth(i).bounding_box()["y"]) for i in range(4)}
    assert len(rows) == (2 if viewport is PHONE else 1), "two cards a row on a phone, four on a desktop"
    # Thumbnails are small: the first card's picture in bytes.
    size = page.evaluate(
        "async () => (await (await fetch(document.querySelector('img.card-portrait').src)).arrayBuffer()).byteLength"
    )
    assert size < 60_000


def test_the_character_page_shows_every_field_with_names_filled_in(page, app, signed_up):
    page.get_by_role("link", name="Captain Mira Vance").click()
    for heading in ("Description", "Personality", "Scenario", "Greetings", "Example dialogue"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(page.locator(".prose", has_text="has just signed on")).to_contain_text(
        f"{signed_up} has just signed on"
    )
    expect(page.locator(".prose.example")).to_contain_text(f"{signed_up}: Is the ship safe?")
    assert "{{user}}" not in page.locator(".card-field").all_inner_texts().__str__()


def test_a_chat_background_is_uploaded_and_text_stays_on_solid_bubbles(page, app, signed_up, tmp_path):
    start_chat(page)
    page.get_by_role("link", name="Chat settings").click()
    picture = tmp_path / "forest.png"
    buffer = io.BytesIO()
    Image.new("RGB", (2400, 1600), (20, 120, 60)).save(buffer, format="PNG")
    picture.write_bytes(buffer.getvalue())
    page.get_by_label(re.compile("A picture behind")).set_input_files(str(picture))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Background set.")).to_be_visible()
    expect(page.get_by_role("img", name="This chat's background")).to_be_visible()
    page.get_by_role("link", name="← Back to the chat").click()
    backdrop = page.locator("img.chat-backdrop")
    expect(backdrop).to_be_attached()
    # The picture loads after the page: wait until it has, then read its size.
    page.wait_for_function("document.querySelector('img.chat-backdrop').complete")
    assert page.evaluate("document.querySelector('img.chat-backdrop').naturalWidth") == 1920
    bubble = page.evaluate("getComputedStyle(document.querySelector('.bubble')).backgroundColor")
    assert bubble.startswith("rgb(") and "rgba" not in bubble, bubble


def test_no_page_asks_for_a_missing_favicon(page, app, signed_up):
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(app.base_url + "/characters/")
    page.goto(app.base_url + "/favicon.ico")
    assert page.evaluate("document.contentType") in ("image/vnd.microsoft.icon", "image/x-icon")
    assert missing == []
    icon = page.evaluate(
        "document.querySelector('link[rel=icon]') && document.querySelector('link[rel=icon]').href"
    )
    assert icon is None or icon.endswith("favicon.svg")


def test_gallery_page_past_the_end_links_to_the_last_page(page, app, signed_up):
    page.goto(app.base_url + "/characters/?page=99")
    expect(page.get_by_text("Page 99 does not exist.")).to_be_visible()
    page.get_by_role("link", name=re.compile("Go to the last page")).click()
    expect(page.locator(".character-card").first).to_be_visible()
    page.get_by_role("link", name="Trash").click()
    expect(page.get_by_role("heading", name="Trash", exact=True)).to_be_visible()


SHOTS = os.getenv("RPCHAT_SHOTS_DIR")


@pytest.mark.skipif(not SHOTS, reason="set RPCHAT_SHOTS_DIR to keep screenshots of the main pages")
def test_screenshots_of_the_main_pages(page, app, signed_up):
    """Not an assertion: the pictures a person looks at before calling the pages finished."""
    from pathlib import Path

    folder = Path(SHOTS or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)

    def both(name):
        for label, size in (("1280", DESKTOP), ("360", PHONE)):
            page.set_viewport_size(size)
            page.wait_for_timeout(150)
            page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=label == "1280")
            page.screenshot(path=str(folder / f"{name}-{label}-full.png"), full_page=True)
        page.set_viewport_size(DESKTOP)

    page.goto(app.base_url + "/characters/")
    both("gallery")
    page.get_by_role("link", name="Captain Mira Vance").click()
    both("character")
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    send(page, "Hello, Captain.")
    both("chat-solo")
    page.locator("article.message").first.locator("details.more summary").click()
    page.set_viewport_size(PHONE)
    page.locator("article.message").first.scroll_into_view_if_needed()
    page.screenshot(path=str(folder / "chat-menu-360.png"))
    page.keyboard.press("Escape")
    page.set_viewport_size(DESKTOP)
    page.get_by_role("link", name="Chat settings").click()
    page.get_by_label("Add a character").select_option(label="Wren of the Hollow")
    page.get_by_role("button", name="Add to chat").click()
    page.get_by_role("link", name="← Back to the chat").click()
    send(page, "Wren, are you there?")
    both("chat-group")
    page.get_by_role("link", name="Chat settings").click()
    both("chat-settings")
    group_settings = page.url
    page.goto(app.base_url + "/accounts/settings/")
    both("settings")
    # A background, in the dark theme: is the text still readable?
    page.goto(group_settings)
    picture = folder / "backdrop-source.png"
    Image.radial_gradient("L").resize((1600, 1000)).convert("RGB").save(picture)
    page.get_by_label(re.compile("A picture behind")).set_input_files(str(picture))
    page.get_by_role("button", name="Upload").click()
    page.goto(app.base_url + "/accounts/settings/")
    page.get_by_label("Dark").check()
    page.get_by_role("button", name="Save theme").click()
    page.goto(group_settings.rsplit("settings/", 1)[0])
    both("chat-group-dark-background")
    page.goto(app.base_url + "/characters/")
    both("gallery-dark")
    page.goto(app.base_url + "/accounts/settings/")
    page.get_by_label("Light").check()
    page.get_by_role("button", name="Save theme").click()
    page.goto(group_settings.rsplit("settings/", 1)[0])
    both("chat-group-light-background")
    page.goto(app.base_url + "/chats/trash/")
    both("trash")
    page.goto(app.base_url + "/chats/")
    both("chat-list")
    page.set_viewport_size(PHONE)
    page.goto(app.base_url + "/characters/")
    page.get_by_role("button", name="Menu").click()
    page.screenshot(path=str(folder / "menu-open-360.png"))


@pytest.fixture
def axe_tab(browser, app):
    """A tab whose CSP is bypassed, only so the axe script can be injected (as test_pages does)."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci): accessibility checks skipped")
    context = browser.new_context(bypass_csp=True)
    yield context.new_page()
    context.close()


def test_the_main_pages_pass_the_accessibility_checks_in_the_dark_theme(axe_tab, app):
    page = axe_tab
    page.goto(app.base_url + "/accounts/signup/")
    page.get_by_label("Username").fill("a11y-dark")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/characters/")
    page.goto(app.base_url + "/accounts/settings/")
    page.get_by_label("Dark").check()
    page.get_by_role("button", name="Save theme").click()
    check(page, "settings-dark")
    page.goto(app.base_url + "/characters/")
    check(page, "gallery-dark")
    page.get_by_role("link", name="Captain Mira Vance").click()
    check(page, "character-dark")
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    check(page, "chat-dark")


def test_the_composer_of_a_solo_chat_is_compact_on_a_phone(page, app, signed_up):
    start_chat(page)
    page.set_viewport_size(PHONE)
    composer = page.locator("#composer").bounding_box()
    assert composer["height"] <= 110, f"the composer takes {composer['height']} px of 740"
    for name in ("Send", "Write for me"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box["x"] + box["width"] <= PHONE["width"], name
    send(page, "Short and sweet.")
