"""``/v1/subscriptions`` and ``/v1/deliveries`` over real HTTP (uvicorn on loopback): the secret
is answered once, never listed; read keys cannot write; refused URLs and unknown types are RFC 9457
problems; and tenant B's keys with tenant A's ids answer 404 everywhere, changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cadastre.api import create_app
from cadastre.cli.serve import serve_app
from cadastre.ports import ApiKeyScope, DeliveryStatus, PayloadClass
from cadastre.simulators.subscriber import Reply
from tests.integration.webhooks_out.conftest import A, B, World, settle

TYPES = ["cadastre.listing.*"]


@dataclass
class Api:
    world: World
    client: httpx.AsyncClient
    keys: dict[tuple[str, str], str]  # (tenant, scope) -> key

    def auth(self, tenant: str = A, scope: str = "write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant, scope]}"}

    async def call(self, method: str, path: str, tenant: str = A, scope: str = "write",
                   **kwargs: Any) -> httpx.Response:  # fmt: skip
        return await self.client.request(method, path, headers=self.auth(tenant, scope), **kwargs)


@pytest.fixture
async def api(embedded: World) -> AsyncIterator[Api]:
    keys = {}
    for tenant in (A, B):
        for scope in (ApiKeyScope.READ, ApiKeyScope.WRITE):
            keys[tenant, scope.value] = (await embedded.hub.keys.create(tenant, scope)).plaintext
        for payload in (PayloadClass.IDX, PayloadClass.VOW):
            issued = await embedded.hub.keys.create(tenant, ApiKeyScope.WRITE,
                                                    payload_class=payload)  # fmt: skip
            keys[tenant, f"write-{payload.value}"] = issued.plaintext
    async with (
        serve_app(create_app(embedded.hub)) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        yield Api(embedded, client, keys)


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    return body


async def test_the_secret_is_shown_once_and_read_keys_cannot_write(api: Api) -> None:
    body = {"url": api.world.url, "event_types": TYPES, "description": "crm"}
    problem(await api.call("POST", "/v1/subscriptions", scope="read", json=body), 403)
    created = await api.call("POST", "/v1/subscriptions", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    sub = created.json()
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    assert created.headers["location"] == f"/v1/subscriptions/{sub['id']}"
    assert (sub["status"], sub["event_types"], sub["description"]) == ("active", TYPES, "crm")

    listed = await api.call("GET", "/v1/subscriptions", scope="read")
    one = await api.call("GET", f"/v1/subscriptions/{sub['id']}", scope="read")
    assert [s["id"] for s in listed.json()] == [sub["id"]]
    assert one.json() == {k: v for k, v in sub.items() if k != "secret"}
    for response in (listed, one):
        assert secret not in response.text
        assert secret.removeprefix("whsec_") not in response.text

    rotated = await api.call("POST", f"/v1/subscriptions/{sub['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    assert rotated.json()["secret"] not in (secret, "")
    assert rotated.json()["secret"] not in (await api.call("GET", "/v1/subscriptions")).text

    assert (await api.call("DELETE", f"/v1/subscriptions/{sub['id']}")).status_code == 204
    problem(await api.call("GET", f"/v1/subscriptions/{sub['id']}"), 404)
    assert await api.world.hub.vault.all(A) == []  # its secret went with it


async def test_an_idx_or_vow_key_cannot_subscribe(api: Api) -> None:
    # deliveries carry every field: such a key would read what its class withholds
    body = {"url": api.world.url, "event_types": TYPES}
    for scope in ("write-idx", "write-vow"):
        answer = problem(await api.call("POST", "/v1/subscriptions", scope=scope, json=body), 403)
        assert "payload class" in str(answer["detail"])
    assert (await api.call("GET", "/v1/subscriptions")).json() == []
    assert (await api.call("POST", "/v1/subscriptions", json=body)).status_code == 201  # full: yes


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "https://169.254.169.254/", "event_types": TYPES}, "cloud metadata"),
        ({"url": "file:///etc/passwd", "event_types": TYPES}, "scheme 'file'"),
        ({"url": "https://[::ffff:10.0.0.1]/x", "event_types": TYPES}, "IPv4-mapped private"),
        ({"url": "https://example.com/", "event_types": ["cadastre.nothing.v1"]}, "unknown"),
        ({"url": "https://example.com/", "event_types": []}, "event_types"),
        ({"url": "https://example.com/", "event_types": TYPES, "secret": "mine"}, "secret"),
    ],
)
async def test_refused_subscriptions_are_problems(
    api: Api, body: dict[str, object], says: str
) -> None:
    answer = problem(await api.call("POST", "/v1/subscriptions", json=body), 422)
    assert says in str(answer)
    assert await api.world.hub.webhooks.subscriptions.all(A) == []


async def test_deliveries_attempts_and_redelivery(api: Api) -> None:
    world = api.world
    body = {"url": world.url, "event_types": TYPES}
    sub = (await api.call("POST", "/v1/subscriptions", json=body)).json()
    world.sim.secrets.append(sub["secret"])
    world.sim.default = Reply(500)
    await world.sender()
    event = world.event()
    await world.publish(event)
    while (due := await world.next_due()) is not None:
        await world.step(due)

    page = (await api.call("GET", f"/v1/subscriptions/{sub['id']}/deliveries",
                           scope="read", params={"status": "dead"})).json()  # fmt: skip
    [dead] = page["data"]
    assert page["next_cursor"] is None
    assert (dead["status"], dead["attempts"], dead["event_id"]) == ("dead", 8, event.id)
    detail = (await api.call("GET", f"/v1/deliveries/{dead['id']}", scope="read")).json()
    assert [(a["number"], a["status"]) for a in detail["history"]] == [(n, 500) for n in
                                                                        range(1, 9)]  # fmt: skip

    world.sim.default = Reply(204)
    problem(await api.call("POST", f"/v1/deliveries/{dead['id']}/redeliver", scope="read"), 403)
    again = await api.call("POST", f"/v1/deliveries/{dead['id']}/redeliver")
    assert again.status_code == 202
    assert (again.json()["status"], again.json()["redeliveries"]) == ("pending", 1)
    await settle(lambda: _status(world, dead["id"], DeliveryStatus.DELIVERED))
    assert len(world.sim.accepted(event.id)) == 1
    # once it is delivered, a new request is a new redelivery; while pending it is refused
    world.sim.default = Reply(204, hang=60)
    assert (await api.call("POST", f"/v1/deliveries/{dead['id']}/redeliver")).status_code == 202
    refused = problem(await api.call("POST", f"/v1/deliveries/{dead['id']}/redeliver"), 409)
    assert "already on its way" in str(refused["detail"])
    await settle(lambda: _held(world))  # the subscriber has it, and answers in 60 s
    world.clock.advance(60)
    await settle(lambda: _status(world, dead["id"], DeliveryStatus.DELIVERED))

    paged = await api.call("GET", f"/v1/subscriptions/{sub['id']}/deliveries",
                           scope="read", params={"limit": 1})  # fmt: skip
    assert paged.json()["next_cursor"] is None  # one delivery in all


async def _held(world: World) -> bool:
    return world.sim.stats.in_flight == 1


async def _status(world: World, id: str, status: DeliveryStatus) -> bool:
    return (await world.delivery(id)).status is status


async def test_another_tenants_ids_answer_404_everywhere(api: Api) -> None:
    world = api.world
    body = {"url": world.url, "event_types": TYPES}
    sub = (await api.call("POST", "/v1/subscriptions", json=body)).json()
    world.sim.secrets.append(sub["secret"])
    await world.sender()
    event = world.event()
    await world.publish(event)
    await settle(lambda: _delivered_count(world, 1))
    [delivery] = await world.deliveries()
    calls = [
        ("GET", f"/v1/subscriptions/{sub['id']}"),
        ("DELETE", f"/v1/subscriptions/{sub['id']}"),
        ("POST", f"/v1/subscriptions/{sub['id']}/rotate-secret"),
        ("POST", f"/v1/subscriptions/{sub['id']}/enable"),
        ("GET", f"/v1/subscriptions/{sub['id']}/deliveries"),
        ("GET", f"/v1/deliveries/{delivery.id}"),
        ("POST", f"/v1/deliveries/{delivery.id}/redeliver"),
    ]
    for method, path in calls:
        answer = problem(await api.call(method, path, tenant=B), 404)
        assert sub["url"] not in str(answer)  # nothing of A's subscription in B's answer
    assert (await api.call("GET", "/v1/subscriptions", tenant=B)).json() == []
    # A's subscription, secret and delivery are as they were
    assert [s.id for s in await world.hub.webhooks.subscriptions.all(A)] == [sub["id"]]
    assert (await world.delivery(delivery.id)).redeliveries == 0
    reads = await world.hub.vault.reads(A, f"subscription-{sub['id']}")
    assert {r.purpose for r in reads} == {"sign"}


async def _delivered_count(world: World, count: int) -> bool:
    return len(await world.deliveries(status=DeliveryStatus.DELIVERED)) == count
