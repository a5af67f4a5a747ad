"""A new user signs up, opens a demo character, chats, and sees the reply stream in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.e2e


def test_sign_up_start_a_chat_and_see_the_streamed_reply(page, app, signed_up, shot):
    expect(page.get_by_role("heading", name="Characters")).to_be_visible()
    expect(page.get_by_text("built-in demo model (SmolLM2-135M)").first).to_be_visible()
    shot("gallery-desktop")

    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    expect(page.locator(".flash")).to_have_count(0)
    greeting = page.locator("article.message").first
    expect(greeting).to_contain_text("Tea first, questions later")
    expect(greeting.locator(".swipe-pos")).to_have_text("1/3")
    greeting.get_by_role("button", name="Next alternative").click()
    expect(page.locator("article.message").first.locator(".swipe-pos")).to_have_text("2/3")

    box = page.get_by_label("Your message")
    box.fill("Hello, Wren!")
    box.press("Enter")
    expect(page.locator("article.message.user").last).to_contain_text("Hello, Wren!")
    reply = page.locator("article.message.assistant").last
    expect(reply).to_contain_text(TINY_REPLY)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(box).to_have_value("")
    shot("chat-desktop")

    # Coming back later: the chat list shows it, and it opens with the reply saved.
    page.get_by_role("link", name="Chats").click()
    page.get_by_role("link", name=re.compile("Wren of the Hollow")).click()
    expect(page.locator("article.message.assistant").last).to_contain_text(TINY_REPLY)


def test_the_chat_page_is_readable_on_a_phone(page, app, signed_up, shot):
    page.set_viewport_size({"width": 360, "height": 740})
    page.get_by_role("link", name="Captain Mira Vance").click()
    page.get_by_role("button", name="Start a chat").click()
    expect(page.get_by_label("Your message")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
    shot("chat-phone")


def test_log_out_and_back_in(page, app, signed_up, login):
    page.get_by_role("button", name=f"Log out {signed_up}").click()
    page.wait_for_url("**/accounts/login/")
    page.goto(app.base_url + "/chats/")
    page.wait_for_url("**/accounts/login/?next=/chats/")
    login(signed_up, "a-long-pass-phrase-7")
    expect(page.get_by_role("button", name=f"Log out {signed_up}")).to_be_visible()
