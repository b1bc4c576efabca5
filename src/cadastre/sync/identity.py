"""Identity resolution's rules: whether a CRM ``Contact`` and a PMS ``Resident`` are one person.

Pure functions, no I/O: the service (``identity_service.py``) reads the records, asks ``score``
and ``decide``, and writes what they say.

**Signals** (each one's evidence goes into the link):

- *e-mail*, equal after normalising: trimmed and lower-cased (the local part is case-sensitive
  by the RFC, but no mail provider people use treats it so); for providers known to ignore them,
  the ``+tag`` (Gmail, Outlook/Hotmail/Live, iCloud, Fastmail, Proton, Yahoo's ``-``-less plus)
  and, for Gmail only, the dots of the local part. Other providers' dots and pluses are kept:
  ``j.smith@corp`` and ``jsmith@corp`` can be two people there, and a false link (one person's
  data written over another's) costs far more than a missed one, which a person can still make.
- *phone*, equal as E.164-ish digits: every non-digit dropped, a 10-digit number taken as North
  American (``1`` prefixed), numbers under 7 digits ignored. Mobile and home phones of both sides
  are one pool: people give either.
- *name*, a similarity 0..1 of the first and last names: tokens (accents and case folded) paired
  by their best ``SequenceMatcher`` ratio, an initial matching a name it begins.
- *postal address*, when the resident's property is known: the contact's home postal code (and
  street number) against the property's.

**Score**: a noisy-OR of the signals (``1 - prod(1 - p)``): e-mail 0.8, phone 0.6, name
``0.7 * similarity`` (from 0.5 up), address 0.4 (0.15 for the postal code alone). Two records
that share an identifier but carry clearly different names (similarity under 0.5: a family's
shared e-mail or landline) have the score halved. E-mail and an equal name reach 0.94, e-mail
and phone 0.92, phone and name 0.88, e-mail alone 0.8.

**Decision** (``decide``): at or above ``auto_link`` (``CADASTRE_IDENTITY_AUTO_LINK``, 0.9) the
pair is linked at once, from ``suggest`` (``CADASTRE_IDENTITY_SUGGEST``, 0.6) a ``suggested``
link waits for a person. A pair a person rejected (or unlinked) is never suggested again; a
resident already linked to another contact gets suggestions only; two contacts tied for the top
score of one resident are both only suggested.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from difflib import SequenceMatcher
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cadastre.contract.changes import Change, Operation, Origin
from cadastre.ports import ExternalRef, LinkState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from cadastre.ports import Clock, IdentityLink, RawRecord, UnitOfWork

__all__ = [
    "CONTACT",
    "PERSON_FIELDS",
    "RESIDENT",
    "Action",
    "Merge",
    "Score",
    "Thresholds",
    "contact_key_change",
    "decide",
    "derived_key",
    "match_keys",
    "merge_of",
    "merging",
    "name_similarity",
    "new_link_id",
    "normalise_email",
    "normalise_phone",
    "score",
]

CONTACT, RESIDENT = "Contact", "Resident"
# The fields a linked contact and resident keep in step (same wire names on both entities).
PERSON_FIELDS = ("FirstName", "LastName", "Email", "MobilePhone", "HomePhone")
PHONE_FIELDS = ("MobilePhone", "HomePhone")

_PLUS_PROVIDERS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "icloud.com",
    "me.com", "fastmail.com", "proton.me", "protonmail.com",
})  # fmt: skip
_DOT_PROVIDERS = frozenset({"gmail.com", "googlemail.com"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

P_EMAIL, P_PHONE, P_NAME, P_ADDRESS, P_POSTAL = 0.8, 0.6, 0.7, 0.4, 0.15
NAME_FLOOR = 0.5  # below this, names count against the pair rather than for it


@dataclass(frozen=True)
class Thresholds:
    auto_link: float = 0.9
    suggest: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.suggest <= self.auto_link <= 1.0:
            raise ValueError(
                f"identity thresholds need 0 < suggest ({self.suggest}) <= auto_link "
                f"({self.auto_link}) <= 1"
            )


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if not _EMAIL.match(email):
        return None
    local, domain = email.rsplit("@", 1)
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _PLUS_PROVIDERS:
        local = local.split("+", 1)[0]
    if domain in _DOT_PROVIDERS:
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


def normalise_phone(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) == 10:  # a national North American number
        digits = "1" + digits
    if not 7 <= len(digits) <= 15:  # E.164 allows 15 digits at most
        return None
    return "+" + digits


def _tokens(*parts: Any) -> list[str]:
    text = " ".join(p for p in parts if isinstance(p, str))
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return [t for t in re.split(r"[^0-9a-z]+", plain) if t]


def _token_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) == 1 or len(b) == 1:  # an initial
        return 0.8 if a[0] == b[0] else 0.0
    return SequenceMatcher(None, a, b).ratio()


def name_similarity(
    first_a: Any, last_a: Any, first_b: Any, last_b: Any
) -> float | None:  # fmt: skip
    """0..1; None when either side has no name to compare."""
    a, b = _tokens(first_a, last_a), _tokens(first_b, last_b)
    if not a or not b:
        return None
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    best = [max(_token_similarity(s, t) for t in long) for s in short]
    # Extra tokens on the longer side (a middle name) cost a little, not a mismatch.
    return round(sum(best) / len(best) * (0.95 if len(long) > len(short) else 1.0), 3)


def match_keys(data: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (kind, normalised value) keys candidates are found by."""
    keys: set[tuple[str, str]] = set()
    if (email := normalise_email(data.get("Email"))) is not None:
        keys.add(("email", email))
    for name in PHONE_FIELDS:
        if (phone := normalise_phone(data.get(name))) is not None:
            keys.add(("phone", phone))
    return keys


