"""``IdentityService``: identity links over the store - the matcher, links made and broken by hand,
``Resident.ContactKey`` kept to the link, and the backlog scan.

The matcher finds a record's candidates through the match keys (``uow.identities.find_keys``:
normalised e-mail addresses and phone numbers, an indexed table), never by reading every record of
the other side; ``identity.py`` scores and decides. Every link made, confirmed, rejected or broken
writes an audit entry in the same transaction. ``ContactKey`` follows in a change of its own
through ``SyncEngine.apply`` (origin ``core``), so its event, provenance and audit are the
engine's; a crash between the two is mended by the next look at the resident (``contact_key``
compares and writes only a difference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cadastre.errors import AlreadyExists, LinkRefused, NotFound
from cadastre.ports import IdentityLink, LinkHow, LinkState
from cadastre.sync.identity import (
    CONTACT,
    RESIDENT,
    Action,
    Score,
    Thresholds,
    contact_key_change,
    decide,
    match_keys,
    new_link_id,
    score,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cadastre.observe import Metrics
    from cadastre.ports import Clock, Store, StoredRecord, UnitOfWork
    from cadastre.sync.engine import SyncEngine

log = logging.getLogger(__name__)

ACTOR = "identity"  # made_by / audit actor of the matcher
PAGE = 200


@dataclass
class ScanReport:
    indexed: int = 0  # records whose match keys were written
    residents: int = 0  # residents matched
    linked: int = 0
    suggested: int = 0


class IdentityService:
    def __init__(
        self, store: Store, engine: SyncEngine, clock: Clock,
        thresholds: Thresholds | None = None, *, metrics: Metrics | None = None,
        max_candidates: int = 50,
    ) -> None:  # fmt: skip
        self._store = store
        self._engine = engine
        self._clock = clock
        self.thresholds = thresholds or Thresholds()
        self._metrics = metrics
        self._max = max_candidates

    # -- reading ---------------------------------------------------------------------------

    async def find(
        self, tenant: str, *, state: LinkState | None = None, after: str | None = None,
        limit: int = 100,
    ) -> list[IdentityLink]:  # fmt: skip
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.identities.find(state=state, after=after, limit=limit)

    async def get(self, tenant: str, id: str) -> tuple[IdentityLink, list[IdentityLink]]:
        """The link and every link of its pair (broken ones included), oldest first."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            link = await uow.identities.get(id)
            if link is None:
                raise NotFound(f"identity link {id!r} does not exist")
            every = await uow.identities.for_record(
                link.left_entity, link.left_id, include_broken=True
            )
        pair = (link.right_entity, link.right_id)
        history = [x for x in every if (x.right_entity, x.right_id) == pair]
        return link, history

    # -- the matcher -----------------------------------------------------------------------

    async def match(self, tenant: str, entity: str, id: str, *, cause: str | None = None) -> list[
        IdentityLink
    ]:  # fmt: skip
        """Index the record's match keys and score it against the other side's records that
        share one; link or suggest as ``identity.decide`` says. The links made or changed."""
        async with self._store.unit_of_work(tenant) as uow:
            made = await self._match(uow, entity, id)
            await uow.commit()
        for link in made:
            if link.state is LinkState.LINKED:
                await self.contact_key(tenant, link.right_id, cause=cause or link.id)
        return made

    async def _match(self, uow: UnitOfWork, entity: str, id: str) -> list[IdentityLink]:
        if entity not in (CONTACT, RESIDENT):
            return []
        record = await uow.records.get(entity, id)
        if record is None or record.deleted:
            await uow.identities.set_keys(entity, id, ())
            return []
        keys = match_keys(record.data)
        await uow.identities.set_keys(entity, id, keys)
        other = RESIDENT if entity == CONTACT else CONTACT
        found = await uow.identities.find_keys(other, keys, limit=self._max)
        if not found:
            return []
        candidates = await uow.records.get_many(other, sorted(found))
        scored: list[tuple[Score, str, str]] = []
        for candidate in candidates.values():
            if candidate.deleted:
                continue
            contact, resident = (record, candidate) if entity == CONTACT else (candidate, record)
            place = await self._place(uow, resident.data)
            scored.append((score(contact.data, resident.data, place), contact.id, resident.id))
        scored.sort(key=lambda s: (-s[0].confidence, s[1], s[2]))
        top = [s for s in scored if s[0].confidence >= self.thresholds.auto_link]
        # Matching a resident: two contacts as likely as each other are a person's call.
        tied = entity == RESIDENT and len(top) > 1 and (
            top[0][0].confidence - top[1][0].confidence < 0.01
        )  # fmt: skip
        made: list[IdentityLink] = []
        for found_score, contact_id, resident_id in scored:
            existing = await uow.identities.for_pair(CONTACT, contact_id, RESIDENT, resident_id)
            taken = await _linked_elsewhere(uow, resident_id, contact_id)
            action = decide(found_score, existing, self.thresholds, resident_taken=taken,
                            tied=tied)  # fmt: skip
            link = await self._act(uow, action, existing, found_score, contact_id, resident_id)
            if link is not None:
                made.append(link)
        return made

    async def _act(
        self, uow: UnitOfWork, action: Action, existing: IdentityLink | None, found: Score,
        contact_id: str, resident_id: str,
    ) -> IdentityLink | None:  # fmt: skip
        now = self._clock.now()
        if action is Action.NONE:
            return None
        if action is Action.PROMOTE and existing is not None:
            link = replace(existing, state=LinkState.LINKED, confidence=found.confidence,
                           evidence=found.evidence, made_by=ACTOR, made_at=now)  # fmt: skip
            if not await uow.identities.update(link, expected_state=LinkState.SUGGESTED):
                return None
        else:
            state = LinkState.LINKED if action is Action.LINK else LinkState.SUGGESTED
            link = IdentityLink(
                id=new_link_id(), left_entity=CONTACT, left_id=contact_id,
                right_entity=RESIDENT, right_id=resident_id, confidence=found.confidence,
                evidence=found.evidence, state=state, how=LinkHow.AUTO, made_by=ACTOR,
                made_at=now,
            )  # fmt: skip
            await uow.identities.add(link)
        await _audit(uow, ACTOR, f"identity.{link.state.value}", link)
        self._count(link)
        return link

    async def _place(self, uow: UnitOfWork, resident: Mapping[str, Any]) -> dict[str, Any] | None:
        """The resident's property (postal code, street number) through its lease, if known."""
        lease_id = resident.get("LeaseId")
        if not isinstance(lease_id, str):
            return None
        lease = await uow.records.get("Lease", lease_id)
        property_id = lease.data.get("PropertyId") if lease is not None else None
        if not isinstance(property_id, str):
            return None
        found = await uow.records.get("Property", property_id)
        if found is None or found.deleted:
            return None
        return {k: found.data.get(k) for k in ("PostalCode", "StreetNumber")}

    # -- by hand ---------------------------------------------------------------------------

    async def link(
        self, tenant: str, contact_id: str, resident_id: str, *, by: str, note: str = ""
    ) -> IdentityLink:
        """Link a contact and a resident as one person (a person's word: confidence is still
        the matcher's score, for the record). A suggestion or a rejection of the pair becomes
        the link; a resident linked to another contact must be unlinked first."""
        async with self._store.unit_of_work(tenant) as uow:
            contact = await _existing(uow, CONTACT, contact_id)
            resident = await _existing(uow, RESIDENT, resident_id)
            existing = await uow.identities.for_pair(CONTACT, contact_id, RESIDENT, resident_id)
            if existing is not None and existing.state is LinkState.LINKED:
                return existing
            other = await _linked_elsewhere(uow, resident_id, contact_id)
            if other:
                raise AlreadyExists(
                    f"Resident {resident_id} is linked to another contact already; unlink that "
                    "link first (cadastre identities list)"
                )
            found = score(contact.data, resident.data, await self._place(uow, resident.data))
            now = self._clock.now()
            if existing is not None:
                link = replace(
                    existing, state=LinkState.LINKED, how=LinkHow.MANUAL, made_by=by, made_at=now,
                    note=note, confidence=found.confidence, evidence=found.evidence,
                )  # fmt: skip
                if not await uow.identities.update(link, expected_state=existing.state):
                    raise LinkRefused(f"identity link {existing.id} changed meanwhile; look again")
            else:
                link = IdentityLink(
                    id=new_link_id(), left_entity=CONTACT, left_id=contact_id,
                    right_entity=RESIDENT, right_id=resident_id, confidence=found.confidence,
                    evidence=found.evidence, state=LinkState.LINKED, how=LinkHow.MANUAL,
                    made_by=by, made_at=now, note=note,
                )  # fmt: skip
                await uow.identities.add(link)
            await _audit(uow, by, "identity.linked", link)
            await uow.commit()
        self._count(link)
        await self.contact_key(tenant, resident_id, cause=link.id)
        return link

    async def unlink(self, tenant: str, id: str, *, by: str, reason: str) -> IdentityLink:
        """Break a link: its row stays as history, and a ``rejected`` one takes its place, so
        the matcher never links the pair again. ``ContactKey`` is cleared."""
        if not reason.strip():
            raise LinkRefused("unlinking needs a reason (it goes into the audit trail)")
        async with self._store.unit_of_work(tenant) as uow:
            link = await _live(uow, id)
            if link.state is not LinkState.LINKED:
                raise LinkRefused(
                    f"identity link {id} is {link.state.value}; only a linked one can be "
                    "unlinked (reject a suggestion instead)"
                )
            now = self._clock.now()
            broken = replace(link, broken_by=by, broken_at=now, broken_reason=reason)
            if not await uow.identities.update(broken, expected_state=LinkState.LINKED):
                raise LinkRefused(f"identity link {id} changed meanwhile; look again")
            rejected = replace(
                link, id=new_link_id(), state=LinkState.REJECTED, how=LinkHow.MANUAL, made_by=by,
                made_at=now, note=reason, evidence={**link.evidence, "unlinked": link.id},
            )  # fmt: skip
            await uow.identities.add(rejected)
            await _audit(uow, by, "identity.unlinked", broken, reason=reason)
            await uow.commit()
        await self.contact_key(tenant, link.right_id, cause=link.id)
        return broken

    async def confirm(self, tenant: str, id: str, *, by: str) -> IdentityLink:
        """A person confirms a suggestion: it becomes the pair's link."""
        async with self._store.unit_of_work(tenant) as uow:
            link = await _live(uow, id)
            if link.state is not LinkState.SUGGESTED:
                raise LinkRefused(f"identity link {id} is {link.state.value}, not suggested")
            if await _linked_elsewhere(uow, link.right_id, link.left_id):
                raise AlreadyExists(
                    f"{link.right_entity} {link.right_id} is linked to another contact already; "
                    "unlink that link first"
                )
            confirmed = replace(link, state=LinkState.LINKED, how=LinkHow.MANUAL, made_by=by,
                                made_at=self._clock.now())  # fmt: skip
            if not await uow.identities.update(confirmed, expected_state=LinkState.SUGGESTED):
                raise LinkRefused(f"identity link {id} changed meanwhile; look again")
            await _audit(uow, by, "identity.confirmed", confirmed)
            await uow.commit()
        self._count(confirmed)
        await self.contact_key(tenant, link.right_id, cause=link.id)
        return confirmed

    async def reject(self, tenant: str, id: str, *, by: str, reason: str = "") -> IdentityLink:
        """A person rejects a suggestion: the pair is never suggested again."""
        async with self._store.unit_of_work(tenant) as uow:
            link = await _live(uow, id)
            if link.state is not LinkState.SUGGESTED:
                hint = " (unlink a linked one)" if link.state is LinkState.LINKED else ""
                raise LinkRefused(f"identity link {id} is {link.state.value}, not suggested{hint}")
            rejected = replace(link, state=LinkState.REJECTED, how=LinkHow.MANUAL, made_by=by,
                               made_at=self._clock.now(), note=reason or link.note)  # fmt: skip
            if not await uow.identities.update(rejected, expected_state=LinkState.SUGGESTED):
                raise LinkRefused(f"identity link {id} changed meanwhile; look again")
            await _audit(uow, by, "identity.rejected", rejected, reason=reason)
            await uow.commit()
        self._count(rejected)
        return rejected

    async def forget(self, tenant: str, entity: str, id: str, *, cause: str | None) -> None:
        """The record was deleted: break its live links (as history) and drop its keys."""
        residents: list[str] = []
        async with self._store.unit_of_work(tenant) as uow:
            record = await uow.records.get(entity, id)
            if record is not None and not record.deleted:
                return  # revived since the event: nothing to forget
            await uow.identities.set_keys(entity, id, ())
            for link in await uow.identities.for_record(entity, id):
                broken = replace(link, broken_by=ACTOR, broken_at=self._clock.now(),
                                 broken_reason=f"{entity} {id} deleted")  # fmt: skip
                if await uow.identities.update(broken, expected_state=link.state):
                    await _audit(uow, ACTOR, "identity.unlinked", broken,
                                 reason=broken.broken_reason)  # fmt: skip
                    if link.state is LinkState.LINKED and entity != RESIDENT:
                        residents.append(link.right_id)
            await uow.commit()
        for resident in residents:
            await self.contact_key(tenant, resident, cause=cause)

    # -- Resident.ContactKey -------------------------------------------------------------------

    async def contact_key(self, tenant: str, resident_id: str, *, cause: str | None) -> None:
        """Set the resident's ContactKey to its linked contact (or clear it) if it differs."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            resident = await uow.records.get(RESIDENT, resident_id)
            if resident is None or resident.deleted:
                return
            links = await uow.identities.for_record(RESIDENT, resident_id)
        linked = [x.left_id for x in links if x.state is LinkState.LINKED]
        wanted = linked[0] if linked else None
        if resident.data.get("ContactKey") == wanted:
            return
        change = contact_key_change(tenant, resident_id, wanted, self._clock.now(), cause)
        await self._engine.apply(change)

    # -- the backlog -----------------------------------------------------------------------

    async def scan(
        self, tenant: str, *, progress: Callable[[int, int], None] | None = None
    ) -> ScanReport:
        """Index every contact's and resident's keys, then match every resident: for records
        that arrived before identity resolution ran (or while its consumer was stopped)."""
        report = ScanReport()
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            total = await uow.records.count(CONTACT) + 2 * await uow.records.count(RESIDENT)
        done = 0
        for entity in (CONTACT, RESIDENT):
            async for page in self._pages(tenant, entity):
                async with self._store.unit_of_work(tenant) as uow:
                    for record in page:
                        await uow.identities.set_keys(entity, record.id, match_keys(record.data))
                    await uow.commit()
                report.indexed += len(page)
                done += len(page)
                if progress is not None:
                    progress(done, total)
        async for page in self._pages(tenant, RESIDENT):
            async with self._store.unit_of_work(tenant) as uow:
                made = [link for r in page for link in await self._match(uow, RESIDENT, r.id)]
                await uow.commit()
            for link in made:
                if link.state is LinkState.LINKED:
                    report.linked += 1
                    await self.contact_key(tenant, link.right_id, cause=link.id)
                else:
                    report.suggested += 1
            report.residents += len(page)
            done += len(page)
            if progress is not None:
                progress(done, total)
        return report

    async def _pages(self, tenant: str, entity: str) -> Any:
        after: str | None = None
        while True:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                page = await uow.records.query(entity, after_id=after, limit=PAGE)
            if not page:
                return
            yield page
            after = page[-1].id

    def _count(self, link: IdentityLink) -> None:
        if self._metrics is not None:
            counter = self._metrics.counter("cadastre_identity_links_total")
            counter.labels(state=link.state.value).inc()


async def _existing(uow: UnitOfWork, entity: str, id: str) -> StoredRecord:
    record = await uow.records.get(entity, id)
    if record is None or record.deleted:
        raise NotFound(f"{entity} {id!r} does not exist")
    return record


async def _live(uow: UnitOfWork, id: str) -> IdentityLink:
    link = await uow.identities.get(id)
    if link is None:
        raise NotFound(f"identity link {id!r} does not exist")
    if not link.live:
        raise LinkRefused(f"identity link {id} was broken {link.broken_at:%Y-%m-%d %H:%M} UTC")
    return link


async def _linked_elsewhere(uow: UnitOfWork, resident_id: str, contact_id: str) -> bool:
    return any(
        x.state is LinkState.LINKED and x.left_id != contact_id
        for x in await uow.identities.for_record(RESIDENT, resident_id)
    )


async def _audit(
    uow: UnitOfWork, actor: str, action: str, link: IdentityLink, **extra: Any
) -> None:
    await uow.audit.append(
        actor=actor, action=action, entity=link.right_entity, entity_id=link.right_id,
        detail={
            "link": link.id, "contact": link.left_id, "resident": link.right_id,
            "state": link.state.value, "how": link.how.value,
            "confidence": link.confidence, "evidence": dict(link.evidence), "note": link.note,
            **extra,
        },
    )  # fmt: skip
