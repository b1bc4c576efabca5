"""``kept_headers``: what of a request's headers is stored with a webhook or shown with a refusal,
and that deciding it once per set of header names (the memo) changes nothing of the answer."""

from __future__ import annotations

from cadastre.webhooks import refusals
from cadastre.webhooks.refusals import MAX_HEADERS, MAX_VALUE, kept_headers

PRIVATE = frozenset({"webhook-signature"})


def test_signatures_secrets_and_hop_by_hop_headers_are_left_out() -> None:
    headers = {
        "Content-Type": "application/json", "webhook-id": "m1", "webhook-signature": "v1,x",
        "Authorization": "Bearer t", "Cookie": "a=b", "X-Api-Key": "k", "x-vendor-key": "k",
        "X-Session": "s", "Host": "hub", "Content-Length": "2", "Connection": "keep-alive",
        "User-Agent": "Vendor/1",
    }  # fmt: skip
    assert kept_headers(headers, PRIVATE) == {
        "content-type": "application/json", "webhook-id": "m1", "user-agent": "Vendor/1",
    }  # fmt: skip


def test_the_same_names_answer_each_request_with_its_own_values() -> None:
    first = kept_headers({"webhook-id": "m1", "user-agent": "a"}, PRIVATE)
    second = kept_headers({"webhook-id": "m2", "user-agent": "b"}, PRIVATE)
    assert (first, second) == (
        {"webhook-id": "m1", "user-agent": "a"}, {"webhook-id": "m2", "user-agent": "b"}
    )  # fmt: skip
    # the scheme's private names are part of the decision
    assert kept_headers({"webhook-id": "m3", "x-sig": "s"}, frozenset({"x-sig"})) == {
        "webhook-id": "m3"
    }
    assert kept_headers({"webhook-id": "m3", "x-sig": "s"}, PRIVATE) == {
        "webhook-id": "m3", "x-sig": "s",
    }  # fmt: skip


def test_names_are_lower_cased_the_last_of_twins_wins_and_sizes_are_bounded() -> None:
    assert kept_headers({"X-Trace": "1", "x-trace": "2"}) == {"x-trace": "2"}
    many = {f"x-h{i:03}": "v" * (MAX_VALUE + 5) for i in range(MAX_HEADERS + 10)}
    kept = kept_headers(many)
    assert list(kept) == [f"x-h{i:03}" for i in range(MAX_HEADERS)]
    assert {len(v) for v in kept.values()} == {MAX_VALUE}


def test_the_memo_stays_bounded() -> None:
    for i in range(refusals._PLANS_MAX + 10):
        kept_headers({f"x-sender-chosen-{i}": "v"})
    assert len(refusals._PLANS) <= refusals._PLANS_MAX
