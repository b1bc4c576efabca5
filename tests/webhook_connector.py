"""A test-only connector whose vendor pushes webhooks: the RESO connector (its settings, mapping
and gateway) with a webhook reader of its own, so the normaliser's tests do not depend on what
the RESO push format does. A body is ``{"value": [item, ...]}`` (items read as a polled page's
are); ``{"fail": "why"}`` makes the reader raise ``VendorUnavailable`` (a vendor outage while
fetching) as long as ``FAILING`` holds the message; ``{"unreadable": KEY}`` is one record the
reader could not read but knows the key of; anything that is not JSON raises ``ValueError``.

Register it with ``register(monkeypatch)`` (or ``install()`` in a process of its own) before the
hub is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from cadastre.connectors import available
from cadastre.connectors.mls.reso import ResoConnector, ResoConnectorSpec
from cadastre.errors import VendorUnavailable
from cadastre.mapping.records import raw_record
from cadastre.ports import RawRecord

NAME = "test/hooks"
FAILING: set[str] = set()  # "fail" messages that still fail
CALLS: list[bytes] = []  # bodies read, in order


class HookConnector(ResoConnector):
    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> Sequence[RawRecord]:
        CALLS.append(body)
        parsed = orjson.loads(body)  # JSONDecodeError is a ValueError: quarantined whole
        if isinstance(parsed, dict) and "fail" in parsed:
            if parsed["fail"] in FAILING:
                raise VendorUnavailable(f"vendor down: {parsed['fail']}")
            parsed = {"value": parsed.get("value", [])}
        stream = self._settings.resource
        if isinstance(parsed, dict) and "unreadable" in parsed:
            key = parsed["unreadable"]
            return [RawRecord(stream, key, {"key": key}, None, problem="cannot be read")]
        mapper = self._mapper
        return [raw_record(stream, item, mapper.key, mapper.timestamp) for item in parsed["value"]]


class HookSpec(ResoConnectorSpec):
    name = NAME

    def create(self, settings: BaseModel, **kwargs: Any) -> HookConnector:
        return HookConnector(settings, **kwargs)  # type: ignore[arg-type]


SPEC = HookSpec()


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(available(), NAME, SPEC)
    FAILING.clear()
    CALLS.clear()


def install() -> None:
    """For a process of its own (the kill test's receiver)."""
    available()[NAME] = SPEC


def config(**more: Any) -> dict[str, Any]:
    """A connection config for it: the RESO family mapping, a vendor never called."""
    return {"base_url": "https://mls.invalid/odata", "mapping": "mls/reso", **more}


def listing(key: str, when: str = "2026-11-27T08:00:00Z", **fields: Any) -> dict[str, Any]:
    return {"ListingKey": key, "ModificationTimestamp": when, "ListPrice": 100_000, **fields}


def body(*items: Any, **extra: Any) -> bytes:
    return orjson.dumps({"value": list(items), **extra})
