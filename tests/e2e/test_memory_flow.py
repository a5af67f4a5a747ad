"""Long-term memory in the browser: pin a message in one click, open the memory panel, write a
fact, and find both on the memory page and in the prompt inspector."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_pin_a_message_write_a_fact_and_see_them_in_the_prompt(page, app, signed_up):
    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    chat_url = page.url
    greeting = page.locator("article.message.assistant").first
    greeting.locator("details.more summary").click()
    greeting.get_by_role("button", name="Pin as a fact").click()
    page.wait_for_url(re.compile(r"\?at=1#m1$"))  # back at the message, which is now a fact
    page.goto(chat_url)

    panel = page.locator("#memory-panel")
    panel.locator("summary").click()
    expect(panel.locator(".memory-facts li")).to_have_count(1)  # fetched when opened
    panel.get_by_label("Write a fact").fill("Olivia's sister is called Maren Vask.")
    panel.get_by_role("button", name="Pin", exact=True).click()
    page.locator("#memory-panel summary").click()
    expect(page.locator("#memory-panel .memory-facts li")).to_have_count(2)
    expect(page.locator("#memory-panel")).to_contain_text("Maren Vask")

    count = page.locator("article.message").count()
    box = page.get_by_label("Your message")
    box.fill("Hello there.")
    box.press("Enter")
    expect(page.locator("article.message")).to_have_count(count + 2, timeout=30_000)
    reply = page.locator("article.message.assistant").last
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    page.goto(chat_url + "messages/" + reply.get_attribute("data-seq") + "/prompt/")
    inspector = page.locator("#memory-inspector")
    expect(inspector).to_contain_text("Pinned fact")
    expect(inspector.locator("tbody tr")).to_have_count(2)
    expect(page.locator(".prompt-message").first).to_contain_text("Maren Vask")

    page.goto(chat_url)
    page.locator("#memory-panel summary").click()
    page.locator("#memory-panel").get_by_role("link", name=re.compile("Manage memory")).click()
    expect(page.get_by_role("heading", name=re.compile("What .* remembers"))).to_be_visible()
    expect(page.locator("#facts textarea").nth(1)).to_have_value("Olivia's sister is called Maren Vask.")
