"""Replies stream token by token, stop when asked, and survive a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def start_chat(page, name="Wren of the Hollow"):
    page.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))


def send(page, text):
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def test_the_reply_appears_token_by_token_and_stop_keeps_it(page, app, slow_engine, signed_up):
    start_chat(page)
    expect(page.locator(".engine")).to_contain_text("Slow loopback")
    send(page, "Tell me a long story")
    reply = page.locator("article.message.assistant").last
    expect(reply).to_contain_text("word2")
    partial = reply.locator(".content").inner_text()
    assert "word59" not in partial  # seen while still streaming
    expect(reply).to_contain_text("word6")  # and it grew
    expect(reply.get_by_role("status")).to_contain_text("is writing")
    # Screen readers are told to wait while the reply streams, so they read it once, when it is done.
    log = page.get_by_role("log", name="Messages")
    expect(log).to_have_attribute("aria-busy", "true")
    page.get_by_label("Your message").press("Escape")  # Escape stops, like the Stop button
    expect(reply).to_have_attribute("data-status", "complete")
    expect(log).not_to_have_attribute("aria-busy", "true")
    stopped = reply.locator(".content").inner_text()
    assert "word59" not in stopped and "word6" in stopped
    page.reload()
    expect(page.locator("article.message.assistant").last.locator(".content")).to_have_text(stopped.strip())


def test_reloading_during_a_reply_reattaches_and_it_completes(page, app, slow_engine, signed_up):
    start_chat(page, "Captain Mira Vance")
    send(page, "Go on")
    expect(page.locator("article.message.assistant").last).to_contain_text("word3")
    page.reload()
    reply = page.locator("article.message.assistant").last
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(reply).to_contain_text("word59")
    assert reply.locator(".content").inner_text().count("word") == 60


def test_an_admin_change_of_engine_shows_in_the_chat(page, app, slow_engine, signed_up):
    start_chat(page, "Unit K-7")
    expect(page.locator(".engine")).to_contain_text(re.compile("Slow loopback"))
    expect(page.locator(".banner")).to_have_count(0)  # no demo-model banner with a real engine
