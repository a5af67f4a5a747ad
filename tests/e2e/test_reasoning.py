"""A reasoning model's thinking streams into a collapsed box above the reply, and stays there."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import admin_set_engine
from tests.e2e.test_streaming import send, start_chat

pytestmark = pytest.mark.e2e


@pytest.fixture
def thinking_engine(browser, app):
    """A loopback server that streams reasoning_content first (a word every 60 ms), then the reply."""
    from tests.conftest import ScriptedServer

    server = ScriptedServer()
    server.reasoning = [f"ponder{i} " for i in range(30)]
    server.pieces = ["The", " door", " creaks", " open."]
    server.delay = 0.06
    name = f"Thinking loopback {server.httpd.server_address[1]}"
    admin_set_engine(browser, app, base_url=server.url, name=name)
    yield server
    admin_set_engine(browser, app, base_url=None, name=name)
    server.close()


def test_the_reasoning_shows_collapsed_above_the_reply(page, app, thinking_engine, signed_up, shot):
    start_chat(page, "Wren of the Hollow")
    send(page, "Who is there?")
    reply = page.locator("article.message.assistant").last
    box = reply.locator("details.reasoning")
    # While it thinks, the box is there, closed, and says so; its text grows inside.
    expect(box.locator("summary")).to_have_text("Thinking…")
    expect(box.locator(".reasoning-text")).to_contain_text("ponder3", use_inner_text=False)
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    box = reply.locator("details.reasoning")
    expect(box).not_to_have_attribute("open", re.compile(".*"))
    expect(box.locator("summary")).to_contain_text(re.compile(r"Thought for \d+\.\d s"))
    expect(box.locator(".reasoning-text")).not_to_be_visible()  # collapsed
    expect(reply.locator(".content")).to_have_text("The door creaks open.")
    box.locator("summary").click()
    expect(box.locator(".reasoning-text")).to_be_visible()
    expect(box.locator(".reasoning-text")).to_contain_text("ponder0 ponder1")
    expect(box.locator(".reasoning-text")).to_contain_text("ponder29")
    # The box sits above the reply.
    assert box.bounding_box()["y"] < reply.locator(".content").bounding_box()["y"]
    shot("reasoning-open")
    page.reload()
    box = page.locator("article.message.assistant").last.locator("details.reasoning")
    expect(box).to_be_attached()
    expect(box.locator(".reasoning-text")).not_to_be_visible()