@dataclass(frozen=True)
class Score:
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)


def _street_number(line: Any) -> str | None:
    if not isinstance(line, str):
        return None
    found = re.match(r"\s*(\d+)", line)
    return found.group(1) if found else None


def _address(contact: Mapping[str, Any], place: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not place:
        return None
    postal = contact.get("HomePostalCode")
    theirs = place.get("PostalCode")
    if not isinstance(postal, str) or not isinstance(theirs, str):
        return None
    if postal.strip()[:5] != theirs.strip()[:5]:
        return None
    number = _street_number(contact.get("HomeAddress1"))
    same_number = number is not None and number == str(place.get("StreetNumber") or "").strip()
    return {"postal_code": theirs.strip()[:5], "street_number": same_number,
            "p": P_ADDRESS if same_number else P_POSTAL}  # fmt: skip


def score(
    contact: Mapping[str, Any], resident: Mapping[str, Any],
    resident_place: Mapping[str, Any] | None = None,
) -> Score:  # fmt: skip
    """How likely ``contact`` and ``resident`` (record data, wire names) are one person, and why.
    ``resident_place`` is the resident's property (PostalCode, StreetNumber), when known."""
    evidence: dict[str, Any] = {}
    chances: list[float] = []
    email = normalise_email(contact.get("Email"))
    if email is not None and email == normalise_email(resident.get("Email")):
        evidence["email"] = {"value": email, "p": P_EMAIL}
        chances.append(P_EMAIL)
    phones_c = {normalise_phone(contact.get(n)) for n in PHONE_FIELDS} - {None}
    phones_r = {normalise_phone(resident.get(n)) for n in PHONE_FIELDS} - {None}
    if common := sorted(p for p in phones_c & phones_r if p is not None):
        evidence["phone"] = {"value": common[0], "p": P_PHONE}
        chances.append(P_PHONE)
    similarity = name_similarity(
        contact.get("FirstName"), contact.get("LastName"),
        resident.get("FirstName"), resident.get("LastName"),
    )  # fmt: skip
    if similarity is not None:
        p_name = P_NAME * similarity if similarity >= NAME_FLOOR else 0.0
        evidence["name"] = {"similarity": similarity, "p": round(p_name, 3)}
        if p_name:
            chances.append(p_name)
    if (address := _address(contact, resident_place)) is not None:
        evidence["address"] = address
        chances.append(address["p"])
    miss = 1.0
    for p in chances:
        miss *= 1.0 - p
    confidence = 1.0 - miss if chances else 0.0
    if similarity is not None and similarity < NAME_FLOOR and confidence:
        confidence /= 2
        evidence["names_differ"] = True
    return Score(round(confidence, 3), evidence)


class Action(StrEnum):
    NONE = "none"
    SUGGEST = "suggest"  # a new suggested link
    LINK = "link"  # a new linked link
    PROMOTE = "promote"  # the pair's suggestion becomes a link


def decide(
    found: Score, existing: IdentityLink | None, thresholds: Thresholds, *,
    resident_taken: bool, tied: bool = False,
) -> Action:  # fmt: skip
    """What the matcher does with a scored pair. ``existing``: the pair's live link;
    ``resident_taken``: the resident is linked to another contact; ``tied``: another contact
    scored as high for this resident (neither is linked by machine)."""
    may_link = found.confidence >= thresholds.auto_link and not resident_taken and not tied
    if existing is not None:
        if existing.state is LinkState.SUGGESTED and may_link:
            return Action.PROMOTE
        return Action.NONE  # linked already, or rejected by a person: never suggested again
    if may_link:
        return Action.LINK
    if found.confidence >= thresholds.suggest:
        return Action.SUGGEST
    return Action.NONE


# ------------------------------------------------------------------------------ vendor merges


@dataclass(frozen=True)
class Merge:
    """A vendor merged record ``merged`` into ``survivor`` (external ids of one connection)."""

    tenant: str
    system: str
    connection: str
    entity: str
    merged: str
    survivor: str
    source_time: datetime | None = None
    source_version: str | None = None


def merge_of(
    raw: RawRecord, *, tenant: str, connection: str, system: str, entity: str
) -> Merge | None:
    """The merge a raw record announces (``RawRecord.merged_into``), or None."""
    if raw.merged_into is None or raw.external_id is None or raw.merged_into == raw.external_id:
        return None
    return Merge(
        tenant, system, connection, entity, raw.external_id, raw.merged_into,
        raw.source_time, raw.source_version,
    )  # fmt: skip


def merging(
    merges: Sequence[Merge], clock: Clock
) -> Callable[[UnitOfWork], Awaitable[Sequence[Change]]]:
    """The engine's ``before`` hook of a page that carries merges (``apply_batch(before=)``):
    run in the page's unit of work, it re-points the cross-references and identity links of
    each merged record to the survivor and returns the changes that finish the job: the merged
    record's tombstone and the moved residents' new ``ContactKey``."""

    async def before(uow: UnitOfWork) -> Sequence[Change]:
        changes: list[Change] = []
        for merge in merges:
            changes += await _merge(uow, merge, clock.now())
        return changes

    return before


async def _merge(uow: UnitOfWork, m: Merge, now: datetime) -> list[Change]:
    merged = await uow.xref.resolve(m.system, m.connection, m.entity, m.merged)
    survivor = await uow.xref.resolve(m.system, m.connection, m.entity, m.survivor)
    detail: dict[str, Any] = {
        "connection": m.connection, "external_id": m.merged, "merged_into_external_id": m.survivor,
    }  # fmt: skip
    if merged is None or merged == survivor:
        if merged is None and survivor is not None:
            # Never seen: later mentions of the merged id still find the survivor.
            await uow.xref.link(ExternalRef(m.system, m.connection, m.entity, m.merged, survivor))
        return []
    if survivor is None:
        # The survivor is new to us: the merged record lives on as it, under both ids.
        await uow.xref.link(ExternalRef(m.system, m.connection, m.entity, m.survivor, merged))
        await uow.audit.append(
            actor=m.system, action="identity.merged", entity=m.entity, entity_id=merged,
            detail={**detail, "merged_into": merged, "kept": True},
        )  # fmt: skip
        return []
    for ref in await uow.xref.for_record(m.entity, merged):
        await uow.identities.repoint_external(replace(ref, canonical_id=survivor))
    moved, dropped = await _move_links(uow, m.entity, merged, survivor, now, by=m.system)
    await uow.audit.append(
        actor=m.system, action="identity.merged", entity=m.entity, entity_id=merged,
        detail={**detail, "merged_into": survivor, "links_moved": [[a, b] for a, b in moved]},
    )  # fmt: skip
    # The tombstone retires the whole record: dated by the merge alone it would leave every
    # field written after that time (a linked field carried over later, a late ContactKey) and
    # so only partly delete it. Dated no earlier than the record's newest stamp, it clears all.
    stamped = await uow.provenance.for_record(m.entity, merged)
    times = [p.source_time for p in stamped.values() if p.source_time is not None]
    when = max([m.source_time or now, *times])
    origin = Origin(
        system=m.system, connection=m.connection, source_time=when,
        source_version=m.source_version,
    )  # fmt: skip
    changes = [
        Change(
            tenant=m.tenant,
            entity=m.entity,
            canonical_id=merged,
            operation=Operation.DELETE,
            origin=origin,
            idempotency_key=f"merge:{m.connection}:{m.entity}:{m.merged}",
        )
    ]
    for old, new in moved:
        link = await uow.identities.get(new)
        if link is not None and link.state is LinkState.LINKED and link.left_entity == CONTACT:
            changes.append(contact_key_change(m.tenant, link.right_id, link.left_id, now, old))
    for old, resident in dropped:  # not carried (a person rejected the survivor's pair)
        changes.append(contact_key_change(m.tenant, resident, None, now, old))
    return changes


async def _move_links(
    uow: UnitOfWork, entity: str, merged: str, survivor: str, now: datetime, *, by: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Break the merged record's live links and carry each to the survivor (evidence kept,
    ``merged_from`` added), unless the survivor's pair has a live link already (then a link
    beats a suggestion, and a person's rejection stands). (old id, new id) of each carried,
    and (old id, resident id) of each ``linked`` one not carried: its ContactKey is cleared."""
    moved: list[tuple[str, str]] = []
    dropped: list[tuple[str, str]] = []
    for link in await uow.identities.for_record(entity, merged):
        left = link.left_entity == entity and link.left_id == merged
        pair = (
            (link.left_entity, survivor, link.right_entity, link.right_id) if left
            else (link.left_entity, link.left_id, link.right_entity, survivor)
        )  # fmt: skip
        broken = replace(link, broken_by=by, broken_at=now, broken_reason=f"merged into {survivor}")
        await uow.identities.update(broken, expected_state=link.state)
        evidence = {**link.evidence, "merged_from": {"record": merged, "link": link.id}}
        held = await uow.identities.for_pair(*pair)
        if held is None:
            new = replace(
                link, id=new_link_id(), left_id=pair[1], right_id=pair[3], evidence=evidence,
                made_at=now, broken_by=None, broken_at=None, broken_reason="",
            )  # fmt: skip
            await uow.identities.add(new)
            moved.append((link.id, new.id))
        elif held.state is LinkState.SUGGESTED and link.state is LinkState.LINKED:
            promoted = replace(held, state=LinkState.LINKED, how=link.how, evidence=evidence)
            await uow.identities.update(promoted, expected_state=LinkState.SUGGESTED)
            moved.append((link.id, held.id))
        elif (
            link.state is LinkState.LINKED and held.state is not LinkState.LINKED
            and link.left_entity == CONTACT
        ):  # fmt: skip
            dropped.append((link.id, link.right_id))
    return moved, dropped


def new_link_id() -> str:
    return "idl_" + uuid.uuid4().hex[:24]


def contact_key_change(
    tenant: str, resident_id: str, contact_id: str | None, now: datetime, cause: str | None
) -> Change:
    """``Resident.ContactKey`` set to the linked contact (None: cleared). Identity resolution is
    the platform's work, so the change comes from ``core`` (the owner of the field). Its
    idempotency key names the cause: a content-derived key leaves the causation out, so setting
    the same contact again at the same clock reading (link, unlink, link) would be taken for a
    repeat of the first and dropped."""
    return Change(
        tenant=tenant, entity=RESIDENT, canonical_id=resident_id,
        fields={"ContactKey": contact_id},
        origin=Origin(system="core", source_time=now, causation_id=cause),
        idempotency_key=derived_key("contact-key", resident_id, contact_id, now, cause),
    )  # fmt: skip


def derived_key(*parts: Any) -> str:
    """An idempotency key for a change identity resolution derives (``identity:`` + sha256 of
    the parts): the same cause makes the same key, another cause another one."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return "identity:" + hashlib.sha256(text.encode()).hexdigest()
