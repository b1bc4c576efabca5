"""Small pieces of the Buildium connector: the api_key credential's client-id pair, a thin event
read into records, the put message built from a GET (every field, phones re-shaped), and
canonical values turned into Buildium's."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from cadastre.connectors.pms.buildium.streams import record
from cadastre.connectors.pms.buildium.webhooks import read_event
from cadastre.connectors.pms.buildium.writes import put_message, vendor_values
from cadastre.errors import ConfigurationError, ContractError
from cadastre.ports import RawRecord
from cadastre.vault.schemes import check

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PAIR = {"header": "x-buildium-client-secret", "id_header": "x-buildium-client-id", "id": "cid"}


def test_an_api_key_may_carry_a_client_id_header_but_only_with_its_id() -> None:
    meta = check("k", "api_key", {"api_key"}, PAIR)
    assert meta["id_header"] == "x-buildium-client-id"
    assert meta["id"] == "cid"
    with pytest.raises(ConfigurationError, match="id_header and id go together"):
        check("k", "api_key", {"api_key"}, {"id_header": "x-buildium-client-id"})
    assert check("k", "api_key", {"api_key"}, {})["id_header"] is None  # unchanged default


async def test_a_thin_event_is_fetched_a_deleted_one_is_a_deletion_others_are_passed() -> None:
    asked: list[tuple[str, str]] = []

    async def fetch(stream: str, key: str) -> RawRecord | None:
        asked.append((stream, key))
        return record(stream, {"Id": int(key), "FirstName": "A"}, NOW)

    event = {"EventName": "LeaseTenant.Updated", "EventDateTime": "2026-11-27T09:00:00.1234567Z",
             "AccountId": 1, "TenantId": 7}  # fmt: skip
    (found,) = await read_event(orjson.dumps(event), fetch)
    assert asked == [("tenants", "7")]
    assert found.external_id == "7"
    gone = {**event, "EventName": "RentalUnit.Deleted", "UnitId": 9}
    (deletion,) = await read_event(orjson.dumps(gone), fetch)
    assert deletion.deleted
    assert deletion.stream == "units"
    assert deletion.external_id == "9"
    assert deletion.source_time is not None
    assert await read_event(orjson.dumps({**event, "EventName": "Bill.Created"}), fetch) == []
    (bad,) = await read_event(b"<html>", fetch)
    assert bad.problem
    (no_id,) = await read_event(orjson.dumps({**event, "TenantId": None}), fetch)
    assert no_id.problem
    assert "TenantId" in no_id.problem


def test_the_put_message_carries_every_field_of_what_was_served() -> None:
    served = {"Id": 3, "FirstName": "A", "LastName": "B", "Email": "a@b.co",
              "PhoneNumbers": [{"Number": "5125550000", "Type": "Cell"},
                               {"Number": "5125551111", "Type": "Office"}],
              "Address": {"AddressLine1": "1 A St", "City": "X", "PostalCode": "1",
                          "Country": "UnitedStates"},
              "Comment": "keep", "Leases": [], "CreatedDateTime": "x"}  # fmt: skip
    body = put_message("tenants", served)
    assert body["PhoneNumbers"] == {"Mobile": "5125550000", "Work": "5125551111"}
    assert body["Comment"] == "keep"
    assert "Leases" not in body
    assert "Id" not in body
    vendor_values("Resident", {"HomePhone": "5125552222", "Email": "c@d.co"}, body)
    assert body["PhoneNumbers"]["Home"] == "5125552222"
    assert body["Email"] == "c@d.co"
    assert body["PhoneNumbers"]["Mobile"] == "5125550000"
    with pytest.raises(ContractError):
        vendor_values("Resident", {"LeaseId": "4"}, body)  # not by an update
    unit: dict[str, object] = {}
    vendor_values("Unit", {"Bedrooms": 0, "Bathrooms": 2.5, "SquareFeet": "850"}, unit)
    assert unit == {"UnitBedrooms": "Studio", "UnitBathrooms": "TwoPointFiveBath", "UnitSize": 850}
    with pytest.raises(ContractError, match="no Buildium value"):
        vendor_values("Unit", {"Bathrooms": 2.25}, {})
    lease = {"LeaseType": "FixedWithRollover"}
    vendor_values("Lease", {"LeaseType": "FixedTerm"}, lease)
    assert lease["LeaseType"] == "FixedWithRollover"  # already a fixed term: left alone
    vendor_values("Lease", {"LeaseType": "MonthToMonth"}, lease)
    assert lease["LeaseType"] == "AtWill"


async def test_a_webhook_fetched_tenant_or_unit_is_dated_by_its_event_not_by_the_read() -> None:
    # Tenants and units serve no modification time: a poll can only stamp them with the read
    # time, which would make a Buildium edit look newer than a CRM edit made after it. A webhook
    # names when the change happened (EventDateTime): the fetched record carries that time.
    read_at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)

    async def fetch(stream: str, key: str) -> RawRecord | None:
        if stream == "leases":
            return record(stream, {"Id": int(key), "LastUpdatedDateTime":
                                   "2026-11-27T09:20:00.0000000Z"}, read_at)  # fmt: skip
        return record(stream, {"Id": int(key), "FirstName": "A"}, read_at)

    event = {"EventName": "LeaseTenant.Updated", "EventDateTime": "2026-11-27T09:00:00.1234567Z",
             "AccountId": 1, "TenantId": 7}  # fmt: skip
    (tenant,) = await read_event(orjson.dumps(event), fetch)
    assert tenant.source_time == datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)
    assert tenant.data["ObservedDateTime"] == read_at.isoformat()  # the view is as read
    unit_event = {**event, "EventName": "RentalUnit.Created", "UnitId": 9}
    (unit,) = await read_event(orjson.dumps(unit_event), fetch)
    assert unit.source_time == datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)
    # a lease has its own LastUpdatedDateTime: that stays
    (lease,) = await read_event(orjson.dumps({**event, "EventName": "Lease.Updated",
                                              "LeaseId": 4}), fetch)  # fmt: skip
    assert lease.source_time == datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    # never later than the read (a vendor clock ahead of ours), and no usable time: the read's
    ahead = {**event, "EventDateTime": "2026-11-27T10:00:00.0000000Z"}
    assert (await read_event(orjson.dumps(ahead), fetch))[0].source_time == read_at
    for when in (None, "yesterday", "2026-11-27T09:00:00"):  # no zone: not a UTC time
        (plain,) = await read_event(orjson.dumps({**event, "EventDateTime": when}), fetch)
        assert plain.source_time == read_at


def test_a_lease_without_last_updated_time_is_stamped_like_a_tenant_not_quarantined() -> None:
    # LastUpdatedDateTime is nullable in LeaseMessage (old rows): the read time and a content
    # hash stand in, as for tenants and units, rather than a record the mapper must refuse.
    served = {"Id": 4, "UnitId": 2, "LeaseFromDate": "2025-01-01", "LastUpdatedDateTime": None}
    raw = record("leases", served, NOW)
    assert raw.source_time == NOW
    assert raw.source_version is not None
    assert raw.source_version.startswith("sha256:")
    dated = record("leases", {**served, "LastUpdatedDateTime": "2026-11-27T08:00:00.0000000Z"},
                   NOW)  # fmt: skip
    assert dated.source_time == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert dated.source_version == "2026-11-27T08:00:00.0000000Z"
