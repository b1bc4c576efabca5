"""The operations console in a real browser (issue 9, item 6): headless Chromium against a hub
served on loopback, with everything real behind it.

The hub runs on SQLite in a temporary folder, on a fake clock it shares with two RESO simulators
(one per tenant). Tenant ``acme``'s MLS first answers well for a few minutes - one of its
listings carries a status the mapping file does not know, so it is quarantined - and then fails
every call (its fault profile's ``error_rate`` is 1.0). Syncs are tried every 15 s of fake time;
after each, the hub's sampler stores the observed calls and samples the gauges and the alert
rules are evaluated, as the hub's workers would do, until the packaged ``vendor_error_rate``
rule fires. Only then does the browser come in: it signs in (a wrong password first), finds the
failing connection on the fleet view with its sparklines drawn, reads the alert, opens the
connection page and the quarantine, replays the record once the mapping file knows the status
(the store is checked too), and signs out. A second test signs in as an operator of one tenant
and finds nothing of the other.

Every step is a screenshot (tests/e2e/conftest.py); no page may log a script error or a
Content-Security-Policy refusal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.async_api import Locator, Page, expect

from cadastre.api import create_app
from cadastre.bootstrap import Hub
from cadastre.cli.serve import serve_app
from cadastre.directory import ConnectionSpec
from cadastre.errors import VendorError
from cadastre.ports import Alert, AlertState, Secret
from cadastre.simulators import ResoSimulator, serve
from cadastre.simulators.faults import FaultProfile
from cadastre.testing import FakeClock
from tests.e2e.conftest import BROWSER_LOOP, BrowserSession
from tests.integration.mls_hub import LOOPBACK, RESO_LOGIN, TENANT, fake_clock, open_hub

pytestmark = BROWSER_LOOP

OTHER = "globex"  # the second tenant
FAILING = "austin"  # acme's connection, to the MLS that fails
HEALTHY = "globex-mls"  # globex's connection, to an MLS that answers
MAPPING = "austin-mls"
MAPPING_V1 = "mapping: austin-mls\nversion: 1\nextends: mls/reso\nlocal_prefixes: [ACT_]\n"
UNKNOWN_STATUS = "Kick Out"  # a local status the first mapping file lacks
MAPPING_V2 = MAPPING_V1.replace("version: 1", "version: 2") + (
    f'enums:\n  StandardStatus: {{"{UNKNOWN_STATUS}": ActiveUnderContract}}\n'
)
OPERATOR, TENANT_OPERATOR = "ops", "acme-ops"
PASSWORD = "correct horse battery staple"
RULE = "vendor_error_rate"
BASELINE_MINUTES = 5
STEP = 15.0  # seconds of fake time between failing syncs
MAX_STEPS = 40  # the rule needs 20 calls over 5 min and 2 min firing: well under this
SPARKS = ("calls", "errors", "p95")
# Past its open period the breaker lets a probe through (half-open); either way not closed.
NOT_CLOSED = re.compile(r"^(open|half_open)$")
SESSION_COOKIE = "cadastre_console"


@dataclass
class Fleet:
    hub: Hub
    url: str  # the hub's API, the console under /console
    mapping_file: Path
    quarantined_key: str | None  # the listing acme's failing MLS sent with UNKNOWN_STATUS
    alert: Alert | None  # the vendor_error_rate alert, once it fired


async def _connect(hub: Hub, tenant: str, name: str, url: str) -> None:
    await hub.connections.put(tenant, ConnectionSpec(
        name=name, system="mls", connector="mls/reso", credential="mls-client",
        config={"base_url": f"{url}/odata", "token_url": f"{url}/oauth/token",
                "mapping": MAPPING, "gateway": {"allow_hosts": list(LOOPBACK)}},
    ))  # fmt: skip


@asynccontextmanager
async def open_fleet(tmp_path: Path, clock: FakeClock, *, failing: bool) -> AsyncIterator[Fleet]:
    """Two tenants, a connection each, synced; with ``failing``, for a few minutes, then acme's
    MLS sends a listing the mapping cannot read and fails until the error-rate alert fires.
    The hub's API is served on loopback."""
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(
            open_hub(tmp_path, clock, mappings={MAPPING: MAPPING_V1})
        )
        await hub.tenants.create(OTHER, "Globex")
        await hub.vault.add(OTHER, "mls-client", *RESO_LOGIN)
        await hub.operators.add(OPERATOR, Secret(PASSWORD))
        await hub.operators.add(TENANT_OPERATOR, Secret(PASSWORD), tenant=TENANT)

        acme_mls = ResoSimulator(records=30, seed=3, clock=clock, rate_limit=None)
        globex_mls = ResoSimulator(records=10, seed=5, clock=clock, rate_limit=None)
        acme_url = (await stack.enter_async_context(serve(acme_mls.app))).url
        globex_url = (await stack.enter_async_context(serve(globex_mls.app))).url
        await _connect(hub, TENANT, FAILING, acme_url)
        await _connect(hub, OTHER, HEALTHY, globex_url)
        for _ in range(BASELINE_MINUTES if failing else 1):  # the sparklines' quiet "before"
            assert (await hub.sync(TENANT, FAILING)).tally.quarantined == 0
            assert (await hub.sync(OTHER, HEALTHY)).tally.quarantined == 0
            clock.advance(60)
            await hub.sampler.round()
        odd = alert = None
        if failing:
            # Only now, so that no later sync reads it again: each read is quarantined anew.
            (odd,) = acme_mls.add_enum_value("StandardStatus", UNKNOWN_STATUS, 1)
            last = await hub.sync(TENANT, FAILING)
            assert last.tally.reasons == {"unknown_enum_value": 1}, last.tally
            acme_mls.faults = FaultProfile(error_rate=1.0)
            alert = await _until_the_alert_fires(hub, clock)
        served = await stack.enter_async_context(serve_app(create_app(hub)))
        yield Fleet(hub, served.url, tmp_path / "mappings" / f"{MAPPING}.yaml", odd, alert)


