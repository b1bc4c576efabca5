"""Identity resolution's rules (``cadastre.sync.identity``): normalising, scoring with evidence,
and the decisions at the thresholds."""

from __future__ import annotations

import pytest

from cadastre.ports import IdentityLink, LinkHow, LinkState
from cadastre.sync.identity import (
    Action,
    Score,
    Thresholds,
    decide,
    match_keys,
    name_similarity,
    normalise_email,
    normalise_phone,
    score,
)
from cadastre.testing import EPOCH

ADA_C = {"FirstName": "Ada", "LastName": "Lovelace", "Email": "Ada.Lovelace@Example.com",
         "MobilePhone": "(512) 555-0100"}  # fmt: skip
ADA_R = {"FirstName": "ada", "LastName": "LOVELACE", "Email": "ada.lovelace@example.com",
         "HomePhone": "+1 512 555 0100"}  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("a.d.a+news@gmail.com", "ada@gmail.com"),  # Gmail ignores dots and +tags
        ("ada+news@googlemail.com", "ada@gmail.com"),
        ("ada+news@outlook.com", "ada@outlook.com"),  # + only, dots kept
        ("a.da@outlook.com", "a.da@outlook.com"),
        ("a.da+x@corp.example", "a.da+x@corp.example"),  # unknown provider: kept as is
        ("not an address", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_emails_are_normalised_only_where_providers_agree(raw: object, normal: str | None) -> None:
    assert normalise_email(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("(512) 555-0100", "+15125550100"),
        ("+1 512.555.0100", "+15125550100"),
        ("15125550100", "+15125550100"),
        ("+44 20 7946 0958", "+442079460958"),
        ("555-01", None),  # too short to be anyone's number
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_phones_become_e164_digits(raw: object, normal: str | None) -> None:
    assert normalise_phone(raw) == normal


def test_name_similarity_folds_case_accents_and_initials() -> None:
    assert name_similarity("Zoë", "Saldaña", "zoe", "SALDANA") == 1.0
    assert name_similarity("J", "Smith", "John", "Smith") == pytest.approx(0.9)
    assert name_similarity("Ada", "Lovelace", "Ada", "King Lovelace") == pytest.approx(0.95)
    low = name_similarity("Ada", "Lovelace", "Charles", "Babbage")
    assert low is not None
    assert low < 0.5
    assert name_similarity(None, None, "Ada", "Lovelace") is None


def test_match_keys_pool_every_identifier() -> None:
    assert match_keys(ADA_C) == {("email", "ada.lovelace@example.com"), ("phone", "+15125550100")}
    assert match_keys({"Email": "nope", "HomePhone": "12"}) == set()


def test_a_full_match_scores_high_with_its_evidence() -> None:
    found = score(ADA_C, ADA_R)
    assert found.confidence >= 0.95
    assert found.evidence["email"] == {"value": "ada.lovelace@example.com", "p": 0.8}
    assert found.evidence["phone"] == {"value": "+15125550100", "p": 0.6}
    assert found.evidence["name"]["similarity"] == 1.0
    assert "address" not in found.evidence


@pytest.mark.parametrize(
    ("contact", "resident", "low", "high", "signals"),
    [
        # e-mail and an equal name: linked at once
        ({"Email": "a@x.example", "FirstName": "Ada", "LastName": "Byron"},
         {"Email": "A@X.example", "FirstName": "Ada", "LastName": "Byron"}, 0.9, 1.0,
         {"email", "name"}),
        # e-mail alone: a suggestion
        ({"Email": "a@x.example"}, {"Email": "a@x.example"}, 0.79, 0.81, {"email"}),
        # phone and name: a strong suggestion, not a link
        ({"MobilePhone": "5125550100", "FirstName": "Ada", "LastName": "Byron"},
         {"HomePhone": "+1-512-555-0100", "FirstName": "Ada", "LastName": "Byron"}, 0.85, 0.9,
         {"phone", "name"}),
        # a family's shared e-mail, other names: halved, below any threshold
        ({"Email": "family@x.example", "FirstName": "Ada", "LastName": "Byron"},
         {"Email": "family@x.example", "FirstName": "George", "LastName": "Gordon"}, 0.0, 0.45,
         {"email", "name", "names_differ"}),
        # nothing shared
        ({"Email": "a@x.example"}, {"Email": "b@x.example"}, 0.0, 0.0, set()),
    ],
)  # fmt: skip
def test_scores_combine_the_signals(
    contact: dict[str, str], resident: dict[str, str], low: float, high: float,
    signals: set[str],
) -> None:  # fmt: skip
    found = score(contact, resident)
    assert low <= found.confidence <= high
    assert set(found.evidence) == signals


def test_the_postal_address_adds_evidence() -> None:
    contact = {"Email": "a@x.example", "HomeAddress1": "12 Main St", "HomePostalCode": "78701"}
    resident = {"Email": "a@x.example"}
    place = {"PostalCode": "78701-1234", "StreetNumber": "12"}
    with_place = score(contact, resident, place)
    assert with_place.evidence["address"] == {"postal_code": "78701", "street_number": True,
                                              "p": 0.4}  # fmt: skip
    assert with_place.confidence > score(contact, resident).confidence >= 0.8
    elsewhere = score(contact, resident, {"PostalCode": "10001", "StreetNumber": "12"})
    assert "address" not in elsewhere.evidence


def _link(state: LinkState) -> IdentityLink:
    return IdentityLink("idl_1", "Contact", "C1", "Resident", "R1", 0.7, {}, state,
                        LinkHow.MANUAL, "cli", EPOCH)  # fmt: skip


T = Thresholds(auto_link=0.9, suggest=0.6)


@pytest.mark.parametrize(
    ("confidence", "action"),
    [(0.95, Action.LINK), (0.9, Action.LINK), (0.89, Action.SUGGEST), (0.6, Action.SUGGEST),
     (0.59, Action.NONE), (0.0, Action.NONE)],
)  # fmt: skip
def test_thresholds_link_suggest_or_leave(confidence: float, action: Action) -> None:
    assert decide(Score(confidence), None, T, resident_taken=False) is action


def test_a_rejected_pair_is_never_suggested_again() -> None:
    rejected = _link(LinkState.REJECTED)
    for confidence in (0.61, 0.9, 1.0):
        assert decide(Score(confidence), rejected, T, resident_taken=False) is Action.NONE


def test_suggestions_are_promoted_only_past_the_link_threshold() -> None:
    suggested = _link(LinkState.SUGGESTED)
    assert decide(Score(0.95), suggested, T, resident_taken=False) is Action.PROMOTE
    assert decide(Score(0.8), suggested, T, resident_taken=False) is Action.NONE
    assert decide(Score(0.95), _link(LinkState.LINKED), T, resident_taken=False) is Action.NONE


def test_a_taken_resident_or_a_tie_is_only_suggested() -> None:
    assert decide(Score(0.99), None, T, resident_taken=True) is Action.SUGGEST
    assert decide(Score(0.99), None, T, resident_taken=False, tied=True) is Action.SUGGEST
    assert decide(Score(0.99), _link(LinkState.SUGGESTED), T, resident_taken=True) is Action.NONE


@pytest.mark.parametrize(("auto", "suggest"), [(0.5, 0.6), (1.2, 0.6), (0.9, 0.0)])
def test_thresholds_out_of_order_are_refused(auto: float, suggest: float) -> None:
    with pytest.raises(ValueError, match="identity thresholds"):
        Thresholds(auto_link=auto, suggest=suggest)
