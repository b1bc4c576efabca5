"""``python -m cadastre.simulators auth`` as a real process on loopback: a grant, refreshes with
single_use rotation, a token answer lost after the vendor rotated, and RETS Digest through httpx."""

from __future__ import annotations

import httpx
import pytest

from cadastre.simulators import spawn

CLIENT = ("demo-client", "demo-secret")


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    return client.post("/oauth/token", data=data, auth=CLIENT)


def test_a_refresh_over_real_http_rotates_and_a_lost_answer_turns_the_retry_into_reuse() -> None:
    with (
        spawn("auth", "--rotation", "single_use", "--token-ttl", "120") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert url.startswith("http://127.0.0.1:")
        grant = client.post("/admin/oauth/grant", json={"client_id": "demo-client",
                                                        "scope": "read"}).json()  # fmt: skip
        assert grant["expires_in"] == 120
        refreshed = refresh(client, grant["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        assert body["refresh_token"] != grant["refresh_token"]
        me = client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.json() == {"client_id": "demo-client", "scope": "read", "ok": True}

        faults = {"lost_response_rate": 1.0, "paths": ["/oauth/token"]}
        assert client.post("/admin/faults", json=faults).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            refresh(client, body["refresh_token"])  # rotated at the vendor, answer dropped
        client.post("/admin/faults", json={})
        retry = refresh(client, body["refresh_token"])
        assert (retry.status_code, retry.json()["error"]) == (400, "invalid_grant")

        stats = client.get("/admin/stats").json()
        assert stats["refreshes"] == 2
        assert stats["refresh_token_reuse"] == stats["families_revoked"] == 1
        assert stats["token_endpoint_calls"] == 3
        assert stats["faults_injected"] == {"lost_response": 1}


def test_digest_and_basic_logins_over_real_http() -> None:
    with (
        spawn("auth", "--username", "agent", "--password", "pa:ss word") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        digest = httpx.DigestAuth("agent", "pa:ss word")
        assert client.get("/rets/login", auth=digest).status_code == 200
        assert client.get("/rets/login", auth=digest).status_code == 200
        assert client.get("/rets/login", auth=("agent", "pa:ss word")).status_code == 200
        logins = client.get("/admin/stats").json()["rets_logins"]
        assert logins == {"digest:SHA-256": 2, "basic": 1}


def test_bad_auth_flags_do_not_start() -> None:
    with pytest.raises(RuntimeError, match="did not start"), spawn("auth", "--token-ttl", "0"):
        pass
