"""``/v1/alerts`` over real HTTP and ``cadastre alerts`` against a SQLite store: alerts listed,
shown and resolved within the caller's tenant only (another tenant's id is 404, as an unknown
one), the rules in force and a bad rules file refused with the rule and field named, and Slack
subscriptions through the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cadastre.api import create_app
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli import app
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.ports import ApiKeyScope, BusMessage
from cadastre.testing import FakeClock
from cadastre.webhooks.out_events import alert as webhooks_alert

A, B = "acme", "globex"


async def raise_dead_delivery(hub: Hub, tenant: str = A, subscription: str = "sub_1") -> None:
    """What the webhook sender raises, folded by the hub's ``alerts`` consumer."""
    event = webhooks_alert(tenant, subscription, hub.clock.now(), {
        "alert": "webhook_delivery_dead", "severity": "warning", "subscription": subscription,
        "summary": f"delivery dlv_1 to subscription {subscription} failed all 8 attempts",
        "action": f"`cadastre deliveries redeliver dlv_1 --tenant {tenant}`",
    })  # fmt: skip
    consumer = hub.alerts.consumer(hub.bus)
    await consumer.handle([BusMessage(event, f"cadastre.{tenant}.alert.raised", 1)])


@dataclass
class Api:
    hub: Hub
    client: httpx.AsyncClient
    keys: dict[tuple[str, str], str]

    async def call(self, method: str, path: str, *, tenant: str = A, scope: str = "read",
                   **kwargs: Any) -> httpx.Response:  # fmt: skip
        headers = {"Authorization": f"Bearer {self.keys[tenant, scope]}"}
        return await self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(data_dir=tmp_path, gateway_allow_hosts=("127.0.0.0/8",))
    hub = await bootstrap(settings, clock=FakeClock(), configure_logs=False)
    try:
        keys = {}
        for tenant in (A, B):
            await hub.tenants.create(tenant, tenant.title())
            for scope in (ApiKeyScope.READ, ApiKeyScope.WRITE):
                keys[tenant, scope.value] = (await hub.keys.create(tenant, scope)).plaintext
        async with (
            serve_app(create_app(hub)) as running,
            httpx.AsyncClient(base_url=running.url, timeout=30) as client,
        ):
            yield Api(hub, client, keys)
    finally:
        await hub.close()


async def test_alerts_are_listed_shown_and_resolved_within_the_tenant(api: Api) -> None:
    await raise_dead_delivery(api.hub)
    listed = await api.call("GET", "/v1/alerts")
    assert listed.status_code == 200, listed.text
    (shown,) = listed.json()
    assert (shown["rule"], shown["key"], shown["state"], shown["owner"]) == (
        "webhook_delivery_dead", "sub_1", "firing", "platform-oncall")  # fmt: skip
    assert shown["action"] == "`cadastre deliveries redeliver dlv_1 --tenant acme`"
    id = shown["id"]
    assert (await api.call("GET", "/v1/alerts", tenant=B)).json() == []
    assert (await api.call("GET", f"/v1/alerts/{id}")).json() == shown
    for tenant in (B,):  # another tenant's id is as unknown as a made-up one
        assert (await api.call("GET", f"/v1/alerts/{id}", tenant=tenant)).status_code == 404
        gone = await api.call("POST", f"/v1/alerts/{id}/resolve", tenant=tenant, scope="write")
        assert gone.status_code == 404
    assert (await api.call("GET", "/v1/alerts/al_nope")).status_code == 404
    refused = await api.call("POST", f"/v1/alerts/{id}/resolve")  # a read key
    assert refused.status_code == 403
    done = await api.call("POST", f"/v1/alerts/{id}/resolve", scope="write")
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved"
    again = await api.call("POST", f"/v1/alerts/{id}/resolve", scope="write")
    assert again.json() == done.json()
    assert (await api.call("GET", "/v1/alerts")).json() == []
    resolved = (await api.call("GET", "/v1/alerts", params={"state": "resolved"})).json()
    assert [a["id"] for a in resolved] == [id]
    assert (await api.call("GET", "/v1/alerts", params={"state": "closed"})).status_code == 422
    async with api.hub.store.unit_of_work(A, read_only=True) as uow:
        entries = [(e.actor, e.action) async for e in uow.audit.entries()]
    assert entries[-1][1] == "alert.resolved"
    assert entries[-1][0].startswith("api:")