async def _until_the_alert_fires(hub: Hub, clock: FakeClock) -> Alert:
    """What the hub's workers do, stepped by hand: a sync, the sampler's round (the calls
    stored, the gauges sampled), the rules evaluated."""
    for _ in range(MAX_STEPS):
        try:
            report = await hub.sync(TENANT, FAILING)
        except VendorError:  # 5xx until the breaker opens, then the breaker's refusal
            pass
        else:
            raise AssertionError(f"a sync against a failing MLS went through: {report}")
        clock.advance(STEP)
        await hub.sampler.round()
        await hub.alerts.evaluate(TENANT)
        found = await hub.alerts.list(TENANT, rule=RULE)
        if found and found[0].state is AlertState.FIRING:
            return found[0]
    raise AssertionError(f"{RULE} did not fire within {MAX_STEPS * STEP:g} s of failures")


async def _stored_status(hub: Hub, key: str) -> str | None:
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        canonical = await uow.xref.resolve("mls", FAILING, "Listing", key)
        record = canonical and await uow.records.get("Listing", canonical)
    return record.data.get("StandardStatus") if record else None


async def _sign_in(page: Page, username: str, password: str) -> None:
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()


async def _drawn(spark: Locator) -> None:
    """A sparkline the script drew: at least one line, with points."""
    await expect(spark).to_have_attribute("data-drawn", re.compile(r"^[1-9]\d*$"))
    points = await spark.locator("polyline").first.get_attribute("points")
    assert points is not None
    assert len(points.split()) >= 2, points


def _row(page: Page, connection: str) -> Locator:
    return page.locator(f'[data-testid="fleet-row"][data-connection="{connection}"]')


