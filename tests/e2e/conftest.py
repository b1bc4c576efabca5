"""Browser tests: Debian's Chromium, driven by Playwright.

Playwright's own browser downloads (``playwright install``) do not work everywhere, so the browser
is the distribution's: ``CADASTRE_CHROMIUM`` names it, ``/usr/bin/chromium`` otherwise, and
``scripts/test.sh`` installs Debian's ``chromium`` package when it is missing
(``scripts/services.sh chromium``). A missing browser fails the tests in CI and after
``scripts/test.sh`` (``service_missing``, tests/conftest.py); a bare ``pytest`` elsewhere skips
them and says why.

The browser is launched with ``headless=True`` and exactly ``CHROMIUM_ARGS``. It is not only
those on its command line (``chrome://version`` shows it; ``test_browser.py`` checks ours are
there). Playwright adds its default switches (among them ``--headless`` and ``--no-sandbox``
again, ``--disable-background-networking``, ``--disable-component-update``, ``--no-first-run``,
``--disable-extensions``, ``--disable-sync``, ``--hide-scrollbars``, ``--mute-audio``), a
temporary ``--user-data-dir``, ``--remote-debugging-pipe`` and ``--no-startup-window``; Debian's
``/usr/bin/chromium`` is a shell wrapper that puts the flags of ``/etc/chromium.d`` first
(``--disable-pings``, ``--no-default-browser-check``...) and starts ``/usr/lib/chromium/chromium``.

Every step a test names is a PNG under ``artifacts/screenshots/<test>/NN-<step>.png`` at the
project root, kept after the run whether it passed or failed; a failed test also gets a last
``NN-failure.png`` of the page as it was. A test's folder is emptied when it starts, so it holds
that test's last run only.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
)

from tests.conftest import PROJECT_ROOT, service_missing

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
# Chrome logs a CSP refusal to the console itself; the listener makes sure it is an error line
# (and names the directive) even where the browser would only warn.
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""
BROWSER_LOOP = pytest.mark.asyncio(loop_scope="session")  # pytestmark of a browser test module
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def chromium_path() -> Path:
    return Path(os.environ.get("CADASTRE_CHROMIUM") or "/usr/bin/chromium")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept on the item so a fixture's teardown knows whether the test body failed.
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        service_missing(
            "chromium",
            f"Chromium not found at {path}: install Debian's chromium (scripts/test.sh does) or "
            "set CADASTRE_CHROMIUM to its path",
        )
    return path


# One browser for the session (each test gets a fresh context of it): starting Playwright's driver
# and Chromium costs more than most of a test. Playwright's objects belong to the event loop that
# made them, so the browser tests run in the session's loop: ``BROWSER_LOOP`` marks them.
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_executable: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class BrowserSession:
    """One page of a fresh browser context, with the screenshots and console errors of a test."""

    page: Page
    folder: Path
    problems: list[str] = field(default_factory=list)  # console errors, page errors, CSP
    taken: list[Path] = field(default_factory=list)

    async def shot(self, step: str) -> Path:
        """Save the whole page as the test's next step."""
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        assert name, f"a step needs a name: {step!r}"
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        await self.page.screenshot(path=path, full_page=True)
        self.taken.append(path)
        return path

    def assert_no_problems(self) -> None:
        assert not self.problems, "the browser reported:\n" + "\n".join(self.problems)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource"):
            # Said of every answer >= 400, the page itself and the browser's own favicon.ico
            # included: _response judges loads, knowing what was loaded.
            return
        where = message.location.get("url", "")
        self.problems.append(f"console error: {message.text} ({where})")

    def _response(self, response: Response) -> None:
        # A page's own status is its test's to assert (a 404 may be the point); what the page
        # loads (script, style sheet) must load.
        if response.status >= 400 and response.request.resource_type != "document":
            kind = response.request.resource_type
            self.problems.append(f"{kind} answered {response.status}: {response.url}")

    def _failed(self, request: Request) -> None:
        if request.resource_type != "document":
            self.problems.append(
                f"{request.resource_type} not loaded ({request.failure}): {request.url}"
            )


@pytest_asyncio.fixture(loop_scope="session")
async def web(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[BrowserSession]:
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(_REPORT_CSP)
    session = BrowserSession(await context.new_page(), folder)
    session.page.on("console", session._console)
    session.page.on("response", session._response)
    session.page.on("requestfailed", session._failed)
    session.page.on("pageerror", lambda error: session.problems.append(f"page error: {error}"))
    try:
        yield session
    finally:
        reports = request.node.stash.get(_REPORTS, {})
        if "call" in reports and reports["call"].failed and not session.page.is_closed():
            await session.shot("failure")
        await context.close()
