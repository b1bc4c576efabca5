"""The ownership drift story with the real vendor packages' claims: the PMS (Buildium) holds the
lease records; an accounting connection whose config also believes it owns the lease rent is
refused at configuration load, naming both systems and connections; the packages as shipped agree
with the packaged registry and with each other."""

from __future__ import annotations

from typing import Any

import pytest

from cadastre.connectors.claims import check_connections
from cadastre.ownership import load_registry
from cadastre.ownership.claims import OwnershipDrift

SHIPPED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("pms-main", "pms", "pms/buildium", {}),
    ("crm-main", "crm", "crm/hubspot", {}),
    ("books", "accounting", "accounting/quickbooks", {}),
]


def test_the_shipped_vendor_packages_claim_what_the_registry_gives_them() -> None:
    check_connections(load_registry(), SHIPPED)  # raises on any drift


def test_accounting_believing_it_owns_the_lease_rent_is_refused_naming_both() -> None:
    drifted = [*SHIPPED[:2], ("books", "accounting", "accounting/quickbooks",
                              {"owns": ["Lease.RentAmount", "Lease.DepositAmount"]})]  # fmt: skip
    with pytest.raises(OwnershipDrift) as refused:
        check_connections(load_registry(), drifted)
    text = str(refused.value)
    assert "systems accounting (connection 'books') and pms (connection 'pms-main')" in text
    assert "Lease.RentAmount" in text
    assert "Lease.DepositAmount" in text
    assert "gives it to pms" in text  # the registry's side of the story


def test_a_crm_package_claiming_leases_contradicts_the_registry() -> None:
    drifted = [("crm-main", "crm", "crm/hubspot", {"owns": ["Lease.*"]}), SHIPPED[0]]
    with pytest.raises(OwnershipDrift, match="gives Lease records to pms"):
        check_connections(load_registry(), drifted)
