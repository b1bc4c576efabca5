"""The application around the routes: health, the OpenAPI document, and problems for routing
errors, outages and bugs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import cadastre.api
from cadastre.errors import StoreUnavailable
from tests.unit.api.conftest import World, assert_problem


def test_the_public_surface_is_create_app() -> None:
    assert cadastre.api.__all__ == ["create_app"]
    public = {name for name in vars(cadastre.api) if not name.startswith("_")}
    modules = {"app", "auth", "changes", "connections", "cursor", "listings", "oauth",
               "idempotency",
               "entities", "writes", "conflicts", "identities",  # issue 8
               "payloads", "problems", "reso", "subscriptions", "webhooks_in",
               "metrics", "tracing", "alerts"}  # issue 9  # fmt: skip
    assert public - modules == {"create_app"}


async def test_healthz_needs_no_key(world: World) -> None:
    response = await world.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_the_openapi_document_lists_routes_and_the_bearer_scheme(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    assert {"/v1/listings", "/v1/listings/{listing_id}", "/healthz"} <= spec["paths"].keys()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path in ("/v1/listings", "/v1/listings/{listing_id}"):
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"ApiKey": []}]
        assert "application/problem+json" in operation["responses"]["401"]["content"]
        assert "application/problem+json" in operation["responses"]["422"]["content"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    parameters = {p["name"] for p in spec["paths"]["/v1/listings"]["get"]["parameters"]}
    assert parameters == {"status", "city", "min_price", "max_price", "modified_since",
                          "min_confidence", "limit", "cursor"}  # fmt: skip
    assert "ProblemDetails" in spec["components"]["schemas"]
    docs = await world.client.get("/docs")
    assert docs.status_code == 200
    assert "openapi.json" in docs.text


async def test_unknown_paths_and_methods_are_problems(world: World) -> None:
    body = assert_problem(await world.client.get("/v2/nothing"), 404)
    assert body["instance"] == "/v2/nothing"
    response = await world.client.delete("/v1/listings", headers=world.auth())
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


def break_store(world: World, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def unit_of_work(tenant: str, **options: Any) -> Any:
        raise error

    monkeypatch.setattr(world.hub.store, "unit_of_work", unit_of_work)


async def test_a_bug_is_a_500_problem_without_internals(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    break_store(world, monkeypatch, RuntimeError("internal detail: table records"))
    caplog.set_level(logging.ERROR, logger="cadastre.api")
    response = await world.get("/v1/listings")
    body = assert_problem(response, 500)
    assert body == {"type": "about:blank", "title": "Internal Server Error", "status": 500,
                    "detail": "internal error", "instance": "/v1/listings"}  # fmt: skip
    assert "internal detail" in caplog.text  # for the operator, in the log
    assert world.keys["acme"] not in caplog.text


async def test_a_store_outage_is_a_503_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_store(world, monkeypatch, StoreUnavailable("database: connection refused"))
    response = await world.get("/v1/listings")
    body = assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "connection refused" not in body["detail"]
