"""The registry's ``platform: route | refuse`` key: default refuse, the winning rule decides, key
fields and ModificationTimestamp always refuse, ties that disagree on it are load errors, and the
packaged default opens what the design says and nothing more."""

from __future__ import annotations

import pytest

from cadastre.errors import OwnershipRegistryError
from cadastre.ownership import FieldCatalogue, PlatformAccess, load_registry, parse_registry

CATALOGUE = FieldCatalogue(
    fields={"Contact": frozenset({"ContactKey", "Email", "Notes", "ModificationTimestamp"})},
    key_fields={"Contact": "ContactKey"},
)


def registry(rules: str) -> object:
    return parse_registry(f"version: 1\nsystems: {{crm: {{}}, pms: {{}}}}\nrules:\n{rules}",
                          catalogue=CATALOGUE)  # fmt: skip


def test_route_comes_from_the_winning_rule_and_defaults_to_refuse() -> None:
    r = registry("  - {match: Contact.*, owner: crm, platform: route}\n"
                 "  - {match: Contact.Notes, owner: crm}\n")  # fmt: skip
    assert r.platform("Contact", "Email") is PlatformAccess.ROUTE  # type: ignore[attr-defined]
    assert r.platform("Contact", "Notes") is PlatformAccess.REFUSE  # type: ignore[attr-defined]
    assert r.decide("Contact", "Email", "core").routed  # type: ignore[attr-defined]
    # the key and the vendor's clock are never the platform's to write
    assert r.routed_fields("Contact") == {"Email"}  # type: ignore[attr-defined]


def test_a_bad_value_and_a_disagreeing_tie_fail_loading() -> None:
    with pytest.raises(OwnershipRegistryError, match="platform"):
        registry("  - {match: Contact.*, owner: crm, platform: sometimes}\n")
    with pytest.raises(OwnershipRegistryError, match="platform route and refuse"):
        registry("  - {match: Contact.E*, owner: crm, platform: route}\n"
                 "  - {match: Contact.Em*, owner: crm}\n"
                 "  - {match: Contact.*l, owner: crm}\n"
                 "  - {match: Contact.Ema*, owner: crm, platform: route}\n"
                 "  - {match: Contact.*ail, owner: crm, platform: refuse}\n")  # fmt: skip


def test_the_default_registry() -> None:
    r = load_registry()
    assert "Email" in r.routed_fields("Contact")
    assert "FirstName" in r.routed_fields("Contact")
    assert not {"ContactKey", "OwnerMemberKey", "OwnerMemberID"} & r.routed_fields("Contact")
    assert "UnitId" not in r.routed_fields("Unit")
    assert "UnitNumber" in r.routed_fields("Unit")
    assert r.routed_fields("LedgerAccount") == {"Name", "AccountNumber", "Active"}
    assert "ContactKey" not in r.routed_fields("Resident")
    assert "Email" in r.routed_fields("Resident")
    assert "MobilePhone" in r.routed_fields("Resident")
    assert r.platform("Payment", "Amount") is PlatformAccess.CREATE  # created, never changed
    assert r.decide("Payment", "Amount", "core").creatable
    assert not r.decide("Payment", "Amount", "core").routed
    assert not r.decide("Payment", "PaymentId", "core").creatable
    for entity in ("LedgerEntry", "Listing", "Member", "Office", "Media", "OpenHouse", "Property",
                   "Payment"):  # fmt: skip
        assert r.routed_fields(entity) == frozenset(), entity
