"""`manage.py bench --browser`: a chat opened, and the character list shown, in Chromium until they
are on screen.

What a user waits for, beside SillyTavern on the same data. The server's time alone leaves out
what each app asks of the browser: rpchat sends the newest page of messages as HTML, SillyTavern
sends the whole chat file as JSON and builds its messages in the browser.

- rpchat: the chat's page loaded in a tab (`goto`, until `DOMContentLoaded`, so its stylesheet and
  deferred scripts included), then two animation frames: the frame that shows the messages.
- SillyTavern: its page loaded once with the data set's character selected; then, timed, the chat
  chosen and read again as its own "reload chat" does (`reloadCurrentChat`: `/api/chats/get`, the
  whole file, and the newest 100 messages built), then the same two frames. It is the cheapest way
  its interface opens a chat: picking one from its chat list also saves the character each time.
- The character list: rpchat's gallery loaded the same way, and redrawn in place as its Filter
  button does (`gallery.js`: the results fetched and swapped, in a tab left on the gallery),
  against SillyTavern's `getCharacters` (every card read, the first page of its list drawn).
- An empty page (`/healthz`) loaded in rpchat's tab in the same rounds: what any navigation costs,
  which SillyTavern's redraws in place do not pay.

Both are timed by the same clock here (Python's, around the same Playwright calls), in the same
Chromium (Debian's, `RPCHAT_CHROMIUM`), one tab each, interleaved like the other side-by-side rows.
"""

from __future__ import annotations

import os
import time

from django.core.management import CommandError

CHROMIUM = os.getenv("RPCHAT_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A tab in the background is not slowed: both are timed while the other waits.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# How many of a chat's newest messages SillyTavern's interface draws (its "chat_truncation" default).
ST_SHOWN = 100
# Resolves after the next frame is drawn: the first animation frame runs before the paint, the
# second after it.
PAINTED = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
ST_OPEN = """async ([avatar, file]) => {
    const context = SillyTavern.getContext();
    const character = context.characters[context.characterId];
    if (!character || character.avatar !== avatar) { throw new Error("the character is not selected"); }
    character.chat = file;
    await context.reloadCurrentChat();
    await (PAINTED)();
    return document.querySelectorAll("#chat .mes").length;
}""".replace("PAINTED", PAINTED)
# Its character list read and drawn again, as its interface does at start and after an import:
# `/api/characters/all` (every card) and the first page of the list (50 cards by default).
ST_LIST = """async () => {
    const script = await import("/script.js");  // the interface's own module, already loaded
    await script.getCharacters();
    await (PAINTED)();
    return document.querySelectorAll("#rm_print_characters_block .character_select").length;
}""".replace("PAINTED", PAINTED)
ST_LIST_SHOWN = 50
# rpchat's gallery redrawn in place, as its Filter button does (static/js/gallery.js): the results
# read again (`X-Partial`) and swapped in, until drawn.
RPCHAT_REDRAW = """async () => {
    const results = document.getElementById("gallery-results");
    const form = document.querySelector("form[data-live-search]");
    if (!results || !form) { throw new Error("not on the gallery"); }
    const updated = new Promise(done => results.addEventListener("gallery:updated", done, {once: true}));
    form.requestSubmit();
    await updated;
    await (PAINTED)();
    return results.querySelectorAll(".character-card").length;
}""".replace("PAINTED", PAINTED)
ST_SELECT = """async (avatar) => {
    const context = SillyTavern.getContext();
    const id = context.characters.findIndex(c => c.avatar === avatar);
    if (id < 0) { return false; }
    await context.selectCharacterById(String(id));
    return true;
}"""


def check() -> None:
    """Refuse at once (CommandError) when Playwright or Chromium is missing."""
    try:
        import playwright.async_api  # noqa: F401  (a production install has no Playwright)
    except ImportError as exc:
        raise CommandError("--browser needs Playwright (make install-dev).") from exc
    if not os.path.exists(CHROMIUM):
        raise CommandError(f"--browser needs Chromium at {CHROMIUM} (apt-get install chromium).")


class Browser:
    """Debian's Chromium under Playwright's async API, in the benchmark's own event loop."""

    def __init__(self):
        self.playwright = None
        self.browser = None

    async def start(self) -> None:
        check()
        from playwright.async_api import async_playwright

        self.playwright = await async_playwright().start()
        self.browser = await self.playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)

    async def rpchat_tab(self, base_url: str, username: str, password: str):
        """A tab logged in through rpchat's login page."""
        page = await self.browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(base_url + "/accounts/login/")
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url("**/characters/")
        return page

    async def sillytavern_tab(self, url: str, avatar: str):
        """A tab on SillyTavern's interface with the character of `avatar` selected."""
        page = await self.browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(url)
        try:
            await page.wait_for_function(
                "() => window.SillyTavern && SillyTavern.getContext().characters.length > 0",
                timeout=60_000,
            )
            if not await page.evaluate(ST_SELECT, avatar):
                raise CommandError(f"SillyTavern at {url} has no character with the avatar {avatar}.")
            await page.wait_for_function(
                "(avatar) => { const c = SillyTavern.getContext(); "
                "return c.characters[c.characterId]?.avatar === avatar && "
                "document.querySelectorAll('#chat .mes').length > 0; }",
                arg=avatar,
                timeout=60_000,
            )
        except CommandError:
            raise
        except Exception as exc:  # Playwright's timeouts and script errors, said plainly
            raise CommandError(
                f"SillyTavern's interface at {url} did not open its character's chat ({exc}). Its data "
                'folder needs a settings.json with "firstRun": false (docs/performance.md).'
            ) from exc
        return page

    async def close(self) -> None:
        if self.browser:
            await self.browser.close()
        if self.playwright:
            await self.playwright.stop()


def rpchat_open(page, url: str, *, expected: int, selector: str = "article.message"):
    """A step: an rpchat page loaded until what it lists (`selector`) is drawn -> (ms, 0)."""

    async def step() -> tuple[float, int]:
        started = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded")
        await page.evaluate(PAINTED)
        elapsed = (time.perf_counter() - started) * 1000
        shown = await page.locator(selector).count()
        if shown < expected:
            raise CommandError(f"rpchat's {url} showed {shown} {selector} in the browser, not {expected}.")
        return elapsed, 0

    return step


def rpchat_redraw_list(page, *, expected: int):
    """A step: rpchat's gallery, open in `page`, redraws its results in place -> (ms, 0)."""
    return _in_page_step(page, RPCHAT_REDRAW, None, expected=expected, what="rpchat's gallery")


def sillytavern_open(page, avatar: str, file_name: str, *, expected: int):
    """A step: SillyTavern's interface reads and draws one chat -> (ms, 0)."""
    return _in_page_step(page, ST_OPEN, [avatar, file_name], expected=expected, what=file_name)


def sillytavern_list(page, *, expected: int):
    """A step: SillyTavern's interface reads and draws its character list -> (ms, 0)."""
    return _in_page_step(page, ST_LIST, None, expected=expected, what="SillyTavern's character list")


def _in_page_step(page, script: str, arg, *, expected: int, what: str):
    async def step() -> tuple[float, int]:
        started = time.perf_counter()
        shown = await page.evaluate(script, arg)
        elapsed = (time.perf_counter() - started) * 1000
        if shown < expected:
            raise CommandError(f"The browser showed {shown} items of {what}, not {expected}.")
        return elapsed, 0

    return step
