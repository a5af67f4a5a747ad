"""Staff offer two models; a user picks one for one chat and sees it write that chat's replies,
while their other chats keep the site's default."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.e2e


def admin_offer_profiles(browser, app, profiles: list[dict]) -> None:
    """As the admin, in a tab of its own: add connection profiles offered to everyone."""
    context = browser.new_context()
    admin = context.new_page()
    admin.goto(app.base_url + "/admin/login/")
    admin.get_by_label("Username").fill("admin")
    admin.get_by_label("Password").fill(app.admin_password)
    admin.get_by_role("button", name="Log in").click()
    admin.wait_for_url("**/admin/")
    for profile in profiles:
        admin.goto(app.base_url + "/admin/settings_app/connectionprofile/add/")
        admin.locator("#id_name").fill(profile["name"])
        admin.locator("#id_base_url").fill(profile["base_url"])
        admin.locator("#id_model").fill(profile["model"])
        admin.locator("#id_max_tokens").fill(str(profile["max_tokens"]))
        admin.locator("#id_available_to_all").check()
        admin.get_by_role("button", name="Save", exact=True).click()
        admin.wait_for_url("**/connectionprofile/")
    context.close()


def start_chat(page, name="Wren of the Hollow") -> str:
    page.goto(page.url.split("/chats/")[0].split("/characters/")[0] + "/characters/")
    page.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    return page.url


def send(page, text: str):
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    reply = page.locator("article.message.assistant").last
    expect(reply).to_have_attribute("data-status", "complete")
    return reply


def test_a_model_picked_for_one_chat_writes_its_replies(browser, page, app, signed_up, tiny_engine_url, shot):
    suffix = tiny_engine_url.rsplit(":", 1)[1].split("/")[0]
    alpha, beta = f"Alpha {suffix}", f"Beta {suffix}"
    # Two profiles on the tests' llama.cpp server: Beta asks for at most 4 tokens, so its replies
    # are visibly its own (cut short), besides naming their model.
    admin_offer_profiles(
        browser,
        app,
        [
            {"name": alpha, "base_url": tiny_engine_url, "model": "tiny-alpha", "max_tokens": 64},
            {"name": beta, "base_url": tiny_engine_url, "model": "tiny-beta", "max_tokens": 4},
        ],
    )
    chat_url = start_chat(page)
    page.get_by_role("link", name="Chat settings").click()
    page.get_by_label("Model for this chat").select_option(label=f"tiny-beta ({beta})")
    shot("chat-settings-model")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(chat_url)
    expect(page.locator("[data-engine]")).to_have_text(f"tiny-beta ({beta})")

    reply = send(page, "Hello, Wren!")
    expect(reply.locator(".model-line")).to_contain_text(f"tiny-beta ({beta})")
    expect(reply.locator(".model-line")).to_contain_text("up to 4 tokens")
    text = reply.locator(".content").inner_text().strip()
    assert text and TINY_REPLY.startswith(text) and text != TINY_REPLY, text
    expect(reply.locator(".notice")).to_contain_text("length limit")
    shot("model-per-chat")

    # The prompt inspector names it too.
    reply.locator("summary").click()
    reply.get_by_role("link", name="Show the prompt").click()
    expect(page.locator("dl.facts")).to_contain_text(f"tiny-beta ({beta})")
    expect(page.locator("dl.facts")).to_contain_text("from this chat's choice")

    # After a reload the reply still names its model; another chat keeps the site's default.
    page.goto(chat_url)
    expect(page.locator("article.message.assistant").last.locator(".model-line")).to_contain_text("tiny-beta")
    start_chat(page)
    expect(page.locator("[data-engine]")).to_have_text("built-in demo model (SmolLM2-135M)")
    other = send(page, "Hello again")
    expect(other).to_contain_text(TINY_REPLY)
    expect(other.locator(".model-line")).to_contain_text("built-in demo model")

    # The Models page lists what this user may use.
    page.goto(app.base_url + "/accounts/models/")
    expect(page.locator(".profile-list")).to_contain_text(alpha)
    expect(page.locator(".profile-list")).to_contain_text(beta)
    shot("models-page")
