"""``ResoConnector.webhook_records`` on scripted notifications (key-only events read through the
gateway against httpx.MockTransport): records as a polled page reads them, deletions as raw
records the mapping turns into DELETEs, and nothing that cannot be read is dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cadastre.connectors.mls.reso import CONNECTOR, ResoConnector, ResoSettings
from cadastre.connectors.mls.rets import CONNECTOR as RETS
from cadastre.contract import Operation
from cadastre.errors import ConfigurationError, VendorUnavailable
from cadastre.gateway import Gateway, VendorPolicy
from cadastre.mapping import MappingRegistry, Rejection
from cadastre.mapping.records import raw_record
from cadastre.ports import RawRecord
from cadastre.testing import FakeClock

BASE = "https://mls.example/odata"
CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def listing(key: str, stamp: str = "2026-11-27T08:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"ListingKey": key, "ModificationTimestamp": stamp, "ListPrice": 250_000,
            "StandardStatus": "Active", **extra}  # fmt: skip


def notification(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"@reso.context": CONTEXT, "value": list(events)})


def event(key: Any, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"EntityEventSequence": n, "ResourceName": "Property", "ResourceRecordKey": key,
            **extra}  # fmt: skip


class Vendor:
    """What the MLS answers a read by key: a record, 404, or 503."""

    def __init__(self, records: dict[str, dict[str, Any]] | None = None) -> None:
        self.records = records or {}
        self.paths: list[str] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.down:
            return httpx.Response(503)
        key = request.url.path.split("('", 1)[1].removesuffix("')").replace("''", "'")
        found = self.records.get(key)
        if found is None:
            return httpx.Response(404, json={"error": {"code": "NotFound", "message": "gone"}})
        return httpx.Response(200, content=orjson.dumps({"@odata.context": "x", **found}))


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


@pytest.fixture
def connector(tmp_path: Path, vendor: Vendor) -> ResoConnector:
    (tmp_path / "m.yaml").write_text("mapping: m\nversion: 1\nextends: mls/reso\n")
    mapper = MappingRegistry(tmp_path, {"mls/reso": CONNECTOR.family_mapping}).load("m")
    clock = FakeClock(NOW, autojump=True)
    gateway = Gateway(BASE, VendorPolicy(vendor="reso", max_attempts=1), clock=clock,
                      transport=httpx.MockTransport(vendor))  # fmt: skip
    return ResoConnector(ResoSettings(base_url=BASE), gateway=gateway, mapper=mapper, clock=clock)


def mapped(c: ResoConnector, raw: RawRecord) -> Any:
    return c._mapper.map(raw, tenant="acme", connection="austin", system="mls")


async def test_a_record_in_an_event_is_read_as_a_polled_item_is(connector: ResoConnector) -> None:
    item = listing("K1", ListPrice=300_000)
    records = await connector.webhook_records(
        notification(event("K1", EventTypes=["Updated"], Data=item)), {}
    )
    assert records == [raw_record("Property", listing("K1", ListPrice=300_000), "ListingKey",
                                  "ModificationTimestamp")]  # fmt: skip
    change = mapped(connector, records[0])
    assert change.operation is Operation.UPSERT
    assert change.fields["ListPrice"] == 300_000
    assert change.origin.source_version == "2026-11-27T08:00:00.000Z"


async def test_a_deleted_event_becomes_a_delete_at_the_events_time(
    connector: ResoConnector,
) -> None:
    stamp = "2026-11-27T08:30:00.000Z"
    (record,) = await connector.webhook_records(notification(
        event("K2", ModificationTimestamp=stamp, EventTypes=["Deleted"])), {})  # fmt: skip
    assert record.deleted
    assert (record.external_id, record.source_version) == ("K2", stamp)
    assert record.source_time == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    change = mapped(connector, record)
    assert change.operation is Operation.DELETE
    assert change.origin.source_time == record.source_time


async def test_key_only_events_are_read_by_key_and_a_404_is_a_deletion(
    connector: ResoConnector, vendor: Vendor
) -> None:
    vendor.records["K'3"] = listing("K'3")
    gone_at = "2026-11-27T08:45:00Z"
    body = notification(event("K'3", 1), event("K4", 2, ModificationTimestamp=gone_at),
                        event("K5", 3))  # fmt: skip
    present, gone, gone_untimed = await connector.webhook_records(body, {})
    assert vendor.paths == ["/odata/Property('K''3')", "/odata/Property('K4')",
                            "/odata/Property('K5')"]  # fmt: skip
    assert present == raw_record("Property", listing("K'3"), "ListingKey", "ModificationTimestamp")
    assert (gone.deleted, gone.external_id) == (True, "K4")
    assert gone.source_time == datetime(2026, 11, 27, 8, 45, tzinfo=UTC)
    # a 404 for an event that gave no time: gone as of now
    assert (gone_untimed.deleted, gone_untimed.source_time) == (True, NOW)


async def test_a_vendor_failure_raises_so_the_webhook_is_read_again(
    connector: ResoConnector, vendor: Vendor
) -> None:
    vendor.down = True
    with pytest.raises(VendorUnavailable):
        await connector.webhook_records(notification(event("K6")), {})


async def test_a_single_event_payload_and_numeric_keys_are_read(connector: ResoConnector) -> None:
    body = orjson.dumps({"@reso.context": CONTEXT, "ResourceRecordKey": 7, "ResourceName":
                         "Property", "EventTypes": ["Delete"], "ModificationTimestamp":
                         "2026-11-27T08:00:00Z"})  # fmt: skip
    (record,) = await connector.webhook_records(body, {})
    assert (record.external_id, record.deleted) == ("7", True)


async def test_other_resources_are_passed_over(connector: ResoConnector) -> None:
    body = notification(
        {"EntityEventSequence": 1, "ResourceName": "Media", "ResourceRecordKey": "M1",
         "Data": {"MediaKey": "M1"}},
        event("K8", 2, Data=listing("K8")),
    )  # fmt: skip
    assert [r.external_id for r in await connector.webhook_records(body, {})] == ["K8"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<html>oops</html>", "unreadable"),
        (orjson.dumps({"hello": "world"}), "unreadable"),
        (notification("not an event"), "unreadable"),  # type: ignore[arg-type]
        (notification(event("K9", Data="not a record")), "unreadable"),
        (notification({"EntityEventSequence": 1, "ResourceName": "Property"}), "unreadable"),
        (notification(event("K10", Data={"ListingKey": "K10"})), "missing_timestamp"),
        (notification(event(None, Data=listing("K11") | {"ListingKey": None})), "missing_key"),
        (notification(event("K12", EventTypes=["Deleted"])), "missing_timestamp"),
    ],
)
async def test_what_cannot_be_read_is_handed_on_to_be_quarantined(
    connector: ResoConnector, body: bytes, code: str
) -> None:
    records = await connector.webhook_records(body, {})
    assert len(records) == 1
    rejection = mapped(connector, records[0])
    assert isinstance(rejection, Rejection)
    assert rejection.code == code


def test_ingestion_is_poll_or_webhook_and_webhook_needs_a_reader_and_a_webhook_block() -> None:
    settings = CONNECTOR.settings("austin", {"base_url": BASE})
    assert CONNECTOR.ingestion(settings) == "poll"
    hooks = {"scheme": "standard_webhooks", "credential": "austin-hooks"}
    pushed = CONNECTOR.settings("austin", {"base_url": BASE, "ingestion": "webhook",
                                           "webhook": hooks})  # fmt: skip
    assert CONNECTOR.ingestion(pushed) == "webhook"
    # a webhook block alone does not change the cadence: its webhooks come in, polls go on
    assert CONNECTOR.ingestion(CONNECTOR.settings("a", {"base_url": BASE, "webhook": hooks})) \
        == "poll"  # fmt: skip
    with pytest.raises(ConfigurationError, match="ingestion"):
        CONNECTOR.settings("austin", {"base_url": BASE, "ingestion": "push"})
    with pytest.raises(ConfigurationError, match="no webhook block"):
        CONNECTOR.settings("austin", {"base_url": BASE, "ingestion": "webhook"})
    rets = {"login_url": "https://rets.example/login", "ingestion": "webhook", "webhook": hooks}
    with pytest.raises(ConfigurationError, match="cannot read webhooks"):
        RETS.settings("old-mls", rets)
