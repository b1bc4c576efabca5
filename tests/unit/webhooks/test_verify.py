"""The signature schemes (``cadastre.webhooks.verify``) against the published and derived vectors
in ``../shared/vendor-specs/webhook-signature-vectors.json`` (with the clock set to each vector's
time), and against self-made vectors signed by independent signers (``tests.webhook_signers``,
the ``standardwebhooks`` package for Standard Webhooks), so a user clone without the shared data
still tests verification."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cadastre.errors import WebhookRefused
from cadastre.ports import Secret
from cadastre.webhooks.settings import WebhookSettings
from cadastre.webhooks.verify import hubspot_uri, verifier
from tests.webhook_signers import (
    HUBSPOT_URL,
    OTHER_SECRET,
    SCHEMES,
    SECRET,
    TIMESTAMPED,
    at,
    lower,
    sign,
)

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BODY = b'{"EventName":"Rental.Created","AccountId":123456,"PropertyId":78910}'


def settings(**block: Any) -> WebhookSettings:
    return WebhookSettings.model_validate({"credential": "hooks", **block})


def check(
    block: Mapping[str, Any], headers: Mapping[str, str], body: bytes, secrets: list[str],
    now: datetime, *, method: str = "POST", url: str = "https://hub.example/webhooks/a/b",
) -> str:  # fmt: skip
    """Both steps of a scheme, as the receiver runs them; the message id."""
    scheme = verifier(settings(**block))
    lowered = lower(headers)
    scheme.check_headers(lowered, now)
    return scheme.verify(method, url, lowered, body, [Secret(s) for s in secrets])


def refused(reason: str, block: Mapping[str, Any], headers: Mapping[str, str], body: bytes,
            secrets: list[str], now: datetime, **kwargs: Any) -> None:  # fmt: skip
    with pytest.raises(WebhookRefused) as caught:
        check(block, headers, body, secrets, now, **kwargs)
    assert (caught.value.reason, caught.value.status) == (reason, 401)


# ------------------------------------------------------------------ the shared vectors


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> dict[str, dict[str, Any]]:
    path = shared_dir / "vendor-specs" / "webhook-signature-vectors.json"
    return {v["id"]: v for v in json.loads(path.read_text())["vectors"]}


STANDARD = ["standard_webhooks/sign-1", "standard_webhooks/multi-sig", "standard_webhooks/sign-2",
            "standard_webhooks/sign-1-tampered"]  # fmt: skip


@pytest.mark.parametrize("name", STANDARD)
def test_standard_webhooks_vectors_with_the_clock_at_their_time(
    vectors: dict[str, dict[str, Any]], name: str
) -> None:
    vector = vectors[name]
    headers = dict(vector["headers"])
    headers.setdefault("webhook-signature", vector.get("expected_signature_header", ""))
    stamp = int(headers["webhook-timestamp"])
    body = vector["body"].encode()
    block = {"scheme": "standard_webhooks"}
    if vector["valid"]:
        found = check(block, headers, body, [vector["secret"]], at(stamp))
        assert found == headers["webhook-id"]
    else:
        refused("bad_signature", block, headers, body, [vector["secret"]], at(stamp))
    # the vector's own time is 2021: at the wall clock's (or five minutes and a second off) the
    # same request is stale, before its signature is even looked at
    for now in (at(stamp + 301), at(stamp - 301), NOW):
        refused("stale_timestamp", block, headers, body, [vector["secret"]], now)
    if vector["valid"]:
        assert check(block, headers, body, [vector["secret"]], at(stamp + 300))


def test_signing_vectors_come_out_of_our_signer(vectors: dict[str, dict[str, Any]]) -> None:
    from cadastre.webhooks import standard

    for name in ("standard_webhooks/sign-1", "standard_webhooks/sign-2"):
        vector = vectors[name]
        key = standard.secret_key(vector["secret"])
        headers = vector["headers"]
        made = standard.signature_header(
            [key], headers["webhook-id"], int(headers["webhook-timestamp"]), vector["body"].encode()
        )
        assert made == vector["expected_signature_header"]


@pytest.mark.parametrize(
    ("name", "block", "now"),
    [
        ("derived_buildium/rental-created", {"scheme": "buildium"}, at(1671725900)),
        ("derived_qbo/cloudevents-invoice-created", {"scheme": "quickbooks"}, NOW),
        ("derived_hubspot/v3-property-change",
         {"scheme": "hubspot_v3", "url": "https://example.com/webhooks/hubspot"}, at(1700000000)),
        ("derived_xero/intent-to-receive",
         {"scheme": "hmac_sha256", "header": "x-xero-signature", "encoding": "base64"}, NOW),
    ],
)  # fmt: skip
def test_derived_vendor_vectors(
    vectors: dict[str, dict[str, Any]], name: str, block: dict[str, Any], now: datetime
) -> None:
    vector = vectors[name]
    headers = {**vector.get("headers", {}), **vector["expected_headers"]}
    headers = {k: v for k, v in headers.items() if " " not in k}  # the v1 note is not a header
    body, secret = vector["body"].encode(), vector["secret"]
    found = check(block, headers, body, [secret], now, url=vector.get("uri", ""))
    assert found.startswith("sha256:")
    refused("bad_signature", block, headers, body + b" ", [secret], now, url=vector.get("uri", ""))
    refused("bad_signature", block, headers, body, [secret + "x"], now, url=vector.get("uri", ""))


def test_buildium_message_id_is_its_body_so_a_resigned_retry_is_one_message() -> None:
    first = check({"scheme": "buildium"}, sign("buildium", SECRET["buildium"], BODY, NOW),
                  BODY, [SECRET["buildium"]], NOW)  # fmt: skip
    later = NOW + timedelta(minutes=1)  # Buildium's first retry, signed with its send time
    retry = check({"scheme": "buildium"}, sign("buildium", SECRET["buildium"], BODY, later),
                  BODY, [SECRET["buildium"]], later)  # fmt: skip
    assert first == retry == "sha256:" + hashlib.sha256(BODY).hexdigest()


# ------------------------------------------------------------------ every scheme, self-made


@pytest.mark.parametrize("name", list(SCHEMES))
def test_a_signed_request_verifies(name: str) -> None:
    headers = sign(name, SECRET[name], BODY, NOW)
    found = check(SCHEMES[name], headers, BODY, [SECRET[name]], NOW, url=HUBSPOT_URL)
    assert found == "msg_1" if name == "standard_webhooks" else found.startswith("sha256:")


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_one_byte_flip_of_the_body_is_refused(name: str) -> None:
    headers = sign(name, SECRET[name], BODY, NOW)
    for i in range(len(BODY)):
        flipped = BODY[:i] + bytes([BODY[i] ^ 0x01]) + BODY[i + 1 :]
        refused("bad_signature", SCHEMES[name], headers, flipped, [SECRET[name]], NOW,
                url=HUBSPOT_URL)  # fmt: skip
    refused("bad_signature", SCHEMES[name], headers, BODY + b"\n", [SECRET[name]], NOW,
            url=HUBSPOT_URL)  # fmt: skip
    refused("bad_signature", SCHEMES[name], headers, BODY[:-1], [SECRET[name]], NOW,
            url=HUBSPOT_URL)  # fmt: skip


@pytest.mark.parametrize("name", list(SCHEMES))
def test_a_wrong_secret_is_refused(name: str) -> None:
    headers = sign(name, OTHER_SECRET[name], BODY, NOW)
    refused("bad_signature", SCHEMES[name], headers, BODY, [SECRET[name]], NOW, url=HUBSPOT_URL)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_a_signature_over_re_serialised_json_is_refused(name: str) -> None:
    parsed = json.loads(BODY)
    for variant in (json.dumps(parsed), json.dumps(parsed, indent=2),
                    json.dumps(parsed, sort_keys=True, separators=(",", ":"))):  # fmt: skip
        again = variant.encode()
        assert again != BODY
        headers = sign(name, SECRET[name], again, NOW)  # signed over the re-serialised form
        refused("bad_signature", SCHEMES[name], headers, BODY, [SECRET[name]], NOW,
                url=HUBSPOT_URL)  # fmt: skip


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_missing_header_is_refused_before_the_body(name: str) -> None:
    headers = sign(name, SECRET[name], BODY, NOW)
    scheme = verifier(settings(**SCHEMES[name]))
    for gone in headers:
        if name == "github" and gone == "x-github-delivery":
            continue  # informational, not signed
        left = lower({k: v for k, v in headers.items() if k != gone})
        with pytest.raises(WebhookRefused) as caught:
            scheme.check_headers(left, NOW)  # no body needed to refuse it
        assert caught.value.reason in ("missing_signature", "missing_timestamp")
        assert caught.value.status == 401


@pytest.mark.parametrize("name", TIMESTAMPED)
def test_timestamps_301_seconds_off_are_refused_and_300_pass(name: str) -> None:
    for off in (-301, 301, 3600, -86_400):
        sent = NOW + timedelta(seconds=off)
        headers = sign(name, SECRET[name], BODY, sent)
        refused("stale_timestamp", SCHEMES[name], headers, BODY, [SECRET[name]], NOW,
                url=HUBSPOT_URL)  # fmt: skip
    for off in (-300, 300):
        headers = sign(name, SECRET[name], BODY, NOW + timedelta(seconds=off))
        assert check(SCHEMES[name], headers, BODY, [SECRET[name]], NOW, url=HUBSPOT_URL)


@pytest.mark.parametrize("value", ["", "  ", "12a", "-1700000000", "1.5", "1e9", "9" * 40])
def test_a_malformed_timestamp_is_refused(value: str) -> None:
    headers = sign("buildium", SECRET["buildium"], BODY, NOW)
    headers["buildium-webhook-timestamp"] = value
    with pytest.raises(WebhookRefused) as caught:
        verifier(settings(scheme="buildium")).check_headers(headers, NOW)
    assert caught.value.reason in ("missing_timestamp", "invalid_timestamp", "stale_timestamp")


def test_the_tolerance_is_the_connections() -> None:
    headers = sign("buildium", SECRET["buildium"], BODY, NOW - timedelta(seconds=50))
    block = {"scheme": "buildium", "tolerance_seconds": 30}
    refused("stale_timestamp", block, headers, BODY, [SECRET["buildium"]], NOW)


# ------------------------------------------------------------------ rotation


def test_standard_webhooks_multi_signature_during_a_rotation() -> None:
    old, new = SECRET["standard_webhooks"], OTHER_SECRET["standard_webhooks"]
    both = sign("standard_webhooks", [new, old], BODY, NOW)  # the sender signs with both
    block = SCHEMES["standard_webhooks"]
    assert check(block, both, BODY, [old], NOW) == "msg_1"  # we have not rotated yet
    assert check(block, both, BODY, [new], NOW) == "msg_1"  # we rotated first
    only_new = sign("standard_webhooks", new, BODY, NOW)
    assert check(block, only_new, BODY, [new, old], NOW) == "msg_1"  # our overlap
    refused("bad_signature", block, only_new, BODY, [old], NOW)
    # unknown versions and garbage entries are passed over, never raised on
    odd = {**both, "webhook-signature": "v2,abc v1 ,,, " + both["webhook-signature"]}
    assert check(block, odd, BODY, [old], NOW) == "msg_1"


@pytest.mark.parametrize("name", [n for n in SCHEMES if n != "standard_webhooks"])
def test_the_previous_secret_verifies_while_the_overlap_lasts(name: str) -> None:
    headers = sign(name, SECRET[name], BODY, NOW)  # the vendor still signs with the old one
    assert check(SCHEMES[name], headers, BODY, [OTHER_SECRET[name], SECRET[name]], NOW,
                 url=HUBSPOT_URL)  # fmt: skip
    refused("bad_signature", SCHEMES[name], headers, BODY, [OTHER_SECRET[name]], NOW,
            url=HUBSPOT_URL)  # fmt: skip


def test_a_standard_webhooks_id_is_signed_so_a_replay_cannot_change_it() -> None:
    headers = sign("standard_webhooks", SECRET["standard_webhooks"], BODY, NOW, msg_id="msg_A")
    moved = {**headers, "webhook-id": "msg_B"}
    refused("bad_signature", SCHEMES["standard_webhooks"], moved, BODY,
            [SECRET["standard_webhooks"]], NOW)  # fmt: skip
    long_id = "m" * 300  # kept as its hash: the inbox's column holds 200 characters
    headers = sign("standard_webhooks", SECRET["standard_webhooks"], BODY, NOW, msg_id=long_id)
    found = check(SCHEMES["standard_webhooks"], headers, BODY, [SECRET["standard_webhooks"]], NOW)
    assert found == "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()


# ------------------------------------------------------------------ scheme details


def test_hubspot_decodes_the_escapes_it_documents_and_no_others() -> None:
    called = "https://hub.example/webhooks/acme/crm%3Aone?x=a%2Fb%40c%20d%21%2a"
    assert hubspot_uri(called) == "https://hub.example/webhooks/acme/crm:one?x=a/b@c%20d!*"
    signed_over = hubspot_uri(called)
    headers = sign("hubspot_v3", SECRET["hubspot_v3"], BODY, NOW)
    stamp = headers["x-hubspot-request-timestamp"]
    from tests.webhook_signers import hubspot

    headers = hubspot(SECRET["hubspot_v3"], BODY, NOW, url=signed_over)
    assert headers["x-hubspot-request-timestamp"] == stamp
    block = {"scheme": "hubspot_v3"}
    assert check(block, headers, BODY, [SECRET["hubspot_v3"]], NOW, url=called)
    refused("bad_signature", block, headers, BODY, [SECRET["hubspot_v3"]], NOW,
            url=called.replace("/crm", "/other"))  # fmt: skip
    refused("bad_signature", block, headers, BODY, [SECRET["hubspot_v3"]], NOW, url=called,
            method="PUT")  # fmt: skip


def test_generic_hmac_reads_hex_in_either_case_and_base64() -> None:
    headers = sign("github", SECRET["github"], BODY, NOW)
    digest = headers["x-hub-signature-256"].removeprefix("sha256=")
    upper = {**headers, "x-hub-signature-256": "sha256=" + digest.upper()}
    assert check(SCHEMES["github"], upper, BODY, [SECRET["github"]], NOW)
    unprefixed = {**headers, "x-hub-signature-256": headers["x-hub-signature-256"][7:]}
    refused("missing_signature", SCHEMES["github"], unprefixed, BODY, [SECRET["github"]], NOW)
    garbage = {**headers, "x-hub-signature-256": "sha256=not-hex"}
    refused("bad_signature", SCHEMES["github"], garbage, BODY, [SECRET["github"]], NOW)
    raw = bytes.fromhex(digest)
    block = {"scheme": "hmac_sha256", "header": "X-Sig", "encoding": "base64"}
    assert check(block, {"x-sig": base64.b64encode(raw).decode()}, BODY, [SECRET["github"]], NOW)


def test_a_standard_webhooks_secret_that_is_not_base64_is_ours_to_fix() -> None:
    headers = sign("standard_webhooks", SECRET["standard_webhooks"], BODY, NOW)
    with pytest.raises(WebhookRefused) as caught:
        check(SCHEMES["standard_webhooks"], headers, BODY, ["whsec_***not base64***"], NOW)
    assert (caught.value.reason, caught.value.status) == ("not_configured", 503)


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"scheme": "hmac_sha256"}, "needs 'header'"),
        ({"scheme": "hmac_sha256", "header": "X-Sig", "signed": "timestamp.body"},
         "needs 'timestamp_header'"),
        ({"scheme": "buildium", "header": "X-Sig"}, "header: not options of scheme buildium"),
        ({"scheme": "standard_webhooks", "url": "https://x.example/"}, "url: not options"),
        ({"scheme": "hmac_sha256", "header": "bad header"}, "header"),
        ({"scheme": "nope"}, "scheme"),
        ({"scheme": "quickbooks", "credential": "has spaces"}, "credential"),
        ({"scheme": "quickbooks", "max_body_bytes": 0}, "max_body_bytes"),
        ({"scheme": "quickbooks", "secret": "x"}, "secret"),
    ],
)  # fmt: skip
def test_a_webhook_block_is_checked(block: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        settings(**block)