async def test_a_slack_subscription_through_the_api(api: Api) -> None:
    body = {"url": "http://127.0.0.1:9/hooks", "event_types": ["cadastre.listing.*"],
            "format": "slack"}  # fmt: skip
    refused = await api.call("POST", "/v1/subscriptions", scope="write", json=body)
    assert refused.status_code == 422
    assert "a slack subscription takes alert events only" in refused.json()["detail"]
    body["event_types"] = ["cadastre.alert.*"]
    created = await api.call("POST", "/v1/subscriptions", scope="write", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["format"] == "slack"
    listed = (await api.call("GET", "/v1/subscriptions")).json()
    assert [s["format"] for s in listed] == ["slack"]
    bad = await api.call("POST", "/v1/subscriptions", scope="write", json={**body, "format": "x"})
    assert bad.status_code == 422


# ---------------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CADASTRE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CADASTRE_ALERT_RULES", raising=False)
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", "127.0.0.0/8")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{result.output}"
        return result.output

    return invoke


async def _seed(tmp_path: Path) -> None:
    hub = await bootstrap(Settings(data_dir=tmp_path / "var"), configure_logs=False)
    try:
        await raise_dead_delivery(hub)
        await raise_dead_delivery(hub, subscription="sub_2")
    finally:
        await hub.close()


def test_cadastre_alerts(cli, tmp_path: Path) -> None:
    cli("tenants", "create", A)
    cli("tenants", "create", B)
    asyncio.run(_seed(tmp_path))
    table = cli("alerts", "list", "--tenant", A)
    assert "webhook_delivery_dead" in table
    assert "sub_1" in table
    assert "sub_2" in table
    found = json.loads(cli("alerts", "list", "-t", A, "--json"))
    assert [a["key"] for a in found] == ["sub_2", "sub_1"]
    id = found[1]["id"]
    shown = cli("alerts", "show", id, "-t", A)
    assert "cadastre deliveries redeliver dlv_1 --tenant acme" in shown
    assert json.loads(cli("alerts", "show", id, "-t", A, "--json")) == found[1]
    assert "does not exist" in cli("alerts", "show", id, "-t", B, code=2)
    assert "does not exist" in cli("alerts", "resolve", id, "-t", B, code=2)
    assert f"resolved {id}" in cli("alerts", "resolve", id, "-t", A, "--by", "ada")
    assert [a["key"] for a in json.loads(cli("alerts", "list", "-t", A, "--json"))] == ["sub_2"]
    resolved = json.loads(cli("alerts", "list", "-t", A, "--state", "resolved", "--json"))
    assert [(a["id"], a["state"]) for a in resolved] == [(id, "resolved")]
    assert "no alerts" in cli("alerts", "list", "-t", B, "--state", "all")
    assert "--state 'closed' is not one of" in cli("alerts", "list", "-t", A, "-s", "closed",
                                                   code=2)  # fmt: skip


def test_cadastre_alerts_rules(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = cli("alerts", "rules")
    assert "rules.yaml (packaged default)" in shown
    assert "vendor_error_rate" in shown
    rules = json.loads(cli("alerts", "rules", "--json"))["rules"]
    assert {"vendor_behaviour_change", "schema_drift", "credential_reauth"} <= {
        r["name"] for r in rules}  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  detector: error_rate\n  severity: loud\n  owner: me\n"
                   "  summary: s\n  runbook: '{nope}'\n")  # fmt: skip
    out = cli("alerts", "rules", "--check", str(bad), code=2)
    assert "rule 'x' (line 1): severity: Input should be" in out
    assert "runbook: unknown placeholder(s) {nope}" in out
    good = tmp_path / "good.yaml"
    good.write_text("- {name: dead, detector: event, severity: info, owner: me}\n")
    assert "valid" in cli("alerts", "rules", "--check", str(good))
    # CADASTRE_ALERT_RULES replaces the default: for the listing and for the hub itself
    monkeypatch.setenv("CADASTRE_ALERT_RULES", str(good))
    assert json.loads(cli("alerts", "rules", "--json"))["source"] == str(good)
    monkeypatch.setenv("CADASTRE_ALERT_RULES", str(bad))
    assert "unknown placeholder" in cli("tenants", "list", code=2)  # the hub refuses to start


def test_cadastre_subscriptions_add_format_slack(cli) -> None:
    cli("tenants", "create", A)
    url = "http://127.0.0.1:9/slack"
    refused = cli("subscriptions", "add", "-t", A, "--url", url, "-e", "cadastre.listing.*",
                  "--format", "slack", code=2)  # fmt: skip
    assert "a slack subscription takes alert events only" in refused
    teams = cli("subscriptions", "add", "-t", A, "--url", url, "-e", "cadastre.alert.*",
                "--format", "teams", code=2)  # fmt: skip
    assert "'teams' is not one of" in teams
    created = json.loads(cli("subscriptions", "add", "-t", A, "--url", url, "-e",
                             "cadastre.alert.*", "--format", "slack", "--json"))  # fmt: skip
    assert created["format"] == "slack"
    listed = json.loads(cli("subscriptions", "list", "-t", A, "--json"))
    assert [(s["id"], s["format"]) for s in listed] == [(created["id"], "slack")]
