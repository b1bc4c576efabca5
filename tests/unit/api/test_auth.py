"""Bearer keys: every failure is a 401 problem with a ``WWW-Authenticate: Bearer`` challenge, and
the presented key never comes back in a response or a log line."""

from __future__ import annotations

import logging

import pytest

from cadastre.ports import ApiKeyScope
from tests.unit.api.conftest import A, World, assert_problem


async def unauthorized(world: World, headers: dict[str, str]) -> dict[str, object]:
    response = await world.client.get("/v1/listings", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["type"] == "about:blank"
    assert body["title"] == "Unauthorized"
    return body


async def test_a_missing_key_is_a_401_challenge(world: World) -> None:
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer"},
                    {"Authorization": f"Basic {world.keys[A]}"}):  # fmt: skip
        await unauthorized(world, headers)


async def test_a_wrong_key_is_a_401_that_echoes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    real = world.keys[A]
    wrong = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    for presented in (wrong, "cad_k000000000000_" + "x" * 43, "not-a-key", real + "x"):
        response = await world.client.get(
            "/v1/listings", headers={"Authorization": f"Bearer {presented}"}
        )
        body = assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert presented not in response.text
        assert presented not in str(response.headers)
        assert body["detail"] == "the API key is invalid or revoked"
    assert wrong not in caplog.text
    assert real[-43:] not in caplog.text


async def test_a_revoked_key_is_refused_at_once(world: World) -> None:
    assert (await world.get("/v1/listings")).status_code == 200
    key_id = world.keys[A].split("_")[1]
    await world.hub.keys.revoke(A, key_id)
    await unauthorized(world, world.auth())


async def test_write_keys_read_too(world: World) -> None:
    issued = await world.hub.keys.create(A, ApiKeyScope.WRITE)
    response = await world.client.get(
        "/v1/listings", headers={"Authorization": f"Bearer {issued.plaintext}"}
    )
    assert response.status_code == 200


async def test_every_listing_route_needs_a_key(world: World) -> None:
    id = await world.listing("L1", City="Austin")
    for path in ("/v1/listings", f"/v1/listings/{id}", "/v1/listings/nope"):
        response = await world.client.get(path)
        assert_problem(response, 401)
        assert "Austin" not in response.text
