"""``cadastre subscriptions`` and ``cadastre deliveries`` against a SQLite store in a temporary
folder: the secret printed once, refusals as exit codes, and the dead-letter queue listed and
redelivered by hand (with an audit entry per delivery)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadastre.bootstrap import bootstrap
from cadastre.cli import app
from cadastre.config import Settings
from cadastre.contract.events import EventEnvelope
from cadastre.ports import BusMessage, DeliveryStatus
from cadastre.testing import FakeClock
from cadastre.webhooks.schedule import RetrySchedule
from tests.redis_server import free_port

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADASTRE_GATEWAY_ALLOW_HOSTS", ",".join(LOOPBACK))
    monkeypatch.setenv("CADASTRE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CADASTRE_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("CADASTRE_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"{args} -> {result.exit_code}\n{result.output}"
        return result.output

    return invoke


def _database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp_path / "var").glob("cadastre.db*"))


def test_subscriptions_and_the_dead_letter_queue(cli, tmp_path: Path) -> None:
    cli("tenants", "create", "acme")
    url = f"http://127.0.0.1:{free_port()}/in"  # nothing listens: every attempt fails
    out = cli("subscriptions", "add", "-t", "acme", "--url", url,
              "-e", "cadastre.listing.*", "-e", "cadastre.alert.raised.v1",
              "--description", "crm", "--json")  # fmt: skip
    created = json.loads(out)
    sub, secret = created["id"], created["secret"]
    assert secret.startswith("whsec_")
    assert secret.encode() not in _database_bytes(tmp_path)  # sealed in the vault
    listed = cli("subscriptions", "list", "-t", "acme", "--json")
    assert [s["id"] for s in json.loads(listed)] == [sub]
    assert secret not in listed
    assert secret not in cli("subscriptions", "list", "-t", "acme")
    assert "loopback" in cli("subscriptions", "add", "-t", "acme", "--url", "https://[::1]/x",
                             "-e", "cadastre.listing.*", code=2)  # fmt: skip
    assert "unknown event type" in cli("subscriptions", "add", "-t", "acme", "--url",
                                       "https://example.com/", "-e", "listing", code=2)  # fmt: skip

    rotated = json.loads(cli("subscriptions", "rotate-secret", "-t", "acme", sub, "--json"))
    assert rotated["secret"] not in (secret, "")
    human = cli("subscriptions", "rotate-secret", "-t", "acme", sub, "--overlap-hours", "1")
    assert re.search(r"whsec_[A-Za-z0-9+/=]+", human)

    dead = asyncio.run(_dead_deliveries(tmp_path, 3))
    listed_dead = json.loads(cli("deliveries", "list", "--status", "dead", "--json"))
    assert sorted(d["id"] for d in listed_dead) == sorted(dead)
    assert all((d["tenant"], d["attempts"], d["last_status"]) == ("acme", 2, None)
               for d in listed_dead)  # fmt: skip
    shown = json.loads(cli("deliveries", "show", dead[0], "--json"))
    assert [(a["number"], a["status"]) for a in shown["history"]] == [(1, None), (2, None)]
    assert "ConnectError" in shown["history"][0]["error"]
    assert dead[0] in cli("deliveries", "list", "-t", "acme", "-s", sub)

    assert "not both" in cli("deliveries", "redeliver", dead[0], "--subscription", sub,
                             "--dead", code=2)  # fmt: skip
    assert "does not exist" in cli("deliveries", "redeliver", "dlv_nope", code=2)
    assert f"{dead[0]} redelivered" in cli("deliveries", "redeliver", dead[0])
    again = cli("deliveries", "redeliver", dead[0], code=1)
    assert "pending: already on its way" in again
    assert "2 dead deliveries" in cli("deliveries", "redeliver", "--subscription", sub, "--dead")
    assert json.loads(cli("deliveries", "list", "--status", "dead", "--json")) == []
    pending = json.loads(cli("deliveries", "list", "--status", "pending", "--json"))
    assert {(d["attempts"], d["redeliveries"]) for d in pending} == {(0, 1)}
    assert asyncio.run(_audited(tmp_path)).count("delivery.redelivered") == 3

    assert f"{sub} is active" in cli("subscriptions", "enable", "-t", "acme", sub)
    assert "3 waiting deliveries cancelled" in cli("subscriptions", "remove", "-t", "acme", sub)
    assert json.loads(cli("subscriptions", "list", "-t", "acme", "--json")) == []
    cli("subscriptions", "remove", "-t", "acme", sub, code=2)


async def _audited(tmp_path: Path) -> list[str]:
    hub = await bootstrap(Settings(data_dir=tmp_path / "var"), configure_logs=False)
    try:
        async with hub.store.unit_of_work("acme", read_only=True) as uow:
            return [e.action async for e in uow.audit.entries()]
    finally:
        await hub.close()


async def _dead_deliveries(tmp_path: Path, count: int) -> list[str]:
    """``count`` events for the tenant's subscription (whose endpoint refuses connections),
    attempted until dead by the hub a server would run on the same store, with a two-step
    schedule to keep it short."""
    clock = FakeClock()
    hub = await bootstrap(
        Settings(data_dir=tmp_path / "var", gateway_allow_hosts=LOOPBACK), clock=clock,
        configure_logs=False,
    )  # fmt: skip
    try:
        events = [
            EventEnvelope(source="/mls/austin", type="cadastre.listing.updated.v1",
                          subject=f"L{i}", time=clock.now(), tenant="acme", data={})
            for i in range(count)
        ]  # fmt: skip
        messages = [BusMessage(e, "cadastre.acme.listing.updated", 1) for e in events]
        await hub.webhooks.dispatcher(hub.bus).handle(messages)
        sender = hub.webhooks.sender(schedule=RetrySchedule((0, 5)), rng=random.Random(1))
        async with sender, asyncio.timeout(30):
            while await hub.webhooks.deliveries.find("acme", status=DeliveryStatus.PENDING):
                while not sender.idle:
                    await asyncio.sleep(0.005)
                clock.advance(3)
                await asyncio.sleep(0.05)
        return [d.id for d in await hub.webhooks.deliveries.find("acme")]
    finally:
        await hub.close()
