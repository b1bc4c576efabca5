"""Promise 14 with version vectors on: 2,000 updates (10,000 under ``--full``) across 100 records
(500), shuffled and duplicated, end in the store that in-order application makes. Most records
have a field two systems write (the PMS and the CRM, ``newest_wins``), so every conflict path of
the engine is taken - causal, concurrent further apart than the skew - and the rest are deleted
and revived by their owner, so tombstones are tested too: none comes back from older news."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from cadastre.contract import Change, Operation, Origin
from cadastre.ownership import OwnershipRegistry
from cadastre.sync import SyncEngine
from cadastre.testing import EPOCH, FakeClock, FakeStore
from tests.unit.sync.conftest import TENANT

PAGE = 200


def _change(system: str, n: int, record: int, fields: dict[str, Any],
            op: Operation = Operation.UPSERT) -> Change:  # fmt: skip
    return Change(
        tenant=TENANT, entity="Resident", canonical_id=f"R{record:04d}", operation=op,
        fields=fields,
        origin=Origin(system=system, connection=f"{system}-1", external_id=f"{system}-{record}",
                      source_time=EPOCH + timedelta(seconds=10 * n), source_version=str(n)),
    )  # fmt: skip


def history(records: int, updates: int, seed: int) -> tuple[list[Change], list[Change]]:
    """(creates, updates): every record created by the PMS first, then updates 10 s apart
    (further apart than the skew): a fifth of the records are deleted and revived by the PMS;
    the others have their MobilePhone written by the PMS and the CRM in turn."""
    rnd = random.Random(seed)
    creates = [_change("pms", 0, r, {"FirstName": f"F{r}", "MobilePhone": "0"})
               for r in range(records)]  # fmt: skip
    out = []
    for n in range(1, updates + 1):
        record = rnd.randrange(records)
        if record % 5 == 0:  # the owner's record life: updates, deletes, revivals
            if rnd.random() < 0.3:
                out.append(_change("pms", n, record, {}, Operation.DELETE))
            else:
                out.append(_change("pms", n, record, {"LastName": f"L{n}", "FirstName": f"F{n}"}))
        else:
            system = rnd.choice(["pms", "crm"])
            out.append(_change(system, n, record, {"MobilePhone": f"{system}-{n}"}))
    return creates, out


async def final_state(registry: OwnershipRegistry, creates: list[Change], updates: list[Change]
                      ) -> dict[str, Any]:  # fmt: skip
    clock = FakeClock()
    store = FakeStore(clock)
    engine = SyncEngine(store, registry, clock)
    for batch in (creates, updates):
        for start in range(0, len(batch), PAGE):
            for item in await engine.apply_batch(batch[start : start + PAGE]):
                assert item.result is not None, item.error
    async with store.unit_of_work(TENANT) as uow:
        return {
            r.id: (r.deleted, dict(r.data))
            async for r in uow.records.scan("Resident", include_deleted=True, limit=10_000)
        }


async def test_shuffled_and_duplicated_updates_end_as_in_order(registry, full_trials) -> None:
    records, updates = (500, 10_000) if full_trials else (100, 2_000)
    creates, ordered = history(records, updates, seed=14)
    expected = await final_state(registry, creates, ordered)
    assert sum(1 for deleted, _ in expected.values() if deleted) > 0  # tombstones are in play
    rnd = random.Random(23)
    delivered = ordered + rnd.sample(ordered, len(ordered) // 5)  # a fifth delivered twice
    rnd.shuffle(delivered)
    assert await final_state(registry, creates, delivered) == expected
    # the newest value of every shared field stands, whoever wrote it
    newest: dict[str, str] = {}
    for change in ordered:
        if "MobilePhone" in change.fields:
            newest[change.canonical_id or ""] = change.fields["MobilePhone"]
    for id, phone in newest.items():
        assert expected[id][1]["MobilePhone"] == phone
