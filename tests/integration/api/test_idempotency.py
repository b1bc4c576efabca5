"""``Idempotency-Key`` on the API's writes over real HTTP (uvicorn on loopback), on SQLite and on
PostgreSQL: 50 concurrent identical requests make one thing (the others 409 while it runs, then
the stored response), another body with the key is 422, a stored 500 is replayed verbatim,
tenant B with tenant A's key value is a new request, keys are reaped after 24 h (not before),
bad header values are 400 with nothing written. Test-only routes are added to the app after
``create_app``: the middleware covers them with no edit, as it will any later route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import text

from cadastre.api import create_app
from cadastre.api.idempotency import covered
from cadastre.api.subscriptions import Writer
from cadastre.bootstrap import Hub, bootstrap
from cadastre.cli.serve import serve_app
from cadastre.config import Settings
from cadastre.directory.idempotency import IdempotencyReaper
from cadastre.ports import ApiKeyScope
from cadastre.store import SqlAlchemyStore
from cadastre.testing import FakeClock
from tests.integration.vault.conftest import fresh_postgres
from tests.integration.webhooks_out.conftest import master_key

A, B = "acme", "globex"
THING = {"name": "kettle", "size": 2}


class ThingIn(BaseModel):
    name: str
    size: int


@dataclass
class Things:
    """What the test routes did: every call made, every thing created (the side effects)."""

    calls: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fail_next: bool = False

    def __post_init__(self) -> None:
        self.gate.set()


def add_test_routes(app: FastAPI, things: Things) -> None:
    async def create_thing(request: Request, key: Writer, body: ThingIn) -> JSONResponse:
        things.calls += 1
        n = things.calls  # one id per call: two calls are two things, never one overwritten
        if things.fail_next:
            things.fail_next = False
            raise RuntimeError("the handler crashed")  # CatchAll answers a plain 500
        await things.gate.wait()  # slow: held until the test lets it go
        hub: Hub = request.app.state.hub
        async with hub.store.unit_of_work(key.tenant) as uow:
            await uow.records.put("Thing", f"T{n}", {"name": body.name, "n": n}, expected_version=0)
            await uow.commit()
        return JSONResponse(
            {"id": f"T{n}", "name": body.name}, 201, headers={"Location": f"/v1/things/T{n}"}
        )

    app.add_api_route("/v1/things", create_thing, methods=["POST"])


async def count_things(hub: Hub, tenant: str = A) -> int:
    async with hub.store.unit_of_work(tenant, read_only=True) as uow:
        return await uow.records.count("Thing")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path)
        return
    with fresh_postgres() as url:
        yield Settings(
            data_dir=tmp_path, database_url=SecretStr(url), vault_master_key=master_key()
        )


@dataclass
class Api:
    hub: Hub
    clock: FakeClock
    things: Things
    client: httpx.AsyncClient
    keys: dict[tuple[str, str], str]

    async def post(
        self, key: str | None, body: Any = THING, *, tenant: str = A, scope: str = "write",
        path: str = "/v1/things", method: str = "POST", headers: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        sent = {"Authorization": f"Bearer {self.keys[tenant, scope]}", **(headers or {})}
        if key is not None:
            sent["Idempotency-Key"] = key
        return await self.client.request(method, path, json=body, headers=sent)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    clock = FakeClock()
    hub = await bootstrap(settings, clock=clock, configure_logs=False)
    try:
        keys = {}
        for tenant in (A, B):
            await hub.tenants.create(tenant, tenant.title())
            for scope in (ApiKeyScope.READ, ApiKeyScope.WRITE):
                keys[tenant, scope.value] = (await hub.keys.create(tenant, scope)).plaintext
        things = Things()
        app = create_app(hub)
        add_test_routes(app, things)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with (
            serve_app(app) as running,
            httpx.AsyncClient(base_url=running.url, limits=limits, timeout=60) as client,
        ):
            yield Api(hub, clock, things, client, keys)
    finally:
        await hub.close()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def replayed(response: httpx.Response, original: httpx.Response) -> None:
    assert response.headers.get("idempotent-replayed") == "true"
    assert response.status_code == original.status_code
    assert response.content == original.content
    for name in ("content-type", "location"):
        assert response.headers.get(name) == original.headers.get(name)


async def test_fifty_concurrent_identical_requests_make_one_thing(api: Api) -> None:
    api.things.gate.clear()
    tasks = [asyncio.create_task(api.post("k-50")) for _ in range(50)]
    done: set[asyncio.Task[httpx.Response]] = set()
    pending = set(tasks)
    while len(done) < 49:  # every one but the request holding the key comes back at once
        finished, pending = await asyncio.wait(
            pending, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        assert finished, f"only {len(done)} of 49 answered while the first was held"
        done |= finished
    conflicts = [t.result() for t in done]
    for response in conflicts:
        body = problem(response, 409)
        assert body["type"] == "urn:cadastre:problem:idempotency-key-in-use"
        assert response.headers["retry-after"] == "1"
    assert api.things.calls == 1
    assert await count_things(api.hub) == 0  # the one request is still running
    api.things.gate.set()
    finished, _ = await asyncio.wait(pending, timeout=30)
    (first,) = [t.result() for t in finished]
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert first.json() == {"id": "T1", "name": "kettle"}

    again = await asyncio.gather(*(api.post("k-50") for _ in range(49)))
    for response in again:
        replayed(response, first)
    assert api.things.calls == 1
    assert await count_things(api.hub) == 1


async def test_the_same_key_for_another_request_is_422(api: Api) -> None:
    first = await api.post("k-1")
    assert first.status_code == 201
    for other in (
        api.post("k-1", {**THING, "size": 3}),
        api.post("k-1", path="/v1/things?dry_run=1"),
        api.post("k-1", method="PATCH"),
    ):
        body = problem(await other, 422)
        assert body["type"] == "urn:cadastre:problem:idempotency-key-reused"
    # the same object serialised another way is the same request
    reordered = await api.post("k-1", {"size": 2, "name": "kettle"})
    replayed(reordered, first)
    assert (api.things.calls, await count_things(api.hub)) == (1, 1)


async def test_a_stored_500_is_replayed_verbatim(api: Api) -> None:
    api.things.fail_next = True
    crashed = await api.post("k-500")
    problem(crashed, 500)
    again = await api.post("k-500")
    replayed(again, crashed)
    assert api.things.calls == 1  # the handler was not run again
    fresh = await api.post("k-501")  # a new key is a new request, and this one succeeds
    assert fresh.status_code == 201
    assert (api.things.calls, await count_things(api.hub)) == (2, 1)


async def test_tenant_b_with_tenant_a_s_key_value_is_a_new_request(api: Api) -> None:
    a = await api.post("shared-key")
    b = await api.post("shared-key", tenant=B)
    assert (a.status_code, b.status_code) == (201, 201)
    assert "idempotent-replayed" not in b.headers
    assert (await count_things(api.hub, A), await count_things(api.hub, B)) == (1, 1)
    # and B's repeat gets B's answer
    b_again = await api.post("shared-key", tenant=B)
    replayed(b_again, b)


async def test_keys_are_reaped_after_24_hours_not_before(api: Api) -> None:
    first = await api.post("k-day")
    keep = timedelta(hours=api.hub.settings.idempotency_keep_hours)
    reaper = IdempotencyReaper(api.hub.store, api.clock, keep=keep)
    api.clock.advance(keep.total_seconds() - 1)
    assert await reaper.reap() == 0
    replayed(await api.post("k-day"), first)
    api.clock.advance(2)
    assert await reaper.reap() == 1
    later = await api.post("k-day")  # forgotten: a new request
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers
    assert await count_things(api.hub) == 2


async def test_the_hub_runs_the_reaper(api: Api) -> None:
    await api.post("k-worker")
    api.clock.advance(timedelta(hours=25).total_seconds())
    async with api.hub.running():
        for _ in range(200):  # the reaper's first round runs as it starts
            async with api.hub.store.unit_of_work(A, read_only=True) as uow:
                if await uow.idempotency.get("k-worker") is None:
                    break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the hub's reaper did not forget a key older than 24 hours")


def test_keeping_keys_less_than_24_hours_is_refused_at_config_load() -> None:
    with pytest.raises(ValidationError, match="idempotency_keep_hours"):
        Settings(idempotency_keep_hours=23.9)
    assert Settings(idempotency_keep_hours=48).idempotency_keep_hours == 48
    with pytest.raises(ValueError, match="at least"):
        IdempotencyReaper(None, FakeClock(), keep=timedelta(hours=1))  # type: ignore[arg-type]


# (value, whether uvicorn refuses the header itself, with its own 400, before the app sees it)
BAD_KEYS = [
    (b"", False), (b"has space", False), (b"x" * 256, False), (b"caf\xc3\xa9", False),
    (b"tab\there", False), (b"\x7f", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "by_server"), BAD_KEYS,
    ids=["empty", "space", "256-chars", "non-ascii", "tab", "delete"],
)  # fmt: skip
async def test_a_bad_key_is_400_and_nothing_is_written(
    api: Api, value: bytes, by_server: bool
) -> None:
    headers = [
        (b"authorization", f"Bearer {api.keys[A, 'write']}".encode()),
        (b"content-type", b"application/json"),
        (b"idempotency-key", value),
    ]
    response = await api.client.request(
        "POST", "/v1/things", content=b'{"name":"k","size":1}', headers=headers
    )
    if by_server:
        assert response.status_code == 400
    else:
        body = problem(response, 400)
        assert body["type"] == "urn:cadastre:problem:invalid-idempotency-key"
    assert (api.things.calls, await count_things(api.hub)) == (0, 0)
    assert await idempotency_rows(api.hub) == 0


async def test_two_key_headers_are_400(api: Api) -> None:
    headers = [
        (b"authorization", f"Bearer {api.keys[A, 'write']}".encode()),
        (b"idempotency-key", b"one"),
        (b"idempotency-key", b"two"),
    ]
    response = await api.client.request("POST", "/v1/things", json=THING, headers=headers)
    problem(response, 400)
    assert (api.things.calls, await idempotency_rows(api.hub)) == (0, 0)


async def test_the_longest_key_and_the_drafts_quoted_form_are_taken(api: Api) -> None:
    for key in ("k" * 255, '"8e03978e-40d5-43e8-bc93-6894a57f9324"'):
        first = await api.post(key)
        assert first.status_code == 201
        replayed(await api.post(key), first)
    assert await count_things(api.hub) == 2


async def test_writes_without_a_key_are_taken_as_before(api: Api) -> None:
    for _ in range(2):
        response = await api.post(None)
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert await count_things(api.hub) == 2
    assert await idempotency_rows(api.hub) == 0


async def test_refusals_before_the_handler_are_not_stored(api: Api) -> None:
    # a read key (403), no valid key (401), a body that does not validate (422): each is
    # answered, nothing is kept, and the same key then works for the corrected request
    problem(await api.post("k-r", scope="read"), 403)
    stranger = await api.client.post(
        "/v1/things", json=THING, headers={"Authorization": "Bearer cad_nope_nope",
                                           "Idempotency-Key": "k-r"},
    )  # fmt: skip
    problem(stranger, 401)
    problem(await api.post("k-r", {"name": "kettle"}), 422)
    problem(await api.post("k-r", path="/v1/no-such-thing"), 404)
    assert await idempotency_rows(api.hub) == 0
    ok = await api.post("k-r")
    assert ok.status_code == 201
    replayed(await api.post("k-r"), ok)
    assert api.things.calls == 1


async def test_a_redirect_by_the_router_is_not_stored(api: Api) -> None:
    # "/v1/things/" is no route: the router answers 307 to "/v1/things" before any route runs.
    # A client following it sends the same key to the new path: it must run, not get 422.
    moved = await api.post("k-slash", path="/v1/things/")
    assert moved.status_code == 307, moved.text
    assert await idempotency_rows(api.hub) == 0
    ok = await api.post("k-slash", path=moved.headers["location"])
    assert ok.status_code == 201, ok.text
    assert api.things.calls == 1


async def test_a_key_left_in_flight_by_a_dead_process_is_free_after_its_lock(api: Api) -> None:
    api.things.gate.clear()
    held = asyncio.create_task(api.post("k-dead"))
    while api.things.calls == 0:  # the first request holds the key and waits in the handler
        await asyncio.sleep(0.01)
    problem(await api.post("k-dead"), 409)
    # as if its process had died: the lock runs out and a retry takes the key over
    api.clock.advance(api.hub.settings.idempotency_lock_seconds)
    retry = asyncio.create_task(api.post("k-dead"))
    while api.things.calls == 1:
        await asyncio.sleep(0.01)
    api.things.gate.set()
    first, retried = await held, await retry
    assert (first.status_code, retried.status_code) == (201, 201)
    assert api.things.calls == 2
    final = await api.post("k-dead")
    replayed(final, retried)  # the taker's answer is the one kept; the first's could not be


async def test_a_real_write_route_replays_and_seals_the_secret(api: Api) -> None:
    body = {"url": "https://hooks.example.com/in", "event_types": ["cadastre.listing.*"]}
    created = await api.post("k-sub", body, path="/v1/subscriptions")
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    again = await api.post("k-sub", body, path="/v1/subscriptions")
    replayed(again, created)
    assert again.headers["cache-control"] == "no-store"
    assert len(await api.hub.webhooks.subscriptions.all(A)) == 1
    # the stored answer holds the signing secret: it is sealed, never plaintext in the store
    raw = await raw_bodies(api.hub)
    assert raw
    assert all(secret.encode() not in b and b"whsec_" not in b for b in raw)
    sub = created.json()["id"]
    gone = await api.post("k-del", None, path=f"/v1/subscriptions/{sub}", method="DELETE")
    assert gone.status_code == 204
    replayed(await api.post("k-del", None, path=f"/v1/subscriptions/{sub}", method="DELETE"), gone)


async def test_every_write_route_is_covered_and_documented(api: Api) -> None:
    paths = create_app(api.hub).openapi()["paths"]
    writes = [
        (method.upper(), path, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method in {"post", "put", "patch", "delete"} and path.startswith("/v1/")
    ]
    assert ("POST", "/v1/subscriptions") in {(m, p) for m, p, _ in writes}
    for method, path, operation in writes:
        assert covered(method, path), (method, path)
        names = [p["name"] for p in operation.get("parameters", [])]
        assert "Idempotency-Key" in names, (method, path)
        assert {"409", "422"} <= set(operation["responses"]), (method, path)
    assert not covered("GET", "/v1/listings")
    assert "Idempotency-Key" not in str(paths["/v1/listings"])
    assert not covered("POST", "/webhooks/acme/crm")
    assert not covered("POST", "/v1/oauth/callback")


async def test_entity_writes_are_covered(api: Api) -> None:
    patch = {"FirstName": "Ada"}
    headers = {"Content-Type": "application/merge-patch+json"}
    first = await api.post("k-ent", patch, path="/v1/contacts/C1", method="PATCH",
                           headers=headers)  # fmt: skip
    # whatever the route answers (202, or 404/422 for this contact), short of refusing the
    # caller, is stored and replayed
    assert first.status_code not in (401, 403), first.text
    again = await api.post("k-ent", patch, path="/v1/contacts/C1", method="PATCH",
                           headers=headers)  # fmt: skip
    replayed(again, first)


async def idempotency_rows(hub: Hub) -> int:
    store = hub.store
    assert isinstance(store, SqlAlchemyStore)
    async with store.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM api_idempotency"))).scalar_one())


async def raw_bodies(hub: Hub) -> list[bytes]:
    store = hub.store
    assert isinstance(store, SqlAlchemyStore)
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT body FROM api_idempotency WHERE body IS NOT NULL"))
        return [bytes(r[0]) for r in rows]