async def test_an_operator_sees_the_failing_vendor_and_replays_its_quarantine(
    tmp_path: Path, web: BrowserSession
) -> None:
    async with open_fleet(tmp_path, fake_clock(), failing=True) as fleet:
        assert fleet.alert is not None
        assert fleet.quarantined_key is not None
        page, console = web.page, f"{fleet.url}/console"

        # signing in, a wrong password first
        await page.goto(f"{console}/")
        await expect(page).to_have_url(re.compile(r"/console/login\?next="))
        await expect(page.get_by_test_id("login-form")).to_be_visible()
        await web.shot("sign in page")
        await _sign_in(page, OPERATOR, "not the password")
        await expect(page.get_by_test_id("login-error")).to_have_text("wrong username or password")
        await expect(page.get_by_test_id("signed-in-as")).to_have_count(0)
        await web.shot("wrong password refused")
        async with page.expect_response(re.compile(r"/console/$")) as landed:
            await _sign_in(page, OPERATOR, PASSWORD)
        await expect(page.get_by_test_id("signed-in-as")).to_have_text(OPERATOR)
        (session,) = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
        assert session["path"] == "/console"
        # the pages are under a CSP that refuses inline script: the sparklines below are drawn
        # by the served script, and a refusal would be in web.problems
        policy = (await landed.value).headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy

        # the fleet: the failing vendor marked, its sparklines drawn
        failing = _row(page, FAILING)
        await expect(failing).to_have_attribute("data-verdict", "failing")
        await expect(failing.get_by_test_id("breaker")).to_have_attribute("data-state", NOT_CLOSED)
        await expect(failing.get_by_test_id("health-reasons")).to_contain_text("critical alert")
        await expect(failing.get_by_test_id("error-rate")).to_contain_text("%")
        for kind in SPARKS:
            await _drawn(failing.get_by_test_id(f"spark-{kind}"))
        await expect(_row(page, HEALTHY)).to_have_attribute("data-verdict", "ok")
        await _drawn(_row(page, HEALTHY).get_by_test_id("spark-calls"))
        # at 1440 px the page is no wider than the window (a wide table scrolls in its box),
        # so the header bar spans it; the footer says the hub's time on one line
        widths = await page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth,"
            " document.querySelector('header.top').getBoundingClientRect().width]"
        )
        assert widths[0] <= widths[1], widths
        assert widths[2] == widths[1], widths
        footer = await page.locator("footer").inner_text()
        assert re.fullmatch(r"Hub clock: just now \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", footer), (
            footer
        )
        # the icon is the hub's own file (a missing one would be a 404 in web.problems)
        icon = await page.locator('link[rel="icon"]').get_attribute("href")
        assert icon == "/console/static/favicon.svg"
        await web.shot("fleet with a failing vendor")

        # the alert: what changed, since when, what to do
        await page.get_by_test_id("nav-alerts").click()
        alert_row = page.locator(f'[data-testid="alert-row"][data-id="{fleet.alert.id}"]')
        await expect(alert_row).to_have_attribute("data-state", "firing")
        await expect(alert_row.get_by_test_id("alert-changed")).to_contain_text("error rate")
        await expect(alert_row.get_by_test_id("alert-action")).to_contain_text(
            f"cadastre connections pause {FAILING} --tenant {TENANT}"
        )
        await web.shot("alerts")
        await alert_row.get_by_test_id("alert-link").click()
        await expect(page.get_by_test_id("alert-changed")).to_have_text(fleet.alert.changed)
        await expect(page.get_by_test_id("alert-action")).to_have_text(fleet.alert.action)
        await expect(page.get_by_test_id("alert-rollback")).to_have_text(
            f"cadastre rollback connection {FAILING} --tenant {TENANT} --to previous"
        )
        await web.shot("alert")

        # the connection page: its breaker, the vendor's errors, the alert
        await page.get_by_role("link", name=FAILING, exact=True).click()
        connection = page.get_by_test_id("connection-page")
        await expect(connection).to_have_attribute("data-connection", FAILING)
        await expect(connection.get_by_test_id("breaker")).to_have_attribute(
            "data-state", NOT_CLOSED
        )
        await expect(page.get_by_test_id("error-row").first).to_be_visible()
        await expect(page.get_by_test_id("errors-table")).to_contain_text("503")
        await expect(
            page.locator(f'[data-testid="alert-row"][data-id="{fleet.alert.id}"]')
        ).to_be_visible()
        for kind in SPARKS:
            await _drawn(connection.get_by_test_id(f"spark-{kind}"))
        await web.shot("connection page")

        # the quarantine: the record the mapping could not read
        await page.get_by_test_id("quarantine-link").click()
        held = page.locator(f'[data-testid="quarantine-row"][data-connection="{FAILING}"]')
        await expect(held).to_have_count(1)
        await expect(held).to_have_attribute("data-code", "unknown_enum_value")
        await expect(held.get_by_test_id("reason")).to_contain_text(UNKNOWN_STATUS)
        await web.shot("quarantine")
        # the store holds the listing as it was before the MLS gave it the unknown status
        before = await _stored_status(fleet.hub, fleet.quarantined_key)
        assert before is not None
        assert before != "ActiveUnderContract"  # else the replay could not be told apart

        # the mapping learns the status; the replay applies the record
        fleet.mapping_file.write_text(MAPPING_V2)
        await held.get_by_test_id("replay-one").click()
        await expect(page.get_by_test_id("replay-resolved")).to_have_text("1")
        await expect(page.get_by_test_id("replay-failing")).to_have_text("0")
        await web.shot("replayed")
        status = await _stored_status(fleet.hub, fleet.quarantined_key)
        assert status == "ActiveUnderContract"
        await page.get_by_test_id("back-to-quarantine").click()
        await expect(page.get_by_test_id("quarantine-empty")).to_be_visible()
        await web.shot("quarantine empty")

        # signing out ends the session, in the hub too (not only the cookie in the browser)
        await page.get_by_test_id("logout").click()
        await expect(page.get_by_test_id("login-form")).to_be_visible()
        await page.goto(f"{console}/")
        await expect(page).to_have_url(re.compile(r"/console/login\?next="))
        await web.shot("signed out")
        async with httpx.AsyncClient(cookies={SESSION_COOKIE: session["value"]}) as client:
            again = await client.get(f"{console}/")
        assert again.status_code == 303
        assert "/console/login" in again.headers["location"]
        web.assert_no_problems()


