"""Signing keys held per credential version (one vault read per version, the previous secret kept
for its overlap only), and how the sender reads an endpoint's answer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cadastre.errors import CredentialError
from cadastre.ports import EndpointReply
from cadastre.testing import FakeClock
from cadastre.testing.vault import VaultKit
from cadastre.webhooks.delivery_sender import Verdict, judge
from cadastre.webhooks.out_signing import SigningKeys
from cadastre.webhooks.standard import new_secret, secret_key


async def test_keys_are_opened_once_per_version_and_overlap_during_rotation() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    old, new = new_secret(), new_secret()
    stored = await kit.vault.add("acme", "subscription-s1", "webhook_secret", {"secret": old})
    keys = SigningKeys(kit.vault, clock)
    assert await keys.keys("acme", "subscription-s1") == [secret_key(old)]
    assert await keys.keys("acme", "subscription-s1") == [secret_key(old)]
    assert len(await kit.vault.reads("acme", "subscription-s1")) == 1  # held, not reopened

    until = clock.now() + timedelta(hours=24)
    await kit.vault.update(
        stored, secrets={"secret": new, "previous_secret": old},
        meta={"previous_valid_until": until.isoformat()},
    )  # fmt: skip
    assert await keys.keys("acme", "subscription-s1") == [secret_key(new), secret_key(old)]
    clock.advance(24 * 3600 - 1)
    assert len(await keys.keys("acme", "subscription-s1")) == 2
    clock.advance(1)
    assert await keys.keys("acme", "subscription-s1") == [secret_key(new)]
    reads = await kit.vault.reads("acme", "subscription-s1")
    assert [(r.purpose, r.actor) for r in reads] == [("sign", "webhooks-out")] * 2
    assert "whsec" not in repr(keys)


async def test_a_secret_that_is_not_a_standard_webhooks_one_cannot_sign() -> None:
    clock = FakeClock()
    kit = VaultKit(clock)
    await kit.vault.add("acme", "odd", "webhook_secret", {"secret": "not base64 !"})
    with pytest.raises(CredentialError, match="whsec_") as raised:
        await SigningKeys(kit.vault, clock).keys("acme", "odd")
    assert "not base64" not in str(raised.value)
    with pytest.raises(CredentialError, match="is not in the vault"):
        await SigningKeys(kit.vault, clock).keys("acme", "missing")


@pytest.mark.parametrize(
    ("status", "verdict", "error"),
    [
        (200, Verdict.DELIVERED, ""), (204, Verdict.DELIVERED, ""), (299, Verdict.DELIVERED, ""),
        (301, Verdict.FAILED, "301 redirect, not followed"),
        (302, Verdict.FAILED, "302 redirect, not followed"),
        (304, Verdict.FAILED, "304 redirect, not followed"),
        (400, Verdict.FAILED, "HTTP 400"), (401, Verdict.FAILED, "HTTP 401"),
        (404, Verdict.FAILED, "HTTP 404"),
        (410, Verdict.GONE, "410 Gone: the endpoint says it is no more"),
        (429, Verdict.RATE_LIMITED, "429 Too Many Requests"),
        (500, Verdict.FAILED, "HTTP 500"), (503, Verdict.FAILED, "HTTP 503"),
        (100, Verdict.FAILED, "HTTP 100"),
    ],
)  # fmt: skip
def test_only_a_2xx_is_a_success(status: int, verdict: Verdict, error: str) -> None:
    answer = judge(EndpointReply(status, {}, b"", retry_after=7.0 if status == 429 else None))
    assert (answer.verdict, answer.status, answer.error) == (verdict, status, error)
    assert answer.retry_after == (7.0 if status == 429 else None)


async def test_an_overlap_end_that_cannot_be_read_does_not_stop_signing() -> None:
    """``previous_valid_until`` is free text in the vault (an operator may set it by hand): an
    end without a zone is UTC, and one that is not a time at all ends the overlap, rather than
    failing every delivery of the subscription unrecorded."""
    clock = FakeClock()
    kit = VaultKit(clock)
    old, new = new_secret(), new_secret()
    keys = SigningKeys(kit.vault, clock)
    naive = (clock.now() + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    for name, until, expected in (
        ("naive", naive, [secret_key(new), secret_key(old)]),
        ("garbled", "tomorrow", [secret_key(new)]),
    ):
        await kit.vault.add("acme", name, "webhook_secret",
                            {"secret": new, "previous_secret": old},
                            {"previous_valid_until": until})  # fmt: skip
        assert await keys.keys("acme", name) == expected
    clock.advance(3600)
    assert await keys.keys("acme", "naive") == [secret_key(new)]


async def test_keys_of_credentials_no_longer_used_are_dropped() -> None:
    """A removed subscription's decrypted key does not stay in memory for the life of the hub."""
    clock = FakeClock()
    kit = VaultKit(clock, tenants=("acme", "globex"))
    keys = SigningKeys(kit.vault, clock)
    for name in ("subscription-s1", "subscription-s2"):
        await kit.vault.add("acme", name, "webhook_secret", {"secret": new_secret()})
        await keys.keys("acme", name)
    await kit.vault.add("globex", "subscription-s1", "webhook_secret", {"secret": new_secret()})
    await keys.keys("globex", "subscription-s1")
    keys.keep("acme", {"subscription-s2"})
    assert keys.held() == {("acme", "subscription-s2"), ("globex", "subscription-s1")}
