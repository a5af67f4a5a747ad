"""`manage.py bench --browser`'s rpchat side: a tab logged in through the login page opens a chat and
the gallery, and redraws the gallery in place, and counts what they draw; a page drawing fewer than
expected stops the benchmark."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import CommandError

from tools import bench_browser

pytestmark = pytest.mark.e2e


def _in_a_thread(coroutine):
    # Playwright's async API in a loop of its own, apart from the sync API the page fixture runs.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_the_browser_row_opens_a_chat_and_refuses_a_page_showing_too_few_messages(page, app, signed_up):
    page.get_by_role("link", name="Wren of the Hollow").click()
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}/$"))
    chat_url = page.url

    async def run():
        browser = bench_browser.Browser()
        await browser.start()
        try:
            tab = await browser.rpchat_tab(app.base_url, signed_up, "a-long-pass-phrase-7")
            ms, _ = await bench_browser.rpchat_open(tab, chat_url, expected=1)()
            await bench_browser.rpchat_open(
                tab, app.base_url + "/characters/", expected=1, selector=".character-card"
            )()
            with pytest.raises(CommandError, match=r"showed 1 article\.message in the browser, not 2"):
                await bench_browser.rpchat_open(tab, chat_url, expected=2)()
            # The gallery redrawn in place (its Filter button), in a tab left on it.
            gallery = await browser.rpchat_tab(app.base_url, signed_up, "a-long-pass-phrase-7")
            await gallery.evaluate("window.__samePage = true")
            redrawn, _ = await bench_browser.rpchat_redraw_list(gallery, expected=4)()
            assert redrawn > 0 and await gallery.evaluate("window.__samePage === true")
            with pytest.raises(CommandError, match=r"showed 4 items of rpchat's gallery, not 5"):
                await bench_browser.rpchat_redraw_list(gallery, expected=5)()
            return ms
        finally:
            await browser.close()

    assert _in_a_thread(run()) > 0
