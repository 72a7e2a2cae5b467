"""The dashboard in a real browser: Debian's chromium driven by Playwright (pointed at the
system browser with `executable_path`; Playwright's own browser download is not used),
against a served app on the session's Redis.

One support engineer's session, start to end: a wrong key and then the right one, counts
changing as jobs run, a failed job (its payload and error carrying markup, shown as text),
retried from its page and watched until it completes, both bulk actions, the channel
paused (a new job waits) and resumed (it runs), the processes
page, and the overview at a phone's width. A screenshot of each page is taken; with
CHANNELKIT_UPDATE_SCREENSHOTS=1 they are written to docs/images/ (what docs/dashboard.md
shows), otherwise to the test's temporary folder.

Without chromium (or the playwright package) the test skips saying so; with
CHANNELKIT_REQUIRE_BROWSER=1 (set by `.ci/run`, which installs chromium) it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.ui.conftest import API_KEY, CHANNEL, ServeDashboard

REQUIRED = os.environ.get("CHANNELKIT_REQUIRE_BROWSER", "") not in ("", "0")
DOCS_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"
XSS = '<script>alert("payload")</script><img src=x onerror=alert(1)>'
WAIT_MS = 20_000


def _chromium() -> str | None:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"CHANNELKIT_REQUIRE_BROWSER is set and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("CHANNELKIT_UPDATE_SCREENSHOTS", "") not in ("", "0"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = _chromium()
    if executable is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.mark.slow
async def test_a_support_session_in_the_browser(
    serve_dashboard: ServeDashboard, browser: Any, shots: Path
) -> None:
    from playwright.async_api import expect

    app = await serve_dashboard({})
    context = await browser.new_context(
        viewport={"width": 1280, "height": 860}, timezone_id="Europe/Paris"
    )
    page = await context.new_page()
    dialogs: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()  # the bulk actions' confirmations

    page.on("dialog", on_dialog)
    base = app.server.http_url

    # Log in: a wrong key first.
    await page.goto(f"{base}/ui/")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await page.screenshot(path=str(shots / "dashboard-login.png"))
    await page.get_by_label("API key").fill("not-the-key")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not one of the API keys")
    await page.get_by_label("API key").fill(API_KEY)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Channels")).to_be_visible()

    # Counts change as jobs run (the overview refreshes when the job events say so).
    row = page.locator(f'tr[data-channel="{CHANNEL}"]')
    for n in range(4):
        await app.enqueue({"id": f"slow-{n}", "seconds": 2.5})
    await expect(row.locator('[data-state="active"]')).to_have_text("4", timeout=WAIT_MS)
    await page.screenshot(path=str(shots / "dashboard-overview.png"))
    await expect(row.locator('[data-state="completed"]')).to_have_text("4", timeout=WAIT_MS)

    # A job fails; its payload and error carry markup.
    await app.break_handlers(True)
    failed = await app.enqueue({"id": "xss", "note": XSS})
    await expect(row.locator('[data-state="failed"]')).to_have_text("1", timeout=WAIT_MS)
    await row.get_by_role("link", name="1").last.click()
    await expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()
    await page.screenshot(path=str(shots / "dashboard-channel.png"), full_page=True)
    await page.get_by_role("link", name=failed).click()
    await expect(page.locator("[data-job-state]")).to_have_text("failed")
    await expect(page.locator(".errors .message")).to_contain_text(XSS)
    await page.get_by_text("Traceback").first.click()
    await expect(page.locator(".errors pre")).to_contain_text("Broken")
    timeline = page.get_by_test_id("timeline")
    await expect(timeline).to_contain_text("waiting")
    await expect(timeline.locator("li").last).to_contain_text("failed")
    await page.screenshot(path=str(shots / "dashboard-job-failed.png"), full_page=True)

    # Retry it from its page and watch it complete; its timeline tells the story.
    await app.break_handlers(False)
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_role("status").first).to_contain_text("waiting to run again")
    await expect(page.locator("[data-job-state]")).to_have_text("completed", timeout=WAIT_MS)
    await expect(timeline.locator("li").last).to_contain_text("completed")
    await expect(timeline).to_contain_text("retried")
    await page.screenshot(path=str(shots / "dashboard-job-completed.png"), full_page=True)

    # Bulk actions on the channel page (each asks first).
    await app.break_handlers(True)
    for n in range(3):
        await app.enqueue({"id": f"bulk-{n}"})
    await page.goto(f"{base}/ui/channels/{CHANNEL}?state=failed")
    await expect(page.locator('.counts [data-state="failed"] .value')).to_have_text(
        "3", timeout=WAIT_MS
    )
    await app.break_handlers(False)
    await page.get_by_role("button", name="Retry all failed").click()
    await expect(page.get_by_role("status").first).to_contain_text(
        "3 failed job(s) sent back to run."
    )
    await app.break_handlers(True)
    for n in range(2):
        await app.enqueue({"id": f"drop-{n}"})
    await page.reload()
    await expect(page.locator('.counts [data-state="failed"] .value')).to_have_text(
        "2", timeout=WAIT_MS
    )
    await page.get_by_role("button", name="Discard all failed").click()
    await expect(page.get_by_role("status").first).to_contain_text("2 failed job(s) removed.")

    # Pause the channel: a new job waits; resume it: the job runs.
    await app.break_handlers(False)
    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("status").first).to_contain_text("The channel is paused")
    held = await app.enqueue({"id": "held"})
    await page.goto(f"{base}/ui/channels/{CHANNEL}?state=waiting")
    await expect(page.get_by_role("heading", name=CHANNEL)).to_contain_text("paused")
    await expect(page.get_by_role("link", name=held)).to_be_visible(timeout=WAIT_MS)
    await page.screenshot(path=str(shots / "dashboard-paused.png"))
    assert (await app.client.job(CHANNEL, held)).state == "waiting"  # type: ignore[union-attr]
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("status").first).to_contain_text("running again")
    await app.wait_state(held, "completed")
    # the three confirmations (two bulk actions, pause), and no alert() from markup
    assert len(dialogs) == 3, dialogs

    # Processes, then the overview on a phone.
    await page.get_by_role("link", name="Processes").click()
    await expect(page.locator("#processes-rows")).to_contain_text(str(app.server.pid))
    await page.screenshot(path=str(shots / "dashboard-processes.png"))
    phone = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    small = await phone.new_page()
    await small.goto(f"{base}/ui/login")
    await small.get_by_label("API key").fill(API_KEY)
    await small.get_by_role("button", name="Log in").click()
    await expect(small.get_by_role("heading", name="Channels")).to_be_visible()
    await small.screenshot(path=str(shots / "dashboard-phone.png"), full_page=True)
    await phone.close()
    await context.close()
    for name in ("login", "overview", "channel", "job-failed", "job-completed", "processes"):
        assert (shots / f"dashboard-{name}.png").stat().st_size > 1000
