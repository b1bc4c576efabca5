"""The browser the console tests drive: Debian's Chromium with the flags the issue names."""

from __future__ import annotations

from tests.e2e.conftest import BROWSER_LOOP, CHROMIUM_ARGS, BrowserSession

pytestmark = BROWSER_LOOP


async def test_chromium_runs_headless_with_the_issue_flags(web: BrowserSession) -> None:
    await web.page.goto("chrome://version")
    text = await web.page.locator("#command_line").inner_text()
    switches = text.split()
    missing = [arg for arg in CHROMIUM_ARGS if arg not in switches]
    assert not missing, f"not on the browser's command line: {missing}\n{text}"
    shot = await web.shot("chrome version")
    assert shot.name == "01-chrome-version.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    web.assert_no_problems()
