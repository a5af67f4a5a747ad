"""Browser tests: the app served by uvicorn on loopback, driven in Debian's Chromium by Playwright.

The server runs in a subprocess with its own SQLite file and the tiny test model as its built-in
engine. Skipped, with the reason printed, when Chromium is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.servers import manage_py, server_env, uvicorn_process

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.getenv("RPCHAT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists():
        return
    if os.getenv("RPCHAT_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"Chromium is required (RPCHAT_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
    reason = f"Chromium not found at {CHROMIUM}: browser tests skipped (apt-get install chromium)"
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.skip(reason=reason))


class App:
    def __init__(self, base_url: str, env: dict, var_dir: Path):
        self.base_url = base_url
        self.env = env
        self.var_dir = var_dir

    def manage(self, *args: str) -> str:
        return manage_py(self.env, *args)

    def shell(self, code: str) -> str:
        """Run Python in the app's environment (its database), e.g. to build a long chat."""
        return self.manage("shell", "-c", code)


@pytest.fixture(scope="session")
def app(tmp_path_factory, tiny_model_path):
    var_dir = tmp_path_factory.mktemp("e2e-var")
    env = server_env(
        RPCHAT_VAR_DIR=str(var_dir),
        RPCHAT_BUILTIN_MODEL=tiny_model_path,
        CACHE_KEY_PREFIX="rpchat-e2e",
        RPCHAT_STREAM_PERSIST_INTERVAL="0.1",
    )
    application = App("", env, var_dir)
    application.manage("migrate", "--no-input", "-v0")
    application.manage("seed_demo")
    admin_out = application.manage("ensure_admin")
    application.admin_password = admin_out.split("password: ")[1].split()[0]
    application.manage("collectstatic", "--no-input", "-v0")
    with uvicorn_process(
        env=env, log_path=var_dir / "server.log", startup_timeout=30, extra_args=()
    ) as server:
        application.base_url = server.base_url
        yield application


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def shot(page):
    """Save a screenshot of the page to test-artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def signed_up(page, app):
    """Sign up a fresh user through the page; returns the username."""
    username = f"user{next(_counter)}_{os.getpid()}"
    page.goto(app.base_url + "/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-7")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-7")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/characters/")
    return username


@pytest.fixture
def login(page, app):
    """Log in through the page as `username`."""

    def go(username: str, password: str) -> None:
        page.goto(app.base_url + "/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/characters/")

    return go


def admin_set_engine(browser, app, *, base_url: str | None, name: str = "Slow loopback") -> None:
    """As the admin, in a browser tab of its own: add a connection profile and make it active
    (or go back to the built-in model when base_url is None), through the admin pages."""
    context = browser.new_context()
    admin = context.new_page()
    admin.goto(app.base_url + "/admin/login/")
    admin.get_by_label("Username").fill("admin")
    admin.get_by_label("Password").fill(app.admin_password)
    admin.get_by_role("button", name="Log in").click()
    admin.wait_for_url("**/admin/")
    if base_url:
        admin.goto(app.base_url + "/admin/settings_app/connectionprofile/add/")
        # Admin labels end in a colon; the fields' ids are stable.
        admin.locator("#id_name").fill(name)
        admin.locator("#id_base_url").fill(base_url)
        admin.locator("#id_model").fill("scripted")
        admin.get_by_role("button", name="Save", exact=True).click()
        admin.wait_for_url("**/connectionprofile/")
    admin.goto(app.base_url + "/admin/settings_app/sitesettings/1/change/")
    admin.locator("#id_active_profile").select_option(label=name if base_url else "---------")
    admin.get_by_role("button", name="Save", exact=True).click()
    admin.wait_for_url("**/admin/settings_app/sitesettings/**")
    context.close()


@pytest.fixture
def slow_engine(browser, app):
    """A loopback OpenAI-compatible server streaming a word every 60 ms, made the active engine by
    the admin through the admin pages."""
    from tests.conftest import ScriptedServer

    server = ScriptedServer()
    server.pieces = [f"word{i} " for i in range(60)]
    server.delay = 0.06
    name = f"Slow loopback {server.httpd.server_address[1]}"
    admin_set_engine(browser, app, base_url=server.url, name=name)
    yield server
    admin_set_engine(browser, app, base_url=None, name=name)
    server.close()


@pytest.fixture(autouse=True)
def slow_line(request):
    """RPCHAT_E2E_LATENCY=<ms>: every request of a test's `page` waits that long (Chromium's own
    network emulation), as on a slow line: the page is shown before its deferred scripts run, so a
    test that types before a script is ready fails here as it would, rarely, in CI. Pages a test
    opens itself (a second tab, the accessibility checks' own) are not slowed."""
    latency = os.getenv("RPCHAT_E2E_LATENCY")
    if latency and "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": int(latency), "downloadThroughput": -1, "uploadThroughput": -1},
        )