async def test_a_tenant_operator_sees_only_their_tenant(
    tmp_path: Path, web: BrowserSession
) -> None:
    async with open_fleet(tmp_path, fake_clock(), failing=False) as fleet:
        page, console = web.page, f"{fleet.url}/console"
        await page.goto(f"{console}/login")
        await _sign_in(page, TENANT_OPERATOR, PASSWORD)
        await expect(page.get_by_test_id("signed-in-as")).to_have_text(TENANT_OPERATOR)
        await expect(_row(page, FAILING)).to_have_count(1)
        await expect(page.get_by_test_id("fleet-row")).to_have_count(1)
        await expect(page.get_by_test_id("tenant-select")).to_have_count(0)
        assert HEALTHY not in await page.content()
        assert OTHER not in await page.content()
        await web.shot("fleet of one tenant")

        for path in (f"/t/{OTHER}/connections/{HEALTHY}", f"/?tenant={OTHER}",
                     f"/quarantine?tenant={OTHER}"):  # fmt: skip
            answer = await page.goto(f"{console}{path}")
            assert answer is not None
            assert answer.status == 404, path
            await expect(page.get_by_test_id("error-page")).to_have_attribute("data-status", "404")
            assert HEALTHY not in await page.content()
        await web.shot("other tenant not found")
        # the same page of its own tenant is there: the 404 is about whose it is
        answer = await page.goto(f"{console}/t/{TENANT}/connections/{FAILING}")
        assert answer is not None
        assert answer.status == 200
        await expect(page.get_by_test_id("connection-page")).to_be_visible()
        await web.shot("own connection")
        web.assert_no_problems()
